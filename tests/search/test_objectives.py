"""Several objectives: validated at the door, measured on real training, a Pareto front in `best` and `trials`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest

import hpsearch
from hpsearch.errors import UsageError
from hpsearch.search.spec import StudySpec
from tests.conftest import run_cli


@pytest.mark.parametrize(("objectives", "extra", "message"), [
    (["val_accuracy"], {}, "given twice (the first objective is --metric)"),
    (["parameters", "parameters"], {}, "'parameters' is given twice"),
    (["mystery"], {}, "mystery:maximize or mystery:minimize"),
    (["val_loss:down"], {}, "must be maximize or minimize"),
    (["parameters"], {"pruner": "hyperband"}, "cannot prune a study with several objectives"),
    (["parameters"], {"sampler": "cmaes"}, "single objective"),
    (["a:maximize", "b:maximize", "c:maximize", "d:maximize"], {}, "at most 4"),
])
def test_bad_objectives_stop_at_the_door(objectives: list[str], extra: dict, message: str) -> None:
    with pytest.raises(UsageError) as info:
        StudySpec(study="s", model="cnn", objectives=objectives, **extra)
    assert message in str(info.value)


def test_objective_directions_come_from_names_or_are_given() -> None:
    spec = StudySpec(study="s", model="cnn", objectives=["parameters", "latency_ms", "val_loss"])
    assert spec.objective_names() == ["val_accuracy", "parameters", "latency_ms", "val_loss"]
    assert spec.objective_directions() == ["maximize", "minimize", "minimize", "minimize"]
    assert StudySpec(study="s", model="cnn", objectives=["custom_score:maximize"]).objective_directions() == [
        "maximize", "maximize"]
    assert isinstance(spec.make_pruner(), optuna.pruners.NopPruner)  # Optuna prunes one value only


def _builder():
    import keras

    def build(hp):
        return keras.Sequential([keras.layers.Flatten(),
                                 keras.layers.Dense(hp.Int("units", 4, 128, sampling="log"), activation="relu"),
                                 keras.layers.Dense(10, activation="softmax")])

    return build


def dominated(a: list[float], b: list[float], maximize: list[bool]) -> bool:
    """True when b is at least as good as a everywhere and better somewhere."""
    better = [(y >= x) if up else (y <= x) for x, y, up in zip(a, b, maximize, strict=True)]
    return all(better) and a != b


@pytest.mark.integration
def test_accuracy_against_size_keeps_a_pareto_front(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = np.rint(bunch.images * (255 / 16)).astype(np.uint8), bunch.target.astype(np.int64)
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    # On disk, so that the CLI (another process) can export the best trial afterwards.
    np.savez(tmp_path / "digits.npz", x_train=x[:1500], y_train=y[:1500], x_test=x[1500:], y_test=y[1500:])
    result = hpsearch.run(_builder(), data=f"npz:{tmp_path / 'digits.npz'}", study="mo", storage=url,
                          trials=6, epochs=2, batch_size=32, objectives=["parameters", "val_loss"], verbose=False,
                          fixed={"optimizer": "adam"})
    study = result.study
    assert study.metric_names == ["val_accuracy", "parameters", "val_loss"]
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 6  # nothing pruned: several objectives run without a pruner
    for t in complete:
        assert t.values[1] == t.user_attrs["parameters"] == float(t.user_attrs["parameters"])
        assert t.values[1] == 8 * 8 * t.params["units"] + t.params["units"] + t.params["units"] * 10 + 10
        assert t.values[2] == t.user_attrs["val_loss"] > 0
    maximize = [True, False, False]
    front = result.pareto_front
    assert front, "a study with completed trials has a Pareto front"
    front_numbers = {t.number for t in front}
    for t in complete:  # exactly the non-dominated trials
        beaten = any(dominated(t.values, o.values, maximize) for o in complete)
        assert (t.number not in front_numbers) == beaten
    assert result.best_value == max(t.values[0] for t in complete)
    export = run_cli("export", "--study", "mo", "--storage", url, "--out", str(tmp_path / "best"), "--format", "json")
    assert export.returncode == 0, export.stderr[-2000:]
    exported = json.loads((tmp_path / "best" / "params.json").read_text())
    assert exported["value"] == result.best_value and len(exported["values"]) == 3

    best = run_cli("best", "--study", "mo", "--storage", url, "--format", "json")
    assert best.returncode == 0, best.stderr[-2000:]
    out = json.loads(best.stdout)
    assert [o["name"] for o in out["objectives"]] == ["val_accuracy", "parameters", "val_loss"]
    assert {r["trial"] for r in out["pareto_front"]} == front_numbers
    assert out["value"] == result.best_value and out["values"][0] == out["value"]
    table = run_cli("best", "--study", "mo", "--storage", url)
    assert table.returncode == 0 and "Pareto front" in table.stdout and "parameters ↓" in table.stdout
    csv = run_cli("trials", "--study", "mo", "--storage", url, "--format", "csv")
    header = csv.stdout.splitlines()[0].split(",")
    assert header[:5] == ["trial", "state", "value", "parameters", "val_loss"]
    assert len(csv.stdout.splitlines()) == 1 + 6


def test_a_study_stored_before_objectives_existed_resumes(tmp_path: Path) -> None:
    from hpsearch.search.launcher import create_or_resume
    from hpsearch.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'old.db'}")
    spec = StudySpec(study="old", model="resnet4", trials=3)
    old = spec.to_dict()
    del old["objectives"]  # what a study created by an earlier hpsearch holds
    optuna.create_study(study_name="old", storage=storage, direction="maximize").set_user_attr("hpsearch_spec", old)
    study = create_or_resume(spec, storage, check=False)
    assert study.user_attrs["hpsearch_spec"]["objectives"] == []
    with pytest.raises(UsageError, match="objectives: study has \\[\\], asked \\['parameters'\\]"):
        create_or_resume(StudySpec(study="old", model="resnet4", trials=3, objectives=["parameters"]), storage,
                         check=False)
