"""Inference and power of a trained network: train 784-24-10, put its quantised second layer into the
array by the transfer protocol, run 25-step spiking inference through the array, estimate power.

    python examples/inference_and_power.py                                   # the 24 x 24 twin
    python examples/inference_and_power.py --bench drivers/benches/virtual.toml --per-digit 1
    python examples/inference_and_power.py --epochs 3 --per-digit 2 --out results/   # smaller

Writes ``inference.csv`` (one row per image: label, prediction, the 10 class scores summed over the
steps, its average power) and ``confusion.png`` in ``--out``; the transfer, the inference and the
power estimate are three runs in the same run store as the command line (``--store FILE``).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from rramlab import RunStore, VirtualArray, open_bench, record_run
from rramlab.protocols import inference, ispva, mnist, network, power, transfer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", metavar="FILE", help="bench TOML file; without it the twin runs")
    p.add_argument("--variant", choices=("qt", "qtpr"), default="qt", help="QT (3-bit) or QT & PR (pruned, 3-bit)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    p.add_argument("--per-digit", type=int, default=20, help="test images per digit (default 20: the paper's 200)")
    p.add_argument("--seed", type=int, default=1, help="twin: the chip's seed")
    p.add_argument("--store", metavar="FILE", help="run store (default: the one the command line uses)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for inference.csv and confusion.png")
    args = p.parse_args(argv)

    # The software side: data, training, 3-bit quantisation (and pruning for qtpr). No instrument yet.
    data = mnist.load_sample()
    net = network.build_variants(data.train, data.test, network.NetworkSettings(epochs=args.epochs))
    variant = net.variant(args.variant)
    images = mnist.balanced_indices(data.test.labels, args.per_digit, seed=0)
    print(f"{args.variant}: ANN test accuracy {variant.test_accuracy * 100:.1f} %", flush=True)

    width = 2e-3 if args.bench else 2e-6           # a 4156C pulses 0.5 ms to 100 ms
    write = transfer.TransferSettings(scheme="half-bias" if args.bench else "fast", row_width_s=max(width, 2e-3))
    verify = ispva.IspvaSettings(pulse_width_s=width)
    chip = open_bench(args.bench) if args.bench else VirtualArray(seed=args.seed, engine="fast")
    with chip:
        # 1. the second layer into the array: write-verify of every cell, recorded like `rramlab transfer`
        plan_, records, run_id = transfer.write_levels(chip, variant.levels2, write, verify,
                                                       store=RunStore(args.store))
        report = transfer.summarise(plan_, records, wall_s=0.0)
        print(f"transfer (run {run_id}): RMSE {report['rmse_s'] * 1e9:.2f} nS, "
              f"{report['within_2ns'] * 100:.1f} % within +-2 nS", flush=True)

        # 2. spiking inference: plan (rate coding, the software layer, every check) then run through vmm
        inf_settings = inference.InferenceSettings()
        inf_plan = inference.plan(inf_settings, variant, data.test, images, chip)
        with record_run(args.store, "infer", inf_settings, chip) as rec:
            results = []
            for r in inference.run(chip, inf_plan, chunk_images=1 if args.bench else 200):
                rec.add(r)
                results.append(r)

        # 3. power (eqns 1-3) from the cells' measured conductances and the spikes inference applied
        pw_settings = power.PowerSettings()
        with record_run(args.store, "power", pw_settings, chip) as rec:
            powers = []
            for r in power.run(chip, power.plan(pw_settings, inf_plan, chip)):
                rec.add(r)
                powers.append(r)

    accuracy = inference.accuracy_of(results)
    per_class = power.per_class(powers)
    print(f"array accuracy {accuracy * 100:.1f} % on {len(results)} images; "
          f"average power {power.average(powers) * 1e9:.0f} nW")
    print("power per digit (nW): " + " ".join(f"{w * 1e9:.0f}" for w in per_class))

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "inference.csv", "w") as fh:
        fh.write("image,label,prediction," + ",".join(f"score_{c}_a" for c in range(10)) + ",power_w\n")
        for r, pw in zip(results, powers):
            fh.write(f"{r.image},{r.label},{r.prediction}," + ",".join(f"{v:.6e}" for v in r.totals)
                     + f",{pw.average_w:.6e}\n")
    confusion = inference.confusion_matrix([r.label for r in results], [r.prediction for r in results])

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(confusion, cmap="Blues")
    for (i, j), n in np.ndenumerate(confusion):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8)
    ax.set(xlabel="prediction", ylabel="true digit", xticks=range(10), yticks=range(10),
           title=f"{args.variant} on the {chip.backend_name}: {accuracy * 100:.1f} %")
    fig.tight_layout()
    fig.savefig(args.out / "confusion.png", dpi=100)
    print(f"wrote {args.out / 'inference.csv'} and {args.out / 'confusion.png'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the instrument is at 0 V; the runs are marked aborted with every record kept",
              file=sys.stderr)
        sys.exit(130)
