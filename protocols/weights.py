"""Weight files and the mapping of signed weights onto differential conductance targets.

Weight file: a NumPy ``.npz`` with one required array,

* ``levels``: 2-D integers, shape (wordlines used, weight columns), each from -8 to 8: the signed
  3-bit weight in units of one conductance level (10 nS). The paper's second layer is 24 x 10.

Optional arrays (ignored by the transfer, kept for people): ``description`` (a string).

A weight column j becomes a differential pair of bitlines: a positive weight k programs the
pair's *positive* cell to k x 10 nS and leaves the negative cell in HRS; a negative weight the other
way round; 0 leaves both in HRS. The class score is I+ - I-. Mappings (``MAPPINGS``):

* ``blocked`` (the paper's): positive cells on bitlines 0..C-1, negative on C..2C-1 (24 x 10 ->
  positive 0-9, negative 10-19);
* ``interleaved``: pair j on bitlines 2j (positive) and 2j+1 (negative).

Targets are in siemens; ``HRS`` (0.0) marks a cell to leave in (or return to) the high-resistance state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rramlab.drivers.interface import RequestError

__all__ = ["load_weights", "save_weights", "check_levels", "WeightFileError", "differential_targets", "weight_map",
           "pair_bitlines", "MAPPINGS", "MAX_LEVEL", "HRS"]

#: how weight columns map to bitline pairs (see the module docstring)
MAPPINGS = ("blocked", "interleaved")
#: the largest |level|: levels run -8..8, 10 nS each
MAX_LEVEL = 8
LEVEL_SPACING_S = 10e-9
#: the target (S) that marks a cell to leave in the high-resistance state
HRS = 0.0
REQUIRED_ARRAY = "levels"


class WeightFileError(RequestError):
    """A weight file is missing, unreadable or holds something the transfer cannot program."""


def check_levels(levels, where: str = "weights", max_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The levels as an int array, or WeightFileError naming the problem and the fix.

    max_shape: (wordlines, bitlines) of the array; the weights need rows <= wordlines and
    2 x columns <= bitlines.
    """
    try:
        arr = np.asarray(levels)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a bad file
        raise WeightFileError(f"{where}: '{REQUIRED_ARRAY}' cannot be read as numbers ({exc})") from None
    if arr.dtype.kind not in "iuf b":
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


def load_weights(path, max_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read and check a weight file (see the module docstring); returns the int levels."""
    p = Path(path)
    if not p.exists():
        raise WeightFileError(f"weight file {p} does not exist: give an .npz with a '{REQUIRED_ARRAY}' array "
                              "(e.g. examples/weights_24x10.npz)")
    try:
        with np.load(p, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise WeightFileError(f"{p} is a single .npy array, not an .npz: save it with "
                                      f"np.savez(path, {REQUIRED_ARRAY}=...)")
            if REQUIRED_ARRAY not in data.files:
                raise WeightFileError(f"{p} has no '{REQUIRED_ARRAY}' array (it has {sorted(data.files)}): save the "
                                      f"weights with np.savez(path, {REQUIRED_ARRAY}=...)")
            levels = data[REQUIRED_ARRAY]
    except WeightFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - np.load raises many types for a bad file
        raise WeightFileError(f"{p} is not a readable .npz weight file ({type(exc).__name__}: {exc})") from None
    return check_levels(levels, str(p), max_shape)


def save_weights(path, levels, description: str = "") -> Path:
    """Write a weight file (after checking the levels; WeightFileError naming a bad one).

    Example::

        save_weights("w.npz", np.array([[3, -2], [0, 8]]), "a 2 x 2 test layer")
    """
    levels = check_levels(levels)
    p = Path(path)
    with open(p, "wb") as fh:
        np.savez(fh, levels=levels.astype(np.int8), description=np.array(description))
    return p


def pair_bitlines(column: int, columns: int, mapping: str) -> tuple[int, int]:
    """(positive bitline, negative bitline) of weight column ``column`` of ``columns``."""
    if mapping == "blocked":
        return column, columns + column
    if mapping == "interleaved":
        return 2 * column, 2 * column + 1
    raise RequestError(f"mapping {mapping!r} is unknown: use one of {MAPPINGS}")


def differential_targets(levels, mapping: str = "blocked", spacing_s: float = LEVEL_SPACING_S) -> np.ndarray:
    """Conductance target (S) of every cell of the (rows, 2 x columns) region; HRS (0.0) where a cell
    stays in the high-resistance state."""
    levels = np.asarray(levels, dtype=int)
    rows, cols = levels.shape
    targets = np.full((rows, 2 * cols), HRS)
    for j in range(cols):
        pos, neg = pair_bitlines(j, cols, mapping)
        k = levels[:, j]
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
