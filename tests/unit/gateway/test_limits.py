"""The client listener's bounds, tried from the outside against a running security server.

Headers are sent over a raw socket, so that exactly what is counted is sent; exchanges
go through the server's own peer listener to a backend the test runs and holds.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from adapters.soap.envelope import NS_SOAP_ENV
from gateway.config import ConfigError, Limits
from tests.unit.gateway.running_server import (
    Pki,
    ServerFiles,
    exchange,
    running_backend,
    serving,
    write_server,
)

HEADER_LIMIT = 1024
MAX_HEADERS = 10


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki.create()


async def raw(files: ServerFiles, head: bytes) -> tuple[int, bytes, bool]:
    """Send ``head`` (a request without a body); the answer's status and body, and whether
    the server closed the connection after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", files.client_port)
    try:
        writer.write(head)
        await writer.drain()
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.5) == b""
        except TimeoutError:
            closed = False  # kept alive for the next request
        return int(status_line.split(" ")[1]), body, closed
    finally:
        writer.close()


def request(*headers: str, target: str = "/healthz") -> bytes:
    """``GET target`` with a Host header and ``headers``, as bytes on the wire."""
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


@pytest.fixture
async def bounded(tmp_path: Path, pki: Pki) -> ServerFiles:
    files = write_server(
        tmp_path,
        pki,
        "http://127.0.0.1:9/",
        limits={"max_header_bytes": HEADER_LIMIT, "max_headers": MAX_HEADERS},
    )
    return files


async def test_a_header_within_the_size_limit_passes_one_beyond_is_refused(bounded: ServerFiles) -> None:
    async with serving(bounded):
        status, _, closed = await raw(bounded, request("X-Note: " + "a" * HEADER_LIMIT))
        assert (status, closed) == (200, False)
        status, body, closed = await raw(bounded, request("X-Note: " + "a" * (HEADER_LIMIT + 1)))
        assert (status, closed) == (400, True)
        assert f"Got more than {HEADER_LIMIT} bytes" in body.decode()


async def test_a_request_line_beyond_the_size_limit_is_refused(bounded: ServerFiles) -> None:
    async with serving(bounded):
        status, _, closed = await raw(bounded, request(target="/healthz?" + "q" * HEADER_LIMIT))
        assert (status, closed) == (400, True)


async def test_headers_up_to_the_count_limit_pass_one_more_is_refused(bounded: ServerFiles) -> None:
    async with serving(bounded):
        # Host is one of them.
        at_limit = [f"X-H{i}: v" for i in range(MAX_HEADERS - 1)]
        status, _, closed = await raw(bounded, request(*at_limit))
        assert (status, closed) == (200, False)
        status, body, closed = await raw(bounded, request(*at_limit, "X-One-More: v"))
        assert (status, closed) == (400, True)
        assert "Too many headers" in body.decode()


async def test_requests_beyond_the_concurrency_limit_are_refused_at_once(tmp_path: Path, pki: Pki) -> None:
    async with running_backend(delay_s=2.0) as backend:
        files = write_server(tmp_path, pki, backend.url, limits={"max_concurrent_requests": 2})
        async with serving(files), aiohttp.ClientSession() as session:
            held = [asyncio.create_task(exchange(session, files)) for _ in range(2)]
            await backend.wait_for(2)

            # REST: an X-Road error body, 503, and when to try again.
            started = time.monotonic()
            refused = await exchange(session, files)
            assert time.monotonic() - started < 1.0  # refused at once, not queued
            assert refused.status == 503
            assert refused.headers["X-Road-Error"] == "Server.ClientProxy.TooManyRequests"
            assert refused.headers["Retry-After"] == "1"
            error = await refused.json()
            assert error["type"] == "Server.ClientProxy.TooManyRequests"
            assert "handling 2 requests already" in error["message"]
            assert error["detail"]

            # SOAP: a SOAP fault with the same code.
            async with session.post(
                files.url + "/", data=b"<Envelope/>", headers={"Content-Type": "text/xml"}
            ) as resp:
                assert resp.status == 503
                assert resp.headers["Content-Type"].startswith("text/xml")
                fault = etree.fromstring(await resp.read())
            code = fault.find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault/faultcode")
            assert code is not None and code.text == "Server.ClientProxy.TooManyRequests"

            # The probes are not counted: a busy server is still alive and ready.
            async with session.get(files.url + "/healthz") as resp:
                assert resp.status == 200
            async with session.get(files.url + "/readyz") as resp:
                assert resp.status == 200

            assert [(await t).status for t in held] == [200, 200]
            assert backend.calls == 2  # the refused ones never reached the provider
            assert (await exchange(session, files)).status == 200  # the slots are free again


async def test_a_service_timeout_above_the_ceiling_is_cut_to_it(tmp_path: Path, pki: Pki) -> None:
    async with running_backend(delay_s=20) as backend:
        files = write_server(
            tmp_path, pki, backend.url, limits={"max_backend_timeout_s": 1}, service_timeout_s=60
        )
        async with serving(files), aiohttp.ClientSession() as session:
            started = time.monotonic()
            answer = await exchange(session, files)
            assert time.monotonic() - started < 5
            assert answer.headers["X-Road-Error"] == "Server.ServerProxy.ServiceFailed.Timeout"
            assert backend.calls == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"max_headers": 1.5},
        {"max_header_bytes": True},
        {"max_concurrent_requests": 0},
        {"shutdown_timeout_s": -1},
        {"max_backend_timeout_s": "30"},
    ],
)
def test_limits_must_be_positive_and_counts_integers(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Limits(**changes)  # type: ignore[arg-type]


def test_the_defaults() -> None:
    limits = Limits()
    assert (limits.max_header_bytes, limits.max_headers, limits.max_concurrent_requests) == (8192, 100, 256)
    assert (limits.max_backend_timeout_s, limits.shutdown_timeout_s) == (300.0, 30.0)
