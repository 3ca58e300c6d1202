"""How short a pulse may be before the fast engine's DC view of it (no Cs, Ci) stops holding.

Run by hand:  .venv/bin/python benchmarks/dc_width.py [--size 24] [--wire 100]
For each pulse width, one ngspice transient of a half-bias pulse (rect and tri) on the array at
``--wire`` ohm per segment, every cell at a random level, amplitude below every switch threshold so
no switch flips. At every time point ngspice saved, the cell terminal voltages are compared with the
DC solution (the fast engine's) at the same instant of the ramp (the drive's fraction of its peak).
Prints the largest difference (V) per width; sim.virtual_array.DC_MIN_WIDTH_S is chosen from it.
"""

from __future__ import annotations

import argparse

import numpy as np

from rramlab.drivers.interface import ArrayGeometry, half_bias_voltages
from rramlab.sim.array import ArrayNodes, ArrayParameters
from rramlab.sim.device import _num
from rramlab.sim.spice import simulate
from rramlab.sim.virtual_array import VirtualArray, pulse_sequence


def worst_difference(chip: VirtualArray, wl, bl, width: float, shape: str) -> float:
    W, B = chip.geometry.shape
    nodes = ArrayNodes(W, B, chip.array)
    seq = pulse_sequence([(wl, bl, width, shape)], probe_v=0.0)
    cells = [(w, b) for w in range(W) for b in range(B)]
    names = sorted({n for w, b in cells for n in (nodes.wl(w, b), nodes.bl(w, b))})
    drive = nodes.wl_driver(int(np.argmax(np.abs(wl))))
    vecs = ["time", f"v({drive})"] + [f"v({n})" for n in names]
    tmax = width / 50
    net = chip._netlist(seq.wordline_sources, seq.bitline_sources,
                        f".tran {_num(tmax)} {_num(seq.top_end_times[0] + width * 0.02)} 0 {_num(tmax)}", vecs)
    res = simulate(net, vecs)
    s = res[f"v({drive})"] / float(wl[int(np.argmax(np.abs(wl)))])
    v_cell = np.array([res[f"v({nodes.wl(w, b)})"] - res[f"v({nodes.bl(w, b)})"] for w, b in cells]).T
    na = chip._fast()
    v_open = (wl[:, None] - bl[None, :])[None] * s[:, None, None]
    v_dc, _ = na.solve(v_open, chip._g_switch(), chip.conductance_offset)
    return float(np.max(np.abs(v_cell - v_dc.reshape(len(s), -1))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=24)
    ap.add_argument("--wire", type=float, default=100.0)
    args = ap.parse_args(argv)
    chip = VirtualArray(ArrayGeometry(args.size, args.size), array=ArrayParameters(args.wire), engine="spice")
    rng = np.random.default_rng(0)
    k = rng.integers(0, 9, chip.geometry.shape)
    chip.switch_states = np.arange(8)[None, None, :] < k[:, :, None]
    wl, bl = half_bias_voltages(chip.geometry, 0, args.size - 1, 3.2)  # below every turn-on threshold
    print(f"{args.size} x {args.size} array, {args.wire:g} ohm per segment, 3.2 V half-bias pulse on the far cell")
    print(f"{'width s':>10} {'rect: max |V - V_dc| V':>24} {'tri: max |V - V_dc| V':>24}")
    for width in (1e-9, 3e-9, 1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 2e-6):
        r = worst_difference(chip, wl, bl, width, "rect")
        t = worst_difference(chip, wl, bl, width, "tri")
        print(f"{width:>10.0e} {r:>24.3e} {t:>24.3e}")


if __name__ == "__main__":
    main()
