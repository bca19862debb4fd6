"""Trust failures: what went wrong with a certificate, a signature, a configuration or an anchor.

These carry no origin: who is at fault depends on where the artifact came from, which
only the caller knows.  The gateway translates them into :class:`core.errors.XwegError`
at its edge; the registry logs them.
"""

from __future__ import annotations

__all__ = [
    "TrustError",
    "CertificateInvalid",
    "SignatureInvalid",
    "GlobalConfError",
    "GlobalConfInvalid",
    "GlobalConfExpired",
    "GlobalConfRollback",
    "AnchorInvalid",
    "OcspFetchError",
    "CaStoreError",
    "RegistrationInvalid",
]


class TrustError(Exception):
    """Base of every failure raised by :mod:`trust`."""


class CertificateInvalid(TrustError):
    """A certificate does not chain to an approved CA, is outside its validity, or has the wrong profile."""


class SignatureInvalid(TrustError):
    """A signature is malformed, uses a refused algorithm, or does not verify."""


class GlobalConfError(TrustError):
    """A global configuration document was refused."""


class GlobalConfInvalid(GlobalConfError):
    """The document is malformed, wrongly signed, or for another instance."""


class GlobalConfExpired(GlobalConfError):
    """The document verified but its ``expires_at`` has passed."""


class GlobalConfRollback(GlobalConfError):
    """The document's serial is lower than one already accepted (a replay of an older document)."""


class AnchorInvalid(TrustError):
    """A configuration anchor file is malformed."""


class OcspFetchError(TrustError):
    """An OCSP response could not be fetched: responder unreachable, too slow, or it answered badly.

    This says nothing about the certificate: a verifier still needs a fresh response,
    and keeps using the last good one until it is older than the freshness limit.
    """


class CaStoreError(TrustError):
    """A certificate authority's store is missing, already exists, or refuses an operation."""


class RegistrationInvalid(TrustError):
    """A registration request was refused; ``code`` says which check failed (stable, for clients)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
