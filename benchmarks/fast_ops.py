"""CPU time of the fast engine's everyday operations, in this process: steadier than wall time on a
shared machine, and what ``benchmarks/before_after.py --scripts fast_ops`` compares between two
checkouts (issue 21's "nothing slower elsewhere").

Run by hand:  .venv/bin/python benchmarks/fast_ops.py

The chip of benchmarks/engines.py (24 x 24, wire 2 ohm, contact 10 ohm, random states up to all 8
switches on). Medians of this process's CPU time (``time.process_time``): a read of one cell (200
calls), one 25-step spike train on 20 bitlines (100 calls), 200 trains (5,000 steps) as the first
batch of a fresh chip (3 chips: what a new chip state costs, the spike model's fit included), and a
half-bias pulse (3.0..4.2 V set or -1.6..-1.0 V reset, 1 us) with a read of its cell (200 calls).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from rramlab.drivers.interface import ArrayGeometry
from rramlab.sim.array import ArrayParameters
from rramlab.sim.virtual_array import VirtualArray

BITLINES = list(range(20))


def median_cpu(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(2024)
    k = rng.integers(0, 9, (24, 24))
    states = np.arange(8)[None, None, :] < k[:, :, None]

    def chip():
        c = VirtualArray(ArrayGeometry(24, 24), array=ArrayParameters(wire_resistance=2.0), engine="fast")
        c.switch_states = states.copy()
        c.read_cell(0, 0)  # the device tables of its states
        return c

    def pulse(c):
        w, b = (int(i) for i in rng.integers(0, 24, 2))
        v = rng.uniform(3.0, 4.2) if rng.random() < 0.7 else rng.uniform(-1.6, -1.0)
        c.pulse_cell(w, b, v, 1e-6)
        c.read_cell(w, b)

    c = chip()
    one = (rng.random((25, 24)) < rng.random((1, 24))).astype(float)
    trains = (rng.random((200, 25, 24)) < rng.random((200, 1, 24))).astype(float).reshape(-1, 24)
    rows = {"one read (cell 0,23)": median_cpu(lambda: c.read_cell(0, 23), 200),
            "one spike train (25 steps)": median_cpu(lambda: c.vmm(one, BITLINES), 100),
            "200 spike trains, a fresh chip's first batch": median_cpu(lambda: chip().vmm(trains, BITLINES), 3),
            "half-bias pulse + read": median_cpu(lambda: pulse(c), 200)}
    print(f"fast engine, CPU time of this process (medians); load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores")
    for name, t in rows.items():
        print(f"  {name:46s}  {t * 1e3:10.3f}  ms")


if __name__ == "__main__":
    main()
