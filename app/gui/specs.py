"""The write-verify and network panels: ISPVA, weight transfer, inference, power.

Each is a ``ProtocolSpec`` (see ``panels.py``) over a protocol module's public functions, with an
``ExtraInputs`` for what it takes besides its settings: ISPVA a target (one cell) or a number of
devices per level; the transfer a weights file or a stopped run of the store to resume; inference
and power a network file, its variant and the test images. What goes into the run store is what
the command line writes for the same protocol (``transfer`` runs resume from either).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PySide6 import QtWidgets

from rramlab.app.gui import jobs
from rramlab.app.gui.panels import ExtraInputs, ProtocolSpec
from rramlab.app.gui.plots import InferencePlots, IspvaPlots, PowerPlots, TransferPlots
from rramlab.drivers.interface import RequestChecker, RequestError
from rramlab.protocols.settings import settings_dict

RESUMABLE = ("aborted", "failed", "unfinished")


def conductance_updates(record, plan=None):
    """The cell a write-verify record read and its conductance (S); none for other records."""
    g = getattr(record, "conductance_s", None)
    if g is None or not hasattr(record, "wordline"):
        return []
    return [((record.wordline, record.bitline), g)]


def _file_row(placeholder: str, filter_: str, parent) -> tuple[QtWidgets.QHBoxLayout, QtWidgets.QLineEdit]:
    row = QtWidgets.QHBoxLayout()
    edit = QtWidgets.QLineEdit()
    edit.setPlaceholderText(placeholder)
    browse = QtWidgets.QPushButton("…")
    browse.setFixedWidth(28)

    def pick():
        path, _ = QtWidgets.QFileDialog.getOpenFileName(parent, placeholder, edit.text(), filter_)
        if path:
            edit.setText(path)
            edit.editingFinished.emit()

    browse.clicked.connect(pick)
    row.addWidget(edit, 1)
    row.addWidget(browse)
    return row, edit


# ----- ISPVA -----

class IspvaInputs(ExtraInputs):
    """One cell to a target conductance, or the paper's eight levels: ``devices`` cells per level,
    from the chosen cell on across the array (a lone device is programmed again for each)."""

    def __init__(self):
        super().__init__()
        form = QtWidgets.QFormLayout(self)
        self.mode = QtWidgets.QComboBox()
        self.mode.setObjectName("ispva_mode")
        self.mode.addItem("one cell to a target", "single")
        self.mode.addItem("the eight levels (10 to 80 nS)", "levels")
        self.target = QtWidgets.QDoubleSpinBox()
        self.target.setObjectName("ispva_target")
        self.target.setRange(10.0, 80.0)
        self.target.setSingleStep(10.0)
        self.target.setValue(40.0)
        self.target.setSuffix(" nS")
        self.devices = QtWidgets.QSpinBox()
        self.devices.setObjectName("ispva_devices")
        self.devices.setRange(1, 72)
        self.devices.setValue(5)
        self.devices.setToolTip("cells per level; on the array they follow the chosen cell along the wordlines")
        form.addRow("program", self.mode)
        form.addRow("target conductance", self.target)
        form.addRow("devices per level", self.devices)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self._cells = 1
        self._mode_changed()

    def _mode_changed(self, *_):
        single = self.mode.currentData() == "single"
        self.target.setEnabled(single)
        self.devices.setEnabled(not single)

    def set_backend(self, checker: RequestChecker) -> None:
        self._cells = checker.geometry.wordlines * checker.geometry.bitlines
        self.devices.setMaximum(max(1, self._cells // 8) if self._cells > 1 else 72)

    def values(self) -> dict:
        if self.mode.currentData() == "single":
            return {"mode": "single", "target_s": self.target.value() * 1e-9}
        return {"mode": "levels", "devices_per_level": self.devices.value()}


def ispva_cells(inputs: dict, geometry) -> tuple[list, list]:
    """(cells, targets) of an ISPVA panel run: one cell, or ``devices_per_level`` cells per level
    in row-major order from the chosen cell (all the lone device on a 1 x 1 array)."""
    from rramlab.protocols.ispva import PAPER_LEVELS_S

    if inputs["mode"] == "single":
        return [tuple(inputs["cell"])], [inputs["target_s"]]
    n = inputs["devices_per_level"]
    targets = [t for t in PAPER_LEVELS_S for _ in range(n)]
    if geometry.shape == (1, 1):
        return [(0, 0)] * len(targets), targets
    w0, b0 = inputs["cell"]
    start = w0 * geometry.bitlines + b0
    count = geometry.wordlines * geometry.bitlines
    if start + len(targets) > count:
        raise RequestError(f"{len(targets)} cells from cell {w0},{b0} run past the end of the array: choose an "
                           f"earlier cell or fewer devices per level")
    return [divmod(start + k, geometry.bitlines) for k in range(len(targets))], targets


def ispva_spec() -> ProtocolSpec:
    from rramlab.protocols import ispva

    def plan(settings, inputs, checker):
        cells, targets = ispva_cells(inputs, checker.geometry)
        return ispva.plan(settings, cells, targets, checker)

    def store(settings, inputs):
        return {**settings_dict(settings), "mode": inputs["mode"],
                **({"target_s": inputs["target_s"]} if inputs["mode"] == "single"
                   else {"devices_per_level": inputs["devices_per_level"], "levels_s": list(ispva.PAPER_LEVELS_S)})}

    def progress(p):
        done = [0]

        def count(record):
            done[0] += isinstance(record, ispva.IspvaResult)
            return done[0]
        return count

    return ProtocolSpec(
        name="ISPVA", settings_class=ispva.IspvaSettings, plan=plan, run=ispva.run,
        total=lambda p: len(p.cells), unit="cell", uses_cell=True,
        description="Write-verify: read at 1 V, a set pulse aimed at the target level and stepped by the measured "
                    "error, a reset on overshoot, until the cell is within tolerance or its pulse budget is spent. "
                    "One cell to a target, or the eight levels G1..G8 on several cells each.",
        cell_updates=conductance_updates, make_plots=IspvaPlots, make_inputs=IspvaInputs, store_name="ispva",
        store_settings=store, progress=progress)


# ----- weight transfer -----

class TransferInputs(ExtraInputs):
    """A weights file (.npz with ``levels``), or a stopped transfer of the run store to continue
    (its weights and settings come back into the forms)."""

    def __init__(self):
        super().__init__()
        form = QtWidgets.QFormLayout(self)
        row, self.weights = _file_row("weights file (.npz with 'levels')", "weight files (*.npz)", self)
        self.weights.setObjectName("transfer_weights")
        form.addRow("weights", row)
        self.resume = QtWidgets.QComboBox()
        self.resume.setObjectName("transfer_resume")
        self.resume.setToolTip("continue a stopped transfer of the run store on the same chip: every cell is read "
                               "first and a cell already within tolerance gets no pulse")
        form.addRow("continue", self.resume)
        self.note = QtWidgets.QLabel()
        self.note.setStyleSheet("color: gray")
        self.note.setWordWrap(True)
        form.addRow(self.note)
        self.panel = self.window_ = None
        self._levels = None
        self.resume.addItem("a new transfer", None)
        self.resume.currentIndexChanged.connect(self._resume_changed)

    def attach(self, panel, window) -> None:
        self.panel, self.window_ = panel, window
        self.refresh()

    def refresh(self) -> None:
        """Re-list the transfers of the store that stopped before the end."""
        if self.window_ is None:
            return
        keep = self.resume.currentData()
        self.resume.blockSignals(True)
        self.resume.clear()
        self.resume.addItem("a new transfer", None)
        for run in reversed(self.window_.history.runs()):
            if run.protocol == "transfer" and run.status in RESUMABLE:
                self.resume.addItem(f"run #{run.run_id} ({run.status}, {run.count} records)", run.run_id)
        index = self.resume.findData(keep)
        self.resume.setCurrentIndex(max(index, 0))
        self.resume.blockSignals(False)
        if index < 0 and keep is not None:
            self._resume_changed()

    def _resume_changed(self, *_):
        run_id = self.resume.currentData()
        self.weights.setEnabled(run_id is None)
        self._levels = None
        if run_id is None:
            self.note.setText("")
            return
        self.load_run(run_id)

    def load_run(self, run_id: int) -> None:
        """Take the weights and settings of stored transfer ``run_id`` into the forms."""
        from rramlab.protocols import transfer
        from rramlab.protocols.ispva import IspvaSettings
        from rramlab.protocols.weights import check_levels

        run = self.window_.history.get(run_id)
        st = run.settings
        self._levels = check_levels(np.asarray(st["levels"]), f"run {run_id}")
        for cls, key in ((transfer.TransferSettings, "transfer"), (IspvaSettings, "ispva")):
            self.panel.form_for(cls).set_settings(cls(**st[key]))
        self.weights.setText(str(st.get("weights_file") or ""))
        index = self.resume.findData(run_id)
        if index >= 0 and self.resume.currentIndex() != index:
            self.resume.blockSignals(True)
            self.resume.setCurrentIndex(index)
            self.resume.blockSignals(False)
            self.weights.setEnabled(False)
        self.note.setText(f"continues run #{run_id}: its weights ({self._levels.shape[0]} x {self._levels.shape[1]}) "
                          "and settings; run it on the chip it was stopped on")

    def values(self) -> dict:
        from rramlab.protocols.weights import load_weights

        run_id = self.resume.currentData()
        if run_id is not None:
            return {"weights_file": self.weights.text().strip() or None, "resume_run": run_id,
                    "_levels": self._levels}
        path = self.weights.text().strip()
        if not path:
            raise RequestError("no weights file chosen: choose an .npz with a 'levels' array (e.g. one written by "
                               "rramlab train), or a stopped run to continue")
        return {"weights_file": path, "resume_run": None, "_levels": load_weights(path)}

    def set_weights(self, path) -> None:
        self.resume.setCurrentIndex(0)
        self.weights.setText(str(path))


def transfer_progress(p):
    """Cells finished so far: accepted at the first read, settled after a row pulse, or through
    their verify loop (a re-programmed cell is counted once)."""
    from rramlab.protocols import transfer
    from rramlab.protocols.ispva import IspvaResult

    done: set = set()

    def count(record):
        if isinstance(record, IspvaResult):
            done.add((record.wordline, record.bitline))
        elif isinstance(record, transfer.CellRead) and record.stage in ("start", "settled"):
            t, g = record.target_s, record.conductance_s
            if (g <= p.settings.hrs_max_s) if t == 0.0 else abs(g - t) <= p.ispva.tolerance_s:
                done.add((record.wordline, record.bitline))
        return len(done)
    return count


def transfer_spec() -> ProtocolSpec:
    from rramlab.protocols import transfer
    from rramlab.protocols.ispva import IspvaSettings

    def plan(settings, inputs, checker):
        ts, isettings = settings
        return transfer.plan(ts, isettings, inputs["_levels"], checker)

    def store(settings, inputs):
        ts, isettings = settings
        from rramlab.protocols.network_check import target_fingerprint
        from rramlab.protocols.weights import differential_targets

        levels = np.asarray(inputs["_levels"])
        return {"transfer": settings_dict(ts), "ispva": settings_dict(isettings),
                "levels": levels.tolist(), "weights_file": inputs.get("weights_file"),
                "target_fingerprint": target_fingerprint(differential_targets(levels, ts.mapping))}

    return ProtocolSpec(
        name="Transfer", settings_class=transfer.TransferSettings, more_settings=(IspvaSettings,), plan=plan,
        run=transfer.run, total=lambda p: len(p.cells), unit="cell", uses_cell=False,
        description="Weight transfer: levels -8..8 become differential targets (10..80 nS, the other cell of "
                    "each pair in HRS), written cell by cell (half-bias) or row by row (fast) with verify, then the "
                    "whole region re-read and disturbed cells re-programmed. A stopped transfer continues from "
                    "the run store.",
        cell_updates=conductance_updates, make_plots=TransferPlots, make_inputs=TransferInputs,
        store_name="transfer", store_settings=store, progress=transfer_progress)


# ----- inference and power -----

@functools.lru_cache(maxsize=2)
def _network(path: str, mtime: float):
    from rramlab.protocols.network import load_network

    return load_network(path)


def load_network(path):
    """The network file at ``path`` (read again only when the file changed)."""
    p = Path(path)
    if not str(path).strip():
        raise RequestError("no network file chosen: make one with rramlab train --out net.npz and choose it")
    if not p.exists():
        raise FileNotFoundError(f"network file {p} does not exist: make one with rramlab train --out {p}")
    return _network(str(p.resolve()), p.stat().st_mtime)


@functools.lru_cache(maxsize=1)
def mnist_data():
    """The MNIST sample (read once per process)."""
    from rramlab.protocols import mnist

    return mnist.load(None)


def test_image(index: int):
    """Pixels (784,) of test image ``index``."""
    return mnist_data().test.images[index]


class NetworkInputs(ExtraInputs):
    """A network file (``rramlab train --out``), which of its variants is in the array, and the
    test images: ``images`` balanced over the digits, or one test image by number."""

    def __init__(self, power: bool = False):
        super().__init__()
        form = QtWidgets.QFormLayout(self)
        row, self.network = _file_row("network file (.npz from rramlab train)", "network files (*.npz)", self)
        self.network.setObjectName("network_file")
        form.addRow("network", row)
        self.variant = QtWidgets.QComboBox()
        self.variant.addItem("QT (3-bit)", "qt")
        self.variant.addItem("QT & PR (pruned, 3-bit)", "qtpr")
        form.addRow("in the array", self.variant)
        self.images = QtWidgets.QSpinBox()
        self.images.setObjectName("image_count")
        self.images.setRange(1, 1000)
        self.images.setValue(30 if power else 20)
        self.images.setToolTip("test images, balanced over the digits (20: two of each)")
        form.addRow("test images", self.images)
        self.single = QtWidgets.QCheckBox("one test image, number")
        self.single.setObjectName("single_image")
        self.index = QtWidgets.QSpinBox()
        self.index.setObjectName("image_index")
        self.index.setRange(0, 999)
        one = QtWidgets.QHBoxLayout()
        one.addWidget(self.single)
        one.addWidget(self.index, 1)
        form.addRow(one)
        self.single.toggled.connect(lambda on: (self.images.setEnabled(not on), self.index.setEnabled(on)))
        self.index.setEnabled(False)
        self.transfer_button = QtWidgets.QPushButton("Transfer this variant's weights into the array…")
        self.transfer_button.setToolTip("writes the variant's weight file next to the network file and opens it "
                                        "in the Transfer panel")
        self.transfer_button.clicked.connect(self._to_transfer)
        form.addRow(self.transfer_button)
        self.window_ = None

    def attach(self, panel, window) -> None:
        self.window_ = window

    def values(self) -> dict:
        out = {"network": self.network.text().strip(), "variant": self.variant.currentData()}
        if self.single.isChecked():
            out["image"] = self.index.value()
        else:
            out["images"] = self.images.value()
        return out

    def weights_file(self) -> Path:
        """Write the chosen variant's second layer as a weight file beside the network file."""
        from rramlab.protocols.network import save_weight_file

        path = Path(self.network.text().strip())
        net = load_network(path)
        variant = net.variant(self.variant.currentData())
        return save_weight_file(path.with_name(f"{path.stem}.{variant.name}.weights.npz"), variant)

    def open_transfer(self) -> Path:
        """Write the variant's weight file and put it in the Transfer panel with the command line's
        scheme for a network (``rramlab infer``/``power``/``reproduce``: fast); returns the file."""
        from rramlab.protocols.reproduce import DEFAULT_TRANSFER
        from rramlab.protocols.transfer import TransferSettings

        window = self.window_
        out = self.weights_file()
        panel = window.panels["Transfer"]
        panel.extra.set_weights(out)
        form = panel.form_for(TransferSettings)
        form.set_value("scheme", DEFAULT_TRANSFER.scheme)
        window.show_panel("Transfer")
        return out

    def transfer_now(self, then: str | None = None):
        """Transfer the variant's weights into the array now (the Transfer panel, fast scheme); with
        ``then`` (a panel name) that panel runs once the transfer has finished. Returns the Run."""
        self.open_transfer()
        return self.window_.run_protocol("Transfer", then=then)

    def _to_transfer(self):
        window = self.window_
        try:
            out = self.open_transfer()
        except Exception as exc:  # noqa: BLE001 - shown in the window
            window.show_error(exc)
            return
        window.statusBar().showMessage(f"weights of the network written to {out}: press Run to transfer them")


def inference_plan(settings, inputs, checker):
    """An inference plan from a panel's inputs: the network file's variant on the chosen test images."""
    from rramlab.protocols import inference

    net = load_network(inputs["network"])
    variant = net.variant(inputs["variant"])
    test = mnist_data().test
    if "image" in inputs:
        if not 0 <= inputs["image"] < len(test):
            raise RequestError(f"test image {inputs['image']} is outside the test set (0 to {len(test) - 1})")
        idx = np.array([inputs["image"]])
    else:
        idx = jobs.balanced_order(test.labels, inputs["images"])
    return inference.plan(settings, variant, test, idx, checker)


def network_precheck(instrument, inference_plan) -> None:
    """Refuse inference or power on an array that does not hold the plan's network (one read of its
    cells, ``protocols/network_check.py``): NetworkNotHeld naming the fix in the window."""
    from rramlab.protocols.network_check import require_held

    require_held(instrument, inference_plan.variant,
                 fix="transfer this variant's weights into the array first (Transfer now, or the button "
                     "'Transfer this variant's weights into the array…' of this panel)")


def _network_store(settings, inputs):
    return {**settings_dict(settings), **{k: v for k, v in inputs.items() if not k.startswith("_")}}


def inference_spec() -> ProtocolSpec:
    from rramlab.protocols.inference import InferenceSettings

    return ProtocolSpec(
        name="Inference", settings_class=InferenceSettings, plan=inference_plan, run=jobs.run_inference,
        total=lambda p: p.n_images, unit="image", uses_cell=False,
        description="Spiking inference, 784-24-10: the first layer in software, the second in the array. Each "
                    "step the hidden spikes drive the wordlines (spike voltage or 0 V) and the 20 bitline currents "
                    "are read; class c scores I(c) - I(10 + c), summed over the steps. The second layer must be "
                    "in the array: transfer the variant's weights first.",
        make_plots=lambda: InferencePlots(image_source=test_image), make_inputs=NetworkInputs, store_name="infer",
        store_settings=_network_store, precheck=network_precheck)


def power_spec() -> ProtocolSpec:
    from rramlab.protocols.inference import InferenceSettings

    return ProtocolSpec(
        name="Power", settings_class=InferenceSettings, plan=inference_plan, run=jobs.run_power,
        total=lambda p: p.n_images, unit="image", uses_cell=False,
        description="Average power during inference (eqns 1-3): the cells' conductances read at the spike "
                    "voltage, P = V^2 G per cell and step, averaged over the steps and summed over the wordlines; "
                    "per image, over time and per class.",
        make_plots=PowerPlots, make_inputs=lambda: NetworkInputs(power=True), store_name="power",
        store_settings=_network_store, precheck=network_precheck)

