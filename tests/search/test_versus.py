"""The end of `hpsearch run`: did the search beat the configurations queued by hand, and if not, why not."""

from __future__ import annotations

from hpsearch.search.versus import compare
from hpsearch.storage.queries import TrialRow

DEFAULTS = {"enqueued": "published defaults"}


def row(number: int, state: str, value: float | None, attrs: dict | None = None) -> TrialRow:
    return TrialRow(trial=number, trial_id=number + 1, state=state, value=value, duration=1.0, params={},
                    user_attrs=attrs or {})


def test_nothing_enqueued_nothing_to_say() -> None:
    assert compare([row(0, "COMPLETE", 0.9), row(1, "PRUNED", 0.5)], maximize=True) is None


def test_a_searched_trial_that_beats_the_defaults_is_named_with_its_gain() -> None:
    versus = compare([row(0, "COMPLETE", 0.955, DEFAULTS), row(1, "COMPLETE", 0.97), row(2, "PRUNED", 0.8)],
                     maximize=True)
    assert versus is not None and versus.beaten
    text = versus.message("val_accuracy")
    assert "beat the published defaults (val_accuracy 0.9550)" in text and "trial 1" in text and "+0.0150" in text
    assert versus.as_dict()["searched_best"] == {"trial": 1, "value": 0.97}


def test_when_nothing_beats_the_defaults_the_message_says_why() -> None:
    rows = [row(0, "COMPLETE", 0.955, DEFAULTS), row(1, "PRUNED", 0.7), row(2, "PRUNED", 0.8),
            row(3, "COMPLETE", 0.95), row(4, "FAIL", None), row(5, "RUNNING", None)]
    versus = compare(rows, maximize=True)
    assert versus is not None and not versus.beaten
    assert (versus.searched, versus.searched_pruned, versus.searched_failed) == (4, 2, 1)
    text = versus.message("val_accuracy")
    assert "no searched trial beat the published defaults" in text
    assert "4 searched trial(s) (2 pruned before their last epoch, 1 failed), best 0.9500 (trial 3)" in text
    assert "--trials" in text and "--epochs" in text


def test_a_tie_is_not_a_win_and_minimizing_studies_compare_downwards() -> None:
    assert not compare([row(0, "COMPLETE", 0.95, DEFAULTS), row(1, "COMPLETE", 0.95)], maximize=True).beaten
    versus = compare([row(0, "COMPLETE", 0.30, DEFAULTS), row(1, "COMPLETE", 0.25), row(2, "COMPLETE", 0.4)],
                     maximize=False)
    assert versus.beaten and versus.searched_best.trial == 1


def test_warm_start_and_an_enqueued_trial_that_did_not_complete() -> None:
    warm = {"enqueued": "warm start: digits trial 3"}
    versus = compare([row(0, "COMPLETE", 0.9, warm), row(1, "COMPLETE", 0.8)], maximize=True)
    assert "warm-started configurations" in versus.message("val_accuracy")
    pruned = compare([row(0, "PRUNED", 0.5, DEFAULTS), row(1, "COMPLETE", 0.8)], maximize=True)
    assert "did not complete" in pruned.message("val_accuracy")
    assert compare([row(0, "COMPLETE", 0.9, DEFAULTS)], maximize=True).message("m").startswith(
        "no searched trial ran")
