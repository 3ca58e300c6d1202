"""Weight files and the mapping of signed weights onto differential conductance targets.

Weight file: a NumPy ``.npz``, one format for ``rramlab transfer`` and ``rramlab train`` (which
writes ``NET.qt.weights.npz`` and ``NET.qtpr.weights.npz`` beside the network file):

* ``levels`` (required): 2-D integers, shape (wordlines used, weight columns), each from -8 to 8:
  the signed weight in units of one conductance level. The paper's second layer is 24 x 10.
* ``conductance_step_s`` (optional scalar, S, default 10 nS): the conductance of one level. Level k
  targets k x ``conductance_step_s``, which must stay within the device's 10..80 nS (3 bits: 10 nS,
  levels to 8; 2 bits: 20 nS, levels to 4).

Any other array is ignored by the transfer and kept for people: ``rramlab train`` adds ``targets_s``
(the conductance map the levels give), ``weights``, ``weight_step``, ``conductance_levels_s`` and
``meta``; ``save_weights`` adds ``description``.

A weight column j becomes a differential pair of bitlines: a positive weight k programs the
pair's *positive* cell to k x 10 nS and leaves the negative cell in HRS; a negative weight the other
way round; 0 leaves both in HRS. The class score is I+ - I-. Mappings (``MAPPINGS``):

* ``blocked`` (the paper's): positive cells on bitlines 0..C-1, negative on C..2C-1 (24 x 10 ->
  positive 0-9, negative 10-19);
* ``interleaved``: pair j on bitlines 2j (positive) and 2j+1 (negative).

Targets are in siemens; ``HRS`` (0.0) marks a cell to leave in (or return to) the high-resistance state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rramlab.drivers.interface import RequestError

__all__ = ["load_weights", "save_weights", "check_levels", "WeightFileError", "differential_targets", "weight_map",
           "pair_bitlines", "MAPPINGS", "MAX_LEVEL", "HRS", "load_weight_file", "WeightFile", "check_spacing",
           "LEVEL_SPACING_S", "MIN_TARGET_S", "MAX_TARGET_S"]

#: how weight columns map to bitline pairs (see the module docstring)
MAPPINGS = ("blocked", "interleaved")
#: the largest |level|: levels run -8..8, 10 nS each
MAX_LEVEL = 8
#: the conductance of one weight level (S) unless a weight file says otherwise
LEVEL_SPACING_S = 10e-9
#: the target (S) that marks a cell to leave in the high-resistance state
HRS = 0.0
REQUIRED_ARRAY = "levels"
SPACING_ARRAY = "conductance_step_s"
#: the lowest tuned state (S): a programmed cell's target is at least this
MIN_TARGET_S = 10e-9
#: the highest tuned state (S): a programmed cell's target is at most this
MAX_TARGET_S = 80e-9


class WeightFileError(RequestError):
    """A weight file is missing, unreadable or holds something the transfer cannot program."""


def not_an_npz(path) -> str | None:
    """Why ``path`` is not an .npz archive, from its first bytes (None when it is one): np.load would
    otherwise try to read a text file as pickled data and say so in its own words."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if head.startswith(b"PK\x03\x04"):
        return None
    if not head:
        return "it is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array, not an .npz archive"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 512th byte
            return "it is binary data, not an .npz archive"
    return "it is a text file, not an .npz archive"


def check_levels(levels, where: str = "weights", max_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The levels as an int array, or WeightFileError naming the problem and the fix.

    max_shape: (wordlines, bitlines) of the array; the weights need rows <= wordlines and
    2 x columns <= bitlines.
    """
    try:
        arr = np.asarray(levels)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a bad file
        raise WeightFileError(f"{where}: '{REQUIRED_ARRAY}' cannot be read as numbers ({exc})") from None
    if arr.dtype.kind == "b":  # True would silently become level 1: a mask saved by mistake, most likely
        raise WeightFileError(f"{where}: '{REQUIRED_ARRAY}' holds booleans (True/False), not levels: give integers "
                              f"-{MAX_LEVEL}..{MAX_LEVEL} (e.g. levels.astype(int) if True means level 1)")
    if arr.dtype.kind not in "iuf":
        raise WeightFileError(f"{where}: '{REQUIRED_ARRAY}' holds {arr.dtype} values: give integers -8..8")
    if arr.ndim != 2 or 0 in arr.shape:
        raise WeightFileError(f"{where}: '{REQUIRED_ARRAY}' has shape {arr.shape}; it must be 2-D "
                              "(wordlines, weight columns), e.g. (24, 10)")
    arr = arr.astype(float)
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        r, c = bad[0]
        raise WeightFileError(f"{where}: '{REQUIRED_ARRAY}' has {arr[r, c]} at row {r}, column {c} "
                              f"({len(bad)} non-finite values): every weight must be an integer -8..8")
    bad = np.argwhere(arr != np.round(arr))
    if bad.size:
        r, c = bad[0]
        raise WeightFileError(f"{where}: '{REQUIRED_ARRAY}' has {arr[r, c]:g} at row {r}, column {c}: levels are "
                              "whole numbers -8..8 (quantise the weights first)")
    bad = np.argwhere(np.abs(arr) > MAX_LEVEL)
    if bad.size:
        r, c = bad[0]
        raise WeightFileError(f"{where}: '{REQUIRED_ARRAY}' has level {arr[r, c]:g} at row {r}, column {c} "
                              f"({len(bad)} out of range): levels run from -{MAX_LEVEL} to {MAX_LEVEL} "
                              "(10 to 80 nS)")
    if max_shape is not None:
        rows, cols = arr.shape
        if rows > max_shape[0] or 2 * cols > max_shape[1]:
            raise WeightFileError(
                f"{where}: '{REQUIRED_ARRAY}' has shape {arr.shape}, which needs {rows} wordlines and {2 * cols} "
                f"bitlines (two per weight column); the array has {max_shape[0]} x {max_shape[1]}")
    return arr.astype(int)


def check_spacing(spacing_s, levels, where: str = "weights", pair_zero: str = "hrs") -> float:
    """The conductance per level (S), or WeightFileError: every non-zero level x spacing must be a
    target the device holds (10..80 nS); with ``pair_zero="g1"`` every (|level| + 1) x spacing."""
    try:
        step = float(np.asarray(spacing_s, dtype=float).reshape(()))
    except (TypeError, ValueError):
        raise WeightFileError(f"{where}: '{SPACING_ARRAY}' must be one number in siemens, e.g. 1e-08") from None
    top = int(np.abs(np.asarray(levels)).max(initial=0)) + (1 if pair_zero == "g1" else 0)
    if not np.isfinite(step) or step < MIN_TARGET_S - 1e-15 or top * step > MAX_TARGET_S + 1e-15:
        raise WeightFileError(
            f"{where}: '{SPACING_ARRAY}' {step * 1e9:g} nS with levels up to {top} gives targets up to "
            f"{top * step * 1e9:g} nS; the device holds {MIN_TARGET_S * 1e9:g}..{MAX_TARGET_S * 1e9:g} nS, so give "
            f"at least {MIN_TARGET_S * 1e9:g} nS and at most {MAX_TARGET_S * 1e9:g} nS / the largest level")
    return step


@dataclass(frozen=True)
class WeightFile:
    """A weight file as read: the levels and the conductance of one level (S)."""

    levels: np.ndarray
    level_spacing_s: float = LEVEL_SPACING_S
    path: Path | None = None


def load_weight_file(path, max_shape: tuple[int, int] | None = None) -> WeightFile:
    """Read and check a weight file (see the module docstring): levels and the level spacing."""
    p = Path(path)
    if not p.exists():
        raise WeightFileError(f"weight file {p} does not exist: give an .npz with a '{REQUIRED_ARRAY}' array "
                              "(e.g. examples/weights_24x10.npz)")
    why = not_an_npz(p) if p.is_file() else None
    if why is not None:
        raise WeightFileError(f"{p} is not a readable .npz weight file ({why}): give an .npz with a "
                              f"'{REQUIRED_ARRAY}' array, e.g. "
                              f"np.savez(path, {REQUIRED_ARRAY}=np.loadtxt(text_file, delimiter=',', dtype=int))")
    try:
        with np.load(p, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise WeightFileError(f"{p} is a single .npy array, not an .npz: save it with "
                                      f"np.savez(path, {REQUIRED_ARRAY}=...)")
            if REQUIRED_ARRAY not in data.files:
                raise WeightFileError(f"{p} has no '{REQUIRED_ARRAY}' array (it has {sorted(data.files)}): save the "
                                      f"weights with np.savez(path, {REQUIRED_ARRAY}=...)")
            levels = data[REQUIRED_ARRAY]
            spacing = data[SPACING_ARRAY] if SPACING_ARRAY in data.files else LEVEL_SPACING_S
    except WeightFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - np.load raises many types for a bad file
        raise WeightFileError(f"{p} is not a readable .npz weight file ({type(exc).__name__}: {exc})") from None
    levels = check_levels(levels, str(p), max_shape)
    return WeightFile(levels, check_spacing(spacing, levels, str(p)), p)


def load_weights(path, max_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read and check a weight file (see the module docstring); returns the int levels."""
    return load_weight_file(path, max_shape).levels


def save_weights(path, levels, description: str = "", level_spacing_s: float = LEVEL_SPACING_S, **extra) -> Path:
    """Write a weight file (after checking the levels and the spacing; WeightFileError naming a bad
    one); ``extra`` arrays are stored beside them (ignored by the transfer).

    Example::

        save_weights("w.npz", np.array([[3, -2], [0, 8]]), "a 2 x 2 test layer")
    """
    levels = check_levels(levels)
    step = check_spacing(level_spacing_s, levels)
    p = Path(path)
    with open(p, "wb") as fh:
        np.savez_compressed(fh, levels=levels.astype(np.int8), conductance_step_s=np.float64(step),
                            description=np.array(description), **extra)
    return p


def pair_bitlines(column: int, columns: int, mapping: str) -> tuple[int, int]:
    """(positive bitline, negative bitline) of weight column ``column`` of ``columns``."""
    if mapping == "blocked":
        return column, columns + column
    if mapping == "interleaved":
        return 2 * column, 2 * column + 1
    raise RequestError(f"mapping {mapping!r} is unknown: use one of {MAPPINGS}")


#: what a differential pair holds for a zero weight and on its unused side: "hrs" (no target, left in
#: HRS) or "g1" (the lowest state, one level: the paper's "G6 - G1 realises +5", levels -7..7)
PAIR_ZEROS = ("hrs", "g1")


def differential_targets(levels, mapping: str = "blocked", spacing_s: float = LEVEL_SPACING_S,
                         pair_zero: str = "hrs") -> np.ndarray:
    """Conductance target (S) of every cell of the (rows, 2 x columns) region; HRS (0.0) where a cell
    stays in the high-resistance state. ``pair_zero="g1"``: level k is G(1 + k) on the positive cell
    and G1 on the negative (the reverse for k < 0), G1 on both for 0, so every cell has a target."""
    levels = np.asarray(levels, dtype=int)
    rows, cols = levels.shape
    targets = np.full((rows, 2 * cols), HRS)
    for j in range(cols):
        pos, neg = pair_bitlines(j, cols, mapping)
        k = levels[:, j]
        if pair_zero == "g1":
            targets[:, pos] = (np.maximum(k, 0) + 1) * spacing_s
            targets[:, neg] = (np.maximum(-k, 0) + 1) * spacing_s
        else:
            targets[:, pos] = np.where(k > 0, k * spacing_s, HRS)
            targets[:, neg] = np.where(k < 0, -k * spacing_s, HRS)
    return targets


def weight_map(conductance_s, columns: int, mapping: str = "blocked") -> np.ndarray:
    """G+ - G- (S) of every pair: (rows, columns), from a (rows, 2 x columns) conductance map."""
    g = np.asarray(conductance_s, dtype=float)
    out = np.empty((g.shape[0], columns))
    for j in range(columns):
        pos, neg = pair_bitlines(j, columns, mapping)
        out[:, j] = g[:, pos] - g[:, neg]
    return out
