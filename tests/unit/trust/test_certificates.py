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
from trust.certificates import (
    CertificateTrust,
    fingerprint,
    validate_auth_certificate,
    validate_sign_certificate,
)
from trust.errors import CertificateInvalid
from trust.keys import generate_private_key, make_csr
from trust.ocsp import CertStatus, build_ocsp_request, build_ocsp_response


def names_cert(message: str, cert: x509.Certificate) -> bool:
    return fingerprint(cert)[:16] in message and "CN=" in message


def test_fingerprint_is_sha256_of_der(pki: Pki) -> None:
    der = pki.auth_cert.public_bytes(serialization.Encoding.DER)
    assert fingerprint(pki.auth_cert) == hashlib.sha256(der).hexdigest()


def test_good_certificates_yield_their_identities(pki: Pki) -> None:
    assert validate_sign_certificate(pki.sign_cert, pki.trust, NOW) == MEMBER
    assert validate_auth_certificate(pki.auth_cert, pki.trust, NOW) == SERVER


def test_expired_certificate(pki: Pki) -> None:
    later = pki.sign_cert.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(CertificateInvalid, match="expired at") as info:
        validate_sign_certificate(pki.sign_cert, pki.trust, later)
    assert names_cert(str(info.value), pki.sign_cert)


def test_not_yet_valid_certificate(pki: Pki) -> None:
    earlier = pki.auth_cert.not_valid_before_utc - dt.timedelta(seconds=1)
    with pytest.raises(CertificateInvalid, match="not yet valid") as info:
        validate_auth_certificate(pki.auth_cert, pki.trust, earlier)
    assert names_cert(str(info.value), pki.auth_cert)


def test_unknown_issuer(pki: Pki) -> None:
    stranger = pki.foreign_ca.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    with pytest.raises(CertificateInvalid, match="unknown issuer 'CN=Elsewhere Root CA'"):
        validate_sign_certificate(stranger, pki.trust, NOW)


def test_impostor_ca_with_the_same_name(pki: Pki) -> None:
    forged = pki.impostor_ca.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    with pytest.raises(CertificateInvalid, match="does not chain to an approved CA") as info:
        validate_sign_certificate(forged, pki.trust, NOW)
    assert names_cert(str(info.value), forged)


def test_flipped_byte_in_the_ca_signature(pki: Pki) -> None:
    der = bytearray(pki.sign_cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    tampered = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(CertificateInvalid, match="does not chain"):
        validate_sign_certificate(tampered, pki.trust, NOW)


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
        validate_sign_certificate(leaf, CertificateTrust((short_ca.certificate,)), NOW)


def test_sign_certificate_cannot_authenticate_tls(pki: Pki) -> None:
    with pytest.raises(
        CertificateInvalid, match="is not an auth certificate: extendedKeyUsage lacks"
    ) as info:
        validate_auth_certificate(pki.sign_cert, pki.trust, NOW)
    assert names_cert(str(info.value), pki.sign_cert)


def test_auth_certificate_cannot_sign_messages(pki: Pki) -> None:
    with pytest.raises(
        CertificateInvalid, match="is not a sign certificate: keyUsage lacks contentCommitment"
    ):
        validate_sign_certificate(pki.auth_cert, pki.trust, NOW)


def test_misissued_sign_certificate_with_tls_purposes_is_refused(pki: Pki) -> None:
    both = forge_certificate(
        pki.ca,
        pki.member_key.public_key(),
        uris=("xweg:MEMBER:NRW/MUN/05774032",),
        usage=key_usage(content_commitment=True),
        eku=(SERVER_AUTH, CLIENT_AUTH),
    )
    with pytest.raises(CertificateInvalid, match="carries an extendedKeyUsage"):
        validate_sign_certificate(both, pki.trust, NOW)


def test_auth_certificate_with_only_client_auth_is_refused(pki: Pki) -> None:
    client_only = forge_certificate(
        pki.ca, pki.server_key.public_key(), uris=("xweg:SERVER:NRW/MUN/05774032/ss1",), eku=(CLIENT_AUTH,)
    )
    with pytest.raises(CertificateInvalid, match="lacks serverAuth"):
        validate_auth_certificate(client_only, pki.trust, NOW)


def test_sign_certificate_naming_a_server_is_refused(pki: Pki) -> None:
    wrong_uri = forge_certificate(
        pki.ca, pki.member_key.public_key(), uris=("xweg:SERVER:NRW/MUN/05774032/ss1",)
    )
    with pytest.raises(CertificateInvalid, match="expected exactly one subjectAltName URI xweg:MEMBER:"):
        validate_sign_certificate(wrong_uri, pki.trust, NOW)


def test_a_ca_certificate_is_not_an_end_entity(pki: Pki) -> None:
    with pytest.raises(CertificateInvalid) as info:
        validate_sign_certificate(pki.ca.certificate, pki.trust, NOW)
    assert names_cert(str(info.value), pki.ca.certificate)


def test_no_roots_means_nothing_validates(pki: Pki) -> None:
    with pytest.raises(CertificateInvalid, match="no approved certificate authorities"):
        validate_sign_certificate(pki.sign_cert, CertificateTrust(()), NOW)


def test_naive_now_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="UTC"):
        validate_sign_certificate(pki.sign_cert, pki.trust, NOW.replace(tzinfo=None))


def test_cached_success_does_not_outlive_the_certificate(pki: Pki) -> None:
    cert = pki.ca.issue_sign_certificate(
        make_csr(pki.member_key, "x"), MEMBER, now=NOW, validity=dt.timedelta(hours=1)
    )
    assert validate_sign_certificate(cert, pki.trust, NOW) == MEMBER
    assert validate_sign_certificate(cert, pki.trust, NOW + dt.timedelta(minutes=59)) == MEMBER
    with pytest.raises(CertificateInvalid, match="expired"):
        validate_sign_certificate(cert, pki.trust, NOW + dt.timedelta(hours=1, seconds=1))
    with pytest.raises(CertificateInvalid, match="not yet valid"):
        validate_sign_certificate(cert, pki.trust, NOW - dt.timedelta(hours=1))


def test_cached_success_is_per_set_of_roots_and_profile(pki: Pki) -> None:
    assert validate_sign_certificate(pki.sign_cert, pki.trust, NOW) == MEMBER
    with pytest.raises(CertificateInvalid, match="unknown issuer"):
        validate_sign_certificate(pki.sign_cert, CertificateTrust((pki.foreign_ca.certificate,)), NOW)
    with pytest.raises(CertificateInvalid, match="not an auth certificate"):
        validate_auth_certificate(pki.sign_cert, pki.trust, NOW)


def test_several_roots_pick_the_issuer(pki: Pki) -> None:
    roots = (pki.foreign_ca.certificate, pki.impostor_ca.certificate, pki.ca.certificate)
    assert validate_auth_certificate(pki.auth_cert, CertificateTrust(roots), NOW) == SERVER


# -- the issuing CA between root and end entity -------------------------------------


def test_chain_through_the_issuing_ca(pki: Pki) -> None:
    assert validate_sign_certificate(pki.chain_sign_cert, pki.chain_trust, NOW) == MEMBER
    assert validate_auth_certificate(pki.chain_auth_cert, pki.chain_trust, NOW) == SERVER


def test_issuing_ca_missing_from_the_trust(pki: Pki) -> None:
    with pytest.raises(CertificateInvalid, match="unknown issuer 'CN=xweg NRW Issuing CA'") as info:
        validate_sign_certificate(pki.chain_sign_cert, pki.trust, NOW)
    assert names_cert(str(info.value), pki.chain_sign_cert)


def test_issuing_ca_is_not_a_trust_anchor(pki: Pki) -> None:
    # Listed as an intermediate but without its root, it vouches for nothing.
    trust = CertificateTrust(roots=(pki.foreign_ca.certificate,), intermediates=(pki.issuing.certificate,))
    with pytest.raises(CertificateInvalid, match="which is not an approved root") as info:
        validate_sign_certificate(pki.chain_sign_cert, trust, NOW)
    assert names_cert(str(info.value), pki.chain_sign_cert)


def test_impostor_issuing_ca_with_the_same_name(pki: Pki) -> None:
    impostor = CertificateAuthority.create_intermediate(
        pki.impostor_ca, "xweg NRW Issuing CA", generate_private_key(), now=NOW - dt.timedelta(days=1)
    )
    forged = impostor.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    # The impostor's issuing CA is offered as an intermediate, next to the real one.
    trust = CertificateTrust(
        roots=(pki.ca.certificate,), intermediates=(pki.issuing.certificate, impostor.certificate)
    )
    with pytest.raises(CertificateInvalid, match="does not chain to an approved CA") as info:
        validate_sign_certificate(forged, trust, NOW)
    assert names_cert(str(info.value), forged)


def test_expired_issuing_ca(pki: Pki) -> None:
    start = NOW - dt.timedelta(days=10)
    short = CertificateAuthority.create_intermediate(
        pki.ca, "Short Issuing CA", generate_private_key(), now=start, validity=dt.timedelta(days=5)
    )
    leaf = forge_certificate(
        short,
        pki.member_key.public_key(),
        uris=("xweg:MEMBER:NRW/MUN/05774032",),
        not_before=start,
        not_after=NOW + dt.timedelta(days=10),
    )
    trust = CertificateTrust(roots=(pki.ca.certificate,), intermediates=(short.certificate,))
    with pytest.raises(CertificateInvalid, match="issuing CA of .* expired at"):
        validate_sign_certificate(leaf, trust, NOW)


def test_trust_validates_its_contents(pki: Pki) -> None:
    with pytest.raises(TypeError, match="x509.Certificate"):
        CertificateTrust(roots=(b"not a certificate",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="OcspPolicy"):
        CertificateTrust(roots=(pki.ca.certificate,), ocsp="yes")  # type: ignore[arg-type]
    trust = CertificateTrust(roots=[pki.ca.certificate])  # type: ignore[arg-type]
    assert trust.roots == (pki.ca.certificate,)
    with pytest.raises(TypeError, match="CertificateTrust"):
        validate_sign_certificate(pki.sign_cert, pki.roots, NOW)  # type: ignore[arg-type]


# -- revocation, when the trust has an OCSP policy -------------------------------------


def ocsp_for(pki: Pki, cert: x509.Certificate, status: CertStatus, at: dt.datetime = NOW) -> bytes:
    return build_ocsp_response(
        build_ocsp_request(cert, pki.issuing.certificate),
        lookup=lambda serial: status,
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=at,
    )


def test_ocsp_required_when_the_trust_has_a_policy(pki: Pki) -> None:
    with pytest.raises(CertificateInvalid, match="has no OCSP response") as info:
        validate_auth_certificate(pki.chain_auth_cert, pki.ocsp_trust(), NOW)
    assert names_cert(str(info.value), pki.chain_auth_cert)


def test_good_ocsp_response_is_accepted(pki: Pki) -> None:
    good = ocsp_for(pki, pki.chain_auth_cert, CertStatus("good"))
    assert validate_auth_certificate(pki.chain_auth_cert, pki.ocsp_trust(), NOW, ocsp_response=good) == SERVER


def test_revoked_auth_certificate_is_refused_even_after_a_cached_success(pki: Pki) -> None:
    cert = pki.issuing.issue_auth_certificate(make_csr(pki.server_key, "s"), SERVER, now=NOW)
    trust = pki.ocsp_trust()
    good = ocsp_for(pki, cert, CertStatus("good"))
    assert validate_auth_certificate(cert, trust, NOW, ocsp_response=good) == SERVER  # chain now cached
    revoked = ocsp_for(
        pki,
        cert,
        CertStatus("revoked", revoked_at=NOW, reason=x509.ReasonFlags.key_compromise),
        NOW + dt.timedelta(seconds=1),
    )
    later = NOW + dt.timedelta(seconds=2)
    with pytest.raises(CertificateInvalid, match=r"was revoked at .* \(reason keyCompromise\)") as info:
        validate_auth_certificate(cert, trust, later, ocsp_response=revoked)
    assert names_cert(str(info.value), cert)
    with pytest.raises(CertificateInvalid, match="has no OCSP response"):
        validate_auth_certificate(cert, trust, later)


def test_ocsp_response_for_another_certificate_is_refused(pki: Pki) -> None:
    other = ocsp_for(pki, pki.chain_sign_cert, CertStatus("good"))
    with pytest.raises(CertificateInvalid, match="is not for"):
        validate_auth_certificate(pki.chain_auth_cert, pki.ocsp_trust(), NOW, ocsp_response=other)


def test_no_policy_means_no_revocation_check(pki: Pki) -> None:
    revoked = ocsp_for(pki, pki.chain_sign_cert, CertStatus("revoked", revoked_at=NOW))
    # Offline audits of old data: the response is not looked at.
    assert (
        validate_sign_certificate(pki.chain_sign_cert, pki.chain_trust, NOW, ocsp_response=revoked) == MEMBER
    )
