"""Users' own images: `--dataset images:DIR`, one subfolder per class.

    DIR/<class>/*.png|jpg|...                      the split into train / validation / test is hpsearch's
    DIR/train/<class>/..., DIR/val/<class>/...,    the user's own splits (val/ and test/ optional; "valid",
    DIR/test/<class>/...                           "validation" also name the validation split)

Class names are the folder names, sorted. Every image is resized to the study's image size (`--image-size`, default:
the images' own size when they all share one) in its colour mode (`--color-mode grayscale|rgb`, default: grayscale
when every image is grey, else rgb); both are kept in the dataset name the study stores, e.g.
`images:/data/signs?size=64x64&mode=rgb`. Files that are not images are skipped and counted (the dataset's
source line says how many); an empty class folder, or a folder whose files are all unreadable, is an error.
The images are held in memory as float32 up to `MAX_BYTES`; a larger folder (or `images:DIR?stream=1`) is
streamed instead: its splits are `ImageFiles`, lists of files decoded batch by batch as training reads them, so a
folder larger than memory trains with a few batches in memory at a time.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import numpy as np

from hpsearch.errors import CorruptDataError, DatasetNotFoundError, UsageError

IMAGES_PREFIX = "images:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MAX_BYTES = 8 * 2**30  # float32 images in memory
MAX_IMAGE_PIXELS = 40_000_000  # as predict: a larger file is refused from its header
COLOR_MODES = ("grayscale", "rgb")


def is_image_folder(name: str) -> bool:
    return isinstance(name, str) and name.startswith(IMAGES_PREFIX)


def parse(name: str) -> tuple[Path, tuple[int, int] | None, str | None]:
    """(folder, (height, width) or None, colour mode or None).

    Raises:
        UsageError: no folder, an unknown option, a bad size or colour mode.
    """
    body = name[len(IMAGES_PREFIX):]
    folder, _, query = body.partition("?")
    if not folder.strip():
        raise UsageError("--dataset images: needs a folder with one subfolder per class, e.g. images:data/signs")
    size, mode = None, None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "size":
            size = parse_size(value)
        elif key == "mode":
            mode = check_mode(value)
        elif key == "stream":
            if value not in ("0", "1"):
                raise UsageError(f"dataset {name!r}: stream must be 1 (read the images from disk batch by batch) "
                                 "or 0")
        else:
            raise UsageError(f"dataset {name!r}: unknown option {key!r} (options: size=HxW, mode=grayscale|rgb, "
                             "stream=1)")
    return Path(folder).expanduser(), size, mode


def streams(name: str) -> bool:
    """True when the dataset name asks for streaming (`?stream=1`)."""
    return ("stream", "1") in parse_qsl(name.partition("?")[2])


class ImageFiles:
    """Images on disk that behave like a float32 array of shape (n, height, width, channels) where it matters.

    Indexing with a slice, a list or an index array gives another `ImageFiles` (nothing is read), so splits and
    subsets cost nothing; `np.asarray(files)` (or `files.read()`) decodes them, resized to the study's size and
    colour mode and scaled to [0, 1]. An integer index reads one image.
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, paths: list[Path] | np.ndarray, size: tuple[int, int], channels: int) -> None:
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        self.size = size
        self.channels = channels

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.size[0], self.size[1], self.channels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):  # noqa: ANN001, ANN204 - an int gives an image, anything else ImageFiles
        if isinstance(key, (int, np.integer)):
            return self._read_one(self.paths[key])
        return ImageFiles(self.paths[key], self.size, self.channels)

    def __array__(self, dtype=None, copy=None):  # noqa: ANN001, ANN204 - NumPy's protocol
        out = self.read()
        return out if dtype is None else out.astype(dtype)

    def read(self) -> np.ndarray:
        """Every image of this list, decoded: (n, height, width, channels) float32 in [0, 1]."""
        return self.read_uint8().astype(np.float32) / 255.0

    def read_uint8(self) -> np.ndarray:
        """Every image of this list, decoded: (n, height, width, channels) uint8."""
        out = np.empty(self.shape, dtype=np.uint8)
        for i, path in enumerate(self.paths):
            out[i] = _decode(Path(path), self.size, self.channels).reshape(self.shape[1:])
        return out

    def _read_one(self, path: str) -> np.ndarray:
        return _decode(Path(path), self.size, self.channels).reshape(self.shape[1:]).astype(np.float32) / 255.0


def _decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 (height, width) or (height, width, 3), resized to `size` in the colour mode."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if (img.height, img.width) != size:
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def parse_size(value: str | int) -> tuple[int, int]:
    text = str(value).lower().strip()
    parts = text.split("x") if "x" in text else [text, text]
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"image size {value!r}: give N (square) or HxW, e.g. 64 or 64x48") from None
    if not (8 <= height <= 4096 and 8 <= width <= 4096):
        raise UsageError(f"image size {value!r}: each side must be between 8 and 4096 pixels")
    return height, width


def check_mode(value: str) -> str:
    mode = {"grey": "grayscale", "gray": "grayscale", "greyscale": "grayscale"}.get(value.lower(), value.lower())
    if mode not in COLOR_MODES:
        raise UsageError(f"colour mode {value!r}: choose grayscale or rgb")
    return mode


def build_name(folder: Path, size: tuple[int, int] | None, mode: str | None, stream: bool = False) -> str:
    query = urlencode([(k, v) for k, v in (("size", f"{size[0]}x{size[1]}" if size else None), ("mode", mode),
                                           ("stream", "1" if stream else None)) if v])
    return f"{IMAGES_PREFIX}{folder}" + (f"?{query}" if query else "")


def normalize(name: str, base: Path | None = None, image_size: str | int | None = None,
              color_mode: str | None = None) -> str:
    """The name a study stores: the folder absolute, the size and mode flags folded in."""
    folder, size, mode = parse(name)
    if not folder.is_absolute():
        folder = (base or Path.cwd()) / folder
    size = parse_size(image_size) if image_size is not None else size
    mode = check_mode(color_mode) if color_mode is not None else mode
    return build_name(folder.resolve(), size, mode, streams(name))


def _class_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def scan(folder: Path) -> tuple[dict[str, dict[str, list[Path]]], list[str]]:
    """{split: {class: [files]}} and the class names. Split "all" when the folder has no train/ subfolder.

    Raises:
        DatasetNotFoundError: no such folder, or no class subfolders.
        CorruptDataError: an empty class folder, or splits with different classes.
    """
    if not folder.is_dir():
        raise DatasetNotFoundError(f"image folder {folder} does not exist (or is not a folder); give a folder with "
                                   "one subfolder of images per class: --dataset images:DIR")
    subdirs = {d.name.lower(): d for d in _class_dirs(folder)}
    splits = {SPLIT_NAMES[n]: d for n, d in subdirs.items() if n in SPLIT_NAMES}
    roots = splits if "train" in splits else {"all": folder}
    found: dict[str, dict[str, list[Path]]] = {}
    for split, root in roots.items():
        classes = _class_dirs(root)
        if not classes:
            raise DatasetNotFoundError(f"{root} has no class subfolders; put the images of each class in a folder "
                                       f"named after it ({root}/cat/*.png, {root}/dog/*.png, ...)")
        found[split] = {}
        for d in classes:
            files = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not files:
                raise CorruptDataError(f"class folder {d} is empty; remove it or add its images")
            found[split][d.name] = files
    names = list(found["train" if "train" in found else "all"])
    for split, by_class in found.items():
        extra = sorted(set(by_class) - set(names))
        if extra:
            raise CorruptDataError(f"{roots[split]} has classes {', '.join(extra)} that train/ does not; every "
                                   "split must use the training classes")
    if len(names) < 2:
        raise CorruptDataError(f"{folder} holds one class ({names[0]}); a classifier needs at least two class "
                               "folders")
    return found, names


def _open(path: Path):  # noqa: ANN202 - a PIL image or None
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        if img.width * img.height > MAX_IMAGE_PIXELS:
            img.close()
            return None
        return img
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _survey(files: list[Path]) -> tuple[Counter, bool, list[Path]]:
    """Sizes (height, width) and whether every image is grey, from the headers; the unreadable files."""
    sizes: Counter = Counter()
    grey, bad = True, []
    for path in files:
        img = _open(path)
        if img is None:
            bad.append(path)
            continue
        with img:
            sizes[(img.height, img.width)] += 1
            grey = grey and img.mode in ("1", "L", "LA", "I", "I;16", "F")
    return sizes, grey, bad


def load_image_folder(name: str, train_size: int | None, validation_split: float, seed: int):  # noqa: ANN201
    """The folder as a `Dataset` (splits as the module's docstring says)."""
    from hpsearch.data_files import check_arrays, from_arrays

    folder, size, mode = parse(name)
    found, names = scan(folder)
    every = [p for by_class in found.values() for files in by_class.values() for p in files]
    sizes, grey, bad = _survey(every)
    if not sizes:
        raise CorruptDataError(f"none of the {len(every)} files under {folder} is an image PIL can read")
    if size is None:
        if len(sizes) > 1:
            common = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common(4))
            raise UsageError(f"the images under {folder} have different sizes ({common}, ...); choose one with "
                             "--image-size N or HxW")
        size = next(iter(sizes))
    mode = mode or ("grayscale" if grey else "rgb")
    channels = 1 if mode == "grayscale" else 3
    readable = len(every) - len(bad)
    need = readable * size[0] * size[1] * channels * 4
    stream = streams(name) or need > MAX_BYTES  # larger than memory: read from disk batch by batch
    bad_set = set(bad)
    index = {n: i for i, n in enumerate(names)}
    arrays: dict[str, np.ndarray] = {}
    for split, by_class in found.items():
        kept_paths, ys = [], []
        for cls, files in by_class.items():
            kept = [p for p in files if p not in bad_set]
            if not kept:
                raise CorruptDataError(f"class folder {folder / cls if split == 'all' else folder / split / cls} "
                                       f"holds no readable image ({len(files)} files); add images or remove it")
            kept_paths += kept
            ys += [index[cls]] * len(kept)
        key = {"all": "train", "train": "train", "val": "val", "test": "test"}[split]
        files = ImageFiles(kept_paths, size, channels)
        arrays[f"x_{key}"] = files if stream else files.read_uint8()
        arrays[f"y_{key}"] = np.asarray(ys, dtype=np.int64)
    arrays["class_names"] = np.asarray(names)
    checked = check_arrays(arrays, str(folder))
    source = f"{folder} ({readable} images, {size[0]}x{size[1]} {mode}"
    source += f"; {len(bad)} unreadable files skipped, e.g. {bad[0].name})" if bad else ")"
    if stream:
        source += f", streamed from disk ({need / 2**30:.1f} GiB as float32)"
    data = from_arrays(checked, build_name(folder, size, mode, streams(name)), source, train_size,
                       validation_split, seed)
    if bad:
        import logging

        logging.getLogger("hpsearch").warning("%s: skipped %d files that are not readable images (e.g. %s)",
                                              folder, len(bad), bad[0])
    return data
