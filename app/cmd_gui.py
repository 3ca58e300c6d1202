"""``rramlab gui``: the desktop window (PySide6 + pyqtgraph), see ``rramlab.app.gui``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open the desktop window: every protocol on the twin or a bench, live plots",
                              description="The desktop window: choose the twin or a bench file, set a protocol's "
                                          "settings (bounded by the safe operating area), run and abort, live plots, "
                                          "the run history of the run store.")
    p.add_argument("--store", metavar="FILE", default=None,
                   help="run store (SQLite) the window records runs in and lists past runs from (default: "
                        "$RRAMLAB_STORE or runs.sqlite in the user's data folder, as the command line)")
    p.add_argument("--quit-after", type=float, metavar="SECONDS", default=None,
                   help=argparse.SUPPRESS)  # test hook: close the window (safely) after this many seconds
    p.set_defaults(handler=cmd_gui)


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
    return ("rramlab gui: no display (neither DISPLAY nor WAYLAND_DISPLAY is set): run it in a desktop session, "
            "over ssh -X, under xvfb-run rramlab gui, or with QT_QPA_PLATFORM=offscreen for a window nobody sees")


def cmd_gui(args) -> int:
    from rramlab.drivers.interface import RramlabError

    reason = no_display_reason()
    if reason is not None:
        raise RramlabError(reason)
    from rramlab.app.gui import run_gui

    return run_gui(quit_after=args.quit_after, store=args.store)
