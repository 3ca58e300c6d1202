"""Limits a script cannot get around: a bench's limits only narrow, the drivers refuse beyond the
limits they were opened with whoever calls them, the device ceiling is read-only, and nothing in
rramlab routes the matrix through its raw transport write (issue 18, section 2).

The bench is the virtual bench (drivers/benches/virtual.toml: max_line_voltage 2.2 V, pulses
0.5-100 ms); what reached the instruments is read from its VISA log.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import rramlab
import rramlab.drivers.interface as interface
from drivers_fixtures import ExpectedResource
from rramlab.drivers.interface import DEVICE_CEILING, RequestChecker, SafeOperatingArea, SafetyError
from rramlab.drivers.keysight_4156c import Keysight4156C
from test_stop_paths import visa_writes

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_BENCH = ROOT / "drivers" / "benches" / "virtual.toml"


@pytest.fixture
def bench(tmp_path):
    """(station, log path) on the virtual bench; the log holds every VISA message."""
    log = tmp_path / "visa.log"
    station = rramlab.open_bench(VIRTUAL_BENCH, visa_log=str(log), engine="fast")
    yield station, log
    station.close()


def line_pulse(station, volts):
    """Wordline 3 at ``volts``, every other line at 0 V."""
    wl = np.zeros(station.geometry.wordlines)
    wl[3] = volts
    return wl, np.zeros(station.geometry.bitlines)


def writes_after(log, n):
    return [c for _, c in visa_writes(log)[n:]]


def test_assigned_limits_cannot_widen_the_bench_files(bench):
    station, log = bench
    with pytest.raises(SafetyError, match="line limit of 2.2 V"):
        station.pulse(*line_pulse(station, 3.0), 2e-3)
    before = len(visa_writes(log))
    station.limits = SafeOperatingArea()        # the twin's defaults: 4.3 V per line, 1 ns to 1 s
    assert station.limits.max_line_voltage == 2.2
    assert station.limits.window("width") == (0.5e-3, 0.1)
    assert station.ceiling == station.limits
    with pytest.raises(SafetyError, match="line limit of 2.2 V"):
        station.pulse(*line_pulse(station, 3.0), 2e-3)
    with pytest.raises(SafetyError):
        station.pulse(*line_pulse(station, 1.0), 1e-6)
    assert writes_after(log, before) == []
    # narrowing still works, and then holds
    station.limits = SafeOperatingArea(max_line_voltage=1.0)
    with pytest.raises(SafetyError, match="line limit of 1 V"):
        station.pulse_cell(3, 7, 2.5, 2e-3)
    station.limits = SafeOperatingArea()
    assert station.limits.max_line_voltage == 2.2   # back to the bench's ceiling, not beyond
    station.pulse(*line_pulse(station, 2.0), 2e-3)  # inside the bench's limits: sent
    assert any(c.startswith("PV 1,0,0,2,") for c in writes_after(log, before))


@pytest.mark.parametrize("call, words", [
    (lambda a: a.force_voltage(1, 40.0, 0.1), "+40 V is beyond the 2.2 V"),
    (lambda a: a.force_voltage(2, -2.5, 1e-3), "-2.5 V is beyond the 2.2 V"),
    (lambda a: a.force_voltage(2, float("nan"), 1e-3), "not a finite number"),
    (lambda a: a.pulse_voltage(1, 30.0, 2e-3, 0.1), "+30 V is beyond the 2.2 V"),
    (lambda a: a.pulse_voltage(1, 1.0, 2e-3, 1e-3, base_v=-4.0), "-4 V is beyond the 2.2 V"),
    (lambda a: a.force_voltage(1, 2.3, 1e-4), "+2.3 V is beyond"),
], ids=["DV-40V", "DV-minus-2.5V", "DV-nan", "PV-30V", "PV-base-minus-4V", "DV-2.3V"])
def test_the_analyzer_refuses_beyond_the_bench_limits_whoever_calls_it(bench, call, words):
    station, log = bench
    station.read_cell(3, 7)                       # outputs on, crosspoints closed: a live bench
    before = len(visa_writes(log))
    with pytest.raises(rramlab.RramlabError, match=words.replace("+", "\\+")):
        call(station.analyzer)
    assert writes_after(log, before) == []   # refused before the driver wrote anything
    assert station.analyzer.limits.max_line_voltage == 2.2


def test_a_bare_analyzer_stops_at_the_device_ceiling_and_its_limits_are_read_only():
    res = ExpectedResource([])   # no message may be sent at all
    smu = Keysight4156C(res)
    assert smu.limits.max_line_voltage == DEVICE_CEILING.max_line_voltage == 4.3
    with pytest.raises(SafetyError, match="beyond the 4.3 V"):
        smu.force_voltage(1, 40.0, 0.1)
    with pytest.raises(SafetyError, match="beyond the 4.3 V"):
        smu.pulse_voltage(1, 30.0, 2e-3, 0.1)
    with pytest.raises(AttributeError):
        smu.limits = SafeOperatingArea(max_line_voltage=100.0)
    # opened with wider limits than the device allows: the device wins
    wide = Keysight4156C(res, limits=SafeOperatingArea(max_line_voltage=100.0, max_set_voltage=100.0))
    assert wide.limits.max_line_voltage == 4.3
    with pytest.raises(SafetyError):
        wide.force_voltage(1, 5.0, 1e-3)
    # opened with narrower pulse widths: a width inside the SMU's range but outside them is refused
    narrow = Keysight4156C(res, limits=SafeOperatingArea(min_pulse_width=1e-3, max_pulse_width=50e-3))
    with pytest.raises(SafetyError, match="outside the 1 ms to 50 ms"):
        narrow.pulse_voltage(1, 1.0, 60e-3, 1e-3)
    with pytest.raises(SafetyError, match="outside the 1 ms to 50 ms"):
        narrow.pulse_voltage(1, 1.0, 0.5e-3, 1e-3)
    res.assert_done()
    assert res.sent == []


def test_the_device_ceiling_cannot_be_edited_through_the_module(bench):
    station, log = bench
    with pytest.raises(AttributeError, match="cannot be changed"):
        interface.DEVICE_CEILING = SafeOperatingArea(max_set_voltage=30.0, max_line_voltage=30.0)
    with pytest.raises(AttributeError, match="cannot be changed"):
        setattr(interface, "READ_FLOOR_V", -5.0)
    with pytest.raises(AttributeError, match="cannot be changed"):
        del interface.DEVICE_CEILING
    with pytest.raises(dataclasses.FrozenInstanceError):
        interface.DEVICE_CEILING.max_set_voltage = 30.0  # type: ignore[misc]
    assert interface.DEVICE_CEILING is DEVICE_CEILING and DEVICE_CEILING.max_set_voltage == 4.3
    assert interface.READ_FLOOR_V == -0.5
    # and what is sent is unchanged: the twin's checker and the bench still stop at the ceiling
    assert RequestChecker(limits=SafeOperatingArea(max_set_voltage=30.0)).limits.max_set_voltage == 4.3
    before = len(visa_writes(log))
    with pytest.raises(SafetyError):
        station.pulse_cell(3, 7, 8.0, 2e-3)
    with pytest.raises(SafetyError):
        station.analyzer.force_voltage(1, 8.0, 1e-3)
    assert writes_after(log, before) == []


def test_a_read_beyond_the_bench_line_limit_is_refused_before_anything_is_sent(bench):
    station, log = bench
    station.limits = SafeOperatingArea(max_line_voltage=1.0)
    before = len(visa_writes(log))
    with pytest.raises(SafetyError, match="line limit of 1 V"):
        station.read_cell(3, 7, 1.2)
    with pytest.raises(SafetyError, match="line limit of 1 V"):
        station.vmm(np.full(station.geometry.wordlines, 1.2), bitlines=[7])
    assert writes_after(log, before) == []


# ----- the raw transport write --------------------------------------------------------------

PACKAGES = ("app", "drivers", "protocols", "sim", "rramlab")


def _python_files():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _docstring_nodes(tree):
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def raw_routing_uses(path: Path, tree) -> list[str]:
    """Where ``path`` routes the matrix outside the E5250A driver's checked ``close``: a call of
    ``.io.write``/``.io.query``/``.resource.write`` outside the two drivers and the transport, or
    a ``:ROUT:CLOS`` (close) command text anywhere but in ``KeysightE5250A.close``."""
    rel = path.relative_to(ROOT).as_posix()
    found = []
    docstrings = _docstring_nodes(tree)
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def enclosing_function(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node.name
        return None

    drivers = {"drivers/keysight_e5250a.py", "drivers/keysight_4156c.py", "drivers/visa_io.py"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("write", "query", "write_raw") \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr in ("io", "resource") \
                and rel not in drivers:
            found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.upper().replace(" ", "")
            closes = ":ROUT:CLOS" in text and ":ROUT:CLOS?" not in text and ":ROUT:CLOS:CARD?" not in text
            receiver = rel.startswith("sim/instruments/")   # the virtual matrix parses the command
            if closes and not receiver and not (rel == "drivers/keysight_e5250a.py"
                                                and enclosing_function(node) == "close"):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_the_grep_finds_a_raw_routing_write():
    code = ("def sneaky(station):\n"
            "    station.matrix.io.write(':ROUT:CLOS (@00105,00205)')\n")
    tree = ast.parse(code)
    uses = raw_routing_uses(ROOT / "app" / "sneaky.py", tree)
    assert len(uses) == 2 and "io.write" in uses[0] and ":ROUT:CLOS" in uses[1]


def test_nothing_in_rramlab_routes_through_the_raw_transport_write():
    uses = []
    files = list(_python_files())
    assert len(files) > 40
    for path in files:
        uses += raw_routing_uses(path, ast.parse(path.read_text(encoding="utf-8")))
    assert uses == []
    # the raw write says what it is
    from rramlab.drivers.keysight_e5250a import KeysightE5250A
    from rramlab.drivers.visa_io import Transport

    assert "RAW" in Transport.write.__doc__ and "bypasses every interlock" in Transport.write.__doc__
    assert "io.write(':ROUT:CLOS (@00105,00205)')" in KeysightE5250A.__doc__


def test_the_matrix_refuses_what_the_bench_does_not_wire_and_two_inputs_on_one_output(bench):
    station, log = bench
    m = station.matrix
    assert m.wired_inputs == {1, 2, 3, 4, 10} and m.wired_outputs == set(range(1, 49))
    m.route({5: 1})                               # a script's own routing, through the checked driver
    before = len(visa_writes(log))
    with pytest.raises(rramlab.RequestError, match="input 5 is not cabled"):
        m.close([(5, 40)])
    with pytest.raises(rramlab.RequestError, match="two inputs on one output"):
        m.close([(1, 6), (2, 6)])                 # what io.write(':ROUT:CLOS (@00106,00206)') would do
    with pytest.raises(rramlab.RequestError, match="two inputs on one output"):
        m.close([(2, 5)])                         # output 5 already holds input 1
    with pytest.raises(AttributeError):
        m.wired_inputs = None
    assert writes_after(log, before) == []
    assert station.virtual_bench.matrix.inputs_on(5) == {1}


def test_a_bare_matrix_opened_with_a_wiring_refuses_an_unmapped_output():
    from rramlab.drivers.keysight_e5250a import KeysightE5250A

    res = ExpectedResource([])
    m = KeysightE5250A(res, inputs=[1, 2, 10], outputs=range(1, 21))
    m._closed = {}  # as after open_all, without sending it
    with pytest.raises(rramlab.RequestError, match="output 30 is not in the bench's pin map"):
        m.close([(1, 30)])
    with pytest.raises(rramlab.RequestError, match="input 3 is not cabled"):
        m.close([(3, 2)])
    res.assert_done()
    assert res.sent == []
