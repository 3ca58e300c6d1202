"""The bench clock: simulated time a real 4156C + E5250A bench would spend on a run.

The virtual instruments advance it as they act: a pulse by its hold time plus its period, a current
reading by its integration time, a relay change by the relay operate time, the wait after it by the
settling time, every GPIB transaction by a bus overhead. Each advance carries a category, so a run
can be explained as "pulses x period + reads x integration + switching + bus".

All times are seconds. Nothing here sleeps: the clock only counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: categories, in the order a summary lists them
CATEGORIES = ("pulse", "measurement", "switching", "bus")


@dataclass(frozen=True)
class BenchTiming:
    """Timing assumptions of the bench (s). Sources: the 4156C manual for pulse timing and
    integration (design doc 1.1); relay and bus figures are assumptions, marked [G] in the doc.

    power_line_hz: mains frequency; medium integration is 1 power line cycle (PLC) on the ranges
        of 10 nA and above, 5 PLC on 1 nA, 10 PLC on 100 pA, 50 PLC on 10 pA.
    short_integration_s: the short mode's time when no SIT was sent (manual: initial 640 us).
    long_integration_plc: the long mode's PLC setting when no SIT was sent.
    relay_operate_s: one switching command that moves relays (E5252A reed relays, a few ms) [G].
    relay_settle_s: the wait after ``*OPC?`` the drivers add for contact settling when crosspoints
        have closed (20 ms default; none after a break alone).
    transaction_s: GPIB overhead of one write or one query (about 1 ms at IEEE-488 speeds) [G].
    """

    power_line_hz: float = 50.0
    short_integration_s: float = 640e-6
    long_integration_plc: float = 16.0
    relay_operate_s: float = 5e-3
    relay_settle_s: float = 20e-3
    transaction_s: float = 1e-3

    @property
    def plc_s(self) -> float:
        return 1.0 / self.power_line_hz


@dataclass
class BenchClock:
    """Simulated seconds since the bench was switched on, split by category, with event counts."""

    timing: BenchTiming = field(default_factory=BenchTiming)
    now: float = 0.0
    seconds: dict = field(default_factory=lambda: {c: 0.0 for c in CATEGORIES})
    counts: dict = field(default_factory=lambda: {c: 0 for c in CATEGORIES})

    def advance(self, seconds: float, category: str, count: int = 1) -> None:
        """Add ``seconds`` of ``category`` ("pulse", "measurement", "switching", "bus")."""
        if category not in self.seconds:
            raise ValueError(f"unknown bench clock category {category!r}: use one of {CATEGORIES}")
        if not seconds >= 0:
            raise ValueError(f"the bench clock cannot go back ({seconds!r} s)")
        self.now += seconds
        self.seconds[category] += seconds
        self.counts[category] += count

    def reset(self) -> None:
        self.now = 0.0
        for c in CATEGORIES:
            self.seconds[c] = 0.0
            self.counts[c] = 0

    def summary(self) -> str:
        """One line a lab user can read: the total and what it is made of."""
        names = {"pulse": "pulses", "measurement": "readings", "switching": "relay changes/waits",
                 "bus": "GPIB transactions"}
        parts = ", ".join(f"{self.counts[c]} {names[c]} {format_duration(self.seconds[c])}" for c in CATEGORIES
                          if self.counts[c])
        return f"estimated bench time {format_duration(self.now)}" + (f" ({parts})" if parts else "")


def format_duration(seconds: float) -> str:
    """1.5 -> '1.50 s', 95 -> '1 min 35 s', 4000 -> '1 h 6 min'."""
    if seconds < 60:
        return f"{seconds:.3g} s" if seconds < 1 else f"{seconds:.2f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
