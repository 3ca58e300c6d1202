"""Endurance: cycles per second on the twin's fast engine, peak memory against the run's length,
and the bench-clock time of the default run.

    .venv/bin/python benchmarks/endurance.py             # under a minute on an idle machine
    .venv/bin/python benchmarks/endurance.py --million   # adds the 1,000,000-cycle run (~10 min)

1. Speed: ``protocols/endurance.py`` on ``VirtualArray(engine="fast")``, a lone device and cell 3,7
   of the 24 x 24 array, log-spaced reads: cycles per second (wall clock, this machine).
2. Memory: tracemalloc's peak of a streamed run (protocol + summariser + CSV rows) of 2,000 and
   20,000 cycles, driven through the seam's checks against an instrument that answers at once
   (the seam's checks alone take ~0.5 ms a cycle here; a million twin cycles take ~1.5 h), which
   measures what the protocol holds; the twin itself at 300 and 1,000 cycles. ``--million``: the
   same run of 20,000 and of 1,000,000 cycles, each in a fresh process, measured by the process's
   peak resident memory (``ru_maxrss``; tracemalloc would make the million cycles ten times slower):
   a run that kept its records would grow by hundreds of MB.
3. Bench clock: the default run (``rramlab endurance --bench ...`` with its default 1000 cycles,
   log reads, at the 4156C's shortest 0.5 ms and at 2 ms) on the virtual bench, against the
   estimate ``rramlab endurance`` prints before the first pulse.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
import tracemalloc

from rramlab.drivers.interface import CrossbarInstrument
from rramlab.protocols import endurance
from rramlab.sim.virtual_array import VirtualArray


class InstantCrossbar(CrossbarInstrument):
    """A seam instrument that answers at once: LRS after a set, HRS after a reset (A)."""

    backend_name = "instant"

    def __init__(self):
        super().__init__()
        self._lrs = False

    def _pulse(self, wordline_v, bitline_v, width, shape):
        self._lrs = float(max(wordline_v)) > 0 and float(max(wordline_v)) > -float(min(wordline_v))

    def _read(self, cells, v_read):
        return [80e-9 if self._lrs else 1.6e-9 for _ in cells]

    def _vmm(self, wordline_v, bitlines):
        raise NotImplementedError

    def _reset_outputs(self):
        return None


def streamed_run(instrument, cycles: int, cell=(0, 0)) -> int:
    """A run as ``rramlab endurance`` does it: records streamed into a summariser and CSV rows."""
    s = endurance.EnduranceSettings(cycles=cycles)
    summariser = endurance.EnduranceSummariser(s.min_window_ratio)
    sink = csv.writer(io.StringIO())
    n = 0
    for r in endurance.run(instrument, endurance.plan(s, cell, instrument)):
        summariser.add(r)
        sink.writerow(r.csv_row())
        sink = csv.writer(io.StringIO()) if n % 100 == 0 else sink  # rows go to disk in the command
        n += 1
    return n


def peak_bytes(make, cycles: int, cell=(0, 0)) -> tuple[int, float]:
    instrument = make()
    tracemalloc.start()
    t = time.perf_counter()
    streamed_run(instrument, cycles, cell)
    wall = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, wall


def rss_run(cycles: int) -> tuple[float, float]:
    """(peak resident memory in MiB, wall seconds) of a streamed run of ``cycles`` on the instant
    instrument in a fresh Python process (this script with --rss-run)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, __file__, "--rss-run", str(cycles)], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--million", action="store_true", help="also the 1,000,000-cycle run (~10 min)")
    parser.add_argument("--rss-run", type=int, metavar="CYCLES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_run:
        import resource

        t = time.perf_counter()
        streamed_run(InstantCrossbar(), args.rss_run)
        wall = time.perf_counter() - t
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, wall)  # ru_maxrss is KiB on Linux: MiB
        return

    print("1. cycles per second, twin fast engine (2 pulses per cycle, log-spaced reads)")
    for label, make, cell in (("lone device", lambda: VirtualArray.lone_device(engine="fast"), (0, 0)),
                              ("cell 3,7 of 24 x 24", lambda: VirtualArray(engine="fast"), (3, 7))):
        chip = make()
        cycles = 500 if cell == (0, 0) else 100
        t = time.perf_counter()
        streamed_run(chip, cycles, cell)
        wall = time.perf_counter() - t
        print(f"  {label}: {cycles} cycles in {wall:.2f} s = {cycles / wall:,.0f} cycles/s")

    print("2. peak memory (tracemalloc) of a streamed run")
    small, _ = peak_bytes(InstantCrossbar, 2_000)
    big, wall = peak_bytes(InstantCrossbar, 20_000)
    print(f"  protocol through the seam on an instant instrument: 2,000 cycles {small / 1024:.1f} KiB, "
          f"20,000 cycles {big / 1024:.1f} KiB (ratio {big / small:.2f}; took {wall:.1f} s)")
    if args.million:
        (rss_small, _), (rss_big, wall) = rss_run(20_000), rss_run(1_000_000)
        print(f"  peak resident memory of the whole process (fresh each): 20,000 cycles {rss_small:.1f} MiB, "
              f"1,000,000 cycles {rss_big:.1f} MiB (+{rss_big - rss_small:.1f} MiB; {1_000_000 / wall:,.0f} "
              f"cycles/s, took {wall:.0f} s)")
    twin = [300, 1000]
    peaks = [peak_bytes(lambda: VirtualArray.lone_device(engine="fast"), n)[0] for n in twin]
    print("  twin lone device: " + ", ".join(f"{n:,} cycles {p / 1024:.1f} KiB" for n, p in zip(twin, peaks)))

    print("3. bench clock of the default run (1000 cycles, log reads) on the virtual bench")
    from rramlab.app.cmd_stress import bench_estimate_s
    from rramlab.drivers.probe_station import BENCH_DIR, connect_bench, load_bench
    from rramlab.sim.instruments import BenchWiring, VirtualBench, format_duration

    config = load_bench(BENCH_DIR / "virtual.toml")
    for width in (0.5e-3, 2e-3):
        bench = VirtualBench(VirtualArray(engine="fast"), BenchWiring.from_config(config))
        station = connect_bench(config, resource_manager=bench.resource_manager())
        s = endurance.EnduranceSettings(pulse_width_s=width)
        bench.clock.reset()
        with station:
            p = endurance.plan(s, (3, 7), station)
            reads = 2 * p.reads()
            for _ in endurance.run(station, p):
                pass
        estimate = bench_estimate_s(2 * s.cycles, reads, width)
        print(f"  {width * 1e3:g} ms pulses: {bench.clock.summary()}; rramlab's estimate before the run "
              f"{format_duration(estimate)}")


if __name__ == "__main__":
    main()
