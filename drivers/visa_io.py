"""The message layer shared by the instrument drivers: a transport over a pyvisa resource that can
log every write and read with a timestamp (``--visa-log FILE``) and counts transactions, plus the
deterministic number formatting the instruments (and pyvisa-sim's exact-match dialogues) need.

A *transaction* is one write, or one query (a write followed by its read). The benchmark in
``benchmarks/visa_transactions.py`` counts them.

Nothing here knows about either instrument; the drivers build their commands and hand them over.
"""

from __future__ import annotations

import datetime as _dt
import math
import threading
from typing import Callable, TextIO

from .interface import InstrumentError, RequestError


def format_number(value: float, digits: int = 6) -> str:
    """Format a number for an instrument command, deterministically.

    At most ``digits`` significant digits, no trailing zeros, ``0`` for zero (never ``-0``), e.g.
    1.0 -> "1", -1.65 -> "-1.65", 1e-4 -> "0.0001", 1e-5 -> "1E-05". The same value always gives the
    same text, so command logs compare exactly and pyvisa-sim dialogues match.
    """
    v = float(value)
    if not math.isfinite(v):
        raise RequestError(f"cannot send the non-finite number {v!r} to an instrument")
    v = float(f"{v:.{digits}G}")
    if v == 0.0:
        return "0"
    return f"{v:.{digits}G}"


class VisaLog:
    """Append-only, timestamped log of every write and read on every logged transport.

    One line per message: ``<ISO time with microseconds>  <instrument>  <write|read>  <text>``.
    Thread-safe; flushed after every line so a crash or Ctrl-C keeps what happened up to it.
    """

    def __init__(self, target: str | TextIO):
        self._own = isinstance(target, str)
        self._fh = open(target, "a", encoding="utf-8") if isinstance(target, str) else target
        self._lock = threading.Lock()

    def record(self, instrument: str, direction: str, text: str) -> None:
        stamp = _dt.datetime.now().isoformat(timespec="microseconds")
        with self._lock:
            self._fh.write(f"{stamp}  {instrument:<8s}  {direction:<5s}  {text!r}\n")
            self._fh.flush()

    def close(self) -> None:
        if self._own and not self._fh.closed:
            self._fh.close()


class Transport:
    """Write/query over a pyvisa resource (or anything with ``write(str)`` and ``query(str)``).

    name: short instrument name used in the log ("4156C", "E5250A").
    log: a VisaLog, or None.
    on_message: optional callback ``(name, direction, text)``; tests and the benchmark use it to
        record exact command sequences.

    ``transactions`` counts writes plus queries since creation (or since ``reset_count``).
    """

    def __init__(self, resource, name: str, log: VisaLog | None = None,
                 on_message: Callable[[str, str, str], None] | None = None):
        self.resource = resource
        self.name = name
        self.log = log
        self.on_message = on_message
        self.transactions = 0

    # The resource's timeout is in milliseconds (pyvisa); ours is in seconds everywhere.
    @property
    def timeout(self) -> float | None:
        ms = getattr(self.resource, "timeout", None)
        return None if ms is None else float(ms) / 1000.0

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        try:
            self.resource.timeout = int(round(seconds * 1000.0))
        except AttributeError:  # a plain fake without a timeout attribute
            pass

    def _note(self, direction: str, text: str) -> None:
        if self.log is not None:
            self.log.record(self.name, direction, text)
        if self.on_message is not None:
            self.on_message(self.name, direction, text)

    def write(self, command: str) -> None:
        self.transactions += 1
        self._note("write", command)
        try:
            self.resource.write(command)
        except Exception as exc:
            raise _wrap(self.name, command, exc) from exc

    def query(self, command: str) -> str:
        self.transactions += 1
        self._note("write", command)
        try:
            reply = self.resource.query(command)
        except Exception as exc:
            self._note("read", f"<no reply: {exc.__class__.__name__}>")
            raise _wrap(self.name, command, exc) from exc
        reply = reply.strip("\r\n ")
        self._note("read", reply)
        return reply

    def clear(self) -> None:
        """Device clear (flushes a half-finished exchange after a timeout). Best effort."""
        try:
            self.resource.clear()
        except Exception:  # noqa: BLE001 - a fake may not support it; clear is only a courtesy
            pass

    def close(self) -> None:
        try:
            self.resource.close()
        except Exception:  # noqa: BLE001 - closing twice or a gone bus must not hide the real error
            pass

    def reset_count(self) -> None:
        self.transactions = 0


class VisaTimeoutError(InstrumentError):
    """The instrument did not answer within the VISA timeout."""


def _wrap(name: str, command: str, exc: Exception) -> Exception:
    if isinstance(exc, InstrumentError):
        return exc
    text = str(exc)
    if "VI_ERROR_TMO" in text or "Timeout" in text or "timeout" in text:
        return VisaTimeoutError(
            f"{name}: no answer to {command!r} within the VISA timeout ({text}). Check the cable and "
            f"the address; for slow low-current ranges raise the timeout in the bench file"
        )
    return InstrumentError(f"{name}: the VISA exchange {command!r} failed: {text}")


# Both instruments answer the SCPI error query the same way.

class InstrumentReportedError(InstrumentError):
    """The instrument's error queue held an error. ``code`` and ``message`` are its own words."""

    def __init__(self, instrument: str, code: int, message: str, after: str = "", more=()):
        self.instrument, self.code, self.message, self.after = instrument, code, message, after
        self.more = tuple(more)
        extra = f" (and {len(self.more)} more: {', '.join(f'{c} {m}' for c, m in self.more)})" if self.more else ""
        where = f" after {after!r}" if after else ""
        super().__init__(f"{instrument} reported error {code}: {message}{where}{extra}")


def parse_error_reply(reply: str) -> tuple[int, str]:
    """``+0,"No error"`` -> (0, "No error"). Parses the integer before the first comma."""
    text = reply.strip()
    head, _, tail = text.partition(",")
    try:
        code = int(head.strip())
    except ValueError as exc:
        raise InstrumentError(f"error query reply {reply!r} does not start with an error number") from exc
    return code, tail.strip().strip('"').strip()


def drain_error_queue(io: "Transport", limit: int = 20) -> list[tuple[int, str]]:
    """Query ``:SYST:ERR?`` until the queue reports 0 (at most ``limit`` times); return the errors."""
    seen = []
    for _ in range(limit):
        code, msg = parse_error_reply(io.query(":SYST:ERR?"))
        if code == 0:
            break
        seen.append((code, msg))
    return seen


def identify_instrument(io: "Transport", model: str, role: str) -> str:
    """``*IDN?``, checked: return the answer if its model field names ``model`` (e.g. "4156C"), else
    raise InstrumentError telling the user to check the ``role``'s ("analyzer", "matrix") address."""
    idn = io.query("*IDN?")
    if not idn:
        raise InstrumentError("no instrument answered *IDN? at this address: check the address and the cable")
    fields = [f.strip() for f in idn.split(",")]
    if len(fields) < 2 or model not in fields[1].upper():
        article = "an" if model[0] in "AEFHILMNORSX" else "a"
        raise InstrumentError(
            f"the resource answered *IDN? with {idn!r}, which is not {article} {model}: check the {role}'s "
            f"VISA address in the bench file")
    return idn
