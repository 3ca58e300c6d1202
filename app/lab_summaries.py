"""The numbers a lab protocol's run ends with in the window (I-V, map, endurance, retention, disturb).

The same figures and JSON keys as ``rramlab iv``, ``map``, ``endurance``, ``retention`` and
``disturb`` print and keep (``app/cmd_iv.py``, ``cmd_map.py``, ``cmd_stress.py``), computed by the
protocol modules' own summarisers; ``summaries.summarise_run`` hands a lab run here. SI units in
the dicts, nA / nS on the lines. No Qt here.
"""

from __future__ import annotations

import math
import types
from typing import Sequence

LAB_PROTOCOLS = ("iv", "map", "endurance", "retention", "disturb")


def _na(a: float, read_v: float) -> str:
    return f"{a * 1e9:.3g} nA" if math.isfinite(a) else f"no step at {read_v:g} V"


def iv_lines(s: dict, settings) -> list[str]:
    """The I-V features as ``rramlab iv`` prints them."""
    if not s["points"]:
        return ["  no point: the sweep was stopped before it began"]
    lines = [f"  current at {settings.read_v:g} V: {_na(s['read_before_a'], settings.read_v)} before the set"
             + (f", {_na(s['read_after_a'], settings.read_v)} after it" if settings.double else "")]
    lines.append(f"  set onset {s['set_onset_v']:.2f} V (the first switch turns on), reset onset "
                 f"{s['reset_onset_v']:.2f} V (largest |I| of the reset branch), peak "
                 f"{s['peak_current_a'] * 1e6:.2f} uA; {s['points']} points")
    return lines


def map_summary(records) -> dict:
    from rramlab.protocols.array_map import BROKEN_ABOVE_S, MapRead, level_counts

    reads = [r for r in records if isinstance(r, MapRead)]
    g = sorted(r.conductance_s for r in reads)
    broken = [[r.wordline, r.bitline] for r in reads if r.conductance_s > BROKEN_ABOVE_S]
    return {"cells": len(g), "levels": level_counts(g) if g else {}, "broken_cells": broken,
            "min_s": g[0] if g else float("nan"), "max_s": g[-1] if g else float("nan"),
            "median_s": g[len(g) // 2] if g else float("nan")}


def map_lines(s: dict) -> list[str]:
    if not s["cells"]:
        return ["  no cell read"]
    return [f"  {s['cells']} cells: " + ", ".join(f"{name}: {n}" for name, n in s["levels"].items() if n),
            f"  conductance {s['min_s'] * 1e9:.1f} .. {s['max_s'] * 1e9:.1f} nS, median {s['median_s'] * 1e9:.1f} nS"] + (
        [f"  broken cells (wordline,bitline): " + ", ".join(f"{w},{b}" for w, b in s["broken_cells"])]
        if s.get("broken_cells") else [])


def lab_summary(protocol: str, plan, records: Sequence, wall_s: float, backend: str) -> tuple[dict, list[str]]:
    """(summary dict for the store, lines for the panel) of a lab protocol's run in the window."""
    records = list(records)
    if protocol == "iv":
        from rramlab.protocols import iv

        s = iv.summarise(records, plan.settings.read_v)
        return s, iv_lines(s, plan.settings)
    if protocol == "map":
        s = map_summary(records)
        return s, map_lines(s)
    if protocol == "endurance":
        from rramlab.app.cmd_stress import endurance_lines
        from rramlab.protocols.endurance import EnduranceSummariser

        summariser = EnduranceSummariser(plan.settings.min_window_ratio)
        for r in records:
            summariser.add(r)
        s = {"closed_at_cycle": summariser.closed_at, "cycles": summariser.last.cycle if summariser.last else 0,
             "decades": [{"first_cycle": d.first, "last_cycle": d.last, "reads": d.reads, "lrs_a": d.lrs_a,
                          "hrs_a": d.hrs_a, "window_ratio": d.ratio, "lowest_window_ratio": d.min_ratio}
                         for d in summariser.windows()]}
        aged = getattr(plan, "aging", None)  # the window's AgedPlan: the twin was given wear and drift
        lines = endurance_lines(summariser, plan.settings, types.SimpleNamespace(backend_name=backend, aging=aged),
                                (plan.wordline, plan.bitline), None)
        return s, lines[-1:] + lines[1:-1]  # where the window closed first, then the decades
    if protocol == "retention":
        from rramlab.protocols.retention import RetentionSummariser

        tol = plan.settings.tolerance_s
        summariser = RetentionSummariser(tol)
        for r in records:
            summariser.add(r)
        levels = summariser.levels_summary()
        s = {"simulated_time": backend == "twin", "levels": [
            {"target_s": lv.target_s, "cells": lv.cells, "first_s": lv.first_s, "last_s": lv.last_s,
             "drift_per_decade_s": lv.drift_per_decade_s, "left_at_s": lv.left_at_s} for lv in levels]}
        lines = []
        for lv in levels:
            left = (f"left +-{tol * 1e9:g} nS at {lv.left_at_s:.3g} s" if lv.left_at_s is not None
                    else f"stayed within +-{tol * 1e9:g} nS")
            lines.append(f"  {lv.target_s * 1e9:5.1f} nS ({lv.cells} cells): {lv.first_s * 1e9:6.2f} -> "
                         f"{lv.last_s * 1e9:6.2f} nS, drift {lv.drift_per_decade_s * 1e9:+.3f} nS per decade of time; "
                         f"{left}")
        if backend == "twin":
            lines.append(f"  simulated time: {plan.times_s[-1]:.3g} s of retention in {wall_s:.1f} s of wall time")
        return s, lines or ["  no read: the run stopped while programming"]
    if protocol == "disturb":
        from rramlab.protocols.disturb import DisturbSummariser

        summariser = DisturbSummariser(plan.settings.read_v)
        for r in records:
            summariser.add(r)
        changes = summariser.changes()
        s = {"series": [{"phase": phase, "cell": list(c), "role": role, "start_s": g0,
                         "change_per_decade_s": {f"1e{d}": dg for d, dg in steps}}
                        for phase, c, role, g0, steps in changes]}
        lines = []
        for phase, (w, b), role, g0, steps in changes:
            per = ", ".join(f"1e{d}: {dg * 1e9:+.3f}" for d, dg in steps)
            label = "reads" if phase == "read" else "half-bias pulses"
            lines.append(f"  {phase:11s} {role:9s} {w:2d},{b:<2d} G0 {g0 * 1e9:6.2f} nS; change per decade of "
                         f"{label} (nS): {per}")
        return s, lines
    return {}, []
