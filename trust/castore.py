"""A certificate authority's state on disk: its keys, its certificates and the register of what it issued.

The store is one directory::

    root.pem  root.key          the root CA (key PKCS#8, encrypted, mode 0600)
    issuing.pem  issuing.key    the issuing CA the root signed; it signs every end entity
    ocsp.pem  ocsp.key          the issuing CA's delegated OCSP responder
    ca.db                       SQLite: every certificate issued, with its status

Certificates are issued from CSRs only (:meth:`CaStore.issue`): the CA never sees a
security server's or a TSA's private key.  The only keys it makes are its own and its
responder's.  Serials are random 159-bit integers, stored as decimal text because
SQLite integers stop at 63 bits.

Revocation (:meth:`CaStore.revoke`) is a row update; :meth:`CaStore.status` reads the
row at every call, so an OCSP responder built on it answers ``revoked`` from the next
request on.  What a status means for a verifier is :mod:`trust.ocsp`'s business.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import require_utc
from core.identifiers import IdentifierError, MemberId, SecurityServerId
from trust._encoding import format_time, parse_time
from trust.ca import CertificateAuthority
from trust.errors import CaStoreError
from trust.keys import (
    generate_private_key,
    load_certificate,
    load_private_key,
    save_certificate,
    save_private_key,
)
from trust.ocsp import CertStatus
from trust.profiles import fingerprint

__all__ = [
    "Profile",
    "RecordedProfile",
    "IssuedCertificate",
    "CaStore",
    "read_passphrase",
    "MAX_PASSPHRASE_BYTES",
]

Profile = Literal["auth", "sign", "tsa"]
#: What the register records: the issuable profiles plus the CA's own OCSP responder.
RecordedProfile = Literal["auth", "sign", "tsa", "ocsp"]
_PROFILES: tuple[str, ...] = get_args(Profile)
_RECORDED: tuple[str, ...] = get_args(RecordedProfile)

#: Bound on a passphrase file; a passphrase is a line, not a document.
MAX_PASSPHRASE_BYTES = 4096
_DEFAULT_VALIDITY = timedelta(days=365)

_FILES = ("root.pem", "root.key", "issuing.pem", "issuing.key", "ocsp.pem", "ocsp.key", "ca.db")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial      TEXT PRIMARY KEY,
    profile     TEXT NOT NULL CHECK (profile IN ('auth', 'sign', 'tsa', 'ocsp')),
    identity    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    pem         TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'good' CHECK (status IN ('good', 'revoked')),
    revoked_at  TEXT,
    reason      TEXT
)
"""


@dataclass(frozen=True)
class IssuedCertificate:
    """One row of the register: a certificate this CA issued and its current status."""

    serial: int
    profile: RecordedProfile
    identity: str
    subject: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    pem: str
    status: Literal["good", "revoked"]
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        if isinstance(self.serial, bool) or not isinstance(self.serial, int) or self.serial <= 0:
            raise ValueError("serial must be a positive integer")
        if self.profile not in _RECORDED:
            raise ValueError(f"profile must be one of {', '.join(_RECORDED)}, not {self.profile!r}")
        for name in ("identity", "subject", "fingerprint", "pem"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string")
        require_utc(self.not_before, "not_before")
        require_utc(self.not_after, "not_after")
        if self.status == "revoked":
            if self.revoked_at is None:
                raise ValueError("a revoked certificate needs revoked_at")
            require_utc(self.revoked_at, "revoked_at")
        elif self.status == "good":
            if self.revoked_at is not None or self.reason is not None:
                raise ValueError("a good certificate has no revocation time or reason")
        else:
            raise ValueError(f"status must be good or revoked, not {self.status!r}")

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pem.encode("ascii"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (serial as decimal text: JSON numbers lose precision past 2**53)."""
        return {
            "serial": str(self.serial),
            "serial_hex": f"{self.serial:x}",
            "profile": self.profile,
            "identity": self.identity,
            "subject": self.subject,
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
            "fingerprint": self.fingerprint,
            "status": self.status,
            "revoked_at": format_time(self.revoked_at) if self.revoked_at else None,
            "reason": self.reason.value if self.reason else None,
        }


def read_passphrase(file: Path | None, env: str | None, environ: Mapping[str, str]) -> bytes:
    """The CA passphrase from a file (first line, trailing newline dropped) or an environment variable."""
    if (file is None) == (env is None):
        raise ValueError("give the passphrase as a file or as an environment variable (exactly one)")
    if file is not None:
        try:
            with open(file, "rb") as fh:
                data = fh.read(MAX_PASSPHRASE_BYTES + 1)
        except OSError as exc:
            raise ValueError(f"cannot read passphrase file {file}: {exc.strerror or exc}") from exc
        if len(data) > MAX_PASSPHRASE_BYTES:
            raise ValueError(f"passphrase file {file} is larger than {MAX_PASSPHRASE_BYTES} bytes")
        # A trailing newline is an editor's, not part of the passphrase.
        passphrase = data.rstrip(b"\r\n")
        source = f"passphrase file {file}"
    else:
        assert env is not None
        if env not in environ:
            raise ValueError(f"environment variable {env} (the passphrase) is not set")
        passphrase = environ[env].encode("utf-8")
        source = f"environment variable {env}"
    if not passphrase:
        raise ValueError(f"{source} holds an empty passphrase")
    return passphrase


def _reason_name(reason: x509.ReasonFlags | None) -> str:
    return reason.value if reason is not None else "unspecified"


def _identity(profile: str, identity: str) -> tuple[str, MemberId | SecurityServerId | str]:
    """Check ``identity`` for ``profile``; return its canonical text and parsed form."""
    if not isinstance(identity, str):
        raise TypeError("identity must be a string")
    try:
        if profile == "auth":
            server = SecurityServerId.parse_slash(identity)
            return server.slash(), server
        if profile == "sign":
            member = MemberId.parse_slash(identity)
            return member.slash(), member
    except IdentifierError as exc:
        kind = "security server (instance/class/member/server)" if profile == "auth" else "member"
        raise ValueError(f"{identity!r} is not a {kind} identifier: {exc}") from exc
    return identity, identity


class CaStore:
    """An open CA store; create one with :meth:`init` or :meth:`open`."""

    def __init__(
        self,
        path: Path,
        root: CertificateAuthority,
        issuing: CertificateAuthority,
        responder_certificate: x509.Certificate,
        responder_key: ec.EllipticCurvePrivateKey,
        db: sqlite3.Connection,
    ) -> None:
        self._path = path
        self._root = root
        self._issuing = issuing
        self._responder_certificate = responder_certificate
        self._responder_key = responder_key
        self._db = db
        self._lock = threading.Lock()

    # -- creation -----------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: Path,
        passphrase: bytes,
        *,
        now: datetime,
        instance_name: str = "NRW",
        root_validity: timedelta = timedelta(days=20 * 365),
        issuing_validity: timedelta = timedelta(days=10 * 365),
        responder_validity: timedelta = timedelta(days=2 * 365),
    ) -> CaStore:
        """Create a root CA, an issuing CA and its OCSP responder in ``path``; refuse an existing CA."""
        require_utc(now, "now")
        if not isinstance(passphrase, bytes) or not passphrase:
            raise ValueError("the CA keys need a non-empty passphrase")
        if not isinstance(instance_name, str) or not instance_name or len(instance_name) > 32:
            raise ValueError("instance_name must be a non-empty string of at most 32 characters")
        path = Path(path)
        existing = [name for name in _FILES if (path / name).exists()]
        if existing:
            raise CaStoreError(
                f"{path} already holds a CA ({', '.join(existing)} exist); refusing to overwrite it"
            )
        path.mkdir(mode=0o700, parents=True, exist_ok=True)

        root = CertificateAuthority.create_root(
            f"xweg {instance_name} Root CA", generate_private_key(), now=now, validity=root_validity
        )
        issuing = CertificateAuthority.create_intermediate(
            root,
            f"xweg {instance_name} Issuing CA",
            generate_private_key(),
            now=now,
            validity=issuing_validity,
        )
        responder_key = generate_private_key()
        responder = issuing.issue_ocsp_responder_certificate(
            responder_key.public_key(),
            f"xweg {instance_name} OCSP Responder",
            now=now,
            validity=responder_validity,
        )
        for stem, key, cert in (
            ("root", root.key, root.certificate),
            ("issuing", issuing.key, issuing.certificate),
            ("ocsp", responder_key, responder),
        ):
            save_private_key(key, path / f"{stem}.key", passphrase)
            save_certificate(cert, path / f"{stem}.pem")
        # The register comes last: a store without it was never finished, and open() says so.
        db = cls._connect(path / "ca.db", create=True)
        store = cls(path, root, issuing, responder, responder_key, db)
        store._record(responder, "ocsp", f"xweg {instance_name} OCSP Responder")
        return store

    @classmethod
    def open(cls, path: Path, passphrase: bytes) -> CaStore:
        """Open an existing store; a missing file or a wrong passphrase is a :class:`CaStoreError`."""
        path = Path(path)
        missing = [name for name in _FILES if not (path / name).is_file()]
        if missing:
            raise CaStoreError(
                f"{path} is not a CA store: {', '.join(missing)} missing (run 'ca init' first)"
            )
        try:
            root = CertificateAuthority(
                load_certificate(path / "root.pem"), load_private_key(path / "root.key", passphrase)
            )
            issuing = CertificateAuthority(
                load_certificate(path / "issuing.pem"), load_private_key(path / "issuing.key", passphrase)
            )
            responder = load_certificate(path / "ocsp.pem")
            responder_key = load_private_key(path / "ocsp.key", passphrase)
        except (OSError, ValueError) as exc:
            raise CaStoreError(f"cannot open the CA in {path}: {exc}") from exc
        if responder.public_key() != responder_key.public_key():
            raise CaStoreError(f"cannot open the CA in {path}: ocsp.key does not match ocsp.pem")
        try:
            issuing.certificate.verify_directly_issued_by(root.certificate)
            responder.verify_directly_issued_by(issuing.certificate)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CaStoreError(f"cannot open the CA in {path}: its certificates do not chain") from exc
        return cls(path, root, issuing, responder, responder_key, cls._connect(path / "ca.db", create=False))

    @staticmethod
    def _connect(db_path: Path, *, create: bool) -> sqlite3.Connection:
        if create:
            # Created 0600 before SQLite opens it: the register names every member.
            os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            # Autocommit: transactions are explicit (BEGIN IMMEDIATE), so a read never holds one open
            # and a responder in another process sees a revocation at its next read.
            db = sqlite3.connect(db_path, check_same_thread=False, timeout=10.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise CaStoreError(f"cannot open the certificate register {db_path}: {exc}") from exc
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CaStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what the store holds -----------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._root.certificate

    @property
    def issuing_certificate(self) -> x509.Certificate:
        return self._issuing.certificate

    @property
    def responder_certificate(self) -> x509.Certificate:
        return self._responder_certificate

    @property
    def responder_key(self) -> ec.EllipticCurvePrivateKey:
        """The OCSP responder's signing key (for :mod:`trust.service.ocsp_responder`)."""
        return self._responder_key

    def chain(self) -> tuple[x509.Certificate, x509.Certificate]:
        """(issuing CA, root): what a verifier needs above an end-entity certificate."""
        return self._issuing.certificate, self._root.certificate

    # -- issuing and revoking -----------------------------------------------------------

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        profile: Profile,
        identity: str,
        *,
        now: datetime,
        validity: timedelta = _DEFAULT_VALIDITY,
        dns_names: Iterable[str] = ("localhost",),
        ip_addresses: Iterable[str] = ("127.0.0.1",),
    ) -> x509.Certificate:
        """Issue a certificate of ``profile`` for ``identity`` from ``csr`` and record it.

        ``identity`` is the slash form of the security server (auth) or member (sign),
        or the TSA's name (tsa).  ``dns_names`` and ``ip_addresses`` go into auth
        certificates only.
        """
        require_utc(now, "now")
        if profile not in _PROFILES:
            raise ValueError(f"profile must be one of {', '.join(_PROFILES)}, not {profile!r}")
        text, parsed = _identity(profile, identity)
        if isinstance(parsed, SecurityServerId):
            cert = self._issuing.issue_auth_certificate(
                csr, parsed, now=now, validity=validity, dns_names=dns_names, ip_addresses=ip_addresses
            )
        elif isinstance(parsed, MemberId):
            cert = self._issuing.issue_sign_certificate(csr, parsed, now=now, validity=validity)
        else:
            cert = self._issuing.issue_tsa_certificate(csr, parsed, now=now, validity=validity)
        self._record(cert, profile, text)
        return cert

    def _record(self, cert: x509.Certificate, profile: RecordedProfile, identity: str) -> None:
        row = (
            str(cert.serial_number),
            profile,
            identity,
            cert.subject.rfc4514_string(),
            format_time(cert.not_valid_before_utc),
            format_time(cert.not_valid_after_utc),
            fingerprint(cert),
            cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        )
        with self._transaction() as db:
            db.execute(
                "INSERT INTO certificates (serial, profile, identity, subject, not_before, not_after,"
                " fingerprint, pem) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def revoke(self, serial: int, reason: x509.ReasonFlags, *, now: datetime) -> None:
        """Mark the certificate with ``serial`` revoked at ``now`` for ``reason``."""
        require_utc(now, "now")
        if isinstance(serial, bool) or not isinstance(serial, int):
            raise TypeError("serial must be an int")
        if not isinstance(reason, x509.ReasonFlags):
            raise TypeError("reason must be an x509.ReasonFlags")
        if reason == x509.ReasonFlags.remove_from_crl:
            raise ValueError("removeFromCRL is not a revocation reason (it only exists in delta CRLs)")
        # OCSP carries whole seconds; the register says the same as the responder.
        revoked_at = now.replace(microsecond=0)
        with self._transaction() as db:
            current = self._get(db, serial)
            if current is None:
                raise CaStoreError(f"no certificate with serial {serial} ({serial:#x}) was issued by this CA")
            if current.status == "revoked":
                assert current.revoked_at is not None
                raise CaStoreError(
                    f"certificate serial {serial} ({current.subject}) is already revoked since "
                    f"{format_time(current.revoked_at)} (reason {_reason_name(current.reason)})"
                )
            db.execute(
                "UPDATE certificates SET status = 'revoked', revoked_at = ?, reason = ? WHERE serial = ?",
                (format_time(revoked_at), reason.value, str(serial)),
            )

    # -- reading the register -----------------------------------------------------------

    def get(self, serial: int) -> IssuedCertificate | None:
        with self._lock:
            return self._get(self._db, serial)

    def status(self, serial: int) -> CertStatus:
        """The OCSP status of ``serial``: good, revoked (with time and reason), or unknown."""
        entry = self.get(serial)
        if entry is None:
            return CertStatus("unknown")
        if entry.status == "revoked":
            return CertStatus("revoked", revoked_at=entry.revoked_at, reason=entry.reason)
        return CertStatus("good")

    def list(self) -> builtins.list[IssuedCertificate]:
        """Every certificate issued, oldest first."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT * FROM certificates ORDER BY not_before, serial").fetchall()
            except sqlite3.Error as exc:
                raise CaStoreError(f"cannot read the certificate register: {exc}") from exc
        return [self._entry(row) for row in rows]

    @staticmethod
    def read_register(path: Path) -> builtins.list[IssuedCertificate]:
        """The register of the store in ``path``, read-only and without the passphrase (for listing)."""
        db_path = Path(path) / "ca.db"
        if not db_path.is_file():
            raise CaStoreError(f"{path} is not a CA store: ca.db missing (run 'ca init' first)")
        try:
            db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
            try:
                rows = db.execute("SELECT * FROM certificates ORDER BY not_before, serial").fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise CaStoreError(f"cannot read the certificate register {db_path}: {exc}") from exc
        return [CaStore._entry(row) for row in rows]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise CaStoreError(f"the certificate register refused a change: {exc}") from exc

    def _get(self, db: sqlite3.Connection, serial: int) -> IssuedCertificate | None:
        if isinstance(serial, bool) or not isinstance(serial, int):
            raise TypeError("serial must be an int")
        try:
            row = db.execute("SELECT * FROM certificates WHERE serial = ?", (str(serial),)).fetchone()
        except sqlite3.Error as exc:
            raise CaStoreError(f"cannot read the certificate register: {exc}") from exc
        return None if row is None else self._entry(row)

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> IssuedCertificate:
        serial, profile, identity, subject, not_before, not_after, fp, pem, status, revoked_at, reason = row
        return IssuedCertificate(
            serial=int(serial),
            profile=profile,
            identity=identity,
            subject=subject,
            not_before=parse_time(not_before, "not_before"),
            not_after=parse_time(not_after, "not_after"),
            fingerprint=fp,
            pem=pem,
            status=status,
            revoked_at=parse_time(revoked_at, "revoked_at") if revoked_at is not None else None,
            reason=x509.ReasonFlags(reason) if reason is not None else None,
        )
