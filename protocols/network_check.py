"""Does the array hold this network? Checked before inference or power, in the CLI, the API and the GUI.

Inference and power read whatever the array holds: on a fresh twin every cell is in HRS, so a run
"finishes" with every image predicted 0 and currents in fA; after another network's transfer it
finishes with that network's numbers. Both are silent wrong results, so before the first spike
the network's cells are read once (one ``read`` of the region, at the transfer's read voltage) and
compared with the variant's differential targets:

* a programmed cell matches when it is within ``tolerance_s`` (4 nS) of its target;
* a cell to leave in HRS matches when it is at or below ``hrs_max_s`` (5 nS, the transfer's own
  acceptance of an HRS cell);
* the array holds the network when at least ``fraction`` (90 %) of the programmed cells and of the
  HRS cells match. A transfer leaves a few cells out of tolerance (out of reach, disturbed), so the
  test is a fraction, not every cell; another network's targets or a fresh chip miss by far more.

``target_fingerprint`` names a set of targets in a few characters: the transfer keeps it with its
run (``target_fingerprint`` in the run's settings), so a run store says which network a transfer
wrote. ``compare`` is pure; ``read_check`` and ``require_held`` make the one read.
Units: siemens, volts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from rramlab.drivers.interface import CrossbarInstrument, RramlabError

__all__ = ["NetworkNotHeld", "HeldCheck", "compare", "read_check", "require_held", "target_fingerprint",
           "network_cells", "TOLERANCE_S", "HRS_MAX_S", "FRACTION"]

#: a programmed cell within this of its target (S) counts as holding it
TOLERANCE_S = 4e-9
#: a cell to leave in HRS at or below this (S) counts as holding it (the transfer's hrs_max default)
HRS_MAX_S = 5e-9
#: the array holds the network when at least this fraction of its programmed and of its HRS cells match
FRACTION = 0.9


class NetworkNotHeld(RramlabError):
    """The array does not hold the network's second layer: inference or power would read something else."""


def target_fingerprint(targets_s) -> str:
    """12 hex digits naming a target map (S, 0.0 = HRS): equal maps, equal fingerprints."""
    t = np.round(np.asarray(targets_s, dtype=float) * 1e9, 3)  # to the pS: float noise does not change it
    return hashlib.sha256(repr((t.shape, t.ravel().tolist())).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class HeldCheck:
    """How the read cells compare with the targets: counts of matching programmed and HRS cells."""

    programmed: int
    programmed_matching: int
    hrs: int
    hrs_matching: int
    rmse_s: float            # over the programmed cells (S)
    fraction: float = FRACTION

    @property
    def held(self) -> bool:
        ok_p = self.programmed == 0 or self.programmed_matching >= self.fraction * self.programmed
        ok_h = self.hrs == 0 or self.hrs_matching >= self.fraction * self.hrs
        return ok_p and ok_h

    def text(self) -> str:
        """'214 of 216 programmed cells within +-4 nS of their targets, 262 of 264 HRS cells at or below 5 nS'."""
        rmse = f" (RMSE {self.rmse_s * 1e9:.1f} nS)" if np.isfinite(self.rmse_s) else ""
        return (f"{self.programmed_matching} of {self.programmed} programmed cells within +-{TOLERANCE_S * 1e9:g} nS "
                f"of their targets{rmse}, {self.hrs_matching} of {self.hrs} HRS cells at or below "
                f"{HRS_MAX_S * 1e9:g} nS")


def compare(conductance_s, targets_s, tolerance_s: float = TOLERANCE_S, hrs_max_s: float = HRS_MAX_S,
            fraction: float = FRACTION) -> HeldCheck:
    """Compare read conductances (S) with targets (S, 0.0 = HRS) of the same shape."""
    g = np.asarray(conductance_s, dtype=float)
    t = np.asarray(targets_s, dtype=float)
    if g.shape != t.shape:
        raise ValueError(f"read conductances {g.shape} and targets {t.shape} differ in shape")
    prog = t > 0
    err = g[prog] - t[prog]
    return HeldCheck(programmed=int(prog.sum()), programmed_matching=int(np.sum(np.abs(err) <= tolerance_s)),
                     hrs=int((~prog).sum()), hrs_matching=int(np.sum(g[~prog] <= hrs_max_s)),
                     rmse_s=float(np.sqrt(np.mean(err ** 2))) if err.size else float("nan"), fraction=fraction)


def network_cells(variant) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(wordlines, bitlines) the second layer occupies: hidden unit i on wordline i, class c on
    bitlines c (positive) and 10 + c (negative), as ``inference.plan`` drives them."""
    hidden, classes = np.asarray(variant.levels2).shape
    return tuple(range(hidden)), tuple(range(2 * classes))


def read_check(instrument: CrossbarInstrument, variant, read_v: float = 1.0, **kwargs) -> HeldCheck:
    """Read the variant's cells once at ``read_v`` (V) and compare them with its targets."""
    wordlines, bitlines = network_cells(variant)
    cells = [(w, b) for w in wordlines for b in bitlines]
    current = np.asarray(instrument.read(cells, read_v), dtype=float).reshape(len(wordlines), len(bitlines))
    return compare(current / read_v, variant.targets_s(), **kwargs)


def require_held(instrument: CrossbarInstrument, variant, read_v: float = 1.0,
                 fix: str = "write it first: transfer.write_levels(instrument, variant.levels2, "
                            "level_spacing_s=network.conductance_step(variant.bits))") -> HeldCheck:
    """``read_check``, raising NetworkNotHeld (what was read, and ``fix``) when the array does not hold
    the variant; returns the check when it does."""
    check = read_check(instrument, variant, read_v)
    if not check.held:
        raise NetworkNotHeld(f"the array does not hold the {variant.title} network's second layer "
                             f"({check.text()}): {fix}")
    return check
