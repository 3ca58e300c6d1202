"""Spiking inference of the 784-24-10 network with its second layer in the crossbar.

Written against the seam only (``CrossbarInstrument.vmm``). Per image, for ``steps`` time steps:

1. Rate coding (seeded): pixel p in [0, 1] spikes at a step with probability ``max_rate`` x p
   (``rate_code``).
2. First layer in software: integrate-and-fire neurons (``integrate_and_fire``); each step a hidden
   unit adds W1 . input_spikes + b1 to its membrane, fires when the membrane reaches the threshold
   and loses the threshold (reset by subtraction, so its rate follows the ANN's ReLU). The threshold
   is the network's (the ``activation_percentile`` of its hidden ReLU activations) times
   ``threshold_scale``, or ``threshold`` when that is given.
3. Second layer in the array: the hidden spikes of a step drive the wordlines with a spike of
   ``spike_v`` (1 V) and 0 V otherwise, every bitline held at 0 V; the 20 bitline currents are read.
   The spike's waveform (``spike_shape``, ``spike_duty``): ``rect`` holds ``spike_v`` for the duty
   fraction of the step; ``tri`` is a PWL ramp 0 -> ``spike_v`` -> 0 over that fraction. A step's
   current is its time average over the waveform (``waveform_nodes``: the current at a few fractions
   of ``spike_v``, weighted; a ramp through the device's non-linear I(V) is not a scaled rectangle).
   Class c scores I+ - I- = I(bitline c) - I(bitline 10 + c), summed over the steps; the
   prediction is the class with the highest sum.

Steps 1 and 2 need no instrument and are done when the run is planned; ``run`` sends the
wordline voltages of ``chunk_images`` images x steps in one ``vmm`` call (the twin solves a whole
batch at once; a probe station loops over the steps inside the call) and yields one
``ImageRecord`` per image. Units: volts, amperes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from rramlab.drivers.interface import CrossbarInstrument, GeometryError, RequestChecker, RequestError
from rramlab.protocols.mnist import CLASSES, Dataset
from rramlab.protocols.network import Variant
from rramlab.protocols.settings import check_settings, setting


#: spike waveforms: rectangular, or triangular (a PWL ramp up and down filling the spike's time)
SPIKE_SHAPES = ("rect", "tri")
#: Gauss-Legendre nodes of a triangular spike's average over its ramp (5 nodes integrate the twin's
#: I(V) within 1e-4 of a 2,000-point trapezoid, tests/test_power.py)
TRI_NODES = 5


@dataclass(frozen=True)
class InferenceSettings:
    """Spiking inference on the array: the rate coding, the hidden threshold and the spike waveform."""

    steps: int = setting(25, "time steps per image", minimum=1, maximum=10000)
    spike_v: float = setting(1.0, "peak wordline voltage of a spike (0 V otherwise), inside the read window",
                             "V", soa="read", exclusive_minimum=True, minimum=0.0)
    spike_shape: str = setting("rect", "spike waveform: rect (spike-v for the duty fraction of the step) or tri "
                                       "(a ramp 0 -> spike-v -> 0 over that fraction)", choices=SPIKE_SHAPES)
    spike_duty: float = setting(1.0, "fraction of each time step a spike lasts", minimum=0.0, maximum=1.0,
                                exclusive_minimum=True)
    threshold_scale: float = setting(1.0, "integrate-and-fire threshold as a multiple of the network's own "
                                          "(its activation percentile)", minimum=0.0, maximum=100.0,
                                     exclusive_minimum=True)
    threshold: float = setting(0.0, "absolute integrate-and-fire threshold (units of the hidden layer's input "
                                    "w1 . x + b1); 0: the network's threshold x threshold-scale",
                               minimum=0.0, maximum=1e6)
    max_rate: float = setting(1.0, "rate coding: a pixel of value p spikes with probability max-rate x p per step",
                              minimum=0.0, maximum=1.0, exclusive_minimum=True)
    spike_seed: int = setting(0, "random seed of the rate coding", minimum=0)

    def validate(self, limits=None) -> None:
        """Check every setting against its declaration and ``limits``; RequestError/SafetyError naming it."""
        check_settings(self, limits)
        if self.threshold > 0 and self.threshold_scale != 1.0:
            raise RequestError(f"--threshold {self.threshold:g} and --threshold-scale {self.threshold_scale:g} "
                               "both set the firing threshold: give one of them")

    def hidden_threshold(self, variant_threshold: float) -> float:
        """The integrate-and-fire threshold in force: ``threshold`` if given, else the variant's x scale."""
        return float(self.threshold) if self.threshold > 0 else float(variant_threshold) * self.threshold_scale

    def describe_spike(self) -> str:
        """The waveform in a few words, e.g. "rect 1 V" or "tri 0.6 V, duty 0.5"."""
        duty = f", duty {self.spike_duty:g}" if self.spike_duty != 1.0 else ""
        return f"{self.spike_shape} {self.spike_v:g} V{duty}"


def waveform_nodes(shape: str, duty: float = 1.0, nodes: int = TRI_NODES) -> tuple[np.ndarray, np.ndarray]:
    """(fractions of the peak voltage, weights): a step's time average of any f(v(t)) is
    sum_k weights[k] * f(fractions[k] * V) for a spike of peak V; 0 V for the rest of the step
    contributes nothing (f(0) = 0 for currents and power).

    rect: ([1], [duty]). tri: v rises linearly to V and falls back over the duty fraction, so v/V is
    uniform on [0, 1] over that time; Gauss-Legendre on [0, 1] with ``nodes`` points, weights x duty."""
    if shape not in SPIKE_SHAPES:
        raise RequestError(f"spike shape {shape!r}: use one of {', '.join(SPIKE_SHAPES)}")
    if shape == "rect":
        return np.array([1.0]), np.array([float(duty)])
    x, w = np.polynomial.legendre.leggauss(int(nodes))
    return (x + 1.0) / 2.0, w / 2.0 * float(duty)


# ----- pure numerics -----

def rate_code(images: np.ndarray, steps: int, rng: np.random.Generator, max_rate: float = 1.0) -> np.ndarray:
    """Input spikes (n, steps, pixels) bool: each pixel p in [0, 1] spikes with probability
    ``max_rate`` x p at each step, independently."""
    images = np.asarray(images, dtype=float)
    if images.size and (images.min() < 0 or images.max() > 1):
        raise RequestError("pixel values must be in [0, 1] for rate coding")
    return rng.random((images.shape[0], steps, images.shape[1])) < max_rate * images[:, None, :]


def integrate_and_fire(input_spikes: np.ndarray, w1: np.ndarray, b1: np.ndarray, threshold: float) -> np.ndarray:
    """Hidden spikes (n, steps, hidden) bool of integrate-and-fire neurons with reset by subtraction.

    Each step every neuron adds input_spikes[t] @ w1 + b1 to its membrane (starting at 0), fires if
    the membrane is at or above ``threshold``, and then loses ``threshold``. At most one spike per step.
    """
    if not threshold > 0:
        raise RequestError(f"integrate-and-fire threshold must be positive, got {threshold}")
    return fire_from_drive(input_spikes.astype(float) @ w1 + b1, threshold)


def fire_from_drive(drive: np.ndarray, threshold: float) -> np.ndarray:
    """The integrate-and-fire loop of ``integrate_and_fire`` from its drive (n, steps, hidden), the
    per-step input of every neuron: hidden spikes (n, steps, hidden) bool. Reproduce's sweeps keep
    the drive of a variant's images and fire it at each threshold."""
    membrane = np.zeros((drive.shape[0], drive.shape[2]))
    out = np.zeros(drive.shape, dtype=bool)
    for t in range(drive.shape[1]):
        membrane += drive[:, t]
        fired = membrane >= threshold
        membrane -= threshold * fired
        out[:, t] = fired
    return out


def class_scores(bitline_currents: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """I+ - I- per class from bitline currents (..., 2 * classes): bitline c minus bitline classes + c."""
    i = np.asarray(bitline_currents)
    return i[..., :classes] - i[..., classes:2 * classes]


def ideal_bitline_currents(wordline_v: np.ndarray, conductance_s: np.ndarray) -> np.ndarray:
    """Bitline currents of an ideal crossbar (no wires, linear cells): V @ G, (..., bitlines) A."""
    return np.asarray(wordline_v, dtype=float) @ np.asarray(conductance_s, dtype=float)


# ----- plan and run -----

@dataclass(frozen=True)
class InferencePlan:
    settings: InferenceSettings
    variant: Variant
    images: np.ndarray        # (n, 784), [0, 1]
    labels: np.ndarray        # (n,)
    indices: np.ndarray       # (n,) positions in the data set the images came from
    hidden_spikes: np.ndarray  # (n, steps, hidden) bool
    wordlines: tuple[int, ...]  # hidden unit i drives wordlines[i]
    bitlines: tuple[int, ...]   # positive columns then negative columns (20)
    threshold: float = float("nan")  # the integrate-and-fire threshold the hidden spikes came from

    @property
    def n_images(self) -> int:
        return int(self.labels.shape[0])

    def wordline_voltages(self, image: int) -> np.ndarray:
        """(steps, wordlines of the array) volts applied for one image."""
        return self._voltages(self.hidden_spikes[image:image + 1])[0]

    def _voltages(self, spikes: np.ndarray, n_wordlines: int | None = None) -> np.ndarray:
        n_wordlines = n_wordlines or (max(self.wordlines) + 1)
        v = np.zeros(spikes.shape[:2] + (n_wordlines,))
        v[..., list(self.wordlines)] = spikes * self.settings.spike_v
        return v


@dataclass(frozen=True)
class ImageRecord:
    """One image's inference. Currents in amperes."""

    image: int                    # index into the data set
    label: int
    prediction: int
    class_currents: np.ndarray    # (steps, 10): I+ - I- per class at each step
    bitline_currents: np.ndarray  # (steps, 20): the measured bitline currents
    hidden_spikes: np.ndarray     # (steps, hidden) bool: what drove the wordlines

    @property
    def correct(self) -> bool:
        return self.prediction == self.label

    @property
    def totals(self) -> np.ndarray:
        """I+ - I- per class summed over the steps (A)."""
        return self.class_currents.sum(axis=0)


def plan(settings: InferenceSettings, variant: Variant, data: Dataset, indices=None,
         checker: RequestChecker | None = None) -> InferencePlan:
    """Validate everything, code the images into spikes and run the software layer; no instrument.

    indices: which images of ``data`` (default all). Image i is rate-coded with the generator seeded
    by (settings.spike_seed, i), so an image's spikes do not depend on the other images of the plan.
    """
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    g = checker.geometry
    hidden = variant.w1.shape[1]
    if hidden > g.wordlines:
        raise GeometryError(f"the network has {hidden} hidden units but the array only {g.wordlines} wordlines")
    if 2 * CLASSES > g.bitlines:
        raise GeometryError(f"the network needs {2 * CLASSES} bitlines (differential pairs), the array has {g.bitlines}")
    if variant.w2.shape != (hidden, CLASSES):
        raise RequestError(f"second layer has shape {variant.w2.shape}, expected ({hidden}, {CLASSES})")
    indices = np.arange(len(data)) if indices is None else np.asarray(indices, dtype=np.intp)
    if indices.size == 0:
        raise RequestError("no images to infer: ask for at least one")
    if indices.min() < 0 or indices.max() >= len(data):
        raise RequestError(f"image index {int(indices.max())} is outside the data set of {len(data)} images")
    images, labels = data.images[indices], data.labels[indices]
    # one generator per image, seeded by (seed, image index): an image gets the same spikes whatever
    # else is in the batch and in whichever order
    spikes_in = np.concatenate([rate_code(images[k:k + 1], settings.steps,
                                          np.random.default_rng([settings.spike_seed, i]), settings.max_rate)
                                for k, i in enumerate(indices)])
    threshold = settings.hidden_threshold(variant.threshold)
    hidden_spikes = integrate_and_fire(spikes_in, variant.w1, variant.b1, threshold)
    fractions, _ = waveform_nodes(settings.spike_shape, settings.spike_duty)
    for f in fractions:  # every voltage the waveform puts on a wordline
        checker.check_vmm(np.full((1, g.wordlines), settings.spike_v * f), range(2 * CLASSES))
    return InferencePlan(settings, variant, images, labels, indices, hidden_spikes, tuple(range(hidden)),
                         tuple(range(2 * CLASSES)), threshold)


def run(instrument: CrossbarInstrument, inference_plan: InferencePlan, chunk_images: int = 200,
        should_stop: Callable[[], bool] | None = None, check_network: bool = True) -> Iterator[ImageRecord]:
    """Send the plan's spikes to ``instrument`` ``chunk_images`` images at a time (one vmm call
    each) and yield an ImageRecord per image. ``should_stop`` is polled between calls.

    A rectangular spike is one vmm of the steps at ``spike_v`` (its currents x the duty); a
    triangular one is the steps at each of ``waveform_nodes``' fractions of ``spike_v`` in the same
    call, weighted into each step's time-averaged current.

    First (``check_network``) the network's cells are read once and compared with the variant's
    targets (``network_check``): an array that does not hold this network raises NetworkNotHeld
    before any spike, instead of inferring with whatever it holds."""
    p = inference_plan
    if check_network:
        from rramlab.protocols.network_check import require_held

        require_held(instrument, p.variant)
    steps = p.settings.steps
    W = instrument.geometry.wordlines
    fractions, weights = waveform_nodes(p.settings.spike_shape, p.settings.spike_duty)
    for start in range(0, p.n_images, max(1, int(chunk_images))):
        if should_stop is not None and should_stop():
            return
        spikes = p.hidden_spikes[start:start + chunk_images]
        n = spikes.shape[0]
        volts = p._voltages(spikes, W).reshape(n * steps, W)
        if fractions.size == 1 and fractions[0] == 1.0:
            currents = instrument.vmm(volts, list(p.bitlines)) * weights[0]
        else:
            stacked = np.concatenate([volts * f for f in fractions])
            per_node = instrument.vmm(stacked, list(p.bitlines)).reshape(fractions.size, n * steps, -1)
            currents = np.tensordot(weights, per_node, axes=1)
        currents = currents.reshape(n, steps, len(p.bitlines))
        scores = class_scores(currents)
        for k in range(n):
            i = start + k
            yield ImageRecord(int(p.indices[i]), int(p.labels[i]), int(np.argmax(scores[k].sum(axis=0))),
                              scores[k], currents[k], spikes[k])


# ----- summaries -----

def confusion_matrix(labels, predictions, classes: int = CLASSES) -> np.ndarray:
    """(classes, classes) counts: row = true label, column = prediction."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.intp), np.asarray(predictions, dtype=np.intp)), 1)
    return m


def accuracy_of(records) -> float:
    """Fraction of the records whose prediction is their label (nan for none)."""
    records = list(records)
    return float(np.mean([r.correct for r in records])) if records else float("nan")


def binomial_standard_error(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` independent images: sqrt(p (1 - p) / n)."""
    return float(np.sqrt(accuracy * (1.0 - accuracy) / n)) if n > 0 else float("nan")


#: the settings class of this protocol (the same shape as every protocol module)
Settings = InferenceSettings
#: the plan class of this protocol
Plan = InferencePlan
#: the record classes ``run`` yields
RECORDS = (ImageRecord,)
