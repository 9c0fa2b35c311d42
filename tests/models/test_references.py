"""Users' own builders: a file, a module, a KerasTuner HyperModel, an entry point; real imports, real workers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest

from hpsearch.errors import UsageError
from hpsearch.models import get_builder, search_space
from hpsearch.models.references import ModelReferenceError, normalize
from tests.conftest import run_cli

# A small dense net for the 8x8 digits: quick to train, with BatchNormalization (precise BN applies), uncompiled
# (hpsearch compiles it and adds optimizer and learning rate to the space).
BUILDER_FILE = '''
import keras


def build(hp, input_shape, num_classes):
    units = hp.Int("units", 16, 64, step=16, default=32)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def not_a_model(hp):
    return "a string"


SOMETHING = 42
'''

HYPERMODEL_MODULE = '''
import keras
import keras_tuner


class Dense(keras_tuner.HyperModel):
    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes

    def build(self, hp):
        model = keras.Sequential([
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Choice("width", [8, 16]), activation="relu"),
            keras.layers.Dense(self.num_classes, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


INSTANCE = Dense(10)
'''


@pytest.fixture
def builder_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(BUILDER_FILE)
    return path


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lib = tmp_path / "lib"
    (lib / "my_nets").mkdir(parents=True)
    (lib / "my_nets" / "__init__.py").write_text("")
    (lib / "my_nets" / "dense.py").write_text(HYPERMODEL_MODULE)
    monkeypatch.syspath_prepend(str(lib))
    return lib


def _hp():
    import keras_tuner

    return keras_tuner.HyperParameters()


def test_a_builder_file_builds_for_the_data_and_is_compiled_with_the_searched_optimizer(builder_file: Path) -> None:
    model = get_builder(f"{builder_file}:build", (8, 8, 1), 10)(hp := _hp())
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)
    assert model.compiled and model.optimizer.learning_rate.numpy() == pytest.approx(1e-3)
    names = {e["name"] for e in search_space(f"{builder_file}:build", (8, 8, 1), 10)}
    assert {"units", "optimizer", "learning_rate"} <= names
    assert hp.get("units") == 32


def test_relative_file_references_are_stored_absolute(builder_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(builder_file.parent)
    assert normalize("my_model.py:build") == f"{builder_file.resolve()}:build"
    assert normalize("./my_model.py:build") == f"{builder_file.resolve()}:build"
    assert normalize("pkg.mod:build") == "pkg.mod:build" and normalize("cnn") == "cnn"


def test_a_hypermodel_subclass_gets_the_class_count_and_an_instance_is_used_as_is(module_dir: Path) -> None:
    model = get_builder("my_nets.dense:Dense", (8, 8, 1), 3)(_hp())
    assert model.output_shape == (None, 3) and model.compiled
    names = {e["name"] for e in search_space("my_nets.dense:Dense", (8, 8, 1), 3)}
    assert names >= {"width", "lr"} and "optimizer" not in names  # compiled by the user: nothing added
    assert get_builder("my_nets.dense:INSTANCE", (8, 8, 1), 10)(_hp()).output_shape == (None, 10)


@pytest.mark.parametrize(("ref", "message"), [
    ("nowhere/missing.py:build", "does not exist"),
    ("{file}:nope", "has no attribute 'nope'"),
    ("{file}:SOMETHING", "is a int, not a builder"),
    ("no_such_package_xyz.nets:build", "is not installed in this Python environment"),
    ("my nets:build", "neither a module name"),
    ("pkg.mod:", "is not of the form"),
])
def test_bad_references_say_what_to_do(ref: str, message: str, builder_file: Path) -> None:
    with pytest.raises(ModelReferenceError, match=message):
        get_builder(ref.format(file=builder_file), (8, 8, 1), 10)


def test_the_missing_attribute_message_lists_what_the_file_defines(builder_file: Path) -> None:
    with pytest.raises(ModelReferenceError) as info:
        get_builder(f"{builder_file}:buidl", (8, 8, 1), 10)
    assert "build" in str(info.value) and "not_a_model" in str(info.value)


def test_a_builder_that_returns_no_model_fails_when_built(builder_file: Path) -> None:
    build = get_builder(f"{builder_file}:not_a_model", (8, 8, 1), 10)
    with pytest.raises(TypeError, match="returned str, not a keras.Model"):
        build(_hp())


def test_options_must_be_parameters_of_the_builder(builder_file: Path) -> None:
    with pytest.raises(UsageError, match="takes no option 'depth'"):
        get_builder(f"{builder_file}:build", (8, 8, 1), 10, depth=3)


def _entry_point_package(root: Path) -> None:
    """An installed package as importlib.metadata sees one: a module and a dist-info with an entry point."""
    root.mkdir(exist_ok=True)
    (root / "acme_nets.py").write_text(BUILDER_FILE)
    info = root / "acme_nets-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nets\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hpsearch.models]\nacme-dense = acme_nets:build\n")


@pytest.mark.integration
def test_a_package_registers_a_builder_by_entry_point(tmp_path: Path) -> None:
    _entry_point_package(tmp_path / "site")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    listed = run_cli("models", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    models = json.loads(listed.stdout)
    assert "cnn" in models and "acme-dense" in models
    assert {e["name"] for e in models["acme-dense"]["space"]} >= {"units", "optimizer"}
    assert "acme_nets:build" in models["acme-dense"]["description"]
    unknown = run_cli("models", "acme-sparse", env=env)
    assert unknown.returncode == 2 and "acme-sparse" in unknown.stderr and "hpsearch.models" in unknown.stderr


@pytest.mark.integration
def test_a_search_of_a_builder_file_with_real_workers(builder_file: Path) -> None:
    cwd = builder_file.parent
    url = f"sqlite:///{cwd / 'own.db'}"
    result = run_cli("run", "--storage", url, "--study", "own", "--model", "my_model.py:build", "--dataset",
                     "mnist-sample", "--trials", "4", "--workers", "2", "--epochs", "2", "--format", "json", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="own", storage=url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all({"units", "optimizer", "learning_rate"} <= set(t.params) for t in complete)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    stored = json.loads(study.user_attrs["hpsearch_spec"]) if isinstance(study.user_attrs["hpsearch_spec"], str) \
        else study.user_attrs["hpsearch_spec"]
    assert stored["model"] == f"{builder_file.resolve()}:build"
    best = run_cli("best", "--storage", url, "--study", "own", "--format", "json", cwd=cwd)
    assert best.returncode == 0 and json.loads(best.stdout)["value"] > 0.5, best.stdout + best.stderr


@pytest.mark.integration
def test_a_worker_that_cannot_import_the_builder_stops_before_taking_a_trial(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "team_model.py").write_text(BUILDER_FILE)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    created = run_cli("create", "--storage", url, "--study", "w", "--model", "team_model:build", "--dataset",
                      "mnist-sample", "--trials", "2", "--epochs", "1", cwd=tmp_path,
                      env={"PYTHONPATH": str(lib)})
    assert created.returncode == 0, created.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    worker = run_cli("worker", "--storage", url, "--study", "w", cwd=elsewhere,
                     env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert worker.returncode == 2, worker.stderr[-3000:]
    assert "cannot import module 'team_model'" in worker.stderr and "PYTHONPATH" in worker.stderr
    assert optuna.load_study(study_name="w", storage=url).trials == []
