"""Write-verify (ISPVA) of a region of the array to random levels, with its cumulative-distribution plot.

    python examples/write_verify_region.py                                  # 8 x 8 cells of the twin
    python examples/write_verify_region.py --rows 2 --cols 2                # quick
    python examples/write_verify_region.py --bench drivers/benches/sim.toml --rows 1 --cols 2

Each cell of the rows x cols region at wordline 0, bitline 0 gets a target drawn from the paper's
eight levels (10 ... 80 nS) and is programmed by ISPVA: read at 1 V, set pulses aimed at the level
and stepped by the measured error, a reset on overshoot, until within +-2 nS. Writes in ``--out``:

* ``ispva.csv``: one row per cell (wordline, bitline, target_s, converged, pulses, conductance_s, error_s);
* ``ispva_cdf.png``: the cumulative distribution of the final conductance of each level (as Fig. 4b).

Records go to the same run store as ``rramlab ispva`` (``--store FILE`` to choose it).
"""

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on a headless lab PC and in CI
import matplotlib.pyplot as plt
import numpy as np

from rramlab import VirtualArray, open_bench, record_run, records_frame
from rramlab.protocols import ispva


def cdf_plot(results, path: Path, tolerance_s: float) -> None:
    """One step curve per target level: fraction of cells at or below each conductance."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for target in sorted({r.target_s for r in results}):
        g = np.sort([r.conductance_s for r in results if r.target_s == target]) * 1e9
        ax.step(g, np.arange(1, g.size + 1) / g.size, where="post", label=f"{target * 1e9:.0f} nS")
        ax.axvspan((target - tolerance_s) * 1e9, (target + tolerance_s) * 1e9, color="0.9", zorder=0)
    ax.set_xlabel("final conductance at 1 V (nS)")
    ax.set_ylabel("cumulative fraction of cells")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", metavar="FILE", help="bench TOML file; without it the twin runs")
    p.add_argument("--visa-log", metavar="FILE", help="with --bench: log every VISA message")
    p.add_argument("--rows", type=int, default=8, help="wordlines in the region (default 8)")
    p.add_argument("--cols", type=int, default=8, help="bitlines in the region (default 8)")
    p.add_argument("--max-pulses", type=int, default=40, help="pulse budget per cell")
    p.add_argument("--width", type=float, default=None, help="pulse width (s); default 2 us twin, 2 ms bench")
    p.add_argument("--seed", type=int, default=1, help="seed of the targets and of the twin chip")
    p.add_argument("--store", metavar="FILE", help="run store (default: the one the command line uses)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for ispva.csv and ispva_cdf.png")
    args = p.parse_args(argv)

    width = args.width if args.width is not None else (2e-3 if args.bench else 2e-6)
    settings = ispva.IspvaSettings(max_pulses=args.max_pulses, pulse_width_s=width)
    cells = [(w, b) for w in range(args.rows) for b in range(args.cols)]
    targets = np.random.default_rng(args.seed).choice(ispva.PAPER_LEVELS_S, size=len(cells))

    # the fast engine: half-bias programming and reads never need ngspice's transient
    chip = open_bench(args.bench, visa_log=args.visa_log) if args.bench else VirtualArray(seed=args.seed, engine="fast")
    records = []
    # the run row keeps the settings and what was asked of each cell
    run_settings = {**asdict(settings), "cells": cells, "targets_s": targets.tolist()}
    with chip, record_run(args.store, "ispva", run_settings, chip) as rec:
        plan = ispva.plan(settings, cells, targets, chip)   # refuses bad cells/targets/voltages before any pulse
        for record in ispva.run(chip, plan):
            rec.add(record)
            records.append(record)

    args.out.mkdir(parents=True, exist_ok=True)
    results = [r for r in records if isinstance(r, ispva.IspvaResult)]
    records_frame(results).drop(columns="type").to_csv(args.out / "ispva.csv", index=False)
    cdf_plot(results, args.out / "ispva_cdf.png", settings.tolerance_s)
    errors = [r.error_s for r in results]
    print(f"{len(results)} cells on the {chip.backend_name}: {ispva.within_fraction(errors, 2e-9) * 100:.1f} % within "
          f"+-2 nS, {np.mean([r.pulses for r in results]):.2f} pulses per cell (run {rec.run_id} in {rec.store.path})")
    print(f"wrote {args.out / 'ispva.csv'} and {args.out / 'ispva_cdf.png'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the run is marked aborted in the store, with every record it took", file=sys.stderr)
        sys.exit(130)
