"""X-Road REST r1, client side: what goes back to the information system.

Two pieces: the response headers that accompany a provider's answer (its end-to-end
headers plus X-Road's ``X-Road-*`` response headers), and the rendering of an exchange
layer failure as X-Road's REST error (status, ``X-Road-Error`` header, JSON body).  Writing
the HTTP response is left to the server.
"""

from __future__ import annotations

import json

from adapters.rest.inbound import is_hop_by_hop
from core.errors import ErrorCode, XwegError
from core.messages import RequestHeader, ResponseHeader

__all__ = ["response_headers_for_client", "render_rest_error", "ERROR_CONTENT_TYPE"]

ERROR_CONTENT_TYPE = "application/json; charset=utf-8"

# Framing is the server's to write; a provider's copy could contradict the body sent.
_FRAMING = frozenset({"content-length", "transfer-encoding", "server", "date"})


def _provider_headers(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    connection_tokens = frozenset(
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    )
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        # The X-Road-* namespace belongs to the exchange layer: a backend must not be able
        # to forge X-Road-Error or X-Road-Request-Hash towards the client.
        if lower.startswith("x-road-") or lower in _FRAMING or is_hop_by_hop(lower, connection_tokens):
            continue
        kept.append((lower, value))
    return kept


def response_headers_for_client(
    request: RequestHeader, response: ResponseHeader, *, request_hash: str
) -> list[tuple[str, str]]:
    """The headers of a successful exchange's response to the information system.

    The provider's end-to-end headers, in order, followed by ``X-Road-Id``,
    ``X-Road-Client``, ``X-Road-Service``, ``X-Road-Request-Id`` and
    ``X-Road-Request-Hash`` (``request_hash``: base64 of the request digest).
    """
    headers = _provider_headers(response.headers)
    headers += [
        ("X-Road-Id", response.message_id),
        ("X-Road-Client", request.client.slash()),
        ("X-Road-Service", request.service.slash()),
        ("X-Road-Request-Id", request.message_id),
        ("X-Road-Request-Hash", request_hash),
    ]
    return headers


def render_rest_error(error: XwegError) -> tuple[int, list[tuple[str, str]], bytes]:
    """X-Road's REST error: ``(status, headers, body)`` for an exchange layer failure.

    The body is ``{"type": <fault code>, "message": <message>, "detail": <correlation id>}``;
    the ``X-Road-Error`` header carries the fault code, so clients can tell an exchange
    failure from a provider's own error status.  A refused client token (401) also gets
    the ``WWW-Authenticate`` challenge HTTP requires with that status (RFC 6750).
    """
    body = json.dumps(
        {"type": error.fault_code, "message": error.message, "detail": error.correlation_id},
        ensure_ascii=False,
    ).encode("utf-8", "backslashreplace")
    headers = [("Content-Type", ERROR_CONTENT_TYPE), ("X-Road-Error", error.fault_code)]
    if error.code is ErrorCode.INVALID_CLIENT_TOKEN:
        headers.append(("WWW-Authenticate", 'Bearer realm="xweg-client-proxy"'))
    return error.http_status, headers, body
