"""The security server's auditor-token signing key: one file in its data folder.

The key (EC P-256, for ES256) is made on first use by whichever comes first, the
security server at start-up or ``xweg token issue``, and stored as PKCS#8 PEM,
encrypted with the server's key passphrase when it has one, mode 0600.  Creating it
is create-if-absent: the new key is written to a temporary file and hard-linked into
place, so two processes starting at once end up with the same key, never one each.

Issuing and verifying tokens is :mod:`trust.tokens`'s; this module only keeps the key.
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

__all__ = ["AUDITOR_SIGNING_KEY_FILE", "TokenKeyError", "auditor_token_key_path", "load_or_create_token_key"]

#: File name of the key inside the security server's data folder.
AUDITOR_SIGNING_KEY_FILE = "auditor-token.key"


class TokenKeyError(Exception):
    """The auditor-token key file cannot be created or read, or is readable by others."""


def auditor_token_key_path(data_dir: Path) -> Path:
    """Where a security server with data folder ``data_dir`` keeps its auditor-token key."""
    return Path(data_dir) / AUDITOR_SIGNING_KEY_FILE


def _pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _create(path: Path, passphrase: bytes | None) -> None:
    """Write a new key at ``path`` unless a file is already there (then leave that one)."""
    data = _pem(generate_private_key(), passphrase)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process was first: keep its key
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def load_or_create_token_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    """The auditor-token key at ``path``, created (mode 0600) if there is none yet.

    Raises :class:`TokenKeyError` if the file cannot be written or read, cannot be
    decrypted with ``passphrase``, is not a P-256 key, or is readable by group or others.
    """
    path = Path(path)
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _create(path, passphrase)
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise TokenKeyError(f"cannot create the auditor-token key {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise TokenKeyError(
            f"the auditor-token key {path} is accessible to others (mode {mode:o}); chmod 600 it"
        )
    try:
        return load_private_key(path, passphrase)
    except (OSError, ValueError) as exc:
        raise TokenKeyError(f"cannot read the auditor-token key {path}: {exc}") from exc
