"""Monte-Carlo sweeps of the twin on Dask: ``rramlab sweep`` and ``rramlab.sweep(...)``.

A sweep is a grid of points, one value per axis (chip, variability sigmas, wire and contact
resistance, programming-error mode and sigma, pruning ratio, firing threshold); each point is one
fresh twin chip that runs the sweep's pipeline ("transfer": a weight transfer; "inference": the
transfer of a trained network's second layer, spiking inference on a few test images and the
power estimate) and returns a small summary (``OUTPUTS``). No chip state travels back.

* The point function (``point_result``) is pure: settings in, summary out. Its chip's random seed
  is derived from the sweep's seed and the point's coordinates (``point_seed``), so a point gives
  the same numbers whichever worker computes it and in whichever order, and adding a value to an
  axis leaves every other point as it was. BLAS runs on one thread inside a point, so the float
  sums are the same in a worker and in the calling process.
* Engine: Dask (dask.distributed). No scheduler given: a local cluster of one single-threaded
  worker process per core (its dashboard link is printed); ``scheduler="tcp://HOST:8786"``: an
  existing cluster (``dask scheduler`` / ``dask worker``); ``scheduler="serial"``: this process,
  no Dask at all.
* Each finished point is committed to a SQLite file next to the output (``OUT.points.sqlite``) the
  moment it arrives, so Ctrl-C, SIGTERM, SIGKILL or a crash keep every finished point and the same
  sweep run again computes only the missing ones. The NetCDF (``OUT``) is assembled from that file
  when every point is in, in grid order, so it does not depend on the order points arrived in.
* Everything is checked before the first point runs (axes, pipeline, scheduler address); a bad
  sweep is one line naming the problem and the fix (``SweepError``).

Units: SI everywhere (S, V, ohm, W); nS only in the report's axes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import sqlite3
import sys
import time
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from rramlab.drivers.interface import ArrayGeometry, RequestChecker, RequestError

__all__ = ["sweep", "SweepSpec", "SweepError", "AXES", "OUTPUTS", "PIPELINES", "load_spec", "spec_from_dict",
           "point_seed", "point_result", "PointStore", "assemble", "write_report", "yield_fraction"]


class SweepError(RequestError):
    """A sweep that cannot run as given (a bad axis, pipeline, scheduler or output): says what and how to fix it."""


@dataclass(frozen=True)
class Axis:
    """One sweepable setting: its unit, what a value must be, and its help."""

    unit: str
    help: str
    kind: type = float          # float, int or str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    exclusive_maximum: bool = False


def _max_wire():
    from rramlab.sim.array import MAX_CONTACT_RESISTANCE, MAX_WIRE_RESISTANCE

    return MAX_WIRE_RESISTANCE, MAX_CONTACT_RESISTANCE


#: every axis a sweep may have (name -> Axis), and the default of each axis a sweep does not name
AXES = {
    "chip": Axis("", "chip number: a fresh twin chip per value (its seed comes from the sweep seed and the point)",
                 int, minimum=0),
    "threshold_sigma_v": Axis("V", "device-to-device spread of each switch's threshold VT", minimum=0.0),
    "on_resistance_sigma": Axis("", "device-to-device spread of ln(RON)", minimum=0.0),
    "insulator_r0_sigma": Axis("", "device-to-device spread of ln(R0) of the insulator area", minimum=0.0),
    "wire_resistance_ohm": Axis("ohm", "wire resistance of one line segment", minimum=0.0),
    "contact_resistance_ohm": Axis("ohm", "contact resistance of each line (probe needle and pad)", minimum=0.0),
    "programming_error": Axis("", "where the programming error comes from", str, choices=("paper", "device")),
    "programming_error_sigma_s": Axis("S", "paper mode: sigma of the conductance error added to a programmed cell",
                                      minimum=0.0),
    "prune_ratio": Axis("", "inference: fraction of each layer's weights pruned before quantisation (0: QT)",
                        minimum=0.0, maximum=0.95),
    "activation_percentile": Axis("", "inference: percentile of the hidden activations taken as the "
                                      "integrate-and-fire (firing) threshold", minimum=50.0, maximum=100.0),
}
AXIS_DEFAULTS = {"chip": 0, "threshold_sigma_v": 0.02, "on_resistance_sigma": 0.10, "insulator_r0_sigma": 0.03,
                 "wire_resistance_ohm": 2.0, "contact_resistance_ohm": 10.0, "programming_error": "paper",
                 "programming_error_sigma_s": 1.06e-9, "prune_ratio": 0.0, "activation_percentile": 99.5}

#: what every point returns (name -> (unit, meaning)); NaN where the pipeline does not measure it
OUTPUTS = {
    "transfer_rmse_s": ("S", "RMSE of the programmed cells' conductance against their targets"),
    "transfer_within_2ns": ("", "fraction of programmed cells within +-2 nS of their target"),
    "out_of_reach_cells": ("", "cells left out of tolerance because their levels straddle the target"),
    "pulses_per_cell": ("", "programming pulses per programmed cell"),
    "accuracy": ("", "spiking inference accuracy on the array (inference pipeline)"),
    "power_w": ("W", "average array power during inference (paper eqn 3; inference pipeline)"),
}

PIPELINES = ("transfer", "inference")

#: settings of the pipeline table and their defaults (the [pipeline] table of a sweep file)
PIPELINE_DEFAULTS = {"name": "transfer", "scheme": "fast", "engine": "fast", "levels": None, "weights": None,
                     "level_spacing_s": 10e-9, "images_per_class": 2, "power_per_class": 1, "image_seed": 0,
                     "hidden": 24, "epochs": 30, "finetune_epochs": 5, "train_seed": 0, "wordlines": 24,
                     "bitlines": 24}

#: the spec's yield conditions (the [spec] table): name -> (output, sense)
SPEC_KEYS = {"min_accuracy": ("accuracy", ">="), "max_power_w": ("power_w", "<="),
             "max_transfer_rmse_s": ("transfer_rmse_s", "<="), "min_within_2ns": ("transfer_within_2ns", ">=")}

#: connect timeout (s) for an existing scheduler: a wrong address is refused this fast
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep: the axes (name -> tuple of values, in grid order), fixed settings, the
    pipeline, the yield spec and the sweep seed. ``fingerprint`` identifies it in the point file."""

    axes: dict
    fixed: dict
    pipeline: dict
    spec: dict = field(default_factory=dict)
    seed: int = 0
    source: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.axes else 1

    def points(self) -> list[dict]:
        """Every point's coordinates (axis -> value), in grid (C) order."""
        names = list(self.axes)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.axes.values())]

    def settings_of(self, coords: dict) -> dict:
        """Every axis's value at a point: its coordinates, then the fixed values, then the defaults."""
        return {**AXIS_DEFAULTS, **self.fixed, **coords}

    def payload(self) -> dict:
        """What a worker needs besides the coordinates (plain, picklable, small)."""
        return {"fixed": self.fixed, "pipeline": self.pipeline, "seed": self.seed}

    @property
    def fingerprint(self) -> str:
        doc = json.dumps({"axes": {k: list(v) for k, v in self.axes.items()}, **self.payload()}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]


# ----- reading and checking a sweep -----

def load_spec(path) -> SweepSpec:
    """A sweep file (TOML, see examples/sweep.toml) as a checked SweepSpec; SweepError if it is bad."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SweepError(f"cannot read sweep file {p}: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{p} is not valid TOML ({exc}): fix the file") from None
    return spec_from_dict(doc, base=p.parent, source=str(p))


def _number(axis: str, v, kind):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
        raise SweepError(f"axis {axis}: {v!r} is not a finite number: give numbers ({AXES[axis].unit or 'no unit'})")
    if kind is int:
        if float(v) != int(v):
            raise SweepError(f"axis {axis}: {v!r} is not a whole number")
        return int(v)
    return float(v)


def _axis_values(name: str, given, seed: int) -> tuple:
    """The values of one axis from a list, a range table or a random-draw table."""
    ax = AXES[name]
    if isinstance(given, list):
        values = given
    elif isinstance(given, dict):
        keys = set(given)
        if "count" in keys and keys <= {"count", "start"} and ax.kind is int:   # chips: {count = 50}
            count = _number(name, given["count"], int)
            start = _number(name, given.get("start", 0), int)
            values = list(range(start, start + count))
        elif keys == {"start", "stop", "num"}:
            num = _number(name, given["num"], int)
            if num < 1:
                raise SweepError(f"axis {name}: num = {num} gives no value: use num >= 1")
            values = np.linspace(_number(name, given["start"], float), _number(name, given["stop"], float),
                                 num).tolist()
            if ax.kind is int:
                values = [int(round(v)) for v in values]
        elif keys == {"random", "low", "high", "count"}:
            count = _number(name, given["count"], int)
            low, high = _number(name, given["low"], float), _number(name, given["high"], float)
            if given["random"] != "uniform" or ax.kind is not float:
                raise SweepError(f"axis {name}: random draws are 'uniform' on a numeric axis, got {given['random']!r}")
            if high < low:
                raise SweepError(f"axis {name}: high {high:g} is below low {low:g}")
            # drawn from the sweep seed and the axis name: the same file gives the same values
            rng = np.random.default_rng([seed, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)])
            values = sorted(rng.uniform(low, high, max(count, 0)).tolist())
        else:
            raise SweepError(f"axis {name}: give a list, {{start, stop, num}}, {{random = \"uniform\", low, high, "
                             f"count}}" + (" or {count[, start]}" if ax.kind is int else "") + f"; got {given!r}")
    else:
        values = [given]
    if len(values) == 0:
        raise SweepError(f"axis {name} is an empty list: give at least one value (or leave the axis out for its "
                         f"default {AXIS_DEFAULTS[name]!r})")
    out = [_check_value(name, v) for v in values]
    if len(set(out)) != len(out):
        raise SweepError(f"axis {name} repeats a value ({out}): give each value once")
    return tuple(out)


def _check_value(name: str, v):
    ax = AXES[name]
    if ax.kind is str:
        if v not in ax.choices:
            raise SweepError(f"axis {name}: {v!r} is unknown: use one of {', '.join(ax.choices)}")
        return v
    v = _number(name, v, ax.kind)
    unit = f" {ax.unit}" if ax.unit else ""
    if ax.minimum is not None and v < ax.minimum:
        what = "a spread cannot be negative" if "sigma" in name else f"the smallest allowed is {ax.minimum:g}{unit}"
        raise SweepError(f"axis {name}: {v:g}{unit} is below {ax.minimum:g}: {what}; give values >= {ax.minimum:g}")
    if ax.maximum is not None and v > ax.maximum:
        raise SweepError(f"axis {name}: {v:g}{unit} is above {ax.maximum:g}{unit}: give values <= {ax.maximum:g}")
    if name in ("wire_resistance_ohm", "contact_resistance_ohm"):
        wire_max, contact_max = _max_wire()
        top = wire_max if name == "wire_resistance_ohm" else contact_max
        if v > top:
            raise SweepError(f"axis {name}: {v:g} ohm is beyond the twin's limit of {top:g} ohm: give values <= {top:g}")
    return v


def spec_from_dict(doc: dict, base: Path | str | None = None, source: str = "") -> SweepSpec:
    """A checked SweepSpec from a dict shaped like the sweep file (``seed``, ``[axes]``,
    ``[pipeline]``, ``[spec]``). ``base``: folder a relative ``weights`` path is read from."""
    if not isinstance(doc, dict):
        raise SweepError("a sweep is a table with seed, [axes], [pipeline] and [spec]")
    unknown = set(doc) - {"seed", "axes", "pipeline", "spec"}
    if unknown:
        raise SweepError(f"unknown key(s) {', '.join(sorted(unknown))} in the sweep: use seed, axes, pipeline, spec")
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SweepError(f"seed must be a whole number >= 0, got {seed!r}")
    axes_doc = doc.get("axes", {})
    if not isinstance(axes_doc, dict) or not axes_doc:
        raise SweepError("the sweep names no axis: add an [axes] table, e.g. chip = {count = 10}")
    axes, fixed = {}, {}
    for name, given in axes_doc.items():
        if name not in AXES:
            raise SweepError(f"unknown axis {name!r}: use one of {', '.join(AXES)}")
        values = _axis_values(name, given, seed)
        if isinstance(given, (list, dict)):
            axes[name] = values
        else:
            fixed[name] = values[0]   # a single value: a fixed setting, not a dimension
    if not axes:
        raise SweepError("every axis has a single value: give at least one axis a list of values")
    pipeline = _check_pipeline(doc.get("pipeline", {}), base)
    spec = _check_yield_spec(doc.get("spec", {}), pipeline["name"])
    used = {**fixed, **axes}
    if pipeline["name"] == "transfer":
        for name in ("prune_ratio", "activation_percentile"):
            if name in used:
                raise SweepError(f"axis {name} does nothing in the transfer pipeline: use pipeline "
                                 "name = \"inference\" or drop the axis")
    return SweepSpec(axes, fixed, pipeline, spec, seed, source)


def _check_pipeline(doc, base) -> dict:
    from rramlab.protocols import transfer
    from rramlab.protocols.ispva import IspvaSettings
    from rramlab.protocols.weights import check_levels, load_weight_file

    if not isinstance(doc, dict):
        raise SweepError("[pipeline] must be a table, e.g. name = \"transfer\"")
    unknown = set(doc) - set(PIPELINE_DEFAULTS)
    if unknown:
        raise SweepError(f"unknown pipeline setting(s) {', '.join(sorted(unknown))}: use {', '.join(PIPELINE_DEFAULTS)}")
    p = {**PIPELINE_DEFAULTS, **doc}
    if p["name"] not in PIPELINES:
        raise SweepError(f"pipeline {p['name']!r} is unknown: use one of {', '.join(PIPELINES)}")
    if p["engine"] not in ("fast", "auto", "spice"):
        raise SweepError(f"pipeline engine {p['engine']!r} is unknown: use fast, auto or spice")
    try:
        tsettings = transfer.TransferSettings(scheme=p["scheme"])
        tsettings.validate()
    except RequestError as exc:
        raise SweepError(f"pipeline scheme: {exc}") from None
    for key in ("images_per_class", "power_per_class", "image_seed", "hidden", "epochs", "finetune_epochs",
                "train_seed"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key.endswith(("seed", "epochs")) else 1):
            raise SweepError(f"pipeline {key} must be a whole number >= "
                             f"{0 if key.endswith(('seed', 'epochs')) else 1}, got {v!r}")
    for key in ("wordlines", "bitlines"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 24:
            raise SweepError(f"pipeline {key} must be a whole number 1 to 24 (the twin's array), got {v!r}")
    if p["name"] == "inference" and p["hidden"] > p["wordlines"]:
        raise SweepError(f"pipeline hidden = {p['hidden']}: the array has {p['wordlines']} wordlines, "
                         f"use at most {p['wordlines']}")
    checker = RequestChecker(ArrayGeometry(p["wordlines"], p["bitlines"]))
    if p["name"] == "transfer":
        if p["levels"] is not None and p["weights"] is not None:
            raise SweepError("pipeline: give levels or weights, not both")
        if p["weights"] is not None:
            path = Path(p["weights"])
            if not path.is_absolute() and base is not None:
                path = Path(base) / path
            try:
                wf = load_weight_file(path)
            except (RequestError, OSError) as exc:
                raise SweepError(f"pipeline weights: {exc}") from None
            p["levels"], p["level_spacing_s"], p["weights"] = wf.levels.tolist(), float(wf.level_spacing_s), None
        if p["levels"] is None:
            raise SweepError("the transfer pipeline needs weights: levels = [[...]] or weights = \"FILE.npz\" in [pipeline]")
        try:
            levels = check_levels(np.asarray(p["levels"]), "pipeline levels")
            transfer.plan(tsettings, IspvaSettings(), levels, checker, float(p["level_spacing_s"]))
        except (RequestError, ValueError) as exc:
            raise SweepError(f"pipeline levels: {exc}") from None
        p["levels"] = levels.tolist()
    else:
        if p["levels"] is not None or p["weights"] is not None:
            raise SweepError("the inference pipeline programs its trained network: drop levels/weights from [pipeline]")
        if p["bitlines"] < 20:
            raise SweepError(f"pipeline bitlines = {p['bitlines']}: inference needs 20 (10 differential pairs)")
    p["level_spacing_s"] = float(p["level_spacing_s"])
    return p


def _check_yield_spec(doc, pipeline: str) -> dict:
    if not isinstance(doc, dict):
        raise SweepError("[spec] must be a table, e.g. min_accuracy = 0.9")
    out = {}
    for key, v in doc.items():
        if key not in SPEC_KEYS:
            raise SweepError(f"unknown spec {key!r}: use one of {', '.join(SPEC_KEYS)}")
        if pipeline == "transfer" and SPEC_KEYS[key][0] in ("accuracy", "power_w"):
            raise SweepError(f"spec {key} needs the inference pipeline: the transfer pipeline measures no "
                             f"{SPEC_KEYS[key][0]}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SweepError(f"spec {key} must be a finite number, got {v!r}")
        out[key] = float(v)
    return out


# ----- one point -----

def point_seed(sweep_seed: int, coords: dict) -> int:
    """The twin chip's seed at a point: a 128-bit hash of the sweep seed and the point's
    coordinates (name and value of every axis), independent of the grid and of the order points run in."""
    text = json.dumps({"seed": sweep_seed, "coords": {k: coords[k] for k in sorted(coords)}}, sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:32], 16)


@lru_cache(maxsize=4)
def _mnist():
    from rramlab.protocols.mnist import load_sample

    return load_sample()


@lru_cache(maxsize=16)
def _variant(hidden: int, epochs: int, finetune_epochs: int, train_seed: int, prune_ratio: float,
             percentile: float):
    """The network variant a point programs (cached per worker process: training is deterministic)."""
    import dataclasses

    from rramlab.protocols.network import NetworkSettings, build_variants, pruned_variant, spiking_threshold

    m = _mnist()
    ns = NetworkSettings(hidden=hidden, epochs=epochs, finetune_epochs=finetune_epochs, seed=train_seed)
    net = _network(ns)
    if prune_ratio > 0:
        fp = net.variants["fp32"]
        v = pruned_variant(fp.w1, fp.b1, fp.w2, prune_ratio, m.train, m.test, ns, name=f"pr{prune_ratio:g}")
    else:
        v = net.variants["qt"]
    return dataclasses.replace(v, threshold=spiking_threshold(m.train.images, v.w1, v.b1, percentile))


@lru_cache(maxsize=4)
def _network(ns):
    from rramlab.protocols.network import build_variants

    m = _mnist()
    return build_variants(m.train, m.test, ns)


def _single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (mlxtend's dependency)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def point_result(payload: dict, coords: dict) -> dict:
    """One point: a fresh twin chip with the point's settings runs the pipeline; returns the
    OUTPUTS (SI floats, NaN where not measured). Pure: the same payload and coordinates give the
    same numbers in any process."""
    with _single_blas_thread():
        return _point(payload, coords)


def _point(payload: dict, coords: dict) -> dict:
    from rramlab.protocols import inference, power, transfer
    from rramlab.protocols.ispva import IspvaSettings
    from rramlab.protocols.mnist import balanced_indices
    from rramlab.protocols.network import conductance_step
    from rramlab.sim.array import ArrayParameters
    from rramlab.sim.virtual_array import Variability, VirtualArray

    s = {**AXIS_DEFAULTS, **payload["fixed"], **coords}
    p = payload["pipeline"]
    chip = VirtualArray(ArrayGeometry(p["wordlines"], p["bitlines"]), seed=point_seed(payload["seed"], coords),
                        engine=p["engine"],
                        variability=Variability(s["threshold_sigma_v"], s["on_resistance_sigma"],
                                                s["insulator_r0_sigma"]),
                        array=ArrayParameters(wire_resistance=s["wire_resistance_ohm"],
                                              contact_resistance=s["contact_resistance_ohm"]),
                        programming_error=s["programming_error"],
                        programming_error_sigma=s["programming_error_sigma_s"])
    out = dict.fromkeys(OUTPUTS, float("nan"))
    tsettings = transfer.TransferSettings(scheme=p["scheme"])
    with chip:
        if p["name"] == "transfer":
            levels, spacing = np.asarray(p["levels"]), p["level_spacing_s"]
        else:
            variant = _variant(p["hidden"], p["epochs"], p["finetune_epochs"], p["train_seed"],
                               float(s["prune_ratio"]), float(s["activation_percentile"]))
            levels, spacing = variant.levels2, conductance_step(variant.bits)
        plan_, records, _ = transfer.write_levels(chip, levels, tsettings, IspvaSettings(), spacing)
        rep = transfer.summarise(plan_, records, 0.0)
        out.update(transfer_rmse_s=rep["rmse_s"], transfer_within_2ns=rep["within_2ns"],
                   out_of_reach_cells=float(rep["out_of_reach_cells"]), pulses_per_cell=rep["pulses_per_cell"])
        if p["name"] == "inference":
            test = _mnist().test
            isettings = inference.InferenceSettings()
            acc_idx = balanced_indices(test.labels, p["images_per_class"], p["image_seed"])
            ip = inference.plan(isettings, variant, test, acc_idx, chip)
            out["accuracy"] = inference.accuracy_of(list(inference.run(chip, ip)))
            g = power.measure_conductances(chip, range(variant.w1.shape[1]), ip.bitlines, isettings.spike_v)
            pow_idx = balanced_indices(test.labels, p["power_per_class"], p["image_seed"] + 1)
            pp = inference.plan(isettings, variant, test, pow_idx, chip)
            out["power_w"] = power.average(power.image_power(pp, g))
    return {k: float(v) for k, v in out.items()}


# ----- the point file -----

def _key(coords: dict) -> str:
    return json.dumps(coords, sort_keys=True)


class PointStore:
    """Every finished point of one sweep, committed as it arrives (SQLite, WAL): ``OUT.points.sqlite``.

    The file remembers the sweep's fingerprint; a different sweep with the same output is refused
    (SweepError) unless ``fresh`` starts the file anew."""

    def __init__(self, path, spec: SweepSpec, fresh: bool = False):
        self.path = Path(path)
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(str(self.path) + suffix)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a committed point survives a power cut too
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("CREATE TABLE IF NOT EXISTS points (key TEXT PRIMARY KEY, result TEXT NOT NULL, "
                            "session INTEGER NOT NULL, seconds REAL, cpu_seconds REAL, worker TEXT)")
            row = self.db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        except sqlite3.Error as exc:
            raise SweepError(f"cannot use the point file {self.path}: {exc}: check the folder, or use another --out") \
                from None
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (spec.fingerprint,))
                self.db.execute("INSERT INTO meta VALUES ('spec', ?)", (json.dumps(
                    {"axes": {k: list(v) for k, v in spec.axes.items()}, **spec.payload()}),))
        elif row[0] != spec.fingerprint:
            self.db.close()
            raise SweepError(f"{self.path} holds points of another sweep: use another --out, or --force to start "
                             "this sweep afresh (its points are then deleted)")
        last = self.db.execute("SELECT MAX(session) FROM points").fetchone()[0]
        self.session = (last or 0) + 1

    def done(self) -> dict[str, dict]:
        """key -> result of every finished point."""
        return {k: json.loads(r) for k, r in self.db.execute("SELECT key, result FROM points")}

    def add(self, coords: dict, result: dict, seconds: float | None = None, cpu_seconds: float | None = None,
            worker: str | None = None) -> None:
        """Commit one point (``seconds``: its wall time, ``cpu_seconds``: its CPU time, in the worker)."""
        with self.db:  # one transaction per point: committed before the next is looked at
            self.db.execute("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?)",
                            (_key(coords), json.dumps(result), self.session, seconds, cpu_seconds, worker))

    def sessions(self) -> dict[str, int]:
        """key -> the run (1, 2, ...) of the sweep that computed the point."""
        return dict(self.db.execute("SELECT key, session FROM points"))

    def close(self) -> None:
        self.db.close()


# ----- the Dataset -----

def assemble(spec: SweepSpec, results: dict[str, dict]):
    """The xarray Dataset of a sweep: one dimension per axis, one variable per OUTPUTS (NaN for a
    missing point), attributes that say what produced it (no timestamps, so the same sweep gives the
    same file)."""
    import xarray as xr

    from rramlab import __version__

    shape = spec.shape
    data = {k: np.full(shape, np.nan) for k in OUTPUTS}
    for idx, coords in zip(np.ndindex(*shape), spec.points()):
        r = results.get(_key(coords))
        if r is not None:
            for k in OUTPUTS:
                data[k][idx] = r[k]
    dims = list(spec.axes)
    coords = {}
    for name, values in spec.axes.items():
        ax = AXES[name]
        arr = np.array(values, dtype=np.int32 if ax.kind is int else (str if ax.kind is str else float))
        coords[name] = xr.Variable(name, arr, {"units": ax.unit, "long_name": ax.help})
    ds = xr.Dataset({k: xr.Variable(dims, v, {"units": OUTPUTS[k][0], "long_name": OUTPUTS[k][1]})
                     for k, v in data.items()}, coords=coords)
    ds.attrs.update(title="rramlab sweep", rramlab_version=__version__, pipeline=spec.pipeline["name"],
                    sweep_seed=spec.seed, fingerprint=spec.fingerprint,
                    fixed=json.dumps(spec.fixed, sort_keys=True), pipeline_settings=json.dumps(spec.pipeline,
                                                                                              sort_keys=True),
                    yield_spec=json.dumps(spec.spec, sort_keys=True),
                    seeds="each point's chip seed is sha256 of the sweep seed and the point's coordinates "
                          "(rramlab.app.sweep.point_seed)")
    return ds


def write_netcdf(ds, path) -> None:
    """NetCDF 3 (scipy): no extra library, and the same Dataset gives the same bytes."""
    tmp = Path(str(path) + ".part")
    ds.to_netcdf(tmp, engine="scipy", format="NETCDF3_64BIT")
    os.replace(tmp, path)


# ----- running -----

class _LocalCluster:
    """A local Dask cluster of ``workers`` single-threaded worker processes (1 BLAS thread each)."""

    def __init__(self, workers: int | None, say: Callable[[str], None]):
        import logging
        import warnings

        from dask.distributed import Client, LocalCluster

        n = workers or os.cpu_count() or 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "port 8787 is already in use": a free port is taken instead
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=":8787", silence_logs=logging.ERROR,
                                        env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                             "MKL_NUM_THREADS": "1"})
        self.client = Client(self.cluster)
        say(f"local Dask cluster: {n} worker process{'es' if n > 1 else ''}, dashboard {self.cluster.dashboard_link}")

    def close(self):
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            self.cluster.close()


class _Remote:
    def __init__(self, address: str, timeout: float, say):
        from dask.distributed import Client

        try:
            self.client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise SweepError(f"no Dask scheduler answers at {address} (within {timeout:g} s: {type(exc).__name__}): "
                             "start one with `dask scheduler` and `dask worker` (see the README), or leave "
                             "--scheduler out for a local cluster") from None
        n = len(self.client.scheduler_info().get("workers", {}))
        say(f"Dask scheduler {address}: {n} worker{'s' if n != 1 else ''}"
            + ("" if n else " (the points wait until a worker joins)"))

    def close(self):
        with contextlib.suppress(Exception):
            self.client.close()


def _check_scheduler(scheduler) -> None:
    if scheduler in (None, "serial"):
        return
    if not isinstance(scheduler, str) or not scheduler.startswith(("tcp://", "tls://", "inproc://", "ws://", "wss://")):
        raise SweepError(f"--scheduler {scheduler!r} is not a Dask scheduler address: give tcp://HOST:PORT "
                         "(e.g. tcp://127.0.0.1:8786), or leave it out for a local cluster")


def sweep(spec, out=None, *, scheduler: str | None = None, workers: int | None = None, force: bool = False,
          report=None, progress: bool = True, connect_timeout: float = CONNECT_TIMEOUT_S,
          say: Callable[[str], None] | None = None):
    """Run a sweep and return its xarray Dataset.

    spec: a SweepSpec, a dict shaped like the sweep file, or the path of a sweep TOML file.
    out: the NetCDF file to write (its points go to ``out + ".points.sqlite"`` as they finish, so the
        same call again computes only the missing points); None: nothing is written.
    scheduler: None, a local Dask cluster of ``workers`` processes (default one per core);
        "tcp://HOST:PORT", an existing Dask scheduler; "serial", this process without Dask.
    force: start afresh (delete the point file of another or the same sweep, overwrite ``out``).
    report: a folder for the PNGs (write_report). progress: a tqdm bar on stderr.
    Raises SweepError before any point runs if the sweep, the scheduler or an output is bad.
    """
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    if isinstance(spec, (str, os.PathLike)):
        spec = load_spec(spec)
    elif isinstance(spec, dict):
        spec = spec_from_dict(spec)
    elif not isinstance(spec, SweepSpec):
        raise SweepError(f"spec must be a sweep file, a dict or a SweepSpec, got {type(spec).__name__}")
    _check_scheduler(scheduler)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SweepError(f"workers must be a whole number >= 1, got {workers!r}")
    # an existing scheduler is asked first: an address that does not answer costs no file and no point
    engine = _Remote(scheduler, connect_timeout, say) if scheduler not in (None, "serial") else None
    store = None
    try:
        store = _open_store(spec, out, force, report)
        done = store.done() if store else {}
        todo = [c for c in spec.points() if _key(c) not in done]
        results = dict(done)
        grid = " x ".join(f"{len(v)} {k}" for k, v in spec.axes.items())
        if todo:
            if scheduler is None:
                engine = _LocalCluster(workers, say)
            say(f"sweep: {spec.size} points ({grid}), {spec.pipeline['name']} pipeline"
                + (f"; {len(done)} already in {store.path}, computing the {len(todo)} missing" if done else ""))
            _run_points(spec, todo, results, store, engine, progress, len(done))
        else:
            say(f"sweep: all {spec.size} points already in {store.path}")
    finally:
        if engine is not None:
            engine.close()
        if store:
            store.close()
    ds = assemble(spec, results)
    if out is not None:
        write_netcdf(ds, out)
    if report is not None:
        write_report(ds, spec, report)
    return ds


def _open_store(spec, out, force, report):
    if out is None:
        return None
    from rramlab.app.outputs import OutputError, OutputPath, check_output_paths

    out = Path(out)
    points = Path(str(out) + ".points.sqlite")
    same = False
    if points.exists() and not force:
        store = PointStore(points, spec)   # refuses another sweep's points
        same = True
        store.close()
    try:
        # a finished file of this very sweep is rewritten (identically); anything else needs --force
        check_output_paths([OutputPath("--out", str(out))], force=force or same)
    except OutputError as exc:
        raise SweepError(str(exc)) from None
    if report is not None:
        r = Path(report)
        if r.exists() and not r.is_dir():
            raise SweepError(f"--report {r} is a file: give a folder (it is created if missing)")
        if not r.parent.is_dir():
            raise SweepError(f"--report {r}: the folder {r.parent} does not exist: create it first")
        old = sorted(r.glob("*_vs_*.png")) if r.is_dir() else []
        if old and not (force or same):
            raise SweepError(f"--report {old[0]} already exists: use --force to overwrite it, or another folder")
    return PointStore(points, spec, fresh=force)


def _run_points(spec, todo, results, store, engine, progress, already):
    from tqdm import tqdm

    payload = spec.payload()
    bar = tqdm(total=spec.size, initial=already, unit="point", desc="sweep", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    try:
        if engine is None:
            for coords in todo:
                _keep(results, store, coords, *_timed_point(payload, coords))
                bar.update(1)
            return
        from dask.distributed import as_completed

        client = engine.client
        submitted = [client.submit(_timed_point, payload, coords, pure=False) for coords in todo]
        by_key = {f.key: coords for f, coords in zip(submitted, todo)}
        try:
            for f in as_completed(submitted):
                coords = by_key[f.key]
                try:
                    timed = f.result()
                except RequestError as exc:
                    raise SweepError(f"point {_key(coords)} failed: {exc}") from None
                _keep(results, store, coords, *timed)
                bar.update(1)
        finally:
            with contextlib.suppress(Exception):
                client.cancel(submitted)
    finally:
        bar.close()


def _keep(results, store, coords, r, seconds, cpu_seconds, worker):
    results[_key(coords)] = r
    if store is not None:
        store.add(coords, r, seconds, cpu_seconds, worker)


def _timed_point(payload, coords):
    import socket

    t, cpu = time.perf_counter(), time.process_time()
    r = point_result(payload, coords)
    return r, time.perf_counter() - t, time.process_time() - cpu, f"{socket.gethostname()}:{os.getpid()}"


# ----- the report -----

def yield_fraction(ds, spec: dict):
    """Per point, 1.0 where every condition of the yield spec holds, else 0.0 (NaN where unmeasured)."""
    ok = None
    for key, limit in spec.items():
        var, sense = SPEC_KEYS[key]
        x = ds[var]
        cond = (x >= limit) if sense == ">=" else (x <= limit)
        ok = cond if ok is None else (ok & cond)
    valid = ds[SPEC_KEYS[next(iter(spec))][0]].notnull()
    return ok.astype(float).where(valid)


_LABELS = {"transfer_rmse_s": "transfer RMSE", "transfer_within_2ns": "cells within +-2 nS",
           "pulses_per_cell": "pulses per programmed cell", "out_of_reach_cells": "cells out of reach",
           "accuracy": "inference accuracy", "power_w": "average array power"}


def write_report(ds, spec: SweepSpec, folder) -> list[Path]:
    """PNGs in ``folder``: each measured output against each non-chip axis (mean and spread over
    chips), and yield curves (fraction of chips meeting the stated spec) against each axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    axes = [a for a in ds.dims if a != "chip"] or ["chip"]
    measured = [k for k in OUTPUTS if bool(ds[k].notnull().any())]
    if spec.pipeline["name"] == "inference":
        shown = [k for k in ("accuracy", "power_w", "transfer_rmse_s") if k in measured]
    else:
        shown = [k for k in ("transfer_rmse_s", "transfer_within_2ns", "pulses_per_cell") if k in measured]
    yspec = spec.spec or ({"min_accuracy": 0.9} if spec.pipeline["name"] == "inference"
                          else {"min_within_2ns": 0.9})
    ok = yield_fraction(ds, yspec)
    scale = {"transfer_rmse_s": (1e9, "nS"), "power_w": (1e9, "nW"), "accuracy": (100, "%"),
             "transfer_within_2ns": (100, "%")}
    spec_text = ", ".join(f"{SPEC_KEYS[k][0]} {SPEC_KEYS[k][1]} {v:g}" for k, v in yspec.items())
    for axis in axes:
        others = [a for a in axes if a != axis]
        over_chips = "chip" in ds.dims and axis != "chip"
        for var in [*shown, "yield"]:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            x = ds[axis].values
            numeric = np.issubdtype(x.dtype, np.number)
            pos = x if numeric else np.arange(len(x))
            combos = list(itertools.product(*[range(ds.sizes[o]) for o in others]))
            for combo in combos[:6]:
                sel = dict(zip(others, combo))
                label = ", ".join(f"{o}={ds[o].values[i]}" for o, i in sel.items())
                if var == "yield":
                    y = ok.isel(sel)
                    y = (y.mean("chip") if over_chips else y) * 100
                    ax.plot(pos, y.values, "o-", label=label or None)
                else:
                    f, unit = scale.get(var, (1, OUTPUTS[var][0]))
                    y = ds[var].isel(sel) * f
                    if over_chips:
                        ax.errorbar(pos, y.mean("chip").values, yerr=y.std("chip").values, fmt="o-", capsize=3,
                                    label=label or None)
                    else:
                        ax.plot(pos, y.values, "o-", label=label or None)
            if not numeric:
                ax.set_xticks(pos, [str(v) for v in x])
            unit = AXES[axis].unit
            ax.set_xlabel(f"{axis}" + (f" ({unit})" if unit else ""))
            if var == "yield":
                ax.set_ylabel("chips meeting the spec (%)")
                ax.set_title(f"yield of {ds.sizes.get('chip', 1)} chips: {spec_text}", fontsize=9)
                ax.set_ylim(-5, 105)
            else:
                f, unit = scale.get(var, (1, OUTPUTS[var][0]))
                ax.set_ylabel(_LABELS.get(var, var) + (f" ({unit})" if unit else ""))
                ax.set_title(("mean +- std over chips" if over_chips else "per point"), fontsize=9)
            if len(combos) > 1:
                ax.legend(fontsize=6)
            fig.tight_layout()
            path = folder / f"{var}_vs_{axis}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written
