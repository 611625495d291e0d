"""Storage URLs: which one to use, which schemes are accepted, and how they print.

Every message and log line that names a URL or quotes a driver goes through :func:`mask_url`
or :func:`scrubbed_reason`, so a password written in the URL never reaches the user's screen.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

import sqlalchemy.exc
from sqlalchemy.engine import make_url

from hybridnas.common import StorageError

DEFAULT_STORAGE_URL = "sqlite:///hybridnas.db"
STORAGE_ENV = "HYBRIDNAS_STORAGE"
PSYCOPG = "postgresql+psycopg"
GRPC = "grpc://"

_USERINFO = re.compile(r"(?P<head>://[^:/@]*:)(?P<password>.*)@(?P<tail>[^@]*)$")
# Query parameters that carry a secret: password=, token=, S3's presigned X-Amz-Signature= and the like.
_QUERY_PASSWORD = re.compile(
    r"(?P<key>[?&][\w.-]*(?:password|passwd|token|secret|signature|credential|api_?key|access_?key)=)"
    r"(?P<password>[^&\s#]*)",
    re.IGNORECASE,
)
_GRPC_ADDRESS = re.compile(
    r"grpc://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})/?(?:\?token=(?P<token>[^&#]+))?"
)


def mask_url(url: str) -> str:
    """The URL (or a line quoting one, such as an access log's request line) with its password,
    token and other secrets replaced by ``***``; text without a secret is unchanged."""
    url = _QUERY_PASSWORD.sub(r"\g<key>***", url)
    match = _USERINFO.search(url)
    if match is None:
        return url
    return url[: match.start("password")] + "***" + url[match.end("password") :]


def _passwords(url: str) -> set[str]:
    """The password as written in the URL and percent-decoded, as a driver may quote either."""
    found = {m.group("password") for m in (_USERINFO.search(url), *_QUERY_PASSWORD.finditer(url)) if m}
    return {p for raw in found for p in (raw, unquote(raw)) if p}


def scrubbed_reason(err: BaseException, url: str) -> str:
    """The driver's own reason on one line, scrubbed of the URL's password (SQLAlchemy may quote URLs)."""
    reason = getattr(err, "orig", None) or err
    text = " ".join(str(reason).split()) or type(reason).__name__
    for secret in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the given one, else ``$HYBRIDNAS_STORAGE``, else the SQLite default.

    ``postgresql://`` and ``postgres://`` are pointed at the psycopg 3 driver, the only
    PostgreSQL driver hybridnas installs.
    """
    url = url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE_URL
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return PSYCOPG + "://" + url[len(prefix) :]
    return url


def grpc_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``grpc://host:port[?token=TOKEN]`` URL, None for database URLs."""
    if not url.startswith(GRPC):
        return None
    match = _GRPC_ADDRESS.fullmatch(url)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise StorageError(f"a storage proxy URL is grpc://host:port[?token=TOKEN] (port 1-65535), got {mask_url(url)}")
    return match.group("host"), int(match.group("port"))


def grpc_token(url: str) -> str | None:
    """The proxy token a ``grpc://host:port?token=TOKEN`` URL carries (percent-decoded), else None."""
    match = _GRPC_ADDRESS.fullmatch(url)
    return unquote(match.group("token")) if match and match.group("token") else None


def check_scheme(url: str) -> None:
    """Reject, in one masked line, a URL that no hybridnas storage can open, before any driver sees it."""
    masked = mask_url(url)
    if grpc_address(url) is not None:
        return
    if "{" in url or "}" in url:  # RDBStorage formats the URL as a template
        raise StorageError(f"percent-encode braces in the storage URL as %7B and %7D: {masked}")
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise StorageError(f"not a database URL: {masked}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):  # each open would be a new, empty database
            raise StorageError(f"{masked} is an in-memory database that no other command or worker sees; "
                               "use sqlite:///path/to/file.db")
        return
    if parsed.drivername != PSYCOPG:
        raise StorageError(
            f"unsupported storage URL scheme '{parsed.drivername}' in {masked}; "
            f"use sqlite:///path/to/file.db or {PSYCOPG}://user:password@host:5432/db"
        )
