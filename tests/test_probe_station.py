"""ProbeStation on pyvisa-sim: bench file validation (pydantic schema), the bench checker used
before connecting, exact command sequences of a read, a pulse and a vmm time step, refusals before
anything is sent, the safe state after errors, timeouts and Ctrl-C, two threads, and bench safe."""

import io
import sys
import threading

import numpy as np
import pytest

from rramlab.drivers.interface import GeometryError, InstrumentError, RequestError, RramlabError, SafetyError
from rramlab.drivers.keysight_4156c import ComplianceError, InstrumentReportedError
from rramlab.drivers.probe_station import (BenchChecker, BenchError, ProbeStation, bench_from_data, check_bench,
                                           connect_bench, load_bench, open_bench, safe_bench)
from rramlab.drivers.visa_io import VisaTimeoutError

from drivers_fixtures import (SIM_BENCH, TEMPLATE_BENCH, BenchState, FaultyManager, Recorder,
                              sim_bench_data, sim_station, write_bench)


@pytest.fixture
def rec(recorder):
    """Short name for the shared recorder fixture (tests/conftest.py)."""
    return recorder


# ----- the bench file -----

def test_sim_bench_loads_with_the_instrument_pulse_range():
    cfg = load_bench(SIM_BENCH)
    assert cfg.geometry.shape == (24, 24)
    assert cfg.limits.min_pulse_width == 0.5e-3 and cfg.limits.max_pulse_width == 0.1
    assert cfg.limits.max_set_voltage == 4.3 and cfg.limits.max_line_voltage == 2.2
    assert cfg.visa_library_resolved.endswith("keysight_sim.yaml@sim")
    assert cfg.input_of(cfg.wordline_channel) == 1 and cfg.ground_input == 10


def test_the_gpib_template_is_a_valid_bench_file():
    cfg = load_bench(TEMPLATE_BENCH)
    assert cfg.visa_library == "" and cfg.analyzer_resource == "GPIB0::17::INSTR"
    assert cfg.read_range == 11 and cfg.settle_time == 0.02


def test_the_toml_writer_round_trips_the_sim_bench(tmp_path, bench_data):
    a = load_bench(write_bench(tmp_path, bench_data))
    b = bench_from_data(sim_bench_data(), tmp_path / "x.toml")
    assert a.channels == b.channels and a.bitline_outputs == b.bitline_outputs and a.limits == b.limits


def _set(path, value):
    """A change to the parsed bench: set (or with value ... delete) the entry at a dotted path."""
    def change(d):
        keys = path.split(".")
        target = d
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target.setdefault(k, {})
        if value is ...:
            del target[keys[-1]]
        elif isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value
    return change


def _rename(table, old, new):
    def change(d):
        d[table][new] = d[table].pop(old)
    return change


def _both(*changes):
    def change(d):
        for c in changes:
            c(d)
    return change


def _first_bitline(value):
    def change(d):
        d["pinmap"]["bitlines"][0] = value
    return change


BAD_BENCHES = [
    ("unknown-table", _set("extras", {"foo": 1}), ["unknown field 'extras'"]),
    ("misspelt-settle-time", _rename("matrix", "settle_time", "setle_time"),
     ["'matrix.setle_time'", "did you mean 'settle_time'"]),
    ("unknown-channel-field", _set("analyzer.channels.3.gain", 2),
     ["'analyzer.channels.3.gain'", "known fields here are channel, input, kind"]),
    ("analyzer-resource-missing", _set("analyzer.resource", ...),
     ["analyzer.resource is missing (VISA address of the 4156C, e.g. 'GPIB0::17::INSTR')"]),
    ("same-resource-twice", _set("matrix.resource", "GPIB0::17::INSTR"), ["each instrument has its own address"]),
    ("empty-resource", _set("matrix.resource", "  "), ["matrix.resource", "VISA address is empty"]),
    ("output-shared-by-two-lines", _first_bitline(24), ["output 24", "wordline 23", "bitline 0"]),
    ("output-beyond-the-cards", _first_bitline(49), ["bitlines[0] = 49", "outputs 1 to 48"]),
    ("pinmap-too-short", lambda d: d["pinmap"]["bitlines"].pop(0),
     ["[pinmap] bitlines has 23 entries", "[array] bitlines = 24"]),
    ("pinmap-entry-text", _first_bitline("25"), ["pinmap.bitlines.0 = '25'", "valid integer"]),
    ("pinmap-negative", _first_bitline(-1), ["bitlines[0] = -1", "0 marks a line that is not wired"]),
    ("ground-on-a-channel-input", _set("matrix.ground_input", 3), ["ground_input = 3", "channel 3"]),
    ("bitline-channel-not-listed", _set("analyzer.bitline_channel", 7), ["bitline_channel = 7", "SMU channels"]),
    ("bitline-channel-is-wordline-channel", _set("analyzer.bitline_channel", 1), ["two different SMUs"]),
    ("read-range-unknown", _set("analyzer.read_range", "fixed 3nA"), ["read_range", "not a 4156C current range"]),
    ("10pA-on-an-mpsmu", _both(_set("analyzer.read_range", "fixed 10pA"), _set("analyzer.channels.3.kind", "mpsmu")),
     ["only on HRSMUs", "[4]"]),
    ("two-channels-one-input", _set("analyzer.channels.3.input", 3), ["input 3", "channel 3", "channel 4"]),
    ("input-11", _set("analyzer.channels.3.input", 11), ["analyzer.channels.3.input = 11", "less than or equal to 10"]),
    ("vsu-number-as-smu", _set("analyzer.channels.3.channel", 21), ["analyzer.channels.3", "channel 21 cannot be a hrsmu"]),
    ("unknown-kind", _set("analyzer.channels.3.kind", "smu"), ["analyzer.channels.3.kind = 'smu'", "'hrsmu'"]),
    ("no-channels", _set("analyzer.channels", []), ["analyzer.channels = []", "at least 1"]),
    ("negative-timeout", _set("analyzer.timeout", -1), ["analyzer.timeout = -1", "greater than 0"]),
    ("compliance-above-100mA", _set("analyzer.read_compliance", 1), ["read_compliance = 1", "at most 0.1 A"]),
    ("unknown-matrix-config", _set("matrix.config", "automatic"), ["matrix.config = 'automatic'", "'auto'"]),
    ("two-cards-for-48-outputs", _set("matrix.cards", 2), ["outputs 1 to 24"]),
    ("nine-cards", _set("matrix.cards", 9), ["matrix.cards = 9", "less than or equal to 4", "E5252A cards installed"]),
    ("bool-cards", _set("matrix.cards", True), ["matrix.cards = True", "valid integer"]),
    ("settle-time-too-long", _set("matrix.settle_time", 11.0), ["matrix.settle_time = 11.0", "less than or equal to 10"]),
    ("negative-set-limit", _set("limits.max_set_voltage", -4.3), ["[limits]", "max_set_voltage"]),
    ("limit-as-text", _set("limits.max_read_voltage", "1.5"), ["limits.max_read_voltage = '1.5'", "valid number"]),
    ("unknown-integration", _set("analyzer.integration", "slow"), ["integration", "medium"]),
    ("misspelt-pinmap-table", lambda d: d.__setitem__("pin_map", d.pop("pinmap")),
     ["unknown field 'pin_map'", "did you mean 'pinmap'"]),
]


@pytest.mark.parametrize("change, words", [(c, w) for _, c, w in BAD_BENCHES], ids=[i for i, _, _ in BAD_BENCHES])
def test_bad_bench_files_fail_naming_the_problem_before_any_visa_resource(tmp_path, monkeypatch, bench_data, change,
                                                                          words):
    import pyvisa

    def no_visa(*a, **k):
        raise AssertionError("a VISA resource manager was created for an invalid bench file")

    monkeypatch.setattr(pyvisa, "ResourceManager", no_visa)
    change(bench_data)
    path = write_bench(tmp_path, bench_data)
    with pytest.raises(BenchError) as info:
        open_bench(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, f"{w!r} missing from: {msg}"
    # the same dict, validated without a file, gives the same message
    with pytest.raises(BenchError) as again:
        bench_from_data(bench_data, path)
    assert str(again.value) == msg


def test_missing_file_bad_toml_and_missing_sim_file(tmp_path, bench_data):
    with pytest.raises(BenchError, match="no such file"):
        load_bench(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[analyzer\nresource = 1")
    with pytest.raises(BenchError, match="not valid TOML"):
        load_bench(bad)
    bench_data["bench"]["visa_library"] = "@sim:missing.yaml"
    with pytest.raises(BenchError, match="missing.yaml does not exist"):
        load_bench(write_bench(tmp_path, bench_data))
    bench_data["bench"]["visa_library"] = "@sim"
    with pytest.raises(BenchError, match="@sim:default"):
        load_bench(write_bench(tmp_path, bench_data))


def test_unwired_lines_shrink_the_used_lines(tmp_path, bench_data):
    bench_data["pinmap"]["bitlines"][20:] = [0, 0, 0, 0]
    cfg = load_bench(write_bench(tmp_path, bench_data))
    assert cfg.geometry.used_bitlines == tuple(range(20))


# ----- the bench checker: everything checkable before connecting -----

@pytest.mark.parametrize("call, error, words", [
    (lambda c: c.check_pulse(*_half(3, 7, 3.5), 2e-6), SafetyError, ["0.5 ms to 100 ms", "--width"]),
    (lambda c: c.check_pulse(*_half(3, 7, 3.5), 2.05e-3), RequestError, ["0.1 ms grid"]),
    (lambda c: c.check_pulse(*_half(3, 7, 3.5), 2e-3, "tri"), RequestError, ["rectangular"]),
    (lambda c: c.check_pulse(*_half(3, 7, 4.5), 2e-3), SafetyError, ["line limit of 2.2 V"]),
    (lambda c: c.check_pulse(np.arange(24) * 0.05, np.zeros(24), 2e-3), RequestError, ["distinct line voltages"]),
    (lambda c: c.check_cells([(0, 21)]), GeometryError, ["bitline 21 has no matrix output"]),
    (lambda c: c.check_read_voltage(1.6), SafetyError, ["read limit"]),
], ids=["twin-width", "off-grid-width", "triangle", "over-line-limit", "too-many-levels", "unwired-bitline",
        "read-above-limit"])
def test_the_bench_checker_refuses_what_the_station_would_with_nothing_connected(tmp_path, bench_data, call, error,
                                                                                words):
    bench_data["pinmap"]["bitlines"][20:] = [0, 0, 0, 0]
    checker = load_bench(write_bench(tmp_path, bench_data)).checker()
    assert isinstance(checker, BenchChecker) and not isinstance(checker, ProbeStation)
    with pytest.raises(error) as info:
        call(checker)
    for w in words:
        assert w in str(info.value)


def test_an_ispp_plan_is_checked_against_the_bench_before_connecting(tmp_path, bench_data):
    from rramlab.protocols import ispp

    bench_data["pinmap"]["bitlines"][20:] = [0, 0, 0, 0]
    checker = load_bench(write_bench(tmp_path, bench_data)).checker()
    ok = ispp.IsppSettings(pulse_width_s=2e-3, cycles=1)
    assert ispp.plan(ok, (3, 7), checker).total_pulses == 62
    with pytest.raises(GeometryError, match="bitline 21"):
        ispp.plan(ok, (3, 21), checker)
    with pytest.raises(SafetyError, match="allowed 0.0005 to 0.1 s"):
        ispp.plan(ispp.IsppSettings(cycles=1), (3, 7), checker)


def _half(w, b, v):
    wl, bl = np.zeros(24), np.zeros(24)
    wl[w], bl[b] = v / 2, -v / 2
    return wl, bl


# ----- connecting -----

def test_open_bench_identifies_and_puts_the_bench_in_a_safe_state(tmp_path):
    log = tmp_path / "visa.log"
    st = open_bench(SIM_BENCH, visa_log=str(log))
    try:
        assert st.backend_name == "probe-station"
        assert "4156C" in st.identities["analyzer"] and "E5250A" in st.identities["matrix"]
        assert st.limits.min_pulse_width == 0.5e-3
        d = st.describe()
        assert d["backend"] == "probe-station" and d["pinmap"]["bitlines"][0] == 25
    finally:
        st.close()
    text = log.read_text().splitlines()
    writes = [line.split("  ")[-1].strip("'") for line in text if "  write  " in line]
    assert writes[:2] == ["*IDN?", "*IDN?"]     # both identified before anything else
    assert writes[2:4] == [":SYST:ERR?", "*RST"]   # stale errors drained, then the reset
    assert "US" in writes and "FMT 1,0" in writes and ":ROUT:FUNC ACON" in writes
    assert writes[-1] == ":SYST:ERR?" and "CL" in writes[-8:]


@pytest.mark.parametrize("table, resource", [("analyzer", "GPIB0::5::INSTR"), ("matrix", "GPIB0::6::INSTR")])
def test_a_wrong_resource_fails_naming_it_and_nothing_is_sent(tmp_path, bench_data, table, resource):
    bench_data[table]["resource"] = resource
    path = write_bench(tmp_path, bench_data)
    rec = Recorder()
    with pytest.raises(InstrumentError) as info:
        connect_bench(load_bench(path), on_message=rec)
    msg = str(info.value)
    assert f"[{table}] resource" in msg and resource in msg and "GPIB0::17::INSTR" in msg  # lists what exists
    assert rec.messages == []


def test_swapped_resources_are_caught_by_identification_alone(tmp_path, bench_data):
    bench_data["analyzer"]["resource"], bench_data["matrix"]["resource"] = "GPIB0::22::INSTR", "GPIB0::17::INSTR"
    path = write_bench(tmp_path, bench_data)
    rec = Recorder()
    with pytest.raises(InstrumentError, match=r"\[analyzer\] resource 'GPIB0::22::INSTR'.*not a 4156C"):
        connect_bench(load_bench(path), on_message=rec)
    assert rec.writes() == ["*IDN?"]


# ----- exact sequences -----

def test_exact_sequence_of_a_read(station, rec):
    i = station.read_cell(3, 7, 1.0)
    assert i == pytest.approx(4e-8)   # the bitline SMU sinks -40 nA: the cell current is +40 nA
    grounds = "01001:01003,01005:01031,01033:01048"
    assert rec.tagged() == [
        f"E5250A: :ROUT:CLOS (@00104,00232,{grounds})",  # wordline 3 -> SMU1, bitline 7 -> SMU2, rest ground
        "E5250A: *OPC?",
        "E5250A: :SYST:ERR?",
        "4156C: CN 1,2",
        "4156C: DV 2,11,0,0.0001",                       # the bitline SMU on the read compliance
        "4156C: DV 1,11,1,0.0001",
        "4156C: TI? 2,0",
        "4156C: DV 1,11,0,0.0001",
        "4156C: :SYST:ERR?",
    ]
    rec.clear()
    station.read_cell(3, 7, 1.0)  # same cell again: no switching, outputs already on
    assert rec.tagged() == ["4156C: DV 1,11,1,0.0001", "4156C: TI? 2,0", "4156C: DV 1,11,0,0.0001",
                            "4156C: :SYST:ERR?"]


def test_exact_sequence_of_a_half_bias_pulse_and_the_read_after_it(station, rec):
    station.read_cell(3, 7)
    rec.clear()
    station.pulse_cell(3, 7, 3.5, 30e-3)
    assert rec.tagged() == [
        "4156C: DV 2,11,-1.75,0.001",       # bitline bias on, just before the pulse
        "4156C: MM 3,1",                    # one pulsing SMU, pulsed spot measurement
        "4156C: RI 1,-17",                  # fixed range = the 1 mA compliance range
        "4156C: PT 0,0.03,0.034,0,0",       # width 30 ms, period width + 4 ms, priority 0: keep the width
        "4156C: PV 1,0,0,1.75,0.001",       # wordline +V/2, output range auto
        "4156C: XE",
        "4156C: RMD? 1",
        "4156C: DV 2,11,0,0.0001",          # bias off just after the pulse, back on the read compliance
        "4156C: :SYST:ERR?",
    ]
    assert station.last_pulse_current == pytest.approx(1e-6)
    rec.clear()
    station.pulse_cell(3, 7, 3.525, 30e-3)  # the next ISPP step: only what changes is sent
    assert rec.writes() == ["DV 2,11,-1.7625,0.001", "PV 1,0,0,1.7625,0.001", "XE", "RMD? 1",
                            "DV 2,11,0,0.0001", ":SYST:ERR?"]
    rec.clear()
    station.read_cell(3, 7)   # the bitline already holds 0 V on the read compliance: not resent
    assert rec.writes() == ["DV 1,11,1,0.0001", "TI? 2,0", "DV 1,11,0,0.0001", ":SYST:ERR?"]


def test_exact_sequence_of_one_vmm_time_step(station, rec):
    x = np.zeros(24)
    x[[0, 5]] = 1.0
    out = station.vmm(x, bitlines=range(4))
    assert out == pytest.approx([1e-8, 2e-8, 3e-8, 4e-8])
    grounds_first = "01002:01005,01007:01024,01028:01048"
    assert rec.tagged() == [
        f"E5250A: :ROUT:CLOS (@00101,00106,00225,00326,00427,{grounds_first})",
        "E5250A: *OPC?",
        "E5250A: :SYST:ERR?",
        "4156C: CN 1,2,3,4",
        "4156C: DV 2,11,0,0.0001", "4156C: DV 3,11,0,0.0001", "4156C: DV 4,11,0,0.0001",  # measuring SMUs
        "4156C: DV 1,11,1,0.0001",          # spikes on after the relays: wordlines switch cold
        "4156C: RI 2,0", "4156C: RI 3,0", "4156C: RI 4,0",
        "4156C: MM 1,2,3,4",
        "4156C: XE",
        "4156C: RMD? 3",
        "E5250A: :ROUT:OPEN (@00225,00326,00427,01028)",   # round 2: bitline 3 on SMU2, 0-2 back to ground
        "E5250A: *OPC?",
        "E5250A: :ROUT:CLOS (@00228,01025:01027)",
        "E5250A: *OPC?",
        "E5250A: :SYST:ERR?",
        "4156C: TI? 2,0",                   # one bitline left: a single query
        "4156C: DV 1,11,0,0.0001",
        "4156C: :SYST:ERR?",
    ]


def test_vmm_rounds_follow_the_number_of_measuring_smus(station, rec):
    x = np.ones((2, 24))
    out = station.vmm(x, bitlines=range(20))
    assert out.shape == (2, 20)
    w = rec.writes("4156C")
    # 3 measuring SMUs: ceil(20 / 3) = 7 rounds per step, six of three bitlines, the last of two by TI?
    assert w.count("XE") == 2 * 6 and w.count("RMD? 3") == 2 * 6
    assert w.count("TI? 2,0") == 2 and w.count("TI? 3,0") == 2
    # the second step starts on the group already connected: 6 switchings instead of 7
    assert rec.writes("E5250A").count(":SYST:ERR?") == 7 + 6


def test_a_step_without_spikes_sends_nothing(station, rec):
    out = station.vmm(np.zeros((3, 24)))
    assert out.shape == (3, 24) and not out.any()
    assert rec.messages == []


# ----- refusals before anything is sent -----

def _one(line, v):
    x = np.zeros(24)
    x[line] = v
    return x


@pytest.mark.parametrize("call, error, words", [
    (lambda s: s.pulse_cell(3, 7, 4.5, 2e-3), SafetyError, ["2.25 V", "line limit of 2.2 V"]),
    (lambda s: s.pulse(_one(3, 2.2), -_one(7, 2.2), 2e-3), SafetyError, ["+4.4 V", "set limit"]),
    (lambda s: s.pulse_cell(3, 7, -3.0, 2e-3), SafetyError, ["reset limit"]),
    (lambda s: s.pulse_cell(3, 7, 3.5, 2e-6), SafetyError, ["0.5 ms to 100 ms", "--width"]),
    (lambda s: s.pulse_cell(3, 7, 3.5, 0.2), SafetyError, ["0.5 ms to 100 ms"]),
    (lambda s: s.pulse_cell(3, 7, 3.5, 2.05e-3), RequestError, ["0.1 ms grid"]),
    (lambda s: s.pulse_cell(3, 7, 3.5, 2e-3, shape="tri"), RequestError, ["rectangular"]),
    (lambda s: s.pulse(np.arange(24) * 0.05, np.zeros(24), 2e-3), RequestError, ["distinct line voltages", "4 sources"]),
    (lambda s: s.pulse(np.zeros(24), np.zeros(24), 2e-3), RequestError, ["every line at 0 V"]),
    (lambda s: s.read_cell(3, 24), GeometryError, ["bitline 24"]),
    (lambda s: s.read_cell(3, 7, 2.0), SafetyError, ["read limit"]),
    (lambda s: s.vmm(np.array([[1.0] * 24, [0.2, 0.4, 0.6, 0.8] + [0.0] * 20])), RequestError,
     ["4 distinct wordline voltages", "at most 3"]),
])
def test_requests_the_bench_cannot_carry_out_are_refused_before_any_command(station, rec, call, error, words):
    with pytest.raises(error) as info:
        call(station)
    for w in words:
        assert w in str(info.value), f"{w!r} missing from: {info.value}"
    assert rec.messages == []


def test_check_pulse_refuses_the_twins_width_for_a_whole_plan(station, rec):
    wl = np.zeros(24)
    wl[3] = 1.5
    bl = np.zeros(24)
    bl[7] = -1.5
    with pytest.raises(SafetyError, match="0.5 ms to 100 ms"):
        station.check_pulse(wl, bl, 2e-6)
    assert station.check_pulse(wl, bl, 2e-3)[2] == pytest.approx(2e-3)
    assert rec.messages == []


def test_unwired_lines_are_refused(tmp_path, bench_data, rec):
    bench_data["pinmap"]["bitlines"][20:] = [0, 0, 0, 0]
    path = write_bench(tmp_path, bench_data)
    st = sim_station(path, recorder=rec)
    try:
        with pytest.raises(GeometryError, match="bitline 21 has no matrix output"):
            st.read_cell(0, 21)
        with pytest.raises(GeometryError, match="bitline 20"):
            st.vmm(np.ones(24))
        assert st.vmm(np.ones(24), bitlines=range(20)).shape == (20,)
    finally:
        st.close()


def test_a_row_parallel_pattern_within_the_sources_is_built(station, rec):
    wl = np.full(24, 1.0)
    wl[3] = 2.0
    bl = np.full(24, 0.5)
    bl[[1, 2]] = 0.0
    station.pulse(wl, bl, 1e-3)
    w = rec.writes("4156C")
    assert "PV 1,0,0,2,0.001" in w                      # the selected wordline pulses
    assert {"DV 2,11,0.5,0.001", "DV 3,11,1,0.001"} <= set(w)   # inhibit bitlines and other wordlines: DC
    assert w.index("DV 2,11,0.5,0.001") < w.index("XE") < w.index("DV 2,11,0,0.0001")


# ----- errors, timeouts and Ctrl-C leave the bench safe -----

@pytest.mark.parametrize("trigger, mode, op, error", [
    ("XE", "error", "pulse", InstrumentReportedError),
    ("RMD? 1", "timeout", "pulse", VisaTimeoutError),
    ("TI? 2,0", "timeout", "read", VisaTimeoutError),
    ("TI? 2,0", "interrupt", "read", KeyboardInterrupt),
    ("DV 2,11,-1.75,0.001", "interrupt", "pulse", KeyboardInterrupt),
    ("RMD? 3", "error", "vmm", InstrumentReportedError),
    ("TI? 2,0", "reply", "read", ComplianceError),
    ("RMD? 1", "reply", "pulse", ComplianceError),
])
def test_errors_mid_protocol_leave_outputs_at_zero_switches_off_and_matrix_open(trigger, mode, op, error):
    reply = {"TI? 2,0": "008BI-1.000000E-04", "RMD? 1": "136AI+1.000000E-03"}.get(trigger, "")
    rec = Recorder()
    nth = 2 if trigger == "TI? 2,0" else 1  # the warm-up read below sends TI? 2,0 once
    st = sim_station(recorder=rec, manager=FaultyManager("GPIB0::17::INSTR", trigger=trigger, mode=mode,
                                                         reply=reply, nth=nth))
    try:
        st.read_cell(3, 7)   # a working operation first, so outputs are on and crosspoints closed
        before = BenchState(rec.messages)
        assert before.on and before.closed
        with pytest.raises(error) as info:
            if op == "pulse":
                st.pulse_cell(3, 7, 3.5, 30e-3)
            elif op == "read":
                st.read_cell(3, 7)
            else:
                st.vmm(np.ones(24), bitlines=range(6))
        if error is InstrumentReportedError:
            assert info.value.code == -113 and "Undefined header" in str(info.value)
        after = BenchState(rec.messages)
        assert after.safe, (after.volts, after.on, after.closed)
        assert rec.writes("E5250A")[-2:] == [":ROUT:OPEN:CARD ALL", "*OPC?"]
        assert rec.writes("4156C")[-1] == "CL"
        # the station is still usable: the next operation re-routes and switches outputs on
        rec.clear()
        st.read_cell(3, 7)
        assert rec.writes("4156C")[0] == "CN 1,2"
    finally:
        st.close()


def test_a_compliance_during_a_read_says_so(station):
    station.analyzer.io.resource = _Swap(station.analyzer.io.resource, "TI? 2,0", "008BI-1.000000E-04")
    with pytest.raises(ComplianceError, match="read of cell \\(3,7\\).*compliance"):
        station.read_cell(3, 7)


class _Swap:
    def __init__(self, inner, command, reply):
        self.inner, self.command, self.reply = inner, command, reply

        self.last = None

    def write(self, command):
        self.last = command
        return self.inner.write(command)

    def read(self):
        r = self.inner.read()
        return self.reply if self.last == self.command else r

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_context_manager_and_close_are_idempotent(rec):
    with sim_station(recorder=rec) as st:
        st.read_cell(0, 0)
    state = BenchState(rec.messages)
    assert state.safe
    n = len(rec.messages)
    st.close()
    st.reset_outputs()
    assert len(rec.messages) == n
    with pytest.raises(InstrumentError, match="closed"):
        st.read_cell(0, 0)


def test_an_ispp_like_run_end_to_end(station, rec):
    """What protocols.ispp does: check the whole plan, then pulse and read, cycle after cycle."""
    for v in (3.0, 3.025, -1.0):
        wl = np.zeros(24)
        bl = np.zeros(24)
        wl[3], bl[7] = v / 2, -v / 2
        station.check_pulse(wl, bl, 2e-3)
    reads = []
    for v in (3.0, 3.025, -1.0):
        station.pulse_cell(3, 7, v, 2e-3)
        reads.append(station.read_cell(3, 7))
    assert reads == pytest.approx([4e-8] * 3)
    assert rec.writes("4156C").count("XE") == 3
    assert rec.writes("E5250A").count(":SYST:ERR?") == 1   # switched once, for the first pulse


# ----- bench check -----

def test_bench_check_on_the_sim_bench_prints_identities_and_pin_map():
    out = io.StringIO()
    assert check_bench(SIM_BENCH, out=out) == 0
    text = out.getvalue()
    assert "HEWLETT-PACKARD,4156C" in text and "E5250A" in text
    assert "wordline  3: output  4" in text and "bitline  7: output 32" in text
    assert "input 10: ground" in text and text.rstrip().endswith("bench check OK")


def test_bench_check_fails_clearly_without_a_traceback(tmp_path):
    out = io.StringIO()
    data = sim_bench_data()
    data["matrix"]["cards"] = 9
    assert check_bench(write_bench(tmp_path, data), out=out) == 2
    assert "FAILED" in out.getvalue() and "matrix.cards = 9" in out.getvalue()
    out = io.StringIO()
    data = sim_bench_data()
    data["matrix"]["resource"] = "GPIB0::9::INSTR"
    bad = write_bench(tmp_path, data, name="b.toml")
    assert check_bench(bad, out=out) == 1
    assert "FAILED" in out.getvalue() and "GPIB0::9::INSTR" in out.getvalue()
    assert "Traceback" not in out.getvalue()


def test_open_bench_errors_are_rramlab_errors():
    assert issubclass(BenchError, RramlabError) and issubclass(VisaTimeoutError, RramlabError)
    assert ProbeStation.backend_name == "probe-station"


# ----- the command line, end to end on the pyvisa-sim bench -----

def test_rramlab_ispp_runs_end_to_end_on_the_sim_bench(tmp_path, capsys):
    from rramlab.app.cli import main

    log = tmp_path / "visa.log"
    rc = main(["ispp", "--bench", str(SIM_BENCH), "--cell", "3,7", "--width", "2e-3", "--cycles", "1",
               "--no-progress", "--visa-log", str(log)])
    assert rc == 0
    lines = log.read_text().splitlines()
    writes = [ln for ln in lines if "  write  " in ln]
    # one cycle: set 3.0 -> 4.2 V in 25 mV (49 pulses) and reset -1.0 -> -1.6 V in 50 mV (13 pulses)
    assert sum("'XE'" in ln for ln in writes) == 49 + 13
    assert sum("'TI? 2,0'" in ln for ln in writes) == 49 + 13
    assert writes[-1].endswith("':SYST:ERR?'") and any("':ROUT:OPEN:CARD ALL'" in ln for ln in writes[-6:])


@pytest.mark.parametrize("argv, change, words", [
    (["--set-stop", "4.5", "--width", "2e-3"], None, ["--set-stop", "4.5"]),
    (["--read-v", "1.6", "--width", "2e-3"], None, ["read"]),
    (["--width", "2e-3", "--cell", "3,21"], ("pinmap.bitlines", [25 + i if i < 20 else 0 for i in range(24)]),
     ["bitline 21 has no matrix output"]),
    ([], None, ["allowed 0.0005 to 0.1 s"]),
    (["--width", "2e-3"], ("limits.max_set_voltage", 4.0), ["allowed 0 to 4 V"]),
], ids=["set-stop-above-4.3V", "read-above-1.5V", "unwired-bitline", "twin-width-2us", "bench-narrows-set-limit"])
def test_rramlab_ispp_refuses_a_bad_plan_with_zero_visa_writes(tmp_path, monkeypatch, capsys, bench_data, argv, change,
                                                               words):
    """The plan is checked against the bench file's checker before any VISA resource manager exists."""
    import pyvisa

    from rramlab.app.cli import main

    made = []

    def counting_rm(*a, **k):
        made.append(a)
        raise AssertionError("a VISA resource manager was created for a plan the bench file refuses")

    monkeypatch.setattr(pyvisa, "ResourceManager", counting_rm)
    if change is not None:
        table, key = change[0].split(".")
        bench_data[table][key] = change[1]
    bench = write_bench(tmp_path, bench_data)
    log = tmp_path / "visa.log"
    argv = ["ispp", "--bench", str(bench), "--cycles", "1", "--no-progress", "--visa-log", str(log)] + argv
    if "--cell" not in argv:
        argv += ["--cell", "3,7"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    for w in words:
        assert w in err, f"{w!r} missing from {err}"
    assert made == [] and (not log.exists() or log.read_text() == "")


# ----- bench check and bench safe -----

def test_bench_check_prints_the_safe_operating_area_in_force():
    out = io.StringIO()
    assert check_bench(SIM_BENCH, out=out) == 0
    text = out.getvalue()
    assert "Safe operating area in force" in text
    for line in ("max_set_voltage    +4.3 V", "min_reset_voltage  -2.5 V", "max_read_voltage   +1.5 V",
                 "max_line_voltage   +2.2 V", "min_pulse_width    0.5 ms", "max_pulse_width    100 ms"):
        assert line in text, f"{line!r} missing from:\n{text}"


def test_rramlab_bench_safe_returns_the_sim_bench_to_the_safe_state_without_a_reset(tmp_path, capsys):
    from rramlab.app.cli import main

    log = tmp_path / "visa.log"
    assert main(["bench", "safe", str(SIM_BENCH), "--visa-log", str(log)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("bench safe OK")
    lines = log.read_text().splitlines()
    messages = [(ln.split()[1], ln.split()[2], ln.split("  ")[-1].strip("'")) for ln in lines]
    writes = [f"{n}: {t}" for n, d, t in messages if d == "write"]
    assert writes[:2] == ["4156C: *IDN?", "E5250A: *IDN?"]
    assert "4156C: *RST" not in writes and "E5250A: *RST" not in writes   # a killed run's state is not reset away
    order = [writes.index(w) for w in ("4156C: US", "4156C: DV 1,11,0,0.0001", "4156C: DV 4,11,0,0.0001",
                                       "4156C: CL", "E5250A: :ROUT:OPEN:CARD ALL", "E5250A: *OPC?",
                                       "E5250A: :ROUT:CLOS:CARD? 0")]
    assert order == sorted(order)
    # as if the killed run had left everything on: the commands sent end in the safe state
    state = BenchState([("4156C", "write", "CN 1,2,3,4"), ("4156C", "write", "DV 2,11,-1.75,0.001"),
                        ("E5250A", "write", ":ROUT:CLOS (@00104,00232)")] + messages)
    assert state.safe, (state.volts, state.on, state.closed)


def test_bench_safe_fails_clearly_when_the_matrix_still_reports_a_closed_crosspoint(capsys):
    out = io.StringIO()
    manager = FaultyManager("GPIB0::22::INSTR", trigger=":ROUT:CLOS:CARD? 0", mode="reply", reply="(@105)")
    assert safe_bench(SIM_BENCH, out=out, resource_manager=manager) == 1
    text = out.getvalue()
    assert "bench safe FAILED" in text and "(1, 5)" in text and "Traceback" not in text


# ----- two threads -----

def test_two_threads_hammering_one_station_never_interleave_commands():
    """Each thread's messages come in whole operations: a run of one thread's messages always ends
    with the operation's closing error-queue reply, and no operation fails."""
    stream = []
    lock = threading.Lock()

    def record(name, direction, text):
        with lock:
            stream.append((threading.get_ident(), name, direction, text))

    st = connect_bench(load_bench(SIM_BENCH), on_message=record)
    stream.clear()
    errors = []
    start = threading.Barrier(2)

    def work(cell, n):
        start.wait()
        try:
            for k in range(n):
                st.read_cell(*cell)
                if k % 3 == 0:
                    st.pulse_cell(*cell, 3.0, 1e-3)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(cell, 25)) for cell in ((3, 7), (5, 9))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
        st.close()
    assert errors == []
    runs = []
    for ident, name, direction, text in stream:
        if not runs or runs[-1][0] != ident:
            runs.append([ident, []])
        runs[-1][1].append((name, direction, text))
    runs = [r for r in runs if r[0] != threading.get_ident()]  # close() in this thread
    assert len({ident for ident, _ in runs}) == 2 and len(runs) > 2   # the threads did take turns
    for ident, msgs in runs:
        assert msgs[-1][:2] == ("4156C", "read") and msgs[-1][2] == '+0,"No error"', msgs[-3:]


def test_bench_safe_still_zeroes_and_opens_everything_when_a_step_is_rejected(tmp_path):
    out = io.StringIO()
    rec = Recorder()
    manager = FaultyManager("GPIB0::17::INSTR", trigger="US", mode="error")
    config = load_bench(SIM_BENCH)
    st = connect_bench(config, resource_manager=manager, on_message=rec, initialise=False)
    try:
        with pytest.raises(InstrumentError) as info:
            st.make_safe()
    finally:
        st.close()
    assert "-113" in str(info.value) and "'US'" in str(info.value)
    writes = rec.tagged()
    for w in ("4156C: DV 1,11,0,0.0001", "4156C: DV 4,11,0,0.0001", "4156C: CL", "E5250A: :ROUT:OPEN:CARD ALL"):
        assert w in writes
    assert safe_bench(SIM_BENCH, out=out, resource_manager=FaultyManager("GPIB0::17::INSTR", trigger="US",
                                                                            mode="error")) == 1
    assert "bench safe FAILED" in out.getvalue() and "front panel" in out.getvalue()


@pytest.mark.parametrize("reply, words", [
    (",".join(["0"] * 239 + ["1"]), ["(10, 48)"]),
    (",".join(["0"] * 48), ["expected 240 states"]),
], ids=["a-ground-crosspoint-still-closed", "a-reply-of-the-wrong-length"])
def test_the_station_asks_every_crosspoint_of_the_bench_and_checks_the_answer(reply, words):
    """bench check and bench safe ask :ROUT:CLOS? for each input on each wired output."""
    asked = ":ROUT:CLOS? (@00101:00148,00201:00248,00301:00348,00401:00448,01001:01048)"
    station = connect_bench(load_bench(SIM_BENCH),
                            resource_manager=FaultyManager("GPIB0::22::INSTR", trigger=asked, mode="reply",
                                                           reply=reply))
    try:
        with pytest.raises(InstrumentError) as info:
            station.make_safe()
    finally:
        station.close()
    for w in words:
        assert w in str(info.value)


def test_a_closed_station_whose_safe_state_failed_never_reports_safe_later(station):
    """After a close whose safe-state sequence failed, a later reset_outputs must not claim 0 V."""
    def broken_safe_state():
        return ["CL was rejected"]

    station._safe_state = broken_safe_state
    with pytest.raises(InstrumentError, match="safe state"):
        station.close()
    with pytest.raises(InstrumentError, match="rramlab bench safe"):
        station.reset_outputs()
    assert not station.outputs_safe
