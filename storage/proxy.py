"""`hpsearch proxy`: Optuna's gRPC storage proxy in front of the study database, for many workers.

Every worker on PostgreSQL holds its own connections (a pool, a budget lock, heartbeats); hundreds of workers would
need hundreds of server connections. Through the proxy they hold one gRPC channel each and the proxy holds the
database connections (`grpc://HOST:PORT` as the workers' storage URL).

What changes through the proxy, and how hpsearch keeps its promises:

- **Heartbeats.** Optuna's proxy carries no heartbeats, so a killed worker's trial would stay RUNNING for ever.
  `ProxyStorage` records each running trial's heartbeat as a system attribute through the proxy (the worker's
  clock; the grace period, minutes, dwarfs the drift of machines kept by NTP) and finds stale trials from it, so
  Optuna's own stale-trial check and the one retry work as on a direct connection. A trial that never beat
  counts from when this process first saw it so (its own monotonic clock: never another machine's time zone);
  a retry starts without its failed trial's last beat. A beat that cannot be sent (the proxy restarting) is
  logged and the next one tried; database errors behind the proxy reach the workers as outages they wait out.
- **The exact budget.** Workers cannot take the database lock through the proxy. The budget then rests on the
  safety net every worker runs (`search/budget.check_budget`): trial numbers are given out by the database in
  creation order, and a trial runs only if fewer than the budget of trials numbered before it hold a place; a
  surplus trial ends FAIL without training. Exactly the budget of trials complete (measured: BENCHMARKS.md).
- **Security.** The proxy has no authentication and can read and write every study of its database: it listens
  on loopback unless told otherwise, and says so when told.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError

logger = logging.getLogger("hpsearch")

if TYPE_CHECKING:
    import optuna

PROXY_SCHEME = "grpc://"
# In the details of a gRPC error: the database behind the proxy is unreachable (workers wait, as for an outage).
OUTAGE_MARK = "hpsearch: database unreachable behind the proxy"
DEFAULT_PORT = 13000
HEARTBEAT_ATTR = "hpsearch:heartbeat"


def is_proxy_url(url: str) -> bool:
    return url.startswith(PROXY_SCHEME)


def proxy_address(url: str) -> tuple[str, int]:
    """HOST and PORT of `grpc://HOST:PORT`.

    Raises:
        UsageError: not of that form.
    """
    match = re.fullmatch(r"grpc://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})/?", url)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise UsageError(f"proxy storage {url!r} is not grpc://HOST:PORT (e.g. grpc://127.0.0.1:{DEFAULT_PORT}, "
                         "where `hpsearch proxy` listens)")
    return match.group(1).strip("[]"), int(match.group(2))


def open_proxy(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
               retry: bool = True) -> optuna.storages.BaseStorage:
    """The storage behind the proxy at `url`, with heartbeats when `heartbeat_interval` is given.

    Raises:
        UsageError: the URL is not grpc://HOST:PORT.
        HpsearchError: no proxy answers there.
    """
    import grpc

    host, port = proxy_address(url)
    with warnings.catch_warnings():  # Optuna flags its gRPC client experimental; it is its documented way to scale
        warnings.simplefilter("ignore")
        storage = _proxy_class()(host=host, port=port)
    storage.configure_heartbeat(heartbeat_interval, grace_period, retry)
    try:
        storage.get_all_studies()  # one round trip: a missing proxy is said now, not at the first trial
    except grpc.RpcError as exc:
        raise HpsearchError(f"no hpsearch proxy answers at {url} ({_status(exc)}); start one with `hpsearch proxy "
                            f"--storage DATABASE_URL --port {port}` on {host}") from None
    return storage


def _status(exc: Any) -> str:
    code = getattr(exc, "code", None)
    return code().name if callable(code) else type(exc).__name__


_PROXY_CLASS: type | None = None


def _proxy_class() -> type:
    """Optuna's gRPC client with heartbeats over system attributes (built on first use: gRPC loads only then)."""
    global _PROXY_CLASS
    if _PROXY_CLASS is not None:
        return _PROXY_CLASS
    import grpc
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import GrpcStorageProxy
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class ProxyStorage(GrpcStorageProxy, BaseHeartbeat):
        """`GrpcStorageProxy` whose running trials beat through the proxy (see the module's docstring)."""

        _interval: int | None = None
        _grace: int | None = None
        _callback: Callable[..., None] | None = None
        _beatless_since: dict[int, float] | None = None

        def configure_heartbeat(self, interval: int | None, grace: int | None, retry: bool) -> None:
            from hpsearch.storage._rdb import MAX_RETRY

            self._interval, self._grace = interval, (grace or (2 * interval if interval else None))
            self._beatless_since = {}
            if interval and retry:
                self._callback = _fresh_retry(MAX_RETRY)

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
            except (UpdateFinishedTrialError, KeyError):
                pass  # the trial ended (or its study was deleted) between two beats
            except grpc.RpcError as exc:  # the proxy restarting: Optuna's beat thread must not die of it
                logger.warning("heartbeat of trial %d not sent (%s); trying again in %ss", trial_id, _status(exc),
                               self._interval)

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            if not self._grace:
                return []
            if self._beatless_since is None:
                self._beatless_since = {}
            running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            return _stale_trial_ids(running, self._grace, self._beatless_since)

        def get_heartbeat_interval(self) -> int | None:
            return self._interval

        def get_heartbeat_stale_trial_callback(self) -> Callable[..., None] | None:
            return self._callback

    _PROXY_CLASS = ProxyStorage
    return ProxyStorage


def _fresh_retry(max_retry: int) -> Callable[..., None]:
    """Optuna's retry of a stale trial, minus the failed trial's last beat: the retry copies its system attributes,
    and with the old beat it would look stale before it beats itself."""
    import optuna

    retry_once = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def fresh_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != HEARTBEAT_ATTR}
        retry_once(study, trial)

    return fresh_retry


def _stale_trial_ids(running: list[Any], grace: float, beatless_since: dict[int, float]) -> list[int]:
    """The running trials whose last beat (wall clock, written by their worker) is older than `grace`, and those
    that never beat for `grace` seconds of this process's monotonic clock (`beatless_since`, updated here: another
    machine's clock never ages a trial that has not beaten)."""
    now, clock = time.time(), time.monotonic()
    stale, ids = [], set()
    for t in running:
        ids.add(t._trial_id)
        last = t.system_attrs.get(HEARTBEAT_ATTR)
        if last is not None:
            beatless_since.pop(t._trial_id, None)
            if now - float(last) > grace:
                stale.append(t._trial_id)
        elif clock - beatless_since.setdefault(t._trial_id, clock) > grace:
            stale.append(t._trial_id)
    for trial_id in set(beatless_since) - ids:
        del beatless_since[trial_id]  # it beat, or ended
    return stale


def serve(storage_url: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, threads: int = 16,
          on_listening: Callable[[str], None] | None = None) -> None:
    """Serves the study database at `storage_url` to workers at grpc://HOST:PORT until interrupted.

    Raises:
        UsageError: the database URL is itself a proxy's, or the port is taken.
        HpsearchError: the database cannot be opened.
    """
    import socket
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import optuna

    from hpsearch.storage._rdb import open_storage

    if is_proxy_url(storage_url):
        raise UsageError("the proxy serves a database: pass its URL (sqlite:///FILE or postgresql+psycopg://...), "
                         "not another proxy's")
    # Optuna's trial cache over the database (its docs' advice for the proxy): the workers ask for the study's
    # trials several times per trial; without it each request reads every trial of the study.
    storage = _OutagesMarked(optuna.storages.get_storage(open_storage(
        storage_url, heartbeat_interval=None, grace_period=None, retry=False, pool_size=threads)))
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or stop what "
                             "holds it") from None
    if on_listening is not None:
        on_listening(f"grpc://{host}:{port}")
    with warnings.catch_warnings():  # Optuna flags the proxy experimental; it is its documented way to scale out
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port,
                                              thread_pool=ThreadPoolExecutor(max_workers=threads))


class _OutagesMarked:
    """The proxy's storage, whose database errors reach the workers marked as an outage (gRPC reports any server
    exception as UNKNOWN with its text; `OUTAGE_MARK` in that text tells the workers to wait, not to fail)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._storage, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            from hpsearch.storage._rdb import STORAGE_ERRORS

            try:
                return attr(*args, **kwargs)
            except STORAGE_ERRORS as exc:
                raise RuntimeError(f"{OUTAGE_MARK} ({type(exc).__name__})") from exc

        return call
