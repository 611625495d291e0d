"""Where a study's artifacts live (a directory or an S3 prefix), and Optuna's artifact store there.

A location is resolved here and nowhere else: the explicit one (a flag), else
``$HYBRIDNAS_ARTIFACTS``, else a folder derived from the storage URL (:func:`artifacts_path`).
It may be a directory path, ``file:///abs/path`` or ``s3://bucket/prefix``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import make_url

from hybridnas.common import StorageError
from hybridnas.storage._urls import check_scheme, mask_url, resolve_url, scrubbed_reason

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

ARTIFACTS_ENV = "HYBRIDNAS_ARTIFACTS"
DEFAULT_ARTIFACTS_DIR = "hybridnas-artifacts"
S3 = "s3"
FILE = "file"

_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


class PrefixedArtifactStore:
    """An Optuna artifact store that keeps every artifact under ``prefix/`` of another store.

    Optuna's Boto3ArtifactStore writes artifact ids at the bucket's root; the prefix lets
    several studies or teams share one bucket.
    """

    def __init__(self, store: ArtifactStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix.strip("/") + "/"

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(self._prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self._prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(self._prefix + artifact_id)


def _scheme(location: str) -> str | None:
    """The URL scheme of ``location`` in lower case, None for a plain path."""
    match = _SCHEME.match(location)
    return match.group("scheme").lower() if match else None


def _s3_parts(location: str) -> tuple[str, str]:
    """(bucket, prefix without surrounding slashes) of an ``s3://bucket/prefix`` URL.

    Credentials written into the URL are refused: the location is printed, recorded in the
    study and handed to every worker, so it must hold no secret.
    """
    if mask_url(location) != location:
        raise StorageError(
            f"an S3 artifact location takes its credentials from the AWS_* variables (or boto3's other sources), "
            f"not from the URL: {mask_url(location)}"
        )
    bucket, _, prefix = location[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"an S3 artifact location is s3://bucket/prefix, got {mask_url(location)}")
    return bucket, prefix.strip("/")


def _directory(location: str) -> Path:
    """The folder a path or ``file://`` location names; any other URL is refused."""
    scheme = _scheme(location)
    if scheme is None:
        return Path(location)
    if scheme == FILE:
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"a file artifact location is file:///absolute/path, got {mask_url(location)}")
        return Path(unquote(parts.path))
    if scheme == S3:
        raise StorageError(f"artifacts in {mask_url(location)} are in S3, not in a directory")
    raise StorageError(
        f"unsupported artifact location scheme '{scheme}' in {mask_url(location)}; "
        "use a directory, file:///absolute/path or s3://bucket/prefix"
    )


def _default_path(url: str | None) -> Path:
    """``<db stem>-artifacts/`` beside a SQLite file, else ``./hybridnas-artifacts``."""
    url = resolve_url(url)
    check_scheme(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(parsed.database)
        return db.with_name(f"{db.stem}-artifacts")
    return Path(DEFAULT_ARTIFACTS_DIR)


def artifacts_path(url: str | None = None) -> Path:
    """The artifact folder that belongs to the storage behind ``url``.

    ``$HYBRIDNAS_ARTIFACTS`` wins when set. Otherwise a SQLite file ``runs/nas.db`` keeps its
    artifacts in ``runs/nas-artifacts/``, and any other storage uses ``./hybridnas-artifacts``.
    An S3 location has no folder: use :func:`artifacts_location` and :func:`artifact_store`.
    """
    given = os.environ.get(ARTIFACTS_ENV)
    return _directory(given) if given else _default_path(url)


def artifacts_location(storage_url: str | None = None, artifacts: str | None = None) -> str:
    """Where the artifacts go, as one string to print and to hand to other nodes.

    ``artifacts`` (a flag) wins, then ``$HYBRIDNAS_ARTIFACTS``, then :func:`artifacts_path`'s
    folder beside the storage. An S3 location comes back as ``s3://bucket[/prefix]``; a
    directory the user named comes back as an absolute ``file://`` URL (the user's word that
    every node mounts it at that path); the default folder comes back as a plain absolute path,
    which only the launcher's machine is known to see (see :func:`is_shared_location`).
    """
    given = artifacts or os.environ.get(ARTIFACTS_ENV)
    if not given:
        return str(_default_path(storage_url).resolve())
    if _scheme(given) == S3:
        bucket, prefix = _s3_parts(given)
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    return _directory(given).resolve().as_uri()


def is_shared_location(location: str) -> bool:
    """Whether every node of a cluster can reach ``location`` (an :func:`artifacts_location`).

    S3 and ``file://`` URLs are shared; a plain path, the default beside the storage, is
    assumed to be on the launcher's disk only.
    """
    return _scheme(location) in (S3, FILE)


def _s3_store(location: str) -> ArtifactStore:
    """Optuna's Boto3 store on the bucket, checked now so a bad URL fails before any trial runs.

    boto3 finds the endpoint (``$AWS_ENDPOINT_URL_S3``, ``$AWS_ENDPOINT_URL``) and the
    credentials through its usual chain.
    """
    bucket, prefix = _s3_parts(location)
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
        from optuna.artifacts import Boto3ArtifactStore
    except ImportError:
        raise StorageError(f"artifacts in {mask_url(location)} need boto3: pip install 'hybridnas[s3]'") from None
    try:
        client = boto3.client("s3")
        client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError, ValueError) as err:
        code = str(err.response.get("Error", {}).get("Code")) if isinstance(err, ClientError) else None
        if code in ("404", "NoSuchBucket"):
            reason = f"no bucket '{bucket}' at {client.meta.endpoint_url}"
        elif code in ("403", "AccessDenied"):
            reason = f"access to bucket '{bucket}' at {client.meta.endpoint_url} denied; check the AWS credentials"
        else:
            reason = scrubbed_reason(err, location)
        raise StorageError(f"cannot open the artifact store {mask_url(location)}: {reason}") from None
    store = Boto3ArtifactStore(bucket, client)
    return PrefixedArtifactStore(store, prefix) if prefix else store


def artifact_store(storage_url: str | None = None, artifacts: str | None = None) -> ArtifactStore:
    """The Optuna artifact store at :func:`artifacts_location` (a directory is created if missing).

    Every failure, including an unreachable S3 endpoint or a missing bucket, is a one-line
    :class:`StorageError` raised here, not at the first upload.
    """
    location = artifacts_location(storage_url, artifacts)
    if _scheme(location) == S3:
        return _s3_store(location)
    path = _directory(location)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create the artifact folder {path}: {err.strerror}") from None
    from optuna.artifacts import FileSystemArtifactStore  # optuna.artifacts imports boto3, when installed

    return FileSystemArtifactStore(str(path))
