"""The ``database_url`` fixture: a fresh SQLite file or a fresh PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import POSTGRES_DSN, fresh_postgres_database

__all__ = ["database_url", "POSTGRES_DSN"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    yield from fresh_postgres_database("xweg_test")
