"""Optuna's gRPC storage proxy: the client behind ``grpc://host:port`` URLs, and the server
that ``hybridnas storage-proxy`` runs in front of a database.

One server process holds the database connections and a trial cache for all of its clients,
instead of every worker polling the database on each trial. The proxy protocol has no
heartbeat call, so clients that run trials beat through trial system attrs instead
(:class:`HeartbeatGrpcStorageProxy`).

The protocol has no credentials either: anyone who reaches the port may delete a study. So a
server bound beyond loopback (or given a token) refuses every call without its bearer token,
and the project's client (:class:`TokenGrpcStorageProxy`) sends the token that a
``grpc://host:port?token=TOKEN`` URL or ``$HYBRIDNAS_PROXY_TOKEN`` gives it. The token travels in
plain text: beyond a trusted network, reach the proxy through an SSH tunnel.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import GrpcStorageProxy, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from hybridnas.common import StorageError, UsageError
from hybridnas.storage._database import open_database, stale_trial_retry
from hybridnas.storage._urls import GRPC, check_scheme, grpc_token, mask_url, resolve_url

if TYPE_CHECKING:
    import grpc

# How long a client waits for the server to answer before calling the URL unreachable.
_READY_TIMEOUT_S = 10
# The proxy's token, for the server (`hybridnas storage-proxy`) and for its clients alike.
PROXY_TOKEN_ENV = "HYBRIDNAS_PROXY_TOKEN"
# The trial system attr a beat writes: the writing worker's time.time() (for people to read).
HEARTBEAT_ATTR = "hybridnas:heartbeat"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to bind) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def server_token(env: str, host: str) -> tuple[str | None, bool]:
    """(token, generated) for a service bound to ``host``: ``$env`` when set, else a new random
    token when ``host`` is beyond loopback, else none; ``generated`` says the caller must show it."""
    given = os.environ.get(env, "").strip()
    if given:
        return given, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(32), True


class TokenGrpcStorageProxy(GrpcStorageProxy):
    """Optuna's proxy client, sending ``token`` (when given) with every call, as a server bound
    beyond loopback requires; the token survives pickling (Ray ships storages to workers)."""

    def __init__(self, *, host: str, port: int, token: str | None = None) -> None:
        self._token = token
        super().__init__(host=host, port=port)

    def _setup(self) -> None:
        super()._setup()
        if self._token is None:
            return
        import grpc
        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.client import GrpcClientCache

        from hybridnas.storage._proxy_auth import SendToken

        self._channel = grpc.intercept_channel(self._channel, SendToken(self._token))
        self._stub = api_pb2_grpc.StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)


class HeartbeatGrpcStorageProxy(TokenGrpcStorageProxy, BaseHeartbeat):
    """A proxy client whose trials beat, so that a killed worker's trial is failed and re-queued
    as it is on the database directly (:func:`optuna.storages.fail_stale_trials`).

    A beat is one call through the proxy: ``set_trial_system_attr`` of :data:`HEARTBEAT_ATTR`.
    Clocks: the beat is written on one machine and judged on another, and no clock is compared
    with another machine's. A judge only asks whether a RUNNING trial's beat *changed*: it
    remembers, on its own ``time.monotonic()``, since when it has seen each beat unchanged, and
    calls the trial stale once that is longer than the grace period. So skewed or stepped clocks
    never fail a live trial; the price is that a judge has to watch a trial for one grace period
    before failing it, a worker started after the kill included. A RUNNING trial without any beat
    is judged the same way: Optuna's heartbeat thread beats as the trial starts, so a trial still
    unbeaten after a grace period lost its worker before the first beat.

    Every worker that runs trials of the study must therefore beat through a proxy: a trial run
    on the database directly beats in the database's heartbeat table, which no proxy client can
    read, and would be failed after the grace period.
    """

    def __init__(
        self, *, host: str, port: int, heartbeat_interval: int, grace_period: int | None = None, max_retry: int = 3,
        token: str | None = None,
    ) -> None:
        super().__init__(host=host, port=port, token=token)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period if grace_period is not None else 2 * heartbeat_interval
        self._stale_trial_callback = stale_trial_retry(max_retry)
        # study id -> trial id -> (the beat last seen, monotonic time it was first seen)
        self._unchanged_since: dict[int, dict[int, tuple[Any, float]]] = {}

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            pass  # another worker already failed it as stale; this one learns so when it reports

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.monotonic()
        watched = self._unchanged_since.get(study_id, {})
        current: dict[int, tuple[Any, float]] = {}
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            seen = watched.get(trial._trial_id)
            current[trial._trial_id] = seen if seen is not None and seen[0] == beat else (beat, now)
        self._unchanged_since[study_id] = current  # forgets the trials that are no longer RUNNING
        return [trial_id for trial_id, (_, since) in current.items() if now - since > self._grace_period]

    def get_heartbeat_interval(self) -> int:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> RetryHeartbeatStaleTrialCallback:
        return self._stale_trial_callback


def open_proxy(
    url: str,
    host: str,
    port: int,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int = 3,
) -> GrpcStorageProxy:
    """A client of ``hybridnas storage-proxy``, checked reachable and let in so a typo or a missing
    token fails here in one line; with ``heartbeat_interval`` a :class:`HeartbeatGrpcStorageProxy`
    (see :func:`open_storage`). The token is the URL's ``?token=``, else ``$HYBRIDNAS_PROXY_TOKEN``."""
    token = grpc_token(url) or os.environ.get(PROXY_TOKEN_ENV, "").strip() or None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            if heartbeat_interval is None:
                proxy = TokenGrpcStorageProxy(host=host, port=port, token=token)
            else:
                proxy = HeartbeatGrpcStorageProxy(
                    host=host, port=port, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                    max_retry=max_retry, token=token,
                )
    except ImportError:
        raise StorageError(f"{mask_url(url)} needs the gRPC client: pip install grpcio") from None
    try:
        proxy.wait_server_ready(timeout=_READY_TIMEOUT_S)
    except ConnectionError:
        proxy.close()
        raise StorageError(
            f"no storage proxy answers at {mask_url(url)} within {_READY_TIMEOUT_S}s; "
            f"start one with: hybridnas storage-proxy --storage URL --host {host} --port {port}"
        ) from None
    _check_let_in(proxy, url, token)
    return proxy


def _check_let_in(proxy: GrpcStorageProxy, url: str, token: str | None) -> None:
    """One cheap call, so that a refused token is one error now instead of one per trial later."""
    import grpc

    try:
        proxy.get_study_id_from_name("hybridnas:token-check")
    except KeyError:
        pass  # no such study: the call got through
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise
        proxy.close()
        given = "refused the token it was given" if token else "requires a token"
        raise StorageError(
            f"the storage proxy at {mask_url(url)} {given}; set ${PROXY_TOKEN_ENV} to the proxy's token "
            "or use grpc://host:port?token=TOKEN"
        ) from None


def _check_port_free(host: str, port: int) -> None:
    """gRPC only logs a failed bind and then serves nothing, so test the port first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as err:
            raise UsageError(f"cannot listen on {host}:{port} ({err.strerror}); choose another port") from None


def serve_proxy(
    url: str | None, host: str, port: int, *, token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the database behind ``url`` to ``grpc://host:port`` clients until Ctrl-C, then return.

    With ``token``, every call without it is refused (UNAUTHENTICATED); bound beyond loopback a
    token is required, since anyone who reaches the port could otherwise delete studies. Every
    check (the URL, the port, opening the database) runs before anything is served, so a mistake
    is one error instead of a server that never answers. ``on_ready`` is called once the server
    answers, with the database URL as :func:`mask_url` prints it: the moment to announce the address.
    """
    url = resolve_url(url)
    if url.startswith(GRPC):
        raise UsageError(f"a storage proxy serves a database URL, not another proxy: {mask_url(url)}")
    if token is None and not is_loopback(host):
        raise UsageError(f"a storage proxy bound to {host} needs a token; set ${PROXY_TOKEN_ENV}")
    _check_port_free(host, port)
    check_scheme(url)
    # Optuna asks for get_storage(): it wraps the RDBStorage in its trial cache, without which
    # every GetTrials call of every worker reads the whole study from the database. Proxy
    # clients keep their heartbeats in trial system attrs and judge them themselves
    # (HeartbeatGrpcStorageProxy), so the server's storage needs none of its own.
    cached = optuna.storages.get_storage(open_database(url))
    server = _start_server(cached, host, port, token)
    if on_ready is not None:
        on_ready(mask_url(url))
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=None)


def _start_server(storage: optuna.storages.BaseStorage, host: str, port: int, token: str | None) -> grpc.Server:
    """Optuna's proxy service (as ``run_grpc_proxy_server`` builds it), behind the token check
    (Optuna's own server takes no interceptors), started: it answers once this returns."""
    import grpc
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    from hybridnas.storage._proxy_auth import RequireToken

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        server = grpc.server(ThreadPoolExecutor(max_workers=10),
                             interceptors=[RequireToken(token)] if token is not None else None)
        api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    server.add_insecure_port(f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}")
    server.start()
    return server
