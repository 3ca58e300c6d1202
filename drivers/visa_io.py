"""The message layer shared by the instrument drivers: a transport over a pyvisa resource that logs
every write and read to the standard ``logging`` logger ``rramlab.visa`` and counts transactions,
plus the deterministic number formatting the instruments (and pyvisa-sim's exact-match dialogues) need.

A *transaction* is one write, or one query (a write followed by its read). The benchmark in
``benchmarks/visa_transactions.py`` counts them.

Logging: each message is one DEBUG record on ``rramlab.visa`` with the extra fields ``instrument``
("4156C", "E5250A") and ``direction`` ("write", "read"); the message is the text's ``repr``. A write
is logged only after the resource accepted it, so a log never shows a command that did not reach
the bus. A library user routes the traffic with ordinary logging configuration; the command line's
``--visa-log FILE`` attaches :func:`visa_log_handler` (one line per message, ISO time to the
microsecond, flushed per line).

Nothing here knows about either instrument; the drivers build their commands and hand them over.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from typing import Callable

from .interface import InstrumentError, RequestError

#: the logger every transport writes its traffic to (DEBUG records)
VISA_LOGGER = logging.getLogger("rramlab.visa")

#: pyvisa's status code for "Timeout expired before operation completed" (VI_ERROR_TMO); written
#: here so that importing the drivers does not need pyvisa.
VI_ERROR_TMO = -1073807339


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


class VisaLogFormatter(logging.Formatter):
    """``<ISO time with microseconds>  <instrument>  <write|read>  <repr of the text>``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = _dt.datetime.fromtimestamp(record.created).isoformat(timespec="microseconds")
        instrument = getattr(record, "instrument", "?")
        direction = getattr(record, "direction", "?")
        return f"{stamp}  {instrument:<8s}  {direction:<5s}  {record.getMessage()}"


def visa_log_handler(path: str) -> logging.FileHandler:
    """Attach a FileHandler for ``path`` (appending) to ``rramlab.visa`` and return it; remove it
    with :func:`remove_visa_log_handler`. The logger's level is lowered to DEBUG so the records
    are made at all."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(VisaLogFormatter())
    return add_visa_log_handler(handler)


def add_visa_log_handler(handler: logging.Handler) -> logging.Handler:
    """Attach ``handler`` to ``rramlab.visa`` at DEBUG, lowering the logger's level while it is
    attached (restored by :func:`remove_visa_log_handler`)."""
    handler.setLevel(logging.DEBUG)
    handler.rramlab_previous_level = VISA_LOGGER.level  # type: ignore[attr-defined]
    VISA_LOGGER.addHandler(handler)
    if VISA_LOGGER.getEffectiveLevel() > logging.DEBUG:
        VISA_LOGGER.setLevel(logging.DEBUG)
    return handler


def remove_visa_log_handler(handler: logging.Handler | None) -> None:
    """Detach and close a handler made by :func:`visa_log_handler`. Idempotent. The logger's
    level is put back once no such handler is left."""
    if handler is None or handler not in VISA_LOGGER.handlers:
        return
    VISA_LOGGER.removeHandler(handler)
    handler.close()
    if not any(hasattr(h, "rramlab_previous_level") for h in VISA_LOGGER.handlers):
        VISA_LOGGER.setLevel(getattr(handler, "rramlab_previous_level", logging.NOTSET))


class Transport:
    """Write/query over a pyvisa resource (or anything with ``write(str)`` and ``read()``, or a
    plain ``query(str)``).

    name: short instrument name used in the log ("4156C", "E5250A").
    on_message: optional callback ``(name, direction, text)`` called after each message went
        through; tests and the benchmark use it to record exact command sequences.

    ``transactions`` counts writes plus queries since creation (or since ``reset_count``).
    """

    def __init__(self, resource, name: str, on_message: Callable[[str, str, str], None] | None = None):
        self.resource = resource
        self.name = name
        self.on_message = on_message
        self.transactions = 0
        # True while a query was sent and its reply not read (an interrupt or a timeout between the
        # two): that reply may still arrive and would be taken for the answer to the next query.
        self._reply_pending = False

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
        if VISA_LOGGER.isEnabledFor(logging.DEBUG):
            VISA_LOGGER.debug("%r", text, extra={"instrument": self.name, "direction": direction})
        if self.on_message is not None:
            self.on_message(self.name, direction, text)

    #: how long (s) to wait for a stale reply when the resource has no device clear
    stale_reply_timeout = 0.2

    def _discard_stale_reply(self) -> None:
        """Flush the reply of an earlier, interrupted query: a device clear, or where the resource
        has none, one read with a short timeout whose text is dropped (and logged as dropped)."""
        self._reply_pending = False
        try:
            self.resource.clear()
            self._note("read", "<device clear after an interrupted query>")
            return
        except Exception:  # noqa: BLE001 - no device clear here: read the reply away instead
            pass
        read = getattr(self.resource, "read", None)
        if read is None:
            return
        old = getattr(self.resource, "timeout", None)
        try:
            self.timeout = self.stale_reply_timeout
            stale = read()
            self._note("read", f"<dropped stale reply {stale.strip()!r}>")
        except Exception:  # noqa: BLE001 - nothing was waiting: nothing to drop
            pass
        finally:
            if old is not None:
                self.resource.timeout = old

    def write(self, command: str) -> None:
        """Send ``command`` to the instrument as it is: a RAW write. Nothing is checked here, no
        safe operating area, no channel, no matrix rule: the drivers' public methods check before
        they call it. A script that calls ``station.matrix.io.write(...)`` or
        ``station.analyzer.io.write(...)`` bypasses every interlock rramlab has."""
        if self._reply_pending:
            self._discard_stale_reply()
        self.transactions += 1
        # Marked before the write: an interrupt inside it may leave half a command in the
        # instrument's input buffer, which the next message must clear first.
        self._reply_pending = True
        try:
            self.resource.write(command)
        except Exception as exc:
            # Noted without the command's text: a log reader must not take it for sent.
            why = "timeout" if is_visa_timeout(exc) else exc.__class__.__name__
            self._note("read", f"<message lost: {why}>")
            raise _wrap(self.name, command, exc) from exc
        self._reply_pending = False
        self._note("write", command)

    def query(self, command: str) -> str:
        """Write ``command`` and read the reply (stripped of CR/LF). The write is logged once it was
        sent, before the read, so a read that times out still shows what was asked."""
        if self._reply_pending:
            self._discard_stale_reply()
        self.transactions += 1
        read = getattr(self.resource, "read", None)
        try:
            if read is None:  # a resource that only knows query(): the write is known sent with the reply
                reply = self.resource.query(command)
                self._note("write", command)
            else:
                # Marked before the write: an interrupt between the write and the read (or inside the
                # write) leaves a reply or half a command behind.
                self._reply_pending = True
                self.resource.write(command)
                self._note("write", command)
                reply = read()
                self._reply_pending = False
        except Exception as exc:
            self._note("read", f"<no reply: {exc.__class__.__name__}>")
            raise _wrap(self.name, command, exc) from exc
        # A KeyboardInterrupt (or another BaseException) anywhere above leaves _reply_pending set:
        # the next message first drops the reply that may still come.
        reply = reply.strip("\r\n ")
        self._note("read", reply)
        return reply

    def clear(self) -> None:
        """Device clear (flushes a half-finished exchange after a timeout). Best effort; logged
        (as ``<device clear>``) when the resource carried it out."""
        try:
            self.resource.clear()
        except Exception:  # noqa: BLE001 - a fake may not support it; clear is only a courtesy
            return
        self._reply_pending = False  # the clear dropped any reply still waiting
        self._note("read", "<device clear>")

    def close(self) -> None:
        try:
            self.resource.close()
        except Exception:  # noqa: BLE001 - closing twice or a gone bus must not hide the real error
            pass

    def reset_count(self) -> None:
        self.transactions = 0


class VisaTimeoutError(InstrumentError):
    """The instrument did not answer within the VISA timeout."""


def is_visa_timeout(exc: BaseException) -> bool:
    """True when ``exc`` is pyvisa's timeout: a VisaIOError (or anything) whose ``error_code`` is
    VI_ERROR_TMO. Judged by the code, never by the message text."""
    return getattr(exc, "error_code", None) == VI_ERROR_TMO


def _wrap(name: str, command: str, exc: Exception) -> Exception:
    if isinstance(exc, InstrumentError):
        return exc
    text = str(exc)
    if is_visa_timeout(exc):
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


# ----------------------------------------------------------------------------------------------
# Settings schemas (pydantic): the drivers and the bench file share one description of each rule


def describe_validation_error(exc, model=None, style: str = "dotted") -> str:
    """One readable message from a pydantic ValidationError: for each problem the field (as
    ``analyzer.channels.3.gain``), the value given and what to do. Unknown fields get a
    "did you mean" hint from the fields the model at that place knows."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        where = ".".join(str(x) for x in loc)
        kind = err.get("type", "")
        msg = err.get("msg", "")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if kind == "extra_forbidden":
            known = _known_fields(model, loc[:-1]) if model is not None else []
            hint = ""
            if known:
                import difflib

                close = difflib.get_close_matches(str(loc[-1]), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                hint += f"; the known fields here are {', '.join(sorted(known))}"
            parts.append(f"unknown field {where!r}{hint}")
        elif kind == "missing":
            about = _field_description(model, loc)
            parts.append(f"{where} is missing" + (f" ({about})" if about else "") + "; see docs/bench.md")
        elif kind == "value_error":
            # our own rules: the message names the value and the fix already
            parts.append(msg if (not loc or msg.startswith("[")) else f"{where}: {msg}")
        else:
            about = _field_description(model, loc)
            parts.append(f"{where} = {err.get('input')!r}: {msg}" + (f" ({about})" if about else ""))
    return "; ".join(parts)


def _field_description(model, loc) -> str:
    """The description of the field at ``loc`` (list indices after it ignored), '' if none."""
    steps = list(loc)
    while steps and isinstance(steps[-1], int):
        steps.pop()
    if model is None or not steps:
        return ""
    field = (getattr(_model_at(model, steps[:-1]), "model_fields", None) or {}).get(steps[-1])
    return (field.description or "") if field is not None else ""


def _known_fields(model, loc) -> list[str]:
    """The field names of the (nested) pydantic model found at ``loc`` under ``model``."""
    return list(getattr(_model_at(model, loc), "model_fields", {}) or {})


def _model_at(model, loc):
    import typing

    current = model
    for step in loc:
        if isinstance(step, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or step not in fields:
            return None
        ann = fields[step].annotation
        found = None
        for cand in (ann, *typing.get_args(ann)):
            for inner in (cand, *typing.get_args(cand)):
                if hasattr(inner, "model_fields"):
                    found = inner
                    break
            if found is not None:
                break
        if found is None:
            return None
        current = found
    return current


def validated(model, what: str, **values):
    """Build the pydantic ``model`` from ``values``; a ValidationError becomes a RequestError
    that names ``what`` (e.g. "E5250A settings") and each field."""
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        raise RequestError(f"{what}: {describe_validation_error(exc, model)}") from None
