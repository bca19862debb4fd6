"""Keep global configuration current: poll the registry, verify, persist, swap.

On start the last good document on disk is loaded (so a restart does not need the
registry), then the registry is polled every ``poll_interval_s``.  A document is
persisted atomically before it is used; a failed fetch or verification keeps the last
good one and is logged.  Once that one expires, ``current()`` returns None and the
pipelines refuse traffic with ``OutdatedGlobalConf``.

Beside the document, ``<document>.serial`` (one atomic write) holds the serial floor and
the trusted anchor: after a key rotation the new key set survives a restart, and the
old keys stay refused.  An anchor installed out of band that is newer (``generated_at``)
than the persisted one wins; the registry URLs always come from the configured anchor.

Replicas of one security server keep both in their shared PostgreSQL database instead
(``store``, see :mod:`gateway.confclient.state`): a replica starting afresh takes the
highest serial any of them adopted as its floor, and a document that another replica
has already gone beyond is not adopted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

from core.clock import Clock
from gateway.confclient.fetcher import FetchError, fetch_document
from gateway.confclient.state import FileStateStore, Persisted, StateStore, StateStoreError
from gateway.confclient.trusted import TrustedGlobalConf
from gateway.config import GlobalConfClientSettings
from gateway.periodic import run_periodically
from trust.anchor import Anchor
from trust.errors import AnchorInvalid, GlobalConfError, GlobalConfExpired
from trust.globalconf import GlobalConf

__all__ = ["GlobalConfUpdater"]

log = structlog.get_logger("xweg.confclient")


class GlobalConfUpdater:
    def __init__(
        self,
        trusted: TrustedGlobalConf,
        document_path: Path,
        settings: GlobalConfClientSettings,
        clock: Clock,
        *,
        on_update: Callable[[GlobalConf], None] | None = None,
        store: StateStore | None = None,
    ) -> None:
        """``store``: where the document and its state are kept (the updater closes it);
        by default ``document_path`` and ``<document_path>.serial``."""
        self.trusted = trusted
        self._configured_anchor = trusted.anchor
        self._store: StateStore = store if store is not None else FileStateStore(document_path)
        self._settings = settings
        self._clock = clock
        self._on_update = on_update
        self._listeners: list[Callable[[GlobalConf], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.updated = asyncio.Event()
        self._refresh_lock = asyncio.Lock()

    def _persisted_anchor(self, state: object) -> Anchor:
        """The configured anchor with the key set last trusted, if that is newer."""
        configured = self.trusted.anchor
        text = state.get("anchor") if isinstance(state, dict) else None
        if not isinstance(text, str):
            return configured
        try:
            persisted = Anchor.from_json(text.encode("utf-8"))
        except (AnchorInvalid, UnicodeError) as exc:
            log.error("globalconf.persisted_anchor_invalid", path=self._store.state_location, error=str(exc))
            return configured
        if persisted.instance != configured.instance or persisted.generated_at < configured.generated_at:
            return configured
        return configured.with_key_set(persisted.key_set, persisted.generated_at)

    def _state(self, conf: GlobalConf, anchor: Anchor) -> bytes:
        state: dict[str, object] = {"serial": conf.serial}
        if anchor != self._configured_anchor:
            # Only a rotated key set needs remembering; the configured anchor is on disk already.
            state["anchor"] = anchor.to_json().decode("utf-8")
        return json.dumps(state).encode()

    def load_persisted(self) -> None:
        """Adopt the persisted document if it still verifies; remember its serial and key set regardless."""
        self.use_persisted(self._store.load())

    def use_persisted(self, persisted: Persisted) -> None:
        """Adopt ``persisted`` (as :meth:`load_persisted` does what the store holds)."""
        if persisted.state is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                state = json.loads(persisted.state)
                recorded = int(state["serial"])
                floor = max(recorded, self.trusted.min_serial or recorded)
                self.trusted = TrustedGlobalConf(self._persisted_anchor(state), min_serial=floor)
        document = persisted.document
        if document is None:
            return
        location = self._store.document_location
        try:
            conf = self.trusted.update(document, self._clock.now())
            self._announce(conf)
        except GlobalConfExpired:
            log.warning("globalconf.persisted_expired", path=location)
        except GlobalConfError as exc:
            log.error("globalconf.persisted_invalid", path=location, error=str(exc))

    def _announce(self, conf: GlobalConf) -> None:
        log.info("globalconf.adopted", serial=conf.serial, expires_at=conf.expires_at.isoformat())
        for listener in (self._on_update, *self._listeners):
            if listener is not None:
                listener(conf)
        self.updated.set()

    def add_listener(self, listener: Callable[[GlobalConf], None]) -> None:
        """Call ``listener`` with every configuration adopted from now on."""
        self._listeners.append(listener)

    async def refresh_once(self) -> bool:
        """One poll of every registry address in the anchor; True when a document was adopted."""
        # One round at a time: the background loop and an explicit call must not interleave
        # their writes of the same files.
        async with self._refresh_lock:
            return await self._refresh_once()

    async def _refresh_once(self) -> bool:
        assert self._session is not None
        for base in self.trusted.anchor.registry_urls:
            url = base.rstrip("/") + "/globalconf"
            try:
                document = await fetch_document(
                    self._session,
                    url,
                    timeout_s=self._settings.fetch_timeout_s,
                    max_size=self._settings.max_size_bytes,
                )
                conf = self.trusted.check(document, self._clock.now())
            except (FetchError, GlobalConfError) as exc:
                log.warning("globalconf.refresh_failed", url=url, error=str(exc))
                continue
            if document == self.trusted.document:
                return True
            # Persist before use: a restart must never go back behind what was acted on.
            try:
                # Files: two fsyncs each; a database: a round trip. Off the event loop, so
                # exchanges in flight do not stall.
                state = self._state(conf, self.trusted.next_anchor(conf))
                stored = await asyncio.to_thread(self._store.save, document, conf.serial, state)
            except (OSError, StateStoreError) as exc:
                log.error("globalconf.persist_failed", path=self._store.document_location, error=str(exc))
                return False
            if stored > conf.serial:
                # Another replica has adopted a newer one: this one would be a rollback.
                log.warning(
                    "globalconf.persist_superseded", url=url, serial=conf.serial, stored_serial=stored
                )
                continue
            self.trusted.adopt(document, conf)
            self._announce(conf)
            return True
        return False

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.use_persisted(await asyncio.to_thread(self._store.load))
        interval = self._settings.poll_interval_s
        self._task = asyncio.create_task(
            run_periodically(self.refresh_once, interval_s=interval, retry_s=interval, name="globalconf"),
            name="globalconf-updater",
        )

    async def close(self) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        finally:
            try:
                if self._session is not None:
                    await self._session.close()
            finally:
                await asyncio.to_thread(self._store.close)

    def current(self) -> GlobalConf | None:
        return self.trusted.current(self._clock.now())
