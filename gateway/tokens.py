"""The security server's token-signing keys: one file each in its data folder.

The auditor-token key signs auditors' tokens (:mod:`trust.tokens`), the client-token key
information systems' tokens (:mod:`trust.clienttokens`); two keys, so that neither kind
of token can ever pass for the other; the management-token key signs administrators'
tokens for the management API (:mod:`gateway.management.tokens`).  Each (EC P-256, for
ES256) is made on first use by whichever comes first, the security server at start-up
or ``xweg token issue`` / ``xweg gateway client-token issue`` / ``xweg gateway token
issue``, and stored as PKCS#8 PEM, encrypted with the
server's key passphrase when it has one, mode 0600.  Creating one is create-if-absent
(:mod:`trust.keyfiles`), so two processes starting at once end up with the same key,
never one each.

Issuing and verifying tokens is :mod:`trust`'s; this module only keeps the keys.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from trust.keyfiles import load_or_create_private_key

__all__ = [
    "AUDITOR_SIGNING_KEY_FILE",
    "CLIENT_TOKEN_KEY_FILE",
    "MANAGEMENT_TOKEN_KEY_FILE",
    "TokenKeyError",
    "auditor_token_key_path",
    "client_token_key_path",
    "load_or_create_client_token_key",
    "load_or_create_management_token_key",
    "management_token_key_path",
    "load_or_create_token_key",
]

#: File name of the key inside the security server's data folder.
AUDITOR_SIGNING_KEY_FILE = "auditor-token.key"
#: File name of the client-token key inside the security server's data folder.
CLIENT_TOKEN_KEY_FILE = "client-token.key"  # noqa: S105 (a file name)
#: File name of the management-token key inside the security server's data folder.
MANAGEMENT_TOKEN_KEY_FILE = "management-token.key"  # noqa: S105 (a file name)


class TokenKeyError(Exception):
    """A token key file cannot be created or read, or is readable by others."""


def auditor_token_key_path(data_dir: Path) -> Path:
    """Where a security server with data folder ``data_dir`` keeps its auditor-token key."""
    return Path(data_dir) / AUDITOR_SIGNING_KEY_FILE


def load_or_create_token_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    """The auditor-token key at ``path``, created (mode 0600) if there is none yet.

    Raises :class:`TokenKeyError` if the file cannot be written or read, cannot be
    decrypted with ``passphrase``, is not a P-256 key, or is readable by group or others.
    """
    return load_or_create_private_key(path, passphrase, what="auditor-token key", error=TokenKeyError)


def client_token_key_path(data_dir: Path) -> Path:
    """Where a security server with data folder ``data_dir`` keeps its client-token key."""
    return Path(data_dir) / CLIENT_TOKEN_KEY_FILE


def load_or_create_client_token_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    """The client-token key at ``path`` (see :mod:`trust.clienttokens`), created as the
    auditor-token key is; raises :class:`TokenKeyError` as :func:`load_or_create_token_key`."""
    return load_or_create_private_key(path, passphrase, what="client-token key", error=TokenKeyError)


def management_token_key_path(data_dir: Path) -> Path:
    """Where a security server with data folder ``data_dir`` keeps its management-token key."""
    return Path(data_dir) / MANAGEMENT_TOKEN_KEY_FILE


def load_or_create_management_token_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    """The management-token key at ``path``, created as the auditor-token key is; raises
    :class:`TokenKeyError` as :func:`load_or_create_token_key`."""
    return load_or_create_private_key(path, passphrase, what="management-token key", error=TokenKeyError)
