"""Real searches: real Keras training on real digits, real worker processes, a real SQLite database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.search.launcher import create_or_resume, default_params
from hpsearch.search.objective import Objective
from hpsearch.search.spec import MIN_PRUNING_EPOCHS, StudySpec
from hpsearch.storage import open_storage
from tests.conftest import record_reliability, run_cli

optuna.logging.set_verbosity(optuna.logging.WARNING)

SMALL = {"model": "resnet4", "dataset": "mnist-sample", "train_size": 1000, "batch_size": 64}


def states(study: optuna.Study) -> dict[str, int]:
    return {s.name: sum(t.state == s for t in study.get_trials(deepcopy=False)) for s in TrialState}


@pytest.mark.integration
def test_two_workers_run_exactly_the_budget_and_resume_runs_only_what_is_missing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    common = ["--storage", url, "--study", "r4", "--model", "resnet4", "--dataset", "mnist-sample", "--train-size",
              "1500", "--epochs", "2", "--workers", "2", "--format", "json"]
    result = run_cli("run", *common, "--trials", "5", "--enqueue-defaults", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 5
    study = optuna.load_study(study_name="r4", storage=url)
    trials = study.get_trials()
    assert states(study)["RUNNING"] == 0 and states(study)["WAITING"] == 0
    # The published configuration was enqueued and ran first.
    first = min(trials, key=lambda t: t.number)
    assert first.params == {"filters": 5, "kernel_size": 3, "activation": "relu", "optimizer": "adam",
                            "learning_rate": 0.001}
    assert first.user_attrs["enqueued"] == "published defaults"
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both processes took trials
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert {"test_accuracy", "val_accuracy", "parameters", "epochs_run", "train_seconds",
                    "images_per_second"} <= set(t.user_attrs)
            assert t.value == pytest.approx(max(t.intermediate_values.values()))
            assert 0.0 <= t.user_attrs["test_accuracy"] <= 1.0
            assert (tmp_path / "hp-artifacts" / t.user_attrs["artifact:curves"]).stat().st_size > 0
    best = study.best_trial
    # A random draw that ran to the end can sit near chance; the best (the defaults at worst) has learned.
    assert best.user_attrs["test_accuracy"] > 0.3
    for kind in ("model", "confusion-matrix", "classification-report"):
        assert (tmp_path / "hp-artifacts" / best.user_attrs[f"artifact:{kind}"]).is_file()

    # Raising the budget to 6 runs exactly one more trial; the same budget again runs none.
    result = run_cli("run", *common, "--trials", "6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sum(states(study)[s] for s in ("COMPLETE", "PRUNED")) == 6
    result = run_cli("run", *common, "--trials", "6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(study.get_trials()) == 6


@pytest.mark.integration
def test_joining_with_another_model_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    storage = open_storage(url)
    create_or_resume(StudySpec(study="s", trials=1, epochs=1, **SMALL), storage)
    result = run_cli("run", "--storage", url, "--study", "s", "--model", "cnn", "--trials", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "different set-up" in result.stderr and "model" in result.stderr


def _run_in_process(spec: StudySpec, url: str, enqueue: list[dict], n: int) -> optuna.Study:
    storage = open_storage(url)
    study = create_or_resume(spec, storage)
    for params in enqueue:
        study.enqueue_trial(params)
    from hpsearch.search.worker import open_study

    study, _ = open_study(spec.study, storage)
    study.optimize(Objective(spec), n_trials=n, catch=(Exception,))
    return study


@pytest.mark.integration
def test_nan_and_builder_errors_fail_alone(tmp_path: Path) -> None:
    spec = StudySpec(study="nan", trials=3, epochs=2, pruner="none", **SMALL)
    defaults = default_params(spec)
    diverging = {**defaults, "optimizer": "sgd", "learning_rate": 1e6}  # far outside the space: NaN loss
    broken = {**defaults, "kernel_size": 0}  # Keras refuses a 0x0 kernel
    study = _run_in_process(spec, f"sqlite:///{tmp_path / 'hp.db'}", [diverging, broken, defaults], 3)
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "NaN" in trials[0].user_attrs["fail_reason"]
    assert trials[1].user_attrs["fail_reason"].startswith("builder error")
    assert trials[2].value > 0.5


@pytest.mark.integration
def test_pruner_prunes_a_hopeless_trial(tmp_path: Path) -> None:
    spec = StudySpec(study="prune", trials=4, epochs=4, pruner="median", **SMALL)
    good = default_params(spec)
    hopeless = {**good, "filters": 2, "optimizer": "sgd", "learning_rate": 1e-4, "activation": "tanh"}
    study = _run_in_process(spec, f"sqlite:///{tmp_path / 'hp.db'}", [good, good, good, hopeless], 4)
    last = max(study.get_trials(), key=lambda t: t.number)
    assert last.state == TrialState.PRUNED
    # Decided at the first epoch the pruner may look at (epoch 1: validation measures the trained weights).
    assert max(last.intermediate_values) == MIN_PRUNING_EPOCHS == 1
    assert states(study)["COMPLETE"] == 3
    # a pruned model is thrown away: the test set is evaluated only for completed trials
    assert "test_seconds" not in last.user_attrs and "test_accuracy" not in last.user_attrs
    assert all(t.user_attrs["test_seconds"] > 0 for t in study.get_trials() if t.state == TrialState.COMPLETE)


@pytest.mark.parametrize(("better_trials", "evaluated"), [(4, True), (5, False)])
@pytest.mark.integration
def test_test_set_is_evaluated_for_trials_that_rank_in_the_top_five(tmp_path: Path, better_trials: int,
                                                                     evaluated: bool) -> None:
    spec = StudySpec(study="top", trials=10, epochs=1, pruner="none", **SMALL)
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    study = create_or_resume(spec, open_storage(url))
    for _ in range(better_trials):  # results no one-epoch ResNet-4 reaches
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=1.0))
    study = _run_in_process(spec, url, [default_params(spec)], 1)
    trial = max(study.get_trials(), key=lambda t: t.number)
    assert trial.state == TrialState.COMPLETE and 0.0 < trial.value < 1.0
    assert ("test_accuracy" in trial.user_attrs) is evaluated
    assert ("test_seconds" in trial.user_attrs) is evaluated


@pytest.mark.integration
def test_spec_file_with_unknown_key_is_a_usage_error(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("study: x\nmodel: cnn\nepoch: 3\n")
    result = run_cli("run", "--spec", str(spec), "--storage", f"sqlite:///{tmp_path / 'hp.db'}", cwd=tmp_path)
    assert result.returncode == 2 and "unknown key(s) epoch" in result.stderr


def test_shipped_study_specs_are_valid() -> None:
    from tests.conftest import ROOT

    specs = sorted((ROOT / "studies").glob("*.yaml"))
    assert any(p.name == "cnn-mnist.yaml" for p in specs)
    for path in specs:
        spec = StudySpec.load(path, {})
        assert spec.trials >= 1
    published = StudySpec.load(ROOT / "studies" / "cnn-mnist.yaml", {})
    assert published.model == "cnn" and published.dataset == "mnist"
    assert published.fixed_values()["lr_peak"] == 1.0  # the published training, not a new study's cycle


@pytest.mark.integration
def test_killed_worker_trial_is_retried_and_the_study_completes(tmp_path: Path, storage_url: str) -> None:
    url = storage_url
    n = 4
    # A small fixed configuration with patience beyond its epochs: every trial trains all 12 epochs, each short.
    spec = StudySpec(study="kill", trials=n, epochs=12, pruner="none",
                     fixed={"filters": 8, "kernel_size": 3, "patience": 12}, **SMALL)
    create_or_resume(spec, open_storage(url))
    env = {**os.environ, "HPSEARCH_STORAGE": url, "HPSEARCH_THREADS": "1"}
    args = [sys.executable, "-m", "hpsearch", "worker", "--study", "kill", "--heartbeat-interval", "1",
            "--grace-period", "4"]
    victim = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    survivor = None
    try:
        study = optuna.load_study(study_name="kill", storage=url)
        deadline = time.time() + 300
        killed_trial = None
        while time.time() < deadline and killed_trial is None:
            # Frozen first, then checked: the trial is certainly mid-training when the kill lands.
            victim.send_signal(signal.SIGSTOP)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.user_attrs.get("worker", "").endswith(f":{victim.pid}") and t.user_attrs.get("epoch", 0) >= 2:
                    killed_trial = t
            if killed_trial is None:
                victim.send_signal(signal.SIGCONT)
                time.sleep(0.3)
        assert killed_trial is not None, "the first worker never reached epoch 2"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        still = study._storage.get_trial(killed_trial._trial_id).state
        assert still == TrialState.RUNNING, "the kill landed after the trial ended"
        survivor = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert survivor.returncode == 0, survivor.stderr[-2000:]
    finally:
        if victim.poll() is None:
            victim.kill()
    trials = study.get_trials()
    by_state = states(study)
    assert by_state["RUNNING"] == 0 and by_state["WAITING"] == 0
    assert by_state["COMPLETE"] == n
    killed = next(t for t in trials if t.number == killed_trial.number)
    assert killed.state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params and retries[0].state == TrialState.COMPLETE
    assert len({t.number for t in trials}) == len(trials)
    for t in trials:  # every completed trial intact
        if t.state == TrialState.COMPLETE:
            assert t.value == max(t.intermediate_values.values()) and "test_accuracy" in t.user_attrs
    record_reliability(f"kill -9 of a worker mid-trial ({url.split(':')[0]})", faults=1, expected_complete=n,
                       found_complete=by_state["COMPLETE"], running=by_state["RUNNING"], failed=by_state["FAIL"],
                       retried=len(retries), errors=0)


@pytest.mark.integration
def test_keras_tuner_engine_runs_the_same_space(tmp_path: Path) -> None:
    result = run_cli("tune", "--engine", "keras-tuner", "--tuner", "random", "--study", "kt", "--model", "resnet4",
                     "--dataset", "mnist-sample", "--train-size", "800", "--trials", "2", "--epochs", "1",
                     # A learning optimizer, so "above chance" tests the trained model, not the draw's luck
                     # (1 epoch on 720 images with a random learning rate can end at exactly 0.1).
                     "--set", "optimizer=adam", "--set", "learning_rate=0.005",
                     "--directory", str(tmp_path / "kt"), "--format", "json", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert out["trials"] == 2 and 0.1 < out["test_accuracy"] <= 1.0
    assert set(out["params"]) >= {"filters", "kernel_size", "activation", "optimizer", "learning_rate"}
    assert out["params"]["epochs"] == 1


@pytest.mark.integration
def test_worker_recycles_its_process_and_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    spec = StudySpec(study="recycle", trials=3, epochs=1, pruner="none", **SMALL)
    create_or_resume(spec, open_storage(url))
    result = run_cli("worker", "--study", "recycle", "--recycle", "1", env={"HPSEARCH_STORAGE": url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("recycling the worker process") == 3  # a fresh process after every trial
    assert "worker finished: 3 trial(s)" in result.stdout
    study = optuna.load_study(study_name="recycle", storage=url)
    assert states(study)["COMPLETE"] == 3


def test_unwritable_artifact_store_keeps_the_result(tmp_path: Path) -> None:
    from hpsearch.storage.artifacts import open_artifact_store

    store_dir = tmp_path / "artifacts"
    store = open_artifact_store(store_dir)
    store_dir.rmdir()
    store_dir.write_text("a file where the artifact directory was")  # every write into it now fails
    spec = StudySpec(study="art", trials=1, epochs=1, pruner="none", **SMALL)
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    create_or_resume(spec, open_storage(url))
    from hpsearch.search.worker import open_study

    study, _ = open_study("art", open_storage(url))
    study.enqueue_trial(default_params(spec))  # the published configuration, not a random draw
    study.optimize(Objective(spec, artifact_store=store), n_trials=1, catch=(Exception,))
    trial = study.get_trials()[0]
    assert trial.state == TrialState.COMPLETE and trial.value > 0.3
    assert "could not be stored" in trial.user_attrs["artifact_error"]
    assert "test_accuracy" in trial.user_attrs
    record_reliability("unwritable artifact directory during a trial", faults=1, expected_complete=1,
                       found_complete=int(trial.state == TrialState.COMPLETE),
                       message=trial.user_attrs["artifact_error"][:120], errors=0)


def test_a_worker_leaves_its_start_up_heap_out_of_later_collections(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the worker's start made is frozen (a trial's full collections skip it); its garbage is freed first."""
    import gc
    import weakref

    from hpsearch.search.worker import freeze_start_up_heap

    class Node:
        pass

    before = gc.get_freeze_count()
    try:
        monkeypatch.setenv("HPSEARCH_GC_FREEZE", "0")
        freeze_start_up_heap()
        assert gc.get_freeze_count() == before  # turned off: the heap as it was
        monkeypatch.delenv("HPSEARCH_GC_FREEZE")
        cycle = Node()
        cycle.self = cycle  # garbage only a collection frees
        gone = weakref.ref(cycle)
        del cycle
        freeze_start_up_heap()
        assert gc.get_freeze_count() > before
        assert gone() is None  # collected, not frozen
    finally:
        gc.unfreeze()
