"""Auditor tokens: issuing, verifying, the attacker's side, the key file and ``xweg token issue``."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import stat
import threading
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import FixedClock
from gateway.tokens import TokenKey, TokenKeyError, load_or_create_key_file, token_key_path
from trust.keys import generate_private_key
from trust.tokens import (
    AUDIENCE,
    MAX_TTL_S,
    AuditorIdentity,
    TokenForbidden,
    TokenInvalid,
    issue_auditor_token,
    key_id,
    verify_auditor_token,
)
from xweg.tokencmd import add_token_commands, parse_ttl, run_token_command

NOW = dt.datetime(2025, 3, 4, 10, 0, 0, tzinfo=dt.UTC)
ISSUER = "EE/GOV/70000001/ss1"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


@pytest.fixture(scope="module")
def other_key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "Prüferin Schmidt",
        "role": "auditor",
        "bodies": False,
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 3600,
        "jti": "a1b2",
    }
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def signed(
    key: ec.EllipticCurvePrivateKey, headers: dict[str, object] | None = None, **changes: object
) -> str:
    return jwt.encode(claims(**changes), key, algorithm="ES256", headers=headers)


def verify(token: str, key: ec.EllipticCurvePrivateKey, *, now: dt.datetime = NOW) -> AuditorIdentity:
    return verify_auditor_token(token, key.public_key(), issuer=ISSUER, now=now)


# -- the good path -----------------------------------------------------------------


def test_issued_token_verifies_and_says_who_and_what(key: ec.EllipticCurvePrivateKey) -> None:
    token = issue_auditor_token(
        key, issuer=ISSUER, subject="auditor-1", may_read_bodies=True, now=NOW, ttl_s=8 * 3600
    )
    identity = verify(token, key)
    assert identity.subject == "auditor-1" and identity.may_read_bodies is True
    assert identity.expires_at == NOW + dt.timedelta(hours=8)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "typ": "JWT", "kid": key_id(key.public_key())}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["jti"] == identity.token_id and payload["role"] == "auditor" and payload["aud"] == AUDIENCE
    second = issue_auditor_token(key, issuer=ISSUER, subject="auditor-1", may_read_bodies=False, now=NOW)
    assert verify(second, key).token_id != identity.token_id
    assert verify(second, key).may_read_bodies is False


def test_leeway_tolerates_a_minute_of_skew_and_no_more(key: ec.EllipticCurvePrivateKey) -> None:
    token = issue_auditor_token(key, issuer=ISSUER, subject="a", may_read_bodies=False, now=NOW, ttl_s=600)
    verify(token, key, now=NOW + dt.timedelta(seconds=600 + 59))
    verify(token, key, now=NOW - dt.timedelta(seconds=59))
    with pytest.raises(TokenInvalid, match="expired"):
        verify(token, key, now=NOW + dt.timedelta(seconds=600 + 61))
    with pytest.raises(TokenInvalid, match="issued in the future"):
        verify(token, key, now=NOW - dt.timedelta(seconds=61))
    with pytest.raises(ValueError, match="leeway"):
        verify_auditor_token(token, key.public_key(), issuer=ISSUER, now=NOW, leeway_s=61)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl_s": 0}, "lifetime"),
        ({"ttl_s": MAX_TTL_S + 1}, "lifetime"),
        ({"subject": ""}, "subject"),
        ({"subject": "a\nb"}, "control"),
        ({"now": dt.datetime(2025, 3, 4)}, "UTC"),
    ],
)
def test_issuing_refuses_bad_arguments(
    key: ec.EllipticCurvePrivateKey, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"issuer": ISSUER, "subject": "a", "may_read_bodies": False, "now": NOW}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        issue_auditor_token(key, **arguments)  # type: ignore[arg-type]


# -- the attacker's side -----------------------------------------------------------


def test_token_signed_by_another_key_is_refused(
    key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(TokenInvalid, match="another key"):
        verify(signed(other_key, {"kid": key_id(other_key.public_key())}), key)
    # Claiming our key id does not help: the signature decides.
    with pytest.raises(TokenInvalid, match="signature does not verify"):
        verify(signed(other_key, {"kid": key_id(key.public_key())}), key)
    with pytest.raises(TokenInvalid, match="signature does not verify"):
        verify(signed(other_key), key)


def test_changed_claims_break_the_signature(key: ec.EllipticCurvePrivateKey) -> None:
    header, _, signature = signed(key).split(".")
    forged = b64url(json.dumps(claims(bodies=True)).encode())
    with pytest.raises(TokenInvalid, match="signature does not verify"):
        verify(f"{header}.{forged}.{signature}", key)


def test_alg_none_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(bodies=True)).encode())
    with pytest.raises(TokenInvalid, match="'none'"):
        verify(f"{header}.{payload}.", key)


def test_hs256_with_the_public_key_as_secret_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    # The classic key-confusion attack: an HMAC keyed with the (public) verification key.
    secret = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(TokenInvalid, match="'HS256'"):
        verify(f"{header}.{payload}.{b64url(mac)}", key)


def test_other_es_algorithms_are_refused(key: ec.EllipticCurvePrivateKey) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(TokenInvalid, match="'ES384'"):
        verify(jwt.encode(claims(), p384, algorithm="ES384"), key)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aud": "xweg-management-api"}, "not for the auditor API"),
        ({"aud": [AUDIENCE, "other"]}, "not for the auditor API"),
        ({"iss": "EE/GOV/70000002/ss1"}, "not issued by this security server"),
        ({"exp": None}, "'exp'"),
        ({"iat": None}, "'iat'"),
        ({"jti": None}, "'jti'"),
        ({"sub": None}, "'sub'"),
        ({"aud": None}, "'aud'"),
        ({"iss": None}, "'iss'"),
        ({"exp": "tomorrow"}, "not a NumericDate|not valid"),
        ({"exp": int(NOW.timestamp()) + MAX_TTL_S + 1}, "lifetime"),
        ({"exp": int(NOW.timestamp()) - 3600, "iat": int(NOW.timestamp())}, "expired"),
        ({"nbf": int(NOW.timestamp()) + 600}, "not valid yet"),
        ({"bodies": "yes"}, "'bodies'"),
        ({"sub": ""}, "subject"),
    ],
)
def test_bad_claims_are_refused(
    key: ec.EllipticCurvePrivateKey, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(TokenInvalid, match=message):
        verify(jwt.encode(claims(**changes), key, algorithm="ES256"), key)


@pytest.mark.parametrize(
    ("role", "message"), [(None, "no role"), ("admin", "'admin'"), (["auditor"], "another")]
)
def test_a_genuine_token_without_the_auditor_role_is_forbidden(
    key: ec.EllipticCurvePrivateKey, role: object, message: str
) -> None:
    token = signed(key, role=None) if role is None else signed(key, role=role)
    with pytest.raises(TokenForbidden, match=message):
        verify(token, key)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "x" * 9000, "!!!.???.###"])
def test_garbage_is_invalid_not_a_crash(key: ec.EllipticCurvePrivateKey, token: str) -> None:
    with pytest.raises(TokenInvalid):
        verify(token, key)


def test_verification_key_must_be_p256(key: ec.EllipticCurvePrivateKey) -> None:
    token = signed(key)
    with pytest.raises(ValueError, match="P-256"):
        verify_auditor_token(
            token, ec.generate_private_key(ec.SECP384R1()).public_key(), issuer=ISSUER, now=NOW
        )


# -- the key file ------------------------------------------------------------------


def test_key_is_created_once_encrypted_and_private(tmp_path: Path) -> None:
    path = token_key_path(tmp_path / "data", TokenKey.AUDITOR)
    first = load_or_create_key_file(path, b"passphrase", TokenKey.AUDITOR)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    again = load_or_create_key_file(path, b"passphrase", TokenKey.AUDITOR)
    assert key_id(again.public_key()) == key_id(first.public_key())
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_key_without_passphrase_is_plain_pkcs8(tmp_path: Path) -> None:
    path = token_key_path(tmp_path, TokenKey.AUDITOR)
    load_or_create_key_file(path, None, TokenKey.AUDITOR)
    assert b"BEGIN PRIVATE KEY" in path.read_bytes()


def test_wrong_passphrase_and_loose_permissions_are_refused(tmp_path: Path) -> None:
    path = token_key_path(tmp_path, TokenKey.AUDITOR)
    load_or_create_key_file(path, b"right", TokenKey.AUDITOR)
    with pytest.raises(TokenKeyError, match="cannot read"):
        load_or_create_key_file(path, b"wrong", TokenKey.AUDITOR)
    os.chmod(path, 0o644)
    with pytest.raises(TokenKeyError, match="accessible to others"):
        load_or_create_key_file(path, b"right", TokenKey.AUDITOR)


def test_racing_creators_end_up_with_one_key(tmp_path: Path) -> None:
    path = token_key_path(tmp_path, TokenKey.AUDITOR)
    barrier = threading.Barrier(4)
    found: list[str] = []

    def create() -> None:
        barrier.wait()
        found.append(key_id(load_or_create_key_file(path, b"pw", TokenKey.AUDITOR).public_key()))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and len(set(found)) == 1


# -- xweg token issue --------------------------------------------------------------


def write_config(folder: Path) -> Path:
    (folder / "passphrase").write_text("server passphrase\n")
    config = folder / "server.toml"
    config.write_text(
        f"""
server_id = "{ISSUER}"
anchor = "anchor.json"
data_dir = "data"
[client_listener]
host = "127.0.0.1"
port = 5510
[peer_listener]
host = "127.0.0.1"
port = 5511
[keys]
passphrase_file = "passphrase"
auth_key = "keys/auth.key"
auth_certificate = "keys/auth.pem"
"""
    )
    return config


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="xweg")
    add_token_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_token_issue_prints_a_token_this_server_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    argv = ["token", "issue", "--role", "auditor", "--subject", "Rechnungsprüfung", "--bodies", "--ttl", "2h"]
    code = run_token_command(parse([*argv, "--config", str(config)]), clock=FixedClock(NOW))
    out, err = capsys.readouterr()
    assert code == 0
    token = out.strip()
    key = load_or_create_key_file(
        token_key_path(tmp_path / "data", TokenKey.AUDITOR), b"server passphrase", TokenKey.AUDITOR
    )
    identity = verify_auditor_token(token, key.public_key(), issuer=ISSUER, now=NOW)
    assert identity.subject == "Rechnungsprüfung" and identity.may_read_bodies
    assert identity.expires_at == NOW + dt.timedelta(hours=2)
    assert "with the right to read bodies" in err and identity.token_id in err
    assert stat.S_IMODE((tmp_path / "data" / "auditor-token.key").stat().st_mode) == 0o600


def test_token_issue_reports_a_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(
        ["token", "issue", "--role", "auditor", "--subject", "a", "--config", str(tmp_path / "no.toml")]
    )
    assert run_token_command(args, clock=FixedClock(NOW)) == 1
    assert "xweg token issue:" in capsys.readouterr().err


def test_token_issue_accepts_only_the_auditor_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["token", "issue", "--role", "admin", "--subject", "a", "--config", "x.toml"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("8h", 28800), ("7d", 604800)]
)
def test_ttl_forms(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "8x", "-1h", "31d", "1.5h", "h"])
def test_bad_ttls_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_ttl(text)
