"""What opening a run store costs, now that it is checked (PRAGMA quick_check) and written once.

Run by hand:  .venv/bin/python benchmarks/store_open.py [--records 100000 300000]
For each N: builds a temporary store with one run of N ISPVA-sized records (JSON of about 190 bytes,
as a verify pulse), then times ``RunStore(path)`` (connect, quick_check, table check, one write)
against the same connection without the quick_check, best of 3, warm disk cache. Prints the file
size, both times and the check's cost per million records. Numbers are this machine's; compare runs
on the same machine only (a cold disk cache reads the file from the disk first).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time

from rramlab.protocols import store as st
from rramlab.protocols.store import RunStore

RECORD = json.dumps({"wordline": 3, "bitline": 7, "pulse": 12, "pulse_v": 2.31234, "read_a": 1.234567e-8,
                     "conductance_s": 1.234567e-8, "target_s": 4e-8, "stage": "verify"})


def build(path: str, records: int) -> None:
    with RunStore(path) as s:
        run = s.start_run("ispva", {}, "twin", {})
        with s.conn:
            s.conn.executemany("INSERT INTO records (run_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)",
                               ((run, i, "IspvaPulse", RECORD, "2026-12-04T00:00:00.000+00:00")
                                for i in range(records)))
        s.end_run(run, "finished")


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, nargs="+", default=[20_000, 200_000])
    args = ap.parse_args()
    print(f"{'records':>10} {'file MB':>8} {'open s':>8} {'no check s':>10} {'check s/1M':>10}")
    for n in args.records:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "runs.sqlite")
            build(path, n)
            size = os.path.getsize(path) / 1e6
            checked = best_of(lambda: RunStore(path).close())
            real = st._check_integrity
            st._check_integrity = lambda conn, p: None
            try:
                unchecked = best_of(lambda: RunStore(path).close())
            finally:
                st._check_integrity = real
            per_million = (checked - unchecked) / n * 1e6
            print(f"{n:10d} {size:8.1f} {checked:8.3f} {unchecked:10.3f} {per_million:10.2f}")
    print(f"(sqlite {sqlite3.sqlite_version})")


if __name__ == "__main__":
    main()
