"""``rramlab COMMAND --help`` from a cache, so that it starts at once.

A command's help is built from its settings declarations, which live in the protocol modules; those
import numpy (and the twin PySpice), about 0.5 s of CPU before a line is printed. The help text only
changes when rramlab's code, the Python version or the terminal width change, so the text of each
``rramlab COMMAND [ACTION] --help`` is kept in the user's cache folder under a key made of exactly
those: the rramlab version, the Python version and executable, the terminal width, the command path,
and the size and modification time of every ``.py`` file of rramlab's packages. Any edit, install or
upgrade changes the key, and the help is built afresh (and stored again).

Only a bare help request is served (``rramlab ispp --help``, ``rramlab bench check -h``); anything
else on the line goes through argparse as usual. A cache that cannot be read or written is ignored.

Building a command's help imports its protocol (numpy, pydantic): about 10x ``python -c pass`` in CPU,
so the first ``rramlab COMMAND --help`` would not start at once. ``install.sh`` therefore builds every
command's help once after installing (``python -m rramlab.app.help_cache``, at the terminal's width),
and a user who installs and asks for a command's help first is served from the cache. After an edit
of rramlab's code the cache no longer matches: each command's first help is built again (or run the
module again).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
from pathlib import Path

HELP_FLAGS = ("-h", "--help")

#: rramlab's packages, as folders next to ``app/`` (the checkout's layout and the installed one alike)
PACKAGE_FOLDERS = ("app", "drivers", "protocols", "sim")


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME/rramlab`` (default ``~/.cache/rramlab``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rramlab"


def help_path(argv: list[str], commands) -> tuple[str, ...] | None:
    """The command path of a bare help request (``("bench", "check")`` for ``bench check --help``),
    or None when ``argv`` is anything else (or the top-level help, which needs no cache)."""
    if len(argv) < 2 or len(argv) > 3 or argv[-1] not in HELP_FLAGS or argv[0] not in commands:
        return None
    path = tuple(argv[:-1])
    if any(not token.isidentifier() for token in path):
        return None
    return path


def source_stamp() -> list[tuple[str, int, int]]:
    """(file, size, modification time in ns) of every ``.py`` file of rramlab's packages."""
    import rramlab

    here = Path(__file__).resolve().parent
    folders = [here.parent / name for name in PACKAGE_FOLDERS]
    stamp = []
    top = Path(rramlab.__file__).resolve().parent
    for entry in os.scandir(top):
        if entry.name.endswith(".py"):
            st = entry.stat()
            stamp.append((entry.path, st.st_size, st.st_mtime_ns))
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    st = os.stat(path)
                    stamp.append((path, st.st_size, st.st_mtime_ns))
    return sorted(stamp)


def help_key(path: tuple[str, ...]) -> str:
    """What the help text of ``path`` depends on, hashed."""
    from rramlab import __version__

    width = shutil.get_terminal_size().columns  # argparse wraps at this width
    parts = (__version__, sys.version, sys.executable, width, path, source_stamp())
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _cache_file(path: tuple[str, ...]) -> Path:
    return cache_folder() / f"help-{'-'.join(path)}.txt"


def print_cached_help(argv: list[str], commands) -> bool:
    """Print the cached help of a bare help request and return True; False when ``argv`` is not one
    or the cache holds no text for the code as it is now."""
    path = help_path(argv, commands)
    if path is None:
        return False
    try:
        key, _, text = _cache_file(path).read_text(encoding="utf-8").partition("\n")
    except (OSError, UnicodeDecodeError):
        return False
    if key != help_key(path):
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True


@contextlib.contextmanager
def recording_help(argv: list[str], commands):
    """While argparse parses a bare help request, keep what it prints and store it for next time."""
    path = help_path(argv, commands)
    if path is None:
        yield
        return
    captured = io.StringIO()
    real = sys.stdout
    sys.stdout = captured
    try:
        yield
    except SystemExit as stop:
        sys.stdout = real
        text = captured.getvalue()
        if stop.code in (0, None) and text:
            _store(path, text)
        real.write(text)
        raise
    finally:
        if sys.stdout is captured:
            sys.stdout = real
            real.write(captured.getvalue())


def _store(path: tuple[str, ...], text: str) -> None:
    target = _cache_file(path)
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        partial.write_text(f"{help_key(path)}\n{text}", encoding="utf-8")
        os.replace(partial, target)  # another rramlab reading it sees the old text or the new, whole


def command_parsers(parser) -> list[tuple[tuple[str, ...], object]]:
    """(command path, parser) of every command and every action of a command (``("bench", "check")``)
    of a parser built in full, the paths ``help_path`` serves."""
    import argparse

    def subparsers(p):
        return next((a.choices for a in p._actions if isinstance(a, argparse._SubParsersAction)), {})

    found = []
    for name, command in subparsers(parser).items():
        found.append(((name,), command))
        found += [((name, action), p) for action, p in subparsers(command).items()]
    return found


def build_all() -> int:
    """Build and store the help text of every command and action (what ``--help`` prints for each,
    at this terminal's width); returns how many. One process imports every protocol once."""
    from rramlab.app.cli import build_parser

    parsers = command_parsers(build_parser())
    for path, parser in parsers:
        _store(path, parser.format_help())
    return len(parsers)


if __name__ == "__main__":
    # argparse wraps at the terminal's width, and the key holds it: build at the width of the
    # terminal the installer runs in, from which the help requests will come, even when this
    # module's output is piped or discarded
    if "COLUMNS" not in os.environ:
        for fd in (1, 2, 0):
            with contextlib.suppress(OSError):
                os.environ["COLUMNS"] = str(os.get_terminal_size(fd).columns)
                break
    count = build_all()
    print(f"rramlab: the help of {count} commands is cached in {cache_folder()}")
