"""Operational monitoring: one record per exchange, with X-Road's pr-opmon fields.

Each exchange, successful or not, leaves an :class:`OpmonRecord` (the consumer's side as
``securityServerType`` ``Client``, the provider's as ``Producer``), written by a
background writer to SQLite at ``data_dir/opmon.db`` (WAL) or, for replicas of one
security server, to the schema ``opmon`` of their shared PostgreSQL database (see
:mod:`gateway.database`).  Monitoring never delays or fails an exchange:
:meth:`OperationalMonitor.record` only puts the record on a bounded queue; a full queue
drops the record, and drops (and failed writes) are counted (``on_drop``, the
``xweg_opmon_records_dropped_total`` metric).  The writer takes what is queued in
batches of up to :data:`MAX_BATCH` and inserts each batch in one transaction on a thread
of its own, so the event loop never waits for the disk.

On PostgreSQL the first replica to start creates the schema and its tables (under an
advisory lock, so replicas may start together).  Every replica inserts its own records
(ids come from the database), reads see the records of all of them, and any of them may
prune.  A batch that fails because the database went away is counted as
``write_failed``; the connection is opened again for the next batch, so writing resumes
by itself once the database is back.

Times are X-Road's: ``monitoringDataTs`` in seconds since the epoch, ``requestInTs``,
``requestOutTs``, ``responseInTs`` and ``responseOutTs`` in milliseconds.  ``requestSize``
and ``responseSize`` are body sizes in bytes.  ``succeeded`` is the exchange layer's
verdict: a provider's own error status (or a backend's SOAP Fault) that travelled back
intact is a successful exchange with that ``statusCode``; ``faultCode`` and ``faultString``
are set when the exchange layer failed.  ``messageProtocolVersion`` is ``4.0`` for SOAP and
``1`` for REST; ``serviceType`` is ``WSDL`` for SOAP and ``REST`` for REST, as X-Road writes them.

Settings (``[opmon]`` in the server's configuration, :class:`gateway.config.OpmonSettings`):
``retention_s`` (default 7 days: older records are pruned every ``prune_interval_s``,
default an hour) and ``max_queue`` (default 10,000 records waiting to be written).

Reading: :meth:`OperationalMonitor.records` (a time range on ``monitoringDataTs``, newest
first, optionally one client's, at most :data:`MAX_RECORDS`) and
:meth:`OperationalMonitor.health` (per service: the last successful and failed request,
and counts and durations over the last :data:`HEALTH_PERIOD_S` seconds).  Both first wait
until what was queued before the call is written.  Serving them over HTTP is the
management API's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import functools
import math
import operator
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog

from core.clock import Clock, require_utc
from gateway.config import OpmonSettings
from gateway.database import (
    Database,
    DatabaseErrors,
    connect_postgres,
    connect_sqlite,
    is_postgres_url,
    redact_url,
)
from gateway.periodic import run_periodically

__all__ = [
    "OpmonRecord",
    "OperationalMonitor",
    "OpmonError",
    "FIELDS",
    "MAX_RECORDS",
    "MAX_BATCH",
    "HEALTH_PERIOD_S",
    "CLIENT",
    "PRODUCER",
]

log = structlog.get_logger("xweg.opmon")
_P = ParamSpec("_P")
_T = TypeVar("_T")

#: ``securityServerType`` of the consumer's and the provider's record.
CLIENT = "Client"
PRODUCER = "Producer"
#: Records one call of :meth:`OperationalMonitor.records` returns at most (X-Road's default).
MAX_RECORDS = 10_000
#: Records inserted in one transaction at most.
MAX_BATCH = 1_000
#: The window of the health statistics (X-Road's default).
HEALTH_PERIOD_S = 600
_BUSY_TIMEOUT_S = 10.0
#: The PostgreSQL schema of the records, in the database the replicas share.
_PG_SCHEMA = "opmon"
#: The advisory lock under which a replica creates the schema's tables.
_PG_CREATE_LOCK = "xweg.opmon.schema"


class OpmonError(Exception):
    """The operational monitoring database could not be read."""


@dataclass(frozen=True, slots=True)
class OpmonRecord:
    """One exchange as X-Road's operational monitoring describes it (see the module docstring)."""

    monitoring_data_ts: int
    security_server_type: str
    request_in_ts: int | None = None
    request_out_ts: int | None = None
    response_in_ts: int | None = None
    response_out_ts: int | None = None
    client_x_road_instance: str | None = None
    client_member_class: str | None = None
    client_member_code: str | None = None
    client_subsystem_code: str | None = None
    service_x_road_instance: str | None = None
    service_member_class: str | None = None
    service_member_code: str | None = None
    service_subsystem_code: str | None = None
    service_code: str | None = None
    service_version: str | None = None
    rest_method: str | None = None
    rest_path: str | None = None
    represented_party_class: str | None = None
    represented_party_code: str | None = None
    message_id: str | None = None
    message_user_id: str | None = None
    message_issue: str | None = None
    message_protocol_version: str | None = None
    client_security_server_address: str | None = None
    service_security_server_address: str | None = None
    request_size: int | None = None
    response_size: int | None = None
    succeeded: bool = False
    fault_code: str | None = None
    fault_string: str | None = None
    status_code: int | None = None
    service_type: str | None = None

    def __post_init__(self) -> None:
        if self.security_server_type not in (CLIENT, PRODUCER):
            raise ValueError(f"securityServerType must be {CLIENT} or {PRODUCER}")

    @property
    def client_id(self) -> str | None:
        """The client as a slash id (``instance/class/member[/subsystem]``), if known."""
        parts = (self.client_x_road_instance, self.client_member_class, self.client_member_code)
        if not all(parts):
            return None
        return "/".join(p for p in (*parts, self.client_subsystem_code) if p)

    @property
    def service_id(self) -> str | None:
        """The service as a slash id (with its version, if any), if known."""
        parts = (
            self.service_x_road_instance,
            self.service_member_class,
            self.service_member_code,
            self.service_subsystem_code,
            self.service_code,
        )
        if not all(parts):
            return None
        return "/".join(p for p in (*parts, self.service_version) if p)

    def to_json(self) -> dict[str, Any]:
        """The record with X-Road's field names."""
        return dict(zip(FIELDS, _values(self), strict=True))


def _xroad_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


#: X-Road's field names, in the order of :class:`OpmonRecord`'s fields (``monitoringDataTs``, ...).
FIELDS: tuple[str, ...] = tuple(_xroad_name(f.name) for f in fields(OpmonRecord))
# A record's values in field order; dataclasses.astuple would deep-copy each of them.
_values = operator.attrgetter(*(f.name for f in fields(OpmonRecord)))
_INTEGERS = frozenset(
    {
        "monitoringDataTs",
        "requestInTs",
        "requestOutTs",
        "responseInTs",
        "responseOutTs",
        "requestSize",
        "responseSize",
        "statusCode",
    }
)
_COLUMNS = ", ".join(f'"{name}"' for name in FIELDS)


def _schema(*, key: str, integer: str, boolean: str) -> tuple[str, ...]:
    """The tables and indexes, one statement each, in the column types of one dialect."""

    def column_type(name: str) -> str:
        return boolean if name == "succeeded" else integer if name in _INTEGERS else "TEXT"

    columns = ", ".join(f'"{name}" {column_type(name)}' for name in FIELDS)
    return (
        f"CREATE TABLE IF NOT EXISTS records (id {key}, client_id TEXT, service_id TEXT, {columns})",
        'CREATE INDEX IF NOT EXISTS records_by_time ON records ("monitoringDataTs")',
        'CREATE INDEX IF NOT EXISTS records_by_client ON records (client_id, "monitoringDataTs")',
        'CREATE INDEX IF NOT EXISTS records_by_response ON records ("responseOutTs")',
        # The last successful and failed request per service, kept beside the records so that
        # health answers without reading a week of them.
        "CREATE TABLE IF NOT EXISTS last_requests ("
        f"service_id TEXT NOT NULL, server_type TEXT NOT NULL, succeeded {boolean} NOT NULL,"
        f" at_ms {integer} NOT NULL, PRIMARY KEY (service_id, server_type, succeeded))",
    )


# SQLite: the rowid is the id.  PostgreSQL: the database numbers the rows of all replicas.
_SQLITE_SCHEMA = _schema(key="INTEGER PRIMARY KEY", integer="INTEGER", boolean="INTEGER")
_POSTGRES_SCHEMA = (
    f"CREATE SCHEMA IF NOT EXISTS {_PG_SCHEMA}",
    *_schema(key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", integer="BIGINT", boolean="BOOLEAN"),
)
# Built from the constant field names only; values are always bound parameters.
_PLACEHOLDERS = ", ".join("?" * (len(FIELDS) + 2))
_INSERT = f"INSERT INTO records (client_id, service_id, {_COLUMNS}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
# Both dialects: a time never replaces a later one, whichever replica wrote that.
_UPSERT_LAST = """
INSERT INTO last_requests (service_id, server_type, succeeded, at_ms) VALUES (?, ?, ?, ?)
ON CONFLICT (service_id, server_type, succeeded) DO UPDATE SET at_ms = excluded.at_ms
WHERE excluded.at_ms > last_requests.at_ms
"""


class OperationalMonitor:
    """Operational monitoring records of one security server.

    ``location``: an SQLite file, or the URL (``postgresql://...``) of the PostgreSQL
    database the server's replicas share.  ``on_drop(reason)`` is told of every record
    lost: ``queue_full`` or ``write_failed``.
    """

    def __init__(
        self,
        location: Path | str,
        settings: OpmonSettings,
        clock: Clock,
        *,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(location, str) and not is_postgres_url(location):
            raise ValueError(f"not a PostgreSQL URL: {redact_url(location)} (an SQLite file is a Path)")
        self._location = location
        self._settings = settings
        self._clock = clock
        self._on_drop = on_drop
        self._queue: collections.deque[OpmonRecord] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._database: Database | None = None
        self._writer: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._closing = False
        # Records ever queued, and ever taken by the writer (written or failed): flush() waits
        # until the second reaches what the first was when it was called.
        self._queued = 0
        self._taken = 0
        self._progress = asyncio.Condition()
        self._dropping = False
        #: Records lost, by reason (as told to ``on_drop``).
        self.dropped: collections.Counter[str] = collections.Counter()
        #: Records written.
        self.written = 0

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def record(self, record: OpmonRecord) -> bool:
        """Queue ``record`` for writing; never waits.  False when it was dropped."""
        if self._closing:
            self._drop("write_failed")
            return False
        if len(self._queue) >= self._settings.max_queue:
            if not self._dropping:
                self._dropping = True
                log.warning("opmon.queue_full", max_queue=self._settings.max_queue)
            self._drop("queue_full")
            return False
        self._queue.append(record)
        self._queued += 1
        self._wakeup.set()
        return True

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        if self._on_drop is not None:
            self._on_drop(reason)

    async def start(self) -> None:
        """Open the database, start writing and pruning."""
        if self._writer is not None:
            raise RuntimeError("the operational monitor was already started")
        # One thread: the connection is used from there only.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xweg-opmon")
        try:
            await self._call(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop(), name="xweg-opmon-writer")
        self._pruner = loop.create_task(
            run_periodically(
                self._prune_round,
                interval_s=self._settings.prune_interval_s,
                retry_s=min(60.0, self._settings.prune_interval_s),
                name="opmon",
            ),
            name="xweg-opmon-pruner",
        )

    async def close(self) -> None:
        """Write what is queued, stop, close the database.  Closing twice is harmless."""
        if self._closing:
            return
        self._closing = True
        self._wakeup.set()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self._writer is not None:
            await asyncio.shield(self._writer)
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_connection)
            executor.shutdown(wait=True)

    async def flush(self) -> None:
        """Return once every record queued before this call is written (or failed)."""
        if self._writer is None or self._writer.done():
            return
        target = self._queued
        async with self._progress:
            await self._progress.wait_for(lambda: self._taken >= target or self._writer_gone())

    def _writer_gone(self) -> bool:
        return self._writer is None or self._writer.done()

    async def records(
        self,
        *,
        start: dt.datetime,
        end: dt.datetime,
        client: str | None = None,
        limit: int = MAX_RECORDS,
    ) -> list[dict[str, Any]]:
        """Records with ``start <= monitoringDataTs <= end`` (to the second), newest first.

        ``client``: only this client's (its slash id, ``instance/class/member[/subsystem]``,
        matched exactly).  ``limit`` is capped at :data:`MAX_RECORDS`.  Each record is a
        dict with X-Road's field names.  Raises :class:`OpmonError` if the database
        cannot be read, ValueError for times that are not UTC or a limit below 1.
        """
        require_utc(start, "start")
        require_utc(end, "end")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("limit must be a positive integer")
        limit = min(limit, MAX_RECORDS)
        low, high = math.floor(start.timestamp()), math.floor(end.timestamp())
        await self.flush()
        return await self._read(self._select_records, low, high, client, limit)

    async def health(self) -> list[dict[str, Any]]:
        """Per service and side (``securityServerType``), sorted by service:

        ``service`` (slash id, with version if the requests named one),
        ``securityServerType``, ``lastSuccessfulRequestTimestamp`` and
        ``lastUnsuccessfulRequestTimestamp`` (epoch milliseconds or None, within the
        retention period), ``statisticsPeriodSeconds`` (:data:`HEALTH_PERIOD_S`), and over
        that period before now: ``successfulRequestCount``, ``unsuccessfulRequestCount``,
        ``successfulRequestAverageDuration``, ``successfulRequestMaxDuration``,
        ``unsuccessfulRequestAverageDuration``, ``unsuccessfulRequestMaxDuration``
        (milliseconds from request in to response out; None without requests).  A request
        belongs to the period its response left in.
        """
        await self.flush()
        now_ms = _ms(self._clock.now())
        return await self._read(self._select_health, now_ms - HEALTH_PERIOD_S * 1000)

    async def prune(self) -> int:
        """Delete records older than the retention period; returns how many went."""
        cutoff = self._clock.now() - dt.timedelta(seconds=self._settings.retention_s)
        return await self._call(self._delete_before, math.floor(cutoff.timestamp()))

    # -- the writer --------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            try:
                await self._call(self._insert, batch)
                self.written += len(batch)
            except Exception as exc:  # a lost batch must not stop the writer
                log.error("opmon.write_failed", records=len(batch), error=repr(exc))
                for _ in batch:
                    self._drop("write_failed")
            if not self._queue:
                self._dropping = False
            self._taken += len(batch)
            async with self._progress:
                self._progress.notify_all()

    async def _prune_round(self) -> bool:
        removed = await self.prune()
        if removed:
            log.info("opmon.pruned", records=removed)
        return True

    # -- on the database thread --------------------------------------------------------

    async def _call(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._executor is None:
            raise OpmonError("the operational monitor is not running")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    async def _read(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await self._call(function, *args, **kwargs)
        except DatabaseErrors as exc:
            raise OpmonError(f"the operational monitoring records could not be read: {exc}") from exc

    def _open(self) -> None:
        if isinstance(self._location, Path):
            self._location.parent.mkdir(parents=True, exist_ok=True)
            database = connect_sqlite(self._location, timeout_s=_BUSY_TIMEOUT_S)
        else:
            database = connect_postgres(self._location, schema=_PG_SCHEMA)
        try:
            if database.dialect == "sqlite":
                database.execute("PRAGMA journal_mode=WAL")
                # Monitoring data may lose the last moments before a crash; it needs no fsync per batch.
                database.execute("PRAGMA synchronous=NORMAL")
            statements = _SQLITE_SCHEMA if database.dialect == "sqlite" else _POSTGRES_SCHEMA
            database.create_tables(statements, lock=_PG_CREATE_LOCK, timeout_s=_BUSY_TIMEOUT_S)
        except BaseException:
            database.close()
            raise
        self._database = database

    def _close_connection(self) -> None:
        if self._database is not None:
            self._database.close()
            self._database = None

    def _db(self) -> Database:
        if self._database is None:
            raise OpmonError("the operational monitoring database is closed")
        return self._database

    def _insert(self, batch: list[OpmonRecord]) -> None:
        database = self._db()
        last: dict[tuple[str, str, bool], int] = {}
        rows = []
        for record in batch:
            service = record.service_id
            rows.append((record.client_id, service, *_values(record)))
            if service is not None and record.response_out_ts is not None:
                key = (service, record.security_server_type, record.succeeded)
                last[key] = max(last.get(key, 0), record.response_out_ts)
        with database.write_transaction(timeout_s=_BUSY_TIMEOUT_S):
            database.executemany(_INSERT, rows)
            # In key order, so that two replicas' batches never wait for each other's rows crosswise.
            database.executemany(_UPSERT_LAST, [(*key, at) for key, at in sorted(last.items())])

    def _delete_before(self, cutoff_s: int) -> int:
        database = self._db()
        with database.write_transaction(timeout_s=_BUSY_TIMEOUT_S):
            removed = database.execute('DELETE FROM records WHERE "monitoringDataTs" < ?', (cutoff_s,))
            database.execute("DELETE FROM last_requests WHERE at_ms < ?", (cutoff_s * 1000,))
        return removed.rowcount

    def _select_records(self, low: int, high: int, client: str | None, limit: int) -> list[dict[str, Any]]:
        where = '"monitoringDataTs" BETWEEN ? AND ?'
        args: list[Any] = [low, high]
        if client is not None:
            where += " AND client_id = ?"
            args.append(client)
        order = 'ORDER BY "monitoringDataTs" DESC, id DESC LIMIT ?'
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM records WHERE {where} {order}", (*args, limit))  # noqa: S608
        succeeded = FIELDS.index("succeeded")
        out = []
        for row in rows:
            item = dict(zip(FIELDS, row, strict=True))
            item["succeeded"] = bool(row[succeeded])
            out.append(item)
        return out

    def _select_health(self, since_ms: int) -> list[dict[str, Any]]:
        database = self._db()
        services: dict[tuple[str, str], dict[str, Any]] = {}

        def entry(service: str, server_type: str) -> dict[str, Any]:
            key = (service, server_type)
            if key not in services:
                services[key] = {
                    "service": service,
                    "securityServerType": server_type,
                    "lastSuccessfulRequestTimestamp": None,
                    "lastUnsuccessfulRequestTimestamp": None,
                    "statisticsPeriodSeconds": HEALTH_PERIOD_S,
                    "successfulRequestCount": 0,
                    "successfulRequestAverageDuration": None,
                    "successfulRequestMaxDuration": None,
                    "unsuccessfulRequestCount": 0,
                    "unsuccessfulRequestAverageDuration": None,
                    "unsuccessfulRequestMaxDuration": None,
                }
            return services[key]

        for service, server_type, succeeded, at_ms in database.execute(
            "SELECT service_id, server_type, succeeded, at_ms FROM last_requests"
        ):
            name = "lastSuccessfulRequestTimestamp" if succeeded else "lastUnsuccessfulRequestTimestamp"
            entry(service, server_type)[name] = at_ms
        window = database.execute(
            'SELECT service_id, "securityServerType", "succeeded", COUNT(*),'
            ' AVG("responseOutTs" - "requestInTs"), MAX("responseOutTs" - "requestInTs")'
            ' FROM records WHERE "responseOutTs" >= ? AND service_id IS NOT NULL'
            ' GROUP BY service_id, "securityServerType", "succeeded"',
            (since_ms,),
        )
        for service, server_type, succeeded, count, mean, longest in window:
            prefix = "successful" if succeeded else "unsuccessful"
            item = entry(service, server_type)
            item[f"{prefix}RequestCount"] = count
            # PostgreSQL's average of integers is a Decimal.
            item[f"{prefix}RequestAverageDuration"] = None if mean is None else float(mean)
            item[f"{prefix}RequestMaxDuration"] = longest
        return [services[key] for key in sorted(services)]


def _ms(at: dt.datetime) -> int:
    return math.floor(at.timestamp() * 1000)
