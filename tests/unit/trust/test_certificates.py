"""Certificate validation at time T, from the attacker's side: each case changes one thing."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.unit.trust.helpers import (
    CLIENT_AUTH,
    MEMBER,
    NOW,
    SERVER,
    SERVER_AUTH,
    Pki,
    forge_certificate,
    key_usage,
)
from trust.ca import CertificateAuthority
from trust.certificates import fingerprint, validate_auth_certificate, validate_sign_certificate
from trust.errors import CertificateInvalid
from trust.keys import generate_private_key, make_csr


def names_cert(message: str, cert: x509.Certificate) -> bool:
    return fingerprint(cert)[:16] in message and "CN=" in message


def test_fingerprint_is_sha256_of_der(pki: Pki) -> None:
    der = pki.auth_cert.public_bytes(serialization.Encoding.DER)
    assert fingerprint(pki.auth_cert) == hashlib.sha256(der).hexdigest()


def test_good_certificates_yield_their_identities(pki: Pki) -> None:
    assert validate_sign_certificate(pki.sign_cert, pki.roots, NOW) == MEMBER
    assert validate_auth_certificate(pki.auth_cert, pki.roots, NOW) == SERVER


def test_expired_certificate(pki: Pki) -> None:
    later = pki.sign_cert.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(CertificateInvalid, match="expired at") as info:
        validate_sign_certificate(pki.sign_cert, pki.roots, later)
    assert names_cert(str(info.value), pki.sign_cert)


def test_not_yet_valid_certificate(pki: Pki) -> None:
    earlier = pki.auth_cert.not_valid_before_utc - dt.timedelta(seconds=1)
    with pytest.raises(CertificateInvalid, match="not yet valid") as info:
        validate_auth_certificate(pki.auth_cert, pki.roots, earlier)
    assert names_cert(str(info.value), pki.auth_cert)


def test_unknown_issuer(pki: Pki) -> None:
    stranger = pki.foreign_ca.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    with pytest.raises(CertificateInvalid, match="unknown issuer 'CN=Elsewhere Root CA'"):
        validate_sign_certificate(stranger, pki.roots, NOW)


def test_impostor_ca_with_the_same_name(pki: Pki) -> None:
    forged = pki.impostor_ca.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    with pytest.raises(CertificateInvalid, match="does not chain to an approved CA") as info:
        validate_sign_certificate(forged, pki.roots, NOW)
    assert names_cert(str(info.value), forged)


def test_flipped_byte_in_the_ca_signature(pki: Pki) -> None:
    der = bytearray(pki.sign_cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    tampered = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(CertificateInvalid, match="does not chain"):
        validate_sign_certificate(tampered, pki.roots, NOW)


def test_certificate_issued_by_a_ca_that_has_since_expired() -> None:
    start = NOW - dt.timedelta(days=10)
    short_ca = CertificateAuthority.create_root(
        "Short CA", generate_private_key(), now=start, validity=dt.timedelta(days=5)
    )
    key = generate_private_key()
    # The leaf outlives its CA, as a misconfigured CA might issue it.
    leaf = forge_certificate(
        short_ca,
        key.public_key(),
        uris=("xweg:MEMBER:NRW/MUN/05774032",),
        not_before=start,
        not_after=NOW + dt.timedelta(days=10),
    )
    with pytest.raises(CertificateInvalid, match="issuing CA of .* expired at"):
        validate_sign_certificate(leaf, [short_ca.certificate], NOW)


def test_sign_certificate_cannot_authenticate_tls(pki: Pki) -> None:
    with pytest.raises(
        CertificateInvalid, match="is not an auth certificate: extendedKeyUsage lacks"
    ) as info:
        validate_auth_certificate(pki.sign_cert, pki.roots, NOW)
    assert names_cert(str(info.value), pki.sign_cert)


def test_auth_certificate_cannot_sign_messages(pki: Pki) -> None:
    with pytest.raises(
        CertificateInvalid, match="is not a sign certificate: keyUsage lacks contentCommitment"
    ):
        validate_sign_certificate(pki.auth_cert, pki.roots, NOW)


def test_misissued_sign_certificate_with_tls_purposes_is_refused(pki: Pki) -> None:
    both = forge_certificate(
        pki.ca,
        pki.member_key.public_key(),
        uris=("xweg:MEMBER:NRW/MUN/05774032",),
        usage=key_usage(content_commitment=True),
        eku=(SERVER_AUTH, CLIENT_AUTH),
    )
    with pytest.raises(CertificateInvalid, match="carries an extendedKeyUsage"):
        validate_sign_certificate(both, pki.roots, NOW)


def test_auth_certificate_with_only_client_auth_is_refused(pki: Pki) -> None:
    client_only = forge_certificate(
        pki.ca, pki.server_key.public_key(), uris=("xweg:SERVER:NRW/MUN/05774032/ss1",), eku=(CLIENT_AUTH,)
    )
    with pytest.raises(CertificateInvalid, match="lacks serverAuth"):
        validate_auth_certificate(client_only, pki.roots, NOW)


def test_sign_certificate_naming_a_server_is_refused(pki: Pki) -> None:
    wrong_uri = forge_certificate(
        pki.ca, pki.member_key.public_key(), uris=("xweg:SERVER:NRW/MUN/05774032/ss1",)
    )
    with pytest.raises(CertificateInvalid, match="expected exactly one subjectAltName URI xweg:MEMBER:"):
        validate_sign_certificate(wrong_uri, pki.roots, NOW)


def test_a_ca_certificate_is_not_an_end_entity(pki: Pki) -> None:
    with pytest.raises(CertificateInvalid) as info:
        validate_sign_certificate(pki.ca.certificate, pki.roots, NOW)
    assert names_cert(str(info.value), pki.ca.certificate)


def test_no_roots_means_nothing_validates(pki: Pki) -> None:
    with pytest.raises(CertificateInvalid, match="no approved certificate authorities"):
        validate_sign_certificate(pki.sign_cert, [], NOW)


def test_naive_now_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="UTC"):
        validate_sign_certificate(pki.sign_cert, pki.roots, NOW.replace(tzinfo=None))


def test_cached_success_does_not_outlive_the_certificate(pki: Pki) -> None:
    cert = pki.ca.issue_sign_certificate(
        make_csr(pki.member_key, "x"), MEMBER, now=NOW, validity=dt.timedelta(hours=1)
    )
    assert validate_sign_certificate(cert, pki.roots, NOW) == MEMBER
    assert validate_sign_certificate(cert, pki.roots, NOW + dt.timedelta(minutes=59)) == MEMBER
    with pytest.raises(CertificateInvalid, match="expired"):
        validate_sign_certificate(cert, pki.roots, NOW + dt.timedelta(hours=1, seconds=1))
    with pytest.raises(CertificateInvalid, match="not yet valid"):
        validate_sign_certificate(cert, pki.roots, NOW - dt.timedelta(hours=1))


def test_cached_success_is_per_set_of_roots_and_profile(pki: Pki) -> None:
    assert validate_sign_certificate(pki.sign_cert, pki.roots, NOW) == MEMBER
    with pytest.raises(CertificateInvalid, match="unknown issuer"):
        validate_sign_certificate(pki.sign_cert, [pki.foreign_ca.certificate], NOW)
    with pytest.raises(CertificateInvalid, match="not an auth certificate"):
        validate_auth_certificate(pki.sign_cert, pki.roots, NOW)


def test_several_roots_pick_the_issuer(pki: Pki) -> None:
    roots = [pki.foreign_ca.certificate, pki.impostor_ca.certificate, pki.ca.certificate]
    assert validate_auth_certificate(pki.auth_cert, roots, NOW) == SERVER
