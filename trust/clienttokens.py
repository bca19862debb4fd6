"""Client tokens: ES256 JWTs with which an information system shows which client it acts for.

Pure: no I/O.  A security server signs them with its client-token key (kept by
:mod:`gateway.tokens`, a key of its own, never the auditor-token key) and checks them
with :func:`verify_client_token`, a function of the token, the public key, this
server's id, the client the request acts for and ``now``.  An information system sends
one as ``Authorization: Bearer <token>``.  The claims::

    {"iss": "<security server id>", "aud": "xweg-client-proxy",
     "sub": "<client id, X-Road slash form>", "iat": <s>, "exp": <s>, "jti": "<uuid>"}

and the protected header ``{"alg": "ES256", "typ": "JWT", "kid": <RFC 7638 thumbprint>}``.

Verification, in this order (the step numbers are those in the code):

1. the token is a compact JWS of bounded size whose header names ES256 (``none``, HMAC
   and every other algorithm are refused before any key is used) and names this key;
2. the signature verifies with the public key (pyjwt, ``algorithms=["ES256"]``);
3. ``aud`` is exactly the client proxy's, ``iss`` exactly this server;
4. ``iat`` and ``exp`` are present, numeric, ``iat`` not in the future and ``exp`` not
   past (each with a leeway of at most 60 s), and the lifetime is at most
   :data:`MAX_TTL_S`; an ``nbf``, if present, is honoured;
5. ``sub`` is an X-Road client id and ``jti`` is well-formed;
6. ``sub`` is exactly the client the request acts for.

Every failure raises :class:`ClientTokenInvalid` with a message saying which step.
pyjwt checks times against the system clock, so its own time checks are turned off and
step 4 uses ``now``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import require_utc
from core.identifiers import (
    ClientId,
    IdentifierError,
    MemberId,
    SecurityServerId,
    SubsystemId,
    parse_client_slash,
)
from trust.tokens import (
    ALGORITHM,
    MAX_LEEWAY_S,
    MAX_TOKEN_LENGTH,
    ExpectedToken,
    TokenInvalid,
    key_id,
    verified_claims,
)

__all__ = [
    "AUDIENCE",
    "DEFAULT_TTL_S",
    "MAX_TTL_S",
    "ClientTokenInvalid",
    "ClientToken",
    "issue_client_token",
    "unverified_key_id",
    "names_client_audience",
    "verify_client_token",
]

AUDIENCE = "xweg-client-proxy"
DEFAULT_TTL_S = 30 * 24 * 3600  # an information system's credential, renewed monthly
MAX_TTL_S = 366 * 24 * 3600  # a leaked token is useless after a year at most
_MAX_TOKEN_ID_LENGTH = 128  # characters


class ClientTokenInvalid(TokenInvalid):
    """Not a valid client token of this server for this client: the message says why."""


@dataclass(frozen=True)
class ClientToken:
    """A verified client token: the client it is bound to, its id and when it expires."""

    client: ClientId
    token_id: str
    expires_at: dt.datetime  # UTC

    def __post_init__(self) -> None:
        if not isinstance(self.client, MemberId | SubsystemId):
            raise ValueError("a client token is bound to a member or subsystem id")
        _check_token_id(self.token_id, ValueError)
        require_utc(self.expires_at, "expires_at")


def _check_token_id(value: object, error: type[Exception]) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TOKEN_ID_LENGTH:
        raise error(f"a token id must be a string of 1 to {_MAX_TOKEN_ID_LENGTH} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise error("a token id contains control characters")
    return value


def _check_key(key: object) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("a client-token key must be an EC P-256 key")


def issue_client_token(
    key: ec.EllipticCurvePrivateKey,
    *,
    server_id: SecurityServerId,
    client: ClientId,
    now: dt.datetime,
    ttl_s: int = DEFAULT_TTL_S,
    token_id: str | None = None,
) -> str:
    """A token with which an information system acts for ``client`` on ``server_id``,
    valid from ``now`` for ``ttl_s`` seconds; ``token_id`` defaults to a random UUID."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("a client token is signed with an EC P-256 private key")
    _check_key(key.public_key())
    if not isinstance(server_id, SecurityServerId):
        raise ValueError("server_id must be a SecurityServerId")
    if not isinstance(client, MemberId | SubsystemId):
        raise ValueError("client must be a member or subsystem id")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"a client token's lifetime must be 1 to {MAX_TTL_S} seconds")
    issued = int(require_utc(now, "now").timestamp())
    claims: dict[str, Any] = {
        "iss": server_id.slash(),
        "aud": AUDIENCE,
        "sub": client.slash(),
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": _check_token_id(token_id or str(uuid.uuid4()), ValueError),
    }
    headers = {"typ": "JWT", "kid": key_id(key.public_key())}
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers=headers)


def unverified_key_id(token: str) -> str | None:
    """The ``kid`` a bearer token's header names, unverified; ``None`` when it names none or
    is no compact JWS of bounded size.  Only for telling our tokens from others'."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        return None
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def names_client_audience(token: str) -> bool:
    """Whether a bearer token's claims, unverified, name the client proxy as audience.

    A token this server issued with a key it no longer has still says whom it is for:
    such a token is ours to refuse, not the provider's to receive.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        return False
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return False
    audience = claims.get("aud")
    return audience == AUDIENCE or (isinstance(audience, list) and AUDIENCE in audience)


def verify_client_token(
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: SecurityServerId,
    client: ClientId,
    now: dt.datetime,
    leeway_s: float = MAX_LEEWAY_S,
) -> ClientToken:
    """Verify a client token (see the module docstring) for a request acting for ``client``.

    Raises :class:`ClientTokenInvalid`; ``ValueError`` for a caller's mistake (a key that
    is not P-256, a leeway over :data:`trust.tokens.MAX_LEEWAY_S`).
    """
    expected = ExpectedToken(
        issuer=issuer.slash(),
        audience=AUDIENCE,
        key_name="this server's client-token key",
        audience_name="the client proxy",
        issuer_name="this security server",
        what="the client token",
        max_ttl_s=MAX_TTL_S,
        max_subject_length=512,  # an X-Road client id (each part up to 255 characters, rarely near)
        require_kid=True,
        error=ClientTokenInvalid,
    )
    _check_key(public_key)
    claims, subject, token_id, expires_at = verified_claims(token, public_key, expected, now, leeway_s)
    # (5) the bound client is an X-Road client id
    try:
        bound = parse_client_slash(subject)
    except IdentifierError as exc:
        raise ClientTokenInvalid(f"the client token's subject is not an X-Road client id ({exc})") from exc
    # (6) bound to exactly the client the request acts for
    if bound != client:
        raise ClientTokenInvalid(
            f"the client token is bound to client {bound.slash()}, not to {client.slash()}"
        )
    return ClientToken(bound, token_id, dt.datetime.fromtimestamp(expires_at, dt.UTC))
