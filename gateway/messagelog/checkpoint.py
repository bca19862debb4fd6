"""Checkpoints of the message log: a timestamped commitment to its first ``size`` records.

Pure: no I/O, no asyncio.  A checkpoint names the log (``origin``, the security server's
id), how many records it covers (``size``), the RFC 9162 Merkle root over their leaf
hashes (:attr:`LogRecord.leaf_hash`, record ``seq`` being leaf ``seq - 1``) and the time
it was made.  Its canonical bytes (:meth:`Checkpoint.body`)::

    {"format": "xweg-checkpoint/1", "origin": "EE/GOV/70000001/ss1", "root": "<hex>",
     "size": 1200, "time": "2025-01-02T03:04:05.000000Z"}

are what an RFC 3161 timestamp covers, through their SHA-256 (:meth:`Checkpoint.imprint`);
the token, the name of the TSA that issued it and the token's time come with it.  A
later signature by the security server's sign key covers the same bytes.

Every record of a batch keeps its inclusion path to the checkpoint that first covered
it; :func:`inclusion_paths` computes those paths for a whole batch at once.  Building
trees and verifying proofs is :mod:`trust.merkle`'s; storing them is the store's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.canonical import canonical_json
from core.clock import require_utc
from core.identifiers import IdentifierError, SecurityServerId
from gateway.messagelog.record import HASH_SIZE, format_time, parse_time
from trust.merkle import node_hash

__all__ = [
    "CHECKPOINT_FORMAT",
    "MAX_TOKEN_BYTES",
    "MAX_TSA_NAME_LENGTH",
    "MAX_CLOCK_SKEW_S",
    "Checkpoint",
    "inclusion_paths",
    "encode_path",
    "decode_path",
]

CHECKPOINT_FORMAT = "xweg-checkpoint/1"
#: A DER timestamp token with the TSA's certificate chain stays far below this.
MAX_TOKEN_BYTES = 256 * 1024
MAX_TSA_NAME_LENGTH = 255  # characters
#: How much earlier than the checkpoint's own time a token's genTime may be (clocks of
#: the security server and the TSA differ by a few minutes at most).
MAX_CLOCK_SKEW_S = 300.0
#: Largest checkpoint body accepted when reading one back (it is about 200 bytes).
_MAX_BODY_BYTES = 4096


@dataclass(frozen=True)
class Checkpoint:
    """A timestamped checkpoint of the log; valid by construction (see the module docstring)."""

    origin: str  # the security server's id, slash form
    size: int  # records covered: seq 1..size
    root: bytes  # RFC 9162 root over their leaf hashes, 32 bytes
    time: dt.datetime  # when the security server made it, UTC
    token: bytes = field(repr=False)  # DER RFC 3161 timestamp token over imprint()
    tsa: str  # name of the TSA that issued the token
    gen_time: dt.datetime  # the token's genTime, UTC

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
        for name in ("time", "gen_time"):
            value = getattr(self, name)
            if not isinstance(value, dt.datetime):
                raise ValueError(f"{name} must be a datetime")
            require_utc(value, name)
        if not isinstance(self.token, bytes) or not self.token:
            raise ValueError("token must be non-empty bytes (a DER timestamp token)")
        if len(self.token) > MAX_TOKEN_BYTES:
            raise ValueError(f"token is larger than {MAX_TOKEN_BYTES} bytes")
        if not isinstance(self.tsa, str) or not self.tsa or len(self.tsa) > MAX_TSA_NAME_LENGTH:
            raise ValueError(f"tsa must be a name of 1 to {MAX_TSA_NAME_LENGTH} characters")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in self.tsa):
            raise ValueError("tsa contains control characters")

    def body(self) -> bytes:
        """The canonical bytes the timestamp (and, later, a signature) covers."""
        return _encode_body(self.origin, self.size, self.root, self.time)

    def imprint(self) -> bytes:
        """SHA-256 of :meth:`body`: the message imprint of the timestamp request."""
        return hashlib.sha256(self.body()).digest()

    @classmethod
    def unsigned_body(cls, origin: str, size: int, root: bytes, time: dt.datetime) -> bytes:
        """The body of a checkpoint not yet timestamped (what the TSA is asked to cover)."""
        require_utc(time, "checkpoint time")
        return _encode_body(origin, size, root, time)

    @classmethod
    def from_stored(cls, body: bytes, *, token: bytes, tsa: str, gen_time: dt.datetime) -> Checkpoint:
        """Rebuild a checkpoint from its stored body; raises ``ValueError`` unless the body is
        a well-formed checkpoint body in canonical form."""
        if not isinstance(body, bytes) or len(body) > _MAX_BODY_BYTES:
            raise ValueError(f"a checkpoint body must be at most {_MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"the checkpoint body is not JSON ({exc})") from exc
        if not isinstance(data, dict) or set(data) != {"format", "origin", "size", "root", "time"}:
            raise ValueError("the checkpoint body does not have exactly format, origin, size, root, time")
        if data["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"the checkpoint body's format is {data['format']!r}, not {CHECKPOINT_FORMAT!r}")
        root_hex, time_text = data["root"], data["time"]
        if not isinstance(root_hex, str) or not isinstance(time_text, str):
            raise ValueError("the checkpoint body's root and time must be strings")
        try:
            root = bytes.fromhex(root_hex)
        except ValueError as exc:
            raise ValueError(f"the checkpoint body's root is not hex ({exc})") from exc
        checkpoint = cls(
            origin=data["origin"],
            size=data["size"],
            root=root,
            time=parse_time(time_text),
            token=token,
            tsa=tsa,
            gen_time=gen_time,
        )
        if checkpoint.body() != body:
            raise ValueError("the checkpoint body is not in canonical form")
        return checkpoint


def _encode_body(origin: str, size: int, root: bytes, time: dt.datetime) -> bytes:
    fields: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "origin": origin,
        "size": size,
        "root": root.hex(),
        "time": format_time(time),
    }
    return canonical_json(fields)


def inclusion_paths(leaf_hashes: Sequence[bytes], first_index: int, last_index: int) -> list[list[bytes]]:
    """RFC 9162 inclusion paths of leaves ``first_index..last_index`` (inclusive, 0-based)
    in the tree over all of ``leaf_hashes``, bottom-up as :func:`trust.merkle.verify_inclusion`
    takes them.

    The tree's levels are built once (``2n`` hashes in all) and every path is read off
    them in ``O(log n)``, instead of walking the leaves again for every record.  An RFC
    9162 tree is the bottom-up construction in which a level's odd last node is carried
    up unchanged, so a node without a sibling contributes nothing to a path.
    """
    size = len(leaf_hashes)
    for name, value in (("first_index", first_index), ("last_index", last_index)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
    if not 0 <= first_index <= last_index < size:
        raise ValueError(f"leaves {first_index}..{last_index} are not inside a tree of size {size}")
    for i, h in enumerate(leaf_hashes):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {i} must be {HASH_SIZE} bytes")
    levels: list[Sequence[bytes]] = [leaf_hashes]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    paths: list[list[bytes]] = []
    for index in range(first_index, last_index + 1):
        path: list[bytes] = []
        position = index
        for level in levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            position >>= 1
        paths.append(path)
    return paths


def encode_path(path: Sequence[bytes]) -> bytes:
    """A path as stored: its hashes concatenated."""
    for h in path:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ValueError(f"every hash of a path must be {HASH_SIZE} bytes")
    return b"".join(path)


def decode_path(data: bytes) -> list[bytes]:
    """Inverse of :func:`encode_path`; ``ValueError`` unless ``data`` is whole 32-byte hashes."""
    if not isinstance(data, bytes) or len(data) % HASH_SIZE:
        raise ValueError(f"a stored path must be a whole number of {HASH_SIZE}-byte hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
