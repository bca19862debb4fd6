"""One connection to a security server's own database: an SQLite file or PostgreSQL.

A security server alone keeps its message log and operational monitoring in SQLite
files under its data folder.  Replicas of one server share a PostgreSQL database
instead (``database_url = "postgresql://..."`` in ``server.toml``).  The stores above
this module write their SQL once, in the dialect both understand (``?`` parameters,
``ON CONFLICT``, ``count``/``max``/``length``), and use :class:`Database` for what
differs: connecting, write transactions and their locks, and the errors raised.

Blocking code, like the stores that use it: each :class:`Database` is used by one
thread at a time (its owner holds a lock).  A PostgreSQL connection that broke (the
server restarted, the network went away) is opened again on the next use outside a
transaction, so a store recovers by itself once the database is back; the use that
met the break fails with the driver's error, which the store maps to its own.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg
from psycopg import sql as pgsql

__all__ = [
    "Database",
    "DatabaseInUse",
    "DatabaseErrors",
    "Dialect",
    "is_postgres_url",
    "redact_url",
    "connect_sqlite",
    "connect_postgres",
    "check_schema_name",
    "advisory_key",
]

Dialect = Literal["sqlite", "postgresql"]

#: Every error a :class:`Database` call may raise from its driver.
DatabaseErrors: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)

#: A PostgreSQL schema this module creates or selects: lowercase, no quoting needed.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class DatabaseInUse(psycopg.OperationalError):
    """Another session holds the lock this connection was to hold for its whole life."""


def is_postgres_url(text: object) -> bool:
    """Whether ``text`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return isinstance(text, str) and text.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs: in the
    authority (``user:pw@``) and as a ``password=`` query parameter (libpq takes both)."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def check_schema_name(name: str) -> str:
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a schema name: 1 to 63 of a-z, 0-9 and _, not starting with a digit"
        )
    return name


class _Cursor(Protocol):
    @property
    def description(self) -> Any: ...

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


@functools.lru_cache(maxsize=512)
def _pg_sql(text: str) -> str:
    # The stores' SQL is fixed text with ``?`` placeholders and no ``?`` or ``%`` of its own.
    return text.replace("%", "%%").replace("?", "%s")


class Database:
    """A connection of either dialect with the few operations the stores need."""

    def __init__(
        self,
        dialect: Dialect,
        connection: sqlite3.Connection | psycopg.Connection[Any],
        *,
        describe: str,
        reconnect: Any = None,
    ) -> None:
        self.dialect: Dialect = dialect
        self._connection = connection
        self._reconnect = reconnect
        #: What this connection is to, for messages (a PostgreSQL password is never shown).
        self.describe = describe

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def execute(self, statement: str, params: Sequence[Any] = ()) -> _Cursor:
        if self.dialect == "sqlite":
            return self._sqlite.execute(statement, params)
        self._ensure_open()
        return self._pg.execute(_pg_sql(statement), params or None)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.dialect == "sqlite":
            self._sqlite.executemany(statement, rows)
            return
        self._ensure_open()
        with self._pg.cursor() as cursor:
            cursor.executemany(_pg_sql(statement), rows)

    @property
    def in_transaction(self) -> bool:
        if self.dialect == "sqlite":
            return self._sqlite.in_transaction
        return self._pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def create_tables(self, statements: Sequence[str], *, lock: str, timeout_s: float = 10.0) -> None:
        """Run ``statements`` (``CREATE ... IF NOT EXISTS``) in one write transaction.

        On PostgreSQL one process at a time, under the advisory lock ``lock`` names:
        replicas starting together would otherwise race to create the same catalogue
        entries, which ``IF NOT EXISTS`` does not prevent.
        """
        with self.write_transaction(timeout_s=timeout_s):
            if self.dialect == "postgresql":
                self.execute("SELECT pg_advisory_xact_lock(?)", (advisory_key(lock),))
            for statement in statements:
                self.execute(statement)

    @contextmanager
    def write_transaction(self, lock_table: str | None = None, timeout_s: float = 5.0) -> Iterator[None]:
        """One write transaction: committed at the end, rolled back on any failure.

        SQLite: ``BEGIN IMMEDIATE``, which takes the file's write lock up front.
        PostgreSQL: ``lock_table`` is locked against other writers (readers go on) for
        the transaction, waiting at most ``timeout_s``; a read inside it then sees what
        no other writer can change before the commit.
        """
        if self.dialect == "sqlite":
            with self._sqlite_transaction("BEGIN IMMEDIATE"):
                yield
            return
        self._ensure_open()
        with self._pg.transaction():
            milliseconds = max(1, int(timeout_s * 1000))
            self._pg.execute(pgsql.SQL("SET LOCAL lock_timeout = {}").format(pgsql.Literal(milliseconds)))
            if lock_table is not None:
                self._pg.execute(
                    pgsql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
                        pgsql.Identifier(lock_table)
                    )
                )
            yield

    @contextmanager
    def transaction(self, *, snapshot: bool = False) -> Iterator[None]:
        """A plain transaction (SQLite's deferred ``BEGIN``): for writes that need no lock
        up front.  ``snapshot``: read-only, every query seeing one and the same state (in
        WAL mode an SQLite read transaction keeps the snapshot of its first read)."""
        if self.dialect == "sqlite":
            # The connection is in autocommit mode, where ``with connection`` begins nothing.
            with self._sqlite_transaction("BEGIN"):
                yield
            return
        self._ensure_open()
        with self._pg.transaction():
            if snapshot:
                self._pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    def close(self) -> None:
        self._connection.close()

    # -- helpers ---------------------------------------------------------------------

    @contextmanager
    def _sqlite_transaction(self, begin: str) -> Iterator[None]:
        connection = self._sqlite
        connection.execute(begin)
        try:
            yield
            connection.execute("COMMIT")
        except BaseException:
            # A failed COMMIT may already have ended the transaction; roll back only if open.
            if connection.in_transaction:
                # The original error is the one to report, not a failed rollback.
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise

    @property
    def _sqlite(self) -> sqlite3.Connection:
        assert isinstance(self._connection, sqlite3.Connection)
        return self._connection

    @property
    def _pg(self) -> psycopg.Connection[Any]:
        assert isinstance(self._connection, psycopg.Connection)
        return self._connection

    def _ensure_open(self) -> None:
        """Open a broken PostgreSQL connection again, unless inside a transaction."""
        connection = self._pg
        if not (connection.broken or connection.closed) or self._reconnect is None:
            return
        if connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            return
        with contextlib.suppress(psycopg.Error):
            connection.close()
        self._connection = self._reconnect()


def connect_sqlite(path: Path, *, readonly: bool = False, timeout_s: float = 5.0) -> Database:
    """An SQLite connection in autocommit mode (transactions are explicit), usable from any thread."""
    path = Path(path)
    if readonly:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=timeout_s, check_same_thread=False)
    else:
        connection = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    return Database("sqlite", connection, describe=str(path))


def connect_postgres(
    url: str,
    *,
    schema: str | None = None,
    create_schema: bool = False,
    readonly: bool = False,
    timeout_s: float = 5.0,
    session_lock: str | None = None,
) -> Database:
    """A PostgreSQL connection in autocommit mode, its ``search_path`` set to ``schema``.

    Commits are synchronous whatever the server's default: a commit the store reports
    is on the server's disk.  ``readonly`` makes every transaction read-only, so a
    reader cannot change the database even by mistake.  ``create_schema`` creates
    ``schema`` if it does not exist.  ``session_lock`` names an advisory lock the
    connection holds while it lives (taken again after a reconnection); if another
    session holds it, connecting fails with :class:`DatabaseInUse`.  PostgreSQL releases
    it when the session ends, a killed process's included.

    After a network partition the server may not yet know that this connection's
    previous session is gone, and that session still holds the lock (for as long as the
    server's TCP keepalive takes, two hours by default).  Every session of one
    :class:`Database` carries the same unique ``application_name``; reconnecting, it ends
    a session of its own that still holds the lock, and only such a session.
    """
    if not is_postgres_url(url):
        raise ValueError(f"not a PostgreSQL URL: {redact_url(url)}")
    conninfo = "postgresql://" + url.split("://", 1)[1]
    if schema is not None:
        check_schema_name(schema)

    # Unique to this Database: how a reconnection recognises a session of its own.
    application_name = f"xweg {secrets.token_hex(8)}" if session_lock is not None else "xweg"

    def connect() -> psycopg.Connection[Any]:
        connection = psycopg.connect(
            conninfo,
            autocommit=True,
            connect_timeout=max(1, int(timeout_s)),
            application_name=application_name,
            # A peer that vanished without closing the socket is noticed in seconds, not hours.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        try:
            connection.execute("SET synchronous_commit = on")
            if schema is not None:
                if create_schema:
                    # Serialised: two sessions running CREATE SCHEMA IF NOT EXISTS at once may
                    # both find it missing, and one then fails on the catalogue's unique index.
                    with connection.transaction():
                        connection.execute(
                            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"schema {schema}",)
                        )
                        connection.execute(
                            pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(schema))
                        )
                connection.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema)))
            if readonly:
                connection.execute("SET default_transaction_read_only = on")
            if session_lock is not None:
                _take_session_lock(connection, session_lock, application_name, timeout_s)
        except BaseException:
            connection.close()
            raise
        return connection

    described = redact_url(url) if schema is None else f"{redact_url(url)} (schema {schema})"
    return Database("postgresql", connect(), describe=described, reconnect=connect)


def _take_session_lock(
    connection: psycopg.Connection[Any], name: str, application_name: str, timeout_s: float
) -> None:
    key = advisory_key(name)
    deadline = time.monotonic() + timeout_s
    while True:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row is not None and row[0]:
            return
        # Sessions of this Database left over from before a partition: ended, then try again.
        ended = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
        if not ended or time.monotonic() > deadline:
            raise DatabaseInUse(f"{name} is held by another session")
        time.sleep(0.05)  # the ended session lets go of its locks as it exits


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks, from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
