"""Using what a study found: load or rebuild a trial's model, export it, retrain it, classify images with it."""

from __future__ import annotations

import json
import shutil
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


@dataclass
class StoredTrial:
    study: optuna.Study
    spec: StudySpec
    trial: optuna.trial.FrozenTrial
    artifact_dir: Path

    def fixed_values(self) -> dict[str, Any]:
        """The values held fixed when the trial ran (recorded with it), else the spec's."""
        recorded = {k.split(":", 1)[1]: v for k, v in self.trial.user_attrs.items() if k.startswith("fixed:")}
        return recorded or self.spec.fixed_values()

    def values(self) -> dict[str, Any]:
        return {**self.fixed_values(), **self.trial.params}

    def artifact_path(self, kind: str) -> Path | None:
        artifact_id = self.trial.user_attrs.get(f"artifact:{kind}")
        if not artifact_id:
            return None
        path = (self.artifact_dir / str(artifact_id)).resolve()
        if not path.is_relative_to(self.artifact_dir.resolve()):  # a crafted attribute must not escape the store
            raise HpsearchError(f"artifact {artifact_id!r} points outside the artifact directory; refusing it")
        return path if path.is_file() else None


def load_trial(study_name: str, storage_url: str | None = None, trial_number: int | None = None,
               artifacts: str | None = None) -> StoredTrial:
    """The study's best completed trial, or trial `trial_number`.

    Raises:
        UsageError: unknown study or trial number.
        HpsearchError: no completed trial yet.
    """
    from optuna.trial import TrialState

    from hpsearch.search.worker import open_study
    from hpsearch.storage import artifact_dir, open_storage, resolve_url

    url = resolve_url(storage_url)
    study, spec = open_study(study_name, open_storage(url, None, None, retry=False))
    if trial_number is None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise HpsearchError(f"study {study_name!r} has no completed trial yet")
        trial = study.best_trial
    else:
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        if trial_number not in trials:
            raise UsageError(f"study {study_name!r} has no trial {trial_number} (trials 0..{len(trials) - 1})")
        trial = trials[trial_number]
        if not trial.params:
            raise UsageError(f"trial {trial_number} of {study_name!r} has no params ({trial.state.name.lower()})")
    return StoredTrial(study, spec, trial, artifact_dir(url, artifacts))


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


def stored_or_rebuilt(stored: StoredTrial, data: Dataset, verbose: int = 0) -> tuple[keras.Model, bool]:
    """The trial's saved model, or the same configuration rebuilt and trained again (same seed and epochs).

    Returns:
        (model, whether it was retrained here).
    """
    path = stored.artifact_path("model")
    if path is not None:
        return load_model(path), False
    model, _ = train_configuration(stored, data, epochs=None, verbose=verbose)
    return model, True


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
    model, retrained = stored_or_rebuilt(stored, data, verbose)
    model.save(out / "model.keras")
    probs = model.predict(data.x_test, batch_size=512, verbose=0)
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
    info = {"study": stored.study.study_name, "trial": stored.trial.number, "value": stored.trial.value,
            "params": stored.trial.params, "fixed": stored.fixed_values(), "model": stored.spec.model,
            "dataset": stored.spec.dataset, "test_accuracy": float((y_pred == data.y_test).mean()),
            "retrained": retrained}
    (out / "params.json").write_text(json.dumps(info, indent=2, default=str))
    return {**info, "out": str(out), "files": sorted(p.name for p in out.iterdir())}


# ----------------------------------------------------------------------------------------------- images
def read_digit(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """A photo or scan of a digit as the model's input: grey, white digit on black, MNIST-style centred.

    Raises:
        UsageError: the file is missing or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise UsageError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UsageError(f"{path} is not an image PIL can read ({exc}); give a PNG or JPG of a digit") from None
    # Digits are white on black in MNIST: a light background means a dark digit, so invert.
    if np.median(_border(grey)) > 0.5:
        grey = 1.0 - grey
    background = float(np.median(_border(grey)))  # stretch paper grey to black and the ink to white
    grey = np.clip((grey - background) / max(1e-6, float(grey.max()) - background), 0.0, 1.0)
    return _center_like_mnist(grey, input_shape)


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


def predict_images(model: keras.Model, paths: list[str], class_names: list[str], top: int = 1
                   ) -> list[dict[str, Any]]:
    shape = tuple(model.input_shape[1:])
    batch = np.stack([read_digit(p, shape) for p in paths])
    probs = model.predict(batch, verbose=0)
    out = []
    for path, p in zip(paths, probs, strict=True):
        order = np.argsort(p)[::-1][:max(1, top)]
        out.append({"image": str(path), "digit": class_names[order[0]], "probability": float(p[order[0]]),
                    "top": [{"digit": class_names[i], "probability": float(p[i])} for i in order]})
    return out
