"""What the window remembers between sessions, as small TOML files in the data folder (no Qt here).

The folder is the run store's default folder (``platformdirs.user_data_dir("rramlab")``, or that of
``$RRAMLAB_STORE``), so a test or a lab that points ``RRAMLAB_STORE`` elsewhere keeps the window's
state there too:

* ``gui_metadata.toml``: the run metadata fields (chip id, sample, operator, temperature, notes,
  tags) as last typed;
* ``gui_queue.toml``: the queue, one ``[[step]]`` table per step (panel, protocol, backend,
  settings, inputs, status, run id), in order.

Files are read with ``tomllib``; written by ``dumps`` below (the values the window keeps are
strings, numbers, booleans, lists and tables; a None is left out, and reads back as the field's
default, which for every None the window writes is None).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tomllib
from pathlib import Path

log = logging.getLogger(__name__)

METADATA_FILE = "gui_metadata.toml"
QUEUE_FILE = "gui_queue.toml"
QUEUE_FORMAT = "rramlab-gui-queue-1"


def state_dir() -> Path:
    """The folder of the window's files: that of the default run store (the data folder)."""
    from rramlab.protocols.store import default_store_path

    return default_store_path().parent


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (same escapes)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} to TOML")


def _key(k: str) -> str:
    k = str(k)
    return k if k and all(c.isalnum() or c in "_-" for c in k) else json.dumps(k)


def dumps(tables: dict, comment: str = "") -> str:
    """TOML text of ``{key: value}``: scalars first, then each list of dicts as ``[[key]]`` tables
    (their values inline), None values left out."""
    lines = [f"# {line}" for line in comment.splitlines()]
    arrays = {k: v for k, v in tables.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
    for k, v in tables.items():
        if k not in arrays and v is not None:
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, items in arrays.items():
        for item in items:
            lines.append("")
            lines.append(f"[[{_key(k)}]]")
            lines.extend(f"{_key(n)} = {_value(x)}" for n, x in item.items() if x is not None)
    return "\n".join(lines) + "\n"


def write_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a crash mid-write keeps the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_file(path: Path) -> dict:
    """A TOML file as a dict; ``{}`` when it does not exist. ValueError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not a TOML file the window wrote ({exc}): delete it or fix it") from None


# ----- run metadata -----

METADATA_FIELDS = ("chip_id", "sample", "operator", "temperature", "notes", "tags")


def load_metadata(folder: Path | None = None) -> dict[str, str]:
    """The metadata fields as last typed (text, as in the form); missing ones ''. A damaged file
    is logged and ignored (the fields start empty)."""
    try:
        data = read_file((folder or state_dir()) / METADATA_FILE).get("metadata", {})
    except ValueError as exc:
        log.warning("%s", exc)
        data = {}
    return {k: str(data.get(k, "")) for k in METADATA_FIELDS}


def save_metadata(fields: dict[str, str], folder: Path | None = None) -> Path:
    """Keep the metadata fields' text for the next window."""
    path = (folder or state_dir()) / METADATA_FILE
    table = {k: str(fields.get(k, "")) for k in METADATA_FIELDS}
    text = "# the run metadata fields of rramlab gui, as last typed (kept with every run it starts)\n[metadata]\n"
    write_file(path, text + "".join(f"{k} = {_value(v)}\n" for k, v in table.items()))
    return path


# ----- the queue -----

def load_queue(path: Path | None = None) -> list[dict]:
    """The steps of a queue file, as dicts (``[]`` when there is no file)."""
    path = path or state_dir() / QUEUE_FILE
    data = read_file(path)
    if data and data.get("format", QUEUE_FORMAT) != QUEUE_FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r} is not {QUEUE_FORMAT!r}: load a queue the "
                         "window saved")
    steps = data.get("step", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise ValueError(f"{path}: 'step' must be a list of [[step]] tables")
    return steps


def save_queue(steps: list[dict], path: Path | None = None) -> Path:
    path = path or state_dir() / QUEUE_FILE
    write_file(path, dumps({"format": QUEUE_FORMAT, "step": steps},
                           "the queue of rramlab gui: its steps run in order (panel, backend, settings, inputs)"))
    return path
