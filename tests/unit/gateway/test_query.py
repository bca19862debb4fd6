"""Read-only message-log queries: search, records, checkpoints and proofs that verify."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.messagelog import query
from gateway.messagelog.errors import CorruptRecord, LogFileMissing
from gateway.messagelog.record import BodyPolicy, Direction, LogRecord
from gateway.messagelog.store import MessageLogStore
from tests.unit.gateway.audit_fixtures import NOW, add_checkpoint, build_log
from tests.unit.gateway.messagelog.helpers import CLIENT, SERVICE, Signers, make_exchange, tamper, write_log
from trust import merkle


@pytest.fixture(scope="module")
def signers() -> Signers:
    return Signers()


@pytest.fixture
def log(tmp_path: Path, signers: Signers) -> tuple[Path, list[LogRecord]]:
    path = tmp_path / "messagelog.db"
    return path, build_log(path, signers)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- search ------------------------------------------------------------------------


def test_search_lists_every_record_in_order(log: tuple[Path, list[LogRecord]]) -> None:
    path, records = log
    found = query.search(path)
    assert [s.seq for s in found] == [r.seq for r in records]
    first = found[0]
    assert first.message_id == records[0].message_id
    assert first.direction is Direction.REQUEST and first.status is None
    assert found[1].direction is Direction.RESPONSE and found[1].status == 200
    assert first.client == CLIENT.slash() and first.service == SERVICE.slash()
    assert first.logged_at == records[0].logged_at
    assert first.body_size == len(records[0].body)


def test_search_filters_by_message_client_and_service(log: tuple[Path, list[LogRecord]]) -> None:
    path, records = log
    assert [s.seq for s in query.search(path, message_id=records[2].message_id)] == [3, 4]
    assert len(query.search(path, client=CLIENT.slash())) == 6
    assert query.search(path, client="EE/GOV/70000001/other") == []
    assert len(query.search(path, service=SERVICE.slash())) == 6
    # A service named without its version matches every version of it, and nothing longer.
    unversioned = SERVICE.slash().rsplit("/", 1)[0]
    assert len(query.search(path, service=unversioned)) == 6
    assert query.search(path, service=unversioned[:-1]) == []
    assert query.search(path, service=unversioned + "/v2") == []


def test_search_by_time_is_inclusive_then_exclusive(log: tuple[Path, list[LogRecord]]) -> None:
    path, records = log
    since, until = records[2].logged_at, records[4].logged_at
    assert [s.seq for s in query.search(path, since=since, until=until)] == [3, 4]
    assert [s.seq for s in query.search(path, since=records[5].logged_at)] == [6]
    assert query.search(path, until=records[0].logged_at) == []


def test_search_pages_with_limit_and_after_seq(log: tuple[Path, list[LogRecord]]) -> None:
    path, _ = log
    assert [s.seq for s in query.search(path, limit=4)] == [1, 2, 3, 4]
    assert [s.seq for s in query.search(path, limit=4, after_seq=4)] == [5, 6]
    assert query.search(path, after_seq=6) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": query.MAX_LIMIT + 1}, "at most 1000"),
        ({"limit": True}, "limit"),
        ({"after_seq": -1}, "after_seq"),
        ({"since": dt.datetime(2025, 3, 4, 10)}, "UTC"),
        ({"since": NOW, "until": NOW}, "earlier than"),
        ({"client": ""}, "client"),
        ({"message_id": "x\n"}, "control characters"),
    ],
)
def test_impossible_searches_are_refused(
    log: tuple[Path, list[LogRecord]], kwargs: dict[str, object], message: str
) -> None:
    path, _ = log
    with pytest.raises(query.InvalidQuery, match=message):
        query.search(path, **kwargs)  # type: ignore[arg-type]


def test_a_damaged_row_is_named(log: tuple[Path, list[LogRecord]]) -> None:
    path, _ = log
    tamper(path, "UPDATE records SET direction = 'sideways' WHERE seq = 5")
    with pytest.raises(CorruptRecord, match="record 5"):
        query.search(path)
    assert [s.seq for s in query.search(path, limit=4)] == [1, 2, 3, 4]


def test_queries_never_create_or_change_the_file(tmp_path: Path, log: tuple[Path, list[LogRecord]]) -> None:
    path, _ = log
    before = digest(path)
    query.search(path, client=CLIENT.slash())
    query.get_record(path, 3, with_body=True)
    query.checkpoint(path)
    query.inclusion_proof(path, 1, 6)
    query.consistency_proof(path, 2, 6)
    assert digest(path) == before
    missing = tmp_path / "nothing.db"
    with pytest.raises(LogFileMissing):
        query.search(missing)
    assert not missing.exists()


def test_suggested_indexes_are_used_and_change_no_result(
    tmp_path: Path, log: tuple[Path, list[LogRecord]]
) -> None:
    path, records = log
    indexed = tmp_path / "indexed.db"
    shutil.copy(path, indexed)
    connection = sqlite3.connect(indexed)
    try:
        for statement in query.SUGGESTED_INDEXES:
            connection.execute(statement)
        connection.commit()
        shapes = {
            "records_client": ("client = ?", CLIENT.slash()),
            "records_service": ("service = ?", SERVICE.slash()),
            "records_logged_at": ("logged_at >= ? AND logged_at < ?", "2025-03-04T10:00:02.000000Z"),
        }
        for index, (condition, value) in shapes.items():
            params = (0, value, "9999-12-31T00:00:00.000000Z") if "logged_at" in condition else (0, value)
            sql = f"SELECT seq FROM records WHERE seq > ? AND {condition} ORDER BY seq LIMIT 5"
            plan = connection.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            assert any(index in str(row) for row in plan), (index, plan)
    finally:
        connection.close()
    for kwargs in ({"client": CLIENT.slash()}, {"service": SERVICE.slash()}, {"since": records[2].logged_at}):
        assert query.search(indexed, **kwargs) == query.search(path, **kwargs)


# -- records -----------------------------------------------------------------------


def test_get_record_gives_every_column_and_the_body_only_when_asked(
    log: tuple[Path, list[LogRecord]],
) -> None:
    path, records = log
    view = query.get_record(path, 3)
    assert view is not None
    record = records[2]
    assert view.seq == 3 and view.summary.message_id == record.message_id
    assert view.header == record.header and view.signature == record.signature
    assert (view.prev_hash, view.record_hash) == (record.prev_hash, record.record_hash)
    assert view.leaf_hash == record.leaf_hash
    assert view.body is None and view.body_storage == "inline"
    # Record 3 was first covered by checkpoint 6; its stored path leads there.
    assert view.checkpoint_size == 6 and view.inclusion_path is not None
    root = query.checkpoint(path, 6)
    assert root is not None
    merkle.verify_inclusion(view.leaf_hash, 2, 6, list(view.inclusion_path), root.root)
    with_body = query.get_record(path, 3, with_body=True)
    assert with_body is not None and with_body.body == record.body


def test_get_record_of_an_absent_seq_is_none(log: tuple[Path, list[LogRecord]]) -> None:
    path, _ = log
    assert query.get_record(path, 7) is None
    with pytest.raises(query.InvalidQuery):
        query.get_record(path, 0)


def test_bodies_in_blobs_are_read_back_and_omitted_ones_stay_absent(tmp_path: Path, signers: Signers) -> None:
    blob_log, omitted_log = tmp_path / "blob" / "messagelog.db", tmp_path / "omit" / "messagelog.db"
    exchange = make_exchange(signers, 1, at=NOW)
    for path, policy in (
        (blob_log, BodyPolicy(inline_limit_bytes=0)),
        (omitted_log, BodyPolicy(omit_for=frozenset({CLIENT.slash()}))),
    ):
        path.parent.mkdir()
        with MessageLogStore.open(path, body_policy=policy) as store:
            store.append([exchange.request, exchange.response])
    blob = query.get_record(blob_log, 1, with_body=True)
    assert blob is not None and blob.body_storage == "blob" and blob.body == exchange.request.body
    assert query.search(blob_log)[0].body_size == len(exchange.request.body)
    omitted = query.get_record(omitted_log, 2, with_body=True)
    assert omitted is not None and omitted.body_storage == "omitted" and omitted.body is None
    # The signed header still says how large the exchanged body was.
    assert query.search(omitted_log)[1].body_size == len(exchange.response.body)


# -- checkpoints and proofs --------------------------------------------------------


def test_checkpoints_latest_and_exact(
    log: tuple[Path, list[LogRecord]], tmp_path: Path, signers: Signers
) -> None:
    path, _ = log
    latest = query.checkpoint(path)
    assert latest is not None and latest.size == 6
    exact = query.checkpoint(path, 2)
    assert exact is not None and exact.size == 2
    assert query.checkpoint(path, 3) is None
    assert query.checkpoint(path, 7) is None
    bare = tmp_path / "bare.db"
    write_log(bare, signers, exchanges=1)
    assert query.checkpoint(bare) is None


def test_inclusion_proofs_verify_for_every_record_and_size(log: tuple[Path, list[LogRecord]]) -> None:
    path, records = log
    leaves = [r.leaf_hash for r in records]
    for tree_size in range(1, 7):
        root = merkle.root(leaves[:tree_size])
        for seq in range(1, tree_size + 1):
            proof = query.inclusion_proof(path, seq, tree_size)
            merkle.verify_inclusion(leaves[seq - 1], seq - 1, tree_size, proof, root)


def test_inclusion_proof_refuses_impossible_sizes(log: tuple[Path, list[LogRecord]]) -> None:
    path, _ = log
    with pytest.raises(query.InvalidQuery, match="not inside"):
        query.inclusion_proof(path, 5, 4)
    with pytest.raises(query.NotFound, match="holds 6 records"):
        query.inclusion_proof(path, 1, 7)
    with pytest.raises(query.InvalidQuery):
        query.inclusion_proof(path, 0, 3)


def test_consistency_proofs_verify_between_checkpoints(log: tuple[Path, list[LogRecord]]) -> None:
    path, _ = log
    old, new = query.checkpoint(path, 2), query.checkpoint(path, 6)
    assert old is not None and new is not None
    proof = query.consistency_proof(path, 2, 6)
    merkle.verify_consistency(2, 6, old.root, new.root, proof)
    assert query.consistency_proof(path, 6, 6) == []
    with pytest.raises(query.InvalidQuery, match="larger than new size"):
        query.consistency_proof(path, 6, 2)
    with pytest.raises(query.NotFound):
        query.consistency_proof(path, 2, 9)


def test_a_later_checkpoint_keeps_earlier_paths(log: tuple[Path, list[LogRecord]], signers: Signers) -> None:
    path, _ = log
    with MessageLogStore.open(path) as store:
        exchange = make_exchange(signers, 9, at=NOW + dt.timedelta(seconds=9))
        store.append([exchange.request, exchange.response])
    checkpoint = add_checkpoint(path, 8)
    proof = query.inclusion_proof(path, 7, 8)
    view = query.get_record(path, 7)
    assert view is not None
    merkle.verify_inclusion(view.leaf_hash, 6, 8, proof, checkpoint.root)
