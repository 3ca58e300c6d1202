"""A cell's history in the window: every record of the run store that read it, across runs.

The data is ``protocols/store.py``'s ``cell_history`` (what ``rramlab cell WL,BL --chip ID``
prints): the records with that cell's ``wordline`` and ``bitline`` in the runs of one chip (its
chip id; none: the runs recorded without one). The dialog shows them as a table (time, run,
protocol, record, conductance) and as a plot of conductance (nS) against the time since the
cell's first run started, on a log time axis, one colour per run. ``emit_cell_clicks`` turns a
click on an image plot (the conductance map, the transfer's chip map, the array map) into
(wordline, bitline).
"""

from __future__ import annotations

import datetime as _dt
import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from rramlab.app.gui.lab_plots import log_axes
from rramlab.app.gui.plots import CLASS_COLOURS, lab_axis

COLUMNS = ("at (UTC)", "run", "protocol", "record", "seq", "G (nS)")
#: the earliest time a read is placed at on the log axis (s after its first run started)
MIN_TIME_S = 1e-3


def emit_cell_clicks(widget: pg.PlotWidget, callback, shape=None) -> None:
    """Call ``callback(wordline, bitline)`` when the left button clicks a cell of the image in
    ``widget`` (rows are wordlines, columns bitlines, cell k centred on k as ``exact_range`` draws);
    ``shape()``: the array's (wordlines, bitlines), a click beyond them is no cell."""

    def clicked(event):
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        box = widget.getPlotItem().getViewBox()
        if not box.sceneBoundingRect().contains(event.scenePos()):
            return
        point = box.mapSceneToView(event.scenePos())
        wordline, bitline = int(math.floor(point.y() + 0.5)), int(math.floor(point.x() + 0.5))
        rows, columns = shape() if shape is not None else (math.inf, math.inf)
        if 0 <= wordline < rows and 0 <= bitline < columns:
            callback(wordline, bitline)

    widget.scene().sigMouseClicked.connect(clicked)


def cell_view_position(widget: pg.PlotWidget, wordline: int, bitline: int) -> QtCore.QPoint:
    """Where cell (wordline, bitline) is drawn, in ``widget``'s viewport pixels (for a test's click)."""
    box = widget.getPlotItem().getViewBox()
    scene = box.mapViewToScene(QtCore.QPointF(bitline, wordline))
    return widget.mapFromScene(scene)


def _when(iso: str) -> _dt.datetime:
    when = _dt.datetime.fromisoformat(iso)
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.timezone.utc)


def history_times(history, run_starts: dict[int, str]) -> np.ndarray:
    """Seconds from the start of the cell's first run to each reading (at least MIN_TIME_S, so
    the first read has a place on the log axis)."""
    if not history:
        return np.zeros(0)
    first = min(_when(run_starts.get(h.run_id, h.at)) for h in history)
    return np.array([max((_when(h.at) - first).total_seconds(), MIN_TIME_S) for h in history])


class CellHistoryDialog(QtWidgets.QDialog):
    """The history of one cell, from the window's run store; ``refresh()`` reads it again (the
    chip field chooses whose runs)."""

    def __init__(self, store, wordline: int, bitline: int, chip: str | None = None, parent=None):
        super().__init__(parent)
        self.store = store  # an open RunStore (the window's history's)
        self.wordline, self.bitline = wordline, bitline
        self.setObjectName("cell_history")
        self.setWindowTitle(f"cell {wordline},{bitline}: history")
        self.resize(900, 620)
        layout = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("chip id"))
        self.chip = QtWidgets.QLineEdit(chip or "")
        self.chip.setObjectName("cell_history_chip")
        self.chip.setPlaceholderText("(runs without a chip id)")
        self.chip.editingFinished.connect(self._chip_edited)
        row.addWidget(self.chip, 1)
        again = QtWidgets.QPushButton("Refresh")
        again.clicked.connect(self.refresh)
        row.addWidget(again)
        layout.addLayout(row)
        self.caption = QtWidgets.QLabel()
        self.caption.setObjectName("cell_history_caption")
        self.caption.setWordWrap(True)
        layout.addWidget(self.caption)
        self.plot = pg.PlotWidget(title=f"cell {wordline},{bitline}: conductance of every record that read it")
        log_axes(self.plot, x=True, y=False)
        self.plot.setLabel("bottom", "time since the cell's first run started (s)")
        lab_axis(self.plot, "left", "conductance", "S")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.legend = self.plot.addLegend(offset=(10, 10))
        layout.addWidget(self.plot, 3)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("cell_history_table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table, 2)
        self.history: list = []
        self.shown_chip: str | None = None
        self.refresh()

    def chip_id(self) -> str | None:
        return self.chip.text().strip() or None

    def _chip_edited(self) -> None:
        """Another chip typed: read its history (not on a mere loss of focus, e.g. the window closing)."""
        if self.chip_id() == self.shown_chip:
            return
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - a store gone or damaged is said here, not as a traceback
            self.caption.setText(f"cannot read the history: {exc}")

    def refresh(self) -> None:
        """Read the cell's records again from the store and show them."""
        from rramlab.protocols.store import cell_history

        chip = self.shown_chip = self.chip_id()
        self.history = cell_history((self.wordline, self.bitline), chip, store=self.store)
        runs = list(dict.fromkeys(h.run_id for h in self.history))
        starts = {info.run_id: info.started_at for info in (self.store.run(r) for r in runs)}
        times = history_times(self.history, starts)
        shown_chip = chip or "(no chip id)"
        if not self.history:
            self.caption.setText(f"no records of cell {self.wordline},{self.bitline} on chip {shown_chip} in "
                                 f"{self.store.path}")
        else:
            self.caption.setText(f"cell {self.wordline},{self.bitline} on chip {shown_chip}: {len(self.history)} "
                                 f"record{'s' * (len(self.history) != 1)} in {len(runs)} run{'s' * (len(runs) != 1)} "
                                 f"({self.store.path}); a record without a conductance is listed, not drawn")
        self.table.setRowCount(len(self.history))
        for k, h in enumerate(self.history):
            g = "-" if not math.isfinite(h.conductance_s) else f"{h.conductance_s * 1e9:.2f}"
            for c, value in enumerate((h.at, h.run_id, h.protocol, h.type, h.seq, g)):
                item = QtWidgets.QTableWidgetItem(str(value))
                if c in (1, 4, 5):
                    item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(k, c, item)
        self.table.resizeColumnsToContents()
        self.plot.clear()
        self.legend.clear()
        self.curves = {}
        for n, run_id in enumerate(runs):
            keep = [k for k, h in enumerate(self.history) if h.run_id == run_id and math.isfinite(h.conductance_s)]
            if not keep:
                continue
            colour = CLASS_COLOURS[n % len(CLASS_COLOURS)]
            protocol = self.history[keep[0]].protocol
            self.curves[run_id] = self.plot.plot(times[keep], [self.history[k].conductance_s for k in keep],
                                                 pen=pg.mkPen(colour, width=1), symbol="o", symbolSize=5,
                                                 symbolBrush=colour, symbolPen=None,
                                                 name=f"run {run_id} ({protocol})")
        self.plot.enableAutoRange()

    def points(self) -> int:
        """Records drawn in the plot (those with a conductance)."""
        return sum(len(c.getData()[0]) for c in self.curves.values())


def newest_chip_id(store) -> str | None:
    """The chip id of the store's newest run (the chip on the probe station now, most likely)."""
    runs = store.runs(limit=1)
    return runs[0].metadata.chip_id if runs else None


def window_chip_id(window, store) -> str | None:
    """The chip id the window's run metadata fields hold, else that of the store's newest run."""
    form = getattr(window, "metadata_form", None)
    typed = form.texts().get("chip_id", "").strip() if form is not None else ""
    return typed or newest_chip_id(store)


def open_cell_history(window, wordline: int, bitline: int, chip: str | None = None) -> CellHistoryDialog:
    """Open (non-modal) the history of cell (wordline, bitline) from ``window``'s run store; the chip
    id defaults to the window's chip id field, else that of the store's newest run. RuntimeError
    naming the fix without a store."""
    store = getattr(window.history, "store", None)
    if store is None:
        raise RuntimeError("a cell's history is read from the run store, and runs are kept in memory only: "
                           "choose a run store file with Store… in the run history")
    dialog = CellHistoryDialog(store, wordline, bitline, chip if chip is not None else window_chip_id(window, store),
                               window)
    dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    window.cell_history_dialog = dialog
    return dialog


def attach(window) -> None:
    """Clicking a cell on any map of ``window`` opens its history: the conductance map, the transfer's
    chip map and the array map panel's."""
    def show(wordline: int, bitline: int) -> None:
        try:
            open_cell_history(window, wordline, bitline)
        except Exception as exc:  # noqa: BLE001 - said in the window
            window.show_error(exc)

    window.cell_history_dialog = None
    emit_cell_clicks(window.map.view, show, lambda: window.map.conductance.shape)
    transfer = window.plots.get("Transfer")
    if transfer is not None:
        emit_cell_clicks(transfer.chip.widget, show, lambda: transfer.g.shape)
    for plots in window.plots.values():
        signal = getattr(plots, "cell_clicked", None)
        if signal is not None:
            signal.connect(show)
