"""X-Road REST r1, provider side: call the backend information system.

The provider's security server maps a service to the backend's base URL and appends the
request's path and query exactly as the client sent them (still percent-encoded).  The
end-to-end headers travel on, with X-Road's informational ``X-Road-*`` headers added; the
answer comes back as ``(status, headers, body)``, whatever the status: a backend's own 404
or 500 is its answer, not an exchange failure.  Redirects are returned, not followed.

This is the one seam to the backend: aiohttp and asyncio errors are translated into
:class:`core.errors.XwegError` here (origin ``Server.ServerProxy``), and the response body
is read with a size cap.  Deciding which base URL serves a service is left to the gateway.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import yarl

from adapters.rest.inbound import check_rest_path, is_hop_by_hop
from core.errors import ErrorCode, Origin, XwegError
from core.messages import MAX_HEADER_VALUE, MAX_HEADERS, Request

__all__ = ["RestBackend", "new_backend_session", "DEFAULT_TIMEOUT_S", "DEFAULT_MAX_RESPONSE_BYTES"]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024  # X-Road logs REST bodies up to 10 MiB
_READ_CHUNK_BYTES = 64 * 1024

# Not forwarded back: they describe the backend's hop or are rewritten by our server.
_DROPPED_RESPONSE_HEADERS = frozenset({"server", "content-length", "transfer-encoding", "date"})
# aiohttp adds these unless told not to; the client's own headers decide instead (an added
# Accept-Encoding would let a backend compress an answer the client never asked to be
# compressed, since bodies pass through undecoded).
_SKIP_AUTO_HEADERS = ("Accept-Encoding", "Content-Type", "User-Agent")


def new_backend_session(*, connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
    """A client session fit for backend calls: no cookie jar, no proxy from the environment.

    A shared cookie jar would carry one client's backend cookies into another client's
    requests.  Call from within a running event loop; close it on shutdown.
    """
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


def _host_port(url: yarl.URL) -> str:
    return f"{url.host}:{url.port}"


def _reason(exc: BaseException) -> str:
    """A short, stack-free reason for a network failure ("connection refused")."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "name resolution failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection was closed before a response"
    os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(os_error, OSError) and os_error.errno:
        # The errno's text, not str(exc): that one carries addresses and library detail.
        return os.strerror(os_error.errno).lower()
    if isinstance(exc, ConnectionResetError | aiohttp.ClientConnectionResetError):
        return "the connection was reset"
    return type(exc).__name__


@contextmanager
def _backend_errors(url: yarl.URL) -> Iterator[None]:
    """Translate everything that can go wrong talking to a backend into one XwegError."""
    where = _host_port(url)
    try:
        yield
    except XwegError:
        raise
    except TimeoutError as exc:
        # asyncio.TimeoutError is TimeoutError on Python 3.11, and aiohttp's
        # ServerTimeoutError and ConnectionTimeoutError derive from it.
        raise XwegError(
            ErrorCode.SERVICE_TIMEOUT, f"the backend at {where} did not answer in time", Origin.SERVER_PROXY
        ) from exc
    except aiohttp.InvalidURL as exc:
        raise XwegError(ErrorCode.INTERNAL_ERROR, "the backend URL is invalid", Origin.SERVER_PROXY) from exc
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise XwegError(
            ErrorCode.NETWORK_ERROR,
            f"cannot reach the backend at {where}: {_reason(exc)}",
            Origin.SERVER_PROXY,
        ) from exc
    except (aiohttp.ClientError, ValueError) as exc:
        # ClientPayloadError, ClientResponseError (malformed response), and header values
        # aiohttp refuses to send.
        raise XwegError(
            ErrorCode.SERVICE_FAILED,
            f"the backend at {where} sent a malformed response ({type(exc).__name__})",
            Origin.SERVER_PROXY,
        ) from exc


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


class RestBackend:
    """Calls backend information systems over HTTP for the provider's security server."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")
        if not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
            # A shared cookie jar would hand one client's backend session to another client.
            raise ValueError(
                "the backend session must not keep cookies: create it with"
                " cookie_jar=aiohttp.DummyCookieJar(), or use new_backend_session()"
            )
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_response_bytes = max_response_bytes

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
        where = _host_port(url)
        with _backend_errors(url):
            async with self._session.request(
                header.method,
                url,
                headers=_request_headers(request),
                # No body at all rather than an empty one: a GET must not grow a Content-Length.
                data=request.body or None,
                allow_redirects=False,
                timeout=self._timeout,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                # Bodies pass through as sent, Content-Encoding included.
                auto_decompress=False,
            ) as response:
                headers = _response_headers(response, where)
                body = await self._read_capped(response, where)
                return response.status, headers, body

    async def _read_capped(self, response: aiohttp.ClientResponse, where: str) -> bytes:
        cap = self._max_response_bytes
        if response.content_length is not None and response.content_length > cap:
            raise self._too_large(where)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await response.content.read(_READ_CHUNK_BYTES)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                raise self._too_large(where)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, where: str) -> XwegError:
        return XwegError(
            ErrorCode.SERVICE_FAILED,
            f"the backend at {where} answered with more than {self._max_response_bytes} bytes",
            Origin.SERVER_PROXY,
        )
