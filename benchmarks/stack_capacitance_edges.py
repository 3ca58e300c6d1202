"""Does the fast engine's quasi-static view of a pulse hold with the stack's capacitances (the default
10 um cell, 1.97 pF) as it does with Table 1's 0.1 fF? One ngspice transient per case of a 3.2 V
half-bias rect pulse (2 us, the twin's 10 ns edges, below every switch threshold so nothing flips) on
the far cell of an 8 x 8 array, every cell at a random level; a few seconds.

Prints per case: how far the selected cell's voltage goes beyond its DC value at the pulse top (what
decides a flip: the switches follow the terminal voltage), how far any cell goes beyond its own DC
value and that cell's DC voltage (the capacitive coupling of the fast edges), and the largest
|V - V_dc| at the end of the top (the plateau settled).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from rramlab.drivers.interface import ArrayGeometry, half_bias_voltages
from rramlab.sim.array import ArrayNodes, ArrayParameters
from rramlab.sim.device import _num, device_preset
from rramlab.sim.spice import simulate
from rramlab.sim.virtual_array import VirtualArray, pulse_sequence


def excursions(device, size: int, wire: float, width: float = 2e-6, peak_v: float = 3.2):
    """(selected cell's excess over its DC |V|, any cell's largest excess, that cell's DC V, largest
    |V - V_dc| at the end of the top), volts."""
    chip = VirtualArray(ArrayGeometry(size, size), array=ArrayParameters(wire), engine="spice", device=device)
    rng = np.random.default_rng(0)
    k = rng.integers(0, 9, chip.geometry.shape)
    chip.switch_states = np.arange(8)[None, None, :] < k[:, :, None]
    wl, bl = half_bias_voltages(chip.geometry, 0, size - 1, peak_v)
    nodes = ArrayNodes(size, size, chip.array)
    seq = pulse_sequence([(wl, bl, width, "rect")], probe_v=0.0)
    cells = [(w, b) for w in range(size) for b in range(size)]
    names = sorted({n for w, b in cells for n in (nodes.wl(w, b), nodes.bl(w, b))})
    vecs = ["time"] + [f"v({n})" for n in names]
    tmax = width / 50
    top_end = seq.top_end_times[0]
    res = simulate(chip._netlist(seq.wordline_sources, seq.bitline_sources,
                                 f".tran {_num(tmax)} {_num(top_end + width * 0.02)} 0 {_num(tmax)}", vecs), vecs)
    v = np.array([res[f"v({nodes.wl(w, b)})"] - res[f"v({nodes.bl(w, b)})"] for w, b in cells]).T
    v_dc, _ = chip._fast().solve((wl[:, None] - bl[None, :])[None], chip._g_switch(), chip.conductance_offset)
    v_dc = v_dc.reshape(-1)
    sign = np.where(v_dc < 0, -1.0, 1.0)
    excess = (v * sign - np.abs(v_dc)).max(axis=0)
    worst = int(np.argmax(excess))
    end = np.abs(v[np.searchsorted(res["time"], top_end) - 1] - v_dc).max()
    return excess[cells.index((0, size - 1))], excess[worst], v_dc[worst], end


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8)
    args = ap.parse_args(argv)
    stack = device_preset("measured")
    small = dataclasses.replace(stack, switching_c=0.1e-15, insulator_c=0.1e-15)
    print(f"{args.size} x {args.size} array, 3.2 V half-bias 2 us pulse on the far cell")
    for name, device in (("0.1 fF", small), (f"Cs=Ci {stack.switching_c * 1e12:.2f} pF", stack)):
        for wire in (2.0, 100.0):
            sel, worst, worst_dc, end = excursions(device, args.size, wire)
            print(f"  {name:14s} {wire:5g} ohm: selected cell beyond its DC peak {sel * 1e3:8.3f} mV; any cell "
                  f"{worst * 1e3:8.3f} mV (its DC {worst_dc:+.3f} V); |V - V_dc| at the end of the top "
                  f"{end * 1e3:.3f} mV")


if __name__ == "__main__":
    main()
