"""Files a server makes for itself on first use, and reads from then on.

Creating one is create-if-absent: the new file is written (mode 0600 for secrets) to
a temporary name and hard-linked into place.  ``link`` fails when the name exists, so
of two processes starting at once exactly one writes the file and the other keeps and
reads the winner's, never one each.  The registry keeps its API-token key this way, a
security server its token-signing keys and internal TLS certificate and key.  What the
files mean is their users' business; :mod:`trust.keys` writes and reads the key files
that are replaced rather than created once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trust.keys import generate_private_key, load_private_key

__all__ = ["create_if_absent", "private_key_pem", "load_or_create_private_key"]


def create_if_absent(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Write ``data`` at ``path`` unless a file is already there; whether this call wrote it.

    The file has ``mode`` from its first byte and is fsynced before it appears under its
    name, so a reader sees no file or the whole file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process was first: keep its file
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return True


def private_key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with ``passphrase`` when there is one."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_or_create_private_key(
    path: Path, passphrase: bytes | None, *, what: str, error: type[Exception]
) -> ec.EllipticCurvePrivateKey:
    """The P-256 key at ``path``, created (mode 0600) if there is none yet.

    ``what`` names the key in messages (``"auditor-token key"``).  Raises ``error`` if the
    file cannot be written or read, cannot be decrypted with ``passphrase``, is not a
    P-256 key, or is readable by group or others.
    """
    path = Path(path)
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            create_if_absent(path, private_key_pem(generate_private_key(), passphrase))
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise error(f"cannot create the {what} {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise error(f"the {what} {path} is accessible to others (mode {mode:o}); chmod 600 it")
    try:
        return load_private_key(path, passphrase)
    except (OSError, ValueError) as exc:
        raise error(f"cannot read the {what} {path}: {exc}") from exc
