"""Replicas of one security server sharing the configuration client's state in PostgreSQL.

Two updaters on one fresh database, each with an empty data folder of its own, stand for
two replicas; the registry is a real HTTP server on loopback.  What one replica adopted
is the other's floor and key set, a write never moves the shared row back, and a row
changed behind the replicas' backs is not believed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

import gateway.confclient.updater
from core.clock import FixedClock
from gateway.confclient.state import PG_SCHEMA, Persisted, PostgresStateStore, StateStoreError
from gateway.confclient.trusted import TrustedGlobalConf
from gateway.confclient.updater import GlobalConfUpdater
from tests.databases import POSTGRES_DSN, fresh_postgres_database
from tests.unit.gateway.conftest import KEY_ID, NOW, Federation
from tests.unit.gateway.test_tuf_attacks import NEW, by_new_keys, rotation
from tests.unit.gateway.test_updater import SETTINGS, Registry, running_registry, unreachable_url
from trust.anchor import Anchor
from trust.errors import GlobalConfRollback
from trust.globalconf import GlobalConfThresholdNotMet


@pytest.fixture
def database_url() -> Iterator[str]:
    yield from fresh_postgres_database("xweg_confclient")


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async with running_registry() as reg:
        yield reg


MakeReplica = Callable[..., GlobalConfUpdater]


async def _no_polling(*args: object, **kwargs: object) -> None:
    return None


@pytest.fixture
async def make_replica(
    federation: Federation,
    registry: Registry,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[MakeReplica]:
    # The tests poll explicitly: a background round at a moment of its own choosing would
    # fetch whatever the registry serves then.
    monkeypatch.setattr(gateway.confclient.updater, "run_periodically", _no_polling)
    made: list[GlobalConfUpdater] = []

    def make(name: str, *, urls: tuple[str, ...] | None = None) -> GlobalConfUpdater:
        """A replica (or a restart of it) with a data folder of its own, empty at first."""
        data_dir = tmp_path / name
        data_dir.mkdir(exist_ok=True)
        anchor = federation.anchor(urls if urls is not None else (registry.url,))
        updater = GlobalConfUpdater(
            TrustedGlobalConf(anchor),
            data_dir / "globalconf.jws",
            SETTINGS,
            FixedClock(NOW),
            store=PostgresStateStore(database_url),
        )
        made.append(updater)
        return updater

    try:
        yield make
    finally:
        for updater in made:
            await updater.close()


# The tests' own SQL, synchronous: the database under the replicas is not what is tested.


def sql(conninfo: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description is not None else []


def stored(url: str) -> tuple[int, bytes, dict[str, Any]]:
    rows = sql(url, f"SELECT serial, document, state FROM {PG_SCHEMA}.globalconf")
    assert len(rows) == 1
    serial, document, state = rows[0]
    return serial, bytes(document), json.loads(state)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_replica_starting_afresh_takes_the_floor_another_adopted(
    make_replica: MakeReplica, registry: Registry, federation: Federation, database_url: str, tmp_path: Path
) -> None:
    registry.body = federation.signed(6)
    a = make_replica("a")
    await a.start()
    assert await a.refresh_once() is True
    assert stored(database_url) == (6, registry.body, {"serial": 6})
    assert names(tmp_path / "a") == []  # nothing in the data folder

    older = federation.signed(5)  # validly signed, not expired: a rollback all the same
    registry.body = older
    requests = registry.requests
    b = make_replica("b")
    await b.start()
    assert registry.requests == requests and b.updated.is_set()  # adopted from the database
    current = b.current()
    assert current is not None and current.serial == 6
    assert b.trusted.min_serial == 6
    with pytest.raises(GlobalConfRollback, match="serial 5 is older than the accepted serial 6"):
        b.trusted.check(older, NOW)
    with capture_logs() as logs:
        assert await b.refresh_once() is False
    [failed] = events(logs, "globalconf.refresh_failed")
    assert failed["error"] == "global configuration serial 5 is older than the accepted serial 6"
    assert events(logs, "globalconf.adopted") == []
    current = b.current()
    assert current is not None and current.serial == 6
    assert stored(database_url)[0] == 6
    assert names(tmp_path / "b") == []


async def test_a_write_never_moves_the_shared_row_back(
    make_replica: MakeReplica, registry: Registry, federation: Federation, database_url: str
) -> None:
    # Both start before anything is stored: neither has a floor of its own.
    a, b = make_replica("a"), make_replica("b")
    await a.start()
    await b.start()
    newest = federation.signed(7)
    registry.body = newest
    assert await b.refresh_once() is True

    # A is now served an older document (a stale mirror, say): valid for A alone, but
    # behind what B adopted, so it is neither stored nor adopted.
    registry.body = federation.signed(5)
    with capture_logs() as logs:
        assert await a.refresh_once() is False
    [superseded] = events(logs, "globalconf.persist_superseded")
    assert (superseded["serial"], superseded["stored_serial"]) == (5, 7)
    assert a.current() is None
    assert stored(database_url) == (7, newest, {"serial": 7})

    # The store itself refuses the same, in its one statement.
    store = PostgresStateStore(database_url)
    try:
        assert await asyncio.to_thread(store.save, federation.signed(5), 5, b'{"serial": 5}') == 7
    finally:
        store.close()
    assert stored(database_url) == (7, newest, {"serial": 7})

    # The serial B stored is good for A too; a newer one moves the row on.
    registry.body = newest
    assert await a.refresh_once() is True
    registry.body = federation.signed(8)
    assert await a.refresh_once() is True
    assert stored(database_url) == (8, registry.body, {"serial": 8})


async def test_replicas_creating_the_table_at_once_all_succeed(
    make_replica: MakeReplica, database_url: str
) -> None:
    # Neither the schema nor the table exist yet.
    assert sql(database_url, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (PG_SCHEMA,)) == []
    replicas = [make_replica(f"r{i}", urls=(unreachable_url(),)) for i in range(4)]
    await asyncio.gather(*(replica.start() for replica in replicas))
    assert all(replica.current() is None for replica in replicas)
    assert sql(database_url, f"SELECT count(*) FROM {PG_SCHEMA}.globalconf") == [(0,)]

    stores = [PostgresStateStore(database_url) for _ in range(4)]
    try:
        loaded = await asyncio.gather(*(asyncio.to_thread(store.load) for store in stores))
    finally:
        for store in stores:
            store.close()
    assert loaded == [Persisted(None, None)] * 4


async def test_a_rotation_adopted_by_one_replica_is_trusted_by_another_after_its_restart(
    make_replica: MakeReplica, registry: Registry, federation: Federation, database_url: str
) -> None:
    registry.body = federation.signed(1)
    b = make_replica("b")
    await b.start()
    assert await b.refresh_once() is True
    await b.close()

    registry.body = rotation(federation, 2)
    a = make_replica("a")
    await a.start()
    assert await a.refresh_once() is True
    assert a.trusted.anchor.key_set == NEW
    serial, _, state = stored(database_url)
    assert serial == 2 and Anchor.from_json(state["anchor"].encode()).key_set == NEW

    # B comes back with the anchor as installed (old key) and no registry to reach.
    restarted = make_replica("b", urls=(unreachable_url(),))
    await restarted.start()
    assert restarted.trusted.anchor.key_set == NEW
    current = restarted.current()
    assert current is not None and current.serial == 2
    with pytest.raises(GlobalConfThresholdNotMet, match=f"key '{KEY_ID}', which the anchor does not name"):
        restarted.trusted.check(federation.signed(3), NOW)
    assert restarted.trusted.check(by_new_keys(federation.conf(3)), NOW).serial == 3


async def test_a_tampered_document_in_the_row_is_not_adopted_and_the_floor_holds(
    make_replica: MakeReplica, registry: Registry, federation: Federation, database_url: str
) -> None:
    genuine = federation.signed(5)
    registry.body = genuine
    a = make_replica("a")
    await a.start()
    assert await a.refresh_once() is True

    # One byte of the signature changed behind the replicas' backs.
    sql(
        database_url,
        f"UPDATE {PG_SCHEMA}.globalconf SET document = set_byte(document, length(document) - 5,"
        " CASE WHEN get_byte(document, length(document) - 5) = 65 THEN 66 ELSE 65 END)",
    )
    tampered = stored(database_url)[1]
    assert tampered != genuine and len(tampered) == len(genuine)

    registry.body = federation.signed(4)
    b = make_replica("b")
    with capture_logs() as logs:
        await b.start()
    assert b.current() is None and b.trusted.latest is None
    [invalid] = events(logs, "globalconf.persisted_invalid")
    assert invalid["path"].endswith("(schema confclient)") and invalid["error"]
    assert events(logs, "globalconf.adopted") == []
    assert b.trusted.min_serial == 5  # the floor still holds
    with capture_logs() as logs:
        assert await b.refresh_once() is False
    [failed] = events(logs, "globalconf.refresh_failed")
    assert failed["error"] == "global configuration serial 4 is older than the accepted serial 5"
    assert b.current() is None

    # The genuine document of the same serial is adopted again, and mends the row.
    registry.body = genuine
    assert await b.refresh_once() is True
    assert stored(database_url) == (5, genuine, {"serial": 5})


async def test_the_database_going_away_is_a_failed_persist(
    make_replica: MakeReplica, registry: Registry, federation: Federation, database_url: str
) -> None:
    a = make_replica("a")
    await a.start()
    name = database_url.rsplit("/", 1)[1]
    sql(POSTGRES_DSN, f'DROP DATABASE "{name}" WITH (FORCE)')

    # As when the files cannot be written: logged, nothing adopted, the next poll tries again.
    registry.body = federation.signed(1)
    with capture_logs() as logs:
        assert await a.refresh_once() is False
    [failed] = events(logs, "globalconf.persist_failed")
    assert "could not be written" in failed["error"] and failed["path"].endswith("(schema confclient)")
    assert events(logs, "globalconf.adopted") == []
    assert a.current() is None and a.trusted.latest is None

    # Starting without the database is refused: there is no floor to start from.
    with pytest.raises(StateStoreError, match="could not be read"):
        await make_replica("b").start()
