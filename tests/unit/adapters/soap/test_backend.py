"""Calling a SOAP backend: a real aiohttp server on 127.0.0.1 that records what it got."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.backend_http import new_backend_session
from adapters.soap.backend import SoapBackend
from adapters.soap.inbound import parse_soap_request, to_core_request
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ServiceId, SubsystemId
from core.messages import Protocol, Request, RequestHeader, sha512
from tests.unit.adapters.soap.messages import SPEC_REQUEST, TEXT_XML, envelope, multipart

ANSWER = envelope(body="<m:meldeauskunftResponse/>")


@dataclass
class Seen:
    """What the backend received."""

    calls: int = 0
    method: str = ""
    raw_path: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


SEEN = web.AppKey("seen", Seen)
RELEASE = web.AppKey("release", asyncio.Event)


async def _handler(request: web.Request) -> web.StreamResponse:
    seen = request.app[SEEN]
    seen.calls += 1
    seen.method = request.method
    seen.raw_path = request.raw_path
    seen.headers = [(k.decode().lower(), v.decode()) for k, v in request.raw_headers]
    seen.body = await request.read()
    tail = request.match_info["tail"]
    if tail == "fault":
        return web.Response(status=500, body=b"<fault/>", headers={"Content-Type": "text/xml"})
    if tail == "accepted":
        return web.Response(status=202)
    if tail == "missing":
        return web.Response(status=404, text="no such endpoint")
    if tail == "redirect":
        raise web.HTTPFound("/elsewhere")
    if tail == "slow":
        await request.app[RELEASE].wait()
    if tail == "big":
        return web.Response(body=b"x" * 2000, headers={"Content-Type": "text/xml"})
    return web.Response(body=ANSWER, headers={"Content-Type": "text/xml; charset=UTF-8", "X-Other": "1"})


@dataclass
class Backend:
    server: TestServer
    seen: Seen

    def url(self, tail: str = "soap") -> str:
        return f"http://127.0.0.1:{self.server.port}/{tail}"


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    app = web.Application()
    app[SEEN] = Seen()
    app[RELEASE] = asyncio.Event()
    app.router.add_route("*", "/{tail:.*}", _handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield Backend(server, app[SEEN])
    finally:
        app[RELEASE].set()
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_backend_session() as session:
        yield session


def soap_request(
    body: bytes = SPEC_REQUEST, content_type: str = TEXT_XML, action: str | None = '"urn:x"'
) -> Request:
    return to_core_request(parse_soap_request(body, content_type=content_type), soap_action=action)


async def test_the_clients_bytes_content_type_and_soapaction_are_sent(
    backend: Backend, session: aiohttp.ClientSession
) -> None:
    answer = await SoapBackend(session).call(backend.url("soap?wsdl=no"), soap_request())
    assert (answer.status, answer.content_type, answer.body) == (200, "text/xml; charset=UTF-8", ANSWER)
    seen = backend.seen
    assert seen.method == "POST"
    assert seen.raw_path == "/soap?wsdl=no"  # the endpoint URL as configured, query included
    assert seen.body == SPEC_REQUEST
    assert ("content-type", TEXT_XML) in seen.headers
    assert ("soapaction", '"urn:x"') in seen.headers
    names = [name for name, _ in seen.headers]
    # Nothing else travels end to end: no X-Road-* headers, no compression asked for.
    assert not [name for name in names if name.startswith("x-road-")]
    assert "accept-encoding" not in names
    assert "user-agent" not in names


async def test_no_soapaction_is_invented(backend: Backend, session: aiohttp.ClientSession) -> None:
    await SoapBackend(session).call(backend.url(), soap_request(action=None))
    assert "soapaction" not in [name for name, _ in backend.seen.headers]


async def test_a_multipart_body_is_sent_whole(backend: Backend, session: aiohttp.ClientSession) -> None:
    body = multipart([([("Content-Type", TEXT_XML)], SPEC_REQUEST), ([("Content-ID", "<a@x>")], b"%PDF")])
    content_type = 'multipart/related; type="text/xml"; boundary="MIME-b0undary"'
    await SoapBackend(session).call(backend.url(), soap_request(body, content_type))
    assert backend.seen.body == body
    assert ("content-type", content_type) in backend.seen.headers


@pytest.mark.parametrize(("tail", "status"), [("fault", 500), ("accepted", 202)])
async def test_fault_and_accepted_statuses_are_answers(
    backend: Backend, session: aiohttp.ClientSession, tail: str, status: int
) -> None:
    answer = await SoapBackend(session).call(backend.url(tail), soap_request())
    assert answer.status == status


@pytest.mark.parametrize("tail", ["missing", "redirect"])
async def test_other_statuses_are_a_service_failure(
    backend: Backend, session: aiohttp.ClientSession, tail: str
) -> None:
    with pytest.raises(XwegError) as info:
        await SoapBackend(session).call(backend.url(tail), soap_request())
    assert info.value.code is ErrorCode.SERVICE_FAILED
    assert info.value.origin is Origin.SERVER_PROXY
    assert "answered HTTP" in info.value.message
    assert backend.seen.calls == 1  # the redirect was not followed


async def test_slow_backend_times_out(backend: Backend, session: aiohttp.ClientSession) -> None:
    with pytest.raises(XwegError) as info:
        await SoapBackend(session, timeout_s=0.1).call(backend.url("slow"), soap_request())
    assert info.value.fault_code == "Server.ServerProxy.ServiceFailed.Timeout"


async def test_oversize_answer_is_a_service_failure(backend: Backend, session: aiohttp.ClientSession) -> None:
    with pytest.raises(XwegError) as info:
        await SoapBackend(session, max_response_bytes=1999).call(backend.url("big"), soap_request())
    assert info.value.code is ErrorCode.SERVICE_FAILED
    assert "1999" in info.value.message
    answer = await SoapBackend(session, max_response_bytes=2000).call(backend.url("big"), soap_request())
    assert len(answer.body) == 2000


async def test_refused_port_is_a_network_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(XwegError) as info:
        await SoapBackend(session).call(f"http://127.0.0.1:{port}/soap", soap_request())
    assert info.value.fault_code == "Server.ServerProxy.NetworkError"
    assert "connection refused" in info.value.message


@pytest.mark.parametrize(
    "url", ["ftp://backend/soap", "backend:8080", "http://", "http://backend/soap#f", ""]
)
async def test_bad_endpoint_url_is_an_internal_error(session: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(XwegError) as info:
        await SoapBackend(session).call(url, soap_request())
    assert info.value.code is ErrorCode.INTERNAL_ERROR
    assert info.value.origin is Origin.SERVER_PROXY


async def test_only_soap_requests_are_sent(session: aiohttp.ClientSession) -> None:
    header = RequestHeader(
        protocol=Protocol.REST,
        client=SubsystemId("NRW", "MUN", "05774020", "meldewesen"),
        service=ServiceId(SubsystemId("NRW", "MUN", "05711000", "meldewesen"), "meldeauskunft"),
        message_id="m-1",
        method="POST",
        path="",
        query="",
        headers=(),
        body_sha512=sha512(b""),
        body_size=0,
    )
    with pytest.raises(ValueError, match="SOAP"):
        await SoapBackend(session).call("http://127.0.0.1:9/soap", Request(header, b""))


async def test_session_with_cookie_jar_is_refused() -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(ValueError, match="cookies"):
            SoapBackend(plain)


@pytest.mark.parametrize(("timeout_s", "max_bytes"), [(0.0, 1), (-1.0, 1), (1.0, -1)])
async def test_bounds_must_be_sensible(
    session: aiohttp.ClientSession, timeout_s: float, max_bytes: int
) -> None:
    with pytest.raises(ValueError):
        SoapBackend(session, timeout_s=timeout_s, max_response_bytes=max_bytes)
