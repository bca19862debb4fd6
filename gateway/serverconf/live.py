"""The server configuration a running security server acts on: one snapshot, swapped whole."""

from __future__ import annotations

from collections.abc import Callable

from gateway.serverconf.model import ServerConfSnapshot

__all__ = ["LiveServerConf"]


class LiveServerConf:
    """Holds the current :class:`ServerConfSnapshot`; requests read it once and keep it.

    Whoever loads a newer snapshot (the store's poller, the management API after a
    change) calls :meth:`replace`; listeners hear of every new snapshot.
    """

    def __init__(self, snapshot: ServerConfSnapshot) -> None:
        self._snapshot = snapshot
        self._listeners: list[Callable[[ServerConfSnapshot], None]] = []

    def current(self) -> ServerConfSnapshot:
        return self._snapshot

    def replace(self, snapshot: ServerConfSnapshot) -> None:
        if snapshot.version == self._snapshot.version and snapshot == self._snapshot:
            return
        self._snapshot = snapshot
        for listener in self._listeners:
            listener(snapshot)

    def add_listener(self, listener: Callable[[ServerConfSnapshot], None]) -> None:
        self._listeners.append(listener)
