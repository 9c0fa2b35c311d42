"""How many workers, and how many threads each: the launcher's choice when the user leaves `--workers` on auto.

The total throughput of a machine hardly depends on how its cores are split: on 2 cores, 2 workers x 1 thread
trained the seed CNN at 1.02x the images per second of 1 worker x 2 threads (BENCHMARKS.md, throughput). What
the split changes is *when* results arrive. N trials on W workers run in ceil(N / W) rounds, each as long as one
trial at cores / W threads; a last round that leaves workers without a trial leaves their cores idle. 3 trials on
2 cores take 2 rounds of a 1-thread trial with 2 workers but 3 rounds of a 2-thread trial (each ~1.9x faster)
with one: the single worker ends first, and delivers its first result twice as soon. With many trials the rounds
fill and more workers win: more configurations in flight, the same images per second, and a pruner that compares
more trials at each rung.

So the rule: among 1..min(cores, trials left, memory / worker memory) workers, take the one that finishes the
most trials inside the time budget, then the one with the shortest predicted makespan, then the most workers.
Without a time budget every choice finishes all the trials and the makespan decides; with one, the measured cost
of the study's earlier trials (seconds x their threads' speed-up) says how many fit. A user's `--workers` and
`--threads` always win.

A time budget with a sampler that learns from results (TPE, CMA-ES) adds one rule. Each trial a worker starts
while others run is chosen without their results; when only tens of trials fit in the budget that loss is larger
than the few per cent of throughput that one more worker adds. In the race (BENCHMARKS.md: 12,000 MNIST images,
15 minutes, 2 seeds) 1 worker x 2 threads was ahead of 2 x 1 at every budget. So while the trials that fit are
few (or not measured yet), the rule takes the fewest workers that keep `THROUGHPUT_KEPT` of the best split's
trials: 1 x 2 on 2 cores (91%), 2 x 2 on 4, 4 x 2 on 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# One worker's speed-up from t threads follows Amdahl's law with this parallel share. 2 threads gave 1.96x on the
# seed CNN here (466 vs 476 images/s at 1x2 and 2x1: a share of 0.98); small convolutions scale worse on more
# cores (not measurable on this 2-core machine), so the rule assumes 0.9: 1.8x at 2 threads, 4.7x at 8. A lower
# share only makes it keep cores busy with more workers a little sooner.
PARALLEL_SHARE = 0.9
# Peak RSS of one CNN worker on MNIST (BENCHMARKS.md, memory), and the share of available memory workers may use.
WORKER_MEMORY_GB = 1.2
MEMORY_SHARE = 0.8
# Learning samplers under a time budget: the share of the best split's finished trials that fewer workers may
# give up, and the number of trials in the budget above which parallel results hardly cost the sampler anything.
THROUGHPUT_KEPT = 0.85
FEW_TRIALS = 100
LEARNING_SAMPLERS = ("tpe", "cmaes")


@dataclass(frozen=True)
class Plan:
    """Workers x threads for one launch, and why, in one line a user reads on the terminal."""

    workers: int
    threads: int
    reason: str


def speedup(threads: int) -> float:
    """How much faster one worker trains with `threads` threads than with one."""
    return 1.0 / ((1.0 - PARALLEL_SHARE) + PARALLEL_SHARE / max(1, threads))


def single_thread_cost(durations: list[tuple[float, int]]) -> float | None:
    """Mean seconds of one trial on one thread, from (seconds, threads) of finished trials; None without any."""
    costs = [seconds * speedup(threads) for seconds, threads in durations if seconds > 0]
    return sum(costs) / len(costs) if costs else None


def plan(cores: int, trials_left: int, seconds_left: float | None = None, trial_cost: float | None = None,
         memory_gb: float | None = None, workers: int | None = None, threads: int | None = None,
         learning: bool = False) -> Plan:
    """Chooses workers x threads for `trials_left` trials on `cores` cores.

    Args:
        cores: the cores this process may use.
        trials_left: trials still to run (at least one is assumed).
        seconds_left: what is left of a time budget, None without one.
        trial_cost: mean seconds of one trial on one thread (`single_thread_cost`), None when not measured yet.
        memory_gb: memory available to new processes, None when unknown.
        workers, threads: the user's choice; each one given wins over the rule.
        learning: the sampler learns from finished trials (TPE, CMA-ES): with a time budget and few trials in it,
            fewer workers that keep `THROUGHPUT_KEPT` of the trials.
    """
    cores = max(1, cores)
    trials_left = max(1, trials_left)
    if workers is not None:
        return Plan(workers, threads or max(1, cores // workers), "as asked")
    limit = min(cores, trials_left)
    why_limit = f"{trials_left} trial(s) left" if trials_left < cores else f"{cores} core(s)"
    if memory_gb is not None:
        fits = max(1, int(memory_gb * MEMORY_SHARE / WORKER_MEMORY_GB))
        if fits < limit:
            limit, why_limit = fits, f"memory for {fits} (about {WORKER_MEMORY_GB:g} GB each)"
    if threads is not None and cores // threads < limit:
        limit, why_limit = max(1, cores // threads), f"{cores} core(s) at {threads} thread(s) each"
    best: tuple[tuple[float, ...], int, int, int, float] | None = None
    for w in range(1, limit + 1):
        t = threads or max(1, cores // w)
        finished = trials_left
        if seconds_left is not None and trial_cost:
            finished = min(trials_left, w * int(seconds_left * speedup(t) / trial_cost))
        rounds = math.ceil(finished / w) if finished else 0
        makespan = rounds * (trial_cost or 1.0) / speedup(t)
        key = (-finished, round(makespan, 9), -w)
        if best is None or key < best[0]:
            best = (key, w, t, finished, makespan)
    assert best is not None
    _, w, t, finished, _ = best
    if learning and seconds_left is not None and (not trial_cost or finished < FEW_TRIALS) and w > 1:
        fewer = _fewest_keeping_throughput(cores, w, t, threads, seconds_left, trial_cost, trials_left)
        if fewer is not None:
            return fewer
    timed = seconds_left is not None and bool(trial_cost)
    fit = f"~{finished} trial(s) fit in the {seconds_left:.0f} s left" if timed else ""
    if timed and finished < trials_left and w < limit:
        reason = f"a trial takes ~{trial_cost / speedup(t):.0f} s at {t} thread(s): {fit} this way, the most"
    elif w == cores and not threads:
        reason = f"one per core: {fit}" if timed else f"one per core: {_left(trials_left)} fill every round"
    elif w < limit:
        reason = (f"{trials_left} trial(s) left: {w} worker(s) with {t} thread(s) end sooner than {limit}, which "
                  "leave cores idle in the last round")
    else:
        reason = f"limited by {why_limit}"
    return Plan(w, t, f"auto, {reason}")


def _left(trials_left: int) -> str:
    """"3 trial(s) left", or what a study whose time is its whole budget has left."""
    from hpsearch.search.spec import UNCAPPED_TRIALS

    return f"{trials_left} trial(s) left" if trials_left < UNCAPPED_TRIALS // 2 else "trials without a cap"


def _fewest_keeping_throughput(cores: int, best_w: int, best_t: int, threads: int | None, seconds_left: float,
                               trial_cost: float | None, trials_left: int) -> Plan | None:
    """The fewest workers (under `best_w`) whose trials per second keep `THROUGHPUT_KEPT` of `best_w` x `best_t`."""
    rate = best_w * speedup(best_t)
    for w in range(1, best_w):
        t = threads or max(1, cores // w)
        kept = w * speedup(t) / rate
        if kept >= THROUGHPUT_KEPT:
            fit = (f"~{min(trials_left, w * int(seconds_left * speedup(t) / trial_cost))} trial(s) fit in the "
                   f"{seconds_left:.0f} s left" if trial_cost else "trial cost not measured yet")
            return Plan(w, t, f"auto, a learning sampler on a time budget ({fit}): {w} worker(s) x {t} thread(s) "
                              f"keep {kept:.0%} of the throughput and start each trial from more finished ones")
    return None
