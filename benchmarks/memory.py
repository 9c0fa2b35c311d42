"""Memory of one worker over consecutive small trials, with and without process recycling.

`hpsearch run --workers 1` runs --trials trials (resnet4 on a small MNIST subset, the same seeded sequence of
configurations both times) once with `--recycle 0` (one process for all trials) and once with `--recycle K`
(the worker replaces itself with a fresh interpreter every K trials; the PID stays, so the same process is
sampled). The worker's resident set size is read from /proc twice a second; each trial's figure is the peak
while it ran.

Run: .venv/bin/python benchmarks/memory.py --data-dir ../shared/datasets/mnist [--trials 30] [--recycle 10]
     [--out benchmarks/out/memory.png]
Prints Markdown; writes the plot.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(recycle: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import optuna

    url = f"sqlite:///{tmp / f'memory-{recycle}.db'}"
    cmd = [str(Path(sys.executable).parent / "hpsearch"), "run", "--study", "memory", "--model", "resnet4",
           "--dataset", "mnist", "--data-dir", str(Path(args.data_dir).resolve()),  # the run's cwd is a temp dir
           "--train-size", str(args.train_size), "--epochs",
           str(args.epochs), "--pruner", "none", "--trials", str(args.trials), "--workers", "1", "--recycle",
           str(recycle), "--storage", url, "--quiet"]
    samples: list[tuple[float, float]] = []
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for child in _children(proc.pid):  # the worker (its PID survives recycling: exec)
                rss = _rss_mib(child)
                if rss is not None:
                    samples.append((time.time(), rss))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"hpsearch run failed: {err[-2000:]}")
    trials = sorted(optuna.load_study(study_name="memory", storage=url).get_trials(), key=lambda t: t.number)
    per_trial = []
    for t in trials:
        start, end = t.datetime_start.timestamp(), t.datetime_complete.timestamp()
        inside = [rss for ts, rss in samples if start <= ts <= end + 0.5]
        per_trial.append(max(inside) if inside else float("nan"))
    return {"recycle": recycle, "per_trial": per_trial, "states": [t.state.name for t in trials],
            "peak": max(rss for _, rss in samples), "samples": samples}


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for r in runs:
        label = "no recycling" if r["recycle"] == 0 else f"recycled every {r['recycle']} trials"
        ax.plot(range(1, len(r["per_trial"]) + 1), r["per_trial"], marker="o", markersize=3, label=label)
    ax.set_xlabel("trial")
    ax.set_ylabel("worker RSS, peak during the trial (MiB)")
    ax.set_title("One hpsearch worker over consecutive trials (resnet4, MNIST subset)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--recycle", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "memory.png"))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp:
        for recycle in (0, args.recycle):
            runs.append(run(recycle, args, Path(tmp)))
            print(f"  recycle {recycle}: peak {runs[-1]['peak']:.0f} MiB", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(runs, out)
    n = args.trials
    thirds = [(0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n)]
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}\n")
    print(f"{n} trials of resnet4 ({args.epochs} epochs on {args.train_size} MNIST images, 10% validation), one "
          "worker; peak RSS of the worker process in MiB.\n")
    header = " | ".join(f"trials {a + 1}-{b}" for a, b in thirds)
    print(f"| worker | {header} | growth first to last third | states |")
    print("|---|" + "---|" * (len(thirds) + 2))
    for r in runs:
        peaks = [max(r["per_trial"][a:b]) for a, b in thirds]
        label = "one process (`--recycle 0`)" if r["recycle"] == 0 else f"recycled (`--recycle {r['recycle']}`)"
        states = ", ".join(f"{s} {r['states'].count(s)}" for s in sorted(set(r["states"])))
        print(f"| {label} | " + " | ".join(f"{p:.0f}" for p in peaks) + f" | {peaks[-1] - peaks[0]:+.0f} | {states} |")
    print(f"\nPlot: {out}")


if __name__ == "__main__":
    main()
