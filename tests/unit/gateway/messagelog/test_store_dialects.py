"""The message log on both dialects: an SQLite file and a PostgreSQL shard behave the same.

Tests taking ``location`` run twice (SQLite, then shard ``main`` of a fresh PostgreSQL
database); the others are about PostgreSQL only: shards side by side, the writer lock,
concurrent writers, a lost connection, its settings and collation, and changes made to
the rows by someone with write access to the database, each of which must be named.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from core.canonical import canonical_json
from core.messages import ResponseHeader, sha512
from gateway.database import Database, connect_postgres, connect_sqlite
from gateway.messagelog.archive import prune_archived, verify_archive_dir, write_archive
from gateway.messagelog.blobs import BlobMissing, body_digest
from gateway.messagelog.checkpoint import Checkpoint, encode_path, inclusion_paths
from gateway.messagelog.errors import CorruptRecord, LogReadError
from gateway.messagelog.query import search
from gateway.messagelog.record import GENESIS_HASH, BodyPolicy, LogRecord, NewRecord
from gateway.messagelog.store import (
    LogFileMissing,
    LogLocation,
    LogOpenError,
    LogWriteError,
    MessageLogStore,
    PostgresLogShard,
    default_blob_root,
    list_shards,
)
from gateway.messagelog.verify import LogReport, RecordProblem, verify_log_file
from tests.databases import POSTGRES_DSN, fresh_postgres_database
from tests.tcpproxy import TcpProxy
from tests.unit.gateway.messagelog.helpers import (
    CHECKPOINT_SIGNERS,
    NOW,
    POISON,
    SERVICE,
    Signers,
    add_failing_trigger,
    make_exchange,
    poisoned,
)
from tests.unit.gateway.messagelog.test_body_storage import with_response_body
from tests.unit.gateway.messagelog.tsa import ORIGIN, Pki, TsaIdentity, timestamp_log
from trust.merkle import root, verify_consistency, verify_inclusion

postgres = pytest.mark.postgres


# -- helpers -------------------------------------------------------------------------


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def exchanges(signers: Signers, numbers: Sequence[int], *, start: float = 0) -> list[NewRecord]:
    """Requests and responses of exchanges ``numbers``, logged a second apart after ``start``."""
    records: list[NewRecord] = []
    for offset, number in enumerate(numbers, 1):
        exchange = make_exchange(signers, number, at=at(start + offset))
        records += [exchange.request, exchange.response]
    return records


def write(location: LogLocation, signers: Signers, numbers: Sequence[int] = (1, 2, 3)) -> list[LogRecord]:
    with MessageLogStore.open(location) as store:
        return store.append(exchanges(signers, numbers))


def connect(location: LogLocation) -> Database:
    """A connection of the log's own dialect behind the store's back (a shard's schema first)."""
    if isinstance(location, PostgresLogShard):
        return connect_postgres(location.url, schema=location.schema)
    return connect_sqlite(location)


def rows(location: LogLocation, statement: str, *params: object) -> list[Any]:
    database = connect(location)
    try:
        return [tuple(row) for row in database.execute(statement, params).fetchall()]
    finally:
        database.close()


def tamper(location: LogLocation, statement: str, *params: object) -> None:
    """Change the log as someone with write access to its database could."""
    database = connect(location)
    try:
        database.execute(statement, params)
    finally:
        database.close()


def problem_of(location: LogLocation, signers: Signers) -> tuple[LogReport, RecordProblem]:
    report = verify_log_file(location, signers.check)
    assert isinstance(report.first_error, RecordProblem), report
    return report, report.first_error


def checkpoint_over(size: int, leaves: list[bytes]) -> Checkpoint:
    return Checkpoint(
        ORIGIN, size, root(leaves[:size]), NOW, b"\x30\x03\x02\x01\x01", "Test TSA", NOW, "e30..c2ln"
    )


def paths_of(leaves: list[bytes], covered: int, size: int) -> list[tuple[int, bytes]]:
    paths = inclusion_paths(leaves[:size], covered, size - 1)
    return [(covered + 1 + i, encode_path(path)) for i, path in enumerate(paths)]


def verify_all(location: LogLocation, signers: Signers, pki: Pki, tsa: TsaIdentity) -> LogReport:
    """Records, checkpoints, timestamps and paths."""
    return verify_log_file(
        location,
        signers.check,
        tsa_certificates=[tsa.certificate],
        roots=[pki.root],
        check_checkpoint_signature=CHECKPOINT_SIGNERS.check_checkpoint,
    )


def stamp(location: LogLocation, pki: Pki, tsa: TsaIdentity, seconds: float) -> Checkpoint:
    return timestamp_log(location, tsa, [pki.root], at(seconds))  # type: ignore[arg-type]


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (its URL), dropped afterwards."""
    yield from fresh_postgres_database("xweg_mlog")


@pytest.fixture
def shard(database: str) -> PostgresLogShard:
    return PostgresLogShard(database, "main")


def admin(url: str) -> psycopg.Connection[Any]:
    """A superuser connection to the database at ``url``, in autocommit mode."""
    return psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True)


# -- both dialects -------------------------------------------------------------------


def test_append_chains_and_a_reopened_log_continues(location: LogLocation, signers: Signers) -> None:
    written = write(location, signers, (1, 2))
    assert [r.seq for r in written] == [1, 2, 3, 4]
    assert written[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.record_hash for a, b in zip(written, written[1:], strict=False))
    with MessageLogStore.open(location) as store:
        assert list(store.iter_records()) == written
        assert store.last() == written[-1]
        added = store.append([make_exchange(signers, 9, at=at(60)).request])
        assert (added[0].seq, added[0].prev_hash) == (5, written[-1].record_hash)
        assert store.append([]) == []
        assert (store.count(), store.last_seq()) == (5, 5)
    assert verify_log_file(location, signers.check) == LogReport(records=5, first_error=None)


def test_a_failing_batch_writes_nothing(location: LogLocation, signers: Signers) -> None:
    written = write(location, signers, (1,))
    if isinstance(location, PostgresLogShard):
        tamper(location, f"ALTER TABLE records ADD CONSTRAINT refuse_poison CHECK (message_id <> '{POISON}')")
        failure = "refuse_poison"
    else:
        add_failing_trigger(location)
        failure = "simulated I/O error"
    good = make_exchange(signers, 5, at=at(30))
    blob = dataclasses.replace(good.response, body_storage="blob")
    with MessageLogStore.open(location) as store:
        with pytest.raises(LogWriteError, match=failure):
            store.append([good.request, blob, poisoned(good.request)])
        assert store.count() == 2
        assert store.last() == written[-1]
        if isinstance(location, PostgresLogShard):  # the blob went with the transaction
            assert rows(location, "SELECT count(*) FROM blobs") == [(0,)]
        # The store is still usable, and the chain continues from record 2.
        again = store.append([good.request])
        assert (again[0].seq, again[0].prev_hash) == (3, written[-1].record_hash)


def test_meta_values_persist_and_replace(location: LogLocation) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    with MessageLogStore.open(location) as store:
        assert store.get_meta("ca_certificates") is None
        store.set_meta("ca_certificates", pem)
        store.set_meta("server_id", "EE/GOV/70000001/ss1")
        store.set_meta("server_id", "EE/GOV/70000001/ss2")
    with MessageLogStore.open_readonly(location) as store:
        assert store.get_meta("ca_certificates") == pem
        assert store.get_meta("server_id") == "EE/GOV/70000001/ss2"
    assert rows(location, "SELECT count(*) FROM meta") == [(2,)]


def test_find_returns_request_and_response_of_a_message(location: LogLocation, signers: Signers) -> None:
    written = write(location, signers)
    with MessageLogStore.open_readonly(location) as store:
        found = store.find(written[2].message_id)
        assert found == written[2:4]
        assert [r.status for r in found] == [None, 200]
        assert store.find("no-such-message") == []


def test_iteration_pages_through_many_records(location: LogLocation, signers: Signers) -> None:
    records = exchanges(signers, range(1, 301))  # 600 records: three pages of 256 and a bit
    with MessageLogStore.open(location) as store:
        written = store.append(records)
        assert [r.seq for r in store.iter_records()] == list(range(1, 601))
        assert [r.seq for r in store.iter_records(start_seq=256)] == list(range(256, 601))
        assert [r.seq for r in store.iter_records(start_seq=590)] == list(range(590, 601))
        assert list(store.iter_records(start_seq=601)) == []
        assert list(store.iter_records()) == written
        assert store.count() == 600
    assert verify_log_file(location, signers.check).records == 600


def test_leaf_hashes_are_stored_and_read_back(location: LogLocation, signers: Signers) -> None:
    written = write(location, signers)
    with MessageLogStore.open_readonly(location) as store:
        assert store.leaf_hashes(6) == [r.leaf_hash for r in written]
        assert store.leaf_hashes(4, start=3) == [written[2].leaf_hash, written[3].leaf_hash]
        assert store.leaf_hashes(0) == []
        with pytest.raises(LogReadError, match="record 7 is missing"):
            store.leaf_hashes(7)
    assert rows(location, "SELECT leaf_hash FROM records WHERE seq = 5") == [(written[4].leaf_hash,)]


def test_a_read_only_store_refuses_writes(location: LogLocation, signers: Signers) -> None:
    write(location, signers, (1,))
    with MessageLogStore.open_readonly(location) as store:
        assert store.readonly
        with pytest.raises(LogWriteError, match="read-only"):
            store.append([make_exchange(signers, 2).request])
        with pytest.raises(LogWriteError, match="read-only"):
            store.set_meta("server_id", "x")
        with pytest.raises(LogWriteError, match="read-only"):
            store.prune_records(1)
        assert store.count() == 2


def test_read_only_open_of_a_missing_log_raises_and_creates_nothing(
    location: LogLocation, tmp_path: Path
) -> None:
    with pytest.raises(LogFileMissing, match="does not exist"):
        MessageLogStore.open_readonly(location)
    with pytest.raises(LogFileMissing):
        verify_log_file(location, Signers().check)
    if isinstance(location, PostgresLogShard):
        assert list_shards(location.url) == []
        with admin(location.url) as connection:
            schemas = connection.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (location.schema,)
            ).fetchone()
        assert schemas == (0,)
    else:
        assert list(tmp_path.iterdir()) == []


def test_checkpoints_paths_and_proofs(location: LogLocation, signers: Signers) -> None:
    written = write(location, signers)
    leaves = [r.leaf_hash for r in written]
    first, second = checkpoint_over(4, leaves), checkpoint_over(6, leaves)
    with MessageLogStore.open(location) as store:
        assert store.last_checkpoint() is None
        store.add_checkpoint(first, paths_of(leaves, 0, 4))
        store.add_checkpoint(second, paths_of(leaves, 4, 6))
        with pytest.raises(LogWriteError, match="already has checkpoint 6"):
            store.add_checkpoint(checkpoint_over(5, leaves), paths_of(leaves, 4, 5))
    with MessageLogStore.open_readonly(location) as store:
        assert store.checkpoints() == [first, second]
        assert store.last_checkpoint() == second
        assert store.checkpoint_covering(5) == second
        assert [(seq, size) for seq, size, _ in store.iter_record_paths()] == [
            (1, 4),
            (2, 4),
            (3, 4),
            (4, 4),
            (5, 6),
            (6, 6),
        ]
        size, path = store.record_path(3) or (0, [])
        assert size == 4
        verify_inclusion(leaves[2], 2, 4, path, first.root)
        verify_inclusion(leaves[4], 4, 6, store.inclusion_proof(5, 6), second.root)
        verify_inclusion(leaves[0], 0, 6, store.inclusion_proof(1, 6), second.root)
        verify_consistency(4, 6, first.root, second.root, store.consistency_proof(4, 6))
        assert store.record_path(5) == (6, store.inclusion_proof(5, 6))


def test_a_body_over_the_inline_limit_is_a_blob(location: LogLocation, signers: Signers) -> None:
    large = b'{"document":"' + b"A" * 5000 + b'"}'
    exchange = make_exchange(signers, 1)
    response = with_response_body(signers, exchange, large)
    with MessageLogStore.open(location, body_policy=BodyPolicy(inline_limit_bytes=1024)) as store:
        stored = store.append([exchange.request, response])
    assert [r.body_storage for r in stored] == ["inline", "blob"]
    digest = body_digest(large)
    assert rows(location, "SELECT body, body_blob FROM records ORDER BY seq") == [
        (exchange.request.body, None),
        (b"", digest),  # the row holds the digest, not the body
    ]
    if isinstance(location, PostgresLogShard):
        assert rows(location, "SELECT digest, body FROM blobs") == [(digest, large)]
    else:
        assert (default_blob_root(location) / digest[:2] / digest).read_bytes() == large
    with MessageLogStore.open_readonly(location) as store:
        assert [r.body for r in store.iter_records()] == [exchange.request.body, large]
        assert store.find(exchange.request.message_id)[1].body == large
        assert store.blobs.get(digest) == large
    report = verify_log_file(location, signers.check)
    assert (report.ok, report.records, report.bodies_omitted) == (True, 2, 0)


def test_a_copy_holds_the_same_log_with_its_blobs(
    location: LogLocation, signers: Signers, tmp_path: Path
) -> None:
    large = b'{"document":"' + b"B" * 5000 + b'"}'
    exchange = make_exchange(signers, 1)
    with MessageLogStore.open(location, body_policy=BodyPolicy(inline_limit_bytes=1024)) as store:
        store.append([exchange.request, with_response_body(signers, exchange, large)])
        store.append(exchanges(signers, (2, 3)))
        store.set_meta("server_id", "NRW/GOV/057/ss1")
    copy = tmp_path / "copy" / "messagelog.db"
    copy.parent.mkdir()
    with MessageLogStore.open_readonly(location) as store:
        assert store.copy_to(copy) == 6
        original = [(r.seq, r.record_hash, r.body) for r in store.iter_records()]
    with MessageLogStore.open_readonly(copy) as copied:
        assert [(r.seq, r.record_hash, r.body) for r in copied.iter_records()] == original
        assert copied.get_meta("server_id") == "NRW/GOV/057/ss1"
    assert (default_blob_root(copy) / body_digest(large)[:2] / body_digest(large)).read_bytes() == large
    assert verify_log_file(copy, signers.check).ok


def test_a_copy_that_fails_leaves_no_file(location: LogLocation, signers: Signers, tmp_path: Path) -> None:
    large = b'{"document":"' + b"C" * 5000 + b'"}'
    exchange = make_exchange(signers, 1)
    with MessageLogStore.open(location, body_policy=BodyPolicy(inline_limit_bytes=1024)) as store:
        store.append([exchange.request, with_response_body(signers, exchange, large)])
    # The blob a record relies on is gone: the copy cannot be whole, so there is none.
    if isinstance(location, PostgresLogShard):
        tamper(location, "DELETE FROM blobs")
    else:
        digest = body_digest(large)
        (default_blob_root(location) / digest[:2] / digest).unlink()
    copy = tmp_path / "copy" / "messagelog.db"
    copy.parent.mkdir()
    with (
        MessageLogStore.open_readonly(location) as store,
        pytest.raises(LogReadError, match="cannot copy body blob"),
    ):
        store.copy_to(copy)
    assert not copy.exists()
    assert not Path(f"{copy}-wal").exists()


def test_archived_records_are_pruned_and_their_blobs_collected(
    location: LogLocation, tmp_path: Path, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    archives = tmp_path / "archives"
    first = make_exchange(signers, 1, at=at(1))
    shared = first.request.body
    with MessageLogStore.open(location) as store:
        store.append([dataclasses.replace(first.request, body_storage="blob"), first.response])
        store.append(exchanges(signers, (2,), start=1))
    stamp(location, pki, tsa_identity, 5)
    with MessageLogStore.open(location) as store:
        assert write_archive(store, archives, now=at(10)) is not None  # records 1-4
        again = make_exchange(signers, 1, at=at(20))  # the same request body, as a blob again
        store.append([dataclasses.replace(again.request, body_storage="blob"), again.response])
    stamp(location, pki, tsa_identity, 25)
    digest = body_digest(shared)
    with MessageLogStore.open(location) as store:
        with pytest.raises(LogWriteError, match="records after 4 are not archived"):
            store.prune_records(5)
        result = prune_archived(store, archives, now=at(100), retention_s=0)
        assert (result.records, result.through_seq, result.blobs_deleted) == (4, 4, 0)
        assert store.blobs.get(digest) == shared  # record 5 still uses it
        sixth = store.last()
        assert sixth is not None
        assert write_archive(store, archives, now=at(110)) is not None  # records 5-6
        result = prune_archived(store, archives, now=at(200), retention_s=0)
        assert (result.records, result.through_seq, result.blobs_deleted) == (2, 6, 1)
        with pytest.raises(BlobMissing):
            store.blobs.get(digest)
        assert (store.count(), store.last_seq()) == (0, 6)
        assert store.prune_horizon() == (6, sixth.record_hash)
        assert len(store.leaf_hashes(6)) == 6  # the tree stays whole
        continued = store.append(exchanges(signers, (4,), start=300))
        assert (continued[0].seq, continued[0].prev_hash) == (7, sixth.record_hash)
    assert rows(location, "SELECT count(*) FROM blob_gc") == [(0,)]
    assert rows(location, "SELECT count(*) FROM pruned_leaves") == [(6,)]
    if isinstance(location, PostgresLogShard):
        assert rows(location, "SELECT count(*) FROM blobs") == [(0,)]
    report = verify_all(location, signers, pki, tsa_identity)
    assert report.ok, report.first_error
    assert (report.records, report.pruned_records, report.checkpoints, report.tree_size) == (2, 6, 2, 6)
    archived = verify_archive_dir(
        archives,
        check_signature=signers.check,
        tsa_certificates=[tsa_identity.certificate],
        roots=[pki.root],
        check_checkpoint_signature=CHECKPOINT_SIGNERS.check_checkpoint,
    )
    assert archived.ok, archived.first_error
    assert (archived.archives, archived.records, archived.checkpoints) == (2, 6, 2)


def test_a_good_log_verifies_with_its_checkpoints(
    location: LogLocation, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    write(location, signers, (1, 2))
    stamp(location, pki, tsa_identity, 5)
    with MessageLogStore.open(location) as store:
        store.append(exchanges(signers, (3,), start=10))
    latest = stamp(location, pki, tsa_identity, 15)
    report = verify_all(location, signers, pki, tsa_identity)
    assert report == LogReport(
        records=6, first_error=None, checkpoints=2, timestamped_records=6, tree_size=6, root=latest.root
    )


def test_a_service_without_version_matches_every_version(location: LogLocation, signers: Signers) -> None:
    base = SERVICE.provider.slash() + "/person"
    services = [f"{base}/v1", f"{base}/v2", base, f"{base}-archive/v1", f"{base}al/v1", f"{base}+x/v1"]
    record = make_exchange(signers, 1).request
    with MessageLogStore.open(location) as store:
        store.append([dataclasses.replace(record, service=service) for service in services])
    found = search(location, service=base)
    assert [(r.seq, r.service) for r in found] == [(1, services[0]), (2, services[1]), (3, base)]
    assert [r.seq for r in search(location, service=f"{base}/v2")] == [2]


# -- PostgreSQL: shards, writers, connections ----------------------------------------


@postgres
def test_two_shards_in_one_database_are_independent(database: str, signers: Signers) -> None:
    second, first = PostgresLogShard(database, "replica_b"), PostgresLogShard(database, "replica_a")
    b_records = write(second, signers, (7,))
    a_records = write(first, signers, (1, 2))
    assert [r.seq for r in a_records] == [1, 2, 3, 4]
    assert [r.seq for r in b_records] == [1, 2]
    assert a_records[0].prev_hash == b_records[0].prev_hash == GENESIS_HASH
    assert a_records[0].record_hash != b_records[0].record_hash
    assert list_shards(database) == ["replica_a", "replica_b"]
    with MessageLogStore.open(second) as store:
        assert [r.seq for r in store.append(exchanges(signers, (8,), start=9))] == [3, 4]
    with MessageLogStore.open_readonly(first) as store:
        assert list(store.iter_records()) == a_records
    assert verify_log_file(first, signers.check).records == 4
    assert verify_log_file(second, signers.check).records == 4


@postgres
def test_a_shard_has_one_exclusive_writer(database: str, signers: Signers) -> None:
    main, other = PostgresLogShard(database, "main"), PostgresLogShard(database, "other")
    holder = MessageLogStore.open(main, exclusive=True)
    try:
        with pytest.raises(LogOpenError, match="message log shard main of .* is being written by another"):
            MessageLogStore.open(main, exclusive=True)
        with MessageLogStore.open(other, exclusive=True) as store:  # another shard is free
            assert store.append(exchanges(signers, (2,)))[0].seq == 1
        holder.append(exchanges(signers, (1,)))
    finally:
        holder.close()
    with MessageLogStore.open(main, exclusive=True) as store:
        assert store.count() == 2


@postgres
def test_concurrent_writers_of_one_shard_keep_one_chain(database: str, signers: Signers) -> None:
    # Two URLs of one database, as two processes would hold: no lock of this process is
    # shared, so the lock on the records table alone keeps them apart.
    shard = PostgresLogShard(database, "main")
    elsewhere = PostgresLogShard(database.replace(":5432/", "/"), "main")
    batches = {
        name: [exchanges(signers, (n,), start=n) for n in numbers]
        for name, numbers in (("a", range(1, 41)), ("b", range(101, 141)))
    }
    first, second = MessageLogStore.open(shard), MessageLogStore.open(elsewhere)
    assert first._write_lock is not second._write_lock
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run(store: MessageLogStore, name: str) -> None:
        try:
            start.wait(5)
            for batch in batches[name]:
                store.append(batch)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(store, name)) for store, name in ((first, "a"), (second, "b"))
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        first.close()
        second.close()
    assert failures == []
    with MessageLogStore.open_readonly(shard) as store:
        records = list(store.iter_records())
    assert [r.seq for r in records] == list(range(1, 161))
    logged = [r.message_id for r in records]
    for name in ("a", "b"):
        mine = [record.message_id for batch in batches[name] for record in batch]
        assert [m for m in logged if m in set(mine)] == mine  # each writer's records, in its order
    assert verify_log_file(shard, signers.check) == LogReport(records=160, first_error=None)


@postgres
def test_the_store_recovers_after_its_connection_is_killed(shard: PostgresLogShard, signers: Signers) -> None:
    with MessageLogStore.open(shard, exclusive=True) as store:
        store.append(exchanges(signers, (1,)))
        with admin(shard.url) as connection:
            killed = connection.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed == (1,)
        with pytest.raises(LogWriteError, match="cannot write 2 record"):
            store.append(exchanges(signers, (2,), start=10))
        assert [r.seq for r in store.append(exchanges(signers, (3,), start=20))] == [3, 4]
        # The reconnection took the shard's writer lock again.
        with pytest.raises(LogOpenError, match="being written by another"):
            MessageLogStore.open(shard, exclusive=True)
        assert store.count() == 4
    report = verify_log_file(shard, signers.check)
    assert report == LogReport(records=4, first_error=None)


@postgres
def test_after_a_partition_the_writer_takes_its_shard_back(database: str, signers: Signers) -> None:
    with TcpProxy([5432]) as network:
        shard = PostgresLogShard(database.replace(":5432/", f":{network.port}/"), "main")
        with MessageLogStore.open(shard, exclusive=True) as store:
            store.append(exchanges(signers, (1,)))
            # The network breaks; the database does not notice: the old session, and the
            # shard's writer lock it holds, live on there.
            network.partition()
            with pytest.raises(LogWriteError, match="cannot write 2 record"):
                store.append(exchanges(signers, (2,), start=10))
            network.restore()
            with admin(database) as connection:
                stale = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name LIKE 'xweg %'"
                ).fetchone()
            assert stale == (1,)
            # Reconnecting, the store ends its own stale session and writes on.
            assert [r.seq for r in store.append(exchanges(signers, (3,), start=20))] == [3, 4]
            # Another writer still cannot take the shard: only the store's own session was ended.
            with pytest.raises(LogOpenError, match="being written by another"):
                MessageLogStore.open(PostgresLogShard(database, "main"), exclusive=True)
    report = verify_log_file(PostgresLogShard(database, "main"), signers.check)
    assert report == LogReport(records=4, first_error=None)


@postgres
def test_commits_are_synchronous_whatever_the_database_default(shard: PostgresLogShard) -> None:
    with admin(shard.url) as connection:
        name = connection.execute("SELECT current_database()").fetchone()
        assert name is not None
        connection.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name[0]))
        )
    with MessageLogStore.open(shard) as store:
        durability = store.durability()
    assert durability["database"] == "postgresql"
    assert durability["synchronous_commit"] == "on"
    with admin(shard.url) as connection:  # what a session of this database gets otherwise
        assert connection.execute("SHOW synchronous_commit").fetchone() == ("off",)


@pytest.fixture
def icu_database(database: str) -> Iterator[str]:
    """A database whose default collation is ICU's en-US, where '/' sorts after '+' and '='
    and case does not come first: only bytewise text columns keep the searches exact."""
    name = database.rsplit("/", 1)[1] + "_icu"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(
            sql.SQL(
                "CREATE DATABASE {} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                " TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
    try:
        yield database.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@postgres
def test_text_columns_compare_bytewise_under_any_database_collation(
    icu_database: str, signers: Signers
) -> None:
    base = SERVICE.provider.slash() + "/person"
    decoys = [f"{base}+x/v1", f"{base}=x/v1", SERVICE.provider.slash() + "/PERSON/v1"]
    with admin(icu_database) as connection:  # the trap: the database's own order lets them in
        for decoy in decoys:
            inside = connection.execute("SELECT %s > %s AND %s < %s", (decoy, base + "/", decoy, base + "0"))
            assert inside.fetchone() == (True,)
    shard = PostgresLogShard(icu_database, "main")
    record = make_exchange(signers, 1).request
    with MessageLogStore.open(shard) as store:
        store.append([dataclasses.replace(record, service=s) for s in [f"{base}/v1", *decoys, f"{base}/v2"]])
    assert [(r.seq, r.service) for r in search(shard, service=base)] == [(1, f"{base}/v1"), (5, f"{base}/v2")]
    # Ordered byte by byte: upper case first, '+' before '/' before '='.
    assert rows(shard, "SELECT seq FROM records ORDER BY service") == [(4,), (2,), (1,), (5,), (3,)]


# -- PostgreSQL: the attacker's side -------------------------------------------------


@pytest.fixture
def good_shard(shard: PostgresLogShard, signers: Signers) -> list[LogRecord]:
    """Six records (three exchanges) in shard ``main``; records 4 and 6 keep their bodies as blobs."""
    records = exchanges(signers, (1, 2, 3))
    records[3] = dataclasses.replace(records[3], body_storage="blob")
    records[5] = dataclasses.replace(records[5], body_storage="blob")
    with MessageLogStore.open(shard) as store:
        written = store.append(records)
    assert verify_log_file(shard, signers.check) == LogReport(records=6, first_error=None)
    return written


@postgres
def test_a_changed_body_byte_is_named(
    shard: PostgresLogShard, good_shard: list[LogRecord], signers: Signers
) -> None:
    tamper(shard, "UPDATE records SET body = set_byte(body, 0, get_byte(body, 0) # 1) WHERE seq = 3")
    report, problem = problem_of(shard, signers)
    assert report.records == 2
    message = good_shard[2].message_id
    assert problem == RecordProblem(
        3, message, f"record 3 (message {message}): body does not match the SHA-512 in its signed header"
    )


@postgres
def test_a_deleted_middle_record_is_named(
    shard: PostgresLogShard, good_shard: list[LogRecord], signers: Signers
) -> None:
    tamper(shard, "DELETE FROM records WHERE seq = 3")
    report, problem = problem_of(shard, signers)
    assert (report.records, problem.seq) == (2, 4)
    assert problem.reason.endswith("record 3 is missing; the log jumps from record 2 to record 4")


@postgres
def test_swapped_bodies_are_named(
    shard: PostgresLogShard, good_shard: list[LogRecord], signers: Signers
) -> None:
    tamper(
        shard,
        "UPDATE records SET body = CASE seq WHEN 1 THEN (SELECT body FROM records WHERE seq = 3)"
        " ELSE (SELECT body FROM records WHERE seq = 1) END WHERE seq IN (1, 3)",
    )
    assert rows(shard, "SELECT body FROM records WHERE seq IN (1, 3) ORDER BY seq") == [
        (good_shard[2].body,),
        (good_shard[0].body,),
    ]
    report, problem = problem_of(shard, signers)
    assert (report.records, problem.seq) == (0, 1)
    assert problem.reason.endswith("body does not match the SHA-512 in its signed header")


@postgres
def test_a_changed_or_missing_blob_is_named(
    shard: PostgresLogShard, good_shard: list[LogRecord], signers: Signers
) -> None:
    digest = body_digest(good_shard[3].body)
    assert rows(shard, "SELECT body_blob FROM records WHERE seq = 4") == [(digest,)]
    tamper(shard, "UPDATE blobs SET body = set_byte(body, 2, get_byte(body, 2) # 1) WHERE digest = ?", digest)
    report, problem = problem_of(shard, signers)
    assert (report.records, problem.seq) == (3, 4)
    assert problem.reason == (
        f"record 4 (message {good_shard[3].message_id}): its body blob {digest} does not match:"
        " its content does not hash to that digest"
    )
    with MessageLogStore.open_readonly(shard) as store, pytest.raises(CorruptRecord, match="does not match"):
        store.find(good_shard[3].message_id)
    tamper(shard, "DELETE FROM blobs WHERE digest = ?", digest)
    report, problem = problem_of(shard, signers)
    assert (report.records, problem.seq) == (3, 4)
    assert problem.reason.endswith(f"its body blob {digest} is missing")


@postgres
def test_a_rewritten_and_rechained_record_fails_its_signature(
    shard: PostgresLogShard, good_shard: list[LogRecord], signers: Signers
) -> None:
    """Record 4's answer rewritten, its header made to match, and every hash after it
    recomputed (chain and leaves): all an attacker without the provider's key can do."""
    target = good_shard[3]
    body = target.body.replace(b"Tallinn", b"Tartu")
    header = ResponseHeader.from_dict(json.loads(target.header))
    header = dataclasses.replace(header, body_sha512=sha512(body), body_size=len(body))
    changed = dataclasses.replace(
        target.content, header=canonical_json(header.to_dict()), body=body, body_storage="inline"
    )
    prev_hash = good_shard[2].record_hash
    for record in good_shard[3:]:
        content = changed if record.seq == 4 else record.content
        placed, leaf = LogRecord.place_with_leaf_hash(record.seq, prev_hash, content)
        blob = placed.body_storage == "blob"  # record 6 keeps its blob
        tamper(
            shard,
            "UPDATE records SET header = ?, body = ?, body_storage = ?, body_blob = ?,"
            " prev_hash = ?, record_hash = ?, leaf_hash = ? WHERE seq = ?",
            placed.header,
            b"" if blob else placed.body,
            placed.body_storage,
            body_digest(placed.body) if blob else None,
            placed.prev_hash,
            placed.record_hash,
            leaf,
            record.seq,
        )
        prev_hash = placed.record_hash
    with MessageLogStore.open_readonly(shard) as store:
        assert store.find(target.message_id)[1].body == body
    report, problem = problem_of(shard, signers)
    assert (report.records, problem.seq) == (3, 4)
    assert problem.reason.endswith(
        "signature does not verify: the signature value does not match the message"
    )


@postgres
def test_another_shards_records_stay_out_of_this_one(
    shard: PostgresLogShard, good_shard: list[LogRecord], signers: Signers
) -> None:
    other = PostgresLogShard(shard.url, "other")
    with MessageLogStore.open(other, exclusive=True) as store:
        assert [r.seq for r in store.append(exchanges(signers, (8,), start=50))] == [1, 2]
    with MessageLogStore.open_readonly(shard) as store:
        assert list(store.iter_records()) == good_shard
    assert verify_log_file(shard, signers.check) == LogReport(records=6, first_error=None)
    # Copied across by hand, the other shard's record does not continue this chain.
    tamper(
        shard,
        "INSERT INTO records SELECT 7, direction, message_id, client, service, logged_at, status, header,"
        " body, signature, prev_hash, record_hash, ocsp, leaf_hash, body_storage, body_blob"
        " FROM messagelog_other.records WHERE seq = 1",
    )
    report, problem = problem_of(shard, signers)
    assert (report.records, problem.seq) == (6, 7)
    assert problem.reason.endswith(
        "does not continue the hash chain: its previous-record hash is not the hash of record 6"
    )
