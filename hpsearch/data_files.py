"""Users' own data: `--dataset npz:FILE`.

A NumPy `.npz` file holds `x_train` and `y_train`, and optionally `x_val`/`y_val`, `x_test`/`y_test` and
`class_names`. Images are N x H x W (a channel axis is added) or N x H x W x C; any other array (N x features)
is passed to the model as it is. uint8 values are scaled to [0, 1]; floats are used as given. Labels are integers
0..K-1, K = the length of `class_names` when given, else the largest label + 1. Without `x_val`, a stratified
`--validation-split` of the training part is held out; without `x_test`, a fixed stratified 10% of the training part
(seed 0, whatever the study's seed) becomes the test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpsearch.errors import CorruptDataError, DatasetNotFoundError, UsageError

if TYPE_CHECKING:
    from hpsearch.datasets import Dataset

NPZ_PREFIX = "npz:"
# Arrays handed to the Python API (`hpsearch.run(data=(x, y))`): they live in that process only.
MEMORY_PREFIX = "memory:"
TEST_FRACTION = 0.1
_PAIRS = (("x_train", "y_train"), ("x_val", "y_val"), ("x_test", "y_test"))


IMAGES_PREFIX = "images:"  # a folder of images, one subfolder per class: hpsearch/image_folders.py


def is_file_dataset(name: str) -> bool:
    """A dataset of the user's: `npz:FILE`, `images:DIR`, a loader function, or arrays of the Python API."""
    return isinstance(name, str) and (name.startswith((NPZ_PREFIX, MEMORY_PREFIX, IMAGES_PREFIX))
                                      or is_loader(name))


def is_loader(name: str) -> bool:
    """`package.module:function` or `path/to/file.py:function` returning the arrays."""
    return ":" in name and not name.startswith((NPZ_PREFIX, MEMORY_PREFIX, IMAGES_PREFIX))


def check_name(name: str) -> None:
    """Syntax only (the file is read where the data is loaded).

    Raises:
        UsageError: `npz:` without a path.
    """
    if name.startswith(MEMORY_PREFIX):
        return
    if name.startswith(IMAGES_PREFIX):
        from hpsearch.image_folders import parse

        parse(name)
        return
    if is_loader(name):
        from hpsearch.models.references import split

        split(name)
        return
    if not name[len(NPZ_PREFIX):].strip():
        raise UsageError("--dataset npz: needs a file, e.g. --dataset npz:data/my_images.npz")


def normalize(name: str, base: Path | None = None) -> str:
    """`npz:` / `images:` with an absolute path, as a study stores it (workers may start in another directory)."""
    if isinstance(name, str) and name.startswith(IMAGES_PREFIX):
        from hpsearch.image_folders import normalize as normalize_images

        return normalize_images(name, base)
    if isinstance(name, str) and is_loader(name):
        from hpsearch.models.references import normalize as normalize_reference

        return normalize_reference(name, base)
    if not name.startswith(NPZ_PREFIX):
        return name
    check_name(name)
    path = Path(name[len(NPZ_PREFIX):]).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"{NPZ_PREFIX}{path.resolve()}"


def npz_path(name: str) -> Path:
    return Path(name[len(NPZ_PREFIX):]).expanduser()


def locate(name: str) -> str:
    if name.startswith(MEMORY_PREFIX):
        return "NOT FOUND: arrays given to hpsearch.run() in another Python process"
    if name.startswith(IMAGES_PREFIX):
        from hpsearch.image_folders import parse

        folder = parse(name)[0]
        return str(folder) if folder.is_dir() else f"NOT FOUND: {folder} is not a folder"
    path = npz_path(name)
    return str(path) if path.is_file() else f"NOT FOUND: {path} does not exist"


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the file, checked against each other.

    Raises:
        DatasetNotFoundError: no such file.
        CorruptDataError: not an .npz, missing or mismatched arrays, labels out of range.
    """
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset file {path} does not exist; give an .npz with x_train and y_train "
                                   "(optionally x_val, y_val, x_test, y_test, class_names): --dataset npz:FILE")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise CorruptDataError(f"{path}: cannot be read as a NumPy .npz file ({exc}); save it with "
                               "numpy.savez(path, x_train=..., y_train=...)") from exc
    return check_arrays(arrays, str(path))


def call_loader(ref: str) -> dict[str, np.ndarray]:
    """Calls the user's loader (no arguments) and takes what it returns as arrays.

    Accepted: a dict (x_train, y_train, optionally x_val, y_val, x_test, y_test, class_names); (x_train, y_train);
    (x_train, y_train, x_test, y_test); Keras's ((x_train, y_train), (x_test, y_test)).

    Raises:
        UsageError: the loader cannot be imported, fails, or returns something else.
    """
    from hpsearch.models.references import ModelReferenceError, load_object

    try:
        loader = load_object(ref)
    except ModelReferenceError as exc:
        raise UsageError(f"dataset loader: {str(exc).replace('model', 'loader')}") from None
    if not callable(loader):
        raise UsageError(f"dataset loader {ref!r} is a {type(loader).__name__}; point it at a function that returns "
                         "the arrays")
    try:
        got = loader()
    except Exception as exc:
        raise UsageError(f"dataset loader {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    if _is_tf_dataset(got) or (isinstance(got, (tuple, list, dict)) and got
                               and all(_is_tf_dataset(v) for v in (got.values() if isinstance(got, dict) else got))):
        return _read_tf_data(got, ref)
    if isinstance(got, dict):
        return dict(got)
    if isinstance(got, (tuple, list)):
        if len(got) == 2 and all(isinstance(part, (tuple, list)) and len(part) == 2 for part in got):
            (x_train, y_train), (x_test, y_test) = got
            return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        if len(got) in (2, 4):
            return dict(zip(("x_train", "y_train", "x_test", "y_test"), got, strict=False))
    raise UsageError(f"dataset loader {ref!r} returned {type(got).__name__}; return a dict of arrays (x_train, "
                     "y_train, ...), (x_train, y_train), (x_train, y_train, x_test, y_test) or ((x_train, y_train), "
                     "(x_test, y_test)), or tf.data datasets: train, (train, val), (train, val, test) or a dict "
                     "with train, val, test")


TF_DATA_MAX_BYTES = 8 * 2**30  # what a loader's tf.data datasets may take in memory once read


def _is_tf_dataset(value: object) -> bool:
    return hasattr(value, "as_numpy_iterator") and hasattr(value, "element_spec")


def _read_tf_data(got: object, ref: str) -> dict[str, np.ndarray]:
    """A loader's tf.data datasets of (image, label) elements or batches, read into arrays once.

    `keras.utils.image_dataset_from_directory`'s datasets work as they are: their class names are kept and their
    0..255 float pixels become uint8 (scaled like every dataset's). Workers read the data the same way.
    """
    if _is_tf_dataset(got):
        parts = {"train": got}
    elif isinstance(got, dict):
        unknown = sorted(set(got) - {"train", "val", "test"})
        if unknown or "train" not in got:
            raise UsageError(f"dataset loader {ref!r} returned tf.data datasets under {sorted(got)}; use the keys "
                             "train (required), val and test")
        parts = dict(got)
    else:
        parts = dict(zip(("train", "val", "test"), got, strict=False))  # type: ignore[call-overload]
    arrays: dict[str, np.ndarray] = {}
    total = 0
    for split, dataset in parts.items():
        spec = dataset.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise UsageError(f"dataset loader {ref!r}: the {split} dataset yields {type(spec).__name__} elements; "
                             "yield (image, label) pairs or batches of them (e.g. ds.map(lambda d: (d['image'], "
                             "d['label'])) for a dictionary)")
        x_shape, y_shape = spec[0].shape, spec[1].shape
        # Batched: an unknown first axis, or one that x and y share (batch(n, drop_remainder=True)).
        batched = len(x_shape) > 0 and (x_shape[0] is None or (len(y_shape) > 0 and y_shape[0] == x_shape[0]))
        xs, ys = [], []
        for x, y in dataset.as_numpy_iterator():
            xs.append(x if batched else x[None])
            ys.append(np.asarray(y) if batched else np.asarray(y)[None])
            total += xs[-1].nbytes
            if total > TF_DATA_MAX_BYTES:
                raise UsageError(f"dataset loader {ref!r}: its tf.data datasets take more than "
                                 f"{TF_DATA_MAX_BYTES / 2**30:.0f} GiB read into memory; use --dataset images:DIR for "
                                 "image folders larger than memory (streamed), or return fewer images")
        if not xs:
            raise UsageError(f"dataset loader {ref!r}: the {split} dataset is empty")
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
        if y_all.ndim == 2 and y_all.shape[1] > 1:  # one-hot labels (label_mode="categorical")
            y_all = y_all.argmax(axis=1)
        if np.issubdtype(x_all.dtype, np.floating) and x_all.size and 1.0 < x_all.max() <= 255.0 \
                and x_all.min() >= 0.0:
            x_all = (x_all / 255.0).astype(np.float32)  # 0..255 pixels (image_dataset_from_directory), as uint8 are
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x_all, y_all.reshape(-1)
    names = getattr(parts["train"], "class_names", None)
    if names:
        arrays["class_names"] = np.asarray(names)
    return arrays


def check_arrays(arrays: dict[str, np.ndarray], path: str) -> dict[str, np.ndarray]:
    """Checks the arrays against each other (`path` names where they come from in messages); labels as int64.

    Raises:
        CorruptDataError: missing or mismatched arrays, labels that are not integers.
    """
    # Image files streamed from disk stay files (np.asarray would read every image).
    arrays = {k: v if _is_streamed(v) else np.asarray(v) for k, v in arrays.items()}
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise CorruptDataError(f"{path} holds {', '.join(sorted(arrays)) or 'no arrays'} but not "
                               f"{', '.join(missing)}; the file needs x_train and y_train")
    for x_key, y_key in _PAIRS[1:]:
        if (x_key in arrays) != (y_key in arrays):
            raise CorruptDataError(f"{path} holds {x_key if x_key in arrays else y_key} without "
                                   f"{y_key if x_key in arrays else x_key}; give both or neither")
    shape = arrays["x_train"].shape[1:]
    if arrays["x_train"].ndim < 2 or not len(arrays["x_train"]):
        raise CorruptDataError(f"{path}: x_train must hold at least one example with a shape (N x ...), found "
                               f"{arrays['x_train'].shape}")
    for x_key, y_key in _PAIRS:
        if x_key not in arrays:
            continue
        x, y = arrays[x_key], arrays[y_key]
        if x.shape[1:] != shape:
            raise CorruptDataError(f"{path}: {x_key} examples are {x.shape[1:]}, x_train's are {shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise CorruptDataError(f"{path}: {y_key} must be one integer label per example of {x_key} "
                                   f"({len(x)}), found shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.issubdtype(y.dtype, np.floating) or not np.all(np.mod(y, 1) == 0):
                raise CorruptDataError(f"{path}: {y_key} must hold integer class labels 0..K-1, found "
                                       f"{y.dtype} values such as {y[:3].tolist()}")
        arrays[y_key] = y.astype(np.int64)
    return arrays


def class_names(arrays: dict[str, np.ndarray], path: Path) -> list[str]:
    labels = np.concatenate([arrays[y] for _, y in _PAIRS if y in arrays])
    if labels.min() < 0:
        raise CorruptDataError(f"{path}: labels must be 0..K-1, found {labels.min()}")
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"].tolist()]
        if labels.max() >= len(names):
            raise CorruptDataError(f"{path}: label {labels.max()} is out of range for the {len(names)} "
                                   f"class_names ({', '.join(names[:10])}); labels must be 0..{len(names) - 1}")
        return names
    return [str(i) for i in range(int(labels.max()) + 1)]


def _is_streamed(x: object) -> bool:
    from hpsearch.image_folders import ImageFiles

    return isinstance(x, ImageFiles)


def _scale(x: np.ndarray) -> np.ndarray:
    if _is_streamed(x):
        return x  # scaled to [0, 1] as each batch is read
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x[..., np.newaxis] if x.ndim == 3 else x


def load_file_dataset(name: str, train_size: int | None, validation_split: float, seed: int) -> Dataset:
    """The user's data as a `Dataset`: an image folder (hpsearch/image_folders.py) or an .npz's arrays (see the
    module's docstring for the splits)."""
    if name.startswith(IMAGES_PREFIX):
        from hpsearch.image_folders import load_image_folder

        return load_image_folder(name, train_size, validation_split, seed)
    if is_loader(name):
        return from_arrays(check_arrays(call_loader(name), name), name, f"{name}()", train_size, validation_split,
                           seed)
    if name.startswith(MEMORY_PREFIX):
        raise UsageError(f"dataset {name!r}: arrays given to hpsearch.run() live in that Python process only; save "
                         "them with numpy.savez(FILE, x_train=..., y_train=...) and use npz:FILE to run worker "
                         "processes or commands on this study")
    check_name(name)
    path = npz_path(name)
    return from_arrays(read_npz(path), f"{NPZ_PREFIX}{path}", str(path), train_size, validation_split, seed)


def from_arrays(arrays: dict[str, np.ndarray], name: str, source: str, train_size: int | None,
                validation_split: float, seed: int) -> Dataset:
    """A `Dataset` from checked arrays (`read_npz`'s or `check_arrays`'s), split as the module's docstring says."""
    from sklearn.model_selection import train_test_split

    from hpsearch.datasets import Dataset, _stratified_subset

    path = source
    names = class_names(arrays, path)
    x, y = arrays["x_train"], arrays["y_train"]
    notes = []

    def split(x: np.ndarray, y: np.ndarray, fraction: float, random_state: int, what: str) -> tuple[np.ndarray, ...]:
        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 2 and round(fraction * len(y)) >= np.count_nonzero(counts) \
            else None
        if round(fraction * len(y)) < 1 or len(y) - round(fraction * len(y)) < 1:
            raise UsageError(f"{path}: {len(y)} training examples are too few to hold out a {what} split")
        return tuple(train_test_split(x, y, test_size=fraction, stratify=stratify, random_state=random_state))

    if "x_test" in arrays:
        x_test, y_test = arrays["x_test"], arrays["y_test"]
    else:
        x, x_test, y, y_test = split(x, y, TEST_FRACTION, 0, "test")
        notes.append(f"test: {TEST_FRACTION:.0%} of x_train")
    if train_size is not None:
        if train_size > len(x):
            raise UsageError(f"--train-size {train_size} is larger than the {len(x)} training examples of {path}; "
                             f"use at most {len(x)}, or leave it out")
        x, y = _stratified_subset(x, y, train_size, seed)
    if "x_val" in arrays:
        x_fit, y_fit, x_val, y_val = x, y, arrays["x_val"], arrays["y_val"]
    else:
        x_fit, x_val, y_fit, y_val = split(x, y, validation_split, seed, "validation")
    source = source + (f" ({'; '.join(notes)})" if notes else "")
    return Dataset(name=name, x_train=_scale(x_fit), y_train=y_fit, x_val=_scale(x_val),
                   y_val=y_val, x_test=_scale(x_test), y_test=y_test, source=source, class_names=names)


__all__ = ["NPZ_PREFIX", "check_name", "is_file_dataset", "load_file_dataset", "locate", "normalize", "read_npz"]
