"""``--resume RUN`` for the recording commands (ispp, iv, map, endurance, retention, disturb).

A run killed mid-way (SIGKILL, a power cut, a crashed computer) keeps every record stored before
it: ``rramlab ispp --resume RUN`` (and the same for every command here) rebuilds the run's plan from
the settings the store keeps, skips it ahead past the last stored record (the protocol's
``resume``) and appends the new records to the same run, which ends ``finished``. The settings are
the stored ones, so settings flags are not taken; the backend flags are (the same ``--bench`` or
twin flags as the first time: the store does not rebuild a backend). ``--csv`` is refused with
``--resume``: ``rramlab runs export RUN --csv FILE`` writes the whole run afterwards.
"""

from __future__ import annotations

from rramlab.drivers.interface import RramlabError


def add_resume_flag(parser, command: str) -> None:
    """``--resume RUN`` of ``command``."""
    parser.add_argument("--resume", type=int, metavar="RUN", default=None,
                        help=f"continue stored {command} run RUN after its last record (a run that was killed or "
                             f"stopped; its stored settings are used, settings flags are not taken; give the same "
                             f"backend flags; see `rramlab runs list`)")


def resumed_settings(args, store, command: str, settings_class):
    """The stored settings of ``args.resume`` as ``settings_class``, and the stored run settings
    dict; RramlabError (one line) for a run of another command, a --csv, or a settings flag given."""
    from rramlab.protocols.store import stored_settings

    info = store.run(args.resume)
    if info.protocol != command:
        raise RramlabError(f"run {args.resume} was recorded by {info.protocol}, not {command}: resume it with "
                           f"`rramlab {info.protocol} --resume {args.resume}`")
    if getattr(args, "csv", None):
        raise RramlabError(f"--csv with --resume: the CSV would hold only the new records; drop --csv and write the "
                           f"whole run afterwards with `rramlab runs export {args.resume} --csv {args.csv}`")
    given = _settings_flags_given(args, settings_class)
    if given:
        raise RramlabError(f"--resume {args.resume} continues the run with its stored settings: drop "
                           f"{', '.join(given)} (or start a new run without --resume)")
    return stored_settings(settings_class, info.settings), info.settings


def _settings_flags_given(args, settings_class) -> list[str]:
    """The settings flags of ``settings_class`` on the command line (``args.argv``)."""
    from rramlab.protocols.settings import declared

    flags = {d.flag for d in declared(settings_class)}
    return sorted({token.split("=", 1)[0] for token in getattr(args, "argv", ()) if token.split("=", 1)[0] in flags})


def cell_of(stored: dict):
    """The cell a stored run was taken on ((wordline, bitline)), or None for a lone device."""
    cell = stored.get("cell")
    return None if cell is None else (int(cell[0]), int(cell[1]))
