"""The auditor API over real HTTP on loopback: real tokens, a real log, every refusal logged."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from core.clock import FixedClock
from gateway.auditapi import AuditQuery, AuditQueryLog, EvidenceSource, make_auditor_app
from gateway.messagelog.checkpoint import Checkpoint
from gateway.messagelog.errors import MessageLogError
from gateway.messagelog.record import LogRecord
from gateway.messagelog.store import LogLocation
from tests.unit.gateway.audit_fixtures import ORIGIN, build_log
from tests.unit.gateway.messagelog.helpers import CLIENT, SERVICE, Signers
from trust import merkle
from trust.keys import generate_private_key
from trust.tokens import AUDIENCE, issue_auditor_token, key_id

NOW = dt.datetime(2025, 3, 5, 9, 0, 0, tzinfo=dt.UTC)
PREFIX = "/audit/v1"
ZIP = b"PK\x05\x06" + bytes(18)  # an empty ZIP archive


@pytest.fixture(scope="module")
def signers() -> Signers:
    return Signers()


@pytest.fixture(scope="module")
def token_key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession
    key: ec.EllipticCurvePrivateKey
    records: list[LogRecord]
    log_path: LogLocation  # the log the API reads
    audited: list[AuditQuery] = field(default_factory=list)
    evidence_calls: list[tuple[str, LogLocation]] = field(default_factory=list)  # (message id, log)

    def token(self, *, bodies: bool = False, subject: str = "auditor-1") -> str:
        return issue_auditor_token(
            self.key,
            issuer=ORIGIN,
            subject=subject,
            may_read_bodies=bodies,
            now=NOW - dt.timedelta(minutes=5),
        )

    async def get(
        self,
        path: str,
        token: str | None = None,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, headers=sent) as response:
            body = await response.read()
            ctype = response.headers.get("Content-Type", "")
            data: Any = json.loads(body) if ctype.startswith("application/json") else body
            return response.status, data, response


async def serve(
    tmp_path: Path,
    signers: Signers,
    key: ec.EllipticCurvePrivateKey,
    *,
    audit_log: Callable[[AuditQuery], Awaitable[None]] | None = None,
    evidence: EvidenceSource | None | bool = True,
    log_path: Path | None = None,
) -> AsyncIterator[Api]:
    """The API over a fresh log file of three exchanges (or over ``log_path`` instead)."""
    path = tmp_path / "messagelog.db"
    records = build_log(path, signers)
    async with serve_log(log_path or path, key, records, audit_log=audit_log, evidence=evidence) as api:
        yield api


@asynccontextmanager
async def serve_log(
    location: LogLocation,
    key: ec.EllipticCurvePrivateKey,
    records: list[LogRecord],
    *,
    audit_log: Callable[[AuditQuery], Awaitable[None]] | None = None,
    evidence: EvidenceSource | None | bool = True,
) -> AsyncIterator[Api]:
    """The API over the log at ``location``; by default every query is collected in
    ``Api.audited`` and the exporter records its calls and answers an empty ZIP."""
    api_holder: list[Api] = []

    async def collect(entry: AuditQuery) -> None:
        api_holder[0].audited.append(entry)

    async def export(message_id: str, location: LogLocation) -> bytes:
        api_holder[0].evidence_calls.append((message_id, location))
        return ZIP

    app = web.Application()
    app.add_subapp(
        PREFIX + "/",
        make_auditor_app(
            log_path=location,
            token_public_key=key.public_key(),
            issuer=ORIGIN,
            clock=FixedClock(NOW),
            audit_log=audit_log or collect,
            evidence=export if evidence is True else (evidence or None),
        ),
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        api = Api(str(server.make_url(PREFIX)), session, key, records, location)
        api_holder.append(api)
        try:
            yield api
        finally:
            await server.close()


@pytest.fixture
async def api(tmp_path: Path, signers: Signers, token_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[Api]:
    async for value in serve(tmp_path, signers, token_key):
        yield value


def assert_error(data: Any, fault: str, status: int, got: int) -> None:
    assert got == status, data
    assert set(data) == {"type", "message", "detail"}
    assert data["type"] == fault
    uuid.UUID(data["detail"])
    assert "Traceback" not in data["message"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ORIGIN,
        "aud": AUDIENCE,
        "sub": "mallory",
        "role": "auditor",
        "bodies": True,
        "iat": int(NOW.timestamp()) - 60,
        "exp": int(NOW.timestamp()) + 3600,
        "jti": "j-1",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


# -- reading -----------------------------------------------------------------------


async def test_search_lists_records_and_pages(api: Api) -> None:
    status, data, response = await api.get("/records", api.token())
    assert status == 200
    assert [r["seq"] for r in data] == [1, 2, 3, 4, 5, 6]
    first = data[0]
    assert first == {
        "seq": 1,
        "message_id": api.records[0].message_id,
        "logged_at": "2025-03-04T10:00:01.000000Z",
        "direction": "request",
        "client": CLIENT.slash(),
        "service": SERVICE.slash(),
        "status": None,
        "body_size": len(api.records[0].body),
    }
    assert "X-Next-After-Seq" not in response.headers
    status, data, response = await api.get("/records?limit=4", api.token())
    assert [r["seq"] for r in data] == [1, 2, 3, 4] and response.headers["X-Next-After-Seq"] == "4"
    status, data, _ = await api.get("/records?limit=4&after_seq=4", api.token())
    assert [r["seq"] for r in data] == [5, 6]


async def test_search_filters(api: Api) -> None:
    token = api.token()
    message_id = api.records[2].message_id
    _, data, _ = await api.get(f"/records?message_id={message_id}", token)
    assert [r["seq"] for r in data] == [3, 4]
    _, data, _ = await api.get(f"/records?client={CLIENT.slash()}&service={SERVICE.slash()}", token)
    assert len(data) == 6
    _, data, _ = await api.get("/records?client=EE/GOV/70000001/other", token)
    assert data == []
    since = "2025-03-04T12:00:03%2B02:00"  # 10:00:03Z, with an offset
    _, data, _ = await api.get(f"/records?since={since}&until=2025-03-04T10:00:03.040001Z", token)
    assert [r["seq"] for r in data] == [5, 6]


async def test_record_without_and_with_its_body(api: Api) -> None:
    status, data, _ = await api.get("/records/3", api.token())
    assert status == 200
    record = api.records[2]
    assert "body" not in data
    assert data["seq"] == 3 and data["signature"] == record.signature
    assert base64.b64decode(data["header_base64"]) == record.header
    assert data["header"]["message_id"] == record.message_id
    assert data["leaf_hash"] == record.leaf_hash.hex() and data["record_hash"] == record.record_hash.hex()
    assert data["body_storage"] == "inline" and data["checkpoint_size"] == 6
    status, data, _ = await api.get("/records/3?body=true", api.token(bodies=True))
    assert status == 200 and base64.b64decode(data["body"]) == record.body
    status, data, _ = await api.get("/records/3?body=false", api.token())
    assert status == 200 and "body" not in data


async def test_checkpoints_are_the_files_auditors_keep(api: Api) -> None:
    status, data, _ = await api.get("/checkpoints/latest", api.token())
    assert status == 200
    latest = Checkpoint.from_file_json(json.dumps(data).encode())
    assert latest.size == 6 and latest.origin == ORIGIN
    assert latest.root == merkle.root([r.leaf_hash for r in api.records])
    status, data, _ = await api.get("/checkpoints/2", api.token())
    assert status == 200 and Checkpoint.from_file_json(json.dumps(data).encode()).size == 2
    status, data, _ = await api.get("/checkpoints/3", api.token())
    assert_error(data, "Client.InvalidRequest", 404, status)


async def test_proofs_verify_against_the_checkpoints(api: Api) -> None:
    token = api.token()
    _, latest, _ = await api.get("/checkpoints/latest", token)
    _, older, _ = await api.get("/checkpoints/2", token)
    new_root = Checkpoint.from_file_json(json.dumps(latest).encode()).root
    old_root = Checkpoint.from_file_json(json.dumps(older).encode()).root
    for seq in range(1, 7):
        status, data, _ = await api.get(f"/proofs/inclusion?seq={seq}&tree_size=6", token)
        assert status == 200 and data["leaf_index"] == seq - 1 and data["tree_size"] == 6
        proof = [bytes.fromhex(h) for h in data["proof"]]
        merkle.verify_inclusion(api.records[seq - 1].leaf_hash, seq - 1, 6, proof, new_root)
    status, data, _ = await api.get("/proofs/consistency?old=2&new=6", token)
    assert status == 200 and (data["old_size"], data["new_size"]) == (2, 6)
    merkle.verify_consistency(2, 6, old_root, new_root, [bytes.fromhex(h) for h in data["proof"]])


async def test_evidence_comes_from_the_exporter(api: Api) -> None:
    message_id = api.records[0].message_id
    status, body, response = await api.get(
        f"/records/by-message/{message_id}/evidence", api.token(bodies=True)
    )
    assert status == 200 and body == ZIP
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"] == 'attachment; filename="evidence-1.zip"'
    assert api.evidence_calls == [(message_id, api.log_path)]
    status, data, _ = await api.get("/records/by-message/no-such-message/evidence", api.token(bodies=True))
    assert_error(data, "Client.InvalidRequest", 404, status)
    assert api.evidence_calls == [(message_id, api.log_path)]


# -- authentication and rights: the attacker's side --------------------------------


async def test_no_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    status, data, response = await api.get("/records")
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="xweg-auditor-api"'
    assert response.headers["X-Road-Error"] == "Server.ServerProxy.AccessDenied"


@pytest.mark.parametrize(
    "authorization", ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", "Token abc", "bearer not-a-jwt"]
)
async def test_malformed_authorization_is_401(api: Api, authorization: str) -> None:
    status, data, response = await api.get("/records", headers={"Authorization": authorization})
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="xweg-auditor-api"')


async def test_expired_token_is_401(api: Api) -> None:
    token = issue_auditor_token(
        api.key,
        issuer=ORIGIN,
        subject="a",
        may_read_bodies=True,
        now=NOW - dt.timedelta(hours=9),
        ttl_s=8 * 3600,
    )
    status, data, response = await api.get("/records", token)
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)
    assert "expired" in data["message"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_token_of_another_key_is_401(api: Api) -> None:
    other = generate_private_key()
    forged = jwt.encode(claims(), other, algorithm="ES256", headers={"kid": key_id(api.key.public_key())})
    status, data, _ = await api.get("/records", forged)
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)
    assert "signature" in data["message"]


@pytest.mark.parametrize(
    ("changes", "words"),
    [({"aud": "xweg-management-api"}, "auditor API"), ({"iss": "EE/GOV/70000002/ss1"}, "not issued by")],
)
async def test_token_for_another_audience_or_issuer_is_401(
    api: Api, changes: dict[str, object], words: str
) -> None:
    token = jwt.encode(claims(**changes), api.key, algorithm="ES256")
    status, data, _ = await api.get("/records", token)
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)
    assert words in data["message"]


async def test_alg_none_is_401(api: Api) -> None:
    header = b64url(json.dumps({"alg": "none"}).encode())
    token = f"{header}.{b64url(json.dumps(claims()).encode())}."
    status, data, _ = await api.get("/records", token)
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)
    assert "'none'" in data["message"]


async def test_hs256_keyed_with_the_public_key_is_401(api: Api) -> None:
    secret = api.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64url(json.dumps(claims()).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    status, data, _ = await api.get("/records", f"{signing_input}.{b64url(mac)}")
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)


@pytest.mark.parametrize("role", [None, "admin"])
async def test_wrong_or_missing_role_is_403(api: Api, role: str | None) -> None:
    token = jwt.encode({**claims(), "role": role} if role else claims(role=None), api.key, algorithm="ES256")
    status, data, response = await api.get("/records", token)
    assert_error(data, "Server.ServerProxy.AccessDenied", 403, status)
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


async def test_bodies_need_the_body_right(api: Api) -> None:
    status, data, _ = await api.get("/records/3?body=true", api.token(bodies=False))
    assert_error(data, "Server.ServerProxy.AccessDenied", 403, status)
    assert "right to read message bodies" in data["message"]
    message_id = api.records[0].message_id
    status, data, _ = await api.get(f"/records/by-message/{message_id}/evidence", api.token(bodies=False))
    assert_error(data, "Server.ServerProxy.AccessDenied", 403, status)
    assert api.evidence_calls == []


# -- parameters --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/records?limit=1001", "limit"),
        ("/records?limit=0", "limit"),
        ("/records?limit=%2B5", "whole number"),
        ("/records?limit=1e3", "whole number"),
        ("/records?after_seq=-1", "whole number"),
        ("/records?since=yesterday", "ISO 8601"),
        ("/records?since=2025-03-04T10:00:00", "time zone"),
        ("/records?since=2025-03-05T00:00:00Z&until=2025-03-04T00:00:00Z", "earlier than"),
        ("/records?client=not-an-id", "client"),
        ("/records?service=EE/GOV/1", "service"),
        ("/records?clinet=EE/GOV/70000001/tax-office", "unknown parameter"),
        ("/records?limit=1&limit=2", "more than once"),
        ("/records/0", "seq"),
        ("/records/abc", "seq"),
        ("/records/3?body=yes", "true or false"),
        ("/checkpoints/0", "checkpoint size"),
        ("/checkpoints/latest?x=1", "unknown parameter"),
        ("/proofs/inclusion?seq=1", "'tree_size' is required"),
        ("/proofs/inclusion?seq=5&tree_size=4", "not inside"),
        ("/proofs/consistency?old=6&new=2", "larger than new size"),
        ("/proofs/consistency?old=0&new=2", "old"),
    ],
)
async def test_bad_parameters_are_400(api: Api, path: str, words: str) -> None:
    status, data, _ = await api.get(path, api.token(bodies=True))
    assert_error(data, "Client.InvalidRequest", 400, status)
    assert words in data["message"]


async def test_beyond_the_log_is_404(api: Api) -> None:
    for path in ("/records/7", "/proofs/inclusion?seq=1&tree_size=7", "/proofs/consistency?old=1&new=9"):
        status, data, _ = await api.get(path, api.token())
        assert_error(data, "Client.InvalidRequest", 404, status)


async def test_the_api_is_read_only_and_has_no_other_routes(api: Api) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, data, response = await api.get("/records", api.token(), method=method)
        assert_error(data, "Client.InvalidRequest", 405, status)
        assert response.headers["Allow"] == "GET, HEAD"
    status, data, _ = await api.get("/records", method="DELETE")
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)
    status, data, _ = await api.get("/admin/keys", api.token())
    assert_error(data, "Client.InvalidRequest", 404, status)


# -- shards are PostgreSQL's (see test_auditapi_shards.py) ----------------------------


async def test_a_log_file_has_no_shards(api: Api) -> None:
    token = api.token(bodies=True)
    status, data, _ = await api.get("/shards", token)
    assert_error(data, "Client.InvalidRequest", 404, status)
    assert "one SQLite file" in data["message"] and "no shards" in data["message"]
    message_id = api.records[0].message_id
    paths = [
        "/records?shard=main",
        "/records/1?shard=main",
        "/checkpoints/latest?shard=main",
        "/checkpoints/2?shard=main",
        "/proofs/inclusion?seq=1&tree_size=6&shard=main",
        "/proofs/consistency?old=2&new=6&shard=main",
        f"/records/by-message/{message_id}/evidence?shard=main",
    ]
    for path in paths:
        status, data, _ = await api.get(path, token)
        assert_error(data, "Client.InvalidRequest", 400, status)
        assert "a single file, not shards" in data["message"]
    assert api.evidence_calls == []
    assert [(e.path.removeprefix(PREFIX), e.query, e.status) for e in api.audited] == [
        ("/shards", "", 404),
        *((path.partition("?")[0], path.partition("?")[2], 400) for path in paths),
    ]


# -- every query is logged ---------------------------------------------------------


async def test_every_request_is_audited_refused_ones_too(api: Api) -> None:
    await api.get("/records?limit=2", api.token(subject="anna"))
    await api.get("/records/3?body=true", api.token(subject="bert"))
    await api.get("/records")
    await api.get("/records", method="POST", headers={"Authorization": "Bearer x.y.z"})
    assert [(e.subject, e.method, e.path, e.query, e.status) for e in api.audited] == [
        ("anna", "GET", "/audit/v1/records", "limit=2", 200),
        ("bert", "GET", "/audit/v1/records/3", "body=true", 403),
        (None, "GET", "/audit/v1/records", "", 401),
        (None, "POST", "/audit/v1/records", "", 401),
    ]
    first, refused = api.audited[0], api.audited[1]
    assert first.at == NOW and first.remote == "127.0.0.1" and first.correlation_id is None
    assert first.token_id and refused.correlation_id


async def test_nothing_is_answered_when_the_query_cannot_be_logged(
    tmp_path: Path, signers: Signers, token_key: ec.EllipticCurvePrivateKey
) -> None:
    async def broken(entry: AuditQuery) -> None:
        raise OSError("disk full")

    async for api in serve(tmp_path, signers, token_key, audit_log=broken):
        status, data, _ = await api.get("/records/3?body=true", api.token(bodies=True))
        assert_error(data, "Server.ServerProxy.LoggingFailed", 500, status)
        assert "body" not in data and "disk full" not in data["message"]


async def test_queries_are_kept_in_a_durable_table(
    tmp_path: Path, signers: Signers, token_key: ec.EllipticCurvePrivateKey
) -> None:
    table = AuditQueryLog.open(tmp_path / "auditor-queries.db")
    try:
        async for api in serve(tmp_path, signers, token_key, audit_log=table):
            await api.get("/records/1", api.token(subject="carla"))
            await api.get("/checkpoints/latest")
    finally:
        table.close()
    reopened = AuditQueryLog.open(tmp_path / "auditor-queries.db")
    try:
        entries = reopened.entries()
    finally:
        reopened.close()
    assert [(e.subject, e.path, e.status) for e in entries] == [
        ("carla", "/audit/v1/records/1", 200),
        (None, "/audit/v1/checkpoints/latest", 401),
    ]
    assert entries[0].at == NOW and entries[0].token_id


# -- failures inside ---------------------------------------------------------------


async def test_an_exporter_failure_is_500_without_a_traceback(
    tmp_path: Path, signers: Signers, token_key: ec.EllipticCurvePrivateKey
) -> None:
    async def exploding(message_id: str, location: LogLocation) -> bytes:
        raise RuntimeError("secret internals at /srv/xweg")

    async for api in serve(tmp_path, signers, token_key, evidence=exploding):
        message_id = api.records[0].message_id
        status, data, _ = await api.get(f"/records/by-message/{message_id}/evidence", api.token(bodies=True))
        assert_error(data, "Server.ServerProxy.InternalError", 500, status)
        assert "secret" not in data["message"]
        assert api.audited[-1].correlation_id == data["detail"]


async def test_evidence_not_ready_yet_is_409(
    tmp_path: Path, signers: Signers, token_key: ec.EllipticCurvePrivateKey
) -> None:
    async def not_yet(message_id: str, location: LogLocation) -> bytes:
        raise MessageLogError("its last record is not covered by a checkpoint yet")

    async for api in serve(tmp_path, signers, token_key, evidence=not_yet):
        message_id = api.records[0].message_id
        status, data, _ = await api.get(f"/records/by-message/{message_id}/evidence", api.token(bodies=True))
        assert_error(data, "Server.ServerProxy.InternalError", 409, status)
        assert "not covered by a checkpoint yet" in data["message"]


async def test_no_exporter_is_501(
    tmp_path: Path, signers: Signers, token_key: ec.EllipticCurvePrivateKey
) -> None:
    async for api in serve(tmp_path, signers, token_key, evidence=False):
        message_id = api.records[0].message_id
        status, data, _ = await api.get(f"/records/by-message/{message_id}/evidence", api.token(bodies=True))
        assert_error(data, "Server.ServerProxy.UnknownService", 501, status)


async def test_a_missing_log_is_503(
    tmp_path: Path, signers: Signers, token_key: ec.EllipticCurvePrivateKey
) -> None:
    async for api in serve(tmp_path, signers, token_key, log_path=tmp_path / "gone.db"):
        with capture_logs() as logs:
            status, data, response = await api.get("/records", api.token())
        assert_error(data, "Server.ServerProxy.InternalError", 503, status)
        assert not (tmp_path / "gone.db").exists()
        # Where the log is (a file, or a database's host, user and name) is the operator's
        # to read in the server log, by the correlation id: never the auditor's.
        assert str(tmp_path) not in data["message"] and "gone.db" not in data["message"]
        assert "X-Xweg-Shard" not in response.headers
        [logged] = [entry for entry in logs if entry["event"] == "auditor_api.log_unavailable"]
        assert logged["correlation_id"] == data["detail"] and "gone.db" in logged["error"]


async def test_a_damaged_record_is_named_not_crashed(api: Api) -> None:
    from tests.unit.gateway.messagelog.helpers import tamper

    assert isinstance(api.log_path, Path)
    tamper(api.log_path, "UPDATE records SET logged_at = 'yesterday' WHERE seq = 2")
    status, data, _ = await api.get("/records/2", api.token())
    assert_error(data, "Server.ServerProxy.InternalError", 500, status)
    assert "record 2" in data["message"]
