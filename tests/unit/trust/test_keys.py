"""Key and certificate files: round trips, permissions, atomic replacement, refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.unit.trust.helpers import Pki
from trust.keys import (
    generate_private_key,
    load_certificate,
    load_certificates,
    load_private_key,
    make_csr,
    public_key_pem,
    save_certificate,
    save_private_key,
)


def test_generated_key_is_p256() -> None:
    key = generate_private_key()
    assert isinstance(key.curve, ec.SECP256R1)


def test_private_key_round_trip_without_passphrase(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "sign.key"
    save_private_key(key, path, None)
    assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    assert load_private_key(path, None).private_numbers() == key.private_numbers()


def test_private_key_is_encrypted_with_passphrase(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "sign.key"
    save_private_key(key, path, b"geheim")
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert load_private_key(path, b"geheim").private_numbers() == key.private_numbers()
    with pytest.raises(ValueError, match="cannot load private key"):
        load_private_key(path, b"falsch")
    with pytest.raises(ValueError, match="cannot load private key"):
        load_private_key(path, None)


def test_private_key_file_is_owner_only_and_no_temp_file_remains(tmp_path: Path) -> None:
    path = tmp_path / "auth.key"
    save_private_key(generate_private_key(), path, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["auth.key"]


def test_saving_replaces_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "auth.key"
    first, second = generate_private_key(), generate_private_key()
    save_private_key(first, path, None)
    save_private_key(second, path, None)
    assert load_private_key(path, None).private_numbers() == second.private_numbers()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rsa_private_key_is_refused(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "rsa.key"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError, match="P-256"):
        load_private_key(path, None)


def test_certificate_round_trip_and_bundles(tmp_path: Path, pki: Pki) -> None:
    one = tmp_path / "auth.pem"
    save_certificate(pki.auth_cert, one)
    assert load_certificate(one) == pki.auth_cert
    bundle = tmp_path / "cas.pem"
    bundle.write_bytes(one.read_bytes() + pki.ca.certificate.public_bytes(serialization.Encoding.PEM))
    assert load_certificates(bundle) == [pki.auth_cert, pki.ca.certificate]
    with pytest.raises(ValueError, match="2 certificates"):
        load_certificate(bundle)


def test_csr_carries_the_name_and_a_valid_signature() -> None:
    key = generate_private_key()
    csr = make_csr(key, "NRW/MUN/05774032/ss1")
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=NRW/MUN/05774032/ss1"
    assert csr.public_key() == key.public_key()


def test_public_key_pem_is_the_same_from_either_half() -> None:
    key = generate_private_key()
    pem = public_key_pem(key)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert pem == public_key_pem(key.public_key())
    assert serialization.load_pem_public_key(pem.encode()) == key.public_key()
