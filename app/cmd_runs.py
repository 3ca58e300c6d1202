"""``rramlab runs``: what the run store holds.

    rramlab runs list                    # newest first: id, protocol, status, records, start, backend, chip
    rramlab runs list --chip W3-D12 --protocol ispva --since 2026-12-01 --json
    rramlab runs show RUN                # the run row: settings, backend, version, status, error
    rramlab runs export RUN --csv FILE   # every record, one row each (seq, type, fields)
    rramlab runs export RUN --npz FILE   # one array per record type and field, e.g. IspvaPulse.pulse_v
    rramlab runs export RUN --netcdf FILE  # metadata, provenance, unit-labelled arrays, array snapshots
    rramlab runs watch                   # the live run's progress and last records, refreshed (Ctrl-C ends)
    rramlab runs pause RUN               # a running run waits at its next checkpoint, outputs 0 V, matrix open
    rramlab runs resume RUN              # ... and carries on with its next pulse (app/pause.py)
    rramlab cell 3,7 --chip W3-D12 [--csv F] [--png F]   # every read of one cell across the chip's runs

An exported CSV starts with the ``#`` provenance lines of the stored run (the rramlab version that
took it, its start, backend and settings) and the export command; the NPZ holds the same as a JSON
text array ``provenance``. Existing files are overwritten only with ``--force``.
"""

from __future__ import annotations

import argparse
import json


from rramlab import __version__
from rramlab.app.export import export_arrays, run_provenance  # noqa: F401 (their earlier home; the GUI's import)
from rramlab.app.outputs import OutputError, OutputPath, RecordFile, check_output_paths, describe_os_error
from rramlab.protocols.store import RunStore, add_store_flag


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, add_force_flag

    p = subparsers.add_parser("runs", help=COMMANDS["runs"][1])
    sub = p.add_subparsers(dest="runs_command", metavar="ACTION")
    c = sub.add_parser("list", help="the runs, newest first")
    c.add_argument("--limit", type=int, default=50, metavar="N", help="at most N runs (default 50)")
    c.add_argument("--chip", metavar="ID", help="only the runs of this chip id (as given to --chip-id)")
    c.add_argument("--protocol", metavar="NAME", help="only the runs of this protocol (ispp, ispva, transfer, ...)")
    c.add_argument("--since", metavar="DATE", help="only runs started on or after this date or time (UTC), "
                                                   "e.g. 2026-12-01 or 2026-12-01T08:00")
    c.add_argument("--tag", metavar="WORD", help="only runs tagged WORD (--tag when they were recorded)")
    c.add_argument("--session", type=int, metavar="SESSION", help="only the steps of this recipe session "
                                                                  "(the number `rramlab run` printed)")
    c.add_argument("--json", action="store_true", help="one JSON object: the filters and every run with its "
                                                       "metadata, instead of the table")
    add_store_flag(c, "to list the runs of", metadata=False)
    c = sub.add_parser("show", help="one run in full")
    c.add_argument("run", type=int, metavar="RUN", help="the run's id (the first column of `rramlab runs list`)")
    add_store_flag(c, "to read the run from", metadata=False)
    c = sub.add_parser("export", help="a run's records to CSV, NPZ or NetCDF")
    c.add_argument("run", type=int, metavar="RUN", help="the run's id (the first column of `rramlab runs list`)")
    c.add_argument("--csv", metavar="FILE", help="one row per record, after '#' lines saying which run, version, "
                                                 "backend and settings (read with pandas.read_csv(FILE, comment='#'))")
    c.add_argument("--npz", metavar="FILE", help="one array per record type and field, and 'provenance' (JSON text)")
    c.add_argument("--netcdf", metavar="FILE", help="NetCDF (xarray.open_dataset(FILE)): the run's metadata and "
                                                    "provenance as attributes, every record field as a named "
                                                    "array with its units, whole-array snapshots where the "
                                                    "protocol has them")
    c.add_argument("--hdf5", metavar="FILE", help=argparse.SUPPRESS)  # asked for by name: answered with --netcdf
    add_force_flag(c)
    add_store_flag(c, "to read the run from", metadata=False)
    c = sub.add_parser("watch", help="the live run's progress and last records, refreshed until Ctrl-C")
    c.add_argument("--run", type=int, metavar="RUN", help="watch this run (default: the newest running one)")
    c.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between refreshes (default 1)")
    c.add_argument("--last", type=int, default=5, metavar="N", help="show the last N records (default 5)")
    c.add_argument("--times", type=int, default=None, metavar="N", help="stop after N refreshes (default: Ctrl-C)")
    add_store_flag(c, "to watch (read only: the run's writer is never held up)", metadata=False)
    for action, text in (("pause", "pause a running run at its next checkpoint (outputs to 0 V, matrix open)"),
                         ("resume", "resume a paused run with its next pulse")):
        c = sub.add_parser(action, help=text)
        c.add_argument("run", type=int, metavar="RUN", help="the run's id (the first column of `rramlab runs list`)")
        add_store_flag(c, "to find the run's process in (read only)", metadata=False)
    p.set_defaults(handler=cmd_runs)


def register_cell(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, add_force_flag

    p = subparsers.add_parser("cell", help=COMMANDS["cell"][1],
                              description="Every record that read one cell (its wordline and bitline), across "
                                          "every run of a chip, in the order taken: a table, a CSV, a PNG plot "
                                          "of its conductance on one time axis.")
    p.add_argument("cell", type=_cell_arg, metavar="WL,BL", help="the cell: wordline,bitline (counted from 0)")
    p.add_argument("--chip", metavar="ID", help="the chip id its runs were recorded with (--chip-id); without "
                                                "it: the runs recorded with no chip id")
    p.add_argument("--csv", metavar="FILE", help="one row per read: at, run, protocol, type, seq, conductance_s, "
                                                 "and the record's fields")
    p.add_argument("--png", metavar="FILE", help="the conductance (nS) against time, one colour per run")
    add_force_flag(p)
    add_store_flag(p, "to read the runs from", metadata=False)
    p.set_defaults(handler=cmd_cell)


def cmd_runs(args) -> int:
    from rramlab.app.cli import EXIT_OK, EXIT_USAGE

    if args.runs_command is None:
        print("usage: rramlab runs list | show RUN | export RUN --csv FILE | --npz FILE | --netcdf FILE | watch | "
              "pause RUN | resume RUN")
        return EXIT_USAGE
    if args.runs_command == "watch":
        from rramlab.app.watch import watch

        return watch(args.store, run=args.run, interval_s=args.interval, last=args.last, times=args.times)
    with RunStore(args.store) as store:
        if args.runs_command in ("pause", "resume"):
            from rramlab.app.pause import signal_run

            print(signal_run(store, args.run, args.runs_command))
            return EXIT_OK
        if args.runs_command == "list":
            return _list(store, args)
        if args.runs_command == "show":
            r = store.run(args.run)
            print(f"run {r.run_id}: {r.protocol}, {r.shown_status}" + (f" ({r.error})" if r.error else ""))
            print(f"  started {r.started_at}, ended {r.ended_at or '-'}, {r.records} records")
            print(f"  rramlab {r.software_version}, pid {r.pid} on {r.host}")
            print("  " + _metadata_text(r.metadata))
            print(f"  backend {r.backend}: {json.dumps(r.backend_describe)}")
            settings = {k: v for k, v in r.settings.items() if k != "levels"}
            print(f"  settings: {json.dumps(settings)}")
            counts: dict[str, int] = {}
            for rec in store.records(r.run_id):
                counts[rec.type] = counts.get(rec.type, 0) + 1
            print("  records: " + (", ".join(f"{n} {t}" for t, n in counts.items()) or "none"))
            return EXIT_OK
        if args.hdf5:
            raise ValueError(f"--hdf5: this rramlab writes NetCDF, not HDF5: give --netcdf {args.hdf5} "
                             "(xarray.open_dataset, netCDF4, MATLAB ncread read it)")
        if not args.csv and not args.npz and not args.netcdf:
            print("rramlab runs export: give --csv FILE, --npz FILE and/or --netcdf FILE")
            return EXIT_USAGE
        check_output_paths([OutputPath("--csv", args.csv), OutputPath("--npz", args.npz),
                            OutputPath("--netcdf", args.netcdf)], force=args.force)
        from rramlab.app import export

        command = ["rramlab", *getattr(args, "argv", ["runs", "export", str(args.run)])]
        records = store.run(args.run).records
        if args.csv:
            rows = export.write_csv(store, args.run, args.csv, command)
            print(f"{rows} records of run {args.run} written to {args.csv}")
        if args.npz:
            arrays = export.write_npz(store, args.run, args.npz, command)
            print(f"{records} records of run {args.run} written to {args.npz} ({arrays} arrays and provenance)")
        if args.netcdf:
            ds = export.write_netcdf(store, args.run, args.netcdf, command)
            snapshots = ds.sizes.get("snapshot", 0)
            print(f"{records} records of run {args.run} written to {args.netcdf} (NetCDF: {len(ds.data_vars)} "
                  f"arrays" + (f", {snapshots} array snapshots" if snapshots else "") + ", metadata and provenance)")
        return EXIT_OK


def _cell_arg(text: str) -> tuple[int, int]:
    import argparse

    try:
        wordline, bitline = (int(x) for x in text.split(","))
        if wordline < 0 or bitline < 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"the cell is WL,BL (two whole numbers from 0, e.g. 3,7), got {text!r}") \
            from None
    return wordline, bitline


def cmd_cell(args) -> int:
    """``rramlab cell WL,BL --chip ID``: the cell's reads across runs, as a table, a CSV and a plot."""
    from rramlab.app.cli import EXIT_OK

    wordline, bitline = args.cell
    check_output_paths([OutputPath("--csv", args.csv), OutputPath("--png", args.png)], force=args.force)
    with RunStore(args.store) as store:
        history = store.cell_history(args.chip, wordline, bitline)
    chip = args.chip or "(no chip id)"
    if not history:
        print(f"no records of cell {wordline},{bitline} on chip {chip} in {store.path}")
        return EXIT_OK
    runs = list(dict.fromkeys(h.run_id for h in history))
    print(f"cell {wordline},{bitline} on chip {chip}: {_n(len(history), 'read')} in {_n(len(runs), 'run')} "
          f"({store.path})")
    print(f"{'AT (UTC)':29s}  {'RUN':>5s}  {'PROTOCOL':9s} {'RECORD':12s} {'SEQ':>6s}  {'G (nS)':>8s}")
    for h in history:
        g = "-" if h.conductance_s != h.conductance_s else f"{h.conductance_s * 1e9:8.2f}"
        print(f"{h.at:29s}  {h.run_id:5d}  {h.protocol:9s} {h.type:12s} {h.seq:6d}  {g:>8s}")
    if args.csv:
        fields: list[str] = []
        for h in history:
            fields.extend(k for k in h.data if k not in fields and k != "conductance_s")
        out = RecordFile(args.csv, "--csv")
        try:
            out.start([f"# cell: {wordline},{bitline}", f"# chip: {json.dumps(args.chip)}",
                       f"# store: {json.dumps(str(store.path))}", f"# exported_by: \"rramlab {__version__}\""],
                      ["at", "run_id", "protocol", "type", "seq", "conductance_s", *fields])
            for h in history:
                out.write([h.at, h.run_id, h.protocol, h.type, h.seq, h.conductance_s,
                           *[_csv_value(h.data.get(k)) for k in fields]])
        finally:
            out.close()
        print(f"{len(history)} reads written to {args.csv}")
    if args.png:
        cell_figure(history, f"cell {wordline},{bitline}, chip {chip}", args.png)
        print(f"plot written to {args.png}")
    return EXIT_OK


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _csv_value(v):
    if v is None:
        return ""
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def cell_figure(history, title: str, path) -> None:
    """A PNG of a cell's conductance (nS) against the time of each read, one colour per run."""
    import datetime as dt

    import matplotlib

    matplotlib.use("Agg")  # files only, also without a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    try:
        for run_id in dict.fromkeys(h.run_id for h in history):
            hs = [h for h in history if h.run_id == run_id]
            ax.plot([dt.datetime.fromisoformat(h.at) for h in hs], [h.conductance_s * 1e9 for h in hs], ".-",
                    label=f"run {run_id} ({hs[0].protocol})")
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel("conductance (nS)")
        ax.set_title(title)
        ax.legend(fontsize="small")
        fig.autofmt_xdate()
        try:
            fig.savefig(path)
        except OSError as exc:
            exc.filename = None
            raise OutputError(f"cannot write --png {path}: {describe_os_error(exc)}") from None
    finally:
        plt.close(fig)


LIST_HEADER = f"{'RUN':>5s}  {'PROTOCOL':9s} {'STATUS':10s} {'RECORDS':>7s}          {'STARTED (UTC)':29s}  " \
              f"{'BACKEND':14s} CHIP"


def _list(store, args) -> int:
    from rramlab.app.cli import EXIT_OK

    filters = {"chip": args.chip, "protocol": args.protocol, "since": args.since, "tag": args.tag,
               "session": args.session}
    runs = store.runs(args.limit, **filters)
    chosen = ", ".join(f"{k} {v}" for k, v in filters.items() if v is not None)
    if args.json:
        print(json.dumps({"store": str(store.path), "filters": {k: v for k, v in filters.items() if v is not None},
                          "limit": args.limit, "runs": [run_dict(r) for r in runs]}, indent=1))
        return EXIT_OK
    if not runs:
        print(f"no runs in {store.path}" + (f" with {chosen}" if chosen else ""))
        return EXIT_OK
    print(f"{_n(len(runs), 'run')} in {store.path}" + (f" with {chosen}" if chosen else "") + ", newest first")
    print(LIST_HEADER)
    for r in runs:
        print(f"{r.run_id:5d}  {r.protocol:9s} {r.shown_status:10s} {r.records:7d} records  "
              f"{r.started_at}  {r.backend:14s} {r.metadata.chip_id or '-'}")
    return EXIT_OK


def _metadata_text(m) -> str:
    temperature = "-" if m.temperature_k is None else f"{m.temperature_k:g} K"
    return (f"chip {m.chip_id or '-'}, sample {m.sample or '-'}, operator {m.operator or '-'}, "
            f"temperature {temperature}, tags {', '.join(m.tags) or '-'}" + (f"; notes: {m.notes}" if m.notes else ""))


def run_dict(info) -> dict:
    """A run as ``runs list --json`` prints it: its row, metadata included (SI units)."""
    return {"run_id": info.run_id, "protocol": info.protocol, "status": info.shown_status, "records": info.records,
            "started_at": info.started_at, "ended_at": info.ended_at, "backend": info.backend,
            "software_version": info.software_version, "error": info.error, **info.metadata.as_dict(),
            "settings": info.settings, "summary": info.summary, "session_id": info.session_id,
            "step_index": info.step_index}
