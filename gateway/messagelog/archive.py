"""Archives of the message log, their offline verification, and retention.

**Archiving.**  Every ``interval_s`` (default 6 h, as X-Road), the :class:`Archiver`
writes the records not archived yet, up to the log's last timestamped checkpoint, to one
file (:func:`write_archive`); records after that checkpoint wait for the next round.
A file is a ZIP (deflate) named ``<origin>-<first seq>-<last seq>.xwa``, the origin's
``/`` written as ``_`` (which no identifier part may contain)::

    records.jsonl      every column of every record, one canonical JSON object a line
    checkpoints.jsonl  every column of every checkpoint ending in the range (token, signature...)
    paths.jsonl        every record's inclusion path to its checkpoint
    blobs/<sha512>     the body of each record kept as a blob, once per distinct body
    manifest.json      written last: see below

Column values are JSON as they are, except bytes, written ``{"b64": "<base64>"}``.
Inline bodies stay in their record's line; omitted bodies stay omitted.  The manifest
(canonical JSON, format ``xweg-archive/1``) names the origin, the archive's
``position`` (1, 2, 3...), its first and last record, ``prev_archive_sha256`` (SHA-256
of the whole previous archive file, 64 zeros for the first), ``chain_start`` (the
previous record's hash), ``frontier`` (the RFC 9162 compact range of every leaf before
the archive, :meth:`trust.merkle.CompactRange.to_bytes`, so that its checkpoints' roots
can be recomputed from this file alone), and the size and SHA-256 of each ``.jsonl``
member.  Blob members are named by their own hash.

A file is written atomically (temporary file, fsync, rename, folder fsync), then noted
in the log's ``archives`` table with its SHA-256.  An archive written but not noted (a
crash in between) is deleted and written again at the next round: until it is noted,
nothing relies on it.

**Retention** (:func:`prune_archived`).  A record leaves the live log only when it is
older than ``retention_s`` (default 30 days) *and* in an archive noted in the log whose
file, re-read now, still has the noted SHA-256, a sound manifest and members, and holds
that very record (same record and leaf hash).  The log keeps the leaf hashes of removed
records and the hash of the last one, so checkpoints, proofs and the chain of the
remaining records still verify (see :mod:`gateway.messagelog.store`).  Blobs used only
by removed records are deleted after.

**Verification** (:func:`verify_archive_dir`), stopping at the first problem:

1. every ``*.xwa`` file in the folder is a ZIP archive with a well-formed manifest and
   is named as its manifest says;
2. ordered by position, the archives are 1, 2, 3... with none missing or doubled, all of
   one origin, each starting at the record after the previous one's last;
3. each names the SHA-256 of the file before it (the genesis value for the first), so a
   changed, replaced or removed archive breaks the chain at the next one;

then, for each archive in order:

4. its members are exactly the listed ones plus one blob per body kept as a blob, each
   ``.jsonl`` member of the listed size and SHA-256;
5. its records verify as the live log's do (:func:`~gateway.messagelog.verify.verify_records`:
   sequence, chain continued from the previous archive, record hashes, headers, bodies
   against their signed digests, signatures); a blob missing or changed is named;
6. its frontier is the one the previous archives leave; every checkpoint is well formed,
   of the archive's origin, in time order, its root recomputed from the leaves, signed
   by the origin server's owner and timestamped by an approved TSA; the last ends at
   the archive's last record;
7. every record has a path to one of the archive's checkpoints that covers it, and the
   path verifies.

The last archive of a folder has no successor to vouch for its SHA-256: compare the
report's ``last_seq`` and ``last_record_hash`` with the live log's
:meth:`~gateway.messagelog.store.MessageLogStore.prune_horizon` (every removed record
must be in an archive).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import structlog
from cryptography import x509

from core.canonical import canonical_json
from core.clock import Clock, require_utc
from core.identifiers import IdentifierError, SecurityServerId
from gateway.messagelog.blobs import MAX_BLOB_BYTES, BlobError, body_digest, check_digest
from gateway.messagelog.checkpoint import Checkpoint, decode_path
from gateway.messagelog.errors import CorruptRecord, MessageLogError
from gateway.messagelog.record import (
    GENESIS_HASH,
    HASH_SIZE,
    Direction,
    LogRecord,
    format_time,
    parse_time,
)
from gateway.messagelog.store import ArchiveEntry, LogLocation, MessageLogStore, PostgresLogShard
from gateway.messagelog.storethread import StoreThread
from gateway.messagelog.verify import (
    CheckpointFailure,
    CheckpointSignatureCheck,
    SignatureCheck,
    check_signed_checkpoint,
    verify_records,
)
from trust.merkle import CompactRange, MerkleError, verify_inclusion

__all__ = [
    "ARCHIVE_FORMAT",
    "ARCHIVE_SUFFIX",
    "GENESIS_ARCHIVE_SHA256",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_RETENTION_S",
    "DEFAULT_MAX_RECORDS",
    "DEFAULT_PRUNE_BATCH",
    "MAX_LINE_BYTES",
    "MAX_MANIFEST_BYTES",
    "ArchiveError",
    "ArchiveResult",
    "PruneResult",
    "ArchiveProblem",
    "ArchiveReport",
    "Archiver",
    "archive_file_name",
    "write_archive",
    "prune_archived",
    "verify_archive_dir",
]

log = structlog.get_logger("xweg.archiver")

ARCHIVE_FORMAT = "xweg-archive/1"
ARCHIVE_SUFFIX = ".xwa"
#: ``prev_archive_sha256`` of the first archive.
GENESIS_ARCHIVE_SHA256 = "0" * 64
DEFAULT_INTERVAL_S = 6 * 3600.0  # seconds between archiving rounds
DEFAULT_RETENTION_S = 30 * 24 * 3600.0  # seconds a record stays in the live log
#: Records per archive at most (an archive still ends at a checkpoint, so one may exceed
#: this when a single checkpoint covers more).
DEFAULT_MAX_RECORDS = 1_000_000
#: Records removed per transaction, so the writer never waits long for the lock.
DEFAULT_PRUNE_BATCH = 10_000
#: Longest line of a ``.jsonl`` member: a record with a 2 MiB header, a 4 MiB inline
#: body (the largest inline limit), its signature and OCSP response, in base64.
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024

_MANIFEST = "manifest.json"
_RECORDS = "records.jsonl"
_CHECKPOINTS = "checkpoints.jsonl"
_PATHS = "paths.jsonl"
_LISTED = (_RECORDS, _CHECKPOINTS, _PATHS)
_SIDE_TABLES: tuple[tuple[Literal["checkpoints", "record_paths"], str], ...] = (
    ("checkpoints", _CHECKPOINTS),
    ("record_paths", _PATHS),
)
_BLOB_PREFIX = "blobs/"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same records give the same bytes
_CHUNK = 1024 * 1024
_NAME = re.compile(r"(?P<origin>[^/\\]+)-(?P<first>[1-9][0-9]*)-(?P<last>[1-9][0-9]*)\.xwa")

_T = TypeVar("_T")


class ArchiveError(MessageLogError):
    """An archive could not be written, or one the log relies on is missing or unsound."""


# -- results and reports -------------------------------------------------------------


def _positive(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer")


def _count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer")


@dataclass(frozen=True)
class ArchiveResult:
    """One archive written: its file, place in the chain and what it holds."""

    path: Path
    position: int
    first_seq: int
    last_seq: int
    checkpoints: int
    blobs: int
    sha256: str
    created_at: dt.datetime

    def __post_init__(self) -> None:
        for name in ("position", "first_seq", "last_seq", "checkpoints"):
            _positive(getattr(self, name), name)
        _count(self.blobs, "blobs")
        if self.last_seq < self.first_seq:
            raise ValueError("last_seq must not be before first_seq")
        require_utc(self.created_at, "created_at")

    @property
    def records(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True)
class PruneResult:
    """One retention pass: records removed, the last removed record, blob files deleted."""

    records: int
    through_seq: int
    blobs_deleted: int

    def __post_init__(self) -> None:
        for name in ("records", "through_seq", "blobs_deleted"):
            _count(getattr(self, name), name)


@dataclass(frozen=True)
class ArchiveProblem:
    """The first thing found wrong: in which archive file, at which record if one, and why."""

    reason: str
    archive: str | None = None
    seq: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not self.reason:
            raise ValueError("a problem needs a reason")
        if self.archive is not None and not isinstance(self.archive, str):
            raise ValueError("archive must be a file name or None")
        if self.seq is not None and (isinstance(self.seq, bool) or not isinstance(self.seq, int)):
            raise ValueError("seq must be an integer or None")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "archive", "archive": self.archive, "seq": self.seq, "reason": self.reason}


@dataclass(frozen=True)
class ArchiveReport:
    """What :func:`verify_archive_dir` found.

    ``archives`` and ``records`` count what verified before the first problem (all, if
    none); ``last_seq`` and ``last_record_hash`` are those of the last verified archive.
    """

    archives: int
    records: int
    first_error: ArchiveProblem | None
    checkpoints: int = 0
    bodies_omitted: int = 0
    last_seq: int = 0
    last_record_hash: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("archives", "records", "checkpoints", "bodies_omitted", "last_seq"):
            _count(getattr(self, name), name)
        if self.first_error is not None and not isinstance(self.first_error, ArchiveProblem):
            raise ValueError("first_error must be an ArchiveProblem or None")
        if self.last_record_hash is not None and (
            not isinstance(self.last_record_hash, bytes) or len(self.last_record_hash) != HASH_SIZE
        ):
            raise ValueError(f"last_record_hash must be {HASH_SIZE} bytes or None")

    @property
    def ok(self) -> bool:
        return self.first_error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "archives": self.archives,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "bodies_omitted": self.bodies_omitted,
            "last_seq": self.last_seq,
            "last_record_hash": None if self.last_record_hash is None else self.last_record_hash.hex(),
            "first_error": None if self.first_error is None else self.first_error.to_dict(),
        }


# -- the format ----------------------------------------------------------------------


def archive_file_name(origin: str, first_seq: int, last_seq: int) -> str:
    """``<origin>-<first>-<last>.xwa``, the origin's ``/`` written ``_``."""
    _positive(first_seq, "first_seq")
    _positive(last_seq, "last_seq")
    return f"{origin.replace('/', '_')}-{first_seq}-{last_seq}{ARCHIVE_SUFFIX}"


def _encode_value(value: object) -> object:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if value is None or isinstance(value, str | int) and not isinstance(value, bool):
        return value
    raise ArchiveError(f"a stored value of type {type(value).__name__} cannot be archived")


def _decode_value(value: object) -> object:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise ValueError('a bytes value must be written {"b64": "..."}')
        try:
            return base64.b64decode(value["b64"].encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"a bytes value is not base64 ({exc})") from exc
    if value is None or isinstance(value, str | int) and not isinstance(value, bool):
        return value
    raise ValueError(f"a column holds a value of type {type(value).__name__}")


def _row_line(row: Mapping[str, object]) -> bytes:
    return canonical_json({name: _encode_value(value) for name, value in row.items()}) + b"\n"


@dataclass(frozen=True)
class _Manifest:
    origin: str
    position: int
    first_seq: int
    last_seq: int
    prev_archive_sha256: str
    chain_start: bytes
    frontier: CompactRange
    created_at: dt.datetime
    members: Mapping[str, tuple[int, str]]  # name -> (size, sha256 hex)
    blobs: int

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "format": ARCHIVE_FORMAT,
                "origin": self.origin,
                "position": self.position,
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "prev_archive_sha256": self.prev_archive_sha256,
                "chain_start": self.chain_start.hex(),
                "frontier": self.frontier.to_bytes().hex(),
                "created_at": format_time(self.created_at),
                "members": {
                    name: {"size": size, "sha256": sha} for name, (size, sha) in self.members.items()
                },
                "blobs": self.blobs,
            }
        )

    @classmethod
    def parse(cls, data: bytes) -> _Manifest:
        """A manifest from its bytes; ``ValueError`` with the reason unless well formed."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"its manifest is not JSON ({exc})") from exc
        keys = {
            "format",
            "origin",
            "position",
            "first_seq",
            "last_seq",
            "prev_archive_sha256",
            "chain_start",
            "frontier",
            "created_at",
            "members",
            "blobs",
        }
        if not isinstance(raw, dict) or set(raw) != keys:
            raise ValueError(f"its manifest does not have exactly the fields {', '.join(sorted(keys))}")
        if raw["format"] != ARCHIVE_FORMAT:
            raise ValueError(f"its manifest's format is {raw['format']!r}, not {ARCHIVE_FORMAT!r}")
        origin = raw["origin"]
        try:
            if not isinstance(origin, str) or SecurityServerId.parse_slash(origin).slash() != origin:
                raise ValueError(f"its manifest's origin {origin!r} is not a security server id")
        except IdentifierError as exc:
            raise ValueError(f"its manifest's origin is not a security server id ({exc})") from exc
        for name in ("position", "first_seq", "last_seq"):
            _positive(raw[name], f"its manifest's {name}")
        _count(raw["blobs"], "its manifest's blobs")
        if raw["last_seq"] < raw["first_seq"]:
            raise ValueError("its manifest's last record comes before its first")
        members = raw["members"]
        if not isinstance(members, dict) or set(members) != set(_LISTED):
            raise ValueError(f"its manifest must list exactly the members {', '.join(_LISTED)}")
        listed: dict[str, tuple[int, str]] = {}
        for name, entry in members.items():
            if not isinstance(entry, dict) or set(entry) != {"size", "sha256"}:
                raise ValueError(f"its manifest's entry for {name} is malformed")
            _count(entry["size"], f"the size of {name}")
            listed[name] = (entry["size"], _sha256_hex(entry["sha256"], f"the SHA-256 of {name}"))
        try:
            chain_start = bytes.fromhex(raw["chain_start"])
            frontier = CompactRange.from_bytes(bytes.fromhex(raw["frontier"]))
            created_at = parse_time(raw["created_at"])
        except (TypeError, ValueError, MerkleError) as exc:
            raise ValueError(f"its manifest's chain start, frontier or time is malformed ({exc})") from exc
        if len(chain_start) != HASH_SIZE:
            raise ValueError("its manifest's chain start is not a 32-byte hash")
        if frontier.size != raw["first_seq"] - 1:
            raise ValueError(
                f"its manifest's frontier covers {frontier.size} records, "
                f"not the {raw['first_seq'] - 1} before the archive"
            )
        manifest = cls(
            origin=origin,
            position=raw["position"],
            first_seq=raw["first_seq"],
            last_seq=raw["last_seq"],
            prev_archive_sha256=_sha256_hex(raw["prev_archive_sha256"], "its previous archive's SHA-256"),
            chain_start=chain_start,
            frontier=frontier,
            created_at=created_at,
            members=listed,
            blobs=raw["blobs"],
        )
        if manifest.to_bytes() != data:
            raise ValueError("its manifest is not in canonical form")
        return manifest

    @property
    def file_name(self) -> str:
        return archive_file_name(self.origin, self.first_seq, self.last_seq)


def _sha256_hex(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError(f"{what} is not 64 lowercase hex characters")
    return value


class _HashingWriter:
    """Passes writes to a ZIP member, counting and hashing them."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self.size = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._target.write(data)
        self.size += len(data)
        self.sha256.update(data)


def _member_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- writing -------------------------------------------------------------------------


def write_archive(
    store: MessageLogStore,
    archive_dir: Path,
    *,
    now: dt.datetime,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> ArchiveResult | None:
    """Archive the records after the last archive up to a timestamped checkpoint.

    The archive ends at the last checkpoint, or at the last one within ``max_records``
    (at the first one after the last archive, if even that covers more).  None when no
    checkpoint follows the last archive.  Blocking; raises :class:`ArchiveError`.
    """
    require_utc(now, "now")
    _positive(max_records, "max_records")
    archive_dir = Path(archive_dir)
    try:
        entries = store.archives()
        archived = entries[-1].last_seq if entries else 0
        pending = [c for c in store.checkpoints() if c.size > archived]
    except MessageLogError as exc:
        raise ArchiveError(f"cannot read the message log to archive it: {exc}") from exc
    if not pending:
        return None
    within = [c for c in pending if c.size <= archived + max_records]
    end = within[-1] if within else pending[0]
    ends = {c.size: c.root for c in pending if c.size <= end.size}
    first, last, origin = archived + 1, end.size, end.origin
    name = archive_file_name(origin, first, last)
    try:
        archive_dir.mkdir(parents=True, exist_ok=True)
        _remove_unnoted(archive_dir, origin, first, {entry.file_name for entry in entries})
        frontier = CompactRange.from_bytes(entries[-1].frontier) if entries else CompactRange()
    except (OSError, MerkleError) as exc:
        raise ArchiveError(f"cannot prepare archive {name}: {exc}") from exc
    if frontier.size != archived:
        raise ArchiveError(f"the log's note of archive {entries[-1].file_name} has a damaged frontier")
    prefix = frontier.copy()
    target = archive_dir / name
    temp = archive_dir / f".{name}.tmp"
    try:
        with temp.open("wb") as raw, zipfile.ZipFile(raw, "w", allowZip64=True) as bundle:
            members: dict[str, tuple[int, str]] = {}
            chain_start, digests = _write_records(store, bundle, first, last, frontier, ends, members)
            for table, member in _SIDE_TABLES:
                with bundle.open(_member_info(member), "w", force_zip64=True) as out:
                    sink = _HashingWriter(out)
                    for row in store.export_rows(table, first, last):
                        sink.write(_row_line(row))
                members[member] = (sink.size, sink.sha256.hexdigest())
            for digest in sorted(digests):
                with bundle.open(_member_info(_BLOB_PREFIX + digest), "w", force_zip64=True) as out:
                    out.write(store.blobs.get(digest))
            manifest = _Manifest(
                origin=origin,
                position=len(entries) + 1,
                first_seq=first,
                last_seq=last,
                prev_archive_sha256=entries[-1].sha256 if entries else GENESIS_ARCHIVE_SHA256,
                chain_start=chain_start,
                frontier=prefix,
                created_at=now,
                members=members,
                blobs=len(digests),
            )
            bundle.writestr(_member_info(_MANIFEST), manifest.to_bytes())
        with temp.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(temp, target)
        _fsync_dir(archive_dir)
        sha256 = _file_sha256(target)
    except (OSError, zipfile.BadZipFile, BlobError, MessageLogError, ValueError) as exc:
        temp.unlink(missing_ok=True)
        raise ArchiveError(f"cannot write archive {name}: {exc}") from exc
    try:
        store.add_archive(ArchiveEntry(first, last, name, sha256, now, frontier.to_bytes()))
    except MessageLogError as exc:
        raise ArchiveError(f"archive {name} was written but cannot be noted in the log: {exc}") from exc
    log.info("messagelog.archive.written", file=name, first_seq=first, last_seq=last, sha256=sha256)
    return ArchiveResult(target, len(entries) + 1, first, last, len(ends), len(digests), sha256, now)


def _write_records(
    store: MessageLogStore,
    bundle: zipfile.ZipFile,
    first: int,
    last: int,
    tree: CompactRange,
    ends: Mapping[int, bytes],
    members: dict[str, tuple[int, str]],
) -> tuple[bytes, set[str]]:
    """Write ``records.jsonl``, extending ``tree`` with the records' leaf hashes and checking
    each checkpoint's root on the way; return the chain start and the blob digests used."""
    chain_start: bytes | None = None
    digests: set[str] = set()
    expected = first
    with bundle.open(_member_info(_RECORDS), "w", force_zip64=True) as out:
        sink = _HashingWriter(out)
        for row in store.export_rows("records", first, last):
            if row.get("seq") != expected:
                raise ArchiveError(f"record {expected} is missing from the log; not archiving it")
            leaf = row.get("leaf_hash")
            if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
                raise ArchiveError(f"record {expected}'s stored leaf hash is damaged; not archiving it")
            if chain_start is None:
                chain_start = row.get("prev_hash")
            if row.get("body_storage") == "blob":
                digests.add(check_digest(row.get("body_blob")))
            sink.write(_row_line(row))
            tree.append(leaf)
            if expected in ends and tree.root() != ends[expected]:
                raise ArchiveError(
                    f"the log's leaves do not give checkpoint {expected}'s root; not archiving it"
                )
            expected += 1
    if expected != last + 1:
        raise ArchiveError(f"record {expected} is missing from the log; not archiving it")
    if not isinstance(chain_start, bytes) or len(chain_start) != HASH_SIZE:
        raise ArchiveError(f"record {first}'s previous-record hash is damaged; not archiving it")
    members[_RECORDS] = (sink.size, sink.sha256.hexdigest())
    return chain_start, digests


def _remove_unnoted(archive_dir: Path, origin: str, first: int, noted: set[str]) -> None:
    """Delete what an interrupted round left: temporary files, and archives of this log
    starting at ``first`` that the log never noted (nothing relies on them)."""
    for path in archive_dir.iterdir():
        if path.name.startswith(".") and path.name.endswith(f"{ARCHIVE_SUFFIX}.tmp"):
            path.unlink(missing_ok=True)
            continue
        match = _NAME.fullmatch(path.name)
        if (
            match is not None
            and path.name not in noted
            and match["origin"] == origin.replace("/", "_")
            and int(match["first"]) == first
        ):
            log.warning("messagelog.archive.unnoted_removed", file=path.name)
            path.unlink(missing_ok=True)


# -- reading -------------------------------------------------------------------------


class _Unsound(Exception):
    """Internal: an archive is unsound; the reason, and the record concerned if any."""

    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.seq = seq


def _read_manifest(bundle: zipfile.ZipFile) -> _Manifest:
    try:
        info = bundle.getinfo(_MANIFEST)
    except KeyError as exc:
        raise _Unsound("it has no manifest") from exc
    if info.file_size > MAX_MANIFEST_BYTES:
        raise _Unsound(f"its manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        with bundle.open(info) as source:
            return _Manifest.parse(source.read(MAX_MANIFEST_BYTES + 1))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _Unsound(f"its manifest cannot be read ({exc})") from exc
    except ValueError as exc:
        raise _Unsound(str(exc)) from exc


def _check_members(bundle: zipfile.ZipFile, manifest: _Manifest) -> None:
    """Step 4: exactly the listed members (and blobs), each ``.jsonl`` as listed."""
    names = bundle.namelist()
    if len(names) != len(set(names)):
        raise _Unsound("it holds two members of the same name")
    blobs = [name for name in names if name.startswith(_BLOB_PREFIX)]
    others = set(names) - set(blobs) - {_MANIFEST}
    if others != set(_LISTED):
        raise _Unsound(f"its members are not the ones its manifest lists (found {', '.join(sorted(others))})")
    if len(blobs) != manifest.blobs:
        raise _Unsound(f"it holds {len(blobs)} blobs, its manifest says {manifest.blobs}")
    for blob in blobs:
        try:
            check_digest(blob[len(_BLOB_PREFIX) :])
        except ValueError as exc:
            raise _Unsound(f"its member {blob} is not named by a SHA-512") from exc
    for name, (size, sha256) in manifest.members.items():
        hasher, seen = hashlib.sha256(), 0
        try:
            with bundle.open(name) as source:
                while chunk := source.read(_CHUNK):
                    seen += len(chunk)
                    if seen > size:
                        break
                    hasher.update(chunk)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _Unsound(f"its member {name} cannot be read ({exc})") from exc
        if seen != size or hasher.hexdigest() != sha256:
            raise _Unsound(f"its member {name} is not the one its manifest lists (size or SHA-256 differ)")


def _lines(bundle: zipfile.ZipFile, name: str) -> Iterator[dict[str, Any]]:
    """The rows of a ``.jsonl`` member, decoded, each line bounded."""
    try:
        with bundle.open(name) as source:
            number = 0
            while line := source.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
                    raise _Unsound(f"line {number} of {name} is too long or unterminated")
                try:
                    raw = json.loads(line)
                    if not isinstance(raw, dict):
                        raise ValueError("not an object")
                    yield {str(key): _decode_value(value) for key, value in raw.items()}
                except ValueError as exc:
                    raise _Unsound(f"line {number} of {name} is not a row ({exc})") from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _Unsound(f"its member {name} cannot be read ({exc})") from exc


def _blob(bundle: zipfile.ZipFile, digest: str, seq: int, message_id: str) -> bytes:
    name = _BLOB_PREFIX + digest
    try:
        info = bundle.getinfo(name)
    except KeyError as exc:
        raise CorruptRecord(seq, message_id, f"its body blob {digest} is missing from the archive") from exc
    if info.file_size > MAX_BLOB_BYTES:
        raise CorruptRecord(seq, message_id, f"its body blob {digest} does not match: it is too large")
    try:
        with bundle.open(info) as source:
            data = source.read(MAX_BLOB_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CorruptRecord(seq, message_id, f"its body blob {digest} cannot be read ({exc})") from exc
    if body_digest(data) != digest:
        raise CorruptRecord(seq, message_id, f"its body blob {digest} does not match: it was changed")
    return data


def _col(columns: Mapping[str, Any], name: str) -> Any:
    """A column's value as read (validated by the constructor it goes to)."""
    return columns.get(name)


def _record(columns: Mapping[str, Any], bundle: zipfile.ZipFile) -> LogRecord:
    """A record from its archived columns, its blob body read from the archive."""
    seq = _col(columns, "seq")
    message_id = _col(columns, "message_id")
    shown = message_id if isinstance(message_id, str) else "unknown"
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise CorruptRecord(0, shown, f"an archived row has no record number ({seq!r})")
    storage = columns.get("body_storage", "inline")
    body = _col(columns, "body")
    if storage == "blob":
        try:
            digest = check_digest(_col(columns, "body_blob"))
        except ValueError as exc:
            raise CorruptRecord(seq, shown, f"its body blob reference is damaged ({exc})") from exc
        body = _blob(bundle, digest, seq, shown)
    try:
        logged_at = _col(columns, "logged_at")
        if not isinstance(logged_at, str):
            raise ValueError("its time is not text")
        direction = _col(columns, "direction")
        return LogRecord(
            seq=seq,
            prev_hash=_col(columns, "prev_hash"),
            record_hash=_col(columns, "record_hash"),
            direction=Direction(direction),
            message_id=message_id,
            client=_col(columns, "client"),
            service=_col(columns, "service"),
            logged_at=parse_time(logged_at),
            header=_col(columns, "header"),
            body=body,
            signature=_col(columns, "signature"),
            status=_col(columns, "status"),
            ocsp=_col(columns, "ocsp"),
            body_storage=storage,
        )
    except (ValueError, TypeError) as exc:
        raise CorruptRecord(seq, shown, f"the archived row is not a well-formed record ({exc})") from exc


def _checkpoint(columns: Mapping[str, Any]) -> Checkpoint:
    size = _col(columns, "size")
    shown = size if isinstance(size, int) and not isinstance(size, bool) else "?"
    extra = {name: columns[name] for name in ("signature", "signer_ocsp") if name in columns}
    try:
        gen_time = _col(columns, "gen_time")
        if not isinstance(gen_time, str):
            raise ValueError("its token time is not text")
        checkpoint = Checkpoint.from_stored(
            _col(columns, "body"),
            token=_col(columns, "token"),
            tsa=_col(columns, "tsa"),
            gen_time=parse_time(gen_time),
            **extra,
        )
    except (ValueError, TypeError) as exc:
        raise _Unsound(f"checkpoint {shown} is not well formed ({exc})") from exc
    if checkpoint.size != size or checkpoint.root != _col(columns, "root"):
        raise _Unsound(f"checkpoint {shown}: its body names another size or root than its row")
    return checkpoint


# -- verification --------------------------------------------------------------------


@dataclass
class _State:
    """What the archives verified so far leave for the next one."""

    frontier: CompactRange = field(default_factory=CompactRange)
    last_hash: bytes = GENESIS_HASH
    last_time: dt.datetime | None = None
    archives: int = 0
    records: int = 0
    checkpoints: int = 0
    omitted: int = 0
    last_seq: int = 0


@dataclass(frozen=True)
class _Found:
    path: Path
    manifest: _Manifest
    sha256: str


def verify_archive_dir(
    archive_dir: Path,
    *,
    check_signature: SignatureCheck,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    check_checkpoint_signature: CheckpointSignatureCheck | None = None,
) -> ArchiveReport:
    """Verify every archive in ``archive_dir`` (steps 1 to 7 of the module docstring).

    ``check_signature`` checks records' signatures; checkpoint signatures go to
    ``check_checkpoint_signature``, by default ``check_signature`` without the OCSP
    response.  Pure over the files and certificates: no clock, no network, nothing
    written.
    """

    def checkpoint_check(jws: str, digest: bytes, ocsp: bytes | None, at: dt.datetime) -> str:
        if check_checkpoint_signature is not None:
            return check_checkpoint_signature(jws, digest, ocsp, at)
        return check_signature(jws, digest, at)

    state = _State()
    archive_dir = Path(archive_dir)
    if not archive_dir.is_dir():
        return _report(state, ArchiveProblem(f"{archive_dir} is not a folder of archives"))
    try:
        found = _chain(archive_dir)
    except _Located as exc:
        return _report(state, ArchiveProblem(str(exc), exc.archive, exc.seq))
    for item in found:
        try:
            _verify_one(
                item, state, check_signature, checkpoint_check, tsa_certificates, roots, intermediates
            )
        except _Unsound as exc:
            return _report(state, ArchiveProblem(f"archive {item.path.name}: {exc}", item.path.name, exc.seq))
        state.archives += 1
        state.last_seq = item.manifest.last_seq
    return _report(state, None)


def _report(state: _State, problem: ArchiveProblem | None) -> ArchiveReport:
    return ArchiveReport(
        archives=state.archives,
        records=state.records,
        first_error=problem,
        checkpoints=state.checkpoints,
        bodies_omitted=state.omitted,
        last_seq=state.last_seq,
        last_record_hash=state.last_hash if state.archives else None,
    )


class _Located(Exception):
    def __init__(self, reason: str, archive: str | None = None, seq: int | None = None) -> None:
        super().__init__(reason)
        self.archive = archive
        self.seq = seq


def _chain(archive_dir: Path) -> list[_Found]:
    """Steps 1 to 3: read every manifest, order the files, check the SHA-256 chain."""
    # (1) each file a ZIP with a sound manifest, named as it says
    found: list[_Found] = []
    for path in sorted(archive_dir.iterdir()):
        if not path.name.endswith(ARCHIVE_SUFFIX) or path.name.startswith("."):
            continue
        try:
            with zipfile.ZipFile(path) as bundle:
                manifest = _read_manifest(bundle)
            sha256 = _file_sha256(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _Located(f"archive {path.name} is not a readable archive ({exc})", path.name) from exc
        except _Unsound as exc:
            raise _Located(f"archive {path.name}: {exc}", path.name) from exc
        if manifest.file_name != path.name:
            raise _Located(
                f"archive {path.name} was renamed: its manifest makes it {manifest.file_name}", path.name
            )
        found.append(_Found(path, manifest, sha256))
    found.sort(key=lambda item: (item.manifest.position, item.path.name))
    previous: _Found | None = None
    for item in found:
        name, manifest = item.path.name, item.manifest
        # (2) positions 1, 2, 3..., one origin, records following on
        expected_position = 1 if previous is None else previous.manifest.position + 1
        if previous is not None and manifest.position == previous.manifest.position:
            raise _Located(
                f"archives {previous.path.name} and {name} claim the same position {manifest.position}", name
            )
        if manifest.position != expected_position:
            after = "the start" if previous is None else previous.path.name
            missing = (
                f"archive {expected_position} is missing"
                if manifest.position == expected_position + 1
                else f"archives {expected_position} to {manifest.position - 1} are missing"
            )
            raise _Located(f"{missing}: {name} (archive {manifest.position}) follows {after}", name)
        if previous is not None and manifest.origin != previous.manifest.origin:
            raise _Located(f"archive {name} is of {manifest.origin}, not {previous.manifest.origin}", name)
        expected_first = 1 if previous is None else previous.manifest.last_seq + 1
        if manifest.first_seq != expected_first:
            raise _Located(
                f"archive {name} starts at record {manifest.first_seq}, not at record {expected_first}",
                name,
                expected_first,
            )
        # (3) the SHA-256 of the file before it
        expected_sha = GENESIS_ARCHIVE_SHA256 if previous is None else previous.sha256
        if manifest.prev_archive_sha256 != expected_sha:
            if previous is None:
                raise _Located(f"archive {name} is the first but does not start the archive chain", name)
            raise _Located(
                f"archive {previous.path.name} was changed or replaced: its SHA-256 {previous.sha256} "
                f"is not the {manifest.prev_archive_sha256} that the next archive {name} records",
                previous.path.name,
            )
        previous = item
    return found


def _verify_one(
    item: _Found,
    state: _State,
    check_signature: SignatureCheck,
    checkpoint_check: CheckpointSignatureCheck,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
) -> None:
    manifest = item.manifest
    try:
        bundle = zipfile.ZipFile(item.path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _Unsound(f"it is not a readable archive ({exc})") from exc
    with bundle:
        # (4) the members
        _check_members(bundle, manifest)
        # (6) the frontier it starts from, and its checkpoints
        if manifest.frontier != state.frontier:
            raise _Unsound("its frontier is not the tree the archives before it leave")
        if manifest.chain_start != state.last_hash:
            raise _Unsound("its chain start is not the last record hash of the archive before it")
        checkpoints: dict[int, Checkpoint] = {}
        for columns in _lines(bundle, _CHECKPOINTS):
            checkpoint = _checkpoint(columns)
            name = f"checkpoint {checkpoint.size}"
            if checkpoint.origin != manifest.origin:
                raise _Unsound(f"{name} names origin {checkpoint.origin}, not {manifest.origin}")
            if (
                not manifest.first_seq <= checkpoint.size <= manifest.last_seq
                or checkpoint.size in checkpoints
            ):
                raise _Unsound(f"{name} does not end inside the archive's records, or appears twice")
            if state.last_time is not None and checkpoint.time < state.last_time:
                raise _Unsound(f"{name} is dated before the checkpoint before it")
            state.last_time = checkpoint.time
            try:
                check_signed_checkpoint(
                    checkpoint, checkpoint_check, tsa_certificates, roots, intermediates, name
                )
            except CheckpointFailure as exc:
                raise _Unsound(str(exc), exc.seq) from exc
            checkpoints[checkpoint.size] = checkpoint
        if manifest.last_seq not in checkpoints:
            raise _Unsound(f"no checkpoint ends at its last record {manifest.last_seq}")
        # (5) records, with (6) roots and (7) paths checked as each one is accepted
        paths = _paths(bundle)
        tree = state.frontier.copy()
        progress = _Progress(state.last_hash)

        def accepted(record: LogRecord) -> None:
            # (6) the root of every checkpoint this record completes
            tree.append(record.leaf_hash)
            ended = checkpoints.get(record.seq)
            if ended is not None and tree.root() != ended.root:
                raise _Unsound(
                    f"checkpoint {record.seq}: the Merkle root over records 1 to {record.seq} "
                    "is not its root",
                    record.seq,
                )
            # (7) its path to a checkpoint of this archive
            row = next(paths, None)
            if row is None or row[0] != record.seq:
                raise _Unsound(f"record {record.seq} has no path to a checkpoint", record.seq)
            size, path = row[1], row[2]
            if size not in checkpoints or size < record.seq:
                raise _Unsound(
                    f"record {record.seq}: its path names no checkpoint of this archive covering it",
                    record.seq,
                )
            try:
                verify_inclusion(record.leaf_hash, record.seq - 1, size, path, checkpoints[size].root)
            except MerkleError as exc:
                raise _Unsound(
                    f"record {record.seq}: its path to checkpoint {size} does not verify: {exc}", record.seq
                ) from exc
            progress.records += 1
            progress.omitted += not record.body_kept
            progress.last_hash = record.record_hash

        report = verify_records(
            _accepting(_records(bundle), accepted),
            check_signature,
            first_seq=manifest.first_seq,
            chain_start=state.last_hash,
        )
        if report.first_error is not None:
            raise _Unsound(report.first_error.reason, report.first_error.seq)
        if tree.size != manifest.last_seq:
            raise _Unsound(f"it holds records up to {tree.size}, its manifest says {manifest.last_seq}")
        if next(paths, None) is not None:
            raise _Unsound("it holds a path for a record it does not hold")
    state.frontier = tree
    state.last_hash = progress.last_hash
    state.records += progress.records
    state.omitted += progress.omitted
    state.checkpoints += len(checkpoints)


@dataclass
class _Progress:
    last_hash: bytes
    records: int = 0
    omitted: int = 0


def _records(bundle: zipfile.ZipFile) -> Iterator[LogRecord]:
    for columns in _lines(bundle, _RECORDS):
        yield _record(columns, bundle)


def _accepting(records: Iterator[LogRecord], accepted: Callable[[LogRecord], None]) -> Iterator[LogRecord]:
    """``records``, calling ``accepted`` on each once the consumer asks for the next one
    (that is, once :func:`verify_records` has found nothing wrong with it)."""
    for record in records:
        yield record
        accepted(record)


def _paths(bundle: zipfile.ZipFile) -> Iterator[tuple[int, int, list[bytes]]]:
    for columns in _lines(bundle, _PATHS):
        seq, size, path = _col(columns, "seq"), _col(columns, "checkpoint_size"), _col(columns, "path")
        if (
            isinstance(seq, bool)
            or not isinstance(seq, int)
            or isinstance(size, bool)
            or not isinstance(size, int)
        ):
            raise _Unsound(f"a path row names no record or checkpoint ({seq!r}, {size!r})")
        try:
            yield seq, size, decode_path(path)
        except ValueError as exc:
            raise _Unsound(f"the path of record {seq} is damaged ({exc})", seq) from exc


# -- retention -----------------------------------------------------------------------


def prune_archived(
    store: MessageLogStore,
    archive_dir: Path,
    *,
    now: dt.datetime,
    retention_s: float = DEFAULT_RETENTION_S,
    batch: int = DEFAULT_PRUNE_BATCH,
) -> PruneResult:
    """Remove from the live log the records older than ``retention_s`` that are in a
    sound archive (see the module docstring), ``batch`` records per transaction, then
    the blobs only they used.  Blocking; raises :class:`ArchiveError` when an archive
    the records would rely on is missing or unsound (they stay)."""
    require_utc(now, "now")
    _positive(batch, "batch")
    if isinstance(retention_s, bool) or not isinstance(retention_s, int | float) or retention_s < 0:
        raise ValueError("retention_s must be a non-negative number of seconds")
    try:
        horizon, _ = store.prune_horizon()
        entries = store.archives()
        archived = entries[-1].last_seq if entries else 0
        young = store.first_logged_since(now - dt.timedelta(seconds=retention_s), after_seq=horizon)
        through = archived if young is None else min(archived, young - 1)
        removed = 0
        if through > horizon:
            for entry in entries:
                if entry.last_seq > horizon and entry.first_seq <= through:
                    _check_written(
                        store,
                        Path(archive_dir),
                        entry,
                        max(horizon, entry.first_seq - 1) + 1,
                        min(through, entry.last_seq),
                    )
            while horizon < through:
                step = min(through, horizon + batch)
                removed += store.prune_records(step)
                horizon = step
            log.info("messagelog.archive.pruned", records=removed, through_seq=through)
        deleted = 0
        while True:
            examined, gone = store.collect_blobs()
            deleted += gone
            if not examined:
                break
    except MessageLogError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"cannot remove archived records from the log: {exc}") from exc
    return PruneResult(removed, store.prune_horizon()[0], deleted)


def _check_written(
    store: MessageLogStore, archive_dir: Path, entry: ArchiveEntry, first: int, last: int
) -> None:
    """Re-read ``entry``'s file before records ``first..last`` go: the noted SHA-256, a sound
    manifest and members, and those very records in it."""
    path = archive_dir / entry.file_name
    where = f"archive {entry.file_name}"
    try:
        if _file_sha256(path) != entry.sha256:
            raise ArchiveError(f"{where} was changed since it was written; records {first} to {last} stay")
        with zipfile.ZipFile(path) as bundle:
            manifest = _read_manifest(bundle)
            if (manifest.first_seq, manifest.last_seq) != (entry.first_seq, entry.last_seq):
                raise ArchiveError(f"{where} does not hold the records the log noted for it")
            _check_members(bundle, manifest)
            live = {
                row["seq"]: (row["record_hash"], row["leaf_hash"])
                for row in store.export_rows("records", first, last)
            }
            held = 0
            for columns in _lines(bundle, _RECORDS):
                seq = columns.get("seq")
                if isinstance(seq, int) and first <= seq <= last:
                    if live.get(seq) != (columns.get("record_hash"), columns.get("leaf_hash")):
                        raise ArchiveError(f"{where} holds another record {seq} than the log")
                    held += 1
            if held != last - first + 1 or len(live) != held:
                raise ArchiveError(f"{where} does not hold every one of records {first} to {last}")
    except FileNotFoundError as exc:
        raise ArchiveError(f"{where} is missing from {archive_dir}; records {first} to {last} stay") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ArchiveError(f"{where} cannot be read ({exc}); records {first} to {last} stay") from exc
    except _Unsound as exc:
        raise ArchiveError(f"{where}: {exc}; records {first} to {last} stay") from exc


# -- the asyncio shell ---------------------------------------------------------------


class Archiver:
    """Archives the log at ``store_path`` into ``archive_dir`` every ``interval_s`` and then
    applies retention; the blocking work runs on a thread of its own, with its own store
    connection (WAL lets it work beside the writer and the timestamper).

    A round archives everything up to the last checkpoint (one file per ``max_records``),
    then prunes.  A failed round is logged (:attr:`last_error`) and tried again at the
    next interval; the first round runs at :meth:`start`.
    """

    def __init__(
        self,
        store_path: LogLocation,
        archive_dir: Path,
        *,
        clock: Clock,
        interval_s: float = DEFAULT_INTERVAL_S,
        retention_s: float = DEFAULT_RETENTION_S,
        blob_root: Path | None = None,
        max_records: int = DEFAULT_MAX_RECORDS,
        prune_batch: int = DEFAULT_PRUNE_BATCH,
    ) -> None:
        for name, value in (("interval_s", interval_s), ("retention_s", retention_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        _positive(max_records, "max_records")
        _positive(prune_batch, "prune_batch")
        self._store_path = store_path if isinstance(store_path, PostgresLogShard) else Path(store_path)
        self._archive_dir = Path(archive_dir)
        self._clock = clock
        self._interval_s = float(interval_s)
        self._retention_s = float(retention_s)
        self._blob_root = blob_root
        self._max_records = max_records
        self._prune_batch = prune_batch
        self._thread = StoreThread("archiver", error=ArchiveError)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        #: Why the last round failed; None after a round that succeeded.
        self.last_error: str | None = None

    async def start(self) -> None:
        """Open the store and start the rounds (the first one at once)."""
        if self._task is not None or self._closed:
            raise RuntimeError("an archiver starts once")
        await self._thread.open(lambda: MessageLogStore.open(self._store_path, blob_root=self._blob_root))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="xweg-archiver")

    async def close(self) -> None:
        """Stop the rounds (waiting for blocking work in flight) and close the store."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._thread.close()

    async def archive_now(self) -> ArchiveResult | None:
        """Write the next archive now (see :func:`write_archive`); None if nothing is due."""
        async with self._lock:
            return await self._thread.run(self._archive, self._clock.now())

    async def prune_now(self) -> PruneResult:
        """Apply retention now (see :func:`prune_archived`)."""
        async with self._lock:
            return await self._thread.run(self._prune, self._clock.now())

    async def run_round(self) -> list[ArchiveResult]:
        """Archive everything due, then apply retention; the archives written."""
        written: list[ArchiveResult] = []
        while (result := await self.archive_now()) is not None:
            written.append(result)
        await self.prune_now()
        return written

    async def _run(self) -> None:
        while True:
            try:
                await self.run_round()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the loop die: log, remember, retry
                log.exception("messagelog.archive.round_failed")
                self.last_error = str(exc)
            await asyncio.sleep(self._interval_s)

    def _archive(self, now: dt.datetime) -> ArchiveResult | None:
        return write_archive(self._thread.store, self._archive_dir, now=now, max_records=self._max_records)

    def _prune(self, now: dt.datetime) -> PruneResult:
        return prune_archived(
            self._thread.store,
            self._archive_dir,
            now=now,
            retention_s=self._retention_s,
            batch=self._prune_batch,
        )
