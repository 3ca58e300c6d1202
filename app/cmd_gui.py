"""``rramlab gui``: the desktop window (PySide6 + pyqtgraph), see ``rramlab.app.gui``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open the desktop window: every protocol on the twin or a bench, live plots",
                              description="The desktop window: choose the twin or a bench file, set a protocol's "
                                          "settings (bounded by the safe operating area), run and abort, live plots, "
                                          "the session's run history.")
    p.add_argument("--quit-after", type=float, metavar="SECONDS", default=None,
                   help=argparse.SUPPRESS)  # test hook: close the window (safely) after this many seconds
    p.set_defaults(handler=cmd_gui)


def cmd_gui(args) -> int:
    from rramlab.app.gui import run_gui

    return run_gui(quit_after=args.quit_after)
