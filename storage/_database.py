"""The Optuna RDB storage behind a SQLite or PostgreSQL URL: engine settings, heartbeats, schema check."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from hybridnas.common import StorageError
from hybridnas.storage._retrying import RetryingRDBStorage
from hybridnas.storage._schema import schema_aware_open
from hybridnas.storage._urls import mask_url, scrubbed_reason

_SQLITE_BUSY_TIMEOUT_S = 30
_PG_CONNECT_TIMEOUT_S = 10
# Recycle pooled connections before typical server/proxy idle timeouts cut them.
_PG_POOL_RECYCLE_S = 1800


def _engine_kwargs(url: str) -> dict:
    """SQLite writers wait for each other; PostgreSQL connections are checked, recycled, bounded
    in connect time, and keep query parameters out of logs."""
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


class SQLiteRDBStorage(RDBStorage):
    """Optuna's RDB storage on SQLite, where one worker alone claims a WAITING trial.

    Optuna claims a WAITING trial (a retrain job, a re-queued trial of a dead worker) by reading
    its state with SELECT ... FOR UPDATE, then writing RUNNING. SQLite ignores FOR UPDATE and
    pysqlite runs the read outside a transaction, so two workers could both read WAITING and
    both run the trial; the second to finish then fails with "Cannot tell a COMPLETE trial".
    Here the claim is one conditional UPDATE, which SQLite serializes.
    """

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if state != TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        from optuna.storages._rdb.models import TrialModel  # Optuna's own table, as RDBStorage uses it

        claim = (
            sqlalchemy.update(TrialModel)
            .where(TrialModel.trial_id == trial_id, TrialModel.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=datetime.now())
        )
        with self.engine.begin() as connection:
            if connection.execute(claim).rowcount == 1:
                return True
        # Not WAITING: Optuna's own answer (False, or UpdateFinishedTrialError for a finished one).
        return super().set_trial_state_values(trial_id, state)


def stale_trial_retry(max_retry: int) -> RetryHeartbeatStaleTrialCallback:
    """What a heartbeat storage does with a trial it failed as stale: re-queue it as a WAITING
    copy, at most ``max_retry`` times, so a killed worker's architecture is still trained."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def open_database(
    url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int = 3
) -> RDBStorage:
    """The RDB storage of a resolved, scheme-checked database URL (see :func:`open_storage`).

    Without ``heartbeat_interval`` it records no heartbeats, as the proxy server needs none.
    A database written by an older Optuna is not upgraded here (other workers may still run
    that version): the error names Optuna's own upgrade command instead.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            callback = stale_trial_retry(max_retry) if heartbeat_interval else None
            rdb = RetryingRDBStorage if make_url(url).get_backend_name() == "postgresql" else SQLiteRDBStorage
            engine_kwargs = _engine_kwargs(url)
            with schema_aware_open(url, engine_kwargs) as schema_options:
                return rdb(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=callback,
                    **schema_options,
                )
    except RuntimeError as err:
        if "optuna storage upgrade" not in str(err):
            raise
        raise StorageError(
            f"the schema of {mask_url(url)} was written by an older Optuna; upgrade it with: "
            f"optuna storage upgrade --storage '{mask_url(url)}' (put the real password in place of ***)"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        raise StorageError(f"cannot open storage {mask_url(url)}: {scrubbed_reason(err, url)}") from None
