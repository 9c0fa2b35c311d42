"""Did the search find something? The best searched trial against the configurations queued by hand.

A study started with `--enqueue-defaults` or `--warm-start` runs known configurations first; a newcomer wants to
know whether the search then beat them, and if not, why not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpsearch.search.ranking import sort_key
from hpsearch.storage.queries import TrialRow


@dataclass(frozen=True)
class Versus:
    enqueued_best: TrialRow | None  # the best completed enqueued trial
    searched_best: TrialRow | None  # the best completed trial the sampler chose
    enqueued: int
    searched: int  # trials the sampler chose that ended (complete, pruned or failed)
    searched_pruned: int
    searched_failed: int
    maximize: bool

    @property
    def beaten(self) -> bool:
        if self.searched_best is None or self.searched_best.value is None:
            return False
        if self.enqueued_best is None or self.enqueued_best.value is None:
            return True
        a, b = self.searched_best.value, self.enqueued_best.value
        return a > b if self.maximize else a < b

    def as_dict(self) -> dict[str, Any]:
        return {"enqueued": self.enqueued, "searched": self.searched, "searched_pruned": self.searched_pruned,
                "searched_failed": self.searched_failed, "beaten": self.beaten,
                "enqueued_best": None if self.enqueued_best is None else
                {"trial": self.enqueued_best.trial, "value": self.enqueued_best.value},
                "searched_best": None if self.searched_best is None else
                {"trial": self.searched_best.trial, "value": self.searched_best.value}}

    def message(self, metric: str) -> str:
        """One or two lines for the end of `hpsearch run`."""
        what = _label(self.enqueued_best)
        if self.enqueued_best is None:
            return (f"the {self.enqueued} enqueued configuration(s) did not complete (pruned or failed); "
                    "`hpsearch trials` shows why")
        base = f"{metric} {self.enqueued_best.value:.4f}"
        if self.beaten:
            assert self.searched_best is not None and self.searched_best.value is not None
            gain = abs(self.searched_best.value - self.enqueued_best.value)
            return (f"the search beat the {what} ({base}): trial {self.searched_best.trial} reached "
                    f"{self.searched_best.value:.4f} ({gain:+.4f})")
        if self.searched == 0:
            return f"no searched trial ran after the {what} ({base}): raise --trials to give the search room"
        best = "" if self.searched_best is None or self.searched_best.value is None else \
            f", best {self.searched_best.value:.4f} (trial {self.searched_best.trial})"
        why = []
        if self.searched_pruned:
            why.append(f"{self.searched_pruned} pruned before their last epoch")
        if self.searched_failed:
            why.append(f"{self.searched_failed} failed")
        return (f"no searched trial beat the {what} ({base}): {self.searched} searched trial(s)"
                + (f" ({', '.join(why)})" if why else "") + f"{best}. The {what} are a strong start; more "
                "trials (--trials) or epochs (--epochs) give the search room to pass them")


def _label(row: TrialRow | None) -> str:
    source = str((row.user_attrs if row is not None else {}).get("enqueued", ""))
    if source.startswith("warm start"):
        return "warm-started configurations"
    return "published defaults" if source == "published defaults" else "enqueued configurations"


def compare(rows: Sequence[TrialRow], maximize: bool) -> Versus | None:
    """None when the study enqueued nothing; else the comparison over ended trials."""
    ended = [r for r in rows if r.state in ("COMPLETE", "PRUNED", "FAIL")]
    enqueued = [r for r in ended if "enqueued" in r.user_attrs]
    if not enqueued:
        return None
    searched = [r for r in ended if "enqueued" not in r.user_attrs]

    def best(group: list[TrialRow]) -> TrialRow | None:
        done = [r for r in group if r.state == "COMPLETE" and r.value is not None]
        if not done:
            return None
        return min(done, key=lambda r: (sort_key(r.value, "maximize" if maximize else "minimize"), r.trial))

    return Versus(enqueued_best=best(enqueued), searched_best=best(searched), enqueued=len(enqueued),
                  searched=len(searched), searched_pruned=sum(r.state == "PRUNED" for r in searched),
                  searched_failed=sum(r.state == "FAIL" for r in searched), maximize=maximize)
