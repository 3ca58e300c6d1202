"""VirtualArray: the CrossbarInstrument seam on a twin of the crossbar, solved by ngspice or by the
fast nodal engine (sim/nodal.py) behind the same calls.

Engines (``VirtualArray(engine=...)``):

- ``"spice"``: the reference. Every call builds the array netlist and solves it in ngspice (below).
- ``"fast"``: sim/nodal.py, nodal analysis of the same netlist in numpy (same compact model, wire
  and contact resistance, switch states): Newton for reads and VMM, quasi-static peak solve for
  pulses. Held to ngspice by tests/test_fast_engine.py (currents within 1e-3 relative, in practice
  about 1e-10; identical flipped switches).
- ``"auto"`` (the default): fast for every read, VMM and pulse, except a pulse in which cells that
  share a line cross switch thresholds in the same round (e.g. a whole row or the whole array
  driven above a threshold): the order of those flips along the edge is only estimated by the fast
  engine, so ngspice's transient decides such a pulse. Half-bias programming, reads and inference
  never take that path, so write-verify, inference and power run at the fast engine's speed.

With engine="spice", every call builds the array netlist (sim/array.py) with each switch's current
state as its initial ON/OFF and solves it in ngspice:

- pulse: a transient of the pulse (rectangular with short edges, or triangular). ngspice's switches
  follow their hysteresis rule during the pulse; the twin reads back the terminal voltage of every
  cell at every accepted time point and applies the same rule (``sim.device.next_switch_states``),
  so the states the next call starts from are the ones ngspice ended with.
- read and vmm: an operating point with the bitlines held at 0 V by their sense sources.

The chip (switch states, per-cell device variants, programming error, random generator) saves to
and loads from one ``.npz`` file. Units: volts, amperes, seconds, siemens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rramlab.drivers.interface import ArrayGeometry, CrossbarInstrument, RequestError, SafeOperatingArea
from rramlab.sim.array import ArrayNodes, ArrayParameters, array_netlist, bitline_source
from rramlab.sim.device import DeviceParameters, Switch, _num, next_switch_states
from rramlab.sim.nodal import NodalArray
from rramlab.sim.spice import simulate

ENGINES = ("auto", "fast", "spice")
DEFAULT_ENGINE = "auto"

CHIP_FILE_VERSION = 1
DEFAULT_PROGRAMMING_ERROR_SIGMA = 1.06e-9  # S; paper: 94 % of transfers within +-2 nS


@dataclass(frozen=True)
class Variability:
    """Device-to-device variability, drawn once per chip from its seed.

    threshold_sigma_v: standard deviation (V) of each switch's VT shift.
    on_resistance_sigma: standard deviation of ln(RON) (a log-normal spread; 0.05 is about 5 %).
    """

    threshold_sigma_v: float = 0.0
    on_resistance_sigma: float = 0.0

    def __post_init__(self):
        for name in ("threshold_sigma_v", "on_resistance_sigma"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"Variability.{name} must be >= 0, got {v!r}")

    @property
    def any(self) -> bool:
        """True when either spread is non-zero."""
        return self.threshold_sigma_v > 0 or self.on_resistance_sigma > 0


class VirtualArray(CrossbarInstrument):
    """A simulated HT-RRAM crossbar that answers the seam's calls.

    geometry: array size (default 24 x 24). A 1 x 1 array with zero wire and contact resistance is
        a lone device between two probe needles.
    device: the compact model (sim/device.py). array: wire and contact resistance.
    variability: device-to-device spread, drawn from ``seed``.
    programming_error_sigma: Gaussian conductance error (S) added to a cell when its transfer
        completes (``programming_done``); 0 turns it off.
    seed: the random seed; the same seed gives the same chip and the same programming errors.
    engine: "auto" (default), "fast" or "spice", see the module docstring: "spice" solves every
        call in ngspice (the reference); "fast" solves every call with the nodal engine
        (sim/nodal.py); "auto" uses the fast engine except for pulses whose flip order only ngspice
        can settle (cells sharing a line crossing thresholds together). All three carry the same
        chip state, so the engine can be changed between calls (``va.engine = "spice"``).
    """

    backend_name = "twin"

    def __init__(self, geometry: ArrayGeometry | None = None, limits: SafeOperatingArea | None = None,
                 device: DeviceParameters | None = None, array: ArrayParameters | None = None,
                 variability: Variability | None = None,
                 programming_error_sigma: float = DEFAULT_PROGRAMMING_ERROR_SIGMA,
                 seed: int | None = 0, engine: str = DEFAULT_ENGINE):
        super().__init__(geometry, limits)
        self.engine = engine
        self.device = device or DeviceParameters()
        self.array = array or ArrayParameters()
        self.variability = variability or Variability()
        if not (np.isfinite(programming_error_sigma) and programming_error_sigma >= 0):
            raise ValueError(f"programming_error_sigma must be >= 0 S, got {programming_error_sigma!r}")
        self.programming_error_sigma = float(programming_error_sigma)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        W, B, n = self.geometry.wordlines, self.geometry.bitlines, self.device.n_switches
        self.switch_states = np.zeros((W, B, n), dtype=bool)  # every cell starts in HRS
        self.conductance_offset = np.zeros((W, B))
        self.cell_switches = self._draw_cell_switches() if self.variability.any else None
        self.pulse_count = 0
        #: pulses the "auto" engine handed to ngspice (flip order not settled by the fast engine)
        self.spice_pulses = 0
        self._nodal: NodalArray | None = None

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

    # ----- per-cell switch thresholds -----
    def _draw_cell_switches(self) -> np.ndarray:
        W, B = self.geometry.shape
        out = np.empty((W, B, self.device.n_switches, 3))
        for w in range(W):
            for b in range(B):
                d = self.device.with_variability(self.rng, self.variability.threshold_sigma_v,
                                                 self.variability.on_resistance_sigma)
                out[w, b] = [(s.turn_on_v, s.turn_off_v, s.on_resistance) for s in d.switches]
        return out

    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """(turn_on_v, turn_off_v), each (W, B, n) volts."""
        if self.cell_switches is not None:
            return self.cell_switches[..., 0], self.cell_switches[..., 1]
        shape = self.switch_states.shape
        return (np.broadcast_to(self.device.turn_on_thresholds(), shape),
                np.broadcast_to(self.device.turn_off_thresholds(), shape))

    # ----- netlists -----
    def _netlist(self, wordline_sources, bitline_sources, analysis: str, saves: list[str]) -> str:
        body = array_netlist(self.device, self.array, self.switch_states, self.conductance_offset,
                             wordline_sources, bitline_sources, self.cell_switches)
        return "\n".join(["* rramlab virtual array", *body, ".save " + " ".join(saves), analysis, ".end", ""])

    def _op(self, wordline_v: np.ndarray, bitlines: list[int]) -> np.ndarray:
        srcs_w = [f"DC {_num(v)}" for v in wordline_v]
        srcs_b = ["DC 0"] * self.geometry.bitlines
        names = [f"i({bitline_source(b)})" for b in bitlines]
        vecs = [f"{bitline_source(b)}#branch" for b in bitlines]
        result = simulate(self._netlist(srcs_w, srcs_b, ".op", names), vecs)
        return np.array([result[v][0] for v in vecs])

    # ----- the fast engine -----
    def _fast(self) -> NodalArray:
        na = self._nodal
        if na is None or na.device != self.device or na.array != self.array:
            lim = self.limits
            v_max = max(lim.max_set_voltage, -lim.min_reset_voltage, lim.max_read_voltage) + 0.1
            self._nodal = NodalArray(self.geometry.wordlines, self.geometry.bitlines, self.device,
                                     self.array, v_max=v_max)
        return self._nodal

    def _on_resistance(self):
        return None if self.cell_switches is None else self.cell_switches[..., 2]

    def _fast_currents(self, wordline_v: np.ndarray, bitlines: list[int]) -> np.ndarray:
        na = self._fast()
        g = na.switch_conductance(self.switch_states, self._on_resistance())
        return na.bitline_currents(wordline_v, g, self.conductance_offset, bitlines)

    def _commit_states(self, new: np.ndarray):
        changed = np.any(new != self.switch_states, axis=2)
        self.conductance_offset[changed] = 0.0  # a new physical state: the old error no longer applies
        self.switch_states = new
        self.pulse_count += 1

    # ----- the seam -----
    def _read(self, cells, v_read):
        if self.engine != "spice":
            rows = sorted({w for w, _ in cells})
            x = np.zeros((len(rows), self.geometry.wordlines))
            x[np.arange(len(rows)), rows] = v_read
            cur = self._fast_currents(x, list(range(self.geometry.bitlines)))
            where = {w: i for i, w in enumerate(rows)}
            return [cur[where[w], b] for w, b in cells]
        by_wordline: dict[int, list[int]] = {}
        for w, b in cells:
            by_wordline.setdefault(w, []).append(b)
        currents = {}
        for w, bls in by_wordline.items():
            wl = np.zeros(self.geometry.wordlines)
            wl[w] = v_read
            uniq = sorted(set(bls))
            for b, i in zip(uniq, self._op(wl, uniq)):
                currents[(w, b)] = i
        return [currents[c] for c in cells]

    def _vmm(self, wordline_v, bitlines):
        if self.engine != "spice":
            return self._fast_currents(wordline_v, bitlines)
        return np.array([self._op(step, bitlines) for step in wordline_v])

    def _pulse(self, wordline_v, bitline_v, width, shape):
        if self.engine != "spice":
            # Quasi-static: Cs, Ci = 0.1 fF settle in well under the 1 ns shortest pulse, so the
            # switches see the DC cell voltages of the flat top (rect) or of the apex (tri).
            on_v, off_v = self.thresholds()
            new, estimated, _ = self._fast().pulse(wordline_v, bitline_v, self.switch_states, on_v, off_v,
                                                   self._on_resistance(), self.conductance_offset)
            if not (estimated and self.engine == "auto"):
                self._commit_states(new)
                return
            self.spice_pulses += 1
        self._spice_pulse(wordline_v, bitline_v, width, shape)

    def _spice_pulse(self, wordline_v, bitline_v, width, shape):
        t, waves_w, waves_b = pulse_waveforms(wordline_v, bitline_v, width, shape)
        nodes = ArrayNodes(*self.geometry.shape, self.array)
        W, B = self.geometry.shape
        top = [[nodes.wl(w, b) for b in range(B)] for w in range(W)]
        bottom = [[nodes.bl(w, b) for b in range(B)] for w in range(W)]
        node_names = sorted({n for row in top + bottom for n in row})
        tstop = t[-1]
        # A coarse print step: ngspice still lands on every PWL corner and cuts steps at switch events.
        analysis = f".tran {_num(tstop / 10)} {_num(tstop)}"
        result = simulate(self._netlist(waves_w, waves_b, analysis, [f"v({n})" for n in node_names]),
                          [f"v({n})" for n in node_names])
        v_top = np.array([[result[f"v({n})"] for n in row] for row in top])       # (W, B, time)
        v_bottom = np.array([[result[f"v({n})"] for n in row] for row in bottom])
        terminal = (v_top - v_bottom)[:, :, None, :]
        on_v, off_v = self.thresholds()
        new = next_switch_states(self.switch_states, on_v, off_v,
                                 np.broadcast_to(terminal, self.switch_states.shape + terminal.shape[-1:]))
        self._commit_states(new)

    def _programming_done(self, cells):
        if self.programming_error_sigma <= 0:
            return
        for w, b in cells:
            self.conductance_offset[w, b] = self.rng.normal(0.0, self.programming_error_sigma)

    def _reset_outputs(self):
        # Sources exist only during a call: between calls every line of the twin is at 0 V.
        return None

    # ----- the chip as a file -----
    def save_chip(self, path) -> Path:
        """Write the whole chip state to ``path`` (.npz): switch states, programming errors,
        per-cell device variants, random generator, and every setting needed to rebuild it."""
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
            "seed": self.seed,
            "rng_state": self.rng.bit_generator.state,
            "pulse_count": self.pulse_count,
            "engine": self.engine,
        }
        arrays = {"switch_states": self.switch_states, "conductance_offset": self.conductance_offset,
                  "meta": np.array(json.dumps(meta))}
        if self.cell_switches is not None:
            arrays["cell_switches"] = self.cell_switches
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load_chip(cls, path, engine: str | None = None) -> "VirtualArray":
        """Rebuild a VirtualArray saved by ``save_chip``; reads give the same currents as before.
        engine: override the engine saved with the chip (files without one get the default)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"chip file {path} does not exist: save one with VirtualArray.save_chip")
        with np.load(path, allow_pickle=False) as data:
            try:
                meta = json.loads(str(data["meta"]))
            except KeyError as exc:
                raise RequestError(f"{path} is not a rramlab chip file (no 'meta' entry)") from exc
            if meta.get("version") != CHIP_FILE_VERSION:
                raise RequestError(f"{path} has chip file version {meta.get('version')}, this rramlab reads {CHIP_FILE_VERSION}")
            g = meta["geometry"]
            geometry = ArrayGeometry(g["wordlines"], g["bitlines"], tuple(g["used_wordlines"]), tuple(g["used_bitlines"]))
            device = DeviceParameters(**meta["device"], switches=tuple(Switch(**s) for s in meta["switches"]))
            chip = cls(geometry=geometry, limits=SafeOperatingArea(**meta["limits"]), device=device,
                       array=ArrayParameters(**meta["array"]), variability=Variability(),
                       programming_error_sigma=meta["programming_error_sigma"], seed=meta["seed"],
                       engine=engine or meta.get("engine", DEFAULT_ENGINE))
            chip.variability = Variability(**meta["variability"])
            chip.switch_states = np.array(data["switch_states"], dtype=bool)
            chip.conductance_offset = np.array(data["conductance_offset"], dtype=float)
            chip.cell_switches = np.array(data["cell_switches"]) if "cell_switches" in data else None
            chip.rng.bit_generator.state = meta["rng_state"]
            chip.pulse_count = int(meta.get("pulse_count", 0))
        return chip

    def describe(self) -> dict:
        """The twin's settings (engine, seed, wire resistance, ...), recorded with every run."""
        return {
            **super().describe(),
            "engine": self.engine,
            "wire_resistance": self.array.wire_resistance,
            "contact_resistance": self.array.contact_resistance,
            "programming_error_sigma": self.programming_error_sigma,
            "variability": asdict(self.variability),
            "seed": self.seed,
        }


def pulse_waveforms(wordline_v, bitline_v, width: float, shape: str):
    """PWL source values for a pulse; returns (time points, wordline sources, bitline sources).

    rect: edges of 1 % of the width (at most 10 ns), flat top for ``width``; tri: linear up to the
    peak at width/2 and back to 0 V at ``width``. A short 0 V tail lets every node settle.
    """
    if shape == "rect":
        edge = min(width * 0.01, 10e-9)
        t = np.array([0.0, edge, edge + width, 2 * edge + width, 3 * edge + width])
        shape_factor = np.array([0.0, 1.0, 1.0, 0.0, 0.0])
    elif shape == "tri":
        tail = width * 0.01
        t = np.array([0.0, width / 2.0, width, width + tail])
        shape_factor = np.array([0.0, 1.0, 0.0, 0.0])
    else:
        raise RequestError(f"unknown pulse shape {shape!r}")

    def pwl(v):
        if v == 0:
            return "DC 0"
        return "PWL(" + " ".join(f"{_num(ti)} {_num(v * f)}" for ti, f in zip(t, shape_factor)) + ")"

    return t, [pwl(v) for v in wordline_v], [pwl(v) for v in bitline_v]
