"""The SQLite store: durability settings, all-or-nothing batches, reopening, read-only use."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gateway.messagelog.checkpoint import Checkpoint, encode_path, inclusion_paths
from gateway.messagelog.record import GENESIS_HASH, LogRecord
from gateway.messagelog.store import (
    SCHEMA_VERSION,
    CorruptCheckpoint,
    LogFileMissing,
    LogOpenError,
    LogReadError,
    LogWriteError,
    MessageLogStore,
    _transaction,
)
from gateway.messagelog.verify import verify_records
from tests.unit.gateway.messagelog.helpers import (
    NOW,
    Signers,
    add_failing_trigger,
    make_exchange,
    poisoned,
    read_column,
    tamper,
    write_log,
)
from tests.unit.gateway.messagelog.tsa import ORIGIN
from trust.merkle import inclusion_proof, root, verify_inclusion


def test_append_assigns_contiguous_seqs_and_chains(log_path: Path, signers: Signers) -> None:
    with MessageLogStore.open(log_path) as store:
        first = make_exchange(signers, 1)
        stored = store.append([first.request, first.response])
        assert [r.seq for r in stored] == [1, 2]
        assert stored[0].prev_hash == GENESIS_HASH
        assert stored[1].prev_hash == stored[0].record_hash
        assert stored[0].content == first.request
        more = store.append([make_exchange(signers, 2).request])
        assert more[0].seq == 3
        assert more[0].prev_hash == stored[1].record_hash
        assert store.append([]) == []
        assert store.count() == 3


def test_reopened_log_continues_the_chain(log_path: Path, signers: Signers) -> None:
    written = write_log(log_path, signers, exchanges=2)
    with MessageLogStore.open(log_path) as store:
        assert list(store.iter_records()) == written
        assert store.last() == written[-1]
        added = store.append([make_exchange(signers, 9).request])
        assert added[0].seq == 5
        assert added[0].prev_hash == written[-1].record_hash
        records = list(store.iter_records())
    report = verify_records(records, signers.check)
    assert report.ok
    assert report.records == 5


def test_durability_settings_are_in_force(log_path: Path) -> None:
    with MessageLogStore.open(log_path) as store:
        assert store.durability() == {"journal_mode": "wal", "synchronous": "full"}
    # WAL is a property of the file: another connection sees it too.
    connection = sqlite3.connect(log_path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(records)")}
        assert "records_message_id" in indexes
        body_type = {row[1]: row[2] for row in connection.execute("PRAGMA table_info(records)")}["body"]
        assert body_type == "BLOB"
    finally:
        connection.close()


def test_a_failing_batch_writes_nothing(log_path: Path, signers: Signers) -> None:
    write_log(log_path, signers, exchanges=1)
    add_failing_trigger(log_path)
    with MessageLogStore.open(log_path) as store:
        before = store.last()
        good = make_exchange(signers, 5)
        with pytest.raises(LogWriteError, match="simulated I/O error"):
            store.append([good.request, good.response, poisoned(good.request)])
        assert store.count() == 2
        assert store.last() == before
        # The store is still usable, and the chain continues from record 2.
        assert [r.seq for r in store.append([good.request])] == [3]


def test_a_locked_log_fails_with_a_write_error(log_path: Path, signers: Signers) -> None:
    with MessageLogStore.open(log_path, busy_timeout_seconds=0.05) as store:
        other = sqlite3.connect(log_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(LogWriteError, match="locked"):
                store.append([make_exchange(signers, 1).request])
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert store.count() == 0


def test_writers_in_one_process_wait_for_each_other(log_path: Path, signers: Signers) -> None:
    # The timestamper's connection and the writer's: the second waits on the first's
    # transaction (on the process's own lock, not SQLite's busy handler) and then goes on.
    with MessageLogStore.open(log_path) as first, MessageLogStore.open(log_path) as second:
        started, release = threading.Event(), threading.Event()
        waited: list[float] = []

        def hold() -> None:
            with first._use(LogWriteError, "hold") as connection:
                with _transaction(connection, first._write_lock):
                    started.set()
                    release.wait(5)

        def append() -> None:
            began = time.perf_counter()
            second.append([make_exchange(signers, 1).request])
            waited.append(time.perf_counter() - began)

        holder = threading.Thread(target=hold)
        holder.start()
        assert started.wait(5)
        appender = threading.Thread(target=append)
        appender.start()
        time.sleep(0.2)
        assert not waited  # still waiting for the first writer
        release.set()
        appender.join(5)
        holder.join(5)
        assert waited and waited[0] >= 0.2
        assert second.count() == 1


def test_a_writer_in_this_process_holding_the_log_too_long_is_a_write_error(
    log_path: Path, signers: Signers
) -> None:
    with (
        MessageLogStore.open(log_path) as first,
        MessageLogStore.open(log_path, busy_timeout_seconds=0.05) as second,
    ):
        with first._use(LogWriteError, "hold") as connection, _transaction(connection, first._write_lock):
            with pytest.raises(LogWriteError, match="locked"):
                second.append([make_exchange(signers, 1).request])
        assert second.count() == 0


def test_meta_values_persist_and_replace(log_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    with MessageLogStore.open(log_path) as store:
        assert store.get_meta("ca_certificates") is None
        store.set_meta("ca_certificates", pem)
        store.set_meta("server_id", "EE/GOV/70000001/ss1")
        store.set_meta("server_id", "EE/GOV/70000001/ss2")
        with pytest.raises(ValueError, match="meta key"):
            store.set_meta("", "x")
    with MessageLogStore.open_readonly(log_path) as store:
        assert store.get_meta("ca_certificates") == pem
        assert store.get_meta("server_id") == "EE/GOV/70000001/ss2"


def test_find_returns_request_and_response_of_a_message(log_path: Path, signers: Signers) -> None:
    written = write_log(log_path, signers, exchanges=3)
    with MessageLogStore.open_readonly(log_path) as store:
        found = store.find(written[2].message_id)
        assert [r.seq for r in found] == [3, 4]
        assert [r.status for r in found] == [None, 200]
        assert store.find("no-such-message") == []


def test_iteration_pages_through_many_records(log_path: Path, signers: Signers) -> None:
    exchange = make_exchange(signers, 1)
    with MessageLogStore.open(log_path) as store:
        store.append([exchange.request] * 600)
        assert [r.seq for r in store.iter_records()] == list(range(1, 601))
        assert [r.seq for r in store.iter_records(start_seq=590)] == list(range(590, 601))
        assert store.count() == 600


def test_read_only_open_of_a_missing_file_raises_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "messagelog.db"
    with pytest.raises(LogFileMissing, match="does not exist"):
        MessageLogStore.open_readonly(missing)
    with pytest.raises(FileNotFoundError):
        MessageLogStore.open_readonly(tmp_path / "messagelog.db")
    assert list(tmp_path.iterdir()) == []


def test_read_only_store_refuses_writes(log_path: Path, signers: Signers) -> None:
    write_log(log_path, signers, exchanges=1)
    with MessageLogStore.open_readonly(log_path) as store:
        assert store.readonly
        with pytest.raises(LogWriteError, match="read-only"):
            store.append([make_exchange(signers, 2).request])
        with pytest.raises(LogWriteError, match="read-only"):
            store.set_meta("server_id", "x")
        assert store.count() == 2


def test_reader_sees_commits_of_a_running_writer(log_path: Path, signers: Signers) -> None:
    with MessageLogStore.open(log_path) as writer:
        writer.append([make_exchange(signers, 1).request])
        with MessageLogStore.open_readonly(log_path) as reader:
            assert reader.count() == 1
            writer.append([make_exchange(signers, 2).request])
            assert reader.count() == 2


def test_files_that_are_not_this_log_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    tamper(foreign, "CREATE TABLE something (x)")
    with pytest.raises(LogOpenError, match="not a message log"):
        MessageLogStore.open(foreign)

    newer = tmp_path / "newer.db"
    tamper(newer, "PRAGMA user_version = 99")
    with pytest.raises(LogOpenError, match="schema version 99"):
        MessageLogStore.open(newer)
    with pytest.raises(LogOpenError, match="schema version"):
        MessageLogStore.open_readonly(newer)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database at all" * 100)
    with pytest.raises(LogOpenError):
        MessageLogStore.open(garbage)


def test_closed_store_refuses_use(log_path: Path, signers: Signers) -> None:
    store = MessageLogStore.open(log_path)
    store.close()
    store.close()
    with pytest.raises(LogWriteError, match="closed"):
        store.append([make_exchange(signers, 1).request])


def test_append_takes_only_new_records(log_path: Path, signers: Signers) -> None:
    placed = LogRecord.place(1, GENESIS_HASH, make_exchange(signers, 1).request)
    with MessageLogStore.open(log_path) as store:
        with pytest.raises(TypeError, match="NewRecord"):
            store.append([placed])  # type: ignore[list-item]
        assert store.count() == 0


def test_times_round_trip_through_the_file(log_path: Path, signers: Signers) -> None:
    at = NOW + dt.timedelta(microseconds=123457)
    record = make_exchange(signers, 1, at=at).request
    with MessageLogStore.open(log_path) as store:
        store.append([record])
    with MessageLogStore.open_readonly(log_path) as store:
        stored = store.last()
    assert stored is not None
    assert stored.logged_at == at
    assert stored.logged_at.tzinfo is dt.UTC


# -- schema 2: leaf hashes, checkpoints, record paths ---------------------------------


def _checkpoint(size: int, leaves: list[bytes], token: bytes = b"\x30\x03\x02\x01\x01") -> Checkpoint:
    return Checkpoint(ORIGIN, size, root(leaves[:size]), NOW, token, "Test TSA", NOW, "e30..c2ln")


def _paths(leaves: list[bytes], covered: int, size: int) -> list[tuple[int, bytes]]:
    paths = inclusion_paths(leaves[:size], covered, size - 1)
    return [(covered + 1 + i, encode_path(path)) for i, path in enumerate(paths)]


def test_schema_2_has_the_new_columns_and_tables(log_path: Path) -> None:
    MessageLogStore.open(log_path).close()
    assert SCHEMA_VERSION == 2
    connection = sqlite3.connect(log_path)
    try:
        columns = {row[1]: (row[2], row[3]) for row in connection.execute("PRAGMA table_info(records)")}
        assert columns["ocsp"] == ("BLOB", 0)
        assert columns["leaf_hash"] == ("BLOB", 1)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"records", "meta", "checkpoints", "record_paths"} <= tables
    finally:
        connection.close()


def test_a_version_1_file_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "v1.db"
    tamper(old, "CREATE TABLE records (seq INTEGER PRIMARY KEY)")
    tamper(old, "PRAGMA user_version = 1")
    with pytest.raises(LogOpenError, match="schema version 1; this server knows 2"):
        MessageLogStore.open(old)
    with pytest.raises(LogOpenError, match="schema version 2 \\(found 1\\)"):
        MessageLogStore.open_readonly(old)


def test_append_stores_each_records_leaf_hash_and_ocsp(log_path: Path, signers: Signers) -> None:
    exchange = make_exchange(signers, 1)
    request = dataclasses.replace(exchange.request, ocsp=b"\x30\x03\x0a\x01\x00")
    with MessageLogStore.open(log_path) as store:
        stored = store.append([request, exchange.response])
        assert store.leaf_hashes(2) == [record.leaf_hash for record in stored]
        assert store.leaf_hashes(2, start=2) == [stored[1].leaf_hash]
        assert store.leaf_hashes(0) == []
        assert store.last_seq() == 2
        assert store.logged_at(2) == exchange.response.logged_at
        assert store.logged_at(3) is None
    with MessageLogStore.open_readonly(log_path) as store:
        first, second = store.iter_records()
    assert first.ocsp == b"\x30\x03\x0a\x01\x00"
    assert second.ocsp is None
    assert read_column(log_path, "leaf_hash", 1) == first.leaf_hash


def test_leaf_hashes_name_a_missing_or_damaged_record(log_path: Path, good_log: list[LogRecord]) -> None:
    with MessageLogStore.open_readonly(log_path) as store:
        with pytest.raises(LogReadError, match="record 7 is missing"):
            store.leaf_hashes(7)
    tamper(log_path, "DELETE FROM records WHERE seq = 3")
    with MessageLogStore.open_readonly(log_path) as store:
        with pytest.raises(LogReadError, match="record 3 is missing"):
            store.leaf_hashes(6)
    tamper(log_path, "UPDATE records SET leaf_hash = x'00' WHERE seq = 2")
    with MessageLogStore.open_readonly(log_path) as store:
        with pytest.raises(LogReadError, match="record 2's stored leaf hash is damaged"):
            store.leaf_hashes(2)


def test_checkpoints_and_paths_are_stored_and_read_back(log_path: Path, good_log: list[LogRecord]) -> None:
    leaves = [record.leaf_hash for record in good_log]
    with MessageLogStore.open(log_path) as store:
        assert store.last_checkpoint() is None
        assert store.checkpoints() == []
        assert store.record_path(1) is None
        first = _checkpoint(4, leaves)
        store.add_checkpoint(first, _paths(leaves, 0, 4))
        second = _checkpoint(6, leaves)
        store.add_checkpoint(second, _paths(leaves, 4, 6))
        assert store.checkpoints() == [first, second]
        assert store.last_checkpoint() == second
        assert store.checkpoint_count() == 2
        size, path = store.record_path(3) or (0, [])
        assert size == 4
        verify_inclusion(leaves[2], 2, 4, path, first.root)
        assert store.record_path(5) == (6, inclusion_proof(4, leaves))
        assert [(seq, size) for seq, size, _ in store.iter_record_paths()] == [
            (1, 4),
            (2, 4),
            (3, 4),
            (4, 4),
            (5, 6),
            (6, 6),
        ]


def test_add_checkpoint_refuses_inconsistent_batches(log_path: Path, good_log: list[LogRecord]) -> None:
    leaves = [record.leaf_hash for record in good_log]
    with MessageLogStore.open(log_path) as store:
        with pytest.raises(LogWriteError, match="paths must be given for exactly records 1 to 4"):
            store.add_checkpoint(_checkpoint(4, leaves), _paths(leaves, 0, 4)[:-1])
        with pytest.raises(LogWriteError, match="only 6 records"):
            store.add_checkpoint(_checkpoint(7, leaves + leaves[:1]), [])
        store.add_checkpoint(_checkpoint(4, leaves), _paths(leaves, 0, 4))
        with pytest.raises(LogWriteError, match="already has checkpoint 4"):
            store.add_checkpoint(_checkpoint(3, leaves), _paths(leaves, 0, 3))
        with pytest.raises(ValueError, match="whole number"):
            store.add_checkpoint(_checkpoint(6, leaves), [(5, b"short"), (6, b"")])
        assert store.checkpoint_count() == 1
    with MessageLogStore.open_readonly(log_path) as store:
        with pytest.raises(LogWriteError, match="read-only"):
            store.add_checkpoint(_checkpoint(6, leaves), _paths(leaves, 4, 6))


def test_a_failing_checkpoint_writes_nothing(log_path: Path, good_log: list[LogRecord]) -> None:
    leaves = [record.leaf_hash for record in good_log]
    tamper(
        log_path,
        "CREATE TRIGGER fail_path BEFORE INSERT ON record_paths WHEN NEW.seq = 5 "
        "BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END",
    )
    with MessageLogStore.open(log_path) as store:
        with pytest.raises(LogWriteError, match="simulated I/O error"):
            store.add_checkpoint(_checkpoint(6, leaves), _paths(leaves, 0, 6))
        assert store.last_checkpoint() is None
        assert store.record_path(1) is None
        assert list(store.iter_record_paths()) == []


def test_damaged_checkpoint_rows_are_named(log_path: Path, good_log: list[LogRecord]) -> None:
    leaves = [record.leaf_hash for record in good_log]
    with MessageLogStore.open(log_path) as store:
        store.add_checkpoint(_checkpoint(6, leaves), _paths(leaves, 0, 6))
    tamper(log_path, "UPDATE checkpoints SET size = 5")
    with MessageLogStore.open_readonly(log_path) as store:
        with pytest.raises(CorruptCheckpoint, match="checkpoint 5: its body names size 6"):
            store.checkpoints()
    tamper(log_path, "UPDATE checkpoints SET size = 6, body = x'7b7d'")
    with MessageLogStore.open_readonly(log_path) as store:
        with pytest.raises(CorruptCheckpoint, match="not a well-formed checkpoint"):
            store.last_checkpoint()
    tamper(log_path, "UPDATE record_paths SET path = x'0102' WHERE seq = 2")
    with MessageLogStore.open_readonly(log_path) as store:
        with pytest.raises(CorruptCheckpoint, match="stored path of record 2 is damaged"):
            store.record_path(2)
