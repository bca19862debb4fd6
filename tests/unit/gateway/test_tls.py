"""Mutual TLS between security servers: real handshakes on loopback with aiohttp on both sides."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.transport.tls import peer_certificate_der, pinned_client_context, server_context
from tests.unit.gateway.conftest import PASSPHRASE, Federation, TlsFiles


class Files:
    def __init__(self, federation: Federation, folder: Path) -> None:
        self.server = federation.write_tls_files(
            folder, "server", federation.server_key, federation.server_cert
        )
        self.client = federation.write_tls_files(
            folder, "client", federation.other_server_key, federation.other_server_cert
        )
        self.foreign = federation.write_tls_files(
            folder, "foreign", federation.foreign_key, federation.foreign_cert
        )


@pytest.fixture
def files(federation: Federation, tmp_path: Path) -> Files:
    return Files(federation, tmp_path / "tls")


class Peer:
    """An aiohttp server answering on loopback over mutual TLS; remembers who called."""

    def __init__(self) -> None:
        self.peer_certs: list[bytes | None] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.peer_certs.append(peer_certificate_der(request.transport.get_extra_info("ssl_object")))
        return web.Response(text="hello from ss1")


StartPeer = Callable[[TlsFiles], Awaitable[Peer]]


@pytest.fixture
async def start_peer(federation: Federation) -> AsyncIterator[StartPeer]:
    servers: list[TestServer] = []

    async def start(identity: TlsFiles) -> Peer:
        peer = Peer()
        app = web.Application()
        app.router.add_get("/", peer.handle)
        server = TestServer(app)
        ctx = server_context(identity.certificate, identity.key, PASSPHRASE, [federation.ca.certificate])
        await server.start_server(ssl=ctx)
        servers.append(server)
        peer.url = str(server.make_url("/"))
        return peer

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


def client_context(federation: Federation, identity: TlsFiles, pins: Iterable[str]) -> ssl.SSLContext:
    return pinned_client_context(
        identity.certificate, identity.key, PASSPHRASE, [federation.ca.certificate], pins
    )


async def get(url: str, ctx: ssl.SSLContext) -> str:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_pinned_peer_is_accepted_and_sees_the_clients_certificate(
    federation: Federation, files: Files, start_peer: StartPeer
) -> None:
    peer = await start_peer(files.server)
    ctx = client_context(federation, files.client, [files.server.fingerprint])
    assert await get(peer.url, ctx) == "hello from ss1"
    assert peer.peer_certs == [federation.other_server_cert.public_bytes(Encoding.DER)]


async def test_pin_is_compared_case_insensitively(
    federation: Federation, files: Files, start_peer: StartPeer
) -> None:
    peer = await start_peer(files.server)
    ctx = client_context(federation, files.client, ["0" * 64, files.server.fingerprint.upper()])
    assert await get(peer.url, ctx) == "hello from ss1"


@pytest.mark.parametrize("pins", ["other-server", "none"])
async def test_ca_valid_but_unpinned_server_is_refused_in_the_handshake(
    federation: Federation, files: Files, start_peer: StartPeer, pins: str
) -> None:
    peer = await start_peer(files.server)
    allowed = [files.client.fingerprint] if pins == "other-server" else []
    ctx = client_context(federation, files.client, allowed)
    with pytest.raises(aiohttp.ClientSSLError) as info:
        await get(peer.url, ctx)
    assert isinstance(info.value.__cause__ or info.value.os_error, ssl.SSLCertVerificationError)
    assert "is not the one registered in global configuration" in str(info.value)
    assert peer.peer_certs == []  # not a byte of the request reached the handler


async def test_pinned_server_from_another_ca_is_refused(
    federation: Federation, files: Files, start_peer: StartPeer
) -> None:
    # The pin alone is not enough: the certificate must also chain to an approved CA.
    peer = await start_peer(files.foreign)
    ctx = client_context(federation, files.client, [files.foreign.fingerprint])
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
        await get(peer.url, ctx)
    assert "certificate verify failed" in str(info.value)
    assert peer.peer_certs == []


# With TLS 1.2 the server's refusal ends the handshake; with TLS 1.3 the client has
# finished its side already and learns of the refusal when the server hangs up.
REFUSAL = {
    ssl.TLSVersion.TLSv1_2: aiohttp.ClientConnectorError,
    ssl.TLSVersion.TLSv1_3: aiohttp.ServerDisconnectedError,
}


@pytest.mark.parametrize("version", list(REFUSAL), ids=["tls1.2", "tls1.3"])
async def test_server_refuses_a_client_certificate_from_another_ca(
    federation: Federation, files: Files, start_peer: StartPeer, version: ssl.TLSVersion
) -> None:
    peer = await start_peer(files.server)
    ctx = client_context(federation, files.foreign, [files.server.fingerprint])
    ctx.maximum_version = version
    with pytest.raises(REFUSAL[version]) as info:
        await get(peer.url, ctx)
    # the client accepted the server (its pin and CA are right): the refusal is the server's
    assert not isinstance(info.value, aiohttp.ClientSSLError)
    assert peer.peer_certs == []


@pytest.mark.parametrize("version", list(REFUSAL), ids=["tls1.2", "tls1.3"])
async def test_server_refuses_a_client_without_certificate(
    federation: Federation, files: Files, start_peer: StartPeer, version: ssl.TLSVersion
) -> None:
    peer = await start_peer(files.server)
    ctx = ssl.create_default_context(cadata=federation.ca.certificate.public_bytes(Encoding.PEM).decode())
    ctx.check_hostname = False
    ctx.maximum_version = version
    with pytest.raises(REFUSAL[version]):
        await get(peer.url, ctx)
    assert peer.peer_certs == []


async def test_same_client_with_an_approved_certificate_is_served(
    federation: Federation, files: Files, start_peer: StartPeer
) -> None:
    # the control for the refusals above: only the client certificate differs
    peer = await start_peer(files.server)
    ctx = client_context(federation, files.client, [files.server.fingerprint])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await get(peer.url, ctx) == "hello from ss1"
    assert len(peer.peer_certs) == 1


def test_contexts_require_certificates_and_tls_1_2(federation: Federation, files: Files) -> None:
    server = server_context(
        files.server.certificate, files.server.key, PASSPHRASE, [federation.ca.certificate]
    )
    client = client_context(federation, files.client, [files.server.fingerprint])
    for ctx in (server, client):
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_wrong_key_passphrase_is_refused(federation: Federation, files: Files) -> None:
    with pytest.raises(ssl.SSLError):
        server_context(files.server.certificate, files.server.key, b"wrong", [federation.ca.certificate])


def test_peer_certificate_der_without_tls() -> None:
    assert peer_certificate_der(None) is None
