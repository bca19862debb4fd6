"""The federation's certificate authorities: a self-signed root, an issuing CA under it, and four profiles.

The CA only ever sees certificate signing requests, never a subject's private key; it
checks the CSR's own signature and then decides every extension itself, so what a
requester puts in a CSR beyond its public key has no effect.  (The one exception is
the CA's own delegated OCSP responder, whose key the CA operator makes next to the
CA keys, see :class:`trust.castore.CaStore`.)

The hierarchy is root (path length 1) -> issuing CA (path length 0) -> end entities;
the root stays offline in a real deployment and only signs issuing CAs.  End-entity
profiles (see :mod:`trust.profiles`, which validation shares):

* **auth** (:meth:`CertificateAuthority.issue_auth_certificate`) — one per security
  server, for mutual TLS between security servers.  KeyUsage digitalSignature +
  keyAgreement, ExtendedKeyUsage serverAuth + clientAuth, SubjectAlternativeName with
  DNS names, IP addresses and ``xweg:SERVER:<instance>/<class>/<code>/<server>``;
  subject CN is the server's slash form.
* **sign** (:meth:`CertificateAuthority.issue_sign_certificate`) — one per member, for
  message signatures.  KeyUsage digitalSignature + contentCommitment, no
  ExtendedKeyUsage (so it cannot authenticate TLS), SubjectAlternativeName
  ``xweg:MEMBER:<instance>/<class>/<code>``; subject CN is the member's slash form.
* **OCSP responder** (:meth:`CertificateAuthority.issue_ocsp_responder_certificate`) —
  the CA's delegated responder (RFC 6960 4.2.2.2): KeyUsage digitalSignature,
  ExtendedKeyUsage OCSPSigning only, and the id-pkix-ocsp-nocheck extension, so that
  nobody asks the responder about its own certificate.
* **TSA** (:meth:`CertificateAuthority.issue_tsa_certificate`) — a timestamping
  authority: KeyUsage digitalSignature + contentCommitment, ExtendedKeyUsage
  timeStamping only, marked critical as RFC 3161 2.3 requires; subject CN is its name.

All end-entity certificates have BasicConstraints ca=False, an AuthorityKeyIdentifier,
a SubjectKeyIdentifier and a random serial, and never outlive the CA that issued them.
Revocation status is served by :mod:`trust.ocsp`.
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
    "DEFAULT_ROOT_PATH_LENGTH",
    "server_id_from_auth_certificate",
    "member_id_from_sign_certificate",
    "BACKDATE",
]

#: Certificates start this long before ``now``, so a peer whose clock runs a little
#: behind the CA's does not see a fresh certificate as not yet valid.
BACKDATE = timedelta(minutes=5)
#: A root may sign one level of issuing CAs, which sign end entities only.
DEFAULT_ROOT_PATH_LENGTH = 1


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage(*, content_commitment: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _check_p256(public_key: object, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise CertificateInvalid(f"{what} must carry an EC P-256 public key (ES256)")
    return public_key


class CertificateAuthority:
    """A CA (the root or an issuing CA): its certificate and its private key."""

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
        path_length: int = DEFAULT_ROOT_PATH_LENGTH,
    ) -> CertificateAuthority:
        """A self-signed root; ``path_length`` 1 lets it sign an issuing CA (and end entities)."""
        require_utc(now, "now")
        if validity <= timedelta(0):
            raise ValueError("validity must be positive")
        if isinstance(path_length, bool) or not isinstance(path_length, int) or not 0 <= path_length <= 2:
            raise ValueError("path_length must be 0, 1 or 2")
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
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def create_intermediate(
        cls,
        root_ca: CertificateAuthority,
        common_name: str,
        key: ec.EllipticCurvePrivateKey,
        *,
        now: datetime,
        validity: timedelta = timedelta(days=1825),
    ) -> CertificateAuthority:
        """An issuing CA signed by ``root_ca`` that may sign end-entity certificates only (path length 0)."""
        require_utc(now, "now")
        if not isinstance(root_ca, CertificateAuthority):
            raise TypeError("root_ca must be a CertificateAuthority")
        if validity <= timedelta(0):
            raise ValueError("validity must be positive")
        root_constraints = root_ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if root_constraints.path_length is not None and root_constraints.path_length < 1:
            raise ValueError(
                f"{describe(root_ca.certificate)} has path length 0 and cannot sign an issuing CA"
            )
        public = _check_p256(key.public_key(), f"the key of issuing CA {common_name!r}")
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(root_ca.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + validity, root_ca.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_ca.key.public_key()), critical=False
            )
            .sign(root_ca.key, hashes.SHA256())
        )
        return cls(cert, key)

    def _builder(
        self, csr: x509.CertificateSigningRequest, common_name: str, now: datetime, validity: timedelta
    ) -> tuple[x509.CertificateBuilder, ec.EllipticCurvePublicKey]:
        require_utc(now, "now")
        if not isinstance(csr, x509.CertificateSigningRequest):
            raise TypeError("csr must be an x509.CertificateSigningRequest")
        if not csr.is_signature_valid:
            raise CertificateInvalid(
                f"the certificate signing request for {common_name!r} has an invalid signature"
            )
        public = _check_p256(csr.public_key(), f"the certificate signing request for {common_name!r}")
        return self._builder_for_key(public, common_name, now, validity), public

    def _builder_for_key(
        self, public: ec.EllipticCurvePublicKey, common_name: str, now: datetime, validity: timedelta
    ) -> x509.CertificateBuilder:
        require_utc(now, "now")
        if validity <= timedelta(0):
            raise ValueError("validity must be positive")
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
        return builder

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
            builder.add_extension(_leaf_key_usage(key_agreement=True), critical=True)
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
            _leaf_key_usage(content_commitment=True), critical=True
        ).add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(member_uri(member_id))]),
            critical=False,
        )
        return builder.sign(self.key, hashes.SHA256())

    def issue_ocsp_responder_certificate(
        self,
        subject: x509.CertificateSigningRequest | ec.EllipticCurvePublicKey,
        common_name: str,
        *,
        now: datetime,
        validity: timedelta = timedelta(days=365),
    ) -> x509.Certificate:
        """A delegated OCSP responder certificate for this CA (from a CSR or the responder's public key)."""
        if isinstance(subject, x509.CertificateSigningRequest):
            builder, _ = self._builder(subject, common_name, now, validity)
        else:
            public = _check_p256(subject, f"the OCSP responder key for {common_name!r}")
            builder = self._builder_for_key(public, common_name, now, validity)
        builder = (
            builder.add_extension(_leaf_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
            # RFC 6960 4.2.2.2.1: clients need not ask about the responder's own certificate.
            .add_extension(x509.OCSPNoCheck(), critical=False)
        )
        return builder.sign(self.key, hashes.SHA256())

    def issue_tsa_certificate(
        self,
        csr: x509.CertificateSigningRequest,
        name: str,
        *,
        now: datetime,
        validity: timedelta = timedelta(days=365),
    ) -> x509.Certificate:
        """A timestamping authority's certificate; its only purpose is timeStamping (critical, RFC 3161)."""
        if not isinstance(name, str) or not name or len(name) > 64:
            raise ValueError("a TSA name must be a non-empty string of at most 64 characters")
        builder, _ = self._builder(csr, name, now, validity)
        builder = builder.add_extension(
            _leaf_key_usage(content_commitment=True), critical=True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        return builder.sign(self.key, hashes.SHA256())
