"""``rramlab sweep``: a Monte-Carlo sweep of the twin on Dask (see ``rramlab.app.sweep``).

    rramlab sweep examples/sweep.toml --out sweep.nc --report sweep/          # local cluster, 1 worker per core
    rramlab sweep sweep.toml --out sweep.nc --scheduler tcp://HOST:8786       # an existing Dask cluster
    rramlab sweep sweep.toml --out sweep.nc --serial                          # this process, no Dask

Each finished point is committed to ``OUT.points.sqlite`` as it arrives; stopped by Ctrl-C, SIGTERM,
SIGKILL or a crash, the same command again computes only the missing points.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def register(subparsers) -> None:
    from rramlab.app.sweep import CONNECT_TIMEOUT_S

    p = subparsers.add_parser(
        "sweep", help="Monte-Carlo sweep of the twin (chips, variability, wires, programming error, pruning, "
                      "firing threshold) on Dask; NetCDF out",
        description="Run every point of a sweep file (axes and pipeline, see examples/sweep.toml) on fresh twin "
                    "chips, on a local Dask cluster (default), an existing one (--scheduler) or in this process "
                    "(--serial). Every finished point is kept as it arrives; running the same command again "
                    "computes only the missing ones.")
    p.add_argument("file", help="the sweep file (TOML)")
    p.add_argument("--out", required=True, metavar="FILE.nc", help="the xarray Dataset as NetCDF; the points go to "
                                                                  "FILE.nc.points.sqlite as they finish")
    p.add_argument("--report", metavar="DIR", help="folder for the PNGs: accuracy, power and transfer figures "
                                                   "against each axis (spread over chips), yield curves")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler (started with "
                                                                      "`dask scheduler`, workers with `dask worker`)")
    where.add_argument("--serial", action="store_true", help="compute in this process, without Dask")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes of the local cluster (default: one per "
                                                           "core)")
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S",
                   help=f"seconds to wait for --scheduler to answer (default {CONNECT_TIMEOUT_S:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="start afresh: delete the points kept for --out and "
                                                        "overwrite it")
    p.set_defaults(handler=cmd_sweep)


def _kept(out: str) -> int:
    path = Path(out + ".points.sqlite")
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0


def cmd_sweep(args) -> int:
    from rramlab.app.cli import EXIT_OK, Stopped, interrupt_exit_code, say
    from rramlab.app.sweep import SweepError, load_spec, sweep

    spec = load_spec(args.file)  # a bad axis or pipeline: one line, before anything starts
    if args.workers is not None and (args.scheduler or args.serial):
        raise SweepError("--workers sizes the local cluster: drop it with --scheduler or --serial")
    if args.connect_timeout <= 0:
        raise SweepError(f"--connect-timeout {args.connect_timeout:g} s: give a positive number of seconds")
    scheduler = "serial" if args.serial else args.scheduler
    try:
        ds = sweep(spec, args.out, scheduler=scheduler, workers=args.workers, force=args.force, report=args.report,
                   progress=not args.no_progress, connect_timeout=args.connect_timeout, say=say)
    except KeyboardInterrupt as exc:
        by = f" by {exc}" if isinstance(exc, Stopped) else ""
        kept = _kept(args.out)
        say(f"\ninterrupted{by}: {kept} of {spec.size} points kept in {args.out}.points.sqlite; run the same "
            f"command again to compute the other {spec.size - kept}")
        return interrupt_exit_code(exc)
    measured = [k for k in ds.data_vars if bool(ds[k].notnull().any())]
    print(f"sweep of {spec.size} points written to {args.out} ({', '.join(measured)})")
    for k in measured:
        v = ds[k]
        print(f"  {k}: mean {float(v.mean()):.4g}, min {float(v.min()):.4g}, max {float(v.max()):.4g}"
              + (f" {v.attrs['units']}" if v.attrs.get("units") else ""))
    if args.report:
        print(f"  report PNGs in {args.report}")
    return EXIT_OK
