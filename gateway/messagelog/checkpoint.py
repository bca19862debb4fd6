"""Checkpoints of the message log: a timestamped commitment to its first ``size`` records.

Pure: no I/O, no asyncio.  A checkpoint names the log (``origin``, the security server's
id), how many records it covers (``size``), the RFC 9162 Merkle root over their leaf
hashes (:attr:`LogRecord.leaf_hash`, record ``seq`` being leaf ``seq - 1``) and the time
it was made.  Its canonical bytes (:meth:`Checkpoint.body`)::

    {"format": "xweg-checkpoint/1", "origin": "EE/GOV/70000001/ss1", "root": "<hex>",
     "size": 1200, "time": "2025-01-02T03:04:05.000000Z"}

are signed by the member that owns the security server (a detached JWS over their
SHA-512, :meth:`Checkpoint.digest`, with the signer's OCSP response of that moment)
and then timestamped (RFC 3161) through their SHA-256 (:meth:`Checkpoint.imprint`); the
token, the name of the TSA that issued it and the token's time come with it.  The
format itself (body, checkpoint file) is :mod:`trust.evidence`'s, so that an auditor's
verifier needs nothing of the security server's code; :meth:`Checkpoint.to_file_json`
writes the checkpoint file an auditor keeps.

Every record of a batch keeps its inclusion path to the checkpoint that first covered
it; :func:`inclusion_paths` computes those paths for a whole batch at once.  Building
trees and verifying proofs is :mod:`trust.merkle`'s; storing them is the store's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.clock import require_utc
from core.identifiers import IdentifierError, SecurityServerId
from gateway.messagelog.record import HASH_SIZE
from trust.evidence import (
    CHECKPOINT_FILE_FORMAT,
    CHECKPOINT_FORMAT,
    MAX_CLOCK_SKEW_S,
    CheckpointBody,
    CheckpointFile,
    checkpoint_digest,
)
from trust.merkle import CompactRange, node_hash

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FILE_FORMAT",
    "MAX_TOKEN_BYTES",
    "MAX_SIGNATURE_LENGTH",
    "MAX_OCSP_BYTES",
    "MAX_TSA_NAME_LENGTH",
    "MAX_CLOCK_SKEW_S",
    "Checkpoint",
    "inclusion_paths",
    "inclusion_paths_after",
    "TreeLevels",
    "encode_path",
    "decode_path",
]

#: A DER timestamp token with the TSA's certificate chain stays far below this.
MAX_TOKEN_BYTES = 256 * 1024
MAX_TSA_NAME_LENGTH = 255  # characters
#: A compact JWS with one certificate is about 1.5 KiB.
MAX_SIGNATURE_LENGTH = 256 * 1024  # characters
#: A DER OCSP response with its responder's certificate.
MAX_OCSP_BYTES = 64 * 1024


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
    #: Compact detached JWS over digest(), by the sign key of the origin server's owner.
    signature: str = field(repr=False)
    #: DER OCSP response for the signer's certificate at signing time, if it had one.
    signer_ocsp: bytes | None = field(default=None, repr=False)

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
        if not isinstance(self.signature, str) or not self.signature:
            raise ValueError("signature must be a non-empty string (a compact JWS)")
        if len(self.signature) > MAX_SIGNATURE_LENGTH:
            raise ValueError(f"signature is longer than {MAX_SIGNATURE_LENGTH} characters")
        ocsp = self.signer_ocsp
        if ocsp is not None and (not isinstance(ocsp, bytes) or not ocsp or len(ocsp) > MAX_OCSP_BYTES):
            raise ValueError(f"signer_ocsp must be None or 1 to {MAX_OCSP_BYTES} bytes (a DER OCSP response)")

    @property
    def owner(self) -> str:
        """The member (slash form) that owns the origin server: the checkpoint's only rightful signer."""
        return SecurityServerId.parse_slash(self.origin).owner.slash()

    def body(self) -> bytes:
        """The canonical bytes the signature and the timestamp cover."""
        return _encode_body(self.origin, self.size, self.root, self.time)

    def digest(self) -> bytes:
        """SHA-512 of :meth:`body`: what the owner's sign key signs."""
        return checkpoint_digest(self.body())

    def imprint(self) -> bytes:
        """SHA-256 of :meth:`body`: the message imprint of the timestamp request."""
        return hashlib.sha256(self.body()).digest()

    @classmethod
    def unsigned_body(cls, origin: str, size: int, root: bytes, time: dt.datetime) -> bytes:
        """The body of a checkpoint not yet timestamped (what the TSA is asked to cover)."""
        require_utc(time, "checkpoint time")
        return _encode_body(origin, size, root, time)

    @classmethod
    def from_stored(
        cls,
        body: bytes,
        *,
        token: bytes,
        tsa: str,
        gen_time: dt.datetime,
        signature: str,
        signer_ocsp: bytes | None = None,
    ) -> Checkpoint:
        """Rebuild a checkpoint from its stored body; raises ``ValueError`` unless the body is
        a well-formed checkpoint body in canonical form (at most
        :data:`~trust.evidence.MAX_CHECKPOINT_BODY_BYTES` bytes)."""
        stated = CheckpointBody.parse(body)
        return cls(
            origin=stated.origin,
            size=stated.size,
            root=stated.root,
            time=stated.time,
            token=token,
            tsa=tsa,
            gen_time=gen_time,
            signature=signature,
            signer_ocsp=signer_ocsp,
        )

    def to_file(self) -> CheckpointFile:
        """This checkpoint as the file an auditor keeps (:class:`trust.evidence.CheckpointFile`)."""
        return CheckpointFile(
            body=self.body(),
            signature=self.signature,
            signer_ocsp=self.signer_ocsp,
            token=self.token,
            tsa=self.tsa,
            gen_time=self.gen_time,
        )

    def to_file_json(self) -> bytes:
        """The checkpoint file (format ``xweg-checkpoint-file/1``), canonical JSON."""
        return self.to_file().to_json()

    @classmethod
    def from_file(cls, stated: CheckpointFile) -> Checkpoint:
        return cls.from_stored(
            stated.body,
            token=stated.token,
            tsa=stated.tsa,
            gen_time=stated.gen_time,
            signature=stated.signature,
            signer_ocsp=stated.signer_ocsp,
        )

    @classmethod
    def from_file_json(cls, data: bytes) -> Checkpoint:
        """Parse a checkpoint file; ``ValueError`` unless it is one.  Nothing is verified here."""
        return cls.from_file(CheckpointFile.from_json(data))


def _encode_body(origin: str, size: int, root: bytes, time: dt.datetime) -> bytes:
    return CheckpointBody(origin, size, root, time).encode()


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


def inclusion_paths_after(frontier: CompactRange, new_leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The paths :func:`inclusion_paths` gives for the leaves appended after ``frontier``
    (the compact range of the leaves before them), in the tree over all of them, without
    the leaves before: about ``2k`` hashes for ``k`` new leaves, whatever the tree's size.

    Only the new leaves' part of each level is built.  A path's sibling left of that part
    is the root of a perfect subtree of old leaves, and always one of ``frontier``'s: when
    a level's first new node has an odd index, its left neighbour is the frontier's
    subtree of that height (bit ``h`` of the old size is set exactly then).
    """
    for i, h in enumerate(new_leaves):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {i} must be {HASH_SIZE} bytes")
    if not new_leaves:
        return []
    left = dict(frontier.subtree_roots())
    first = frontier.size
    # Each level: the index of its first node held, and the nodes from there to its end.
    levels: list[tuple[int, list[bytes]]] = []
    base, nodes, height = first, list(new_leaves), 0
    while True:
        if base % 2:
            base -= 1
            nodes.insert(0, left[height])
        levels.append((base, nodes))
        if base + len(nodes) <= 1:
            break
        above = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
        if len(nodes) % 2:
            above.append(nodes[-1])  # an odd last node is carried up unchanged
        base, nodes, height = base // 2, above, height + 1
    paths: list[list[bytes]] = []
    for index in range(first, first + len(new_leaves)):
        path: list[bytes] = []
        position = index
        for level_base, level in levels[:-1]:
            sibling = (position ^ 1) - level_base
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


class TreeLevels:
    """Every node of the RFC 9162 tree over ``leaf_hashes``, built once (about ``2n`` hashes).

    The hash of any range a proof needs, and so an inclusion or consistency proof for any
    tree size up to ``n``, then costs O(log² n) instead of O(n): an auditor checking the
    consistency of thousands of consecutive checkpoints does not re-hash the log for each.
    Level ``h`` holds, at index ``i``, the root over leaves ``i·2^h .. min((i+1)·2^h, n)``;
    where that range is whole (``2^h`` leaves) it is the same subtree in every larger tree.
    The proofs equal :func:`trust.merkle.inclusion_proof` and
    :func:`trust.merkle.consistency_proof` (the tests compare them for every size).
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
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
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def range_hash(self, lo: int, hi: int) -> bytes:
        """The Merkle tree hash of leaves ``lo..hi-1`` (non-empty, inside the tree)."""
        if not 0 <= lo < hi <= self.size:
            raise ValueError(f"leaves {lo}..{hi - 1} are not inside a tree of size {self.size}")
        count = hi - lo
        if count & (count - 1) == 0 and lo % count == 0:
            return self._levels[count.bit_length() - 1][lo // count]
        split = 1 << ((count - 1).bit_length() - 1)
        return node_hash(self.range_hash(lo, lo + split), self.range_hash(lo + split, hi))

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """The RFC 9162 §2.1.3.1 path of leaf ``index`` in the tree of the first ``tree_size`` leaves."""
        if not 0 <= index < tree_size <= self.size:
            raise ValueError(f"leaf {index} is not inside a tree of size {tree_size} (of {self.size})")
        proof: list[bytes] = []
        lo, hi, m = 0, tree_size, index
        while hi - lo > 1:
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            if m < k:
                proof.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_hash(lo, lo + k))
                lo, m = lo + k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 §2.1.4.1 proof that the first ``old_size`` leaves begin the first ``new_size``."""
        if not 0 <= old_size <= new_size <= self.size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size} in a tree of {self.size}")
        if old_size in (0, new_size):
            return []
        proof: list[bytes] = []
        lo, hi, m, complete = 0, new_size, old_size, True
        while m != hi - lo:
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            if m <= k:
                proof.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_hash(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self.range_hash(lo, hi))
        proof.reverse()
        return proof
