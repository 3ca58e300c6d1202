"""Memory of a long ISPP run through the command line: records are streamed, not kept.

Run by hand:  .venv/bin/python benchmarks/ispp_memory.py [--cycles 20 200]
Runs ``rramlab ispp --cycles N --csv FILE`` (lone twin device, fast engine, a temporary run store) in
this process for each N and prints the peak Python heap (tracemalloc) and the CSV size. With streaming the peak does not
grow with N; with every record held in memory it would grow by about 62 records per cycle.
Numbers are this machine's; compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc

from rramlab.app.cli import main


def peak_of_run(cycles: int) -> tuple[int, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ispp.csv")
        tracemalloc.start()
        t0 = time.perf_counter()
        code = main(["ispp", "--cycles", str(cycles), "--engine", "fast", "--csv", out, "--no-progress",
                     "--store", os.path.join(tmp, "runs.sqlite")])  # not the user's run store
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if code != 0:
            raise SystemExit(f"rramlab ispp --cycles {cycles} failed with exit code {code}")
        return peak, os.path.getsize(out), seconds


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, nargs="+", default=[20, 200])
    args = parser.parse_args()
    peak_of_run(1)  # imports and one-off set-up are not what is measured
    rows = [(n, *peak_of_run(n)) for n in args.cycles]
    print(f"\n{'cycles':>8s} {'pulses':>8s} {'peak heap':>12s} {'CSV':>10s} {'time':>8s}")
    for n, peak, size, seconds in rows:
        print(f"{n:8d} {62 * n:8d} {peak / 1e6:9.2f} MB {size / 1e6:7.2f} MB {seconds:7.1f} s")


if __name__ == "__main__":
    main_()
