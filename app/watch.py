"""``rramlab runs watch``: the live run's progress and last records, from another terminal.

The store is opened read only (``mode=ro``) and never through ``RunStore`` (which migrates and
writes once on opening). In WAL mode a reader works from a snapshot of the database and takes no
lock a writer waits for, so the run being recorded never sees SQLITE_BUSY; each refresh is a few
short queries in autocommit, so the reader holds no snapshot between refreshes (the writer's
checkpoints are not held back).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import sys
import time
from pathlib import Path

from rramlab.protocols.store import StoreError, default_store_path, sqlite_error_text

#: a record field's value is shortened to this many characters in the watch
FIELD_TEXT_MAX = 60


def open_reader(path) -> sqlite3.Connection:
    """A read-only connection to the store at ``path`` (StoreError, one line, if it is not there)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"run store {path} does not exist: give the --store FILE the run records into")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0, isolation_level=None)
        conn.execute("SELECT version FROM schema_version").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(sqlite_error_text(exc, path, "watch it")) from None
    return conn


def snapshot(conn: sqlite3.Connection, run: int | None = None, last: int = 5, now: dt.datetime | None = None) -> dict:
    """What the watch shows, as a dict: the run (``run``, else the newest running one, else the
    newest), its record count, rate (records/s) and elapsed time (s), and its ``last`` records."""
    cols = "id, protocol, status, started_at, ended_at, backend"
    if run is not None:
        row = conn.execute(f"SELECT {cols} FROM runs WHERE id=?", (int(run),)).fetchone()
        if row is None:
            raise StoreError(f"run {run} is not in the store: see `rramlab runs list`")
    else:
        row = conn.execute(f"SELECT {cols} FROM runs WHERE status='running' ORDER BY id DESC LIMIT 1").fetchone() \
            or conn.execute(f"SELECT {cols} FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return {"run_id": None}
    run_id, protocol, status, started_at, ended_at, backend = row
    chip = None
    try:
        chip = conn.execute("SELECT chip_id FROM runs WHERE id=?", (run_id,)).fetchone()[0]
    except sqlite3.OperationalError:  # a store of schema < 3, being written by an older rramlab
        pass
    count = conn.execute("SELECT COUNT(*) FROM records WHERE run_id=?", (run_id,)).fetchone()[0]
    recent = conn.execute("SELECT seq, type, data, at FROM records WHERE run_id=? ORDER BY seq DESC LIMIT ?",
                          (run_id, int(last))).fetchall()[::-1]
    now = now or dt.datetime.now(dt.timezone.utc)
    end = dt.datetime.fromisoformat(ended_at) if ended_at else now
    elapsed = max((end - dt.datetime.fromisoformat(started_at)).total_seconds(), 0.0)
    return {"run_id": run_id, "protocol": protocol, "status": status, "backend": backend, "chip_id": chip,
            "started_at": started_at, "elapsed_s": elapsed, "records": count,
            "rate_per_s": count / elapsed if elapsed > 0 else 0.0,
            "last": [{"seq": s, "type": t, "data": json.loads(d), "at": a} for s, t, d, a in recent]}


def snapshot_text(snap: dict, path) -> str:
    """The lines the watch prints for one snapshot."""
    if snap["run_id"] is None:
        return f"no runs in {path} yet (waiting)"
    head = (f"run {snap['run_id']} {snap['protocol']} {snap['status']} on {snap['backend']}"
            + (f", chip {snap['chip_id']}" if snap.get("chip_id") else "")
            + f": {snap['records']} records in {_duration(snap['elapsed_s'])} ({snap['rate_per_s']:.1f} records/s), "
              f"started {snap['started_at']}")
    lines = [head]
    for r in snap["last"]:
        fields = " ".join(f"{k}={_short(v)}" for k, v in r["data"].items())
        lines.append(f"  {r['seq']:6d} {r['at'][11:23]} {r['type']}: {fields}")
    return "\n".join(lines)


def _short(v) -> str:
    if isinstance(v, float):
        text = f"{v:.4g}"
    else:
        text = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return text if len(text) <= FIELD_TEXT_MAX else text[:FIELD_TEXT_MAX - 3] + "..."


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def watch(store=None, run: int | None = None, interval_s: float = 1.0, last: int = 5, times: int | None = None,
          out=None) -> int:
    """Print the snapshot every ``interval_s`` seconds (``times`` refreshes, else until Ctrl-C, which
    ends it with one line). On a terminal each refresh replaces the last; piped, they follow."""
    out = out or sys.stdout
    path = Path(store) if store is not None else default_store_path()
    if interval_s <= 0:
        raise ValueError(f"--interval {interval_s:g}: give a positive number of seconds, e.g. --interval 1")
    conn = open_reader(path)
    tty = hasattr(out, "isatty") and out.isatty()
    shown = 0
    try:
        while times is None or shown < times:
            try:
                text = snapshot_text(snapshot(conn, run, last), path)
            except sqlite3.Error as exc:
                raise StoreError(sqlite_error_text(exc, path, "watch it")) from None
            if tty:
                out.write("\x1b[H\x1b[2J")  # home and clear: the refresh replaces the last one
            out.write(text + "\n" + ("" if tty else "\n"))
            out.flush()
            shown += 1
            if times is None or shown < times:
                time.sleep(interval_s)
    except KeyboardInterrupt:
        out.write(f"stopped watching {path}\n")
    finally:
        conn.close()
    return 0
