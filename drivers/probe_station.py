"""ProbeStation: the CrossbarInstrument seam on a real bench (Keysight 4156C + E5250A + probe card).

A bench TOML file (``docs/bench.md``) says where the instruments are, which 4156C channel is cabled
to which matrix input, which input is ground, the pin map from wordlines/bitlines to matrix outputs
and the safe operating area. It is described by a pydantic schema (``BenchFile``); the rules that
belong to an instrument come from its driver module, so each is written once. Entry points:

* ``load_bench(path) -> BenchConfig`` (or ``bench_from_data(dict, path)``): validate the file
  completely, raising BenchError naming the field, the value and the fix; nothing is connected.
* ``BenchConfig.checker() -> BenchChecker``: every check the station applies to a request
  (geometry, limits, wired lines, sources per voltage level, 4156C pulse timing), with nothing
  connected, so a protocol's whole plan is checked before the first VISA message.
* ``open_bench(path, visa_log=None) -> ProbeStation``: validate, connect, identify both
  instruments and put them in a known, safe state. ``visa_log`` attaches a file handler to the
  ``rramlab.visa`` logger for the station's life.
* ``check_bench`` / ``safe_bench``: all of ``rramlab bench check`` / ``rramlab bench safe``.

How the operations are built from what the instruments can do:

* read: selected wordline on the wordline SMU at the read voltage, selected bitline on the bitline
  SMU held at 0 V and measured (``TI?``), every other wired line on the ground input. The SMU sinks
  the cell current (negative by the SMU sign convention), so the reported current is its negative.
* pulse: the lines are grouped by voltage. Each distinct non-zero voltage needs its own source.
  The wordline side's level (half-bias: +V/2) is the one SMU pulse (``MM 3`` / ``PT`` / ``PV``), every
  other level (half-bias: -V/2 on the bitline) is a DC bias that is switched on just before the
  pulse and back to 0 V just after it. Everything else is grounded.
* vmm: each distinct non-zero wordline voltage on a source (VSUs first), every other wordline
  grounded; the remaining SMUs hold bitlines at 0 V and measure them in one spot measurement per
  round (``MM 1,...``, ``XE``, ``RMD?``; ``TI?`` when one or two SMUs measure, which is never more
  transactions); rounds = ceil(bitlines / measuring SMUs).

Between operations every source sits at 0 V with its output switch on and the matrix keeps its
last routing (lines on a source at 0 V or on ground), so the next operation only changes what
differs. On any error or interrupt (Ctrl-C included) the sources go to 0 V, the output switches
open and every crosspoint opens, then the error propagates. Every operation holds the station's
lock for its whole command sequence, so the station may be shared between threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from .interface import (ArrayGeometry, CrossbarInstrument, GeometryError, InstrumentError, RequestChecker,
                        RequestError, RramlabError, SafeOperatingArea, SafetyError, half_bias_voltages)
from .keysight_4156c import (HRSMU_ONLY_CODES, MAX_COMPLIANCE, PULSE_MAX_WIDTH, PULSE_MIN_WIDTH, AnalyzerChannel, Keysight4156C,
                             check_compliance, check_integration, check_pulse_timing, current_range_code,
                             describe_current_range)
from .keysight_e5250a import INPUTS, KeysightE5250A, MatrixSettings, card_and_output, outputs_of
from .visa_io import (Transport, VisaLogFormatter, VisaTimeoutError, add_visa_log_handler,
                      describe_validation_error, format_number, remove_visa_log_handler, visa_log_handler)

# the seam's shield: stop signals wait until a safe-state sequence has run to its end
from .interface import signals_deferred as _signals_deferred

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_SIM_YAML = PACKAGE_DIR / "keysight_sim.yaml"
BENCH_DIR = PACKAGE_DIR / "benches"

_log = logging.getLogger(__name__)


def instrument_limits(limits: SafeOperatingArea) -> SafeOperatingArea:
    """``limits`` with the pulse widths narrowed to what the 4156C SMU can make (0.5-100 ms).
    Only the width fields change: voltages come from the chip, never from the instrument."""
    return dataclasses.replace(limits, min_pulse_width=max(limits.min_pulse_width, PULSE_MIN_WIDTH),
                               max_pulse_width=min(limits.max_pulse_width, PULSE_MAX_WIDTH))


class BenchError(RequestError):
    """The bench file is missing, malformed, or describes a bench that cannot work."""


# ----------------------------------------------------------------------------------------------
# The bench file's schema (pydantic). Unknown keys are refused, every field has its range, and the
# rules that join fields are validators. Rules that belong to an instrument (channel kinds,
# integration, compliance, matrix mode and cards, settle time) come from the driver modules, so
# each is written once.


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class BenchTable(_Table):
    name: str = Field("", description="free text, stored with every run")
    visa_library: str = Field("", description="'' (system VISA), '@py', '@sim:default' or '@sim:FILE.yaml'")


class ChannelWiring(AnalyzerChannel):
    """A 4156C unit (the analyzer's channel schema) and the E5250A input its cable goes to."""

    input: int = Field(..., strict=True, ge=min(INPUTS), le=max(INPUTS),
                       description="E5250A input port (1 to 10) the unit is cabled to")


def _resource(value: str) -> str:
    if not value.strip():
        raise ValueError("the VISA address is empty: give one, e.g. 'GPIB0::17::INSTR'")
    return value.strip()


class AnalyzerTable(_Table):
    resource: str = Field(..., description="VISA address of the 4156C, e.g. 'GPIB0::17::INSTR'")
    timeout: float = Field(30.0, gt=0, le=3600, description="VISA timeout in s (0 to 3600)")
    integration: str = Field("medium", description="short, medium or long")
    read_range: str = Field("auto", description="'auto', 'limited 1nA' or 'fixed 100nA'")
    read_compliance: float = Field(1e-4, description=f"A, above 0 and at most {MAX_COMPLIANCE:g}")
    pulse_compliance: float = Field(1e-3, description=f"A, above 0 and at most {MAX_COMPLIANCE:g}")
    wordline_channel: int = Field(..., description="the SMU on the selected wordline")
    bitline_channel: int = Field(..., description="the SMU on the selected bitline")
    channels: list[ChannelWiring] = Field(..., min_length=1,
                                          description="one [[analyzer.channels]] entry per unit cabled to the matrix")

    @field_validator("resource")
    @classmethod
    def _strip_resource(cls, v):
        return _resource(v)

    @field_validator("integration")
    @classmethod
    def _integration(cls, v):
        return check_integration(v)

    @field_validator("read_range")
    @classmethod
    def _read_range(cls, v):
        current_range_code(v)
        return v

    @field_validator("read_compliance", "pulse_compliance")
    @classmethod
    def _compliance(cls, v, info):
        return check_compliance(v, info.field_name)

    @model_validator(mode="after")
    def _channels(self):
        seen_ch: dict[int, ChannelWiring] = {}
        seen_in: dict[int, int] = {}
        for c in self.channels:
            if c.channel in seen_ch:
                raise ValueError(f"analyzer channel {c.channel} is listed twice in [[analyzer.channels]]")
            if c.input in seen_in:
                raise ValueError(f"matrix input {c.input} is given to both channel {seen_in[c.input]} and channel "
                                 f"{c.channel}: each unit has its own input")
            seen_ch[c.channel], seen_in[c.input] = c, c.channel
        smus = [c.channel for c in self.channels if c.is_smu]
        for key in ("wordline_channel", "bitline_channel"):
            ch = getattr(self, key)
            if ch not in smus:
                raise ValueError(f"[analyzer] {key} = {ch} must be one of the SMU channels listed in "
                                 f"[[analyzer.channels]] ({smus})")
        if self.wordline_channel == self.bitline_channel:
            raise ValueError("[analyzer] wordline_channel and bitline_channel must be two different SMUs")
        if abs(current_range_code(self.read_range)) in HRSMU_ONLY_CODES:
            slow = [c.channel for c in self.channels if c.is_smu and c.kind != "hrsmu"]
            if slow:
                raise ValueError(f"[analyzer] read_range = {self.read_range!r} exists only on HRSMUs, but channel(s) "
                                 f"{slow} are not: use 'limited 1nA' or above, or list only HRSMUs")
        return self


class MatrixTable(MatrixSettings):
    """The E5250A: the driver's settings schema plus where it is and which input is ground."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    resource: str = Field(..., description="VISA address of the E5250A, e.g. 'GPIB0::22::INSTR'")
    ground_input: int = Field(..., ge=min(INPUTS), le=max(INPUTS),
                              description="the input port wired to ground (1 to 10)")

    @field_validator("resource")
    @classmethod
    def _strip_resource(cls, v):
        return _resource(v)


class PinmapTable(_Table):
    wordlines: list[int] = Field(..., description="matrix output of each wordline, 0 = not wired")
    bitlines: list[int] = Field(..., description="matrix output of each bitline, 0 = not wired")


class ArrayTable(_Table):
    wordlines: int = Field(24, ge=1, le=1024, description="wordlines on the chip")
    bitlines: int = Field(24, ge=1, le=1024, description="bitlines on the chip")


#: [limits] has exactly the SafeOperatingArea's fields (defaults from it), so the two never drift.
LimitsTable = create_model(
    "LimitsTable", __base__=_Table,
    **{f.name: (float, Field(f.default, description="see SafeOperatingArea"))
       for f in dataclasses.fields(SafeOperatingArea)})


class BenchFile(_Table):
    """The whole bench file. ``BenchFile.model_validate(toml_dict)`` checks everything that can be
    checked without the file system or a VISA library."""

    bench: BenchTable = BenchTable()
    analyzer: AnalyzerTable
    matrix: MatrixTable
    pinmap: PinmapTable
    array: ArrayTable = ArrayTable()
    limits: LimitsTable = LimitsTable()  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _across_tables(self):
        an, mx, pm, arr = self.analyzer, self.matrix, self.pinmap, self.array
        if an.resource == mx.resource:
            raise ValueError(f"[analyzer] resource and [matrix] resource are both {an.resource!r}: "
                             f"each instrument has its own address")
        taken = {c.input: c.channel for c in an.channels}
        if mx.ground_input in taken:
            raise ValueError(f"[matrix] ground_input = {mx.ground_input} is also the input of analyzer channel "
                             f"{taken[mx.ground_input]}: ground needs its own input")
        n_out = outputs_of(mx.cards)
        used: dict[int, str] = {}
        for key in ("wordlines", "bitlines"):
            lst, n = getattr(pm, key), getattr(arr, key)
            if len(lst) != n:
                raise ValueError(f"[pinmap] {key} has {len(lst)} entries but [array] {key} = {n}: give one "
                                 f"matrix output per line (0 for a line that is not wired)")
            for i, out in enumerate(lst):
                line = f"{key[:-1]} {i}"
                if out == 0:
                    continue
                if not 1 <= out <= n_out:
                    raise ValueError(f"[pinmap] {key}[{i}] = {out} ({line}): the matrix has outputs 1 to {n_out} "
                                     f"with {mx.cards} card(s); 0 marks a line that is not wired")
                if out in used:
                    raise ValueError(f"[pinmap] output {out} is given to both {used[out]} and {line}: "
                                     f"each line needs its own output (sharing one would short the lines)")
                used[out] = line
        if not any(pm.wordlines) or not any(pm.bitlines):
            raise ValueError("[pinmap] wires no wordline or no bitline: at least one of each is needed")
        try:
            SafeOperatingArea(**self.limits.model_dump())
        except SafetyError as exc:
            raise ValueError(f"[limits]: {exc}") from None
        return self


# ----------------------------------------------------------------------------------------------
# The validated bench


@dataclass(frozen=True)
class BenchConfig:
    """A validated bench file. Build it with ``load_bench`` (a path) or ``bench_from_data`` (the
    parsed TOML as a dict)."""

    path: Path
    name: str
    visa_library: str               # as given in the file
    visa_library_resolved: str      # what pyvisa.ResourceManager receives
    analyzer_resource: str
    analyzer_timeout: float
    integration: str
    read_range: int                 # FLEX current range code
    read_compliance: float
    pulse_compliance: float
    wordline_channel: int
    bitline_channel: int
    channels: tuple[ChannelWiring, ...]
    matrix_resource: str
    matrix_timeout: float
    matrix_config: str
    cards: int
    ground_input: int
    settle_time: float
    wordline_outputs: tuple[int, ...]  # 0 = not wired
    bitline_outputs: tuple[int, ...]
    geometry: ArrayGeometry
    limits: SafeOperatingArea

    def wiring(self, channel: int) -> ChannelWiring:
        return next(c for c in self.channels if c.channel == channel)

    def input_of(self, channel: int) -> int:
        return self.wiring(channel).input

    def checker(self) -> "BenchChecker":
        """Every check this bench applies to a request, with nothing connected: plan a protocol
        against it (``ispp.plan(settings, cell, config.checker())``) before opening the bench."""
        return BenchChecker(self)


def load_bench(path: str | Path) -> BenchConfig:
    """Read and fully validate a bench file; no VISA resource is touched.

    Raises BenchError (a RequestError, a RramlabError) naming the file, the field and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"bench file {p}: no such file: give the path of a bench TOML file (examples ship in "
                         f"drivers/benches/)")
    try:
        # utf-8-sig: a file saved by Windows Notepad starts with a byte-order mark, which TOML does not allow
        data = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"bench file {p}: not valid TOML: {exc}") from None
    return bench_from_data(data, p)


def bench_from_data(data: dict[str, Any], path: str | Path) -> BenchConfig:
    """Validate a parsed bench file (``path`` names it in messages and anchors relative
    simulation files). Raises BenchError."""
    p = Path(path)
    try:
        return _bench_config(BenchFile.model_validate(data), p)
    except ValidationError as exc:
        raise BenchError(f"bench file {p}: {describe_validation_error(exc, BenchFile)}") from None
    except BenchError as exc:
        raise BenchError(f"bench file {p}: {exc}") from None


def _visa_library(lib: str, folder: Path) -> str:
    """The VISA library pyvisa receives: '@sim:...' becomes a YAML path (a missing file is a file
    error here, not a VISA error later)."""
    lib = lib.strip()
    if lib == "@sim":
        raise BenchError("[bench] visa_library = '@sim' would load pyvisa-sim's own demo devices: "
                         "use '@sim:default' for rramlab's 4156C + E5250A simulation")
    if lib.startswith("@sim:"):
        target = lib[len("@sim:"):].strip()
        yaml = DEFAULT_SIM_YAML if target == "default" else (folder / target).resolve()
        if not yaml.is_file():
            raise BenchError(f"[bench] visa_library = {lib!r}: the simulation file {yaml} does not exist "
                             f"(a relative path is taken from the bench file's folder)")
        return f"{yaml}@sim"
    return lib


def _bench_config(f: BenchFile, p: Path) -> BenchConfig:
    an, mx, pm, arr = f.analyzer, f.matrix, f.pinmap, f.array
    used_w = tuple(i for i, o in enumerate(pm.wordlines) if o)
    used_b = tuple(i for i, o in enumerate(pm.bitlines) if o)
    return BenchConfig(
        path=p.resolve(), name=f.bench.name, visa_library=f.bench.visa_library.strip(),
        visa_library_resolved=_visa_library(f.bench.visa_library, p.resolve().parent),
        analyzer_resource=an.resource, analyzer_timeout=an.timeout, integration=an.integration,
        read_range=current_range_code(an.read_range), read_compliance=an.read_compliance,
        pulse_compliance=an.pulse_compliance, wordline_channel=an.wordline_channel,
        bitline_channel=an.bitline_channel, channels=tuple(an.channels),
        matrix_resource=mx.resource, matrix_timeout=mx.timeout, matrix_config=mx.config, cards=mx.cards,
        ground_input=mx.ground_input, settle_time=mx.settle_time,
        wordline_outputs=tuple(pm.wordlines), bitline_outputs=tuple(pm.bitlines),
        geometry=ArrayGeometry(arr.wordlines, arr.bitlines, used_w, used_b),
        limits=instrument_limits(SafeOperatingArea(**f.limits.model_dump())),
    )


# ----------------------------------------------------------------------------------------------
# What this bench can do, checked with nothing connected


@dataclass
class _PulsePlan:
    pulse_channel: int
    pulse_v: float
    bias: list[tuple[int, float]]  # (channel, volts) DC around the pulse
    routing: dict[int, int]        # output -> input


class BenchChecker(RequestChecker):
    """The seam's checks (geometry, safe operating area) plus what this bench can carry out:
    wired lines only, at most one distinct non-zero voltage per source, the 4156C's pulse timing
    and rectangular shape. ProbeStation is a BenchChecker, so a plan made against
    ``config.checker()`` before connecting meets exactly the checks the station applies."""

    def __init__(self, config: BenchConfig):
        super().__init__(config.geometry, config.limits)  # narrowed to DEVICE_CEILING (a warning says what was cut)
        # The bench file's limits are this bench's ceiling from now on: limits assigned later (a
        # script's ``station.limits = SafeOperatingArea()``) are narrowed to them, never wider.
        self._ceiling, self._ceiling_name = self.limits, f"the bench file's [limits] ({config.path.name})"
        self.config = config
        self._wl_out = {i: o for i, o in enumerate(config.wordline_outputs) if o}
        self._bl_out = {i: o for i, o in enumerate(config.bitline_outputs) if o}

    def check_pulse(self, wordline_v, bitline_v, width, shape="rect"):
        if not isinstance(width, bool) and isinstance(width, (int, float, np.floating)) and math.isfinite(width):
            check_pulse_timing(float(width))  # the 4156C's window and grid, with the fix in the message
        wl, bl, width, shape = super().check_pulse(wordline_v, bitline_v, width, shape)
        if shape != "rect":
            raise RequestError(f"pulse shape {shape!r} cannot be made here: the 4156C SMU pulse is rectangular; "
                               f"use shape='rect' on the probe station")
        self._pulse_plan(wl, bl)
        return wl, bl, width, shape

    def check_read_voltage(self, v_read) -> float:
        v = super().check_read_voltage(v_read)
        self._check_line(abs(v), "read voltage")
        return v

    def _check_line(self, volts: float, what: str) -> None:
        # A read or a VMM input is a line voltage too: the analyzer refuses anything beyond
        # max_line_voltage, so refuse it here, before a plan starts, with the bench's words.
        if volts > self.limits.max_line_voltage:
            raise SafetyError(f"{what} {volts:g} V is beyond the line limit of {self.limits.max_line_voltage:g} V "
                              f"of this bench ([limits] max_line_voltage in {self.config.path})")

    def check_cells(self, cells):
        out = super().check_cells(cells)
        for w, b in out:
            self._wired("wordline", w)
            self._wired("bitline", b)
        return out

    def check_vmm(self, wordline_v, bitlines=None):
        arr2, bls, single = super().check_vmm(wordline_v, bitlines)
        if arr2.size:
            self._check_line(float(np.max(np.abs(arr2))), "vmm input")
        for b in bls:
            self._wired("bitline", b)
        for row in arr2:
            self._vmm_plan(row)
        return arr2, bls, single

    def _wired(self, kind: str, line: int) -> int:
        table = self._wl_out if kind == "wordline" else self._bl_out
        if line not in table:
            raise GeometryError(f"{kind} {line} has no matrix output in the bench pin map ({self.config.path}): "
                                f"wire it and give its output in [pinmap] {kind}s")
        return table[line]

    def _grounded(self) -> dict[int, int]:
        g = self.config.ground_input
        return {o: g for o in list(self._wl_out.values()) + list(self._bl_out.values())}

    @staticmethod
    def _level_key(v: float) -> str:
        return format_number(v)

    def _pulse_plan(self, wl: np.ndarray, bl: np.ndarray) -> _PulsePlan:
        cfg = self.config
        levels: dict[str, dict] = {}
        for kind, vec in (("wordline", wl), ("bitline", bl)):
            for line, v in enumerate(vec):
                if v == 0:
                    continue
                out = self._wired(kind, line)
                lv = levels.setdefault(self._level_key(v), {"v": float(v), "wordline": [], "bitline": []})
                lv[kind].append(out)
        if not levels:
            raise RequestError("a pulse with every line at 0 V does nothing: give a non-zero voltage")
        if len(levels) > len(cfg.channels):
            vs = ", ".join(f"{lv['v']:+g} V" for lv in levels.values())
            raise RequestError(
                f"this pulse needs {len(levels)} distinct line voltages ({vs}) but the bench has only "
                f"{len(cfg.channels)} sources: use at most {len(cfg.channels)} distinct non-zero voltages "
                f"(the half-bias scheme needs 2)")
        # The pulsing level: the wordline side's largest |V| (half-bias: +V/2), else the bitline side's.
        order = sorted(levels.values(), key=lambda lv: (not lv["wordline"], -abs(lv["v"]), -lv["v"]))
        pulsed, dc = order[0], order[1:]
        # DC levels on bitlines prefer the bitline SMU (the one that reads), so pulse and read share routing.
        dc.sort(key=lambda lv: (not lv["bitline"], -abs(lv["v"]), -lv["v"]))
        free = [cfg.bitline_channel] + [c.channel for c in cfg.channels
                                        if c.channel not in (cfg.wordline_channel, cfg.bitline_channel)]
        routing = self._grounded()
        bias = []
        for lv, ch in zip(dc, free):
            bias.append((ch, lv["v"]))
            for out in lv["wordline"] + lv["bitline"]:
                routing[out] = cfg.input_of(ch)
        for out in pulsed["wordline"] + pulsed["bitline"]:
            routing[out] = cfg.input_of(cfg.wordline_channel)
        # While the DC biases are on before and after the pulse, the pulsed lines sit at 0 V: that
        # pattern must be inside the safe operating area too (the seam's voltage checks).
        if bias:
            key = self._level_key(pulsed["v"])
            wl0 = np.array([0.0 if self._level_key(v) == key else v for v in wl])
            bl0 = np.array([0.0 if self._level_key(v) == key else v for v in bl])
            try:
                super().check_pulse(wl0, bl0, self.limits.min_pulse_width)
            except SafetyError as exc:
                raise SafetyError(f"while the DC biases are on around the pulse: {exc}") from None
        return _PulsePlan(cfg.wordline_channel, pulsed["v"], bias, routing)

    def _vmm_sources(self) -> list[int]:
        """Channels that may carry a wordline voltage, in order of preference: VSUs (they cannot
        measure anyway), then the wordline SMU, then the other SMUs from the highest number down."""
        cfg = self.config
        vsus = [c.channel for c in cfg.channels if not c.is_smu]
        others = sorted((c.channel for c in cfg.channels if c.is_smu
                         and c.channel not in (cfg.wordline_channel, cfg.bitline_channel)), reverse=True)
        return vsus + [cfg.wordline_channel] + others + [cfg.bitline_channel]

    def _vmm_plan(self, row: np.ndarray):
        """(sources [(channel, volts, [outputs])], measuring SMUs) for one time step."""
        cfg = self.config
        levels: dict[str, list] = {}
        for line, v in enumerate(row):
            if v != 0:
                out = self._wired("wordline", line)
                levels.setdefault(self._level_key(v), [float(v), []])[1].append(out)
        smus = [c.channel for c in cfg.channels if c.is_smu]
        n_vsu = len(cfg.channels) - len(smus)
        room = n_vsu + len(smus) - 1  # at least one SMU must stay free to measure
        if len(levels) > room:
            vs = ", ".join(f"{v:+g} V" for v, _ in levels.values())
            raise RequestError(
                f"a vmm step with {len(levels)} distinct wordline voltages ({vs}) needs {len(levels)} sources plus "
                f"one measuring SMU, but the bench has {len(cfg.channels)} units: use at most {room} distinct "
                f"non-zero voltages per step (spikes are usually all 1 V)")
        sources = []
        for (v, outs), ch in zip(sorted(levels.values(), key=lambda x: (-abs(x[0]), -x[0])), self._vmm_sources()):
            sources.append((ch, v, outs))
        used = {ch for ch, _, _ in sources}
        measuring = [cfg.bitline_channel] + [c for c in smus if c != cfg.bitline_channel]
        measuring = [c for c in measuring if c not in used]
        return sources, measuring


# ----------------------------------------------------------------------------------------------
# Connecting


def _resource_manager(config: BenchConfig):
    import pyvisa  # local: importing drivers must not need a VISA library

    try:
        return pyvisa.ResourceManager(config.visa_library_resolved) if config.visa_library_resolved \
            else pyvisa.ResourceManager()
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear message
        raise InstrumentError(
            f"cannot load the VISA library {config.visa_library or '(system default)'!r} named by [bench] "
            f"visa_library in {config.path}: {exc}. Install NI-VISA or Keysight IO Libraries, or use '@py' "
            f"(pyvisa-py) or '@sim:default' (simulation)") from exc


def _gpib_name(name: str) -> str | None:
    """Canonical form of a GPIB INSTR resource name, None for other kinds."""
    m = re.fullmatch(r"GPIB(\d*)::(\d+)(?:::(\d+))?::INSTR", name.strip(), re.IGNORECASE)
    if m is None:
        return None
    return f"GPIB{m.group(1) or 0}::{m.group(2)}" + (f"::{m.group(3)}" if m.group(3) else "") + "::INSTR"


def _open(rm, table: str, resource: str, timeout: float, config: BenchConfig):
    # A GPIB instrument that is off or at another address is simply not listed; many VISA libraries
    # still "open" such an address and only time out later. Ask the list first so nothing is sent.
    # (Aliases and LAN gateways are not always listed, so only GPIB names are checked this way.)
    wanted = _gpib_name(resource)
    if wanted is not None:
        try:
            listed = [str(r) for r in rm.list_resources("?*::INSTR")]
        except Exception:  # noqa: BLE001 - a library that cannot list: fall through to open + *IDN?
            listed = None
        if listed is not None and wanted not in {_gpib_name(r) for r in listed}:
            raise InstrumentError(
                f"no instrument at {resource!r} ([{table}] resource in {config.path}); the VISA library sees: "
                f"{', '.join(listed) or 'no instruments'}. Check the instrument is on, its GPIB address, and "
                f"the cable")
    try:
        return rm.open_resource(resource, read_termination="\n", write_termination="\n",
                                timeout=int(timeout * 1000))
    except Exception as exc:  # noqa: BLE001
        try:
            available = ", ".join(rm.list_resources()) or "none"
        except Exception:  # noqa: BLE001
            available = "unknown"
        raise InstrumentError(
            f"cannot open the {table} at {resource!r} ([{table}] resource in {config.path}): {exc}. "
            f"Resources this VISA library sees: {available}") from exc


def _log_handler(visa_log) -> logging.Handler | None:
    """A handler on ``rramlab.visa`` for ``visa_log``: a file path, or an open text stream."""
    if visa_log is None:
        return None
    if isinstance(visa_log, (str, Path)):
        return visa_log_handler(str(visa_log))
    handler = logging.StreamHandler(visa_log)
    handler.setFormatter(VisaLogFormatter())
    return add_visa_log_handler(handler)


def connect_bench(config: BenchConfig, visa_log: str | TextIO | None = None, resource_manager=None,
                  on_message=None, initialise: bool = True) -> "ProbeStation":
    """Open both resources, identify both instruments, then (``initialise``) reset them to a safe
    known state.

    Nothing is written to either instrument before both are open and both have answered ``*IDN?``
    with the right model. ``visa_log``: a file path (or text stream) that receives every message
    through a handler on the ``rramlab.visa`` logger, removed when the station closes.
    ``on_message(name, direction, text)`` sees every message (tests, benchmark).
    """
    handler = _log_handler(visa_log)
    resources = []
    try:
        rm = resource_manager or _resource_manager(config)
        a_res = _open(rm, "analyzer", config.analyzer_resource, config.analyzer_timeout, config)
        resources.append(a_res)
        m_res = _open(rm, "matrix", config.matrix_resource, config.matrix_timeout, config)
        resources.append(m_res)
        a_io = Transport(a_res, "4156C", on_message=on_message)
        m_io = Transport(m_res, "E5250A", on_message=on_message)
        analyzer = Keysight4156C(a_io, channels={c.channel: c.kind for c in config.channels},
                                 timeout=config.analyzer_timeout, integration=config.integration,
                                 limits=config.limits)
        matrix = KeysightE5250A(m_io, config=config.matrix_config, cards=config.cards,
                                settle_time=config.settle_time, timeout=config.matrix_timeout,
                                inputs=[c.input for c in config.channels] + [config.ground_input],
                                outputs=[o for o in config.wordline_outputs + config.bitline_outputs if o])
        try:
            analyzer_idn = analyzer.identify()
        except InstrumentError as exc:
            raise InstrumentError(f"[analyzer] resource {config.analyzer_resource!r}: {exc}") from exc
        try:
            matrix_idn = matrix.identify()
        except InstrumentError as exc:
            raise InstrumentError(f"[matrix] resource {config.matrix_resource!r}: {exc}") from exc
        station = ProbeStation(config, analyzer, matrix, log_handler=handler)
        station.identities = {"analyzer": analyzer_idn, "matrix": matrix_idn}
        if initialise:
            station.initialise()
        return station
    except BaseException:
        for r in resources:
            with contextlib.suppress(Exception):
                r.close()
        remove_visa_log_handler(handler)
        raise


def open_bench(path, visa_log: str | None = None) -> "ProbeStation":
    """Validate the bench file (before any VISA resource is opened), connect and initialise.

    Raises BenchError for a bad file and InstrumentError for a bench that does not answer.
    """
    return connect_bench(load_bench(path), visa_log=visa_log)


# ----------------------------------------------------------------------------------------------
# The probe station


class ProbeStation(BenchChecker, CrossbarInstrument):
    """CrossbarInstrument on a 4156C + E5250A bench (see the module docstring for the schemes).

    config: a BenchConfig (``load_bench``); analyzer, matrix: connected drivers; log_handler: the
    ``rramlab.visa`` handler to remove when the station closes. Call ``initialise()`` before the
    first operation (``connect_bench`` does).

    Thread-safe: every operation that talks to the instruments (pulse, read, vmm, reset_outputs,
    initialise, close) holds one re-entrant lock for its whole command sequence, so two threads
    never interleave commands; a second caller waits for the first operation to finish.
    """

    backend_name = "probe-station"

    def __init__(self, config: BenchConfig, analyzer: Keysight4156C, matrix: KeysightE5250A,
                 log_handler: logging.Handler | None = None):
        super().__init__(config)
        self.analyzer, self.matrix, self.log_handler = analyzer, matrix, log_handler
        self.identities: dict[str, str] = {}
        #: errors found in the queues at connect, before our own reset (another program's leftovers)
        self.stale_errors: dict[str, list[tuple[int, str]]] = {}
        self._on: set[int] = set()       # channels whose output switch is closed
        self._released = False
        self._closed_safe = False
        self._lock = threading.RLock()
        #: current measured during the last pulse (A, wordline SMU), None before any pulse
        self.last_pulse_current: float | None = None

    # ----- life cycle -----
    def initialise(self) -> None:
        """Reset both instruments, each configuration command checked: FLEX mode, data format,
        integration, SMU filters off (pulse fidelity), outputs off; matrix mode, FREE rule, bias
        mode off, every crosspoint open."""
        with self._guard():
            self.stale_errors["analyzer"] = self.analyzer.reset()
            self.analyzer.filters_off()
            self.analyzer.outputs_off()
            self.analyzer.check_errors("CL")
            self._on.clear()
            self.stale_errors["matrix"] = self.matrix.reset()

    def close(self) -> None:
        """Outputs to 0 V and off, matrix open, then release both VISA resources. Idempotent."""
        with self._lock:
            if self._released:
                return
            try:
                super().close()
            finally:
                self._closed_safe = self.outputs_safe
                self._released = True
                self.analyzer.io.close()
                self.matrix.io.close()
                remove_visa_log_handler(self.log_handler)

    def _reset_outputs(self) -> None:
        with self._lock:
            if self._released:
                if self._closed_safe:
                    return  # closed after a completed safe-state sequence; nothing has driven since
                raise InstrumentError("the bench connection is closed and its last safe-state sequence did not "
                                      "complete: run 'rramlab bench safe BENCH_FILE'")
            problems = self._safe_state()
            if problems:
                raise InstrumentError("could not bring the bench to a safe state: " + "; ".join(problems))
            # Read back what the matrix holds: a lost open is found here, not by the next user.
            try:
                self._confirm_matrix_open()
            except InstrumentError as exc:
                raise InstrumentError(f"could not bring the bench to a safe state: {exc}") from None
            self.analyzer.check_errors("reset of the outputs")

    def make_safe(self) -> None:
        """``rramlab bench safe``: FLEX mode, then every source to 0 V, every output switch off and
        every crosspoint open, without a reset, whatever state a killed program left. Every step is
        tried even when an earlier one fails; raises InstrumentError naming what failed, or if the
        matrix still reports a closed crosspoint."""
        with self._lock, _signals_deferred():
            if self._released:
                raise InstrumentError("this probe station is closed: open the bench again")
            problems = []
            for role, driver in (("analyzer", self.analyzer), ("matrix", self.matrix)):
                try:
                    self.stale_errors[role] = driver.drain_errors()
                except Exception as exc:  # noqa: BLE001 - keep going: the rest still matters
                    problems.append(f"reading the {role}'s error queue: {exc}")
            try:
                self.analyzer.enter_flex()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"FLEX mode: {exc}")
            problems += self._safe_state()
            for role, driver, after in (("analyzer", self.analyzer, "DV 0 V and CL"),
                                        ("matrix", self.matrix, ":ROUT:OPEN:CARD ALL")):
                try:
                    driver.check_errors(after)
                except Exception as exc:  # noqa: BLE001
                    problems.append(str(exc))
            try:
                closed = self.query_closed()
                if closed:
                    problems.append(f"after opening every crosspoint the matrix still reports {sorted(closed)} closed")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"asking the matrix what is closed: {exc}")
            if problems:
                raise InstrumentError("; ".join(problems) + " -- switch the SMU outputs off at the front panel and "
                                      "open the matrix by hand")

    def query_closed(self) -> set[tuple[int, int]]:
        """The closed crosspoints (input, output) as the matrix reports them, asked two ways: the
        card's list (``:ROUT:CLOS:CARD?``) and, checkably, the state of every crosspoint this
        bench can use, each of its inputs on each wired output (``:ROUT:CLOS? (@list)``)."""
        with self._lock:
            cfg = self.config
            inputs = sorted({c.input for c in cfg.channels} | {cfg.ground_input})
            outputs = sorted(set(self._wl_out.values()) | set(self._bl_out.values()))
            states = self.matrix.closed_states([(i, o) for i in inputs for o in outputs])
            return self.matrix.query_closed() | {cp for cp, closed in states.items() if closed}

    def _safe_state(self, after_timeout: bool = False) -> list[str]:
        """Every source to 0 V, every output switch off, every crosspoint open. Each step is tried
        even if an earlier one fails, and a step that fails (a lost message, a timeout, an
        instrument that is busy) is tried once more after a device clear of its instrument;
        returns what failed both times."""
        problems = []
        a, m = self.analyzer, self.matrix
        if after_timeout:
            a.io.clear()
            m.io.clear()
        a.forget_settings()

        def step(what: str, io, action, on_failure=None) -> None:
            for attempt in (1, 2):
                try:
                    action()
                    return
                except Exception as exc:  # noqa: BLE001 - keep going: the rest still matters
                    if on_failure is not None:
                        on_failure()
                    if attempt == 2:
                        problems.append(f"{what}: {exc}")
                        return
                    _log.warning("safe state: %s failed (%s); trying it once more after a device clear", what, exc)
                    io.clear()

        for ch in sorted(a.channels):
            step(f"channel {ch} to 0 V", a.io, lambda ch=ch: a.force_voltage(ch, 0.0, self.config.read_compliance),
                 a.forget_settings)

        def outputs_off():
            a.outputs_off()
            self._on.clear()

        step("output switches off", a.io, outputs_off, a.forget_settings)

        def open_all():
            m.open_all()
            m.wait()

        step("open every crosspoint", m.io, open_all, m.forget_state)
        return problems

    def _confirm_matrix_open(self) -> None:
        """Read the matrix back (``:ROUT:CLOS:CARD?``): every crosspoint must be open. If one is
        still closed (a ``:ROUT:OPEN:CARD ALL`` the matrix never carried out), open everything once
        more after a device clear and ask again; raises InstrumentError if it still reports any."""
        m = self.matrix
        closed = m.query_closed()
        if not closed:
            return
        _log.warning("safe state: the matrix still reports %d crosspoint(s) closed; opening every crosspoint "
                     "once more after a device clear", len(closed))
        m.io.clear()
        try:
            m.open_all()
            m.wait()
        except Exception:
            m.forget_state()
            raise
        closed = m.query_closed()
        if closed:
            m.forget_state()
            shown = ", ".join(f"{i}->{o}" for i, o in sorted(closed)[:8]) + (" ..." if len(closed) > 8 else "")
            raise InstrumentError(f"after opening every crosspoint twice the matrix still reports {len(closed)} "
                                  f"closed (input->output {shown})")

    @contextlib.contextmanager
    def _guard(self):
        """Run instrument traffic under the station's lock; on any exception (Ctrl-C too) go to the
        safe state, then re-raise."""
        with self._lock:
            if self._released:
                raise InstrumentError("this probe station is closed: open the bench again")
            try:
                yield
            except BaseException as exc:
                with _signals_deferred():
                    problems = self._safe_state(after_timeout=isinstance(exc, VisaTimeoutError))
                if problems:
                    exc.add_note("and the bench could not be made safe: " + "; ".join(problems)
                                 + " -- switch the SMU outputs off by hand, then run 'rramlab bench safe'")
                raise

    # ----- routing -----
    def _route(self, routing: dict[int, int]) -> None:
        if self.matrix.route(routing):
            self.matrix.check_errors("switching the matrix")

    def _ensure_on(self, channels) -> None:
        new = sorted(set(channels) - self._on)
        if new:
            self.analyzer.outputs_on(new)
            self._on.update(new)

    # ----- pulse -----
    def _pulse(self, wordline_v, bitline_v, width, shape) -> None:
        plan = self._pulse_plan(wordline_v, bitline_v)
        cfg, a = self.config, self.analyzer
        with self._guard():
            self._route(plan.routing)
            self._ensure_on([plan.pulse_channel] + [ch for ch, _ in plan.bias])
            for ch, v in plan.bias:
                a.force_voltage(ch, v, cfg.pulse_compliance)
            datum = a.pulse_voltage(plan.pulse_channel, plan.pulse_v, width, cfg.pulse_compliance)
            # Bias back to 0 V with the read compliance: the line rests there ready for a read.
            for ch, _ in plan.bias:
                a.force_voltage(ch, 0.0, cfg.read_compliance)
            a.check_errors("pulse")
            self.last_pulse_current = datum.checked("pulse current")

    # ----- DC staircase of one cell (rramlab iv) -----
    def sweep_cell(self, wordline: int, bitline: int, voltages, compliance: float | None = None,
                   on_step=None) -> np.ndarray:
        """The current (A) into the selected bitline at each step of a DC staircase ``voltages``
        (V) across cell (``wordline``, ``bitline``), in the half-bias circuit of a pulse: the
        wordline SMU at +V/2, the bitline SMU at -V/2, every other line at 0 V. Each step is two
        ``DV`` and a spot current of the bitline SMU (``TI?``), not the analyzer's own staircase
        (``Keysight4156C.staircase_sweep``): one WV source cannot hold the bitline at -V/2 while
        the wordline sweeps, and with the bitline at 0 V every cell of the wordline would see the
        whole voltage. The bitline current includes the half-selected cells of that bitline (at V/2).
        ``compliance``: A, default the bench file's pulse compliance. Every step is checked against
        the safe operating area first; afterwards both lines rest at 0 V with the read compliance.
        ``on_step(k, current_a)`` is called after each step's measurement (so a caller keeps every
        point measured before a Ctrl-C); when it returns True the sweep ends after that step, the
        lines go back to 0 V and the currents so far are returned."""
        (w, b), = self.check_cells([(wordline, bitline)])
        try:
            volts = np.asarray(voltages, dtype=float)
        except (TypeError, ValueError):
            raise RequestError("sweep voltages must be numbers (volts)") from None
        if volts.ndim != 1 or not volts.size or not np.all(np.isfinite(volts)):
            raise RequestError("sweep voltages must be a 1-d sequence of finite numbers (volts)")
        for v in {float(volts.max()), float(volts.min())} - {0.0}:
            wl, bl = half_bias_voltages(self.geometry, w, b, v)
            self.check_pulse(wl, bl, self.limits.min_pulse_width)
        self._check_open()
        cfg, a = self.config, self.analyzer
        comp = cfg.pulse_compliance if compliance is None else float(compliance)
        wl_ch, bl_ch = cfg.wordline_channel, cfg.bitline_channel
        out = np.empty(volts.size)
        with self._guard():
            routing = self._grounded()
            routing[self._wired("wordline", w)] = cfg.input_of(wl_ch)
            routing[self._wired("bitline", b)] = cfg.input_of(bl_ch)
            self._route(routing)
            self._ensure_on([wl_ch, bl_ch])
            for k, v in enumerate(volts):
                a.force_voltage(bl_ch, -v / 2, comp)
                a.force_voltage(wl_ch, v / 2, comp)
                out[k] = -a.spot_current_datum(bl_ch, 0).checked("sweep current")
                if on_step is not None and on_step(k, float(out[k])):
                    out = out[:k + 1]
                    break
            a.force_voltage(wl_ch, 0.0, cfg.read_compliance)
            a.force_voltage(bl_ch, 0.0, cfg.read_compliance)
            a.check_errors("sweep")
        return out

    # ----- read -----
    def _read_smus(self) -> list[int]:
        """SMUs that measure bitline currents in a read: the bitline SMU, then every other SMU but
        the wordline SMU (which drives the wordline)."""
        cfg = self.config
        return [cfg.bitline_channel] + [c.channel for c in cfg.channels
                                        if c.is_smu and c.channel not in (cfg.wordline_channel, cfg.bitline_channel)]

    def _read(self, cells, v_read):
        cfg, a = self.config, self.analyzer
        wl_ch = cfg.wordline_channel
        smus = self._read_smus()
        # Cells of one wordline are read together: the wordline SMU drives it and each spare SMU
        # measures one more of its bitlines at the same time, as a vmm step does. The circuit is the
        # one a single-cell read sees (every other line at 0 V), and a whole-array read costs one
        # routing per group of bitlines instead of two relay waits per cell.
        rows: dict[int, list[int]] = {}
        for w, b in cells:
            if b not in rows.setdefault(w, []):
                rows[w].append(b)
        currents: dict[tuple[int, int], float] = {}
        with self._guard():
            for w, bls in rows.items():
                for start in range(0, len(bls), len(smus)):
                    group = bls[start:start + len(smus)]
                    chans = smus[:len(group)]
                    routing = self._grounded()
                    routing[self._wired("wordline", w)] = cfg.input_of(wl_ch)
                    for ch, b in zip(chans, group):
                        routing[self._wired("bitline", b)] = cfg.input_of(ch)
                    self._route(routing)
                    self._ensure_on([wl_ch] + chans)
                    # The measuring SMUs hold their bitlines at 0 V with the read compliance (after a
                    # pulse the bitline SMU may still hold another); sent only when not already in force.
                    for ch in chans:
                        a.force_voltage(ch, 0.0, cfg.read_compliance, resend=False)
                    a.force_voltage(wl_ch, v_read, cfg.read_compliance)
                    if len(chans) == 1:
                        data = {chans[0]: a.spot_current_datum(chans[0], cfg.read_range)}
                    else:
                        for ch in chans:
                            a.set_current_range(ch, cfg.read_range)
                        data = a.spot_measure(chans, cfg.read_range)
                    a.force_voltage(wl_ch, 0.0, cfg.read_compliance)
                    # A measuring SMU sinks the cell current: negative by the SMU convention.
                    for ch, b in zip(chans, group):
                        currents[(w, b)] = -data[ch].checked(f"read of cell ({w},{b})")
            a.check_errors("read")
        return [currents[(w, b)] for w, b in cells]

    # ----- vmm -----
    def _vmm(self, wordline_v: np.ndarray, bitlines: list[int]) -> np.ndarray:
        out = np.zeros((wordline_v.shape[0], len(bitlines)))
        with self._guard():
            for s, row in enumerate(wordline_v):
                out[s] = self._vmm_step(row, bitlines)
        return out

    def _vmm_step(self, row: np.ndarray, bitlines: list[int]) -> np.ndarray:
        cfg, a = self.config, self.analyzer
        sources, measuring = self._vmm_plan(row)
        result = np.zeros(len(bitlines))
        if not sources:
            # Every line is at 0 V: no current can flow, so no measurement is made.
            return result
        n = len(measuring)
        groups = [list(range(i, min(i + n, len(bitlines)))) for i in range(0, len(bitlines), n)]
        # Start with the group whose bitlines are already on the measuring SMUs (the last group of the
        # previous step), saving one round of switching per step.
        closed = self.matrix.closed_crosspoints or {}
        for k, g in enumerate(groups):
            if all(closed.get(self._bl_out[bitlines[j]]) == cfg.input_of(measuring[i]) for i, j in enumerate(g)):
                groups = groups[k:] + groups[:k]
                break
        base = self._grounded()
        for ch, _, outs in sources:
            for o in outs:
                base[o] = cfg.input_of(ch)
        for r, g in enumerate(groups):
            routing = dict(base)
            chans = measuring[:len(g)]
            for ch, j in zip(chans, g):
                routing[self._bl_out[bitlines[j]]] = cfg.input_of(ch)
            self._route(routing)
            if r == 0:
                # Sources go up only after the first routing: wordline relays always switch cold.
                self._ensure_on([ch for ch, _, _ in sources] + measuring)
                for ch in measuring:
                    a.force_voltage(ch, 0.0, cfg.read_compliance, resend=False)
                for ch, v, _ in sources:
                    a.force_voltage(ch, v, cfg.read_compliance)
            if len(chans) <= 2:
                # TI? costs one query per channel; a spot measurement costs XE + RMD? (+ MM, RI when
                # they change), so for one or two channels TI? is never more.
                data = {ch: a.spot_current_datum(ch, cfg.read_range) for ch in chans}
            else:
                for ch in chans:
                    a.set_current_range(ch, cfg.read_range)
                data = a.spot_measure(chans, cfg.read_range)
            for ch, j in zip(chans, g):
                result[j] = -data[ch].checked(f"vmm current of bitline {bitlines[j]}")
        for ch, _, _ in sources:
            a.force_voltage(ch, 0.0, cfg.read_compliance)
        a.check_errors("vmm step")
        return result

    # ----- records -----
    def describe(self) -> dict:
        cfg = self.config
        d = super().describe()
        d.update({
            "bench": cfg.name, "bench_file": str(cfg.path), "visa_library": cfg.visa_library,
            "analyzer": {"resource": cfg.analyzer_resource, "idn": self.identities.get("analyzer"),
                         "integration": cfg.integration, "read_range": describe_current_range(cfg.read_range),
                         "read_compliance": cfg.read_compliance, "pulse_compliance": cfg.pulse_compliance,
                         "wordline_channel": cfg.wordline_channel, "bitline_channel": cfg.bitline_channel,
                         "channels": [c.model_dump() for c in cfg.channels]},
            "matrix": {"resource": cfg.matrix_resource, "idn": self.identities.get("matrix"),
                       "config": cfg.matrix_config, "cards": cfg.cards, "ground_input": cfg.ground_input},
            "pinmap": {"wordlines": list(cfg.wordline_outputs), "bitlines": list(cfg.bitline_outputs)},
            "limits": dataclasses.asdict(self.limits),
            # errors another program left in the queues before this connection (read at connect)
            "stale_errors": {role: [[code, msg] for code, msg in errors] for role, errors in self.stale_errors.items()},
        })
        return d

    def stale_error_lines(self) -> list[str]:
        """One line per error found in an instrument's queue at connect (another program's, or a
        previous run's, leftovers), to show the user; [] when the queues were empty."""
        return [f"note: the {role} held an error from before this connection: {code} {msg}"
                for role in ("analyzer", "matrix") for code, msg in self.stale_errors.get(role, [])]



# ----------------------------------------------------------------------------------------------
# bench check


def format_pin_map(config: BenchConfig) -> str:
    """The pin map as a table a lab user can hold against the probe card."""
    mode = "ACON, one card 0" if config.matrix_config == "auto" else "NCON, cards 1-4"
    lines = [f"Pin map (E5250A {mode}; output = global matrix output, card/output in normal mode):"]

    def where(out: int) -> str:
        if out == 0:
            return "not wired"
        card, local = card_and_output(out)
        return f"output {out:2d}" + (f" (card {card}, output {local:2d})" if config.matrix_config == "normal" else "")

    n = max(len(config.wordline_outputs), len(config.bitline_outputs))
    for i in range(n):
        w = where(config.wordline_outputs[i]) if i < len(config.wordline_outputs) else ""
        b = where(config.bitline_outputs[i]) if i < len(config.bitline_outputs) else ""
        lines.append(f"  wordline {i:2d}: {w:<32s} bitline {i:2d}: {b}" if w else f"{'':46s}bitline {i:2d}: {b}")
    lines.append("Matrix inputs:")
    for c in sorted(config.channels, key=lambda c: c.input):
        role = {config.wordline_channel: "  (wordline: pulses, read voltage)",
                config.bitline_channel: "  (bitline: half-bias, measures reads)"}.get(c.channel, "")
        lines.append(f"  input {c.input:2d}: 4156C channel {c.channel} ({c.kind}){role}")
    lines.append(f"  input {config.ground_input:2d}: ground (every unselected line)")
    return "\n".join(lines)


def _unit(name: str) -> str:
    return "V" if "voltage" in name else "s" if "width" in name else ""


def format_limits(limits: SafeOperatingArea) -> str:
    """The safe operating area in force, one limit a line, as ``bench check`` prints it."""
    lines = ["Safe operating area in force (the bench file's [limits], pulse widths narrowed to the 4156C's):"]
    for f in dataclasses.fields(limits):
        value = getattr(limits, f.name)
        unit = _unit(f.name)
        shown = f"{value * 1e3:g} ms" if unit == "s" else f"{value:+g} V" if unit == "V" else f"{value!r}"
        lines.append(f"  {f.name:<18s} {shown}")
    return "\n".join(lines)


def check_bench(path, out: TextIO = sys.stdout, visa_log: str | None = None) -> int:
    """``rramlab bench check``: validate the file, connect, identify both instruments, confirm the
    matrix is open, print the pin map. Returns 0 when all is well, 2 for a bad file, 1 for a bench
    problem (with one clear message, no traceback)."""
    try:
        config = load_bench(path)
    except RramlabError as exc:
        print(f"bench check FAILED: {exc}", file=out)
        return 2
    print(f"bench file {config.path}: valid ({config.name or 'unnamed bench'})", file=out)
    try:
        station = connect_bench(config, visa_log=visa_log)
    except RramlabError as exc:
        print(f"bench check FAILED: {exc}", file=out)
        return 1
    except Exception as exc:  # noqa: BLE001 - bench check must never end in a traceback
        print(f"bench check FAILED: unexpected {exc.__class__.__name__}: {exc}", file=out)
        return 1
    status = 0
    try:
        print(f"analyzer {config.analyzer_resource}: {station.identities['analyzer']}", file=out)
        print(f"matrix   {config.matrix_resource}: {station.identities['matrix']}", file=out)
        for role in ("analyzer", "matrix"):
            for code, msg in station.stale_errors.get(role, []):
                print(f"note: the {role} held an old error from before this connection: {code} {msg}", file=out)
        closed = station.query_closed()
        if closed:
            print(f"bench check FAILED: after opening every crosspoint the matrix still reports {sorted(closed)} "
                  f"closed", file=out)
            status = 1
        else:
            print(format_pin_map(config), file=out)
            print(format_limits(station.limits), file=out)
    except RramlabError as exc:
        print(f"bench check FAILED: {exc}", file=out)
        status = 1
    finally:
        try:
            station.close()
        except RramlabError as exc:
            print(f"bench check FAILED while making the bench safe: {exc}", file=out)
            status = 1
    if status == 0:
        print("bench check OK", file=out)
    return status


def safe_bench(path, out: TextIO = sys.stdout, visa_log: str | None = None, resource_manager=None) -> int:
    """``rramlab bench safe``: connect (identify only, no reset) and return the bench to 0 V, every
    output switch off and every crosspoint open, e.g. after a run was killed with SIGKILL. Returns
    0 when the bench is safe, 2 for a bad file, 1 when it could not be made safe (one message)."""
    try:
        config = load_bench(path)
    except RramlabError as exc:
        print(f"bench safe FAILED: {exc}", file=out)
        return 2
    try:
        station = connect_bench(config, visa_log=visa_log, resource_manager=resource_manager, initialise=False)
    except RramlabError as exc:
        print(f"bench safe FAILED: {exc}", file=out)
        return 1
    except Exception as exc:  # noqa: BLE001 - never a traceback
        print(f"bench safe FAILED: unexpected {exc.__class__.__name__}: {exc}", file=out)
        return 1
    status = 0
    try:
        station.make_safe()
        for role in ("analyzer", "matrix"):
            for code, msg in station.stale_errors.get(role, []):
                print(f"note: the {role} held an old error from before: {code} {msg}", file=out)
        chans = ", ".join(str(c) for c in sorted(station.analyzer.channels))
        print(f"bench {config.name or config.path}: 4156C channels {chans} at 0 V with their output switches "
              f"off; every E5250A crosspoint open (the matrix reports none closed)", file=out)
    except RramlabError as exc:
        print(f"bench safe FAILED: {exc}", file=out)
        status = 1
    finally:
        try:
            station.close()
        except RramlabError as exc:
            print(f"bench safe FAILED while releasing the bench: {exc}", file=out)
            status = 1
    if status == 0:
        print("bench safe OK", file=out)
    return status
