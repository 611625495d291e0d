"""Where studies and their artifacts live: one Optuna RDB storage plus a file artifact store.

URLs accepted by :func:`open_storage`:

* ``sqlite:///path/to/hybridnas.db`` -- the embedded default (:data:`DEFAULT_STORAGE_URL`,
  relative to the working directory), enough for one machine; several local processes may
  share the file (a busy timeout makes writers wait instead of failing).
* ``postgresql+psycopg://user:password@host:5432/db`` -- for real deployments with workers on
  several machines. Plain ``postgresql://`` and ``postgres://`` are rewritten to the psycopg 3
  driver.
* ``grpc://host:port`` -- Optuna's gRPC storage proxy (``hybridnas storage-proxy``) in front of
  one of the above: many workers share one database connection pool and one trial cache
  instead of each polling the database. Needs ``grpcio``. The proxy client records no
  heartbeats, so a killed worker's trial stays RUNNING instead of being failed and retried.

When no URL is given, ``$HYBRIDNAS_STORAGE`` is used, then :data:`DEFAULT_STORAGE_URL`.
Passwords never leave this module unmasked: every error is a one-line :class:`StorageError`
naming the problem and the URL as :func:`mask_url` prints it.

Artifacts (exported configs, checkpoints) live beside the storage, see :func:`artifacts_path`:
``<db stem>-artifacts/`` next to a SQLite file, else ``$HYBRIDNAS_ARTIFACTS`` or
``./hybridnas-artifacts``. Workers on other machines need that folder on a shared path.

Schema: :class:`~optuna.storages.RDBStorage` creates the tables of a new database. A database
written by an older Optuna fails the compatibility check; it is *not* upgraded behind the
user's back (other workers may still run the old version), the error names the exact command
instead: ``optuna storage upgrade --storage URL`` (Optuna's own CLI, which runs
``RDBStorage(url, skip_compatibility_check=True).upgrade()``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
import warnings
from pathlib import Path
from urllib.parse import unquote

import optuna
import sqlalchemy.exc
from optuna.artifacts import FileSystemArtifactStore
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage
from optuna.storages import GrpcStorageProxy
from optuna.storages import RDBStorage
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url

__all__ = [
    "DEFAULT_STORAGE_URL",
    "StorageError",
    "artifact_store",
    "artifacts_path",
    "load_study",
    "mask_url",
    "open_storage",
    "resolve_url",
    "retried_from",
]

DEFAULT_STORAGE_URL = "sqlite:///hybridnas.db"
STORAGE_ENV = "HYBRIDNAS_STORAGE"
ARTIFACTS_ENV = "HYBRIDNAS_ARTIFACTS"
DEFAULT_ARTIFACTS_DIR = "hybridnas-artifacts"

_PSYCOPG = "postgresql+psycopg"
_GRPC = "grpc://"
_SQLITE_BUSY_TIMEOUT_S = 30
_PG_CONNECT_TIMEOUT_S = 10
# Recycle pooled connections before typical server/proxy idle timeouts cut them.
_PG_POOL_RECYCLE_S = 1800
# How long a PostgreSQL storage call waits out an unreachable server (restart, failover) before
# giving up, and the longest pause between its tries.
_PG_RETRY_S = 120
_PG_RETRY_MAX_PAUSE_S = 5.0
_logger = logging.getLogger(__name__)
_USERINFO = re.compile(r"(?P<head>://[^:/@]*:)(?P<password>.*)@(?P<tail>[^@]*)$")
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)(?P<password>[^&]*)")
_GRPC_ADDRESS = re.compile(r"grpc://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})/?")


class StorageError(Exception):
    """The storage cannot be used; the message is one line, with the password masked."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``; URLs without a password are unchanged."""
    url = _QUERY_PASSWORD.sub(r"\g<key>***", url)
    match = _USERINFO.search(url)
    if match is None:
        return url
    return url[: match.start("password")] + "***" + url[match.end("password") :]


def _passwords(url: str) -> set[str]:
    """The password as written in the URL and percent-decoded, as a driver may quote either."""
    found = {m.group("password") for m in (_USERINFO.search(url), _QUERY_PASSWORD.search(url)) if m}
    return {p for raw in found for p in (raw, unquote(raw)) if p}


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the given one, else ``$HYBRIDNAS_STORAGE``, else the SQLite default.

    ``postgresql://`` and ``postgres://`` are pointed at the psycopg 3 driver, the only
    PostgreSQL driver hybridnas installs.
    """
    url = url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE_URL
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return _PSYCOPG + "://" + url[len(prefix) :]
    return url


def _one_line(err: BaseException, secrets: set[str]) -> str:
    """The driver's own reason on one line, scrubbed of the password (SQLAlchemy may quote URLs)."""
    reason = getattr(err, "orig", None) or err
    text = " ".join(str(reason).split()) or type(reason).__name__
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _engine_kwargs(url: str) -> dict:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"echo": False, "connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}}
    return {
        "echo": False,
        "hide_parameters": True,
        "pool_pre_ping": True,
        "pool_recycle": _PG_POOL_RECYCLE_S,
        "connect_args": {"connect_timeout": _PG_CONNECT_TIMEOUT_S},
    }


def _transient(err: BaseException) -> BaseException | None:
    """A lost or refused database connection (or a serialization failure / deadlock, which
    psycopg also raises as OperationalError) anywhere in the chain of causes, else None.
    Optuna wraps commit errors in StorageInternalError; the driver error is its cause."""
    seen = 0
    cause: BaseException | None = err
    while cause is not None and seen < 10:
        # PendingRollbackError: a session still holding the transaction a lost connection broke
        transient = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.PendingRollbackError)
        if isinstance(cause, transient):
            return cause
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
            return cause
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


def _retrying(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        deadline = time.monotonic() + _PG_RETRY_S
        pause = 0.25
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as err:
                cause = _transient(err)
                if cause is None or time.monotonic() + pause > deadline:
                    raise
                reason = _one_line(cause, _passwords(self.url))
                _logger.warning("storage call %s failed (%s); retrying in %.2gs", method.__name__, reason, pause)
            time.sleep(pause)
            pause = min(pause * 2, _PG_RETRY_MAX_PAUSE_S)

    return call


class _RetryingRDBStorage(RDBStorage):
    """An RDBStorage whose calls wait out a database server that is briefly unreachable.

    ``pool_pre_ping`` replaces connections that died while idle in the pool, but a call made
    while the server is down (a restart takes seconds) raises, and a worker's trial would
    crash, then Optuna's own bookkeeping of that crash, then the worker. Each storage call is
    one transaction that rolls back on error, so it is retried with backoff (0.25 s doubling to
    5 s, for up to 2 minutes) when the error is a lost or refused connection. The one thing a
    retry cannot know is whether a commit whose acknowledgement was lost did land; a server
    restart aborts in-flight transactions, so that needs the server to die exactly after
    committing.
    """


# Every storage method (Study and Trial go through these), the heartbeat's own two, and the
# private ones Optuna's _CachedStorage calls on its backend (load_study wraps RDBStorage in it).
_RETRIED = [n for n, m in vars(BaseStorage).items() if callable(m) and not n.startswith("_")]
_CACHED_STORAGE_CALLS = ("_create_new_trial", "_get_trials", "_set_trial_param", "_get_best_trial_id")
for _name in (*_RETRIED, "record_heartbeat", "_get_stale_trial_ids",
              *(n for n in _CACHED_STORAGE_CALLS if hasattr(RDBStorage, n))):
    setattr(_RetryingRDBStorage, _name, _retrying(getattr(RDBStorage, _name)))


def _grpc_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``grpc://host:port`` URL, None for database URLs."""
    if not url.startswith(_GRPC):
        return None
    match = _GRPC_ADDRESS.fullmatch(url)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise StorageError(f"a storage proxy URL is grpc://host:port (port 1-65535), got {mask_url(url)}")
    return match.group("host"), int(match.group("port"))


def _open_proxy(url: str, host: str, port: int) -> GrpcStorageProxy:
    """A client of ``hybridnas storage-proxy``, checked reachable so a typo fails here in one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            proxy = GrpcStorageProxy(host=host, port=port)
    except ImportError:
        raise StorageError(f"{url} needs the gRPC client: pip install grpcio") from None
    try:
        proxy.wait_server_ready(timeout=_PG_CONNECT_TIMEOUT_S)
    except ConnectionError:
        proxy.close()
        raise StorageError(
            f"no storage proxy answers at {url} within {_PG_CONNECT_TIMEOUT_S}s; "
            f"start one with: hybridnas storage-proxy --storage URL --host {host} --port {port}"
        ) from None
    return proxy


def _check_scheme(url: str) -> None:
    masked = mask_url(url)
    if _grpc_address(url) is not None:
        return
    if "{" in url or "}" in url:  # RDBStorage formats the URL as a template
        raise StorageError(f"percent-encode braces in the storage URL as %7B and %7D: {masked}")
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise StorageError(f"not a database URL: {masked}") from None
    if parsed.get_backend_name() == "sqlite":
        return
    if parsed.drivername != _PSYCOPG:
        raise StorageError(
            f"unsupported storage URL scheme '{parsed.drivername}' in {masked}; "
            f"use sqlite:///path/to/file.db or {_PSYCOPG}://user:password@host:5432/db"
        )


def open_storage(
    url: str | None = None,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int | None = None,
    max_retry: int = 3,
) -> RDBStorage | GrpcStorageProxy:
    """Open (and create the schema of) the RDB storage behind ``url``, or connect to a proxy.

    With ``heartbeat_interval`` set, every trial run under :meth:`optuna.study.Study.optimize`
    records a heartbeat; a RUNNING trial whose last beat is older than ``grace_period``
    (default: twice the interval) is failed the next time any worker asks for a trial, and
    re-queued as a WAITING copy up to ``max_retry`` times (see :func:`retried_from`). That is
    what lets a study survive killed workers. A PostgreSQL storage also retries calls that find
    the server unreachable (see :class:`_RetryingRDBStorage`). Pass ``heartbeat_interval=None`` for read-only
    users such as the dashboard. A ``grpc://host:port`` URL gives a
    :class:`~optuna.storages.GrpcStorageProxy`; the heartbeat arguments then belong to the
    proxy's own storage and are ignored here.
    """
    url = resolve_url(url)
    _check_scheme(url)
    address = _grpc_address(url)
    if address is not None:
        return _open_proxy(url, *address)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            callback = RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat_interval else None
            rdb = _RetryingRDBStorage if make_url(url).get_backend_name() == "postgresql" else RDBStorage
            return rdb(
                url,
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=callback,
            )
    except RuntimeError as err:
        if "optuna storage upgrade" not in str(err):
            raise
        raise StorageError(
            f"the schema of {mask_url(url)} was written by an older Optuna; upgrade it with: "
            f"optuna storage upgrade --storage '{mask_url(url)}' (put the real password in place of ***)"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        raise StorageError(f"cannot open storage {mask_url(url)}: {_one_line(err, _passwords(url))}") from None


def load_study(study_name: str, url: str | None = None, **storage_kwargs) -> optuna.Study:
    """Load an existing study, or say which studies the storage does hold."""
    storage = open_storage(url, **storage_kwargs)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies())
        known = ", ".join(names) if names else "none"
        raise StorageError(
            f"no study named '{study_name}' in {mask_url(resolve_url(url))} (studies there: {known})"
        ) from None


def retried_from(trial: FrozenTrial) -> int | None:
    """The number of the original trial that ``trial`` re-runs after a stale heartbeat, if any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def artifacts_path(url: str | None = None) -> Path:
    """The artifact folder that belongs to the storage behind ``url``.

    ``$HYBRIDNAS_ARTIFACTS`` wins when set. Otherwise a SQLite file ``runs/nas.db`` keeps its
    artifacts in ``runs/nas-artifacts/``, and any other storage uses ``./hybridnas-artifacts``.
    Artifacts are plain files: workers on other machines must see the same folder (a shared
    or network file system mounted at the same path, set through ``$HYBRIDNAS_ARTIFACTS``).
    """
    if os.environ.get(ARTIFACTS_ENV):
        return Path(os.environ[ARTIFACTS_ENV])
    url = resolve_url(url)
    _check_scheme(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(parsed.database)
        return db.with_name(f"{db.stem}-artifacts")
    return Path(DEFAULT_ARTIFACTS_DIR)


def artifact_store(url: str | None = None) -> FileSystemArtifactStore:
    """An Optuna artifact store in :func:`artifacts_path` (created if missing)."""
    path = artifacts_path(url)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))
