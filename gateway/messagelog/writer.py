"""Group commit: many concurrent messages share one transaction and one fsync.

``append`` puts a record on a queue and waits.  One background task takes everything
queued (up to ``max_batch``), hands it to :meth:`MessageLogStore.append` on a dedicated
thread, and answers every waiting caller: each gets its :class:`LogRecord`, or, when the
batch failed, every caller of that batch gets :class:`LogWriteError` (nothing of it was
written).  While one batch is being synced, the next one gathers, so the number of
commits falls as load rises.

The writer owns the store it is given: :meth:`MessageLogWriter.close` drains the queue,
stops the thread and closes the store.  Reads for other purposes should use a separate
:meth:`MessageLogStore.open_readonly` connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import structlog

from gateway.messagelog.errors import LogWriteError
from gateway.messagelog.record import LogRecord, NewRecord
from gateway.messagelog.store import MessageLogStore

__all__ = ["MessageLogWriter", "LogWriteError", "DEFAULT_MAX_BATCH", "DEFAULT_CHECKPOINT_EVERY"]

log = structlog.get_logger("xweg.messagelog")

#: Records per transaction at most; bounds the memory and latency of one commit.
DEFAULT_MAX_BATCH = 512
#: Records between WAL checkpoints: about SQLite's own 1000 pages at 4 KiB a record.
DEFAULT_CHECKPOINT_EVERY = 256

_Pending = tuple[NewRecord, "asyncio.Future[LogRecord]"]


class MessageLogWriter:
    """The asyncio face of a :class:`MessageLogStore`: ``await append(record)``."""

    def __init__(
        self,
        store: MessageLogStore,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_commit: Callable[[float, int], None] | None = None,
        checkpointer: MessageLogStore | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    ) -> None:
        """``on_commit(seconds, records)`` is called after each committed batch (for metrics).

        ``checkpointer``: a second connection to the same file, for a ``store`` opened with
        a high ``wal_autocheckpoint_pages``: after every ``checkpoint_every`` records, the
        writer copies the WAL into the file on the checkpointer's own thread, beside the
        appends instead of inside one of their commits, and finishes the copy between two
        batches, so that SQLite starts the WAL over.  The writer closes it.
        """
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError("max_batch must be a positive integer")
        if (
            isinstance(checkpoint_every, bool)
            or not isinstance(checkpoint_every, int)
            or checkpoint_every < 1
        ):
            raise ValueError("checkpoint_every must be a positive integer")
        if store.readonly or (checkpointer is not None and checkpointer.readonly):
            raise ValueError("a message log writer needs stores opened for writing")
        self._checkpointer = checkpointer
        self._checkpoint_every = checkpoint_every
        self._since_checkpoint = 0
        self._checkpointing: asyncio.Future[tuple[int, int]] | None = None
        self._finish_checkpoint = False  # the checkpointer's copy is done: the writer finishes it
        self._checkpoint_executor: ThreadPoolExecutor | None = None
        #: WAL checkpoints finished (the WAL then starts over), and those that failed (the
        #: next one tries again; the WAL only grows meanwhile).
        self.wal_checkpoints = 0
        self.failed_checkpoints = 0
        self._store = store
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Transactions committed and records made durable, for tests and metrics.
        self.commits = 0
        self.records_written = 0
        #: Batches that failed (every record of them refused with LogWriteError).
        self.failed_batches = 0
        #: Why the last batch failed; None once a later batch committed (for readiness).
        self.last_error: str | None = None

    @property
    def store(self) -> MessageLogStore:
        return self._store

    @property
    def queue_depth(self) -> int:
        """Records waiting for the next batch (not counting the one being written)."""
        return len(self._queue)

    @property
    def running(self) -> bool:
        """Started, not closing, and its task has not ended."""
        return self._task is not None and not self._task.done() and not self._closing

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the message log writer was already started")
        if self._closing:
            raise LogWriteError("the message log writer is closed")
        # One thread: the store's connection is used from there only, never concurrently.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xweg-messagelog")
        if self._checkpointer is not None:
            self._checkpoint_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="xweg-walcheckpoint"
            )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="xweg-messagelog-writer")

    async def append(self, record: NewRecord) -> LogRecord:
        """Return once ``record`` is durable, with its place in the log.

        Raises :class:`LogWriteError` if the log is not running or the batch holding the
        record could not be committed.  A caller cancelled before its batch was taken
        leaves no record; one cancelled later leaves its record written, which is safe:
        the log may hold a message that never moved on, never the reverse.
        """
        if not isinstance(record, NewRecord):
            raise TypeError(f"append takes a NewRecord, not {type(record).__name__}")
        if self._task is None:
            raise LogWriteError("the message log writer has not been started")
        if self._closing:
            raise LogWriteError("the message log writer is closed")
        future: asyncio.Future[LogRecord] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Write what is queued, stop the thread, close the store.  Closing twice is harmless."""
        if self._closing:
            if self._task is not None:
                await asyncio.shield(self._task)
            return
        self._closing = True
        self._wakeup.set()
        try:
            if self._task is not None:
                await asyncio.shield(self._task)
        finally:
            try:
                executor, self._executor = self._executor, None
                if executor is not None:
                    # The store's connection belongs to the writer thread; close it there.
                    await asyncio.get_running_loop().run_in_executor(executor, self._store.close)
                    executor.shutdown(wait=True)
                else:
                    self._store.close()
            finally:
                await self._close_checkpointer()

    async def _close_checkpointer(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        executor, self._checkpoint_executor = self._checkpoint_executor, None
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._checkpointing)
        if checkpointer is None:
            return
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, checkpointer.close)
            executor.shutdown(wait=True)
        else:
            checkpointer.close()

    async def _run(self) -> None:
        try:
            while True:
                if self._finish_checkpoint:
                    # Between two batches: it copies only the frames written since the
                    # checkpointer's copy, and appends go on right after it.
                    await self._finish_wal_checkpoint()
                    continue
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch = self._take_batch()
                if batch:
                    await self._write(batch)
        except asyncio.CancelledError:
            self._fail_all(self._queue, LogWriteError("the message log writer was stopped"))
            self._queue.clear()
            raise

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._queue and len(batch) < self._max_batch:
            record, future = self._queue.popleft()
            # Its caller is gone and nothing was forwarded yet: no need to log it.
            if not future.cancelled():
                batch.append((record, future))
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        assert self._executor is not None  # set by start(), before the task exists
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            written = await loop.run_in_executor(self._executor, self._store.append, [r for r, _ in batch])
        except asyncio.CancelledError:
            # The thread may still commit, but no caller may take that for granted.
            self._fail_all(batch, LogWriteError("the message log writer was stopped mid-batch"))
            raise
        except LogWriteError as exc:
            self.failed_batches += 1
            self.last_error = str(exc)
            self._fail_all(batch, exc)
            return
        except Exception as exc:
            # Whatever went wrong, nothing of the batch is durable: callers must not go on.
            self.failed_batches += 1
            self.last_error = f"the message log could not be written: {exc}"
            error = LogWriteError(self.last_error)
            error.__cause__ = exc
            self._fail_all(batch, error)
            return
        elapsed_s = time.perf_counter() - started
        self.last_error = None
        self.commits += 1
        self.records_written += len(written)
        self._since_checkpoint += len(written)
        self._maybe_checkpoint()
        for (_, future), stored in zip(batch, written, strict=True):
            if not future.done():
                future.set_result(stored)
        if self._on_commit is not None:
            self._on_commit(elapsed_s, len(written))

    def _maybe_checkpoint(self) -> None:
        """Start a WAL checkpoint on its own thread when enough was written since the last."""
        if (
            self._checkpointer is None
            or self._checkpoint_executor is None
            or self._checkpointing is not None
            or self._since_checkpoint < self._checkpoint_every
        ):
            return
        self._since_checkpoint = 0
        future = asyncio.get_running_loop().run_in_executor(
            self._checkpoint_executor, self._checkpointer.checkpoint_wal
        )
        self._checkpointing = future
        future.add_done_callback(self._checkpointed)

    def _checkpointed(self, future: asyncio.Future[tuple[int, int]]) -> None:
        self._checkpointing = None
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            self._checkpoint_failed(error)
            return
        # SQLite starts the WAL over only when a writer finds every frame copied, which
        # never holds while appends continue beside the checkpoint: the writer's own
        # connection copies the few frames written since, between two batches.
        self._finish_checkpoint = True
        self._wakeup.set()

    async def _finish_wal_checkpoint(self) -> None:
        self._finish_checkpoint = False
        assert self._executor is not None  # the loop runs only while started
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._store.checkpoint_wal)
        except Exception as exc:  # whatever it was, the appends must go on
            self._checkpoint_failed(exc)
        else:
            self.wal_checkpoints += 1

    def _checkpoint_failed(self, error: BaseException | None) -> None:
        self.failed_checkpoints += 1
        # Nothing is lost: the records are durable in the WAL, which grows until one succeeds.
        log.warning("messagelog.wal_checkpoint_failed", error=str(error))

    @staticmethod
    def _fail_all(pending: Iterable[_Pending], error: LogWriteError) -> None:
        for _, future in pending:
            if not future.done():
                # One exception object per caller: raising shares and mutates its traceback.
                own = LogWriteError(*error.args)
                own.__cause__ = error.__cause__
                future.set_exception(own)
