"""Rate coding, integrate-and-fire and spiking inference on the twin (fast engine), the second layer
written by the transfer protocol."""

import numpy as np
import pytest

from rramlab.drivers.interface import ArrayGeometry, GeometryError, RequestChecker, SafeOperatingArea, SafetyError
from rramlab.protocols import inference as inf
from rramlab.protocols import mnist
from rramlab.protocols import network as nw
from rramlab.protocols import transfer
from rramlab.sim.virtual_array import VirtualArray


@pytest.fixture(scope="module")
def data():
    return mnist.load_sample()


def _net(data, epochs=4):
    idx = np.concatenate([np.flatnonzero(data.train.labels == d)[:150] for d in range(10)])
    return nw.build_variants(data.train.subset(idx), data.test, nw.NetworkSettings(epochs=epochs, finetune_epochs=1))


# ----- rate coding and integrate-and-fire -----

def test_rate_coding_statistics():
    pixels = np.array([[0.0, 0.1, 0.5, 0.9, 1.0]])
    steps = 20000
    spikes = inf.rate_code(pixels, steps, np.random.default_rng(0))
    assert spikes.shape == (1, steps, 5) and spikes.dtype == bool
    rate = spikes[0].mean(axis=0)
    sigma = np.sqrt(pixels[0] * (1 - pixels[0]) / steps)
    assert np.all(np.abs(rate - pixels[0]) <= 4 * sigma + 1e-12)
    assert rate[0] == 0.0 and rate[-1] == 1.0
    # steps are independent: the lag-1 correlation of a p = 0.5 pixel is near 0
    s = spikes[0, :, 2].astype(float) - 0.5
    assert abs(np.mean(s[1:] * s[:-1])) / 0.25 < 4 / np.sqrt(steps)
    again = inf.rate_code(pixels, steps, np.random.default_rng(0))
    assert np.array_equal(spikes, again)
    with pytest.raises(Exception, match="pixel values must be in"):
        inf.rate_code(np.array([[1.5]]), 3, np.random.default_rng(0))


def test_integrate_and_fire_by_hand():
    # one input that always spikes, weight 0.4, threshold 1: membrane 0.4, 0.8, 1.2 -> fire (0.2), 0.6, 1.0 -> fire
    spikes_in = np.ones((1, 6, 1), dtype=bool)
    out = inf.integrate_and_fire(spikes_in, np.array([[0.4]]), np.zeros(1), threshold=1.0)
    assert out[0, :, 0].tolist() == [False, False, True, False, True, False]
    # the rate follows the drive / threshold (ReLU), and a negative drive never fires
    long = np.ones((1, 1000, 2), dtype=bool)
    out = inf.integrate_and_fire(long, np.array([[0.3, -0.3], [0.0, 0.0]]), np.array([0.0, 0.0]), 1.0)
    assert out[0, :, 0].mean() == pytest.approx(0.3, abs=0.002) and not out[0, :, 1].any()


# ----- inference -----

def test_plan_refuses_what_the_array_cannot_do(data):
    net = _net(data, epochs=1)
    v = net.variants["qt"]
    with pytest.raises(SafetyError, match="read limit"):
        inf.plan(inf.InferenceSettings(spike_v=2.0), v, data.test, [0])
    small = RequestChecker(ArrayGeometry(16, 24))
    with pytest.raises(GeometryError, match="24 hidden units but the array only 16 wordlines"):
        inf.plan(inf.InferenceSettings(), v, data.test, [0], small)
    narrow = RequestChecker(limits=SafeOperatingArea(max_read_voltage=0.5))
    with pytest.raises(SafetyError):
        inf.plan(inf.InferenceSettings(), v, data.test, [0], narrow)
    with pytest.raises(Exception, match="outside the data set"):
        inf.plan(inf.InferenceSettings(), v, data.test, [5000])


def test_an_image_gets_the_same_spikes_in_any_batch(data):
    v = _net(data, epochs=1).variants["qt"]
    a = inf.plan(inf.InferenceSettings(), v, data.test, [3, 500, 7])
    b = inf.plan(inf.InferenceSettings(), v, data.test, [7, 3])
    assert np.array_equal(a.hidden_spikes[0], b.hidden_spikes[1]) and np.array_equal(a.hidden_spikes[2], b.hidden_spikes[0])
    c = inf.plan(inf.InferenceSettings(spike_seed=1), v, data.test, [3])
    assert not np.array_equal(a.hidden_spikes[0], c.hidden_spikes[0])


def test_inference_on_the_twin_matches_an_ideal_conductance_forward_pass(data):
    net = _net(data)
    v = net.variants["qt"]
    va = VirtualArray(seed=1, engine="fast")
    tplan, written, _ = transfer.write_levels(va, v.levels2, level_spacing_s=nw.conductance_step(v.bits))
    idx = mnist.balanced_indices(data.test.labels, 5, seed=2)
    p = inf.plan(inf.InferenceSettings(), v, data.test, idx, va)
    records = list(inf.run(va, p, chunk_images=20))            # three vmm calls
    assert [r.image for r in records] == idx.tolist()
    # ideal: V @ G with each cell's conductance read at 1 V (no wires, linear cells)
    g = np.array([[va.read_cell(w, b) for b in range(20)] for w in range(24)])
    for r in records:
        ideal = inf.ideal_bitline_currents(r.hidden_spikes * 1.0, g)
        assert np.allclose(r.bitline_currents, ideal, rtol=2e-3, atol=2e-11)
        assert r.prediction == int(np.argmax(inf.class_scores(ideal).sum(axis=0)))
    # and against the targets themselves (HRS cells at 0): the same predictions almost always
    agree = [r.prediction == int(np.argmax(inf.class_scores(inf.ideal_bitline_currents(r.hidden_spikes * 1.0, v.targets_s())).sum(axis=0)))
             for r in records]
    assert np.mean(agree) >= 0.9
    assert transfer.summarise(tplan, written, 0.0)["programmed_cells"] == int(np.count_nonzero(v.levels2))


def test_a_stopped_run_keeps_its_records(data):
    v = _net(data, epochs=1).variants["qt"]
    va = VirtualArray()
    transfer.write_levels(va, v.levels2, level_spacing_s=nw.conductance_step(v.bits))
    p = inf.plan(inf.InferenceSettings(), v, data.test, range(6), va)
    calls = []
    records = list(inf.run(va, p, chunk_images=2, should_stop=lambda: len(calls.append(1) or calls) > 2))
    assert len(records) == 4


def test_confusion_matrix():
    m = inf.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], classes=3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


# ----- the array must hold the network -----

def test_inference_and_power_on_an_array_without_the_network_raise_before_any_spike(data):
    """The API refuses a fresh twin (all HRS) and another network's transfer with NetworkNotHeld;
    after the network's own transfer both run."""
    from rramlab.protocols import power
    from rramlab.protocols.network_check import NetworkNotHeld, read_check

    v = _net(data, epochs=1).variants["qt"]
    va = VirtualArray(seed=1, engine="fast")
    p = inf.plan(inf.InferenceSettings(), v, data.test, range(3), va)
    vmm_calls = []
    real_vmm = va.vmm
    va.vmm = lambda *a, **k: vmm_calls.append(1) or real_vmm(*a, **k)
    with pytest.raises(NetworkNotHeld, match="does not hold the QT network.*0 of .* programmed cells"):
        next(inf.run(va, p))
    with pytest.raises(NetworkNotHeld, match="transfer.write_levels"):
        next(power.run(va, power.plan(power.PowerSettings(), p, va)))
    assert vmm_calls == []  # refused before the first spike
    other = np.random.default_rng(2).integers(-8, 9, v.levels2.shape)
    transfer.write_levels(va, other, transfer.TransferSettings(scheme="fast"))
    with pytest.raises(NetworkNotHeld):
        next(inf.run(va, p))
    transfer.write_levels(va, v.levels2, transfer.TransferSettings(scheme="fast"),
                          level_spacing_s=nw.conductance_step(v.bits))
    check = read_check(va, v)
    assert check.held and check.programmed == int(np.count_nonzero(v.levels2))
    assert len(list(inf.run(va, p))) == 3 and len(list(power.run(va, power.plan(power.PowerSettings(), p, va)))) == 3


def test_the_held_check_compares_programmed_and_hrs_cells_by_fraction():
    from rramlab.protocols.network_check import compare, target_fingerprint

    t = np.array([[10e-9, 0.0], [80e-9, 0.0]] * 5)
    g = np.where(t > 0, t + 1e-9, 1.6e-9)
    assert compare(g, t).held and compare(g, t).programmed_matching == 10
    g[0, 0] = 30e-9                         # one of ten programmed cells off: 90 % still holds
    assert compare(g, t).held
    g[2, 0] = 30e-9                         # two of ten: no longer
    assert not compare(g, t).held and "8 of 10 programmed cells" in compare(g, t).text()
    g = np.where(t > 0, t, 20e-9)            # every HRS cell set: not held either
    assert not compare(g, t).held
    assert target_fingerprint(t) == target_fingerprint(t + 1e-16) != target_fingerprint(t[::-1])
