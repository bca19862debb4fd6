"""The registry server publishing from the store (``database_url``) instead of a federation file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from core.clock import FixedClock
from core.identifiers import MemberId
from registry.federation import FederationDefinition
from registry.server import STATE_KEY, RegistrySettings, regenerate
from registry.store import RegistryStore
from tests.unit.registry.dbfixtures import database_url
from tests.unit.registry.helpers import FederationFiles
from tests.unit.registry.test_server import Running, anchor_for, fetch, start
from tests.unit.trust.helpers import NOW
from trust.globalconf import verify_global_conf

__all__ = ["database_url"]


def use_store(files: FederationFiles, url: str) -> None:
    """Point the registry configuration at the store and load the federation into it."""
    text = files.registry_config.read_text()
    files.registry_config.write_text(
        text.replace('federation = "federation.toml"', f'database_url = "{url}"')
    )
    with RegistryStore.open(url) as store:
        store.import_definition(FederationDefinition.load(files.federation))


@pytest.fixture
async def running(files: FederationFiles, database_url: str) -> AsyncIterator[Running]:
    use_store(files, database_url)
    server = await start(RegistrySettings.load(files.registry_config), FixedClock(NOW))
    yield server
    await server.runner.cleanup()


async def test_serves_the_store_as_a_verified_document(running: Running, files: FederationFiles) -> None:
    status, _, body = await fetch(running.base + "/globalconf")
    assert status == 200
    conf = verify_global_conf(body, anchor_for(files), NOW)
    assert [m.name for m in conf.members] == ["Stadt Paderborn", "Stadt Bielefeld"]
    assert conf.security_servers == FederationDefinition.load(files.federation).security_servers


async def test_changes_in_the_store_are_published_and_a_broken_read_keeps_the_last_good(
    running: Running, files: FederationFiles, database_url: str
) -> None:
    with RegistryStore.open(database_url) as store:
        store.add_member("MUN", "05774020", "Stadt Delbrück")
    publication = await regenerate(running.app)
    assert publication.conf.members[-1].id == MemberId("NRW", "MUN", "05774020")
    with RegistryStore.open(database_url) as store, store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE members SET name = '' WHERE code = '05774020'"))
    with capture_logs() as logs:
        kept = await regenerate(running.app)
    assert kept.conf.serial > publication.conf.serial
    assert kept.conf.members == publication.conf.members
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["registry.federation_invalid"]
    status, _, body = await fetch(running.base + "/globalconf")
    assert verify_global_conf(body, anchor_for(files), NOW).serial == kept.conf.serial
    assert running.app[STATE_KEY].store is not None


def test_relative_sqlite_path_is_resolved_against_the_config(files: FederationFiles) -> None:
    text = files.registry_config.read_text()
    files.registry_config.write_text(
        text.replace('federation = "federation.toml"', 'database_url = "sqlite:///state/registry.db"')
    )
    settings = RegistrySettings.load(files.registry_config)
    assert settings.federation_path is None
    assert settings.database_url == f"sqlite:///{files.root / 'state' / 'registry.db'}"


@pytest.mark.parametrize(
    ("replacement", "match"),
    [
        ('federation = "federation.toml"\ndatabase_url = "sqlite:///r.db"', "not both"),
        ('database_url = "mysql://x/y"', "unsupported database"),
    ],
)
def test_bad_database_settings(files: FederationFiles, replacement: str, match: str) -> None:
    text = files.registry_config.read_text()
    files.registry_config.write_text(text.replace('federation = "federation.toml"', replacement))
    with pytest.raises(ValueError, match=match):
        RegistrySettings.load(files.registry_config)


def test_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RegistrySettings(None, tmp_path / "k", None, "k1", tmp_path)
