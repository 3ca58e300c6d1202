"""The window's CSV, NPZ and NetCDF export: ``app/export.py``, the code of ``rramlab runs export``.

A run of the run store is written from the store, as ``rramlab runs export RUN`` writes it; the
files differ only in the provenance's ``command`` (which names the window). A run kept in this
session's memory (no run store could be opened) is first copied into a temporary run store, then
written by the same code (its start time is then the copy's). No Qt here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path

from rramlab.app import export
from rramlab.app.gui.history import DONE, RUNNING, PlainRecord, Run, RunHistory, StoreHistory

FORMATS = ("csv", "npz", "netcdf")


def export_command(run_id: int, fmt: str, path) -> list[str]:
    """The provenance's command of a file the window wrote: what it did, and the command line that
    writes the same file."""
    return ["rramlab", "gui:", "export", "of", "run", str(run_id), "(as", "rramlab", "runs", "export", str(run_id),
            f"--{fmt}", f"{path})"]


@contextlib.contextmanager
def _stored(history: RunHistory, run: Run):
    """(store, run id) holding the run: the history's own store, or a temporary copy."""
    if isinstance(history, StoreHistory):
        yield history.store, run.run_id
        return
    from rramlab.protocols.store import RunStore

    with tempfile.TemporaryDirectory(prefix="rramlab-export-") as tmp:
        store = RunStore(Path(tmp) / "export.sqlite")
        try:
            describe = dict(run.backend)
            run_id = store.start_run(run.protocol, dict(run.settings), describe.get("backend", "unknown"), describe,
                                     metadata=run.metadata)
            for record in list(run.records):
                keep = record if dataclasses.is_dataclass(record) and not isinstance(record, type) \
                    else PlainRecord(record)
                store.append(run_id, keep)
            if run.status != RUNNING:
                store.end_run(run_id, run.status, None if run.status == DONE else (run.message or None))
            yield store, run_id
        finally:
            store.close()


def export_run(history: RunHistory, run: Run, path, fmt: str) -> int:
    """Write ``run`` to ``path`` as ``fmt`` (csv, npz or netcdf) with ``app/export.py``; returns the
    number of records written."""
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is unknown: choose one of {', '.join(FORMATS)}")
    command = export_command(run.run_id, fmt, path)
    with _stored(history, run) as (store, run_id):
        count = store.run(run_id).records
        if fmt == "csv":
            export.write_csv(store, run_id, str(path), command)
        elif fmt == "npz":
            export.write_npz(store, run_id, str(path), command)
        else:
            export.write_netcdf(store, run_id, str(path), command)
    return count
