"""Certificate validation at a given time: chain to an approved CA, validity, profile and revocation.

:func:`validate_sign_certificate` and :func:`validate_auth_certificate` are pure: they
take a certificate, a :class:`CertificateTrust` (the approved roots and issuing CAs
from the verified global configuration, and the OCSP policy), ``now`` and, when
revocation is checked, the certificate's OCSP response; they return the identity the
certificate vouches for or raise :class:`~trust.errors.CertificateInvalid`.  Chain
building and RFC 5280 checks are cryptography's ``x509.verification`` (WebPKI client
profile); the federation's own profile rules (:mod:`trust.profiles`) are checked on
top, so a sign certificate can never authenticate TLS and an auth certificate can
never sign messages.

Chains are leaf -> issuing CA (one of ``intermediates``) -> root, or leaf -> root.
Revocation is checked with :func:`trust.ocsp.check_ocsp_response` whenever the trust
has an :class:`OcspPolicy`; the chain part of a validation is cached, the OCSP check
runs every time (it is a signature check and a few comparisons).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, cast

from cryptography import x509
from cryptography.x509 import verification

from core.clock import require_utc
from core.identifiers import MemberId, SecurityServerId
from trust.errors import CertificateInvalid
from trust.lru import BoundedLru
from trust.ocsp import OcspPolicy, check_ocsp_response
from trust.profiles import check_auth_profile, check_sign_profile, describe, fingerprint

__all__ = [
    "fingerprint",
    "describe",
    "OcspPolicy",
    "CertificateTrust",
    "validate_sign_certificate",
    "validate_auth_certificate",
    "MAX_CHAIN_DEPTH",
]

#: Intermediate CAs allowed between an end entity and its root: the issuing CA.
MAX_CHAIN_DEPTH = 1
#: Bound on the CA certificates one trust object may hold.
MAX_TRUSTED_CAS = 256
#: Bound on remembered successful validations (one per member or server, in practice).
_CACHE_SIZE = 1024

_Id = TypeVar("_Id", MemberId, SecurityServerId)


def _certificates(value: object, what: str) -> tuple[x509.Certificate, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{what} must be a sequence of x509.Certificate")
    certs = tuple(value)
    if not all(isinstance(cert, x509.Certificate) for cert in certs):
        raise TypeError(f"{what} must hold x509.Certificate objects only")
    if len(certs) > MAX_TRUSTED_CAS:
        raise ValueError(f"{what} holds more than {MAX_TRUSTED_CAS} certificates")
    return certs


@dataclass(frozen=True)
class CertificateTrust:
    """What a certificate is validated against.

    ``roots`` are the approved root CAs (trust anchors); ``intermediates`` the approved
    issuing CAs, which must themselves chain to a root; ``ocsp`` the revocation policy,
    or ``None`` for no revocation checking (tests, and offline audits of old data whose
    OCSP evidence is checked elsewhere).  Sequences are stored as tuples.
    """

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    ocsp: OcspPolicy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", _certificates(self.roots, "roots"))
        object.__setattr__(self, "intermediates", _certificates(self.intermediates, "intermediates"))
        if self.ocsp is not None and not isinstance(self.ocsp, OcspPolicy):
            raise TypeError("ocsp must be an OcspPolicy or None")

    @functools.cached_property
    def _cache_key(self) -> tuple[frozenset[str], frozenset[str]]:
        # Computed once per trust object (one per global configuration), not per message.
        return (
            frozenset(fingerprint(c) for c in self.roots),
            frozenset(fingerprint(c) for c in self.intermediates),
        )


@dataclass(frozen=True, slots=True)
class _Validated:
    """A chain that verified once: it verifies again at any time inside ``[not_before, not_after]``."""

    identity: MemberId | SecurityServerId
    issuer: x509.Certificate
    not_before: datetime
    not_after: datetime


_CacheKey = tuple[str, str, frozenset[str], frozenset[str]]


# Successful chain validations, keyed by (profile, certificate, approved CAs).  Chain
# validation depends on time only through the validity periods of the certificates in
# the chain, so a cached success is reused only when ``now`` lies inside the
# intersection of those periods; failures are never cached, and nor is revocation
# status (trust.ocsp keeps its own cache of verified responses, re-checking time).
_cache: BoundedLru[_CacheKey, _Validated] = BoundedLru(_CACHE_SIZE)


def _check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateInvalid(
            f"{what} is not yet valid at {now.isoformat()} "
            f"(valid from {cert.not_valid_before_utc.isoformat()})"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateInvalid(
            f"{what} expired at {cert.not_valid_after_utc.isoformat()} (checked at {now.isoformat()})"
        )


def _issuer_candidates(
    cert: x509.Certificate, cas: tuple[x509.Certificate, ...], now: datetime, what: str
) -> list[x509.Certificate]:
    """The CAs named as ``cert``'s issuer that are valid now; an unknown or expired issuer is explained."""
    issuers = [ca for ca in cas if ca.subject == cert.issuer]
    if not issuers:
        raise CertificateInvalid(f"{what} has an unknown issuer {cert.issuer.rfc4514_string()!r}")
    valid = [ca for ca in issuers if ca.not_valid_before_utc <= now <= ca.not_valid_after_utc]
    if not valid:
        _check_validity(issuers[0], now, f"issuing CA of {what}: {describe(issuers[0])}")
    return valid


def _validate_chain(
    cert: x509.Certificate,
    trust: CertificateTrust,
    now: datetime,
    profile: str,
    check_profile: Callable[[x509.Certificate], _Id],
) -> tuple[_Id, x509.Certificate]:
    """Steps (1)-(5): the identity ``cert`` vouches for and the CA that issued it (cached)."""
    if not trust.roots:
        raise CertificateInvalid(f"{describe(cert)} cannot be validated: no approved certificate authorities")
    key = (profile, fingerprint(cert), *trust._cache_key)
    cached = _cache.get(key)
    if cached is not None and cached.not_before <= now <= cached.not_after:
        # The key includes the profile, so the cached identity has the profile's type.
        return cast(_Id, cached.identity), cached.issuer
    name = describe(cert)

    # Steps in the order that gives the most useful message; the verifier below
    # re-checks all of it (and more) in any case.
    # (1) the certificate itself is inside its validity period
    _check_validity(cert, now, name)
    # (2) its issuer is an approved issuing CA or root, valid now
    issuers = _issuer_candidates(cert, trust.intermediates + trust.roots, now, name)
    # (3) an issuing CA is itself issued by an approved root, valid now
    if not any(ca.subject == ca.issuer for ca in issuers):
        ca = issuers[0]
        if not any(root.subject == ca.issuer for root in trust.roots):
            raise CertificateInvalid(
                f"{name} does not chain to an approved CA: its issuing CA {describe(ca)} is issued by "
                f"{ca.issuer.rfc4514_string()!r}, which is not an approved root"
            )
        _issuer_candidates(ca, trust.roots, now, f"issuing CA {describe(ca)} of {name}")
    # (4) the chain verifies (signatures, constraints, RFC 5280 / WebPKI rules)
    try:
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(trust.roots)))
            .time(now)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .build_client_verifier()
        )
        verified = verifier.verify(cert, list(trust.intermediates))
    except verification.VerificationError as exc:
        raise CertificateInvalid(f"{name} does not chain to an approved CA: {exc}") from exc
    except ValueError as exc:
        raise CertificateInvalid(f"{name} cannot be validated: {exc}") from exc
    # (5) the federation profile (key usage, extended key usage, identity URI)
    identity = check_profile(cert)
    chain = verified.chain
    issuer = chain[1]
    _cache.put(
        key,
        _Validated(
            identity,
            issuer,
            max(c.not_valid_before_utc for c in chain),
            min(c.not_valid_after_utc for c in chain),
        ),
    )
    return identity, issuer


def _validate(
    cert: x509.Certificate,
    trust: CertificateTrust,
    now: datetime,
    ocsp_response: bytes | None,
    profile: str,
    check_profile: Callable[[x509.Certificate], _Id],
) -> _Id:
    require_utc(now, "now")
    if not isinstance(cert, x509.Certificate):
        raise TypeError("cert must be an x509.Certificate")
    if not isinstance(trust, CertificateTrust):
        raise TypeError("trust must be a CertificateTrust")
    identity, issuer = _validate_chain(cert, trust, now, profile, check_profile)
    # (6) revocation: a fresh, good OCSP response from an authorised responder (never cached)
    if trust.ocsp is not None:
        if ocsp_response is None:
            raise CertificateInvalid(f"{describe(cert)} has no OCSP response")
        check_ocsp_response(ocsp_response, cert, issuer, trust.ocsp, now)
    return identity


def validate_sign_certificate(
    cert: x509.Certificate,
    trust: CertificateTrust,
    now: datetime,
    *,
    ocsp_response: bytes | None = None,
) -> MemberId:
    """The member a sign certificate vouches for at ``now``; raises :class:`CertificateInvalid`."""
    return _validate(cert, trust, now, ocsp_response, "sign", check_sign_profile)


def validate_auth_certificate(
    cert: x509.Certificate,
    trust: CertificateTrust,
    now: datetime,
    *,
    ocsp_response: bytes | None = None,
) -> SecurityServerId:
    """The security server an auth certificate vouches for at ``now``; raises :class:`CertificateInvalid`."""
    return _validate(cert, trust, now, ocsp_response, "auth", check_auth_profile)
