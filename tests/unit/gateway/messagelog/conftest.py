"""Fixtures for message-log tests: signers, a good log file to tamper with, a TSA's PKI."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.messagelog.record import LogRecord
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
