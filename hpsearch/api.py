"""hpsearch from Python: notebooks and scripts search their own builder and data, then use the best model.

    import hpsearch

    def build(hp):                       # KerasTuner's API: hp.Int, hp.Float, hp.Choice, hp.Boolean
        ...
        return model                     # compiled, or not (then optimizer and learning rate are searched)

    result = hpsearch.run(build, data=(x_train, y_train), study="notebook", trials=20, epochs=3)
    result.best_params, result.best_value
    model = result.best_model()

`workers=0` (the default) runs the trials in this process: a function defined in the notebook and arrays in
memory work. `workers=N` starts N worker processes, as `hpsearch run` does; they import the builder and load the
data themselves, so both must be references they can resolve: `model="file.py:build"` or
`"package.module:build"` (or a function defined in an importable module), `data="npz:FILE"` or a built-in dataset.
`hpsearch.load(study)` opens a finished study again.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError

if TYPE_CHECKING:
    import keras
    import optuna

    from hpsearch.datasets import Dataset
    from hpsearch.search.spec import StudySpec

MAIN_PREFIX = "__main__:"


def reference_of(builder: Any) -> str:
    """How a study names a Python builder: `module:qualname` when other processes can import it, else
    `__main__:name` (this process only)."""
    target = builder if inspect.isclass(builder) or inspect.isfunction(builder) else type(builder)
    module = getattr(target, "__module__", None) or "__main__"
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", "builder")
    if module == "__main__" or "<locals>" in qualname or not inspect.isclass(builder) \
            and not inspect.isfunction(builder):
        return f"{MAIN_PREFIX}{qualname.replace('<locals>.', '').replace('<lambda>', 'lambda')}"
    return f"{module}:{qualname}"


def _arrays(data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        return dict(data)
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        keys = ("x_train", "y_train", "x_test", "y_test")[:len(data)]
        return dict(zip(keys, data, strict=True))
    raise UsageError("data must be a dataset name, 'npz:FILE', (x_train, y_train), (x_train, y_train, x_test, "
                     "y_test) or a dict with x_train, y_train and optionally x_val, y_val, x_test, y_test, "
                     f"class_names; got {type(data).__name__}")


@dataclass
class SearchResult:
    """A study's outcome, read from its storage whenever asked (workers may still be adding trials)."""

    study_name: str
    storage_url: str
    artifacts: str | None = None
    _builder: Any = field(default=None, repr=False)  # the in-process builder and data, when this process ran it
    _data: Dataset | None = field(default=None, repr=False)

    @property
    def study(self) -> optuna.Study:
        from hpsearch.storage import load_study_read_only

        return load_study_read_only(self.study_name, self.storage_url)

    @property
    def spec(self) -> StudySpec:
        from hpsearch.search.worker import load_spec

        return load_spec(self.study)

    def _best(self) -> optuna.trial.FrozenTrial:
        from optuna.trial import TrialState

        study = self.study
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise HpsearchError(f"study {self.study_name!r} has no completed trial yet")
        from hpsearch.search.ranking import best_trial

        return best_trial(study)

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self._best().params)

    @property
    def best_value(self) -> float:
        """The best value of the first objective (the metric)."""
        return float(self._best().values[0])

    @property
    def pareto_front(self) -> list[optuna.trial.FrozenTrial]:
        """The completed trials no other beats in every objective (a study of one objective: its best trial)."""
        study = self.study
        return sorted(study.best_trials, key=lambda t: t.number) if len(study.directions) > 1 else [self._best()]

    @property
    def best_trial(self) -> optuna.trial.FrozenTrial:
        return self._best()

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials()

    def best_model(self) -> keras.Model:
        """The best trial's saved model; without one, its configuration trained again (same seed and epochs)."""
        from hpsearch.search.results import load_trial, load_trial_model, train_configuration

        stored = load_trial(self.study_name, self.storage_url, artifacts=self.artifacts)
        model = load_trial_model(stored)
        if model is not None:
            return model
        if self._builder is not None and self._data is not None:
            return _train_values(self._builder, self._data, stored)
        model, _ = train_configuration(stored, self._data or _load_data(stored.spec), epochs=None)
        return model


def _load_data(spec: StudySpec) -> Dataset:
    from hpsearch.datasets import load_dataset

    return load_dataset(spec.dataset, spec.data_dir, spec.train_size, spec.validation_split, spec.seed)


def _train_values(builder: Any, data: Dataset, stored: Any) -> keras.Model:
    import keras

    from hpsearch.models import training_config
    from hpsearch.search.adapter import values_hyperparameters
    from hpsearch.search.training import fit_and_evaluate

    keras.backend.clear_session()
    keras.utils.set_random_seed(stored.spec.seed + stored.trial.number)
    hp = values_hyperparameters(stored.values())
    model = builder(hp)
    fit_and_evaluate(model, data, training_config(hp), monitor=stored.spec.metric)
    return model


def run(model: Any, data: Any = "mnist-sample", *, study: str = "search", storage: str | None = None,
        trials: int | None = None, epochs: int = 10, workers: int | str = 0, enqueue_defaults: bool = False,
        artifacts: str | None = None, verbose: bool = True, **spec: Any) -> SearchResult:
    """Creates (or resumes) a study and runs its trials; returns its result.

    Args:
        model: a builder (`build(hp)` function, `keras_tuner.HyperModel` or subclass), or a reference string as
            `--model` takes it (a built-in name, `package.module:function`, `path/to/file.py:function`).
        data: a dataset name, `"npz:FILE"`, `(x_train, y_train[, x_test, y_test])` or a dict of arrays
            (x_train, y_train, optionally x_val, y_val, x_test, y_test, class_names).
        study: the study's name; an existing study with the same set-up is resumed.
        storage: a database URL (default: `$HPSEARCH_STORAGE`, else `sqlite:///hpsearch.db`).
        trials, epochs: the trial budget (default 20; none with a `timeout`: the time is the budget) and the
            epochs per trial.
        workers: 0 runs the trials in this process; N > 0 starts N worker processes (importable builder and
            data on disk needed); "auto" lets the launcher choose workers x threads as `hpsearch run` does.
        enqueue_defaults: run the builder's default configuration first.
        artifacts: the artifact directory (default: beside the SQLite file).
        verbose: a line per finished trial (Optuna's log) or, with workers, the live progress display.
        **spec: any other study setting: metric, direction, sampler, sampler_options={...}, pruner, seed, train_size,
            validation_split, batch_size, timeout (seconds from the study's first run: a resumed study gets what
            is left; a spent one runs nothing and logs why), fixed={...}, model_options={...}, cost_aware
            (default: on with a timeout), lr_peak (one learning-rate cycle a trial to this many times the
            optimizer's rate; default 5, 1 for the builder's own training; fixed={"lr_peak": ...} also sets it).

    Raises:
        UsageError: a builder or data the chosen mode cannot use, and every check `hpsearch run` makes.
    """
    from hpsearch.data_files import MEMORY_PREFIX
    from hpsearch.search.spec import StudySpec
    from hpsearch.storage import resolve_url

    builder_object = None if isinstance(model, str) else model
    ref = model if isinstance(model, str) else reference_of(model)
    arrays = None if isinstance(data, str) else _arrays(data)
    dataset = data if isinstance(data, str) else f"{MEMORY_PREFIX}{study}"
    if workers != "auto" and (not isinstance(workers, int) or workers < 0):
        raise UsageError(f"workers must be 0 (this process), a number of worker processes or 'auto', got "
                         f"{workers!r}")
    if workers and ref.startswith(MAIN_PREFIX):
        raise UsageError(f"the builder {ref.removeprefix(MAIN_PREFIX)!r} is defined in this notebook or script; "
                         "worker processes cannot import it. Use workers=0 (trials in this process), or move it "
                         "to a file and pass model='my_model.py:build'")
    if workers and arrays is not None:
        raise UsageError("arrays in memory cannot reach worker processes; use workers=0, or save them with "
                         "numpy.savez('data.npz', x_train=..., y_train=...) and pass data='npz:data.npz'")
    url = resolve_url(storage)
    study_spec = StudySpec(study=study, model=ref, dataset=dataset, trials=trials, epochs=epochs, **spec)
    if workers:
        from rich.console import Console

        from hpsearch.search.launcher import launch

        console = Console(quiet=not verbose, stderr=True)
        launch(study_spec, url, None if workers == "auto" else int(workers), console, artifacts=artifacts,
               enqueue_defaults=enqueue_defaults)
        return SearchResult(study, url, artifacts)
    return _run_here(study_spec, url, builder_object, arrays, enqueue_defaults, artifacts, verbose)


def _run_here(spec: StudySpec, url: str, builder_object: Any, arrays: dict[str, Any] | None,
              enqueue_defaults: bool, artifacts: str | None, verbose: bool) -> SearchResult:
    import logging

    import optuna

    from hpsearch.data_files import check_arrays, from_arrays
    from hpsearch.models import get_builder
    from hpsearch.models.references import bind
    from hpsearch.search import breaker
    from hpsearch.search.launcher import budget_spent, create_or_resume, existing_spec
    from hpsearch.search.notes import note_callback
    from hpsearch.search.objective import Objective
    from hpsearch.search.preflight import check_spec
    from hpsearch.search.service import StudyService, start_clock
    from hpsearch.search.worker import run_trials
    from hpsearch.storage import open_storage
    from hpsearch.storage.artifacts import artifact_location, open_artifact_store

    spec = spec.settled(existing_spec(spec.study, url))  # a resume that does not name lr_peak keeps its training
    if arrays is not None:
        data = from_arrays(check_arrays(arrays, "data"), spec.dataset, "arrays given to hpsearch.run()",
                           spec.train_size, spec.validation_split, spec.seed)
    else:
        data = _load_data(spec)
    if builder_object is not None:
        builder = bind(builder_object, spec.model, data.input_shape, data.num_classes, **spec.model_options)
    else:
        builder = get_builder(spec.model, data.input_shape, data.num_classes, **spec.model_options)
    checked = check_spec(spec, data=data, builder=builder)
    storage = open_storage(url)
    level = optuna.logging.get_verbosity()
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not even "A new study created"
    try:
        create_or_resume(checked.spec, storage, enqueue_defaults, checked=checked)
    finally:
        optuna.logging.set_verbosity(level)
    spec = checked.spec
    study = optuna.load_study(study_name=spec.study, storage=storage, sampler=spec.make_sampler(),
                              pruner=spec.make_pruner())
    objective = Objective(spec, open_artifact_store(artifact_location(url, artifacts)), data=data, builder=builder)
    progress = StudyService(study, spec).progress()
    window = None
    if spec.timeout:  # a resumed study's time budget runs on from its first run
        start = start_clock(study, restart=not progress.total)
        window = (start, start + float(spec.timeout))
    spent = budget_spent(study, spec, progress)
    if spent:
        logging.getLogger("hpsearch").warning("%s", spent)
        return SearchResult(spec.study, url, artifacts, builder, data)
    objective.attach_cost(study, window)
    deadline = window[1] if window else None

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)  # a line per trial
    try:
        run_trials(study, spec.trial_budget, objective, deadline, callbacks=[note_callback(spec), breaker.callback])
    finally:
        optuna.logging.set_verbosity(level)
    return SearchResult(spec.study, url, artifacts, builder, data)


def load(study: str, storage: str | None = None, artifacts: str | None = None) -> SearchResult:
    """An existing study's result (`best_params`, `best_model()`, ...)."""
    from hpsearch.storage import load_study_read_only, resolve_url

    url = resolve_url(storage)
    load_study_read_only(study, url)  # unknown study: a clear error now, not at the first property
    return SearchResult(study, url, artifacts)


__all__ = ["SearchResult", "load", "reference_of", "run"]
