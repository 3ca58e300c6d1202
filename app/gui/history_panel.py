"""The run history dock: the runs of the run store (any ``RunHistory``), this session's and past
ones, shown again on selection, exported to CSV, NPZ or NetCDF (``run_export``: the code of ``rramlab
runs export``), or a plot to PNG; *Store…* picks the file."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from rramlab.app.gui.history import Run, RunHistory


class HistoryPanel(QtWidgets.QWidget):
    """``show_requested(run)`` when the user picks a run; export buttons ask the window for paths."""

    show_requested = QtCore.Signal(object)
    export_csv_requested = QtCore.Signal(object)
    export_png_requested = QtCore.Signal(object)
    export_npz_requested = QtCore.Signal(object)
    export_netcdf_requested = QtCore.Signal(object)
    store_requested = QtCore.Signal()
    fit_twin_requested = QtCore.Signal(object)
    compare_twin_requested = QtCore.Signal(object)

    def __init__(self, history: RunHistory, parent=None):
        super().__init__(parent)
        self.history = history
        layout = QtWidgets.QHBoxLayout(self)
        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("run_list")
        self.list.currentItemChanged.connect(self._picked)
        layout.addWidget(self.list, 1)
        buttons = QtWidgets.QVBoxLayout()
        self.csv_button = QtWidgets.QPushButton("Export CSV…")
        self.npz_button = QtWidgets.QPushButton("Export NPZ…")
        self.netcdf_button = QtWidgets.QPushButton("Export NetCDF…")
        self.netcdf_button.setToolTip("the run's metadata, provenance, unit-labelled arrays and array snapshots "
                                      "(xarray.open_dataset), as rramlab runs export --netcdf")
        self.png_button = QtWidgets.QPushButton("Export plot PNG…")
        self.csv_button.clicked.connect(lambda: self._emit(self.export_csv_requested))
        self.png_button.clicked.connect(lambda: self._emit(self.export_png_requested))
        self.npz_button.clicked.connect(lambda: self._emit(self.export_npz_requested))
        self.netcdf_button.clicked.connect(lambda: self._emit(self.export_netcdf_requested))
        buttons.addWidget(self.csv_button)
        buttons.addWidget(self.npz_button)
        buttons.addWidget(self.netcdf_button)
        buttons.addWidget(self.png_button)
        # the twin of this chip (rramlab twin fit / compare): from a stored ISPP run, and back onto it
        self.fit_button = QtWidgets.QPushButton("Fit a twin…")
        self.fit_button.setToolTip("fit the twin's compact model to this ISPP run (rramlab twin fit): a chip file")
        self.compare_button = QtWidgets.QPushButton("Compare with the twin…")
        self.compare_button.setToolTip("replay this run on a fitted twin's chip file (rramlab twin compare)")
        self.fit_button.clicked.connect(lambda: self._emit(self.fit_twin_requested))
        self.compare_button.clicked.connect(lambda: self._emit(self.compare_twin_requested))
        buttons.addWidget(self.fit_button)
        buttons.addWidget(self.compare_button)
        self.store_button = QtWidgets.QPushButton("Store…")
        self.store_button.setToolTip("the run store (SQLite file) runs are kept in and listed from")
        self.store_button.clicked.connect(self.store_requested)
        buttons.addWidget(self.store_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Re-list the runs, newest first, keeping the selection."""
        selected = self.selected_run()
        self.list.blockSignals(True)
        self.list.clear()
        for run in reversed(self.history.runs()):
            item = QtWidgets.QListWidgetItem(run.title())
            item.setData(QtCore.Qt.ItemDataRole.UserRole, run.run_id)
            self.list.addItem(item)
            if selected is not None and run.run_id == selected.run_id:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        enabled = self.list.count() > 0
        self.csv_button.setEnabled(enabled)
        self.npz_button.setEnabled(enabled)
        self.netcdf_button.setEnabled(enabled)
        self.png_button.setEnabled(enabled)
        self.fit_button.setEnabled(enabled)
        self.compare_button.setEnabled(enabled)

    def update_run(self, run: Run) -> None:
        """Re-title one run's row (its record count while it runs)."""
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(QtCore.Qt.ItemDataRole.UserRole) == run.run_id:
                item.setText(run.title())
                return

    def selected_run(self) -> Run | None:
        item = self.list.currentItem()
        if item is None:
            return None
        try:
            return self.history.get(item.data(QtCore.Qt.ItemDataRole.UserRole))
        except KeyError:  # listed from another store, or gone
            return None

    def select(self, run_id: int) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(QtCore.Qt.ItemDataRole.UserRole) == run_id:
                self.list.setCurrentRow(i)
                return

    def _picked(self, *_):
        run = self.selected_run()
        if run is not None:
            self.show_requested.emit(run)

    def _emit(self, signal):
        run = self.selected_run() or (self.history.runs()[-1] if self.history.runs() else None)
        if run is not None:
            signal.emit(run)
