"""`hpsearch dashboard`: optuna-dashboard on the study storage, with the project's artifact store."""

from __future__ import annotations

import errno
import ipaddress
import socket
import socketserver
from collections.abc import Callable
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hpsearch.errors import UsageError

if TYPE_CHECKING:
    import optuna

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NO_AUTH_WARNING = ("optuna-dashboard has no authentication and can delete studies: anyone who reaches {host}:{port} "
                   "controls them. Put it behind an authenticating proxy, or bind to 127.0.0.1 (the default).")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # the page loads many assets at once


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6  # --host ::1 and other IPv6 addresses


def check_port(port: int) -> None:
    """Raises UsageError unless `port` is a TCP port one can listen on (1..65535)."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port; use a number from 1 to 65535 (default 8080)")


def bind_error(host: str, port: int, exc: OSError) -> UsageError:
    """The message for a failed bind: a port in use, a wrong host, or a privileged port, each with its fix."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):
        return UsageError(f"--host {host} cannot be resolved ({reason}); use 127.0.0.1 (this machine only) or an "
                          "address of this machine")
    if exc.errno == errno.EADDRINUSE:
        return UsageError(f"port {port} on {host} is already in use ({reason}); choose another --port, e.g. "
                          f"--port {port + 1 if port < 65535 else 8080}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"--host {host} is not an address of this machine ({reason}); use 127.0.0.1 (this "
                          "machine only) or one of this machine's addresses")
    if exc.errno == errno.EACCES:
        return UsageError(f"listening on port {port} is not permitted ({reason}); ports below 1024 need "
                          "privileges: choose a --port from 1024 to 65535")
    return UsageError(f"cannot listen on {host}:{port} ({reason}); check --host and --port")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def dashboard_storage(storage_url: str) -> optuna.storages.RDBStorage:
    """The storage the dashboard serves: an existing database, opened as it is. optuna-dashboard writes notes and
    deletions on a user's request, so it is not read-only; but it neither switches journal modes nor adds indexes
    to a database it only shows, and runs no heartbeat or retry of its own."""
    from hpsearch.storage import open_storage

    return open_storage(storage_url, heartbeat_interval=None, grace_period=None, retry=False, tune=False)


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080, artifacts: str | None = None,
          ready: object | None = None, on_listening: Callable[[], None] | None = None) -> None:
    """Serves the dashboard until interrupted.

    The port is bound before the storage is opened, so a port in use or a wrong host is reported at once.

    Args:
        storage_url: the study storage.
        host: the address to bind.
        port: the TCP port (1..65535).
        artifacts: the artifact directory (default: beside the SQLite file).
        ready: a `threading.Event` set once listening.
        on_listening: called once listening, before requests are served.

    Raises:
        UsageError: the port is out of range or in use, or the host is not an address of this machine.
    """
    check_port(port)
    import optuna_dashboard

    from hpsearch.storage.artifacts import artifact_location, open_artifact_store

    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    try:
        server = make_server(host, port, None, server_class=server_class, handler_class=_QuietHandler)
    except OSError as exc:
        raise bind_error(host, port, exc) from None
    with server:
        storage = dashboard_storage(storage_url)
        store = open_artifact_store(artifact_location(storage_url, artifacts))
        server.set_app(optuna_dashboard.wsgi(storage, artifact_store=store))
        if on_listening is not None:
            on_listening()
        if ready is not None:
            ready.set()  # type: ignore[attr-defined]
        server.serve_forever()
