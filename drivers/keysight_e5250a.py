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

Card-wide commands name the cards ``ALL`` in both modes (``:ROUT:OPEN:CARD ALL`` is confirmed by
four public sources; ``0`` in auto mode by one). Bias mode is switched off at every reset: were it
on, the bias input would connect itself to every free output.
"""

from __future__ import annotations

import re
import time
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from .interface import InstrumentError, RequestError
from .visa_io import InstrumentReportedError, Transport, drain_error_queue, identify_instrument, validated

MODES = {"auto": "ACON", "normal": "NCON"}
RULES = ("FREE", "SROU")
SEQUENCES = ("NSEQ", "BBM", "MBBR")
INPUTS = tuple(range(1, 11))   # E5252A input ports
OUTPUTS_PER_CARD = 12
MAX_CARDS = 4
#: card argument of card-wide commands (OPEN:CARD, CONN:RULE, CONN:SEQ, BIAS:STAT), both modes
ALL_CARDS = "ALL"
#: longest command sent at once. The E5250A's input buffer size is not in the design notes, so long
#: channel lists are split well under any plausible buffer ([G]: 120 characters).
MAX_COMMAND_LENGTH = 120
#: a channel-list item: a channel number, or a range ``first:last``; leading zeros may be dropped
_ITEM = re.compile(r"(\d{1,5})(?::(\d{1,5}))?")

Crosspoint = tuple[int, int]  # (input, global output)


def card_and_output(out: int) -> tuple[int, int]:
    """Global output number (1..48) -> (card 1..4, output 1..12 on that card): the one place the
    normal-mode arithmetic lives."""
    return 1 + (out - 1) // OUTPUTS_PER_CARD, (out - 1) % OUTPUTS_PER_CARD + 1


def global_output(card: int, local: int) -> int:
    """(card, output on the card) -> global output; card 0 (auto mode) has outputs 1..48 already."""
    return local if card == 0 else (card - 1) * OUTPUTS_PER_CARD + local


def outputs_of(cards: int) -> int:
    """How many outputs ``cards`` E5252A cards give (12 each)."""
    return OUTPUTS_PER_CARD * cards


class MatrixSettings(BaseModel):
    """How the matrix is set up: configuration mode, cards installed, relay settle time (s),
    VISA timeout (s). The bench file's [matrix] table extends this schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: Literal[tuple(MODES)] = "auto"  # type: ignore[valid-type]
    cards: StrictInt = Field(4, ge=1, le=MAX_CARDS, description="E5252A cards installed")
    settle_time: float = Field(0.02, ge=0, le=10, allow_inf_nan=False,
                               description="s to wait after *OPC? for contact settling")
    timeout: float = Field(10.0, gt=0, le=3600, allow_inf_nan=False, description="VISA timeout, s")


class KeysightE5250A:
    """The E5250A switching matrix.

    transport: a drivers.visa_io.Transport (or a pyvisa resource, which is wrapped).
    config: "auto" (ACON: one logical card 0, outputs 1..12*cards) or "normal" (NCON: cards 1..4).
    cards: number of E5252A cards installed (1-4).
    settle_time: extra wait (s) after ``*OPC?`` reports the relays done, for contact settling
        (E5252A figures unconfirmed; public code uses 20 ms). Tests use 0.
    timeout: VISA timeout (s).
    inputs, outputs: the inputs and outputs a bench has cabled (its sources and ground; the pin
        map's outputs); None (the default) allows every one of the matrix. Fixed for the driver's
        life: ``close`` (and ``route``) refuse a crosspoint outside them, sending nothing.

    Every switching method (``close``, ``open``, ``route``, ``open_all``) checks before it sends:
    only crosspoints of this matrix (and of the bench's wiring), never two inputs on one output.
    ``io`` is the raw transport:
    ``io.write(':ROUT:CLOS (@00105,00205)')`` sends that text as it is, with none of these checks,
    and can put two inputs on one output. rramlab's own code never routes through it (a test
    greps for that); a script that writes to ``io`` is on its own.
    """

    MODEL = "E5250A"

    def __init__(self, transport, config: str = "auto", cards: int = 4, settle_time: float = 0.02,
                 timeout: float = 10.0, inputs: Iterable[int] | None = None, outputs: Iterable[int] | None = None):
        self.io = transport if isinstance(transport, Transport) else Transport(transport, "E5250A")
        # The bench file's schema, so the rules on mode, cards and settle time live in one place.
        settings = validated(MatrixSettings, "E5250A settings", config=config, cards=cards,
                             settle_time=settle_time, timeout=timeout)
        self.config, self.cards, self.settle_time = settings.config, settings.cards, settings.settle_time
        self.timeout = settings.timeout
        self.io.timeout = self.timeout
        #: what this driver has closed, output -> input; None when not known (before open_all/reset)
        self._closed: dict[int, int] | None = None
        self._inputs = None if inputs is None else frozenset(self.check_crosspoint(i, 1)[0] for i in inputs)
        self._outputs = None if outputs is None else frozenset(self.check_crosspoint(1, o)[1] for o in outputs)

    @property
    def wired_inputs(self) -> frozenset[int] | None:
        """The inputs ``close`` may use (read-only); None: every input."""
        return self._inputs

    @property
    def wired_outputs(self) -> frozenset[int] | None:
        """The outputs ``close`` may use (read-only); None: every output."""
        return self._outputs

    @property
    def outputs(self) -> int:
        return outputs_of(self.cards)

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
        card, local = card_and_output(out)
        return f"{card}{inp:02d}{local:02d}"

    def channel_list(self, crosspoints: Iterable[Crosspoint]) -> str:
        """``(@...)`` for the crosspoints, sorted, runs of consecutive outputs of one input on one card
        written as ranges ``cIIOO:cIIOO`` (one message for a whole row of grounds)."""
        return "(@" + ",".join(self._list_items(crosspoints)) + ")"

    def channel_lists(self, crosspoints: Iterable[Crosspoint], command: str) -> list[str]:
        """``command (@...)`` messages covering the crosspoints, each at most MAX_COMMAND_LENGTH
        characters (a long list is split between items)."""
        messages, items = [], []
        for item in self._list_items(crosspoints):
            candidate = f"{command} (@{','.join(items + [item])})"
            if items and len(candidate) > MAX_COMMAND_LENGTH:
                messages.append(f"{command} (@{','.join(items)})")
                items = []
            items.append(item)
        messages.append(f"{command} (@{','.join(items)})")
        return messages

    def _list_items(self, crosspoints: Iterable[Crosspoint]) -> list[str]:
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
        return parts

    def _same_card(self, a: int, b: int) -> bool:
        return self.config == "auto" or card_and_output(a)[0] == card_and_output(b)[0]

    def _run(self, start: Crosspoint, end: Crosspoint) -> str:
        if start == end:
            return self.channel(*start)
        return f"{self.channel(*start)}:{self.channel(*end)}"

    def parse_channel_list(self, reply: str) -> set[Crosspoint]:
        """Closed crosspoints from a ``:ROUT:CLOS:CARD?`` reply, checked.

        Accepts every form of channel list the manual allows: ``(@...)``, ``@...`` or a bare list,
        empty, items with or without leading zeros (``(@105,1012)`` is card 0, input 1 -> output 5
        and input 10 -> output 12), and ranges ``first:last``, which cover every input from the
        first to the last and every output from the first to the last. Anything else (an error
        text, a stray character, a channel the matrix does not have) raises InstrumentError, so a
        reply that is not a channel list can never read as "nothing closed".
        """
        return set(self._expand(reply))

    def _expand(self, reply: str) -> list[Crosspoint]:
        """The crosspoints of a channel list in its own order (ranges input by input, outputs rising)."""
        text = reply.strip()
        body = text[1:-1].strip() if text.startswith("(") and text.endswith(")") else text
        if body.startswith("@"):
            body = body[1:].strip()
        found: list[Crosspoint] = []
        if not body:
            return found
        for part in body.split(","):
            m = _ITEM.fullmatch(part.strip())
            if m is None:
                raise InstrumentError(f"the matrix answered {reply!r}, which is not a channel list "
                                      f"(item {part.strip()!r}): cannot tell which crosspoints are closed")
            (i1, o1), (i2, o2) = self._from_channel(m.group(1), reply), self._from_channel(m.group(2) or m.group(1), reply)
            for inp in range(min(i1, i2), max(i1, i2) + 1):
                for out in range(min(o1, o2), max(o1, o2) + 1):
                    found.append((inp, out))
        return found

    def _from_channel(self, text: str, reply: str) -> Crosspoint:
        n = int(text)
        card, inp, local = n // 10000, (n // 100) % 100, n % 100
        ok = card <= MAX_CARDS and inp in INPUTS and 1 <= local <= (self.outputs if card == 0 else OUTPUTS_PER_CARD)
        out = global_output(card, local)
        if not ok or not 1 <= out <= self.outputs:
            raise InstrumentError(f"the matrix answered {reply!r}: channel {text} (card {card}, input {inp}, "
                                  f"output {local}) is not a crosspoint of this matrix")
        return inp, out

    # ----- identity, configuration, errors -----
    def identify(self) -> str:
        """``*IDN?``; raises InstrumentError if the answer is not an E5250A."""
        return identify_instrument(self.io, self.MODEL, "matrix")

    def reset(self, rule: str = "FREE") -> list[tuple[int, str]]:
        """Stale errors drained (returned), then ``*RST``, channel configuration mode, connection
        rule (FREE: one input may feed many outputs, which grounding every unselected line needs),
        break-before-make sequence (only effective under SROU), bias mode off, every crosspoint
        open. Defaults after *RST are not documented, so everything is set explicitly, and each
        configuration command is followed by an error query: a rejected one raises
        InstrumentReportedError naming it."""
        self._closed = None
        stale = self.drain_errors()
        self.io.write("*RST")
        self._configure(f":ROUT:FUNC {MODES[self.config]}")
        self.set_connection_rule(rule)
        self.set_connection_sequence("BBM")
        self.bias_off()
        self.open_all()
        self.wait()
        self.check_errors(":ROUT:OPEN:CARD ALL")
        return stale

    def _configure(self, command: str) -> None:
        self.io.write(command)
        self.check_errors(after=command)

    def set_connection_rule(self, rule: str) -> None:
        if rule not in RULES:
            raise RequestError(f"connection rule {rule!r} must be one of {RULES}")
        # Changing FREE -> SROU keeps existing connections (manual): callers open_all first.
        self._configure(f":ROUT:CONN:RULE {ALL_CARDS},{rule}")

    def set_connection_sequence(self, sequence: str) -> None:
        if sequence not in SEQUENCES:
            raise RequestError(f"connection sequence {sequence!r} must be one of {SEQUENCES}")
        self._configure(f":ROUT:CONN:SEQ {ALL_CARDS},{sequence}")

    def bias_off(self) -> None:
        """Bias mode off on every card (``:ROUT:BIAS:STAT ALL,OFF``), checked."""
        self._configure(f":ROUT:BIAS:STAT {ALL_CARDS},OFF")

    def drain_errors(self, limit: int = 20) -> list[tuple[int, str]]:
        return drain_error_queue(self.io, limit)

    def forget_state(self) -> None:
        """Forget what is closed (after a failure the relays' state is not known): the next
        ``route`` opens every crosspoint first, and ``close`` is refused until then."""
        self._closed = None

    def check_errors(self, after: str = "") -> None:
        errors = self.drain_errors()
        if errors:
            self.forget_state()  # a refused command leaves the relay state unknown
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
        for inp, out in items:
            if self._inputs is not None and inp not in self._inputs:
                raise RequestError(f"refusing to close matrix input {inp} -> output {out}: input {inp} is not cabled on "
                                   f"this bench (inputs {sorted(self._inputs)}); nothing was sent")
            if self._outputs is not None and out not in self._outputs:
                raise RequestError(f"refusing to close matrix input {inp} -> output {out}: output {out} is not in the "
                                   f"bench's pin map; nothing was sent")
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
        for message in self.channel_lists(items, ":ROUT:CLOS"):
            self.io.write(message)
        self._closed.update(wanted)
        self._made = True

    def open(self, crosspoints: Iterable[Crosspoint]) -> None:
        """Open crosspoints (``:ROUT:OPEN (@list)``)."""
        items = sorted({self.check_crosspoint(i, o) for i, o in crosspoints})
        if not items:
            return
        for message in self.channel_lists(items, ":ROUT:OPEN"):
            self.io.write(message)
        if self._closed is not None:
            for inp, out in items:
                if self._closed.get(out) == inp:
                    del self._closed[out]

    def open_all(self) -> None:
        """Open every crosspoint of every card (``:ROUT:OPEN:CARD ALL``)."""
        self.io.write(f":ROUT:OPEN:CARD {ALL_CARDS}")
        self._closed = {}

    _made = False  # a crosspoint was closed since the last wait

    def wait(self) -> None:
        """Block until the relays have finished (``*OPC?``), then, if a crosspoint was closed since
        the last wait, the settle time. Settling is for contacts that have just made (bounce); the
        wait between the break and the make of a route needs only the relays open, which ``*OPC?``
        confirms, so it skips the settle time (the virtual matrix charges its clock the same way)."""
        reply = self.io.query("*OPC?")
        if reply.strip() not in ("1", "+1"):
            raise InstrumentError(f"E5250A answered *OPC? with {reply!r}, expected 1")
        made, self._made = self._made, False
        if made and self.settle_time > 0:
            time.sleep(self.settle_time)

    def query_closed(self) -> set[Crosspoint]:
        """Ask the instrument which crosspoints are closed (``:ROUT:CLOS:CARD? card`` per card)."""
        cards = ["0"] if self.config == "auto" else [str(c) for c in range(1, self.cards + 1)]
        found: set[Crosspoint] = set()
        for card in cards:
            found |= self.parse_channel_list(self.io.query(f":ROUT:CLOS:CARD? {card}"))
        return found

    def closed_states(self, crosspoints: Iterable[Crosspoint]) -> dict[Crosspoint, bool]:
        """Ask ``:ROUT:CLOS? (@list)`` whether each crosspoint is closed. The answer is checkable:
        one 0 or 1 per channel of the list, in its order, so a reply of the wrong length or with
        anything else raises InstrumentError instead of passing for "open"."""
        states: dict[Crosspoint, bool] = {}
        for message in self.channel_lists(crosspoints, ":ROUT:CLOS?"):
            asked = self._expand(message[len(":ROUT:CLOS? "):])
            reply = self.io.query(message)
            values = [v.strip().lstrip("+") for v in reply.split(",")] if reply.strip() else []
            if len(values) != len(asked) or any(v not in ("0", "1") for v in values):
                shown = reply if len(reply) <= 60 else reply[:57] + "..."
                raise InstrumentError(f"the matrix answered {message!r} with {shown!r}: expected {len(asked)} "
                                      f"states, each 0 or 1, one per crosspoint asked")
            states.update({cp: v == "1" for cp, v in zip(asked, values)})
        return states

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
