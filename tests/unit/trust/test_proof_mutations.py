"""Every mutation of a good inclusion or consistency proof fails, for every index and size up to 17.

As transparency-dev's merkle tests do: a proof that verifies must stop verifying when
any single byte of it changes, when it is cut short or extended, when two of its hashes
swap, or when it is presented for a neighbouring index, another leaf or other roots.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trust.merkle import (
    EMPTY_ROOT,
    MerkleError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 17
LEAVES = [leaf_hash(f"record {i}".encode()) for i in range(40)]
EXTRA = leaf_hash(b"an attacker's hash")


def mutations(proof: list[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    """Every single-byte change, truncation, extension and swap of ``proof``."""
    for i, h in enumerate(proof):
        for at in range(len(h)):
            changed = bytearray(h)
            changed[at] ^= 0x01
            yield f"byte {at} of hash {i}", [*proof[:i], bytes(changed), *proof[i + 1 :]]
    for cut in range(len(proof)):
        yield f"first {cut} hashes", proof[:cut]
        yield f"without hash {cut}", proof[:cut] + proof[cut + 1 :]
    for at in range(len(proof) + 1):
        yield f"extra hash at {at}", [*proof[:at], EXTRA, *proof[at:]]
    if proof:
        yield "last hash repeated", [*proof, proof[-1]]
    for i in range(len(proof) - 1):
        if proof[i] != proof[i + 1]:
            yield f"hashes {i} and {i + 1} swapped", [*proof[:i], proof[i + 1], proof[i], *proof[i + 2 :]]


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_mutation_of_an_inclusion_proof_fails(size: int) -> None:
    leaves = LEAVES[:size]
    tree_root = root(leaves)
    for index in range(size):
        proof = inclusion_proof(index, leaves)
        verify_inclusion(leaves[index], index, size, proof, tree_root)
        for what, bad in mutations(proof):
            with pytest.raises(MerkleError):
                verify_inclusion(leaves[index], index, size, bad, tree_root)
                pytest.fail(f"inclusion of {index} in {size}: {what} verified")
        # The right proof for the wrong place, leaf or root.
        for other_index in (index - 1, index + 1):
            if 0 <= other_index < size and inclusion_proof(other_index, leaves) != proof:
                with pytest.raises(MerkleError):
                    verify_inclusion(leaves[index], other_index, size, proof, tree_root)
        with pytest.raises(MerkleError):
            verify_inclusion(EXTRA, index, size, proof, tree_root)
        with pytest.raises(MerkleError):
            verify_inclusion(leaves[index], index, size, proof, EMPTY_ROOT)


@pytest.mark.parametrize("new_size", range(1, MAX_SIZE + 1))
def test_every_mutation_of_a_consistency_proof_fails(new_size: int) -> None:
    leaves = LEAVES[:new_size]
    new_root = root(leaves)
    for old_size in range(1, new_size + 1):
        old_root = root(leaves[:old_size])
        proof = consistency_proof(old_size, leaves)
        verify_consistency(old_size, new_size, old_root, new_root, proof)
        for what, bad in mutations(proof):
            with pytest.raises(MerkleError):
                verify_consistency(old_size, new_size, old_root, new_root, bad)
                pytest.fail(f"consistency {old_size} -> {new_size}: {what} verified")
        # The right proof between other sizes or roots.
        for other_old in (old_size - 1, old_size + 1):
            if 1 <= other_old <= new_size and consistency_proof(other_old, leaves) != proof:
                with pytest.raises(MerkleError):
                    verify_consistency(other_old, new_size, old_root, new_root, proof)
        with pytest.raises(MerkleError):
            verify_consistency(old_size, new_size, EXTRA, new_root, proof)
        with pytest.raises(MerkleError):
            verify_consistency(old_size, new_size, old_root, EXTRA, proof)
        # A different history: the old tree had another last leaf.
        forked = [*leaves[: old_size - 1], EXTRA]
        with pytest.raises(MerkleError):
            verify_consistency(old_size, new_size, root(forked), new_root, proof)
