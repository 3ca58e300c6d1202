"""``rramlab runs``: what the run store holds.

    rramlab runs list                    # newest first: id, protocol, status, records, start, backend, chip
    rramlab runs list --chip W3-D12 --protocol ispva --since 2026-12-01 --json
    rramlab runs show RUN                # the run row: settings, backend, version, status, error
    rramlab runs export RUN --csv FILE   # every record, one row each (seq, type, fields)
    rramlab runs export RUN --npz FILE   # one array per record type and field, e.g. IspvaPulse.pulse_v

An exported CSV starts with the ``#`` provenance lines of the stored run (the rramlab version that
took it, its start, backend and settings) and the export command; the NPZ holds the same as a JSON
text array ``provenance``. Existing files are overwritten only with ``--force``.
"""

from __future__ import annotations

import json

import numpy as np

from rramlab import __version__
from rramlab.app.outputs import OutputError, OutputPath, RecordFile, check_output_paths, describe_os_error, \
    provenance_dict, provenance_lines
from rramlab.protocols.store import RunStore, add_store_flag, records_table


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
    c.add_argument("--json", action="store_true", help="one JSON object: the filters and every run with its "
                                                       "metadata, instead of the table")
    add_store_flag(c, "to list the runs of", metadata=False)
    c = sub.add_parser("show", help="one run in full")
    c.add_argument("run", type=int, metavar="RUN", help="the run's id (the first column of `rramlab runs list`)")
    add_store_flag(c, "to read the run from", metadata=False)
    c = sub.add_parser("export", help="a run's records to CSV or NPZ")
    c.add_argument("run", type=int, metavar="RUN", help="the run's id (the first column of `rramlab runs list`)")
    c.add_argument("--csv", metavar="FILE", help="one row per record, after '#' lines saying which run, version, "
                                                 "backend and settings (read with pandas.read_csv(FILE, comment='#'))")
    c.add_argument("--npz", metavar="FILE", help="one array per record type and field, and 'provenance' (JSON text)")
    add_force_flag(c)
    add_store_flag(c, "to read the run from", metadata=False)
    p.set_defaults(handler=cmd_runs)


def cmd_runs(args) -> int:
    from rramlab.app.cli import EXIT_OK, EXIT_USAGE

    if args.runs_command is None:
        print("usage: rramlab runs list | show RUN | export RUN --csv FILE | --npz FILE")
        return EXIT_USAGE
    with RunStore(args.store) as store:
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
        if not args.csv and not args.npz:
            print("rramlab runs export: give --csv FILE and/or --npz FILE")
            return EXIT_USAGE
        check_output_paths([OutputPath("--csv", args.csv), OutputPath("--npz", args.npz)], force=args.force)
        info = store.run(args.run)
        records = store.records(args.run)
        provenance = run_provenance(info, ["rramlab", *getattr(args, "argv", ["runs", "export", str(args.run)])])
        if args.csv:
            header, rows = records_table(records)
            out = RecordFile(args.csv, "--csv")
            try:
                out.start(provenance_lines(**provenance), header)
                for row in rows:
                    out.write(row)
            finally:
                out.close()
            print(f"{len(rows)} records of run {args.run} written to {args.csv}")
        if args.npz:
            arrays = export_arrays(records)
            arrays["provenance"] = np.array(json.dumps(provenance_dict(**provenance), default=str))
            try:
                with open(args.npz, "wb") as fh:
                    np.savez(fh, **arrays)
            except OSError as exc:
                exc.filename = None
                raise OutputError(f"cannot write --npz {args.npz}: {describe_os_error(exc)}") from None
            print(f"{len(records)} records of run {args.run} written to {args.npz} ({len(arrays) - 1} arrays "
                  f"and provenance)")
        return EXIT_OK


LIST_HEADER = f"{'RUN':>5s}  {'PROTOCOL':9s} {'STATUS':10s} {'RECORDS':>7s}          {'STARTED (UTC)':29s}  " \
              f"{'BACKEND':14s} CHIP"


def _list(store, args) -> int:
    from rramlab.app.cli import EXIT_OK

    filters = {"chip": args.chip, "protocol": args.protocol, "since": args.since, "tag": args.tag}
    runs = store.runs(args.limit, **filters)
    chosen = ", ".join(f"{k} {v}" for k, v in filters.items() if v is not None)
    if args.json:
        print(json.dumps({"store": str(store.path), "filters": {k: v for k, v in filters.items() if v is not None},
                          "limit": args.limit, "runs": [run_dict(r) for r in runs]}, indent=1))
        return EXIT_OK
    if not runs:
        print(f"no runs in {store.path}" + (f" with {chosen}" if chosen else ""))
        return EXIT_OK
    print(f"{len(runs)} runs in {store.path}" + (f" with {chosen}" if chosen else "") + ", newest first")
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
            "settings": info.settings, "summary": info.summary}


def run_provenance(info, command) -> dict:
    """The provenance of a stored run (arguments of ``provenance_lines``/``provenance_dict``): the
    version, start, backend and settings it was taken with; ``command`` is the export's."""
    return {"version": info.software_version, "command": command, "started": info.started_at,
            "backend": {"backend": info.backend, **info.backend_describe},
            "settings": info.settings,
            "extra": {"protocol": info.protocol, "run_id": info.run_id, "status": info.status,
                      "exported_by": f"rramlab {__version__}", **info.metadata.as_dict()}}


def export_arrays(records) -> dict[str, np.ndarray]:
    """One array per record type and field, named ``Type.field``, plus ``Type.seq``."""
    by_type: dict[str, list] = {}
    for r in records:
        by_type.setdefault(r.type, []).append(r)
    out = {}
    for kind, rs in by_type.items():
        out[f"{kind}.seq"] = np.array([r.seq for r in rs])
        for k in rs[0].data:
            values = [r.data.get(k) for r in rs]
            if all(isinstance(v, (int, float, bool)) or v is None for v in values):
                out[f"{kind}.{k}"] = np.array([np.nan if v is None else v for v in values], dtype=float)
            else:
                out[f"{kind}.{k}"] = np.array([json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                                               for v in values])
    return out
