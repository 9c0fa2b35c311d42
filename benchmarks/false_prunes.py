"""False prunes: train a sample of a study's pruned configurations to the end and count those that would have
ranked in the top quarter of its completed trials.

A pruned trial stopped at an early rung; run to the study's full epochs with the same seed (the study's seed + the
trial's number, as the trial itself ran), its final value says whether the pruner threw away a good
configuration. The completed trials' values set the bar (their top quarter, and their best).

Run:  .venv/bin/python benchmarks/false_prunes.py --storage sqlite:///PATH/race.db --study race-0 [--sample 8]
Prints a Markdown table and writes DIR/false_prunes.json (DIR: --out, default benchmarks/out).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--sample", type=int, default=8, help="pruned trials to run to the end (random sample)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = parser.parse_args()

    import optuna
    from optuna.trial import TrialState

    from hpsearch.search.results import load_trial, study_data, train_configuration

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    complete = sorted((t.value for t in study.get_trials(states=(TrialState.COMPLETE,))), reverse=True)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    if len(complete) < 4 or not pruned:
        raise SystemExit(f"{args.study}: {len(complete)} complete and {len(pruned)} pruned trials; need >= 4 and >= 1")
    top_quarter = complete[max(0, len(complete) // 4 - 1)]
    sample = random.Random(args.seed).sample(pruned, min(args.sample, len(pruned)))
    stored = load_trial(args.study, args.storage)
    data = study_data(stored.spec)
    rows: list[dict[str, Any]] = []
    for t in sorted(sample, key=lambda t: t.number):
        stored = load_trial(args.study, args.storage, trial_number=t.number)
        start = time.perf_counter()
        _, result = train_configuration(stored, data, epochs=None)
        history = result.history[stored.spec.metric]
        final = max(history)
        rows.append({"trial": t.number, "pruned_at": max(t.intermediate_values), "value_at_prune":
                     t.intermediate_values[max(t.intermediate_values)], "full_value": final,
                     "curve": [round(v, 4) for v in history], "top_quarter": final >= top_quarter,
                     "beats_best": final > complete[0], "seconds": round(time.perf_counter() - start, 1),
                     "params": t.params})
        print(f"trial {t.number}: pruned at epoch {rows[-1]['pruned_at']} with {rows[-1]['value_at_prune']:.4f}; "
              f"run to the end {final:.4f} (top quarter from {top_quarter:.4f}, best {complete[0]:.4f})",
              flush=True)
    false = sum(r["top_quarter"] for r in rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "false_prunes.json").write_text(json.dumps({"study": args.study, "complete": complete,
                                                        "top_quarter": top_quarter, "rows": rows}, indent=1))
    print(f"\n{args.study}: {len(complete)} complete, {len(pruned)} pruned; top quarter of the completed trials "
          f"from {top_quarter:.4f}, best {complete[0]:.4f}, median {statistics.median(complete):.4f}.\n")
    print("| trial | pruned at epoch | value then | run to the end | in the top quarter | above the best |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['trial']} | {r['pruned_at']} | {r['value_at_prune']:.4f} | {r['full_value']:.4f} | "
              f"{'yes' if r['top_quarter'] else 'no'} | {'yes' if r['beats_best'] else 'no'} |")
    print(f"\nFalse prunes: {false} of {len(rows)} sampled pruned configurations would have ranked in the top "
          f"quarter ({false / len(rows):.0%}).")


if __name__ == "__main__":
    main()
