"""The run store: every run and every record it takes, in one embedded SQLite database.

Why SQLite: one file, no server, atomic transactions. The store is opened in WAL mode and each
record is appended in its own small transaction, so a process killed mid-run (power cut, SIGKILL)
loses at most the record in flight; the run row then still says ``running`` and ``runs list``
shows it as ``unfinished`` once its process is gone.

Tables (schema version 2, see ``MIGRATIONS``):

* ``runs``: id, protocol, settings (JSON), backend, backend_describe (JSON, the backend's
  ``describe()``), software_version, pid, host, started_at, ended_at (ISO 8601 UTC), status
  (``running``, ``finished``, ``aborted``, ``failed``), error (text of the failure), summary (JSON:
  the numbers the run ended with, e.g. a transfer's RMSE; NULL until set, and for runs of stores
  made before version 2).
* ``records``: id, run_id, seq (0-based order within the run), type (the record dataclass's name),
  data (JSON of its fields), at (ISO 8601 UTC).
* ``schema_version``: one row, the number of migrations applied.

Records are frozen dataclasses; they are stored as JSON with their type name, so the store needs
no change when a protocol adds a record type. Units are those of the record (SI).

The default file is ``runs.sqlite`` in ``platformdirs.user_data_dir("rramlab")``; the environment
variable ``RRAMLAB_STORE`` or a ``--store FILE`` flag chooses another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rramlab.drivers.interface import RramlabError

__all__ = ["RunStore", "record_run", "RunRecorder", "RunInfo", "StoredRecord", "StoreError", "default_store_path",
           "STATUSES", "ENV_VAR"]

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
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RramlabError):
    """The run store cannot be opened or does not hold what was asked for."""


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
class RunInfo:
    """One row of the ``runs`` table, JSON fields decoded."""

    id: int
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
                  software_version: str | None = None) -> int:
        """Add a ``running`` run row; return its id."""
        if software_version is None:
            from rramlab import __version__ as software_version
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (protocol, settings, backend, backend_describe, software_version, pid, host, "
                "started_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running')",
                (protocol, json.dumps(_plain(settings)), backend, json.dumps(_plain(backend_describe)),
                 software_version, os.getpid(), socket.gethostname(), _now()))
        run_id = int(cur.lastrowid)
        self._seq[run_id] = 0
        return run_id

    def reopen_run(self, run_id: int) -> RunInfo:
        """Mark an ended run ``running`` again under this process (``--resume``); records continue
        after its last one."""
        info = self.run(run_id)
        with self.conn:
            self.conn.execute("UPDATE runs SET status='running', ended_at=NULL, error=NULL, pid=?, host=? "
                              "WHERE id=?", (os.getpid(), socket.gethostname(), run_id))
        self._seq[run_id] = self._next_seq(run_id)
        return info

    def end_run(self, run_id: int, status: str, error: str | None = None) -> None:
        """Close a run: ``status`` is "finished", "aborted" or "failed" (StoreError otherwise)."""
        if status not in STATUSES[1:]:
            raise StoreError(f"a run ends as one of {STATUSES[1:]}, not {status!r}")
        with self.conn:
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
        with self.conn:
            self.conn.execute("INSERT INTO records (run_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)",
                              (run_id, seq, kind, data, _now()))
        self._seq[run_id] = seq + 1
        return seq

    def _next_seq(self, run_id: int) -> int:
        row = self.conn.execute("SELECT MAX(seq) FROM records WHERE run_id=?", (run_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    # ----- reading -----
    def run(self, run_id: int) -> RunInfo:
        """The RunInfo of run ``run_id``; StoreError if the store has no such run."""
        row = self.conn.execute(_RUN_SELECT + " WHERE runs.id=? GROUP BY runs.id", (int(run_id),)).fetchone()
        if row is None:
            raise StoreError(f"run {run_id} is not in the store {self.path}: see `rramlab runs list`")
        return _run_info(row)

    def runs(self, limit: int | None = None) -> list[RunInfo]:
        """Every run, newest first (at most ``limit``)."""
        sql = _RUN_SELECT + " GROUP BY runs.id ORDER BY runs.id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_run_info(r) for r in self.conn.execute(sql)]

    def records(self, run_id: int, type: str | None = None) -> list[StoredRecord]:
        """The records of run ``run_id`` in the order taken, optionally of one type (e.g. "IspvaResult").
        ``rramlab.records_frame(store.records(7))`` makes them a DataFrame."""
        sql, args = "SELECT run_id, seq, type, data, at FROM records WHERE run_id=?", [int(run_id)]
        if type is not None:
            sql += " AND type=?"
            args.append(type)
        return [StoredRecord(r[0], r[1], r[2], json.loads(r[3]), r[4])
                for r in self.conn.execute(sql + " ORDER BY seq", args)]

    def close(self) -> None:
        """Close the database connection (a ``with RunStore(...)`` block does it)."""
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


_RUN_SELECT = ("SELECT runs.id, protocol, settings, backend, backend_describe, software_version, pid, host, "
               "started_at, ended_at, status, error, COUNT(records.id), runs.summary FROM runs "
               "LEFT JOIN records ON records.run_id = runs.id")


def _run_info(row) -> RunInfo:
    return RunInfo(id=row[0], protocol=row[1], settings=json.loads(row[2]), backend=row[3],
                   backend_describe=json.loads(row[4]), software_version=row[5], pid=row[6], host=row[7],
                   started_at=row[8], ended_at=row[9], status=row[10], error=row[11], records=row[12],
                   summary=json.loads(row[13]) if row[13] else None)


def _connect(path: Path) -> sqlite3.Connection:
    if path.exists() and path.is_dir():
        raise StoreError(f"store path {path} is a folder: give a file name, e.g. --store {path / DEFAULT_FILE_NAME}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of the store {path}: {exc.strerror}; choose another --store FILE") \
            from None
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise StoreError(f"{path} is not a rramlab run store (not an SQLite file): "
                                 "choose another --store FILE")
    try:
        conn = sqlite3.connect(str(path), timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn, path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the run store {path}: {exc}; choose another --store FILE") from None
    return conn


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
        conn.execute("COMMIT")
    except BaseException:
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
def record_run(store_path, protocol: str, settings, instrument, resume: int | None = None) -> Iterator[RunRecorder]:
    """Record a run for the duration of a ``with`` block.

    ``settings``: a settings dataclass or a dict. ``instrument``: its ``backend_name`` and
    ``describe()`` go into the run row. ``resume``: continue run ``resume`` instead of starting one.
    On leaving the block the run is ``finished``; ``aborted`` on Ctrl-C (KeyboardInterrupt or
    GeneratorExit); ``failed`` with the error text on any other exception, which is re-raised.
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
                                     instrument.describe())
        recorder = RunRecorder(store, run_id)
        try:
            yield recorder
        except KeyboardInterrupt:
            store.end_run(run_id, "aborted", "interrupted (Ctrl-C)")
            raise
        except BaseException as exc:
            store.end_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        else:
            store.end_run(run_id, "finished")
    finally:
        if own:
            store.close()


def add_store_flag(parser) -> None:
    """``--store FILE`` for a subcommand."""
    parser.add_argument("--store", metavar="FILE", default=None,
                        help=f"run store (SQLite) to record this run in (default: ${ENV_VAR} or "
                             f"{DEFAULT_FILE_NAME} in the user's data folder)")


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
