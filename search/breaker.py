"""The circuit breaker: a study whose last trials all failed the same way stops, with the reason.

Failed trials do not use the budget (a failure is not a result), so a cause that fails every trial would keep a
study running for ever. After `MAX_CONSECUTIVE_FAILURES` trials in a row fail with the same reason (numbers in the
message aside), the breaker records the reason on the study; every worker stops before its next trial and
`hpsearch run` reports it with exit code 1. The study stays resumable: `hpsearch run` clears the mark once the
cause is fixed. Failures that belong to a configuration rather than to the set-up (a learning rate that makes the
loss diverge) do not count: another configuration may well train.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger("hpsearch")

MAX_CONSECUTIVE_FAILURES = 3  # KerasTuner's max_consecutive_failed_trials default
MAX_CONSECUTIVE_ANY = 10  # failures in a row whatever their reasons (messages that differ each time, divergence)
STOP_ATTR = "hpsearch_stopped"
SINCE_ATTR = "hpsearch_breaker_since"  # trials numbered below this ran before the last resume: not counted
FAIL_REASON_ATTR = "fail_reason"
# Reasons that depend on the sampled values, not on the set-up.
CONFIGURATION_FAILURES = ("training diverged",)


def signature(reason: str) -> str:
    """The reason with numbers blanked, so 'NaN in epoch 2' and 'NaN in epoch 3' count as one cause."""
    return re.sub(r"\d+(\.\d+)?", "#", reason).strip()


def stop_reason(study: optuna.Study) -> dict[str, Any] | None:
    """The breaker's record on the study ({"reason", "trials", "at"}), or None when the study may run."""
    value = study.user_attrs.get(STOP_ATTR)
    return value if isinstance(value, dict) and value.get("reason") else None


def clear(study: optuna.Study) -> None:
    """Lets a stopped study run again (the user says the cause is fixed): failures before now no longer count."""
    attrs = study.user_attrs
    if attrs.get(STOP_ATTR) is not None:
        study.set_user_attr(STOP_ATTR, None)
    trials = study.get_trials(deepcopy=False)
    since = max((t.number for t in trials), default=-1) + 1
    if trials and attrs.get(SINCE_ATTR) != since:
        study.set_user_attr(SINCE_ATTR, since)


def check(study: optuna.Study, limit: int = MAX_CONSECUTIVE_FAILURES, any_limit: int = MAX_CONSECUTIVE_ANY
          ) -> dict[str, Any] | None:
    """Trips the breaker when the `limit` most recently finished trials all failed for the same reason, or the
    `any_limit` most recent ones all failed whatever the reasons.

    Returns:
        The record written on the study, or None when the breaker did not trip.
    """
    from optuna.trial import TrialState

    since = int(study.user_attrs.get(SINCE_ATTR) or 0)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    # Trials failed without a reason were interrupted or their worker died: they say nothing about the set-up.
    judged = [t for t in finished if t.number >= since
              and (t.state != TrialState.FAIL or t.user_attrs.get(FAIL_REASON_ATTR))]
    ordered = sorted(judged, key=lambda t: (t.datetime_complete or datetime.min, t.number))
    streak = 0
    for t in reversed(ordered):
        if t.state != TrialState.FAIL:
            break
        streak += 1
    if streak >= any_limit:
        recent = ordered[-any_limit:]
        return _trip(study, recent, f"the last {any_limit} trials failed (the last with: "
                                    f"{recent[-1].user_attrs[FAIL_REASON_ATTR]})")
    recent = ordered[-limit:]
    if streak < limit:
        return None
    reasons = [t.user_attrs[FAIL_REASON_ATTR] for t in recent]
    if any(str(r).startswith(CONFIGURATION_FAILURES) for r in reasons):
        return None  # a configuration that diverged: another may well train
    if len({signature(str(r)) for r in reasons}) != 1:
        return None
    trials = ", ".join(str(t.number) for t in recent)
    return _trip(study, recent, f"trials {trials} failed in a row with the same error: {reasons[-1]}")


def _trip(study: optuna.Study, recent: list[Any], reason: str) -> dict[str, Any]:
    record = {"reason": reason, "trials": [t.number for t in recent], "at": time.time()}
    study.set_user_attr(STOP_ATTR, record)
    logger.error("study %s stopped: %s", study.study_name, reason)
    return record


def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """An Optuna `study.optimize` callback: checks the breaker after every failed trial."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        check(study)


def describe(record: dict[str, Any], study_name: str) -> str:
    """One line for the terminal: what failed, and how to go on."""
    return (f"study {study_name!r} stopped: {record['reason']}; fix the cause, then run the same `hpsearch run` "
            "command again to resume")
