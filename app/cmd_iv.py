"""``rramlab iv``: a DC staircase sweep of a lone twin device or of any cell of the twin array.

    rramlab iv --csv iv.csv                                   # lone device, 0 -> 4.2 -> 0 -> -1.6 -> 0 V
    rramlab iv --cell 3,7 --double --to 4.2 --back-to -1.6 --step 0.02 --csv iv.csv --png iv.png

The sweep (``protocols/iv.py``) is checked against the safe operating area before anything is
touched; every point goes to the run store; the summary gives the set and reset onsets and the
currents at the read voltage before and after the set; ``--png`` plots |I| (log) against V like
the paper's Fig. 3. ``--to`` and ``--back-to`` are other names of ``--set-peak`` and ``--reset-peak``.
"""

from __future__ import annotations

import argparse
import sys

from rramlab.protocols import iv

#: kept for scripts that imported it from here
IvSettings = iv.IvSettings
CSV_HEADER = iv.CSV_HEADER


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, _add_backend_options, _cell, add_force_flag
    from rramlab.app.settings_flags import add_settings_flags
    from rramlab.protocols.store import add_store_flag

    p = subparsers.add_parser("iv", help=COMMANDS["iv"][1],
                              description="DC staircase sweep of one HT-RRAM device (a lone twin device, or --cell "
                                          "of the 24 x 24 twin array through its wires). The whole sweep is checked "
                                          "against the safe operating area first.")
    g = add_settings_flags(p, iv.IvSettings, "sweep settings (defaults: the paper's Fig. 3 sweep)", skip=("double",))
    g.add_argument("--to", dest="set_peak_v", type=float, metavar="V", default=iv.IvSettings.set_peak_v,
                   help="the same as --set-peak")
    g.add_argument("--back-to", dest="reset_peak_v", type=float, metavar="V", default=iv.IvSettings.reset_peak_v,
                   help="the same as --reset-peak")
    g.add_argument("--double", dest="double", action="store_const", const=1, default=1,
                   help="each branch out and back to 0 V (the default)")
    g.add_argument("--single", dest="double", action="store_const", const=0, help="each branch out only")
    p.add_argument("--cell", type=_cell, metavar="WL,BL",
                   help="sweep this cell of the 24 x 24 twin array (lines counted from 0); without it: a lone device")
    p.add_argument("--csv", metavar="FILE", help="write voltage_v,current_a after '#' lines saying what produced "
                                                 "it (read with pandas.read_csv(FILE, comment='#'))")
    p.add_argument("--png", metavar="FILE", help="plot |I| (log) against V, like the paper's Fig. 3")
    add_force_flag(p)
    add_store_flag(p)
    from rramlab.app.resume import add_resume_flag

    add_resume_flag(p, "iv")
    _add_backend_options(p)
    p.set_defaults(handler=cmd_iv)


def draw_iv(path: str, points, title: str) -> None:
    """|I| (A, log) against V of ``points`` (IvPoint), one colour per leg, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = {0: "0 V -> set peak", 1: "set peak -> 0 V", 2: "0 V -> reset peak", 3: "reset peak -> 0 V"}
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    for leg in sorted({p.leg for p in points}):
        v = np.array([p.voltage_v for p in points if p.leg == leg])
        i = np.abs([p.current_a for p in points if p.leg == leg])
        ax.semilogy(v, np.clip(i, 1e-13, None), label=names[leg])
    ax.set_xlabel("voltage (V)")
    ax.set_ylabel("|current| (A)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_iv(args: argparse.Namespace) -> int:
    from rramlab.app.cli import EXIT_OK, _fmt_na, check_backend_flags, open_backend
    from rramlab.app.outputs import (OutputError, OutputPath, RecordFile, check_output_paths, describe_os_error,
                                     keep_record, now, provenance_lines)
    from rramlab.app.settings_flags import settings_from_args
    from rramlab.protocols.settings import settings_dict
    from rramlab.app.pause import pausable
    from rramlab.protocols.store import RunStore, record_run, resume_plan

    from rramlab import __version__

    if args.resume is not None:
        from rramlab.app.resume import cell_of, resumed_settings

        with RunStore(args.store) as kept:
            settings, stored = resumed_settings(args, kept, "iv", iv.IvSettings)
        args.cell = cell_of(stored)
    else:
        settings = settings_from_args(iv.IvSettings, args)
    check_backend_flags(args, args.cell is not None)
    check_output_paths([OutputPath("--csv", args.csv), OutputPath("--png", args.png),
                        OutputPath("--save-chip", args.save_chip),
                        OutputPath("--visa-log", args.visa_log, append=True)], force=args.force)
    cell = args.cell if args.cell is not None else (0, 0)
    checker = None
    if args.bench:
        from rramlab.drivers.probe_station import load_bench

        checker = load_bench(args.bench).checker()  # the bench file's limits: a bad sweep never connects
    first_plan = iv.plan(settings, checker, cell if checker is not None else (0, 0))  # before any backend is opened
    store = RunStore(args.store)
    if args.resume is not None:
        try:
            resume_plan(iv, first_plan, store, args.resume)  # a sweep stored part-way is refused here
        except BaseException:
            store.close()
            raise
    started = now()
    points = []
    record_file = None
    run_id = None
    instrument = None
    try:
        instrument = open_backend(args, args.cell is not None)
        run_settings = {**settings_dict(settings), "cell": list(cell) if args.cell is not None else None}
        with instrument, record_run(store, "iv", run_settings, instrument, resume=args.resume) as stored:
            run_id = stored.run_id
            iv_plan = iv.plan(settings, instrument, cell)  # and the backend's geometry and limits
            if args.resume is not None:
                iv_plan, _ = resume_plan(iv, iv_plan, store, args.resume)
                if iv_plan.complete:  # the whole sweep is stored: its summary is that of the stored points
                    from rramlab.protocols.store import stored_records

                    points.extend(stored_records(iv, store.records(run_id)))
            if args.csv:
                record_file = RecordFile(args.csv, "--csv")
                record_file.start(provenance_lines(__version__, ["rramlab", *args.argv], started,
                                                   instrument.describe(), settings_dict(settings),
                                                   {"protocol": "iv", "cell": list(cell) if args.cell else None}),
                                  iv.CSV_HEADER)
            for point in pausable(iv.run, instrument, iv_plan, "IV sweep", run_id):
                points.append(point)
                keep_record(stored, point, record_file, [point.csv_row()])
            if args.save_chip:
                instrument.save_chip(args.save_chip)
            backend = instrument.backend_name
    except KeyboardInterrupt as exc:
        from rramlab.app.cli import Stopped, interrupt_exit_code, safe_state_text, say

        by = f" by {exc}" if isinstance(exc, Stopped) else ""
        kept = f"; {record_file.rows} rows kept in {args.csv}" if record_file else ""
        # iv.run yields every point measured before the stop: each is in the store and --csv
        say(f"\ninterrupted{by} after {len(points)} points; {safe_state_text(instrument, args)}{kept}")
        return interrupt_exit_code(exc)
    finally:
        store.close()
        if record_file:
            record_file.close()
    summary = iv.summarise(points, settings.read_v)
    if run_id is not None:
        from rramlab.protocols.store import json_ready

        with RunStore(store.path) as kept:
            kept.set_summary(run_id, json_ready(summary))
    where = f"cell {cell[0]},{cell[1]} of the {backend} array" if args.cell is not None else f"the lone {backend} device"
    s = settings
    legs = f"0 -> {s.set_peak_v:g}" + (" -> 0" if s.double else "")
    if s.reset_peak_v < 0:
        legs += f" -> {s.reset_peak_v:g}" + (" -> 0" if s.double else "")
    print(f"DC sweep {legs} V of {where}, {len(points)} points in {s.step_v * 1e3:g} mV steps; "
          f"run {run_id} in {store.path}")
    import math

    def na(a):
        return _fmt_na(a) if math.isfinite(a) else f"no step at {s.read_v:g} V"

    print(f"  current at {s.read_v:g} V: {na(summary['read_before_a'])} before the set"
          + (f", {na(summary['read_after_a'])} after it" if s.double else ""))
    print(f"  set onset {summary['set_onset_v']:.2f} V (the first switch turns on), reset onset "
          f"{summary['reset_onset_v']:.2f} V (largest |I| of the reset branch), peak "
          f"{summary['peak_current_a'] * 1e6:.2f} uA")
    if args.png:
        try:
            draw_iv(args.png, points, f"rramlab iv: {where}")
        except OSError as exc:
            raise OutputError(f"cannot write --png {args.png}: {describe_os_error(exc)}") from None
        print(f"  |I|-V plot written to {args.png}")
    if args.csv:
        print(f"  written to {args.csv}")
    sys.stdout.flush()
    return EXIT_OK
