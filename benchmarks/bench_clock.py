"""How long a real 4156C + E5250A bench would take, measured on the virtual bench's clock.

    .venv/bin/python benchmarks/bench_clock.py

The virtual instruments (rramlab.sim.instruments, bench file drivers/benches/virtual.toml) advance a
bench clock as they act: every pulse by its hold time + period (PT; the shortest period the 4156C
allows is max(5 ms, width + 4 ms)), every current reading by its integration time (medium: 1 power
line cycle, 20 ms at 50 Hz, on the 10 nA range and above; 5 PLC on 1 nA), every relay change by
the relay operate time and the settling wait after it, every GPIB transaction by a bus overhead
(see BenchTiming for the figures and which are assumptions). So

    bench time = pulses x period + reads x integration + switching + bus

Part 1 runs ISPP (one cycle, 62 pulses, a read after each) through ProbeStation + drivers + virtual
instruments at 2, 20 and 30 ms pulses and prints the clock next to that sum. The pulse period depends
on the PT priority the drivers send: priority 0 keeps the pulse width; priority 1, or none, lets a
pulse shorter than its reading's integration (20 ms at medium) stretch to it.

Part 2 runs the real weight transfer (``protocols/transfer.py``, half-bias scheme, the paper's
hardware method: +V/2 on the wordline, -V/2 on the bitline, a 1 V read after every pulse, ISPVA until
the cell is within tolerance, then a re-read of the whole region) of ``examples/weights_24x10.npz``
(240 programmed cells, 240 left in HRS: the full 24 x 20 differential region) through ProbeStation +
drivers + virtual instruments at 20 and 30 ms pulses, and prints the bench clock broken down into
pulses x period + reads x integration + switching + bus, and per operation (the whole-region reads,
ISPVA's pulses and reads): relay waits, VISA transactions, readings. Goal (issue 21): at most 60 s
of bench time at 20 ms (was 112.6 s: the whole-region reads moved the ammeter bitline by bitline,
ISPVA re-read every cell after the no-op programming_done, and the break of every route waited out
the contact settling that only a make needs). ``rramlab transfer --bench
drivers/benches/virtual.toml`` prints the same estimate after a run.
"""

from __future__ import annotations

import time
from pathlib import Path

from rramlab.drivers.probe_station import BENCH_DIR, connect_bench, load_bench
from rramlab.protocols import ispp, transfer
from rramlab.protocols.ispva import IspvaSettings
from rramlab.protocols.weights import load_weights
from rramlab.sim.instruments import BenchWiring, VirtualBench, format_duration
from rramlab.sim.virtual_array import VirtualArray

PRIORITY_NOTE = ("  (the drivers sent PT priority {priority}: with priority 0 a pulse keeps its width; with 1 or "
                 "none it waits for its\n   reading's integration, 20 ms at medium integration, so a 2 ms pulse "
                 "takes a 24 ms period)")


def virtual_station(seed: int = 0):
    config = load_bench(BENCH_DIR / "virtual.toml")
    bench = VirtualBench(VirtualArray(seed=seed, engine="fast"), BenchWiring.from_config(config))
    return connect_bench(config, resource_manager=bench.resource_manager()), bench


def breakdown(clock, label: str) -> None:
    s, c = clock.seconds, clock.counts
    period = s["pulse"] / c["pulse"] if c["pulse"] else 0.0
    reading = s["measurement"] / c["measurement"] if c["measurement"] else 0.0
    print(f"  {label}: {clock.summary()}")
    print(f"    = {c['pulse']} pulses x {period * 1e3:.1f} ms + {c['measurement']} reads x {reading * 1e3:.1f} ms "
          f"+ switching {s['switching']:.3f} s + bus {c['bus']} x {clock.timing.transaction_s * 1e3:g} ms"
          f" = {s['pulse'] + s['measurement'] + s['switching'] + s['bus']:.3f} s")


def part1() -> None:
    print("1. ISPP, one cycle on cell (3,7), through ProbeStation + drivers + virtual instruments")
    for width in (2e-3, 20e-3, 30e-3):
        station, bench = virtual_station()
        bench.clock.reset()
        t0 = time.perf_counter()
        with station:
            n = len(list(ispp.run(station, ispp.plan(ispp.IsppSettings(pulse_width_s=width, cycles=1), (3, 7),
                                                         station))))
        wall = time.perf_counter() - t0
        breakdown(bench.clock, f"{n} pulses of {width * 1e3:g} ms (simulated in {wall:.2f} s wall time)")
    priority = bench.analyzer.state.timing.priority
    print(PRIORITY_NOTE.format(priority="(none)" if priority is None else priority))


EXAMPLE_WEIGHTS = Path(__file__).resolve().parents[1] / "examples" / "weights_24x10.npz"


class PerOperation:
    """The bench clock's counts and seconds charged to each seam call of a station (pulse_cell,
    read_cell, a whole-region read, ...), counted at the outermost call only."""

    def __init__(self, station, clock, names=("read", "read_cell", "pulse_cell", "pulse", "vmm",
                                              "programming_done")):
        self.clock, self.ops, self._depth = clock, {}, 0
        for name in names:
            setattr(station, name, self._wrap(name, getattr(station, name)))

    def _wrap(self, name, call):
        def counted(*args, **kwargs):
            if self._depth:
                return call(*args, **kwargs)
            clock = self.clock
            counts, seconds = dict(clock.counts), dict(clock.seconds)
            self._depth += 1
            try:
                return call(*args, **kwargs)
            finally:
                self._depth -= 1
                key = f"read of {len(args[0])} cells" if name == "read" else name
                op = self.ops.setdefault(key, {"calls": 0, "s": 0.0, **{c: 0 for c in clock.counts}})
                op["calls"] += 1
                op["s"] += sum(clock.seconds.values()) - sum(seconds.values())
                for c in clock.counts:
                    op[c] += clock.counts[c] - counts[c]
        return counted

    def print(self) -> None:
        print(f"    {'per operation':<22s} {'calls':>6s} {'relay waits':>12s} {'VISA':>7s} {'readings':>9s} "
              f"{'bench s':>8s}   (per call: relay waits, VISA transactions, ms)")
        for key, op in self.ops.items():
            n = op["calls"]
            print(f"    {key:<22s} {n:6d} {op['switching']:12d} {op['bus']:7d} {op['measurement']:9d} {op['s']:8.1f}"
                  f"   ({op['switching'] / n:.2f}, {op['bus'] / n:.1f}, {op['s'] / n * 1e3:.0f})")


def part2(width: float) -> None:
    print(f"\n2. Full 24 x 20 half-bias transfer of {EXAMPLE_WEIGHTS.name} at {width * 1e3:g} ms pulses, the transfer "
          "protocol on the virtual bench")
    station, bench = virtual_station()
    clock = bench.clock
    levels = load_weights(EXAMPLE_WEIGHTS)
    per_op = PerOperation(station, clock)
    t0 = time.perf_counter()
    with station:
        clock.reset()
        plan_, records, _ = transfer.write_levels(station, levels, transfer.TransferSettings(scheme="half-bias"),
                                                  IspvaSettings(pulse_width_s=width))
    wall = time.perf_counter() - t0
    rep = transfer.summarise(plan_, records, wall)
    s, c = clock.seconds, clock.counts
    period = s["pulse"] / c["pulse"] if c["pulse"] else 0.0
    reading = s["measurement"] / c["measurement"] if c["measurement"] else 0.0
    timing = clock.timing
    print(f"  {rep['cells']} cells ({rep['programmed_cells']} programmed, {rep['hrs_cells']} in HRS): {rep['pulses']} "
          f"pulses, RMSE {rep['rmse_s'] * 1e9:.2f} nS, {rep['within_2ns']:.1%} within +-2 nS, "
          f"{rep['left_out_of_tolerance']} left out of tolerance; simulated in {wall:.1f} s wall time")
    rows = [
        (f"pulses     {c['pulse']:6d} x {period * 1e3:.1f} ms (period)", s["pulse"]),
        (f"reads      {c['measurement']:6d} x {reading * 1e3:.1f} ms (integration)", s["measurement"]),
        (f"switching  {c['switching']:6d} relay changes/waits ({timing.relay_operate_s * 1e3:g} ms relays + "
         f"{timing.relay_settle_s * 1e3:g} ms settling)", s["switching"]),
        (f"bus        {c['bus']:6d} GPIB transactions, {timing.transaction_s * 1e3:g} ms each", s["bus"]),
    ]
    for text, sec in rows:
        print(f"    {text:<72s} {sec:8.1f} s")
    print(f"    {'total (the bench clock)':<72s} {clock.now:8.1f} s = {format_duration(clock.now)}")
    per_op.print()


def main() -> int:
    part1()
    for width in (20e-3, 30e-3):
        part2(width)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
