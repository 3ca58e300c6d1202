"""The backend choice at the top of the window: the twin or a bench file."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from rramlab.app.gui.backends import ENGINES, BenchChoice, TwinChoice, VirtualBenchChoice, default_virtual_bench


class BackendPanel(QtWidgets.QGroupBox):
    """Twin (lone device or 24 x 24 array, wire resistance, seed, chip file, engine) or a bench
    file with a Connect button. ``choice()`` is what is selected now; ``changed`` fires when the
    user edits it, ``connect_requested`` when Connect is pressed."""

    changed = QtCore.Signal()
    connect_requested = QtCore.Signal()
    save_chip_requested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__("Backend", parent)
        outer = QtWidgets.QVBoxLayout(self)

        row = QtWidgets.QHBoxLayout()
        self.twin_radio = QtWidgets.QRadioButton("Simulation twin")
        self.virtual_radio = QtWidgets.QRadioButton("Virtual bench (the twin behind the 4156C/E5250A commands)")
        self.virtual_radio.setToolTip("every command goes through the drivers and the instruments' own command "
                                      "sets to the twin; the status line shows the time a real bench would take")
        self.bench_radio = QtWidgets.QRadioButton("Probe station (bench file)")
        self.twin_radio.setChecked(True)
        row.addWidget(self.twin_radio)
        row.addWidget(self.virtual_radio)
        row.addWidget(self.bench_radio)
        row.addStretch(1)
        outer.addLayout(row)

        self.twin_box = QtWidgets.QWidget()
        t = QtWidgets.QHBoxLayout(self.twin_box)
        t.setContentsMargins(0, 0, 0, 0)
        self.geometry_combo = QtWidgets.QComboBox()
        self.geometry_combo.addItem("lone device", False)
        self.geometry_combo.addItem("24 x 24 array", True)
        self.wire = QtWidgets.QDoubleSpinBox()
        self.wire.setRange(0.0, 1000.0)
        self.wire.setDecimals(2)
        self.wire.setValue(2.0)
        self.wire.setSuffix(" Ω")
        self.wire.setToolTip("wire resistance per line segment between neighbouring cells (array only)")
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, 2 ** 31 - 1)
        self.seed.setToolTip("random seed of the chip: the same seed gives the same chip")
        self.vt_sigma = QtWidgets.QDoubleSpinBox()
        self.vt_sigma.setRange(0.0, 500.0)
        self.vt_sigma.setDecimals(1)
        self.vt_sigma.setSuffix(" mV")
        self.vt_sigma.setToolTip("device-to-device variability: standard deviation of each switch's threshold "
                                 "(drawn once per chip from the seed)")
        self.ron_sigma = QtWidgets.QDoubleSpinBox()
        self.ron_sigma.setRange(0.0, 100.0)
        self.ron_sigma.setDecimals(1)
        self.ron_sigma.setSuffix(" %")
        self.ron_sigma.setToolTip("device-to-device variability: spread of RON (standard deviation of ln RON, "
                                  "5 % = 0.05)")
        self.engine = QtWidgets.QComboBox()
        for e in ENGINES:
            self.engine.addItem(e)
        self.engine.setToolTip("spice: every call in ngspice (the reference); fast: the nodal engine held to it; "
                               "auto: fast except pulses whose switch order only ngspice settles")
        self.chip = QtWidgets.QLineEdit()
        self.chip.setPlaceholderText("chip file (optional, .npz)")
        chip_browse = QtWidgets.QPushButton("…")
        chip_browse.setFixedWidth(28)
        chip_browse.clicked.connect(self._browse_chip)
        self.save_chip = QtWidgets.QPushButton("Save chip…")
        self.save_chip.clicked.connect(self.save_chip_requested)
        for label, w in (("", self.geometry_combo), ("wire", self.wire), ("seed", self.seed),
                         ("spread VT", self.vt_sigma), ("RON", self.ron_sigma), ("engine", self.engine)):
            if label:
                t.addWidget(QtWidgets.QLabel(label))
            t.addWidget(w)
        t.addWidget(self.chip, 1)
        t.addWidget(chip_browse)
        t.addWidget(self.save_chip)
        outer.addWidget(self.twin_box)

        self.bench_box = QtWidgets.QWidget()
        b = QtWidgets.QHBoxLayout(self.bench_box)
        b.setContentsMargins(0, 0, 0, 0)
        self.bench_path = QtWidgets.QLineEdit()
        self.bench_path.setPlaceholderText("bench TOML file (see docs/bench.md)")
        bench_browse = QtWidgets.QPushButton("…")
        bench_browse.setFixedWidth(28)
        bench_browse.clicked.connect(self._browse_bench)
        self.connect_button = QtWidgets.QPushButton("Connect")
        self.connect_button.clicked.connect(self.connect_requested)
        b.addWidget(self.bench_path, 1)
        b.addWidget(bench_browse)
        b.addWidget(self.connect_button)
        outer.addWidget(self.bench_box)

        self.status = QtWidgets.QLabel("not connected")
        self.status.setObjectName("backend_status")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)

        self.virtual_path = QtWidgets.QLineEdit(str(default_virtual_bench()))
        self.virtual_path.setToolTip("a bench file with [bench] visa_library = \"@rramlab-twin\"")
        self._virtual_label = QtWidgets.QLabel("virtual bench file")
        b.insertWidget(0, self._virtual_label)
        b.insertWidget(1, self.virtual_path, 1)

        for signal in (self.twin_radio.toggled, self.virtual_radio.toggled, self.virtual_path.editingFinished,
                       self.geometry_combo.currentIndexChanged, self.wire.valueChanged,
                       self.seed.valueChanged, self.vt_sigma.valueChanged, self.ron_sigma.valueChanged,
                       self.engine.currentIndexChanged, self.chip.editingFinished,
                       self.bench_path.editingFinished):
            signal.connect(self._on_edit)
        self._on_edit()

    def _on_edit(self, *_):
        twin, virtual = self.twin_radio.isChecked(), self.virtual_radio.isChecked()
        self.twin_box.setVisible(twin or virtual)
        self.bench_box.setVisible(not twin)
        for w in (self._virtual_label, self.virtual_path):
            w.setVisible(virtual)
        self.bench_path.setVisible(not virtual and not twin)
        self.connect_button.setVisible(True)
        from_chip = bool(self.chip.text().strip())
        # the virtual bench's chip is the bench file's [array] (24 x 24), without variability
        self.wire.setEnabled((virtual or bool(self.geometry_combo.currentData())) and not from_chip)
        for w in (self.seed,):
            w.setEnabled(not from_chip)  # a chip file carries its own
        for w in (self.geometry_combo, self.vt_sigma, self.ron_sigma):
            w.setEnabled(not from_chip and not virtual)
        self.changed.emit()

    def _browse_chip(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Chip file", "", "chip files (*.npz)")
        if path:
            self.chip.setText(path)
            self._on_edit()

    def _browse_bench(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Bench file", "", "bench files (*.toml)")
        if path:
            (self.virtual_path if self.virtual_radio.isChecked() else self.bench_path).setText(path)
            self._on_edit()

    def choice(self):
        if self.twin_radio.isChecked():
            array = bool(self.geometry_combo.currentData())
            return TwinChoice(array=array, wire_resistance=self.wire.value() if array else None,
                              seed=self.seed.value(), chip_file=self.chip.text().strip() or None,
                              engine=self.engine.currentText(), threshold_sigma_v=self.vt_sigma.value() * 1e-3,
                              on_resistance_sigma=self.ron_sigma.value() / 100)
        if self.virtual_radio.isChecked():
            return VirtualBenchChoice(self.virtual_path.text().strip(), seed=self.seed.value(),
                                      wire_resistance=self.wire.value(), engine=self.engine.currentText(),
                                      chip_file=self.chip.text().strip() or None)
        return BenchChoice(self.bench_path.text().strip())

    # ----- for scripts and tests: set a choice as a user would -----
    def select_twin(self, array: bool = False, wire_resistance: float = 2.0, seed: int = 0, engine: str = "auto",
                    chip_file: str = "", threshold_sigma_v: float = 0.0, on_resistance_sigma: float = 0.0) -> None:
        self.blockSignals(True)
        self.vt_sigma.setValue(threshold_sigma_v * 1e3)
        self.ron_sigma.setValue(on_resistance_sigma * 100)
        self.geometry_combo.setCurrentIndex(1 if array else 0)
        self.wire.setValue(wire_resistance)
        self.seed.setValue(seed)
        self.engine.setCurrentText(engine)
        self.chip.setText(chip_file)
        self.twin_radio.setChecked(True)
        self.blockSignals(False)
        self._on_edit()

    def select_virtual_bench(self, path: str | None = None, seed: int = 0, engine: str = "fast",
                             wire_resistance: float = 2.0, chip_file: str = "") -> None:
        self.blockSignals(True)
        self.virtual_path.setText(str(path or default_virtual_bench()))
        self.seed.setValue(seed)
        self.engine.setCurrentText(engine)
        self.wire.setValue(wire_resistance)
        self.chip.setText(chip_file)
        self.virtual_radio.setChecked(True)
        self.blockSignals(False)
        self._on_edit()

    def select_bench(self, path: str) -> None:
        self.blockSignals(True)
        self.bench_path.setText(str(path))
        self.bench_radio.setChecked(True)
        self.blockSignals(False)
        self._on_edit()
