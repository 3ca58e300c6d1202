"""Wall time of the ngspice twin (engine="spice")'s basic operations, and memory over 1,000 array reads.

Run by hand:  .venv/bin/python benchmarks/twin_timings.py [--reads 1000]
Prints one table. Numbers are this machine's; compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


from engines import median_time as timed, rss_mb  # noqa: E402
from rramlab.protocols.ispp import IsppSettings, run_ispp  # noqa: E402
from rramlab.sim.virtual_array import VirtualArray  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reads", type=int, default=1000, help="array reads for the memory check")
    args = ap.parse_args()
    kw = {"engine": "spice"}  # the reference; benchmarks/engines.py compares it with the fast engine
    rows = []

    t = timed(lambda: list(run_ispp(VirtualArray.lone_device(**kw), IsppSettings(cycles=3))), repeat=3)
    rows.append(("3-cycle ISPP of one device (186 pulses + 186 reads)", t))

    chip = VirtualArray(**kw)
    rng = np.random.default_rng(0)
    chip.switch_states[:] = rng.random(chip.switch_states.shape) < 0.5
    chip.read_cell(0, 0)  # load the library once
    rows.append(("one array read (24 x 24, 1 cell)", timed(lambda: chip.read_cell(5, 5), repeat=5)))
    spikes = (rng.random((25, 24)) < 0.5).astype(float)
    rows.append(("one 25-step vmm of the array (24 wordlines -> 24 bitlines)", timed(lambda: chip.vmm(spikes), repeat=2)))
    rows.append(("one half-bias pulse on the array (4.2 V, 2 us)", timed(lambda: chip.pulse_cell(3, 7, 4.2, 2e-6), repeat=3)))

    print(f"{'operation':<62} {'wall time':>12}")
    for name, secs in rows:
        print(f"{name:<62} {secs * 1e3:>9.1f} ms")

    before = rss_mb()
    t0 = time.perf_counter()
    for i in range(args.reads):
        chip.read_cell(i % 24, (7 * i) % 24)
    elapsed = time.perf_counter() - t0
    after = rss_mb()
    print(f"{'RSS before ' + str(args.reads) + ' array reads':<62} {before:>9.1f} MB")
    print(f"{'RSS after ' + str(args.reads) + ' array reads':<62} {after:>9.1f} MB")
    print(f"{'growth per 1,000 reads':<62} {(after - before) / args.reads * 1000:>9.1f} MB")
    print(f"{'mean time per read over the run':<62} {elapsed / args.reads * 1e3:>9.1f} ms")


if __name__ == "__main__":
    main()
