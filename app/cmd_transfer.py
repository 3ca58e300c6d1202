"""``rramlab transfer``: program a signed weight matrix into the differential array and verify it.

    rramlab transfer examples/weights_24x10.npz --scheme half-bias --json transfer.json
    rramlab transfer examples/weights_24x10.npz --scheme fast --json transfer.json
    rramlab transfer --resume 7 --chip chip.npz --save-chip chip.npz        # continue run 7
    rramlab transfer w2x1.npz --bench bench.toml --width 2e-3               # on a probe station

Every record goes to the run store as it is taken; ``--resume RUN`` continues a stored transfer
(same weights and settings): every cell is read first and a cell already within tolerance gets
no new pulse. On the twin the fast engine is used unless ``--engine`` says otherwise: the auto
engine hands every row-parallel pulse to ngspice (about 3 s each).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from rramlab.app.settings_flags import add_settings_flags, settings_from_args
from rramlab.drivers.interface import RramlabError
from rramlab.protocols import transfer
from rramlab.protocols.ispva import IspvaResult, IspvaSettings
from rramlab.protocols.store import RunStore, StoreError, add_store_flag, json_ready, record_run
from rramlab.protocols.weights import HRS, LEVEL_SPACING_S, check_levels, load_weight_file


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, _add_backend_options, add_force_flag
    from rramlab.drivers.keysight_4156c import PULSE_MAX_WIDTH, PULSE_MIN_WIDTH

    p = subparsers.add_parser(
        "transfer", help=COMMANDS["transfer"][1],
        description="Weight transfer: levels -8..8 of a (rows, columns) weight file become differential "
                    "conductance targets (10..80 nS, the other cell of each pair in HRS), written by the "
                    "half-bias or the fast row-parallel scheme with verify, then the whole region is re-read "
                    "and disturbed cells re-programmed.")
    p.add_argument("weights", nargs="?", help="weight file (.npz with a 'levels' array, see the README); "
                                              "optional with --resume")
    add_settings_flags(p, transfer.TransferSettings, "transfer settings")
    add_settings_flags(p, IspvaSettings, "ISPVA settings (every cell's verify loop)",
                       extra_help={"pulse_width_s": f"With --bench the 4156C pulses {PULSE_MIN_WIDTH * 1e3:g} ms "
                                                    f"to {PULSE_MAX_WIDTH * 1e3:g} ms, so give --width there."})
    p.add_argument("--json", metavar="FILE", help="write the report (keys in the README), with a 'provenance' key "
                                                  "(version, command, start, backend, settings)")
    p.add_argument("--resume", type=int, metavar="RUN", help="continue stored transfer RUN (see `rramlab runs list`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_force_flag(p)
    add_store_flag(p)
    _add_backend_options(p)
    p.set_defaults(handler=cmd_transfer)


def _stored_settings(store: RunStore, run_id: int, weights_path):
    info = store.run(run_id)
    if info.protocol != "transfer":
        raise RramlabError(f"run {run_id} is a {info.protocol} run, not a transfer: --resume takes a transfer run")
    st = info.settings
    levels = check_levels(np.asarray(st["levels"]), f"run {run_id}")
    spacing = float(st.get("level_spacing_s", LEVEL_SPACING_S))
    if weights_path is not None:
        given = load_weight_file(weights_path)
        if (given.levels.shape != levels.shape or np.any(given.levels != levels)
                or not np.isclose(given.level_spacing_s, spacing, rtol=1e-9, atol=0)):
            raise RramlabError(f"{weights_path} differs from the weights of run {run_id}: drop the file to resume "
                               "with the stored weights, or start a new transfer without --resume")
    return (transfer.TransferSettings(**st["transfer"]), IspvaSettings(**st["ispva"]), levels, spacing, info)


def cmd_transfer(args) -> int:
    from tqdm import tqdm

    from rramlab.app.cli import EXIT_OK, Stopped, check_backend_flags, interrupt_exit_code, open_backend, say, \
        safe_state_text
    from rramlab.app.pause import pausable
    from rramlab.app.outputs import OutputError, OutputPath, check_output_paths, chip_output, describe_os_error, \
        now, provenance_dict, write_json

    from rramlab import __version__

    check_backend_flags(args, True)
    # every output path before the store, the weights or a backend is opened: a typo costs no pulse
    check_output_paths([OutputPath("--json", args.json), chip_output(args),
                        OutputPath("--visa-log", args.visa_log, append=True)], force=args.force)
    store = RunStore(args.store)  # a bad store path is refused before anything is connected
    instrument = None

    def save_chip():
        if args.save_chip and instrument is not None and hasattr(instrument, "save_chip"):
            try:
                instrument.save_chip(args.save_chip)
            except OSError as exc:
                raise OutputError(f"cannot write --save-chip {args.save_chip}: {describe_os_error(exc)}") from None

    try:
        if args.resume is not None:
            tsettings, isettings, levels, spacing, info = _stored_settings(store, args.resume, args.weights)
            weights_name = info.settings.get("weights_file")
        else:
            if args.weights is None:
                raise RramlabError("give a weight file (e.g. examples/weights_24x10.npz), or --resume RUN")
            tsettings = settings_from_args(transfer.TransferSettings, args)
            isettings = settings_from_args(IspvaSettings, args)
            wf = load_weight_file(args.weights)
            levels, spacing = wf.levels, wf.level_spacing_s
            weights_name = str(args.weights)
        checker = None
        if args.bench:
            from rramlab.drivers.probe_station import load_bench

            # the bench file's limits, pin map and pulse timing: a bad plan never connects
            checker = load_bench(args.bench).checker()
        transfer.plan(tsettings, isettings, levels, checker, spacing)  # before any backend is opened
        if not args.bench and args.engine is None:
            args.engine = "fast"
        started = now()
        try:
            instrument = open_backend(args, True)
        except KeyboardInterrupt as exc:
            say(f"\ninterrupted while opening the backend; {safe_state_text(None, args)}")
            return interrupt_exit_code(exc)
        records = []
        start = time.perf_counter()
        run_id = args.resume
        try:
            with instrument:
                tplan = transfer.plan(tsettings, isettings, levels, instrument, spacing)  # and the backend's
                run_settings = transfer.run_settings(tplan, weights_name)
                programmed = sum(1 for c in tplan.cells if tplan.target(c) != HRS)
                with record_run(store, "transfer", run_settings, instrument, resume=args.resume) as rec, \
                        tqdm(total=programmed, desc=f"transfer ({tsettings.scheme})", unit="cell",
                             disable=args.no_progress, file=sys.stderr, leave=False) as bar:
                    run_id = rec.run_id
                    for r in pausable(transfer.run, instrument, tplan, "transfer", run_id):
                        rec.add(r)
                        records.append(r)
                        if _finishes_cell(r) and bar.n < programmed:
                            bar.update(1)
                save_chip()
        except KeyboardInterrupt as exc:
            save_chip()
            by = f" by {exc}" if isinstance(exc, Stopped) else ""
            if run_id is None:
                where = "no run was started"
            else:
                # the store's count: a signal between storing a record and counting it here cannot skew it
                try:
                    held = f"holds {store.run(run_id).records} records"
                except StoreError:
                    held = f"has the records stored before the stop ({len(records)} taken)"
                where = (f"run {run_id} {held} in {store.path}: continue with "
                         f"--resume {run_id}" + (f" --chip {args.save_chip}" if args.save_chip else ""))
            say(f"\ninterrupted{by}; {safe_state_text(instrument, args)}; {where}")
            return interrupt_exit_code(exc)
        except StoreError as exc:
            if run_id is None:
                raise
            save_chip()
            raise StoreError(f"{exc}\n  the transfer stopped after {len(records)} records; "
                             f"{safe_state_text(instrument, args)}; the records stored before the failure are "
                             f"run {run_id}: once the store takes writes again, continue with --resume {run_id}"
                             + (f" --chip {args.save_chip}" if args.save_chip else "")) from exc
        except RramlabError as exc:
            if run_id is None:
                raise
            save_chip()
            raise RramlabError(f"{exc}\n  the transfer stopped after {len(records)} records; "
                               f"{safe_state_text(instrument, args)}; every record is in {store.path} as run "
                               f"{run_id}: continue with --resume {run_id}"
                               + (f" --chip {args.save_chip}" if args.save_chip else "")) from exc
    finally:
        store.close()
    wall = time.perf_counter() - start
    report = transfer.summarise(tplan, records, wall)
    report.update(run_id=run_id, store=str(store.path), backend=instrument.backend_name,
                  weights_file=weights_name)
    _print_report(report, instrument, isettings)
    if run_id is not None:
        from rramlab.app.summaries import transfer_store_summary

        with RunStore(store.path) as kept:
            kept.set_summary(run_id, json_ready(transfer_store_summary(report)))
    if args.json:
        settings = {k: v for k, v in run_settings.items() if k != "levels"}
        report["provenance"] = provenance_dict(__version__, ["rramlab", *args.argv], started,
                                               instrument.describe(), settings,
                                               {"protocol": "transfer", "run_id": run_id})
        write_json(args.json, json_ready(report))
        print(f"  report written to {args.json}")
    return EXIT_OK


def _finishes_cell(r) -> bool:
    if isinstance(r, IspvaResult):
        return r.target_s != HRS
    return isinstance(r, transfer.CellRead) and r.stage == "settled"


def _print_report(rep: dict, instrument, isettings) -> None:
    """The report's lines (``app/summaries.py``: the GUI's Transfer panel ends with the same)."""
    from rramlab.app.summaries import transfer_lines

    print("\n".join(transfer_lines(rep, instrument.backend_name)))
