"""The client listener over plain HTTP and HTTPS, from an information system's side of the wire.

Both listeners run for real on 127.0.0.1 (one aiohttp runner, two sites, as ``serve``
starts them), the HTTPS one with the internal TLS certificate and the TLS context of
:func:`gateway.server.client_listener_tls`.  The pipelines are replaced by stand-ins that
do what step 2 of the consumer pipeline does (look the client up, authenticate_client)
and record what they were given, so that what is tested is the edge: the handshake,
what the listener reads of the connection and the Authorization header, what it
forwards, and how refusals look.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from adapters.soap.envelope import NS_SOAP_ENV
from core.clock import FixedClock
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ClientId, parse_client_slash
from gateway import server as gateway_server
from gateway.auditapi import AuditQueryLog
from gateway.clientauth import ClientConnection, authenticate_client
from gateway.config import GatewayConfig, Listener, OpmonSettings
from gateway.internaltls import INTERNAL_TLS_CERTIFICATE_FILE
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.opmon import OperationalMonitor
from gateway.pipeline.consumer import ClientAnswer
from gateway.runtime import Gateway
from gateway.serverconf.live import LiveServerConf
from gateway.serverconf.model import ClientEntry, ConnectionType, ServerConfSnapshot
from tests.unit.gateway.clientauth_fixtures import (
    GEWERBEAMT,
    MELDEWESEN,
    NOW,
    SERVER,
    InformationSystem,
    client_entry,
    make_information_system,
)
from trust.clienttokens import issue_client_token
from trust.keys import generate_private_key
from trust.tokens import key_id

REST_PATH = "/r1/NRW/GOV/057/arbeitsschutz/betriebe/v1/items"
FOREIGN_AUTHORIZATION = "Basic YmFja2VuZDpzZWNyZXQ="


@dataclass
class StandIn:
    """Step 2 of the consumer pipeline, and a record of what each request handed on."""

    rest: list[list[tuple[str, str]]] = field(default_factory=list)
    soap: list[ClientConnection] = field(default_factory=list)

    @staticmethod
    def authenticate(gateway: Gateway, client: ClientId, connection: ClientConnection) -> None:
        entry = gateway.serverconf.current().client(client)
        if entry is None:
            raise XwegError(ErrorCode.INVALID_CLIENT_IDENTIFIER, f"client {client} not hosted", Origin.CLIENT)
        authenticate_client(
            entry,
            connection,
            token_key=gateway.client_token_key.public_key(),
            server_id=gateway.config.server_id,
            now=gateway.clock.now(),
        )

    async def handle_rest_request(
        self,
        gateway: Gateway,
        method: str,
        raw_target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connection: ClientConnection,
    ) -> ClientAnswer:
        named = next(value for name, value in headers if name.lower() == "x-road-client")
        self.authenticate(gateway, parse_client_slash(named), connection)
        self.rest.append(headers)
        return ClientAnswer(200, [("Content-Type", "application/json")], b"{}")

    async def handle_soap_request(
        self,
        gateway: Gateway,
        method: str,
        body: bytes,
        *,
        content_type: str | None,
        soap_action: str | None,
        connection: ClientConnection,
    ) -> ClientAnswer:
        self.authenticate(gateway, GEWERBEAMT, connection)
        self.soap.append(connection)
        return ClientAnswer(200, [("Content-Type", "text/xml; charset=UTF-8")], b"<answer/>")


@dataclass
class Listeners:
    gateway: Gateway
    stand_in: StandIn
    plain_port: int
    tls_port: int
    internal_certificate: Path
    folder: Path

    def replace(self, *entries: ClientEntry, version: str) -> None:
        self.gateway.serverconf.replace(
            ServerConfSnapshot(clients={e.id: e for e in entries}, version=version)
        )

    def token(self, client: ClientId = GEWERBEAMT, **changes: Any) -> str:
        arguments: dict[str, Any] = {"server_id": SERVER, "client": client, "now": NOW, "ttl_s": 3600}
        arguments.update(changes)
        return issue_client_token(self.gateway.client_token_key, **arguments)

    async def call(
        self,
        *,
        tls: bool = True,
        system: InformationSystem | None = None,
        client: ClientId = GEWERBEAMT,
        authorization: list[str] | None = None,
        path: str = REST_PATH,
        soap: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request over a fresh connection: HTTPS (checking the internal certificate
        and the host name 127.0.0.1), with ``system``'s certificate when given."""
        context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context(cafile=str(self.internal_certificate))
            if system is not None:
                certificate, key = system.write(self.folder / "is", f"{system.fingerprint[:12]}")
                context.load_cert_chain(certificate, key)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{self.tls_port if tls else self.plain_port}"
        headers = [("X-Road-Client", client.slash())]
        headers += [("Authorization", value) for value in authorization or []]
        body = b""
        if soap:
            path, body = "/", b"<SOAP-ENV:Envelope/>"
            headers.append(("Content-Type", "text/xml; charset=utf-8"))
        connector = aiohttp.TCPConnector(ssl=context if context is not None else False, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            method = "POST" if soap else "GET"
            async with session.request(method, url + path, headers=headers, data=body) as resp:
                return resp.status, dict(resp.headers), await resp.read()


def _gateway(tmp_path: Path, *entries: ClientEntry) -> Gateway:
    config = GatewayConfig(
        server_id=SERVER,
        anchor_path=tmp_path / "anchor.json",
        data_dir=tmp_path / "data",
        client_listener=Listener("127.0.0.1", 0),
        client_tls_listener=Listener("127.0.0.1", 0),
        peer_listener=Listener("127.0.0.1", 0),
        auth_key_path=tmp_path / "auth.key",
        auth_certificate_path=tmp_path / "auth.pem",
        sign_keys=(),
        key_passphrase=b"server passphrase",
        clients=(),
        services=(),
        access=(),
    )
    clock = FixedClock(NOW)
    # What the client listener and step 2 read: configuration, keys, clock, server configuration,
    # and what observes exchanges at the edge.
    return cast(
        Gateway,
        SimpleNamespace(
            config=config,
            clock=clock,
            metrics=GatewayMetrics(clock),
            opmon=OperationalMonitor(tmp_path / "opmon.db", OpmonSettings(), clock),
            auditor_token_key=generate_private_key(),
            client_token_key=generate_private_key(),
            auditor_queries=AuditQueryLog.open(tmp_path / "auditor-queries.db"),
            serverconf=LiveServerConf.fixed(
                ServerConfSnapshot(clients={e.id: e for e in entries}, version="0")
            ),
        ),
    )


@pytest.fixture(scope="module")
def gewerbeamt_is() -> InformationSystem:
    return make_information_system("gewerbeamt-fachverfahren")


@pytest.fixture(scope="module")
def meldewesen_is() -> InformationSystem:
    return make_information_system("meldewesen-fachverfahren")


@pytest.fixture(scope="module")
def stranger_is() -> InformationSystem:
    return make_information_system("gewerbeamt-fachverfahren")  # the same name, another key


@pytest.fixture
async def listeners(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gewerbeamt_is: InformationSystem,
    meldewesen_is: InformationSystem,
) -> AsyncIterator[Listeners]:
    stand_in = StandIn()
    monkeypatch.setattr(gateway_server, "handle_rest_request", stand_in.handle_rest_request)
    monkeypatch.setattr(gateway_server, "handle_soap_request", stand_in.handle_soap_request)
    gateway = _gateway(
        tmp_path, client_entry(GEWERBEAMT, gewerbeamt_is), client_entry(MELDEWESEN, meldewesen_is)
    )
    runner = web.AppRunner(gateway_server.build_client_app(gateway), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        tls = gateway_server.client_listener_tls(gateway)
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context).start()
        plain, secure = (address[1] for address in runner.addresses)
        yield Listeners(
            gateway,
            stand_in,
            plain,
            secure,
            gateway.config.data_dir / INTERNAL_TLS_CERTIFICATE_FILE,
            tmp_path,
        )
    finally:
        await runner.cleanup()
        gateway.auditor_queries.close()


def error_of(reply: tuple[int, dict[str, str], bytes]) -> tuple[int, str, str]:
    status, headers, body = reply
    document = json.loads(body)
    assert headers["X-Road-Error"] == document["type"]
    return status, document["type"], document["message"]


# ------------------------------------------------------------------ connection and certificate


async def test_a_registered_certificate_is_accepted_over_https(
    listeners: Listeners, gewerbeamt_is: InformationSystem
) -> None:
    status, _, _ = await listeners.call(system=gewerbeamt_is)
    assert status == 200
    assert len(listeners.stand_in.rest) == 1


async def test_plain_http_to_an_https_mtls_client_is_refused(listeners: Listeners) -> None:
    assert error_of(await listeners.call(tls=False)) == (
        400,
        "Client.SslAuthenticationFailed",
        f"client {GEWERBEAMT.slash()} must connect over HTTPS (https-mtls), not plain HTTP",
    )
    assert listeners.stand_in.rest == []


async def test_https_without_a_certificate_is_refused(listeners: Listeners) -> None:
    assert error_of(await listeners.call()) == (
        400,
        "Client.SslAuthenticationFailed",
        f"client {GEWERBEAMT.slash()} must present a TLS client certificate registered for it",
    )


async def test_a_certificate_registered_for_another_subsystem_is_refused(
    listeners: Listeners, meldewesen_is: InformationSystem
) -> None:
    status, code, message = error_of(await listeners.call(system=meldewesen_is))
    assert (status, code) == (400, "Client.SslAuthenticationFailed")
    assert message == (
        f"the TLS client certificate (SHA-256 {meldewesen_is.fingerprint}) "
        f"is not registered for client {GEWERBEAMT.slash()}"
    )
    # The same certificate may act for the subsystem it is registered for.
    assert (await listeners.call(system=meldewesen_is, client=MELDEWESEN))[0] == 200


async def test_a_certificate_registered_for_nobody_fails_the_handshake(
    listeners: Listeners, stranger_is: InformationSystem
) -> None:
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        await listeners.call(system=stranger_is)
    assert listeners.stand_in.rest == []


async def test_a_removed_certificate_is_refused_once_the_snapshot_changes(
    listeners: Listeners, gewerbeamt_is: InformationSystem, stranger_is: InformationSystem
) -> None:
    assert (await listeners.call(system=gewerbeamt_is))[0] == 200
    # The certificate is replaced by another: the new one is admitted at the handshake, and
    # the old one, which the TLS context cannot forget, is refused per request.
    listeners.replace(client_entry(GEWERBEAMT, stranger_is), version="1")
    assert (await listeners.call(system=stranger_is))[0] == 200
    status, code, message = error_of(await listeners.call(system=gewerbeamt_is))
    assert (status, code) == (400, "Client.SslAuthenticationFailed")
    assert message == (
        f"the TLS client certificate (SHA-256 {gewerbeamt_is.fingerprint}) "
        f"is not registered for client {GEWERBEAMT.slash()}"
    )


async def test_a_certificate_issued_by_a_ca_is_accepted_when_itself_registered(
    listeners: Listeners,
) -> None:
    ca = make_information_system("Fachverfahren-CA", ca=True)
    issued = make_information_system("gewerbeamt-fachverfahren-2", issuer=ca)
    listeners.replace(client_entry(GEWERBEAMT, issued), version="1")
    assert (await listeners.call(system=issued))[0] == 200
    # Its CA is not registered, so another certificate of that CA is no one's.
    sibling = make_information_system("gewerbeamt-fachverfahren-3", issuer=ca)
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        await listeners.call(system=sibling)


# ------------------------------------------------------------------ client tokens


def _alg_none(kid: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": SERVER.slash(), "aud": "xweg-client-proxy", "sub": GEWERBEAMT.slash()}
    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{part(claims)}."


def _signed(listeners: Listeners, key: ec.EllipticCurvePrivateKey, **changes: Any) -> str:
    """A complete token (``changes`` aside) naming this server's key, signed with ``key``."""
    issued = int(NOW.timestamp())
    claims: dict[str, Any] = {"iss": SERVER.slash(), "aud": "xweg-client-proxy", "sub": GEWERBEAMT.slash()}
    claims |= {"iat": issued, "exp": issued + 600, "jti": "t-1", **changes}
    kid = key_id(listeners.gateway.client_token_key.public_key())
    return jwt.encode(claims, key, algorithm="ES256", headers={"typ": "JWT", "kid": kid})


BAD_TOKENS: dict[str, tuple[Callable[[Listeners, ec.EllipticCurvePrivateKey], str], str]] = {
    "expired": (
        lambda ls, stranger: ls.token(now=NOW.replace(day=1), ttl_s=3600),
        "the client token has expired",
    ),
    "wrong audience": (
        lambda ls, stranger: _signed(ls, ls.gateway.client_token_key, aud="xweg-auditor-api"),
        "the client token is not for the client proxy",
    ),
    "alg none": (
        lambda ls, stranger: _alg_none(key_id(ls.gateway.client_token_key.public_key())),
        "the client token's algorithm is 'none'; only ES256 is accepted",
    ),
    "signed by an unknown key": (
        lambda ls, stranger: _signed(ls, stranger),
        "the client token's signature does not verify with this server's key",
    ),
    "bound to another subsystem": (
        lambda ls, stranger: ls.token(client=MELDEWESEN),
        f"the client token is bound to client {MELDEWESEN.slash()}, not to {GEWERBEAMT.slash()}",
    ),
}


def provider_api_token() -> str:
    """An ES256 bearer token for a provider's own API: not for this security server."""
    claims = {"iss": "https://idp.bielefeld.example", "aud": "gewerbe-api", "sub": "sachbearbeitung"}
    return jwt.encode(claims, generate_private_key(), algorithm="ES256", headers={"kid": "bielefeld-1"})


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_bad_token_of_ours_is_refused_with_its_reason(
    listeners: Listeners, gewerbeamt_is: InformationSystem, case: str
) -> None:
    make, reason = BAD_TOKENS[case]
    token = make(listeners, generate_private_key())
    reply = await listeners.call(system=gewerbeamt_is, authorization=[f"Bearer {token}"])
    status, code, message = error_of(reply)
    assert (status, code) == (401, "Client.InvalidClientToken")
    assert message.startswith(reason), message
    assert reply[1]["WWW-Authenticate"] == 'Bearer realm="xweg-client-proxy"'
    assert listeners.stand_in.rest == []


async def test_token_required_without_a_token_is_refused(
    listeners: Listeners, gewerbeamt_is: InformationSystem
) -> None:
    listeners.replace(client_entry(GEWERBEAMT, gewerbeamt_is, token_required=True), version="1")
    expected = (
        401,
        "Client.InvalidClientToken",
        f"client {GEWERBEAMT.slash()} requires a client token of this security server "
        "(Authorization: Bearer)",
    )
    assert error_of(await listeners.call(system=gewerbeamt_is)) == expected
    # A bearer token for someone else (the provider's own API) is not this server's: no token here.
    foreign = provider_api_token()
    assert (
        error_of(await listeners.call(system=gewerbeamt_is, authorization=[f"Bearer {foreign}"])) == expected
    )
    assert listeners.stand_in.rest == []


async def test_a_client_token_from_a_key_no_longer_held_is_refused_not_forwarded(
    listeners: Listeners, gewerbeamt_is: InformationSystem
) -> None:
    """After the client-token key is replaced, old tokens still name the client proxy as
    audience: they are refused here, never passed on to the provider as if foreign."""
    old = issue_client_token(generate_private_key(), server_id=SERVER, client=GEWERBEAMT, now=NOW)
    status, code, message = error_of(
        await listeners.call(system=gewerbeamt_is, authorization=[f"Bearer {old}"])
    )
    assert (status, code) == (401, "Client.InvalidClientToken")
    assert "key" in message
    assert listeners.stand_in.rest == []


async def test_a_valid_token_is_checked_and_not_forwarded(
    listeners: Listeners, gewerbeamt_is: InformationSystem
) -> None:
    listeners.replace(client_entry(GEWERBEAMT, gewerbeamt_is, token_required=True), version="1")
    token = listeners.token()
    status, _, _ = await listeners.call(system=gewerbeamt_is, authorization=[f"Bearer {token}"])
    assert status == 200
    [forwarded] = listeners.stand_in.rest
    assert [value for name, value in forwarded if name.lower() == "authorization"] == []


async def test_a_token_over_plain_http_for_an_http_client(listeners: Listeners) -> None:
    listeners.replace(ClientEntry(GEWERBEAMT, ConnectionType.HTTP, token_required=True), version="1")
    assert (await listeners.call(tls=False, authorization=[f"Bearer {listeners.token()}"]))[0] == 200
    status, code, _ = error_of(await listeners.call(tls=False))
    assert (status, code) == (401, "Client.InvalidClientToken")


async def test_a_foreign_authorization_header_is_forwarded_unchanged_and_ours_is_not(
    listeners: Listeners, gewerbeamt_is: InformationSystem
) -> None:
    foreign_bearer = "Bearer " + provider_api_token()
    ours = f"Bearer {listeners.token()}"
    await listeners.call(system=gewerbeamt_is, authorization=[FOREIGN_AUTHORIZATION])
    await listeners.call(system=gewerbeamt_is, authorization=[foreign_bearer])
    await listeners.call(system=gewerbeamt_is, authorization=[ours, FOREIGN_AUTHORIZATION])
    sent = [
        [value for name, value in headers if name.lower() == "authorization"]
        for headers in listeners.stand_in.rest
    ]
    assert sent == [[FOREIGN_AUTHORIZATION], [foreign_bearer], [FOREIGN_AUTHORIZATION]]


async def test_two_different_tokens_of_ours_are_refused(
    listeners: Listeners, gewerbeamt_is: InformationSystem
) -> None:
    tokens = [f"Bearer {listeners.token()}", f"Bearer {listeners.token(client=MELDEWESEN)}"]
    assert error_of(await listeners.call(system=gewerbeamt_is, authorization=tokens)) == (
        401,
        "Client.InvalidClientToken",
        "a request carries at most one client token",
    )


async def test_a_soap_client_hears_of_a_bad_token_in_a_soap_fault(
    listeners: Listeners, gewerbeamt_is: InformationSystem
) -> None:
    token = listeners.token(client=MELDEWESEN)
    status, _, body = await listeners.call(system=gewerbeamt_is, authorization=[f"Bearer {token}"], soap=True)
    fault = etree.fromstring(body).find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "Client.InvalidClientToken"
    assert fault.findtext("faultstring", "").startswith(
        f"the client token is bound to client {MELDEWESEN.slash()}, not to {GEWERBEAMT.slash()}"
    )
    assert listeners.stand_in.soap == []
    good = listeners.token()
    ok = await listeners.call(system=gewerbeamt_is, authorization=[f"Bearer {good}"], soap=True)
    assert ok[0] == 200
    assert [c.token for c in listeners.stand_in.soap] == [good]
