"""BackendPool: a backend's TLS certificate is checked unless its service says not to.

A real HTTPS backend on loopback with a self-signed certificate (the internal TLS
certificate's kind): refused through the verifying session, answered through the one a
service with ``verify_tls = false`` gets, and turning verification off for one service
leaves it on for the others.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.backend_http import new_backend_session
from adapters.rest.inbound import parse_rest_request
from core.errors import XwegError
from core.messages import Request
from gateway.internaltls import load_or_create_internal_tls
from gateway.runtime import BackendPool


async def _answer(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path})


@pytest.fixture
async def https_backend(tmp_path: Path) -> AsyncIterator[str]:
    certificate, key = load_or_create_internal_tls(tmp_path, None)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    app = web.Application()
    app.router.add_get("/api/{tail:.*}", _answer)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server(ssl=context)
    try:
        yield f"https://127.0.0.1:{server.port}/api"
    finally:
        await server.close()


def _request() -> Request:
    return parse_rest_request(
        "GET",
        "/r1/NRW/MUN/05711000/gewerbeamt/betriebe/42",
        [("X-Road-Client", "NRW/MUN/05774032/gewerbeamt")],
        b"",
        new_message_id=lambda: str(uuid.uuid4()),
    )


async def test_a_self_signed_backend_is_refused_unless_the_service_turns_checking_off(
    https_backend: str,
) -> None:
    pool = BackendPool(new_backend_session(), 1024 * 1024)
    try:
        with pytest.raises(XwegError) as refused:
            await pool.get(5.0).call(https_backend, _request())
        assert refused.value.fault_code.startswith("Server.ServerProxy.")
        assert "certificate" in refused.value.message.lower()

        status, _, body = await pool.get(5.0, verify_tls=False).call(https_backend, _request())
        assert status == 200
        assert body == b'{"path": "/api/42"}'

        # the unchecked session is the service's own: the default one still checks
        with pytest.raises(XwegError):
            await pool.get(7.0).call(https_backend, _request())
        with pytest.raises(XwegError):
            await pool.fetch_description(https_backend + "/openapi.json", 5.0, 1024)
        document = await pool.fetch_description(https_backend + "/openapi.json", 5.0, 1024, verify_tls=False)
        assert document == b'{"path": "/api/openapi.json"}'
    finally:
        await pool.close()
