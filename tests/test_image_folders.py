"""Users' own image folders: `--dataset images:DIR`, PNGs written from real digits, read back as users' would be."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpsearch.datasets import load_dataset
from hpsearch.errors import CorruptDataError, DatasetNotFoundError, UsageError
from tests.conftest import run_cli
from tests.models.test_references import BUILDER_FILE

NAMES = {0: "zero", 1: "one", 2: "two"}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = bunch.target < 3
    return np.rint(bunch.images[keep] * (255 / 16)).astype(np.uint8), bunch.target[keep]


def write_folder(root: Path, x: np.ndarray, y: np.ndarray, size: int = 16, rgb: bool = False) -> Path:
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / NAMES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(img).resize((size, size), Image.BILINEAR)
        (picture.convert("RGB") if rgb else picture).save(folder / f"{i}.png")
    return root


def test_a_flat_folder_becomes_classes_and_splits(tmp_path: Path, digits) -> None:
    x, y = digits
    root = write_folder(tmp_path / "digits", x, y)
    data = load_dataset(f"images:{root}", validation_split=0.2)
    assert data.class_names == ["one", "two", "zero"]  # folder names, sorted
    assert data.input_shape == (16, 16, 1) and data.num_classes == 3
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == len(x)
    assert "16x16 grayscale" in data.source and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    # Labels follow the folders: "zero" is class 2 and holds every 0 digit.
    labels = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert np.bincount(labels).tolist() == [int((y == 1).sum()), int((y == 2).sum()), int((y == 0).sum())]


def test_size_and_colour_mode_and_the_users_own_splits(tmp_path: Path, digits) -> None:
    x, y = digits
    root = tmp_path / "split"
    write_folder(root / "train", x[:300], y[:300], size=20, rgb=True)
    write_folder(root / "val", x[300:400], y[300:400], size=20, rgb=True)
    write_folder(root / "test", x[400:], y[400:], size=20, rgb=True)
    data = load_dataset(f"images:{root}?size=12x16")
    assert data.input_shape == (12, 16, 3)  # rgb: the files are RGB
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (300, 100, len(x) - 400)
    grey = load_dataset(f"images:{root}?mode=grayscale")
    assert grey.input_shape == (20, 20, 1)


def test_unreadable_files_are_skipped_and_counted_bad_folders_refused(tmp_path: Path, digits) -> None:
    x, y = digits
    root = write_folder(tmp_path / "d", x, y)
    (root / "one" / "notes.txt").write_text("not an image")
    (root / "two" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    data = load_dataset(f"images:{root}")
    assert "2 unreadable files skipped" in data.source
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == len(x)
    (root / "three").mkdir()
    with pytest.raises(CorruptDataError, match="three is empty"):
        load_dataset(f"images:{root}")
    (root / "three" / "x.png").write_bytes(b"nope")
    with pytest.raises(CorruptDataError, match="holds no readable image"):
        load_dataset(f"images:{root}")


def test_mixed_sizes_need_a_size_and_other_mistakes(tmp_path: Path, digits) -> None:
    x, y = digits
    root = write_folder(tmp_path / "mixed", x[:60], y[:60], size=16)
    Image.fromarray(x[0]).resize((24, 24)).save(root / "one" / "big.png")
    with pytest.raises(UsageError, match="different sizes .*--image-size"):
        load_dataset(f"images:{root}")
    assert load_dataset(f"images:{root}?size=16").input_shape == (16, 16, 1)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(f"images:{tmp_path / 'nowhere'}")
    lonely = tmp_path / "lonely" / "cat"
    lonely.mkdir(parents=True)
    Image.fromarray(x[0]).save(lonely / "a.png")
    with pytest.raises(CorruptDataError, match="at least two class"):
        load_dataset(f"images:{lonely.parent}")
    with pytest.raises(UsageError, match="size=HxW"):
        load_dataset(f"images:{root}?colour=red")
    with pytest.raises(UsageError, match="grayscale or rgb"):
        load_dataset(f"images:{root}?mode=cmyk")


@pytest.mark.integration
def test_search_then_predict_on_an_image_folder_from_the_cli(tmp_path: Path, digits) -> None:
    x, y = digits
    write_folder(tmp_path / "photos", x[:-20], y[:-20], size=20, rgb=True)
    (tmp_path / "net.py").write_text(BUILDER_FILE)
    url = f"sqlite:///{tmp_path / 'img.db'}"
    run = run_cli("run", "--storage", url, "--study", "img", "--model", "net.py:build", "--dataset", "images:photos",
                  "--image-size", "16", "--trials", "2", "--workers", "1", "--epochs", "4", "--batch-size", "32",
                  "--pruner", "none", "--format", "json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    new = []
    for i in range(len(x) - 20, len(x)):  # photos the search never saw, at another size than the study's
        path = tmp_path / f"new-{i}.png"
        Image.fromarray(x[i]).resize((40, 40)).convert("RGB").save(path)
        new.append(str(path))
    result = run_cli("predict", "--storage", url, "--study", "img", *new, "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout)
    assert {a["class"] for a in answers} <= {"zero", "one", "two"}
    correct = sum(a["class"] == NAMES[int(y[len(x) - 20 + i])] for i, a in enumerate(answers))
    assert correct >= 14, answers[:3]


def test_a_folder_larger_than_memory_is_streamed_and_reads_the_same_images(tmp_path: Path, digits,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from hpsearch import image_folders
    from hpsearch.image_folders import ImageFiles
    from hpsearch.search.training import Batches

    x, y = digits
    root = write_folder(tmp_path / "digits", x, y)
    in_memory = load_dataset(f"images:{root}", validation_split=0.2)
    decoded = []
    real_decode = image_folders._decode
    monkeypatch.setattr(image_folders, "_decode", lambda *a: decoded.append(a[0]) or real_decode(*a))
    monkeypatch.setattr(image_folders, "MAX_BYTES", 1000)  # this folder is now "larger than memory"
    streamed = load_dataset(f"images:{root}", validation_split=0.2)
    assert all(isinstance(getattr(streamed, k), ImageFiles) for k in ("x_train", "x_val", "x_test"))
    assert decoded == []  # loading read headers only, no image
    assert "streamed from disk" in streamed.source and streamed.input_shape == (16, 16, 1)
    for split in ("train", "val", "test"):  # the same files in the same splits, decoded to the same values
        np.testing.assert_array_equal(np.asarray(getattr(streamed, f"x_{split}")), getattr(in_memory, f"x_{split}"))
        np.testing.assert_array_equal(getattr(streamed, f"y_{split}"), getattr(in_memory, f"y_{split}"))
    decoded.clear()
    batches = Batches(streamed.x_train, streamed.y_train, 32, shuffle=True)
    first_x, first_y = batches[0]
    assert first_x.shape == (32, 16, 16, 1) and first_y.shape == (32,) and len(decoded) == 32  # one batch read
    assert len(batches) == -(-len(streamed.x_train) // 32)
    # Precise BatchNorm's sample stays on disk too: each recompute reads its images batch by batch.
    import keras

    from hpsearch.search.precise_bn import recompute_batch_norm_statistics, sample_inputs

    assert isinstance(sample_inputs(streamed.x_train, 64), ImageFiles)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    decoded.clear()
    assert recompute_batch_norm_statistics(model, streamed.x_train, samples=64, batch_size=32) == 1
    assert len(decoded) == 64
    # Asked for by name, whatever the size (what workers read from the study's dataset name).
    monkeypatch.setattr(image_folders, "MAX_BYTES", 8 * 2**30)
    assert isinstance(load_dataset(f"images:{root}?stream=1").x_train, ImageFiles)
    with pytest.raises(UsageError, match="stream must be 1"):
        load_dataset(f"images:{root}?stream=yes")


@pytest.mark.integration
def test_search_export_and_retrain_on_a_streamed_folder(tmp_path: Path, digits) -> None:
    x, y = digits
    write_folder(tmp_path / "photos", x, y, size=20, rgb=True)
    (tmp_path / "net.py").write_text(BUILDER_FILE)
    url = f"sqlite:///{tmp_path / 'img.db'}"
    run = run_cli("run", "--storage", url, "--study", "stream", "--model", "net.py:build", "--dataset",
                  "images:photos?stream=1", "--image-size", "16", "--trials", "2", "--workers", "2", "--epochs", "4",
                  "--batch-size", "32", "--pruner", "none", "--enqueue-defaults", "--format", "json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout[run.stdout.index("{"):])
    assert summary["trials"]["complete"] == 2 and summary["test_accuracy"] > 0.6
    export = run_cli("export", "--storage", url, "--study", "stream", "--out", "best", "--format", "json",
                     cwd=tmp_path)
    assert export.returncode == 0, export.stderr[-3000:]
    assert (tmp_path / "best" / "model.keras").stat().st_size > 0
    assert json.loads((tmp_path / "best" / "params.json").read_text())
    retrain = run_cli("retrain", "--storage", url, "--study", "stream", "--epochs", "2", "--out", "final",
                      "--format", "json", cwd=tmp_path)
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    out = json.loads(retrain.stdout[retrain.stdout.index("{"):])
    assert out["test_accuracy"] > 0.6 and (tmp_path / "final" / "model.keras").is_file()
