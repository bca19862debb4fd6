"""Submitting registration requests from a security server to the registry.

``xweg gateway register`` uses this before the server is known to the federation, so
nothing here needs a running gateway: the configuration file names the keys and the
configuration anchor, the anchor names the registry.  The steps:

1. fetch the global configuration from the registry and verify it against the anchor
   (it says which CAs are approved and where their OCSP responders are);
2. fetch fresh OCSP responses for the certificates that sign the request, checked as
   the registry will check them;
3. sign (:mod:`trust.registration`) and ``POST`` to ``/registration/v1/requests``;
4. later, read the request's state (and a rejection's reason) by its id.

A maintenance announcement (:meth:`RegistrationClient.maintenance`) takes the same first
two steps for the auth certificate alone, is signed by the auth key
(:mod:`trust.maintenance`) and ``POST``-ed to ``/registration/v1/maintenance``, where the
registry applies it at once.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography import x509

from core.identifiers import MemberId, SubsystemId
from gateway.confclient.fetcher import FetchError, fetch_verified_global_conf
from gateway.config import GatewayConfig
from gateway.ocsp import certificate_trust
from gateway.runtime import Signer, load_signers
from trust.anchor import Anchor, load_anchor
from trust.errors import TrustError
from trust.globalconf import GlobalConf
from trust.keys import load_certificate, load_private_key
from trust.maintenance import MaintenanceRequest, sign_maintenance_request
from trust.ocsp import build_ocsp_request, check_ocsp_response
from trust.ocspclient import fetch_ocsp_response
from trust.registration import (
    RegistrationKind,
    RegistrationRequest,
    SignedRegistration,
    sign_auth_cert_registration,
    sign_client_registration,
)

__all__ = [
    "RegistrationFailed",
    "RegistrationClient",
    "RegistryAnswer",
]

_TIMEOUT_S = 15.0
_MAX_ANSWER_BYTES = 64 * 1024


class RegistrationFailed(Exception):
    """A request could not be made or was refused; ``kind`` is the registry's error type if it answered."""

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


@dataclass(frozen=True)
class RegistryAnswer:
    """The registry's view of one request (as ``/registration/v1`` shows it)."""

    registry_url: str
    status_code: int
    request: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.request["id"])

    @property
    def state(self) -> str:
        return str(self.request["status"])


class RegistrationClient:
    """Makes and sends one server's registration requests; use as ``async with``."""

    def __init__(self, config: GatewayConfig, *, anchor: Anchor | None = None) -> None:
        self.config = config
        self.anchor = anchor or load_anchor(config.anchor_path)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RegistrationClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT_S))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use RegistrationClient with async with"
        return self._session

    # -- what the request needs ---------------------------------------------------------------

    async def global_conf(self, now: dt.datetime) -> tuple[str, GlobalConf]:
        """The registry's current configuration, verified against the anchor, and its URL."""
        try:
            url, _, conf = await fetch_verified_global_conf(
                self.anchor,
                self.session,
                now,
                timeout_s=self.config.globalconf.fetch_timeout_s,
                max_size=self.config.globalconf.max_size_bytes,
            )
        except FetchError as exc:
            raise RegistrationFailed(str(exc)) from exc
        return url, conf

    async def ocsp_responses(
        self, conf: GlobalConf, certificates: list[x509.Certificate], now: dt.datetime
    ) -> tuple[bytes, ...]:
        """A fresh, good OCSP response for each certificate, from its CA's responder."""
        trust = certificate_trust(conf)
        assert trust.ocsp is not None  # certificate_trust refuses a configuration without
        responses = []
        for cert in certificates:
            issuer = conf.issuer_of(cert)
            url = conf.ocsp_url_for(issuer) if issuer is not None else None
            if issuer is None or url is None:
                raise RegistrationFailed(
                    f"no approved CA with an OCSP responder issued {cert.subject.rfc4514_string()}"
                )
            try:
                response = await fetch_ocsp_response(self.session, url, build_ocsp_request(cert, issuer))
                check_ocsp_response(response, cert, issuer, trust.ocsp, now)
            except TrustError as exc:
                raise RegistrationFailed(f"OCSP for {cert.subject.rfc4514_string()}: {exc}") from exc
            responses.append(response)
        return tuple(responses)

    # -- the two requests ---------------------------------------------------------------------

    def _signer_for(self, member: MemberId) -> Signer:
        signer = load_signers(self.config).get(member)
        if signer is None:
            raise RegistrationFailed(
                f"this server holds no sign key of {member}: add it under [[keys.sign]] in the configuration"
            )
        return signer

    async def auth_cert(self, now: dt.datetime, *, address: str | None = None) -> RegistryAnswer:
        """Ask to register this server's auth certificate (a new server: with ``address``)."""
        config = self.config
        if address is None:
            address = f"{config.peer_listener.host}:{config.peer_listener.port}"
        auth_cert = load_certificate(config.auth_certificate_path)
        auth_key = load_private_key(config.auth_key_path, config.key_passphrase)
        signer = self._signer_for(config.server_id.owner)
        try:
            request = RegistrationRequest(
                RegistrationKind.AUTH_CERT, config.server_id, now, address=address, auth_certificate=auth_cert
            )
        except ValueError as exc:
            raise RegistrationFailed(str(exc)) from exc
        url, conf = await self.global_conf(now)
        responses = await self.ocsp_responses(conf, [auth_cert, signer.certificate], now)
        try:
            signed = sign_auth_cert_registration(
                request,
                auth_key=auth_key,
                owner_sign_key=signer.key,
                owner_sign_certificate=signer.certificate,
                ocsp_responses=responses,
            )
        except ValueError as exc:  # a key that does not match its certificate
            raise RegistrationFailed(str(exc)) from exc
        return await self.submit(url, signed)

    async def client(self, client: SubsystemId, now: dt.datetime) -> RegistryAnswer:
        """Ask to host ``client``: signed by the client owner's sign key and this server's auth key."""
        config = self.config
        signer = self._signer_for(client.member)
        auth_cert = load_certificate(config.auth_certificate_path)
        auth_key = load_private_key(config.auth_key_path, config.key_passphrase)
        try:
            request = RegistrationRequest(RegistrationKind.CLIENT, config.server_id, now, client=client)
        except ValueError as exc:
            raise RegistrationFailed(str(exc)) from exc
        url, conf = await self.global_conf(now)
        responses = await self.ocsp_responses(conf, [auth_cert, signer.certificate], now)
        try:
            signed = sign_client_registration(
                request,
                owner_sign_key=signer.key,
                owner_sign_certificate=signer.certificate,
                auth_key=auth_key,
                auth_certificate=auth_cert,
                ocsp_responses=responses,
            )
        except ValueError as exc:  # a key that does not match its certificate
            raise RegistrationFailed(str(exc)) from exc
        return await self.submit(url, signed)

    async def maintenance(self, enabled: bool, now: dt.datetime) -> RegistryAnswer:
        """Announce that this server enters (``enabled``) or leaves maintenance mode.

        Signed by this server's registered auth key; the registry applies it at once and
        answers with the mode and whether it changed.
        """
        config = self.config
        auth_cert = load_certificate(config.auth_certificate_path)
        auth_key = load_private_key(config.auth_key_path, config.key_passphrase)
        try:
            request = MaintenanceRequest(config.server_id, enabled, now)
        except ValueError as exc:
            raise RegistrationFailed(str(exc)) from exc
        url, conf = await self.global_conf(now)
        [response] = await self.ocsp_responses(conf, [auth_cert], now)
        try:
            signed = sign_maintenance_request(
                request, auth_key=auth_key, auth_certificate=auth_cert, ocsp_response=response
            )
        except ValueError as exc:  # a key that does not match its certificate
            raise RegistrationFailed(str(exc)) from exc
        return await self._post(f"{url}/registration/v1/maintenance", url, signed.to_json())

    # -- talking to the registry --------------------------------------------------------------

    async def _answer(self, url: str, response: aiohttp.ClientResponse) -> dict[str, Any]:
        body = await response.content.read(_MAX_ANSWER_BYTES + 1)
        try:
            data = json.loads(body) if len(body) <= _MAX_ANSWER_BYTES else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RegistrationFailed(
                f"{url} answered HTTP {response.status} without a JSON object", status=response.status
            )
        if response.status >= 400:
            raise RegistrationFailed(
                f"the registry refused: {data.get('message', 'no message')} "
                f"(HTTP {response.status}, {data.get('type')}, correlation id {data.get('detail')})",
                status=response.status,
                kind=str(data.get("type")),
            )
        return data

    async def submit(self, registry_url: str, signed: SignedRegistration) -> RegistryAnswer:
        return await self._post(f"{registry_url}/registration/v1/requests", registry_url, signed.to_json())

    async def _post(self, url: str, registry_url: str, body: bytes) -> RegistryAnswer:
        try:
            async with self.session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            ) as response:
                return RegistryAnswer(registry_url, response.status, await self._answer(url, response))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistrationFailed(f"cannot reach {url}: {exc}") from exc

    async def status(self, request_id: str) -> RegistryAnswer:
        """The state of a request this server submitted (any registry in the anchor)."""
        errors = []
        for base in self.anchor.registry_urls:
            url = f"{base.rstrip('/')}/registration/v1/requests/{request_id}"
            try:
                async with self.session.get(url, allow_redirects=False) as response:
                    return RegistryAnswer(
                        base.rstrip("/"), response.status, await self._answer(url, response)
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{url}: {exc}")
        raise RegistrationFailed("no registry answered: " + "; ".join(errors))
