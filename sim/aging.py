"""Aging of the twin's cells: wear with set/reset cycles and retention drift with time.

Both act on what a read returns, never on the switch states, so the compact model of
``sim/device.py`` and its engines are untouched: the VirtualArray calls this module through three
small hooks (``after_pulse``, ``read_currents``, ``advance_time``) only when it was built with
``aging=Aging(...)``. ``aging=None`` (the default) is today's ideal device exactly; so is an
``Aging`` with both parts switched off (``wear=False, drift=False``).

The programmed part of a cell's read current, above its all-switches-off (HRS) current at the same
read voltage, is scaled by a wear factor and a drift factor::

    I = I_hrs + (I_ideal - I_hrs) * wear_factor(n) * drift_factor(t)

Wear: n is the cell's count of completed set/reset cycles (a reset pulse on a cell whose last
targeted pulse was a set). The window narrows as a power law and closes at the cell's own
cycles-to-failure N_f (log-normal about ``wear_cycles_to_failure``)::

    wear_factor(n) = max(0, 1 - (n / N_f) ** wear_exponent)

Drift: t is the (simulated) time since the cell's switch states last changed. The programmed state
relaxes towards HRS linearly in log time, at a rate activated by temperature (Arrhenius)::

    drift_factor(t) = max(0, 1 - nu(T) * log10(1 + t / drift_tau_s))
    nu(T) = drift_per_decade * exp(-(E_a / k_B) * (1 / T - 1 / T_ref))

Every value below is an assumption: the paper (HT-RRAM, 24 x 24) reports neither endurance nor
retention; the orders of magnitude are those reported for filamentary oxide RRAM. Units: cycles,
seconds, kelvin, electronvolts; currents in amperes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BOLTZMANN_EV_PER_K = 8.617333262e-5


@dataclass(frozen=True)
class Aging:
    """The aging parameters (each assumed, see the module docstring).

    wear: switch wear on (False keeps the window of a fresh device for ever).
    wear_cycles_to_failure: median N_f, cycles at which the window closes. Assumed 1e5: oxide RRAM
        endurance spans about 1e4 .. 1e10 cycles (H.-S. P. Wong et al., "Metal-oxide RRAM",
        Proc. IEEE 100, 1951 (2012)); the low end, so a lab-length run shows wear.
    wear_spread: standard deviation of ln(N_f) across cells (assumed 0.5: a few-fold spread of
        cycles to failure cell to cell, as endurance distributions in the same review show).
    wear_exponent: power of n / N_f (assumed 0.5: the window narrows early, then slowly).
    drift: retention drift on.
    drift_per_decade: fraction of the programmed window lost per decade of time at T_ref (assumed
        0.02, i.e. about 1.6 nS per decade for the 80 nS level: log-time relaxation of a few
        percent per decade is typical of analog oxide RRAM states).
    drift_tau_s: time scale of the log (s; assumed 1 s, the first read after programming).
    activation_energy_ev: E_a of the drift rate (assumed 0.3 eV, within the 0.2-1.5 eV reported
        for oxygen-vacancy diffusion in oxide RRAM retention tests).
    reference_temperature_k, temperature_k: T_ref of drift_per_decade and the chip's temperature
        (both 300 K: at room temperature nu = drift_per_decade).
    """

    wear: bool = True
    wear_cycles_to_failure: float = 1e5
    wear_spread: float = 0.5
    wear_exponent: float = 0.5
    drift: bool = True
    drift_per_decade: float = 0.02
    drift_tau_s: float = 1.0
    activation_energy_ev: float = 0.3
    reference_temperature_k: float = 300.0
    temperature_k: float = 300.0

    def __post_init__(self):
        for name in ("wear_cycles_to_failure", "wear_exponent", "drift_tau_s", "reference_temperature_k",
                     "temperature_k"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"Aging.{name} must be a positive number, got {v!r}")
        for name in ("wear_spread", "drift_per_decade", "activation_energy_ev"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"Aging.{name} must be a number >= 0, got {v!r}")

    @classmethod
    def off(cls) -> "Aging":
        """Both parts switched off: reads are the ideal device's exactly."""
        return cls(wear=False, drift=False)

    @property
    def drift_rate(self) -> float:
        """nu(T): fraction of the window lost per decade of time at ``temperature_k``."""
        arrhenius = np.exp(-(self.activation_energy_ev / BOLTZMANN_EV_PER_K)
                           * (1.0 / self.temperature_k - 1.0 / self.reference_temperature_k))
        return float(self.drift_per_decade * arrhenius)

    def wear_factor(self, cycles, cycles_to_failure):
        """Fraction (0..1) of the fresh window left after ``cycles`` with the cell's N_f."""
        if not self.wear:
            return np.ones_like(np.asarray(cycles, dtype=float))
        x = np.asarray(cycles, dtype=float) / np.asarray(cycles_to_failure, dtype=float)
        return np.clip(1.0 - x ** self.wear_exponent, 0.0, 1.0)

    def drift_factor(self, elapsed_s):
        """Fraction (0..1) of the programmed window left ``elapsed_s`` seconds after programming."""
        t = np.maximum(np.asarray(elapsed_s, dtype=float), 0.0)
        if not self.drift:
            return np.ones_like(t)
        return np.clip(1.0 - self.drift_rate * np.log10(1.0 + t / self.drift_tau_s), 0.0, 1.0)

    def describe(self) -> dict:
        return asdict(self)


class AgingState:
    """Per-cell aging state of one chip: cycles, cycles to failure, programming times, the clock.

    The cycles-to-failure spread is drawn from its own generator (seeded from the chip's seed), so a
    chip with aging keeps exactly the switches and programming errors it has without.
    """

    def __init__(self, aging: Aging, shape: tuple[int, int], seed: int | None):
        self.aging = aging
        rng = np.random.default_rng(None if seed is None else [int(seed), 0xA61])
        spread = aging.wear_spread
        self.cycles_to_failure = aging.wear_cycles_to_failure * (
            np.exp(rng.normal(0.0, spread, shape)) if spread > 0 else np.ones(shape))
        self.cycles = np.zeros(shape, dtype=np.int64)
        self.last_polarity = np.zeros(shape, dtype=np.int8)  # +1 last targeted pulse a set, -1 a reset
        self.programmed_at_s = np.zeros(shape)
        #: simulated seconds since the chip was made (advanced only by ``advance_time``)
        self.clock_s = 0.0

    def after_pulse(self, cell_v: np.ndarray, targets: np.ndarray, changed: np.ndarray) -> None:
        """Count cycles and restart the drift clock after a pulse. cell_v: (W, B) open-circuit cell
        voltages (V); targets: (W, B) bool, the pulse's targets; changed: (W, B) bool, cells whose
        switch states the pulse changed."""
        polarity = np.sign(cell_v).astype(np.int8)
        reset_after_set = targets & (polarity < 0) & (self.last_polarity > 0)
        self.cycles[reset_after_set] += 1
        hit = targets & (polarity != 0)
        self.last_polarity[hit] = polarity[hit]
        self.programmed_at_s[changed] = self.clock_s

    def factor(self, cells) -> np.ndarray:
        """wear_factor * drift_factor of each (wordline, bitline) in ``cells``."""
        w = np.array([c[0] for c in cells], dtype=int)
        b = np.array([c[1] for c in cells], dtype=int)
        wear = self.aging.wear_factor(self.cycles[w, b], self.cycles_to_failure[w, b])
        drift = self.aging.drift_factor(self.clock_s - self.programmed_at_s[w, b])
        return wear * drift

    def read_currents(self, cells, currents, hrs_currents) -> list[float]:
        """The aged read currents (A) of ``cells`` from the ideal ones and each cell's HRS current."""
        i = np.asarray(currents, dtype=float)
        i_hrs = np.asarray(hrs_currents, dtype=float)
        return list(i_hrs + (i - i_hrs) * self.factor(cells))

    def advance_time(self, seconds: float) -> None:
        self.clock_s += float(seconds)

    #: the per-cell arrays of the state, as chip files store them (``aging_<name>``)
    ARRAYS = ("cycles", "cycles_to_failure", "last_polarity", "programmed_at_s")

    def to_file(self) -> tuple[dict, dict]:
        """(meta, arrays) for a chip file: the parameters and the clock (JSON), the per-cell arrays."""
        meta = {"parameters": self.aging.describe(), "clock_s": self.clock_s}
        return meta, {f"aging_{name}": getattr(self, name) for name in self.ARRAYS}

    @classmethod
    def from_file(cls, meta: dict, arrays: dict, shape: tuple[int, int]) -> "AgingState":
        """The state ``to_file`` wrote. ValueError naming what is wrong (a bad parameter, a missing
        or misshapen array, a negative count)."""
        state = cls(Aging(**meta["parameters"]), shape, seed=0)
        state.clock_s = float(meta["clock_s"])
        dtypes = {"cycles": np.int64, "last_polarity": np.int8}
        for name in cls.ARRAYS:
            if f"aging_{name}" not in arrays:
                raise ValueError(f"its aging state lacks aging_{name}")
            arr = np.asarray(arrays[f"aging_{name}"])
            if arr.shape != tuple(shape):
                raise ValueError(f"aging_{name} has shape {arr.shape}, the array needs {tuple(shape)}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"aging_{name} holds NaN or infinite values")
            setattr(state, name, np.array(arr, dtype=dtypes.get(name, float)))
        if np.any(state.cycles < 0) or np.any(state.cycles_to_failure <= 0) or not np.isfinite(state.clock_s):
            raise ValueError("its aging state has negative cycles, cycles to failure <= 0 or a bad clock")
        return state
