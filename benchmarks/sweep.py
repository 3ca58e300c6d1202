"""Speed-up of a transfer sweep on 2 Dask workers over 1, time per point, memory per worker.

    python benchmarks/sweep.py                       # 40 points (20 chips x 2 wire resistances), 3 x (1, 2 workers), ~5 min
    python benchmarks/sweep.py --spec examples/sweep.toml --workers 2     # the 200-point example, once

Default: a 40-point transfer-only sweep (20 chips x wire resistance 2 and 50 ohm, typical
variability) of 6 x 4 weights on the 24 x 24 array (the size of examples/sweep.toml's points: a
point of 3 x 2 weights on 12 x 12 takes 0.25 s, so short that Dask's per-task overhead, not the
work, sets the speed-up), on a local cluster of 1 worker process, then of 2, alternated
``--repeats`` times (default 3) and the medians compared; each cluster is started and warmed (modules imported) before the clock starts, so the
figures are the sweep itself. Prints the wall time and the speed-up, the mean time per point (as the
workers measured it), the peak memory (RSS) of each worker process and the load average seen (the
machine may be shared: a loaded machine lowers the speed-up). With ``--spec`` it runs that sweep
file once on ``--workers`` workers and prints its wall time.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path


def spec_40(points: int, rows: int, cols: int, array: int) -> dict:
    levels = [[((3 * r + 5 * c) % 8 + 1) * (1 if (r + c) % 2 == 0 else -1) for c in range(cols)] for r in range(rows)]
    return {"seed": 40, "axes": {"chip": {"count": points // 2}, "wire_resistance_ohm": [2.0, 50.0]},
            "pipeline": {"name": "transfer", "scheme": "fast", "levels": levels, "wordlines": array,
                         "bitlines": array}}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm() -> int:
    import rramlab.app.sweep  # noqa: F401
    import rramlab.sim.virtual_array  # noqa: F401

    return os.getpid()


def run_on(spec, workers: int, out: Path) -> dict:
    import logging

    from dask.distributed import Client, LocalCluster

    from rramlab.app.sweep import sweep

    t = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        client.run(_warm)
        startup = time.perf_counter() - t
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        sweep(spec, out, scheduler=cluster.scheduler_address, progress=False, say=lambda s: None)
        wall = time.perf_counter() - t
        load1 = os.getloadavg()[0]
        rss = sorted(client.run(_peak_rss_mb).values())
    with sqlite3.connect(str(out) + ".points.sqlite") as db:
        rows = db.execute("SELECT seconds, cpu_seconds FROM points").fetchall()
    seconds = [s for s, _ in rows]
    return {"workers": workers, "wall_s": wall, "startup_s": startup, "per_point_s": sum(seconds) / len(seconds),
            "cpu_per_point_s": sum(c for _, c in rows) / len(rows),
            "points": len(seconds), "rss_mb": rss, "load": (load0, load1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=40, help="points of the default sweep (even; default 40)")
    p.add_argument("--rows", type=int, default=6, help="weight rows (default 6)")
    p.add_argument("--cols", type=int, default=4, help="weight columns (default 4)")
    p.add_argument("--array", type=int, default=24, help="array size N (N x N, default 24)")
    p.add_argument("--repeats", type=int, default=3, help="alternated runs of 1 and 2 workers (default 3; medians)")
    p.add_argument("--spec", type=Path, help="run this sweep file once instead (e.g. examples/sweep.toml)")
    p.add_argument("--workers", type=int, default=2, help="with --spec: worker processes (default 2)")
    args = p.parse_args(argv)

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.spec is not None:
            from rramlab.app.sweep import load_spec

            spec = load_spec(args.spec)
            r = run_on(spec, args.workers, Path(tmp) / "spec.nc")
            print(f"{args.spec}: {r['points']} points on {args.workers} workers in {r['wall_s']:.1f} s "
                  f"({r['wall_s'] / 60:.2f} min; cluster start {r['startup_s']:.1f} s), {r['per_point_s']:.2f} s per "
                  f"point in a worker ({r['cpu_per_point_s']:.2f} s of CPU), peak RSS per worker {', '.join(f'{m:.0f}' for m in r['rss_mb'])} MB, "
                  f"load average {r['load'][0]:.2f} -> {r['load'][1]:.2f}")
            return 0
        spec = spec_40(args.points, args.rows, args.cols, args.array)
        runs = {1: [], 2: []}
        for k in range(max(1, args.repeats)):
            for n in (1, 2):  # interleaved, so a change in the machine's load hits both
                runs[n].append(run_on(spec, n, Path(tmp) / f"w{n}-{k}.nc"))
    results = [sorted(runs[n], key=lambda r: r["wall_s"])[len(runs[n]) // 2] for n in (1, 2)]  # the median run
    for n in (1, 2):
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in runs[n])
        print(f"{n} worker{'s' if n > 1 else ''}: wall {walls} s over {len(runs[n])} runs")
    for r in results:
        print(f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}: {r['points']} points in {r['wall_s']:.1f} s, "
              f"{r['per_point_s']:.2f} s per point in a worker ({r['cpu_per_point_s']:.2f} s of CPU), peak RSS per worker "
              f"{', '.join(f'{m:.0f}' for m in r['rss_mb'])} MB, load average {r['load'][0]:.2f} -> {r['load'][1]:.2f}")
    speedup = results[0]["wall_s"] / results[1]["wall_s"]
    cpu_ratio = results[1]["cpu_per_point_s"] / results[0]["cpu_per_point_s"]
    print(f"speed-up of 2 workers over 1 (medians): {speedup:.2f}x (floor 1.6x{'' if speedup >= 1.6 else ': NOT met'}); "
          f"{args.points}-point transfer sweep, {args.rows} x {args.cols} weights on a {args.array} x {args.array} array")
    print(f"CPU per point with 2 workers / with 1: {cpu_ratio:.2f} (1.0: the points themselves do not slow each other "
          "down; a lower wall speed-up is then the machine's other load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
