"""Does a search's validation rank its best trials the way the test set does? From the committed race events.

Run:  .venv/bin/python benchmarks/selection_noise.py [--top 5] [--out benchmarks/results/selection_noise.json]

Reads every `events-*.jsonl` of the search races (benchmarks/results/race/ and cycle-race/), keeps each run's
completed trials that ended within its budget and have a test accuracy, and takes every pair among a run's `--top`
best by validation. Pairs are grouped by their validation gap in standard errors of the better one's accuracy
(binomial, on the run's validation images: 10% of its training images, as the races split them; `hpsearch best`
lists the trials within one). For each group: how often the trial that validated higher also tests higher (ties on
test counted apart), and by how much the two differ on the 10,000 test images. Pairs of one run share trials, so
they are not independent draws. No training: it reads what the races measured.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpsearch.search.ranking import standard_error  # noqa: E402 - the one `hpsearch best` uses; imports no Keras

RESULTS = ROOT / "benchmarks" / "results"
SETTING = re.compile(r"^(?P<data>.+)-(?P<size>\d+)-e\d+-b(?P<budget>\d+)$")
EVENTS = re.compile(r"^events-(?P<method>.+)-(?P<seed>\d+)\.jsonl$")
# Gap groups, in standard errors: (upper bound, label); a gap of 0 (a tie on validation) is left out.
GROUPS = ((0.5, "up to 0.5"), (1.0, "0.5 to 1"), (2.0, "1 to 2"), (math.inf, "above 2"))


def runs(top: int) -> list[dict]:
    """Each run's `top` best completed trials with a test accuracy, by validation, and its validation size."""
    found = []
    for events in sorted(RESULTS.glob("*race/*/events-*.jsonl")):
        setting, name = SETTING.match(events.parent.name), EVENTS.match(events.name)
        if not setting or not name or not (events.parent / f"done-{name['method']}-{name['seed']}").exists():
            continue
        budget = float(setting["budget"])
        rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
        done = [r for r in rows if r["state"] == "COMPLETE" and r["t"] <= budget and r.get("test") is not None
                and r["value"] is not None]
        done.sort(key=lambda r: -r["value"])
        found.append({"run": f"{events.parent.parent.name}/{events.parent.name}/{name['method']}-{name['seed']}",
                      "images": math.ceil(0.1 * int(setting["size"])), "trials": done[:top]})
    return found


def pairs_by_gap(found: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """(validation gap in images, test of the higher minus test of the lower) per gap group."""
    groups: dict[str, list[tuple[float, float]]] = {label: [] for _, label in GROUPS}
    for run in found:
        trials, images = run["trials"], run["images"]
        for i, higher in enumerate(trials):
            for lower in trials[i + 1:]:
                gap = higher["value"] - lower["value"]
                if gap <= 0:
                    continue
                in_errors = gap / standard_error(higher["value"], images)
                label = next(label for bound, label in GROUPS if in_errors <= bound)
                groups[label].append((gap * images, higher["test"] - lower["test"]))
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=5, help="a run's best trials to pair (default 5)")
    parser.add_argument("--out", default=str(RESULTS / "selection_noise.json"))
    args = parser.parse_args()
    found = runs(args.top)
    groups = pairs_by_gap(found)
    table = []
    print(f"{len(found)} runs, their {args.top} best trials by validation paired\n")
    print("| validation gap (standard errors) | pairs | gap in images, median | higher validation tests higher "
          "| test ties | test difference, mean (higher minus lower) | test difference, mean size |")
    print("|---|---|---|---|---|---|---|")
    for _, label in GROUPS:
        got = groups[label]
        if not got:
            continue
        diffs = [d for _, d in got]
        row = {"gap_standard_errors": label, "pairs": len(got),
               "gap_images_median": statistics.median(g for g, _ in got),
               "higher_tests_higher": sum(d > 0 for d in diffs) / len(got),
               "test_ties": sum(d == 0 for d in diffs),
               "test_difference_mean": statistics.mean(diffs),
               "test_difference_mean_size": statistics.mean(abs(d) for d in diffs)}
        table.append(row)
        print(f"| {label} | {row['pairs']} | {row['gap_images_median']:.0f} | {row['higher_tests_higher']:.0%} "
              f"| {row['test_ties']} | {100 * row['test_difference_mean']:+.2f} points "
              f"| {100 * row['test_difference_mean_size']:.2f} points |")
    Path(args.out).write_text(json.dumps({"top": args.top, "runs": [r["run"] for r in found], "groups": table},
                                         indent=1) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
