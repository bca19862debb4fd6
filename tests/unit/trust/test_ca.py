"""The CA issues exactly the documented profiles, and only from CSRs that verify."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.identifiers import MemberId, SecurityServerId
from tests.unit.trust.helpers import MEMBER, NOW, SERVER, Pki, forge_certificate
from trust.ca import (
    BACKDATE,
    CertificateAuthority,
    member_id_from_sign_certificate,
    server_id_from_auth_certificate,
)
from trust.certificates import CertificateTrust, validate_sign_certificate
from trust.errors import CertificateInvalid
from trust.keys import generate_private_key, make_csr
from trust.profiles import check_ocsp_responder_profile, check_tsa_profile

E = TypeVar("E", bound=x509.ExtensionType)


def ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def test_root_is_a_constrained_self_signed_ca(pki: Pki) -> None:
    root = pki.ca.certificate
    assert root.subject == root.issuer
    constraints = ext(root, x509.BasicConstraints)
    # Path length 1: the root signs issuing CAs, which sign end entities only.
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 1
    usage = ext(root, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ext(root, x509.SubjectKeyIdentifier).value.digest
    root.verify_directly_issued_by(root)


def test_auth_certificate_profile(pki: Pki) -> None:
    cert = pki.ca.issue_auth_certificate(
        make_csr(pki.server_key, "whatever the requester wants"),
        SERVER,
        now=NOW,
        dns_names=("ss1.paderborn.example",),
        ip_addresses=("10.0.0.5", "::1"),
    )
    cert.verify_directly_issued_by(pki.ca.certificate)
    assert cert.subject.rfc4514_string() == "CN=NRW/MUN/05774032/ss1"
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_agreement
    assert not usage.value.content_commitment
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ss1.paderborn.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["xweg:SERVER:NRW/MUN/05774032/ss1"]
    assert ext(cert, x509.BasicConstraints).value.ca is False
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(pki.ca.certificate, x509.SubjectKeyIdentifier).value.digest
    assert cert.not_valid_before_utc == NOW - BACKDATE
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert server_id_from_auth_certificate(cert) == SERVER


def test_sign_certificate_profile(pki: Pki) -> None:
    cert = pki.ca.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    assert cert.subject.rfc4514_string() == "CN=NRW/MUN/05774032"
    usage = ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_agreement
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.ExtendedKeyUsage)
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["xweg:MEMBER:NRW/MUN/05774032"]
    assert member_id_from_sign_certificate(cert) == MEMBER


def test_serials_are_random(pki: Pki) -> None:
    csr = make_csr(pki.member_key, "x")
    serials = {pki.ca.issue_sign_certificate(csr, MEMBER, now=NOW).serial_number for _ in range(3)}
    assert len(serials) == 3


def test_csr_with_a_broken_signature_is_refused(pki: Pki) -> None:
    der = bytearray(make_csr(pki.server_key, "x").public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature value
    csr = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(CertificateInvalid, match="invalid signature"):
        pki.ca.issue_auth_certificate(csr, SERVER, now=NOW)
    with pytest.raises(CertificateInvalid, match="invalid signature"):
        pki.ca.issue_sign_certificate(csr, MEMBER, now=NOW)


def test_csr_with_another_curve_is_refused(pki: Pki) -> None:
    csr = make_csr(ec.generate_private_key(ec.SECP384R1()), "x")
    with pytest.raises(CertificateInvalid, match="P-256"):
        pki.ca.issue_sign_certificate(csr, MEMBER, now=NOW)


def test_certificates_never_outlive_the_ca(pki: Pki) -> None:
    cert = pki.ca.issue_sign_certificate(
        make_csr(pki.member_key, "x"), MEMBER, now=NOW, validity=dt.timedelta(days=20000)
    )
    assert cert.not_valid_after_utc == pki.ca.certificate.not_valid_after_utc


def test_naive_time_and_bad_arguments_are_refused(pki: Pki) -> None:
    csr = make_csr(pki.member_key, "x")
    with pytest.raises(ValueError, match="UTC"):
        pki.ca.issue_sign_certificate(csr, MEMBER, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="UTC"):
        CertificateAuthority.create_root("r", generate_private_key(), now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="positive"):
        pki.ca.issue_sign_certificate(csr, MEMBER, now=NOW, validity=dt.timedelta(0))
    with pytest.raises(TypeError):
        pki.ca.issue_auth_certificate(csr, MEMBER, now=NOW)  # type: ignore[arg-type]


def test_ca_refuses_a_key_that_is_not_its_own(pki: Pki) -> None:
    with pytest.raises(ValueError, match="does not match"):
        CertificateAuthority(pki.ca.certificate, generate_private_key())


def test_ca_refuses_an_end_entity_certificate(pki: Pki) -> None:
    with pytest.raises(ValueError, match="not a CA"):
        CertificateAuthority(pki.sign_cert, pki.member_key)


@pytest.mark.parametrize(
    ("uris", "match"),
    [
        ((), "expected exactly one"),
        (("xweg:MEMBER:NRW/MUN/05774032",), "is not an? auth certificate"),
        (("xweg:SERVER:NRW/MUN/05774032/ss1", "xweg:SERVER:NRW/MUN/05774032/ss2"), "exactly one"),
        (("xweg:SERVER:NRW/MUN/05774032",), "malformed security server"),
        (("xweg:SERVER:NRW/MUN/05774032/s s1",), "malformed security server"),
    ],
)
def test_server_identity_must_be_one_well_formed_uri(pki: Pki, uris: tuple[str, ...], match: str) -> None:
    cert = forge_certificate(pki.ca, pki.server_key.public_key(), uris=uris)
    with pytest.raises(CertificateInvalid, match=match):
        server_id_from_auth_certificate(cert)


def test_member_identity_must_be_present(pki: Pki) -> None:
    without_san = forge_certificate(pki.ca, pki.member_key.public_key(), san=False)
    with pytest.raises(CertificateInvalid, match="no subjectAltName"):
        member_id_from_sign_certificate(without_san)
    server_uri = forge_certificate(
        pki.ca, pki.member_key.public_key(), uris=("xweg:SERVER:NRW/MUN/05774032/ss1",)
    )
    with pytest.raises(CertificateInvalid, match="not a sign certificate"):
        member_id_from_sign_certificate(server_uri)
    malformed = forge_certificate(pki.ca, pki.member_key.public_key(), uris=("xweg:MEMBER:NRW/MUN",))
    with pytest.raises(CertificateInvalid, match="malformed member"):
        member_id_from_sign_certificate(malformed)


def test_identity_readers_return_typed_ids(pki: Pki) -> None:
    assert isinstance(server_id_from_auth_certificate(pki.auth_cert), SecurityServerId)
    assert isinstance(member_id_from_sign_certificate(pki.sign_cert), MemberId)
    assert pki.auth_cert.signature_hash_algorithm is not None
    assert isinstance(pki.auth_cert.signature_hash_algorithm, hashes.SHA256)


def test_issuing_ca_is_signed_by_the_root_and_constrained(pki: Pki) -> None:
    issuing = pki.issuing.certificate
    issuing.verify_directly_issued_by(pki.ca.certificate)
    assert issuing.subject.rfc4514_string() == "CN=xweg NRW Issuing CA"
    constraints = ext(issuing, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext(issuing, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    aki = ext(issuing, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(pki.ca.certificate, x509.SubjectKeyIdentifier).value.digest
    assert issuing.not_valid_after_utc <= pki.ca.certificate.not_valid_after_utc


def test_a_root_with_path_length_0_cannot_sign_an_issuing_ca() -> None:
    root = CertificateAuthority.create_root("r", generate_private_key(), now=NOW, path_length=0)
    with pytest.raises(ValueError, match="path length 0 and cannot sign an issuing CA"):
        CertificateAuthority.create_intermediate(root, "i", generate_private_key(), now=NOW)


def test_an_issuing_ca_cannot_sign_another_ca(pki: Pki) -> None:
    with pytest.raises(ValueError, match="path length 0"):
        CertificateAuthority.create_intermediate(pki.issuing, "sub", generate_private_key(), now=NOW)
    # Its path length is 0: a CA it signs anyway (a compromised key, say) does not chain.
    sub_key = generate_private_key()
    sub_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "sub")]))
        .issuer_name(pki.issuing.certificate.subject)
        .public_key(sub_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(sub_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.issuing.key.public_key()), critical=False
        )
        .sign(pki.issuing.key, hashes.SHA256())
    )
    sub = CertificateAuthority(sub_cert, sub_key)
    leaf = sub.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    trust = CertificateTrust(
        roots=(pki.ca.certificate,), intermediates=(pki.issuing.certificate, sub.certificate)
    )
    with pytest.raises(CertificateInvalid, match="does not chain to an approved CA"):
        validate_sign_certificate(leaf, trust, NOW + dt.timedelta(minutes=1))


def test_ocsp_responder_profile(pki: Pki) -> None:
    cert = pki.responder_cert
    cert.verify_directly_issued_by(pki.issuing.certificate)
    assert cert.subject.rfc4514_string() == "CN=xweg NRW OCSP Responder"
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert isinstance(ext(cert, x509.OCSPNoCheck).value, x509.OCSPNoCheck)
    assert ext(cert, x509.BasicConstraints).value.ca is False
    usage = ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and not usage.content_commitment
    check_ocsp_responder_profile(cert)
    with pytest.raises(CertificateInvalid, match="not an OCSP responder certificate: extendedKeyUsage lacks"):
        check_ocsp_responder_profile(pki.chain_auth_cert)


def test_tsa_profile(pki: Pki) -> None:
    key = generate_private_key()
    cert = pki.issuing.issue_tsa_certificate(make_csr(key, "anything"), "xweg NRW TSA", now=NOW)
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert cert.subject.rfc4514_string() == "CN=xweg NRW TSA"
    assert check_tsa_profile(cert) == "xweg NRW TSA"
    with pytest.raises(CertificateInvalid, match="not a TSA certificate"):
        check_tsa_profile(pki.responder_cert)
    with pytest.raises(ValueError, match="TSA name"):
        pki.issuing.issue_tsa_certificate(make_csr(key, "x"), "", now=NOW)
