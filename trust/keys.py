"""Key and certificate files: generate P-256 keys, read and write PEM, make CSRs.

This is the file-system seam of :mod:`trust`.  Private keys are written atomically
(temporary file, fsync, rename) and are never readable by others, not even for the
moment between creation and ``chmod``.  Everything else in :mod:`trust` works on
objects, not paths.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "generate_private_key",
    "save_private_key",
    "load_private_key",
    "private_key_from_pem",
    "save_certificate",
    "load_certificate",
    "load_certificates",
    "make_csr",
    "public_key_pem",
    "write_atomic",
]

#: Bound on a key or certificate file we read; real ones are a few KiB.
MAX_PEM_FILE_BYTES = 1024 * 1024


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key: what ES256 signatures and the federation's certificates use."""
    return ec.generate_private_key(ec.SECP256R1())


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half of one.

    The temporary file is created with ``mode`` from the start, fsynced, renamed over
    the target, and the directory is fsynced so the rename survives a crash.
    """
    path = Path(path)
    # A random name: a temporary file left by a crashed writer never blocks the next one.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Not every platform lets a directory be opened for fsync; the rename is still atomic there.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _read_bounded(path: Path) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(MAX_PEM_FILE_BYTES + 1)
    if len(data) > MAX_PEM_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_PEM_FILE_BYTES} bytes")
    return data


def save_private_key(key: ec.EllipticCurvePrivateKey, path: Path, passphrase: bytes | None) -> None:
    """Write ``key`` as PKCS#8 PEM, encrypted when a passphrase is given, mode 0600."""
    encryption: serialization.KeySerializationEncryption
    if passphrase:
        encryption = serialization.BestAvailableEncryption(passphrase)
    else:
        encryption = serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_atomic(Path(path), pem, mode=0o600)


def load_private_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    """Read a PEM private key; it must be an EC P-256 key."""
    return private_key_from_pem(_read_bounded(Path(path)), passphrase, source=str(path))


def private_key_from_pem(data: bytes, passphrase: bytes | None, *, source: str) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 key in PEM ``data``; ``source`` says where it came from in errors."""
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except (TypeError, ValueError) as exc:
        # cryptography says TypeError for a missing or superfluous passphrase: one error for callers.
        raise ValueError(f"cannot load private key {source}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{source} does not hold an EC P-256 private key")
    return key


def save_certificate(cert: x509.Certificate, path: Path) -> None:
    write_atomic(Path(path), cert.public_bytes(serialization.Encoding.PEM))


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (a bundle may hold several)."""
    return x509.load_pem_x509_certificates(_read_bounded(Path(path)))


def load_certificate(path: Path) -> x509.Certificate:
    """The one certificate in a PEM file; a file with more than one is refused."""
    certs = load_certificates(path)
    if len(certs) != 1:
        raise ValueError(f"{path} holds {len(certs)} certificates, expected exactly one")
    return certs[0]


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.CertificateSigningRequest:
    """A CSR carrying only the common name; the CA decides every extension itself."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def public_key_pem(key_or_public_key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """SubjectPublicKeyInfo PEM of a key (given the private or the public half)."""
    public = (
        key_or_public_key.public_key()
        if isinstance(key_or_public_key, ec.EllipticCurvePrivateKey)
        else key_or_public_key
    )
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
