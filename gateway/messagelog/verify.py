"""Offline verification of a message log, record by record, stopping at the first problem.

For each record, in order (the step numbers appear in the code):

1. its ``seq`` continues the log: 1, 2, 3... with none missing or out of order (after
   the records archived and removed from the file, if any);
2. its ``prev_hash`` is the previous record's ``record_hash`` (genesis for record 1; the
   hash the log kept of the last removed record for the first one after them);
3. its ``record_hash`` is recomputed from its content (nothing changed after logging);
4. its header parses as a request or response header (by direction), is in canonical
   form, and its ``body_sha512``/``body_size`` match the stored body (a blob read back
   from the blob store, where a missing or changed blob is named; a body the log
   omitted by policy is not there to check, and is counted in ``bodies_omitted``);
5. its signature covers the header's digest (``request_digest``/``response_digest``),
   checked by the caller's :data:`SignatureCheck` at the time the record was logged;
6. the record agrees with what was signed: its message id (and, for a request, client
   and service; for a response, status) equal the signed header's, and the signer is
   the client's member (request) or the service provider's member (response).

Verification is pure over the records and a signature check; certificate and OCSP
questions belong to that check (the audit command builds one on ``trust.signatures``).

A chain alone cannot show that records were cut off the end of the log; the timestamped
checkpoints can.  :func:`verify_checkpoints` checks them, stopping at the first problem:

1. every record's Merkle leaf hash is recomputed from its content, and equals the leaf
   hash stored beside it (records numbered 1, 2, 3... with none missing);
2. for each checkpoint, smallest first:
   a. its stored body parses, in canonical form, and names the size and root of its row;
   b. it names the same origin as the others (and as the log's ``server_id``, if set);
   c. it covers no more records than the log holds (a cut-off tail shows here), and its
      time does not go back before the previous checkpoint's;
   d. the root recomputed over the leaves 1..size equals its root;
   e. its signature over SHA-512 of its body verifies at the checkpoint's time (the
      caller's :data:`CheckpointSignatureCheck`, given the signer's OCSP response) and
      the signer is the member that owns the origin server;
   f. its timestamp token verifies for SHA-256 of its body, signed by an approved TSA
      chaining to an approved CA (:func:`trust.timestamps.verify_timestamp_token`), the
      token's time is the one stored with it, and is not before the checkpoint's time
      less :data:`~gateway.messagelog.checkpoint.MAX_CLOCK_SKEW_S`;
   g. an RFC 9162 consistency proof from the previous checkpoint, computed from the
      records, verifies between the two roots: the log only grew;
3. every stored record path names a checkpoint that covers its record and verifies
   against that checkpoint's root (RFC 9162 inclusion proof);
4. every record up to the last checkpoint has such a path.

A log replaced by an older copy of itself (a rollback) is consistent in itself; only a
later checkpoint kept outside the log shows it.  :func:`check_kept_checkpoint` holds
the log against such a checkpoint file:

1. the kept checkpoint's signature (the origin's owner) and timestamp verify;
2. it is of this log (same origin);
3. the log holds at least as many records as it covers, and its latest checkpoint
   covers at least as many;
4. the root recomputed over the log's first records equals the kept root, and a
   consistency proof from the kept checkpoint to the log's latest one verifies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from core.canonical import canonical_json, request_digest, response_digest
from core.identifiers import IdentifierError, ServiceId, parse_client_slash
from core.messages import MessageError, RequestHeader, ResponseHeader, sha512
from gateway.messagelog.checkpoint import MAX_CLOCK_SKEW_S, Checkpoint, TreeLevels
from gateway.messagelog.errors import CorruptRecord, MessageLogError
from gateway.messagelog.record import GENESIS_HASH, Direction, LogRecord, chain_hash, encode_record
from gateway.messagelog.store import LogLocation, MessageLogStore
from trust.merkle import MerkleError, verify_consistency, verify_inclusion
from trust.timestamps import TimestampError, verify_timestamp_token

__all__ = [
    "SignatureCheck",
    "CheckpointSignatureCheck",
    "RecordProblem",
    "CheckpointProblem",
    "LogReport",
    "CheckpointReport",
    "verify_records",
    "verify_checkpoints",
    "verify_log_file",
    "check_kept_checkpoint",
    "check_signed_checkpoint",
    "CheckpointFailure",
]

#: ``(compact JWS, digest, time of logging) -> signer's member id (slash form)``; raises
#: any exception, whose text becomes the reason, when the signature does not hold.
SignatureCheck = Callable[[str, bytes, dt.datetime], str]
#: ``(compact JWS, digest, signer's DER OCSP response or None, checkpoint time) -> signer's
#: member id (slash form)``; raises, with the reason as its text, when the signature does not hold.
CheckpointSignatureCheck = Callable[[str, bytes, bytes | None, dt.datetime], str]

_SMALLEST_SEQ = -(2**63)


@dataclass(frozen=True)
class RecordProblem:
    """The first thing found wrong: which record, and why, in words for an auditor."""

    seq: int
    message_id: str
    reason: str

    def __post_init__(self) -> None:
        # Any integer: a tampered file may hold a negative seq, and that is the problem named.
        if isinstance(self.seq, bool) or not isinstance(self.seq, int):
            raise ValueError("seq must be an integer")
        if not isinstance(self.message_id, str):
            raise ValueError("message_id must be a string")
        if not isinstance(self.reason, str) or not self.reason:
            raise ValueError("a problem needs a reason")

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "message_id": self.message_id, "reason": self.reason}


@dataclass(frozen=True)
class CheckpointProblem:
    """The first thing found wrong with the checkpoints, timestamps or record paths.

    ``seq`` (and ``message_id``, when known) name the record concerned when there is
    one (a changed leaf, a bad path); the fields mirror :class:`RecordProblem`'s.
    """

    reason: str
    seq: int | None = None
    message_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not self.reason:
            raise ValueError("a problem needs a reason")
        if self.seq is not None and (isinstance(self.seq, bool) or not isinstance(self.seq, int)):
            raise ValueError("seq must be an integer or None")
        if self.message_id is not None and not isinstance(self.message_id, str):
            raise ValueError("message_id must be a string or None")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "checkpoint", "seq": self.seq, "message_id": self.message_id, "reason": self.reason}


def _count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer")


@dataclass(frozen=True)
class LogReport:
    """``records``: how many records verified before the first problem (all, if none).

    ``checkpoints`` and ``timestamped_records`` count verified checkpoints and records
    with a verified path to one; ``tree_size`` and ``root`` are the latest verified
    checkpoint's (0 and None when there is none, or checkpoints were not checked).
    """

    records: int
    first_error: RecordProblem | CheckpointProblem | None
    checkpoints: int = 0
    timestamped_records: int = 0
    tree_size: int = 0
    root: bytes | None = None
    #: Records whose body the log did not keep (checked in everything but the body).
    bodies_omitted: int = 0
    #: Records archived and removed from the file; the chain continues after them.
    pruned_records: int = 0

    def __post_init__(self) -> None:
        _count(self.records, "records")
        _count(self.checkpoints, "checkpoints")
        _count(self.timestamped_records, "timestamped_records")
        _count(self.tree_size, "tree_size")
        _count(self.bodies_omitted, "bodies_omitted")
        _count(self.pruned_records, "pruned_records")
        _check_root(self.root)
        if self.first_error is not None and not isinstance(
            self.first_error, RecordProblem | CheckpointProblem
        ):
            raise ValueError("first_error must be a RecordProblem, a CheckpointProblem or None")

    @property
    def ok(self) -> bool:
        return self.first_error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "timestamped_records": self.timestamped_records,
            "checkpoints": self.checkpoints,
            "tree_size": self.tree_size,
            "root": None if self.root is None else self.root.hex(),
            "bodies_omitted": self.bodies_omitted,
            "pruned_records": self.pruned_records,
            "first_error": None if self.first_error is None else self.first_error.to_dict(),
        }


def _check_root(root: object) -> None:
    if root is not None and (not isinstance(root, bytes) or len(root) != 32):
        raise ValueError("root must be 32 bytes or None")


@dataclass(frozen=True)
class CheckpointReport:
    """What :func:`verify_checkpoints` found: checkpoints verified, records with a verified
    path to one, and the first problem in words (``first_error_seq``: its record, if any);
    ``tree_size`` and ``root`` of the latest verified checkpoint."""

    checkpoints: int
    timestamped_records: int
    first_error: str | None
    first_error_seq: int | None = None
    tree_size: int = 0
    root: bytes | None = None

    def __post_init__(self) -> None:
        _count(self.checkpoints, "checkpoints")
        _count(self.timestamped_records, "timestamped_records")
        _count(self.tree_size, "tree_size")
        _check_root(self.root)
        if self.first_error is not None and (not isinstance(self.first_error, str) or not self.first_error):
            raise ValueError("first_error must be a non-empty string or None")

    @property
    def ok(self) -> bool:
        return self.first_error is None

    @property
    def problem(self) -> CheckpointProblem | None:
        return None if self.first_error is None else CheckpointProblem(self.first_error, self.first_error_seq)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoints": self.checkpoints,
            "timestamped_records": self.timestamped_records,
            "tree_size": self.tree_size,
            "root": None if self.root is None else self.root.hex(),
            "first_error": self.first_error,
        }


class _Problem(Exception):
    """Internal: one check failed; carries the plain-words reason."""


def verify_records(
    records: Iterable[LogRecord],
    check_signature: SignatureCheck,
    *,
    first_seq: int = 1,
    chain_start: bytes = GENESIS_HASH,
) -> LogReport:
    """Check ``records`` (in log order) against the six steps; stop at the first problem.

    A :class:`CorruptRecord` raised while iterating (a row that is not even a record)
    is reported as that record's problem.  A log whose oldest records were archived and
    removed starts at ``first_seq``, its chain at ``chain_start`` (the hash of the last
    record removed).  Records whose body was omitted are checked in everything but the
    body and counted in ``bodies_omitted``.
    """
    verified = 0
    omitted = 0
    expected_seq = first_seq
    prev_hash = chain_start
    iterator: Iterator[LogRecord] = iter(records)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return LogReport(verified, None, bodies_omitted=omitted)
        except CorruptRecord as exc:
            return LogReport(verified, _problem(exc.seq, exc.message_id, exc.reason), bodies_omitted=omitted)
        try:
            _check(record, expected_seq, prev_hash, check_signature)
        except _Problem as exc:
            problem = _problem(record.seq, record.message_id, str(exc))
            return LogReport(verified, problem, bodies_omitted=omitted)
        verified += 1
        omitted += not record.body_kept
        expected_seq = record.seq + 1
        prev_hash = record.record_hash


def _ignoring_ocsp(check_signature: SignatureCheck) -> CheckpointSignatureCheck:
    def check(jws: str, digest: bytes, ocsp: bytes | None, at: dt.datetime) -> str:
        return check_signature(jws, digest, at)

    return check


def verify_log_file(
    path: LogLocation,
    check_signature: SignatureCheck,
    *,
    tsa_certificates: Sequence[x509.Certificate] | None = None,
    roots: Sequence[x509.Certificate] = (),
    intermediates: Sequence[x509.Certificate] = (),
    check_checkpoint_signature: CheckpointSignatureCheck | None = None,
    kept: Sequence[Checkpoint] = (),
) -> LogReport:
    """Verify the log at ``path`` (a file or a PostgreSQL shard), opened read-only (it is
    never changed or created).

    Records first (:func:`verify_records`); then, if ``tsa_certificates`` is given (the
    approved TSAs; ``roots`` and ``intermediates`` the CAs they chain to), checkpoints,
    their signatures, timestamps and consistency, and record paths
    (:func:`verify_checkpoints`); checkpoint signatures go to
    ``check_checkpoint_signature``, by default ``check_signature`` (without the OCSP
    response).  Last, the log must be consistent with every checkpoint in ``kept``
    (checkpoint files an auditor kept, :func:`check_kept_checkpoint`).  The report's
    ``first_error`` is the first problem of any kind.
    """
    checkpoint_check = check_checkpoint_signature or _ignoring_ocsp(check_signature)
    with MessageLogStore.open_readonly(path) as store:
        # Records archived and removed: the chain continues from the last one's hash.
        pruned, chain_start = store.prune_horizon()
        # From SQLite's smallest integer, not 1: a row moved below 1 must be seen, not skipped.
        report = verify_records(
            store.iter_records(start_seq=_SMALLEST_SEQ),
            check_signature,
            first_seq=pruned + 1,
            chain_start=chain_start,
        )
        report = dataclasses.replace(report, pruned_records=pruned)
        if tsa_certificates is None or not report.ok:
            return report
        checked = verify_checkpoints(
            store,
            tsa_certificates=tsa_certificates,
            roots=roots,
            intermediates=intermediates,
            check_signature=checkpoint_check,
        )
        problem = checked.problem
        if problem is None:
            for checkpoint in kept:
                reason = check_kept_checkpoint(
                    store,
                    checkpoint,
                    check_signature=checkpoint_check,
                    tsa_certificates=tsa_certificates,
                    roots=roots,
                    intermediates=intermediates,
                )
                if reason is not None:
                    problem = CheckpointProblem(reason)
                    break
    return LogReport(
        records=report.records,
        first_error=problem,
        checkpoints=checked.checkpoints,
        timestamped_records=checked.timestamped_records,
        tree_size=checked.tree_size,
        root=checked.root,
        bodies_omitted=report.bodies_omitted,
        pruned_records=report.pruned_records,
    )


class CheckpointFailure(Exception):
    """One checkpoint check failed; the reason, and the record concerned if any."""

    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.seq = seq


@dataclass
class _Progress:
    checkpoints: int = 0
    timestamped_records: int = 0
    latest: Checkpoint | None = None


def verify_checkpoints(
    store: MessageLogStore,
    *,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    check_signature: CheckpointSignatureCheck,
) -> CheckpointReport:
    """Check the log's checkpoints, their signatures, timestamps and consistency, and every
    record's path (steps 1 to 4 of the module docstring); stop at the first problem.

    Pure over what ``store`` holds, the certificates given and ``check_signature``: no
    clock, no network.
    """
    progress = _Progress()
    try:
        _check_checkpoints(store, tsa_certificates, roots, intermediates, check_signature, progress)
    except CheckpointFailure as exc:
        return _checkpoint_report(progress, str(exc), exc.seq)
    except MessageLogError as exc:  # a row that cannot even be read back
        return _checkpoint_report(progress, str(exc), getattr(exc, "seq", None))
    return _checkpoint_report(progress, None, None)


def _checkpoint_report(progress: _Progress, reason: str | None, seq: int | None) -> CheckpointReport:
    latest = progress.latest
    return CheckpointReport(
        progress.checkpoints,
        progress.timestamped_records,
        reason,
        seq,
        tree_size=0 if latest is None else latest.size,
        root=None if latest is None else latest.root,
    )


def check_signed_checkpoint(
    checkpoint: Checkpoint,
    check_signature: CheckpointSignatureCheck,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    name: str,
) -> None:
    """Steps (2e) and (2f): the owner's signature and the timestamp of one checkpoint.

    Shared with archive verification; raises :class:`CheckpointFailure`.
    """
    # (2e) signed by the member that owns the origin server, at the checkpoint's time
    try:
        signer = check_signature(
            checkpoint.signature, checkpoint.digest(), checkpoint.signer_ocsp, checkpoint.time
        )
    except Exception as exc:
        raise CheckpointFailure(f"{name}: its signature does not verify: {exc}") from exc
    if signer != checkpoint.owner:
        raise CheckpointFailure(
            f"{name} is signed by {signer}, not by the origin server's owner {checkpoint.owner}; "
            "it was not made by this log's server"
        )
    # (2f) the timestamp token
    try:
        info = verify_timestamp_token(
            checkpoint.token,
            imprint=checkpoint.imprint(),
            tsa_certificates=tsa_certificates,
            roots=roots,
            intermediates=intermediates,
        )
    except TimestampError as exc:
        raise CheckpointFailure(f"{name}: its timestamp does not verify: {exc}") from exc
    if info.gen_time != checkpoint.gen_time:
        raise CheckpointFailure(
            f"{name}: its token's time {info.gen_time.isoformat()} is not the stored "
            f"{checkpoint.gen_time.isoformat()}"
        )
    if info.gen_time < checkpoint.time - dt.timedelta(seconds=MAX_CLOCK_SKEW_S):
        raise CheckpointFailure(
            f"{name}: its token's time {info.gen_time.isoformat()} is more than {MAX_CLOCK_SKEW_S:g} s "
            f"before the checkpoint's own time {checkpoint.time.isoformat()}"
        )


def _recomputed_leaves(store: MessageLogStore) -> list[bytes]:
    """Step (1): every record's leaf hash from its content, checked against the stored one.

    Records archived and removed count with their kept leaf hashes (a changed one shows
    in the root of a checkpoint that covers it).
    """
    leaves: list[bytes] = store.leaf_hashes(store.prune_horizon()[0])
    for record in store.iter_records(start_seq=_SMALLEST_SEQ):
        if record.seq != len(leaves) + 1:
            raise CheckpointFailure(
                f"record {len(leaves) + 1} is missing; leaves must be records 1, 2, 3...", len(leaves) + 1
            )
        leaves.append(record.leaf_hash)
    for seq, (computed, stored) in enumerate(zip(leaves, store.leaf_hashes(len(leaves)), strict=True), 1):
        if computed != stored:
            raise CheckpointFailure(
                f"record {seq}: its stored leaf hash is not the hash of its content; "
                "the record or its leaf hash was changed after it was logged",
                seq,
            )
    return leaves


def _check_checkpoints(
    store: MessageLogStore,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    check_signature: CheckpointSignatureCheck,
    progress: _Progress,
) -> None:
    # (1) leaf hashes recomputed from the records, compared with the stored ones
    leaves = _recomputed_leaves(store)
    tree = TreeLevels(leaves)

    # (2) each checkpoint
    checkpoints = store.checkpoints()
    origin = store.get_meta("server_id") or (checkpoints[0].origin if checkpoints else None)
    previous: Checkpoint | None = None
    by_size: dict[int, Checkpoint] = {}
    for checkpoint in checkpoints:
        name = f"checkpoint {checkpoint.size}"
        # (2a) body parsed and matched its row in the store (CorruptCheckpoint otherwise)
        # (2b) one origin
        if checkpoint.origin != origin:
            raise CheckpointFailure(f"{name} names origin {checkpoint.origin}, not this log's {origin}")
        # (2c) within the log, in time order
        if checkpoint.size > len(leaves):
            raise CheckpointFailure(
                f"{name} covers {checkpoint.size} records but the log holds only {len(leaves)}; "
                "records were removed from its end"
            )
        if previous is not None and checkpoint.time < previous.time:
            raise CheckpointFailure(f"{name} is dated before checkpoint {previous.size}")
        # (2d) the root over leaves 1..size
        if tree.range_hash(0, checkpoint.size) != checkpoint.root:
            raise CheckpointFailure(
                f"{name}: the Merkle root over records 1 to {checkpoint.size} is not the checkpoint's root; "
                "a record it covers was changed, or the checkpoint was"
            )
        # (2e), (2f) signature and timestamp
        check_signed_checkpoint(checkpoint, check_signature, tsa_certificates, roots, intermediates, name)
        # (2g) the log only grew since the previous checkpoint
        if previous is not None:
            proof = tree.consistency_proof(previous.size, checkpoint.size)
            try:
                verify_consistency(previous.size, checkpoint.size, previous.root, checkpoint.root, proof)
            except MerkleError as exc:
                raise CheckpointFailure(
                    f"{name} is not consistent with checkpoint {previous.size}: {exc}"
                ) from exc
        by_size[checkpoint.size] = checkpoint
        previous = checkpoint
        progress.checkpoints += 1
        progress.latest = checkpoint

    # (3) every stored path verifies against its checkpoint (those of removed records went with them)
    expected = store.prune_horizon()[0] + 1
    for seq, size, path in store.iter_record_paths():
        checkpoint_of = by_size.get(size)
        if checkpoint_of is None:
            raise CheckpointFailure(
                f"record {seq}: its path names checkpoint {size}, which does not exist", seq
            )
        if not 1 <= seq <= min(size, len(leaves)):
            raise CheckpointFailure(
                f"record {seq}: its path names checkpoint {size}, which does not cover it", seq
            )
        # (4) ... and none is missing
        if seq != expected:
            raise CheckpointFailure(f"record {expected} has no path to a checkpoint", expected)
        try:
            verify_inclusion(leaves[seq - 1], seq - 1, size, path, checkpoint_of.root)
        except MerkleError as exc:
            raise CheckpointFailure(
                f"record {seq}: its path to checkpoint {size} does not verify: {exc}", seq
            ) from exc
        expected += 1
        progress.timestamped_records += 1
    # (4) every record up to the last checkpoint has a path
    if previous is not None and expected <= previous.size:
        raise CheckpointFailure(f"record {expected} has no path to a checkpoint", expected)


def check_kept_checkpoint(
    store: MessageLogStore,
    kept: Checkpoint,
    *,
    check_signature: CheckpointSignatureCheck,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
) -> str | None:
    """Whether the log is consistent with ``kept``, a checkpoint an auditor kept earlier.

    Returns None when it is, else the reason in words (the checklist of the module
    docstring).  A rollback (the file replaced by an older copy) or a rewritten history
    shows here even though the log is consistent in itself.
    """
    name = f"the kept checkpoint of {kept.size} records ({kept.time.isoformat()})"
    try:
        # (1) signature and timestamp
        check_signed_checkpoint(kept, check_signature, tsa_certificates, roots, intermediates, name)
        # (2) of this log
        origin = store.get_meta("server_id")
        latest = store.last_checkpoint()
        if origin is None and latest is not None:
            origin = latest.origin
        if origin is not None and kept.origin != origin:
            return f"{name} is of the log of {kept.origin}, not of {origin}"
        # (3) the log did not shrink
        held = store.last_seq()
        if held < kept.size:
            return (
                f"the log holds {held} records, fewer than the {kept.size} of {name}: "
                "it was rolled back to an older copy, or records were removed from its end"
            )
        if latest is None or latest.size < kept.size:
            covered = 0 if latest is None else latest.size
            return (
                f"the log's latest checkpoint covers {covered} records, fewer than the {kept.size} "
                f"of {name}: it was rolled back to an older copy"
            )
        # (4) the same history: the kept root over the log's first records, and a consistency proof
        leaves = _recomputed_leaves(store)
        tree = TreeLevels(leaves)
        if tree.range_hash(0, kept.size) != kept.root:
            return f"the log's first {kept.size} records are not those of {name}: its history was rewritten"
        try:
            verify_consistency(
                kept.size, latest.size, kept.root, latest.root, tree.consistency_proof(kept.size, latest.size)
            )
        except MerkleError as exc:
            return f"the log's checkpoint {latest.size} is not consistent with {name}: {exc}"
    except CheckpointFailure as exc:
        return str(exc)
    except MessageLogError as exc:
        return f"the log cannot be read to compare it with {name}: {exc}"
    return None


def _problem(seq: int, message_id: str, reason: str) -> RecordProblem:
    return RecordProblem(seq, message_id, f"record {seq} (message {message_id}): {reason}")


def _check(record: LogRecord, expected_seq: int, prev_hash: bytes, check_signature: SignatureCheck) -> None:
    # (1) seq continues the log
    if record.seq > expected_seq:
        missing = (
            f"record {expected_seq} is missing"
            if record.seq == expected_seq + 1
            else f"records {expected_seq} to {record.seq - 1} are missing"
        )
        raise _Problem(f"{missing}; the log jumps from record {expected_seq - 1} to record {record.seq}")
    if record.seq < expected_seq:
        raise _Problem(f"is out of order: it comes after record {expected_seq - 1}")

    # (2) prev_hash links to the previous record
    if record.prev_hash != prev_hash:
        if record.seq == 1:
            raise _Problem("does not start the hash chain (its previous-record hash is not the genesis hash)")
        raise _Problem(
            "does not continue the hash chain: its previous-record hash is not the hash of "
            f"record {record.seq - 1}"
        )

    # (3) record_hash matches the content
    if chain_hash(record.prev_hash, encode_record(record.seq, record.content)) != record.record_hash:
        raise _Problem("its content does not match its record hash; it was changed after it was logged")

    # (4) header parses, is canonical, and matches the body (unless the log omitted it)
    header = _parse_header(record)
    if record.body_kept and (
        len(record.body) != header.body_size or sha512(record.body) != header.body_sha512
    ):
        raise _Problem("body does not match the SHA-512 in its signed header")

    # (5) the signature covers the header's digest
    if isinstance(header, RequestHeader):
        digest = request_digest(header)
    else:
        digest = response_digest(header)
    try:
        signer = check_signature(record.signature, digest, record.logged_at)
    except Exception as exc:
        raise _Problem(f"signature does not verify: {exc}") from exc

    # (6a) the record's columns say what the signed header says
    _same("message id", record.message_id, header.message_id)
    if isinstance(header, RequestHeader):
        _same("client", record.client, header.client.slash())
        _same("service", record.service, header.service.slash())
    else:
        _same("status", str(record.status), str(header.status))

    # (6b) the right member signed
    try:
        if record.direction is Direction.REQUEST:
            role, member = "client's member", parse_client_slash(record.client).member.slash()
        else:
            role, member = "service provider's member", ServiceId.parse_slash(record.service).member.slash()
    except IdentifierError as exc:  # LogRecord validated these; kept for a clear reason anyway
        raise _Problem(f"names an invalid identifier: {exc}") from exc
    if signer != member:
        raise _Problem(f"was signed by {signer}, not by the {role} {member}")


def _parse_header(record: LogRecord) -> RequestHeader | ResponseHeader:
    kind = "request" if record.direction is Direction.REQUEST else "response"
    try:
        data = json.loads(record.header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Problem(f"its signed header is not valid JSON ({exc})") from exc
    try:
        header: RequestHeader | ResponseHeader
        if record.direction is Direction.REQUEST:
            header = RequestHeader.from_dict(data)
        else:
            header = ResponseHeader.from_dict(data)
    except MessageError as exc:
        raise _Problem(f"its signed header is not a valid {kind} header ({exc})") from exc
    # One header, one byte string: anything else would let two logs disagree on a leaf.
    if canonical_json(header.to_dict()) != record.header:
        raise _Problem(f"its {kind} header is not in canonical form")
    return header


def _same(what: str, column: str, signed: str) -> None:
    if column != signed:
        raise _Problem(f"its {what} ({column}) differs from the one in its signed header ({signed})")
