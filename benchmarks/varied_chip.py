"""The fast engine's time per pulse on a varied chip (``--seed 1``: ``Variability.typical()``)
against the default (exact-device) chip, for both transfer schemes.

Run by hand:  .venv/bin/python benchmarks/varied_chip.py [--repeat 3] [--seed 1] [--profile]

Each repeat runs the full 24 x 20 transfer of examples/weights_24x10.npz on a fresh twin of each
chip, alternating default and varied, in this one process (so both see the same machine load); a
transfer's time per pulse is its wall time over its pulses (ISPVA pulses and row pulses, each with
its reads), in wall time and in this process's CPU time (the steadier figure on a shared machine).
Prints each repeat, the medians and the ratio varied / default per scheme, with the load average
beside them. Goal (issue 21): the ratio within 2x. ``--profile`` prints cProfile's
top functions of one varied-chip half-bias transfer instead. Numbers are this machine's.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from pathlib import Path

from rramlab.protocols import transfer
from rramlab.protocols.ispva import IspvaSettings
from rramlab.protocols.weights import load_weights
from rramlab.sim.virtual_array import Variability, VirtualArray

ROOT = Path(__file__).resolve().parents[1]


def one_transfer(levels, scheme: str, seed: int | None) -> tuple[float, int, float]:
    """(wall seconds, pulses, CPU seconds) of one full transfer on a fresh twin: the default chip
    (seed None) or a chip with typical spread drawn from ``seed``."""
    va = VirtualArray(engine="fast", seed=0 if seed is None else seed,
                      variability=None if seed is None else Variability.typical())
    p = transfer.plan(transfer.TransferSettings(scheme=scheme), IspvaSettings(), levels, va)
    start, cpu = time.perf_counter(), time.process_time()
    records = list(transfer.run(va, p))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall, transfer.summarise(p, records, wall)["pulses"], cpu


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(ROOT / "examples" / "weights_24x10.npz"))
    ap.add_argument("--seed", type=int, default=1, help="seed of the varied chip")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--schemes", nargs="*", default=list(transfer.SCHEMES))
    ap.add_argument("--profile", action="store_true", help="cProfile one varied half-bias transfer")
    args = ap.parse_args(argv)
    levels = load_weights(args.weights)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        wall, pulses, _ = one_transfer(levels, "half-bias", args.seed)
        prof.disable()
        print(f"seed {args.seed} half-bias: {wall:.2f} s, {pulses} pulses")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    print(f"time per pulse of a full 24 x 20 transfer, fast engine, default chip vs seed {args.seed} "
          f"(typical spread); {args.repeat} interleaved repeats")
    per_pulse = {(s, c): [] for s in args.schemes for c in ("default", "varied")}
    cpu_per_pulse = {key: [] for key in per_pulse}
    pulses = {}
    for r in range(args.repeat):
        for scheme in args.schemes:
            for chip, seed in (("default", None), ("varied", args.seed)):
                wall, n, cpu = one_transfer(levels, scheme, seed)
                per_pulse[scheme, chip].append(wall / n)
                cpu_per_pulse[scheme, chip].append(cpu / n)
                pulses[scheme, chip] = n
                print(f"  repeat {r + 1} {scheme:10s} {chip:8s} {wall:7.2f} s {n:5d} pulses "
                      f"{wall / n * 1e3:6.2f} ms/pulse wall, {cpu / n * 1e3:6.2f} CPU  load {os.getloadavg()[0]:.2f}",
                      flush=True)
    print(f"{'scheme':10s} {'time':5s} {'default ms/pulse':>17s} {'varied ms/pulse':>16s} {'ratio':>6s}  "
          "pulses (default, varied)")
    for scheme in args.schemes:
        for what, table in (("wall", per_pulse), ("CPU", cpu_per_pulse)):
            d = statistics.median(table[scheme, "default"])
            v = statistics.median(table[scheme, "varied"])
            print(f"{scheme:10s} {what:5s} {d * 1e3:17.2f} {v * 1e3:16.2f} {v / d:6.2f}  "
                  f"{pulses[scheme, 'default']}, {pulses[scheme, 'varied']}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
