"""Opening a storage URL, loading a study from it, and reading what its heartbeats did."""

from __future__ import annotations

import warnings

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import GrpcStorageProxy
from optuna.storages import RDBStorage
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from hybridnas.common import StorageError
from hybridnas.storage._database import open_database
from hybridnas.storage._proxy import open_proxy
from hybridnas.storage._urls import check_scheme, grpc_address, mask_url, resolve_url


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
    the server unreachable (see :class:`~hybridnas.storage._retrying.RetryingRDBStorage`). Pass
    ``heartbeat_interval=None`` for read-only users such as the dashboard. A ``grpc://host:port``
    URL gives a :class:`~optuna.storages.GrpcStorageProxy`, with ``heartbeat_interval`` set a
    :class:`~hybridnas.storage.HeartbeatGrpcStorageProxy`, whose trials beat and are
    failed and re-queued the same way through the proxy.
    """
    url = resolve_url(url)
    check_scheme(url)
    address = grpc_address(url)
    if address is not None:
        return open_proxy(
            url, *address, heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry
        )
    return open_database(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry)


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
