"""DC I-V sweep of a lone HT-RRAM device in ngspice (the paper's Fig. 5 check of the compact model).

The sweep is a slow voltage ramp through the given points in one transient, so the switches follow
their hysteresis exactly as in a measurement: the current on the way back from the set peak is
higher than on the way up (the gradual set), and the negative branch resets the device.
"""

from __future__ import annotations

import numpy as np

from rramlab.sim.device import DeviceParameters, _num, device_netlist, switch_model_lines
from rramlab.sim.spice import simulate


def sweep_voltages(set_peak: float = 4.2, reset_peak: float = -1.6, step: float = 0.025) -> np.ndarray:
    """Points of a 0 -> set_peak -> 0 -> reset_peak -> 0 V sweep in ``step`` volt steps."""
    if not (set_peak > 0 and reset_peak < 0 and step > 0):
        raise ValueError(f"need set_peak > 0, reset_peak < 0 and step > 0; got {set_peak}, {reset_peak}, {step}")

    def leg(a, b):
        n = int(round(abs(b - a) / step))
        return np.round(np.linspace(a, b, n + 1), 6)

    parts = [leg(0.0, set_peak), leg(set_peak, 0.0)[1:], leg(0.0, reset_peak)[1:], leg(reset_peak, 0.0)[1:]]
    return np.concatenate(parts)


def dc_sweep(voltages, device: DeviceParameters | None = None, switch_on=None,
             dwell_s: float = 1e-3) -> np.ndarray:
    """Current (A) through a lone device at each voltage of ``voltages`` (V), swept in order with
    ``dwell_s`` seconds per point. switch_on: initial switch states (default all off, HRS)."""
    device = device or DeviceParameters()
    volts = np.asarray(voltages, dtype=float)
    if volts.ndim != 1 or volts.size < 2 or not np.all(np.isfinite(volts)):
        raise ValueError("voltages must be a 1-d sequence of at least two finite numbers (volts)")
    if switch_on is None:
        switch_on = [False] * device.n_switches
    t = np.arange(volts.size) * dwell_s
    pwl = "PWL(" + " ".join(f"{_num(ti)} {_num(v)}" for ti, v in zip(t, volts)) + ")"
    lines = ["* rramlab DC sweep", *switch_model_lines(device, "sw"), f"Vtop te 0 {pwl}",
             *device_netlist(device, "x", "te", "be", switch_on, "sw"), "Vsense be 0 DC 0",
             ".save time i(vsense)", f".tran {_num(dwell_s / 10)} {_num(t[-1])}", ".end", ""]
    result = simulate("\n".join(lines), ["time", "vsense#branch"])
    # Each point is where the ramp arrives, a breakpoint ngspice lands on exactly.
    return np.interp(t, result["time"], result["vsense#branch"])
