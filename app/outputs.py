"""Output files of the command line: checked before anything runs, and records that say where they
came from.

* ``check_output_paths``: every path a command will write (``--csv``, ``--save-chip``,
  ``--visa-log``) is checked before a backend is opened, so a typo never costs a pulse: a missing
  folder, a folder given as the file, a read-only file, the same file for two outputs, and an
  existing file without ``--force`` are each refused with one line naming the flag and the fix.
* ``RecordFile``: a CSV whose first lines are ``#`` comments (software version, command, start time,
  backend and its ``describe()``, settings), then the column header, then
  one flushed row per record. Readers that skip ``#`` lines read it unchanged, e.g.
  ``pandas.read_csv(path, comment="#")``.
* ``keep_record``: a record's CSV row and its store record are written together, with stop signals
  held back between them, so the CSV and the store hold the same records after any interrupt.
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from rramlab.drivers.interface import RramlabError, signals_deferred


class OutputError(RramlabError):
    """An output file cannot be written (bad path, exists, read-only, disk full...)."""


@dataclass(frozen=True)
class OutputPath:
    """A path a command will write. ``append``: the file grows (a log), so an existing one is fine."""

    flag: str
    path: str | None
    append: bool = False


def chip_output(args) -> OutputPath:
    """``--save-chip`` as an output path. Saving over the chip file the run started from (``--chip``)
    updates that chip, the way a resumed run is meant to be continued, so it needs no ``--force``."""
    save, load = getattr(args, "save_chip", None), getattr(args, "chip", None)
    updates = bool(save and load and Path(save).resolve() == Path(load).resolve())
    return OutputPath("--save-chip", save, append=updates)


def describe_os_error(exc: OSError) -> str:
    """What an OS error means for the user, and what to do, in one line (no traceback)."""
    what = {
        errno.ENOSPC: "the disk is full: free some space or write to another disk",
        errno.EDQUOT: "the disk quota is used up: free some space or write to another disk",
        errno.EACCES: "permission denied: choose a file and folder you may write to",
        errno.EPERM: "permission denied: choose a file and folder you may write to",
        errno.EROFS: "the file system is read-only: choose a path on a writable disk",
        errno.ENOENT: "no such file or folder: check the path",
        errno.EISDIR: "it is a folder: give a file name",
        errno.EIO: "an input/output error (a failing disk or a closed terminal)",
    }.get(exc.errno, exc.strerror or str(exc))
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    return f"{where}{what}"


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless n is 1: "1 distinct level", "3 test images"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_output_paths(outputs: Iterable[OutputPath], force: bool = False) -> None:
    """Refuse, before anything runs, every output path that cannot or may not be written.

    An existing regular file is overwritten only with ``force``; a character device or pipe (e.g.
    /dev/stdout) is written as it is. Raises OutputError naming the flag, the path and the fix.
    """
    seen: dict[Path, str] = {}
    for out in outputs:
        if out.path is None:
            continue
        if out.path == "":
            raise OutputError(f"{out.flag} is empty: give a file name")
        p = Path(out.path)
        key = p.resolve()
        if key in seen:
            raise OutputError(f"{out.flag} and {seen[key]} are the same file {out.path}: give each its own file")
        seen[key] = out.flag
        if p.is_dir():
            raise OutputError(f"{out.flag} {out.path} is a folder: give a file name inside it, "
                              f"e.g. {p / ('run' + (p.suffix or '.csv'))}")
        folder = p.parent if str(p.parent) else Path(".")
        if not folder.exists():
            raise OutputError(f"{out.flag} {out.path}: the folder {folder} does not exist: create it "
                              f"(mkdir -p {folder}) or choose another path")
        if not folder.is_dir():
            raise OutputError(f"{out.flag} {out.path}: {folder} is not a folder")
        if p.exists():
            mode = p.stat().st_mode
            if stat.S_ISREG(mode):
                if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(p, os.W_OK):
                    raise OutputError(f"{out.flag} {out.path} is read-only: choose another file "
                                      f"(--force does not override a read-only file)")
                if not out.append and not force:
                    raise OutputError(f"{out.flag} {out.path} already exists: give another name, or add --force "
                                      f"to overwrite it")
            elif not os.access(p, os.W_OK):
                raise OutputError(f"{out.flag} {out.path}: permission denied: choose a file you may write to")
        elif not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{out.flag} {out.path}: cannot create files in {folder} (permission denied): "
                              f"choose a folder you may write to")


def provenance_dict(version: str, command: Sequence[str], started: _dt.datetime | str, backend: dict,
                    settings: dict, extra: dict | None = None) -> dict:
    """The same provenance as ``provenance_lines``, as the ``"provenance"`` value of a JSON output.
    ``started``: a datetime, or the ISO text of a stored run's start."""
    when = started if isinstance(started, str) else started.isoformat(timespec="seconds")
    return {"rramlab": version, "command": " ".join(command), "started": when, "backend": backend,
            "settings": settings, **(extra or {})}


def provenance_lines(version: str, command: Sequence[str], started: _dt.datetime | str, backend: dict,
                     settings: dict, extra: dict | None = None) -> list[str]:
    """The commented header of a record file, one ``# key: value`` line each (values as JSON).
    ``started``: a datetime, or the ISO text of a stored run's start."""
    when = started if isinstance(started, str) else started.isoformat(timespec="seconds")
    lines = [f"rramlab {version}",
             "command: " + " ".join(command),
             "started: " + when,
             "backend: " + json.dumps(backend, sort_keys=True, default=str),
             "settings: " + json.dumps(settings, sort_keys=True, default=str)]
    for key, value in (extra or {}).items():
        lines.append(f"{key}: " + json.dumps(value, default=str))
    # a newline inside a value would end the comment: JSON already escapes them, the command may not
    return ["# " + line.replace("\r", " ").replace("\n", " ") for line in lines]


class RecordFile:
    """A CSV of records: provenance comments, the column header, then rows flushed one by one.

    Every OSError (disk full, permission denied...) becomes an OutputError naming the flag and
    the path; the rows already written stay in the file.
    """

    def __init__(self, path: str, flag: str = "--csv"):
        self.path, self.flag = path, flag
        self.rows = 0
        self._failed = False
        try:
            self._fh = open(path, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise self._error(exc, "cannot open") from None
        self._writer = csv.writer(self._fh)

    def _error(self, exc: OSError, doing: str) -> OutputError:
        self._failed = True
        exc.filename = None
        kept = f"; the {self.rows} rows before it are in the file" if self.rows else ""
        return OutputError(f"{doing} {self.flag} {self.path}: {describe_os_error(exc)}{kept}")

    def start(self, comments: list[str], header: Sequence[str]) -> None:
        """Write the provenance comments and the column header, and flush them to the disk now,
        so a full disk is found before the first measurement."""
        try:
            for line in comments:
                self._fh.write(line + "\n")
            self._writer.writerow(header)
            self._fh.flush()
            if _is_regular(self._fh):
                os.fsync(self._fh.fileno())  # delayed allocation reports a full disk only here
        except OSError as exc:
            raise self._error(exc, "cannot write") from None

    def write(self, row: Sequence) -> None:
        try:
            self._writer.writerow(row)
            self._fh.flush()
        except OSError as exc:
            raise self._error(exc, "cannot write") from None
        self.rows += 1

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError as exc:
            if not self._failed:  # already reported when a row failed: closing must not hide that
                raise self._error(exc, "cannot finish") from None


def keep_record(recorder, record, record_file: "RecordFile | None" = None, rows: Sequence[Sequence] = ()) -> None:
    """Write ``rows`` (a record's CSV rows) to ``record_file`` and ``record`` to the run store
    (``recorder.add``), with SIGINT, SIGTERM and SIGHUP held back until both are written: a stop lands
    before the pair or after it, never between them (a run once kept one record more in the store
    than in its CSV). The CSV row goes first, so when the store fails (a full disk) the CSV still
    holds that record."""
    with signals_deferred():
        if record_file is not None:
            for row in rows:
                record_file.write(row)
        recorder.add(record)


def check_output_folder(flag: str, path: str | None, names: Iterable[str], force: bool = False) -> None:
    """Refuse, before anything runs, a folder a command fills with files ``names`` (``--report DIR``):
    a path that is a file, a missing parent folder, or (without ``force``) any of ``names`` already in it.
    The folder itself is created by the writer when it does not exist."""
    if path is None:
        return
    if path == "":
        raise OutputError(f"{flag} is empty: give a folder name")
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a folder: give a folder name")
    parent = d.parent if str(d.parent) else Path(".")
    if not d.exists():
        if not parent.is_dir():
            raise OutputError(f"{flag} {path}: the folder {parent} does not exist: create it "
                              f"(mkdir -p {parent}) or choose another path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {path}: cannot create a folder in {parent} (permission denied): "
                              f"choose a folder you may write to")
        return
    if not os.access(d, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: permission denied: choose a folder you may write to")
    check_output_paths([OutputPath(flag, str(d / name)) for name in names], force=force)


def write_json(path: str, data, flag: str = "--json") -> None:
    """Write ``data`` as indented JSON; an OSError becomes one OutputError line naming the flag."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
    except OSError as exc:
        exc.filename = None
        raise OutputError(f"cannot write {flag} {path}: {describe_os_error(exc)}") from None


def _is_regular(fh) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except OSError:
        return False


def now() -> _dt.datetime:
    """The start time of a run, in UTC with its offset."""
    return _dt.datetime.now(_dt.timezone.utc)
