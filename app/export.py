"""A stored run as a file, for ``rramlab runs export`` and the window alike: ``write_csv`` (one row
per record after ``#`` provenance lines), ``write_npz`` (one array per record type and field) and
``write_netcdf``: one NetCDF file with the run's metadata, provenance, every record as named,
unit-labelled arrays, and whole-array snapshots where the protocol has them.

Why NetCDF (and not HDF5): xarray and scipy are already rramlab's dependencies (``rramlab sweep``
writes NetCDF), and scipy's NetCDF3 writer needs no HDF5 library, so the format costs nothing new;
h5py would be a new compiled dependency. A NetCDF3 file opens in xarray, netCDF4-python, ncdump,
MATLAB's ``ncread``, Igor and Origin.

Layout of the file (``xarray.open_dataset(FILE)``):

* global attributes: ``run_id``, ``protocol``, ``status``, ``started_at``, ``ended_at``, ``backend``,
  ``software_version``, the run metadata (``chip_id``, ``sample``, ``operator``, ``temperature_k``,
  ``notes``; those not given are absent) and, as JSON text, ``tags``, ``settings``,
  ``backend_describe``, ``summary`` and ``provenance``;
* per record type T (e.g. ``IspvaPulse``) a dimension ``T`` (one entry per record, in the order
  taken) and variables ``T.seq``, ``T.at`` and ``T.FIELD`` for each field, with ``units``
  (``S``, ``V``, ``A``, ``s``, ``W``, ``K`` from the field's suffix, ``1`` otherwise). A field
  holding equal-shaped lists is an array with extra dimensions ``T.FIELD.dim1``...; a field of
  mixed or ragged values is JSON text (attribute ``encoding = "json"``); a missing number is NaN;
* ``snapshot.conductance_s`` (S), dimensions (snapshot, wordline, bitline): every cell read of a
  stage (and re-read round) as one map of the array, NaN where a stage did not read the cell,
  for records with ``stage``, ``wordline``, ``bitline`` and ``conductance_s`` (the transfer's
  ``CellRead``); coordinates ``snapshot_stage`` and ``snapshot_round`` say which.

``dataset_records(ds)`` turns a file back into the records (``(seq, type, data)``, as the store has
them); the round-trip test compares every value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rramlab import __version__
from rramlab.app.outputs import OutputError, RecordFile, describe_os_error, provenance_dict, provenance_lines
from rramlab.protocols.store import RunStore, StoredRecord, json_ready, records_table

FORMAT = "rramlab-run-1"
INT32 = np.iinfo(np.int32)

#: units by the end of a field's name (SI); ``_s`` is siemens except in a duration's name
_SUFFIX_UNITS = {"_v": "V", "_a": "A", "_w": "W", "_k": "K", "_j": "J", "_hz": "Hz"}
_DURATION_WORDS = ("width", "time", "duration", "wait", "elapsed", "period", "delay")


def field_units(name: str) -> str:
    """The SI unit of a record field by the lab's naming (conductance_s: S, pulse_width_s: s, pulse_v: V)."""
    low = name.lower()
    if low.endswith("_s"):
        return "s" if any(w in low for w in _DURATION_WORDS) else "S"
    for suffix, unit in _SUFFIX_UNITS.items():
        if low.endswith(suffix):
            return unit
    return "1"


def _export_command(run_id: int) -> list[str]:
    return ["rramlab", "runs", "export", str(run_id)]


#: ``export_run``'s formats by the file's suffix
EXPORT_SUFFIXES = {".nc": "netcdf", ".csv": "csv", ".npz": "npz"}


def export_run(store, run_id: int, path, format: str | None = None) -> Path:
    """Write stored run ``run_id`` to ``path`` as ``rramlab runs export`` and the window do: the same
    writers, so the files are equal. ``store``: a RunStore or the path of a store file. ``format``:
    "netcdf", "csv" or "npz"; by default from the suffix (.nc, .csv, .npz). Returns ``path``.
    StoreError if the run is not in the store; OutputError (one line, the fix) if the file cannot be
    written or the format is unknown.

    Example::

        from rramlab import export_run, open_run
        export_run("runs.sqlite", 42, "run42.nc")
        ds = open_run("run42.nc")          # an xarray Dataset: ds.attrs["chip_id"], ds["IspvaPulse.conductance_s"]
    """
    path = Path(path)
    kind = format or EXPORT_SUFFIXES.get(path.suffix.lower())
    writers = {"netcdf": write_netcdf, "csv": write_csv, "npz": write_npz}
    if kind not in writers:
        raise OutputError(f"cannot tell the export format of {path} (format={format!r}): give format= one of "
                          f"netcdf, csv, npz, or a file ending in {', '.join(EXPORT_SUFFIXES)}")
    if isinstance(store, RunStore):
        writers[kind](store, run_id, path)
    else:
        with RunStore(store) as opened:
            writers[kind](opened, run_id, path)
    return path


def run_provenance(info, command) -> dict:
    """The provenance of a stored run (arguments of ``provenance_lines``/``provenance_dict``): the
    version, start, backend and settings it was taken with; ``command`` is the export's."""
    return {"version": info.software_version, "command": command, "started": info.started_at,
            "backend": {"backend": info.backend, **info.backend_describe},
            "settings": info.settings,
            "extra": {"protocol": info.protocol, "run_id": info.run_id, "status": info.status,
                      "exported_by": f"rramlab {__version__}", **info.metadata.as_dict()}}


def write_csv(store: RunStore, run_id: int, path, command=None) -> int:
    """Run ``run_id`` as a CSV at ``path``: its ``#`` provenance lines, then seq, type and every field,
    one row per record (``pandas.read_csv(path, comment='#')``). Returns the number of rows."""
    info = store.run(run_id)
    command = command or _export_command(run_id)
    header, rows = records_table(store.records(run_id))
    out = RecordFile(path, "--csv")
    try:
        out.start(provenance_lines(**run_provenance(info, command)), header)
        for row in rows:
            out.write(row)
    finally:
        out.close()
    return len(rows)


def write_npz(store: RunStore, run_id: int, path, command=None) -> int:
    """Run ``run_id`` as an NPZ at ``path``: ``export_arrays`` and ``provenance`` (JSON text).
    Returns the number of record arrays."""
    info = store.run(run_id)
    command = command or _export_command(run_id)
    arrays = export_arrays(store.records(run_id))
    arrays["provenance"] = np.array(json.dumps(provenance_dict(**run_provenance(info, command)), default=str))
    try:
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError as exc:
        exc.filename = None
        raise OutputError(f"cannot write --npz {path}: {describe_os_error(exc)}") from None
    return len(arrays) - 1


def export_arrays(records) -> dict[str, np.ndarray]:
    """One array per record type and field, named ``Type.field``, plus ``Type.seq``."""
    by_type: dict[str, list] = {}
    for r in records:
        by_type.setdefault(r.type, []).append(r)
    out = {}
    for kind, rs in by_type.items():
        out[f"{kind}.seq"] = np.array([r.seq for r in rs])
        for k in rs[0].data:
            values = [r.data.get(k) for r in rs]
            if all(isinstance(v, (int, float, bool)) or v is None for v in values):
                out[f"{kind}.{k}"] = np.array([np.nan if v is None else v for v in values], dtype=float)
            else:
                out[f"{kind}.{k}"] = np.array([json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                                               for v in values])
    return out


def run_dataset(store: RunStore, run_id: int, command=None):
    """The xarray Dataset of run ``run_id`` (layout in the module docstring)."""
    import xarray as xr

    info = store.run(run_id)
    records = store.records(run_id)
    command = command or _export_command(run_id)
    attrs = {"format": FORMAT, "run_id": info.run_id, "protocol": info.protocol, "status": info.status,
             "started_at": info.started_at, "ended_at": info.ended_at or "", "backend": info.backend,
             "software_version": info.software_version, "error": info.error or ""}
    m = info.metadata
    for key in ("chip_id", "sample", "operator", "temperature_k", "notes"):
        if getattr(m, key) is not None:
            attrs[key] = getattr(m, key)
    attrs["tags"] = json.dumps(list(m.tags))
    attrs["settings"] = json.dumps(json_ready(info.settings))
    attrs["backend_describe"] = json.dumps(json_ready(info.backend_describe))
    attrs["summary"] = json.dumps(json_ready(info.summary))
    attrs["provenance"] = json.dumps(provenance_dict(**run_provenance(info, command)), default=str)
    variables: dict = {}
    by_type: dict[str, list[StoredRecord]] = {}
    for r in records:
        by_type.setdefault(r.type, []).append(r)
    for kind, rs in by_type.items():
        variables[f"{kind}.seq"] = xr.Variable((kind,), np.array([r.seq for r in rs], dtype=np.int32),
                                               {"long_name": f"order of the {kind} records in the run", "units": "1"})
        variables[f"{kind}.at"] = xr.Variable((kind,), np.array([r.at for r in rs], dtype=object),
                                              {"long_name": "when the record was stored (ISO 8601, UTC)"})
        fields: list[str] = []
        for r in rs:
            fields.extend(k for k in r.data if k not in fields)
        for name in fields:
            variables[f"{kind}.{name}"] = _field_variable(kind, name, [r.data.get(name) for r in rs])
    variables.update(_snapshots(records, info.backend_describe))
    return xr.Dataset(variables, attrs=attrs)


def _field_variable(kind: str, name: str, values: list):
    import xarray as xr

    attrs = {"units": field_units(name), "record_type": kind, "field": name}
    if all(isinstance(v, bool) for v in values):
        return xr.Variable((kind,), np.array(values, dtype=bool), {**attrs, "units": "1"})
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values) \
            and all(INT32.min <= v <= INT32.max for v in values):
        return xr.Variable((kind,), np.array(values, dtype=np.int32), attrs)
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values) \
            and not all(v is None for v in values):
        return xr.Variable((kind,), np.array([np.nan if v is None else v for v in values], dtype=float),
                           {**attrs, "missing": "NaN"})
    if all(isinstance(v, str) for v in values):
        return xr.Variable((kind,), np.array(values, dtype=object), {k: v for k, v in attrs.items() if k != "units"})
    if all(isinstance(v, list) for v in values):
        array = _uniform_array(values)
        if array is not None:
            dims = (kind, *[f"{kind}.{name}.dim{i}" for i in range(1, array.ndim)])
            return xr.Variable(dims, array, attrs)
    return xr.Variable((kind,), np.array([json.dumps(v) for v in values], dtype=object),
                       {**attrs, "encoding": "json"})


def _uniform_array(values: list):
    """Equal-shaped nested lists of numbers as one array (int32 when every number is a whole one), else None."""
    flat = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        else:
            flat.append(v)

    walk(values)
    if not flat:
        return None
    if all(isinstance(v, bool) for v in flat):
        dtype = bool
    elif all(isinstance(v, int) and not isinstance(v, bool) and INT32.min <= v <= INT32.max for v in flat):
        dtype = np.int32
    elif all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in flat):
        dtype = float
    else:
        return None
    try:
        array = np.array(values, dtype=dtype)
    except (ValueError, TypeError):  # ragged
        return None
    return array if array.dtype != object and array.size == len(flat) else None


def _snapshots(records: list[StoredRecord], describe: dict) -> dict:
    import xarray as xr

    reads = [r for r in records if all(k in r.data for k in ("stage", "wordline", "bitline", "conductance_s"))]
    if not reads:
        return {}
    keys: list[tuple[str, int]] = []
    for r in reads:
        key = (str(r.data["stage"]), int(r.data.get("round") or 0))
        if key not in keys:
            keys.append(key)
    geometry = describe.get("geometry") if isinstance(describe, dict) else None
    rows = max(int(r.data["wordline"]) for r in reads) + 1
    cols = max(int(r.data["bitline"]) for r in reads) + 1
    if isinstance(geometry, (list, tuple)) and len(geometry) == 2:
        rows, cols = max(rows, int(geometry[0])), max(cols, int(geometry[1]))
    maps = np.full((len(keys), rows, cols), np.nan)
    for r in reads:
        g = r.data["conductance_s"]
        k = keys.index((str(r.data["stage"]), int(r.data.get("round") or 0)))
        maps[k, int(r.data["wordline"]), int(r.data["bitline"])] = np.nan if g is None else g
    return {"snapshot.conductance_s": xr.Variable(("snapshot", "wordline", "bitline"), maps,
                                                  {"units": "S", "long_name": "conductance of every cell read in "
                                                   "the stage (last read wins), NaN: not read"}),
            "snapshot_stage": xr.Variable(("snapshot",), np.array([k[0] for k in keys], dtype=object)),
            "snapshot_round": xr.Variable(("snapshot",), np.array([k[1] for k in keys], dtype=np.int32))}


def write_netcdf(store: RunStore, run_id: int, path, command=None):
    """Write run ``run_id`` to the NetCDF file ``path`` (scipy's NetCDF3 writer); return the Dataset.
    OutputError (one line naming ``--netcdf`` and the fix) when the file cannot be written."""
    ds = run_dataset(store, run_id, command)
    try:
        ds.to_netcdf(Path(path), engine="scipy")
    except OSError as exc:
        exc.filename = None
        raise OutputError(f"cannot write --netcdf {path}: {describe_os_error(exc)}") from None
    return ds


def open_run(path):
    """A run file written by ``write_netcdf``, as an xarray Dataset (loaded; the file is closed)."""
    import xarray as xr

    with xr.open_dataset(Path(path), engine="scipy") as ds:
        return ds.load()


def dataset_records(ds) -> list[tuple[int, str, dict]]:
    """The records of a run Dataset, ``(seq, type, data)`` in the order taken, the fields as the store
    keeps them (NaN of a number back to None, JSON text back to its value)."""
    out = []
    kinds = [name[:-4] for name in ds.data_vars if name.endswith(".seq") and not name.startswith("snapshot")]
    for kind in kinds:
        fields = [name for name in ds.data_vars
                  if name.startswith(kind + ".") and ds[name].attrs.get("record_type") == kind]
        seqs = ds[f"{kind}.seq"].values.tolist()
        for i, seq in enumerate(seqs):
            data = {}
            for name in fields:
                v = ds[name].values[i]
                if ds[name].attrs.get("encoding") == "json":
                    v = json.loads(v)
                elif isinstance(v, np.ndarray):
                    v = _nan_to_none(v.tolist())
                else:
                    v = _nan_to_none(v.item() if hasattr(v, "item") else v)
                data[ds[name].attrs["field"]] = v
            out.append((int(seq), kind, data))
    return sorted(out, key=lambda r: r[0])


def _nan_to_none(v):
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
