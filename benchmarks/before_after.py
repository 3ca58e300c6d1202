"""Benchmark scripts of this tree run on two checkouts of the library alternately, with medians:
"nothing slower elsewhere" (issue 21) measured as one interleaved comparison.

Run by hand:  .venv/bin/python benchmarks/before_after.py --old DIR [--new DIR] [--repeat 3]
              [--scripts engines transfer]

DIR is a checkout of the repository (``git archive COMMIT | tar -x -C DIR``). Each script of
benchmarks/ named by ``--scripts`` (its short flags below, so that the ngspice rows, the same library
on both sides, do not dominate the time) runs with the old checkout's ``rramlab`` first on
PYTHONPATH, then with the new one's (default: this tree), alternating which goes first from one
repeat to the next, every run in its own process. engines.py and transfer.py print wall times,
which a loaded machine stretches unevenly between runs (their ngspice rows, the same code on both
sides, show how much); fast_ops.py prints CPU times, the steadier comparison. The scripts are this tree's: the same measurement
on both libraries. Prints every run's load average, then each table row as the medians over the
repeats, old -> new, and new / old for every number. Numbers are this machine's.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reproduce import package_root

HERE = Path(__file__).resolve().parent
#: flags of each script in this comparison (short ngspice parts: ngspice is not what changed)
SCRIPT_FLAGS = {"fast_ops": [],
                "engines": ["--spice-trains", "2", "--spice-pulses", "1"],
                "transfer": ["--spice-pulses", "1"]}
_NUMBER = re.compile(r"^-?\d[\d.]*(e[-+]?\d+)?[xM]?$")


def rows_of(text: str) -> dict[str, list[float]]:
    """Table rows of a script's output: label (the leading words before the first number, cells
    separated by two or more spaces) -> the row's numbers in order."""
    rows = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        label, numbers = [], []
        for c in cells:
            if _NUMBER.match(c):
                numbers.append(float(c.rstrip("xM")))
            elif not numbers:
                label.append(c)
        if label and numbers:
            rows[" ".join(label)] = numbers
    return rows


def run(script: str, package: Path, extra: list[str]) -> tuple[str, float, float]:
    """(stdout, wall s, load average before) of one run of benchmarks/SCRIPT.py on ``package``."""
    env = {**os.environ, "PYTHONPATH": str(package) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    load = os.getloadavg()[0]
    t = time.perf_counter()
    out = subprocess.run([sys.executable, str(HERE / f"{script}.py"), *extra], env=env, check=True,
                         capture_output=True, text=True).stdout
    return out, time.perf_counter() - t, load


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="checkout of the old commit")
    ap.add_argument("--new", default=str(HERE.parent), help="checkout of the new commit (default: this tree)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scripts", nargs="*", default=list(SCRIPT_FLAGS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        packages = {tag: package_root(Path(d).resolve(), Path(tmp) / tag)
                    for tag, d in (("old", args.old), ("new", args.new))}
        print(f"old {args.old}, new {args.new}; {args.repeat} alternated repeats on {os.cpu_count()} cores")
        for script in args.scripts:
            extra = SCRIPT_FLAGS.get(script, [])
            runs = {"old": [], "new": []}
            for r in range(args.repeat):
                for tag in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    out, wall, load = run(script, packages[tag], extra)
                    runs[tag].append(rows_of(out))
                    print(f"  {script} {' '.join(extra)}: {tag} run {r + 1}, {wall:.1f} s wall, "
                          f"load average {load:.2f}", flush=True)
            print(f"== {script}.py {' '.join(extra)}: medians of {args.repeat}, old -> new (new / old)")
            for label, numbers in runs["new"][0].items():
                if not all(label in rs for rs in runs["old"] + runs["new"]):
                    continue
                cells = []
                for k in range(len(numbers)):
                    o = statistics.median(rs[label][k] for rs in runs["old"] if len(rs[label]) > k)
                    n = statistics.median(rs[label][k] for rs in runs["new"] if len(rs[label]) > k)
                    ratio = f"{n / o:.2f}" if o else "-"
                    cells.append(f"{o:.4g} -> {n:.4g} ({ratio})")
                print(f"  {label:40s} " + " | ".join(cells))
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
