"""Bearer tokens for management and auditor APIs: ES256 JWTs naming a subject and a role.

Pure: no I/O.  Two kinds, one verification:

* **role tokens** (:func:`issue_role_token`, :func:`verify_role_token`) for a JSON API
  with a fixed audience, issuer and set of roles, such as the registry's and a security
  server's management APIs.  Claims: ``iss``, ``aud``, ``sub``, ``role``, ``iat``,
  ``exp``, ``jti``.  In step 6 the role must be one of the API's (else the token is
  invalid: 401); which of them may do what is the API's business (403).
* **auditor tokens** (:func:`issue_auditor_token`, :func:`verify_auditor_token`): a
  security server signs them with its own auditor-token key (where that key lives is
  the gateway's business, :mod:`gateway.tokens`) and its auditor API checks them.
  Claims::

    {"iss": "<security server id>", "aud": "xweg-auditor-api", "sub": "<auditor name>",
     "role": "auditor", "bodies": true | false, "iat": <s>, "exp": <s>, "jti": "<uuid>"}

Both have the protected header ``{"alg": "ES256", "typ": "JWT", "kid": <RFC 7638
thumbprint>}``.  Verification is a function of the token, the public key, the expected
issuer (and audience) and ``now``, in this order (the step numbers are those in the code):

1. the token is a compact JWS of bounded size whose header names ES256 (``none``, HMAC
   and every other algorithm are refused before any key is used) and, when it names a
   key, names this one;
2. the signature verifies with the public key (pyjwt, ``algorithms=["ES256"]``);
3. ``aud`` is exactly the API's, ``iss`` exactly the expected issuer;
4. ``iat`` and ``exp`` are present, numeric, ``iat`` not in the future and ``exp`` not
   past (each with a leeway of at most 60 s), and the lifetime is at most
   :data:`MAX_TTL_S`; an ``nbf``, if present, is honoured;
5. ``sub``, ``jti`` (and an auditor token's ``role`` and ``bodies``) are well-formed;
6. the role is ``auditor`` (auditor tokens), or one of the API's roles (role tokens).

A failure of steps 1-5 raises :class:`TokenInvalid` (the caller answers 401); a valid
auditor token for another role raises :class:`TokenForbidden` (403).  pyjwt checks
times against the system clock, so its own time checks are turned off and step 4 uses
``now``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import require_utc
from trust.errors import TrustError

__all__ = [
    "AUDIENCE",
    "ALGORITHM",
    "ROLE_AUDITOR",
    "DEFAULT_TTL_S",
    "MAX_TTL_S",
    "MAX_LEEWAY_S",
    "MAX_TOKEN_LENGTH",
    "MAX_SUBJECT_LENGTH",
    "TokenError",
    "TokenInvalid",
    "TokenForbidden",
    "ExpectedToken",
    "verified_claims",
    "AuditorIdentity",
    "RoleIdentity",
    "key_id",
    "issue_auditor_token",
    "verify_auditor_token",
    "issue_role_token",
    "verify_role_token",
]

AUDIENCE = "xweg-auditor-api"
ALGORITHM = "ES256"
ROLE_AUDITOR = "auditor"
DEFAULT_TTL_S = 8 * 3600  # one working day
MAX_TTL_S = 30 * 24 * 3600  # a leaked token is useless after a month at most
MAX_LEEWAY_S = 60.0
#: A token of ours is about 600 characters; anything far larger is not one.
MAX_TOKEN_LENGTH = 8 * 1024  # characters
MAX_SUBJECT_LENGTH = 128  # characters
_MAX_TOKEN_ID_LENGTH = 128  # characters
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti"]


class TokenError(TrustError):
    """A bearer token was refused."""


class TokenInvalid(TokenError):
    """Not a valid token of this issuer: malformed, forged, expired, or for someone else."""


class TokenForbidden(TokenError):
    """A valid token that does not carry the role the auditor API requires."""


@dataclass(frozen=True)
class RoleIdentity:
    """Who a verified role token speaks for, and in which role."""

    subject: str
    role: str
    token_id: str
    expires_at: dt.datetime  # UTC

    def __post_init__(self) -> None:
        _check_name(self.subject, "subject", MAX_SUBJECT_LENGTH, ValueError)
        _check_name(self.role, "role", MAX_SUBJECT_LENGTH, ValueError)
        _check_name(self.token_id, "token id", _MAX_TOKEN_ID_LENGTH, ValueError)
        require_utc(self.expires_at, "expires_at")


@dataclass(frozen=True)
class AuditorIdentity:
    """Who a verified token speaks for, and what it allows."""

    subject: str
    may_read_bodies: bool
    token_id: str
    expires_at: dt.datetime  # UTC

    def __post_init__(self) -> None:
        _check_name(self.subject, "subject", MAX_SUBJECT_LENGTH, ValueError)
        _check_name(self.token_id, "token id", _MAX_TOKEN_ID_LENGTH, ValueError)
        if not isinstance(self.may_read_bodies, bool):
            raise ValueError("may_read_bodies must be a bool")
        require_utc(self.expires_at, "expires_at")


def _check_name(value: object, what: str, limit: int, error: type[Exception]) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise error(f"{what} must be a string of 1 to {limit} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise error(f"{what} contains control characters")
    return value


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _check_key(key: object) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("a token-signing key must be an EC P-256 key")


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of a P-256 public key: the ``kid``."""
    _check_key(public_key)
    numbers = public_key.public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode("ascii")
    return _b64url(hashlib.sha256(canonical).digest())


def _sign(private_key: ec.EllipticCurvePrivateKey, claims: dict[str, Any]) -> str:
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise ValueError("a token is signed with an EC P-256 private key")
    public_key = private_key.public_key()
    _check_key(public_key)
    headers = {"typ": "JWT", "kid": key_id(public_key)}
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers=headers)


def _base_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    role: str,
    now: dt.datetime,
    ttl_s: int,
    token_id: str | None,
) -> dict[str, Any]:
    _check_name(issuer, "issuer", 255, ValueError)
    _check_name(subject, "subject", MAX_SUBJECT_LENGTH, ValueError)
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"a token's lifetime must be 1 to {MAX_TTL_S} seconds")
    issued = int(require_utc(now, "now").timestamp())
    return {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "role": role,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": _check_name(token_id or str(uuid.uuid4()), "token id", _MAX_TOKEN_ID_LENGTH, ValueError),
    }


def issue_auditor_token(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    issuer: str,
    subject: str,
    may_read_bodies: bool,
    now: dt.datetime,
    ttl_s: int = DEFAULT_TTL_S,
    token_id: str | None = None,
) -> str:
    """A signed auditor token for ``subject``, valid from ``now`` for ``ttl_s`` seconds.

    ``token_id`` (the ``jti``) defaults to a random UUID; every audit-log entry names it.
    """
    if not isinstance(may_read_bodies, bool):
        raise ValueError("may_read_bodies must be a bool")
    claims = _base_claims(
        issuer=issuer,
        audience=AUDIENCE,
        subject=subject,
        role=ROLE_AUDITOR,
        now=now,
        ttl_s=ttl_s,
        token_id=token_id,
    )
    claims["bodies"] = may_read_bodies
    return _sign(private_key, claims)


def issue_role_token(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    issuer: str,
    audience: str,
    roles: Collection[str],
    subject: str,
    role: str,
    now: dt.datetime,
    ttl_s: int = DEFAULT_TTL_S,
    token_id: str | None = None,
) -> str:
    """A signed role token of ``issuer`` for the API ``audience``: ``subject`` in ``role``
    (one of ``roles``), valid from ``now`` for ``ttl_s`` seconds."""
    if role not in roles:
        raise ValueError(f"role must be one of {', '.join(roles)}")
    _check_name(audience, "audience", 255, ValueError)
    claims = _base_claims(
        issuer=issuer,
        audience=audience,
        subject=subject,
        role=role,
        now=now,
        ttl_s=ttl_s,
        token_id=token_id,
    )
    return _sign(private_key, claims)


def _numeric_date(claims: dict[str, Any], name: str, expected: ExpectedToken) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise expected.error(f"{expected.what}'s {name!r} claim is not a NumericDate")
    return float(value)


@dataclass(frozen=True)
class ExpectedToken:
    """What a token must be, how refusals name it, and what they raise.

    Every kind of bearer token (auditor, role, client tokens) is checked by
    :func:`verified_claims` against one of these, so the steps are written once.
    """

    issuer: str
    audience: str
    key_name: str  # "this server's auditor-token key"
    audience_name: str  # "the auditor API"
    issuer_name: str  # "this security server"
    what: str = "the token"  # how messages name the token: "the client token"
    max_ttl_s: int = MAX_TTL_S
    max_subject_length: int = MAX_SUBJECT_LENGTH
    require_kid: bool = False  # a header without ``kid`` is refused too
    error: type[TokenInvalid] = field(default_factory=lambda: TokenInvalid)


def verified_claims(
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    expected: ExpectedToken,
    now: dt.datetime,
    leeway_s: float = MAX_LEEWAY_S,
) -> tuple[dict[str, Any], str, str, float]:
    """Steps 1-5 of the module docstring (without the kind's own claims): the claims, the
    subject, the token id and the expiry (seconds since the epoch).

    Refusals raise ``expected.error`` with a message naming the token ``expected.what``.
    """
    _check_key(public_key)
    require_utc(now, "now")
    error, what = expected.error, expected.what
    noun = what.removeprefix("the ")
    if (
        isinstance(leeway_s, bool)
        or not isinstance(leeway_s, int | float)
        or not 0 <= leeway_s <= MAX_LEEWAY_S
    ):
        raise ValueError(f"leeway must be 0 to {MAX_LEEWAY_S:g} seconds")
    # (1) shape and algorithm, before any key is used
    if not isinstance(token, str) or not token:
        raise error(f"no {noun}")
    if len(token) > MAX_TOKEN_LENGTH:
        raise error(f"{what} is longer than {MAX_TOKEN_LENGTH} characters")
    if token.count(".") != 2:
        raise error(f"{what} is not a compact JWS (three dot-separated parts)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise error(f"{what}'s header cannot be read ({exc})") from exc
    algorithm = header.get("alg")
    if algorithm != ALGORITHM:
        raise error(f"{what}'s algorithm is {algorithm!r}; only {ALGORITHM} is accepted")
    if ("kid" in header or expected.require_kid) and header.get("kid") != key_id(public_key):
        raise error(f"{what} was signed by another key than {expected.key_name}")
    # (2) signature and (3) audience and issuer; times are step 4's, against ``now``
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=expected.audience,
            issuer=expected.issuer,
            options={
                "require": _REQUIRED_CLAIMS,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "strict_aud": True,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise error(f"{what}'s signature does not verify with this server's key") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise error(f"{what} lacks the {exc.claim!r} claim") from exc
    except jwt.InvalidAudienceError as exc:
        raise error(f"{what} is not for {expected.audience_name} ({exc})") from exc
    except jwt.InvalidIssuerError as exc:
        raise error(f"{what} was not issued by {expected.issuer_name} ({exc})") from exc
    except jwt.InvalidTokenError as exc:
        raise error(f"{what} is not valid ({exc})") from exc
    # (4) times
    moment = now.timestamp()
    issued_at = _numeric_date(claims, "iat", expected)
    expires_at = _numeric_date(claims, "exp", expected)
    if issued_at > moment + leeway_s:
        raise error(f"{what} was issued in the future")
    if expires_at <= moment - leeway_s:
        raise error(f"{what} has expired")
    if expires_at <= issued_at:
        raise error(f"{what} expires before it was issued")
    if expires_at - issued_at > expected.max_ttl_s:
        raise error(f"{what}'s lifetime exceeds {expected.max_ttl_s} seconds")
    if "nbf" in claims and _numeric_date(claims, "nbf", expected) > moment + leeway_s:
        raise error(f"{what} is not valid yet")
    # (5) identity
    subject = _check_name(claims["sub"], f"{what}'s subject", expected.max_subject_length, error)
    token_id = _check_name(claims["jti"], f"{what}'s id", _MAX_TOKEN_ID_LENGTH, error)
    return claims, subject, token_id, expires_at


def verify_auditor_token(
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: str,
    now: dt.datetime,
    leeway_s: float = MAX_LEEWAY_S,
) -> AuditorIdentity:
    """Verify an auditor bearer token (see the module docstring) and say who it speaks for.

    Raises :class:`TokenInvalid` or :class:`TokenForbidden`; ``ValueError`` for a
    caller's mistake (a key that is not P-256, a leeway over :data:`MAX_LEEWAY_S`).
    """
    expected = ExpectedToken(
        issuer=issuer,
        audience=AUDIENCE,
        key_name="this server's auditor-token key",
        audience_name="the auditor API",
        issuer_name="this security server",
    )
    claims, subject, token_id, expires_at = verified_claims(token, public_key, expected, now, leeway_s)
    # (5) the auditor's rights
    role = claims.get("role")
    bodies = claims.get("bodies", False)
    if not isinstance(bodies, bool):
        raise TokenInvalid("the token's 'bodies' claim must be true or false")
    # (6) the role: a token of this server without it is genuine but grants nothing here
    if role is None:
        raise TokenForbidden("the token carries no role")
    if role != ROLE_AUDITOR:
        shown = repr(role) if isinstance(role, str) and len(role) <= 64 else "another"
        raise TokenForbidden(f"the token's role is {shown}, not {ROLE_AUDITOR!r}")
    return AuditorIdentity(
        subject=subject,
        may_read_bodies=bodies,
        token_id=token_id,
        expires_at=dt.datetime.fromtimestamp(expires_at, dt.UTC),
    )


def verify_role_token(
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: str,
    audience: str,
    roles: Collection[str],
    now: dt.datetime,
    leeway_s: float = MAX_LEEWAY_S,
) -> RoleIdentity:
    """Verify a role token for the API ``audience`` of ``issuer`` and say who it speaks for.

    Steps 1-5 as for auditor tokens; then the ``role`` claim must be one of ``roles``.
    Every failure raises :class:`TokenInvalid` (the caller answers 401); ``ValueError``
    for a caller's mistake (a key that is not P-256, a leeway over :data:`MAX_LEEWAY_S`).
    """
    expected = ExpectedToken(
        issuer=issuer,
        audience=audience,
        key_name="this API's token key",
        audience_name=f"the API {audience}",
        issuer_name=issuer,
    )
    claims, subject, token_id, expires_at = verified_claims(token, public_key, expected, now, leeway_s)
    # (6) the role, one of this API's
    role = claims.get("role")
    if not isinstance(role, str) or role not in roles:
        shown = repr(role) if isinstance(role, str) and len(role) <= 64 else "no role"
        raise TokenInvalid(f"the token names {shown}, not a role of this API")
    return RoleIdentity(
        subject=subject,
        role=role,
        token_id=token_id,
        expires_at=dt.datetime.fromtimestamp(expires_at, dt.UTC),
    )
