"""ISPVA: incremental step pulse programming with verify, written only against the CrossbarInstrument seam.

For each cell and its target conductance:

1. read at ``read_v`` (1 V) and compare the conductance with the target;
2. below the window: a set pulse. The first amplitude comes from the nominal table (the HT-RRAM
   switches turn on 0.1 V apart, one 10 nS level each, from about 3.26 V: ``first_set_v``); after
   that the cell's own response decides. A set at ``low_v`` that left it below and one at
   ``high_v`` that took it above bracket the amplitudes that can land in the window; the next set
   is interpolated between them on the cell's measured conductance per volt (``bracket_set_v``);
   when no grid amplitude is left between them, the bracket is halved, down to
   ``set_step_v / FINE_DIVISIONS`` (two switches that turn on within one step, or a switch that a
   pulse just above its threshold turns only partly on).
   With only ``low_v`` known the amplitude steps up from it by the measured error (``next_set_v``:
   ``set_level_v`` per 10 nS, at least ``set_step_v``), doubling the step after a set that moved
   nothing; with only ``high_v`` known it steps down by the overshoot;
3. above the window: a reset pulse (the reset is abrupt: it returns the cell to HRS), then the set
   of step 2;
4. read again; repeat until the cell is within ``tolerance_s``, or no amplitude is left between
   ``low_v`` and ``high_v`` (the target lies between two neighbouring levels of this cell, e.g. on a
   chip with device-to-device spread), or ``max_pulses`` is spent (the last two are kept for
   this): the cell then ends at the closest level it reached (a reset and a set at that level's
   amplitude if it is elsewhere) and is reported not converged, ``out_of_reach`` in the first case.
   It never ends on a reset. Once, the closest level is set again from HRS to see whether the
   same pulse lands there again; a cell that lands elsewhere (cycle-to-cycle spread) learns its
   bracket afresh and keeps trying while the budget lasts;
5. within tolerance: ``instrument.programming_done(cell)`` (hardware: nothing; the twin adds its
   programming error there), then read again. The final read is what counts: a cell that fell out
   of tolerance is set again from HRS at the amplitude that had landed it, while its budget lasts
   (``programming="verified"``, the default). ``programming="paper-once"`` is the paper's
   simulation instead: the error is added once when the cell's programming ends and nothing is
   verified after it (a transfer adds it to every programmed cell once, after its last re-read), so
   about 94 % of cells stay within +-2 nS of a 1.06 nS Gaussian.

Nothing here assumes that a pulse lands exactly: the loop only trusts reads, so it works on any
backend whose conductance moves imperfectly per pulse.

``run`` yields an ``IspvaPulse`` after every pulse and an ``IspvaResult`` when a cell finishes.
Units: siemens, volts, seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from rramlab.drivers.interface import (PULSE_SHAPES, CrossbarInstrument, RequestChecker, RequestError,
                                      SafeOperatingArea, half_bias_voltages)
from rramlab.protocols.settings import check_settings, setting

__all__ = ["IspvaSettings", "IspvaPlan", "IspvaPulse", "IspvaResult", "plan", "run", "resume",
           "programming_position", "Settings", "Plan", "RECORDS",
           "program_cell", "check_target", "first_set_v", "next_set_v", "bracket_set_v", "within_fraction",
           "LevelSummary", "summarise_levels", "PAPER_LEVELS_S"]

LEVEL_SPACING_S = 10e-9
#: the bracket of a cell is halved down to set_step_v / FINE_DIVISIONS (1.6 mV on the 25 mV grid):
#: a switch of an HT-RRAM device moves from barely to fully on within a few mV above its threshold
FINE_DIVISIONS = 16
MIN_TARGET_S = 10e-9
MAX_TARGET_S = 80e-9
#: the paper's eight 3-bit states G1..G8: 10, 20, ... 80 nS (S)
PAPER_LEVELS_S = tuple(LEVEL_SPACING_S * k for k in range(1, 9))
#: programming-error procedures: "verified" (the error is drawn when a cell is accepted, then the
#: cell is verified again and re-programmed if it fell out) and "paper-once" (added once, no re-verify)
PROGRAMMINGS = ("verified", "paper-once")


@dataclass(frozen=True)
class IspvaSettings:
    """ISPVA settings, declared once. Volts, seconds, siemens. Defaults fit the HT-RRAM twin and the
    paper (read at 1 V, +-2 nS tolerance)."""

    tolerance_s: float = setting(2e-9, "accept a cell when |G - target| is at most this", "S",
                                 minimum=0.0, maximum=40e-9, exclusive_minimum=True, flag="tolerance")
    max_pulses: int = setting(40, "pulse budget per cell (set and reset pulses together)", minimum=1,
                              maximum=10_000)
    read_v: float = setting(1.0, "read voltage of every verify", "V", soa="read")
    set_start_v: float = setting(3.30, "first set amplitude for the lowest level (10 nS)", "V", soa="set",
                                 flag="set_start")
    set_level_v: float = setting(0.10, "set amplitude added per level (10 nS) of target or of error", "V",
                                 minimum=0.0, maximum=1.0, exclusive_minimum=True, flag="set_level")
    set_step_v: float = setting(0.025, "smallest change of the set amplitude between pulses", "V",
                                minimum=0.0, maximum=1.0, exclusive_minimum=True, flag="set_step")
    set_max_v: float = setting(4.2, "highest set amplitude", "V", soa="set", flag="set_max")
    reset_v: float = setting(-1.5, "reset pulse amplitude (negative)", "V", soa="reset", flag="reset")
    pulse_width_s: float = setting(2e-6, "pulse width", "s", soa="width", flag="width")
    shape: str = setting("rect", "pulse shape: rect or tri", choices=PULSE_SHAPES)
    verify: int = setting(1, "1: read after every pulse and steer by the error; 0: one open-loop set at "
                             "the level's amplitude (to measure what verify buys)", minimum=0, maximum=1)
    programming: str = setting("verified", "verified: the programming error is drawn when a cell is accepted and "
                                           "the cell is verified again (re-programmed if it fell out); paper-once: "
                                           "the paper's procedure, the error added once after the transfer and "
                                           "not verified", choices=PROGRAMMINGS)

    def validate(self, limits: SafeOperatingArea | None = None) -> None:
        """Check every setting against its declaration and ``limits``; SafetyError or RequestError naming it."""
        check_settings(self, limits)
        if self.set_start_v <= 0 or self.set_max_v <= 0:
            raise RequestError("set amplitudes must be positive: give e.g. --set-start 3.3 --set-max 4.2")
        if self.set_start_v > self.set_max_v:
            raise RequestError(f"--set-start {self.set_start_v:g} V is above --set-max {self.set_max_v:g} V: "
                               "lower --set-start or raise --set-max")
        if self.reset_v >= 0:
            raise RequestError(f"--reset {self.reset_v:g} V must be negative, e.g. -1.5")


@dataclass(frozen=True)
class IspvaPulse:
    """One pulse and the verify read after it."""

    wordline: int
    bitline: int
    target_s: float        # target conductance (S)
    pulse: int             # 1-based pulse count of this cell
    kind: str              # "set" or "reset"
    pulse_v: float         # amplitude the cell saw (V)
    conductance_s: float   # read current / read voltage after the pulse (S)


@dataclass(frozen=True)
class IspvaResult:
    """A cell's outcome: the final read (after ``programming_done``) is what counts."""

    wordline: int
    bitline: int
    target_s: float
    converged: bool        # final conductance within tolerance
    pulses: int            # pulses this cell took
    conductance_s: float   # final conductance (S)
    error_s: float         # conductance_s - target_s
    # the target lies between two neighbouring levels of this cell or above its highest, so no set
    # amplitude up to set_max_v lands within tolerance; the cell ended at the closest level it reached
    out_of_reach: bool = False  # no amplitude lands within tolerance: it ended at the closest level


@dataclass(frozen=True)
class IspvaPlan:
    """A validated ISPVA run (from ``plan``): settings, cells (wordline, bitline) and one target (S) per cell."""

    settings: IspvaSettings
    cells: tuple[tuple[int, int], ...]
    targets_s: tuple[float, ...]
    #: where ``run`` starts (``resume``): the index of the first cell to program, the pulses that
    #: cell already had and the amplitude (V) of its last set pulse (None: none yet)
    start_cell: int = 0
    start_pulses: int = 0
    start_last_set_v: float | None = None


def check_target(target_s: float, what: str = "target conductance") -> float:
    """A target conductance (S) within the paper's 10..80 nS window, or RequestError naming it."""
    try:
        t = float(target_s)
    except (TypeError, ValueError):
        raise RequestError(f"{what} must be a number in siemens, got {target_s!r}") from None
    if not math.isfinite(t) or not MIN_TARGET_S - 1e-15 <= t <= MAX_TARGET_S + 1e-15:
        raise RequestError(f"{what} {t * 1e9:g} nS is outside {MIN_TARGET_S * 1e9:g}..{MAX_TARGET_S * 1e9:g} nS: "
                           "give one of the eight levels 10, 20, ... 80 nS")
    return t


def first_set_v(settings: IspvaSettings, target_s: float) -> float:
    """The set amplitude aimed at ``target_s``: ``set_start_v`` for 10 nS, ``set_level_v`` more per level."""
    v = settings.set_start_v + settings.set_level_v * (target_s - MIN_TARGET_S) / LEVEL_SPACING_S
    return float(min(round(v, 6), settings.set_max_v))


def next_set_v(settings: IspvaSettings, last_v: float, error_s: float) -> float:
    """The next set amplitude after a read ``error_s`` = G - target (S) following a pulse at ``last_v``.

    Below target: up by ``set_level_v`` per level of error, at least ``set_step_v``. Above (after a
    reset): down by the same rule. Clipped to [set_start_v - one level, set_max_v] (volts)."""
    delta = settings.set_level_v * abs(error_s) / LEVEL_SPACING_S
    delta = max(settings.set_step_v, round(delta / settings.set_step_v) * settings.set_step_v)
    v = last_v + delta if error_s < 0 else last_v - delta
    low = max(settings.set_step_v, settings.set_start_v - settings.set_level_v)
    return float(round(min(max(v, low), settings.set_max_v), 6))


def plan(settings: IspvaSettings, cells: Sequence[tuple[int, int]], targets_s: Sequence[float],
         checker: RequestChecker | None = None) -> IspvaPlan:
    """Validate settings, cells and targets against ``checker``'s safe operating area and geometry
    (every amplitude the loop may use), touching no instrument.

    ``targets_s``: one target (S, 10..80 nS) per cell, or one for all. Raises SafetyError,
    GeometryError or RequestError naming the value and the fix.

    Example::

        with VirtualArray(seed=1, engine="fast") as chip:
            p = ispva.plan(ispva.IspvaSettings(), [(0, 0), (0, 1)], [20e-9, 50e-9], chip)
            results = [r for r in ispva.run(chip, p) if isinstance(r, ispva.IspvaResult)]
    """
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    cells = [tuple(c) for c in cells]
    targets = [float(t) for t in np.atleast_1d(np.asarray(targets_s, dtype=float))]
    if len(targets) == 1 and len(cells) > 1:
        targets = targets * len(cells)
    if len(targets) != len(cells):
        raise RequestError(f"{len(cells)} cells but {len(targets)} targets: give one target per cell")
    cells = checker.check_cells(cells)
    for c, t in zip(cells, targets):
        check_target(t, f"target conductance of cell {c[0]},{c[1]}")
    checker.check_read_voltage(settings.read_v)
    w, b = cells[0]
    for v in (settings.set_start_v - settings.set_level_v, settings.set_max_v, settings.reset_v):
        if v <= 0 and v != settings.reset_v:
            continue
        wl, bl = half_bias_voltages(checker.geometry, w, b, v)
        checker.check_pulse(wl, bl, settings.pulse_width_s, settings.shape)
    return IspvaPlan(settings, tuple(cells), tuple(targets))


class _Stopped(Exception):
    """``should_stop`` said stop before a pulse."""


def bracket_set_v(settings: IspvaSettings, low_v: float, low_s: float, high_v: float, high_s: float,
                  target_s: float) -> float | None:
    """The next set amplitude (V) between one known to leave the cell below the window (``low_v``,
    read ``low_s``) and one known to take it above (``high_v``, read ``high_s``), volts and siemens.

    Interpolated at ``target_s`` on the line through the two reads (the cell's own conductance per
    volt, not the nominal table) and put on the ``set_step_v`` grid from ``low_v``, at least one step
    inside each end. None when no such amplitude exists: the two reads are neighbouring levels of
    this cell and no set pulse lands between them."""
    step = settings.set_step_v
    slots = int(math.floor((high_v - low_v) / step + 1e-6))
    if slots < 2:
        return None
    span = high_s - low_s
    frac = (target_s - low_s) / span if span > 0 else 0.5
    k = min(max(int(round(frac * slots)), 1), slots - 1)
    return float(round(low_v + k * step, 6))


def settles_without_change(instrument) -> bool:
    """Whether ``programming_done`` leaves every cell as it was on this backend (a probe station:
    the seam's own no-op), so a read after it would repeat the read before it and is skipped."""
    return getattr(type(instrument), "_programming_done", None) is CrossbarInstrument._programming_done


def program_cell(instrument: CrossbarInstrument, settings: IspvaSettings, cell: tuple[int, int],
                 target_s: float, should_stop: Callable[[], bool] | None = None,
                 pulses_used: int = 0, last_set_v: float | None = None,
                 first_read_s: float | None = None, settle: bool = True) -> Iterator[IspvaPulse | IspvaResult]:
    """The verify loop of one cell (see the module docstring); yields its pulses and, unless
    stopped, its IspvaResult. ``pulses_used`` counts pulses the cell already had (a scheme that
    pulsed it before hands over the rest of the budget); ``last_set_v``: the amplitude (V) of the
    set pulse it had just before (the fast scheme's row pulse), so the loop starts from its response.
    ``first_read_s``: the cell's conductance (S) from a read the caller has just made (a transfer's
    whole-region read), used instead of reading it again before the first pulse.
    ``settle``: with ``programming="paper-once"``, add the programming error when the loop ends
    (False: the caller adds it later, as a transfer does after its last re-read)."""
    s = settings
    w, b = cell
    tol = s.tolerance_s
    pulses = pulses_used
    reread_settled = not settles_without_change(instrument)

    def conductance() -> float:
        return instrument.read_cell(w, b, s.read_v) / s.read_v

    g = conductance() if first_read_s is None else float(first_read_s)
    if not s.verify:
        if pulses < s.max_pulses:
            set_v = first_set_v(s, target_s)
            instrument.pulse_cell(w, b, set_v, s.pulse_width_s, s.shape)
            pulses += 1
            g = conductance()
            yield IspvaPulse(w, b, target_s, pulses, "set", set_v, g)
        instrument.programming_done([(w, b)])
        if reread_settled:
            g = conductance()
        yield IspvaResult(w, b, target_s, abs(g - target_s) <= tol, pulses, g, g - target_s)
        return

    # What this cell has shown: a set at low_v left it below the window (read low_s), one at high_v
    # took it above (read high_s). Its levels are discrete, so the window is reachable only by an
    # amplitude between the two; when none is left, the target lies between two neighbouring levels.
    low_v = low_s = high_v = high_s = None
    peak_v = last_set_v      # highest set amplitude since the last reset (None: unknown)
    best = None              # (|error|, conductance, amplitude that reached it from HRS)
    step_up = None           # the last upward step (V); doubled after a set that moved nothing
    stalled = False          # the last set moved the cell by less than half the tolerance
    random_cell = False      # a repeated amplitude landed elsewhere: retrying a level can help
    checked = False          # the best level has been set again once from HRS
    out_of_reach = False
    pulsed_since_done = True  # the first acceptance always settles the cell
    if last_set_v is not None and g < target_s - tol:
        low_v, low_s = last_set_v, g

    def send(kind: str, v: float) -> IspvaPulse:
        nonlocal g, pulses, pulsed_since_done, peak_v, random_cell
        if should_stop is not None and should_stop():
            raise _Stopped
        instrument.pulse_cell(w, b, v, s.pulse_width_s, s.shape)
        pulses += 1
        pulsed_since_done = True
        peak_v = 0.0 if kind == "reset" else max(v, peak_v or 0.0)
        g = conductance()
        if kind == "set":
            # a level read again at a slightly different conductance: the cell lands randomly
            random_cell = random_cell or any(same_level(g, x) for x in set_reads)
            set_reads.append(g)
        return IspvaPulse(w, b, target_s, pulses, kind, v, g)

    set_reads: list[float] = []   # every read after a set pulse (S)

    def same_level(a: float, b_: float) -> bool:
        """Two reads of one level that differ by more than read noise (a tenth of the tolerance)."""
        return tol / 10 < abs(a - b_) < LEVEL_SPACING_S / 2

    def is_best() -> bool:
        return best is not None and abs(g - target_s) <= best[0] + 1e-15

    once = s.programming == "paper-once"
    try:
        while True:
            error = g - target_s
            if peak_v and (best is None or abs(error) < best[0]):
                best = (abs(error), g, peak_v)
            if abs(error) <= tol:
                if not pulsed_since_done or once:
                    break
                instrument.programming_done([(w, b)])
                pulsed_since_done = False
                if not reread_settled:
                    continue  # nothing moved: the read that accepted the cell stands
                g = conductance()
                if abs(g - target_s) <= tol or not peak_v or pulses + 2 > s.max_pulses:
                    continue
                # the settled cell drifted out of the window: set the same level again from HRS
                good_v = peak_v
                yield send("reset", s.reset_v)
                yield send("set", good_v)
                continue
            if error > 0 and peak_v and (high_v is None or peak_v <= high_v):
                high_v, high_s = peak_v, g
            # the next set amplitude, from what this cell did so far
            if low_v is not None and high_v is not None:
                next_v = bracket_set_v(s, low_v, low_s, high_v, high_s, target_s)
                if next_v is None and high_v - low_v >= s.set_step_v / FINE_DIVISIONS - 1e-9:
                    # no step of the grid is left between them, but a finer amplitude can still land
                    # between: two switches that turn on inside one step, or a switch only partly on
                    # (a pulse just above its threshold switches part of its area, sim/device.py)
                    next_v = round((low_v + high_v) / 2, 6)
            elif high_v is not None:
                next_v = next_set_v(s, high_v, high_s - target_s)
                next_v = next_v if next_v < high_v else None
            elif low_v is not None:
                next_v = next_set_v(s, low_v, low_s - target_s)
                if stalled and step_up is not None:
                    next_v = max(next_v, round(min(low_v + 2 * step_up, s.set_max_v), 6))
                next_v = next_v if next_v > low_v else None
            else:
                next_v = first_set_v(s, target_s)
            cost = 2 if error > 0 else 1
            if next_v is None or pulses + cost + (2 if best is not None else 0) > s.max_pulses:
                # no amplitude is left that could land in the window (the target lies between two
                # neighbouring levels of this cell), or the budget is spent: end at the closest level
                # the cell reached; a cell that lands randomly gets that level again while budget lasts
                out_of_reach = out_of_reach or next_v is None
                if best is None or pulses + 2 > s.max_pulses:
                    break
                if is_best() and not random_cell and (checked or next_v is not None):
                    break
                # once per cell, even at its best level: does the same pulse land there again?
                checked = True
                yield send("reset", s.reset_v)
                yield send("set", best[2])
                random_cell = random_cell or abs(g - best[1]) > tol / 10
                if random_cell:
                    # what one pulse did no longer says what the next will do: learn again from here
                    low_v = low_s = high_v = high_s = None
                    if g < target_s - tol:
                        low_v, low_s = best[2], g
                continue
            if error > 0:
                yield send("reset", s.reset_v)
            if low_v is not None and next_v > low_v and (peak_v or 0.0) <= low_v:
                step_up = next_v - low_v
            before = g
            yield send("set", next_v)
            stalled = abs(g - before) < tol / 2
            if g < target_s - tol:
                low_v, low_s = next_v, g
            elif g > target_s + tol and (high_v is None or next_v <= high_v):
                high_v, high_s = next_v, g
    except _Stopped:
        return
    if once and settle:
        # the paper's procedure: the error is added once, when the cell's programming ends, and the
        # read after it counts as it is (nothing re-verifies it)
        instrument.programming_done([(w, b)])
        g = conductance()
    converged = abs(g - target_s) <= tol
    yield IspvaResult(w, b, target_s, converged, pulses, g, g - target_s, out_of_reach and not converged)


def run(instrument: CrossbarInstrument, ispva_plan: IspvaPlan,
        should_stop: Callable[[], bool] | None = None) -> Iterator[IspvaPulse | IspvaResult]:
    """Program every cell of the plan in turn; yields IspvaPulse per pulse and IspvaResult per cell.
    ``should_stop`` is polled between pulses; the caller owns the instrument (context manager)."""
    p = ispva_plan
    for k, (cell, target) in enumerate(zip(p.cells, p.targets_s)):
        if k < p.start_cell:  # resumed: this cell's result is in the store already
            continue
        if should_stop is not None and should_stop():
            return
        again = k == p.start_cell
        yield from program_cell(instrument, p.settings, cell, target, should_stop,
                                p.start_pulses if again else 0, p.start_last_set_v if again else None)


def programming_position(cells, targets_s, records) -> tuple[int, int, float | None]:
    """Where programming ``cells`` (in order) stands after ``records`` (stored IspvaPulse and
    IspvaResult, in order): (index of the first cell without a result, the pulses that cell already
    had, the amplitude of its last set pulse or None). RequestError if the records are not of these
    cells in this order."""
    done, pulses, last_set_v = 0, 0, None
    for r in records:
        if not isinstance(r, (IspvaPulse, IspvaResult)):
            continue
        if done >= len(cells) or (r.wordline, r.bitline) != tuple(cells[done]):
            raise RequestError(f"a stored record of cell {r.wordline},{r.bitline} is not of the plan's cell "
                               f"{'(none left)' if done >= len(cells) else cells[done]}: the run cannot be resumed")
        if isinstance(r, IspvaResult):
            done, pulses, last_set_v = done + 1, 0, None
        else:
            pulses = r.pulse
            if r.kind == "set":
                last_set_v = r.pulse_v
    return done, pulses, last_set_v


def resume(ispva_plan: IspvaPlan, records) -> IspvaPlan:
    """The plan that continues after ``records`` (the stored pulses and results, in order): with
    the first cell that has no result, its verify loop going on from the pulses it already had
    (their count, the last set amplitude) on the cell as it is now. RequestError if the records are
    not this plan's."""
    from dataclasses import replace

    done, pulses, last_set_v = programming_position(ispva_plan.cells, ispva_plan.targets_s, records)
    return replace(ispva_plan, start_cell=done, start_pulses=pulses, start_last_set_v=last_set_v)


#: the same shape in every protocol module (see ``rramlab.protocols``): Settings, Plan, RECORDS
Settings = IspvaSettings
Plan = IspvaPlan
#: the record classes ``run`` yields
RECORDS = (IspvaPulse, IspvaResult)


# ----- summary: small pure functions over results -----

def within_fraction(errors_s, tolerance_s: float) -> float:
    """Fraction of |errors| (S) at most ``tolerance_s`` (plus 1 fS for float noise); NaN when empty."""
    e = np.abs(np.asarray(errors_s, dtype=float))
    return float(np.mean(e <= tolerance_s + 1e-15)) if e.size else float("nan")


@dataclass(frozen=True)
class LevelSummary:
    """One target level's outcome: fractions (0..1) within +-2 / +-4 nS, mean pulses, error mean and std (S)."""

    target_s: float
    devices: int
    within_2ns: float
    within_4ns: float
    mean_pulses: float
    mean_error_s: float
    std_error_s: float


def summarise_levels(results: Sequence[IspvaResult]) -> list[LevelSummary]:
    """One LevelSummary per distinct target, ascending."""
    out = []
    for t in sorted({round(r.target_s, 15) for r in results}):
        rs = [r for r in results if abs(r.target_s - t) < 1e-15]
        err = np.array([r.error_s for r in rs])
        out.append(LevelSummary(t, len(rs), within_fraction(err, 2e-9), within_fraction(err, 4e-9),
                                float(np.mean([r.pulses for r in rs])), float(np.mean(err)), float(np.std(err))))
    return out
