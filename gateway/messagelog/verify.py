"""Offline verification of a message log, record by record, stopping at the first problem.

For each record, in order (the step numbers appear in the code):

1. its ``seq`` continues the log: 1, 2, 3... with none missing or out of order;
2. its ``prev_hash`` is the previous record's ``record_hash`` (genesis for record 1);
3. its ``record_hash`` is recomputed from its content (nothing changed after logging);
4. its header parses as a request or response header (by direction), is in canonical
   form, and its ``body_sha512``/``body_size`` match the stored body;
5. its signature covers the header's digest (``request_digest``/``response_digest``),
   checked by the caller's :data:`SignatureCheck` at the time the record was logged;
6. the record agrees with what was signed: its message id (and, for a request, client
   and service; for a response, status) equal the signed header's, and the signer is
   the client's member (request) or the service provider's member (response).

Verification is pure over the records and a signature check; certificate and OCSP
questions belong to that check (the audit command builds one on ``trust.signatures``).
A chain alone cannot show that records were cut off the end of the log: the signed,
timestamped checkpoints that come with the Merkle tree will.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.canonical import canonical_json, request_digest, response_digest
from core.identifiers import IdentifierError, ServiceId, parse_client_slash
from core.messages import MessageError, RequestHeader, ResponseHeader, sha512
from gateway.messagelog.errors import CorruptRecord
from gateway.messagelog.record import GENESIS_HASH, Direction, LogRecord, chain_hash, encode_record
from gateway.messagelog.store import MessageLogStore

__all__ = ["SignatureCheck", "RecordProblem", "LogReport", "verify_records", "verify_log_file"]

#: ``(compact JWS, digest, time of logging) -> signer's member id (slash form)``; raises
#: any exception, whose text becomes the reason, when the signature does not hold.
SignatureCheck = Callable[[str, bytes, dt.datetime], str]

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
class LogReport:
    """``records``: how many records verified before the first problem (all, if none)."""

    records: int
    first_error: RecordProblem | None

    def __post_init__(self) -> None:
        if isinstance(self.records, bool) or not isinstance(self.records, int) or self.records < 0:
            raise ValueError("records must be a non-negative integer")
        if self.first_error is not None and not isinstance(self.first_error, RecordProblem):
            raise ValueError("first_error must be a RecordProblem or None")

    @property
    def ok(self) -> bool:
        return self.first_error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "first_error": None if self.first_error is None else self.first_error.to_dict(),
        }


class _Problem(Exception):
    """Internal: one check failed; carries the plain-words reason."""


def verify_records(records: Iterable[LogRecord], check_signature: SignatureCheck) -> LogReport:
    """Check ``records`` (in log order) against the six steps; stop at the first problem.

    A :class:`CorruptRecord` raised while iterating (a row that is not even a record)
    is reported as that record's problem.
    """
    verified = 0
    expected_seq = 1
    prev_hash = GENESIS_HASH
    iterator: Iterator[LogRecord] = iter(records)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return LogReport(verified, None)
        except CorruptRecord as exc:
            return LogReport(verified, _problem(exc.seq, exc.message_id, exc.reason))
        try:
            _check(record, expected_seq, prev_hash, check_signature)
        except _Problem as exc:
            return LogReport(verified, _problem(record.seq, record.message_id, str(exc)))
        verified += 1
        expected_seq = record.seq + 1
        prev_hash = record.record_hash


def verify_log_file(path: Path, check_signature: SignatureCheck) -> LogReport:
    """Verify the log file at ``path``, opened read-only (it is never changed or created)."""
    with MessageLogStore.open_readonly(path) as store:
        # From SQLite's smallest integer, not 1: a row moved below 1 must be seen, not skipped.
        return verify_records(store.iter_records(start_seq=_SMALLEST_SEQ), check_signature)


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

    # (4) header parses, is canonical, and matches the body
    header = _parse_header(record)
    if len(record.body) != header.body_size or sha512(record.body) != header.body_sha512:
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
