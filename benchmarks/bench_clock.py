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

Part 2 estimates a full 24 x 20 weight transfer by the half-bias scheme (the paper's hardware
method: +V/2 on the wordline, -V/2 on the bitline, a 1 V read after every pulse, repeat until the
cell is within tolerance). Until the transfer protocol lands, the number of pulses a cell needs is
measured with a stand-in write-verify on the virtual bench: set pulses rising from 3.0 V in 25 mV
steps, a read after each, until the cell is within 1 nS below its target; one sample cell per
target level (10 ... 80 nS), starting from the reset state. The transfer of 480 cells is then
480 / 8 cells per level x the measured pulses, reads and switching of that level.
"""

from __future__ import annotations

import time

import numpy as np

from rramlab.drivers.probe_station import BENCH_DIR, connect_bench, load_bench
from rramlab.protocols import ispp
from rramlab.sim.instruments import BenchWiring, VirtualBench, format_duration
from rramlab.sim.virtual_array import VirtualArray

PRIORITY_NOTE = ("  (the drivers sent PT priority {priority}: with priority 0 a pulse keeps its width; with 1 or "
                 "none it waits for its\n   reading's integration, 20 ms at medium integration, so a 2 ms pulse "
                 "takes a 24 ms period)")
TARGETS_S = [10e-9 * k for k in range(1, 9)]  # the paper's 3-bit levels G1..G8
CELLS = 24 * 20


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


def write_to_target(station, cell, target: float, read_v: float = 1.0, tolerance: float = 1e-9,
                    start: float = 3.0, step: float = 0.025, stop: float = 4.3, width: float = 20e-3) -> tuple[int, float]:
    """Stand-in write-verify: rising set pulses until the read is within ``tolerance`` below target.
    Returns (pulses, final conductance S)."""
    g = station.read_cell(*cell, read_v) / read_v
    pulses = 0
    v = start
    while g < target - tolerance and v <= stop + 1e-9:
        station.pulse_cell(*cell, round(v, 4), width)
        pulses += 1
        g = station.read_cell(*cell, read_v) / read_v
        v += step
    return pulses, g


def part2(width: float) -> None:
    print(f"\n2. Full 24 x 20 half-bias transfer at {width * 1e3:g} ms pulses (estimate)")
    station, bench = virtual_station()
    clock = bench.clock
    per_level = []
    with station:
        for k, target in enumerate(TARGETS_S):
            cell = (2 * k + 1, 3 * k + 2)  # a different wordline and bitline for every level: full re-routing
            before = dict(clock.seconds), dict(clock.counts)
            pulses, g = write_to_target(station, cell, target, width=width)
            sec = {c: clock.seconds[c] - before[0][c] for c in clock.seconds}
            cnt = {c: clock.counts[c] - before[1][c] for c in clock.counts}
            per_level.append((target, pulses, g, sec, cnt))
            print(f"  target {target * 1e9:4.0f} nS: {pulses:2d} pulses, {cnt['measurement']:2d} reads, "
                  f"reached {g * 1e9:5.1f} nS; bench time {format_duration(sum(sec.values()))} "
                  f"(pulses {sec['pulse']:.2f} s, reads {sec['measurement']:.2f} s, switching "
                  f"{sec['switching']:.3f} s, bus {sec['bus']:.3f} s)")
    per = CELLS / len(TARGETS_S)
    n_p = per * sum(p for _, p, _, _, _ in per_level)
    n_r = per * sum(c["measurement"] for *_, c in per_level)
    t = {c: per * sum(s[c] for *_, s, _ in per_level) for c in per_level[0][3]}
    period = per_level[-1][3]["pulse"] / per_level[-1][1]
    reading = per_level[-1][3]["measurement"] / per_level[-1][4]["measurement"]
    total = sum(t.values())
    print(f"  {CELLS} cells, targets spread evenly over the 8 levels ({per:g} cells per level):")
    timing = bench.clock.timing
    rows = [
        (f"pulses     {n_p:6.0f} x {period * 1e3:.1f} ms (period = width + 4 ms)", t["pulse"]),
        (f"reads      {n_r:6.0f} x {reading * 1e3:.1f} ms (medium integration, 1 PLC at 50 Hz)", t["measurement"]),
        (f"switching  routing each cell ({timing.relay_operate_s * 1e3:g} ms relays + {timing.relay_settle_s * 1e3:g} ms "
         f"settling per change)", t["switching"]),
        (f"bus        GPIB transactions, {timing.transaction_s * 1e3:g} ms each", t["bus"]),
    ]
    for text, sec in rows:
        print(f"    {text:<72s} {sec:8.1f} s")
    print(f"    {'total':<72s} {total:8.1f} s = {format_duration(total)}")


def main() -> int:
    part1()
    for width in (20e-3, 30e-3):
        part2(width)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
