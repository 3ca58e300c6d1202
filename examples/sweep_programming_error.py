"""Twin-only sweep: weight-transfer accuracy and cost against the programming error or the wire resistance.

    python examples/sweep_programming_error.py                              # sigma 0, 1, 2, 3 nS
    python examples/sweep_programming_error.py --sigmas 0,1.06,3 --rows 6 --cols 3
    python examples/sweep_programming_error.py --wire-resistances 2,50,200  # sweep the wires instead

For each point a fresh twin chip (same seed) gets the same random weights by the half-bias
transfer with verify. The paper's programming error (a Gaussian conductance error added when a
cell's transfer completes, 1.06 nS) is what verify has to catch: the larger it is, the more cells
land outside +-2 nS after settling and are programmed again. Writes in ``--out``:

* ``sweep.csv``: one row per point: the swept value, RMSE (S), fraction within +-2 nS, pulses per cell;
* ``sweep.png``: RMSE and pulses per cell against the swept value.

The twin only: a probe station has one programming error, its own (there is no --bench here).
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from rramlab import ArrayParameters, VirtualArray
from rramlab.protocols import transfer
from rramlab.protocols.ispva import IspvaSettings


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def transfer_point(levels, seed: int, sigma_s: float, wire_ohm: float) -> dict:
    """One transfer on a fresh chip; the report of transfer.summarise (SI units)."""
    chip = VirtualArray(seed=seed, engine="fast", programming_error_sigma=sigma_s,
                        array=ArrayParameters(wire_resistance=wire_ohm))
    with chip:
        plan = transfer.plan(transfer.TransferSettings(), IspvaSettings(), levels, chip)
        start = time.perf_counter()
        records = list(transfer.run(chip, plan))
    return transfer.summarise(plan, records, time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sigmas", type=floats, default=[0, 1, 2, 3], help="programming-error sigmas (nS), comma-separated")
    p.add_argument("--wire-resistances", type=floats, default=None,
                   help="sweep the wire resistance (ohm per segment) instead, at the paper's 1.06 nS sigma")
    p.add_argument("--rows", type=int, default=12, help="weight rows (default 12)")
    p.add_argument("--cols", type=int, default=5, help="weight columns (default 5)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("."), help="folder for sweep.csv and sweep.png")
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    levels = rng.integers(1, 9, size=(args.rows, args.cols)) * rng.choice([-1, 1], size=(args.rows, args.cols))
    if args.wire_resistances is not None:
        name, unit, points = "wire_resistance_ohm", "ohm", args.wire_resistances
        run = lambda x: transfer_point(levels, args.seed, 1.06e-9, x)  # noqa: E731
    else:
        name, unit, points = "sigma_ns", "nS", args.sigmas
        run = lambda x: transfer_point(levels, args.seed, x * 1e-9, 2.0)  # noqa: E731

    rows = []
    for x in points:
        rep = run(x)
        rows.append({name: x, "rmse_s": rep["rmse_s"], "within_2ns": rep["within_2ns"],
                     "pulses_per_cell": rep["pulses_per_cell"], "wall_s": rep["wall_s"]})
        print(f"{name} = {x:g}: RMSE {rep['rmse_s'] * 1e9:.2f} nS, {rep['within_2ns'] * 100:.1f} % within +-2 nS, "
              f"{rep['pulses_per_cell']:.2f} pulses per cell", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "sweep.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = [r[name] for r in rows]
    ax.plot(xs, [r["rmse_s"] * 1e9 for r in rows], "o-", label="RMSE")
    ax.set_xlabel(f"{name.rsplit('_', 1)[0].replace('_', ' ')} ({unit})")
    ax.set_ylabel("RMSE after transfer (nS)")
    ax2 = ax.twinx()
    ax2.plot(xs, [r["pulses_per_cell"] for r in rows], "s--", color="C1", label="pulses per cell")
    ax2.set_ylabel("pulses per programmed cell")
    fig.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "sweep.png", dpi=120)
    print(f"wrote {args.out / 'sweep.csv'} and {args.out / 'sweep.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
