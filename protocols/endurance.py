"""Endurance: set/reset cycles of one cell, both states read at log-spaced or every-k cycles.

One cycle is one set pulse then one reset pulse (amplitudes and width default to the ends of ISPP's
ramps: +4.2 V, -1.6 V, 2 us). On a read cycle the cell is read after the set (LRS) and after the
reset (HRS) at ``read_v``, and one EnduranceRecord is yielded. ``run`` is a generator holding no
list of records, so a 1,000,000-cycle run needs the memory of one record; the read schedule is
computed cycle by cycle as well. The run ends early when the window (LRS / HRS read current) falls
below ``min_window_ratio`` (``stop_when_closed=1``). The whole plan is checked against the safe
operating area before the first pulse. Volts, seconds, amperes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from rramlab.drivers.interface import (PULSE_SHAPES, CrossbarInstrument, RequestChecker, RequestError,
                                      SafeOperatingArea, half_bias_voltages)
from rramlab.protocols.settings import check_settings, setting

__all__ = ["EnduranceSettings", "EndurancePlan", "EnduranceRecord", "plan", "run", "resume", "Settings", "Plan", "RECORDS",
           "read_cycles", "EnduranceSummariser", "DecadeWindow"]

CSV_HEADER = ("cycle", "lrs_a", "hrs_a", "window_ratio")
#: a bound against a typo, not a target (a million cycles is ~2 hours at 2 ms pulses on a bench)
MAX_CYCLES = 100_000_000


@dataclass(frozen=True)
class EnduranceSettings:
    """Endurance settings. Volts and seconds; the reset voltage is negative."""

    set_v: float = setting(4.2, "set pulse amplitude (ISPP's last set pulse)", "V", soa="set", flag="set")
    reset_v: float = setting(-1.6, "reset pulse amplitude, negative (ISPP's last reset pulse)", "V", soa="reset",
                             flag="reset")
    read_v: float = setting(1.0, "read voltage of both states", "V", soa="read")
    pulse_width_s: float = setting(2e-6, "pulse width", "s", soa="width", flag="width")
    shape: str = setting("rect", "pulse shape: rect or tri", choices=PULSE_SHAPES)
    cycles: int = setting(1000, "set/reset cycles", minimum=1, maximum=MAX_CYCLES)
    read_every: str = setting("log", "read both states at log-spaced cycles ('log') or every K cycles (a whole "
                                     "number)")
    reads_per_decade: int = setting(10, "with --read-every log: read cycles per decade", minimum=1, maximum=1000)
    min_window_ratio: float = setting(2.0, "the window (LRS / HRS read current) counts as closed below this",
                                      minimum=1.0, maximum=1e6)
    stop_when_closed: int = setting(1, "1: end the run at the first read whose window is closed; 0: keep cycling",
                                    minimum=0, maximum=1)

    def validate(self, limits: SafeOperatingArea | None = None) -> None:
        """Check every setting against its declaration and ``limits``; SafetyError or RequestError naming it."""
        check_settings(self, limits)
        if self.set_v <= 0:
            raise RequestError(f"--set {self.set_v:g} V must be positive, e.g. 4.2")
        if self.reset_v >= 0:
            raise RequestError(f"--reset {self.reset_v:g} V must be negative, e.g. -1.6")
        read_step(self.read_every)


def read_step(read_every: str) -> int:
    """0 for log-spaced reads, else K (>= 1). RequestError naming the fix otherwise."""
    text = str(read_every).strip().lower()
    if text == "log":
        return 0
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise RequestError(f"--read-every {read_every!r}: give 'log' or a whole number of cycles >= 1, e.g. 100")
    return k


def read_cycles(cycles: int, read_every: str = "log", per_decade: int = 10) -> Iterator[int]:
    """The cycles (1-based, ascending) after which both states are read; the last cycle always.
    Log: round(10 ** (j / per_decade)) for j = 0, 1, ..., without repeats. Lazily, in O(1) memory."""
    k = read_step(read_every)
    last = 0
    if k:
        for c in range(k, cycles + 1, k):
            last = c
            yield c
    else:
        j = 0
        while True:
            c = int(round(10.0 ** (j / per_decade)))
            j += 1
            if c <= last:
                continue
            if c > cycles:
                break
            last = c
            yield c
    if last != cycles:
        yield cycles


@dataclass(frozen=True)
class EnduranceRecord:
    """Both states of one read cycle. Amperes; ``cycle`` is 1-based."""

    cycle: int
    lrs_a: float     # read current after the set pulse
    hrs_a: float     # read current after the reset pulse
    wordline: int
    bitline: int

    @property
    def window_ratio(self) -> float:
        """LRS / HRS read current (inf when HRS reads 0 A)."""
        return self.lrs_a / self.hrs_a if self.hrs_a > 0 else math.inf

    def csv_row(self) -> tuple:
        """The row of ``rramlab endurance --csv``: cycle, lrs_a, hrs_a, window_ratio."""
        return (self.cycle, f"{self.lrs_a:.6e}", f"{self.hrs_a:.6e}", f"{self.window_ratio:.6g}")


@dataclass(frozen=True)
class EndurancePlan:
    """A validated endurance run: settings and the cell."""

    settings: EnduranceSettings
    wordline: int
    bitline: int
    #: the first cycle ``run`` pulses (``resume``: the one after the last stored read cycle)
    start_cycle: int = 1

    @property
    def total_pulses(self) -> int:
        """Pulses in the whole run (two a cycle)."""
        return 2 * self.settings.cycles

    def reads(self) -> int:
        """Read cycles in the whole run (two reads each), counted without a list."""
        s = self.settings
        k = read_step(s.read_every)
        if k:
            return s.cycles // k + (1 if s.cycles % k else 0)
        return sum(1 for _ in read_cycles(s.cycles, s.read_every, s.reads_per_decade))  # ~10 a decade


def plan(settings: EnduranceSettings, cell=(0, 0), checker: RequestChecker | None = None) -> EndurancePlan:
    """Validate the settings and the cell against ``checker`` (an instrument or a RequestChecker from a
    bench file); touches no instrument. Raises SafetyError, GeometryError or RequestError."""
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    wordline, bitline = checker.geometry.check_cell(*cell)
    checker.check_read_voltage(settings.read_v)
    checker.check_cells([(wordline, bitline)])
    for v in (settings.set_v, settings.reset_v):
        wl, bl = half_bias_voltages(checker.geometry, wordline, bitline, v)
        checker.check_pulse(wl, bl, settings.pulse_width_s, settings.shape)
    return EndurancePlan(settings, wordline, bitline)


def run(instrument: CrossbarInstrument, endurance_plan: EndurancePlan,
        should_stop: Callable[[], bool] | None = None) -> Iterator[EnduranceRecord]:
    """Cycle the cell and yield an EnduranceRecord at every read cycle. ``should_stop`` is polled
    between cycles. The caller owns the instrument (a context manager returns it to 0 V)."""
    p, s = endurance_plan, endurance_plan.settings
    w, b = p.wordline, p.bitline
    schedule = read_cycles(s.cycles, s.read_every, s.reads_per_decade)
    next_read = next(schedule)
    while next_read < p.start_cycle:  # resumed: the read cycles before it are in the store already
        next_read = next(schedule, s.cycles + 1)
    for cycle in range(p.start_cycle, s.cycles + 1):
        if should_stop is not None and should_stop():
            return
        instrument.pulse_cell(w, b, s.set_v, s.pulse_width_s, s.shape)
        if cycle != next_read:
            instrument.pulse_cell(w, b, s.reset_v, s.pulse_width_s, s.shape)
            continue
        lrs = instrument.read_cell(w, b, s.read_v)
        instrument.pulse_cell(w, b, s.reset_v, s.pulse_width_s, s.shape)
        hrs = instrument.read_cell(w, b, s.read_v)
        record = EnduranceRecord(cycle, float(lrs), float(hrs), w, b)
        yield record
        if s.stop_when_closed and record.window_ratio < s.min_window_ratio:
            return
        next_read = next(schedule, s.cycles + 1)


def resume(endurance_plan: EndurancePlan, records) -> EndurancePlan:
    """The plan that continues after ``records`` (the stored EnduranceRecords, in order): from the
    cycle after the last read cycle, so the cycle count goes on (the cycles pulsed between that read
    and a crash are pulsed again: the store cannot know them). A run that ended on a closed window
    (``stop_when_closed``) has nothing left. RequestError if the records are not this plan's."""
    taken = [r for r in records if isinstance(r, EnduranceRecord)]
    if not taken:
        return endurance_plan
    last, s = taken[-1], endurance_plan.settings
    if (last.wordline, last.bitline) != (endurance_plan.wordline, endurance_plan.bitline) or last.cycle > s.cycles:
        raise RequestError(f"the run's last record (cycle {last.cycle}, cell {last.wordline},{last.bitline}) is not "
                           "of its plan: it cannot be resumed")
    if s.stop_when_closed and last.window_ratio < s.min_window_ratio:
        return replace(endurance_plan, start_cycle=s.cycles + 1)
    return replace(endurance_plan, start_cycle=last.cycle + 1)


Settings = EnduranceSettings
Plan = EndurancePlan
#: the record classes ``run`` yields
RECORDS = (EnduranceRecord,)


# ----- summary, as the records stream in -----

@dataclass(frozen=True)
class DecadeWindow:
    """Mean LRS and HRS read currents (A) and window ratio over the reads of cycles [first, last]."""

    first: int
    last: int
    reads: int
    lrs_a: float
    hrs_a: float
    min_ratio: float

    @property
    def ratio(self) -> float:
        """Mean LRS over mean HRS read current."""
        return self.lrs_a / self.hrs_a if self.hrs_a > 0 else math.inf


class EnduranceSummariser:
    """Window per decade of cycles (1-9, 10-99, ...) and the first cycle whose window closed below
    ``min_window_ratio``, in memory independent of the run's length."""

    def __init__(self, min_window_ratio: float):
        self.min_window_ratio = min_window_ratio
        self.decades: dict[int, list] = {}   # decade -> [reads, sum lrs, sum hrs, min ratio]
        self.closed_at: int | None = None
        self.last: EnduranceRecord | None = None

    def add(self, r: EnduranceRecord) -> None:
        """Take one record into its decade."""
        d = int(math.floor(math.log10(r.cycle)))
        acc = self.decades.setdefault(d, [0, 0.0, 0.0, math.inf])
        acc[0] += 1
        acc[1] += r.lrs_a
        acc[2] += r.hrs_a
        acc[3] = min(acc[3], r.window_ratio)
        if self.closed_at is None and r.window_ratio < self.min_window_ratio:
            self.closed_at = r.cycle
        self.last = r

    def windows(self) -> list[DecadeWindow]:
        """One DecadeWindow per decade of cycles that had reads, in order."""
        return [DecadeWindow(10 ** d, 10 ** (d + 1) - 1, n, lrs / n, hrs / n, lo)
                for d, (n, lrs, hrs, lo) in sorted(self.decades.items())]
