"""A thread that owns one message-log connection: blocking store work, in order, off the event loop.

The timestamper and the archiver each keep their own connection to the log (WAL lets
them read and write beside the writer's) and run everything that touches it on one
dedicated thread, so that the connection is never used from two threads at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.messagelog.errors import MessageLogError
from gateway.messagelog.store import MessageLogStore

__all__ = ["StoreThread"]

_T = TypeVar("_T")


class StoreThread:
    def __init__(self, name: str, *, error: type[MessageLogError] = MessageLogError) -> None:
        self._name = name
        self._error = error  # what its owner raises when used while not running
        self._executor: ThreadPoolExecutor | None = None
        self._store: MessageLogStore | None = None

    async def open(self, opener: Callable[[], MessageLogStore]) -> MessageLogStore:
        """Start the thread and open the store on it."""
        if self._executor is not None:
            raise self._error(f"the {self._name} is already running")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"xweg-{self._name}")
        self._store = await self.run(opener)
        return self._store

    @property
    def store(self) -> MessageLogStore:
        """The open store; only to be used from functions passed to :meth:`run`."""
        if self._store is None:
            raise self._error(f"the {self._name} is not running")
        return self._store

    async def run(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if self._executor is None:
            raise self._error(f"the {self._name} is not running")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: function(*args, **kwargs)
        )

    async def close(self) -> None:
        """Close the store (after any work still running on the thread) and stop the thread."""
        executor, self._executor = self._executor, None
        store, self._store = self._store, None
        if executor is None:
            return
        if store is not None:
            await asyncio.get_running_loop().run_in_executor(executor, store.close)
        executor.shutdown(wait=True)
