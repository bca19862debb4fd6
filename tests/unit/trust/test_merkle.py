"""Merkle trees: RFC 6962 reference vectors, a recursive reference implementation, and tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trust.errors import TrustError
from trust.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# Certificate Transparency's reference leaves and tree heads (RFC 6962 test data).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, audit path)
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

CT_HASHES = [leaf_hash(d) for d in CT_LEAVES]


# --- a reference implementation, straight from RFC 9162 §2.1, slices and recursion ---


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_consistency(m: int, d: list[bytes]) -> list[bytes]:
    return [] if m == 0 else ref_subproof(m, d, True)


def leaves(n: int, salt: int = 0) -> list[bytes]:
    return [leaf_hash(salt.to_bytes(4, "big") + i.to_bytes(4, "big")) for i in range(n)]


def flip(h: bytes, at: int = 0) -> bytes:
    return h[:at] + bytes([h[at] ^ 0x01]) + h[at + 1 :]


# --- known answers ---


def test_hashing_primitives() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert issubclass(MerkleError, TrustError)


def test_ct_reference_roots() -> None:
    for n in range(len(CT_LEAVES) + 1):
        assert root(CT_HASHES[:n]).hex() == CT_ROOTS[n]
        assert ref_mth(CT_HASHES[:n]).hex() == CT_ROOTS[n]


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_ct_reference_inclusion(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(index, CT_HASHES[:size])
    assert [p.hex() for p in proof] == path
    verify_inclusion(CT_HASHES[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_ct_reference_consistency(old: int, new: int, path: list[str]) -> None:
    proof = consistency_proof(old, CT_HASHES[:new])
    assert [p.hex() for p in proof] == path
    verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new]), proof)


# --- properties ---


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=1, max_value=300), salt=st.integers(min_value=0, max_value=2**16))
def test_every_inclusion_proof_verifies(n: int, salt: int) -> None:
    hashes = leaves(n, salt)
    head = root(hashes)
    assert head == ref_mth(hashes)
    for i in range(n):
        proof = inclusion_proof(i, hashes)
        verify_inclusion(hashes[i], i, n, proof, head)
    # The reference implementation agrees on a sample of paths (it is quadratic).
    for i in {0, n // 3, n // 2, n - 1}:
        assert inclusion_proof(i, hashes) == ref_path(i, hashes)


def test_every_consistency_proof_verifies_up_to_64() -> None:
    hashes = leaves(64, salt=7)
    roots = [root(hashes[:n]) for n in range(65)]
    for new in range(65):
        for old in range(new + 1):
            proof = consistency_proof(old, hashes[:new])
            if old and new <= 24:
                assert proof == ref_consistency(old, hashes[:new])
            verify_consistency(old, new, roots[old], roots[new], proof)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=0, max_value=300))
def test_compact_range_matches_root_for_every_prefix(n: int) -> None:
    hashes = leaves(n, salt=n)
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    for i, h in enumerate(hashes):
        compact.append(h)
        assert compact.size == i + 1
        assert compact.root() == root(hashes[: i + 1])
        # Persisted and restored, it continues where it left off.
        if i % 17 == 0:
            restored = CompactRange.from_bytes(compact.to_bytes())
            assert restored == compact
            compact = restored
    assert len(compact.to_bytes()) == 13 + 32 * n.bit_count()


def test_compact_range_refuses_corrupt_state() -> None:
    compact = CompactRange()
    compact.extend(leaves(5))
    data = compact.to_bytes()
    for bad in (data[:-1], data + b"\x00", b"XWCQ" + data[4:], data[:4] + b"\x02" + data[5:], b""):
        with pytest.raises(MerkleError):
            CompactRange.from_bytes(bad)
    # A size that does not match the number of hashes stored
    with pytest.raises(MerkleError, match="holds 1 hashes"):
        CompactRange.from_bytes(data[:5] + (4).to_bytes(8, "big") + data[13:])
    with pytest.raises(ValueError, match="32 bytes"):
        compact.append(b"short")


# --- tampering: every mutation of a good proof fails ---


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_inclusion_tampering_is_detected(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=70), label="size")
    i = data.draw(st.integers(min_value=0, max_value=n - 1), label="index")
    hashes = leaves(n, salt=3)
    head = root(hashes)
    proof = inclusion_proof(i, hashes)

    # a flipped bit anywhere in any proof hash
    for k in range(len(proof)):
        at = data.draw(st.integers(min_value=0, max_value=31), label="byte")
        bad = [*proof[:k], flip(proof[k], at), *proof[k + 1 :]]
        with pytest.raises(MerkleError, match="does not lead to the root"):
            verify_inclusion(hashes[i], i, n, bad, head)
    # a hash dropped, added or two swapped
    if proof:
        with pytest.raises(MerkleError):
            verify_inclusion(hashes[i], i, n, proof[:-1], head)
    with pytest.raises(MerkleError):
        verify_inclusion(hashes[i], i, n, [*proof, head], head)
    if len(proof) > 1 and proof[0] != proof[1]:
        with pytest.raises(MerkleError):
            verify_inclusion(hashes[i], i, n, [proof[1], proof[0], *proof[2:]], head)
    # another leaf, another root
    with pytest.raises(MerkleError):
        verify_inclusion(flip(hashes[i]), i, n, proof, head)
    with pytest.raises(MerkleError):
        verify_inclusion(hashes[i], i, n, proof, flip(head, 31))
    # every other index in the same tree
    for j in range(n):
        if j != i:
            with pytest.raises(MerkleError):
                verify_inclusion(hashes[i], j, n, proof, head)
    # every other size whose audit path for this index has another length
    for m in range(i + 1, n + 40):
        if m != n and len(ref_path(i, hashes[:1] * m)) != len(proof):
            with pytest.raises(MerkleError, match="too"):
                verify_inclusion(hashes[i], i, m, proof, head)
    # an index outside the tree
    with pytest.raises(MerkleError, match="outside"):
        verify_inclusion(hashes[i], n, n, proof, head)


def test_inclusion_proof_size_is_bound_by_the_root() -> None:
    # A proof for leaf 0 of 3 has the same shape as one for leaf 0 of 4; only the root
    # (signed in a checkpoint with its size) tells them apart.
    hashes = leaves(4)
    proof = inclusion_proof(0, hashes[:3])
    verify_inclusion(hashes[0], 0, 3, proof, root(hashes[:3]))
    with pytest.raises(MerkleError, match="does not lead to the root"):
        verify_inclusion(hashes[0], 0, 4, proof, root(hashes))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_consistency_tampering_is_detected(data: st.DataObject) -> None:
    new = data.draw(st.integers(min_value=2, max_value=70), label="new")
    old = data.draw(st.integers(min_value=1, max_value=new - 1), label="old")
    hashes = leaves(new, salt=5)
    old_root, new_root = root(hashes[:old]), root(hashes)
    proof = consistency_proof(old, hashes)
    verify_consistency(old, new, old_root, new_root, proof)

    for k in range(len(proof)):
        at = data.draw(st.integers(min_value=0, max_value=31), label="byte")
        bad = [*proof[:k], flip(proof[k], at), *proof[k + 1 :]]
        with pytest.raises(MerkleError, match="does not lead to the"):
            verify_consistency(old, new, old_root, new_root, bad)
    with pytest.raises(MerkleError):
        verify_consistency(old, new, old_root, new_root, proof[:-1])
    with pytest.raises(MerkleError):
        verify_consistency(old, new, old_root, new_root, [*proof, new_root])
    # (when the old tree is perfect its root is part of the path, so the new root is what fails)
    with pytest.raises(MerkleError, match="does not lead to the"):
        verify_consistency(old, new, flip(old_root), new_root, proof)
    with pytest.raises(MerkleError, match="new root"):
        verify_consistency(old, new, old_root, flip(new_root), proof)
    # a rewritten history: the old tree's last leaf changed
    forged = [*hashes[: old - 1], flip(hashes[old - 1]), *hashes[old:]]
    with pytest.raises(MerkleError):
        verify_consistency(old, new, old_root, root(forged), consistency_proof(old, forged))
    # the log shrank
    with pytest.raises(MerkleError, match="shrank"):
        verify_consistency(new, old, new_root, old_root, proof)


def test_consistency_edge_cases() -> None:
    hashes = leaves(5)
    head = root(hashes)
    verify_consistency(0, 5, EMPTY_ROOT, head, [])
    verify_consistency(5, 5, head, head, [])
    with pytest.raises(MerkleError, match="empty root"):
        verify_consistency(0, 5, head, head, [])
    with pytest.raises(MerkleError, match="must be empty"):
        verify_consistency(0, 5, EMPTY_ROOT, head, [head])
    with pytest.raises(MerkleError, match="different roots"):
        verify_consistency(5, 5, head, flip(head), [])
    with pytest.raises(MerkleError, match="must be empty"):
        verify_consistency(5, 5, head, head, [head])
    with pytest.raises(MerkleError, match="empty consistency proof"):
        verify_consistency(2, 5, root(hashes[:2]), head, [])


def test_malformed_proof_inputs_raise_merkle_error() -> None:
    hashes = leaves(4)
    head = root(hashes)
    proof = inclusion_proof(1, hashes)
    for args in (
        (b"short", 1, 4, proof, head),
        (hashes[1], 1, 4, proof, b"short"),
        (hashes[1], -1, 4, proof, head),
        (hashes[1], 1, 2**64, proof, head),
        (hashes[1], 1, 4, [b"x" * 31, proof[1]], head),
        (hashes[1], 1, 4, [head] * 65, head),
    ):
        with pytest.raises(MerkleError):
            verify_inclusion(*args)
    with pytest.raises(MerkleError):
        verify_inclusion(hashes[1], True, 4, proof, head)  # a bool is not an index


def test_proof_generation_refuses_impossible_requests() -> None:
    hashes = leaves(4)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(4, hashes)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(0, [])
    with pytest.raises(ValueError, match="old size"):
        consistency_proof(5, hashes)
    with pytest.raises(ValueError, match="32 bytes"):
        root([b"x"])
