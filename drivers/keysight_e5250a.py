"""Keysight (Agilent) E5250A low-leakage switch mainframe with E5252A 10 x 12 matrix cards, on pyvisa.

One class, :class:`KeysightE5250A`. Crosspoints are named by (input, output): input 1-10 is the
matrix input port (cabled to an SMU, a VSU or ground); output is the *global* output number
1..12*cards, the same in both channel configuration modes, so a pin map never changes when the mode
does. The driver turns it into the instrument's channel list (design doc 2.1):

* auto configuration (``ACON``): all cards are one card, number 0, outputs 01..48: ``0IIOO``;
* normal configuration (``NCON``): card 1..4, outputs 01..12 per card; global output k lives on card
  1 + (k-1)//12 as output (k-1)%12 + 1: ``cIIOO``.

Safety: under the FREE connection rule two inputs on one output can damage the instruments
(E5250A manual, design doc 2.2). ``close`` refuses, before sending, any list that would do that,
counting what is already closed. Outputs that change input must be opened (and the relays given
time to open) before the new crosspoint is closed; ``route`` does exactly that.
"""

from __future__ import annotations

import re
import time
from typing import Iterable

from .interface import InstrumentError, RequestError
from .visa_io import InstrumentReportedError, Transport, drain_error_queue, identify_instrument

MODES = {"auto": "ACON", "normal": "NCON"}
RULES = ("FREE", "SROU")
SEQUENCES = ("NSEQ", "BBM", "MBBR")
INPUTS = tuple(range(1, 11))   # E5252A input ports
OUTPUTS_PER_CARD = 12
_CHANNEL = re.compile(r"(\d)(\d{2})(\d{2})")

Crosspoint = tuple[int, int]  # (input, global output)


class KeysightE5250A:
    """The E5250A switching matrix.

    transport: a drivers.visa_io.Transport (or a pyvisa resource, which is wrapped).
    config: "auto" (ACON: one logical card 0, outputs 1..12*cards) or "normal" (NCON: cards 1..4).
    cards: number of E5252A cards installed (1-4).
    settle_time: extra wait (s) after ``*OPC?`` reports the relays done, for contact settling
        (E5252A figures unconfirmed; public code uses 20 ms). Tests use 0.
    timeout: VISA timeout (s).
    """

    MODEL = "E5250A"

    def __init__(self, transport, config: str = "auto", cards: int = 4, settle_time: float = 0.02,
                 timeout: float = 10.0):
        self.io = transport if isinstance(transport, Transport) else Transport(transport, "E5250A")
        if config not in MODES:
            raise RequestError(f"matrix config {config!r} must be 'auto' (ACON) or 'normal' (NCON)")
        if isinstance(cards, bool) or not isinstance(cards, int) or not 1 <= cards <= 4:
            raise RequestError(f"matrix cards {cards!r} must be 1 to 4 (E5252A cards installed)")
        if not (0 <= settle_time <= 10):
            raise RequestError(f"relay settle time {settle_time!r} s must be between 0 and 10 s")
        self.config, self.cards, self.settle_time = config, cards, float(settle_time)
        self.timeout = float(timeout)
        self.io.timeout = self.timeout
        #: what this driver has closed, output -> input; None when not known (before open_all/reset)
        self._closed: dict[int, int] | None = None

    @property
    def outputs(self) -> int:
        return OUTPUTS_PER_CARD * self.cards

    @property
    def card_argument(self) -> str:
        """The card argument of card-wide commands: 0 in ACON, ALL in NCON."""
        return "0" if self.config == "auto" else "ALL"

    # ----- channel lists -----
    def check_crosspoint(self, inp: int, out: int) -> Crosspoint:
        for value, what, allowed in ((inp, "input", f"1 to {len(INPUTS)}"), (out, "output", f"1 to {self.outputs}")):
            if isinstance(value, bool) or not isinstance(value, int):
                raise RequestError(f"matrix {what} {value!r} must be a whole number ({allowed})")
        if inp not in INPUTS:
            raise RequestError(f"matrix input {inp} does not exist: the E5252A inputs are 1 to 10")
        if not 1 <= out <= self.outputs:
            raise RequestError(f"matrix output {out} does not exist: {self.cards} card(s) give outputs 1 to {self.outputs}")
        return inp, out

    def channel(self, inp: int, out: int) -> str:
        """Five-digit channel ``cIIOO`` of one crosspoint (card, input, output on that card)."""
        inp, out = self.check_crosspoint(inp, out)
        if self.config == "auto":
            return f"0{inp:02d}{out:02d}"
        card, local = 1 + (out - 1) // OUTPUTS_PER_CARD, (out - 1) % OUTPUTS_PER_CARD + 1
        return f"{card}{inp:02d}{local:02d}"

    def channel_list(self, crosspoints: Iterable[Crosspoint]) -> str:
        """``(@...)`` for the crosspoints, sorted, runs of consecutive outputs of one input on one card
        written as ranges ``cIIOO:cIIOO`` (one message for a whole row of grounds)."""
        items = sorted({self.check_crosspoint(i, o) for i, o in crosspoints})
        if not items:
            raise RequestError("an empty channel list was given to the matrix")
        parts: list[str] = []
        run_start = prev = None
        for inp, out in items:
            if prev is not None and inp == prev[0] and out == prev[1] + 1 and self._same_card(out, prev[1]):
                prev = (inp, out)
                continue
            if run_start is not None:
                parts.append(self._run(run_start, prev))
            run_start = prev = (inp, out)
        parts.append(self._run(run_start, prev))
        return "(@" + ",".join(parts) + ")"

    def _same_card(self, a: int, b: int) -> bool:
        return self.config == "auto" or (a - 1) // OUTPUTS_PER_CARD == (b - 1) // OUTPUTS_PER_CARD

    def _run(self, start: Crosspoint, end: Crosspoint) -> str:
        if start == end:
            return self.channel(*start)
        return f"{self.channel(*start)}:{self.channel(*end)}"

    def parse_channel_list(self, reply: str) -> set[Crosspoint]:
        """Closed crosspoints from a ``:ROUT:CLOS:CARD?`` reply; tolerant of ``(@...)``, ``@...`` or
        a bare list (the exact format is unconfirmed), ranges included."""
        found: set[Crosspoint] = set()
        for part in re.findall(r"\d{5}(?::\d{5})?", reply):
            a, _, b = part.partition(":")
            first, last = self._from_channel(a), self._from_channel(b or a)
            if first[0] != last[0]:
                raise InstrumentError(f"cannot read the channel range {part!r} across inputs in {reply!r}")
            for out in range(first[1], last[1] + 1):
                found.add((first[0], out))
        return found

    def _from_channel(self, text: str) -> Crosspoint:
        m = _CHANNEL.fullmatch(text)
        if m is None:
            raise InstrumentError(f"matrix channel {text!r} is not cIIOO")
        card, inp, out = int(m.group(1)), int(m.group(2)), int(m.group(3))
        return (inp, out) if card == 0 else (inp, (card - 1) * OUTPUTS_PER_CARD + out)

    # ----- identity, configuration, errors -----
    def identify(self) -> str:
        """``*IDN?``; raises InstrumentError if the answer is not an E5250A."""
        return identify_instrument(self.io, self.MODEL, "matrix")

    def reset(self, rule: str = "FREE") -> None:
        """``*RST``, channel configuration mode, connection rule (FREE: one input may feed many
        outputs, which grounding every unselected line needs), break-before-make sequence (only
        effective under SROU), every crosspoint open, error queue drained. Defaults after *RST are
        not documented, so everything is set explicitly."""
        self._closed = None
        self.io.write("*RST")
        self.io.write(f":ROUT:FUNC {MODES[self.config]}")
        self.set_connection_rule(rule)
        self.set_connection_sequence("BBM")
        self.open_all()
        self.wait()
        self.drain_errors()

    def set_connection_rule(self, rule: str) -> None:
        if rule not in RULES:
            raise RequestError(f"connection rule {rule!r} must be one of {RULES}")
        # Changing FREE -> SROU keeps existing connections (manual): callers open_all first.
        self.io.write(f":ROUT:CONN:RULE {self.card_argument},{rule}")

    def set_connection_sequence(self, sequence: str) -> None:
        if sequence not in SEQUENCES:
            raise RequestError(f"connection sequence {sequence!r} must be one of {SEQUENCES}")
        self.io.write(f":ROUT:CONN:SEQ {self.card_argument},{sequence}")

    def drain_errors(self, limit: int = 20) -> list[tuple[int, str]]:
        return drain_error_queue(self.io, limit)

    def check_errors(self, after: str = "") -> None:
        errors = self.drain_errors()
        if errors:
            self._closed = None  # a refused command leaves the relay state unknown
            (code, msg), more = errors[0], errors[1:]
            raise InstrumentReportedError("E5250A", code, msg, after=after, more=more)

    # ----- switching -----
    @property
    def closed_crosspoints(self) -> dict[int, int] | None:
        """What this driver believes is closed (output -> input), None if unknown."""
        return None if self._closed is None else dict(self._closed)

    def close(self, crosspoints: Iterable[Crosspoint]) -> None:
        """Close crosspoints (``:ROUT:CLOS (@list)``). Refused before sending if two inputs would share
        an output, within the list or with what is already closed, or if the state is unknown."""
        items = sorted({self.check_crosspoint(i, o) for i, o in crosspoints})
        if not items:
            return
        if self._closed is None:
            raise RequestError("the matrix state is unknown: open every crosspoint (open_all) before closing any")
        wanted: dict[int, int] = {}
        for inp, out in items:
            other = wanted.get(out, self._closed.get(out))
            if other is not None and other != inp:
                raise RequestError(
                    f"refusing to connect matrix input {inp} to output {out}: input {other} is already on it, "
                    f"and two inputs on one output can damage the instruments. Open {other}->{out} first")
            wanted[out] = inp
        self.io.write(f":ROUT:CLOS {self.channel_list(items)}")
        self._closed.update(wanted)

    def open(self, crosspoints: Iterable[Crosspoint]) -> None:
        """Open crosspoints (``:ROUT:OPEN (@list)``)."""
        items = sorted({self.check_crosspoint(i, o) for i, o in crosspoints})
        if not items:
            return
        self.io.write(f":ROUT:OPEN {self.channel_list(items)}")
        if self._closed is not None:
            for inp, out in items:
                if self._closed.get(out) == inp:
                    del self._closed[out]

    def open_all(self) -> None:
        """Open every crosspoint of every card (``:ROUT:OPEN:CARD 0|ALL``)."""
        self.io.write(f":ROUT:OPEN:CARD {self.card_argument}")
        self._closed = {}

    def wait(self) -> None:
        """Block until the relays have finished (``*OPC?``), then the settle time."""
        reply = self.io.query("*OPC?")
        if reply.strip() not in ("1", "+1"):
            raise InstrumentError(f"E5250A answered *OPC? with {reply!r}, expected 1")
        if self.settle_time > 0:
            time.sleep(self.settle_time)

    def query_closed(self) -> set[Crosspoint]:
        """Ask the instrument which crosspoints are closed (``:ROUT:CLOS:CARD? card`` per card)."""
        cards = ["0"] if self.config == "auto" else [str(c) for c in range(1, self.cards + 1)]
        found: set[Crosspoint] = set()
        for card in cards:
            found |= self.parse_channel_list(self.io.query(f":ROUT:CLOS:CARD? {card}"))
        return found

    def route(self, wanted: dict[int, int]) -> bool:
        """Bring the matrix to exactly ``wanted`` (output -> input), changing only what differs.

        Break before make: crosspoints to remove are opened and the relays waited for before any
        new crosspoint closes, so no output ever sees two inputs. Returns True if anything changed.
        """
        for out, inp in wanted.items():
            self.check_crosspoint(inp, out)
        if self._closed is None:
            self.open_all()
            self.wait()
        current = self._closed
        to_open = [(inp, out) for out, inp in current.items() if wanted.get(out) != inp]
        to_close = [(inp, out) for out, inp in wanted.items() if current.get(out) != inp]
        if not to_open and not to_close:
            return False
        if to_open:
            self.open(to_open)
            # Only wait here if an output moves to another input; a pure disconnect can ride on the final wait.
            if any(out in wanted for _, out in to_open):
                self.wait()
        if to_close:
            self.close(to_close)
        self.wait()
        return True
