"""Which runs of the search race's grid exist, in every results directory, by their done markers.

Run:  .venv/bin/python benchmarks/race_grid.py [--methods hpsearch-peak5,kt-hyperband,...]
Prints a Markdown table: one row per race setting (data set, images, epochs, budget) and directory under
benchmarks/results/ (the working tree: committed runs, and any not committed yet), one column per method, the seeds
done in each cell; runs of methods not shown are named on stderr. A run recorded as plain `hpsearch` (the defaults
of its day) is counted under the training those defaults gave: the learning-rate peak its done marker records
(search_race.py writes it since 2026-11-29), else the defaults of the day it started (DEFAULTS).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The methods the grid names: hpsearch's default on a time budget, by the training it gave (today's: one
# learning-rate cycle a trial peaking at 5 times the sampled rate; the defaults before it), and the four other tools.
GRID_METHODS = "hpsearch-peak5,hpsearch-1cycle,hpsearch-cost,kt-hyperband,kt-random,kt-bayesian,optuna-tpe-hb"
# `hpsearch run`'s defaults on a time budget: since when (the commit that made them the default, UTC), the
# learning-rate peak they trained, and the name search_race.py gives that training as an extra. Before the first:
# hpsearch-nocost (TPE blind to cost, the published training).
DEFAULTS = (("2026-11-26 16:59:09", 1.0, "hpsearch-cost"),  # cost-aware sampling
            ("2026-11-27 20:01:23", 3.0, "hpsearch-1cycle"),  # one learning-rate cycle a trial
            ("2026-11-29 06:19:57", 5.0, "hpsearch-peak5"))  # the cycle's peak at 5
TIME = "%Y-%m-%d %H:%M:%S"
DONE = re.compile(r"^done-(?P<method>.+)-(?P<seed>\d+)$")
SETTING = re.compile(r"^(?P<data>.+)-(?P<size>\d+)-e(?P<epochs>\d+)-b(?P<budget>\d+)$")


def trained_as(method: str, marker: dict[str, Any]) -> str:
    """The method a run counts as.

    Args:
        method: the method its done marker is named after.
        marker: the done marker's record (`finished`, `budget`, since 2026-11-29 `lr_peak` for hpsearch methods).

    Returns:
        `method` itself, but for plain `hpsearch`: the name of the training its defaults gave, by the peak recorded
        or, failing that, by the defaults of the day it started (its end less its budget); "hpsearch (training
        unknown)" for a marker without its end.
    """
    if method != "hpsearch":
        return method
    if "lr_peak" in marker:
        peak = float(marker["lr_peak"])
        cycles = {p: name for _, p, name in DEFAULTS if p > 1}  # a peak of 1 does not tell cost-aware from not
        return cycles.get(peak, f"hpsearch (lr_peak {peak:g})")
    if "finished" not in marker:
        return "hpsearch (training unknown)"
    started = datetime.strptime(marker["finished"], TIME) - timedelta(seconds=float(marker.get("budget", 0)))
    named = "hpsearch-nocost"
    for since, _, name in DEFAULTS:
        if started >= datetime.strptime(since, TIME):
            named = name
    return named


def seeds_done(setting: Path) -> dict[str, list[int]]:
    """The seeds done in one setting directory, by the method each run counts as (`trained_as`)."""
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

    def key(path: Path) -> tuple[str, int, int, int, str]:
        match = SETTING.match(path.name)
        return (match["data"], int(match["size"]), int(match["epochs"]), int(match["budget"]), path.parent.name)

    return sorted(found, key=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=GRID_METHODS)
    methods = parser.parse_args().methods.split(",")
    print("| setting (a run is cut at the shorter budgets too) | directory | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    hidden: set[str] = set()
    for setting in settings():
        done = seeds_done(setting)
        hidden.update(m for m in done if m not in methods)
        if not any(m in done for m in methods):
            continue
        cells = [", ".join(map(str, done[m])) if m in done else "-" for m in methods]
        print(f"| {describe(setting.name)} | {setting.parent.name}/ | " + " | ".join(cells) + " |")
    if hidden:
        print(f"not shown (name them with --methods): {', '.join(sorted(hidden))}", file=sys.stderr)


if __name__ == "__main__":
    main()
