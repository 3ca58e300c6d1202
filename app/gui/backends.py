"""What the GUI can run on, described without Qt: the twin or a bench file.

A choice (``TwinChoice`` or ``BenchChoice``) knows, before anything is connected, the geometry and
the safe operating area its instrument will have, and where those limits come from; the forms take
their bounds from it. ``open()`` makes the instrument (the twin is built, a bench file is validated,
connected and its instruments identified by ``open_bench``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rramlab.drivers.interface import ArrayGeometry, CrossbarInstrument, RequestChecker, RramlabError, \
    SafeOperatingArea

ENGINES = ("auto", "fast", "spice")


@dataclass(frozen=True)
class TwinChoice:
    """The simulation twin: a lone device or the 24 x 24 array.

    wire_resistance: ohm per line segment (array only, None: the twin's default, 2 ohm).
    chip_file: a chip saved with ``save_chip`` to continue from (then array/seed come from it).
    """

    array: bool = False
    wire_resistance: float | None = None
    seed: int = 0
    chip_file: str | None = None
    engine: str = "auto"
    threshold_sigma_v: float = 0.0      # device-to-device spread of the switch thresholds (V)
    on_resistance_sigma: float = 0.0    # spread of ln(RON), 0.05 is about 5 %

    kind = "twin"

    def label(self) -> str:
        if self.chip_file:
            return f"twin from chip file {Path(self.chip_file).name}"
        what = "24 x 24 array" if self.array else "lone device"
        wire = f", {self.wire_resistance:g} ohm wire" if self.array and self.wire_resistance is not None else ""
        spread = ""
        if self.threshold_sigma_v or self.on_resistance_sigma:
            spread = f", spread VT {self.threshold_sigma_v * 1e3:g} mV / RON {self.on_resistance_sigma * 100:g} %"
        return f"twin, {what}{wire}{spread}, seed {self.seed}, {self.engine} engine"

    def checker(self) -> RequestChecker:
        """Geometry and limits of the twin this choice builds (reads a chip file's header only)."""
        if self.chip_file:
            return self.open()  # a chip file carries its own geometry and limits; cheap to load
        geometry = ArrayGeometry() if self.array else ArrayGeometry(1, 1)
        return RequestChecker(geometry, SafeOperatingArea())

    def limits_source(self) -> str:
        if self.chip_file:
            return f"the safe operating area saved in {Path(self.chip_file).name}"
        return "the HT-RRAM's safe operating area (twin defaults)"

    def open(self) -> CrossbarInstrument:
        from rramlab.sim.array import ArrayParameters
        from rramlab.sim.virtual_array import Variability, VirtualArray

        if self.engine not in ENGINES:
            raise RramlabError(f"engine {self.engine!r} is unknown: choose one of {', '.join(ENGINES)}")
        if self.chip_file:
            return VirtualArray.load_chip(self.chip_file, engine=self.engine)
        kwargs = {"variability": Variability(self.threshold_sigma_v, self.on_resistance_sigma)}
        if self.array:
            if self.wire_resistance is not None:
                if not self.wire_resistance >= 0:
                    raise RramlabError(f"wire resistance {self.wire_resistance} ohm must be 0 or more")
                kwargs["array"] = ArrayParameters(wire_resistance=self.wire_resistance)
            return VirtualArray(seed=self.seed, engine=self.engine, **kwargs)
        return VirtualArray.lone_device(seed=self.seed, engine=self.engine, **kwargs)


@dataclass(frozen=True)
class BenchChoice:
    """A probe station described by a bench TOML file (``docs/bench.md``)."""

    path: str

    kind = "bench"

    def label(self) -> str:
        return f"probe station {Path(self.path).name}"

    def checker(self) -> RequestChecker:
        """Validates the bench file (no VISA resource opened) and returns its geometry and limits."""
        from rramlab.drivers.probe_station import load_bench

        config = load_bench(self.path)
        return RequestChecker(config.geometry, config.limits)

    def limits_source(self) -> str:
        return f"[limits] of {Path(self.path).name} and the 4156C's pulse widths"

    def open(self) -> CrossbarInstrument:
        from rramlab.app import virtual_bench
        from rramlab.drivers.probe_station import connect_bench, load_bench

        config = load_bench(self.path)
        if virtual_bench.is_virtual(config):  # a virtual bench file chosen as a bench: a default chip
            return VirtualBenchChoice(self.path).open()
        return connect_bench(config)


def default_virtual_bench() -> Path:
    """``drivers/benches/virtual.toml`` as installed with rramlab."""
    import rramlab.drivers

    return Path(rramlab.drivers.__file__).resolve().parent / "benches" / "virtual.toml"


@dataclass(frozen=True)
class VirtualBenchChoice(BenchChoice):
    """The virtual bench: a bench file whose ``visa_library`` is ``@rramlab-twin``, its 4156C and
    E5250A parsing their own commands in front of a twin chip (seed, wire resistance, engine or a
    chip file, as for the twin). The station carries the bench clock: the time a real bench would
    have taken (``bench_time_text``)."""

    seed: int = 0
    wire_resistance: float | None = None
    engine: str = "fast"
    chip_file: str | None = None

    kind = "virtual bench"

    def label(self) -> str:
        chip = f"chip file {Path(self.chip_file).name}" if self.chip_file else f"seed {self.seed}"
        return f"virtual bench {Path(self.path).name} ({chip}, {self.engine} engine)"

    def limits_source(self) -> str:
        return f"[limits] of {Path(self.path).name} and the 4156C's pulse widths"

    def open(self) -> CrossbarInstrument:
        from types import SimpleNamespace

        from rramlab.app import virtual_bench
        from rramlab.drivers.probe_station import load_bench

        if self.engine not in ENGINES:
            raise RramlabError(f"engine {self.engine!r} is unknown: choose one of {', '.join(ENGINES)}")
        config = load_bench(self.path)
        if not virtual_bench.is_virtual(config):
            raise RramlabError(f"{self.path} is not a virtual bench file ([bench] visa_library is not "
                               "'@rramlab-twin'): choose drivers/benches/virtual.toml, or choose the file as a "
                               "probe station")
        args = SimpleNamespace(seed=self.seed, engine=self.engine, wire_resistance=self.wire_resistance,
                               chip=self.chip_file)
        station = virtual_bench.open_virtual_bench(config, args)
        if station.virtual_bench in virtual_bench.OPENED:  # the command line prints and forgets these; not here
            virtual_bench.OPENED.remove(station.virtual_bench)
        return station


def bench_time_text(instrument) -> str:
    """The virtual bench's clock: the time a real bench would have spent so far ('' for others)."""
    bench = getattr(instrument, "virtual_bench", None)
    return bench.clock.summary() if bench is not None else ""


def status_text(instrument: CrossbarInstrument) -> str:
    """One line about a connected instrument: what it is and, for a bench, who answered *IDN? and
    any error its queues already held when it was connected (also kept with every run)."""
    g = instrument.geometry
    text = f"{instrument.backend_name}, {g.wordlines} x {g.bitlines}"
    identities = getattr(instrument, "identities", None)
    if identities:
        text += "; " + "; ".join(f"{k}: {v}" for k, v in identities.items())
    stale = [f"{role} {code} {msg}" for role, errors in (getattr(instrument, "stale_errors", None) or {}).items()
             for code, msg in errors]
    if stale:
        text += "; errors from before this connection: " + ", ".join(stale)
    bench_time = bench_time_text(instrument)
    if bench_time:
        text += f"; virtual bench, {bench_time}"
    return text
