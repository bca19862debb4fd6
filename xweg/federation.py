"""The local federation runner: keys, registry, security servers and backends on loopback.

``FederationPlan`` says who takes part; :func:`prepare` makes (or reuses) every key,
certificate and configuration file under a data folder; :class:`RunningFederation`
starts each component as its own OS process and waits until every security server
holds current global configuration.  ``xweg demo`` and the integration tests use it.
With ``network=Network.COMPOSE``, :func:`prepare` lays the same files out for
``deploy/compose`` instead, whose containers run :func:`component_commands`
(``xweg federation prepare|enrol`` take the steps one at a time).

Key handling mirrors production: each security server generates its own keys and
certificate signing requests; the CA only ever sees the CSRs.  All demo keys share
one random passphrase in ``DATA/passphrase`` (mode 0600) -- a demo convenience.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from core.identifiers import ClientId, MemberId, SecurityServerId, ServiceId, SubsystemId
from gateway.database import is_postgres_url, redact_url
from gateway.internaltls import INTERNAL_TLS_CERTIFICATE_FILE
from gateway.messagelog.store import LogLocation, PostgresLogShard
from trust.anchor import Anchor, AnchorKey, save_anchor
from trust.castore import CaStore
from trust.keys import (
    generate_private_key,
    load_certificate,
    load_certificates,
    load_private_key,
    make_csr,
    public_key_pem,
    save_certificate,
    save_private_key,
    write_atomic,
)

__all__ = [
    "MemberPlan",
    "ServicePlan",
    "ServerPlan",
    "FederationPlan",
    "Layout",
    "Network",
    "COMPOSE_PORTS",
    "compose_service",
    "component_commands",
    "open_layout",
    "prepare",
    "RunningFederation",
    "OWL",
]

INSTANCE = "NRW"
REGISTRY_KEY_ID = "registry-1"
TSA_NAME = "IT.NRW Zeitstempeldienst"


@dataclass(frozen=True)
class MemberPlan:
    id: MemberId
    name: str
    subsystems: tuple[str, ...]


@dataclass(frozen=True)
class ServicePlan:
    id: ServiceId
    backend: str  # a kind from xweg.backends.BACKENDS; not started when base_url is given
    description: str
    access: tuple[str, ...]  # client ids (slash form) or GLOBALGROUP:... allowed to call it
    base_url: str | None = None  # default: the demo backend of that kind, plus backend_path
    timeout_s: float = 30.0
    protocol: str = "rest"  # "rest" or "soap"; for SOAP the base URL is the endpoint URL
    backend_path: str = ""  # appended to the demo backend's URL, e.g. "/fault" for soap-echo
    # What the registry's service catalogue says about it (the directory look-up).
    standard: str = ""
    authorities: tuple[str, ...] = ()
    area: str | None = None


@dataclass(frozen=True)
class ServerPlan:
    slug: str
    name: str
    id: SecurityServerId
    clients: tuple[ClientId, ...]
    services: tuple[ServicePlan, ...] = ()
    # Client subsystems (slash form) whose bodies this server's message log does not keep:
    # ``[messagelog] omit_bodies_for`` (data minimisation; digests are still logged).
    omit_bodies_for: tuple[str, ...] = ()

    @property
    def members(self) -> tuple[MemberId, ...]:
        seen: dict[MemberId, None] = {self.id.owner: None}
        for client in self.clients:
            seen[client.member] = None
        return tuple(seen)


@dataclass(frozen=True)
class FederationPlan:
    members: tuple[MemberPlan, ...]
    servers: tuple[ServerPlan, ...]
    global_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    registry_interval_s: float = 60.0
    registry_validity_s: float = 600.0
    globalconf_poll_s: float = 60.0
    ocsp_freshness_s: int = 3600
    ocsp_refresh_s: float = 1200.0
    timestamp_interval_s: float = 60.0
    timestamp_acceptable_s: float = 4 * 3600.0

    def member(self, member: MemberId) -> MemberPlan:
        return next(m for m in self.members if m.id == member)

    def server(self, slug: str) -> ServerPlan:
        return next(s for s in self.servers if s.slug == slug)


def _m(cls: str, code: str) -> MemberId:
    return MemberId(INSTANCE, cls, code)


NRW = _m("GOV", "05")
DETMOLD = _m("GOV", "057")
KREIS_PB = _m("MUN", "05774")
PADERBORN = _m("MUN", "05774032")
DELBRUECK = _m("MUN", "05774020")
BIELEFELD = _m("MUN", "05711000")

GEWERBEANZEIGE = DETMOLD.subsystem("arbeitsschutz").service("gewerbeanzeige", "v1")
STATISTIK = NRW.subsystem("statistik").service("gewerbestatistik", "v1")
MELDEAUSKUNFT = BIELEFELD.subsystem("meldewesen").service("meldeauskunft", "v1")
RUECKMELDUNG = BIELEFELD.subsystem("meldewesen").service("rueckmeldung", "v1")

OWL = FederationPlan(
    members=(
        MemberPlan(NRW, "Land Nordrhein-Westfalen (IT.NRW)", ("statistik",)),
        MemberPlan(DETMOLD, "Bezirksregierung Detmold", ("arbeitsschutz",)),
        MemberPlan(KREIS_PB, "Kreis Paderborn", ("kreisverwaltung",)),
        MemberPlan(PADERBORN, "Stadt Paderborn", ("gewerbeamt",)),
        MemberPlan(DELBRUECK, "Stadt Delbrück", ("gewerbeamt", "meldewesen")),
        MemberPlan(BIELEFELD, "Stadt Bielefeld", ("gewerbeamt", "meldewesen")),
    ),
    servers=(
        ServerPlan(
            "nrw",
            "IT.NRW",
            SecurityServerId(NRW, "ss1"),
            (NRW.subsystem("statistik"),),
            (
                ServicePlan(
                    STATISTIK,
                    "gewerbestatistik",
                    "Gewerbestatistik: reduced view of every Gewerbeanzeige",
                    ("GLOBALGROUP:NRW/owl-gewerbeaemter",),
                    standard="XGewerbeanzeige 2.2 (statistics view)",
                    authorities=("DESTATIS:05",),
                    area="05",
                ),
            ),
        ),
        ServerPlan(
            "detmold",
            "Bezirksregierung Detmold",
            SecurityServerId(DETMOLD, "ss1"),
            (DETMOLD.subsystem("arbeitsschutz"),),
            (
                ServicePlan(
                    GEWERBEANZEIGE,
                    "gewerbeanzeige",
                    "Gewerbeanzeige for occupational safety (after XGewerbeanzeige)",
                    ("GLOBALGROUP:NRW/owl-gewerbeaemter",),
                    standard="XGewerbeanzeige 2.2",
                    authorities=("MELDID:057",),
                    area="057",
                ),
            ),
        ),
        ServerPlan(
            "paderborn",
            "Stadt Paderborn",
            SecurityServerId(PADERBORN, "ss1"),
            (PADERBORN.subsystem("gewerbeamt"), KREIS_PB.subsystem("kreisverwaltung")),
        ),
        ServerPlan(
            "delbrueck",
            "Stadt Delbrück",
            SecurityServerId(DELBRUECK, "ss1"),
            (DELBRUECK.subsystem("gewerbeamt"), DELBRUECK.subsystem("meldewesen")),
        ),
        ServerPlan(
            "bielefeld",
            "Stadt Bielefeld",
            SecurityServerId(BIELEFELD, "ss1"),
            (BIELEFELD.subsystem("gewerbeamt"), BIELEFELD.subsystem("meldewesen")),
            tuple(
                ServicePlan(
                    service,
                    "meldewesen",
                    description,
                    ("NRW/MUN/05774020/meldewesen",),
                    protocol="soap",
                    standard="XMeld 3.1",
                    authorities=("MELDID:05711000",),
                    area="05711000",
                )
                for service, description in (
                    (MELDEAUSKUNFT, "Meldeauskunft: a resident's registration data (after XMeld)"),
                    (RUECKMELDUNG, "Rückmeldung: XMeld 0201, acknowledged 0203-style"),
                )
            ),
        ),
    ),
    # Timestamp batches every 5 s rather than X-Road's 60 s, so the demo shows them at once.
    timestamp_interval_s=5.0,
    global_groups={
        "owl-gewerbeaemter": (
            "NRW/MUN/05774032/gewerbeamt",
            "NRW/MUN/05774020/gewerbeamt",
            "NRW/MUN/05711000/gewerbeamt",
        ),
    },
)


# ---------------------------------------------------------------- preparing the folder

#: deploy/compose: the port each listener has in its own container (the components' defaults).
COMPOSE_PORTS = {
    "registry": 8080,
    "ocsp": 8090,
    "tsa": 3180,
    "client": 5510,
    "peer": 5511,
    "management": 5588,
    "backend": 8000,
}
_INFRASTRUCTURE = ("registry", "ocsp", "tsa")


def compose_service(name: str) -> str:
    """The deploy/compose service that runs a component or listener.

    ``name`` is a component (``registry``, ``ocsp``, ``tsa``, ``backend.<kind>``, a server's
    slug) or a listener, as :attr:`Layout.ports` names them (``<slug>.client``, ...).  The
    services are ``registry``, ``ocsp``, ``tsa``, ``backend-<kind>`` and ``ss-<slug>``.
    """
    if name.startswith("backend."):
        return "backend-" + name.removeprefix("backend.")
    if name in _INFRASTRUCTURE:
        return name
    return "ss-" + name.partition(".")[0]


class Network(enum.Enum):
    """Where the components of a prepared federation listen, and how they reach each other.

    ``loopback`` (``xweg demo``, the tests): every listener on 127.0.0.1, at a free port
    recorded in ``ports.json``.  ``compose`` (``deploy/compose``): each component in a
    container of its own, listening on every address at a fixed port (:data:`COMPOSE_PORTS`)
    and reached by the name of its compose service (:func:`compose_service`).
    """

    LOOPBACK = "loopback"
    COMPOSE = "compose"

    @property
    def bind(self) -> str:
        """The address every listener binds."""
        return "127.0.0.1" if self is Network.LOOPBACK else "0.0.0.0"  # noqa: S104 -- a container's own

    def host(self, listener: str) -> str:
        """The host name other components reach ``listener`` (a key of :attr:`Layout.ports`) by."""
        return "127.0.0.1" if self is Network.LOOPBACK else compose_service(listener)

    def fixed_ports(self, plan: FederationPlan) -> dict[str, int]:
        """Every listener's port where the network fixes them (compose); loopback has none."""
        if self is Network.LOOPBACK:
            return {}
        ports = {}
        for name in _listener_names(plan):
            head, _, tail = name.partition(".")
            ports[name] = COMPOSE_PORTS["backend" if head == "backend" else tail or head]
        return ports


@dataclass(frozen=True)
class Layout:
    """Where everything of one prepared federation is, and on which ports it listens."""

    root: Path
    plan: FederationPlan
    ports: dict[str, int]
    network: Network = Network.LOOPBACK
    # The registry's store; None: the SQLite file registry/registry.db.
    registry_database: str | None = None
    # PostgreSQL beside which each security server has a database of its own
    # (server_database_url); None: every server keeps SQLite files in its data folder.
    database_url: str | None = None

    def server_database_url(self, slug: str) -> str | None:
        """The PostgreSQL database of server ``slug``: ``<database>_<slug>`` beside
        :attr:`database_url`, where its replicas would share their message-log shards,
        operational monitoring and configuration store.  None without a database_url."""
        if self.database_url is None:
            return None
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        named = url.set(database=f"{url.database}_{slug.replace('-', '_')}")
        return named.render_as_string(hide_password=False)

    @property
    def passphrase_file(self) -> Path:
        return self.root / "passphrase"

    @property
    def ca_dir(self) -> Path:
        return self.root / "trust" / "ca"

    @property
    def ca_certificate(self) -> Path:
        """The federation's root CA certificate: the trust anchor an auditor needs."""
        return self.ca_dir / "root.pem"

    @property
    def tsa_dir(self) -> Path:
        return self.root / "trust" / "tsa"

    def address(self, listener: str) -> str:
        """``host:port`` at which other components reach ``listener`` (a key of :attr:`ports`)."""
        return f"{self.network.host(listener)}:{self.ports[listener]}"

    @property
    def ocsp_url(self) -> str:
        return f"http://{self.address('ocsp')}/"

    @property
    def tsa_url(self) -> str:
        return f"http://{self.address('tsa')}/"

    @property
    def anchor(self) -> Path:
        return self.root / "anchor.json"

    @property
    def registry_config(self) -> Path:
        return self.root / "registry" / "registry.toml"

    @property
    def registry_database_url(self) -> str:
        """The registry's store: members, servers, requests; it persists across runs."""
        return self.registry_database or f"sqlite:///{self.root / 'registry' / 'registry.db'}"

    @property
    def registry_url(self) -> str:
        return f"http://{self.address('registry')}"

    def server_dir(self, slug: str) -> Path:
        return self.root / "servers" / slug

    def server_config(self, slug: str) -> Path:
        return self.server_dir(slug) / "server.toml"

    def message_log(self, slug: str) -> LogLocation:
        """Server ``slug``'s message log: its SQLite file, or its one shard in PostgreSQL."""
        database = self.server_database_url(slug)
        if database is not None:
            return PostgresLogShard(database, "main")
        return self.server_dir(slug) / "data" / "messagelog.db"

    def client_url(self, slug: str) -> str:
        return f"http://{self.address(slug + '.client')}"

    def management_url(self, slug: str) -> str:
        """The server's management API (HTTPS with its internal TLS certificate)."""
        return f"https://{self.address(slug + '.management')}"

    def internal_tls_certificate(self, slug: str) -> Path:
        """The internal TLS certificate the server makes on first start (what clients pin)."""
        return self.server_dir(slug) / "data" / INTERNAL_TLS_CERTIFICATE_FILE

    def backend_url(self, kind: str) -> str:
        return f"http://{self.address('backend.' + kind)}"

    def monitoring_certificate(self, slug: str) -> Path:
        """A copy of the server's internal TLS certificate for Prometheus (compose network only):
        ``monitoring/`` holds nothing else, so it can be lent to Prometheus on its own."""
        return self.root / "monitoring" / f"{slug}.pem"

    def server_for_client(self, client: ClientId) -> ServerPlan:
        return next(s for s in self.plan.servers if client in s.clients)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind: a port left in TIME_WAIT by the last run is free to reuse.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _listener_names(plan: FederationPlan) -> list[str]:
    """Every listener of the federation, as :attr:`Layout.ports` names them."""
    names = list(_INFRASTRUCTURE)
    for server in plan.servers:
        names += [f"{server.slug}.client", f"{server.slug}.peer", f"{server.slug}.management"]
    names += [f"backend.{kind}" for kind in _demo_backend_kinds(plan)]
    return names


def _ports(root: Path, plan: FederationPlan) -> dict[str, int]:
    names = _listener_names(plan)
    path = root / "ports.json"
    known: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        known = {k: int(v) for k, v in json.loads(path.read_text()).items()}
    ports: dict[str, int] = {}
    for name in names:
        port = known.get(name)
        if port is not None and _records_port(name) and (port in ports.values() or not _port_is_free(port)):
            # The registry's store keeps these addresses across runs; moving one silently
            # would publish a federation nobody can reach.
            raise FederationError(
                f"port {port} ({name}), recorded in {path} and in the registry, is in use by another "
                f"program: stop it, or remove {root} to set up a new federation"
            )
        if port is None or port in ports.values() or not _port_is_free(port):
            port = _free_port()
            while port in ports.values():
                port = _free_port()
        ports[name] = port
    write_atomic(path, json.dumps(ports, indent=2).encode())
    return ports


def _demo_backend_kinds(plan: FederationPlan) -> list[str]:
    """The demo backends to run: those of services that name no base URL of their own."""
    return sorted({s.backend for p in plan.servers for s in p.services if s.base_url is None})


def _records_port(name: str) -> bool:
    """Whether the registry publishes this port: a peer listener, the OCSP responder, the TSA."""
    return name.endswith(".peer") or name in ("ocsp", "tsa")


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def _key_pair(
    key_path: Path, cert_path: Path, passphrase: bytes, issue: Any, common_name: str, issuer: x509.Certificate
) -> None:
    """Generate a key and CSR on the server's side; let the CA issue from the CSR only."""
    if key_path.exists() and cert_path.exists() and load_certificate(cert_path).issuer == issuer.subject:
        return
    key = generate_private_key()
    save_private_key(key, key_path, passphrase)
    save_certificate(issue(make_csr(key, common_name)), cert_path)


#: What a folder was prepared for (network, registry store); absent: loopback, SQLite.
DEPLOYMENT_FILE = "deployment.json"


def _create_server_databases(layout: Layout) -> None:
    """Create each server's PostgreSQL database beside ``layout.database_url`` if missing."""
    if layout.database_url is None:
        return
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    conninfo = "postgresql://" + layout.database_url.split("://", 1)[1]
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as admin:
            existing = {row[0] for row in admin.execute("SELECT datname FROM pg_database")}
            for server in layout.plan.servers:
                name = make_url(str(layout.server_database_url(server.slug))).database
                if name not in existing:
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
    except psycopg.Error as exc:
        raise FederationError(
            f"cannot create the security servers' databases beside {redact_url(layout.database_url)}"
            f" (the user needs CREATEDB): {' '.join(str(exc).split())}"
        ) from exc


def _record_deployment(
    root: Path, network: Network, registry_database_url: str | None, database_url: str | None = None
) -> None:
    """Remember what ``root`` is prepared for (:func:`open_layout` reads it back), refusing
    another network: the registry's store keeps the addresses, and certificates name hosts."""
    path = root / DEPLOYMENT_FILE
    recorded: str | None = None
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
        recorded = str(json.loads(path.read_text())["network"])
    if recorded is None and (root / "ports.json").exists():
        recorded = Network.LOOPBACK.value
    if recorded is not None and recorded != network.value:
        raise FederationError(
            f"{root} is prepared for the {recorded} network, not for {network.value}: use another folder"
        )
    if network is not Network.LOOPBACK or registry_database_url is not None or path.exists():
        record = {
            "network": network.value,
            "registry_database_url": registry_database_url,
            "database_url": database_url,
        }
        write_atomic(path, (json.dumps(record, indent=2) + "\n").encode())


def _prepare_internal_tls(layout: Layout, server: ServerPlan, passphrase: bytes, now: dt.datetime) -> None:
    """Make a server's internal TLS key and certificate before its first start, naming the
    host the others reach it by, and put a copy of the certificate under ``monitoring/``.

    On loopback the server makes them itself on first start; in a container the host name
    it would put in the certificate is the container's id, which nobody connects to.
    """
    from gateway.internaltls import INTERNAL_TLS_KEY_FILE, InternalTlsError, internal_tls_certificate
    from trust.keyfiles import create_if_absent, load_or_create_private_key

    key = load_or_create_private_key(
        layout.server_dir(server.slug) / "data" / INTERNAL_TLS_KEY_FILE,
        passphrase,
        what="internal TLS key",
        error=InternalTlsError,
    )
    certificate = internal_tls_certificate(
        key, host_name=layout.network.host(server.slug + ".management"), now=now
    )
    path = layout.internal_tls_certificate(server.slug)
    create_if_absent(path, certificate.public_bytes(Encoding.PEM), mode=0o644)
    lent = layout.monitoring_certificate(server.slug)
    lent.parent.mkdir(exist_ok=True)
    write_atomic(lent, path.read_bytes())


def prepare(
    root: Path,
    plan: FederationPlan = OWL,
    *,
    network: Network = Network.LOOPBACK,
    registry_database_url: str | None = None,
    database_url: str | None = None,
) -> Layout:
    """Create or reuse keys, certificates and configuration for ``plan`` under ``root``.

    ``network`` says where the components will run (:class:`Network`);
    ``registry_database_url`` is the registry's store (default: SQLite in ``registry/``),
    which must be reachable from here: the registry's administrator sets it up now.
    ``database_url`` (PostgreSQL) puts everything in PostgreSQL: the registry's store
    there (unless ``registry_database_url`` names another), and each security server in
    a database of its own beside it (:meth:`Layout.server_database_url`), created here.
    """
    if database_url is not None:
        if not is_postgres_url(database_url):
            raise FederationError(f"database_url must be a PostgreSQL URL, not {redact_url(database_url)}")
        registry_database_url = registry_database_url or database_url
    root = root.resolve()
    for sub in ("trust", "registry", "servers", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if not (root / "passphrase").exists():
        write_atomic(root / "passphrase", secrets.token_hex(24).encode(), mode=0o600)
    passphrase = (root / "passphrase").read_bytes().strip()
    _record_deployment(root, network, registry_database_url, database_url)
    ports = _ports(root, plan) if network is Network.LOOPBACK else network.fixed_ports(plan)
    layout = Layout(root, plan, ports, network, registry_database_url, database_url)
    _create_server_databases(layout)
    now = dt.datetime.now(dt.UTC)

    # The state's trust services: a root CA, an issuing CA and its OCSP responder ...
    if (layout.ca_dir / "ca.db").exists():
        ca = CaStore.open(layout.ca_dir, passphrase)
    else:
        ca = CaStore.init(layout.ca_dir, passphrase, now=now, instance_name=INSTANCE)
    issuing = ca.issuing_certificate
    write_atomic(
        layout.root / "trust" / "ocsp.toml",
        "\n".join(
            [
                'ca_dir = "ca"',
                f"passphrase_file = {_toml_str(str(layout.passphrase_file))}",
                f"host = {_toml_str(network.bind)}",
                f"port = {ports['ocsp']}",
                f"validity_s = {float(plan.ocsp_freshness_s)}",
                "",
            ]
        ).encode(),
    )
    # ... and a timestamping authority, whose key, like every other, is made where it is used.
    layout.tsa_dir.mkdir(parents=True, exist_ok=True)
    tsa_cert = layout.tsa_dir / "tsa.pem"
    if not (layout.tsa_dir / "tsa.key").exists() or load_certificates(tsa_cert)[0].issuer != issuing.subject:
        tsa_key = generate_private_key()
        save_private_key(tsa_key, layout.tsa_dir / "tsa.key", passphrase)
        issued = ca.issue(make_csr(tsa_key, TSA_NAME), "tsa", TSA_NAME, now=now)
        # The TSA's certificate first, then its chain.
        write_atomic(tsa_cert, b"".join(c.public_bytes(Encoding.PEM) for c in (issued, issuing)))
    write_atomic(
        layout.tsa_dir / "tsa.toml",
        "\n".join(
            [
                'certificate = "tsa.pem"',
                'key = "tsa.key"',
                f"passphrase_file = {_toml_str(str(layout.passphrase_file))}",
                'serial_state = "serial.json"',
                f"host = {_toml_str(network.bind)}",
                f"port = {ports['tsa']}",
                "",
            ]
        ).encode(),
    )

    # The registry's signing key and the configuration anchor derived from it.
    reg_key_path = root / "registry" / "signing.key"
    if not reg_key_path.exists():
        save_private_key(generate_private_key(), reg_key_path, passphrase)
    reg_key = load_private_key(reg_key_path, passphrase)
    save_anchor(
        Anchor(
            instance=INSTANCE,
            registry_urls=(layout.registry_url,),
            signing_keys=(AnchorKey(REGISTRY_KEY_ID, public_key_pem(reg_key)),),
            generated_at=now.replace(microsecond=0),
        ),
        layout.anchor,
    )

    # Each security server: its own auth key, and a sign key per member it signs for.
    for server in plan.servers:
        keys = layout.server_dir(server.slug) / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        _key_pair(
            keys / "auth.key",
            keys / "auth.pem",
            passphrase,
            lambda csr, s=server: ca.issue(csr, "auth", s.id.slash(), now=now),
            server.id.slash(),
            issuing,
        )
        for member in server.members:
            _key_pair(
                keys / f"sign-{member.member_code}.key",
                keys / f"sign-{member.member_code}.pem",
                passphrase,
                lambda csr, m=member: ca.issue(csr, "sign", m.slash(), now=now),
                member.slash(),
                issuing,
            )
        _write_server_config(layout, server)
        _prepare_store(layout, server, now)
        if network is not Network.LOOPBACK:
            _prepare_internal_tls(layout, server, passphrase, now)

    _write_registry_files(layout)
    ca.close()
    from xweg.enrolment import bootstrap_registry

    bootstrap_registry(layout)
    return layout


def _prepare_store(layout: Layout, server: ServerPlan, now: dt.datetime) -> None:
    """Create or migrate a server's configuration store, and point the planned services of
    an existing one at this run's backends.

    Migrating here, as a deployment would before starting the server, keeps Alembic out
    of the server process (it finds its store at the head revision).  The store stays
    empty until the server's first start seeds it from the configuration file.  The file
    seeds the store only then; a demo backend that had to move to another port since
    (its old one taken) must not leave a service pointing at the old one.  Only the
    planned services' base URLs are touched, as the administrator ``xweg demo`` is;
    what else was changed in the store stays.
    """
    from gateway.config import GatewayConfig
    from gateway.serverconf.store import AuditContext, ServerConfStore

    config = GatewayConfig.load(layout.server_config(server.slug))
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = ServerConfStore.open(config.serverconf.database_url, base=config.data_dir)
    try:
        listed = {s["id"]: s for s in store.list_services()}
        for service in server.services:
            wanted = service.base_url or layout.backend_url(service.backend) + service.backend_path
            current = listed.get(service.id.slash())
            # A service an administrator removed is not brought back.
            if current is not None and current["base_url"] != wanted:
                store.update_service(service.id, AuditContext("xweg demo", now), base_url=wanted)
    finally:
        store.close()


def _write_server_config(layout: Layout, server: ServerPlan) -> None:
    lines = [
        f"server_id = {_toml_str(server.id.slash())}",
        f"anchor = {_toml_str(str(layout.anchor))}",
        'data_dir = "data"',
        *(
            []
            if layout.database_url is None
            else [f"database_url = {_toml_str(str(layout.server_database_url(server.slug)))}"]
        ),
        "",
        "[client_listener]",
        f"host = {_toml_str(layout.network.bind)}",
        f"port = {layout.ports[server.slug + '.client']}",
        "",
        "[peer_listener]",
        f"host = {_toml_str(layout.network.bind)}",
        f"port = {layout.ports[server.slug + '.peer']}",
        "",
        "[management_listener]        # management API and /metrics (HTTPS, internal TLS certificate)",
        f"host = {_toml_str(layout.network.bind)}",
        f"port = {layout.ports[server.slug + '.management']}",
        "",
        "[globalconf]",
        f"poll_interval_s = {layout.plan.globalconf_poll_s}",
        "",
        "[timestamping]",
        f"interval_s = {layout.plan.timestamp_interval_s}",
        f"retry_s = {min(60.0, layout.plan.timestamp_interval_s)}",
        f"acceptable_s = {layout.plan.timestamp_acceptable_s}",
        "",
        "[ocsp]",
        f"refresh_interval_s = {layout.plan.ocsp_refresh_s}",
        f"retry_s = {min(60.0, layout.plan.ocsp_refresh_s)}",
        "",
    ]
    if server.omit_bodies_for:
        lines += ["[messagelog]", f"omit_bodies_for = {_toml_list(server.omit_bodies_for)}", ""]
    lines += [
        "[keys]",
        f"passphrase_file = {_toml_str(str(layout.passphrase_file))}",
        'auth_key = "keys/auth.key"',
        'auth_certificate = "keys/auth.pem"',
    ]
    for member in server.members:
        lines += [
            "[[keys.sign]]",
            f"member = {_toml_str(member.slash())}",
            f'key = "keys/sign-{member.member_code}.key"',
            f'certificate = "keys/sign-{member.member_code}.pem"',
        ]
    for client in server.clients:
        # The demo's information systems call over plain HTTP (loopback, or the compose network).
        lines += ["", "[[clients]]", f"id = {_toml_str(client.slash())}", 'connection = "http"']
    for service in server.services:
        base_url = service.base_url or layout.backend_url(service.backend) + service.backend_path
        lines += [
            "",
            "[[services]]",
            f"id = {_toml_str(service.id.slash())}",
            f"base_url = {_toml_str(base_url)}",
            f"timeout_s = {service.timeout_s}",
            f"protocol = {_toml_str(service.protocol)}",
            "",
            "[[access]]",
            f"service = {_toml_str(service.id.unversioned().slash())}",
            f"clients = {_toml_list(service.access)}",
        ]
    write_atomic(layout.server_config(server.slug), ("\n".join(lines) + "\n").encode())


def _write_registry_files(layout: Layout) -> None:
    plan = layout.plan
    database = layout.registry_database or "sqlite:///registry.db"
    reg = [
        f"database_url = {_toml_str(database)}",
        'state_dir = "state"',
        f"host = {_toml_str(layout.network.bind)}",
        f"port = {layout.ports['registry']}",
        f"interval_s = {plan.registry_interval_s}",
        f"validity_s = {plan.registry_validity_s}",
        # Approvals reach the security servers within a second, not at the next round.
        "change_poll_s = 0.5",
        "",
        "[signing]",
        'key = "signing.key"',
        f"key_id = {_toml_str(REGISTRY_KEY_ID)}",
        f"passphrase_file = {_toml_str(str(layout.passphrase_file))}",
    ]
    write_atomic(layout.registry_config, ("\n".join(reg) + "\n").encode())


def open_layout(root: Path, plan: FederationPlan = OWL) -> Layout:
    """The layout of a folder :func:`prepare` made, read back without changing anything."""
    root = root.resolve()
    if not (root / "anchor.json").is_file():
        raise FederationError(f"{root} holds no prepared federation (no anchor.json)")
    record: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError):
        record = json.loads((root / DEPLOYMENT_FILE).read_text())
    network = Network(record.get("network", Network.LOOPBACK.value))
    if network is Network.LOOPBACK:
        ports = {k: int(v) for k, v in json.loads((root / "ports.json").read_text()).items()}
    else:
        ports = network.fixed_ports(plan)
    return Layout(root, plan, ports, network, record.get("registry_database_url"), record.get("database_url"))


def component_commands(layout: Layout) -> dict[str, list[str]]:
    """The ``xweg`` arguments each long-running component is started with, by component:
    ``registry``, ``ocsp``, ``tsa``, ``backend.<kind>`` and each server's slug."""
    commands = {
        "registry": ["registry", "serve", "--config", str(layout.registry_config)],
        "ocsp": ["trust", "ocsp", "serve", "--config", str(layout.root / "trust" / "ocsp.toml")],
        "tsa": ["trust", "tsa", "serve", "--config", str(layout.tsa_dir / "tsa.toml")],
    }
    for kind in _demo_backend_kinds(layout.plan):
        port = str(layout.ports["backend." + kind])
        commands["backend." + kind] = ["demo-backend", kind, "--host", layout.network.bind, "--port", port]
    for server in layout.plan.servers:
        commands[server.slug] = ["gateway", "serve", "--config", str(layout.server_config(server.slug))]
    return commands


# ---------------------------------------------------------------- running it


class FederationError(RuntimeError):
    """A component did not start or did not become ready; the message says which and why."""


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 -- loopback URLs we built
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def _die_with_parent() -> None:
    """Linux: a component gets SIGTERM when the runner dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Process:
    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.popen = subprocess.Popen(  # noqa: S603 -- our own interpreter and module
            [sys.executable, "-m", "xweg", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 -- a single prctl call before exec
        )
        log.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


class RunningFederation:
    """Every component of a prepared federation as its own OS process.

    :meth:`start` brings up the trust services, the registry and the backends, then has
    every security server register itself through the registration workflow
    (:mod:`xweg.enrolment`; ``report`` receives a line per step), then starts the
    security servers.
    """

    def __init__(self, layout: Layout, report: Callable[[str], None] | None = None) -> None:
        self.layout = layout
        self.report = report
        logs = layout.root / "logs"
        commands = component_commands(layout)
        self.processes: dict[str, Process] = {
            "registry": Process("registry", commands["registry"], logs / "registry.log")
        }
        self.processes["ocsp"] = Process("ocsp", commands["ocsp"], logs / "ocsp.log")
        self.processes["tsa"] = Process("tsa", commands["tsa"], logs / "tsa.log")
        for kind in _demo_backend_kinds(layout.plan):
            self.processes["backend." + kind] = Process(
                kind, commands["backend." + kind], logs / f"backend-{kind}.log"
            )
        for server in layout.plan.servers:
            self.processes[server.slug] = Process(
                server.slug, commands[server.slug], logs / f"server-{server.slug}.log"
            )

    def start(self, timeout_s: float = 60.0) -> None:
        from xweg.enrolment import enrol

        servers = {server.slug for server in self.layout.plan.servers}
        infrastructure = [name for name in self.processes if name not in servers]
        for name in infrastructure:
            self.processes[name].start()
        self.wait_ready(timeout_s, names=infrastructure)
        enrol(self.layout, report=self.report, timeout_s=timeout_s)
        for name in servers:
            self.processes[name].start()
        self.wait_ready(timeout_s, names=sorted(servers))

    def wait_ready(self, timeout_s: float = 60.0, names: Sequence[str] | None = None) -> None:
        """Wait until ``names`` (default: every process) answer; servers must be ready (``/readyz``)
        with the registry's current configuration."""
        deadline = time.monotonic() + timeout_s
        pending = set(self.processes if names is None else names)
        registry_serial: int | None = None
        if "registry" not in pending:
            status, body = _get_json(self.layout.registry_url + "/healthz")
            if status != 200 or not isinstance(body, dict):
                raise FederationError(f"the registry does not answer at {self.layout.registry_url}")
            registry_serial = int(body["serial"])
        while pending:
            for name in sorted(pending):
                process = self.processes[name]
                if not process.alive():
                    raise FederationError(f"{name} exited during start-up:\n{process.log_tail()}")
                if name == "registry":
                    status, body = _get_json(self.layout.registry_url + "/healthz")
                    if status == 200 and isinstance(body, dict):
                        registry_serial = int(body["serial"])
                        pending.discard(name)
                elif name.startswith("backend.") or name in ("ocsp", "tsa"):
                    port = self.layout.ports[name]
                    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                        pending.discard(name)
                elif registry_serial is not None:
                    status, body = _get_json(self.layout.client_url(name) + "/readyz")
                    if (
                        status == 200
                        and isinstance(body, dict)
                        and body.get("globalconf_serial", -1) >= registry_serial
                        and body.get("ocsp_ready")
                    ):
                        pending.discard(name)
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n}:\n{self.processes[n].log_tail()}" for n in sorted(pending))
                raise FederationError(
                    f"not ready after {timeout_s:.0f} s: {', '.join(sorted(pending))}\n{tails}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        # Security servers first, so nothing is in flight when backends and registry go.
        infrastructure = ("registry", "ocsp", "tsa")
        order = [n for n in self.processes if n not in infrastructure and not n.startswith("backend.")]
        order += [n for n in self.processes if n.startswith("backend.")] + list(infrastructure)
        for name in order:
            self.processes[name].stop()

    @contextlib.contextmanager
    def running(self, timeout_s: float = 60.0) -> Iterator[RunningFederation]:
        try:
            self.start(timeout_s)
            yield self
        finally:
            self.stop()

    def describe(self) -> dict[str, Any]:
        """The machine-readable description written to ``federation.json``."""
        layout = self.layout
        servers = []
        services = []
        for server in layout.plan.servers:
            servers.append(
                {
                    "id": server.id.slash(),
                    "name": server.name,
                    "owner": server.id.owner.slash(),
                    "clients": [c.slash() for c in server.clients],
                    "client_url": layout.client_url(server.slug),
                    "management_url": layout.management_url(server.slug),
                    "metrics_url": layout.management_url(server.slug) + "/metrics",
                    "internal_tls_certificate": str(layout.internal_tls_certificate(server.slug)),
                    "config": str(layout.server_config(server.slug)),
                    "message_log": str(layout.message_log(server.slug)),
                }
            )
            for service in server.services:
                services.append(_describe_service(layout, server, service))
        return {
            "instance": INSTANCE,
            "registry_url": layout.registry_url,
            "anchor": str(layout.anchor),
            "ca_certificate": str(layout.ca_certificate),
            "ocsp_url": layout.ocsp_url,
            "tsa_url": layout.tsa_url,
            "security_servers": servers,
            "services": services,
        }


def _describe_service(layout: Layout, server: ServerPlan, service: ServicePlan) -> dict[str, Any]:
    from xweg.demo import example_envelope, example_request, wsdl_url

    described: dict[str, Any] = {
        "id": service.id.unversioned().slash(),
        "version": service.id.service_version,
        "protocol": service.protocol,
        "description": service.description,
        "provider_security_server": server.id.slash(),
        "access": list(service.access),
    }
    if service.protocol == "soap":
        client, envelope = example_envelope(service)
        client_url = layout.client_url(layout.server_for_client(client).slug)
        described["wsdl_url"] = wsdl_url(client_url, service.id)
        described["example_request"] = {
            "client": client.slash(),
            "client_url": client_url,
            "method": "POST",
            "content_type": "text/xml; charset=UTF-8",
            "envelope": envelope,
        }
        return described
    client, method, path, body = example_request(service)
    described["example_request"] = {
        "client": client.slash(),
        "client_url": layout.client_url(layout.server_for_client(client).slug),
        "method": method,
        "path": path,
        "body": body,
    }
    return described


def rest_path(service: ServiceId, tail: str = "") -> str:
    provider: SubsystemId = service.provider
    return f"/r1/{provider.slash()}/{service.service_code}{tail}"
