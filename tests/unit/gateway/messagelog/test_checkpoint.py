"""Checkpoints (pure): validation, canonical body and imprint, batch inclusion paths."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.messagelog.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    decode_path,
    encode_path,
    inclusion_paths,
    inclusion_paths_after,
)
from trust.merkle import CompactRange, MerkleError, inclusion_proof, leaf_hash, root, verify_inclusion

TIME = dt.datetime(2025, 3, 4, 10, 0, 0, 250000, tzinfo=dt.UTC)
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture
def checkpoint() -> Checkpoint:
    return Checkpoint(
        origin="EE/GOV/70000001/ss1",
        size=12,
        root=ROOT,
        time=TIME,
        token=b"\x30\x03\x02\x01\x01",
        tsa="Land NRW TSA",
        gen_time=TIME.replace(microsecond=0),
        signature="eyJhbGciOiJFUzI1NiJ9..c2lnbmF0dXJl",
        signer_ocsp=b"\x30\x03\x0a\x01\x00",
    )


def test_body_is_canonical_json_and_imprint_its_sha256(checkpoint: Checkpoint) -> None:
    body = checkpoint.body()
    assert json.loads(body) == {
        "format": CHECKPOINT_FORMAT,
        "origin": "EE/GOV/70000001/ss1",
        "size": 12,
        "root": ROOT.hex(),
        "time": "2025-03-04T10:00:00.250000Z",
    }
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    assert checkpoint.imprint() == hashlib.sha256(body).digest()
    assert Checkpoint.unsigned_body(checkpoint.origin, 12, ROOT, TIME) == body
    assert checkpoint.digest() == hashlib.sha512(body).digest()
    assert checkpoint.owner == "EE/GOV/70000001"
    # The token, TSA, its time and the signature are not part of what they cover.
    changed = dataclasses.replace(
        checkpoint, tsa="other", token=b"\x30\x00", signature="x..y", signer_ocsp=None
    )
    assert changed.body() == body


def test_stored_body_round_trips(checkpoint: Checkpoint) -> None:
    again = Checkpoint.from_stored(
        checkpoint.body(),
        token=checkpoint.token,
        tsa=checkpoint.tsa,
        gen_time=checkpoint.gen_time,
        signature=checkpoint.signature,
        signer_ocsp=checkpoint.signer_ocsp,
    )
    assert again == checkpoint


def test_checkpoint_file_round_trips(checkpoint: Checkpoint) -> None:
    data = checkpoint.to_file_json()
    stated = json.loads(data)
    assert stated["format"] == "xweg-checkpoint-file/1"
    assert stated["body"].encode() == checkpoint.body()
    assert stated["signature"] == checkpoint.signature
    assert Checkpoint.from_file_json(data) == checkpoint
    without = dataclasses.replace(checkpoint, signer_ocsp=None)
    assert json.loads(without.to_file_json())["signer_ocsp"] is None
    assert Checkpoint.from_file_json(without.to_file_json()) == without


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "xweg-checkpoint-file/2"}, "format"),
        ({"token": "not base64!"}, "base64"),
        ({"signer_ocsp": ""}, "signer_ocsp"),
        ({"signature": ""}, "signature"),
        ({"gen_time": "2025-03-04T10:00:00Z"}, "log time"),
        ({"body": "{}"}, "checkpoint body lacks"),
        ({"extra": 1}, "unexpected keys"),
    ],
)
def test_malformed_checkpoint_files_are_refused(
    checkpoint: Checkpoint, change: dict[str, Any], message: str
) -> None:
    data = json.dumps({**json.loads(checkpoint.to_file_json()), **change}).encode()
    with pytest.raises(ValueError, match=message):
        Checkpoint.from_file_json(data)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (None, "canonical form"),
        ({"format": "xweg-checkpoint/2"}, "format"),
        ({"root": "zz"}, "hex digits"),
        ({"root": "00" * 31}, "hex digits"),
        ({"size": 0}, "size"),
        ({"size": "12"}, "size"),
        ({"origin": "EE/GOV/70000001"}, "security server id"),
        ({"time": "2025-03-04T10:00:00Z"}, "log time"),
        ({"extra": 1}, "unexpected keys"),
    ],
)
def test_malformed_stored_bodies_are_refused(
    checkpoint: Checkpoint, body: bytes | dict[str, Any] | None, message: str
) -> None:
    if body is None:
        raw = json.dumps(json.loads(checkpoint.body()), indent=1).encode()
    elif isinstance(body, dict):
        raw = json.dumps({**json.loads(checkpoint.body()), **body}).encode()
    else:
        raw = body
    with pytest.raises(ValueError, match=message):
        Checkpoint.from_stored(raw, token=b"\x30\x00", tsa="t", gen_time=TIME, signature="a..b")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"origin": "EE/GOV/70000001"}, "security server id"),
        ({"origin": 5}, "origin"),
        ({"size": 0}, "size"),
        ({"size": True}, "size"),
        ({"root": b"\x00" * 31}, "root"),
        ({"time": dt.datetime(2025, 3, 4)}, "UTC"),
        ({"gen_time": "2025-03-04"}, "gen_time"),
        ({"token": b""}, "token"),
        ({"token": b"\x30" * (256 * 1024 + 1)}, "larger"),
        ({"tsa": ""}, "tsa"),
        ({"tsa": "a\nb"}, "control"),
        ({"signature": ""}, "signature"),
        ({"signature": "x" * (256 * 1024 + 1)}, "signature"),
        ({"signer_ocsp": b""}, "signer_ocsp"),
        ({"signer_ocsp": b"\x30" * (64 * 1024 + 1)}, "signer_ocsp"),
    ],
)
def test_checkpoint_validates_its_fields(
    checkpoint: Checkpoint, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(checkpoint, **change)


def _leaves(count: int) -> list[bytes]:
    return [leaf_hash(index.to_bytes(4, "big")) for index in range(count)]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_batch_paths_are_rfc9162_inclusion_proofs(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=300), label="size")
    first = data.draw(st.integers(min_value=0, max_value=size - 1), label="first")
    last = data.draw(st.integers(min_value=first, max_value=size - 1), label="last")
    leaves = _leaves(size)
    tree_root = root(leaves)
    paths = inclusion_paths(leaves, first, last)
    assert len(paths) == last - first + 1
    for index, path in zip(range(first, last + 1), paths, strict=True):
        assert path == inclusion_proof(index, leaves)
        verify_inclusion(leaves[index], index, size, path, tree_root)


def test_every_size_up_to_70_matches_trust_merkle() -> None:
    for size in range(1, 71):
        leaves = _leaves(size)
        assert inclusion_paths(leaves, 0, size - 1) == [inclusion_proof(i, leaves) for i in range(size)]


def test_a_path_does_not_prove_another_leaf() -> None:
    leaves = _leaves(11)
    path = inclusion_paths(leaves, 6, 6)[0]
    with pytest.raises(MerkleError):
        verify_inclusion(leaves[5], 6, 11, path, root(leaves))


def test_large_batches_are_fast() -> None:
    # 10,000 records at the end of a log of 100,000: one tree build, not 10,000.
    leaves = _leaves(100_000)
    paths = inclusion_paths(leaves, 90_000, 99_999)
    assert len(paths) == 10_000
    verify_inclusion(leaves[95_000], 95_000, 100_000, paths[5_000], root(leaves))


@pytest.mark.parametrize("first, last", [(-1, 2), (3, 2), (0, 5), (True, 1)])
def test_paths_outside_the_tree_are_refused(first: int, last: int) -> None:
    with pytest.raises(ValueError):
        inclusion_paths(_leaves(5), first, last)


def test_paths_need_32_byte_leaves() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        inclusion_paths([b"\x00" * 32, b"short"], 0, 1)


def test_paths_encode_as_concatenated_hashes() -> None:
    path = inclusion_paths(_leaves(9), 4, 4)[0]
    encoded = encode_path(path)
    assert encoded == b"".join(path)
    assert decode_path(encoded) == path
    assert decode_path(b"") == []
    with pytest.raises(ValueError, match="whole number"):
        decode_path(encoded[:-1])
    with pytest.raises(ValueError, match="32 bytes"):
        encode_path([b"short"])


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.integers(min_value=1, max_value=200))
def test_paths_after_a_frontier_are_the_paths_over_the_whole_tree(covered: int, new: int) -> None:
    # A timestamp round builds the paths of the records since the last checkpoint from
    # that checkpoint's frontier alone; they must be exactly the whole tree's paths.
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(covered + new)]
    frontier = CompactRange()
    frontier.extend(leaves[:covered])
    paths = inclusion_paths_after(frontier, leaves[covered:])
    assert paths == inclusion_paths(leaves, covered, covered + new - 1)
    tree_root = root(leaves)
    for offset, path in enumerate(paths):
        verify_inclusion(leaves[covered + offset], covered + offset, covered + new, path, tree_root)


def test_paths_after_refuse_what_is_not_a_leaf_hash() -> None:
    assert inclusion_paths_after(CompactRange(), []) == []
    with pytest.raises(ValueError, match="leaf hash 1 must be 32 bytes"):
        inclusion_paths_after(CompactRange(), [bytes(32), b"short"])


def test_subtree_roots_name_the_heights_of_the_set_bits() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(13)]  # 13 = 8 + 4 + 1
    frontier = CompactRange()
    frontier.extend(leaves)
    assert [height for height, _ in frontier.subtree_roots()] == [3, 2, 0]
    assert frontier.subtree_roots()[0][1] == root(leaves[:8])
    assert frontier.subtree_roots()[2][1] == leaves[12]
