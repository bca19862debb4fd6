"""Role tokens (trust.tokens): a good token, then one thing changed at a time, each refused before use."""

from __future__ import annotations

import base64
import datetime as dt
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import utc
from trust.keys import generate_private_key
from trust.tokens import MAX_TTL_S, TokenInvalid, issue_role_token, key_id, verify_role_token

NOW = utc(2025, 3, 1, 12)
ISSUER, AUDIENCE, ROLES = "xweg-registry", "xweg-registry-api", ("registry-admin", "observer")
KEY = generate_private_key()
PUBLIC = KEY.public_key()


def _token(**changes: object) -> str:
    arguments: dict[str, object] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "roles": ROLES,
        "subject": "ana",
        "role": "observer",
        "now": NOW,
    }
    arguments.update(changes)
    return issue_role_token(KEY, **arguments)  # type: ignore[arg-type]


def _verify(token: str, *, key: ec.EllipticCurvePublicKey = PUBLIC, now: dt.datetime = NOW) -> object:
    return verify_role_token(token, key, issuer=ISSUER, audience=AUDIENCE, roles=ROLES, now=now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims() -> dict[str, object]:
    return jwt.decode(_token(), options={"verify_signature": False})


def test_a_good_token() -> None:
    identity = verify_role_token(
        _token(), KEY.public_key(), issuer=ISSUER, audience=AUDIENCE, roles=ROLES, now=NOW
    )
    assert (identity.subject, identity.role) == ("ana", "observer")
    assert identity.expires_at == NOW + dt.timedelta(hours=8)
    assert jwt.get_unverified_header(_token())["kid"] == key_id(KEY.public_key())


@pytest.mark.parametrize(
    ("alg", "message"),
    [("none", "'none'"), ("HS256", "'HS256'"), ("ES384", "'ES384'"), ("RS256", "'RS256'")],
)
def test_other_algorithms_are_refused_before_any_key_is_used(alg: str, message: str) -> None:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps(_claims()).encode())}.{_b64(b'x' * 64)}"
    with pytest.raises(TokenInvalid, match=f"algorithm is {message}; only ES256"):
        _verify(token)


def test_wrong_audience_issuer_key_time_and_role() -> None:
    with pytest.raises(TokenInvalid, match=f"not for the API {AUDIENCE}"):
        _verify(_token(audience="xweg-management-api"))
    with pytest.raises(TokenInvalid, match=f"not issued by {ISSUER}"):
        _verify(_token(issuer="NRW/MUN/05774032/ss1"))
    with pytest.raises(TokenInvalid, match="another key"):
        _verify(_token(), key=generate_private_key().public_key())
    with pytest.raises(TokenInvalid, match="has expired"):
        _verify(_token(), now=NOW + dt.timedelta(hours=9))
    with pytest.raises(TokenInvalid, match="issued in the future"):
        _verify(_token(), now=NOW - dt.timedelta(minutes=5))
    with pytest.raises(TokenInvalid, match="'registry-admin', not a role of this API"):
        verify_role_token(
            _token(role="registry-admin"),
            KEY.public_key(),
            issuer=ISSUER,
            audience=AUDIENCE,
            roles=("observer",),
            now=NOW,
        )


def test_what_is_not_issued() -> None:
    with pytest.raises(ValueError, match="role must be one of"):
        _token(role="root")
    with pytest.raises(ValueError, match="lifetime"):
        _token(ttl_s=MAX_TTL_S + 1)
    with pytest.raises(ValueError, match="subject"):
        _token(subject="ana\n")
