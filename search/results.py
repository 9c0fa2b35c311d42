"""Using what a study found: load or rebuild a trial's model, export it, retrain it, classify images with it."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpsearch.errors import HpsearchError, UsageError

if TYPE_CHECKING:
    import keras
    import optuna

    from hpsearch.datasets import Dataset
    from hpsearch.search.spec import StudySpec
    from hpsearch.storage.artifacts import ArtifactLocation

# The largest image `predict` decodes. A digit needs a few hundred pixels a side; a small PNG can claim 20000x20000
# (400 megapixels, gigabytes once decoded), so the size in the header is checked before any pixel is read.
MAX_IMAGE_PIXELS = 40_000_000
# What `export` writes into its --out directory (curves.png only when the trial has curves).
EXPORT_FILES = ("model.keras", "params.json", "curves.png", "confusion_matrix.png", "classification_report.txt")


def recorded_fixed(user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The values a trial held fixed, as it recorded them (its `fixed:NAME` attributes); empty for a trial stored
    before they were recorded."""
    return {k.split(":", 1)[1]: v for k, v in user_attrs.items() if k.startswith("fixed:")}


@dataclass
class StoredTrial:
    study: optuna.Study
    spec: StudySpec
    trial: optuna.trial.FrozenTrial
    artifacts: ArtifactLocation

    def fixed_values(self) -> dict[str, Any]:
        """The values held fixed when the trial ran (recorded with it), else the spec's."""
        return recorded_fixed(self.trial.user_attrs) or self.spec.fixed_values()

    def values(self) -> dict[str, Any]:
        return {**self.fixed_values(), **self.trial.params}

    def artifact_path(self, kind: str) -> Path | None:
        """A local file with the trial's artifact `kind` (downloaded first from a bucket), None if it has none.

        Raises:
            HpsearchError: the recorded id is not an artifact id (a crafted attribute never names a path).
        """
        from hpsearch.storage.artifacts import artifact_file

        artifact_id = self.trial.user_attrs.get(f"artifact:{kind}")
        return artifact_file(self.artifacts, artifact_id) if artifact_id else None


def load_trial(study_name: str, storage_url: str | None = None, trial_number: int | None = None,
               artifacts: str | None = None) -> StoredTrial:
    """The study's best completed trial, or trial `trial_number`.

    Raises:
        UsageError: unknown study or trial number.
        HpsearchError: no completed trial yet.
    """
    from optuna.trial import TrialState

    from hpsearch.search.worker import load_spec
    from hpsearch.storage import load_study_read_only, resolve_url
    from hpsearch.storage.artifacts import artifact_location

    url = resolve_url(storage_url)
    study = load_study_read_only(study_name, url)  # using a result never writes to the study database
    spec = load_spec(study)
    if trial_number is None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise HpsearchError(f"study {study_name!r} has no completed trial yet")
        from hpsearch.search.ranking import best_trial

        trial = best_trial(study)
    else:
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        if trial_number not in trials:
            raise UsageError(f"study {study_name!r} has no trial {trial_number} (trials 0..{len(trials) - 1})")
        trial = trials[trial_number]
        if not trial.params:
            raise UsageError(f"trial {trial_number} of {study_name!r} has no params ({trial.state.name.lower()})")
    return StoredTrial(study, spec, trial, artifact_location(url, artifacts))


def load_model(path: str | Path) -> keras.Model:
    """Loads a `.keras` model with Keras's safe mode on (no arbitrary code from the file).

    The artifact store keeps files under their id, without extension; Keras wants `.keras`.
    """
    import tempfile

    import keras

    path = Path(path)
    if path.suffix == ".keras":
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as tmp:
        named = Path(tmp) / "model.keras"
        shutil.copyfile(path, named)
        return keras.saving.load_model(named, compile=False, safe_mode=True)


def stored_or_rebuilt(stored: StoredTrial, data: Dataset | None = None, verbose: int = 0, announce: bool = True
                      ) -> tuple[keras.Model, bool]:
    """The trial's saved model, or the same configuration rebuilt and trained again (same seed and epochs) on
    `data` (default: the study's data, loaded only then); `announce` says so on stderr before training.

    Returns:
        (model, whether it was retrained here).
    """
    model = load_trial_model(stored)
    if model is not None:
        return model, False
    if announce:
        print(f"trial {stored.trial.number} kept no model: training its configuration again", file=sys.stderr)
    model, _ = train_configuration(stored, data if data is not None else study_data(stored.spec), epochs=None,
                                   verbose=verbose)
    return model, True


def load_trial_model(stored: StoredTrial) -> keras.Model | None:
    """The model the trial saved in the artifact store, or None when it kept none.

    Raises:
        HpsearchError: the saved file exists but cannot be loaded (truncated, overwritten, not a Keras model).
    """
    path = stored.artifact_path("model")
    if path is None:
        return None
    try:
        return load_model(path)
    except Exception as exc:  # Keras raises ValueError, OSError, KeyError... depending on where the file is damaged
        reason = ("not a complete .keras archive: truncated or overwritten" if not zipfile.is_zipfile(path)
                  else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}")
        raise HpsearchError(
            f"the saved model of trial {stored.trial.number} of study {stored.study.study_name!r} cannot be loaded "
            f"({reason}); delete {path} and run the command again to train the trial's configuration anew "
            "(export and predict do that for a trial without a saved model)") from None


def train_configuration(stored: StoredTrial, data: Dataset, epochs: int | None, verbose: int = 0
                        ) -> tuple[keras.Model, Any]:
    """Builds the trial's configuration from its params (no live trial) and trains it on `data`."""
    import keras

    from hpsearch.models import get_builder, training_config
    from hpsearch.search.adapter import values_hyperparameters
    from hpsearch.search.training import fit_and_evaluate

    keras.backend.clear_session()
    keras.utils.set_random_seed(stored.spec.seed + stored.trial.number)
    values = stored.values()
    if epochs is not None:
        values["epochs"] = epochs
    hp = values_hyperparameters(values)
    model = get_builder(stored.spec.model, data.input_shape, data.num_classes, **stored.spec.model_options)(hp)
    result = fit_and_evaluate(model, data, training_config(hp), monitor=stored.spec.metric, verbose=verbose)
    return model, result


def study_data(spec: StudySpec, whole_training_set: bool = False) -> Dataset:
    """The study's data; `whole_training_set` keeps every training image (a 2% validation tail for monitoring)."""
    from hpsearch.datasets import load_dataset

    if whole_training_set:
        return load_dataset(spec.dataset, spec.data_dir, None, 0.02, spec.seed)
    return load_dataset(spec.dataset, spec.data_dir, spec.train_size, spec.validation_split, spec.seed)


def export(stored: StoredTrial, out: Path, verbose: int = 0) -> dict[str, Any]:
    """Writes model.keras, params.json, curves.png, confusion_matrix.png and the classification report."""
    from hpsearch.search.reports import classification_report, plot_confusion, plot_curves

    out.mkdir(parents=True, exist_ok=True)
    data = study_data(stored.spec)
    model, retrained = stored_or_rebuilt(stored, data, verbose, announce=verbose > 0)
    model.save(out / "model.keras")
    from hpsearch.search.training import predict

    probs = predict(model, data.x_test)
    y_pred = probs.argmax(axis=1)
    title = f"{stored.study.study_name} trial {stored.trial.number}"
    curves = stored.artifact_path("curves")
    if curves is not None:
        shutil.copy(curves, out / "curves.png")
    elif stored.trial.intermediate_values:
        steps = sorted(stored.trial.intermediate_values)
        plot_curves({f"val_{'accuracy' if 'acc' in stored.spec.metric else 'loss'}":
                     [stored.trial.intermediate_values[s] for s in steps]}, out / "curves.png", title)
    plot_confusion(data.y_test, y_pred, data.class_names, out / "confusion_matrix.png", title)
    (out / "classification_report.txt").write_text(classification_report(data.y_test, y_pred, data.class_names))
    values = stored.trial.values or [None]  # several in a study of several objectives: the metric's first
    info = {"study": stored.study.study_name, "trial": stored.trial.number, "value": values[0],
            **({"values": values} if len(values) > 1 else {}), "params": stored.trial.params,
            "fixed": stored.fixed_values(), "model": stored.spec.model,
            "dataset": stored.spec.dataset, "test_accuracy": float((y_pred == data.y_test).mean()),
            "retrained": retrained}
    (out / "params.json").write_text(json.dumps(info, indent=2, default=str))
    return {**info, "out": str(out), "files": sorted(p.name for p in out.iterdir())}


# ----------------------------------------------------------------------------------------------- images
DIGIT_DATASETS = ("mnist", "mnist-sample", "digits")


def class_names(stored: StoredTrial, model: keras.Model) -> list[str]:
    """The names of the study's classes: stored with the study, else the built-in dataset's, else 0..K-1."""
    from hpsearch.datasets import DATASETS
    from hpsearch.search.spec import CLASSES_ATTR

    names = stored.study.user_attrs.get(CLASSES_ATTR)
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if stored.spec.dataset in DATASETS:
        return list(DATASETS[stored.spec.dataset].class_names)
    return [str(i) for i in range(int(model.output_shape[-1]))]


def _open_image(path: Path) -> Any:
    """The decoded image, its size checked from the header before any pixel is decoded.

    Raises:
        UsageError: the file is missing, is not an image, or has more than `MAX_IMAGE_PIXELS` pixels.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only: the pixels are decoded by load()
            if img.width * img.height > MAX_IMAGE_PIXELS:
                img.close()
                raise UsageError(_too_big(path, f"{img.width}x{img.height} pixels"))
            img.load()
            return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL's own guard, at open
        raise UsageError(_too_big(path, "too large to decode safely")) from None
    except FileNotFoundError:
        raise UsageError(f"image {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not an image; give PNG or JPG files") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UsageError(f"{path} is not an image PIL can read ({exc}); give a PNG or JPG file") from None


def read_image(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Any photo as the model's input: its size and colour mode (grey or RGB), values in [0, 1]."""
    from PIL import Image

    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise UsageError(f"the model takes inputs of shape {input_shape}, not images (H x W x 1 or 3); predict "
                         "reads image files only")
    with _open_image(Path(path)) as img:
        converted = img.convert("L" if input_shape[-1] == 1 else "RGB")
        resized = converted.resize((int(input_shape[1]), int(input_shape[0])), Image.BILINEAR)
        array = np.asarray(resized, dtype=np.float32) / 255.0
    return array[..., np.newaxis] if array.ndim == 2 else array


def read_digit(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """A photo or scan of a digit as the model's input: grey, white digit on black, MNIST-style centred.

    Raises:
        UsageError: the file is missing, is not an image, or has more than `MAX_IMAGE_PIXELS` pixels (checked
            from its header, before decoding).
    """
    with _open_image(Path(path)) as img:
        grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    # Digits are white on black in MNIST: a light background means a dark digit, so invert.
    if np.median(_border(grey)) > 0.5:
        grey = 1.0 - grey
    background = float(np.median(_border(grey)))  # stretch paper grey to black and the ink to white
    grey = np.clip((grey - background) / max(1e-6, float(grey.max()) - background), 0.0, 1.0)
    return _center_like_mnist(grey, input_shape)


def _too_big(path: Path, size: str) -> str:
    return (f"{path} is {size}, over predict's limit of {MAX_IMAGE_PIXELS / 1e6:g} megapixels; downscale it (a "
            "digit needs a few hundred pixels a side) and run again")


def _border(grey: np.ndarray) -> np.ndarray:
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def _center_like_mnist(grey: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Crops to the ink, fits it in 20/28 of the frame keeping its aspect, centres it by mass (MNIST's recipe)."""
    from PIL import Image

    height, width = int(input_shape[0]), int(input_shape[1])
    ink = grey > 0.1
    if ink.any():
        rows, cols = np.where(ink)
        grey = grey[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    box = max(1, round(min(height, width) * 20 / 28))
    scale = box / max(grey.shape)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    small = np.asarray(Image.fromarray((grey * 255).astype(np.uint8)).resize(size, Image.LANCZOS),
                       dtype=np.float32) / 255.0
    canvas = np.zeros((height, width), dtype=np.float32)
    top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    canvas[top:top + small.shape[0], left:left + small.shape[1]] = small
    if canvas.sum() > 0:  # shift the centre of mass to the centre
        ys, xs = np.indices(canvas.shape)
        dy = int(round(height / 2 - 0.5 - (ys * canvas).sum() / canvas.sum()))
        dx = int(round(width / 2 - 0.5 - (xs * canvas).sum() / canvas.sum()))
        canvas = np.roll(np.roll(canvas, dy, axis=0), dx, axis=1)
    return canvas[..., np.newaxis]


def predict_images(model: keras.Model, paths: list[str], class_names: list[str], top: int = 1,
                   digits: bool = True) -> list[dict[str, Any]]:
    """Class and probability per image. `digits`: read them as handwritten digits (MNIST's centring and
    inversion); otherwise as photos, resized to the model's input in its colour mode."""
    shape = tuple(model.input_shape[1:])
    read = read_digit if digits else read_image
    batch = np.stack([read(p, shape) for p in paths])
    probs = model.predict(batch, verbose=0)
    if len(class_names) != probs.shape[-1]:
        class_names = [str(i) for i in range(probs.shape[-1])]
    out = []
    for path, p in zip(paths, probs, strict=True):
        order = np.argsort(p)[::-1][:max(1, top)]
        out.append({"image": str(path), "class": class_names[order[0]], "digit": class_names[order[0]],
                    "probability": float(p[order[0]]),
                    "top": [{"class": class_names[i], "digit": class_names[i], "probability": float(p[i])}
                            for i in order]})
    return out
