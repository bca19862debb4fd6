"""The blob store: content-addressed, atomic, hash-checked on read, no way out of its root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.messagelog.blobs import BlobCorrupt, BlobMissing, BlobStore, body_digest, check_digest

BODY = b'{"person":"1","document":"' + b"x" * 4096 + b'"}'


def test_put_stores_under_the_sha512_and_get_returns_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(BODY)
    assert digest == hashlib.sha512(BODY).hexdigest() == body_digest(BODY)
    assert store.path(digest) == tmp_path / "blobs" / digest[:2] / digest
    assert store.path(digest).read_bytes() == BODY
    assert store.exists(digest)
    assert store.get(digest) == BODY


def test_identical_bodies_are_stored_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.put(BODY) == store.put(BODY)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [store.path(body_digest(BODY))]  # no temporary file left either


def test_a_changed_blob_is_refused_on_read(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(BODY)
    store.path(digest).write_bytes(BODY.replace(b"x", b"y", 1))
    with pytest.raises(BlobCorrupt, match=f"its body blob {digest} does not match"):
        store.get(digest)


def test_a_missing_blob_is_named(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = body_digest(BODY)
    with pytest.raises(BlobMissing, match=f"its body blob {digest} is missing"):
        store.get(digest)
    assert not store.exists(digest)


def test_put_replaces_a_damaged_file_under_the_same_digest(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(BODY)
    store.path(digest).write_bytes(b"truncated")
    assert store.put(BODY) == digest
    assert store.get(digest) == BODY


def test_a_blob_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_blob_bytes=1024)
    with pytest.raises(ValueError, match="at most 1024 bytes"):
        store.put(BODY)
    digest = body_digest(BODY)
    store.path(digest).parent.mkdir(parents=True)
    store.path(digest).write_bytes(BODY)  # planted behind the store's back
    with pytest.raises(BlobCorrupt, match="larger than 1024 bytes"):
        store.get(digest)


@pytest.mark.parametrize(
    "digest",
    ["../../etc/passwd", "A" * 128, "a" * 127, "a" * 129, "/" + "a" * 127, "a" * 126 + "/x", "", "g" * 128],
)
def test_a_digest_that_is_not_128_lowercase_hex_never_becomes_a_path(tmp_path: Path, digest: str) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ValueError, match="128 lowercase hex"):
        store.path(digest)
    with pytest.raises(ValueError, match="128 lowercase hex"):
        store.get(digest)
    with pytest.raises(ValueError, match="128 lowercase hex"):
        store.delete(digest)
    with pytest.raises(ValueError):
        check_digest(digest)


def test_delete_removes_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(BODY)
    assert store.delete(digest) is True
    assert store.delete(digest) is False
    assert not store.exists(digest)


def test_reading_never_creates_the_root(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "absent")
    with pytest.raises(BlobMissing):
        store.get(body_digest(b""))
    assert not (tmp_path / "absent").exists()
