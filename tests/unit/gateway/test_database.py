"""What :mod:`gateway.database` lets out of a database URL into messages and logs."""

from __future__ import annotations

import pytest

from gateway.database import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://xweg:s3cr3t@db.example/ss1", "postgresql://xweg:***@db.example/ss1"),
        (
            "postgresql://xweg@db.example/ss1?sslmode=require&password=s3cr3t&connect_timeout=5",
            "postgresql://xweg@db.example/ss1?sslmode=require&password=***&connect_timeout=5",
        ),
        ("postgresql://xweg@db.example/ss1?Password=s3cr3t", "postgresql://xweg@db.example/ss1?Password=***"),
        ("postgresql://a:b@h/d?password=c", "postgresql://a:***@h/d?password=***"),
        # Nothing secret: unchanged.
        ("postgresql:///?service=xweg-gateway", "postgresql:///?service=xweg-gateway"),
        (
            "postgresql://xweg@db.example/ss1?passwordless=1",
            "postgresql://xweg@db.example/ss1?passwordless=1",
        ),
    ],
)
def test_passwords_are_hidden_wherever_libpq_takes_them(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cr3t" not in redact_url(url)
