"""The window's queue as a recipe (``protocols/recipe.py``, what ``rramlab run day.toml`` runs) and
a recipe as queue steps. No Qt here.

``recipe_text(steps)``: each step as a ``[[step]]`` table of the recipe format: ``protocol``, its
cell (``cell``), cells and targets (``cells``, ``targets_ns``), region or weights, and the panel's
settings by their field names (a transfer's ISPVA settings as its ``ispva`` table, retention's as
``program``). The backend is not part of a recipe (``rramlab run`` takes ``--bench``), nor are the
steps' statuses. Panels that are not recipe protocols (inference, power, the array read) are
refused, naming the step.

``steps_from_recipe(path, backend)``: the recipe's steps, loops expanded, as queue steps on
``backend``; a step over several cells (ISPVA) becomes one queue step per cell, as the ISPVA panel
programs one cell to one target. A wait step, or a step's ``csv``, has no queue equivalent yet:
refused (wait) or said in the returned notes (csv: export the run instead).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rramlab.app.gui import window_state
from rramlab.app.gui.queue_panel import QueueStep, _plain, choice_dict

#: recipe protocol -> the window's panel
PANELS = {"ispp": "ISPP", "iv": "I-V", "map": "Map", "ispva": "ISPVA", "endurance": "Endurance",
          "disturb": "Disturb", "retention": "Retention", "transfer": "Transfer"}
_ONE_CELL = ("ispp", "iv", "endurance", "disturb")


def _protocol(step: QueueStep, number: int) -> str:
    for protocol, panel in PANELS.items():
        if step.panel == panel:
            return protocol
    raise ValueError(f"queue step {number} ({step.panel}) is not a recipe protocol: a recipe runs "
                     f"{', '.join(PANELS)}; take it out of the queue to save the rest as a recipe")


def _only(settings: dict, name: str) -> dict:
    return dict(settings.get(name, {}))


def recipe_table(step: QueueStep, number: int, geometry=None) -> dict:
    """The ``[[step]]`` table of a queue step. ``geometry``: the step's array (for ISPVA's levels
    mode; default: its backend's)."""
    protocol = _protocol(step, number)
    inputs = step.inputs
    table: dict = {"protocol": protocol}
    names = list(step.settings)
    first = _only(step.settings, names[0]) if names else {}
    if protocol in _ONE_CELL:
        table["cell"] = list(inputs.get("cell", [0, 0]))
    elif protocol == "map":
        if inputs.get("region"):
            table["region"] = inputs["region"]
    elif protocol == "ispva":
        from rramlab.app.gui.specs import ispva_cells

        geometry = geometry or step.choice().checker().geometry
        cells, targets = ispva_cells({**inputs, "cell": tuple(inputs.get("cell", (0, 0)))}, geometry)
        table["cells"] = [list(c) for c in cells]
        table["targets_ns"] = [round(t * 1e9, 9) for t in targets]
    elif protocol == "retention":
        table["cells"] = [list(c) for c in inputs["cells"]]
        table["targets_ns"] = [round(t * 1e9, 9) for t in inputs["targets_s"]]
        first.pop("program", None)
        program = _only(step.settings, "IspvaSettings")
        if program:
            first["program"] = program
    elif protocol == "transfer":
        table["weights"] = str(inputs["weights_file"])
        ispva = _only(step.settings, "IspvaSettings")
        if ispva:
            first["ispva"] = ispva
    return {**table, **first}


def recipe_text(steps: list[QueueStep], name: str | None = None) -> str:
    """The queue as a recipe file's text (``rramlab run FILE --bench ...`` runs it)."""
    tables = [recipe_table(s, i + 1) for i, s in enumerate(steps)]
    if not tables:
        raise ValueError("the queue is empty: add steps before saving it as a recipe")
    return window_state.dumps({"name": name, "step": tables},
                              "a recipe written by rramlab gui from its queue: rramlab run FILE [--bench BENCH.toml]\n"
                              "(the backend of each queue step is not part of a recipe)")


def save_recipe(steps: list[QueueStep], path, name: str | None = None) -> Path:
    from rramlab.protocols.recipe import recipe_from_text

    text = recipe_text(steps, name)
    recipe_from_text(text, source=str(path), base=Path(path).parent)  # what rramlab run reads it as: checked
    path = Path(path)
    window_state.write_file(path, text)
    return path


def steps_from_recipe(path, backend) -> tuple[list[QueueStep], list[str]]:
    """The steps of the recipe at ``path`` (RecipeError naming its line if it is bad) as queue steps
    on ``backend`` (a backend choice), and notes on what the queue leaves out."""
    from rramlab.protocols.recipe import load_recipe
    from rramlab.protocols.settings import settings_dict

    recipe = load_recipe(path)
    out: list[QueueStep] = []
    notes: list[str] = []
    where = choice_dict(backend)
    for rs in recipe.steps:
        if rs.protocol == "wait":
            raise ValueError(f"{recipe.source} {rs.label}: a wait is not a queue step yet: run this recipe with "
                             f"rramlab run {recipe.source}, or take the wait out")
        panel = PANELS[rs.protocol]
        if rs.csv is not None:
            notes.append(f"{rs.label}: csv = {rs.csv} not written by the queue (export the run instead)")
        values = _plain(settings_dict(rs.settings))
        first = type(rs.settings).__name__

        def step(inputs: dict, settings: dict) -> QueueStep:
            return QueueStep(panel=panel, backend=dict(where), settings=settings, inputs=inputs, protocol=rs.protocol)

        if rs.protocol in _ONE_CELL:
            out.extend(step({"cell": list(c)}, {first: values}) for c in rs.cells)
        elif rs.protocol == "map":
            region = None
            if rs.region is not None:
                (w0, w1), (b0, b1) = rs.region
                region = f"{w0}:{w1},{b0}:{b1}"
            shape = list(backend.checker().geometry.shape)  # what the map panel's plot is drawn over
            out.append(step({"region": region, "array_shape": shape} if region else {"array_shape": shape},
                            {first: values}))
        elif rs.protocol == "ispva":
            out.extend(step({"cell": list(c), "mode": "single", "target_s": t}, {first: values})
                       for c, t in zip(rs.cells, rs.targets_s))
        elif rs.protocol == "retention":
            program = values.pop("program", None)
            settings = {first: values, **({"IspvaSettings": program} if program else {})}
            out.append(step({"cells": [list(c) for c in rs.cells], "targets_s": list(rs.targets_s)}, settings))
        elif rs.protocol == "transfer":
            settings = {first: values}
            if rs.ispva is not None:
                settings["IspvaSettings"] = _plain(dataclasses.asdict(rs.ispva))
            out.append(step({"weights_file": str(rs.weights)}, settings))
    return out, notes
