"""Fixtures for message-log tests: signers and a good log file to tamper with."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.messagelog.record import LogRecord
from tests.unit.gateway.messagelog.helpers import Signers, write_log


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
