"""Operational monitoring: records stored and queried, pruned after the retention period,
health statistics over the last ten minutes, and a full queue that drops instead of waiting.

The storage tests run on an SQLite file and on a fresh PostgreSQL database (127.0.0.1:5432,
trust authentication for ``postgres``); the PostgreSQL-only ones are about replicas
sharing the database and about the database going away.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from core.clock import FixedClock, utc
from gateway.config import ConfigError, GatewayConfig, OpmonSettings
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.opmon import (
    FIELDS,
    MAX_RECORDS,
    OperationalMonitor,
    OpmonError,
    OpmonRecord,
)
from tests.databases import POSTGRES_DSN, fresh_postgres_database

NOW = utc(2025, 3, 1, 12)
GEWERBEAMT = ("NRW", "MUN", "05774032", "gewerbeamt")
ARBEITSSCHUTZ = ("NRW", "GOV", "057", "arbeitsschutz")
SERVICE = ("NRW", "MUN", "05711000", "meldewesen", "meldeauskunft", "v1")
OTHER_SERVICE = ("NRW", "MUN", "05711000", "meldewesen", "gewerbeauskunft", None)


def ms(at: dt.datetime) -> int:
    return math.floor(at.timestamp() * 1000)


def record(
    response_out: dt.datetime,
    *,
    duration_ms: int = 100,
    client: tuple[str, str, str, str] = GEWERBEAMT,
    service: tuple[str, str, str, str, str, str | None] = SERVICE,
    succeeded: bool = True,
    server_type: str = "Producer",
    message_id: str = "m-1",
) -> OpmonRecord:
    out = ms(response_out)
    return OpmonRecord(
        monitoring_data_ts=math.floor(response_out.timestamp()),
        security_server_type=server_type,
        request_in_ts=out - duration_ms,
        request_out_ts=out - duration_ms + 5,
        response_in_ts=out - 5,
        response_out_ts=out,
        client_x_road_instance=client[0],
        client_member_class=client[1],
        client_member_code=client[2],
        client_subsystem_code=client[3],
        service_x_road_instance=service[0],
        service_member_class=service[1],
        service_member_code=service[2],
        service_subsystem_code=service[3],
        service_code=service[4],
        service_version=service[5],
        rest_method="GET",
        rest_path="/personen/4711",
        message_id=message_id,
        message_user_id="DE0000000001",
        message_protocol_version="1",
        client_security_server_address="10.0.0.1:5511",
        service_security_server_address="10.0.0.2:5511",
        request_size=0,
        response_size=321,
        succeeded=succeeded,
        fault_code=None if succeeded else "Server.ServerProxy.ServiceFailed",
        fault_string=None if succeeded else "backend unreachable",
        status_code=200 if succeeded else 500,
        service_type="REST",
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where a monitor keeps its records: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "opmon.db"
        return
    yield from fresh_postgres_database("xweg_opmon")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_postgres_database("xweg_opmon")


def count_rows(location: Path | str, table: str = "records") -> int:
    """Rows in one of the monitor's tables, read past the monitor."""
    if isinstance(location, Path):
        with contextlib.closing(sqlite3.connect(location)) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
    with psycopg.connect(location) as db:
        row = db.execute(sql.SQL("SELECT count(*) FROM opmon.{}").format(sql.Identifier(table))).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
async def monitor(location: Path | str, clock: FixedClock) -> AsyncIterator[OperationalMonitor]:
    opmon = OperationalMonitor(location, OpmonSettings(), clock)
    await opmon.start()
    yield opmon
    await opmon.close()


def test_the_field_names_are_x_roads() -> None:
    assert FIELDS == (
        "monitoringDataTs",
        "securityServerType",
        "requestInTs",
        "requestOutTs",
        "responseInTs",
        "responseOutTs",
        "clientXRoadInstance",
        "clientMemberClass",
        "clientMemberCode",
        "clientSubsystemCode",
        "serviceXRoadInstance",
        "serviceMemberClass",
        "serviceMemberCode",
        "serviceSubsystemCode",
        "serviceCode",
        "serviceVersion",
        "restMethod",
        "restPath",
        "representedPartyClass",
        "representedPartyCode",
        "messageId",
        "messageUserId",
        "messageIssue",
        "messageProtocolVersion",
        "clientSecurityServerAddress",
        "serviceSecurityServerAddress",
        "requestSize",
        "responseSize",
        "succeeded",
        "faultCode",
        "faultString",
        "statusCode",
        "serviceType",
    )


async def test_a_record_comes_back_with_x_roads_field_names(monitor: OperationalMonitor) -> None:
    stored = record(NOW - dt.timedelta(seconds=30))
    assert monitor.record(stored)

    found = await monitor.records(start=NOW - dt.timedelta(minutes=1), end=NOW)

    assert found == [stored.to_json()]
    assert found[0]["monitoringDataTs"] == math.floor(NOW.timestamp()) - 30
    assert found[0]["responseOutTs"] == ms(NOW) - 30_000
    assert found[0]["requestInTs"] == ms(NOW) - 30_100
    assert found[0]["clientSubsystemCode"] == "gewerbeamt"
    assert found[0]["serviceVersion"] == "v1"
    assert found[0]["succeeded"] is True
    assert found[0]["representedPartyClass"] is None


async def test_records_by_time_range_newest_first(monitor: OperationalMonitor) -> None:
    for minutes in (50, 40, 30, 20, 10):
        monitor.record(record(NOW - dt.timedelta(minutes=minutes), message_id=f"m-{minutes}"))

    found = await monitor.records(start=NOW - dt.timedelta(minutes=40), end=NOW - dt.timedelta(minutes=20))

    # Both ends are inclusive, to the second.
    assert [r["messageId"] for r in found] == ["m-20", "m-30", "m-40"]


async def test_records_of_one_client(monitor: OperationalMonitor) -> None:
    monitor.record(record(NOW - dt.timedelta(minutes=3), client=GEWERBEAMT, message_id="a"))
    monitor.record(record(NOW - dt.timedelta(minutes=2), client=ARBEITSSCHUTZ, message_id="b"))
    monitor.record(record(NOW - dt.timedelta(minutes=1), client=GEWERBEAMT, message_id="c"))

    async def of(client: str) -> list[str]:
        found = await monitor.records(start=NOW - dt.timedelta(hours=1), end=NOW, client=client)
        return [r["messageId"] for r in found]

    assert await of("NRW/MUN/05774032/gewerbeamt") == ["c", "a"]
    assert await of("NRW/GOV/057/arbeitsschutz") == ["b"]
    # A client id names one client exactly: the member is not its subsystems.
    assert await of("NRW/MUN/05774032") == []


async def test_the_limit_is_kept_and_capped(monitor: OperationalMonitor) -> None:
    for second in range(5):
        monitor.record(record(NOW - dt.timedelta(seconds=second), message_id=f"m-{second}"))
    window: dict[str, Any] = {"start": NOW - dt.timedelta(hours=1), "end": NOW}

    assert [r["messageId"] for r in await monitor.records(**window, limit=2)] == ["m-0", "m-1"]
    assert len(await monitor.records(**window, limit=MAX_RECORDS * 10)) == 5
    with pytest.raises(ValueError, match="limit"):
        await monitor.records(**window, limit=0)
    with pytest.raises(ValueError, match="UTC"):
        await monitor.records(start=dt.datetime(2025, 3, 1), end=NOW)  # noqa: DTZ001


async def test_prune_removes_what_is_older_than_the_retention_period(
    location: Path | str, clock: FixedClock
) -> None:
    opmon = OperationalMonitor(location, OpmonSettings(retention_s=3600), clock)
    await opmon.start()
    try:
        opmon.record(record(NOW - dt.timedelta(minutes=90), message_id="old"))
        opmon.record(record(NOW - dt.timedelta(minutes=59), message_id="young"))
        await opmon.flush()

        # The prune round that runs right after start may have taken it already.
        assert await opmon.prune() in (0, 1)

        everything: dict[str, Any] = {"start": NOW - dt.timedelta(days=30), "end": NOW}
        assert [r["messageId"] for r in await opmon.records(**everything)] == ["young"]
        clock.advance(3600)
        assert await opmon.prune() == 1
        assert await opmon.records(**everything) == []
        # The last requests go with them: health forgets a service after the retention period.
        assert await opmon.health() == []
    finally:
        await opmon.close()


async def test_records_are_pruned_when_the_monitor_starts(location: Path | str, clock: FixedClock) -> None:
    first = OperationalMonitor(location, OpmonSettings(retention_s=3600), clock)
    await first.start()
    first.record(record(NOW - dt.timedelta(minutes=30)))
    await first.close()

    clock.advance(3600)
    assert count_rows(location) == 1
    second = OperationalMonitor(location, OpmonSettings(retention_s=3600), clock)
    await second.start()
    try:
        # The first prune round runs right after start.
        for _ in range(100):
            left = count_rows(location)
            if left == 0:
                break
            await asyncio.sleep(0.01)
        assert left == 0
    finally:
        await second.close()


async def test_health_over_the_last_ten_minutes(monitor: OperationalMonitor, clock: FixedClock) -> None:
    # Outside the window: counted in "last ..." only.
    monitor.record(record(NOW - dt.timedelta(minutes=11), duration_ms=5000, succeeded=True))
    monitor.record(record(NOW - dt.timedelta(minutes=20), duration_ms=5000, succeeded=False))
    # Inside it.
    monitor.record(record(NOW - dt.timedelta(minutes=9), duration_ms=100))
    monitor.record(record(NOW - dt.timedelta(minutes=5), duration_ms=300))
    monitor.record(record(NOW - dt.timedelta(minutes=2), duration_ms=200))
    monitor.record(record(NOW - dt.timedelta(minutes=4), duration_ms=1000, succeeded=False))
    monitor.record(record(NOW - dt.timedelta(minutes=1), service=OTHER_SERVICE, duration_ms=50))
    monitor.record(
        record(NOW - dt.timedelta(minutes=3), service=OTHER_SERVICE, duration_ms=70, server_type="Client")
    )

    health = await monitor.health()

    assert health == [
        {
            "service": "NRW/MUN/05711000/meldewesen/gewerbeauskunft",
            "securityServerType": "Client",
            "lastSuccessfulRequestTimestamp": ms(NOW - dt.timedelta(minutes=3)),
            "lastUnsuccessfulRequestTimestamp": None,
            "statisticsPeriodSeconds": 600,
            "successfulRequestCount": 1,
            "successfulRequestAverageDuration": 70.0,
            "successfulRequestMaxDuration": 70,
            "unsuccessfulRequestCount": 0,
            "unsuccessfulRequestAverageDuration": None,
            "unsuccessfulRequestMaxDuration": None,
        },
        {
            "service": "NRW/MUN/05711000/meldewesen/gewerbeauskunft",
            "securityServerType": "Producer",
            "lastSuccessfulRequestTimestamp": ms(NOW - dt.timedelta(minutes=1)),
            "lastUnsuccessfulRequestTimestamp": None,
            "statisticsPeriodSeconds": 600,
            "successfulRequestCount": 1,
            "successfulRequestAverageDuration": 50.0,
            "successfulRequestMaxDuration": 50,
            "unsuccessfulRequestCount": 0,
            "unsuccessfulRequestAverageDuration": None,
            "unsuccessfulRequestMaxDuration": None,
        },
        {
            "service": "NRW/MUN/05711000/meldewesen/meldeauskunft/v1",
            "securityServerType": "Producer",
            "lastSuccessfulRequestTimestamp": ms(NOW - dt.timedelta(minutes=2)),
            "lastUnsuccessfulRequestTimestamp": ms(NOW - dt.timedelta(minutes=4)),
            "statisticsPeriodSeconds": 600,
            "successfulRequestCount": 3,
            "successfulRequestAverageDuration": 200.0,
            "successfulRequestMaxDuration": 300,
            "unsuccessfulRequestCount": 1,
            "unsuccessfulRequestAverageDuration": 1000.0,
            "unsuccessfulRequestMaxDuration": 1000,
        },
    ]

    # Eight minutes later the window begins two minutes before NOW: of meldeauskunft's
    # requests only the success two minutes ago is in it.
    clock.advance(8 * 60)
    later = {(h["service"], h["securityServerType"]): h for h in await monitor.health()}
    meldeauskunft = later[("NRW/MUN/05711000/meldewesen/meldeauskunft/v1", "Producer")]
    assert meldeauskunft["successfulRequestCount"] == 1
    assert meldeauskunft["successfulRequestMaxDuration"] == 200
    assert meldeauskunft["unsuccessfulRequestCount"] == 0
    assert meldeauskunft["unsuccessfulRequestAverageDuration"] is None
    # The last requests are remembered beyond the window.
    assert meldeauskunft["lastUnsuccessfulRequestTimestamp"] == ms(NOW - dt.timedelta(minutes=4))


async def test_a_record_without_a_service_is_stored_but_not_in_health(monitor: OperationalMonitor) -> None:
    # A request refused before it could be read names no service.
    unread = OpmonRecord(
        monitoring_data_ts=math.floor(NOW.timestamp()),
        security_server_type="Client",
        request_in_ts=ms(NOW),
        response_out_ts=ms(NOW),
        succeeded=False,
        fault_code="Client.InvalidRequest",
        fault_string="no such thing",
        status_code=400,
    )
    monitor.record(unread)

    assert await monitor.health() == []
    assert await monitor.records(start=NOW, end=NOW) == [unread.to_json()]


async def test_a_full_queue_drops_and_counts_without_waiting(location: Path | str, clock: FixedClock) -> None:
    metrics = GatewayMetrics(clock)
    dropped: list[str] = []

    def on_drop(reason: str) -> None:
        dropped.append(reason)
        metrics.count_opmon_dropped(reason)

    # Not started yet: nothing is written, so the queue fills.
    opmon = OperationalMonitor(location, OpmonSettings(max_queue=2), clock, on_drop=on_drop)
    assert opmon.record(record(NOW, message_id="1"))
    assert opmon.record(record(NOW, message_id="2"))
    assert not opmon.record(record(NOW, message_id="3"))
    assert not opmon.record(record(NOW, message_id="4"))

    assert dropped == ["queue_full", "queue_full"]
    assert opmon.dropped == {"queue_full": 2}
    assert opmon.queue_depth == 2
    _, body = metrics.render()
    samples = {
        (s.name, s.labels.get("reason")): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "xweg_opmon_records_dropped_total"
    }
    assert samples == {
        ("xweg_opmon_records_dropped_total", "queue_full"): 2.0,
        ("xweg_opmon_records_dropped_total", "write_failed"): 0.0,
    }

    # Once started, what was queued is written and the queue takes records again.
    await opmon.start()
    try:
        await opmon.flush()
        assert opmon.queue_depth == 0
        assert opmon.record(record(NOW, message_id="5"))
        found = await opmon.records(start=NOW, end=NOW)
        assert sorted(r["messageId"] for r in found) == ["1", "2", "5"]
    finally:
        await opmon.close()


async def test_close_writes_what_is_queued(location: Path | str, clock: FixedClock) -> None:
    opmon = OperationalMonitor(location, OpmonSettings(), clock)
    await opmon.start()
    for number in range(50):
        opmon.record(record(NOW, message_id=str(number)))
    await opmon.close()
    assert opmon.written == 50
    assert not opmon.record(record(NOW))
    assert opmon.dropped == {"write_failed": 1}

    assert count_rows(location) == 50
    if isinstance(location, Path):
        with contextlib.closing(sqlite3.connect(location)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_the_last_request_time_never_goes_back(monitor: OperationalMonitor) -> None:
    monitor.record(record(NOW - dt.timedelta(minutes=1), message_id="newer"))
    await monitor.flush()
    # A slower exchange that ended earlier is written after it.
    monitor.record(record(NOW - dt.timedelta(minutes=5), message_id="older"))

    [health] = await monitor.health()

    assert health["lastSuccessfulRequestTimestamp"] == ms(NOW - dt.timedelta(minutes=1))
    assert health["successfulRequestCount"] == 2


# -- PostgreSQL: replicas sharing one database -------------------------------------------


@pytest.mark.postgres
async def test_postgres_keeps_the_records_in_the_opmon_schema(postgres_url: str, clock: FixedClock) -> None:
    opmon = OperationalMonitor(postgres_url, OpmonSettings(), clock)
    await opmon.start()
    opmon.record(record(NOW, message_id="a"))
    opmon.record(record(NOW, message_id="b", succeeded=False))
    await opmon.close()

    with psycopg.connect(postgres_url) as db:
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_name"
        ).fetchall()
        assert tables == [("opmon", "last_requests"), ("opmon", "records")]
        columns = {
            name: (data_type, identity)
            for name, data_type, identity in db.execute(
                "SELECT column_name, data_type, identity_generation FROM information_schema.columns"
                " WHERE table_schema = 'opmon' AND table_name = 'records'"
            )
        }
        assert columns["id"] == ("bigint", "ALWAYS")
        assert columns["monitoringDataTs"] == ("bigint", None)
        assert columns["succeeded"] == ("boolean", None)
        assert columns["messageId"] == ("text", None)
        assert len(columns) == len(FIELDS) + 3
        rows = db.execute('SELECT id, "messageId", succeeded FROM opmon.records ORDER BY id').fetchall()
        assert [(message, succeeded) for _, message, succeeded in rows] == [("a", True), ("b", False)]
        assert rows[0][0] < rows[1][0]
        last = db.execute("SELECT succeeded, at_ms FROM opmon.last_requests ORDER BY succeeded").fetchall()
        assert last == [(False, ms(NOW)), (True, ms(NOW))]


@pytest.mark.postgres
async def test_replicas_share_records_health_and_pruning(postgres_url: str, clock: FixedClock) -> None:
    first = OperationalMonitor(postgres_url, OpmonSettings(retention_s=3600), clock)
    second = OperationalMonitor(postgres_url, OpmonSettings(retention_s=3600), clock)
    await first.start()
    await second.start()
    try:
        first.record(record(NOW - dt.timedelta(minutes=4), duration_ms=100, message_id="first-1"))
        second.record(record(NOW - dt.timedelta(minutes=3), duration_ms=300, message_id="second-1"))
        first.record(record(NOW - dt.timedelta(minutes=2), duration_ms=200, message_id="first-2"))
        second.record(
            record(NOW - dt.timedelta(minutes=1), duration_ms=1000, succeeded=False, message_id="second-2")
        )
        await asyncio.gather(first.flush(), second.flush())
        # Written after the first replica's later success: the later time stays the last.
        second.record(record(NOW - dt.timedelta(minutes=5), duration_ms=100, message_id="second-3"))
        await second.flush()
        assert (first.written, second.written) == (2, 3)

        window: dict[str, Any] = {"start": NOW - dt.timedelta(hours=1), "end": NOW}
        newest_first = ["second-2", "first-2", "second-1", "first-1", "second-3"]
        for replica in (first, second):
            assert [r["messageId"] for r in await replica.records(**window)] == newest_first
            [health] = await replica.health()
            assert health["successfulRequestCount"] == 4
            assert health["successfulRequestAverageDuration"] == 175.0
            assert health["successfulRequestMaxDuration"] == 300
            assert health["unsuccessfulRequestCount"] == 1
            assert health["unsuccessfulRequestMaxDuration"] == 1000
            assert health["lastSuccessfulRequestTimestamp"] == ms(NOW - dt.timedelta(minutes=2))
            assert health["lastUnsuccessfulRequestTimestamp"] == ms(NOW - dt.timedelta(minutes=1))

        # One replica prunes for all; another pruning after it finds nothing left.
        clock.advance(3600 + 60)
        assert await first.prune() == 5
        assert await second.prune() == 0
        assert await second.records(start=NOW - dt.timedelta(days=1), end=clock.now()) == []
        assert await second.health() == []
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
async def test_replicas_may_start_together_on_a_new_database(postgres_url: str, clock: FixedClock) -> None:
    # Several rounds, each from an empty database, to give the race a chance to show.
    for round_ in range(3):
        monitors = [OperationalMonitor(postgres_url, OpmonSettings(), clock) for _ in range(4)]
        try:
            started = await asyncio.gather(*(m.start() for m in monitors), return_exceptions=True)
            assert started == [None] * len(monitors)
            for number, opmon in enumerate(monitors):
                assert opmon.record(record(NOW, message_id=f"{round_}-{number}"))
            await asyncio.gather(*(m.flush() for m in monitors))
            for opmon in monitors:
                found = await opmon.records(start=NOW, end=NOW)
                assert sorted(r["messageId"] for r in found) == [f"{round_}-{n}" for n in range(4)]
        finally:
            await asyncio.gather(*(m.close() for m in monitors))
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("DROP SCHEMA opmon CASCADE")


@pytest.mark.postgres
async def test_a_write_while_the_database_is_away_is_counted_and_writing_resumes(
    postgres_url: str, clock: FixedClock
) -> None:
    dropped: list[str] = []
    opmon = OperationalMonitor(postgres_url, OpmonSettings(), clock, on_drop=dropped.append)
    database = postgres_url.rsplit("/", 1)[1]
    name = sql.Identifier(database)
    admin = psycopg.connect(POSTGRES_DSN, autocommit=True)
    await opmon.start()
    try:
        opmon.record(record(NOW, message_id="before"))
        await opmon.flush()
        assert opmon.written == 1

        # The database goes away: the monitor's connection is cut and no new one is let in.
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        terminated = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
        assert terminated == [(True,)]
        # The first batch meets the broken connection, the second cannot open a new one.
        assert opmon.record(record(NOW, message_id="lost-1"))
        await opmon.flush()
        assert opmon.record(record(NOW, message_id="lost-2"))
        await opmon.flush()
        assert dropped == ["write_failed", "write_failed"]
        assert opmon.dropped == {"write_failed": 2}
        assert opmon.written == 1
        with pytest.raises(OpmonError, match="could not be read"):
            await opmon.records(start=NOW, end=NOW)

        # Back again: the writer opens a new connection by itself.
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
        assert opmon.record(record(NOW, message_id="after"))
        await opmon.flush()
        assert opmon.written == 2
        assert dropped == ["write_failed", "write_failed"]
        assert [r["messageId"] for r in await opmon.records(start=NOW, end=NOW)] == ["after", "before"]
    finally:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
        await opmon.close()
        admin.close()


MINIMAL_CONFIG = """\
server_id = "NRW/MUN/05774032/ss1"
anchor = "anchor.json"
client_listener = { host = "127.0.0.1", port = 0 }
peer_listener = { host = "127.0.0.1", port = 65535 }
[keys]
auth_key = "auth.key"
auth_certificate = "auth.pem"
"""


def test_settings_come_from_the_opmon_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL_CONFIG)
    defaults = GatewayConfig.load(path, environ={})
    assert defaults.opmon == OpmonSettings(retention_s=7 * 24 * 3600.0, max_queue=10_000)
    assert defaults.opmon_location == tmp_path.resolve() / "opmon.db"

    path.write_text(MINIMAL_CONFIG + "[opmon]\nretention_s = 86400\nmax_queue = 500\n")
    assert GatewayConfig.load(path, environ={}).opmon == OpmonSettings(retention_s=86400, max_queue=500)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("max_queue = 0", "max_queue must be a positive number"),
        ("max_queue = 10.5", "max_queue must be an integer"),
        ("retention_s = -1", "retention_s must be a positive number"),
        ("queue = 5", "queue"),
    ],
)
def test_bad_opmon_settings_are_refused(tmp_path: Path, setting: str, expected: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL_CONFIG + f"[opmon]\n{setting}\n")
    with pytest.raises(ConfigError, match=expected):
        GatewayConfig.load(path, environ={})
