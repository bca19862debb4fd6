"""End to end: a registry and two security servers as real processes on loopback.

Information systems are played by a plain HTTP client; attackers by a mutual-TLS
client holding a real (CA-issued) certificate, who changes bytes between the servers.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.canonical import b64, request_digest
from core.identifiers import ClientId, SecurityServerId, ServiceId
from core.messages import Protocol, RequestHeader, ResponseHeader, sha512
from gateway.messagelog.store import LogLocation, MessageLogStore
from gateway.transport.client import EXCHANGE_PATH, PeerClient
from gateway.transport.frame import CONTENT_TYPE, encode_frame
from tests.integration.conftest import DEAD_SERVICE, GEWERBEAMT, KREISVERWALTUNG, SLOW_SERVICE
from trust.ca import CertificateAuthority
from trust.castore import CaStore
from trust.certificates import fingerprint
from trust.globalconf import SecurityServerInfo
from trust.keys import (
    generate_private_key,
    load_certificate,
    load_private_key,
    make_csr,
    save_certificate,
    save_private_key,
)
from trust.signatures import sign_digest
from xweg.demo import call
from xweg.federation import DETMOLD, GEWERBEANZEIGE, Layout, rest_path

pytestmark = pytest.mark.integration

ANZEIGE = {
    "anzeigeId": "7d1f9a52-0000-4000-8000-000000000001",
    "anzeigeart": "Anmeldung",
    "gemeindeschluessel": "05774032",
    "betrieb": {"name": "Bäckerei Muster GmbH"},
    "taetigkeit": {"text": "Backwaren", "wz2008": "10.71.0"},
    "person": {"familienname": "Muster"},
}


def consumer_url(layout: Layout, service: ServiceId, tail: str = "") -> str:
    return layout.client_url("paderborn") + rest_path(service, tail)


def received_by_backend(layout: Layout) -> int:
    result = call(layout.backend_url("gewerbeanzeige") + "/anzeigen", "GET", GEWERBEAMT)
    return len(result.json())


def assert_xroad_error(result: Any, status: int, fault: str) -> dict[str, Any]:
    assert result.status == status, result.body
    assert result.headers["X-Road-Error"] == fault
    body = result.json()
    assert body["type"] == fault
    uuid.UUID(body["detail"])  # the correlation id
    assert "Traceback" not in result.body.decode()
    return body


def assert_still_serving(layout: Layout) -> None:
    result = call(consumer_url(layout, GEWERBEANZEIGE, "/anzeigen"), "POST", GEWERBEAMT, ANZEIGE)
    assert result.status == 201, result.body


# ------------------------------------------------------------------ the good path


def test_signed_logged_exchange(layout: Layout) -> None:
    before = received_by_backend(layout)
    result = call(consumer_url(layout, GEWERBEANZEIGE, "/anzeigen?quelle=test"), "POST", GEWERBEAMT, ANZEIGE)
    assert result.status == 201, result.body
    assert result.json()["anzeigeId"] == ANZEIGE["anzeigeId"]
    assert result.json()["absender"] == GEWERBEAMT.slash()  # X-Road-Client reached the backend
    message_id = result.headers["X-Road-Id"]
    assert result.headers["X-Road-Request-Id"] == message_id
    assert result.headers["X-Road-Client"] == GEWERBEAMT.slash()
    assert result.headers["X-Road-Service"] == GEWERBEANZEIGE.unversioned().slash()
    assert "X-Road-Error" not in result.headers
    assert received_by_backend(layout) == before + 1

    # Both servers logged the request and the response, and the request hash the
    # client got is the digest of the request the consumer logged and signed.
    for slug in ("paderborn", "detmold"):
        store = MessageLogStore.open_readonly(layout.message_log(slug))
        try:
            records = store.find(message_id)
        finally:
            store.close()
        assert [r.direction.value for r in records] == ["request", "response"]
        logged = RequestHeader.from_dict(json.loads(records[0].header))
        assert b64(request_digest(logged)) == result.headers["X-Road-Request-Hash"]
        assert logged.query == "quelle=test" and logged.path == "/anzeigen"
        response = ResponseHeader.from_dict(json.loads(records[1].header))
        assert response.status == 201 and response.body_sha512 == sha512(result.body)


def test_message_id_from_client_is_kept(layout: Layout) -> None:
    message_id = str(uuid.uuid4())
    result = call(
        consumer_url(layout, GEWERBEANZEIGE, "/anzeigen"),
        "POST",
        GEWERBEAMT,
        ANZEIGE,
        {"X-Road-Id": message_id},
    )
    assert result.status == 201
    assert result.headers["X-Road-Id"] == message_id


def test_provider_error_passes_through_untouched(layout: Layout) -> None:
    result = call(
        consumer_url(layout, GEWERBEANZEIGE, "/anzeigen"), "POST", GEWERBEAMT, {"anzeigeart": "Anmeldung"}
    )
    assert result.status == 422
    assert "X-Road-Error" not in result.headers
    assert result.json()["title"] == "Unvollständige Meldung"


# ------------------------------------------------------------------ bad input from clients


@pytest.mark.parametrize(
    ("client_header", "reason"),
    [
        ("NRW/MUN", "too few parts"),
        ("NRW/MUN/05774032/gewerbe amt", "space"),
        ("NRW/MUN/05774032/gewerbe%2Famt", "percent sign"),
        ("NRW/MUN/05774032/gewerbeämt", "umlaut"),
        ("", "empty"),
    ],
)
def test_malformed_client_header(layout: Layout, client_header: str, reason: str) -> None:
    result = call(
        consumer_url(layout, GEWERBEANZEIGE, "/anzeigen"),
        "POST",
        GEWERBEAMT,
        ANZEIGE,
        {"X-Road-Client": client_header},
    )
    assert_xroad_error(result, 400, "Client.InvalidClientIdentifier")


def test_client_not_hosted_here(layout: Layout) -> None:
    result = call(
        consumer_url(layout, GEWERBEANZEIGE, "/anzeigen"), "POST", DETMOLD.subsystem("arbeitsschutz"), ANZEIGE
    )
    assert_xroad_error(result, 400, "Client.InvalidClientIdentifier")


def test_unknown_provider(layout: Layout) -> None:
    unknown = DETMOLD.subsystem("unbekannt").service("gewerbeanzeige")
    result = call(consumer_url(layout, unknown, "/anzeigen"), "POST", GEWERBEAMT, ANZEIGE)
    body = assert_xroad_error(result, 500, "Server.ClientProxy.UnknownMember")
    assert "NRW/GOV/057/unbekannt" in body["message"]


def test_unknown_service(layout: Layout) -> None:
    unknown = DETMOLD.subsystem("arbeitsschutz").service("gibtesnicht")
    result = call(consumer_url(layout, unknown, "/x"), "POST", GEWERBEAMT, ANZEIGE)
    assert_xroad_error(result, 500, "Server.ServerProxy.UnknownService")
    assert_still_serving(layout)


def test_not_granted_never_reaches_backend(layout: Layout) -> None:
    before = received_by_backend(layout)
    result = call(consumer_url(layout, GEWERBEANZEIGE, "/anzeigen"), "POST", KREISVERWALTUNG, ANZEIGE)
    body = assert_xroad_error(result, 500, "Server.ServerProxy.AccessDenied")
    assert KREISVERWALTUNG.slash() in body["message"]
    assert received_by_backend(layout) == before


def test_body_over_limit(layout: Layout) -> None:
    big = b"x" * (10 * 1024 * 1024 + 1)
    req = urllib.request.Request(
        consumer_url(layout, GEWERBEANZEIGE, "/echo"),
        data=big,
        method="POST",
        headers={"X-Road-Client": GEWERBEAMT.slash(), "Content-Type": "application/octet-stream"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, headers, payload = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, payload = exc.code, dict(exc.headers), exc.read()
    assert status == 413
    assert headers["X-Road-Error"] == "Client.RequestTooLarge"
    assert json.loads(payload)["type"] == "Client.RequestTooLarge"
    assert_still_serving(layout)


def test_body_at_the_limit_goes_through_and_back_unchanged(layout: Layout) -> None:
    # Sent in slices and read apart from its frame on every hop: the bytes must not change.
    big = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    req = urllib.request.Request(
        consumer_url(layout, GEWERBEANZEIGE, "/echo"),
        data=big,
        method="POST",
        headers={"X-Road-Client": GEWERBEAMT.slash(), "Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        status, headers, payload = resp.status, dict(resp.headers), resp.read()
    assert status == 200
    assert payload == big
    assert headers["Content-Length"] == str(len(big))
    for slug in ("paderborn", "detmold"):
        store = MessageLogStore.open_readonly(layout.message_log(slug))
        try:
            records = store.find(headers["X-Road-Id"])
        finally:
            store.close()
        assert [(r.direction.value, r.body_storage) for r in records] == [
            ("request", "blob"),
            ("response", "blob"),
        ]
        assert all(r.body == big for r in records)


def test_backend_down(layout: Layout) -> None:
    result = call(consumer_url(layout, DEAD_SERVICE, "/akten"), "POST", GEWERBEAMT, ANZEIGE)
    assert_xroad_error(result, 500, "Server.ServerProxy.NetworkError")
    assert_still_serving(layout)


def test_backend_timeout(layout: Layout) -> None:
    result = call(consumer_url(layout, SLOW_SERVICE, "/slow?seconds=3"), "GET", GEWERBEAMT)
    assert_xroad_error(result, 500, "Server.ServerProxy.ServiceFailed.Timeout")
    assert_still_serving(layout)


def test_correlation_id_is_in_the_server_log(layout: Layout) -> None:
    result = call(consumer_url(layout, GEWERBEANZEIGE, "/anzeigen"), "POST", KREISVERWALTUNG, ANZEIGE)
    correlation_id = result.json()["detail"]
    log_text = (layout.root / "logs" / "server-detmold.log").read_text()
    assert correlation_id in log_text


# ------------------------------------------------------------------ attackers between the servers


def _passphrase(layout: Layout) -> bytes:
    return layout.passphrase_file.read_bytes().strip()


def _mtls_context(layout: Layout, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(layout.ca_certificate))
    ctx.load_verify_locations(cafile=str(layout.ca_dir / "issuing.pem"))
    ctx.load_cert_chain(str(cert), str(key), password=_passphrase(layout))
    return ctx


def _signed_frame(layout: Layout, client: ClientId, body: bytes) -> tuple[dict[str, Any], bytes]:
    header = RequestHeader(
        protocol=Protocol.REST,
        client=client,
        service=GEWERBEANZEIGE.unversioned(),
        message_id=str(uuid.uuid4()),
        method="POST",
        path="/anzeigen",
        query="",
        headers=(("content-type", "application/json"),),
        body_sha512=sha512(body),
        body_size=len(body),
    )
    keys = layout.server_dir("paderborn") / "keys"
    code = client.member.member_code
    sign_certificate = load_certificate(keys / f"sign-{code}.pem")
    signature = sign_digest(
        request_digest(header),
        load_private_key(keys / f"sign-{code}.key", _passphrase(layout)),
        sign_certificate,
    )
    metadata = {
        "header": header.to_dict(),
        "signature": signature,
        # The OCSP responses Paderborn's server fetched and keeps, as a real consumer sends them.
        "ocsp": _ocsp_of(layout, sign_certificate),
        "auth_ocsp": _ocsp_of(layout, load_certificate(keys / "auth.pem")),
    }
    return metadata, body


def _ocsp_of(layout: Layout, certificate: Any) -> str:
    cached = layout.server_dir("paderborn") / "data" / "ocsp" / f"{fingerprint(certificate)}.der"
    return b64(cached.read_bytes())


async def _post_to_provider(
    layout: Layout, ctx: ssl.SSLContext, frame: bytes
) -> tuple[int, dict[str, str], bytes]:
    url = f"https://127.0.0.1:{layout.ports['detmold.peer']}{EXCHANGE_PATH}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        async with session.post(url, data=frame, headers={"Content-Type": CONTENT_TYPE}) as resp:
            return resp.status, dict(resp.headers), await resp.read()


def _paderborn_tls(layout: Layout) -> ssl.SSLContext:
    keys = layout.server_dir("paderborn") / "keys"
    return _mtls_context(layout, keys / "auth.pem", keys / "auth.key")


async def test_untampered_frame_is_accepted(layout: Layout) -> None:
    # The control for the tamper tests below: the same construction, unchanged, works.
    meta, body = _signed_frame(layout, GEWERBEAMT, json.dumps(ANZEIGE).encode())
    status, _, _ = await _post_to_provider(layout, _paderborn_tls(layout), encode_frame(meta, body))
    assert status == 200


async def test_body_changed_between_servers(layout: Layout) -> None:
    before = received_by_backend(layout)
    meta, body = _signed_frame(layout, GEWERBEAMT, json.dumps(ANZEIGE).encode())
    tampered = body.replace(b"Muster", b"Master")
    status, headers, _ = await _post_to_provider(layout, _paderborn_tls(layout), encode_frame(meta, tampered))
    assert status == 500
    assert headers["X-Road-Error"] == "Server.ServerProxy.InvalidSignatureValue"
    assert received_by_backend(layout) == before


async def test_large_body_changed_or_cut_between_servers(layout: Layout) -> None:
    # A body of many slices, read apart from its frame's head, is checked as a small one is.
    before = received_by_backend(layout)
    meta, body = _signed_frame(layout, GEWERBEAMT, bytes(range(256)) * (4 * 1024 * 1024 // 256))
    changed = bytearray(body)
    changed[len(body) // 2] ^= 0x01
    for sent in (bytes(changed), body[:-1], body + b"x"):
        status, headers, _ = await _post_to_provider(layout, _paderborn_tls(layout), encode_frame(meta, sent))
        assert status == 500
        assert headers["X-Road-Error"] == "Server.ServerProxy.InvalidSignatureValue"
    assert received_by_backend(layout) == before


async def test_header_changed_between_servers(layout: Layout) -> None:
    before = received_by_backend(layout)
    meta, body = _signed_frame(layout, GEWERBEAMT, json.dumps(ANZEIGE).encode())
    meta["header"]["path"] = "/anzeigen/alle"  # the signature covers the path
    status, headers, _ = await _post_to_provider(layout, _paderborn_tls(layout), encode_frame(meta, body))
    assert headers["X-Road-Error"] == "Server.ServerProxy.InvalidSignatureValue"
    assert status == 500
    assert received_by_backend(layout) == before


async def test_signature_changed_between_servers(layout: Layout) -> None:
    before = received_by_backend(layout)
    meta, body = _signed_frame(layout, GEWERBEAMT, json.dumps(ANZEIGE).encode())
    head, _, sig = meta["signature"].split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    meta["signature"] = f"{head}..{flipped}"
    status, headers, _ = await _post_to_provider(layout, _paderborn_tls(layout), encode_frame(meta, body))
    assert status == 500
    assert headers["X-Road-Error"] == "Server.ServerProxy.InvalidSignatureValue"
    assert received_by_backend(layout) == before


async def test_peer_certificate_not_registered(layout: Layout, tmp_path: Path) -> None:
    # A certificate from the federation's own CA, but for a server global configuration does not list.
    passphrase = _passphrase(layout)
    key = generate_private_key()
    intruder = SecurityServerId(DETMOLD, "rogue")
    with CaStore.open(layout.ca_dir, passphrase) as ca:
        cert = ca.issue(make_csr(key, "rogue"), "auth", intruder.slash(), now=dt.datetime.now(dt.UTC))
    save_private_key(key, tmp_path / "rogue.key", passphrase)
    save_certificate(cert, tmp_path / "rogue.pem")
    before = received_by_backend(layout)
    meta, body = _signed_frame(layout, GEWERBEAMT, json.dumps(ANZEIGE).encode())
    ctx = _mtls_context(layout, tmp_path / "rogue.pem", tmp_path / "rogue.key")
    status, headers, payload = await _post_to_provider(layout, ctx, encode_frame(meta, body))
    assert status == 500
    assert headers["X-Road-Error"] == "Server.ServerProxy.SslAuthenticationFailed"
    assert "not registered" in json.loads(payload)["message"]
    assert received_by_backend(layout) == before


async def test_consumer_refuses_a_provider_with_the_wrong_certificate(layout: Layout) -> None:
    # Global configuration says Detmold's server has Paderborn's certificate: whoever
    # answers at Detmold's address is then an impostor, and nothing may be sent to it.
    keys = layout.server_dir("paderborn") / "keys"
    wrong = SecurityServerInfo(
        id=SecurityServerId(DETMOLD, "ss1"),
        address=f"127.0.0.1:{layout.ports['detmold.peer']}",
        auth_cert_fingerprints=(fingerprint(load_certificate(keys / "auth.pem")),),
        clients=(DETMOLD.subsystem("arbeitsschutz"),),
    )
    client = PeerClient(
        keys / "auth.pem", keys / "auth.key", _passphrase(layout), timeout_s=5, max_response_bytes=1 << 20
    )
    try:
        from core.errors import XwegError

        with pytest.raises(XwegError) as caught:
            cas = (load_certificate(layout.ca_certificate), load_certificate(layout.ca_dir / "issuing.pem"))
            await client.send(wrong, cas, b"XWEG/1\n", b"", pin=wrong.auth_cert_fingerprints[0])
        assert caught.value.fault_code == "Server.ClientProxy.SslAuthenticationFailed"
        assert "registered" in caught.value.message
    finally:
        await client.close()


# ------------------------------------------------------------------ auditors


def _snapshot(source: LogLocation, target: Path) -> Path:
    # One consistent state of the live log (a file or a shard), as an auditor takes it away.
    with MessageLogStore.open_readonly(source) as store:
        store.copy_to(target)
    return target


def _audit(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xweg", "audit", "verify", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_audit_verify_accepts_the_logs_and_catches_one_changed_byte(layout: Layout, tmp_path: Path) -> None:
    assert_still_serving(layout)
    for slug in ("paderborn", "detmold"):
        copy = _snapshot(layout.message_log(slug), tmp_path / f"{slug}.db")
        ok = _audit(copy, "--json", "--ca", str(layout.ca_certificate))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        summary = json.loads(ok.stdout)
        assert summary["first_error"] is None and summary["records"] >= 2

        # One byte of one stored body changes: verification fails and names the record.
        con = sqlite3.connect(copy)
        seq, body = con.execute(
            "SELECT seq, body FROM records WHERE length(body) > 0 ORDER BY seq LIMIT 1"
        ).fetchone()
        changed = bytearray(body)
        changed[0] ^= 0x01
        with con:
            con.execute("UPDATE records SET body = ? WHERE seq = ?", (bytes(changed), seq))
        con.close()
        bad = _audit(copy, "--json", "--ca", str(layout.ca_certificate))
        assert bad.returncode == 1
        assert json.loads(bad.stdout)["first_error"]["seq"] == seq


def test_audit_verify_uses_the_cas_recorded_in_the_log(layout: Layout, tmp_path: Path) -> None:
    copy = _snapshot(layout.message_log("detmold"), tmp_path / "detmold.db")
    result = _audit(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "intact" in result.stdout


def test_audit_verify_against_the_wrong_ca_fails(layout: Layout, tmp_path: Path) -> None:
    other = CertificateAuthority.create_root(
        "some other CA", generate_private_key(), now=dt.datetime.now(dt.UTC)
    )
    save_certificate(other.certificate, tmp_path / "other.pem")
    copy = _snapshot(layout.message_log("detmold"), tmp_path / "detmold.db")
    result = _audit(copy, "--ca", str(tmp_path / "other.pem"))
    assert result.returncode == 1
    assert "NOT intact" in result.stdout


def test_audit_verify_with_only_the_anchor(layout: Layout, tmp_path: Path) -> None:
    copy = _snapshot(layout.message_log("detmold"), tmp_path / "detmold.db")
    result = _audit(copy, "--anchor", str(layout.anchor))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified with the anchor" in result.stdout

    # A configuration document the operator altered no longer chains to the anchor.
    con = sqlite3.connect(copy)
    serial, document = con.execute(
        "SELECT serial, document FROM globalconf ORDER BY serial LIMIT 1"
    ).fetchone()
    forged = bytearray(document)
    forged[-10] ^= 0x01
    with con:
        con.execute("UPDATE globalconf SET document = ? WHERE serial = ?", (bytes(forged), serial))
    con.close()
    refused = _audit(copy, "--anchor", str(layout.anchor))
    assert refused.returncode != 0
    assert f"serial {serial}" in refused.stderr


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nowhere", 404), ("DELETE", "/healthz", 405)]
)
def test_unknown_routes_get_an_xroad_error_body(layout: Layout, method: str, path: str, status: int) -> None:
    result = call(layout.client_url("paderborn") + path, method, GEWERBEAMT)
    assert_xroad_error(result, status, "Client.InvalidRequest")


def test_anchor_refresh_from_the_running_registry(layout: Layout, tmp_path: Path) -> None:
    anchor = tmp_path / "anchor.json"
    shutil.copyfile(layout.anchor, anchor)
    result = subprocess.run(
        [sys.executable, "-m", "xweg", "anchor", "refresh", str(anchor)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "registry-1" in result.stdout and "threshold 1" in result.stdout

    # An anchor whose registry cannot be reached is left as it is, with one clear line.
    data = json.loads(anchor.read_text())
    data["registry_urls"] = ["http://127.0.0.1:9/"]
    anchor.write_text(json.dumps(data))
    before = anchor.read_bytes()
    refused = subprocess.run(
        [sys.executable, "-m", "xweg", "anchor", "refresh", str(anchor)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("xweg anchor refresh: no registry URL served")
    assert "Traceback" not in refused.stderr
    assert anchor.read_bytes() == before
