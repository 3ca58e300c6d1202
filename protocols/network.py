"""The 784-24-10 network of the paper: training, 3-bit quantisation, pruning, and the mapping of its
second layer onto differential conductance pairs of the crossbar.

The network (numpy, so it stays exactly as the paper describes it):

* 784 inputs (pixels in [0, 1]) -> 24 hidden ReLU units (weights ``w1`` (784, 24), bias ``b1``)
  -> 10 outputs (weights ``w2`` (24, 10), **no bias**: the second layer lives in the array, whose
  bitline currents are sums of G * V only). He initialisation (N(0, 2 / fan_in)), plain mini-batch
  SGD on softmax cross-entropy, seeded: the same settings and data give the same weights.
* Variants: ``fp32`` (as trained); ``qt`` (both layers quantised); ``qtpr`` (``prune_ratio`` of the
  smallest-magnitude weights of each layer set to zero, unstructured, the rest fine-tuned with the
  pruned weights held at zero, then quantised).

The quantiser (``quantise``): a layer's weights become ``level * step`` with an integer ``level`` in
-2**bits .. 2**bits and ``step = max|w| / 2**bits``. 2**bits magnitudes per sign is what one
device stores (3 bits: 8 conductance states, 10..80 nS); the sign is carried by which column of a
differential pair holds the state; level 0 is a pair with no target at all (both cells left in HRS).

The mapping (``weights_to_targets``) of the second layer: hidden unit i drives wordline i; class c
has its positive column on bitline c and its negative column on bitline 10 + c. A weight of level
L > 0 gives bitline c the target L * conductance_step (10 nS per level for 3 bits: 10..80 nS) and
leaves bitline 10 + c in HRS; L < 0 the reverse; L = 0 leaves both in HRS. ``targets_s`` holds 0.0
for "no target: HRS". The class score I+ - I- is then proportional to the weight, apart from the
HRS cell's own current (about 1.6 nS on the twin, a sixth of a level) on the unused side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rramlab import __version__
from rramlab.drivers.interface import RequestError
from rramlab.protocols.mnist import CLASSES, PIXELS, Dataset
from rramlab.protocols.settings import check_settings, setting, settings_dict

VARIANTS = ("fp32", "qt", "qtpr")
#: level -> conductance-pair mappings: "ours" (zero = both cells in HRS, 17 signed levels) and "paper"
#: (zero = both cells at G1, 15 signed levels, the paper's "G6 - G1 to realise G+5")
MAPPINGS = ("ours", "paper")
ARRAY_VARIANTS = ("qt", "qtpr")
VARIANT_TITLES = {"fp32": "FP32", "qt": "QT", "qtpr": "QT & PR"}
NETWORK_FILE_VERSION = 1
#: the device's highest tuned state: 8 states 10..80 nS (paper, 3-bit tuning)
MAX_CONDUCTANCE_S = 80e-9


@dataclass(frozen=True)
class NetworkSettings:
    """Training, quantisation and pruning of the 784-24-10 network."""

    hidden: int = setting(24, "hidden units (one per wordline of the array)", minimum=1, maximum=24)
    epochs: int = setting(30, "training epochs (SGD)", minimum=1, maximum=1000)
    learning_rate: float = setting(0.05, "SGD learning rate", minimum=0.0, maximum=10.0, exclusive_minimum=True)
    batch_size: int = setting(32, "SGD mini-batch size", minimum=1, maximum=100000)
    seed: int = setting(0, "random seed of the initialisation and of the batch order", minimum=0,
                        flag="train_seed")
    bits: int = setting(3, "bits per weight magnitude (3: the device's 8 states, 10..80 nS)", minimum=1, maximum=3)
    prune_ratio: float = setting(0.4, "fraction of each layer's weights pruned in QT & PR (smallest |w|)",
                                 minimum=0.0, maximum=0.95)
    finetune_epochs: int = setting(5, "epochs of training after pruning, pruned weights held at 0",
                                   minimum=0, maximum=1000)
    activation_percentile: float = setting(99.5, "percentile of the hidden ReLU activations (training images) "
                                           "taken as the integrate-and-fire threshold", minimum=50.0,
                                           maximum=100.0)
    mapping: str = setting("ours", "second layer -> conductance pairs: ours (|level| x 10 nS on one cell, the other "
                                   "and a zero weight in HRS; levels -8..8) or paper (G1..G8 = 10..80 nS with G1 as "
                                   "zero, G6 - G1 = +5; levels -7..7, every cell programmed)", choices=MAPPINGS)

    def validate(self) -> None:
        check_settings(self)


# ----- the ANN -----

def he_init(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """He initialisation: N(0, 2 / fan_in), shape (fan_in, fan_out)."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def forward(x: np.ndarray, w1, b1, w2) -> tuple[np.ndarray, np.ndarray]:
    """(hidden ReLU activations (n, hidden), output scores (n, 10)) for images x (n, 784)."""
    h = np.maximum(x @ w1 + b1, 0.0)
    return h, h @ w2


def accuracy(x, labels, w1, b1, w2) -> float:
    """Fraction of images whose highest output is their label."""
    return float(np.mean(np.argmax(forward(x, w1, b1, w2)[1], axis=1) == labels))


def sgd_epochs(x, y, w1, b1, w2, epochs: int, lr: float, batch: int, rng: np.random.Generator,
               masks: tuple[np.ndarray, np.ndarray] | None = None, on_epoch: Callable[[], None] | None = None):
    """Mini-batch SGD on softmax cross-entropy, in place on copies; returns (w1, b1, w2).

    masks: (mask1, mask2) of weights allowed to be non-zero (pruning); the others stay 0.
    on_epoch: called after each epoch (a progress bar).
    """
    from threadpoolctl import threadpool_limits

    # A mini-batch product is 32 x 784 by 784 x 24: BLAS threads cost more than they share, and on a
    # busy machine they wait for each other (15x slower on 2 cores). One thread, whatever the caller.
    with threadpool_limits(limits=1, user_api="blas"):
        return _sgd(x, y, w1, b1, w2, epochs, lr, batch, rng, masks, on_epoch)


def _sgd(x, y, w1, b1, w2, epochs, lr, batch, rng, masks, on_epoch):
    w1, b1, w2 = w1.copy(), b1.copy(), w2.copy()
    n = x.shape[0]
    onehot = np.eye(CLASSES)[y]
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            xb, tb = x[idx], onehot[idx]
            a1 = xb @ w1 + b1
            h = np.maximum(a1, 0.0)
            z = h @ w2
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            dz = (p - tb) / idx.size
            dw2 = h.T @ dz
            dh = (dz @ w2.T) * (a1 > 0)
            w2 -= lr * dw2
            w1 -= lr * (xb.T @ dh)
            b1 -= lr * dh.sum(axis=0)
            if masks is not None:
                w1 *= masks[0]
                w2 *= masks[1]
        if on_epoch is not None:
            on_epoch()
    return w1, b1, w2


# ----- quantisation and pruning -----

def top_level(bits: int, mapping: str = "ours") -> int:
    """The largest |level| a device pair holds: 2**bits (ours: states 1..2**bits, zero in HRS) or
    2**bits - 1 (paper: zero is G1, so G2..G(2**bits) carry 1..2**bits - 1)."""
    return 2 ** bits - (1 if mapping == "paper" else 0)


def quantise(w: np.ndarray, bits: int, mapping: str = "ours") -> tuple[np.ndarray, float]:
    """(integer levels, step): w ~ levels * step, levels in -top .. top, step = max|w| / top, top =
    ``top_level(bits, mapping)`` (2**bits, or 2**bits - 1 for the paper's mapping).

    Rounds to the nearest level. An all-zero layer has step 1.0 and every level 0.
    """
    if not 1 <= bits <= 16:
        raise RequestError(f"quantiser bits must be 1 to 16, got {bits}")
    top = top_level(bits, mapping)
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    step = peak / top if peak > 0 else 1.0
    levels = np.clip(np.rint(w / step), -top, top).astype(np.int64)
    return levels, step


def prune_mask(w: np.ndarray, ratio: float) -> np.ndarray:
    """Boolean mask keeping all but the ``round(ratio * size)`` smallest-magnitude weights
    (unstructured magnitude pruning; ties broken by position, so exactly that many are removed)."""
    if not 0.0 <= ratio < 1.0:
        raise RequestError(f"pruning ratio must be in [0, 1), got {ratio}")
    n_pruned = int(round(ratio * w.size))
    mask = np.ones(w.size, dtype=bool)
    if n_pruned:
        mask[np.argsort(np.abs(w).ravel(), kind="stable")[:n_pruned]] = False
    return mask.reshape(w.shape)


def spiking_threshold(x: np.ndarray, w1, b1, percentile: float) -> float:
    """Integrate-and-fire threshold of the hidden layer: the ``percentile`` of its positive ReLU
    activations over images ``x``, so that unit fires at most about once per step (data-based
    normalisation of the ANN -> SNN conversion)."""
    h = np.maximum(x @ w1 + b1, 0.0)
    positive = h[h > 0]
    return float(np.percentile(positive, percentile)) if positive.size else 1.0


# ----- variants -----

@dataclass(frozen=True)
class Variant:
    """One version of the network, ready for the SNN: float weights as used (quantised ones are
    ``levels * step``), the second layer's integer levels, and the hidden threshold."""

    name: str
    w1: np.ndarray           # (784, hidden)
    b1: np.ndarray           # (hidden,)
    w2: np.ndarray           # (hidden, 10)
    threshold: float         # integrate-and-fire threshold of the hidden layer (same units as w1 @ x)
    levels2: np.ndarray | None = None   # (hidden, 10) ints, quantised variants only
    step2: float | None = None          # weight per level of the second layer
    bits: int | None = None
    test_accuracy: float = float("nan")
    mapping: str = "ours"               # level -> conductance pair (MAPPINGS)

    @property
    def pair_zero(self) -> str:
        """What the transfer puts on a zero weight and a pair's unused side: "hrs" (ours) or "g1" (paper)."""
        return "g1" if self.mapping == "paper" else "hrs"

    @property
    def title(self) -> str:
        return VARIANT_TITLES.get(self.name, self.name)

    @property
    def quantised(self) -> bool:
        return self.levels2 is not None

    def targets_s(self) -> np.ndarray:
        """The second layer as conductance targets (hidden, 20) in siemens; 0.0: no target (HRS)."""
        if self.levels2 is None:
            raise RequestError(f"variant {self.name!r} is not quantised: only {ARRAY_VARIANTS} map onto the array")
        return levels_to_targets(self.levels2, conductance_step(self.bits), self.pair_zero)

    def predict(self, x) -> np.ndarray:
        return np.argmax(forward(x, self.w1, self.b1, self.w2)[1], axis=1)


@dataclass(frozen=True)
class Network:
    settings: NetworkSettings
    variants: dict[str, Variant]
    data_source: str
    train_images: int
    test_images: int
    extra: dict = field(default_factory=dict)

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise RequestError(f"variant {name!r} is not in this network: use one of {', '.join(self.variants)}")
        return self.variants[name]


def _quantised_variant(name, w1, b1, w2, bits, x_train, percentile, x_test, y_test, mapping="ours") -> Variant:
    # both layers get the same number of levels (the first runs in software, quantised as the paper does)
    l1, s1 = quantise(w1, bits, mapping)
    l2, s2 = quantise(w2, bits, mapping)
    q1, q2 = l1 * s1, l2 * s2
    return Variant(name, q1, b1.copy(), q2, spiking_threshold(x_train, q1, b1, percentile), l2, s2, bits,
                   accuracy(x_test, y_test, q1, b1, q2), mapping)


def build_variants(train: Dataset, test: Dataset, settings: NetworkSettings = NetworkSettings(),
                   on_epoch: Callable[[], None] | None = None) -> Network:
    """Train FP32, then derive QT and QT & PR, each with its test accuracy (as an ANN).
    ``on_epoch`` is called after each of the ``training_epochs(settings)`` epochs (a progress bar)."""
    settings.validate()
    if train.images.shape[1] != PIXELS:
        raise RequestError(f"training images have {train.images.shape[1]} pixels, the network takes {PIXELS}")
    s = settings
    rng = np.random.default_rng(s.seed)
    w1 = he_init(rng, PIXELS, s.hidden)
    b1 = np.zeros(s.hidden)
    w2 = he_init(rng, s.hidden, CLASSES)
    x, y = train.images, train.labels
    w1, b1, w2 = sgd_epochs(x, y, w1, b1, w2, s.epochs, s.learning_rate, s.batch_size, rng, on_epoch=on_epoch)
    xt, yt = test.images, test.labels
    variants = {"fp32": Variant("fp32", w1, b1, w2, spiking_threshold(x, w1, b1, s.activation_percentile),
                                test_accuracy=accuracy(xt, yt, w1, b1, w2))}
    variants["qt"] = _quantised_variant("qt", w1, b1, w2, s.bits, x, s.activation_percentile, xt, yt, s.mapping)
    # its own generator (seed + 1), so the pruning sweep at the same ratio gives this same variant
    variants["qtpr"] = pruned_variant(w1, b1, w2, s.prune_ratio, train, test, s, name="qtpr", on_epoch=on_epoch)
    return Network(s, variants, train.source.replace(" (train)", ""), len(train), len(test))


def pruned_variant(w1, b1, w2, ratio: float, train: Dataset, test: Dataset, settings: NetworkSettings,
                   rng: np.random.Generator | None = None, name: str = "qtpr",
                   on_epoch: Callable[[], None] | None = None) -> Variant:
    """Prune ``ratio`` of each layer by magnitude, fine-tune with the masks, quantise."""
    s = settings
    rng = rng if rng is not None else np.random.default_rng(s.seed + 1)
    m1, m2 = prune_mask(w1, ratio), prune_mask(w2, ratio)
    p1, pb, p2 = sgd_epochs(train.images, train.labels, w1 * m1, b1, w2 * m2, s.finetune_epochs,
                            s.learning_rate, s.batch_size, rng, masks=(m1, m2), on_epoch=on_epoch) \
        if s.finetune_epochs \
        else (w1 * m1, b1.copy(), w2 * m2)
    return _quantised_variant(name, p1, pb, p2, s.bits, train.images, s.activation_percentile,
                              test.images, test.labels, s.mapping)


def training_epochs(settings: NetworkSettings) -> int:
    """Epochs ``build_variants`` runs: the FP32 training and the fine-tuning of QT & PR."""
    return settings.epochs + settings.finetune_epochs


def train_network(mnist, settings: NetworkSettings = NetworkSettings(),
                  on_epoch: Callable[[], None] | None = None) -> Network:
    """``build_variants`` on an ``rramlab.protocols.mnist.Mnist``."""
    return build_variants(mnist.train, mnist.test, settings, on_epoch)


# ----- the mapping onto the array -----

def conductance_step(bits: int, max_conductance_s: float = MAX_CONDUCTANCE_S) -> float:
    """Conductance per weight level (S): the top level 2**bits sits at ``max_conductance_s``.
    3 bits: 10 nS per level, levels 10..80 nS."""
    return max_conductance_s / 2 ** bits


def conductance_levels(bits: int, max_conductance_s: float = MAX_CONDUCTANCE_S) -> np.ndarray:
    """The programmed states a weight file uses (S), ascending: 10, 20, ... 80 nS for 3 bits."""
    return conductance_step(bits, max_conductance_s) * np.arange(1, 2 ** bits + 1)


def levels_to_targets(levels: np.ndarray, step_s: float, pair_zero: str = "hrs") -> np.ndarray:
    """Integer levels (hidden, classes) -> conductance targets (hidden, 2 * classes) in S.

    Positive levels on columns 0..classes-1, negative ones (as magnitudes) on columns
    classes..2*classes-1; 0.0 where a cell has no target (left in HRS). ``pair_zero="g1"`` (the
    paper's mapping): every cell holds (its magnitude + 1) x step_s, so zero is G1 on both cells."""
    levels = np.asarray(levels)
    if levels.ndim != 2:
        raise RequestError(f"weight levels must be a (hidden, classes) matrix, got shape {levels.shape}")
    if pair_zero == "g1":
        pos = (np.maximum(levels, 0) + 1) * step_s
        neg = (np.maximum(-levels, 0) + 1) * step_s
        return np.concatenate([pos, neg], axis=1).astype(float)
    pos = np.where(levels > 0, levels, 0) * step_s
    neg = np.where(levels < 0, -levels, 0) * step_s
    return np.concatenate([pos, neg], axis=1).astype(float)


def differential_conductance(conductance_s: np.ndarray) -> np.ndarray:
    """G+ - G- per (hidden, class) from a (hidden, 2 * classes) conductance map (S)."""
    g = np.asarray(conductance_s, dtype=float)
    if g.ndim != 2 or g.shape[1] % 2:
        raise RequestError(f"a differential conductance map has an even number of columns, got shape {g.shape}")
    k = g.shape[1] // 2
    return g[:, :k] - g[:, k:]


def conductance_to_levels(conductance_s: np.ndarray, step_s: float) -> np.ndarray:
    """Nearest integer levels from a (hidden, 2 * classes) conductance map (S), e.g. measured:
    the inverse of ``levels_to_targets`` while every cell is within half a step of its target."""
    return np.rint(differential_conductance(conductance_s) / step_s).astype(np.int64)


def conductance_to_weights(conductance_s: np.ndarray, step_s: float, weight_step: float) -> np.ndarray:
    """Effective weights (hidden, classes) of a conductance map: (G+ - G-) / step_s * weight_step."""
    return differential_conductance(conductance_s) / step_s * weight_step


# ----- files -----

def save_network(path, net: Network) -> Path:
    """Write the network file (.npz); see README "Network file". Arrays per variant ``v``:
    ``v.w1``, ``v.b1``, ``v.w2``; quantised ones also ``v.levels2`` and ``v.targets_s``; ``meta`` is JSON."""
    path = Path(path)
    arrays = {}
    meta = {"version": NETWORK_FILE_VERSION, "rramlab": __version__, "settings": settings_dict(net.settings),
            "data_source": net.data_source, "train_images": net.train_images, "test_images": net.test_images,
            "extra": net.extra, "variants": {}}
    for name, v in net.variants.items():
        arrays[f"{name}.w1"], arrays[f"{name}.b1"], arrays[f"{name}.w2"] = v.w1, v.b1, v.w2
        vm = {"threshold": v.threshold, "test_accuracy": v.test_accuracy, "mapping": v.mapping}
        if v.quantised:
            arrays[f"{name}.levels2"] = v.levels2
            arrays[f"{name}.targets_s"] = v.targets_s()
            vm.update(step2=v.step2, bits=v.bits, conductance_step_s=conductance_step(v.bits))
        meta["variants"][name] = vm
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_network(path) -> Network:
    """Read a network file written by ``save_network``; RequestError names what is wrong."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"network file {path} does not exist: make one with rramlab train --out {path}")
    from rramlab.protocols.weights import not_an_npz

    why = not_an_npz(path) if path.is_file() else "it is a folder"
    if why is not None:
        raise RequestError(f"{path} is not a network file ({why}); make one with rramlab train --out FILE")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise RequestError(f"{path} is not a network file (not an .npz: {exc}); make one with rramlab train") from exc
    with data:
        files = set(data.files)
        if "meta" not in files:
            kind = (" (it is a weight file: give it to rramlab transfer)" if "levels" in files else
                    " (it is a chip file saved with --save-chip: give it as --chip)" if "switch_states" in files
                    else "")
            raise RequestError(f"{path} is not a rramlab network file (no 'meta' entry){kind}; make one with "
                               "rramlab train --out FILE")
        try:
            meta = json.loads(str(data["meta"]))
        except ValueError as exc:
            raise RequestError(f"{path}: its 'meta' entry is not JSON ({exc}): not a rramlab network file") from None
        if not isinstance(meta, dict) or "variants" not in meta:
            kind = ("a chip file saved with --save-chip: give it as --chip" if "switch_states" in files else
                    "a weight file: give it to rramlab transfer" if "levels" in files else
                    "not a network file")
            raise RequestError(f"{path} is {kind}; --network takes a file made by rramlab train --out FILE")
        if meta.get("version") != NETWORK_FILE_VERSION:
            raise RequestError(f"{path} has network file version {meta.get('version')}, "
                               f"this rramlab reads {NETWORK_FILE_VERSION}")
        try:
            variants = {}
            for name, vm in meta["variants"].items():
                q = "bits" in vm
                variants[name] = Variant(name, data[f"{name}.w1"], data[f"{name}.b1"], data[f"{name}.w2"],
                                         vm["threshold"], data[f"{name}.levels2"] if q else None,
                                         vm.get("step2"), vm.get("bits"), vm["test_accuracy"], vm.get("mapping", "ours"))
            return Network(NetworkSettings(**meta["settings"]), variants, meta["data_source"], meta["train_images"],
                           meta["test_images"], meta.get("extra", {}))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise RequestError(f"{path}: the network file is incomplete or was edited ({type(exc).__name__}: "
                               f"{exc}): train it again with rramlab train --out FILE") from None


def save_weight_file(path, variant: Variant) -> Path:
    """The second layer of one quantised variant as a weight file for ``rramlab transfer`` (.npz, the
    format of ``protocols/weights.py``): ``levels`` (hidden, 10) int and ``conductance_step_s`` (S per
    level) are what the transfer reads; beside them, for people and plots, ``targets_s`` (hidden, 20)
    float, S (wordline x bitline, 0.0 = leave in HRS), ``weights`` (hidden, 10) float (levels x
    weight_step), ``conductance_levels_s`` (2**bits,) the states used, ``weight_step`` and ``meta``
    (JSON: variant, bits, column layout)."""
    from rramlab.protocols.weights import save_weights

    meta = {"version": NETWORK_FILE_VERSION, "variant": variant.name, "bits": variant.bits,
            "columns": "bitline c: positive part of class c; bitline 10 + c: negative part",
            "mapping": variant.mapping, "pair_zero": variant.pair_zero,
            "rramlab": __version__}
    return save_weights(path, variant.levels2, f"{variant.title} second layer of the 784-24-10 network",
                        conductance_step(variant.bits), targets_s=variant.targets_s(), weights=variant.w2,
                        conductance_levels_s=conductance_levels(variant.bits),
                        weight_step=np.float64(variant.step2), meta=np.array(json.dumps(meta)))
