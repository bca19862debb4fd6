"""A small federation PKI built with real cryptography, plus tools to forge what an attacker would send."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.clock import utc
from core.identifiers import MemberId, SecurityServerId
from trust.ca import CertificateAuthority
from trust.certificates import CertificateTrust, OcspPolicy
from trust.keys import generate_private_key, make_csr

NOW = utc(2025, 3, 1, 12)
MEMBER = MemberId("NRW", "MUN", "05774032")
OTHER_MEMBER = MemberId("NRW", "MUN", "05711000")
SERVER = SecurityServerId(MEMBER, "ss1")


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    impostor_ca: CertificateAuthority  # same subject name as ``ca``, different key
    foreign_ca: CertificateAuthority  # another name entirely
    member_key: ec.EllipticCurvePrivateKey
    sign_cert: x509.Certificate
    other_member_key: ec.EllipticCurvePrivateKey
    other_sign_cert: x509.Certificate
    server_key: ec.EllipticCurvePrivateKey
    auth_cert: x509.Certificate
    # The two-level hierarchy: root ``ca`` -> ``issuing`` -> end entities and OCSP responders.
    issuing: CertificateAuthority
    chain_sign_cert: x509.Certificate  # MEMBER's, from the issuing CA
    chain_auth_cert: x509.Certificate  # SERVER's, from the issuing CA
    responder_key: ec.EllipticCurvePrivateKey
    responder_cert: x509.Certificate  # the authorised responder
    rogue_responder_key: ec.EllipticCurvePrivateKey
    rogue_responder_cert: x509.Certificate  # a valid responder certificate of the same CA, not authorised

    @property
    def roots(self) -> list[x509.Certificate]:
        return [self.ca.certificate]

    @property
    def trust(self) -> CertificateTrust:
        """Root only, no revocation checking."""
        return CertificateTrust(roots=(self.ca.certificate,))

    @property
    def chain_trust(self) -> CertificateTrust:
        """Root and issuing CA, no revocation checking."""
        return CertificateTrust(roots=(self.ca.certificate,), intermediates=(self.issuing.certificate,))

    def policy(self, **kwargs: float) -> OcspPolicy:
        return OcspPolicy(responders=(self.responder_cert,), **kwargs)

    def ocsp_trust(self, **kwargs: float) -> CertificateTrust:
        """Root and issuing CA, with OCSP required from the authorised responder."""
        return CertificateTrust(
            roots=(self.ca.certificate,),
            intermediates=(self.issuing.certificate,),
            ocsp=self.policy(**kwargs),
        )


@pytest.fixture(scope="session")
def pki() -> Pki:
    start = NOW - dt.timedelta(days=30)
    ca = CertificateAuthority.create_root("xweg NRW Root CA", generate_private_key(), now=start)
    impostor = CertificateAuthority.create_root("xweg NRW Root CA", generate_private_key(), now=start)
    foreign = CertificateAuthority.create_root("Elsewhere Root CA", generate_private_key(), now=start)
    member_key, other_key, server_key = generate_private_key(), generate_private_key(), generate_private_key()
    issuing = CertificateAuthority.create_intermediate(
        ca, "xweg NRW Issuing CA", generate_private_key(), now=start
    )
    responder_key, rogue_key = generate_private_key(), generate_private_key()
    return Pki(
        issuing=issuing,
        chain_sign_cert=issuing.issue_sign_certificate(make_csr(member_key, "m"), MEMBER, now=start),
        chain_auth_cert=issuing.issue_auth_certificate(make_csr(server_key, "s"), SERVER, now=start),
        responder_key=responder_key,
        responder_cert=issuing.issue_ocsp_responder_certificate(
            responder_key.public_key(), "xweg NRW OCSP Responder", now=start
        ),
        rogue_responder_key=rogue_key,
        rogue_responder_cert=issuing.issue_ocsp_responder_certificate(
            make_csr(rogue_key, "r"), "xweg NRW OCSP Responder 2", now=start
        ),
        ca=ca,
        impostor_ca=impostor,
        foreign_ca=foreign,
        member_key=member_key,
        sign_cert=ca.issue_sign_certificate(make_csr(member_key, "m"), MEMBER, now=start),
        other_member_key=other_key,
        other_sign_cert=ca.issue_sign_certificate(make_csr(other_key, "o"), OTHER_MEMBER, now=start),
        server_key=server_key,
        auth_cert=ca.issue_auth_certificate(make_csr(server_key, "s"), SERVER, now=start),
    )


def key_usage(*, digital_signature: bool = True, content_commitment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def forge_certificate(
    issuer: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    *,
    common_name: str = "forged",
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=1),
    uris: Sequence[str] = (),
    usage: x509.KeyUsage | None = None,
    eku: Sequence[x509.ObjectIdentifier] = (),
    san: bool = True,
) -> x509.Certificate:
    """A certificate with whatever profile a careless or compromised issuance would give it."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
        .add_extension(usage or key_usage(content_commitment=True), critical=True)
    )
    if san:
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
