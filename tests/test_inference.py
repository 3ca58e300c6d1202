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
