"""The virtual 4156C, E5250A, probe card and bench clock (rramlab.sim.instruments), alone and
behind ProbeStation + drivers: the whole hardware path down to the twin."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rramlab.drivers.interface import InstrumentError
from rramlab.drivers.keysight_4156c import parse_flex_data
from rramlab.drivers.keysight_e5250a import KeysightE5250A
from rramlab.drivers.probe_station import BENCH_DIR, connect_bench, load_bench
from rramlab.protocols import ispp, ispva, transfer
from rramlab.protocols.ispva import IspvaPulse, IspvaResult, IspvaSettings
from rramlab.protocols.store import RunStore
from rramlab.protocols.weights import save_weights
from rramlab.sim.instruments import (BenchClock, BenchWiring, VirtualAnalyzer, VirtualBench, VirtualMatrix,
                                     VirtualTimeoutError, format_duration)
from rramlab.sim.virtual_array import VirtualArray

VIRTUAL_BENCH = BENCH_DIR / "virtual.toml"
SEED = 5


def fresh_analyzer(units=None) -> VirtualAnalyzer:
    a = VirtualAnalyzer(units or {1: "hrsmu", 2: "hrsmu", 3: "mpsmu", 4: "hrsmu", 21: "vsu"})
    a.handle("US")
    return a


def errors_of(instrument) -> list[tuple[int, str]]:
    out = []
    while True:
        instrument.handle(":SYST:ERR?")
        reply = instrument.read()
        code = int(reply.split(",")[0])
        if code == 0:
            return out
        out.append((code, reply.split(",", 1)[1]))


# ----------------------------------------------------------------------------------------------
# bench clock


def test_clock_adds_by_category_and_refuses_going_back():
    c = BenchClock()
    c.advance(6e-3, "pulse")
    c.advance(20e-3, "measurement")
    c.advance(20e-3, "measurement")
    assert c.now == pytest.approx(46e-3)
    assert c.counts["measurement"] == 2 and c.seconds["pulse"] == pytest.approx(6e-3)
    with pytest.raises(ValueError):
        c.advance(-1.0, "pulse")
    with pytest.raises(ValueError):
        c.advance(1.0, "coffee")
    assert "2 readings" in c.summary()


@pytest.mark.parametrize("seconds, text", [(0.0123, "0.0123 s"), (1.5, "1.50 s"), (95, "1 min 35 s"),
                                           (4000, "1 h 6 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


# ----------------------------------------------------------------------------------------------
# virtual 4156C: what it refuses, each as an error in its queue


@pytest.mark.parametrize("command, code", [
    ("CN 7", -224),                   # channel 7 does not exist
    ("CN 5", -241),                   # SMU5 not installed (no expander)
    ("DV 9,0,1,1E-3", -224),          # no such channel
    ("RI 1,21", -224),                # no current range code 21
    ("RI 3,9", -224),                 # 10 pA on an MPSMU
    ("RI 1,20", -224),                # 1 A needs an HPSMU
    ("DV 1,16,1,1E-3", -224),         # no voltage range code 16
    ("DV 1,-11,5,1E-3", -222),        # 5 V does not fit the fixed 2 V range
    ("DV 1,0,150,1E-3", -222),        # beyond an HRSMU's 100 V
    ("DV 1,0,1,0.5", -222),           # compliance above 100 mA
    ("DV 21,11,1", -224),             # a VSU has only the 20 V range
    ("DV 21,0,1,1E-3", -108),         # a VSU takes no compliance
    ("PT 0,0.0002,0.01", -222),       # width below 0.5 ms
    ("PT 0,0.2,0.5", -222),           # width above 100 ms
    ("PT 0,0.01,0.012", -222),        # period shorter than width + 4 ms
    ("PT 0,0.002,2", -222),           # period above 1 s
    ("PT 0,0.002,0.006,0,2", -224),   # priority is 0 or 1
    ("PT 700,0.002,0.006", -222),     # hold beyond 655.35 s
    ("PV 21,0,0,1,1E-3", -221),       # a VSU cannot pulse
    ("PV 1,-11,0,3,1E-3", -222),      # 3 V pulse on the fixed 2 V range
    ("MM 3,1,2", -108),               # pulsed spot takes one channel
    ("MM 1,21", -221),                # a VSU cannot measure
    ("MM 4,1", -224),                 # pulsed sweeps are not modelled: refused, not faked
    ("WV 1,2,0,0.1,1,11", -224),      # a log staircase is not modelled (linear 1 and 3 are)
    ("WV 1,1,0,0,1,2000", -224),      # at most 1001 steps
    ("WM 3,1", -224),                 # abort is 1 or 2
    ("SIT 2,0.01", -224),             # medium integration time cannot be set
    ("SIT 1,0.02", -222),             # short integration at most 10.16 ms
    ("SLI 4", -224),
    ("FMT 3", -224),                  # binary formats are not modelled
    ("XE", -221),                     # no measurement mode yet
    ("TI? 1,0", -221),                # output switch off
    ("FOO 1", -113),
    ("DV 1,0", -109),
    ("DV 1,0,abc,1E-3", -104),
])
def test_analyzer_refuses_what_the_4156c_refuses(command, code):
    a = fresh_analyzer()
    a.handle(command)
    errs = errors_of(a)
    assert [c for c, _ in errs] == [code], (command, errs)


@pytest.mark.parametrize("command", [
    "PT 0,0.002,0.006", "PT 0,0.002,0.006,0", "PT 0,0.002,0.006,0,0", "PT 0,0.002,0.006,0,1", "PT 0,0.002",
    "PV 1,0,0,3.5,1E-3", "PV 1,11,0,1.5,1E-3", "PV 1,-12,0,3.5,1E-3", "PV 1,12,0,3.5",
    "DV 21,0,1", "DV 21,12,1", "DV 1,11,1,1E-4", "CL", "CL 1,2", "CN", "FL 0,1,2,3,4", "FL 0",
    "FMT 1,0", "FMT 1", "FMT 2", "SLI 1", "SIT 1,0.001", "SIT 3,0.1", "RI 1,-17", "RI 1,11", "RI 4,-9",
    "MM 1,1,2,3", "MM 3,1", ":SYST:ERR?", ":SYSTEM:ERROR?", "*CLS", "BC", "AZ 0",
])
def test_analyzer_accepts_every_documented_form(command):
    a = fresh_analyzer()
    a.handle(command)
    a.replies.clear()
    assert errors_of(a) == []


def test_flex_commands_need_us_and_survive_rst():
    a = VirtualAnalyzer()
    a.handle("CN 1")
    assert [c for c, _ in errors_of(a)] == [-113]
    a.handle("US")
    a.handle("*RST")
    a.handle("CN 1")
    assert errors_of(a) == [] and a.units[1].on


def test_error_queue_is_read_by_both_queries_and_a_bad_command_stops_its_message():
    a = fresh_analyzer()
    a.handle("CN 9;CN 1")  # the rest of a message after an error is not executed
    assert not a.units[1].on
    a.handle("RI 1,30")
    a.handle("ERR?")
    assert a.read() == "-224,-224,0,0"
    a.handle(":SYST:ERR?")
    assert a.read() == '+0,"No error"'


def test_query_without_reply_times_out_and_logs_420():
    a = fresh_analyzer()
    a.handle("CN 1")
    with pytest.raises(VirtualTimeoutError, match="VI_ERROR_TMO"):
        a.read()
    assert [c for c, _ in errors_of(a)] == [-420]


def test_cl_returns_outputs_to_zero_and_dv_clears_a_pulse_source():
    a = fresh_analyzer()
    a.handle("CN 1,2;DV 2,0,-1,1E-3;PV 1,0,0.5,3,1E-3")
    assert a.source_voltages() == {1: 0.5, 2: -1.0}
    a.handle("DV 1,0,0.2,1E-3")
    assert a.units[1].pulse is None and a.source_voltages()[1] == 0.2
    a.handle("CL")
    assert a.source_voltages() == {} and a.outputs_at_zero()


# ----------------------------------------------------------------------------------------------
# virtual E5250A


def fresh_matrix(config="ACON") -> VirtualMatrix:
    m = VirtualMatrix(cards=4)
    m.handle(f":ROUT:FUNC {config}")
    return m


@pytest.mark.parametrize("config, command, expected", [
    ("ACON", ":ROUT:CLOS (@00105)", {(1, 5)}),
    ("ACON", ":ROUT:CLOS (@00105,00217)", {(1, 5), (2, 17)}),
    ("ACON", ":ROUT:CLOS (@01001:01003)", {(10, 1), (10, 2), (10, 3)}),
    ("ACON", ":ROUTE:CLOSE (@00148)", {(1, 48)}),
    ("ACON", ":CLOS (@00201)", {(2, 1)}),                       # [:ROUTe] may be left out
    ("ACON", ":rout:clos:list (@ 00301 , 00302 )", {(3, 1), (3, 2)}),
    ("NCON", ":ROUT:CLOS (@10105,20205)", {(1, 5), (2, 17)}),
    ("NCON", ":ROUT:CLOS (@10201:10212)", {(2, o) for o in range(1, 13)}),
    ("NCON", ":ROUT:CLOS (@10101:10202)", {(1, 1), (1, 2), (2, 1), (2, 2)}),  # a range is a block
    ("NCON", ":ROUT:CLOS (@41012)", {(10, 48)}),
])
def test_matrix_channel_lists_in_every_form(config, command, expected):
    m = fresh_matrix(config)
    m.handle(command)
    assert errors_of(m) == [] and m.closed == expected


@pytest.mark.parametrize("config, command, code", [
    ("ACON", ":ROUT:CLOS (@01105)", -222),     # input 11
    ("ACON", ":ROUT:CLOS (@00149)", -222),     # output 49 with 4 cards
    ("ACON", ":ROUT:CLOS (@10105)", -222),     # card 1 in ACON
    ("NCON", ":ROUT:CLOS (@00105)", -222),     # card 0 in NCON
    ("NCON", ":ROUT:CLOS (@10113)", -222),     # output 13 on one card
    ("ACON", ":ROUT:CLOS (@0105)", -102),      # four digits: not a channel
    ("ACON", ":ROUT:CLOS 00105", -102),        # no (@...)
    ("ACON", ":ROUT:CLOS (@)", -109),
    ("ACON", ":ROUT:OPEN:CARD 1", -224),       # card 1 in ACON
    ("NCON", ":ROUT:CONN:RULE 0,FREE", -224),  # card 0 in NCON
    ("NCON", ":ROUT:CONN:RULE 5,FREE", -224),
    ("ACON", ":ROUT:CONN:RULE 0,LOOSE", -224),
    ("ACON", ":ROUT:CONN:SEQ 0,FAST", -224),
    ("ACON", ":ROUT:FUNC XCON", -224),
    ("ACON", ":ROUT:BIAS:PORT 0,11", -222),
    ("ACON", ":ROUT:SHORT (@00101)", -113),
])
def test_matrix_refuses_what_the_e5250a_refuses(config, command, code):
    m = fresh_matrix(config)
    m.handle(command)
    assert [c for c, _ in errors_of(m)] == [code]
    assert m.closed == set()


def test_single_route_refuses_two_inputs_on_one_output_and_replaces_routes():
    m = fresh_matrix()
    m.handle(":ROUT:CONN:RULE 0,SROU")
    m.handle(":ROUT:CLOS (@00105,00205)")
    assert [c for c, _ in errors_of(m)] == [-221] and m.closed == set()
    m.handle(":ROUT:CLOS (@00105)")
    m.handle(":ROUT:CLOS (@00205)")  # the output's old route is broken first (single route)
    assert m.closed == {(2, 5)}
    m.handle(":ROUT:CLOS (@00207)")  # and the input's
    assert m.closed == {(2, 7)} and errors_of(m) == []


def test_free_rule_obeys_two_inputs_on_one_output_and_records_the_hazard():
    m = fresh_matrix()
    m.handle(":ROUT:CONN:RULE ALL,FREE")
    m.handle(":ROUT:CLOS (@00105,00205)")
    assert errors_of(m) == [] and m.closed == {(1, 5), (2, 5)} and m.hazards == [5]


def test_matrix_queries_and_card_commands_in_both_forms():
    m = fresh_matrix()
    m.handle(":ROUT:CLOS (@00105,00217,01001:01003)")
    m.handle(":ROUT:CLOS:CARD? 0")
    reply = m.read()
    drv = KeysightE5250A.__new__(KeysightE5250A)
    drv.config, drv.cards = "auto", 4
    assert drv.parse_channel_list(reply) == {(1, 5), (2, 17), (10, 1), (10, 2), (10, 3)}
    m.handle(":ROUT:CLOS? (@00105,00106)")
    assert m.read() == "1,0"
    m.handle(":ROUT:OPEN? (@00105,00106)")
    assert m.read() == "0,1"
    m.handle(":ROUT:OPEN:CARD ALL")
    assert m.closed == set()
    m.handle(":ROUT:CLOS (@00105);:ROUT:OPEN:CARD 0")
    m.handle(":ROUT:CONN:RULE? 0;:ROUT:FUNC?")
    assert m.closed == set() and [m.read(), m.read()] == ["FREE", "ACON"]
    assert errors_of(m) == []


def test_bias_mode_puts_free_outputs_on_the_bias_port_until_switched_off():
    m = fresh_matrix()
    m.handle(":ROUT:BIAS:PORT 0,10;:ROUT:BIAS:STAT 0,ON")
    assert m.inputs_on(7) == {10} and not m.all_open()
    m.handle(":ROUT:CLOS (@00107)")
    assert m.inputs_on(7) == {1}
    m.handle(":ROUT:BIAS:CHAN:DIS (@01008)")
    assert m.inputs_on(8) == set()
    m.handle(":ROUT:BIAS 0,OFF")  # [:STATe] may be left out
    assert m.inputs_on(9) == set() and errors_of(m) == []


# ----------------------------------------------------------------------------------------------
# the whole path: ProbeStation + drivers + virtual instruments + probe card + twin


def _virtual_station(config, chip, wiring=None):
    bench = VirtualBench(chip, wiring or BenchWiring.from_config(config))
    station = connect_bench(config, resource_manager=bench.resource_manager())
    return station, bench


@pytest.fixture
def virtual():
    config = load_bench(VIRTUAL_BENCH)
    station, bench = _virtual_station(config, VirtualArray(seed=SEED, engine="fast"))
    # the same chip, used directly. A probe station's programming_done does nothing (the real device's
    # programming error is in its physics), so the twin's model of that error is off here to compare
    # like with like; it draws nothing at construction, so the chip is the same.
    yield station, bench, VirtualArray(seed=SEED, engine="fast", programming_error_sigma=0.0)
    station.close()


def test_connect_leaves_no_error_and_a_safe_bench(virtual):
    station, bench, _ = virtual
    assert list(bench.analyzer.errors) == [] and list(bench.matrix.errors) == []
    assert bench.is_safe()
    assert bench.analyzer.state.flex and bench.matrix.config == "ACON"


def _conductance_steps(inst, seq):
    """Run a sequence of seam calls and return every read's conductance (S) at 1 V."""
    out = []
    for op, *arg in seq:
        if op == "pulse":
            inst.pulse_cell(*arg)
        elif op == "read":
            out.extend(np.asarray(inst.read(arg[0], 1.0)) / 1.0)
        elif op == "vmm":
            out.extend(np.ravel(inst.vmm(*arg)) / 1.0)
    return np.array(out)


def _ispp(inst, cell):
    s = ispp.IsppSettings(pulse_width_s=2e-3, cycles=1)
    return np.array([r.read_a for r in ispp.run(inst, ispp.plan(s, cell, inst))]) / s.read_v


#: pulses the 4156C can make (0.5 to 100 ms), rectangular: the settings of every bench sequence below
BENCH_ISPVA = IspvaSettings(pulse_width_s=2e-3)
#: a 4 x 4 region: 4 wordlines x 2 differential pairs, every level sign and an HRS pair
REGION_4X4 = np.array([[3, -8], [0, 5], [-2, 7], [8, -1]])


def _ispva(inst, cells, targets):
    """ISPVA on a few cells: every verify read and every final conductance (S)."""
    out = []
    for r in ispva.run(inst, ispva.plan(BENCH_ISPVA, cells, targets, inst)):
        out.append(r.conductance_s)
    return np.array(out)


def _transfer(inst, levels):
    """A half-bias transfer: every conductance it read (start, verify, final re-read), in order (S)."""
    _, records, _ = transfer.write_levels(inst, levels, transfer.TransferSettings(scheme="half-bias"), BENCH_ISPVA)
    assert any(isinstance(r, IspvaPulse) for r in records)
    return np.array([r.conductance_s for r in records if hasattr(r, "conductance_s")])


x_vmm = np.zeros((2, 24))
x_vmm[0, [1, 3, 6]] = 1.0
x_vmm[1, [3, 4]] = 1.0

#: one entry per protocol or sequence
SEQUENCES = {
    "ispva 3 cells": lambda inst: _ispva(inst, [(3, 7), (10, 2), (22, 19)], [20e-9, 50e-9, 80e-9]),
    "transfer 4 x 4 region": lambda inst: _transfer(inst, REGION_4X4),
    "ispp cell 3,7": lambda inst: _ispp(inst, (3, 7)),
    "ispp corner cell 23,23": lambda inst: _ispp(inst, (23, 23)),
    "pulse/read/vmm": lambda inst: _conductance_steps(inst, [
        ("pulse", 3, 7, 4.2, 2e-3), ("pulse", 6, 1, 4.0, 2e-3), ("read", [(3, 7), (6, 1), (0, 0)]),
        ("vmm", x_vmm, [1, 7, 9]), ("pulse", 3, 7, -1.2, 2e-3), ("read", [(3, 7)]),
        ("vmm", x_vmm[1], None)]),
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_same_conductances_through_the_bench_as_on_the_twin(virtual, name):
    station, bench, direct = virtual
    through_bench = SEQUENCES[name](station)
    on_twin = SEQUENCES[name](direct)
    assert through_bench.shape == on_twin.shape and through_bench.size > 0
    assert np.max(np.abs(through_bench - on_twin)) < 0.1e-9
    assert np.ptp(on_twin) > 1e-9  # the sequence did change conductances: the comparison means something
    assert np.array_equal(bench.array.switch_states, direct.switch_states)


def test_wrong_pin_map_programs_the_wrong_cell(tmp_path):
    good = load_bench(VIRTUAL_BENCH)
    text = VIRTUAL_BENCH.read_text()
    # the bench file swaps the cables of wordlines 3 and 4; the probe card is wired as before
    wrong = re.sub(r"wordlines = \[1, 2, 3, 4, 5,", "wordlines = [1, 2, 3, 5, 4,", text)
    assert wrong != text
    path = tmp_path / "swapped.toml"
    path.write_text(wrong)
    chip = VirtualArray(seed=SEED, engine="fast")
    before = chip.read([(3, 7), (4, 7)], 1.0)
    station, bench = _virtual_station(load_bench(path), chip, BenchWiring.from_config(good))
    with station:
        for v in (3.6, 3.8, 4.0, 4.2):
            station.pulse_cell(3, 7, v, 2e-3)
    after = chip.read([(3, 7), (4, 7)], 1.0)
    assert after[0] == pytest.approx(before[0], abs=1e-12)   # the addressed cell stays
    assert after[1] > before[1] + 20e-9                       # its neighbour on the swapped wordline is set


def test_the_transfers_verify_catches_a_wrong_pin_map(tmp_path):
    """The bench file puts wordline 3 on matrix output 30, which the probe card wires to bitline 5 (the
    file leaves bitline 5 unwired, so it is a valid file). Every pulse meant for a cell of wordline 3
    lands on the cells of bitline 5 instead (-V/2 across them: a reset) and the verify reads of
    wordline 3 see no current, so the transfer reports those cells as not converged and out of
    tolerance while the rest of the region is programmed."""
    text = VIRTUAL_BENCH.read_text()
    wrong = text.replace("wordlines = [1, 2, 3, 4, 5,", "wordlines = [1, 2, 3, 30, 5,")
    wrong = wrong.replace("bitlines = [25, 26, 27, 28, 29, 30, 31,", "bitlines = [25, 26, 27, 28, 29, 0, 31,")
    assert wrong.count("30") == text.count("30")
    path = tmp_path / "wrong.toml"
    path.write_text(wrong)
    chip = VirtualArray(seed=SEED, engine="fast")
    for w in range(8):
        chip.pulse_cell(w, 5, 3.6, 2e-3)     # cells on bitline 5 an earlier experiment left at about 40 nS
    before = chip.read([(w, 5) for w in range(8)], 1.0)
    station, bench = _virtual_station(load_bench(path), chip, BenchWiring.from_config(load_bench(VIRTUAL_BENCH)))
    with station:
        plan_, records, _ = transfer.write_levels(station, REGION_4X4, transfer.TransferSettings(final_rounds=1),
                                                  IspvaSettings(pulse_width_s=2e-3, max_pulses=6))
    rep = transfer.summarise(plan_, records, 0.0)
    bad = {(r.wordline, r.bitline) for r in records if isinstance(r, IspvaResult) and not r.converged}
    wordline3 = {c for c in plan_.cells if c[0] == 3 and plan_.target(c) > 0}
    assert wordline3 and bad == wordline3                       # exactly the miswired wordline's cells
    assert rep["left_out_of_tolerance"] == len(wordline3) and rep["within_2ns"] < 1.0
    others = [c for c in plan_.cells if c[0] != 3]
    assert np.all(np.abs(chip.read(others, 1.0) - plan_.targets_s[tuple(np.array(others).T)]) <= 5e-9)
    after = chip.read([(w, 5) for w in range(8)], 1.0)
    assert np.all(before > 30e-9) and np.all(after < 5e-9)      # the pulses reset the wrong cells
    assert bench.is_safe()


def test_unrouted_bitline_reads_nothing_and_floating_lines_add_sneak_current(virtual):
    station, bench, direct = virtual
    station.pulse_cell(3, 7, 4.2, 2e-3)
    a = bench.analyzer
    # wordline 3 on SMU1 at 1 V, but bitline 7's output is open: SMU2 reaches nothing
    bench.matrix.handle(":ROUT:OPEN:CARD 0;:ROUT:CLOS (@00104)")
    a.handle("CN 1,2;DV 1,0,1,1E-4;DV 2,0,0,1E-4;TI? 2,0")
    assert parse_flex_data(a.read())[0].value == 0.0
    bench.matrix.handle(":ROUT:CLOS (@00232)")  # now bitline 7 (output 32) is on SMU2
    a.handle("TI? 2,0")
    floating = -parse_flex_data(a.read())[0].value
    # every other line floats: sneak paths through the rest of the array add to the cell's current
    twin_read = bench.array.read_cell(3, 7)
    assert floating > twin_read + 1e-9
    # ground every other line, as the probe station does: exactly the twin's read
    others = ",".join(f"010{o:02d}" for o in range(1, 49) if o not in (4, 32))
    bench.matrix.handle(f":ROUT:CLOS (@{others})")
    a.handle("TI? 2,0")
    assert -parse_flex_data(a.read())[0].value == pytest.approx(twin_read, rel=1e-6)


def test_unwired_bitlines_float_to_zero_net_current_and_reads_still_match_the_twin(tmp_path):
    text = VIRTUAL_BENCH.read_text()
    b2420 = text.replace("41, 42, 43, 44, 45, 46, 47, 48]", "41, 42, 43, 44, 0, 0, 0, 0]")  # the paper's 24 x 20
    assert b2420 != text
    path = tmp_path / "b2420.toml"
    path.write_text(b2420)
    chip, direct = VirtualArray(seed=SEED, engine="fast"), VirtualArray(seed=SEED, engine="fast")
    station, bench = _virtual_station(load_bench(path), chip)
    with station:
        for inst in (station, direct):
            inst.pulse_cell(3, 19, 4.2, 2e-3)
        cells = [(3, 19), (3, 0), (7, 7)]
        assert np.max(np.abs(station.read(cells, 1.0) - direct.read(cells, 1.0))) < 0.1e-9
        station.read_cell(3, 19)
        wl, bl, _, _ = bench.probe_card.lines({1: 1.0, 2: 0.0})
    assert np.all(bl[20:] > 0.02) and np.all(bl[20:] < 1.0)  # pulled up by wordline 3, held down by the rest
    leaving = -bench.probe_card._cell_currents(wl, bl)[:, 20:].sum(axis=0)
    assert np.max(np.abs(leaving)) < 1e-14


def test_measurement_reports_compliance_in_the_data_status(virtual):
    station, bench, _ = virtual
    station.pulse_cell(3, 7, 4.2, 2e-3)
    a = bench.analyzer
    bench.matrix.handle(":ROUT:OPEN:CARD 0;:ROUT:CLOS (@00104,00232)")
    a.handle("CN 1,2;DV 1,0,1,1E-4;DV 2,0,0,1E-9;MM 1,1,2;XE;RMD? 2")
    d1, d2 = parse_flex_data(a.read())
    assert d2.compliance and d2.value == pytest.approx(-1e-9) and d2.end_of_data
    assert d1.other_compliance and not d1.compliance and not d1.end_of_data


def test_fixed_range_too_low_is_an_overflow_and_low_ranges_integrate_longer(virtual):
    station, bench, _ = virtual
    station.pulse_cell(3, 7, 4.2, 2e-3)  # about 80 nA at 1 V
    a, clock = bench.analyzer, bench.clock
    bench.matrix.handle(":ROUT:OPEN:CARD 0;:ROUT:CLOS (@00104,00232)")
    a.handle("CN 1,2;DV 1,0,1,1E-4;DV 2,0,0,1E-4;TI? 2,-11")
    d = parse_flex_data(a.read())[0]
    assert d.overflow and np.isnan(d.value)
    before = clock.seconds["measurement"]
    a.handle("TI? 2,-11")  # fixed 1 nA range: 5 PLC at medium integration
    a.read()
    assert clock.seconds["measurement"] - before == pytest.approx(5 * clock.timing.plc_s)
    before = clock.seconds["measurement"]
    a.handle("TI? 2,0")  # auto: ends on the 100 nA range, 1 PLC
    a.read()
    assert clock.seconds["measurement"] - before == pytest.approx(clock.timing.plc_s)


@pytest.mark.parametrize("pt, width, period", [
    ("PT 0,0.002,0.006,0,0", 2e-3, 6e-3),      # priority 0: the pulse keeps its width
    ("PT 0,0.002,0.006,0,1", 20e-3, 24e-3),    # priority 1: waits for the 1 PLC reading
    ("PT 0,0.002,0.006", 20e-3, 24e-3),        # no priority given: as 1
    ("PT 0,0.03,0.05", 30e-3, 50e-3),          # wider than the reading: unchanged
])
def test_pulse_priority_decides_whether_a_short_pulse_waits_for_its_reading(pt, width, period):
    a = fresh_analyzer()
    a.handle(f"CN 1;MM 3,1;RI 1,-17;{pt};PV 1,0,0,1,1E-3")
    assert errors_of(a) == []
    assert a.pulse_timing(a.units[1]) == (pytest.approx(width), pytest.approx(period))
    before = a.clock.seconds["pulse"]
    a.handle("XE")
    assert a.clock.seconds["pulse"] - before == pytest.approx(period)


def _collect(runner, records):
    for r in runner:
        records.append(r)


@pytest.mark.parametrize("kind, match, occurrence, message", [
    ("timeout", r"^TI\?", 5, "no answer"),
    ("error", r"^PV", 10, "reported error -300"),
    ("compliance", r"^XE", 7, "compliance"),
])
def test_fault_mid_run_stops_safe_and_keeps_the_records(virtual, kind, match, occurrence, message):
    station, bench, _ = virtual
    target = bench.analyzer
    target.inject(kind, match, occurrence)
    records = []
    s = ispp.IsppSettings(pulse_width_s=2e-3, cycles=1)
    with pytest.raises(InstrumentError, match=message):
        _collect(ispp.run(station, ispp.plan(s, (3, 7), station)), records)
    expected = {"timeout": occurrence - 1, "error": occurrence - 1, "compliance": occurrence - 1}[kind]
    assert len(records) == expected
    assert bench.is_safe(), (bench.analyzer.source_voltages(), bench.matrix.closed)
    assert all(not u.on for u in bench.analyzer.units.values())


@pytest.mark.parametrize("kind, match, occurrence, message", [
    ("timeout", r"^TI\?", 15, "no answer"),  # row reads measure by MM/XE: fewer TI? than cells
    ("error", r"^PV", 5, "reported error -300"),
    ("compliance", r"^XE", 8, "compliance"),  # the 4 x 4 start read takes 4 XE (one per row), then pulses
])
def test_fault_mid_transfer_stops_safe_keeps_the_records_and_resume_finishes(tmp_path, monkeypatch, capsys, kind,
                                                                             match, occurrence, message):
    """rramlab transfer on the virtual bench, a fault injected part-way: a clear message naming the run
    and --resume, every output at 0 V and crosspoint open, the records in the store; then --resume
    (with the chip saved at the fault) finishes the job."""
    from rramlab.app import virtual_bench
    from rramlab.app.cli import main

    opened = []
    original = virtual_bench.open_virtual_bench

    def with_fault(config, args, visa_log=None):
        station = original(config, args, visa_log)
        if not opened:
            station.virtual_bench.analyzer.inject(kind, match, occurrence)
        opened.append(station.virtual_bench)
        return station

    monkeypatch.setattr(virtual_bench, "open_virtual_bench", with_fault)
    weights, store_path, chip = tmp_path / "w.npz", tmp_path / "s.sqlite", tmp_path / "chip.npz"
    save_weights(weights, REGION_4X4)
    common = ["--bench", str(VIRTUAL_BENCH), "--scheme", "half-bias", "--width", "2e-3",
              "--engine", "fast", "--store", str(store_path), "--no-progress", "--save-chip", str(chip)]
    assert main(["transfer", str(weights), *common]) == 1
    err = capsys.readouterr().err
    assert message in err and "outputs are at 0 V, output switches off, every crosspoint open" in err and "--resume 1" in err, err
    assert opened[0].is_safe() and all(not u.on for u in opened[0].analyzer.units.values())
    with RunStore(store_path) as store:
        info = store.run(1)
        assert info.status == "failed" and message in info.error
        kept = store.records(1)
    assert any(r.type == "IspvaPulse" for r in kept)                  # it stopped part-way, records kept
    assert main(["transfer", "--resume", "1", *common, "--chip", str(chip)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"RMSE \d\.\d\d nS", out) and "0 left out of tolerance" in out
    assert opened[1].is_safe()
    with RunStore(store_path) as store:
        assert store.run(1).status == "finished" and len(store.runs()) == 1
        finals = [r.data for r in store.records(1, "CellRead") if r.data["stage"] == "final"]
    last = max(f["round"] for f in finals)
    region = [f for f in finals if f["round"] == last and f["target_s"] > 0]
    assert len(region) == int(np.count_nonzero(REGION_4X4))
    assert all(abs(f["conductance_s"] - f["target_s"]) <= 2e-9 for f in region)


def test_cli_transfer_on_the_virtual_bench_prints_the_bench_time(tmp_path, capsys):
    from rramlab.app.cli import main

    weights = tmp_path / "w.npz"
    save_weights(weights, REGION_4X4)
    assert main(["transfer", str(weights), "--bench", str(VIRTUAL_BENCH), "--scheme", "half-bias", "--width",
                 "20e-3", "--engine", "fast", "--no-progress"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"virtual bench: estimated bench time (\d+\.\d+) s \((\d+) pulses", out)
    pulses = int(re.search(r"(\d+) pulses \(0 row pulses\)", out).group(1))
    assert m and int(m.group(2)) == pulses
    assert float(m.group(1)) > pulses * 24e-3                    # at least every pulse's 20 ms + 4 ms period


def test_matrix_timeout_mid_run_leaves_the_bench_safe(virtual):
    station, bench, _ = virtual
    bench.matrix.inject("timeout", r"\*OPC\?", 2)
    with pytest.raises(InstrumentError, match="no answer"):
        station.read([(1, 1), (2, 2), (3, 3)], 1.0)
    assert bench.is_safe()


def test_bench_clock_is_pulses_times_period_plus_reads_times_integration_plus_switching(virtual):
    station, bench, _ = virtual
    clock = bench.clock
    clock.reset()
    s = ispp.IsppSettings(pulse_width_s=2e-3, cycles=1)
    n = len(list(ispp.run(station, ispp.plan(s, (3, 7), station))))
    t = clock.timing
    # max(5 ms, width + 4 ms) with pulse priority 0; without it the 2 ms pulse waits for its 1 PLC reading
    period = 6e-3 if bench.analyzer.state.timing.priority == 0 else t.plc_s + 4e-3
    assert clock.counts["pulse"] == n and clock.seconds["pulse"] == pytest.approx(n * period)
    # medium integration: 1 PLC on the 10 nA and 100 nA ranges these reads land on
    assert clock.counts["measurement"] == n and clock.seconds["measurement"] == pytest.approx(n * t.plc_s)
    assert clock.now == pytest.approx(sum(clock.seconds.values()))
    assert clock.seconds["switching"] > 0 and clock.counts["bus"] > 2 * n


def test_cli_runs_ispp_on_the_virtual_bench_and_reports_the_bench_time(capsys):
    from rramlab.app.cli import main

    code = main(["ispp", "--bench", str(VIRTUAL_BENCH), "--cell", "3,7", "--width", "2e-3", "--cycles", "1",
                 "--no-progress", "--engine", "fast"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ISPP on the probe-station, cell 3,7: 62 pulses" in out
    assert "80.0 nA" in out
    m = re.search(r"virtual bench: estimated bench time ([0-9.]+) s \(62 pulses", out)
    assert m and float(m.group(1)) > 62 * 6e-3


def test_bench_file_naming_a_unit_the_analyzer_lacks_fails_with_the_instruments_error():
    config = load_bench(VIRTUAL_BENCH)
    physical = BenchWiring.from_config(config)
    without_smu3 = BenchWiring(**{**physical.__dict__, "channels": tuple(c for c in physical.channels if c[0] != 3)})
    bench = VirtualBench(VirtualArray(seed=SEED, engine="fast"), without_smu3)
    with pytest.raises(InstrumentError, match=r"4156C reported error -241.*channel 3"):
        connect_bench(config, resource_manager=bench.resource_manager())
    assert bench.is_safe()


def test_bench_file_with_more_matrix_cards_than_installed_fails_at_the_first_routing():
    config = load_bench(VIRTUAL_BENCH)
    two_cards = BenchWiring(**{**BenchWiring.from_config(config).__dict__, "cards": 2})
    bench = VirtualBench(VirtualArray(seed=SEED, engine="fast"), two_cards)
    station = connect_bench(config, resource_manager=bench.resource_manager())
    with station, pytest.raises(InstrumentError, match=r"E5250A reported error -222.*output (2[5-9]|[34]\d)"):
        station.read_cell(3, 7)  # bitline 7 is on output 32, beyond two cards' 24 outputs
    assert bench.is_safe()


def test_cli_save_chip_keeps_the_virtual_benchs_chip(tmp_path, capsys):
    from rramlab.app.cli import main

    args = ["ispp", "--cell", "2,2", "--width", "2e-3", "--cycles", "1", "--reset-stop", "-1.1", "--no-progress",
            "--engine", "fast", "--seed", "4"]
    assert main(args + ["--bench", str(VIRTUAL_BENCH), "--save-chip", str(tmp_path / "bench.npz")]) == 0
    assert main(args + ["--save-chip", str(tmp_path / "twin.npz")]) == 0
    capsys.readouterr()
    through_bench, on_twin = (VirtualArray.load_chip(tmp_path / n) for n in ("bench.npz", "twin.npz"))
    assert through_bench.switch_states[2, 2].any()  # a short reset ramp leaves the cell partly set
    assert np.array_equal(through_bench.switch_states, on_twin.switch_states)
    assert through_bench.pulse_count == on_twin.pulse_count


def test_cli_bench_check_on_the_virtual_bench(capsys):
    from rramlab.app.cli import main

    assert main(["bench", "check", str(VIRTUAL_BENCH)]) == 0
    out = capsys.readouterr().out
    assert "4156C" in out and "E5250A" in out and "bench check OK" in out


def test_sim_instruments_import_no_pyvisa_qt_app_or_protocols():
    import ast

    import rramlab.sim.instruments as pkg

    forbidden = ("pyvisa", "PyQt", "PySide", "rramlab.app", "rramlab.protocols", "rramlab.drivers.probe_station")
    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_row_reads_keep_the_matrix_rules_and_read_what_single_reads_read(virtual, monkeypatch):
    """A whole-region read measures several bitlines of a wordline at once: still never two inputs
    on one output, every make after its break (checked at each :ROUT:CLOS the matrix receives), the
    same currents as cell-by-cell reads, and fewer relay waits."""
    station, bench, _ = virtual
    from rramlab.sim.instruments import matrix as virtual_matrix
    m = bench.matrix
    makes = []
    real_close = VirtualMatrix._close

    def close(self, rest):
        for i, o in self.parse_list(rest):
            others = {ci for ci, co in self.closed if co == o and ci != i}
            assert not others, f"output {o} closed to input {i} while still on {others}: no break before make"
            makes.append((i, o))
        real_close(self, rest)
        assert all(len({ci for ci, co in self.closed if co == o}) == 1 for _, o in self.closed)

    for path in ("CLOS", "CLOS:LIST"):
        monkeypatch.setitem(virtual_matrix._ROUTES, path, close)
    cells = [(w, b) for w in (0, 5, 23) for b in range(20)]
    for w, b in [(5, 3), (23, 19)]:
        station.pulse_cell(w, b, 3.6, 2e-3)
    bench.clock.reset()
    together = station.read(cells)
    waits_together = bench.clock.counts["switching"]
    bench.clock.reset()
    one_by_one = [station.read_cell(w, b) for w, b in cells]
    assert bench.clock.counts["switching"] > 2 * waits_together
    # each of these routings is a break and a make (two relay moves); only the make is settled
    t = bench.clock.timing
    assert bench.clock.seconds["switching"] == pytest.approx(
        bench.clock.counts["switching"] / 2 * (2 * t.relay_operate_s + t.relay_settle_s))
    assert np.allclose(together, one_by_one, rtol=1e-9, atol=1e-15)
    assert together[cells.index((5, 3))] > 5 * together[cells.index((5, 4))]
    assert makes and m.hazards == [] and list(bench.analyzer.errors) == [] and list(m.errors) == []


@pytest.mark.parametrize("integration, settled", [("short", False), ("medium", True)])
def test_a_read_shorter_than_the_stacks_settling_time_is_reported_unsettled(integration, settled, caplog):
    """The default twin has the 10 um stack's capacitances: an HRS cell settles in 5 x 0.75 ms.
    Short integration (640 us) reads before that and is counted and said once as unsettled (the
    twin's DC answer is the settled current); medium (1 PLC, 20 ms) is settled."""
    import dataclasses
    import logging

    config = dataclasses.replace(load_bench(VIRTUAL_BENCH), integration=integration)
    chip = VirtualArray(seed=SEED, engine="fast")
    assert chip.read_settling_time_s() == pytest.approx(5 * 0.75e-3, rel=0.02)
    station, bench = _virtual_station(config, chip)
    try:
        with caplog.at_level(logging.WARNING, logger="rramlab.sim.instruments.analyzer"):
            reads = [station.read_cell(3, 7), station.read_cell(4, 8)]
        assert reads == pytest.approx([chip.read_cell(3, 7), chip.read_cell(4, 8)], abs=1e-13)
        assert bench.analyzer.last_reading_settled is settled
        assert (bench.analyzer.unsettled_readings >= 2) is not settled
        said = [r.getMessage() for r in caplog.records if "settle" in r.getMessage()]
        assert len(said) == (0 if settled else 1), said   # said once, not per reading
        if not settled:
            assert "0.64 ms reading" in said[0] and "3.76 ms" in said[0]
    finally:
        station.close()
    # with Table 1's 0.1 fF a short reading has long settled (96 ns)
    assert VirtualArray(device="table1").read_settling_time_s() < 1e-6
