"""``rramlab runs``: what the run store holds.

    rramlab runs list                    # newest first: id, protocol, status, records, start, backend
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
    add_store_flag(c, "to list the runs of")
    c = sub.add_parser("show", help="one run in full")
    c.add_argument("run", type=int, metavar="RUN", help="the run's id (the first column of `rramlab runs list`)")
    add_store_flag(c, "to read the run from")
    c = sub.add_parser("export", help="a run's records to CSV or NPZ")
    c.add_argument("run", type=int, metavar="RUN", help="the run's id (the first column of `rramlab runs list`)")
    c.add_argument("--csv", metavar="FILE", help="one row per record, after '#' lines saying which run, version, "
                                                 "backend and settings (read with pandas.read_csv(FILE, comment='#'))")
    c.add_argument("--npz", metavar="FILE", help="one array per record type and field, and 'provenance' (JSON text)")
    add_force_flag(c)
    add_store_flag(c, "to read the run from")
    p.set_defaults(handler=cmd_runs)


def cmd_runs(args) -> int:
    from rramlab.app.cli import EXIT_OK, EXIT_USAGE

    if args.runs_command is None:
        print("usage: rramlab runs list | show RUN | export RUN --csv FILE | --npz FILE")
        return EXIT_USAGE
    with RunStore(args.store) as store:
        if args.runs_command == "list":
            runs = store.runs(args.limit)
            if not runs:
                print(f"no runs in {store.path}")
            for r in runs:
                print(f"{r.run_id:5d}  {r.protocol:9s} {r.shown_status:10s} {r.records:7d} records  "
                      f"{r.started_at}  {r.backend}")
            return EXIT_OK
        if args.runs_command == "show":
            r = store.run(args.run)
            print(f"run {r.run_id}: {r.protocol}, {r.shown_status}" + (f" ({r.error})" if r.error else ""))
            print(f"  started {r.started_at}, ended {r.ended_at or '-'}, {r.records} records")
            print(f"  rramlab {r.software_version}, pid {r.pid} on {r.host}")
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


def run_provenance(info, command) -> dict:
    """The provenance of a stored run (arguments of ``provenance_lines``/``provenance_dict``): the
    version, start, backend and settings it was taken with; ``command`` is the export's."""
    return {"version": info.software_version, "command": command, "started": info.started_at,
            "backend": {"backend": info.backend, **info.backend_describe},
            "settings": info.settings,
            "extra": {"protocol": info.protocol, "run_id": info.run_id, "status": info.status,
                      "exported_by": f"rramlab {__version__}"}}


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
