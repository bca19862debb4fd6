"""Fixtures for the trust tests: one real PKI per session (key generation is the slow part)."""

from tests.unit.trust.helpers import pki

__all__ = ["pki"]
