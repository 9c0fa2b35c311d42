from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from hpsearch.datasets import load_dataset, read_idx
from hpsearch.errors import CorruptDataError, DatasetNotFoundError, UnknownNameError, UsageError


def test_mnist_from_shared_idx_files(mnist_dir: Path) -> None:
    data = load_dataset("mnist", data_dir=mnist_dir)
    assert len(data.x_train) + len(data.x_val) == 24_000
    assert len(data.x_val) == 2_400  # the default 10% validation split
    assert data.x_test.shape == (10_000, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert data.y_train.dtype == np.int64 and set(np.unique(data.y_test)) == set(range(10))
    # Class counts of the shared training part (its README), split across train and validation.
    counts = np.bincount(np.concatenate([data.y_train, data.y_val]), minlength=10)
    assert counts.tolist() == [2381, 2732, 2347, 2487, 2347, 2144, 2370, 2489, 2292, 2411]


def test_data_dir_from_environment(mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(mnist_dir))
    assert load_dataset("mnist", train_size=1000).source == str(mnist_dir)


def test_subset_is_stratified_and_seeded(mnist_dir: Path) -> None:
    a = load_dataset("mnist", data_dir=mnist_dir, train_size=2000, validation_split=0.2, seed=3)
    b = load_dataset("mnist", data_dir=mnist_dir, train_size=2000, validation_split=0.2, seed=3)
    c = load_dataset("mnist", data_dir=mnist_dir, train_size=2000, validation_split=0.2, seed=4)
    assert len(a.x_train) == 1600 and len(a.x_val) == 400
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    per_class = np.bincount(a.y_val, minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 50  # 400 * class share, not whatever came first


def test_mnist_sample_is_bundled_and_offline() -> None:
    data = load_dataset("mnist-sample")
    assert len(data.x_train) + len(data.x_val) == 4000 and len(data.x_test) == 1000
    assert data.input_shape == (28, 28, 1)
    assert np.bincount(data.y_test).tolist() == [100] * 10


def test_digits_are_8x8() -> None:
    data = load_dataset("digits")
    assert data.input_shape == (8, 8, 1)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 1797
    assert data.x_train.max() <= 1.0


def test_keras_npz_is_accepted(tmp_path: Path, mnist_dir: Path) -> None:
    x_train = read_idx(mnist_dir / "train-images-idx3-ubyte.gz")[:500]
    y_train = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")[:500]
    x_test = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:100]
    y_test = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:100]
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert len(data.x_test) == 100 and data.source.endswith("mnist.npz")


def _copy_mnist(src: Path, dst: Path) -> Path:
    dst.mkdir(exist_ok=True)
    for f in src.glob("*.gz"):
        shutil.copy(f, dst / f.name)
    return dst


def test_truncated_idx_file_is_a_clear_error(tmp_path: Path, mnist_dir: Path) -> None:
    d = _copy_mnist(mnist_dir, tmp_path / "m")
    raw = gzip.decompress((d / "t10k-images-idx3-ubyte.gz").read_bytes())
    (d / "t10k-images-idx3-ubyte.gz").unlink()
    (d / "t10k-images-idx3-ubyte").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptDataError, match="truncated or corrupt"):
        load_dataset("mnist", data_dir=d)


def test_truncated_gzip_is_a_clear_error(tmp_path: Path, mnist_dir: Path) -> None:
    d = _copy_mnist(mnist_dir, tmp_path / "m")
    blob = (d / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptDataError, match="t10k-labels"):
        load_dataset("mnist", data_dir=d)


def test_bad_magic_number(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(CorruptDataError, match="magic number"):
        read_idx(path)


def test_mismatched_image_and_label_counts(tmp_path: Path, mnist_dir: Path) -> None:
    d = _copy_mnist(mnist_dir, tmp_path / "m")
    labels = read_idx(d / "t10k-labels-idx1-ubyte.gz")[:9000]
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    (d / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + labels.tobytes())
    with pytest.raises(CorruptDataError, match="10000 images but .* 9000 labels"):
        load_dataset("mnist", data_dir=d)


def test_missing_file_is_named(tmp_path: Path, mnist_dir: Path) -> None:
    d = _copy_mnist(mnist_dir, tmp_path / "m")
    (d / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=d)


def test_nothing_found_offline_names_both_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh home (no Keras cache) and a proxy that refuses: the real download fails, as it does offline.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("HPSEARCH_DATA_DIR", raising=False)
    import hpsearch.datasets as ds

    monkeypatch.setattr(ds, "KERAS_CACHE", tmp_path / ".keras" / "datasets")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "--data-dir" in message and "HPSEARCH_DATA_DIR" in message and "mnist.npz" in message
    assert "download failed" in message


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="mnist-sample"):
        load_dataset("cifar")


def test_bad_validation_split() -> None:
    with pytest.raises(UsageError, match="between 0 and 1"):
        load_dataset("digits", validation_split=1.5)


def test_fashion_mnist_from_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPSEARCH_DATA_DIR", raising=False)
    data = load_dataset("fashion-mnist", train_size=2000)
    assert data.source == "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist (.ci/run installs it)
    assert data.x_test.shape == (10_000, 28, 28, 1) and data.class_names[0] == "T-shirt"
    assert len(data.x_train) + len(data.x_val) == 2000
