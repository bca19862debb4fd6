"""The federation's certificate profiles, shared by the CA that issues and the code that validates.

* **auth** — one per security server, used for mutual TLS between security servers.
  KeyUsage digitalSignature + keyAgreement; ExtendedKeyUsage serverAuth + clientAuth;
  SubjectAlternativeName with the server's DNS names, IP addresses and the URI
  ``xweg:SERVER:<instance>/<class>/<code>/<server>``.
* **sign** — one per member, used for message signatures.  KeyUsage digitalSignature +
  contentCommitment (non-repudiation); no ExtendedKeyUsage, so it cannot serve TLS;
  SubjectAlternativeName URI ``xweg:MEMBER:<instance>/<class>/<code>``.

* **OCSP responder** — the CA's delegated responder: KeyUsage digitalSignature;
  ExtendedKeyUsage OCSPSigning.
* **TSA** — a timestamping authority: KeyUsage digitalSignature; ExtendedKeyUsage
  timeStamping and nothing else, marked critical (RFC 3161 2.3).

For auth and sign the SAN URI is the only place the identity is read from; the subject
CN is for humans (and names a TSA).
"""

from __future__ import annotations

import functools
import hashlib
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.identifiers import IdentifierError, MemberId, SecurityServerId
from trust.errors import CertificateInvalid

__all__ = [
    "SERVER_URI_PREFIX",
    "MEMBER_URI_PREFIX",
    "fingerprint",
    "describe",
    "server_uri",
    "member_uri",
    "server_id_from_auth_certificate",
    "member_id_from_sign_certificate",
    "check_auth_profile",
    "check_sign_profile",
    "check_ocsp_responder_profile",
    "check_tsa_profile",
]

_E = TypeVar("_E", bound=x509.ExtensionType)

SERVER_URI_PREFIX = "xweg:SERVER:"
MEMBER_URI_PREFIX = "xweg:MEMBER:"


@functools.lru_cache(maxsize=4096)
def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex.

    Remembered per certificate (a certificate is immutable, and equal certificates have
    equal DER): every message names the same few, several times on its way.
    """
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def describe(cert: x509.Certificate) -> str:
    """How error messages name a certificate: subject CN and a fingerprint prefix."""
    try:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(cns[0].value) if cns else "(no CN)"
    except ValueError:
        cn = "(unreadable subject)"
    return f"certificate CN={cn!r} sha256={fingerprint(cert)[:16]}"


def server_uri(server: SecurityServerId) -> str:
    return SERVER_URI_PREFIX + server.slash()


def member_uri(member: MemberId) -> str:
    return MEMBER_URI_PREFIX + member.slash()


def _article(profile: str) -> str:
    return "an" if profile[0].lower() in "aeiou" else "a"


def _xweg_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateInvalid(f"{describe(cert)} has no subjectAltName") from None
    except ValueError as exc:
        raise CertificateInvalid(f"{describe(cert)} has unreadable extensions: {exc}") from exc
    return [uri for uri in san.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith("xweg:")]


def _one_uri(cert: x509.Certificate, prefix: str, profile: str) -> str:
    uris = _xweg_uris(cert)
    matching = [uri for uri in uris if uri.startswith(prefix)]
    if len(matching) != 1 or len(uris) != 1:
        raise CertificateInvalid(
            f"{describe(cert)} is not {_article(profile)} {profile} certificate: expected exactly one "
            f"subjectAltName URI {prefix}..., found {uris or 'none'}"
        )
    return matching[0][len(prefix) :]


def server_id_from_auth_certificate(cert: x509.Certificate) -> SecurityServerId:
    """The security server an auth certificate names (its ``xweg:SERVER:`` SAN URI)."""
    text = _one_uri(cert, SERVER_URI_PREFIX, "auth")
    try:
        return SecurityServerId.parse_slash(text)
    except IdentifierError as exc:
        raise CertificateInvalid(f"{describe(cert)} names a malformed security server: {exc}") from exc


def member_id_from_sign_certificate(cert: x509.Certificate) -> MemberId:
    """The member a sign certificate names (its ``xweg:MEMBER:`` SAN URI)."""
    text = _one_uri(cert, MEMBER_URI_PREFIX, "sign")
    try:
        return MemberId.parse_slash(text)
    except IdentifierError as exc:
        raise CertificateInvalid(f"{describe(cert)} names a malformed member: {exc}") from exc


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise CertificateInvalid(f"{describe(cert)} has unreadable extensions: {exc}") from exc


def _check_end_entity(cert: x509.Certificate, profile: str) -> x509.KeyUsage:
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise CertificateInvalid(
            f"{describe(cert)} is a CA certificate, not {_article(profile)} {profile} certificate"
        )
    usage = _extension(cert, x509.KeyUsage)
    if usage is None:
        raise CertificateInvalid(
            f"{describe(cert)} has no keyUsage, so it is not {_article(profile)} {profile} certificate"
        )
    if not usage.digital_signature:
        raise CertificateInvalid(f"{describe(cert)} lacks keyUsage digitalSignature ({profile} profile)")
    return usage


def check_auth_profile(cert: x509.Certificate) -> SecurityServerId:
    """Raise :class:`CertificateInvalid` unless ``cert`` has the auth profile; return its server."""
    _check_end_entity(cert, "auth")
    eku = _extension(cert, x509.ExtendedKeyUsage)
    purposes = set(eku) if eku is not None else set()
    missing = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} - purposes
    if missing:
        names = ", ".join(sorted(oid._name for oid in missing))
        raise CertificateInvalid(
            f"{describe(cert)} is not an auth certificate: extendedKeyUsage lacks {names}"
        )
    return server_id_from_auth_certificate(cert)


def check_sign_profile(cert: x509.Certificate) -> MemberId:
    """Raise :class:`CertificateInvalid` unless ``cert`` has the sign profile; return its member."""
    usage = _check_end_entity(cert, "sign")
    if not usage.content_commitment:
        raise CertificateInvalid(
            f"{describe(cert)} is not a sign certificate: keyUsage lacks contentCommitment"
        )
    # A certificate good for TLS must not also sign messages: the profiles stay apart.
    if _extension(cert, x509.ExtendedKeyUsage) is not None:
        raise CertificateInvalid(
            f"{describe(cert)} is not a sign certificate: it carries an extendedKeyUsage (TLS profile)"
        )
    return member_id_from_sign_certificate(cert)


def check_ocsp_responder_profile(cert: x509.Certificate) -> None:
    """Raise :class:`CertificateInvalid` unless ``cert`` may sign OCSP responses (EKU OCSPSigning)."""
    _check_end_entity(cert, "OCSP responder")
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise CertificateInvalid(
            f"{describe(cert)} is not an OCSP responder certificate: extendedKeyUsage lacks OCSPSigning"
        )


def check_tsa_profile(cert: x509.Certificate) -> str:
    """Raise :class:`CertificateInvalid` unless ``cert`` has the TSA profile; return its name (CN)."""
    _check_end_entity(cert, "TSA")
    try:
        eku_ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise CertificateInvalid(f"{describe(cert)} is not a TSA certificate: no extendedKeyUsage") from None
    except ValueError as exc:
        raise CertificateInvalid(f"{describe(cert)} has unreadable extensions: {exc}") from exc
    if list(eku_ext.value) != [ExtendedKeyUsageOID.TIME_STAMPING] or not eku_ext.critical:
        raise CertificateInvalid(
            f"{describe(cert)} is not a TSA certificate: extendedKeyUsage must be timeStamping only, critical"
        )
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or not isinstance(cns[0].value, str) or not cns[0].value:
        raise CertificateInvalid(f"{describe(cert)} is not a TSA certificate: no subject CN names the TSA")
    return cns[0].value
