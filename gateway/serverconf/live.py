"""The server configuration a running security server acts on: one snapshot, swapped whole.

:meth:`LiveServerConf.open` loads the first snapshot from the store; :meth:`LiveServerConf.start`
polls the store's change marker every ``poll_interval_s`` and loads a new snapshot when
it moved, so changes made by the command line, the management API or another replica
reach the pipelines within one interval while the store answers (while it fails, the
last snapshot stays in force and polls back off to every 30 s).  Unit tests without a store use
:meth:`LiveServerConf.fixed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from gateway.periodic import run_periodically
from gateway.serverconf.model import ServerConfSnapshot
from gateway.serverconf.store import ServerConfError, ServerConfStore

__all__ = ["LiveServerConf"]

log = structlog.get_logger("xweg.serverconf")
#: Longest pause between polls while the store fails (the first retry comes after 1 s).
_MAX_RETRY_S = 30.0


def _older(version: str, than: str) -> bool:
    """Whether store version ``version`` (``counter@database``) comes before ``than`` of the
    same database; versions of different databases (a store replaced) are not ordered."""
    counter, _, database = version.partition("@")
    other_counter, _, other_database = than.partition("@")
    if not database or database != other_database:
        return False
    try:
        return int(counter) < int(other_counter)
    except ValueError:
        return False


class LiveServerConf:
    """Holds the current :class:`ServerConfSnapshot`; requests read it once and keep it.

    Whoever loads a newer snapshot (the store's poller, the management API after a
    change) calls :meth:`replace`; listeners hear of every new snapshot.
    """

    def __init__(
        self,
        snapshot: ServerConfSnapshot,
        *,
        store: ServerConfStore | None = None,
        poll_interval_s: float = 2.0,
    ) -> None:
        if (
            isinstance(poll_interval_s, bool)
            or not isinstance(poll_interval_s, int | float)
            or poll_interval_s <= 0
        ):
            raise ValueError(f"poll_interval_s must be a positive number, not {poll_interval_s!r}")
        self._snapshot = snapshot
        self._store = store
        self._poll_interval_s = float(poll_interval_s)
        self._listeners: list[Callable[[ServerConfSnapshot], None]] = []
        self._task: asyncio.Task[None] | None = None
        # Reloads one at a time: one started earlier must not finish later with older rows.
        self._reloading = asyncio.Lock()
        self._checked_at = time.monotonic()  # the store was last read successfully

    @classmethod
    def fixed(cls, snapshot: ServerConfSnapshot) -> LiveServerConf:
        """A configuration without a store: it changes only by :meth:`replace`."""
        return cls(snapshot)

    @classmethod
    async def open(cls, store: ServerConfStore, *, poll_interval_s: float = 2.0) -> LiveServerConf:
        """The configuration ``store`` holds now, kept current once :meth:`start` is called."""
        snapshot = await asyncio.to_thread(store.snapshot)
        return cls(snapshot, store=store, poll_interval_s=poll_interval_s)

    @property
    def store(self) -> ServerConfStore:
        """The store this configuration comes from (none for one made with :meth:`fixed`)."""
        if self._store is None:
            raise RuntimeError("this server configuration has no store")
        return self._store

    def current(self) -> ServerConfSnapshot:
        return self._snapshot

    def replace(self, snapshot: ServerConfSnapshot) -> None:
        """Make ``snapshot`` current, unless it is the current one or older than it."""
        if snapshot.version == self._snapshot.version and snapshot == self._snapshot:
            return
        if _older(snapshot.version, self._snapshot.version):
            log.info(
                "serverconf.older_snapshot_ignored", version=snapshot.version, current=self._snapshot.version
            )
            return
        self._snapshot = snapshot
        for listener in self._listeners:
            listener(snapshot)

    def add_listener(self, listener: Callable[[ServerConfSnapshot], None]) -> None:
        self._listeners.append(listener)

    async def reload(self) -> None:
        """Read the store's configuration (off the event loop) and make it the current one."""
        async with self._reloading:
            snapshot = await asyncio.to_thread(self.store.snapshot)
            if snapshot.version != self._snapshot.version:
                log.info("serverconf.reloaded", version=snapshot.version)
            self.replace(snapshot)
            self._checked_at = time.monotonic()

    def seconds_since_check(self) -> float | None:
        """Seconds since the store was last read successfully (``None`` without a store).

        While the store does not answer, the server acts on its last snapshot; this says
        how old that may be."""
        return None if self._store is None else time.monotonic() - self._checked_at

    async def _poll_once(self) -> bool:
        try:
            marker = await asyncio.to_thread(self.store.change_marker)
            if marker != self._snapshot.version:
                await self.reload()
            self._checked_at = time.monotonic()
        except ServerConfError as exc:
            # The last good snapshot stays in force; the store is asked again soon.
            log.warning("serverconf.poll_failed", error=str(exc))
            return False
        return True

    async def start(self) -> None:
        """Poll the store's change marker every ``poll_interval_s`` until :meth:`close`."""
        store = self.store  # refuses to start without a store
        if self._task is not None:
            return
        log.info(
            "serverconf.polling", version=self._snapshot.version, store=store.engine.url.render_as_string()
        )
        self._task = asyncio.create_task(
            run_periodically(
                self._poll_once,
                interval_s=self._poll_interval_s,
                retry_s=max(self._poll_interval_s, _MAX_RETRY_S),
                name="serverconf",
            ),
            name="serverconf-poller",
        )

    async def close(self) -> None:
        """Stop polling and close the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
