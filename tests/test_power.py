"""Power during inference (eqns 1-3), by hand and on the twin."""

import numpy as np
import pytest

from rramlab.drivers.interface import ArrayGeometry
from rramlab.protocols import inference as inf
from rramlab.protocols import mnist
from rramlab.protocols import network as nw
from rramlab.protocols import power
from rramlab.protocols import transfer
from rramlab.sim.virtual_array import VirtualArray


def test_power_integral_against_a_hand_calculation():
    # 2 wordlines x 3 bitlines, 4 equal steps
    g = np.array([[10e-9, 20e-9, 0.0],
                  [30e-9, 0.0, 40e-9]])            # row sums 30 nS and 70 nS
    v = np.array([[1.0, 0.0],
                  [1.0, 1.0],
                  [0.0, 0.5],
                  [0.0, 0.0]])
    # P_1(t) = V^2 * 30 nS: 30, 30, 0, 0 nW -> average 15 nW
    # P_2(t) = V^2 * 70 nS: 0, 70, 17.5, 0 nW -> average 21.875 nW
    assert np.allclose(power.wordline_power(v, g) * 1e9, [[30, 0], [30, 70], [0, 17.5], [0, 0]])
    assert np.allclose(power.average_wordline_power(v, g) * 1e9, [15.0, 21.875])
    assert power.average_array_power(v, g) * 1e9 == pytest.approx(36.875)
    with pytest.raises(Exception, match="do not match"):
        power.wordline_power(v, g.T)


def test_per_class_and_average():
    mk = lambda label, w: power.ImagePower(0, label, w, np.zeros(1), np.zeros(1), 0.0)  # noqa: E731
    ps = [mk(0, 1.0), mk(0, 3.0), mk(2, 5.0)]
    pc = power.per_class(ps, classes=3)
    assert pc[0] == 2.0 and np.isnan(pc[1]) and pc[2] == 5.0
    assert power.average(ps) == pytest.approx(3.0)


def test_power_from_measured_conductances_equals_the_circuits_own_currents():
    """sum_i V_i^2 sum_j G_ij (G read at the spike voltage) = V * the bitline currents the array
    delivers during the same steps, to the wire drop."""
    va = VirtualArray(geometry=ArrayGeometry(24, 24), seed=2)
    rng = np.random.default_rng(0)
    levels = rng.integers(-8, 9, size=(24, 10))
    transfer.write_levels(va, levels)
    g = power.measure_conductances(va, range(24), range(20), 1.0)
    assert g.shape == (24, 20) and g.min() > 1e-9 and g.max() < 85e-9
    v = (rng.random((200, 24)) < 0.3) * 1.0
    p_t = power.wordline_power(v, g).sum(axis=1)
    i = va.vmm(v, list(range(20)))
    assert np.allclose(p_t, 1.0 * i.sum(axis=1), rtol=2e-3)


def test_the_sources_also_deliver_the_power_of_the_four_unused_grounded_bitlines():
    """Eqns 1-3 count the network's 20 bitlines; the array's 4 unused bitlines are grounded too, so
    every spike also drives their (HRS) cells: what the wordline sources deliver, V x the current of
    all 24 bitlines, is the eqn 1-3 figure plus those cells' V^2 G (README: about 2.7 % for QT)."""
    va = VirtualArray(geometry=ArrayGeometry(24, 24), seed=2)
    rng = np.random.default_rng(0)
    transfer.write_levels(va, rng.integers(-8, 9, size=(24, 10)))
    g_all = power.measure_conductances(va, range(24), range(24), 1.0)
    v = (rng.random((200, 24)) < 0.3) * 1.0
    eqn = power.wordline_power(v, g_all[:, :20]).sum(axis=1)
    delivered = 1.0 * va.vmm(v, list(range(24))).sum(axis=1)
    unused = power.wordline_power(v, g_all[:, 20:]).sum(axis=1)
    assert np.all(g_all[:, 20:] < 2e-9)                            # the unused cells are in HRS
    assert np.allclose(delivered, eqn + unused, rtol=2e-3)
    share = unused.sum() / eqn.sum()
    assert 0.005 < share < 0.05, share


def test_image_power_uses_the_spikes_inference_applied():
    data = mnist.load_sample()
    idx = np.concatenate([np.flatnonzero(data.train.labels == d)[:100] for d in range(10)])
    net = nw.build_variants(data.train.subset(idx), data.test, nw.NetworkSettings(epochs=2, finetune_epochs=1))
    v = net.variants["qt"]
    p = inf.plan(inf.InferenceSettings(), v, data.test, [0, 150, 990])
    g = np.full((24, 20), 2e-9)
    g[5, :] = 50e-9
    out = power.image_power(p, g)
    for k, r in enumerate(out):
        spikes = p.hidden_spikes[k]
        row = g.sum(axis=1)
        assert r.average_w == pytest.approx(float((spikes * row).sum() / spikes.shape[0]))
        assert r.spike_rate == pytest.approx(spikes.mean())
        assert np.allclose(r.array_power_w, spikes @ row)
        assert r.label == data.test.labels[p.indices[k]]


def test_power_protocol_plans_without_an_instrument_and_runs_on_the_twin():
    """power.plan checks the reads before anything is touched; power.run measures the conductances
    through the seam and gives the same figures as image_power on those conductances."""
    from rramlab.drivers.interface import SafetyError

    data = mnist.load_sample()
    idx = np.concatenate([np.flatnonzero(data.train.labels == d)[:50] for d in range(10)])
    net = nw.build_variants(data.train.subset(idx), data.test, nw.NetworkSettings(epochs=1, finetune_epochs=1))
    p = inf.plan(inf.InferenceSettings(), net.variants["qt"], data.test, [0, 500])
    with pytest.raises(SafetyError, match="read limit"):
        power.plan(power.PowerSettings(conductance_read_v=2.0), p)
    va = VirtualArray(geometry=ArrayGeometry(24, 24), seed=3)
    transfer.write_levels(va, net.variants["qt"].levels2)
    records = list(power.run(va, power.plan(power.PowerSettings(), p, va)))
    g = power.measure_conductances(va, p.wordlines, p.bitlines, 1.0)
    expected = power.image_power(p, g)
    assert [r.image for r in records] == [0, 500]
    assert [r.average_w for r in records] == pytest.approx([e.average_w for e in expected], rel=1e-9)
    assert all(r.average_w > 0 for r in records)


def _hand_plan(spikes, settings):
    """An InferencePlan built by hand: (images, steps, wordlines) spikes, labels 0, 1, ..."""
    spikes = np.asarray(spikes, dtype=bool)
    n, _, hidden = spikes.shape
    return inf.InferencePlan(settings, None, np.zeros((n, 784)), np.arange(n) % 10, np.arange(n), spikes,
                             tuple(range(hidden)), (0, 1), 1.0)


def test_power_factors_of_a_hand_built_case():
    """3 wordlines x 2 bitlines, 2 images x 4 steps, rectangular spikes: P = active wordlines per step x
    mean conductance per active wordline x V^2, each factor counted by hand; a duty of 0.5 halves it."""
    g = np.array([[10e-9, 30e-9],    # wordline sums: 40, 100, 20 nS
                  [60e-9, 40e-9],
                  [0.0, 20e-9]])
    spikes = [[[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]],     # 4 spikes: 40 + 40 + 100 + 20 = 200 nS
              [[0, 1, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]]]     # 6 spikes: 100+20+100+40+100+20 = 380 nS
    s = inf.InferenceSettings(spike_v=0.8)
    f = power.power_factors(_hand_plan(spikes, s), g)
    assert f.active_wordlines_per_step == pytest.approx(10 / 8)            # 10 spikes in 8 image-steps
    assert f.conductance_per_active_wordline_s == pytest.approx(580e-9 / 10)
    assert f.waveform_factor == pytest.approx(1.0)
    # image 1: 200 nS x 0.64 V^2 / 4 steps = 32 nW; image 2: 380 x 0.64 / 4 = 60.8 nW; mean 46.4 nW
    assert f.power_w == pytest.approx(46.4e-9)
    assert f.power_w == pytest.approx(f.active_wordlines_per_step * f.conductance_per_active_wordline_s * 0.8 ** 2)
    assert f.hidden_spike_rate == pytest.approx(10 / 24)
    assert f.active_wordlines_for(23.2e-9) == pytest.approx(10 / 16)
    assert f.line().startswith("46 nW = 1.25 active wordlines/step x 58 nS per wordline x (0.8 V)^2")
    half = power.power_factors(_hand_plan(spikes, inf.InferenceSettings(spike_v=0.8, spike_duty=0.5)), g, g * 0.5)
    assert half.power_w == pytest.approx(23.2e-9) and half.waveform_factor == pytest.approx(0.5)
    assert "x 0.500 (rect 0.8 V, duty 0.5 waveform)" in half.line()


def test_triangular_spike_power_integrates_the_devices_i_v():
    """A triangular spike's power, from the reads at the waveform's 5 Gauss-Legendre voltages, equals a
    2,000-point trapezoid of v I(v) over the ramp of the same device; the device's chord conductance
    grows with V, so it is below a third of the rectangular spike's."""
    from rramlab.protocols import ispva

    va = VirtualArray.lone_device(seed=0, engine="fast")
    s = ispva.IspvaSettings()
    list(ispva.run(va, ispva.plan(s, [(0, 0)], [60e-9], va)))
    for v_peak in (1.0, 0.6):
        g_tri = power.spike_conductances(va, [0], [0], v_peak, "tri")[0, 0]
        g_rect = power.spike_conductances(va, [0], [0], v_peak, "rect")[0, 0]
        u = np.linspace(0.0, 1.0, 2001)
        i = np.array([0.0] + [float(va.read_cell(0, 0, x * v_peak)) for x in u[1:]])
        numeric = np.trapezoid(u * v_peak * i, u) / v_peak ** 2     # time average of v i over the ramp / V^2
        assert g_tri == pytest.approx(numeric, rel=2e-4)
        assert g_rect == pytest.approx(float(va.read_cell(0, 0, v_peak)) / v_peak)
        assert 0.15 < g_tri / g_rect < 1 / 3 - 0.01
        assert power.spike_conductances(va, [0], [0], v_peak, "tri", 0.5)[0, 0] == pytest.approx(g_tri / 2)
