"""One correlation id per request: the fault a client gets names the log lines of its request.

Real listeners (the client listener for REST and SOAP, the peer listener) with the
pipelines' configuration step replaced, so that a request fails after it has been read
(the client is not registered) or, at the peer listener, before (configuration expired).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
import structlog
from aiohttp.test_utils import TestServer
from lxml import etree
from structlog.testing import capture_logs

from adapters.soap.envelope import NS_SOAP_ENV
from core.clock import FixedClock
from core.errors import ErrorCode, Origin, XwegError, current_correlation_id
from core.identifiers import MemberId, SecurityServerId
from gateway import server as gateway_server
from gateway.auditapi import AuditQueryLog
from gateway.config import GatewayConfig, Listener, OpmonSettings
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.opmon import OperationalMonitor
from gateway.pipeline import consumer
from gateway.pipeline.consumer import PassThroughError
from gateway.runtime import Gateway
from gateway.transport.client import EXCHANGE_PATH
from tests.unit.adapters.soap.messages import MESSAGE_ID, SPEC_REQUEST, TEXT_XML
from tests.unit.gateway.conftest import NOW, Federation
from trust.keys import generate_private_key

# Not in the test federation's configuration: refused at step 2, after the request was read.
UNREGISTERED = "NRW/MUN/05774020/meldewesen"
REST_ID = "0d3c8a53-7c0e-4b4f-8d51-2f6a4b1f9e21"


@dataclass
class Running:
    client_url: str
    peer_url: str
    gateway: Gateway


@pytest.fixture
async def running(
    tmp_path: Path, federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    member = MemberId("NRW", "MUN", "05774032")
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
        clients=(),
        services=(),
        access=(),
    )
    clock = FixedClock(NOW)

    def current_conf(origin: Origin) -> Any:
        raise XwegError(ErrorCode.OUTDATED_GLOBAL_CONF, "global configuration expired", origin)

    gateway = cast(
        Gateway,
        SimpleNamespace(
            config=config,
            clock=clock,
            current_conf=current_conf,
            auditor_token_key=generate_private_key(),
            auditor_queries=AuditQueryLog.open(tmp_path / "auditor-queries.db"),
            metrics=GatewayMetrics(clock),
            opmon=OperationalMonitor(tmp_path / "opmon.db", OpmonSettings(), clock),
        ),
    )
    conf = federation.conf(1)
    monkeypatch.setattr(consumer, "_current", lambda gateway: (conf, NOW, object()))
    client = TestServer(gateway_server.build_client_app(gateway), host="127.0.0.1", port=0)
    peer = TestServer(gateway_server.build_peer_app(gateway), host="127.0.0.1", port=0)
    await gateway.opmon.start()
    await client.start_server()
    await peer.start_server()
    try:
        yield Running(str(client.make_url("")), str(peer.make_url("")), gateway)
    finally:
        await client.close()
        await peer.close()
        await gateway.opmon.close()
        gateway.auditor_queries.close()


async def request(method: str, url: str, *, body: bytes = b"", headers: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, data=body, headers=headers) as response:
            return response.status, await response.read()


async def test_a_failed_rest_request_names_its_log_lines(running: Running) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        status, body = await request(
            "GET",
            running.client_url + "/r1/NRW/MUN/05711000/meldewesen/meldeauskunft/v1/personen",
            headers={"X-Road-Client": UNREGISTERED, "X-Road-Id": REST_ID},
        )

    error = json.loads(body)
    assert (status, error["type"]) == (500, "Server.ClientProxy.UnknownMember")
    correlation_id = error["detail"]
    lines = list(logs)
    assert lines, "the request wrote no log lines"
    assert {line["correlation_id"] for line in lines} == {correlation_id}
    assert {line["message_id"] for line in lines} == {REST_ID}
    assert [line["event"] for line in lines] == ["consumer.step", "consumer.step", "exchange.failed"]
    assert [line.get("step") for line in lines[:2]] == ["1_globalconf", "2_request"]

    [record] = await running.gateway.opmon.records(start=NOW, end=NOW)
    assert (record["messageId"], record["faultCode"], record["statusCode"]) == (
        REST_ID,
        "Server.ClientProxy.UnknownMember",
        500,
    )
    assert record["responseSize"] == len(body)


async def test_a_failed_soap_request_names_its_log_lines(running: Running) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        status, body = await request(
            "POST", running.client_url + "/", body=SPEC_REQUEST, headers={"Content-Type": TEXT_XML}
        )

    fault = etree.fromstring(body).find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
    assert fault is not None
    assert (status, fault.findtext("faultcode")) == (200, "Server.ClientProxy.UnknownMember")
    correlation_id = fault.findtext("detail/faultDetail")
    lines = list(logs)
    assert lines, "the request wrote no log lines"
    assert {line["correlation_id"] for line in lines} == {correlation_id}
    assert {line["message_id"] for line in lines} == {MESSAGE_ID}

    [record] = await running.gateway.opmon.records(start=NOW, end=NOW)
    # X-Road answers SOAP faults with HTTP 200.
    assert (record["serviceType"], record["statusCode"], record["succeeded"]) == ("WSDL", 200, False)
    assert record["responseSize"] == len(body)


async def test_a_failed_peer_request_names_its_log_lines(running: Running) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        status, body = await request("POST", running.peer_url + EXCHANGE_PATH, body=b"frame", headers={})

    error = json.loads(body)
    assert (status, error["type"]) == (500, "Server.ServerProxy.OutdatedGlobalConf")
    lines = list(logs)
    assert lines, "the request wrote no log lines"
    assert {line["correlation_id"] for line in lines} == {error["detail"]}
    # Refused before the message was read: there is no message id to name.
    assert {line["message_id"] for line in lines} == {None}
    assert [(line["event"], line.get("outcome")) for line in lines] == [
        ("provider.step", "failed"),
        ("exchange.failed", None),
    ]
    [record] = await running.gateway.opmon.records(start=NOW, end=NOW)
    assert (record["securityServerType"], record["faultCode"]) == (
        "Producer",
        "Server.ServerProxy.OutdatedGlobalConf",
    )


async def test_each_request_has_its_own_correlation_id(running: Running) -> None:
    details = set()
    for _ in range(3):
        _, body = await request(
            "GET",
            running.client_url + "/r1/NRW/MUN/05711000/meldewesen/meldeauskunft",
            headers={"X-Road-Client": UNREGISTERED},
        )
        details.add(json.loads(body)["detail"])
    assert len(details) == 3
    # Nothing of a request's id is left behind in the test's own context.
    assert current_correlation_id() is None


async def test_an_error_outside_a_request_gets_an_id_of_its_own() -> None:
    first = XwegError(ErrorCode.INTERNAL_ERROR, "m", Origin.SERVER_PROXY)
    second = XwegError(ErrorCode.INTERNAL_ERROR, "m", Origin.SERVER_PROXY)
    assert first.correlation_id != second.correlation_id


async def test_a_providers_fault_keeps_its_id_and_names_ours_too(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = {"type": "Server.ServerProxy.AccessDenied", "message": "not allowed", "detail": "prov-0042"}

    async def refused_at_provider(gateway: Gateway, *args: Any, **kwargs: Any) -> Any:
        structlog.get_logger("test").info("sending")
        raise PassThroughError(500, fault["type"], json.dumps(fault).encode())

    monkeypatch.setattr(gateway_server, "handle_rest_request", refused_at_provider)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        status, body = await request(
            "GET",
            running.client_url + "/r1/NRW/MUN/05711000/meldewesen/meldeauskunft",
            headers={"X-Road-Client": UNREGISTERED},
        )

    # The client is given the provider's server's id, the one in that server's log ...
    assert (status, json.loads(body)) == (500, fault)
    # ... and this server's lines name it beside their own.
    [sending, failed] = logs
    assert sending["correlation_id"] == failed["correlation_id"] != "prov-0042"
    assert failed["event"] == "exchange.failed_at_provider"
    assert failed["provider_correlation_id"] == "prov-0042"
    [record] = await running.gateway.opmon.records(start=NOW, end=NOW)
    assert (record["faultCode"], record["faultString"], record["statusCode"], record["responseSize"]) == (
        "Server.ServerProxy.AccessDenied",
        "not allowed",
        500,
        len(body),
    )
