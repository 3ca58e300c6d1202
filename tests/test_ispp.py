"""ISPP end to end on the twin, and its small pure functions."""

import numpy as np
import pytest

from rramlab.drivers.interface import RequestError, SafetyError
from rramlab.protocols.ispp import (IsppSettings, distinct_levels, plan_pulses, reset_drop_fraction, run_ispp,
                            summarise_ispp, voltage_ramp)
from rramlab.sim.virtual_array import VirtualArray


def assert_measured_ispp_behaviour(records, cycles):
    """The paper's Fig. 4a, as the issue states it."""
    summaries = summarise_ispp(records)
    assert len(summaries) == cycles
    for cycle in range(1, cycles + 1):
        sets = [r.read_a for r in records if r.cycle == cycle and r.phase == "set"]
        resets = [r.read_a for r in records if r.cycle == cycle and r.phase == "reset"]
        assert len(sets) == 49 and len(resets) == 13
        assert sets[0] < 5e-9                                  # starts under 5 nA
        assert 75e-9 <= max(sets) <= 85e-9                     # rises to 75-85 nA
        assert np.all(np.diff(sets) >= -0.05e-9)               # LTP: never falls during the set ramp
        levels = distinct_levels(sets)
        assert len(levels) >= 8
        steps = np.diff(levels)
        assert np.all((steps > 6e-9) & (steps < 14e-9)), steps  # about 10 nA apart
        assert 1 - resets[2] / sets[-1] >= 0.60                 # abrupt reset: >= 60 % gone after 3 pulses
        assert resets[-1] < 10e-9                               # under 10 nA at the end of the ramp
    per_cycle = [[r.read_a for r in records if r.cycle == c] for c in range(1, cycles + 1)]
    for other in per_cycle[1:]:
        np.testing.assert_allclose(other, per_cycle[0], rtol=1e-3, atol=0.1e-9)  # the same in every cycle


@pytest.mark.parametrize("engine", ["spice", "fast"])
def test_three_cycle_ispp_of_a_lone_device_shows_the_measured_behaviour(engine):
    with VirtualArray.lone_device(engine=engine) as device:
        records = list(run_ispp(device, IsppSettings(cycles=3)))
    assert len(records) == 3 * 62
    assert_measured_ispp_behaviour(records, 3)
    assert records[0].pulse_v == 3.0 and records[48].pulse_v == 4.2
    assert records[49].pulse_v == -1.0 and records[61].pulse_v == -1.6


# ngspice takes about a second per array pulse: one cycle there, all three on the default engine.
@pytest.mark.parametrize("engine, cycles", [("spice", 1), ("auto", 3)])
def test_ispp_on_a_cell_of_the_24x24_array_shows_the_same_behaviour(engine, cycles):
    with VirtualArray(engine=engine) as chip:
        records = list(run_ispp(chip, IsppSettings(cycles=cycles), cell=(3, 7)))
        assert_measured_ispp_behaviour(records, cycles)
        # only the addressed cell was programmed; its neighbours on both lines stayed in HRS
        on = chip.switch_states.sum(axis=2)
        assert on[3, 7] == 0  # ended reset
        assert chip.read_cell(3, 8) < 5e-9 and chip.read_cell(4, 7) < 5e-9


def test_the_whole_plan_is_checked_before_the_first_pulse():
    device = VirtualArray.lone_device()
    # the 49th set pulse would exceed the 4.3 V limit: nothing may be applied at all
    with pytest.raises(SafetyError, match="beyond the set limit"):
        next(run_ispp(device, IsppSettings(set_stop_v=4.5)))
    assert device.pulse_count == 0
    with pytest.raises(SafetyError, match="beyond the reset limit"):
        next(run_ispp(device, IsppSettings(reset_start_v=1.0)))
    with pytest.raises(RequestError, match="cycles"):
        next(run_ispp(device, IsppSettings(cycles=0)))
    with pytest.raises(RequestError, match="not a whole number"):
        next(run_ispp(device, IsppSettings(set_stop_v=4.21)))
    assert device.pulse_count == 0


def test_plan_needs_no_instrument_and_the_seam_still_checks_a_wider_plan():
    from rramlab.drivers.interface import ArrayGeometry, RequestChecker, SafeOperatingArea
    from rramlab.protocols import ispp

    p = ispp.plan(IsppSettings(cycles=2), (3, 7))  # the device's limits, nothing connected
    assert p.total_pulses == 2 * 62 and (p.wordline, p.bitline) == (3, 7)
    narrow = RequestChecker(ArrayGeometry(), SafeOperatingArea(max_set_voltage=4.0))
    with pytest.raises(SafetyError, match="allowed 0 to 4 V"):
        ispp.plan(IsppSettings(), (3, 7), narrow)
    with pytest.raises(Exception, match="wordline 30 is outside the array"):
        ispp.plan(IsppSettings(), (30, 0))
    # a plan made against the default limits, run on an instrument with narrower ones: refused at the seam
    device = VirtualArray.lone_device()
    device.limits = SafeOperatingArea(max_set_voltage=4.0)
    runner = ispp.run(device, ispp.plan(IsppSettings(set_start_v=4.1, set_stop_v=4.2, cycles=1)))
    with pytest.raises(SafetyError, match="above the set limit"):
        next(runner)
    assert device.pulse_count == 0


def test_ispp_stops_between_pulses_when_asked():
    device = VirtualArray.lone_device()
    polls = []

    def stop_after_five_pulses():
        polls.append(1)
        return len(polls) > 5

    records = list(run_ispp(device, IsppSettings(), should_stop=stop_after_five_pulses))
    assert len(records) == 5 and device.pulse_count == 5


def test_voltage_ramp_lands_on_the_grid():
    ramp = voltage_ramp(3.0, 4.2, 0.025)
    assert len(ramp) == 49 and ramp[0] == 3.0 and ramp[-1] == 4.2
    assert ramp[12] == 3.3  # no float drift
    down = voltage_ramp(-1.0, -1.6, 0.05)
    assert len(down) == 13 and down[-1] == -1.6 and np.all(np.diff(down) < 0)
    assert list(voltage_ramp(-1.0, -1.6, -0.05)) == list(down)  # the sign of the step does not matter
    with pytest.raises(RequestError):
        voltage_ramp(3.0, 4.2, 0.0)


def test_plan_of_one_cycle():
    plan = plan_pulses(IsppSettings())
    assert [p[0] for p in plan].count("set") == 49 and [p[0] for p in plan].count("reset") == 13


def test_distinct_levels_groups_close_reads():
    assert distinct_levels([]) == []
    levels = distinct_levels(np.array([1.6, 1.7, 10.0, 10.1, 20.0, 30.2, 30.0]) * 1e-9)
    assert len(levels) == 4
    assert levels[1] == pytest.approx(10.05e-9)
    assert len(distinct_levels([0.0, 2.9e-9], tolerance_a=3e-9)) == 1
    assert len(distinct_levels([0.0, 3.1e-9], tolerance_a=3e-9)) == 2


def test_reset_drop_fraction():
    assert reset_drop_fraction(80e-9, [40e-9, 30e-9, 20e-9, 10e-9]) == pytest.approx(0.75)
    assert reset_drop_fraction(80e-9, [40e-9], pulses=3) == pytest.approx(0.5)
    assert np.isnan(reset_drop_fraction(0.0, [1e-9]))


def test_cycle_summaries_streamed_equal_the_summaries_of_all_records():
    from rramlab.protocols.ispp import CycleSummariser

    with VirtualArray.lone_device(engine="fast") as device:
        records = list(run_ispp(device, IsppSettings(cycles=3, set_start_v=3.9, reset_stop_v=-1.3)))
    summariser, streamed = CycleSummariser(), []
    for r in records:
        done = summariser.add(r)
        if done is not None:
            streamed.append(done)
            assert len(summariser._records) == 1  # only the new cycle's first record is held
    streamed.append(summariser.finish())
    assert summariser.finish() is None
    assert streamed == summarise_ispp(records) and [s.cycle for s in streamed] == [1, 2, 3]
