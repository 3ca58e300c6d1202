"""The paper's experiment end to end, on instruments the caller provides (the twin, usually).

``reproduce(mnist, new_array, new_device, settings)``: trains the network (FP32, QT, QT & PR),
writes each quantised second layer into a fresh array (``new_array()``) with the weight transfer
(``protocols/transfer.py``, the scheme and ISPVA settings the caller gives, each transfer recorded in
the run store when one is given), runs spiking inference on ``images_per_class`` x 10 test images and the power estimate on
``power_per_class`` x 10, and sweeps the pruning ratio for the accuracy-power trade-off; an ISPP
run of one device (``new_device()``) gives the trace the report shows. It returns every number
and array the report needs in a ``ReproduceResult``; ``result.summary()`` is the JSON document.

Only the seam is used, so the same function runs on any CrossbarInstrument; the app passes
factories of VirtualArray.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from rramlab.drivers.interface import CrossbarInstrument, RequestError
from rramlab.protocols import inference, ispp, power, transfer
from rramlab.protocols.ispva import IspvaSettings
from rramlab.protocols.mnist import Mnist, balanced_indices
from rramlab.protocols.network import (ARRAY_VARIANTS, Network, NetworkSettings, Variant, build_variants,
                                       conductance_step, pruned_variant)
from rramlab.protocols.settings import check_settings, setting, settings_dict

#: the paper's figures for each number reproduce reports (ratios as fractions, power in W, errors in S);
#: None where the paper gives no figure. Array accuracy: 200 test images, 20 per digit; power: 3 per class.
PAPER = {
    "ann_accuracy.fp32": None,          # "all variants kept >= 90 %" (Fig. 6f), no single figure in the text
    "ann_accuracy.qt": None,
    "ann_accuracy.qtpr": None,
    "transfer.qt.rmse_s": 1.1e-9, "transfer.qt.mae_s": 0.85e-9,
    "transfer.qtpr.rmse_s": 0.57e-9, "transfer.qtpr.mae_s": 0.48e-9,
    "transfer.qt.within_2ns": 0.94, "transfer.qtpr.within_2ns": 0.94,   # ISPVA of 400 single devices
    "array_accuracy.qt": 0.95, "array_accuracy.qtpr": 0.90,
    "power.qt_w": 243e-9, "power.qtpr_w": 222e-9, "power.reduction": 0.086,
}
PAPER_ANN_FLOOR = 0.90
#: spike voltage step of the spiking sweep (V)
SPIKE_V_STEP = 0.1
#: the waveforms of the spiking sweep: (shape, duty)
SWEEP_WAVEFORMS = (("rect", 1.0), ("tri", 1.0), ("rect", 0.5))
#: threshold multiples of the power grid (power only: 30 images, no inference), for "which settings give
#: the paper's power"
POWER_GRID_MULTIPLES = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0)
#: a setting "gives the paper's power" when QT's average is within this fraction of 243 nW
PAPER_POWER_MATCH = 0.10
#: which images the spiking sweep's power (average, per class, factors) is taken on, recorded in the JSON.
#: The headline power and the power grid keep the paper's 3 images per digit (its procedure, its 243 nW);
#: the sweep takes its power on its accuracy images (--split-images, 1,000: 100 per digit) because "QT & PR
#: below QT on every class" compares classes: at threshold x5 an image fires about 14 hidden spikes, the
#: paired QT & PR - QT difference of one image's power spreads by about 8 % of QT's (class 1), so 3 images
#: leave a standard error (4.7 %) near the difference itself (5.7 %) while 100 leave 0.8 %.
SWEEP_POWER_IMAGES = "split"


@dataclass(frozen=True)
class ReproduceSettings:
    """What reproduce runs besides the network's own settings."""

    images_per_class: int = setting(20, "test images per digit for the array accuracy", minimum=1, maximum=1000)
    power_per_class: int = setting(3, "test images per digit for the power estimate", minimum=1, maximum=1000)
    image_seed: int = setting(0, "random seed of the choice of test images", minimum=0)
    sweep_max: float = setting(0.6, "highest pruning ratio of the trade-off sweep", minimum=0.0, maximum=0.9)
    sweep_step: float = setting(0.1, "pruning ratio step of the sweep", minimum=0.01, maximum=0.9)
    ispp_cycles: int = setting(3, "ISPP cycles of the trace figure", minimum=1, maximum=10)
    split_images: int = setting(1000, "test images for the accuracy of every spiking sweep point and of the "
                                      "full-split figure (the whole 1,000-image split when it has that many; "
                                      "fewer: balanced over the digits, a multiple of 10)", minimum=10,
                                maximum=100000)
    threshold_sweep_max: float = setting(5.0, "spiking sweep: threshold multiples x1, x2, ... up to this",
                                         minimum=1.0, maximum=20.0)
    spike_v_sweep_min: float = setting(0.5, "spiking sweep: lowest spike voltage (then 0.1 V steps up to "
                                            "--spike-v-sweep-max)", "V", soa="read", minimum=0.0,
                                       exclusive_minimum=True)
    spike_v_sweep_max: float = setting(1.0, "spiking sweep: highest spike voltage", "V", soa="read", minimum=0.0,
                                       exclusive_minimum=True)

    def validate(self, limits=None) -> None:
        """Check every setting against its declaration; RequestError naming the one out of range."""
        check_settings(self, limits)
        if self.spike_v_sweep_min > self.spike_v_sweep_max:
            raise RequestError(f"--spike-v-sweep-min {self.spike_v_sweep_min:g} V is above --spike-v-sweep-max "
                               f"{self.spike_v_sweep_max:g} V: swap them")

    def sweep_ratios(self) -> list[float]:
        """The pruning ratios of the pruning sweep: 0, step, ... up to sweep_max."""
        n = int(round(self.sweep_max / self.sweep_step))
        return [round(k * self.sweep_step, 6) for k in range(n + 1)]

    def threshold_multiples(self) -> list[float]:
        """The spiking sweep's threshold multiples: 1, 2, ... up to threshold_sweep_max."""
        return [float(k) for k in range(1, int(math.floor(self.threshold_sweep_max + 1e-9)) + 1)]

    def spike_voltages(self) -> list[float]:
        """The spiking sweep's spike voltages (V): spike_v_sweep_min, + 0.1 V, ... up to spike_v_sweep_max."""
        n = int(math.floor((self.spike_v_sweep_max - self.spike_v_sweep_min) / SPIKE_V_STEP + 1e-6))
        out = [round(self.spike_v_sweep_min + k * SPIKE_V_STEP, 6) for k in range(n + 1)]
        return out if out[-1] >= self.spike_v_sweep_max - 1e-9 else out + [self.spike_v_sweep_max]


@dataclass
class ArrayRun:
    """One quantised variant on one array: its transfer, inference and power."""

    variant: str
    transfer_report: dict          # transfer.summarise of the write (every key of rramlab transfer --json)
    transfer: dict                 # the part of it the table and --json show (transfer_figures)
    records: list                  # ImageRecord (accuracy images)
    ann_accuracy_same_images: float
    power: list                    # ImagePower
    conductance_s: np.ndarray      # (hidden, 20) chord conductances at the spike voltage, for the power estimate
    six: object | None = None      # ImageRecord of the "6"
    factors: power.PowerFactors | None = None   # what sets the average power
    threshold: float = float("nan")             # the integrate-and-fire threshold the power images ran at
    split: dict = field(default_factory=dict)   # accuracy on the full split: accuracy, standard_error, images, ann

    @property
    def accuracy(self) -> float:
        return inference.accuracy_of(self.records)

    @property
    def accuracy_standard_error(self) -> float:
        return inference.binomial_standard_error(self.accuracy, len(self.records))

    @property
    def average_power_w(self) -> float:
        return power.average(self.power)


@dataclass
class ReproduceResult:
    network: Network
    runs: dict[str, ArrayRun]
    sweep: list[dict]
    ispp_records: list
    settings: ReproduceSettings
    data_description: str
    timings_s: dict = field(default_factory=dict)
    spiking_sweep: dict = field(default_factory=dict)   # {variant: [point, ...]} (spiking_sweep)
    power_grid: dict = field(default_factory=dict)      # {variant: [entry, ...]} (power_grid)
    paper_power: list = field(default_factory=list)     # paper_power_settings, with each variant's accuracy there
    programming: str = "verified"                       # the programming-error procedure (IspvaSettings.programming)

    def factors_dict(self, name: str) -> dict:
        """The power factors of a variant, with the active wordlines (and rate) the paper's figure needs."""
        r = self.runs[name]
        f = r.factors
        paper_w = PAPER[f"power.{name}_w"]
        need = f.active_wordlines_for(paper_w)
        return {**f.as_dict(), "threshold": r.threshold, "paper_power_w": paper_w,
                "paper_active_wordlines_per_step": need, "paper_hidden_spike_rate": need / f.wordlines}

    def summary(self) -> dict:
        """Every number of the table, keyed as documented in the README ("reproduce --json")."""
        net = self.network
        out = {"data": self.data_description,
               "network_settings": settings_dict(net.settings),
               "reproduce_settings": settings_dict(self.settings),
               "ann_accuracy": {k: v.test_accuracy for k, v in net.variants.items()},
               "transfer": {k: r.transfer for k, r in self.runs.items()},
               "array_accuracy": {k: r.accuracy for k, r in self.runs.items()},
               "ann_accuracy_same_images": {k: r.ann_accuracy_same_images for k, r in self.runs.items()},
               "images": {k: len(r.records) for k, r in self.runs.items()},
               "power_w": {k: r.average_power_w for k, r in self.runs.items()},
               "power_per_class_w": {k: power.per_class(r.power).tolist() for k, r in self.runs.items()},
               "hidden_spike_rate": {k: float(np.mean([p.spike_rate for p in r.power])) for k, r in self.runs.items()},
               "programmed_conductance_s": {k: float(r.conductance_s.sum()) for k, r in self.runs.items()},
               "six": {k: {"image": r.six.image, "prediction": r.six.prediction,
                           "totals_a": r.six.totals.tolist()} for k, r in self.runs.items() if r.six is not None},
               "sweep": self.sweep,
               "mapping": net.settings.mapping,
               "programming": self.programming,
               "transfer_levels": {k: transfer_levels(r.transfer_report) for k, r in self.runs.items()},
               "levels_absent_s": {k: levels_absent(r.transfer_report) for k, r in self.runs.items()},
               "array_accuracy_standard_error": {k: r.accuracy_standard_error for k, r in self.runs.items()},
               "split_accuracy": {k: r.split for k, r in self.runs.items()},
               "power_factors": {k: self.factors_dict(k) for k, r in self.runs.items() if r.factors is not None},
               "spiking_sweep": self.spiking_sweep,
               "spiking_sweep_power_images": SWEEP_POWER_IMAGES,
               "power_grid": self.power_grid,
               "paper_power_settings": self.paper_power,
               "paper": PAPER,
               "timings_s": self.timings_s}
        if self.spiking_sweep:
            out["spiking_sweep_checks"] = sweep_checks(self.spiking_sweep)
        if "qt" in self.runs and "qtpr" in self.runs:
            q, p = self.runs["qt"].average_power_w, self.runs["qtpr"].average_power_w
            out["power_reduction"] = (q - p) / q
            out["qtpr_below_qt_every_class"] = bool(np.all(
                power.per_class(self.runs["qtpr"].power) < power.per_class(self.runs["qt"].power)))
        return out


#: the transfer scheme reproduce uses unless told: the paper's simulation scheme
DEFAULT_TRANSFER = transfer.TransferSettings(scheme="fast")


@dataclass(frozen=True)
class Writer:
    """How a variant's second layer goes into the array: the transfer protocol with these settings,
    recorded in ``store`` (a RunStore or path; None: not recorded)."""

    settings: transfer.TransferSettings = DEFAULT_TRANSFER
    ispva: IspvaSettings = IspvaSettings()
    store: object = None

    def settings_for(self, variant: Variant) -> transfer.TransferSettings:
        """The transfer settings for a variant: its mapping decides what a zero weight holds."""
        return replace(self.settings, pair_zero=variant.pair_zero)

    def check(self, variant: Variant, checker=None) -> transfer.TransferPlan:
        """Every pulse the write may send, checked before any instrument is touched."""
        return transfer.plan(self.settings_for(variant), self.ispva, variant.levels2, checker,
                             conductance_step(variant.bits))

    def __call__(self, instrument: CrossbarInstrument, variant: Variant,
                 should_stop: Callable[[], bool] | None = None) -> dict:
        """Transfer the variant's levels; returns the transfer report (with ``run_id``)."""
        t = time.perf_counter()
        plan_, records, run_id = transfer.write_levels(
            instrument, variant.levels2, self.settings_for(variant), self.ispva, conductance_step(variant.bits),
            self.store, f"{variant.name} second layer", should_stop)
        report = transfer.summarise(plan_, records, time.perf_counter() - t)
        report["run_id"] = run_id
        return report


def transfer_figures(report: dict) -> dict:
    """The transfer numbers reproduce reports (keys documented in the README)."""
    out = {k: report[k] for k in ("rmse_s", "mae_s", "within_2ns", "within_4ns", "within_tolerance", "pulses",
                                  "left_out_of_tolerance", "scheme", "run_id")}
    out["cells"] = report["programmed_cells"]
    return out


def split_indices(labels, images: int, seed: int = 0) -> np.ndarray:
    """The full-split accuracy images: every test image when there are at most ``images``, else
    ``images`` balanced over the digits (``images // 10`` per digit, seeded)."""
    labels = np.asarray(labels)
    if images >= labels.size:
        return np.arange(labels.size)
    return balanced_indices(labels, max(1, images // 10), seed)


def measure_power(instrument: CrossbarInstrument, inference_plan: inference.InferencePlan):
    """(ImagePower list, PowerFactors, chord conductances at the spike voltage) of a plan on the
    instrument's present conductances, read through the seam at the waveform's voltages."""
    p = inference_plan
    s = p.settings
    g = power.measure_conductances(instrument, p.wordlines, p.bitlines, s.spike_v)
    g_eff = g * s.spike_duty if s.spike_shape == "rect" else \
        power.spike_conductances(instrument, p.wordlines, p.bitlines, s.spike_v, s.spike_shape, s.spike_duty)
    return power.image_power(p, g_eff), power.power_factors(p, g, g_eff), g


class DistinctSteps:
    """The twin behind ``vmm`` for inference: each distinct wordline-voltage row of a call is solved once
    and its currents handed to every step that applied it. Exact on the twin, whose answer to a step
    depends only on that step's voltages and the chip's state, which reads inside the read window do not
    change; a probe station measures every step (use the instrument itself there)."""

    def __init__(self, instrument: CrossbarInstrument):
        self.instrument = instrument
        self.geometry = instrument.geometry

    def vmm(self, wordline_v, bitlines=None) -> np.ndarray:
        """Bitline currents (A) of every row of ``wordline_v`` (V), one solve per distinct row."""
        v = np.asarray(wordline_v, dtype=float)
        first, where = distinct_rows(v)
        return np.asarray(self.instrument.vmm(v[first], bitlines))[where]

    def __getattr__(self, name):
        # everything but vmm (reads, the network check, describe) is the twin's own
        return getattr(self.instrument, name)


def distinct_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct row's first occurrence, which distinct row each row is) of a 2-D array.
    Spike rows (each row 0 V or one voltage, at most 40 lines) are keyed by their voltage and the bit
    mask of their spiking lines, a 1-D integer sort; anything else by numpy's row-wise unique."""
    nonzero = v != 0
    peak = v.max(axis=1, initial=0.0)
    low = np.where(nonzero, v, np.inf).min(axis=1, initial=np.inf)
    if v.shape[1] <= 40 and np.all(~nonzero.any(axis=1) | (peak == low)):
        mask = nonzero.astype(np.int64) @ (np.int64(1) << np.arange(v.shape[1], dtype=np.int64))
        _, level = np.unique(peak, return_inverse=True)
        key = level.astype(np.int64) * (np.int64(1) << np.int64(v.shape[1])) + mask
        _, first, where = np.unique(key, return_index=True, return_inverse=True)
        return first, np.ravel(where)
    _, first, where = np.unique(v, axis=0, return_index=True, return_inverse=True)
    return first, np.ravel(where)


def _steps_backend(instrument):
    return DistinctSteps(instrument) if getattr(instrument, "backend_name", "") == "twin" else instrument


class Plans:
    """``inference.plan`` for one reproduce run, the software layer's work kept between calls.

    The sweeps plan the same images of one variant at many settings: a plan met again (same
    settings, variant, data set and images) is handed back as it was, and a plan that changes only
    the threshold or the spike reuses the images' rate-coded input drive (``w1 . x + b1`` of every
    step, what ``inference.integrate_and_fire`` integrates), so only the integrate-and-fire loop
    runs again. The hidden spikes are the ones ``inference.plan`` gives (same drive, same loop:
    tests/test_reproduce.py compares them); every plan is still validated by ``inference.plan``
    itself, on the images with the lowest and highest index."""

    def __init__(self):
        self._plans: dict = {}
        self._drives: dict = {}

    def __call__(self, settings: inference.InferenceSettings, variant: Variant, data, indices,
                 checker=None) -> inference.InferencePlan:
        indices = np.asarray(indices, dtype=np.intp)
        if indices.ndim != 1 or indices.size == 0:
            return inference.plan(settings, variant, data, indices, checker)
        ends = indices[[int(np.argmin(indices)), int(np.argmax(indices))]]
        edge = inference.plan(settings, variant, data, ends, checker)   # every refusal the whole plan has
        key = (id(variant), id(data), indices.tobytes())
        hit = self._plans.get((settings,) + key)
        if hit is not None and hit[0] is variant and hit[1] is data:
            return hit[2]
        drive_key = key + (settings.steps, settings.spike_seed, settings.max_rate)
        got = self._drives.get(drive_key)
        if got is None or got[0] is not variant or got[1] is not data:
            # as inference.plan: one generator per image, seeded by (seed, image index)
            images = data.images[indices]
            spikes_in = np.concatenate([inference.rate_code(images[k:k + 1], settings.steps,
                                                            np.random.default_rng([settings.spike_seed, i]),
                                                            settings.max_rate)
                                        for k, i in enumerate(indices)])
            # the images and labels are shared by the plans of these images (read-only)
            got = (variant, data, spikes_in.astype(float) @ variant.w1 + variant.b1, images, data.labels[indices],
                   indices)
            self._drives[drive_key] = got
        out = replace(edge, images=got[3], labels=got[4], indices=got[5],
                      hidden_spikes=inference.fire_from_drive(got[2], edge.threshold))
        # the cache holds the variant and data set, so their ids cannot be reused while it is kept
        self._plans[(settings,) + key] = (variant, data, out)
        return out


def accuracy_key(settings: inference.InferenceSettings, variant: Variant) -> tuple:
    """What a spiking setting's predictions depend on: the threshold, the spike voltage and the shape.
    The duty only scales every current of a step (``inference.waveform_nodes``), so it changes no prediction."""
    return (variant.name, settings.hidden_threshold(variant.threshold), settings.spike_v, settings.spike_shape)


def split_accuracy(instrument: CrossbarInstrument, inference_plan: inference.InferencePlan,
                   cache: dict | None = None) -> dict:
    """Array accuracy of a plan with its binomial standard error, and the ANN's on the same images;
    ``cache``: results by ``accuracy_key`` (and the images), reused when the same point comes again."""
    p = inference_plan
    key = accuracy_key(p.settings, p.variant) + (tuple(p.indices.tolist()),)
    if cache is not None and key in cache:
        return dict(cache[key])
    records = list(inference.run(_steps_backend(instrument), p, chunk_images=1000))
    acc = inference.accuracy_of(records)
    ann = float(np.mean(p.variant.predict(p.images) == p.labels))
    out = {"accuracy": acc, "standard_error": inference.binomial_standard_error(acc, len(records)),
           "images": len(records), "ann_accuracy": ann}
    if cache is not None:
        cache[key] = dict(out)
    return out


def run_variant(instrument: CrossbarInstrument, variant: Variant, mnist: Mnist, accuracy_idx, power_idx,
                inference_settings: inference.InferenceSettings = inference.InferenceSettings(),
                write: Callable = Writer(), split_idx=None, cache: dict | None = None,
                plan: Callable = inference.plan) -> ArrayRun:
    """Write (transfer), infer and estimate power for one variant on one array; ``split_idx``: the
    images of the full-split accuracy (None: not measured); ``plan``: inference.plan or a ``Plans``."""
    report = write(instrument, variant)
    test = mnist.test
    p = plan(inference_settings, variant, test, accuracy_idx, instrument)
    records = list(inference.run(instrument, p))
    ann = float(np.mean(variant.predict(test.images[accuracy_idx]) == test.labels[accuracy_idx]))
    pp = plan(inference_settings, variant, test, power_idx, instrument)
    powers, factors, g = measure_power(instrument, pp)
    split = {}
    if split_idx is not None:
        split = split_accuracy(instrument, plan(inference_settings, variant, test, split_idx, instrument), cache)
    six = None
    ann_right = variant.predict(test.images) == test.labels
    sixes = np.flatnonzero((test.labels == 6) & ann_right)
    if sixes.size:
        ps = plan(inference_settings, variant, test, sixes[:1], instrument)
        six = next(inference.run(instrument, ps))
    return ArrayRun(variant.name, report, transfer_figures(report), records, ann, powers, g, six, factors,
                    pp.threshold, split)


def sweep_point_settings(base: inference.InferenceSettings, base_threshold: float, parameter: str,
                         value) -> inference.InferenceSettings:
    """The inference settings of one spiking-sweep point: ``base`` with one choice changed.
    parameter "threshold" (value: multiple of ``base_threshold``), "spike_v" (V) or "waveform"
    ((shape, duty))."""
    if parameter == "threshold":
        return replace(base, threshold=base_threshold * value, threshold_scale=1.0)
    if parameter == "spike_v":
        return replace(base, spike_v=float(value))
    if parameter == "waveform":
        return replace(base, spike_shape=value[0], spike_duty=float(value[1]))
    raise RequestError(f"sweep parameter {parameter!r}: use threshold, spike_v or waveform")


def sweep_points(settings: ReproduceSettings) -> list[tuple[str, object]]:
    """(parameter, value) of every point of the spiking sweep, one choice at a time about the base."""
    return ([("threshold", k) for k in settings.threshold_multiples()]
            + [("spike_v", v) for v in settings.spike_voltages()]
            + [("waveform", w) for w in SWEEP_WAVEFORMS])


def spiking_sweep(instrument: CrossbarInstrument, variant: Variant, test, split_idx,
                  base: inference.InferenceSettings, settings: ReproduceSettings,
                  progress: Callable[[str], None] = lambda message: None, cache: dict | None = None,
                  plan: Callable = inference.plan) -> list[dict]:
    """Accuracy (binomial standard error) and power (with its factors, per class) of one written variant
    at every point of ``sweep_points``, both on the same ``split_idx`` images. The power is not taken on
    the paper's 3 images per digit here: at a high threshold 3 images fire too few hidden spikes to tell
    two networks apart on one class (README "The spiking choices"; ``SWEEP_POWER_IMAGES``). A point that
    only changes the spike (voltage, waveform) reuses the base's hidden spikes, which do not depend on it."""
    base_plan = plan(base, variant, test, split_idx, instrument)
    out = []
    cache = {} if cache is None else cache
    for parameter, value in sweep_points(settings):
        s = sweep_point_settings(base, base_plan.threshold, parameter, value)
        if parameter == "threshold":
            acc_plan = plan(s, variant, test, split_idx, instrument)
        else:
            acc_plan = replace(base_plan, settings=s)
        progress(f"{variant.title} sweep: {parameter} {value}")
        acc = split_accuracy(instrument, acc_plan, cache)
        powers, factors, _ = measure_power(instrument, acc_plan)
        out.append({"parameter": parameter, "value": list(value) if isinstance(value, tuple) else value,
                    "threshold": acc_plan.threshold, "threshold_multiple": acc_plan.threshold / base_plan.threshold,
                    "spike_v": s.spike_v, "spike_shape": s.spike_shape, "spike_duty": s.spike_duty, **acc,
                    "power_w": power.average(powers), "power_per_class_w": power.per_class(powers).tolist(),
                    "power_images": len(powers), "active_wordlines_per_class": active_wordlines_per_class(acc_plan),
                    "factors": factors.as_dict()})
    return out


def active_wordlines_per_class(inference_plan: inference.InferencePlan) -> list[float]:
    """Spiking wordlines per step, averaged over each class's images (nan for a class with none)."""
    p = inference_plan
    per_image = p.hidden_spikes.sum(axis=2).mean(axis=1)
    return [float(per_image[p.labels == c].mean()) if np.any(p.labels == c) else float("nan")
            for c in range(inference.CLASSES)]


def power_grid(instrument: CrossbarInstrument, variant: Variant, test, power_idx,
               base: inference.InferenceSettings, settings: ReproduceSettings,
               plan: Callable = inference.plan) -> list[dict]:
    """Power only (no inference: the spikes and the cells' reads) on the power images over threshold
    multiples x spike voltages x waveforms; each entry its settings and average power (W)."""
    base_threshold = plan(base, variant, test, power_idx[:1], instrument).threshold
    hidden = variant.w1.shape[1]
    bitlines = range(2 * inference.CLASSES)
    reads = {}  # the cells' conductances depend on the spike, not on the threshold: read once per spike
    for v in settings.spike_voltages():
        g = power.measure_conductances(instrument, range(hidden), bitlines, v)
        reads[(v, "rect")] = (g, g)
        reads[(v, "tri")] = (g, power.spike_conductances(instrument, range(hidden), bitlines, v, "tri", 1.0))
    out = []
    for k in POWER_GRID_MULTIPLES:
        plan_k = plan(replace(base, threshold=base_threshold * k, threshold_scale=1.0), variant, test, power_idx,
                      instrument)
        for v in settings.spike_voltages():
            for shape, duty in (("rect", 1.0), ("tri", 1.0)):
                s = replace(plan_k.settings, spike_v=v, spike_shape=shape, spike_duty=duty)
                g, g_eff = reads[(v, shape)]
                p = replace(plan_k, settings=s)
                powers, factors = power.image_power(p, g_eff), power.power_factors(p, g, g_eff)
                out.append({"threshold_multiple": k, "threshold": plan_k.threshold, "spike_v": v,
                            "spike_shape": shape, "spike_duty": duty, "power_w": power.average(powers),
                            "power_per_class_w": power.per_class(powers).tolist(),
                            "active_wordlines_per_step": factors.active_wordlines_per_step})
    return out


def stage_count(settings: ReproduceSettings, sweep: bool = True, ispp_trace: bool = True) -> int:
    """How many times ``reproduce`` calls ``progress``: training, one per array variant, one per
    ratio of the sweep, the ISPP trace."""
    return 1 + len(ARRAY_VARIANTS) + (len(settings.sweep_ratios()) if sweep else 0) + int(ispp_trace)


def reproduce(mnist: Mnist, new_array: Callable[[], CrossbarInstrument],
              new_device: Callable[[], CrossbarInstrument] | None = None,
              network_settings: NetworkSettings = NetworkSettings(),
              settings: ReproduceSettings = ReproduceSettings(),
              inference_settings: inference.InferenceSettings = inference.InferenceSettings(),
              progress: Callable[[str], None] = lambda message: None,
              write: Writer = Writer(), sweep: bool = True) -> ReproduceResult:
    """Run the whole experiment; ``progress`` is called with a line of text before each part
    (``stage_count`` parts in all); ``write`` transfers each second layer (scheme, ISPVA settings,
    run store); ``sweep=False`` skips the pruning sweep (about two thirds of the time)."""
    settings.validate()
    inference_settings.validate()
    write.settings.validate()
    write.ispva.validate()
    timings = {}
    t0 = time.perf_counter()
    progress("training FP32, QT, QT & PR")
    net = build_variants(mnist.train, mnist.test, network_settings)
    timings["train"] = time.perf_counter() - t0
    acc_idx = balanced_indices(mnist.test.labels, settings.images_per_class, settings.image_seed)
    pow_idx = balanced_indices(mnist.test.labels, settings.power_per_class, settings.image_seed + 1)
    split_idx = split_indices(mnist.test.labels, settings.split_images, settings.image_seed + 2)
    cache: dict = {}   # split accuracies by spiking setting, so a point met twice runs once
    runs = {}
    spiking = {}
    grids = {}
    paper_power = []   # the settings that give the paper's power, with what they cost (filled below)
    new_array = _sharing_tables(new_array)
    plans = Plans()
    for name in ARRAY_VARIANTS:
        t = time.perf_counter()
        v = net.variants[name]
        progress(f"{v.title}: transfer ({write.settings.scheme}), infer {acc_idx.size} + {split_idx.size} images, "
                 f"power on {pow_idx.size}")
        with new_array() as array:
            runs[name] = run_variant(array, v, mnist, acc_idx, pow_idx, inference_settings, write, split_idx, cache,
                                     plans)
            timings[name] = time.perf_counter() - t
            t = time.perf_counter()
            spiking[name] = spiking_sweep(array, v, mnist.test, split_idx, inference_settings, settings,
                                          progress, cache, plans)
            grids[name] = power_grid(array, v, mnist.test, pow_idx, inference_settings, settings, plans)
            if name == ARRAY_VARIANTS[0]:
                paper_power = [dict(c) for c in paper_power_settings(grids[name], PAPER["power.qt_w"])]
            for c in paper_power:
                s = sweep_point_settings(replace(inference_settings, spike_shape=c["spike_shape"],
                                                 spike_duty=c["spike_duty"], spike_v=c["spike_v"]),
                                         inference_settings.hidden_threshold(v.threshold), "threshold",
                                         c["threshold_multiple"])
                progress(f"{v.title}: accuracy at {s.describe_spike()}, threshold x{c['threshold_multiple']:g}")
                c[name] = split_accuracy(array, plans(s, v, mnist.test, split_idx, array), cache)
                c[name]["power_w"] = next(g["power_w"] for g in grids[name] if all(
                    g[k] == c[k] for k in ("threshold_multiple", "spike_v", "spike_shape", "spike_duty")))
            timings[f"{name}_spiking_sweep"] = time.perf_counter() - t
    t = time.perf_counter()
    ratios = settings.sweep_ratios() if sweep else []
    sweep = []
    fp = net.variants["fp32"]
    for ratio in ratios:
        progress(f"pruning sweep: {ratio:.0%}")
        v = pruned_variant(fp.w1, fp.b1, fp.w2, ratio, mnist.train, mnist.test, network_settings,
                           name=f"pr{ratio:g}")
        with new_array() as array:
            r = run_variant(array, v, mnist, acc_idx, pow_idx, inference_settings, write, plan=plans)
        sweep.append({"prune_ratio": ratio, "ann_accuracy": v.test_accuracy, "array_accuracy": r.accuracy,
                      "power_w": r.average_power_w, "programmed_cells": r.transfer["cells"],
                      "transfer_rmse_s": r.transfer["rmse_s"]})
    if ratios:
        timings["sweep"] = time.perf_counter() - t
    ispp_records = []
    if new_device is not None:
        t = time.perf_counter()
        progress(f"ISPP trace, {settings.ispp_cycles} cycles")
        with new_device() as device:
            ispp_records = list(ispp.run_ispp(device, ispp.IsppSettings(cycles=settings.ispp_cycles)))
        timings["ispp"] = time.perf_counter() - t
    return ReproduceResult(net, runs, sweep, ispp_records, settings,
                           f"{mnist.description}", timings, spiking, grids, paper_power, write.ispva.programming)


def _sharing_tables(new_array: Callable[[], CrossbarInstrument]) -> Callable[[], CrossbarInstrument]:
    """``new_array`` whose twins share the first twin's device tables (``VirtualArray.share_device_tables``):
    the fresh chips of one run are one seed's, so each meets the conductances the others met, and a
    row is built once per run instead of once per chip (on the varied default chip 9,805 rows built
    by nine transfers were 1,216 distinct). Instruments without the method are handed on as they are."""
    first = []

    def make():
        array = new_array()
        if not first:
            first.append(array)
        elif hasattr(array, "share_device_tables"):
            array.share_device_tables(first[0])
        return array

    return make


def transfer_levels(report: dict) -> list[dict]:
    """Cells programmed per target level and their error: [{target_s, cells, rmse_s, mae_s}], ascending;
    what tells two transfers' RMSE apart (how many cells, at which levels)."""
    return [{"target_s": lv["target_s"], "cells": lv["cells"], "rmse_s": lv["rmse_s"], "mae_s": lv["mae_s"]}
            for lv in report["levels"]]


def levels_absent(report: dict) -> list[float]:
    """The device's states G1..G8 (10..80 nS) that no cell of the transfer targets (S), e.g. the 20 nS
    level the paper finds absent after pruning."""
    present = {round(lv["target_s"] * 1e9) for lv in report["levels"] if lv["cells"]}
    return [k * 10e-9 for k in range(1, 9) if k * 10 not in present]


def sweep_checks(spiking: dict) -> dict:
    """What the spiking sweep must show: power non-increasing in the threshold and non-decreasing in the
    spike voltage (per variant), and QT & PR below QT on every class at every point; each a bool, with
    the points where QT & PR is not below QT (parameter, value, classes) listed."""
    out = {}
    for name, points in spiking.items():
        th = [p["power_w"] for p in points if p["parameter"] == "threshold"]
        sv = [p["power_w"] for p in points if p["parameter"] == "spike_v"]
        out[f"{name}_power_non_increasing_in_threshold"] = bool(all(b <= a for a, b in zip(th, th[1:])))
        out[f"{name}_power_non_decreasing_in_spike_v"] = bool(all(b >= a for a, b in zip(sv, sv[1:])))
    exceptions = []
    if "qt" in spiking and "qtpr" in spiking:
        for q, p in zip(spiking["qt"], spiking["qtpr"]):
            worse = [c for c, (a, b) in enumerate(zip(q["power_per_class_w"], p["power_per_class_w"])) if not b < a]
            if worse:
                exceptions.append({"parameter": q["parameter"], "value": q["value"], "classes": worse})
        out["qtpr_below_qt_every_class_every_point"] = not exceptions
        out["qtpr_not_below_qt"] = exceptions
    return out


def paper_power_settings(grid: list[dict], paper_w: float, match: float = PAPER_POWER_MATCH) -> list[dict]:
    """Which spiking settings of a power grid give ``paper_w``: the paper's own spike (rect 1 V) at the
    threshold multiple closest to it, and the lowest threshold multiple over every voltage and waveform
    whose power is within ``match`` of it (if another); each {threshold_multiple, spike_v, spike_shape,
    spike_duty, power_w, within (bool)}."""
    keys = ("threshold_multiple", "spike_v", "spike_shape", "spike_duty", "power_w")
    out = []
    paper_spike = [g for g in grid if g["spike_shape"] == "rect" and g["spike_duty"] == 1.0
                   and abs(g["spike_v"] - 1.0) < 1e-9]
    if paper_spike:
        best = min(paper_spike, key=lambda g: abs(g["power_w"] - paper_w))
        out.append({k: best[k] for k in keys})
    near = [g for g in grid if abs(g["power_w"] - paper_w) <= match * paper_w]
    if near:
        best = min(near, key=lambda g: (g["threshold_multiple"], abs(g["power_w"] - paper_w)))
        if not out or any(best[k] != out[0][k] for k in keys):
            out.append({k: best[k] for k in keys})
    for c in out:
        c["within"] = abs(c["power_w"] - paper_w) <= match * paper_w
    return out
