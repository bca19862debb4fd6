"""The server configuration store on a fresh SQLite file and on a fresh PostgreSQL database.

PostgreSQL runs on 127.0.0.1:5432 with trust authentication for user ``postgres`` (CI
starts it).  Where it cannot be reached, the PostgreSQL variants fail, saying how to
start it; the SQLite variants always run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.serverconf.store import AuditContext, ServerConfStore
from tests.databases import fresh_postgres_database as fresh_database

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    yield from fresh_database("xweg_serverconf")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'serverconf.db'}"
        return
    yield from fresh_postgres_database()


@pytest.fixture
def store(database_url: str) -> Iterator[ServerConfStore]:
    opened = ServerConfStore.open(database_url)
    yield opened
    opened.close()


@pytest.fixture
def context() -> AuditContext:
    return AuditContext("admin@paderborn", NOW, "corr-1")


def make_certificate(
    common_name: str,
    *,
    not_before: dt.datetime = NOW - dt.timedelta(days=30),
    not_after: dt.datetime = NOW + dt.timedelta(days=365),
) -> x509.Certificate:
    """A self-signed certificate, as an information system's TLS certificate often is."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
