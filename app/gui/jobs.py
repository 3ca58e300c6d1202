"""Jobs the window runs that are not protocols of their own: a read of the whole array.

Shaped like a protocol (settings declared once, ``plan`` without an instrument, ``run`` a
generator of records polling ``should_stop`` between wordlines) so the window runs it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from rramlab.drivers.interface import CrossbarInstrument, RequestChecker
from rramlab.protocols.settings import check_settings, setting


@dataclass(frozen=True)
class ArrayReadSettings:
    """A read of every used cell, one wordline at a time."""

    read_v: float = setting(1.0, "read voltage on the selected wordline", "V", soa="read")


@dataclass(frozen=True)
class ArrayReadPlan:
    settings: ArrayReadSettings
    wordlines: tuple[int, ...]
    bitlines: tuple[int, ...]

    @property
    def total(self) -> int:
        return len(self.wordlines)


@dataclass(frozen=True)
class ArrayReadRecord:
    """The read currents (A) of the used cells of one wordline at ``read_v`` (V)."""

    wordline: int
    bitlines: tuple[int, ...]
    read_a: tuple[float, ...]
    read_v: float

    def conductances(self) -> list[tuple[tuple[int, int], float]]:
        """((wordline, bitline), siemens) per cell: I / V at the read voltage."""
        return [((self.wordline, b), i / self.read_v) for b, i in zip(self.bitlines, self.read_a)]


def plan(settings: ArrayReadSettings, cell=None, checker: RequestChecker | None = None) -> ArrayReadPlan:
    """Validate the read against ``checker``'s limits; ``cell`` is ignored (the whole array is read)."""
    checker = checker or RequestChecker()
    check_settings(settings, checker.limits)
    checker.check_read_voltage(settings.read_v)
    g = checker.geometry
    return ArrayReadPlan(settings, tuple(g.used_wordlines), tuple(g.used_bitlines))


def run(instrument: CrossbarInstrument, read_plan: ArrayReadPlan,
        should_stop: Callable[[], bool] | None = None) -> Iterator[ArrayReadRecord]:
    v = read_plan.settings.read_v
    for w in read_plan.wordlines:
        if should_stop is not None and should_stop():
            return
        currents = instrument.read([(w, b) for b in read_plan.bitlines], v)
        yield ArrayReadRecord(w, read_plan.bitlines, tuple(float(i) for i in currents), v)
