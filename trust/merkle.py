"""Merkle trees with RFC 9162 (Certificate Transparency v2) hashing, SHA-256.

A leaf hash is ``SHA-256(0x00 || data)``, an interior node ``SHA-256(0x01 || left || right)``;
the tree over ``n`` leaves splits at the largest power of two smaller than ``n``
(RFC 9162 §2.1.1), so the hash of the empty tree is ``SHA-256("")``.

This module is pure: it builds roots and proofs from leaf hashes held by the caller,
and verifies inclusion (§2.1.3) and consistency (§2.1.4) proofs.  Storing leaves,
signing checkpoints and timestamping them is left to others.

Failures come in two kinds.  A proof, root or size that does not verify is evidence
against a log and raises :class:`MerkleError` (a :class:`~trust.errors.TrustError`);
asking this module for something impossible (a proof for an index outside the tree,
a leaf hash that is not 32 bytes) is a caller's mistake and raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from trust.errors import TrustError

__all__ = [
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "EMPTY_ROOT",
    "MerkleError",
    "leaf_hash",
    "node_hash",
    "root",
    "inclusion_proof",
    "verify_inclusion",
    "consistency_proof",
    "verify_consistency",
    "CompactRange",
]

#: Bytes in every hash of the tree (SHA-256).
HASH_SIZE = 32
#: Trees are addressed with unsigned 64-bit sizes and indices, as in RFC 9162.
MAX_TREE_SIZE = 2**64 - 1
#: No proof in a tree of at most 2**64 leaves is longer than this many hashes.
MAX_PROOF_HASHES = 64

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleError(TrustError):
    """An inclusion or consistency proof, root or tree size does not verify."""


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


#: Root hash of the tree with no leaves: SHA-256 of the empty string.
EMPTY_ROOT = _sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry."""
    return _sha256(_LEAF_PREFIX + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(_NODE_PREFIX + left + right)


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")
    return value


def _check_leaves(leaf_hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(leaf_hashes):
        _check_hash(h, f"leaf hash {i}")


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of ``leaves[lo:hi]`` (non-empty), without copying slices."""
    n = hi - lo
    if n == 1:
        return leaves[lo]
    # Perfect subtrees and the ragged right edge fold fastest bottom-up.
    stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees, left to right
    for i in range(lo, hi):
        height, h = 0, leaves[i]
        while stack and stack[-1][0] == height:
            h = node_hash(stack.pop()[1], h)
            height += 1
        stack.append((height, h))
    result = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        result = node_hash(h, result)
    return result


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (RFC 9162 §2.1.1) over ``leaf_hashes``; :data:`EMPTY_ROOT` for none."""
    _check_leaves(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The audit path (RFC 9162 §2.1.3.1) for leaf ``index`` in the tree over ``leaf_hashes``."""
    size = len(leaf_hashes)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ValueError(f"leaf index {index!r} is outside a tree of size {size}")
    _check_leaves(leaf_hashes)
    proof: list[bytes] = []
    lo, hi, m = 0, size, index
    # PATH(m, D[lo:hi]) walks down from the root; the hashes are collected top-down
    # and returned bottom-up, as the verifier consumes them.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            proof.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_mth(leaf_hashes, lo, lo + k))
            lo, m = lo + k, m - k
    proof.reverse()
    return proof


def _check_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TREE_SIZE:
        raise MerkleError(f"{what} {value!r} is not a tree size (0..2**64-1)")
    return value


def _check_proof(proof: Sequence[bytes], what: str) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise MerkleError(f"{what} has {len(proof)} hashes, more than any tree needs")
    for i, h in enumerate(proof):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise MerkleError(f"{what} hash {i} is not {HASH_SIZE} bytes")


def _check_root(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise MerkleError(f"{what} is not {HASH_SIZE} bytes")
    return value


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`MerkleError` unless ``proof`` puts ``leaf_hash`` at ``index`` in a ``size``-leaf tree.

    RFC 9162 §2.1.3.2, step by step.
    """
    _check_root(leaf_hash, "leaf hash")
    _check_root(root, "root hash")
    index = _check_size(index, "leaf index")
    size = _check_size(size, "tree size")
    _check_proof(proof, "inclusion proof")
    # (1) the index must lie inside the tree
    if index >= size:
        raise MerkleError(f"leaf index {index} is outside a tree of size {size}")
    # (2) fn is the leaf's position, sn the last position
    fn, sn = index, size - 1
    # (3) start from the leaf
    r = leaf_hash
    # (4) climb one level per proof hash
    for p in proof:
        # (4a) a proof longer than the path from leaf to root
        if sn == 0:
            raise MerkleError(f"inclusion proof for leaf {index} of {size} is too long")
        # (4b) a right child, or the last node of a ragged level: the sibling is on the left
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # (4c) one level up
        fn >>= 1
        sn >>= 1
    # (5) the path must reach the root exactly, and arrive at the expected hash
    if sn != 0:
        raise MerkleError(f"inclusion proof for leaf {index} of {size} is too short")
    if r != root:
        raise MerkleError(f"inclusion proof for leaf {index} of {size} does not lead to the root")


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The proof (RFC 9162 §2.1.4.1) that the first ``old_size`` leaves are a prefix of ``leaf_hashes``.

    Empty when ``old_size`` is 0 or equals the new size.
    """
    new_size = len(leaf_hashes)
    if isinstance(old_size, bool) or not isinstance(old_size, int) or not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size!r} must lie in 0..{new_size}")
    _check_leaves(leaf_hashes)
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    # SUBPROOF(m, D[lo:hi], b), iteratively; hashes are collected top-down and reversed.
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_mth(leaf_hashes, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(_mth(leaf_hashes, lo, hi))
    proof.reverse()
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`MerkleError` unless the ``old_size`` tree is a prefix of the ``new_size`` tree.

    RFC 9162 §2.1.4.2, step by step, with the cases it leaves implicit: the empty
    tree is a prefix of every tree (its root must be :data:`EMPTY_ROOT` and the proof
    empty), and a tree is consistent with itself only through an empty proof and
    equal roots.
    """
    old_size = _check_size(old_size, "old tree size")
    new_size = _check_size(new_size, "new tree size")
    _check_root(old_root, "old root hash")
    _check_root(new_root, "new root hash")
    _check_proof(proof, "consistency proof")
    if old_size > new_size:
        raise MerkleError(f"the log shrank: old size {old_size} is larger than new size {new_size}")
    if old_size == 0:
        if old_root != EMPTY_ROOT:
            raise MerkleError("an empty tree must have the empty root")
        if proof:
            raise MerkleError("a consistency proof from the empty tree must be empty")
        return
    if old_size == new_size:
        if proof:
            raise MerkleError(f"a consistency proof between equal sizes ({old_size}) must be empty")
        if old_root != new_root:
            raise MerkleError(f"two trees of size {old_size} have different roots")
        return
    # (1) a proof between different non-empty sizes is never empty
    if not proof:
        raise MerkleError(f"empty consistency proof from size {old_size} to {new_size}")
    path = list(proof)
    # (2) when the old tree is a perfect subtree, its root is the proof's implicit first hash
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # (3) positions of the last leaf in the old and the new tree
    fn, sn = old_size - 1, new_size - 1
    # (4) skip the levels where the old tree's last node is a right child of a perfect subtree
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # (5) both reconstructions start from the first hash
    fr = sr = path[0]
    # (6) climb
    for c in path[1:]:
        # (6a) more hashes than levels
        if sn == 0:
            raise MerkleError(f"consistency proof from {old_size} to {new_size} is too long")
        # (6b) a left sibling belongs to both trees; a right sibling only to the new one
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        # (6c) one level up
        fn >>= 1
        sn >>= 1
    # (7) both roots must come out, and the path must end at the top
    if sn != 0:
        raise MerkleError(f"consistency proof from {old_size} to {new_size} is too short")
    if fr != old_root:
        raise MerkleError(f"consistency proof from {old_size} to {new_size} does not lead to the old root")
    if sr != new_root:
        raise MerkleError(f"consistency proof from {old_size} to {new_size} does not lead to the new root")


class CompactRange:
    """The right edge of a growing tree: its root in O(log n) memory and time per append.

    It holds the roots of the perfect subtrees the leaves so far decompose into, one
    per set bit of :attr:`size`, largest first.  :meth:`to_bytes` persists it, so a
    log can keep its tree head without rereading every leaf::

        b"XWCR" | version 1 | uint64 size | popcount(size) hashes of 32 bytes
    """

    __slots__ = ("_size", "_hashes")

    _MAGIC = b"XWCR"
    _VERSION = 1
    _HEADER = struct.Struct(">4sBQ")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf (its :func:`leaf_hash`, not its data)."""
        h = _check_hash(leaf_hash, "leaf hash")
        if self._size >= MAX_TREE_SIZE:
            raise ValueError("the tree is full")
        # Each trailing one bit of the old size is a perfect subtree the new leaf completes.
        n = self._size
        while n & 1:
            h = node_hash(self._hashes.pop(), h)
            n >>= 1
        self._hashes.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """The Merkle tree hash of every leaf appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        result = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            result = node_hash(h, result)
        return result

    def subtree_roots(self) -> list[tuple[int, bytes]]:
        """The perfect subtrees the leaves so far decompose into, largest first, as
        ``(height, root)``: a subtree of height ``h`` holds ``2**h`` leaves."""
        heights = [h for h in range(self._size.bit_length() - 1, -1, -1) if self._size >> h & 1]
        return list(zip(heights, self._hashes, strict=True))

    def copy(self) -> CompactRange:
        clone = CompactRange()
        clone._size = self._size
        clone._hashes = list(self._hashes)
        return clone

    def to_bytes(self) -> bytes:
        return self._HEADER.pack(self._MAGIC, self._VERSION, self._size) + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Read what :meth:`to_bytes` wrote; anything else raises :class:`MerkleError`."""
        if not isinstance(data, bytes) or len(data) < cls._HEADER.size:
            raise MerkleError("compact range is truncated")
        magic, version, size = cls._HEADER.unpack_from(data)
        if magic != cls._MAGIC or version != cls._VERSION:
            raise MerkleError("not a version 1 compact range")
        count = size.bit_count()
        body = data[cls._HEADER.size :]
        if len(body) != count * HASH_SIZE:
            raise MerkleError(f"a compact range of size {size} holds {count} hashes, found {len(body)} bytes")
        result = cls()
        result._size = size
        result._hashes = [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"
