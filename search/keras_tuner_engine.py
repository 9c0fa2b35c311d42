"""`hpsearch tune --engine keras-tuner`: the same builder, space and data, searched by KerasTuner itself.

Validation recomputes BatchNorm statistics from the current weights first (precise BN), as hpsearch's own
trials do: KerasTuner then ranks, prunes (Hyperband) and checkpoints on what the weights are worth.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import keras_tuner

from hpsearch.errors import UnknownNameError, UsageError
from hpsearch.models import TRAINING_PARAMS, get_builder, training_config
from hpsearch.search.precise_bn import DEFAULT_SAMPLES, PreciseBatchNorm
from hpsearch.search.preflight import check_training_names
from hpsearch.search.training import metric_mode, standard_callbacks, training_batches

if TYPE_CHECKING:
    from hpsearch.datasets import Dataset
    from hpsearch.search.spec import StudySpec

TUNERS = ("random", "hyperband", "bayesian")


class BuilderHyperModel(keras_tuner.HyperModel):
    """Wraps a `build(hp)` builder; `fit` reads batch size and epochs from the same hyperparameters."""

    def __init__(self, builder: Any, monitor: str, precise_bn_samples: int = DEFAULT_SAMPLES, model: str = "the model",
                 searched: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.builder = builder
        self.monitor = monitor
        self.precise_bn_samples = precise_bn_samples
        self.model, self.searched = model, searched
        self.refused: str | None = None  # why the last build was refused for a training name

    def build(self, hp: keras_tuner.HyperParameters) -> Any:
        # The training names are already in `hp` (fixed by `make_tuner`), so KerasTuner hands a builder that declares
        # one of them in its own way the training value, silently, on a branch the door's dry run did not take too.
        # Every declaration of such a name is checked on its way in, as the door checks the defaults', before the
        # builder can use the value.
        outer = vars(hp).get("_retrieve")  # a build within a build keeps the outer one's check
        if outer is None:
            self.refused = None
        retrieve = hp._retrieve

        def checked(p: Any) -> Any:
            if p.name in TRAINING_PARAMS:
                try:
                    check_training_names({p.name: p}, self.model, self.searched)
                except UsageError as exc:
                    self.refused = str(exc)
                    raise
            return retrieve(p)

        hp._retrieve = checked
        try:
            return self.builder(hp)
        finally:
            if outer is None:
                del hp._retrieve
            else:
                hp._retrieve = outer

    def fit(self, hp: keras_tuner.HyperParameters, model: Any, *args: Any, **kwargs: Any) -> Any:
        config = training_config(hp)
        kwargs["batch_size"] = config.batch_size
        # Hyperband sets its own epochs per bracket; the others train for the configured maximum.
        kwargs.setdefault("epochs", config.epochs)
        # First, so KerasTuner's checkpoint and every other epoch-end callback see statistics of these weights.
        x = args[0] if args else kwargs["x"]
        first = [PreciseBatchNorm(x, samples=self.precise_bn_samples)] if self.precise_bn_samples else []
        kwargs["callbacks"] = first + list(kwargs.get("callbacks", [])) + standard_callbacks(config, self.monitor)
        if config.shift > 0:  # shifted batch by batch, as a trial of the optuna engine trains (search/training.py)
            y = args[1] if len(args) > 1 else kwargs.pop("y", None)
            if y is None:
                raise UsageError("shift needs the training images and labels as arrays (x and y)")
            kwargs.pop("x", None)
            kwargs.setdefault("validation_batch_size", kwargs.pop("batch_size"))  # Keras would validate by 32s
            args = (training_batches(x, y, config), None, *args[2:])
        return model.fit(*args, **kwargs)


def make_tuner(kind: str, spec: StudySpec, data: Dataset, directory: str | Path, overwrite: bool = False,
               precise_bn_samples: int = DEFAULT_SAMPLES) -> keras_tuner.Tuner:
    """A KerasTuner tuner over `spec`'s builder and space; `precise_bn_samples=0` validates as KerasTuner alone
    does (moving BatchNorm statistics), e.g. to compare with KerasTuner as users run it."""
    if kind not in TUNERS:
        raise UnknownNameError("tuner", kind, TUNERS)
    builder = get_builder(spec.model, data.input_shape, data.num_classes, **spec.model_options)
    # Hyperband owns the epoch budget
    fixed = {k: v for k, v in spec.fixed_values().items() if not (kind == "hyperband" and k == "epochs")}
    hp = keras_tuner.HyperParameters()
    for name, value in fixed.items():
        hp.Fixed(name, value)
    objective = keras_tuner.Objective(spec.metric, direction="max" if metric_mode(spec.metric) == "max" else "min")
    hypermodel = BuilderHyperModel(builder, spec.metric, precise_bn_samples, spec.model, tuple(spec.search_training))
    common: dict[str, Any] = dict(hypermodel=hypermodel, objective=objective, hyperparameters=hp,
                                  tune_new_entries=True, seed=spec.seed, directory=str(directory),
                                  project_name=spec.study, overwrite=overwrite, max_consecutive_failed_trials=3)
    if kind == "hyperband":
        tuner = keras_tuner.Hyperband(max_epochs=spec.epochs, factor=3, **common)
    elif kind == "bayesian":
        tuner = keras_tuner.BayesianOptimization(max_trials=spec.trials, **common)
    else:
        tuner = keras_tuner.RandomSearch(max_trials=spec.trials, **common)
    # A project saved before a training hyperparameter existed reloads the space it saved, in which the new one is
    # missing: with `tune_new_entries` its trials would search it instead of holding it at the study's value. Its
    # trials trained without a learning-rate cycle, so it keeps lr_peak 1 unless this run asks for another.
    saved = tuner.oracle.hyperparameters
    for name, value in fixed.items():
        if name not in saved.values:
            kept = name == "lr_peak" and spec.lr_peak is None and name not in spec.fixed
            saved.Fixed(name, 1.0 if kept else value)
    return tuner


def tune(kind: str, spec: StudySpec, directory: str | Path, overwrite: bool = False, verbose: int = 1
         ) -> dict[str, Any]:
    """Runs the KerasTuner search; returns the best params, validation and test accuracy, trials and time."""
    from hpsearch.datasets import load_dataset
    from hpsearch.search.training import is_streamed

    data = load_dataset(spec.dataset, spec.data_dir, spec.train_size, spec.validation_split, spec.seed)
    if is_streamed(data.x_train):
        raise UsageError("the keras-tuner engine needs the images in memory; this folder is streamed from disk "
                         "(stream=1, or larger than memory): use `hpsearch run`, or a smaller --image-size")
    keras.utils.set_random_seed(spec.seed)  # the same weights on every run, as hpsearch's own trials
    tuner = make_tuner(kind, spec, data, directory, overwrite)
    start = time.perf_counter()
    try:
        tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), verbose=verbose)
    except RuntimeError as exc:  # KerasTuner's "consecutive failures" keeps the reason in its trials only
        refused = tuner.hypermodel.refused
        if refused and "consecutive failures" in str(exc):
            raise UsageError(f"the search stopped after failed trials; the last refused: {refused}") from None
        raise
    seconds = time.perf_counter() - start
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best_trial = tuner.oracle.get_best_trials(1)[0]
    model = tuner.get_best_models(1)[0]
    probs = model.predict(data.x_test, batch_size=512, verbose=0)
    return {"engine": "keras-tuner", "tuner": kind, "study": spec.study, "params": dict(best_hp.values),
            "value": float(best_trial.score) if best_trial.score is not None else None,
            "test_accuracy": float((probs.argmax(axis=1) == data.y_test).mean()),
            "trials": len(tuner.oracle.trials), "seconds": round(seconds, 1)}
