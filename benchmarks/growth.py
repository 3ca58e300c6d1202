"""How the fast engine's cost grows with the array: a ``vmm`` step and a whole-array read at 24 x 24,
48 x 48 and 96 x 96 cells, per cell.

Run by hand:  .venv/bin/python benchmarks/growth.py [--repeat 5]

The chip: N x N twin (wire 2 ohm, contact 10 ohm), every cell at a random level of its lower half
(up to about 40 nS, as a network layer is programmed). A ``vmm`` step: one time step, a random third
of the wordlines at 1 V (timed over 10 calls); a whole-array read: ``read`` of every cell at 1 V (N
steps of one wordline each). Medians of ``--repeat``, interleaved over the sizes. Goal (issue 21): the 96 x 96 step and
read at most 30x the 24 x 24 ones (16x the cells); before the wire drops were computed by prefix
sums a step cost 190x and a read 1,000x; before the read model (sim/nodal.py ReadModel: only the
driven row solved, the undriven cells folded in per chip state) a 96 x 96 read cost 34-62x. Numbers are this machine's; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from rramlab.drivers.interface import ArrayGeometry
from rramlab.sim.array import ArrayParameters
from rramlab.sim.virtual_array import VirtualArray

SIZES = (24, 48, 96)
#: vmm steps timed together (one is a millisecond at 24 x 24, below the scheduler's noise)
STEP_LOOP = 10


def chip(n: int, rng) -> VirtualArray:
    va = VirtualArray(ArrayGeometry(n, n), array=ArrayParameters(wire_resistance=2.0), engine="fast")
    k = va.device.n_switches
    va.switch_states = np.arange(k)[None, None, :] < rng.integers(0, k // 2 + 1, (n, n))[:, :, None]
    return va


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(5)
    chips = {n: chip(n, rng) for n in SIZES}
    steps = {n: (rng.random(n) < 1 / 3).astype(float) for n in SIZES}
    cells = {n: [(w, b) for w in range(n) for b in range(n)] for n in SIZES}
    for n in SIZES:   # warm-up: device tables
        chips[n].vmm(steps[n])
        chips[n].read(cells[n][:1])
    t_step = {n: [] for n in SIZES}
    t_read = {n: [] for n in SIZES}
    for _ in range(args.repeat):
        for n in SIZES:
            t0 = time.perf_counter()
            for _ in range(STEP_LOOP):
                chips[n].vmm(steps[n])
            t_step[n].append((time.perf_counter() - t0) / STEP_LOOP)
            t0 = time.perf_counter()
            chips[n].read(cells[n])
            t_read[n].append(time.perf_counter() - t0)
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    print(f"fast engine cost against array size (median of {args.repeat}); load average {load} on "
          f"{os.cpu_count()} cores")
    print(f"{'array':>8s} {'cells':>6s} {'vmm step ms':>12s} {'us/cell':>8s} {'x 24':>6s}   "
          f"{'whole read ms':>13s} {'us/cell':>8s} {'x 24':>6s}")
    base_s, base_r = statistics.median(t_step[SIZES[0]]), statistics.median(t_read[SIZES[0]])
    for n in SIZES:
        s, r = statistics.median(t_step[n]), statistics.median(t_read[n])
        print(f"{n:>4d}x{n:<3d} {n * n:6d} {s * 1e3:12.2f} {s / (n * n) * 1e6:8.3f} {s / base_s:6.1f}   "
              f"{r * 1e3:13.1f} {r / (n * n) * 1e6:8.3f} {r / base_r:6.1f}")


if __name__ == "__main__":
    main()
