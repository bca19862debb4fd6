"""The OCSP responder as a real HTTP server on loopback, and the client that fetches from it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509 import ocsp

from core.clock import FixedClock
from tests.unit.trust.helpers import NOW
from trust.castore import CaStore
from trust.errors import CertificateInvalid, OcspFetchError
from trust.keys import generate_private_key, make_csr
from trust.ocsp import OcspPolicy, OcspStatus, build_ocsp_request, check_ocsp_response
from trust.ocspclient import fetch_ocsp_response
from trust.service.ocsp_responder import OcspResponderSettings, main, make_ocsp_app

PASSPHRASE = b"responder test passphrase"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    with CaStore.init(tmp_path / "ca", PASSPHRASE, now=NOW - dt.timedelta(days=1)) as store:
        yield store


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/"


@pytest.fixture
async def responder(store: CaStore) -> AsyncIterator[tuple[str, FixedClock]]:
    clock = FixedClock(NOW)
    runner, url = await start(make_ocsp_app(store.path, PASSPHRASE, clock, validity_s=600))
    try:
        yield url, clock
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def issue_sign(store: CaStore) -> x509.Certificate:
    return store.issue(make_csr(generate_private_key(), "m"), "sign", "NRW/MUN/05774032", now=NOW)


def verify(store: CaStore, der: bytes, cert: x509.Certificate, now: dt.datetime = NOW) -> OcspStatus:
    policy = OcspPolicy(responders=(store.responder_certificate,))
    return check_ocsp_response(der, cert, store.issuing_certificate, policy, now)


async def test_post_answers_with_a_signed_good_response(
    store: CaStore, responder: tuple[str, FixedClock], session: aiohttp.ClientSession
) -> None:
    url, _ = responder
    cert = issue_sign(store)
    request = build_ocsp_request(cert, store.issuing_certificate)
    async with session.post(url, data=request, headers={"Content-Type": "application/ocsp-request"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/ocsp-response"
        der = await resp.read()
    assert verify(store, der, cert) == OcspStatus(NOW, NOW, NOW + dt.timedelta(seconds=600))


async def test_get_form_of_rfc_6960_appendix_a(
    store: CaStore, responder: tuple[str, FixedClock], session: aiohttp.ClientSession
) -> None:
    url, _ = responder
    cert = issue_sign(store)
    request = build_ocsp_request(cert, store.issuing_certificate, hash_algorithm="sha256")
    path = quote(base64.b64encode(request).decode("ascii"), safe="")
    async with session.get(url + path) as resp:
        assert resp.status == 200
        der = await resp.read()
    verify(store, der, cert)


async def test_revocation_takes_effect_on_the_next_request(
    store: CaStore, responder: tuple[str, FixedClock], session: aiohttp.ClientSession
) -> None:
    url, clock = responder
    cert = issue_sign(store)
    request = build_ocsp_request(cert, store.issuing_certificate)
    before = await fetch_ocsp_response(session, url, request)
    verify(store, before, cert)
    # The operator revokes from another process (``xweg trust ca revoke``).
    with CaStore.open(store.path, PASSPHRASE) as operator:
        operator.revoke(cert.serial_number, x509.ReasonFlags.key_compromise, now=NOW)
    clock.advance(1)
    after = await fetch_ocsp_response(session, url, request)
    with pytest.raises(
        CertificateInvalid, match=r"was revoked at 2025-03-01T12:00:00\+00:00 \(reason keyCompromise\)"
    ):
        verify(store, after, cert, clock.now())


async def test_unknown_serial_is_answered_unknown(
    store: CaStore, responder: tuple[str, FixedClock], session: aiohttp.ClientSession
) -> None:
    url, _ = responder
    stranger = CaStore.init(store.path.parent / "other", PASSPHRASE, now=NOW)
    try:
        # Issued by another CA with the same names: the issuer key hash differs.
        cert = issue_sign(stranger)
        der = await fetch_ocsp_response(session, url, build_ocsp_request(cert, stranger.issuing_certificate))
    finally:
        stranger.close()
    assert ocsp.load_der_ocsp_response(der).certificate_status == ocsp.OCSPCertStatus.UNKNOWN


async def test_oversized_request_is_refused(
    responder: tuple[str, FixedClock], session: aiohttp.ClientSession
) -> None:
    url, _ = responder
    headers = {"Content-Type": "application/ocsp-request"}
    async with session.post(url, data=b"\x30" * (11 * 1024), headers=headers) as resp:
        assert resp.status == 413


async def test_wrong_content_type_is_refused(
    responder: tuple[str, FixedClock], session: aiohttp.ClientSession
) -> None:
    url, _ = responder
    async with session.post(url, data=b"x", headers={"Content-Type": "text/plain"}) as resp:
        assert resp.status == 415


@pytest.mark.parametrize("body", [b"garbage", b"\x30\x00"])
async def test_malformed_request_gets_malformed_request(
    responder: tuple[str, FixedClock], session: aiohttp.ClientSession, body: bytes
) -> None:
    url, _ = responder
    der = await fetch_ocsp_response(session, url, body)
    assert ocsp.load_der_ocsp_response(der).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_malformed_get_gets_malformed_request(
    responder: tuple[str, FixedClock], session: aiohttp.ClientSession
) -> None:
    url, _ = responder
    async with session.get(url + "not*base64") as resp:
        assert resp.status == 200
        der = await resp.read()
    assert ocsp.load_der_ocsp_response(der).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


# -- the client's failures, each one clear error ----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_fetch_connection_refused(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(OcspFetchError, match=rf"cannot connect to OCSP responder {url}"):
        await fetch_ocsp_response(session, url, b"\x30\x00")


async def fake_responder(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/", handler)
    return await start(app)


async def test_fetch_http_error_status(session: aiohttp.ClientSession) -> None:
    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    runner, url = await fake_responder(fail)
    try:
        with pytest.raises(OcspFetchError, match=rf"OCSP responder {url} answered HTTP 503"):
            await fetch_ocsp_response(session, url, b"\x30\x00")
    finally:
        await runner.cleanup()


async def test_fetch_wrong_content_type(session: aiohttp.ClientSession) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>captive portal</html>", content_type="text/html")

    runner, url = await fake_responder(html)
    try:
        with pytest.raises(OcspFetchError, match="content type 'text/html'"):
            await fetch_ocsp_response(session, url, b"\x30\x00")
    finally:
        await runner.cleanup()


async def test_fetch_timeout(session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    runner, url = await fake_responder(hang)
    try:
        with pytest.raises(OcspFetchError, match=rf"OCSP responder {url} did not answer within 0.2 s"):
            await fetch_ocsp_response(session, url, b"\x30\x00", timeout_s=0.2)
    finally:
        release.set()
        await runner.cleanup()


async def test_fetch_oversized_response(session: aiohttp.ClientSession) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/ocsp-response"})
        await resp.prepare(request)  # chunked: no Content-Length to refuse up front
        for _ in range(10):
            await resp.write(b"\x30" * 1024)
        await resp.write_eof()
        return resp

    runner, url = await fake_responder(big)
    try:
        with pytest.raises(OcspFetchError, match="more than the limit of 4096 bytes"):
            await fetch_ocsp_response(session, url, b"\x30\x00", max_size=4096)
    finally:
        await runner.cleanup()


# -- settings and entry point -----------------------------------------------------------


def test_settings_load(tmp_path: Path) -> None:
    (tmp_path / "pass").write_bytes(PASSPHRASE + b"\n")
    config = tmp_path / "responder.toml"
    config.write_text('ca_dir = "ca"\npassphrase_file = "pass"\nport = 9999\nvalidity_s = 900\n')
    settings = OcspResponderSettings.load(config)
    assert settings.ca_dir == tmp_path / "ca"
    assert settings.passphrase == PASSPHRASE
    assert (settings.host, settings.port, settings.validity_s) == ("127.0.0.1", 9999, 900)
    assert "responder test" not in repr(settings)

    config.write_text('ca_dir = "ca"\npassphrase_env = "OCSP_PASS"\n')
    assert OcspResponderSettings.load(config, {"OCSP_PASS": "x"}).passphrase == b"x"
    with pytest.raises(ValueError, match="OCSP_PASS .* is not set"):
        OcspResponderSettings.load(config, {})

    config.write_text('ca_dir = "ca"\npassphrase_env = "P"\nlisten = "0.0.0.0"\n')
    with pytest.raises(ValueError, match="unknown key.* listen"):
        OcspResponderSettings.load(config, {"P": "x"})


def test_main_with_a_broken_configuration_returns_1(tmp_path: Path) -> None:
    assert main(tmp_path / "missing.toml") == 1
    config = tmp_path / "responder.toml"
    config.write_text('ca_dir = "nowhere"\npassphrase_env = "P"\nport = 0\n')
    assert main(config) == 1  # P is not set
