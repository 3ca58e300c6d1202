"""``rramlab gui``: the desktop window (PySide6 + pyqtgraph), see ``rramlab.app.gui``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS

    p = subparsers.add_parser("gui", help=COMMANDS["gui"][1],
                              description="The desktop window: choose the twin or a bench file, set a protocol's "
                                          "settings (bounded by the safe operating area), run and abort, live plots, "
                                          "the run history of the run store.")
    p.add_argument("--store", metavar="FILE", default=None,
                   help="run store (SQLite) the window records runs in and lists past runs from (default: "
                        "$RRAMLAB_STORE or runs.sqlite in the user's data folder, as the command line)")
    p.add_argument("--quit-after", type=float, metavar="SECONDS", default=None,
                   help=argparse.SUPPRESS)  # test hook: close the window (safely) after this many seconds
    p.set_defaults(handler=cmd_gui)


def cmd_gui(args) -> int:
    from rramlab.app.gui import run_gui

    return run_gui(quit_after=args.quit_after, store=args.store)
