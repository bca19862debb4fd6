"""Which information system may act for which client: connection type, certificate, client token.

From the attacker's side: every way of arriving without the right to act for a client is
refused with its code and a message saying what was wrong.  Also the pieces behind it:
client tokens, their key file, the internal TLS certificate and the HTTPS listener's trust.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import socket
import ssl
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import SecurityServerId
from gateway.clientauth import ClientConnection, authenticate_client
from gateway.config import GatewayConfig, Listener
from gateway.internaltls import (
    ClientListenerTls,
    InternalTlsError,
    internal_tls_fingerprint,
    load_or_create_internal_tls,
    registered_certificates_pem,
)
from gateway.serverconf.model import ClientEntry, ConnectionType, ServerConfSnapshot
from gateway.tokens import (
    TokenKey,
    TokenKeyError,
    load_or_create_key_file,
    token_key_path,
)
from tests.unit.gateway.clientauth_fixtures import (
    GEWERBEAMT,
    MELDEWESEN,
    MEMBER,
    NOW,
    SERVER,
    InformationSystem,
    client_entry,
    make_information_system,
)
from trust.clienttokens import (
    AUDIENCE,
    MAX_TTL_S,
    ClientToken,
    ClientTokenInvalid,
    issue_client_token,
    unverified_key_id,
    verify_client_token,
)
from trust.keys import generate_private_key
from trust.tokens import key_id
from xweg.cli import main as xweg_main


@pytest.fixture(scope="module")
def token_key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


@pytest.fixture(scope="module")
def stranger_key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


@pytest.fixture(scope="module")
def gewerbeamt_is() -> InformationSystem:
    return make_information_system("gewerbeamt-fachverfahren")


@pytest.fixture(scope="module")
def meldewesen_is() -> InformationSystem:
    return make_information_system("meldewesen-fachverfahren")


def refusal(
    entry: ClientEntry, connection: ClientConnection, key: ec.EllipticCurvePrivateKey, now: dt.datetime = NOW
) -> XwegError:
    with pytest.raises(XwegError) as caught:
        authenticate_client(entry, connection, token_key=key.public_key(), server_id=SERVER, now=now)
    return caught.value


def accept(entry: ClientEntry, connection: ClientConnection, key: ec.EllipticCurvePrivateKey) -> None:
    authenticate_client(entry, connection, token_key=key.public_key(), server_id=SERVER, now=NOW)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": SERVER.slash(),
        "aud": AUDIENCE,
        "sub": GEWERBEAMT.slash(),
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 3600,
        "jti": "7c1c0f0e-4a57-4d38-9a37-5f1d7c7c1a01",
    }
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def signed(key: ec.EllipticCurvePrivateKey, payload: dict[str, object], kid: str | None = None) -> str:
    headers = {"typ": "JWT", "kid": kid or key_id(key.public_key())}
    return jwt.encode(payload, key, algorithm="ES256", headers=headers)


# ------------------------------------------------------------------ connection type and certificate


def test_an_http_client_may_connect_over_plain_http(token_key: ec.EllipticCurvePrivateKey) -> None:
    accept(ClientEntry(GEWERBEAMT, ConnectionType.HTTP), ClientConnection(tls=False), token_key)


def test_plain_http_to_an_https_mtls_client_is_refused(
    token_key: ec.EllipticCurvePrivateKey, gewerbeamt_is: InformationSystem
) -> None:
    error = refusal(client_entry(GEWERBEAMT, gewerbeamt_is), ClientConnection(tls=False), token_key)
    assert error.fault_code == "Client.SslAuthenticationFailed"
    assert error.http_status == 400
    assert error.message == (
        f"client {GEWERBEAMT.slash()} must connect over HTTPS (https-mtls), not plain HTTP"
    )


def test_plain_http_to_an_https_client_is_refused_and_https_without_certificate_accepted(
    token_key: ec.EllipticCurvePrivateKey,
) -> None:
    entry = ClientEntry(GEWERBEAMT, ConnectionType.HTTPS)
    error = refusal(entry, ClientConnection(tls=False), token_key)
    assert error.code is ErrorCode.SSL_AUTHENTICATION_FAILED
    assert "must connect over HTTPS (https)" in error.message
    accept(entry, ClientConnection(tls=True), token_key)


def test_https_without_a_certificate_is_refused_for_https_mtls(
    token_key: ec.EllipticCurvePrivateKey, gewerbeamt_is: InformationSystem
) -> None:
    error = refusal(client_entry(GEWERBEAMT, gewerbeamt_is), ClientConnection(tls=True), token_key)
    assert error.fault_code == "Client.SslAuthenticationFailed"
    assert error.message == (
        f"client {GEWERBEAMT.slash()} must present a TLS client certificate registered for it"
    )


def test_a_certificate_registered_for_another_subsystem_is_refused(
    token_key: ec.EllipticCurvePrivateKey, gewerbeamt_is: InformationSystem, meldewesen_is: InformationSystem
) -> None:
    connection = ClientConnection(tls=True, certificate_fingerprint=meldewesen_is.fingerprint)
    error = refusal(client_entry(GEWERBEAMT, gewerbeamt_is), connection, token_key)
    assert error.fault_code == "Client.SslAuthenticationFailed"
    assert error.message == (
        f"the TLS client certificate (SHA-256 {meldewesen_is.fingerprint}) "
        f"is not registered for client {GEWERBEAMT.slash()}"
    )


def test_the_registered_certificate_is_accepted(
    token_key: ec.EllipticCurvePrivateKey, gewerbeamt_is: InformationSystem
) -> None:
    connection = ClientConnection(tls=True, certificate_fingerprint=gewerbeamt_is.fingerprint)
    accept(client_entry(GEWERBEAMT, gewerbeamt_is), connection, token_key)


# ------------------------------------------------------------------ client tokens


def test_a_valid_token_bound_to_the_client_is_accepted(token_key: ec.EllipticCurvePrivateKey) -> None:
    token = issue_client_token(token_key, server_id=SERVER, client=GEWERBEAMT, now=NOW, ttl_s=3600)
    entry = ClientEntry(GEWERBEAMT, ConnectionType.HTTP, token_required=True)
    accept(entry, ClientConnection(tls=False, token=token), token_key)


def test_token_required_without_a_token_is_refused(
    token_key: ec.EllipticCurvePrivateKey, gewerbeamt_is: InformationSystem
) -> None:
    entry = client_entry(GEWERBEAMT, gewerbeamt_is, token_required=True)
    connection = ClientConnection(tls=True, certificate_fingerprint=gewerbeamt_is.fingerprint)
    error = refusal(entry, connection, token_key)
    assert (error.fault_code, error.http_status) == ("Client.InvalidClientToken", 401)
    assert error.origin is Origin.CLIENT
    assert error.message == (
        f"client {GEWERBEAMT.slash()} requires a client token of this security server (Authorization: Bearer)"
    )


def test_the_connection_is_checked_before_the_token(
    token_key: ec.EllipticCurvePrivateKey, gewerbeamt_is: InformationSystem
) -> None:
    token = issue_client_token(token_key, server_id=SERVER, client=GEWERBEAMT, now=NOW, ttl_s=3600)
    error = refusal(
        client_entry(GEWERBEAMT, gewerbeamt_is), ClientConnection(tls=True, token=token), token_key
    )
    assert error.code is ErrorCode.SSL_AUTHENTICATION_FAILED


def _hs256_with_public_key_as_secret(key: ec.EllipticCurvePrivateKey) -> str:
    secret = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key_id(key.public_key())}).encode())
    payload = b64url(json.dumps(claims()).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(mac)}"


def _alg_none(key: ec.EllipticCurvePrivateKey) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": key_id(key.public_key())}).encode())
    return f"{header}.{b64url(json.dumps(claims()).encode())}."


TAMPERED: dict[str, tuple[Callable[[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey], str], str]] = {
    "expired": (
        lambda k, s: issue_client_token(
            k, server_id=SERVER, client=GEWERBEAMT, now=NOW - dt.timedelta(days=2), ttl_s=86400
        ),
        "the client token has expired",
    ),
    "wrong audience": (
        lambda k, s: signed(k, claims(aud="xweg-auditor-api")),
        "the client token is not for the client proxy",
    ),
    "alg none": (lambda k, s: _alg_none(k), "the client token's algorithm is 'none'; only ES256 is accepted"),
    "HS256 keyed with the public key": (
        lambda k, s: _hs256_with_public_key_as_secret(k),
        "the client token's algorithm is 'HS256'",
    ),
    "signed by an unknown key": (
        lambda k, s: signed(s, claims()),
        "the client token was signed by another key than this server's client-token key",
    ),
    "signed by an unknown key claiming ours": (
        lambda k, s: signed(s, claims(), kid=key_id(k.public_key())),
        "the client token's signature does not verify with this server's key",
    ),
    "bound to another subsystem": (
        lambda k, s: issue_client_token(k, server_id=SERVER, client=MELDEWESEN, now=NOW, ttl_s=3600),
        f"the client token is bound to client {MELDEWESEN.slash()}, not to {GEWERBEAMT.slash()}",
    ),
    "bound to the member": (
        lambda k, s: signed(k, claims(sub=MEMBER.slash())),
        f"the client token is bound to client {MEMBER.slash()}, not to {GEWERBEAMT.slash()}",
    ),
    "issued by another server": (
        lambda k, s: issue_client_token(
            k, server_id=SecurityServerId(MEMBER, "ss2"), client=GEWERBEAMT, now=NOW, ttl_s=3600
        ),
        "the client token was not issued by this security server",
    ),
    "issued in the future": (
        lambda k, s: issue_client_token(
            k, server_id=SERVER, client=GEWERBEAMT, now=NOW + dt.timedelta(minutes=5), ttl_s=3600
        ),
        "the client token was issued in the future",
    ),
    "lives too long": (
        lambda k, s: signed(k, claims(exp=int(NOW.timestamp()) + MAX_TTL_S + 1)),
        f"the client token's lifetime exceeds {MAX_TTL_S} seconds",
    ),
    "without an expiry": (lambda k, s: signed(k, claims(exp=None)), "the client token lacks the 'exp' claim"),
    "subject not a client id": (
        lambda k, s: signed(k, claims(sub="Sachbearbeiterin Meier")),
        "the client token's subject is not an X-Road client id",
    ),
    "not a JWS": (lambda k, s: "not-a-token", "the client token is not a compact JWS"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_bad_token_is_refused_with_its_reason(
    case: str, token_key: ec.EllipticCurvePrivateKey, stranger_key: ec.EllipticCurvePrivateKey
) -> None:
    make, reason = TAMPERED[case]
    token = make(token_key, stranger_key)
    entry = ClientEntry(GEWERBEAMT, ConnectionType.HTTP)
    error = refusal(entry, ClientConnection(tls=False, token=token), token_key)
    assert (error.fault_code, error.http_status) == ("Client.InvalidClientToken", 401)
    assert error.message.startswith(reason), error.message
    assert error.message.endswith(f"(request for client {GEWERBEAMT.slash()})")


def test_a_token_present_is_checked_even_where_none_is_required(
    token_key: ec.EllipticCurvePrivateKey,
) -> None:
    token = issue_client_token(token_key, server_id=SERVER, client=MELDEWESEN, now=NOW, ttl_s=3600)
    error = refusal(ClientEntry(GEWERBEAMT, ConnectionType.HTTP), ClientConnection(token=token), token_key)
    assert error.code is ErrorCode.INVALID_CLIENT_TOKEN


def test_verification_says_who_the_token_is_for(token_key: ec.EllipticCurvePrivateKey) -> None:
    token = issue_client_token(
        token_key, server_id=SERVER, client=GEWERBEAMT, now=NOW, ttl_s=600, token_id="t-1"
    )
    verified = verify_client_token(token, token_key.public_key(), issuer=SERVER, client=GEWERBEAMT, now=NOW)
    assert verified == ClientToken(GEWERBEAMT, "t-1", NOW + dt.timedelta(seconds=600))
    assert jwt.get_unverified_header(token) == {
        "alg": "ES256",
        "typ": "JWT",
        "kid": key_id(token_key.public_key()),
    }


def test_the_leeway_is_a_minute_at_most(token_key: ec.EllipticCurvePrivateKey) -> None:
    token = issue_client_token(token_key, server_id=SERVER, client=GEWERBEAMT, now=NOW, ttl_s=600)
    public = token_key.public_key()
    verify_client_token(token, public, issuer=SERVER, client=GEWERBEAMT, now=NOW + dt.timedelta(seconds=659))
    with pytest.raises(ClientTokenInvalid, match="expired"):
        verify_client_token(
            token, public, issuer=SERVER, client=GEWERBEAMT, now=NOW + dt.timedelta(seconds=661)
        )
    with pytest.raises(ValueError, match="leeway"):
        verify_client_token(token, public, issuer=SERVER, client=GEWERBEAMT, now=NOW, leeway_s=3600)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ttl_s": 0}, "lifetime"),
        ({"ttl_s": MAX_TTL_S + 1}, "lifetime"),
        ({"now": NOW.replace(tzinfo=None)}, "UTC"),
    ],
)
def test_issuing_refuses_bad_arguments(
    token_key: ec.EllipticCurvePrivateKey, changes: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"server_id": SERVER, "client": GEWERBEAMT, "now": NOW, "ttl_s": 60}
    arguments.update(changes)
    with pytest.raises(ValueError, match=message):
        issue_client_token(token_key, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "a.b", "x" * 9000 + ".a.b", "e30.e30.", "!!.!!.!!"])
def test_a_token_that_is_no_jws_names_no_key(token: str) -> None:
    assert unverified_key_id(token) is None


def test_the_client_token_key_is_not_the_auditor_token_key(tmp_path: Path) -> None:
    client_key = load_or_create_key_file(token_key_path(tmp_path, TokenKey.CLIENT), b"pw", TokenKey.CLIENT)
    auditor_key = load_or_create_key_file(token_key_path(tmp_path, TokenKey.AUDITOR), b"pw", TokenKey.AUDITOR)
    assert key_id(client_key.public_key()) != key_id(auditor_key.public_key())
    assert stat.S_IMODE(token_key_path(tmp_path, TokenKey.CLIENT).stat().st_mode) == 0o600
    again = load_or_create_key_file(token_key_path(tmp_path, TokenKey.CLIENT), b"pw", TokenKey.CLIENT)
    assert key_id(again.public_key()) == key_id(client_key.public_key())
    with pytest.raises(TokenKeyError, match="cannot read the client-token key"):
        load_or_create_key_file(token_key_path(tmp_path, TokenKey.CLIENT), b"wrong", TokenKey.CLIENT)


# ------------------------------------------------------------------ the internal TLS certificate


def test_the_internal_tls_certificate_is_made_once_self_signed_for_this_host(tmp_path: Path) -> None:
    data = tmp_path / "data"
    certificate_path, key_path = load_or_create_internal_tls(data, b"pw")
    assert (certificate_path.parent, key_path.parent) == (data, data)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in key_path.read_bytes()
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    assert certificate.issuer == certificate.subject
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert (
        socket.gethostname() in names.get_values_for_type(x509.DNSName) or not socket.gethostname().isascii()
    )
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    fingerprint = internal_tls_fingerprint(certificate_path)
    assert fingerprint == hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()

    assert load_or_create_internal_tls(data, b"pw") == (certificate_path, key_path)
    assert internal_tls_fingerprint(certificate_path) == fingerprint
    assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]


def test_the_internal_tls_key_is_refused_with_a_wrong_passphrase_or_loose_permissions(tmp_path: Path) -> None:
    _, key_path = load_or_create_internal_tls(tmp_path, b"right")
    with pytest.raises(InternalTlsError, match="cannot read the internal TLS key"):
        load_or_create_internal_tls(tmp_path, b"wrong")
    os.chmod(key_path, 0o644)
    with pytest.raises(InternalTlsError, match="accessible to others"):
        load_or_create_internal_tls(tmp_path, b"right")


def test_a_certificate_for_another_key_is_refused(tmp_path: Path) -> None:
    certificate_path, key_path = load_or_create_internal_tls(tmp_path, None)
    key_path.unlink()
    with pytest.raises(InternalTlsError, match="is not for the key"):
        load_or_create_internal_tls(tmp_path, None)
    assert certificate_path.exists()


def test_racing_creators_end_up_with_one_certificate_and_key(tmp_path: Path) -> None:
    barrier = threading.Barrier(4)
    found: list[str] = []

    def create() -> None:
        barrier.wait()
        certificate_path, _ = load_or_create_internal_tls(tmp_path, b"pw")
        found.append(internal_tls_fingerprint(certificate_path))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and len(set(found)) == 1


# ------------------------------------------------------------------ what the HTTPS listener trusts


def test_the_listener_trusts_only_pems_whose_fingerprint_is_registered(
    gewerbeamt_is: InformationSystem, meldewesen_is: InformationSystem
) -> None:
    listed = client_entry(GEWERBEAMT, gewerbeamt_is)
    # A PEM without its fingerprint registered (a store that has not caught up) and garbage.
    unlisted = ClientEntry(MELDEWESEN, certificates_pem=(meldewesen_is.pem, "not a certificate"))
    snapshot = ServerConfSnapshot(clients={GEWERBEAMT: listed, MELDEWESEN: unlisted})
    assert set(registered_certificates_pem(snapshot)) == {gewerbeamt_is.fingerprint}


def test_the_listener_admits_new_certificates_and_cannot_forget(
    tmp_path: Path, gewerbeamt_is: InformationSystem, meldewesen_is: InformationSystem
) -> None:
    certificate_path, key_path = load_or_create_internal_tls(tmp_path, None)
    tls = ClientListenerTls(certificate_path, key_path, None)
    assert tls.context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert tls.context.verify_mode is ssl.CERT_OPTIONAL
    tls.admit(ServerConfSnapshot(clients={GEWERBEAMT: client_entry(GEWERBEAMT, gewerbeamt_is)}, version="1"))
    assert tls.admitted == {gewerbeamt_is.fingerprint}
    tls.admit(ServerConfSnapshot(clients={MELDEWESEN: client_entry(MELDEWESEN, meldewesen_is)}, version="2"))
    assert tls.admitted == {gewerbeamt_is.fingerprint, meldewesen_is.fingerprint}


# ------------------------------------------------------------------ xweg gateway client-token issue


def write_config(folder: Path) -> Path:
    (folder / "passphrase").write_text("server passphrase\n")
    config = folder / "gateway.toml"
    config.write_text(
        f"""
server_id = "{SERVER.slash()}"
anchor = "anchor.json"
data_dir = "data"
[client_listener]
host = "127.0.0.1"
port = 5510
[client_tls_listener]
host = "127.0.0.1"
port = 5443
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


def test_client_token_issue_prints_a_token_this_server_accepts_for_that_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    argv = ["gateway", "client-token", "issue", "--config", str(config), "--client", GEWERBEAMT.slash()]
    assert xweg_main([*argv, "--ttl", "3600"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    key = load_or_create_key_file(
        token_key_path(tmp_path / "data", TokenKey.CLIENT), b"server passphrase", TokenKey.CLIENT
    )
    issued_at = dt.datetime.fromtimestamp(
        jwt.decode(token, options={"verify_signature": False})["iat"], dt.UTC
    )
    verified = verify_client_token(token, key.public_key(), issuer=SERVER, client=GEWERBEAMT, now=issued_at)
    assert verified.expires_at == issued_at + dt.timedelta(seconds=3600)
    assert f"issued a client token for {GEWERBEAMT.slash()} on {SERVER.slash()}" in err
    with pytest.raises(ClientTokenInvalid, match="bound to client"):
        verify_client_token(token, key.public_key(), issuer=SERVER, client=MELDEWESEN, now=issued_at)


def test_client_token_issue_refuses_what_is_not_a_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    argv = ["gateway", "client-token", "issue", "--config", str(config), "--client", "NRW/MUN"]
    assert xweg_main(argv) == 1
    assert "xweg gateway client-token issue: 'NRW/MUN' is not a client id" in capsys.readouterr().err
    assert not token_key_path(tmp_path / "data", TokenKey.CLIENT).exists()


def test_the_https_listener_is_configured_in_its_own_section(tmp_path: Path) -> None:
    config = GatewayConfig.load(write_config(tmp_path))
    assert config.client_tls_listener == Listener("127.0.0.1", 5443)
