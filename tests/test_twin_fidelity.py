"""The twin's fidelity (issue 9): ngspice's own switch states, read disturb, pulse disturb, device
presets, a programming error that stays physical, the DC-width limit of the fast engine, Ri spread."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rramlab.drivers.interface import ArrayGeometry, half_bias_voltages
from rramlab.protocols.ispp import IsppSettings, run_ispp, summarise_ispp
from rramlab.sim.array import ArrayParameters
from rramlab.sim.device import (DEVICE_PRESETS, MEASURED_SWITCHES, TABLE1_SWITCHES, DeviceParameters, Switch,
                                device_preset, preset_name, zero_bias_conductance)
from rramlab.sim.nodal import device_current_exact
from rramlab.sim.virtual_array import (DC_MIN_WIDTH_S, VirtualArray, Variability, pulse_targets,
                                       states_from_switch_currents, truncated_normal)

WIRES = (0.0, 2.0, 100.0)


def random_states(rng, shape, n):
    """A programmed chip: each cell at a random level, a quarter with a random switch pattern."""
    W, B = shape
    k = rng.integers(0, n + 1, (W, B))
    states = np.arange(n)[None, None, :] < k[:, :, None]
    scrambled = rng.random((W, B)) < 0.25
    states[scrambled] = rng.random((int(scrambled.sum()), n)) < 0.5
    return states


def near_threshold_pulses(rng, chip, count, width):
    """Half-bias and row-parallel pulses, rect and tri, each within 60 mV of a threshold of the
    cell it is aimed at (a switch's turn-on for a set, turn-off for a reset)."""
    W, B = chip.geometry.shape
    on_v, off_v = chip.thresholds()
    out = []
    for i in range(count):
        shape = ("rect", "tri")[i % 2]
        w, b = int(rng.integers(0, W)), int(rng.integers(0, B))
        k = int(rng.integers(0, on_v.shape[-1]))
        if rng.random() < 0.6:
            v = float(np.clip(on_v[w, b, k] + rng.uniform(-0.06, 0.06), 3.0, 4.25))
        else:
            v = float(np.clip(off_v[w, b, k] + rng.uniform(-0.06, 0.06), -2.0, -0.8))
        if i % 4 < 2:
            wl, bl = half_bias_voltages(chip.geometry, w, b, v)
        else:  # row-parallel: selected wordline at V, written bitlines at 0 V, the rest at V/2
            wl = np.full(W, v / 2.0)
            wl[w] = v
            bl = np.where(rng.random(B) < 0.5, 0.0, v / 2.0)
        out.append((wl, bl, width, shape))
    return out


def chips(geometry, wire, seed, *engines):
    out = [VirtualArray(geometry, array=ArrayParameters(wire), variability=Variability.typical(), seed=seed,
                        engine=e) for e in engines]
    states = random_states(np.random.default_rng(seed), geometry.shape, out[0].device.n_switches)
    for chip in out:
        chip.switch_states = states.copy()
    return out


# ----- ngspice's own states ----------------------------------------------------------------------

@pytest.mark.parametrize("wire", WIRES)
def test_spice_engine_ends_every_pulse_in_the_states_of_one_continuous_ngspice_transient(wire):
    """engine="spice" runs one transient per pulse and carries the states as ON/OFF; the reference
    is one ngspice transient of the whole sequence, where only ngspice carries them (its switch
    currents read at a probe after each pulse). Identical after every pulse. The fast engine is then
    held to it: its flip disagreements are counted and bounded."""
    rng = np.random.default_rng(40 + int(wire))
    geometry = ArrayGeometry(8, 8)
    spice, fast, continuous = chips(geometry, wire, 40 + int(wire), "spice", "fast", "spice")
    start = spice.switch_states.copy()
    pulses = near_threshold_pulses(rng, spice, 10, 1e-5)
    stepwise, fast_disagree, changed = [], [], 0
    for pulse in pulses:
        before = spice.switch_states.copy()
        spice.pulse(*pulse)
        fast.switch_states = before.copy()  # each fast pulse starts from ngspice's state
        fast.pulse(*pulse)
        stepwise.append(spice.switch_states.copy())
        fast_disagree.append(int(np.any(fast.switch_states != spice.switch_states, axis=2).sum()))
        changed += int(np.any(spice.switch_states != before, axis=2).sum())
    continuous.switch_states = start
    reference = continuous._spice_transient(pulses)
    for k, (got, ref) in enumerate(zip(stepwise, reference)):
        assert np.array_equal(got, ref), f"pulse {k}: {np.argwhere(np.any(got != ref, axis=2)).tolist()}"
    assert changed >= 5                      # the pulses did reach thresholds
    print(f"wire {wire:g} ohm: {changed} cell changes, fast-engine disagreements per pulse {fast_disagree}")
    assert sum(fast_disagree) <= 1           # measured: 0 at 0, 2 and 100 ohm


def test_spice_states_do_not_change_when_its_time_step_is_halved_and_fast_agrees_on_row_pulses():
    """The reference converges on the near-threshold row-parallel pulses of the test above (100 ohm,
    the worst parasitics): ngspice with its largest time step halved and its rising edge drawn in
    half the segments (25 mV) ends every pulse in the same switch states, and the fast engine agrees
    with that converged reference."""
    wire = 100.0
    rng = np.random.default_rng(40 + int(wire))
    geometry = ArrayGeometry(8, 8)
    coarse, fine, fast = chips(geometry, wire, 40 + int(wire), "spice", "spice", "fast")
    fine.spice_steps_per_width = 2 * coarse.spice_steps_per_width
    fine.ramp_step_v = coarse.ramp_step_v / 2
    pulses = [p for i, p in enumerate(near_threshold_pulses(rng, coarse, 10, 1e-5)) if i % 4 >= 2]
    changed = 0
    for pulse in pulses:
        before = coarse.switch_states.copy()
        for chip in (fine, fast):
            chip.switch_states = before.copy()
            chip.switch_fraction = coarse.switch_fraction.copy()
        for chip in (coarse, fine, fast):
            chip.pulse(*pulse)
        changed += int(np.any(coarse.switch_states != before, axis=2).sum())
        assert np.array_equal(fine.switch_states, coarse.switch_states)
        assert np.array_equal(fast.switch_states, fine.switch_states)
    assert changed >= 3                      # the row pulses did reach thresholds


def test_a_switch_that_pulls_its_own_cell_below_threshold_stays_on():
    """Issue 9's case: cell (0,23) at 100 ohm with 7 switches on; the 3.975 V pulse turns the 8th on,
    whose own current pulls the cell back below its threshold: ngspice keeps it on (hysteresis), on
    both engines. The IR drop leaves the cell only 0.06 mV above that threshold before the flip, so
    the switch is barely on (partial on-state, about 1 %): the read (70.9 nA) lies just above the
    7-switch level (69.9 nA), well below the top level (79.9 nA) a full switch would give."""
    reads = {}
    for engine in ("spice", "fast"):
        chip = VirtualArray(array=ArrayParameters(100.0), engine=engine)
        chip.switch_states[0, 23, :7] = True
        seven = chip.read_cell(0, 23)
        chip.pulse_cell(0, 23, 3.975, 2e-6)
        assert chip.switch_states[0, 23].all()
        assert 0 < chip.switch_fraction[0, 23, 7] < 0.05
        reads[engine] = chip.read_cell(0, 23)
        assert seven + 0.5e-9 < reads[engine] < 79e-9
    assert reads["fast"] == pytest.approx(reads["spice"], rel=1e-6)


def test_switch_states_are_read_from_switch_currents():
    g_on = np.array([[1e-6, 1e-7]])
    g_off = np.array([1e-12, 1e-12])
    v = np.array([0.01])
    assert states_from_switch_currents(np.array([[1e-8, 1e-14]]), v, g_on, g_off).tolist() == [[True, False]]
    # the sign of the current does not matter, only the conductance it shows
    assert states_from_switch_currents(np.array([[-1e-14, -1e-9]]), -v, g_on, g_off).tolist() == [[False, True]]


# ----- disturb ---------------------------------------------------------------------------------

def _low_threshold_device():
    """A device whose last switch turns on at +1.2 V: a 1.3 V read reaches it."""
    switches = list(MEASURED_SWITCHES[:-1]) + [Switch.from_thresholds(1.2, -0.9875, 54.6e3)]
    return DeviceParameters(switches=tuple(switches))


@pytest.mark.parametrize("kind", ["read", "vmm"])
def test_a_read_that_crosses_a_threshold_disturbs_the_same_way_on_both_engines_and_is_kept(kind):
    geometry = ArrayGeometry(4, 5)
    out = {}
    for engine in ("spice", "fast"):
        chip = VirtualArray(geometry, device=_low_threshold_device(), array=ArrayParameters(100.0), engine=engine)
        chip.switch_states[2, :, :3] = True   # wordline 2 at a low level, the last switch off
        if kind == "read":
            first = chip.read([(2, 1), (2, 3)], 1.3)
        else:
            x = np.zeros(4)
            x[2] = 1.3
            first = chip.vmm(x)
        out[engine] = (first, chip.switch_states.copy(), list(chip.last_read_disturbed), chip.disturb_count,
                       chip.read_cell(2, 1, 1.0))
    spice, fast = out["spice"], out["fast"]
    assert np.array_equal(spice[1], fast[1])
    assert spice[1][2, :, -1].all() and not spice[1][[0, 1, 3], :, -1].any()  # every cell of wordline 2
    assert spice[2] == fast[2] == [(2, b) for b in range(5)] and spice[3] == fast[3] == 5
    np.testing.assert_allclose(fast[0], spice[0], rtol=1e-3)   # the currents after the flip
    assert spice[4] == pytest.approx(fast[4], rel=1e-3) and fast[4] > 60e-9   # kept: the next read sees it


def test_an_ordinary_read_disturbs_nothing_and_costs_no_extra_solve(monkeypatch):
    chip = VirtualArray(engine="fast")
    chip.switch_states[:] = np.random.default_rng(1).random(chip.switch_states.shape) < 0.5
    before = chip.switch_states.copy()
    monkeypatch.setattr(VirtualArray, "_crossing", lambda *a: pytest.fail("no read at 1 V can reach a threshold"))
    chip.read([(0, 0), (5, 7)], 1.0)
    chip.vmm(np.ones((30, 24)))
    assert np.array_equal(chip.switch_states, before) and chip.last_read_disturbed == [] and chip.disturb_count == 0


def test_a_half_bias_reset_below_minus_2_v_disturbs_every_half_selected_cell_and_says_so():
    chip = VirtualArray(engine="fast")
    chip.switch_states[:] = True                      # every cell at 80 nS
    chip.pulse_cell(7, 11, -2.2, 2e-6)
    disturbed = set(chip.last_pulse_disturbed)
    half_selected = {(7, b) for b in range(24) if b != 11} | {(w, 11) for w in range(24) if w != 7}
    assert disturbed == half_selected and len(disturbed) == 46
    assert (7, 11) not in disturbed and chip.disturb_count == 46
    chip.pulse_cell(3, 3, 4.2, 2e-6)                  # a set: half-selected cells see 2.1 V, nothing moves
    assert chip.last_pulse_disturbed == [] and chip.disturb_count == 46


def test_pulse_targets_are_the_cells_that_see_the_largest_voltage():
    g = ArrayGeometry(3, 4)
    assert np.argwhere(pulse_targets(*half_bias_voltages(g, 1, 2, 4.0))).tolist() == [[1, 2]]
    wl = np.array([1.5, 3.0, 1.5])
    bl = np.array([0.0, 1.5, 0.0, 1.5])                # row-parallel: bitlines 0 and 2 written
    assert np.argwhere(pulse_targets(wl, bl)).tolist() == [[1, 0], [1, 2]]
    assert not pulse_targets(np.zeros(3), np.zeros(4)).any()


# ----- presets -----------------------------------------------------------------------------------

def test_table1_preset_is_table_1_literally():
    # paper Table 1: S1..Sn VT 0.85-1.55 V, VH 2.4 V, RON 30 kohm - 62 Mohm, ROFF 1e12 ohm
    p = device_preset("table1")
    vt = [s.threshold_v for s in p.switches]
    np.testing.assert_allclose(vt, np.linspace(0.85, 1.55, 8), atol=1e-12)
    assert all(s.hysteresis_v == 2.4 for s in p.switches)
    assert all(30e3 <= s.on_resistance <= 62e6 and s.off_resistance == 1e12 for s in p.switches)
    # the rest of Table 1
    assert (p.switching_r0, p.switching_v0, p.switching_k) == (51e5, 2.52, 0.35)
    assert (p.insulator_r0, p.insulator_v0, p.insulator_k) == (87e2, 4.52, 0.485)
    assert (p.contact_r, p.switching_c, p.insulator_c) == (100.0, 0.1e-15, 0.1e-15)  # Table 1's; the default's: the stack's
    assert p.switches == TABLE1_SWITCHES and preset_name(p) == "table1"


def test_measured_preset_is_the_fit_to_the_measured_ispp():
    # issue 9: VT 0.99-1.49 V and a per-switch VH of 2.275-2.475 V; turn-on 3.2625 + 0.1 k V, off the
    # 25 mV grid; turn-off bunched near -1 V (the abrupt reset of Fig. 4a)
    p = device_preset("measured")
    assert p == DeviceParameters() and p.switches == MEASURED_SWITCHES and preset_name(p) == "measured"
    vt = np.array([s.threshold_v for s in p.switches])
    vh = np.array([s.hysteresis_v for s in p.switches])
    assert vt.min() == pytest.approx(0.9875) and vt.max() == pytest.approx(1.4875)
    assert vh.min() == pytest.approx(2.275) and vh.max() == pytest.approx(2.475)
    np.testing.assert_allclose([s.turn_on_v for s in p.switches], 3.2625 + 0.1 * np.arange(8))
    assert sorted(DEVICE_PRESETS) == ["measured", "table1"]
    with pytest.raises(ValueError, match="table1"):
        device_preset("tabel1")


def _ispp(device):
    with VirtualArray.lone_device(device=device, engine="fast") as chip:
        records = list(run_ispp(chip, IsppSettings(cycles=1)))
    resets = [r.read_a for r in records if r.phase == "reset"]
    return summarise_ispp(records)[0], resets


def test_table1_ispp_resets_in_a_staircase_and_measured_in_a_cliff():
    measured, m_resets = _ispp("measured")
    table1, t_resets = _ispp("table1")
    assert measured.reset_drop_3 >= 0.7                     # cliff: 75 % gone after 3 pulses
    assert table1.reset_drop_3 < 0.5                        # staircase
    levels = len({round(r * 1e9) for r in t_resets})
    assert levels >= 5                                      # several steps down, not one
    first_low = next(i for i, r in enumerate(t_resets) if r < 5e-9)
    assert -1.6 <= -1.0 - 0.05 * first_low <= -1.45         # reaches HRS only near -1.6 V
    assert max(r for r in t_resets) < 80e-9 and table1.set_levels >= 8


# ----- programming error ---------------------------------------------------------------------------

def test_no_cell_of_any_chip_reads_below_zero_at_a_positive_read_voltage():
    lowest = np.inf
    for seed in range(20):
        rng = np.random.default_rng(seed)
        chip = VirtualArray(ArrayGeometry(12, 12), variability=Variability.typical(), seed=seed, engine="fast")
        k = rng.integers(0, 9, chip.geometry.shape)
        k[rng.random(k.shape) < 0.5] = 0                   # half the cells in HRS, the rest at levels
        chip.switch_states = np.arange(8)[None, None, :] < k[:, :, None]
        cells = [(w, b) for w in range(12) for b in range(12)]
        chip.programming_done(cells)
        for v in (0.05, 0.2, 1.0):
            lowest = min(lowest, float(chip.read(cells, v).min()))
    assert lowest > 0
    # 2,000 lone devices in HRS (a row without parasitics: its devices do not interact), the case in
    # which the issue found 11 of 200 reading below 0 A at +1 V
    reads = []
    for seed in range(10):
        row = VirtualArray(ArrayGeometry(1, 200), array=ArrayParameters(0.0, 0.0), seed=seed, engine="fast")
        cells = [(0, b) for b in range(200)]
        row.programming_done(cells)
        reads.append(row.read(cells, 1.0))
    reads = np.concatenate(reads)
    assert reads.min() > 0 and np.mean(reads > 1.6e-9) > 0.4   # the error still spreads them upwards


def test_the_programming_error_never_takes_a_cell_below_its_hrs_floor():
    p = DeviceParameters()
    g_all_off = 8e-12
    floor = zero_bias_conductance(g_all_off, p)
    assert 0 < floor < 0.5e-9
    # chord conductance I/V of the device only grows with V: the zero-bias value is the smallest
    v = np.linspace(0.01, 1.5, 50)
    for g in (g_all_off, 1 / 61.5e6, 2e-5):
        i, _ = device_current_exact(v, g, p)
        assert np.all(i / v >= zero_bias_conductance(g, p) * (1 - 1e-9))
    rng = np.random.default_rng(0)
    draws = np.array([truncated_normal(rng, 1.06e-9, -0.3e-9) for _ in range(2000)])
    assert draws.min() >= -0.3e-9 and abs(np.mean(draws > 2e-9) - 0.03) < 0.02


# ----- where the fast engine's DC view ends ---------------------------------------------------------

def test_pulses_shorter_than_the_dc_limit_go_to_ngspice_on_auto_and_warn_on_fast():
    g = ArrayGeometry(3, 3)
    auto = VirtualArray(g, engine="auto")
    fast = VirtualArray(g, engine="fast")
    short = DC_MIN_WIDTH_S / 3
    auto.pulse_cell(1, 1, 4.2, short)
    assert auto.spice_pulses == 1 and auto.switch_states[1, 1].all()
    with pytest.warns(RuntimeWarning, match="shorter than"):
        fast.pulse_cell(1, 1, 4.2, short)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast.pulse_cell(1, 1, -1.6, DC_MIN_WIDTH_S)        # at the limit: no warning
        auto.pulse_cell(1, 1, -1.6, DC_MIN_WIDTH_S)
    assert auto.spice_pulses == 1


# ----- variability reaches Ri ---------------------------------------------------------------------

def test_variability_of_ri_spreads_the_top_level():
    reads = {}
    for name, var in (("switches only", Variability(0.02, 0.1)), ("with Ri", Variability.typical())):
        chip = VirtualArray(ArrayGeometry(10, 10), array=ArrayParameters(0.0, 0.0), variability=var, seed=4,
                            engine="fast")
        chip.switch_states[:] = True
        reads[name] = chip.read([(w, b) for w in range(10) for b in range(10)], 1.0)
    assert np.std(reads["switches only"]) < 0.3e-9            # Ri caps the 80 nS level: nearly exact
    assert 0.4e-9 < np.std(reads["with Ri"]) < 1.5e-9          # about 0.7 nS with the typical 1 % spread
    # the same chip on ngspice (a few cells): Ri's spread is in the netlist too
    spice = VirtualArray(ArrayGeometry(2, 2), variability=Variability.typical(), seed=4, engine="spice")
    fast = VirtualArray(ArrayGeometry(2, 2), variability=Variability.typical(), seed=4, engine="fast")
    for chip in (spice, fast):
        chip.switch_states[:] = True
    cells = [(0, 0), (0, 1), (1, 0), (1, 1)]
    np.testing.assert_allclose(fast.read(cells), spice.read(cells), rtol=1e-6)


# ----- programming error from the device (issue 10's device mode) -----------------------------------

def _set_reset_cycles(mode, engine="fast", cycles=6, seed=5):
    """Read after a 3.75 V set (about the 5th level) and after a -1.6 V reset, cycle after cycle."""
    chip = VirtualArray.lone_device(programming_error=mode, seed=seed, engine=engine)
    reads = []
    for _ in range(cycles):
        chip.pulse_cell(0, 0, 3.75, 2e-6)
        reads.append(chip.read_cell(0, 0))
        chip.pulse_cell(0, 0, -1.6, 2e-6)
    return np.array(reads), chip


def test_device_mode_spreads_each_set_cycle_to_cycle_and_paper_mode_does_not():
    paper, _ = _set_reset_cycles("paper")
    device, chip = _set_reset_cycles("device")
    assert np.ptp(paper) == 0.0                                  # exact levels, every cycle
    assert 0.5e-9 < np.std(device) < 6e-9                         # the same pulse lands differently
    assert np.all(np.abs(device - paper[0]) < 12e-9)              # near the level, not on another one
    # each redraw stays about the cell's own values
    drift = chip.cell_switches[..., 2] / chip.cell_switches_nominal[..., 2]
    assert np.all(np.abs(np.log(drift)) < 5 * 0.10)
    again, _ = _set_reset_cycles("device")
    np.testing.assert_array_equal(device, again)                  # drawn from the chip's seed
    other, _ = _set_reset_cycles("device", seed=6)
    assert not np.array_equal(device, other)


def test_device_mode_adds_nothing_on_programming_done_and_paper_mode_does():
    for mode, changes in (("device", False), ("paper", True)):
        chip = VirtualArray.lone_device(programming_error=mode, seed=1, engine="fast")
        chip.pulse_cell(0, 0, 3.75, 2e-6)
        before = chip.read_cell(0, 0)
        chip.programming_done([(0, 0)])
        assert (chip.read_cell(0, 0) != before) is changes


def test_device_mode_is_the_same_on_both_engines_and_survives_a_save(tmp_path):
    spice_reads, spice = _set_reset_cycles("device", engine="spice", cycles=3)
    fast_reads, fast = _set_reset_cycles("device", engine="fast", cycles=3)
    np.testing.assert_allclose(fast_reads, spice_reads, rtol=1e-6)
    np.testing.assert_array_equal(fast.cell_switches, spice.cell_switches)
    loaded = VirtualArray.load_chip(fast.save_chip(tmp_path / "c2c.npz"))
    assert loaded.programming_error == "device"
    np.testing.assert_array_equal(loaded.cell_switches_nominal, fast.cell_switches_nominal)
    for chip in (fast, loaded):
        chip.pulse_cell(0, 0, 3.75, 2e-6)
    assert loaded.read_cell(0, 0) == fast.read_cell(0, 0)
    with pytest.raises(Exception, match="programming_error"):
        VirtualArray.lone_device(programming_error="gaussian")


def test_a_pulse_that_cannot_flip_anything_is_known_to_be_safe():
    """Such pulses get plain edges on ngspice (fewer time steps); the bound must never miss a flip."""
    chip = VirtualArray(ArrayGeometry(6, 6), array=ArrayParameters(100.0), engine="fast")
    g = chip.geometry
    assert not chip._pulse_may_flip(*half_bias_voltages(g, 2, 3, 3.2))     # below 3.2625 V
    assert chip._pulse_may_flip(*half_bias_voltages(g, 2, 3, 3.3))
    chip.switch_states[2, 3] = True
    assert not chip._pulse_may_flip(*half_bias_voltages(g, 2, 3, 4.2))     # all on already
    assert chip._pulse_may_flip(*half_bias_voltages(g, 2, 3, -1.0))
    # never wrong: over random pulses, whenever the bound says "safe", nothing flips
    rng = np.random.default_rng(3)
    for _ in range(60):
        chip.switch_states = random_states(rng, g.shape, 8)
        pulse = near_threshold_pulses(rng, chip, 1, 1e-5)[0]
        safe = not chip._pulse_may_flip(*pulse[:2])
        before = chip.switch_states.copy()
        chip.pulse(*pulse)
        assert not (safe and np.any(chip.switch_states != before))
