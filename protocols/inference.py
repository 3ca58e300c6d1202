"""Spiking inference of the 784-24-10 network with its second layer in the crossbar.

Written against the seam only (``CrossbarInstrument.vmm``). Per image, for ``steps`` time steps:

1. Rate coding (seeded): pixel p in [0, 1] spikes at a step with probability p (``rate_code``).
2. First layer in software: integrate-and-fire neurons (``integrate_and_fire``); each step a hidden
   unit adds W1 . input_spikes + b1 to its membrane, fires when the membrane reaches the threshold
   and loses the threshold (reset by subtraction, so its rate follows the ANN's ReLU).
3. Second layer in the array: the hidden spikes of a step drive the wordlines, ``spike_v`` (1 V) for
   a spike and 0 V otherwise, with every bitline held at 0 V; the 20 bitline currents are read.
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


@dataclass(frozen=True)
class InferenceSettings:
    """Spiking inference on the array."""

    steps: int = setting(25, "time steps per image", minimum=1, maximum=10000)
    spike_v: float = setting(1.0, "wordline voltage of a spike (0 V otherwise)", "V", soa="read",
                             exclusive_minimum=True, minimum=0.0)
    spike_seed: int = setting(0, "random seed of the rate coding", minimum=0)

    def validate(self, limits=None) -> None:
        check_settings(self, limits)


# ----- pure numerics -----

def rate_code(images: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Input spikes (n, steps, pixels) bool: each pixel p in [0, 1] spikes with probability p at each
    step, independently."""
    images = np.asarray(images, dtype=float)
    if images.size and (images.min() < 0 or images.max() > 1):
        raise RequestError("pixel values must be in [0, 1] for rate coding")
    return rng.random((images.shape[0], steps, images.shape[1])) < images[:, None, :]


def integrate_and_fire(input_spikes: np.ndarray, w1: np.ndarray, b1: np.ndarray, threshold: float) -> np.ndarray:
    """Hidden spikes (n, steps, hidden) bool of integrate-and-fire neurons with reset by subtraction.

    Each step every neuron adds input_spikes[t] @ w1 + b1 to its membrane (starting at 0), fires if
    the membrane is at or above ``threshold``, and then loses ``threshold``. At most one spike per step.
    """
    if not threshold > 0:
        raise RequestError(f"integrate-and-fire threshold must be positive, got {threshold}")
    drive = input_spikes.astype(float) @ w1 + b1          # (n, steps, hidden)
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
    spikes_in = np.concatenate([rate_code(images[k:k + 1], settings.steps, np.random.default_rng([settings.spike_seed, i]))
                                for k, i in enumerate(indices)])
    hidden_spikes = integrate_and_fire(spikes_in, variant.w1, variant.b1, variant.threshold)
    checker.check_vmm(np.full((1, g.wordlines), settings.spike_v), range(2 * CLASSES))
    return InferencePlan(settings, variant, images, labels, indices, hidden_spikes, tuple(range(hidden)),
                         tuple(range(2 * CLASSES)))


def run(instrument: CrossbarInstrument, inference_plan: InferencePlan, chunk_images: int = 200,
        should_stop: Callable[[], bool] | None = None, check_network: bool = True) -> Iterator[ImageRecord]:
    """Send the plan's spikes to ``instrument`` ``chunk_images`` images at a time (one vmm call
    each) and yield an ImageRecord per image. ``should_stop`` is polled between calls.

    First (``check_network``) the network's cells are read once and compared with the variant's
    targets (``network_check``): an array that does not hold this network raises NetworkNotHeld
    before any spike, instead of inferring with whatever it holds."""
    p = inference_plan
    if check_network:
        from rramlab.protocols.network_check import require_held

        require_held(instrument, p.variant)
    steps = p.settings.steps
    W = instrument.geometry.wordlines
    for start in range(0, p.n_images, max(1, int(chunk_images))):
        if should_stop is not None and should_stop():
            return
        spikes = p.hidden_spikes[start:start + chunk_images]
        n = spikes.shape[0]
        volts = p._voltages(spikes, W).reshape(n * steps, W)
        currents = instrument.vmm(volts, list(p.bitlines)).reshape(n, steps, len(p.bitlines))
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
    records = list(records)
    return float(np.mean([r.correct for r in records])) if records else float("nan")


#: the settings class of this protocol (the same shape as every protocol module)
Settings = InferenceSettings
#: the plan class of this protocol
Plan = InferencePlan
#: the record classes ``run`` yields
RECORDS = (ImageRecord,)
