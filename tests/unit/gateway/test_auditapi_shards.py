"""The auditor API of a replica on PostgreSQL: any replica answers for every shard of the server.

Two real shards in one fresh database, written, signed and checkpointed as replicas
write them (:func:`tests.unit.gateway.messagelog.federation.write_log`): replica a
logged five exchanges (``msg-1`` .. ``msg-5``, records 1-10, checkpoints 6 and 10),
replica b three (``msg-1`` .. ``msg-3``, records 1-6, checkpoint 6).  The API under
test is replica b's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auditapi import AUDIT_QUERY_PG_SCHEMA, SHARD_HEADER, AuditQueryLog
from gateway.messagelog.checkpoint import Checkpoint
from gateway.messagelog.evidence import build_evidence
from gateway.messagelog.store import LogLocation, MessageLogStore, PostgresLogShard
from tests.databases import fresh_postgres_database
from tests.unit.gateway.messagelog.federation import T0, Federation, federation, write_log
from tests.unit.gateway.test_auditapi import PREFIX, ZIP, Api, assert_error, serve_log
from trust import merkle
from trust.evidence import verify_evidence
from trust.keys import generate_private_key

pytestmark = pytest.mark.postgres

OWN, OTHER = "replica_b", "replica_a"


@pytest.fixture(scope="module")
def fed() -> Federation:
    return federation()


@pytest.fixture(scope="module")
def token_key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


@pytest.fixture
def database(fed: Federation) -> Iterator[str]:
    for url in fresh_postgres_database("xweg_auditapi"):  # one database, dropped when resumed
        write_log(PostgresLogShard(url, OTHER), fed)  # type: ignore[arg-type]
        write_log(PostgresLogShard(url, OWN), fed, upto=6)  # type: ignore[arg-type]
        yield url


@pytest.fixture
async def api(database: str, token_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[Api]:
    async with serve_log(PostgresLogShard(database, OWN), token_key, []) as api:
        yield api


def checkpoint(data: Any) -> Checkpoint:
    return Checkpoint.from_file_json(json.dumps(data).encode())


async def test_shards_names_every_shard_and_this_replicas_own(api: Api) -> None:
    status, data, _ = await api.get("/shards", api.token())
    assert status == 200
    assert data == {"own": OWN, "shards": [OTHER, OWN]}


async def test_search_reads_the_shard_asked_for_and_says_which(api: Api) -> None:
    token = api.token()
    _, data, _ = await api.get("/records", token)
    assert [r["seq"] for r in data] == [1, 2, 3, 4, 5, 6]
    assert {r["shard"] for r in data} == {OWN}
    status, data, response = await api.get(f"/records?shard={OTHER}&limit=8", token)
    assert status == 200 and [r["seq"] for r in data] == list(range(1, 9))
    assert {r["shard"] for r in data} == {OTHER}
    assert response.headers["X-Next-After-Seq"] == "8"
    # The next page, from whichever replica answers next, is where the header says.
    assert response.headers[SHARD_HEADER] == OTHER
    _, data, response = await api.get(f"/records?shard={OTHER}&after_seq=8", token)
    assert [(r["shard"], r["seq"]) for r in data] == [(OTHER, 9), (OTHER, 10)]
    assert response.headers[SHARD_HEADER] == OTHER and "X-Next-After-Seq" not in response.headers
    _, data, response = await api.get("/records?after_seq=5", token)
    assert [r["seq"] for r in data] == [6] and response.headers[SHARD_HEADER] == OWN
    _, data, _ = await api.get(f"/records?shard={OTHER}&message_id=msg-4", token)
    assert [(r["shard"], r["seq"], r["direction"]) for r in data] == [
        (OTHER, 7, "request"),
        (OTHER, 8, "response"),
    ]
    _, data, _ = await api.get("/records?message_id=msg-4", token)
    assert data == []
    _, data, _ = await api.get(f"/records?shard={OWN}", token)  # this replica's own, named
    assert [(r["shard"], r["seq"]) for r in data] == [(OWN, seq) for seq in range(1, 7)]


async def test_records_checkpoints_and_proofs_of_another_shard(api: Api) -> None:
    token = api.token(bodies=True)
    # Record 8 is only in the other replica's tree.
    status, data, _ = await api.get("/records/8", token)
    assert_error(data, "Client.InvalidRequest", 404, status)
    assert f"shard {OWN}" in data["message"]
    status, record, response = await api.get(f"/records/8?shard={OTHER}&body=true", token)
    assert status == 200 and response.headers[SHARD_HEADER] == OTHER
    assert (record["shard"], record["seq"], record["message_id"]) == (OTHER, 8, "msg-4")
    assert record["checkpoint_size"] == 10 and "body" in record
    _, own_record, _ = await api.get("/records/1", token)
    assert own_record["shard"] == OWN

    _, latest, _ = await api.get("/checkpoints/latest", token)
    assert checkpoint(latest).size == 6
    _, other_latest, _ = await api.get(f"/checkpoints/latest?shard={OTHER}", token)
    status, data, _ = await api.get("/checkpoints/10", token)
    assert_error(data, "Client.InvalidRequest", 404, status)
    status, other_ten, _ = await api.get(f"/checkpoints/10?shard={OTHER}", token)
    assert status == 200 and other_ten == other_latest
    _, other_six, _ = await api.get(f"/checkpoints/6?shard={OTHER}", token)
    new, old = checkpoint(other_ten), checkpoint(other_six)
    assert new.size == 10 and old.size == 6
    assert checkpoint(latest).root != new.root

    status, data, _ = await api.get("/proofs/inclusion?seq=8&tree_size=10", token)
    assert_error(data, "Client.InvalidRequest", 404, status)
    status, data, response = await api.get(f"/proofs/inclusion?seq=8&tree_size=10&shard={OTHER}", token)
    assert status == 200 and data["leaf_index"] == 7 and response.headers[SHARD_HEADER] == OTHER
    proof = [bytes.fromhex(h) for h in data["proof"]]
    merkle.verify_inclusion(bytes.fromhex(record["leaf_hash"]), 7, 10, proof, new.root)

    status, data, _ = await api.get("/proofs/consistency?old=6&new=10", token)
    assert_error(data, "Client.InvalidRequest", 404, status)
    status, data, _ = await api.get(f"/proofs/consistency?old=6&new=10&shard={OTHER}", token)
    assert status == 200
    merkle.verify_consistency(6, 10, old.root, new.root, [bytes.fromhex(h) for h in data["proof"]])


async def test_evidence_comes_from_whichever_shard_holds_the_message(api: Api, database: str) -> None:
    token = api.token(bodies=True)
    own, other = PostgresLogShard(database, OWN), PostgresLogShard(database, OTHER)
    # msg-4 went through the other replica only: found there without being told.
    status, body, response = await api.get("/records/by-message/msg-4/evidence", token)
    assert status == 200 and body == ZIP and response.headers[SHARD_HEADER] == OTHER
    assert response.headers["Content-Disposition"] == f'attachment; filename="evidence-{OTHER}-7.zip"'
    assert api.evidence_calls == [("msg-4", other)]
    # A message id both shards hold: this replica's own shard first, unless told otherwise.
    _, _, response = await api.get("/records/by-message/msg-2/evidence", token)
    assert response.headers["Content-Disposition"] == f'attachment; filename="evidence-{OWN}-3.zip"'
    await api.get(f"/records/by-message/msg-2/evidence?shard={OTHER}", token)
    assert api.evidence_calls[1:] == [("msg-2", own), ("msg-2", other)]
    # With shard, only that shard.
    status, data, _ = await api.get(f"/records/by-message/msg-4/evidence?shard={OWN}", token)
    assert_error(data, "Client.InvalidRequest", 404, status)
    assert f"shard {OWN}" in data["message"]
    status, data, _ = await api.get("/records/by-message/msg-9/evidence", token)
    assert_error(data, "Client.InvalidRequest", 404, status)
    assert "no shard" in data["message"]
    assert len(api.evidence_calls) == 3


async def test_evidence_of_another_shard_verifies_with_the_anchor(
    database: str, token_key: ec.EllipticCurvePrivateKey, fed: Federation
) -> None:
    # The exporter the server wires: a read-only store at the location it is given.
    async def export(message_id: str, location: LogLocation) -> bytes:
        def build() -> bytes:
            with MessageLogStore.open_readonly(location) as store:
                return build_evidence(store, message_id, now=T0 + dt.timedelta(days=400))

        return await asyncio.to_thread(build)

    async with serve_log(PostgresLogShard(database, OWN), token_key, [], evidence=export) as api:
        status, container, _ = await api.get("/records/by-message/msg-5/evidence", api.token(bodies=True))
    assert status == 200
    report = verify_evidence(container, fed.anchor())
    assert (report.message_id, report.request_seq, report.response_seq) == ("msg-5", 9, 10)
    assert report.tree_size == 10


@pytest.mark.parametrize("name", ["../x", "A", "a" * 41, "", "_a", "replica-a", "r%00"])
async def test_a_malformed_shard_name_is_400(api: Api, name: str) -> None:
    status, data, _ = await api.get(f"/records?shard={name}", api.token())
    assert_error(data, "Client.InvalidRequest", 400, status)
    assert "a message-log shard is 1 to 40 of a-z" in data["message"]


async def test_a_shard_the_database_does_not_have_is_404(api: Api) -> None:
    token = api.token(bodies=True)
    for path in (
        "/records?shard=replica_c",
        "/records/1?shard=replica_c",
        "/checkpoints/latest?shard=replica_c",
        "/proofs/inclusion?seq=1&tree_size=6&shard=replica_c",
        "/proofs/consistency?old=1&new=6&shard=replica_c",
        "/records/by-message/msg-1/evidence?shard=replica_c",
    ):
        status, data, _ = await api.get(path, token)
        assert_error(data, "Client.InvalidRequest", 404, status)
        assert "no shard 'replica_c'" in data["message"]
    assert api.evidence_calls == []


async def test_shard_parameters_are_checked_like_every_other(api: Api) -> None:
    token = api.token()
    status, data, _ = await api.get(f"/records?shard={OTHER}&shard={OWN}", token)
    assert_error(data, "Client.InvalidRequest", 400, status)
    assert "more than once" in data["message"]
    status, data, _ = await api.get(f"/shards?shard={OTHER}", token)
    assert_error(data, "Client.InvalidRequest", 400, status)
    assert "unknown parameter" in data["message"]
    status, data, _ = await api.get("/shards")
    assert_error(data, "Server.ServerProxy.AccessDenied", 401, status)


async def test_every_shard_request_is_audited(api: Api) -> None:
    await api.get("/shards", api.token(subject="anna"))
    await api.get(f"/records?shard={OTHER}&limit=2", api.token(subject="anna"))
    await api.get(f"/records/9?shard={OTHER}&body=true", api.token(subject="bert"))
    await api.get("/records?shard=replica_c", api.token(subject="bert"))
    await api.get("/records?shard=../x", api.token(subject="bert"))
    await api.get(f"/records?shard={OTHER}")
    assert [(e.subject, e.path, e.query, e.status) for e in api.audited] == [
        ("anna", PREFIX + "/shards", "", 200),
        ("anna", PREFIX + "/records", f"shard={OTHER}&limit=2", 200),
        ("bert", PREFIX + "/records/9", f"shard={OTHER}&body=true", 403),
        ("bert", PREFIX + "/records", "shard=replica_c", 404),
        ("bert", PREFIX + "/records", "shard=../x", 400),
        (None, PREFIX + "/records", f"shard={OTHER}", 401),
    ]
    assert all(e.correlation_id for e in api.audited[2:])


async def test_replicas_keep_one_record_of_the_auditors_queries(
    database: str, token_key: ec.EllipticCurvePrivateKey
) -> None:
    # Two replicas' APIs, each with the table they share: what either answered is in it,
    # with the replica that answered.
    tables = {name: AuditQueryLog.open(database, replica=name) for name in (OWN, OTHER)}
    try:
        for name in (OWN, OTHER):
            async with serve_log(
                PostgresLogShard(database, name), token_key, [], audit_log=tables[name]
            ) as api:
                assert (await api.get("/records?limit=1", api.token(subject=f"asked {name}")))[0] == 200
                assert (await api.get("/shards"))[0] == 401
        entries = tables[OWN].entries()
        assert entries == tables[OTHER].entries()
    finally:
        for table in tables.values():
            table.close()
    assert [(e.subject, e.path, e.query, e.status) for e in entries] == [
        (f"asked {OWN}", f"{PREFIX}/records", "limit=1", 200),
        (None, f"{PREFIX}/shards", "", 401),
        (f"asked {OTHER}", f"{PREFIX}/records", "limit=1", 200),
        (None, f"{PREFIX}/shards", "", 401),
    ]
    with psycopg.connect(database) as connection:
        replicas = connection.execute(
            f"SELECT replica FROM {AUDIT_QUERY_PG_SCHEMA}.auditor_queries ORDER BY id"
        ).fetchall()
    assert [row[0] for row in replicas] == [OWN, OWN, OTHER, OTHER]


def test_a_shared_query_log_needs_the_replicas_name_and_a_reachable_database(database: str) -> None:
    with pytest.raises(ValueError, match="needs the replica's name"):
        AuditQueryLog.open(database)
    with pytest.raises(OSError, match=r"cannot open the auditor query log in postgresql://xweg:\*\*\*@"):
        AuditQueryLog.open("postgresql://xweg:s3cr3t@127.0.0.1:1/ss1", replica=OWN)


async def test_a_query_that_cannot_be_recorded_is_not_answered(
    database: str, token_key: ec.EllipticCurvePrivateKey
) -> None:
    table = AuditQueryLog.open(database, replica=OWN)
    try:
        with psycopg.connect(database, autocommit=True) as connection:
            # The table refuses every row, as a full or read-only database would.
            connection.execute(
                f"ALTER TABLE {AUDIT_QUERY_PG_SCHEMA}.auditor_queries"
                " ADD CONSTRAINT nothing CHECK (false) NOT VALID"
            )
        async with serve_log(PostgresLogShard(database, OWN), token_key, [], audit_log=table) as api:
            status, data, _ = await api.get("/records", api.token())
        assert_error(data, "Server.ServerProxy.LoggingFailed", 500, status)
        assert "seq" not in json.dumps(data)
    finally:
        table.close()
