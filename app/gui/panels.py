"""Protocol panels: one generic panel, one ``ProtocolSpec`` per protocol.

A protocol that follows the pattern of ``protocols/ispp.py`` (a declared settings dataclass, a
``plan`` touching no instrument, ``run(instrument, plan, should_stop)`` yielding records) becomes a
panel by adding one ``ProtocolSpec`` to ``protocols()``: the form is built from its settings, the
window runs it on the worker thread, its records feed its plots and, where they name cells, the
conductance map. What a protocol takes besides its settings comes from input widgets: the cell
choice (``uses_cell``) and, through ``make_inputs``, anything else (a weights file and a resume box
for a transfer, an image count for inference), each an ``ExtraInputs`` whose ``values()`` are passed
to ``plan`` with the cell.

A transfer panel, say, would be::

    ProtocolSpec(name="Transfer", settings_class=TransferSettings,
                 plan=lambda settings, inputs, checker: transfer.plan(settings, inputs["weights"], checker),
                 run=transfer.run, total=lambda p: p.total_cells, unit="cell", uses_cell=False,
                 description="...", cell_updates=lambda record, plan: [((record.wordline, record.bitline),
                 record.conductance)], make_plots=TransferPlots, make_inputs=WeightsFileInput)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from PySide6 import QtCore, QtGui, QtWidgets

from rramlab.app.gui import jobs
from rramlab.app.gui.plots import IsppPlots, PlotSet
from rramlab.app.gui.settings_form import SettingsForm
from rramlab.drivers.interface import RequestChecker
from rramlab.protocols.settings import settings_dict


@dataclass(frozen=True)
class ProtocolSpec:
    """What the window needs to know about a protocol.

    plan(settings, inputs, checker) -> a plan, where inputs is a dict: "cell" (wordline, bitline) when
    ``uses_cell``, plus the ``values()`` of ``make_inputs()``; it raises, naming the value, before
    anything is connected. total(plan) -> how many records the run will yield;
    run(instrument, plan, should_stop) -> iterator of records; cell_updates(record, plan) ->
    [((wordline, bitline), siemens)] for the conductance map (empty if the record names no cell);
    make_plots() -> the PlotSet its records feed (None: the map only); make_inputs() -> an
    ExtraInputs widget for what the protocol takes besides its settings and cell (None: nothing).
    """

    name: str
    settings_class: type
    plan: Callable
    run: Callable[..., Iterator]
    total: Callable[[object], int]
    unit: str                      # what one record is, for the progress text ("pulse", "wordline")
    uses_cell: bool
    description: str
    cell_updates: Callable[[object, object], Iterable] = lambda record, plan: ()
    make_plots: Callable[[], PlotSet] | None = None
    make_inputs: Callable[[], "ExtraInputs"] | None = None
    more_settings: tuple = ()      # further settings classes: plan then gets (settings, *more) as settings
    store_name: str = ""           # the protocol's name in the run store (the command line's); default name
    store_settings: Callable | None = None  # (settings, inputs) -> the dict the run store keeps
    progress: Callable | None = None  # plan -> counter(record) -> units done so far (default: records)
    precheck: Callable | None = None  # (instrument, plan) -> None, raising to refuse the run before it starts

    @property
    def stored_as(self) -> str:
        return self.store_name or self.name

    def settings_for_store(self, settings, inputs: dict) -> dict:
        if self.store_settings is not None:
            return self.store_settings(settings, inputs)
        if isinstance(settings, tuple):
            return {type(s).__name__: settings_dict(s) for s in settings}
        return settings_dict(settings)


class ExtraInputs(QtWidgets.QWidget):
    """Inputs a protocol takes besides its settings and cell (a file, a count, a resume box)."""

    def values(self) -> dict:
        """What ``plan`` receives in ``inputs``, by name (plain values, they go into the run record)."""
        return {}

    def set_backend(self, checker: RequestChecker) -> None:
        """Re-bound the inputs for another backend's geometry and limits."""

    def attach(self, panel: "ProtocolPanel", window) -> None:
        """Called once the window is built: the panel (its forms) and the window (its history)."""

    def refresh(self) -> None:
        """The run history changed (a run ended): e.g. re-list the runs that can be resumed."""


def _ispp_spec() -> ProtocolSpec:
    from rramlab.protocols import ispp

    return ProtocolSpec(
        name="ISPP", settings_class=ispp.IsppSettings,
        plan=lambda settings, inputs, checker: ispp.plan(settings, inputs["cell"], checker), run=ispp.run,
        total=lambda p: p.total_pulses, unit="pulse", uses_cell=True,
        description="Incremental step pulse programming: a rising set ramp, then a falling reset ramp, "
                    "a read after every pulse. The whole plan is checked before the first pulse.",
        cell_updates=ispp_cell_updates, make_plots=IsppPlots, store_name="ispp")


def ispp_cell_updates(record, ispp_plan):
    """The cell an ISPP record read and its conductance (S): read current / the plan's read voltage."""
    return [((record.wordline, record.bitline), record.read_a / ispp_plan.settings.read_v)]


ARRAY_READ = ProtocolSpec(
    name="Array read", settings_class=jobs.ArrayReadSettings,
    plan=lambda settings, inputs, checker: jobs.plan(settings, None, checker), run=jobs.run,
    total=lambda p: p.total, unit="wordline", uses_cell=False,
    description="Read every cell of the array, one wordline at a time, at the read voltage; "
                "fills the conductance map (G = I / V).",
    cell_updates=lambda record, plan: record.conductances())


def protocols() -> list[ProtocolSpec]:
    """The panels of the window, in tab order. Add a spec here when a protocol lands."""
    from rramlab.app.gui import specs
    from rramlab.app.gui.lab_panels import lab_protocols

    return [_ispp_spec(), specs.ispva_spec(), specs.transfer_spec(), specs.inference_spec(), specs.power_spec(),
            ARRAY_READ, *lab_protocols()]


class ProtocolPanel(QtWidgets.QWidget):
    """The settings form of one protocol, the cell choice where the protocol takes one, and its
    description."""

    def __init__(self, spec: ProtocolSpec, parent=None):
        super().__init__(parent)
        self.spec = spec
        layout = QtWidgets.QVBoxLayout(self)
        about = QtWidgets.QLabel(spec.description)
        about.setWordWrap(True)
        layout.addWidget(about)
        self.form = SettingsForm(spec.settings_class, owner=spec.name)
        self.form.setObjectName(f"form_{spec.name}")
        self.forms = [self.form] + [SettingsForm(c, owner=spec.name) for c in spec.more_settings]
        if spec.more_settings:
            for form in self.forms:
                # the docstring's first phrase: a group box title does not wrap, so it must be short
                title = form.settings_class.__doc__.strip().split(".")[0].split(",")[0].split(" (")[0]
                box = QtWidgets.QGroupBox(title)
                QtWidgets.QVBoxLayout(box).addWidget(form)
                layout.addWidget(box)
        else:
            layout.addWidget(self.form)
        self.wordline = QtWidgets.QSpinBox()
        self.bitline = QtWidgets.QSpinBox()
        self.wordline.setObjectName("cell_wordline")
        self.bitline.setObjectName("cell_bitline")
        self.cell_note = QtWidgets.QLabel()
        self.cell_note.setStyleSheet("color: gray")
        if spec.uses_cell:
            row = QtWidgets.QHBoxLayout()
            row.addWidget(QtWidgets.QLabel("Cell: wordline"))
            row.addWidget(self.wordline)
            row.addWidget(QtWidgets.QLabel("bitline"))
            row.addWidget(self.bitline)
            row.addWidget(self.cell_note, 1)
            layout.addLayout(row)
        self.extra = spec.make_inputs() if spec.make_inputs is not None else None
        if self.extra is not None:
            layout.addWidget(self.extra)
        # the numbers the last run ended with, as the command line prints them (app/summaries.py)
        self.summary = QtWidgets.QLabel()
        self.summary.setObjectName("run_summary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.summary.hide()
        layout.addWidget(self.summary)
        layout.addStretch(1)

    def show_summary(self, heading: str, lines: list[str]) -> None:
        """Show the numbers a run ended with under the settings."""
        self.summary.setText("\n".join([heading, *lines]))
        self.summary.show()

    def set_backend(self, checker: RequestChecker, limits_source: str):
        """Bound the form and the cell choice by a backend's limits and geometry; returns the
        settings clamped into the new bounds, as ``SettingsForm.set_limits`` does."""
        clamped = [c for form in self.forms for c in form.set_limits(checker.limits, limits_source)]
        g = checker.geometry
        self.wordline.setRange(0, g.wordlines - 1)
        self.bitline.setRange(0, g.bitlines - 1)
        lone = g.shape == (1, 1)
        self.wordline.setEnabled(not lone)
        self.bitline.setEnabled(not lone)
        self.cell_note.setText("lone device" if lone else f"lines 0 to {g.wordlines - 1} / {g.bitlines - 1}")
        if self.extra is not None:
            self.extra.set_backend(checker)
        return clamped

    def inputs(self) -> dict:
        """What ``spec.plan`` takes besides the settings: the cell (if any) and the extra inputs."""
        values = {"cell": self.cell()} if self.spec.uses_cell else {}
        if self.extra is not None:
            values.update(self.extra.values())
        return values

    def settings(self):
        """The form's settings instance, or (settings, *more) for a protocol with several forms."""
        if len(self.forms) == 1:
            return self.form.settings()
        return tuple(form.settings() for form in self.forms)

    def form_for(self, settings_class) -> SettingsForm:
        return next(f for f in self.forms if f.settings_class is settings_class)

    def cell(self) -> tuple[int, int]:
        return self.wordline.value(), self.bitline.value()

    def set_cell(self, wordline: int, bitline: int) -> None:
        self.wordline.setValue(wordline)
        self.bitline.setValue(bitline)
