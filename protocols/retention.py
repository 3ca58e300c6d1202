"""Retention: program cells to levels (ISPVA), then read them at log-spaced times.

The cells are programmed one by one with ``ispva.program_cell`` (its IspvaPulse and IspvaResult
records are yielded as they come); the retention clock starts when the last cell is done. Then every
cell is read at each scheduled time (``schedule``: log- or linearly spaced from ``first_read_s`` to
``duration_s``), one RetentionRecord per cell and read.

Between reads the run waits with every output at 0 V (``instrument.reset_outputs()`` before a wait
on a bench). How it waits is the caller's ``wait(seconds)``: on a bench ``time.sleep`` in short
slices (a Ctrl-C stops it at once, the instrument's context manager leaves the bench safe and every
record already yielded is kept); on the twin ``VirtualArray.advance_time``, simulated time, so a
ten-year run takes seconds. Volts, seconds, siemens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from rramlab.drivers.interface import CrossbarInstrument, RequestChecker, RequestError
from rramlab.protocols import ispva
from rramlab.protocols.settings import check_settings, setting

__all__ = ["RetentionSettings", "RetentionPlan", "RetentionRecord", "plan", "run", "resume", "Settings", "Plan", "RECORDS",
           "schedule", "parse_duration", "parse_reads", "summarise", "LevelDrift"]

CSV_HEADER = ("time_s", "wordline", "bitline", "target_s", "conductance_s")
#: ten years and a bit: a bound against a typo, not a target
MAX_DURATION_S = 20 * 365.25 * 86400
#: a bench wait sleeps in slices this long (s), polling ``should_stop`` between them
WAIT_SLICE_S = 0.2


@dataclass(frozen=True)
class RetentionSettings:
    """Retention settings: seconds, volts, siemens. Programming uses ISPVA's settings (``program``)."""

    duration_s: float = setting(7200.0, "time of the last read after programming", "s", minimum=1e-3,
                                maximum=MAX_DURATION_S, flag="duration-seconds")
    reads: int = setting(40, "reads of every cell", minimum=1, maximum=100_000)
    spacing: str = setting("log", "read times: log (log-spaced) or lin (evenly spaced)", choices=("log", "lin"))
    first_read_s: float = setting(1.0, "time of the first read after programming (log spacing)", "s",
                                  minimum=0.0, maximum=MAX_DURATION_S, flag="first-read")
    read_v: float = setting(1.0, "read voltage", "V", soa="read")
    tolerance_s: float = setting(2e-9, "a cell has left its level when |G - target| exceeds this (ISPVA's acceptance band)", "S",
                                 minimum=0.0, maximum=40e-9, exclusive_minimum=True, flag="retention-tolerance")
    program: ispva.IspvaSettings = field(default_factory=ispva.IspvaSettings)

    def validate(self, limits=None) -> None:
        """Check every setting (and ISPVA's) against its declaration and ``limits``."""
        check_settings(self, limits)
        self.program.validate(limits)
        if self.spacing == "log" and not 0 < self.first_read_s <= self.duration_s:
            raise RequestError(f"--first-read {self.first_read_s:g} s must be above 0 and at most the duration "
                               f"({self.duration_s:g} s) for log-spaced reads")


def parse_duration(text: str) -> float:
    """'2h', '30min', '90s', '10y', '3d', '1.5' (seconds) -> seconds."""
    units = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
             "y": 365.25 * 86400.0}
    t = str(text).strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if t.endswith(unit):
            number = t[: -len(unit)]
            break
    else:
        unit, number = "s", t
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise RequestError(f"--duration {text!r}: give a number and a unit, e.g. 2h, 30min, 90s, 10y") from None
    if not (math.isfinite(value) and value > 0):
        raise RequestError(f"--duration {text!r} must be a positive time, e.g. 2h")
    return value


def parse_reads(text: str) -> tuple[str, int]:
    """'log:40' or 'lin:10' or '40' (log) -> (spacing, count)."""
    spacing, _, count = str(text).strip().lower().rpartition(":")
    spacing = spacing or "log"
    try:
        n = int(count)
    except ValueError:
        n = 0
    if spacing not in ("log", "lin") or n < 1:
        raise RequestError(f"--reads {text!r}: give log:N or lin:N with N >= 1 reads, e.g. log:40")
    return spacing, n


def schedule(settings: RetentionSettings) -> np.ndarray:
    """Read times (s after programming), ascending: log-spaced from first_read_s to duration_s, or
    evenly spaced up to duration_s."""
    s = settings
    if s.reads == 1:
        return np.array([s.duration_s])
    if s.spacing == "log":
        return np.geomspace(s.first_read_s, s.duration_s, s.reads)
    return np.linspace(s.duration_s / s.reads, s.duration_s, s.reads)


@dataclass(frozen=True)
class RetentionRecord:
    """One read of one cell ``time_s`` seconds after programming. Siemens."""

    time_s: float
    wordline: int
    bitline: int
    target_s: float
    conductance_s: float

    def csv_row(self) -> tuple:
        """The row of ``rramlab retention --csv``: time_s, wordline, bitline, target_s, conductance_s."""
        return (f"{self.time_s:.6g}", self.wordline, self.bitline, f"{self.target_s:.6g}",
                f"{self.conductance_s:.6e}")


@dataclass(frozen=True)
class RetentionPlan:
    """A validated retention run: settings, cells, one target each (S) and the read times (s)."""

    settings: RetentionSettings
    cells: tuple[tuple[int, int], ...]
    targets_s: tuple[float, ...]
    times_s: tuple[float, ...]
    #: where ``run`` starts (``resume``): programming as ``ispva.programming_position`` says, then
    #: the read times from ``times_s[start_read]`` on; ``elapsed_s``: the seconds since programming
    #: ended when the run resumes on a bench (the schedule keeps its clock; a read time already past
    #: is not taken), None otherwise
    start_cell: int = 0
    start_pulses: int = 0
    start_last_set_v: float | None = None
    start_read: int = 0
    elapsed_s: float | None = None


def plan(settings: RetentionSettings, cells: Sequence[tuple[int, int]], targets_s: Sequence[float],
         checker: RequestChecker | None = None) -> RetentionPlan:
    """Validate settings, cells and targets (one target per cell) before any instrument command."""
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    if len(cells) != len(targets_s) or not cells:
        raise RequestError(f"retention needs one target per cell (got {len(cells)} cells, {len(targets_s)} targets)")
    ispva.plan(settings.program, list(cells), list(targets_s), checker)
    checker.check_read_voltage(settings.read_v)
    return RetentionPlan(settings, tuple(cells), tuple(float(t) for t in targets_s),
                         tuple(float(t) for t in schedule(settings)))


def sleep_wait(seconds: float, should_stop: Callable[[], bool] | None = None) -> bool:
    """Wait ``seconds`` of wall time in short slices; False if ``should_stop`` said stop."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return True
        if should_stop is not None and should_stop():
            return False
        time.sleep(min(WAIT_SLICE_S, left))


def run(instrument: CrossbarInstrument, retention_plan: RetentionPlan,
        should_stop: Callable[[], bool] | None = None,
        wait: Callable[[float], object] | None = None) -> Iterator:
    """Program, then read at the scheduled times; yields IspvaPulse, IspvaResult and RetentionRecord.

    ``wait(seconds)``: how time passes between reads (default: ``advance_time`` on an instrument that
    has it, the twin's simulated clock; else a wall-clock sleep with outputs at 0 V)."""
    p, s = retention_plan, retention_plan.settings
    for k, (cell, target) in enumerate(zip(p.cells, p.targets_s)):
        if k < p.start_cell:  # resumed: programmed before
            continue
        again = k == p.start_cell
        for r in ispva.program_cell(instrument, s.program, cell, target, should_stop,
                                    p.start_pulses if again else 0, p.start_last_set_v if again else None):
            yield r
        if should_stop is not None and should_stop():
            return
    simulated = hasattr(instrument, "advance_time")
    now = 0.0 if p.start_read == 0 or p.start_cell < len(p.cells) else p.times_s[p.start_read - 1]
    if p.elapsed_s is not None and not simulated and p.start_cell >= len(p.cells):
        now = p.elapsed_s  # a bench resumed: the cells have rested this long since programming
    for t in p.times_s[p.start_read:]:
        if t < now:  # a read time that passed while the run was not running: not taken
            continue
        dt = t - now
        if dt > 0:
            if wait is not None:
                wait(dt)
            elif simulated:
                instrument.advance_time(dt)
            else:
                instrument.reset_outputs()  # every output at 0 V, matrix open, while the cells rest
                if not sleep_wait(dt, should_stop):
                    return
            now = t
        if should_stop is not None and should_stop():
            return
        currents = instrument.read(list(p.cells), s.read_v)
        for (w, b), target, i in zip(p.cells, p.targets_s, currents):
            yield RetentionRecord(float(t), w, b, target, float(i) / s.read_v)


def resume(retention_plan: RetentionPlan, records, elapsed_s: float | None = None) -> RetentionPlan:
    """The plan that continues after ``records`` (the stored pulses, results and reads, in order):
    programming goes on with the first cell without a result (then every read time is taken, the
    clock starting when programming ends); once programmed, the reads go on with the first read
    time after the last stored one. ``elapsed_s``: on a bench, the seconds since programming ended
    (the run store's time of the last result): read times already past are not taken. A read time
    whose cells were only partly stored when the run died keeps those, and is not read again."""
    from dataclasses import replace

    p = retention_plan
    done, pulses, last_set_v = ispva.programming_position(p.cells, p.targets_s, records)
    reads = [r for r in records if isinstance(r, RetentionRecord)]
    if reads and done < len(p.cells):
        raise RequestError("the run holds retention reads before every cell was programmed: it cannot be resumed")
    start_read = 0
    if reads:
        last = reads[-1].time_s
        start_read = next((i for i, t in enumerate(p.times_s) if t > last * (1 + 1e-9)), len(p.times_s))
    return replace(p, start_cell=done, start_pulses=pulses, start_last_set_v=last_set_v, start_read=start_read,
                   elapsed_s=elapsed_s if done == len(p.cells) else None)


Settings = RetentionSettings
Plan = RetentionPlan
#: the record classes ``run`` yields (ISPVA's while programming, then the reads)
RECORDS = (ispva.IspvaPulse, ispva.IspvaResult, RetentionRecord)


# ----- summary -----

@dataclass(frozen=True)
class LevelDrift:
    """A level's retention: mean conductance at the first and last read (S), drift per decade of
    time (S per decade, least squares of G against log10 t over every read of its cells), and the
    earliest time (s) a cell of it left +-tolerance of its target (None: none left)."""

    target_s: float
    cells: int
    first_s: float
    last_s: float
    drift_per_decade_s: float
    left_at_s: float | None


class RetentionSummariser:
    """Per-level sums for the drift fit and the time each cell left its band, in memory of the cells."""

    def __init__(self, tolerance_s: float):
        self.tolerance_s = tolerance_s
        self.left: dict[tuple[int, int], float] = {}
        self.levels: dict[float, dict] = {}

    def add(self, r) -> None:
        """Take one record (anything but a RetentionRecord is ignored)."""
        if not isinstance(r, RetentionRecord):
            return
        cell = (r.wordline, r.bitline)
        if cell not in self.left and abs(r.conductance_s - r.target_s) > self.tolerance_s:
            self.left[cell] = r.time_s
        acc = self.levels.setdefault(r.target_s, {"n": 0, "x": 0.0, "y": 0.0, "xx": 0.0, "xy": 0.0, "cells": set(),
                                                  "first_t": r.time_s, "first": [], "last_t": r.time_s, "last": []})
        x = math.log10(r.time_s) if r.time_s > 0 else 0.0
        acc["n"] += 1
        acc["x"] += x
        acc["y"] += r.conductance_s
        acc["xx"] += x * x
        acc["xy"] += x * r.conductance_s
        acc["cells"].add(cell)
        if r.time_s == acc["first_t"]:
            acc["first"].append(r.conductance_s)
        if r.time_s > acc["last_t"]:
            acc["last_t"], acc["last"] = r.time_s, []
        if r.time_s == acc["last_t"]:
            acc["last"].append(r.conductance_s)

    def levels_summary(self) -> list[LevelDrift]:
        """One LevelDrift per target level, ascending."""
        out = []
        for target, a in sorted(self.levels.items()):
            n = a["n"]
            den = n * a["xx"] - a["x"] ** 2
            slope = (n * a["xy"] - a["x"] * a["y"]) / den if den > 0 else 0.0
            left = [self.left[c] for c in a["cells"] if c in self.left]
            out.append(LevelDrift(target, len(a["cells"]), float(np.mean(a["first"])), float(np.mean(a["last"])),
                                  float(slope), min(left) if left else None))
        return out


def summarise(records, tolerance_s: float = 2e-9) -> list[LevelDrift]:
    """LevelDrift of every level in ``records``."""
    s = RetentionSummariser(tolerance_s)
    for r in records:
        s.add(r)
    return s.levels_summary()
