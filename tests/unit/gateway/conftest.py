"""Shared fixtures for the gateway tests: one real federation PKI and signed global configurations.

Key generation is the slow part, so the keys, the CA and the certificates are made once
per session; documents are signed per test from :class:`Federation`'s helpers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from core.clock import utc
from core.identifiers import GlobalGroupId, MemberId, SecurityServerId
from trust.anchor import Anchor, AnchorKey
from trust.ca import CertificateAuthority
from trust.globalconf import GlobalConf, GlobalGroupInfo, MemberInfo, SecurityServerInfo, sign_global_conf
from trust.keys import generate_private_key, make_csr, public_key_pem, save_certificate, save_private_key

NOW = utc(2025, 3, 1, 12)
INSTANCE = "NRW"
KEY_ID = "2025-1"
MEMBER = MemberId(INSTANCE, "MUN", "05774032")
OTHER_MEMBER = MemberId(INSTANCE, "GOV", "057")
SERVER = SecurityServerId(MEMBER, "ss1")
OTHER_SERVER = SecurityServerId(OTHER_MEMBER, "ss1")
GROUP = GlobalGroupId(INSTANCE, "owl-kommunen")
#: Passphrase of every private key file written by :meth:`Federation.write_tls_files`.
PASSPHRASE = b"correct horse battery staple"


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class TlsFiles:
    certificate: Path
    key: Path
    cert: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


@dataclass(frozen=True)
class Federation:
    ca: CertificateAuthority
    foreign_ca: CertificateAuthority  # a CA that global configuration does not approve
    registry_key: ec.EllipticCurvePrivateKey  # named by the anchor as KEY_ID
    rogue_key: ec.EllipticCurvePrivateKey  # not named by the anchor
    server_key: ec.EllipticCurvePrivateKey
    server_cert: x509.Certificate  # auth certificate of SERVER, issued by ``ca``
    other_server_key: ec.EllipticCurvePrivateKey
    other_server_cert: x509.Certificate  # auth certificate of OTHER_SERVER, issued by ``ca``
    foreign_key: ec.EllipticCurvePrivateKey
    foreign_cert: x509.Certificate  # auth certificate for SERVER, issued by ``foreign_ca``

    def anchor(self, registry_urls: tuple[str, ...] = ("http://127.0.0.1:9/",)) -> Anchor:
        return Anchor(
            instance=INSTANCE,
            registry_urls=registry_urls,
            signing_keys=(AnchorKey(KEY_ID, public_key_pem(self.registry_key)),),
            generated_at=NOW - dt.timedelta(days=30),
        )

    def conf(
        self,
        serial: int,
        *,
        generated_at: dt.datetime = NOW - dt.timedelta(minutes=10),
        expires_at: dt.datetime = NOW + dt.timedelta(hours=1),
        instance: str = INSTANCE,
    ) -> GlobalConf:
        member = MemberId(instance, MEMBER.member_class, MEMBER.member_code)
        other = MemberId(instance, OTHER_MEMBER.member_class, OTHER_MEMBER.member_code)
        return GlobalConf(
            instance=instance,
            serial=serial,
            generated_at=generated_at,
            expires_at=expires_at,
            members=(
                MemberInfo(member, "Stadt Paderborn", ("gewerbeamt",)),
                MemberInfo(other, "Bezirksregierung Detmold", ("arbeitsschutz",)),
            ),
            security_servers=(
                SecurityServerInfo(
                    SecurityServerId(member, "ss1"),
                    "127.0.0.1:5511",
                    (fingerprint(self.server_cert),),
                    (member.subsystem("gewerbeamt"),),
                ),
            ),
            global_groups=(
                GlobalGroupInfo(
                    GlobalGroupId(instance, GROUP.group_code), (other.subsystem("arbeitsschutz"),)
                ),
            ),
            approved_cas=(self.ca.certificate,),
        )

    def signed(
        self,
        serial: int,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        key_id: str = KEY_ID,
        generated_at: dt.datetime = NOW - dt.timedelta(minutes=10),
        expires_at: dt.datetime = NOW + dt.timedelta(hours=1),
        instance: str = INSTANCE,
    ) -> bytes:
        """A signed document, by the anchor's key unless ``key`` says otherwise."""
        conf = self.conf(serial, generated_at=generated_at, expires_at=expires_at, instance=instance)
        return sign_global_conf(conf, key or self.registry_key, key_id)

    def write_tls_files(
        self, folder: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
    ) -> TlsFiles:
        folder.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = folder / f"{name}.key", folder / f"{name}.pem"
        save_private_key(key, key_path, PASSPHRASE)
        save_certificate(cert, cert_path)
        return TlsFiles(cert_path, key_path, cert)


@pytest.fixture(scope="session")
def federation() -> Federation:
    start = NOW - dt.timedelta(days=30)
    # The auth certificates are used in real TLS handshakes, which check validity against
    # the operating system's clock, not a test clock.
    issued = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.create_root("xweg NRW Root CA", generate_private_key(), now=start)
    foreign_ca = CertificateAuthority.create_root("Elsewhere Root CA", generate_private_key(), now=start)
    server_key, other_key, foreign_key = (generate_private_key() for _ in range(3))
    return Federation(
        ca=ca,
        foreign_ca=foreign_ca,
        registry_key=generate_private_key(),
        rogue_key=generate_private_key(),
        server_key=server_key,
        server_cert=ca.issue_auth_certificate(make_csr(server_key, "ss1"), SERVER, now=issued),
        other_server_key=other_key,
        other_server_cert=ca.issue_auth_certificate(make_csr(other_key, "ss1"), OTHER_SERVER, now=issued),
        foreign_key=foreign_key,
        foreign_cert=foreign_ca.issue_auth_certificate(make_csr(foreign_key, "ss1"), SERVER, now=issued),
    )
