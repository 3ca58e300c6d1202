"""ISPP: incremental step pulse programming, written only against the CrossbarInstrument seam.

One cycle is a set ramp (rising positive pulses) then a reset ramp (falling negative pulses), each
pulse followed by a read. ``run_ispp`` yields one IsppRecord per pulse as it happens, so a caller can
plot, store or stop at any point. The whole plan is checked against the instrument's safe
operating area before the first pulse: a bad setting never reaches the instrument half-way.

Defaults are the paper's simulation values: set 3.0 -> 4.2 V in 25 mV, reset -1.0 -> -1.6 V in
50 mV, read at 1 V, 2 us pulses. (The hardware run used set up to 4.3 V and reset down to -2.5 V.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np

from rramlab.drivers.interface import CrossbarInstrument, RequestError, half_bias_voltages

CSV_HEADER = ("cycle", "phase", "pulse_v", "read_a")


@dataclass(frozen=True)
class IsppSettings:
    """ISPP settings. Volts and seconds; the reset voltages are negative."""

    set_start_v: float = 3.0
    set_stop_v: float = 4.2
    set_step_v: float = 0.025
    reset_start_v: float = -1.0
    reset_stop_v: float = -1.6
    reset_step_v: float = 0.05
    read_v: float = 1.0
    pulse_width_s: float = 2e-6
    cycles: int = 3
    shape: str = "rect"

    def set_voltages(self) -> np.ndarray:
        return voltage_ramp(self.set_start_v, self.set_stop_v, self.set_step_v, "set")

    def reset_voltages(self) -> np.ndarray:
        return voltage_ramp(self.reset_start_v, self.reset_stop_v, self.reset_step_v, "reset")

    def validate(self) -> None:
        if isinstance(self.cycles, bool) or not isinstance(self.cycles, (int, np.integer)) or self.cycles < 1:
            raise RequestError(f"cycles must be a whole number >= 1, got {self.cycles!r}")
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
    n = int(round(abs(span) / step))
    if abs(abs(span) - n * step) > 1e-9:
        raise RequestError(
            f"{what} ramp {start} -> {stop} V is not a whole number of {step} V steps: adjust the stop voltage")
    direction = 1.0 if span >= 0 else -1.0
    return np.round(start + direction * step * np.arange(n + 1), 6)


def plan_pulses(settings: IsppSettings):
    """The pulses of one cycle, in order: [(phase, step, voltage), ...]."""
    return ([("set", i, float(v)) for i, v in enumerate(settings.set_voltages())]
            + [("reset", i, float(v)) for i, v in enumerate(settings.reset_voltages())])


def run_ispp(instrument: CrossbarInstrument, settings: IsppSettings = IsppSettings(), cell=(0, 0),
             should_stop: Callable[[], bool] | None = None) -> Iterator[IsppRecord]:
    """Run ISPP on one cell and yield an IsppRecord after every pulse.

    The whole plan is validated (settings, cell, every pulse, the read voltage) before the first
    pulse. ``should_stop`` is polled between pulses; when it returns True the run ends cleanly.
    The caller owns the instrument (use it as a context manager so outputs return to 0 V).
    """
    settings.validate()
    wordline, bitline = instrument.geometry.check_cell(*cell)
    plan = plan_pulses(settings)
    instrument.check_read_voltage(settings.read_v)
    for _, _, v in plan:
        wl, bl = half_bias_voltages(instrument.geometry, wordline, bitline, v)
        instrument.check_pulse(wl, bl, settings.pulse_width_s, settings.shape)

    for cycle in range(1, settings.cycles + 1):
        for phase, step, v in plan:
            if should_stop is not None and should_stop():
                return
            instrument.pulse_cell(wordline, bitline, v, settings.pulse_width_s, settings.shape)
            current = instrument.read_cell(wordline, bitline, settings.read_v)
            yield IsppRecord(cycle, phase, step, v, current, wordline, bitline)


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
    cycle: int
    min_read_a: float
    max_read_a: float
    set_levels: int
    reset_drop_3: float      # fraction lost after the first 3 reset pulses
    final_reset_read_a: float


def summarise_ispp(records) -> list[CycleSummary]:
    """One CycleSummary per cycle in ``records`` (IsppRecord)."""
    out = []
    for cycle in sorted({r.cycle for r in records}):
        rs = [r for r in records if r.cycle == cycle]
        sets = [r.read_a for r in rs if r.phase == "set"]
        resets = [r.read_a for r in rs if r.phase == "reset"]
        reads = [r.read_a for r in rs]
        out.append(CycleSummary(
            cycle=cycle,
            min_read_a=float(min(reads)),
            max_read_a=float(max(reads)),
            set_levels=len(distinct_levels(sets)),
            reset_drop_3=reset_drop_fraction(sets[-1], resets) if sets and resets else float("nan"),
            final_reset_read_a=float(resets[-1]) if resets else float("nan"),
        ))
    return out


def settings_dict(settings: IsppSettings) -> dict:
    return asdict(settings)
