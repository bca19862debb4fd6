"""Evidence from a message log, verified offline: checkpoint files, consistency, evidence containers.

Pure: bytes, a configuration anchor (or certificates) and the times the evidence names
go in; a report comes out or :class:`EvidenceInvalid` is raised.  No clock, no network.

The formats an auditor handles live here, so that a verifier needs nothing of the
security server's code:

* the **checkpoint body** (:class:`CheckpointBody`), canonical JSON::

      {"format": "xweg-checkpoint/1", "origin": "NRW/GOV/057/ss1", "root": "<hex>",
       "size": 20, "time": "2026-01-02T03:04:05.000000Z"}

  signed by the origin server's owner member (a detached JWS over SHA-512 of these
  bytes, :func:`checkpoint_digest`) and timestamped (RFC 3161, imprint SHA-256 of them);
* the **checkpoint file** (:class:`CheckpointFile`), what an auditor keeps::

      {"format": "xweg-checkpoint-file/1", "body": "<checkpoint body as text>",
       "signature": "<JWS>", "signer_ocsp": "<base64 DER>" | null, "token": "<base64 DER>",
       "tsa": "<TSA name>", "gen_time": "<token time>"}

* the **record encoding** (:func:`encode_log_record`), the input of a record's Merkle
  leaf hash and of its hash chain (format ``xweg-messagelog-record/2``);
* the **evidence container** (a ZIP) of one exchange, see :func:`verify_evidence`.

:func:`verify_evidence` checks a container against the anchor alone, as a numbered
checklist (the numbers appear in the code and in every :class:`EvidenceInvalid`):

1. the ZIP is well formed and bounded: at most :data:`MAX_MEMBERS` members, each at
   most :data:`MAX_MEMBER_BYTES` uncompressed, only the names the format defines (no
   directories, no path traversal, no duplicates), and every member parses;
2. each signed global configuration document verifies against the anchor at the time
   it is used for (a record's ``logged_at``, the checkpoint's time);
3. each record: its header parses (in canonical form), its body matches the header's
   SHA-512 and size, its columns agree with the signed header, its leaf hash is
   recomputed from its content (never read from the container) and its record hash
   follows from its content and previous hash;
4. each record's signature verifies at ``logged_at`` against the CAs, issuing CAs and
   OCSP policy of that configuration, with the record's own OCSP response, by the right
   member (the client's for a request, the provider's for a response); every response
   answers a request of the container (its request hash is that request's digest);
5. the checkpoint covers the records, names the container's origin, and is signed by
   the origin server's owner member, whose certificate and OCSP response hold at the
   checkpoint's time;
6. its timestamp token verifies against the TSAs that configuration approves, over
   SHA-256 of the checkpoint body, with the stored time and TSA name;
7. each record's inclusion proof leads from its leaf hash to the checkpoint's root.

:func:`verify_consistency_files` checks two checkpoint files and a consistency proof
between them, with certificates the auditor supplies.  Building containers and
computing proofs from a log are the gateway's (:mod:`gateway.messagelog.evidence`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from core.canonical import b64, canonical_json, request_digest, response_digest
from core.clock import require_utc
from core.identifiers import IdentifierError, MemberId, SecurityServerId, ServiceId, parse_client_slash
from core.messages import MessageError, RequestHeader, ResponseHeader, sha512
from trust._encoding import loads_object, require_keys
from trust.anchor import Anchor
from trust.certificates import CertificateTrust
from trust.errors import GlobalConfError, TrustError
from trust.globalconf import GlobalConf, verify_global_conf
from trust.merkle import HASH_SIZE, MerkleError, leaf_hash, verify_consistency, verify_inclusion
from trust.ocsp import OcspPolicy
from trust.profiles import fingerprint
from trust.signatures import VerifiedSignature, verify_signature
from trust.timestamps import TimestampError, TimestampInfo, verify_timestamp_token

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FILE_FORMAT",
    "RECORD_FORMAT",
    "BODY_STORAGES",
    "EVIDENCE_FORMAT",
    "MAX_CLOCK_SKEW_S",
    "MAX_CHECKPOINT_BODY_BYTES",
    "MAX_CHECKPOINT_FILE_BYTES",
    "MAX_CONTAINER_BYTES",
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_RECORDS",
    "STEPS",
    "EvidenceInvalid",
    "format_log_time",
    "parse_log_time",
    "checkpoint_digest",
    "encode_log_record",
    "CheckpointBody",
    "CheckpointFile",
    "VerifiedCheckpoint",
    "verify_checkpoint_file",
    "ConsistencyReport",
    "verify_consistency_files",
    "trust_from_globalconf",
    "SignerFacts",
    "EvidenceReport",
    "verify_evidence",
]

CHECKPOINT_FORMAT = "xweg-checkpoint/1"
CHECKPOINT_FILE_FORMAT = "xweg-checkpoint-file/1"
RECORD_FORMAT = "xweg-messagelog-record/2"
#: Where a log keeps a record's body: in its table, in its blob store, or not at all.
BODY_STORAGES = ("inline", "blob", "omitted")
EVIDENCE_FORMAT = "xweg-evidence/1"
#: How much earlier than the checkpoint's own time a token's genTime may be (the
#: security server's and the TSA's clocks differ by a few minutes at most).
MAX_CLOCK_SKEW_S = 300.0
#: A checkpoint body is about 200 bytes.
MAX_CHECKPOINT_BODY_BYTES = 4096
#: A checkpoint file: body, a JWS with one certificate, an OCSP response, a token.
MAX_CHECKPOINT_FILE_BYTES = 1024 * 1024
#: Bounds on a container: its size, its members (manifest, checkpoint, proofs, a few
#: records with bodies, a few configuration documents) and each member uncompressed.
MAX_CONTAINER_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 32
MAX_MEMBER_BYTES = 256 * 1024 * 1024
#: Records of one message id in one log: request and response, twice when a server
#: is both consumer and provider.
MAX_RECORDS = 4
_MAX_SIGNATURE_CHARS = 256 * 1024
_MAX_OCSP_BYTES = 64 * 1024
_MAX_TOKEN_BYTES = 256 * 1024
_MAX_NAME_CHARS = 255

#: The checklist of :func:`verify_evidence`, by step number.
STEPS: Mapping[int, str] = {
    1: "container",
    2: "global configuration",
    3: "records",
    4: "record signatures",
    5: "checkpoint signature",
    6: "timestamp",
    7: "inclusion proofs",
}
#: The checklist of :func:`verify_consistency_files`.
_CONSISTENCY_STEPS: Mapping[int, str] = {
    1: "checkpoint files",
    2: "old checkpoint",
    3: "new checkpoint",
    4: "same log",
    5: "consistency proof",
}

_HEX64 = re.compile(r"[0-9a-f]{64}")
_RECORD_JSON = re.compile(r"records/([1-9][0-9]{0,18})\.json")
_RECORD_BODY = re.compile(r"records/([1-9][0-9]{0,18})\.body")
_GLOBALCONF = re.compile(r"globalconf/([1-9][0-9]{0,18})\.jws")
_FIXED_MEMBERS = ("manifest.json", "checkpoint.json", "proofs.json")


class EvidenceInvalid(TrustError):
    """Evidence does not verify: ``step`` of the checklist (``title``) failed for ``reason``."""

    def __init__(self, step: int, reason: str, *, title: str | None = None) -> None:
        self.step = step
        self.title = title if title is not None else STEPS.get(step, "evidence")
        self.reason = reason
        super().__init__(f"step {step} ({self.title}): {reason}")


# --------------------------------------------------------------------------- times


def format_log_time(value: dt.datetime) -> str:
    """A log time's one text form, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as it reads)."""
    utc = require_utc(value, "log time").astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def parse_log_time(text: object) -> dt.datetime:
    """Inverse of :func:`format_log_time`; any other form raises ``ValueError``."""
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"log time {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        value = dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise ValueError(f"log time {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ") from exc
    if format_log_time(value) != text:
        raise ValueError(f"log time {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return value


# --------------------------------------------------------------------------- records


def encode_log_record(
    *,
    seq: int,
    direction: str,
    message_id: str,
    client: str,
    service: str,
    logged_at: dt.datetime,
    status: int | None,
    header: bytes,
    signature: str,
    ocsp: bytes | None,
    body_storage: str,
) -> bytes:
    """The canonical bytes of log record ``seq``: its Merkle leaf input and hash-chain input.

    Every column but the body, which the signed header binds through its SHA-512; the
    OCSP response by its SHA-256; where the log keeps the body (``body_storage``:
    ``inline``, ``blob`` or ``omitted``) as it is.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError("seq must be a positive integer")
    if body_storage not in BODY_STORAGES:
        raise ValueError(f"body_storage must be one of {', '.join(BODY_STORAGES)}")
    fields: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "seq": seq,
        "direction": direction,
        "message_id": message_id,
        "client": client,
        "service": service,
        "logged_at": format_log_time(logged_at),
        "status": status,
        "header_sha512": hashlib.sha512(header).hexdigest(),
        "signature": signature,
        "ocsp_sha256": None if ocsp is None else hashlib.sha256(ocsp).hexdigest(),
        "body_storage": body_storage,
    }
    return canonical_json(fields)


def _chain_hash(prev_hash: bytes, encoded: bytes) -> bytes:
    return hashlib.sha256(prev_hash + hashlib.sha256(encoded).digest()).digest()


# --------------------------------------------------------------------------- checkpoints


def checkpoint_digest(body: bytes) -> bytes:
    """SHA-512 of a checkpoint body: what the origin server's owner signs."""
    if not isinstance(body, bytes):
        raise TypeError("a checkpoint body must be bytes")
    return hashlib.sha512(body).digest()


@dataclass(frozen=True)
class CheckpointBody:
    """What a checkpoint says: log ``origin``, ``size`` records, their Merkle ``root``, made at ``time``."""

    origin: str
    size: int
    root: bytes
    time: dt.datetime

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str):
            raise ValueError("origin must be a security server id in slash form")
        try:
            server = SecurityServerId.parse_slash(self.origin)
        except IdentifierError as exc:
            raise ValueError(f"origin is not a security server id: {exc}") from exc
        if server.slash() != self.origin:
            raise ValueError(f"origin {self.origin!r} is not in canonical slash form")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size < 2**63:
            raise ValueError("size must be a positive integer")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise ValueError(f"root must be {HASH_SIZE} bytes")
        if not isinstance(self.time, dt.datetime):
            raise ValueError("time must be a datetime")
        require_utc(self.time, "time")

    @property
    def owner(self) -> MemberId:
        """The member that owns the origin server: the only one whose signature counts."""
        return SecurityServerId.parse_slash(self.origin).owner

    def encode(self) -> bytes:
        """The canonical bytes that are signed and timestamped."""
        fields: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "time": format_log_time(self.time),
        }
        return canonical_json(fields)

    @classmethod
    def parse(cls, body: bytes) -> CheckpointBody:
        """The checkpoint a body states; ``ValueError`` unless it is one, in canonical form."""
        if not isinstance(body, bytes) or len(body) > MAX_CHECKPOINT_BODY_BYTES:
            raise ValueError(f"a checkpoint body must be at most {MAX_CHECKPOINT_BODY_BYTES} bytes")
        data = require_keys(
            loads_object(body, "checkpoint body"),
            {"format", "origin", "size", "root", "time"},
            "checkpoint body",
        )
        if data["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"the checkpoint body's format is {data['format']!r}, not {CHECKPOINT_FORMAT!r}")
        root_hex = data["root"]
        if not isinstance(root_hex, str) or not _HEX64.fullmatch(root_hex):
            raise ValueError("the checkpoint body's root is not 64 lower-case hex digits")
        parsed = cls(
            origin=data["origin"],
            size=data["size"],
            root=bytes.fromhex(root_hex),
            time=parse_log_time(data["time"]),
        )
        if parsed.encode() != body:
            raise ValueError("the checkpoint body is not in canonical form")
        return parsed


def _b64decode(text: object, what: str, limit: int) -> bytes:
    if not isinstance(text, str) or len(text) > (limit * 4) // 3 + 4:
        raise ValueError(f"{what} must be base64 of at most {limit} bytes")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValueError(f"{what} is not base64") from exc
    if not data:
        raise ValueError(f"{what} is empty")
    if base64.b64encode(data).decode("ascii") != text:  # one text per value: no stray padding bits
        raise ValueError(f"{what} is not in canonical base64")
    return data


def _check_name(value: object, what: str, limit: int = _MAX_NAME_CHARS) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{what} must be a non-empty string of at most {limit} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} contains control characters")
    return value


@dataclass(frozen=True)
class CheckpointFile:
    """A signed, timestamped checkpoint as an auditor keeps it; valid by construction.

    ``body`` is the canonical checkpoint body; :attr:`checkpoint` is what it states.
    Nothing here is *verified*: :func:`verify_checkpoint_file` does that.
    """

    body: bytes = field(repr=False)
    signature: str = field(repr=False)  # compact detached JWS over checkpoint_digest(body)
    signer_ocsp: bytes | None = field(repr=False)  # DER OCSP response of the signer at signing time
    token: bytes = field(repr=False)  # DER RFC 3161 token over SHA-256(body)
    tsa: str
    gen_time: dt.datetime
    checkpoint: CheckpointBody = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", CheckpointBody.parse(self.body))
        _check_name(self.signature, "signature", _MAX_SIGNATURE_CHARS)
        if self.signer_ocsp is not None and (
            not isinstance(self.signer_ocsp, bytes)
            or not self.signer_ocsp
            or len(self.signer_ocsp) > _MAX_OCSP_BYTES
        ):
            raise ValueError(f"signer_ocsp must be None or 1 to {_MAX_OCSP_BYTES} bytes")
        if not isinstance(self.token, bytes) or not self.token or len(self.token) > _MAX_TOKEN_BYTES:
            raise ValueError(f"token must be 1 to {_MAX_TOKEN_BYTES} bytes (a DER timestamp token)")
        _check_name(self.tsa, "tsa")
        if not isinstance(self.gen_time, dt.datetime):
            raise ValueError("gen_time must be a datetime")
        require_utc(self.gen_time, "gen_time")

    @property
    def imprint(self) -> bytes:
        """SHA-256 of the body: the timestamp's message imprint."""
        return hashlib.sha256(self.body).digest()

    def to_json(self) -> bytes:
        fields: dict[str, Any] = {
            "format": CHECKPOINT_FILE_FORMAT,
            "body": self.body.decode("utf-8"),
            "signature": self.signature,
            "signer_ocsp": None if self.signer_ocsp is None else b64(self.signer_ocsp),
            "token": b64(self.token),
            "tsa": self.tsa,
            "gen_time": format_log_time(self.gen_time),
        }
        return canonical_json(fields)

    @classmethod
    def from_json(cls, data: bytes) -> CheckpointFile:
        """Parse a checkpoint file; anything malformed raises ``ValueError``."""
        if not isinstance(data, bytes) or len(data) > MAX_CHECKPOINT_FILE_BYTES:
            raise ValueError(f"a checkpoint file must be at most {MAX_CHECKPOINT_FILE_BYTES} bytes")
        obj = require_keys(
            loads_object(data, "checkpoint file"),
            {"format", "body", "signature", "signer_ocsp", "token", "tsa", "gen_time"},
            "checkpoint file",
        )
        if obj["format"] != CHECKPOINT_FILE_FORMAT:
            raise ValueError(f"checkpoint file format {obj['format']!r} is not {CHECKPOINT_FILE_FORMAT!r}")
        if not isinstance(obj["body"], str):
            raise ValueError("a checkpoint file's body must be a string")
        ocsp = obj["signer_ocsp"]
        return cls(
            body=obj["body"].encode("utf-8"),
            signature=obj["signature"],
            signer_ocsp=None if ocsp is None else _b64decode(ocsp, "signer_ocsp", _MAX_OCSP_BYTES),
            token=_b64decode(obj["token"], "token", _MAX_TOKEN_BYTES),
            tsa=obj["tsa"],
            gen_time=parse_log_time(obj["gen_time"]),
        )


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint whose signature (by the origin's owner) and timestamp verified."""

    file: CheckpointFile
    signer: VerifiedSignature
    timestamp: TimestampInfo


def _check_checkpoint_signature(
    cp: CheckpointFile, trust: CertificateTrust, step: int, title: str | None
) -> VerifiedSignature:
    name = f"checkpoint {cp.checkpoint.size} of {cp.checkpoint.origin}"
    try:
        signed = verify_signature(
            cp.signature, checkpoint_digest(cp.body), trust, cp.checkpoint.time, ocsp_response=cp.signer_ocsp
        )
    except (TrustError, ValueError) as exc:  # cryptography parses certificates lazily: ValueError
        raise EvidenceInvalid(step, f"{name}: its signature does not verify: {exc}", title=title) from exc
    owner = cp.checkpoint.owner
    if signed.member != owner:
        raise EvidenceInvalid(
            step,
            f"{name} is signed by {signed.member.slash()}, not by the origin server's owner {owner.slash()}",
            title=title,
        )
    return signed


def _check_checkpoint_token(
    cp: CheckpointFile,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    step: int,
    title: str | None,
) -> TimestampInfo:
    name = f"checkpoint {cp.checkpoint.size} of {cp.checkpoint.origin}"
    try:
        info = verify_timestamp_token(
            cp.token,
            imprint=cp.imprint,
            tsa_certificates=tsa_certificates,
            roots=roots,
            intermediates=intermediates,
        )
    except TimestampError as exc:
        raise EvidenceInvalid(step, f"{name}: its timestamp does not verify: {exc}", title=title) from exc
    if info.gen_time != cp.gen_time:
        raise EvidenceInvalid(
            step,
            f"{name}: its token's time {format_log_time(info.gen_time)} is not the stated "
            f"{format_log_time(cp.gen_time)}",
            title=title,
        )
    if info.gen_time < cp.checkpoint.time - dt.timedelta(seconds=MAX_CLOCK_SKEW_S):
        raise EvidenceInvalid(
            step,
            f"{name}: its token's time {format_log_time(info.gen_time)} is more than {MAX_CLOCK_SKEW_S:g} s "
            f"before the checkpoint's own time {format_log_time(cp.checkpoint.time)}",
            title=title,
        )
    return info


def verify_checkpoint_file(
    cp: CheckpointFile,
    *,
    trust: CertificateTrust,
    tsa_certificates: Sequence[x509.Certificate],
    step: int = 1,
    title: str | None = "checkpoint",
) -> VerifiedCheckpoint:
    """Check a checkpoint file's signature and timestamp; :class:`EvidenceInvalid` (``step``) if not.

    (a) the signature over :func:`checkpoint_digest` verifies at the checkpoint's time
    against ``trust`` (with its OCSP policy, if any, and the file's OCSP response);
    (b) the signer is the origin server's owner member; (c) the token verifies for
    SHA-256 of the body, signed by one of ``tsa_certificates`` chaining to ``trust``'s
    CAs, at the stated time, not before the checkpoint's time less the clock skew.
    """
    if not isinstance(cp, CheckpointFile):
        raise TypeError("verify_checkpoint_file takes a CheckpointFile")
    # (a), (b)
    signer = _check_checkpoint_signature(cp, trust, step, title)
    # (c)
    info = _check_checkpoint_token(cp, tsa_certificates, trust.roots, trust.intermediates, step, title)
    return VerifiedCheckpoint(cp, signer, info)


@dataclass(frozen=True)
class ConsistencyReport:
    """Two verified checkpoints of one log, the older a prefix of the newer."""

    old: VerifiedCheckpoint
    new: VerifiedCheckpoint

    def describe(self) -> str:
        old, new = self.old.file.checkpoint, self.new.file.checkpoint
        return (
            f"the log only grew from {old.size} to {new.size} records "
            f"(log of {new.origin}; checkpoints of {format_log_time(old.time)} and "
            f"{format_log_time(new.time)}, "
            f"both signed by {new.owner.slash()} and timestamped)"
        )


def _parse_file(data: bytes | CheckpointFile, which: str) -> CheckpointFile:
    if isinstance(data, CheckpointFile):
        return data
    try:
        return CheckpointFile.from_json(data)
    except ValueError as exc:
        raise EvidenceInvalid(
            1, f"the {which} checkpoint file is malformed: {exc}", title=_CONSISTENCY_STEPS[1]
        ) from exc


def verify_consistency_files(
    old: bytes | CheckpointFile,
    new: bytes | CheckpointFile,
    proof: Sequence[bytes],
    *,
    trust: CertificateTrust,
    tsa_certificates: Sequence[x509.Certificate],
) -> ConsistencyReport:
    """Prove offline that the log of ``old`` only grew into that of ``new``.

    1. both checkpoint files parse;
    2. the old one's signature (origin's owner) and timestamp verify
       (:func:`verify_checkpoint_file`, against ``trust`` and ``tsa_certificates``);
    3. so do the new one's;
    4. both name the same origin, and the new one is not smaller nor dated earlier;
    5. ``proof`` (RFC 9162 consistency proof) leads from the old root to the new one.
    """
    titles = _CONSISTENCY_STEPS
    # (1)
    old_file, new_file = _parse_file(old, "old"), _parse_file(new, "new")
    # (2), (3)
    old_ok = verify_checkpoint_file(
        old_file, trust=trust, tsa_certificates=tsa_certificates, step=2, title=titles[2]
    )
    new_ok = verify_checkpoint_file(
        new_file, trust=trust, tsa_certificates=tsa_certificates, step=3, title=titles[3]
    )
    # (4)
    a, b = old_file.checkpoint, new_file.checkpoint
    if a.origin != b.origin:
        raise EvidenceInvalid(
            4, f"the checkpoints are of two logs: {a.origin} and {b.origin}", title=titles[4]
        )
    if b.size < a.size:
        raise EvidenceInvalid(
            4,
            f"the log shrank: the newer checkpoint covers {b.size} records, the older {a.size}",
            title=titles[4],
        )
    if b.time < a.time:
        raise EvidenceInvalid(
            4,
            f"the checkpoint of {b.size} records ({format_log_time(b.time)}) is dated before the one of "
            f"{a.size} records ({format_log_time(a.time)})",
            title=titles[4],
        )
    # (5)
    try:
        verify_consistency(a.size, b.size, a.root, b.root, list(proof))
    except MerkleError as exc:
        raise EvidenceInvalid(
            5, f"the log did not only grow from {a.size} to {b.size} records: {exc}", title=titles[5]
        ) from exc
    return ConsistencyReport(old_ok, new_ok)


# --------------------------------------------------------------------------- evidence containers


def trust_from_globalconf(conf: GlobalConf) -> CertificateTrust:
    """What a configuration says to trust: roots, issuing CAs, and OCSP when it lists responders."""
    responders = conf.ocsp_responder_certificates
    policy = (
        OcspPolicy(responders=responders, freshness_s=float(conf.ocsp_freshness_s)) if responders else None
    )
    return CertificateTrust(
        roots=conf.ca_certificates, intermediates=conf.intermediate_certificates, ocsp=policy
    )


@dataclass(frozen=True)
class SignerFacts:
    """Who signed: the member and the certificate that vouches for it."""

    member: str  # slash form
    subject: str  # RFC 4514
    serial: str  # hex
    fingerprint: str  # SHA-256 of the DER, hex

    @classmethod
    def of(cls, signed: VerifiedSignature) -> SignerFacts:
        cert = signed.certificate
        return cls(
            member=signed.member.slash(),
            subject=cert.subject.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            fingerprint=fingerprint(cert),
        )

    def to_dict(self) -> dict[str, str]:
        return {
            "member": self.member,
            "subject": self.subject,
            "serial": self.serial,
            "fingerprint": self.fingerprint,
        }


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else format_log_time(value)


@dataclass(frozen=True)
class EvidenceReport:
    """What a verified container proves, in facts an auditor can put in plain words."""

    message_id: str
    client: str  # typed form, e.g. SUBSYSTEM:NRW/MUN/05774032/gewerbeamt
    service: str  # typed form, e.g. SERVICE:NRW/GOV/057/arbeitsschutz/gewerbeanzeige
    provider: str  # the provider's member, slash form
    method: str
    path: str
    request_seq: int
    request_time: dt.datetime
    request_body_size: int
    request_body_sha512: str  # hex
    request_body_included: bool
    request_signer: SignerFacts
    response_seq: int | None
    response_time: dt.datetime | None
    response_status: int | None
    response_body_size: int | None
    response_signer: SignerFacts | None
    origin: str  # the log's security server
    tree_size: int
    checkpoint_time: dt.datetime
    checkpoint_signer: SignerFacts
    tsa: str
    gen_time: dt.datetime
    globalconf_serials: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("request_time", "checkpoint_time", "gen_time"):
            require_utc(getattr(self, name), name)
        if self.response_time is not None:
            require_utc(self.response_time, "response_time")
        if not isinstance(self.request_signer, SignerFacts) or not isinstance(
            self.checkpoint_signer, SignerFacts
        ):
            raise ValueError("signers must be SignerFacts")

    def describe(self) -> str:
        """A readable paragraph: who sent what to whom, when, signed by whom, timestamped by whom."""
        path = f" {self.path}" if self.path else ""
        kept = "" if self.request_body_included else "; the log kept only its digest (metadata-only logging)"
        text = (
            f"{self.client} sent a {self.method}{path} request (message {self.message_id}, "
            f"{self.request_body_size:,} bytes, SHA-512 {self.request_body_sha512[:32]}…{kept}) "
            f"to {self.service} at {format_log_time(self.request_time)}, signed with certificate "
            f"{self.request_signer.subject} (serial {self.request_signer.serial}, SHA-256 "
            f"{self.request_signer.fingerprint[:16]}…) of {self.request_signer.member}"
        )
        if self.response_signer is not None and self.response_time is not None:
            text += (
                f"; the provider answered HTTP {self.response_status} ({self.response_body_size:,} bytes) "
                f"at {format_log_time(self.response_time)}, signed by {self.response_signer.member} with "
                f"certificate {self.response_signer.subject} (serial {self.response_signer.serial})."
            )
            where = (
                f"Both records are in the log of {self.origin} at positions {self.request_seq} "
                f"and {self.response_seq}"
            )
        else:
            text += "; the log holds no response to it."
            where = f"The record is in the log of {self.origin} at position {self.request_seq}"
        numbers = [str(s) for s in self.globalconf_serials]
        serials = (
            f"serial {numbers[0]}"
            if len(numbers) == 1
            else f"serials {', '.join(numbers[:-1])} and {numbers[-1]}"
        )
        text += (
            f" {where} of a tree of {self.tree_size} records, whose checkpoint of "
            f"{format_log_time(self.checkpoint_time)} the server's owner {self.checkpoint_signer.member} "
            f"signed and {self.tsa} timestamped at {format_log_time(self.gen_time)}. Certificates, OCSP "
            f"responses and the TSA were checked against global configuration {serials}, "
            "verified with the configuration anchor."
        )
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "client": self.client,
            "service": self.service,
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "request": {
                "seq": self.request_seq,
                "time": _time(self.request_time),
                "body_size": self.request_body_size,
                "body_sha512": self.request_body_sha512,
                "body_included": self.request_body_included,
                "signer": self.request_signer.to_dict(),
            },
            "response": None
            if self.response_signer is None
            else {
                "seq": self.response_seq,
                "time": _time(self.response_time),
                "status": self.response_status,
                "body_size": self.response_body_size,
                "signer": self.response_signer.to_dict(),
            },
            "checkpoint": {
                "origin": self.origin,
                "size": self.tree_size,
                "time": _time(self.checkpoint_time),
                "signer": self.checkpoint_signer.to_dict(),
                "tsa": self.tsa,
                "gen_time": _time(self.gen_time),
            },
            "globalconf_serials": list(self.globalconf_serials),
        }


@dataclass(frozen=True)
class _Record:
    """A record as the container states it (structurally valid; nothing verified)."""

    seq: int
    direction: str
    message_id: str
    client: str
    service: str
    logged_at: dt.datetime
    status: int | None
    header: bytes = field(repr=False)
    signature: str = field(repr=False)
    ocsp: bytes | None = field(repr=False)
    record_hash: bytes = field(repr=False)
    prev_hash: bytes = field(repr=False)
    body_storage: str
    body: bytes | None = field(repr=False)

    def encode(self) -> bytes:
        return encode_log_record(
            seq=self.seq,
            direction=self.direction,
            message_id=self.message_id,
            client=self.client,
            service=self.service,
            logged_at=self.logged_at,
            status=self.status,
            header=self.header,
            signature=self.signature,
            ocsp=self.ocsp,
            body_storage=self.body_storage,
        )


@dataclass(frozen=True)
class _Proof:
    index: int
    tree_size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class _Container:
    message_id: str
    origin: str
    records: tuple[_Record, ...]
    checkpoint: CheckpointFile
    proofs: Mapping[int, _Proof]
    documents: Mapping[int, bytes]
    record_serials: Mapping[int, int]
    checkpoint_serial: int


def _fail(step: int, reason: str) -> EvidenceInvalid:
    return EvidenceInvalid(step, reason)


def _hex_hash(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"{what} must be 64 lower-case hex digits")
    return bytes.fromhex(value)


def _int(value: object, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**63:
        raise ValueError(f"{what} must be an integer of at least {low}")
    return value


def _read_members(container: bytes) -> dict[str, bytes]:
    """(1) the ZIP's members by name, bounded, with only the names the format defines."""
    if not isinstance(container, bytes):
        raise TypeError("an evidence container must be bytes")
    if len(container) > MAX_CONTAINER_BYTES:
        raise _fail(1, f"the container is larger than {MAX_CONTAINER_BYTES} bytes")
    try:
        archive = zipfile.ZipFile(io.BytesIO(container))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise _fail(1, f"the container is not a ZIP file: {exc}") from exc
    members: dict[str, bytes] = {}
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _fail(1, f"the container has {len(infos)} members, more than {MAX_MEMBERS}")
        total = 0
        for info in infos:
            name = info.filename
            if not (
                name in _FIXED_MEMBERS
                or _RECORD_JSON.fullmatch(name)
                or _RECORD_BODY.fullmatch(name)
                or _GLOBALCONF.fullmatch(name)
            ):
                raise _fail(1, f"the container has a member {name!r} that the format does not define")
            if name in members:
                raise _fail(1, f"the container has member {name!r} twice")
            if info.flag_bits & 0x1:
                raise _fail(1, f"member {name!r} is encrypted")
            if info.file_size > MAX_MEMBER_BYTES:
                raise _fail(1, f"member {name!r} is larger than {MAX_MEMBER_BYTES} bytes")
            total += info.file_size
            if total > MAX_CONTAINER_BYTES:
                raise _fail(1, f"the container's members exceed {MAX_CONTAINER_BYTES} bytes uncompressed")
            try:
                with archive.open(info) as handle:
                    data = handle.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError) as exc:
                raise _fail(1, f"member {name!r} cannot be read: {exc}") from exc
            if len(data) > MAX_MEMBER_BYTES or len(data) != info.file_size:
                raise _fail(1, f"member {name!r} is not the size its entry states")
            members[name] = data
    for name in _FIXED_MEMBERS:
        if name not in members:
            raise _fail(1, f"the container lacks {name}")
    return members


def _parse_record(seq: int, data: bytes, body: bytes | None) -> _Record:
    obj = require_keys(
        loads_object(data, f"records/{seq}.json"),
        {
            "seq",
            "direction",
            "message_id",
            "client",
            "service",
            "logged_at",
            "status",
            "header",
            "signature",
            "ocsp",
            "record_hash",
            "prev_hash",
            "body_storage",
        },
        f"records/{seq}.json",
    )
    storage = obj["body_storage"]
    if storage not in BODY_STORAGES:
        raise ValueError(f"body_storage {storage!r} is none of {', '.join(BODY_STORAGES)}")
    if (body is None) != (storage == "omitted"):
        raise ValueError(
            "the log omitted this record's body, yet the container holds one"
            if body is not None
            else f"the container lacks records/{seq}.body"
        )
    if obj["seq"] != seq:
        raise ValueError(f"records/{seq}.json states seq {obj['seq']!r}")
    if obj["direction"] not in ("request", "response"):
        raise ValueError(f"direction {obj['direction']!r} is neither request nor response")
    status = obj["status"]
    if status is not None:
        _int(status, "status", 100)
    header = obj["header"]
    if not isinstance(header, str) or not header:
        raise ValueError("header must be a non-empty string")
    ocsp = obj["ocsp"]
    return _Record(
        seq=seq,
        direction=obj["direction"],
        message_id=_check_name(obj["message_id"], "message_id"),
        client=_check_name(obj["client"], "client"),
        service=_check_name(obj["service"], "service"),
        logged_at=parse_log_time(obj["logged_at"]),
        status=status,
        header=header.encode("utf-8"),
        signature=_check_name(obj["signature"], "signature", _MAX_SIGNATURE_CHARS),
        ocsp=None if ocsp is None else _b64decode(ocsp, "ocsp", _MAX_OCSP_BYTES),
        record_hash=_hex_hash(obj["record_hash"], "record_hash"),
        prev_hash=_hex_hash(obj["prev_hash"], "prev_hash"),
        body_storage=storage,
        body=body,
    )


def _parse_proofs(data: bytes) -> dict[int, _Proof]:
    obj = loads_object(data, "proofs.json")
    proofs: dict[int, _Proof] = {}
    for key, value in obj.items():
        if not re.fullmatch(r"[1-9][0-9]{0,18}", key):
            raise ValueError(f"proofs.json names record {key!r}")
        entry = require_keys(value, {"index", "tree_size", "path"}, f"the proof of record {key}")
        path = entry["path"]
        if not isinstance(path, list) or len(path) > 64:
            raise ValueError(f"the proof of record {key} must be a list of at most 64 hashes")
        proofs[int(key)] = _Proof(
            index=_int(entry["index"], "index", 0),
            tree_size=_int(entry["tree_size"], "tree_size"),
            path=tuple(_hex_hash(h, f"a hash of the proof of record {key}") for h in path),
        )
    return proofs


def _parse_container(container: bytes) -> _Container:
    """(1) members read and parsed; nothing verified yet."""
    members = _read_members(container)
    try:
        manifest = require_keys(
            loads_object(members["manifest.json"], "manifest.json"),
            {"format", "message_id", "origin", "exported_at", "records", "globalconf"},
            "manifest.json",
        )
        if manifest["format"] != EVIDENCE_FORMAT:
            raise ValueError(f"format {manifest['format']!r} is not {EVIDENCE_FORMAT!r}")
        message_id = _check_name(manifest["message_id"], "message_id")
        origin = _check_name(manifest["origin"], "origin")
        parse_log_time(manifest["exported_at"])
        seqs = manifest["records"]
        if not isinstance(seqs, list) or not 1 <= len(seqs) <= MAX_RECORDS:
            raise ValueError(f"records must list 1 to {MAX_RECORDS} record numbers")
        seqs = [_int(s, "a record number") for s in seqs]
        if seqs != sorted(set(seqs)):
            raise ValueError("records must be listed once each, in log order")
        serials = require_keys(manifest["globalconf"], {"checkpoint", "records"}, "the manifest's globalconf")
        record_serials_obj = serials["records"]
        if not isinstance(record_serials_obj, dict) or set(record_serials_obj) != {str(s) for s in seqs}:
            raise ValueError("the manifest's globalconf must name one document for each record")
        record_serials = {
            int(k): _int(v, "a global configuration serial") for k, v in record_serials_obj.items()
        }
        checkpoint_serial = _int(serials["checkpoint"], "a global configuration serial")
    except ValueError as exc:
        raise _fail(1, f"manifest.json is malformed: {exc}") from exc

    expected = {"manifest.json", "checkpoint.json", "proofs.json"}
    records: list[_Record] = []
    for seq in seqs:
        name = f"records/{seq}.json"
        if name not in members:
            raise _fail(1, f"the container lacks {name}")
        body = members.get(f"records/{seq}.body")
        expected.add(name)
        if body is not None:
            expected.add(f"records/{seq}.body")
        try:
            records.append(_parse_record(seq, members[name], body))
        except ValueError as exc:
            raise _fail(1, f"{name} is malformed: {exc}") from exc
    try:
        checkpoint = CheckpointFile.from_json(members["checkpoint.json"])
    except ValueError as exc:
        raise _fail(1, f"checkpoint.json is malformed: {exc}") from exc
    try:
        proofs = _parse_proofs(members["proofs.json"])
    except ValueError as exc:
        raise _fail(1, f"proofs.json is malformed: {exc}") from exc
    documents: dict[int, bytes] = {}
    for serial in {*record_serials.values(), checkpoint_serial}:
        name = f"globalconf/{serial}.jws"
        if name not in members:
            raise _fail(1, f"the container lacks {name}, which the manifest names")
        documents[serial] = members[name]
        expected.add(name)
    extra = sorted(set(members) - expected)
    if extra:
        raise _fail(1, f"the container has members the manifest does not account for: {', '.join(extra)}")
    return _Container(
        message_id=message_id,
        origin=origin,
        records=tuple(records),
        checkpoint=checkpoint,
        proofs=proofs,
        documents=documents,
        record_serials=record_serials,
        checkpoint_serial=checkpoint_serial,
    )


def _conf_at(container: _Container, anchor: Anchor, serial: int, when: dt.datetime, what: str) -> GlobalConf:
    """(2) the document ``serial`` verifies against the anchor at ``when``."""
    try:
        conf = verify_global_conf(container.documents[serial], anchor, when)
    except GlobalConfError as exc:
        raise _fail(
            2,
            f"global configuration {serial}, used for {what}, does not verify at "
            f"{format_log_time(when)}: {exc}",
        ) from exc
    if conf.serial != serial:
        raise _fail(2, f"globalconf/{serial}.jws holds serial {conf.serial}")
    if conf.generated_at > when:
        raise _fail(
            2,
            f"global configuration {serial}, used for {what}, was generated at "
            f"{format_log_time(conf.generated_at)}, after {format_log_time(when)}: it was not in force then",
        )
    return conf


def _parse_header(record: _Record) -> RequestHeader | ResponseHeader:
    """(3) the signed header parses as the record's kind, in canonical form."""
    name = f"record {record.seq}"
    try:
        data = loads_object(record.header, f"{name}'s header")
        header: RequestHeader | ResponseHeader
        if record.direction == "request":
            header = RequestHeader.from_dict(data)
        else:
            header = ResponseHeader.from_dict(data)
    except (ValueError, MessageError) as exc:
        raise _fail(3, f"{name}: its header is not a valid {record.direction} header ({exc})") from exc
    if canonical_json(header.to_dict()) != record.header:
        raise _fail(3, f"{name}: its {record.direction} header is not in canonical form")
    return header


def _check_record(container: _Container, record: _Record, header: RequestHeader | ResponseHeader) -> bytes:
    """(3) one record's content; returns its leaf hash, recomputed from that content."""
    name = f"record {record.seq}"
    if record.message_id != container.message_id:
        raise _fail(3, f"{name} is of message {record.message_id}, not of {container.message_id}")
    if header.message_id != record.message_id:
        raise _fail(3, f"{name}: its message id differs from the one in its signed header")
    try:
        client = parse_client_slash(record.client)
        service = ServiceId.parse_slash(record.service)
    except IdentifierError as exc:
        raise _fail(3, f"{name} names an invalid identifier: {exc}") from exc
    if isinstance(header, RequestHeader):
        if record.status is not None:
            raise _fail(3, f"{name} is a request with an HTTP status")
        if header.client != client or header.service != service:
            raise _fail(3, f"{name}: its client or service differs from the ones in its signed header")
    elif record.status != header.status:
        raise _fail(
            3, f"{name}: its status ({record.status}) differs from its signed header's ({header.status})"
        )
    if record.body is not None and (
        len(record.body) != header.body_size or sha512(record.body) != header.body_sha512
    ):
        raise _fail(3, f"{name}: its body does not match the SHA-512 and size in its signed header")
    try:
        encoded = record.encode()
    except ValueError as exc:
        raise _fail(3, f"{name} cannot be encoded: {exc}") from exc
    if _chain_hash(record.prev_hash, encoded) != record.record_hash:
        raise _fail(
            3, f"{name}: its content does not match its record hash; it was changed after it was logged"
        )
    return leaf_hash(encoded)


def _check_record_signature(
    record: _Record, header: RequestHeader | ResponseHeader, conf: GlobalConf
) -> VerifiedSignature:
    """(4) one record's signature, at logged_at, by the right member."""
    name = f"record {record.seq} ({record.direction})"
    digest = request_digest(header) if isinstance(header, RequestHeader) else response_digest(header)
    try:
        signed = verify_signature(
            record.signature, digest, trust_from_globalconf(conf), record.logged_at, ocsp_response=record.ocsp
        )
    except (TrustError, ValueError) as exc:  # a malformed certificate fails as ValueError
        raise _fail(
            4, f"{name}: its signature does not verify at {format_log_time(record.logged_at)}: {exc}"
        ) from exc
    if record.direction == "request":
        role, member = "client's member", parse_client_slash(record.client).member
    else:
        role, member = "provider's member", ServiceId.parse_slash(record.service).member
    if signed.member != member:
        raise _fail(4, f"{name} is signed by {signed.member.slash()}, not by the {role} {member.slash()}")
    return signed


def verify_evidence(container: bytes, anchor: Anchor) -> EvidenceReport:
    """Verify an evidence container offline against ``anchor`` alone (the module's seven steps).

    Raises :class:`EvidenceInvalid` naming the step and the reason at the first failure.
    """
    if not isinstance(anchor, Anchor):
        raise TypeError("anchor must be a trust.anchor.Anchor")
    # (1) well formed and bounded
    parsed = _parse_container(container)
    records = parsed.records
    cp = parsed.checkpoint

    # (2) each configuration document, at the time it is used for
    confs = {
        record.seq: _conf_at(
            parsed, anchor, parsed.record_serials[record.seq], record.logged_at, f"record {record.seq}"
        )
        for record in records
    }
    cp_conf = _conf_at(parsed, anchor, parsed.checkpoint_serial, cp.checkpoint.time, "the checkpoint")

    # (3) each record's content, and its leaf hash recomputed from it
    headers: dict[int, RequestHeader | ResponseHeader] = {}
    leaves: dict[int, bytes] = {}
    previous: _Record | None = None
    for record in records:
        header = _parse_header(record)
        headers[record.seq] = header
        leaves[record.seq] = _check_record(parsed, record, header)
        if (
            previous is not None
            and previous.seq + 1 == record.seq
            and record.prev_hash != previous.record_hash
        ):
            raise _fail(3, f"record {record.seq} does not follow record {previous.seq} in the hash chain")
        previous = record
    requests = [r for r in records if r.direction == "request"]
    if not requests:
        raise _fail(3, "the container holds no request record")
    if records[0].direction != "request":
        raise _fail(3, f"record {records[0].seq} is a response logged before any request of the message")

    # (4) each record's signature, and every response bound to a request
    signers = {
        record.seq: _check_record_signature(record, headers[record.seq], confs[record.seq])
        for record in records
    }
    request_hashes = {b64(request_digest(h)) for h in headers.values() if isinstance(h, RequestHeader)}
    for record in records:
        header = headers[record.seq]
        if isinstance(header, ResponseHeader) and header.request_hash not in request_hashes:
            raise _fail(
                4,
                f"record {record.seq} (response) answers another request: its request hash is not "
                "the digest of the request in the container",
            )

    # (5) the checkpoint: covers the records, this origin, signed by the origin's owner
    body = cp.checkpoint
    if body.origin != parsed.origin:
        raise _fail(5, f"the checkpoint is of the log of {body.origin}, not of {parsed.origin}")
    last = records[-1]
    if body.size < last.seq:
        raise _fail(5, f"the checkpoint covers {body.size} records, not record {last.seq}")
    latest = max(record.logged_at for record in records)
    if body.time < latest:
        raise _fail(5, f"the checkpoint ({format_log_time(body.time)}) is dated before the records it covers")
    cp_signer = _check_checkpoint_signature(cp, trust_from_globalconf(cp_conf), 5, None)

    # (6) the timestamp token, by a TSA approved then, with the stated name
    info = _check_checkpoint_token(
        cp, cp_conf.tsa_certificates, cp_conf.ca_certificates, cp_conf.intermediate_certificates, 6, None
    )
    named = [tsa.name for tsa in cp_conf.approved_tsas if tsa.certificate == info.tsa_certificate]
    if cp.tsa not in named:
        raise _fail(6, f"the checkpoint names TSA {cp.tsa!r}, but its token was issued by {', '.join(named)}")

    # (7) each record's inclusion proof against the checkpoint's root
    if set(parsed.proofs) != {record.seq for record in records}:
        raise _fail(7, "proofs.json must hold exactly one proof for each record")
    for record in records:
        proof = parsed.proofs[record.seq]
        if proof.index != record.seq - 1 or proof.tree_size != body.size:
            raise _fail(
                7,
                f"the proof of record {record.seq} is for leaf {proof.index} of a tree of "
                f"{proof.tree_size}, not leaf {record.seq - 1} of {body.size}",
            )
        try:
            verify_inclusion(leaves[record.seq], proof.index, proof.tree_size, proof.path, body.root)
        except MerkleError as exc:
            raise _fail(7, f"record {record.seq} is not in the checkpoint's tree: {exc}") from exc

    request = requests[0]
    request_header = headers[request.seq]
    assert isinstance(request_header, RequestHeader)
    responses = [r for r in records if r.direction == "response"]
    response = responses[-1] if responses else None
    response_header = None if response is None else headers[response.seq]
    return EvidenceReport(
        message_id=parsed.message_id,
        client=str(request_header.client),
        service=str(request_header.service),
        provider=request_header.service.member.slash(),
        method=request_header.method,
        path=request_header.path,
        request_seq=request.seq,
        request_time=request.logged_at,
        request_body_size=request_header.body_size,
        request_body_sha512=request_header.body_sha512.hex(),
        request_body_included=request.body is not None,
        request_signer=SignerFacts.of(signers[request.seq]),
        response_seq=None if response is None else response.seq,
        response_time=None if response is None else response.logged_at,
        response_status=None if response is None else response.status,
        response_body_size=None if response_header is None else response_header.body_size,
        response_signer=None if response is None else SignerFacts.of(signers[response.seq]),
        origin=body.origin,
        tree_size=body.size,
        checkpoint_time=body.time,
        checkpoint_signer=SignerFacts.of(cp_signer),
        tsa=cp.tsa,
        gen_time=info.gen_time,
        globalconf_serials=tuple(sorted({*parsed.record_serials.values(), parsed.checkpoint_serial})),
    )
