"""Which runs of the search race's grid exist, in every results directory, by their committed done markers.

Run:  .venv/bin/python benchmarks/race_grid.py [--methods hpsearch-peak5,kt-hyperband,...]
Prints a Markdown table: one row per race setting (data set, images, epochs, budget) and results directory under
benchmarks/results/, one column per method, the seeds done in each cell. A run recorded as plain `hpsearch` (the
defaults of the day) is counted under the training those defaults gave it: the learning-rate peak its done marker
records (search_race.py writes it since 2026-11-29), else the defaults of the time it finished (DEFAULTS_SINCE).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The methods the grid names: hpsearch's default on a time budget, by the training it gave (today's: one
# learning-rate cycle a trial peaking at 5 times the sampled rate; the defaults before it), and the four other tools.
GRID_METHODS = "hpsearch-peak5,hpsearch-1cycle,hpsearch-cost,kt-hyperband,kt-random,kt-bayesian,optuna-tpe-hb"
# When `hpsearch run`'s defaults on a time budget changed (the commits that changed them, UTC), each named as
# search_race.py names that training as an extra. Before the first: `hpsearch-nocost`.
DEFAULTS_SINCE = (("2026-11-26 16:59:09", "hpsearch-cost"),  # cost-aware sampling
                  ("2026-11-27 20:01:23", "hpsearch-1cycle"),  # one learning-rate cycle a trial, peak 3
                  ("2026-11-29 06:19:57", "hpsearch-peak5"))  # the peak at 5
PEAKS = {5.0: "hpsearch-peak5", 3.0: "hpsearch-1cycle"}
DONE = re.compile(r"^done-(?P<method>.+)-(?P<seed>\d+)$")
SETTING = re.compile(r"^(?P<data>.+)-(?P<size>\d+)-e(?P<epochs>\d+)-b(?P<budget>\d+)$")


def trained_as(method: str, marker: dict) -> str:
    """The method a done marker's run counts as: `hpsearch` by the training its defaults gave, others as named."""
    if method != "hpsearch":
        return method
    if "lr_peak" in marker:
        peak = float(marker["lr_peak"])
        return PEAKS.get(peak, f"hpsearch (lr_peak {peak:g})")
    named = "hpsearch-nocost"
    for since, name in DEFAULTS_SINCE:
        if marker.get("finished", "") >= since:
            named = name
    return named


def seeds_done(setting: Path) -> dict[str, list[int]]:
    done: dict[str, list[int]] = {}
    for marker in setting.glob("done-*"):
        match = DONE.match(marker.name)
        if not match:
            continue
        try:
            recorded = json.loads(marker.read_text() or "{}")
        except json.JSONDecodeError:
            recorded = {}
        done.setdefault(trained_as(match["method"], recorded), []).append(int(match["seed"]))
    return {method: sorted(seeds) for method, seeds in done.items()}


def describe(name: str) -> str:
    """`mnist-12000-e3-b900` -> `mnist, 12,000 images, 3 epochs, 15 min`."""
    match = SETTING.match(name)
    if not match:
        return name
    minutes = int(match["budget"]) / 60
    return f"{match['data']}, {int(match['size']):,} images, {match['epochs']} epochs, {minutes:g} min"


def settings() -> list[Path]:
    """Every race setting directory under RESULTS, ordered by data set, images, epochs and budget, then directory."""
    found = [p for p in RESULTS.glob("*/*") if p.is_dir() and SETTING.match(p.name)]

    def key(path: Path) -> tuple:
        match = SETTING.match(path.name)
        return (match["data"], int(match["size"]), int(match["epochs"]), int(match["budget"]), path.parent.name)

    return sorted(found, key=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=GRID_METHODS)
    methods = parser.parse_args().methods.split(",")
    print("| setting (a run is cut at the shorter budgets too) | directory | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for setting in settings():
        done = seeds_done(setting)
        if not any(m in done for m in methods):
            continue
        cells = [", ".join(map(str, done[m])) if m in done else "-" for m in methods]
        print(f"| {describe(setting.name)} | {setting.parent.name}/ | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
