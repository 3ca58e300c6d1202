"""Disturb: does reading a cell, or pulsing it, move it or its half-selected neighbours?

Read disturb: ``reads`` reads of one cell at ``read_v``; the read current is recorded at log-spaced
counts (0: the read before any stress, then 1, 2, ... 10, 13, ... and the last). Every read is
carried out; only the recorded ones are yielded, so a long run needs the memory of one record.

Half-select disturb (``neighbours=1``): then ``pulses`` half-bias pulses of ``pulse_v`` on the cell
(+V/2 on its wordline, -V/2 on its bitline, every other line at 0 V, so every other cell of its
two lines sees V/2), the cell and its adjacent half-selected neighbours (the cells next to it on its
wordline and bitline) read at log-spaced pulse counts.

The twin models read and half-select disturb already (sim/virtual_array.py): a read or pulse that
takes a switch past its threshold flips it; nothing below a threshold moves. With the default
1 V reads and 2.1 V half-selects, far below the 3.26 V lowest turn-on and -0.99 V highest
turn-off threshold, the twin's change is exactly 0, which this protocol measures, not assumes.
Volts, seconds, amperes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from rramlab.drivers.interface import (PULSE_SHAPES, CrossbarInstrument, RequestChecker, RequestError,
                                      half_bias_voltages)
from rramlab.protocols.endurance import read_cycles
from rramlab.protocols.settings import check_settings, setting

__all__ = ["DisturbSettings", "DisturbPlan", "DisturbRecord", "plan", "run", "resume", "Settings", "Plan", "RECORDS",
           "neighbours_of", "DisturbSummariser"]

CSV_HEADER = ("phase", "count", "wordline", "bitline", "role", "read_a")
MAX_COUNT = 100_000_000


@dataclass(frozen=True)
class DisturbSettings:
    """Disturb settings. Volts and seconds."""

    reads: int = setting(10_000, "reads of the cell at the read voltage", minimum=1, maximum=MAX_COUNT)
    read_v: float = setting(1.0, "read voltage", "V", soa="read")
    neighbours: int = setting(0, "1: then half-bias pulses on the cell, its half-selected neighbours read",
                              minimum=0, maximum=1)
    pulses: int = setting(10_000, "half-bias pulses on the cell (with --neighbours)", minimum=1, maximum=MAX_COUNT)
    pulse_v: float = setting(4.2, "half-bias pulse: the cell sees this, its half-selected neighbours half of it",
                             "V", flag="pulse-v")
    pulse_width_s: float = setting(2e-6, "pulse width", "s", soa="width", flag="width")
    shape: str = setting("rect", "pulse shape: rect or tri", choices=PULSE_SHAPES)
    reads_per_decade: int = setting(10, "recorded counts per decade", minimum=1, maximum=1000)

    def validate(self, limits=None) -> None:
        """Check every setting against its declaration and ``limits``."""
        check_settings(self, limits)
        if self.pulse_v == 0:
            raise RequestError("--pulse-v 0 V pulses nothing: give e.g. 4.2 (set side) or -1.6 (reset side)")


@dataclass(frozen=True)
class DisturbRecord:
    """One read during a disturb run: ``count`` reads (phase "read") or pulses (phase "half-select")
    so far, of the cell (role "cell") or of a half-selected neighbour (role "neighbour"). Amperes."""

    phase: str
    count: int
    wordline: int
    bitline: int
    role: str
    read_a: float

    def csv_row(self) -> tuple:
        """The row of ``rramlab disturb --csv``: phase, count, wordline, bitline, role, read_a."""
        return (self.phase, self.count, self.wordline, self.bitline, self.role, f"{self.read_a:.6e}")


@dataclass(frozen=True)
class DisturbPlan:
    """A validated disturb run: settings, the cell and the half-selected neighbours read."""

    settings: DisturbSettings
    wordline: int
    bitline: int
    neighbours: tuple[tuple[int, int], ...]
    #: where ``run`` starts (``resume``): the phase ("read" or "half-select") and its next count
    #: (0: the phase's first record, the reads before any disturb)
    start_at: tuple[str, int] = ("read", 0)


def neighbours_of(geometry, wordline: int, bitline: int) -> tuple[tuple[int, int], ...]:
    """The half-selected cells next to (wordline, bitline): the adjacent cells on its wordline and
    on its bitline that the array has."""
    W, B = geometry.shape
    out = [(wordline, b) for b in (bitline - 1, bitline + 1) if 0 <= b < B]
    out += [(w, bitline) for w in (wordline - 1, wordline + 1) if 0 <= w < W]
    return tuple(out)


def plan(settings: DisturbSettings, cell=(0, 0), checker: RequestChecker | None = None) -> DisturbPlan:
    """Validate settings and cell against ``checker``; touches no instrument."""
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    wordline, bitline = checker.geometry.check_cell(*cell)
    checker.check_read_voltage(settings.read_v)
    neighbours = neighbours_of(checker.geometry, wordline, bitline) if settings.neighbours else ()
    checker.check_cells([(wordline, bitline), *neighbours])
    if settings.neighbours:
        if not neighbours:
            raise RequestError("--neighbours needs an array: a lone device has no half-selected neighbour (add --cell)")
        wl, bl = half_bias_voltages(checker.geometry, wordline, bitline, settings.pulse_v)
        checker.check_pulse(wl, bl, settings.pulse_width_s, settings.shape)
    return DisturbPlan(settings, wordline, bitline, neighbours)


def run(instrument: CrossbarInstrument, disturb_plan: DisturbPlan,
        should_stop: Callable[[], bool] | None = None) -> Iterator[DisturbRecord]:
    """Carry out the plan; yield DisturbRecords at log-spaced counts (and count 0)."""
    p, s = disturb_plan, disturb_plan.settings
    w, b = p.wordline, p.bitline
    phase, start = p.start_at
    if phase == "read":
        if start == 0:
            yield DisturbRecord("read", 0, w, b, "cell", float(instrument.read_cell(w, b, s.read_v)))
        schedule = read_cycles(s.reads, "log", s.reads_per_decade)
        next_record = next(schedule)
        while next_record < start:  # resumed: these are in the store already
            next_record = next(schedule, s.reads + 1)
        for count in range(max(start, 1), s.reads + 1):
            if should_stop is not None and should_stop():
                return
            current = instrument.read_cell(w, b, s.read_v)
            if count == next_record:
                yield DisturbRecord("read", count, w, b, "cell", float(current))
                next_record = next(schedule, s.reads + 1)
        start = 0
    if not s.neighbours:
        return
    watched = [(w, b), *p.neighbours]

    def reads_at(count):
        currents = instrument.read(watched, s.read_v)
        for (cw, cb), i in zip(watched, currents):
            yield DisturbRecord("half-select", count, cw, cb, "cell" if (cw, cb) == (w, b) else "neighbour", float(i))

    if start == 0:
        yield from reads_at(0)
    schedule = read_cycles(s.pulses, "log", s.reads_per_decade)
    next_record = next(schedule)
    while next_record < start:
        next_record = next(schedule, s.pulses + 1)
    for count in range(max(start, 1), s.pulses + 1):
        if should_stop is not None and should_stop():
            return
        instrument.pulse_cell(w, b, s.pulse_v, s.pulse_width_s, s.shape)
        if count == next_record:
            yield from reads_at(count)
            next_record = next(schedule, s.pulses + 1)


def resume(disturb_plan: DisturbPlan, records) -> DisturbPlan:
    """The plan that continues after ``records`` (the stored DisturbRecords, in order): with the
    count after the last recorded one, in its phase, so the counts go on (the reads or pulses
    between that record and a crash happened but are not counted: the store cannot know them; a
    half-select read of the neighbours cut short by a crash keeps the cells stored before it).
    RequestError if the records are not this plan's."""
    taken = [r for r in records if isinstance(r, DisturbRecord)]
    if not taken:
        return disturb_plan
    last, s = taken[-1], disturb_plan.settings
    limit = s.reads if last.phase == "read" else s.pulses
    if last.phase not in ("read", "half-select") or last.count > limit or \
            (last.phase == "half-select" and not s.neighbours):
        raise RequestError(f"the run's last record ({last.phase} {last.count}) is not of its plan: it cannot be "
                           "resumed")
    if last.phase == "read" and last.count == s.reads:
        return replace(disturb_plan, start_at=("half-select", 0) if s.neighbours else ("read", s.reads + 1))
    return replace(disturb_plan, start_at=(last.phase, last.count + 1))


Settings = DisturbSettings
Plan = DisturbPlan
#: the record classes ``run`` yields
RECORDS = (DisturbRecord,)


class DisturbSummariser:
    """Conductance change per decade of counts, per phase and cell: G at the last recorded count of
    each decade minus G at the last recorded count before it (count 0 first). Siemens."""

    def __init__(self, read_v: float):
        self.read_v = read_v
        self.series: dict[tuple[str, int, int], dict] = {}

    def add(self, r: DisturbRecord) -> None:
        """Take one record into its phase and cell's series."""
        key = (r.phase, r.wordline, r.bitline)
        acc = self.series.setdefault(key, {"role": r.role, "start": r.read_a / self.read_v, "decades": {}})
        if r.count > 0:
            acc["decades"][int(math.floor(math.log10(r.count)))] = r.read_a / self.read_v
        acc["last"] = r.read_a / self.read_v

    def changes(self):
        """[(phase, (wl, bl), role, G at count 0, [(decade, change S), ...])] in first-seen order."""
        out = []
        for (phase, w, b), acc in self.series.items():
            prev, steps = acc["start"], []
            for d, g in sorted(acc["decades"].items()):
                steps.append((d, g - prev))
                prev = g
            out.append((phase, (w, b), acc["role"], acc["start"], steps))
        return out
