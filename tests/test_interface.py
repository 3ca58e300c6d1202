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
                                    dict(max_read_voltage=math.nan)])
def test_a_nonsense_safe_operating_area_is_refused(kwargs):
    with pytest.raises(SafetyError):
        SafeOperatingArea(**kwargs)


def test_geometry_rejects_used_lines_outside_the_array():
    with pytest.raises(GeometryError, match="used_bitlines"):
        ArrayGeometry(24, 24, used_bitlines=(0, 24))
    g = ArrayGeometry(24, 24, used_bitlines=tuple(range(20)))
    assert len(g.used_bitlines) == 20 and len(g.used_wordlines) == 24
