"""The ``rramlab`` command line.

    rramlab ispp --cycles 3 --csv ispp.csv           # lone simulated HT-RRAM device
    rramlab ispp --cell 3,7 --csv ispp.csv           # one cell of the 24 x 24 array twin
    rramlab ispp --bench bench.toml --cell 3,7 --width 1e-3 --csv ispp.csv   # a real probe station
    rramlab iv --csv iv.csv                          # DC sweep 0 -> 4.2 -> 0 -> -1.6 V of a lone device
    rramlab bench check bench.toml

Thin on purpose: it picks a backend, runs a protocol and writes its records as they come. Every
row is flushed as soon as it is measured, so a run stopped by an error or Ctrl-C keeps what it took;
the instrument is used as a context manager, so its outputs return to 0 V whatever happens.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import sys

from rramlab.app.settings_flags import add_settings_flags, join_negative_values, settings_from_args
from rramlab.drivers.interface import RramlabError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Modules that add a subcommand each: ``register(subparsers)`` adds the parser and sets
#: ``handler=<function(args) -> exit code>`` as its default. One protocol, one module.
COMMAND_MODULES: tuple[str, ...] = ()


def _cell(text: str) -> tuple[int, int]:
    try:
        w, b = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cell takes WL,BL (two whole numbers, from 0), got {text!r}")
    return w, b


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend (default: the simulation twin)")
    g.add_argument("--bench", metavar="FILE", help="bench TOML file of a probe station; without it the twin runs")
    g.add_argument("--visa-log", metavar="FILE", help="with --bench: log every VISA write and read, timestamped")
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
    g.add_argument("--chip", metavar="FILE", help="twin only: start from a chip state saved with --save-chip")
    g.add_argument("--save-chip", metavar="FILE", help="twin only: save the chip state at the end of the run")


def build_parser() -> argparse.ArgumentParser:
    from rramlab.drivers.keysight_4156c import PULSE_MAX_WIDTH, PULSE_MIN_WIDTH
    from rramlab.protocols.ispp import IsppSettings

    from rramlab import __version__

    parser = argparse.ArgumentParser(prog="rramlab", description="Program and read HT-RRAM crossbars, real or simulated.")
    parser.add_argument("--version", action="version", version=f"rramlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ispp", help="incremental step pulse programming of one device or cell",
                       description="ISPP: a rising set ramp then a falling reset ramp, a read after every pulse. "
                                   "The whole plan is checked against the safe operating area before the first "
                                   "pulse.")
    add_settings_flags(p, IsppSettings, "ISPP settings (defaults: the paper's simulation values)",
                       extra_help={"pulse_width_s": f"With --bench the 4156C pulses "
                                                    f"{PULSE_MIN_WIDTH * 1e3:g} ms to {PULSE_MAX_WIDTH * 1e3:g} ms, "
                                                    "so give --width there."})
    p.add_argument("--cell", type=_cell, metavar="WL,BL",
                   help="run on this cell of the 24 x 24 array (lines counted from 0); without it: a lone device")
    p.add_argument("--csv", metavar="FILE", help="write cycle,phase,pulse_v,read_a, one row per pulse, as it runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_backend_options(p)

    p = sub.add_parser("iv", help="DC sweep of a lone simulated device (0 -> 4.2 -> 0 -> -1.6 -> 0 V)")
    p.add_argument("--set-peak", type=float, default=4.2, metavar="V")
    p.add_argument("--reset-peak", type=float, default=-1.6, metavar="V")
    p.add_argument("--step", type=float, default=0.025, metavar="V")
    p.add_argument("--csv", metavar="FILE", help="write voltage_v,current_a")

    p = sub.add_parser("bench", help="probe-station bench files")
    bsub = p.add_subparsers(dest="bench_command", metavar="ACTION")
    c = bsub.add_parser("check", help="validate a bench file, connect, identify both instruments, print the pin map")
    c.add_argument("file")
    c.add_argument("--visa-log", metavar="FILE")

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def open_backend(args, cell_requested: bool):
    """The instrument the user asked for: a probe station from --bench, else the twin
    (a lone device, or the 24 x 24 array when a cell is named)."""
    twin_only = [name for name in ("engine", "wire_resistance", "chip", "save_chip", "device", "seed")
                 if getattr(args, name, None) is not None]
    if args.bench:
        if not cell_requested:
            raise RramlabError("--bench needs --cell WL,BL: name the cell of the array on the probe card (lines counted from 0)")
        if twin_only:
            flags = ", ".join("--" + n.replace("_", "-") for n in twin_only)
            raise RramlabError(f"{flags} apply to the twin only; drop them when you use --bench")
        from rramlab.drivers.probe_station import open_bench

        return open_bench(args.bench, visa_log=args.visa_log)
    if args.visa_log:
        raise RramlabError("--visa-log needs --bench: the twin sends no VISA commands")
    from rramlab.sim.array import ArrayParameters
    from rramlab.sim.virtual_array import VirtualArray, Variability

    kwargs = {}
    if args.seed is not None:
        kwargs.update(seed=args.seed, variability=Variability.typical())
    if args.device is not None:
        kwargs["device"] = args.device
    if args.engine is not None:
        kwargs["engine"] = args.engine
    if args.chip:
        if args.seed is not None or args.device is not None:
            raise RramlabError("--seed and --device make a new chip; a chip loaded with --chip keeps its own")
        return VirtualArray.load_chip(args.chip, engine=args.engine)
    if cell_requested:
        if args.wire_resistance is not None:
            kwargs["array"] = ArrayParameters(wire_resistance=args.wire_resistance)
        return VirtualArray(**kwargs)
    if args.wire_resistance is not None:
        raise RramlabError("--wire-resistance applies to the array: add --cell WL,BL")
    return VirtualArray.lone_device(**kwargs)


def _fmt_na(a: float) -> str:
    return f"{a * 1e9:.1f} nA"


def cmd_ispp(args) -> int:
    from rramlab.protocols import ispp

    settings = settings_from_args(ispp.IsppSettings, args)
    cell = args.cell if args.cell is not None else (0, 0)
    ispp.plan(settings, cell)  # the device's own limits, before any backend is opened
    records = []
    total = 0
    csv_file = None
    instrument = open_backend(args, args.cell is not None)
    try:
        with instrument:
            ispp_plan = ispp.plan(settings, cell, instrument)  # and the backend's, before the first pulse
            total = ispp_plan.total_pulses
            runner = ispp.run(instrument, ispp_plan)
            first = next(runner, None)
            if args.csv:
                csv_file = open(args.csv, "w", newline="")
                writer = csv.writer(csv_file)
                writer.writerow(ispp.CSV_HEADER)
            from tqdm import tqdm

            where = f"cell {cell[0]},{cell[1]}" if args.cell is not None else "device"
            with tqdm(total=total, desc=f"ISPP {where}", unit="pulse", disable=args.no_progress,
                      file=sys.stderr, leave=False) as bar:
                record = first
                while record is not None:
                    records.append(record)
                    if csv_file:
                        writer.writerow(record.csv_row())
                        csv_file.flush()
                    bar.update(1)
                    record = next(runner, None)
            if args.save_chip:
                instrument.save_chip(args.save_chip)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {len(records)} of {total} pulses; outputs are at 0 V"
              + (f"; {len(records)} rows kept in {args.csv}" if args.csv else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if csv_file:
            csv_file.close()

    print(f"ISPP on the {instrument.backend_name}"
          + (f", cell {cell[0]},{cell[1]}" if args.cell is not None else ", lone device")
          + f": {len(records)} pulses, read at {settings.read_v:g} V")
    for s in ispp.summarise_ispp(records):
        print(f"  cycle {s.cycle}: read {_fmt_na(s.min_read_a)} .. {_fmt_na(s.max_read_a)}, "
              f"{s.set_levels} distinct levels in the set ramp, "
              f"first 3 reset pulses remove {s.reset_drop_3 * 100:.0f} %, "
              f"{_fmt_na(s.final_reset_read_a)} at the end of the reset ramp")
    if args.csv:
        print(f"  {len(records)} rows written to {args.csv}")
    return EXIT_OK


def cmd_iv(args) -> int:
    from rramlab.sim.sweep import dc_sweep, sweep_voltages

    volts = sweep_voltages(args.set_peak, args.reset_peak, args.step)
    currents = dc_sweep(volts)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(("voltage_v", "current_a"))
            for v, i in zip(volts, currents):
                w.writerow((f"{v:.6g}", f"{i:.6e}"))
    i_1v = [i for v, i in zip(volts, currents) if abs(v - 1.0) < 1e-9]
    print(f"DC sweep 0 -> {args.set_peak:g} -> 0 -> {args.reset_peak:g} -> 0 V, {len(volts)} points")
    if len(i_1v) >= 2:
        print(f"  current at 1 V: {_fmt_na(i_1v[0])} before the set, {_fmt_na(i_1v[1])} after it")
    if args.csv:
        print(f"  written to {args.csv}")
    return EXIT_OK


def cmd_bench(args) -> int:
    if args.bench_command != "check":
        print("usage: rramlab bench check FILE", file=sys.stderr)
        return EXIT_USAGE
    from rramlab.drivers.probe_station import check_bench

    return check_bench(args.file, out=sys.stdout, visa_log=args.visa_log)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handlers = {"ispp": cmd_ispp, "iv": cmd_iv, "bench": cmd_bench}
    handler = getattr(args, "handler", None) or handlers[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RramlabError, FileNotFoundError, ValueError) as exc:
        print(f"rramlab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
