"""The ``rramlab`` command line.

    rramlab ispp --cycles 3 --csv ispp.csv           # lone simulated HT-RRAM device
    rramlab ispp --cell 3,7 --csv ispp.csv           # one cell of the 24 x 24 array twin
    rramlab ispp --bench bench.toml --cell 3,7 --width 1e-3 --csv ispp.csv   # a real probe station
    rramlab iv --csv iv.csv                          # DC sweep 0 -> 4.2 -> 0 -> -1.6 V of a lone device
    rramlab bench check bench.toml
    rramlab bench safe bench.toml                    # 0 V, outputs off, matrix open (e.g. after kill -9)

Thin on purpose: it picks a backend, runs a protocol and writes its records as they come. Every
row is flushed as soon as it is measured, so a run stopped by an error or Ctrl-C keeps what it took;
the instrument is used as a context manager, so its outputs return to 0 V whatever happens.

Before the first command: the flags are checked against each other (``--bench ""``, ``--seed`` with
``--bench``...), every output path is checked (``app/outputs.py``), and the plan is checked against
the safe operating area. A CSV starts with ``#`` provenance lines.

Stopping: Ctrl-C (SIGINT), SIGTERM and SIGHUP (a closed terminal, a dropped SSH session, ``kill``) all
stop a run the same way: the instrument's safe-state sequence runs to its end (signals arriving
during it are held back by the seam), the rows taken are kept, and the exit code is 128 + the signal
number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP. The CLI says "outputs are at 0 V" only when
the safe-state sequence completed; otherwise it says the state is unknown and how to make the bench
safe. SIGKILL cannot be caught: it leaves the bench as it was at that instant (see the README).
No input or OS error ends in a traceback: one line says what happened and what to do, exit code 1.
"""

from __future__ import annotations

import sys

# A Ctrl-C while this module is imported (the bulk of the command's start-up) prints one line, not a
# traceback: the hook is in place from here (or from ``import rramlab``, under the console script) to
# the end of this module.
from rramlab import _STARTUP_INTERRUPTED as STARTUP_INTERRUPTED, _install_startup_hook, _remove_startup_hook

_install_startup_hook()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402

# Nothing here imports numpy, pydantic or a protocol at module level: ``rramlab --help`` and
# ``rramlab --version`` must start at once (issue 21). A command's modules are imported when it runs
# or its help is asked.

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Every command, in the order ``rramlab --help`` lists them: name -> (``module:function`` that adds
#: its parser to the subparsers and sets ``handler=<function(args) -> exit code>`` as its default
#: (``register`` when no function is named), the one line ``rramlab --help`` shows). The module is
#: imported only when its command runs or its help is asked; ``tests/test_cli_startup.py`` holds
#: the line here to the command's own. One protocol, one module.
COMMANDS: dict[str, tuple[str, str]] = {
    "ispp": ("rramlab.app.cli:register_ispp", "incremental step pulse programming of one device or cell"),
    "bench": ("rramlab.app.cli:register_bench", "probe-station bench files: find the instruments, check, make safe"),
    "iv": ("rramlab.app.cmd_iv", "DC staircase sweep of a lone twin device or a twin array cell (0 -> 4.2 -> 0 -> "
                                "-1.6 -> 0 V)"),
    "ispva": ("rramlab.app.cmd_ispva", "write-verify fresh lone twin devices to the 8 levels (the paper's Fig. 4b "
                                       "experiment)"),
    "transfer": ("rramlab.app.cmd_transfer", "program a weight file into the differential array, verify, re-read, "
                                             "report"),
    "map": ("rramlab.app.cmd_map", "read every cell of the array (or a region) at the read voltage: the conductance "
                                   "map"),
    "runs": ("rramlab.app.cmd_runs", "list, show and export the runs in the run store"),
    "cell": ("rramlab.app.cmd_runs:register_cell", "every read of one cell across the runs of a chip: table, CSV, "
                                                   "plot"),
    "train": ("rramlab.app.cmd_network", "train the 784-24-10 network: FP32, QT (3-bit), QT & PR (pruned, 3-bit)"),
    "infer": ("rramlab.app.cmd_network", "spiking inference with the second layer in the array"),
    "power": ("rramlab.app.cmd_network", "average power of the array during inference (eqns 1-3)"),
    "reproduce": ("rramlab.app.cmd_network", "the paper's experiment on the twin, its figures beside ours"),
    "sweep": ("rramlab.app.cmd_sweep", ("Monte-Carlo sweep of the twin (chips, variability, wires, programming error, pruning, "
                                     "firing threshold) on Dask; NetCDF out")),
    "endurance": ("rramlab.app.cmd_stress", "set/reset cycles of one cell, both states read at log-spaced cycles"),
    "retention": ("rramlab.app.cmd_stress", "program cells to levels, read them at log-spaced times"),
    "disturb": ("rramlab.app.cmd_stress", "repeated reads of a cell; half-bias pulses with its neighbours read"),
    "run": ("rramlab.app.cmd_recipe", "run an experiment recipe (TOML): every step planned and checked first, one "
                                      "session in the run store, --resume after a stop"),
    "twin": ("rramlab.app.cmd_twin", "fit the twin to a chip's stored ISPP runs: a chip file (--chip) and a report"),
    "gui": ("rramlab.app.cmd_gui", "open the desktop window: every protocol on the twin or a bench, live plots"),
}

#: the modules that add commands (each imported only for its own commands)
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(spec.split(":")[0] for spec, _ in COMMANDS.values()))

#: numpy's BLAS starts a thread per core for every product. rramlab's products are small (a 32 x 784
#: mini-batch, a 24 x 20 array), so on a busy 2-core machine those threads only wait for each other:
#: `rramlab train` took 43-45 s with them and 2.4-2.9 s with one (issue 19). Set before numpy loads;
#: a variable the user set is left alone.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_blas_threads(environ=os.environ) -> None:
    """One BLAS thread unless the user set a thread count (any of BLAS_THREAD_VARIABLES)."""
    if not any(name in environ for name in BLAS_THREAD_VARIABLES):
        for name in BLAS_THREAD_VARIABLES:
            environ[name] = "1"

#: The seed of the twin's chip when --seed is not given.
DEFAULT_SEED = 0


def twin_kwargs(args) -> dict:
    """VirtualArray keyword arguments from the twin's flags: without --seed the paper's exact
    device (DEFAULT_SEED, no variability); with --seed a chip drawn with typical device-to-device
    variability from that seed; --device picks the preset; --engine the engine."""
    from rramlab.sim.virtual_array import Variability

    seed = getattr(args, "seed", None)
    kwargs: dict = {"seed": DEFAULT_SEED}
    if seed is not None:
        kwargs.update(seed=seed, variability=Variability.typical())
    if getattr(args, "device", None) is not None:
        kwargs["device"] = args.device
    if getattr(args, "programming_error", None) is not None:
        kwargs["programming_error"] = args.programming_error
    if getattr(args, "engine", None) is not None:
        kwargs["engine"] = args.engine
    return kwargs


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that a run stops exactly as on Ctrl-C (it is
    a KeyboardInterrupt: every ``except KeyboardInterrupt`` and context manager treats it alike)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal number, as shells report it: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


@contextlib.contextmanager
def stop_signals_raise():
    """While the block runs (in the main thread), SIGTERM and SIGHUP raise Stopped like Ctrl-C
    raises KeyboardInterrupt; the previous handlers come back afterwards.

    A SIGHUP that was ignored when rramlab started (``nohup rramlab ...``) stays ignored, so a
    logout does not stop an unattended run. SIGTERM always stops a run: it is how a run whose
    Ctrl-C is ignored (a script's background job) is stopped safely (``kill PID``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Stopped(signum)

    previous = {}
    try:
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            if name == "SIGHUP" and signal.getsignal(sig) is signal.SIG_IGN:
                continue  # nohup: whoever started us asked for hang-ups to be ignored
            previous[sig] = signal.signal(sig, stop)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def say(text: str) -> None:
    """A line on stderr that cannot itself fail (a closed terminal after SIGHUP, a broken pipe)."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def _cell(text: str) -> tuple[int, int]:
    try:
        w, b = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cell takes WL,BL (two whole numbers, from 0), got {text!r}")
    return w, b


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend (default: the simulation twin)")
    g.add_argument("--bench", metavar="FILE", help="bench TOML file of a probe station; without it the twin runs")
    g.add_argument("--visa-log", metavar="FILE", help="with --bench: " + VISA_LOG_HELP)
    g.add_argument("--engine", choices=("auto", "fast", "spice"), default=None,
                   help="twin only: 'spice' solves every call in ngspice (the reference), 'fast' with the nodal "
                        "engine held to it; 'auto' (default) is fast except pulses whose switch order only "
                        "ngspice can settle")
    g.add_argument("--wire-resistance", type=float, metavar="OHM", default=None,
                   help="twin array only: wire resistance per line segment (ohm, default 2)")
    g.add_argument("--device", choices=("measured", "table1"), default=None,
                   help="twin only: device preset; 'measured' (default) fits the measured ISPP (abrupt reset), "
                        "'table1' takes the paper's Table 1 literally (staircase reset)")
    g.add_argument("--seed", type=int, default=None,
                   help="twin only: draw a chip with device-to-device variability from this seed (VT 20 mV, "
                        "RON 10 %%, Ri 3 %%; different seeds, different chips); without it the twin is the "
                        "paper's exact device, the same every run")
    g.add_argument("--programming-error", choices=("paper", "device"), default=None,
                   help="twin only: 'paper' (default: exact levels plus the paper's 1.06 nS Gaussian when a cell is "
                        "done) or 'device' (each switching event redraws the flipped switches' VT and RON)")
    g.add_argument("--chip", metavar="FILE", help="twin only: start from a chip state saved with --save-chip")
    g.add_argument("--save-chip", metavar="FILE", help="twin only: save the chip state at the end of the run")


def add_force_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite existing output files (a read-only one is still "
                                                          "refused)")


def check_backend_flags(args, cell_requested: bool) -> None:
    """Refuse flags that contradict each other or do nothing with the backend asked for, before
    anything is opened. Raises RramlabError naming the flag and the fix."""
    from rramlab.drivers.interface import RramlabError

    twin_only = [name for name in ("engine", "wire_resistance", "chip", "save_chip", "seed", "device",
                                   "programming_error")
                 if getattr(args, name, None) is not None]
    if args.bench is not None:
        if not args.bench.strip():
            raise RramlabError("--bench is empty: give the path of a bench TOML file (e.g. drivers/benches/sim.toml), "
                               "or leave --bench out to run the twin")
        if not cell_requested:
            raise RramlabError("--bench needs --cell WL,BL: name the cell of the array on the probe card (lines counted from 0)")
        from rramlab.app import virtual_bench
        from rramlab.drivers.probe_station import load_bench

        if twin_only and not virtual_bench.is_virtual(load_bench(args.bench)):
            flags = ", ".join("--" + n.replace("_", "-") for n in twin_only)
            raise RramlabError(f"{flags} {'applies' if len(twin_only) == 1 else 'apply'} to the twin only; "
                               f"drop {'it' if len(twin_only) == 1 else 'them'} when you use --bench")
        return
    if args.visa_log is not None:
        raise RramlabError("--visa-log needs --bench: the twin sends no VISA commands")
    if args.wire_resistance is not None and not cell_requested:
        raise RramlabError("--wire-resistance applies to the array: add --cell WL,BL")
    if args.chip is not None and (args.seed is not None or args.wire_resistance is not None
                                  or getattr(args, "device", None) is not None
                                  or getattr(args, "programming_error", None) is not None):
        raise RramlabError("--chip loads a saved chip, which keeps its own seed, device and wires: "
                           "drop --seed, --device and --wire-resistance")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``rramlab`` parser. ``command``: only that command's module is imported and its parser
    built in full; every other command is a stub that only ``rramlab --help`` reads. ``None``: every
    command in full (slow: imports every protocol)."""
    from rramlab import __version__

    parser = argparse.ArgumentParser(prog="rramlab", description="Program and read HT-RRAM crossbars, real or simulated.")
    parser.add_argument("--version", action="version", version=f"rramlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered: set[str] = set()
    for name, (spec, _) in COMMANDS.items():
        if (command is None or name == command) and spec not in registered:
            registered.add(spec)
            module, _, function = spec.partition(":")
            getattr(importlib.import_module(module), function or "register")(sub)
    for name, (_, text) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=text)
    # listed in COMMANDS order whichever module was registered first
    order = list(COMMANDS)
    sub._choices_actions.sort(key=lambda action: order.index(action.dest))
    return parser


def register_ispp(sub) -> None:
    from rramlab.app.settings_flags import add_settings_flags
    from rramlab.drivers.keysight_4156c import PULSE_MAX_WIDTH, PULSE_MIN_WIDTH
    from rramlab.protocols.ispp import IsppSettings
    from rramlab.protocols.store import add_store_flag

    p = sub.add_parser("ispp", help=COMMANDS["ispp"][1],
                       description="ISPP: a rising set ramp then a falling reset ramp, a read after every pulse. "
                                   "The whole plan is checked against the safe operating area before the first "
                                   "pulse. Every pulse is recorded in the run store; the run id is printed.")
    add_settings_flags(p, IsppSettings, "ISPP settings (defaults: the paper's simulation values)",
                       extra_help={"pulse_width_s": f"With --bench the 4156C pulses "
                                                    f"{PULSE_MIN_WIDTH * 1e3:g} ms to {PULSE_MAX_WIDTH * 1e3:g} ms, "
                                                    "so give --width there."})
    p.add_argument("--cell", type=_cell, metavar="WL,BL",
                   help="run on this cell of the 24 x 24 array (lines counted from 0); without it: a lone device")
    p.add_argument("--csv", metavar="FILE", help="write cycle,phase,pulse_v,read_a, one row per pulse, as it runs, "
                                                 "after '#' lines saying what produced it (read with "
                                                 "pandas.read_csv(FILE, comment='#'))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_force_flag(p)
    add_store_flag(p)
    from rramlab.app.resume import add_resume_flag

    add_resume_flag(p, "ispp")
    _add_backend_options(p)
    p.set_defaults(handler=cmd_ispp)


def register_bench(sub) -> None:
    p = sub.add_parser("bench", help=COMMANDS["bench"][1],
                       description="The probe station's bench file (which VISA address is the 4156C, which the "
                                   "E5250A, the pin map and the limits; see docs/bench.md): find the instruments, "
                                   "check the file, return the bench to a safe state.")
    bsub = p.add_subparsers(dest="bench_command", metavar="ACTION")
    c = bsub.add_parser("scan", help="list the VISA resources, each one's *IDN? answer, and the bench-file lines for "
                                     "the 4156C and E5250A found",
                        description="What a pyvisa user does first: list every VISA resource, ask each for *IDN?, "
                                    "and print the bench-file lines for the 4156C and the E5250A it found.")
    c.add_argument("--backend", metavar="VISA_LIBRARY", default="",
                   help="pyvisa's VISA library: '' (default: the one pyvisa finds, NI-VISA or Keysight's), '@py' "
                        "(pyvisa-py), '@sim' (pyvisa-sim's example devices) or 'FILE.yaml@sim'")
    c.add_argument("--timeout", type=float, metavar="SECONDS", default=2.0,
                   help="how long to wait for each *IDN? answer (default 2 s)")
    c = bsub.add_parser("check", help="validate a bench file, connect, identify both instruments, print the pin map")
    c.add_argument("file", metavar="FILE", help="the bench TOML file (e.g. drivers/benches/sim.toml)")
    c.add_argument("--visa-log", metavar="FILE", help=VISA_LOG_HELP)
    c = bsub.add_parser("safe", help="connect and return the bench to 0 V, outputs off, matrix open (no reset): "
                                     "what to run after a run was killed (kill -9) or crashed")
    c.add_argument("file", metavar="FILE", help="the bench TOML file of the station to make safe")
    c.add_argument("--visa-log", metavar="FILE", help=VISA_LOG_HELP)
    p.set_defaults(handler=cmd_bench)


#: the help of every --visa-log
VISA_LOG_HELP = "log every VISA write and read, timestamped (appended to an existing log)"


def open_backend(args, cell_requested: bool):
    """The instrument the user asked for: a probe station from --bench, else the twin
    (a lone device, or the 24 x 24 array when a cell is named)."""
    check_backend_flags(args, cell_requested)
    if args.bench is not None:
        from rramlab.app import virtual_bench
        from rramlab.drivers.probe_station import connect_bench, load_bench

        config = load_bench(args.bench)
        if virtual_bench.is_virtual(config):  # the twin behind virtual instruments: twin flags apply
            station = virtual_bench.open_virtual_bench(config, args, visa_log=args.visa_log)
        else:
            station = connect_bench(config, visa_log=args.visa_log)
        for line in station.stale_error_lines():  # also in the run's provenance (describe)
            say(line)
        return station
    from rramlab.sim.array import ArrayParameters
    from rramlab.sim.virtual_array import VirtualArray

    kwargs = twin_kwargs(args)
    if args.chip:
        return VirtualArray.load_chip(args.chip, engine=args.engine)
    if cell_requested:
        if args.wire_resistance is not None:
            kwargs["array"] = ArrayParameters(wire_resistance=args.wire_resistance)
        return VirtualArray(**kwargs)
    return VirtualArray.lone_device(**kwargs)



def open_backend_for_run(args, cell_requested: bool, store):
    """``open_backend`` for a command that has already opened its run store: (instrument, None), or
    (None, exit code) after a Ctrl-C while connecting (one line said); the store is closed when the
    backend does not open, whatever the reason."""
    try:
        return open_backend(args, cell_requested), None
    except KeyboardInterrupt as exc:
        store.close()
        say(f"\ninterrupted while opening the backend; {safe_state_text(None, args)}")
        return None, interrupt_exit_code(exc)
    except BaseException:
        store.close()
        raise

def safe_state_text(instrument, args) -> str:
    """What the user may rely on after a run stopped: 0 V only when the safe-state sequence ran
    to its end (``outputs_safe``); otherwise the state is unknown and the way out is named."""
    if instrument is not None and instrument.outputs_safe:
        if instrument.backend_name == "twin":
            return "outputs are at 0 V"
        return "outputs are at 0 V, output switches off, every crosspoint open"
    if getattr(args, "bench", None):
        return (f"the safe-state sequence did not complete, so the bench state is UNKNOWN: run "
                f"'rramlab bench safe {args.bench}' before touching the probes")
    return "the twin's outputs were not reset"


def _fmt_na(a: float) -> str:
    return f"{a * 1e9:.1f} nA"


#: cycles summarised on the terminal; the CSV holds every row of every cycle
MAX_PRINTED_CYCLES = 10


def cmd_ispp(args) -> int:
    from rramlab.app.outputs import OutputError, OutputPath, RecordFile, check_output_paths, describe_os_error, \
        keep_record, now, plural, provenance_lines
    from rramlab.app.settings_flags import settings_from_args
    from rramlab.drivers.interface import RramlabError
    from rramlab.protocols import ispp
    from rramlab.protocols.settings import settings_dict

    from rramlab import __version__

    from rramlab.protocols.store import RunStore, record_run, resume_plan

    store = None
    if args.resume is not None:
        from rramlab.app.resume import cell_of, resumed_settings

        store = RunStore(args.store)
        try:
            settings, stored = resumed_settings(args, store, "ispp", ispp.IsppSettings)
        except BaseException:
            store.close()
            raise
        args.cell = cell_of(stored)
    else:
        settings = settings_from_args(ispp.IsppSettings, args)
    cell = args.cell if args.cell is not None else (0, 0)
    check_backend_flags(args, args.cell is not None)
    check_output_paths([OutputPath("--csv", args.csv), OutputPath("--save-chip", args.save_chip),
                        OutputPath("--visa-log", args.visa_log, append=True)], force=args.force)
    checker = None
    if args.bench:
        from rramlab.drivers.probe_station import load_bench

        # The bench file's limits, pin map and pulse timing: a bad plan never connects.
        checker = load_bench(args.bench).checker()
    from rramlab.app.pause import pausable

    store = store or RunStore(args.store)  # a bad store path is refused before any backend is opened
    try:
        first_plan = ispp.plan(settings, cell, checker)  # before any backend is opened
        if args.resume is not None:
            resume_plan(ispp, first_plan, store, args.resume)  # a run of another plan is refused here
    except BaseException:
        store.close()
        raise
    run_settings = {**settings_dict(settings), "cell": list(cell) if args.cell is not None else None}
    started = now()
    instrument, stopped = open_backend_for_run(args, args.cell is not None, store)
    if instrument is None:
        return stopped

    taken, total = 0, 0
    run_id = None
    record_file = None
    summaries, more_cycles = [], 0
    summariser = ispp.CycleSummariser()

    def keep(summary):
        nonlocal more_cycles
        if summary is None:
            return
        if len(summaries) < MAX_PRINTED_CYCLES:
            summaries.append(summary)
        else:
            more_cycles += 1

    try:
        with instrument, record_run(store, "ispp", run_settings, instrument, resume=args.resume) as stored:
            run_id = stored.run_id
            ispp_plan = ispp.plan(settings, cell, instrument)  # and the backend's, before the first pulse
            total = ispp_plan.total_pulses
            if args.resume is not None:
                ispp_plan, earlier = resume_plan(ispp, ispp_plan, store, args.resume)
                taken = ispp_plan.start_pulse  # the stored pulses count as taken
                say(f"ispp: resuming run {run_id} after its {earlier} stored records: pulse "
                    f"{ispp_plan.start_pulse + 1} of {total}")
            if args.csv:
                record_file = RecordFile(args.csv, "--csv")
                record_file.start(
                    provenance_lines(__version__, ["rramlab", *args.argv], started, instrument.describe(),
                                     settings_dict(settings),
                                     {"protocol": "ispp", "cell": list(cell) if args.cell is not None else None}),
                    ispp.CSV_HEADER)
            from tqdm import tqdm

            where = f"cell {cell[0]},{cell[1]}" if args.cell is not None else "device"
            with tqdm(total=total, initial=taken, desc=f"ISPP {where}", unit="pulse", disable=args.no_progress,
                      file=sys.stderr, leave=False) as bar:
                for record in pausable(ispp.run, instrument, ispp_plan, "ISPP", run_id):
                    taken += 1
                    keep_record(stored, record, record_file, [record.csv_row()])
                    keep(summariser.add(record))
                    bar.update(1)
            keep(summariser.finish())
            if args.save_chip:
                try:
                    instrument.save_chip(args.save_chip)
                except OSError as exc:
                    raise OutputError(f"cannot write --save-chip {args.save_chip}: {describe_os_error(exc)}") from None
    except KeyboardInterrupt as exc:
        kept = f"; {record_file.rows} rows kept in {args.csv}" if record_file else ""
        by = f" by {exc}" if isinstance(exc, Stopped) else ""
        say(f"\ninterrupted{by} after {taken} of {total} pulses; {safe_state_text(instrument, args)}{kept}")
        return interrupt_exit_code(exc)
    except (RramlabError, OSError, ValueError) as exc:
        kept = f"; {record_file.rows} rows kept in {args.csv}" if record_file and record_file.rows else ""
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        say(f"rramlab ispp: error: {message}" + (f"\n  stopped after {taken} of {total} pulses; "
                                                 f"{safe_state_text(instrument, args)}{kept}"
                                                 if taken or args.bench else ""))
        return EXIT_ERROR
    except BaseException:
        say(f"rramlab ispp: stopped by an unexpected error after {taken} of {total} pulses; "
            f"{safe_state_text(instrument, args)}")
        raise
    finally:
        store.close()
        if record_file:
            record_file.close()

    print(f"ISPP on the {instrument.backend_name}"
          + (f", cell {cell[0]},{cell[1]}" if args.cell is not None else ", lone device")
          + f": {plural(taken, 'pulse')}, read at {settings.read_v:g} V; run {run_id} in {store.path}")
    for s in summaries:
        print(f"  cycle {s.cycle}: read {_fmt_na(s.min_read_a)} .. {_fmt_na(s.max_read_a)}, "
              f"{plural(s.set_levels, 'distinct level')} in the set ramp, "
              f"first 3 reset pulses remove {s.reset_drop_3 * 100:.0f} %, "
              f"{_fmt_na(s.final_reset_read_a)} at the end of the reset ramp")
    if more_cycles:
        print(f"  ... and {plural(more_cycles, 'more cycle')} (every row is in the CSV)")
    if args.csv:
        print(f"  {plural(record_file.rows, 'row')} written to {args.csv}")
    return EXIT_OK


def cmd_bench(args) -> int:
    if args.bench_command == "scan":
        from rramlab.app.bench_scan import cmd_scan

        return cmd_scan(args)
    if args.bench_command not in ("check", "safe"):
        print("usage: rramlab bench scan | rramlab bench check FILE | rramlab bench safe FILE", file=sys.stderr)
        return EXIT_USAGE
    from rramlab.app import virtual_bench
    from rramlab.drivers.interface import RramlabError
    from rramlab.drivers.probe_station import check_bench, load_bench, safe_bench

    try:
        virtual = virtual_bench.is_virtual(load_bench(args.file))
    except RramlabError:
        virtual = False  # check_bench / safe_bench report the bad file
    if virtual and args.bench_command == "check":
        return virtual_bench.check_virtual_bench(args.file, args, out=sys.stdout, visa_log=args.visa_log)
    if virtual:
        print("rramlab bench safe: the virtual bench holds no energy between runs; nothing to do")
        return EXIT_OK
    run = check_bench if args.bench_command == "check" else safe_bench
    return run(args.file, out=sys.stdout, visa_log=args.visa_log)


def main(argv=None) -> int:
    """Run one ``rramlab`` command; return its exit code (0 ok, 1 error, 2 usage, 128 + signal when
    stopped by SIGINT/SIGTERM/SIGHUP). Input and OS errors are one line on stderr, never a traceback."""
    try:
        limit_blas_threads()  # before anything imports numpy
        argv = list(sys.argv[1:] if argv is None else argv)
        from rramlab.app import help_cache

        if help_cache.print_cached_help(argv, COMMANDS):
            raise SystemExit(EXIT_OK)  # as argparse ends on --help
        command = next((token for token in argv if not token.startswith("-")), None)
        parser = build_parser(command if command in COMMANDS else "")
        with help_cache.recording_help(argv, COMMANDS):
            from rramlab.app.settings_flags import join_negative_values

            args = parser.parse_args(join_negative_values(argv))
    except KeyboardInterrupt:
        say("\n" + STARTUP_INTERRUPTED)
        return EXIT_INTERRUPTED
    args.argv = argv
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from rramlab.app.outputs import describe_os_error
    from rramlab.drivers.interface import RramlabError

    handler = args.handler
    with stop_signals_raise():
        try:
            from rramlab.protocols.store import metadata_from_args, using_metadata

            # --chip-id, --operator ... (store.add_store_flag) reach every run the command records
            with using_metadata(metadata_from_args(args)):
                code = handler(args)
            sys.stdout.flush()  # a reader that went away (| head) is found here, not at exit
            return code
        except KeyboardInterrupt as exc:
            say("\ninterrupted")
            return interrupt_exit_code(exc)
        except BrokenPipeError:
            # The reader of our output is gone (e.g. piped into head): stop quietly, as Unix tools do.
            # The instrument was already made safe by the handler's context manager.
            _silence_stdout()
            return EXIT_ERROR
        except (RramlabError, ValueError) as exc:
            say(f"rramlab {args.command}: error: {exc}")
            return EXIT_ERROR
        except OSError as exc:
            say(f"rramlab {args.command}: error: {describe_os_error(exc)}")
            return EXIT_ERROR
        finally:
            from rramlab.app.virtual_bench import report_clocks

            report_clocks()  # a virtual bench run says how long a real bench would have taken


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on the broken pipe."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# The module is imported: from here on main() handles a Ctrl-C itself.
_remove_startup_hook()

if __name__ == "__main__":
    sys.exit(main())
