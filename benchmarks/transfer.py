"""Weight transfer on the twin: wall time and pulses per cell of a full 24 x 20 transfer by each
scheme, on the exact device and on chips with typical device-to-device spread (what ``--seed``
draws: ``Variability.typical()``), and the time of one programming pulse (with its verify read) on
each engine.

Run by hand:  .venv/bin/python benchmarks/transfer.py [--weights examples/weights_24x10.npz] [--seeds 1 2 3]
              [--spice-pulses 5]
Prints two tables. Goal: each full transfer under 60 s on 2 cores. Numbers are this machine's.

The transfers run on the fast engine (as ``rramlab transfer`` does on the twin); the per-pulse table
shows why: the auto engine hands every row-parallel pulse of the fast scheme to ngspice. Per-pulse
times: a half-bias set pulse (rect, 2 us) and a fast-scheme row pulse (tri, 2 ms, 3 written and 7
inhibited bitlines), each followed by a read of the cells it wrote, on a 24 x 24 chip.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from rramlab.protocols import transfer
from rramlab.protocols.ispva import IspvaSettings
from rramlab.protocols.weights import load_weights
from rramlab.sim.virtual_array import Variability, VirtualArray

ROOT = Path(__file__).resolve().parents[1]


def full_transfer(levels, scheme: str, engine: str = "fast", seed: int = 0, varied: bool = False) -> dict:
    """The transfer report on the exact device (``varied`` False) or on a chip drawn from ``seed``
    with typical device-to-device spread."""
    va = VirtualArray(engine=engine, seed=seed, variability=Variability.typical() if varied else None)
    p = transfer.plan(transfer.TransferSettings(scheme=scheme), IspvaSettings(), levels, va)
    start = time.perf_counter()
    records = list(transfer.run(va, p))
    return transfer.summarise(p, records, time.perf_counter() - start)


def pulse_times(engine: str, n: int) -> tuple[float, float]:
    """Median seconds of (half-bias pulse + read, row pulse + read) on ``engine``."""
    rng = np.random.default_rng(1)
    va = VirtualArray(engine=engine, seed=1)
    half, row = [], []
    for i in range(n):
        w, b = int(rng.integers(24)), int(rng.integers(20))
        v = float(3.3 + 0.1 * rng.integers(8))
        t = time.perf_counter()
        va.pulse_cell(w, b, v, 2e-6)
        va.read_cell(w, b)
        half.append(time.perf_counter() - t)
        written = sorted(rng.choice(10, 3, replace=False).tolist())
        wl, bl = transfer.row_pulse_voltages(va.geometry, w, written, v, 0.5)
        bl[10:] = 0.5 * v  # the pair's negative half is inhibited too
        t = time.perf_counter()
        va.pulse(wl, bl, 2e-3, "tri")
        va.read([(w, c) for c in written])
        row.append(time.perf_counter() - t)
        va.pulse(np.full(24, -0.75), np.full(24, 0.75), 2e-6)  # whole array back to HRS
    return statistics.median(half), statistics.median(row)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(ROOT / "examples" / "weights_24x10.npz"))
    ap.add_argument("--seeds", type=int, nargs="*", default=[1], help="seeds of chips with typical spread")
    ap.add_argument("--pulses", type=int, default=40, help="pulses timed per fast/auto engine")
    ap.add_argument("--spice-pulses", type=int, default=5, help="pulses timed on ngspice")
    args = ap.parse_args(argv)
    levels = load_weights(args.weights)
    print(f"full 24 x 20 transfer of {args.weights} ({int(np.count_nonzero(levels))} programmed cells), "
          "fast engine")
    print(f"{'chip':10s} {'scheme':10s} {'wall s':>8s} {'pulses':>7s} {'per cell':>9s} {'row pulses':>10s} "
          f"{'RMSE nS':>8s} {'+-2 nS %':>9s} {'+-4 nS %':>9s} {'left out':>9s}")
    for chip in ["exact"] + [f"seed {s}" for s in args.seeds]:
        for scheme in transfer.SCHEMES:
            if chip == "exact":
                r = full_transfer(levels, scheme)
            else:
                r = full_transfer(levels, scheme, seed=int(chip.split()[1]), varied=True)
            print(f"{chip:10s} {scheme:10s} {r['wall_s']:8.2f} {r['pulses']:7d} {r['pulses_per_cell']:9.2f} "
                  f"{r['row_pulses']:10d} {r['rmse_s'] * 1e9:8.2f} {r['within_2ns'] * 100:9.1f} "
                  f"{r['within_4ns'] * 100:9.1f} {r['left_out_of_tolerance']:9d}", flush=True)
    print()
    print(f"{'engine':8s} {'half-bias pulse + read ms':>26s} {'row pulse + read ms':>20s}")
    for engine, n in (("fast", args.pulses), ("auto", max(3, args.spice_pulses)), ("spice", args.spice_pulses)):
        half, row = pulse_times(engine, n)
        print(f"{engine:8s} {half * 1e3:26.1f} {row * 1e3:20.1f}")


if __name__ == "__main__":
    main()
