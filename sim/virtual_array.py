"""VirtualArray: the CrossbarInstrument seam on a twin of the crossbar, solved by ngspice or by the
fast nodal engine (sim/nodal.py) behind the same calls.

Engines (``VirtualArray(engine=...)``):

- ``"spice"``: the reference. Every call builds the array netlist and solves it in ngspice (below).
- ``"fast"``: sim/nodal.py, nodal analysis of the same netlist in numpy (same compact model, wire
  and contact resistance, switch states): Newton for reads and VMM, a quasi-static ramp for pulses
  (Cs and Ci left out, valid for pulses of at least DC_MIN_WIDTH_S; shorter ones warn). Held to
  ngspice by tests/test_fast_engine.py and tests/test_twin_fidelity.py.
- ``"auto"`` (the default): fast for every read, VMM and pulse, except (a) a pulse in which cells
  that share a line cross switch thresholds in the same round (e.g. a whole row driven above a
  threshold): the order of those flips along the edge is only estimated by the fast engine, so
  ngspice's transient decides such a pulse; (b) a pulse shorter than DC_MIN_WIDTH_S, where Cs and
  Ci matter. Half-bias programming, reads and inference never take that path.

With engine="spice", a pulse is one ngspice transient of the array with each switch's current
state as its initial ON/OFF: the pulse (rectangular with short edges, or triangular), a 0 V tail,
then a small "state probe": every wordline at PROBE_V for a moment, far inside every switch's
hysteresis window, so nothing can flip. At the probe ngspice reports each switch's current
(``@s...[i]`` = V across the switch bank times the switch's present conductance) and the twin reads
each switch's state as that current over the bank's voltage: RON or ROFF. The states the next call
starts from are ngspice's own, not a re-evaluation of its saved node voltages (which misses a switch
whose own turn-on pulls its cell back below the threshold: ngspice keeps it on, by hysteresis).
Reads and VMM steps are operating points (.op) with the bitlines held at 0 V by their sense sources.

Read and VMM disturb: a read or VMM step whose cell voltages cross a switch threshold changes the
chip, as a pulse would. Both engines detect it from the fast engine's cell voltages (a certified
IR-drop bound first, so ordinary reads cost nothing extra); such a step is then applied like a
rectangular pulse of its voltages (fast: the quasi-static ramp; spice: a transient with its state
probe), its currents are those after the flips, and the new states are kept. Counted in
``last_read_disturbed`` and ``disturb_count``.

Pulse disturb: the target cells of a pulse are the cells that see its largest voltage magnitude
(the selected cell of a half-bias pulse, the written cells of a row-parallel pulse). Every other
cell whose switch states change is listed in ``last_pulse_disturbed`` and counted in
``disturb_count`` (cumulative, pulses and reads, saved with the chip).

The chip (switch states, per-cell device variants, programming error, random generator) saves to
and loads from one ``.npz`` file. Units: volts, amperes, seconds, siemens.
"""

from __future__ import annotations

import json
import logging
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rramlab.drivers.interface import (ArrayGeometry, CrossbarInstrument, RequestError, RramlabError,
                                      SafeOperatingArea, half_bias_voltages)
from rramlab.sim.aging import AgingState
from rramlab.sim.array import ArrayNodes, ArrayParameters, array_netlist, bitline_source
from rramlab.sim.device import (DEFAULT_PRESET, SETTLING_TIME_CONSTANTS, DeviceParameters, Switch, _num, breaks_down,
                                device_preset, draw_breakdown_voltages, partial_on_fraction, preset_name, switch_name,
                                switch_nodes, zero_bias_conductance)
from rramlab.sim.nodal import NodalArray, device_current_exact
from rramlab.sim.spice import simulate

log = logging.getLogger(__name__)

ENGINES = ("auto", "fast", "spice")
DEFAULT_ENGINE = "auto"

CHIP_FILE_VERSION = 1
#: version of the twin-fit block (``fit_meta``: fitted cells, distributions, source runs) a chip file
#: written by ``rramlab twin fit`` carries; a newer one is refused, an older one read
FIT_BLOCK_VERSION = 1
#: lines per side a chip file may hold: the HT-RRAM array is 24 x 24; a bound against an edited file
#: whose 100000 x 100000 geometry would ask for 75 GiB before anything could say so
MAX_CHIP_LINES = 256
DEFAULT_PROGRAMMING_ERROR_SIGMA = 1.06e-9  # S; paper: 94 % of transfers within +-2 nS

#: Shortest pulse width (s) for which the fast engine's DC (quasi-static) view of a pulse holds.
#: Measured by benchmarks/dc_width.py on the 24 x 24 array at 100 ohm per segment (the worst
#: parasitics the tests use): the largest difference, over the whole pulse, between ngspice's cell
#: voltages (with Cs, Ci) and the DC solution at the same instant of the ramp is 0.52 V at 1 ns,
#: 6.9 mV at 100 ns and falls as 1/width for a rect pulse (edges of 1 % of the width, at most
#: 10 ns), to below 1 mV at 1 us; a tri pulse stays under 1 mV from about 20 ns. 1 mV is a tenth of
#: the 12.5 mV by which the measured preset's thresholds sit off the 25 mV pulse grid. Below this
#: width "auto" uses ngspice and "fast" warns. Measured with 0.1 fF; with the default stack's pF the
#: selected cell still approaches its DC voltage from below and the top settles (0.17 mV at the end of
#: a 2 us top, 8 x 8 at 100 ohm), while the 10 ns edges swing unselected cells (DC 0 V) by up to
#: 179 mV there, far from any threshold (benchmarks/stack_capacitance_edges.py).
DC_MIN_WIDTH_S = 1e-6

#: ngspice's largest time step in a pulse transient: the narrowest pulse's width over this number.
SPICE_STEPS_PER_WIDTH = 50

#: Largest voltage (V) of the state probe at the end of every ngspice pulse transient.
PROBE_V = 0.1

#: Detection margin (V) when the fast engine's cell voltages decide whether an ngspice read may
#: disturb: the engines' DC solutions agree to about 1e-9 V, so a step this close to a threshold is
#: handed to the transient path on ngspice, where ngspice decides.
DISTURB_MARGIN_V = 1e-6

#: Width (s) of the rectangular pulse a disturbing read or VMM step is applied as (quasi-static).
READ_PULSE_WIDTH_S = 1e-6

#: Rest (s) at 0 V between two pulses of one transient (pulse_sequence, used by a several-pulse
#: ``_spice_transient``: the tests' continuous reference). The twin itself runs every pulse as its own
#: transient, whose initial operating point is the rest state (all lines at 0 V, every capacitor
#: discharged), as on the bench, where pulses are milliseconds apart: far longer than the stack's
#: 0.75 ms (10 um, HRS) internal time constant. 20 us is 30 times the 0.1 fF model's slowest constant
#: (0.68 us); with the stack's pF the internal nodes keep part of their charge over it, which moves
#: only their own nA currents, not the terminal voltages the switches follow (the continuous
#: reference still ends every pulse in the twin's states, tests/test_twin_fidelity.py).
SETTLE_S = 20e-6

#: Largest voltage step (V, of the pulse's peak cell voltage) of the straight segments the rising
#: edge of a pulse is drawn with, from just below the lowest switch threshold up to the peak.
#: ngspice never steps over a PWL corner and restarts with a small step after each, so its time
#: steps stay this fine where switches flip. Coarser steps let a cell's voltage overshoot a second
#: threshold before the first switch's own current has pulled it back (ngspice then ends with both
#: switches on where a slowly rising edge turns on one; tests/test_twin_fidelity.py shows it).
RAMP_STEP_V = 0.05


class ChipFileError(RequestError):
    """A chip file that cannot be read as a rramlab chip: names the file and what is wrong."""


class ChipFileMissing(ChipFileError, FileNotFoundError):
    """The chip file does not exist."""


@dataclass(frozen=True)
class Variability:
    """Device-to-device variability, drawn once per chip from its seed.

    threshold_sigma_v: standard deviation (V) of each switch's VT shift.
    on_resistance_sigma: standard deviation of ln(RON) (a log-normal spread; 0.05 is about 5 %).
    insulator_r0_sigma: standard deviation of ln(R0) of the insulator area Ri, per cell. Ri caps the
        read current near 80 nA at 1 V, so this is what spreads the top (80 nS) level; the switches'
        spreads barely move it.
    """

    threshold_sigma_v: float = 0.0
    on_resistance_sigma: float = 0.0
    insulator_r0_sigma: float = 0.0

    def __post_init__(self):
        for name in ("threshold_sigma_v", "on_resistance_sigma", "insulator_r0_sigma"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v) and v >= 0):
                raise ValueError(f"Variability.{name} must be a finite number >= 0, got {v!r}")

    @property
    def any(self) -> bool:
        """True when any device-to-device spread is non-zero."""
        return self.threshold_sigma_v > 0 or self.on_resistance_sigma > 0 or self.insulator_r0_sigma > 0

    @classmethod
    def typical(cls) -> "Variability":
        """The spreads a chip drawn with ``--seed`` gets: VT 20 mV (a fifth of the 0.1 V spacing of
        the turn-on thresholds, so the levels keep their order), RON 10 % and Ri's R0 1 % log-normal
        (the 80 nS level spreads by about 0.8 nS). Assumed, not measured: the paper gives none. Ri
        caps the top level and no switch can raise a cell above that cap, so a wider Ri spread puts
        the top targets out of reach: 3 % left 4.5 % of 400 lone devices' targets (70, 80 nS) there."""
        return cls(threshold_sigma_v=0.02, on_resistance_sigma=0.10, insulator_r0_sigma=0.01)


PROGRAMMING_ERRORS = ("paper", "device")


@dataclass(frozen=True)
class CycleToCycle:
    """Cycle-to-cycle spread of the "device" programming-error mode: every time a switch flips, its
    VT (both thresholds move together, VH kept) and its RON for the next on-period are drawn anew
    about the cell's own (device-to-device) values, from the chip's seed.

    threshold_sigma_v: standard deviation (V) of VT about the cell's value, per switching event.
    on_resistance_sigma: standard deviation of ln(RON) about the cell's value, per switching event.

    Defaults (assumed, not measured: the paper reports only the end result of write-verify, 94 %
    within +-2 nS): 30 mV on VT, under a third of the 0.1 V spacing of the turn-on thresholds, so a
    set ramp's levels mostly keep their order; 30 % on RON, a few nS at the middle levels. Chosen so
    that the verify loop is what brings cells into tolerance: on 400 lone devices one open-loop pulse
    leaves 59.8 % within +-2 nS (RMSE 2.44 nS), ISPVA with verify 100 % (RMSE 1.02 nS, 3.76 pulses).
    (10 mV / 10 % was tried first: one pulse already landed 97.8 %, so verify had nothing to do.)
    """

    threshold_sigma_v: float = 0.03
    on_resistance_sigma: float = 0.30

    def __post_init__(self):
        for name in ("threshold_sigma_v", "on_resistance_sigma"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v) and v >= 0):
                raise ValueError(f"CycleToCycle.{name} must be a finite number >= 0, got {v!r}")


class VirtualArray(CrossbarInstrument):
    """A simulated HT-RRAM crossbar that answers the seam's calls.

    geometry: array size (default 24 x 24). A 1 x 1 array with zero wire and contact resistance is
        a lone device between two probe needles.
    device: the compact model (sim/device.py), or a preset name: "measured" (the default, switch
        thresholds fitted to the measured ISPP) or "table1" (Table 1 literally).
    array: wire and contact resistance.
    variability: device-to-device spread, drawn from ``seed``.
    programming_error: where the error of a programmed cell comes from. "paper" (default, the
        paper's simulation): the levels are exact and a Gaussian conductance error of
        ``programming_error_sigma`` (S) is added when a cell's transfer completes
        (``programming_done``), bounded so no cell's conductance falls below its own all-switches-off
        value (a device has no negative conductance); sigma 0 turns it off. "device": nothing is
        added; every switching event redraws the flipped switch's VT and RON (``cycle_to_cycle``),
        so a pulse lands a cell near, not on, a level and write-verify must correct it.
    cycle_to_cycle: the spreads of the "device" mode (CycleToCycle defaults if None).
    seed: the random seed; the same seed gives the same chip and the same programming errors.
    engine: "auto" (default), "fast" or "spice", see the module docstring. All three carry the same
        chip state, so the engine can be changed between calls (``va.engine = "spice"``).

    After every pulse, ``last_pulse_disturbed`` lists the cells other than its targets whose switch
    states changed; after every read or VMM, ``last_read_disturbed`` lists the cells it changed;
    ``disturb_count`` counts all such cell changes since the chip was made.
    """

    backend_name = "twin"

    def __init__(self, geometry: ArrayGeometry | None = None, limits: SafeOperatingArea | None = None,
                 device: DeviceParameters | str | None = None, array: ArrayParameters | None = None,
                 variability: Variability | None = None,
                 programming_error_sigma: float = DEFAULT_PROGRAMMING_ERROR_SIGMA,
                 seed: int | None = 0, engine: str = DEFAULT_ENGINE, programming_error: str = "paper",
                 cycle_to_cycle: CycleToCycle | None = None, aging=None):
        super().__init__(geometry, limits)
        self.engine = engine
        if isinstance(device, str):
            device = device_preset(device)
        self.device = device or device_preset(DEFAULT_PRESET)
        self.array = array or ArrayParameters()
        self.variability = variability or Variability()
        if not (np.isfinite(programming_error_sigma) and programming_error_sigma >= 0):
            raise ValueError(f"programming_error_sigma must be >= 0 S, got {programming_error_sigma!r}")
        self.programming_error_sigma = float(programming_error_sigma)
        if programming_error not in PROGRAMMING_ERRORS:
            raise RequestError(f"programming_error {programming_error!r} is unknown: use one of {PROGRAMMING_ERRORS}")
        self.programming_error = programming_error
        self.cycle_to_cycle = cycle_to_cycle or CycleToCycle()
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        W, B, n = self.geometry.wordlines, self.geometry.bitlines, self.device.n_switches
        self.switch_states = np.zeros((W, B, n), dtype=bool)  # every cell starts in HRS
        #: (W, B, n) on-fraction of each switch (partial_on_fraction): the share of its 1/RON an on
        #: switch conducts, set by the overdrive of the pulses that turned it on; 1 for off switches
        self.switch_fraction = np.ones((W, B, n))
        self.conductance_offset = np.zeros((W, B))
        self.cell_switches = self._draw_cell_switches() if self.variability.any else None
        self.cell_insulator_r0 = self._draw_insulator_r0() if self.variability.insulator_r0_sigma > 0 else None
        #: each cell's own (device-to-device) switch values; in "device" mode cell_switches holds the
        #: values of the present cycle, drawn about these at every switching event
        self.cell_switches_nominal = None
        if programming_error == "device":
            if self.cell_switches is None:
                self.cell_switches = np.broadcast_to(
                    np.array([(sw.turn_on_v, sw.turn_off_v, sw.on_resistance) for sw in self.device.switches]),
                    (W, B, n, 3)).copy()
            self.cell_switches_nominal = self.cell_switches.copy()
        self.pulse_count = 0
        #: pulses the "auto" engine handed to ngspice (flip order not settled by the fast engine)
        self.spice_pulses = 0
        #: cells (wordline, bitline) other than the targets whose switch states the last pulse changed
        self.last_pulse_disturbed: list[tuple[int, int]] = []
        #: cells whose switch states the last read or VMM changed (a read disturb)
        self.last_read_disturbed: list[tuple[int, int]] = []
        #: every disturbed cell so far (pulses and reads), counted once per event
        self.disturb_count = 0
        self._nodal: NodalArray | None = None
        self._imax_cache: dict = {}
        self._view: dict | None = None
        #: ngspice's largest time step in a pulse transient is the narrowest pulse's width over this
        #: (tests/test_twin_fidelity.py: doubling it changes no switch state)
        self.spice_steps_per_width = SPICE_STEPS_PER_WIDTH
        #: segment (V) of the rising edge ngspice is drawn with (RAMP_STEP_V; halved in the convergence test)
        self.ramp_step_v = RAMP_STEP_V
        #: wear and retention drift (sim/aging.py); None: today's ideal device, exactly
        self.aging = None if aging is None else AgingState(aging, self.geometry.shape, seed)
        #: simulated seconds passed on this chip (advance_time); nothing else moves it
        self.clock_s = 0.0
        #: (W, B) volts: each cell's own hard-breakdown voltage (sim/device.py BREAKDOWN_V), or None
        #: when the device has none; drawn from the seed without touching ``rng``
        self.cell_breakdown_v = draw_breakdown_voltages(self.device, self.geometry.shape, seed)
        #: (W, B) siemens: the permanent path of each broken cell (0: intact), beside the switches
        self.breakdown_conductance = np.zeros((W, B))
        #: the twin fit this chip came from (``rramlab twin fit``, sim/fit.py), saved with it; None otherwise
        self.fit_meta = None

    @property
    def engine(self) -> str:
        """The engine solving the next call: "auto", "fast" or "spice" (settable; RequestError otherwise)."""
        return self._engine

    @engine.setter
    def engine(self, name: str):
        if name not in ENGINES:
            raise RequestError(f"engine {name!r} is unknown: use one of {ENGINES}")
        self._engine = name

    @classmethod
    def lone_device(cls, **kwargs) -> "VirtualArray":
        """One device between two probe needles: a 1 x 1 array without line parasitics."""
        kwargs.setdefault("array", ArrayParameters(wire_resistance=0.0, contact_resistance=0.0))
        return cls(geometry=ArrayGeometry(1, 1), **kwargs)

    # ----- per-cell device variants -----
    def _draw_cell_switches(self) -> np.ndarray:
        W, B = self.geometry.shape
        out = np.empty((W, B, self.device.n_switches, 3))
        for w in range(W):
            for b in range(B):
                d = self.device.with_variability(self.rng, self.variability.threshold_sigma_v,
                                                 self.variability.on_resistance_sigma)
                out[w, b] = [(s.turn_on_v, s.turn_off_v, s.on_resistance) for s in d.switches]
        return out

    def _draw_insulator_r0(self) -> np.ndarray:
        # drawn after the switches, so chips without an Ri spread keep the switches they always had
        sigma = self.variability.insulator_r0_sigma
        return self.device.insulator_r0 * np.exp(self.rng.normal(0.0, sigma, self.geometry.shape))

    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """(turn_on_v, turn_off_v), each (W, B, n) volts."""
        if self.cell_switches is not None:
            return self.cell_switches[..., 0], self.cell_switches[..., 1]
        shape = self.switch_states.shape
        return (np.broadcast_to(self.device.turn_on_thresholds(), shape),
                np.broadcast_to(self.device.turn_off_thresholds(), shape))

    def _on_resistance(self):
        """(W, B, n) ohm, each switch's present on-resistance (its RON over its on-fraction), or None
        when every cell is the device itself, fully switched."""
        partial = bool(np.any(self.switch_fraction < 1.0))
        if self.cell_switches is None and not partial:
            return None
        ron = (self.cell_switches[..., 2] if self.cell_switches is not None else
               np.broadcast_to(np.array([s.on_resistance for s in self.device.switches]), self.switch_states.shape))
        return ron / self.switch_fraction if partial else ron

    def _netlist_switches(self):
        """(W, B, n, 3) (turn_on_v, turn_off_v, present on-resistance) for the netlist, or None."""
        ron = self._on_resistance()
        if ron is None:
            return None
        on_v, off_v = self.thresholds()
        return np.stack([on_v, off_v, ron], axis=-1)

    def _on_conductance(self) -> np.ndarray:
        """(W, B, n) siemens: each switch's conductance when on."""
        ron = self._on_resistance()
        if ron is None:
            ron = np.broadcast_to(np.array([s.on_resistance for s in self.device.switches]), self.switch_states.shape)
        return 1.0 / ron

    def _off_conductance(self) -> np.ndarray:
        return 1.0 / np.array([s.off_resistance for s in self.device.switches])

    # ----- netlists -----
    def _netlist(self, wordline_sources, bitline_sources, analysis: str, saves: list[str]) -> str:
        body = array_netlist(self.device, self.array, self.switch_states, self._linear_conductance(),
                             wordline_sources, bitline_sources, self._netlist_switches(), self.cell_insulator_r0)
        return "\n".join(["* rramlab virtual array", *body, ".save " + " ".join(saves), analysis, ".end", ""])

    def _op(self, wordline_v: np.ndarray, bitlines: list[int]) -> np.ndarray:
        srcs_w = [f"DC {_num(v)}" for v in wordline_v]
        srcs_b = ["DC 0"] * self.geometry.bitlines
        names = [f"i({bitline_source(b)})" for b in bitlines]
        vecs = [f"{bitline_source(b)}#branch" for b in bitlines]
        result = simulate(self._netlist(srcs_w, srcs_b, ".op", names), vecs)
        return np.array([result[v][0] for v in vecs])

    def probe_voltage(self) -> float:
        """Voltage (V) of the state probe: PROBE_V, or half the lowest positive turn-on threshold
        if that is lower, so the probe sits inside every switch's hold window."""
        on_v, _ = self.thresholds()
        positive = on_v[on_v > 0]
        return float(min(PROBE_V, 0.5 * positive.min())) if positive.size else PROBE_V

    def _spice_transient(self, pulses) -> list[np.ndarray]:
        """Run ``pulses`` [(wordline_v, bitline_v, width, shape), ...] as one ngspice transient from
        the present chip state, each followed by its state probe. Returns the switch states
        (W, B, n) after each pulse, as ngspice reports them."""
        W, B = self.geometry.shape
        probe_v = self.probe_voltage()
        on_v, off_v = self.thresholds()
        # every switch of the chip, whatever its state, so a sequence and its pulses one by one
        # are drawn with the same corners
        # a pulse in which no switch can flip is drawn with plain edges (most pulses of a ramp); the
        # later pulses of a sequence always finely, as their starting states are not known here
        fine = [self._pulse_may_flip(*pulses[0][:2])] + [True] * (len(pulses) - 1)
        seq = pulse_sequence(pulses, probe_v, turn_on_v=_lowest_positive(on_v), turn_off_v=-_lowest_positive(-off_v),
                             ramp_step_v=self.ramp_step_v,
                             fine=fine)
        nodes = ArrayNodes(W, B, self.array)
        n = self.device.n_switches
        cells = [(w, b) for w in range(W) for b in range(B)]
        area = [switch_nodes(self.device, f"x{w}_{b}", nodes.wl(w, b), nodes.bl(w, b)) for w, b in cells]
        area_nodes = sorted({x for pair in area for x in pair})
        sw_vecs = [f"@{switch_name(f'x{w}_{b}', k)}[i]" for w, b in cells for k in range(n)]
        saves = ["time"] + [f"v({x})" for x in area_nodes] + sw_vecs
        vecs = ["time"] + [f"v({x})" for x in area_nodes] + sw_vecs
        tmax = min(p[2] for p in pulses) / self.spice_steps_per_width
        analysis = f".tran {_num(tmax)} {_num(seq.stop)} 0 {_num(tmax)}"
        result = simulate(self._netlist(seq.wordline_sources, seq.bitline_sources, analysis, saves), vecs)
        t = result["time"]
        g_on, g_off = self._on_conductance(), self._off_conductance()
        states = []
        for k in range(len(pulses)):
            i = _index_at(t, seq.probe_times[k])
            v_area = np.array([result[f"v({a})"][i] - result[f"v({c})"][i] for a, c in area]).reshape(W, B)
            i_sw = np.array([result[v][i] for v in sw_vecs]).reshape(W, B, n)
            states.append(states_from_switch_currents(i_sw, v_area, g_on, g_off))
        return states

    # ----- the fast engine -----
    def _fast(self) -> NodalArray:
        na = self._nodal
        if na is None or na.device != self.device or na.array != self.array:
            lim = self.limits
            v_max = max(lim.max_set_voltage, -lim.min_reset_voltage, lim.max_read_voltage) + 0.1
            self._nodal = NodalArray(self.geometry.wordlines, self.geometry.bitlines, self.device,
                                     self.array, v_max=v_max)
        return self._nodal

    def share_device_tables(self, other: "VirtualArray") -> bool:
        """Let this twin's fast engine use ``other``'s tabulated device characteristics (I(V) per
        switch-bank conductance and Ri, sim/nodal.py DeviceTables) from now on, and add its own rows
        to them. A row depends only on the device model and its key, not on the chip, so it holds for
        any twin of the same device; fresh chips of one seed (reproduce's one per variant) meet the
        same conductances and build each row once instead of once per chip. Use the twins one after
        the other, not from two threads at once. Returns whether the tables are now shared (False:
        another device model, or ``other`` has no tables yet)."""
        if not isinstance(other, VirtualArray) or other is self or other._nodal is None:
            return False
        theirs = other._nodal.tables
        mine = self._fast()
        if mine.tables is theirs:
            return True
        if theirs.device != mine.tables.device or theirs.step != mine.tables.step:
            return False
        if theirs.v_max < mine.tables.v_max:
            theirs.grow(mine.tables.v_max)
        mine.tables = theirs
        return True

    def _state_view(self) -> dict:
        """What every read derives from the switch states, kept until they (their on-fractions, or the
        per-cell switch values) change: the switch-bank conductance (W, B) S, and the lowest turn-on threshold of
        an off switch and the highest turn-off threshold of an on one (V). The states are compared,
        not tracked, since callers may assign ``switch_states`` directly."""
        view = self._view
        if (view is not None and view["device"] == self.device and np.array_equal(view["states"], self.switch_states)
                and np.array_equal(view["fraction"], self.switch_fraction)
                and (self.cell_switches is None) == (view["cell_switches"] is None)
                and (self.cell_switches is None or np.array_equal(view["cell_switches"], self.cell_switches))):
            return view
        on_v, off_v = self.thresholds()
        off_sw = ~self.switch_states
        view = {
            "device": self.device,
            "states": self.switch_states.copy(),
            "fraction": self.switch_fraction.copy(),  # a partly-on switch conducts its fraction of 1/RON
            "cell_switches": None if self.cell_switches is None else self.cell_switches.copy(),
            "g_switch": self._fast().switch_conductance(self.switch_states, self._on_resistance()),
            "lowest_on": float(np.min(on_v[off_sw])) if off_sw.any() else np.inf,
            "highest_off": float(np.max(off_v[self.switch_states])) if self.switch_states.any() else -np.inf,
        }
        self._view = view
        return view

    def _g_switch(self) -> np.ndarray:
        return self._state_view()["g_switch"]

    def read_settling_time_s(self) -> float:
        """Time (s) a read step takes to settle on this chip: SETTLING_TIME_CONSTANTS x the slowest
        cell's internal time constant (``DeviceParameters.read_time_constant_s`` with the cell's
        switch bank and Ri; HRS cells are the slowest: 5 x 0.75 ms = 3.8 ms on the default 10 um
        stack, 96 ns with Table 1's 0.1 fF). The twin's reads are DC operating points, the settled
        current: what an integration at least this long measures (the virtual 4156C counts the
        readings shorter than this as unsettled)."""
        tau = self.device.read_time_constant_s(self._g_switch(), self.cell_insulator_r0)
        return float(SETTLING_TIME_CONSTANTS * np.max(tau))

    def _fast_currents(self, wordline_v: np.ndarray, bitlines: list[int]) -> np.ndarray:
        na = self._fast()
        return na.bitline_currents(wordline_v, self._g_switch(), self._linear_conductance(), bitlines,
                                   insulator_r0=self.cell_insulator_r0)

    def _fast_pulse(self, wordline_v, bitline_v):
        on_v, off_v = self.thresholds()
        return self._fast().pulse(wordline_v, bitline_v, self.switch_states, on_v, off_v, self._on_resistance(),
                                  self._linear_conductance(), self.cell_insulator_r0)

    def _peak_cell_voltage(self, wordline_v, bitline_v, states) -> np.ndarray:
        """(W, B) volts: each cell's DC terminal voltage at a pulse's peak with switch ``states``."""
        v_open = (np.asarray(wordline_v, float)[:, None] - np.asarray(bitline_v, float)[None, :])[None]
        na = self._fast()
        ron = self._on_resistance()
        v, _ = na.solve(v_open, na.switch_conductance(states, ron), self._linear_conductance(),
                        insulator_r0=self.cell_insulator_r0)
        return v[0]

    def _update_fractions(self, new: np.ndarray, v_peak: np.ndarray | None, lines=None):
        """The on-fraction of every switch after a pulse with peak cell voltages ``v_peak`` (W, B)
        volts: a switch that turned on gets partial_on_fraction of its overdrive; one already on
        that was driven above its threshold again grows to at least that; an off switch is 1.
        lines: the pulse's (wordline_v, bitline_v); when a switch turned on, the overdrive is taken
        from the higher of the cell's peak voltage before and after the flips (the drive the pulse
        applied, before the switch's own current loaded the lines)."""
        window = self.device.partial_window_v
        if v_peak is None or window <= 0:
            self.switch_fraction[~new] = 1.0
            return
        old = self.switch_states
        newly_on = new & ~old
        v_peak = np.asarray(v_peak, float)
        if lines is not None and newly_on.any():
            v_peak = np.maximum(v_peak, self._peak_cell_voltage(*lines, old))
        on_v, _ = self.thresholds()
        over = v_peak[:, :, None] - on_v
        f = partial_on_fraction(over, window)
        driven = new & old & (over > 0)
        frac = self.switch_fraction
        frac[newly_on] = f[newly_on]
        frac[driven] = np.maximum(frac[driven], f[driven])
        frac[~new] = 1.0

    def _commit_states(self, new: np.ndarray, targets: np.ndarray | None,
                       v_peak: np.ndarray | None = None, lines=None) -> list[tuple[int, int]]:
        """Keep ``new`` switch states; return the cells that changed outside ``targets`` (W, B) bool
        (None: no target, every change is a disturb). v_peak: (W, B) peak cell voltages (V) of the
        pulse, which set the on-fractions (None: switches that turn on are fully on)."""
        flipped = new != self.switch_states
        changed = np.any(flipped, axis=2)
        before = self.switch_fraction.copy()
        self._update_fractions(np.asarray(new, dtype=bool), v_peak, lines)  # with the pulse's thresholds, before a redraw
        changed |= np.any(self.switch_fraction != before, axis=2)
        self.conductance_offset[changed] = 0.0  # a new physical state: the old error no longer applies
        if self.programming_error == "device" and flipped.any():
            self._redraw_cycle(flipped)
        self.switch_states = np.array(new, dtype=bool)
        disturbed = changed if targets is None else changed & ~targets
        cells = [(int(w), int(b)) for w, b in zip(*np.nonzero(disturbed))]
        self.disturb_count += len(cells)
        return cells

    def _redraw_cycle(self, flipped: np.ndarray):
        """Cycle-to-cycle: new VT and RON, about the cell's own values, for every switch that just
        flipped ((W, B, n) bool), drawn in array order from the chip's generator."""
        c2c, nominal = self.cycle_to_cycle, self.cell_switches_nominal
        k = int(flipped.sum())
        dvt = self.rng.normal(0.0, c2c.threshold_sigma_v, k) if c2c.threshold_sigma_v > 0 else np.zeros(k)
        scale = np.exp(self.rng.normal(0.0, c2c.on_resistance_sigma, k)) if c2c.on_resistance_sigma > 0 else np.ones(k)
        cs = self.cell_switches
        cs[flipped, 0] = nominal[flipped, 0] + dvt
        cs[flipped, 1] = nominal[flipped, 1] + dvt
        cs[flipped, 2] = nominal[flipped, 2] * scale
        self._imax_cache.clear()

    # ----- read and VMM disturb -----
    def _max_device_current(self, v: float) -> float:
        """Upper bound (A) of any cell's current at |V| <= v: all switches on, lowest Ri, largest
        positive programming error. Cached on a 0.1 V grid."""
        key = float(np.ceil(v * 10.0) / 10.0)
        if key not in self._imax_cache:
            g_max = float(self._on_conductance().sum(axis=-1).max())
            r0 = self.device.insulator_r0 if self.cell_insulator_r0 is None else float(self.cell_insulator_r0.min())
            i, _ = device_current_exact(key, g_max, self.device, insulator_r0=r0)
            self._imax_cache[key] = float(i)
        return self._imax_cache[key] + max(float(self._linear_conductance().max()), 0.0) * key

    def _drop_bound(self, span: float) -> float:
        """Largest IR drop (V) the two lines of any cell can take from it when no cell sees more
        than ``span`` volts: each line's whole resistance times the most current all its cells
        could carry."""
        W, B = self.geometry.shape
        a = self.array
        i_cell = self._max_device_current(span)
        return ((a.contact_resistance + a.wire_resistance * (B - 1)) * B * i_cell
                + (a.contact_resistance + a.wire_resistance * (W - 1)) * W * i_cell)

    def _pulse_may_flip(self, wordline_v, bitline_v) -> bool:
        """Whether any switch could flip in this pulse: each cell's voltage follows its ramp from
        0 V to V_wl - V_bl within the IR-drop bound (_drop_bound). False is certain."""
        wl, bl = np.asarray(wordline_v, float), np.asarray(bitline_v, float)
        v = wl[:, None] - bl[None, :]
        sources = np.concatenate([wl, bl, [0.0]])
        drop = self._drop_bound(float(sources.max() - sources.min())) + DISTURB_MARGIN_V
        on_v, off_v = self.thresholds()
        hi = (np.maximum(v, 0.0) + drop)[:, :, None]
        lo = (np.minimum(v, 0.0) - drop)[:, :, None]
        return bool(np.any((hi > on_v) & ~self.switch_states) or np.any((lo < off_v) & self.switch_states))

    def _steps_that_may_disturb(self, steps: np.ndarray) -> np.ndarray:
        """(n,) bool: steps (wordline volts, bitlines at 0 V) whose cell voltages could reach a
        threshold. A cell's voltage differs from its open-circuit value V_wl by at most the IR drop
        of its two lines, bounded by the line's resistance times the most current its cells could
        carry; a step is safe when that interval holds no threshold of a switch that could flip."""
        view = self._state_view()
        lowest_on, highest_off = view["lowest_on"], view["highest_off"]
        if not steps.size:
            return np.zeros(steps.shape[0], dtype=bool)
        top, bottom = float(steps.max()), float(steps.min())
        drop = self._drop_bound(max(top, -bottom, 0.0))
        if top + drop + DISTURB_MARGIN_V <= lowest_on and bottom - drop - DISTURB_MARGIN_V >= highest_off:
            return np.zeros(steps.shape[0], dtype=bool)  # the whole batch is safe: no per-step pass
        hi = steps.max(axis=1) + drop + DISTURB_MARGIN_V
        lo = steps.min(axis=1) - drop - DISTURB_MARGIN_V
        return (hi > lowest_on) | (lo < highest_off)

    def _crossing(self, step: np.ndarray, margin: float) -> bool:
        """Whether the DC cell voltages of one step (wordline volts) cross a threshold of a switch
        that would flip (within ``margin`` volts)."""
        na = self._fast()
        v, _ = na.solve((step[:, None] - np.zeros(self.geometry.bitlines)[None, :])[None], self._g_switch(),
                        self._linear_conductance(), insulator_r0=self.cell_insulator_r0)
        on_v, off_v = self.thresholds()
        vc = v[0][:, :, None]
        return bool(np.any((vc > on_v - margin) & ~self.switch_states)
                    or np.any((vc < off_v + margin) & self.switch_states))

    def _steps(self, steps: np.ndarray, bitlines: list[int]) -> np.ndarray:
        """Bitline currents (A), (n, len(bitlines)), of read/VMM steps (wordline volts, bitlines at
        0 V), applying and keeping any read disturb in step order."""
        self.last_read_disturbed = []
        risky = self._steps_that_may_disturb(steps)
        if not risky.any():
            return self._plain_steps(steps, bitlines)
        out = np.empty((steps.shape[0], len(bitlines)))
        start = 0
        for k in np.flatnonzero(risky).tolist() + [steps.shape[0]]:
            if k > start:
                out[start:k] = self._plain_steps(steps[start:k], bitlines)
            if k == steps.shape[0]:
                break
            margin = DISTURB_MARGIN_V if self.engine == "spice" else 0.0
            if self._crossing(steps[k], margin):
                out[k] = self._disturbing_step(steps[k], bitlines)
            else:
                out[k] = self._plain_steps(steps[k:k + 1], bitlines)[0]
            start = k + 1
        return out

    def _plain_steps(self, steps, bitlines):
        if self.engine != "spice":
            return self._fast_currents(steps, bitlines)
        return np.array([self._op(step, bitlines) for step in steps])

    def _disturbing_step(self, step, bitlines):
        zeros = np.zeros(self.geometry.bitlines)
        engine = self.engine
        v_peak = None
        if engine != "spice":
            new, estimated, v_peak = self._fast_pulse(step, zeros)
            if estimated and engine == "auto":  # as for a pulse: ngspice settles the flip order
                engine = "spice"
        if engine == "spice":
            new = self._spice_transient([(step, zeros, READ_PULSE_WIDTH_S, "rect")])[0]
            v_peak = self._peak_cell_voltage(step, zeros, new)
        cells = self._commit_states(new, None, v_peak, (step, zeros))
        self.last_read_disturbed += cells
        if cells:
            log.info("read disturb: %d cell(s) changed by a read/VMM step", len(cells))
        # the currents a sense amplifier settles to once the switches have flipped: the DC solution
        # of the new state (an operating point on ngspice, tighter than its transient's 1e-3 tolerance)
        return self._plain_steps(step[None], bitlines)[0]

    # ----- the seam -----
    def _read(self, cells, v_read):
        rows = sorted({w for w, _ in cells})
        x = np.zeros((len(rows), self.geometry.wordlines))
        x[np.arange(len(rows)), rows] = v_read
        bitlines = sorted({b for _, b in cells})
        cur = self._steps(x, bitlines)
        where_w = {w: i for i, w in enumerate(rows)}
        where_b = {b: i for i, b in enumerate(bitlines)}
        currents = [cur[where_w[w], where_b[b]] for w, b in cells]
        return currents if self.aging is None else self._aged_reads(cells, currents, v_read)

    def _vmm(self, wordline_v, bitlines):
        return self._steps(np.asarray(wordline_v, dtype=float), list(bitlines))

    def _pulse(self, wordline_v, bitline_v, width, shape):
        targets = pulse_targets(wordline_v, bitline_v)
        engine = self.engine
        if engine != "spice" and width < DC_MIN_WIDTH_S:
            if engine == "auto":
                engine = "spice"
            else:
                warnings.warn(f"a {width:g} s pulse is shorter than {DC_MIN_WIDTH_S:g} s, below which the fast "
                              "engine's DC view of a pulse (no Cs, Ci) is not checked against ngspice: use "
                              "engine='spice' or 'auto' for it", RuntimeWarning, stacklevel=3)
        v_peak = None
        if engine != "spice":
            new, estimated, v_peak = self._fast_pulse(wordline_v, bitline_v)
            if estimated and engine == "auto":
                engine = "spice"
        if engine == "spice":
            if self.engine == "auto":
                self.spice_pulses += 1
            new = self._spice_transient([(wordline_v, bitline_v, width, shape)])[0]
            v_peak = self._peak_cell_voltage(wordline_v, bitline_v, new)
        before = self.switch_states if self.aging is not None else None
        self._break_down(wordline_v, bitline_v)
        self.last_pulse_disturbed = self._commit_states(new, targets, v_peak, (wordline_v, bitline_v))
        self.pulse_count += 1
        if before is not None:
            self._aging_after_pulse(wordline_v, bitline_v, targets, np.any(before != self.switch_states, axis=2))

    # ----- hard breakdown (sim/device.py BREAKDOWN_V) -----
    def _linear_conductance(self) -> np.ndarray:
        """(W, B) siemens across each cell's terminals, beside the compact model: the programming
        error plus the path of a broken cell. Every engine takes this one array."""
        if not self.breakdown_conductance.any():
            return self.conductance_offset
        return self.conductance_offset + self.breakdown_conductance

    @property
    def broken_cells(self) -> list[tuple[int, int]]:
        """The cells (wordline, bitline) that broke down, in array order."""
        return [(int(w), int(b)) for w, b in zip(*np.nonzero(self.breakdown_conductance > 0))]

    def _break_down(self, wordline_v, bitline_v) -> list[tuple[int, int]]:
        """Break down every intact cell whose DC terminal voltage under these line voltages (V),
        with the switch states before they flip, exceeds its own breakdown voltage: it gets the
        device's permanent breakdown path. Judged by the nodal DC solution whichever engine solves
        the pulse, so every engine breaks the same cells. The safe operating area keeps every
        request below the lowest breakdown voltage, so this costs nothing on a normal call: the
        open-circuit voltages are compared first. Returns the cells that broke now."""
        vb = self.cell_breakdown_v
        if vb is None:
            return []
        wl, bl = np.asarray(wordline_v, float), np.asarray(bitline_v, float)
        v_open = wl[:, None] - bl[None, :]
        if float(np.abs(v_open).max()) <= float(vb.min()):
            return []
        v = self._peak_cell_voltage(wl, bl, self.switch_states)
        hit = breaks_down(v, vb) & (self.breakdown_conductance == 0)
        if not hit.any():
            return []
        self.breakdown_conductance[hit] = 1.0 / self.device.breakdown_resistance
        self._imax_cache.clear()
        cells = [(int(w), int(b)) for w, b in zip(*np.nonzero(hit))]
        log.warning("hard breakdown of %d cell(s) %s: beyond the safe operating area", len(cells), cells[:8])
        return cells

    # ----- aging hook (sim/aging.py): inert unless the chip was made with aging=Aging(...) -----
    def advance_time(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass with every line at 0 V (a retention wait): with
        aging, programmed states drift; without, nothing changes."""
        if not (np.isfinite(seconds) and seconds >= 0):
            raise RequestError(f"advance_time takes seconds >= 0, got {seconds!r}")
        self.clock_s += float(seconds)
        if self.aging is not None:
            self.aging.advance_time(seconds)

    def _aging_after_pulse(self, wordline_v, bitline_v, targets, changed):
        cell_v = np.asarray(wordline_v, float)[:, None] - np.asarray(bitline_v, float)[None, :]
        self.aging.after_pulse(cell_v, targets, changed)

    def _aged_reads(self, cells, currents, v_read):
        """Reads with wear and drift applied to the part of each current above the cell's HRS current."""
        g_off = float(self._off_conductance().sum())
        r0 = self.cell_insulator_r0
        hrs = [float(device_current_exact(v_read, g_off, self.device,
                                          insulator_r0=None if r0 is None else r0[w, b])[0]) for w, b in cells]
        aged = self.aging.read_currents(cells, currents, hrs)
        # a broken cell's current is its breakdown path's, which neither wears nor drifts
        return [i if self.breakdown_conductance[w, b] > 0 else a
                for (w, b), i, a in zip(cells, currents, aged)]

    def _programming_done(self, cells):
        if self.programming_error == "device" or self.programming_error_sigma <= 0:
            return  # in "device" mode the error is already in the switches
        g_sw = self._g_switch()
        g_off_all = np.full_like(g_sw, float(self._off_conductance().sum()))
        r0 = self.cell_insulator_r0
        g0 = zero_bias_conductance(g_sw, self.device, r0)
        g0_hrs = zero_bias_conductance(g_off_all, self.device, r0)
        for w, b in cells:
            floor = -(g0[w, b] - g0_hrs[w, b])
            self.conductance_offset[w, b] = truncated_normal(self.rng, self.programming_error_sigma, floor)

    def _reset_outputs(self):
        # Sources exist only during a call: between calls every line of the twin is at 0 V.
        return None

    # ----- DC staircase sweep of one cell (rramlab iv) -----
    def sweep_cell(self, wordline: int, bitline: int, voltages, compliance: float | None = None,
                   on_step: Callable[[int, float], bool | None] | None = None) -> np.ndarray:
        """The current (A) through cell (``wordline``, ``bitline``) at each step of a DC staircase
        ``voltages`` (V), applied in order in the half-bias circuit of a pulse (selected wordline at
        +V/2, selected bitline at -V/2, every other line at 0 V), so no half-selected cell sees more
        than V/2. Each step settles the switches as a pulse to that voltage does (the fast engine's
        DC view, held to ngspice for pulses; the switches it flips stay flipped), then the cell's own
        current is solved with the wires' IR drop. A lone device (1 x 1, no wires) gives the compact
        model's I-V. Every step is checked against the safe operating area first (SafetyError).
        ``compliance`` (A) is accepted as a bench's is and not applied: the HT-RRAM needs none.
        ``on_step(k, current_a)`` is called after each step, as the probe station's is; when it
        returns True the sweep ends there and the currents so far are returned."""
        (w, b), = self.check_cells([(wordline, bitline)])
        volts = np.asarray(voltages, dtype=float)
        if volts.ndim != 1 or not volts.size or not np.all(np.isfinite(volts)):
            raise RequestError("sweep voltages must be a 1-d sequence of finite numbers (volts)")
        for v in (float(volts.max()), float(volts.min())):
            if v != 0.0:
                wl, bl = half_bias_voltages(self.geometry, w, b, v)
                self.check_pulse(wl, bl, max(self.limits.min_pulse_width, DC_MIN_WIDTH_S))
        self._check_open()
        na = self._fast()
        out = np.empty(volts.size)
        W, B = self.geometry.shape
        for k, v in enumerate(volts):
            wl, bl = np.zeros(W), np.zeros(B)
            wl[w], bl[b] = v / 2, -v / 2
            if v != 0.0 and self._pulse_may_flip(wl, bl):
                new, _, _ = self._fast_pulse(wl, bl)
                self._commit_states(new, pulse_targets(wl, bl))
            if v != 0.0:
                self._break_down(wl, bl)
            _, cur = na.solve((wl[:, None] - bl[None, :])[None], self._g_switch(), self._linear_conductance(),
                              insulator_r0=self.cell_insulator_r0)
            out[k] = float(cur[0][w, b])
            if on_step is not None and on_step(k, out[k]):
                return out[:k + 1]
        return out

    # ----- the chip as a file -----
    def save_chip(self, path) -> Path:
        """Write the whole chip state to ``path`` (.npz): switch states, programming errors,
        per-cell device variants, broken cells, random generator, the simulated clock, the aging
        parameters and state (wear cycles, cycles to failure, programming times) when the chip ages,
        and every setting needed to rebuild it."""
        path = Path(path)
        meta = {
            "version": CHIP_FILE_VERSION,
            "geometry": {"wordlines": self.geometry.wordlines, "bitlines": self.geometry.bitlines,
                         "used_wordlines": list(self.geometry.used_wordlines),
                         "used_bitlines": list(self.geometry.used_bitlines)},
            "limits": asdict(self.limits),
            "device": {k: v for k, v in asdict(self.device).items() if k != "switches"},
            "switches": [asdict(s) for s in self.device.switches],
            "array": asdict(self.array),
            "variability": asdict(self.variability),
            "programming_error_sigma": self.programming_error_sigma,
            "programming_error": self.programming_error,
            "cycle_to_cycle": asdict(self.cycle_to_cycle),
            "seed": self.seed,
            "rng_state": self.rng.bit_generator.state,
            "pulse_count": self.pulse_count,
            "disturb_count": self.disturb_count,
            "engine": self.engine,
            "clock_s": self.clock_s,
        }
        if self.aging is not None:  # and its parameters and clock, in the JSON meta
            meta["aging"], aging_arrays = self.aging.to_file()
        arrays = {"switch_states": self.switch_states, "conductance_offset": self.conductance_offset,
                  "switch_fraction": self.switch_fraction, "meta": np.array(json.dumps(meta))}
        if self.cell_switches is not None:
            arrays["cell_switches"] = self.cell_switches
        if self.cell_insulator_r0 is not None:
            arrays["cell_insulator_r0"] = self.cell_insulator_r0
        if self.cell_switches_nominal is not None:
            arrays["cell_switches_nominal"] = self.cell_switches_nominal
        if self.cell_breakdown_v is not None:
            arrays["cell_breakdown_v"] = self.cell_breakdown_v
        if self.breakdown_conductance.any():
            arrays["breakdown_conductance"] = self.breakdown_conductance
        if self.aging is not None:  # wear and drift: per-cell counts, cycles to failure, programming times
            arrays.update(aging_arrays)
        if getattr(self, "fit_meta", None) is not None:  # a fitted twin (sim/fit.py) keeps its fit
            arrays["fit_meta"] = np.array(json.dumps(self.fit_meta))
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load_chip(cls, path, engine: str | None = None) -> "VirtualArray":
        """Rebuild a VirtualArray saved by ``save_chip``; reads give the same currents as before.
        engine: override the engine saved with the chip (files without one get the default).
        Raises ChipFileError (ChipFileMissing if there is no such file) naming what is wrong."""
        path = Path(path)
        if not path.exists():
            raise ChipFileMissing(f"chip file {path} does not exist: save one with --save-chip "
                                  "(VirtualArray.save_chip)")
        if path.is_dir():
            raise ChipFileError(f"chip file {path} is a directory: give the .npz file saved with --save-chip")
        if path.stat().st_size == 0:
            raise ChipFileError(f"chip file {path} is empty: it was not saved completely; save the chip again")
        try:
            data = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise ChipFileError(f"chip file {path} is not a rramlab chip (.npz saved with --save-chip): "
                                f"it cannot be read as an npz archive ({type(exc).__name__})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ChipFileError(f"chip file {path} holds a single array, not a rramlab chip (.npz saved "
                                "with --save-chip)")
        try:
            with data:
                return cls._from_npz(path, data, engine)
        except ChipFileError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, TypeError, RramlabError) as exc:
            if "pickle" in str(exc):
                raise ChipFileError(f"chip file {path} holds Python objects, which rramlab never loads from a "
                                    "file (loading them could run code): it is not a rramlab chip") from None
            raise ChipFileError(f"chip file {path} is damaged or truncated ({type(exc).__name__}: {exc}); "
                                "save the chip again") from None

    @classmethod
    def _from_npz(cls, path: Path, data, engine):
        names = set(data.files)
        for needed in ("meta", "switch_states", "conductance_offset"):
            if needed not in names:
                raise ChipFileError(f"chip file {path} has no {needed!r} field: it is not a rramlab chip file "
                                    "(or was written by another program)")
        try:
            meta = json.loads(str(_field(path, data, "meta")))
        except json.JSONDecodeError as exc:
            raise ChipFileError(f"chip file {path}: its 'meta' field is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ChipFileError(f"chip file {path}: its 'meta' field is not a JSON object")
        if meta.get("version") != CHIP_FILE_VERSION:
            raise ChipFileError(f"chip file {path} has chip file version {meta.get('version')!r}, this rramlab "
                                f"reads {CHIP_FILE_VERSION}")
        for needed in ("geometry", "limits", "device", "switches", "array", "variability",
                       "programming_error_sigma", "seed", "rng_state"):
            if needed not in meta:
                raise ChipFileError(f"chip file {path}: its 'meta' field lacks {needed!r}; save the chip again")
        fit_meta = None
        if "fit_meta" in names:
            try:
                fit_meta = json.loads(str(_field(path, data, "fit_meta")))
            except json.JSONDecodeError as exc:
                raise ChipFileError(f"chip file {path}: its 'fit_meta' field is not valid JSON ({exc})") from None
            version = fit_meta.get("version") if isinstance(fit_meta, dict) else None
            if not isinstance(version, int) or version > FIT_BLOCK_VERSION:
                raise ChipFileError(f"chip file {path} holds a twin fit of version {version!r}, newer than this "
                                    f"rramlab reads ({FIT_BLOCK_VERSION}): update rramlab, or fit the twin again")
        geometry = _chip_geometry(path, meta["geometry"])
        device = DeviceParameters(**meta["device"], switches=tuple(Switch(**s) for s in meta["switches"]))
        # a chip file may narrow the device's limits, never widen them
        limits = SafeOperatingArea().narrowed(SafeOperatingArea(**meta["limits"]))
        chip = cls(geometry=geometry, limits=limits, device=device,
                   array=ArrayParameters(**meta["array"]), variability=Variability(),
                   programming_error_sigma=meta["programming_error_sigma"], seed=meta["seed"],
                   engine=engine or meta.get("engine", DEFAULT_ENGINE),
                   programming_error=meta.get("programming_error", "paper"),
                   cycle_to_cycle=CycleToCycle(**meta.get("cycle_to_cycle", {})))
        chip.variability = Variability(**meta["variability"])
        W, B, n = geometry.wordlines, geometry.bitlines, device.n_switches
        expected = {"switch_states": (W, B, n), "conductance_offset": (W, B), "cell_switches": (W, B, n, 3),
                    "cell_insulator_r0": (W, B), "cell_switches_nominal": (W, B, n, 3),
                    "switch_fraction": (W, B, n), "cell_breakdown_v": (W, B), "breakdown_conductance": (W, B)}
        arrays = {}
        for name, shape in expected.items():
            if name not in names:
                continue
            arr = np.asarray(_field(path, data, name))
            if arr.shape != shape:
                raise ChipFileError(f"chip file {path}: {name} has shape {arr.shape}, but its {W} x {B} array of "
                                    f"{n}-switch devices needs {shape}; the file is damaged or was edited")
            if arr.dtype != bool and not np.all(np.isfinite(arr)):
                raise ChipFileError(f"chip file {path}: {name} holds NaN or infinite values")
            arrays[name] = arr
        chip.switch_states = np.array(arrays["switch_states"], dtype=bool)
        chip.conductance_offset = np.array(arrays["conductance_offset"], dtype=float)
        if "switch_fraction" in arrays:  # chips saved before the partial on-state: fully switched
            frac = np.array(arrays["switch_fraction"], dtype=float)
            if np.any((frac <= 0) | (frac > 1)):
                raise ChipFileError(f"chip file {path}: switch_fraction must lie in (0, 1]; the file is damaged "
                                    "or was edited")
            chip.switch_fraction = frac
        chip.cell_switches = np.array(arrays["cell_switches"], dtype=float) if "cell_switches" in arrays else None
        chip.cell_insulator_r0 = (np.array(arrays["cell_insulator_r0"], dtype=float)
                                  if "cell_insulator_r0" in arrays else None)
        if chip.programming_error == "device":
            if "cell_switches_nominal" not in arrays or chip.cell_switches is None:
                raise ChipFileError(f"chip file {path}: a 'device'-mode chip needs cell_switches and "
                                    "cell_switches_nominal; the file is damaged or was edited")
            chip.cell_switches_nominal = np.array(arrays["cell_switches_nominal"], dtype=float)
        if "cell_breakdown_v" in arrays and device.breakdown_v is not None:  # older files: drawn from the seed
            chip.cell_breakdown_v = np.array(arrays["cell_breakdown_v"], dtype=float)
        if "breakdown_conductance" in arrays:
            g = np.array(arrays["breakdown_conductance"], dtype=float)
            if np.any(g < 0):
                raise ChipFileError(f"chip file {path}: breakdown_conductance must be >= 0 S; the file is damaged "
                                    "or was edited")
            chip.breakdown_conductance = g
        chip.rng.bit_generator.state = meta["rng_state"]
        chip.clock_s = float(meta.get("clock_s", 0.0))
        if meta.get("aging") is not None:
            aging_arrays = {k: _field(path, data, k) for k in names if k.startswith("aging_")}
            try:
                chip.aging = AgingState.from_file(meta["aging"], aging_arrays, geometry.shape)
            except (ValueError, TypeError, KeyError) as exc:
                raise ChipFileError(f"chip file {path}: {exc}; the file is damaged or was edited") from None
        chip.pulse_count = int(meta.get("pulse_count", 0))
        chip.disturb_count = int(meta.get("disturb_count", 0))
        chip.fit_meta = fit_meta
        return chip

    def describe(self) -> dict:
        """The twin's settings (engine, seed, wire resistance, ...), recorded with every run."""
        return {
            **super().describe(),
            "engine": self.engine,
            "device": preset_name(self.device),
            "wire_resistance": self.array.wire_resistance,
            "contact_resistance": self.array.contact_resistance,
            "programming_error": self.programming_error,
            "programming_error_sigma": self.programming_error_sigma,
            "cycle_to_cycle": asdict(self.cycle_to_cycle) if self.programming_error == "device" else None,
            "variability": asdict(self.variability),
            "seed": self.seed,
            **({"aging": self.aging.aging.describe()} if self.aging is not None else {}),
            **({"broken_cells": [list(c) for c in self.broken_cells]} if self.breakdown_conductance.any() else {}),
        }


# ----- small pure functions ---------------------------------------------------------------------

def pulse_targets(wordline_v, bitline_v, tol_v: float = 1e-9) -> np.ndarray:
    """(W, B) bool: the cells a pulse is aimed at, those whose open-circuit voltage V_wl - V_bl has
    the pulse's largest magnitude (the selected cell of a half-bias pulse, the written cells of a
    row-parallel pulse). All False for a pulse of 0 V."""
    v = np.asarray(wordline_v, float)[:, None] - np.asarray(bitline_v, float)[None, :]
    peak = float(np.max(np.abs(v))) if v.size else 0.0
    if peak == 0.0:
        return np.zeros(v.shape, dtype=bool)
    return np.abs(v) >= peak - tol_v


def states_from_switch_currents(i_switch, v_area, g_on, g_off) -> np.ndarray:
    """Switch states (bool, like i_switch) from ngspice's switch currents (A) at a probe instant.

    i_switch: (..., n) current of each switch; v_area: (...) voltage (V) across the switch bank;
    g_on: (..., n) conductance (S) of each switch when on; g_off: (n,) when off. A switch is on when
    its conductance I / V is nearer (on a log scale) to its on- than to its off-conductance.
    """
    g = np.abs(np.asarray(i_switch, float)) / np.abs(np.asarray(v_area, float))[..., None]
    return g > np.sqrt(np.asarray(g_on, float) * np.asarray(g_off, float))


def truncated_normal(rng: np.random.Generator, sigma: float, lower: float, tries: int = 1000) -> float:
    """A draw of N(0, sigma) conditioned on being above ``lower`` (redrawn until it is; after
    ``tries`` draws, ``lower`` itself). Units of sigma."""
    for _ in range(tries):
        x = float(rng.normal(0.0, sigma))
        if x >= lower:
            return x
    return float(lower)


def _chip_geometry(path: Path, g) -> ArrayGeometry:
    """The geometry of a chip file, checked before any array is allocated (ChipFileError otherwise)."""
    keys = ("wordlines", "bitlines", "used_wordlines", "used_bitlines")
    if not isinstance(g, dict) or any(k not in g for k in keys):
        raise ChipFileError(f"chip file {path}: its geometry {json.dumps(g)[:80]} is not the object save_chip writes "
                            f"({', '.join(keys)}); the file is damaged or was edited: save the chip again")
    for name in ("wordlines", "bitlines"):
        n = g[name]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHIP_LINES:
            raise ChipFileError(f"chip file {path}: its geometry has {name} = {n!r}; a chip has 1 to {MAX_CHIP_LINES} "
                                f"{name} (the HT-RRAM array has 24): the file is damaged or was edited, save the chip again")
    try:
        return ArrayGeometry(g["wordlines"], g["bitlines"], tuple(g["used_wordlines"]), tuple(g["used_bitlines"]))
    except (TypeError, ValueError, RramlabError) as exc:
        raise ChipFileError(f"chip file {path}: its geometry is not valid ({exc}): save the chip again") from None


def _field(path, data, name: str):
    """One array of an open chip file; Python objects in it are refused, never unpickled."""
    try:
        return data[name]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ChipFileError(f"chip file {path}: its {name!r} field holds Python objects, which rramlab never "
                                "loads from a file (loading them could run code): it is not a rramlab chip") from None
        raise


def _lowest_positive(x: np.ndarray) -> float:
    """The smallest positive value of x (0.0 if none)."""
    pos = x[x > 0]
    return float(pos.min()) if pos.size else 0.0


def _index_at(t: np.ndarray, when: float) -> int:
    """Index of the last time point at or before ``when`` (ngspice lands on PWL breakpoints)."""
    return int(max(np.searchsorted(t, when * (1 + 1e-12), side="right") - 1, 0))


@dataclass(frozen=True)
class PulseSequence:
    """PWL sources of a sequence of pulses, each followed by a 0 V tail and a state probe."""

    wordline_sources: list[str]
    bitline_sources: list[str]
    top_end_times: list[float]   # end of each pulse's flat top (rect) or its apex (tri), s
    probe_times: list[float]     # an instant inside each state probe, s
    stop: float                  # end of the sequence, s


def rising_edge_fractions(wordline_v, bitline_v, turn_on_v: float, turn_off_v: float,
                          step_v: float = RAMP_STEP_V) -> np.ndarray:
    """Corner points of a pulse's rising edge as fractions of its peak (the last is 1.0): one
    segment up to 90 % of the fraction at which the first cell could meet a threshold (the lowest
    turn-on ``turn_on_v`` > 0 for cells driven positive, the highest turn-off ``turn_off_v`` < 0
    for cells driven negative, volts), then segments of at most ``step_v`` (RAMP_STEP_V) of the peak."""
    v = np.asarray(wordline_v, float)[:, None] - np.asarray(bitline_v, float)[None, :]
    up = float(max(v.max(), 0.0)) if v.size else 0.0
    down = float(max(-v.min(), 0.0)) if v.size else 0.0
    peak = max(up, down)
    if peak == 0.0:
        return np.array([1.0])
    reach = [abs(turn_on_v) / up if up > 0 else np.inf, abs(turn_off_v) / down if down > 0 else np.inf]
    s0 = min(max(0.9 * min(reach), 0.0), 1.0)
    n = max(1, int(np.ceil((1.0 - s0) * peak / step_v)))
    fine = np.linspace(s0, 1.0, n + 1)[1:]
    return np.concatenate([[s0], fine]) if s0 > 0 else fine


def pulse_sequence(pulses, probe_v: float, settle_s: float = SETTLE_S, turn_on_v: float = 0.0,
                   turn_off_v: float = 0.0, fine=None, ramp_step_v: float = RAMP_STEP_V) -> PulseSequence:
    """PWL sources for ``pulses`` [(wordline_v, bitline_v, width, shape), ...] applied one after
    the other (volts, seconds).

    rect: edges of 1 % of the width (at most 10 ns), flat top for ``width``, a 0 V tail of one edge;
    tri: linear up to the peak at width/2 and back to 0 V at ``width``, a 0 V tail of 1 % of the
    width. Then the state probe: every wordline at ``probe_v`` (bitlines at 0 V) for one edge time,
    back to 0 V, and one more edge time at 0 V; the next pulse follows ``settle_s`` later.
    The rising edge is drawn in fine segments (rising_edge_fractions) from just below the chip's
    lowest turn-on threshold ``turn_on_v`` and highest turn-off threshold ``turn_off_v`` (V);
    ``fine`` (one bool per pulse, default all True) False draws that pulse with plain edges.
    """
    W, B = len(pulses[0][0]), len(pulses[0][1])
    pts_w = [[(0.0, 0.0)] for _ in range(W)]
    pts_b = [[(0.0, 0.0)] for _ in range(B)]
    top_end, probes = [], []
    t0 = 0.0
    fine = [True] * len(pulses) if fine is None else list(fine)
    for (wordline_v, bitline_v, width, shape), drawn_fine in zip(pulses, fine):
        edge = min(width * 0.01, 10e-9)
        ramp = (rising_edge_fractions(wordline_v, bitline_v, turn_on_v, turn_off_v, ramp_step_v) if drawn_fine
                else np.ones(1))
        if shape == "rect":
            times = [*(t0 + edge * ramp), t0 + edge + width, t0 + 2 * edge + width]
            factors = [*ramp, 1.0, 0.0]
            top = t0 + edge + width
            end = t0 + 3 * edge + width
        elif shape == "tri":
            times = [*(t0 + 0.5 * width * ramp), t0 + width]
            factors = [*ramp, 0.0]
            top = t0 + width / 2.0
            end = t0 + width + width * 0.01
        else:
            raise RequestError(f"unknown pulse shape {shape!r}")
        for pts, v in list(zip(pts_w, wordline_v)) + list(zip(pts_b, bitline_v)):
            if t0 > 0:
                pts.append((t0, 0.0))  # every line rests at 0 V until its pulse starts
            pts += [(ti, float(v) * f) for ti, f in zip(times, factors)]
        # the state probe, on the wordlines only
        p_on, p_hold, p_off, nxt = end + edge, end + 2 * edge, end + 3 * edge, end + 4 * edge
        for pts in pts_w:
            pts += [(end, 0.0), (p_on, probe_v), (p_hold, probe_v), (p_off, 0.0)]
        top_end.append(top)
        probes.append(p_hold)
        t0 = nxt + settle_s
    t0 -= settle_s
    for pts in pts_w + pts_b:
        pts.append((t0, pts[-1][1]))

    def pwl(pts):
        if all(v == 0.0 for _, v in pts):
            return "DC 0"
        return "PWL(" + " ".join(f"{_num(t)} {_num(v)}" for t, v in pts) + ")"

    return PulseSequence([pwl(p) for p in pts_w], [pwl(p) for p in pts_b], top_end, probes, t0)
