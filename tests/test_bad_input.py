"""Bad input gets a clear message naming the problem and the fix, exit code 2, and nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


def run(tmp_path: Path, *args: str):
    return run_cli("run", "--storage", f"sqlite:///{tmp_path / 'hp.db'}", "--epochs", "1", *args, cwd=tmp_path)


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
])
def test_usage_errors(tmp_path: Path, flags: list[str], expected: str) -> None:
    result = run(tmp_path, *flags)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "hp.db").exists()  # a bad spec creates nothing


def test_spec_with_wrong_type(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("study: s\nmodel: cnn\ntrials: many\n")
    result = run(tmp_path, "--spec", str(spec))
    assert result.returncode == 2 and "trials must be int, got str 'many'" in result.stderr


def test_spec_that_is_not_yaml(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("study: [unclosed\n")
    result = run(tmp_path, "--spec", str(spec))
    assert result.returncode == 2 and "not valid YAML" in result.stderr


def test_unreachable_storage_masks_the_password(tmp_path: Path) -> None:
    from tests.postgres import free_port

    url = f"postgresql+psycopg://hp:Hunter2Secret@127.0.0.1:{free_port()}/hp"
    for args in (["best", "--study", "s", "--storage", url], ["run", "--study", "s", "--model", "resnet4",
                                                               "--trials", "1", "--storage", url]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert "Hunter2Secret" not in result.stderr + result.stdout
        assert "***" in result.stderr


def test_malformed_storage_url(tmp_path: Path) -> None:
    result = run_cli("best", "--study", "s", "--storage", "not-a-url", cwd=tmp_path)
    assert result.returncode == 2 and "not a database URL" in result.stderr


def test_corrupt_data_dir_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    result = run_cli("train", "--model", "resnet4", "--dataset", "mnist", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "train-labels-idx1-ubyte" in result.stderr
