"""A federation on disk: CA, auth certificates, the definition TOML, the registry key and settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from core.identifiers import SecurityServerId
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, SERVER, Pki
from trust.keys import generate_private_key, make_csr, save_certificate, save_private_key

OTHER_SERVER = SecurityServerId(OTHER_MEMBER, "ss1")

FEDERATION_TOML = """\
instance = "NRW"
approved_cas = ["trust/ca.pem"]

[[members]]
class = "MUN"
code = "05774032"
name = "Stadt Paderborn"
subsystems = ["gewerbeamt"]

[[members]]
class = "MUN"
code = "05711000"
name = "Stadt Bielefeld"
subsystems = ["meldewesen"]

[[security_servers]]
owner = "NRW/MUN/05774032"
code = "ss1"
address = "127.0.0.1:5511"
auth_certificate = "servers/paderborn/auth.pem"
clients = ["NRW/MUN/05774032/gewerbeamt", "NRW/MUN/05774032"]

[[security_servers]]
owner = "NRW/MUN/05711000"
code = "ss1"
address = "127.0.0.1:5521"
auth_certificate = "servers/bielefeld/auth.pem"
clients = ["NRW/MUN/05711000/meldewesen"]

[[global_groups]]
code = "owl-kommunen"
members = ["NRW/MUN/05774032/gewerbeamt", "NRW/MUN/05711000/meldewesen"]
"""

#: A service catalogue to append to FEDERATION_TOML.
SERVICES_TOML = """
[[services]]
provider = "NRW/MUN/05774032/gewerbeamt"
code = "gewerbeanzeige"
version = "v1"
protocol = "rest"
description = "Gewerbeanzeige nach § 14 GewO"
standard = "XGewerbeanzeige 2.2"
authorities = ["MELDID:05774032"]
area = "05774"

[[services]]
provider = "NRW/MUN/05711000/meldewesen"
code = "gewerbeanzeige"
version = "v1"
protocol = "REST"
standard = "XGewerbeanzeige 2.2"
area = "05711000"

[[services]]
provider = "NRW/MUN/05711000/meldewesen"
code = "meldeauskunft"
protocol = "SOAP"
standard = "XMeld 3.1"
authorities = ["MELDID:05711000", "MELDID:05774032"]
"""

REGISTRY_TOML = """\
federation = "federation.toml"
state_dir = "state"
host = "127.0.0.1"
port = 0
interval_s = {interval_s}
validity_s = 600

[signing]
key = "keys/globalconf.key"
key_id = "k1"
passphrase_file = "keys/passphrase"
"""


@dataclass(frozen=True)
class FederationFiles:
    root: Path
    federation: Path
    registry_config: Path
    signing_key: ec.EllipticCurvePrivateKey

    def write_federation(self, text: str) -> None:
        self.federation.write_text(text)


def write_federation(root: Path, pki: Pki, *, interval_s: float = 60.0) -> FederationFiles:
    (root / "trust").mkdir()
    save_certificate(pki.ca.certificate, root / "trust" / "ca.pem")
    for name, cert in (
        ("paderborn", pki.auth_cert),
        (
            "bielefeld",
            pki.ca.issue_auth_certificate(
                make_csr(generate_private_key(), "x"), OTHER_SERVER, now=NOW - dt.timedelta(days=1)
            ),
        ),
    ):
        (root / "servers" / name).mkdir(parents=True)
        save_certificate(cert, root / "servers" / name / "auth.pem")
    federation = root / "federation.toml"
    federation.write_text(FEDERATION_TOML)
    (root / "keys").mkdir()
    key = generate_private_key()
    (root / "keys" / "passphrase").write_bytes(b"registry-secret\n")
    save_private_key(key, root / "keys" / "globalconf.key", b"registry-secret")
    config = root / "registry.toml"
    config.write_text(REGISTRY_TOML.format(interval_s=interval_s))
    return FederationFiles(root, federation, config, key)


__all__ = [
    "FEDERATION_TOML",
    "FederationFiles",
    "MEMBER",
    "NOW",
    "OTHER_SERVER",
    "SERVER",
    "SERVICES_TOML",
    "write_federation",
]
