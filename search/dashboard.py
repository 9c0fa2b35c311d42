"""`hpsearch dashboard`: optuna-dashboard on the study storage, with the project's artifact store."""

from __future__ import annotations

import ipaddress
import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080, artifacts: str | None = None,
          ready: object | None = None) -> None:
    """Serves the dashboard until interrupted. `ready`, when given, is a `threading.Event` set once listening."""
    import optuna_dashboard

    from hpsearch.storage import artifact_dir, open_storage
    from hpsearch.storage.artifacts import open_artifact_store

    storage = open_storage(storage_url, heartbeat_interval=None, grace_period=None, retry=False)
    store = open_artifact_store(artifact_dir(storage_url, artifacts))
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    with make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler) as server:
        if ready is not None:
            ready.set()  # type: ignore[attr-defined]
        server.serve_forever()
