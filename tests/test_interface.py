"""The seam checks every request before a backend sees it."""

import math

import numpy as np
import pytest

from rramlab.drivers.interface import (ArrayGeometry, CrossbarInstrument, GeometryError, RequestError,
                               SafeOperatingArea, SafetyError, half_bias_voltages)


class RecordingBackend(CrossbarInstrument):
    """A backend that records what reaches it, to prove bad requests never do."""

    backend_name = "recording"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def _pulse(self, wordline_v, bitline_v, width, shape):
        self.calls.append(("pulse", wordline_v.copy(), bitline_v.copy(), width, shape))

    def _read(self, cells, v_read):
        self.calls.append(("read", cells, v_read))
        return [1e-9] * len(cells)

    def _vmm(self, wordline_v, bitlines):
        self.calls.append(("vmm", wordline_v.copy(), bitlines))
        return np.zeros((wordline_v.shape[0], len(bitlines)))

    def _reset_outputs(self):
        self.calls.append(("reset_outputs",))


@pytest.fixture
def inst():
    return RecordingBackend()


@pytest.mark.parametrize("voltage, pattern", [
    (4.31, r"\+4\.31 V, above the set limit of \+4\.3 V"),
    (5.0, r"above the set limit"),
    (-2.6, r"-2\.6 V, below the reset limit of -2\.5 V"),
])
def test_cell_voltage_beyond_the_limits_is_refused_before_the_backend(inst, voltage, pattern):
    with pytest.raises(SafetyError, match=pattern):
        inst.pulse_cell(3, 7, voltage, 2e-6)
    assert inst.calls == []


def test_the_limit_itself_is_allowed(inst):
    inst.pulse_cell(3, 7, 4.3, 2e-6)
    inst.pulse_cell(3, 7, -2.5, 2e-6)
    assert [c[0] for c in inst.calls] == ["pulse", "pulse"]
    _, wl, bl, width, shape = inst.calls[0]
    assert wl[3] == pytest.approx(2.15) and bl[7] == pytest.approx(-2.15)
    assert np.count_nonzero(wl) == 1 and np.count_nonzero(bl) == 1


def test_a_pulse_pattern_is_checked_over_every_cell_pair(inst):
    # No single line is extreme, but wordline 0 at +2.5 V meets bitline 5 at -2.0 V: 4.5 V.
    wl = np.zeros(24); wl[0] = 2.5
    bl = np.zeros(24); bl[5] = -2.0
    with pytest.raises(SafetyError, match=r"cell \(0,5\) would see \+4\.5 V"):
        inst.pulse(wl, bl, 1e-3)
    assert inst.calls == []


def test_set_limit_is_configurable():
    inst = RecordingBackend(limits=SafeOperatingArea(max_set_voltage=4.0))
    with pytest.raises(SafetyError, match="above the set limit of \\+4 V"):
        inst.pulse_cell(0, 0, 4.1, 1e-6)
    assert inst.calls == []


def test_read_above_its_limit_is_refused(inst):
    with pytest.raises(SafetyError, match=r"read voltage \+1\.6 V is beyond the read limit of 1\.5 V"):
        inst.read_cell(0, 0, 1.6)
    with pytest.raises(SafetyError, match="beyond the read limit"):
        inst.vmm(np.full(24, 2.0))
    assert inst.calls == []


@pytest.mark.parametrize("call", [
    lambda i: i.pulse_cell(24, 0, 3.0, 1e-6),
    lambda i: i.pulse_cell(0, -1, 3.0, 1e-6),
    lambda i: i.read_cell(0, 24),
    lambda i: i.read([(25, 1)]),
    lambda i: i.vmm(np.zeros(24), bitlines=[30]),
    lambda i: i.vmm(np.zeros(23)),
    lambda i: i.pulse(np.zeros(23), np.zeros(24), 1e-6),
])
def test_a_line_outside_the_array_is_refused(inst, call):
    with pytest.raises(GeometryError) as err:
        call(inst)
    assert inst.calls == []
    assert "24" in str(err.value) or "23" in str(err.value)


def test_line_index_error_names_the_range(inst):
    with pytest.raises(GeometryError, match=r"wordline 24 is outside the array: this array has 24 wordlines, numbered 0 to 23"):
        inst.read_cell(24, 0)


@pytest.mark.parametrize("width, pattern", [
    (0.0, "must be positive"), (-1e-6, "must be positive"),
    (2.0, "outside the allowed range"), (1e-12, "outside the allowed range"),
])
def test_bad_pulse_widths_are_refused(inst, width, pattern):
    with pytest.raises(SafetyError, match=pattern):
        inst.pulse_cell(0, 0, 3.0, width)
    assert inst.calls == []


@pytest.mark.parametrize("call", [
    lambda i: i.pulse_cell(0, 0, math.nan, 1e-6),
    lambda i: i.pulse_cell(0, 0, 3.0, math.nan),
    lambda i: i.pulse_cell(0, 0, math.inf, 1e-6),
    lambda i: i.read_cell(0, 0, math.nan),
    lambda i: i.vmm(np.full(24, np.nan)),
    lambda i: i.pulse_cell(0, 0, 3.0, 1e-6, shape="square"),
    lambda i: i.read_cell(0, 0, 0.0),
    lambda i: i.read([]),
])
def test_nan_and_malformed_requests_are_refused(inst, call):
    with pytest.raises(RequestError):
        call(inst)
    assert inst.calls == []


def test_context_manager_returns_outputs_to_zero_on_error_and_ctrl_c(inst):
    with pytest.raises(RuntimeError):
        with inst:
            inst.pulse_cell(0, 0, 3.0, 1e-6)
            raise RuntimeError("instrument fell over")
    assert inst.calls[-1] == ("reset_outputs",)
    inst.calls.clear()
    with pytest.raises(KeyboardInterrupt):
        with inst:
            raise KeyboardInterrupt
    assert inst.calls == [("reset_outputs",)]


def test_vmm_batch_and_single_step_shapes(inst):
    out = inst.vmm(np.zeros(24))
    assert out.shape == (24,)
    out = inst.vmm(np.zeros((25, 24)), bitlines=range(20))
    assert out.shape == (25, 20)


def test_vmm_checks_each_batch_from_its_own_extremes(inst):
    """check_vmm finds a batch's highest and lowest voltage once for every check (non-finite, read
    window, device ceiling): a batch checked earlier lends nothing to the next one."""
    safe = np.zeros((30, 24))
    inst.check_vmm(safe)
    for bad, error in ((np.full((30, 24), 1.6), SafetyError), (np.full((30, 24), -0.6), SafetyError),
                       (np.where(np.eye(30, 24) > 0, np.nan, 0.0), RequestError),
                       (np.where(np.eye(30, 24) > 0, -np.inf, 0.0), RequestError)):
        with pytest.raises(error):
            inst.vmm(bad)
    assert inst.calls == []
    assert inst.vmm(np.zeros((0, 24))).shape == (0, 24)


def test_half_bias_puts_half_the_voltage_on_each_selected_line():
    g = ArrayGeometry(24, 24)
    wl, bl = half_bias_voltages(g, 2, 5, 4.0)
    assert wl[2] == 2.0 and bl[5] == -2.0
    assert wl[2] - bl[5] == 4.0
    # half-selected cells see V/2, unselected 0
    assert wl[2] - bl[0] == 2.0 and wl[0] - bl[5] == 2.0 and wl[0] - bl[0] == 0.0


def test_narrowed_area_takes_the_tighter_limit():
    chip = SafeOperatingArea()
    smu = SafeOperatingArea(min_pulse_width=0.5e-3, max_pulse_width=0.1, max_set_voltage=10.0)
    both = chip.narrowed(smu)
    assert both.max_set_voltage == 4.3 and both.min_pulse_width == 0.5e-3 and both.max_pulse_width == 0.1


@pytest.mark.parametrize("kwargs", [dict(max_set_voltage=-1.0), dict(min_reset_voltage=0.5),
                                    dict(min_pulse_width=1.0, max_pulse_width=0.1),
                                    dict(max_read_voltage=math.nan), dict(min_read_voltage=0.5)])
def test_a_nonsense_safe_operating_area_is_refused(kwargs):
    with pytest.raises(SafetyError):
        SafeOperatingArea(**kwargs)


def test_geometry_rejects_used_lines_outside_the_array():
    with pytest.raises(GeometryError, match="used_bitlines"):
        ArrayGeometry(24, 24, used_bitlines=(0, 24))
    g = ArrayGeometry(24, 24, used_bitlines=tuple(range(20)))
    assert len(g.used_bitlines) == 20 and len(g.used_wordlines) == 24


# ----- the device's limits are a ceiling -----

from rramlab.drivers.interface import DEVICE_CEILING, READ_FLOOR_V, signals_deferred  # noqa: E402

WIDE = SafeOperatingArea(max_set_voltage=30.0, min_reset_voltage=-30.0, max_read_voltage=10.0,
                         max_line_voltage=30.0, min_read_voltage=-10.0)


def pulse_cell_voltages(calls):
    """The cell voltages V_wl - V_bl of every pulse that reached the backend (extremes of each)."""
    out = []
    for c in calls:
        if c[0] == "pulse":
            _, wl, bl, _, _ = c
            out += [float(wl.max() - bl.min()), float(wl.min() - bl.max())]
    return out


def try_pulses(inst, voltages):
    for v in voltages:
        try:
            inst.pulse_cell(0, 0, v, 1e-3)
        except SafetyError:
            pass


def test_the_ceiling_is_the_devices_safe_operating_area():
    assert DEVICE_CEILING.window("set") == (0.0, 4.3)
    assert DEVICE_CEILING.window("reset") == (-2.5, 0.0)
    assert DEVICE_CEILING.window("read") == (READ_FLOOR_V, 1.5) == (-0.5, 1.5)
    assert SafeOperatingArea().window("read") == (0.0, 1.5)  # the default read window has no negative reads


def test_wider_limits_given_at_construction_are_narrowed_to_the_ceiling(caplog):
    with caplog.at_level("WARNING"):
        inst = RecordingBackend(limits=WIDE)
    assert "max_set_voltage = 30 (ceiling 4.3)" in caplog.text
    assert inst.limits.window("set") == (0.0, 4.3) and inst.limits.window("read") == (-0.5, 1.5)
    try_pulses(inst, [4.3, 5.0, 8.0, 30.0, -2.5, -3.0, -30.0])
    volts = pulse_cell_voltages(inst.calls)
    assert max(volts) == pytest.approx(4.3) and min(volts) == pytest.approx(-2.5)
    with pytest.raises(SafetyError, match="above the set limit of \\+4.3 V"):
        inst.pulse_cell(0, 0, 4.4, 1e-3)


def test_wider_limits_assigned_later_are_narrowed_too():
    inst = RecordingBackend()
    inst.limits = WIDE
    assert inst.limits == DEVICE_CEILING
    try_pulses(inst, [30.0, 10.0, 4.31])
    assert inst.calls == []
    inst.limits = SafeOperatingArea(max_set_voltage=4.0)  # narrowing is always allowed
    with pytest.raises(SafetyError, match="above the set limit of \\+4 V"):
        inst.pulse_cell(0, 0, 4.1, 1e-3)
    with pytest.raises(RequestError, match="must be a SafeOperatingArea"):
        inst.limits = {"max_set_voltage": 30.0}


def test_limits_smuggled_past_the_property_still_meet_the_last_interlock():
    inst = RecordingBackend()
    inst._limits = WIDE  # a caller going around the property: the ceiling is checked again before _pulse
    with pytest.raises(SafetyError, match="beyond the HT-RRAM's own limits"):
        inst.pulse_cell(0, 0, 8.0, 1e-3)
    with pytest.raises(SafetyError, match="below the read limit of -0.5 V"):
        inst.read_cell(0, 0, -1.0)
    with pytest.raises(SafetyError, match="beyond the read limit of 1.5 V"):
        inst.vmm(np.full(24, 5.0))
    assert inst.calls == []


def test_a_chip_file_whose_limits_were_edited_to_9_volts_pulses_at_most_4_3_volts(tmp_path):
    import json

    from rramlab.sim.virtual_array import VirtualArray

    path = tmp_path / "chip.npz"
    VirtualArray.lone_device(engine="fast").save_chip(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta["limits"].update(max_set_voltage=9.0, max_line_voltage=9.0, min_reset_voltage=-9.0,
                          max_read_voltage=9.0, min_read_voltage=-9.0)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)

    chip = VirtualArray.load_chip(path)
    received = []
    real = chip._pulse
    chip._pulse = lambda wl, bl, width, shape: (received.append(float(wl.max() - bl.min())), real(wl, bl, width, shape))
    try_pulses(chip, [9.0, 8.0, 4.5, 4.3])
    assert received == [pytest.approx(4.3)]
    with pytest.raises(SafetyError):
        chip.read_cell(0, 0, 2.0)


@pytest.mark.parametrize("v_read, ok", [(1.5, True), (0.1, True), (-0.1, False), (1.51, False)])
def test_the_default_read_window_is_0_to_1_5_volts(inst, v_read, ok):
    if ok:
        inst.read_cell(0, 0, v_read)
        inst.vmm(np.full(24, v_read))
        assert [c[0] for c in inst.calls] == ["read", "vmm"]
    else:
        with pytest.raises(SafetyError, match="read limit"):
            inst.read_cell(0, 0, v_read)
        with pytest.raises(SafetyError, match="read limit"):
            inst.vmm(np.full(24, v_read))
        assert inst.calls == []


def test_a_negative_read_is_allowed_only_down_to_the_floor():
    inst = RecordingBackend(limits=SafeOperatingArea(min_read_voltage=-0.3))
    inst.read_cell(0, 0, -0.3)
    with pytest.raises(SafetyError, match="below the read limit of -0.3 V"):
        inst.read_cell(0, 0, -0.4)
    inst.limits = SafeOperatingArea(min_read_voltage=-1.5)  # past the reset onset: narrowed to the floor
    assert inst.limits.window("read") == (-0.5, 1.5)
    inst.read_cell(0, 0, -0.5)
    with pytest.raises(SafetyError, match="reset onset"):
        inst.read_cell(0, 0, -1.0)
    vmm_in = np.zeros(24); vmm_in[3] = -0.6
    with pytest.raises(SafetyError, match="vmm input -0.6 V is below the read limit"):
        inst.vmm(vmm_in)
    assert [c[0] for c in inst.calls] == ["read", "read"]


def test_a_negative_read_on_the_default_window_says_how_to_allow_one(inst):
    with pytest.raises(SafetyError, match="min_read_voltage"):
        inst.read_cell(0, 0, -0.2)


# ----- the safe-state sequence runs to its end -----

class SignalledReset(RecordingBackend):
    """A backend whose safe-state sequence is hit by real signals half-way through."""

    def __init__(self, signals, fail=False):
        super().__init__()
        self.signals, self.fail = signals, fail

    def _reset_outputs(self):
        import os

        self.calls.append(("sources to 0 V",))
        for sig in self.signals:
            os.kill(os.getpid(), sig)
        self.calls.append(("outputs off",))
        if self.fail:
            raise RuntimeError("the matrix did not answer")
        self.calls.append(("matrix open",))


def test_a_ctrl_c_inside_the_safe_state_sequence_waits_until_it_is_done():
    import signal

    before = signal.getsignal(signal.SIGINT)
    inst = SignalledReset([signal.SIGINT, signal.SIGINT, signal.SIGINT])
    with pytest.raises(KeyboardInterrupt):
        inst.reset_outputs()
    assert [c[0] for c in inst.calls] == ["sources to 0 V", "outputs off", "matrix open"]
    assert inst.outputs_safe
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_inside_the_safe_state_sequence_is_delivered_to_its_handler_afterwards():
    import signal

    seen = []
    old = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        inst = SignalledReset([signal.SIGTERM, signal.SIGHUP] if hasattr(signal, "SIGHUP") else [signal.SIGTERM])
        old_hup = signal.signal(signal.SIGHUP, lambda s, f: seen.append(s))
        try:
            inst.reset_outputs()
        finally:
            signal.signal(signal.SIGHUP, old_hup)
        assert [c[0] for c in inst.calls] == ["sources to 0 V", "outputs off", "matrix open"]
        assert seen == [signal.SIGTERM, signal.SIGHUP]  # after the sequence, in the order they came
    finally:
        signal.signal(signal.SIGTERM, old)


def test_outputs_safe_only_after_a_completed_reset(inst):
    assert not inst.outputs_safe
    inst.reset_outputs()
    assert inst.outputs_safe
    inst.pulse_cell(0, 0, 3.0, 1e-3)
    assert not inst.outputs_safe
    failing = SignalledReset([], fail=True)
    with pytest.raises(RuntimeError):
        failing.reset_outputs()
    assert not failing.outputs_safe


def test_reset_outputs_from_a_worker_thread_leaves_the_handlers_alone():
    import signal
    import threading

    before = signal.getsignal(signal.SIGINT)
    inst = RecordingBackend()
    errors = []
    t = threading.Thread(target=lambda: errors.append(inst.reset_outputs()))
    t.start(); t.join()
    assert errors == [None] and inst.outputs_safe and signal.getsignal(signal.SIGINT) is before


def test_signals_deferred_restores_handlers_when_nothing_arrived():
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with signals_deferred() as arrived:
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
    assert arrived == [] and {s: signal.getsignal(s) for s in before} == before


def test_a_bench_file_with_wider_limits_cannot_send_more_than_the_device_takes(tmp_path, caplog):
    from pathlib import Path

    from rramlab.drivers.probe_station import open_bench

    sim = Path(__file__).resolve().parents[1] / "drivers" / "benches" / "sim.toml"
    text = sim.read_text().replace("max_set_voltage = 4.3", "max_set_voltage = 6") \
                          .replace("max_read_voltage = 1.5", "max_read_voltage = 10") \
                          .replace("min_reset_voltage = -2.5", "min_reset_voltage = -8") \
                          .replace("max_line_voltage = 2.2", "max_line_voltage = 3")
    assert "max_set_voltage = 6" in text
    wide = tmp_path / "wide.toml"
    wide.write_text(text)  # "@sim:default" is rramlab's own simulation file wherever the bench file is
    sent = []
    with caplog.at_level("WARNING"):
        station = open_bench(wide)
    station.analyzer.io.on_message = lambda name, direction, cmd: sent.append(cmd)
    with station:
        assert station.limits.max_set_voltage == 4.3 and station.limits.window("read") == (0.0, 1.5)
        assert "max_set_voltage = 6 (ceiling 4.3)" in caplog.text
        with pytest.raises(SafetyError, match="above the set limit of \\+4.3 V"):
            station.pulse_cell(3, 7, 5.5, 2e-3)
        with pytest.raises(SafetyError, match="read limit"):
            station.read_cell(3, 7, 2.0)
        station.limits = WIDE
        with pytest.raises(SafetyError):
            station.pulse_cell(3, 7, 5.5, 2e-3)
        assert not [c for c in sent if c.startswith(("PV", "DV"))]
