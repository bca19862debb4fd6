"""Message signatures: a detached compact JWS (ES256) over a message digest.

The signed payload is the digest itself (:func:`core.canonical.request_digest` or
``response_digest``), carried unencoded and detached as RFC 7797 describes
(``b64: false``, listed in ``crit``), so the token is ``<header>..<signature>`` and the
receiver recomputes the digest from the message it holds.  The protected header
carries the signer's sign certificate in ``x5c``; the certificate is validated against
a :class:`~trust.certificates.CertificateTrust` at the time of verification.  The
signer's OCSP response travels next to the signature (not inside it, so that a
security server can refresh it without signing again) and is required whenever the
trust has an OCSP policy.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass
from datetime import datetime

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import require_utc
from core.identifiers import MemberId
from trust._encoding import b64url_decode, loads_object
from trust.certificates import CertificateTrust, validate_sign_certificate
from trust.errors import SignatureInvalid
from trust.profiles import describe

__all__ = [
    "SIGNATURE_TYPE",
    "MAX_SIGNATURE_LENGTH",
    "VerifiedSignature",
    "check_signed_by",
    "sign_digest",
    "signer_certificate",
    "verify_signature",
]

#: The ``typ`` of a message signature, so a global configuration (or any other JWS
#: signed by a key that chains to the same CA) is never mistaken for one.
SIGNATURE_TYPE = "xweg-msg-sig+jws"
#: Bound on a signature token: a header with one certificate is about 1.5 KiB.
MAX_SIGNATURE_LENGTH = 16 * 1024
_ALGORITHM = "ES256"
_HEADER_KEYS = frozenset({"alg", "typ", "b64", "crit", "x5c"})
_DIGEST_LENGTHS = range(32, 65)

_jws = jwt.PyJWS(options={"verify_signature": True})


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """A signature that verified: the signer's certificate and the member it vouches for."""

    certificate: x509.Certificate
    member: MemberId

    def __post_init__(self) -> None:
        if not isinstance(self.certificate, x509.Certificate):
            raise TypeError("certificate must be an x509.Certificate")
        if not isinstance(self.member, MemberId):
            raise TypeError("member must be a MemberId")


def _check_digest(digest: bytes) -> None:
    if not isinstance(digest, bytes) or len(digest) not in _DIGEST_LENGTHS:
        raise ValueError("digest must be 32 to 64 bytes (a SHA-256 to SHA-512 hash)")


def sign_digest(
    digest: bytes,
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    *,
    signature_type: str = SIGNATURE_TYPE,
) -> str:
    """A detached compact JWS ``<header>..<signature>`` over ``digest``, naming ``certificate``.

    ``signature_type`` (the ``typ``) says what is signed, so that a signature made for one
    purpose (a message, a registration request) is never accepted for another.
    """
    _check_digest(digest)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("message signatures need an EC P-256 key")
    if certificate.public_key() != key.public_key():
        raise ValueError(f"the signing key does not match {describe(certificate)}")
    headers = {"typ": signature_type, "x5c": [_x5c_entry(certificate)]}
    return _jws.encode(digest, key, algorithm=_ALGORITHM, headers=headers, is_payload_detached=True)


@functools.lru_cache(maxsize=256)
def _x5c_entry(certificate: x509.Certificate) -> str:
    """A certificate as ``x5c`` holds it (standard base64 DER); the same for every message it signs."""
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _parse_header(token: str, signature_type: str = SIGNATURE_TYPE) -> x509.Certificate:
    """Steps (1)-(3): shape, protected header, signer certificate; nothing trusted yet."""
    # (1) shape: a bounded compact JWS with an empty (detached) payload segment
    if not isinstance(token, str):
        raise SignatureInvalid("signature must be a string")
    if len(token) > MAX_SIGNATURE_LENGTH:
        raise SignatureInvalid(f"signature is longer than {MAX_SIGNATURE_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureInvalid("signature is not a compact JWS (three dot-separated parts)")
    if parts[1]:
        raise SignatureInvalid("signature must have a detached (empty) payload")
    return _signer_of_header(parts[0], signature_type)


# A signer's messages all carry the same protected header (its certificate in x5c):
# decoding and parsing it again for each is wasted work.  Only headers that passed are
# remembered (lru_cache does not keep exceptions), keyed by the exact header text.
@functools.lru_cache(maxsize=1024)
def _signer_of_header(segment: str, signature_type: str) -> x509.Certificate:
    """Steps (2)-(3) for the protected header ``segment``: its parameters and its certificate."""
    # (2) protected header: exactly our parameters, ES256 only
    try:
        header = loads_object(b64url_decode(segment, "signature header"), "signature header")
    except ValueError as exc:
        raise SignatureInvalid(str(exc)) from exc
    if header.get("alg") != _ALGORITHM:
        raise SignatureInvalid(
            f"signature algorithm {header.get('alg')!r} is refused; only ES256 is accepted"
        )
    unexpected = set(header) - _HEADER_KEYS
    if unexpected:
        raise SignatureInvalid(f"signature header has unexpected parameters {sorted(unexpected)}")
    if header.get("typ") != signature_type:
        raise SignatureInvalid(f"signature type {header.get('typ')!r} is not {signature_type!r}")
    if header.get("b64") is not False or header.get("crit") != ["b64"]:
        raise SignatureInvalid('signature must be detached and unencoded (b64 false, crit ["b64"])')
    # (3) the signer's certificate: exactly one, standard base64 DER (RFC 7515 4.1.6)
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or len(x5c) != 1 or not isinstance(x5c[0], str):
        raise SignatureInvalid("signature header must carry exactly one certificate in x5c")
    try:
        der = base64.b64decode(x5c[0], validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid(f"signature header's x5c certificate is malformed: {exc}") from exc


def signer_certificate(token: str, *, signature_type: str = SIGNATURE_TYPE) -> x509.Certificate:
    """The certificate a detached signature names in ``x5c``, after checking its shape and header.

    Nothing is trusted yet: the caller validates the certificate for its purpose and
    then checks the signature with :func:`check_signed_by`.
    """
    return _parse_header(token, signature_type)


def check_signed_by(
    token: str, digest: bytes, certificate: x509.Certificate, *, what: str = "the message digest"
) -> None:
    """Raise :class:`~trust.errors.SignatureInvalid` unless ``token`` signs ``digest`` by ``certificate``."""
    _check_digest(digest)
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
        raise SignatureInvalid(
            f"{describe(certificate)} does not hold an EC P-256 key, so it cannot sign ES256"
        )
    try:
        _jws.decode_complete(token, public, algorithms=[_ALGORITHM], detached_payload=digest)
    except jwt.InvalidSignatureError as exc:
        raise SignatureInvalid(f"signature by {describe(certificate)} does not match {what}") from exc
    except jwt.PyJWTError as exc:
        raise SignatureInvalid(f"signature by {describe(certificate)} is malformed: {exc}") from exc


def verify_signature(
    jws: str,
    digest: bytes,
    trust: CertificateTrust,
    now: datetime,
    *,
    ocsp_response: bytes | None = None,
) -> VerifiedSignature:
    """Verify a detached message signature over ``digest`` at ``now``.

    ``ocsp_response`` is the signer's certificate's OCSP response (DER), required when
    ``trust.ocsp`` is set.  Raises :class:`~trust.errors.SignatureInvalid` for a malformed
    or wrong signature and :class:`~trust.errors.CertificateInvalid` when the signer's
    certificate is refused (chain, validity, profile or revocation).
    """
    require_utc(now, "now")
    _check_digest(digest)
    cert = signer_certificate(jws)
    # (4) the certificate is a sign certificate from an approved CA, valid and not revoked at now
    member = validate_sign_certificate(cert, trust, now, ocsp_response=ocsp_response)
    # (5) the signature over the digest verifies with the certificate's key
    check_signed_by(jws, digest, cert)
    return VerifiedSignature(certificate=cert, member=member)
