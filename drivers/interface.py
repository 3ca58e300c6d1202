"""The one seam between protocols and backends: CrossbarInstrument.

Every protocol in ``protocols/`` talks to a crossbar only through this class; the probe station
(``drivers/probe_station.py``) and the simulation twin (``sim/virtual_array.py``) implement it.

Units are SI everywhere: volts, amperes, seconds, siemens. Lines are counted from 0: wordline 0 is
the first wordline (top electrodes), bitline 0 the first bitline (bottom electrodes). A cell
(wordline w, bitline b) sees the voltage ``V_wl[w] - V_bl[b]``.

The base class validates every request against the SafeOperatingArea and the ArrayGeometry *before*
a backend's ``_pulse``, ``_read`` or ``_vmm`` is called, so no backend can skip the interlock.

The HT-RRAM's own safe operating area, ``DEVICE_CEILING``, is a ceiling: whatever limits a caller, a
bench file or a chip file gives, the limits in force are narrowed to it (``RequestChecker.limits``),
and every request is checked against the ceiling once more just before it reaches the backend.

``reset_outputs`` (the safe-state sequence) runs to its end whatever signal arrives: SIGINT, SIGTERM
and SIGHUP are held back while it runs (``signals_deferred``) and delivered when it is done.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Iterator, Sequence

import numpy as np

PULSE_SHAPES = ("rect", "tri")

_log = logging.getLogger(__name__)


class RramlabError(Exception):
    """Base class of every error rramlab raises on purpose."""


class SafetyError(RramlabError, ValueError):
    """A request would put a voltage or a timing outside the safe operating area."""


class GeometryError(RramlabError, ValueError):
    """A request names a line that is not in the array, or has the wrong number of lines."""


class RequestError(RramlabError, ValueError):
    """A request is malformed (NaN, unknown shape, wrong type) or the backend cannot carry it out."""


class InstrumentError(RramlabError):
    """The instrument (or the simulator) reported an error while carrying out a valid request."""


@dataclass(frozen=True)
class ArrayGeometry:
    """Size of the crossbar and which of its lines are wired to the experiment.

    wordlines, bitlines: number of lines on the chip (24 x 24 for the HT-RRAM array).
    used_wordlines, used_bitlines: line indices in use (default: all). The paper uses 24 wordlines
    and 20 bitlines (10 differential pairs).
    """

    wordlines: int = 24
    bitlines: int = 24
    used_wordlines: tuple[int, ...] | None = None
    used_bitlines: tuple[int, ...] | None = None

    def __post_init__(self):
        for name in ("wordlines", "bitlines"):
            n = getattr(self, name)
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise GeometryError(f"ArrayGeometry.{name} must be a positive whole number, got {n!r}")
        for name, n in (("used_wordlines", self.wordlines), ("used_bitlines", self.bitlines)):
            used = getattr(self, name)
            if used is None:
                object.__setattr__(self, name, tuple(range(n)))
                continue
            used = tuple(int(i) for i in used)
            bad = [i for i in used if not 0 <= i < n]
            if bad:
                raise GeometryError(f"ArrayGeometry.{name} has {bad}, outside 0..{n - 1}")
            object.__setattr__(self, name, used)

    @property
    def shape(self) -> tuple[int, int]:
        """(wordlines, bitlines) of the chip."""
        return (self.wordlines, self.bitlines)

    def check_cell(self, wordline, bitline) -> tuple[int, int]:
        """Return the cell as two ints, or raise GeometryError naming the bad index."""
        w = _line_index(wordline, "wordline", self.wordlines)
        b = _line_index(bitline, "bitline", self.bitlines)
        return w, b


def _line_index(value, what: str, count: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GeometryError(f"{what} must be a whole number from 0 to {count - 1}, got {value!r}")
    if not 0 <= int(value) < count:
        raise GeometryError(
            f"{what} {int(value)} is outside the array: this array has {count} {what}s, numbered 0 to {count - 1}"
        )
    return int(value)


#: Lowest voltage a read or a VMM input may ever have (V). The HT-RRAM's reset starts near -1.0 V
#: (measured), and the twin's fastest switches turn off at -0.85 V (VT 1.55 V - VH 2.4 V, Table 1):
#: a read at -1.0 V can erase the cell it reads. -0.5 V keeps 0.35 V between the most negative read
#: and the first switch that can turn off, so a negative read is possible but never a reset.
READ_FLOOR_V = -0.5


@dataclass(frozen=True)
class SafeOperatingArea:
    """Limits that no request may exceed, whichever caller asked.

    max_set_voltage: highest cell voltage V_wl - V_bl (V). The HT-RRAM breaks down at about 4.4 V;
        the paper's safe window ends at 4.3 V.
    min_reset_voltage: lowest (most negative) cell voltage (V).
    min_read_voltage, max_read_voltage: the read window (V): a read voltage and every VMM input must
        lie in it. Asymmetric on purpose: reads are positive (the paper reads at +1 V); a negative
        read is allowed only down to ``READ_FLOOR_V`` (-0.5 V), well above the reset onset.
    max_line_voltage: highest |V| on any single line during a pulse (V); half-bias needs V/2.
    min_pulse_width, max_pulse_width: pulse width range (s). The twin accepts 1 ns to 1 s; a probe
        station narrows it to what its SMU can do (4156C: 0.5 ms to 100 ms).

    An area is only a description; the limits *in force* on an instrument are always narrowed to
    ``DEVICE_CEILING`` (see ``RequestChecker.limits``), so an area wider than the device is harmless.
    """

    max_set_voltage: float = 4.3
    min_reset_voltage: float = -2.5
    max_read_voltage: float = 1.5
    max_line_voltage: float = 4.3
    min_pulse_width: float = 1e-9
    max_pulse_width: float = 1.0
    min_read_voltage: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(v):
                raise SafetyError(f"SafeOperatingArea.{f.name} must be a finite number, got {v!r}")
        if self.max_set_voltage <= 0:
            raise SafetyError(f"SafeOperatingArea.max_set_voltage must be positive, got {self.max_set_voltage}")
        if self.min_reset_voltage >= 0:
            raise SafetyError(f"SafeOperatingArea.min_reset_voltage must be negative, got {self.min_reset_voltage}")
        if self.max_read_voltage <= 0 or self.max_line_voltage <= 0:
            raise SafetyError("SafeOperatingArea.max_read_voltage and max_line_voltage must be positive")
        if self.min_read_voltage > 0:
            raise SafetyError(f"SafeOperatingArea.min_read_voltage must be 0 or negative, got {self.min_read_voltage}")
        if not 0 < self.min_pulse_width <= self.max_pulse_width:
            raise SafetyError(
                f"SafeOperatingArea pulse widths must satisfy 0 < min ({self.min_pulse_width}) <= max ({self.max_pulse_width})"
            )

    #: what ``window`` answers for; protocol settings name one of these as their ``soa`` bound
    WINDOWS = ("set", "reset", "read", "width")

    def window(self, kind: str) -> tuple[float, float]:
        """The allowed range (low, high) of one kind of quantity, in SI units.

        "set": a set pulse's cell voltage (V); "reset": a reset pulse's cell voltage (V, negative);
        "read": a read or VMM input voltage (V; default 0 to +1.5 V); "width": a pulse width (s).
        Settings declarations take their limits from here, so the command line, the GUI and the
        seam agree.
        """
        if kind == "set":
            return (0.0, self.max_set_voltage)
        if kind == "reset":
            return (self.min_reset_voltage, 0.0)
        if kind == "read":
            return (self.min_read_voltage, self.max_read_voltage)
        if kind == "width":
            return (self.min_pulse_width, self.max_pulse_width)
        raise RequestError(f"unknown safe-operating-area window {kind!r}: use one of {self.WINDOWS}")

    def narrowed(self, other: "SafeOperatingArea") -> "SafeOperatingArea":
        """The tighter of two areas, limit by limit (e.g. the chip's and the instrument's)."""
        return SafeOperatingArea(
            max_set_voltage=min(self.max_set_voltage, other.max_set_voltage),
            min_reset_voltage=max(self.min_reset_voltage, other.min_reset_voltage),
            max_read_voltage=min(self.max_read_voltage, other.max_read_voltage),
            max_line_voltage=min(self.max_line_voltage, other.max_line_voltage),
            min_pulse_width=max(self.min_pulse_width, other.min_pulse_width),
            max_pulse_width=min(self.max_pulse_width, other.max_pulse_width),
            min_read_voltage=max(self.min_read_voltage, other.min_read_voltage),
        )

    def wider_than(self, other: "SafeOperatingArea") -> list[str]:
        """The limits of this area that reach beyond ``other``'s, as "name = value (other: x)"."""
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            # a lower minimum or a higher maximum lets more through
            wider = mine < theirs if f.name.startswith("min_") else mine > theirs
            if wider:
                out.append(f"{f.name} = {mine:g} (ceiling {theirs:g})")
        return out


#: The HT-RRAM's safe operating area: the widest limits any instrument may have. A bench file, a
#: chip file or a caller can narrow it, never widen it (``RequestChecker.limits``). Set <= 4.3 V (the
#: device breaks down near 4.4 V), reset >= -2.5 V (the paper's hardware ramp ends there), reads
#: -0.5 V to +1.5 V (``READ_FLOOR_V``), at most 4.3 V on one line, pulses 1 ns to 1 s.
DEVICE_CEILING = SafeOperatingArea(min_read_voltage=READ_FLOOR_V)


def _finite_vector(values, what: str, length: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"{what} must be numbers (volts), got {values!r}") from exc
    if arr.shape != (length,):
        raise GeometryError(f"{what} must hold one voltage per line ({length}), got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise RequestError(f"{what} has a non-finite value {arr[bad[0]]} at line {bad[0]}: give a number in volts")
    return arr


def _finite_scalar(value, what: str) -> float:
    if isinstance(value, bool):
        raise RequestError(f"{what} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"{what} must be a number, got {value!r}") from exc
    if not math.isfinite(v):
        raise RequestError(f"{what} must be finite, got {v}")
    return v


def _check_read_window(volts: np.ndarray, limits: SafeOperatingArea, what: str,
                       extremes: tuple[float, float] | None = None) -> None:
    """Raise SafetyError if any of ``volts`` is outside ``limits``' read window; ``extremes``: their
    (highest, lowest) when already known."""
    if volts.size == 0:
        return
    lo, hi = limits.window("read")
    highest, lowest = extremes if extremes is not None else (float(np.max(volts)), float(np.min(volts)))
    if highest > hi:
        raise SafetyError(f"{what} {highest:+.4g} V is beyond the read limit of {hi:g} V (the read window, for "
                          f"reads and VMM inputs, is {lo:g} to {hi:g} V)")
    if lowest < lo:
        why = ("a negative read needs a bench or chip whose limits allow it (min_read_voltage), "
               f"at most down to {READ_FLOOR_V:g} V" if lo == 0 else
               f"below {READ_FLOOR_V:g} V a read approaches the reset onset (about -1.0 V) and can erase the cell")
        raise SafetyError(f"{what} {lowest:+.4g} V is below the read limit of {lo:g} V (the read window, for reads "
                          f"and VMM inputs, is {lo:g} to {hi:g} V): {why}")


def _within_ceiling(wordline_v: np.ndarray, bitline_v: np.ndarray) -> None:
    """The last interlock before a backend: the cell and line voltages of a pulse against
    ``DEVICE_CEILING`` itself, independent of any limits an object holds."""
    c = DEVICE_CEILING
    highest = float(np.max(wordline_v) - np.min(bitline_v))
    lowest = float(np.min(wordline_v) - np.max(bitline_v))
    line = float(max(np.max(np.abs(wordline_v)), np.max(np.abs(bitline_v))))
    if highest > c.max_set_voltage or lowest < c.min_reset_voltage or line > c.max_line_voltage:
        raise SafetyError(
            f"a pulse reaching {highest:+.4g} V / {lowest:+.4g} V across a cell ({line:.4g} V on a line) is beyond "
            f"the HT-RRAM's own limits ({c.min_reset_voltage:g} to {c.max_set_voltage:g} V, {c.max_line_voltage:g} V "
            f"per line); nothing was sent")


#: Signals that stop a run like Ctrl-C, and that the safe-state sequence holds back until it is done.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def signals_deferred(signals=STOP_SIGNALS) -> Iterator[list[int]]:
    """Hold back ``signals`` while the block runs, then deliver what arrived.

    In the main thread, each signal's handler is replaced by one that only records it; on exit the
    old handlers are put back and every signal that arrived is raised again (once each, in the
    order they came), so a Ctrl-C handler raises KeyboardInterrupt *after* the block, and a signal
    whose action is to end the process ends it then. Outside the main thread nothing is changed:
    Python runs signal handlers only in the main thread, so they cannot interrupt this one.
    Yields the list of signal numbers received so far.
    """
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return

    def record(signum, frame):
        arrived.append(signum)

    previous = {}
    try:
        for sig in signals:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, record)
        yield arrived
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        first: BaseException | None = None
        for sig in dict.fromkeys(arrived):
            try:
                signal.raise_signal(sig)
            except BaseException as exc:  # noqa: BLE001 - deliver the rest, then raise the first
                first = first or exc
        if first is not None:
            raise first


def half_bias_voltages(geometry: ArrayGeometry, wordline: int, bitline: int, voltage: float):
    """Line voltages of the half-bias scheme for one selected cell.

    The selected wordline gets +V/2, the selected bitline -V/2, every other line 0 V, so the
    selected cell sees V and the half-selected cells on its lines see V/2.
    Returns (wordline_v, bitline_v) as arrays in volts.
    """
    w, b = geometry.check_cell(wordline, bitline)
    wordline_v = np.zeros(geometry.wordlines)
    bitline_v = np.zeros(geometry.bitlines)
    wordline_v[w] = voltage / 2.0
    bitline_v[b] = -voltage / 2.0
    return wordline_v, bitline_v


class RequestChecker:
    """Every check a request passes before it may reach a backend, with no backend attached.

    Protocols plan against a RequestChecker (geometry + safe operating area), so a whole plan is
    validated before anything is connected; CrossbarInstrument is a RequestChecker that can also
    carry requests out, and runs the same checks on every call.
    """

    #: what the ceiling is called in the warning when wider limits are narrowed to it
    _ceiling_name = "the HT-RRAM's safe operating area"

    def __init__(self, geometry: ArrayGeometry | None = None, limits: SafeOperatingArea | None = None):
        self.geometry = geometry or ArrayGeometry()
        self.limits = limits or SafeOperatingArea()

    @property
    def ceiling(self) -> SafeOperatingArea:
        """The widest limits this checker may ever have (read-only): ``DEVICE_CEILING``, or for a
        probe station the bench file's ``[limits]`` (themselves narrowed to ``DEVICE_CEILING``)."""
        return getattr(self, "_ceiling", DEVICE_CEILING)

    @property
    def limits(self) -> SafeOperatingArea:
        """The safe operating area in force: never wider than ``ceiling`` (and so never wider than
        ``DEVICE_CEILING``). Assigning an area narrows it to the ceiling, limit by limit: a script's
        ``station.limits = SafeOperatingArea()`` cannot widen a bench file's limits."""
        return self._limits

    @limits.setter
    def limits(self, requested: SafeOperatingArea) -> None:
        # Narrow, not refuse: a bench or chip file may describe what its instrument can do (e.g. a
        # 200 V SMU); only the device (and, on a bench, the bench file) decides how far that may be
        # used. What was cut is logged so a user who asked for more learns why it is refused later.
        if not isinstance(requested, SafeOperatingArea):
            raise RequestError(f"limits must be a SafeOperatingArea, got {requested!r}")
        ceiling = self.ceiling
        cut = requested.wider_than(ceiling)
        if cut:
            _log.warning("limits beyond %s were narrowed to it: %s", self._ceiling_name, "; ".join(cut))
        self._limits = requested.narrowed(ceiling)

    def check_pulse(self, wordline_v, bitline_v, width, shape="rect"):
        """Validate a pulse request; return (wordline_v, bitline_v, width, shape) normalised.

        Raises SafetyError, GeometryError or RequestError naming the value and the limit.
        """
        g, lim = self.geometry, self.limits
        wl = _finite_vector(wordline_v, "wordline_v", g.wordlines)
        bl = _finite_vector(bitline_v, "bitline_v", g.bitlines)
        width = _finite_scalar(width, "pulse width")
        if shape not in PULSE_SHAPES:
            raise RequestError(f"pulse shape {shape!r} is unknown: use one of {PULSE_SHAPES}")
        if width <= 0:
            raise SafetyError(f"pulse width {width:g} s must be positive")
        if not lim.min_pulse_width <= width <= lim.max_pulse_width:
            raise SafetyError(
                f"pulse width {width:g} s is outside the allowed range {lim.min_pulse_width:g} s to "
                f"{lim.max_pulse_width:g} s of this instrument"
            )
        line_peak = float(max(np.max(np.abs(wl)), np.max(np.abs(bl))))
        if line_peak > lim.max_line_voltage:
            which = "wordline" if np.max(np.abs(wl)) >= np.max(np.abs(bl)) else "bitline"
            idx = int(np.argmax(np.abs(wl))) if which == "wordline" else int(np.argmax(np.abs(bl)))
            raise SafetyError(
                f"{which} {idx} would be driven to {line_peak:+.4g} V, beyond the line limit of "
                f"{lim.max_line_voltage:g} V"
            )
        # The largest and smallest voltage any cell sees: every wordline meets every bitline.
        highest = float(np.max(wl) - np.min(bl))
        lowest = float(np.min(wl) - np.max(bl))
        if highest > lim.max_set_voltage:
            w, b = int(np.argmax(wl)), int(np.argmin(bl))
            raise SafetyError(
                f"cell ({w},{b}) would see {highest:+.4g} V, above the set limit of {lim.max_set_voltage:+g} V "
                f"(the HT-RRAM breaks down near 4.4 V): lower the pulse voltage"
            )
        if lowest < lim.min_reset_voltage:
            w, b = int(np.argmin(wl)), int(np.argmax(bl))
            raise SafetyError(
                f"cell ({w},{b}) would see {lowest:+.4g} V, below the reset limit of {lim.min_reset_voltage:+g} V: "
                f"raise the reset voltage"
            )
        return wl, bl, width, shape

    def check_read_voltage(self, v_read) -> float:
        """Validate a read voltage (V) against the read window; return it as a float."""
        v = _finite_scalar(v_read, "read voltage")
        _check_read_window(np.array([v]), self.limits, "read voltage")
        if v == 0:
            raise RequestError("read voltage is 0 V: a read needs a non-zero voltage, e.g. 1.0 V")
        return v

    def check_cells(self, cells) -> list[tuple[int, int]]:
        """Cells as a list of (wordline, bitline) ints (one pair is accepted too); GeometryError or RequestError."""
        if isinstance(cells, (int, np.integer)):
            # chip.read(3, 7): the 7 went to v_read; a bare TypeError would not say so
            raise RequestError(f"cells must be a list of (wordline, bitline) pairs, got the number {cells}: "
                               f"read([({cells}, BL)]) for cells, or read_cell(WL, BL) for one")
        if isinstance(cells, tuple) and len(cells) == 2 and not isinstance(cells[0], (tuple, list)):
            cells = [cells]
        out = []
        for cell in cells:
            try:
                w, b = cell
            except (TypeError, ValueError) as exc:
                raise RequestError(f"a cell is a (wordline, bitline) pair, got {cell!r}") from exc
            out.append(self.geometry.check_cell(w, b))
        if not out:
            raise RequestError("no cells given to read")
        return out

    def check_vmm(self, wordline_v, bitlines=None):
        """Validate a VMM request: (wordlines,) or (steps, wordlines) volts; returns (array2d, bitlines, was_1d)."""
        g = self.geometry
        try:
            arr = np.asarray(wordline_v, dtype=float)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"wordline_v must be numbers (volts), got {wordline_v!r}") from exc
        single = arr.ndim == 1
        arr2 = arr[None, :] if single else arr
        if arr2.ndim != 2 or arr2.shape[1] != g.wordlines:
            raise GeometryError(
                f"vmm input must have shape ({g.wordlines},) or (steps, {g.wordlines}), got {arr.shape}"
            )
        # one maximum and one minimum serve every check (a NaN or an infinity shows in them) and the
        # device ceiling's check in vmm(): a batch of 250,000 steps is not scanned five times
        extremes = (float(np.max(arr2)), float(np.min(arr2))) if arr2.size else (0.0, 0.0)
        if not (np.isfinite(extremes[0]) and np.isfinite(extremes[1])):
            raise RequestError("vmm input has a non-finite value (NaN or inf): give volts")
        _check_read_window(arr2, self.limits, "vmm input", extremes)
        self._vmm_extremes = (arr2, extremes)
        if bitlines is None:
            bls = list(range(g.bitlines))
        else:
            bls = [_line_index(b, "bitline", g.bitlines) for b in bitlines]
        return arr2, bls, single


class CrossbarInstrument(RequestChecker, ABC):
    """A crossbar that can be pulsed, read and used for vector-matrix multiplication.

    Subclasses implement ``_pulse``, ``_read``, ``_vmm`` and ``_reset_outputs``; callers use the public
    methods, which validate first. Used as a context manager the instrument always returns its
    outputs to 0 V (and opens every crosspoint) on exit, also on errors and Ctrl-C.
    """

    #: short name of the backend, recorded with every run ("twin", "probe-station", ...)
    backend_name: str = "abstract"

    # ----- the calls protocols make -----
    def pulse(self, wordline_v, bitline_v, width, shape="rect") -> None:
        """One programming event: each wordline at wordline_v[i], each bitline at bitline_v[j] (V),
        applied together for ``width`` seconds. ``shape`` is "rect" or "tri" (triangular, peak at
        the middle). A cell sees V_wl - V_bl.
        """
        self._check_open()
        wl, bl, width, shape = self.check_pulse(wordline_v, bitline_v, width, shape)
        _within_ceiling(wl, bl)
        self._outputs_safe = False
        self._pulse(wl, bl, width, shape)

    def pulse_cell(self, wordline, bitline, voltage, width, shape="rect") -> None:
        """A half-bias pulse of ``voltage`` (V, as seen by the cell) on one cell for ``width`` s."""
        voltage = _finite_scalar(voltage, "pulse voltage")
        wl, bl = half_bias_voltages(self.geometry, wordline, bitline, voltage)
        self.pulse(wl, bl, width, shape)

    def read(self, cells, v_read=1.0) -> np.ndarray:
        """Current (A) of each (wordline, bitline) cell with its wordline at v_read and every other
        line at 0 V. Returns an array with one value per cell, in the order given."""
        self._check_open()
        cells = self.check_cells(cells)
        v = self.check_read_voltage(v_read)
        _check_read_window(np.array([v]), DEVICE_CEILING, "read voltage")
        self._outputs_safe = False
        return np.asarray(self._read(cells, v), dtype=float)

    def read_cell(self, wordline, bitline, v_read=1.0) -> float:
        """Read current (A) of one cell at v_read (V)."""
        return float(self.read([(wordline, bitline)], v_read)[0])

    def vmm(self, wordline_v, bitlines=None) -> np.ndarray:
        """Bitline currents (A) with the bitlines held at 0 V.

        wordline_v: (wordlines,) for one time step or (steps, wordlines) for a batch, in volts.
        Returns (bitlines,) or (steps, bitlines), for the requested bitlines (default all).
        """
        self._check_open()
        arr2, bls, single = self.check_vmm(wordline_v, bitlines)
        seen = getattr(self, "_vmm_extremes", None)
        self._vmm_extremes = None
        _check_read_window(arr2, DEVICE_CEILING, "vmm input",
                           seen[1] if seen is not None and seen[0] is arr2 else None)
        self._outputs_safe = False
        out = np.asarray(self._vmm(arr2, bls), dtype=float)
        return out[0] if single else out

    def programming_done(self, cells) -> None:
        """Mark that write-verify has finished on these cells. Hardware: nothing to do. The twin
        adds its programming error here, as the paper does when a cell's transfer completes."""
        self._programming_done(self.check_cells(cells))

    _outputs_safe = False

    @property
    def outputs_safe(self) -> bool:
        """True only when the last ``reset_outputs`` ran to its end and nothing was driven since.
        False before the first reset, after any pulse, read or VMM, and when a reset failed."""
        return self._outputs_safe

    def reset_outputs(self) -> None:
        """All sources to 0 V, outputs off, all crosspoints open. Idempotent.

        The sequence cannot be cut short by a signal: SIGINT, SIGTERM and SIGHUP that arrive while
        it runs are held back and delivered once it is done (``signals_deferred``), so a Ctrl-C
        raises KeyboardInterrupt only after the bench is safe. ``outputs_safe`` says whether it
        completed.
        """
        self._outputs_safe = False
        with signals_deferred():
            self._reset_outputs()
            self._outputs_safe = True

    def close(self) -> None:
        """Return outputs to 0 V and release the backend; pulses, reads and VMM are refused after
        it (until the instrument is entered as a context manager again)."""
        self.reset_outputs()
        self._closed = True

    _closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise InstrumentError(f"this {self.backend_name} instrument is closed (close() was called, or its with "
                                  "block ended): use it inside the with block, or open it again")

    def __enter__(self):
        self._closed = False
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    # ----- what a backend implements -----
    @abstractmethod
    def _pulse(self, wordline_v: np.ndarray, bitline_v: np.ndarray, width: float, shape: str) -> None: ...

    @abstractmethod
    def _read(self, cells: list[tuple[int, int]], v_read: float) -> Sequence[float]: ...

    @abstractmethod
    def _vmm(self, wordline_v: np.ndarray, bitlines: list[int]) -> np.ndarray: ...

    @abstractmethod
    def _reset_outputs(self) -> None: ...

    def _programming_done(self, cells: list[tuple[int, int]]) -> None:
        return None

    def describe(self) -> dict:
        """Settings that identify this backend, for run records."""
        return {"backend": self.backend_name, "geometry": list(self.geometry.shape)}


class _ReadOnlyLimits(types.ModuleType):
    """This module, with the HT-RRAM's own limits read-only: ``interface.DEVICE_CEILING = ...`` (or
    ``READ_FLOOR_V``) raises AttributeError, so a script cannot move the ceiling every check uses.
    ``DEVICE_CEILING`` itself is a frozen dataclass: its fields cannot be assigned either."""

    _READ_ONLY = frozenset({"DEVICE_CEILING", "READ_FLOOR_V"})

    def _refuse(self, name: str) -> None:
        raise AttributeError(f"{self.__name__}.{name} is the HT-RRAM's own limit and cannot be changed: narrow an "
                             f"instrument's limits instead (instrument.limits = SafeOperatingArea(...))")

    def __setattr__(self, name, value):
        if name in self._READ_ONLY:
            self._refuse(name)
        super().__setattr__(name, value)

    def __delattr__(self, name):
        if name in self._READ_ONLY:
            self._refuse(name)
        super().__delattr__(name)


sys.modules[__name__].__class__ = _ReadOnlyLimits
