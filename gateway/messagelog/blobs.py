"""A content-addressed store for message bodies too large to keep inline in the log.

A body is stored once, under the hex SHA-512 of its bytes, at
``<root>/<digest[:2]>/<digest>``; identical bodies share one file.  Writing is atomic
(a temporary file in the same folder, written, fsynced, renamed over the target, and
the folder fsynced), so a blob either exists whole or not at all.  Reading checks the
hash, so a changed file is reported (:class:`BlobCorrupt`) and never returned.

Digests are validated (exactly 128 lowercase hex characters) before they become a path,
so a digest read from a tampered log cannot name a file outside the root.  Which blobs a
log still needs, and when one may be deleted, is the store's business
(:mod:`gateway.messagelog.store`), not this module's.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from gateway.messagelog.errors import MessageLogError

__all__ = [
    "BlobStore",
    "BlobError",
    "BlobMissing",
    "BlobCorrupt",
    "MAX_BLOB_BYTES",
    "DIGEST_HEX_LENGTH",
    "check_digest",
    "body_digest",
]

#: Largest body the blob store accepts: well above the gateway's 10 MiB body limit.
MAX_BLOB_BYTES = 64 * 1024 * 1024
#: A SHA-512 in lowercase hex.
DIGEST_HEX_LENGTH = 128
_DIGEST = re.compile(r"[0-9a-f]{128}")
_READ_CHUNK = 1024 * 1024  # bytes


class BlobError(MessageLogError):
    """A blob could not be written, read or deleted (an OS error, wrapped)."""


class BlobMissing(BlobError):
    """No blob is stored under ``digest``."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"its body blob {digest} is missing")
        self.digest = digest


class BlobCorrupt(BlobError):
    """The file stored under ``digest`` does not hash to it (or is larger than any blob)."""

    def __init__(self, digest: str, reason: str = "its content does not hash to that digest") -> None:
        super().__init__(f"its body blob {digest} does not match: {reason}")
        self.digest = digest


def check_digest(digest: object) -> str:
    """``digest`` if it is a SHA-512 in lowercase hex; ``ValueError`` otherwise."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError(f"a blob digest must be {DIGEST_HEX_LENGTH} lowercase hex characters")
    return digest


def body_digest(data: bytes) -> str:
    """The digest a body is stored under: SHA-512, lowercase hex."""
    return hashlib.sha512(data).hexdigest()


class BlobStore:
    """Blobs under ``root`` (created on the first write; reading never creates it)."""

    def __init__(self, root: Path, *, max_blob_bytes: int = MAX_BLOB_BYTES) -> None:
        if isinstance(max_blob_bytes, bool) or not isinstance(max_blob_bytes, int) or max_blob_bytes < 1:
            raise ValueError("max_blob_bytes must be a positive integer")
        self._root = Path(root)
        self._max = max_blob_bytes

    @property
    def root(self) -> Path:
        return self._root

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (whether or not it exists)."""
        check_digest(digest)
        return self._root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its digest; storing it again is cheap and safe.

        An existing file under the digest is kept only if it really holds ``data``;
        otherwise (damaged, truncated) it is replaced.
        """
        if not isinstance(data, bytes):
            raise TypeError("a blob is bytes")
        if len(data) > self._max:
            raise ValueError(f"a blob may hold at most {self._max} bytes, not {len(data)}")
        digest = body_digest(data)
        target = self.path(digest)
        try:
            if self._holds(target, digest):
                return digest
            created = not target.parent.is_dir()
            target.parent.mkdir(parents=True, exist_ok=True)
            if created:
                _fsync_dir(self._root)
            handle, temp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
            try:
                with os.fdopen(handle, "wb") as temp:
                    temp.write(data)
                    temp.flush()
                    os.fsync(temp.fileno())
                os.replace(temp_name, target)
            except BaseException:
                Path(temp_name).unlink(missing_ok=True)
                raise
            _fsync_dir(target.parent)
        except OSError as exc:
            raise BlobError(f"cannot store body blob {digest}: {exc}") from exc
        return digest

    def get(self, digest: str) -> bytes:
        """The blob's bytes, checked against ``digest``.

        Raises :class:`BlobMissing` or :class:`BlobCorrupt`; ``ValueError`` for a
        malformed digest.
        """
        target = self.path(digest)
        try:
            with target.open("rb") as source:
                data = source.read(self._max + 1)
        except FileNotFoundError as exc:
            raise BlobMissing(digest) from exc
        except OSError as exc:
            raise BlobError(f"cannot read body blob {digest}: {exc}") from exc
        if len(data) > self._max:
            raise BlobCorrupt(digest, f"it is larger than {self._max} bytes")
        if body_digest(data) != digest:
            raise BlobCorrupt(digest)
        return data

    def delete(self, digest: str) -> bool:
        """Remove the blob; True if it existed.  The folder is fsynced, so it stays removed."""
        target = self.path(digest)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BlobError(f"cannot delete body blob {digest}: {exc}") from exc
        try:
            _fsync_dir(target.parent)
        except OSError as exc:
            raise BlobError(f"cannot delete body blob {digest}: {exc}") from exc
        return True

    def _holds(self, target: Path, digest: str) -> bool:
        """Whether ``target`` exists and hashes to ``digest`` (read a chunk at a time)."""
        hasher = hashlib.sha512()
        size = 0
        try:
            with target.open("rb") as source:
                while chunk := source.read(_READ_CHUNK):
                    size += len(chunk)
                    if size > self._max:
                        return False
                    hasher.update(chunk)
        except FileNotFoundError:
            return False
        return hasher.hexdigest() == digest


def _fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable (POSIX: fsync the directory)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
