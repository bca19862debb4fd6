"""X-Road REST r1, provider side: call the backend information system.

The provider's security server maps a service to the backend's base URL and appends the
request's path and query exactly as the client sent them (still percent-encoded).  The
end-to-end headers travel on, with X-Road's informational ``X-Road-*`` headers added; the
answer comes back as ``(status, headers, body)``, whatever the status: a backend's own 404
or 500 is its answer, not an exchange failure.  Redirects are returned, not followed.

This is the one seam to a REST backend: aiohttp and asyncio errors are translated into
:class:`core.errors.XwegError` (origin ``Server.ServerProxy``, by
:mod:`adapters.backend_http`, which SOAP calls share), and the response body is read with a
size cap.  Deciding which base URL serves a service is left to the gateway.
"""

from __future__ import annotations

import aiohttp
import yarl

from adapters.backend_http import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT_S,
    BoundedBackend,
    backend_errors,
    host_port,
    new_backend_session,
    read_capped,
)
from adapters.bodies import body_of
from adapters.rest.inbound import check_rest_path, is_hop_by_hop
from core.errors import ErrorCode, Origin, XwegError
from core.messages import MAX_HEADER_VALUE, MAX_HEADERS, Request

__all__ = ["RestBackend", "new_backend_session", "DEFAULT_TIMEOUT_S", "DEFAULT_MAX_RESPONSE_BYTES"]


# Not forwarded back: they describe the backend's hop or are rewritten by our server.
_DROPPED_RESPONSE_HEADERS = frozenset({"server", "content-length", "transfer-encoding", "date"})
# aiohttp adds these unless told not to; the client's own headers decide instead (an added
# Accept-Encoding would let a backend compress an answer the client never asked to be
# compressed, since bodies pass through undecoded).
_SKIP_AUTO_HEADERS = ("Accept-Encoding", "Content-Type", "User-Agent")


def _backend_url(base_url: str, path: str, query: str) -> yarl.URL:
    try:
        base = yarl.URL(base_url)
    except (ValueError, TypeError) as exc:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR, "the backend base URL is invalid", Origin.SERVER_PROXY
        ) from exc
    if base.scheme not in ("http", "https") or not base.host or base.raw_query_string or base.raw_fragment:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR,
            "the backend base URL must be http(s)://host[:port][/path] without query or fragment",
            Origin.SERVER_PROXY,
        )
    text = str(base).rstrip("/") + path
    if query:
        text += "?" + query
    # encoded=True: the client's percent-encoding reaches the backend byte for byte.
    return yarl.URL(text, encoded=True)


def _request_headers(request: Request) -> list[tuple[str, str]]:
    header = request.header
    headers = list(header.headers)
    headers += [
        ("X-Road-Client", header.client.slash()),
        ("X-Road-Service", header.service.slash()),
        ("X-Road-Id", header.message_id),
    ]
    if header.user_id is not None:
        headers.append(("X-Road-UserId", header.user_id))
    if header.issue is not None:
        headers.append(("X-Road-Issue", header.issue))
    if header.represented_party is not None:
        headers.append(("X-Road-Represented-Party", header.represented_party))
    return headers


def _response_headers(response: aiohttp.ClientResponse, where: str) -> tuple[tuple[str, str], ...]:
    items = [(name.lower(), value) for name, value in response.headers.items()]
    connection_tokens = frozenset(
        token.strip().lower()
        for name, value in items
        if name == "connection"
        for token in value.split(",")
        if token.strip()
    )
    kept: list[tuple[str, str]] = []
    for name, value in items:
        # The X-Road-* namespace belongs to the exchange layer, not to the backend.
        if name in _DROPPED_RESPONSE_HEADERS or name.startswith("x-road-"):
            continue
        if is_hop_by_hop(name, connection_tokens):
            continue
        if len(value) > MAX_HEADER_VALUE or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            # Surrogates stand for bytes that are not UTF-8: they could not be hashed or signed.
            raise XwegError(
                ErrorCode.SERVICE_FAILED,
                f"the backend at {where} sent an invalid {name!r} header",
                Origin.SERVER_PROXY,
            )
        kept.append((name, value))
    if len(kept) > MAX_HEADERS:
        raise XwegError(
            ErrorCode.SERVICE_FAILED,
            f"the backend at {where} sent more than {MAX_HEADERS} headers",
            Origin.SERVER_PROXY,
        )
    return tuple(kept)


class RestBackend(BoundedBackend):
    """Calls backend information systems over HTTP for the provider's security server."""

    async def call(self, base_url: str, request: Request) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        """Send ``request`` to the backend at ``base_url``; return ``(status, headers, body)``.

        Response header names are lower-case; hop-by-hop and framing headers are dropped.
        Raises :class:`XwegError`: ``Client.InvalidRequest`` for an unsafe path or query (see
        :func:`~adapters.rest.inbound.check_rest_path`), and with origin ``Server.ServerProxy``
        ``NetworkError`` if the backend cannot be reached, ``ServiceFailed.Timeout`` if it does
        not answer within the timeout, ``ServiceFailed`` if its answer is malformed or larger
        than the cap.
        """
        header = request.header
        # The path came from another security server; check it again before any backend
        # sees it (X-Road's encoded-traversal bypass was exactly a path trusted too early).
        check_rest_path(header.path, header.query)
        url = _backend_url(base_url, header.path, header.query)
        where = host_port(url)
        with backend_errors(url):
            async with self._session.request(
                header.method,
                url,
                headers=_request_headers(request),
                # No body at all rather than an empty one: a GET must not grow a Content-Length.
                data=body_of(request.body) if request.body else None,
                allow_redirects=False,
                timeout=self._timeout,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                # Bodies pass through as sent, Content-Encoding included.
                auto_decompress=False,
            ) as response:
                headers = _response_headers(response, where)
                body = await read_capped(response, self._max_response_bytes, where)
                return response.status, headers, body
