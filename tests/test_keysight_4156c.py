"""Keysight 4156C FLEX driver: data format, ranges, pulse limits, exact command sequences, error
queue and VISA timeouts, against a scripted resource and against pyvisa-sim."""

import logging
import math

import pyvisa
import pytest
from pyvisa import constants
from pyvisa.errors import VisaIOError

from rramlab.drivers.interface import InstrumentError, RequestError, SafetyError
from rramlab.drivers.keysight_4156c import (ComplianceError, InstrumentReportedError, InvalidDataError, Keysight4156C,
                                            RangeOverflowError, check_pulse_timing, current_range_code,
                                            describe_current_range, parse_error_reply, parse_flex_data,
                                            pulse_period_for, reading_time)
from rramlab.drivers.visa_io import (Transport, VisaTimeoutError, format_number, remove_visa_log_handler,
                                     visa_log_handler)

from drivers_fixtures import NO_ERROR, SIM_YAML, ExpectedResource, expected_protocol

ERR = ":SYST:ERR?"
#: the reset conversation: stale errors drained, *RST, then each configuration command checked
RESET = [NO_ERROR, ("*RST", None), ("US", None), NO_ERROR, ("FMT 1,0", None), NO_ERROR, ("SLI 2", None), NO_ERROR]


# ----- data format: every status case -----

@pytest.mark.parametrize("item, value", [
    ("000AI+1.234567E-09", 1.234567e-09),   # plain datum
    ("128BI-5.331500E-11", -5.3315e-11),    # end of data only: still a good value
])
def test_good_data_parse_to_their_value(item, value):
    (d,) = parse_flex_data(item)
    assert d.ok and d.value == pytest.approx(value) and d.checked() == pytest.approx(value)


@pytest.mark.parametrize("item, error, flag", [
    ("001AI+1.000000E+38", RangeOverflowError, "overflow"),
    ("129AI+1.150000E-09", RangeOverflowError, "overflow"),      # overflow + EOD
    ("002AI+1.000000E-09", InvalidDataError, "oscillating"),
    ("004AI+1.000000E-09", ComplianceError, "other_compliance"),
    ("008AI+1.000000E-04", ComplianceError, "compliance"),
    ("136AI+1.000000E-03", ComplianceError, "compliance"),       # compliance + EOD (design doc example)
    ("016AI+1.000000E-09", ComplianceError, "other_compliance"),  # PGU compliance
    ("064AI+0.000000E+00", InvalidDataError, "invalid"),
    ("000ZZ+0.000000E+00", InvalidDataError, "invalid"),
    ("000AI+9.910000E+307", InvalidDataError, "invalid"),         # invalid marker without status bit
])
def test_flagged_data_never_become_silent_numbers(item, error, flag):
    (d,) = parse_flex_data(item)
    assert not d.ok
    assert getattr(d, flag)
    with pytest.raises(error) as info:
        d.checked("read")
    assert info.value.datum is d
    assert f"status {d.status}" in str(info.value) or d.raw in str(info.value)


def test_overflow_and_invalid_values_are_nan_but_compliance_keeps_the_reading():
    over, inval, comp = parse_flex_data("001AI+1.000000E+38,064BI+1.0E-09,136CI+1.000000E-03")
    assert math.isnan(over.value) and math.isnan(inval.value)
    assert comp.value == pytest.approx(1e-3) and comp.channel == 3 and comp.end_of_data


@pytest.mark.parametrize("reply", ["", "NAI+1.0E-09", "128AI", "+1.234E-09", "128AI+1.0E-09,garbage"])
def test_malformed_data_raise(reply):
    with pytest.raises(InstrumentError, match="FLEX|no data"):
        parse_flex_data(reply)


def test_error_replies_parse_and_garbage_raises():
    assert parse_error_reply('+0,"No error"') == (0, "No error")
    assert parse_error_reply('-113,"Undefined header"') == (-113, "Undefined header")
    with pytest.raises(InstrumentError, match="error number"):
        parse_error_reply("OK")


# ----- numbers and ranges -----

@pytest.mark.parametrize("value, text", [(1.0, "1"), (-1.65, "-1.65"), (0.0, "0"), (-0.0, "0"), (1e-4, "0.0001"),
                                         (1e-5, "1E-05"), (0.030000000000000002, "0.03"), (2.15, "2.15")])
def test_numbers_are_formatted_deterministically(value, text):
    assert format_number(value) == text


def test_non_finite_numbers_are_refused():
    with pytest.raises(RequestError):
        format_number(float("nan"))


@pytest.mark.parametrize("spec, code", [("auto", 0), ("limited 1nA", 11), ("fixed 10pA", -9), ("fixed 100pA", -10),
                                        ("limited 10 uA", 15), ("fixed 100mA", -19), (-17, -17)])
def test_current_range_specs(spec, code):
    assert current_range_code(spec) == code


@pytest.mark.parametrize("spec", ["10pA", "fixed 3nA", "sometimes", 7, "limited 1nV"])
def test_bad_current_ranges_name_the_forms(spec):
    with pytest.raises(RequestError):
        current_range_code(spec)


def test_range_descriptions():
    assert describe_current_range(0) == "auto"
    assert describe_current_range(-9) == "fixed 10pA"
    assert describe_current_range(13) == "limited 100nA"


def test_low_current_ranges_are_refused_on_a_non_hrsmu_before_sending():
    with expected_protocol(Keysight4156C, [("RI 2,-9", None)], channels={1: "mpsmu", 2: "hrsmu"}) as smu:
        with pytest.raises(RequestError, match="only on an HRSMU"):
            smu.measure_current(1, "fixed 10pA")
        smu.set_current_range(2, "fixed 10pA")


# ----- the expected-protocol helper itself -----

def test_the_expected_protocol_helper_fails_on_a_wrong_an_extra_or_a_missing_message():
    res = ExpectedResource([("CL", None), (ERR, '+0,"No error"')])
    with pytest.raises(AssertionError, match="expected 'CL', got 'CN 1'"):
        res.write("CN 1")
    res = ExpectedResource([("CL", None)])
    res.write("CL")
    with pytest.raises(AssertionError, match="unexpected 'XE'"):
        res.write("XE")
    res = ExpectedResource([("CL", None), (ERR, '+0,"No error"')])
    res.write("CL")
    with pytest.raises(AssertionError, match="never sent"):
        res.assert_done()
    res = ExpectedResource([(ERR, '+0,"No error"')])
    res.write(ERR)
    with pytest.raises(AssertionError, match="never read"):
        res.assert_done()


# ----- commands -----

def test_reset_reenters_flex_and_checks_each_configuration_command():
    with expected_protocol(Keysight4156C, RESET + RESET) as smu:
        assert smu.reset() == []
        smu.reset()


@pytest.mark.parametrize("rejected", ["US", "FMT 1,0", "SLI 2"])
def test_reset_reports_a_rejected_configuration_command_naming_it(rejected):
    protocol = []
    for msg in RESET:
        protocol.append(msg)
        if msg[0] == rejected:
            protocol += [(ERR, '-113,"Undefined header"'), NO_ERROR]
            break
    with expected_protocol(Keysight4156C, protocol) as smu:
        with pytest.raises(InstrumentReportedError) as info:
            smu.reset()
    assert info.value.code == -113 and info.value.after == rejected
    assert f"after {rejected!r}" in str(info.value)


def test_reset_drains_stale_errors_first_and_returns_them():
    stale = [(ERR, '-113,"Undefined header"'), NO_ERROR]
    with expected_protocol(Keysight4156C, stale + RESET[1:]) as smu:
        assert smu.reset() == [(-113, "Undefined header")]


def test_filters_off_on_every_smu_is_checked():
    with expected_protocol(Keysight4156C, [("FL 0,1,2", None), NO_ERROR],
                           channels={1: "hrsmu", 2: "hrsmu", 21: "vsu"}) as smu:
        smu.filters_off()


def test_identify_accepts_a_4156c_and_refuses_anything_else():
    with expected_protocol(Keysight4156C, [("*IDN?", "HEWLETT-PACKARD,4156C,0,03.04:04.05:01.00")]) as smu:
        assert "4156C" in smu.identify()
    with expected_protocol(Keysight4156C, [("*IDN?", "HEWLETT-PACKARD,E5250A,0,1.0")]) as other:
        with pytest.raises(InstrumentError, match="not a 4156C"):
            other.identify()


def test_outputs_voltage_and_spot_current():
    protocol = [("CN 1,2", None), ("DV 1,11,1,0.0001", None), ("TI? 2,-12", "000BI-2.500000E-08"),
                ("DV 1,11,0,0.0001", None), ("CL 1,2", None), ("CL", None)]
    with expected_protocol(Keysight4156C, protocol) as smu:
        smu.outputs_on([1, 2])
        smu.force_voltage(1, 1.0, 1e-4)
        assert smu.measure_current(2, "fixed 10nA") == pytest.approx(-2.5e-8)
        smu.force_voltage(1, 0.0, 1e-4)
        smu.outputs_off([1, 2])
        smu.outputs_off()


def test_force_voltage_picks_the_smallest_range_and_needs_a_compliance():
    with expected_protocol(Keysight4156C, [("DV 1,12,2.15,0.001", None), ("DV 1,11,-1.5,0.001", None)]) as smu:
        smu.force_voltage(1, 2.15, 1e-3)
        smu.force_voltage(1, -1.5, 1e-3)
        with pytest.raises(RequestError, match="compliance"):
            smu.force_voltage(1, 1.0, None)
        with pytest.raises(RequestError, match="at most 0.1 A"):
            smu.force_voltage(1, 1.0, 0.2)
        with pytest.raises(RequestError, match="not one of the bench's channels"):
            smu.force_voltage(7, 1.0, 1e-3)


def test_a_dc_setting_already_in_force_is_skipped_only_when_asked():
    protocol = [("DV 2,11,0,0.0001", None), ("DV 2,11,0,0.0001", None), ("CL", None), ("DV 2,11,0,0.0001", None)]
    with expected_protocol(Keysight4156C, protocol) as smu:
        smu.force_voltage(2, 0.0, 1e-4, resend=False)
        smu.force_voltage(2, 0.0, 1e-4, resend=False)   # known in force: nothing sent
        smu.force_voltage(2, 0.0, 1e-4)                 # resend (the default): sent
        smu.outputs_off()                                # CL forgets the DC settings
        smu.force_voltage(2, 0.0, 1e-4, resend=False)


def test_vsu_forces_on_its_one_range_without_compliance_and_cannot_measure():
    with expected_protocol(Keysight4156C, [("DV 21,12,1", None)], channels={1: "hrsmu", 21: "vsu"}) as smu:
        smu.force_voltage(21, 1.0)
        with pytest.raises(RequestError, match="VSU"):
            smu.measure_current(21)


def test_spot_current_from_the_wrong_channel_is_an_error():
    with expected_protocol(Keysight4156C, [("TI? 2,0", "000AI-2.500000E-08")]) as smu:
        with pytest.raises(InstrumentError, match="channel 2"):
            smu.measure_current(2)


def test_compliance_on_a_spot_current_raises():
    protocol = [("TI? 2,0", "008BI-1.000000E-04"), ("TI? 2,0", "008BI-1.000000E-04")]
    with expected_protocol(Keysight4156C, protocol) as smu:
        with pytest.raises(ComplianceError, match="compliance"):
            smu.measure_current(2)
        assert smu.spot_current_datum(2).compliance  # the flagged datum is available too


def test_integration_settings_and_limits():
    with expected_protocol(Keysight4156C, [("SLI 3", None), ("SIT 3,0.1", None), ("SLI 1", None)]) as smu:
        smu.set_integration("long", 0.1)
        smu.set_integration("long", 0.1)   # identical settings are not resent
        smu.set_integration("short")
        with pytest.raises(RequestError, match="medium"):
            smu.set_integration("medium", 0.02)
        with pytest.raises(RequestError, match="outside"):
            smu.set_integration("short", 1.0)
        # long integration starts at 2 power-line cycles: 20 ms (1 PLC at 50 Hz) is refused
        with pytest.raises(RequestError, match="outside 0.04 s to 2 s"):
            smu.set_integration("long", 0.02)
        with pytest.raises(RequestError, match="must be one of"):
            smu.set_integration("slow")


def test_multi_channel_spot_measurement_maps_items_by_channel_letter():
    reply = "000DI-3.0E-08,000BI-1.0E-08,128CI-2.0E-08"
    protocol = [("MM 1,2,3,4", None), ("XE", None), ("RMD? 3", reply), ("XE", None), ("RMD? 3", reply)]
    with expected_protocol(Keysight4156C, protocol) as smu:
        data = smu.spot_measure([2, 3, 4])
        assert {ch: d.value for ch, d in data.items()} == {2: -1e-8, 3: -2e-8, 4: -3e-8}
        smu.spot_measure([2, 3, 4])


def test_multi_channel_measurement_with_a_missing_item_raises():
    protocol = [("MM 1,2,3,4", None), ("XE", None), ("RMD? 3", "000BI-1.0E-08,128CI-2.0E-08")]
    with expected_protocol(Keysight4156C, protocol) as smu:
        with pytest.raises(InstrumentError, match="expected 3"):
            smu.spot_measure([2, 3, 4])


# ----- pulse -----

def test_pulse_sends_the_priority_explicitly_and_pv_on_auto_range():
    """PT hold,width,period,delay,priority: priority 0 keeps the pulse width; PV range 0 (auto)."""
    protocol = [("MM 3,1", None), ("RI 1,-17", None), ("PT 0,0.03,0.034,0,0", None), ("PV 1,0,0,1.75,0.001", None),
                ("XE", None), ("RMD? 1", "128AI+1.000000E-06"),
                ("PV 1,0,0,1.8,0.001", None), ("XE", None), ("RMD? 1", "128AI+1.000000E-06"),
                ("MM 3,1", None), ("RI 1,-16", None), ("PT 0,0.0005,0.005,0,0", None),
                ("PV 1,0,0,2.15,0.0001", None), ("XE", None), ("RMD? 1", "128AI+1.000000E-06")]
    with expected_protocol(Keysight4156C, protocol) as smu:
        assert smu.pulse_voltage(1, 1.75, 30e-3, compliance=1e-3).value == pytest.approx(1e-6)
        smu.pulse_voltage(1, 1.8, 30e-3, compliance=1e-3)     # settings in force are not resent
        smu.forget_settings()
        smu.pulse_voltage(1, 2.15, 0.5e-3, compliance=1e-4)


def test_a_pulse_forgets_the_channels_dc_setting():
    protocol = [("DV 1,11,0,0.001", None), ("MM 3,1", None), ("RI 1,-17", None), ("PT 0,0.001,0.005,0,0", None),
                ("PV 1,0,0,1,0.001", None), ("XE", None), ("RMD? 1", "128AI+1.000000E-06"),
                ("DV 1,11,0,0.001", None)]
    with expected_protocol(Keysight4156C, protocol) as smu:
        smu.force_voltage(1, 0.0, 1e-3, resend=False)
        smu.pulse_voltage(1, 1.0, 1e-3, compliance=1e-3)
        smu.force_voltage(1, 0.0, 1e-3, resend=False)   # PV replaced it: sent again


@pytest.mark.parametrize("width, period, error, match", [
    (0.4e-3, None, SafetyError, "0.5 ms to 100 ms"),
    (101e-3, None, SafetyError, "0.5 ms to 100 ms"),
    (2e-6, None, SafetyError, "0.5 ms to 100 ms"),
    (0.55e-3, None, RequestError, "0.1 ms grid"),
    (30e-3, 33e-3, RequestError, "at least 34 ms"),
    (0.5e-3, 4e-3, RequestError, "at least 5 ms"),
    (30e-3, 1.5, RequestError, "at most 1 s"),
], ids=["below-0.5ms", "above-100ms", "twin-2us", "off-grid", "period-short-of-width+4ms", "period-below-5ms",
        "period-above-1s"])
def test_pulse_timing_outside_the_instrument_limits_is_refused_before_sending(width, period, error, match):
    with expected_protocol(Keysight4156C, []) as smu:
        with pytest.raises(error, match=match):
            smu.pulse_voltage(1, 1.75, width, compliance=1e-3, period=period)


def test_pulse_period_rule():
    assert pulse_period_for(0.5e-3) == pytest.approx(5e-3)
    assert pulse_period_for(30e-3) == pytest.approx(34e-3)
    assert check_pulse_timing(100e-3) == pytest.approx((0.0, 0.1, 0.104))


def test_pulse_only_on_one_smu_and_never_on_a_vsu():
    with expected_protocol(Keysight4156C, [], channels={1: "hrsmu", 21: "vsu"}) as smu:
        with pytest.raises(RequestError, match="VSU"):
            smu.pulse_voltage(21, 1.0, 1e-3, compliance=1e-3)
        with pytest.raises(RequestError, match="exactly one channel"):
            smu.set_measurement_mode(3, [1, 1])


def test_pulse_compliance_during_the_pulse_is_flagged():
    protocol = [("MM 3,1", None), ("RI 1,-17", None), ("PT 0,0.001,0.005,0,0", None), ("PV 1,0,0,2,0.001", None),
                ("XE", None), ("RMD? 1", "136AI+1.000000E-03")]
    with expected_protocol(Keysight4156C, protocol) as smu:
        d = smu.pulse_voltage(1, 2.0, 1e-3, compliance=1e-3)
    with pytest.raises(ComplianceError):
        d.checked("pulse")


@pytest.mark.parametrize("channels", [{7: "hrsmu"}, {21: "hrsmu"}, {1: "vsu"}, {1: "smu"}, {True: "hrsmu"}],
                         ids=["no-channel-7", "vsu-slot-as-smu", "smu-slot-as-vsu", "unknown-kind", "bool-channel"])
def test_bad_channel_tables_are_refused_by_the_shared_schema(channels):
    with pytest.raises(RequestError, match="4156C channel"):
        Keysight4156C(ExpectedResource([]), channels=channels)


# ----- error queue and timeouts -----

def test_error_queue_entries_become_an_exception_with_code_and_message():
    protocol = [("MM 1,2", None), (ERR, '-113,"Undefined header"'), (ERR, '+203,"Illegal range"'), NO_ERROR,
                ("MM 1,2", None)]
    with expected_protocol(Keysight4156C, protocol) as smu:
        smu.set_measurement_mode(1, [2])
        with pytest.raises(InstrumentReportedError) as info:
            smu.check_errors("read")
        smu.set_measurement_mode(1, [2])   # an error makes the cached settings unreliable: resent
    err = info.value
    assert (err.code, err.message, err.instrument) == (-113, "Undefined header", "4156C")
    assert err.more == ((203, "Illegal range"),)
    assert "after 'read'" in str(err)


def test_slow_ranges_get_a_longer_visa_timeout_for_that_query_only():
    protocol = [("TI? 2,-14", "000BI-1.000000E-12"), ("TI? 2,-9", "000BI-1.000000E-12"),
                ("TI? 2,0", "000BI-1.000000E-12")]
    res = ExpectedResource(protocol)
    smu = Keysight4156C(res, timeout=2.0, integration="long")
    assert res.timeout == 2000
    smu.measure_current(2, "fixed 1uA")
    smu.measure_current(2, "fixed 10pA")
    smu.measure_current(2, "auto")
    res.assert_done()
    assert res.timeouts_at_read[0] == 2000   # 16 line cycles: the base timeout is enough
    assert res.timeouts_at_read[1] == 5000   # 100 PLC at 50 Hz = 2 s, x2 + 1 s margin
    assert res.timeouts_at_read[2] == round((2 * reading_time(0, "long") + 1.0) * 1000)
    assert res.timeouts_at_read[2] > 15000   # auto may visit every range, down to 10 pA
    assert res.timeout == 2000                # restored afterwards


def test_reading_time_grows_on_low_ranges():
    assert reading_time(-9, "medium") == pytest.approx(1.0)    # 50 PLC
    assert reading_time(-14, "medium") == pytest.approx(0.02)  # 1 PLC
    assert reading_time(0, "medium") > reading_time(11, "medium") > reading_time(-11, "medium")


class _Failing:
    """A resource whose write raises ``exc``."""

    timeout = 2000

    def __init__(self, exc):
        self.exc = exc

    def write(self, command):
        raise self.exc

    def read(self):
        raise AssertionError("no read expected")


def test_a_visa_timeout_is_recognised_by_its_error_code():
    io = Transport(_Failing(VisaIOError(constants.StatusCode.error_timeout)), "4156C")
    with pytest.raises(VisaTimeoutError, match="no answer to 'XE'"):
        io.write("XE")


def test_an_error_that_only_mentions_a_timeout_is_not_taken_for_one():
    io = Transport(_Failing(OSError("Timeout setting rejected by the driver")), "4156C")
    with pytest.raises(InstrumentError) as info:
        io.write("XE")
    assert not isinstance(info.value, VisaTimeoutError)
    io = Transport(_Failing(VisaIOError(constants.StatusCode.error_connection_lost)), "4156C")
    with pytest.raises(InstrumentError) as info:
        io.write("XE")
    assert not isinstance(info.value, VisaTimeoutError)


def test_a_write_that_never_reached_the_instrument_is_not_logged(tmp_path):
    path = tmp_path / "visa.log"
    handler = visa_log_handler(str(path))
    try:
        io = Transport(_Failing(VisaIOError(constants.StatusCode.error_connection_lost)), "4156C")
        with pytest.raises(InstrumentError):
            io.write("PV 1,0,0,1.75,0.001")
        ok = Transport(ExpectedResource([("CL", None)]), "4156C")
        ok.write("CL")
    finally:
        remove_visa_log_handler(handler)
    text = path.read_text()
    assert "PV" not in text
    assert text.count("write") == 1 and text.rstrip().endswith("'CL'")


def test_the_visa_traffic_goes_to_the_standard_logging_module(caplog):
    with caplog.at_level(logging.DEBUG, logger="rramlab.visa"):
        io = Transport(ExpectedResource([("*IDN?", "HEWLETT-PACKARD,4156C,0,1")]), "4156C")
        io.query("*IDN?")
    recs = [r for r in caplog.records if r.name == "rramlab.visa"]
    assert [(r.instrument, r.direction, r.getMessage()) for r in recs] == [
        ("4156C", "write", "'*IDN?'"), ("4156C", "read", "'HEWLETT-PACKARD,4156C,0,1'")]


# ----- against pyvisa-sim -----

@pytest.fixture
def sim_smu():
    rm = pyvisa.ResourceManager(f"{SIM_YAML}@sim")
    res = rm.open_resource("GPIB0::17::INSTR", read_termination="\n", write_termination="\n")
    smu = Keysight4156C(Transport(res, "4156C"), timeout=2.0)
    smu.drain_errors()
    yield smu
    res.close()


def test_sim_identify_reset_read_and_pulse(sim_smu):
    assert "4156C" in sim_smu.identify()
    sim_smu.reset()
    sim_smu.filters_off()
    sim_smu.outputs_on([1, 2])
    sim_smu.force_voltage(1, 1.0, 1e-4)
    assert sim_smu.measure_current(2) == pytest.approx(-4e-8)
    assert sim_smu.pulse_voltage(1, 1.75, 30e-3, 1e-3).checked() == pytest.approx(1e-6)
    sim_smu.check_errors("test")


def test_sim_instrument_error_surfaces_with_its_code(sim_smu):
    sim_smu.io.write("NOT_A_FLEX_COMMAND 1")
    with pytest.raises(InstrumentReportedError) as info:
        sim_smu.check_errors("bogus")
    assert info.value.code == -113 and "Undefined header" in str(info.value)


def test_sim_timeout_becomes_a_clear_error(sim_smu):
    sim_smu.io.timeout = 0.05
    with pytest.raises(VisaTimeoutError, match="no answer to 'XE'"):
        sim_smu.io.query("XE")   # XE has no reply: the read times out


def test_visa_log_file_has_one_timestamped_line_per_message(tmp_path, sim_smu):
    path = tmp_path / "visa.log"
    handler = visa_log_handler(str(path))
    try:
        sim_smu.identify()
        sim_smu.force_voltage(1, 0.0, 1e-4)
    finally:
        remove_visa_log_handler(handler)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert [line.split()[1:3] for line in lines] == [["4156C", "write"], ["4156C", "read"], ["4156C", "write"]]
    assert lines[2].endswith("'DV 1,11,0,0.0001'")
    assert all(line[:4].isdigit() and "T" in line.split()[0] for line in lines)


class _InterruptedOnce:
    """A pyvisa-sim resource whose first read is interrupted (Ctrl-C between a query and its reply)."""

    def __init__(self, inner):
        self.inner, self.interrupted = inner, False

    def read(self):
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return self.inner.read()

    def clear(self):
        raise NotImplementedError  # pyvisa-sim has no device clear either

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_reply_left_by_an_interrupted_query_is_not_taken_for_the_next_answer(tmp_path):
    rm = pyvisa.ResourceManager(f"{SIM_YAML}@sim")
    res = rm.open_resource("GPIB0::17::INSTR", read_termination="\n", write_termination="\n", timeout=2000)
    try:
        io = Transport(_InterruptedOnce(res), "4156C")
        with pytest.raises(KeyboardInterrupt):
            io.query("*IDN?")
        assert io.query(":SYST:ERR?") == '+0,"No error"'   # not the 4156C's identity
        assert res.timeout == 2000
    finally:
        res.close()


def test_an_interrupted_query_is_followed_by_a_device_clear_where_there_is_one():
    class Clearable(ExpectedResource):
        cleared = 0

        def clear(self):
            self.cleared += 1
            self.pending = None

    res = Clearable([("TI? 2,0", "000BI-1.0E-08"), ("CL", None)])
    io = Transport(res, "4156C")
    real_read, res.read = res.read, lambda: (_ for _ in ()).throw(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        io.query("TI? 2,0")
    res.read = real_read
    io.write("CL")
    assert res.cleared == 1
    res.assert_done()


def test_an_interrupt_inside_a_write_or_before_the_read_is_followed_by_a_device_clear():
    """The exchange is marked in flight before the write, so an interrupt that lands inside the
    write, or between the write and the read, is cleared before the next message."""
    class Clearable(ExpectedResource):
        cleared = 0

        def clear(self):
            self.cleared += 1
            self.pending = None

    res = Clearable([("CL", None)])
    io = Transport(res, "4156C")
    real_write = res.write
    res.write = lambda command: (_ for _ in ()).throw(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        io.write("DV 1,0,4.2")
    with pytest.raises(KeyboardInterrupt):
        io.query("TI? 2,0")
    res.write = real_write
    io.write("CL")
    assert res.cleared == 2   # once before the query, once before CL
    res.assert_done()


def test_removing_the_log_file_handler_restores_the_loggers_level(tmp_path):
    logger = logging.getLogger("rramlab.visa")
    before = logger.level
    handler = visa_log_handler(str(tmp_path / "a.log"))
    assert logger.isEnabledFor(logging.DEBUG)
    remove_visa_log_handler(handler)
    remove_visa_log_handler(handler)   # twice is harmless
    assert logger.level == before and handler not in logger.handlers


# ----- staircase sweep (MM 2, WV) -----

def test_a_double_staircase_sweep_sends_the_flex_sequence_and_parses_every_step():
    reply = ",".join(f"000AI+{k}.000000E-09" for k in range(1, 6)) + ",128AI+6.000000E-09"
    protocol = [("MM 2,1", None), ("WT 0,0.01", None), ("WM 2,1", None), ("WV 1,3,12,0,4.2,3,0.001", None),
                ("XE", None), ("RMD? 0", reply)]
    with expected_protocol(Keysight4156C, protocol) as smu:
        steps = smu.staircase_sweep(1, 0.0, 4.2, 3, 1e-3, double=True, delay=0.01)
    assert [s[1].checked() for s in steps] == pytest.approx([k * 1e-9 for k in range(1, 7)])


def test_a_sweep_beyond_the_line_limit_or_with_bad_steps_sends_nothing():
    with expected_protocol(Keysight4156C, []) as smu:
        with pytest.raises(SafetyError, match="nothing was sent"):
            smu.staircase_sweep(1, 0.0, 4.6, 10, 1e-3)
        with pytest.raises(RequestError, match="give 2 to 1001"):
            smu.staircase_sweep(1, 0.0, 4.0, 2000, 1e-3)


def test_an_aborted_sweep_returns_the_steps_it_took():
    protocol = [("MM 2,1", None), ("WT 0,0", None), ("WM 2,1", None), ("WV 1,1,12,0,4,5,0.0001", None),
                ("XE", None), ("RMD? 0", "000AI+1.000000E-09,136AI+1.000000E-04")]
    with expected_protocol(Keysight4156C, protocol) as smu:
        steps = smu.staircase_sweep(1, 0.0, 4.0, 5, 1e-4)
    assert len(steps) == 2 and steps[1][1].compliance


def test_sim_staircase_sweep(sim_smu):
    sim_smu.reset()
    sim_smu.outputs_on([1])
    steps = sim_smu.staircase_sweep(1, 0.0, 2.0, 3, 1e-4)
    assert [s[1].checked() for s in steps] == pytest.approx([1e-9, 8e-9, 27e-9])
    sim_smu.check_errors("sweep")
