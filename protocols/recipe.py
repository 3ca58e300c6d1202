"""Experiment recipes: a day at the probe station as one TOML file (``rramlab run day.toml``).

A recipe lists steps; each step is a protocol with its settings over a cell, a list of cells or a
region, or a wait::

    name = "W3-D12 first look"

    [[step]]
    protocol = "map"                 # read the region at the read voltage
    region = "0:4,0:4"               # wordlines 0..3 by bitlines 0..3 (half-open, as --region)

    [[step]]
    protocol = "ispva"
    cells = [[0, 0], [0, 1]]         # or cells = "0:2,0:2", or cell = [3, 7]
    targets_ns = 40                  # one target for all, or one per cell (nS, the paper's 10..80)
    for = {targets_ns = [20, 50]}    # the step once per value (a loop); any setting, cell or targets_ns
    repeat = 2                       # and all of it twice
    max_pulses = 30                  # any other key is a setting of the protocol, by its field name

    [[step]]
    wait = "10min"                   # or seconds; outputs at 0 V and the matrix open (the twin: simulated)

    [[step]]
    protocol = "transfer"
    weights = "weights_24x10.npz"    # relative to the recipe's folder
    scheme = "fast"
    ispva = {max_pulses = 30}        # a protocol's nested settings as an inline table (retention: program)
    csv = "transfer_{repeat}.csv"    # the step's records as a CSV, from the current folder ({repeat},
                                     # {index}, {step} and loop keys fill in)

Settings are exactly the protocols' own declarations (``protocols/settings.py``): the key is the
field name (``set_max_v``, ``pulse_width_s``; SI units, as the field says), its type is checked by a
pydantic model built from the declaration, and its limits by the protocol's ``plan`` against the
instrument's safe operating area and wiring. The file's structure is a pydantic schema too
(unknown keys refused).

One planning pass (``plan_recipe``) builds and checks every step's plan, every file it writes and
reads, before anything is connected, and sums the bench-clock estimate. A bad step refuses the
whole recipe: ``RecipeError`` names the file, the line and the step.

``run_recipe`` runs the plan as one session of the run store (``sessions`` table); every step is a
run with the session id and its step index, with the run metadata (chip id, operator...). Stopped
(Ctrl-C, SIGTERM, ``should_stop``) the step's run is ``aborted`` with its records kept; run again
with ``resume=SESSION`` (``rramlab run day.toml --resume SESSION``) only the steps without a
finished run run: a transfer continues its own run (its verify reads find the cells already
programmed), every other protocol restarts the unfinished step as a new run (the stopped run stays
in the store, ``aborted`` or ``unfinished``, with every record it committed).

Units: SI (V, s, S) in code and settings; the recipe's ``targets_ns`` say nS in their name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from rramlab.drivers.interface import RequestChecker, RequestError

__all__ = ["RecipeError", "Recipe", "RecipeStep", "PlannedStep", "RecipePlan", "SessionResult", "PROTOCOLS",
           "load_recipe", "recipe_from_text", "plan_recipe", "run_recipe"]


class RecipeError(RequestError):
    """A recipe that cannot run as written: names the file, the line, the step, and the fix."""


# ----- the protocols a step may name -----

@dataclass(frozen=True)
class StepProtocol:
    """What a recipe needs of a protocol: its module, settings class, what it runs over ("cell",
    "cells" with targets, "region" or "weights"), and nested settings tables (key -> class)."""

    name: str
    module: str
    settings: str
    over: str
    nested: tuple[tuple[str, str], ...] = ()

    def load(self):
        import importlib

        mod = importlib.import_module(self.module)
        return mod, getattr(mod, self.settings)


#: protocol name in a recipe -> how a step runs it (``infer`` and ``power`` need a trained network
#: and a test set: not recipe steps yet)
PROTOCOLS: dict[str, StepProtocol] = {
    "ispp": StepProtocol("ispp", "rramlab.protocols.ispp", "IsppSettings", "cell"),
    "iv": StepProtocol("iv", "rramlab.protocols.iv", "IvSettings", "cell"),
    "map": StepProtocol("map", "rramlab.protocols.array_map", "MapSettings", "region"),
    "ispva": StepProtocol("ispva", "rramlab.protocols.ispva", "IspvaSettings", "cells"),
    "endurance": StepProtocol("endurance", "rramlab.protocols.endurance", "EnduranceSettings", "cell"),
    "disturb": StepProtocol("disturb", "rramlab.protocols.disturb", "DisturbSettings", "cell"),
    "retention": StepProtocol("retention", "rramlab.protocols.retention", "RetentionSettings", "cells",
                              (("program", "rramlab.protocols.ispva:IspvaSettings"),)),
    "transfer": StepProtocol("transfer", "rramlab.protocols.transfer", "TransferSettings", "weights",
                             (("ispva", "rramlab.protocols.ispva:IspvaSettings"),)),
}

#: step keys that are not settings
STEP_KEYS = ("protocol", "wait", "name", "cell", "cells", "region", "targets_ns", "weights", "repeat", "for", "csv")


# ----- the file's schema (pydantic) -----

class _StepModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False, populate_by_name=True)

    protocol: str | None = None
    wait: float | str | None = None
    name: str | None = None
    cell: list[int] | None = None
    cells: list[list[int]] | str | None = None
    region: str | None = None
    targets_ns: float | list[float] | None = None
    weights: str | None = None
    repeat: int = Field(1, ge=1, le=100_000)
    loop: dict[str, list] = Field(default_factory=dict, alias="for")
    csv: str | None = None


class _RecipeModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str | None = None
    notes: str | None = None
    step: list[dict] = Field(..., min_length=1)


_SETTINGS_MODELS: dict[type, type[BaseModel]] = {}


def settings_model(settings_class) -> type[BaseModel]:
    """A pydantic model of a settings class built from its declaration (``protocols/settings.py``):
    one field per declared setting, of its type, unknown keys refused. Bounds are the protocol's
    ``validate`` (they depend on the instrument's safe operating area)."""
    from rramlab.protocols.settings import declared

    model = _SETTINGS_MODELS.get(settings_class)
    if model is None:
        fields = {d.name: (d.type, d.default) for d in declared(settings_class)}
        model = create_model(f"{settings_class.__name__}Model",
                             __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False), **fields)
        _SETTINGS_MODELS[settings_class] = model
    return model


def _pydantic_text(exc: ValidationError, prefix: str = "") -> tuple[str, str | None]:
    """(one line, the first key it is about) of a pydantic error."""
    e = exc.errors()[0]
    loc = ".".join(str(x) for x in e["loc"] if not isinstance(x, int)) or "?"
    key = next((str(x) for x in e["loc"] if isinstance(x, str)), None)
    if e["type"] == "extra_forbidden":
        return f"unknown key {prefix}{loc}", key
    return f"{prefix}{loc} = {e.get('input')!r}: {e['msg'].lower()}", key


# ----- a parsed recipe -----

@dataclass(frozen=True)
class RecipeStep:
    """One step of a session, loops expanded: what ``index`` (0-based, the run's ``step_index``)
    runs. ``number`` is the ``[[step]]`` it comes from (1-based) at ``line`` of the file; ``loop``
    the loop values it takes (``repeat`` counts from 1). ``protocol`` is "wait" for a wait step
    (``wait_s`` seconds). ``targets_s`` in S, ``weights`` and ``csv`` as paths."""

    index: int
    number: int
    line: int
    protocol: str
    settings: Any = None
    cells: tuple[tuple[int, int], ...] = ()
    region: tuple[tuple[int, int], tuple[int, int]] | None = None
    targets_s: tuple[float, ...] = ()
    weights: Path | None = None
    wait_s: float = 0.0
    csv: Path | None = None
    name: str | None = None
    loop: tuple[tuple[str, Any], ...] = ()
    ispva: Any = None  # a transfer's IspvaSettings (its ``ispva`` table)

    @property
    def label(self) -> str:
        """e.g. "step 2 (line 9) ispva, repeat 2, targets_ns=50"."""
        return f"step {self.number} (line {self.line}) {self.what}"

    @property
    def what(self) -> str:
        """e.g. "ispva, repeat 2, targets_ns=50": the step's name or protocol and its loop values."""
        parts = [f"{k}={v}" for k, v in self.loop]
        return (self.name or self.protocol) + (", " + ", ".join(parts) if parts else "")


@dataclass(frozen=True)
class Recipe:
    """A parsed, expanded recipe: its steps (``RecipeStep``), the file and its text."""

    steps: tuple[RecipeStep, ...]
    source: str
    text: str
    name: str | None = None
    notes: str | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies the expanded steps (what --resume checks the recipe file against)."""
        from rramlab.protocols.settings import settings_dict

        doc = [[s.protocol, settings_dict(s.settings) if s.settings is not None else None, s.cells, s.region,
                s.targets_s, str(s.weights) if s.weights else None, s.wait_s,
                settings_dict(s.ispva) if s.ispva is not None else None] for s in self.steps]
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


_STEP_HEADER = re.compile(r"^\s*\[\[\s*step\s*\]\]")


def _step_lines(text: str) -> list[tuple[int, int]]:
    """(first line, last line) of each ``[[step]]`` table, 1-based."""
    lines = text.splitlines()
    starts = [i + 1 for i, line in enumerate(lines) if _STEP_HEADER.match(line)]
    return [(a, (starts[k + 1] - 1) if k + 1 < len(starts) else len(lines)) for k, a in enumerate(starts)]


def _key_line(text: str, span: tuple[int, int], key: str | None) -> int:
    """The line of ``key = ...`` within a step's lines (its header line when not found)."""
    if key:
        pattern = re.compile(rf"^\s*(\"{re.escape(key)}\"|{re.escape(key)})\s*=|[{{,]\s*{re.escape(key)}\s*=")
        for n, line in enumerate(text.splitlines()[span[0] - 1:span[1]], start=span[0]):
            if pattern.search(line.split("#")[0]):
                return n
    return span[0]


def load_recipe(path) -> Recipe:
    """A recipe file (TOML, see the module docstring) parsed and expanded; RecipeError if it is bad.
    A relative ``weights`` path is read from the recipe's folder; a ``csv`` is written from the
    current folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read the recipe {p}: {exc.strerror or exc}: check the path") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"the recipe {p} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}): "
                          "give a TOML recipe file, e.g. examples/day.toml") from None
    return recipe_from_text(text, source=str(p), base=p.parent)


def recipe_from_text(text: str, source: str = "recipe", base: Path | str | None = None) -> Recipe:
    """A recipe from its TOML text (``source`` names it in errors; ``base``: the folder relative
    paths are read from, default the current folder)."""
    base = Path(base) if base is not None else Path(".")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source} is not valid TOML ({exc}): fix the file") from None
    try:
        top = _RecipeModel.model_validate(doc)
    except ValidationError as exc:
        line, key = _pydantic_text(exc)
        if key == "step" and "step" not in doc:
            line = "has no [[step]]"
        raise RecipeError(f"{source}: {line}: a recipe has name, notes and [[step]] tables "
                          "(see examples/day.toml)") from None
    spans = _step_lines(text)
    if len(spans) != len(top.step):
        spans = [(1, len(text.splitlines()))] * len(top.step)  # steps written as an inline array: no line each
    steps: list[RecipeStep] = []
    names: dict[str, int] = {}
    for number, (raw, span) in enumerate(zip(top.step, spans), start=1):
        def fail(message: str, key: str | None = None) -> RecipeError:
            return RecipeError(f"{source} line {_key_line(text, span, key)}, step {number}: {message}")

        try:
            model = _StepModel.model_validate(raw)
        except ValidationError as exc:
            line, key = _pydantic_text(exc)
            raise fail(line, key) from None
        if model.name is not None:
            if model.name in names:  # the name is how a user finds the step in the session's output
                raise fail(f"name {model.name!r} is also step {names[model.name]}'s: give each step its own name",
                           "name")
            names[model.name] = number
        steps.extend(_expand(model, number, span[0], base, fail, start=len(steps)))
    return Recipe(tuple(steps), source, text, top.name, top.notes)


#: the longest wait step (s): 31 days. A longer one is a typo (a unit off) or a run better split in two:
#: stop the recipe after its steps and ``--resume`` the session when the time has come
MAX_WAIT_S = 31 * 86400.0


def _wait_seconds(value, fail) -> float:
    from rramlab.protocols.retention import parse_duration

    if isinstance(value, bool):
        raise fail(f"wait = {value!r}: give seconds (wait = 600) or a number and a unit (\"10min\", \"2h\")", "wait")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise fail(f"wait = {value!r} s: a wait is a time >= 0, e.g. wait = 600 or wait = \"10min\"", "wait")
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(value)
        except RequestError:
            raise fail(f"wait = {value!r}: give seconds (wait = 600) or a number and a unit (\"10min\", \"2h\")",
                       "wait") from None
    if seconds > MAX_WAIT_S:
        raise fail(f"wait = {value!r} is {seconds / 86400:.4g} days, more than a wait step's 31: check its unit, "
                   "or end the recipe there and --resume the session later", "wait")
    return seconds


def _expand(model: _StepModel, number: int, line: int, base: Path, fail, start: int) -> list[RecipeStep]:
    extra = dict(model.model_extra or {})
    if model.wait is not None:
        if model.protocol is not None:
            raise fail("a step is a protocol or a wait, not both: split it into two [[step]] tables", "wait")
        others = [k for k in ("cell", "cells", "region", "targets_ns", "weights", "csv") if getattr(model, k)]
        if extra or others or model.loop:
            bad = sorted([*extra, *others, *model.loop])
            raise fail(f"a wait step takes only wait, name and repeat, not {', '.join(bad)}", bad[0])
        seconds = _wait_seconds(model.wait, fail)
        return [RecipeStep(start + r, number, line, "wait", wait_s=seconds, name=model.name,
                           loop=(("repeat", r + 1),) if model.repeat > 1 else ())
                for r in range(model.repeat)]
    if model.protocol is None:
        raise fail(f"the step names no protocol: add protocol = \"...\" (one of {', '.join(PROTOCOLS)}) or "
                   f"wait = \"10min\"")
    spec = PROTOCOLS.get(model.protocol)
    if spec is None:
        hint = " (infer and power need a trained network: run them with their own commands)" \
            if model.protocol in ("infer", "power", "train", "reproduce") else ""
        raise fail(f"unknown protocol {model.protocol!r}: use one of {', '.join(PROTOCOLS)}{hint}", "protocol")
    module, settings_class = spec.load()
    loop_keys = list(model.loop)
    for key, values in model.loop.items():
        if not values:
            raise fail(f"for.{key} is an empty list: give at least one value", "for")
    combos = list(itertools.product(*model.loop.values())) if loop_keys else [()]
    out = []
    for r in range(model.repeat):
        for combo in combos:
            given = {**extra, **dict(zip(loop_keys, combo))}
            where = {k: getattr(model, k) for k in ("cell", "cells", "region", "targets_ns")}
            for k in ("cell", "cells", "region", "targets_ns"):
                if k in given:
                    where[k] = given.pop(k)
            loop = ((("repeat", r + 1),) if model.repeat > 1 else ()) + tuple(zip(loop_keys, combo))
            settings, nested = _settings(spec, settings_class, given, fail)
            cells, region, targets = _where(spec, where, fail)
            weights = None
            if spec.over == "weights":
                if model.weights is None:
                    raise fail("a transfer step needs weights = \"FILE.npz\" (e.g. the examples' weights_24x10.npz)")
                weights = (base / model.weights) if not Path(model.weights).is_absolute() else Path(model.weights)
            elif model.weights is not None:
                raise fail(f"weights is for a transfer step, not {spec.name}: drop it", "weights")
            csv = None
            if model.csv is not None:
                fill = {"index": start + len(out), "repeat": r + 1, "step": number,
                        **{k: v for k, v in zip(loop_keys, combo)}}
                try:
                    name = model.csv.format(**fill)
                except (KeyError, IndexError, ValueError) as exc:
                    raise fail(f"csv = {model.csv!r}: unknown placeholder {exc}: use {{index}}, {{repeat}}, "
                               f"{{step}} or a loop key ({', '.join(loop_keys) or 'none here'})", "csv") from None
                csv = Path(name)  # an output: from the current folder, as every --csv
            out.append(RecipeStep(start + len(out), number, line, spec.name, settings, cells, region, targets,
                                  weights, 0.0, csv, model.name, loop, nested.get("ispva")))
    return out


def _settings(spec: StepProtocol, settings_class, given: dict, fail):
    """(the protocol's settings instance, nested settings not part of it) from the step's keys,
    typed by the declarations' models. Retention's ``program`` is a field of its settings; a
    transfer's ``ispva`` is passed to its plan beside them."""
    import importlib

    nested = {}
    for key, where in spec.nested:
        mod, _, cls = where.partition(":")
        nested_class = getattr(importlib.import_module(mod), cls)
        table = given.pop(key, {})
        if not isinstance(table, dict):
            raise fail(f"{key} is a table of {cls} settings, e.g. {key} = {{max_pulses = 30}}", key)
        try:
            values = settings_model(nested_class).model_validate(table).model_dump(exclude_unset=True)
        except ValidationError as exc:
            line, k = _pydantic_text(exc, prefix=f"{key}.")
            raise fail(f"{line} ({spec.name} takes {key}.<a setting of {cls}>)", k) from None
        nested[key] = nested_class(**values)
    try:
        values = settings_model(settings_class).model_validate(given).model_dump(exclude_unset=True)
    except ValidationError as exc:
        line, key = _pydantic_text(exc)
        from rramlab.protocols.settings import declared

        names = [d.name for d in declared(settings_class)]
        raise fail(f"{line}: {spec.name} takes {', '.join(names)}" + (
            f" and {', '.join(k for k, _ in spec.nested)} (a table)" if spec.nested else ""), key) from None
    fields = {f.name for f in dataclasses.fields(settings_class)}
    inside = {k: v for k, v in nested.items() if k in fields}
    try:
        settings = settings_class(**values, **inside)
    except (TypeError, ValueError) as exc:
        raise fail(f"{spec.name} settings: {exc}") from None
    return settings, {k: v for k, v in nested.items() if k not in fields}


def _cell_pair(value, what: str, fail) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in value)):
        raise fail(f"{what} = {value!r}: give [WL, BL], two whole numbers from 0", what.split("[")[0])
    return int(value[0]), int(value[1])


def _where(spec: StepProtocol, where: dict, fail):
    """(cells, region, targets_s) of a step from its cell / cells / region / targets_ns."""
    from rramlab.protocols.array_map import parse_region

    given = [k for k in ("cell", "cells", "region") if where.get(k) is not None]
    if len(given) > 1:
        raise fail(f"give one of cell, cells and region, not {' and '.join(given)}", given[1])
    targets = where.get("targets_ns")
    if spec.over != "cells" and targets is not None:
        raise fail(f"targets_ns is for ispva and retention steps, not {spec.name}: drop it", "targets_ns")
    if spec.over == "weights":
        if given:
            raise fail(f"a transfer writes its weight file's region: drop {given[0]}", given[0])
        return (), None, ()
    if spec.over == "region":
        if where.get("cell") is not None:
            c = _cell_pair(where["cell"], "cell", fail)
            return (), ((c[0], c[0] + 1), (c[1], c[1] + 1)), ()
        text = where.get("region") if where.get("region") is not None else where.get("cells")
        if text is None:
            return (), None, ()   # the whole array
        if not isinstance(text, str):
            raise fail("a map reads a region: region = \"W0:W1,B0:B1\" (e.g. \"0:4,0:4\")", "cells")
        try:
            return (), parse_region(text), ()
        except RequestError as exc:
            raise fail(str(exc).replace("--region", "region"), "region") from None
    if where.get("region") is not None:
        raise fail(f"{spec.name} runs on cells: give cell = [WL, BL] or cells = [[WL, BL], ...] or "
                   "cells = \"W0:W1,B0:B1\"", "region")
    if spec.over == "cell":
        if where.get("cells") is not None:
            raise fail(f"{spec.name} runs on one cell: give cell = [WL, BL] (or loop over cells with "
                       "for = {cell = [[0, 0], [0, 1]]})", "cells")
        return ((_cell_pair(where["cell"], "cell", fail) if where.get("cell") is not None else (0, 0)),), None, ()
    # "cells": ispva and retention, with their targets
    raw = where.get("cells")
    if where.get("cell") is not None:
        cells = [_cell_pair(where["cell"], "cell", fail)]
    elif raw is None:
        raise fail(f"{spec.name} needs the cells to program: cells = [[WL, BL], ...], cells = \"0:2,0:4\" or "
                   "cell = [WL, BL]")
    elif isinstance(raw, str):
        try:
            (w0, w1), (b0, b1) = parse_region(raw)
        except RequestError as exc:
            raise fail(str(exc).replace("--region", "cells"), "cells") from None
        cells = [(w, b) for w in range(w0, w1) for b in range(b0, b1)]
        if not cells:
            raise fail(f"cells = {raw!r} holds no cell: give start < end", "cells")
    else:
        cells = [_cell_pair(c, "cells", fail) for c in raw]
    if targets is None:
        raise fail(f"{spec.name} needs targets_ns: one target conductance in nS for all cells, or one per cell")
    targets = [targets] if isinstance(targets, (int, float)) else list(targets)
    if len(targets) == 1:
        targets = targets * len(cells)
    if len(targets) != len(cells):
        raise fail(f"{len(cells)} cells but {len(targets)} targets_ns: give one target for all or one per cell",
                   "targets_ns")
    return tuple(cells), None, tuple(float(t) / 1e9 for t in targets)


# ----- planning -----

@dataclass(frozen=True)
class PlannedStep:
    """A step with its checked plan (None for a wait) and its bench-clock estimate (s)."""

    step: RecipeStep
    plan: Any
    estimate_s: float


@dataclass(frozen=True)
class RecipePlan:
    """Every step of a recipe planned and checked: ``estimate_s`` is the bench-clock estimate (s)."""

    recipe: Recipe
    steps: tuple[PlannedStep, ...]

    @property
    def estimate_s(self) -> float:
        return sum(s.estimate_s for s in self.steps)

    def summary(self) -> str:
        """"14 steps, about 3 h 10 min on the bench"."""
        from rramlab.app.cmd_stress import format_duration

        n = len(self.steps)
        return f"{n} step{'s' if n != 1 else ''}, about {format_duration(self.estimate_s)} on the bench"


#: "--width (pulse_width_s)" in a protocol's message: a recipe names the setting by its key alone
_FLAG_AND_FIELD = re.compile(r"--[\w-]+ \((\w+)\)")


def _step_error(recipe: Recipe, step: RecipeStep, message: str) -> RecipeError:
    """The error of a step's plan, at the line of the first key of the step the message names
    (``set_stop_v = 6 V is beyond...`` -> the ``set_stop_v`` line), else the step's header line."""
    message = _FLAG_AND_FIELD.sub(r"\1", message)
    line = step.line
    spans = _step_lines(recipe.text)
    if 0 < step.number <= len(spans) and spans[step.number - 1][0] == step.line:
        span = spans[step.number - 1]
        words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message)
        if "weight" in words:
            words.insert(0, "weights")  # a weight file's error: the weights line
        if "wordline" in words or "bitline" in words or "cell" in words:
            words[:0] = ["cell", "cells", "region"]  # a line or a cell of the array: where the step names it
        for word in words:
            found = _key_line(recipe.text, span, word)
            if found != span[0] or word in STEP_KEYS[1:2]:
                line = found
                break
    return RecipeError(f"{recipe.source} line {line}, step {step.number} ({step.what}): {message}")


def plan_step(step: RecipeStep, checker):
    """The protocol's own plan of one step against ``checker`` (an instrument or a RequestChecker):
    the safe operating area, the geometry and the wiring. Raises the protocol's error."""
    if step.protocol == "wait":
        return None
    mod, _ = PROTOCOLS[step.protocol].load()
    name = step.protocol
    if name in ("ispp", "endurance", "disturb"):
        return mod.plan(step.settings, step.cells[0], checker)
    if name == "iv":
        return mod.plan(step.settings, checker, step.cells[0])
    if name == "map":
        return mod.plan(step.settings, checker, step.region)
    if name in ("ispva", "retention"):
        return mod.plan(step.settings, list(step.cells), list(step.targets_s), checker)
    if name == "transfer":
        from rramlab.protocols.ispva import IspvaSettings
        from rramlab.protocols.weights import load_weight_file

        wf = load_weight_file(step.weights)
        return mod.plan(step.settings, step.ispva or IspvaSettings(), wf.levels, checker, wf.level_spacing_s)
    raise RecipeError(f"no planner for protocol {name!r}")  # PROTOCOLS and this function disagree


def estimate_s(step: RecipeStep, plan) -> float:
    """Bench-clock estimate (s) of a step, as the commands' own estimates (``app/cmd_stress``):
    pulses x period + reads x integration + bus + waits. ISPVA-programmed cells count about 4
    pulses and 4 reads each (what ISPVA takes on the twin)."""
    from rramlab.app.cmd_stress import bench_estimate_s

    s, name = step.settings, step.protocol
    if name == "wait":
        return step.wait_s
    if name == "ispp":
        return bench_estimate_s(plan.total_pulses, plan.total_pulses, s.pulse_width_s)
    if name == "iv":
        return bench_estimate_s(0, len(plan.voltages), 0.0)
    if name == "map":
        return bench_estimate_s(0, len(plan.cells), 0.0)
    if name == "ispva":
        return bench_estimate_s(4 * len(plan.cells), 4 * len(plan.cells), s.pulse_width_s)
    if name == "endurance":
        return bench_estimate_s(2 * s.cycles, 2 * plan.reads(), s.pulse_width_s)
    if name == "disturb":
        n_watch = 5 if s.neighbours else 0
        return bench_estimate_s(s.pulses if s.neighbours else 0, s.reads + 1 + n_watch * 50, s.pulse_width_s)
    if name == "retention":
        n = len(plan.cells)
        return bench_estimate_s(4 * n, 4 * n + n * len(plan.times_s), s.program.pulse_width_s,
                                waits_s=plan.times_s[-1] if plan.times_s else 0.0)
    if name == "transfer":
        from rramlab.protocols.weights import HRS

        programmed = sum(1 for c in plan.cells if plan.target(c) != HRS)
        return bench_estimate_s(4 * programmed, 4 * programmed + len(plan.cells) * plan.settings.final_rounds,
                                plan.ispva.pulse_width_s)
    return 0.0


def plan_recipe(recipe: Recipe, checker=None, *, force: bool = False, resume_files: Sequence[Path] = (),
                limits_from=None) -> RecipePlan:
    """Plan and check every step before anything is connected: each protocol's ``plan`` against
    ``checker`` (a bench file's ``checker()``, an instrument, or None: the twin's 24 x 24 array and
    the device's safe operating area), weight files read, CSV files (an existing one refused unless
    ``force``, or it belongs to a finished step of the resumed session: ``resume_files``; two steps
    writing one file refused). Raises RecipeError naming the line of the first bad step."""
    from rramlab.app.outputs import OutputError, OutputPath, check_output_paths
    from rramlab.drivers.interface import RramlabError

    checker = checker or RequestChecker()
    planned = []
    seen: dict[Path, RecipeStep] = {}
    allowed = {Path(p).resolve() for p in resume_files}
    for step in recipe.steps:
        try:
            p = plan_step(step, checker)
        except (RramlabError, ValueError) as exc:
            raise _step_error(recipe, step, str(exc)) from None
        if step.csv is not None:
            key = step.csv.resolve()
            if key in seen:
                raise _step_error(recipe, step, f"csv {step.csv} is also written by {seen[key].label}: give each "
                                                "step its own file (e.g. csv = \"map_{index}.csv\")")
            seen[key] = step
            try:
                check_output_paths([OutputPath("csv", str(step.csv))], force=force or key in allowed)
            except OutputError as exc:
                raise _step_error(recipe, step, str(exc)) from None
        planned.append(PlannedStep(step, p, estimate_s(step, p)))
    return RecipePlan(recipe, tuple(planned))


# ----- running -----

@dataclass(frozen=True)
class SessionResult:
    """What ``run_recipe`` returns: the session id, the store, the run id of every step that ran now
    (index -> run id), the steps skipped as finished before (``--resume``)."""

    session_id: int
    store_path: Path
    runs: dict
    skipped: tuple[int, ...]
    status: str


class RecipeStopped(KeyboardInterrupt):
    """``should_stop`` said stop: the step's run is aborted like on Ctrl-C."""


def claim_resume(store, session_id: int, recipe: Recipe):
    """Claim session ``session_id`` of ``store`` (an open RunStore) for this process to continue
    ``recipe`` (``RunStore.claim_session``: one SQLite transaction, so two resumes at the same time
    cannot both continue it); the session's row as it was. RecipeError (one line) for a session
    that ran another recipe, one already finished, or one another live process holds. A session
    this process already claimed is returned again (``rramlab run --resume`` claims it before it
    opens the bench, then ``run_recipe`` claims it again)."""
    from rramlab.protocols.store import StoreError

    try:
        info = store.session(session_id)
        if info.fingerprint != recipe.fingerprint:  # fixed when the session started: no race here
            raise RecipeError(f"session {session_id} ran another recipe ({info.recipe}, {info.steps} steps) than "
                              f"{recipe.source} ({len(recipe.steps)} steps, or the same steps with other "
                              "settings): resume it with the file it started with, or start a new session")
        return store.claim_session(session_id, recipe.fingerprint)
    except StoreError as exc:
        raise RecipeError(str(exc)) from None


def run_recipe(recipe_plan: RecipePlan, instrument, store=None, *, resume: int | None = None, metadata=None,
               should_stop: Callable[[], bool] | None = None, say: Callable[[str], None] | None = None,
               on_record: Callable[[RecipeStep, Any], None] | None = None, save_chip=None,
               command: Sequence[str] | None = None,
               on_session: Callable[[int], None] | None = None) -> SessionResult:
    """Run a planned recipe on ``instrument`` as one session of the run store.

    ``store``: a path, an open RunStore or None (the command line's default store). ``resume``: a
    session id to continue: its recipe must plan to the same steps (``Recipe.fingerprint``); the
    steps it finished are skipped. ``metadata``: a RunMetadata on every step's run (None: that of the
    enclosing ``using_metadata``, the command line's flags; resuming with none, the session's own).
    ``should_stop()`` is polled between pulses and steps (stopping marks the step's run and the
    session aborted and raises KeyboardInterrupt, as Ctrl-C does); a ``RunControl``
    (``protocols/control.py``) as ``should_stop`` pauses the session at a checkpoint too.
    ``on_record(step, record)`` after each record is stored; ``on_session(session_id)`` once the
    session is in the store, before its first step. ``save_chip``: a path the twin's chip is
    saved to after every finished step (so a resume with the saved chip continues on the same
    cells). Every step is re-planned against ``instrument`` just before it runs.

    Example::

        from rramlab import VirtualArray, load_recipe, plan_recipe, run_recipe

        recipe = load_recipe("examples/day.toml")
        p = plan_recipe(recipe)                         # RecipeError: nothing runs
        print(p.summary())                              # "5 steps, about 10 min 1 s on the bench"
        with VirtualArray(seed=1, engine="fast") as chip:
            done = run_recipe(p, chip, "runs.sqlite")
        print(done.session_id, done.runs)               # step index -> run id
    """
    from rramlab.protocols.store import _DEFAULT_METADATA, RunMetadata, RunStore, interrupted_text, \
        record_run, using_session

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    recipe = recipe_plan.recipe
    metadata = _DEFAULT_METADATA.get() if metadata is None else metadata
    own = not isinstance(store, RunStore)
    st = RunStore(store) if own else store
    session_id = None
    try:
        if resume is not None:
            info = claim_resume(st, resume, recipe)  # atomic: a second resume of the session stops here
            done = st.finished_steps(resume)
            session_id = resume
            stored = (info.metadata or {}).get("metadata")
            if metadata == RunMetadata() and stored:  # none given again: the session's own
                metadata = RunMetadata(**{**stored, "tags": tuple(stored.get("tags") or ())})
        else:
            session_id = st.start_session(recipe.source, recipe.text, recipe.fingerprint, len(recipe.steps),
                                          {"name": recipe.name, "notes": recipe.notes,
                                           "metadata": metadata.as_dict()})
            done = set()
        if on_session is not None:
            on_session(session_id)
        earlier = {r.step_index: r for r in st.session_runs(session_id)} if resume is not None else {}
        runs: dict[int, int] = {}
        skipped = []
        stop = should_stop or (lambda: False)
        try:
            for ps in recipe_plan.steps:
                step = ps.step
                if step.index in done:
                    skipped.append(step.index)
                    continue
                if stop():
                    raise RecipeStopped("should_stop")
                say(f"session {session_id}: {step.label} ({step.index + 1} of {len(recipe.steps)})")
                if step.protocol == "wait":
                    _wait(instrument, step.wait_s, stop)
                    st.finish_wait(session_id, step.index)
                    continue
                again = earlier.get(step.index)
                resume_run = None
                if again is not None and step.protocol == "transfer":
                    resume_run = again.run_id
                    say(f"  continuing run {resume_run} of this step (a transfer re-reads its cells and "
                        "programs those not yet within tolerance)")
                elif again is not None:
                    say(f"  run {again.run_id} of this step did not finish ({again.shown_status}, "
                        f"{again.records} records kept): {step.protocol} has no checkpoint, so the step "
                        "starts again as a new run")
                plan = plan_step(step, instrument)  # and the backend's own checks, before its first pulse
                mod, _ = PROTOCOLS[step.protocol].load()
                settings = mod.run_settings(plan, str(step.weights)) if step.protocol == "transfer" else plan.settings
                with using_session(session_id, step.index), \
                        record_run(st, step.protocol, settings, instrument, resume=resume_run,
                                   metadata=metadata) as rec:
                    runs[step.index] = rec.run_id
                    for record in mod.run(instrument, plan, should_stop=stop):
                        rec.add(record)
                        if on_record is not None:
                            on_record(step, record)
                    if stop():
                        raise RecipeStopped("should_stop")
                if save_chip is not None and hasattr(instrument, "save_chip"):
                    instrument.save_chip(save_chip)
                if step.csv is not None:
                    from rramlab.app.export import write_csv

                    write_csv(st, rec.run_id, step.csv, list(command or ["rramlab", "run", recipe.source]))
        except KeyboardInterrupt as exc:
            _make_safe(instrument)  # at once, not only when the caller's with-block ends
            with contextlib.suppress(Exception):
                st.end_session(session_id, "aborted", interrupted_text(exc))
            raise
        except BaseException as exc:
            _make_safe(instrument)
            with contextlib.suppress(Exception):
                st.end_session(session_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        st.end_session(session_id, "finished")
        return SessionResult(session_id, st.path, runs, tuple(skipped), "finished")
    finally:
        if own:
            st.close()


def _make_safe(instrument) -> None:
    """0 V, outputs off, matrix open after a stop or an error; a failure of the safe-state sequence
    itself is left for the caller's context manager (and ``outputs_safe`` says so). The seam holds
    signals back while the sequence runs; one delivered after it (a second Ctrl-C) is the stop
    already under way."""
    reset = getattr(instrument, "reset_outputs", None)
    if callable(reset):
        with contextlib.suppress(Exception, KeyboardInterrupt):
            reset()


def _wait(instrument, seconds: float, stop: Callable[[], bool]) -> None:
    """A wait step: the twin's simulated clock moves on; a bench rests with every output at 0 V and
    the matrix open (its safe state), polling ``stop``."""
    from rramlab.protocols.retention import sleep_wait

    if seconds <= 0:
        return
    if hasattr(instrument, "advance_time"):
        instrument.advance_time(seconds)
        return
    instrument.reset_outputs()
    virtual = getattr(instrument, "virtual_bench", None)
    if virtual is not None:  # the virtual bench's chip: time passes in the simulation, outputs stay safe
        virtual.array.advance_time(seconds)
        return
    if not sleep_wait(seconds, stop):
        raise RecipeStopped("should_stop")
