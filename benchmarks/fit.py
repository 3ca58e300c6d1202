"""Fit time of the twin to a chip: one 3-cycle ISPP per cell (sim/fit.py, as ``rramlab twin fit``).

Run by hand:  .venv/bin/python benchmarks/fit.py [--full] [--cells N] [--workers 2] [--seed 7]
Default: 24 cells (one per wordline) of a 24 x 24 chip drawn with --seed (typical spreads), under a
minute. --full: all 576 cells (aim: under 5 minutes on 2 cores). Prints the time to measure the
ISPP records on the twin (not part of the fit), the fit time, seconds per cell, and the worst
turn-on error (mV), on-resistance error (%, constrained switches) and fit error (nA rms) against
the hidden chip. Numbers are this machine's, shared with whatever else runs on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from rramlab.protocols import ispp
from rramlab.sim import fit
from rramlab.sim.virtual_array import Variability, VirtualArray


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="every cell of the 24 x 24 chip (576)")
    ap.add_argument("--cells", type=int, default=24, help="cells to fit without --full (default 24)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2: the machine's cores)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    chip = VirtualArray(seed=args.seed, variability=Variability.typical(), engine="fast")
    W, B = chip.geometry.shape
    cells = [(w, b) for w in range(W) for b in range(B)] if args.full else \
        [(k % W, (7 * k) % B) for k in range(args.cells)]
    settings = ispp.IsppSettings(cycles=3)
    t0 = time.perf_counter()
    rows = []
    for cell in cells:
        rows += [dataclasses.asdict(r) for r in ispp.run(chip, ispp.plan(settings, cell, chip))]
    t_measure = time.perf_counter() - t0
    sequences = fit.sequences_from_ispp(rows, dataclasses.asdict(settings))
    t0 = time.perf_counter()
    fits = fit.fit_cells(sequences, workers=args.workers)
    t_fit = time.perf_counter() - t0
    on_err, ron_err = [], []
    for f in fits:
        t = chip.cell_switches[f.wordline, f.bitline]
        order = np.argsort(t[:, 0])
        on_err.append(np.max(np.abs(f.turn_on_v - t[order, 0])))
        weak = {int(n.split()[1]) for n in f.free if n.startswith("on_resistance ")}
        seen = [k for k in range(len(order)) if k not in weak]
        ron_err.append(np.max(np.abs(f.on_resistance[seen] / t[order, 2][seen] - 1)))
    rms = max(f.rms_a for f in fits)
    print(f"{len(cells)} cells, 3-cycle ISPP each ({len(rows)} records), {args.workers} workers")
    print(f"measure on the twin {t_measure:.1f} s; fit {t_fit:.1f} s ({t_fit / len(cells):.3f} s per cell)")
    print(f"worst cell: turn-on {1e3 * max(on_err):.1f} mV, RON {100 * max(ron_err):.1f} %, fit error {rms * 1e9:.3f} nA rms")
    if args.full:
        print(f"goal: under 300 s for 576 cells: {'met' if t_fit < 300 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
