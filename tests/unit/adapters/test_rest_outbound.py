"""What the information system gets back: X-Road response headers and REST error bodies."""

from __future__ import annotations

import json

import pytest

from adapters.rest.outbound import render_rest_error, response_headers_for_client
from core.canonical import b64, request_digest
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ServiceId, SubsystemId
from core.messages import Protocol, RequestHeader, ResponseHeader, sha512

REQUEST = RequestHeader(
    protocol=Protocol.REST,
    client=SubsystemId("NRW", "MUN", "05774020", "meldewesen"),
    service=ServiceId(SubsystemId("NRW", "MUN", "05774032", "gewerbeamt"), "gewerbeanzeige"),
    message_id="0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10",
    method="GET",
    path="/anzeigen",
    query="",
    headers=(),
    body_sha512=sha512(b""),
    body_size=0,
)
REQUEST_HASH = b64(request_digest(REQUEST))


def response(headers: tuple[tuple[str, str], ...]) -> ResponseHeader:
    return ResponseHeader(REQUEST.message_id, REQUEST_HASH, 200, headers, sha512(b"{}"), 2)


def test_response_headers_carry_xroad_fields_after_provider_headers() -> None:
    provider = (
        ("content-type", "application/json"),
        ("x-answer", "42"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    )
    headers = response_headers_for_client(REQUEST, response(provider), request_hash=REQUEST_HASH)
    assert headers == [
        ("content-type", "application/json"),
        ("x-answer", "42"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("X-Road-Id", "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"),
        ("X-Road-Client", "NRW/MUN/05774020/meldewesen"),
        ("X-Road-Service", "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige"),
        ("X-Road-Request-Id", "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"),
        ("X-Road-Request-Hash", REQUEST_HASH),
    ]


def test_provider_cannot_forge_xroad_or_framing_headers() -> None:
    provider = (
        ("x-road-error", "Server.ServerProxy.Fake"),
        ("x-road-request-hash", "forged"),
        ("content-length", "99"),
        ("transfer-encoding", "chunked"),
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=1"),
        ("x-kept", "yes"),
    )
    headers = response_headers_for_client(REQUEST, response(provider), request_hash=REQUEST_HASH)
    provider_part = headers[:-5]
    assert provider_part == [("x-kept", "yes")]
    assert [name for name, _ in headers].count("X-Road-Request-Hash") == 1
    assert ("X-Road-Request-Hash", REQUEST_HASH) in headers


@pytest.mark.parametrize(
    "error, status",
    [
        (XwegError(ErrorCode.NETWORK_ERROR, "cannot reach the backend", Origin.SERVER_PROXY), 500),
        (XwegError(ErrorCode.INVALID_CLIENT_IDENTIFIER, "X-Road-Client is missing", Origin.CLIENT), 400),
        (XwegError(ErrorCode.REQUEST_TOO_LARGE, "body over 10 MiB", Origin.CLIENT_PROXY), 413),
        (XwegError(ErrorCode.ACCESS_DENIED, "Zugriff für „meldewesen“ verweigert", Origin.SERVER_PROXY), 500),
    ],
)
def test_render_rest_error(error: XwegError, status: int) -> None:
    got_status, headers, body = render_rest_error(error)
    assert got_status == status
    assert headers == [
        ("Content-Type", "application/json; charset=utf-8"),
        ("X-Road-Error", error.fault_code),
    ]
    assert json.loads(body.decode("utf-8")) == {
        "type": error.fault_code,
        "message": error.message,
        "detail": error.correlation_id,
    }


def test_render_rest_error_matches_the_protocol_example() -> None:
    error = XwegError(ErrorCode.NETWORK_ERROR, "...", Origin.SERVER_PROXY, correlation_id="c0ffee")
    _, headers, body = render_rest_error(error)
    assert ("X-Road-Error", "Server.ServerProxy.NetworkError") in headers
    assert json.loads(body) == {
        "type": "Server.ServerProxy.NetworkError",
        "message": "...",
        "detail": "c0ffee",
    }
    assert list(json.loads(body)) == ["type", "message", "detail"]
