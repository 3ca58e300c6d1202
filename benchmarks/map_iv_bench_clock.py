"""Bench-clock time of the default run of each of the five lab protocols, on the virtual bench.

    .venv/bin/python benchmarks/map_iv_bench_clock.py

Runs each protocol's default plan through ProbeStation, the drivers and the virtual 4156C and
E5250A (``drivers/benches/virtual.toml``), with 20 ms pulses where the protocol pulses (as
benchmarks/bench_clock.py; the twin's 2 us default is below the 4156C's 0.5 ms):

* ``map`` (protocols/array_map.py): the whole 24 x 24 array at 1 V;
* ``iv`` (protocols/iv.py): cell 3,7, 0 -> 4.2 -> 0 -> -1.6 -> 0 V in 25 mV steps;
* ``endurance`` (protocols/endurance.py): cell 3,7, 1000 cycles of 4.2 / -1.6 V, log-spaced reads;
* ``retention`` (protocols/retention.py): the command's default cells (0,0), (0,1), (0,2) programmed
  to 20, 50, 80 nS by ISPVA, then 40 log-spaced reads from 1 s to 2 h. The waits between reads are
  not slept here: each is the outputs going to 0 V (its commands are on the clock) plus the wait's
  length, which is added to the total;
* ``disturb`` (protocols/disturb.py): cell 3,7, 10,000 reads at 1 V (no --neighbours).

It prints the time a real bench would take by the virtual bench's clock (pulses, readings, relay
changes, GPIB transactions; see benchmarks/bench_clock.py for the figures) next to the wall time
of the simulation. About 30 s of CPU time in all, most of it endurance's 2000 and disturb's 10,000
VISA-level operations (on the 2 shared cores here, 1-2 min of wall time).
"""

from __future__ import annotations

import time
from dataclasses import replace

from rramlab.drivers.probe_station import BENCH_DIR, connect_bench, load_bench
from rramlab.protocols import array_map, disturb, endurance, iv, retention
from rramlab.sim.instruments import BenchWiring, VirtualBench, format_duration
from rramlab.sim.virtual_array import VirtualArray

WIDTH_S = 20e-3  # the pulse width of benchmarks/bench_clock.py's transfer


def virtual_station(seed: int = 0):
    config = load_bench(BENCH_DIR / "virtual.toml")
    bench = VirtualBench(VirtualArray(seed=seed, engine="fast"), BenchWiring.from_config(config))
    return connect_bench(config, resource_manager=bench.resource_manager()), bench


def main() -> None:
    waited = []

    def retention_run(st):
        s = retention.RetentionSettings()
        s = replace(s, program=replace(s.program, pulse_width_s=WIDTH_S))

        def wait(seconds):  # as the bench does it (outputs at 0 V), without sleeping
            st.reset_outputs()
            waited.append(seconds)

        return retention.run(st, retention.plan(s, [(0, 0), (0, 1), (0, 2)], [20e-9, 50e-9, 80e-9], st), wait=wait)

    runs = [
        ("map, whole 24 x 24 array at 1 V", lambda st: array_map.run(st, array_map.plan(array_map.MapSettings(), st))),
        ("iv, cell 3,7, 0 -> 4.2 -> 0 -> -1.6 -> 0 V, 25 mV steps",
         lambda st: iv.run(st, iv.plan(iv.IvSettings(), st, (3, 7)))),
        ("endurance, cell 3,7, 1000 cycles, log reads, 20 ms pulses",
         lambda st: endurance.run(st, endurance.plan(endurance.EnduranceSettings(pulse_width_s=WIDTH_S), (3, 7), st))),
        ("retention, 3 cells to 20/50/80 nS, 40 log reads 1 s .. 2 h, 20 ms pulses", retention_run),
        ("disturb, cell 3,7, 10,000 reads at 1 V",
         lambda st: disturb.run(st, disturb.plan(disturb.DisturbSettings(pulse_width_s=WIDTH_S), (3, 7), st))),
    ]
    for label, make in runs:
        station, bench = virtual_station()
        waited.clear()
        with station:
            bench.clock.reset()
            start = time.perf_counter()
            n = sum(1 for _ in make(station))
            wall = time.perf_counter() - start
        total = bench.clock.now + sum(waited)
        waits = f" + {len(waited)} waits {format_duration(sum(waited))} = {format_duration(total)}" if waited else ""
        print(f"{label}: {n} records, {bench.clock.summary()}{waits}; simulated in {wall:.2f} s wall time")


if __name__ == "__main__":
    main()
