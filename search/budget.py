"""The study's trial budget: global over every worker and machine, and exact."""

from __future__ import annotations

from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from hpsearch.errors import HpsearchError, UsageError

if TYPE_CHECKING:
    from hpsearch.search.spec import StudySpec

# Trials that hold a place in the budget: done, or started, or queued (enqueued defaults, retries).
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class BudgetReached(HpsearchError):
    """The study already has its trial budget: this trial is surplus and does not run."""


def count_trials(study: optuna.Study, states: tuple[TrialState, ...], below_number: int | None = None) -> int:
    """Trials of the study in `states` (numbered below `below_number`), counted by the database when it can."""
    from hpsearch.storage._rdb import rdb_engine

    engine = rdb_engine(study)
    if engine is None:
        return sum(1 for t in study.get_trials(deepcopy=False, states=states)
                   if below_number is None or t.number < below_number)
    from sqlalchemy import bindparam, text

    sql = "SELECT COUNT(*) FROM trials WHERE study_id = :sid AND state IN :states"
    from hpsearch.storage.optuna_compat import study_id

    params = {"sid": study_id(study), "states": [s.name for s in states]}
    if below_number is not None:
        sql += " AND number < :below"
        params["below"] = below_number
    with engine.connect() as connection:
        return int(connection.execute(text(sql).bindparams(bindparam("states", expanding=True)), params).scalar())


def remaining_budget(study: optuna.Study, budget: int) -> int:
    """Trials still to start: the budget less those done, running or queued."""
    return max(0, budget - count_trials(study, BUDGET_STATES))


def check_budget(study: optuna.Study, trial: optuna.trial.Trial, budget: int) -> None:
    """The global, exact budget: a trial runs only if fewer than `budget` trials created before it hold a place.

    Trial numbers are given out by the storage in creation order, so every worker agrees on who is surplus.
    """
    ahead = count_trials(study, BUDGET_STATES, below_number=trial.number)
    if ahead >= budget:
        raise BudgetReached(f"the study already has its {budget} trials; trial {trial.number} was not run")


def check_room(storage: optuna.storages.BaseStorage, spec: StudySpec, queue: list[dict[str, Any]],
               asked: str) -> None:
    """Stops configurations queued (`--enqueue-defaults`, `--warm-start`) beyond the study's trial budget before
    anything is queued: past the budget a worker would fail them unrun. A configuration the study already holds is
    not queued again (Optuna's `skip_if_exists`) and takes no room.

    Raises:
        UsageError: the new configurations outnumber the trials left; says which trial budget makes room.
    """
    if spec.trials is None or not queue:
        return
    try:
        trials = storage.get_all_trials(storage.get_study_id_from_name(spec.study), deepcopy=False)
    except KeyError:  # a new study
        trials = []
    held = [t.system_attrs.get("fixed_params", t.params) for t in trials]
    new = 0
    for params in queue:
        if not any(_same_params(params, other) for other in held):
            new += 1
            held.append(params)
    taken = sum(t.state in BUDGET_STATES for t in trials)
    room = max(0, spec.trials - taken)
    if new > room:
        raise UsageError(f"{asked} would queue {new} new configuration(s), but study {spec.study!r} has room for "
                         f"{room} more trial(s) (budget {spec.trials}; {taken} done, running or queued); pass "
                         f"--trials {taken + new} or more (trials={taken + new} to hpsearch.run())")


def _same_params(new: dict[str, Any], held: dict[str, Any]) -> bool:
    """Whether Optuna would skip queueing `new` beside a trial of `held` params: the same names, and each value of
    the held one's type and equal (numbers within NumPy's default relative tolerance)."""
    if new.keys() != held.keys():
        return False
    for name, value in new.items():
        other = held[name]
        if not isinstance(value, type(other)):
            return False
        if isinstance(value, Real):
            if not np.isclose(float(value), float(other), atol=0.0, equal_nan=True):
                return False
        elif value != other:
            return False
    return True
