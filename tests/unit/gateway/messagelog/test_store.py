"""The SQLite store: durability settings, all-or-nothing batches, reopening, read-only use."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from gateway.messagelog.record import GENESIS_HASH, LogRecord
from gateway.messagelog.store import (
    SCHEMA_VERSION,
    LogFileMissing,
    LogOpenError,
    LogWriteError,
    MessageLogStore,
)
from gateway.messagelog.verify import verify_records
from tests.unit.gateway.messagelog.helpers import (
    NOW,
    Signers,
    add_failing_trigger,
    make_exchange,
    poisoned,
    tamper,
    write_log,
)


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
