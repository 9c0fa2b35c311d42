"""`hpsearch dashboard` and `hpsearch delete`: serve a storage, remove a study."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hpsearch.cli._common import add_command, add_storage_arg, add_study_arg, make_console
from hpsearch.errors import UsageError

if TYPE_CHECKING:
    from hpsearch.cli._common import Subparsers


# --------------------------------------------------------------------------------------------------- dashboard
def register_dashboard(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "dashboard", cmd_dashboard,
                    "serve optuna-dashboard (with trial artifacts) on the study storage",
                    "  hpsearch dashboard                      # http://127.0.0.1:8080/\n"
                    "  hpsearch dashboard --storage postgresql+psycopg://hp@db/hp --port 8081")
    add_storage_arg(p)
    p.add_argument("--artifacts", help="artifact directory (default: beside the SQLite file)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port, 1-65535 (default 8080)")


def cmd_dashboard(args: argparse.Namespace) -> int:
    from hpsearch.search.dashboard import NO_AUTH_WARNING, check_port, is_loopback, serve
    from hpsearch.storage import mask_url, resolve_url

    check_port(args.port)
    url = resolve_url(args.storage)
    console = make_console()
    if not is_loopback(args.host):
        console.print(f"[bold yellow]warning:[/] {NO_AUTH_WARNING.format(host=args.host, port=args.port)}",
                      markup=True)
    from hpsearch.storage._rdb import check_sqlite_file

    check_sqlite_file(url, must_exist=True)  # a typo in the path must not create an empty database to show
    host = f"[{args.host}]" if ":" in args.host else args.host

    def announce() -> None:  # once listening: a port in use or a wrong host is a UsageError from serve instead
        console.print(f"optuna-dashboard for {mask_url(url)} at http://{host}:{args.port}/ (Ctrl-C to stop)",
                      markup=False)

    serve(url, args.host, args.port, args.artifacts, on_listening=announce)
    return 0


# ------------------------------------------------------------------------------------------------------ delete
def register_delete(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "delete", cmd_delete, "delete a study, its trials and its artifact files (asks first)",
                    "  hpsearch delete --study old-study\n  hpsearch delete --study old-study --yes")
    add_study_arg(p)
    add_storage_arg(p)
    p.add_argument("--artifacts", help="artifact directory (default: beside the SQLite file)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def cmd_delete(args: argparse.Namespace) -> int:
    import optuna

    from hpsearch.storage import artifact_dir, mask_url, open_storage, resolve_url
    from hpsearch.storage.queries import make_engine, state_counts, study_info

    url = resolve_url(args.storage)
    engine = make_engine(url, read_only=True)  # nothing is created or changed before the answer is yes
    study_info(engine, args.study)  # unknown study: lists the existing ones
    total = sum(state_counts(engine, args.study).get(args.study, {}).values())
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("deleting needs confirmation: run in a terminal, or pass --yes")
        try:
            answer = input(f"delete study {args.study!r} ({total} trials) from {mask_url(url)}? [y/N] ")
        except EOFError:  # Ctrl-D: no answer is a no
            print()
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    storage = open_storage(url, None, None, retry=False)
    study = optuna.load_study(study_name=args.study, storage=storage)
    art_dir = artifact_dir(url, args.artifacts).resolve()
    removed = 0
    for trial in study.get_trials(deepcopy=False):
        for key, artifact_id in trial.user_attrs.items():
            path = (art_dir / str(artifact_id)).resolve()
            if key.startswith("artifact:") and path.is_relative_to(art_dir) and path.is_file():
                path.unlink()
                removed += 1
    optuna.delete_study(study_name=args.study, storage=storage)
    print(f"deleted study {args.study!r}: {total} trials, {removed} artifact files")
    return 0
