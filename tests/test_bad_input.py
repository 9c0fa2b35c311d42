"""Bad input gets a clear message naming the problem and the fix, exit code 2, and nothing is lost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpsearch.cli import main
from tests.conftest import run_cli


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., Result]:
    """`hpsearch ARGS` called in this process (as `main([...])`), in `tmp_path`: exit code, stdout, stderr."""
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return call


@pytest.fixture
def run(tmp_path: Path, cli: Callable[..., Result]) -> Callable[..., Result]:
    return lambda *args: cli("run", "--storage", f"sqlite:///{tmp_path / 'hp.db'}", "--epochs", "1", *args)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--study", "s", "--model", "vgg"], "unknown model 'vgg'; valid models are: resnet4, resnet-blocks, cnn"),
    (["--study", "s", "--model", "cnn", "--dataset", "cifar"], "unknown dataset 'cifar'; valid datasets are: mnist"),
    (["--study", "s", "--model", "cnn", "--sampler", "anneal"], "unknown sampler 'anneal'; valid samplers are: tpe"),
    (["--study", "s", "--model", "cnn", "--pruner", "wilcoxon"], "valid pruners are: successive-halving, hyperband"),
    (["--study", "s", "--model", "cnn", "--trials", "0"], "trials must be an integer >= 1"),
    (["--study", "s", "--model", "cnn", "--trials", "-3"], "trials must be an integer >= 1"),
    (["--study", "x" * 513, "--model", "cnn"], "513 characters long"),
    (["--study", "../../etc/passwd", "--model", "cnn"], "characters that are not allowed"),
    (["--study", "s"], "to create it give --model"),
    (["--study", "s", "--model", "cnn", "--threads", "0"], "--threads must be at least 1"),
    (["--study", "s", "--model", "cnn", "--sampler-option", "n_startup=5"],
     "the tpe sampler has no option 'n_startup'; its options: "),
    (["--study", "s", "--model", "cnn", "--sampler-option", "seed=5"], "has no option 'seed' (the seed is --seed)"),
    (["--study", "s", "--model", "cnn", "--sampler-option", "n_startup_trials=five"],
     "sampler option n_startup_trials takes an integer, got 'five'"),
    (["--study", "s", "--model", "cnn", "--sampler-option", "multivariate=false", "--sampler-option", "group=true"],
     "option can only be enabled when ``multivariate`` is enabled"),
    (["--study", "s", "--model", "cnn", "--sampler-option", "consider_prior=true"],
     "`consider_prior` has been deprecated"),
    (["--study", "s", "--model", "cnn", "--sampler", "cmaes", "--sampler-option", "independent_sampler=random"],
     "independent_sampler takes BaseSampler | None, which a study spec cannot hold"),
    (["--study", "s", "--model", "cnn", "--sampler-option", "multivariate=1"], "multivariate takes true or false"),
    (["--study", "s", "--model", "cnn", "--sampler", "random", "--sampler-option", "n_startup_trials=5"],
     "the random sampler has no option 'n_startup_trials'; it takes none"),
    (["--study", "s", "--model", "cnn", "--sampler-option", "n_startup_trials"],
     "--sampler-option expects name=value, got 'n_startup_trials' (example: --sampler-option n_startup_trials=5)"),
])
def test_usage_errors(tmp_path: Path, run: Callable[..., Result], flags: list[str], expected: str) -> None:
    result = run(*flags)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "hp.db").exists()  # a bad spec creates nothing


def test_spec_with_wrong_type(tmp_path: Path, run: Callable[..., Result]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("study: s\nmodel: cnn\ntrials: many\n")
    result = run("--spec", str(spec))
    assert result.returncode == 2 and "trials must be int, got str 'many'" in result.stderr


def test_spec_that_is_not_yaml(tmp_path: Path, run: Callable[..., Result]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("study: [unclosed\n")
    result = run("--spec", str(spec))
    assert result.returncode == 2 and "not valid YAML" in result.stderr


def test_unreachable_storage_masks_the_password(cli: Callable[..., Result]) -> None:
    from tests.postgres import free_port

    url = f"postgresql+psycopg://hp:Hunter2Secret@127.0.0.1:{free_port()}/hp"
    for args in (["best", "--study", "s", "--storage", url], ["run", "--study", "s", "--model", "resnet4",
                                                               "--trials", "1", "--storage", url]):
        result = cli(*args)
        assert result.returncode == 1, result.stderr
        assert "Hunter2Secret" not in result.stderr + result.stdout
        assert "***" in result.stderr


def test_malformed_storage_url(cli: Callable[..., Result]) -> None:
    result = cli("best", "--study", "s", "--storage", "not-a-url")
    assert result.returncode == 2 and "not a database URL" in result.stderr


def test_train_with_an_unknown_model_or_a_missing_data_dir(tmp_path: Path, cli: Callable[..., Result]) -> None:
    result = cli("train", "--model", "vgg", "--dataset", "digits")
    assert result.returncode == 2
    assert "unknown model 'vgg'" in result.stderr and "resnet4" in result.stderr
    result = cli("train", "--model", "resnet4", "--dataset", "mnist", "--data-dir", str(tmp_path / "nope"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_corrupt_data_dir_through_the_cli(tmp_path: Path, cli: Callable[..., Result]) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    result = cli("train", "--model", "resnet4", "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "train-labels-idx1-ubyte" in result.stderr


@pytest.mark.integration
def test_a_usage_error_as_a_user_types_it(tmp_path: Path) -> None:
    # The same checks as above through a real `hpsearch` process: exit code 2, one message, no traceback.
    result = run_cli("run", "--storage", f"sqlite:///{tmp_path / 'hp.db'}", "--study", "s", "--model", "vgg",
                     cwd=tmp_path)
    assert result.returncode == 2 and "unknown model 'vgg'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "hp.db").exists()
