"""The study's trial budget: global over every worker and machine, and exact."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from hpsearch.errors import HpsearchError

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
