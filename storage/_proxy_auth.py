"""The storage proxy's bearer token on the wire: a server interceptor that refuses calls without
it, and a client interceptor that attaches it to every call.

Optuna's proxy protocol carries no credentials of its own, so the token travels as gRPC
metadata (``authorization: Bearer TOKEN``). Kept apart from :mod:`._proxy` so that opening a
database URL does not import grpc.
"""

from __future__ import annotations

import collections
import hmac
from collections.abc import Callable
from typing import Any

import grpc

_HEADER = "authorization"


def _bearer(token: str) -> str:
    return f"Bearer {token}"


class RequireToken(grpc.ServerInterceptor):
    """Answers UNAUTHENTICATED to every call whose metadata lacks the token, before Optuna's
    servicer sees it (constant-time comparison)."""

    def __init__(self, token: str) -> None:
        self._expected = _bearer(token).encode()

        def refuse(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "this storage proxy needs its token: set HYBRIDNAS_PROXY_TOKEN on the client")

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        given = dict(handler_call_details.invocation_metadata or ()).get(_HEADER, "")
        if hmac.compare_digest(str(given).encode(), self._expected):
            return continuation(handler_call_details)
        return self._refusal


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                                            "compression")),
    grpc.ClientCallDetails,
):
    """grpc.ClientCallDetails with our metadata added (grpc's own type is not public)."""


class SendToken(grpc.UnaryUnaryClientInterceptor):
    """Adds ``authorization: Bearer TOKEN`` to every call of a proxy client (all are unary)."""

    def __init__(self, token: str) -> None:
        self._metadata = ((_HEADER, _bearer(token)),)

    def intercept_unary_unary(
        self, continuation: Callable[[grpc.ClientCallDetails, Any], Any], client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        details = _CallDetails(
            client_call_details.method, client_call_details.timeout,
            (*(client_call_details.metadata or ()), *self._metadata), client_call_details.credentials,
            client_call_details.wait_for_ready, client_call_details.compression,
        )
        return continuation(details, request)

