"""The configuration anchor: exact round trips and refusal of anything malformed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.canonical import canonical_json
from tests.unit.trust.helpers import NOW
from trust.anchor import Anchor, AnchorKey, load_anchor, save_anchor
from trust.errors import AnchorInvalid
from trust.keys import generate_private_key, public_key_pem

KEY = generate_private_key()
NEXT_KEY = generate_private_key()


def make_anchor() -> Anchor:
    return Anchor(
        instance="NRW",
        registry_urls=("https://registry.nrw.example/", "http://127.0.0.1:8080"),
        signing_keys=(
            AnchorKey("2025-1", public_key_pem(KEY)),
            AnchorKey("2025-2", public_key_pem(NEXT_KEY)),
        ),
        generated_at=NOW,
    )


def as_dict() -> dict[str, Any]:
    return json.loads(make_anchor().to_json())  # type: ignore[no-any-return]


def test_round_trip_is_exact_and_canonical() -> None:
    anchor = make_anchor()
    data = anchor.to_json()
    assert data == canonical_json(json.loads(data))
    assert json.loads(data)["generated_at"] == "2025-03-01T12:00:00Z"
    assert Anchor.from_json(data) == anchor


def test_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "anchor.json"
    save_anchor(make_anchor(), path)
    assert load_anchor(path) == make_anchor()


def test_public_key_lookup() -> None:
    anchor = make_anchor()
    assert anchor.public_key("2025-2") == NEXT_KEY.public_key()
    assert anchor.public_key("2024-9") is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"instance": ""}, "instance must not be empty"),
        ({"instance": "N R W"}, "illegal character"),
        ({"registry_urls": []}, "1 to 32 registry URLs"),
        ({"registry_urls": ["ftp://registry.example/"]}, "absolute http"),
        ({"registry_urls": ["/globalconf"]}, "absolute http"),
        ({"signing_keys": []}, "1 to 32 signing keys"),
        ({"signing_keys": [{"key_id": "a", "public_key_pem": "garbage"}]}, "not a PEM public key"),
        ({"signing_keys": [{"key_id": "a"}]}, "lacks"),
        ({"generated_at": "2025-03-01T12:00:00+00:00"}, "ending in 'Z'"),
        ({"generated_at": 1740830400}, "ISO 8601"),
        ({"version": 2}, "version 2"),
        ({"format": "tuf-root"}, "format 'tuf-root'"),
        ({"extra": True}, "unexpected keys"),
    ],
)
def test_malformed_anchor_is_refused(change: dict[str, Any], match: str) -> None:
    with pytest.raises(AnchorInvalid, match=match):
        Anchor.from_json(json.dumps({**as_dict(), **change}).encode())


def test_duplicate_key_ids_are_refused() -> None:
    data = as_dict()
    data["signing_keys"][1]["key_id"] = "2025-1"
    with pytest.raises(AnchorInvalid, match="unique"):
        Anchor.from_json(json.dumps(data).encode())


def test_rsa_signing_key_is_refused() -> None:
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(AnchorInvalid, match="P-256"):
        Anchor.from_json(
            json.dumps({**as_dict(), "signing_keys": [{"key_id": "r", "public_key_pem": pem}]}).encode()
        )


def test_p384_signing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="P-256"):
        AnchorKey("k", public_key_pem(ec.generate_private_key(ec.SECP384R1())))


def test_duplicate_json_keys_are_refused() -> None:
    data = make_anchor().to_json()
    doubled = data[:-1] + b',"instance":"EVIL"}'
    with pytest.raises(AnchorInvalid, match="duplicate JSON key 'instance'"):
        Anchor.from_json(doubled)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"\xff\xfe", "UTF-8"),
        (b" " * 300_000, "larger than"),
    ],
)
def test_non_anchor_bytes_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(AnchorInvalid, match=match):
        Anchor.from_json(data)


def test_missing_file_is_an_anchor_error(tmp_path: Path) -> None:
    with pytest.raises(AnchorInvalid, match="cannot read anchor"):
        load_anchor(tmp_path / "missing.json")


def test_constructor_refuses_naive_time_and_lists() -> None:
    anchor = make_anchor()
    with pytest.raises(ValueError, match="UTC"):
        Anchor(anchor.instance, anchor.registry_urls, anchor.signing_keys, NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="as a tuple"):
        Anchor(anchor.instance, list(anchor.registry_urls), anchor.signing_keys, NOW)  # type: ignore[arg-type]
