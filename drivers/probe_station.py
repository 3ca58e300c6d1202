"""ProbeStation: the CrossbarInstrument seam on a real bench (Keysight 4156C + E5250A + probe card).

A bench TOML file (``docs/bench.md``) says where the instruments are, which 4156C channel is cabled
to which matrix input, which input is ground, the pin map from wordlines/bitlines to matrix outputs
and the safe operating area. Two entry points for the command line:

* ``open_bench(path, visa_log=None) -> ProbeStation``: validate the file completely (raising
  RramlabError subclasses that name the field and the fix) before any VISA resource is opened, then
  connect, identify both instruments and put them in a known, safe state.
* ``check_bench(path, out=sys.stdout, visa_log=None) -> int``: all of ``rramlab bench check``.

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
open and every crosspoint opens, then the error propagates.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .interface import (ArrayGeometry, CrossbarInstrument, GeometryError, InstrumentError, RequestError,
                        RramlabError, SafeOperatingArea, SafetyError)
from .keysight_4156c import (CHANNEL_KINDS, HRSMU_ONLY_CODES, PULSE_MAX_WIDTH, PULSE_MIN_WIDTH, SMU_CHANNELS,
                             VSU_CHANNELS, Keysight4156C, check_pulse_timing, current_range_code,
                             describe_current_range, INTEGRATION_MODES)
from .keysight_e5250a import INPUTS, OUTPUTS_PER_CARD, KeysightE5250A
from .visa_io import Transport, VisaLog, VisaTimeoutError, format_number

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_SIM_YAML = PACKAGE_DIR / "keysight_sim.yaml"
BENCH_DIR = PACKAGE_DIR / "benches"

#: What the 4156C adds to any chip's safe operating area: its SMU pulse width range. The voltage
#: fields are the HRSMU's own reach, wide enough never to tighten the chip's limits.
INSTRUMENT_LIMITS = SafeOperatingArea(max_set_voltage=200.0, min_reset_voltage=-200.0, max_read_voltage=100.0,
                                      max_line_voltage=100.0, min_pulse_width=PULSE_MIN_WIDTH,
                                      max_pulse_width=PULSE_MAX_WIDTH)


class BenchError(RequestError):
    """The bench file is missing, malformed, or describes a bench that cannot work."""


# ----------------------------------------------------------------------------------------------
# The bench file


@dataclass(frozen=True)
class ChannelWiring:
    channel: int  # 4156C channel (SMU 1-6, VSU 21-22)
    kind: str     # hrsmu | mpsmu | hpsmu | vsu
    input: int    # E5250A input port it is cabled to (1-10)

    @property
    def is_smu(self) -> bool:
        return self.kind != "vsu"


@dataclass(frozen=True)
class BenchConfig:
    """A validated bench file. Build it with ``load_bench``."""

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


_SCHEMA: dict[str, dict[str, tuple]] = {
    # table -> field -> (types, required, default)
    "bench": {"name": ((str,), False, ""), "visa_library": ((str,), False, "")},
    "analyzer": {
        "resource": ((str,), True, None), "timeout": ((int, float), False, 30.0),
        "integration": ((str,), False, "medium"), "read_range": ((str,), False, "auto"),
        "read_compliance": ((int, float), False, 1e-4), "pulse_compliance": ((int, float), False, 1e-3),
        "wordline_channel": ((int,), True, None), "bitline_channel": ((int,), True, None),
        "channels": ((list,), True, None),
    },
    "matrix": {
        "resource": ((str,), True, None), "timeout": ((int, float), False, 10.0),
        "config": ((str,), False, "auto"), "cards": ((int,), False, 4), "ground_input": ((int,), True, None),
        "settle_time": ((int, float), False, 0.02),
    },
    "pinmap": {"wordlines": ((list,), True, None), "bitlines": ((list,), True, None)},
    "array": {"wordlines": ((int,), False, 24), "bitlines": ((int,), False, 24)},
    "limits": {k: ((int, float), False, getattr(SafeOperatingArea(), k)) for k in
               ("max_set_voltage", "min_reset_voltage", "max_read_voltage", "max_line_voltage",
                "min_pulse_width", "max_pulse_width")},
}
_CHANNEL_FIELDS = {"channel": (int,), "kind": (str,), "input": (int,)}
_REQUIRED_TABLES = ("analyzer", "matrix", "pinmap")


def _unknown(where: str, key: str, known) -> BenchError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return BenchError(f"unknown field {where}{key!r}{hint}; the known fields are {', '.join(sorted(known))}")


def _typed(table: str, key: str, value, types: tuple):
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        want = " or ".join({int: "a whole number", float: "a number", str: "a text in quotes", list: "a list"}[t]
                           for t in types)
        raise BenchError(f"[{table}] {key} = {value!r} must be {want}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BenchError(f"[{table}] {key} = {value!r} must be finite")
    return float(value) if float in types and not isinstance(value, (str, list)) else value


def load_bench(path: str | Path) -> BenchConfig:
    """Read and fully validate a bench file; no VISA resource is touched.

    Raises BenchError (a RequestError, a RramlabError) naming the file, the field and the fix.
    """
    p = Path(path)
    try:
        return _load_bench(p)
    except BenchError as exc:
        raise BenchError(f"bench file {p}: {exc}") from None


def _load_bench(p: Path) -> BenchConfig:
    if not p.is_file():
        raise BenchError("no such file: give the path of a bench TOML file (examples ship in drivers/benches/)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"not valid TOML: {exc}") from None

    for table in data:
        if table not in _SCHEMA:
            raise _unknown("", table, _SCHEMA)
    for table in _REQUIRED_TABLES:
        if table not in data:
            raise BenchError(f"the [{table}] table is missing; see docs/bench.md for a complete example")
    v: dict[str, dict[str, Any]] = {}
    for table, fields in _SCHEMA.items():
        given = data.get(table, {})
        if not isinstance(given, dict):
            raise BenchError(f"{table} must be a table [{table}]")
        for key in given:
            if key not in fields:
                raise _unknown(f"{table}.", key, fields)
        v[table] = {}
        for key, (types, required, default) in fields.items():
            if key in given:
                v[table][key] = _typed(table, key, given[key], types)
            elif required:
                raise BenchError(f"[{table}] {key} is missing; see docs/bench.md for what it means")
            else:
                v[table][key] = default

    bench, an, mx, pm, arr, lim = (v[t] for t in ("bench", "analyzer", "matrix", "pinmap", "array", "limits"))

    # --- VISA library: resolved here so a missing simulation file is a file error, not a VISA one
    lib = bench["visa_library"].strip()
    resolved = lib
    if lib == "@sim":
        raise BenchError("[bench] visa_library = '@sim' would load pyvisa-sim's own demo devices: "
                         "use '@sim:default' for rramlab's 4156C + E5250A simulation")
    if lib.startswith("@sim:"):
        target = lib[len("@sim:"):].strip()
        yaml = DEFAULT_SIM_YAML if target == "default" else (p.parent / target).resolve()
        if not yaml.is_file():
            raise BenchError(f"[bench] visa_library = {lib!r}: the simulation file {yaml} does not exist "
                             f"(a relative path is taken from the bench file's folder)")
        resolved = f"{yaml}@sim"

    # --- resources and timeouts
    for table, t in (("analyzer", an), ("matrix", mx)):
        if not t["resource"].strip():
            raise BenchError(f"[{table}] resource is empty: give its VISA address, e.g. 'GPIB0::17::INSTR'")
        if not 0 < t["timeout"] <= 3600:
            raise BenchError(f"[{table}] timeout = {t['timeout']} s must be between 0 and 3600 s")
    if an["resource"].strip() == mx["resource"].strip():
        raise BenchError(f"[analyzer] resource and [matrix] resource are both {an['resource']!r}: "
                         f"each instrument has its own address")

    # --- analyzer
    if an["integration"] not in INTEGRATION_MODES:
        raise BenchError(f"[analyzer] integration = {an['integration']!r} must be one of {tuple(INTEGRATION_MODES)}")
    try:
        read_range = current_range_code(an["read_range"])
    except RequestError as exc:
        raise BenchError(f"[analyzer] read_range: {exc}") from None
    for key in ("read_compliance", "pulse_compliance"):
        if not 0 < an[key] <= 0.1:
            raise BenchError(f"[analyzer] {key} = {an[key]} A must be above 0 and at most 0.1 A (e.g. 1e-4)")

    channels: list[ChannelWiring] = []
    for i, item in enumerate(an["channels"]):
        where = f"[[analyzer.channels]] entry {i + 1}"
        if not isinstance(item, dict):
            raise BenchError(f"{where} must be a table with channel, kind and input")
        for key in item:
            if key not in _CHANNEL_FIELDS:
                raise _unknown(f"analyzer.channels[{i}].", key, _CHANNEL_FIELDS)
        for key, types in _CHANNEL_FIELDS.items():
            if key not in item:
                raise BenchError(f"{where}: {key} is missing")
            _typed(f"analyzer.channels entry {i + 1}", key, item[key], types)
        ch, kind, inp = item["channel"], item["kind"], item["input"]
        if kind not in CHANNEL_KINDS:
            raise BenchError(f"{where}: kind = {kind!r} must be one of {CHANNEL_KINDS}")
        if ch not in SMU_CHANNELS + VSU_CHANNELS or (kind == "vsu") != (ch in VSU_CHANNELS):
            raise BenchError(f"{where}: channel {ch} cannot be a {kind}: SMUs are channels 1-6, VSUs 21 and 22")
        if inp not in INPUTS:
            raise BenchError(f"{where}: input = {inp} is not an E5252A input (1 to 10)")
        channels.append(ChannelWiring(ch, kind, inp))
    if not channels:
        raise BenchError("[[analyzer.channels]] is empty: list every 4156C unit cabled to the matrix")
    seen_ch, seen_in = {}, {}
    for c in channels:
        if c.channel in seen_ch:
            raise BenchError(f"analyzer channel {c.channel} is listed twice in [[analyzer.channels]]")
        if c.input in seen_in:
            raise BenchError(f"matrix input {c.input} is given to both channel {seen_in[c.input]} and channel "
                             f"{c.channel}: each unit has its own input")
        seen_ch[c.channel], seen_in[c.input] = c, c.channel
    smus = [c for c in channels if c.is_smu]
    for key in ("wordline_channel", "bitline_channel"):
        ch = an[key]
        if ch not in seen_ch or not seen_ch[ch].is_smu:
            raise BenchError(f"[analyzer] {key} = {ch} must be one of the SMU channels listed in "
                             f"[[analyzer.channels]] ({[c.channel for c in smus]})")
    if an["wordline_channel"] == an["bitline_channel"]:
        raise BenchError("[analyzer] wordline_channel and bitline_channel must be two different SMUs")
    if abs(read_range) in HRSMU_ONLY_CODES:
        slow = [c.channel for c in smus if c.kind != "hrsmu"]
        if slow:
            raise BenchError(f"[analyzer] read_range = {an['read_range']!r} exists only on HRSMUs, but channel(s) "
                             f"{slow} are not: use 'limited 1nA' or above, or list only HRSMUs")

    # --- matrix
    if mx["config"] not in ("auto", "normal"):
        raise BenchError(f"[matrix] config = {mx['config']!r} must be 'auto' (ACON) or 'normal' (NCON)")
    if not 1 <= mx["cards"] <= 4:
        raise BenchError(f"[matrix] cards = {mx['cards']} must be 1 to 4 (E5252A cards installed)")
    if mx["ground_input"] not in INPUTS:
        raise BenchError(f"[matrix] ground_input = {mx['ground_input']} is not an E5252A input (1 to 10)")
    if mx["ground_input"] in seen_in:
        raise BenchError(f"[matrix] ground_input = {mx['ground_input']} is also the input of analyzer channel "
                         f"{seen_in[mx['ground_input']]}: ground needs its own input")
    if not 0 <= mx["settle_time"] <= 10:
        raise BenchError(f"[matrix] settle_time = {mx['settle_time']} s must be between 0 and 10 s")

    # --- array and pin map
    for key in ("wordlines", "bitlines"):
        if not 1 <= arr[key] <= 1024:
            raise BenchError(f"[array] {key} = {arr[key]} must be a positive number of lines")
    n_out = OUTPUTS_PER_CARD * mx["cards"]
    used_outputs: dict[int, str] = {}
    maps = {}
    for key in ("wordlines", "bitlines"):
        lst = pm[key]
        if len(lst) != arr[key]:
            raise BenchError(f"[pinmap] {key} has {len(lst)} entries but [array] {key} = {arr[key]}: give one "
                             f"matrix output per line (0 for a line that is not wired)")
        for i, out in enumerate(lst):
            line = f"{key[:-1]} {i}"
            if isinstance(out, bool) or not isinstance(out, int):
                raise BenchError(f"[pinmap] {key}[{i}] = {out!r} ({line}) must be a matrix output number")
            if out == 0:
                continue
            if not 1 <= out <= n_out:
                raise BenchError(f"[pinmap] {key}[{i}] = {out} ({line}): the matrix has outputs 1 to {n_out} "
                                 f"with {mx['cards']} card(s)")
            if out in used_outputs:
                raise BenchError(f"[pinmap] output {out} is given to both {used_outputs[out]} and {line}: "
                                 f"each line needs its own output (sharing one would short the lines)")
            used_outputs[out] = line
        maps[key] = tuple(int(o) for o in lst)
    used_w = tuple(i for i, o in enumerate(maps["wordlines"]) if o)
    used_b = tuple(i for i, o in enumerate(maps["bitlines"]) if o)
    if not used_w or not used_b:
        raise BenchError("[pinmap] wires no wordline or no bitline: at least one of each is needed")
    geometry = ArrayGeometry(arr["wordlines"], arr["bitlines"], used_w, used_b)

    try:
        limits = SafeOperatingArea(**lim).narrowed(INSTRUMENT_LIMITS)
    except SafetyError as exc:
        raise BenchError(f"[limits]: {exc}") from None

    return BenchConfig(
        path=p.resolve(), name=bench["name"], visa_library=lib, visa_library_resolved=resolved,
        analyzer_resource=an["resource"].strip(), analyzer_timeout=float(an["timeout"]),
        integration=an["integration"], read_range=read_range, read_compliance=float(an["read_compliance"]),
        pulse_compliance=float(an["pulse_compliance"]), wordline_channel=an["wordline_channel"],
        bitline_channel=an["bitline_channel"], channels=tuple(channels),
        matrix_resource=mx["resource"].strip(), matrix_timeout=float(mx["timeout"]), matrix_config=mx["config"],
        cards=mx["cards"], ground_input=mx["ground_input"], settle_time=float(mx["settle_time"]),
        wordline_outputs=maps["wordlines"], bitline_outputs=maps["bitlines"], geometry=geometry, limits=limits,
    )


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


def connect_bench(config: BenchConfig, visa_log: str | TextIO | None = None, resource_manager=None,
                  on_message=None) -> "ProbeStation":
    """Open both resources, identify both instruments, then reset them to a safe known state.

    Nothing is written to either instrument before both are open and both have answered ``*IDN?``
    with the right model. ``on_message(name, direction, text)`` sees every message (tests, benchmark).
    """
    log = VisaLog(visa_log) if visa_log is not None else None
    resources = []
    try:
        rm = resource_manager or _resource_manager(config)
        a_res = _open(rm, "analyzer", config.analyzer_resource, config.analyzer_timeout, config)
        resources.append(a_res)
        m_res = _open(rm, "matrix", config.matrix_resource, config.matrix_timeout, config)
        resources.append(m_res)
        a_io = Transport(a_res, "4156C", log=log, on_message=on_message)
        m_io = Transport(m_res, "E5250A", log=log, on_message=on_message)
        analyzer = Keysight4156C(a_io, channels={c.channel: c.kind for c in config.channels},
                                 timeout=config.analyzer_timeout, integration=config.integration)
        matrix = KeysightE5250A(m_io, config=config.matrix_config, cards=config.cards,
                                settle_time=config.settle_time, timeout=config.matrix_timeout)
        try:
            analyzer_idn = analyzer.identify()
        except InstrumentError as exc:
            raise InstrumentError(f"[analyzer] resource {config.analyzer_resource!r}: {exc}") from exc
        try:
            matrix_idn = matrix.identify()
        except InstrumentError as exc:
            raise InstrumentError(f"[matrix] resource {config.matrix_resource!r}: {exc}") from exc
        station = ProbeStation(config, analyzer, matrix, log=log)
        station.identities = {"analyzer": analyzer_idn, "matrix": matrix_idn}
        station.initialise()
        return station
    except BaseException:
        for r in resources:
            with contextlib.suppress(Exception):
                r.close()
        if log is not None:
            log.close()
        raise


def open_bench(path, visa_log: str | None = None) -> "ProbeStation":
    """Validate the bench file (before any VISA resource is opened), connect and initialise.

    Raises BenchError for a bad file and InstrumentError for a bench that does not answer.
    """
    return connect_bench(load_bench(path), visa_log=visa_log)


# ----------------------------------------------------------------------------------------------
# The probe station


@dataclass
class _PulsePlan:
    pulse_channel: int
    pulse_v: float
    bias: list[tuple[int, float]]  # (channel, volts) DC around the pulse
    routing: dict[int, int]        # output -> input


class ProbeStation(CrossbarInstrument):
    """CrossbarInstrument on a 4156C + E5250A bench (see the module docstring for the schemes).

    config: a BenchConfig (``load_bench``); analyzer, matrix: connected drivers; log: the VisaLog to
    close with the station. Call ``initialise()`` before the first operation (``connect_bench`` does).
    """

    backend_name = "probe-station"

    def __init__(self, config: BenchConfig, analyzer: Keysight4156C, matrix: KeysightE5250A,
                 log: VisaLog | None = None):
        super().__init__(config.geometry, config.limits)
        self.config, self.analyzer, self.matrix, self.log = config, analyzer, matrix, log
        self.identities: dict[str, str] = {}
        self._on: set[int] = set()       # channels whose output switch is closed
        self._released = False
        #: current measured during the last pulse (A, wordline SMU), None before any pulse
        self.last_pulse_current: float | None = None
        self._wl_out = {i: o for i, o in enumerate(config.wordline_outputs) if o}
        self._bl_out = {i: o for i, o in enumerate(config.bitline_outputs) if o}

    # ----- life cycle -----
    def initialise(self) -> None:
        """Reset both instruments: FLEX mode, data format, integration, SMU filters off (pulse
        fidelity), outputs off, matrix mode and FREE rule, every crosspoint open."""
        with self._guard():
            self.analyzer.reset()
            smus = [c.channel for c in self.config.channels if c.is_smu]
            self.analyzer._set("FL", "FL 0," + ",".join(str(c) for c in smus))
            self.analyzer.outputs_off()
            self.analyzer.check_errors("initialisation")
            self._on.clear()
            self.matrix.reset()

    def close(self) -> None:
        """Outputs to 0 V and off, matrix open, then release both VISA resources. Idempotent."""
        if self._released:
            return
        try:
            super().close()
        finally:
            self._released = True
            self.analyzer.io.close()
            self.matrix.io.close()
            if self.log is not None:
                self.log.close()

    def _reset_outputs(self) -> None:
        if self._released:
            return
        problems = self._safe_state()
        if problems:
            raise InstrumentError("could not bring the bench to a safe state: " + "; ".join(problems))
        self.analyzer.check_errors("reset of the outputs")

    def _safe_state(self, after_timeout: bool = False) -> list[str]:
        """Every source to 0 V, every output switch off, every crosspoint open. Each step is tried
        even if an earlier one fails; returns what failed."""
        problems = []
        a, m = self.analyzer, self.matrix
        if after_timeout:
            a.io.clear()
            m.io.clear()
        a.forget_settings()
        for ch in sorted(a.channels):
            try:
                a.force_voltage(ch, 0.0, self.config.read_compliance)
            except Exception as exc:  # noqa: BLE001 - keep going: the rest still matters
                problems.append(f"channel {ch} to 0 V: {exc}")
        try:
            a.outputs_off()
            self._on.clear()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"output switches off: {exc}")
        try:
            m.open_all()
            m.wait()
        except Exception as exc:  # noqa: BLE001
            m._closed = None
            problems.append(f"open every crosspoint: {exc}")
        return problems

    @contextlib.contextmanager
    def _guard(self):
        """Run instrument traffic; on any exception (Ctrl-C too) go to the safe state, then re-raise."""
        if self._released:
            raise InstrumentError("this probe station is closed: open the bench again")
        try:
            yield
        except BaseException as exc:
            problems = self._safe_state(after_timeout=isinstance(exc, VisaTimeoutError))
            if problems:
                exc.add_note("and the bench could not be made safe: " + "; ".join(problems)
                             + " -- switch the SMU outputs off by hand")
            raise

    # ----- validation of what this bench can do (before anything is sent) -----
    def check_pulse(self, wordline_v, bitline_v, width, shape="rect"):
        try:
            w = float(width)
        except (TypeError, ValueError):
            w = None
        if w is not None and math.isfinite(w) and not PULSE_MIN_WIDTH - 1e-12 <= w <= PULSE_MAX_WIDTH + 1e-12:
            raise SafetyError(
                f"pulse width {w:g} s is outside the 4156C SMU pulse range 0.5 ms to 100 ms: give a width in that "
                f"range (for example --width 2e-3); the twin's microsecond pulses cannot be made on this bench")
        wl, bl, width, shape = super().check_pulse(wordline_v, bitline_v, width, shape)
        if shape != "rect":
            raise RequestError(f"pulse shape {shape!r} cannot be made here: the 4156C SMU pulse is rectangular; "
                               f"use shape='rect' on the probe station")
        try:
            check_pulse_timing(width)
        except RequestError as exc:
            raise RequestError(str(exc)) from None
        self._pulse_plan(wl, bl)
        return wl, bl, width, shape

    def check_cells(self, cells):
        out = super().check_cells(cells)
        for w, b in out:
            self._wired("wordline", w)
            self._wired("bitline", b)
        return out

    def check_vmm(self, wordline_v, bitlines=None):
        arr2, bls, single = super().check_vmm(wordline_v, bitlines)
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

    # ----- routing -----
    def _grounded(self) -> dict[int, int]:
        g = self.config.ground_input
        return {o: g for o in list(self._wl_out.values()) + list(self._bl_out.values())}

    def _route(self, routing: dict[int, int]) -> None:
        if self.matrix.route(routing):
            self.matrix.check_errors("switching the matrix")

    def _ensure_on(self, channels) -> None:
        new = sorted(set(channels) - self._on)
        if new:
            self.analyzer.outputs_on(new)
            self._on.update(new)

    # ----- pulse -----
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
        # pattern must be safe too.
        if bias:
            wl0 = np.array([0.0 if self._level_key(v) == self._level_key(pulsed["v"]) else v for v in wl])
            bl0 = np.array([0.0 if self._level_key(v) == self._level_key(pulsed["v"]) else v for v in bl])
            try:
                CrossbarInstrument.check_pulse(self, wl0, bl0, PULSE_MIN_WIDTH)
            except SafetyError as exc:
                raise SafetyError(f"while the DC biases are on around the pulse: {exc}") from None
        return _PulsePlan(cfg.wordline_channel, pulsed["v"], bias, routing)

    def _pulse(self, wordline_v, bitline_v, width, shape) -> None:
        plan = self._pulse_plan(wordline_v, bitline_v)
        comp = self.config.pulse_compliance
        a = self.analyzer
        with self._guard():
            self._route(plan.routing)
            self._ensure_on([plan.pulse_channel] + [ch for ch, _ in plan.bias])
            for ch, v in plan.bias:
                a.force_voltage(ch, v, comp)
            datum = a.pulse_voltage(plan.pulse_channel, plan.pulse_v, width, comp)
            for ch, _ in plan.bias:
                a.force_voltage(ch, 0.0, comp)
            a.check_errors("pulse")
            self.last_pulse_current = datum.checked("pulse current")

    # ----- read -----
    def _read(self, cells, v_read):
        cfg, a = self.config, self.analyzer
        wl_ch, bl_ch = cfg.wordline_channel, cfg.bitline_channel
        currents = []
        with self._guard():
            for w, b in cells:
                routing = self._grounded()
                routing[self._wired("wordline", w)] = cfg.input_of(wl_ch)
                routing[self._wired("bitline", b)] = cfg.input_of(bl_ch)
                self._route(routing)
                self._ensure_on([wl_ch, bl_ch])
                a.force_voltage(wl_ch, v_read, cfg.read_compliance)
                datum = a.spot_current_datum(bl_ch, cfg.read_range)
                a.force_voltage(wl_ch, 0.0, cfg.read_compliance)
                # The bitline SMU sinks the cell current: negative by the SMU convention.
                currents.append(-datum.checked(f"read of cell ({w},{b})"))
            a.check_errors("read")
        return currents

    # ----- vmm -----
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
                         "channels": [vars(c) for c in cfg.channels]},
            "matrix": {"resource": cfg.matrix_resource, "idn": self.identities.get("matrix"),
                       "config": cfg.matrix_config, "cards": cfg.cards, "ground_input": cfg.ground_input},
            "pinmap": {"wordlines": list(cfg.wordline_outputs), "bitlines": list(cfg.bitline_outputs)},
            "limits": vars(self.limits),
        })
        return d


# ----------------------------------------------------------------------------------------------
# bench check


def format_pin_map(config: BenchConfig) -> str:
    """The pin map as a table a lab user can hold against the probe card."""
    mode = "ACON, one card 0" if config.matrix_config == "auto" else "NCON, cards 1-4"
    lines = [f"Pin map (E5250A {mode}; output = global matrix output, card/output in normal mode):"]

    def where(out: int) -> str:
        if out == 0:
            return "not wired"
        card, local = 1 + (out - 1) // OUTPUTS_PER_CARD, (out - 1) % OUTPUTS_PER_CARD + 1
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
        closed = station.matrix.query_closed()
        if closed:
            print(f"bench check FAILED: after opening every crosspoint the matrix still reports {sorted(closed)} "
                  f"closed", file=out)
            status = 1
        else:
            print(format_pin_map(config), file=out)
            print(f"pulse width range on this bench: {station.limits.min_pulse_width * 1e3:g} ms to "
                  f"{station.limits.max_pulse_width * 1e3:g} ms", file=out)
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
