"""A virtual Keysight E5250A low-leakage switch mainframe with E5252A 10 x 12 matrix cards.

Follows the E5250A User's Guide as summarised in the design doc (``instrument-commands.md`` 2.1-2.4):

* channel configuration ``:ROUT:FUNC ACON|NCON``: in ACON the installed cards are one card 0 with
  outputs 1..12*cards; in NCON cards 1..4 have outputs 1..12 each;
* channel lists ``(@cIIOO, cIIOO:cIIOO, ...)``: card digit, two-digit input (1-10), two-digit output;
  a range ``a:b`` is every channel from inputs a..b and outputs a..b (a block; a single input or
  output is the common case); ``[:ROUTe]`` may be left out and every keyword may be short or long;
* connection rule per card ``:ROUT:CONN:RULE card,FREE|SROU`` and sequence ``...:SEQ card,NSEQ|BBM|MBBR``
  (card ``0`` or ``ALL`` in ACON, ``1``-``4`` or ``ALL`` in NCON);
* ``:ROUT:CLOS``, ``:ROUT:OPEN``, their ``?`` forms (1/0 per channel), ``:ROUT:OPEN:CARD card``,
  ``:ROUT:CLOS:CARD? card`` (the closed channels as a 5-digit channel list, ``(@)`` when none);
* bias mode: ``:ROUT:BIAS:PORT card,port``, ``:ROUT:BIAS[:STAT] card,ON|OFF``,
  ``:ROUT:BIAS:CHAN:ENAB|DIS[:LIST] (@...)`` and ``...:CARD card``: with bias on, every
  bias-enabled output that no other input holds is on the bias port.

Refused through the error queue, as the instrument does: a channel that does not exist (card not
installed or not of this mode, input outside 1-10, output outside the card), a card argument of
the wrong mode, and under the single-route rule (SROU) a list that puts two inputs on one output
or one input on two outputs. Under SROU a new route replaces the old route of its input and of its
output (the sequence says how; the end state is the same). Under FREE the instrument obeys even two
inputs on one output, which can damage the instruments: the virtual one obeys too and records the
output in ``hazards`` (the probe card then reports the shorted sources as in compliance).

Defaults after ``*RST`` are not documented (design doc 4, items 15-18); here: NCON, FREE, BBM, bias
off with port 10 and every output bias-enabled, everything open.
"""

from __future__ import annotations

import re

from .base import (DATA_OUT_OF_RANGE, ILLEGAL_PARAMETER, MISSING_PARAMETER, SETTINGS_CONFLICT, SYNTAX_ERROR,
                   UNDEFINED_HEADER, CommandError, VirtualInstrument)
from .clock import BenchClock

INPUTS = range(1, 11)
OUTPUTS_PER_CARD = 12

# SCPI keywords: (short form, long form)
_KEYWORDS = {
    "ROUT": "ROUTE", "CLOS": "CLOSE", "OPEN": "OPEN", "CARD": "CARD", "FUNC": "FUNCTION", "CONN": "CONNECTION",
    "RULE": "RULE", "SEQ": "SEQUENCE", "BIAS": "BIAS", "STAT": "STATE", "PORT": "PORT", "CHAN": "CHANNEL",
    "ENAB": "ENABLE", "DIS": "DISABLE", "LIST": "LIST", "SYST": "SYSTEM", "ERR": "ERROR", "NEXT": "NEXT",
    "CTYP": "CTYPE", "CCON": "CCONFIG",
}


def _keyword(token: str) -> str | None:
    t = token.upper()
    for short, long in _KEYWORDS.items():
        if t.startswith(short) and long.startswith(t):
            return short
    return None


class VirtualMatrix(VirtualInstrument):
    """The virtual E5250A with ``cards`` E5252A cards (1-4)."""

    MODEL = "E5250A"
    IDN = "HEWLETT-PACKARD,E5250A,0,RRAMLAB-TWIN"

    def __init__(self, cards: int = 4, clock: BenchClock | None = None):
        super().__init__(clock)
        if not 1 <= cards <= 4:
            raise ValueError("an E5250A holds 1 to 4 E5252A cards")
        self.cards = cards
        self.changed_since_wait = False
        self._reset()

    def _reset(self) -> None:
        self.config = "NCON"
        self.rule = {c: "FREE" for c in range(1, self.cards + 1)}
        self.sequence = {c: "BBM" for c in range(1, self.cards + 1)}
        self.bias_on = {c: False for c in range(1, self.cards + 1)}
        self.bias_port = {c: 10 for c in range(1, self.cards + 1)}
        self.bias_enabled = set(range(1, OUTPUTS_PER_CARD * self.cards + 1))
        #: closed crosspoints (input, global output)
        self.closed: set[tuple[int, int]] = set()
        #: outputs that had two or more inputs at once under FREE (instrument damage risk)
        self.hazards: list[int] = []

    # ----- what the probe card asks -----
    @property
    def outputs(self) -> int:
        return OUTPUTS_PER_CARD * self.cards

    def card_of(self, output: int) -> int:
        return 1 + (output - 1) // OUTPUTS_PER_CARD

    def inputs_on(self, output: int) -> set[int]:
        """The inputs connected to a global output now: closed crosspoints, else the bias port."""
        held = {i for i, o in self.closed if o == output}
        card = self.card_of(output)
        if not held and self.bias_on[card] and output in self.bias_enabled:
            return {self.bias_port[card]}
        return held

    def all_open(self) -> bool:
        return not self.closed and not any(self.bias_on.values())

    # ----- parsing -----
    def _cards_arg(self, text: str) -> list[int]:
        t = text.strip().upper()
        if t == "ALL":
            return list(range(1, self.cards + 1))
        try:
            card = int(t)
        except ValueError:
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; card {text!r}") from None
        if self.config == "ACON":
            if card != 0:
                raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; card {card} in auto configuration "
                                                      f"(ACON): use 0 or ALL")
            return list(range(1, self.cards + 1))
        if not 1 <= card <= self.cards:
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; card {card} in normal configuration "
                                                  f"(NCON, {self.cards} card(s)): use 1-{self.cards} or ALL")
        return [card]

    def _channel(self, text: str) -> tuple[int, int]:
        if not re.fullmatch(r"\d{5}", text):
            raise CommandError(SYNTAX_ERROR, f"Syntax error; channel {text!r} is not cIIOO (card, input, output)")
        card, inp, out = int(text[0]), int(text[1:3]), int(text[3:5])
        if inp not in INPUTS:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; channel {text}: input {inp} (1 to 10)")
        if self.config == "ACON":
            if card != 0:
                raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; channel {text}: card {card} in ACON (card 0)")
            if not 1 <= out <= self.outputs:
                raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; channel {text}: output {out} "
                                                      f"(1 to {self.outputs})")
            return inp, out
        if not 1 <= card <= self.cards:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; channel {text}: card {card} is not installed")
        if not 1 <= out <= OUTPUTS_PER_CARD:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; channel {text}: output {out} (1 to 12)")
        return inp, (card - 1) * OUTPUTS_PER_CARD + out

    def parse_list(self, text: str) -> list[tuple[int, int]]:
        """``(@10101,10203:10212)`` -> crosspoints (input, global output) in order, ranges as blocks."""
        m = re.fullmatch(r"\(\s*@\s*(.*?)\s*\)", text.strip())
        if m is None:
            raise CommandError(SYNTAX_ERROR, f"Syntax error; channel list {text!r} must be (@...)")
        body = m.group(1)
        if not body:
            raise CommandError(MISSING_PARAMETER, "Missing parameter; empty channel list")
        out: list[tuple[int, int]] = []
        for part in body.split(","):
            a, sep, b = part.strip().partition(":")
            first = self._channel(a.strip())
            last = self._channel(b.strip()) if sep else first
            for inp in range(min(first[0], last[0]), max(first[0], last[0]) + 1):
                for o in range(min(first[1], last[1]), max(first[1], last[1]) + 1):
                    if (inp, o) not in out:
                        out.append((inp, o))
        return out

    def channel_name(self, inp: int, out: int) -> str:
        if self.config == "ACON":
            return f"0{inp:02d}{out:02d}"
        return f"{self.card_of(out)}{inp:02d}{(out - 1) % OUTPUTS_PER_CARD + 1:02d}"

    # ----- commands -----
    def _execute(self, command: str) -> str | None:
        m = re.fullmatch(r"(\*?[A-Za-z:]+\??)\s*(.*)", command.strip())
        if m is None:
            raise CommandError(UNDEFINED_HEADER, f"Undefined header; {command!r}")
        head, rest = m.group(1), m.group(2).strip()
        common = self._common(head.upper())
        if common is not None:
            return common or None
        if head.upper() == "*RST":
            self._reset()
            return None
        query = head.endswith("?")
        words = [w for w in head.rstrip("?").split(":") if w]
        keys = [_keyword(w) for w in words]
        if None in keys:
            raise CommandError(UNDEFINED_HEADER, f"Undefined header; {head}")
        path = ":".join(keys) + ("?" if query else "")
        if path.startswith("SYST:ERR"):
            if path in ("SYST:ERR?", "SYST:ERR:NEXT?"):
                return self.pop_error()
            raise CommandError(UNDEFINED_HEADER, f"Undefined header; {head}")
        if path.startswith("ROUT:"):
            path = path[len("ROUT:"):]
        handler = _ROUTES.get(path)
        if handler is None:
            raise CommandError(UNDEFINED_HEADER, f"Undefined header; {head}")
        return handler(self, rest)

    def _card_and_value(self, rest: str, allowed: dict[str, str], what: str):
        """``card,value`` with value one of ``allowed`` (spelling -> canonical name)."""
        card_text, _, value = rest.partition(",")
        if not value.strip():
            raise CommandError(MISSING_PARAMETER, f"Missing parameter; {what} needs card,value")
        cards = self._cards_arg(card_text)
        v = value.strip().upper()
        if v in allowed:
            return cards, allowed[v]
        raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; {what} {value.strip()!r}")

    def _func(self, rest):
        v = rest.strip().upper()
        if v not in ("ACON", "NCON"):
            raise CommandError(ILLEGAL_PARAMETER, f"Illegal parameter value; :ROUT:FUNC {rest!r} (ACON or NCON)")
        self.config = v

    def _func_q(self, rest):
        return self.config

    def _rule(self, rest):
        cards, rule = self._card_and_value(rest, {"FREE": "FREE", "SROU": "SROU", "SROUTE": "SROU"},
                                           ":ROUT:CONN:RULE")
        for c in cards:
            self.rule[c] = rule

    def _rule_q(self, rest):
        return self.rule[self._cards_arg(rest)[0]]

    def _seq(self, rest):
        cards, seq = self._card_and_value(rest, {"NSEQ": "NSEQ", "BBM": "BBM", "MBBR": "MBBR"}, ":ROUT:CONN:SEQ")
        for c in cards:
            self.sequence[c] = seq

    def _seq_q(self, rest):
        return self.sequence[self._cards_arg(rest)[0]]

    def _moved(self, before: set) -> None:
        if before != self.closed:
            # the drivers let contacts settle only after a make (closed crosspoints), not after a break
            self.changed_since_wait = self.changed_since_wait or bool(self.closed - before)
            self.clock.advance(self.clock.timing.relay_operate_s, "switching")

    def _close(self, rest):
        items = self.parse_list(rest)
        single = [(i, o) for i, o in items if self.rule[self.card_of(o)] == "SROU"]
        by_out, by_in = {}, {}
        for i, o in single:
            if by_out.setdefault(o, i) != i:
                raise CommandError(SETTINGS_CONFLICT, f"Settings conflict; single route rule: inputs {by_out[o]} "
                                                      f"and {i} on output {o} in one list")
            if by_in.setdefault((i, self.card_of(o)), o) != o:
                raise CommandError(SETTINGS_CONFLICT, f"Settings conflict; single route rule: input {i} on outputs "
                                                      f"{by_in[(i, self.card_of(o))]} and {o} in one list")
        before = set(self.closed)
        for i, o in items:
            if self.rule[self.card_of(o)] == "SROU":
                # the new route replaces the old routes of this input (on this card) and of this output
                self.closed = {(ci, co) for ci, co in self.closed
                               if co != o and not (ci == i and self.card_of(co) == self.card_of(o))}
            self.closed.add((i, o))
            if len({ci for ci, co in self.closed if co == o}) > 1 and o not in self.hazards:
                self.hazards.append(o)
        self._moved(before)

    def _open(self, rest):
        items = self.parse_list(rest)
        before = set(self.closed)
        self.closed -= set(items)
        self._moved(before)

    def _state_q(self, rest, closed: bool):
        items = self.parse_list(rest)
        return ",".join("1" if ((x in self.closed) == closed) else "0" for x in items)

    def _open_card(self, rest):
        cards = self._cards_arg(rest)
        before = set(self.closed)
        self.closed = {(i, o) for i, o in self.closed if self.card_of(o) not in cards}
        self._moved(before)

    def _closed_card_q(self, rest):
        cards = self._cards_arg(rest)
        names = [self.channel_name(i, o) for i, o in sorted(self.closed, key=lambda x: (x[1], x[0]))
                 if self.card_of(o) in cards]
        return "(@" + ",".join(names) + ")"

    def _bias_state(self, rest):
        cards, v = self._card_and_value(rest, {"ON": True, "1": True, "OFF": False, "0": False}, ":ROUT:BIAS:STAT")
        for c in cards:
            self.bias_on[c] = v

    def _bias_state_q(self, rest):
        return "1" if self.bias_on[self._cards_arg(rest)[0]] else "0"

    def _bias_port(self, rest):
        card_text, _, port = rest.partition(",")
        cards = self._cards_arg(card_text)
        try:
            p = int(port)
        except ValueError:
            raise CommandError(MISSING_PARAMETER, "Missing parameter; :ROUT:BIAS:PORT card,port") from None
        if p not in INPUTS:
            raise CommandError(DATA_OUT_OF_RANGE, f"Data out of range; bias port {p} (inputs 1 to 10)")
        for c in cards:
            self.bias_port[c] = p

    def _bias_list(self, rest, enable: bool):
        outs = {o for _, o in self.parse_list(rest)}
        self.bias_enabled = self.bias_enabled | outs if enable else self.bias_enabled - outs

    def _bias_card(self, rest, enable: bool):
        cards = self._cards_arg(rest)
        outs = {o for o in range(1, self.outputs + 1) if self.card_of(o) in cards}
        self.bias_enabled = self.bias_enabled | outs if enable else self.bias_enabled - outs

    def _operation_complete(self) -> None:
        # *OPC? returns when the relays have moved; after a make the drivers let the contacts settle
        if self.changed_since_wait:
            self.clock.advance(self.clock.timing.relay_settle_s, "switching", count=0)
            self.changed_since_wait = False


_ROUTES = {
    "FUNC": VirtualMatrix._func, "FUNC?": VirtualMatrix._func_q,
    "CONN:RULE": VirtualMatrix._rule, "CONN:RULE?": VirtualMatrix._rule_q,
    "CONN:SEQ": VirtualMatrix._seq, "CONN:SEQ?": VirtualMatrix._seq_q,
    "CLOS": VirtualMatrix._close, "CLOS:LIST": VirtualMatrix._close,
    "OPEN": VirtualMatrix._open, "OPEN:LIST": VirtualMatrix._open,
    "CLOS?": lambda m, r: m._state_q(r, True), "CLOS:LIST?": lambda m, r: m._state_q(r, True),
    "OPEN?": lambda m, r: m._state_q(r, False), "OPEN:LIST?": lambda m, r: m._state_q(r, False),
    "OPEN:CARD": VirtualMatrix._open_card, "CLOS:CARD?": VirtualMatrix._closed_card_q,
    "BIAS": VirtualMatrix._bias_state, "BIAS:STAT": VirtualMatrix._bias_state,
    "BIAS?": VirtualMatrix._bias_state_q, "BIAS:STAT?": VirtualMatrix._bias_state_q,
    "BIAS:PORT": VirtualMatrix._bias_port,
    "BIAS:CHAN:ENAB": lambda m, r: m._bias_list(r, True), "BIAS:CHAN:ENAB:LIST": lambda m, r: m._bias_list(r, True),
    "BIAS:CHAN:DIS": lambda m, r: m._bias_list(r, False), "BIAS:CHAN:DIS:LIST": lambda m, r: m._bias_list(r, False),
    "BIAS:CHAN:ENAB:CARD": lambda m, r: m._bias_card(r, True),
    "BIAS:CHAN:DIS:CARD": lambda m, r: m._bias_card(r, False),
}
