"""Fetching OCSP responses over HTTP: the one network seam of :mod:`trust`'s revocation checking.

:func:`fetch_ocsp_response` POSTs a DER request (RFC 6960 appendix A.1) and returns
the DER response body, bounded in size and time.  It does not judge the response:
that is :func:`trust.ocsp.check_ocsp_response`'s job, done by whoever relies on it.
Every failure of the exchange (refused connection, timeout, HTTP error status, wrong
content type, oversized body) becomes one :class:`~trust.errors.OcspFetchError` whose
message names the URL and what went wrong; aiohttp's exceptions do not escape.
"""

from __future__ import annotations

import asyncio

import aiohttp

from trust.errors import OcspFetchError

__all__ = [
    "OCSP_REQUEST_CONTENT_TYPE",
    "OCSP_RESPONSE_CONTENT_TYPE",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "fetch_ocsp_response",
]

OCSP_REQUEST_CONTENT_TYPE = "application/ocsp-request"
OCSP_RESPONSE_CONTENT_TYPE = "application/ocsp-response"
#: Whole exchange, connection included, in seconds.
DEFAULT_TIMEOUT_S = 10.0
#: Bound on a response body; ours are under 1 KiB.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
_READ_CHUNK = 8192


async def fetch_ocsp_response(
    session: aiohttp.ClientSession,
    url: str,
    request_der: bytes,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_size: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> bytes:
    """POST ``request_der`` to the responder at ``url`` and return its DER response body."""
    if not isinstance(request_der, bytes) or not request_der:
        raise ValueError("request_der must be non-empty bytes")
    if not timeout_s > 0 or max_size <= 0:
        raise ValueError("timeout_s and max_size must be positive")
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(
                url,
                data=request_der,
                headers={"Content-Type": OCSP_REQUEST_CONTENT_TYPE, "Accept": OCSP_RESPONSE_CONTENT_TYPE},
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    raise OcspFetchError(f"OCSP responder {url} answered HTTP {response.status}")
                if response.content_type != OCSP_RESPONSE_CONTENT_TYPE:
                    raise OcspFetchError(
                        f"OCSP responder {url} answered with content type {response.content_type!r}, "
                        f"not {OCSP_RESPONSE_CONTENT_TYPE}"
                    )
                if response.content_length is not None and response.content_length > max_size:
                    raise OcspFetchError(
                        f"OCSP responder {url} sent {response.content_length} bytes, "
                        f"more than the limit of {max_size}"
                    )
                body = bytearray()
                async for chunk in response.content.iter_chunked(_READ_CHUNK):
                    body += chunk
                    if len(body) > max_size:
                        raise OcspFetchError(
                            f"OCSP responder {url} sent more than the limit of {max_size} bytes"
                        )
    except TimeoutError:
        raise OcspFetchError(f"OCSP responder {url} did not answer within {timeout_s:g} s") from None
    except aiohttp.ClientConnectorError as exc:
        raise OcspFetchError(f"cannot connect to OCSP responder {url}: {exc.os_error or exc}") from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise OcspFetchError(f"OCSP request to {url} failed: {exc}") from exc
    if not body:
        raise OcspFetchError(f"OCSP responder {url} sent an empty response")
    return bytes(body)
