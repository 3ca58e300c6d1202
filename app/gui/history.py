"""Where the window keeps its runs, behind one small interface: ``RunHistory``.

``StoreHistory`` (the window's default) is the command line's run store (``protocols/store.py``, an
SQLite file): every record is written there by the worker thread as it is taken, the run row ends
as finished, aborted or failed, and runs of past sessions (and of the command line) are listed and
can be opened again. ``SessionHistory`` keeps the runs of this window in memory only. No Qt here.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

#: run statuses, the run store's words
RUNNING, DONE, ABORTED, FAILED = "running", "finished", "aborted", "failed"

log = logging.getLogger(__name__)


def backend_kind(describe: dict) -> str:
    """Which backend a run ran on, from its ``describe()``: "twin", "virtual bench" (the twin behind
    the instruments' own commands), "simulated bench (pyvisa-sim)" or "real bench"."""
    backend = describe.get("backend", "?")
    if backend != "probe-station":
        return backend
    library = str(describe.get("visa_library") or "").strip()
    if library == "@rramlab-twin":
        return "virtual bench"
    if library.startswith("@sim"):
        return "simulated bench (pyvisa-sim)"
    return "real bench" + (f" {describe['bench']}" if describe.get("bench") else "")


@dataclass
class Run:
    """One protocol run: what was asked, on what, and every record it yielded (in order).

    ``records`` is appended to by the worker thread as records arrive, so a run cut off by Abort, an
    error or closing the window still holds everything it measured.
    """

    run_id: int
    protocol: str
    settings: dict
    backend: dict
    started: _dt.datetime
    status: str = RUNNING
    message: str = ""
    records: list = field(default_factory=list)
    total: int = 0
    extra: dict = field(default_factory=dict)   # e.g. the cell and read voltage the plots need
    stored_count: int | None = None             # a past run not opened yet: its record count in the store
    past: bool = False                          # from an earlier session (or the command line)
    summary: dict | None = None                 # the numbers it ended with (app/summaries.py), SI units
    metadata: Any = None                        # its RunMetadata (chip id, sample, operator, ...), or None

    @property
    def count(self) -> int:
        return self.stored_count if self.stored_count is not None else len(self.records)

    def title(self) -> str:
        when = f"{self.started:%Y-%m-%d %H:%M}" if self.past else f"{self.started:%H:%M:%S}"
        return (f"#{self.run_id} {self.protocol} {when} on {backend_kind(self.backend)}: "
                f"{self.count} records, {self.status}")


class RunHistory(ABC):
    """Where the window keeps its runs. Ids are given by the history."""

    @abstractmethod
    def new_run(self, protocol: str, settings: dict, backend: dict, total: int, extra: dict | None = None,
                metadata=None) -> Run:
        """A new run (``metadata``: its RunMetadata, chip id, operator ...; None: none)."""

    @abstractmethod
    def update(self, run: Run) -> None:
        """The run's status or message changed (a store writes it; memory has nothing to do)."""

    @abstractmethod
    def runs(self) -> list[Run]: ...

    @abstractmethod
    def get(self, run_id: int) -> Run: ...

    def set_summary(self, run: Run, summary: dict) -> None:
        """Keep the numbers the run ended with (a store writes them to its row)."""
        run.summary = summary

    def sink(self, run: Run) -> "RecordSink":
        """Where the worker thread puts the run's records (called in the window's thread)."""
        return RecordSink(run)

    def location(self) -> str:
        return "this session (memory)"


class RecordSink:
    """Takes a run's records on the worker thread: ``add(record)`` keeps it (before the plots see
    it), ``close()`` when the run has ended. This one keeps them in the Run only."""

    def __init__(self, run: Run):
        self.run = run

    def add(self, record) -> None:
        self.run.records.append(record)

    def close(self) -> None:
        pass


class SessionHistory(RunHistory):
    """Runs of this window's session, in memory."""

    def __init__(self):
        self._runs: dict[int, Run] = {}
        self._ids = itertools.count(1)

    def new_run(self, protocol, settings, backend, total, extra=None, metadata=None) -> Run:
        run = Run(next(self._ids), protocol, dict(settings), dict(backend), _dt.datetime.now(), total=total,
                  extra=dict(extra or {}), metadata=metadata)
        self._runs[run.run_id] = run
        return run

    def update(self, run: Run) -> None:
        self._runs[run.run_id] = run

    def runs(self) -> list[Run]:
        return list(self._runs.values())

    def get(self, run_id: int) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise KeyError(f"no run #{run_id} in this session") from None


# ----- the run store -----

@dataclasses.dataclass(frozen=True)
class PlainRecord:
    """A record that is not a dataclass (a tuple, say), as the store keeps it."""

    value: Any


def _record_types() -> dict[str, type]:
    """Record classes by name, for rebuilding stored records as the objects the plots take."""
    from rramlab.app.gui import jobs
    from rramlab.protocols import inference, ispp, ispva, power, transfer

    types = [jobs.ArrayReadRecord, jobs.PowerRecord, ispva.IspvaPulse, ispva.IspvaResult, transfer.CellRead,
             transfer.RowPulse, transfer.Disturbed, inference.ImageRecord, power.ImagePower, PlainRecord]
    types.append(ispp.IsppRecord)
    from rramlab.protocols import array_map, disturb, endurance, iv, retention

    types += [iv.IvPoint, array_map.MapRead, array_map.MapSnapshot, endurance.EnduranceRecord,
              retention.RetentionRecord, disturb.DisturbRecord]
    return {t.__name__: t for t in types if dataclasses.is_dataclass(t)}


def _as_field(value, annotation: str):
    if isinstance(value, list):
        if "ndarray" in annotation:
            import numpy as np

            return np.asarray(value, dtype=float if "bool" not in annotation else bool)
        if "tuple" in annotation:
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if value is None and ("float" in annotation):
        return float("nan")  # the store writes NaN as null
    return value


def rebuild_record(kind: str, data: dict, types: dict[str, type] | None = None):
    """A stored record (its type name and JSON fields) as the dataclass it was; an unknown type as a
    namespace with the same attributes."""
    import types as _types

    cls = (types if types is not None else _record_types()).get(kind)
    if cls is None:
        return _types.SimpleNamespace(**data)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: _as_field(v, str(fields[k].type)) for k, v in data.items() if k in fields})
    except TypeError:
        return _types.SimpleNamespace(**data)


def _started(iso: str) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return _dt.datetime.now()


class StoreHistory(RunHistory):
    """The run store as the window's history (the file the command line uses, or another).

    Runs of this window are kept as live ``Run`` objects; runs of past sessions are listed from the
    store (the newest ``limit``) and their records read when one is opened. ``new_run(...,
    resume=RUN)`` continues a stored run (its records first, new ones after)."""

    def __init__(self, path=None, limit: int = 200):
        from rramlab.protocols.store import RunStore

        self.store = RunStore(path)  # raises StoreError naming the path and the fix
        self.path = self.store.path
        self.limit = limit
        self._live: dict[int, Run] = {}
        self._opened: dict[int, Run] = {}

    def location(self) -> str:
        return str(self.path)

    def close(self) -> None:
        self.store.close()

    def new_run(self, protocol, settings, backend, total, extra=None, resume: int | None = None,
                metadata=None) -> Run:
        """``resume``: continue that stored run (it keeps the metadata it was started with)."""
        if resume is not None:
            old = self.get(resume)
            self.store.reopen_run(resume)
            run = Run(resume, protocol, dict(settings), dict(backend), old.started, total=total,
                      extra=dict(extra or {}), records=list(old.records), metadata=old.metadata)
            self._opened.pop(resume, None)
        else:
            stored = {**settings, "gui_inputs": dict(extra or {})} if extra else dict(settings)
            run_id = self.store.start_run(protocol, stored, backend.get("backend", "unknown"), backend,
                                          metadata=metadata)  # None: the command line's (using_metadata)
            metadata = self.store.run(run_id).metadata if metadata is None else metadata
            run = Run(run_id, protocol, dict(settings), dict(backend), _dt.datetime.now(), total=total,
                      extra=dict(extra or {}), metadata=metadata)
        self._live[run.run_id] = run
        return run

    def sink(self, run: Run) -> "StoreSink":
        return StoreSink(run, self.path)

    def set_summary(self, run: Run, summary: dict) -> None:
        from rramlab.protocols.store import json_ready

        run.summary = json_ready(summary)
        self.store.set_summary(run.run_id, run.summary)

    def update(self, run: Run) -> None:
        if run.status != RUNNING:
            error = None if run.status == DONE else (run.message or None)
            self.store.end_run(run.run_id, run.status, error)

    def runs(self) -> list[Run]:
        out = []
        for info in reversed(self.store.runs(limit=self.limit)):
            live = self._live.get(info.id)
            out.append(live if live is not None else self._past(info))
        return out

    def _past(self, info) -> Run:
        status = info.shown_status
        settings = dict(info.settings)
        extra = settings.pop("gui_inputs", {}) if isinstance(settings.get("gui_inputs"), dict) else {}
        return Run(info.id, info.protocol, settings, dict(info.backend_describe), _started(info.started_at),
                   status=status, message=info.error or "", total=info.records, extra=extra,
                   stored_count=info.records, past=True, summary=info.summary, metadata=info.metadata)

    def get(self, run_id: int) -> Run:
        if run_id in self._live:
            return self._live[run_id]
        if run_id in self._opened:
            return self._opened[run_id]
        from rramlab.protocols.store import StoreError

        try:
            info = self.store.run(run_id)
        except StoreError:
            raise KeyError(f"no run #{run_id} in the run store {self.path}") from None
        run = self._past(info)
        types = _record_types()
        run.records = [rebuild_record(r.type, r.data, types) for r in self.store.records(run_id)]
        run.stored_count = None
        if len(self._opened) >= 4:  # a few opened past runs stay in memory, not the whole store
            self._opened.pop(next(iter(self._opened)))
        self._opened[run_id] = run
        return run


class StoreSink(RecordSink):
    """Writes each record to the store on the worker thread (its own SQLite connection, opened
    there on the first record), then keeps it in the Run."""

    def __init__(self, run: Run, path):
        super().__init__(run)
        self.path = path
        self._store = None
        self._thread = None

    def add(self, record) -> None:
        from rramlab.protocols.store import RunStore

        if self._store is None:
            self._store = RunStore(self.path)
            self._thread = threading.get_ident()
        stored = record if dataclasses.is_dataclass(record) and not isinstance(record, type) else PlainRecord(record)
        self._store.append(self.run.run_id, stored)
        self.run.records.append(record)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def open_history(path=None) -> tuple[RunHistory, Exception | None]:
    """The store at ``path`` (default: the command line's), or this session's memory when it cannot
    be opened (with the reason, for a message)."""
    try:
        return StoreHistory(path), None
    except Exception as exc:  # noqa: BLE001 - a store that cannot be opened must not stop the window
        log.warning("run store not available: %s", exc)
        return SessionHistory(), exc
