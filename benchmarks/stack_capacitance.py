"""Cell capacitances from the fabricated stack (4.5 nm HfO2 + 9 nm TiOx, sim/device.py
stack_capacitances) instead of the compact model's 0.1 fF: where reads and 2 us pulses still give
the measured behaviour, and where they stop. ngspice, one lone device; about 10-30 s.

Prints, per cell size (2.5, 10, 20 um):
* the layer and stack capacitances and the internal time constant of an HRS read;
* read current (1 V step, 10 ns edge) at the 4156C's integration times (short: 80 us; 1 power-line
  cycle: 20 ms; long: 40 ms), for HRS and the 10, 40, 80 nS levels, against the DC read the twin uses;
* the ISPP levels of 2 us set pulses from HRS (3.3, 3.4, ... 4.0 V, each followed by a DC read) on
  the twin's ngspice engine with the stack's Cs and Ci, against the default 0.1 fF.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rramlab.sim.device import _num, device_netlist, device_preset, stack_capacitances, switch_model_lines
from rramlab.sim.spice import simulate
from rramlab.sim.virtual_array import VirtualArray

INTEGRATION_S = {"short 80 us": 80e-6, "1 PLC 20 ms": 20e-3, "long 40 ms": 40e-3}
LEVELS = {"HRS": 0, "10 nS": 1, "40 nS": 4, "80 nS": 8}


def read_transient(params, switches_on: int, v_read: float = 1.0, stop_s: float = 50e-3):
    """(time s, current A) of a lone device after a read step 0 -> v_read at t = 0 (10 ns edge)."""
    n = params.n_switches
    on = [k < switches_on for k in range(n)]
    lines = ["* stack read", *switch_model_lines(params, "sw"),
             f"Vte te 0 PWL(0 0 10e-9 {_num(v_read)} {_num(stop_s)} {_num(v_read)})", "Vbe be 0 DC 0",
             *device_netlist(params, "d", "te", "be", on, "sw"),
             ".options method=gear",  # trapezoidal integration rings on this stiff RC (Gohm with pF)
             ".save time vbe#branch", f".tran 1e-7 {_num(stop_s)} 0 {_num(stop_s / 2000)}", ".end", ""]
    r = simulate("\n".join(lines), ["time", "vbe#branch"])
    return r["time"], r["vbe#branch"]  # current into the bitline's 0 V source, as a sense amplifier sees it


def dc_read(params, switches_on: int, v_read: float = 1.0) -> float:
    d = VirtualArray.lone_device(device=params, engine="fast")
    d.switch_states[0, 0, :switches_on] = True
    return float(d.read_cell(0, 0, v_read))


def ispp_levels(params, engine: str = "spice"):
    """Read conductance (nS) after 2 us set pulses at 3.3, 3.4, ... 4.0 V from HRS (one device)."""
    d = VirtualArray.lone_device(device=params, engine=engine)
    out = []
    for k in range(8):
        d.pulse_cell(0, 0, 3.3 + 0.1 * k, 2e-6)
        out.append(d.read_cell(0, 0) * 1e9)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides-um", default="2.5,10,20", help="cell sides (um), comma separated")
    args = ap.parse_args(argv)
    base = device_preset("measured")
    t0 = time.perf_counter()
    print(f"default Cs = Ci = {base.switching_c * 1e15:g} fF; ISPP levels (nS), 2 us pulses: "
          + " ".join(f"{g:.1f}" for g in ispp_levels(base)))
    for side_um in (float(x) for x in args.sides_um.split(",")):
        c_hf, c_ti, c_stack = stack_capacitances(side_um * 1e-6)
        p = base.with_stack_capacitance(side_um * 1e-6)
        # HRS read: the internal node n2 charges through Rs || Ri at about 0 V bias
        rs0 = base.switching_r0 * np.exp(base.switching_v0 / base.switching_k)
        ri0 = base.insulator_r0 * np.exp(base.insulator_v0 / base.insulator_k)
        tau = (c_hf + c_ti) * rs0 * ri0 / (rs0 + ri0)
        print(f"\n{side_um:g} um cell: C(HfO2) {c_hf * 1e12:.3f} pF, C(TiOx) {c_ti * 1e12:.3f} pF, "
              f"stack {c_stack * 1e12:.3f} pF; HRS internal time constant (Cs + Ci)(Rs || Ri) at 0 V = {tau * 1e6:.0f} us")
        for name, k in LEVELS.items():
            t, i = read_transient(p, k)
            dc = dc_read(p, k)
            cells = []
            for label, t_int in INTEGRATION_S.items():
                window = (t >= 0) & (t <= t_int)  # the SMU averages from the step on (no hold time)
                mean = float(np.trapezoid(i[window], t[window]) / t_int)
                at_end = float(np.interp(t_int, t, i))
                cells.append(f"{label}: mean {mean * 1e9:7.2f} nA, at end {at_end * 1e9:6.2f} nA")
            print(f"  {name:6s} DC {dc * 1e9:6.2f} nA | " + " | ".join(cells))
        print("  ISPP levels (nS), 2 us pulses, ngspice with the stack's Cs, Ci: "
              + " ".join(f"{g:.1f}" for g in ispp_levels(p)))
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
