"""Auditors against a running federation: the auditor API, evidence containers, data minimisation.

Real processes on loopback, tokens from the real ``xweg token issue`` and every
verification by the real ``xweg audit`` command line, as an auditor would run them.
Timestamp batches run every second, so checkpoints follow an exchange within seconds.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.rows
import pytest

from gateway.messagelog.store import MessageLogStore
from tests.integration.conftest import GEWERBEAMT, prepare_federation, two_server_plan
from tests.integration.test_exchange import ANZEIGE
from xweg.demo import Exchange, call
from xweg.federation import GEWERBEANZEIGE, Layout, RunningFederation, rest_path

pytestmark = pytest.mark.integration

DETMOLD_ORIGIN = "NRW/GOV/057/ss1"
SERVICE = GEWERBEANZEIGE.unversioned().slash()  # the client names no version
SENT = json.dumps(ANZEIGE).encode()  # exactly what xweg.demo.call puts on the wire
AUDIT = "/audit/v1"


# ------------------------------------------------------------------ federations


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    layout = prepare_federation(tmp_path_factory.mktemp("audited"), two_server_plan(timestamp_interval_s=1.0))
    with RunningFederation(layout).running(timeout_s=90):
        yield layout


@pytest.fixture(scope="module")
def minimising(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """Detmold's log keeps only digests of Paderborn's Gewerbeamt's bodies; Paderborn keeps them."""
    plan = two_server_plan(timestamp_interval_s=1.0)
    servers = tuple(
        dataclasses.replace(s, omit_bodies_for=(GEWERBEAMT.slash(),)) if s.slug == "detmold" else s
        for s in plan.servers
    )
    layout = prepare_federation(
        tmp_path_factory.mktemp("minimising"), dataclasses.replace(plan, servers=servers)
    )
    with RunningFederation(layout).running(timeout_s=90):
        yield layout


# ------------------------------------------------------------------ helpers


def _xweg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xweg", *args], capture_output=True, text=True, timeout=60)


def _token(layout: Layout, slug: str, subject: str, *, bodies: bool = False) -> str:
    args = ["token", "issue", "--role", "auditor", "--subject", subject, "--ttl", "30m"]
    args += ["--bodies"] if bodies else []
    issued = _xweg(*args, "--config", str(layout.server_config(slug)))
    assert issued.returncode == 0, issued.stderr
    assert subject in issued.stderr
    assert ("with the right to read bodies" in issued.stderr) is bodies
    token = issued.stdout.strip()
    assert token.count(".") == 2  # a compact JWS, alone on stdout
    return token


@pytest.fixture(scope="module")
def detmold_tokens(audited: Layout) -> dict[str, str]:
    return {
        "plain": _token(audited, "detmold", "Landesrechnungshof (Metadaten)"),
        "bodies": _token(audited, "detmold", "Landesrechnungshof (Inhalte)", bodies=True),
    }


def _api(
    layout: Layout, slug: str, route: str, token: str | None = None, **params: str
) -> tuple[int, dict[str, str], bytes]:
    url = layout.client_url(slug) + AUDIT + route
    if params:
        url += "?" + urllib.parse.urlencode(params)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _exchange(layout: Layout) -> str:
    """One Gewerbeanzeige from Paderborn's Gewerbeamt to Detmold; its message id."""
    url = layout.client_url("paderborn") + rest_path(GEWERBEANZEIGE, "/anzeigen")
    result: Exchange = call(url, "POST", GEWERBEAMT, ANZEIGE)
    assert result.status == 201, result.body
    return result.headers["X-Road-Id"]


def _health(layout: Layout, slug: str) -> dict[str, Any]:
    with urllib.request.urlopen(layout.client_url(slug) + "/readyz", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _wait_timestamped(layout: Layout, message_id: str, *slugs: str, timeout_s: float = 20.0) -> None:
    """Until each server's records of ``message_id`` (request and response) are under a checkpoint."""
    deadline = time.monotonic() + timeout_s
    for slug in slugs:
        while True:
            health = _health(layout, slug)
            with MessageLogStore.open_readonly(layout.message_log(slug)) as store:
                records = store.find(message_id)
                checkpoint = store.last_checkpoint()
            covered = (
                len(records) == 2
                and checkpoint is not None
                and checkpoint.size >= records[-1].seq
                and health["untimestamped_records"] == 0
            )
            if covered:
                break
            assert time.monotonic() < deadline, f"{slug}: {message_id} not timestamped in {timeout_s} s"
            time.sleep(0.2)


def _snapshot(layout: Layout, slug: str, target: Path) -> Path:
    """A consistent copy of a live log (a file or a shard), with its blobs beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with MessageLogStore.open_readonly(layout.message_log(slug)) as store:
        store.copy_to(target)
    return target


def _auditor_queries(layout: Layout, slug: str) -> list[dict[str, Any]]:
    database_url = layout.server_database_url(slug)
    if database_url is not None:  # the table the server's replicas share
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as pg:
            return pg.execute("SELECT * FROM auditor_queries.auditor_queries ORDER BY id").fetchall()
    path = layout.server_dir(slug) / "data" / "auditor-queries.db"
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM auditor_queries ORDER BY id")]
    finally:
        con.close()


# ------------------------------------------------------------------ 1. the auditor API


def test_auditor_api_searches_and_guards_bodies(audited: Layout, detmold_tokens: dict[str, str]) -> None:
    message_id = _exchange(audited)
    plain, bodies = detmold_tokens["plain"], detmold_tokens["bodies"]

    # Search by message id and client: the request and the response, as Detmold logged them.
    status, _, payload = _api(
        audited, "detmold", "/records", plain, message_id=message_id, client=GEWERBEAMT.slash()
    )
    assert status == 200, payload
    found = json.loads(payload)
    assert [r["direction"] for r in found] == ["request", "response"]
    assert {r["message_id"] for r in found} == {message_id}
    assert {r["client"] for r in found} == {GEWERBEAMT.slash()}
    assert {r["service"] for r in found} == {SERVICE}
    assert found[0]["body_size"] == len(SENT) and found[1]["status"] == 201
    request_seq, response_seq = found[0]["seq"], found[1]["seq"]
    assert response_seq > request_seq
    # Another client's filter finds nothing of it.
    status, _, payload = _api(
        audited, "detmold", "/records", plain, message_id=message_id, client="NRW/MUN/05774/kreisverwaltung"
    )
    assert status == 200 and json.loads(payload) == []

    # The latest checkpoint, once the exchange is timestamped: Detmold's, covering both records.
    _wait_timestamped(audited, message_id, "detmold")
    status, headers, payload = _api(audited, "detmold", "/checkpoints/latest", plain)
    assert status == 200, payload
    assert headers["Content-Type"].startswith("application/json")
    checkpoint_file = json.loads(payload)
    assert checkpoint_file["format"] == "xweg-checkpoint-file/1"
    checkpoint = json.loads(checkpoint_file["body"])
    assert checkpoint["origin"] == DETMOLD_ORIGIN
    assert checkpoint["size"] >= response_seq and len(checkpoint["root"]) == 64
    assert checkpoint_file["token"] and checkpoint_file["signature"]

    # No token: 401 with a Bearer challenge, and no data.
    status, headers, payload = _api(audited, "detmold", "/records", message_id=message_id)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert message_id not in payload.decode()

    # A token of Paderborn's server is good at Paderborn's, and refused at Detmold's.
    paderborns = _token(audited, "paderborn", "Landesrechnungshof (Metadaten)")
    status, _, payload = _api(audited, "paderborn", "/records", paderborns, message_id=message_id)
    assert status == 200 and len(json.loads(payload)) == 2
    status, headers, payload = _api(audited, "detmold", "/records", paderborns, message_id=message_id)
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert message_id not in payload.decode()

    # A record's metadata without the body right; its body only with it.
    status, _, payload = _api(audited, "detmold", f"/records/{request_seq}", plain)
    assert status == 200
    record = json.loads(payload)
    assert record["message_id"] == message_id and "body" not in record
    assert record["body_storage"] == "inline"
    status, headers, payload = _api(audited, "detmold", f"/records/{request_seq}", plain, body="true")
    assert status == 403
    assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    refusal = json.loads(payload)
    assert "body" not in refusal and "right to read message bodies" in refusal["message"]
    status, _, payload = _api(audited, "detmold", f"/records/{request_seq}", bodies, body="true")
    assert status == 200
    record = json.loads(payload)
    assert base64.b64decode(record["body"]) == SENT
    assert record["header"]["body_size"] == len(SENT)


# ------------------------------------------------------------------ 2. evidence, offline


def test_exported_evidence_verifies_offline_and_one_flipped_byte_fails(
    audited: Layout, detmold_tokens: dict[str, str], tmp_path: Path
) -> None:
    message_id = _exchange(audited)
    _wait_timestamped(audited, message_id, "detmold")
    token_file = tmp_path / "auditor.jwt"
    token_file.write_text(detmold_tokens["bodies"] + "\n")
    container = tmp_path / "evidence.zip"

    exported = _xweg(
        "audit", "export", "--message-id", message_id,
        "--server", audited.client_url("detmold"), "--token-file", str(token_file),
        "--out", str(container),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert message_id in exported.stdout

    verified = _xweg("audit", "verify", str(container), "--anchor", str(audited.anchor))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "valid evidence" in verified.stdout
    assert GEWERBEAMT.slash() in verified.stdout
    assert SERVICE in verified.stdout
    assert message_id in verified.stdout
    assert "timestamped" in verified.stdout
    assert DETMOLD_ORIGIN in verified.stdout

    # The request's body, as the container holds it, is what the client sent.
    with zipfile.ZipFile(container) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    manifest = json.loads(members["manifest.json"])
    assert manifest["message_id"] == message_id
    request_seq = min(
        json.loads(data)["seq"]
        for name, data in members.items()
        if name.startswith("records/") and name.endswith(".json")
    )
    body_name = f"records/{request_seq}.body"
    assert members[body_name] == SENT

    # One byte of that body changes: the container no longer verifies.
    changed = bytearray(members[body_name])
    changed[len(changed) // 2] ^= 0x01
    members[body_name] = bytes(changed)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    refused = _xweg("audit", "verify", str(tampered), "--anchor", str(audited.anchor))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "NOT valid evidence" in refused.stdout
    assert "Step 3 (records)" in refused.stdout


def test_export_needs_the_body_right(audited: Layout, detmold_tokens: dict[str, str], tmp_path: Path) -> None:
    message_id = _exchange(audited)
    token_file = tmp_path / "auditor.jwt"
    token_file.write_text(detmold_tokens["plain"])
    out = tmp_path / "evidence.zip"
    exported = _xweg(
        "audit", "export", "--message-id", message_id,
        "--server", audited.client_url("detmold"), "--token-file", str(token_file), "--out", str(out),
    )  # fmt: skip
    assert exported.returncode == 1
    assert "HTTP 403" in exported.stderr
    assert not out.exists()


# ------------------------------------------------------------------ 3. every query is logged


def test_every_auditor_query_is_logged_refusals_included(audited: Layout) -> None:
    subject = f"Prüferin {uuid.uuid4().hex[:8]}"
    token = _token(audited, "detmold", subject)
    foreign = _token(audited, "paderborn", subject)
    message_id = _exchange(audited)
    _wait_timestamped(audited, message_id, "detmold")
    marker = {name: str(uuid.uuid4()) for name in ("ok", "anonymous", "foreign")}
    before = len(_auditor_queries(audited, "detmold"))

    assert _api(audited, "detmold", "/records", token, message_id=marker["ok"])[0] == 200
    assert _api(audited, "detmold", "/records", None, message_id=marker["anonymous"])[0] == 401
    assert _api(audited, "detmold", "/records", foreign, message_id=marker["foreign"])[0] == 401
    status, _, payload = _api(audited, "detmold", "/records", token, message_id=message_id)
    seq = json.loads(payload)[0]["seq"]
    assert _api(audited, "detmold", f"/records/{seq}", token, body="true")[0] == 403
    assert _api(audited, "detmold", "/checkpoints/latest", token)[0] == 200

    rows = _auditor_queries(audited, "detmold")[before:]
    assert len(rows) == 6  # one durable row per call, written before the answer left

    def row(fragment: str, path: str = f"{AUDIT}/records") -> dict[str, Any]:
        matching = [r for r in rows if fragment in r["query"] and r["path"] == path]
        assert len(matching) == 1, rows
        return matching[0]

    ok = row(marker["ok"])
    assert (ok["status"], ok["subject"], ok["method"]) == (200, subject, "GET")
    assert ok["token_id"] and ok["at"] and ok["correlation_id"] is None
    anonymous = row(marker["anonymous"])
    assert (anonymous["status"], anonymous["subject"], anonymous["token_id"]) == (401, None, None)
    assert anonymous["correlation_id"]
    # A token another server signed proves nothing about who sent it: no subject is recorded.
    assert (row(marker["foreign"])["status"], row(marker["foreign"])["subject"]) == (401, None)
    forbidden = row("body=true", f"{AUDIT}/records/{seq}")
    assert (forbidden["status"], forbidden["subject"]) == (403, subject)
    assert forbidden["token_id"] == ok["token_id"] and forbidden["correlation_id"]
    assert [r["subject"] for r in rows if r["path"] == f"{AUDIT}/checkpoints/latest"] == [subject]


# ------------------------------------------------------------------ 4. data minimisation


def test_omitted_bodies_keep_their_digest_and_still_verify(minimising: Layout, tmp_path: Path) -> None:
    config = minimising.server_config("detmold").read_text()
    assert f'omit_bodies_for = ["{GEWERBEAMT.slash()}"]' in config
    assert "omit_bodies_for" not in minimising.server_config("paderborn").read_text()

    message_id = _exchange(minimising)
    _wait_timestamped(minimising, message_id, "detmold", "paderborn")

    with MessageLogStore.open_readonly(minimising.message_log("detmold")) as store:
        provider_side = store.find(message_id)
    with MessageLogStore.open_readonly(minimising.message_log("paderborn")) as store:
        consumer_side = store.find(message_id)
    assert [r.body_storage for r in provider_side] == ["omitted", "omitted"]
    assert [r.body for r in provider_side] == [b"", b""]
    assert [r.body_storage for r in consumer_side] == ["inline", "inline"]
    assert consumer_side[0].body == SENT
    # Detmold's signed request header still binds the body by its digest.
    logged = json.loads(provider_side[0].header)
    assert logged["body_size"] == len(SENT)
    assert logged["body_sha512"] == json.loads(consumer_side[0].header)["body_sha512"]

    # The whole log verifies ...
    copy = _snapshot(minimising, "detmold", tmp_path / "detmold" / "messagelog.db")
    whole = _xweg("audit", "verify", str(copy), "--json")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    summary = json.loads(whole.stdout)
    assert summary["first_error"] is None and summary["records"] >= 2

    # ... and so does the exchange's evidence, which says only the digest was kept.
    container = tmp_path / "evidence.zip"
    exported = _xweg(
        "audit", "export", "--message-id", message_id, "--log", str(copy), "--out", str(container)
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    with zipfile.ZipFile(container) as zf:
        assert not [n for n in zf.namelist() if n.endswith(".body")]
    verified = _xweg("audit", "verify", str(container), "--anchor", str(minimising.anchor))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "metadata-only" in verified.stdout and "timestamped" in verified.stdout


# ------------------------------------------------------------------ 5. the log only grows


def test_checkpoints_kept_by_an_auditor_prove_the_log_only_grew(audited: Layout, tmp_path: Path) -> None:
    first = _exchange(audited)
    _wait_timestamped(audited, first, "detmold")
    old_log = _snapshot(audited, "detmold", tmp_path / "old" / "messagelog.db")
    old = tmp_path / "old.json"
    kept = _xweg("audit", "checkpoint", str(old_log), "--out", str(old))
    assert kept.returncode == 0, kept.stdout + kept.stderr
    old_size = json.loads(json.loads(old.read_text())["body"])["size"]

    later = [_exchange(audited) for _ in range(3)]
    _wait_timestamped(audited, later[-1], "detmold")
    new_log = _snapshot(audited, "detmold", tmp_path / "new" / "messagelog.db")
    new = tmp_path / "new.json"
    kept = _xweg("audit", "checkpoint", str(new_log), "--out", str(new))
    assert kept.returncode == 0, kept.stdout + kept.stderr
    new_size = json.loads(json.loads(new.read_text())["body"])["size"]
    assert new_size >= old_size + 6  # three more exchanges, two records each

    grew = _xweg("audit", "consistency", str(old), str(new), "--log", str(new_log))
    assert grew.returncode == 0, grew.stdout + grew.stderr
    assert f"the log only grew from {old_size} to {new_size}" in grew.stdout
    assert DETMOLD_ORIGIN in grew.stdout

    # Swapped, the same two checkpoints would claim the log shrank: refused.
    shrank = _xweg("audit", "consistency", str(new), str(old), "--log", str(new_log))
    assert shrank.returncode == 1, shrank.stdout + shrank.stderr
    assert "NOT consistent" in shrank.stdout
