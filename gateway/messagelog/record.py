"""Message-log records, their canonical encoding and the hash chain that links them.

Pure: no I/O, no asyncio.  A :class:`NewRecord` is what the pipeline hands to the log;
a :class:`LogRecord` is a stored one, with its place (``seq``) and its chain hashes.

``encode_record`` turns a record into a stable byte string, canonical JSON::

    {"client": "...", "direction": "request", "format": "xweg-messagelog-record/2",
     "header_sha512": "<hex>", "logged_at": "2025-01-02T03:04:05.000000Z", "message_id": "...",
     "body_storage": "inline", "ocsp_sha256": "<hex>" or null, "seq": 17, "service": "...",
     "signature": "<compact JWS>", "status": null}

The body is bound through the signed header, which carries the body's SHA-512 and size;
the verifier checks body against header as its own step, so a changed body is reported
as exactly that instead of as a broken hash.  The OCSP response that travelled with the
signature (evidence that the signer's certificate was good) is bound by its SHA-256.

Where the body is kept (``body_storage``) is part of the encoding, so it cannot be
changed after logging without breaking the chain and the Merkle leaf:

* ``inline``: in the log's records table;
* ``blob``: in the content-addressed blob store beside the log
  (:mod:`gateway.messagelog.blobs`), under its SHA-512;
* ``omitted``: not kept at all (data minimisation); the signed header still carries
  the body's SHA-512 and size, so a body kept elsewhere can still be proven.

:class:`BodyPolicy` decides, per record, which of the three the store uses.

Two structures are built on these bytes:

* the hash chain, ``record_hash = SHA-256(prev_hash || SHA-256(encode_record(seq, record)))``,
  with ``prev_hash`` of record 1 being :data:`GENESIS_HASH` (32 zero bytes);
* the Merkle tree (RFC 9162): record ``seq`` is leaf ``seq - 1``, with leaf hash
  ``SHA-256(0x00 || encode_record(seq, record))`` (:attr:`LogRecord.leaf_hash`), which
  timestamped checkpoints (:mod:`gateway.messagelog.checkpoint`) commit to.

Parsing the header and checking signatures is :mod:`gateway.messagelog.verify`'s job.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from core.clock import require_utc
from core.identifiers import IdentifierError, ServiceId, parse_client_slash
from trust.evidence import RECORD_FORMAT, encode_log_record
from trust.merkle import leaf_hash

__all__ = [
    "BodyStorage",
    "BODY_STORAGES",
    "BodyPolicy",
    "DEFAULT_INLINE_LIMIT_BYTES",
    "MAX_INLINE_LIMIT_BYTES",
    "Direction",
    "NewRecord",
    "LogRecord",
    "GENESIS_HASH",
    "HASH_SIZE",
    "RECORD_FORMAT",
    "MAX_MESSAGE_ID_LENGTH",
    "MAX_HEADER_BYTES",
    "MAX_SIGNATURE_LENGTH",
    "MAX_OCSP_BYTES",
    "encode_record",
    "chain_hash",
    "format_time",
    "parse_time",
]

#: Size in bytes of ``prev_hash`` and ``record_hash`` (SHA-256).
HASH_SIZE = 32
GENESIS_HASH = bytes(HASH_SIZE)


#: Bounds; the core message model already keeps real values far below them.
MAX_MESSAGE_ID_LENGTH = 255  # characters
MAX_HEADER_BYTES = 2 * 1024 * 1024  # 100 headers of 8 KiB each, plus identifiers
MAX_SIGNATURE_LENGTH = 256 * 1024  # characters; a compact JWS with its certificate chain
MAX_OCSP_BYTES = 64 * 1024  # a DER OCSP response, with its responder's certificate

#: Where a record's body is kept; see the module docstring.
BodyStorage = Literal["inline", "blob", "omitted"]
#: The storages from keeping most of the body in the log to keeping least of it.
BODY_STORAGES: tuple[BodyStorage, ...] = get_args(BodyStorage)
#: Bodies larger than this go to the blob store.
DEFAULT_INLINE_LIMIT_BYTES = 256 * 1024
#: Upper bound of a configured inline limit: keeps rows and archive lines small.
MAX_INLINE_LIMIT_BYTES = 4 * 1024 * 1024


class Direction(enum.Enum):
    REQUEST = "request"
    RESPONSE = "response"


def format_time(value: dt.datetime) -> str:
    """The one text form of a log time: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as it reads)."""
    utc = require_utc(value, "log time").astimezone(dt.UTC).replace(tzinfo=None)
    # isoformat, not strftime: strftime does not zero-pad years before 1000 on every platform.
    return utc.isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> dt.datetime:
    """Inverse of :func:`format_time`; refuses any other form."""
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"log time {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
    value = dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)
    if format_time(value) != text:
        raise ValueError(f"log time {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return value


# C0 controls and DEL; searched by the regex engine, not character by character in
# Python, as every record's signature (kilobytes) passes here twice on the message path.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def _check_text(value: object, what: str, limit: int) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    if _CONTROL_CHARACTER.search(value):
        raise ValueError(f"{what} contains control characters")


def _check_content(
    direction: object,
    message_id: object,
    client: object,
    service: object,
    logged_at: object,
    header: object,
    body: object,
    signature: object,
    status: object,
    ocsp: object,
    body_storage: object,
) -> None:
    """Shared constructor checks of :class:`NewRecord` and :class:`LogRecord`.

    Structural only: whether the header matches the body and the signature is what
    verification decides, and it must be able to load a tampered record to say so.
    """
    if not isinstance(direction, Direction):
        raise ValueError("direction must be a Direction")
    _check_text(message_id, "message id", MAX_MESSAGE_ID_LENGTH)
    if not isinstance(client, str) or not isinstance(service, str):
        raise ValueError("client and service must be identifiers in slash form")
    try:
        parse_client_slash(client)
        ServiceId.parse_slash(service)
    except IdentifierError as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(logged_at, dt.datetime):
        raise ValueError("logged_at must be a datetime")
    require_utc(logged_at, "logged_at")
    if not isinstance(header, bytes) or not header:
        raise ValueError("header must be non-empty bytes (canonical JSON)")
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(f"header is larger than {MAX_HEADER_BYTES} bytes")
    if not isinstance(body, bytes):
        raise ValueError("body must be bytes")
    _check_text(signature, "signature", MAX_SIGNATURE_LENGTH)
    if direction is Direction.REQUEST:
        if status is not None:
            raise ValueError("a request record has no HTTP status")
    elif isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"a response record needs an HTTP status (100-599), got {status!r}")
    if ocsp is not None:
        if not isinstance(ocsp, bytes) or not ocsp:
            raise ValueError("ocsp must be None or non-empty bytes (a DER OCSP response)")
        if len(ocsp) > MAX_OCSP_BYTES:
            raise ValueError(f"ocsp is larger than {MAX_OCSP_BYTES} bytes")
    if body_storage not in BODY_STORAGES:
        raise ValueError(f"body_storage must be one of {', '.join(BODY_STORAGES)}, not {body_storage!r}")


@dataclass(frozen=True)
class NewRecord:
    """A request or response as the pipeline logs it, before it has a place in the log."""

    direction: Direction
    message_id: str
    client: str  # slash form of the client id
    service: str  # slash form of the service id
    logged_at: dt.datetime  # UTC
    header: bytes = field(repr=False)  # canonical JSON of the core header's to_dict()
    body: bytes = field(repr=False)
    signature: str = field(repr=False)  # compact detached JWS over the message digest
    status: int | None = None  # HTTP status, responses only
    #: DER OCSP response for the signer's certificate that travelled with the signature.
    ocsp: bytes | None = field(default=None, repr=False)
    #: Where the store keeps the body; a :class:`BodyPolicy` may move it further out.
    #: For ``omitted`` the body given here is dropped when the record is stored.
    body_storage: BodyStorage = "inline"

    def __post_init__(self) -> None:
        _check_content(
            self.direction,
            self.message_id,
            self.client,
            self.service,
            self.logged_at,
            self.header,
            self.body,
            self.signature,
            self.status,
            self.ocsp,
            self.body_storage,
        )


@dataclass(frozen=True)
class LogRecord:
    """A stored record: a :class:`NewRecord`'s fields, its sequence number and its hashes."""

    seq: int  # 1-based, contiguous
    prev_hash: bytes = field(repr=False)  # record_hash of record seq-1; GENESIS_HASH for 1
    record_hash: bytes = field(repr=False)
    direction: Direction
    message_id: str
    client: str
    service: str
    logged_at: dt.datetime
    header: bytes = field(repr=False)
    body: bytes = field(repr=False)
    signature: str = field(repr=False)
    status: int | None = None
    ocsp: bytes | None = field(default=None, repr=False)
    #: For ``omitted``, ``body`` is empty: the log never had it.
    body_storage: BodyStorage = "inline"

    def __post_init__(self) -> None:
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1:
            raise ValueError("seq must be a positive integer")
        for name in ("prev_hash", "record_hash"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise ValueError(f"{name} must be {HASH_SIZE} bytes")
        if self.body_storage == "omitted" and self.body:
            raise ValueError("a record whose body was omitted holds no body")
        _check_content(
            self.direction,
            self.message_id,
            self.client,
            self.service,
            self.logged_at,
            self.header,
            self.body,
            self.signature,
            self.status,
            self.ocsp,
            self.body_storage,
        )

    @property
    def content(self) -> NewRecord:
        """The record without its place in the log, e.g. to recompute its hash."""
        return NewRecord(
            direction=self.direction,
            message_id=self.message_id,
            client=self.client,
            service=self.service,
            logged_at=self.logged_at,
            header=self.header,
            body=self.body,
            signature=self.signature,
            status=self.status,
            ocsp=self.ocsp,
            body_storage=self.body_storage,
        )

    @property
    def body_kept(self) -> bool:
        """Whether the log kept this record's body (inline or as a blob)."""
        return self.body_storage != "omitted"

    @property
    def leaf_hash(self) -> bytes:
        """This record's Merkle leaf hash, recomputed from its content (never read from storage)."""
        return leaf_hash(encode_record(self.seq, self.content))

    @classmethod
    def place(cls, seq: int, prev_hash: bytes, new: NewRecord) -> LogRecord:
        """``new`` stored as record ``seq`` after a record whose hash is ``prev_hash``."""
        return cls.place_with_leaf_hash(seq, prev_hash, new)[0]

    @classmethod
    def place_with_leaf_hash(cls, seq: int, prev_hash: bytes, new: NewRecord) -> tuple[LogRecord, bytes]:
        """:meth:`place`, and the record's :attr:`leaf_hash` from the same encoding (the store
        writes both; encoding a record twice was a tenth of the append's time)."""
        encoded = encode_record(seq, new)
        placed = cls(
            seq=seq,
            prev_hash=prev_hash,
            record_hash=chain_hash(prev_hash, encoded),
            direction=new.direction,
            message_id=new.message_id,
            client=new.client,
            service=new.service,
            logged_at=new.logged_at,
            header=new.header,
            body=b"" if new.body_storage == "omitted" else new.body,
            signature=new.signature,
            status=new.status,
            ocsp=new.ocsp,
            body_storage=new.body_storage,
        )
        return placed, leaf_hash(encoded)


def encode_record(seq: int, new: NewRecord) -> bytes:
    """The canonical bytes of record ``seq`` (see the module docstring): its chain input and Merkle leaf.

    One definition serves the log and the offline evidence verifier in ``trust``.
    """
    return encode_log_record(
        seq=seq,
        direction=new.direction.value,
        message_id=new.message_id,
        client=new.client,
        service=new.service,
        logged_at=new.logged_at,
        status=new.status,
        header=new.header,
        signature=new.signature,
        ocsp=new.ocsp,
        body_storage=new.body_storage,
    )


def chain_hash(prev_hash: bytes, encoded: bytes) -> bytes:
    """``SHA-256(prev_hash || SHA-256(encoded))``: links a record to everything before it.

    Hashing the encoding first keeps the chained input fixed-size (64 bytes), so the
    chain can be recomputed from stored leaf hashes alone.
    """
    if len(prev_hash) != HASH_SIZE:
        raise ValueError(f"prev_hash must be {HASH_SIZE} bytes")
    return hashlib.sha256(prev_hash + hashlib.sha256(encoded).digest()).digest()


@dataclass(frozen=True)
class BodyPolicy:
    """Which storage the log uses for a record's body; the store applies it at append.

    * A record whose client, or whose service's provider subsystem, is in ``omit_for``
      (client ids in slash form: this server's subsystems where law requires data
      minimisation) is logged metadata-only: ``omitted``.
    * Otherwise a body larger than ``inline_limit_bytes`` goes to the blob store:
      ``blob``; a smaller one stays ``inline``.

    A policy never keeps more of a body than the caller asked for: a record that asks for
    ``blob`` or ``omitted`` keeps that (see :meth:`apply`).
    """

    inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES
    omit_for: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        limit = self.inline_limit_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_INLINE_LIMIT_BYTES:
            raise ValueError(f"inline_limit_bytes must be an integer from 0 to {MAX_INLINE_LIMIT_BYTES}")
        if not isinstance(self.omit_for, frozenset):
            raise ValueError("omit_for must be a frozenset of client ids in slash form")
        for client in self.omit_for:
            if not isinstance(client, str):
                raise ValueError("omit_for must hold client ids in slash form")
            try:
                canonical = parse_client_slash(client).slash()
            except IdentifierError as exc:
                raise ValueError(f"omit_for: {exc}") from exc
            if canonical != client:
                raise ValueError(f"omit_for: {client!r} is not in canonical slash form")

    def decide(self, client: str, size: int, *, provider: str | None = None) -> BodyStorage:
        """The storage for a body of ``size`` bytes exchanged by ``client`` (with ``provider``,
        the service's provider subsystem, when known)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError("size must be a non-negative integer")
        if client in self.omit_for or (provider is not None and provider in self.omit_for):
            return "omitted"
        return "blob" if size > self.inline_limit_bytes else "inline"

    def apply(self, record: NewRecord) -> NewRecord:
        """``record`` with the storage this policy chooses, or the caller's if that keeps less."""
        provider = ServiceId.parse_slash(record.service).provider.slash()
        decided = self.decide(record.client, len(record.body), provider=provider)
        chosen = max(decided, record.body_storage, key=BODY_STORAGES.index)
        if chosen == record.body_storage:
            return record
        return replace(record, body_storage=chosen)
