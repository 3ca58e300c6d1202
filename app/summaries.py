"""The numbers a run ends with, one place for the command line and the GUI.

Each protocol has a ``*_summary`` (records -> a JSON-ready dict, SI units) and a ``*_lines``
(that dict -> the lines ``rramlab ...`` prints, in nS/nA/nW). ``rramlab ispva`` and ``rramlab
transfer`` print these lines; the GUI shows them in the panel at the end of every run and keeps the
dict with the run in the run store (``RunStore.set_summary``). ``summarise_run`` picks the right
one for a run of the window by its protocol's store name. No Qt here.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["ispva_summary", "ispva_lines", "transfer_lines", "inference_summary", "inference_lines",
           "power_summary", "power_lines", "ispp_summary", "ispp_lines", "array_read_summary",
           "array_read_lines", "summarise_run", "transfer_store_summary"]

nS, nA, nW = 1e9, 1e9, 1e9


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.1f} %"


# ----- ISPVA -----

def ispva_summary(results, wall_s: float, devices_per_level: int | None = None) -> dict:
    """The ISPVA summary of a set of IspvaResult: fractions within +-2 / +-4 nS, RMSE and MAE of the
    final conductances (S), pulses per cell, cells out of reach, one entry per level, wall time."""
    from rramlab.protocols import ispva
    from rramlab.protocols.transfer import error_stats

    results = list(results)
    errors = [r.error_s for r in results]
    stats = error_stats(errors)
    n = len(results)
    return {
        "devices": n,
        "devices_per_level": devices_per_level,
        "within_2ns": ispva.within_fraction(errors, 2e-9),
        "within_4ns": ispva.within_fraction(errors, 4e-9),
        "rmse_s": stats["rmse_s"],
        "mae_s": stats["mae_s"],
        "converged": sum(r.converged for r in results) / n if n else float("nan"),
        "mean_pulses": sum(r.pulses for r in results) / n if n else float("nan"),
        "out_of_reach": sum(bool(getattr(r, "out_of_reach", False)) for r in results),
        "levels": [{"target_s": s.target_s, "devices": s.devices, "within_2ns": s.within_2ns,
                    "within_4ns": s.within_4ns, "mean_pulses": s.mean_pulses, "mean_error_s": s.mean_error_s,
                    "std_error_s": s.std_error_s} for s in ispva.summarise_levels(results)],
        "wall_s": wall_s,
    }


def ispva_lines(s: dict, unit: str = "device") -> list[str]:
    """Per level, then 'all: ...' (what ``rramlab ispva`` prints after its heading)."""
    lines = [f"  {lv['target_s'] * nS:4.0f} nS: {lv['within_2ns'] * 100:5.1f} % within +-2 nS, "
             f"{lv['within_4ns'] * 100:5.1f} % within +-4 nS, {lv['mean_pulses']:.2f} pulses" for lv in s["levels"]]
    if not s["devices"]:
        return lines + ["  no cell finished"]
    lines.append(f"  all: {s['within_2ns'] * 100:.1f} % within +-2 nS, {s['within_4ns'] * 100:.1f} % within +-4 nS, "
                 f"RMSE {s['rmse_s'] * nS:.2f} nS, MAE {s['mae_s'] * nS:.2f} nS, {s['mean_pulses']:.2f} pulses per "
                 f"{unit}, {s['out_of_reach']} out of reach, {s['wall_s']:.1f} s")
    return lines


# ----- transfer -----

def transfer_lines(rep: dict, backend: str) -> list[str]:
    """What ``rramlab transfer`` prints of its report (``transfer.summarise``)."""
    out = [f"transfer ({rep['scheme']}, {rep['mapping']} mapping) on the {backend}: {rep['programmed_cells']} cells "
           f"programmed, {rep['hrs_cells']} left in HRS" + (f", run {rep['run_id']}" if rep.get("run_id") else ""),
           f"  RMSE {rep['rmse_s'] * nS:.2f} nS, MAE {rep['mae_s'] * nS:.2f} nS, {rep['within_2ns'] * 100:.1f} % within "
           f"+-2 nS, {rep['within_4ns'] * 100:.1f} % within +-4 nS",
           f"  {rep['pulses']} pulses ({rep['row_pulses']} row pulses), {rep['pulses_per_cell']:.2f} per programmed "
           f"cell; {rep['disturbed_cells']} disturbed cells re-programmed, {rep['left_out_of_tolerance']} left out "
           f"of tolerance ({rep.get('out_of_reach_cells', 0)} out of reach); {rep['wall_s']:.1f} s"]
    for lv in rep["levels"]:
        out.append(f"  {lv['target_s'] * nS:4.0f} nS: {lv['cells']:3d} cells, mean {lv['mean_s'] * nS:6.2f} nS, "
                   f"std {lv['std_s'] * nS:.2f} nS, {lv['within_2ns'] * 100:5.1f} % within +-2 nS")
    return out


def transfer_store_summary(rep: dict) -> dict:
    """The report without its per-cell maps and conductance lists (they are in the records)."""
    drop = {"target_conductance_map_s", "achieved_conductance_map_s", "target_weight_map_s", "achieved_weight_map_s"}
    out = {k: v for k, v in rep.items() if k not in drop}
    out["levels"] = [{k: v for k, v in lv.items() if k != "conductances_s"} for lv in rep.get("levels", [])]
    return out


# ----- inference and power -----

def inference_summary(records, ann_predictions=None) -> dict:
    """Accuracy, the confusion matrix (rows: true digit) and, given the ANN's predictions of the
    same images, the ANN's accuracy on them."""
    from rramlab.protocols.inference import confusion_matrix

    records = list(records)
    n = len(records)
    right = sum(int(r.prediction == r.label) for r in records)
    out = {"images": n, "correct": right, "accuracy": right / n if n else float("nan"),
           "confusion": confusion_matrix([r.label for r in records], [r.prediction for r in records]).tolist()
           if n else []}
    if ann_predictions is not None and n:
        ann = np.asarray(ann_predictions)
        out["ann_accuracy"] = float(np.mean(ann == np.array([r.label for r in records])))
    return out


def inference_lines(s: dict, title: str = "") -> list[str]:
    """'array accuracy 85.0 % (17 of 20); the QT ANN on the same images: 90.0 %' and the confusion matrix."""
    if not s["images"]:
        return ["  no image inferred"]
    ann = f"; the {title + ' ' if title else ''}ANN on the same images: {_pct(s['ann_accuracy'])}" \
        if "ann_accuracy" in s else ""
    lines = [f"  array accuracy {_pct(s['accuracy'])} ({s['correct']} of {s['images']}){ann}",
             "  confusion matrix (rows: true digit, columns: prediction)",
             "       " + " ".join(f"{c:>4d}" for c in range(10))]
    for c, row in enumerate(s["confusion"]):
        lines.append(f"  {c:>4d} " + " ".join(f"{x:>4d}" for x in row))
    return lines


def power_summary(records) -> dict:
    """Mean P_avg,array over the images and per class (W; NaN for a class without images)."""
    records = list(records)
    per = []
    for c in range(10):
        vals = [r.average_w for r in records if r.label == c]
        per.append(float(np.mean(vals)) if vals else float("nan"))
    return {"images": len(records), "average_w": float(np.mean([r.average_w for r in records])) if records
            else float("nan"), "per_class_w": per,
            "spike_rate": float(np.mean([r.spike_rate for r in records])) if records else float("nan")}


def power_lines(s: dict) -> list[str]:
    """'per class: 0: 1180 nW, ...' and 'average P_avg,array: 1186.0 nW' as ``rramlab power`` prints."""
    if not s["images"]:
        return ["  no image measured"]
    return ["  per class: " + ", ".join(f"{c}: {w * nW:.0f} nW" if math.isfinite(w) else f"{c}: -"
                                        for c, w in enumerate(s["per_class_w"])),
            f"  average P_avg,array: {s['average_w'] * nW:.1f} nW over {s['images']} images "
            f"(hidden spike rate {s['spike_rate']:.3f} per step)"]


# ----- ISPP and the array read -----

def ispp_summary(records, read_v: float) -> dict:
    """Pulses, and the lowest and highest conductance read (S) at ``read_v``."""
    g = np.array([r.read_a / read_v for r in records], dtype=float)
    return {"pulses": int(g.size), "g_min_s": float(g.min()) if g.size else float("nan"),
            "g_max_s": float(g.max()) if g.size else float("nan"),
            "g_last_s": float(g[-1]) if g.size else float("nan")}


def ispp_lines(s: dict) -> list[str]:
    if not s["pulses"]:
        return ["  no pulse"]
    return [f"  {s['pulses']} pulses; conductance read {s['g_min_s'] * nS:.2f} to {s['g_max_s'] * nS:.2f} nS, "
            f"{s['g_last_s'] * nS:.2f} nS after the last pulse"]


def array_read_summary(records) -> dict:
    g = np.array([x for r in records for _, x in r.conductances()], dtype=float)
    return {"cells": int(g.size), "mean_s": float(g.mean()) if g.size else float("nan"),
            "min_s": float(g.min()) if g.size else float("nan"), "max_s": float(g.max()) if g.size else float("nan"),
            "above_5ns": int(np.sum(g > 5e-9))}


def array_read_lines(s: dict) -> list[str]:
    if not s["cells"]:
        return ["  no cell read"]
    return [f"  {s['cells']} cells: mean {s['mean_s'] * nS:.2f} nS, {s['min_s'] * nS:.2f} to {s['max_s'] * nS:.2f} nS; "
            f"{s['above_5ns']} above 5 nS (not in HRS)"]


# ----- a run of the window -----

def summarise_run(protocol: str, plan, records: Sequence, wall_s: float, backend: str) -> tuple[dict, list[str]]:
    """(summary dict for the store, lines for the panel, the headline first) of a GUI run, by its store name ("ispva",
    "transfer", "infer", "power", "ispp", "Array read"; another: nothing), with the functions the
    command line uses."""
    records = list(records)
    if protocol == "transfer":
        from rramlab.protocols import transfer

        rep = transfer.summarise(plan, records, wall_s)
        return transfer_store_summary(rep), transfer_lines(rep, backend)[1:]
    if protocol == "ispva":
        from rramlab.protocols.ispva import IspvaResult

        s = ispva_summary([r for r in records if isinstance(r, IspvaResult)], wall_s)
        lines = ispva_lines(s, "cell")
        return s, lines[-1:] + lines[:-1]  # the 'all:' line first, then the levels
    if protocol in ("infer", "power"):
        variant = plan.variant
        images = np.asarray(plan.images)
        pos = {int(i): k for k, i in enumerate(plan.indices)}
        done = [pos[int(r.image)] for r in records]
        ann = variant.predict(images[done]) if done else None
        s = inference_summary(records, ann)
        lines = inference_lines(s, variant.title)
        if protocol == "power":
            s = {**power_summary(records), "inference": s}
            p_lines = power_lines(s)
            lines = p_lines[-1:] + p_lines[:-1] + lines[:1]  # the average first
        return s, lines
    if protocol == "ispp":
        s = ispp_summary(records, plan.settings.read_v)
        return s, ispp_lines(s)
    if protocol == "Array read":
        s = array_read_summary(records)
        return s, array_read_lines(s)
    from rramlab.app.lab_summaries import LAB_PROTOCOLS, lab_summary

    if protocol in LAB_PROTOCOLS:  # iv, map, endurance, retention, disturb: app/lab_summaries.py
        return lab_summary(protocol, plan, records, wall_s, backend)
    return {}, []  # a protocol without a summary of its own
