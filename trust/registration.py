"""Registration requests: how a security server asks the registry to admit it or a client.

These are X-Road's management requests ``authCertReg`` and ``clientReg`` in xweg's own
encoding.  A request is a small canonical JSON **payload** (what is asked, by which
server, when, with a random nonce) and detached ES256 signatures over its SHA-256
digest, typed :data:`REGISTRATION_SIGNATURE_TYPE` so that no message signature or
other JWS can stand in for one:

* **auth-cert** — register an auth certificate (and, for a new server, its address).
  Signed twice: by the new auth key itself (*proof of possession*: whoever submits it
  holds the private key) and by the owner member's sign key (*consent*: the member
  the certificate names agrees that this server acts for it).
* **client** — let a registered server host a subsystem.  Signed by the sign key of
  the subsystem's owner member, so that no server can claim someone else's subsystem,
  and by the server's auth key, so that no member can place its subsystem on a server
  that did not ask (the registry checks that this auth certificate is registered for
  the server).

Every certificate is validated at ``now`` against the approved CAs, with an OCSP
response that travels in the request (the submitter fetched it from the CA's
responder, as it does for messages).  A request is good for :data:`MAX_REQUEST_AGE`
after it was made; within that window the registry refuses the same payload twice
(its digest is the request's identity).  Everything here is pure: bytes and a time in,
a verified request or :class:`~trust.errors.RegistrationInvalid` out.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from core.clock import require_utc
from core.identifiers import IdentifierError, MemberId, SecurityServerId, SubsystemId
from trust._encoding import b64, format_time, loads_object, parse_time, require_keys, unb64_bounded
from trust.certificates import CertificateTrust, validate_auth_certificate, validate_sign_certificate
from trust.errors import CertificateInvalid, RegistrationInvalid, SignatureInvalid
from trust.profiles import describe, fingerprint
from trust.signatures import check_signed_by, sign_digest, signer_certificate

__all__ = [
    "check_age",
    "MAX_CLOCK_SKEW",
    "MAX_REQUEST_AGE",
    "MAX_REQUEST_BYTES",
    "REGISTRATION_SIGNATURE_TYPE",
    "RegistrationKind",
    "RegistrationRequest",
    "SignedRegistration",
    "VerifiedRegistration",
    "sign_auth_cert_registration",
    "sign_client_registration",
    "verify_registration",
]

#: The ``typ`` of a registration signature.
REGISTRATION_SIGNATURE_TYPE = "xweg-registration+jws"
#: Bound on an encoded signed request: two certificates, two signatures, two OCSP responses.
MAX_REQUEST_BYTES = 64 * 1024
#: A request older than this is refused, so a captured one cannot be replayed later.
MAX_REQUEST_AGE = timedelta(minutes=15)
#: How far in the future a request's time may lie (the submitter's clock runs ahead).
MAX_CLOCK_SKEW = timedelta(minutes=2)
_NONCE = re.compile(r"[0-9a-f]{32}")
_ADDRESS = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]{1,253}):(?P<port>\d{1,5})")
_MAX_OCSP_RESPONSES = 4
_MAX_OCSP_BYTES = 8 * 1024


class RegistrationKind(enum.StrEnum):
    """What a registration request asks for."""

    AUTH_CERT = "auth-cert"
    CLIENT = "client"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _malformed(message: str) -> RegistrationInvalid:
    return RegistrationInvalid("malformed", message)


def _unb64(text: object, what: str, limit: int) -> bytes:
    return unb64_bounded(text, what, limit, _malformed)


@dataclass(frozen=True)
class RegistrationRequest:
    """The payload: what is asked, for which server, when.

    ``address`` and ``auth_certificate`` belong to an auth-cert request, ``client`` to a
    client request; the constructor refuses any other combination.
    """

    kind: RegistrationKind
    server: SecurityServerId
    submitted_at: datetime
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    address: str | None = None
    auth_certificate: x509.Certificate | None = None
    client: SubsystemId | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RegistrationKind(self.kind))
        if not isinstance(self.server, SecurityServerId):
            raise ValueError("server must be a SecurityServerId")
        require_utc(self.submitted_at, "submitted_at")
        if not isinstance(self.nonce, str) or not _NONCE.fullmatch(self.nonce):
            raise ValueError("nonce must be 32 lower-case hex digits")
        if self.kind is RegistrationKind.AUTH_CERT:
            if self.client is not None:
                raise ValueError("an auth-cert request names no client")
            if not isinstance(self.auth_certificate, x509.Certificate):
                raise ValueError("an auth-cert request needs the auth certificate")
            match = _ADDRESS.fullmatch(self.address) if isinstance(self.address, str) else None
            if match is None or not 1 <= int(match["port"]) <= 65535:
                raise ValueError(f"address must be host:port, got {self.address!r}")
        else:
            if self.address is not None or self.auth_certificate is not None:
                raise ValueError("a client request carries no address or auth certificate")
            if not isinstance(self.client, SubsystemId):
                raise ValueError("a client request needs the client subsystem")
            if self.client.instance != self.server.owner.instance:
                raise ValueError(f"{self.client} is not of instance {self.server.owner.instance}")

    @property
    def owner(self) -> MemberId:
        """The member whose sign key must consent: the server's owner, or the client's."""
        if self.kind is RegistrationKind.CLIENT:
            assert self.client is not None  # checked in the constructor
            return self.client.member
        return self.server.owner

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": str(self.kind),
            "server": self.server.slash(),
            "submitted_at": format_time(self.submitted_at),
            "nonce": self.nonce,
        }
        if self.kind is RegistrationKind.AUTH_CERT:
            assert self.auth_certificate is not None
            data["address"] = self.address
            data["auth_certificate"] = b64(_der(self.auth_certificate))
        else:
            assert self.client is not None
            data["client"] = self.client.slash()
        return data

    def to_bytes(self) -> bytes:
        """The canonical payload: sorted keys, no spaces, ASCII."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> RegistrationRequest:
        """Parse a payload; raises :class:`RegistrationInvalid` (code ``malformed``)."""
        try:
            obj = loads_object(data, "registration request")
            kind = obj.get("kind")
            if kind == RegistrationKind.AUTH_CERT:
                obj = require_keys(
                    obj, {"kind", "server", "submitted_at", "nonce", "address", "auth_certificate"}, "request"
                )
                der = _unb64(obj["auth_certificate"], "auth_certificate", 8 * 1024)
                try:
                    cert = x509.load_der_x509_certificate(der)
                except ValueError as exc:
                    raise RegistrationInvalid("malformed", f"auth_certificate is not DER: {exc}") from exc
                extra: dict[str, Any] = {"address": obj["address"], "auth_certificate": cert}
            elif kind == RegistrationKind.CLIENT:
                obj = require_keys(obj, {"kind", "server", "submitted_at", "nonce", "client"}, "request")
                if not isinstance(obj["client"], str):
                    raise ValueError("client must be a string")
                extra = {"client": SubsystemId.parse_slash(obj["client"])}
            else:
                raise ValueError(f"kind must be one of {', '.join(k.value for k in RegistrationKind)}")
            if not isinstance(obj["server"], str):
                raise ValueError("server must be a string")
            request = cls(
                kind=RegistrationKind(kind),
                server=SecurityServerId.parse_slash(obj["server"]),
                submitted_at=parse_time(obj["submitted_at"], "submitted_at"),
                nonce=obj["nonce"],
                **extra,
            )
        except RegistrationInvalid:
            raise
        except (ValueError, IdentifierError) as exc:
            raise RegistrationInvalid("malformed", f"registration request: {exc}") from exc
        # A payload is signed as sent; one that does not round-trip could mean two things.
        if request.to_bytes() != data:
            raise RegistrationInvalid("malformed", "registration request is not in canonical form")
        return request


@dataclass(frozen=True)
class SignedRegistration:
    """A payload with its signatures and the signers' OCSP responses, as sent to the registry."""

    payload: bytes
    consent: str
    # By the server's auth key: the new one (proof of possession) or its registered one.
    server_signature: str
    ocsp_responses: tuple[bytes, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "payload": b64(self.payload),
                "consent": self.consent,
                "server_signature": self.server_signature,
                "ocsp_responses": [b64(r) for r in self.ocsp_responses],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> SignedRegistration:
        """Parse what a server sent; raises :class:`RegistrationInvalid` (code ``malformed``)."""
        if not isinstance(data, bytes) or len(data) > MAX_REQUEST_BYTES:
            raise RegistrationInvalid("malformed", f"a signed request is at most {MAX_REQUEST_BYTES} bytes")
        try:
            obj = require_keys(
                loads_object(data, "signed request"),
                {"payload", "consent", "server_signature", "ocsp_responses"},
                "signed request",
            )
        except ValueError as exc:
            raise RegistrationInvalid("malformed", str(exc)) from exc
        responses = obj["ocsp_responses"]
        if not isinstance(responses, list) or len(responses) > _MAX_OCSP_RESPONSES:
            raise RegistrationInvalid(
                "malformed", f"ocsp_responses must be a list of at most {_MAX_OCSP_RESPONSES}"
            )
        consent, server_signature = obj["consent"], obj["server_signature"]
        if not isinstance(consent, str) or not isinstance(server_signature, str):
            raise RegistrationInvalid("malformed", "signatures must be strings")
        return cls(
            payload=_unb64(obj["payload"], "payload", MAX_REQUEST_BYTES),
            consent=consent,
            server_signature=server_signature,
            ocsp_responses=tuple(_unb64(r, "OCSP response", _MAX_OCSP_BYTES) for r in responses),
        )

    @property
    def digest(self) -> bytes:
        """SHA-256 of the payload: what is signed, and the request's identity."""
        return hashlib.sha256(self.payload).digest()


@dataclass(frozen=True)
class VerifiedRegistration:
    """A request whose signatures and certificates checked out at the time of verification."""

    request: RegistrationRequest
    consent_by: MemberId
    consent_certificate: x509.Certificate
    digest: str  # SHA-256 of the payload, hex: the request's identity
    # The auth certificate whose key signed for the server; for a client request the
    # registry must find it registered for that server.
    server_certificate: x509.Certificate

    @property
    def auth_certificate_fingerprint(self) -> str | None:
        cert = self.request.auth_certificate
        return fingerprint(cert) if cert is not None else None

    @property
    def server_certificate_fingerprint(self) -> str:
        return fingerprint(self.server_certificate)


def _sign(digest: bytes, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> str:
    return sign_digest(digest, key, cert, signature_type=REGISTRATION_SIGNATURE_TYPE)


def sign_auth_cert_registration(
    request: RegistrationRequest,
    *,
    auth_key: ec.EllipticCurvePrivateKey,
    owner_sign_key: ec.EllipticCurvePrivateKey,
    owner_sign_certificate: x509.Certificate,
    ocsp_responses: tuple[bytes, ...] = (),
) -> SignedRegistration:
    """Sign an auth-cert request with the new auth key (possession) and the owner's sign key (consent)."""
    if request.kind is not RegistrationKind.AUTH_CERT or request.auth_certificate is None:
        raise ValueError("not an auth-cert request")
    payload = request.to_bytes()
    digest = hashlib.sha256(payload).digest()
    return SignedRegistration(
        payload=payload,
        consent=_sign(digest, owner_sign_key, owner_sign_certificate),
        server_signature=_sign(digest, auth_key, request.auth_certificate),
        ocsp_responses=ocsp_responses,
    )


def sign_client_registration(
    request: RegistrationRequest,
    *,
    owner_sign_key: ec.EllipticCurvePrivateKey,
    owner_sign_certificate: x509.Certificate,
    auth_key: ec.EllipticCurvePrivateKey,
    auth_certificate: x509.Certificate,
    ocsp_responses: tuple[bytes, ...] = (),
) -> SignedRegistration:
    """Sign a client request with the client owner's sign key and the server's registered auth key."""
    if request.kind is not RegistrationKind.CLIENT:
        raise ValueError("not a client request")
    payload = request.to_bytes()
    digest = hashlib.sha256(payload).digest()
    return SignedRegistration(
        payload=payload,
        consent=_sign(digest, owner_sign_key, owner_sign_certificate),
        server_signature=_sign(digest, auth_key, auth_certificate),
        ocsp_responses=ocsp_responses,
    )


def _ocsp_for(cert: x509.Certificate, responses: tuple[bytes, ...], trust: CertificateTrust) -> bytes | None:
    """The response among ``responses`` about ``cert``, by serial number (None: let validation refuse)."""
    if trust.ocsp is None:
        return None
    for der in responses:
        try:
            parsed = ocsp.load_der_ocsp_response(der)
            if parsed.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
                continue
            if parsed.serial_number == cert.serial_number:
                return der
        except ValueError:
            continue
    return None


def check_age(request: RegistrationRequest, now: datetime, *, max_age: timedelta = MAX_REQUEST_AGE) -> None:
    """Raise :class:`RegistrationInvalid` (``stale``) unless ``request`` was made within ``max_age``.

    Cheap, so the registry runs it before anything costly.
    """
    require_utc(now, "now")
    if request.submitted_at < now - max_age:
        raise RegistrationInvalid(
            "stale", f"the request was made at {format_time(request.submitted_at)}, more than {max_age} ago"
        )
    if request.submitted_at > now + MAX_CLOCK_SKEW:
        raise RegistrationInvalid(
            "stale", f"the request's time {format_time(request.submitted_at)} lies ahead"
        )


def verify_registration(
    signed: SignedRegistration,
    trust: CertificateTrust,
    now: datetime,
    *,
    max_age: timedelta = MAX_REQUEST_AGE,
) -> VerifiedRegistration:
    """Check a signed request at ``now``: payload, age, the server's signature, the owner's consent.

    Raises :class:`RegistrationInvalid` with a code saying which check failed:
    ``malformed``, ``stale``, ``auth_certificate`` (the certificate that signed for the
    server is not an approved, valid, unrevoked auth certificate of that server),
    ``proof_of_possession`` (an auth-cert request not signed by the key it registers),
    ``server_signature`` (a client request's server signature is wrong),
    ``consent_certificate`` (not a valid sign certificate) or ``consent`` (a wrong
    signature, or by the wrong member).  That a client request's server certificate is
    registered for the server is the registry's to check
    (:attr:`VerifiedRegistration.server_certificate`).
    """
    request = RegistrationRequest.from_bytes(signed.payload)
    # (1) age: a captured request stops working once it is older than max_age
    check_age(request, now, max_age=max_age)
    digest = signed.digest
    # (2) the server: its auth certificate is approved and names it, and that key signed.
    # An auth-cert request must be signed by the very certificate it registers.
    failure = "proof_of_possession" if request.kind is RegistrationKind.AUTH_CERT else "server_signature"
    try:
        server_cert = signer_certificate(signed.server_signature, signature_type=REGISTRATION_SIGNATURE_TYPE)
    except SignatureInvalid as exc:
        raise RegistrationInvalid(failure, str(exc)) from exc
    if request.auth_certificate is not None and _der(server_cert) != _der(request.auth_certificate):
        raise RegistrationInvalid(failure, "the proof of possession names another certificate")
    try:
        named = validate_auth_certificate(
            server_cert, trust, now, ocsp_response=_ocsp_for(server_cert, signed.ocsp_responses, trust)
        )
    except CertificateInvalid as exc:
        raise RegistrationInvalid("auth_certificate", str(exc)) from exc
    if named != request.server:
        raise RegistrationInvalid(
            "auth_certificate", f"{describe(server_cert)} was issued to {named}, not to {request.server}"
        )
    try:
        check_signed_by(signed.server_signature, digest, server_cert, what="the request")
    except SignatureInvalid as exc:
        raise RegistrationInvalid(failure, str(exc)) from exc
    # (3) consent: a valid sign certificate of the member who must agree, and its signature
    try:
        consent_cert = signer_certificate(signed.consent, signature_type=REGISTRATION_SIGNATURE_TYPE)
    except SignatureInvalid as exc:
        raise RegistrationInvalid("consent", str(exc)) from exc
    try:
        member = validate_sign_certificate(
            consent_cert, trust, now, ocsp_response=_ocsp_for(consent_cert, signed.ocsp_responses, trust)
        )
    except CertificateInvalid as exc:
        raise RegistrationInvalid("consent_certificate", str(exc)) from exc
    if member != request.owner:
        raise RegistrationInvalid(
            "consent", f"the request is signed by {member}, but {request.owner} must consent to it"
        )
    try:
        check_signed_by(signed.consent, digest, consent_cert, what="the request")
    except SignatureInvalid as exc:
        raise RegistrationInvalid("consent", str(exc)) from exc
    return VerifiedRegistration(request, member, consent_cert, digest.hex(), server_cert)
