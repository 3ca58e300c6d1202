"""Keysight E5250A driver: channel lists in both configuration modes, the two-inputs-on-one-output
interlock, break-before-make routing, exact sequences (every command in order, every reply used),
checked closed-crosspoint replies, long lists split, pyvisa-sim."""

import time

import pyvisa
import pytest

from rramlab.drivers.interface import InstrumentError, RequestError
from rramlab.drivers.keysight_4156c import InstrumentReportedError
from rramlab.drivers.keysight_e5250a import MAX_COMMAND_LENGTH, KeysightE5250A, card_and_output, global_output
from rramlab.drivers.visa_io import Transport

from drivers_fixtures import NO_ERROR, SIM_YAML, ExpectedResource, expected_protocol

OPC = ("*OPC?", "1")


def matrix(protocol=(), **kw):
    kw.setdefault("settle_time", 0.0)
    return expected_protocol(KeysightE5250A, list(protocol), **kw)


def opened(protocol=(), **kw):
    """A matrix whose state is known (everything open) before ``protocol``."""
    return matrix([(":ROUT:OPEN:CARD ALL", None)] + list(protocol), **kw)


# ----- channel lists -----

def test_auto_mode_is_one_card_zero_with_outputs_to_48():
    with matrix(config="auto", cards=4) as m:
        assert m.channel(1, 5) == "00105"
        assert m.channel(2, 48) == "00248"
        assert m.channel(10, 17) == "01017"
        with pytest.raises(RequestError, match="outputs 1 to 48"):
            m.channel(1, 49)


def test_normal_mode_maps_global_outputs_to_cards_1_to_4():
    with matrix(config="normal", cards=4) as m:
        assert m.channel(1, 5) == "10105"
        assert m.channel(2, 17) == "20205"
        assert m.channel(3, 12) == "10312" and m.channel(3, 13) == "20301"
        assert m.channel(10, 48) == "41012"


@pytest.mark.parametrize("out", range(1, 49))
def test_card_arithmetic_round_trips(out):
    card, local = card_and_output(out)
    assert 1 <= card <= 4 and 1 <= local <= 12 and global_output(card, local) == out


def test_fewer_cards_mean_fewer_outputs():
    with matrix(config="auto", cards=2) as m:
        assert m.outputs == 24
        with pytest.raises(RequestError, match="2 card"):
            m.channel(1, 25)


@pytest.mark.parametrize("inp, out", [(0, 1), (11, 1), (1, 0), (True, 1), (1, 2.0)],
                         ids=["input-0", "input-11", "output-0", "bool-input", "float-output"])
def test_bad_crosspoints_are_refused(inp, out):
    with matrix() as m, pytest.raises(RequestError):
        m.channel(inp, out)


def test_channel_lists_compress_runs_within_a_card():
    with matrix(config="auto") as auto:
        assert auto.channel_list([(10, o) for o in range(1, 49)]) == "(@01001:01048)"
        assert auto.channel_list([(1, 5), (2, 17), (10, 4), (10, 6), (10, 7)]) == "(@00105,00217,01004,01006:01007)"
    with matrix(config="normal") as normal:
        # a range never crosses a card boundary in normal mode
        assert normal.channel_list([(10, o) for o in range(11, 15)]) == "(@11011:11012,21001:21002)"


def test_long_lists_are_split_under_the_command_length_limit():
    with matrix(config="normal") as m:
        every_other = [(i, o) for i in (1, 2, 10) for o in range(1, 49, 2)]
        messages = m.channel_lists(every_other, ":ROUT:CLOS")
    assert len(messages) > 1 and all(len(msg) <= MAX_COMMAND_LENGTH for msg in messages)
    with matrix(config="normal") as m:
        back = set()
        for msg in messages:
            back |= m.parse_channel_list(msg[len(":ROUT:CLOS "):])
    assert back == set(every_other)


@pytest.mark.parametrize("reply, closed", [
    ("(@00105,00217)", {(1, 5), (2, 17)}),
    ("@00105", {(1, 5)}),
    ("00105,00217", {(1, 5), (2, 17)}),
    ("(@105,1012)", {(1, 5), (10, 12)}),                   # leading zeros dropped
    ("(@01001:01003)", {(10, 1), (10, 2), (10, 3)}),
    ("(@1001:1003)", {(10, 1), (10, 2), (10, 3)}),
    ("(@00101:00202)", {(1, 1), (1, 2), (2, 1), (2, 2)}),  # a range spans inputs and outputs
    ("(@)", set()), ("", set()), ("( @ )", set()),
], ids=["padded", "at-no-parens", "bare", "unpadded", "range", "unpadded-range", "block-range", "empty-parens",
        "empty", "spaces"])
def test_closed_lists_parse_in_every_form_the_manual_allows(reply, closed):
    with matrix(config="auto") as m:
        assert m.parse_channel_list(reply) == closed


def test_normal_mode_replies_map_cards_to_global_outputs():
    with matrix(config="normal") as m:
        assert m.parse_channel_list("(@20205)") == {(2, 17)}
        assert m.parse_channel_list("(@10105,41012)") == {(1, 5), (10, 48)}


@pytest.mark.parametrize("reply", ["ERROR", "(@00105,xyz)", "(@01105)", "(@00149)", "-113,\"Undefined header\""],
                         ids=["error-text", "garbage-item", "input-11", "output-49", "an-error-reply"])
def test_a_reply_that_is_not_a_channel_list_is_never_read_as_all_open(reply):
    with matrix(config="auto") as m, pytest.raises(InstrumentError, match="matrix answered"):
        m.parse_channel_list(reply)


# ----- the interlock -----

def test_two_inputs_on_one_output_are_refused_before_sending():
    protocol = [(":ROUT:CLOS (@01005)", None), (":ROUT:OPEN (@01005)", None), (":ROUT:CLOS (@00105)", None)]
    with opened(protocol) as m:
        m.open_all()
        with pytest.raises(RequestError, match="two inputs on one output"):
            m.close([(1, 5), (2, 5)])
        m.close([(10, 5)])
        with pytest.raises(RequestError, match="input 10 is already on it"):
            m.close([(1, 5)])
        m.open([(10, 5)])
        m.close([(1, 5)])


def test_one_input_may_feed_many_outputs():
    with opened([(":ROUT:CLOS (@00102,00105,00107)", None)]) as m:
        m.open_all()
        m.close([(1, 2), (1, 5), (1, 7)])


def test_closing_with_an_unknown_state_is_refused():
    with matrix() as m, pytest.raises(RequestError, match="unknown"):
        m.close([(1, 5)])


def test_forget_state_makes_the_next_route_open_everything():
    with opened([(":ROUT:OPEN:CARD ALL", None), OPC, (":ROUT:CLOS (@00105)", None), OPC]) as m:
        m.open_all()
        m.forget_state()
        assert m.closed_crosspoints is None
        m.route({5: 1})


# ----- sequences -----

def reset_protocol(func):
    return [NO_ERROR, ("*RST", None), (f":ROUT:FUNC {func}", None), NO_ERROR, (":ROUT:CONN:RULE ALL,FREE", None),
            NO_ERROR, (":ROUT:CONN:SEQ ALL,BBM", None), NO_ERROR, (":ROUT:BIAS:STAT ALL,OFF", None), NO_ERROR,
            (":ROUT:OPEN:CARD ALL", None), OPC, NO_ERROR]


@pytest.mark.parametrize("config, func", [("auto", "ACON"), ("normal", "NCON")])
def test_reset_sets_mode_rule_sequence_bias_off_and_opens_everything(config, func):
    with matrix(reset_protocol(func), config=config) as m:
        assert m.reset() == []
        assert m.closed_crosspoints == {}


@pytest.mark.parametrize("rejected", [":ROUT:FUNC ACON", ":ROUT:CONN:RULE ALL,FREE", ":ROUT:BIAS:STAT ALL,OFF"])
def test_reset_reports_a_rejected_configuration_command_naming_it(rejected):
    protocol = []
    for msg in reset_protocol("ACON"):
        protocol.append(msg)
        if msg[0] == rejected:
            protocol += [(":SYST:ERR?", '-221,"Settings conflict"'), NO_ERROR]
            break
    with matrix(protocol) as m, pytest.raises(InstrumentReportedError) as info:
        m.reset()
    assert info.value.after == rejected and info.value.code == -221
    assert m.closed_crosspoints is None


def test_route_breaks_before_it_makes():
    protocol = [(":ROUT:CLOS (@01001:01003)", None), OPC,
                (":ROUT:OPEN (@01002)", None), OPC, (":ROUT:CLOS (@00102)", None), OPC,
                (":ROUT:OPEN (@01003)", None), OPC]
    with opened(protocol) as m:
        m.open_all()
        assert m.route({1: 10, 2: 10, 3: 10})
        assert m.route({1: 10, 2: 1, 3: 10})      # output 2 moves from ground to input 1
        assert not m.route({1: 10, 2: 1, 3: 10})  # nothing to change: nothing sent
        assert m.route({1: 10, 2: 1})             # a pure disconnect needs a single wait


def test_route_from_an_unknown_state_opens_everything_first():
    with matrix([(":ROUT:OPEN:CARD ALL", None), OPC, (":ROUT:CLOS (@00105)", None), OPC]) as m:
        m.route({5: 1})


def test_query_closed_asks_every_card_in_normal_mode():
    protocol = [(":ROUT:CLOS:CARD? 1", "(@10105)"), (":ROUT:CLOS:CARD? 2", "(@20205)")]
    with matrix(protocol, config="normal", cards=2) as m:
        assert m.query_closed() == {(1, 5), (2, 17)}


def test_query_closed_reads_an_unpadded_reply_as_closed():
    with matrix([(":ROUT:CLOS:CARD? 0", "(@105,1012)")]) as m:
        assert m.query_closed() == {(1, 5), (10, 12)}


def test_wait_checks_opc_and_settles_after_a_make_only():
    with opened([(":ROUT:CLOS (@00105)", None), OPC, (":ROUT:OPEN (@00105)", None), OPC], settle_time=0.02) as m:
        m.open_all()
        m.close([(1, 5)])
        t = time.perf_counter()
        m.wait()
        assert time.perf_counter() - t >= 0.02      # contacts just made: they settle
        m.open([(1, 5)])
        t = time.perf_counter()
        m.wait()
        assert time.perf_counter() - t < 0.02       # a break alone: the relays are open, nothing to settle
    with matrix([("*OPC?", "0")]) as bad, pytest.raises(InstrumentError, match="OPC"):
        bad.wait()


def test_identify_refuses_another_instrument():
    with matrix([("*IDN?", "HEWLETT-PACKARD,4156C,0,03.10")]) as m, pytest.raises(InstrumentError,
                                                                             match="not an E5250A"):
        m.identify()


def test_matrix_errors_carry_code_and_forget_the_relay_state():
    with opened([(":SYST:ERR?", '-222,"Data out of range"'), NO_ERROR]) as m:
        m.open_all()
        with pytest.raises(InstrumentReportedError) as info:
            m.check_errors("close")
    assert info.value.code == -222 and info.value.instrument == "E5250A"
    assert m.closed_crosspoints is None


@pytest.mark.parametrize("kw, field", [({"config": "weird"}, "config"), ({"cards": 5}, "cards"),
                                       ({"cards": 0}, "cards"), ({"settle_time": -1}, "settle_time"),
                                       ({"cards": True}, "cards")],
                         ids=["unknown-mode", "five-cards", "no-cards", "negative-settle", "bool-cards"])
def test_bad_constructor_arguments_are_refused_by_the_shared_schema(kw, field):
    with pytest.raises(RequestError, match=f"E5250A settings: {field} = "):
        KeysightE5250A(ExpectedResource([]), **kw)


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


def test_closed_states_answer_is_checked_one_state_per_crosspoint():
    asked = ":ROUT:CLOS? (@00101:00103,01005)"
    with matrix([(asked, "0,1,+0,0")]) as m:
        assert m.closed_states([(1, 1), (1, 2), (1, 3), (10, 5)]) == {(1, 1): False, (1, 2): True, (1, 3): False,
                                                                      (10, 5): False}
    for reply in ("0,0,0", "0,0,0,0,0", "ERROR", "", "(@)"):
        with matrix([(asked, reply)]) as m, pytest.raises(InstrumentError, match="expected 4 states"):
            m.closed_states([(1, 1), (1, 2), (1, 3), (10, 5)])
