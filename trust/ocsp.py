"""OCSP (RFC 6960): requests, a responder's answers, and a verifier's check of a response.

Pure: bytes and a time in, bytes or a verified status out.  cryptography's OCSP
support parses and builds the messages; fetching them is :mod:`trust.ocspclient`'s
job and serving them :mod:`trust.service.ocsp_responder`'s.

Requests identify a certificate by its CertID: the hashes of its issuer's name and
public key and its serial.  :func:`build_ocsp_request` hashes with SHA-1 by default,
as most responders expect and RFC 5019 prescribes; SHA-1 is harmless here because a
CertID only names a certificate and the verifier recomputes it from the certificate
it holds.  The responder answers in whatever hash algorithm it was asked in.

Responses are signed by the CA's *delegated* responder (RFC 6960 4.2.2.2), never by a
CA key, and name the responder by the hash of its key.  No nonce is required:
security servers fetch responses ahead of time and pass them on with every message,
so what bounds a replay is the freshness limit of :class:`OcspPolicy`, checked
against ``producedAt``.

Clock skew: servers' clocks may differ by up to ``OcspPolicy.skew_s`` (default 300 s).
A response produced or valid from up to that far in the future is accepted, and one
up to that much past its ``nextUpdate``; beyond that it is refused with a message
giving both times.  The freshness limit itself is not stretched by the skew: it is
the promise that a revoked certificate stops being accepted within that limit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from core.clock import require_utc
from trust.errors import CertificateInvalid
from trust.lru import BoundedLru
from trust.profiles import check_ocsp_responder_profile, describe

__all__ = [
    "DEFAULT_FRESHNESS_S",
    "DEFAULT_SKEW_S",
    "MAX_SKEW_S",
    "MAX_OCSP_REQUEST_BYTES",
    "MAX_OCSP_RESPONSE_BYTES",
    "OcspPolicy",
    "CertStatus",
    "OcspStatus",
    "build_ocsp_request",
    "build_ocsp_response",
    "check_ocsp_response",
]

#: X-Road's default: a response older than an hour (by its producedAt) is refused.
DEFAULT_FRESHNESS_S = 3600.0
#: Tolerated difference between two servers' clocks, in seconds.
DEFAULT_SKEW_S = 300.0
#: Upper bound on a configured skew: more would hide a broken clock.
MAX_SKEW_S = 3600.0
#: Bound on a request a responder parses; a single-certificate request is about 100 bytes.
MAX_OCSP_REQUEST_BYTES = 10 * 1024
#: Bound on a response a verifier parses; ours are under 1 KiB with the responder certificate.
MAX_OCSP_RESPONSE_BYTES = 64 * 1024

_REQUEST_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}
_CERT_ID_HASHES = (hashes.SHA1, hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512)
_SIGNATURE_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


def _check_certificates(value: object, what: str) -> tuple[x509.Certificate, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{what} must be a sequence of x509.Certificate")
    certs = tuple(value)
    if not all(isinstance(cert, x509.Certificate) for cert in certs):
        raise TypeError(f"{what} must hold x509.Certificate objects only")
    return certs


@dataclass(frozen=True)
class OcspPolicy:
    """How a verifier judges OCSP responses: whom it believes, and how old a response may be.

    ``responders`` are the authorised (delegated) responder certificates, as global
    configuration lists them; ``freshness_s`` is the age (from producedAt) beyond which
    a response is refused; ``skew_s`` the tolerated clock difference between servers.
    """

    responders: tuple[x509.Certificate, ...]
    freshness_s: float = DEFAULT_FRESHNESS_S
    skew_s: float = DEFAULT_SKEW_S

    def __post_init__(self) -> None:
        responders = _check_certificates(self.responders, "responders")
        if not responders:
            raise ValueError("an OCSP policy needs at least one authorised responder certificate")
        object.__setattr__(self, "responders", responders)
        for name in ("freshness_s", "skew_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds")
        if not self.freshness_s > 0:
            raise ValueError("freshness_s must be positive")
        if not 0 <= self.skew_s <= MAX_SKEW_S:
            raise ValueError(f"skew_s must be between 0 and {MAX_SKEW_S:g} seconds")


@dataclass(frozen=True)
class CertStatus:
    """A certificate's revocation status as the CA knows it (what a responder answers)."""

    status: Literal["good", "revoked", "unknown"]
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        if self.status not in ("good", "revoked", "unknown"):
            raise ValueError(f"status must be good, revoked or unknown, not {self.status!r}")
        if self.status == "revoked":
            if self.revoked_at is None:
                raise ValueError("a revoked status needs revoked_at")
            require_utc(self.revoked_at, "revoked_at")
        elif self.revoked_at is not None or self.reason is not None:
            raise ValueError(f"a {self.status} status has no revocation time or reason")
        if self.reason is not None and not isinstance(self.reason, x509.ReasonFlags):
            raise TypeError("reason must be an x509.ReasonFlags")


@dataclass(frozen=True)
class OcspStatus:
    """A response that verified and says ``good``: when it was produced and what period it covers."""

    produced_at: datetime
    this_update: datetime
    next_update: datetime | None

    def __post_init__(self) -> None:
        require_utc(self.produced_at, "produced_at")
        require_utc(self.this_update, "this_update")
        if self.next_update is not None:
            require_utc(self.next_update, "next_update")


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _public_key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's value (without the unused-bits octet), as CertID hashes it."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    contents = asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents
    return bytes(contents[1:])


def _issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CertID for certificates ``issuer`` issued."""
    return (
        _digest(algorithm, issuer.subject.public_bytes()),
        _digest(algorithm, _public_key_bits(issuer)),
    )


def build_ocsp_request(
    cert: x509.Certificate, issuer: x509.Certificate, *, hash_algorithm: Literal["sha1", "sha256"] = "sha1"
) -> bytes:
    """A DER OCSP request for ``cert`` (issued by ``issuer``); see the module docstring on the hash."""
    if hash_algorithm not in _REQUEST_HASHES:
        raise ValueError("hash_algorithm must be 'sha1' or 'sha256'")
    if cert.issuer != issuer.subject:
        raise ValueError(f"{describe(cert)} is not issued by {describe(issuer)}")
    request = (
        ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, _REQUEST_HASHES[hash_algorithm]()).build()
    )
    return request.public_bytes(serialization.Encoding.DER)


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def _stamp_produced_at(response: ocsp.OCSPResponse, now: datetime, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Set producedAt to ``now`` and sign again.

    cryptography stamps producedAt with the wall clock and offers no way to choose it;
    time is an input here (tests and simulations run at other times), so the signed
    ResponseData is re-encoded with asn1crypto and signed once more.
    """
    envelope = asn1_ocsp.OCSPResponse.load(response.public_bytes(serialization.Encoding.DER))
    basic = envelope["response_bytes"]["response"].parsed
    tbs = basic["tbs_response_data"]
    tbs["produced_at"] = now
    basic["signature"] = key.sign(tbs.dump(force=True), ec.ECDSA(hashes.SHA256()))
    rebuilt = asn1_ocsp.OCSPResponse(
        {
            "response_status": "successful",
            "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
        }
    )
    return bytes(rebuilt.dump(force=True))


_CERT_STATUS = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}


def build_ocsp_response(
    request_der: bytes,
    *,
    lookup: Callable[[int], CertStatus],
    issuer: x509.Certificate,
    responder_certificate: x509.Certificate,
    responder_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    validity_s: float = 3600.0,
) -> bytes:
    """The responder's DER answer to ``request_der``, signed by the delegated responder.

    ``lookup`` gives the status of a serial issued by ``issuer``; a request about a
    certificate of another issuer is answered ``unknown`` without asking it.  A
    request that does not parse gets a ``malformedRequest`` response.  thisUpdate and
    producedAt are ``now``, nextUpdate ``now + validity_s``.
    """
    require_utc(now, "now")
    if isinstance(validity_s, bool) or not isinstance(validity_s, (int, float)) or not validity_s > 0:
        raise ValueError("validity_s must be a positive number of seconds")
    if responder_certificate.public_key() != responder_key.public_key():
        raise ValueError(f"the responder key does not match {describe(responder_certificate)}")
    if responder_certificate.issuer != issuer.subject:
        raise ValueError(f"{describe(responder_certificate)} is not a responder of {describe(issuer)}")
    # GeneralizedTime in OCSP carries whole seconds (RFC 5280 4.1.2.5.2).
    now = now.replace(microsecond=0)
    try:
        if not isinstance(request_der, bytes) or len(request_der) > MAX_OCSP_REQUEST_BYTES:
            raise ValueError("request is not bytes or too large")
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        serial = request.serial_number
        name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
        nonce = _nonce(request)
    except (ValueError, UnsupportedAlgorithm):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)

    if (name_hash, key_hash) == _issuer_hashes(issuer, algorithm):
        status = lookup(serial)
        if not isinstance(status, CertStatus):
            raise TypeError("lookup must return a CertStatus")
    else:
        status = CertStatus("unknown")
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=algorithm,
            cert_status=_CERT_STATUS[status.status],
            this_update=now,
            next_update=now + timedelta(seconds=validity_s),
            revocation_time=status.revoked_at.replace(microsecond=0) if status.revoked_at else None,
            revocation_reason=status.reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder_certificate)
        .certificates([responder_certificate])
    )
    if nonce is not None:
        builder = builder.add_extension(nonce, critical=False)
    return _stamp_produced_at(builder.sign(responder_key, hashes.SHA256()), now, responder_key)


def _nonce(request: ocsp.OCSPRequest) -> x509.OCSPNonce | None:
    """The request's nonce, echoed as RFC 6960 4.4.1 asks (verifiers here do not require one)."""
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value
    except x509.ExtensionNotFound:
        return None


def _key_hash(cert: x509.Certificate) -> bytes:
    # ResponderID byKey is defined as the SHA-1 of the key (RFC 6960 4.2.1); it only names the key.
    return _digest(hashes.SHA1(), _public_key_bits(cert))  # noqa: S303


def _check_responder(
    responder: x509.Certificate, issuer: x509.Certificate, now: datetime, name: str
) -> ec.EllipticCurvePublicKey:
    """Step (3b): an authorised responder is issued by the certificate's own CA, for OCSP, valid now."""
    where = f"the OCSP response for {name} is signed by {describe(responder)}"
    if responder.issuer != issuer.subject:
        raise CertificateInvalid(f"{where}, which is not issued by {describe(issuer)}")
    try:
        responder.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateInvalid(f"{where}, which {describe(issuer)} did not sign: {exc}") from exc
    try:
        check_ocsp_responder_profile(responder)
    except CertificateInvalid as exc:
        raise CertificateInvalid(f"{where}: {exc}") from exc
    if not responder.not_valid_before_utc <= now <= responder.not_valid_after_utc:
        raise CertificateInvalid(
            f"{where}, which is not valid at {now.isoformat()} (valid "
            f"{responder.not_valid_before_utc.isoformat()} to {responder.not_valid_after_utc.isoformat()})"
        )
    public = responder.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise CertificateInvalid(f"{where}, whose key is not an EC key")
    return public


def _verify_signature(
    response: ocsp.OCSPResponse, responder: x509.Certificate, public: ec.EllipticCurvePublicKey, name: str
) -> None:
    """Step (4): the response's signature verifies with the responder's key."""
    try:
        algorithm = response.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if not isinstance(algorithm, _SIGNATURE_HASHES):
        raise CertificateInvalid(
            f"the OCSP response for {name} uses a refused signature algorithm "
            f"({response.signature_algorithm_oid.dotted_string})"
        )
    try:
        public.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise CertificateInvalid(
            f"the OCSP response for {name} has a signature that does not verify with {describe(responder)}"
        ) from None


def check_ocsp_response(
    response_der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    policy: OcspPolicy,
    now: datetime,
) -> OcspStatus:
    """Verify that ``response_der`` says ``cert`` (issued by ``issuer``) is good at ``now``.

    Raises :class:`~trust.errors.CertificateInvalid` naming the certificate and the reason.
    """
    require_utc(now, "now")
    if not isinstance(policy, OcspPolicy):
        raise TypeError("policy must be an OcspPolicy")
    if not isinstance(response_der, bytes) or len(response_der) > MAX_OCSP_RESPONSE_BYTES:
        raise CertificateInvalid(
            f"the OCSP response for {describe(cert)} is not bytes of at most {MAX_OCSP_RESPONSE_BYTES} bytes"
        )
    # Every message carries the same few responses until they are refreshed: steps (1)
    # to (5) do not depend on the time except through the responder's validity, so a
    # response that passed them is remembered with the responder that signed it, and
    # only that validity and the freshness checks of step (6) are made again.
    # Keyed by a digest, not the bytes (up to 64 KiB, and a response's certificate list is
    # not signed, so padded copies of one response are distinct byte strings), and only
    # once a response passed every step: what it costs to hold stays small and bounded.
    key = (hashlib.sha256(response_der).digest(), cert, issuer, policy.responders)
    verified = _verified.get(key)
    if verified is not None and verified.responder_valid_at(now):
        return _check_fresh(verified.status, policy, now, cert)
    verified = _verify_response(response_der, cert, issuer, policy, now)
    status = _check_fresh(verified.status, policy, now, cert)
    _verified.put(key, verified)
    return status


@dataclass(frozen=True, slots=True)
class _Verified:
    """A response that passed steps (1) to (5): its times, and the responder whose signature verified."""

    status: OcspStatus
    responder: x509.Certificate

    def responder_valid_at(self, now: datetime) -> bool:
        return self.responder.not_valid_before_utc <= now <= self.responder.not_valid_after_utc


_OcspKey = tuple[bytes, x509.Certificate, x509.Certificate, tuple[x509.Certificate, ...]]  # SHA-256 first
#: Bound on remembered responses: one per signing or auth certificate seen, in practice.
_VERIFIED_CACHE_SIZE = 4096
_verified: BoundedLru[_OcspKey, _Verified] = BoundedLru(_VERIFIED_CACHE_SIZE)


def _verify_response(
    response_der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    policy: OcspPolicy,
    now: datetime,
) -> _Verified:
    """Steps (1) to (5) of :func:`check_ocsp_response`; the responder's validity is checked at ``now``."""
    name = describe(cert)

    # (1) the response parses and its status is successful
    try:
        response = ocsp.load_der_ocsp_response(response_der)
    except ValueError as exc:
        raise CertificateInvalid(f"the OCSP response for {name} is malformed: {exc}") from exc
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise CertificateInvalid(
            f"the OCSP responder gave no status for {name}: response status {response.response_status.name}"
        )

    # (2) exactly one SingleResponse, and it is for this certificate (serial and issuer hashes)
    try:
        singles = list(response.responses)
        if len(singles) != 1:
            raise CertificateInvalid(
                f"the OCSP response for {name} holds {len(singles)} statuses, expected exactly one"
            )
        single = singles[0]
        algorithm = single.hash_algorithm
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateInvalid(f"the OCSP response for {name} is malformed: {exc}") from exc
    if not isinstance(algorithm, _CERT_ID_HASHES):
        raise CertificateInvalid(f"the OCSP response for {name} uses a refused CertID hash {algorithm.name}")
    if (single.issuer_name_hash, single.issuer_key_hash) != _issuer_hashes(issuer, algorithm):
        raise CertificateInvalid(
            f"the OCSP response is not for {name}: it answers for a certificate of another issuer "
            f"than {describe(issuer)}"
        )
    if single.serial_number != cert.serial_number:
        raise CertificateInvalid(
            f"the OCSP response is not for {name}: it answers for serial {single.serial_number:#x}, "
            f"not {cert.serial_number:#x}"
        )

    # (3) the signer is an authorised responder (by responder id, among policy.responders),
    #     issued by the certificate's own CA, with the OCSPSigning purpose, valid now;
    # (4) the signature verifies with that responder's key
    key_hash, responder_name = response.responder_key_hash, response.responder_name
    candidates = [
        responder
        for responder in policy.responders
        if (key_hash is not None and _key_hash(responder) == key_hash)
        or (responder_name is not None and responder.subject == responder_name)
    ]
    if not candidates:
        who = (
            f"key hash {key_hash.hex()}"
            if key_hash is not None
            else f"name {responder_name.rfc4514_string() if responder_name else None!r}"
        )
        raise CertificateInvalid(
            f"the OCSP response for {name} is not signed by an authorised OCSP responder (responder {who})"
        )
    failures: list[CertificateInvalid] = []
    for responder in candidates:
        try:
            public = _check_responder(responder, issuer, now, name)
            _verify_signature(response, responder, public, name)
        except CertificateInvalid as exc:
            failures.append(exc)
            continue
        signer = responder
        break
    else:
        raise failures[0]

    # (5) the status is good
    cert_status = single.certificate_status
    if cert_status == ocsp.OCSPCertStatus.REVOKED:
        revoked_at = single.revocation_time_utc
        reason = single.revocation_reason
        when = revoked_at.isoformat() if revoked_at is not None else "an unknown time"
        raise CertificateInvalid(
            f"{name} was revoked at {when} (reason {reason.value if reason is not None else 'unspecified'})"
        )
    if cert_status != ocsp.OCSPCertStatus.GOOD:
        raise CertificateInvalid(f"{name} is unknown to the OCSP responder")

    status = OcspStatus(
        produced_at=response.produced_at_utc,
        this_update=single.this_update_utc,
        next_update=single.next_update_utc,
    )
    return _Verified(status, signer)


def _check_fresh(status: OcspStatus, policy: OcspPolicy, now: datetime, cert: x509.Certificate) -> OcspStatus:
    """Step (6) of :func:`check_ocsp_response`; returns ``status``."""
    # (6) the response is fresh: produced within the freshness limit (a hard limit) and not
    #     in the future, its validity period has begun and not ended (within the skew)
    skew = timedelta(seconds=policy.skew_s)
    produced_at, this_update, next_update = status.produced_at, status.this_update, status.next_update
    if produced_at > now + skew:
        raise CertificateInvalid(
            f"the OCSP response for {describe(cert)} was produced at {produced_at.isoformat()}, "
            f"in the future (now {now.isoformat()}, tolerated clock skew {policy.skew_s:g} s)"
        )
    if now - produced_at > timedelta(seconds=policy.freshness_s):
        raise CertificateInvalid(
            f"the OCSP response for {describe(cert)} is too old: produced at {produced_at.isoformat()}, "
            f"more than the freshness limit of {policy.freshness_s:g} s before {now.isoformat()}"
        )
    if this_update > now + skew:
        raise CertificateInvalid(
            f"the OCSP response for {describe(cert)} has thisUpdate {this_update.isoformat()} in the future "
            f"(now {now.isoformat()}, tolerated clock skew {policy.skew_s:g} s)"
        )
    if next_update is not None and next_update < now - skew:
        raise CertificateInvalid(
            f"the OCSP response for {describe(cert)} has expired: nextUpdate {next_update.isoformat()} "
            f"has passed (now {now.isoformat()})"
        )
    return status
