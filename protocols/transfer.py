"""Weight transfer: a signed weight matrix into the differential crossbar, verified cell by cell.

Weights (``protocols/weights.py``) become conductance targets: 10..80 nS for the programmed cell of
each differential pair, HRS for the other. Two schemes (``SCHEMES``):

* ``half-bias`` (the hardware scheme): cell after cell, ISPVA (``protocols/ispva.py``) with
  rectangular pulses; the selected wordline at +V/2, the selected bitline at -V/2, all else 0 V.
* ``fast`` (the paper's simulation scheme): row-parallel. Per wordline and per target level one
  triangular pulse of that level's set amplitude V on the wordline, the bitlines to write at 0 V,
  every other bitline at the inhibit voltage V_IH = ``inhibit_ratio`` x V, every other wordline at
  V/2; then the row is verified, cells within tolerance are settled (``programming_done``) and
  read again, and every cell that missed goes through ISPVA.

Both start by reading every cell: a cell already within tolerance gets no pulse (this is what
``--resume`` relies on), and both end with a re-read of the whole region: a cell that was accepted
and has since been pushed out of tolerance (disturbed by its neighbours' pulses) is re-programmed,
for up to ``final_rounds`` rounds. Cells to leave in HRS are accepted at or below ``hrs_max_s`` and
otherwise reset. With ISPVA's ``programming="paper-once"`` (the paper's simulation) no cell is
settled on the way: after the last re-read every programmed cell gets ``programming_done`` once and
one more whole-region read (a last "final" round) is what counts, with nothing re-programmed.

``run`` is a generator of records (CellRead, RowPulse, IspvaPulse, IspvaResult, Disturbed);
``summarise`` turns them into the report. Units: siemens, volts, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from rramlab.drivers.interface import (CrossbarInstrument, RequestChecker, RequestError, SafetyError,
                                      half_bias_voltages)
from rramlab.protocols import ispva
from rramlab.protocols.ispva import IspvaPulse, IspvaResult, IspvaSettings, first_set_v, within_fraction
from rramlab.protocols.settings import check_settings, setting
from rramlab.protocols.weights import (HRS, LEVEL_SPACING_S, MAPPINGS, PAIR_ZEROS, check_levels, check_spacing,
                                      differential_targets, weight_map)

__all__ = ["TransferSettings", "TransferPlan", "CellRead", "RowPulse", "Disturbed", "plan", "run", "Settings", "Plan",
           "RECORDS", "summarise", "error_stats", "final_conductances", "pulses_by_cell", "row_pulse_voltages",
           "reset_to_hrs", "SCHEMES", "write_levels", "run_settings"]

#: the programming schemes: "half-bias" (cell by cell, hardware) and "fast" (row-parallel, the paper's simulation)
SCHEMES = ("half-bias", "fast")


@dataclass(frozen=True)
class TransferSettings:
    """Transfer settings besides ISPVA's own (IspvaSettings). Volts, seconds, siemens."""

    scheme: str = setting("half-bias", "half-bias: cell by cell ISPVA, rectangular pulses (hardware); fast: "
                                       "row-parallel triangular pulses per level, then verify and ISPVA for misses",
                          choices=SCHEMES)
    mapping: str = setting("blocked", "weight column j -> bitlines: blocked = positive j, negative C+j (the "
                                      "paper's 0-9 / 10-19); interleaved = 2j, 2j+1", choices=MAPPINGS)
    row_width_s: float = setting(2e-3, "fast scheme: width of the triangular row pulse", "s", soa="width",
                                 flag="row_width")
    inhibit_ratio: float = setting(0.5, "fast scheme: inhibited bitlines at this fraction of the row pulse (V_IH)",
                                   minimum=0.0, maximum=1.0)
    hrs_max_s: float = setting(5e-9, "a cell left in HRS is accepted at or below this conductance", "S",
                               minimum=0.0, maximum=9e-9, exclusive_minimum=True, flag="hrs_max")
    final_rounds: int = setting(3, "final re-reads of the whole region, each re-programming the cells out of "
                                   "tolerance", minimum=1, maximum=20)
    pair_zero: str = setting("hrs", "a zero weight and a pair's unused side: hrs (left in HRS, no target) or g1 "
                                    "(the lowest state G1, the paper's G6 - G1 = +5: levels -7..7, every cell "
                                    "programmed)", choices=PAIR_ZEROS)

    def validate(self, limits=None) -> None:
        """Check every setting against its declaration and ``limits``; SafetyError or RequestError naming it."""
        check_settings(self, limits)


@dataclass(frozen=True)
class CellRead:
    """A verify read of one cell outside ISPVA: stage "start" (before any pulse), "row" (after the
    fast scheme's row pulses), "settled" (after programming_done) or "final" (whole-region re-read)."""

    stage: str
    round: int             # final re-read round (1-based); 0 for other stages
    wordline: int
    bitline: int
    target_s: float        # 0.0: leave in HRS
    conductance_s: float


@dataclass(frozen=True)
class RowPulse:
    """One row-parallel triangular pulse of the fast scheme."""

    wordline: int
    target_s: float
    pulse_v: float         # peak on the selected wordline (V)
    inhibit_v: float       # V_IH on the bitlines not written (V)
    bitlines: tuple[int, ...]


@dataclass(frozen=True)
class Disturbed:
    """The final re-read found a cell out of tolerance; it is re-programmed. ``accepted``: the cell had
    been accepted before (so a neighbour disturbed it), else it had not converged (a retry)."""

    round: int
    wordline: int
    bitline: int
    target_s: float
    conductance_s: float
    accepted: bool


@dataclass(frozen=True)
class TransferPlan:
    """A validated transfer (from ``plan``): settings, the int ``levels``, ``targets_s`` indexed by
    (wordline, bitline) of the chip (S, 0.0 = leave in HRS) and the region's cells in order."""

    settings: TransferSettings
    ispva: IspvaSettings
    levels: np.ndarray          # (rows, columns) int
    targets_s: np.ndarray       # (wordlines, bitlines) of the chip, S, 0.0 = HRS
    cells: tuple[tuple[int, int], ...]
    level_spacing_s: float = LEVEL_SPACING_S   # conductance of one weight level (S)

    def target(self, cell) -> float:
        """Target conductance (S) of a (wordline, bitline) cell; 0.0 (HRS) outside the weights."""
        return float(self.targets_s[cell[0], cell[1]])


def row_pulse_voltages(geometry, wordline: int, bitlines: Sequence[int], pulse_v: float, inhibit_ratio: float):
    """Line voltages of one fast-scheme row pulse: (wordline_v, bitline_v) in volts.

    Selected wordline at V, other wordlines at V/2, written bitlines at 0 V, other bitlines at
    V_IH = inhibit_ratio x V. Cells see V (written), V - V_IH (inhibited, same row), V/2 (written
    bitline, other row) and V/2 - V_IH (elsewhere)."""
    wl = np.full(geometry.wordlines, pulse_v / 2.0)
    wl[wordline] = pulse_v
    bl = np.full(geometry.bitlines, inhibit_ratio * pulse_v)
    bl[list(bitlines)] = 0.0
    return wl, bl


def plan(settings: TransferSettings, ispva_settings: IspvaSettings, levels,
         checker: RequestChecker | None = None, level_spacing_s: float = LEVEL_SPACING_S) -> TransferPlan:
    """Check everything against ``checker`` (geometry, safe operating area, every pulse the scheme may
    send) and build the targets (level k -> k x ``level_spacing_s``, S). Touches no instrument;
    raises WeightFileError, SafetyError, GeometryError or RequestError naming the value and the fix.

    ``levels``: int weights -8..8, shape (rows, columns) (see ``weights``).

    Example::

        levels = load_weights("examples/weights_24x10.npz")
        with VirtualArray(seed=1, engine="fast") as chip:
            p = transfer.plan(transfer.TransferSettings(scheme="fast"), IspvaSettings(), levels, chip)
            records = list(transfer.run(chip, p))
            report = transfer.summarise(p, records, wall_s=0.0)     # report["rmse_s"] in S
    """
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    g = checker.geometry
    levels = check_levels(levels, "weights", (len(g.used_wordlines), len(g.used_bitlines)))
    level_spacing_s = check_spacing(level_spacing_s, levels, pair_zero=settings.pair_zero)
    targets = differential_targets(levels, settings.mapping, level_spacing_s, settings.pair_zero)
    rows, cols = targets.shape
    cells = tuple((g.used_wordlines[r], g.used_bitlines[c]) for r in range(rows) for c in range(cols))
    # targets indexed by (wordline, bitline) of the chip
    chip_targets = np.zeros(g.shape)
    for (w, b), t in zip(cells, targets.ravel()):
        chip_targets[w, b] = t
    programmed = [(c, t) for c, t in zip(cells, targets.ravel()) if t != HRS]
    if programmed:
        ispva.plan(ispva_settings, [c for c, _ in programmed], [t for _, t in programmed], checker)
    else:
        ispva_settings.validate(checker.limits)
        checker.check_read_voltage(ispva_settings.read_v)
    # every reset an HRS cell may need
    wl, bl = half_bias_voltages(g, cells[0][0], cells[0][1], ispva_settings.reset_v)
    checker.check_pulse(wl, bl, ispva_settings.pulse_width_s, ispva_settings.shape)
    if settings.scheme == "fast":
        for w in sorted({c[0] for c, _ in programmed}):
            for t in sorted({t for c, t in programmed if c[0] == w}):
                written = [c[1] for c, tt in programmed if c[0] == w and tt == t]
                v = first_set_v(ispva_settings, t)
                wl, bl = row_pulse_voltages(g, w, written, v, settings.inhibit_ratio)
                try:
                    checker.check_pulse(wl, bl, settings.row_width_s, "tri")
                except (RequestError, SafetyError) as exc:
                    raise type(exc)(f"the fast scheme's row pulse ({v:g} V on wordline {w}, V/2 elsewhere) cannot "
                                    f"be sent: {exc}. Use --scheme half-bias on this instrument") from None
    return TransferPlan(settings, ispva_settings, levels, chip_targets, cells, level_spacing_s)


def run_settings(plan_: TransferPlan, weights_file: str | None = None) -> dict:
    """What the run store keeps of a transfer (``--resume`` rebuilds the plan from it)."""
    from rramlab.protocols.settings import settings_dict

    return {"transfer": settings_dict(plan_.settings), "ispva": settings_dict(plan_.ispva),
            "levels": plan_.levels.tolist(), "level_spacing_s": plan_.level_spacing_s,
            "weights_file": weights_file, "target_fingerprint": plan_fingerprint(plan_)}


def plan_fingerprint(plan_: TransferPlan) -> str:
    """The fingerprint (``network_check.target_fingerprint``) of the region's targets a transfer
    writes: kept with its run, so the store says which network an array was given."""
    from rramlab.protocols.network_check import target_fingerprint

    return target_fingerprint(differential_targets(plan_.levels, plan_.settings.mapping, plan_.level_spacing_s))


def write_levels(instrument: CrossbarInstrument, levels, settings: TransferSettings = TransferSettings(),
                 ispva_settings: IspvaSettings = IspvaSettings(), level_spacing_s: float = LEVEL_SPACING_S,
                 store=None, weights_file: str | None = None,
                 should_stop: Callable[[], bool] | None = None) -> tuple[TransferPlan, list, int | None]:
    """Plan against ``instrument`` and run a whole transfer; returns (plan, records, run id).

    ``store``: a ``RunStore`` (or path) to record the run in, as ``rramlab transfer`` does, so it can
    be listed, exported and resumed; None records nothing (run id None)."""
    from rramlab.protocols.store import record_run

    plan_ = plan(settings, ispva_settings, levels, instrument, level_spacing_s)
    records: list = []
    if store is None:
        records.extend(run(instrument, plan_, should_stop))
        return plan_, records, None
    with record_run(store, "transfer", run_settings(plan_, weights_file), instrument) as rec:
        for r in run(instrument, plan_, should_stop):
            rec.add(r)
            records.append(r)
    return plan_, records, rec.run_id


def _accepted(plan_: TransferPlan, target_s: float, g: float) -> bool:
    if target_s == HRS:
        return g <= plan_.settings.hrs_max_s
    return abs(g - target_s) <= plan_.ispva.tolerance_s


def reset_to_hrs(instrument: CrossbarInstrument, settings: IspvaSettings, cell, hrs_max_s: float,
                 should_stop: Callable[[], bool] | None = None,
                 first_read_s: float | None = None) -> Iterator[IspvaPulse | IspvaResult]:
    """Reset pulses until the cell reads at or below ``hrs_max_s`` or the budget is spent.
    ``first_read_s``: the cell's conductance (S) from a read just made, instead of reading it again."""
    w, b = cell
    g = instrument.read_cell(w, b, settings.read_v) / settings.read_v if first_read_s is None else float(first_read_s)
    pulses = 0
    while g > hrs_max_s and pulses < settings.max_pulses:
        if should_stop is not None and should_stop():
            return
        instrument.pulse_cell(w, b, settings.reset_v, settings.pulse_width_s, settings.shape)
        pulses += 1
        g = instrument.read_cell(w, b, settings.read_v) / settings.read_v
        yield IspvaPulse(w, b, HRS, pulses, "reset", settings.reset_v, g)
    yield IspvaResult(w, b, HRS, g <= hrs_max_s, pulses, g, g)


def _program(instrument, plan_: TransferPlan, cell, should_stop, pulses_used: int = 0,
             last_set_v: float | None = None, first_read_s: float | None = None):
    t = plan_.target(cell)
    if t == HRS:
        return reset_to_hrs(instrument, plan_.ispva, cell, plan_.settings.hrs_max_s, should_stop, first_read_s)
    # paper-once: the transfer adds every cell's error itself, after its last re-read
    return ispva.program_cell(instrument, plan_.ispva, cell, t, should_stop, pulses_used, last_set_v,
                              first_read_s=first_read_s, settle=plan_.ispva.programming != "paper-once")


def _read_all(instrument, plan_: TransferPlan, cells) -> np.ndarray:
    v = plan_.ispva.read_v
    return np.asarray(instrument.read(list(cells), v), dtype=float) / v


def run(instrument: CrossbarInstrument, plan_: TransferPlan,
        should_stop: Callable[[], bool] | None = None) -> Iterator:
    """Carry out a transfer plan; yields records as they happen (see the module docstring).
    ``should_stop`` is polled between pulses; the caller owns the instrument."""
    s = plan_.settings
    stopped = (lambda: False) if should_stop is None else should_stop
    accepted: set[tuple[int, int]] = set()
    # cells whose levels straddle their target (IspvaResult.out_of_reach): conductance they ended at (S)
    out_of_reach: dict[tuple[int, int], float] = {}

    # the cell's conductance at the transfer's start or final read: the verify loop starts from it
    # instead of reading the cell once more. Not after a row pulse: there the loop counts that read
    # as a level the pulse reached, and the cells written since on the row move it by ~1e-5 nS
    # through the wires, enough for "back at the best level" to fail and the loop to retry it
    last_read: dict[tuple[int, int], float] = {}

    def program(cell, pulses_used=0, last_set_v=None):
        first = last_read.pop(cell, None) if last_set_v is None else None
        for r in _program(instrument, plan_, cell, stopped, pulses_used, last_set_v, first):
            if isinstance(r, IspvaResult):
                if r.converged:
                    accepted.add(cell)
                if r.out_of_reach:
                    out_of_reach[cell] = r.conductance_s
                else:
                    out_of_reach.pop(cell, None)
            yield r

    g0 = _read_all(instrument, plan_, plan_.cells)
    pending = []
    for cell, g in zip(plan_.cells, g0):
        t = plan_.target(cell)
        last_read[cell] = float(g)
        yield CellRead("start", 0, cell[0], cell[1], t, float(g))
        if _accepted(plan_, t, g):
            accepted.add(cell)
        else:
            pending.append(cell)

    if s.scheme == "fast":
        rows = sorted({c[0] for c in pending if plan_.target(c) != HRS})
        for w in rows:
            row_cells = [c for c in pending if c[0] == w and plan_.target(c) != HRS]
            for t in sorted({plan_.target(c) for c in row_cells}):
                if stopped():
                    return
                written = tuple(c[1] for c in row_cells if plan_.target(c) == t)
                v = first_set_v(plan_.ispva, t)
                wl, bl = row_pulse_voltages(instrument.geometry, w, written, v, s.inhibit_ratio)
                instrument.pulse(wl, bl, s.row_width_s, "tri")
                yield RowPulse(w, t, v, s.inhibit_ratio * v, written)
            gs = _read_all(instrument, plan_, row_cells)
            hits = []
            for c, g in zip(row_cells, gs):
                yield CellRead("row", 0, c[0], c[1], plan_.target(c), float(g))
                if _accepted(plan_, plan_.target(c), g):
                    hits.append(c)
            if hits and plan_.ispva.programming != "paper-once":
                instrument.programming_done(hits)
                if ispva.settles_without_change(instrument):
                    accepted.update(hits)  # nothing moved: the row read that accepted them stands
                else:
                    for c, g in zip(hits, _read_all(instrument, plan_, hits)):
                        yield CellRead("settled", 0, c[0], c[1], plan_.target(c), float(g))
                        if _accepted(plan_, plan_.target(c), g):
                            accepted.add(c)
            row_v = {first_set_v(plan_.ispva, t): t for t in {plan_.target(c) for c in row_cells}}
            for c in row_cells:
                if c not in accepted:
                    if stopped():
                        return
                    v = next(v for v, t in row_v.items() if t == plan_.target(c))
                    yield from program(c, pulses_used=1, last_set_v=v)
        pending = [c for c in pending if plan_.target(c) == HRS]
    for cell in pending:
        if stopped():
            return
        yield from program(cell)

    last = yield from _final_rounds(instrument, plan_, accepted, out_of_reach, program, stopped, last_read)
    if last is None or plan_.ispva.programming != "paper-once":
        return
    # the paper's procedure: the programming error once on every programmed cell, then one read
    instrument.programming_done([c for c in plan_.cells if plan_.target(c) != HRS])
    for c, g in zip(plan_.cells, _read_all(instrument, plan_, plan_.cells)):
        yield CellRead("final", last + 1, c[0], c[1], plan_.target(c), float(g))


def _final_rounds(instrument, plan_: TransferPlan, accepted: set, out_of_reach: dict, program, stopped,
                  last_read: dict):
    """The whole-region re-reads, re-programming cells out of tolerance; yields records and returns
    the last round's number (None if stopped). ``last_read``: each cell's latest read (S), updated
    here so that a re-programmed cell starts from it."""
    s = plan_.settings
    for rnd in range(1, s.final_rounds + 2):
        gs = _read_all(instrument, plan_, plan_.cells)
        bad = []
        last_read.clear()  # reads before this round are stale now
        for c, g in zip(plan_.cells, gs):
            t = plan_.target(c)
            last_read[c] = float(g)
            yield CellRead("final", rnd, c[0], c[1], t, float(g))
            # a cell that ended at the closer of the two levels straddling its target is not
            # tried again unless something has moved it since
            if not _accepted(plan_, t, g) and not (c in out_of_reach and
                                                   abs(g - out_of_reach[c]) <= plan_.ispva.tolerance_s / 2):
                bad.append((c, float(g)))
        if not bad or rnd == s.final_rounds + 1:
            return rnd
        for c, g in bad:
            if stopped():
                return None
            yield Disturbed(rnd, c[0], c[1], plan_.target(c), g, c in accepted)
            accepted.discard(c)
            yield from program(c)
    return None


#: the same shape in every protocol module (see ``rramlab.protocols``): Settings, Plan, RECORDS. A transfer has
#: two settings classes: ``plan(TransferSettings(), IspvaSettings(), levels, checker)``.
Settings = TransferSettings
Plan = TransferPlan
#: the record classes ``run`` yields (ISPVA's own records for every cell's verify loop)
RECORDS = (CellRead, RowPulse, IspvaPulse, IspvaResult, Disturbed)


# ----- the report: small pure functions over records -----

def error_stats(errors_s) -> dict:
    """RMSE and MAE (S) and the fractions within +-2 and +-4 nS of a set of errors."""
    e = np.asarray(errors_s, dtype=float)
    if e.size == 0:
        return {"rmse_s": float("nan"), "mae_s": float("nan"), "within_2ns": float("nan"),
                "within_4ns": float("nan")}
    return {"rmse_s": float(np.sqrt(np.mean(e ** 2))), "mae_s": float(np.mean(np.abs(e))),
            "within_2ns": within_fraction(e, 2e-9), "within_4ns": within_fraction(e, 4e-9)}


def final_conductances(records: Iterable, cells: Sequence[tuple[int, int]]) -> dict:
    """The conductance (S) of every cell at the last final re-read round."""
    finals = [r for r in records if isinstance(r, CellRead) and r.stage == "final"]
    if not finals:
        return {}
    last = max(r.round for r in finals)
    return {(r.wordline, r.bitline): r.conductance_s for r in finals if r.round == last}


def pulses_by_cell(records: Iterable) -> dict:
    """Pulses each cell received: its ISPVA/reset pulses plus every row pulse that wrote it."""
    out: dict[tuple[int, int], int] = {}
    for r in records:
        if isinstance(r, IspvaPulse):
            out[(r.wordline, r.bitline)] = out.get((r.wordline, r.bitline), 0) + 1
        elif isinstance(r, RowPulse):
            for b in r.bitlines:
                out[(r.wordline, b)] = out.get((r.wordline, b), 0) + 1
    return out


def summarise(plan_: TransferPlan, records: Sequence, wall_s: float) -> dict:
    """The transfer report (JSON-ready, SI units); keys documented in the README."""
    records = list(records)
    finals = final_conductances(records, plan_.cells)
    cells = plan_.cells
    programmed = [c for c in cells if plan_.target(c) != HRS]
    hrs = [c for c in cells if plan_.target(c) == HRS]
    done = [c for c in programmed if c in finals]
    errors = [finals[c] - plan_.target(c) for c in done]
    stats = error_stats(errors)
    per_cell = pulses_by_cell(records)
    events = sum(1 for r in records if isinstance(r, (IspvaPulse, RowPulse)))
    tol = plan_.ispva.tolerance_s
    levels = []
    for t in sorted({plan_.target(c) for c in programmed}):
        gs = np.array([finals[c] for c in done if plan_.target(c) == t])
        levels.append({"target_s": t, "cells": int(gs.size),
                       **error_stats(gs - t),
                       "mean_s": float(np.mean(gs)) if gs.size else float("nan"),
                       "std_s": float(np.std(gs)) if gs.size else float("nan"),
                       "conductances_s": [float(x) for x in gs]})
    disturbed = [r for r in records if isinstance(r, Disturbed)]
    left = [c for c in cells if c in finals and not _accepted(plan_, plan_.target(c), finals[c])]
    last_result = {(r.wordline, r.bitline): r for r in records if isinstance(r, IspvaResult)}
    out_of_reach = [c for c in left if c in last_result and last_result[c].out_of_reach]
    rows, cols2 = plan_.levels.shape[0], 2 * plan_.levels.shape[1]
    g_map = np.full((rows, cols2), np.nan)
    t_map = np.zeros((rows, cols2))
    for i, c in enumerate(cells):
        r, k = divmod(i, cols2)
        t_map[r, k] = plan_.target(c)
        if c in finals:
            g_map[r, k] = finals[c]
    return {
        "scheme": plan_.settings.scheme,
        "mapping": plan_.settings.mapping,
        "cells": len(cells),
        "programmed_cells": len(programmed),
        "hrs_cells": len(hrs),
        "finished": len(finals) == len(cells),
        **stats,
        "tolerance_s": tol,
        "within_tolerance": within_fraction(errors, tol),
        "hrs_ok": float(np.mean([finals[c] <= plan_.settings.hrs_max_s for c in hrs if c in finals]))
        if hrs else float("nan"),
        "pulses": events,
        "pulses_per_cell": events / max(len(programmed), 1),
        "cell_pulses_mean": float(np.mean([per_cell.get(c, 0) for c in programmed])) if programmed else 0.0,
        "cell_pulses_max": int(max([per_cell.get(c, 0) for c in cells], default=0)),
        "row_pulses": sum(1 for r in records if isinstance(r, RowPulse)),
        "disturbed_cells": sum(1 for d in disturbed if d.accepted),
        "retried_cells": sum(1 for d in disturbed if not d.accepted),
        "left_out_of_tolerance": len(left),
        # of those, cells whose two nearest levels straddle the target (ISPVA ended at the closer one)
        "out_of_reach_cells": len(out_of_reach),
        "wall_s": wall_s,
        "levels": levels,
        "target_conductance_map_s": t_map.tolist(),
        "achieved_conductance_map_s": g_map.tolist(),
        "target_weight_map_s": weight_map(t_map, plan_.levels.shape[1], plan_.settings.mapping).tolist(),
        "achieved_weight_map_s": weight_map(g_map, plan_.levels.shape[1], plan_.settings.mapping).tolist(),
    }
