"""optuna-dashboard over a study storage, with the trials' artifacts served beside it.

optuna-dashboard has no access control: its HTTP API deletes and renames studies, tells trials,
writes notes and user attrs and uploads or deletes artifacts for anyone who reaches the port.
So its app runs behind :class:`AccessGuard`: read-only unless writes are allowed, and a token on
every request when the dashboard is reachable beyond this machine.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import socket
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hybridnas.common import UsageError

DASHBOARD_TOKEN_ENV = "HYBRIDNAS_DASHBOARD_TOKEN"
# How long a connection may stay silent before it is dropped; each open connection holds a thread.
IDLE_CONNECTION_S = 30.0
# Methods that read; every state-changing route of optuna-dashboard 0.21 is POST, PUT or DELETE.
_READS = frozenset({"GET", "HEAD"})

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class AccessGuard:
    """WSGI middleware in front of optuna-dashboard's app.

    With ``token``, a request passes only with ``Authorization: Bearer TOKEN`` or the cookie a
    page load with ``?token=TOKEN`` sets (that load is redirected without the token, so it
    leaves the address bar); anything else is 401. Without ``allow_writes``, every method but
    GET and HEAD is 403; with it, a write from another site's page (its ``Origin``) still is.
    """

    def __init__(self, app: WSGIApp, *, token: str | None, allow_writes: bool, cookie: str) -> None:
        self._app = app
        self._token = token
        self._allow_writes = allow_writes
        self._cookie = cookie
        # The cookie holds a digest of the token, not the token: cookie-safe, and not the secret itself.
        digest = hmac.new((token or "").encode(), b"hybridnas-dashboard", hashlib.sha256)
        self._cookie_value = digest.hexdigest()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if self._token is not None:
            query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            given = [value for key, value in query if key == "token"]
            if given and self._same(given[-1], self._token):
                if method in _READS:
                    return self._enter(environ, [(k, v) for k, v in query if k != "token"], start_response)
            elif given or not self._authorized(environ):
                return _refuse(start_response, "401 Unauthorized", (
                    "this dashboard needs its token: send 'Authorization: Bearer TOKEN', or open it once as "
                    f"/?token=TOKEN (the token is ${DASHBOARD_TOKEN_ENV}, or the one printed at its start)"
                ), [("WWW-Authenticate", "Bearer")])
        if method not in _READS:
            if not self._allow_writes:
                return _refuse(start_response, "403 Forbidden", (
                    f"this dashboard is read-only: {method} refused (studies, trials, notes and artifacts cannot "
                    "be changed); restart it with --allow-writes to allow changes"
                ))
            origin = environ.get("HTTP_ORIGIN")
            if origin and urlsplit(origin).netloc != environ.get("HTTP_HOST"):
                return _refuse(start_response, "403 Forbidden", f"{method} from another site's page ({origin}) refused")
        return self._app(environ, start_response)

    @staticmethod
    def _same(given: str, expected: str) -> bool:
        return hmac.compare_digest(given.encode(), expected.encode())

    def _authorized(self, environ: dict[str, Any]) -> bool:
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and self._same(credentials.strip(), self._token or ""):
            return True
        try:
            morsel = SimpleCookie(environ.get("HTTP_COOKIE", "")).get(self._cookie)
        except CookieError:
            return False
        return morsel is not None and self._same(morsel.value, self._cookie_value)

    def _enter(
        self, environ: dict[str, Any], rest: list[tuple[str, str]], start_response: StartResponse
    ) -> list[bytes]:
        """A page load with the right ``?token=``: set the cookie, and go to the same page without it."""
        location = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "/")) or "/"
        if rest:
            location += "?" + urlencode(rest)
        cookie = f"{self._cookie}={self._cookie_value}; Path=/; HttpOnly; SameSite=Lax"
        start_response("303 See Other", [("Location", location), ("Set-Cookie", cookie), ("Content-Length", "0")])
        return [b""]


def _refuse(start_response: StartResponse, status: str, reason: str,
            headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    """A JSON refusal in optuna-dashboard's own error shape, which its pages show."""
    body = json.dumps({"reason": reason}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, with the access log's request lines masked (a ``?token=`` load is logged),
    and a connection that stays silent for :data:`IDLE_CONNECTION_S` dropped without a traceback."""

    timeout = IDLE_CONNECTION_S

    def handle(self) -> None:
        try:
            super().handle()
        except TimeoutError:
            self.close_connection = True

    def address_string(self) -> str:
        return self.client_address[0]  # no reverse DNS lookup per request

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        from hybridnas.storage import mask_url

        super().log_message(format, *(mask_url(a) if isinstance(a, str) else a for a in args))


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per connection. Alone it answers one connection at a time, and
    a client that connects and sends nothing (a browser's speculative preconnect, or anyone who can
    reach the port) would hold every other request until it went away."""

    daemon_threads = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def serve_dashboard(
    storage_url: str | None,
    host: str,
    port: int,
    artifacts: str | None = None,
    *,
    allow_writes: bool = False,
    token: str | None = None,
    on_ready: Callable[[str, str], None] | None = None,
) -> None:
    """Serve until interrupted; a port already in use is a one-line error, not a traceback.

    ``artifacts`` is the location the workers wrote to (see
    :func:`~hybridnas.storage.artifacts_location`), so the dashboard shows the same files. The
    dashboard is read-only unless ``allow_writes``; with ``token`` every request needs it, and
    bound beyond loopback a token is required. ``on_ready`` is called with the storage URL and
    the artifact location as :func:`~hybridnas.storage.mask_url` prints them, once both opened.
    """
    import optuna_dashboard

    from hybridnas.storage import artifact_store, artifacts_location, is_loopback, mask_url, open_storage, resolve_url

    if token is None and not is_loopback(host):
        raise UsageError(f"a dashboard bound to {host} needs a token; set ${DASHBOARD_TOKEN_ENV}")
    storage = open_storage(storage_url, heartbeat_interval=None)
    store = artifact_store(storage_url, artifacts)
    app = AccessGuard(optuna_dashboard.wsgi(storage, artifact_store=store), token=token, allow_writes=allow_writes,
                      cookie=f"hybridnas-dashboard-{port}")
    try:
        server = make_server(host.strip("[]"), port, app, _IPv6Server if ":" in host else _Server,
                             _Handler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use; choose another port") from None
        raise UsageError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    if on_ready is not None:
        on_ready(mask_url(resolve_url(storage_url)), mask_url(artifacts_location(storage_url, artifacts)))
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
