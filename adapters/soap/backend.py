"""X-Road SOAP 4.0, provider side: call the backend information system's SOAP endpoint.

The provider's security server posts the request to the service's endpoint URL as the
client sent it: the HTTP body byte for byte (the envelope, or the whole multipart message
with its attachments), with its ``Content-Type`` and, if the client sent one,
``SOAPAction`` -- the only HTTP headers X-Road carries end to end.  A SOAP backend reads
the X-Road headers from the envelope, so no ``X-Road-*`` HTTP headers are added.

The answer comes back as a :class:`SoapBackendAnswer` (status, Content-Type, body).  As
X-Road's security server does (after WS-I Basic Profile R1126 and R1137), only HTTP 200,
202 and 500 are answers; any other status, a redirect included (redirects are not
followed), is ``ServiceFailed``.  aiohttp and asyncio errors are translated by
:mod:`adapters.backend_http` (origin ``Server.ServerProxy``) and the body is read with a
size cap.  Reading the answer as SOAP and checking it against the request is
:mod:`adapters.soap.response`'s; which endpoint serves a service is the gateway's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yarl

from adapters.backend_http import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT_S,
    BoundedBackend,
    backend_errors,
    host_port,
    read_capped,
)
from adapters.bodies import body_of
from core.errors import ErrorCode, Origin, XwegError
from core.messages import Protocol, Request

__all__ = [
    "SoapBackend",
    "SoapBackendAnswer",
    "ANSWER_STATUSES",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_MAX_RESPONSE_BYTES",
]

#: The HTTP statuses a SOAP backend answers with: OK, Accepted, and 500 for a SOAP Fault.
ANSWER_STATUSES = frozenset({200, 202, 500})
# aiohttp adds these unless told not to; the request's own Content-Type is sent instead, and
# an added Accept-Encoding would let a backend compress an answer that is then parsed here.
_SKIP_AUTO_HEADERS = ("Accept-Encoding", "Content-Type", "User-Agent")


@dataclass(frozen=True, slots=True)
class SoapBackendAnswer:
    """What the backend answered: HTTP status, Content-Type as sent (``None``: none), body."""

    status: int
    content_type: str | None
    body: bytes = field(repr=False)


def _endpoint(url: str) -> yarl.URL:
    try:
        endpoint = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR, "the SOAP endpoint URL is invalid", Origin.SERVER_PROXY
        ) from exc
    if endpoint.scheme not in ("http", "https") or not endpoint.host or endpoint.raw_fragment:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR,
            "the SOAP endpoint URL must be http(s)://host[:port][/path][?query] without a fragment",
            Origin.SERVER_PROXY,
        )
    return endpoint


def _end_to_end(request: Request) -> list[tuple[str, str]]:
    """Content-Type and SOAPAction as the client sent them, nothing else."""
    names = {"content-type": "Content-Type", "soapaction": "SOAPAction"}
    return [(names[name], value) for name, value in request.header.headers if name in names]


class SoapBackend(BoundedBackend):
    """Calls SOAP backends over HTTP for the provider's security server."""

    async def call(self, endpoint_url: str, request: Request) -> SoapBackendAnswer:
        """POST ``request``'s body to the SOAP endpoint; return the backend's answer.

        ``request`` must be a SOAP request (``ValueError`` otherwise).  Raises
        :class:`XwegError` with origin ``Server.ServerProxy``: ``InternalError`` for an
        invalid endpoint URL, ``NetworkError`` if the backend cannot be reached,
        ``ServiceFailed.Timeout`` if it does not answer within the timeout, and
        ``ServiceFailed`` for a status other than 200, 202 or 500, a malformed answer or
        one larger than the cap.
        """
        if request.header.protocol is not Protocol.SOAP:
            raise ValueError("SoapBackend calls carry SOAP requests only")
        url = _endpoint(endpoint_url)
        where = host_port(url)
        with backend_errors(url):
            async with self._session.post(
                url,
                headers=_end_to_end(request),
                data=body_of(request.body),
                allow_redirects=False,
                timeout=self._timeout,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                auto_decompress=False,
            ) as response:
                if response.status not in ANSWER_STATUSES:
                    raise XwegError(
                        ErrorCode.SERVICE_FAILED,
                        f"the SOAP backend at {where} answered HTTP {response.status}; "
                        "a SOAP service answers 200, 202 or 500",
                        Origin.SERVER_PROXY,
                    )
                body = await read_capped(response, self._max_response_bytes, where)
                return SoapBackendAnswer(response.status, response.headers.get("Content-Type"), body)
