"""Every value a study will use is checked before the study exists: one line, exit 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import keras_tuner
import pytest

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.search.preflight import check_value
from hpsearch.search.spec import StudySpec, metric_direction


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    db = tmp_path / "hp.db"
    code = main(["run", "--storage", f"sqlite:///{db}", "--study", "s", "--dataset", "mnist-sample",
                 "--trials", "2", "--epochs", "1", "--workers", "1", *args])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(("flags", "expected"), [
    (["--model", "cnn", "--set", "units=abc"], "units must be an integer from 64 to 512 in steps of 64"),
    (["--model", "cnn", "--set", "optimizer=adamw"], "optimizer must be one of 'adam', 'sgd', 'rmsprop'"),
    (["--model", "cnn", "--set", "learning_rate=5"], "learning_rate must be a number from 0.0001 to 0.01"),
    (["--model", "cnn", "--set", "batch_size=0", "--set", "epochs=0"], "batch_size must be an integer from 1"),
    (["--model", "cnn", "--set", "epochs=0"], "epochs must be an integer from 1"),
    (["--model", "cnn", "--set", "lr_peak=0.5"], "lr_peak must be a number from 1 to 100"),
    (["--model", "cnn", "--set", "filters_1=100"], "filters_1 must be an integer from 32 to 256 in steps of 32"),
    (["--model", "resnet4", "--set", "filters=1000"], "filters must be an integer from"),
    (["--model", "resnet4", "--set", "nosuch=1"], "resnet4 has no hyperparameter 'nosuch'; its hyperparameters are:"),
    (["--model", "cnn", "--metric", "accuracy_top5"], "metric 'accuracy_top5' is not among what cnn logs"),
    (["--model", "cnn", "--metric", "val_loss", "--direction", "maximize"],
     "metric 'val_loss' is to be minimized, but the direction is maximize"),
    (["--model", "cnn", "--metric", "val_frobnication"], "cannot tell whether metric 'val_frobnication' should be"),
    (["--model", "cnn", "--train-size", "100000"], "--train-size 100000 is larger than the 4000 training images"),
    (["--model", "cnn", "--train-size", "20"], "leave fewer than one image per class"),
    (["--model", "cnn", "--heartbeat-interval", "0"], "--heartbeat-interval must be at least 1 second"),
    (["--model", "cnn", "--grace-period", "0"], "--grace-period must be at least 1 second"),
    (["--model", "cnn", "--grace-period", "30", "--heartbeat-interval", "60"],
     "--grace-period (30s) must be longer than --heartbeat-interval (60s)"),
    (["--model", "cnn", "--workers", "0"], "--workers must be at least 1"),
])
def test_bad_values_stop_before_the_study_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  flags: list[str], expected: str) -> None:
    code, err = run(tmp_path, capsys, *flags)
    assert code == 2, err
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "hp.db").exists() or _no_study(tmp_path / "hp.db")


def _no_study(db: Path) -> bool:
    import optuna

    return not optuna.get_all_study_summaries(f"sqlite:///{db}", include_best_trial=False)


def test_fixed_keys_of_a_spec_are_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("study: s\nmodel: cnn\nfixed:\n  unitz: 128\n")
    code, err = run(tmp_path, capsys, "--spec", str(spec))
    assert code == 2 and "cnn has no hyperparameter 'unitz'" in err and "units" in err


def test_spec_that_is_not_utf8_or_too_large(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_bytes(b"study: s\nmodel: \xff\xfecnn\n")
    code, err = run(tmp_path, capsys, "--spec", str(spec))
    assert code == 2 and "is not UTF-8 text" in err
    spec.write_text("study: s\nmodel: cnn\n#" + "x" * 1_100_000 + "\n")
    code, err = run(tmp_path, capsys, "--spec", str(spec))
    assert code == 2 and "a spec is a short YAML file" in err
    code, err = run(tmp_path, capsys, "--spec", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_too_many_fixed_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("study: s\nmodel: cnn\nfixed:\n" + "".join(f"  p{i}: 1\n" for i in range(300)))
    code, err = run(tmp_path, capsys, "--spec", str(spec))
    assert code == 2 and "300 fixed hyperparameters; a study fixes at most 256" in err


def test_values_are_cast_where_nothing_is_lost() -> None:
    hp = keras_tuner.HyperParameters()
    hp.Float("rate", 0.0, 10.0)
    hp.Int("units", 32, 128, step=32)
    hp.Choice("width", [0.5, 1.0, 2.0])
    hp.Boolean("skip")
    space = {p.name: p for p in hp.space}
    assert check_value("rate", 5, space) == 5.0 and isinstance(check_value("rate", 5, space), float)
    assert check_value("units", 64.0, space) == 64 and isinstance(check_value("units", 64.0, space), int)
    assert check_value("width", 1, space) == 1.0
    with pytest.raises(UsageError, match="must be an integer"):
        check_value("units", 64.5, space)
    with pytest.raises(UsageError, match="must be true or false"):
        check_value("skip", 1, space)
    with pytest.raises(UsageError, match="must be one of 0.5, 1.0, 2.0"):
        check_value("width", 3, space)


def test_the_direction_follows_the_metric() -> None:
    assert StudySpec(study="s", model="cnn", metric="val_loss").direction == "minimize"
    assert StudySpec(study="s", model="cnn").direction == "maximize"
    assert metric_direction("val_mean_absolute_error") == "minimize"
    assert metric_direction("val_auc") == "maximize"
    assert metric_direction("val_custom") is None


def test_a_valid_study_is_created_with_cast_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    code = main(["create", "--storage", url, "--study", "c", "--model", "cnn", "--dataset", "mnist-sample",
                 "--set", "units=128.0", "--set", "learning_rate=0.001", "--metric", "val_loss"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "created study 'c'" in out
    study = optuna.load_study(study_name="c", storage=url)
    spec = study.user_attrs["hpsearch_spec"]
    assert spec["fixed"] == {"units": 128, "learning_rate": 0.001} and isinstance(spec["fixed"]["units"], int)
    assert spec["direction"] == "minimize" and study.direction.name == "MINIMIZE"
    assert not study.trials
    code = main(["create", "--storage", url, "--study", "c", "--model", "cnn"])
    assert code == 2 and "exists already" in capsys.readouterr().err


def test_numbers_in_exponent_form_are_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    code = main(["create", "--storage", url, "--study", "e", "--model", "cnn", "--dataset", "mnist-sample",
                 "--set", "learning_rate=1e-3"])
    assert code == 0, capsys.readouterr().err


def test_a_study_named_alone_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys)  # `run --study s` on a storage without it: not "model must be given"
    assert code == 2 and "study 's' is not in sqlite:///" in err and "to create it give --model" in err


def test_an_old_study_with_a_contradicting_direction_still_loads() -> None:
    """Specs stored by earlier versions are not re-judged: only a new study's direction must fit its metric."""
    spec = StudySpec.from_dict({"study": "old", "model": "cnn", "metric": "val_loss", "direction": "maximize"})
    assert spec.direction == "maximize"


def test_an_unusable_artifact_directory_stops_before_the_study(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("not a directory")
    code, err = run(tmp_path, capsys, "--model", "resnet4", "--artifacts", str(tmp_path / "afile" / "art"))
    assert code == 2 and "afile is a file" in err
    assert not (tmp_path / "hp.db").exists()


def test_workers_never_outnumber_the_trials_and_extra_cores_cost_a_warning() -> None:
    from rich.console import Console

    from hpsearch.search.launcher import plan_workers
    from hpsearch.search.worker import available_cores

    console = Console(record=True, width=300)
    assert plan_workers(64, None, 2, console).workers == 2
    text = console.export_text()
    assert "64 workers asked for, 2 trial(s) left: starting 2" in text
    cores = available_cores()
    console = Console(record=True, width=300)
    chosen = plan_workers(cores + 2, None, 50, console)
    assert (chosen.workers, chosen.threads) == (cores + 2, 1)
    assert f"warning: {cores + 2} workers on {cores} core(s)" in console.export_text()
    console = Console(record=True, width=300)
    assert plan_workers(1, None, 50, console).workers == 1 and not console.export_text()


def test_auto_workers_say_what_they_chose_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from hpsearch.search import launcher
    from hpsearch.search.launcher import plan_workers

    monkeypatch.setattr(launcher, "available_memory_gb", lambda: None)  # the rule alone, whatever memory is free
    from hpsearch.search.resources import plan
    from hpsearch.search.worker import available_cores

    console = Console(record=True, width=300)
    chosen = plan_workers(None, None, 3, console)
    expected = plan(available_cores(), 3)
    assert (chosen.workers, chosen.threads) == (expected.workers, expected.threads)
    assert f"workers: {chosen.workers} x {chosen.threads} thread(s) (auto, " in console.export_text()


def test_two_launchers_on_one_study_number_their_workers_apart() -> None:
    from hpsearch.search.launcher import first_worker_number

    assert first_worker_number(True) == 0
    bases = {first_worker_number(False) for _ in range(20)}
    assert len(bases) > 15 and min(bases) >= 1000  # never 0, 1, ...: the new study's own workers keep those


def test_a_data_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mnist.gz").write_bytes(b"x")
    code, err = run(tmp_path, capsys, "--model", "cnn", "--dataset", "mnist", "--data-dir", str(tmp_path / "mnist.gz"))
    assert code == 2 and "is a file; pass the directory that holds the dataset's files" in err


def test_the_dashboard_does_not_create_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'typo.db'}", "--port", "1"])
    assert code == 2 and "no study database at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


SCHEDULED_BUILDER = '''
import keras


def build(hp):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(hp.Int("units", 8, 16, default=8), activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    rate = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=10, decay_rate=0.9)
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
'''


@pytest.mark.parametrize("flags", [["--set", "lr_peak=3"], ["--search-training", "lr_peak"]])
def test_a_cycle_a_builder_cannot_take_stops_before_the_study_exists(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    builder = tmp_path / "scheduled.py"
    builder.write_text(SCHEDULED_BUILDER)
    code, err = run(tmp_path, capsys, "--model", f"{builder}:build", *flags)
    assert code == 2, err
    assert "leave lr_peak out (the builder's schedule is then kept) or compile with a number" in err
    assert "Traceback" not in err
    assert not (tmp_path / "hp.db").exists() or _no_study(tmp_path / "hp.db")


def test_a_builder_with_its_own_schedule_trains_on_it_under_the_default_peak(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    builder = tmp_path / "scheduled.py"
    builder.write_text(SCHEDULED_BUILDER)
    code, err = run(tmp_path, capsys, "--model", f"{builder}:build")  # no lr_peak asked for: a new study's default
    assert code == 0, err
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'hp.db'}").trials
    assert len(trials) == 2 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials), trials


OWN_SHIFT_BUILDER = '''
import keras


def build(hp):
    shift = hp.Float("shift", 0.0, 0.4, default=0.3)  # the builder's own meaning: an offset added to the pixels
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1.0, offset=shift),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''


def test_a_builders_own_hyperparameter_named_like_a_training_one_stops_at_the_door(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Else every trial holds the builder's 'shift' at the study's training shift (0) and never searches it.
    builder = tmp_path / "own_shift.py"
    builder.write_text(OWN_SHIFT_BUILDER)
    code, err = run(tmp_path, capsys, "--model", f"{builder}:build")
    assert code == 2, err
    assert "declares its own hyperparameter 'shift' (Float 0.0..0.4, default 0.3)" in err
    assert "Rename it in the builder" in err and "--search-training shift" in err
    assert "Traceback" not in err
    assert not (tmp_path / "hp.db").exists() or _no_study(tmp_path / "hp.db")


def test_a_builders_own_training_name_is_taken_when_the_study_searches_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    builder = tmp_path / "own_shift.py"
    builder.write_text(OWN_SHIFT_BUILDER)
    code, err = run(tmp_path, capsys, "--model", f"{builder}:build", "--search-training", "shift")
    assert code == 0, err
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'hp.db'}").trials
    assert len(trials) == 2 and all(0.0 <= t.params["shift"] <= 0.4 for t in trials)  # the builder's range


BRANCH_SHIFT_BUILDER = '''
import keras


def build(hp):
    offset = 0.0
    if hp.Choice("input", ["plain", "offset"]) == "offset":  # a branch the defaults do not take
        offset = hp.Float("shift", 0.0, 0.4, default=0.3)  # the builder's own meaning, as above
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1.0, offset=offset),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''


def test_a_training_name_declared_only_on_a_branch_the_defaults_skip_fails_its_trial_with_the_reason(
        tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from hpsearch.search.launcher import create_or_resume
    from hpsearch.search.objective import Objective
    from hpsearch.search.preflight import check_spec
    from hpsearch.search.worker import open_study
    from hpsearch.storage import open_storage

    builder = tmp_path / "branch_shift.py"
    builder.write_text(BRANCH_SHIFT_BUILDER)
    spec = StudySpec(study="s", model=f"{builder}:build", dataset="mnist-sample", train_size=500, trials=2,
                     epochs=1, pruner="none")
    checked = check_spec(spec)  # the door builds the defaults ("plain"): it cannot see the other branch's 'shift'
    storage = open_storage(f"sqlite:///{tmp_path / 'hp.db'}")
    create_or_resume(spec, storage, checked=checked)
    study, _ = open_study("s", storage)
    study.enqueue_trial({"input": "offset"})
    study.enqueue_trial({"input": "plain"})
    study.optimize(Objective(spec), n_trials=2, catch=(Exception,))
    first, second = sorted(study.get_trials(), key=lambda t: t.number)
    assert first.state == TrialState.FAIL  # before any training: its 'shift' would have been held at 0
    assert "declares its own hyperparameter 'shift' (Float 0.0..0.4, default 0.3)" in first.user_attrs["fail_reason"]
    assert "Rename it in the builder" in first.user_attrs["fail_reason"]
    assert "epochs_run" not in first.user_attrs
    assert second.state == TrialState.COMPLETE and second.params == {"input": "plain"}  # the study goes on


def test_the_keras_tuner_engine_refuses_a_training_name_declared_on_a_branch_the_defaults_skip(tmp_path: Path) -> None:
    from hpsearch.datasets import load_dataset
    from hpsearch.search.keras_tuner_engine import make_tuner

    builder = tmp_path / "branch_shift.py"
    builder.write_text(BRANCH_SHIFT_BUILDER)
    spec = StudySpec(study="s", model=f"{builder}:build", dataset="mnist-sample", train_size=500, trials=2, epochs=1)
    tuner = make_tuner("random", spec, load_dataset("mnist-sample", train_size=500), tmp_path)  # defaults: "plain"
    hp = tuner.oracle.get_space()  # a trial's hyperparameters, as KerasTuner hands them to the builder
    assert hp.values["shift"] == 0.0  # fixed at the training value: the builder's hp.Float would return it
    hp.values["input"] = "offset"
    with pytest.raises(UsageError, match=r"declares its own hyperparameter 'shift' \(Float 0.0..0.4, default 0.3\)"):
        tuner.hypermodel.build(hp)
    hp.values["input"] = "plain"
    assert tuner.hypermodel.build(hp).count_params() == 28 * 28 * 10 + 10  # the other branch builds as before


LATE_SHIFT_BUILDER = '''
import keras

KT_BUILDS = []


def build(hp):
    offset = 0.0
    if "shift" in hp.values:  # the door's and the KerasTuner engine's hp hold the training values first
        KT_BUILDS.append(1)
        if len(KT_BUILDS) > 2:  # after the door's dry run and the tuner's first look at the space: every trial
            offset = hp.Float("shift", 0.0, 0.4, default=0.3)
    units = hp.Int("units", 8, 128, step=8)  # something to search: KerasTuner draws a new configuration each trial
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1.0, offset=offset),
                              keras.layers.Flatten(), keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''


def test_keras_tuner_trials_refused_for_a_training_name_stop_the_search_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    builder = tmp_path / "late_shift.py"
    builder.write_text(LATE_SHIFT_BUILDER)
    code = main(["tune", "--engine", "keras-tuner", "--tuner", "random", "--study", "kt", "--model", f"{builder}:build",
                 "--dataset", "mnist-sample", "--train-size", "500", "--trials", "5", "--epochs", "1",
                 "--directory", str(tmp_path / "kt")])
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert "the search stopped after failed trials" in err  # KerasTuner's own error keeps the reason in its trials
    assert "declares its own hyperparameter 'shift' (Float 0.0..0.4, default 0.3)" in err


def test_training_names_declared_as_training_declares_them_pass_in_a_conditional_scope_too() -> None:
    from hpsearch.models import training_config
    from hpsearch.search.preflight import check_training_names

    hp = keras_tuner.HyperParameters()
    hp.Choice("family", ["a", "b"])
    with hp.conditional_scope("family", ["a"]):
        training_config(hp)
    check_training_names({p.name: p for p in hp.space}, "mine")  # no error: the same declarations
    hp = keras_tuner.HyperParameters()
    hp.Int("patience", 1, 20)
    with pytest.raises(UsageError, match=r"mine declares its own hyperparameter 'patience' \(Int 1..20"):
        check_training_names({p.name: p for p in hp.space}, "mine")
    check_training_names({p.name: p for p in hp.space}, "mine", searched=["patience"])
    hp.Choice("batch_size", [0, 16])
    with pytest.raises(UsageError, match="must be an integer from 1 to 1e[+]06 [(]not 0[)]"):
        check_training_names({p.name: p for p in hp.space}, "mine", searched=["patience", "batch_size"])
