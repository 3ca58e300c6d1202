"""ngspice against the fast engine, measured in the same run, for the operations users repeat.

Run by hand:  .venv/bin/python benchmarks/engines.py [--spice-trains 20] [--trains 10000] [--pulses 2000]
Prints one table. Numbers are this machine's; compare runs on the same machine only.

The chip: 24 x 24 HT-RRAM array, wire 2 ohm per segment, contact 10 ohm, random programmed states.
Inference uses wordlines 0..23 and bitlines 0..19 (10 differential pairs), 25 time steps of 1 V
spikes at random rates per train. The ngspice reference for a spike train is what
VirtualArray(engine="spice") does for vmm: one operating point (.op) per time step, 25 per train;
the fast engine solves all steps of all trains as one batch. A write-verify step is a half-bias
pulse (random cell, 3.0..4.2 V set or -1.0..-1.6 V reset, 1 us rect) followed by a read of that cell.
ngspice times of 200 and 10,000 trains and of the write-verify pulses are extrapolated from the
measured per-item time (defaults: 20 trains, 3 pulses on ngspice, a few minutes on a quiet 2-core
machine; --spice-trains 200 measures all 200, about 20 minutes). An ngspice pulse is a transient whose
rising edge is drawn in 50 mV segments and ends with the state probe (sim/virtual_array.py), so it
costs more than a bare transient did; the fast engine's reads include the read-disturb check.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np


from rramlab.drivers.interface import ArrayGeometry  # noqa: E402
from rramlab.sim.array import ArrayParameters  # noqa: E402
from rramlab.sim.virtual_array import VirtualArray  # noqa: E402

BITLINES = list(range(20))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median_time(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_chip(engine: str, states: np.ndarray) -> VirtualArray:
    chip = VirtualArray(ArrayGeometry(24, 24), array=ArrayParameters(wire_resistance=2.0), engine=engine)
    chip.switch_states = states.copy()
    return chip


def spike_trains(rng, n):
    rates = rng.random((n, 1, 24))
    return (rng.random((n, 25, 24)) < rates).astype(float)


def class_currents(per_train):
    """Accumulated I+ - I- per output pair, (trains, 10)."""
    return per_train[:, 0::2] - per_train[:, 1::2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spice-trains", type=int, default=20, help="trains run on ngspice (default 20)")
    ap.add_argument("--trains", type=int, default=10_000, help="trains on the fast engine (default 10000)")
    ap.add_argument("--pulses", type=int, default=2_000, help="pulse+read pairs on the fast engine")
    ap.add_argument("--spice-pulses", type=int, default=3, help="pulse+read pairs on ngspice")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(2024)
    n = 8
    k = rng.integers(0, n + 1, (24, 24))
    states = np.arange(n)[None, None, :] < k[:, :, None]
    spice = make_chip("spice", states)
    fast = make_chip("fast", states)
    rows = []

    def row(name, t_spice, t_fast, note=""):
        ratio = t_spice / t_fast if t_fast > 0 else float("inf")
        rows.append((name, t_spice, t_fast, ratio, note))

    # warm-up: ngspice library load, device tables
    spice.read_cell(0, 0)
    fast.read_cell(0, 0)

    # one read
    row("one read (cell 0,23)", median_time(lambda: spice.read_cell(0, 23)),
        median_time(lambda: fast.read_cell(0, 23), 50))

    # one spike train, 25 steps
    one = spike_trains(rng, 1)[0]
    row("one spike train (25 steps)", median_time(lambda: spice.vmm(one, BITLINES), 1),
        median_time(lambda: fast.vmm(one, BITLINES), 20))

    # 200 trains: ngspice measured on --spice-trains of them (extrapolated to 200 if fewer), the
    # fast engine on all 200; accuracy over the trains both engines ran
    n_cmp = 200
    trains = spike_trains(rng, max(n_cmp, args.spice_trains))
    rss0 = rss_mb()
    t0 = time.perf_counter()
    ref = np.array([spice.vmm(t, BITLINES).sum(axis=0) for t in trains[:args.spice_trains]])
    t_spice_train = (time.perf_counter() - t0) / args.spice_trains
    spice_calls = args.spice_trains * 25
    spice_rss = rss_mb() - rss0
    t0 = time.perf_counter()
    got = fast.vmm(trains[:n_cmp].reshape(-1, 24), BITLINES).reshape(n_cmp, 25, -1).sum(axis=1)
    t_fast_trains = time.perf_counter() - t0
    m = min(n_cmp, args.spice_trains)
    cls_ref, cls_got = class_currents(ref[:m]), class_currents(got[:m])
    rel = float(np.max(np.abs(cls_got - cls_ref) / np.maximum(np.abs(cls_ref), 1e-30)))
    same = float(np.mean(np.argmax(cls_got, 1) == np.argmax(cls_ref, 1)))
    how = "measured" if args.spice_trains >= n_cmp else f"extrapolated from {args.spice_trains} measured"
    row(f"{n_cmp} spike trains", t_spice_train * n_cmp, t_fast_trains,
        f"ngspice {how}; over {m} trains: class currents max rel err {rel:.1e}, same argmax {same:.1%}")

    # many trains, fast only
    big = spike_trains(rng, args.trains).reshape(-1, 24)
    t0 = time.perf_counter()
    fast.vmm(big, BITLINES)
    t_big = time.perf_counter() - t0
    row(f"{args.trains} spike trains", t_spice_train * args.trains, t_big,
        "ngspice extrapolated")
    del big

    # one half-bias pulse
    def pulse(chip):
        w, b = (int(i) for i in rng.integers(0, 24, 2))
        v = rng.uniform(3.0, 4.2) if rng.random() < 0.7 else rng.uniform(-1.6, -1.0)
        chip.pulse_cell(w, b, v, 1e-6)
        return w, b

    row("one half-bias pulse (1 us)", median_time(lambda: pulse(spice), 3), median_time(lambda: pulse(fast), 50))

    # write-verify traffic
    t0 = time.perf_counter()
    for _ in range(args.spice_pulses):
        spice.read_cell(*pulse(spice))
    t_spice_pr = (time.perf_counter() - t0) / args.spice_pulses
    rss1 = rss_mb()
    t0 = time.perf_counter()
    for _ in range(args.pulses):
        fast.read_cell(*pulse(fast))
    t_fast_wv = time.perf_counter() - t0
    fast_rss = rss_mb() - rss1
    row(f"write-verify: {args.pulses} pulses + reads", t_spice_pr * args.pulses, t_fast_wv, "ngspice extrapolated")

    print(f"{'operation':<40} {'ngspice s':>11} {'fast s':>11} {'ratio':>9}  note")
    for name, ts, tf, ratio, note in rows:
        print(f"{name:<40} {ts:>11.4g} {tf:>11.4g} {ratio:>9.0f}x  {note}")
    print(f"{'RSS growth, fast: ' + str(2 * args.pulses) + ' calls':<40} {'':>11} {fast_rss:>10.1f}M")
    print(f"{'RSS growth, ngspice: ' + str(spice_calls) + ' .op calls':<40} {spice_rss:>10.1f}M")
    print(f"fast-engine pulses handed to ngspice: {fast.spice_pulses}; 2 cores, numpy threads on large batches")


if __name__ == "__main__":
    main()
