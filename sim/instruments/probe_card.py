"""The virtual probe card: the wiring from the E5250A's outputs to the array's lines, and the
solve of the twin for whatever the instruments put on them.

Wiring: ``wordline_outputs[i]`` / ``bitline_outputs[j]`` is the matrix output cabled to wordline i /
bitline j (0: not wired); ``channel_inputs`` says which 4156C channel is cabled to which matrix
input; ``ground_inputs`` are inputs tied to ground. This is the *physical* card: a bench file whose
pin map disagrees with it addresses the wrong lines, exactly as on a real bench.

Each line takes the voltage of what its output is connected to now: a channel whose output switch
is on (its DC voltage, or a pulse source's base or peak), ground (0 V). Approximations, all stated:

* A floating line (no closed crosspoint, or only channels whose output switch is off) is solved as
  if held at 0 V. In the array every floating line is tied through its 24 cells to lines that are
  mostly at 0 V (every unselected line is grounded by the probe station), so it sits within a few %
  of 0 V of the driven line's voltage; treating it as 0 V slightly overstates the sneak currents into
  it and leaves the selected cell's current unchanged to first order.
* Currents: when every bitline is at 0 V and no wordline exceeds the twin's read limit, the twin's
  own ``VirtualArray.vmm`` gives the bitline currents (the same solve as ``read`` and ``vmm`` on the
  twin, so readings agree with the twin exactly); a wordline channel's current is the total bitline
  current with only its own wordlines driven (exact with one driven level; superposition otherwise).
  Any other pattern (e.g. a half-bias pulse, with a bitline at -V/2) is solved by the twin's nodal
  engine for the cell currents, summed per line.
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
        """(wordline volts, bitline volts, {channel: ([wordlines], [bitlines])}, shorted channels)."""
        W, B = self.array.geometry.shape
        wl, bl = np.zeros(W), np.zeros(B)
        held: dict[int, tuple[list, list]] = {ch: ([], []) for ch in sources}
        shorted: set = set()
        for kind, outs, volts in (("w", self.wordline_outputs, wl), ("b", self.bitline_outputs, bl)):
            for line, out in enumerate(outs):
                d = self._drivers(out, sources)
                if not d:
                    continue  # floating: solved as 0 V (module docstring)
                if len(set(d.values())) > 1:
                    shorted |= {k for k in d if k != GROUND}
                volts[line] = next(iter(d.values()))
                for k in d:
                    if k != GROUND:
                        held[k][0 if kind == "w" else 1].append(line)
        return wl, bl, held, shorted

    # ----- physics -----
    def _cell_currents(self, wl: np.ndarray, bl: np.ndarray) -> np.ndarray:
        """Cell currents (W, B) A, wordline to bitline, for any line voltages (nodal engine)."""
        va = self.array
        na = va._fast()
        g = na.switch_conductance(va.switch_states, va._on_resistance())
        _, cur = na.solve((wl[:, None] - bl[None, :])[None], g, va.conductance_offset)
        self.solves["nodal"] += 1
        return cur[0]

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
