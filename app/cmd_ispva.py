"""``rramlab ispva``: the paper's single-device write-verify experiment on the twin.

    rramlab ispva --devices 50 --json ispva.json --csv ispva.csv

Programs ``--devices`` fresh lone devices to each of the eight states G1..G8 (10, 20, ... 80 nS) by
ISPVA (``protocols/ispva.py``) and reports, per level and overall, the fraction within +-2 and
+-4 nS and the pulses used. Every pulse and result goes to the run store.
"""

from __future__ import annotations

import sys
import time

from rramlab.app.settings_flags import add_settings_flags, settings_from_args
from rramlab.protocols import ispva
from rramlab.protocols.store import RunStore, add_store_flag, json_ready, record_run

CSV_HEADER = ("device", "target_s", "converged", "pulses", "conductance_s", "error_s")
#: fresh devices per level at most (80,000 in all, about an hour on the twin); the paper used 50. A bound,
#: as --cycles is: a typo (1000000000) must not start a run that never ends.
MAX_DEVICES_PER_LEVEL = 10_000


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, add_force_flag

    p = subparsers.add_parser(
        "ispva", help=COMMANDS["ispva"][1],
        description="ISPVA on fresh lone devices of the twin, --devices per level G1..G8 (10..80 nS): read at "
                    "1 V, set pulse aimed at the level and stepped by the measured error, reset on overshoot, "
                    "until within tolerance or the pulse budget is spent; the read after programming_done counts.")
    add_settings_flags(p, ispva.IspvaSettings, "ISPVA settings")
    p.add_argument("--devices", type=int, default=50, metavar="N",
                   help=f"fresh devices per level (default 50, 1 to {MAX_DEVICES_PER_LEVEL})")
    p.add_argument("--json", metavar="FILE", help="write the summary (keys in the README), with a 'provenance' key")
    p.add_argument("--csv", metavar="FILE", help="write the final conductance of every device, as it runs, after "
                                                 "'#' lines saying what produced it (read with "
                                                 "pandas.read_csv(FILE, comment='#'))")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="draw the devices with device-to-device variability (as every twin command's --seed: "
                        "VT 20 mV, RON 10 %%, Ri 1 %%), device i from seed N + i; without it every device is the "
                        "paper's exact device (device i draws its programming error from seed i)")
    p.add_argument("--engine", choices=("auto", "fast", "spice"), default="auto", help="twin engine (default auto)")
    p.add_argument("--programming-error", choices=("paper", "device"), default="paper",
                   help="where a programmed cell's error comes from: 'paper' (default: exact levels, the paper's "
                        "1.06 nS Gaussian added when a cell is done) or 'device' (each switching event redraws the "
                        "flipped switches' VT and RON, so verify has something to correct)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_force_flag(p)
    add_store_flag(p)
    from rramlab.app.resume import add_resume_flag

    add_resume_flag(p, "ispva")
    p.set_defaults(handler=cmd_ispva)


def summary_dict(results, wall_s: float, devices_per_level: int) -> dict:
    """The JSON summary: fractions over all devices, RMSE, MAE, one entry per level, wall time (SI
    units); the GUI's ISPVA panel ends with the same (``app/summaries.py``)."""
    from rramlab.app.summaries import ispva_summary

    return ispva_summary(results, wall_s, devices_per_level)


def cmd_ispva(args) -> int:
    from tqdm import tqdm

    from rramlab.app.cli import EXIT_OK, Stopped, interrupt_exit_code, say
    from rramlab.app.pause import pausable
    from rramlab.app.outputs import OutputPath, RecordFile, check_output_paths, keep_record, now, \
        provenance_dict, provenance_lines, write_json
    from rramlab.drivers.interface import RequestError
    from rramlab.sim.virtual_array import Variability, VirtualArray

    from rramlab import __version__

    done_devices, replay, earlier = 0, [], []
    if args.resume is not None:
        settings, done_devices, replay, earlier = _resumed(args)
    else:
        settings = settings_from_args(ispva.IspvaSettings, args)
    if not 1 <= args.devices <= MAX_DEVICES_PER_LEVEL:
        raise RequestError(f"--devices {args.devices}: give 1 to {MAX_DEVICES_PER_LEVEL} devices per level "
                           f"(the paper used 50)")
    check_output_paths([OutputPath("--json", args.json), OutputPath("--csv", args.csv)], force=args.force)
    levels = ispva.PAPER_LEVELS_S
    store = RunStore(args.store)  # a bad store path is refused before any device is made
    started = now()
    results: list[ispva.IspvaResult] = list(earlier)  # a resumed run's summary counts its stored devices
    record_file = None
    total = args.devices * len(levels)
    from rramlab.app.cli import DEFAULT_SEED
    first_seed = DEFAULT_SEED if args.seed is None else args.seed
    run_settings = {**ispva_settings_dict(settings), "devices_per_level": args.devices,
                    "levels_s": list(levels), "seed": first_seed, "variability": args.seed is not None,
                    "varied": args.seed is not None,
                    "programming_error": args.programming_error}
    run_id = None
    try:
        def fresh_device(seed):
            spread = {} if args.seed is None else {"variability": Variability.typical()}
            return VirtualArray.lone_device(seed=seed, engine=args.engine, programming_error=args.programming_error,
                                            **spread)

        first = fresh_device(first_seed)
        ispva.plan(settings, [(0, 0)] * len(levels), levels, first)  # everything checked before any pulse
        command = ["rramlab", *args.argv]
        if args.csv:
            record_file = RecordFile(args.csv, "--csv")
            record_file.start(provenance_lines(__version__, command, started, first.describe(), run_settings,
                                               {"protocol": "ispva"}), CSV_HEADER)
        start = time.perf_counter()
        if args.resume is not None:
            say(f"ispva: resuming run {args.resume} with device {done_devices + 1} of {total}"
                + (f" (its {len(replay)} stored pulses replayed on its fresh twin device, not stored again)"
                   if replay else ""))
        with record_run(store, "ispva", run_settings, first, resume=args.resume) as rec, \
                tqdm(total=total, initial=done_devices, desc="ISPVA", unit="device", disable=args.no_progress,
                     file=sys.stderr, leave=False) as bar:
            run_id = rec.run_id
            for i in range(done_devices, total):
                target = levels[i // args.devices]
                device = first if i == 0 else fresh_device(first_seed + i)
                with device:
                    records = pausable(ispva.run, device, ispva.plan(settings, [(0, 0)], [target], device), "ISPVA",
                                       run_id)
                    if i == done_devices and replay:
                        _replay(records, replay, i)
                    for r in records:
                        if isinstance(r, ispva.IspvaResult):
                            rows = [(i, f"{r.target_s:.6g}", int(r.converged), r.pulses,
                                     f"{r.conductance_s:.6e}", f"{r.error_s:.6e}")]
                            results.append(r)  # counted before the pair: a stop held back to its end keeps both
                            keep_record(rec, r, record_file, rows)
                        else:
                            rec.add(r)
                bar.update(1)
    except KeyboardInterrupt as exc:
        by = f" by {exc}" if isinstance(exc, Stopped) else ""
        kept = f"; {record_file.rows} rows kept in {args.csv}" if record_file else ""
        stored = f"; every record is in {store.path} as run {run_id}" if run_id is not None else ""
        say(f"\ninterrupted{by} after {len(results)} of {total} devices{kept}{stored}")
        return interrupt_exit_code(exc)
    finally:
        if record_file:
            record_file.close()
        store.close()
    wall = time.perf_counter() - start
    summary = summary_dict(results, wall, args.devices)
    kind = f"varied (seed {args.seed}) " if args.seed is not None else ""
    print(f"ISPVA on {len(results)} fresh {kind}twin devices ({args.devices} per level), tolerance "
          f"+-{settings.tolerance_s * 1e9:g} nS, read at {settings.read_v:g} V")
    from rramlab.app.summaries import ispva_lines

    print("\n".join(ispva_lines(summary)) + f" (run {run_id} in {store.path})")
    if run_id is not None:
        with RunStore(store.path) as kept:
            kept.set_summary(run_id, json_ready(summary))
    if args.json:
        provenance = provenance_dict(__version__, command, started, first.describe(), run_settings,
                                     {"protocol": "ispva", "run_id": run_id})
        write_json(args.json, json_ready({**summary, "run_id": run_id, "settings": run_settings,
                                          "provenance": provenance}))
        print(f"  summary written to {args.json}")
    if args.csv:
        print(f"  {record_file.rows} rows written to {args.csv}")
    return EXIT_OK


def _resumed(args):
    """``--resume RUN``: the stored settings (devices per level, seed, programming error to ``args``),
    the devices finished, the stored pulses of the device cut short (to replay) and the stored results."""
    from rramlab.app.resume import resumed_settings
    from rramlab.drivers.interface import RramlabError
    from rramlab.protocols.store import stored_records

    given = sorted({t.split("=", 1)[0] for t in args.argv} & {"--devices", "--seed", "--programming-error"})
    if given:
        raise RramlabError(f"--resume {args.resume} continues the run with its stored settings: drop "
                           f"{', '.join(given)} (or start a new run without --resume)")
    with RunStore(args.store) as store:
        settings, stored = resumed_settings(args, store, "ispva", ispva.IspvaSettings)
        records = stored_records(ispva, store.records(args.resume))
    args.devices = int(stored["devices_per_level"])
    args.seed = int(stored["seed"]) if stored.get("variability") else None
    args.programming_error = stored.get("programming_error", "paper")
    done, replay = 0, []
    for r in records:
        if isinstance(r, ispva.IspvaResult):
            done, replay = done + 1, []
        else:
            replay.append(r)
    return settings, done, replay, [r for r in records if isinstance(r, ispva.IspvaResult)]


def _replay(records, stored, device: int) -> None:
    """Take the stored pulses of a device cut short from its fresh twin device's run again (the twin
    repeats them exactly: same seed, same settings), so they are not stored twice."""
    from rramlab.drivers.interface import RramlabError

    for want in stored:
        got = next(records, None)
        if got != want:
            raise RramlabError(f"device {device} does not repeat its stored pulses on the twin (stored {want}, now "
                               f"{got}): the run cannot be resumed; start a new one")


def ispva_settings_dict(settings) -> dict:
    from rramlab.protocols.settings import settings_dict

    return settings_dict(settings)
