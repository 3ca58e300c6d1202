"""Helpers for the driver tests: a scripted fake resource, a recording of every message, fault
injection around pyvisa-sim resources, a model of the bench state rebuilt from the commands sent,
and bench files written from the shipped pyvisa-sim bench with changes."""

from __future__ import annotations

import re
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


class ScriptedResource:
    """A fake pyvisa resource: records writes, answers queries from ``replies`` (exact command or a
    regex -> reply), raises if a query has no scripted reply."""

    def __init__(self, replies: dict[str, str] | None = None):
        self.replies = dict(replies or {})
        self.sent: list[str] = []
        self.timeout = 2000
        self.timeouts_at_query: list[int] = []
        self.closed = False

    def write(self, command: str) -> None:
        self.sent.append(command)

    def query(self, command: str) -> str:
        self.sent.append(command)
        self.timeouts_at_query.append(self.timeout)
        if command in self.replies:
            return self.replies[command]
        for pattern, reply in self.replies.items():
            if re.fullmatch(pattern, command):
                return reply
        raise AssertionError(f"unscripted query {command!r}")

    def clear(self):
        pass

    def close(self):
        self.closed = True


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
    mode "error": a garbage command is sent instead, so the simulated instrument queues an error;
    mode "timeout": a VISA timeout is raised; mode "interrupt": KeyboardInterrupt is raised;
    mode "reply": the query returns ``reply`` instead of the simulator's answer."""

    def __init__(self, inner, trigger: str, mode: str, nth: int = 1, reply: str = ""):
        self.inner, self.trigger, self.mode, self.nth, self.reply = inner, trigger, mode, nth, reply
        self.seen = 0

    def _hit(self, command):
        if command == self.trigger:
            self.seen += 1
            return self.seen == self.nth
        return False

    def write(self, command):
        if self._hit(command):
            if self.mode == "error":
                return self.inner.write("BOGUS_" + command.replace(" ", "_"))
            if self.mode == "timeout":
                raise VisaIOError(constants.StatusCode.error_timeout)
            if self.mode == "interrupt":
                raise KeyboardInterrupt
        return self.inner.write(command)

    def query(self, command):
        if self._hit(command):
            if self.mode == "timeout":
                raise VisaIOError(constants.StatusCode.error_timeout)
            if self.mode == "interrupt":
                raise KeyboardInterrupt
            if self.mode == "reply":
                self.inner.query(command)
                return self.reply
            if self.mode == "error":
                self.inner.write("BOGUS_QUERY")
        return self.inner.query(command)

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


def write_bench(tmp_path: Path, replace: dict[str, str] | None = None, append: str = "",
                name: str = "bench.toml") -> Path:
    """The shipped sim bench with text replacements (old -> new) and extra text appended; the
    simulation file is pointed at by absolute path so the copy works from tmp_path."""
    text = SIM_BENCH.read_text()
    text = text.replace('visa_library = "@sim:default"', f'visa_library = "@sim:{SIM_YAML}"')
    for old, new in (replace or {}).items():
        assert old in text, f"test setup: {old!r} not in the sim bench"
        text = text.replace(old, new)
    p = tmp_path / name
    p.write_text(text + append)
    return p


def sim_station(path=SIM_BENCH, recorder: Recorder | None = None, manager=None):
    """A ProbeStation on pyvisa-sim; the recorder sees every message after initialisation."""
    config = load_bench(path)
    station = connect_bench(config, resource_manager=manager, on_message=recorder)
    if recorder is not None:
        recorder.clear()
    return station
