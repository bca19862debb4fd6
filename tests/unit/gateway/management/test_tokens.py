"""Management tokens at the API: a good token, then one thing wrong at a time, each a 401 saying why."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import jwt
import pytest

from core.identifiers import SecurityServerId
from gateway.management.tokens import AUDIENCE, issue_management_token
from tests.unit.gateway.conftest import NOW, OTHER_SERVER, SERVER
from tests.unit.gateway.management.conftest import Management
from trust.keys import generate_private_key
from trust.tokens import issue_auditor_token, issue_role_token, key_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**changes: object) -> dict[str, object]:
    issued = int(NOW.timestamp())
    claims: dict[str, object] = {
        "iss": SERVER.slash(),
        "aud": AUDIENCE,
        "sub": "mallory",
        "role": "security-officer",
        "iat": issued,
        "exp": issued + 600,
        "jti": "f9c1",
    }
    claims.update(changes)
    return claims


async def unauthorized(management: Management, token: str | None) -> str:
    """The message of the 401 a GET /clients with ``token`` gets."""
    status, payload, headers = await management.call("GET", "/clients", token=token)
    assert status == 401, payload
    assert headers["WWW-Authenticate"] == 'Bearer realm="xweg-management"'
    assert payload["type"] == "unauthorized" and payload["detail"] == headers["X-Correlation-Id"]
    return str(payload["message"])


async def test_a_good_token_is_accepted(management: Management) -> None:
    status, clients, _ = await management.call("GET", "/clients", token=management.token("observer"))
    assert status == 200 and [c["id"] for c in clients] == ["NRW/MUN/05774032/gewerbeamt"]


async def test_no_token(management: Management) -> None:
    assert await unauthorized(management, None) == "a bearer token is required"


async def test_an_expired_token(management: Management) -> None:
    token = management.token("observer", now=NOW - dt.timedelta(hours=9))
    assert await unauthorized(management, token) == "the token has expired"


async def test_a_token_issued_in_the_future(management: Management) -> None:
    token = management.token("observer", now=NOW + dt.timedelta(minutes=5))
    assert await unauthorized(management, token) == "the token was issued in the future"


async def test_a_token_for_another_audience(management: Management) -> None:
    # The same key and issuer, but for another API: the auditor API, or the registry's.
    auditor = issue_auditor_token(
        management.key, issuer=SERVER.slash(), subject="audit", may_read_bodies=False, now=NOW
    )
    registry = issue_role_token(
        management.key,
        issuer=SERVER.slash(),
        audience="xweg-registry-api",
        roles=("security-officer",),
        subject="x",
        role="security-officer",
        now=NOW,
    )
    for token in (auditor, registry):
        message = await unauthorized(management, token)
        assert message.startswith(f"the token is not for the API {AUDIENCE}")


async def test_a_token_of_another_server(management: Management) -> None:
    token = issue_management_token(
        management.key, server_id=OTHER_SERVER, subject="x", role="observer", now=NOW
    )
    message = await unauthorized(management, token)
    assert message.startswith(f"the token was not issued by {SERVER.slash()}")


async def test_alg_none(management: Management) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps(_claims()).encode())}."
    message = await unauthorized(management, token)
    assert message == "the token's algorithm is 'none'; only ES256 is accepted"


async def test_hmac_with_the_public_key_as_secret(management: Management) -> None:
    # The classic confusion attack: HS256 keyed with the verifier's public key.
    from cryptography.hazmat.primitives import serialization

    secret = management.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(_claims()).encode())}"
    )
    signature = _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    message = await unauthorized(management, f"{signing_input}.{signature}")
    assert message == "the token's algorithm is 'HS256'; only ES256 is accepted"


async def test_a_token_signed_by_an_unknown_key(management: Management) -> None:
    stranger = generate_private_key()
    named = issue_management_token(
        stranger, server_id=SERVER, subject="eve", role="security-officer", now=NOW
    )
    message = await unauthorized(management, named)
    assert message == "the token was signed by another key than this API's token key"
    # Without a key id, the signature itself fails.
    anonymous = jwt.encode(_claims(), stranger, algorithm="ES256")
    message = await unauthorized(management, anonymous)
    assert message == "the token's signature does not verify with this server's key"


async def test_a_role_this_api_does_not_have(management: Management) -> None:
    token = jwt.encode(
        _claims(role="registry-admin"),
        management.key,
        algorithm="ES256",
        headers={"kid": key_id(management.key.public_key())},
    )
    assert await unauthorized(management, token) == "the token names 'registry-admin', not a role of this API"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Basic bWFsbG9yeTpwdw==", "a bearer token is required"),
        ("Bearer", "a bearer token is required"),
        ("Bearer a.b", "the token is not a compact JWS (three dot-separated parts)"),
        ("Bearer " + "a" * 8100, "the token is not a compact JWS (three dot-separated parts)"),
    ],
)
async def test_what_is_not_a_bearer_token(management: Management, authorization: str, message: str) -> None:
    async with management.client.get("/clients", headers={"Authorization": authorization}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["message"] == message


def test_the_issuer_is_the_server() -> None:
    key = generate_private_key()
    token = issue_management_token(key, server_id=SERVER, subject="ana", role="observer", now=NOW)
    claims = jwt.decode(
        token, key.public_key(), algorithms=["ES256"], audience=AUDIENCE, options={"verify_exp": False}
    )
    assert claims["iss"] == SERVER.slash() and isinstance(SERVER, SecurityServerId)
    assert set(claims) == {"iss", "aud", "sub", "role", "iat", "exp", "jti"}
    with pytest.raises(ValueError, match="role must be one of"):
        issue_management_token(key, server_id=SERVER, subject="ana", role="root", now=NOW)
