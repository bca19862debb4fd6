"""A security server's local configuration: one typed, frozen object built at start-up.

Read from a TOML file (``xweg gateway serve --config FILE``); relative paths are
resolved against the file's folder.  Nothing below reads the environment or files
later, except the passphrase named here, which is read once while loading.

```toml
server_id = "NRW/MUN/05774032/ss1"
anchor = "../../anchor.json"
data_dir = "."
# database_url = "postgresql://xweg@db.example/ss1"  # optional; replicas of one server share it:
#                             # the message log (one shard per replica), operational monitoring and
#                             # the server configuration go there instead of SQLite files in data_dir

[client_listener]             # for information systems (HTTP)
host = "127.0.0.1"
port = 5510

[client_tls_listener]         # optional; for information systems (HTTPS): the same services,
host = "127.0.0.1"            # with the internal TLS certificate (data_dir/internal-tls.pem, made
port = 5443                   # on first use) and the client certificates registered for clients

[peer_listener]               # for other security servers (mutual TLS)
host = "127.0.0.1"
port = 5511

[management_listener]         # optional; the management API (HTTPS, internal TLS certificate,
host = "127.0.0.1"            # JWT roles: gateway.management); the default host is 127.0.0.1;
port = 5588                   # without this section the server runs no management listener

[keys]
passphrase_file = "keys/passphrase"      # or passphrase_env = "XWEG_KEY_PASSPHRASE"
auth_key = "keys/auth.key"
auth_certificate = "keys/auth.pem"
[[keys.sign]]
member = "NRW/MUN/05774032"
key = "keys/sign-05774032.key"
certificate = "keys/sign-05774032.pem"

[timestamping]                # optional; X-Road's defaults
interval_s = 60
acceptable_s = 14400

[ocsp]                        # optional
refresh_interval_s = 1200

[messagelog]                  # optional
inline_body_limit_bytes = 262144                  # larger bodies: blob store beside the log
omit_bodies_for = ["NRW/MUN/05774032/sozialamt"]  # data minimisation: digests only
shard = "main"                # with database_url: this replica's shard, unique per replica;
# shard_env = "POD_NAME"      # or taken from this variable (lowercased, other characters -> _)

[limits]                      # optional; these are the defaults
max_body_bytes = 10485760     # one request or response body (10 MiB); more: 413
max_header_bytes = 8192       # the request line, and each header's name or value; more: 400
max_headers = 100             # header fields in one request; more: 400
max_concurrent_requests = 256 # requests the client listener handles at once; more: 503 at once
peer_timeout_s = 60           # waiting for the provider's security server
max_backend_timeout_s = 300   # ceiling on every service's timeout_s
shutdown_timeout_s = 30       # after SIGTERM: how long exchanges in flight may still take

[archive]                     # optional; X-Road's defaults
interval_s = 21600
retention_s = 2592000

[opmon]                       # optional; operational monitoring (data_dir/opmon.db)
retention_s = 604800          # records kept 7 days
max_queue = 10000             # records waiting to be written; beyond this they are dropped (and counted)

[serverconf]                  # optional; the server configuration store (gateway.serverconf.store)
database_url = "sqlite:///serverconf.db"  # the default; a relative SQLite path is under data_dir;
                              # replicas share one PostgreSQL database: "postgresql://user@host/serverconf"
poll_interval_s = 2.0         # how soon changes made elsewhere (command line, other replicas) take effect

# Clients, services and access rights below seed the server configuration store
# (serverconf.database_url) when it has never held anything; from then on the store rules.
[[clients]]                   # subsystems of this organisation's information systems
id = "NRW/MUN/05774032/gewerbeamt"
connection = "http"           # "http", "https" or "https-mtls" (the default)

[[services]]                  # services this server provides
id = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"
base_url = "http://127.0.0.1:5601/"
timeout_s = 30

[[services]]                  # a SOAP service: base_url is the backend's SOAP endpoint
id = "NRW/MUN/05774032/gewerbeamt/gewerbeauskunft/v1"
protocol = "soap"             # "rest" (the default) or "soap"
base_url = "http://127.0.0.1:5602/gewerbeauskunft"
wsdl_url = "http://127.0.0.1:5602/gewerbeauskunft?wsdl"  # optional; this is the default

[[services]]                  # a REST service described by an OpenAPI 3 document (JSON)
id = "NRW/MUN/05774032/gewerbeamt/betriebe/v1"
base_url = "http://127.0.0.1:5603/api/v1"
openapi_url = "http://127.0.0.1:5603/openapi.json"       # optional; for getOpenAPI

[[access]]                    # deny by default: only what is listed here is allowed
service = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige"
clients = ["NRW/GOV/057/arbeitsschutz", "GLOBALGROUP:NRW/owl-kommunen"]
```
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.identifiers import (
    ClientId,
    GlobalGroupId,
    IdentifierError,
    MemberId,
    SecurityServerId,
    ServiceId,
    parse_client_slash,
    parse_typed,
)
from core.messages import Protocol
from core.metadata import is_reserved_service_code
from gateway.database import is_postgres_url
from gateway.messagelog.store import LogLocation, PostgresLogShard
from gateway.serverconf.model import (
    AccessGrant,
    AccessSubject,
    ClientEntry,
    ConnectionType,
    ServerConfSnapshot,
    ServiceEntry,
)

__all__ = [
    "ConfigError",
    "Listener",
    "SignKeyConfig",
    "ServiceConfig",
    "Limits",
    "GlobalConfClientSettings",
    "TimestampingSettings",
    "OcspSettings",
    "MessageLogSettings",
    "ArchiveSettings",
    "OpmonSettings",
    "ServerConfSettings",
    "GatewayConfig",
]


class ConfigError(ValueError):
    """The security server's configuration file is unusable; the message says where."""


@dataclass(frozen=True)
class Listener:
    host: str
    port: int

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigError(f"port must be an integer, not {self.port!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")


@dataclass(frozen=True)
class SignKeyConfig:
    member: MemberId
    key_path: Path
    certificate_path: Path


#: A service this server provides (kept under this name for the configuration file's readers).
ServiceConfig = ServiceEntry


def _protocol(service: str, value: object) -> Protocol:
    """``protocol = "rest" | "soap"`` (any case, as the registry writes ``REST`` and ``SOAP``)."""
    if isinstance(value, str):
        for protocol in Protocol:
            if value.lower() == protocol.value:
                return protocol
    raise ConfigError(f'service {service}: protocol must be "rest" or "soap", not {value!r}')


def _connection(client: str, value: object) -> ConnectionType:
    for connection in ConnectionType:
        if value == connection.value:
            return connection
    names = ", ".join(f'"{c.value}"' for c in ConnectionType)
    raise ConfigError(f"client {client}: connection must be one of {names}, not {value!r}")


@dataclass(frozen=True)
class Limits:
    """Bounds on what the listeners take and how long work may run.

    Header bounds are the HTTP parser's (aiohttp), on both listeners: a request beyond
    them is answered 400 by the parser and its connection closed, before any handler
    runs.  The concurrency bound counts requests being handled on the client listener
    (not idle keep-alive connections); ``/healthz`` and ``/readyz`` are not counted.
    """

    max_body_bytes: int = 10 * 1024 * 1024  # X-Road logs REST bodies up to 10 MiB
    peer_timeout_s: float = 60.0
    max_header_bytes: int = 8 * 1024  # the request line, and one header's name or value
    max_headers: int = 100  # header fields per request
    max_concurrent_requests: int = 256  # on the client listener; each may hold a body of max_body_bytes
    max_backend_timeout_s: float = 300.0  # a service's timeout_s above this is cut to it
    shutdown_timeout_s: float = 30.0  # after a stop signal, for exchanges in flight; then they are cancelled

    def runner_args(self) -> dict[str, Any]:
        """aiohttp's own bounds for a listener (``web.AppRunner``'s arguments): the HTTP
        parser's, and the grace period at stop.

        aiohttp answers a request line or a header name or value longer than
        ``max_line_size``/``max_field_size``, or more than ``max_headers`` headers, with 400
        and closes the connection; at cleanup it waits up to ``shutdown_timeout`` for
        handlers still running, then cancels them.  Every listener of a server uses them.
        """
        return {
            "max_line_size": self.max_header_bytes,
            "max_field_size": self.max_header_bytes,
            "max_headers": self.max_headers,
            "shutdown_timeout": self.shutdown_timeout_s,
        }

    def __post_init__(self) -> None:
        _require_positive(self)
        for name in ("max_body_bytes", "max_header_bytes", "max_headers", "max_concurrent_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, not {value!r}")


@dataclass(frozen=True)
class GlobalConfClientSettings:
    poll_interval_s: float = 60.0
    fetch_timeout_s: float = 10.0
    max_size_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        _require_positive(self)


def _require_positive(settings: object) -> None:
    for name, value in vars(settings).items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{name} must be a positive number, not {value!r}")


@dataclass(frozen=True)
class TimestampingSettings:
    """Batch timestamping of the message log (X-Road's defaults)."""

    interval_s: float = 60.0  # a batch every minute ...
    max_batch: int = 10_000  # ... or sooner when this many records wait
    retry_s: float = 60.0  # after every TSA failed
    acceptable_s: float = 4 * 3600.0  # untimestamped longer than this: refuse new traffic
    timeout_s: float = 10.0  # one TSA request

    def __post_init__(self) -> None:
        _require_positive(self)


@dataclass(frozen=True)
class OcspSettings:
    """Fetching OCSP responses for this server's own certificates."""

    refresh_interval_s: float = 1200.0  # X-Road's default
    retry_s: float = 60.0  # after a failed fetch
    fetch_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        _require_positive(self)


@dataclass(frozen=True)
class MessageLogSettings:
    """What the message log keeps of bodies."""

    inline_body_limit_bytes: int = 256 * 1024  # larger bodies go to the blob store beside the log
    # Client subsystems whose bodies are not kept (data minimisation); their digests still are.
    omit_bodies_for: tuple[ClientId, ...] = ()
    # With a PostgreSQL database_url: this replica's own shard of the message log (its
    # records, chain, Merkle tree and checkpoints); every replica needs its own.
    shard: str = "main"

    def __post_init__(self) -> None:
        try:
            PostgresLogShard("postgresql://", self.shard)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if isinstance(self.inline_body_limit_bytes, bool) or not isinstance(
            self.inline_body_limit_bytes, int
        ):
            raise ConfigError("inline_body_limit_bytes must be an integer")
        if self.inline_body_limit_bytes < 0:
            raise ConfigError("inline_body_limit_bytes must not be negative")


@dataclass(frozen=True)
class ArchiveSettings:
    """Archiving timestamped records, and removing old ones from the live log."""

    dir: str = "archive"  # relative to data_dir
    interval_s: float = 6 * 3600.0  # X-Road's default
    retention_s: float = 30 * 24 * 3600.0  # records older than this leave the live log, once archived

    def __post_init__(self) -> None:
        for name in ("interval_s", "retention_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, not {value!r}")


@dataclass(frozen=True)
class OpmonSettings:
    """Operational monitoring: one record per exchange, kept for a while (gateway.observability.opmon)."""

    retention_s: float = 7 * 24 * 3600.0  # records older than this are pruned
    max_queue: int = 10_000  # records waiting for the writer; more are dropped and counted
    prune_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        _require_positive(self)
        if not isinstance(self.max_queue, int):
            raise ConfigError(f"max_queue must be an integer, not {self.max_queue!r}")


@dataclass(frozen=True)
class ServerConfSettings:
    """Where the server configuration store is, and how often the running server looks for changes."""

    database_url: str = "sqlite:///serverconf.db"  # a relative SQLite path is resolved against data_dir
    poll_interval_s: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.database_url, str) or not self.database_url.strip():
            raise ConfigError(f"database_url must be a database URL, not {self.database_url!r}")
        value = self.poll_interval_s
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"poll_interval_s must be a positive number, not {value!r}")


@dataclass(frozen=True)
class GatewayConfig:
    server_id: SecurityServerId
    anchor_path: Path
    data_dir: Path
    client_listener: Listener
    peer_listener: Listener
    auth_key_path: Path
    auth_certificate_path: Path
    sign_keys: tuple[SignKeyConfig, ...]
    key_passphrase: bytes | None
    # The file's [[clients]], [[services]] and [[access]]: imported into the server
    # configuration store when it is first created (gateway.serverconf.store); after that
    # the store, changed with the management API and ``xweg gateway client|service|...``, rules.
    clients: tuple[ClientEntry, ...]
    services: tuple[ServiceEntry, ...]
    access: tuple[AccessGrant, ...]
    # HTTPS for information systems with the internal TLS certificate; None: plain HTTP only.
    client_tls_listener: Listener | None = None
    # The management API over HTTPS (gateway.management); None: no management listener.
    management_listener: Listener | None = None
    limits: Limits = field(default_factory=Limits)
    globalconf: GlobalConfClientSettings = field(default_factory=GlobalConfClientSettings)
    timestamping: TimestampingSettings = field(default_factory=TimestampingSettings)
    ocsp: OcspSettings = field(default_factory=OcspSettings)
    messagelog: MessageLogSettings = field(default_factory=MessageLogSettings)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    opmon: OpmonSettings = field(default_factory=OpmonSettings)
    serverconf: ServerConfSettings = field(default_factory=ServerConfSettings)
    # The PostgreSQL database replicas of this server share; None: SQLite files in data_dir.
    database_url: str | None = None

    def __post_init__(self) -> None:
        if self.database_url is not None and not is_postgres_url(self.database_url):
            raise ConfigError(
                "database_url names the PostgreSQL database replicas share (postgresql://...);"
                " without it the server keeps SQLite files in data_dir"
            )

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / self.archive.dir

    @property
    def message_log(self) -> LogLocation:
        """This server's (or replica's) message log: a file in data_dir, or a PostgreSQL shard."""
        if self.database_url is not None:
            return PostgresLogShard(self.database_url, self.messagelog.shard)
        return self.data_dir / "messagelog.db"

    @property
    def opmon_location(self) -> Path | str:
        """Operational monitoring: a file in data_dir, or the shared PostgreSQL database."""
        return self.database_url if self.database_url is not None else self.data_dir / "opmon.db"

    @property
    def globalconf_path(self) -> Path:
        return self.data_dir / "globalconf.jws"

    def seed_snapshot(self) -> ServerConfSnapshot:
        """The file's clients, services and access rights as a server configuration."""
        return ServerConfSnapshot(
            clients={c.id: c for c in self.clients},
            services=self.services,
            grants=self.access,
            version="file",
        )

    @classmethod
    def load(
        cls, path: Path, environ: Mapping[str, str] | None = None, *, database_url: str | None = None
    ) -> GatewayConfig:
        """Load ``path``; ``database_url`` (``--database-url``) replaces the file's own."""
        environ = os.environ if environ is None else environ
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if database_url is not None:
            raw["database_url"] = database_url
        try:
            return _build(raw, path.resolve().parent, environ)
        except (KeyError, TypeError, IdentifierError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise ConfigError(f"{path}: {exc}") from exc
            what = f"missing setting {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ConfigError(f"{path}: {what}") from exc


def _subject(text: str) -> AccessSubject:
    # Local groups are made with the management API or the command line, not in this file.
    if text.startswith("GLOBALGROUP:"):
        group = parse_typed(text)
        assert isinstance(group, GlobalGroupId)
        return group
    return parse_client_slash(text)


# The keys each table may hold.  A misspelt key (``datadir``) is refused, not ignored: an
# ignored one silently falls back to a default the operator did not choose.
_TOP_LEVEL = frozenset(
    {
        "server_id", "anchor", "data_dir", "client_listener", "client_tls_listener", "peer_listener",
        "management_listener", "keys", "globalconf", "timestamping", "ocsp", "messagelog", "limits",
        "archive", "opmon", "serverconf", "clients", "services", "access", "database_url",
    }
)  # fmt: skip
_KEYS = frozenset({"passphrase_file", "passphrase_env", "auth_key", "auth_certificate", "sign"})
_SIGN_KEY = frozenset({"member", "key", "certificate"})
_CLIENT = frozenset({"id", "connection"})
_SERVICE = frozenset({"id", "base_url", "timeout_s", "protocol", "wsdl_url", "openapi_url", "verify_tls"})
_ACCESS = frozenset({"service", "clients"})


def _known(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> Mapping[str, Any]:
    """``table`` itself, once every key of it is one of ``allowed``."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} in {where} (known: {', '.join(sorted(allowed))})")
    return table


def _build(raw: dict[str, Any], base: Path, environ: Mapping[str, str]) -> GatewayConfig:
    def rel(value: str) -> Path:
        return (base / value).resolve()

    _known(raw, _TOP_LEVEL, "the top level")
    database_url = raw.get("database_url")
    if database_url is not None and not isinstance(database_url, str):
        raise ConfigError(f"database_url must be a PostgreSQL URL, not {database_url!r}")
    keys = _known(raw["keys"], _KEYS, "[keys]")
    for entry in keys.get("sign", []):
        _known(entry, _SIGN_KEY, "[[keys.sign]]")
    for table, allowed, where in (
        ("clients", _CLIENT, "[[clients]]"),
        ("services", _SERVICE, "[[services]]"),
    ):
        for entry in raw.get(table, []):
            _known(entry, allowed, where)
    for entry in raw.get("access", []):
        _known(entry, _ACCESS, "[[access]]")
    if "passphrase_file" in keys and "passphrase_env" in keys:
        raise ConfigError("[keys] names both passphrase_file and passphrase_env: choose one")
    passphrase: bytes | None = None
    if "passphrase_file" in keys:
        secret = rel(keys["passphrase_file"])
        try:
            # A trailing newline is an editor's, not part of the passphrase.
            passphrase = secret.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read passphrase file {secret}: {exc.strerror}") from exc
    elif "passphrase_env" in keys:
        name = keys["passphrase_env"]
        if name not in environ:
            raise ConfigError(f"environment variable {name} (key passphrase) is not set")
        passphrase = environ[name].encode()

    access: list[AccessGrant] = []
    for entry in raw.get("access", []):
        service = ServiceId.parse_slash(entry["service"])
        if is_reserved_service_code(service.service_code):
            # Metadata services are answered without an access check; a rule would mislead.
            raise ConfigError(
                f"access to {service.slash()}: {service.service_code!r} is a metadata service, "
                "which every client may call"
            )
        access.extend(
            AccessGrant(service.provider, service.service_code, _subject(s)) for s in entry["clients"]
        )
    gc = raw.get("globalconf", {})
    limits = raw.get("limits", {})
    return GatewayConfig(
        server_id=SecurityServerId.parse_slash(raw["server_id"]),
        anchor_path=rel(raw["anchor"]),
        data_dir=rel(raw.get("data_dir", ".")),
        client_listener=Listener(**raw["client_listener"]),
        client_tls_listener=(
            Listener(**raw["client_tls_listener"]) if "client_tls_listener" in raw else None
        ),
        peer_listener=Listener(**raw["peer_listener"]),
        management_listener=(
            Listener(**{"host": "127.0.0.1", **raw["management_listener"]})
            if "management_listener" in raw
            else None
        ),
        auth_key_path=rel(keys["auth_key"]),
        auth_certificate_path=rel(keys["auth_certificate"]),
        sign_keys=tuple(
            SignKeyConfig(MemberId.parse_slash(s["member"]), rel(s["key"]), rel(s["certificate"]))
            for s in keys.get("sign", [])
        ),
        key_passphrase=passphrase,
        clients=tuple(
            ClientEntry(
                parse_client_slash(c["id"]),
                _connection(c["id"], c.get("connection", ConnectionType.HTTPS_MTLS.value)),
            )
            for c in raw.get("clients", [])
        ),
        services=tuple(
            ServiceEntry(
                ServiceId.parse_slash(s["id"]),
                s["base_url"],
                float(s.get("timeout_s", 30.0)),
                _protocol(s["id"], s.get("protocol", "rest")),
                s.get("wsdl_url"),
                s.get("openapi_url"),
                s.get("verify_tls", True),
            )
            for s in raw.get("services", [])
        ),
        access=tuple(access),
        limits=Limits(**limits),
        globalconf=GlobalConfClientSettings(**gc),
        timestamping=TimestampingSettings(**raw.get("timestamping", {})),
        ocsp=OcspSettings(**raw.get("ocsp", {})),
        messagelog=_messagelog_settings(raw.get("messagelog", {}), environ),
        archive=ArchiveSettings(**raw.get("archive", {})),
        opmon=OpmonSettings(**raw.get("opmon", {})),
        serverconf=_serverconf_settings(raw.get("serverconf", {}), database_url),
        database_url=database_url,
    )


def _messagelog_settings(raw: dict[str, Any], environ: Mapping[str, str]) -> MessageLogSettings:
    omit = tuple(parse_client_slash(c) for c in raw.get("omit_bodies_for", []))
    rest = {k: v for k, v in raw.items() if k not in ("omit_bodies_for", "shard_env")}
    if "shard_env" in raw:
        if "shard" in raw:
            raise ConfigError("[messagelog] names both shard and shard_env: choose one")
        name = raw["shard_env"]
        if not isinstance(name, str) or name not in environ:
            raise ConfigError(f"environment variable {name} ([messagelog] shard_env) is not set")
        # A pod's or host's name (xweg-gateway-0) as a shard name (xweg_gateway_0).
        rest["shard"] = re.sub(r"[^a-z0-9_]", "_", environ[name].strip().lower())
    return MessageLogSettings(omit_bodies_for=omit, **rest)


def _serverconf_settings(raw: dict[str, Any], database_url: str | None) -> ServerConfSettings:
    # The shared database holds the server configuration too, unless [serverconf] names another.
    if database_url is not None and "database_url" not in raw:
        raw = {**raw, "database_url": database_url}
    return ServerConfSettings(**raw)
