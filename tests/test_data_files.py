"""Users' own arrays: `--dataset npz:FILE`, read from real digits saved the way users save theirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest

from hpsearch.datasets import load_dataset
from hpsearch.errors import CorruptDataError, DatasetNotFoundError, UsageError
from tests.conftest import run_cli
from tests.models.test_references import BUILDER_FILE


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.rint(bunch.images * (255 / 16)).astype(np.uint8), bunch.target.astype(np.int64)


def test_train_arrays_alone_get_validation_and_test_splits(tmp_path: Path, digits) -> None:
    x, y = digits
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}", validation_split=0.2, seed=1)
    assert data.input_shape == (8, 8, 1) and data.num_classes == 10 and data.class_names[3] == "3"
    assert len(data.x_test) == round(0.1 * len(x))  # fixed 10% test split
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == len(x)
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert "test: 10% of x_train" in data.source
    again = load_dataset(f"npz:{tmp_path / 'd.npz'}", validation_split=0.2, seed=2)
    assert np.array_equal(again.x_test, data.x_test)  # the test split does not move with the seed


def test_given_splits_class_names_and_feature_arrays_are_used_as_given(tmp_path: Path, digits) -> None:
    x, y = digits
    features = x.reshape(len(x), -1).astype(np.float32) / 255.0  # N x 64 features, not images
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    np.savez(tmp_path / "f.npz", x_train=features[:1200], y_train=y[:1200], x_val=features[1200:1500],
             y_val=y[1200:1500], x_test=features[1500:], y_test=y[1500:], class_names=names)
    data = load_dataset(f"npz:{tmp_path / 'f.npz'}", train_size=600)
    assert data.input_shape == (64,) and len(data.x_train) == 600 and len(data.x_val) == 300
    assert len(data.x_test) == len(x) - 1500 and data.class_names[9] == "nine"
    assert np.array_equal(data.x_val, features[1200:1500])


@pytest.mark.parametrize(("arrays", "error", "message"), [
    ({"x_train": "x"}, CorruptDataError, "but not y_train"),
    ({"x_train": "x", "y_train": "y_short"}, CorruptDataError, "one integer label per example"),
    ({"x_train": "x", "y_train": "y_half"}, CorruptDataError, "integer class labels"),
    ({"x_train": "x", "y_train": "y", "x_val": "x"}, CorruptDataError, "x_val without y_val"),
    ({"x_train": "x", "y_train": "y_neg"}, CorruptDataError, "labels must be 0..K-1"),
    ({"x_train": "x", "y_train": "y", "class_names": "three_names"}, CorruptDataError, "out of range"),
    ({"x_train": "x", "y_train": "y", "x_test": "x_other_shape", "y_test": "y"}, CorruptDataError, "x_train's are"),
])
def test_bad_arrays_are_refused_with_what_to_fix(tmp_path: Path, digits, arrays, error, message) -> None:
    x, y = digits
    pool = {"x": x, "y": y, "y_short": y[:-1], "y_half": y + 0.5, "y_neg": y - 1,
            "three_names": np.array(["a", "b", "c"]), "x_other_shape": x[:, :4, :4]}
    np.savez(tmp_path / "bad.npz", **{k: pool[v] for k, v in arrays.items()})
    with pytest.raises(error, match=message):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(CorruptDataError, match="cannot be read as a NumPy .npz"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(UsageError, match="npz: needs a file"):
        load_dataset("npz:")
    with pytest.raises(UsageError, match="npz:FILE"):
        load_dataset("my-images")


@pytest.mark.integration
def test_own_builder_on_own_arrays_from_the_cli_with_real_workers(tmp_path: Path, digits) -> None:
    x, y = digits
    np.savez(tmp_path / "digits.npz", x_train=x, y_train=y)
    (tmp_path / "net.py").write_text(BUILDER_FILE)
    url = f"sqlite:///{tmp_path / 'own.db'}"
    result = run_cli("run", "--storage", url, "--study", "own", "--model", "net.py:build", "--dataset",
                     "npz:digits.npz", "--trials", "4", "--workers", "2", "--epochs", "3", "--enqueue-defaults",
                     "--format", "json",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 4
    study = optuna.load_study(study_name="own", storage=url)
    best = study.best_trial
    # Well above chance (0.1 for ten digits): 3 short epochs of this small dense net validated at 0.48 in one run.
    assert best.value > 0.3 and 0.3 < best.user_attrs["test_accuracy"] <= 1.0
    assert study.user_attrs["hpsearch_spec"]["dataset"] == f"npz:{(tmp_path / 'digits.npz').resolve()}"


@pytest.mark.integration
def test_predict_names_classes_from_the_data_and_reads_colour_photos_at_the_models_size(tmp_path: Path,
                                                                                       digits) -> None:
    from PIL import Image

    x, y = digits
    rgb = np.stack([np.asarray(Image.fromarray(img).resize((16, 16), Image.BILINEAR).convert("RGB")) for img in x])
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    np.savez(tmp_path / "rgb.npz", x_train=rgb[:1500], y_train=y[:1500], class_names=names)
    (tmp_path / "net.py").write_text(BUILDER_FILE)
    url = f"sqlite:///{tmp_path / 'rgb.db'}"
    run = run_cli("run", "--storage", url, "--study", "rgb", "--model", "net.py:build", "--dataset", "npz:rgb.npz",
                  "--trials", "2", "--workers", "1", "--epochs", "4", "--batch-size", "32", "--pruner", "none",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    paths = []
    for i in range(1500, 1540):
        Image.fromarray(rgb[i]).save(tmp_path / f"photo-{i}.png")
        paths.append(str(tmp_path / f"photo-{i}.png"))
    result = run_cli("predict", "--storage", url, "--study", "rgb", *paths, "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout)
    assert {a["class"] for a in answers} <= set(names)
    correct = sum(a["class"] == names[y[1500 + i]] for i, a in enumerate(answers))
    assert correct >= 0.7 * len(answers), answers[:3]


LOADERS = '''
from sklearn.datasets import load_digits


def keras_style():
    bunch = load_digits()
    x, y = bunch.images.astype("float32") / 16.0, bunch.target
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def broken():
    raise RuntimeError("the share is not mounted")


def wrong():
    return "x"
'''


def test_a_loader_function_returns_the_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_data.py").write_text(LOADERS)
    monkeypatch.chdir(tmp_path)
    data = load_dataset("my_data.py:keras_style", validation_split=0.2)
    assert data.input_shape == (8, 8, 1) and len(data.x_test) == 297 and data.num_classes == 10
    assert data.x_train.max() <= 1.0  # floats are taken as given
    with pytest.raises(UsageError, match="the share is not mounted"):
        load_dataset("my_data.py:broken")
    with pytest.raises(UsageError, match="returned str"):
        load_dataset("my_data.py:wrong")
    with pytest.raises(UsageError, match="no attribute 'nothing'"):
        load_dataset("my_data.py:nothing")


TF_LOADERS = '''
import keras
import tensorflow as tf
from sklearn.datasets import load_digits


def from_directory():  # resized from 16x16: bilinear, fractional 0..255 pixels
    common = dict(image_size=(12, 12), color_mode="grayscale", batch_size=32, seed=0, validation_split=0.2)
    return (keras.utils.image_dataset_from_directory("photos", subset="training", **common),
            keras.utils.image_dataset_from_directory("photos", subset="validation", **common))


def slices():
    bunch = load_digits()
    x = (bunch.images * 255 / 16).round().astype("uint8")[..., None]
    return {"train": tf.data.Dataset.from_tensor_slices((x[:1500], bunch.target[:1500])),
            "test": tf.data.Dataset.from_tensor_slices((x[1500:], bunch.target[1500:]))}


def dropped_remainder_one_hot():
    bunch = load_digits()
    x = (bunch.images * 255 / 16).round().astype("uint8")[..., None]
    y = tf.one_hot(bunch.target, 10)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(100, drop_remainder=True)


def unbatched_one_hot():
    bunch = load_digits()
    return tf.data.Dataset.from_tensor_slices((bunch.images[..., None] / 16.0, tf.one_hot(bunch.target, 10)))


def dictionaries():
    return tf.data.Dataset.from_tensor_slices({"image": [[1.0]], "label": [0]})


def wrong_keys():
    return {"training": tf.data.Dataset.from_tensor_slices(([1.0], [0]))}
'''


def test_a_loader_may_return_tf_data_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_digits

    from tests.test_image_folders import write_folder

    bunch = load_digits()
    keep = bunch.target < 3
    x = np.rint(bunch.images[keep] * (255 / 16)).astype(np.uint8)
    write_folder(tmp_path / "photos", x, bunch.target[keep])
    (tmp_path / "tf_data.py").write_text(TF_LOADERS)
    monkeypatch.chdir(tmp_path)
    folder = load_dataset("tf_data.py:from_directory")
    assert folder.class_names == ["one", "two", "zero"]  # image_dataset_from_directory's, kept
    assert folder.input_shape == (12, 12, 1)
    assert len(folder.x_train) + len(folder.x_val) + len(folder.x_test) == int(keep.sum())
    assert 0.0 <= folder.x_train.min() and folder.x_train.max() <= 1.0 and folder.x_train.max() > 0.5  # scaled
    sliced = load_dataset("tf_data.py:slices", validation_split=0.2)
    assert sliced.input_shape == (8, 8, 1) and len(sliced.x_test) == 297 and sliced.num_classes == 10
    np.testing.assert_array_equal(sliced.y_test, bunch.target[1500:])
    with pytest.raises(UsageError, match="use the keys train"):
        load_dataset("tf_data.py:wrong_keys")
    dropped = load_dataset("tf_data.py:dropped_remainder_one_hot")  # batches of a known size, one-hot labels
    assert len(dropped.x_train) + len(dropped.x_val) + len(dropped.x_test) == 1700 and dropped.num_classes == 10
    single = load_dataset("tf_data.py:unbatched_one_hot")
    assert single.input_shape == (8, 8, 1) and len(single.x_train) + len(single.x_val) + len(single.x_test) == 1797
    with pytest.raises(UsageError, match="yield \\(image, label\\) pairs"):
        load_dataset("tf_data.py:dictionaries")
