"""The client listener's metadata routes, ``GET /listClients`` and ``GET /wsdl``, and the
consumer's own getWsdl request behind ``GET /wsdl``.

The listener runs for real on 127.0.0.1 (aiohttp's TestServer) with global configuration
from the test federation; exchanges are replaced by recorders (they run for real in
``tests/integration/test_metadata_services.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
import yarl
from aiohttp.test_utils import TestServer
from lxml import etree

from adapters.soap.envelope import NS_XROAD
from adapters.soap.inbound import parse_soap_request
from adapters.soap.metadata import render_get_wsdl_response
from adapters.soap.outbound import fault_envelope
from adapters.soap.wsdl import mask_endpoints
from core.canonical import b64
from core.clock import SystemClock
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import SubsystemId
from core.messages import Protocol, Request, ResponseHeader, sha512
from gateway import server as gateway_server
from gateway.auditapi import AuditQueryLog
from gateway.config import GatewayConfig, Listener, OpmonSettings
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.opmon import OperationalMonitor
from gateway.pipeline import consumer
from gateway.pipeline.consumer import ClientAnswer
from gateway.runtime import Gateway
from gateway.serverconf.model import ClientEntry
from tests.unit.gateway.conftest import MEMBER, OTHER_MEMBER, SERVER, Federation
from trust.globalconf import GlobalConf
from trust.keys import generate_private_key

WSDL = (Path(__file__).parents[1] / "adapters" / "soap" / "wsdl" / "meldeauskunft.wsdl").read_bytes()
PROVIDER = SubsystemId("NRW", "MUN", "05711000", "meldewesen")
WSDL_QUERY = (
    "xRoadInstance=NRW&memberClass=MUN&memberCode=05711000&subsystemCode=meldewesen"
    "&serviceCode=melde%2Eauskunft&version=v1"
)


@dataclass
class Listening:
    server: TestServer
    conf: list[GlobalConf | None]  # what current_conf answers from; None: outdated
    wsdl_queries: list[str] = field(default_factory=list)
    wsdl_outcome: ClientAnswer | XwegError = ClientAnswer(200, [("Content-Type", "text/xml")], b"<wsdl/>")
    soap_calls: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


def _gateway(tmp_path: Path, conf: list[GlobalConf | None]) -> Gateway:
    config = GatewayConfig(
        server_id=SERVER,
        anchor_path=tmp_path / "anchor.json",
        data_dir=tmp_path,
        client_listener=Listener("127.0.0.1", 0),
        peer_listener=Listener("127.0.0.1", 0),
        auth_key_path=tmp_path / "auth.key",
        auth_certificate_path=tmp_path / "auth.pem",
        sign_keys=(),
        key_passphrase=None,
        clients=(ClientEntry(MEMBER.subsystem("gewerbeamt")),),
        services=(),
        access=(),
    )

    def current_conf(origin: Origin) -> tuple[GlobalConf, dt.datetime]:
        if conf[0] is None:
            raise XwegError(ErrorCode.OUTDATED_GLOBAL_CONF, "global configuration expired", origin)
        return conf[0], dt.datetime.now(dt.UTC)

    return cast(
        Gateway,
        SimpleNamespace(
            config=config,
            clock=SystemClock(),
            current_conf=current_conf,
            auditor_token_key=generate_private_key(),
            auditor_queries=AuditQueryLog.open(tmp_path / "auditor-queries.db"),
            metrics=GatewayMetrics(SystemClock()),
            opmon=OperationalMonitor(tmp_path / "opmon.db", OpmonSettings(), SystemClock()),
        ),
    )


@pytest.fixture
async def listening(
    federation: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Listening]:
    conf: list[GlobalConf | None] = [federation.conf(1)]
    gateway = _gateway(tmp_path, conf)
    running = Listening(TestServer(gateway_server.build_client_app(gateway), host="127.0.0.1", port=0), conf)

    async def handle_wsdl_request(gateway: Gateway, query: str) -> ClientAnswer:
        running.wsdl_queries.append(query)
        if isinstance(running.wsdl_outcome, XwegError):
            raise running.wsdl_outcome
        return running.wsdl_outcome

    async def handle_soap_request(gateway: Gateway, method: str, body: bytes, **_: Any) -> ClientAnswer:
        running.soap_calls.append(method)
        return ClientAnswer(200, [("Content-Type", "text/xml; charset=UTF-8")], b"<answer/>")

    monkeypatch.setattr(gateway_server, "handle_wsdl_request", handle_wsdl_request)
    monkeypatch.setattr(gateway_server, "handle_soap_request", handle_soap_request)
    await running.server.start_server()
    try:
        yield running
    finally:
        await running.server.close()
        gateway.auditor_queries.close()


async def fetch(
    listening: Listening, target: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        url = yarl.URL(listening.url + target, encoded=True)
        async with session.request(method, url, headers=headers or {}) as resp:
            return resp.status, dict(resp.headers), await resp.read()


# ------------------------------------------------------------------ GET /listClients


async def test_list_clients_answers_from_global_configuration_in_xml(listening: Listening) -> None:
    status, headers, body = await fetch(listening, "/listClients")
    assert (status, headers["Content-Type"]) == (200, "text/xml; charset=UTF-8")
    root = etree.fromstring(body)
    assert root.tag == f"{{{NS_XROAD}}}clientList"
    names = [member.findtext(f"{{{NS_XROAD}}}name") for member in root]
    assert names == [
        "Stadt Paderborn",
        "Stadt Paderborn",
        "Bezirksregierung Detmold",
        "Bezirksregierung Detmold",
    ]


async def test_list_clients_answers_json_when_asked(listening: Listening) -> None:
    status, headers, body = await fetch(listening, "/listClients", headers={"Accept": "application/json"})
    assert (status, headers["Content-Type"]) == (200, "application/json; charset=UTF-8")
    ids = [member["id"] for member in json.loads(body)["member"]]
    assert ids[0] == {
        "member_class": MEMBER.member_class,
        "member_code": MEMBER.member_code,
        "object_type": "MEMBER",
        "xroad_instance": "NRW",
    }
    assert ids[3]["subsystem_code"] == "arbeitsschutz" and ids[3]["member_code"] == OTHER_MEMBER.member_code


async def test_list_clients_of_another_instance_is_empty(listening: Listening) -> None:
    _, _, body = await fetch(
        listening, "/listClients?xRoadInstance=BY", headers={"Accept": "application/json"}
    )
    assert json.loads(body) == {"member": []}


async def test_list_clients_refuses_outdated_configuration(listening: Listening) -> None:
    listening.conf[0] = None
    status, headers, body = await fetch(listening, "/listClients")
    assert status == 500
    assert headers["X-Road-Error"] == "Server.ClientProxy.OutdatedGlobalConf"
    assert json.loads(body)["type"] == "Server.ClientProxy.OutdatedGlobalConf"


# ------------------------------------------------------------------ GET /wsdl


async def test_wsdl_passes_the_query_as_received(listening: Listening) -> None:
    # Decoded before it is split, %26 would split a value in two: it is passed on encoded.
    query = WSDL_QUERY.replace("melde%2Eauskunft", "melde%26auskunft")
    status, headers, body = await fetch(listening, "/wsdl?" + query)
    assert (status, headers["Content-Type"], body) == (200, "text/xml", b"<wsdl/>")
    assert listening.wsdl_queries == [query]


async def test_a_failed_wsdl_request_is_an_x_road_error(listening: Listening) -> None:
    listening.wsdl_outcome = XwegError(ErrorCode.UNKNOWN_SERVICE, "unknown service", Origin.SERVER_PROXY)
    status, headers, body = await fetch(listening, "/wsdl?" + WSDL_QUERY)
    assert (status, headers["X-Road-Error"]) == (500, "Server.ServerProxy.UnknownService")
    assert json.loads(body)["message"] == "unknown service"


# ------------------------------------------------------------------ other methods at these paths


@pytest.mark.parametrize("path", ["/listClients", "/wsdl"])
async def test_soap_at_a_metadata_path_is_soap(listening: Listening, path: str) -> None:
    status, _, body = await fetch(listening, path, method="POST", headers={"Content-Type": "text/xml"})
    assert (status, body) == (200, b"<answer/>")
    await fetch(listening, path, method="PUT", headers={"Content-Type": "text/xml"})
    assert listening.soap_calls == ["POST", "PUT"]
    assert listening.wsdl_queries == []


@pytest.mark.parametrize("path", ["/listClients", "/wsdl"])
async def test_other_methods_at_a_metadata_path_are_not_allowed(listening: Listening, path: str) -> None:
    status, headers, body = await fetch(listening, path, method="DELETE")
    assert status == 405
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["type"] == "Client.InvalidRequest"
    assert listening.soap_calls == [] and listening.wsdl_queries == []


# ------------------------------------------------------------------ the getWsdl request behind GET /wsdl


@dataclass
class Exchanges:
    """``consumer._exchange`` replaced: records the request, answers as the provider would."""

    sent: list[tuple[Request, bool]] = field(default_factory=list)
    answer: Callable[[bytes], tuple[str, bytes]] | None = None

    async def exchange(
        self,
        gateway: Gateway,
        request: Request,
        conf: object,
        now: dt.datetime,
        trust: object,
        *,
        check: Callable[[ResponseHeader, bytes], object] | None = None,
        on_own_behalf: bool = False,
    ) -> Any:
        self.sent.append((request, on_own_behalf))
        soap = parse_soap_request(request.body, content_type="text/xml; charset=UTF-8")
        if self.answer is None:
            content_type, body = render_get_wsdl_response(soap, WSDL)
        else:
            content_type, body = self.answer(request.body)
        header = ResponseHeader(
            message_id=request.header.message_id,
            request_hash=b64(b"\x00" * 64),
            status=200,
            headers=(("content-type", content_type),),
            body_sha512=sha512(body),
            body_size=len(body),
        )
        assert check is not None
        check(header, body)
        return SimpleNamespace(request_hash="h", response=header, body=body)


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> Exchanges:
    recorder = Exchanges()

    def current(gateway: Gateway) -> tuple[object, dt.datetime, object]:
        return object(), dt.datetime.now(dt.UTC), object()

    monkeypatch.setattr(consumer, "_current", current)
    monkeypatch.setattr(consumer, "_exchange", recorder.exchange)
    return recorder


def owner_gateway(tmp_path: Path) -> Gateway:
    return _gateway(tmp_path, [None])


async def test_get_wsdl_is_asked_in_the_owners_name_and_answered_with_the_wsdl(
    exchanges: Exchanges, tmp_path: Path
) -> None:
    answer = await consumer.handle_wsdl_request(owner_gateway(tmp_path), WSDL_QUERY.replace("%2E", ""))
    assert answer == ClientAnswer(200, [("Content-Type", "text/xml; charset=UTF-8")], mask_endpoints(WSDL))
    [(request, on_own_behalf)] = exchanges.sent
    assert on_own_behalf
    header = request.header
    assert header.protocol is Protocol.SOAP
    assert (header.client, header.service) == (SERVER.owner, PROVIDER.service("getWsdl"))
    assert header.user_id == "wsdl-request"
    assert header.headers == (("content-type", "text/xml; charset=UTF-8"),)
    body = parse_soap_request(request.body, content_type="text/xml").body_xml
    wanted = etree.fromstring(body)
    assert [(etree.QName(child).localname, child.text) for child in wanted] == [
        ("serviceCode", "meldeauskunft"),
        ("serviceVersion", "v1"),
    ]


async def test_get_wsdl_needs_a_query_naming_a_service(exchanges: Exchanges, tmp_path: Path) -> None:
    with pytest.raises(XwegError) as info:
        await consumer.handle_wsdl_request(owner_gateway(tmp_path), "xRoadInstance=NRW")
    assert info.value.fault_code == "Client.InvalidRequest"
    assert exchanges.sent == []


async def test_a_fault_instead_of_the_wsdl_fails_the_request(exchanges: Exchanges, tmp_path: Path) -> None:
    exchanges.answer = lambda _: (
        "text/xml; charset=UTF-8",
        fault_envelope("Server.ServerProxy.UnknownService", "unknown", "c-1"),
    )
    with pytest.raises(XwegError) as info:
        await consumer.handle_wsdl_request(owner_gateway(tmp_path), WSDL_QUERY)
    assert info.value.fault_code == "Server.ServerProxy.ServiceFailed"
    assert "UnknownService" in info.value.message


# ------------------------------------------------------------------ GET /xsd/{name}


async def test_schemas_are_served_with_imports_pointing_back_here(listening: Listening) -> None:
    status, headers, body = await fetch(listening, "/xsd/xroad.xsd")
    assert (status, headers["Content-Type"]) == (200, "text/xml; charset=UTF-8")
    assert f'schemaLocation="{listening.url}/xsd/identifiers.xsd"'.encode() in body


@pytest.mark.parametrize("host", ["evil.example/x?", "evil.example@x", 'a"b', "a b"])
async def test_a_crafted_host_header_does_not_steer_the_imports(listening: Listening, host: str) -> None:
    status, _, body = await fetch(listening, "/xsd/xroad.xsd", headers={"Host": host})
    assert status == 200
    assert b"evil" not in body and b'a"b' not in body
    assert b'schemaLocation="http://x-road.eu/xsd/identifiers.xsd"' in body  # as shipped


@pytest.mark.parametrize("name", ["nope.xsd", "..%2Fserver.toml", "xroad.xsd.bak"])
async def test_only_the_bundled_schemas_are_served(listening: Listening, name: str) -> None:
    status, _, _ = await fetch(listening, "/xsd/" + name)
    assert status == 404
