"""A study spec: what a study searches, on what data, with which sampler and pruner.

A spec comes from a YAML file and/or CLI flags (flags win), is validated field by field, and is stored in the
study's user attributes so that `hpsearch worker --study NAME` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import UnknownNameError, UsageError

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "grid")
PRUNERS = ("hyperband", "median", "successive-halving", "none")
DIRECTIONS = ("maximize", "minimize")
STUDY_NAME_MAX = 128
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# BatchNorm statistics have not settled after one epoch (the seed CNN validates far below what it becomes):
# no pruning decision is taken before this many epochs.
MIN_PRUNING_EPOCHS = 2

SPEC_ATTR = "hpsearch_spec"


@dataclass
class StudySpec:
    """Everything a worker needs to run trials of one study."""

    study: str
    model: str
    dataset: str = "mnist-sample"
    data_dir: str | None = None
    train_size: int | None = None
    validation_split: float = 0.1
    metric: str = "val_accuracy"
    direction: str = "maximize"
    sampler: str = "tpe"
    pruner: str = "hyperband"
    seed: int = 0
    trials: int = 20
    timeout: float | None = None
    epochs: int = 10
    batch_size: int = 128
    # Hyperparameters held at a value (e.g. {"optimizer": "adam"}); epochs and batch size are always fixed.
    fixed: dict[str, Any] = field(default_factory=dict)
    # Training hyperparameters to search instead of fixing them at their defaults (e.g. ["batch_size"]).
    search_training: list[str] = field(default_factory=list)
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from hpsearch.datasets import DATASETS
        from hpsearch.models import MODELS, TRAINING_PARAMS

        check_study_name(self.study)
        if self.model not in MODELS:
            raise UnknownNameError("model", self.model, list(MODELS))
        if self.dataset not in DATASETS:
            raise UnknownNameError("dataset", self.dataset, list(DATASETS))
        if self.sampler not in SAMPLERS:
            raise UnknownNameError("sampler", self.sampler, SAMPLERS)
        if self.pruner not in PRUNERS:
            raise UnknownNameError("pruner", self.pruner, PRUNERS)
        if self.direction not in DIRECTIONS:
            raise UnknownNameError("direction", self.direction, DIRECTIONS)
        for name, value, low in (("trials", self.trials, 1), ("epochs", self.epochs, 1),
                                 ("batch_size", self.batch_size, 1), ("train_size", self.train_size, 20)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 < float(self.validation_split) < 1.0:
            raise UsageError(f"validation_split must be between 0 and 1, got {self.validation_split!r}")
        if self.timeout is not None and float(self.timeout) <= 0:
            raise UsageError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if not isinstance(self.fixed, dict):
            raise UsageError(f"fixed must be a mapping of hyperparameter names to values, got {self.fixed!r}")
        unknown = [n for n in self.search_training if n not in TRAINING_PARAMS]
        if unknown:
            raise UnknownNameError("training hyperparameter", unknown[0], TRAINING_PARAMS)

    # ----------------------------------------------------------------------------------------------- views
    def fixed_values(self) -> dict[str, Any]:
        """The values held fixed in every trial: training defaults, epochs, batch size, then `fixed`."""
        from hpsearch.models import TrainingConfig

        defaults = dataclasses.asdict(TrainingConfig())
        values = {k: v for k, v in defaults.items() if k not in self.search_training}
        values["epochs"] = self.epochs
        if "batch_size" not in self.search_training:
            values["batch_size"] = self.batch_size
        values.update(self.fixed)
        return values

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "spec") -> StudySpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UsageError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys are: "
                             f"{', '.join(sorted(names))}")
        types = {"trials": int, "epochs": int, "batch_size": int, "train_size": int, "seed": int,
                 "validation_split": float, "timeout": float, "study": str, "model": str, "dataset": str,
                 "sampler": str, "pruner": str, "metric": str, "direction": str, "data_dir": str,
                 "fixed": dict, "search_training": list, "model_options": dict}
        for key, value in data.items():
            expected = types.get(key)
            if value is None or expected is None:
                continue
            ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise UsageError(f"{source}: {key} must be {expected.__name__}, got {type(value).__name__} "
                                 f"{value!r}")
        missing = [k for k in ("study", "model") if not data.get(k)]
        if missing:
            raise UsageError(f"{source}: {' and '.join(missing)} must be given (in the YAML file or as --{missing[0]})")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path | None, overrides: dict[str, Any]) -> StudySpec:
        """Reads a YAML spec (optional) and applies CLI overrides (those not None)."""
        import yaml

        data: dict[str, Any] = {}
        source = "command line"
        if path:
            path = Path(path)
            if not path.is_file():
                raise UsageError(f"study spec {path} does not exist")
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise UsageError(f"study spec {path} is not valid YAML: {exc}") from None
            if not isinstance(loaded, dict):
                raise UsageError(f"study spec {path} must be a mapping of keys to values")
            data.update(loaded)
            source = str(path)
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "fixed":
                data["fixed"] = {**(data.get("fixed") or {}), **value}
            else:
                data[key] = value
        return cls.from_dict(data, source)

    # --------------------------------------------------------------------------------------- Optuna pieces
    def make_sampler(self, search_space: dict[str, list[Any]] | None = None, seed_offset: int = 0
                     ) -> optuna.samplers.BaseSampler:
        """The study's sampler; `seed_offset` keeps parallel workers from drawing the same random configurations."""
        import optuna

        seed = self.seed + seed_offset

        if self.sampler == "tpe":
            # constant_liar: parallel workers do not all sample next to the same running trial.
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=5)
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if self.sampler == "qmc":
            # QMC numbers its points by trial: one shared seed keeps the workers on one low-discrepancy sequence.
            return optuna.samplers.QMCSampler(seed=self.seed, warn_independent_sampling=False)
        if search_space is None:
            raise UsageError("the grid sampler needs the search space")
        return optuna.samplers.GridSampler(search_space, seed=seed)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        import optuna

        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=min(MIN_PRUNING_EPOCHS, self.epochs),
                                                  max_resource=self.epochs, reduction_factor=3)
        if self.pruner == "successive-halving":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_PRUNING_EPOCHS, reduction_factor=3)
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=MIN_PRUNING_EPOCHS)
        return optuna.pruners.NopPruner()


def check_study_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise UsageError("a study name is required (--study NAME)")
    if len(name) > STUDY_NAME_MAX:
        raise UsageError(f"study name is {len(name)} characters long; keep it to {STUDY_NAME_MAX} or fewer")
    if not _STUDY_NAME.match(name):
        raise UsageError(f"study name {name!r} has characters that are not allowed; use letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit")
