"""The message log on disk: one SQLite file, WAL journal, ``synchronous=FULL``.

Blocking code, meant for one writer thread (see :mod:`gateway.messagelog.writer`) plus
occasional readers.  One connection is shared under a lock, opened with
``check_same_thread=False`` so the thread that opens the store need not be the one that
writes.  ``append`` writes a whole batch in one ``BEGIN IMMEDIATE ... COMMIT``: one
fsync per batch, and either every record of the batch is durable or none is.

Besides the records (each with its Merkle leaf hash, computed at append time), the file
holds the timestamped checkpoints and every record's inclusion path to the checkpoint
that first covered it; :meth:`MessageLogStore.add_checkpoint` writes a checkpoint and
the paths of its batch in one transaction.

``sqlite3`` errors do not leave this module: writes fail with :class:`LogWriteError`,
reads with :class:`LogReadError`, opening with :class:`LogOpenError`.  Auditors open a
file with :meth:`MessageLogStore.open_readonly`, which never creates or changes it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.messagelog.checkpoint import Checkpoint, decode_path, encode_path
from gateway.messagelog.errors import (
    CorruptCheckpoint,
    CorruptRecord,
    LogFileMissing,
    LogOpenError,
    LogReadError,
    LogWriteError,
    MessageLogError,
)
from gateway.messagelog.record import (
    GENESIS_HASH,
    HASH_SIZE,
    Direction,
    LogRecord,
    NewRecord,
    format_time,
    parse_time,
)

__all__ = [
    "MessageLogStore",
    "SCHEMA_VERSION",
    "BUSY_TIMEOUT_SECONDS",
    "MAX_META_KEY_LENGTH",
    "MAX_META_VALUE_LENGTH",
    "LogWriteError",
    "LogOpenError",
    "LogFileMissing",
    "LogReadError",
    "CorruptRecord",
    "CorruptCheckpoint",
]

#: Stored in ``PRAGMA user_version``; a file with another version is refused.
SCHEMA_VERSION = 2
#: How long a write waits for another connection's lock before failing.
BUSY_TIMEOUT_SECONDS = 5.0
#: Bounds on the key/value table (the largest values are CA certificate bundles in PEM).
MAX_META_KEY_LENGTH = 255  # characters
MAX_META_VALUE_LENGTH = 4 * 1024 * 1024  # characters
#: Rows fetched per query while iterating, so a reader never holds the lock for long.
_PAGE_ROWS = 256
#: Leaf hashes (32 bytes each) fetched per query.
_LEAF_PAGE_ROWS = 16384

# Separate statements, not executescript(): that would commit the surrounding transaction.
_SCHEMA = (
    """CREATE TABLE records (
        seq INTEGER PRIMARY KEY,
        direction TEXT NOT NULL,
        message_id TEXT NOT NULL,
        client TEXT NOT NULL,
        service TEXT NOT NULL,
        logged_at TEXT NOT NULL,
        status INTEGER,
        header BLOB NOT NULL,
        body BLOB NOT NULL,
        signature TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        record_hash BLOB NOT NULL,
        ocsp BLOB,
        leaf_hash BLOB NOT NULL
    )""",
    "CREATE INDEX records_message_id ON records (message_id)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE checkpoints (
        size INTEGER PRIMARY KEY,
        root BLOB NOT NULL,
        body BLOB NOT NULL,
        token BLOB NOT NULL,
        tsa TEXT NOT NULL,
        gen_time TEXT NOT NULL
    )""",
    """CREATE TABLE record_paths (
        seq INTEGER PRIMARY KEY,
        checkpoint_size INTEGER NOT NULL,
        path BLOB NOT NULL
    )""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Queries spelled out in full (no string building), columns in _record_from_row's order.
_INSERT = (
    "INSERT INTO records (seq, direction, message_id, client, service, logged_at, status, header, body,"
    " signature, prev_hash, record_hash, ocsp, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_LAST = (
    "SELECT seq, direction, message_id, client, service, logged_at, status, header, body, signature,"
    " prev_hash, record_hash, ocsp FROM records ORDER BY seq DESC LIMIT 1"
)
_SELECT_MESSAGE = (
    "SELECT seq, direction, message_id, client, service, logged_at, status, header, body, signature,"
    " prev_hash, record_hash, ocsp FROM records WHERE message_id = ? ORDER BY seq"
)
_SELECT_CHECKPOINTS = "SELECT size, root, body, token, tsa, gen_time FROM checkpoints ORDER BY size"
_SELECT_LAST_CHECKPOINT = (
    "SELECT size, root, body, token, tsa, gen_time FROM checkpoints ORDER BY size DESC LIMIT 1"
)
_SELECT_PAGE = (
    "SELECT seq, direction, message_id, client, service, logged_at, status, header, body, signature,"
    " prev_hash, record_hash, ocsp FROM records WHERE seq >= ? ORDER BY seq LIMIT ?"
)


@contextmanager
def _mapped(error: type[MessageLogError], what: str) -> Iterator[None]:
    """Turn sqlite3 and OS errors into this package's ``error``, saying what was being done."""
    try:
        yield
    except sqlite3.Error as exc:
        raise error(f"{what}: {exc}") from exc
    except OSError as exc:
        raise error(f"{what}: {exc}") from exc


def _record_from_row(row: tuple[Any, ...]) -> LogRecord:
    seq, direction, message_id, client, service, logged_at, status, header, body, signature = row[:10]
    prev_hash, record_hash, ocsp = row[10:]
    try:
        return LogRecord(
            seq=seq,
            prev_hash=prev_hash,
            record_hash=record_hash,
            direction=Direction(direction),
            message_id=message_id,
            client=client,
            service=service,
            logged_at=parse_time(logged_at),
            header=header,
            body=body,
            signature=signature,
            status=status,
            ocsp=ocsp,
        )
    except (ValueError, TypeError) as exc:
        shown = message_id if isinstance(message_id, str) else "unknown"
        raise CorruptRecord(seq, shown, f"the stored row is not a well-formed record ({exc})") from exc


def _checkpoint_from_row(row: tuple[Any, ...]) -> Checkpoint:
    size, root, body, token, tsa, gen_time = row
    shown = size if isinstance(size, int) and not isinstance(size, bool) else None
    try:
        checkpoint = Checkpoint.from_stored(body, token=token, tsa=tsa, gen_time=parse_time(gen_time))
    except (ValueError, TypeError) as exc:
        raise CorruptCheckpoint(shown, f"the stored row is not a well-formed checkpoint ({exc})") from exc
    if checkpoint.size != size:
        raise CorruptCheckpoint(shown, f"its body names size {checkpoint.size}, its row size {size!r}")
    if checkpoint.root != root:
        raise CorruptCheckpoint(shown, "its body names another root than its row")
    return checkpoint


class MessageLogStore:
    """A message-log file.  Build it with :meth:`open` or :meth:`open_readonly`."""

    def __init__(self, connection: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
        self._connection = connection
        self._path = path
        self._readonly = readonly
        self._lock = threading.Lock()
        self._closed = False

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS) -> MessageLogStore:
        """Open ``path`` for writing, creating the file and schema if it does not exist.

        ``busy_timeout_seconds`` bounds how long a write waits for a lock held by another
        connection before it fails with :class:`LogWriteError`.
        """
        path = Path(path)
        if busy_timeout_seconds < 0:
            raise ValueError("busy_timeout_seconds must not be negative")
        with _mapped(LogOpenError, f"cannot open message log {path}"):
            connection = sqlite3.connect(
                path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
            )
        try:
            with _mapped(LogOpenError, f"cannot open message log {path}"):
                mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LogOpenError(f"message log {path} cannot use a WAL journal (got {mode!r})")
                # FULL: the WAL is synced at every commit, so a commit survives power loss.
                connection.execute("PRAGMA synchronous=FULL")
                cls._ensure_schema(connection, path)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, readonly=False)

    @classmethod
    def open_readonly(cls, path: Path) -> MessageLogStore:
        """Open an existing log for reading only; never creates or changes the file."""
        path = Path(path)
        if not path.is_file():
            raise LogFileMissing(f"message log {path} does not exist")
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with _mapped(LogOpenError, f"cannot open message log {path}"):
            connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
        try:
            with _mapped(LogOpenError, f"cannot read message log {path}"):
                version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise LogOpenError(
                    f"{path} is not a message log of schema version {SCHEMA_VERSION} (found {version})"
                )
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, readonly=True)

    @staticmethod
    def _ensure_schema(connection: sqlite3.Connection, path: Path) -> None:
        with _transaction(connection):
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version != 0:
                raise LogOpenError(
                    f"message log {path} has schema version {version}; this server knows {SCHEMA_VERSION}"
                )
            if connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise LogOpenError(f"{path} is an SQLite file but not a message log")
            for statement in _SCHEMA:
                connection.execute(statement)

    # -- properties ------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def readonly(self) -> bool:
        return self._readonly

    def durability(self) -> dict[str, str]:
        """The journal mode and sync level this connection really runs with, read back."""
        with self._use(LogReadError, "cannot read the log's settings") as connection:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            level = connection.execute("PRAGMA synchronous").fetchone()[0]
        names = {0: "off", 1: "normal", 2: "full", 3: "extra"}
        return {"journal_mode": str(mode).lower(), "synchronous": names.get(level, str(level))}

    # -- writing ---------------------------------------------------------------------

    def append(self, records: Sequence[NewRecord]) -> list[LogRecord]:
        """Store ``records`` after the last one, in one transaction; all or nothing.

        Sequence numbers and the chain continue from what the file holds at the time of
        the write (read inside the transaction), not from a cached value.
        """
        for record in records:
            if not isinstance(record, NewRecord):
                raise TypeError(f"append takes NewRecord objects, not {type(record).__name__}")
        if not records:
            return []
        self._refuse_readonly()
        what = f"cannot write {len(records)} record(s) to the message log"
        with self._use(LogWriteError, what) as connection, _transaction(connection):
            row = connection.execute(
                "SELECT seq, record_hash FROM records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev_hash = (0, GENESIS_HASH) if row is None else row
            if not isinstance(prev_hash, bytes) or len(prev_hash) != HASH_SIZE:
                raise LogWriteError(f"the log's last record ({seq}) is damaged; refusing to extend it")
            stored: list[LogRecord] = []
            for record in records:
                seq += 1
                placed = LogRecord.place(seq, prev_hash, record)
                prev_hash = placed.record_hash
                stored.append(placed)
            connection.executemany(_INSERT, [_row_of(placed) for placed in stored])
        return stored

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (replacing an earlier value), durably."""
        if not isinstance(key, str) or not key or len(key) > MAX_META_KEY_LENGTH:
            raise ValueError(f"a meta key must be 1 to {MAX_META_KEY_LENGTH} characters")
        if not isinstance(value, str) or len(value) > MAX_META_VALUE_LENGTH:
            raise ValueError(f"a meta value must be a string of at most {MAX_META_VALUE_LENGTH} characters")
        self._refuse_readonly()
        with self._use(LogWriteError, f"cannot store {key!r} in the message log") as connection:
            with _transaction(connection):
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def add_checkpoint(self, checkpoint: Checkpoint, paths: Sequence[tuple[int, bytes]]) -> None:
        """Store ``checkpoint`` and the paths of the records it is the first to cover.

        ``paths`` holds ``(seq, path)`` for exactly the records after the previous
        checkpoint up to ``checkpoint.size``, each path its hashes concatenated (see
        :func:`~gateway.messagelog.checkpoint.encode_path`).  One transaction: the
        checkpoint row and every path, or nothing.
        """
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError(f"add_checkpoint takes a Checkpoint, not {type(checkpoint).__name__}")
        rows: list[tuple[int, int, bytes]] = []
        for seq, path in paths:
            if isinstance(seq, bool) or not isinstance(seq, int):
                raise ValueError("a path's seq must be an integer")
            encode_path(decode_path(path))  # validates: whole 32-byte hashes
            rows.append((seq, checkpoint.size, path))
        self._refuse_readonly()
        what = f"cannot store checkpoint {checkpoint.size} in the message log"
        with self._use(LogWriteError, what) as connection, _transaction(connection):
            previous = connection.execute("SELECT max(size) FROM checkpoints").fetchone()[0] or 0
            last_seq = connection.execute("SELECT max(seq) FROM records").fetchone()[0] or 0
            if checkpoint.size <= previous:
                raise LogWriteError(f"{what}: the log already has checkpoint {previous}")
            if checkpoint.size > last_seq:
                raise LogWriteError(f"{what}: the log has only {last_seq} records")
            if sorted(seq for seq, _, _ in rows) != list(range(previous + 1, checkpoint.size + 1)):
                raise LogWriteError(
                    f"{what}: paths must be given for exactly records {previous + 1} to {checkpoint.size}"
                )
            connection.execute(
                "INSERT INTO checkpoints (size, root, body, token, tsa, gen_time) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    checkpoint.size,
                    checkpoint.root,
                    checkpoint.body(),
                    checkpoint.token,
                    checkpoint.tsa,
                    format_time(checkpoint.gen_time),
                ),
            )
            connection.executemany(
                "INSERT INTO record_paths (seq, checkpoint_size, path) VALUES (?, ?, ?)", rows
            )

    # -- reading ---------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._use(LogReadError, f"cannot read {key!r} from the message log") as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def count(self) -> int:
        with self._use(LogReadError, "cannot count the message log's records") as connection:
            return int(connection.execute("SELECT count(*) FROM records").fetchone()[0])

    def last(self) -> LogRecord | None:
        with self._use(LogReadError, "cannot read the message log's last record") as connection:
            row = connection.execute(_SELECT_LAST).fetchone()
        return None if row is None else _record_from_row(row)

    def find(self, message_id: str) -> list[LogRecord]:
        """Every record of one message id (request and response), in log order."""
        with self._use(LogReadError, f"cannot search the message log for {message_id!r}") as connection:
            rows = connection.execute(_SELECT_MESSAGE, (message_id,)).fetchall()
        return [_record_from_row(row) for row in rows]

    def iter_records(self, start_seq: int = 1) -> Iterator[LogRecord]:
        """Records from ``start_seq`` on, in ``seq`` order, read a page at a time.

        A row that cannot be made into a record raises :class:`CorruptRecord` when
        reached; a missing ``seq`` is simply skipped here (verification notices the gap).
        """
        next_seq = start_seq
        while True:
            with self._use(LogReadError, "cannot read the message log") as connection:
                rows = connection.execute(_SELECT_PAGE, (next_seq, _PAGE_ROWS)).fetchall()
            for row in rows:
                yield _record_from_row(row)
            if len(rows) < _PAGE_ROWS:
                return
            next_seq = int(rows[-1][0]) + 1

    def last_seq(self) -> int:
        """The highest ``seq`` in the log; 0 when it is empty."""
        with self._use(LogReadError, "cannot read the message log's last record") as connection:
            value = connection.execute("SELECT max(seq) FROM records").fetchone()[0]
        return 0 if value is None else int(value)

    def logged_at(self, seq: int) -> dt.datetime | None:
        """When record ``seq`` was logged; None if there is no such record."""
        with self._use(LogReadError, f"cannot read record {seq} of the message log") as connection:
            row = connection.execute("SELECT logged_at FROM records WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return None
        try:
            return parse_time(row[0])
        except ValueError as exc:
            raise LogReadError(f"record {seq} has a damaged time: {exc}") from exc

    def leaf_hashes(self, upto: int, *, start: int = 1) -> list[bytes]:
        """The stored leaf hashes of records ``start..upto``, in order.

        Raises :class:`LogReadError` if one of those records is missing or its stored
        leaf hash is not 32 bytes.  Read a page at a time.
        """
        if isinstance(upto, bool) or not isinstance(upto, int) or isinstance(start, bool):
            raise ValueError("upto and start must be integers")
        if start < 1:
            raise ValueError("start must be at least 1")
        hashes: list[bytes] = []
        next_seq = start
        while next_seq <= upto:
            limit = min(_LEAF_PAGE_ROWS, upto - next_seq + 1)
            with self._use(LogReadError, "cannot read the message log's leaf hashes") as connection:
                rows = connection.execute(
                    "SELECT seq, leaf_hash FROM records WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (next_seq, upto, limit),
                ).fetchall()
            for seq, value in rows:
                if seq != next_seq:
                    raise LogReadError(f"record {next_seq} is missing from the message log")
                if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                    raise LogReadError(f"record {seq}'s stored leaf hash is damaged")
                hashes.append(value)
                next_seq += 1
            if len(rows) < limit:
                raise LogReadError(f"record {next_seq} is missing from the message log")
        return hashes

    def checkpoint_count(self) -> int:
        with self._use(LogReadError, "cannot count the message log's checkpoints") as connection:
            return int(connection.execute("SELECT count(*) FROM checkpoints").fetchone()[0])

    def last_checkpoint(self) -> Checkpoint | None:
        """The checkpoint covering the most records; :class:`CorruptCheckpoint` if it is damaged."""
        with self._use(LogReadError, "cannot read the message log's last checkpoint") as connection:
            row = connection.execute(_SELECT_LAST_CHECKPOINT).fetchone()
        return None if row is None else _checkpoint_from_row(row)

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, smallest first; :class:`CorruptCheckpoint` at the first damaged one."""
        with self._use(LogReadError, "cannot read the message log's checkpoints") as connection:
            rows = connection.execute(_SELECT_CHECKPOINTS).fetchall()
        return [_checkpoint_from_row(row) for row in rows]

    def record_path(self, seq: int) -> tuple[int, list[bytes]] | None:
        """``(checkpoint size, inclusion path)`` of record ``seq``; None if it has none yet."""
        with self._use(LogReadError, f"cannot read the path of record {seq}") as connection:
            row = connection.execute(
                "SELECT seq, checkpoint_size, path FROM record_paths WHERE seq = ?", (seq,)
            ).fetchone()
        return None if row is None else _path_from_row(row)[1:]

    def iter_record_paths(self) -> Iterator[tuple[int, int, list[bytes]]]:
        """Every stored ``(seq, checkpoint size, path)``, in ``seq`` order, a page at a time.

        A damaged row raises :class:`CorruptCheckpoint` when reached.
        """
        next_seq = -(2**63)  # from SQLite's smallest integer: a row moved below 1 is seen too
        while True:
            with self._use(LogReadError, "cannot read the message log's record paths") as connection:
                rows = connection.execute(
                    "SELECT seq, checkpoint_size, path FROM record_paths WHERE seq >= ? ORDER BY seq LIMIT ?",
                    (next_seq, _PAGE_ROWS),
                ).fetchall()
            for row in rows:
                yield _path_from_row(row)
            if len(rows) < _PAGE_ROWS:
                return
            next_seq = int(rows[-1][0]) + 1

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with _mapped(LogWriteError, "cannot close the message log"):
                self._connection.close()

    def __enter__(self) -> MessageLogStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------

    @contextmanager
    def _use(self, error: type[MessageLogError], what: str) -> Iterator[sqlite3.Connection]:
        """The connection, held under the lock, with its errors mapped to ``error``."""
        with self._lock:
            if self._closed:
                raise error(f"{what}: the log is closed")
            with _mapped(error, what):
                yield self._connection

    def _refuse_readonly(self) -> None:
        if self._readonly:
            raise LogWriteError(f"message log {self._path} is open read-only")


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE ... COMMIT``, rolled back on any failure, COMMIT's own included.

    IMMEDIATE takes the write lock up front, so the last seq read inside cannot change
    before the insert.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        # A failed COMMIT may already have ended the transaction; roll back only if open.
        if connection.in_transaction:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is the one to report
        raise


def _path_from_row(row: tuple[Any, ...]) -> tuple[int, int, list[bytes]]:
    seq, size, path = row
    if isinstance(size, bool) or not isinstance(size, int):
        raise CorruptCheckpoint(None, f"the path of record {seq} names no checkpoint size ({size!r})")
    try:
        return int(seq), size, decode_path(path)
    except ValueError as exc:
        raise CorruptCheckpoint(size, f"the stored path of record {seq} is damaged ({exc})") from exc


def _row_of(record: LogRecord) -> tuple[object, ...]:
    return (
        record.seq,
        record.direction.value,
        record.message_id,
        record.client,
        record.service,
        format_time(record.logged_at),
        record.status,
        record.header,
        record.body,
        record.signature,
        record.prev_hash,
        record.record_hash,
        record.ocsp,
        record.leaf_hash,
    )
