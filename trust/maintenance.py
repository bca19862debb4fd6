"""Maintenance announcements: a security server tells the registry it enters or leaves maintenance.

X-Road's ``maintenanceModeEnable`` and ``maintenanceModeDisable`` management requests in
xweg's encoding.  Unlike a registration request (:mod:`trust.registration`) this asks
for nothing that needs approval: a server's administrator decides about that server,
so the registry applies the announcement at once -- once it has proved that the server
itself sent it.  An announcement is a small canonical JSON **payload** (the server,
on or off, when, and a random request id) with one detached ES256 signature over its
SHA-256 digest by the server's **auth key**, typed :data:`MAINTENANCE_SIGNATURE_TYPE`
so that no registration or message signature can stand in for one, and the OCSP
response for the auth certificate.

:func:`verify_maintenance_request` checks, at ``now``:

1. the payload's shape (``malformed``);
2. freshness: made within :data:`MAX_ANNOUNCEMENT_AGE` and not ahead of ``now`` by
   more than :data:`~trust.registration.MAX_CLOCK_SKEW` (``stale``);
3. the signer's certificate is an approved, valid, unrevoked auth certificate issued to
   the server the payload names (``auth_certificate``);
4. the signature over the payload's digest verifies with it (``server_signature``).

What needs the registry's state is the registry's to check: that this certificate is
one it holds for that server, and that the request id was never used before.  Refusals
are :class:`~trust.errors.RegistrationInvalid` with the code in parentheses.  Everything
here is pure: bytes and a time in, a verified request out.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from core.clock import require_utc
from core.identifiers import IdentifierError, SecurityServerId
from trust._encoding import b64, format_time, loads_object, parse_time, require_keys, unb64_bounded
from trust.certificates import CertificateTrust, validate_auth_certificate
from trust.errors import CertificateInvalid, RegistrationInvalid, SignatureInvalid
from trust.profiles import describe, fingerprint
from trust.registration import MAX_CLOCK_SKEW
from trust.signatures import check_signed_by, sign_digest, signer_certificate

__all__ = [
    "MAINTENANCE_KIND",
    "MAINTENANCE_SIGNATURE_TYPE",
    "MAX_ANNOUNCEMENT_AGE",
    "MAX_ANNOUNCEMENT_BYTES",
    "MaintenanceRequest",
    "SignedMaintenanceRequest",
    "VerifiedMaintenanceRequest",
    "check_fresh",
    "sign_maintenance_request",
    "verify_maintenance_request",
]

#: The payload's ``kind``: never one of a registration request's kinds.
MAINTENANCE_KIND = "maintenance"
#: The ``typ`` of an announcement's signature.
MAINTENANCE_SIGNATURE_TYPE = "xweg-maintenance+jws"
#: An announcement older than this is refused: it takes effect at once, so the window is short.
MAX_ANNOUNCEMENT_AGE = timedelta(minutes=5)
#: Bound on an encoded signed announcement: one certificate, one signature, one OCSP response.
MAX_ANNOUNCEMENT_BYTES = 16 * 1024
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
_MAX_PAYLOAD_BYTES = 1024
_MAX_OCSP_BYTES = 8 * 1024


def _malformed(message: str) -> RegistrationInvalid:
    return RegistrationInvalid("malformed", message)


def _unb64(text: object, what: str, limit: int) -> bytes:
    return unb64_bounded(text, what, limit, _malformed)


@dataclass(frozen=True)
class MaintenanceRequest:
    """The payload: which server, maintenance on or off, when, and a request id used once."""

    server: SecurityServerId
    enabled: bool
    submitted_at: datetime
    request_id: str = field(default_factory=lambda: secrets.token_hex(16))

    def __post_init__(self) -> None:
        if not isinstance(self.server, SecurityServerId):
            raise ValueError("server must be a SecurityServerId")
        if not isinstance(self.enabled, bool):
            raise ValueError("enabled must be true or false")
        require_utc(self.submitted_at, "submitted_at")
        if not isinstance(self.request_id, str) or not _REQUEST_ID.fullmatch(self.request_id):
            raise ValueError("request_id must be 32 lower-case hex digits")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": MAINTENANCE_KIND,
            "server": self.server.slash(),
            "enabled": self.enabled,
            "submitted_at": format_time(self.submitted_at),
            "request_id": self.request_id,
        }

    def to_bytes(self) -> bytes:
        """The canonical payload: sorted keys, no spaces, ASCII."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> MaintenanceRequest:
        """Parse a payload; raises :class:`RegistrationInvalid` (code ``malformed``)."""
        if not isinstance(data, bytes) or len(data) > _MAX_PAYLOAD_BYTES:
            raise RegistrationInvalid(
                "malformed", f"an announcement's payload is at most {_MAX_PAYLOAD_BYTES} bytes"
            )
        try:
            obj = require_keys(
                loads_object(data, "maintenance request"),
                {"kind", "server", "enabled", "submitted_at", "request_id"},
                "maintenance request",
            )
            if obj["kind"] != MAINTENANCE_KIND:
                raise ValueError(f"kind must be {MAINTENANCE_KIND!r}")
            if not isinstance(obj["server"], str):
                raise ValueError("server must be a string")
            request = cls(
                server=SecurityServerId.parse_slash(obj["server"]),
                enabled=obj["enabled"],
                submitted_at=parse_time(obj["submitted_at"], "submitted_at"),
                request_id=obj["request_id"],
            )
        except (ValueError, IdentifierError) as exc:
            raise RegistrationInvalid("malformed", f"maintenance request: {exc}") from exc
        # A payload is signed as sent; one that does not round-trip could mean two things.
        if request.to_bytes() != data:
            raise RegistrationInvalid("malformed", "maintenance request is not in canonical form")
        return request


@dataclass(frozen=True)
class SignedMaintenanceRequest:
    """A payload, the server's signature over it, and the OCSP response for the signer's certificate."""

    payload: bytes
    signature: str
    ocsp_response: bytes

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "payload": b64(self.payload),
                "signature": self.signature,
                "ocsp_response": b64(self.ocsp_response),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> SignedMaintenanceRequest:
        """Parse what a server sent; raises :class:`RegistrationInvalid` (code ``malformed``)."""
        if not isinstance(data, bytes) or len(data) > MAX_ANNOUNCEMENT_BYTES:
            raise RegistrationInvalid(
                "malformed", f"a signed announcement is at most {MAX_ANNOUNCEMENT_BYTES} bytes"
            )
        try:
            obj = require_keys(
                loads_object(data, "signed announcement"),
                {"payload", "signature", "ocsp_response"},
                "signed announcement",
            )
        except ValueError as exc:
            raise RegistrationInvalid("malformed", str(exc)) from exc
        if not isinstance(obj["signature"], str):
            raise RegistrationInvalid("malformed", "signature must be a string")
        return cls(
            payload=_unb64(obj["payload"], "payload", _MAX_PAYLOAD_BYTES),
            signature=obj["signature"],
            ocsp_response=_unb64(obj["ocsp_response"], "OCSP response", _MAX_OCSP_BYTES),
        )

    @property
    def digest(self) -> bytes:
        """SHA-256 of the payload: what is signed."""
        return hashlib.sha256(self.payload).digest()


@dataclass(frozen=True)
class VerifiedMaintenanceRequest:
    """An announcement whose signature and certificate checked out at the time of verification."""

    request: MaintenanceRequest
    # The auth certificate that signed; the registry must hold it for ``request.server``.
    certificate: x509.Certificate
    digest: str  # SHA-256 of the payload, hex

    @property
    def certificate_fingerprint(self) -> str:
        return fingerprint(self.certificate)


def sign_maintenance_request(
    request: MaintenanceRequest,
    *,
    auth_key: ec.EllipticCurvePrivateKey,
    auth_certificate: x509.Certificate,
    ocsp_response: bytes,
) -> SignedMaintenanceRequest:
    """Sign ``request`` with the server's auth key; ``ocsp_response`` is the auth certificate's."""
    payload = request.to_bytes()
    signature = sign_digest(
        hashlib.sha256(payload).digest(),
        auth_key,
        auth_certificate,
        signature_type=MAINTENANCE_SIGNATURE_TYPE,
    )
    return SignedMaintenanceRequest(payload, signature, ocsp_response)


def check_fresh(
    request: MaintenanceRequest, now: datetime, *, max_age: timedelta = MAX_ANNOUNCEMENT_AGE
) -> None:
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


def _ocsp_about(cert: x509.Certificate, response: bytes) -> bytes | None:
    """``response`` if it is a successful one about ``cert`` (None: let validation refuse)."""
    try:
        parsed = ocsp.load_der_ocsp_response(response)
        if parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL:
            return response if parsed.serial_number == cert.serial_number else None
    except ValueError:
        pass
    return None


def verify_maintenance_request(
    signed: SignedMaintenanceRequest,
    trust: CertificateTrust,
    now: datetime,
    *,
    max_age: timedelta = MAX_ANNOUNCEMENT_AGE,
) -> VerifiedMaintenanceRequest:
    """Check a signed announcement at ``now``; see the module's docstring for the steps and codes."""
    # (1) the payload
    request = MaintenanceRequest.from_bytes(signed.payload)
    # (2) freshness: a captured announcement stops working once it is older than max_age
    check_fresh(request, now, max_age=max_age)
    # (3) the signer: an approved, valid, unrevoked auth certificate of the server named
    try:
        cert = signer_certificate(signed.signature, signature_type=MAINTENANCE_SIGNATURE_TYPE)
    except SignatureInvalid as exc:
        raise RegistrationInvalid("server_signature", str(exc)) from exc
    ocsp_response = _ocsp_about(cert, signed.ocsp_response) if trust.ocsp is not None else None
    try:
        named = validate_auth_certificate(cert, trust, now, ocsp_response=ocsp_response)
    except CertificateInvalid as exc:
        raise RegistrationInvalid("auth_certificate", str(exc)) from exc
    if named != request.server:
        raise RegistrationInvalid(
            "auth_certificate", f"{describe(cert)} was issued to {named}, not to {request.server}"
        )
    # (4) the signature over the payload's digest
    try:
        check_signed_by(signed.signature, signed.digest, cert, what="the request")
    except SignatureInvalid as exc:
        raise RegistrationInvalid("server_signature", str(exc)) from exc
    return VerifiedMaintenanceRequest(request, cert, signed.digest.hex())
