"""The run store: every run and every record it takes, in one embedded SQLite database.

Why SQLite: one file, no server, atomic transactions. The store is opened in WAL mode and each
record is appended in its own small transaction, so a process killed mid-run (power cut, SIGKILL)
loses at most the record in flight; the run row then still says ``running`` and ``runs list``
shows it as ``unfinished`` once its process is gone.

Tables (schema version 5, see ``MIGRATIONS``):

* ``runs``: id, protocol, settings (JSON), backend, backend_describe (JSON, the backend's
  ``describe()``), software_version, pid, host, started_at, ended_at (ISO 8601 UTC), status
  (``running``, ``finished``, ``aborted``, ``failed``), error (text of the failure), summary (JSON:
  the numbers the run ended with, e.g. a transfer's RMSE; NULL until set, and for runs of stores
  made before version 2); and since version 3 the run's metadata: chip_id, sample, operator,
  temperature_k (K), notes, tags (JSON list of text), NULL / ``[]`` for runs of older stores.
* ``records``: id, run_id, seq (0-based order within the run), type (the record dataclass's name),
  data (JSON of its fields), at (ISO 8601 UTC).
  Indexed by the ``wordline`` and ``bitline`` of their data (version 4), for a cell's history.
* ``sessions`` (version 5): one recipe run (``rramlab run``): id, recipe (its path), recipe_text,
  fingerprint (of the expanded steps), steps (their number), started_at, ended_at, status, error,
  pid, host, metadata (JSON). A run of a session has ``runs.session_id`` and ``runs.step_index``
  (NULL for every other run); ``session_waits`` keeps the end of each finished wait step.
* ``schema_version``: one row, the number of migrations applied.

Records are frozen dataclasses; they are stored as JSON with their type name, so the store needs
no change when a protocol adds a record type. Units are those of the record (SI).

The default file is ``runs.sqlite`` in ``platformdirs.user_data_dir("rramlab")``; the environment
variable ``RRAMLAB_STORE`` or a ``--store FILE`` flag chooses another.

Failures: opening a store checks it (``PRAGMA quick_check``: a corrupt page is found here, not at
export; about 0.4 to 0.85 s per million records, benchmarks/store_open.py), checks its tables and writes
to it once (a full disk, a file size limit or another program holding the write lock is found before
any instrument is touched). Every SQLite error of the store becomes a StoreError, one line naming
the store, what went wrong and the fix.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as _dt
import json
import math
import os
import signal
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rramlab.drivers.interface import RramlabError

__all__ = ["RunStore", "record_run", "run_protocol", "stored_records", "stored_settings", "resume_plan", "RunRecorder",
           "RunInfo", "RunMetadata", "StoredRecord", "CellReading", "StoreError", "default_store_path", "using_metadata",
           "using_session", "SessionInfo", "cell_history", "STATUSES", "ENV_VAR"]

#: a run's status: running, then finished, aborted (Ctrl-C) or failed (an error)
STATUSES = ("running", "finished", "aborted", "failed")
#: environment variable naming the store file (the command line's --store overrides it)
ENV_VAR = "RRAMLAB_STORE"
DEFAULT_FILE_NAME = "runs.sqlite"

#: Numbered migrations: MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        protocol TEXT NOT NULL,
        settings TEXT NOT NULL,
        backend TEXT NOT NULL,
        backend_describe TEXT NOT NULL,
        software_version TEXT NOT NULL,
        pid INTEGER,
        host TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'aborted', 'failed')),
        error TEXT
    );
    CREATE TABLE records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        at TEXT NOT NULL,
        UNIQUE (run_id, seq)
    );
    CREATE INDEX records_by_run ON records(run_id, seq);
    """,
    # 2: the numbers a run ended with (JSON, the summary the command line prints); NULL for older runs
    """
    ALTER TABLE runs ADD COLUMN summary TEXT;
    """,
    # 3: what was measured, by whom, how (chip, sample, operator, temperature in K, notes, free tags);
    # NULL (tags '[]') for older runs. Runs are found by chip (runs list --chip, rramlab cell).
    """
    ALTER TABLE runs ADD COLUMN chip_id TEXT;
    ALTER TABLE runs ADD COLUMN sample TEXT;
    ALTER TABLE runs ADD COLUMN operator TEXT;
    ALTER TABLE runs ADD COLUMN temperature_k REAL;
    ALTER TABLE runs ADD COLUMN notes TEXT;
    ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX runs_by_chip ON runs(chip_id, started_at);
    """,
    # 4: a cell's records found by index (rramlab cell), not by reading every record's JSON: 31 ms
    # instead of 850 ms for 500 000 records; building it costs about 4 s per million records, once
    # (benchmarks/cell_history.py). The expressions are those of RunStore.cell_history.
    """
    CREATE INDEX records_by_cell ON records(json_extract(data, '$.wordline'), json_extract(data, '$.bitline'));
    """,
    # 5: recipes (``rramlab run``): a session is one recipe run; each of its steps is a run of the
    # session (runs.session_id, runs.step_index: the expanded step's 0-based index); a wait step has
    # no run, its end is kept in session_waits. NULL for the runs of older stores and lone commands.
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recipe TEXT NOT NULL,
        recipe_text TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        steps INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'aborted', 'failed')),
        error TEXT,
        pid INTEGER,
        host TEXT,
        metadata TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE session_waits (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        step_index INTEGER NOT NULL,
        ended_at TEXT NOT NULL,
        PRIMARY KEY (session_id, step_index)
    );
    ALTER TABLE runs ADD COLUMN session_id INTEGER REFERENCES sessions(id);
    ALTER TABLE runs ADD COLUMN step_index INTEGER;
    CREATE INDEX runs_by_session ON runs(session_id, step_index);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RramlabError):
    """The run store cannot be opened, written or read, or does not hold what was asked for."""


#: seconds a write waits for another program's write lock before the store gives up
BUSY_TIMEOUT_S = 10.0
#: the tables a rramlab store holds (a store missing one is damaged)
TABLES = ("runs", "records", "schema_version", "sessions", "session_waits")


def _damaged_fix(path) -> str:
    return (f"move it aside (mv {path} {path}.damaged) and start a new store, or choose another --store FILE; "
            f"'sqlite3 {path}.damaged .recover' may save its runs")


def sqlite_error_text(exc: sqlite3.Error, path, doing: str) -> str:
    """One line for an SQLite error of the store at ``path`` while ``doing``: what happened and the fix."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    low = text.lower()
    # a write, a fsync or the growth of the -shm file that fails is a full disk (or RLIMIT_FSIZE: EFBIG)
    if name.startswith("SQLITE_FULL") or "disk is full" in low or name in (
            "SQLITE_IOERR_WRITE", "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_TRUNCATE", "SQLITE_IOERR_FSYNC"):
        what = ("the disk is full or a file size limit (ulimit -f) is reached: free some space, raise the limit, "
                "or choose another --store FILE on another disk")
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in low:
        what = (f"another program holds its write lock (waited {BUSY_TIMEOUT_S:g} s): close that program (another "
                f"rramlab, an SQLite browser) and try again, or choose another --store FILE")
    elif name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in low or "not a database" in low:
        what = f"the store is damaged ({text}): {_damaged_fix(path)}"
    elif name.startswith("SQLITE_READONLY") or "readonly" in low:
        what = "the store or its folder is read-only: choose a --store FILE you may write to"
    elif name.startswith("SQLITE_CANTOPEN") or "unable to open" in low:
        what = "it cannot be opened (a missing or read-only folder?): choose another --store FILE"
    elif "no such table" in low or "no such column" in low:
        what = f"the store is damaged ({text}): {_damaged_fix(path)}"
    elif name.startswith("SQLITE_IOERR") or "i/o error" in low:
        what = (f"an input/output error ({text}: a failing or full disk): free some space or choose another "
                f"--store FILE on another disk")
    else:
        what = f"{text}: choose another --store FILE"
    return f"run store {path}: cannot {doing}: {what}"


@contextlib.contextmanager
def _store_errors(path, doing: str):
    """Turn an SQLite error of the store into one StoreError line (no traceback)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(sqlite_error_text(exc, path, doing)) from None


def default_store_path() -> Path:
    """``$RRAMLAB_STORE`` if set, else ``runs.sqlite`` in the user's data folder (platformdirs)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("rramlab")) / DEFAULT_FILE_NAME


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _plain(value):
    """JSON-ready value: numpy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value


def record_to_json(record) -> tuple[str, str]:
    """(type name, JSON of the fields) of a record dataclass."""
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise StoreError(f"a record must be a dataclass instance, got {type(record).__name__}")
    return type(record).__name__, json.dumps(_plain(dataclasses.asdict(record)), allow_nan=False)


@dataclass(frozen=True)
class RunMetadata:
    """What a run was taken on and how: kept with its row (schema 3). Every field may be empty.

    ``temperature_k``: the stage temperature in kelvin (the command line's ``--temperature`` takes
    ``300``, ``300K`` or ``25C``). ``tags``: free words to find runs by."""

    chip_id: str | None = None
    sample: str | None = None
    operator: str | None = None
    temperature_k: float | None = None
    notes: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self):
        if self.temperature_k is not None:
            t = float(self.temperature_k)
            if not math.isfinite(t) or t < 0:
                raise StoreError(f"temperature {self.temperature_k!r} K is not a temperature: give kelvin >= 0, "
                                 "e.g. --temperature 300 or --temperature 25C")
            object.__setattr__(self, "temperature_k", t)
        object.__setattr__(self, "tags", tuple(str(t) for t in (self.tags or ())))

    def as_dict(self) -> dict:
        """The fields, tags as a list (JSON-ready)."""
        return {**dataclasses.asdict(self), "tags": list(self.tags)}


#: the metadata a run gets when its caller gives none (the command line sets it from its flags)
_DEFAULT_METADATA: contextvars.ContextVar[RunMetadata] = contextvars.ContextVar("rramlab_run_metadata",
                                                                                default=RunMetadata())


#: (session id, step index) every run started in a ``using_session`` block is kept under (a recipe's step)
_SESSION_STEP: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("rramlab_session_step",
                                                                                      default=None)


@contextlib.contextmanager
def using_session(session_id: int, step_index: int):
    """Within the block every run started is a step of session ``session_id`` (``runs.session_id``,
    ``runs.step_index``), written with the run's row in one transaction: how a recipe's steps are
    found again on ``--resume`` whichever protocol (and ``record_run``) started them."""
    token = _SESSION_STEP.set((int(session_id), int(step_index)))
    try:
        yield
    finally:
        _SESSION_STEP.reset(token)


@dataclass(frozen=True)
class SessionInfo:
    """One row of the ``sessions`` table (a recipe run, ``rramlab run``): ``recipe`` is the recipe
    file's path, ``fingerprint`` identifies its expanded steps, ``steps`` their number."""

    session_id: int
    recipe: str
    recipe_text: str
    fingerprint: str
    steps: int
    started_at: str
    ended_at: str | None
    status: str
    error: str | None
    pid: int | None
    host: str | None
    metadata: dict


@contextlib.contextmanager
def using_metadata(metadata: RunMetadata):
    """Within the block every run started without metadata of its own gets ``metadata`` (how the
    command line's --chip-id ... flags reach every protocol's run without each command passing them)."""
    token = _DEFAULT_METADATA.set(metadata)
    try:
        yield metadata
    finally:
        _DEFAULT_METADATA.reset(token)


def parse_temperature(text: str) -> float:
    """``300``, ``300K``, ``300 K`` or ``25C`` -> kelvin. ValueError, one line, otherwise."""
    t = str(text).strip().replace("°", "")
    scale = 0.0
    if t[-1:].upper() == "C":
        t, scale = t[:-1], 273.15
    elif t[-1:].upper() == "K":
        t = t[:-1]
    try:
        value = float(t) + scale
    except ValueError:
        raise ValueError(f"--temperature {text!r}: give kelvin or Celsius, e.g. 300, 300K or 25C") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--temperature {text!r} is below absolute zero: give e.g. 300, 300K or 25C")
    return value


def metadata_from_args(args) -> RunMetadata:
    """The RunMetadata of a command line's --chip-id, --sample, --operator, --temperature, --notes, --tag."""
    temperature = getattr(args, "temperature", None)
    return RunMetadata(chip_id=getattr(args, "chip_id", None), sample=getattr(args, "sample", None),
                       operator=getattr(args, "operator", None),
                       temperature_k=None if temperature is None else parse_temperature(temperature),
                       notes=getattr(args, "notes", None), tags=tuple(getattr(args, "tag", None) or ()))


@dataclass(frozen=True)
class RunInfo:
    """One row of the ``runs`` table, JSON fields decoded. ``run_id`` as in StoredRecord and
    RunRecorder (``id`` is kept as another name for it)."""

    run_id: int
    protocol: str
    settings: dict
    backend: str
    backend_describe: dict
    software_version: str
    pid: int | None
    host: str | None
    started_at: str
    ended_at: str | None
    status: str
    error: str | None
    records: int = 0
    summary: dict | None = None  # the numbers the run ended with (SI units), if recorded
    metadata: RunMetadata = RunMetadata()  # chip, sample, operator, temperature, notes, tags
    session_id: int | None = None  # the recipe session (rramlab run) this run is a step of
    step_index: int | None = None  # its step in that session (0-based, loops expanded)

    @property
    def id(self) -> int:
        """The same as ``run_id`` (the name of earlier versions)."""
        return self.run_id

    @property
    def shown_status(self) -> str:
        """``status``, except a ``running`` run whose process on this host is gone: ``unfinished``."""
        if self.status == "running" and self.host == socket.gethostname() and self.pid is not None \
                and not _pid_alive(self.pid):
            return "unfinished"
        return self.status


@dataclass(frozen=True)
class StoredRecord:
    """A record as read back from the store: its protocol dataclass's fields as a dict in ``data``."""

    run_id: int
    seq: int
    type: str
    data: dict
    at: str


@dataclass(frozen=True)
class CellReading:
    """One record that read a cell (``RunStore.cell_history``): which run, when, and the record.
    ``conductance_s`` (S) is the record's conductance, or its read current over its read voltage,
    NaN when the record has neither."""

    run_id: int
    protocol: str
    seq: int
    type: str
    at: str
    conductance_s: float
    data: dict


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed child not yet reaped) still answers kill(pid, 0)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class RunStore:
    """An open run store. ``RunStore(path)`` creates the file (and its folder) if needed, checks it is
    a rramlab store and brings its schema up to date. Raises StoreError naming the path and the fix."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_store_path()
        self.conn = _connect(self.path)
        self._seq: dict[int, int] = {}

    # ----- runs -----
    def start_run(self, protocol: str, settings: dict, backend: str, backend_describe: dict,
                  software_version: str | None = None, metadata: RunMetadata | None = None) -> int:
        """Add a ``running`` run row; return its id. ``metadata``: None takes that of the enclosing
        ``using_metadata`` block (the command line's flags), else empty."""
        if software_version is None:
            from rramlab import __version__ as software_version
        m = _DEFAULT_METADATA.get() if metadata is None else metadata
        session_id, step_index = _SESSION_STEP.get() or (None, None)
        with _store_errors(self.path, "start a run"), self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (protocol, settings, backend, backend_describe, software_version, pid, host, "
                "started_at, status, chip_id, sample, operator, temperature_k, notes, tags, session_id, step_index) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (protocol, json.dumps(_plain(settings)), backend, json.dumps(_plain(backend_describe)),
                 software_version, os.getpid(), socket.gethostname(), _now(), m.chip_id, m.sample, m.operator,
                 m.temperature_k, m.notes, json.dumps(list(m.tags)), session_id, step_index))
        run_id = int(cur.lastrowid)
        self._seq[run_id] = 0
        return run_id

    def reopen_run(self, run_id: int) -> RunInfo:
        """Mark an ended run ``running`` again under this process (``--resume``); records continue
        after its last one."""
        info = self.run(run_id)
        with _store_errors(self.path, f"reopen run {run_id}"), self.conn:
            self.conn.execute("UPDATE runs SET status='running', ended_at=NULL, error=NULL, pid=?, host=? "
                              "WHERE id=?", (os.getpid(), socket.gethostname(), run_id))
        self._seq[run_id] = self._next_seq(run_id)
        return info

    def end_run(self, run_id: int, status: str, error: str | None = None) -> None:
        """Close a run: ``status`` is "finished", "aborted" or "failed" (StoreError otherwise)."""
        if status not in STATUSES[1:]:
            raise StoreError(f"a run ends as one of {STATUSES[1:]}, not {status!r}")
        with _store_errors(self.path, f"mark run {run_id} {status}"), self.conn:
            self.conn.execute("UPDATE runs SET status=?, ended_at=?, error=? WHERE id=?",
                              (status, _now(), error, run_id))

    def set_summary(self, run_id: int, summary: dict) -> None:
        """Keep the numbers run ``run_id`` ended with (a JSON-ready dict, SI units) with its row."""
        with self.conn:
            self.conn.execute("UPDATE runs SET summary=? WHERE id=?",
                              (json.dumps(_plain(summary), allow_nan=False), int(run_id)))

    def append(self, run_id: int, record) -> int:
        """Store one record (a dataclass) in its own transaction; return its seq."""
        kind, data = record_to_json(record)
        seq = self._seq.get(run_id)
        if seq is None:
            seq = self._next_seq(run_id)
        with _store_errors(self.path, f"store record {seq} of run {run_id}"), self.conn:
            self.conn.execute("INSERT INTO records (run_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)",
                              (run_id, seq, kind, data, _now()))
        self._seq[run_id] = seq + 1
        return seq

    def _next_seq(self, run_id: int) -> int:
        with _store_errors(self.path, f"read run {run_id}"):
            row = self.conn.execute("SELECT MAX(seq) FROM records WHERE run_id=?", (run_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    # ----- sessions (recipes) -----
    def start_session(self, recipe: str, recipe_text: str, fingerprint: str, steps: int,
                      metadata: dict | None = None) -> int:
        """Add a ``running`` session (a recipe run); return its id."""
        with _store_errors(self.path, "start a session"), self.conn:
            cur = self.conn.execute(
                "INSERT INTO sessions (recipe, recipe_text, fingerprint, steps, started_at, status, pid, host, "
                "metadata) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (str(recipe), recipe_text, fingerprint, int(steps), _now(), os.getpid(), socket.gethostname(),
                 json.dumps(_plain(metadata or {}))))
        return int(cur.lastrowid)

    def session(self, session_id: int) -> SessionInfo:
        """The SessionInfo of session ``session_id``; StoreError if the store has no such session."""
        with _store_errors(self.path, f"read session {session_id}"):
            row = self.conn.execute("SELECT id, recipe, recipe_text, fingerprint, steps, started_at, ended_at, "
                                    "status, error, pid, host, metadata FROM sessions WHERE id=?",
                                    (int(session_id),)).fetchone()
        if row is None:
            raise StoreError(f"session {session_id} is not in the store {self.path}: the session number is the one "
                             "`rramlab run` printed when it started")
        return SessionInfo(*row[:11], json.loads(row[11] or "{}"))

    def reopen_session(self, session_id: int) -> SessionInfo:
        """Mark a session ``running`` again under this process (``rramlab run --resume``)."""
        info = self.session(session_id)
        with _store_errors(self.path, f"reopen session {session_id}"), self.conn:
            self.conn.execute("UPDATE sessions SET status='running', ended_at=NULL, error=NULL, pid=?, host=? "
                              "WHERE id=?", (os.getpid(), socket.gethostname(), int(session_id)))
        return info

    def claim_session(self, session_id: int, fingerprint: str | None = None) -> SessionInfo:
        """Make session ``session_id`` this process's to continue (``rramlab run --resume``), in one
        SQLite transaction that reads its row and marks it ``running`` under this process only if no
        other live process holds it: two resumes at the same time, or a resume while the session
        still runs, cannot both continue it. Returns the session's row as it was before the claim
        (for ``release_session``). StoreError (one line) for a session not in the store, one that
        ran another recipe (``fingerprint``), one already finished, or one another process holds. A
        session this process already holds is returned as it is."""
        sid = int(session_id)
        me, host = os.getpid(), socket.gethostname()
        conn = self.conn
        with _store_errors(self.path, f"claim session {sid}"):
            if conn.in_transaction:
                conn.commit()
            conn.isolation_level = None
            try:
                conn.execute("BEGIN IMMEDIATE")  # the write lock first: the check and the update are one step
                try:
                    info = self.session(sid)
                    if fingerprint is not None and info.fingerprint != fingerprint:
                        raise StoreError(f"session {sid} ran another recipe ({info.recipe}, {info.steps} steps): "
                                         "resume it with the file it started with, or start a new session")
                    if info.status == "finished":
                        raise StoreError(f"session {sid} already finished ({info.steps} steps, ended "
                                         f"{info.ended_at}): nothing to resume; run the recipe without --resume "
                                         "for a new session")
                    if info.status == "running" and info.pid is not None and not (info.pid == me and info.host == host):
                        if info.host != host:
                            raise StoreError(f"session {sid} is marked running on host {info.host} (process "
                                             f"{info.pid}): stop it there, then resume it")
                        if _pid_alive(info.pid):
                            raise StoreError(f"session {sid} is still running in process {info.pid} (another "
                                             f"`rramlab run --resume {sid}` or the session itself): stop it first "
                                             f"(Ctrl-C there, or kill {info.pid}), then resume it")
                    conn.execute("UPDATE sessions SET status='running', ended_at=NULL, error=NULL, pid=?, host=? "
                                 "WHERE id=?", (me, host, sid))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            finally:
                conn.isolation_level = ""
        return info

    def release_session(self, before: SessionInfo) -> None:
        """Give back a session ``claim_session`` took (``before``: what it returned) when the resume
        stopped before its first step (the backend did not open): its row as it was."""
        with _store_errors(self.path, f"release session {before.session_id}"), self.conn:
            self.conn.execute("UPDATE sessions SET status=?, ended_at=?, error=?, pid=?, host=? WHERE id=? AND pid=?",
                              (before.status, before.ended_at, before.error, before.pid, before.host,
                               int(before.session_id), os.getpid()))

    def end_session(self, session_id: int, status: str, error: str | None = None) -> None:
        """Close a session: "finished", "aborted" or "failed"."""
        if status not in STATUSES[1:]:
            raise StoreError(f"a session ends as one of {STATUSES[1:]}, not {status!r}")
        with _store_errors(self.path, f"mark session {session_id} {status}"), self.conn:
            self.conn.execute("UPDATE sessions SET status=?, ended_at=?, error=? WHERE id=?",
                              (status, _now(), error, int(session_id)))

    def session_runs(self, session_id: int) -> list[RunInfo]:
        """The runs of session ``session_id`` (every attempt at each step), by step then run id."""
        sql = _RUN_SELECT + " WHERE runs.session_id = ? GROUP BY runs.id ORDER BY runs.step_index, runs.id"
        with _store_errors(self.path, f"read the runs of session {session_id}"):
            return [_run_info(r) for r in self.conn.execute(sql, (int(session_id),))]

    def finished_steps(self, session_id: int) -> set[int]:
        """Step indices of session ``session_id`` that ended: a ``finished`` run, or a finished wait."""
        with _store_errors(self.path, f"read the steps of session {session_id}"):
            runs = self.conn.execute("SELECT step_index FROM runs WHERE session_id=? AND status='finished'",
                                     (int(session_id),)).fetchall()
            waits = self.conn.execute("SELECT step_index FROM session_waits WHERE session_id=?",
                                      (int(session_id),)).fetchall()
        return {int(r[0]) for r in runs + waits}

    def finish_wait(self, session_id: int, step_index: int) -> None:
        """Keep that wait step ``step_index`` of session ``session_id`` has ended."""
        with _store_errors(self.path, f"mark wait step {step_index} of session {session_id}"), self.conn:
            self.conn.execute("INSERT OR REPLACE INTO session_waits VALUES (?, ?, ?)",
                              (int(session_id), int(step_index), _now()))

    # ----- reading -----
    def run(self, run_id: int) -> RunInfo:
        """The RunInfo of run ``run_id``; StoreError if the store has no such run."""
        with _store_errors(self.path, f"read run {run_id}"):
            row = self.conn.execute(_RUN_SELECT + " WHERE runs.id=? GROUP BY runs.id", (int(run_id),)).fetchone()
        if row is None:
            raise StoreError(f"run {run_id} is not in the store {self.path}: see `rramlab runs list`")
        return _run_info(row)

    def runs(self, limit: int | None = None, chip: str | None = None, protocol: str | None = None,
             since: str | None = None, tag: str | None = None, session: int | None = None) -> list[RunInfo]:
        """Every run, newest first (at most ``limit``); only those of ``chip`` (its chip id), of
        ``protocol``, started on or after ``since`` (ISO date or time, UTC), tagged ``tag`` or steps
        of recipe session ``session`` (``rramlab run``)."""
        where, args = [], []
        if session is not None:
            where.append("runs.session_id = ?")
            args.append(int(session))
        if chip is not None:
            where.append("runs.chip_id = ?")
            args.append(chip)
        if protocol is not None:
            where.append("runs.protocol = ?")
            args.append(protocol)
        if since is not None:
            where.append("runs.started_at >= ?")
            args.append(_since_text(since))
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE json_each.value = ?)")
            args.append(tag)
        sql = _RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY runs.id ORDER BY runs.id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with _store_errors(self.path, "list its runs"):
            return [_run_info(r) for r in self.conn.execute(sql, args)]

    def cell_history(self, chip: str | None, wordline: int, bitline: int) -> list[CellReading]:
        """Every record, across the runs of chip ``chip`` (None: runs with no chip id), that read the
        cell (wordline, bitline): records with those ``wordline`` and ``bitline`` fields, in the order
        taken (by time, then run and seq)."""
        sql, args = _cell_history_sql(chip, wordline, bitline)
        with _store_errors(self.path, f"read the history of cell {wordline},{bitline}"):
            rows = self.conn.execute(sql, args).fetchall()
        out = []
        for run_id, protocol, seq, kind, at, data, settings in rows:
            d = json.loads(data)
            out.append(CellReading(run_id, protocol, seq, kind, at, _conductance_of(d, json.loads(settings)), d))
        return out

    def records(self, run_id: int, type: str | None = None) -> list[StoredRecord]:
        """The records of run ``run_id`` in the order taken, optionally of one type (e.g. "IspvaResult").
        ``rramlab.records_frame(store.records(7))`` makes them a DataFrame."""
        sql, args = "SELECT run_id, seq, type, data, at FROM records WHERE run_id=?", [int(run_id)]
        if type is not None:
            sql += " AND type=?"
            args.append(type)
        with _store_errors(self.path, f"read the records of run {run_id}"):
            return [StoredRecord(r[0], r[1], r[2], json.loads(r[3]), r[4])
                    for r in self.conn.execute(sql + " ORDER BY seq", args)]

    def close(self) -> None:
        """Close the database connection (a ``with RunStore(...)`` block does it)."""
        with contextlib.suppress(sqlite3.Error):  # closing a store whose disk failed must not hide that error
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


_RUN_SELECT = ("SELECT runs.id, protocol, settings, backend, backend_describe, software_version, pid, host, "
               "started_at, ended_at, status, error, COUNT(records.id), runs.summary, runs.chip_id, runs.sample, "
               "runs.operator, runs.temperature_k, runs.notes, runs.tags, runs.session_id, runs.step_index FROM runs "
               "LEFT JOIN records ON records.run_id = runs.id")


def _run_info(row) -> RunInfo:
    metadata = RunMetadata(chip_id=row[14], sample=row[15], operator=row[16], temperature_k=row[17], notes=row[18],
                           tags=tuple(json.loads(row[19] or "[]")))
    return RunInfo(run_id=row[0], protocol=row[1], settings=json.loads(row[2]), backend=row[3],
                   backend_describe=json.loads(row[4]), software_version=row[5], pid=row[6], host=row[7],
                   started_at=row[8], ended_at=row[9], status=row[10], error=row[11], records=row[12],
                   summary=json.loads(row[13]) if row[13] else None, metadata=metadata, session_id=row[20],
                   step_index=row[21])


def _cell_history_sql(chip, wordline: int, bitline: int) -> tuple[str, list]:
    """The query of a cell's records; its json_extract expressions are those of the records_by_cell index."""
    chip_sql = "runs.chip_id IS NULL" if chip is None else "runs.chip_id = ?"
    args = ([] if chip is None else [chip]) + [int(wordline), int(bitline)]
    sql = ("SELECT records.run_id, runs.protocol, records.seq, records.type, records.at, records.data, runs.settings "
           "FROM records JOIN runs ON runs.id = records.run_id WHERE " + chip_sql +
           " AND json_extract(data, '$.wordline') = ? AND json_extract(data, '$.bitline') = ?"
           " ORDER BY records.at, records.run_id, records.seq")
    return sql, args


def _since_text(since) -> str:
    """An ISO date or date-time (UTC) as the text started_at is compared with."""
    text = since.isoformat() if hasattr(since, "isoformat") else str(since)
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise StoreError(f"--since {since!r} is not a date: give e.g. 2026-12-01 or 2026-12-01T08:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _conductance_of(data: dict, settings: dict) -> float:
    """A record's conductance (S): its conductance_s, else its read current over the run's read voltage."""
    g = data.get("conductance_s")
    if isinstance(g, (int, float)):
        return float(g)
    current = data.get("read_a")
    read_v = settings.get("read_v")
    if isinstance(current, (int, float)) and isinstance(read_v, (int, float)) and read_v:
        return float(current) / float(read_v)
    return float("nan")


def _connect(path: Path) -> sqlite3.Connection:
    if path.exists() and path.is_dir():
        raise StoreError(f"store path {path} is a folder: give a file name, e.g. --store {path / DEFAULT_FILE_NAME}")
    if path.exists() and not path.is_file():
        # /dev/full, /dev/null, a pipe: SQLite needs a regular file beside its -wal and -shm files
        raise StoreError(f"store path {path} is not a regular file (a device or a pipe): give a file name, "
                         f"e.g. --store {DEFAULT_FILE_NAME}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of the store {path}: {exc.strerror}; choose another --store FILE") \
            from None
    if path.exists() and path.stat().st_size > 0:
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise StoreError(f"cannot read the run store {path}: {exc.strerror}; choose another --store FILE") from None
        if head != b"SQLite format 3\x00":
            raise StoreError(f"{path} is not a rramlab run store (not an SQLite file): "
                             "choose another --store FILE")
    conn = None
    try:
        with _store_errors(path, "open it"):
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
            conn.execute("PRAGMA foreign_keys=ON")
            _check_integrity(conn, path)
            _migrate(conn, path)
    except BaseException:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        raise
    return conn


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """A corrupt page is found when the store is opened, not half-way through a run or an export.
    quick_check reads every page (it skips only the index-content cross-check of integrity_check):
    0.4 to 0.85 s for a million records (250 MB) on a warm disk cache, benchmarks/store_open.py."""
    # one line: SQLite may put a newline inside a problem ("*** in database main ***\nPage 31: ...")
    problems = [" ".join(str(r[0]).split()) for r in conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise StoreError(f"run store {path} is damaged (integrity check: {'; '.join(problems)}): {_damaged_fix(path)}")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    # one writer at a time: two processes opening a new store together must not both create it
    conn.isolation_level = None
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "schema_version" not in tables:
            if tables - {"sqlite_sequence"}:
                raise StoreError(f"{path} is an SQLite file but not a rramlab run store: choose another --store FILE")
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_version VALUES (0)")
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path} has store schema {version}, newer than this rramlab's {SCHEMA_VERSION}: "
                             "upgrade rramlab")
        for i in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[i].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version=?", (i + 1,))
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [t for t in TABLES if t not in tables]
        if missing:
            raise StoreError(f"run store {path} is damaged: it has no {' and no '.join(missing)} table: "
                             f"{_damaged_fix(path)}")
        # Written once here, before any instrument is touched: a full disk, a file size limit or another
        # program's write lock is found now, not after the bench was connected.
        conn.execute("UPDATE schema_version SET version=version")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a BEGIN that failed left none to roll back
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    finally:
        conn.isolation_level = ""


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])


class RunRecorder:
    """One run being recorded (what ``record_run`` yields): ``add(record)`` appends a record;
    ``run_id`` is the run's id in the store, ``count`` the records added so far."""

    def __init__(self, store: RunStore, run_id: int):
        self.store, self.run_id = store, run_id
        self.count = 0

    def add(self, record) -> None:
        """Append one record (a protocol's dataclass) in its own transaction."""
        self.store.append(self.run_id, record)
        self.count += 1


@contextlib.contextmanager
def record_run(store_path, protocol: str, settings, instrument, resume: int | None = None,
               metadata: RunMetadata | None = None) -> Iterator[RunRecorder]:
    """Record a run for the duration of a ``with`` block.

    ``settings``: a settings dataclass or a dict. ``instrument``: its ``backend_name`` and
    ``describe()`` go into the run row. ``resume``: continue run ``resume`` instead of starting one.
    ``metadata``: the chip, sample, operator, temperature, notes and tags kept with the run (None:
    those of the enclosing ``using_metadata`` block, as the command line's --chip-id ... flags).
    On leaving the block the instrument is first made safe (``reset_outputs``: 0 V, outputs off,
    every crosspoint open and, on a bench, the matrix read back), then the run is ``finished``;
    a run whose safe-state sequence fails is ``failed``, never ``finished``. ``aborted`` on Ctrl-C
    (KeyboardInterrupt or GeneratorExit); ``failed`` with the error text on any other exception,
    which is re-raised.
    ``store_path``: a path, None (the default store, as the command line) or an open RunStore.
    Raises StoreError for a path that is not a rramlab store.

    Example (the same store and run rows as ``rramlab ispva``; ``rramlab runs list`` shows it)::

        with VirtualArray(seed=1) as chip, record_run(None, "ispva", settings, chip) as rec:
            for r in ispva.run(chip, ispva.plan(settings, cells, targets, chip)):
                rec.add(r)
    """
    store = store_path if isinstance(store_path, RunStore) else RunStore(store_path)
    own = store is not store_path
    try:
        if resume is not None:
            store.reopen_run(resume)
            run_id = resume
        else:
            plain = settings if isinstance(settings, dict) else dataclasses.asdict(settings)
            run_id = store.start_run(protocol, plain, getattr(instrument, "backend_name", "unknown"),
                                     instrument.describe(), metadata=metadata)
        recorder = RunRecorder(store, run_id)
        try:
            yield recorder
            _make_safe(instrument)  # inside the try: a safe state that fails makes the run failed
        except KeyboardInterrupt as exc:
            _end_quietly(store, run_id, "aborted", interrupted_text(exc))
            raise
        except BaseException as exc:
            # a store that failed mid-run is marked failed if it still takes a write; its own error
            # (naming the store and the fix) is the one the user sees, not a second one from here
            _end_quietly(store, run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        else:
            store.end_run(run_id, "finished")
    finally:
        if own:
            store.close()


def _make_safe(instrument) -> None:
    """The instrument's safe-state sequence, when it has one (a CrossbarInstrument)."""
    reset = getattr(instrument, "reset_outputs", None)
    if callable(reset):
        reset()


def interrupted_text(exc: BaseException) -> str:
    """The error text of a run stopped by a signal: "interrupted by SIGTERM" when the stop carries
    its signal number (``signum``, as the command line's SIGTERM and SIGHUP do), else Ctrl-C."""
    signum = getattr(exc, "signum", None)
    if signum is None or signum == signal.SIGINT:
        return "interrupted (Ctrl-C)"
    try:
        return f"interrupted by {signal.Signals(signum).name}"
    except ValueError:
        return f"interrupted by signal {signum}"


def _end_quietly(store: RunStore, run_id: int, status: str, error: str) -> None:
    with contextlib.suppress(StoreError):
        store.end_run(run_id, status, error)


@dataclass(frozen=True)
class ProtocolRun:
    """What ``run_protocol`` returns: the run's id, the store it is in, every record in order."""

    run_id: int
    store_path: Path
    records: list
    #: records the run already held when it was resumed (``resume=RUN``); ``records`` are the new ones
    earlier: int = 0


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def stored_records(protocol, records: list[StoredRecord]) -> list:
    """A run's stored records (``RunStore.records``) as ``protocol``'s record dataclasses, in order
    (JSON lists back to tuples; a NaN was stored as None and stays None). StoreError naming the
    type for a record that is not one of ``protocol.RECORDS``."""
    by_name = {cls.__name__: cls for cls in protocol.RECORDS}
    out = []
    for r in records:
        cls = by_name.get(r.type)
        if cls is None:
            raise StoreError(f"record {r.seq} of run {r.run_id} is a {r.type}, not a record of "
                             f"{protocol.__name__.rsplit('.', 1)[-1]}: the run cannot be resumed by it")
        names = {f.name for f in dataclasses.fields(cls)}
        out.append(cls(**{k: _tupled(v) for k, v in r.data.items() if k in names}))
    return out


def stored_settings(settings_class, stored: dict):
    """The settings dataclass a run was recorded with, from its stored settings (``RunInfo.settings``):
    keys that are not fields (a command's own, e.g. ``cell``) are left out, nested settings (e.g.
    retention's ``program``) rebuilt."""
    kwargs = {}
    for f in dataclasses.fields(settings_class):
        if f.name not in stored:
            continue
        value = stored[f.name]
        inner = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if isinstance(value, dict) and inner is not None and dataclasses.is_dataclass(inner):
            value = stored_settings(inner, value)
        elif isinstance(value, list):
            value = _tupled(value)
        kwargs[f.name] = value
    return settings_class(**kwargs)


def resume_plan(protocol, plan, store: RunStore, run_id: int):
    """``protocol.resume(plan, records)`` for run ``run_id`` of ``store``: the plan that continues
    after the run's last stored record, and how many records it holds. StoreError (one line) when the
    run is of another protocol or is still running in a live process; RequestError (from the
    protocol) when its records are not this plan's."""
    name = protocol.__name__.rsplit(".", 1)[-1]
    stored_name = {"array_map": "map"}.get(name, name)
    info = store.run(run_id)
    if info.protocol not in (name, stored_name):
        raise StoreError(f"run {run_id} was recorded by {info.protocol}, not {stored_name}: resume it with "
                         f"`rramlab {info.protocol} --resume {run_id}`")
    if info.shown_status == "running" and info.pid != os.getpid():
        raise StoreError(f"run {run_id} is still running (pid {info.pid} on {info.host}): stop it first, or "
                         f"`rramlab runs resume {run_id}` if it is paused")
    if not hasattr(protocol, "resume"):
        raise StoreError(f"{stored_name} runs cannot be resumed")
    records = stored_records(protocol, store.records(run_id))
    return protocol.resume(plan, records), len(records)


def run_protocol(instrument, protocol, plan, store=None, should_stop=None, on_record=None,
                 metadata: RunMetadata | None = None, control=None, resume: int | None = None) -> ProtocolRun:
    """Run a protocol on an instrument and record it in the run store, in one call.

    ``protocol``: a protocol module (``rramlab.protocols.ispva``, ...); its ``run(instrument, plan,
    should_stop)`` is run and every record it yields is stored as it comes (one transaction each,
    as ``record_run``), then returned. ``plan``: from the module's ``plan(...)``, checked against
    this instrument. The run row keeps ``plan.settings`` (a transfer: ``transfer.run_settings(plan)``,
    which ``rramlab transfer --resume`` reads). ``store``: a path, an open RunStore, or None (the
    command line's default store). ``on_record(record)``: called after each record is stored (a
    progress bar, a live plot). ``metadata``: a RunMetadata (chip id, sample, operator, temperature,
    notes, tags) kept with the run. Ctrl-C and errors mark the run as ``record_run`` does.
    ``control``: a ``rramlab.protocols.control.RunControl`` to pause, resume or stop the run from
    another thread at the protocol's checkpoints (paused: outputs at 0 V, matrix open); it is bound
    to ``instrument`` here and polls ``should_stop`` too. A ``should_stop`` that is a RunControl
    is taken as ``control``. ``resume``: continue stored run ``resume`` (e.g. after a crash): ``plan``
    is the run's plan rebuilt from its stored settings (``stored_settings``), and the run goes on
    after its last stored record (``protocol.resume``); the records returned are the new ones.

    Example::

        from rramlab import VirtualArray, run_protocol
        from rramlab.protocols import ispva

        with VirtualArray(seed=1, engine="fast") as chip:
            plan = ispva.plan(ispva.IspvaSettings(), [(0, 0), (0, 1)], [20e-9, 50e-9], chip)
            done = run_protocol(chip, ispva, plan)
        print(done.run_id, len(done.records))   # `rramlab runs show RUN` shows it
    """
    name = protocol.__name__.rsplit(".", 1)[-1]
    settings = protocol.run_settings(plan) if hasattr(protocol, "run_settings") else plan.settings
    from rramlab.protocols.control import RunControl

    if control is None and isinstance(should_stop, RunControl):
        control, should_stop = should_stop, None
    if control is not None:
        control.bind(instrument)
        if should_stop is not None:
            control.other_stop = should_stop
        should_stop = control
    records, earlier = [], 0
    opened = store if isinstance(store, RunStore) else RunStore(store)
    try:
        if resume is not None:
            plan, earlier = resume_plan(protocol, plan, opened, resume)
        with record_run(opened, name, settings, instrument, metadata=metadata, resume=resume) as rec:
            for record in protocol.run(instrument, plan, should_stop=should_stop):
                rec.add(record)
                records.append(record)
                if on_record is not None:
                    on_record(record)
    finally:
        if opened is not store:
            opened.close()
    return ProtocolRun(rec.run_id, opened.path, records, earlier)



def cell_history(cell: tuple[int, int], chip: str | None, store=None) -> list[CellReading]:
    """Every record that read ``cell`` (wordline, bitline) in the runs of chip ``chip`` (their
    ``--chip-id``; None: runs recorded with no chip id), in the order taken, from ``store`` (a path,
    an open RunStore or None: the command line's default store). ``rramlab cell WL,BL --chip ID``
    prints the same. Example::

        from rramlab import cell_history
        for h in cell_history((3, 7), "W3-D12"):
            print(h.at, h.run_id, h.protocol, h.conductance_s)   # conductance in S
    """
    wordline, bitline = (int(x) for x in cell)
    if isinstance(store, RunStore):
        return store.cell_history(chip, wordline, bitline)
    with RunStore(store) as s:
        return s.cell_history(chip, wordline, bitline)


def add_store_flag(parser, purpose: str = "to record this run in", default: str | None = None,
                   metadata: bool = True) -> None:
    """``--store FILE`` for a subcommand: ``purpose`` says what the command does with it (a command
    that only reads the store says so), ``default`` where it goes without the flag. ``metadata``
    (a command that records runs): also --chip-id, --sample, --operator, --temperature, --notes and
    --tag, which the command line's main turns into ``using_metadata`` around the command."""
    default = default or f"${ENV_VAR} or {DEFAULT_FILE_NAME} in the user's data folder"
    parser.add_argument("--store", metavar="FILE", default=None,
                        help=f"run store (SQLite) {purpose} (default: {default})")
    if not metadata:
        return
    g = parser.add_argument_group("run metadata (kept with every run this command records; "
                                  "rramlab runs list --chip ID finds them)")
    g.add_argument("--chip-id", metavar="ID", default=None, help="the chip's id, e.g. W3-D12 (wafer 3, die 12)")
    g.add_argument("--sample", metavar="TEXT", default=None, help="the sample or batch")
    g.add_argument("--operator", metavar="NAME", default=None, help="who ran it")
    g.add_argument("--temperature", metavar="T", default=None,
                   help="stage temperature: kelvin (300, 300K) or Celsius (25C); stored in K")
    g.add_argument("--notes", metavar="TEXT", default=None, help="free text")
    g.add_argument("--tag", metavar="WORD", action="append", default=None,
                   help="a free tag (repeat for more); rramlab runs list --tag WORD finds the run")


def records_table(records: list[StoredRecord]) -> tuple[list[str], list[list[Any]]]:
    """Rows for export: columns seq, type, then the union of every record's fields in first-seen order."""
    fields: list[str] = []
    for r in records:
        for k in r.data:
            if k not in fields:
                fields.append(k)
    header = ["seq", "type", *fields]
    rows = [[r.seq, r.type, *[_cell_text(r.data.get(k)) for k in fields]] for r in records]
    return header, rows


def _cell_text(v):
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def json_ready(value):
    """A value for json.dump: numpy to Python, NaN and infinities to None."""
    return _plain(value)
