"""A study spec: what a study searches, on what data, with which sampler and pruner.

A spec comes from a YAML file and/or CLI flags (flags win), is validated field by field, and is stored in the
study's user attributes so that `hpsearch worker --study NAME` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import UnknownNameError, UsageError
from hpsearch.models.training_params import DEFAULT_LR_PEAK, LR_PEAK_MAX

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "grid")
# The Optuna class behind each sampler name: `sampler_options` are checked against its constructor.
_SAMPLER_CLASSES = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "qmc": "QMCSampler",
                    "grid": "GridSampler"}
PRUNERS = ("successive-halving", "hyperband", "median", "none")
DIRECTIONS = ("maximize", "minimize")
STUDY_NAME_MAX = 128
SPEC_MAX_BYTES = 1_000_000  # a study spec is a few lines; a larger file is a mistake, not a spec
FIXED_MAX = 256  # more fixed values than any builder has hyperparameters
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The first pruning rung. Validation recomputes BatchNorm statistics from the current weights (precise BN), so
# epoch 1 already measures the trained weights (the seed CNN on 2,000 images: 0.81, not 0.10): rungs start there.
MIN_PRUNING_EPOCHS = 1
# TPE's random start-up: a tenth of the trial budget, within these bounds; a study whose budget is its time alone
# takes the upper bound (on MNIST at 10 minutes 10 start-up trials beat 4: BENCHMARKS.md, "Sampler defaults").
TPE_STARTUP_MIN, TPE_STARTUP_MAX = 4, 10
# The trial budget of a study given neither a number of trials nor a time budget.
DEFAULT_TRIALS = 20
# What the trial count holds to when the time is the whole budget (no --trials): more than any study runs.
UNCAPPED_TRIALS = 10**9

# Objectives measured on the trained model rather than logged by Keras, all minimized.
MODEL_OBJECTIVES = {"parameters": "the model's parameter count",
                    "latency_ms": "milliseconds to classify one image (median of 20 calls after a warm-up)"}
OBJECTIVES_MAX = 4

SPEC_ATTR = "hpsearch_spec"
# What a key a study stored before the key existed means: that study sampled without weighing cost and trained
# as the builder's published training did.
_STORED_BEFORE: dict[str, Any] = {"cost_aware": False, "trials": DEFAULT_TRIALS, "lr_peak": 1.0}
CLASSES_ATTR = "hpsearch_class_names"  # the data's class names, stored with the study for predict
# How many images every trial's metric was measured on: `hpsearch best` says which trials that cannot tell apart.
VALIDATION_ATTR = "hpsearch_validation_images"


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
    direction: str | None = None  # None: from the metric's name (accuracies up, losses and errors down)
    sampler: str = "tpe"
    # Options of the sampler's Optuna constructor beside the seed, over hpsearch's own choices (e.g.
    # {"n_startup_trials": 5} or {"multivariate": False}).
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner: str = "successive-halving"
    seed: int = 0
    # The trial budget over all workers. None when created: DEFAULT_TRIALS, or with a time budget (`timeout`) no
    # cap at all (stored as None): the search runs until its time is spent.
    trials: int | None = None
    timeout: float | None = None
    epochs: int = 10
    batch_size: int = 128
    # Hyperparameters held at a value (e.g. {"optimizer": "adam"}); epochs and batch size are always fixed.
    fixed: dict[str, Any] = field(default_factory=dict)
    # Training hyperparameters to search instead of fixing them at their defaults (e.g. ["batch_size"]).
    search_training: list[str] = field(default_factory=list)
    model_options: dict[str, Any] = field(default_factory=dict)
    # Further objectives beside `metric`, each "name" or "name:maximize|minimize": a Keras-logged metric (its value
    # at the epoch `metric` chose) or one of MODEL_OBJECTIVES. The study then keeps a Pareto front; Optuna cannot
    # prune several objectives, so such a study runs without a pruner.
    objectives: list[str] = field(default_factory=list)
    # Weigh a configuration's cost when sampling (search/cost.py). None when created: on for the tpe sampler, one
    # objective and a time budget (a cheaper trial buys time for another); the study stores the answer, so resuming
    # with another --timeout does not change how it samples.
    cost_aware: bool | None = None
    # The study's learning-rate peak (training hyperparameter `lr_peak`) unless `fixed` or `search_training` names
    # it. None until the study is created or resumed (`settled`): an existing study's stored value (1.0 for one
    # stored before the key), else DEFAULT_LR_PEAK; the study stores it, so a resume keeps its training. Unlike
    # `--set lr_peak=N`, it is not asking for a cycle: a builder whose optimizer has a schedule of its own trains
    # on that schedule.
    lr_peak: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            from hpsearch.models.references import normalize

            self.model = normalize(self.model)  # a builder file's path, absolute: workers may start elsewhere
        if isinstance(self.dataset, str):
            from hpsearch.data_files import normalize as normalize_data

            self.dataset = normalize_data(self.dataset)
        if self.trials is None and self.timeout is None:
            self.trials = DEFAULT_TRIALS
        if self.cost_aware is None:
            self.cost_aware = self.sampler == "tpe" and self.timeout is not None and not self.multi_objective
        if isinstance(self.lr_peak, int) and not isinstance(self.lr_peak, bool):
            self.lr_peak = float(self.lr_peak)
        self._settle_cost_options()
        if self.direction is None:
            self.direction = metric_direction(self.metric)
            if self.direction is None:
                raise UsageError(f"cannot tell whether metric {self.metric!r} should be maximized or minimized; "
                                 "pass --direction maximize or --direction minimize")
        self.validate()

    def validate(self) -> None:
        from hpsearch.datasets import check_dataset_name
        from hpsearch.models import MODELS, TRAINING_PARAMS

        check_study_name(self.study)
        if not isinstance(self.model, str) or not self.model:
            raise UsageError("a model is required (--model NAME, package.module:function or file.py:function)")
        if self.model not in MODELS:
            from hpsearch.models.references import check_name

            check_name(self.model, list(MODELS))
        check_dataset_name(self.dataset)
        if self.sampler not in SAMPLERS:
            raise UnknownNameError("sampler", self.sampler, SAMPLERS)
        if self.pruner not in PRUNERS:
            raise UnknownNameError("pruner", self.pruner, PRUNERS)
        if self.direction not in DIRECTIONS:
            raise UnknownNameError("direction", self.direction, DIRECTIONS)
        if isinstance(self.fixed, dict) and len(self.fixed) > FIXED_MAX:
            raise UsageError(f"{len(self.fixed)} fixed hyperparameters; a study fixes at most {FIXED_MAX}")
        for name, value, low in (("trials", self.trials, 1), ("epochs", self.epochs, 1),
                                 ("batch_size", self.batch_size, 1), ("train_size", self.train_size, 20)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 < float(self.validation_split) < 1.0:
            raise UsageError(f"validation_split must be between 0 and 1, got {self.validation_split!r}")
        if self.timeout is not None and float(self.timeout) <= 0:
            raise UsageError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        peak = self.lr_peak
        if peak is not None and (isinstance(peak, bool) or not isinstance(peak, (int, float))
                                 or not 1.0 <= peak <= LR_PEAK_MAX):
            raise UsageError(f"lr_peak must be a number from 1 to {LR_PEAK_MAX:g} (1: the builder's own rate), got "
                             f"{peak!r}")
        if not isinstance(self.fixed, dict):
            raise UsageError(f"fixed must be a mapping of hyperparameter names to values, got {self.fixed!r}")
        unknown = [n for n in self.search_training if n not in TRAINING_PARAMS]
        if unknown:
            raise UnknownNameError("training hyperparameter", unknown[0], TRAINING_PARAMS)
        self._check_objectives()
        self._check_sampler_options()
        if self.cost_aware and (self.sampler != "tpe" or self.multi_objective):
            raise UsageError("cost-aware sampling weighs the tpe sampler's candidates for one objective; with "
                             f"{'several objectives' if self.multi_objective else f'the {self.sampler} sampler'} "
                             "pass --no-cost-aware (cost_aware: false)")

    def _settle_cost_options(self) -> None:
        """A study that weighs cost stores whether it is time-aware (off unless asked), so a resume
        samples as the study began; the cost-aware sampler's options mean nothing to a study that does not weigh
        cost (a resume with --no-cost-aware of one that did, say): they are dropped, with a warning."""
        if not isinstance(self.sampler_options, dict) or self.sampler != "tpe":
            return
        if self.weighs_cost():
            self.sampler_options = {**self.sampler_options}
            self.sampler_options.setdefault("time_aware", False)
            return
        ignored = sorted(set(self.sampler_options) & set(_cost_options()))
        told = [n for n in ignored if (n, self.sampler_options[n]) != ("time_aware", False)]  # False: stored
        if told:
            import logging

            logging.getLogger("hpsearch").warning(
                "sampler option(s) %s ignored: they belong to cost-aware sampling, which this study does not use "
                "(it weighs cost with a --timeout, or with --cost-aware)", ", ".join(told))
        if ignored:
            self.sampler_options = {k: v for k, v in self.sampler_options.items() if k not in ignored}

    def _check_sampler_options(self) -> None:
        """Each option is one the sampler's constructor takes, of a kind a stored spec holds (a name, a number,
        true/false) and of its annotated type; then the sampler is built once, so options that contradict each
        other or that Optuna deprecates stop here rather than in every worker."""
        if not isinstance(self.sampler_options, dict):
            raise UsageError(f"sampler_options must be a mapping of option names to values, got "
                             f"{self.sampler_options!r}")
        if not self.sampler_options:
            return
        import optuna

        sampler_class = self._sampler_class()
        optuna_class = getattr(optuna.samplers, _SAMPLER_CLASSES[self.sampler])
        parameters = dict(inspect.signature(optuna_class).parameters)
        if sampler_class is not optuna_class:  # the cost-aware TPE's own options too
            parameters.update(inspect.signature(sampler_class).parameters)
        accepted = {n: p for n, p in parameters.items()
                    if n not in ("seed", "search_space") and p.kind is not inspect.Parameter.VAR_KEYWORD}
        for name, value in self.sampler_options.items():
            if name not in accepted:
                seed = " (the seed is --seed)" if name == "seed" else ""
                offered = _offered_options(sampler_class, accepted)
                listed = f"its options: {', '.join(offered)}" if offered else "it takes none"
                raise UsageError(f"the {self.sampler} sampler has no option {name!r}{seed}; {listed}")
            wanted = _option_type(accepted[name])
            if not wanted:
                raise UsageError(f"sampler option {name} takes {accepted[name].annotation}, which a study spec "
                                 "cannot hold (it keeps names, numbers and true/false)")
            if not _fits(value, wanted, accepted[name]):
                raise UsageError(f"sampler option {name} takes {wanted}, got {value!r}")
        with warnings.catch_warnings():  # an option Optuna is about to drop would break stored studies later
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                self.make_sampler({"x": [0]})  # options that contradict each other fail here, not in every worker
            except FutureWarning as exc:
                raise UsageError(f"sampler options {self.sampler_options}: {exc}".split(" See ")[0]) from None
            except (TypeError, ValueError) as exc:
                raise UsageError(f"sampler options {self.sampler_options}: {exc}") from None

    def _check_objectives(self) -> None:
        if not isinstance(self.objectives, list) or not all(isinstance(o, str) for o in self.objectives):
            raise UsageError(f"objectives must be a list of names, got {self.objectives!r}")
        if not self.objectives:
            return
        if len(self.objectives) > OBJECTIVES_MAX - 1:
            raise UsageError(f"{len(self.objectives) + 1} objectives; a study optimizes at most {OBJECTIVES_MAX} "
                             "(Pareto fronts of more say little)")
        names = self.objective_names()
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            also = " (the first objective is --metric)" if duplicated[0] == self.metric else ""
            raise UsageError(f"objective {duplicated[0]!r} is given twice{also}")
        self.objective_directions()  # every direction known
        if self.pruner not in ("none", "successive-halving"):
            raise UsageError(f"the {self.pruner} pruner cannot prune a study with several objectives (Optuna prunes "
                             "on one value); leave --pruner out or use a single objective")
        self.pruner = "none"  # the default pruner is dropped: what the study does is what its spec says
        if self.sampler == "cmaes":
            raise UsageError("the cmaes sampler optimizes a single objective; use tpe (the default), random or qmc "
                             "with several objectives")

    # ----------------------------------------------------------------------------------------------- objectives
    def objective_names(self) -> list[str]:
        """The study's objectives in order: `metric` first, then `objectives` (without their directions)."""
        return [self.metric, *(o.partition(":")[0].strip() for o in self.objectives)]

    def objective_directions(self) -> list[str]:
        """Each objective's direction: given after a colon, else the metric's natural one (MODEL_OBJECTIVES: down).

        Raises:
            UsageError: a direction that is neither maximize nor minimize, or one that cannot be told from the name.
        """
        directions = [str(self.direction)]
        for item in self.objectives:
            name, _, given = (part.strip() for part in item.partition(":"))
            if not name:
                raise UsageError(f"objective {item!r} has no name; write NAME or NAME:maximize|minimize")
            if given:
                if given not in DIRECTIONS:
                    raise UsageError(f"objective {item!r}: the direction after the colon must be maximize or "
                                     f"minimize, got {given!r}")
                directions.append(given)
                continue
            natural = "minimize" if name in MODEL_OBJECTIVES else metric_direction(name)
            if natural is None:
                raise UsageError(f"cannot tell whether objective {name!r} should be maximized or minimized; write "
                                 f"{name}:maximize or {name}:minimize")
            directions.append(natural)
        return directions

    @property
    def multi_objective(self) -> bool:
        return bool(self.objectives)

    # ----------------------------------------------------------------------------------------------- views
    def fixed_values(self) -> dict[str, Any]:
        """The values held fixed in every trial: training defaults, epochs, batch size, the study's lr_peak, then
        `fixed`."""
        from hpsearch.models import TrainingConfig

        defaults = dataclasses.asdict(TrainingConfig())
        values = {k: v for k, v in defaults.items() if k not in self.search_training}
        values["epochs"] = self.epochs
        if "batch_size" not in self.search_training:
            values["batch_size"] = self.batch_size
        if "lr_peak" not in self.search_training:
            values["lr_peak"] = DEFAULT_LR_PEAK if self.lr_peak is None else self.lr_peak
        values.update(self.fixed)
        return values

    def settled(self, stored: dict[str, Any] | None) -> StudySpec:
        """This spec as the study keeps it: an `lr_peak` not given is the existing study's (`stored`, its stored
        spec), else a new study's default."""
        if self.lr_peak is not None:
            return self
        kept = _as_stored(stored)["lr_peak"] if stored else None
        return dataclasses.replace(self, lr_peak=DEFAULT_LR_PEAK if kept is None else kept)

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> StudySpec:
        """The spec a study stored when it was created, as it was then validated; not validated again (checking a
        model name imports the model registry, i.e. Keras and TensorFlow: seconds a read-only command must not
        spend). Keys a study stored before they existed take their defaults; unknown keys are ignored."""
        spec = cls.__new__(cls)
        stored = _as_stored(data)  # what the keys it lacks meant when it was stored
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(spec, f.name, stored.get(f.name, None if default is dataclasses.MISSING else default))
        return spec

    @classmethod
    def from_study(cls, data: dict[str, Any], source: str) -> StudySpec:
        """The spec a study stored, validated (a worker about to run its trials); keys it stored before they
        existed mean what the study did then."""
        return cls.from_dict(_as_stored(data), source)

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
                 "fixed": dict, "search_training": list, "model_options": dict, "objectives": list,
                 "sampler_options": dict, "cost_aware": bool, "lr_peak": float}
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
    def load(cls, path: str | Path | None, overrides: dict[str, Any], base: dict[str, Any] | None = None
             ) -> StudySpec:
        """Reads a YAML spec (optional; else `base`, e.g. an existing study's) and applies CLI overrides (those
        not None)."""
        import yaml

        data: dict[str, Any] = _as_stored(base) if base else {}
        source = "command line"
        if path:
            path = Path(path)
            if path.is_dir():
                raise UsageError(f"study spec {path} is a directory; give the YAML file inside it")
            if not path.exists():
                raise UsageError(f"study spec {path} does not exist")
            if path.stat().st_size > SPEC_MAX_BYTES:
                raise UsageError(f"study spec {path} is {path.stat().st_size:,} bytes; a spec is a short YAML "
                                 f"file (at most {SPEC_MAX_BYTES:,} bytes): check that this is the right file")
            try:
                with path.open("rb") as f:  # bounded: a device such as /dev/zero reports size 0
                    raw = f.read(SPEC_MAX_BYTES + 1)
                if len(raw) > SPEC_MAX_BYTES:
                    raise UsageError(f"study spec {path} holds more than {SPEC_MAX_BYTES:,} bytes; a spec is a short "
                                     "YAML file: check that this is the right file")
                loaded = yaml.safe_load(raw.decode("utf-8")) or {}
            except UnicodeDecodeError as exc:
                raise UsageError(f"study spec {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
                                 ) from None
            except OSError as exc:
                raise UsageError(f"study spec {path} cannot be read ({exc.strerror})") from None
            except yaml.YAMLError as exc:
                raise UsageError(f"study spec {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
            if not isinstance(loaded, dict):
                raise UsageError(f"study spec {path} must be a mapping of keys to values")
            data.update(loaded)
            source = str(path)
        for key, value in overrides.items():
            if value is None:
                continue
            if key in ("fixed", "sampler_options"):  # a flag adds to the file's mapping
                data[key] = {**(data.get(key) or {}), **value}
            else:
                data[key] = value
        return cls.from_dict(data, source)

    # --------------------------------------------------------------------------------------- Optuna pieces
    def make_sampler(self, search_space: dict[str, list[Any]] | None = None, seed_offset: int = 0
                     ) -> optuna.samplers.BaseSampler:
        """The study's sampler; `seed_offset` keeps parallel workers from drawing the same random configurations."""
        import optuna

        seed = (self.seed + seed_offset) % 2**32  # NumPy seeds stop at 2**32 - 1

        options: dict[str, Any] = {}
        if self.sampler == "tpe":
            # multivariate + group: the hyperparameters' joint density, per set of hyperparameters that occur
            # together (conditional spaces; group needs multivariate); constant_liar: parallel workers do not all
            # sample next to the same running trial.
            multivariate = self.sampler_options.get("multivariate", True)
            options = {"constant_liar": True, "multivariate": multivariate, "group": multivariate is True,
                       "n_startup_trials": self.tpe_startup_trials()}
        elif self.sampler in ("cmaes", "qmc"):
            options = {"warn_independent_sampling": False}
        if self.sampler == "qmc":
            seed = self.seed  # QMC numbers its points by trial: one shared seed keeps workers on one sequence
        options.update(self.sampler_options)
        sampler_class = self._sampler_class()
        with warnings.catch_warnings():  # TPE's options are stable in use; Optuna still flags them experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if self.sampler != "grid":
                return sampler_class(seed=seed, **options)
            if search_space is None:
                raise UsageError("the grid sampler needs the search space")
            return sampler_class(search_space, seed=seed, **options)

    def _sampler_class(self) -> type:
        """The Optuna sampler class behind `sampler`, or the cost-aware TPE (search/cost.py) when it weighs cost."""
        import optuna

        if self.weighs_cost():
            from hpsearch.search.cost import CostAwareTPESampler

            return CostAwareTPESampler
        return getattr(optuna.samplers, _SAMPLER_CLASSES[self.sampler])

    def weighs_cost(self) -> bool:
        """Whether the TPE sampler weighs each configuration's cost (`cost_aware`, decided when the study was
        created)."""
        return bool(self.cost_aware) and self.sampler == "tpe" and not self.multi_objective

    @property
    def trial_budget(self) -> int:
        """The trial budget to count against: `trials`, or more than any study runs when the time is the budget."""
        return self.trials if self.trials is not None else UNCAPPED_TRIALS

    def budget_text(self) -> str:
        """The budget as people read it: "20 trials", "20 trials or 600 s", "600 s"."""
        seconds = f"{float(self.timeout):.0f} s" if self.timeout is not None else ""
        if self.trials is None:
            return seconds or "no limit"
        return f"{self.trials} trials" + (f" or {seconds}" if seconds else "")

    def tpe_startup_trials(self) -> int:
        """Random trials before TPE models the results: a tenth of the trial budget, at least 4, at most 10; 10
        when the time is the budget."""
        return max(TPE_STARTUP_MIN, min(TPE_STARTUP_MAX, self.trial_budget // 10))

    def make_pruner(self) -> optuna.pruners.BasePruner:
        import optuna

        if self.multi_objective:
            return optuna.pruners.NopPruner()  # Optuna prunes on one value only

        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=min(MIN_PRUNING_EPOCHS, self.epochs),
                                                  max_resource=self.epochs, reduction_factor=3)
        if self.pruner == "successive-halving":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_PRUNING_EPOCHS, reduction_factor=3)
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=MIN_PRUNING_EPOCHS)
        return optuna.pruners.NopPruner()


def _option_type(parameter: inspect.Parameter) -> str:
    """What a sampler option takes, from its annotation (else its default): "true or false", "an integer", "a
    number", "a name", or "" (a function, a sampler, a mapping...: nothing a stored spec can hold)."""
    annotation = parameter.annotation if isinstance(parameter.annotation, str) else ""
    first = annotation.split("|")[0].strip() if annotation else type(parameter.default).__name__
    return {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a name"}.get(first, "")


def _as_stored(data: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with what its missing keys meant when it was stored (_STORED_BEFORE); a study that weighed
    cost before time-aware weighing existed keeps a constant weight."""
    data = {**_STORED_BEFORE, **data}
    options = data.get("sampler_options") or {}
    if data.get("cost_aware") and isinstance(options, dict) and "time_aware" not in options:
        data["sampler_options"] = {**options, "time_aware": False}
    return data


def _cost_options() -> set[str]:
    """The options the cost-aware TPE sampler adds to TPE's own."""
    from hpsearch.search.cost import CostAwareTPESampler

    return {n for n, p in inspect.signature(CostAwareTPESampler).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


_PROBES = {"true or false": True, "an integer": 1, "a number": 1.0, "a name": "x"}


def _offered_options(sampler_class: type, accepted: dict[str, inspect.Parameter]) -> list[str]:
    """The options worth naming to a user: of a type a spec holds, and not deprecated (Optuna warns as soon as a
    deprecated option is given, so each is given alone once, with its default or a value of its type)."""
    import optuna

    offered = []
    for name, parameter in accepted.items():
        wanted = _option_type(parameter)
        if not wanted:
            continue
        probe = _PROBES[wanted] if parameter.default in (None, inspect.Parameter.empty) else parameter.default
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                sampler_class(**{name: probe})
            except FutureWarning:
                continue
            except Exception:  # the probe's value alone does not suit it: the option stands
                pass
        offered.append(name)
    return offered


def _fits(value: Any, wanted: str, parameter: inspect.Parameter) -> bool:
    if value is None:
        return "None" in str(parameter.annotation) or parameter.default is None
    if wanted == "true or false":
        return isinstance(value, bool)
    if wanted == "a name":
        return isinstance(value, str)
    kinds = (int,) if wanted == "an integer" else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool)


# Metric names whose direction is known: Keras logs them with a `val_` prefix for the validation split.
_MINIMIZED = ("loss", "error", "mae", "mse", "mape", "msle", "crossentropy", "hinge", "divergence", "poisson")
_MAXIMIZED = ("accuracy", "acc", "auc", "precision", "recall", "f1", "fbeta", "iou", "r2", "top_k", "top5")


def metric_direction(metric: str) -> str | None:
    """'maximize' for accuracies, AUC, precision..., 'minimize' for losses and errors, None when unknown."""
    name = metric.lower().removeprefix("val_")
    if any(word in name for word in _MINIMIZED):
        return "minimize"
    if any(word in name for word in _MAXIMIZED):
        return "maximize"
    return None


def check_direction(spec: StudySpec) -> None:
    """A new study's direction must agree with its metric's (stored studies keep what they were created with).

    Raises:
        UsageError: e.g. maximizing a loss.
    """
    natural = metric_direction(spec.metric)
    if natural is not None and natural != spec.direction:
        raise UsageError(f"metric {spec.metric!r} is to be {natural[:-1]}ed, but the direction is "
                         f"{spec.direction}; pass --direction {natural} or leave --direction out")


def check_study_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise UsageError("a study name is required (--study NAME)")
    if len(name) > STUDY_NAME_MAX:
        raise UsageError(f"study name is {len(name)} characters long; keep it to {STUDY_NAME_MAX} or fewer")
    if not _STUDY_NAME.match(name):
        raise UsageError(f"study name {name!r} has characters that are not allowed; use letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit")
