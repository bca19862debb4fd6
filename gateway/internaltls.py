"""The security server's internal TLS certificate, and the client listener's TLS.

The internal TLS certificate is what information systems and administrators see when
they connect to this server over HTTPS (X-Road's name for it; it is not the auth
certificate, which only other security servers see).  It is self-signed (EC P-256),
names ``localhost``, ``127.0.0.1``, ``::1`` and this machine's host name, and is made on
first use in the data folder: ``internal-tls.key`` (PKCS#8, encrypted with the server's
key passphrase, mode 0600) and ``internal-tls.pem``.  Both are created if absent
(:mod:`trust.keyfiles`): the key first, then a certificate for whichever key won, so
two processes starting at once agree on both.  Information systems pin it by its
fingerprint (:func:`internal_tls_fingerprint`) or trust the PEM file directly.

:class:`ClientListenerTls` is the HTTPS client listener's server side: TLS 1.2 or later,
the internal certificate, a client certificate asked for but optional, and trusted
exactly the information-system certificates registered for clients in the server
configuration (a self-signed one registered directly is its own trust anchor).  Which
client a certificate may act for is :func:`gateway.clientauth.authenticate_client`'s
decision, per request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.clock import require_utc
from gateway.serverconf.model import ServerConfSnapshot
from trust.keyfiles import create_if_absent, load_or_create_private_key
from trust.keys import load_certificate

__all__ = [
    "INTERNAL_TLS_CERTIFICATE_FILE",
    "INTERNAL_TLS_KEY_FILE",
    "InternalTlsError",
    "ClientListenerTls",
    "internal_tls_certificate",
    "internal_tls_fingerprint",
    "load_or_create_internal_tls",
    "registered_certificates_pem",
]

INTERNAL_TLS_CERTIFICATE_FILE = "internal-tls.pem"
INTERNAL_TLS_KEY_FILE = "internal-tls.key"
#: X-Road's internal TLS certificate is valid for 20 years too; it is replaced by hand.
VALIDITY = dt.timedelta(days=7300)
# Tolerates a client clock somewhat behind the server's on a certificate made just now.
_BACKDATE = dt.timedelta(hours=1)
_MIN_TLS = ssl.TLSVersion.TLSv1_2
log = structlog.get_logger("xweg.gateway")


class InternalTlsError(Exception):
    """The internal TLS certificate or key cannot be created or read, or they do not match."""


def internal_tls_certificate(
    key: ec.EllipticCurvePrivateKey, *, host_name: str, now: dt.datetime
) -> x509.Certificate:
    """A self-signed server certificate for ``key``, naming the loopback addresses and ``host_name``.

    A ``host_name`` that cannot be a DNS name (not ASCII, or empty) is left out.
    """
    require_utc(now, "now")
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    if host_name and host_name.isascii() and host_name.lower() != "localhost":
        names.append(x509.DNSName(host_name))
    names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    common_name = host_name if host_name and host_name.isascii() and len(host_name) <= 64 else "localhost"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "xweg security server internal TLS"),
        ]
    )
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def load_or_create_internal_tls(data_dir: Path, passphrase: bytes | None) -> tuple[Path, Path]:
    """The internal TLS certificate and key files in ``data_dir``, created on first use.

    Returns ``(certificate_path, key_path)``, ready for ``SSLContext.load_cert_chain``
    with ``passphrase``.  Raises :class:`InternalTlsError` if a file cannot be written or
    read, the key cannot be decrypted with ``passphrase`` or is readable by others, or
    the certificate is not the key's.
    """
    data_dir = Path(data_dir)
    certificate_path = data_dir / INTERNAL_TLS_CERTIFICATE_FILE
    key_path = data_dir / INTERNAL_TLS_KEY_FILE
    key = load_or_create_private_key(key_path, passphrase, what="internal TLS key", error=InternalTlsError)
    try:
        if not certificate_path.exists():
            certificate = internal_tls_certificate(
                key, host_name=socket.gethostname(), now=dt.datetime.now(dt.UTC)
            )
            create_if_absent(certificate_path, certificate.public_bytes(Encoding.PEM), mode=0o644)
        stored = load_certificate(certificate_path)
    except (OSError, ValueError) as exc:
        raise InternalTlsError(
            f"cannot create or read the internal TLS certificate {certificate_path}: {exc}"
        ) from exc
    if stored.public_key() != key.public_key():
        raise InternalTlsError(
            f"the internal TLS certificate {certificate_path} is not for the key {key_path}; "
            "remove both to make a new pair"
        )
    return certificate_path, key_path


def internal_tls_fingerprint(certificate_path: Path) -> str:
    """SHA-256 of the internal TLS certificate's DER, lower-case hex: what clients pin."""
    try:
        certificate = load_certificate(Path(certificate_path))
    except (OSError, ValueError) as exc:
        raise InternalTlsError(f"cannot read the internal TLS certificate {certificate_path}: {exc}") from exc
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def registered_certificates_pem(snapshot: ServerConfSnapshot) -> dict[str, str]:
    """The information-system certificates registered for clients, by SHA-256 fingerprint.

    Only a PEM whose fingerprint is also among its client's ``certificate_fingerprints``
    counts, so the handshake trusts nothing that :func:`authenticate_client` would not.
    A PEM that is not one certificate is skipped.
    """
    found: dict[str, str] = {}
    for client in snapshot.clients.values():
        for pem in client.certificates_pem:
            try:
                certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
            except (UnicodeEncodeError, ValueError):
                continue
            fingerprint = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()
            if fingerprint in client.certificate_fingerprints:
                found[fingerprint] = certificate.public_bytes(Encoding.PEM).decode("ascii")
    return found


class ClientListenerTls:
    """The HTTPS client listener's TLS context, and the certificates it has been told to trust.

    :meth:`admit` loads the certificates registered in a snapshot that are not loaded
    yet; call it with every new snapshot.  An ``SSLContext`` cannot forget a certificate:
    one no longer registered still completes the handshake, and the request is refused
    by :func:`gateway.clientauth.authenticate_client`, which compares fingerprints with
    the snapshot the request acts on.
    """

    def __init__(self, certificate: Path, key: Path, passphrase: bytes | None) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _MIN_TLS
        ctx.load_cert_chain(str(certificate), str(key), password=passphrase)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        # A certificate registered for a client is itself the trust anchor, self-signed or not.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        self.context = ctx
        self.certificate_path = Path(certificate)
        self._admitted: set[str] = set()

    @property
    def admitted(self) -> frozenset[str]:
        """Fingerprints of the certificates the handshake accepts."""
        return frozenset(self._admitted)

    def admit(self, snapshot: ServerConfSnapshot) -> None:
        for fingerprint, pem in registered_certificates_pem(snapshot).items():
            if fingerprint in self._admitted:
                continue
            try:
                self.context.load_verify_locations(cadata=pem)
            except ssl.SSLError as exc:
                # One certificate OpenSSL will not take must not keep the others out.
                log.warning("client_tls.certificate_refused", fingerprint=fingerprint, error=str(exc))
                continue
            self._admitted.add(fingerprint)
