"""The fast engine: nodal analysis of the same crossbar netlist as sim/array.py, in numpy/scipy.

Same circuit, no simplification: every cell is the compact model of sim/device.py (Rc, the switch
bank, the non-linear Rs and Ri, Rc), every line has its wire segments and its contact resistance,
every cell carries its own switch states, per-cell RON (variability) and programming error.

How it solves the circuit
-------------------------
*The device as a two-terminal element.* A cell's internal nodes carry no other branch, so its
current is a function of its terminal voltage alone, I(V; G_sw), where G_sw is the summed
conductance of its switch bank (RON of the on switches, ROFF of the off ones). I is odd in V. For
every distinct G_sw the engine solves the two internal node equations exactly (safeguarded Newton,
Ri inverted with the Lambert W function) on a uniform 5 mV grid of terminal voltages and keeps I and
dI/dV there; between grid points a cubic Hermite interpolant gives I and dI/dV with a relative error
below 1e-7 (checked in tests against the exact solution). Capacitors carry no current in a DC or
quasi-static solve and are left out.

*The array.* With cell currents I, the wires are linear and explicit: the top terminal of cell
(w, b) sits at ``V_wl[w] - sum_j Rw[b, j] I[w, j]`` and its bottom terminal at
``V_bl[b] + sum_i Rb[w, i] I[i, b]``, where ``Rw[b, j]`` is the resistance the paths from the
wordline source to cells b and j share (contact plus wire segments up to min(b, j)) and ``Rb`` the
same for bitlines (they leave after the last wordline). So the cell voltages solve
``V = V0 - R I(V)`` with R the constant cell-to-cell transfer resistance. The engine iterates this
with a per-cell Newton correction (Jacobi-Newton, vectorised over a whole batch of time steps, two
small matrix products per sweep), and falls back to a full Newton with the dense Jacobian
``1 + R diag(dI/dV)`` when a strongly coupled pulse (many cells at high current on 100 ohm lines)
makes the sweep contract too slowly. Converged to 1e-10 V on the cell voltages. A bitline's
current is the sum of its cells' currents (KCL at its source).

*Whole-array reads.* A read step drives one wordline and holds every other line at 0 V, so the
undriven cells sit within microvolts of 0 V, where they are linear; on arrays above 32 lines a batch
of such steps solves only the driven row, with the undriven cells folded into coefficients per
(wordline, bitline) computed once per chip state (ReadModel), O(B^2) per step instead of O(W B).

*Pulses.* The engine is quasi-static: every solve is the settled (DC) state at its voltages, Cs and Ci
left out (with the default stack's pF, a read is the current an integration longer than
``VirtualArray.read_settling_time_s`` measures). A pulse's flat top (and the apex of a triangle, a
slow monotone ramp) is taken as settled: the switches see the DC cell voltages at the peak. As the edge rises, a
switch flips when its cell's voltage crosses its threshold, which changes the network before the
peak is reached (a switch turning on raises its cell's current and the wire drops, so a later
switch may then not be reached). The engine follows the ramp event by event: solve at the peak,
flip in each cell only the first threshold its voltage crosses, re-solve, until nothing flips. When
cells that share a line cross in the same round, the one whose threshold is reached first on the
ramp (smallest threshold / peak voltage) goes first and the others wait for the next round; such a
pulse is reported as ``ordered_by_estimate`` because that ordering is an estimate (see
VirtualArray's ``engine="auto"``, which hands those pulses to ngspice).

Units: volts, amperes, ohms, siemens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rramlab.sim.array import ArrayParameters
from rramlab.sim.device import DeviceParameters

#: terminal-voltage step (V) of the tabulated device characteristics
GRID_STEP_V = 5e-3
#: most switch-bank conductances kept tabulated (each row is about 14 kB)
MAX_TABLE_ROWS = 2048
#: convergence of the network solve: largest change of any cell voltage (V) in the last sweep
VOLTAGE_TOL = 1e-10
#: arrays with more lines than this compute the wire drops by prefix sums (O(W B) per step) rather
#: than by two matrix products (O(W B (W + B)), faster only on small arrays)
PREFIX_DROPS_ABOVE = 32
#: steps solved together in one vectorised block (small enough for the arrays to stay in cache)
BATCH_BLOCK = 128
#: batches of at least this many steps with at most TAYLOR_MAX_LEVELS distinct inputs use local cubics
TAYLOR_MIN_STEPS = 64
TAYLOR_MAX_LEVELS = 16
#: largest distance (V) from the open-circuit voltage at which the local cubic is trusted
TAYLOR_RANGE_V = 0.02
#: threads for large batches (numpy's array operations release the GIL)
THREADS = 2
#: spike batches (every wordline at 0 V or at one spike voltage, bitlines at 0 V) of at least this
#: many steps on arrays of at most SPIKE_MAX_WORDLINES wordlines use the pairwise spike model
#: (SpikeModel); smaller batches cost less solved than the model costs to fit
SPIKE_MIN_STEPS = 4096
SPIKE_MAX_WORDLINES = 24
#: the spike model is used only while its error, checked against full solves of the all-on pattern
#: (its worst case: 2.5e-10 on the inference benchmark's chip) and of sampled steps of the batch,
#: stays below this fraction of the all-on pattern's largest bitline current
SPIKE_MODEL_TOL = 5e-10
#: steps of each batch re-solved in full to check the spike model (the densest and a spread)
SPIKE_CHECK_STEPS = 8
#: whole-array reads (batches of at least this many steps, each one wordline driven, every other
#: line at 0 V) solve only the driven row, the undriven cells folded in as a correction (ReadModel)
READ_MODEL_MIN_STEPS = 8
#: ... on arrays with more lines than this (at 24 x 24 fitting the model costs more than the solves)
READ_MODEL_ABOVE = 32
#: ... and whose model (W B^2 coefficients, W^2 B while fitting) stays within this many floats (32 MB)
READ_MODEL_MAX_FLOATS = 1 << 22
#: the read model is used only while its neglected terms (third order in the undriven cells' coupling
#: through the wires, and their cubic about 0 V) are bounded below this fraction of a step's largest
#: cell current
READ_MODEL_TOL = 1e-10


# --------------------------------------------------------------------------------------------
# one device
# --------------------------------------------------------------------------------------------

def lambert_w(x):
    """Principal branch of the Lambert W function for real x >= 0 (W(x) e^W(x) = x), vectorised.

    Winitzki's closed form (within about 1 %) refined by four Newton steps on w + ln w = ln x,
    which converge quadratically and cannot overflow: within 1e-14 relative of
    scipy.special.lambertw from 1e-300 to 1e300 (checked in tests), about 7x faster. Building the
    device table of a new switch-bank conductance (one per state change on a varied chip) spends
    most of its time here."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = np.log1p(x)
        w = l1 * (1.0 - np.log1p(l1) / (2.0 + l1))
        lx = np.log(x)
        for _ in range(4):
            w = w - (w + np.log(w) - lx) * (w / (1.0 + w))
    return np.where(x > 0, w, 0.0)


def _insulator_inverse(current, p: DeviceParameters, r0=None):
    """Voltage (V) across Ri carrying ``current`` (A, >= 0): I = V/R0 exp((V-V0)/k) inverted with
    Lambert W, V = k W(I R0 exp(V0/k) / k). Returns (V, dI/dV at V). r0: Ri prefactor (ohm,
    broadcast), default the model's."""
    k, v0 = p.insulator_k, p.insulator_v0
    r0 = p.insulator_r0 if r0 is None else r0
    arg = current * (r0 * np.exp(v0 / k) / k)
    v = k * lambert_w(arg)
    dv = np.exp((v - v0) / k) / r0 * (1.0 + v / k)
    return v, dv


def device_current_exact(v, g_switch, p: DeviceParameters, iterations: int = 100, v1_guess=None,
                         bracket=None, insulator_r0=None):
    """Exact current (A) and dI/dV (S) of the compact model at terminal voltage ``v`` (V).

    g_switch: summed conductance (S) of the switch bank, broadcast against ``v``. Solves the internal
    nodes by safeguarded Newton on V1 (the switching-area voltage), bracketed in [0, |v|]; the
    device is odd in v. Vectorised; used to build the tables and as their reference.
    v1_guess, bracket: optional starting V1 (V) and (lo, hi) bracket of it, same shape as v.
    insulator_r0: Ri prefactor (ohm), broadcast against v; None means the model's.
    """
    v, g = np.broadcast_arrays(np.asarray(v, dtype=float), np.asarray(g_switch, dtype=float))
    a = np.abs(v)
    lo = np.zeros_like(a)
    hi = a.copy()
    if bracket is not None:
        lo = np.clip(bracket[0], 0.0, a)
        hi = np.clip(bracket[1], lo, a)
    x = 0.5 * a if v1_guess is None else np.clip(v1_guess, 0.0, a)
    rs0, vs0, ks = p.switching_r0, p.switching_v0, p.switching_k
    rc2 = 2.0 * p.contact_r
    for _ in range(iterations):
        es = np.exp((x - vs0) / ks) / rs0
        cur = g * x + x * es
        dcur = g + es * (1.0 + x / ks)
        v2, dv2 = _insulator_inverse(cur, p, insulator_r0)
        res = rc2 * cur + x + v2 - a
        dres = dcur * (rc2 + 1.0 / dv2) + 1.0
        # keep the bracket: the residual increases with x
        lo = np.where(res < 0, x, lo)
        hi = np.where(res > 0, x, hi)
        dx = res / dres
        xn = x - dx
        # Newton outside the bracket: bisect instead (the device currents are exponential)
        xn = np.where((xn < lo) | (xn > hi), 0.5 * (lo + hi), xn)
        x = xn
        if np.all(np.abs(dx) <= 1e-18 + 1e-14 * a):
            break
    es = np.exp((x - vs0) / ks) / rs0
    cur = g * x + x * es
    dcur = g + es * (1.0 + x / ks)
    v2, dv2 = _insulator_inverse(cur, p, insulator_r0)
    dIdv = 1.0 / (rc2 + 1.0 / dcur + 1.0 / dv2)
    return np.sign(v) * cur, dIdv


def _v1_guess(grid: np.ndarray, gs: np.ndarray, p: DeviceParameters, samples: int = 1500, r0s=None):
    """Switching-area voltage V1 (V) at each terminal voltage of ``grid`` for each conductance of
    ``gs``, interpolated from an explicit sweep of V1 (terminal voltage as a function of V1 needs
    no solve), with the two sweep points that bracket it. Returns (guess, lo, hi), each
    (len(gs), len(grid)); a start and a bracket for the exact Newton."""
    # linear and logarithmic spacing: V1 spans microvolts (low-resistance cells at small bias) to volts
    v1 = np.unique(np.concatenate([np.linspace(0.0, grid[-1], samples),
                                   np.geomspace(1e-7, grid[-1], samples)]))
    samples = v1.size
    es = np.exp((v1[None, :] - p.switching_v0) / p.switching_k) / p.switching_r0
    cur = gs[:, None] * v1[None, :] + v1[None, :] * es
    v2, _ = _insulator_inverse(cur, p, None if r0s is None else np.asarray(r0s)[:, None])
    vd = 2.0 * p.contact_r * cur + v1[None, :] + v2
    guess = np.empty((gs.size, grid.size))
    lo = np.empty_like(guess)
    hi = np.empty_like(guess)
    for r in range(gs.size):
        guess[r] = np.interp(grid, vd[r], v1)
        k = np.clip(np.searchsorted(vd[r], grid) - 1, 0, samples - 2)
        lo[r], hi[r] = v1[k], v1[k + 1]
    return guess, lo, hi


class DeviceTables:
    """I(V) and dI/dV of the device on a uniform grid, one row per distinct switch-bank conductance.

    Rows are built on demand and kept (a chip has a few dozen distinct switch patterns without
    variability, at most one per cell with it). ``v_max`` grows if a solve asks beyond it.

    On a varied chip every state change of a cell is a new conductance, so rows come one or two
    per pulse: they are written into preallocated storage (grown by doubling, never copied per
    row), and ``rows_for`` remembers the row of every cell of the last call and looks up only the
    cells whose (conductance, Ri) changed since.
    """

    def __init__(self, device: DeviceParameters, v_max: float, step: float = GRID_STEP_V):
        self.device = device
        self.step = float(step)
        self.n = int(np.ceil(v_max / self.step)) + 1
        self._clear()

    def _clear(self):
        self._rows: dict[tuple, int] = {}
        self._g: list[tuple] = []
        # (rows, grid points, 2): (I_j, dI/dV_j) side by side, so one gather fetches both ends of
        # a segment; capacity grows by doubling
        self._store = np.zeros((16, self.n + 1, 2))
        self._packed = self._store.reshape(-1)
        self._cells = None  # (g_switch, r0, rows) of the last rows_for call

    @property
    def current(self) -> np.ndarray:
        """(rows, grid points) A: the tabulated currents."""
        return self._store[:len(self._g), :, 0]

    @property
    def slope(self) -> np.ndarray:
        """(rows, grid points) S: the tabulated dI/dV."""
        return self._store[:len(self._g), :, 1]

    @property
    def v_max(self) -> float:
        return self.n * self.step

    def rows_for(self, g_switch: np.ndarray, insulator_r0: np.ndarray | None = None) -> np.ndarray:
        """Row index (same shape as g_switch) of each (switch-bank conductance, Ri prefactor) pair,
        building missing rows. insulator_r0: per-cell Ri prefactor (ohm) or None for the model's.
        The returned array is shared with later calls: read it, do not write to it."""
        g_switch = np.asarray(g_switch, dtype=float)
        r0 = np.broadcast_to(self.device.insulator_r0 if insulator_r0 is None else np.asarray(insulator_r0, float),
                             g_switch.shape)
        last = self._cells
        if last is not None and last[0].shape == g_switch.shape:
            changed = (last[0] != g_switch) | (last[1] != r0)
            if not changed.any():
                return last[2]
            where = np.nonzero(changed)
            keys = list(zip(g_switch[where].tolist(), r0[where].tolist()))
            missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
            if not missing or len(self._g) + len(missing) <= MAX_TABLE_ROWS:
                if missing:
                    self._build(np.array(missing))
                rows = last[2].copy()
                rows[where] = [self._rows[k] for k in keys]
                self._cells = (g_switch.copy(), np.array(r0), rows)
                return rows
        pairs = np.stack([g_switch.ravel(), r0.ravel()], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        keys = [tuple(k) for k in uniq.tolist()]
        missing = [k for k in keys if k not in self._rows]
        if missing and len(self._g) + len(missing) > MAX_TABLE_ROWS:
            # keep memory flat over long programming runs on a chip with variability, where every
            # state change of a cell is a new conductance: start again from the rows in use
            self._clear()
            missing = keys
        if missing:
            self._build(np.array(missing))
        idx = np.array([self._rows[k] for k in keys], dtype=np.intp)
        rows = idx[np.ravel(inverse)].reshape(g_switch.shape)
        self._cells = (g_switch.copy(), np.array(r0), rows)
        return rows

    def _build(self, keys: np.ndarray):
        gs, r0s = keys[:, 0], keys[:, 1]
        grid = np.arange(self.n + 1) * self.step
        guess, lo, hi = _v1_guess(grid, gs, self.device, r0s=r0s)
        cur, slope = device_current_exact(grid[None, :], gs[:, None], self.device, v1_guess=guess,
                                          bracket=(lo, hi), insulator_r0=r0s[:, None])
        start = len(self._g)
        if start + len(keys) > self._store.shape[0]:
            store = np.zeros((max(2 * self._store.shape[0], start + len(keys)), self.n + 1, 2))
            store[:start] = self._store[:start]
            self._store = store
            self._packed = store.reshape(-1)
        self._store[start:start + len(keys), :, 0] = cur
        self._store[start:start + len(keys), :, 1] = slope
        for i, k in enumerate(keys.tolist()):
            self._rows[tuple(k)] = start + i
            self._g.append(tuple(k))

    def grow(self, v_needed: float):
        """Extend the grid to cover |V| up to v_needed (V); rebuilds every row."""
        keys = np.array(self._g, dtype=float).reshape(-1, 2)
        self.n = int(np.ceil(v_needed * 1.1 / self.step)) + 1
        self._clear()
        if keys.size:
            self._build(keys)

    def evaluate(self, v: np.ndarray, rows: np.ndarray):
        """Current (A) and dI/dV (S) at voltages v (V) for cells whose table rows are ``rows``
        (broadcast against v's trailing dimensions)."""
        a = np.abs(v)
        if a.size and float(a.max()) >= self.v_max:
            self.grow(float(a.max()))
            raise _TablesGrew()
        h = self.step
        u = a * (1.0 / h)
        j = u.astype(np.intp)
        t = u - j
        flat = (rows * (self.n + 1) + j) * 2
        seg = np.take(self._packed, flat[..., None] + _SEGMENT)
        i0, d0, i1, d1 = seg[..., 0], seg[..., 1], seg[..., 2], seg[..., 3]
        t2 = t * t
        t3 = t2 * t
        di = i1 - i0
        # cubic Hermite on [j h, (j+1) h]
        cur = i0 + (3 * t2 - 2 * t3) * di + h * ((t3 - 2 * t2 + t) * d0 + (t3 - t2) * d1)
        slope = (6 * t - 6 * t2) * di * (1.0 / h) + (3 * t2 - 4 * t + 1) * d0 + (3 * t2 - 2 * t) * d1
        return np.copysign(cur, v), slope


_SEGMENT = np.arange(4)


class _TablesGrew(Exception):
    """Internal: the tables were rebuilt with a wider grid; the caller re-does its sweep."""


# --------------------------------------------------------------------------------------------
# the array
# --------------------------------------------------------------------------------------------

def line_transfer_resistances(wordlines: int, bitlines: int, array: ArrayParameters):
    """(Rw (B, B), Rb (W, W)) in ohm: the resistance shared by the source paths of two cells on
    one wordline (driven at bitline 0's end) and on one bitline (leaving after the last wordline)."""
    rc, rw = array.contact_resistance, array.wire_resistance
    b = np.arange(bitlines)
    w = np.arange(wordlines)
    r_wl = rc + rw * np.minimum(b[:, None], b[None, :])
    r_bl = rc + rw * (wordlines - 1 - np.maximum(w[:, None], w[None, :]))
    return r_wl.astype(float), r_bl.astype(float)


@dataclass
class SolveInfo:
    """What a network solve did (for tests and benchmarks)."""

    sweeps: int = 0
    newton_fallbacks: int = 0
    #: spike batches answered by the spike model, and spike-model checks made (a check that
    #: fails sends the batch to the full solve)
    spike_batches: int = 0
    spike_checks: int = 0
    #: read batches answered by the read model (ReadModel)
    read_model_batches: int = 0


class NodalArray:
    """Nodal solver of one crossbar (W x B) with fixed parasitics and device model.

    Per call it takes the cell state as ``g_switch`` (W, B) siemens (summed switch-bank
    conductance) and ``g_offset`` (W, B) siemens (programming-error conductance across the cell).
    """

    def __init__(self, wordlines: int, bitlines: int, device: DeviceParameters, array: ArrayParameters,
                 v_max: float = 4.5):
        self.W, self.B = int(wordlines), int(bitlines)
        self.device, self.array = device, array
        self.r_wl, self.r_bl = line_transfer_resistances(self.W, self.B, array)
        self.r_self = np.diag(self.r_bl)[:, None] + np.diag(self.r_wl)[None, :]  # (W, B)
        self.coupled = bool(array.contact_resistance > 0 or array.wire_resistance > 0)
        self.tables = DeviceTables(device, v_max)
        self.info = SolveInfo()
        self._dense_r = None
        self._spike_model: SpikeModel | None = None
        self._read_model: ReadModel | None = None
        # largest total transfer resistance (ohm) seen by one cell: with the largest cell slope it
        # bounds the contraction of the Jacobi-Newton sweep (see _converged)
        self._r_sum_max = float(np.max(self.r_wl.sum(axis=0)[None, :] + self.r_bl.sum(axis=0)[:, None]))

    # ----- state -----
    def switch_conductance(self, states: np.ndarray, on_resistance: np.ndarray | None) -> np.ndarray:
        """Summed switch-bank conductance (S), (W, B), of states (W, B, n) bool; on_resistance
        (W, B, n) ohm per cell or None for the device's own RON."""
        p = self.device
        roff = np.array([s.off_resistance for s in p.switches])
        ron = np.array([s.on_resistance for s in p.switches]) if on_resistance is None else on_resistance
        return np.where(states, 1.0 / ron, 1.0 / roff).sum(axis=-1)

    # ----- cell currents -----
    def cell_currents(self, v: np.ndarray, rows: np.ndarray, g_offset: np.ndarray):
        cur, slope = self.tables.evaluate(v, rows)
        if g_offset is not None:
            cur = cur + g_offset * v
            slope = slope + g_offset
        return cur, slope

    def _drops(self, cur: np.ndarray) -> np.ndarray:
        """Voltage (V) that the wires take from each cell, (n, W, B), given cell currents (n, W, B)."""
        if max(self.W, self.B) > PREFIX_DROPS_ABOVE:
            return self._prefix_drops(cur)
        # wordline: sum_j I[w, j] Rw[j, b]; bitline: sum_i Rb[w, i] I[i, b]
        return cur @ self.r_wl + np.matmul(self.r_bl, cur)

    def _prefix_drops(self, cur: np.ndarray) -> np.ndarray:
        """``_drops`` in O(W B) per step instead of O(W B (W + B)): with Rw[b, j] = rc + rw min(b, j),
        sum_j Rw[b, j] I_j = rc S_0 + rw (S_1 + ... + S_b), S_k = sum_{j >= k} I_j (the current
        that passes segment k); a bitline is the same counted from its contact end."""
        rc, rw = self.array.contact_resistance, self.array.wire_resistance
        # wordline: suffix sums along b, then their prefix sums
        s = np.cumsum(cur[..., ::-1], axis=-1)[..., ::-1]                 # S_k, k = 0..B-1
        drop = rc * s[..., :1] + rw * (np.cumsum(s, axis=-1) - s[..., :1])
        # bitline (leaves after wordline W-1): the passing current of segment k, counted from the contact
        t = np.cumsum(cur, axis=-2)                                         # current above the segment below w
        drop += rc * t[..., -1:, :] + rw * (np.cumsum(t[..., ::-1, :], axis=-2)[..., ::-1, :] - t[..., -1:, :])
        return drop

    # ----- the solve -----
    def solve(self, v_open: np.ndarray, g_switch: np.ndarray, g_offset: np.ndarray | None = None,
              v_start: np.ndarray | None = None, insulator_r0: np.ndarray | None = None):
        """Cell voltages (V) and currents (A), each (n, W, B), for open-circuit cell voltages
        ``v_open`` (n, W, B) = V_wl[w] - V_bl[b] of each step. insulator_r0: (W, B) Ri prefactor
        per cell (ohm) or None."""
        rows = self.tables.rows_for(g_switch, insulator_r0)
        while True:
            try:
                return self._solve(v_open, rows, g_offset, v_start)
            except _TablesGrew:
                rows = self.tables.rows_for(g_switch, insulator_r0)

    def _solve(self, v_open, rows, g_offset, v_start):
        if g_offset is not None and not np.any(g_offset):
            g_offset = None
        if not self.coupled:
            cur, _ = self.cell_currents(v_open, rows, g_offset)
            return v_open.copy(), cur
        v = v_open.copy() if v_start is None else np.array(v_start, dtype=float)
        last = np.inf
        slow = 0
        for sweep in range(200):
            cur, slope = self.cell_currents(v, rows, g_offset)
            res = v - v_open + self._drops(cur)
            step = res / (1.0 + self.r_self * slope)
            v -= step
            self.info.sweeps += 1
            change = float(np.max(np.abs(step))) if step.size else 0.0
            if change < VOLTAGE_TOL or self._converged(change, slope):
                cur, _ = self.cell_currents(v, rows, g_offset)
                return v, cur
            # the sweep contracts by the coupling between cells: if that is poor, use full Newton
            slow = slow + 1 if change > 0.5 * last else 0
            last = change
            if slow >= 3 or sweep >= 60:
                break
        self.info.newton_fallbacks += 1
        return self._newton(v_open, rows, g_offset, v)

    def _converged(self, change: float, slope: np.ndarray) -> bool:
        """Whether the sweep that moved the cells by at most ``change`` (V) already left them within
        VOLTAGE_TOL of the solution. The sweep's error shrinks each time by at most
        q = (largest transfer resistance sum of a cell) x (largest cell slope), so the distance left
        is at most change q / (1 - q); the cell slopes move by a relative ~1e-4 over the last
        sweeps, covered by asking for q/(1-q) twice as small. Saves the sweep that only certified."""
        q = self._r_sum_max * float(np.max(np.abs(slope)))
        return q < 0.25 and 2.0 * change * q / (1.0 - q) < VOLTAGE_TOL

    def _dense_transfer(self) -> np.ndarray:
        if self._dense_r is None:
            W, B = self.W, self.B
            self._dense_r = np.kron(np.eye(W), self.r_wl) + np.kron(self.r_bl, np.eye(B))
        return self._dense_r

    def _newton(self, v_open, rows, g_offset, v):
        """Full Newton on the cell voltages with the dense Jacobian, one step at a time."""
        R = self._dense_transfer()
        n = v_open.shape[0]
        out_v = np.empty_like(v_open)
        for s in range(n):
            x = v[s].ravel().copy()
            x0 = v_open[s].ravel()
            r = rows[s].ravel() if rows.ndim == 3 else rows.ravel()
            go = None if g_offset is None else np.broadcast_to(g_offset, v_open.shape[1:]).ravel()
            for _ in range(100):
                cur, slope = self.cell_currents(x, r, go)
                res = x - x0 + R @ cur
                jac = R * slope[None, :]
                jac[np.diag_indices_from(jac)] += 1.0
                dx = np.linalg.solve(jac, res)
                # limit the step: the device currents are exponential in V
                big = np.max(np.abs(dx))
                if big > 0.1:
                    dx *= 0.1 / big
                x -= dx
                if big < VOLTAGE_TOL:
                    break
            else:
                raise ArithmeticError("fast engine: Newton did not converge on the array")
            out_v[s] = x.reshape(self.W, self.B)
        cur, _ = self.cell_currents(out_v, rows, g_offset)
        return out_v, cur

    # ----- operations -----
    def bitline_currents(self, wordline_v: np.ndarray, g_switch: np.ndarray, g_offset: np.ndarray | None,
                         bitlines=None, bitline_v: np.ndarray | None = None,
                         insulator_r0: np.ndarray | None = None) -> np.ndarray:
        """Bitline currents (A), (steps, len(bitlines)), with wordlines at ``wordline_v``
        (steps, W) volts and bitlines at ``bitline_v`` (default 0 V). Positive: flowing out of the
        array into the bitline source.

        Spike batches (at least SPIKE_MIN_STEPS steps, every wordline at 0 V or at one spike
        voltage, bitlines at 0 V, at most SPIKE_MAX_WORDLINES wordlines) are answered by the chip
        state's SpikeModel when it passes its checks against full solves; everything else, and any
        batch the model fails on, is solved in full (``solved_bitline_currents``).
        """
        wordline_v = np.asarray(wordline_v, dtype=float)
        bls = np.arange(self.B) if bitlines is None else np.asarray(bitlines, dtype=np.intp)
        if g_offset is not None and not np.any(g_offset):
            g_offset = None
        if (wordline_v.ndim == 2 and wordline_v.shape[0] >= SPIKE_MIN_STEPS and self.W <= SPIKE_MAX_WORDLINES
                and self.coupled and (bitline_v is None or not np.any(bitline_v))):
            spikes, level = spike_pattern(wordline_v)
            if spikes is not None:
                out = self._spike_currents(spikes, level, g_switch, g_offset, insulator_r0, bls)
                if out is not None:
                    return out
            else:
                out = self._spike_level_currents(wordline_v, g_switch, g_offset, insulator_r0, bls)
                if out is not None:
                    return out
        if (wordline_v.ndim == 2 and wordline_v.shape[0] >= READ_MODEL_MIN_STEPS and self.coupled
                and max(self.W, self.B) > READ_MODEL_ABOVE
                and self.W * self.B * max(self.W, self.B) <= READ_MODEL_MAX_FLOATS
                and (bitline_v is None or not np.any(bitline_v))):
            out = self._read_step_currents(wordline_v, g_switch, g_offset, insulator_r0, bls)
            if out is not None:
                return out
        return self.solved_bitline_currents(wordline_v, g_switch, g_offset, bls, bitline_v, insulator_r0)

    def _read_step_currents(self, wordline_v, g_switch, g_offset, insulator_r0, bls):
        """Bitline currents of a batch of read steps (each step drives at most one wordline, every
        other line at 0 V) from the chip state's ReadModel: O(B^2) per step instead of a solve of
        all W x B cells. None when a step drives two wordlines or the model's bound fails (the
        caller then solves in full)."""
        driven = wordline_v != 0
        per_step = np.count_nonzero(driven, axis=1)
        if np.any(per_step > 1):
            return None
        model = self._read_model
        if model is None or not model.fits(g_switch, g_offset, insulator_r0):
            model = self._read_model = ReadModel.fit(self, g_switch, g_offset, insulator_r0)
        if not model.valid:
            return None
        out = np.zeros((wordline_v.shape[0], bls.size))
        on = np.flatnonzero(per_step)
        if on.size:
            rows_w = np.argmax(driven[on], axis=1)
            cur = model.currents(self, rows_w, wordline_v[on, rows_w], g_switch, insulator_r0)
            if cur is None:
                return None
            out[on] = cur[:, bls]
        self.info.read_model_batches += 1
        return out

    def _spike_level_currents(self, wordline_v, g_switch, g_offset, insulator_r0, bls):
        """Bitline currents of a batch whose every step is a spike of its own level (each wordline at
        0 V or at that step's one positive voltage, e.g. a triangular spike's waveform nodes stacked in
        one call): each level with at least SPIKE_MIN_STEPS steps from that level's spike model, the
        rest (and any level whose model fails its checks) solved in full together, steps at 0 V
        everywhere carry no current. None when no level is answered by a model."""
        peak = wordline_v.max(axis=1)
        spikes = (wordline_v == peak[:, None]) & (peak[:, None] > 0)
        if np.count_nonzero(wordline_v) != np.count_nonzero(spikes):
            return None   # a step with two voltages, or a negative one
        levels, which = np.unique(peak, return_inverse=True)
        counts = np.bincount(which, minlength=levels.size)
        if not np.any((counts >= SPIKE_MIN_STEPS) & (levels > 0)):
            return None
        out = np.zeros((wordline_v.shape[0], bls.size))
        solve = peak > 0
        for k in np.flatnonzero((counts >= SPIKE_MIN_STEPS) & (levels > 0)).tolist():
            steps = np.flatnonzero(which == k)
            cur = self._spike_currents(spikes[steps], float(levels[k]), g_switch, g_offset, insulator_r0, bls)
            if cur is not None:
                out[steps] = cur
                solve[steps] = False
        if solve.all():
            return None
        if solve.any():
            out[solve] = self.solved_bitline_currents(wordline_v[solve], g_switch, g_offset, bls, None, insulator_r0)
        return out

    def _spike_currents(self, spikes, level, g_switch, g_offset, insulator_r0, bls):
        """Bitline currents of a spike batch from the spike model (None when the model fails a check)."""
        model = self._spike_model
        if model is None or not model.fits(level, g_switch, g_offset, insulator_r0):
            model = self._spike_model = SpikeModel.fit(self, level, g_switch, g_offset, insulator_r0)
        if not model.valid:
            return None
        out = model.evaluate(spikes, bls)
        # the model's error grows with the spikes per step: re-solve the densest steps and a spread
        n = spikes.shape[0]
        k = SPIKE_CHECK_STEPS // 2
        check = np.unique(np.concatenate([np.argpartition(np.count_nonzero(spikes, axis=1), n - k)[n - k:],
                                          np.linspace(0, n - 1, k).astype(np.intp)]))
        exact = self.solved_bitline_currents(spikes[check] * level, g_switch, g_offset, bls, None, insulator_r0)
        self.info.spike_checks += 1
        if float(np.max(np.abs(exact - out[check]))) > SPIKE_MODEL_TOL * model.scale:
            model.valid = False
            return None
        self.info.spike_batches += 1
        return out

    def solved_bitline_currents(self, wordline_v: np.ndarray, g_switch: np.ndarray, g_offset: np.ndarray | None,
                                bitlines=None, bitline_v: np.ndarray | None = None,
                                insulator_r0: np.ndarray | None = None) -> np.ndarray:
        """Bitline currents (A) as ``bitline_currents``, every step solved in full, in blocks of
        BATCH_BLOCK steps (fewer on arrays above 24 x 24: at most BATCH_BLOCK x 576 cells).

        Large batches whose inputs take few distinct levels (spike trains: 0 V and the spike
        voltage) use a local cubic of each cell's I(V) about its open-circuit voltage: the wires
        move a cell by millivolts only, so the cubic is exact to ~1e-8 there, and a sweep costs a
        few array operations instead of a table look-up. A block whose cells move more than
        TAYLOR_RANGE_V is re-solved with the tables.
        """
        wordline_v = np.asarray(wordline_v, dtype=float)
        steps = wordline_v.shape[0]
        bls = np.arange(self.B) if bitlines is None else np.asarray(bitlines, dtype=np.intp)
        out = np.empty((steps, bls.size))
        bl = np.zeros(self.B) if bitline_v is None else np.asarray(bitline_v, dtype=float)
        if g_offset is not None and not np.any(g_offset):
            g_offset = None
        local = None
        if steps >= TAYLOR_MIN_STEPS:
            levels = np.unique(wordline_v)
            if levels.size <= TAYLOR_MAX_LEVELS:
                local = self._local_cubics(levels, bl, g_switch, g_offset, insulator_r0)
        # a block holds at most BATCH_BLOCK steps of a 24 x 24 array's worth of cells, so that a
        # larger array's blocks stay in cache too (and a 96-step whole-array read of 96 x 96 runs on
        # both cores)
        per_block = max(1, min(BATCH_BLOCK, BATCH_BLOCK * 576 // (self.W * self.B)))
        blocks = [(start, wordline_v[start:start + per_block]) for start in range(0, steps, per_block)]

        def one(block):
            start, x = block
            cur = None
            if local is not None:
                cur = self._solve_local(x, levels, bl, local)
            if cur is None:
                v_open = x[:, :, None] - bl[None, None, :]
                _, cur = self.solve(v_open, g_switch, g_offset, insulator_r0=insulator_r0)
            out[start:start + x.shape[0]] = cur.sum(axis=1)[:, bls]

        if len(blocks) > 1 and THREADS > 1:
            # numpy releases the GIL inside its array operations: blocks run on both cores, after
            # the table rows are built here (the threads then only read them)
            self.tables.rows_for(g_switch, insulator_r0)
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(one, blocks))
        else:
            for block in blocks:
                one(block)
        return out

    def _local_cubics(self, levels, bl, g_switch, g_offset, insulator_r0=None):
        """Taylor coefficients (4, L, W, B) of every cell's current about V = level - V_bl[b]."""
        rows = self.tables.rows_for(g_switch, insulator_r0)
        v = levels[:, None, None] - bl[None, None, :] + np.zeros((1, self.W, 1))
        d = 0.5 * self.tables.step
        while True:
            try:
                i0, s0 = self.tables.evaluate(v, rows)
                _, sp = self.tables.evaluate(v + d, rows)
                _, sm = self.tables.evaluate(v - d, rows)
                break
            except _TablesGrew:
                rows = self.tables.rows_for(g_switch, insulator_r0)
        c = np.stack([i0, s0, (sp - sm) / (4 * d), (sp - 2 * s0 + sm) / (6 * d * d)])
        if g_offset is not None:
            c[0] += g_offset * v
            c[1] += g_offset
        return c

    def _solve_local(self, x, levels, bl, c):
        """Jacobi-Newton sweeps with the local cubics; None if a cell leaves their range."""
        lev = np.searchsorted(levels, x)                      # (n, W)
        wi = np.arange(self.W)[None, :]
        c0, c1, c2, c3 = (ck[lev, wi] for ck in c)            # (n, W, B) each
        c2x2, c3x3 = 2.0 * c2, 3.0 * c3
        dv = np.zeros_like(c0)                                # cell voltage minus open-circuit voltage
        cur = c0
        for _ in range(100):
            slope = c1 + dv * (c2x2 + dv * c3x3)
            res = dv + self._drops(cur)
            step = res / (1.0 + self.r_self * slope)
            dv -= step
            cur = c0 + dv * (c1 + dv * (c2 + dv * c3))
            change = float(np.max(np.abs(step)))
            if change < VOLTAGE_TOL or self._converged(change, slope):
                break
        else:
            return None
        if float(np.max(np.abs(dv))) > TAYLOR_RANGE_V:
            return None
        return cur

    def pulse(self, wordline_v: np.ndarray, bitline_v: np.ndarray, states: np.ndarray,
              turn_on_v: np.ndarray, turn_off_v: np.ndarray, on_resistance: np.ndarray | None,
              g_offset: np.ndarray | None, insulator_r0: np.ndarray | None = None):
        """Switch states (W, B, n) after a pulse whose peak puts ``wordline_v`` (W,) and
        ``bitline_v`` (B,) volts on the lines, following the ramp event by event (module docstring).

        Returns (new_states, ordered_by_estimate, peak cell voltages (W, B) V).
        """
        states = np.array(states, dtype=bool, copy=True)
        W, B = self.W, self.B
        v_open = (np.asarray(wordline_v, float)[:, None] - np.asarray(bitline_v, float)[None, :])[None]
        # the ramp starts and ends at 0 V: a switch whose window does not hold 0 V follows it
        states = np.where(0.0 > turn_on_v, True, np.where(0.0 < turn_off_v, False, states))
        estimated = False
        v = None
        for _ in range(W * B * states.shape[-1] + 1):
            g = self.switch_conductance(states, on_resistance)
            v, _ = self.solve(v_open, g, g_offset, v_start=v, insulator_r0=insulator_r0)
            vc = v[0][:, :, None]
            want_on = (vc > turn_on_v) & ~states
            want_off = (vc < turn_off_v) & states
            if not (want_on.any() or want_off.any()):
                break
            # the first threshold each cell's voltage meets on the way up (or down)
            on_thr = np.where(want_on, turn_on_v, np.inf).min(axis=2)
            off_thr = np.where(want_off, turn_off_v, -np.inf).max(axis=2)
            vpk = v[0]
            with np.errstate(invalid="ignore", divide="ignore"):
                frac_on = np.where(np.isfinite(on_thr), on_thr / np.where(vpk > 0, vpk, np.inf), np.inf)
                frac_off = np.where(np.isfinite(off_thr), off_thr / np.where(vpk < 0, vpk, -np.inf), np.inf)
            frac = np.minimum(frac_on, frac_off)  # fraction of the peak at which the cell flips first
            cand = np.isfinite(frac)
            go = cand.copy()
            if self.coupled and cand.sum() > 1:
                # cells that share a line affect each other: the earliest on each line goes first
                wi, bi = np.nonzero(cand)
                order = np.argsort(frac[wi, bi], kind="stable")
                seen_w, seen_b = set(), set()
                go[:] = False
                for k in order:
                    w, b = int(wi[k]), int(bi[k])
                    if w not in seen_w and b not in seen_b:
                        go[w, b] = True
                    seen_w.add(w)
                    seen_b.add(b)
                if go.sum() < cand.sum():
                    estimated = True
            first_on = want_on & (turn_on_v == on_thr[:, :, None]) & go[:, :, None] & (frac_on <= frac_off)[:, :, None]
            first_off = want_off & (turn_off_v == off_thr[:, :, None]) & go[:, :, None] & (frac_off < frac_on)[:, :, None]
            states = (states | first_on) & ~first_off
        states = np.where(0.0 > turn_on_v, True, np.where(0.0 < turn_off_v, False, states))
        return states, estimated, v[0]


# --------------------------------------------------------------------------------------------
# spike batches
# --------------------------------------------------------------------------------------------

def spike_pattern(wordline_v: np.ndarray):
    """(spikes (steps, W) bool, level V) when every wordline voltage of the batch is 0 V or one
    positive level; (None, 0.0) otherwise."""
    level = float(wordline_v.max()) if wordline_v.size else 0.0
    if not level > 0:
        return None, 0.0
    spikes = wordline_v == level
    # any other value (negative, between, NaN) is non-zero and not the level
    if np.count_nonzero(wordline_v) != np.count_nonzero(spikes):
        return None, 0.0
    return spikes, level


_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(float)  # (256, 8)


class SpikeModel:
    """Bitline currents of one chip state for spikes (each wordline at 0 V or at ``level``,
    bitlines at 0 V) as an exact quadratic in the spikes s (0/1 per wordline)::

        I_b(s) = f0_b + sum_w L_wb s_w + sum_{w<i} Q_wib s_w s_i

    fitted from full solves of the empty pattern, every single spike and every pair of spikes
    (1 + W + W(W-1)/2 solves), so it is exact (to the solver's tolerance) on all of them, and
    carries the wires' first-order IR drop and the pairwise part of the second order. What it
    leaves out is the interaction of three or more spiking wordlines through the wires: of order
    (coupling)^2 with a coupling of about 1e-4 at 1 V on 2-ohm lines (measured 1.4e-10 of the
    largest current over 250,000 inference steps). It is checked against a full solve of the
    all-on pattern, its worst case (``valid``), and ``bitline_currents`` re-solves sampled steps
    of every batch.

    Evaluated by table look-up: the wordlines split into three bytes (w 0-7, 8-15, 16-23) and the
    quadratic into three tables indexed by a pair of bytes (65,536 rows each, about 10 MB for 20
    bitlines); a step costs three row gathers and two additions.
    """

    def __init__(self, key, level, lin, quad, f0, scale, valid):
        self.key, self.level = key, level
        self.lin, self.quad, self.f0 = lin, quad, f0        # (W', B), (W', W', B), (B,), W' = 24
        self.scale, self.valid = scale, valid
        self._tables: dict[tuple, tuple] = {}

    @staticmethod
    def _key(g_switch, g_offset, insulator_r0):
        return tuple(None if a is None else np.array(a, dtype=float, copy=True)
                     for a in (g_switch, g_offset, insulator_r0))

    def fits(self, level, g_switch, g_offset, insulator_r0) -> bool:
        """Whether this model is the one of this chip state and spike voltage."""
        if level != self.level:
            return False
        for a, b in zip(self.key, (g_switch, g_offset, insulator_r0)):
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                return False
        return True

    @classmethod
    def fit(cls, na: "NodalArray", level, g_switch, g_offset, insulator_r0) -> "SpikeModel":
        W, B = na.W, na.B
        iu, ju = np.triu_indices(W, 1)
        pats = np.zeros((2 + W + iu.size, W))
        pats[1 + np.arange(W), np.arange(W)] = 1.0
        rows = 1 + W + np.arange(iu.size)
        pats[rows, iu] = 1.0
        pats[rows, ju] = 1.0
        pats[-1] = 1.0                                   # all on: the check
        f = na.solved_bitline_currents(pats * level, g_switch, g_offset, None, None, insulator_r0)
        f0, f1, f2, f_all = f[0], f[1:1 + W], f[1 + W:-1], f[-1]
        lin = np.zeros((SPIKE_MAX_WORDLINES, B))
        lin[:W] = f1 - f0
        quad = np.zeros((SPIKE_MAX_WORDLINES, SPIKE_MAX_WORDLINES, B))
        quad[iu, ju] = f2 - f1[iu] - f1[ju] + f0
        model = cls(cls._key(g_switch, g_offset, insulator_r0), level, lin, quad, f0,
                    float(np.max(np.abs(f_all))), True)
        # the all-on pattern from the coefficients themselves: the look-up tables (about 10 MB, most
        # of a fit's cost) are built only for a model that holds, so a chip whose model fails (many
        # cells in LRS: the engines benchmark's random states) pays its 302 solves and no more
        all_on = f0 + lin[:W].sum(axis=0) + quad[iu, ju].sum(axis=0)
        err = float(np.max(np.abs(all_on - f_all)))
        model.valid = bool(err <= SPIKE_MODEL_TOL * model.scale)
        return model

    def _pair_tables(self, bls):
        key = tuple(int(b) for b in bls)
        if key not in self._tables:
            lin, quad = self.lin[:, bls], self.quad[:, :, bls]
            nb = len(key)
            groups = [slice(0, 8), slice(8, 16), slice(16, 24)]
            bits = _BYTE_BITS

            def own(g):       # (256, nb): the linear and within-byte terms of byte g
                q = quad[g, g]
                return bits @ lin[g] + np.einsum("aw,ai,wib->ab", bits, bits, q, optimize=True)

            def cross(g, h):  # (256, 256, nb) [c, a]: the terms between byte a of group g and byte c of h
                y = (bits @ quad[g, h].reshape(8, -1)).reshape(256, 8, nb)  # [a, i, b]: summed over w of g
                return np.matmul(bits[None], y).transpose(1, 0, 2)        # [a, c] -> [c, a]
            o0, o1, o2 = own(groups[0]), own(groups[1]), own(groups[2])
            # row a + 256 c of a table holds the pair (byte a of the lower group, byte c of the upper)
            t01 = (cross(groups[0], groups[1]) + o0[None, :, :] + o1[:, None, :] + self.f0[bls]).reshape(-1, nb)
            t02 = np.ascontiguousarray(cross(groups[0], groups[2])).reshape(-1, nb)
            t12 = (cross(groups[1], groups[2]) + o2[:, None, :]).reshape(-1, nb)
            self._tables = {key: (t01, t02, t12)}     # one bitline selection kept (each ~10 MB)
        return self._tables[key]

    def evaluate(self, spikes: np.ndarray, bls) -> np.ndarray:
        """Bitline currents (A), (steps, len(bls)), of spikes (steps, W) bool."""
        t01, t02, t12 = self._pair_tables(bls)
        n = spikes.shape[0]
        packed = np.packbits(spikes, axis=1, bitorder="little")
        if packed.shape[1] < 3:
            packed = np.concatenate([packed, np.zeros((n, 3 - packed.shape[1]), np.uint8)], axis=1)
        packed = np.ascontiguousarray(packed)
        # two neighbouring bytes read as one little-endian 16-bit index: byte g + 256 byte g+1
        i01 = np.ndarray((n,), "<u2", packed, 0, (3,))
        i12 = np.ndarray((n,), "<u2", packed, 1, (3,))
        i02 = packed[:, 0] | (packed[:, 2].astype(np.uint16) << 8)
        out = np.take(t01, i01, axis=0)
        part = np.take(t12, i12, axis=0)
        out += part
        np.take(t02, i02, axis=0, out=part)
        out += part
        return out


class ReadModel:
    """The whole-array read of one chip state: each read step drives one wordline w at the read
    voltage, every other line at 0 V. The driven row's B cells are solved with their non-linear
    I(V); the (W - 1) B undriven cells sit within microvolts of 0 V, where each is linear (its
    conductance g0 = dI/dV at 0 V; the cubic term is ~1e-11 of the current), so their effect is
    folded into per-(wordline, bitline) coefficients computed once per chip state, to second order
    in the coupling e = g0 x line resistance summed over a line (~1e-3 at 96 x 96):

    * the driven cell (w, b) sees the undriven cells of bitline b lower its bitline node: the
      effective bitline resistance Rb[w, w] - C1[w, b], C1 = sum_{i != w} Rb[w, i]^2 g0[i, b];
    * the bitline current is the driven cell's current I_b times (1 - A1 + A2) plus sum_c Q_w[b, c] I_c:
      A1 = sum_{i != w} g0[i, b] Rb[i, w] (first order: the undriven cells on b draw back current),
      A2 its second order along the bitline, Q_w the second order through the undriven wordlines
      (an undriven cell's current moves its wordline, which moves the row's other cells).

    The neglected terms of a step are bounded by e^3 / (1 - e) times its largest cell current (4e-4
    and 6e-11 on the growth benchmark's 96 x 96 chip: below the full solve's own 1e-10 V tolerance;
    measured within 5e-11 relative of the full solve on every cell of the tested chips; a cell driven
    near 0 A, e.g. by a negative programming error, keeps that absolute error, not the relative one);
    ``valid`` is False when the bound exceeds READ_MODEL_TOL (a chip with many cells in LRS on long lines), and ``currents`` returns None
    when a step's bitline nodes move so far that the undriven cells leave their linear range; the
    caller then solves in full. Memory: W B^2 floats (7 MB at 96 x 96)."""

    def __init__(self, key, c1, a, q, g0, valid):
        self.key, self.c1, self.a, self.q, self.g0, self.valid = key, c1, a, q, g0, valid

    @staticmethod
    def _key(g_switch, g_offset, insulator_r0):
        return tuple(None if x is None else np.array(x, dtype=float, copy=True) for x in (g_switch, g_offset, insulator_r0))

    def fits(self, g_switch, g_offset, insulator_r0) -> bool:
        for mine, theirs in zip(self.key, (g_switch, g_offset, insulator_r0)):
            if (mine is None) != (theirs is None):
                return False
            if mine is not None and not np.array_equal(mine, np.broadcast_to(theirs, mine.shape)):
                return False
        return True

    @classmethod
    def fit(cls, na: "NodalArray", g_switch, g_offset, insulator_r0) -> "ReadModel":
        W, B = na.W, na.B
        key = cls._key(g_switch, g_offset, insulator_r0)
        while True:
            rows = na.tables.rows_for(g_switch, insulator_r0)
            try:
                _, g0 = na.cell_currents(np.zeros((W, B)), rows, None)
                break
            except _TablesGrew:
                continue
        g0 = g0 + (0.0 if g_offset is None else np.broadcast_to(g_offset, (W, B)))
        rb, rw = na.r_bl, na.r_wl
        # the coupling of the undriven network: a sweep over it moves the solution by at most e
        eps = float(np.max(g0.sum(axis=0)) * rb.max() + np.max(g0.sum(axis=1)) * rw.max())
        valid = bool(eps < 0.5 and eps ** 3 / (1.0 - eps) < READ_MODEL_TOL)
        if not valid:
            return cls(key, None, None, None, g0, False)
        gm = np.broadcast_to(g0[None, :, :], (W, W, B)).copy()       # [w, i, b]: g0 of undriven cells
        gm[np.arange(W), np.arange(W), :] = 0.0
        t = gm * rb[:, :, None]                                        # g0[i, b] Rb[i, w] (Rb symmetric)
        a1 = t.sum(axis=1)
        c1 = (t * rb[:, :, None]).sum(axis=1)
        a2 = (gm * np.matmul(rb, t)).sum(axis=1)                       # sum_{i, j} g0_i Rb[i, j] g0_j Rb[j, w]
        q = rw[None, :, :] * np.matmul(gm.transpose(0, 2, 1), t)       # Rw[b, c] sum_i g0[i, b] g0[i, c] Rb[i, w]
        return cls(key, c1, 1.0 - a1 + a2, q, g0, True)

    def currents(self, na: "NodalArray", wordlines: np.ndarray, volts: np.ndarray, g_switch, insulator_r0):
        """Bitline currents (A), (n, B), of n steps driving wordline ``wordlines[k]`` at ``volts[k]`` (V)."""
        go = self.key[1]
        go = None if go is None else np.broadcast_to(go, (na.W, na.B))[wordlines]
        r_bitline = np.diag(na.r_bl)[wordlines][:, None] - self.c1[wordlines]   # (n, B)
        r_self = r_bitline + np.diag(na.r_wl)[None, :]
        v_open = np.broadcast_to(volts[:, None], (wordlines.size, na.B))
        while True:
            rows = na.tables.rows_for(g_switch, insulator_r0)[wordlines]
            try:
                v = v_open.copy()
                for _ in range(200):
                    cur, slope = na.cell_currents(v, rows, go)
                    res = v - v_open + cur @ na.r_wl + r_bitline * cur
                    step = res / (1.0 + r_self * slope)
                    v -= step
                    na.info.sweeps += 1
                    change = float(np.max(np.abs(step)))
                    if change < VOLTAGE_TOL or na._converged(change, slope):
                        break
                else:
                    return None
                cur, _ = na.cell_currents(v, rows, go)
                break
            except _TablesGrew:
                continue
        # the undriven cells' largest voltage: their cubic about 0 V must stay negligible (1 mV: ~1e-11)
        if float(np.max(np.abs(cur))) * float(na.r_bl.max()) * 2.0 > 1e-3:
            return None
        return cur * self.a[wordlines] + np.einsum("nbc,nc->nb", self.q[wordlines], cur)
