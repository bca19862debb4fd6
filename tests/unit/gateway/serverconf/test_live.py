"""The running server's view of the store: seeded at start-up, then kept current by polling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from core.clock import FixedClock
from core.identifiers import GlobalGroupId, SubsystemId
from gateway.config import ConfigError, GatewayConfig, ServerConfSettings
from gateway.server import open_serverconf
from gateway.serverconf.live import LiveServerConf
from gateway.serverconf.model import ConnectionType, ServerConfSnapshot
from gateway.serverconf.store import AuditContext, ServerConfError, ServerConfStore
from tests.unit.gateway.serverconf.conftest import NOW

GEWERBEAMT = SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")
ARBEITSSCHUTZ = SubsystemId("NRW", "GOV", "057", "arbeitsschutz")

CONFIG = """\
server_id = "NRW/MUN/05774032/ss1"
anchor = "anchor.json"
data_dir = "data"

[client_listener]
host = "127.0.0.1"
port = 5510

[peer_listener]
host = "127.0.0.1"
port = 5511

[keys]
auth_key = "keys/auth.key"
auth_certificate = "keys/auth.pem"

{serverconf}

[[clients]]
id = "NRW/MUN/05774032/gewerbeamt"
connection = "http"

[[services]]
id = "NRW/MUN/05774032/gewerbeamt/betriebe/v1"
base_url = "http://127.0.0.1:5603/api/v1"

[[access]]
service = "NRW/MUN/05774032/gewerbeamt/betriebe"
clients = ["NRW/GOV/057/arbeitsschutz", "GLOBALGROUP:NRW/owl-kommunen"]
"""


def load(tmp_path: Path, serverconf: str = "") -> GatewayConfig:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(serverconf=serverconf))
    return GatewayConfig.load(path)


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


# -- settings -------------------------------------------------------------------------------------


def test_the_serverconf_section_has_defaults_under_data_dir(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.serverconf == ServerConfSettings("sqlite:///serverconf.db", 2.0)
    configured = load(
        tmp_path, '[serverconf]\ndatabase_url = "postgresql://postgres@db/serverconf"\npoll_interval_s = 0.5'
    )
    assert configured.serverconf == ServerConfSettings("postgresql://postgres@db/serverconf", 0.5)


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ("[serverconf]\npoll_interval_s = 0", "poll_interval_s must be a positive number"),
        ("[serverconf]\npoll_interval_s = true", "poll_interval_s must be a positive number"),
        ('[serverconf]\ndatabase_url = ""', "database_url must be a database URL"),
        ('[serverconf]\ndatabase = "sqlite:///x.db"', "unexpected keyword argument 'database'"),
    ],
)
def test_a_bad_serverconf_section_is_refused(tmp_path: Path, section: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, section)


# -- start-up -----------------------------------------------------------------------------------


async def test_the_store_is_seeded_from_the_file_once_under_data_dir(tmp_path: Path) -> None:
    config = load(tmp_path)
    live = await open_serverconf(config, FixedClock(NOW))
    try:
        assert (tmp_path / "data" / "serverconf.db").is_file()
        snapshot = live.current()
        assert snapshot.version == live.store.change_marker()
        entry = snapshot.client(GEWERBEAMT)
        assert entry is not None and entry.connection is ConnectionType.HTTP
        assert [g.subject for g in snapshot.grants] == [ARBEITSSCHUTZ, GlobalGroupId("NRW", "owl-kommunen")]
        assert {e["actor"] for e in live.store.audit_trail()} == {"configuration-file"}
        live.store.remove_service(GEWERBEAMT.service("betriebe", "v1"), AuditContext("local", NOW))
    finally:
        await live.close()
    # The next start leaves what the store holds alone, though the file still lists the service.
    again = await open_serverconf(config, FixedClock(NOW))
    try:
        assert again.current().services == ()
        assert again.current().grants == ()
    finally:
        await again.close()


async def test_an_unusable_store_stops_start_up(tmp_path: Path) -> None:
    config = load(tmp_path, '[serverconf]\ndatabase_url = "mysql://db/serverconf"')
    with pytest.raises(ServerConfError, match="unsupported database 'mysql'"):
        await open_serverconf(config, FixedClock(NOW))


# -- polling ----------------------------------------------------------------------------------


async def test_changes_made_elsewhere_are_picked_up_by_polling(database_url: str) -> None:
    live = await LiveServerConf.open(ServerConfStore.open(database_url), poll_interval_s=0.05)
    heard: list[ServerConfSnapshot] = []
    live.add_listener(heard.append)
    await live.start()
    await live.start()  # a second start keeps the one poller
    try:
        with ServerConfStore.open(database_url) as elsewhere:  # the command line, or another replica
            await asyncio.to_thread(
                elsewhere.add_client, GEWERBEAMT, AuditContext("local", NOW), known_client=lambda c: True
            )
            await eventually(lambda: live.current().hosts(GEWERBEAMT))
            assert live.current().version == elsewhere.change_marker()
            assert heard == [live.current()]
            await asyncio.to_thread(elsewhere.add_group, "pruefer", AuditContext("local", NOW))
            await eventually(lambda: "pruefer" in live.current().groups)
            assert len(heard) == 2
    finally:
        await live.close()
    with ServerConfStore.open(database_url) as elsewhere:
        elsewhere.remove_group("pruefer", AuditContext("local", NOW))
    await asyncio.sleep(0.2)
    assert "pruefer" in live.current().groups  # closed: no longer polling


async def test_a_failing_store_keeps_the_last_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ServerConfStore.open(f"sqlite:///{tmp_path / 'serverconf.db'}")
    live = await LiveServerConf.open(store, poll_interval_s=0.05)
    before = live.current()
    calls: list[str] = []
    original = store.change_marker

    def failing() -> str:
        calls.append("failed")
        raise ServerConfError("server configuration database error: disk I/O error")

    monkeypatch.setattr(store, "change_marker", failing)
    await live.start()
    try:
        await eventually(lambda: len(calls) >= 1)
        assert live.current() is before
        store.add_client(GEWERBEAMT, AuditContext("local", NOW), known_client=lambda c: True)
        monkeypatch.setattr(store, "change_marker", original)
        await eventually(lambda: live.current().hosts(GEWERBEAMT))  # retried after 1 s
    finally:
        await live.close()


async def test_reload_reads_the_store_at_once(tmp_path: Path) -> None:
    store = ServerConfStore.open(f"sqlite:///{tmp_path / 'serverconf.db'}")
    live = await LiveServerConf.open(store)
    try:
        store.add_client(GEWERBEAMT, AuditContext("local", NOW), known_client=lambda c: True)
        assert not live.current().hosts(GEWERBEAMT)
        await live.reload()
        assert live.current().hosts(GEWERBEAMT)
    finally:
        await live.close()


async def test_a_reload_that_read_older_rows_cannot_undo_a_newer_one(tmp_path: Path) -> None:
    """The poller and the management API reload at once; whichever read the store first
    must not win by finishing last (a just revoked right would work again)."""
    store = ServerConfStore.open(f"sqlite:///{tmp_path / 'serverconf.db'}")
    live = await LiveServerConf.open(store)
    try:
        older = store.snapshot()
        store.add_client(GEWERBEAMT, AuditContext("local", NOW), known_client=lambda c: True)
        await live.reload()
        assert live.current().hosts(GEWERBEAMT)
        live.replace(older)  # a slow reload of before the change, arriving late
        assert live.current().hosts(GEWERBEAMT)
        assert live.current().version != older.version
    finally:
        await live.close()


async def test_a_fixed_configuration_has_no_store() -> None:
    live = LiveServerConf.fixed(ServerConfSnapshot(version="test"))
    heard: list[str] = []
    live.add_listener(lambda snapshot: heard.append(snapshot.version))
    live.replace(ServerConfSnapshot(version="test"))  # the same: nobody hears of it
    live.replace(ServerConfSnapshot(version="next"))
    assert heard == ["next"] and live.current().version == "next"
    attempts: list[Callable[[], Awaitable[None]]] = [live.start, live.reload]
    for attempt in attempts:
        with pytest.raises(RuntimeError, match="this server configuration has no store"):
            await attempt()
    with pytest.raises(RuntimeError, match="this server configuration has no store"):
        _ = live.store
    await live.close()  # nothing to stop, nothing to close


def test_the_poll_interval_is_checked() -> None:
    with pytest.raises(ValueError, match="poll_interval_s must be a positive number, not 0"):
        LiveServerConf(ServerConfSnapshot(), poll_interval_s=0)


async def test_how_old_the_last_read_of_the_store_is_shows(tmp_path: Path) -> None:
    store = ServerConfStore.open(f"sqlite:///{tmp_path / 'serverconf.db'}")
    live = await LiveServerConf.open(store)
    try:
        first = live.seconds_since_check()
        assert first is not None and first >= 0.0
        await asyncio.sleep(0.05)
        assert (live.seconds_since_check() or 0.0) >= 0.05
        await live.reload()
        assert (live.seconds_since_check() or 1.0) < 0.05
    finally:
        await live.close()
    assert LiveServerConf.fixed(ServerConfSnapshot()).seconds_since_check() is None
