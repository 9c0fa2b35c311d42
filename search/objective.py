"""One trial: build the model the sampler chose, train it, report every epoch, evaluate, store artifacts."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from hpsearch.errors import HpsearchError, TrialFailed, UsageError
from hpsearch.models import get_builder, training_config
from hpsearch.search.adapter import OptunaHyperParameters
from hpsearch.search.callbacks import OptunaReportCallback, StopWhenSet
from hpsearch.search.cost import model_counts
from hpsearch.search.preflight import check_training_names
from hpsearch.search.ranking import best_of, better
from hpsearch.search.spec import StudySpec
from hpsearch.search.training import fit_and_evaluate
from hpsearch.search.worker import STOP_REQUESTED, stop_if_asked

if TYPE_CHECKING:
    from hpsearch.datasets import Dataset
    from hpsearch.search.adapter import BuilderLike
    from hpsearch.storage.optuna_compat import ArtifactStore

logger = logging.getLogger("hpsearch")

# The test set is evaluated for a completed trial that ranks among the study's best TEST_TOP_K when it ends (the
# ranks the study note and `best` show; a trial outside them then can never enter them later). Other trials skip
# those seconds: 10,000 test images cost 5-10 s of a one-minute trial on 2 cores (benchmarks, BENCHMARKS.md).
TEST_TOP_K = 5

def _completed_values(trial: optuna.trial.Trial) -> list[float]:
    """The first objective's value (the metric) of each completed trial of the study."""
    return [t.values[0] for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values]


def latency_ms(model: Any, x: Any, calls: int = 20) -> float:
    """Milliseconds one forward pass of `x` (one image) takes: the median of `calls` calls after a warm-up."""
    import time

    model(x, training=False)  # the first call traces
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        model(x, training=False)
        seconds.append(time.perf_counter() - start)
    return round(float(np.median(seconds)) * 1000, 3)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_threads() -> int:
    """The threads this process trains with: TensorFlow's own setting (what it applied, not what was asked), else
    the configured cap, else every core it may use."""
    import keras

    from hpsearch.search.worker import available_cores

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        applied = tf.config.threading.get_intra_op_parallelism_threads()
        if applied > 0:
            return int(applied)
    configured = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    return int(configured) if configured.isdigit() and int(configured) > 0 else available_cores()


class Objective:
    """The objective of one worker process: the dataset is loaded once, each call trains one model."""

    def __init__(self, spec: StudySpec, artifact_store: ArtifactStore | None = None, data: Dataset | None = None,
                 builder: BuilderLike | None = None) -> None:
        from hpsearch.datasets import load_dataset

        self.spec = spec
        self.artifact_store = artifact_store
        self.data = data or load_dataset(spec.dataset, spec.data_dir, spec.train_size, spec.validation_split,
                                         spec.seed)
        self.builder = builder or get_builder(spec.model, self.data.input_shape, self.data.num_classes,
                                              **spec.model_options)
        self.fixed = spec.fixed_values()

    def attach_cost(self, study: optuna.Study, window: tuple[float, float] | None = None) -> None:
        """Lets the study's sampler, when cost-aware (search/cost.py), build this objective's models to rank
        configurations; `window`: the time budget's (start, deadline)."""
        from hpsearch.search.cost import attach_cost

        attach_cost(study.sampler, self.builder, self.fixed, window, study)

    def __call__(self, trial: optuna.trial.Trial) -> float:
        """Trains one configuration; any error of the builder, the model or the data fails this trial alone, with
        its reason (`fail_reason`) and the last frames of its traceback (`fail_traceback`) on the trial."""
        from hpsearch.storage import caused_by_storage

        try:
            return self._run(trial)
        except (optuna.TrialPruned, TrialFailed):
            raise  # pruned, or failed with its reason already
        except Exception as exc:
            if caused_by_storage(exc):
                raise  # the storage (or the proxy in front of it) is away: the worker waits for it
            raise self._fail(trial, f"{type(exc).__name__}: {exc}", exc) from exc

    def _run(self, trial: optuna.trial.Trial) -> float:
        import keras

        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("threads", worker_threads())  # the launcher's measure of a trial's cost
        if os.environ.get("CUDA_VISIBLE_DEVICES"):
            trial.set_user_attr("gpu", os.environ["CUDA_VISIBLE_DEVICES"])  # the device `run --gpus` gave it
        trial.set_user_attr("epoch", 0)
        keras.backend.clear_session()
        keras.utils.set_random_seed(self.spec.seed + trial.number)
        hp = OptunaHyperParameters(trial, self.fixed)
        try:
            model = self.builder(hp)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            raise self._fail(trial, f"builder error: {type(exc).__name__}: {exc}", exc) from exc
        # The door checked the names the builder declares at its defaults; one declared only on a branch the
        # defaults do not take (`if hp.Choice(...) == "b": hp.Int("patience", ...)`) shows up here, first.
        try:
            check_training_names({p.name: p for p in hp.space}, self.spec.model, self.spec.search_training)
        except UsageError as exc:
            raise self._fail(trial, str(exc)) from None
        for name, value in self.fixed.items():
            trial.set_user_attr(f"fixed:{name}", value)
        config = training_config(hp)
        reporter = OptunaReportCallback(trial, self.spec.metric, config.epochs,
                                        report=not self.spec.multi_objective)
        try:
            result = fit_and_evaluate(model, self.data, config, [reporter, StopWhenSet(STOP_REQUESTED.is_set)],
                                      monitor=self.spec.metric, skip_test=lambda: reporter.pruned_at is not None
                                      or not self._ranks_in_top(trial, reporter.values, TEST_TOP_K))
        except TrialFailed as exc:
            raise self._fail(trial, str(exc)) from None
        stop_if_asked()  # a stop whose interrupt was dropped after the last batch: nothing is stored
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("train_seconds", round(result.train_seconds, 2))
        trial.set_user_attr("images_per_second", round(result.images_per_second, 1))
        trial.set_user_attr("parameters", result.parameters)
        counts = model_counts(model)
        for name, count in zip(("macs", "activations"), counts or (), strict=False):
            if count:
                trial.set_user_attr(name, count)  # per image: what cost-aware sampling ranks configurations by
        if result.test_seconds is not None:
            trial.set_user_attr("test_seconds", round(result.test_seconds, 2))
        if reporter.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        trial.set_user_attr("val_accuracy", round(result.val_accuracy, 6))
        if result.test_seconds is not None:
            trial.set_user_attr("test_accuracy", round(result.test_accuracy, 6))
            trial.set_user_attr("test_loss", round(result.test_loss, 6))
        history = result.history.get(self.spec.metric, [])
        value = best_of(history, self.spec.direction)
        self._store_artifacts(trial, model, result, value, dict(hp.values))
        if not self.spec.multi_objective:
            return float(value)
        values = [float(value), *self._other_objectives(model, result, history.index(value))]
        for name, other in zip(self.spec.objective_names()[1:], values[1:], strict=True):
            trial.set_user_attr(name, other)
        return values  # type: ignore[return-value]  # Optuna takes a sequence for several objectives

    def _other_objectives(self, model: Any, result: Any, best_epoch: int) -> list[float]:
        """The values of `objectives` for a trained model: measured on it, or logged at the metric's best epoch
        (the weights early stopping restored)."""
        values = []
        for name in self.spec.objective_names()[1:]:
            if name == "parameters":
                values.append(float(result.parameters))
            elif name == "latency_ms":
                values.append(latency_ms(model, np.asarray(self.data.x_val[:1])))
            elif name in result.history:
                values.append(float(result.history[name][best_epoch]))
            else:
                raise TrialFailed(f"objective {name!r} is not in the training logs ({', '.join(result.history)})")
        return values

    @staticmethod
    def _fail(trial: optuna.trial.Trial, reason: str, exc: BaseException | None = None) -> TrialFailed:
        """Records why the trial failed (and the last frames of `exc`'s traceback) on it, passwords masked: the
        dashboard and `trials` show both."""
        from hpsearch.storage import redact

        reason = redact(reason)
        trial.set_user_attr("fail_reason", reason[:1000])
        if exc is not None:
            import traceback

            trial.set_user_attr("fail_traceback",
                                redact("".join(traceback.format_exception(exc, limit=-6)))[-4000:])
        logger.warning("trial %d failed: %s", trial.number, reason)
        return TrialFailed(reason)

    def _ranks_in_top(self, trial: optuna.trial.Trial, values: list[float], k: int) -> bool:
        """True when this trial's result would rank among the k best completed trials of the study so far."""
        if not values:
            return True
        value = best_of(values, self.spec.direction)
        return sum(better(v, value, self.spec.direction) for v in _completed_values(trial)) < k

    def _is_best_so_far(self, trial: optuna.trial.Trial, value: float) -> bool:
        done = _completed_values(trial)
        if not done:
            return True
        # A tie saves too: Optuna's best_trial may name either of two equal trials, and each then has its model.
        return not better(best_of(done, self.spec.direction), value, self.spec.direction)

    def _store_artifacts(self, trial: optuna.trial.Trial, model: Any, result: Any, value: float,
                         params: dict[str, Any]) -> None:
        """Curves for every completed trial; model, confusion matrix and report for each new best.

        An artifact that cannot be stored is logged and recorded; the trial's result is kept regardless.
        """
        if self.artifact_store is None:
            return
        from hpsearch.search.reports import classification_report, plot_confusion, plot_curves
        from hpsearch.storage.artifacts import upload

        title = f"{trial.study.study_name} trial {trial.number}"
        try:
            with tempfile.TemporaryDirectory(prefix="hpsearch-") as tmp:
                files = [plot_curves(result.history, Path(tmp) / f"trial-{trial.number}-curves.png", title)]
                if result.test_seconds is not None and self._is_best_so_far(trial, value):
                    model_path = Path(tmp) / f"trial-{trial.number}-model.keras"
                    model.save(model_path)
                    report = Path(tmp) / f"trial-{trial.number}-classification-report.txt"
                    report.write_text(f"{title}\nparams: {json.dumps(params)}\n\n"
                                      + classification_report(self.data.y_test, result.y_pred,
                                                              self.data.class_names))
                    files += [model_path, report,
                              plot_confusion(self.data.y_test, result.y_pred, self.data.class_names,
                                             Path(tmp) / f"trial-{trial.number}-confusion-matrix.png", title)]
                for path in files:
                    artifact_id = upload(self.artifact_store, trial, path)
                    kind = path.name.split("-", 2)[-1].rsplit(".", 1)[0]
                    trial.set_user_attr(f"artifact:{kind}", artifact_id)
        except (HpsearchError, OSError) as exc:
            trial.set_user_attr("artifact_error", str(exc)[:500])
            logger.warning("trial %d: artifacts not stored: %s", trial.number, exc)
