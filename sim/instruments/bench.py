"""A whole virtual bench: 4156C + E5250A + probe card + chip + bench clock, reachable as VISA
resources through a resource manager that duck-types pyvisa's (``open_resource``,
``list_resources``, ``close``). Hand it to
``rramlab.drivers.probe_station.connect_bench(config, resource_manager=bench.resource_manager())``.

The bench file names it with ``[bench] visa_library = "@rramlab-twin"`` (see VISA_LIBRARY); the
chip's parameters (seed, wire resistance, engine, a saved chip) come from the command line, not the
bench file, since a bench file describes instruments and wiring, not the device under test.
"""

from __future__ import annotations

from dataclasses import dataclass

from .analyzer import VirtualAnalyzer
from .base import VirtualResource
from .clock import BenchClock, BenchTiming
from .matrix import VirtualMatrix
from .probe_card import VirtualProbeCard

#: the [bench] visa_library value that names the virtual instruments
VISA_LIBRARY = "@rramlab-twin"


@dataclass(frozen=True)
class BenchWiring:
    """What is cabled to what, in the bench file's terms. channels: (channel, kind, matrix input)."""

    analyzer_resource: str
    matrix_resource: str
    channels: tuple[tuple[int, str, int], ...]
    ground_input: int
    cards: int
    wordline_outputs: tuple[int, ...]
    bitline_outputs: tuple[int, ...]

    @classmethod
    def from_config(cls, config) -> "BenchWiring":
        """From a loaded bench file (``rramlab.drivers.probe_station.load_bench``), read by field name."""
        return cls(config.analyzer_resource, config.matrix_resource,
                   tuple((c.channel, c.kind, c.input) for c in config.channels), config.ground_input, config.cards,
                   tuple(config.wordline_outputs), tuple(config.bitline_outputs))


class VirtualBench:
    """The virtual instruments around one chip.

    array: the chip (a VirtualArray); wiring: the physical bench (BenchWiring); timing: the bench
    clock's assumptions. ``analyzer``, ``matrix``, ``probe_card`` and ``clock`` are public so tests
    can look at the instruments' state and inject faults (``bench.analyzer.inject("timeout", "TI\\?")``).
    """

    def __init__(self, array, wiring: BenchWiring, timing: BenchTiming | None = None):
        self.array = array
        self.wiring = wiring
        self.clock = BenchClock(timing or BenchTiming())
        self.analyzer = VirtualAnalyzer({ch: kind for ch, kind, _ in wiring.channels}, clock=self.clock)
        self.matrix = VirtualMatrix(wiring.cards, clock=self.clock)
        self.probe_card = VirtualProbeCard(array, wiring.wordline_outputs, wiring.bitline_outputs,
                                           {ch: inp for ch, _, inp in wiring.channels}, (wiring.ground_input,))
        self.probe_card.matrix = self.matrix
        self.analyzer.probe_card = self.probe_card
        self.resources = {wiring.analyzer_resource: self.analyzer, wiring.matrix_resource: self.matrix}

    def resource_manager(self) -> "TwinResourceManager":
        return TwinResourceManager(self)

    def is_safe(self) -> bool:
        """Every output at 0 V or off and every crosspoint open: the state a stopped run must leave."""
        return self.analyzer.outputs_at_zero() and self.matrix.all_open()


class TwinResourceManager:
    """pyvisa.ResourceManager look-alike over a VirtualBench."""

    def __init__(self, bench: VirtualBench):
        self.bench = bench
        self.opened: list[VirtualResource] = []

    def list_resources(self, query: str = "?*::INSTR") -> tuple[str, ...]:
        return tuple(self.bench.resources)

    def open_resource(self, name: str, read_termination: str | None = "\n", write_termination: str | None = "\n",
                      timeout: int | None = 2000, **_ignored) -> VirtualResource:
        if name not in self.bench.resources:
            raise ValueError(f"VI_ERROR_RSRC_NFOUND: no virtual instrument at {name!r}; this bench has "
                             f"{', '.join(self.bench.resources)}")
        res = VirtualResource(name, self.bench.resources[name], read_termination, write_termination, timeout)
        self.opened.append(res)
        return res

    def close(self) -> None:
        for r in self.opened:
            r.close()
