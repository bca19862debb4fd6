"""Group commit: concurrent appends share commits; failures reach every caller of a batch."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gateway.messagelog.record import LogRecord, NewRecord
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.verify import verify_log_file
from gateway.messagelog.writer import LogWriteError, MessageLogWriter
from tests.unit.gateway.messagelog.helpers import (
    Signers,
    add_failing_trigger,
    make_exchange,
    poisoned,
    write_log,
)


@pytest.fixture
def records(signers: Signers) -> list[NewRecord]:
    """200 distinct records: 100 exchanges."""
    out: list[NewRecord] = []
    for number in range(1, 101):
        exchange = make_exchange(signers, number)
        out += [exchange.request, exchange.response]
    return out


@pytest.fixture
async def writer(log_path: Path) -> AsyncIterator[MessageLogWriter]:
    log = MessageLogWriter(MessageLogStore.open(log_path))
    await log.start()
    yield log
    await log.close()


class Gate:
    """Holds the writer thread inside ``store.append`` until released."""

    def __init__(self, store: MessageLogStore) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._append = store.append

    def append(self, records: Sequence[NewRecord]) -> list[LogRecord]:
        self.entered.set()
        assert self.release.wait(timeout=10)
        return self._append(records)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10)


async def test_concurrent_appends_share_commits(
    writer: MessageLogWriter, records: list[NewRecord], log_path: Path, signers: Signers
) -> None:
    stored = await asyncio.gather(*(writer.append(record) for record in records))
    assert sorted(r.seq for r in stored) == list(range(1, 201))
    assert [r.content for r in stored] == records  # each caller got its own record back
    assert writer.records_written == 200
    assert 1 <= writer.commits < 200
    assert writer.queue_depth == 0
    await writer.close()
    report = verify_log_file(log_path, signers.check)
    assert report.ok
    assert report.records == 200


async def test_batches_are_bounded(log_path: Path, records: list[NewRecord]) -> None:
    log = MessageLogWriter(MessageLogStore.open(log_path), max_batch=16)
    await log.start()
    try:
        await asyncio.gather(*(log.append(record) for record in records[:64]))
        assert log.commits >= 4
        assert log.records_written == 64
    finally:
        await log.close()


async def test_appends_queue_while_a_batch_is_being_written(
    writer: MessageLogWriter, records: list[NewRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(writer.store)
    monkeypatch.setattr(writer.store, "append", gate.append)
    first = asyncio.ensure_future(writer.append(records[0]))
    await gate.wait_entered()
    rest = [asyncio.ensure_future(writer.append(record)) for record in records[1:50]]
    await asyncio.sleep(0)
    assert writer.queue_depth == 49
    gate.release.set()
    assert (await first).seq == 1
    assert [r.seq for r in await asyncio.gather(*rest)] == list(range(2, 51))
    assert writer.commits == 2  # the 49 that waited went in one transaction


async def test_a_failed_batch_fails_every_caller_and_writes_nothing(
    log_path: Path, signers: Signers, records: list[NewRecord]
) -> None:
    write_log(log_path, signers, exchanges=1)
    add_failing_trigger(log_path)
    log = MessageLogWriter(MessageLogStore.open(log_path))
    await log.start()
    try:
        batch = [*records[:20], poisoned(records[20]), *records[21:40]]
        results = await asyncio.gather(*(log.append(r) for r in batch), return_exceptions=True)
        assert all(isinstance(result, LogWriteError) for result in results)
        assert "simulated I/O error" in str(results[0])
        assert log.failed_batches == 1
        assert log.last_error is not None and "simulated I/O error" in log.last_error
        assert log.records_written == 0
        assert log.store.count() == 2
        # The writer survives: the next batch continues the chain after record 2.
        assert (await log.append(records[0])).seq == 3
        assert log.last_error is None
    finally:
        await log.close()


async def test_an_unexpected_store_failure_is_a_log_write_error(
    writer: MessageLogWriter, records: list[NewRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(batch: Sequence[NewRecord]) -> list[LogRecord]:
        raise RuntimeError("disk controller on fire")

    monkeypatch.setattr(writer.store, "append", broken)
    results = await asyncio.gather(*(writer.append(r) for r in records[:5]), return_exceptions=True)
    assert all(isinstance(result, LogWriteError) for result in results)
    assert all("disk controller on fire" in str(result) for result in results)
    assert len({id(result) for result in results}) == 5  # one exception object per caller


async def test_close_drains_pending_appends(log_path: Path, records: list[NewRecord]) -> None:
    log = MessageLogWriter(MessageLogStore.open(log_path))
    await log.start()
    pending = [asyncio.ensure_future(log.append(record)) for record in records[:30]]
    await asyncio.sleep(0)  # let them enqueue
    await log.close()
    assert all(task.done() for task in pending)
    assert sorted(task.result().seq for task in pending) == list(range(1, 31))
    with MessageLogStore.open_readonly(log_path) as store:
        assert store.count() == 30


async def test_append_outside_the_running_window_fails(log_path: Path, records: list[NewRecord]) -> None:
    log = MessageLogWriter(MessageLogStore.open(log_path))
    with pytest.raises(LogWriteError, match="not been started"):
        await log.append(records[0])
    await log.start()
    assert log.running
    with pytest.raises(RuntimeError, match="already started"):
        await log.start()
    await log.close()
    await log.close()
    assert not log.running
    with pytest.raises(LogWriteError, match="closed"):
        await log.append(records[0])


async def test_callers_cancelled_while_queued_leave_no_record(
    writer: MessageLogWriter, records: list[NewRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(writer.store)
    monkeypatch.setattr(writer.store, "append", gate.append)
    first = asyncio.ensure_future(writer.append(records[0]))
    await gate.wait_entered()
    queued = [asyncio.ensure_future(writer.append(record)) for record in records[1:6]]
    await asyncio.sleep(0)
    queued[1].cancel()
    queued[3].cancel()
    gate.release.set()
    assert (await first).seq == 1
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert isinstance(results[3], asyncio.CancelledError)
    kept = [r for r in results if isinstance(r, LogRecord)]
    assert [r.seq for r in kept] == [2, 3, 4]
    assert [r.content for r in kept] == [records[1], records[3], records[5]]


async def test_a_caller_cancelled_mid_write_does_not_break_the_batch(
    writer: MessageLogWriter, records: list[NewRecord], monkeypatch: pytest.MonkeyPatch, signers: Signers
) -> None:
    gate = Gate(writer.store)
    monkeypatch.setattr(writer.store, "append", gate.append)
    callers = [asyncio.ensure_future(writer.append(record)) for record in records[:4]]
    await gate.wait_entered()
    callers[2].cancel()
    gate.release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r.seq for r in results if isinstance(r, LogRecord)] == [1, 2, 4]
    # The cancelled caller's record was already in the transaction: it is logged.
    assert writer.store.count() == 4
    assert (await writer.append(records[4])).seq == 5


def test_writer_needs_a_writable_store_and_a_sane_batch(log_path: Path, signers: Signers) -> None:
    write_log(log_path, signers, exchanges=1)
    with MessageLogStore.open_readonly(log_path) as store, pytest.raises(ValueError, match="writing"):
        MessageLogWriter(store)
    with MessageLogStore.open(log_path) as store, pytest.raises(ValueError, match="max_batch"):
        MessageLogWriter(store, max_batch=0)


async def _wal_size_after(path: Path, records: list[NewRecord], *, checkpoint: bool) -> int:
    store = MessageLogStore.open(path, wal_autocheckpoint_pages=0)  # 0: SQLite never copies it
    checkpointer = MessageLogStore.open(path) if checkpoint else None
    log = MessageLogWriter(store, checkpointer=checkpointer, checkpoint_every=20, max_batch=10)
    await log.start()

    try:
        # Everything queued at once: the queue is empty only at the end, so finishing a
        # checkpoint must not wait for an idle moment.
        await asyncio.gather(*(log.append(record) for record in records))
        size = os.path.getsize(f"{path}-wal")  # noqa: ASYNC240 -- a stat, in a test
        assert log.failed_checkpoints == 0
        assert log.wal_checkpoints >= (1 if checkpoint else 0)
    finally:
        await log.close()
    return size


async def test_the_writer_checkpoints_the_wal_beside_its_appends(
    tmp_path: Path, records: list[NewRecord], signers: Signers
) -> None:
    # Without checkpoints the WAL holds every page written; with them it is reused.
    unbounded = await _wal_size_after(tmp_path / "unchecked.db", records, checkpoint=False)
    bounded = await _wal_size_after(tmp_path / "checked.db", records, checkpoint=True)
    assert bounded < unbounded / 2
    report = verify_log_file(tmp_path / "checked.db", signers.check)
    assert report.ok and report.records == 200


def test_a_checkpoint_copies_the_wal_into_the_file(log_path: Path, records: list[NewRecord]) -> None:
    with MessageLogStore.open(log_path, wal_autocheckpoint_pages=0) as store:
        store.append(records[:50])
        frames, copied = store.checkpoint_wal()
        assert frames > 0 and copied == frames
    with MessageLogStore.open_readonly(log_path) as reader, pytest.raises(LogWriteError, match="read-only"):
        reader.checkpoint_wal()


def test_a_checkpointer_must_be_writable(log_path: Path) -> None:
    MessageLogStore.open(log_path).close()
    with MessageLogStore.open(log_path) as store, MessageLogStore.open_readonly(log_path) as reader:
        with pytest.raises(ValueError, match="opened for writing"):
            MessageLogWriter(store, checkpointer=reader)
        with pytest.raises(ValueError, match="checkpoint_every"):
            MessageLogWriter(store, checkpoint_every=0)


def test_the_wal_safety_net_must_be_a_page_count(log_path: Path) -> None:
    with pytest.raises(ValueError, match="wal_autocheckpoint_pages"):
        MessageLogStore.open(log_path, wal_autocheckpoint_pages=True)
