import gzip
import struct

import numpy as np
import pytest

from edge3u.data import DataError, load_digits, load_fashion_mnist, read_idx


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(
        struct.pack(">I", s) for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion(folder, train=12, test=5):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, test)}
    for name, array in arrays.items():
        write_idx(folder / f"{name}.gz", array)
    return arrays


def test_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_idx_rejects_truncated_and_foreign_files(tmp_path):
    (tmp_path / "x").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(DataError, match="header says shape \\(5,\\)"):
        read_idx(tmp_path / "x")
    (tmp_path / "y").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "y")


def test_fashion_mnist_from_a_folder(tmp_path):
    arrays = fake_fashion(tmp_path)
    ds = load_fashion_mnist(tmp_path)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train[3], arrays["train-images-idx3-ubyte"][3].reshape(-1))
    assert ds.subset(4).x_train.shape == (4, 784)


def test_fashion_mnist_folder_from_environment(tmp_path, monkeypatch):
    fake_fashion(tmp_path)
    monkeypatch.setenv("EDGE3U_FASHION_MNIST", str(tmp_path))
    assert load_fashion_mnist().x_test.shape == (5, 784)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist.*EDGE3U_FASHION_MNIST"):
        load_fashion_mnist(tmp_path)


def test_digits_split_is_fixed_and_disjoint():
    a, b = load_digits(), load_digits()
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert len(a.y_train) + len(a.y_test) == 1797 and a.x_train.max() <= 255
    assert a.features == 64
