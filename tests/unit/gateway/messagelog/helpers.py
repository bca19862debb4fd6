"""Real message-log records for tests: core headers, real body hashes, ECDSA P-256 signatures.

The signature string is ``<member slash id>|<hex DER signature over the digest>``; the
real compact JWS check is wired by the audit command, not by the log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from core.canonical import b64, canonical_json, request_digest, response_digest
from core.identifiers import MemberId, ServiceId, SubsystemId
from core.messages import Protocol, RequestHeader, ResponseHeader, sha512
from gateway.messagelog.record import Direction, LogRecord, NewRecord
from gateway.messagelog.store import MessageLogStore
from trust.evidence import checkpoint_digest

__all__ = [
    "CLIENT",
    "SERVICE",
    "OTHER_MEMBER",
    "NOW",
    "Signers",
    "CHECKPOINT_SIGNERS",
    "Exchange",
    "make_exchange",
    "write_log",
    "rechain",
    "tamper",
    "read_column",
    "add_failing_trigger",
    "poisoned",
    "POISON",
]

CLIENT = SubsystemId("EE", "GOV", "70000001", "tax-office")
SERVICE = ServiceId(SubsystemId("EE", "GOV", "70000002", "population-register"), "person", "v1")
OTHER_MEMBER = MemberId("EE", "COM", "12345678")
NOW = dt.datetime(2025, 3, 4, 10, 0, 0, tzinfo=dt.UTC)


@dataclass
class Signers:
    """One P-256 key per member; ``check`` is a SignatureCheck over them."""

    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    calls: list[tuple[str, bytes, dt.datetime]] = field(default_factory=list)

    def key(self, member: str) -> ec.EllipticCurvePrivateKey:
        if member not in self.keys:
            self.keys[member] = ec.generate_private_key(ec.SECP256R1())
        return self.keys[member]

    def sign(self, member: str, digest: bytes) -> str:
        return f"{member}|{self.key(member).sign(digest, ec.ECDSA(hashes.SHA256())).hex()}"

    def sign_checkpoint(self, member: str) -> Callable[[bytes], tuple[str, bytes | None]]:
        """A timestamper's ``sign`` callable: ``member`` signs SHA-512 of the checkpoint body."""

        def sign(body: bytes) -> tuple[str, bytes | None]:
            return self.sign(member, checkpoint_digest(body)), None

        return sign

    def check_checkpoint(self, jws: str, digest: bytes, ocsp: bytes | None, at_time: dt.datetime) -> str:
        """A CheckpointSignatureCheck over these keys (no OCSP here)."""
        return self.check(jws, digest, at_time)

    def check(self, jws: str, digest: bytes, at_time: dt.datetime) -> str:
        self.calls.append((jws, digest, at_time))
        member, _, signature = jws.partition("|")
        if member not in self.keys:
            raise ValueError(f"no certificate is known for {member}")
        try:
            self.keys[member].public_key().verify(bytes.fromhex(signature), digest, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError) as exc:
            raise ValueError("the signature value does not match the message") from exc
        return member


@dataclass(frozen=True)
class Exchange:
    request_header: RequestHeader
    response_header: ResponseHeader
    request: NewRecord
    response: NewRecord


def make_exchange(
    signers: Signers,
    number: int,
    *,
    at: dt.datetime = NOW,
    request_signer: str | None = None,
) -> Exchange:
    """A signed request and its signed response, as the pipeline would log them."""
    message_id = f"{number:08x}-6c2e-4d1a-9f00-msg"
    body = f'{{"person":"{number}","query":"address"}}'.encode()
    request_header = RequestHeader(
        protocol=Protocol.REST,
        client=CLIENT,
        service=SERVICE,
        message_id=message_id,
        method="GET",
        path=f"/persons/{number}",
        query="",
        headers=(("accept", "application/json"),),
        body_sha512=sha512(body),
        body_size=len(body),
        user_id="EE37001011234",
    )
    digest = request_digest(request_header)
    request = NewRecord(
        direction=Direction.REQUEST,
        message_id=message_id,
        client=CLIENT.slash(),
        service=SERVICE.slash(),
        logged_at=at,
        header=canonical_json(request_header.to_dict()),
        body=body,
        signature=signers.sign(request_signer or CLIENT.member.slash(), digest),
    )
    answer = f'{{"person":"{number}","address":"Tallinn"}}'.encode()
    response_header = ResponseHeader(
        message_id=message_id,
        request_hash=b64(digest),
        status=200,
        headers=(("content-type", "application/json"),),
        body_sha512=sha512(answer),
        body_size=len(answer),
    )
    response = NewRecord(
        direction=Direction.RESPONSE,
        message_id=message_id,
        client=CLIENT.slash(),
        service=SERVICE.slash(),
        logged_at=at + dt.timedelta(milliseconds=40),
        header=canonical_json(response_header.to_dict()),
        body=answer,
        signature=signers.sign(SERVICE.member.slash(), response_digest(response_header)),
        status=200,
    )
    return Exchange(request_header, response_header, request, response)


def write_log(path: Path, signers: Signers, exchanges: int = 3) -> list[LogRecord]:
    """A good log file of ``exchanges`` request/response pairs (records 1..2n), closed."""
    with MessageLogStore.open(path) as store:
        records: list[NewRecord] = []
        for number in range(1, exchanges + 1):
            exchange = make_exchange(signers, number, at=NOW + dt.timedelta(seconds=number))
            records += [exchange.request, exchange.response]
        return store.append(records)


def tamper(path: Path, sql: str, *params: object) -> None:
    """Change the file behind the log's back, as someone with write access could."""
    connection = sqlite3.connect(path)
    try:
        connection.execute(sql, params)
        connection.commit()
    finally:
        connection.close()


def read_column(path: Path, column: str, seq: int) -> object:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT {column} FROM records WHERE seq = ?", (seq,)).fetchone()[0]
    finally:
        connection.close()


def rechain(path: Path) -> None:
    """Recompute every hash after a tamper: an attacker who knows the chain's rule.

    What is left to catch such a change are the body digests and signatures.
    """
    with MessageLogStore.open(path) as store:
        stored = list(store.iter_records())
    connection = sqlite3.connect(path)
    try:
        prev_hash = bytes(32)
        for record in stored:
            placed = LogRecord.place(record.seq, prev_hash, record.content)
            connection.execute(
                "UPDATE records SET prev_hash = ?, record_hash = ? WHERE seq = ?",
                (placed.prev_hash, placed.record_hash, record.seq),
            )
            prev_hash = placed.record_hash
        connection.commit()
    finally:
        connection.close()


POISON = "poison-message"


def add_failing_trigger(path: Path) -> None:
    """Make SQLite itself fail mid-transaction whenever it inserts the POISON message."""
    tamper(
        path,
        f"CREATE TRIGGER fail_insert BEFORE INSERT ON records WHEN NEW.message_id = '{POISON}' "
        "BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END",
    )


def poisoned(record: NewRecord) -> NewRecord:
    return dataclasses.replace(record, message_id=POISON)


#: The keys that sign the checkpoints of the test logs (the origin's owner is CLIENT's member).
CHECKPOINT_SIGNERS = Signers()
