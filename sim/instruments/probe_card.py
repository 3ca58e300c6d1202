"""The virtual probe card: the wiring from the E5250A's outputs to the array's lines, and the
solve of the twin for whatever the instruments put on them.

Wiring: ``wordline_outputs[i]`` / ``bitline_outputs[j]`` is the matrix output cabled to wordline i /
bitline j (0: not wired); ``channel_inputs`` says which 4156C channel is cabled to which matrix
input; ``ground_inputs`` are inputs tied to ground. This is the *physical* card: a bench file whose
pin map disagrees with it addresses the wrong lines, exactly as on a real bench.

Each line takes the voltage of what its output is connected to now: a channel whose output switch
is on (its DC voltage, or a pulse source's base or peak), ground (0 V). Approximations, all stated:

* A floating line (not wired, no closed crosspoint, or only on channels whose output switch is
  off) takes the voltage at which no net current leaves it through its cells, found by Newton on
  the twin's nodal engine (a DC operating point: the line's own capacitance has long charged in the
  milliseconds a reading or pulse lasts). On a 24 x 20 bench (four bitlines not wired) a 1 V read
  of an HRS array leaves them at about 0.17 V, more than V/24 because the cells conduct less at low
  voltage; the measured bitline current changes by about 1e-13 A. Leakage of the open relays (E5252A:
  fA) is neglected.
* Currents: when every bitline is at 0 V (none floats) and no wordline exceeds the twin's read
  limit, the twin's own ``VirtualArray.vmm`` gives the bitline currents (the same solve as ``read``
  and ``vmm`` on the twin, so readings agree with the twin exactly); a wordline channel's current is the total bitline
  current with only its own wordlines driven (exact with one driven level; superposition otherwise).
  Any other pattern (e.g. a half-bias pulse, with a bitline at -V/2) is solved by the twin's nodal
  engine (``sim/nodal.py``, whatever the twin's engine setting) for the cell currents, summed per line.
* A pulse is the twin's ``VirtualArray.pulse`` with the line voltages at the pulse top; the DC levels
  around it (half-bias: the bitline's -V/2 before and after the pulse) are applied to the twin as a
  stress only when they could cross a switch threshold.
* Compliance: a channel whose current exceeds its compliance is reported in compliance at the
  compliance value; the twin is not re-solved with the reduced voltage.
* Two sources at different voltages on one line (only possible under the matrix's FREE rule) are a
  short: every channel involved reads as in compliance.
"""

from __future__ import annotations

import numpy as np

GROUND = "ground"


class VirtualProbeCard:
    """array: a rramlab.sim.virtual_array.VirtualArray (the chip). See the module docstring."""

    def __init__(self, array, wordline_outputs, bitline_outputs, channel_inputs: dict[int, int],
                 ground_inputs=(10,)):
        self.array = array
        W, B = array.geometry.shape
        if len(wordline_outputs) != W or len(bitline_outputs) != B:
            raise ValueError(f"the probe card wires {len(wordline_outputs)} x {len(bitline_outputs)} lines, the chip "
                             f"has {W} x {B}")
        self.wordline_outputs = tuple(int(o) for o in wordline_outputs)
        self.bitline_outputs = tuple(int(o) for o in bitline_outputs)
        self.input_channel = {int(i): int(ch) for ch, i in channel_inputs.items()}
        self.ground_inputs = frozenset(int(i) for i in ground_inputs)
        self.matrix = None
        #: number of solves of each kind (benchmark and tests)
        self.solves = {"vmm": 0, "nodal": 0, "pulse": 0, "stress": 0}

    # ----- routing -----
    def _drivers(self, output: int, sources: dict[int, float]) -> dict:
        """What holds one output: {driver: volts}; driver is a channel number or GROUND."""
        if output == 0 or self.matrix is None:
            return {}
        found = {}
        for inp in self.matrix.inputs_on(output):
            if inp in self.ground_inputs:
                found[GROUND] = 0.0
            elif inp in self.input_channel and self.input_channel[inp] in sources:
                ch = self.input_channel[inp]
                found[ch] = sources[ch]
        return found

    def lines(self, sources: dict[int, float]):
        """(wordline volts, bitline volts, {channel: ([wordlines], [bitlines])}, shorted channels).
        Floating lines get the voltage at which they carry no net current (module docstring)."""
        W, B = self.array.geometry.shape
        wl, bl = np.zeros(W), np.zeros(B)
        free_w, free_b = np.zeros(W, bool), np.zeros(B, bool)
        held: dict[int, tuple[list, list]] = {ch: ([], []) for ch in sources}
        shorted: set = set()
        for kind, outs, volts, free in (("w", self.wordline_outputs, wl, free_w),
                                        ("b", self.bitline_outputs, bl, free_b)):
            for line, out in enumerate(outs):
                d = self._drivers(out, sources)
                if not d:
                    free[line] = True
                    continue
                if len(set(d.values())) > 1:
                    shorted |= {k for k in d if k != GROUND}
                volts[line] = next(iter(d.values()))
                for k in d:
                    if k != GROUND:
                        held[k][0 if kind == "w" else 1].append(line)
        if (free_w.any() or free_b.any()) and (np.any(wl) or np.any(bl)):
            self._settle_floating(wl, bl, free_w, free_b)
        return wl, bl, held, shorted

    def _settle_floating(self, wl, bl, free_w, free_b, iterations: int = 40) -> None:
        """Set the floating lines (in place) to the voltages at which no net current leaves them.

        Newton on the floating lines' net currents. The Jacobian is the cells' small-signal
        conductances (the weighted graph Laplacian of the floating lines, wire drops neglected in it
        only), so it converges in a few steps; every voltage stays between the lowest and highest
        driven voltage, where a passive network must put it.
        """
        fw, fb = np.flatnonzero(free_w), np.flatnonzero(free_b)
        nw = len(fw)
        driven = np.concatenate([wl[~free_w], bl[~free_b]])
        if driven.size == 0:
            return
        lo, hi = float(min(driven.min(), 0.0)), float(max(driven.max(), 0.0))
        for _ in range(iterations):
            cur, slope = self._cells_and_slopes(wl, bl)
            r = np.concatenate([cur[fw].sum(axis=1), -cur[:, fb].sum(axis=0)])
            if np.max(np.abs(r)) <= max(1e-16, 1e-9 * float(np.max(np.abs(cur)))):
                return
            cross = slope[np.ix_(fw, fb)]
            jac = np.zeros((len(r), len(r)))
            jac[np.arange(nw), np.arange(nw)] = slope[fw].sum(axis=1)
            jac[nw + np.arange(len(fb)), nw + np.arange(len(fb))] = slope[:, fb].sum(axis=0)
            jac[:nw, nw:] = -cross
            jac[nw:, :nw] = -cross.T
            step = np.linalg.lstsq(jac, -r, rcond=None)[0]
            wl[fw] = np.clip(wl[fw] + step[:nw], lo, hi)
            bl[fb] = np.clip(bl[fb] + step[nw:], lo, hi)

    # ----- physics -----
    def _cells_and_slopes(self, wl: np.ndarray, bl: np.ndarray):
        """Cell currents (W, B) A, wordline to bitline, and their small-signal conductances (S), for
        any line voltages, from the twin's nodal engine (the twin's own device model and wires)."""
        va = self.array
        na = va._fast()
        g = na.switch_conductance(va.switch_states, va._on_resistance())
        v, cur = na.solve((wl[:, None] - bl[None, :])[None], g, va.conductance_offset)
        _, slope = na.cell_currents(v, na.tables.rows_for(g), va.conductance_offset)
        self.solves["nodal"] += 1
        return cur[0], slope[0]

    def _cell_currents(self, wl: np.ndarray, bl: np.ndarray) -> np.ndarray:
        return self._cells_and_slopes(wl, bl)[0]

    def _channel_currents(self, wl, bl, held, channels) -> dict[int, float]:
        """Current (A) out of each channel into its lines."""
        va = self.array
        out = {ch: 0.0 for ch in channels}
        if not np.any(wl) and not np.any(bl):
            return out
        all_b = list(range(va.geometry.bitlines))
        if not np.any(bl) and np.max(np.abs(wl)) <= va.limits.max_read_voltage:
            rows = [wl]
            groups = [ch for ch in channels if held.get(ch, ([], []))[0]]
            for ch in groups:
                mask = np.zeros_like(wl)
                mask[held[ch][0]] = 1.0
                rows.append(wl * mask)
            cur = np.atleast_2d(va.vmm(np.array(rows), all_b))
            self.solves["vmm"] += 1
            for ch in channels:
                out[ch] -= float(np.sum(cur[0, held.get(ch, ([], []))[1]]))
            for k, ch in enumerate(groups):
                out[ch] += float(np.sum(cur[k + 1]))
            return out
        cells = self._cell_currents(wl, bl)
        for ch in channels:
            w, b = held.get(ch, ([], []))
            out[ch] = float(np.sum(cells[w, :])) - float(np.sum(cells[:, b]))
        return out

    def _stress(self, wl, bl, seconds: float) -> None:
        """Apply a DC pattern to the twin if any cell could cross a switch threshold under it."""
        if not (np.any(wl) or np.any(bl)):
            return
        on_v, off_v = self.array.thresholds()
        top, bottom = float(np.max(wl) - np.min(bl)), float(np.min(wl) - np.max(bl))
        if top >= float(np.min(on_v)) or bottom <= float(np.max(off_v)):
            lim = self.array.limits
            self.array.pulse(wl, bl, min(max(seconds, lim.min_pulse_width), lim.max_pulse_width), "rect")
            self.solves["stress"] += 1

    def settling_time_s(self) -> float:
        """Time (s) the cells take to settle after a read step (``VirtualArray.read_settling_time_s``;
        0 for an array that does not say)."""
        settling = getattr(self.array, "read_settling_time_s", None)
        return float(settling()) if settling is not None else 0.0

    def measure(self, sources: dict[int, float], channels: list[int]):
        """Currents (A, out of each SMU) of ``channels`` with ``sources`` (channel -> V) on; returns
        (currents, shorted channels)."""
        wl, bl, held, shorted = self.lines(sources)
        self._stress(wl, bl, 0.02)
        return self._channel_currents(wl, bl, held, channels), shorted

    def pulse(self, sources: dict[int, float], channel: int, peak_v: float, width: float):
        """One pulse of ``channel`` to ``peak_v`` for ``width`` s with the other sources at DC; returns
        ({channel: current at the pulse top}, shorted channels)."""
        wl0, bl0, _, _ = self.lines(sources)
        self._stress(wl0, bl0, width)
        top = dict(sources)
        top[channel] = peak_v
        wl, bl, held, shorted = self.lines(top)
        if np.any(wl) or np.any(bl):
            self.array.pulse(wl, bl, width, "rect")
            self.solves["pulse"] += 1
        return self._channel_currents(wl, bl, held, [channel]), shorted
