"""Keysight E5250A driver: channel lists in both configuration modes, the two-inputs-on-one-output
interlock, break-before-make routing, exact sequences, closed-crosspoint queries, pyvisa-sim."""

import time

import pyvisa
import pytest

from rramlab.drivers.interface import InstrumentError, RequestError
from rramlab.drivers.keysight_4156c import InstrumentReportedError
from rramlab.drivers.keysight_e5250a import KeysightE5250A
from rramlab.drivers.visa_io import Transport

from drivers_fixtures import SIM_YAML, ScriptedResource


def scripted(replies=None, **kw):
    res = ScriptedResource({":SYST:ERR?": '+0,"No error"', "*OPC?": "1", **(replies or {})})
    kw.setdefault("settle_time", 0.0)
    return res, KeysightE5250A(res, **kw)


# ----- channel lists -----

def test_auto_mode_is_one_card_zero_with_outputs_to_48():
    _, m = scripted(config="auto", cards=4)
    assert m.channel(1, 5) == "00105"
    assert m.channel(2, 48) == "00248"
    assert m.channel(10, 17) == "01017"
    with pytest.raises(RequestError, match="outputs 1 to 48"):
        m.channel(1, 49)


def test_normal_mode_maps_global_outputs_to_cards_1_to_4():
    _, m = scripted(config="normal", cards=4)
    assert m.channel(1, 5) == "10105"
    assert m.channel(2, 17) == "20205"
    assert m.channel(3, 12) == "10312" and m.channel(3, 13) == "20301"
    assert m.channel(10, 48) == "41012"


def test_fewer_cards_mean_fewer_outputs():
    _, m = scripted(config="auto", cards=2)
    assert m.outputs == 24
    with pytest.raises(RequestError, match="2 card"):
        m.channel(1, 25)


@pytest.mark.parametrize("inp, out", [(0, 1), (11, 1), (1, 0), (True, 1), (1, 2.0)])
def test_bad_crosspoints_are_refused(inp, out):
    _, m = scripted()
    with pytest.raises(RequestError):
        m.channel(inp, out)


def test_channel_lists_compress_runs_within_a_card():
    _, auto = scripted(config="auto")
    assert auto.channel_list([(10, o) for o in range(1, 49)]) == "(@01001:01048)"
    assert auto.channel_list([(1, 5), (2, 17), (10, 4), (10, 6), (10, 7)]) == "(@00105,00217,01004,01006:01007)"
    _, normal = scripted(config="normal")
    # a range never crosses a card boundary in normal mode
    assert normal.channel_list([(10, o) for o in range(11, 15)]) == "(@11011:11012,21001:21002)"


def test_closed_lists_parse_in_every_format_seen():
    _, auto = scripted(config="auto")
    assert auto.parse_channel_list("(@00105,00217)") == {(1, 5), (2, 17)}
    assert auto.parse_channel_list("@00105") == {(1, 5)}
    assert auto.parse_channel_list("(@01001:01003)") == {(10, 1), (10, 2), (10, 3)}
    assert auto.parse_channel_list("(@)") == set() and auto.parse_channel_list("") == set()
    _, normal = scripted(config="normal")
    assert normal.parse_channel_list("(@20205)") == {(2, 17)}


# ----- the interlock -----

def test_two_inputs_on_one_output_are_refused_before_sending():
    res, m = scripted()
    m.open_all()
    res.sent.clear()
    with pytest.raises(RequestError, match="two inputs on one output"):
        m.close([(1, 5), (2, 5)])
    assert res.sent == []
    m.close([(10, 5)])
    with pytest.raises(RequestError, match="input 10 is already on it"):
        m.close([(1, 5)])
    assert res.sent == [":ROUT:CLOS (@01005)"]
    m.open([(10, 5)])
    m.close([(1, 5)])
    assert res.sent[-2:] == [":ROUT:OPEN (@01005)", ":ROUT:CLOS (@00105)"]


def test_one_input_may_feed_many_outputs():
    res, m = scripted()
    m.open_all()
    m.close([(1, 2), (1, 5), (1, 7)])
    assert res.sent[-1] == ":ROUT:CLOS (@00102,00105,00107)"


def test_closing_with_an_unknown_state_is_refused():
    res, m = scripted()
    with pytest.raises(RequestError, match="unknown"):
        m.close([(1, 5)])
    assert res.sent == []


# ----- sequences -----

@pytest.mark.parametrize("config, card, func", [("auto", "0", "ACON"), ("normal", "ALL", "NCON")])
def test_reset_sequence_sets_mode_rule_and_opens_everything(config, card, func):
    res, m = scripted(config=config)
    m.reset()
    assert res.sent == ["*RST", f":ROUT:FUNC {func}", f":ROUT:CONN:RULE {card},FREE", f":ROUT:CONN:SEQ {card},BBM",
                        f":ROUT:OPEN:CARD {card}", "*OPC?", ":SYST:ERR?"]
    assert m.closed_crosspoints == {}


def test_route_breaks_before_it_makes():
    res, m = scripted()
    m.open_all()
    assert m.route({1: 10, 2: 10, 3: 10})
    res.sent.clear()
    assert m.route({1: 10, 2: 1, 3: 10})          # output 2 moves from ground to input 1
    assert res.sent == [":ROUT:OPEN (@01002)", "*OPC?", ":ROUT:CLOS (@00102)", "*OPC?"]
    res.sent.clear()
    assert not m.route({1: 10, 2: 1, 3: 10})      # nothing to change: nothing sent
    assert res.sent == []
    assert m.route({1: 10, 2: 1})                 # a pure disconnect needs a single wait
    assert res.sent == [":ROUT:OPEN (@01003)", "*OPC?"]


def test_route_from_an_unknown_state_opens_everything_first():
    res, m = scripted()
    m.route({5: 1})
    assert res.sent == [":ROUT:OPEN:CARD 0", "*OPC?", ":ROUT:CLOS (@00105)", "*OPC?"]


def test_query_closed_asks_every_card_in_normal_mode():
    res, m = scripted({":ROUT:CLOS:CARD? 1": "(@10105)", ":ROUT:CLOS:CARD? 2": "(@20205)"}, config="normal", cards=2)
    assert m.query_closed() == {(1, 5), (2, 17)}
    assert res.sent == [":ROUT:CLOS:CARD? 1", ":ROUT:CLOS:CARD? 2"]


def test_wait_checks_opc_and_settles():
    res, m = scripted(settle_time=0.02)
    t = time.perf_counter()
    m.wait()
    assert time.perf_counter() - t >= 0.02
    _, bad = scripted({"*OPC?": "0"})
    with pytest.raises(InstrumentError, match="OPC"):
        bad.wait()


def test_identify_refuses_another_instrument():
    _, m = scripted({"*IDN?": "HEWLETT-PACKARD,4156C,0,03.10"})
    with pytest.raises(InstrumentError, match="not an E5250A"):
        m.identify()


def test_matrix_errors_carry_code_and_forget_the_relay_state():
    res = ScriptedResource()
    queue = ['-222,"Data out of range"', '+0,"No error"']
    res.query = lambda cmd: (res.sent.append(cmd), queue.pop(0))[1]
    m = KeysightE5250A(res, settle_time=0)
    m.open_all()
    with pytest.raises(InstrumentReportedError) as info:
        m.check_errors("close")
    assert info.value.code == -222 and info.value.instrument == "E5250A"
    assert m.closed_crosspoints is None


@pytest.mark.parametrize("kw", [{"config": "weird"}, {"cards": 5}, {"cards": 0}, {"settle_time": -1}])
def test_bad_constructor_arguments(kw):
    with pytest.raises(RequestError):
        KeysightE5250A(ScriptedResource(), **kw)


# ----- pyvisa-sim -----

def test_sim_matrix_session():
    rm = pyvisa.ResourceManager(f"{SIM_YAML}@sim")
    res = rm.open_resource("GPIB0::22::INSTR", read_termination="\n", write_termination="\n")
    m = KeysightE5250A(Transport(res, "E5250A"), settle_time=0.0, timeout=2.0)
    try:
        m.drain_errors()
        assert "E5250A" in m.identify()
        m.reset()
        m.route({o: 10 for o in range(1, 49)} | {5: 1, 17: 2})
        m.check_errors("route")
        assert m.query_closed() == set()   # pyvisa-sim answers a fixed empty list
        m.io.write(":ROUT:CLOS 00105")      # malformed channel list: the simulated matrix queues an error
        with pytest.raises(InstrumentReportedError, match="-113"):
            m.check_errors("bad list")
    finally:
        res.close()
