"""The directory API of a real security server's client listener, over HTTP on loopback.

The gateway is built as ``xweg gateway serve`` builds it, its configuration client fetches
from a registry stand-in on loopback, and every answer is checked against what an
information system can verify itself from the signed document.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.clock import FixedClock
from core.identifiers import MemberId
from gateway import server as gateway_server
from gateway.config import GatewayConfig
from gateway.directoryapi import MAX_PARAM_LENGTH
from gateway.runtime import Gateway
from tests.unit.gateway.conftest import (
    INSTANCE,
    MEMBER,
    NOW,
    OTHER_MEMBER,
    OTHER_SERVER,
    PASSPHRASE,
    SERVER,
    Federation,
    fingerprint,
)
from trust.anchor import save_anchor
from trust.directory import providers_answer
from trust.globalconf import (
    GlobalConf,
    MemberInfo,
    SecurityServerInfo,
    ServiceInfo,
    sign_global_conf,
    verify_global_conf,
)
from trust.keys import generate_private_key, make_csr, save_certificate, save_private_key

PREFIX = "/directory/v1"
GEWERBEAMT = MEMBER.subsystem("gewerbeamt")
ARBEITSSCHUTZ = OTHER_MEMBER.subsystem("arbeitsschutz")
STADT = ServiceInfo(
    GEWERBEAMT,
    "gewerbeanzeige",
    "v1",
    "REST",
    "Gewerbeanzeige",
    "XGewerbeanzeige 2.2",
    ("MELDID:05774032",),
    "05774032",
)
BEZIRK = ServiceInfo(ARBEITSSCHUTZ, "gewerbeanzeige", "v1", "REST", "", "XGewerbeanzeige 2.2", (), "057")

GATEWAY_TOML = """\
server_id = "NRW/MUN/05774032/ss1"
anchor = "anchor.json"
data_dir = "data"

[client_listener]
host = "127.0.0.1"
port = 0

[peer_listener]
host = "127.0.0.1"
port = 0

[keys]
passphrase_file = "keys/passphrase"
auth_key = "keys/auth.key"
auth_certificate = "keys/auth.pem"
[[keys.sign]]
member = "NRW/MUN/05774032"
key = "keys/sign.key"
certificate = "keys/sign.pem"

[[clients]]
id = "NRW/MUN/05774032/gewerbeamt"
"""


def catalogued(
    federation: Federation, serial: int, services: tuple[ServiceInfo, ...] = (STADT, BEZIRK)
) -> GlobalConf:
    """The conftest's configuration, with Detmold's server (in maintenance) and a catalogue."""
    conf = federation.conf(serial)
    detmold = SecurityServerInfo(
        OTHER_SERVER, "127.0.0.1:5521", (fingerprint(federation.other_server_cert),), (ARBEITSSCHUTZ,), True
    )
    return dataclasses.replace(conf, security_servers=(*conf.security_servers, detmold), services=services)


class Registry:
    """A registry stand-in: serves whatever document it holds at /globalconf (404 when none)."""

    def __init__(self) -> None:
        self.document: bytes | None = None

    async def globalconf(self, _: web.Request) -> web.StreamResponse:
        if self.document is None:
            raise web.HTTPNotFound()
        return web.Response(body=self.document, content_type="application/jose")


@dataclass
class Running:
    base: str
    session: aiohttp.ClientSession
    gateway: Gateway
    registry: Registry
    clock: FixedClock
    federation: Federation

    async def get(self, path: str, method: str = "GET") -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.request(method, self.base + path) as response:
            body = await response.read()
            if response.content_type == "application/json":
                return response.status, await response.json(), response
            return response.status, body, response

    async def refresh(self) -> bool:
        return await self.gateway.globalconf.refresh_once()


def write_server(folder: Path, federation: Federation, registry_url: str) -> Path:
    keys = folder / "keys"
    federation.write_tls_files(keys, "auth", federation.server_key, federation.server_cert)
    (keys / "passphrase").write_bytes(PASSPHRASE + b"\n")
    sign_key = generate_private_key()
    sign_cert = federation.ca.issue_sign_certificate(
        make_csr(sign_key, "sign"), MEMBER, now=NOW - dt.timedelta(days=1)
    )
    save_private_key(sign_key, keys / "sign.key", PASSPHRASE)
    save_certificate(sign_cert, keys / "sign.pem")
    save_anchor(federation.anchor((registry_url,)), folder / "anchor.json")
    path = folder / "gateway.toml"
    path.write_text(GATEWAY_TOML)
    return path


async def close_gateway(gateway: Gateway) -> None:
    await gateway.globalconf.close()
    # The trust record written in the background after each adoption goes to the log.
    await asyncio.gather(*list(gateway_server._background))
    await gateway.peers.close()
    await gateway.backends.close()
    await gateway.log.close()
    gateway.auditor_queries.close()


async def start(tmp_path: Path, federation: Federation, document: bytes | None) -> AsyncIterator[Running]:
    registry = Registry()
    registry.document = document
    registry_app = web.Application()
    registry_app.router.add_get("/globalconf", registry.globalconf)
    registry_server = TestServer(registry_app, host="127.0.0.1")
    await registry_server.start_server()
    config = GatewayConfig.load(
        write_server(tmp_path / "server", federation, str(registry_server.make_url("/"))), {}
    )
    clock = FixedClock(NOW)
    gateway = await gateway_server.build_gateway(config, clock)
    client_server = TestServer(gateway_server.build_client_app(gateway), host="127.0.0.1")
    try:
        await gateway.globalconf.start()
        if document is not None:
            await asyncio.wait_for(gateway.globalconf.updated.wait(), 10)
        await client_server.start_server()
        async with aiohttp.ClientSession() as session:
            yield Running(str(client_server.make_url(PREFIX)), session, gateway, registry, clock, federation)
    finally:
        await client_server.close()
        await close_gateway(gateway)
        await registry_server.close()


@pytest.fixture
async def running(tmp_path: Path, federation: Federation) -> AsyncIterator[Running]:
    document = sign_global_conf(catalogued(federation, 1), federation.registry_key, "2025-1")
    async for value in start(tmp_path, federation, document):
        yield value


@pytest.fixture
async def unconfigured(tmp_path: Path, federation: Federation) -> AsyncIterator[Running]:
    async for value in start(tmp_path, federation, None):
        yield value


def assert_error(status: int, data: Any, response: aiohttp.ClientResponse, want: int, fault: str) -> None:
    assert status == want, data
    assert set(data) == {"type", "message", "detail"}
    assert data["type"] == fault and response.headers["X-Road-Error"] == fault
    uuid.UUID(data["detail"])


# -- answers ------------------------------------------------------------------------------------


async def test_providers_for_a_city_and_for_a_district(running: Running) -> None:
    status, data, response = await running.get("/providers?service=gewerbeanzeige&area=05774032")
    assert status == 200 and response.content_type == "application/json"
    assert data["globalconf_serial"] == 1 and data["instance"] == INSTANCE
    assert data["service_code"] == "gewerbeanzeige" and data["area"] == "05774032" and data["version"] is None
    (entry,) = data["providers"]
    assert entry["service"] == "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"
    assert entry["servers"] == [
        {"id": SERVER.slash(), "address": "127.0.0.1:5511", "maintenance_mode": False}
    ]

    # Lippe is in the Regierungsbezirk Detmold, whose entry covers it; its server is in maintenance.
    _, data, _ = await running.get("/providers?service=gewerbeanzeige&area=05766020&version=v1")
    (entry,) = data["providers"]
    assert entry["provider"] == ARBEITSSCHUTZ.slash()
    assert entry["servers"] == [
        {"id": OTHER_SERVER.slash(), "address": "127.0.0.1:5521", "maintenance_mode": True}
    ]

    _, data, _ = await running.get("/providers?service=gewerbeanzeige&area=05315000")
    assert data["providers"] == []  # Köln: nobody catalogued
    _, data, _ = await running.get("/providers?service=gewerbeanzeige&area=05774032&version=v2")
    assert data["providers"] == [] and data["version"] == "v2"


async def test_services_of_an_authority(running: Running) -> None:
    for path in ("/authorities/MELDID:05774032", "/authorities/MELDID%3A05774032"):
        status, data, _ = await running.get(path)
        assert status == 200 and data["authority"] == "MELDID:05774032" and data["globalconf_serial"] == 1
        assert [entry["service"] for entry in data["services"]] == [
            "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"
        ]
    status, data, _ = await running.get("/authorities/MELDID:09162000")
    assert status == 200 and data["services"] == []


async def test_head_answers_without_a_body(running: Running) -> None:
    status, body, response = await running.get("/globalconf", method="HEAD")
    assert status == 200 and body == b"" and response.content_type == "application/jose"


async def test_an_information_system_can_verify_the_answer_itself(running: Running) -> None:
    status, document, response = await running.get("/globalconf")
    assert status == 200 and response.content_type == "application/jose"
    # Exactly the bytes the registry served and the server adopted.
    assert document == running.registry.document == running.gateway.globalconf.trusted.document
    conf = verify_global_conf(document, running.federation.anchor(), NOW)
    _, answer, _ = await running.get("/providers?service=gewerbeanzeige&area=05774032")
    assert answer["globalconf_serial"] == conf.serial
    assert answer == providers_answer(conf, "gewerbeanzeige", "05774032")


async def test_a_new_configuration_changes_the_answers(running: Running) -> None:
    moved = dataclasses.replace(STADT, area="05774")
    running.registry.document = sign_global_conf(
        catalogued(running.federation, 2, (moved, BEZIRK)), running.federation.registry_key, "2025-1"
    )
    assert await running.refresh()
    _, data, _ = await running.get("/providers?service=gewerbeanzeige&area=05774020")
    assert data["globalconf_serial"] == 2 and data["providers"][0]["area"] == "05774"
    _, document, _ = await running.get("/globalconf")
    assert document == running.registry.document


async def test_a_forged_catalogue_is_never_answered_from(running: Running) -> None:
    # Someone between registry and server offers a document that sends Paderborn's
    # Gewerbeanzeigen to a subsystem of theirs; it is signed, but not by the registry.
    mallory = MemberId(INSTANCE, "COM", "mallory")
    conf = catalogued(running.federation, 2, ())
    forged = dataclasses.replace(
        conf,
        members=(*conf.members, MemberInfo(mallory, "Mallory", ("inbox",))),
        services=(dataclasses.replace(STADT, provider=mallory.subsystem("inbox")),),
    )
    before = running.registry.document
    running.registry.document = sign_global_conf(forged, running.federation.rogue_key, "2025-1")
    assert not await running.refresh()
    _, data, _ = await running.get("/providers?service=gewerbeanzeige&area=05774032")
    assert data["globalconf_serial"] == 1
    assert [entry["provider"] for entry in data["providers"]] == [GEWERBEAMT.slash()]
    _, document, _ = await running.get("/globalconf")
    assert document == before


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/providers?service=gewerbeanzeige", "query parameter 'area' is required"),
        ("/providers?area=05774032", "query parameter 'service' is required"),
        ("/providers?service=gewerbeanzeige&area=05774032&area=05711000", "'area' is given 2 times"),
        (
            "/providers?service=gewerbeanzeige&area=05774032&provider=x",
            "unknown query parameter(s) 'provider'",
        ),
        ("/providers?service=gewerbeanzeige&area=Paderborn", "area 'Paderborn' must be an official key"),
        ("/providers?service=gewerbeanzeige&area=05774032%0A", "must be an official key"),
        ("/providers?service=gewerbeanzeige&area=", "area '' must be an official key"),
        (
            "/providers?service=gewerbe/anzeige&area=05774032",
            "service code 'gewerbe/anzeige' contains the illegal",
        ),
        ("/providers?service=gewerbeanzeige&area=05774032&version=", "service version must not be empty"),
        ("/providers?service=" + "x" * (MAX_PARAM_LENGTH + 1) + "&area=05", "'service' is longer than 256"),
        ("/authorities/MELDID", "must be prefix:key, e.g. MELDID:05774020"),
        ("/authorities/MELDID:05774032%20OR%201=1", "must be prefix:key"),
        ("/authorities/" + "A" * (MAX_PARAM_LENGTH + 1), "longer than 256 characters"),
        ("/authorities/MELDID:05774032?x=1", "unknown query parameter(s) 'x'"),
        ("/globalconf?serial=1", "unknown query parameter(s) 'serial'"),
    ],
)
async def test_bad_questions_are_client_errors(running: Running, path: str, message: str) -> None:
    status, data, response = await running.get(path)
    assert_error(status, data, response, 400, "Client.InvalidRequest")
    assert message in data["message"]


async def test_unknown_routes_and_methods_are_x_road_errors(running: Running) -> None:
    status, data, response = await running.get("/providers?service=gewerbeanzeige&area=05", method="POST")
    assert_error(status, data, response, 405, "Client.InvalidRequest")
    # An encoded path that would climb into the auditor API is one malformed identifier.
    status, data, response = await running.get("/authorities/MELDID%2F..%2F..%2F..%2Faudit%2Fv1%2Frecords")
    assert_error(status, data, response, 400, "Client.InvalidRequest")
    assert "'MELDID/../../../audit/v1/records' must be prefix:key" in data["message"]
    status, data, response = await running.get("/members")
    assert_error(status, data, response, 404, "Client.InvalidRequest")


@pytest.mark.parametrize(
    "path", ["/providers?service=gewerbeanzeige&area=05774032", "/authorities/MELDID:05774032", "/globalconf"]
)
async def test_without_configuration_nothing_is_answered(unconfigured: Running, path: str) -> None:
    status, data, response = await unconfigured.get(path)
    assert_error(status, data, response, 500, "Server.ClientProxy.OutdatedGlobalConf")
    assert data["message"] == "no valid global configuration has been received yet"


async def test_an_expired_configuration_is_not_answered_from(running: Running) -> None:
    running.clock.set(NOW + dt.timedelta(hours=1))  # the conftest's documents expire then
    for path in ("/providers?service=gewerbeanzeige&area=05774032", "/globalconf"):
        status, data, response = await running.get(path)
        assert_error(status, data, response, 500, "Server.ClientProxy.OutdatedGlobalConf")
        assert "global configuration serial 1 expired at" in data["message"]
