"""The one seam between protocols and backends: CrossbarInstrument.

Every protocol in ``protocols/`` talks to a crossbar only through this class; the probe station
(``drivers/probe_station.py``) and the simulation twin (``sim/virtual_array.py``) implement it.

Units are SI everywhere: volts, amperes, seconds, siemens. Lines are counted from 0: wordline 0 is
the first wordline (top electrodes), bitline 0 the first bitline (bottom electrodes). A cell
(wordline w, bitline b) sees the voltage ``V_wl[w] - V_bl[b]``.

The base class validates every request against the SafeOperatingArea and the ArrayGeometry *before*
a backend's ``_pulse``, ``_read`` or ``_vmm`` is called, so no backend can skip the interlock.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

PULSE_SHAPES = ("rect", "tri")


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


@dataclass(frozen=True)
class SafeOperatingArea:
    """Limits that no request may exceed, whichever caller asked.

    max_set_voltage: highest cell voltage V_wl - V_bl (V). The HT-RRAM breaks down at about 4.4 V;
        the paper's safe window ends at 4.3 V.
    min_reset_voltage: lowest (most negative) cell voltage (V).
    max_read_voltage: highest |V| of a read or of a VMM input (V).
    max_line_voltage: highest |V| on any single line during a pulse (V); half-bias needs V/2.
    min_pulse_width, max_pulse_width: pulse width range (s). The twin accepts 1 ns to 1 s; a probe
        station narrows it to what its SMU can do (4156C: 0.5 ms to 100 ms).
    """

    max_set_voltage: float = 4.3
    min_reset_voltage: float = -2.5
    max_read_voltage: float = 1.5
    max_line_voltage: float = 4.3
    min_pulse_width: float = 1e-9
    max_pulse_width: float = 1.0

    def __post_init__(self):
        for name in ("max_set_voltage", "min_reset_voltage", "max_read_voltage", "max_line_voltage",
                     "min_pulse_width", "max_pulse_width"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise SafetyError(f"SafeOperatingArea.{name} must be a finite number, got {v!r}")
        if self.max_set_voltage <= 0:
            raise SafetyError(f"SafeOperatingArea.max_set_voltage must be positive, got {self.max_set_voltage}")
        if self.min_reset_voltage >= 0:
            raise SafetyError(f"SafeOperatingArea.min_reset_voltage must be negative, got {self.min_reset_voltage}")
        if self.max_read_voltage <= 0 or self.max_line_voltage <= 0:
            raise SafetyError("SafeOperatingArea.max_read_voltage and max_line_voltage must be positive")
        if not 0 < self.min_pulse_width <= self.max_pulse_width:
            raise SafetyError(
                f"SafeOperatingArea pulse widths must satisfy 0 < min ({self.min_pulse_width}) <= max ({self.max_pulse_width})"
            )

    #: what ``window`` answers for; protocol settings name one of these as their ``soa`` bound
    WINDOWS = ("set", "reset", "read", "width")

    def window(self, kind: str) -> tuple[float, float]:
        """The allowed range (low, high) of one kind of quantity, in SI units.

        "set": a set pulse's cell voltage (V); "reset": a reset pulse's cell voltage (V, negative);
        "read": a read or VMM input voltage (V); "width": a pulse width (s). Settings declarations
        take their limits from here, so the command line, the GUI and the seam agree.
        """
        if kind == "set":
            return (0.0, self.max_set_voltage)
        if kind == "reset":
            return (self.min_reset_voltage, 0.0)
        if kind == "read":
            return (-self.max_read_voltage, self.max_read_voltage)
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
        )


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

    def __init__(self, geometry: ArrayGeometry | None = None, limits: SafeOperatingArea | None = None):
        self.geometry = geometry or ArrayGeometry()
        self.limits = limits or SafeOperatingArea()

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
        """The read voltage (V) as a float; SafetyError beyond ``max_read_voltage``, RequestError for 0 V or NaN."""
        v = _finite_scalar(v_read, "read voltage")
        if abs(v) > self.limits.max_read_voltage:
            raise SafetyError(
                f"read voltage {v:+.4g} V is beyond the read limit of {self.limits.max_read_voltage:g} V"
            )
        if v == 0:
            raise RequestError("read voltage is 0 V: a read needs a non-zero voltage, e.g. 1.0 V")
        return v

    def check_cells(self, cells) -> list[tuple[int, int]]:
        """Cells as a list of (wordline, bitline) ints (one pair is accepted too); GeometryError or RequestError."""
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
        if not np.all(np.isfinite(arr2)):
            raise RequestError("vmm input has a non-finite value (NaN or inf): give volts")
        peak = float(np.max(np.abs(arr2))) if arr2.size else 0.0
        if peak > self.limits.max_read_voltage:
            raise SafetyError(
                f"vmm input of {peak:+.4g} V is beyond the read limit of {self.limits.max_read_voltage:g} V"
            )
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
        wl, bl, width, shape = self.check_pulse(wordline_v, bitline_v, width, shape)
        self._pulse(wl, bl, width, shape)

    def pulse_cell(self, wordline, bitline, voltage, width, shape="rect") -> None:
        """A half-bias pulse of ``voltage`` (V, as seen by the cell) on one cell for ``width`` s."""
        voltage = _finite_scalar(voltage, "pulse voltage")
        wl, bl = half_bias_voltages(self.geometry, wordline, bitline, voltage)
        self.pulse(wl, bl, width, shape)

    def read(self, cells, v_read=1.0) -> np.ndarray:
        """Current (A) of each (wordline, bitline) cell with its wordline at v_read and every other
        line at 0 V. Returns an array with one value per cell, in the order given."""
        cells = self.check_cells(cells)
        v = self.check_read_voltage(v_read)
        return np.asarray(self._read(cells, v), dtype=float)

    def read_cell(self, wordline, bitline, v_read=1.0) -> float:
        """Read current (A) of one cell at v_read (V)."""
        return float(self.read([(wordline, bitline)], v_read)[0])

    def vmm(self, wordline_v, bitlines=None) -> np.ndarray:
        """Bitline currents (A) with the bitlines held at 0 V.

        wordline_v: (wordlines,) for one time step or (steps, wordlines) for a batch, in volts.
        Returns (bitlines,) or (steps, bitlines), for the requested bitlines (default all).
        """
        arr2, bls, single = self.check_vmm(wordline_v, bitlines)
        out = np.asarray(self._vmm(arr2, bls), dtype=float)
        return out[0] if single else out

    def programming_done(self, cells) -> None:
        """Mark that write-verify has finished on these cells. Hardware: nothing to do. The twin
        adds its programming error here, as the paper does when a cell's transfer completes."""
        self._programming_done(self.check_cells(cells))

    def reset_outputs(self) -> None:
        """All sources to 0 V, outputs off, all crosspoints open. Idempotent."""
        self._reset_outputs()

    def close(self) -> None:
        """Return outputs to 0 V and release the backend."""
        self.reset_outputs()

    def __enter__(self):
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
