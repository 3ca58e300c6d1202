"""A virtual Keysight 4156C in FLEX mode whose readings come from the simulated array.

It parses the FLEX and common commands a program sends (design doc
``instrument-commands.md`` sections 1.2-1.8, after the 4155C/4156C manuals), keeps the instrument's
state (output switches, forced voltages, output and measurement ranges, compliance, filters,
integration, measurement mode, pulse timing and pulse source, data format, data buffer) and answers
measurements in the FLEX ASCII data format: ``SSS`` status (bit sum: 1 overflow, 4 another unit in
compliance, 8 this unit in compliance, 128 end of data), a channel letter, a data type letter and a
13-character value, e.g. ``128AI+5.331500E-11``.

What the real instrument rejects goes to its error queue (read with ``:SYST:ERR?``; FLEX ``ERR?``
returns the first four codes) with the SCPI standard error class: a unit that is not installed
(-241), a range code that does not exist or does not hold the value (-224 / -222), pulse timing
outside 0.5-100 ms width, 5 ms-1 s period, period >= width + 4 ms (-222), a VSU asked to pulse or
measure (-221), an unknown command (-113).

Pulse priority (``PT`` 5th argument; public FLEX scripts: 0 keeps the pulse width, 1 waits for the
measurement): with priority 1, or none given, a pulse whose measurement integrates longer than the
width is stretched to the integration time (and its period to width + 4 ms), so with medium
integration a 2 ms pulse lasts 20 ms; the bench clock and the twin see the stretched pulse. With
priority 0 the width is kept. (The default when the argument is left out is inferred from the
review in issue 8: a requested 2 ms pulse came out tens of ms wide.)

Accepted in both forms where the manual allows both: ``PT hold,width[,period[,delay[,priority]]]``
(priority 0 or 1), pulse range codes 0 (auto), positive (limited auto) or negative (fixed), ``CL``
with or without channels, ``:SYST:ERR?`` in short or long form, ``FMT 1`` with or without a mode.

Not modelled (an error in the queue says so, rather than a made-up answer): current forcing (DI,
PI), sweeps and sampling (MM 2, 4, 5, 10...), binary data formats.

Sign convention as on the instrument: an SMU's current is positive when it flows out of the SMU
into the device, so the bitline SMU of a read reports the cell current as negative.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

from .base import (DATA_OUT_OF_RANGE, HARDWARE_MISSING, ILLEGAL_PARAMETER, MISSING_PARAMETER,
                   PARAMETER_NOT_ALLOWED, SETTINGS_CONFLICT, UNDEFINED_HEADER, CommandError, VirtualInstrument,
                   split_arguments)
from .clock import BenchClock

log = logging.getLogger(__name__)

SMU_KINDS = ("hrsmu", "mpsmu", "hpsmu")
CHANNEL_LETTERS = {1: "A", 2: "B", 3: "C", 4: "D", 5: "E", 6: "F", 21: "Q", 22: "R"}
#: current range code -> full scale (A)
CURRENT_RANGES = {9: 10e-12, 10: 100e-12, 11: 1e-9, 12: 10e-9, 13: 100e-9, 14: 1e-6, 15: 10e-6,
                  16: 100e-6, 17: 1e-3, 18: 10e-3, 19: 100e-3, 20: 1.0}
#: voltage output range code -> full scale (V)
VOLTAGE_RANGES = {11: 2.0, 12: 20.0, 13: 40.0, 14: 100.0, 15: 200.0}
MAX_VOLTAGE = {"hrsmu": 100.0, "mpsmu": 100.0, "hpsmu": 200.0, "vsu": 20.0}
MAX_COMPLIANCE = {"hrsmu": 0.1, "mpsmu": 0.1, "hpsmu": 1.0}
#: a reading beyond this fraction of the range's full scale is an overflow (manual Table 7-4)
OVER_RANGE = {9: 1.05, 10: 1.15}
OVERFLOW_VALUE = 1.99999e101

PULSE_MIN_WIDTH, PULSE_MAX_WIDTH = 0.5e-3, 100e-3
PULSE_MIN_PERIOD, PULSE_MAX_PERIOD, PULSE_MARGIN = 5e-3, 1.0, 4e-3
PULSE_STEP = 100e-6
HOLD_MAX = 655.35
SHORT_SIT = (80e-6, 10.16e-3)
LONG_SIT = (16.7e-3, 2.0)

STATUS_OVERFLOW, STATUS_OTHER_COMPLIANCE, STATUS_COMPLIANCE, STATUS_EOD = 1, 4, 8, 128


@dataclass
class Unit:
    """One installed unit's state. Voltages V, currents A."""

    channel: int
    kind: str
    on: bool = False
    voltage: float = 0.0
    voltage_range: int = 0
    compliance: float = 1e-4
    current_range: int = 0       # RI code
    filter_on: bool = True
    pulse: tuple | None = None   # (range, base, peak, compliance) from PV

    @property
    def is_smu(self) -> bool:
        return self.kind != "vsu"

    @property
    def letter(self) -> str:
        return CHANNEL_LETTERS[self.channel]


@dataclass
class PulseTiming:
    hold: float
    width: float
    period: float
    delay: float = 0.0
    priority: int | None = None  # None: not given (behaves as 1, measurement first)


@dataclass
class AnalyzerState:
    flex: bool = False
    data_format: int = 1
    integration: int = 2          # SLI: 1 short, 2 medium, 3 long
    short_time: float | None = None
    long_time: float | None = None
    mode: int | None = None       # MM
    mode_channels: tuple = ()
    timing: PulseTiming | None = None
    buffer: list = field(default_factory=list)
    sweep: tuple | None = None            # WV: (channel, mode, start, stop, steps, compliance)
    sweep_timing: tuple = (0.0, 0.0)      # WT: (hold, delay) s
    sweep_abort: tuple = (1, 1)           # WM: (abort, post)


class VirtualAnalyzer(VirtualInstrument):
    """The virtual 4156C. ``units``: channel -> kind ("hrsmu", "mpsmu", "hpsmu", "vsu") installed.
    ``probe_card``: a VirtualProbeCard that turns the outputs into line voltages and currents (set by
    the bench); without one every current reads 0 A."""

    MODEL = "4156C"
    IDN = "HEWLETT-PACKARD,4156C,0,03.10:04.08:01.00"

    def __init__(self, units: dict[int, str] | None = None, clock: BenchClock | None = None):
        super().__init__(clock)
        units = units or {1: "hrsmu", 2: "hrsmu", 3: "hrsmu", 4: "hrsmu", 21: "vsu", 22: "vsu"}
        for ch, kind in units.items():
            if ch not in CHANNEL_LETTERS or (kind == "vsu") != (ch in (21, 22)) or kind not in SMU_KINDS + ("vsu",):
                raise ValueError(f"a 4156C cannot have a {kind!r} as channel {ch}")
        self.kinds = dict(units)
        self.probe_card = None
        #: spot readings whose integration time was shorter than the cells' settling time
        #: (VirtualArray.read_settling_time_s): the twin answered the settled (DC) current, which such a
        #: short reading of a real cell does not give (the stack's charging current adds to it). The
        #: twin's, not the instrument's: *RST leaves them.
        self.unsettled_readings = 0
        self.last_reading_settled = True
        self._unsettled_said: set = set()
        self._reset()

    # ----- state -----
    def _reset(self) -> None:
        flex = getattr(self, "state", None) is not None and self.state.flex
        self.units = {ch: Unit(ch, kind) for ch, kind in self.kinds.items()}
        self.state = AnalyzerState(flex=flex)

    def source_voltages(self) -> dict[int, float]:
        """Channel -> volts of every unit whose output switch is closed (a pulse source at its base)."""
        out = {}
        for ch, u in self.units.items():
            if u.on:
                out[ch] = u.pulse[1] if u.pulse is not None else u.voltage
        return out

    def outputs_at_zero(self) -> bool:
        """Every output switch open, or closed at 0 V."""
        return all(v == 0.0 for v in self.source_voltages().values())

    # ----- parsing helpers -----
    def _unit(self, text: str, what: str, smu: bool = False) -> Unit:
        ch = _int(text, f"{what} channel")
        if ch not in CHANNEL_LETTERS:
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; channel {ch} does not exist ({what})")
        if ch not in self.units:
            raise CommandError(HARDWARE_MISSING, f"Hardware missing; no unit installed at channel {ch} ({what})")
        u = self.units[ch]
        if smu and not u.is_smu:
            raise CommandError(SETTINGS_CONFLICT, f"Settings conflict; channel {ch} is a VSU, which cannot {what}")
        return u

    def _current_code(self, text: str, u: Unit) -> int:
        code = _int(text, "current range")
        if code != 0 and abs(code) not in CURRENT_RANGES:
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; current range code {code}")
        if abs(code) in (9, 10) and u.kind != "hrsmu":
            raise CommandError(ILLEGAL_PARAMETER,
                               f"Illegal parameter value; range code {code} (10 pA/100 pA) needs an HRSMU, channel "
                               f"{u.channel} is an {u.kind.upper()}")
        if abs(code) == 20 and u.kind != "hpsmu":
            raise CommandError(ILLEGAL_PARAMETER, "Illegal parameter value; the 1 A range needs an HPSMU")
        return code

    def _voltage_code(self, text: str, u: Unit, *values: float) -> int:
        code = _int(text, "voltage range")
        if u.kind == "vsu":
            if code not in (0, 12, -12):
                raise CommandError(ILLEGAL_PARAMETER,
                                   f"Illegal parameter value; a VSU has only the 20 V range (code 0 or 12), got {code}")
        elif code != 0 and (abs(code) not in VOLTAGE_RANGES or (abs(code) == 15 and u.kind != "hpsmu")):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; voltage range code {code} on channel "
                                                  f"{u.channel} ({u.kind.upper()})")
        top = MAX_VOLTAGE[u.kind]
        if code < 0:
            top = min(top, VOLTAGE_RANGES[-code])
        for v in values:
            if abs(v) > top + 1e-12:
                raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; {v:g} V on channel {u.channel} "
                                                      f"(range code {code} holds {top:g} V)")
        return code

    def _compliance(self, text: str, u: Unit) -> float:
        c = _float(text, "compliance")
        if not 0 < abs(c) <= MAX_COMPLIANCE[u.kind] + 1e-15:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; current compliance {c:g} A on channel "
                                                  f"{u.channel} (0 < |Icomp| <= {MAX_COMPLIANCE[u.kind]:g} A)")
        return abs(c)

    def _require_flex(self, head: str) -> None:
        if not self.state.flex:
            raise CommandError(UNDEFINED_HEADER, f"Undefined header; {head} is a FLEX command: send US first")

    # ----- the command set -----
    def _execute(self, command: str) -> str | None:
        m = re.fullmatch(r"(\*?[A-Za-z]+\??|:[A-Za-z:]+\??)\s*(.*)", command.strip())
        if m is None:
            raise CommandError(UNDEFINED_HEADER, f"Undefined header; {command!r}")
        head, rest = m.group(1).upper(), m.group(2)
        args = split_arguments(rest)
        common = self._common(head)
        if common is not None:
            return common or None
        if _scpi_error_query(head):
            return self.pop_error()
        if head == "*RST":
            self._reset()
            return None
        if head == "US":
            self.state.flex = True
            return None
        if head == ":PAGE":
            self.state.flex = False
            return None
        handler = getattr(self, "_cmd_" + head.replace("?", "_q"), None)
        if handler is None or head.startswith(":"):
            raise CommandError(UNDEFINED_HEADER, f"Undefined header; {head}")
        self._require_flex(head)
        return handler(args)

    def _nargs(self, args, low: int, high: int, head: str):
        if len(args) < low:
            raise CommandError(MISSING_PARAMETER, f"Missing parameter; {head} needs {low} argument(s)")
        if len(args) > high:
            raise CommandError(PARAMETER_NOT_ALLOWED, f"Parameter not allowed; {head} takes at most {high}")

    def _cmd_ERR_q(self, args):
        codes = [str(self.errors.popleft()[0]) if self.errors else "0" for _ in range(4)]
        return ",".join(codes)

    def _cmd_FMT(self, args):
        self._nargs(args, 1, 2, "FMT")
        fmt = _int(args[0], "format")
        mode = _int(args[1], "output mode") if len(args) > 1 else 0
        if fmt not in (1, 2, 3, 4, 5) or mode not in (0, 1, 2):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; FMT {fmt},{mode}")
        if fmt in (3, 4) or mode != 0:
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; FMT {fmt},{mode} (binary formats and "
                                                  f"source data output are not modelled by the virtual 4156C)")
        self.state.data_format = fmt

    def _cmd_CN(self, args):
        units = [self._unit(a, "switch on") for a in args] if args else list(self.units.values())
        for u in units:
            u.on = True

    def _cmd_CL(self, args):
        units = [self._unit(a, "switch off") for a in args] if args else list(self.units.values())
        for u in units:
            # CL sets the output to 0 V and opens the output switch
            u.on, u.voltage, u.pulse = False, 0.0, None

    def _cmd_FL(self, args):
        self._nargs(args, 1, 1 + len(CHANNEL_LETTERS), "FL")
        mode = _int(args[0], "filter mode")
        if mode not in (0, 1):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; FL mode {mode}")
        units = [self._unit(a, "filter", smu=True) for a in args[1:]] or [u for u in self.units.values() if u.is_smu]
        for u in units:
            u.filter_on = bool(mode)

    def _cmd_DV(self, args):
        self._nargs(args, 3, 6, "DV")
        u = self._unit(args[0], "force voltage")
        v = _float(args[2], "voltage")
        code = self._voltage_code(args[1], u, v)
        if len(args) > 3:
            if not u.is_smu:
                raise CommandError(PARAMETER_NOT_ALLOWED, "Parameter not allowed; a VSU takes no compliance")
            u.compliance = self._compliance(args[3], u)
        u.voltage, u.voltage_range, u.pulse = v, code, None

    def _cmd_DI(self, args):
        raise CommandError(SETTINGS_CONFLICT, "Settings conflict; current forcing (DI) is not modelled by the virtual 4156C")

    def _cmd_PI(self, args):
        raise CommandError(SETTINGS_CONFLICT, "Settings conflict; current pulses (PI) are not modelled by the virtual 4156C")

    def _cmd_RI(self, args):
        self._nargs(args, 2, 2, "RI")
        u = self._unit(args[0], "measure current", smu=True)
        u.current_range = self._current_code(args[1], u)

    def _cmd_MM(self, args):
        self._nargs(args, 1, 1 + len(CHANNEL_LETTERS), "MM")
        mode = _int(args[0], "measurement mode")
        if mode not in (1, 2, 3, 4, 5, 10, 11, 14, 15):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; measurement mode {mode}")
        if mode not in (1, 2, 3):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; measurement mode {mode} (only spot, 1, "
                                                  f"staircase sweep, 2, and pulsed spot, 3, are modelled by the "
                                                  f"virtual 4156C)")
        units = [self._unit(a, "measure", smu=True) for a in args[1:]]
        if not units:
            raise CommandError(MISSING_PARAMETER, "Missing parameter; MM needs the measurement channels")
        if mode == 3 and len(units) != 1:
            raise CommandError(PARAMETER_NOT_ALLOWED, "Parameter not allowed; pulsed spot (MM 3) measures one channel")
        self.state.mode, self.state.mode_channels = mode, tuple(u.channel for u in units)

    def _cmd_SLI(self, args):
        self._nargs(args, 1, 1, "SLI")
        mode = _int(args[0], "integration")
        if mode not in (1, 2, 3):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; SLI {mode}")
        self.state.integration = mode

    def _cmd_SIT(self, args):
        self._nargs(args, 2, 2, "SIT")
        kind, t = _int(args[0], "integration type"), _float(args[1], "integration time")
        if kind not in (1, 3):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; SIT type {kind} (1 short or 3 long)")
        lo, hi = SHORT_SIT if kind == 1 else LONG_SIT
        if not lo - 1e-12 <= t <= hi + 1e-12:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; integration time {t:g} s ({lo:g} to {hi:g} s)")
        if kind == 1:
            self.state.short_time = t
        else:
            self.state.long_time = t

    def _cmd_AZ(self, args):
        self._nargs(args, 1, 1, "AZ")
        if _int(args[0], "auto zero") not in (0, 1):
            raise CommandError(ILLEGAL_PARAMETER, "Illegal parameter value; AZ 0 or 1")

    def _cmd_PT(self, args):
        self._nargs(args, 2, 5, "PT")
        hold, width = _float(args[0], "hold"), _float(args[1], "width")
        shortest = max(PULSE_MIN_PERIOD, width + PULSE_MARGIN)
        period = _float(args[2], "period") if len(args) > 2 else shortest
        delay = _float(args[3], "trigger delay") if len(args) > 3 else 0.0
        priority = _int(args[4], "priority") if len(args) > 4 else None
        if not 0 <= hold <= HOLD_MAX:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; pulse hold {hold:g} s (0 to {HOLD_MAX:g} s)")
        if not PULSE_MIN_WIDTH - 1e-12 <= width <= PULSE_MAX_WIDTH + 1e-12:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; pulse width {width:g} s (0.5 ms to 100 ms)")
        if not (PULSE_MIN_PERIOD - 1e-12 <= period <= PULSE_MAX_PERIOD + 1e-12) or period < shortest - 1e-12:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; pulse period {period:g} s for width {width:g} s "
                                                  f"(5 ms to 1 s and at least width + 4 ms)")
        if not 0 <= delay <= min(32.7e-3, width):
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; trigger delay {delay:g} s")
        if priority not in (0, 1, None):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; PT priority {priority} (0 or 1)")
        # width and period are set in 100 us steps: the instrument rounds to them
        self.state.timing = PulseTiming(round(hold, 2), _grid(width), _grid(period), delay, priority)

    def _cmd_PV(self, args):
        self._nargs(args, 4, 5, "PV")
        u = self._unit(args[0], "pulse", smu=True)
        base, peak = _float(args[2], "base voltage"), _float(args[3], "pulse voltage")
        code = self._voltage_code(args[1], u, base, peak)
        comp = self._compliance(args[4], u) if len(args) > 4 else u.compliance
        for other in self.units.values():
            if other is not u and other.pulse is not None:
                other.pulse = None  # only one SMU pulses: the last PV names it
        u.pulse = (code, base, peak, comp)
        u.compliance = comp

    def _cmd_XE(self, args):
        self._nargs(args, 0, 0, "XE")
        s = self.state
        if s.mode is None:
            raise CommandError(SETTINGS_CONFLICT, "Settings conflict; XE without a measurement mode (MM)")
        units = [self.units[ch] for ch in s.mode_channels]
        off = [u.channel for u in units if not u.on]
        if off:
            raise CommandError(SETTINGS_CONFLICT, f"Settings conflict; output switch of channel(s) {off} is off (CN)")
        s.buffer = []
        if s.mode == 1:
            s.buffer = self._measure(units, [u.current_range for u in units])
            return None
        if s.mode == 2:
            s.buffer = self._staircase(units)
            return None
        u = units[0]
        if u.pulse is None:
            raise CommandError(SETTINGS_CONFLICT, f"Settings conflict; pulsed spot on channel {u.channel} needs PV")
        if s.timing is None:
            raise CommandError(SETTINGS_CONFLICT, "Settings conflict; pulsed spot needs the pulse timing (PT)")
        s.buffer = [self._pulse(u)]

    def _cmd_WV(self, args):
        self._nargs(args, 6, 8, "WV")
        u = self._unit(args[0], "sweep", smu=True)
        mode = _int(args[1], "sweep mode")
        if mode not in (1, 3):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; sweep mode {mode} (only linear single, "
                                                  f"1, and linear double, 3, are modelled by the virtual 4156C)")
        start, stop = _float(args[3], "start voltage"), _float(args[4], "stop voltage")
        self._voltage_code(args[2], u, start, stop)
        steps = _int(args[5], "steps")
        if not 1 <= steps <= 1001:
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; {steps} sweep steps")
        comp = self._compliance(args[6], u) if len(args) > 6 else u.compliance
        self.state.sweep = (u.channel, mode, start, stop, steps, comp)

    def _cmd_WT(self, args):
        self._nargs(args, 1, 5, "WT")
        hold = _float(args[0], "hold time")
        delay = _float(args[1], "delay time") if len(args) > 1 else 0.0
        if not (0.0 <= hold <= HOLD_MAX and 0.0 <= delay <= 65.535):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; WT {hold:g},{delay:g}")
        self.state.sweep_timing = (hold, delay)

    def _cmd_WM(self, args):
        self._nargs(args, 1, 2, "WM")
        abort = _int(args[0], "abort")
        post = _int(args[1], "post") if len(args) > 1 else 1
        if abort not in (1, 2) or post not in (1, 2):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; WM {abort},{post}")
        self.state.sweep_abort = (abort, post)

    def _staircase(self, units: list[Unit]) -> list:
        """A staircase sweep (MM 2, WV): at each step the source is set, the twin settles under it
        (the probe card's DC stress) and the measured channels are read; abort 2 stops after a step
        with compliance or overflow. The source ends at its start (post 1) or stop (post 2) value."""
        s = self.state
        if s.sweep is None:
            raise CommandError(SETTINGS_CONFLICT, "Settings conflict; staircase sweep (MM 2) needs a sweep source (WV)")
        ch, mode, start, stop, steps, comp = s.sweep
        src = self.units[ch]
        if not src.on:
            raise CommandError(SETTINGS_CONFLICT, f"Settings conflict; output switch of channel {ch} is off (CN)")
        hold, delay = s.sweep_timing
        abort, post = s.sweep_abort
        way = [start + (stop - start) * k / (steps - 1) for k in range(steps)] if steps > 1 else [start]
        if mode == 3:
            way = way + way[::-1]
        limits = [comp if u is src else u.compliance for u in units]
        items = []
        self.clock.advance(hold, "measurement")
        for v in way:
            src.voltage, src.pulse = v, None
            self.clock.advance(delay, "measurement")
            currents, shorted = self._currents([u.channel for u in units])
            step = self._items(units, [u.current_range for u in units], currents, shorted, limits)
            items += step
            if abort == 2 and any(st & (STATUS_COMPLIANCE | STATUS_OVERFLOW) for st, *_ in step):
                break
        src.voltage = start if post == 1 else stop
        return items

    def _cmd_TI_q(self, args):
        self._nargs(args, 1, 2, "TI?")
        u = self._unit(args[0], "measure current", smu=True)
        code = self._current_code(args[1], u) if len(args) > 1 else 0
        if not u.on:
            raise CommandError(SETTINGS_CONFLICT, f"Settings conflict; output switch of channel {u.channel} is off (CN)")
        return self._format(self._measure([u], [code]))

    def _cmd_TV_q(self, args):
        self._nargs(args, 1, 2, "TV?")
        u = self._unit(args[0], "measure voltage", smu=True)
        return self._format([(STATUS_EOD, u.letter, "V", self.source_voltages().get(u.channel, 0.0))])

    def _cmd_RMD_q(self, args):
        self._nargs(args, 0, 1, "RMD?")
        n = _int(args[0], "count") if args else 0
        if n < 0:
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; RMD? {n}")
        buf = self.state.buffer
        take = buf if n == 0 else buf[:n]
        self.state.buffer = [] if n == 0 else buf[n:]
        if take:
            last = take[-1]
            take = take[:-1] + [(last[0] | STATUS_EOD,) + tuple(last[1:])]
        return self._format(take, eod=False)

    def _cmd_NUB_q(self, args):
        return str(len(self.state.buffer))

    def _cmd_BC(self, args):
        self.state.buffer = []

    # ----- measuring -----
    def _reading_time(self, full_scale: float) -> float:
        s, t = self.state, self.clock.timing
        if s.integration == 1:
            return s.short_time if s.short_time is not None else t.short_integration_s
        if s.integration == 2:
            plc = 50 if full_scale <= 10e-12 else 10 if full_scale <= 100e-12 else 5 if full_scale <= 1e-9 else 1
            return plc * t.plc_s
        setting = s.long_time / t.plc_s if s.long_time is not None else t.long_integration_plc
        plc = 100 if full_scale <= 10e-12 else setting * 10 if full_scale <= 100e-12 else \
            setting * 5 if full_scale <= 1e-9 else setting
        return plc * t.plc_s

    def _range_for(self, u: Unit, code: int, amps: float) -> int:
        """The range a reading ends on: the fixed one, or the lowest allowed that holds the value."""
        if code < 0:
            return -code
        lowest = code if code > 0 else (9 if u.kind == "hrsmu" else 11)
        for c in sorted(CURRENT_RANGES):
            if c >= lowest and (c != 20 or u.kind == "hpsmu") and abs(amps) <= CURRENT_RANGES[c] * OVER_RANGE.get(c, 1.15):
                return c
        return 20 if u.kind == "hpsmu" else 19

    def _currents(self, channels: list[int], pulse: tuple | None = None) -> tuple[dict, set]:
        if self.probe_card is None:
            return {ch: 0.0 for ch in channels}, set()
        if pulse is None:
            return self.probe_card.measure(self.source_voltages(), channels)
        return self.probe_card.pulse(self.source_voltages(), *pulse)

    def _items(self, units, codes, currents, shorted, limits, charge: bool = True) -> list:
        """Data items (status, letter, "I", value) with compliance and overflow applied; ``charge``:
        advance the clock by each reading's integration time."""
        forced = self._compliance_fault is not None
        self._compliance_fault = None
        items = []
        hit = {u.channel for u, c in zip(units, limits) if forced or u.channel in shorted
               or abs(currents[u.channel]) > c}
        for u, code, comp in zip(units, codes, limits):
            amps = currents[u.channel]
            status = 0
            if u.channel in hit:
                status |= STATUS_COMPLIANCE
                amps = math.copysign(comp, amps if amps else 1.0)
            elif hit:
                status |= STATUS_OTHER_COMPLIANCE
            rng = self._range_for(u, code, amps)
            if abs(amps) > CURRENT_RANGES[rng] * OVER_RANGE.get(rng, 1.15):
                status |= STATUS_OVERFLOW
                amps = OVERFLOW_VALUE
            if charge:
                seconds = self._reading_time(CURRENT_RANGES[rng])
                self._check_settled(seconds)
                self.clock.advance(seconds, "measurement")
            items.append((status, u.letter, "I", amps))
        return items

    def _check_settled(self, seconds: float) -> None:
        """Count (and say once per integration time) a spot reading shorter than the cells' settling
        time. The reading is taken as integrating from the step on (no hold time), the worst case."""
        settling = self.probe_card.settling_time_s() if self.probe_card is not None else 0.0
        self.last_reading_settled = seconds >= settling
        if self.last_reading_settled:
            return
        self.unsettled_readings += 1
        if seconds not in self._unsettled_said:
            self._unsettled_said.add(seconds)
            log.warning("virtual 4156C: a %.3g ms reading is shorter than the %.3g ms the cells' stack capacitance "
                        "takes to settle; the twin gives the settled (DC) current, a real cell reads more: use "
                        "medium or long integration (README, capacitances)", seconds * 1e3, settling * 1e3)

    def _measure(self, units: list[Unit], codes: list[int]) -> list:
        currents, shorted = self._currents([u.channel for u in units])
        return self._items(units, codes, currents, shorted, [u.compliance for u in units])

    def pulse_timing(self, u: Unit) -> tuple[float, float]:
        """(width, period) s the next pulse of ``u`` really has: stretched to the measurement's
        integration unless PT gave priority 0 (module docstring)."""
        t = self.state.timing
        if t.priority == 0:
            return t.width, t.period
        code = u.current_range
        rng = -code if code < 0 else self._range_for(u, code, u.pulse[3])
        width = max(t.width, self._reading_time(CURRENT_RANGES[rng]))
        return width, max(t.period, _grid(width + PULSE_MARGIN))

    def _pulse(self, u: Unit) -> tuple:
        t = self.state.timing
        _, base, peak, comp = u.pulse
        width, period = self.pulse_timing(u)
        self.clock.advance(t.hold + period, "pulse")
        currents, shorted = self._currents([u.channel], (u.channel, peak, width))
        # the reading is taken inside the pulse: its integration is part of the width, not extra time
        return self._items([u], [u.current_range], currents, shorted, [comp], charge=False)[0]

    def _format(self, items, eod: bool = True) -> str:
        out = []
        for k, (status, letter, kind, value) in enumerate(items):
            if eod and k == len(items) - 1:
                status |= STATUS_EOD
            number = f"{value:+.6E}"
            out.append(number if self.state.data_format == 2 else f"{status:03d}{letter}{kind}{number}")
        return ",".join(out)


def _scpi_error_query(head: str) -> bool:
    return re.fullmatch(r":?SYST(EM)?:ERR(OR)?(:NEXT)?\?", head) is not None


def _float(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise CommandError(-104, f"Data type error; {what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; {what} {text!r}")
    return v


def _int(text: str, what: str) -> int:
    v = _float(text, what)
    if v != int(v):
        raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; {what} {text!r} must be a whole number")
    return int(v)


def _grid(seconds: float) -> float:
    return round(round(seconds / PULSE_STEP) * PULSE_STEP, 7)
