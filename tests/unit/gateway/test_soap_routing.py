"""Which requests the client listener takes as X-Road SOAP, and how SOAP clients hear of failures.

The listener runs for real on 127.0.0.1 (aiohttp's TestServer); the pipelines are replaced
by recorders, so that what is tested is the routing and the rendering at the edge.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from lxml import etree

from adapters.soap.envelope import NS_SOAP_ENV
from core.clock import SystemClock
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import MemberId, SecurityServerId
from gateway import server as gateway_server
from gateway.auditapi import AuditQueryLog
from gateway.clientauth import ClientConnection
from gateway.config import GatewayConfig, Limits, Listener, OpmonSettings
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.opmon import OperationalMonitor
from gateway.pipeline.consumer import ClientAnswer, PassThroughError
from gateway.runtime import Gateway
from gateway.serverconf.model import ClientEntry
from trust.keys import generate_private_key

TEXT_XML = "text/xml; charset=utf-8"
ENVELOPE = b"<SOAP-ENV:Envelope/>"
LIMIT = 4096
OK = ClientAnswer(200, [("Content-Type", "text/xml; charset=UTF-8")], b"<answer/>")


@dataclass
class Recorder:
    """Stands in for the pipelines: records each call, answers or raises ``outcome``."""

    soap: list[dict[str, Any]] = field(default_factory=list)
    rest: list[str] = field(default_factory=list)
    outcome: ClientAnswer | BaseException = OK

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
        self.soap.append(
            {"method": method, "body": body, "content_type": content_type, "soap_action": soap_action}
        )
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

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
        self.rest.append(raw_target)
        return ClientAnswer(200, [("Content-Type", "application/json")], b"{}")


@dataclass
class RunningListener:
    server: TestServer
    recorder: Recorder

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


def _gateway(tmp_path: Path) -> Gateway:
    member = MemberId("NRW", "MUN", "05774020")
    config = GatewayConfig(
        server_id=SecurityServerId(member, "ss1"),
        anchor_path=tmp_path / "anchor.json",
        data_dir=tmp_path,
        client_listener=Listener("127.0.0.1", 0),
        peer_listener=Listener("127.0.0.1", 0),
        auth_key_path=tmp_path / "auth.key",
        auth_certificate_path=tmp_path / "auth.pem",
        sign_keys=(),
        key_passphrase=None,
        clients=(ClientEntry(member.subsystem("meldewesen")),),
        services=(),
        access=(),
        limits=Limits(max_body_bytes=LIMIT),
    )
    # Only what building the listener reads: its configuration and the auditor API's parts.
    return cast(
        Gateway,
        SimpleNamespace(
            config=config,
            clock=SystemClock(),
            auditor_token_key=generate_private_key(),
            auditor_queries=AuditQueryLog.open(tmp_path / "auditor-queries.db"),
            metrics=GatewayMetrics(SystemClock()),
            opmon=OperationalMonitor(tmp_path / "opmon.db", OpmonSettings(), SystemClock()),
        ),
    )


@pytest.fixture
async def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningListener]:
    recorder = Recorder()
    monkeypatch.setattr(gateway_server, "handle_soap_request", recorder.handle_soap_request)
    monkeypatch.setattr(gateway_server, "handle_rest_request", recorder.handle_rest_request)
    gateway = _gateway(tmp_path)
    server = TestServer(gateway_server.build_client_app(gateway), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield RunningListener(server, recorder)
    finally:
        await server.close()
        gateway.auditor_queries.close()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


async def send(
    listener: RunningListener,
    path: str,
    *,
    method: str = "POST",
    body: bytes = ENVELOPE,
    headers: dict[str, str] | None = None,
) -> Reply:
    sent = {"Content-Type": TEXT_XML, "SOAPAction": '"urn:meldeauskunft"'} if headers is None else headers
    async with aiohttp.ClientSession() as session:
        async with session.request(method, listener.url + path, data=body, headers=sent) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())


async def raw_request(listener: RunningListener, target: str, body: bytes = ENVELOPE) -> tuple[bytes, bytes]:
    """Send ``POST target`` over a plain connection; return the status line and the body."""
    head = (
        f"POST {target} HTTP/1.1\r\nHost: example.org\r\nContent-Type: {TEXT_XML}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.server.port)
    try:
        writer.write(head + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    return status_line, rest.partition(b"\r\n\r\n")[2]


def fault_of(reply: Reply) -> tuple[str | None, str | None, str | None]:
    assert reply.headers["Content-Type"] == "text/xml; charset=UTF-8"
    fault = etree.fromstring(reply.body).find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
    assert fault is not None, reply.body
    return fault.findtext("faultcode"), fault.findtext("faultstring"), fault.findtext("detail/faultDetail")


# ------------------------------------------------------------------ what is SOAP


@pytest.mark.parametrize(
    "path",
    ["/", "/cgi-bin/consumer_proxy", "/xroad-endpoint?x=1", "/r1", "/audit", "/wsdl", "/listClients"],
)
async def test_a_post_at_any_path_without_a_route_is_soap(listener: RunningListener, path: str) -> None:
    reply = await send(listener, path)
    assert (reply.status, reply.body) == (200, b"<answer/>")
    assert reply.headers["Content-Type"] == "text/xml; charset=UTF-8"
    assert listener.recorder.soap == [
        {"method": "POST", "body": ENVELOPE, "content_type": TEXT_XML, "soap_action": '"urn:meldeauskunft"'}
    ]
    assert listener.recorder.rest == []


async def test_an_absolute_form_target_is_soap(listener: RunningListener) -> None:
    status_line, body = await raw_request(listener, "http://example.org/xroad-endpoint")
    assert status_line == b"HTTP/1.1 200 OK"
    assert body == b"<answer/>"
    assert [call["body"] for call in listener.recorder.soap] == [ENVELOPE]


async def test_an_absolute_form_target_is_routed_by_its_path(listener: RunningListener) -> None:
    status_line, _ = await raw_request(listener, "http://example.org/healthz")
    assert status_line.startswith(b"HTTP/1.1 405")
    assert listener.recorder.soap == []


async def test_soapaction_is_optional(listener: RunningListener) -> None:
    await send(listener, "/", headers={"Content-Type": TEXT_XML})
    assert listener.recorder.soap[0]["soap_action"] is None


async def test_rest_stays_rest(listener: RunningListener) -> None:
    reply = await send(listener, "/r1/NRW/MUN/05711000/meldewesen/meldeauskunft", headers={})
    assert reply.status == 200
    assert listener.recorder.rest == ["/r1/NRW/MUN/05711000/meldewesen/meldeauskunft"]
    assert listener.recorder.soap == []


@pytest.mark.parametrize(
    ("path", "status"),
    [("/healthz", 405), ("/directory/v1/nowhere", 404), ("/audit/v1/records", 401)],
)
async def test_the_listeners_own_routes_are_not_soap(
    listener: RunningListener, path: str, status: int
) -> None:
    reply = await send(listener, path)
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("application/")
    assert listener.recorder.soap == []


async def test_other_methods_without_a_soap_content_type_are_not_found(listener: RunningListener) -> None:
    reply = await send(listener, "/nowhere", method="GET", body=b"", headers={})
    assert reply.status == 404
    assert json.loads(reply.body)["type"] == "Client.InvalidRequest"
    assert listener.recorder.soap == []


@pytest.mark.parametrize("content_type", [TEXT_XML, 'multipart/related; boundary="b"'])
async def test_other_methods_with_a_soap_content_type_are_soap(
    listener: RunningListener, content_type: str
) -> None:
    # The SOAP pipeline refuses them with InvalidHttpMethod, as a SOAP fault.
    await send(listener, "/nowhere", method="PUT", headers={"Content-Type": content_type})
    assert [call["method"] for call in listener.recorder.soap] == ["PUT"]


# ------------------------------------------------------------------ failures are SOAP faults


async def test_an_exchange_failure_is_a_soap_fault(listener: RunningListener) -> None:
    error = XwegError(ErrorCode.ACCESS_DENIED, "not allowed", Origin.SERVER_PROXY)
    listener.recorder.outcome = error
    reply = await send(listener, "/")
    assert reply.status == 200
    assert fault_of(reply) == ("Server.ServerProxy.AccessDenied", "not allowed", error.correlation_id)
    assert "X-Road-Error" not in reply.headers


async def test_the_providers_servers_error_keeps_its_code_message_and_correlation_id(
    listener: RunningListener,
) -> None:
    detail = str(uuid.uuid4())
    body = json.dumps({"type": "Server.ServerProxy.UnknownService", "message": "unknown", "detail": detail})
    listener.recorder.outcome = PassThroughError(500, "Server.ServerProxy.UnknownService", body.encode())
    reply = await send(listener, "/")
    assert reply.status == 200
    assert fault_of(reply) == ("Server.ServerProxy.UnknownService", "unknown", detail)


async def test_an_unexpected_error_is_an_internal_error_fault_without_a_traceback(
    listener: RunningListener,
) -> None:
    listener.recorder.outcome = RuntimeError("secret detail of a bug")
    reply = await send(listener, "/")
    code, message, detail = fault_of(reply)
    assert code == "Server.ClientProxy.InternalError"
    assert message == "internal error; see the server log"
    assert detail is not None
    uuid.UUID(detail)
    assert b"secret detail" not in reply.body and b"Traceback" not in reply.body


async def test_a_body_over_the_limit_is_refused_before_the_pipeline(listener: RunningListener) -> None:
    reply = await send(listener, "/", body=b"<" + b"x" * LIMIT + b"/>")
    code, message, _ = fault_of(reply)
    assert code == "Client.RequestTooLarge"
    assert str(LIMIT) in (message or "")
    assert listener.recorder.soap == []
