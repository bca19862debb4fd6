"""Where the configuration client keeps the adopted document and its serial floor.

:class:`gateway.confclient.updater.GlobalConfUpdater` decides what to persist and what
to believe of it; a :class:`StateStore` only reads and writes bytes.  Two stores:

- :class:`FileStateStore`, a security server on its own: ``globalconf.jws`` in
  ``data_dir`` and beside it ``globalconf.jws.serial`` (the state JSON), each written
  atomically (temporary file, fsync, rename, fsync of the folder), mode 0600.
- :class:`PostgresStateStore`, replicas of one security server: one row in the table
  ``confclient.globalconf`` of the database they share, holding the document, its
  serial and the state JSON.  A write never moves the row back: in one statement, it
  replaces the row only with a serial at least as high (as the files are rewritten on
  adopting a serial equal to the floor; that also mends a damaged row), so the row holds
  the highest serial any replica adopted.  A replica starting with an empty ``data_dir``
  takes its floor and its trusted key set from there.

The stores' methods block; the updater calls them on a thread.  A store that cannot be
read or written raises :class:`StateStoreError` (or, the files, ``OSError``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.database import Database, DatabaseErrors, connect_postgres, redact_url

__all__ = ["PG_SCHEMA", "FileStateStore", "Persisted", "PostgresStateStore", "StateStore", "StateStoreError"]

#: The PostgreSQL schema of the shared state, in the database the replicas share.
PG_SCHEMA = "confclient"
#: The advisory lock under which a replica creates the table.
_PG_CREATE_LOCK = "xweg.confclient.schema"
#: Waiting for a lock (the creation lock of a replica starting at the same time).
_LOCK_TIMEOUT_S = 10.0

_PG_TABLE = """
CREATE TABLE IF NOT EXISTS globalconf (
    id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    serial bigint NOT NULL,
    document bytea NOT NULL,
    state text NOT NULL
)
"""
# Never replaces the row with a lower serial; RETURNING yields nothing when it did not.
_PG_WRITE = """
INSERT INTO globalconf (id, serial, document, state) VALUES (1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE
SET serial = excluded.serial, document = excluded.document, state = excluded.state
WHERE globalconf.serial <= excluded.serial
RETURNING serial
"""


class StateStoreError(Exception):
    """The shared state could not be read or written."""


@dataclass(frozen=True)
class Persisted:
    """What a store holds: the document and the state JSON, each None when there is none."""

    document: bytes | None
    state: str | None


class StateStore(Protocol):
    #: Where the document and the state are, for log lines (no password).
    document_location: str
    state_location: str

    def load(self) -> Persisted: ...

    def save(self, document: bytes, serial: int, state: bytes) -> int:
        """Persist ``document`` (of ``serial``) and ``state``; the serial stored afterwards.

        Higher than ``serial`` when a higher one was stored already and was kept.
        """
        ...

    def close(self) -> None: ...


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # A write may be short (a disk filling up): never rename a truncated state file,
        # whose loss would lower the serial floor.
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileStateStore:
    """``document_path`` and ``<document_path>.serial``."""

    def __init__(self, document_path: Path) -> None:
        self._path = document_path
        self._state_path = document_path.with_name(document_path.name + ".serial")
        self.document_location = str(self._path)
        self.state_location = str(self._state_path)

    def load(self) -> Persisted:
        try:
            state: str | None = self._state_path.read_text()
        except (OSError, ValueError):  # missing or unreadable: no floor from it
            state = None
        try:
            document: bytes | None = self._path.read_bytes()
        except FileNotFoundError:
            document = None
        return Persisted(document, state)

    def save(self, document: bytes, serial: int, state: bytes) -> int:
        _write_atomically(self._path, document)
        _write_atomically(self._state_path, state)
        return serial

    def close(self) -> None:
        pass


class PostgresStateStore:
    """The row of ``confclient.globalconf`` in the database at ``url``, on one connection
    opened on first use (and the schema and table created then, if missing)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.document_location = self.state_location = f"{redact_url(url)} (schema {PG_SCHEMA})"
        self._database: Database | None = None
        # One thread at a time on the connection, whichever thread the updater calls from.
        self._lock = threading.Lock()

    def load(self) -> Persisted:
        with self._lock, _mapped("read"):
            row = self._db().execute("SELECT document, state FROM globalconf WHERE id = 1").fetchone()
        if row is None:
            return Persisted(None, None)
        return Persisted(bytes(row[0]), row[1])

    def save(self, document: bytes, serial: int, state: bytes) -> int:
        with self._lock, _mapped("written"):
            database = self._db()
            written = database.execute(_PG_WRITE, (serial, document, state.decode("utf-8"))).fetchone()
            if written is not None:
                return int(written[0])
            row = database.execute("SELECT serial FROM globalconf WHERE id = 1").fetchone()
        # None only if the row was deleted (by hand) in between.
        return int(row[0]) if row is not None else serial

    def close(self) -> None:
        with self._lock:
            if self._database is not None:
                database, self._database = self._database, None
                database.close()

    def _db(self) -> Database:
        if self._database is None:
            database = connect_postgres(self._url, schema=PG_SCHEMA, create_schema=True)
            try:
                database.create_tables([_PG_TABLE], lock=_PG_CREATE_LOCK, timeout_s=_LOCK_TIMEOUT_S)
            except BaseException:
                database.close()
                raise
            self._database = database
        return self._database


@contextmanager
def _mapped(doing: str) -> Iterator[None]:
    """Database errors become :class:`StateStoreError`, saying what could not be done."""
    try:
        yield
    except DatabaseErrors as exc:
        raise StateStoreError(f"the shared global configuration state could not be {doing}: {exc}") from exc
