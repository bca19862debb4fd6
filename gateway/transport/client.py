"""Sending framed messages to peer security servers over pooled mutual-TLS connections.

One aiohttp session (and so one keep-alive pool) per peer and per set of pinned
certificates: a TLS handshake happens once per connection, never per message.  When
global configuration registers a new certificate or address for a peer, a new pool
is made for it and the old one is closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509

from adapters.bodies import body_of, read_limited
from core.errors import ErrorCode, Origin, XwegError
from gateway.transport.frame import CONTENT_TYPE
from gateway.transport.receive import read_frame
from gateway.transport.tls import pinned_client_context
from trust.certificates import fingerprint
from trust.globalconf import SecurityServerInfo

__all__ = ["PeerClient", "PeerResponse", "PeerCredentials", "EXCHANGE_PATH", "OCSP_PATH"]

EXCHANGE_PATH = "/xweg/v1/exchange"
#: Where a security server offers its auth certificate and that certificate's OCSP response.
OCSP_PATH = "/xweg/v1/ocsp"
_MAX_CREDENTIALS_BYTES = 64 * 1024
_Slot = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """A peer's auth certificate, as it offered it, and that certificate's OCSP response.

    Messages then go only over connections pinned to exactly this certificate.
    """

    certificate: x509.Certificate
    ocsp_response: bytes | None
    fetched_at: dt.datetime


@dataclass(frozen=True, slots=True)
class PeerResponse:
    """A peer's answer.  A 200 answer is a frame, read as its head and its body apart
    (``decode_frame(head, body)``); any other answer is all in ``body``, ``head`` empty."""

    status: int
    headers: dict[str, str]
    body: bytes
    head: bytes = b""


@contextlib.contextmanager
def _map_transport_errors(peer: SecurityServerInfo) -> Iterator[None]:
    """aiohttp, ssl and timeout errors become X-Road errors of the consumer's server."""
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as exc:
        raise XwegError(
            ErrorCode.SSL_AUTHENTICATION_FAILED,
            f"security server {peer.id.slash()} at {peer.address} did not present the "
            f"certificate registered for it: {exc.certificate_error}",
            Origin.CLIENT_PROXY,
        ) from exc
    except aiohttp.ClientSSLError as exc:
        raise XwegError(
            ErrorCode.SSL_AUTHENTICATION_FAILED,
            f"TLS with security server {peer.id.slash()} at {peer.address} failed",
            Origin.CLIENT_PROXY,
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise XwegError(
            ErrorCode.NETWORK_ERROR,
            f"cannot reach security server {peer.id.slash()} at {peer.address}: {type(exc).__name__}",
            Origin.CLIENT_PROXY,
        ) from exc
    except TimeoutError as exc:
        raise XwegError(
            ErrorCode.NETWORK_ERROR,
            f"security server {peer.id.slash()} at {peer.address} did not answer in time",
            Origin.CLIENT_PROXY,
        ) from exc


class PeerClient:
    def __init__(
        self,
        certificate: Path,
        key: Path,
        passphrase: bytes | None,
        *,
        timeout_s: float,
        max_response_bytes: int,
    ) -> None:
        self._certificate = certificate
        self._key = key
        self._passphrase = passphrase
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._sessions: dict[
            tuple[str, tuple[str, ...]], tuple[tuple[object, ...], aiohttp.ClientSession]
        ] = {}
        self._credentials: dict[str, PeerCredentials] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._retired: set[aiohttp.ClientSession] = set()

    def _session(
        self, peer: SecurityServerInfo, cas: tuple[x509.Certificate, ...], pins: tuple[str, ...]
    ) -> aiohttp.ClientSession:
        """The pool for ``peer`` whose handshakes accept only the certificates ``pins``."""
        key = (peer.address, tuple(fingerprint(ca) for ca in cas))
        slot = (peer.id.slash(), pins)
        known = self._sessions.get(slot)
        if known is not None and known[0] == key:
            return known[1]
        if known is not None:
            self._retire(known[1])
        ctx = pinned_client_context(self._certificate, self._key, self._passphrase, cas, pins)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=256, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            skip_auto_headers=("User-Agent",),
        )
        self._sessions[slot] = (key, session)
        return session

    def _retire(self, session: aiohttp.ClientSession) -> None:
        # Requests still in flight on a replaced pool (already logged) may finish first.
        async def close_later() -> None:
            await asyncio.sleep(self._timeout_s)
            self._retired.discard(session)
            await session.close()

        self._retired.add(session)
        task = asyncio.get_running_loop().create_task(close_later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def send(
        self,
        peer: SecurityServerInfo,
        cas: tuple[x509.Certificate, ...],
        head: bytes,
        body: bytes,
        *,
        pin: str,
    ) -> PeerResponse:
        """Send the frame ``head`` + ``body`` over a connection whose handshake showed exactly
        the certificate ``pin``.  The two are sent one after the other, never joined.

        ``pin`` is the fingerprint of the peer certificate whose OCSP status was checked,
        so that a peer with several registered certificates cannot show one for the
        check and another, revoked one, for the message.
        """
        if pin not in peer.auth_cert_fingerprints:
            raise XwegError(
                ErrorCode.SSL_AUTHENTICATION_FAILED,
                f"certificate {pin[:16]}... is not registered for security server {peer.id.slash()}",
                Origin.CLIENT_PROXY,
            )
        session = self._session(peer, cas, (pin,))
        url = f"https://{peer.address}{EXCHANGE_PATH}"
        limit = self._max_response_bytes

        def too_large() -> XwegError:
            return XwegError(
                ErrorCode.SERVICE_FAILED,
                f"response from {peer.id.slash()} exceeds {limit} bytes",
                Origin.CLIENT_PROXY,
            )

        frame = body_of(head, body)
        with _map_transport_errors(peer):
            async with session.post(url, data=frame, headers={"Content-Type": CONTENT_TYPE}) as resp:
                if resp.content_length is not None and resp.content_length > limit:
                    raise too_large()
                if resp.status != 200:
                    answer = await read_limited(resp.content, limit, too_large)
                    return PeerResponse(resp.status, dict(resp.headers), answer)
                answer_head, answer = await read_frame(resp.content, limit, too_large)
                return PeerResponse(resp.status, dict(resp.headers), answer, answer_head)

    def cached_credentials(self, peer: SecurityServerInfo) -> PeerCredentials | None:
        cached = self._credentials.get(peer.id.slash())
        if cached is None or fingerprint(cached.certificate) not in peer.auth_cert_fingerprints:
            return None
        return cached

    def forget_credentials(self, peer: SecurityServerInfo) -> None:
        self._credentials.pop(peer.id.slash(), None)

    async def fetch_credentials(
        self, peer: SecurityServerInfo, cas: tuple[x509.Certificate, ...], now: dt.datetime
    ) -> PeerCredentials:
        """Ask the peer for its auth certificate's OCSP response, over the pinned connection."""
        session = self._session(peer, cas, peer.auth_cert_fingerprints)
        url = f"https://{peer.address}{OCSP_PATH}"
        with _map_transport_errors(peer):
            async with session.get(url) as resp:
                status = resp.status
                data = bytearray()
                async for chunk in resp.content.iter_chunked(16 * 1024):
                    data += chunk
                    if len(data) > _MAX_CREDENTIALS_BYTES:
                        break
        if status != 200 or len(data) > _MAX_CREDENTIALS_BYTES:
            raise XwegError(
                ErrorCode.SSL_AUTHENTICATION_FAILED,
                f"security server {peer.id.slash()} offers no OCSP response for its auth certificate "
                f"(HTTP {status})",
                Origin.CLIENT_PROXY,
            )
        try:
            offered = json.loads(data)
            raw = offered.get("ocsp")
            response = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
            certificate = x509.load_pem_x509_certificate(offered["certificate"].encode("ascii"))
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            raise XwegError(
                ErrorCode.SSL_AUTHENTICATION_FAILED,
                f"security server {peer.id.slash()} sent malformed OCSP credentials",
                Origin.CLIENT_PROXY,
            ) from exc
        # The handshake was pinned to the registered certificates; the one offered must be one of them.
        if fingerprint(certificate) not in peer.auth_cert_fingerprints:
            raise XwegError(
                ErrorCode.SSL_AUTHENTICATION_FAILED,
                f"security server {peer.id.slash()} offered OCSP for a certificate not registered for it",
                Origin.CLIENT_PROXY,
            )
        credentials = PeerCredentials(certificate, response, now)
        self._credentials[peer.id.slash()] = credentials
        return credentials

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for retired in list(self._retired):
            await retired.close()
        self._retired.clear()
        for _, session in self._sessions.values():
            await session.close()
        self._sessions.clear()
