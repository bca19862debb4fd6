"""Information systems for the client-authentication tests: their certificates, clients and tokens.

Certificates are valid around the real time (OpenSSL checks them against the system
clock during the handshake); tokens are issued and checked at :data:`NOW`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.clock import utc
from core.identifiers import MemberId, SecurityServerId, SubsystemId
from gateway.serverconf.model import ClientEntry, ConnectionType

__all__ = [
    "NOW",
    "MEMBER",
    "SERVER",
    "GEWERBEAMT",
    "MELDEWESEN",
    "InformationSystem",
    "make_information_system",
    "client_entry",
]

NOW = utc(2025, 3, 4, 10)
MEMBER = MemberId("NRW", "MUN", "05774032")
SERVER = SecurityServerId(MEMBER, "ss1")
GEWERBEAMT = SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")
MELDEWESEN = SubsystemId("NRW", "MUN", "05774032", "meldewesen")


@dataclass(frozen=True)
class InformationSystem:
    """An information system's TLS client key and certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        """Write certificate and (unencrypted) key files; return ``(certificate, key)``."""
        folder.mkdir(parents=True, exist_ok=True)
        certificate = folder / f"{name}.pem"
        key = folder / f"{name}.key"
        certificate.write_text(self.pem)
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return certificate, key


def make_information_system(
    name: str, *, issuer: InformationSystem | None = None, ca: bool = False
) -> InformationSystem:
    """A self-signed certificate for ``name``, or one issued by ``issuer`` (``ca``: may issue)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return InformationSystem(key, certificate)


def client_entry(
    client: SubsystemId,
    *systems: InformationSystem,
    connection: ConnectionType = ConnectionType.HTTPS_MTLS,
    token_required: bool = False,
) -> ClientEntry:
    """A client with ``systems``' certificates registered for it (fingerprints and PEMs)."""
    return ClientEntry(
        client,
        connection,
        frozenset(s.fingerprint for s in systems),
        token_required,
        tuple(s.pem for s in systems),
    )
