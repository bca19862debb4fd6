"""Fresh PostgreSQL databases for tests, on the server CI starts (127.0.0.1:5432).

``XWEG_TEST_DATABASE=postgresql`` runs the tests that take :func:`log_database_url`
(and the federations of the integration tests) on PostgreSQL instead of SQLite; tests
that always try both dialects use :func:`fresh_postgres_database` directly.  Where the
server cannot be reached a PostgreSQL test fails, saying how to start it: a run meant
to cover PostgreSQL must not pass without it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "POSTGRES_DSN",
    "fresh_postgres_database",
    "new_postgres_database",
    "drop_postgres_databases",
    "postgres_requested",
    "TEST_DATABASE_VARIABLE",
]

#: Trust authentication, user postgres (.ci/run starts the server if it is not running).
POSTGRES_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
TEST_DATABASE_VARIABLE = "XWEG_TEST_DATABASE"


def postgres_requested() -> bool:
    """Whether this run was asked to use PostgreSQL where a test lets the run choose."""
    value = os.environ.get(TEST_DATABASE_VARIABLE, "sqlite")
    if value not in ("sqlite", "postgresql"):
        raise pytest.UsageError(f"{TEST_DATABASE_VARIABLE} must be sqlite or postgresql, not {value!r}")
    return value == "postgresql"


#: Databases made by :func:`new_postgres_database`, each the prefix of those made beside it.
_made: list[str] = []


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        pytest.fail(
            f"PostgreSQL on 127.0.0.1:5432 is unreachable ({reason}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` (.ci/run does)",
            pytrace=False,
        )


def new_postgres_database(prefix: str = "xweg_test") -> str:
    """The URL of a new, empty database, dropped by :func:`drop_postgres_databases` with every
    database whose name starts with its own (what ``prepare`` makes beside it)."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    _made.append(name)
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_postgres_databases() -> None:
    """Drop what :func:`new_postgres_database` made (at the end of the session)."""
    if not _made:
        return
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:
        names = [row[0] for row in admin.execute("SELECT datname FROM pg_database")]
        for name in names:
            if any(name.startswith(made) for made in _made):
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    _made.clear()


def fresh_postgres_database(prefix: str = "xweg_test") -> Iterator[str]:
    """Yield the URL of a new, empty database; drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = _admin()
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()
