"""The study note optuna-dashboard shows: the best configurations as a Markdown table, refreshed per trial."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from hpsearch.search.spec import StudySpec

logger = logging.getLogger("hpsearch")
TOP = 5


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def note_markdown(study_name: str, spec: StudySpec | None, rows: list[Any], counts: dict[str, int]) -> str:
    lines = [f"## {study_name}: best configurations", ""]
    if spec is not None:
        lines += [f"`{spec.model}` on `{spec.dataset}`"
                  + (f" ({spec.train_size} training images)" if spec.train_size else "")
                  + f", {spec.sampler} sampler, {spec.pruner} pruner, up to {spec.epochs} epochs, "
                  f"budget {spec.budget_text()}.", ""]
    lines += [f"{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
              f"{counts.get('fail', 0)} failed, {counts.get('running', 0)} running.", ""]
    if not rows:
        return "\n".join([*lines, "No completed trial yet."])
    params = list(dict.fromkeys(k for r in rows for k in r.params))
    metric = spec.metric if spec is not None else "value"
    lines.append("| rank | trial | " + " | ".join([metric, "test accuracy", *params]) + " |")
    lines.append("|" + "---|" * (4 + len(params)))
    for rank, r in enumerate(rows, 1):
        test = r.user_attrs.get("test_accuracy")
        cells = [str(rank), str(r.trial), _fmt(r.value), _fmt(test) if test is not None else "-",
                 *(_fmt(r.params.get(p, "")) for p in params)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def refresh_note(study: optuna.Study, spec: StudySpec | None = None) -> None:
    """Rewrites the study note from the database (top 5 by value); a failure is logged, never raised."""
    try:
        from optuna_dashboard import save_note

        from hpsearch.storage._rdb import rdb_engine
        from hpsearch.storage.queries import state_counts, top_trials

        engine = rdb_engine(study)
        if engine is None:
            return
        rows = top_trials(engine, study.study_name, limit=TOP)
        counts = state_counts(engine, study.study_name).get(study.study_name, {})
        save_note(study, note_markdown(study.study_name, spec, rows, counts))
    except Exception as exc:  # the note is a convenience: it must never cost a trial
        logger.warning("study note not refreshed: %s", exc)


def note_callback(spec: StudySpec) -> Any:
    """An Optuna callback refreshing the note after every finished trial."""

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        refresh_note(study, spec)

    return callback
