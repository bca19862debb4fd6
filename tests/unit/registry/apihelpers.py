"""A registry running from the store with its management API, and tokens for each role."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import FixedClock
from registry.api import issue_registry_token, load_or_create_registry_token_key, registry_token_key_path
from registry.server import RegistrySettings, make_app
from registry.store import RegistryStore
from tests.unit.registry.helpers import FederationFiles
from tests.unit.registry.test_store_server import use_store
from tests.unit.trust.helpers import NOW

__all__ = ["Api", "api", "PASSPHRASE"]

PASSPHRASE = b"registry-secret"


@dataclass
class Api:
    client: TestClient[Any, Any]
    store: RegistryStore
    key: ec.EllipticCurvePrivateKey
    files: FederationFiles

    def token(self, role: str, subject: str | None = None, now: dt.datetime = NOW) -> str:
        return issue_registry_token(self.key, subject=subject or f"{role}-user", role=role, now=now)

    def auth(self, role: str, subject: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, subject)}"}


@pytest.fixture
async def api(files: FederationFiles, database_url: str) -> AsyncIterator[Api]:
    use_store(files, database_url)
    settings = RegistrySettings.load(files.registry_config)
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(settings, FixedClock(NOW))))
    await client.start_server()
    key = load_or_create_registry_token_key(registry_token_key_path(settings.state_dir), PASSPHRASE)
    store = RegistryStore.open(database_url)
    try:
        yield Api(client, store, key, files)
    finally:
        store.close()
        await client.close()
