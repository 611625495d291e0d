"""Where studies and their artifacts live: one Optuna RDB storage plus a file artifact store.

URLs accepted by :func:`open_storage`:

* ``sqlite:///path/to/hybridnas.db`` -- the embedded default (:data:`DEFAULT_STORAGE_URL`,
  relative to the working directory), enough for one machine; several local processes may
  share the file (a busy timeout makes writers wait instead of failing).
* ``postgresql+psycopg://user:password@host:5432/db`` -- for real deployments with workers on
  several machines. Plain ``postgresql://`` and ``postgres://`` are rewritten to the psycopg 3
  driver.
* ``grpc://host:port`` -- Optuna's gRPC storage proxy (``hybridnas storage-proxy``, which runs
  :func:`serve_proxy`) in front of one of the above: many workers share one database
  connection pool and one trial cache instead of each polling the database. Needs ``grpcio``.
  Workers behind it beat through trial system attrs (:class:`HeartbeatGrpcStorageProxy`), so a
  killed worker's trial is failed and retried as on the database directly; all workers that
  run trials of one study should then go through a proxy. A proxy bound beyond loopback lets
  in only clients with its token: ``grpc://host:port?token=TOKEN`` or ``$HYBRIDNAS_PROXY_TOKEN``
  (:class:`TokenGrpcStorageProxy`).

When no URL is given, ``$HYBRIDNAS_STORAGE`` is used, then :data:`DEFAULT_STORAGE_URL`.
Passwords and tokens never leave this package unmasked: every error is a one-line
:class:`StorageError` naming the problem and the URL as :func:`mask_url` prints it, and every
command prints URLs through :func:`mask_url` too.

Artifacts (exported configs, checkpoints) go to the Optuna artifact store that
:func:`artifact_store` opens at :func:`artifacts_location`: the location given explicitly,
else ``$HYBRIDNAS_ARTIFACTS``, else ``<db stem>-artifacts/`` next to a SQLite file or
``./hybridnas-artifacts``. A location is a directory (or ``file:///abs/path``) or
``s3://bucket/prefix``, which needs ``pip install 'hybridnas[s3]'`` and takes its endpoint
(``$AWS_ENDPOINT_URL``, so MinIO works too) and credentials from boto3. Workers on other
machines need a location they all reach; :func:`is_shared_location` says whether it is.

Schema: :class:`~optuna.storages.RDBStorage` creates the tables of a new database. A database
written by an older Optuna fails the compatibility check; it is *not* upgraded behind the
user's back (other workers may still run the old version), the error names the exact command
instead: ``optuna storage upgrade --storage URL`` (Optuna's own CLI, which runs
``RDBStorage(url, skip_compatibility_check=True).upgrade()``). A database already at Optuna's
head revision opens without importing alembic (``_schema``), which keeps `status` and `export`
quick.
"""

from __future__ import annotations

from hybridnas.common import StorageError
from hybridnas.storage._artifacts import artifact_store, artifacts_location, artifacts_path, is_shared_location
from hybridnas.storage._database import stale_trial_retry
from hybridnas.storage._open import load_study, open_storage, retried_from
from hybridnas.storage._proxy import (
    PROXY_TOKEN_ENV,
    HeartbeatGrpcStorageProxy,
    TokenGrpcStorageProxy,
    is_loopback,
    serve_proxy,
    server_token,
)
from hybridnas.storage._urls import DEFAULT_STORAGE_URL, mask_url, resolve_url

__all__ = [
    "DEFAULT_STORAGE_URL",
    "HeartbeatGrpcStorageProxy",
    "PROXY_TOKEN_ENV",
    "StorageError",
    "TokenGrpcStorageProxy",
    "artifact_store",
    "artifacts_location",
    "artifacts_path",
    "is_loopback",
    "is_shared_location",
    "load_study",
    "mask_url",
    "open_storage",
    "resolve_url",
    "retried_from",
    "serve_proxy",
    "server_token",
    "stale_trial_retry",
]
