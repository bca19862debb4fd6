"""Read-only queries over a message-log file, for auditors: search, fetch, checkpoints, proofs.

Blocking code (call it from a thread in async servers).  Every call opens its own
read-only connection (SQLite ``mode=ro``; PostgreSQL read-only transactions), so it
never writes, never creates the log and never shares the writer's connection; readers
do not wait for the writer.  SQL text is fixed fragments only; every value is a parameter.
Searches and a record's columns are read with this module's own SQL; checkpoints,
proofs, blob bodies and what was archived away are read through
:meth:`MessageLogStore.open_readonly`'s methods, so they follow the store.

Failures: a caller's impossible request raises :class:`InvalidQuery`, asking for what
the log does not hold raises :class:`NotFound`; the store's :class:`LogOpenError`,
:class:`LogFileMissing`, :class:`LogReadError` and :class:`CorruptRecord` /
:class:`CorruptCheckpoint` pass through (database errors are mapped to them).

Searching by time, client or service scans the table without these indexes, which
the store's schema should carry (:data:`SUGGESTED_INDEXES`); results are the same
either way.  What the results prove is for the auditor to check with the proofs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.clock import require_utc
from gateway.database import Database
from gateway.messagelog.checkpoint import Checkpoint, decode_path
from gateway.messagelog.errors import (
    CorruptCheckpoint,
    CorruptRecord,
    MessageLogError,
)
from gateway.messagelog.record import (
    BODY_STORAGES,
    HASH_SIZE,
    MAX_MESSAGE_ID_LENGTH,
    BodyStorage,
    Direction,
    format_time,
    parse_time,
)
from gateway.messagelog.store import LogLocation, MessageLogStore, PostgresLogShard

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "SUGGESTED_INDEXES",
    "QueryError",
    "InvalidQuery",
    "NotFound",
    "RecordSummary",
    "RecordView",
    "search",
    "get_record",
    "checkpoint",
    "inclusion_proof",
    "consistency_proof",
]

DEFAULT_LIMIT = 100  # records per search page
MAX_LIMIT = 1000

#: What the store's schema should add so that searches by time, client and service use
#: an index instead of scanning every row (``seq`` is the rowid, so each index is
#: already ordered by ``seq`` within one value).  ``message_id`` has its index.
SUGGESTED_INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS records_logged_at ON records (logged_at)",
    "CREATE INDEX IF NOT EXISTS records_client ON records (client)",
    "CREATE INDEX IF NOT EXISTS records_service ON records (service)",
)

_SUMMARY_COLUMNS = (
    "SELECT seq, message_id, logged_at, direction, client, service, status, header, length(body) FROM records"
)
_RECORD = (
    "SELECT r.seq, r.message_id, r.logged_at, r.direction, r.client, r.service, r.status, r.header,"
    " length(r.body), r.signature, r.prev_hash, r.record_hash, r.leaf_hash, r.ocsp, r.body_storage,"
    " p.checkpoint_size, p.path FROM records r LEFT JOIN record_paths p ON p.seq = r.seq WHERE r.seq = ?"
)


class QueryError(MessageLogError):
    """A query could not be answered as asked."""


class InvalidQuery(QueryError, ValueError):
    """The parameters are impossible: a limit out of range, a naive time, sizes in the wrong order."""


class NotFound(QueryError, LookupError):
    """The log does not hold what was asked for: no such record, checkpoint or tree size."""


@dataclass(frozen=True)
class RecordSummary:
    """One line of a search result: a record's metadata, never its body."""

    seq: int
    message_id: str
    logged_at: dt.datetime  # UTC
    direction: Direction
    client: str  # slash form
    service: str  # slash form
    status: int | None  # HTTP status of a response; None for a request
    body_size: int  # bytes exchanged, as the signed header declares (else as stored)


@dataclass(frozen=True)
class RecordView:
    """Every stored column of one record; the body only when it was asked for."""

    summary: RecordSummary
    header: bytes = field(repr=False)  # canonical JSON of the signed header
    signature: str = field(repr=False)
    prev_hash: bytes = field(repr=False)
    record_hash: bytes = field(repr=False)
    leaf_hash: bytes = field(repr=False)
    ocsp: bytes | None = field(repr=False)
    body_storage: BodyStorage  # where the log keeps the body: inline, blob or omitted
    checkpoint_size: int | None  # the checkpoint that first covered the record, if any yet
    inclusion_path: tuple[bytes, ...] | None = field(repr=False)  # to that checkpoint, bottom-up
    body: bytes | None = field(default=None, repr=False)  # None unless asked for and kept

    @property
    def seq(self) -> int:
        return self.summary.seq


# -- connections ---------------------------------------------------------------------


@contextmanager
def _reading(location: LogLocation, what: str) -> Iterator[Database]:
    """A fresh read-only connection to the log at ``location``, its errors mapped to the store's."""
    with _store(location) as store, store.reading(what) as connection:
        yield connection


@contextmanager
def _store(location: LogLocation) -> Iterator[MessageLogStore]:
    store = MessageLogStore.open_readonly(
        location if isinstance(location, PostgresLogShard) else Path(location)
    )
    try:
        yield store
    finally:
        store.close()


# -- validation ----------------------------------------------------------------------


def _positive(value: object, what: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**63:
        raise InvalidQuery(f"{what} must be an integer of at least {minimum}")
    return value


def _text(value: object, what: str, limit: int = 255) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidQuery(f"{what} must be 1 to {limit} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InvalidQuery(f"{what} contains control characters")
    return value


def _time(value: object, what: str) -> str:
    if not isinstance(value, dt.datetime):
        raise InvalidQuery(f"{what} must be a datetime")
    try:
        return format_time(require_utc(value, what))
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from exc


# -- rows ----------------------------------------------------------------------------


def _declared_body_size(header: object, stored: int) -> int:
    """The body size the signed header declares; the stored size if the header says none."""
    if isinstance(header, bytes):
        try:
            data = json.loads(header)
        except ValueError:
            return stored
        size = data.get("body_size") if isinstance(data, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            return size
    return stored


def _summary(row: tuple[Any, ...]) -> RecordSummary:
    seq, message_id, logged_at, direction, client, service, status, header, stored = row[:9]
    try:
        if not all(isinstance(v, str) for v in (message_id, client, service)):
            raise ValueError("message id, client and service must be text")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise ValueError("status must be an integer")
        return RecordSummary(
            seq=int(seq),
            message_id=message_id,
            logged_at=parse_time(logged_at),
            direction=Direction(direction),
            client=client,
            service=service,
            status=status,
            body_size=_declared_body_size(header, int(stored or 0)),
        )
    except (ValueError, TypeError) as exc:
        shown = message_id if isinstance(message_id, str) else "unknown"
        raise CorruptRecord(int(seq), shown, f"the stored row is not a well-formed record ({exc})") from exc


def _view(row: tuple[Any, ...]) -> RecordView:
    summary = _summary(row)
    header = row[7]
    signature, prev_hash, record_hash, leaf, ocsp, storage, checkpoint_size, path = row[9:]
    problem = None
    if not isinstance(header, bytes) or not isinstance(signature, str):
        problem = "its header or signature has the wrong type"
    elif not all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in (prev_hash, record_hash, leaf)):
        problem = f"its stored hashes are not {HASH_SIZE} bytes each"
    elif ocsp is not None and not isinstance(ocsp, bytes):
        problem = "its OCSP response is not bytes"
    elif storage not in BODY_STORAGES:
        problem = f"its body storage {storage!r} is unknown"
    if problem is not None:
        raise CorruptRecord(summary.seq, summary.message_id, problem)
    inclusion: tuple[bytes, ...] | None = None
    if path is not None:
        try:
            inclusion = tuple(decode_path(path))
        except ValueError as exc:
            raise CorruptCheckpoint(
                checkpoint_size, f"the stored path of record {summary.seq} is damaged"
            ) from exc
    return RecordView(
        summary=summary,
        header=header,
        signature=signature,
        prev_hash=prev_hash,
        record_hash=record_hash,
        leaf_hash=leaf,
        ocsp=ocsp,
        body_storage=storage,
        checkpoint_size=checkpoint_size if isinstance(checkpoint_size, int) else None,
        inclusion_path=inclusion,
    )


# -- queries -------------------------------------------------------------------------


def search(
    path: LogLocation,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    client: str | None = None,
    service: str | None = None,
    message_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    after_seq: int | None = None,
) -> list[RecordSummary]:
    """Records matching every filter given, in ``seq`` order, at most ``limit`` of them.

    ``since`` is inclusive and ``until`` exclusive (UTC datetimes, against the time the
    record was logged); ``client`` and ``service`` are slash-form identifiers matched
    exactly, except that a service without a version matches every version of it;
    ``after_seq`` continues a search after the last ``seq`` of the previous page.
    """
    limit = _positive(limit, "limit")
    if limit > MAX_LIMIT:
        raise InvalidQuery(f"limit must be at most {MAX_LIMIT}")
    start = 0 if after_seq is None else _positive(after_seq, "after_seq", minimum=0)
    clauses: list[str] = ["seq > ?"]
    params: list[object] = [start]
    if since is not None:
        clauses.append("logged_at >= ?")
        params.append(_time(since, "since"))
    if until is not None:
        clauses.append("logged_at < ?")
        params.append(_time(until, "until"))
    if since is not None and until is not None and since >= until:
        raise InvalidQuery("since must be earlier than until")
    if client is not None:
        clauses.append("client = ?")
        params.append(_text(client, "client"))
    if service is not None:
        service = _text(service, "service")
        if service.count("/") == 4:  # no version: any version of it
            # '/' sorts just before '0': the range holds exactly "<service>/<anything>".
            clauses.append("(service = ? OR (service > ? AND service < ?))")
            params += [service, service + "/", service + "0"]
        else:
            clauses.append("service = ?")
            params.append(service)
    if message_id is not None:
        clauses.append("message_id = ?")
        params.append(_text(message_id, "message_id", MAX_MESSAGE_ID_LENGTH))
    # Only the fixed fragments above are joined into the SQL text; every value is a parameter.
    sql = f"{_SUMMARY_COLUMNS} WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?"  # noqa: S608
    params.append(limit)
    with _reading(path, "cannot search the message log") as connection:
        rows = connection.execute(sql, params).fetchall()
    return [_summary(row) for row in rows]


def get_record(path: LogLocation, seq: int, *, with_body: bool = False) -> RecordView | None:
    """Record ``seq`` with every stored column; None if the log never held it.

    With ``with_body`` the body is read as the store reads it (a blob is read back and
    hash-checked); a body the log did not keep (``omitted``) stays None.  A record that
    was archived and removed from the live log raises :class:`NotFound` saying so.
    """
    seq = _positive(seq, "seq")
    with _reading(path, f"cannot read record {seq} of the message log") as connection:
        row = connection.execute(_RECORD, (seq,)).fetchone()
    if row is None:
        with _store(path) as store:
            removed_through = store.prune_horizon()[0]
        if seq <= removed_through:
            raise NotFound(
                f"record {seq} was archived and removed from the live log (records 1..{removed_through})"
            )
        return None
    view = _view(row)
    if not with_body or view.body_storage == "omitted":
        return view
    with _store(path) as store:
        found = [record for record in store.find(view.summary.message_id) if record.seq == seq]
    if not found:
        raise NotFound(f"record {seq} left the live log while it was read")
    return replace(view, body=found[0].body)


def checkpoint(path: LogLocation, size: int | None = None) -> Checkpoint | None:
    """The checkpoint covering exactly ``size`` records, or the latest one; None if there is none."""
    if size is not None:
        size = _positive(size, "size")
    with _store(path) as store:
        if size is None:
            return store.last_checkpoint()
        found = store.checkpoint_covering(size)
    return found if found is not None and found.size == size else None


def _within_log(store: MessageLogStore, size: int, what: str) -> None:
    last = store.last_seq()
    if size > last:
        raise NotFound(f"{what} {size} is larger than the log, which holds {last} records")


def inclusion_proof(path: LogLocation, seq: int, tree_size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of record ``seq`` (leaf ``seq - 1``) in the first ``tree_size`` records.

    Bottom-up, as :func:`trust.merkle.verify_inclusion` takes it.  When ``tree_size`` is
    the checkpoint that first covered the record, the path stored with that checkpoint
    is returned; otherwise the proof is computed from the stored leaf hashes (records
    archived and removed from the live log included).
    """
    seq = _positive(seq, "seq")
    tree_size = _positive(tree_size, "tree_size")
    if seq > tree_size:
        raise InvalidQuery(f"record {seq} is not inside a tree of size {tree_size}")
    with _store(path) as store:
        _within_log(store, tree_size, "tree size")
        stored = store.record_path(seq)
        if stored is not None and stored[0] == tree_size:
            return stored[1]
        return store.inclusion_proof(seq, tree_size)


def consistency_proof(path: LogLocation, old_size: int, new_size: int) -> list[bytes]:
    """The RFC 9162 proof that the log's first ``old_size`` records are a prefix of its first ``new_size``."""
    old_size = _positive(old_size, "old size")
    new_size = _positive(new_size, "new size")
    if old_size > new_size:
        raise InvalidQuery(f"old size {old_size} is larger than new size {new_size}")
    with _store(path) as store:
        _within_log(store, new_size, "new size")
        return store.consistency_proof(old_size, new_size)
