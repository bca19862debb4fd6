"""The federation's certificate authority: a self-signed root that issues auth and sign certificates.

The CA only ever sees certificate signing requests, never a subject's private key; it
checks the CSR's own signature and then decides every extension itself, so what a
requester puts in a CSR beyond its public key has no effect.

Two profiles are issued (see :mod:`trust.profiles`, which validation shares):

* **auth** (:meth:`CertificateAuthority.issue_auth_certificate`) — one per security
  server, for mutual TLS between security servers.  KeyUsage digitalSignature +
  keyAgreement, ExtendedKeyUsage serverAuth + clientAuth, SubjectAlternativeName with
  DNS names, IP addresses and ``xweg:SERVER:<instance>/<class>/<code>/<server>``;
  subject CN is the server's slash form.
* **sign** (:meth:`CertificateAuthority.issue_sign_certificate`) — one per member, for
  message signatures.  KeyUsage digitalSignature + contentCommitment, no
  ExtendedKeyUsage (so it cannot authenticate TLS), SubjectAlternativeName
  ``xweg:MEMBER:<instance>/<class>/<code>``; subject CN is the member's slash form.

Both are end-entity certificates (BasicConstraints ca=False) with an
AuthorityKeyIdentifier, a SubjectKeyIdentifier and a random serial.  Revocation (OCSP)
is left to :mod:`trust.ocsp`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.clock import require_utc
from core.identifiers import MemberId, SecurityServerId
from trust.errors import CertificateInvalid
from trust.profiles import (
    describe,
    member_id_from_sign_certificate,
    member_uri,
    server_id_from_auth_certificate,
    server_uri,
)

__all__ = [
    "CertificateAuthority",
    "server_id_from_auth_certificate",
    "member_id_from_sign_certificate",
    "BACKDATE",
]

#: Certificates start this long before ``now``, so a peer whose clock runs a little
#: behind the CA's does not see a fresh certificate as not yet valid.
BACKDATE = timedelta(minutes=5)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _check_p256(public_key: object, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise CertificateInvalid(f"{what} must carry an EC P-256 public key (ES256)")
    return public_key


class CertificateAuthority:
    """A root CA: its certificate and its private key."""

    __slots__ = ("certificate", "key")

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        if certificate.public_key() != key.public_key():
            raise ValueError(f"the CA key does not match {describe(certificate)}")
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            raise ValueError(f"{describe(certificate)} has no basicConstraints, so it is no CA") from None
        if not constraints.ca:
            raise ValueError(f"{describe(certificate)} is not a CA certificate")
        self.certificate = certificate
        self.key = key

    @classmethod
    def create_root(
        cls,
        common_name: str,
        key: ec.EllipticCurvePrivateKey,
        *,
        now: datetime,
        validity: timedelta = timedelta(days=3650),
    ) -> CertificateAuthority:
        """A self-signed root that may sign end-entity certificates only (path length 0)."""
        require_utc(now, "now")
        if validity <= timedelta(0):
            raise ValueError("validity must be positive")
        name = _name(common_name)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def _builder(
        self, csr: x509.CertificateSigningRequest, common_name: str, now: datetime, validity: timedelta
    ) -> tuple[x509.CertificateBuilder, ec.EllipticCurvePublicKey]:
        require_utc(now, "now")
        if validity <= timedelta(0):
            raise ValueError("validity must be positive")
        if not csr.is_signature_valid:
            raise CertificateInvalid(
                f"the certificate signing request for {common_name!r} has an invalid signature"
            )
        public = _check_p256(csr.public_key(), f"the certificate signing request for {common_name!r}")
        # A certificate must not outlive the CA that vouches for it.
        not_after = min(now + validity, self.certificate.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        return builder, public

    def issue_auth_certificate(
        self,
        csr: x509.CertificateSigningRequest,
        server_id: SecurityServerId,
        *,
        now: datetime,
        dns_names: Iterable[str] = ("localhost",),
        ip_addresses: Iterable[str] = ("127.0.0.1",),
        validity: timedelta = timedelta(days=365),
    ) -> x509.Certificate:
        """An auth certificate (mutual TLS between security servers) for ``server_id``."""
        if not isinstance(server_id, SecurityServerId):
            raise TypeError("server_id must be a SecurityServerId")
        builder, _ = self._builder(csr, server_id.slash(), now, validity)
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        names.append(x509.UniformResourceIdentifier(server_uri(server_id)))
        builder = (
            builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
        )
        return builder.sign(self.key, hashes.SHA256())

    def issue_sign_certificate(
        self,
        csr: x509.CertificateSigningRequest,
        member_id: MemberId,
        *,
        now: datetime,
        validity: timedelta = timedelta(days=365),
    ) -> x509.Certificate:
        """A sign certificate (message signatures) for ``member_id``."""
        if not isinstance(member_id, MemberId):
            raise TypeError("member_id must be a MemberId")
        builder, _ = self._builder(csr, member_id.slash(), now, validity)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(member_uri(member_id))]),
            critical=False,
        )
        return builder.sign(self.key, hashes.SHA256())
