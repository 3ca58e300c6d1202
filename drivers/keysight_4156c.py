"""Keysight (Agilent) 4156C precision semiconductor parameter analyzer, FLEX command mode, on pyvisa.

One class, :class:`Keysight4156C`, over a :class:`drivers.visa_io.Transport` (or a bare pyvisa
resource). It covers what the probe station needs and nothing more: identify, reset (and FLEX mode
again after every reset), output switches, DC voltage with compliance, spot current with range
control and integration time, a single SMU voltage pulse with a pulsed spot measurement, the ASCII
data format, and the error queue.

Command syntax and limits follow ``/work/shared/design/instrument-commands.md`` (sections 1.x).
Facts marked there as unconfirmed are marked ``[unconfirmed]`` here where the code relies on them.

Units: volts, amperes, seconds. Channel numbers are the 4156C's: SMU1..SMU6 = 1..6, VSU1/2 = 21/22.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, StrictInt, model_validator

from .interface import DEVICE_CEILING, InstrumentError, RequestError, SafeOperatingArea, SafetyError
from .visa_io import (InstrumentReportedError, Transport, drain_error_queue, format_number,  # noqa: F401
                      identify_instrument, parse_error_reply, validated)

# ----------------------------------------------------------------------------------------------
# Channels, ranges and limits (design doc 1.1, 1.5)

SMU_CHANNELS = (1, 2, 3, 4, 5, 6)
VSU_CHANNELS = (21, 22)
#: channel letter in the data header (design doc 1.6)
CHANNEL_LETTERS = {1: "A", 2: "B", 3: "C", 4: "D", 5: "E", 6: "F", 21: "Q", 22: "R", 23: "S", 24: "T",
                   26: "V", 27: "W", 28: "X"}
LETTER_CHANNELS = {v: k for k, v in CHANNEL_LETTERS.items()}
#: what may sit on a channel. Only an HRSMU has the 10 pA and 100 pA ranges.
CHANNEL_KINDS = ("hrsmu", "mpsmu", "hpsmu", "vsu")

#: FLEX current range code -> full scale (A). Positive code = limited auto, negative = fixed, 0 = auto.
CURRENT_RANGES = {9: 10e-12, 10: 100e-12, 11: 1e-9, 12: 10e-9, 13: 100e-9, 14: 1e-6, 15: 10e-6,
                  16: 100e-6, 17: 1e-3, 18: 10e-3, 19: 100e-3, 20: 1.0}
#: FLEX voltage output range code -> full scale (V). 10 (0.2 V) is a VMU-only range.
VOLTAGE_RANGES = {11: 2.0, 12: 20.0, 13: 40.0, 14: 100.0, 15: 200.0}
HRSMU_ONLY_CODES = (9, 10)
HPSMU_ONLY_CURRENT_CODES = (20,)

# SMU pulse limits (design doc 1.1, [M] M1/M3)
PULSE_MIN_WIDTH = 0.5e-3
PULSE_MAX_WIDTH = 100e-3
PULSE_MIN_PERIOD = 5e-3
PULSE_MAX_PERIOD = 1.0
PULSE_PERIOD_MARGIN = 4e-3  # period >= width + 4 ms
PULSE_RESOLUTION = 100e-6   # width and period are set in 100 us steps
#: PT's fifth argument. 0 = keep the pulse width (the measurement fits inside it); 1 would let the
#: measurement stretch the pulse, so a 2 ms pulse on SLI 2 could come out tens of ms wide.
PULSE_PRIORITY_KEEP_WIDTH = 0
#: staircase sweep (WV): most steps per sweep, longest hold and step delay (s)
SWEEP_MAX_STEPS = 1001
SWEEP_MAX_HOLD = 655.35
SWEEP_MAX_DELAY = 65.535

INTEGRATION_MODES = {"short": 1, "medium": 2, "long": 3}
#: SIT limits (s). Long integration starts at 2 power-line cycles: 40 ms at 50 Hz covers both mains
#: frequencies (2 PLC at 60 Hz is 33.3 ms). Medium has no settable time (SIT 2 is rejected).
INTEGRATION_TIME_LIMITS = {"short": (80e-6, 10.16e-3), "long": (40e-3, 2.0)}
#: the SMU current compliance range (A) accepted for DV and PV: above 0, at most the 100 mA range
MAX_COMPLIANCE = 0.1
#: the VSU has one output range (+-20 V); its DV range code names it
VSU_RANGE_CODE = 12
#: PV output range: auto (0), as every public pulse script sends; a fixed positive code was used before
PULSE_VOLTAGE_RANGE_CODE = 0

# Data status bits (design doc 1.6)
STATUS_OVERFLOW = 1
STATUS_OSCILLATION = 2
STATUS_OTHER_COMPLIANCE = 4
STATUS_COMPLIANCE = 8
STATUS_PGU_COMPLIANCE = 16
STATUS_INVALID = 64
STATUS_EOD = 128
#: values this large are the instrument's overflow / invalid markers, never currents
INVALID_MAGNITUDE = 1e37


# ----------------------------------------------------------------------------------------------
# The rules on settings, written once: the driver and the bench file (probe_station) both use them


def check_integration(mode: str) -> str:
    """The integration mode name ("short", "medium", "long"), or RequestError naming the choices."""
    if mode not in INTEGRATION_MODES:
        raise RequestError(f"integration {mode!r} must be one of {tuple(INTEGRATION_MODES)}")
    return mode


def check_compliance(amps, what: str = "compliance") -> float:
    """A current compliance (A) the SMUs accept: above 0 and at most 100 mA."""
    if isinstance(amps, bool) or not isinstance(amps, (int, float)) or not (0 < amps <= MAX_COMPLIANCE):
        raise RequestError(f"{what} = {amps!r} A must be above 0 and at most {MAX_COMPLIANCE:g} A (e.g. 1e-4)")
    return float(amps)


class AnalyzerChannel(BaseModel):
    """One 4156C unit in use: its channel number and what kind of unit sits there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: StrictInt
    kind: Literal[CHANNEL_KINDS]  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _kind_fits_channel(self):
        if self.channel not in SMU_CHANNELS + VSU_CHANNELS:
            raise ValueError(f"channel {self.channel} is not an SMU (1-6) or a VSU (21, 22)")
        if (self.kind == "vsu") != (self.channel in VSU_CHANNELS):
            raise ValueError(f"channel {self.channel} cannot be a {self.kind}: SMUs are channels 1-6, VSUs 21 and 22")
        return self

    @property
    def is_smu(self) -> bool:
        return self.kind != "vsu"


# ----------------------------------------------------------------------------------------------
# Errors


class MeasurementError(InstrumentError):
    """A measured datum carried a status that makes its value unusable. ``datum`` holds it."""

    def __init__(self, message: str, datum: "FlexDatum"):
        self.datum = datum
        super().__init__(message)


class ComplianceError(MeasurementError):
    """A source reached its compliance (current limit) during the measurement."""


class RangeOverflowError(MeasurementError):
    """The value was beyond the measurement range (A/D overflow)."""


class InvalidDataError(MeasurementError):
    """The instrument marked the datum invalid, or the unit oscillated."""


# ----------------------------------------------------------------------------------------------
# Data format


_DATUM = re.compile(r"^(\d{3})([A-Z])([A-Za-z])([+-]?\d+(?:\.\d*)?(?:[Ee][+-]?\d+)?)$")


@dataclass(frozen=True)
class FlexDatum:
    """One item of FLEX ASCII data with header (FMT 1): ``AAABCDDDDDDDDDDDDD``.

    status: the 3-digit status (bit sum, see STATUS_*); channel: 4156C channel number (None for
    letter Z); kind: data type letter ("I" current measured, "V" voltage measured, ...); value: the
    number as sent, or NaN when the status or the magnitude says it is not a measurement.
    raw: the item as received.
    """

    status: int
    letter: str
    kind: str
    value: float
    raw: str

    @property
    def channel(self) -> int | None:
        return LETTER_CHANNELS.get(self.letter)

    @property
    def compliance(self) -> bool:
        """This unit reached compliance."""
        return bool(self.status & STATUS_COMPLIANCE)

    @property
    def other_compliance(self) -> bool:
        """Another unit (or the PGU) reached compliance."""
        return bool(self.status & (STATUS_OTHER_COMPLIANCE | STATUS_PGU_COMPLIANCE))

    @property
    def overflow(self) -> bool:
        return bool(self.status & STATUS_OVERFLOW)

    @property
    def oscillating(self) -> bool:
        return bool(self.status & STATUS_OSCILLATION)

    @property
    def invalid(self) -> bool:
        return bool(self.status & STATUS_INVALID) or self.kind in "Zz" or not math.isfinite(self.value)

    @property
    def end_of_data(self) -> bool:
        return bool(self.status & STATUS_EOD)

    @property
    def ok(self) -> bool:
        """True when the value is a plain measurement: only the EOD bit (128) may be set."""
        return (self.status & ~STATUS_EOD) == 0 and not self.invalid

    def checked(self, what: str = "measurement") -> float:
        """The value, or an exception naming the problem; never a silent number."""
        where = f"{what} on channel {self.channel if self.channel is not None else self.letter}"
        if self.overflow:
            raise RangeOverflowError(
                f"{where}: the value is beyond the measurement range (status {self.status}, {self.raw!r}): "
                f"use a higher or an auto current range", self)
        if self.compliance:
            raise ComplianceError(
                f"{where}: this source reached its compliance (status {self.status}, reading {self.value:.4g}): "
                f"the cell draws more current than the compliance allows; check for a short or raise the "
                f"compliance in the bench file", self)
        if self.other_compliance:
            raise ComplianceError(
                f"{where}: another source reached its compliance during the measurement (status {self.status}): "
                f"the reading is not trustworthy; check the bench for a short", self)
        if self.oscillating:
            raise InvalidDataError(f"{where}: a unit was oscillating (status {self.status}): check cabling and "
                                   f"guarding", self)
        if self.invalid:
            raise InvalidDataError(f"{where}: the instrument marked the datum invalid ({self.raw!r})", self)
        return self.value


def parse_flex_data(reply: str) -> list[FlexDatum]:
    """Parse a FLEX ASCII reply (FMT 1, comma-separated items) into FlexDatum items.

    Overflow and invalid values (|value| > 1e37, invalid status bit, data type Z/z) become NaN
    with their status kept; anything that is not in the format raises InstrumentError.
    """
    text = reply.strip("\r\n ")
    if not text:
        raise InstrumentError("4156C returned no data where a measurement was expected")
    out = []
    for item in text.split(","):
        item = item.strip()
        m = _DATUM.match(item)
        if m is None:
            raise InstrumentError(
                f"4156C data item {item!r} is not in the FLEX ASCII format 'SSSCTvalue' (is FMT 1 set?)")
        status, letter, kind, number = int(m.group(1)), m.group(2), m.group(3), float(m.group(4))
        if abs(number) > INVALID_MAGNITUDE or status & (STATUS_INVALID | STATUS_OVERFLOW) or kind in "Zz":
            number = math.nan
        out.append(FlexDatum(status=status, letter=letter, kind=kind, value=number, raw=item))
    return out


# ----------------------------------------------------------------------------------------------
# Ranges


def _unit_value(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+(?:[eE][+-]?\d+)?)\s*(f|p|n|u|µ|m|)A\s*", text)
    if not m:
        raise RequestError(f"{text!r} is not a current like '10pA', '100nA' or '1mA'")
    scale = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0}[m.group(2)]
    return float(m.group(1)) * scale


def current_range_code(spec: str | int) -> int:
    """FLEX current range code from "auto", "limited 1nA" (auto, not below 1 nA) or "fixed 100nA".

    An int is taken as a code and checked. Raises RequestError naming the accepted forms.
    """
    if isinstance(spec, bool):
        raise RequestError(f"current range {spec!r} is not valid")
    if isinstance(spec, int):
        if spec == 0 or abs(spec) in CURRENT_RANGES:
            return spec
        raise RequestError(f"current range code {spec} is not a 4156C code (0, +-9..+-20)")
    text = str(spec).strip().lower()
    if text == "auto":
        return 0
    parts = text.split(None, 1)
    if len(parts) == 2 and parts[0] in ("limited", "fixed"):
        amps = _unit_value(parts[1].replace("a", "A"))
        for code, full in CURRENT_RANGES.items():
            if math.isclose(full, amps, rel_tol=1e-6):
                return code if parts[0] == "limited" else -code
        names = ", ".join(_range_name(c) for c in CURRENT_RANGES)
        raise RequestError(f"{parts[1]} is not a 4156C current range; the ranges are {names}")
    raise RequestError(
        f"current range {spec!r} is not understood: write 'auto', 'limited 1nA' or 'fixed 100nA'")


def _range_name(code: int) -> str:
    full = CURRENT_RANGES[abs(code)]
    for unit, scale in (("pA", 1e-12), ("nA", 1e-9), ("uA", 1e-6), ("mA", 1e-3), ("A", 1.0)):
        if full < scale * 1000 or unit == "A":
            return f"{full / scale:g}{unit}"
    return f"{full:g}A"


def describe_current_range(code: int) -> str:
    if code == 0:
        return "auto"
    return ("fixed " if code < 0 else "limited ") + _range_name(code)


def range_code_for_current(amps: float) -> int:
    """The smallest current range code whose full scale holds ``amps`` (positive code)."""
    for code, full in CURRENT_RANGES.items():
        if abs(amps) <= full * (1 + 1e-9) and code not in HPSMU_ONLY_CURRENT_CODES:
            return code
    raise RequestError(f"a current of {amps:g} A is beyond the SMU's 100 mA range")


def voltage_range_code(volts: float) -> int:
    """The smallest voltage output range (code) that holds ``volts``. Used as a limited-auto code:
    the instrument never goes below it and the value fits, so it stays on that range."""
    for code, full in VOLTAGE_RANGES.items():
        if abs(volts) <= full:
            return code
    raise RequestError(f"{volts:g} V is beyond the SMU's 200 V range")


def pulse_period_for(width: float) -> float:
    """The shortest allowed pulse period (s) for a width: max(5 ms, width + 4 ms), on the 100 us grid."""
    period = max(PULSE_MIN_PERIOD, width + PULSE_PERIOD_MARGIN)
    return round(period / PULSE_RESOLUTION) * PULSE_RESOLUTION


def check_pulse_timing(width: float, period: float | None = None, hold: float = 0.0) -> tuple[float, float, float]:
    """Validate SMU pulse timing against the 4156C's limits; returns (hold, width, period) rounded
    to the 100 us grid. Raises SafetyError for a width outside the SMU's pulse window and
    RequestError for the grid and the period, naming the limit and what to use instead.
    This is the one place the 0.5-100 ms window is checked."""
    if not (isinstance(width, (int, float)) and math.isfinite(width)):
        raise RequestError(f"pulse width {width!r} must be a number of seconds")
    if not PULSE_MIN_WIDTH - 1e-12 <= width <= PULSE_MAX_WIDTH + 1e-12:
        raise SafetyError(
            f"pulse width {width:g} s is outside the 4156C SMU pulse range {PULSE_MIN_WIDTH * 1e3:g} ms to "
            f"{PULSE_MAX_WIDTH * 1e3:g} ms: give a width in that range (for example --width 2e-3); the twin's "
            f"microsecond pulses cannot be made on this bench")
    steps = width / PULSE_RESOLUTION
    if abs(steps - round(steps)) > 1e-6:
        lo, hi = math.floor(steps) * PULSE_RESOLUTION, math.ceil(steps) * PULSE_RESOLUTION
        raise RequestError(
            f"pulse width {width * 1e3:g} ms is not on the 4156C's 0.1 ms grid: use {lo * 1e3:g} ms or {hi * 1e3:g} ms")
    width = round(steps) * PULSE_RESOLUTION
    shortest = pulse_period_for(width)
    if period is None:
        period = shortest
    if not math.isfinite(period) or period < shortest - 1e-12 or period > PULSE_MAX_PERIOD + 1e-12:
        raise RequestError(
            f"pulse period {period * 1e3:g} ms is not allowed for a {width * 1e3:g} ms pulse: it must be at least "
            f"{shortest * 1e3:g} ms (5 ms, and width + 4 ms) and at most 1 s")
    period = round(period / PULSE_RESOLUTION) * PULSE_RESOLUTION
    if not (math.isfinite(hold) and 0 <= hold <= 655.35):
        raise RequestError(f"pulse hold time {hold!r} s must be between 0 and 655.35 s")
    hold = round(hold / 10e-3) * 10e-3  # 10 ms resolution [F]
    return hold, width, period


# ----------------------------------------------------------------------------------------------
# Timing of measurements, for VISA timeouts

_PLC = 1.0 / 50.0  # worst case line cycle (50 Hz mains) in s


def reading_time(range_code: int, integration: str = "medium", long_plc: float = 16.0) -> float:
    """Worst-case duration (s) of one current reading. Auto and limited-auto ranging may visit every
    range from the top down to the lowest allowed, so their time is the sum over those ranges.
    Integration per range follows the manual (design doc 1.1): the low ranges integrate longer."""

    def one(code: int) -> float:
        full = CURRENT_RANGES[code]
        if integration == "short":
            return 2e-3
        if integration == "medium":
            plc = 50 if full <= 10e-12 else 10 if full <= 100e-12 else 5 if full <= 1e-9 else 1
        else:
            plc = 100 if full <= 10e-12 else long_plc * 10 if full <= 100e-12 else long_plc * 5 if full <= 1e-9 else long_plc
        return plc * _PLC

    if range_code < 0:
        return one(-range_code)
    lowest = range_code if range_code > 0 else min(CURRENT_RANGES)
    return sum(one(c) for c in CURRENT_RANGES if c >= lowest and c not in HPSMU_ONLY_CURRENT_CODES)


# ----------------------------------------------------------------------------------------------
# The driver


class Keysight4156C:
    """The 4156C in FLEX mode.

    transport: a drivers.visa_io.Transport (or a pyvisa resource, which is wrapped).
    channels: channel number -> kind ("hrsmu", "mpsmu", "hpsmu", "vsu") of the units in use; requests
        for other channels, or for the 10 pA / 100 pA ranges on a non-HRSMU, are refused before
        anything is sent (asking an MPSMU for 10 pA can hang the instrument).
    timeout: VISA timeout (s) for ordinary exchanges; measurements raise it as their range needs.
    integration: "short", "medium" or "long" (SLI), set by ``reset``.
    limits: the SafeOperatingArea this analyzer is opened with (a bench's ``[limits]``; default
        ``DEVICE_CEILING``), narrowed to ``DEVICE_CEILING`` and to the SMU's 0.5-100 ms pulses and
        fixed for the driver's life (``limits`` has no setter). ``force_voltage`` and
        ``pulse_voltage`` refuse, with SafetyError and before anything is sent, a voltage whose
        magnitude is beyond ``max_line_voltage`` (every channel drives one line through the matrix)
        and a pulse width outside ``min_pulse_width`` to ``max_pulse_width``, whoever calls them.

    ``io`` is the raw transport: ``io.write`` sends any text as it is, with none of these checks.
    """

    MODEL = "4156C"
    #: added to twice the expected duration of a slow query to size its VISA timeout (s)
    timeout_margin = 1.0

    def __init__(self, transport, channels: dict[int, str] | None = None, timeout: float = 30.0,
                 integration: str = "medium", limits: SafeOperatingArea | None = None):
        self.io = transport if isinstance(transport, Transport) else Transport(transport, "4156C")
        if limits is not None and not isinstance(limits, SafeOperatingArea):
            raise RequestError(f"4156C limits must be a SafeOperatingArea, got {limits!r}")
        area = DEVICE_CEILING if limits is None else limits.narrowed(DEVICE_CEILING)
        self._limits = dataclasses.replace(area, min_pulse_width=max(area.min_pulse_width, PULSE_MIN_WIDTH),
                                           max_pulse_width=min(area.max_pulse_width, PULSE_MAX_WIDTH))
        given = channels or {1: "hrsmu", 2: "hrsmu", 3: "hrsmu", 4: "hrsmu"}
        # The same schema the bench file uses (AnalyzerChannel): one rule for kinds and numbers.
        self.channels = {c.channel: c.kind for c in
                         (validated(AnalyzerChannel, "4156C channel", channel=ch, kind=kind)
                          for ch, kind in given.items())}
        self.timeout = float(timeout)
        self.integration = check_integration(integration)
        # Settings that persist in the instrument until changed (MM, RI, PT, SLI, FMT): resending an
        # identical one costs a transaction and changes nothing. Cleared on reset and on any error,
        # since then the instrument state is not known for sure.
        self._settings: dict[str, str] = {}
        self.io.timeout = self.timeout

    @property
    def limits(self) -> SafeOperatingArea:
        """The limits this analyzer was opened with (read-only; see the class docstring)."""
        return self._limits

    def _check_line_voltage(self, volts, what: str) -> float:
        """``volts`` as a float if its magnitude is within ``max_line_voltage``; else SafetyError
        (RequestError for something that is not a finite number). Nothing is sent either way."""
        if isinstance(volts, bool) or not isinstance(volts, numbers.Real) or not math.isfinite(volts):
            raise RequestError(f"4156C {what}: {volts!r} is not a finite number of volts")
        top = self._limits.max_line_voltage
        if abs(volts) > top:
            raise SafetyError(f"4156C {what}: {float(volts):+g} V is beyond the {top:g} V on one line this analyzer "
                              f"was opened with (max_line_voltage of its limits); nothing was sent")
        return float(volts)

    # ----- plumbing -----
    def _write(self, command: str) -> None:
        self.io.write(command)

    def _set(self, key: str, command: str) -> None:
        """Send a persistent setting unless the identical one is already in force."""
        if self._settings.get(key) == command:
            return
        self._settings.pop(key, None)
        self._write(command)
        self._settings[key] = command

    def forget_settings(self) -> None:
        """Forget which settings are in force, so the next ones are sent again (after an error,
        or when something else may have touched the instrument)."""
        self._settings.clear()

    def _query_slow(self, command: str, seconds: float) -> str:
        """A query that may take ``seconds``: the VISA timeout grows to cover it (x2 + margin)."""
        need = 2.0 * seconds + self.timeout_margin
        if need > self.timeout:
            self.io.timeout = need
            try:
                return self.io.query(command)
            finally:
                self.io.timeout = self.timeout
        return self.io.query(command)

    def _smu(self, channel: int, what: str) -> int:
        if isinstance(channel, bool) or not isinstance(channel, int) or channel not in self.channels:
            raise RequestError(f"4156C {what}: channel {channel!r} is not one of the bench's channels "
                               f"{sorted(self.channels)}")
        if self.channels[channel] == "vsu":
            raise RequestError(f"4156C {what}: channel {channel} is a VSU, which cannot measure or pulse; use an SMU")
        return channel

    def _channel(self, channel: int, what: str) -> int:
        if isinstance(channel, bool) or not isinstance(channel, int) or channel not in self.channels:
            raise RequestError(f"4156C {what}: channel {channel!r} is not one of the bench's channels "
                               f"{sorted(self.channels)}")
        return channel

    def _check_current_code(self, channel: int, code: int) -> int:
        code = current_range_code(code)
        kind = self.channels[channel]
        if abs(code) in HRSMU_ONLY_CODES and kind != "hrsmu":
            raise RequestError(f"the {describe_current_range(code)} range exists only on an HRSMU; "
                               f"channel {channel} is a {kind}: use 1 nA or above")
        if abs(code) in HPSMU_ONLY_CURRENT_CODES and kind != "hpsmu":
            raise RequestError(f"the 1 A range exists only on an HPSMU; channel {channel} is a {kind}")
        return code

    # ----- identity, reset, errors -----
    def identify(self) -> str:
        """``*IDN?``; raises InstrumentError if the answer is not a 4156C."""
        return identify_instrument(self.io, self.MODEL, "analyzer")

    def reset(self) -> list[tuple[int, str]]:
        """Stale errors drained (returned: another program's leftovers), then ``*RST``, FLEX mode
        (``US``) again, ASCII data with header and the integration mode, each configuration command
        followed by an error query, so a rejected one raises InstrumentReportedError naming it.
        Every public example re-enters FLEX after a reset; we always do."""
        self.forget_settings()
        stale = self.drain_errors()
        self._write("*RST")
        self.enter_flex()
        return stale

    def enter_flex(self) -> None:
        """``US`` (FLEX mode), ``FMT 1,0`` and ``SLI``, each checked with the error queue."""
        self._configure("US")
        # Formats left over from another program break parsing (design doc pitfall 1): set it.
        self._configure("FMT 1,0", key="FMT")
        self._configure(f"SLI {INTEGRATION_MODES[self.integration]}", key="SLI")

    def _configure(self, command: str, key: str | None = None) -> None:
        """Send a configuration command and read the error queue at once, so an error names it."""
        self._write(command)
        self.check_errors(after=command)
        if key is not None:
            self._settings[key] = command

    def filters_off(self, channels: Iterable[int] | None = None) -> None:
        """SMU output filters off (``FL 0,ch...``; every SMU in use when None), checked: a filter
        slows the pulse edges, so pulses need it off."""
        chans = sorted(self.channels) if channels is None else [self._channel(c, "filter") for c in channels]
        chans = [c for c in chans if self.channels[c] != "vsu"]
        if chans:
            self._configure("FL 0," + ",".join(str(c) for c in chans), key="FL")

    def drain_errors(self, limit: int = 20) -> list[tuple[int, str]]:
        """Read the error queue until it is empty; return what was in it (stale errors at connect)."""
        return drain_error_queue(self.io, limit)

    def check_errors(self, after: str = "") -> None:
        """Raise InstrumentReportedError (code and message) if the error queue is not empty."""
        errors = self.drain_errors()
        if errors:
            self.forget_settings()
            (code, msg), more = errors[0], errors[1:]
            raise InstrumentReportedError("4156C", code, msg, after=after, more=more)

    # ----- outputs -----
    def outputs_on(self, channels: Iterable[int]) -> None:
        """Close the output switches of ``channels`` (``CN``). The outputs start at 0 V."""
        chans = [self._channel(c, "output on") for c in channels]
        if chans:
            self._write("CN " + ",".join(str(c) for c in chans))

    def outputs_off(self, channels: Iterable[int] | None = None) -> None:
        """Open the output switches (``CL``); all channels when ``channels`` is None."""
        if channels is None:
            self._write("CL")
            for ch in self.channels:
                self._settings.pop(f"DV{ch}", None)
            return
        chans = [self._channel(c, "output off") for c in channels]
        if chans:
            self._write("CL " + ",".join(str(c) for c in chans))
            for ch in chans:
                self._settings.pop(f"DV{ch}", None)

    def force_voltage(self, channel: int, volts: float, compliance: float | None = None,
                      resend: bool = True) -> None:
        """DC voltage ``volts`` (V) on ``channel`` with current ``compliance`` (A; SMUs only).

        An SMU's output range is the smallest that holds the value, sent as a limited-auto code so
        it stays there; a VSU has one range (``VSU_RANGE_CODE``). ``DV ch,range,V[,Icomp]``.
        resend=False skips the command when the identical DV is known to be in force (the driver
        forgets it on CL, PV on that channel, reset and errors).
        """
        ch = self._channel(channel, "force voltage")
        volts = self._check_line_voltage(volts, f"force voltage on channel {ch}")
        if self.channels[ch] == "vsu":
            voltage_range_code(volts)  # refuses what no output range holds
            cmd = f"DV {ch},{VSU_RANGE_CODE},{format_number(volts)}"
        else:
            comp = check_compliance(compliance, f"force voltage on SMU {ch}: current compliance")
            cmd = f"DV {ch},{voltage_range_code(volts)},{format_number(volts)},{format_number(comp)}"
        if resend:
            self._settings.pop(f"DV{ch}", None)
        self._set(f"DV{ch}", cmd)

    def zero(self, channels: Iterable[int], compliance: float) -> None:
        """Every listed channel to 0 V DC (also ends a pulse setting)."""
        for ch in channels:
            self.force_voltage(ch, 0.0, compliance)

    # ----- measurement settings -----
    def set_integration(self, mode: str, seconds: float | None = None) -> None:
        """Integration mode "short", "medium" or "long" (``SLI``), and optionally its time (``SIT``;
        limits in INTEGRATION_TIME_LIMITS; medium has no settable time)."""
        check_integration(mode)
        if seconds is not None:
            if mode not in INTEGRATION_TIME_LIMITS:
                raise RequestError("the medium integration time cannot be set (SIT 2 is rejected): use short or long")
            lo, hi = INTEGRATION_TIME_LIMITS[mode]
            if not lo <= seconds <= hi:
                raise RequestError(f"{mode} integration time {seconds:g} s is outside {lo:g} s to {hi:g} s")
        self.integration = mode
        self._set("SLI", f"SLI {INTEGRATION_MODES[mode]}")
        if seconds is not None:
            self._set("SIT", f"SIT {INTEGRATION_MODES[mode]},{format_number(seconds)}")

    def set_current_range(self, channel: int, spec: str | int) -> int:
        """Current measurement range (``RI ch,code``): "auto", "limited 1nA", "fixed 10pA" or a code."""
        ch = self._smu(channel, "current range")
        code = self._check_current_code(ch, spec)
        self._set(f"RI{ch}", f"RI {ch},{code}")
        return code

    def set_measurement_mode(self, mode: int, channels: Sequence[int]) -> None:
        """``MM mode,ch[,ch...]``: 1 spot, 3 one-channel pulsed spot."""
        chans = [self._smu(c, "measurement mode") for c in channels]
        if mode == 3 and len(chans) != 1:
            raise RequestError("a pulsed spot measurement (MM 3) takes exactly one channel")
        self._set("MM", f"MM {mode}," + ",".join(str(c) for c in chans))

    # ----- measurements -----
    def spot_current_datum(self, channel: int, range_spec: str | int = 0) -> FlexDatum:
        """High-speed spot current (``TI? ch,range``) as a flagged datum (no check applied)."""
        ch = self._smu(channel, "spot current")
        code = self._check_current_code(ch, range_spec)
        reply = self._query_slow(f"TI? {ch},{code}", reading_time(code, self.integration))
        data = parse_flex_data(reply)
        if len(data) != 1:
            raise InstrumentError(f"TI? {ch},{code} returned {len(data)} items, expected one: {reply!r}")
        self._expect_channel(data[0], ch, "I")
        return data[0]

    def measure_current(self, channel: int, range_spec: str | int = 0) -> float:
        """Spot current (A) of an SMU; compliance, overflow and invalid data raise."""
        return self.spot_current_datum(channel, range_spec).checked("current")

    def spot_measure(self, channels: Sequence[int], range_code: int = 0) -> dict[int, FlexDatum]:
        """Spot current of several SMUs in one execution: ``MM 1,chs`` (only when it changes), ``XE``,
        ``RMD? n``. Returns channel -> datum (unchecked: callers decide how to treat flags)."""
        self.set_measurement_mode(1, channels)
        self._write("XE")
        seconds = len(channels) * reading_time(range_code, self.integration)
        return self._read_channels(channels, "I", seconds)

    def _read_channels(self, channels: Sequence[int], kind: str, seconds: float) -> dict[int, FlexDatum]:
        n = len(channels)
        reply = self._query_slow(f"RMD? {n}", seconds)
        data = parse_flex_data(reply)
        if len(data) != n:
            raise InstrumentError(f"RMD? {n} returned {len(data)} items, expected {n}: {reply!r}")
        out: dict[int, FlexDatum] = {}
        for d in data:
            if d.channel not in channels or d.channel in out:
                raise InstrumentError(f"4156C returned data for channel letter {d.letter!r}, expected channels "
                                      f"{list(channels)}: {reply!r}")
            if d.kind not in (kind, "Z", "z"):
                raise InstrumentError(f"4156C returned data type {d.kind!r}, expected {kind!r}: {reply!r}")
            out[d.channel] = d
        return out

    @staticmethod
    def _expect_channel(d: FlexDatum, ch: int, kind: str) -> None:
        if d.channel != ch or d.kind not in (kind, "Z", "z"):
            raise InstrumentError(f"4156C returned {d.raw!r} where a {kind} datum of channel {ch} "
                                  f"({CHANNEL_LETTERS[ch]}) was expected")

    # ----- pulse -----
    def pulse_voltage(self, channel: int, pulse_v: float, width: float, compliance: float,
                      base_v: float = 0.0, period: float | None = None, hold: float = 0.0) -> FlexDatum:
        """One rectangular SMU voltage pulse from ``base_v`` to ``pulse_v`` (V) for ``width`` (s), with a
        pulsed spot current measurement during it; returns that datum (unchecked).

        Limits (refused before sending): width 0.5-100 ms on a 0.1 ms grid, period >= width + 4 ms
        (default: the shortest allowed), one pulsing SMU (this call pulses one). For a faithful pulse
        the measurement range is fixed at the compliance range (design doc 1.1): ``RI ch,-code``.
        Sequence: ``MM 3,ch``, ``RI ch,-r``, ``PT hold,width,period,0,0``,
        ``PV ch,0,base,pulse,Icomp``, ``XE``, ``RMD? 1`` (settings already in force are not resent).
        PT's fourth argument is the trigger-out delay (0) and its fifth the priority, sent
        explicitly as 0 = keep the pulse width: otherwise a measurement that integrates longer
        than the width may widen the pulse without an error. PV's output range is auto (0), as in
        every public pulse script. Afterwards the SMU rests at ``base_v``.
        """
        ch = self._smu(channel, "pulse")
        pulse_v = self._check_line_voltage(pulse_v, f"pulse on channel {ch}")
        base_v = self._check_line_voltage(base_v, f"pulse base on channel {ch}")
        hold, width, period = check_pulse_timing(width, period, hold)
        lim = self._limits
        if not lim.min_pulse_width - 1e-12 <= width <= lim.max_pulse_width + 1e-12:
            raise SafetyError(f"4156C pulse on channel {ch}: width {width * 1e3:g} ms is outside the "
                              f"{lim.min_pulse_width * 1e3:g} ms to {lim.max_pulse_width * 1e3:g} ms this analyzer was "
                              f"opened with; nothing was sent")
        compliance = check_compliance(compliance, "pulse compliance")
        fixed = -range_code_for_current(compliance)
        self._check_current_code(ch, fixed)
        voltage_range_code(max(abs(pulse_v), abs(base_v)))  # refuses what no output range holds
        self.set_measurement_mode(3, [ch])
        self._set(f"RI{ch}", f"RI {ch},{fixed}")
        self._set("PT", f"PT {format_number(hold)},{format_number(width)},{format_number(period)},0,"
                        f"{PULSE_PRIORITY_KEEP_WIDTH}")
        # [unconfirmed] whether a later DV clears PV: we send PV for every pulse anyway, and forget
        # the channel's DC setting, so the next DV on it is always sent.
        self._settings.pop(f"DV{ch}", None)
        self._write(f"PV {ch},{PULSE_VOLTAGE_RANGE_CODE},{format_number(base_v)},{format_number(pulse_v)},"
                    f"{format_number(compliance)}")
        self._write("XE")
        data = self._read_channels([ch], "I", hold + period + reading_time(fixed, "short"))
        return data[ch]

    # ----- staircase sweep (MM 2) -----
    def staircase_sweep(self, channel: int, start_v: float, stop_v: float, steps: int, compliance: float,
                        double: bool = False, hold: float = 0.0, delay: float = 0.0, abort: bool = True,
                        measure: Sequence[int] | None = None) -> list[dict[int, FlexDatum]]:
        """A linear staircase voltage sweep of SMU ``channel`` from ``start_v`` to ``stop_v`` (V) in
        ``steps`` points (2..1001), and back to ``start_v`` with ``double`` (2 x ``steps`` points),
        current compliance ``compliance`` (A); the currents of ``measure`` (default: the sweeping
        SMU) are read at every step. Returns one {channel: datum} per step (unchecked data).

        Sequence (settings in force are not resent): ``MM 2,chs``, ``WT hold,delay``,
        ``WM abort,post`` (abort 2: stop at compliance, oscillation or overflow; 1: never; post 1:
        the source returns to the start value when the sweep ends or aborts), ``WV ch,mode,range,
        start,stop,steps,Icomp`` (mode 1 linear single, 3 linear double; the output range is the
        smallest that holds both ends), ``XE``, ``RMD? 0`` (every datum of the sweep). An aborted
        sweep returns fewer steps. Both ends are checked against ``max_line_voltage`` and nothing is
        sent if either is beyond it. Command strings and their sources: docs/bench.md, "Staircase
        sweep commands" (what is unconfirmed is marked there)."""
        ch = self._smu(channel, "staircase sweep")
        start_v = self._check_line_voltage(start_v, f"sweep start on channel {ch}")
        stop_v = self._check_line_voltage(stop_v, f"sweep stop on channel {ch}")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 2 <= steps <= SWEEP_MAX_STEPS:
            raise RequestError(f"4156C staircase sweep: {steps!r} steps; give 2 to {SWEEP_MAX_STEPS} (longer sweeps: "
                               "several sweeps)")
        hold, delay = float(hold), float(delay)
        if not (0.0 <= hold <= SWEEP_MAX_HOLD and 0.0 <= delay <= SWEEP_MAX_DELAY):
            raise RequestError(f"4156C staircase sweep: hold {hold:g} s / delay {delay:g} s outside 0..{SWEEP_MAX_HOLD:g}"
                               f" s / 0..{SWEEP_MAX_DELAY:g} s")
        comp = check_compliance(compliance, "staircase sweep compliance")
        chans = [ch] if measure is None else [self._smu(c, "staircase sweep measurement") for c in measure]
        code = voltage_range_code(max(abs(start_v), abs(stop_v)))
        self._set("MM", "MM 2," + ",".join(str(c) for c in chans))
        self._set("WT", f"WT {format_number(hold)},{format_number(delay)}")
        self._set("WM", f"WM {2 if abort else 1},1")
        # the sweep leaves the channel at its start value, not at any DV sent before
        self._settings.pop(f"DV{ch}", None)
        self._write(f"WV {ch},{3 if double else 1},{code},{format_number(start_v)},{format_number(stop_v)},"
                    f"{int(steps)},{format_number(comp)}")
        self._write("XE")
        points = 2 * int(steps) if double else int(steps)
        seconds = hold + points * (delay + len(chans) * reading_time(0, self.integration))
        data = parse_flex_data(self._query_slow("RMD? 0", seconds))
        if len(data) % len(chans) or len(data) > points * len(chans):
            raise InstrumentError(f"RMD? 0 after a {points}-point sweep of {len(chans)} channel(s) returned "
                                  f"{len(data)} items")
        out = []
        for k in range(0, len(data), len(chans)):
            step = {}
            for c, d in zip(chans, data[k:k + len(chans)]):
                self._expect_channel(d, c, "I")
                step[c] = d
            out.append(step)
        return out
