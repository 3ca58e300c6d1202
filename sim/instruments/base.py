"""What both virtual instruments share: an error queue as SCPI keeps it, the GPIB message layer
(``handle`` one message, replies waiting to be read), fault injection, and a pyvisa-like resource.

The resource duck-types a pyvisa message-based resource (``write``, ``read``, ``query``, ``clear``,
``close``, ``timeout`` in ms, ``read_termination``, ``write_termination``), so the drivers'
``visa_io.Transport`` and ``probe_station.connect_bench(resource_manager=...)`` use it unchanged.
Nothing here imports pyvisa: a VISA timeout is raised as :class:`VirtualTimeoutError`, whose text
carries pyvisa's ``VI_ERROR_TMO`` so callers that look for it recognise it.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from .clock import BenchClock

# SCPI standard error numbers (IEEE 488.2 / SCPI 1999, chapter 21). Both instruments report through
# :SYST:ERR? in this form; their instrument-specific numbers are not public, so the standard class
# of each error is used.
COMMAND_ERROR = -100
SYNTAX_ERROR = -102
PARAMETER_NOT_ALLOWED = -108
MISSING_PARAMETER = -109
UNDEFINED_HEADER = -113
SETTINGS_CONFLICT = -221
DATA_OUT_OF_RANGE = -222
ILLEGAL_PARAMETER = -224
HARDWARE_MISSING = -241
QUERY_UNTERMINATED = -420
QUEUE_OVERFLOW = -350
ERROR_QUEUE_SIZE = 30


#: pyvisa's status code for a VISA timeout; the drivers recognise a timeout by this code alone
VI_ERROR_TMO = -1073807339


class VirtualTimeoutError(TimeoutError):
    """The virtual instrument did not answer (no reply waiting, or a timeout was injected).

    Carries ``error_code`` = VI_ERROR_TMO as pyvisa's VisaIOError does, so the drivers treat it as
    the timeout a real instrument would give."""

    error_code = VI_ERROR_TMO

    def __init__(self, what: str):
        super().__init__(f"VI_ERROR_TMO ({VI_ERROR_TMO}): Timeout expired before operation completed ({what})")


class CommandError(Exception):
    """Raised inside a command handler; ``handle`` turns it into an entry of the error queue."""

    def __init__(self, code: int, message: str):
        self.code, self.message = code, message
        super().__init__(f"{code},{message}")


@dataclass
class Fault:
    """One injected fault. kind: "timeout" (the matching message gets no answer and is lost),
    "error" (the matching command runs, then ``code``/``message`` lands in the error queue),
    "compliance" (the matching measurement reports its channel in compliance; 4156C only).
    match: a regular expression searched in the message (case-insensitive); occurrence: the n-th
    matching message (1 = the first) triggers it; it fires once."""

    kind: str
    match: str
    occurrence: int = 1
    code: int = -300
    message: str = "Device-specific error (injected)"
    seen: int = 0
    fired: bool = False

    def __post_init__(self):
        if self.kind not in ("timeout", "error", "compliance"):
            raise ValueError(f"fault kind {self.kind!r} must be 'timeout', 'error' or 'compliance'")
        if self.occurrence < 1:
            raise ValueError("fault occurrence counts from 1")

    def hit(self, message: str) -> bool:
        if self.fired or not re.search(self.match, message, re.IGNORECASE):
            return False
        self.seen += 1
        if self.seen == self.occurrence:
            self.fired = True
            return True
        return False


class VirtualInstrument:
    """Message handling shared by the virtual 4156C and E5250A.

    Subclasses implement ``_execute(command) -> reply or None`` for one command (no separators), and
    raise CommandError for anything the real instrument rejects.
    """

    MODEL = ""
    IDN = ""

    def __init__(self, clock: BenchClock | None = None):
        self.clock = clock or BenchClock()
        self.errors: deque[tuple[int, str]] = deque()
        self.replies: deque[str] = deque()
        self.faults: list[Fault] = []
        #: every message received, in order (tests read it)
        self.received: list[str] = []

    # ----- error queue -----
    def push_error(self, code: int, message: str) -> None:
        if len(self.errors) >= ERROR_QUEUE_SIZE:
            self.errors[-1] = (QUEUE_OVERFLOW, "Queue overflow")
            return
        self.errors.append((int(code), message))

    def pop_error(self) -> str:
        if not self.errors:
            return '+0,"No error"'
        code, message = self.errors.popleft()
        return f'{code:+d},"{message}"'

    # ----- faults -----
    def inject(self, kind: str, match: str, occurrence: int = 1, **kw) -> Fault:
        """Arm a fault (see :class:`Fault`); returns it so a test can check it fired."""
        fault = Fault(kind, match, occurrence, **kw)
        self.faults.append(fault)
        return fault

    def _fault(self, kind: str, message: str) -> Fault | None:
        for f in self.faults:
            if f.kind == kind and f.hit(message):
                return f
        return None

    # ----- messages -----
    def handle(self, message: str) -> None:
        """One GPIB message (terminator already stripped): each ';'-separated command is executed in
        order, its reply (if any) queued for the next read. A rejected command goes to the error
        queue and the rest of the message is skipped, as SCPI parsers do."""
        self.received.append(message)
        self.clock.advance(self.clock.timing.transaction_s, "bus")
        if self._fault("timeout", message) is not None:
            raise VirtualTimeoutError(f"{self.MODEL} injected timeout on {message!r}")
        self._compliance_fault = self._fault("compliance", message)
        for command in (c.strip() for c in message.split(";")):
            if not command:
                continue
            try:
                reply = self._execute(command)
            except CommandError as exc:
                self.push_error(exc.code, exc.message)
                break
            if reply is not None:
                self.replies.append(reply)
        fault = self._fault("error", message)
        if fault is not None:
            self.push_error(fault.code, fault.message)

    def _execute(self, command: str) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self) -> str:
        if not self.replies:
            # A real instrument with nothing to say lets the read time out; it also logs -420.
            self.push_error(QUERY_UNTERMINATED, "Query UNTERMINATED")
            raise VirtualTimeoutError(f"{self.MODEL}: read with no reply waiting")
        return self.replies.popleft()

    def device_clear(self) -> None:
        """GPIB device clear: drops pending replies (the error queue stays)."""
        self.replies.clear()

    # ----- common commands -----
    def _common(self, head: str) -> str | None:
        """*IDN?, *OPC?, *CLS and the error query; None if ``head`` is none of them."""
        if head == "*IDN?":
            return self.IDN
        if head == "*OPC?":
            self._operation_complete()
            return "1"
        if head in ("*OPC", "*WAI"):
            self._operation_complete()
            return ""
        if head == "*CLS":
            self.errors.clear()
            return ""
        return None

    def _operation_complete(self) -> None:
        """Hook: the E5250A charges its relay settling here."""


class VirtualResource:
    """A pyvisa message-based resource over a virtual instrument.

    ``timeout`` is in milliseconds as in pyvisa; the terminations are stored and stripped from what
    is written, so drivers may set them as for a real GPIB resource.
    """

    def __init__(self, name: str, instrument: VirtualInstrument, read_termination: str | None = "\n",
                 write_termination: str | None = "\n", timeout: int | None = 2000):
        self.resource_name = name
        self.instrument = instrument
        self.read_termination = read_termination
        self.write_termination = write_termination
        self.timeout = timeout
        self.closed = False

    def _check_open(self):
        if self.closed:
            raise RuntimeError(f"resource {self.resource_name} is closed (VI_ERROR_INV_OBJECT)")

    def write(self, message: str) -> int:
        self._check_open()
        text = message
        if self.write_termination and text.endswith(self.write_termination):
            text = text[: -len(self.write_termination)]
        self.instrument.handle(text.strip("\r\n"))
        return len(message)

    def read(self) -> str:
        self._check_open()
        return self.instrument.read() + (self.read_termination or "")

    def query(self, message: str, delay: float | None = None) -> str:
        self.write(message)
        return self.read()

    def clear(self) -> None:
        self._check_open()
        self.instrument.device_clear()

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"<VirtualResource {self.resource_name} ({self.instrument.MODEL})>"


def split_arguments(text: str) -> list[str]:
    """'1, 2 ,3' -> ['1', '2', '3']; '' -> []."""
    text = text.strip()
    return [] if not text else [a.strip() for a in text.split(",")]
