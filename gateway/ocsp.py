"""OCSP on the security server: our own certificates' responses, and our peers'.

*Own certificates.*  Every ``refresh_interval_s`` (X-Road's default: 1,200 s) the server
asks the OCSP responder of the issuing CA, as global configuration names it, about its
auth certificate and each sign certificate; a response that checks out is cached in
memory and on disk.  The sign certificate's response travels with every message
signature, the auth certificate's with every request and to any peer that asks
(``GET /xweg/v1/ocsp``), so that no peer has to reach the responder on the hot path.

*Peers' auth certificates.*  Before the consumer sends a message to a provider's
server, it holds that server's auth certificate and a response for it, fetched over
the pinned connection and checked against global configuration; it fetches again when
the cached response nears the freshness limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog
from cryptography import x509

from core.clock import Clock
from gateway.config import OcspSettings
from gateway.periodic import run_periodically
from trust.certificates import CertificateTrust, OcspPolicy, fingerprint
from trust.errors import TrustError
from trust.globalconf import GlobalConf
from trust.keys import write_atomic
from trust.ocsp import build_ocsp_request, check_ocsp_response
from trust.ocspclient import fetch_ocsp_response

__all__ = ["certificate_trust", "OwnOcspResponses"]

log = structlog.get_logger("xweg.ocsp")


def certificate_trust(conf: GlobalConf) -> CertificateTrust:
    """What global configuration says to trust: roots, issuing CAs, and their OCSP responders.

    A security server never runs without revocation checking: a configuration that
    names no OCSP responder is refused here (raising TrustError), not silently accepted.
    """
    responders = conf.ocsp_responder_certificates
    if not responders:
        raise TrustError(
            f"global configuration serial {conf.serial} names no OCSP responder for its approved CAs; "
            "revocation cannot be checked"
        )
    policy = OcspPolicy(responders=responders, freshness_s=float(conf.ocsp_freshness_s))
    return CertificateTrust(
        roots=conf.ca_certificates, intermediates=conf.intermediate_certificates, ocsp=policy
    )


@dataclass(frozen=True)
class _Cached:
    response: bytes
    produced_at: dt.datetime
    next_update: dt.datetime | None = None


class OwnOcspResponses:
    """Fetches, checks, caches and persists OCSP responses for this server's own certificates."""

    def __init__(
        self,
        certificates: list[x509.Certificate],
        cache_dir: Path,
        settings: OcspSettings,
        clock: Clock,
        conf: Callable[[], GlobalConf | None],
    ) -> None:
        self._certificates = {fingerprint(c): c for c in certificates}
        self._dir = cache_dir
        self._settings = settings
        self._clock = clock
        self._conf = conf
        self._cache: dict[str, _Cached] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.refreshed = asyncio.Event()

    def response_for(self, certificate: x509.Certificate) -> bytes | None:
        cached = self._cache.get(fingerprint(certificate))
        return cached.response if cached is not None else None

    def validity(self, certificate: x509.Certificate) -> tuple[dt.datetime, dt.datetime | None] | None:
        """``(produced_at, next_update)`` of the response held for ``certificate``, or None (for metrics)."""
        cached = self._cache.get(fingerprint(certificate))
        return (cached.produced_at, cached.next_update) if cached is not None else None

    def _check(self, conf: GlobalConf, cert: x509.Certificate, response: bytes) -> _Cached:
        trust = certificate_trust(conf)
        issuer = conf.issuer_of(cert)
        if issuer is None or trust.ocsp is None:
            raise TrustError(f"global configuration names no issuer or OCSP responder for {cert.subject}")
        status = check_ocsp_response(response, cert, issuer, trust.ocsp, self._clock.now())
        return _Cached(response, status.produced_at, status.next_update)

    def load_persisted(self) -> None:
        conf = self._conf()
        if conf is None:
            return
        for fp, cert in self._certificates.items():
            with contextlib.suppress(OSError, TrustError, ValueError):
                self._cache[fp] = self._check(conf, cert, (self._dir / f"{fp}.der").read_bytes())

    async def refresh_all(self) -> bool:
        """Ask the responder about every own certificate; True when every answer checked out."""
        conf = self._conf()
        if conf is None:
            return False
        assert self._session is not None
        ok = True
        for fp, cert in self._certificates.items():
            issuer = conf.issuer_of(cert)
            url = conf.ocsp_url_for(issuer) if issuer is not None else None
            if issuer is None or url is None:
                log.warning("ocsp.no_responder", certificate=fp[:16])
                ok = False
                continue
            try:
                response = await fetch_ocsp_response(
                    self._session,
                    url,
                    build_ocsp_request(cert, issuer),
                    timeout_s=self._settings.fetch_timeout_s,
                )
                cached = self._check(conf, cert, response)
            except (TrustError, ValueError) as exc:
                # Keep the last good response: peers stop accepting it at the freshness limit.
                log.error("ocsp.refresh_failed", certificate=fp[:16], url=url, error=str(exc))
                ok = False
                continue
            self._cache[fp] = cached
            try:
                await asyncio.to_thread(write_atomic, self._dir / f"{fp}.der", response, 0o644)
            except OSError as exc:
                log.warning("ocsp.persist_failed", certificate=fp[:16], error=str(exc))
            log.info("ocsp.refreshed", certificate=fp[:16], produced_at=cached.produced_at.isoformat())
        self.refreshed.set()
        return ok

    async def start(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._session = aiohttp.ClientSession()
        self.load_persisted()
        self._task = asyncio.create_task(
            run_periodically(
                self.refresh_all,
                interval_s=self._settings.refresh_interval_s,
                retry_s=self._settings.retry_s,
                name="ocsp",
            ),
            name="ocsp-refresher",
        )

    async def close(self) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        finally:
            if self._session is not None:
                await self._session.close()
