"""`hpsearch dashboard`, `hpsearch proxy` and `hpsearch delete`: serve a storage, remove a study."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hpsearch.cli._common import (
    ARTIFACTS_HELP,
    add_command,
    add_storage_arg,
    add_study_arg,
    make_console,
    stop_on_sigterm,
)
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
    p.add_argument("--artifacts", help=ARTIFACTS_HELP)
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

    stop_on_sigterm()
    serve(url, args.host, args.port, args.artifacts, on_listening=announce)
    return 0


# ------------------------------------------------------------------------------------------------------- proxy
def register_proxy(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "proxy", cmd_proxy,
                    "serve the study database to many workers through one gRPC proxy (Optuna's)",
                    "  hpsearch proxy --storage postgresql+psycopg://hp@db/hp --host 10.0.0.5 --port 13000\n"
                    "  HPSEARCH_STORAGE=grpc://10.0.0.5:13000 hpsearch worker --study cnn-mnist   # each worker")
    add_storage_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=13000, help="TCP port, 1-65535 (default 13000)")
    p.add_argument("--threads", type=int, default=16, help="requests served at once (default 16)")


def cmd_proxy(args: argparse.Namespace) -> int:
    from hpsearch.search.dashboard import check_port, is_loopback
    from hpsearch.storage import mask_url, resolve_url
    from hpsearch.storage.proxy import serve

    check_port(args.port)
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    url = resolve_url(args.storage)
    console = make_console()
    if not is_loopback(args.host):
        console.print(f"[bold yellow]warning:[/] the proxy on {args.host}:{args.port} has no authentication: anyone "
                      "who reaches that port can read, change and delete every study in the database; keep it on "
                      "a private network", markup=True)

    def announce(address: str) -> None:
        # One unwrapped line, flushed: a supervisor reading a pipe sees the address now, not when the proxy stops.
        print(f"proxy for {mask_url(url)} at {address}: workers use --storage {address} (Ctrl-C to stop)", flush=True)

    stop_on_sigterm()
    try:
        serve(url, args.host, args.port, args.threads, on_listening=announce)
    except KeyboardInterrupt:
        console.print("proxy stopped")
    return 0


# ------------------------------------------------------------------------------------------------------ delete
def register_delete(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "delete", cmd_delete, "delete a study, its trials and its artifact files (asks first)",
                    "  hpsearch delete --study old-study\n  hpsearch delete --study old-study --yes")
    add_study_arg(p)
    add_storage_arg(p)
    p.add_argument("--artifacts", help=ARTIFACTS_HELP)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def cmd_delete(args: argparse.Namespace) -> int:
    import optuna

    from hpsearch.storage import mask_url, open_storage, resolve_url
    from hpsearch.storage.artifacts import artifact_location, remove_artifacts
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
    ids = [artifact_id for trial in study.get_trials(deepcopy=False)
           for key, artifact_id in trial.user_attrs.items() if key.startswith("artifact:")]
    removed = remove_artifacts(artifact_location(url, args.artifacts), ids)
    optuna.delete_study(study_name=args.study, storage=storage)
    print(f"deleted study {args.study!r}: {total} trials, {removed} artifact files")
    return 0
