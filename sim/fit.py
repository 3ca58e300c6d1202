"""Fit the compact model (sim/device.py) to a chip's own measurements, cell by cell, then the chip.

What each kind of record constrains (and what it cannot):

- ISPP pulse records (a set ramp then a reset ramp, a 1 V read after every pulse). A set pulse that
  lifts the read current by a level turns a switch on: its turn-on threshold lies between that
  pulse and the one before (one pulse step); a pulse that lifts it by part of a level turned a
  switch partly on (partial_on_fraction), which places the threshold to within a few mV. The size
  of each step gives that switch's on-resistance. The reset ramp's drops give the turn-off
  thresholds to within a reset step; a switch already off after the first reset pulse is known only
  to turn off above that pulse (one-sided), and one still on after the last only below it. The
  HRS read fixes Rs's prefactor (switching_r0) and the top levels Ri's (insulator_r0), at the read
  voltage only: Rs's and Ri's V0 and k (the non-linearity) need reads at several voltages (an I-V
  sweep), and the wire and contact resistance (tens of ohms against megohms) change a 1 V read by
  less than 1e-4 of itself: those keep their prior and are marked free.
- Two switches that turn on at the same pulse share one step: only the sum of their on-conductances
  is constrained; each keeps the prior's share of it and both are marked "shared".

The fit per cell: step detection on the model's structure gives the initial guess (which switch
turned on at which pulse, the on-resistances from the step heights), then
``scipy.optimize.least_squares`` on the read currents, with bounds: every turn-on threshold stays
inside the bracket the step detection found (the reads say nothing outside it, and without the
bound an unconstrained threshold would drift to where the model no longer reproduces the steps)
and the resistances stay positive (they are fitted as logarithms within physical limits).
Uncertainties come from the Jacobian at the solution (covariance (J^T J)^-1 times the residual
variance); a bracketed threshold whose reads do not place it inside its bracket gets the bracket's
uniform-distribution sigma (width / sqrt(12)) instead.

The chip: the mean and spread of every fitted parameter over the fitted cells (``ChipDistribution``);
the cells that were not measured get draws from those (a statistical twin: their own values are
unknown), the measured ones their fitted values (``fitted_chip``).

Units: volts, ohms, amperes (nA only in reports).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from rramlab.drivers.interface import RequestError
from rramlab.sim.device import DeviceParameters, device_preset, partial_on_fraction, PARTIAL_FLOOR
from rramlab.sim.nodal import device_current_exact

__all__ = ["FIT_VERSION", "CellSequence", "CellFit", "ChipDistribution", "ChipFit", "FitError",
           "sequences_from_ispp", "fit_cell", "fit_cells", "chip_distribution", "fitted_chip",
           "FIT_PROTOCOLS", "MIN_RECORDS_PER_CELL"]

#: version of the fit block in a chip file (virtual_array.FIT_BLOCK_VERSION); a newer one is refused
from rramlab.sim.virtual_array import FIT_BLOCK_VERSION as FIT_VERSION  # noqa: E402
#: protocols whose records the fit reads
FIT_PROTOCOLS = ("ispp",)
#: a cell needs at least one whole set ramp and a reset pulse; fewer records constrain nothing
MIN_RECORDS_PER_CELL = 10
#: a read that rises by at least this fraction of the prior's smallest level step counts as a step
STEP_FRACTION = 0.1
#: resistances are fitted as ln(ohm) inside these limits (ohm)
RON_BOUNDS = (1e3, 1e10)
R0_BOUNDS = (1e2, 1e12)
#: a fitted on-resistance whose relative uncertainty exceeds this is left at its prior, marked free
WEAK_RELATIVE_SD = 0.5
#: a read-current change (A) below which a parameter is taken as unseen by the reads
SEEN_A = 0.1e-9


class FitError(RequestError):
    """Input the fit cannot use (wrong protocol, another chip, too few records, a newer chip file):
    one line naming the problem and the fix."""


@dataclass(frozen=True)
class CellSequence:
    """The pulses a cell saw and the read after each, in time order. Volts and amperes.

    pulse_v: (m,) pulse amplitudes; read_a: (m,) read current after each; read_v: the read voltage;
    phase: (m,) "set" / "reset"; cycle: (m,) cycle numbers; runs: the run ids they came from.
    """

    wordline: int
    bitline: int
    pulse_v: np.ndarray
    read_a: np.ndarray
    read_v: float
    phase: tuple
    cycle: np.ndarray
    set_step_v: float
    reset_step_v: float
    runs: tuple = ()


@dataclass
class CellFit:
    """The fitted model of one cell. Arrays are per switch, in turn-on order (volts, ohms).

    *_sigma: one-standard-deviation uncertainties; turn_on_kind / turn_off_kind per switch:
    "fitted" (placed by partial reads), "bracketed" (within one pulse step), "shared" (two switches
    in one step), "one-sided" (only a bound is known; the prior's value, clipped to it), "prior"
    (no data). free: names of the parameters the data leave free (kept at their prior).
    rms_a: root-mean-square of measured minus fitted read currents (A).
    """

    wordline: int
    bitline: int
    turn_on_v: np.ndarray
    turn_on_sigma: np.ndarray
    turn_on_kind: list
    turn_off_v: np.ndarray
    turn_off_sigma: np.ndarray
    turn_off_kind: list
    on_resistance: np.ndarray
    on_resistance_sigma: np.ndarray
    insulator_r0: float
    insulator_r0_sigma: float
    switching_r0: float
    switching_r0_sigma: float
    free: list
    rms_a: float
    records: int
    runs: tuple = ()
    measured_a: np.ndarray = field(default=None, repr=False)
    fitted_a: np.ndarray = field(default=None, repr=False)
    pulse_v: np.ndarray = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """JSON-ready (SI units), without the curves."""
        out = {}
        for k, v in asdict(self).items():
            if k in ("measured_a", "fitted_a", "pulse_v"):
                continue
            out[k] = v.tolist() if isinstance(v, np.ndarray) else (list(v) if isinstance(v, tuple) else v)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "CellFit":
        d = dict(d)
        for k in ("turn_on_v", "turn_on_sigma", "turn_off_v", "turn_off_sigma", "on_resistance",
                  "on_resistance_sigma"):
            d[k] = np.asarray(d[k], float)
        d["runs"] = tuple(d.get("runs", ()))
        return cls(**d)


# ----- records to sequences ---------------------------------------------------------------------

def sequences_from_ispp(rows, settings: dict, run_id=None) -> list[CellSequence]:
    """One CellSequence per cell from ISPP record dicts (``IsppRecord`` fields: cycle, phase, step,
    pulse_v, read_a, wordline, bitline) in the order taken, and the run's settings dict."""
    by_cell: dict = {}
    for r in rows:
        by_cell.setdefault((int(r["wordline"]), int(r["bitline"])), []).append(r)
    out = []
    for (w, b), rs in by_cell.items():
        out.append(CellSequence(
            w, b, np.array([r["pulse_v"] for r in rs], float), np.array([r["read_a"] for r in rs], float),
            float(settings.get("read_v", 1.0)), tuple(r["phase"] for r in rs),
            np.array([r["cycle"] for r in rs], int), float(settings.get("set_step_v", 0.025)),
            float(settings.get("reset_step_v", 0.05)), () if run_id is None else (run_id,)))
    return out


# ----- the forward model of one cell ------------------------------------------------------------

def _read_currents(g_bank, read_v, prior: DeviceParameters, switching_r0, insulator_r0):
    """Read current (A) at ``read_v`` of a device whose switch bank conducts ``g_bank`` (S, array)."""
    p = replace(prior, switching_r0=float(switching_r0))
    g = np.asarray(g_bank, float)
    # a cell's reads repeat a few levels: solve each distinct one once
    unique, inverse = np.unique(g, return_inverse=True)
    return device_current_exact(read_v, unique, p, insulator_r0=float(insulator_r0))[0][inverse].reshape(g.shape)


def _simulate_states(seq: CellSequence, turn_on, turn_off, window):
    """(m, n) on-fraction of every switch after each pulse (0 when off), every cell starting in HRS;
    the switching rules of the twin (next_switch_states, partial_on_fraction)."""
    n = len(turn_on)
    on = np.zeros(n, bool)
    frac = np.ones(n)
    out = np.zeros((len(seq.pulse_v), n))
    for i, v in enumerate(seq.pulse_v):
        if v > 0:
            over = v - turn_on
            newly = (over > 0) & ~on
            f = partial_on_fraction(over, window)
            driven = on & (over > 0)
            frac = np.where(newly, f, np.where(driven, np.maximum(frac, f), frac))
            on = on | newly
        elif v < 0:
            off = v < turn_off
            on = on & ~off
            frac = np.where(off, 1.0, frac)
        out[i] = np.where(on, frac, 0.0)
    return out


# ----- step detection (the initial guess) ---------------------------------------------------------

def _prior_levels(prior: DeviceParameters, read_v: float) -> np.ndarray:
    """Read currents (A) with the k lowest-threshold switches of the prior on, k = 0..n."""
    order = np.argsort(prior.turn_on_thresholds())
    g_on = 1.0 / np.array([s.on_resistance for s in prior.switches])[order]
    g = np.concatenate([[0.0], np.cumsum(g_on)])
    return _read_currents(g, read_v, prior, prior.switching_r0, prior.insulator_r0)


def _count_on(read_a, levels):
    """Switches on (a float: a partly-on switch counts its fraction) for each read, interpolated on
    the prior's levels (A)."""
    return np.interp(read_a, levels, np.arange(len(levels)))


def _ramps(seq: CellSequence, phase: str):
    """Index arrays of each contiguous ramp of ``phase`` (one per cycle)."""
    idx = [i for i, p in enumerate(seq.phase) if p == phase]
    ramps, cur = [], []
    for i in idx:
        if cur and (i != cur[-1] + 1 or seq.cycle[i] != seq.cycle[cur[-1]]):
            ramps.append(np.array(cur))
            cur = []
        cur.append(i)
    if cur:
        ramps.append(np.array(cur))
    return ramps


def _detect(seq: CellSequence, prior: DeviceParameters):
    """Initial guess from the model's structure (the set ramps). Returns (turn_on, on_lo, on_hi,
    on_kind, ron), per switch in turn-on order."""
    n = prior.n_switches
    levels = _prior_levels(prior, seq.read_v)
    order = np.argsort(prior.turn_on_thresholds())
    prior_on = prior.turn_on_thresholds()[order]
    prior_off = prior.turn_off_thresholds()[order]
    prior_ron = np.array([s.on_resistance for s in prior.switches])[order]
    step = seq.set_step_v
    # ---- turn-on: the jumps of each ramp's reads. A jump of part of a level followed by the rest
    # at the next pulse is one switch turned partly on, then fully; a jump of m levels is m switches.
    window = prior.partial_window_v
    ests = [[] for _ in range(n)]
    partial_of = [[] for _ in range(n)]
    # a jump must stand out of the read noise: 5 sigma of the difference of two reads, sigma from the
    # median absolute difference (most consecutive reads sit on one level)
    diffs = np.abs(np.diff(seq.read_a))
    noise_sd = 1.4826 * float(np.median(diffs)) if diffs.size else 0.0
    noise_floor = max(STEP_FRACTION * float(np.min(np.diff(levels))), 1.5e-9, 5.0 * noise_sd)
    for ramp in _ramps(seq, "set"):
        reads = seq.read_a[ramp]
        volts = seq.pulse_v[ramp]
        if _count_on(reads[:1], levels)[0] > 0.5:  # not started in HRS: its steps are not the thresholds'
            continue
        d = np.diff(np.concatenate([[reads[0]], reads]))
        d[0] = 0.0
        jumps = [j for j in range(1, len(reads)) if d[j] > noise_floor]
        k = 0          # switches fully on so far
        plateau = reads[0]
        skip = set()
        for j in jumps:
            if j in skip or k >= n:
                continue
            level = levels[min(k + 1, n)] - levels[k]
            frac = (reads[j] - plateau) / level
            # part of a level, and the next pulse jumps too: this switch partly on at volts[j], fully
            # at volts[j + 1], with any other switches that turned on there (a level each)
            if frac < 0.95 and j + 1 in jumps:
                both = reads[j + 1] - plateau
                total = max(1, int(round(_count_on(np.array([reads[j + 1]]), levels)[0]
                                         - _count_on(np.array([plateau]), levels)[0])))
                f = float(np.clip((reads[j] - plateau) / (both / total), PARTIAL_FLOOR, 1.0))
                partial_of[k].append((volts[j], f, volts[j - 1]))
                ests[k].append((volts[j - 1], volts[j]))
                k += 1
                for _ in range(min(total - 1, n - k)):
                    ests[k].append((volts[j], volts[j + 1] - window))
                    k += 1
                skip.add(j + 1)
                plateau = reads[j + 1]
                continue
            m = max(1, int(round(_count_on(np.array([reads[j]]), levels)[0] - _count_on(np.array([plateau]), levels)[0])))
            for _ in range(min(m, n - k)):
                # fully on at volts[j] and not before: the threshold is in (volts[j-1], volts[j] - window]
                ests[k].append((volts[j - 1], volts[j] - window))
                k += 1
            plateau = reads[j]
    turn_on = prior_on.copy()
    lo, hi = prior_on - 10 * step, prior_on + 10 * step
    kind = ["prior"] * n
    for k in range(n):
        if not ests[k]:
            continue
        v_lo = max(e[0] for e in ests[k])
        v_hi = min(e[1] for e in ests[k])
        if v_lo >= v_hi:  # cycles disagree (noise): their widest bracket
            v_lo, v_hi = min(e[0] for e in ests[k]), max(e[1] for e in ests[k])
        kind[k] = "bracketed"
        if partial_of[k]:
            v_p, f, v_before = partial_of[k][0]
            # partly on at v_p: the threshold is f * window below it, in (v_before, v_p)
            turn_on[k] = v_p - f * window
            lo[k], hi[k] = v_before, v_p
            kind[k] = "fitted"
        else:
            turn_on[k] = 0.5 * (v_lo + v_hi)
            lo[k], hi[k] = v_lo, v_hi
    for k in range(1, n):
        if kind[k] != "prior" and kind[k - 1] != "prior" and abs(turn_on[k] - turn_on[k - 1]) < 1e-9 \
                and kind[k] == "bracketed":
            kind[k] = kind[k - 1] = "shared"
    # ---- on-resistance from the step heights: the conductance the count k adds at the ramp's top
    g_levels = _conductance_of_levels(seq, prior, levels)
    ron = prior_ron.copy()
    if g_levels is not None:
        dg = np.diff(g_levels)
        for k in range(n):
            if dg[k] > 0:
                ron[k] = 1.0 / dg[k]
    return turn_on, lo, hi, kind, ron


def _conductance_of_levels(seq, prior, levels):
    """Switch-bank conductance (S) with k switches on, k = 0..n, from the reads whose count is
    (near) the whole number k, by inverting the prior's read current. None if a level is missing."""
    n = prior.n_switches
    set_idx = np.array([i for i, p in enumerate(seq.phase) if p == "set"])
    if set_idx.size == 0:
        return None
    counts = _count_on(seq.read_a[set_idx], levels)
    g_grid = np.concatenate([[0.0], np.geomspace(1e-10, 1e-3, 4000)])
    i_grid = _read_currents(g_grid, seq.read_v, prior, prior.switching_r0, prior.insulator_r0)
    out = np.zeros(n + 1)
    for k in range(n + 1):
        near = np.abs(counts - k) < 0.25
        if not near.any():
            return None
        out[k] = np.interp(np.median(seq.read_a[set_idx][near]), i_grid, g_grid)
    return out


def _superset_min(cost: np.ndarray, n: int) -> np.ndarray:
    """For every subset s of n switches, the smallest cost over its supersets (switches only turn
    off during a reset ramp)."""
    out = cost.copy()
    for k in range(n):
        bit = 1 << k
        idx = np.arange(out.size)
        without = (idx & bit) == 0
        out[without] = np.minimum(out[without], out[idx[without] | bit])
    return out


#: spread (V) of a turn-off threshold about the prior's, the prior's weight in the reset ramp's
#: path when reads alone cannot tell two sets of switches apart (the twin's VT spread is 20 mV)
TURN_OFF_PRIOR_SD_V = 0.04


def _detect_turn_off(seq, prior, ron, prior_off, r0s, r0i, read_sd_a, start_on=None):
    """Turn-off thresholds from the reset ramps: the most likely path of on-switch sets through each
    ramp (switches only turn off; dynamic programming over the 2^n sets), scored by the reads
    (sd ``read_sd_a``) and, weakly, by the prior's turn-off thresholds. Returns (turn_off, lo, hi, kind)."""
    n = len(ron)
    S = 2 ** n
    masks = ((np.arange(S)[:, None] >> np.arange(n)) & 1).astype(bool)
    i_sub = _read_currents(masks @ (1.0 / ron), seq.read_v, prior, r0s, r0i)
    brackets = [[] for _ in range(n)]
    sd = TURN_OFF_PRIOR_SD_V
    for ramp in _ramps(seq, "reset"):
        volts = seq.pulse_v[ramp]
        cost = np.full(S, np.inf)
        cost[S - 1 if start_on is None else start_on] = 0.0
        back = []
        for j, i in enumerate(ramp):
            v = volts[j]
            prev_best = _superset_min(cost, n)
            # which superset each came from: recomputed below by a scan (small: 2^n x 2^n at most)
            local = ((i_sub - seq.read_a[i]) / read_sd_a) ** 2
            # still on below the prior's turn-off: unlikely in proportion to the distance
            local += np.sum(np.where(masks & (v < prior_off), ((prior_off - v) / sd) ** 2, 0.0), axis=1)
            back.append(cost)
            cost = prev_best + local
        # trace back: from the best end state, the superset path
        s = int(np.argmin(cost))
        path = [s]
        for j in range(len(ramp) - 1, 0, -1):
            prev = back[j]
            sup = np.nonzero((np.arange(S) & s) == s)[0]
            s = int(sup[np.argmin(prev[sup])])
            path.append(s)
        path.reverse()
        on = np.ones(n, bool) if start_on is None else masks[start_on]
        prev_v = None
        for j, s in enumerate(path):
            now = masks[s]
            for k in np.nonzero(on & ~now)[0]:
                brackets[k].append((volts[j], prev_v))  # off at volts[j], on at prev_v (None: first pulse)
            on = now
            prev_v = volts[j]
        for k in np.nonzero(on)[0]:
            brackets[k].append((None, prev_v))  # still on after the ramp: turns off below its last pulse
    off = prior_off.copy()
    lo = prior_off - 1.0
    hi = prior_off + 1.0
    kind = ["prior"] * n
    for k in range(n):
        if not brackets[k]:
            continue
        los = [b[0] for b in brackets[k] if b[0] is not None]
        his = [b[1] for b in brackets[k] if b[1] is not None]
        v_lo = max(los) if los else None
        v_hi = min(his) if his else None
        if v_lo is not None and v_hi is not None and v_lo < v_hi:
            off[k] = 0.5 * (v_lo + v_hi)
            lo[k], hi[k] = v_lo, v_hi
            kind[k] = "bracketed"
        elif v_lo is not None and v_hi is None:
            # off at the first reset pulse: only "above v_lo" is known
            off[k] = prior_off[k] if prior_off[k] > v_lo else v_lo + 0.5 * seq.reset_step_v
            lo[k], hi[k] = v_lo, np.inf
            kind[k] = "one-sided"
        elif v_hi is not None and v_lo is None:
            off[k] = prior_off[k] if prior_off[k] < v_hi else v_hi - 0.5 * seq.reset_step_v
            lo[k], hi[k] = -np.inf, v_hi
            kind[k] = "one-sided"
        else:  # the cycles disagree: their widest bracket
            v_lo, v_hi = min(los), max(his)
            off[k] = 0.5 * (v_lo + v_hi)
            lo[k], hi[k] = v_lo, v_hi
            kind[k] = "bracketed"
    return off, lo, hi, kind


# ----- the fit of one cell ----------------------------------------------------------------------

def fit_cell(seq: CellSequence, prior: DeviceParameters | None = None) -> CellFit:
    """Fit one cell's switches, Rs and Ri prefactors to its pulse records (see the module docstring).
    ``prior``: the model the cell is assumed to be a variant of (default: the "measured" preset).

    Three steps: the set ramps' steps give the turn-on brackets and a first RON; least squares on
    the set ramps' reads gives RON, Ri's and Rs's prefactors and the partly-on thresholds; with
    those the reset ramps' most likely paths give the turn-off brackets; least squares on every
    read then gives the final values and, from its Jacobian, their uncertainties."""
    from scipy.optimize import least_squares

    prior = prior or device_preset("measured")
    if len(seq.read_a) < MIN_RECORDS_PER_CELL:
        raise FitError(f"cell {seq.wordline},{seq.bitline} has {len(seq.read_a)} records; the fit needs at least "
                       f"{MIN_RECORDS_PER_CELL} (a whole ISPP set ramp and reset ramp): measure it with "
                       "`rramlab ispp --cycles 1` or more")
    n = prior.n_switches
    on0, lo, hi, on_kind, ron0 = _detect(seq, prior)
    prior_off = prior.turn_off_thresholds()[np.argsort(prior.turn_on_thresholds())]
    window = prior.partial_window_v
    fit_thr = np.array([k == "fitted" for k in on_kind])
    prior_ron = np.array([s.on_resistance for s in prior.switches])[np.argsort(prior.turn_on_thresholds())]
    # an on-resistance that cannot move its own level by SEEN_A when it changes by 10 % (the top
    # switch's 50 kohm in series with Ri's 12 Mohm) is not fitted: prior kept, marked free. Fitting it
    # trades it against Ri's prefactor, which the top level does constrain.
    g_cum = np.cumsum(1.0 / prior_ron)
    base = _read_currents(g_cum, seq.read_v, prior, prior.switching_r0, prior.insulator_r0)
    nudged = _read_currents(g_cum - (1.0 / prior_ron) * (1 - 1 / 1.1), seq.read_v, prior, prior.switching_r0,
                            prior.insulator_r0)
    weak_ron = np.abs(base - nudged) < SEEN_A
    ron0 = np.where(weak_ron, prior_ron, ron0)
    scale = 1e9  # residuals in nA: well scaled for the solver
    set_reads = np.array([p == "set" for p in seq.phase])

    def unpack(x):
        thr = on0.copy()
        thr[fit_thr] = x[n + 2:]
        ron = np.where(weak_ron, prior_ron, np.exp(x[:n]))
        return ron, np.exp(x[n]), np.exp(x[n + 1]), thr

    states: dict = {}

    def currents(x, off):
        ron, r0i, r0s, thr = unpack(x)
        key = (thr.tobytes(), off.tobytes())  # the Jacobian's RON columns leave the states as they are
        frac = states.get(key)
        if frac is None:
            frac = states[key] = _simulate_states(seq, thr, off, window)
        return _read_currents(frac @ (1.0 / ron), seq.read_v, prior, r0s, r0i)

    lb = np.concatenate([np.full(n, math.log(RON_BOUNDS[0])), np.full(2, math.log(R0_BOUNDS[0])),
                         lo[fit_thr] + 1e-6])
    ub = np.concatenate([np.full(n, math.log(RON_BOUNDS[1])), np.full(2, math.log(R0_BOUNDS[1])),
                         hi[fit_thr] - 1e-6])
    # finite-difference steps: 1e-4 of ln R (0.01 %), about 0.1 mV on a threshold
    diff_step = np.concatenate([np.full(n + 2, 1e-4), np.full(int(fit_thr.sum()), 3e-5)])

    def solve(x0, off, mask):
        def residuals(x):
            return (currents(x, off) - seq.read_a)[mask] * scale
        return least_squares(residuals, np.clip(x0, lb + 1e-9, ub - 1e-9), bounds=(lb, ub), method="trf",
                             x_scale="jac", diff_step=diff_step, xtol=1e-10, ftol=1e-10, max_nfev=200)

    x0 = np.concatenate([np.log(ron0), [math.log(prior.insulator_r0), math.log(prior.switching_r0)], on0[fit_thr]])
    first = solve(x0, prior_off, set_reads)
    ron1, r0i1, r0s1, _ = unpack(first.x)
    read_sd = max(float(np.sqrt(np.mean(first.fun ** 2))) / scale, 0.05e-9)
    off, off_lo, off_hi, off_kind = _detect_turn_off(seq, prior, ron1, prior_off, r0s1, r0i1, read_sd)
    sol = solve(first.x, off, np.ones(len(seq.read_a), bool))
    x = sol.x
    res = sol.fun / scale
    m, p = len(res), len(x)
    sigma2 = float(np.sum(res ** 2) / max(m - p, 1)) * scale ** 2
    jtj = sol.jac.T @ sol.jac
    cov = np.linalg.pinv(jtj) * max(sigma2, 1e-12)  # floor: 1e-6 nA, the reads' own rounding
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    col = np.sqrt(np.diag(jtj))
    ron, r0i, r0s, thr = unpack(x)
    ron_sd = ron * sd[:n]
    free = ["switching_v0", "switching_k", "insulator_v0", "insulator_k", "contact_r", "wire_resistance"]
    if col[n] < 1e-6:
        free.append("insulator_r0")
        r0i = prior.insulator_r0
    if col[n + 1] < 1e-6:
        free.append("switching_r0")
        r0s = prior.switching_r0
    on_sd = np.where(np.isfinite(hi - lo), (hi - lo) / math.sqrt(12.0), np.nan)
    if fit_thr.any():
        idx = np.nonzero(fit_thr)[0]
        on_sd[idx] = np.maximum(sd[n + 2:], 1e-6)
        for j, k in enumerate(idx):
            if col[n + 2 + j] < 1e-6:  # the reads did not place it after all (fully on at once)
                on_kind[k] = "bracketed"
                on_sd[k] = (hi[k] - lo[k]) / math.sqrt(12.0)
    for k in range(n):
        if weak_ron[k]:
            free.append(f"on_resistance {k} (a 10 % change moves its level by under {SEEN_A * 1e9:g} nA)")
            ron_sd[k] = np.nan
        elif on_kind[k] == "prior":
            free.append(f"switch {k} (no step seen)")
            ron_sd[k] = np.nan
        elif not ron_sd[k] < WEAK_RELATIVE_SD * ron[k]:
            # the reads barely see this RON (the top switch's 50 kohm in series with Ri's 12 Mohm):
            # keep the prior's, marked free, with the fit's own (large) uncertainty
            free.append(f"on_resistance {k} (weak: +-{100 * ron_sd[k] / ron[k]:.0f} %)")
            ron[k] = prior_ron[k]
    off_sd = np.array([(h - l) / math.sqrt(12.0) if np.isfinite(h - l) else np.nan for l, h in zip(off_lo, off_hi)])
    fitted = currents(x, off)
    return CellFit(seq.wordline, seq.bitline, thr, on_sd, on_kind, off, off_sd, off_kind, ron, ron_sd,
                   float(r0i), float(r0i * sd[n]), float(r0s), float(r0s * sd[n + 1]), free,
                   float(np.sqrt(np.mean((fitted - seq.read_a) ** 2))), len(seq.read_a), seq.runs,
                   measured_a=seq.read_a, fitted_a=fitted, pulse_v=seq.pulse_v)


def _fit_one(args):
    seq, prior = args
    return fit_cell(seq, prior)


def fit_cells(sequences, prior: DeviceParameters | None = None, workers: int = 1) -> list[CellFit]:
    """fit_cell for every sequence; ``workers`` > 1 spreads the cells over processes."""
    prior = prior or device_preset("measured")
    jobs = [(s, prior) for s in sequences]
    if workers <= 1 or len(jobs) < 4:
        return [_fit_one(j) for j in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_fit_one, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


# ----- the chip ---------------------------------------------------------------------------------

@dataclass
class ChipDistribution:
    """Mean and spread over the fitted cells, per switch (turn-on order): thresholds in V (normal),
    on-resistance and the Ri prefactor as ln(ohm) (log-normal). ``cells``: how many cells."""

    turn_on_mean: np.ndarray
    turn_on_sd: np.ndarray
    turn_off_mean: np.ndarray
    turn_off_sd: np.ndarray
    ln_on_resistance_mean: np.ndarray
    ln_on_resistance_sd: np.ndarray
    ln_insulator_r0_mean: float
    ln_insulator_r0_sd: float
    switching_r0: float
    cells: int

    def as_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ChipDistribution":
        return cls(**{k: (np.asarray(v, float) if isinstance(v, list) else v) for k, v in d.items()})


def chip_distribution(fits: list[CellFit]) -> ChipDistribution:
    """The chip's distributions from its fitted cells (at least one)."""
    if not fits:
        raise FitError("no fitted cell: the chip's distributions need at least one")
    on = np.array([f.turn_on_v for f in fits])
    off = np.array([f.turn_off_v for f in fits])
    lr = np.log(np.array([f.on_resistance for f in fits]))
    li = np.log(np.array([f.insulator_r0 for f in fits]))
    ddof = 1 if len(fits) > 1 else 0
    return ChipDistribution(on.mean(0), on.std(0, ddof=ddof), off.mean(0), off.std(0, ddof=ddof), lr.mean(0),
                            lr.std(0, ddof=ddof), float(li.mean()), float(li.std(ddof=ddof)),
                            float(np.median([f.switching_r0 for f in fits])), len(fits))


@dataclass
class ChipFit:
    """Everything a fit made: the prior, the cells, the distributions and where the data came from."""

    prior: DeviceParameters
    cells: list
    distribution: ChipDistribution
    runs: list            # [{"run_id", "protocol", "chip_id", "store", "started_at", "backend"}, ...]
    geometry: tuple       # (wordlines, bitlines)
    version: int = FIT_VERSION

    def meta(self) -> dict:
        return {"version": self.version, "runs": self.runs, "geometry": list(self.geometry),
                "distribution": self.distribution.as_dict(), "cells": [c.as_dict() for c in self.cells]}

    @classmethod
    def from_meta(cls, meta: dict, prior: DeviceParameters) -> "ChipFit":
        return cls(prior, [CellFit.from_dict(c) for c in meta["cells"]],
                   ChipDistribution.from_dict(meta["distribution"]), meta["runs"], tuple(meta["geometry"]),
                   meta["version"])


def fitted_chip(fit: ChipFit, seed: int = 0, engine: str = "fast", array=None):
    """A VirtualArray of the fitted chip: the measured cells with their fitted switches and Ri, every
    other cell drawn (from ``seed``) from the chip's distributions. The prior's order of switches is
    turn-on order, which the fit keeps."""
    from rramlab.drivers.interface import ArrayGeometry
    from rramlab.sim.virtual_array import VirtualArray

    d = fit.distribution
    device = replace(fit.prior, switching_r0=d.switching_r0)
    W, B = fit.geometry
    chip = VirtualArray(geometry=ArrayGeometry(W, B), device=device, array=array, seed=seed, engine=engine)
    rng = np.random.default_rng(seed)
    n = device.n_switches
    on = d.turn_on_mean + d.turn_on_sd * rng.standard_normal((W, B, n))
    # turn-off moves with turn-on in the twin's variability (VH kept), so draw it with the same shift
    shift = on - d.turn_on_mean
    off = np.minimum(d.turn_off_mean + shift, on - 1e-3)
    ron = np.exp(d.ln_on_resistance_mean + d.ln_on_resistance_sd * rng.standard_normal((W, B, n)))
    r0i = np.exp(d.ln_insulator_r0_mean + d.ln_insulator_r0_sd * rng.standard_normal((W, B)))
    measured = np.zeros((W, B), bool)
    for c in fit.cells:
        on[c.wordline, c.bitline] = c.turn_on_v
        off[c.wordline, c.bitline] = np.minimum(c.turn_off_v, c.turn_on_v - 1e-3)
        ron[c.wordline, c.bitline] = c.on_resistance
        r0i[c.wordline, c.bitline] = c.insulator_r0
        measured[c.wordline, c.bitline] = True
    chip.cell_switches = np.stack([on, off, ron], axis=-1)
    chip.cell_insulator_r0 = r0i
    chip.fit = fit
    chip.fit_measured = measured
    chip.fit_meta = fit.meta()
    return chip


def fit_meta_json(fit: ChipFit) -> str:
    return json.dumps(fit.meta())
