"""DC I-V sweep of a lone HT-RRAM device in ngspice (the paper's Fig. 5 check of the compact model).

The sweep is a slow voltage ramp through the given points in one transient, so the switches follow
their hysteresis exactly as in a measurement: the current on the way back from the set peak is
higher than on the way up (the gradual set), and the negative branch resets the device.

The sweep stays inside the device's safe operating area (``DEVICE_CEILING``: 4.3 V set, -2.5 V
reset) and has at most ``MAX_SWEEP_POINTS`` points, whoever calls it.
"""

from __future__ import annotations

import numpy as np

from rramlab.drivers.interface import DEVICE_CEILING, RequestError, SafetyError
from rramlab.sim.device import DeviceParameters, _num, device_netlist, switch_model_lines
from rramlab.sim.spice import simulate

#: Most points one sweep may have. A full-range sweep (4.3 V / -2.5 V) in 1 mV steps has 13,601 and
#: takes about 11 s in ngspice; far smaller steps would only exhaust memory (1e-7 V: 1.4e8 points).
MAX_SWEEP_POINTS = 20_000


def sweep_voltages(set_peak: float = 4.2, reset_peak: float = -1.6, step: float = 0.025) -> np.ndarray:
    """Points of a 0 -> set_peak -> 0 -> reset_peak -> 0 V sweep in ``step`` volt steps.

    Raises SafetyError if a peak is beyond the device's safe operating area, RequestError if the
    sweep would have more than MAX_SWEEP_POINTS points or the values make no sweep.
    """
    for name, v in (("set_peak", set_peak), ("reset_peak", reset_peak), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v):
            raise RequestError(f"{name} must be a finite number of volts, got {v!r}")
    if not (set_peak > 0 and reset_peak < 0 and step > 0):
        raise RequestError(f"need set_peak > 0, reset_peak < 0 and step > 0; got {set_peak}, {reset_peak}, {step}")
    _check_ceiling(set_peak, reset_peak)
    points = 1 + 2 * round(set_peak / step) + 2 * round(-reset_peak / step)
    if points > MAX_SWEEP_POINTS:
        raise RequestError(f"a {step:g} V step gives {points} points, more than {MAX_SWEEP_POINTS}: use a step of "
                           f"at least {2 * (set_peak - reset_peak) / MAX_SWEEP_POINTS:.2g} V")

    def leg(a, b):
        n = int(round(abs(b - a) / step))
        return np.round(np.linspace(a, b, n + 1), 6)

    parts = [leg(0.0, set_peak), leg(set_peak, 0.0)[1:], leg(0.0, reset_peak)[1:], leg(reset_peak, 0.0)[1:]]
    return np.concatenate(parts)


def _check_ceiling(highest: float, lowest: float) -> None:
    lo, hi = DEVICE_CEILING.window("reset")[0], DEVICE_CEILING.window("set")[1]
    if highest > hi:
        raise SafetyError(f"a sweep to {highest:+g} V is above the set limit of {hi:+g} V (the HT-RRAM breaks down "
                          f"near 4.4 V): lower the set peak")
    if lowest < lo:
        raise SafetyError(f"a sweep to {lowest:+g} V is below the reset limit of {lo:+g} V: raise the reset peak")


def dc_sweep(voltages, device: DeviceParameters | None = None, switch_on=None,
             dwell_s: float = 1e-3) -> np.ndarray:
    """Current (A) through a lone device at each voltage of ``voltages`` (V), swept in order with
    ``dwell_s`` seconds per point. switch_on: initial switch states (default all off, HRS).
    The transient carries the device's Cs and Ci: with Table 1's 0.1 fF it is the DC I-V within
    ngspice's tolerance; with the default stack's pF the currents near 0 V (pA) lag by tens of pA at
    1 ms per point (about 60 pA at +-0.05 V after a 4.2 V set), so a DC comparison at pA uses 0.1 fF.

    Refuses (SafetyError) voltages beyond the device's safe operating area and (RequestError) more
    than MAX_SWEEP_POINTS points, before ngspice is started."""
    device = device or DeviceParameters()
    try:
        volts = np.asarray(voltages, dtype=float)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"voltages must be numbers (volts), got {voltages!r}") from exc
    if volts.ndim != 1 or volts.size < 2 or not np.all(np.isfinite(volts)):
        raise RequestError("voltages must be a 1-d sequence of at least two finite numbers (volts)")
    if volts.size > MAX_SWEEP_POINTS:
        raise RequestError(f"{volts.size} sweep points are more than {MAX_SWEEP_POINTS}: use fewer")
    _check_ceiling(float(volts.max()), float(volts.min()))
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
