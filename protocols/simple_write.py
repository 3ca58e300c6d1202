"""Conductance targets into the array by a simple write: a stand-in for the transfer protocol.

``program_targets(instrument, targets_s, settings)`` writes a (wordlines x bitlines) map of target
conductances through the seam, cell by cell, with half-bias pulses:

1. Every cell of the map is read; cells above ``hrs_max_s`` are reset (one reset pulse), so the map
   starts from HRS whatever the chip held before.
2. A cell with a target gets one set pulse whose amplitude is the one that reaches its level: the
   HT-RRAM's switches turn on at thresholds 0.1 V apart, one 10 nS level each, so level k (k * 10 nS
   at 3 bits) takes ``first_level_v + (k - 1) * level_step_v`` (defaults 3.3 V + 0.1 V per level,
   between the twin's thresholds 3.2625 + 0.1 k V). If the read after it is still more than
   ``tolerance_s`` below the target, the amplitude is raised by ``retry_step_v`` and the cell pulsed
   again, at most ``max_set_pulses`` times.
3. ``programming_done`` is called for each cell with a target (the twin adds its programming error
   there, as the paper does when a transfer completes), and every cell is read back.

No verify-and-reset loop: an overshoot is recorded, not corrected. The write-verify transfer protocol
(ISPVA) replaces this function; it yields the same kind of record per cell. Units: S, V, A, s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from rramlab.drivers.interface import CrossbarInstrument, RequestChecker, RequestError, half_bias_voltages
from rramlab.protocols.settings import check_settings, setting


@dataclass(frozen=True)
class SimpleWriteSettings:
    """Reset, then one set pulse of the target level's amplitude (raised if it falls short)."""

    first_level_v: float = setting(3.3, "set pulse for the first level (10 nS)", "V", soa="set")
    level_step_v: float = setting(0.1, "set pulse increase per level", "V", minimum=0.0, maximum=1.0)
    retry_step_v: float = setting(0.025, "increase of the set pulse when the cell fell short", "V",
                                  minimum=0.0, maximum=0.5, exclusive_minimum=True)
    max_set_pulses: int = setting(4, "set pulses per cell at most", minimum=1, maximum=100)
    reset_v: float = setting(-1.6, "reset pulse (cell voltage)", "V", soa="reset")
    read_v: float = setting(1.0, "read voltage", "V", soa="read")
    pulse_width_s: float = setting(2e-6, "pulse width", "s", soa="width", flag="write_width")
    tolerance_s: float = setting(5e-9, "a read this far below the target gets another set pulse", "S",
                                 minimum=0.0, maximum=1e-6, flag="write_tolerance")
    hrs_max_s: float = setting(5e-9, "a cell reading above this is reset before it is written", "S",
                               minimum=0.0, maximum=1e-6)
    level_s: float = setting(10e-9, "conductance of one level", "S", minimum=0.0, maximum=1e-6,
                             exclusive_minimum=True)

    def validate(self, limits=None) -> None:
        check_settings(self, limits)


@dataclass(frozen=True)
class CellWritten:
    """One cell after the write. Siemens, volts."""

    wordline: int
    bitline: int
    target_s: float       # 0.0: no target (left in HRS)
    achieved_s: float     # read current / read voltage after programming_done
    set_pulses: int
    last_set_v: float     # nan if no set pulse


def set_amplitude(target_s: float, s: SimpleWriteSettings) -> float:
    """The set pulse (V) expected to bring a cell from HRS to ``target_s``."""
    level = max(1, int(round(target_s / s.level_s)))
    return s.first_level_v + (level - 1) * s.level_step_v


def check_targets(targets_s, checker: RequestChecker, s: SimpleWriteSettings) -> np.ndarray:
    """Validate a target map (wordlines x bitlines, S, 0 = no target) and every pulse it needs."""
    t = np.asarray(targets_s, dtype=float)
    g = checker.geometry
    if t.ndim != 2 or t.shape[0] > g.wordlines or t.shape[1] > g.bitlines:
        raise RequestError(f"target map has shape {t.shape}; it must fit the {g.wordlines} x {g.bitlines} array")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise RequestError("target conductances must be finite and >= 0 S (0 means no target)")
    s.validate(checker.limits)
    checker.check_pulse(*half_bias_voltages(g, 0, 0, s.reset_v), s.pulse_width_s)
    top = float(t.max()) if t.size else 0.0
    if top > 0:
        # retries stop below the set limit, so the first pulse of the highest level is the one to check
        checker.check_pulse(*half_bias_voltages(g, 0, 0, set_amplitude(top, s)), s.pulse_width_s)
    checker.check_read_voltage(s.read_v)
    return t


def program_targets(instrument: CrossbarInstrument, targets_s, settings: SimpleWriteSettings = SimpleWriteSettings(),
                    should_stop: Callable[[], bool] | None = None) -> Iterator[CellWritten]:
    """Write ``targets_s`` (wordlines x bitlines, S; 0.0 = leave in HRS) into the cells
    (0..rows-1, 0..cols-1) and yield a CellWritten per cell. Checked in full before the first pulse."""
    s = settings
    t = check_targets(targets_s, instrument, s)
    cells = [(w, b) for w in range(t.shape[0]) for b in range(t.shape[1])]
    before = instrument.read(cells, s.read_v) / s.read_v
    v_max = instrument.limits.max_set_voltage
    written = []
    pulses = {}
    for (w, b), g0 in zip(cells, before):
        if should_stop is not None and should_stop():
            break
        if g0 > s.hrs_max_s:
            instrument.pulse_cell(w, b, s.reset_v, s.pulse_width_s)
        target = t[w, b]
        n, v = 0, float("nan")
        if target > 0:
            v = set_amplitude(target, s)
            while True:
                instrument.pulse_cell(w, b, v, s.pulse_width_s)
                n += 1
                g = instrument.read_cell(w, b, s.read_v) / s.read_v
                if g >= target - s.tolerance_s or n >= s.max_set_pulses or v + s.retry_step_v > v_max:
                    break
                v += s.retry_step_v
            instrument.programming_done([(w, b)])
        pulses[(w, b)] = (n, v)
        written.append((w, b))
    if not written:
        return
    after = instrument.read(written, s.read_v) / s.read_v
    for (w, b), g in zip(written, after):
        n, v = pulses[(w, b)]
        yield CellWritten(w, b, float(t[w, b]), float(g), n, v)


# ----- summaries -----

def transfer_errors(records) -> dict:
    """RMSE, MAE (S) and the fraction within +-2 nS of the cells that had a target, as the paper
    reports its transfers; also the count."""
    err = np.array([r.achieved_s - r.target_s for r in records if r.target_s > 0])
    if err.size == 0:
        return {"cells": 0, "rmse_s": float("nan"), "mae_s": float("nan"), "within_2ns": float("nan")}
    return {"cells": int(err.size), "rmse_s": float(np.sqrt(np.mean(err ** 2))),
            "mae_s": float(np.mean(np.abs(err))), "within_2ns": float(np.mean(np.abs(err) <= 2e-9))}


def achieved_map(records, shape) -> np.ndarray:
    """The achieved conductances (S) as a (wordlines x bitlines) map."""
    g = np.zeros(shape)
    for r in records:
        g[r.wordline, r.bitline] = r.achieved_s
    return g
