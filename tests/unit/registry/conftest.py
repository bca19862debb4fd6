"""Fixtures for the registry tests: the trust tests' PKI and a federation written to disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.registry.helpers import FederationFiles, write_federation
from tests.unit.trust.helpers import Pki, pki

__all__ = ["pki", "files"]


@pytest.fixture
def files(tmp_path: Path, pki: Pki) -> FederationFiles:
    return write_federation(tmp_path, pki)
