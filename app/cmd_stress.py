"""``rramlab endurance``, ``rramlab retention`` and ``rramlab disturb``: the stress protocols.

    rramlab endurance --cell 3,7 --cycles 100000 --read-every log --csv end.csv
    rramlab retention --cells 0:4,0:4 --levels 20,50,80 --duration 2h --reads log:40
    rramlab disturb --cell 3,7 --reads 100000 --neighbours

Each runs on the twin (default) or a bench (``--bench FILE``), checks its whole plan before the
backend is opened, streams its records to the run store and ``--csv`` as they come, prints the
bench-clock estimate of the whole run before the first pulse on a bench, and a summary at the end.
``--aging`` gives the twin wear and retention drift (sim/aging.py); without it the twin is today's
ideal device.
"""

from __future__ import annotations

import sys
from dataclasses import replace

#: one reading on a bench at medium integration: 1 power-line cycle at 50 Hz (sim/instruments/clock.py)
BENCH_READ_S = 20e-3
#: GPIB time per pulse and per read (s): the drivers send about 6 transactions a pulse and 4 a read,
#: ~1 ms each (counted on the virtual bench by benchmarks/endurance.py; the 1 ms is assumed)
BENCH_PULSE_BUS_S = 6e-3
BENCH_READ_BUS_S = 4e-3


def format_duration(seconds: float) -> str:
    """The bench clock's format up to two days, then days, then years: retention runs are long."""
    from rramlab.sim.instruments.clock import format_duration as short

    if seconds < 2 * 86400:
        return short(seconds)
    if seconds < 365.25 * 86400:
        return f"{seconds / 86400:.3g} d"
    return f"{seconds / (365.25 * 86400):.3g} y"


def bench_pulse_period_s(width_s: float) -> float:
    """The 4156C's shortest pulse period for ``width_s`` (s): max(5 ms, width + 4 ms)."""
    return max(5e-3, width_s + 4e-3)


def bench_estimate_s(pulses: int, reads: int, width_s: float, waits_s: float = 0.0) -> float:
    """Bench-clock estimate (s) of a run: pulses x period + reads x integration + bus + waits."""
    return (pulses * (bench_pulse_period_s(width_s) + BENCH_PULSE_BUS_S)
            + reads * (BENCH_READ_S + BENCH_READ_BUS_S) + waits_s)


def _add_common(p, settings_class, title, with_cell=True, extra_help=None) -> None:
    from rramlab.app.cli import _add_backend_options, _cell, add_force_flag
    from rramlab.app.settings_flags import add_settings_flags
    from rramlab.protocols.store import add_store_flag

    add_settings_flags(p, settings_class, title, extra_help=extra_help, skip=_SKIP.get(settings_class.__name__, ()))
    if with_cell:
        p.add_argument("--cell", type=_cell, metavar="WL,BL",
                       help="run on this cell of the 24 x 24 array (lines counted from 0); without it: a lone device")
    p.add_argument("--csv", metavar="FILE", help="write every record as it comes, after '#' provenance lines "
                                                 "(read with pandas.read_csv(FILE, comment='#'))")
    p.add_argument("--aging", action="store_true",
                   help="twin only: give the cells wear and retention drift (sim/aging.py, assumed parameters); "
                        "without it the twin is the ideal device")
    p.add_argument("--cycles-to-failure", type=float, default=None, metavar="N",
                   help="twin with --aging: median cycles to failure of the wear model (default 1e5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_force_flag(p)
    add_store_flag(p)
    from rramlab.app.resume import add_resume_flag

    add_resume_flag(p, p.prog.split()[-1])
    _add_backend_options(p)


def _resumed(args, name: str, settings_class):
    """With ``--resume RUN``: the stored settings (and the stored settings dict); the stored cell
    goes to ``args.cell``. None without it."""
    if args.resume is None:
        return None
    from rramlab.app.resume import cell_of, resumed_settings
    from rramlab.protocols.store import RunStore

    with RunStore(args.store) as store:
        settings, stored = resumed_settings(args, store, name, settings_class)
    if hasattr(args, "cell"):
        args.cell = cell_of(stored)
    return settings, stored


#: settings the commands set from their own flags instead (e.g. retention's --cells)
_SKIP: dict[str, tuple[str, ...]] = {}


def register(sub) -> None:
    from rramlab.app.cli import COMMANDS
    from rramlab.protocols.endurance import EnduranceSettings

    p = sub.add_parser("endurance", help=COMMANDS["endurance"][1],
                       description="Set/reset cycles of one cell; both states read at log-spaced (--read-every log) "
                                   "or every K cycles; ends when the window closes below --min-window-ratio. "
                                   "Records streamed: a million cycles in constant memory.")
    _add_common(p, EnduranceSettings, "endurance settings (pulses as ISPP's ramp ends)",
                extra_help={"pulse_width_s": "With --bench the 4156C pulses 0.5 ms to 100 ms, so give --width."})
    p.set_defaults(handler=cmd_endurance)
    _register_retention(sub)
    _register_disturb(sub)


def _register_retention(sub) -> None:
    from rramlab.app.cli import COMMANDS
    from rramlab.protocols.retention import RetentionSettings

    p = sub.add_parser("retention", help=COMMANDS["retention"][1],
                       description="Program cells to levels by ISPVA (protocols/ispva.py, its defaults), then read "
                                   "every cell at log-spaced times. On a bench it waits with every output at 0 V "
                                   "(Ctrl-C leaves it safe and keeps the records); on the twin time is simulated.")
    _SKIP["RetentionSettings"] = ("duration_s", "reads", "spacing")
    p.add_argument("--cells", metavar="WL0:WL1,BL0:BL1", default=None,
                   help="the cells: wordlines WL0..WL1-1 by bitlines BL0..BL1-1 (e.g. 0:4,0:4), or one cell WL,BL; "
                        "levels go round the cells in order. Default: one cell per level on wordline 0")
    p.add_argument("--levels", default="20,50,80", metavar="NS,...",
                   help="target conductances in nS (default 20,50,80; the paper's levels are 10..80)")
    p.add_argument("--duration", default="2h", help="time of the last read: 2h, 30min, 90s, 3d, 10y (default 2h)")
    p.add_argument("--reads", default="log:40", help="log:N (log-spaced, default log:40) or lin:N reads of every cell")
    p.add_argument("--width", type=float, default=None, metavar="S",
                   help="ISPVA's programming pulse width (s, default 2e-6; with --bench the 4156C pulses 0.5 ms "
                        "to 100 ms, so give e.g. 2e-3)")
    _add_common(p, RetentionSettings, "retention settings", with_cell=False)
    p.set_defaults(handler=cmd_retention)


def _register_disturb(sub) -> None:
    from rramlab.app.cli import COMMANDS
    from rramlab.protocols.disturb import DisturbSettings

    p = sub.add_parser("disturb", help=COMMANDS["disturb"][1],
                       description="Read disturb: --reads reads of the cell at --read-v, recorded at log-spaced "
                                   "counts. With --neighbours, then --pulses half-bias pulses of --pulse-v on the "
                                   "cell, it and its adjacent half-selected neighbours read at log-spaced counts.")
    _SKIP["DisturbSettings"] = ("neighbours",)
    p.add_argument("--neighbours", action="store_true",
                   help="then half-bias pulses on the cell and its half-selected neighbours read")
    _add_common(p, DisturbSettings, "disturb settings",
                extra_help={"pulse_width_s": "With --bench the 4156C pulses 0.5 ms to 100 ms, so give --width."})
    p.set_defaults(handler=cmd_disturb)


def cmd_disturb(args) -> int:
    from rramlab.app.cli import EXIT_OK
    from rramlab.app.settings_flags import settings_from_args
    from rramlab.protocols import disturb

    again = _resumed(args, "disturb", disturb.DisturbSettings)
    settings = again[0] if again else replace(settings_from_args(disturb.DisturbSettings, args,
                                                                 skip=_SKIP["DisturbSettings"]),
                                              neighbours=int(args.neighbours))
    cell = args.cell if args.cell is not None else (0, 0)
    summariser = disturb.DisturbSummariser(settings.read_v)
    done = {"read": 0, "half-select": 0}

    def on_record(r):
        summariser.add(r)
        step, done[r.phase] = r.count - done[r.phase], max(done[r.phase], r.count)
        return max(step, 0)

    total = settings.reads + (settings.pulses if settings.neighbours else 0)
    n_watch = 5 if settings.neighbours else 0
    estimate = bench_estimate_s(settings.pulses if settings.neighbours else 0,
                                settings.reads + 1 + n_watch * 50, settings.pulse_width_s)
    code, instrument, taken, run_id = run_stress(
        args, "disturb", settings, lambda checker: disturb.plan(settings, cell, checker), disturb.run,
        _Rows(disturb.CSV_HEADER), on_record, total, "op", estimate, args.cell, protocol=disturb)
    if code != EXIT_OK:
        return code
    where = f"cell {cell[0]},{cell[1]}" if args.cell is not None else "lone device"
    events = getattr(instrument, "disturb_count", None)
    print(f"disturb on the {instrument.backend_name}, {where}: {settings.reads:,} reads at {settings.read_v:g} V"
          + (f", then {settings.pulses:,} half-bias pulses of {settings.pulse_v:g} V ({settings.pulse_v / 2:g} V on "
             f"the half-selected cells)" if settings.neighbours else "")
          + (f"; the twin counted {events} disturb events" if events is not None else "") + f"; run {run_id}")
    for phase, (w, b), role, g0, steps in summariser.changes():
        per = ", ".join(f"1e{d}: {dg * 1e9:+.3f}" for d, dg in steps)
        label = "reads" if phase == "read" else "half-bias pulses"
        print(f"  {phase:11s} {role:9s} {w:2d},{b:<2d} G0 {g0 * 1e9:6.2f} nS; change per decade of {label} (nS): {per}")
    keep_summary(args, run_id, {"disturb_events": events, "series": [
        {"phase": phase, "cell": list(c), "role": role, "start_s": g0,
         "change_per_decade_s": {f"1e{d}": dg for d, dg in steps}}
        for phase, c, role, g0, steps in summariser.changes()]})
    if args.csv:
        print(f"  {taken} rows written to {args.csv}")
    return EXIT_OK


def aging_from_args(args):
    """The Aging of ``--aging`` (with ``--cycles-to-failure``, and the run's ``--temperature``, which
    every recording command takes for the run store and which here also activates the twin's drift),
    or None; checked before any backend is opened (RramlabError naming the flag)."""
    from rramlab.drivers.interface import RramlabError

    if not getattr(args, "aging", False):
        for flag in ("cycles_to_failure",):
            if getattr(args, flag, None) is not None:
                raise RramlabError(f"--{flag.replace('_', '-')} sets a part of --aging: add --aging")
        return None
    if args.bench:
        raise RramlabError("--aging applies to the twin only: drop it with --bench (a real chip ages by itself)")
    from rramlab.sim.aging import Aging

    changes = {}
    if getattr(args, "temperature", None) is not None:
        from rramlab.protocols.store import parse_temperature

        try:
            changes["temperature_k"] = parse_temperature(args.temperature)
        except ValueError as exc:
            raise RramlabError(str(exc)) from None
    if args.cycles_to_failure is not None:
        changes["wear_cycles_to_failure"] = args.cycles_to_failure
    try:
        return replace(Aging(), **changes)
    except ValueError as exc:
        flag = "--temperature" if "temperature" in str(exc) else "--cycles-to-failure"
        raise RramlabError(f"{flag}: {exc}; give a positive number") from None


def _apply_aging(instrument, aging, args=None) -> None:
    """Give the twin its aging state (sim/aging.py), a separate state beside the chip.

    A chip loaded with ``--chip`` that was saved aged keeps its own state (its cells' cycles, cycles
    to failure, programming times and clock) with or without ``--aging``; ``--aging`` then only
    takes the run's ``--temperature`` if given (a bake at another temperature). Its cycles to failure
    were drawn when the chip was made, so a different ``--cycles-to-failure`` is refused."""
    if aging is None:
        return
    from dataclasses import replace

    from rramlab.drivers.interface import RramlabError
    from rramlab.sim.aging import AgingState

    kept = getattr(instrument, "aging", None)
    if kept is not None:
        if (getattr(args, "cycles_to_failure", None) is not None
                and aging.wear_cycles_to_failure != kept.aging.wear_cycles_to_failure):
            raise RramlabError(f"--cycles-to-failure {aging.wear_cycles_to_failure:g} differs from the "
                               f"{kept.aging.wear_cycles_to_failure:g} the --chip's cells were drawn with: drop it")
        if getattr(args, "temperature", None) is not None:
            kept.aging = replace(kept.aging, temperature_k=aging.temperature_k)
        return
    instrument.aging = AgingState(aging, instrument.geometry.shape, instrument.seed)


def run_stress(args, name: str, settings, plan_for, records_of, rows_of, on_record, total: int, unit: str,
               estimate_s=None, cell=None, protocol=None, stored_extra=None) -> tuple[int, object, int, object]:
    """The shared body of the three commands: check outputs and the plan, open the backend, record
    the run, stream ``records_of(instrument, plan)`` into the store and ``--csv`` (``rows_of(record)``
    gives its rows), call ``on_record`` per record, and make the backend safe however it ends.
    ``protocol``: the protocol module, for ``--resume RUN`` (its ``resume`` skips the plan past the
    run's stored records); ``stored_extra``: kept with the settings (the cell is always).
    Returns (exit code, instrument, records taken, run id)."""
    from tqdm import tqdm

    from rramlab.app.cli import (EXIT_ERROR, EXIT_OK, Stopped, check_backend_flags, interrupt_exit_code,
                                 open_backend_for_run, safe_state_text, say)
    from rramlab.app.outputs import (OutputError, OutputPath, RecordFile, check_output_paths, describe_os_error,
                                     keep_record, now, provenance_lines)
    from rramlab.drivers.interface import RramlabError
    from rramlab.protocols.settings import settings_dict
    from rramlab.app.pause import pausable
    from rramlab.protocols.store import RunStore, record_run, resume_plan

    from rramlab import __version__

    resume = getattr(args, "resume", None)
    run_settings = {**settings_dict(settings), "cell": None if cell is None else list(cell), **(stored_extra or {})}
    cell_requested = cell is not None
    check_backend_flags(args, cell_requested)
    check_output_paths([OutputPath("--csv", args.csv), OutputPath("--save-chip", args.save_chip),
                        OutputPath("--visa-log", args.visa_log, append=True)], force=args.force)
    aging = aging_from_args(args)
    checker = None
    if args.bench:
        from rramlab.drivers.probe_station import load_bench

        checker = load_bench(args.bench).checker()
    first_plan = plan_for(checker)  # the whole plan, before any backend is opened
    store = RunStore(args.store)
    if resume is not None:
        try:
            resume_plan(protocol, first_plan, store, resume)  # a run of another plan is refused here
        except BaseException:
            store.close()
            raise
    started = now()
    instrument, stopped = open_backend_for_run(args, cell_requested, store)
    if instrument is None:
        return stopped, None, 0, None
    taken, run_id, record_file = 0, None, None
    try:
        with instrument:
            _apply_aging(instrument, aging, args)
            the_plan = plan_for(instrument)
            with record_run(store, name, run_settings, instrument, resume=resume) as stored:
                run_id = stored.run_id
                if resume is not None:
                    the_plan, earlier = resume_plan(protocol, the_plan, store, resume)
                    if name == "retention" and not hasattr(instrument, "advance_time"):
                        the_plan = _bench_retention_clock(the_plan, store, resume)
                    say(f"{name}: resuming run {run_id} after its {earlier} stored records")
                    from rramlab.protocols.store import stored_records

                    for r in stored_records(protocol, store.records(resume)):
                        on_record(r)  # the summary at the end is that of the whole run
                if args.csv:
                    record_file = RecordFile(args.csv, "--csv")
                    record_file.start(provenance_lines(__version__, ["rramlab", *args.argv], started,
                                                       instrument.describe(), settings_dict(settings),
                                                       {"protocol": name, "cell": None if cell is None else list(cell)}),
                                      rows_of.header)
                if instrument.backend_name != "twin" and estimate_s is not None:
                    say(f"{name}: estimated bench time of the whole run {format_duration(estimate_s)}")
                with tqdm(total=total, desc=name, unit=unit, disable=args.no_progress, file=sys.stderr,
                          leave=False) as bar:
                    for record in pausable(records_of, instrument, the_plan, name, run_id):
                        taken += 1
                        keep_record(stored, record, record_file, rows_of(record))
                        bar.update(on_record(record))
                if args.save_chip:
                    try:
                        instrument.save_chip(args.save_chip)
                    except OSError as exc:
                        raise OutputError(f"cannot write --save-chip {args.save_chip}: "
                                          f"{describe_os_error(exc)}") from None
    except KeyboardInterrupt as exc:
        kept = f"; {record_file.rows} rows kept in {args.csv}" if record_file else ""
        by = f" by {exc}" if isinstance(exc, Stopped) else ""
        say(f"\ninterrupted{by} after {taken} records; {safe_state_text(instrument, args)}{kept}; "
            f"every record is in the run store as run {run_id}")
        return interrupt_exit_code(exc), instrument, taken, run_id
    except (RramlabError, OSError, ValueError) as exc:
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        say(f"rramlab {name}: error: {message}\n  stopped after {taken} records; {safe_state_text(instrument, args)}")
        return EXIT_ERROR, instrument, taken, run_id
    finally:
        store.close()
        if record_file:
            record_file.close()
    return EXIT_OK, instrument, taken, run_id


def keep_summary(args, run_id, summary: dict) -> None:
    """Keep the run's summary (SI units) with its row in the run store, as ``rramlab ispva`` does."""
    if run_id is None:
        return
    from rramlab.protocols.store import RunStore, json_ready

    with RunStore(args.store) as store:
        store.set_summary(run_id, json_ready(summary))


def _bench_retention_clock(the_plan, store, run_id):
    """A retention run resumed on a bench keeps its clock: the seconds since its last cell was
    programmed (the store's time of its last IspvaResult) decide which read comes next."""
    import datetime as dt

    results = store.records(run_id, type="IspvaResult")
    if the_plan.start_cell < len(the_plan.cells) or not results:
        return the_plan
    programmed = dt.datetime.fromisoformat(results[-1].at)
    elapsed = (dt.datetime.now(dt.timezone.utc) - programmed).total_seconds()
    return replace(the_plan, elapsed_s=max(elapsed, 0.0))


class _Rows:
    """rows_of for run_stress: the CSV header and one row per record that has ``csv_row()`` (a
    retention run's programming pulses go to the run store only)."""

    def __init__(self, header):
        self.header = header

    def __call__(self, record):
        return [record.csv_row()] if hasattr(record, "csv_row") else []


def parse_cells(text: str | None, count: int) -> list[tuple[int, int]]:
    """'0:4,0:4' -> the 16 cells of wordlines 0..3 x bitlines 0..3; '3,7' -> [(3, 7)]; None -> one
    cell per level on wordline 0 (``count``)."""
    from rramlab.drivers.interface import RequestError

    if text is None:
        return [(0, b) for b in range(count)]
    try:
        parts = [x.strip() for x in text.split(",")]
        if len(parts) != 2:
            raise ValueError
        spans = []
        for part in parts:
            lo, sep, hi = part.partition(":")
            spans.append(range(int(lo), int(hi)) if sep else range(int(lo), int(lo) + 1))
    except ValueError:
        raise RequestError(f"--cells {text!r}: give WL0:WL1,BL0:BL1 (ends excluded, e.g. 0:4,0:4) or WL,BL") from None
    cells = [(w, b) for w in spans[0] for b in spans[1]]
    if not cells:
        raise RequestError(f"--cells {text!r} names no cell: the end of a range is excluded, e.g. 0:4")
    return cells


def parse_levels_ns(text: str) -> list[float]:
    """'20,50,80' (nS) -> [20e-9, 50e-9, 80e-9] S."""
    from rramlab.drivers.interface import RequestError

    try:
        levels = [float(x) * 1e-9 for x in text.split(",") if x.strip()]
    except ValueError:
        levels = []
    if not levels:
        raise RequestError(f"--levels {text!r}: give target conductances in nS, e.g. 20,50,80")
    return levels


def cmd_retention(args) -> int:
    import time

    from rramlab.app.cli import EXIT_OK
    from rramlab.app.settings_flags import settings_from_args
    from rramlab.protocols import retention
    again = _resumed(args, "retention", retention.RetentionSettings)
    if again:
        settings, stored = again
        given = sorted({t.split("=", 1)[0] for t in args.argv} & {"--cells", "--levels", "--duration", "--reads",
                                                                   "--width"})
        if given:
            from rramlab.drivers.interface import RramlabError

            raise RramlabError(f"--resume {args.resume} continues the run with its stored settings: drop "
                               f"{', '.join(given)} (or start a new run without --resume)")
        cells = [tuple(c) for c in stored["cells"]]
        targets = [float(t) for t in stored["targets_s"]]
    else:
        settings = settings_from_args(retention.RetentionSettings, args, skip=_SKIP["RetentionSettings"])
        spacing, reads = retention.parse_reads(args.reads)
        settings = replace(settings, duration_s=retention.parse_duration(args.duration), reads=reads,
                           spacing=spacing)
        if args.width is not None:
            settings = replace(settings, program=replace(settings.program, pulse_width_s=args.width))
        levels = parse_levels_ns(args.levels)
        cells = parse_cells(args.cells, len(levels))
        targets = [levels[i % len(levels)] for i in range(len(cells))]
    summariser = retention.RetentionSummariser(settings.tolerance_s)

    def on_record(r):
        summariser.add(r)
        return 1 if isinstance(r, retention.RetentionRecord) else 0

    times = retention.schedule(settings)
    reads_total = len(cells) * len(times)
    # programming: about 4 pulses and reads per cell (ISPVA on the twin), then the reads and the waits
    estimate = bench_estimate_s(4 * len(cells), 4 * len(cells) + len(times), settings.program.pulse_width_s,
                                waits_s=settings.duration_s)
    start = time.perf_counter()
    code, instrument, taken, run_id = run_stress(
        args, "retention", settings, lambda checker: retention.plan(settings, cells, targets, checker),
        retention.run, _Rows(retention.CSV_HEADER), on_record, reads_total, "read", estimate, cells[0],
        protocol=retention, stored_extra={"cells": [list(c) for c in cells], "targets_s": targets})
    if code != EXIT_OK:
        return code
    wall = time.perf_counter() - start
    simulated = hasattr(instrument, "advance_time")
    clock = (f"simulated time: {format_duration(settings.duration_s)} of retention in {wall:.1f} s of wall time"
             if simulated else f"{format_duration(settings.duration_s)} of wall time")
    aged = " (with wear and drift)" if getattr(instrument, "aging", None) is not None else ""
    print(f"retention on the {instrument.backend_name}{aged}: {len(cells)} cells, {len(times)} reads each "
          f"from {times[0]:.3g} s to {format_duration(times[-1])} at {settings.read_v:g} V ({clock}); run {run_id}")
    for lv in summariser.levels_summary():
        left = (f"left +-{settings.tolerance_s * 1e9:g} nS at {format_duration(lv.left_at_s)}" if lv.left_at_s is not None
                else f"stayed within +-{settings.tolerance_s * 1e9:g} nS")
        print(f"  {lv.target_s * 1e9:5.1f} nS ({lv.cells} cells): {lv.first_s * 1e9:6.2f} -> {lv.last_s * 1e9:6.2f} nS, "
              f"drift {lv.drift_per_decade_s * 1e9:+.3f} nS per decade of time; {left}")
    keep_summary(args, run_id, {"simulated_time": simulated, "levels": [
        {"target_s": lv.target_s, "cells": lv.cells, "first_s": lv.first_s, "last_s": lv.last_s,
         "drift_per_decade_s": lv.drift_per_decade_s, "left_at_s": lv.left_at_s}
        for lv in summariser.levels_summary()]})
    if args.csv:
        print(f"  {taken} records, {reads_total} reads written to {args.csv}")
    return EXIT_OK


def cmd_endurance(args) -> int:
    from rramlab.app.cli import EXIT_OK
    from rramlab.app.settings_flags import settings_from_args
    from rramlab.protocols import endurance

    again = _resumed(args, "endurance", endurance.EnduranceSettings)
    settings = again[0] if again else settings_from_args(endurance.EnduranceSettings, args)
    cell = args.cell if args.cell is not None else (0, 0)
    summariser = endurance.EnduranceSummariser(settings.min_window_ratio)
    last_cycle = [0]

    def on_record(r):
        summariser.add(r)
        done, last_cycle[0] = r.cycle - last_cycle[0], r.cycle
        return done

    p = endurance.plan(settings, cell, None) if not args.bench else None
    reads = 2 * (p or endurance.EndurancePlan(settings, *cell)).reads()
    estimate = bench_estimate_s(2 * settings.cycles, reads, settings.pulse_width_s)
    code, instrument, taken, run_id = run_stress(
        args, "endurance", settings, lambda checker: endurance.plan(settings, cell, checker), endurance.run,
        _Rows(endurance.CSV_HEADER), on_record, settings.cycles, "cycle", estimate,
        args.cell, protocol=endurance)
    if code != EXIT_OK:
        return code
    print("\n".join(endurance_lines(summariser, settings, instrument, args.cell, run_id)))
    keep_summary(args, run_id, {"closed_at_cycle": summariser.closed_at,
                                "cycles": summariser.last.cycle if summariser.last else 0,
                                "decades": [{"first_cycle": d.first, "last_cycle": d.last, "reads": d.reads,
                                             "lrs_a": d.lrs_a, "hrs_a": d.hrs_a, "window_ratio": d.ratio,
                                             "lowest_window_ratio": d.min_ratio} for d in summariser.windows()]})
    if args.csv:
        print(f"  {taken} rows written to {args.csv}")
    return EXIT_OK


def endurance_lines(summariser, settings, instrument, cell, run_id) -> list[str]:
    """The endurance summary: the window per decade of cycles and where it closed (nA on screen)."""
    where = f"cell {cell[0]},{cell[1]}" if cell is not None else "lone device"
    cycles = summariser.last.cycle if summariser.last else 0
    aged = " (with wear and drift)" if getattr(instrument, "aging", None) is not None else ""
    lines = [f"endurance on the {instrument.backend_name}{aged}, {where}: {cycles:,} cycle{'s' * (cycles != 1)} of "
             f"{settings.set_v:g} V / "
             f"{settings.reset_v:g} V, {settings.pulse_width_s:g} s pulses, read at {settings.read_v:g} V; "
             f"run {run_id}"]
    for d in summariser.windows():
        lines.append(f"  cycles {d.first:>9,} .. {d.last:<9,}: LRS {d.lrs_a * 1e9:7.2f} nA, HRS {d.hrs_a * 1e9:6.2f} nA, "
                     f"window {d.ratio:7.2f}x (lowest {d.min_ratio:.2f}x, {d.reads} reads)")
    if summariser.closed_at is not None:
        lines.append(f"  window closed below {settings.min_window_ratio:g}x at cycle {summariser.closed_at:,}")
    else:
        lines.append(f"  window stayed above {settings.min_window_ratio:g}x for all {cycles:,} cycles")
    return lines
