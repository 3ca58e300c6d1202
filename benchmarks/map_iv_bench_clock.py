"""Bench-clock time of the default `rramlab map` and `rramlab iv` runs, on the virtual bench.

    .venv/bin/python benchmarks/map_iv_bench_clock.py

Runs each protocol's default plan (``protocols/array_map.py``: the whole 24 x 24 array at 1 V;
``protocols/iv.py``: 0 -> 4.2 -> 0 -> -1.6 -> 0 V in 25 mV steps on cell 3,7) through ProbeStation,
the drivers and the virtual 4156C and E5250A (``drivers/benches/virtual.toml``), and prints the
time a real bench would take by the virtual bench's clock (readings, relay changes, GPIB
transactions; see benchmarks/bench_clock.py for the figures), next to the wall time of the
simulation. A few seconds in all.
"""

from __future__ import annotations

import time

from rramlab.drivers.probe_station import BENCH_DIR, connect_bench, load_bench
from rramlab.protocols import array_map, iv
from rramlab.sim.instruments import BenchWiring, VirtualBench
from rramlab.sim.virtual_array import VirtualArray


def virtual_station(seed: int = 0):
    config = load_bench(BENCH_DIR / "virtual.toml")
    bench = VirtualBench(VirtualArray(seed=seed, engine="fast"), BenchWiring.from_config(config))
    return connect_bench(config, resource_manager=bench.resource_manager()), bench


def main() -> None:
    runs = [
        ("map, whole 24 x 24 array at 1 V", lambda st: array_map.run(st, array_map.plan(array_map.MapSettings(), st))),
        ("iv, cell 3,7, 0 -> 4.2 -> 0 -> -1.6 -> 0 V, 25 mV steps",
         lambda st: iv.run(st, iv.plan(iv.IvSettings(), st, (3, 7)))),
    ]
    for label, make in runs:
        station, bench = virtual_station()
        with station:
            bench.clock.reset()
            start = time.perf_counter()
            n = sum(1 for _ in make(station))
            wall = time.perf_counter() - start
            print(f"{label}: {n} records, {bench.clock.summary()}; simulated in {wall:.2f} s wall time")


if __name__ == "__main__":
    main()
