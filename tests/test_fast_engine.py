"""The fast engine (sim/nodal.py) held to ngspice on the same chip state.

Contract (issue 4): reads and VMM currents within 1e-3 relative (0.05 nA absolute) of ngspice on
random chip states and random spike patterns; after random pulses the same switches flipped as in
ngspice's transient; wire resistance 0, 2 and 100 ohm per segment. Speed is measured by
benchmarks/engines.py, not here.
"""

from __future__ import annotations

import numpy as np
import pytest

from rramlab.drivers.interface import DEVICE_CEILING, ArrayGeometry, RequestError, half_bias_voltages
from rramlab.sim.array import ArrayParameters
from rramlab.sim.device import DeviceParameters, Switch
from rramlab.sim import nodal
from rramlab.sim.nodal import (SPIKE_MIN_STEPS, TAYLOR_MIN_STEPS, DeviceTables, NodalArray,
                              device_current_exact, lambert_w, spike_pattern)
from rramlab.sim.virtual_array import DC_MIN_WIDTH_S, VirtualArray, Variability

RTOL, ATOL = 1e-3, 0.05e-9
WIRES = (0.0, 2.0, 100.0)


def random_states(rng, shape, n):
    """Switch states of a programmed chip: each cell at a random level (first k switches on), and a
    quarter of the cells with a random pattern, as partial resets leave them."""
    W, B = shape
    k = rng.integers(0, n + 1, (W, B))
    states = np.arange(n)[None, None, :] < k[:, :, None]
    scrambled = rng.random((W, B)) < 0.25
    states[scrambled] = rng.random((int(scrambled.sum()), n)) < 0.5
    return states


def twin_pair(geometry, wire, rng, offsets=True, **kwargs):
    """Two twins in the same random state, one per engine."""
    spice = VirtualArray(geometry, array=ArrayParameters(wire_resistance=wire), engine="spice", **kwargs)
    fast = VirtualArray(geometry, array=ArrayParameters(wire_resistance=wire), engine="fast", **kwargs)
    states = random_states(rng, geometry.shape, spice.device.n_switches)
    offset = rng.normal(0.0, 1.06e-9, geometry.shape) if offsets else np.zeros(geometry.shape)
    for twin in (spice, fast):
        twin.switch_states = states.copy()
        twin.conductance_offset = offset.copy()
    if spice.cell_switches is not None:
        fast.cell_switches = spice.cell_switches.copy()
    return spice, fast


# ----- the device -----------------------------------------------------------------------------

def test_tabulated_device_matches_its_exact_solution():
    p = DeviceParameters()
    rng = np.random.default_rng(0)
    g = np.concatenate([[8e-12, 1.6e-8, 1.98e-5], np.exp(rng.uniform(np.log(1e-11), np.log(3e-5), 40))])
    tables = DeviceTables(p, 4.5)
    rows = tables.rows_for(g)
    v = rng.uniform(-4.4, 4.4, (g.size, 300))
    exact_i, exact_s = device_current_exact(v, g[:, None], p)
    table_i, table_s = tables.evaluate(v, rows[:, None])
    assert np.max(np.abs(table_i - exact_i) / np.abs(exact_i)) < 1e-6
    assert np.max(np.abs(table_s - exact_s) / exact_s) < 1e-6
    # odd in V, as the model's V*exp(|V|) branches and linear switches are
    assert np.allclose(tables.evaluate(-v, rows[:, None])[0], -table_i, rtol=0, atol=0)


def test_lambert_w_matches_scipy_over_the_whole_range():
    from scipy.special import lambertw
    x = np.concatenate([[0.0], np.geomspace(1e-300, 1e300, 20000)])
    ref = np.real(lambertw(x))
    assert lambert_w(0.0) == 0.0
    assert np.max(np.abs(lambert_w(x) - ref) / np.maximum(ref, 1e-300)) < 1e-13


def test_table_rows_follow_every_cell_change_and_build_only_new_rows():
    """rows_for remembers each cell's row: after a change only the changed cells move, a repeated
    conductance reuses its row, and the rows always hold that cell's own characteristic."""
    p = DeviceParameters()
    rng = np.random.default_rng(3)
    tables = DeviceTables(p, 1.2)
    g = np.exp(rng.uniform(np.log(1e-11), np.log(3e-7), (6, 5)))
    r0 = p.insulator_r0 * np.exp(rng.normal(0.0, 0.03, (6, 5)))
    first = tables.rows_for(g, r0).copy()
    assert tables.rows_for(g, r0) is tables.rows_for(g, r0)   # unchanged: the remembered rows
    built = len(tables.current)
    g2 = g.copy()
    g2[2, 3] = 5e-8
    g2[4, 0] = g[1, 1]                                        # same conductance, other Ri: a new row
    rows = tables.rows_for(g2, r0)
    changed = np.zeros(g.shape, dtype=bool)
    changed[2, 3] = changed[4, 0] = True
    assert np.array_equal(rows[~changed], first[~changed]) and len(tables.current) == built + 2
    v = np.full(g.shape, 0.9)
    got, _ = tables.evaluate(v, rows)
    exact, _ = device_current_exact(v, g2, p, insulator_r0=r0)
    assert np.max(np.abs(got - exact) / exact) < 1e-6
    assert np.array_equal(tables.rows_for(g, r0), first)      # back: the old rows, nothing built
    assert len(tables.current) == built + 2
    tables.rows_for(g2)                                       # Ri of the model: rows by the full look-up
    got, _ = tables.evaluate(v, tables.rows_for(g2))
    assert np.max(np.abs(got - device_current_exact(v, g2, p)[0]) / got) < 1e-6


def test_exact_device_reproduces_the_calibrated_read_levels():
    # twin-notes.md: HRS about 1.6 nA, then 10, 20, ... 80 nA at 1 V as switches turn on in order
    p = DeviceParameters()
    ron = np.array([s.on_resistance for s in p.switches])
    g = np.array([(1 / ron[:k]).sum() + (p.n_switches - k) * 1e-12 for k in range(p.n_switches + 1)])
    i, _ = device_current_exact(np.ones_like(g), g, p)
    assert i[0] == pytest.approx(1.6e-9, rel=0.05)
    assert np.allclose(i[1:], np.arange(1, 9) * 10e-9, rtol=0.01)


def test_tables_grow_when_a_voltage_is_beyond_the_grid():
    p = DeviceParameters()
    tables = DeviceTables(p, 1.0)
    na = NodalArray(1, 1, p, ArrayParameters(0.0, 0.0), v_max=1.0)
    na.tables = tables
    v, cur = na.solve(np.array([[[3.0]]]), np.array([[8e-12]]))
    assert tables.v_max > 3.0
    assert cur[0, 0, 0] == pytest.approx(float(device_current_exact(3.0, 8e-12, p)[0]), rel=1e-7)


# ----- reads and VMM against ngspice ------------------------------------------------------------

@pytest.mark.parametrize("wire", WIRES)
def test_reads_and_vmm_match_ngspice_on_random_states(wire):
    rng = np.random.default_rng(int(wire) + 1)
    spice, fast = twin_pair(ArrayGeometry(24, 24), wire, rng)
    # the negative analogue inputs below need the widest read window the device allows (-0.5 V)
    spice.limits = fast.limits = DEVICE_CEILING
    cells = [tuple(int(i) for i in rng.integers(0, 24, 2)) for _ in range(4)] + [(0, 23), (23, 0)]
    assert np.allclose(fast.read(cells), spice.read(cells), rtol=RTOL, atol=ATOL)
    # spikes at 1 V with random rates, plus one step of analogue inputs
    rates = rng.random(24)
    x = (rng.random((3, 24)) < rates).astype(float)
    x = np.vstack([x, rng.uniform(-0.5, 1.2, 24)])
    ref = spice.vmm(x)
    got = fast.vmm(x)
    assert got.shape == ref.shape == (4, 24)
    assert np.allclose(got, ref, rtol=RTOL, atol=ATOL)
    # the engine is much closer than the contract: a regression would show here first
    assert np.max(np.abs(got - ref) / np.abs(ref)) < 1e-6


def test_vmm_matches_ngspice_with_device_variability_and_a_bitline_subset():
    rng = np.random.default_rng(5)
    spice, fast = twin_pair(ArrayGeometry(10, 12), 100.0, rng, variability=Variability(0.03, 0.2), seed=9)
    assert spice.cell_switches is not None
    x = (rng.random((3, 10)) < 0.5).astype(float)
    bitlines = [11, 0, 5]
    assert np.allclose(fast.vmm(x, bitlines), spice.vmm(x, bitlines), rtol=RTOL, atol=ATOL)


def test_spike_trains_class_currents_match_ngspice():
    """Batched inference: trains x 25 steps solved at once; the accumulated class currents
    (I+ - I- per differential pair) match ngspice stepping through the same trains."""
    rng = np.random.default_rng(7)
    geometry = ArrayGeometry(24, 20)
    spice, fast = twin_pair(geometry, 100.0, rng)
    trains = 4
    rates = rng.random((trains, 1, 24))
    spikes = (rng.random((trains, 25, 24)) < rates).astype(float)
    batch = spikes.reshape(-1, 24)
    assert batch.shape[0] >= TAYLOR_MIN_STEPS  # the large-batch path is the one under test
    got = fast.vmm(batch).reshape(trains, 25, 20).sum(axis=1)
    ref = np.array([spice.vmm(spikes[t]).sum(axis=0) for t in range(2)])
    cls_got = got[:, 0::2] - got[:, 1::2]
    cls_ref = ref[:, 0::2] - ref[:, 1::2]
    assert np.allclose(cls_got[:2], cls_ref, rtol=RTOL, atol=ATOL * 25)
    assert np.array_equal(np.argmax(cls_got[:2], axis=1), np.argmax(cls_ref, axis=1))
    # the large-batch path equals the step-by-step fast solve of the other trains too
    one_by_one = np.array([fast.vmm(spikes[t]).sum(axis=0) for t in range(2, trains)])
    assert np.allclose(got[2:], one_by_one, rtol=1e-6, atol=0)


# ----- the spike model against the full solve --------------------------------------------------

def spike_chip(rng, wire=0.5, geometry=ArrayGeometry(24, 24)):
    """A chip programmed like a network layer: random levels up to the middle one (about 40 nS).
    The spike model's error grows with the wire resistance and the currents: 1.8e-10 of the largest
    current here, 6.6e-10 at 2 ohm, 1e-8 with random states up to 80 nS on 2 ohm (rejected)."""
    chip = VirtualArray(geometry, array=ArrayParameters(wire_resistance=wire), engine="fast")
    n = chip.device.n_switches
    chip.switch_states = np.arange(n)[None, None, :] < rng.integers(0, n // 2 + 1, geometry.shape)[:, :, None]
    chip.conductance_offset = rng.normal(0.0, 1.06e-9, geometry.shape)
    return chip


def spike_batch(rng, steps, wordlines, level=1.0):
    rates = rng.random((1, wordlines))
    return (rng.random((steps, wordlines)) < rates) * level


def full_solve(chip, steps, bitlines):
    return chip._fast().solved_bitline_currents(steps, chip._g_switch(), chip.conductance_offset, bitlines,
                                                insulator_r0=chip.cell_insulator_r0)


def test_spike_pattern_accepts_only_zero_and_one_positive_level():
    spikes, level = spike_pattern(np.array([[0.0, 0.8], [0.8, 0.8]]))
    assert level == 0.8 and spikes.tolist() == [[False, True], [True, True]]
    for bad in ([[0.0, 0.8], [0.4, 0.8]], [[0.0, 0.8], [-0.8, 0.8]], [[0.0, 0.0]], [[0.0, np.nan]]):
        assert spike_pattern(np.array(bad))[0] is None


@pytest.mark.parametrize("geometry, level", [(ArrayGeometry(24, 24), 1.0), (ArrayGeometry(13, 6), 0.7)])
def test_spike_batches_equal_the_full_solve(geometry, level):
    """A large spike batch is answered by the spike model (not the full solve), its bitline
    currents within 1e-9 of the largest current of the full solve of every step."""
    rng = np.random.default_rng(11)
    chip = spike_chip(rng, geometry=geometry)
    batch = spike_batch(rng, SPIKE_MIN_STEPS, geometry.wordlines, level)
    bitlines = list(range(0, geometry.bitlines, 2))
    got = chip.vmm(batch, bitlines)
    assert chip._fast().info.spike_batches == 1
    ref = full_solve(chip, batch, bitlines)
    assert np.max(np.abs(got - ref)) <= 1e-9 * np.max(np.abs(ref))
    # its all-on check, made from the coefficients, is what its look-up tables give for that pattern
    model = chip._fast()._spike_model
    W = geometry.wordlines
    iu, ju = np.triu_indices(W, 1)
    all_on = model.f0 + model.lin[:W].sum(axis=0) + model.quad[iu, ju].sum(axis=0)
    looked_up = model.evaluate(np.ones((1, W), dtype=bool), np.arange(geometry.bitlines))[0]
    assert np.max(np.abs(all_on - looked_up)) <= 1e-12 * model.scale
    # the model is kept for the chip state: a second batch is not refitted
    model = chip._fast()._spike_model
    chip.vmm(batch[::-1], bitlines)
    assert chip._fast()._spike_model is model and chip._fast().info.spike_batches == 2


def test_spike_model_is_refitted_when_the_chip_changes():
    rng = np.random.default_rng(12)
    chip = spike_chip(rng)
    batch = spike_batch(rng, SPIKE_MIN_STEPS, 24)
    before = chip.vmm(batch)
    model = chip._fast()._spike_model
    chip.pulse_cell(3, 5, 4.2, 1e-6)               # a state change: the old model no longer holds
    chip.conductance_offset[7, 9] += 2e-9
    after = chip.vmm(batch)
    assert chip._fast()._spike_model is not model
    ref = full_solve(chip, batch, list(range(24)))
    assert np.max(np.abs(after - ref)) <= 1e-9 * np.max(np.abs(ref))
    assert np.max(np.abs(after - before)) > 1e-3 * np.max(np.abs(before))


def test_spike_batches_fall_back_to_the_full_solve_when_the_model_does_not_hold(monkeypatch):
    rng = np.random.default_rng(13)
    chip = spike_chip(rng)
    batch = spike_batch(rng, SPIKE_MIN_STEPS, 24)
    info = chip._fast().info
    # a third level: not a spike batch
    mixed = batch.copy()
    mixed[0, 0] = 0.5
    assert np.allclose(chip.vmm(mixed), full_solve(chip, mixed, list(range(24))), rtol=1e-12, atol=0)
    assert info.spike_batches == 0 and info.spike_checks == 0
    # a model that fails its all-on check is never used: 10 ohm lines, cells up to 80 nS
    coupled = spike_chip(rng, wire=10.0)
    coupled.switch_states = random_states(rng, (24, 24), coupled.device.n_switches)
    got = coupled.vmm(batch)
    assert not coupled._fast()._spike_model.valid and coupled._fast().info.spike_batches == 0
    assert coupled._fast()._spike_model._tables == {}   # its look-up tables were never built
    assert np.allclose(got, full_solve(coupled, batch, list(range(24))), rtol=1e-12, atol=0)
    # a model whose sampled steps disagree with the full solve is dropped for the batch
    monkeypatch.setattr(nodal, "SPIKE_MODEL_TOL", 5e-10)
    chip.conductance_offset[0, 0] += 1e-9
    monkeypatch.setattr(nodal.SpikeModel, "evaluate",
                        lambda self, spikes, bls: np.zeros((spikes.shape[0], len(bls))))
    monkeypatch.setattr(nodal.SpikeModel, "fit", classmethod(
        lambda cls, na, level, g, go, r0: cls(cls._key(g, go, r0), level, None, None, None, 1.0, True)))
    got = chip.vmm(batch)
    assert info.spike_checks == 1 and info.spike_batches == 0
    assert np.allclose(got, full_solve(chip, batch, list(range(24))), rtol=1e-12, atol=0)


def test_spike_batches_of_several_levels_are_answered_level_by_level():
    """A batch whose every step is a spike of its own level (a triangular spike's waveform nodes
    stacked in one call, as inference sends them) takes each large level's spike model, within 1e-9
    of the full solve of every step; a level with few steps is solved in full, a step at 0 V
    everywhere carries 0 A, and a step with two voltages sends the whole batch to the full solve."""
    rng = np.random.default_rng(15)
    chip = spike_chip(rng)
    base = spike_batch(rng, SPIKE_MIN_STEPS, 24)
    few = spike_batch(rng, 10, 24, 0.3)
    few[few.sum(axis=1) == 0, 0] = 0.3
    batch = np.concatenate([base * 0.2, base, few, np.zeros((3, 24))])
    bitlines = list(range(0, 24, 3))
    info = chip._fast().info
    got = chip.vmm(batch, bitlines)
    assert info.spike_batches == 2 and info.spike_checks == 2
    ref = full_solve(chip, batch, bitlines)
    assert np.max(np.abs(got - ref)) <= 1e-9 * np.max(np.abs(ref))
    n = 2 * SPIKE_MIN_STEPS
    assert np.allclose(got[n:n + 10], full_solve(chip, few, bitlines), rtol=1e-12, atol=0) and np.all(got[-3:] == 0)
    two = batch.copy()
    two[0, :2] = (0.2, 1.0)
    assert np.allclose(chip.vmm(two, bitlines), full_solve(chip, two, bitlines), rtol=1e-12, atol=0)
    assert info.spike_batches == 2


def test_sweep_stops_when_its_contraction_bound_proves_convergence():
    """The Jacobi-Newton sweep ends as soon as change x q / (1 - q) is below the tolerance, one
    sweep before the step itself is, and the answer is the same."""
    rng = np.random.default_rng(14)
    chip = spike_chip(rng)
    na = chip._fast()
    v_open = np.broadcast_to(spike_batch(rng, 32, 24)[:, :, None], (32, 24, 24)).copy()
    g = chip._g_switch()
    na.info.sweeps = 0
    v1, i1 = na.solve(v_open, g, chip.conductance_offset)
    fast_sweeps = na.info.sweeps
    na._r_sum_max = np.inf                          # no bound: sweep until the step is below the tolerance
    na.info.sweeps = 0
    v2, i2 = na.solve(v_open, g, chip.conductance_offset)
    assert fast_sweeps < na.info.sweeps
    assert np.max(np.abs(v1 - v2)) < nodal.VOLTAGE_TOL


# ----- pulses against ngspice -------------------------------------------------------------------

def random_pulse(rng, geometry, limits):
    """A half-bias set or reset of a random cell, or (one in three) random voltages on every line."""
    W, B = geometry.shape
    shape = str(rng.choice(["rect", "tri"]))
    width = float(10 ** rng.uniform(np.log10(DC_MIN_WIDTH_S), -4))  # below it "fast" warns, "auto" uses ngspice
    if rng.random() < 0.33:
        bl = rng.uniform(-2.1, 1.0, B)
        wl = np.clip(rng.uniform(-1.0, 2.1, W), bl.max() - 2.4, bl.min() + 4.25)
        return wl, bl, width, shape
    v = rng.uniform(3.0, 4.3) if rng.random() < 0.6 else rng.uniform(-2.0, -0.9)
    w, b = int(rng.integers(0, W)), int(rng.integers(0, B))
    wl, bl = half_bias_voltages(geometry, w, b, v)
    return wl, bl, width, shape


@pytest.mark.parametrize("wire", WIRES)
def test_pulses_flip_the_same_switches_as_ngspice(wire):
    rng = np.random.default_rng(100 + int(wire))
    geometry = ArrayGeometry(8, 8)
    spice, fast = twin_pair(geometry, wire, rng, offsets=False)
    flipped = 0
    for i in range(10):
        pulse = random_pulse(rng, geometry, spice.limits)
        before = spice.switch_states.copy()
        spice.pulse(*pulse)
        fast.pulse(*pulse)
        assert np.array_equal(fast.switch_states, spice.switch_states), f"pulse {i}: {pulse}"
        flipped += int((spice.switch_states != before).sum())
    assert flipped > 20  # the pulses did program the chip


def test_half_bias_pulses_on_the_full_array_flip_the_same_switches_as_ngspice():
    rng = np.random.default_rng(3)
    geometry = ArrayGeometry(24, 24)
    spice, fast = twin_pair(geometry, 100.0, rng, offsets=False)
    for w, b, v, shape in ((0, 23, 4.2, "rect"), (0, 23, 3.9, "tri"), (12, 5, -1.4, "rect")):
        spice.pulse_cell(w, b, v, 1e-6, shape)
        fast.pulse_cell(w, b, v, 1e-6, shape)
        assert np.array_equal(fast.switch_states, spice.switch_states)


def test_pulse_flips_switches_one_threshold_at_a_time_as_the_edge_rises():
    """A switch turning on raises its cell's current and the wire drop, so its cell's voltage at
    the peak falls below the next threshold, which ngspice then never reaches: a rule flipping every
    switch whose threshold the initial peak voltage exceeds would turn on both."""
    device = DeviceParameters(switches=(Switch.from_thresholds(3.5, -1.0, 10e3),
                                        Switch.from_thresholds(3.585, -1.0, 1e6)))
    geometry = ArrayGeometry(6, 6)
    spice = VirtualArray(geometry, device=device, array=ArrayParameters(100.0), engine="spice")
    fast = VirtualArray(geometry, device=device, array=ArrayParameters(100.0), engine="fast")
    wl, bl = half_bias_voltages(geometry, 0, 5, 3.6)
    na = fast._fast()
    v_peak, _ = na.solve((wl[:, None] - bl[None, :])[None], na.switch_conductance(fast.switch_states, None))
    assert v_peak[0, 0, 5] > 3.585  # both thresholds lie below the peak voltage of the HRS cell
    spice.pulse(wl, bl, 1e-6)
    fast.pulse(wl, bl, 1e-6)
    assert spice.switch_states[0, 5].tolist() == [True, False]
    assert np.array_equal(fast.switch_states, spice.switch_states)


def test_auto_engine_hands_pulses_with_coupled_flips_to_ngspice():
    geometry = ArrayGeometry(6, 6)
    rng = np.random.default_rng(1)
    spice, auto = twin_pair(geometry, 100.0, rng, offsets=False)
    auto.engine = "auto"
    for twin in (spice, auto):
        twin.switch_states[:] = False
    # a whole row set at once: six cells on one wordline cross thresholds together
    wl = np.zeros(6)
    wl[2] = 2.15
    bl = np.full(6, -2.15)
    spice.pulse(wl, bl, 1e-6)
    auto.pulse(wl, bl, 1e-6)
    assert auto.spice_pulses == 1
    assert np.array_equal(auto.switch_states, spice.switch_states)
    # a half-bias pulse stays on the fast engine
    auto.pulse_cell(0, 0, 4.0, 1e-6)
    assert auto.spice_pulses == 1


# ----- API ------------------------------------------------------------------------------------

def test_engine_is_chosen_reported_and_saved(tmp_path):
    twin = VirtualArray(ArrayGeometry(3, 3))
    assert twin.engine == "auto"
    assert twin.describe()["engine"] == "auto"
    with pytest.raises(RequestError, match="engine"):
        VirtualArray(ArrayGeometry(3, 3), engine="xyce")
    twin.engine = "fast"
    twin.pulse_cell(1, 1, 4.2, 1e-6)
    path = twin.save_chip(tmp_path / "chip.npz")
    loaded = VirtualArray.load_chip(path)
    assert loaded.engine == "fast"
    assert loaded.read_cell(1, 1) == pytest.approx(twin.read_cell(1, 1), rel=1e-12)
    assert VirtualArray.load_chip(path, engine="spice").read_cell(1, 1) == pytest.approx(
        twin.read_cell(1, 1), rel=RTOL)


def test_lone_device_set_ramp_matches_ngspice():
    spice = VirtualArray.lone_device(engine="spice")
    fast = VirtualArray.lone_device(engine="fast")
    for v in np.arange(3.0, 4.2001, 0.1):
        for twin in (spice, fast):
            twin.pulse_cell(0, 0, float(v), 1e-6)
        assert np.array_equal(fast.switch_states, spice.switch_states)
        assert fast.read_cell(0, 0) == pytest.approx(spice.read_cell(0, 0), rel=1e-6)
    assert fast.switch_states.sum() > 4


def test_reads_follow_switch_states_changed_in_place_and_reassigned():
    """The twin keeps what it derives from the switch states (conductances, thresholds in reach)
    until they change, however they change."""
    chip = VirtualArray(ArrayGeometry(4, 4), engine="fast")
    hrs = chip.read_cell(1, 2)
    chip.switch_states[1, 2, :4] = True                # in place
    mid = chip.read_cell(1, 2)
    assert mid > 10 * hrs
    chip.switch_states = np.zeros_like(chip.switch_states)   # reassigned
    assert chip.read_cell(1, 2) == pytest.approx(hrs, rel=1e-12)
    chip.switch_states[1, 2, :] = True
    assert chip.read_cell(1, 2) > mid


# ----- whole-array reads: the read model (one driven row, the undriven cells folded in) -----

def _read_chip(n, varied, lrs_share, seed=1):
    """An n x n twin with random levels and a share of its cells fully in LRS (all switches on)."""
    chip = VirtualArray(ArrayGeometry(n, n), engine="fast", seed=seed,
                        variability=Variability.typical() if varied else None)
    rng = np.random.default_rng(seed + 10)
    k = chip.device.n_switches
    level = rng.integers(0, k + 1, (n, n))
    level[rng.random((n, n)) < lrs_share] = k
    chip.switch_states = np.arange(k)[None, None, :] < level[:, :, None]
    return chip


def _state(chip):
    return chip._g_switch(), chip.conductance_offset, chip.cell_insulator_r0


def _tiled(state, reps):
    return tuple(None if x is None else np.tile(x, (reps, reps)) for x in state)


def _read_model_against_full(na, state, v_read=0.2):
    g_switch, g_offset, r0 = state
    steps = np.eye(na.W) * v_read
    bls = np.arange(na.B)
    model = na._read_step_currents(steps, g_switch, g_offset, r0, bls)
    full = na.solved_bitline_currents(steps, g_switch, g_offset, bls, None, r0)
    return model, full


@pytest.mark.parametrize("varied", [False, True])
@pytest.mark.parametrize("lrs_share", [0.0, 0.6])
def test_read_model_matches_full_solve_on_every_cell(varied, lrs_share):
    """A whole-array read (step w drives wordline w) from the read model agrees with the full solve
    of all W x B cells to 1e-9 relative on every cell, at 24 x 24 and 96 x 96, on the default chip and
    on a varied one (seed 1), with and without many cells in LRS. The 96 x 96 varied chip is the 24 x 24
    one's cells tiled 4 x 4 (its 9,216 distinct device rows would take 15 s to tabulate)."""
    chip = _read_chip(24, varied, lrs_share)
    state = _state(chip)
    na24 = chip._fast()
    model, full = _read_model_against_full(na24, state)
    assert model is not None and np.all(full > 0)
    assert np.max(np.abs(model - full) / full) < 1e-9
    if varied:
        na96 = NodalArray(96, 96, chip.device, chip.array, v_max=na24.tables.v_max)
        na96.tables = na24.tables
        state96 = _tiled(state, 4)
    else:
        big = _read_chip(96, False, lrs_share)
        na96, state96 = big._fast(), _state(big)
    model, full = _read_model_against_full(na96, state96)
    assert model is not None
    rel = np.abs(model - full) / full
    assert np.max(rel) < 1e-9
    # the undriven cells matter: leaving them out (the driven row alone) misses by far more
    assert np.max(np.abs(model - full)) < 1e-3 * np.max(np.abs(na96._read_model.a - 1.0)) * np.max(full)


def test_whole_array_read_uses_the_read_model_and_matches_cell_reads(monkeypatch):
    """VirtualArray.read of a 96 x 96 chip goes through the read model and reads what the full solve reads."""
    chip = _read_chip(96, False, 0.3)
    cells = [(w, b) for w in range(96) for b in range(0, 96, 7)]
    na = chip._fast()
    before = na.info.read_model_batches
    reads = np.array(chip.read(cells))
    assert na.info.read_model_batches == before + 1
    monkeypatch.setattr(nodal, "READ_MODEL_MIN_STEPS", 10 ** 9)   # the full solve, same chip
    expect = np.array(chip.read(cells))
    assert na.info.read_model_batches == before + 1
    assert np.max(np.abs(reads - expect) / expect) < 1e-9


def test_read_model_falls_back_when_its_bound_fails():
    """Long resistive lines and every cell in LRS: the coupling bound fails, the model says so, and
    the read is the full solve."""
    chip = VirtualArray(ArrayGeometry(40, 40), engine="fast", array=ArrayParameters(wire_resistance=500.0))
    chip.switch_states[:] = True
    na = chip._fast()
    g_switch, g_offset, r0 = _state(chip)
    steps = np.eye(40) * 0.2
    assert na._read_step_currents(steps, g_switch, g_offset, r0, np.arange(40)) is None
    assert not na._read_model.valid
    before = na.info.read_model_batches
    out = na.bitline_currents(steps, g_switch, g_offset, insulator_r0=r0)
    assert na.info.read_model_batches == before
    np.testing.assert_array_equal(out, na.solved_bitline_currents(steps, g_switch, g_offset, None, None, r0))
    # two wordlines in one step are not a read step: not the model's
    assert na._read_step_currents(steps + np.roll(steps, 1, axis=1), g_switch, g_offset, r0, np.arange(40)) is None
