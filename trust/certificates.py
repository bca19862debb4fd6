"""Certificate validation at a given time: chain to an approved CA, validity, and profile.

:func:`validate_sign_certificate` and :func:`validate_auth_certificate` are pure: they
take a certificate, the approved CAs (from the verified global configuration) and
``now``, and return the identity the certificate vouches for or raise
:class:`~trust.errors.CertificateInvalid`.  Chain building and RFC 5280 checks are
cryptography's ``x509.verification`` (WebPKI client profile); the federation's own
profile rules (:mod:`trust.profiles`) are checked on top, so a sign certificate can
never authenticate TLS and an auth certificate can never sign messages.

Revocation is not checked here; :mod:`trust.ocsp` does that with its own freshness.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, cast

from cryptography import x509
from cryptography.x509 import verification

from core.clock import require_utc
from core.identifiers import MemberId, SecurityServerId
from trust.errors import CertificateInvalid
from trust.profiles import check_auth_profile, check_sign_profile, describe, fingerprint

__all__ = [
    "fingerprint",
    "describe",
    "validate_sign_certificate",
    "validate_auth_certificate",
    "MAX_CHAIN_DEPTH",
]

#: Root CA -> end entity; the federation has no intermediate CAs.
MAX_CHAIN_DEPTH = 2
#: Bound on remembered successful validations (one per member or server, in practice).
_CACHE_SIZE = 1024

_Id = TypeVar("_Id", MemberId, SecurityServerId)


@dataclass(frozen=True, slots=True)
class _Validated:
    """A chain that verified once: it verifies again at any time inside ``[not_before, not_after]``."""

    identity: MemberId | SecurityServerId
    not_before: datetime
    not_after: datetime


class _ValidationCache:
    """A bounded LRU of successful validations, keyed by (profile, certificate, approved CAs).

    Chain validation depends on time only through the validity periods of the
    certificates in the chain, so a cached success is reused only when ``now`` lies
    inside the intersection of those periods; failures are never cached.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str, frozenset[str]], _Validated] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, frozenset[str]]) -> _Validated | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str, frozenset[str]], entry: _Validated) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _ValidationCache(_CACHE_SIZE)


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


def _validate(
    cert: x509.Certificate,
    roots: Sequence[x509.Certificate],
    now: datetime,
    profile: str,
    check_profile: Callable[[x509.Certificate], _Id],
) -> _Id:
    require_utc(now, "now")
    if not isinstance(cert, x509.Certificate):
        raise TypeError("cert must be an x509.Certificate")
    name = describe(cert)
    if not roots:
        raise CertificateInvalid(f"{name} cannot be validated: no approved certificate authorities")
    key = (profile, fingerprint(cert), frozenset(fingerprint(root) for root in roots))
    cached = _cache.get(key)
    if cached is not None and cached.not_before <= now <= cached.not_after:
        # The key includes the profile, so the cached identity has the profile's type.
        return cast(_Id, cached.identity)

    # Steps in the order that gives the most useful message; the verifier below
    # re-checks all of it (and more) in any case.
    # (1) the certificate itself is inside its validity period
    _check_validity(cert, now, name)
    # (2) its issuer is one of the approved CAs, and that CA is valid now
    issuers = [root for root in roots if root.subject == cert.issuer]
    if not issuers:
        raise CertificateInvalid(f"{name} has an unknown issuer {cert.issuer.rfc4514_string()!r}")
    valid_issuers = [root for root in issuers if root.not_valid_before_utc <= now <= root.not_valid_after_utc]
    if not valid_issuers:
        _check_validity(issuers[0], now, f"issuing CA of {name}: {describe(issuers[0])}")
    # (3) the chain verifies (signature by the CA, RFC 5280 / WebPKI rules)
    try:
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(roots)))
            .time(now)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .build_client_verifier()
        )
        verified = verifier.verify(cert, [])
    except verification.VerificationError as exc:
        raise CertificateInvalid(f"{name} does not chain to an approved CA: {exc}") from exc
    except ValueError as exc:
        raise CertificateInvalid(f"{name} cannot be validated: {exc}") from exc
    # (4) the federation profile (key usage, extended key usage, identity URI)
    identity = check_profile(cert)
    chain = verified.chain
    _cache.put(
        key,
        _Validated(
            identity,
            max(c.not_valid_before_utc for c in chain),
            min(c.not_valid_after_utc for c in chain),
        ),
    )
    return identity


def validate_sign_certificate(
    cert: x509.Certificate, roots: Sequence[x509.Certificate], now: datetime
) -> MemberId:
    """The member a sign certificate vouches for at ``now``; raises :class:`CertificateInvalid`."""
    return _validate(cert, roots, now, "sign", check_sign_profile)


def validate_auth_certificate(
    cert: x509.Certificate, roots: Sequence[x509.Certificate], now: datetime
) -> SecurityServerId:
    """The security server an auth certificate vouches for at ``now``; raises :class:`CertificateInvalid`."""
    return _validate(cert, roots, now, "auth", check_auth_profile)
