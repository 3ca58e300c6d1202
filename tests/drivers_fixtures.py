"""Helpers for the driver tests: a fake resource that holds the exact expected conversation, a recording of every message, fault
injection around pyvisa-sim resources, a model of the bench state rebuilt from the commands sent,
the parsed sim bench as a dict, and a tiny TOML writer for bench files made from a changed dict."""

from __future__ import annotations

import contextlib
import json
import re
import tomllib
from pathlib import Path

import pyvisa
from pyvisa import constants
from pyvisa.errors import VisaIOError

import rramlab.drivers as drivers
from rramlab.drivers.probe_station import connect_bench, load_bench

DRIVERS_DIR = Path(drivers.__file__).resolve().parent
SIM_YAML = DRIVERS_DIR / "keysight_sim.yaml"
SIM_BENCH = DRIVERS_DIR / "benches" / "sim.toml"
TEMPLATE_BENCH = DRIVERS_DIR / "benches" / "gpib_template.toml"


class ExpectedResource:
    """A fake pyvisa resource that holds the exact conversation a driver must have, as PyMeasure's
    ``expected_protocol`` does: ``[(command, reply), ...]`` with reply None for a plain write.

    Each write must be the next expected command (else AssertionError naming both); a read returns
    the reply of the command just written (a read without one fails); ``assert_done`` fails when an
    expected message was never sent. ``timeouts_at_read`` keeps the timeout (ms) of every read.
    """

    def __init__(self, protocol):
        self.protocol = list(protocol)
        self.position = 0
        self.sent: list[str] = []
        self.pending: str | None = None
        self.timeout = 2000
        self.timeouts_at_read: list[int] = []
        self.closed = False

    def write(self, command: str) -> None:
        if self.pending is not None:
            raise AssertionError(f"{command!r} written while the reply {self.pending!r} to "
                                 f"{self.sent[-1]!r} was never read")
        if self.position >= len(self.protocol):
            raise AssertionError(f"unexpected {command!r}: the expected conversation ended after {self.sent[-3:]}")
        want, reply = self.protocol[self.position]
        if command != want:
            raise AssertionError(f"message {self.position}: expected {want!r}, got {command!r} "
                                 f"(sent so far: {self.sent[-3:]})")
        self.position += 1
        self.sent.append(command)
        self.pending = reply

    def read(self) -> str:
        if self.pending is None:
            raise AssertionError(f"read with no reply expected (last write {self.sent[-1:]!r})")
        reply, self.pending = self.pending, None
        self.timeouts_at_read.append(self.timeout)
        return reply

    def assert_done(self) -> None:
        if self.pending is not None:
            raise AssertionError(f"the reply {self.pending!r} to {self.sent[-1]!r} was never read")
        left = self.protocol[self.position:]
        if left:
            raise AssertionError(f"{len(left)} expected message(s) never sent, first {left[0]!r}")

    def clear(self):
        pass

    def close(self):
        self.closed = True


@contextlib.contextmanager
def expected_protocol(driver_class, protocol, **kwargs):
    """Build ``driver_class(ExpectedResource(protocol), **kwargs)``, yield it, and check on exit
    that the whole protocol, and nothing else, was exchanged."""
    res = ExpectedResource(protocol)
    driver = driver_class(res, **kwargs)
    yield driver
    res.assert_done()


NO_ERROR = (":SYST:ERR?", '+0,"No error"')


class Recorder:
    """on_message callback that keeps every (instrument, direction, text)."""

    def __init__(self):
        self.messages: list[tuple[str, str, str]] = []

    def __call__(self, name, direction, text):
        self.messages.append((name, direction, text))

    def writes(self, name: str | None = None) -> list[str]:
        return [t for n, d, t in self.messages if d == "write" and (name is None or n == name)]

    def tagged(self) -> list[str]:
        """Every write as 'INSTRUMENT: command', in order (both instruments interleaved)."""
        return [f"{n}: {t}" for n, d, t in self.messages if d == "write"]

    def clear(self):
        self.messages.clear()


class FaultyResource:
    """Wraps a pyvisa-sim resource. When a command equals ``trigger`` (the ``nth`` time):
    mode "error": a garbage command is sent as well (instead of a write; before a query), so the
    simulated instrument queues an error; mode "timeout": a write raises a VISA timeout, a query's
    read does; mode "interrupt": KeyboardInterrupt is raised before the command is sent;
    mode "reply": the query's read returns ``reply`` instead of the simulator's answer."""

    def __init__(self, inner, trigger: str, mode: str, nth: int = 1, reply: str = ""):
        self.inner, self.trigger, self.mode, self.nth, self.reply = inner, trigger, mode, nth, reply
        self.seen = 0
        self.read_fault: str | None = None

    def _hit(self, command):
        if command == self.trigger:
            self.seen += 1
            return self.seen == self.nth
        return False

    def write(self, command):
        if self._hit(command):
            query = "?" in command
            if self.mode == "interrupt":
                raise KeyboardInterrupt
            if self.mode == "error":
                if not query:
                    return self.inner.write("BOGUS_" + command.replace(" ", "_"))
                self.inner.write("BOGUS_QUERY")
            if self.mode == "timeout":
                if not query:
                    raise VisaIOError(constants.StatusCode.error_timeout)
                self.read_fault = "timeout"
            if self.mode == "reply":
                self.read_fault = "reply"
        return self.inner.write(command)

    def read(self):
        fault, self.read_fault = self.read_fault, None
        answer = self.inner.read()
        if fault == "timeout":
            raise VisaIOError(constants.StatusCode.error_timeout)
        if fault == "reply":
            return self.reply
        return answer

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        if name == "timeout":
            self.inner.timeout = value
        else:
            object.__setattr__(self, name, value)


class FaultyManager:
    """A resource manager for connect_bench that wraps one resource in a FaultyResource."""

    def __init__(self, resource_name: str, **fault):
        self.rm = pyvisa.ResourceManager(f"{SIM_YAML}@sim")
        self.resource_name, self.fault = resource_name, fault

    def open_resource(self, name, **kw):
        res = self.rm.open_resource(name, **kw)
        return FaultyResource(res, **self.fault) if name == self.resource_name else res

    def list_resources(self, query="?*::INSTR"):
        return self.rm.list_resources(query)


class BenchState:
    """The state the commands leave the bench in: DC volts per channel, output switches, closed
    crosspoints of the matrix (ACON channel lists)."""

    def __init__(self, messages):
        self.volts: dict[int, float] = {}
        self.on: set[int] = set()
        self.closed: set[tuple[int, int]] = set()
        for name, direction, text in messages:
            if direction != "write":
                continue
            if name == "4156C":
                self._analyzer(text)
            else:
                self._matrix(text)

    def _analyzer(self, cmd):
        if cmd.startswith("DV "):
            ch, _rng, v, *_ = cmd[3:].split(",")
            self.volts[int(ch)] = float(v)
            self.on.add(int(ch))  # assume a DV may switch the output on; the last CL must come after it
        elif cmd.startswith("PV "):
            ch, _rng, base, *_ = cmd[3:].split(",")
            self.volts[int(ch)] = float(base)
        elif cmd.startswith("CN "):
            self.on |= {int(c) for c in cmd[3:].split(",")}
        elif cmd == "CL":
            self.on.clear()
        elif cmd.startswith("CL "):
            self.on -= {int(c) for c in cmd[3:].split(",")}

    @staticmethod
    def _points(listing):
        pts = set()
        for part in re.findall(r"\d{5}(?::\d{5})?", listing):
            a, _, b = part.partition(":")
            b = b or a
            for out in range(int(a[3:]), int(b[3:]) + 1):
                pts.add((int(a[1:3]), out))
        return pts

    def _matrix(self, cmd):
        if cmd.startswith(":ROUT:CLOS ("):
            self.closed |= self._points(cmd)
        elif cmd.startswith(":ROUT:OPEN ("):
            self.closed -= self._points(cmd)
        elif cmd.startswith(":ROUT:OPEN:CARD") or cmd == "*RST":
            self.closed.clear()

    @property
    def safe(self) -> bool:
        return all(v == 0 for v in self.volts.values()) and not self.on and not self.closed


def sim_bench_data() -> dict:
    """The shipped sim bench, parsed, with the simulation file given by absolute path so a copy
    written anywhere still finds it."""
    data = tomllib.loads(SIM_BENCH.read_text())
    data["bench"]["visa_library"] = f"@sim:{SIM_YAML}"
    return data


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string uses the same escapes
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def dump_toml(data: dict) -> str:
    """TOML text for a bench-file dict: tables of scalars and lists, and arrays of tables one level
    down ([[analyzer.channels]]). Enough for bench files, not a general writer."""
    out = []
    for table, body in data.items():
        if not isinstance(body, dict):
            out.append(f"{table} = {_toml_value(body)}")
            continue
        out.append(f"[{table}]")
        nested = []
        for key, value in body.items():
            if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
                nested.append((key, value))
            else:
                out.append(f"{key} = {_toml_value(value)}")
        for key, items in nested:
            for item in items:
                out.append(f"[[{table}.{key}]]")
                out.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
        out.append("")
    return "\n".join(out) + "\n"


def write_bench(tmp_path: Path, data: dict, name: str = "bench.toml") -> Path:
    """Write a bench-file dict (e.g. a changed ``sim_bench_data()``) as TOML; return its path."""
    p = tmp_path / name
    p.write_text(dump_toml(data))
    return p


def sim_station(path=SIM_BENCH, recorder: Recorder | None = None, manager=None):
    """A ProbeStation on pyvisa-sim; the recorder sees every message after initialisation."""
    config = load_bench(path)
    station = connect_bench(config, resource_manager=manager, on_message=recorder)
    if recorder is not None:
        recorder.clear()
    return station
