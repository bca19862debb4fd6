"""The CA store on disk: creation, keys at rest, issuance from CSRs, revocation and the register."""

from __future__ import annotations

import datetime as dt
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.unit.trust.helpers import MEMBER, NOW, SERVER
from trust.castore import CaStore, read_passphrase
from trust.certificates import CertificateTrust, validate_auth_certificate, validate_sign_certificate
from trust.errors import CaStoreError, CertificateInvalid
from trust.keys import generate_private_key, load_private_key, make_csr
from trust.ocsp import CertStatus
from trust.profiles import check_ocsp_responder_profile, check_tsa_profile, fingerprint

PASSPHRASE = b"correct horse battery staple"
KEY_FILES = ("root.key", "issuing.key", "ocsp.key")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    with CaStore.init(tmp_path / "ca", PASSPHRASE, now=NOW) as store:
        yield store


def csr() -> x509.CertificateSigningRequest:
    return make_csr(generate_private_key(), "ignored by the CA")


def test_init_creates_a_two_level_hierarchy_and_a_responder(store: CaStore) -> None:
    issuing, root = store.chain()
    assert root == store.root_certificate and issuing == store.issuing_certificate
    assert root.subject.rfc4514_string() == "CN=xweg NRW Root CA"
    assert issuing.subject.rfc4514_string() == "CN=xweg NRW Issuing CA"
    issuing.verify_directly_issued_by(root)
    store.responder_certificate.verify_directly_issued_by(issuing)
    check_ocsp_responder_profile(store.responder_certificate)
    assert store.responder_key.public_key() == store.responder_certificate.public_key()
    # The responder is in the register (and so has a status) like every certificate the CA issued.
    [entry] = store.list()
    assert entry.profile == "ocsp" and entry.serial == store.responder_certificate.serial_number


def test_keys_are_encrypted_and_private(store: CaStore) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700
    for name in (*KEY_FILES, "ca.db"):
        assert stat.S_IMODE((store.path / name).stat().st_mode) == 0o600, name
    for name in KEY_FILES:
        pem = (store.path / name).read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), name
        with pytest.raises(ValueError, match="cannot load private key"):
            load_private_key(store.path / name, None)
        load_private_key(store.path / name, PASSPHRASE)


def test_init_refuses_an_existing_ca(store: CaStore) -> None:
    with pytest.raises(CaStoreError, match=r"already holds a CA \(root.pem, root.key"):
        CaStore.init(store.path, PASSPHRASE, now=NOW)
    # Nothing was overwritten.
    with CaStore.open(store.path, PASSPHRASE) as again:
        assert again.root_certificate == store.root_certificate


def test_init_needs_a_passphrase(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-empty passphrase"):
        CaStore.init(tmp_path / "ca", b"", now=NOW)
    assert not (tmp_path / "ca").exists()


def test_open_with_a_wrong_passphrase(store: CaStore) -> None:
    with pytest.raises(CaStoreError, match="cannot open the CA in .*root.key"):
        CaStore.open(store.path, b"wrong")


def test_open_a_directory_that_is_no_ca(tmp_path: Path) -> None:
    with pytest.raises(CaStoreError, match="is not a CA store: root.pem, .* missing"):
        CaStore.open(tmp_path, PASSPHRASE)


def test_open_refuses_swapped_certificates(store: CaStore, tmp_path: Path) -> None:
    other = CaStore.init(tmp_path / "other", PASSPHRASE, now=NOW)
    other.close()
    (store.path / "ocsp.pem").write_bytes((tmp_path / "other" / "ocsp.pem").read_bytes())
    with pytest.raises(CaStoreError, match="ocsp.key does not match ocsp.pem"):
        CaStore.open(store.path, PASSPHRASE)


def test_issue_each_profile_and_validate_through_the_chain(store: CaStore) -> None:
    trust = CertificateTrust(roots=(store.root_certificate,), intermediates=(store.issuing_certificate,))
    auth = store.issue(csr(), "auth", "NRW/MUN/05774032/ss1", now=NOW, dns_names=("ss1.example",))
    sign = store.issue(csr(), "sign", "NRW/MUN/05774032", now=NOW)
    tsa = store.issue(csr(), "tsa", "xweg NRW TSA", now=NOW, validity=dt.timedelta(days=30))
    assert validate_auth_certificate(auth, trust, NOW) == SERVER
    assert validate_sign_certificate(sign, trust, NOW) == MEMBER
    assert check_tsa_profile(tsa) == "xweg NRW TSA"
    assert tsa.not_valid_after_utc == NOW + dt.timedelta(days=30)
    entries = {entry.serial: entry for entry in store.list()}
    for cert, profile, identity in (
        (auth, "auth", "NRW/MUN/05774032/ss1"),
        (sign, "sign", "NRW/MUN/05774032"),
        (tsa, "tsa", "xweg NRW TSA"),
    ):
        entry = entries[cert.serial_number]  # serials above 2**63 survive exactly
        assert (entry.profile, entry.identity, entry.status) == (profile, identity, "good")
        assert entry.fingerprint == fingerprint(cert)
        assert entry.certificate == cert
        assert entry.not_after == cert.not_valid_after_utc
        assert store.status(cert.serial_number) == CertStatus("good")
    assert max(entries) > 2**63


@pytest.mark.parametrize(
    ("profile", "identity", "match"),
    [
        ("auth", "NRW/MUN/05774032", "is not a security server"),
        ("sign", "NRW/MUN", "is not a member identifier"),
        ("sign", "NRW/MUN/05774032/ss1", "is not a member identifier"),
        ("tsa", "", "TSA name"),
        ("ocsp", "x", "profile must be one of auth, sign, tsa"),
    ],
)
def test_issue_refuses_bad_identities(store: CaStore, profile: str, identity: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        store.issue(csr(), profile, identity, now=NOW)  # type: ignore[arg-type]
    assert len(store.list()) == 1  # only the responder


def test_issue_refuses_a_tampered_csr(store: CaStore) -> None:
    der = bytearray(csr().public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    with pytest.raises(CertificateInvalid, match="invalid signature"):
        store.issue(x509.load_der_x509_csr(bytes(der)), "sign", "NRW/MUN/05774032", now=NOW)
    assert len(store.list()) == 1


def test_revoke_and_status(store: CaStore) -> None:
    cert = store.issue(csr(), "sign", "NRW/MUN/05774032", now=NOW)
    when = NOW + dt.timedelta(hours=1, microseconds=123456)
    store.revoke(cert.serial_number, x509.ReasonFlags.key_compromise, now=when)
    expected = CertStatus(
        "revoked", revoked_at=NOW + dt.timedelta(hours=1), reason=x509.ReasonFlags.key_compromise
    )
    assert store.status(cert.serial_number) == expected
    entry = store.get(cert.serial_number)
    assert entry is not None and entry.status == "revoked" and entry.reason == x509.ReasonFlags.key_compromise
    # Another process (the OCSP responder) sees it at once.
    with CaStore.open(store.path, PASSPHRASE) as other:
        assert other.status(cert.serial_number) == expected


def test_revoke_twice_is_refused(store: CaStore) -> None:
    cert = store.issue(csr(), "auth", "NRW/MUN/05774032/ss1", now=NOW)
    store.revoke(cert.serial_number, x509.ReasonFlags.superseded, now=NOW)
    with pytest.raises(
        CaStoreError,
        match=rf"serial {cert.serial_number} \(CN=NRW/MUN/05774032/ss1\) is already revoked since "
        r"2025-03-01T12:00:00Z \(reason superseded\)",
    ):
        store.revoke(cert.serial_number, x509.ReasonFlags.key_compromise, now=NOW)
    # The first revocation stands.
    assert store.status(cert.serial_number).reason == x509.ReasonFlags.superseded


def test_revoke_an_unknown_serial(store: CaStore) -> None:
    with pytest.raises(
        CaStoreError, match=r"no certificate with serial 12345 \(0x3039\) was issued by this CA"
    ):
        store.revoke(12345, x509.ReasonFlags.key_compromise, now=NOW)


def test_revoke_refuses_remove_from_crl(store: CaStore) -> None:
    cert = store.issue(csr(), "sign", "NRW/MUN/05774032", now=NOW)
    with pytest.raises(ValueError, match="removeFromCRL"):
        store.revoke(cert.serial_number, x509.ReasonFlags.remove_from_crl, now=NOW)
    assert store.status(cert.serial_number) == CertStatus("good")


def test_status_of_an_unknown_serial(store: CaStore) -> None:
    assert store.status(1) == CertStatus("unknown")


def test_register_can_be_read_without_the_passphrase(store: CaStore) -> None:
    cert = store.issue(csr(), "sign", "NRW/GOV/05315", now=NOW)
    entries = CaStore.read_register(store.path)
    assert [e.serial for e in entries] == [e.serial for e in store.list()]
    assert cert.serial_number in {e.serial for e in entries}
    as_json = next(e for e in entries if e.serial == cert.serial_number).to_dict()
    assert as_json["serial"] == str(cert.serial_number) and as_json["status"] == "good"


def test_read_passphrase(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_bytes(b"s3cret\n")
    assert read_passphrase(secret, None, {}) == b"s3cret"
    assert read_passphrase(None, "CA_PASS", {"CA_PASS": "s3cret"}) == b"s3cret"
    with pytest.raises(ValueError, match="exactly one"):
        read_passphrase(secret, "CA_PASS", {"CA_PASS": "x"})
    with pytest.raises(ValueError, match="exactly one"):
        read_passphrase(None, None, {})
    with pytest.raises(ValueError, match="environment variable CA_PASS .* is not set"):
        read_passphrase(None, "CA_PASS", {})
    (tmp_path / "empty").write_bytes(b"\n")
    with pytest.raises(ValueError, match="empty passphrase"):
        read_passphrase(tmp_path / "empty", None, {})
    with pytest.raises(ValueError, match="cannot read passphrase file"):
        read_passphrase(tmp_path / "missing", None, {})
