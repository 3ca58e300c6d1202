"""I-V: a DC staircase sweep of one cell, the paper's Fig. 3 measurement.

The staircase goes 0 V -> ``set_peak_v`` (and back to 0 V with ``double``), then, when
``reset_peak_v`` is not 0, 0 V -> ``reset_peak_v`` (and back to 0 V with ``double``), in ``step_v``
steps. The whole sweep is checked against the safe operating area in ``plan`` (every step is a
voltage the cell sees: the positive ones within the set window, the negative ones within the reset
window), before the instrument is touched. ``run`` asks the instrument for the sweep
(``sweep_cell``, in the half-bias circuit of a pulse: ``VirtualArray.sweep_cell`` solves each step
on the twin, a lone device being a 1 x 1 twin; ``ProbeStation.sweep_cell`` steps the wordline and
bitline SMUs and reads the bitline) and yields one ``IvPoint`` per step; a sweep stopped part-way
(stop flag, Ctrl-C, SIGTERM) yields every point measured before the stop. ``summarise`` finds the set and reset onsets and the currents at the read
voltage. Units: volts, amperes.

Example::

    with VirtualArray(seed=0) as chip:
        p = iv.plan(iv.IvSettings(), chip, cell=(3, 7))
        points = list(iv.run(chip, p))
        iv.summarise(points, p.settings.read_v)["read_after_a"]     # A
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import numpy as np

from rramlab.drivers.interface import RequestChecker, RequestError, SafeOperatingArea, SafetyError
from rramlab.protocols.settings import check_settings, setting

__all__ = ["IvSettings", "IvPlan", "IvPoint", "plan", "run", "resume", "summarise", "sweep_voltages", "Settings", "Plan",
           "RECORDS", "CSV_HEADER", "MAX_POINTS"]

#: most steps one sweep may have (the 4156C's staircase holds 1001 steps per source; longer sweeps
#: are sent as several)
MAX_POINTS = 20_000
#: the columns of ``rramlab iv --csv``, one row per IvPoint
CSV_HEADER = ("voltage_v", "current_a")


@dataclass(frozen=True)
class IvSettings:
    """The staircase, in volts. Defaults: the paper's Fig. 3 sweep (0 -> 4.2 -> 0 -> -1.6 -> 0 V)."""

    set_peak_v: float = setting(4.2, "highest voltage of the sweep (the set branch, positive)", "V", soa="set",
                                flag="set_peak")
    reset_peak_v: float = setting(-1.6, "lowest voltage of the sweep (the reset branch, negative; 0: none)", "V",
                                  soa="reset", flag="reset_peak")
    step_v: float = setting(0.025, "voltage step of the staircase", "V", minimum=1e-3, maximum=0.5, flag="step")
    double: int = setting(1, "1: each branch goes out and back to 0 V (double sweep); 0: out only",
                          minimum=0, maximum=1)
    read_v: float = setting(1.0, "the read voltage at which the summary gives the currents", "V", soa="read",
                            flag="read_v")
    compliance_a: float = setting(1e-3, "current compliance of the sweeping SMU on a bench (the twin's HT-RRAM "
                                        "needs none)", "A", minimum=0.0, maximum=0.1, exclusive_minimum=True,
                                  flag="compliance")

    def validate(self, limits: SafeOperatingArea | None = None) -> None:
        """Check every setting against its declaration and ``limits``; SafetyError or RequestError naming it."""
        check_settings(self, limits)
        if self.set_peak_v <= 0:
            raise RequestError(f"--set-peak must be positive (got {self.set_peak_v:g} V): the sweep rises to it first")
        if self.reset_peak_v > 0:
            raise RequestError(f"--reset-peak must be negative or 0 (got {self.reset_peak_v:g} V), e.g. -1.6")


@dataclass(frozen=True)
class IvPoint:
    """One step of the staircase: the voltage across the cell (V) and the current through it (A)."""

    wordline: int
    bitline: int
    point: int        # 0-based index in the sweep
    leg: int          # 0: out to set_peak_v, 1: back to 0, 2: out to reset_peak_v, 3: back to 0
    voltage_v: float
    current_a: float

    def csv_row(self) -> tuple:
        """This point as a CSV row of CSV_HEADER's columns (SI units)."""
        return (f"{self.voltage_v:.6g}", f"{self.current_a:.6e}")


@dataclass(frozen=True)
class IvPlan:
    """A validated sweep (from ``plan``): settings, the cell, every step's voltage and leg."""

    settings: IvSettings
    cell: tuple[int, int]
    voltages: tuple[float, ...]
    legs: tuple[int, ...]
    #: True when the sweep is in the store already (``resume``): ``run`` yields nothing
    complete: bool = False


def sweep_voltages(settings: IvSettings) -> tuple[np.ndarray, np.ndarray]:
    """(voltages (V), leg of each) of the staircase the settings describe."""
    s = settings

    def leg(a, b):
        n = int(round(abs(b - a) / s.step_v))
        return np.round(np.linspace(a, b, max(n, 1) + 1), 6)

    parts = [(leg(0.0, s.set_peak_v), 0)]
    if s.double:
        parts.append((leg(s.set_peak_v, 0.0)[1:], 1))
    if s.reset_peak_v < 0:
        parts.append((leg(0.0, s.reset_peak_v)[1:], 2))
        if s.double:
            parts.append((leg(s.reset_peak_v, 0.0)[1:], 3))
    volts = np.concatenate([p for p, _ in parts])
    legs = np.concatenate([np.full(len(p), k) for p, k in parts])
    return volts, legs


def plan(settings: IvSettings, checker: RequestChecker | None = None, cell: tuple[int, int] = (0, 0)) -> IvPlan:
    """Validate the sweep against ``checker``'s safe operating area and geometry, touching no
    instrument: every step's voltage within the set (positive) or reset (negative) window, at most
    MAX_POINTS steps. Raises SafetyError, GeometryError or RequestError naming the value and the fix."""
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    (cell,) = checker.check_cells([tuple(cell)])
    checker.check_read_voltage(settings.read_v)
    volts, legs = sweep_voltages(settings)
    if volts.size > MAX_POINTS:
        raise RequestError(f"a {settings.step_v:g} V step gives {volts.size} points, more than {MAX_POINTS}: "
                           f"use a larger --step")
    set_hi = checker.limits.window("set")[1]
    reset_lo = checker.limits.window("reset")[0]
    if volts.max() > set_hi + 1e-12:
        raise SafetyError(f"a sweep to {volts.max():+g} V is above the set limit of the safe operating area "
                          f"({set_hi:+g} V; the HT-RRAM breaks down near 4.4 V): lower --set-peak")
    if volts.min() < reset_lo - 1e-12:
        raise SafetyError(f"a sweep to {volts.min():+g} V is below the reset limit of the safe operating area "
                          f"({reset_lo:+g} V): raise --reset-peak")
    return IvPlan(settings, cell, tuple(float(v) for v in volts), tuple(int(k) for k in legs))


def run(instrument, iv_plan: IvPlan, should_stop: Callable[[], bool] | None = None) -> Iterator[IvPoint]:
    """Sweep the plan's cell (``instrument.sweep_cell``) and yield one IvPoint per step.

    The sweep stops between steps: ``should_stop`` is polled before the sweep and, through the
    sweep's ``on_step``, after every step; a stop ends the sweep there (lines back to 0 V) and the
    points measured are yielded. A pause of a RunControl (protocols/control.py) ends the running
    segment the same way, then waits safe at the checkpoint; on resume the sweep goes on from the
    next step in a new segment (routed again; the switches hold their states at 0 V, inside every
    hysteresis window). A Ctrl-C or SIGTERM part-way (a KeyboardInterrupt) is raised only after
    every point already measured has been yielded, the instrument having gone safe first (its own
    guard). On a probe station every step is its own spot measurement (``ProbeStation.sweep_cell``;
    the 4156C's staircase, which returns its data only at its end, is not used), on the twin its own
    solve, so no measured point is lost either way."""
    if iv_plan.complete or (should_stop is not None and should_stop()):
        return
    sweep = getattr(instrument, "sweep_cell", None)
    if sweep is None:
        raise RequestError(f"the {getattr(instrument, 'backend_name', type(instrument).__name__)} has no DC "
                           "staircase sweep (sweep_cell): use the twin or a probe station")
    from rramlab.protocols.control import PAUSING, RunControl

    w, b = iv_plan.cell
    volts = np.array(iv_plan.voltages)
    measured: list[float] = []

    def leave_segment() -> bool:
        # a pause must not wait inside a segment (the lines are driven, the matrix routed): leave
        # it and take the pause at the checkpoint between segments
        if isinstance(should_stop, RunControl):
            return should_stop.stop_requested or should_stop.state == PAUSING
        return bool(should_stop is not None and should_stop())

    def step(k: int, current_a: float) -> bool:
        measured.append(float(current_a))
        return leave_segment()

    def new_points(first: int):
        for k in range(first, len(measured)):
            yield IvPoint(w, b, k, iv_plan.legs[k], iv_plan.voltages[k], measured[k])

    done = 0
    while done < volts.size:
        try:
            sweep(w, b, volts[done:], compliance=iv_plan.settings.compliance_a, on_step=step)
        except KeyboardInterrupt:
            yield from new_points(done)  # the points measured before the stop, then the stop itself
            raise
        yield from new_points(done)
        done = len(measured)
        if done < volts.size and (should_stop is None or should_stop()):
            return  # stopped (a paused RunControl has waited in should_stop and returns False on resume)


#: the same shape in every protocol module (see ``rramlab.protocols``)
def resume(iv_plan: IvPlan, records) -> IvPlan:
    """The plan that continues after ``records`` (the stored IvPoints): the sweep if none is
    stored, nothing if every point is. A sweep is one staircase taken at once, so one whose points
    were only partly stored (the process died while storing them) cannot be continued part-way:
    RequestError saying to start a new run."""
    points = [r for r in records if isinstance(r, IvPoint)]
    if not points:
        return iv_plan
    if len(points) == len(iv_plan.voltages):
        return replace(iv_plan, complete=True)
    raise RequestError(f"the run holds {len(points)} of the sweep's {len(iv_plan.voltages)} points (the process died "
                       "while storing them): a staircase cannot be continued part-way; start a new iv run")


Settings = IvSettings
Plan = IvPlan
#: the record class ``run`` yields
RECORDS = (IvPoint,)


def summarise(points: Sequence[IvPoint], read_v: float = 1.0) -> dict:
    """The sweep's features (SI units):

    * ``read_before_a`` / ``read_after_a``: the current at ``read_v`` on the way up to the set peak
      and on the way back (NaN where the sweep has no such step);
    * ``set_onset_v``: the lowest voltage of the way up, above ``read_v``, at which the current's
      log-log slope d ln I / d ln V jumps by more than 1 from one step to the next (the insulator's
      curve is smooth: a jump is a switch turning on, where the set begins); NaN if none;
    * ``reset_onset_v``: the voltage of the reset branch's largest |I| (beyond it |I| falls while
      |V| grows: the reset); NaN without a reset branch;
    * ``peak_current_a``: the largest current of the sweep."""
    def at(leg, v):
        hit = [p.current_a for p in points if p.leg == leg and abs(p.voltage_v - v) < 1e-9]
        return hit[0] if hit else float("nan")

    up = [p for p in points if p.leg == 0 and p.voltage_v > read_v and p.current_a > 0]
    set_onset = float("nan")
    if len(up) >= 3:
        v = np.array([p.voltage_v for p in up])
        slope = np.diff(np.log([p.current_a for p in up])) / np.diff(np.log(v))
        jumps = np.flatnonzero(np.diff(slope) > 1.0)
        if jumps.size:
            set_onset = float(v[jumps[0] + 2])
    neg = [p for p in points if p.leg == 2]
    reset_onset = min(neg, key=lambda p: p.current_a).voltage_v if neg else float("nan")
    return {"read_before_a": at(0, read_v), "read_after_a": at(1, read_v), "set_onset_v": set_onset,
            "reset_onset_v": reset_onset, "peak_current_a": max((p.current_a for p in points), default=float("nan")),
            "points": len(points)}
