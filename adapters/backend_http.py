"""What calls to backend information systems share, whatever protocol they speak.

The provider's security server talks to backends over HTTP with aiohttp; this module is
that seam's common part: the client session (no cookie jar, no proxy from the
environment), the translation of every aiohttp and asyncio failure into one
:class:`core.errors.XwegError` (origin ``Server.ServerProxy``), and reading an answer's
body with a size cap.  What is sent and how the answer is read are the protocol
adapters' (:mod:`adapters.rest.backend`, :mod:`adapters.soap.backend`), except for
:func:`fetch_description`, which GETs a service's description (a WSDL, an OpenAPI
document) for the metadata services; reading it is again the protocol adapters'.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import yarl

from adapters.bodies import read_limited
from core.errors import ErrorCode, Origin, XwegError

__all__ = [
    "BoundedBackend",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT_S",
    "new_backend_session",
    "check_backend_session",
    "host_port",
    "backend_errors",
    "read_capped",
    "fetch_description",
]


#: Defaults for a backend call: X-Road's timeout, and the body size it logs (10 MiB).
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024


class BoundedBackend:
    """What every backend client shares: a checked session, a total timeout, a size cap."""

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
        check_backend_session(session)
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_response_bytes = max_response_bytes


def new_backend_session(*, connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
    """A client session fit for backend calls: no cookie jar, no proxy from the environment.

    A shared cookie jar would carry one client's backend cookies into another client's
    requests.  Call from within a running event loop; close it on shutdown.
    """
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


def check_backend_session(session: aiohttp.ClientSession) -> None:
    """Refuse a session that keeps cookies (``ValueError``)."""
    if not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
        # A shared cookie jar would hand one client's backend session to another client.
        raise ValueError(
            "the backend session must not keep cookies: create it with"
            " cookie_jar=aiohttp.DummyCookieJar(), or use new_backend_session()"
        )


def host_port(url: yarl.URL) -> str:
    """``host:port`` of a backend URL, for messages (never its path or query)."""
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
def backend_errors(url: yarl.URL) -> Iterator[None]:
    """Translate everything that can go wrong talking to a backend into one XwegError."""
    where = host_port(url)
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
    except aiohttp.ClientConnectorCertificateError as exc:
        # Said plainly: the fix is the backend's certificate or the service's verify_tls.
        why = getattr(exc.certificate_error, "verify_message", "") or type(exc.certificate_error).__name__
        raise XwegError(
            ErrorCode.NETWORK_ERROR,
            f"the backend at {where} presented a TLS certificate that does not verify ({why})",
            Origin.SERVER_PROXY,
        ) from exc
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


async def read_capped(response: aiohttp.ClientResponse, cap: int, where: str) -> bytes:
    """The answer's body, or ``ServiceFailed`` as soon as it is longer than ``cap`` bytes."""

    def too_large() -> XwegError:
        return XwegError(
            ErrorCode.SERVICE_FAILED,
            f"the backend at {where} answered with more than {cap} bytes",
            Origin.SERVER_PROXY,
        )

    if response.content_length is not None and response.content_length > cap:
        raise too_large()
    return await read_limited(response.content, cap, too_large)


async def fetch_description(
    session: aiohttp.ClientSession, url: str, *, timeout_s: float, max_bytes: int
) -> bytes:
    """GET a service description from a backend: its body, if the backend answers 200.

    Redirects are not followed, the body is read with the cap ``max_bytes`` and not
    decompressed.  Raises :class:`XwegError` with origin ``Server.ServerProxy``:
    ``InternalError`` for a URL that is not absolute http(s), ``NetworkError``,
    ``ServiceFailed.Timeout`` and ``ServiceFailed`` as for any backend call, and
    ``ServiceFailed`` for a status other than 200.
    """
    check_backend_session(session)
    try:
        target = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR, "the service description URL is invalid", Origin.SERVER_PROXY
        ) from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR,
            "the service description URL must be an absolute http(s) URL",
            Origin.SERVER_PROXY,
        )
    where = host_port(target)
    with backend_errors(target):
        async with session.get(
            target,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            auto_decompress=False,
        ) as response:
            if response.status != 200:
                raise XwegError(
                    ErrorCode.SERVICE_FAILED,
                    f"the backend at {where} answered HTTP {response.status} for the service description",
                    Origin.SERVER_PROXY,
                )
            return await read_capped(response, max_bytes, where)
