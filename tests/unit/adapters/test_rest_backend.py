"""Calling a backend information system: a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.rest.backend import RestBackend, new_backend_session
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ServiceId, SubsystemId
from core.messages import Protocol, Request, RequestHeader, sha512


@dataclass
class Seen:
    """What the backend received."""

    method: str = ""
    raw_path: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Backend:
    server: TestServer
    seen: Seen
    release: asyncio.Event

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


async def _handler(request: web.Request) -> web.StreamResponse:
    seen: Seen = request.app[SEEN]
    seen.method = request.method
    seen.raw_path = request.raw_path
    seen.headers = [(k.decode(), v.decode()) for k, v in request.raw_headers]
    seen.body = await request.read()
    tail = request.match_info["tail"]
    if tail.startswith("redirect"):
        raise web.HTTPFound("/elsewhere")
    if tail.startswith("fail"):
        return web.Response(status=500, text="backend broke", headers={"X-Backend-Error": "E17"})
    if tail.startswith("missing"):
        return web.Response(status=404, body=b"no such thing")
    if tail.startswith("slow"):
        await request.app[RELEASE].wait()
        return web.Response(text="late")
    if tail.startswith("big"):
        return web.Response(body=b"x" * 2000)
    if tail.startswith("stream"):
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(20):
            await response.write(b"y" * 100)
        await response.write_eof()
        return response
    if tail.startswith("gzip"):
        return web.Response(body=b"\x1f\x8bnot really gzip", headers={"Content-Encoding": "gzip"})
    if tail.startswith("xroad"):
        return web.Response(text="ok", headers={"X-Road-Error": "Server.ServerProxy.Fake", "X-Kept": "1"})
    return web.Response(
        body=b'{"ok":true}',
        headers={
            "Content-Type": "application/json",
            "X-Answer": "42",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "hop",
            "Keep-Alive": "timeout=5",
            "Set-Cookie": "sid=1",
        },
    )


SEEN = web.AppKey("seen", Seen)
RELEASE = web.AppKey("release", asyncio.Event)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    app = web.Application()
    app[SEEN] = Seen()
    app[RELEASE] = asyncio.Event()
    app.router.add_route("*", "/{tail:.*}", _handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield Backend(server, app[SEEN], app[RELEASE])
    finally:
        app[RELEASE].set()
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_backend_session() as session:
        yield session


def make_request(
    path: str = "/anzeigen",
    query: str = "",
    method: str = "GET",
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    optional: bool = True,
) -> Request:
    header = RequestHeader(
        protocol=Protocol.REST,
        client=SubsystemId("NRW", "MUN", "05774020", "meldewesen"),
        service=ServiceId(SubsystemId("NRW", "MUN", "05774032", "gewerbeamt"), "gewerbeanzeige"),
        message_id="0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10",
        method=method,
        path=path,
        query=query,
        headers=headers,
        body_sha512=sha512(body),
        body_size=len(body),
        user_id="DE0000000001" if optional else None,
        issue="AZ-17" if optional else None,
        represented_party="MUN/05774020" if optional else None,
    )
    return Request(header, body)


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [name.lower() for name, _ in headers]


async def test_path_and_query_are_appended_unchanged(
    backend: Backend, session: aiohttp.ClientSession
) -> None:
    path = "/anzeigen/%C3%A4rger/a%2Db/%7E/x+y/50%25/a;b=c/"
    query = "q=a%20b&r=c+d&s=%2F&t=%C3%A4&u&v=/x?y"
    status, _, body = await RestBackend(session).call(backend.base_url + "/api/", make_request(path, query))
    assert status == 200
    assert body == b'{"ok":true}'
    assert backend.seen.raw_path == "/api" + path + "?" + query


async def test_empty_path_and_query(backend: Backend, session: aiohttp.ClientSession) -> None:
    await RestBackend(session).call(backend.base_url, make_request(path="", query=""))
    assert backend.seen.raw_path == "/"


async def test_method_body_and_headers_are_forwarded(
    backend: Backend, session: aiohttp.ClientSession
) -> None:
    body = b'{"betrieb":"Tischlerei"}'
    request = make_request(
        method="PUT",
        body=body,
        headers=(
            ("content-type", "application/json"),
            ("accept", "a/b"),
            ("accept", "c/d"),
            ("x-custom", "1"),
        ),
    )
    await RestBackend(session).call(backend.base_url, request)
    seen = backend.seen
    assert seen.method == "PUT"
    assert seen.body == body
    received = [(name.lower(), value) for name, value in seen.headers]
    for pair in [
        ("content-type", "application/json"),
        ("accept", "a/b"),
        ("accept", "c/d"),
        ("x-custom", "1"),
        ("x-road-client", "NRW/MUN/05774020/meldewesen"),
        ("x-road-service", "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige"),
        ("x-road-id", "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"),
        ("x-road-userid", "DE0000000001"),
        ("x-road-issue", "AZ-17"),
        ("x-road-represented-party", "MUN/05774020"),
        ("content-length", str(len(body))),
    ]:
        assert pair in received
    assert "accept-encoding" not in names(seen.headers)


async def test_absent_optional_headers_are_not_invented(
    backend: Backend, session: aiohttp.ClientSession
) -> None:
    await RestBackend(session).call(backend.base_url, make_request(optional=False))
    sent = names(backend.seen.headers)
    assert "x-road-client" in sent
    for name in (
        "x-road-userid",
        "x-road-issue",
        "x-road-represented-party",
        "content-type",
        "content-length",
    ):
        assert name not in sent


async def test_response_headers_are_filtered(backend: Backend, session: aiohttp.ClientSession) -> None:
    status, headers, _ = await RestBackend(session).call(backend.base_url, make_request())
    assert status == 200
    assert ("content-type", "application/json") in headers
    assert ("x-answer", "42") in headers
    assert ("set-cookie", "sid=1") in headers
    kept = [name for name, _ in headers]
    assert kept == [name.lower() for name in kept]
    for dropped in (
        "connection",
        "keep-alive",
        "x-hop",
        "server",
        "date",
        "content-length",
        "transfer-encoding",
    ):
        assert dropped not in kept


async def test_backend_cannot_set_xroad_headers(backend: Backend, session: aiohttp.ClientSession) -> None:
    _, headers, _ = await RestBackend(session).call(backend.base_url, make_request("/xroad"))
    assert ("x-kept", "1") in headers
    assert not [name for name, _ in headers if name.startswith("x-road-")]


async def test_redirect_is_returned_not_followed(backend: Backend, session: aiohttp.ClientSession) -> None:
    status, headers, _ = await RestBackend(session).call(backend.base_url, make_request("/redirect"))
    assert status == 302
    assert ("location", "/elsewhere") in headers
    assert backend.seen.raw_path == "/redirect"


@pytest.mark.parametrize(
    "path, status, body", [("/fail", 500, b"backend broke"), ("/missing", 404, b"no such thing")]
)
async def test_backend_error_status_passes_through(
    backend: Backend, session: aiohttp.ClientSession, path: str, status: int, body: bytes
) -> None:
    got_status, headers, got_body = await RestBackend(session).call(backend.base_url, make_request(path))
    assert (got_status, got_body) == (status, body)
    if status == 500:
        assert ("x-backend-error", "E17") in headers


async def test_compressed_body_passes_through_undecoded(
    backend: Backend, session: aiohttp.ClientSession
) -> None:
    _, headers, body = await RestBackend(session).call(backend.base_url, make_request("/gzip"))
    assert body == b"\x1f\x8bnot really gzip"
    assert ("content-encoding", "gzip") in headers


async def test_refused_port_is_a_network_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(XwegError) as info:
        await RestBackend(session).call(f"http://127.0.0.1:{port}", make_request())
    error = info.value
    assert error.code is ErrorCode.NETWORK_ERROR
    assert error.origin is Origin.SERVER_PROXY
    assert error.fault_code == "Server.ServerProxy.NetworkError"
    assert f"127.0.0.1:{port}" in error.message
    assert "connection refused" in error.message
    assert "Traceback" not in error.message and "\n" not in error.message


async def test_unresolvable_host_is_a_network_error(session: aiohttp.ClientSession) -> None:
    with pytest.raises(XwegError) as info:
        await RestBackend(session).call("http://backend.invalid:8080", make_request())
    assert info.value.code is ErrorCode.NETWORK_ERROR
    assert "backend.invalid:8080" in info.value.message


async def test_reset_connection_is_a_network_error(session: aiohttp.ClientSession) -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.transport.abort()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(XwegError) as info:
            await RestBackend(session).call(f"http://127.0.0.1:{port}", make_request())
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.code is ErrorCode.NETWORK_ERROR
    assert info.value.origin is Origin.SERVER_PROXY


async def test_garbage_response_is_a_service_failure(session: aiohttp.ClientSession) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(XwegError) as info:
            await RestBackend(session).call(f"http://127.0.0.1:{port}", make_request())
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.code is ErrorCode.SERVICE_FAILED, info.value
    assert info.value.origin is Origin.SERVER_PROXY


async def test_slow_backend_times_out(backend: Backend, session: aiohttp.ClientSession) -> None:
    with pytest.raises(XwegError) as info:
        await RestBackend(session, timeout_s=0.1).call(backend.base_url, make_request("/slow"))
    error = info.value
    assert error.code is ErrorCode.SERVICE_TIMEOUT
    assert error.fault_code == "Server.ServerProxy.ServiceFailed.Timeout"
    assert error.http_status == 500


@pytest.mark.parametrize("path", ["/big", "/stream"])
async def test_oversize_body_is_a_service_failure(
    backend: Backend, session: aiohttp.ClientSession, path: str
) -> None:
    with pytest.raises(XwegError) as info:
        await RestBackend(session, max_response_bytes=1000).call(backend.base_url, make_request(path))
    assert info.value.code is ErrorCode.SERVICE_FAILED
    assert info.value.origin is Origin.SERVER_PROXY
    assert "1000" in info.value.message


@pytest.mark.parametrize("path, size", [("/big", 2000), ("/stream", 2000)])
async def test_body_at_the_cap_is_read(
    backend: Backend, session: aiohttp.ClientSession, path: str, size: int
) -> None:
    _, _, body = await RestBackend(session, max_response_bytes=size).call(
        backend.base_url, make_request(path)
    )
    assert len(body) == size


@pytest.mark.parametrize(
    "base_url",
    ["ftp://backend", "backend:8080", "http://", "http://backend/api?x=1", "http://backend/#f", ""],
)
async def test_bad_base_url_is_an_internal_error(session: aiohttp.ClientSession, base_url: str) -> None:
    with pytest.raises(XwegError) as info:
        await RestBackend(session).call(base_url, make_request())
    assert info.value.code is ErrorCode.INTERNAL_ERROR
    assert info.value.origin is Origin.SERVER_PROXY


async def test_session_with_cookie_jar_is_refused() -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(ValueError, match="cookies"):
            RestBackend(plain)


@pytest.mark.parametrize("timeout_s, max_bytes", [(0.0, 1), (-1.0, 1), (1.0, -1)])
async def test_bounds_must_be_sensible(
    session: aiohttp.ClientSession, timeout_s: float, max_bytes: int
) -> None:
    with pytest.raises(ValueError):
        RestBackend(session, timeout_s=timeout_s, max_response_bytes=max_bytes)


@pytest.mark.parametrize(
    "path, query",
    [("/a/../admin", ""), ("/%2e%2e/admin", ""), ("/a%2fb", ""), ("/a", "q=#f")],
)
async def test_unsafe_path_never_reaches_the_backend(
    backend: Backend, session: aiohttp.ClientSession, path: str, query: str
) -> None:
    with pytest.raises(XwegError) as info:
        await RestBackend(session).call(backend.base_url, make_request(path, query))
    assert info.value.code is ErrorCode.INVALID_REQUEST
    assert backend.seen.method == ""
