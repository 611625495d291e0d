"""A PostgreSQL storage that waits out a database server that is briefly unreachable."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy.exc
from optuna.storages import RDBStorage

from hybridnas.storage._urls import scrubbed_reason

# How long a PostgreSQL storage call waits out an unreachable server (restart, failover) before
# giving up, and the longest pause between its tries.
_PG_RETRY_S = 120
_PG_RETRY_MAX_PAUSE_S = 5.0
_logger = logging.getLogger("hybridnas.storage")  # the package's logger, the one users configure

# Every public BaseStorage method (Study and Trial go through these) and the heartbeat's own two.
_RETRIED = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    "get_trial_params",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "remove_session",
    "check_trial_is_updatable",
    "record_heartbeat",
    "_get_stale_trial_ids",
)
# The private RDBStorage methods Optuna's _CachedStorage calls on its backend (load_study wraps
# RDBStorage in it). Optuna internals: those the installed Optuna lacks are skipped.
_CACHED_STORAGE_CALLS = ("_create_new_trial", "_get_trials", "_set_trial_param", "_get_best_trial_id")

_Storage = TypeVar("_Storage", bound=type[RDBStorage])


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


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` retried with backoff while it fails for a :func:`_transient` reason."""

    @functools.wraps(method)
    def call(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + _PG_RETRY_S
        pause = 0.25
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as err:
                cause = _transient(err)
                if cause is None or time.monotonic() + pause > deadline:
                    raise
                reason = scrubbed_reason(cause, self.url)
                _logger.warning("storage call %s failed (%s); retrying in %.2gs", method.__name__, reason, pause)
            time.sleep(pause)
            pause = min(pause * 2, _PG_RETRY_MAX_PAUSE_S)

    return call


def _retries(names: tuple[str, ...], *, if_present: tuple[str, ...] = ()) -> Callable[[_Storage], _Storage]:
    """Class decorator: the inherited methods ``names`` (and those of ``if_present`` the class
    has) replaced by :func:`_retrying` versions. A name in ``names`` the class lacks is an error,
    so an Optuna that renames a storage method fails at import instead of losing its retries."""

    def decorate(cls: _Storage) -> _Storage:
        for name in (*names, *(n for n in if_present if hasattr(cls, n))):
            setattr(cls, name, _retrying(getattr(cls, name)))
        return cls

    return decorate


@_retries(_RETRIED, if_present=_CACHED_STORAGE_CALLS)
class RetryingRDBStorage(RDBStorage):
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
