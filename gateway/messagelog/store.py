"""The message log on disk: one SQLite file, WAL journal, ``synchronous=FULL``.

Blocking code, meant for one writer thread (see :mod:`gateway.messagelog.writer`) plus
occasional readers.  One connection is shared under a lock, opened with
``check_same_thread=False`` so the thread that opens the store need not be the one that
writes.  ``append`` writes a whole batch in one ``BEGIN IMMEDIATE ... COMMIT``: one
fsync per batch, and either every record of the batch is durable or none is.

Besides the records (each with its Merkle leaf hash, computed at append time), the file
holds the timestamped checkpoints and every record's inclusion path to the checkpoint
that first covered it; :meth:`MessageLogStore.add_checkpoint` writes a checkpoint (with
its owner's signature and that signer's OCSP response) and the paths of its batch in
one transaction.  Inclusion and consistency proofs for any tree size are computed from
the stored leaf hashes (:meth:`~MessageLogStore.inclusion_proof`,
:meth:`~MessageLogStore.consistency_proof`).  The ``globalconf`` table keeps every
signed global configuration the server adopted
(:meth:`~MessageLogStore.record_globalconf`), so that an evidence container can carry
the one in force at any moment (:meth:`~MessageLogStore.globalconf_at`).

Bodies are kept as the store's :class:`~gateway.messagelog.record.BodyPolicy` decides
at append time: ``inline`` in the ``body`` column; ``blob`` in the content-addressed
blob store beside the log (``<log folder>/blobs``, one log per folder), written and
fsynced inside the append's transaction, before its COMMIT, with the row holding the
digest (``body_blob``); ``omitted`` not at all.  Readers return a blob record with its
body read back and hash-checked; a missing or changed blob makes that record a
:class:`CorruptRecord`.

Records leave the file only after they are archived (:mod:`gateway.messagelog.archive`):
:meth:`MessageLogStore.prune_records` deletes the oldest ones but keeps each one's leaf
hash (table ``pruned_leaves``), so checkpoints, inclusion and consistency proofs over
the whole tree still work, and the hash of the last one removed (``prune_horizon``),
from which the chain of the remaining records continues.  Blobs that only removed
records used are queued (``blob_gc``) and deleted by :meth:`MessageLogStore.collect_blobs`
once no remaining record refers to them.  The table ``archives`` lists the archive
files written.

``sqlite3`` errors do not leave this module: writes fail with :class:`LogWriteError`,
reads with :class:`LogReadError`, opening with :class:`LogOpenError`.  Auditors open a
file with :meth:`MessageLogStore.open_readonly`, which never creates or changes it.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from core.clock import require_utc
from gateway.database import (
    Database,
    DatabaseErrors,
    DatabaseInUse,
    advisory_key,
    connect_postgres,
    connect_sqlite,
    redact_url,
)
from gateway.messagelog.blobs import BlobCorrupt, BlobError, BlobMissing, BlobStore, body_digest, check_digest
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
    BodyPolicy,
    Direction,
    LogRecord,
    NewRecord,
    format_time,
    parse_time,
)
from trust import merkle
from trust.globalconf import MAX_GLOBALCONF_BYTES

__all__ = [
    "MessageLogStore",
    "PostgresLogShard",
    "LogLocation",
    "BodyBlobs",
    "list_shards",
    "ArchiveEntry",
    "BLOB_DIR_NAME",
    "default_blob_root",
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
#: ``wal_autocheckpoint_pages`` of connections whose WAL the writer checkpoints itself.
WAL_SAFETY_NET_PAGES = 10_000
#: Bounds on the key/value table (the largest values are CA certificate bundles in PEM).
MAX_META_KEY_LENGTH = 255  # characters
MAX_META_VALUE_LENGTH = 4 * 1024 * 1024  # characters
#: Rows fetched per query while iterating, so a reader never holds the lock for long.
_PAGE_ROWS = 256
#: Leaf hashes (32 bytes each) fetched per query.
_LEAF_PAGE_ROWS = 16384
#: The blob store's folder, beside the log file.
BLOB_DIR_NAME = "blobs"
#: Archived tables and the column that orders them, for :meth:`MessageLogStore.export_rows`.
_EXPORT_QUERIES = {
    "records": "SELECT * FROM records WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
    "record_paths": "SELECT * FROM record_paths WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
    "checkpoints": "SELECT * FROM checkpoints WHERE size >= ? AND size <= ? ORDER BY size LIMIT ?",
}
_EXPORT_KEYS = {"records": "seq", "record_paths": "seq", "checkpoints": "size"}

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
        leaf_hash BLOB NOT NULL,
        body_storage TEXT NOT NULL DEFAULT 'inline',
        body_blob TEXT
    )""",
    "CREATE INDEX records_message_id ON records (message_id)",
    # For the auditor API's searches by time, client and service.
    "CREATE INDEX records_logged_at ON records (logged_at)",
    "CREATE INDEX records_client ON records (client)",
    "CREATE INDEX records_service ON records (service)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE checkpoints (
        size INTEGER PRIMARY KEY,
        root BLOB NOT NULL,
        body BLOB NOT NULL,
        token BLOB NOT NULL,
        tsa TEXT NOT NULL,
        gen_time TEXT NOT NULL,
        signature TEXT NOT NULL,
        signer_ocsp BLOB
    )""",
    """CREATE TABLE record_paths (
        seq INTEGER PRIMARY KEY,
        checkpoint_size INTEGER NOT NULL,
        path BLOB NOT NULL
    )""",
    # Every signed global configuration the server adopted: an auditor verifies a record
    # against the document in force when it was logged, with only the configuration anchor.
    """CREATE TABLE globalconf (
        serial INTEGER PRIMARY KEY,
        document BLOB NOT NULL,
        generated_at TEXT,
        expires_at TEXT
    )""",
    "CREATE INDEX records_body_blob ON records (body_blob) WHERE body_blob IS NOT NULL",
    # Records archived and removed from this file: their leaf hashes (the tree stays whole)
    # and, in one row, the last one removed and its record_hash (the chain goes on from it).
    "CREATE TABLE pruned_leaves (seq INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL)",
    """CREATE TABLE prune_horizon (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        through_seq INTEGER NOT NULL,
        record_hash BLOB NOT NULL
    )""",
    "CREATE TABLE blob_gc (digest TEXT PRIMARY KEY)",
    """CREATE TABLE archives (
        first_seq INTEGER PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        file_name TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        frontier BLOB NOT NULL
    )""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)


def _postgres_schema() -> tuple[str, ...]:
    """:data:`_SCHEMA` for PostgreSQL: the same tables, typed for it, plus two of its own.

    Blob bodies live in the table ``blobs`` (replicas share no folder), and the schema
    version in ``log_schema`` (PostgreSQL has no ``user_version``).
    """
    statements = [
        # Text compares bytewise, as in SQLite, whatever the database's default collation.
        statement.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA").replace(" TEXT", ' TEXT COLLATE "C"')
        for statement in _SCHEMA
        if not statement.startswith("PRAGMA")
    ]
    return (
        *statements,
        "CREATE TABLE blobs (digest TEXT PRIMARY KEY, body BYTEA NOT NULL)",
        "CREATE TABLE log_schema (version INTEGER NOT NULL)",
        f"INSERT INTO log_schema (version) VALUES ({SCHEMA_VERSION})",  # noqa: S608 (a constant)
    )


# Queries spelled out in full (no string building), columns in _record_from_row's order.
_INSERT = (
    "INSERT INTO records (seq, direction, message_id, client, service, logged_at, status, header, body,"
    " signature, prev_hash, record_hash, ocsp, leaf_hash, body_storage, body_blob)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_LAST = (
    "SELECT seq, direction, message_id, client, service, logged_at, status, header, body, signature,"
    " prev_hash, record_hash, ocsp, body_storage, body_blob FROM records ORDER BY seq DESC LIMIT 1"
)
_SELECT_MESSAGE = (
    "SELECT seq, direction, message_id, client, service, logged_at, status, header, body, signature,"
    " prev_hash, record_hash, ocsp, body_storage, body_blob FROM records WHERE message_id = ? ORDER BY seq"
)
_SELECT_CHECKPOINTS = (
    "SELECT size, root, body, token, tsa, gen_time, signature, signer_ocsp FROM checkpoints ORDER BY size"
)
_SELECT_LAST_CHECKPOINT = (
    "SELECT size, root, body, token, tsa, gen_time, signature, signer_ocsp FROM checkpoints"
    " ORDER BY size DESC LIMIT 1"
)
_SELECT_CHECKPOINT_COVERING = (
    "SELECT size, root, body, token, tsa, gen_time, signature, signer_ocsp FROM checkpoints"
    " WHERE size >= ? ORDER BY size LIMIT 1"
)
_SELECT_PAGE = (
    "SELECT seq, direction, message_id, client, service, logged_at, status, header, body, signature,"
    " prev_hash, record_hash, ocsp, body_storage, body_blob FROM records WHERE seq >= ? ORDER BY seq LIMIT ?"
)


@contextmanager
def _mapped(error: type[MessageLogError], what: str) -> Iterator[None]:
    """Turn database and OS errors into this package's ``error``, saying what was being done."""
    try:
        yield
    except DatabaseErrors as exc:
        raise error(f"{what}: {' '.join(str(exc).split())}") from exc
    except OSError as exc:
        raise error(f"{what}: {exc}") from exc


def _record_from_row(row: tuple[Any, ...], blobs: BodyBlobs) -> LogRecord:
    seq, direction, message_id, client, service, logged_at, status, header, body, signature = row[:10]
    prev_hash, record_hash, ocsp, body_storage, body_blob = row[10:]
    if body_storage == "blob":
        body = _blob_body(seq, message_id, body_blob, blobs)
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
            body_storage=body_storage,
        )
    except (ValueError, TypeError) as exc:
        shown = message_id if isinstance(message_id, str) else "unknown"
        raise CorruptRecord(seq, shown, f"the stored row is not a well-formed record ({exc})") from exc


def _blob_body(seq: int, message_id: object, digest: object, blobs: BodyBlobs) -> bytes:
    """The body of blob record ``seq``, read back and hash-checked; :class:`CorruptRecord` if not."""
    shown = message_id if isinstance(message_id, str) else "unknown"
    try:
        return blobs.get(check_digest(digest))
    except ValueError as exc:
        raise CorruptRecord(seq, shown, f"its body blob reference is damaged ({exc})") from exc
    except BlobError as exc:
        raise CorruptRecord(seq, shown, str(exc)) from exc


_HEX = "0123456789abcdef"


def default_blob_root(log_path: Path) -> Path:
    """Where the blobs of the log at ``log_path`` live: ``blobs`` in the same folder."""
    return Path(log_path).parent / BLOB_DIR_NAME


@dataclass(frozen=True)
class ArchiveEntry:
    """An archive file written for records ``first_seq..last_seq`` (a row of ``archives``)."""

    first_seq: int
    last_seq: int
    file_name: str  # inside the archive folder; no path
    sha256: str  # of the whole file, lowercase hex
    created_at: dt.datetime  # UTC
    #: ``trust.merkle.CompactRange.to_bytes()`` over the leaves of records 1..last_seq.
    frontier: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("first_seq", "last_seq"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        if self.last_seq < self.first_seq:
            raise ValueError("an archive's last_seq must not be before its first_seq")
        name = self.file_name
        if (
            not isinstance(name, str)
            or not 1 <= len(name) <= 255
            or "/" in name
            or "\\" in name
            or name.startswith(".")
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
        ):
            raise ValueError(f"an archive file name must be a plain file name, not {name!r}")
        if not isinstance(self.sha256, str) or len(self.sha256) != 64 or self.sha256.strip(_HEX):
            raise ValueError("sha256 must be 64 lowercase hex characters")
        if not isinstance(self.created_at, dt.datetime):
            raise ValueError("created_at must be a datetime")
        require_utc(self.created_at, "created_at")
        if not isinstance(self.frontier, bytes) or not self.frontier:
            raise ValueError("frontier must be non-empty bytes")


def _checkpoint_from_row(row: tuple[Any, ...]) -> Checkpoint:
    size, root, body, token, tsa, gen_time, signature, signer_ocsp = row
    shown = size if isinstance(size, int) and not isinstance(size, bool) else None
    try:
        checkpoint = Checkpoint.from_stored(
            body,
            token=token,
            tsa=tsa,
            gen_time=parse_time(gen_time),
            signature=signature,
            signer_ocsp=signer_ocsp,
        )
    except (ValueError, TypeError) as exc:
        raise CorruptCheckpoint(shown, f"the stored row is not a well-formed checkpoint ({exc})") from exc
    if checkpoint.size != size:
        raise CorruptCheckpoint(shown, f"its body names size {checkpoint.size}, its row size {size!r}")
    if checkpoint.root != root:
        raise CorruptCheckpoint(shown, "its body names another root than its row")
    return checkpoint


#: A shard's name: it becomes part of a PostgreSQL schema name (``messagelog_<shard>``).
_SHARD_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,39}")
#: The schema of each shard is this prefix and the shard's name.
SHARD_SCHEMA_PREFIX = "messagelog_"


@dataclass(frozen=True)
class PostgresLogShard:
    """One replica's message log in a PostgreSQL database shared by replicas of a server.

    Each replica writes its own shard, in the schema ``messagelog_<shard>``: its own
    records, hash chain, Merkle tree, checkpoints and body blobs, exactly what one
    SQLite file holds.  An auditor verifies every shard (:func:`list_shards`).
    """

    url: str  # postgresql://...
    shard: str

    def __post_init__(self) -> None:
        if not isinstance(self.shard, str) or not _SHARD_NAME.fullmatch(self.shard):
            raise ValueError(
                f"a message-log shard is 1 to 40 of a-z, 0-9 and _, starting with a letter or digit;"
                f" not {self.shard!r}"
            )

    @property
    def schema(self) -> str:
        return SHARD_SCHEMA_PREFIX + self.shard

    def __str__(self) -> str:
        return f"shard {self.shard} of {redact_url(self.url)}"


#: Where a message log is: an SQLite file, or one shard in PostgreSQL.
LogLocation = Path | PostgresLogShard


def list_shards(url: str) -> list[str]:
    """The names of the message-log shards in the PostgreSQL database at ``url``, sorted."""
    what = f"cannot list the message-log shards in {redact_url(url)}"
    with _mapped(LogOpenError, what):
        database = connect_postgres(url, readonly=True)
        try:
            rows = database.execute(
                "SELECT table_schema FROM information_schema.tables"
                " WHERE table_name = 'log_schema' AND left(table_schema, ?) = ? ORDER BY table_schema",
                (len(SHARD_SCHEMA_PREFIX), SHARD_SCHEMA_PREFIX),
            ).fetchall()
        finally:
            database.close()
    return [row[0][len(SHARD_SCHEMA_PREFIX) :] for row in rows]


class BodyBlobs(Protocol):
    """Where a log's ``blob`` bodies are read back from (a folder, or a PostgreSQL table)."""

    def get(self, digest: str) -> bytes: ...


class _TableBlobs:
    """The ``blobs`` table of a PostgreSQL shard, read through its store's connection."""

    def __init__(self, store: MessageLogStore) -> None:
        self._store = store

    def get(self, digest: str) -> bytes:
        digest = check_digest(digest)
        with self._store._use(LogReadError, f"cannot read body blob {digest}") as connection:
            row = connection.execute("SELECT body FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise BlobMissing(digest)
        body = bytes(row[0])
        if body_digest(body) != digest:
            raise BlobCorrupt(digest)
        return body


class MessageLogStore:
    """A message log: an SQLite file, or a shard in PostgreSQL.  Build it with
    :meth:`open` or :meth:`open_readonly`."""

    def __init__(
        self,
        connection: Database,
        location: LogLocation,
        *,
        readonly: bool,
        blobs: BlobStore | None = None,
        body_policy: BodyPolicy | None = None,
        busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self._connection = connection
        self._busy_timeout_s = busy_timeout_seconds
        self._location = location
        self._readonly = readonly
        self._files: BlobStore | None = None
        self._blobs: BodyBlobs
        if isinstance(location, PostgresLogShard):
            self._blobs = _TableBlobs(self)
        else:
            self._files = blobs if blobs is not None else BlobStore(default_blob_root(location))
            self._blobs = self._files
        self._body_policy = body_policy if body_policy is not None else BodyPolicy()
        self._lock = threading.Lock()
        self._write_lock = _shared_write_lock(location)
        self._closed = False

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        location: LogLocation,
        *,
        busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS,
        body_policy: BodyPolicy | None = None,
        blob_root: Path | None = None,
        wal_autocheckpoint_pages: int = 1000,
        exclusive: bool = False,
    ) -> MessageLogStore:
        """Open ``location`` for writing, creating the file (or shard) and schema if it does not exist.

        ``busy_timeout_seconds`` bounds how long a write waits for a lock held by another
        connection before it fails with :class:`LogWriteError`.  ``body_policy`` decides
        how each appended record's body is kept (default: :class:`BodyPolicy`'s defaults);
        ``blob_root`` is the blob store's folder (default: :func:`default_blob_root`; a
        PostgreSQL shard keeps its blobs in a table).
        ``wal_autocheckpoint_pages``: SQLite copies the WAL into the file inside the commit
        that passes this many pages (1000, SQLite's default), which then takes as long as
        writing and syncing them.  A connection whose owner calls :meth:`checkpoint_wal`
        itself (:class:`~gateway.messagelog.writer.MessageLogWriter` does, on a thread of
        its own) raises it, so that SQLite's copy is only a safety net.
        ``exclusive``: on PostgreSQL, hold the shard's writer lock while the connection
        lives, so that a second replica configured with the same shard cannot write it
        (:class:`LogOpenError` saying so); an SQLite file has one server by construction.
        """
        if busy_timeout_seconds < 0:
            raise ValueError("busy_timeout_seconds must not be negative")
        if isinstance(wal_autocheckpoint_pages, bool) or not isinstance(wal_autocheckpoint_pages, int):
            raise ValueError("wal_autocheckpoint_pages must be an integer (0: never)")
        if isinstance(location, PostgresLogShard):
            with _mapped(LogOpenError, f"cannot open message log {location}"):
                try:
                    database = connect_postgres(
                        location.url,
                        schema=location.schema,
                        create_schema=True,
                        timeout_s=busy_timeout_seconds,
                        session_lock=f"messagelog writer {location.schema}" if exclusive else None,
                    )
                except DatabaseInUse as exc:
                    raise LogOpenError(
                        f"message log {location} is being written by another process: every replica"
                        " needs a shard of its own ([messagelog] shard or shard_env)"
                    ) from exc
            try:
                with _mapped(LogOpenError, f"cannot open message log {location}"):
                    cls._ensure_postgres_schema(database, location)
            except BaseException:
                database.close()
                raise
            return cls(
                database,
                location,
                readonly=False,
                body_policy=body_policy,
                busy_timeout_seconds=busy_timeout_seconds,
            )
        path = Path(location)
        with _mapped(LogOpenError, f"cannot open message log {path}"):
            database = connect_sqlite(path, timeout_s=busy_timeout_seconds)
        try:
            with _mapped(LogOpenError, f"cannot open message log {path}"):
                mode = database.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LogOpenError(f"message log {path} cannot use a WAL journal (got {mode!r})")
                # FULL: the WAL is synced at every commit, so a commit survives power loss.
                database.execute("PRAGMA synchronous=FULL")
                database.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint_pages)}")
                cls._ensure_schema(database, path)
        except BaseException:
            database.close()
            raise
        blobs = BlobStore(blob_root if blob_root is not None else default_blob_root(path))
        return cls(
            database,
            path,
            readonly=False,
            blobs=blobs,
            body_policy=body_policy,
            busy_timeout_seconds=busy_timeout_seconds,
        )

    @classmethod
    def open_readonly(cls, location: LogLocation, *, blob_root: Path | None = None) -> MessageLogStore:
        """Open an existing log for reading only; never creates or changes it (nor its blobs)."""
        if isinstance(location, PostgresLogShard):
            with _mapped(LogOpenError, f"cannot open message log {location}"):
                database = connect_postgres(location.url, schema=location.schema, readonly=True)
            try:
                with _mapped(LogOpenError, f"cannot read message log {location}"):
                    version = _postgres_version(database)
                if version is None:
                    raise LogFileMissing(f"message log {location} does not exist")
                if version != SCHEMA_VERSION:
                    raise LogOpenError(
                        f"{location} is not a message log of schema version {SCHEMA_VERSION}"
                        f" (found {version})"
                    )
            except BaseException:
                database.close()
                raise
            return cls(database, location, readonly=True)
        path = Path(location)
        if not path.is_file():
            raise LogFileMissing(f"message log {path} does not exist")
        with _mapped(LogOpenError, f"cannot open message log {path}"):
            database = connect_sqlite(path, readonly=True)
        try:
            with _mapped(LogOpenError, f"cannot read message log {path}"):
                version = database.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise LogOpenError(
                    f"{path} is not a message log of schema version {SCHEMA_VERSION} (found {version})"
                )
        except BaseException:
            database.close()
            raise
        blobs = BlobStore(blob_root if blob_root is not None else default_blob_root(path))
        return cls(database, path, readonly=True, blobs=blobs)

    @staticmethod
    def _ensure_schema(connection: Database, path: Path) -> None:
        with _transaction(connection, _shared_write_lock(path)):
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

    @staticmethod
    def _ensure_postgres_schema(connection: Database, location: PostgresLogShard) -> None:
        # Connections of several processes may open a new shard at once: the first one in
        # creates the tables, under a lock named after the schema, the others find them.
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(?)", (advisory_key(location.schema),))
            version = _postgres_version(connection)
            if version == SCHEMA_VERSION:
                return
            if version is not None:
                raise LogOpenError(
                    f"message log {location} has schema version {version}; this server knows {SCHEMA_VERSION}"
                )
            tables = connection.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ?", (location.schema,)
            ).fetchone()[0]
            if tables:
                raise LogOpenError(
                    f"schema {location.schema} of {redact_url(location.url)} is not a message log"
                )
            for statement in _postgres_schema():
                connection.execute(statement)

    # -- properties ------------------------------------------------------------------

    @property
    def location(self) -> LogLocation:
        return self._location

    @property
    def path(self) -> Path:
        """The SQLite file; a PostgreSQL shard has none (:attr:`location` names it)."""
        if isinstance(self._location, PostgresLogShard):
            raise AttributeError(f"message log {self._location} is not a file")
        return self._location

    @property
    def readonly(self) -> bool:
        return self._readonly

    def durability(self) -> dict[str, str]:
        """The settings this connection really commits with, read back from the database."""
        with self._use(LogReadError, "cannot read the log's settings") as connection:
            if connection.is_postgres:
                commit = connection.execute("SHOW synchronous_commit").fetchone()[0]
                fsync = connection.execute("SHOW fsync").fetchone()[0]
                return {"database": "postgresql", "synchronous_commit": str(commit), "fsync": str(fsync)}
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            level = connection.execute("PRAGMA synchronous").fetchone()[0]
        names = {0: "off", 1: "normal", 2: "full", 3: "extra"}
        return {"journal_mode": str(mode).lower(), "synchronous": names.get(level, str(level))}

    # -- writing ---------------------------------------------------------------------

    def append(self, records: Sequence[NewRecord]) -> list[LogRecord]:
        """Store ``records`` after the last one, in one transaction; all or nothing.

        Sequence numbers and the chain continue from what the file holds at the time of
        the write (read inside the transaction), not from a cached value.

        Each record's body is kept as the store's body policy decides; blobs are written
        and fsynced inside the transaction, before it commits (so a concurrent
        :meth:`collect_blobs` cannot delete a blob a committing record relies on).
        """
        for record in records:
            if not isinstance(record, NewRecord):
                raise TypeError(f"append takes NewRecord objects, not {type(record).__name__}")
        if not records:
            return []
        self._refuse_readonly()
        records = [self._body_policy.apply(record) for record in records]
        what = f"cannot write {len(records)} record(s) to the message log"
        with (
            self._use(LogWriteError, what) as connection,
            _transaction(connection, self._write_lock, self._busy_timeout_s),
        ):
            row = connection.execute(
                "SELECT seq, record_hash FROM records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev_hash = _horizon(connection) if row is None else row
            if not isinstance(prev_hash, bytes) or len(prev_hash) != HASH_SIZE:
                raise LogWriteError(f"the log's last record ({seq}) is damaged; refusing to extend it")
            stored: list[LogRecord] = []
            leaves: list[bytes] = []
            for record in records:
                seq += 1
                placed, leaf = LogRecord.place_with_leaf_hash(seq, prev_hash, record)
                prev_hash = placed.record_hash
                stored.append(placed)
                leaves.append(leaf)
            digests: list[str | None] = []
            for placed in stored:
                blob = placed.body_storage == "blob"
                digests.append(self._put_blob(connection, placed.body, what) if blob else None)
            connection.executemany(
                _INSERT,
                [
                    _row_of(placed, digest, leaf)
                    for placed, digest, leaf in zip(stored, digests, leaves, strict=True)
                ],
            )
        return stored

    def checkpoint_wal(self) -> tuple[int, int]:
        """Copy what the WAL holds into the file without waiting for readers or writers
        (SQLite's PASSIVE checkpoint); returns the WAL's frames and those now copied.
        PostgreSQL checkpoints its own WAL: there it does nothing and returns ``(0, 0)``."""
        self._refuse_readonly()
        with self._use(LogWriteError, "cannot checkpoint the message log's WAL") as connection:
            if connection.is_postgres:
                return 0, 0
            _, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames), int(copied)

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (replacing an earlier value), durably."""
        if not isinstance(key, str) or not key or len(key) > MAX_META_KEY_LENGTH:
            raise ValueError(f"a meta key must be 1 to {MAX_META_KEY_LENGTH} characters")
        if not isinstance(value, str) or len(value) > MAX_META_VALUE_LENGTH:
            raise ValueError(f"a meta value must be a string of at most {MAX_META_VALUE_LENGTH} characters")
        self._refuse_readonly()
        with self._use(LogWriteError, f"cannot store {key!r} in the message log") as connection:
            with _transaction(connection, self._write_lock, self._busy_timeout_s):
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
        with (
            self._use(LogWriteError, what) as connection,
            _transaction(connection, self._write_lock, self._busy_timeout_s),
        ):
            previous = connection.execute("SELECT max(size) FROM checkpoints").fetchone()[0] or 0
            last_seq = (
                connection.execute("SELECT max(seq) FROM records").fetchone()[0] or _horizon(connection)[0]
            )
            if checkpoint.size <= previous:
                raise LogWriteError(f"{what}: the log already has checkpoint {previous}")
            if checkpoint.size > last_seq:
                raise LogWriteError(f"{what}: the log has only {last_seq} records")
            if sorted(seq for seq, _, _ in rows) != list(range(previous + 1, checkpoint.size + 1)):
                raise LogWriteError(
                    f"{what}: paths must be given for exactly records {previous + 1} to {checkpoint.size}"
                )
            connection.execute(
                "INSERT INTO checkpoints (size, root, body, token, tsa, gen_time, signature, signer_ocsp)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    checkpoint.size,
                    checkpoint.root,
                    checkpoint.body(),
                    checkpoint.token,
                    checkpoint.tsa,
                    format_time(checkpoint.gen_time),
                    checkpoint.signature,
                    checkpoint.signer_ocsp,
                ),
            )
            connection.executemany(
                "INSERT INTO record_paths (seq, checkpoint_size, path) VALUES (?, ?, ?)", rows
            )

    def record_globalconf(
        self, serial: int, document: bytes, generated_at: dt.datetime, expires_at: dt.datetime
    ) -> None:
        """Keep the signed global configuration ``document`` (serial ``serial``), durably.

        Called for every document the server adopts; a serial already kept stays as it
        is (a restart adopts the persisted document again).
        """
        if isinstance(serial, bool) or not isinstance(serial, int) or serial < 1:
            raise ValueError("a global configuration serial is a positive integer")
        if not isinstance(document, bytes) or not document or len(document) > MAX_GLOBALCONF_BYTES:
            raise ValueError(f"a global configuration document is 1 to {MAX_GLOBALCONF_BYTES} bytes")
        self._refuse_readonly()
        generated, expires = format_time(generated_at), format_time(expires_at)
        what = f"cannot keep global configuration {serial} in the message log"
        with (
            self._use(LogWriteError, what) as connection,
            _transaction(connection, self._write_lock, self._busy_timeout_s),
        ):
            connection.execute(
                "INSERT INTO globalconf (serial, document, generated_at, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (serial) DO NOTHING",
                (serial, document, generated, expires),
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
        return None if row is None else _record_from_row(row, self._blobs)

    def find(self, message_id: str) -> list[LogRecord]:
        """Every record of one message id (request and response), in log order."""
        with self._use(LogReadError, f"cannot search the message log for {message_id!r}") as connection:
            rows = connection.execute(_SELECT_MESSAGE, (message_id,)).fetchall()
        return [_record_from_row(row, self._blobs) for row in rows]

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
                yield _record_from_row(row, self._blobs)
            if len(rows) < _PAGE_ROWS:
                return
            next_seq = int(rows[-1][0]) + 1

    def last_seq(self) -> int:
        """The highest ``seq`` in the log (archived and removed ones count); 0 when it is empty."""
        with self._use(LogReadError, "cannot read the message log's last record") as connection:
            value = connection.execute("SELECT max(seq) FROM records").fetchone()[0]
            return _horizon(connection)[0] if value is None else int(value)

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

        Records archived and removed from the file count: their leaf hashes were kept.
        Raises :class:`LogReadError` if one of those records is missing or its stored
        leaf hash is not 32 bytes.  Read a page at a time.
        """
        if isinstance(upto, bool) or not isinstance(upto, int) or isinstance(start, bool):
            raise ValueError("upto and start must be integers")
        if start < 1:
            raise ValueError("start must be at least 1")
        hashes: list[bytes] = []
        next_seq = start
        with self._use(LogReadError, "cannot read the message log's leaf hashes") as connection:
            pruned = _horizon(connection)[0]
        while next_seq <= upto:
            if next_seq <= pruned:
                query = (
                    "SELECT seq, leaf_hash FROM pruned_leaves"
                    " WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"
                )
                last = min(upto, pruned)
            else:
                query = "SELECT seq, leaf_hash FROM records WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"
                last = upto
            limit = min(_LEAF_PAGE_ROWS, last - next_seq + 1)
            with self._use(LogReadError, "cannot read the message log's leaf hashes") as connection:
                rows = connection.execute(query, (next_seq, last, limit)).fetchall()
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

    def checkpoint_covering(self, seq: int) -> Checkpoint | None:
        """The first (smallest) checkpoint that covers record ``seq``; None if none does yet."""
        with self._use(LogReadError, f"cannot read the checkpoint of record {seq}") as connection:
            row = connection.execute(_SELECT_CHECKPOINT_COVERING, (seq,)).fetchone()
        return None if row is None else _checkpoint_from_row(row)

    def inclusion_proof(self, seq: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of record ``seq`` in the tree of records 1..``tree_size``.

        Computed from the stored leaf hashes (O(tree_size)); a verifier recomputes the
        leaf from the record, so a damaged stored hash only makes the proof fail.
        """
        for name, value in (("seq", seq), ("tree_size", tree_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer")
        if not 1 <= seq <= tree_size:
            raise ValueError(f"record {seq} is not inside a tree of {tree_size} records")
        return merkle.inclusion_proof(seq - 1, self.leaf_hashes(tree_size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``old_size`` records to that of ``new_size``.

        Computed from the stored leaf hashes (O(new_size)).
        """
        for name, value in (("old_size", old_size), ("new_size", new_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer")
        if not 0 <= old_size <= new_size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size} records")
        return merkle.consistency_proof(old_size, self.leaf_hashes(new_size))

    def globalconf_at(self, when: dt.datetime) -> bytes | None:
        """The signed global configuration in force at ``when``: the highest serial generated by then."""
        entry = self.globalconf_entry_at(when)
        return None if entry is None else entry[1]

    def globalconf_entry_at(self, when: dt.datetime) -> tuple[int, bytes] | None:
        """``(serial, document)`` of :meth:`globalconf_at`; None when no document was kept by then."""
        with self._use(LogReadError, "cannot read the message log's global configurations") as connection:
            row = connection.execute(
                "SELECT serial, document FROM globalconf WHERE generated_at <= ?"
                " ORDER BY serial DESC LIMIT 1",
                (format_time(when),),
            ).fetchone()
        if row is None:
            return None
        serial, document = row
        if isinstance(serial, bool) or not isinstance(serial, int) or not isinstance(document, bytes):
            raise LogReadError(f"the kept global configuration {serial!r} is damaged")
        return serial, document

    def globalconf_documents(self) -> list[tuple[int, bytes, dt.datetime]]:
        """Every kept ``(serial, document, generated_at)``, oldest serial first."""
        with self._use(LogReadError, "cannot read the message log's global configurations") as connection:
            rows = connection.execute(
                "SELECT serial, document, generated_at FROM globalconf ORDER BY serial"
            ).fetchall()
        kept: list[tuple[int, bytes, dt.datetime]] = []
        for serial, document, generated_at in rows:
            if (
                not isinstance(serial, int)
                or not isinstance(document, bytes)
                or not isinstance(generated_at, str)
            ):
                raise LogReadError(f"the kept global configuration {serial!r} is damaged")
            kept.append((serial, document, parse_time(generated_at)))
        return kept

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

    # -- bodies, archives and retention ----------------------------------------------

    @property
    def blobs(self) -> BodyBlobs:
        """Where this log's ``blob`` bodies are read back from."""
        return self._blobs

    @property
    def body_policy(self) -> BodyPolicy:
        return self._body_policy

    def prune_horizon(self) -> tuple[int, bytes]:
        """``(seq, record_hash)`` of the last record archived and removed from this file;
        ``(0, GENESIS_HASH)`` when none was.  The remaining records' chain continues from it."""
        with self._use(
            LogReadError, "cannot read which records were removed from the message log"
        ) as connection:
            return _horizon(connection)

    def archives(self) -> list[ArchiveEntry]:
        """Every archive file written for this log, oldest first."""
        with self._use(LogReadError, "cannot read the message log's archives") as connection:
            rows = connection.execute(
                "SELECT first_seq, last_seq, file_name, sha256, created_at, frontier FROM archives"
                " ORDER BY first_seq"
            ).fetchall()
        entries: list[ArchiveEntry] = []
        for first_seq, last_seq, file_name, sha256, created_at, frontier in rows:
            try:
                entries.append(
                    ArchiveEntry(first_seq, last_seq, file_name, sha256, parse_time(created_at), frontier)
                )
            except (ValueError, TypeError) as exc:
                raise LogReadError(f"the log's entry of archive {file_name!r} is damaged ({exc})") from exc
        return entries

    def add_archive(self, entry: ArchiveEntry) -> None:
        """Note that ``entry``'s file was written.  It must start right after the last
        archive (at record 1 for the first) and end at a checkpoint."""
        if not isinstance(entry, ArchiveEntry):
            raise TypeError(f"add_archive takes an ArchiveEntry, not {type(entry).__name__}")
        self._refuse_readonly()
        what = f"cannot note archive {entry.file_name} in the message log"
        with (
            self._use(LogWriteError, what) as connection,
            _transaction(connection, self._write_lock, self._busy_timeout_s),
        ):
            archived = connection.execute("SELECT max(last_seq) FROM archives").fetchone()[0] or 0
            if entry.first_seq != archived + 1:
                raise LogWriteError(f"{what}: it starts at record {entry.first_seq}, not {archived + 1}")
            ends = connection.execute(
                "SELECT 1 FROM checkpoints WHERE size = ?", (entry.last_seq,)
            ).fetchone()
            if ends is None:
                raise LogWriteError(f"{what}: no checkpoint ends at record {entry.last_seq}")
            connection.execute(
                "INSERT INTO archives (first_seq, last_seq, file_name, sha256, created_at, frontier)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.first_seq,
                    entry.last_seq,
                    entry.file_name,
                    entry.sha256,
                    format_time(entry.created_at),
                    entry.frontier,
                ),
            )

    def export_rows(
        self, table: Literal["records", "record_paths", "checkpoints"], first: int, last: int
    ) -> Iterator[dict[str, Any]]:
        """Every column of the rows of ``table`` keyed ``first..last`` (``seq``, or ``size`` for
        checkpoints), in order, a page at a time: what an archive keeps, whatever columns
        the schema has.  A ``blob`` record's ``body`` column is empty: its body is in
        :attr:`blobs` under ``body_blob``."""
        query, key = _EXPORT_QUERIES[table], _EXPORT_KEYS[table]
        next_key = first
        while next_key <= last:
            with self._use(LogReadError, f"cannot read the message log's {table}") as connection:
                cursor = connection.execute(query, (next_key, last, _PAGE_ROWS))
                names = [column[0] for column in cursor.description]
                rows = cursor.fetchall()
            for row in rows:
                yield dict(zip(names, row, strict=True))
            if len(rows) < _PAGE_ROWS:
                return
            next_key = int(rows[-1][names.index(key)]) + 1

    def first_logged_since(self, when: dt.datetime, *, after_seq: int = 0) -> int | None:
        """The first record after ``after_seq`` logged at ``when`` or later; None if none is."""
        with self._use(LogReadError, "cannot read the message log's times") as connection:
            value = connection.execute(
                "SELECT min(seq) FROM records WHERE seq > ? AND logged_at >= ?",
                (after_seq, format_time(when)),
            ).fetchone()[0]
        return None if value is None else int(value)

    def prune_records(self, through_seq: int) -> int:
        """Remove the records up to ``through_seq`` from this file, in one transaction;
        return how many were removed.

        Only archived records may go (``through_seq`` must not pass the last archive).
        Their leaf hashes stay (``pruned_leaves``), the last one's record hash becomes the
        horizon the chain continues from, their paths go with them, and the blobs they
        used are queued for :meth:`collect_blobs`.
        """
        if isinstance(through_seq, bool) or not isinstance(through_seq, int):
            raise ValueError("through_seq must be an integer")
        self._refuse_readonly()
        what = f"cannot remove records up to {through_seq} from the message log"
        with (
            self._use(LogWriteError, what) as connection,
            _transaction(connection, self._write_lock, self._busy_timeout_s),
        ):
            horizon, _ = _horizon(connection)
            if through_seq <= horizon:
                return 0
            archived = connection.execute("SELECT max(last_seq) FROM archives").fetchone()[0] or 0
            if through_seq > archived:
                raise LogWriteError(f"{what}: records after {archived} are not archived")
            rows = connection.execute(
                "SELECT seq, leaf_hash, record_hash, body_blob FROM records"
                " WHERE seq > ? AND seq <= ? ORDER BY seq",
                (horizon, through_seq),
            ).fetchall()
            if [row[0] for row in rows] != list(range(horizon + 1, through_seq + 1)):
                raise LogWriteError(f"{what}: records {horizon + 1} to {through_seq} are not all in the log")
            last_hash = rows[-1][2]
            if not isinstance(last_hash, bytes) or len(last_hash) != HASH_SIZE:
                raise LogWriteError(f"{what}: record {through_seq}'s hash is damaged")
            connection.executemany(
                "INSERT INTO pruned_leaves (seq, leaf_hash) VALUES (?, ?)", [(row[0], row[1]) for row in rows]
            )
            connection.executemany(
                "INSERT INTO blob_gc (digest) VALUES (?) ON CONFLICT (digest) DO NOTHING",
                [(row[3],) for row in rows if row[3] is not None],
            )
            connection.execute(
                "INSERT INTO prune_horizon (id, through_seq, record_hash) VALUES (1, ?, ?) ON CONFLICT (id)"
                " DO UPDATE SET through_seq = excluded.through_seq, record_hash = excluded.record_hash",
                (through_seq, last_hash),
            )
            connection.execute("DELETE FROM record_paths WHERE seq <= ?", (through_seq,))
            connection.execute("DELETE FROM records WHERE seq <= ?", (through_seq,))
        return len(rows)

    def collect_blobs(self, limit: int = _PAGE_ROWS) -> tuple[int, int]:
        """Take up to ``limit`` blobs off the queue, deleting those no record in this file
        uses any more; return how many were taken and how many files were deleted.

        Runs inside a write transaction, so no append (which writes its blobs inside its
        own) can come to rely on a blob between the check and the deletion.
        """
        self._refuse_readonly()
        deleted = 0
        with (
            self._use(LogWriteError, "cannot delete unused body blobs") as connection,
            _transaction(connection, self._write_lock, self._busy_timeout_s),
        ):
            digests = [row[0] for row in connection.execute("SELECT digest FROM blob_gc LIMIT ?", (limit,))]
            for digest in digests:
                query = "SELECT 1 FROM records WHERE body_blob = ? LIMIT 1"
                if connection.execute(query, (digest,)).fetchone() is None:
                    # A malformed entry names no file of the blob store: only its row goes.
                    if self._files is None:
                        removed = connection.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
                        deleted += removed.rowcount
                    elif _is_digest(digest):
                        try:
                            deleted += self._files.delete(digest)
                        except BlobError as exc:
                            raise LogWriteError(str(exc)) from exc
                connection.execute("DELETE FROM blob_gc WHERE digest = ?", (digest,))
        return len(digests), deleted

    def _put_blob(self, connection: Database, body: bytes, what: str) -> str:
        if self._files is None:
            # In the shard's own table, inside the append's transaction: committed with it.
            digest = body_digest(body)
            connection.execute(
                "INSERT INTO blobs (digest, body) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
                (digest, body),
            )
            return digest
        try:
            digest = self._files.put(body)
        except (BlobError, ValueError) as exc:
            raise LogWriteError(f"{what}: {exc}") from exc
        if digest != body_digest(body):  # put() hashes what it writes; a cheap guard all the same
            raise LogWriteError(f"{what}: the blob store returned another digest")
        return digest

    # -- copying ---------------------------------------------------------------------

    def copy_to(self, target: Path) -> int:
        """Write a copy of this log, as one consistent state, to the new SQLite file
        ``target`` (blob bodies to its blob folder beside it); return the records copied.

        What an auditor takes away: a PostgreSQL shard, or a file that is being written,
        becomes a file to verify offline with ``xweg audit verify``.  Rows are copied as
        they are stored, not re-encoded, so the copy shows whatever the original holds.
        """
        target = Path(target)
        if target.exists():
            raise LogWriteError(f"cannot copy the message log to {target}: it exists")
        try:
            return self._copy_to(target)
        except BaseException:
            # No half-made copy stays behind to be mistaken for the log (blobs may be shared).
            for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
                leftover.unlink(missing_ok=True)
            raise

    def _copy_to(self, target: Path) -> int:
        copied = 0
        with MessageLogStore.open(target) as copy:
            with (
                self._use(LogReadError, f"cannot copy the log to {target}") as source,
                source.transaction(snapshot=True),
                copy._use(LogWriteError, f"cannot write {target}") as out,
                _transaction(out, copy._write_lock),
            ):
                for table, key in _COPIED_TABLES:
                    rows = _copy_table(source, out, table, key)
                    copied = rows if table == "records" else copied
                digests = [row[0] for row in source.execute(_BLOB_DIGESTS).fetchall()]
            for digest in digests:
                # Read back through this log's blob store (hash-checked), then written and synced.
                try:
                    body = self._blobs.get(digest)
                except (BlobError, ValueError) as exc:
                    raise LogReadError(f"cannot copy body blob {digest!r}: {exc}") from exc
                with copy._use(LogWriteError, f"cannot write {target}") as out:
                    copy._put_blob(out, body, f"cannot copy body blob {digest}")
        return copied

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (or the database connection); closing twice is harmless."""
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
    def _use(self, error: type[MessageLogError], what: str) -> Iterator[Database]:
        """The connection, held under the lock, with its errors mapped to ``error``."""
        with self._lock:
            if self._closed:
                raise error(f"{what}: the log is closed")
            with _mapped(error, what):
                yield self._connection

    @contextmanager
    def reading(self, what: str) -> Iterator[Database]:
        """The connection, for a reader's own queries: held under the lock, its errors
        mapped to :class:`LogReadError` saying ``what`` was being read."""
        with self._use(LogReadError, what) as connection:
            yield connection

    def _refuse_readonly(self) -> None:
        if self._readonly:
            raise LogWriteError(f"message log {self._location} is open read-only")


# Connections of this process that write one log file (the message-log writer's, the
# timestamper's) take turns on a lock of their own before SQLite's.  Meeting SQLite's
# lock instead means its busy handler, which sleeps in steps of up to 100 ms: a short
# checkpoint write then stalls the appends behind it for tens of milliseconds.  Other
# processes (an audit run, an archive) still meet SQLite's lock and its timeout.
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _shared_write_lock(location: LogLocation) -> threading.Lock:
    """The in-process write lock of the log at ``location``."""
    if isinstance(location, PostgresLogShard):
        key = f"{location.url}#{location.shard}"
    else:
        key = str(Path(location).resolve())
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


@contextmanager
def _transaction(
    connection: Database, write_lock: threading.Lock, timeout_s: float = BUSY_TIMEOUT_SECONDS
) -> Iterator[None]:
    """A write transaction, rolled back on any failure, COMMIT's own included.

    SQLite's ``BEGIN IMMEDIATE`` (PostgreSQL: a lock on ``records``) takes the write lock
    up front, so the last seq read inside cannot change before the insert.
    ``write_lock`` is taken first (see :func:`_shared_write_lock`), within ``timeout_s``;
    not getting it is SQLite's "database is locked".
    """
    if not write_lock.acquire(timeout=timeout_s):
        raise sqlite3.OperationalError("database is locked (by another writer in this process)")
    try:
        with connection.write_transaction("records", timeout_s):
            yield
    finally:
        write_lock.release()


#: What :meth:`MessageLogStore.copy_to` copies, each table with the column it pages by
#: (None: the table is small and copied at once).
_COPIED_TABLES: tuple[tuple[str, str | None], ...] = (
    ("meta", None),
    ("globalconf", None),
    ("prune_horizon", None),
    ("archives", None),
    ("blob_gc", None),
    ("checkpoints", None),
    ("pruned_leaves", "seq"),
    ("records", "seq"),
    ("record_paths", "seq"),
)
_BLOB_DIGESTS = "SELECT DISTINCT body_blob FROM records WHERE body_blob IS NOT NULL ORDER BY body_blob"


def _copy_table(source: Database, target: Database, table: str, key: str | None) -> int:
    """Copy every row of ``table`` as stored; return how many."""
    # Table and column names come from _COPIED_TABLES and the cursor, never from outside.
    select = f"SELECT * FROM {table}"  # noqa: S608
    copied, after = 0, None
    while True:
        if key is None:
            cursor = source.execute(select)
        elif after is None:
            cursor = source.execute(f"{select} ORDER BY {key} LIMIT ?", (_PAGE_ROWS,))
        else:
            cursor = source.execute(f"{select} WHERE {key} > ? ORDER BY {key} LIMIT ?", (after, _PAGE_ROWS))
        names = [column[0] for column in cursor.description]
        rows = [tuple(row) for row in cursor.fetchall()]
        if rows:
            columns = ", ".join(names)
            marks = ", ".join("?" * len(names))
            target.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608
        copied += len(rows)
        if key is None or len(rows) < _PAGE_ROWS:
            return copied
        after = rows[-1][names.index(key)]


def _path_from_row(row: tuple[Any, ...]) -> tuple[int, int, list[bytes]]:
    seq, size, path = row
    if isinstance(size, bool) or not isinstance(size, int):
        raise CorruptCheckpoint(None, f"the path of record {seq} names no checkpoint size ({size!r})")
    try:
        return int(seq), size, decode_path(path)
    except ValueError as exc:
        raise CorruptCheckpoint(size, f"the stored path of record {seq} is damaged ({exc})") from exc


def _horizon(connection: Database) -> tuple[int, bytes]:
    """``(seq, record_hash)`` of the last record archived and removed; ``(0, genesis)`` if none."""
    row = connection.execute("SELECT through_seq, record_hash FROM prune_horizon WHERE id = 1").fetchone()
    if row is None:
        return 0, GENESIS_HASH
    through, record_hash = row
    if isinstance(through, bool) or not isinstance(through, int) or through < 1:
        raise LogReadError(f"the log's record of removed records is damaged (through {through!r})")
    if not isinstance(record_hash, bytes) or len(record_hash) != HASH_SIZE:
        raise LogReadError(f"the log's record of removed records is damaged (hash of record {through})")
    return through, record_hash


def _is_digest(value: object) -> bool:
    try:
        check_digest(value)
    except ValueError:
        return False
    return True


def _row_of(record: LogRecord, body_blob: str | None, leaf: bytes) -> tuple[object, ...]:
    """The row of a record just placed; ``leaf`` is its leaf hash from the same encoding."""
    return (
        record.seq,
        record.direction.value,
        record.message_id,
        record.client,
        record.service,
        format_time(record.logged_at),
        record.status,
        record.header,
        b"" if record.body_storage == "blob" else record.body,  # a blob's row holds its digest
        record.signature,
        record.prev_hash,
        record.record_hash,
        record.ocsp,
        leaf,
        record.body_storage,
        body_blob,
    )


def _postgres_version(connection: Database) -> int | None:
    """The schema version of the shard on ``connection``'s search path; None if it has none."""
    if connection.execute("SELECT to_regclass('log_schema')").fetchone()[0] is None:
        return None
    row = connection.execute("SELECT max(version) FROM log_schema").fetchone()
    return None if row is None or row[0] is None else int(row[0])
