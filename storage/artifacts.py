"""The artifact store (models, plots, reports) beside the study database, contained in its directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from hpsearch.errors import HpsearchError

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts._protocol import ArtifactStore


def open_artifact_store(directory: str | Path) -> ArtifactStore:
    """A filesystem artifact store rooted at `directory` (created if missing).

    Raises:
        HpsearchError: the directory cannot be created or written.
    """
    from optuna.artifacts import FileSystemArtifactStore

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HpsearchError(f"artifact directory {directory} cannot be created ({exc.strerror}); pass a writable "
                            "--artifacts DIR") from None
    return FileSystemArtifactStore(str(directory))


def safe_filename(name: str) -> str:
    """A file name with no path separators or traversal, from a study or trial name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "artifact"
    return cleaned[:100]


def upload(store: ArtifactStore, trial: optuna.trial.Trial | optuna.trial.FrozenTrial, path: Path,
           storage: optuna.storages.BaseStorage | None = None) -> str:
    """Uploads one file to the trial; the artifact id is also kept as a user attribute `artifact:<file name>`.

    Raises:
        HpsearchError: the store cannot take the file (disk full, unwritable); the trial's result is unaffected.
    """
    from optuna.artifacts import upload_artifact

    try:
        artifact_id = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                                      storage=storage)
    except OSError as exc:
        raise HpsearchError(f"artifact {path.name} could not be stored ({exc.strerror or exc}); free space or "
                            "fix the permissions of the artifact directory") from None
    return artifact_id
