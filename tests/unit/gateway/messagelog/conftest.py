"""Fixtures for message-log tests: signers, a good log file to tamper with, a TSA's PKI,
and a log location of either dialect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.messagelog.record import LogRecord
from gateway.messagelog.store import LogLocation, PostgresLogShard
from tests.databases import fresh_postgres_database
from tests.unit.gateway.messagelog.helpers import Signers, write_log
from tests.unit.gateway.messagelog.tsa import Pki, TsaIdentity


@pytest.fixture(scope="session")
def signers() -> Signers:
    return Signers()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "messagelog.db"


@pytest.fixture
def good_log(log_path: Path, signers: Signers) -> list[LogRecord]:
    """Six records (three exchanges) in ``log_path``."""
    return write_log(log_path, signers, exchanges=3)


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="session")
def tsa_identity(pki: Pki) -> TsaIdentity:
    """A TSA certified by ``pki`` (critical extendedKeyUsage timeStamping)."""
    return pki.issue_tsa("Test TSA")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogLocation]:
    """Where a new, empty message log goes: an SQLite file, or shard ``main`` of a fresh
    PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield tmp_path / "messagelog.db"
        return
    for url in fresh_postgres_database("xweg_mlog"):  # one database, dropped when resumed
        yield PostgresLogShard(url, "main")
