"""What `rramlab cell` costs: a cell's history found through the records_by_cell index (store
schema 4) against a scan of every record's JSON, and what building the index costs once.

Run by hand:  .venv/bin/python benchmarks/cell_history.py [--records 200000]
Builds a temporary store of 10 runs of ISPVA-sized records over a 24 x 24 array (one chip id),
times RunStore.cell_history for one cell with the index, drops the index and times the same query
(a scan), then times building the index again. Best of 3, warm disk cache; numbers are this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from rramlab.protocols.store import RunMetadata, RunStore


def best(f, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000, help="records in the store (default 200000)")
    n = ap.parse_args().records
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "runs.sqlite")
        with RunStore(path) as s:
            per_run = max(n // 10, 1)
            for _ in range(10):
                run = s.start_run("ispva", {"read_v": 1.0}, "twin", {}, metadata=RunMetadata(chip_id="W3-D12"))
                rows = [(run, i, "IspvaPulse", json.dumps({"wordline": i % 24, "bitline": (i // 24) % 24,
                                                           "target_s": 2e-8, "pulse": 1, "kind": "set",
                                                           "pulse_v": 3.3, "conductance_s": 2.01e-8}),
                         "2026-12-04T00:00:00.000+00:00") for i in range(per_run)]
                with s.conn:
                    s.conn.executemany("INSERT INTO records (run_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)", rows)
            indexed, found = best(lambda: s.cell_history("W3-D12", 3, 7))
            with s.conn:
                s.conn.execute("DROP INDEX records_by_cell")
            scan, found_scan = best(lambda: s.cell_history("W3-D12", 3, 7))
            assert found == found_scan
            t = time.perf_counter()
            with s.conn:
                s.conn.execute("CREATE INDEX records_by_cell ON records(json_extract(data, '$.wordline'), "
                               "json_extract(data, '$.bitline'))")
            build = time.perf_counter() - t
    print(f"{per_run * 10} records, {len(found)} of cell 3,7: cell_history {indexed * 1e3:.1f} ms with the index, "
          f"{scan * 1e3:.0f} ms scanning; building the index {build:.2f} s "
          f"({build / (per_run * 10) * 1e6:.1f} s per million records)")


if __name__ == "__main__":
    main()
