"""What a hostile user tries: overwriting and unwritable --out, huge images, damaged models, Ctrl-D, bad ports.

Each case ends in one line on stderr and exit code 2 (usage) or 1 (failure), never a traceback, and nothing the
user had is lost. The commands run in-process (`main([...])`) on one tiny real study trained once per session.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import optuna
import pytest
from PIL import Image

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.storage.outputs import prepare_output_dir

STUDY = "tiny"


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], code: int, silent: bool = False) -> str:
    """Runs `hpsearch ARGV` in-process, checks the exit code, and returns the one-line message on stderr.

    `silent`: nothing may reach stdout either (the command stopped before loading data or training).
    """
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == code, captured.err + captured.out
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.startswith("hpsearch ")]
    assert len(lines) == 1, captured.err
    if silent:
        assert captured.out == ""
    return lines[0]


# ------------------------------------------------------------------------------------------------ a tiny study
@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One completed resnet4 trial (1 epoch, 1,000 real digits) whose model is in the artifact store."""
    from hpsearch.search.launcher import create_or_resume
    from hpsearch.search.objective import Objective
    from hpsearch.search.spec import StudySpec
    from hpsearch.search.worker import open_study
    from hpsearch.storage import artifact_dir, open_storage
    from hpsearch.storage.artifacts import open_artifact_store

    directory = tmp_path_factory.mktemp("tiny-study")
    url = f"sqlite:///{directory / 'hp.db'}"
    spec = StudySpec(study=STUDY, model="resnet4", dataset="mnist-sample", train_size=1000, batch_size=64, epochs=1,
                     trials=1, pruner="none")
    create_or_resume(spec, open_storage(url), enqueue_defaults=True)
    study, _ = open_study(STUDY, open_storage(url))
    study.optimize(Objective(spec, artifact_store=open_artifact_store(artifact_dir(url))), n_trials=1)
    assert "artifact:model" in study.best_trial.user_attrs
    return directory


@pytest.fixture
def study_copy(tiny_study: Path, tmp_path: Path) -> Path:
    """A copy of the tiny study (database and artifacts) that a test may damage or delete."""
    copy = tmp_path / "study"
    shutil.copytree(tiny_study, copy)
    return copy


def _storage(directory: Path) -> list[str]:
    return ["--storage", f"sqlite:///{directory / 'hp.db'}"]


def _existing_storage(directory: Path) -> list[str]:
    """A study database that exists (the dashboard refuses a missing one before it tries host and port)."""
    import optuna

    optuna.create_study(study_name="shown", storage=f"sqlite:///{directory / 'hp.db'}")
    return _storage(directory)


def _digit(path: Path) -> Path:
    """A real MNIST digit from the bundled sample, as a PNG."""
    from hpsearch.datasets import load_dataset

    data = load_dataset("mnist-sample", train_size=200)
    Image.fromarray((data.x_test[0][..., 0] * 255).astype("uint8")).save(path)
    return path


# ------------------------------------------------------------------------------------------ prepare_output_dir
def test_prepare_output_dir_creates_checks_and_refuses(tmp_path: Path) -> None:
    out = prepare_output_dir(tmp_path / "a" / "b", ["model.keras"])
    assert out.is_dir() and list(out.iterdir()) == []  # the write test leaves nothing behind
    (out / "model.keras").write_text("mine")
    with pytest.raises(UsageError, match=r"already holds model.keras; pass --force to overwrite it"):
        prepare_output_dir(out, ["model.keras", "params.json"])
    assert prepare_output_dir(out, ["model.keras"], force=True) == out
    assert (out / "model.keras").read_text() == "mine"  # checking writes nothing
    (out / "params.json").mkdir()
    with pytest.raises(UsageError, match=r"holds directories where files would go: params.json"):
        prepare_output_dir(out, ["params.json"], force=True)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UsageError, match=r"is a file, not a directory"):
        prepare_output_dir(afile, ["model.keras"])
    with pytest.raises(UsageError, match=rf"cannot be created: {afile} is a file, not a directory"):
        prepare_output_dir(afile / "deeper" / "out", ["model.keras"])


# ----------------------------------------------------------------------------------------------------- export
def test_export_refuses_to_overwrite_the_users_files_unless_forced(tiny_study: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "best"
    out.mkdir()
    (out / "params.json").write_text("my own notes")
    (out / "model.keras").write_text("my own model")
    argv = ["export", "--study", STUDY, *_storage(tiny_study), "--out", str(out), "--format", "json", "--quiet"]
    message = _fails(capsys, argv, 2)
    assert f"--out {out} already holds model.keras, params.json; pass --force to overwrite them" in message
    assert (out / "params.json").read_text() == "my own notes" and (out / "model.keras").read_text() == "my own model"
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "params.json"]

    assert main([*argv, "--force"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["retrained"] is False and json.loads((out / "params.json").read_text())["study"] == STUDY
    assert (out / "model.keras").stat().st_size > 10_000


@pytest.mark.parametrize(("where", "expected"), [
    ("afile", "is a file, not a directory"),
    ("afile/out", "is a file, not a directory; give a path under a directory"),
])
def test_export_onto_or_under_a_file(tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     where: str, expected: str) -> None:
    (tmp_path / "afile").write_text("a file the user keeps")
    message = _fails(capsys, ["export", "--study", STUDY, *_storage(tiny_study), "--out", str(tmp_path / where)], 2)
    assert message.startswith("hpsearch export: error: --out ") and expected in message
    assert (tmp_path / "afile").read_text() == "a file the user keeps"


# ----------------------------------------------------------------------------------------------- train / retrain
TRAIN = ["train", "--model", "resnet4", "--dataset", "mnist-sample", "--train-size", "200", "--epochs", "1"]


def test_train_checks_out_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    # silent: the data summary, printed once the data is loaded, never came
    message = _fails(capsys, [*TRAIN, "--out", str(tmp_path / "afile" / "run")], 2, silent=True)
    assert "cannot be created: " in message

    # Unwritable places (the tests run as root, so chmod proves nothing; sysfs refuses even root).
    message = _fails(capsys, [*TRAIN, "--out", "/sys/hpsearch-out"], 2, silent=True)
    assert message.endswith("--out /sys/hpsearch-out cannot be created (Operation not permitted); give a directory "
                            "you can write to")
    message = _fails(capsys, [*TRAIN, "--out", "/sys"], 2, silent=True)
    assert "--out /sys is not writable (" in message and message.endswith("give a directory you can write to")

    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("an earlier run")
    message = _fails(capsys, [*TRAIN, "--out", str(out)], 2, silent=True)
    assert message.endswith("already holds result.json; pass --force to overwrite it, or choose another --out "
                            "directory")
    assert (out / "result.json").read_text() == "an earlier run"

    assert main([*TRAIN, "--out", str(out), "--force", "--format", "json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # the JSON alone: the data summary and the epochs went to stderr
    assert "val_accuracy: " in captured.err  # the epoch line
    assert summary["out"] == str(out) and summary["epochs_run"] == 1
    assert json.loads((out / "result.json").read_text())["model"] == "resnet4"
    assert all((out / name).stat().st_size > 0 for name in ("model.keras", "curves.png", "confusion_matrix.png"))


@pytest.mark.parametrize(("flags", "expected"), [
    (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--batch-size", "-8"], "--batch-size must be an integer >= 1, got -8"),
    (["--set", "epochs=0"], "--set epochs must be an integer >= 1, got 0"),
    (["--set", "batch_size=big"], "--set batch_size must be an integer >= 1, got 'big'"),
])
def test_train_refuses_epochs_and_batch_sizes_below_one(capsys: pytest.CaptureFixture[str], flags: list[str],
                                                        expected: str) -> None:
    message = _fails(capsys, ["train", "--model", "resnet4", "--dataset", "digits", *flags], 2)
    assert message == f"hpsearch train: error: {expected}"


def test_train_on_too_few_images_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # 20 images split 0.1 leave 2 for validation: a stratified split needs one of each of the 10 classes.
    message = _fails(capsys, ["train", "--model", "resnet4", "--dataset", "mnist-sample", "--train-size", "20",
                              "--epochs", "1", "--quiet"], 2)
    assert "--train-size" in message


def test_retrain_checks_epochs_and_out_before_training(tiny_study: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    base = ["retrain", "--study", STUDY, *_storage(tiny_study)]
    assert _fails(capsys, [*base, "--epochs", "0"], 2, silent=True) == \
        "hpsearch retrain: error: --epochs must be an integer >= 1, got 0"
    (tmp_path / "afile").write_text("x")
    # silent: "retraining trial ...", printed once the data is loaded, never came
    message = _fails(capsys, [*base, "--epochs", "1", "--out", str(tmp_path / "afile" / "final")], 2, silent=True)
    assert "afile is a file, not a directory" in message

    out = tmp_path / "final"
    out.mkdir()
    (out / "model.keras").write_text("the model I kept")
    message = _fails(capsys, [*base, "--epochs", "1", "--out", str(out)], 2, silent=True)
    assert "already holds model.keras; pass --force" in message
    assert (out / "model.keras").read_text() == "the model I kept"

    assert main([*base, "--epochs", "1", "--out", str(out), "--force", "--format", "json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs_run"] == 1 and result["model"] == str(out / "model.keras")
    assert (out / "model.keras").stat().st_size > 10_000


# ------------------------------------------------------------------------------------------------------ images
def write_png(path: Path, width: int, height: int, grey: int = 255) -> Path:
    """A real single-colour greyscale PNG, compressed row by row: the pixels are never held in memory."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes([grey]) * width  # filter type 0, then the row's pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def huge_pngs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("huge")
    return {"64 megapixels": write_png(directory / "big.png", 8000, 8000),  # over our limit, under PIL's
            "400 megapixels": write_png(directory / "bomb.png", 20000, 20000)}  # PIL's DecompressionBombError


def test_the_png_writer_writes_real_pngs(tmp_path: Path, huge_pngs: dict[str, Path]) -> None:
    with Image.open(write_png(tmp_path / "small.png", 30, 20, grey=7)) as img:
        img.load()
        assert (img.size, img.mode, img.getextrema()) == ((30, 20), "L", (7, 7))
    with Image.open(huge_pngs["64 megapixels"]) as img:  # header only
        assert img.size == (8000, 8000)
    assert all(p.stat().st_size < 500_000 for p in huge_pngs.values())


@pytest.mark.parametrize("which", ["64 megapixels", "400 megapixels"])
def test_predict_refuses_huge_images_without_decoding_them(tiny_study: Path, tmp_path: Path,
                                                           huge_pngs: dict[str, Path],
                                                           capsys: pytest.CaptureFixture[str], which: str) -> None:
    path = huge_pngs[which]
    started = time.monotonic()
    message = _fails(capsys, ["predict", "--study", STUDY, *_storage(tiny_study), str(_digit(tmp_path / "d.png")),
                              str(path)], 2)
    assert message.startswith(f"hpsearch predict: error: {path} is ")
    assert "over predict's limit of 40 megapixels; downscale it" in message
    if which == "64 megapixels":
        assert "8000x8000 pixels" in message
    assert time.monotonic() - started < 20  # decoding 400 megapixels alone takes longer on these cores


def test_reading_a_huge_image_costs_little_memory(huge_pngs: dict[str, Path]) -> None:
    # A process of its own, so its peak memory is that of reading the images and nothing else. VmHWM is the peak
    # of this program only (getrusage's maxrss would include the forking pytest process).
    code = ("import sys\nfrom hpsearch.search.results import read_digit\nfrom hpsearch.errors import UsageError\n"
            "for p in sys.argv[1:]:\n    try:\n        read_digit(p, (28, 28, 1))\n    except UsageError:\n"
            "        pass\n    else:\n        raise SystemExit('not refused: ' + p)\n"
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))\n")
    result = subprocess.run([sys.executable, "-c", code, *map(str, huge_pngs.values())], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    peak_kb = int(result.stdout)
    assert peak_kb < 200_000, f"peak {peak_kb // 1024} MB"  # decoding the smaller one alone takes 320 MB


def test_predict_still_reads_an_ordinary_photo(tiny_study: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    digit = _digit(tmp_path / "d.png")
    with Image.open(digit) as img:  # a 2,000 x 2,000 "photo": under the limit, read as before
        img.convert("RGB").resize((2000, 2000)).save(tmp_path / "photo.jpg")
    assert main(["predict", "--study", STUDY, *_storage(tiny_study), "--format", "json", str(digit),
                 str(tmp_path / "photo.jpg")]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert [a["image"] for a in answers] == [str(digit), str(tmp_path / "photo.jpg")]


def test_export_json_stays_parseable_when_the_model_is_trained_again(study_copy: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{study_copy / 'hp.db'}")
    (study_copy / "hp-artifacts" / study.best_trial.user_attrs["artifact:model"]).unlink()  # a trial without model
    assert main(["export", "--study", STUDY, *_storage(study_copy), "--out", str(tmp_path / "out"), "--format",
                 "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["retrained"] is True
    assert "kept no model: training its configuration again" in captured.err and "val_accuracy: " in captured.err


# -------------------------------------------------------------------------------------------- a damaged model
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_damaged_saved_model_names_the_trial_and_the_fix(study_copy: Path, tmp_path: Path, damage: str,
                                                           command: str, capsys: pytest.CaptureFixture[str]) -> None:
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{study_copy / 'hp.db'}")
    artifact = study_copy / "hp-artifacts" / study.best_trial.user_attrs["artifact:model"]
    saved = artifact.read_bytes()
    artifact.write_bytes(saved[:len(saved) // 2] if damage == "truncated" else b"\x00garbage" * 100)
    args = [str(_digit(tmp_path / "d.png"))] if command == "predict" else ["--out", str(tmp_path / "out")]
    message = _fails(capsys, [command, "--study", STUDY, *_storage(study_copy), *args], 1)
    assert message.startswith(f"hpsearch {command}: failed: the saved model of trial {study.best_trial.number} of "
                              f"study '{STUDY}' cannot be loaded (not a complete .keras archive")
    assert f"delete {artifact} and run the command again" in message
    assert "hpsearch-model-" not in message  # the temporary copy means nothing to the user


# ------------------------------------------------------------------------------------------------------ delete
def test_ctrl_d_at_the_delete_prompt_means_no(study_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    leader, follower = os.openpty()  # a real terminal: Ctrl-D on an empty line is end of file
    with open(follower, closefd=True) as terminal:
        monkeypatch.setattr(sys, "stdin", terminal)
        os.write(leader, b"\x04")
        rc = main(["delete", "--study", STUDY, *_storage(study_copy)])
    os.close(leader)
    captured = capsys.readouterr()
    assert rc == 1 and captured.out.rstrip().endswith("not deleted"), captured.err
    assert "Traceback" not in captured.err
    assert optuna.load_study(study_name=STUDY, storage=f"sqlite:///{study_copy / 'hp.db'}").best_trial is not None


# --------------------------------------------------------------------------------------------------- dashboard
@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_dashboard_refuses_ports_outside_the_tcp_range(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       port: str) -> None:
    message = _fails(capsys, ["dashboard", *_storage(tmp_path), "--port", port], 2, silent=True)
    assert message == (f"hpsearch dashboard: error: --port {port} is not a TCP port; use a number from 1 to 65535 "
                       "(default 8080)")
    assert not (tmp_path / "hp.db").exists()


def test_dashboard_on_a_port_in_use_says_choose_another_port(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        storage = _existing_storage(tmp_path)
        message = _fails(capsys, ["dashboard", *storage, "--port", str(port)], 2, silent=True)
    assert message.startswith(f"hpsearch dashboard: error: port {port} on 127.0.0.1 is already in use")
    assert "choose another --port" in message


@pytest.mark.parametrize(("host", "expected"), [
    ("203.0.113.7", "--host 203.0.113.7 is not an address of this machine"),  # TEST-NET-3: nobody's address
    ("no-such-host.invalid", "--host no-such-host.invalid cannot be resolved"),  # .invalid never resolves
])
def test_dashboard_with_a_wrong_host_says_the_host_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            host: str, expected: str) -> None:
    message = _fails(capsys, ["dashboard", *_existing_storage(tmp_path), "--host", host, "--port", "8080"], 2)
    assert expected in message and "use 127.0.0.1" in message
    assert "--port" not in message
