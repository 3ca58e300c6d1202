"""Average power of the array during spiking inference (paper eqns 1-3).

* eqn 1: a device (i, j) with voltage V_i(t) across it dissipates P_ij(t) = V_i(t)^2 * G_ij; a
  wordline's power is the sum over the bitline devices it meets, sum_j P_ij(t) (bitlines at 0 V).
* eqn 2: P_avg,i = (1/T) * integral_0^T sum_j P_ij(t) dt. The wordline voltages are constant within
  a time step and every step lasts the same, so the integral over T is the mean over the steps.
* eqn 3: P_avg,array = sum_i P_avg,i over the wordlines.

G_ij are the cells' own conductances, measured through the seam (``measure_conductances``: the read
current at the spike voltage divided by that voltage, so V^2 G = V * I at the voltage a spike
applies, non-linearity included). The voltages are the ones inference applied (``InferencePlan``).

The spike's waveform enters through ``spike_conductances``: the conductance G_eff with which a
spike of peak V dissipates V^2 G_eff on average over its step. A rectangle of duty d gives
d x I(V) / V. A triangle (a ramp 0 -> V -> 0) gives d x integral_0^1 (uV) I(uV) du / V^2, integrated
on reads at the waveform's Gauss-Legendre voltages: the device's chord conductance I/V grows with
V, so this is below a third of the rectangle's.

``power_factors`` splits the average into what sets it: P = (active wordlines per step) x (mean
conductance per active wordline, at V) x V^2 x (waveform factor: d for a rectangle, below d/3 for a
triangle), exactly, with every factor measured. Units: W, S, V.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from rramlab.drivers.interface import CrossbarInstrument, RequestChecker, RequestError
from rramlab.protocols.inference import InferencePlan, waveform_nodes
from rramlab.protocols.mnist import CLASSES
from rramlab.protocols.settings import check_settings, setting

__all__ = ["PowerSettings", "PowerPlan", "ImagePower", "plan", "run", "Settings", "Plan", "RECORDS",
           "measure_conductances", "spike_conductances", "wordline_power", "average_wordline_power",
           "average_array_power", "image_power", "per_class", "average", "PowerFactors", "power_factors"]


def measure_conductances(instrument: CrossbarInstrument, wordlines, bitlines, v_read: float = 1.0) -> np.ndarray:
    """(len(wordlines), len(bitlines)) conductances (S): each cell's read current at ``v_read`` / v_read."""
    cells = [(w, b) for w in wordlines for b in bitlines]
    i = instrument.read(cells, v_read)
    return np.asarray(i, dtype=float).reshape(len(wordlines), len(bitlines)) / v_read


def spike_conductances(instrument: CrossbarInstrument, wordlines, bitlines, spike_v: float = 1.0,
                       shape: str = "rect", duty: float = 1.0) -> np.ndarray:
    """(len(wordlines), len(bitlines)) effective conductances (S) of a spike of peak ``spike_v``:
    spike_v^2 x G_eff is each cell's power averaged over a step (see the module docstring).
    rect: duty x I(V) / V, one read; tri: the reads at each of ``inference.waveform_nodes``' voltages
    (fraction u of V), sum_k w_k (u_k V) I(u_k V) / V^2."""
    fractions, weights = waveform_nodes(shape, duty)
    g = np.zeros((len(wordlines), len(bitlines)))
    for u, w in zip(fractions, weights):
        g += w * u ** 2 * measure_conductances(instrument, wordlines, bitlines, u * spike_v)
    return g


def wordline_power(wordline_v: np.ndarray, conductance_s: np.ndarray) -> np.ndarray:
    """Eqn 1 summed over bitlines: (steps, wordlines) W, P_i(t) = V_i(t)^2 * sum_j G_ij.

    wordline_v: (steps, wordlines) V; conductance_s: (wordlines, bitlines) S."""
    v = np.asarray(wordline_v, dtype=float)
    g = np.asarray(conductance_s, dtype=float)
    if v.ndim != 2 or g.ndim != 2 or v.shape[1] != g.shape[0]:
        raise RequestError(f"wordline voltages {v.shape} and conductances {g.shape} do not match: "
                           "need (steps, wordlines) and (wordlines, bitlines)")
    return v ** 2 * g.sum(axis=1)


def average_wordline_power(wordline_v, conductance_s) -> np.ndarray:
    """Eqn 2: P_avg,i (wordlines,) W, the time average of each wordline's power over equal steps."""
    return wordline_power(wordline_v, conductance_s).mean(axis=0)


def average_array_power(wordline_v, conductance_s) -> float:
    """Eqn 3: P_avg,array (W), the sum of P_avg,i over the wordlines."""
    return float(average_wordline_power(wordline_v, conductance_s).sum())


@dataclass(frozen=True)
class ImagePower:
    """Power of one image's inference. Watts."""

    image: int
    label: int
    average_w: float              # P_avg,array (eqn 3)
    wordline_average_w: np.ndarray  # P_avg,i (eqn 2), (hidden,)
    array_power_w: np.ndarray       # sum_i P_i(t), (steps,): the power over time
    spike_rate: float               # hidden spikes per wordline per step


def image_power(inference_plan: InferencePlan, conductance_s: np.ndarray) -> list[ImagePower]:
    """Power of every image of a plan with the array's conductances (hidden, bitlines) in S: the
    chord conductances at the spike voltage for a full-step rectangle, else ``spike_conductances``."""
    p = inference_plan
    g = np.asarray(conductance_s, dtype=float)
    if g.shape[0] != len(p.wordlines):
        raise RequestError(f"conductance map has {g.shape[0]} wordlines, the plan drives {len(p.wordlines)}")
    out = []
    for k in range(p.n_images):
        v = p.hidden_spikes[k] * p.settings.spike_v
        pw = wordline_power(v, g)
        out.append(ImagePower(int(p.indices[k]), int(p.labels[k]), float(pw.mean(axis=0).sum()),
                              pw.mean(axis=0), pw.sum(axis=1), float(p.hidden_spikes[k].mean())))
    return out


def per_class(powers: list[ImagePower], classes: int = CLASSES) -> np.ndarray:
    """Mean P_avg,array (W) of each class's images, (classes,); nan for a class with none."""
    out = np.full(classes, np.nan)
    for c in range(classes):
        vals = [p.average_w for p in powers if p.label == c]
        if vals:
            out[c] = float(np.mean(vals))
    return out


def average(powers: list[ImagePower]) -> float:
    """Mean P_avg,array (W) over the images."""
    return float(np.mean([p.average_w for p in powers])) if powers else float("nan")


@dataclass(frozen=True)
class PowerFactors:
    """What sets the average power of a set of images: power_w = active_wordlines_per_step x
    conductance_per_active_wordline_s x spike_v^2 x waveform_factor (exact). W, S, V."""

    power_w: float                              # mean P_avg,array over the images
    active_wordlines_per_step: float            # spiking wordlines per time step, mean over images and steps
    conductance_per_active_wordline_s: float    # sum_j G_ij (chord at spike_v) of a spiking wordline, spike-weighted
    spike_v: float
    waveform_factor: float                      # rect: duty; tri: below duty / 3 (the device's I(V))
    spike: str                                  # e.g. "rect 1 V"
    wordlines: int                              # wordlines the network drives

    @property
    def hidden_spike_rate(self) -> float:
        """Spikes per wordline per step."""
        return self.active_wordlines_per_step / self.wordlines

    def active_wordlines_for(self, power_w: float) -> float:
        """Active wordlines per step that would give ``power_w`` at these conductances and this spike."""
        denominator = self.conductance_per_active_wordline_s * self.spike_v ** 2 * self.waveform_factor
        return power_w / denominator if denominator > 0 else float("nan")

    def line(self) -> str:
        """One line: e.g. "1164 nW = 4.63 active wordlines/step x 240 nS per wordline x (1 V)^2"."""
        wave = "" if abs(self.waveform_factor - 1.0) < 1e-9 else \
            f" x {self.waveform_factor:.3f} ({self.spike} waveform)"
        return (f"{self.power_w * 1e9:.0f} nW = {self.active_wordlines_per_step:.2f} active wordlines/step x "
                f"{self.conductance_per_active_wordline_s * 1e9:.0f} nS per wordline x ({self.spike_v:g} V)^2{wave}")

    def as_dict(self) -> dict:
        """JSON-ready, SI units (keys documented in the README)."""
        return {"power_w": self.power_w, "active_wordlines_per_step": self.active_wordlines_per_step,
                "conductance_per_active_wordline_s": self.conductance_per_active_wordline_s,
                "spike_v": self.spike_v, "waveform_factor": self.waveform_factor, "spike": self.spike,
                "hidden_spike_rate": self.hidden_spike_rate}


def power_factors(inference_plan: InferencePlan, conductance_s: np.ndarray,
                  effective_conductance_s: np.ndarray | None = None) -> PowerFactors:
    """The factors of the plan's average power: ``conductance_s`` (hidden, bitlines) the chord
    conductances at the spike voltage (S), ``effective_conductance_s`` those of the waveform
    (``spike_conductances``; default: the same, a full-step rectangle)."""
    p = inference_plan
    g = np.asarray(conductance_s, dtype=float)
    g_eff = g if effective_conductance_s is None else np.asarray(effective_conductance_s, dtype=float)
    spikes = p.hidden_spikes.astype(float)                 # (images, steps, hidden)
    v = p.settings.spike_v
    power_w = average(image_power(p, g_eff))
    active = float(spikes.sum(axis=2).mean())
    per_wordline = g.sum(axis=1)                           # (hidden,)
    n_active = float(spikes.sum())
    g_active = float((spikes.sum(axis=(0, 1)) * per_wordline).sum() / n_active) if n_active else float("nan")
    base = active * g_active * v ** 2
    factor = power_w / base if base > 0 else float("nan")
    return PowerFactors(power_w, active, g_active, v, factor, p.settings.describe_spike(), len(p.wordlines))


# ----- the protocol shape: settings, plan, run -----

@dataclass(frozen=True)
class PowerSettings:
    """How the cells' conductances are measured for the power estimate."""

    conductance_read_v: float = setting(1.0, "read voltage at which each cell's conductance is measured "
                                             "(the spike voltage, so V^2 G = V I at that voltage)", "V", soa="read")

    def validate(self, limits=None) -> None:
        """Check every setting against its declaration and ``limits`` (a SafeOperatingArea)."""
        check_settings(self, limits)


@dataclass(frozen=True)
class PowerPlan:
    """A validated power estimate: the inference whose spikes drive the wordlines, and the reads."""

    settings: PowerSettings
    inference: InferencePlan


def plan(settings: PowerSettings, inference_plan: InferencePlan,
         checker: RequestChecker | None = None) -> PowerPlan:
    """Validate the conductance reads of every cell the inference drives; touches no instrument."""
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    fractions, _ = waveform_nodes(inference_plan.settings.spike_shape, inference_plan.settings.spike_duty)
    for u in fractions:  # every read of the waveform's voltages
        checker.check_read_voltage(u * settings.conductance_read_v)
    checker.check_cells([(w, b) for w in inference_plan.wordlines for b in inference_plan.bitlines])
    return PowerPlan(settings, inference_plan)


def run(instrument: CrossbarInstrument, power_plan: PowerPlan,
        should_stop: Callable[[], bool] | None = None, check_network: bool = True) -> Iterator[ImagePower]:
    """Measure the conductances of the cells the inference drives (one read of all of them per
    voltage of the spike's waveform, ``spike_conductances``), then yield an ImagePower per image of
    the plan (eqns 1-3). ``should_stop`` is polled between images. ``check_network``: first make sure
    the array holds the plan's network (``network_check``; NetworkNotHeld otherwise), so the power is
    that network's, not what the array happens to hold."""
    p = power_plan.inference
    if check_network:
        from rramlab.protocols.network_check import require_held

        require_held(instrument, p.variant)
    g = spike_conductances(instrument, p.wordlines, p.bitlines, power_plan.settings.conductance_read_v,
                           p.settings.spike_shape, p.settings.spike_duty)
    for record in image_power(p, g):
        if should_stop is not None and should_stop():
            return
        yield record


#: the settings class of this protocol (the same shape as every protocol module)
Settings = PowerSettings
#: the plan class of this protocol
Plan = PowerPlan
#: the record classes ``run`` yields
RECORDS = (ImagePower,)
