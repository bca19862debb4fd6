"""The security server's token-signing keys: a file each in its data folder, or for
replicas a row each in the database they share.

The auditor-token key signs auditors' tokens (:mod:`trust.tokens`), the client-token key
information systems' tokens (:mod:`trust.clienttokens`); two keys, so that neither kind
of token can ever pass for the other; the management-token key signs administrators'
tokens for the management API (:mod:`gateway.management.tokens`).  Each (EC P-256, for
ES256) is made on first use by whichever comes first, the security server at start-up
or ``xweg token issue`` / ``xweg gateway client-token issue`` / ``xweg gateway token
issue``, and stored as PKCS#8 PEM, encrypted with the server's key passphrase when it
has one, mode 0600.  Creating one is create-if-absent
(:mod:`trust.keyfiles`), so two processes starting at once end up with the same key,
never one each.

Replicas of one security server (a top-level ``database_url``) must all hold the same
three keys, or a token issued by one would be refused by the next.  There the keys live
in the database they share, table ``tokenkeys.token_keys``, one row each, written once
(``INSERT ... ON CONFLICT DO NOTHING``: of replicas starting together, one key wins and
all read it back), encrypted with the key passphrase, which they therefore need.  A server moving
onto PostgreSQL takes its existing key files there, so tokens already issued stay good.
:func:`load_token_key` chooses the place from the configuration.

Issuing and verifying tokens is :mod:`trust`'s; this module only keeps the keys.
"""

from __future__ import annotations

import enum
import stat
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config import GatewayConfig
from gateway.database import Database, DatabaseErrors, connect_postgres, redact_url
from trust.keyfiles import load_or_create_private_key, private_key_pem
from trust.keys import generate_private_key, private_key_from_pem

__all__ = [
    "AUDITOR_SIGNING_KEY_FILE",
    "CLIENT_TOKEN_KEY_FILE",
    "MANAGEMENT_TOKEN_KEY_FILE",
    "TOKEN_KEYS_SCHEMA",
    "TokenKey",
    "TokenKeyError",
    "load_or_create_key_file",
    "load_token_key",
    "token_key_path",
]

log = structlog.get_logger("xweg.tokens")

#: File name of the key inside the security server's data folder.
AUDITOR_SIGNING_KEY_FILE = "auditor-token.key"
#: File name of the client-token key inside the security server's data folder.
CLIENT_TOKEN_KEY_FILE = "client-token.key"  # noqa: S105 (a file name)
#: File name of the management-token key inside the security server's data folder.
MANAGEMENT_TOKEN_KEY_FILE = "management-token.key"  # noqa: S105 (a file name)


class TokenKeyError(Exception):
    """A token key file cannot be created or read, or is readable by others."""


class TokenKey(enum.Enum):
    """The three token-signing keys of a security server: (name, file name, what it is)."""

    AUDITOR = ("auditor-token", AUDITOR_SIGNING_KEY_FILE, "auditor-token key")
    CLIENT = ("client-token", CLIENT_TOKEN_KEY_FILE, "client-token key")
    MANAGEMENT = ("management-token", MANAGEMENT_TOKEN_KEY_FILE, "management-token key")

    def __init__(self, key_name: str, file_name: str, what: str) -> None:
        self.key_name = key_name
        self.file_name = file_name
        self.what = what


def token_key_path(data_dir: Path, key: TokenKey) -> Path:
    """Where a security server with data folder ``data_dir`` keeps ``key`` as a file."""
    return Path(data_dir) / key.file_name


def load_or_create_key_file(
    path: Path, passphrase: bytes | None, key: TokenKey
) -> ec.EllipticCurvePrivateKey:
    """``key`` from the file at ``path``, created (mode 0600) if there is none yet.

    Raises :class:`TokenKeyError` if the file cannot be written or read, cannot be
    decrypted with ``passphrase``, is not a P-256 key, or is readable by group or others.
    """
    return load_or_create_private_key(path, passphrase, what=key.what, error=TokenKeyError)


#: The PostgreSQL schema of the shared token keys (a database's privileges can keep
#: auditors, who may read the message-log schemas, out of it).
TOKEN_KEYS_SCHEMA = "tokenkeys"  # noqa: S105 (a schema name)
#: The advisory lock under which a replica creates the table.
_PG_CREATE_LOCK = "xweg.tokenkeys.schema"
_PG_TABLE = """
CREATE TABLE IF NOT EXISTS token_keys (
    name text PRIMARY KEY,
    pem bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
#: Waiting for the creation lock of a replica starting at the same time.
_LOCK_TIMEOUT_S = 10.0


def load_token_key(config: GatewayConfig, key: TokenKey) -> ec.EllipticCurvePrivateKey:
    """The security server's ``key``, created on first use: in its PostgreSQL database
    when it has a top-level ``database_url`` (shared by its replicas), else in
    ``data_dir``.  Raises :class:`TokenKeyError` saying why it cannot be had."""
    path = token_key_path(config.data_dir, key)
    if config.database_url is None:
        return load_or_create_key_file(path, config.key_passphrase, key)
    if not config.key_passphrase:
        # A file is protected by its mode; a row by nothing but encryption: whoever can
        # read the table or a dump of the database could otherwise sign tokens.
        raise TokenKeyError(
            f"the {key.what} of replicas on PostgreSQL is kept in the database, encrypted with "
            "the key passphrase, and this server has none: set [keys] passphrase_file or passphrase_env"
        )
    return _load_or_create_shared(config.database_url, key, config.key_passphrase, path)


def _load_or_create_shared(
    url: str, key: TokenKey, passphrase: bytes | None, file: Path
) -> ec.EllipticCurvePrivateKey:
    where = f"{redact_url(url)} (table {TOKEN_KEYS_SCHEMA}.token_keys)"
    try:
        database = connect_postgres(url, schema=TOKEN_KEYS_SCHEMA, create_schema=True)
    except DatabaseErrors as exc:
        raise TokenKeyError(f"cannot reach the database of the {key.what}, {where}: {exc}") from exc
    try:
        database.create_tables([_PG_TABLE], lock=_PG_CREATE_LOCK, timeout_s=_LOCK_TIMEOUT_S)
        pem = _stored_pem(database, key.key_name)
        if pem is None:
            candidate = _file_pem(file, key, passphrase) if file.exists() else None
            if candidate is None:
                candidate = private_key_pem(generate_private_key(), passphrase)
            with database.write_transaction(timeout_s=_LOCK_TIMEOUT_S):
                database.execute(
                    "INSERT INTO token_keys (name, pem) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                    (key.key_name, candidate),
                )
            # Whichever replica's insert came first: every replica reads back the same key.
            pem = _stored_pem(database, key.key_name)
            if pem is None:  # deleted by hand in between
                raise TokenKeyError(f"the {key.what} vanished from {where} while it was being created")
    except DatabaseErrors as exc:
        raise TokenKeyError(f"cannot read or create the {key.what} in {where}: {exc}") from exc
    finally:
        database.close()
    try:
        shared = private_key_from_pem(pem, passphrase, source=f"the {key.what} in {where}")
    except ValueError as exc:
        # Replicas must share the key passphrase as they share the key.
        raise TokenKeyError(f"{exc} (is the key passphrase the same on every replica?)") from exc
    if file.exists():
        _warn_if_superseded(file, key, passphrase, shared)
    return shared


def _stored_pem(database: Database, name: str) -> bytes | None:
    row = database.execute("SELECT pem FROM token_keys WHERE name = ?", (name,)).fetchone()
    return None if row is None else bytes(row[0])


def _file_pem(path: Path, key: TokenKey, passphrase: bytes | None) -> bytes:
    """The PEM of a key file this server kept before it moved onto PostgreSQL, checked as
    :func:`load_or_create_key_file` checks it: never a file others can read, or one that
    the passphrase does not open, goes into the database."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        pem = path.read_bytes()
    except OSError as exc:
        raise TokenKeyError(f"cannot read the {key.what} {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise TokenKeyError(f"the {key.what} {path} is accessible to others (mode {mode:o}); chmod 600 it")
    try:
        private_key_from_pem(pem, passphrase, source=str(path))
    except ValueError as exc:
        raise TokenKeyError(f"cannot read the {key.what} {path}: {exc}") from exc
    return pem


def _warn_if_superseded(
    file: Path, key: TokenKey, passphrase: bytes | None, shared: ec.EllipticCurvePrivateKey
) -> None:
    """Say so when a key file of this server's own is not the key the replicas share: the
    tokens it signed (before this server moved onto PostgreSQL, or as a replica that lost
    the race to store its key) are no longer accepted."""
    try:
        own = private_key_from_pem(file.read_bytes(), passphrase, source=str(file))
    except (OSError, ValueError) as exc:
        log.warning("token_key.file_unreadable", key=key.key_name, path=str(file), error=str(exc))
        return
    if own.public_key() != shared.public_key():
        log.warning(
            "token_key.file_superseded",
            key=key.key_name,
            path=str(file),
            detail="the database holds another key; tokens this file's key signed are refused",
        )
