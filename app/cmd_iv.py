"""``rramlab iv``: DC sweep of a lone simulated HT-RRAM device (0 -> set peak -> 0 -> reset peak -> 0 V).

Its settings are declared once (``IvSettings``), so the flags, their help and their limits come from
the declaration, and the peaks are bounded by the device's safe operating area like every pulse.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from rramlab.drivers.interface import RequestError, SafeOperatingArea
from rramlab.protocols.settings import check_settings, setting, settings_dict

#: smallest step of the sweep: a full-range sweep in 1 mV steps is 13,601 points (about 11 s in ngspice)
MIN_STEP_V = 1e-3

CSV_HEADER = ("voltage_v", "current_a")


@dataclass(frozen=True)
class IvSettings:
    """The DC sweep, in volts. Defaults are the paper's Fig. 5 sweep of the compact model."""

    set_peak_v: float = setting(4.2, "highest voltage of the sweep (the set branch)", "V", soa="set",
                                flag="set_peak")
    reset_peak_v: float = setting(-1.6, "lowest voltage of the sweep (the reset branch, negative)", "V",
                                  soa="reset", flag="reset_peak")
    step_v: float = setting(0.025, "voltage step between sweep points", "V", minimum=MIN_STEP_V, maximum=0.5,
                            flag="step")

    def validate(self, limits: SafeOperatingArea | None = None) -> None:
        """Check every setting against its declaration and ``limits``; the peaks need a sign."""
        check_settings(self, limits)
        if self.set_peak_v <= 0:
            raise RequestError(f"--set-peak must be positive (got {self.set_peak_v:g} V): the sweep rises to it first")
        if self.reset_peak_v >= 0:
            raise RequestError(f"--reset-peak must be negative (got {self.reset_peak_v:g} V), e.g. -1.6")


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, add_force_flag
    from rramlab.app.settings_flags import add_settings_flags

    p = subparsers.add_parser("iv", help=COMMANDS["iv"][1],
                              description="DC sweep of the compact model of one HT-RRAM device in ngspice. The "
                                          "peaks are checked against the device's safe operating area first.")
    add_settings_flags(p, IvSettings, "sweep settings (defaults: the paper's Fig. 5)")
    p.add_argument("--csv", metavar="FILE", help="write voltage_v,current_a after '#' lines saying what produced "
                                                 "it (read with pandas.read_csv(FILE, comment='#'))")
    add_force_flag(p)
    p.set_defaults(handler=cmd_iv)


def cmd_iv(args: argparse.Namespace) -> int:
    from rramlab.app.cli import EXIT_OK, _fmt_na
    from rramlab.app.outputs import OutputPath, RecordFile, check_output_paths, now, provenance_lines
    from rramlab.app.settings_flags import settings_from_args
    from rramlab.sim.device import DeviceParameters
    from rramlab.sim.sweep import dc_sweep, sweep_voltages

    from rramlab import __version__

    settings = settings_from_args(IvSettings, args)
    settings.validate()
    check_output_paths([OutputPath("--csv", args.csv)], force=args.force)
    volts = sweep_voltages(settings.set_peak_v, settings.reset_peak_v, settings.step_v)
    started = now()
    currents = dc_sweep(volts)
    if args.csv:
        out = RecordFile(args.csv, "--csv")
        try:
            backend = {"backend": "twin", "model": "lone device, ngspice DC sweep", "dwell_s": 1e-3,
                       "device": settings_dict(DeviceParameters())}
            out.start(provenance_lines(__version__, ["rramlab", *args.argv], started, backend,
                                       settings_dict(settings), {"protocol": "iv"}), CSV_HEADER)
            for v, i in zip(volts, currents):
                out.write((f"{v:.6g}", f"{i:.6e}"))
        finally:
            out.close()
    i_1v = [i for v, i in zip(volts, currents) if abs(v - 1.0) < 1e-9]
    print(f"DC sweep 0 -> {settings.set_peak_v:g} -> 0 -> {settings.reset_peak_v:g} -> 0 V, {len(volts)} points")
    if len(i_1v) >= 2:
        print(f"  current at 1 V: {_fmt_na(i_1v[0])} before the set, {_fmt_na(i_1v[1])} after it")
    if args.csv:
        print(f"  written to {args.csv}")
    sys.stdout.flush()
    return EXIT_OK
