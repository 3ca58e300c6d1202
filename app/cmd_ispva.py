"""``rramlab ispva``: the paper's single-device write-verify experiment on the twin.

    rramlab ispva --devices 50 --json ispva.json --csv ispva.csv

Programs ``--devices`` fresh lone devices to each of the eight states G1..G8 (10, 20, ... 80 nS) by
ISPVA (``protocols/ispva.py``) and reports, per level and overall, the fraction within +-2 and
+-4 nS and the pulses used. Every pulse and result goes to the run store.
"""

from __future__ import annotations

import csv
import json
import sys
import time

from rramlab.app.settings_flags import add_settings_flags, settings_from_args
from rramlab.protocols import ispva
from rramlab.protocols.store import RunStore, add_store_flag, json_ready, record_run

CSV_HEADER = ("device", "target_s", "converged", "pulses", "conductance_s", "error_s")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ispva", help="write-verify fresh lone twin devices to the 8 levels (the paper's Fig. 4b experiment)",
        description="ISPVA on fresh lone devices of the twin, --devices per level G1..G8 (10..80 nS): read at "
                    "1 V, set pulse aimed at the level and stepped by the measured error, reset on overshoot, "
                    "until within tolerance or the pulse budget is spent; the read after programming_done counts.")
    add_settings_flags(p, ispva.IspvaSettings, "ISPVA settings")
    p.add_argument("--devices", type=int, default=50, metavar="N", help="fresh devices per level (default 50)")
    p.add_argument("--json", metavar="FILE", help="write the summary (keys in the README)")
    p.add_argument("--csv", metavar="FILE", help="write the final conductance of every device")
    p.add_argument("--seed", type=int, default=0, help="seed of the first device; device i uses seed + i")
    p.add_argument("--engine", choices=("auto", "fast", "spice"), default="auto", help="twin engine (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_store_flag(p)
    p.set_defaults(handler=cmd_ispva)


def summary_dict(results, wall_s: float, devices_per_level: int) -> dict:
    """The JSON summary: fractions over all devices, one entry per level, wall time (SI units)."""
    errors = [r.error_s for r in results]
    return {
        "devices": len(results),
        "devices_per_level": devices_per_level,
        "within_2ns": ispva.within_fraction(errors, 2e-9),
        "within_4ns": ispva.within_fraction(errors, 4e-9),
        "converged": sum(r.converged for r in results) / len(results) if results else float("nan"),
        "mean_pulses": sum(r.pulses for r in results) / len(results) if results else float("nan"),
        "levels": [{"target_s": s.target_s, "devices": s.devices, "within_2ns": s.within_2ns,
                    "within_4ns": s.within_4ns, "mean_pulses": s.mean_pulses, "mean_error_s": s.mean_error_s,
                    "std_error_s": s.std_error_s} for s in ispva.summarise_levels(results)],
        "wall_s": wall_s,
    }


def cmd_ispva(args) -> int:
    from tqdm import tqdm

    from rramlab.app.cli import EXIT_INTERRUPTED, EXIT_OK
    from rramlab.drivers.interface import RequestError
    from rramlab.sim.virtual_array import VirtualArray

    settings = settings_from_args(ispva.IspvaSettings, args)
    if args.devices < 1:
        raise RequestError(f"--devices {args.devices}: give at least 1 device per level")
    levels = ispva.PAPER_LEVELS_S
    first = VirtualArray.lone_device(seed=args.seed, engine=args.engine)
    ispva.plan(settings, [(0, 0)] * len(levels), levels, first)  # everything checked before any pulse
    store = RunStore(args.store)
    results: list[ispva.IspvaResult] = []
    csv_file = open(args.csv, "w", newline="") if args.csv else None
    writer = csv.writer(csv_file) if csv_file else None
    if writer:
        writer.writerow(CSV_HEADER)
    start = time.perf_counter()
    total = args.devices * len(levels)
    run_settings = {**ispva_settings_dict(settings), "devices_per_level": args.devices,
                    "levels_s": list(levels), "seed": args.seed}
    try:
        with record_run(store, "ispva", run_settings, first) as rec, \
                tqdm(total=total, desc="ISPVA", unit="device", disable=args.no_progress, file=sys.stderr,
                     leave=False) as bar:
            for i in range(total):
                target = levels[i // args.devices]
                device = first if i == 0 else VirtualArray.lone_device(seed=args.seed + i, engine=args.engine)
                with device:
                    for r in ispva.run(device, ispva.plan(settings, [(0, 0)], [target], device)):
                        rec.add(r)
                        if isinstance(r, ispva.IspvaResult):
                            results.append(r)
                            if writer:
                                writer.writerow((i, f"{r.target_s:.6g}", int(r.converged), r.pulses,
                                                 f"{r.conductance_s:.6e}", f"{r.error_s:.6e}"))
                                csv_file.flush()
                bar.update(1)
            run_id = rec.run_id
    except KeyboardInterrupt:
        print(f"\ninterrupted after {len(results)} of {total} devices; their rows are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if csv_file:
            csv_file.close()
        store.close()
    wall = time.perf_counter() - start
    summary = summary_dict(results, wall, args.devices)
    print(f"ISPVA on {len(results)} fresh twin devices ({args.devices} per level), tolerance "
          f"+-{settings.tolerance_s * 1e9:g} nS, read at {settings.read_v:g} V")
    for lv in summary["levels"]:
        print(f"  {lv['target_s'] * 1e9:4.0f} nS: {lv['within_2ns'] * 100:5.1f} % within +-2 nS, "
              f"{lv['within_4ns'] * 100:5.1f} % within +-4 nS, {lv['mean_pulses']:.2f} pulses")
    print(f"  all: {summary['within_2ns'] * 100:.1f} % within +-2 nS, {summary['within_4ns'] * 100:.1f} % within "
          f"+-4 nS, {summary['mean_pulses']:.2f} pulses per device, {wall:.1f} s (run {run_id} in {store.path})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(json_ready({**summary, "run_id": run_id, "settings": run_settings}), fh, indent=2)
        print(f"  summary written to {args.json}")
    if args.csv:
        print(f"  {len(results)} rows written to {args.csv}")
    return EXIT_OK


def ispva_settings_dict(settings) -> dict:
    from rramlab.protocols.settings import settings_dict

    return settings_dict(settings)
