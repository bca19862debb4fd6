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
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from gateway.messagelog.errors import LogWriteError
from gateway.messagelog.record import LogRecord, NewRecord
from gateway.messagelog.store import MessageLogStore

__all__ = ["MessageLogWriter", "LogWriteError", "DEFAULT_MAX_BATCH"]

#: Records per transaction at most; bounds the memory and latency of one commit.
DEFAULT_MAX_BATCH = 512

_Pending = tuple[NewRecord, "asyncio.Future[LogRecord]"]


class MessageLogWriter:
    """The asyncio face of a :class:`MessageLogStore`: ``await append(record)``."""

    def __init__(
        self,
        store: MessageLogStore,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_commit: Callable[[float, int], None] | None = None,
    ) -> None:
        """``on_commit(seconds, records)`` is called after each committed batch (for metrics)."""
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError("max_batch must be a positive integer")
        if store.readonly:
            raise ValueError("a message log writer needs a store opened for writing")
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
            executor, self._executor = self._executor, None
            if executor is not None:
                # The store's connection belongs to the writer thread; close it there.
                await asyncio.get_running_loop().run_in_executor(executor, self._store.close)
                executor.shutdown(wait=True)
            else:
                self._store.close()

    async def _run(self) -> None:
        try:
            while True:
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
        for (_, future), stored in zip(batch, written, strict=True):
            if not future.done():
                future.set_result(stored)
        if self._on_commit is not None:
            self._on_commit(elapsed_s, len(written))

    @staticmethod
    def _fail_all(pending: Iterable[_Pending], error: LogWriteError) -> None:
        for _, future in pending:
            if not future.done():
                # One exception object per caller: raising shares and mutates its traceback.
                own = LogWriteError(*error.args)
                own.__cause__ = error.__cause__
                future.set_exception(own)
