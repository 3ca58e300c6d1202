"""The runs of this session, behind one small interface a run store can take over.

The window talks to a ``RunHistory``: ``add(run)``, ``runs()``, ``get(run_id)``, ``update(run)``.
``SessionHistory`` keeps them in memory; a store-backed history (SQLite, when the run store lands)
implements the same four methods and the history panel does not change. No Qt here.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNNING, DONE, ABORTED, FAILED = "running", "done", "aborted", "failed"


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

    def title(self) -> str:
        return (f"#{self.run_id} {self.protocol} {self.started:%H:%M:%S} on {self.backend.get('backend', '?')}: "
                f"{len(self.records)}/{self.total} {self.status}")


class RunHistory(ABC):
    """Where the window keeps its runs. Ids are given by the history."""

    @abstractmethod
    def new_run(self, protocol: str, settings: dict, backend: dict, total: int, extra: dict | None = None) -> Run: ...

    @abstractmethod
    def update(self, run: Run) -> None:
        """The run's status or message changed (a store writes it; memory has nothing to do)."""

    @abstractmethod
    def runs(self) -> list[Run]: ...

    @abstractmethod
    def get(self, run_id: int) -> Run: ...


class SessionHistory(RunHistory):
    """Runs of this window's session, in memory."""

    def __init__(self):
        self._runs: dict[int, Run] = {}
        self._ids = itertools.count(1)

    def new_run(self, protocol, settings, backend, total, extra=None) -> Run:
        run = Run(next(self._ids), protocol, dict(settings), dict(backend), _dt.datetime.now(), total=total,
                  extra=dict(extra or {}))
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


def record_fields(records) -> list[str]:
    """Column names of a list of dataclass records (those of the first record)."""
    if not records:
        return []
    return [f.name for f in dataclasses.fields(records[0])]


def _cell(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value


def export_csv(run: Run, path) -> Path:
    """Write the run's records to ``path``: a commented provenance header, then one row per record
    with the record's own field names (SI units, as recorded)."""
    from rramlab import __version__

    path = Path(path)
    records = list(run.records)
    with open(path, "w", newline="") as fh:
        fh.write(f"# rramlab {__version__} run #{run.run_id} {run.protocol}, {run.status}, "
                 f"started {run.started.isoformat(timespec='seconds')}\n")
        fh.write(f"# backend: {run.backend}\n# settings: {run.settings}\n")
        writer = csv.writer(fh)
        names = record_fields(records)
        writer.writerow(names)
        for r in records:
            writer.writerow([_cell(getattr(r, n)) for n in names])
    return path


def export_npz(run: Run, path) -> Path:
    """Write the run to ``path`` (.npz): one array per record field (SI units, as recorded) and
    ``meta``, a JSON string with the run's protocol, status, settings, backend and inputs."""
    import json

    import numpy as np

    from rramlab import __version__

    path = Path(path)
    records = list(run.records)
    arrays = {n: np.asarray([getattr(r, n) for r in records]) for n in record_fields(records)}
    meta = {"rramlab": __version__, "run_id": run.run_id, "protocol": run.protocol, "status": run.status,
            "started": run.started.isoformat(timespec="seconds"), "settings": run.settings,
            "backend": run.backend, "inputs": run.extra, "records": len(records)}
    with open(path, "wb") as fh:
        np.savez_compressed(fh, meta=np.array(json.dumps(meta, default=str)), **arrays)
    return path
