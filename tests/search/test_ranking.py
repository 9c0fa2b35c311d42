"""One comparison for "better": direction from the study, first objective in a study of several."""

from __future__ import annotations

import optuna
import pytest
from optuna.study import StudyDirection

from hpsearch.search.ranking import best_of, best_trial, better, maximizes, sort_key


@pytest.mark.parametrize("direction", ["maximize", StudyDirection.MAXIMIZE])
def test_maximizing(direction: object) -> None:
    assert maximizes(direction)
    assert better(0.9, 0.8, direction) and not better(0.8, 0.9, direction) and not better(0.8, 0.8, direction)
    assert best_of([0.7, 0.9, 0.8], direction) == 0.9
    assert sorted([0.7, 0.9, 0.8], key=lambda v: sort_key(v, direction)) == [0.9, 0.8, 0.7]


@pytest.mark.parametrize("direction", ["minimize", StudyDirection.MINIMIZE])
def test_minimizing(direction: object) -> None:
    assert not maximizes(direction)
    assert better(0.1, 0.2, direction) and not better(0.2, 0.1, direction)
    assert best_of([0.3, 0.1, 0.2], direction) == 0.1
    assert sorted([0.3, 0.1, 0.2], key=lambda v: sort_key(v, direction)) == [0.1, 0.2, 0.3]


def test_best_trial_of_several_objectives_is_the_best_first_objective_lowest_number_on_ties() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for values in ([0.8, 100.0], [0.9, 500.0], [0.9, 50.0], [0.7, 10.0]):
        trial = study.ask()
        study.tell(trial, values)
    assert best_trial(study).number == 1
    single = optuna.create_study(direction="minimize")
    for value in (0.3, 0.1, 0.2):
        single.tell(single.ask(), value)
    assert best_trial(single).number == 1
    with pytest.raises(ValueError):
        best_trial(optuna.create_study(directions=["maximize", "minimize"]))
