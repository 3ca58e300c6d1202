"""The lab protocols' panels: I-V, array map, endurance, retention, disturb.

Each is a ``ProtocolSpec`` (``panels.py``) over its protocol module (``protocols/iv.py``,
``array_map.py``, ``endurance.py``, ``retention.py``, ``disturb.py``): the form is the module's
settings declaration, ``plan`` is the module's own (so a panel refuses what the command line
refuses, with the same line, before any instrument command), ``run`` its generator. What the
command line takes in flags of its own comes from an ``ExtraInputs``: the map's region, the
retention's cells and levels (the same text as ``--region``, ``--cells`` and ``--levels``, parsed
by the same functions). They are stored under the command line's protocol names ("iv", "map",
"endurance", "retention", "disturb"), so ``rramlab runs`` and ``rramlab cell`` see them.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6 import QtWidgets

from rramlab.app.gui.lab_plots import ArrayMapPlots, DisturbPlots, EndurancePlots, IvPlots, RetentionPlots
from rramlab.app.gui.panels import ExtraInputs, ProtocolSpec
from rramlab.app.gui.specs import conductance_updates
from rramlab.drivers.interface import RequestChecker
from rramlab.protocols.settings import settings_dict


def _text_row(form: QtWidgets.QFormLayout, label: str, name: str, placeholder: str, tip: str) -> QtWidgets.QLineEdit:
    edit = QtWidgets.QLineEdit()
    edit.setObjectName(name)
    edit.setPlaceholderText(placeholder)
    edit.setToolTip(tip)
    form.addRow(label, edit)
    return edit


# ----- the twin's wear and drift (rramlab endurance/retention/disturb --aging) -----

class AgingInputs(ExtraInputs):
    """``--aging`` and ``--cycles-to-failure`` of the stress commands: the twin's wear and
    retention drift (``sim/aging.py``, assumed parameters), at the run metadata's temperature when
    one is given (else 300 K). As on the command line, a twin that already ages keeps its state."""

    def __init__(self, build: bool = True):
        super().__init__()
        self.window_ = None
        if build:
            self.add_aging_rows(QtWidgets.QFormLayout(self))

    def add_aging_rows(self, form: QtWidgets.QFormLayout) -> None:
        """The check box and the cycles to failure, as rows of ``form``."""
        self.aging = QtWidgets.QCheckBox("twin: wear and drift (sim/aging.py)")
        self.aging.setObjectName("twin_aging")
        self.aging.setToolTip("the twin's cells wear with set/reset cycles and their states drift with (simulated) "
                              "time, at the run's temperature; a twin that already ages keeps its state. Off: "
                              "the ideal device. Not on a bench: a real chip ages by itself")
        self.cycles_to_failure = QtWidgets.QDoubleSpinBox()
        self.cycles_to_failure.setObjectName("cycles_to_failure")
        self.cycles_to_failure.setDecimals(0)
        self.cycles_to_failure.setRange(1.0, 1e12)
        self.cycles_to_failure.setValue(1e5)
        self.cycles_to_failure.setToolTip("median cycles at which a cell's window closes (the wear model's N_f)")
        self.cycles_to_failure.setEnabled(False)
        self.aging.toggled.connect(self.cycles_to_failure.setEnabled)
        form.addRow(self.aging)
        form.addRow("cycles to failure", self.cycles_to_failure)

    def attach(self, panel, window) -> None:
        self.window_ = window

    def values(self) -> dict:
        if not self.aging.isChecked():
            return {}
        out = {"aging": True, "cycles_to_failure": self.cycles_to_failure.value()}
        form = getattr(self.window_, "metadata_form", None)
        temperature = form.metadata().temperature_k if form is not None else None
        if temperature is not None:
            out["temperature_k"] = temperature
        return out


class AgedPlan:
    """A protocol's plan to be run on a twin given wear and drift first (``aging``: an Aging);
    every attribute but ``plan`` and ``aging`` is the plan's own."""

    def __init__(self, plan, aging):
        self.plan, self.aging = plan, aging

    def __getattr__(self, name):
        return getattr(self.plan, name)


def with_aging(protocol_plan):
    """``plan`` of a panel whose inputs may ask for the twin's wear and drift: refused on a bench
    (the plan against the instrument, before any command), an AgedPlan on the twin."""
    def plan(settings, inputs, checker):
        p = protocol_plan(settings, inputs, checker)
        if not inputs.get("aging"):
            return p
        from rramlab.drivers.interface import CrossbarInstrument, RequestError
        from rramlab.sim.aging import Aging

        if isinstance(checker, CrossbarInstrument) and not hasattr(checker, "advance_time"):
            raise RequestError("wear and drift apply to the twin only: uncheck 'twin: wear and drift' on a bench "
                               "(a real chip ages by itself)")
        changes = {"wear_cycles_to_failure": float(inputs.get("cycles_to_failure", 1e5))}
        if inputs.get("temperature_k") is not None:
            changes["temperature_k"] = float(inputs["temperature_k"])
        try:
            aging = Aging(**changes)
        except ValueError as exc:
            raise RequestError(f"twin wear and drift: {exc}") from None
        return AgedPlan(p, aging)
    return plan


def with_aging_run(protocol_run):
    """``run`` that gives the twin its wear and drift state first (as the command line's
    ``--aging``: a twin that already ages keeps its state, taking only a new temperature)."""
    def run(instrument, p, should_stop=None):
        if isinstance(p, AgedPlan):
            from dataclasses import replace as _replace

            from rramlab.sim.aging import AgingState

            kept = getattr(instrument, "aging", None)
            if kept is None:
                instrument.aging = AgingState(p.aging, instrument.geometry.shape, instrument.seed)
            else:
                kept.aging = _replace(kept.aging, temperature_k=p.aging.temperature_k)
            p = p.plan
        return protocol_run(instrument, p, should_stop)
    return run


# ----- I-V -----

def iv_spec() -> ProtocolSpec:
    from rramlab.protocols import iv

    return ProtocolSpec(
        name="I-V", settings_class=iv.IvSettings,
        plan=lambda settings, inputs, checker: iv.plan(settings, checker, inputs["cell"]), run=iv.run,
        total=lambda p: len(p.voltages), unit="point", uses_cell=True,
        description="DC staircase sweep of one cell (the paper's Fig. 3): 0 V up to the set peak and back, then "
                    "down to the reset peak and back, in the analyzer's sweep mode on a bench. Every step is "
                    "checked against the safe operating area first; the HT-RRAM needs no forming and no "
                    "compliance. The plot is |I| (log) against V.",
        make_plots=IvPlots, store_name="iv")


# ----- array map -----

class MapInputs(ExtraInputs):
    """The region to read, as ``rramlab map --region``: W0:W1,B0:B1 (ends excluded); empty: the
    whole array."""

    def __init__(self):
        super().__init__()
        form = QtWidgets.QFormLayout(self)
        self.region = _text_row(form, "region", "map_region", "whole array (or W0:W1,B0:B1, e.g. 0:4,0:4)",
                                "wordlines W0..W1-1 by bitlines B0..B1-1, ends excluded as in rramlab map --region")
        self._shape = (1, 1)

    def set_backend(self, checker: RequestChecker) -> None:
        self._shape = checker.geometry.shape

    def values(self) -> dict:
        from rramlab.protocols.array_map import parse_region

        text = self.region.text().strip()
        return {"region": text or None, "_region": parse_region(text) if text else None,
                "array_shape": list(self._shape)}


def map_spec() -> ProtocolSpec:
    from rramlab.protocols import array_map

    def store(settings, inputs):
        return {**settings_dict(settings), "region": inputs.get("region")}

    def progress(p):
        done = [0]

        def count(record):
            done[0] += isinstance(record, array_map.MapRead)
            return done[0]
        return count

    return ProtocolSpec(
        name="Map", settings_class=array_map.MapSettings,
        plan=lambda settings, inputs, checker: array_map.plan(settings, checker, inputs.get("_region")),
        run=array_map.run, total=lambda p: len(p.cells), unit="cell", uses_cell=False,
        description="Read every cell of the array (or a region) at the read voltage, a wordline's bitlines "
                    "together, nothing pulsed. The map is a log-scale heat map over the array's lines with the "
                    "counts per level (HRS, 10..80 nS); click a cell to see its history across runs.",
        cell_updates=conductance_updates, make_plots=ArrayMapPlots, make_inputs=MapInputs, store_name="map",
        store_settings=store, progress=progress)


# ----- endurance -----

def endurance_updates(record, plan):
    """The cell an endurance read left in HRS (the reset comes last in a cycle): G = I / V_read."""
    return [((record.wordline, record.bitline), record.hrs_a / plan.settings.read_v)]


def endurance_spec() -> ProtocolSpec:
    from rramlab.protocols import endurance

    return ProtocolSpec(
        name="Endurance", settings_class=endurance.EnduranceSettings,
        plan=with_aging(lambda settings, inputs, checker: endurance.plan(settings, inputs["cell"], checker)),
        run=with_aging_run(endurance.run), total=lambda p: p.settings.cycles, unit="cycle", uses_cell=True,
        description="Set/reset cycles of one cell (pulses as ISPP's ramp ends), both states read at log-spaced "
                    "or every-K cycles; the run ends when the window (LRS / HRS read current) closes below the "
                    "stated ratio. Records are streamed: a million cycles in constant memory.",
        cell_updates=endurance_updates, make_plots=EndurancePlots, make_inputs=AgingInputs, store_name="endurance",
        progress=lambda p: lambda record: record.cycle)


# ----- retention -----

class RetentionInputs(AgingInputs):
    """The cells and their levels, as ``rramlab retention --cells --levels``: levels go round the
    cells in order; no cells: one cell per level on wordline 0 (the lone device: its one cell, at
    the first level)."""

    def __init__(self):
        super().__init__(build=False)
        form = QtWidgets.QFormLayout(self)
        self.cells = _text_row(form, "cells", "retention_cells", "one cell per level on wordline 0 (or "
                               "WL0:WL1,BL0:BL1, or WL,BL)", "the cells programmed and read, as rramlab retention "
                               "--cells (ends excluded)")
        self.levels = _text_row(form, "levels (nS)", "retention_levels", "20,50,80",
                                "target conductances in nS, as rramlab retention --levels")
        self.levels.setText("20,50,80")
        self.add_aging_rows(form)
        self.note = QtWidgets.QLabel("On the twin time is simulated (ten years take seconds); on a bench the run "
                                     "waits between reads with every output at 0 V.")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: gray")
        form.addRow(self.note)
        self._lone = True

    def set_backend(self, checker: RequestChecker) -> None:
        self._lone = checker.geometry.shape == (1, 1)

    def values(self) -> dict:
        from rramlab.app.cmd_stress import parse_cells, parse_levels_ns

        levels = parse_levels_ns(self.levels.text().strip() or "20,50,80")
        text = self.cells.text().strip() or None
        cells = [(0, 0)] if text is None and self._lone else parse_cells(text, len(levels))
        targets = [levels[k % len(levels)] for k in range(len(cells))]
        return {"cells": [list(c) for c in cells], "targets_s": targets, **super().values()}


def retention_spec() -> ProtocolSpec:
    from rramlab.protocols import retention
    from rramlab.protocols.ispva import IspvaSettings

    def settings_of(settings):
        rs, program = settings
        return replace(rs, program=program)

    def plan(settings, inputs, checker):
        return retention.plan(settings_of(settings), [tuple(c) for c in inputs["cells"]], inputs["targets_s"],
                              checker)

    def progress(p):
        done = [0]

        def count(record):
            done[0] += isinstance(record, retention.RetentionRecord)
            return done[0]
        return count

    return ProtocolSpec(
        name="Retention", settings_class=retention.RetentionSettings, more_settings=(IspvaSettings,),
        plan=with_aging(plan), run=with_aging_run(retention.run), total=lambda p: len(p.cells) * len(p.times_s),
        unit="read", uses_cell=False,
        description="Program the cells to their levels by ISPVA, then read every cell at log-spaced (or evenly "
                    "spaced) times up to the duration. The plot is each cell's conductance against log time.",
        cell_updates=conductance_updates, make_plots=RetentionPlots, make_inputs=RetentionInputs,
        store_name="retention", store_settings=lambda settings, inputs: settings_dict(settings_of(settings)),
        progress=progress)


# ----- disturb -----

def disturb_updates(record, plan):
    """The cell a disturb record read: G = I / V_read."""
    return [((record.wordline, record.bitline), record.read_a / plan.settings.read_v)]


def disturb_spec() -> ProtocolSpec:
    from rramlab.protocols import disturb

    def total(p):
        return p.settings.reads + (p.settings.pulses if p.settings.neighbours else 0)

    def progress(p):
        return lambda r: r.count if r.phase == "read" else p.settings.reads + r.count

    return ProtocolSpec(
        name="Disturb", settings_class=disturb.DisturbSettings,
        plan=with_aging(lambda settings, inputs, checker: disturb.plan(settings, inputs["cell"], checker)),
        run=with_aging_run(disturb.run), total=total, unit="step", uses_cell=True,
        description="Read disturb: many reads of one cell at the read voltage, recorded at log-spaced counts. With "
                    "neighbours: then half-bias pulses on the cell, it and its half-selected neighbours read at "
                    "log-spaced counts. The plots are the change in conductance against reads and pulses.",
        cell_updates=disturb_updates, make_plots=DisturbPlots, make_inputs=AgingInputs, store_name="disturb",
        progress=progress)


def lab_protocols() -> list[ProtocolSpec]:
    """The lab protocols' panels, in tab order."""
    return [iv_spec(), map_spec(), endurance_spec(), retention_spec(), disturb_spec()]
