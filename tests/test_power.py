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
