"""The compact model's parameters and its switch rule."""

import numpy as np
import pytest

from rramlab.sim.device import DEFAULT_SWITCHES, DeviceParameters, Switch, next_switch_states
from rramlab.sim.sweep import dc_sweep, sweep_voltages


def test_default_switches_follow_table_1():
    rons = [s.on_resistance for s in DEFAULT_SWITCHES]
    assert len(DEFAULT_SWITCHES) == 8
    assert min(rons) >= 30e3 and max(rons) <= 62e6          # RON 30 kohm - 62 Mohm
    assert all(s.off_resistance == 1e12 for s in DEFAULT_SWITCHES)
    # turn-on thresholds spread over the set window, in order
    on = [s.turn_on_v for s in DEFAULT_SWITCHES]
    assert on == sorted(on) and 3.0 < on[0] and on[-1] < 4.2
    # turn-off thresholds bunched near -1 V: the reset is abrupt
    off = [s.turn_off_v for s in DEFAULT_SWITCHES]
    assert all(-1.6 < v < -0.9 for v in off)
    # thresholds never sit on the 25 mV pulse grid, where rounding noise would decide a flip
    for v in on + off:
        assert abs(v / 0.025 - round(v / 0.025)) > 0.1


def test_switch_rule_matches_ngspice_hysteresis():
    on_v, off_v = np.array([3.0]), np.array([-1.0])
    assert next_switch_states([False], on_v, off_v, [0, 2.9, 3.0, 0])[0] == False  # strict: 3.0 is not > 3.0
    assert next_switch_states([False], on_v, off_v, [0, 3.01, 0])[0] == True
    assert next_switch_states([True], on_v, off_v, [0, -0.99, 0])[0] == True      # inside the hysteresis: held
    assert next_switch_states([True], on_v, off_v, [0, -1.01, 0])[0] == False
    # the last crossing wins
    assert next_switch_states([False], on_v, off_v, [3.5, 0, -1.5, 0])[0] == False


def test_switch_from_thresholds_roundtrip():
    s = Switch.from_thresholds(3.3, -1.0, 1e6)
    assert s.turn_on_v == pytest.approx(3.3) and s.turn_off_v == pytest.approx(-1.0)
    assert s.hysteresis_v == pytest.approx(2.15)


@pytest.mark.parametrize("bad", [dict(switching_r0=0), dict(contact_r=-1), dict(switches=()),
                                 dict(switches=(Switch(1.0, -0.1, 1e6),)),
                                 dict(switches=(Switch(1.0, 2.0, 2e12),))])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        DeviceParameters(**bad)


def test_variability_is_reproducible_from_the_seed():
    p = DeviceParameters()
    a = p.with_variability(np.random.default_rng(5), 0.02, 0.1)
    b = p.with_variability(np.random.default_rng(5), 0.02, 0.1)
    c = p.with_variability(np.random.default_rng(6), 0.02, 0.1)
    assert a == b and a != c
    # VH is kept: on- and off-thresholds move together
    assert [s.hysteresis_v for s in a.switches] == [s.hysteresis_v for s in p.switches]


def _current_at(volts, current, v, start, stop):
    idx = [i for i in range(start, stop) if abs(volts[i] - v) < 1e-9]
    return current[idx[0]]


def test_dc_sweep_shows_the_gradual_set_and_the_reset():
    volts = sweep_voltages(4.2, -1.6, 0.025)
    current = dc_sweep(volts)
    peak, trough = int(np.argmax(volts)), int(np.argmin(volts))
    # before the set the 1 V current is HRS (a few nA); after the 4.2 V peak it is LRS (~80 nA)
    assert _current_at(volts, current, 1.0, 0, peak) < 5e-9
    assert 75e-9 < _current_at(volts, current, 1.0, peak, trough) < 85e-9
    # the negative branch resets it: back on the way up from -1.6 V, -1 V draws almost nothing
    assert abs(_current_at(volts, current, -1.0, trough, volts.size)) < 5e-9
    assert np.all(np.isfinite(current))


def test_the_set_is_gradual_a_higher_sweep_peak_leaves_a_higher_state():
    after = []
    for peak in (3.3, 3.5, 3.7, 3.9, 4.2):
        volts = sweep_voltages(peak, -0.5, 0.025)
        current = dc_sweep(volts)
        after.append(_current_at(volts, current, 1.0, int(np.argmax(volts)), volts.size))
    after = np.array(after)
    assert np.all(np.diff(after) > 5e-9), after           # each higher peak: a higher read level
    assert after[0] < 30e-9 and after[-1] > 75e-9          # from a low level to the top, not one jump


def test_stack_capacitances_follow_the_parallel_plate_arithmetic():
    from rramlab.sim.device import stack_capacitances

    c_hf, c_ti, c = stack_capacitances(10e-6)
    assert c_hf == pytest.approx(8.854e-12 * 20 * 1e-10 / 4.5e-9)
    assert c == pytest.approx(c_hf * c_ti / (c_hf + c_ti)) and c == pytest.approx(1.97e-12, rel=0.01)
    # the range for 2.5-20 um cells: about 0.1-8 pF
    assert 0.1e-12 < stack_capacitances(2.5e-6)[2] < 0.15e-12
    assert 7.5e-12 < stack_capacitances(20e-6)[2] < 8.0e-12


def test_partial_on_fraction_is_linear_in_overdrive_between_its_floor_and_one():
    from rramlab.sim.device import PARTIAL_FLOOR, partial_on_fraction

    f = partial_on_fraction([-0.01, 0.0, 0.003, 0.006, 0.0125], 0.006)
    assert list(f) == pytest.approx([PARTIAL_FLOOR, PARTIAL_FLOOR, 0.5, 1.0, 1.0])
    assert list(partial_on_fraction([0.0, 0.001], 0.0)) == [1.0, 1.0]   # window 0: all-or-nothing


def test_a_pulse_just_above_a_threshold_switches_part_of_the_area_and_a_higher_one_the_rest(tmp_path):
    from rramlab.sim.virtual_array import VirtualArray

    d = VirtualArray.lone_device(engine="fast")
    d.pulse_cell(0, 0, 3.2625 + 0.003, 2e-6)         # 3 mV over the first switch's turn-on: half of it
    assert d.switch_states[0, 0, 0] and d.switch_fraction[0, 0, 0] == pytest.approx(0.5)
    half = d.read_cell(0, 0)
    assert 4e-9 < half < 7e-9                        # between HRS (1.6 nA) and the 10 nA level
    again = VirtualArray.load_chip(d.save_chip(tmp_path / "c.npz"))
    assert again.read_cell(0, 0) == pytest.approx(half, rel=1e-9)   # the fraction is saved with the chip
    d.pulse_cell(0, 0, 3.275, 2e-6)                  # 12.5 mV over: fully on, the 10 nA level
    assert d.switch_fraction[0, 0, 0] == 1.0 and d.read_cell(0, 0) == pytest.approx(10e-9, abs=0.1e-9)
    d.pulse_cell(0, 0, -1.6, 2e-6)                   # the reset forgets it
    assert not d.switch_states[0, 0].any() and np.all(d.switch_fraction == 1.0)


def test_the_default_twin_has_the_stacks_capacitances_and_its_2us_set_pulses_land_on_the_0p1fF_levels():
    """The default device's Cs and Ci are the fabricated stack's under a 10 um cell (HfO2 and TiOx
    layers, 3.93 pF each), Table 1's preset keeps 0.1 fF; the switches follow the terminal voltage,
    which the source sets whatever Cs and Ci are, so 2 us set pulses on ngspice land on the levels of
    the 0.1 fF model (README, "Capacitances from the stack")."""
    import dataclasses

    from rramlab.sim.device import ARRAY_CELL_SIDE_M, DeviceParameters, device_preset, stack_capacitances
    from rramlab.sim.virtual_array import VirtualArray

    def levels(params):
        d = VirtualArray.lone_device(device=params, engine="spice")
        out = []
        for k in (0, 3, 7):
            d.pulse_cell(0, 0, 3.3 + 0.1 * k, 2e-6)
            out.append(d.read_cell(0, 0))
        return out

    c_hf, c_ti, _ = stack_capacitances(ARRAY_CELL_SIDE_M)
    default = VirtualArray().device
    assert ARRAY_CELL_SIDE_M == 10e-6 and default == DeviceParameters() == device_preset("measured")
    assert (default.switching_c, default.insulator_c) == (c_hf, c_ti)
    assert default.switching_c == pytest.approx(3.935e-12, rel=1e-3)
    assert default == device_preset("measured").with_stack_capacitance(10e-6)
    table1 = device_preset("table1")
    assert (table1.switching_c, table1.insulator_c) == (0.1e-15, 0.1e-15)
    small = dataclasses.replace(default, switching_c=0.1e-15, insulator_c=0.1e-15)
    np.testing.assert_allclose(levels(default), levels(small), atol=0.05e-9)
    np.testing.assert_allclose(levels(default), [10e-9, 40e-9, 80e-9], atol=0.1e-9)
    # the slowest read time constant: HRS, (Cs + Ci)(Rs || Ri) at 0 V
    assert default.read_time_constant_s() == pytest.approx(0.75e-3, rel=0.01)
    assert table1.read_time_constant_s() == pytest.approx(19e-9, rel=0.02)
