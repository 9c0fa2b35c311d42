"""Warm start: a new study begins with the best configurations of an earlier one.

`--warm-start STUDY[:K]` queues the K best completed configurations of STUDY (same storage) as the new study's
first trials. STUDY may have searched the same builder on other data (digits -> MNIST -> Fashion-MNIST): what
transfers is the configuration. A value the new study cannot take (a hyperparameter it fixes or does not have, a
value outside its range) is left out of that configuration, and the sampler chooses it instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpsearch.errors import UsageError
from hpsearch.search.ranking import sort_key

if TYPE_CHECKING:
    import optuna
    from keras_tuner.engine.hyperparameters import HyperParameter

    from hpsearch.search.spec import StudySpec

DEFAULT_K = 3
MAX_K = 100


def parse(value: str) -> tuple[str, int]:
    """`STUDY` or `STUDY:K` -> (study, K).

    Raises:
        UsageError: K is not a whole number from 1 to MAX_K, or the study name is empty.
    """
    name, sep, count = value.rpartition(":") if ":" in value else (value, "", "")
    if not name:
        raise UsageError(f"--warm-start {value!r}: give a study name, optionally with :K (e.g. digits-cnn:3)")
    if not sep:
        return name, DEFAULT_K
    if not count.isdigit() or not 1 <= int(count) <= MAX_K:
        raise UsageError(f"--warm-start {value!r}: K must be a whole number from 1 to {MAX_K} (e.g. {name}:3)")
    return name, int(count)


def warm_start_params(storage: optuna.storages.BaseStorage, value: str, spec: StudySpec,
                      space: dict[str, HyperParameter] | None) -> list[tuple[int, dict[str, Any]]]:
    """The best configurations of the source study, as (trial number, params the new study can take).

    Raises:
        UsageError: the source study does not exist, is the study itself, has no completed trial, or none of
            its configurations has a value the new study can take.
    """
    import optuna

    from hpsearch.search.preflight import check_value

    source, k = parse(value)
    if source == spec.study:
        raise UsageError(f"--warm-start {source}: a study cannot warm-start from itself; name an earlier study")
    try:
        study = optuna.load_study(study_name=source, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise UsageError(f"--warm-start: study {source!r} does not exist in this storage; existing studies: "
                         f"{', '.join(names) or '(none)'}") from None
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.values]
    if not complete:
        raise UsageError(f"--warm-start: study {source!r} has no completed trial to start from")
    # Ranked by the first objective (the metric), also in a study of several objectives.
    best = sorted(complete, key=lambda t: (sort_key(t.values[0], study.directions[0]), t.number))[:k]
    fixed = spec.fixed_values()
    _say_other_training(study, source, fixed)
    out: list[tuple[int, dict[str, Any]]] = []
    for trial in best:
        params: dict[str, Any] = {}
        for name, value in trial.params.items():
            if name in fixed or (space is not None and name not in space):
                continue
            try:
                params[name] = check_value(name, value, space) if space is not None else value
            except UsageError:
                continue  # outside this study's range: the sampler picks it
        if params:
            out.append((trial.number, params))
    if not out:
        raise UsageError(f"--warm-start: no configuration of study {source!r} fits {spec.model}'s search space "
                         "(different hyperparameters, or all of them fixed here)")
    return out


def _say_other_training(source: optuna.Study, name: str, fixed: dict[str, Any]) -> None:
    """Logs that the source study trained with another learning-rate peak: a rate that suited one training may
    not suit the other (three times a rate tuned without the cycle can diverge)."""
    from hpsearch.search.spec import SPEC_ATTR, StudySpec

    stored = source.user_attrs.get(SPEC_ATTR)
    if not isinstance(stored, dict) or "lr_peak" not in fixed:
        return
    theirs = StudySpec.from_stored(stored).fixed_values().get("lr_peak")
    if theirs is not None and float(theirs) != float(fixed["lr_peak"]):
        import logging

        logging.getLogger("hpsearch").warning(
            "--warm-start %s: that study trained with lr_peak %g, this one with %g; its learning rates may not "
            "carry over (--set lr_peak=%g trains as it did)", name, float(theirs), float(fixed["lr_peak"]),
            float(theirs))
