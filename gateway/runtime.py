"""What a running security server holds: configuration, keys, log, pools, trust state.

Built once at start-up from :class:`gateway.config.GatewayConfig` and passed to the
pipelines; nothing in the pipelines reaches for module globals.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.backend_http import fetch_description, new_backend_session
from adapters.rest.backend import RestBackend
from adapters.soap.backend import SoapBackend
from core.clock import Clock
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import MemberId
from gateway.auditapi import AuditQueryLog
from gateway.confclient.updater import GlobalConfUpdater
from gateway.config import GatewayConfig
from gateway.messagelog.archive import Archiver
from gateway.messagelog.timestamper import Timestamper, TimestampingOverdue
from gateway.messagelog.writer import MessageLogWriter
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.opmon import OperationalMonitor
from gateway.ocsp import OwnOcspResponses
from gateway.serverconf.live import LiveServerConf
from gateway.transport.client import PeerClient
from trust.globalconf import GlobalConf
from trust.keys import load_certificate, load_private_key

__all__ = ["Signer", "Gateway", "load_signers"]


@dataclass(frozen=True)
class Signer:
    """A member's sign key and certificate, used for that member's message signatures."""

    member: MemberId
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def load_signers(config: GatewayConfig) -> dict[MemberId, Signer]:
    signers: dict[MemberId, Signer] = {}
    for entry in config.sign_keys:
        key = load_private_key(entry.key_path, config.key_passphrase)
        signers[entry.member] = Signer(entry.member, key, load_certificate(entry.certificate_path))
    return signers


class BackendPool:
    """HTTP sessions to information-system backends; one REST and one SOAP caller per setting.

    Backends are called through a session that checks ``https`` certificates against the
    system's CAs, except for services configured with ``verify_tls = false``, which get a
    session of their own that does not (created when first needed), so that turning
    verification off for one backend never turns it off for another.  The same sessions
    fetch the services' descriptions for the metadata services.

    Every timeout is cut to ``max_timeout_s`` (``limits.max_backend_timeout_s``), so that
    no service's setting keeps a request, and its place among the concurrent ones, for
    longer than that.
    """

    def __init__(
        self, session: aiohttp.ClientSession, max_response_bytes: int, *, max_timeout_s: float = 300.0
    ) -> None:
        self._sessions: dict[bool, aiohttp.ClientSession] = {True: session}
        self._max = max_response_bytes
        self._max_timeout_s = max_timeout_s
        self._rest: dict[tuple[float, bool], RestBackend] = {}
        self._soap: dict[tuple[float, bool], SoapBackend] = {}

    def _session(self, verify_tls: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(verify_tls)
        if session is None:
            session = new_backend_session(connector=aiohttp.TCPConnector(ssl=False))
            self._sessions[verify_tls] = session
        return session

    def get(self, timeout_s: float, *, verify_tls: bool = True) -> RestBackend:
        """The REST caller with this timeout (at most the ceiling) and certificate checking."""
        timeout_s = min(timeout_s, self._max_timeout_s)
        backend = self._rest.get((timeout_s, verify_tls))
        if backend is None:
            backend = RestBackend(
                self._session(verify_tls), timeout_s=timeout_s, max_response_bytes=self._max
            )
            self._rest[(timeout_s, verify_tls)] = backend
        return backend

    def soap(self, timeout_s: float, *, verify_tls: bool = True) -> SoapBackend:
        """The SOAP caller with this timeout (at most the ceiling) and certificate checking."""
        timeout_s = min(timeout_s, self._max_timeout_s)
        backend = self._soap.get((timeout_s, verify_tls))
        if backend is None:
            backend = SoapBackend(
                self._session(verify_tls), timeout_s=timeout_s, max_response_bytes=self._max
            )
            self._soap[(timeout_s, verify_tls)] = backend
        return backend

    async def fetch_description(
        self, url: str, timeout_s: float, max_bytes: int, *, verify_tls: bool = True
    ) -> bytes:
        """A service's description (WSDL or OpenAPI document) from its backend; see
        :func:`adapters.backend_http.fetch_description`."""
        session = self._session(verify_tls)
        timeout_s = min(timeout_s, self._max_timeout_s)
        return await fetch_description(session, url, timeout_s=timeout_s, max_bytes=max_bytes)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()


@dataclass
class Gateway:
    config: GatewayConfig
    clock: Clock
    globalconf: GlobalConfUpdater
    signers: dict[MemberId, Signer]
    log: MessageLogWriter
    peers: PeerClient
    backends: BackendPool
    serverconf: LiveServerConf
    auth_certificate: x509.Certificate
    own_ocsp: OwnOcspResponses
    timestamper: Timestamper
    auditor_token_key: ec.EllipticCurvePrivateKey
    client_token_key: ec.EllipticCurvePrivateKey  # information systems' tokens (trust.clienttokens)
    auditor_queries: AuditQueryLog
    archiver: Archiver
    metrics: GatewayMetrics  # Prometheus metrics; ``render()`` for GET /metrics
    opmon: OperationalMonitor  # operational monitoring records (X-Road's pr-opmon)

    def check_timestamping(self, now: dt.datetime, origin: Origin) -> None:
        """Refuse new traffic once records have waited for a timestamp past the acceptable period."""
        try:
            self.timestamper.check_acceptable(now)
        except TimestampingOverdue as exc:
            raise XwegError(ErrorCode.TIMESTAMPER_FAILED, str(exc), origin) from exc

    def current_conf(self, origin: Origin) -> tuple[GlobalConf, dt.datetime]:
        """The configuration to act on and the time of this operation, or OutdatedGlobalConf."""
        now = self.clock.now()
        conf = self.globalconf.trusted.current(now)
        if conf is None:
            latest = self.globalconf.trusted.latest
            why = (
                f"global configuration serial {latest.serial} expired at {latest.expires_at.isoformat()}"
                if latest is not None
                else "no valid global configuration has been received yet"
            )
            raise XwegError(ErrorCode.OUTDATED_GLOBAL_CONF, why, origin)
        return conf, now

    def signer_for(self, member: MemberId, origin: Origin) -> Signer:
        signer = self.signers.get(member)
        if signer is None:
            raise XwegError(
                ErrorCode.INTERNAL_ERROR,
                f"this security server holds no sign key for member {member.slash()}",
                origin,
            )
        return signer
