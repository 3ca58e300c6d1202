"""``rramlab gui``: the desktop window (PySide6 + pyqtgraph), see ``rramlab.app.gui``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS

    p = subparsers.add_parser("gui", help=COMMANDS["gui"][1],
                              description="The desktop window: choose the twin or a bench file, set a protocol's "
                                          "settings (bounded by the safe operating area), run and abort, live plots, "
                                          "the run history of the run store.")
    from rramlab.protocols.store import add_store_flag

    # --store, and --chip-id, --sample, --operator, --temperature, --notes, --tag: they fill the window's
    # run metadata fields (kept with every run it starts), as the command line's flags
    add_store_flag(p, "the window records runs in and lists past runs from")
    p.add_argument("--bench", metavar="FILE", default=None,
                   help="select this bench file as the backend when the window opens (a virtual bench file, "
                        "e.g. drivers/benches/virtual.toml, selects the virtual bench)")
    p.add_argument("--visa-log", metavar="FILE", default=None,
                   help="append every VISA write and read of the session to FILE, timestamped (as the "
                        "command line's --visa-log)")
    p.add_argument("--start", metavar="PANEL", default=None,
                   help="run a panel's protocol as soon as the window is open (e.g. ISPP, 'Array read'), "
                        "with the form's values and --cell / --set; Ctrl-C, SIGTERM or SIGHUP then stop it "
                        "safely and close the window (exit 130 / 143 / 129)")
    p.add_argument("--cell", metavar="WL,BL", default=None, type=_cell,
                   help="with --start: the cell of a panel that takes one (lines from 0)")
    p.add_argument("--set", metavar="NAME=VALUE", action="append", default=[], dest="settings",
                   help="with --start: set one of the panel's settings by its name, in SI units, before the "
                        "run (e.g. --set cycles=20 --set pulse_width_s=5e-4); repeat for more")
    p.add_argument("--quit-after", type=float, metavar="SECONDS", default=None,
                   help=argparse.SUPPRESS)  # test hook: close the window (safely) after this many seconds
    p.set_defaults(handler=cmd_gui)


def _cell(text: str):
    from rramlab.app.cli import _cell as parse

    return parse(text)


def no_display_reason(environ=None, platform: str | None = None) -> str | None:
    """Why the window cannot open here, or None: on Linux, no X or Wayland display and no Qt
    platform chosen (Qt would abort with a misleading 'xcb-cursor0 is needed' text)."""
    import os
    import sys

    env = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or env.get("QT_QPA_PLATFORM"):
        return None
    return ("no display (neither DISPLAY nor WAYLAND_DISPLAY is set): run it in a desktop session, "
            "over ssh -X, under xvfb-run rramlab gui, or with QT_QPA_PLATFORM=offscreen for a window nobody sees")


def cmd_gui(args) -> int:
    from rramlab.drivers.interface import RramlabError

    reason = no_display_reason()
    if reason is not None:
        raise RramlabError(reason)
    from rramlab.app.gui import run_gui

    if args.start is None and (args.cell is not None or args.settings):
        raise ValueError("--cell and --set fill the form of the panel --start runs: give --start PANEL too")
    return run_gui(quit_after=args.quit_after, store=args.store, bench=args.bench, visa_log=args.visa_log,
                   start=args.start, cell=args.cell, settings=args.settings, metadata=metadata_fields(args))


def metadata_fields(args) -> dict[str, str]:
    """The run metadata flags given (--chip-id ...), as the text of the window's fields."""
    fields = {name: getattr(args, name, None) for name in ("chip_id", "sample", "operator", "temperature", "notes")}
    if getattr(args, "tag", None):
        fields["tags"] = ", ".join(args.tag)
    return {k: str(v) for k, v in fields.items() if v is not None}
