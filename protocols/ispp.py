"""ISPP: incremental step pulse programming, written only against the CrossbarInstrument seam.

One cycle is a set ramp (rising positive pulses) then a reset ramp (falling negative pulses), each
pulse followed by a read. ``run_ispp`` yields one IsppRecord per pulse as it happens, so a caller can
plot, store or stop at any point. The whole plan is checked against the instrument's safe
operating area before the first pulse: a bad setting never reaches the instrument half-way.

Defaults are the paper's simulation values: set 3.0 -> 4.2 V in 25 mV, reset -1.0 -> -1.6 V in
50 mV, read at 1 V, 2 us pulses. (The hardware run used set up to 4.3 V and reset down to -2.5 V.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np

from rramlab.drivers.interface import (PULSE_SHAPES, CrossbarInstrument, RequestChecker, RequestError,
                                      SafeOperatingArea, half_bias_voltages)
from rramlab.protocols.settings import check_settings, setting

__all__ = ["IsppSettings", "IsppPlan", "IsppRecord", "plan", "run", "resume", "run_ispp", "Settings", "Plan", "RECORDS",
           "voltage_ramp", "plan_pulses", "distinct_levels", "reset_drop_fraction", "CycleSummary", "summarise_ispp"]

#: columns of ``rramlab ispp --csv`` (``IsppRecord.csv_row``)
CSV_HEADER = ("cycle", "phase", "pulse_v", "read_a")

#: more cycles than any lab runs in one go (62 pulses each at the defaults); a bound, not a target
MAX_CYCLES = 100_000
#: pulses in one ramp at most: a 1.2 V set ramp in 0.12 mV steps (the paper steps 25 mV, 49 pulses);
#: a typo in a step (1e-6 for 1e-3) must not start a million-pulse ramp. A bound, not a target.
MAX_RAMP_PULSES = 10_000
#: ramp amplitudes are rounded to 1 uV, so a smaller step means nothing
MIN_RAMP_STEP_V = 1e-6


@dataclass(frozen=True)
class IsppSettings:
    """ISPP settings, declared once (units, limits and help live on the fields). Volts and seconds;
    the reset voltages are negative. Defaults are the paper's simulation values."""

    set_start_v: float = setting(3.0, "first set pulse, as seen by the cell", "V", soa="set", flag="set_start")
    set_stop_v: float = setting(4.2, "last set pulse (the ramp includes it)", "V", soa="set", flag="set_stop")
    set_step_v: float = setting(0.025, f"set ramp step (a ramp has at most {MAX_RAMP_PULSES} pulses)", "V",
                                minimum=MIN_RAMP_STEP_V, maximum=1.0, flag="set_step")
    reset_start_v: float = setting(-1.0, "first reset pulse (negative)", "V", soa="reset", flag="reset_start")
    reset_stop_v: float = setting(-1.6, "last reset pulse (negative; the ramp includes it)", "V", soa="reset",
                                  flag="reset_stop")
    reset_step_v: float = setting(0.05, f"reset ramp step, magnitude (a ramp has at most {MAX_RAMP_PULSES} "
                                        "pulses)", "V", minimum=MIN_RAMP_STEP_V, maximum=1.0, flag="reset_step")
    read_v: float = setting(1.0, "read voltage after every pulse", "V", soa="read")
    pulse_width_s: float = setting(2e-6, "pulse width", "s", soa="width",
                                   flag="width")
    cycles: int = setting(3, "set/reset cycles", minimum=1, maximum=MAX_CYCLES)
    shape: str = setting("rect", "pulse shape: rect or tri (triangular, peak in the middle)", choices=PULSE_SHAPES)

    def set_voltages(self) -> np.ndarray:
        """The set ramp's amplitudes (V), first to last."""
        return voltage_ramp(self.set_start_v, self.set_stop_v, self.set_step_v, "set")

    def reset_voltages(self) -> np.ndarray:
        """The reset ramp's amplitudes (V, negative), first to last."""
        return voltage_ramp(self.reset_start_v, self.reset_stop_v, self.reset_step_v, "reset")

    def validate(self, limits: SafeOperatingArea | None = None) -> None:
        """Check every setting against its declaration and ``limits``, then the ramps' shape."""
        check_settings(self, limits)
        if self.set_start_v <= 0 or self.set_stop_v <= 0:
            raise RequestError(
                f"set voltages must be positive (got {self.set_start_v} -> {self.set_stop_v} V): the set ramp rises")
        if self.reset_start_v >= 0 or self.reset_stop_v >= 0:
            raise RequestError(
                f"reset voltages must be negative (got {self.reset_start_v} -> {self.reset_stop_v} V): "
                "give e.g. --reset-start -1.0 --reset-stop -1.6")
        self.set_voltages()
        self.reset_voltages()


@dataclass(frozen=True)
class IsppRecord:
    """One programming pulse and the read after it. Volts and amperes."""

    cycle: int          # 1-based cycle number
    phase: str          # "set" or "reset"
    step: int           # 0-based pulse index within the phase
    pulse_v: float      # voltage the cell was pulsed with
    read_a: float       # read current after the pulse, at settings.read_v
    wordline: int
    bitline: int

    def csv_row(self) -> tuple:
        """The row of ``rramlab ispp --csv``: cycle, phase, pulse_v, read_a."""
        return (self.cycle, self.phase, f"{self.pulse_v:.6g}", f"{self.read_a:.6e}")


def voltage_ramp(start: float, stop: float, step: float, what: str = "ramp") -> np.ndarray:
    """Pulse amplitudes from ``start`` to ``stop`` (both included) in steps of |step| volts.

    Amplitudes are computed as start + i * step and rounded to 1 uV, so a 25 mV ramp lands on the
    grid exactly instead of drifting by float error.
    """
    for name, v in (("start", start), ("stop", stop), ("step", step)):
        if not np.isfinite(v):
            raise RequestError(f"{what} {name} voltage must be a finite number, got {v!r}")
    step = abs(step)
    if step == 0:
        raise RequestError(f"{what} step must be non-zero (volts), e.g. 0.025")
    span = stop - start
    steps = abs(span) / step
    if steps + 1 > MAX_RAMP_PULSES + 0.5:  # before any array is made: 1e-300 V steps would be 1e300 pulses
        flag = f" (--{what}-step)" if what in ("set", "reset") else ""
        count = f"{round(steps) + 1:,}" if steps < 1e12 else f"{steps:.3g}"
        least = abs(span) / (MAX_RAMP_PULSES - 1)
        unit = 10.0 ** (math.floor(math.log10(least)) - 2)
        raise RequestError(
            f"{what} ramp {start:g} -> {stop:g} V in {step:g} V steps is {count} pulses; a ramp has at most "
            f"{MAX_RAMP_PULSES:,} pulses: take a step of at least {math.ceil(least / unit) * unit:.3g} V{flag}")
    n = int(round(steps))
    if abs(abs(span) - n * step) > 1e-9:
        raise RequestError(
            f"{what} ramp {start} -> {stop} V is not a whole number of {step} V steps: adjust the stop voltage")
    direction = 1.0 if span >= 0 else -1.0
    return np.round(start + direction * step * np.arange(n + 1), 6)


def plan_pulses(settings: IsppSettings):
    """The pulses of one cycle, in order: [(phase, step, voltage), ...]."""
    return ([("set", i, float(v)) for i, v in enumerate(settings.set_voltages())]
            + [("reset", i, float(v)) for i, v in enumerate(settings.reset_voltages())])


@dataclass(frozen=True)
class IsppPlan:
    """A validated ISPP run: settings, the cell, and one cycle's pulses (phase, step, volts)."""

    settings: IsppSettings
    wordline: int
    bitline: int
    cycle_pulses: tuple[tuple[str, int, float], ...]
    #: pulses of the whole run already taken (``resume``): ``run`` starts with the next one
    start_pulse: int = 0

    @property
    def total_pulses(self) -> int:
        """Pulses in the whole run (every cycle)."""
        return self.settings.cycles * len(self.cycle_pulses)


def plan(settings: IsppSettings, cell=(0, 0), checker: RequestChecker | None = None) -> IsppPlan:
    """Validate ISPP settings and the cell against ``checker`` (an instrument, or a RequestChecker
    built from a bench file or the twin's limits before anything is connected) and list the pulses.

    Touches no instrument. Raises SafetyError, GeometryError or RequestError naming the value.

    Example::

        with VirtualArray.lone_device(seed=1) as chip:
            p = ispp.plan(ispp.IsppSettings(cycles=1), (0, 0), chip)
            reads_a = [r.read_a for r in ispp.run(chip, p)]      # amperes, one per pulse
    """
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    wordline, bitline = checker.geometry.check_cell(*cell)
    pulses = tuple(plan_pulses(settings))
    checker.check_read_voltage(settings.read_v)
    checker.check_cells([(wordline, bitline)])
    for _, _, v in pulses:
        wl, bl = half_bias_voltages(checker.geometry, wordline, bitline, v)
        checker.check_pulse(wl, bl, settings.pulse_width_s, settings.shape)
    return IsppPlan(settings, wordline, bitline, pulses)


def run(instrument: CrossbarInstrument, ispp_plan: IsppPlan,
        should_stop: Callable[[], bool] | None = None) -> Iterator[IsppRecord]:
    """Carry out a plan and yield an IsppRecord after every pulse.

    ``should_stop`` is polled between pulses; when it returns True the run ends cleanly. The caller
    owns the instrument (use it as a context manager so outputs return to 0 V). The seam checks
    every pulse again, so a plan made against wider limits than the instrument's is still refused.
    """
    p, s = ispp_plan, ispp_plan.settings
    first_cycle, first_pulse = divmod(p.start_pulse, len(p.cycle_pulses))
    for cycle in range(first_cycle + 1, s.cycles + 1):
        for phase, step, v in p.cycle_pulses[first_pulse if cycle == first_cycle + 1 else 0:]:
            if should_stop is not None and should_stop():
                return
            instrument.pulse_cell(p.wordline, p.bitline, v, s.pulse_width_s, s.shape)
            current = instrument.read_cell(p.wordline, p.bitline, s.read_v)
            yield IsppRecord(cycle, phase, step, v, current, p.wordline, p.bitline)


def resume(ispp_plan: IsppPlan, records) -> IsppPlan:
    """The plan that continues after ``records`` (the IsppRecords a stored run holds, in order):
    its next pulse is the one after the last record's. RequestError if they are not this plan's."""
    taken = [r for r in records if isinstance(r, IsppRecord)]
    n = len(taken)
    if n > ispp_plan.total_pulses:
        raise RequestError(f"the run holds {n} ISPP records but its plan has {ispp_plan.total_pulses} pulses: "
                           "it is not this plan's run")
    if n:
        last = taken[-1]
        cycle, k = divmod(n - 1, len(ispp_plan.cycle_pulses))
        phase, step, _ = ispp_plan.cycle_pulses[k]
        if (last.cycle, last.phase, last.step) != (cycle + 1, phase, step) or \
                (last.wordline, last.bitline) != (ispp_plan.wordline, ispp_plan.bitline):
            raise RequestError(f"the run's last record (cycle {last.cycle}, {last.phase} step {last.step}, cell "
                               f"{last.wordline},{last.bitline}) is not pulse {n} of its plan: it cannot be resumed")
    return replace(ispp_plan, start_pulse=n)


#: the same shape in every protocol module (see ``rramlab.protocols``): Settings, Plan, RECORDS
Settings = IsppSettings
Plan = IsppPlan
#: the record classes ``run`` yields
RECORDS = (IsppRecord,)


def run_ispp(instrument: CrossbarInstrument, settings: IsppSettings = IsppSettings(), cell=(0, 0),
             should_stop: Callable[[], bool] | None = None) -> Iterator[IsppRecord]:
    """Plan against ``instrument`` (raising here, before any pulse) and return the runner."""
    return run(instrument, plan(settings, cell, instrument), should_stop)


# ----- summary: small pure functions over records -----

def distinct_levels(currents, tolerance_a: float = 3e-9) -> list[float]:
    """Group read currents (A) into levels: sorted values closer than ``tolerance_a`` to the
    previous one belong to the same level. Returns the mean of each level, ascending."""
    values = np.sort(np.asarray(currents, dtype=float))
    if values.size == 0:
        return []
    levels, group = [], [values[0]]
    for v in values[1:]:
        if v - group[-1] < tolerance_a:
            group.append(v)
        else:
            levels.append(float(np.mean(group)))
            group = [v]
    levels.append(float(np.mean(group)))
    return levels


def reset_drop_fraction(last_set_a: float, reset_reads_a, pulses: int = 3) -> float:
    """Fraction of the read current lost after the first ``pulses`` reset pulses (0..1)."""
    reads = list(reset_reads_a)
    if not reads or last_set_a <= 0:
        return float("nan")
    after = reads[min(pulses, len(reads)) - 1]
    return float(1.0 - after / last_set_a)


@dataclass(frozen=True)
class CycleSummary:
    """One ISPP cycle in numbers: read currents in A, ``reset_drop_3`` a fraction (0..1)."""

    cycle: int
    min_read_a: float
    max_read_a: float
    set_levels: int
    reset_drop_3: float      # fraction lost after the first 3 reset pulses
    final_reset_read_a: float


def summarise_cycle(cycle: int, records) -> CycleSummary:
    """The CycleSummary of one cycle's records (IsppRecord, in the order they were taken)."""
    sets = [r.read_a for r in records if r.phase == "set"]
    resets = [r.read_a for r in records if r.phase == "reset"]
    reads = [r.read_a for r in records]
    return CycleSummary(
        cycle=cycle,
        min_read_a=float(min(reads)),
        max_read_a=float(max(reads)),
        set_levels=len(distinct_levels(sets)),
        reset_drop_3=reset_drop_fraction(sets[-1], resets) if sets and resets else float("nan"),
        final_reset_read_a=float(resets[-1]) if resets else float("nan"),
    )


def summarise_ispp(records) -> list[CycleSummary]:
    """One CycleSummary per cycle in ``records`` (IsppRecord)."""
    by_cycle: dict[int, list] = {}
    for r in records:
        by_cycle.setdefault(r.cycle, []).append(r)
    return [summarise_cycle(c, rs) for c, rs in sorted(by_cycle.items())]


class CycleSummariser:
    """Cycle summaries as the records stream in, holding only the current cycle's records, so a
    run of any number of cycles needs the memory of one.

    ``add(record)`` returns the finished cycle's CycleSummary when a record of the next cycle
    arrives (else None); ``finish()`` returns the last cycle's (None if there was none).
    """

    def __init__(self):
        self._cycle: int | None = None
        self._records: list = []

    def add(self, record) -> CycleSummary | None:
        done = None
        if self._cycle is not None and record.cycle != self._cycle:
            done = self.finish()
        self._cycle = record.cycle
        self._records.append(record)
        return done

    def finish(self) -> CycleSummary | None:
        if not self._records:
            return None
        summary = summarise_cycle(self._cycle, self._records)
        self._records = []
        return summary
