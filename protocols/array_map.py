"""Array map: the conductance of every cell of the array (or of a region) at the read voltage.

Nothing is pulsed: each wordline of the region is read at ``read_v`` with its bitlines together
(``instrument.read`` of that row's cells: the probe station drives the wordline and measures the
bitlines on its spare SMUs at once; the twin solves the row in one step), every other line at 0 V.
``run`` yields one ``MapRead`` per cell, wordline after wordline, and at the end one ``MapSnapshot``:
the whole region as a matrix, so a stored run can be drawn again without regrouping the reads.

``level_counts`` sorts conductances into the paper's eight states (10..80 nS, +-5 nS around each),
HRS (below 5 nS) and above 85 nS. Units: siemens, volts, amperes.

Example::

    with VirtualArray(seed=1, engine="fast") as chip:
        p = array_map.plan(array_map.MapSettings(), chip, region=((0, 4), (0, 4)))
        records = list(array_map.run(chip, p))
        snapshot = records[-1]          # MapSnapshot, conductance_s[i][j] of wordline i, bitline j
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

from rramlab.drivers.interface import CrossbarInstrument, RequestChecker, RequestError, SafeOperatingArea
from rramlab.protocols.settings import check_settings, setting

__all__ = ["MapSettings", "MapPlan", "MapRead", "MapSnapshot", "plan", "run", "resume", "Settings", "Plan", "RECORDS",
           "parse_region", "level_counts", "broken_cells", "BROKEN_ABOVE_S", "LEVEL_NAMES", "CSV_HEADER"]

LEVEL_SPACING_S = 10e-9
#: below this a cell counts as HRS (half a level: the paper's lowest state is 10 nS)
HRS_BELOW_S = 5e-9
#: the bins of ``level_counts``, in order
LEVEL_NAMES = ("HRS",) + tuple(f"{10 * k} nS" for k in range(1, 9)) + ("above 85 nS",)
#: above this a cell reads as broken down: two decades over the device's highest state (about 100 nS), and
#: the twin's breakdown path (10 kohm) reads 100 uS; a real chip's broken cells read in the uS..mS range
BROKEN_ABOVE_S = 1e-6
#: the columns of ``rramlab map --csv``, one row per MapRead (``MapRead.csv_row``)
CSV_HEADER = ("wordline", "bitline", "read_v", "current_a", "conductance_s")


@dataclass(frozen=True)
class MapSettings:
    """Map settings. Volts."""

    read_v: float = setting(1.0, "read voltage of every cell", "V", soa="read", flag="read_v")

    def validate(self, limits: SafeOperatingArea | None = None) -> None:
        """Check every setting against its declaration and ``limits`` (SafetyError or RequestError)."""
        check_settings(self, limits)


@dataclass(frozen=True)
class MapRead:
    """One cell's read: current (A) at ``read_v`` (V) and conductance current / read_v (S)."""

    wordline: int
    bitline: int
    read_v: float
    current_a: float
    conductance_s: float

    def csv_row(self) -> tuple:
        """This read as a CSV row of CSV_HEADER's columns (SI units)."""
        return (self.wordline, self.bitline, f"{self.read_v:g}", f"{self.current_a:.6e}",
                f"{self.conductance_s:.6e}")


@dataclass(frozen=True)
class MapSnapshot:
    """The whole region at the end of the map: ``conductance_s[i][j]`` is the cell
    (``wordlines[i]``, ``bitlines[j]``), siemens, read at ``read_v`` volts."""

    wordlines: tuple[int, ...]
    bitlines: tuple[int, ...]
    read_v: float
    conductance_s: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class MapPlan:
    """A validated map (from ``plan``): settings and the region's wordlines and bitlines."""

    settings: MapSettings
    wordlines: tuple[int, ...]
    bitlines: tuple[int, ...]
    #: conductances (S) already read, in ``cells`` order (``resume``): ``run`` reads the cells after
    #: them and the snapshot holds both
    earlier_s: tuple[float, ...] = ()

    @property
    def cells(self) -> list[tuple[int, int]]:
        """Every (wordline, bitline) of the region, wordline after wordline, in the order ``run`` reads them."""
        return [(w, b) for w in self.wordlines for b in self.bitlines]


def parse_region(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``"W0:W1,B0:B1"`` (half-open, as Python slices: ``0:4,0:4`` is wordlines 0..3, bitlines 0..3)
    to ((W0, W1), (B0, B1)); RequestError naming the form otherwise."""
    try:
        wl, bl = text.split(",")
        (w0, w1), (b0, b1) = ((int(x) for x in part.split(":")) for part in (wl, bl))
    except ValueError:
        raise RequestError(f"--region takes W0:W1,B0:B1 (half-open line ranges from 0, e.g. 0:4,0:4), "
                           f"got {text!r}") from None
    return (w0, w1), (b0, b1)


def plan(settings: MapSettings, checker: RequestChecker | None = None,
         region: tuple[tuple[int, int], tuple[int, int]] | None = None) -> MapPlan:
    """Validate the read voltage against ``checker``'s safe operating area and the region against
    its geometry, touching no instrument. ``region``: ((W0, W1), (B0, B1)) half-open, None for the
    whole array. Raises SafetyError, GeometryError or RequestError naming the value and the fix."""
    checker = checker or RequestChecker()
    settings.validate(checker.limits)
    checker.check_read_voltage(settings.read_v)
    W, B = checker.geometry.shape
    (w0, w1), (b0, b1) = region if region is not None else ((0, W), (0, B))
    for what, lo, hi, n in (("wordlines", w0, w1, W), ("bitlines", b0, b1, B)):
        if not 0 <= lo < hi <= n:
            raise RequestError(f"region {what} {lo}:{hi} is not within 0:{n} of this {W} x {B} array: "
                               f"give start < end, both from 0 to {n}")
    wordlines, bitlines = tuple(range(w0, w1)), tuple(range(b0, b1))
    # every cell, not the corners: a line inside the region may be unwired on a bench (its pin map)
    checker.check_cells([(w, b) for w in wordlines for b in bitlines])
    return MapPlan(settings, wordlines, bitlines)


def run(instrument: CrossbarInstrument, map_plan: MapPlan,
        should_stop: Callable[[], bool] | None = None) -> Iterator[MapRead | MapSnapshot]:
    """Read the region wordline by wordline; yields a MapRead per cell, then one MapSnapshot
    (only when every wordline was read). ``should_stop`` is polled between wordlines."""
    v = map_plan.settings.read_v
    rows = []
    earlier = list(map_plan.earlier_s)
    for w in map_plan.wordlines:
        row, earlier = earlier[:len(map_plan.bitlines)], earlier[len(map_plan.bitlines):]
        if len(row) == len(map_plan.bitlines):  # resumed: this wordline is in the store already
            rows.append(tuple(row))
            continue
        if should_stop is not None and should_stop():
            return
        cells = [(w, b) for b in map_plan.bitlines][len(row):]
        currents = instrument.read(cells, v)
        for (_, b), i in zip(cells, currents):
            g = float(i) / v
            row.append(g)
            yield MapRead(w, b, v, float(i), g)
        rows.append(tuple(row))
    yield MapSnapshot(map_plan.wordlines, map_plan.bitlines, v, tuple(rows))


def resume(map_plan: MapPlan, records) -> MapPlan:
    """The plan that continues after ``records`` (the stored MapReads, in order): the cells after
    the last one read (a wordline cut short by a crash is finished cell by cell), the snapshot at
    the end made of the stored and the new reads. RequestError if the records are not this plan's."""
    reads = [r for r in records if isinstance(r, MapRead)]
    cells = map_plan.cells
    if len(reads) > len(cells) or [(r.wordline, r.bitline) for r in reads] != cells[:len(reads)]:
        raise RequestError(f"the run's {len(reads)} map reads are not the first cells of its region: it cannot be "
                           "resumed")
    if any(isinstance(r, MapSnapshot) for r in records):
        raise RequestError("the run already holds its snapshot: the map is complete")
    return replace(map_plan, earlier_s=tuple(float(r.conductance_s) for r in reads))


#: the same shape in every protocol module (see ``rramlab.protocols``)
Settings = MapSettings
Plan = MapPlan
#: the record classes ``run`` yields
RECORDS = (MapRead, MapSnapshot)


def level_counts(conductances_s: Sequence[float]) -> dict[str, int]:
    """How many conductances (S) fall in each of LEVEL_NAMES: HRS below 5 nS, level k within
    +-5 nS of k x 10 nS (k = 1..8), and above 85 nS."""
    counts = dict.fromkeys(LEVEL_NAMES, 0)
    for g in conductances_s:
        if not math.isfinite(g) or g < HRS_BELOW_S:
            counts["HRS"] += 1
            continue
        k = int(math.floor(g / LEVEL_SPACING_S + 0.5))
        counts[LEVEL_NAMES[k] if 1 <= k <= 8 else "above 85 nS"] += 1
    return counts


def broken_cells(wordlines: Sequence[int], bitlines: Sequence[int],
                 conductance_s: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """The (wordline, bitline) of every cell of a map whose conductance (S) is above BROKEN_ABOVE_S,
    in wordline-then-bitline order: cells a hard breakdown has left with a permanent path."""
    return [(w, b) for i, w in enumerate(wordlines) for j, b in enumerate(bitlines)
            if math.isfinite(conductance_s[i][j]) and conductance_s[i][j] > BROKEN_ABOVE_S]
