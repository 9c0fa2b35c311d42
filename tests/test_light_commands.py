"""Read-only commands answer without TensorFlow: `status`, `best`, `trials`, `studies` and `models`'s spec checks
never import it (seconds of start-up and a page of C++ log lines otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import run_cli

PROBE = """
import sys, runpy
sys.argv = ["hpsearch", *sys.argv[1:]]
try:
    runpy.run_module("hpsearch", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("EXIT", code, "TENSORFLOW" if "tensorflow" in sys.modules else "NO-TENSORFLOW", file=sys.stderr)
"""


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A study made by `hpsearch create` (real checks, real dry run), with one finished trial added."""
    tmp = tmp_path_factory.mktemp("light")
    url = f"sqlite:///{tmp / 'light.db'}"
    created = run_cli("create", "--storage", url, "--study", "light", "--model", "resnet4", "--dataset",
                      "mnist-sample", "--trials", "3", "--epochs", "1", cwd=tmp)
    assert created.returncode == 0, created.stderr[-2000:]
    study = optuna.load_study(study_name="light", storage=url)
    dist = optuna.distributions.IntDistribution(2, 8)
    study.add_trial(optuna.trial.create_trial(params={"filters": 4}, distributions={"filters": dist}, value=0.91))
    return url


@pytest.mark.parametrize("command", [
    ["status", "--study", "light"],
    ["best", "--study", "light"],
    ["trials", "--study", "light"],
    ["studies"],
])
def test_read_only_commands_do_not_import_tensorflow(command: list[str], study_url: str) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, *command, "--storage", study_url], capture_output=True,
                            text=True, timeout=120)
    assert "EXIT 0 NO-TENSORFLOW" in result.stderr, result.stderr[-2000:] + result.stdout[-1000:]
    assert "0.91" in result.stdout


def test_checking_a_spec_imports_no_model_code(tmp_path: Path) -> None:
    code = ("import sys\nfrom hpsearch.search.spec import StudySpec\n"
            "StudySpec(study='s', model='cnn', dataset='mnist-sample')\n"
            "StudySpec(study='t', model='my_pkg.nets:build')\n"
            "print('keras' in sys.modules, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr[-2000:]


def test_optuna_conventions_study_name_and_optuna_storage(study_url: str) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "HPSEARCH_STORAGE"}
    result = subprocess.run([sys.executable, "-c", PROBE, "best", "--study-name", "light"], capture_output=True,
                            text=True, timeout=120, env={**env, "OPTUNA_STORAGE": study_url})
    assert "EXIT 0 NO-TENSORFLOW" in result.stderr, result.stderr[-2000:]
    assert "0.91" in result.stdout


def test_the_objective_is_named_after_its_metric(study_url: str) -> None:
    """optuna-dashboard and Optuna's tools show "val_accuracy", not "Objective 0"."""
    assert optuna.load_study(study_name="light", storage=study_url).metric_names == ["val_accuracy"]


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    """A bug (here: a query that raises what no handler expects) ends in one masked line, exit 1; --debug raises."""
    from hpsearch.cli import main
    from hpsearch.storage import queries

    def broken(*_args, **_kwargs):
        raise RuntimeError("lost at postgresql://ann:S3cret@db.example/studies\nsecond line")

    monkeypatch.setattr(queries, "make_engine", broken)
    assert main(["studies", "--storage", f"sqlite:///{tmp_path / 'x.db'}"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["hpsearch studies: failed: unexpected RuntimeError: lost at "
                                "postgresql://ann:***@db.example/studies (run again with --debug for the traceback, "
                                "and please report it)"]
    with pytest.raises(RuntimeError, match="lost at"):
        main(["studies", "--debug", "--storage", f"sqlite:///{tmp_path / 'x.db'}"])


def test_trials_says_why_each_failed_trial_failed(tmp_path: Path) -> None:
    """README points at `trials --state fail` for a failed trial's reason: the table shows its first line, cut to
    FAIL_REASON_WIDTH, the CSV its whole first line, and both say what a failed trial without a reason means."""
    from hpsearch.cli.results import FAIL_REASON_WIDTH

    url = f"sqlite:///{tmp_path / 'failed.db'}"
    study = optuna.create_study(study_name="failed", storage=url, direction="maximize")
    dist = optuna.distributions.IntDistribution(2, 8)
    long = "builder error: ValueError: " + "x" * (2 * FAIL_REASON_WIDTH) + " LAST-WORDS"
    reasons = [
        "builder error: ValueError: filters must be even, got 3\n  SECOND-LINE: the traceback is in fail_traceback",
        long, None]
    for n, reason in enumerate(reasons):
        study.add_trial(optuna.trial.create_trial(
            params={"filters": 3 + n}, distributions={"filters": dist}, state=optuna.trial.TrialState.FAIL,
            user_attrs={"fail_reason": reason} if reason else {}))
    study.add_trial(optuna.trial.create_trial(params={"filters": 4}, distributions={"filters": dist}, value=0.9))
    env = {"COLUMNS": "400", "PYTHONIOENCODING": "utf-8"}
    failed = run_cli("trials", "--study", "failed", "--storage", url, "--sort", "number", "--state", "fail", env=env)
    assert failed.returncode == 0, failed.stderr[-2000:]
    cells = [line.split() for line in failed.stdout.splitlines()]
    rows = {c[1]: " ".join(c) for c in cells if c[1:3] in (["0", "│"], ["1", "│"], ["2", "│"])}  # "│ 0 │ fail │ ..."
    assert "why failed" in failed.stdout and set(rows) == {"0", "1", "2"}, failed.stdout
    assert "filters must be even, got 3" in rows["0"] and "SECOND-LINE" not in failed.stdout
    assert "..." in rows["1"] and "LAST-WORDS" not in failed.stdout
    assert "stopped before it ended" in rows["2"]
    complete = run_cli("trials", "--study", "failed", "--storage", url, env=env)
    assert complete.returncode == 0 and "0.9000" in complete.stdout and "why failed" not in complete.stdout
    csv = run_cli("trials", "--study", "failed", "--storage", url, "--sort", "number", "--state", "fail",
                  "--format", "csv")
    lines = csv.stdout.splitlines()
    assert "fail_reason" in lines[0].split(",") and len(lines) == 4, csv.stdout
    assert "got 3" in lines[1] and "LAST-WORDS" in lines[2] and "stopped before it ended" in lines[3]


def test_best_names_the_trials_its_validation_cannot_tell_from_the_best(tmp_path: Path) -> None:
    """`hpsearch create` records how many images validate every trial; `best` gives the accuracy's standard error
    on that many images and names the trials within one error of the best, and not those further away."""
    from hpsearch.datasets import load_dataset
    from hpsearch.search.ranking import standard_error

    url = f"sqlite:///{tmp_path / 'noise.db'}"
    created = run_cli("create", "--storage", url, "--study", "noise", "--model", "resnet4", "--dataset",
                      "mnist-sample", "--trials", "5", "--epochs", "1", cwd=tmp_path)
    assert created.returncode == 0, created.stderr[-2000:]
    images = len(load_dataset("mnist-sample").y_val)
    study = optuna.load_study(study_name="noise", storage=url)
    assert study.user_attrs["hpsearch_validation_images"] == images
    error = standard_error(0.9, images)
    close, far = round(0.9 - 0.6 * error, 4), round(0.9 - 1.5 * error, 4)
    dist = optuna.distributions.IntDistribution(2, 8)
    peak = optuna.distributions.FloatDistribution(1.0, 5.0)  # searched: the best trial cycled to 3x
    held = {"fixed:epochs": 1, "fixed:lr_factor": 0.2, "fixed:lr_patience": 2}
    for filters, value, attrs in ((4, 0.9, {"test_accuracy": 0.89, **held}), (5, close, {"test_accuracy": 0.91}),
                                  (6, far, {})):
        study.add_trial(optuna.trial.create_trial(params={"filters": filters, "lr_peak": 3.0}, value=value,
                                                  distributions={"filters": dist, "lr_peak": peak}, user_attrs=attrs))
    table = run_cli("best", "--study", "noise", "--storage", url, env={"COLUMNS": "400"})
    assert table.returncode == 0, table.stderr[-2000:]
    line = next(x for x in table.stdout.splitlines() if x.startswith("validation:"))
    assert f"{images:,} images, one standard error ±{error:.4f}" in line
    assert "1 other trial(s) within it" in line and f"1 ({close:.4f}, test 0.9100)" in line
    assert f"{far:.4f}" not in line
    fixed = next(x for x in table.stdout.splitlines() if x.startswith("held fixed:"))
    assert fixed == "held fixed: epochs 1"  # a searched lr_peak above 1 cycles: the plateau's values go unused
    out = json.loads(run_cli("best", "--study", "noise", "--storage", url, "--format", "json").stdout)
    assert out["trial"] == 0 and out["validation"]["within_one_error"] == [
        {"trial": 1, "value": close, "test_accuracy": 0.91}]
