"""Data sets as uint8 pixel arrays: Fashion-MNIST from its IDX files, scikit-learn's digits.

Images come back flattened, ``uint8`` in 0..255, with ``int64`` labels, so the float trainer, the
integer golden model and the RTL testbenches all start from the same bytes.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "DataError", "FASHION_MNIST_DIR", "read_idx", "load_fashion_mnist",
           "load_digits", "load_dataset"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "EDGE3U_FASHION_MNIST"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


class DataError(RuntimeError):
    """A data set is missing or its files are malformed; the message says how to fix it."""


@dataclass(frozen=True)
class Dataset:
    """Train and test splits: ``x_*`` uint8 (count, features), ``y_*`` int64 (count,)."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def features(self) -> int:
        return self.x_train.shape[1]

    def subset(self, train_images: int) -> "Dataset":
        """The first ``train_images`` training images (the test split is kept whole)."""
        return Dataset(self.name, self.x_train[:train_images], self.y_train[:train_images],
                       self.x_test, self.y_test)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into an array of its shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic {raw[:4].hex()!r})")
    if raw[2] != 0x08:
        raise DataError(f"{path}: element type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes) "
                        f"but the file holds {data.size} bytes")
    return data.reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load_fashion_mnist(path: str | Path | None = None) -> Dataset:
    """Fashion-MNIST (60,000 train + 10,000 test 28x28 images) from its four IDX files.

    The folder is ``path``, else ``$EDGE3U_FASHION_MNIST``, else Debian's
    ``/usr/share/datasets/fashion-mnist``.
    """
    folder = Path(path or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    found = {key: _find(folder, stem) for key, stem in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[key] + ".gz" for key, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST is not in {str(folder)!r} (missing {', '.join(missing)}). Install it "
            f"with `apt-get install dataset-fashion-mnist` (Debian), or point data.path in the "
            f"config, --data or ${FASHION_MNIST_ENV} at a folder holding the four IDX files.")
    arrays = {key: read_idx(p) for key, p in found.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[0] != labels.shape[0]:
            raise DataError(f"{folder}: {split} images {images.shape} do not match labels "
                            f"{labels.shape}")
    return Dataset("fashion-mnist",
                   arrays["train_images"].reshape(-1, 784), arrays["train_labels"].astype(np.int64),
                   arrays["test_images"].reshape(-1, 784), arrays["test_labels"].astype(np.int64))


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 8x8 digits, pixels scaled from 0..16 to 0..255, split by a fixed seed."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = np.clip(np.rint(bunch.data * 16), 0, 255).astype(np.uint8)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", x[train], y[train], x[test], y[test])


def load_dataset(name: str, path: str | Path | None = None) -> Dataset:
    """The data set a config's ``data.dataset`` names."""
    if name == "fashion-mnist":
        return load_fashion_mnist(path)
    if name == "digits":
        return load_digits()
    raise DataError(f"unknown data set {name!r}; valid: 'fashion-mnist', 'digits'")
