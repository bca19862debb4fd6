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

from adapters.backend_http import fetch_description
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
    """One HTTP session to information-system backends; one REST and one SOAP caller per timeout.

    The same session fetches the services' descriptions for the metadata services.
    """

    def __init__(self, session: aiohttp.ClientSession, max_response_bytes: int) -> None:
        self._session = session
        self._max = max_response_bytes
        self._by_timeout: dict[float, RestBackend] = {}
        self._soap_by_timeout: dict[float, SoapBackend] = {}

    def get(self, timeout_s: float) -> RestBackend:
        """The REST caller with this timeout."""
        backend = self._by_timeout.get(timeout_s)
        if backend is None:
            backend = RestBackend(self._session, timeout_s=timeout_s, max_response_bytes=self._max)
            self._by_timeout[timeout_s] = backend
        return backend

    def soap(self, timeout_s: float) -> SoapBackend:
        """The SOAP caller with this timeout."""
        backend = self._soap_by_timeout.get(timeout_s)
        if backend is None:
            backend = SoapBackend(self._session, timeout_s=timeout_s, max_response_bytes=self._max)
            self._soap_by_timeout[timeout_s] = backend
        return backend

    async def fetch_description(self, url: str, timeout_s: float, max_bytes: int) -> bytes:
        """A service's description (WSDL or OpenAPI document) from its backend; see
        :func:`adapters.backend_http.fetch_description`."""
        return await fetch_description(self._session, url, timeout_s=timeout_s, max_bytes=max_bytes)

    async def close(self) -> None:
        await self._session.close()


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
    auditor_queries: AuditQueryLog
    archiver: Archiver

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
