"""The Optuna internals hpsearch relies on, in one place, with a check that they still are what the code expects.

hpsearch reads Optuna's tables with its own SQL (counts for the exact budget, the read-only commands, orphaned
trials) and reaches two private attributes of a study (its storage and its id); both are taken from here only.
`check_schema` refuses a database whose schema is not one this SQL was written against, with what to do, instead
of wrong answers or a raw SQL error later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError

if TYPE_CHECKING:
    import optuna

    # The protocol an artifact store implements (FileSystemArtifactStore, Boto3ArtifactStore); Optuna keeps it in
    # a private module, so this is the one place that names it.
    from optuna.artifacts._protocol import ArtifactStore as ArtifactStore

# Optuna's RDB schema versions (alembic) whose tables the raw SQL in storage/queries.py, search/budget.py and
# storage/_rdb.py was checked against: trials(study_id, number, state, datetime_start, datetime_complete),
# trial_values(trial_id, objective, value), trial_params, trial_user_attributes, trial_heartbeats(trial_id),
# studies, study_directions(objective, direction), study_user_attributes, study_system_attributes.
KNOWN_SCHEMA_VERSIONS = ("v3.2.0.a",)


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes through (its public methods: set_trial_state_values, ...)."""
    return study._storage


def storage_backend(study: optuna.Study) -> Any:
    """The storage under a study's cache (Optuna wraps an RDBStorage in one): heartbeat settings, engine."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def study_id(study: optuna.Study) -> int:
    """The study's id in the storage (its row in `studies`)."""
    return int(study._study_id)


def rdb_engine(study: optuna.Study) -> Any:
    """The SQLAlchemy engine under a study's storage, or None for a storage without one (in memory)."""
    return getattr(storage_backend(study), "engine", None)


def check_schema(version: str | None, where: str) -> None:
    """Raises HpsearchError unless `version` (alembic's, None: no Optuna tables yet) is one hpsearch knows.

    Args:
        version: the database's `alembic_version.version_num`.
        where: the storage, for the message (password masked by the caller).
    """
    if version is None or version in KNOWN_SCHEMA_VERSIONS:
        return
    import optuna

    raise HpsearchError(f"the study database {where} has Optuna schema {version}; hpsearch reads schema "
                        f"{', '.join(KNOWN_SCHEMA_VERSIONS)} (Optuna {optuna.__version__} is installed). Use the "
                        "Optuna version that wrote it (`optuna storage upgrade` moves a database forward), or an "
                        "hpsearch release that knows this schema")
