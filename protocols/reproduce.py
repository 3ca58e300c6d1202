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

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from rramlab.drivers.interface import CrossbarInstrument
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


@dataclass(frozen=True)
class ReproduceSettings:
    """What reproduce runs besides the network's own settings."""

    images_per_class: int = setting(20, "test images per digit for the array accuracy", minimum=1, maximum=1000)
    power_per_class: int = setting(3, "test images per digit for the power estimate", minimum=1, maximum=1000)
    image_seed: int = setting(0, "random seed of the choice of test images", minimum=0)
    sweep_max: float = setting(0.6, "highest pruning ratio of the trade-off sweep", minimum=0.0, maximum=0.9)
    sweep_step: float = setting(0.1, "pruning ratio step of the sweep", minimum=0.01, maximum=0.9)
    ispp_cycles: int = setting(3, "ISPP cycles of the trace figure", minimum=1, maximum=10)

    def sweep_ratios(self) -> list[float]:
        n = int(round(self.sweep_max / self.sweep_step))
        return [round(k * self.sweep_step, 6) for k in range(n + 1)]


@dataclass
class ArrayRun:
    """One quantised variant on one array: its transfer, inference and power."""

    variant: str
    transfer_report: dict          # transfer.summarise of the write (every key of rramlab transfer --json)
    transfer: dict                 # the part of it the table and --json show (transfer_figures)
    records: list                  # ImageRecord (accuracy images)
    ann_accuracy_same_images: float
    power: list                    # ImagePower
    conductance_s: np.ndarray      # (hidden, 20) measured for the power estimate
    six: object | None = None      # ImageRecord of the "6"

    @property
    def accuracy(self) -> float:
        return inference.accuracy_of(self.records)

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
               "paper": PAPER,
               "timings_s": self.timings_s}
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

    def check(self, variant: Variant, checker=None) -> transfer.TransferPlan:
        """Every pulse the write may send, checked before any instrument is touched."""
        return transfer.plan(self.settings, self.ispva, variant.levels2, checker, conductance_step(variant.bits))

    def __call__(self, instrument: CrossbarInstrument, variant: Variant,
                 should_stop: Callable[[], bool] | None = None) -> dict:
        """Transfer the variant's levels; returns the transfer report (with ``run_id``)."""
        t = time.perf_counter()
        plan_, records, run_id = transfer.write_levels(
            instrument, variant.levels2, self.settings, self.ispva, conductance_step(variant.bits), self.store,
            f"{variant.name} second layer", should_stop)
        report = transfer.summarise(plan_, records, time.perf_counter() - t)
        report["run_id"] = run_id
        return report


def transfer_figures(report: dict) -> dict:
    """The transfer numbers reproduce reports (keys documented in the README)."""
    out = {k: report[k] for k in ("rmse_s", "mae_s", "within_2ns", "within_4ns", "within_tolerance", "pulses",
                                  "left_out_of_tolerance", "scheme", "run_id")}
    out["cells"] = report["programmed_cells"]
    return out


def run_variant(instrument: CrossbarInstrument, variant: Variant, mnist: Mnist, accuracy_idx, power_idx,
                inference_settings: inference.InferenceSettings = inference.InferenceSettings(),
                write: Callable = Writer()) -> ArrayRun:
    """Write (transfer), infer and estimate power for one variant on one array."""
    report = write(instrument, variant)
    test = mnist.test
    p = inference.plan(inference_settings, variant, test, accuracy_idx, instrument)
    records = list(inference.run(instrument, p))
    ann = float(np.mean(variant.predict(test.images[accuracy_idx]) == test.labels[accuracy_idx]))
    hidden = variant.w1.shape[1]
    g = power.measure_conductances(instrument, range(hidden), p.bitlines, inference_settings.spike_v)
    pp = inference.plan(inference_settings, variant, test, power_idx, instrument)
    powers = power.image_power(pp, g)
    six = None
    ann_right = variant.predict(test.images) == test.labels
    sixes = np.flatnonzero((test.labels == 6) & ann_right)
    if sixes.size:
        ps = inference.plan(inference_settings, variant, test, sixes[:1], instrument)
        six = next(inference.run(instrument, ps))
    return ArrayRun(variant.name, report, transfer_figures(report), records, ann, powers, g, six)


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
    check_settings(settings)
    write.settings.validate()
    write.ispva.validate()
    timings = {}
    t0 = time.perf_counter()
    progress("training FP32, QT, QT & PR")
    net = build_variants(mnist.train, mnist.test, network_settings)
    timings["train"] = time.perf_counter() - t0
    acc_idx = balanced_indices(mnist.test.labels, settings.images_per_class, settings.image_seed)
    pow_idx = balanced_indices(mnist.test.labels, settings.power_per_class, settings.image_seed + 1)
    runs = {}
    for name in ARRAY_VARIANTS:
        t = time.perf_counter()
        progress(f"{net.variants[name].title}: transfer ({write.settings.scheme}), infer {acc_idx.size} images, power on {pow_idx.size}")
        with new_array() as array:
            runs[name] = run_variant(array, net.variants[name], mnist, acc_idx, pow_idx, inference_settings, write)
        timings[name] = time.perf_counter() - t
    t = time.perf_counter()
    ratios = settings.sweep_ratios() if sweep else []
    sweep = []
    fp = net.variants["fp32"]
    for ratio in ratios:
        progress(f"pruning sweep: {ratio:.0%}")
        v = pruned_variant(fp.w1, fp.b1, fp.w2, ratio, mnist.train, mnist.test, network_settings,
                           name=f"pr{ratio:g}")
        with new_array() as array:
            r = run_variant(array, v, mnist, acc_idx, pow_idx, inference_settings, write)
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
                           f"{mnist.description}", timings)
