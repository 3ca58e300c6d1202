"""Jobs the window runs that are not protocols of their own: a read of the whole array.

Shaped like a protocol (settings declared once, ``plan`` without an instrument, ``run`` a
generator of records polling ``should_stop`` between wordlines) so the window runs it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from rramlab.drivers.interface import CrossbarInstrument, RequestChecker
from rramlab.protocols.settings import check_settings, setting


@dataclass(frozen=True)
class ArrayReadSettings:
    """A read of every used cell, one wordline at a time."""

    read_v: float = setting(1.0, "read voltage on the selected wordline", "V", soa="read")


@dataclass(frozen=True)
class ArrayReadPlan:
    settings: ArrayReadSettings
    wordlines: tuple[int, ...]
    bitlines: tuple[int, ...]

    @property
    def total(self) -> int:
        return len(self.wordlines)


@dataclass(frozen=True)
class ArrayReadRecord:
    """The read currents (A) of the used cells of one wordline at ``read_v`` (V)."""

    wordline: int
    bitlines: tuple[int, ...]
    read_a: tuple[float, ...]
    read_v: float

    def conductances(self) -> list[tuple[tuple[int, int], float]]:
        """((wordline, bitline), siemens) per cell: I / V at the read voltage."""
        return [((self.wordline, b), i / self.read_v) for b, i in zip(self.bitlines, self.read_a)]


def plan(settings: ArrayReadSettings, cell=None, checker: RequestChecker | None = None) -> ArrayReadPlan:
    """Validate the read against ``checker``'s limits; ``cell`` is ignored (the whole array is read)."""
    checker = checker or RequestChecker()
    check_settings(settings, checker.limits)
    checker.check_read_voltage(settings.read_v)
    g = checker.geometry
    return ArrayReadPlan(settings, tuple(g.used_wordlines), tuple(g.used_bitlines))


def run(instrument: CrossbarInstrument, read_plan: ArrayReadPlan,
        should_stop: Callable[[], bool] | None = None) -> Iterator[ArrayReadRecord]:
    v = read_plan.settings.read_v
    for w in read_plan.wordlines:
        if should_stop is not None and should_stop():
            return
        currents = instrument.read([(w, b) for b in read_plan.bitlines], v)
        yield ArrayReadRecord(w, read_plan.bitlines, tuple(float(i) for i in currents), v)


# ----- inference and power on the array: plans built from a network file and the MNIST test set -----

@dataclass(frozen=True)
class PowerRecord:
    """Power of one image's inference (W) with the prediction made from the same currents."""

    image: int
    label: int
    prediction: int
    average_w: float                 # P_avg,array (eqn 3)
    array_power_w: tuple[float, ...]  # sum_i P_i(t) per time step: the power over time
    spike_rate: float                # hidden spikes per wordline per step


def balanced_order(labels, n: int, seed: int = 0):
    """``n`` test image indices balanced over the digits, in the order 0, 1, ... 9, 0, 1, ..."""
    import numpy as np

    from rramlab.protocols.mnist import CLASSES, balanced_indices

    per = -(-n // CLASSES)
    return balanced_indices(labels, per, seed).reshape(CLASSES, per).T.ravel()[:n]


def run_inference(instrument: CrossbarInstrument, inference_plan, should_stop=None) -> Iterator:
    """``inference.run`` a few images per call, so records (and Abort) come between calls: the
    twin takes 10 images per call, a probe station one."""
    from rramlab.protocols import inference

    chunk = 10 if instrument.backend_name == "twin" else 1
    # the window checked that the array holds the network before the run started (the spec's precheck)
    return inference.run(instrument, inference_plan, chunk, should_stop, check_network=False)


def run_power(instrument: CrossbarInstrument, inference_plan, should_stop=None) -> Iterator[PowerRecord]:
    """Measure the conductances of the network's cells at the spike voltage (eqn 1's G_ij), then run
    the inference and yield each image's power (eqns 1-3) with its prediction."""
    from rramlab.protocols import power

    p = inference_plan
    g = power.spike_conductances(instrument, p.wordlines, p.bitlines, p.settings.spike_v, p.settings.spike_shape,
                                 p.settings.spike_duty)  # the waveform's average, the device's I(V) included
    powers = {pw.image: pw for pw in power.image_power(p, g)}
    for record in run_inference(instrument, p, should_stop):
        pw = powers[record.image]
        yield PowerRecord(pw.image, pw.label, record.prediction, pw.average_w,
                          tuple(float(x) for x in pw.array_power_w), pw.spike_rate)
