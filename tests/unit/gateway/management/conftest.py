"""The management API on loopback, over a real server configuration store, with real tokens.

The running server is a stand-in with the real parts the API uses: a store on a SQLite
file made live through :class:`LiveServerConf`, a backend pool that fetches OpenAPI
documents from a loopback backend, the operational monitor and the metrics.  Global
configuration is the test federation's; registering a client goes to a recorder.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict

from adapters.backend_http import new_backend_session
from core.clock import Clock, FixedClock
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import SubsystemId
from gateway.config import GatewayConfig, Listener, OpmonSettings, SignKeyConfig
from gateway.management.api import make_management_app
from gateway.management.tokens import issue_management_token
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.opmon import OperationalMonitor
from gateway.registration import RegistrationFailed, RegistryAnswer
from gateway.runtime import BackendPool
from gateway.serverconf.live import LiveServerConf
from gateway.serverconf.store import AuditContext, ServerConfStore
from tests.unit.gateway.conftest import MEMBER, NOW, SERVER, Federation
from trust.globalconf import GlobalConf
from trust.keys import generate_private_key

__all__ = [
    "GEWERBEAMT",
    "PETS",
    "REQUEST_ID",
    "Management",
    "StandIn",
    "gateway_config",
    "management",
    "openapi_backend",
]

GEWERBEAMT = MEMBER.subsystem("gewerbeamt")
REQUEST_ID = "0b7e9f3c-0000-4000-8000-000000000001"  # what the registry stand-in answers
#: A REST service's OpenAPI document, as its backend serves it.
PETS = {
    "openapi": "3.0.3",
    "info": {"title": "Betriebe", "version": "1"},
    "paths": {"/betriebe": {"get": {}, "post": {}}, "/betriebe/{id}": {"get": {}, "delete": {}}},
}


@dataclass
class StandIn:
    """The running security server, as the management API sees it."""

    config: GatewayConfig
    clock: Clock
    serverconf: LiveServerConf
    backends: BackendPool
    opmon: OperationalMonitor
    metrics: GatewayMetrics
    globalconf: GlobalConf | None

    def current_conf(self, origin: Origin) -> tuple[GlobalConf, dt.datetime]:
        if self.globalconf is None:
            raise XwegError(
                ErrorCode.OUTDATED_GLOBAL_CONF, "no valid global configuration has been received yet", origin
            )
        return self.globalconf, self.clock.now()


@dataclass
class Registrations:
    """Stands in for the registry: records each request, answers pending (or fails as told)."""

    requests: list[SubsystemId] = field(default_factory=list)
    failure: RegistrationFailed | None = None

    async def __call__(self, client: SubsystemId, now: dt.datetime) -> RegistryAnswer:
        if self.failure is not None:
            raise self.failure
        self.requests.append(client)
        request = {"id": REQUEST_ID, "status": "pending", "client": client.slash()}
        return RegistryAnswer("http://127.0.0.1:9", 201, request)


@dataclass
class Announcements:
    """Stands in for the registry's maintenance endpoint: records each announcement."""

    announced: list[bool] = field(default_factory=list)
    failure: RegistrationFailed | None = None

    async def __call__(self, enabled: bool, now: dt.datetime) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        self.announced.append(enabled)
        return {
            "id": REQUEST_ID,
            "kind": "maintenance",
            "server": SERVER.slash(),
            "maintenance_mode": enabled,
            "changed": True,
            "status": "applied",
        }


@dataclass
class Management:
    client: TestClient[Any, Any]
    server: StandIn
    key: ec.EllipticCurvePrivateKey
    registrations: Registrations
    backend_url: str
    announcements: Announcements

    @property
    def store(self) -> ServerConfStore:
        return self.server.serverconf.store

    def token(self, role: str, subject: str | None = None, *, now: dt.datetime = NOW) -> str:
        return issue_management_token(
            self.key, server_id=SERVER, subject=subject or f"{role}-user", role=role, now=now
        )

    async def call(
        self,
        method: str,
        path: str,
        role: str | None = None,
        body: Any = None,
        *,
        subject: str | None = None,
        token: str | None = None,
    ) -> tuple[int, Any, CIMultiDict[str]]:
        headers = {}
        if token is None and role is not None:
            token = self.token(role, subject)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.client.request(method, path, data=data, headers=headers) as response:
            text = await response.text()
            payload = json.loads(text) if text and response.content_type == "application/json" else text
            return response.status, payload, CIMultiDict(response.headers)

    def audit_trail(self) -> list[dict[str, Any]]:
        return self.store.audit_trail(limit=1000)


@pytest.fixture
async def openapi_backend() -> AsyncIterator[str]:
    """A loopback backend serving :data:`PETS` at ``/openapi.json`` (and 404 elsewhere)."""

    async def document(request: web.Request) -> web.Response:
        return web.json_response(PETS)

    async def everything(request: web.Request) -> web.Response:
        body = {"openapi": "3.0.3", "paths": {"/{id}": {"get": {}}, "/**": {"get": {}}}}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/openapi.json", document)
    app.router.add_get("/broad.json", everything)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def gateway_config(data_dir: Path) -> GatewayConfig:
    return GatewayConfig(
        server_id=SERVER,
        anchor_path=data_dir / "anchor.json",
        data_dir=data_dir,
        client_listener=Listener("127.0.0.1", 0),
        peer_listener=Listener("127.0.0.1", 0),
        auth_key_path=data_dir / "auth.key",
        auth_certificate_path=data_dir / "auth.pem",
        sign_keys=(SignKeyConfig(MEMBER, data_dir / "sign.key", data_dir / "sign.pem"),),
        key_passphrase=None,
        clients=(),
        services=(),
        access=(),
        management_listener=Listener("127.0.0.1", 0),
    )


@pytest.fixture
async def management(
    tmp_path: Path, federation: Federation, openapi_backend: str
) -> AsyncIterator[Management]:
    clock = FixedClock(NOW)
    store = ServerConfStore.open(f"sqlite:///{tmp_path / 'serverconf.db'}")
    # The provider of the services the tests add is a client already.
    store.add_client(GEWERBEAMT, AuditContext("setup", NOW), known_client=lambda _: True)
    serverconf = await LiveServerConf.open(store)
    opmon = OperationalMonitor(tmp_path / "opmon.db", OpmonSettings(), clock)
    await opmon.start()
    backends = BackendPool(new_backend_session(), 1024 * 1024)
    server = StandIn(
        config=gateway_config(tmp_path),
        clock=clock,
        serverconf=serverconf,
        backends=backends,
        opmon=opmon,
        metrics=GatewayMetrics(clock),
        globalconf=federation.conf(1),
    )
    key = generate_private_key()
    registrations = Registrations()
    announcements = Announcements()
    app = make_management_app(
        server, key.public_key(), register_client=registrations, announce_maintenance=announcements
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Management(client, server, key, registrations, openapi_backend, announcements)
    finally:
        await client.close()
        await backends.close()
        await opmon.close()
        await serverconf.close()
