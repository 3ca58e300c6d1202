"""The HT-RRAM compact model (paper Table 1, Fig. 5a): the physics of one device, in one place.

Topology, from the top electrode (TE) to the bottom electrode (BE)::

    TE -- Rc -- n1 --+-- S1..Sn (voltage-controlled switches) --+-- n2 --+-- Ri --+-- n3 -- Rc -- BE
                     +-- Rs (non-linear, switching area) -------+        +-- Ci --+
                     +-- Cs ------------------------------------+

Each switch is an ngspice ``SW`` whose control is the device's terminal voltage V(TE) - V(BE):
it turns on when that voltage rises above VT + VH and off when it falls below VT - VH. Many
switches with spread on-thresholds make the set gradual (one read level every few set pulses);
off-thresholds bunched near -1 V make the reset abrupt, as measured. Controlling the switches by the
internal node voltage cannot reproduce the set window (see shared/design/twin-notes.md).

The non-linear resistors are written as currents, I = V / R0 * exp((|V| - V0) / k), the same as
R = R0 * exp(-(|V| - V0) / k) in Table 1, but without overflow.

Units: ohm, farad, volt, ampere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Switch:
    """One voltage-controlled switch of the switching area.

    threshold_v (VT) and hysteresis_v (VH), volts: on above VT + VH, off below VT - VH (strict, as
    ngspice). on_resistance (RON) and off_resistance (ROFF), ohm.
    """

    threshold_v: float
    hysteresis_v: float
    on_resistance: float
    off_resistance: float = 1e12

    @property
    def turn_on_v(self) -> float:
        return self.threshold_v + self.hysteresis_v

    @property
    def turn_off_v(self) -> float:
        return self.threshold_v - self.hysteresis_v

    @classmethod
    def from_thresholds(cls, turn_on_v: float, turn_off_v: float, on_resistance: float,
                        off_resistance: float = 1e12) -> "Switch":
        return cls(
            threshold_v=(turn_on_v + turn_off_v) / 2.0,
            hysteresis_v=(turn_on_v - turn_off_v) / 2.0,
            on_resistance=on_resistance,
            off_resistance=off_resistance,
        )


# The "measured" preset (the default). Calibrated so a 3.0 -> 4.2 V / 25 mV set ramp reads 10, 20,
# ... 80 nA at 1 V (one level about every 4 pulses) and a -1.0 -> -1.6 V / 50 mV reset ramp loses
# 75 % after 3 pulses, as measured (Fig. 4a).
# Turn-on thresholds VT + VH = 3.2625 ... 3.9625 V sit half a step off the 25 mV pulse grid so that
# rounding noise never decides a flip. RON in turn-on order from the feasibility study
# (twin-notes.md). Turn-off thresholds: the high-conductance switches go first, near -1 V, so the
# reset is a cliff, not the mirror image of the set. This needs a per-switch VH (2.275-2.475 V) and
# moves VT to 0.99-1.49 V, away from Table 1's literal values (the "table1" preset below).
_DEFAULT_TURN_ON = tuple(3.2625 + 0.1 * k for k in range(8))
_DEFAULT_RON = (61.5e6, 32.0e6, 19.8e6, 12.1e6, 6.88e6, 3.37e6, 1.17e6, 54.6e3)
_DEFAULT_TURN_OFF = (-1.2875, -1.1875, -1.0875, -1.0375, -0.9875, -0.9875, -0.9875, -0.9875)
DEFAULT_SWITCHES = tuple(
    Switch.from_thresholds(on, off, ron) for on, off, ron in zip(_DEFAULT_TURN_ON, _DEFAULT_TURN_OFF, _DEFAULT_RON)
)
MEASURED_SWITCHES = DEFAULT_SWITCHES

# The "table1" preset: Table 1 taken literally. VT evenly spaced 0.85 ... 1.55 V, one VH of 2.4 V,
# RON 30 kohm - 62 Mohm (the same 8 values as above), ROFF 1e12 ohm. Turn-on VT + VH = 3.25 ...
# 3.95 V, turn-off VT - VH = -1.55 ... -0.85 V, in the same order: the switch that turns on first
# turns off last, so the reset is a staircase down to about -1.6 V (where the paper stops its
# simulated reset), not the measured cliff.
TABLE1_THRESHOLDS_V = tuple(0.85 + 0.1 * k for k in range(8))
TABLE1_HYSTERESIS_V = 2.4
TABLE1_SWITCHES = tuple(Switch(vt, TABLE1_HYSTERESIS_V, ron) for vt, ron in zip(TABLE1_THRESHOLDS_V, _DEFAULT_RON))


#: Overdrive window (V) of the partial on-state (partial_on_fraction). Half the 12.5 mV by which the
#: measured preset's turn-on thresholds sit below the 25 mV ramp grid, so every pulse of the measured
#: ISPP ramp turns its switch fully on (the ISPP levels are unchanged), even with a few mV of IR drop
#: on an array cell. See README "Partial switching".
PARTIAL_WINDOW_V = 0.006
#: Smallest on-fraction of a switch that has just turned on (a tiny switched area, never zero).
PARTIAL_FLOOR = 1e-3


def partial_on_fraction(overdrive_v, window_v: float = PARTIAL_WINDOW_V):
    """Fraction (0..1] of a switch's on-conductance 1/RON reached by a pulse whose peak terminal
    voltage exceeded the switch's turn-on threshold by ``overdrive_v`` (V, broadcast): linear from
    PARTIAL_FLOOR at the threshold to 1 at ``window_v`` above it. A non-filamentary switching area
    switches in proportion to how far the field went beyond threshold, so a cell can be moved by
    small amounts between the eight levels (the paper's write-verify needs that). window_v 0: 1."""
    x = np.asarray(overdrive_v, dtype=float)
    if window_v <= 0:
        return np.ones_like(x)
    return np.clip(x / window_v, PARTIAL_FLOOR, 1.0)


#: Hard breakdown (paper, Results: "hard breakdown occurred at an average 4.4 V and permanently
#: altered the conductance in the LRS state"; hence its safe window ends at 4.3 V). HT-RRAM needs no
#: forming and no compliance current, so the twin's device is never formed: breakdown is the one
#: irreversible event of the model. A cell whose terminal voltage at a pulse's (or a sweep step's)
#: peak exceeds its own breakdown voltage gets a permanent linear path of BREAKDOWN_RESISTANCE across
#: its terminals, in parallel with the switching area, in every engine.
#: mean breakdown voltage (V, |V| of either polarity): the paper's average
BREAKDOWN_V = 4.4
#: cell-to-cell spread (V, standard deviation). Assumed: the paper gives only the average; 30 mV is
#: what a +-0.1 V range of the devices it broke would suggest
BREAKDOWN_SPREAD_V = 0.03
#: no cell breaks below this (V). Assumed: halfway between the paper's 4.3 V safe limit, which it
#: chose to avoid breakdown, and the 4.4 V mean; it keeps every cell above the seam's safe
#: operating area (DEVICE_CEILING: 4.3 V across a cell or on a line), so no normal caller breaks one
BREAKDOWN_FLOOR_V = 4.35
#: resistance (ohm) of the path a breakdown leaves. Assumed: the paper reports only that the LRS
#: conductance changed for good; a hard-breakdown path through a few-nm HfO2 film is typically in
#: the kilo-ohm range, far below the 54.6 kohm of the most conductive switch, so a broken cell reads
#: about 100 uA at 1 V, three orders above the top level (80 nA)
BREAKDOWN_RESISTANCE = 10e3


def draw_breakdown_voltages(params: "DeviceParameters", shape: tuple[int, int], seed) -> np.ndarray | None:
    """Each cell's own breakdown voltage (V), shape ``shape``: normal about ``params.breakdown_v``
    with ``params.breakdown_spread_v``, a draw below ``params.breakdown_floor_v`` redrawn. None when
    the device has no breakdown (``breakdown_v=None``). From a generator of its own, seeded from the
    chip's ``seed`` (None: fresh entropy), so a chip keeps exactly the switches and errors it had."""
    if params.breakdown_v is None:
        return None
    rng = np.random.default_rng(None if seed is None else [int(seed), 0xB4D])
    v = np.full(shape, float(params.breakdown_v))
    if params.breakdown_spread_v > 0:
        v = rng.normal(params.breakdown_v, params.breakdown_spread_v, shape)
        for _ in range(1000):
            low = v < params.breakdown_floor_v
            if not low.any():
                break
            v[low] = rng.normal(params.breakdown_v, params.breakdown_spread_v, int(low.sum()))
    return np.maximum(v, params.breakdown_floor_v)


def breaks_down(terminal_v, cell_breakdown_v) -> np.ndarray:
    """Whether each cell breaks down (bool, broadcast): its terminal voltage (V, either polarity)
    beyond its own breakdown voltage (V, draw_breakdown_voltages). The rule every engine applies."""
    return np.abs(np.asarray(terminal_v, dtype=float)) > np.asarray(cell_breakdown_v, dtype=float)


#: The fabricated stack (paper Fig. 2): HfO2 over TiOx between the electrodes. Permittivities are
#: typical thin-film values (assumed; the paper gives none): HfO2 about 20, sputtered TiOx about 40.
EPSILON_0 = 8.854e-12  # F/m
HFO2_THICKNESS_M, HFO2_PERMITTIVITY = 4.5e-9, 20.0
TIOX_THICKNESS_M, TIOX_PERMITTIVITY = 9e-9, 40.0


def layer_capacitance(cell_side_m: float, thickness_m: float, permittivity: float) -> float:
    """Parallel-plate capacitance (F) of one oxide layer under a square cell of side ``cell_side_m`` (m)."""
    return EPSILON_0 * permittivity * cell_side_m ** 2 / thickness_m


def stack_capacitances(cell_side_m: float) -> tuple[float, float, float]:
    """(C_HfO2, C_TiOx, C_stack) in F of a square cell of side ``cell_side_m`` (m): the two layers
    and their series combination, the capacitance the cell's terminals see. A 10 um cell:
    8.854e-12 x 20 x (10e-6)^2 / 4.5e-9 = 3.93 pF per layer (TiOx: 40 / 9 nm, the same), 1.97 pF in
    series; 2.5 um: 0.12 pF; 20 um: 7.9 pF (area scales as side^2)."""
    c_hf = layer_capacitance(cell_side_m, HFO2_THICKNESS_M, HFO2_PERMITTIVITY)
    c_ti = layer_capacitance(cell_side_m, TIOX_THICKNESS_M, TIOX_PERMITTIVITY)
    return c_hf, c_ti, c_hf * c_ti / (c_hf + c_ti)


#: Side (m) of the twin's cells, for its default Cs and Ci. The paper measures cells of 2.5, 5, 10 and
#: 20 um (same current density, Fig. 3f) and does not say which size its 24 x 24 array uses; 10 um is
#: taken: the second-largest measured size, with a 10-80 nA window at 1 V that needs no sub-pA
#: reads, and the size the charging-energy figures of issue 22 use. A stated assumption, not a fit.
ARRAY_CELL_SIDE_M = 10e-6
#: The default Cs = C(HfO2) and Ci = C(TiOx) of a 10 um cell: 3.93 pF each (stack 1.97 pF).
STACK_SWITCHING_C, STACK_INSULATOR_C, _ = stack_capacitances(ARRAY_CELL_SIDE_M)
#: Table 1's Cs and Ci (0.1 fF), kept by the "table1" preset.
TABLE1_C = 0.1e-15
#: A read has settled when this many of the cell's slowest internal time constants have passed
#: (e^-5: 0.7 % of the step's transient left).
SETTLING_TIME_CONSTANTS = 5.0


@dataclass(frozen=True)
class DeviceParameters:
    """Every element of the HT-RRAM compact model (Table 1).

    switching_r0, switching_v0, switching_k: Rs = R0 * exp(-(|V_area1| - V0) / k)  [ohm, V, V]
    insulator_r0, insulator_v0, insulator_k: Ri = R0 * exp(-(|V_area2| - V0) / k)  [ohm, V, V]
    contact_r: Rc at the top and at the bottom electrode [ohm]
    switching_c, insulator_c: Cs and Ci [F]; default the fabricated stack's under a 10 um cell
        (ARRAY_CELL_SIDE_M, stack_capacitances), Table 1's 0.1 fF in the "table1" preset
    switches: the parallel switches S1..Sn, in turn-on order
    partial_window_v: overdrive (V, peak terminal voltage above a switch's turn-on threshold) over
        which a switch that turns on goes from barely on to fully on (partial_on_fraction); 0 turns
        the partial state off (every switch that turns on is fully on at once)
    breakdown_v, breakdown_spread_v, breakdown_floor_v, breakdown_resistance: hard breakdown (see
        BREAKDOWN_V above): mean, spread and floor of the cells' breakdown voltages (V, |V| at the
        terminals) and the resistance (ohm) of the permanent path it leaves; breakdown_v=None turns
        breakdown off (a cell then survives any voltage, the model before breakdown was added)
    """

    switching_r0: float = 51e5
    switching_v0: float = 2.52
    switching_k: float = 0.35
    insulator_r0: float = 87e2
    insulator_v0: float = 4.52
    insulator_k: float = 0.485
    contact_r: float = 100.0
    switching_c: float = STACK_SWITCHING_C
    insulator_c: float = STACK_INSULATOR_C
    switches: tuple[Switch, ...] = field(default=DEFAULT_SWITCHES)
    partial_window_v: float = PARTIAL_WINDOW_V
    breakdown_v: float | None = BREAKDOWN_V
    breakdown_spread_v: float = BREAKDOWN_SPREAD_V
    breakdown_floor_v: float = BREAKDOWN_FLOOR_V
    breakdown_resistance: float = BREAKDOWN_RESISTANCE

    def __post_init__(self):
        if self.breakdown_v is not None:
            if not (np.isfinite(self.breakdown_v) and self.breakdown_v > 0):
                raise ValueError(f"DeviceParameters.breakdown_v must be a positive voltage or None (no breakdown), "
                                 f"got {self.breakdown_v!r}")
            for name in ("breakdown_spread_v", "breakdown_floor_v"):
                if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                    raise ValueError(f"DeviceParameters.{name} must be >= 0 V, got {getattr(self, name)!r}")
            if self.breakdown_floor_v > self.breakdown_v:
                raise ValueError(f"DeviceParameters.breakdown_floor_v ({self.breakdown_floor_v} V) must not exceed "
                                 f"breakdown_v ({self.breakdown_v} V)")
            if not (np.isfinite(self.breakdown_resistance) and self.breakdown_resistance > 0):
                raise ValueError(f"DeviceParameters.breakdown_resistance must be positive, got "
                                 f"{self.breakdown_resistance!r}")
        for name in ("switching_r0", "switching_k", "insulator_r0", "insulator_k", "switching_c", "insulator_c"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DeviceParameters.{name} must be positive, got {getattr(self, name)!r}")
        if not (np.isfinite(self.partial_window_v) and self.partial_window_v >= 0):
            raise ValueError(f"DeviceParameters.partial_window_v must be >= 0 V, got {self.partial_window_v!r}")
        if self.contact_r < 0:
            raise ValueError(f"DeviceParameters.contact_r must be >= 0 ohm, got {self.contact_r!r}")
        if not self.switches:
            raise ValueError("DeviceParameters.switches must hold at least one switch")
        for i, s in enumerate(self.switches):
            if not s.hysteresis_v > 0:
                raise ValueError(f"switch {i}: hysteresis VH must be positive (got {s.hysteresis_v} V)")
            if not 0 < s.on_resistance < s.off_resistance:
                raise ValueError(f"switch {i}: need 0 < RON < ROFF, got RON={s.on_resistance}, ROFF={s.off_resistance}")

    @property
    def n_switches(self) -> int:
        return len(self.switches)

    def with_stack_capacitance(self, cell_side_m: float) -> "DeviceParameters":
        """This device with Cs and Ci of the fabricated stack under a square cell of side
        ``cell_side_m`` (m): Cs = C(HfO2), Ci = C(TiOx) (stack_capacitances; 10 um: 3.9 pF each)
        (the default is this at ARRAY_CELL_SIDE_M). benchmarks/stack_capacitance.py shows what it changes."""
        c_hf, c_ti, _ = stack_capacitances(cell_side_m)
        return replace(self, switching_c=c_hf, insulator_c=c_ti)

    def read_time_constant_s(self, g_switch=0.0, insulator_r0=None):
        """The internal time constant (s) of a read step on a cell whose switch bank conducts
        ``g_switch`` (S, broadcast): Cs || (Rs, switches) in series with Ci || Ri under a fixed terminal
        voltage has one mode, tau = (Cs + Ci) / (G1 + G2), G1 = g_switch + 1/Rs(0), G2 = 1/Ri(0), the
        small-signal conductances at 0 V (the largest tau of any read voltage). HRS, 10 um:
        7.87 pF x (6.8 Gohm || 97 Mohm) = 0.75 ms; off switches count their 1e-12 S."""
        r0i = self.insulator_r0 if insulator_r0 is None else np.asarray(insulator_r0, dtype=float)
        g_off = sum(1.0 / s.off_resistance for s in self.switches)
        g1 = np.maximum(np.asarray(g_switch, dtype=float), g_off) + 1.0 / (
            self.switching_r0 * np.exp(self.switching_v0 / self.switching_k))
        g2 = 1.0 / (r0i * np.exp(self.insulator_v0 / self.insulator_k))
        return (self.switching_c + self.insulator_c) / (g1 + g2)

    def with_variability(self, rng: np.random.Generator, threshold_sigma_v: float = 0.0,
                         on_resistance_sigma: float = 0.0) -> "DeviceParameters":
        """A device-to-device variant: each switch's VT shifted by N(0, threshold_sigma_v) volts and
        RON scaled by exp(N(0, on_resistance_sigma)). VH is kept, so on- and off-thresholds move together."""
        switches = []
        for s in self.switches:
            dvt = rng.normal(0.0, threshold_sigma_v) if threshold_sigma_v > 0 else 0.0
            scale = float(np.exp(rng.normal(0.0, on_resistance_sigma))) if on_resistance_sigma > 0 else 1.0
            switches.append(replace(s, threshold_v=s.threshold_v + dvt, on_resistance=s.on_resistance * scale))
        return replace(self, switches=tuple(switches))

    # ----- switch-state rules shared by every engine -----
    def turn_on_thresholds(self) -> np.ndarray:
        return np.array([s.turn_on_v for s in self.switches])

    def turn_off_thresholds(self) -> np.ndarray:
        return np.array([s.turn_off_v for s in self.switches])


#: named device presets, selectable with ``VirtualArray(device="table1")`` and ``--device``
DEVICE_PRESETS: dict[str, DeviceParameters] = {
    "measured": DeviceParameters(switches=MEASURED_SWITCHES),
    "table1": DeviceParameters(switches=TABLE1_SWITCHES, switching_c=TABLE1_C, insulator_c=TABLE1_C),
}
DEFAULT_PRESET = "measured"


def device_preset(name: str) -> DeviceParameters:
    """The DeviceParameters of a named preset ("measured", the default, or "table1")."""
    try:
        return DEVICE_PRESETS[name]
    except KeyError:
        raise ValueError(f"device preset {name!r} is unknown: use one of {sorted(DEVICE_PRESETS)}") from None


def preset_name(params: DeviceParameters) -> str:
    """The name of the preset ``params`` equals, or "custom"."""
    for name, preset in DEVICE_PRESETS.items():
        if preset == params:
            return name
    return "custom"


def zero_bias_conductance(g_switch, params: DeviceParameters, insulator_r0=None):
    """Small-signal conductance (S) of the device at 0 V with switch-bank conductance ``g_switch`` (S).

    Every element's chord conductance I/V grows with its voltage (the switches are linear, Rs and
    Ri fall exponentially), so a device's chord conductance I(V)/V is smallest at 0 V: this is the
    lowest conductance the device shows at any read voltage. insulator_r0: per-cell Ri prefactor
    (ohm, broadcast) when variability reaches Ri; None means ``params.insulator_r0``.
    """
    p = params
    r0i = p.insulator_r0 if insulator_r0 is None else np.asarray(insulator_r0, dtype=float)
    g_rs = np.exp(-p.switching_v0 / p.switching_k) / p.switching_r0
    r_ri = r0i * np.exp(p.insulator_v0 / p.insulator_k)
    return 1.0 / (2.0 * p.contact_r + 1.0 / (np.asarray(g_switch, dtype=float) + g_rs) + r_ri)


def next_switch_states(states: np.ndarray, turn_on_v: np.ndarray, turn_off_v: np.ndarray,
                       terminal_v: np.ndarray) -> np.ndarray:
    """Switch states after the terminal voltage has followed ``terminal_v`` (V, in time order).

    The ngspice SW rule with hysteresis: on when V > VT + VH, off when V < VT - VH, otherwise held.
    states, turn_on_v, turn_off_v: arrays of the same shape (any); terminal_v: (..., time) matching
    their leading shape, or a 1-d time series shared by all.
    """
    states = np.array(states, dtype=bool, copy=True)
    v = np.asarray(terminal_v, dtype=float)
    if v.ndim == 1:
        v = np.broadcast_to(v, states.shape + v.shape)
    for t in range(v.shape[-1]):
        vt = v[..., t]
        states = np.where(vt > turn_on_v, True, np.where(vt < turn_off_v, False, states))
    return states


def _num(x: float) -> str:
    """Deterministic, full-precision number formatting for netlists."""
    return repr(float(x))


def switch_model_lines(params: DeviceParameters, prefix: str) -> list[str]:
    """`.model` lines for the switches, named ``{prefix}_{k}``."""
    return [
        f".model {prefix}_{k} SW(VT={_num(s.threshold_v)} VH={_num(s.hysteresis_v)} "
        f"RON={_num(s.on_resistance)} ROFF={_num(s.off_resistance)})"
        for k, s in enumerate(params.switches)
    ]


def switch_nodes(params: DeviceParameters, name: str, top: str, bottom: str) -> tuple[str, str]:
    """The two nodes the switch bank of device ``name`` sits between (n1, n2)."""
    n1 = f"{name}_1" if params.contact_r > 0 else top
    return n1, f"{name}_2"


def switch_name(name: str, k: int) -> str:
    """ngspice instance name of switch k of device ``name`` (its current is ``@<name>[i]``)."""
    return f"s{name}_{k}"


def device_netlist(params: DeviceParameters, name: str, top: str, bottom: str, switch_on,
                   model_prefix: str, conductance_offset: float = 0.0, insulator_r0: float | None = None) -> list[str]:
    """Netlist lines of one device between nodes ``top`` and ``bottom``.

    switch_on: initial state of each switch (ngspice honours ON/OFF on the instance line, also
    in .op), which is how the twin carries a cell's state from one call to the next.
    conductance_offset: a linear conductance (S) across the terminals standing for the programming
    error of the last weight transfer (0 means no element; bounded so the cell's conductance stays
    positive, see VirtualArray.programming_done).
    insulator_r0: this device's Ri prefactor (ohm) when variability reaches Ri; None: the model's.
    """
    p = params
    n1, n2 = switch_nodes(p, name, top, bottom)
    n3 = f"{name}_3" if p.contact_r > 0 else bottom
    r0i = p.insulator_r0 if insulator_r0 is None else float(insulator_r0)
    lines = []
    if p.contact_r > 0:
        lines.append(f"R{name}t {top} {n1} {_num(p.contact_r)}")
        lines.append(f"R{name}b {n3} {bottom} {_num(p.contact_r)}")
    for k, on in enumerate(switch_on):
        state = "ON" if on else "OFF"
        lines.append(f"S{name}_{k} {n1} {n2} {top} {bottom} {model_prefix}_{k} {state}")
    lines.append(
        f"B{name}s {n1} {n2} I=V({n1},{n2})/{_num(p.switching_r0)}"
        f"*exp((abs(V({n1},{n2}))-{_num(p.switching_v0)})/{_num(p.switching_k)})"
    )
    lines.append(f"C{name}s {n1} {n2} {_num(p.switching_c)}")
    lines.append(
        f"B{name}i {n2} {n3} I=V({n2},{n3})/{_num(r0i)}"
        f"*exp((abs(V({n2},{n3}))-{_num(p.insulator_v0)})/{_num(p.insulator_k)})"
    )
    lines.append(f"C{name}i {n2} {n3} {_num(p.insulator_c)}")
    if conductance_offset != 0.0:
        lines.append(f"R{name}e {top} {bottom} {_num(1.0 / conductance_offset)}")
    return lines
