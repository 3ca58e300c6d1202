"""Records to plain rows and tables.

Every protocol yields frozen dataclasses (``IsppRecord``, ``IspvaPulse``, ``IspvaResult``,
``CellRead``, ...), so ``dataclasses.asdict(record)`` always works. These helpers turn a list of
records, of one type or mixed, into rows with a ``type`` column, and into a pandas DataFrame in one
call. Records read back from the run store (``RunStore.records``, ``StoredRecord``) give the same
columns plus ``run_id`` and ``seq``, so a table built live and one built from the store line up.

Values keep the records' SI units (V, A, s, S).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from rramlab.drivers.interface import RequestError

__all__ = ["record_dicts", "records_frame"]


def _row(record) -> dict[str, Any]:
    # StoredRecord (from the run store) carries its fields as JSON in ``data``
    if type(record).__name__ == "StoredRecord" and hasattr(record, "data"):
        return {"run_id": record.run_id, "seq": record.seq, "type": record.type, **record.data}
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {"type": type(record).__name__, **dataclasses.asdict(record)}
    raise RequestError(f"a record is a protocol's dataclass or a StoredRecord, got {type(record).__name__}: "
                       "pass the objects a protocol's run() yields or RunStore.records() returns")


def record_dicts(records: Iterable, type: str | None = None) -> list[dict[str, Any]]:
    """One dict per record: ``type`` (the record class's name) then its fields, SI units.

    ``type``: keep only records of that class name (e.g. ``"IspvaResult"``). Accepts protocol
    records and ``StoredRecord`` rows from ``RunStore.records`` (which add ``run_id`` and ``seq``).
    Raises RequestError for an object that is neither.

    Example::

        rows = record_dicts(ispva.run(chip, plan), type="IspvaResult")
        rows[0]["conductance_s"]      # siemens
    """
    rows = [_row(r) for r in records]
    if type is not None:
        rows = [r for r in rows if r["type"] == type]
    return rows


def records_frame(records: Iterable, type: str | None = None):
    """A pandas DataFrame with one row per record (columns as ``record_dicts``; a field a record type
    lacks is NaN). ``type`` keeps one record class. pandas is imported only here; without it this
    raises ImportError saying how to install it.

    Example::

        df = records_frame(records, type="IspvaResult")
        df.groupby("target_s")["error_s"].std()      # siemens
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("records_frame needs pandas, which is not installed: `pip install pandas` "
                          "(or use record_dicts, which needs nothing)") from None
    return pd.DataFrame.from_records(record_dicts(records, type))
