"""The security server's configuration store: clients, services, endpoints, access rights, local groups.

One SQLAlchemy 2 schema, created and upgraded by Alembic (``gateway/serverconf/migrations``,
imported only when the database is not at :data:`SCHEMA_HEAD` yet), on a SQLite file by
default or on PostgreSQL by URL (a database of its own: the table names are the plain
ones).  Every public change is one transaction: input is validated
first (identifiers by :mod:`core.identifiers`, services by :class:`ServiceEntry`,
endpoints by :meth:`EndpointPattern.parse`), what it names is looked up, and a database
constraint that still trips (two processes racing) becomes a :class:`ServerConfConflict`,
with nothing written.  Refusals are typed: :class:`ServerConfConflict` for a duplicate or a
state that forbids the change, :class:`ServerConfNotFound` for a reference to something
unknown (here, or to the global configuration), and their base :class:`ServerConfError`
for anything else.

Every change writes one audit-trail row per thing changed (who, what, which target, when,
before and after as JSON) in the same transaction -- what goes with a removed service or
endpoint is audited too -- and, once committed, the same entries as structlog lines
``serverconf.audit``.  Every change also moves a counter, so :meth:`ServerConfStore.change_marker`
differs after every committed change, whichever process made it: the running server
polls it to pick up changes made by the command line or by another replica.

Access rights are kept per service code of a provider, regardless of version (as X-Road
does): a right on a whole service outlives one of its versions as long as another
version remains.  A right on an endpoint names one endpoint row of one version and goes
with it.  Whether a subject is known to the global configuration is asked of the caller
(``known_client``, ``known_global_group``), which holds the configuration the server adopted.
The management API, the command line and the poller of the running server are left to
others (:mod:`gateway.serverconf.live`, ``xweg gateway client|service|...``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from core.identifiers import (
    ClientId,
    GlobalGroupId,
    LocalGroupId,
    MemberId,
    ServiceId,
    SubsystemId,
    parse_client_slash,
    parse_typed,
)
from core.messages import Protocol
from core.metadata import is_reserved_service_code
from gateway.serverconf.model import (
    AccessGrant,
    AccessSubject,
    ClientEntry,
    ConnectionType,
    EndpointPattern,
    LocalGroup,
    ServerConfSnapshot,
    ServiceEntry,
)
from trust.certificates import fingerprint

__all__ = [
    "AuditContext",
    "Base",
    "KnownClient",
    "KnownGlobalGroup",
    "SCHEMA_HEAD",
    "ServerConfConflict",
    "ServerConfError",
    "ServerConfNotFound",
    "ServerConfStore",
]

#: Whether a member or subsystem is in the current global configuration.
KnownClient = Callable[[ClientId], bool]
#: Whether a global group is in the current global configuration.
KnownGlobalGroup = Callable[[GlobalGroupId], bool]

_MAX_TEXT = 4096  # characters of a local group's description
_MAX_PEM = 64 * 1024  # characters of one client certificate's PEM
_MAX_AUDIT_PAGE = 1000  # audit-trail entries per read
_MAX_OPENAPI_ENDPOINTS = 10_000  # endpoints one OpenAPI document may bring
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_UPDATABLE = frozenset({"base_url", "timeout_s", "verify_tls", "wsdl_url", "openapi_url"})
# Held while migrating on PostgreSQL, so that replicas starting together migrate one at a time.
_MIGRATION_LOCK = 0x78776567_73630001
#: The newest revision of ``gateway/serverconf/migrations``; a new migration moves it too.
#: A database already at it is opened without importing Alembic, which would otherwise stay
#: in the server's memory (about 10 MB) for the life of the process.
SCHEMA_HEAD = "sc0001"

log = structlog.get_logger("xweg.serverconf")


class ServerConfError(ValueError):
    """A change or read the store refuses; the message says what and why.

    ``code`` names the kind of refusal in a stable, machine-readable way; the subclasses
    narrow it, and anything else (bad input, an expired certificate) is ``refused``.
    """

    code: ClassVar[str] = "refused"


class ServerConfConflict(ServerConfError):
    """The change collides with what the store holds: a duplicate, or a state that forbids it
    (a client that still provides services, a group that is still granted something)."""

    code: ClassVar[str] = "conflict"


class ServerConfNotFound(ServerConfError):
    """The change names something unknown: here (a client, service, endpoint, right or local
    group) or to the current global configuration (a member, subsystem or global group)."""

    code: ClassVar[str] = "unknown_reference"


@dataclass(frozen=True)
class AuditContext:
    """Who makes a change, when, and the request it belongs to (for the audit trail)."""

    actor: str
    at: dt.datetime
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.actor, str) or not self.actor or len(self.actor) > 255:
            raise ServerConfError("actor must be a string of 1 to 255 characters")
        if not isinstance(self.at, dt.datetime) or self.at.utcoffset() != dt.timedelta(0):
            raise ServerConfError("at must be a UTC datetime")
        if self.correlation_id is not None and (
            not isinstance(self.correlation_id, str) or len(self.correlation_id) > 64
        ):
            raise ServerConfError("correlation_id must be a string of at most 64 characters")


# -- schema -------------------------------------------------------------------------------


class Base(DeclarativeBase):
    """The store's tables; ``gateway/serverconf/migrations`` creates exactly these."""

    metadata = sa.MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        }
    )


class ChangeCounter(Base):
    """One row; ``value`` moves with every change, ``generation`` is drawn when the store is created."""

    __tablename__ = "change_counter"
    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[str] = mapped_column(sa.String(36))
    value: Mapped[int] = mapped_column(sa.BigInteger)


class ClientRow(Base):
    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.String(1100), unique=True)  # slash form
    connection: Mapped[str] = mapped_column(sa.String(16))
    token_required: Mapped[bool]


class ClientCertificateRow(Base):
    """An information-system TLS certificate registered for a client."""

    __tablename__ = "client_certificates"
    __table_args__ = (sa.UniqueConstraint("client_ref", "fingerprint"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    client_ref: Mapped[int] = mapped_column(sa.ForeignKey("clients.id"))
    pem: Mapped[str] = mapped_column(sa.Text)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))  # SHA-256 of the DER, lower-case hex
    subject: Mapped[str] = mapped_column(sa.Text)
    not_after: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class ServiceRow(Base):
    """A service this server provides; ``service_version`` is "" for an unversioned one."""

    __tablename__ = "services"
    __table_args__ = (sa.UniqueConstraint("provider", "service_code", "service_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[str] = mapped_column(sa.String(1600), unique=True)  # slash form, with version
    provider: Mapped[str] = mapped_column(sa.String(1100))
    service_code: Mapped[str] = mapped_column(sa.String(255))
    service_version: Mapped[str] = mapped_column(sa.String(255))
    protocol: Mapped[str] = mapped_column(sa.String(8))
    base_url: Mapped[str] = mapped_column(sa.String(2048))
    timeout_s: Mapped[float] = mapped_column(sa.Float)
    wsdl_url: Mapped[str | None] = mapped_column(sa.String(2048))
    openapi_url: Mapped[str | None] = mapped_column(sa.String(2048))
    verify_tls: Mapped[bool]


class EndpointRow(Base):
    """A REST endpoint of a service, configured by hand or taken from its OpenAPI document."""

    __tablename__ = "endpoints"
    __table_args__ = (sa.UniqueConstraint("service_ref", "method", "path"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    service_ref: Mapped[int] = mapped_column(sa.ForeignKey("services.id"))
    method: Mapped[str] = mapped_column(sa.String(16))
    path: Mapped[str] = mapped_column(sa.String(1024))
    from_openapi: Mapped[bool]


class GrantRow(Base):
    """``subject`` (typed form) may call ``service_code`` of ``provider``: all of it, or one endpoint."""

    __tablename__ = "access_grants"
    __table_args__ = (
        # NULLs are distinct in a unique constraint, so whole-service rights get an index of their own.
        sa.Index(
            "uq_access_grants_service",
            "provider",
            "service_code",
            "subject",
            unique=True,
            sqlite_where=sa.text("endpoint_ref IS NULL"),
            postgresql_where=sa.text("endpoint_ref IS NULL"),
        ),
        sa.Index(
            "uq_access_grants_endpoint",
            "provider",
            "service_code",
            "subject",
            "endpoint_ref",
            unique=True,
            sqlite_where=sa.text("endpoint_ref IS NOT NULL"),
            postgresql_where=sa.text("endpoint_ref IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(1100))
    service_code: Mapped[str] = mapped_column(sa.String(255))
    subject: Mapped[str] = mapped_column(sa.String(1200))
    endpoint_ref: Mapped[int | None] = mapped_column(sa.ForeignKey("endpoints.id"))


class LocalGroupRow(Base):
    __tablename__ = "local_groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str] = mapped_column(sa.Text)


class LocalGroupMemberRow(Base):
    __tablename__ = "local_group_members"
    __table_args__ = (sa.UniqueConstraint("group_ref", "client_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    group_ref: Mapped[int] = mapped_column(sa.ForeignKey("local_groups.id"))
    client_id: Mapped[str] = mapped_column(sa.String(1100))  # slash form


class AuditTrail(Base):
    """One change: who made it, what and on which target, when, and the state before and after."""

    __tablename__ = "audit_trail"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(sa.String(255))
    operation: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.Text)
    before: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    after: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    correlation_id: Mapped[str | None] = mapped_column(sa.String(64))


# -- helpers --------------------------------------------------------------------------------

_Record = Callable[[str, str, Any, Any], None]


class _Unchanged(Exception):
    """Raised inside a change to roll it back without a refusal (``seed`` with nothing to do)."""


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every one stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _utc_text(value: dt.datetime) -> str:
    return _utc(value).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _refusing() -> Iterator[None]:
    """Validation errors of identifiers, services and endpoints become ServerConfError."""
    try:
        yield
    except ServerConfError:
        raise
    except ValueError as exc:  # IdentifierError and PathRefused are ValueErrors
        raise ServerConfError(str(exc)) from exc


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's statement dump."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_client(client: object) -> ClientId:
    if not isinstance(client, MemberId | SubsystemId):
        raise ServerConfError(f"a client is a member or subsystem identifier, not {client!r}")
    return client


def _check_service_id(service: object) -> ServiceId:
    if not isinstance(service, ServiceId):
        raise ServerConfError(f"a service is a service identifier, not {service!r}")
    return service


def _check_context(context: object) -> AuditContext:
    if not isinstance(context, AuditContext):
        raise ServerConfError("every change needs an AuditContext (who and when)")
    return context


def _openapi_patterns(endpoints: Iterable[EndpointPattern]) -> dict[EndpointPattern, None]:
    """An OpenAPI document's endpoints, checked, without repeats, in order."""
    given = [] if isinstance(endpoints, str | bytes) else list(endpoints)
    if isinstance(endpoints, str | bytes) or len(given) > _MAX_OPENAPI_ENDPOINTS:
        raise ServerConfError(
            f"an OpenAPI document brings a list of at most {_MAX_OPENAPI_ENDPOINTS} endpoints"
        )
    return dict.fromkeys(_pattern(endpoint) for endpoint in given)


def _pattern(endpoint: object) -> EndpointPattern:
    """``endpoint`` checked again by :meth:`EndpointPattern.parse`: it may have been built directly."""
    if not isinstance(endpoint, EndpointPattern):
        raise ServerConfError(f"an endpoint is an EndpointPattern, not {endpoint!r}")
    with _refusing():
        return EndpointPattern.parse(endpoint.method, endpoint.path)


def _subject_text(subject: object) -> str:
    if not isinstance(subject, MemberId | SubsystemId | GlobalGroupId | LocalGroupId):
        raise ServerConfError(
            f"a right is granted to a member, subsystem, global group or local group, not {subject!r}"
        )
    return str(subject)


def _subject(text: str) -> AccessSubject:
    subject = parse_typed(text)
    assert isinstance(subject, MemberId | SubsystemId | GlobalGroupId | LocalGroupId)
    return subject


def _check_group_code(code: object) -> str:
    with _refusing():
        LocalGroupId(code)  # type: ignore[arg-type]  # checked here
    assert isinstance(code, str)
    return code


def _check_grantable(service: ServiceId) -> None:
    if is_reserved_service_code(service.service_code):
        # Metadata services are answered without an access check; a right would mislead.
        raise ServerConfError(
            f"{service.service_code!r} is a metadata service, which every client may call: "
            "it takes no access rights"
        )


def _version(service: ServiceId) -> str:
    return service.service_version or ""


def _certificate(pem: object, at: dt.datetime) -> x509.Certificate:
    if not isinstance(pem, str) or not pem.strip():
        raise ServerConfError("a client certificate is given as PEM text")
    if len(pem) > _MAX_PEM:
        raise ServerConfError(f"the PEM text is longer than {_MAX_PEM} characters")
    if "PRIVATE KEY" in pem:
        # Nothing secret belongs here; the server never needs the information system's key.
        raise ServerConfError("the PEM text holds a private key: give the certificate only")
    try:
        loaded = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (UnicodeEncodeError, ValueError) as exc:
        raise ServerConfError("not a PEM certificate") from exc
    if len(loaded) != 1:
        raise ServerConfError(f"the PEM text must hold exactly one certificate, found {len(loaded)}")
    certificate = loaded[0]
    if certificate.not_valid_after_utc <= at:
        raise ServerConfError(
            f"the certificate {certificate.subject.rfc4514_string()} expired at "
            f"{_utc_text(certificate.not_valid_after_utc)}"
        )
    return certificate


def _certificate_dict(row: ClientCertificateRow) -> dict[str, Any]:
    return {"fingerprint": row.fingerprint, "subject": row.subject, "not_after": _utc_text(row.not_after)}


def _service_entry(row: ServiceRow) -> ServiceEntry:
    provider = SubsystemId.parse_slash(row.provider)
    return ServiceEntry(
        ServiceId(provider, row.service_code, row.service_version or None),
        row.base_url,
        row.timeout_s,
        Protocol(row.protocol),
        row.wsdl_url,
        row.openapi_url,
        row.verify_tls,
    )


def _service_dict(row: ServiceRow) -> dict[str, Any]:
    return {
        "id": row.service_id,
        "protocol": row.protocol,
        "base_url": row.base_url,
        "timeout_s": row.timeout_s,
        "verify_tls": row.verify_tls,
        "wsdl_url": row.wsdl_url,
        "openapi_url": row.openapi_url,
    }


def _endpoint_dict(service: ServiceRow, row: EndpointRow) -> dict[str, Any]:
    return {
        "service": service.service_id,
        "method": row.method,
        "path": row.path,
        "from_openapi": row.from_openapi,
    }


def _grant_dict(row: GrantRow, endpoint: EndpointRow | None) -> dict[str, Any]:
    return {
        "service": f"{row.provider}/{row.service_code}",
        "subject": row.subject,
        "endpoint": None if endpoint is None else {"method": endpoint.method, "path": endpoint.path},
    }


def _grant_target(grant: dict[str, Any]) -> str:
    endpoint = grant["endpoint"]
    where = "" if endpoint is None else f" {endpoint['method']} {endpoint['path']}"
    return f"{grant['service']}{where} {grant['subject']}"


def normalise_url(url: str, base: Path | None = None) -> URL:
    """``url`` parsed, with PostgreSQL on psycopg 3 and a relative SQLite path resolved against ``base``."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ServerConfError(f"not a database URL: {url!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise ServerConfError("the server configuration needs a SQLite file, not an in-memory database")
        if base is not None and not Path(database).is_absolute():
            parsed = parsed.set(database=str(base / database))
    elif parsed.get_backend_name() != "postgresql":
        raise ServerConfError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")
    return parsed


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling would begin lazily, before the first write only,
    # so reads of one snapshot could straddle another process's commit; _sqlite_begin begins
    # every transaction explicitly instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # checked only when asked, per connection
    cursor.execute("PRAGMA journal_mode=WAL")  # the server's poller never blocks a change
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # Changes take the write lock at once: a change that read first and wrote later could
    # otherwise fail half-way when another process wrote in between.
    mode = connection.get_execution_options().get("serverconf_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


# -- the store ------------------------------------------------------------------------------


#: libpq settings for the store's PostgreSQL connections (seconds, and milliseconds for the statement).
_POSTGRESQL_BOUNDS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "options": "-c statement_timeout=30000",
}


class ServerConfStore:
    """The server configuration's database; open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        if engine.dialect.name == "sqlite":
            self._writer: Engine = engine.execution_options(serverconf_begin="IMMEDIATE")
            self._reader: Engine = engine
        else:
            # Changes serialise on the change counter's row; a snapshot reads one point in time.
            self._writer = engine
            self._reader = engine.execution_options(isolation_level="REPEATABLE READ")

    @classmethod
    def open(cls, url: str, *, base: Path | None = None) -> ServerConfStore:
        """Connect to ``url`` and upgrade its schema to the newest revision.

        A SQLite file (and its folder) is created when missing; a relative SQLite path is
        resolved against ``base`` (default: the working directory).
        """
        parsed = normalise_url(url, base)
        if parsed.get_backend_name() == "sqlite":
            assert parsed.database is not None  # checked by normalise_url
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ServerConfError(
                    f"cannot create the folder of {parsed.database}: {exc.strerror}"
                ) from exc
            engine = sa.create_engine(parsed, connect_args={"timeout": 30})  # seconds to wait for a lock
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        elif parsed.get_backend_name() == "postgresql":
            # A database that stops answering must not hold a poll (or a stop) forever: bounded
            # connects, dead peers found by keepalives, statements cut off.  Migrations run
            # before the statement timeout matters (it is per statement, they are short).
            engine = sa.create_engine(parsed, connect_args=_POSTGRESQL_BOUNDS, pool_pre_ping=True)
        else:
            engine = sa.create_engine(parsed)
        store = cls(engine)
        try:
            store._upgrade()
        except SQLAlchemyError as exc:
            engine.dispose()
            raise ServerConfError(f"cannot open the server configuration database: {_reason(exc)}") from exc
        except Exception:
            engine.dispose()
            raise
        return store

    def _at_head(self) -> bool:
        """Whether the schema is at :data:`SCHEMA_HEAD`, read with SQLAlchemy alone.

        Read without the write or migration lock: a database at the head stays there, and
        any other (new, older, another store's) is left to Alembic, which takes the locks.
        """
        with self._reader.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return False
            revisions = connection.scalars(sa.text("SELECT version_num FROM alembic_version")).all()
        return list(revisions) == [SCHEMA_HEAD]

    def _upgrade(self) -> None:
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
        with self._writer.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "head")
            except CommandError as exc:
                # Another store's database (or a newer xweg's): its revision is not one of ours.
                raise ServerConfError(f"not a server configuration database of this version: {exc}") from exc

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> ServerConfStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        """One read-only transaction: every query in it sees the same committed state."""
        try:
            with Session(self._reader, expire_on_commit=False) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise ServerConfError(f"server configuration database error: {_reason(exc)}") from exc

    @contextlib.contextmanager
    def _change(
        self, context: AuditContext, *, configuration: bool = True
    ) -> Iterator[tuple[Session, _Record]]:
        """One transaction that moves the change counter and writes the audit trail.

        ``configuration=False``: only the audit trail is written, and the counter stays,
        so that no server reloads for it.  Rolled back on any error; the audit entries are
        logged once committed.
        """
        _check_context(context)
        entries: list[dict[str, Any]] = []
        try:
            with Session(self._writer, expire_on_commit=False) as session, session.begin():
                # First, so that concurrent changes queue here and each sees the others' results.
                if configuration:
                    session.execute(
                        sa.update(ChangeCounter)
                        .where(ChangeCounter.id == 1)
                        .values(value=ChangeCounter.value + 1)
                    )

                def record(operation: str, target: str, before: Any, after: Any) -> None:
                    entry = {
                        "actor": context.actor,
                        "operation": operation,
                        "target": target,
                        "before": before,
                        "after": after,
                        "correlation_id": context.correlation_id,
                    }
                    session.add(AuditTrail(at=context.at, **entry))
                    entries.append(entry)

                yield session, record
        except IntegrityError as exc:
            # The checks ran first, so a constraint that still trips is a concurrent change
            # that got there first (the same client added twice at once, say).
            raise ServerConfConflict(f"refused by the database: {_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            raise ServerConfError(f"server configuration database error: {_reason(exc)}") from exc
        for entry in entries:
            log.info("serverconf.audit", at=context.at.isoformat(), **entry)

    # -- look-ups inside a transaction --------------------------------------------------------

    @staticmethod
    def _client_row(session: Session, client: ClientId) -> ClientRow:
        row = session.scalar(sa.select(ClientRow).where(ClientRow.client_id == client.slash()))
        if row is None:
            raise ServerConfNotFound(f"{client.slash()} is not a client of this security server")
        return row

    @staticmethod
    def _certificates(session: Session, client_ref: int) -> list[ClientCertificateRow]:
        return list(
            session.scalars(
                sa.select(ClientCertificateRow)
                .where(ClientCertificateRow.client_ref == client_ref)
                .order_by(ClientCertificateRow.id)
            )
        )

    def _client_dict(self, session: Session, row: ClientRow) -> dict[str, Any]:
        return {
            "id": row.client_id,
            "connection": row.connection,
            "token_required": row.token_required,
            "certificates": [_certificate_dict(c) for c in self._certificates(session, row.id)],
        }

    @staticmethod
    def _service_row(session: Session, service: ServiceId) -> ServiceRow:
        """The service with exactly this identifier, version included."""
        row = session.scalar(sa.select(ServiceRow).where(ServiceRow.service_id == service.slash()))
        if row is None:
            others = session.scalars(
                sa.select(ServiceRow.service_id)
                .where(
                    ServiceRow.provider == service.provider.slash(),
                    ServiceRow.service_code == service.service_code,
                )
                .order_by(ServiceRow.id)
            ).all()
            hint = f" (configured: {', '.join(others)})" if others else ""
            raise ServerConfNotFound(f"service {service.slash()} is not configured here{hint}")
        return row

    @staticmethod
    def _service_rows(session: Session, service: ServiceId) -> list[ServiceRow]:
        """The services a right on ``service`` is about: that version, or every version of its code."""
        query = sa.select(ServiceRow).where(
            ServiceRow.provider == service.provider.slash(), ServiceRow.service_code == service.service_code
        )
        if service.service_version is not None:
            query = query.where(ServiceRow.service_version == service.service_version)
        rows = list(session.scalars(query.order_by(ServiceRow.id)))
        if not rows:
            raise ServerConfNotFound(f"service {service.slash()} is not configured here")
        return rows

    @staticmethod
    def _endpoint_row(
        session: Session, services: Sequence[ServiceRow], endpoint: EndpointPattern
    ) -> EndpointRow:
        row = session.scalar(
            sa.select(EndpointRow)
            .where(
                EndpointRow.service_ref.in_([s.id for s in services]),
                EndpointRow.method == endpoint.method,
                EndpointRow.path == endpoint.path,
            )
            .order_by(EndpointRow.id)
            .limit(1)
        )
        if row is None:
            names = ", ".join(s.service_id for s in services)
            raise ServerConfNotFound(f"{endpoint} is not an endpoint of {names}")
        return row

    @staticmethod
    def _group_row(session: Session, code: str) -> LocalGroupRow:
        row = session.scalar(sa.select(LocalGroupRow).where(LocalGroupRow.code == code))
        if row is None:
            raise ServerConfNotFound(f"local group {code} does not exist")
        return row

    def _group_dict(self, session: Session, row: LocalGroupRow) -> dict[str, Any]:
        members = session.scalars(
            sa.select(LocalGroupMemberRow.client_id)
            .where(LocalGroupMemberRow.group_ref == row.id)
            .order_by(LocalGroupMemberRow.id)
        )
        return {"code": row.code, "description": row.description, "members": list(members)}

    @staticmethod
    def _endpoint_of(session: Session, row: GrantRow) -> EndpointRow | None:
        return None if row.endpoint_ref is None else session.get(EndpointRow, row.endpoint_ref)

    def _drop_grants(self, session: Session, record: _Record, where: sa.ColumnElement[bool]) -> None:
        """Remove the rights ``where`` selects, each with an audit entry."""
        for row in list(session.scalars(sa.select(GrantRow).where(where).order_by(GrantRow.id))):
            grant = _grant_dict(row, self._endpoint_of(session, row))
            session.delete(row)
            record("revoke", _grant_target(grant), grant, None)
        session.flush()

    def _drop_endpoint(
        self, session: Session, record: _Record, service: ServiceRow, row: EndpointRow
    ) -> None:
        """Remove an endpoint and the rights on it, each with an audit entry."""
        self._drop_grants(session, record, GrantRow.endpoint_ref == row.id)
        endpoint = _endpoint_dict(service, row)
        session.delete(row)
        session.flush()
        record("remove_endpoint", f"{service.service_id} {row.method} {row.path}", endpoint, None)

    @staticmethod
    def _marker(session: Session) -> str:
        counter = session.get(ChangeCounter, 1)
        if counter is None:
            raise ServerConfError("the server configuration database has no change counter")
        return f"{counter.value}@{counter.generation}"

    # -- seeding ------------------------------------------------------------------------------

    def seed(self, snapshot: ServerConfSnapshot, context: AuditContext) -> bool:
        """Import ``snapshot`` (the configuration file's clients, services and rights) if the
        store has never held anything; True if it did.

        The same rules hold as for changes made one at a time, except that nothing is asked
        of the global configuration (a server starting for the first time has none yet).
        Every item gets its audit entry, as if added by hand.
        """
        if not isinstance(snapshot, ServerConfSnapshot):
            raise ServerConfError("seed takes a ServerConfSnapshot")
        if not (snapshot.clients or snapshot.services or snapshot.grants or snapshot.groups):
            return False
        try:
            with self._change(context) as (session, record):
                counter = session.get(ChangeCounter, 1)
                if counter is None or counter.value != 1:  # moved by this change only: never held anything
                    raise _Unchanged
                self._import(session, record, snapshot)
        except _Unchanged:
            return False
        return True

    def _import(self, session: Session, record: _Record, snapshot: ServerConfSnapshot) -> None:
        for client in snapshot.clients.values():
            _check_client(client.id)
            row = ClientRow(
                client_id=client.id.slash(),
                connection=ConnectionType(client.connection).value,
                token_required=bool(client.token_required),
            )
            session.add(row)
            session.flush()
            record("add_client", row.client_id, None, self._client_dict(session, row))
        for service in snapshot.services:
            self._insert_service(session, record, service, "the configuration file's ")
        for (provider, code), endpoints in snapshot.endpoints.items():
            services = self._service_rows(session, ServiceId(provider, code))
            for endpoint in endpoints:
                self._insert_endpoint(session, record, services[0], _pattern(endpoint), from_openapi=False)
        for group in snapshot.groups.values():
            self._insert_group(session, record, group.code, group.description)
            group_row = self._group_row(session, group.code)
            for member in sorted(group.members):
                self._insert_member(session, record, group_row, _check_client(member))
        seen: set[AccessGrant] = set()
        for grant in snapshot.grants:
            if grant in seen:  # a subject listed twice for one service means it once
                continue
            seen.add(grant)
            only = None if grant.endpoint is None else _pattern(grant.endpoint)
            self._insert_grant(
                session, record, grant.provider.service(grant.service_code), grant.subject, only
            )

    # -- reading ------------------------------------------------------------------------------

    def change_marker(self) -> str:
        """A text that differs after every committed change, made by whichever process."""
        with self._read() as session:
            return self._marker(session)

    def snapshot(self) -> ServerConfSnapshot:
        """Everything, as one consistent :class:`ServerConfSnapshot`; its version is the change marker."""
        with self._read() as session:
            version = self._marker(session)
            certificates: dict[int, list[tuple[str, str]]] = defaultdict(list)
            for client_ref, print_, pem in session.execute(
                sa.select(
                    ClientCertificateRow.client_ref,
                    ClientCertificateRow.fingerprint,
                    ClientCertificateRow.pem,
                ).order_by(ClientCertificateRow.id)
            ):
                certificates[client_ref].append((print_, pem))
            clients: dict[ClientId, ClientEntry] = {}
            for row in session.scalars(sa.select(ClientRow).order_by(ClientRow.id)):
                client = parse_client_slash(row.client_id)
                clients[client] = ClientEntry(
                    client,
                    ConnectionType(row.connection),
                    frozenset(print_ for print_, _ in certificates[row.id]),
                    row.token_required,
                    tuple(pem for _, pem in certificates[row.id]),
                )
            service_rows = list(session.scalars(sa.select(ServiceRow).order_by(ServiceRow.id)))
            services = tuple(_service_entry(row) for row in service_rows)
            by_ref = {row.id: row for row in service_rows}
            endpoints: dict[tuple[SubsystemId, str], dict[EndpointPattern, None]] = defaultdict(dict)
            patterns: dict[int, EndpointPattern] = {}
            for endpoint in session.scalars(sa.select(EndpointRow).order_by(EndpointRow.id)):
                service = by_ref[endpoint.service_ref]
                pattern = EndpointPattern(endpoint.method, endpoint.path)  # stored as parse() returned it
                patterns[endpoint.id] = pattern
                endpoints[(SubsystemId.parse_slash(service.provider), service.service_code)][pattern] = None
            grants = tuple(
                AccessGrant(
                    SubsystemId.parse_slash(row.provider),
                    row.service_code,
                    _subject(row.subject),
                    None if row.endpoint_ref is None else patterns[row.endpoint_ref],
                )
                for row in session.scalars(sa.select(GrantRow).order_by(GrantRow.id))
            )
            members: dict[int, set[ClientId]] = defaultdict(set)
            for group_ref, client_id in session.execute(
                sa.select(LocalGroupMemberRow.group_ref, LocalGroupMemberRow.client_id)
            ):
                members[group_ref].add(parse_client_slash(client_id))
            groups = {
                row.code: LocalGroup(row.code, row.description, frozenset(members[row.id]))
                for row in session.scalars(sa.select(LocalGroupRow).order_by(LocalGroupRow.id))
            }
        return ServerConfSnapshot(
            clients=clients,
            services=services,
            endpoints={key: tuple(found) for key, found in endpoints.items()},
            grants=grants,
            groups=groups,
            version=version,
        )

    def list_clients(self) -> list[dict[str, Any]]:
        """Every client with its connection type, token requirement and certificates."""
        with self._read() as session:
            return [
                self._client_dict(session, row)
                for row in session.scalars(sa.select(ClientRow).order_by(ClientRow.id))
            ]

    def list_services(self) -> list[dict[str, Any]]:
        with self._read() as session:
            return [
                _service_dict(row) for row in session.scalars(sa.select(ServiceRow).order_by(ServiceRow.id))
            ]

    def list_endpoints(self, service: ServiceId | None = None) -> list[dict[str, Any]]:
        """The endpoints of ``service`` (exactly that version), or of every service."""
        with self._read() as session:
            query = sa.select(EndpointRow, ServiceRow).join(
                ServiceRow, EndpointRow.service_ref == ServiceRow.id
            )
            if service is not None:
                row = self._service_row(session, _check_service_id(service))
                query = query.where(ServiceRow.id == row.id)
            return [
                _endpoint_dict(service_row, endpoint)
                for endpoint, service_row in session.execute(query.order_by(ServiceRow.id, EndpointRow.id))
            ]

    def list_grants(self, service: ServiceId | None = None) -> list[dict[str, Any]]:
        """The access rights on ``service``'s code (any version), or all of them."""
        with self._read() as session:
            query = sa.select(GrantRow)
            if service is not None:
                _check_service_id(service)
                query = query.where(
                    GrantRow.provider == service.provider.slash(),
                    GrantRow.service_code == service.service_code,
                )
            return [
                _grant_dict(row, self._endpoint_of(session, row))
                for row in session.scalars(query.order_by(GrantRow.id))
            ]

    def list_groups(self) -> list[dict[str, Any]]:
        with self._read() as session:
            return [
                self._group_dict(session, row)
                for row in session.scalars(sa.select(LocalGroupRow).order_by(LocalGroupRow.id))
            ]

    def record_action(
        self, operation: str, target: str, details: dict[str, Any], context: AuditContext
    ) -> None:
        """An audit-trail entry for what an administrator did through this server elsewhere
        (asked the registry to register a client, announced maintenance mode): who asked,
        and what was asked and answered.  The configuration itself does not change."""
        if not isinstance(operation, str) or not operation or len(operation) > 64:
            raise ServerConfError("an operation is 1 to 64 characters")
        with self._change(context, configuration=False) as (_, record):
            record(operation, target, None, details)

    def audit_trail(self, *, after_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Audit-trail entries with an id above ``after_id``, oldest first, at most ``limit``."""
        if isinstance(after_id, bool) or not isinstance(after_id, int) or after_id < 0:
            raise ServerConfError("after_id must be a non-negative integer")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_AUDIT_PAGE:
            raise ServerConfError(f"limit must be 1 to {_MAX_AUDIT_PAGE}")
        with self._read() as session:
            rows = session.scalars(
                sa.select(AuditTrail).where(AuditTrail.id > after_id).order_by(AuditTrail.id).limit(limit)
            )
            return [
                {
                    "id": row.id,
                    "at": _utc(row.at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "actor": row.actor,
                    "operation": row.operation,
                    "target": row.target,
                    "before": row.before,
                    "after": row.after,
                    "correlation_id": row.correlation_id,
                }
                for row in rows
            ]

    # -- clients ------------------------------------------------------------------------------

    def add_client(
        self,
        client: ClientId,
        context: AuditContext,
        *,
        connection: ConnectionType = ConnectionType.HTTPS_MTLS,
        token_required: bool = False,
        known_client: KnownClient,
    ) -> dict[str, Any]:
        """Add a client to this server: a member of the global configuration, or a subsystem of one.

        As in X-Road, a subsystem may be added before it is registered: its registration
        (``POST /clients/{client}/registration``, ``xweg gateway register client``) comes
        after, and until the registry approves it, requests for it are refused as not
        hosted here.  Its member must be known already.
        """
        _check_client(client)
        if not isinstance(connection, ConnectionType):
            raise ServerConfError(f"connection must be a ConnectionType, not {connection!r}")
        if not isinstance(token_required, bool):
            raise ServerConfError("token_required must be true or false")
        if not known_client(client) and not known_client(client.member):
            raise ServerConfNotFound(f"member {client.member.slash()} is not in the global configuration")
        with self._change(context) as (session, record):
            if (
                session.scalar(sa.select(ClientRow.id).where(ClientRow.client_id == client.slash()))
                is not None
            ):
                raise ServerConfConflict(f"{client.slash()} is already a client of this security server")
            row = ClientRow(
                client_id=client.slash(), connection=connection.value, token_required=token_required
            )
            session.add(row)
            session.flush()
            after = self._client_dict(session, row)
            record("add_client", row.client_id, None, after)
        return after

    def update_client(
        self,
        client: ClientId,
        context: AuditContext,
        *,
        connection: ConnectionType | None = None,
        token_required: bool | None = None,
    ) -> dict[str, Any]:
        """Change how a client's information systems must connect, or whether they need a token."""
        _check_client(client)
        if connection is None and token_required is None:
            raise ServerConfError("nothing to change: give a connection type or whether a token is required")
        if connection is not None and not isinstance(connection, ConnectionType):
            raise ServerConfError(f"connection must be a ConnectionType, not {connection!r}")
        if token_required is not None and not isinstance(token_required, bool):
            raise ServerConfError("token_required must be true or false")
        with self._change(context) as (session, record):
            row = self._client_row(session, client)
            before = self._client_dict(session, row)
            if connection is not None:
                row.connection = connection.value
            if token_required is not None:
                row.token_required = token_required
            session.flush()
            after = self._client_dict(session, row)
            record("update_client", row.client_id, before, after)
        return after

    def remove_client(self, client: ClientId, context: AuditContext) -> None:
        """Remove a client and its certificates; refused while anything still refers to it."""
        _check_client(client)
        with self._change(context) as (session, record):
            row = self._client_row(session, client)
            uses: list[str] = []
            provided = list(
                session.scalars(
                    sa.select(ServiceRow.service_id)
                    .where(ServiceRow.provider == client.slash())
                    .order_by(ServiceRow.id)
                )
            )
            if provided:
                uses.append(f"it provides {', '.join(provided)}")
            granted = sorted(
                {
                    f"{provider}/{code}"
                    for provider, code in session.execute(
                        sa.select(GrantRow.provider, GrantRow.service_code).where(
                            GrantRow.subject == str(client)
                        )
                    )
                }
            )
            if granted:
                uses.append(f"it is granted access to {', '.join(granted)}")
            groups = list(
                session.scalars(
                    sa.select(LocalGroupRow.code)
                    .join(LocalGroupMemberRow, LocalGroupMemberRow.group_ref == LocalGroupRow.id)
                    .where(LocalGroupMemberRow.client_id == client.slash())
                    .order_by(LocalGroupRow.code)
                )
            )
            if groups:
                uses.append(f"it is a member of local group(s) {', '.join(groups)}")
            if uses:
                raise ServerConfConflict(f"client {client.slash()} is still in use: {'; '.join(uses)}")
            before = self._client_dict(session, row)
            for certificate in self._certificates(session, row.id):
                session.delete(certificate)
            session.flush()
            session.delete(row)
            record("remove_client", row.client_id, before, None)

    def add_client_certificate(self, client: ClientId, pem: str, context: AuditContext) -> dict[str, Any]:
        """Register an information system's TLS certificate for ``client``; returns its summary."""
        _check_client(client)
        _check_context(context)
        certificate = _certificate(pem, context.at)
        print_ = fingerprint(certificate)
        with self._change(context) as (session, record):
            row = self._client_row(session, client)
            duplicate = sa.select(ClientCertificateRow.id).where(
                ClientCertificateRow.client_ref == row.id, ClientCertificateRow.fingerprint == print_
            )
            if session.scalar(duplicate) is not None:
                raise ServerConfConflict(f"certificate {print_} is already registered for {row.client_id}")
            added = ClientCertificateRow(
                client_ref=row.id,
                pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
                fingerprint=print_,
                subject=certificate.subject.rfc4514_string(),
                not_after=certificate.not_valid_after_utc,
            )
            session.add(added)
            session.flush()
            summary = _certificate_dict(added)
            record("add_client_certificate", row.client_id, None, summary)
        return summary

    def remove_client_certificate(self, client: ClientId, fingerprint: str, context: AuditContext) -> None:
        """Unregister a certificate, named by its SHA-256 fingerprint (hex, colons allowed)."""
        _check_client(client)
        text = fingerprint.replace(":", "").lower() if isinstance(fingerprint, str) else ""
        if not _FINGERPRINT.fullmatch(text):
            raise ServerConfError("a certificate fingerprint is the SHA-256 of its DER in hex (64 digits)")
        with self._change(context) as (session, record):
            row = self._client_row(session, client)
            certificate = session.scalar(
                sa.select(ClientCertificateRow).where(
                    ClientCertificateRow.client_ref == row.id, ClientCertificateRow.fingerprint == text
                )
            )
            if certificate is None:
                raise ServerConfNotFound(f"no certificate {text} is registered for {row.client_id}")
            before = _certificate_dict(certificate)
            session.delete(certificate)
            record("remove_client_certificate", row.client_id, before, None)

    # -- services -----------------------------------------------------------------------------

    def _insert_service(
        self, session: Session, record: _Record, service: ServiceEntry, whose: str = ""
    ) -> ServiceRow:
        provider = service.id.provider.slash()
        if session.scalar(sa.select(ClientRow.id).where(ClientRow.client_id == provider)) is None:
            raise ServerConfNotFound(
                f"{whose}service {service.id.slash()}: its provider {provider} is not a client of "
                "this security server"
            )
        exists = sa.select(ServiceRow.id).where(
            ServiceRow.provider == provider,
            ServiceRow.service_code == service.id.service_code,
            ServiceRow.service_version == _version(service.id),
        )
        if session.scalar(exists) is not None:
            raise ServerConfConflict(f"{whose}service {service.id.slash()} is already configured")
        row = ServiceRow(
            service_id=service.id.slash(),
            provider=provider,
            service_code=service.id.service_code,
            service_version=_version(service.id),
            protocol=service.protocol.value,
            base_url=service.base_url,
            timeout_s=float(service.timeout_s),
            wsdl_url=service.wsdl_url,
            openapi_url=service.openapi_url,
            verify_tls=service.verify_tls,
        )
        session.add(row)
        session.flush()
        record("add_service", row.service_id, None, _service_dict(row))
        return row

    def add_service(
        self,
        service: ServiceEntry,
        context: AuditContext,
        *,
        openapi_endpoints: Sequence[EndpointPattern] | None = None,
    ) -> dict[str, Any]:
        """Add a service of one of this server's client subsystems; with ``openapi_endpoints``
        (a REST service's, read from its OpenAPI document) in the same transaction."""
        if not isinstance(service, ServiceEntry):
            raise ServerConfError(f"a service is a ServiceEntry, not {service!r}")
        wanted = None if openapi_endpoints is None else _openapi_patterns(openapi_endpoints)
        with self._change(context) as (session, record):
            row = self._insert_service(session, record, service)
            if wanted is not None:
                self._replace_openapi(session, record, self._rest_service_row(session, service.id), wanted)
            return _service_dict(row)

    def update_service(
        self,
        service: ServiceId,
        context: AuditContext,
        *,
        openapi_endpoints: Sequence[EndpointPattern] | None = None,
        **changes: Any,
    ) -> dict[str, Any]:
        """Change a service's ``base_url``, ``timeout_s``, ``verify_tls``, ``wsdl_url`` or ``openapi_url``.

        The result is checked as a whole, as :class:`ServiceEntry` checks a new service.
        ``openapi_endpoints`` (from a new OpenAPI document) replace the document's endpoints
        in the same transaction, as :meth:`replace_openapi_endpoints` does.
        """
        wanted = None if openapi_endpoints is None else _openapi_patterns(openapi_endpoints)
        _check_service_id(service)
        unknown = sorted(set(changes) - _UPDATABLE)
        if unknown:
            raise ServerConfError(
                f"cannot change {', '.join(unknown)} of a service; "
                f"what can change: {', '.join(sorted(_UPDATABLE))}"
            )
        if not changes:
            raise ServerConfError(f"nothing to change: give one of {', '.join(sorted(_UPDATABLE))}")
        with self._change(context) as (session, record):
            row = self._service_row(session, service)
            before = _service_dict(row)
            with _refusing():
                updated = dataclasses.replace(_service_entry(row), **changes)
            row.base_url = updated.base_url
            row.timeout_s = float(updated.timeout_s)
            row.verify_tls = updated.verify_tls
            row.wsdl_url = updated.wsdl_url
            row.openapi_url = updated.openapi_url
            session.flush()
            after = _service_dict(row)
            record("update_service", row.service_id, before, after)
            if wanted is not None:
                self._replace_openapi(session, record, self._rest_service_row(session, service), wanted)
        return after

    def remove_service(self, service: ServiceId, context: AuditContext) -> None:
        """Remove a service (exactly that version) with its endpoints and the rights on them.

        Rights on the whole service code go too unless another version of it remains.
        """
        _check_service_id(service)
        with self._change(context) as (session, record):
            row = self._service_row(session, service)
            for endpoint in list(
                session.scalars(
                    sa.select(EndpointRow).where(EndpointRow.service_ref == row.id).order_by(EndpointRow.id)
                )
            ):
                self._drop_endpoint(session, record, row, endpoint)
            others = session.scalar(
                sa.select(sa.func.count())
                .select_from(ServiceRow)
                .where(
                    ServiceRow.provider == row.provider,
                    ServiceRow.service_code == row.service_code,
                    ServiceRow.id != row.id,
                )
            )
            if not others:
                self._drop_grants(
                    session,
                    record,
                    sa.and_(GrantRow.provider == row.provider, GrantRow.service_code == row.service_code),
                )
            before = _service_dict(row)
            session.delete(row)
            record("remove_service", row.service_id, before, None)

    # -- endpoints ----------------------------------------------------------------------------

    def _rest_service_row(self, session: Session, service: ServiceId) -> ServiceRow:
        row = self._service_row(session, service)
        if row.protocol != Protocol.REST.value:
            raise ServerConfError(
                f"service {row.service_id} is a {row.protocol.upper()} service: endpoints are for REST"
            )
        return row

    def _insert_endpoint(
        self,
        session: Session,
        record: _Record,
        service: ServiceRow,
        endpoint: EndpointPattern,
        *,
        from_openapi: bool,
    ) -> EndpointRow:
        if service.protocol != Protocol.REST.value:
            raise ServerConfError(
                f"service {service.service_id} is a {service.protocol.upper()} service: "
                "endpoints are for REST"
            )
        existing = session.scalar(
            sa.select(EndpointRow).where(
                EndpointRow.service_ref == service.id,
                EndpointRow.method == endpoint.method,
                EndpointRow.path == endpoint.path,
            )
        )
        if existing is not None:
            source = "from its OpenAPI document" if existing.from_openapi else "configured by hand"
            raise ServerConfConflict(f"{endpoint} is already an endpoint of {service.service_id} ({source})")
        row = EndpointRow(
            service_ref=service.id, method=endpoint.method, path=endpoint.path, from_openapi=from_openapi
        )
        session.add(row)
        session.flush()
        record("add_endpoint", f"{service.service_id} {endpoint}", None, _endpoint_dict(service, row))
        return row

    def add_endpoint(
        self, service: ServiceId, endpoint: EndpointPattern, context: AuditContext
    ) -> dict[str, Any]:
        """Add an endpoint to a REST service (exactly that version), by hand."""
        _check_service_id(service)
        pattern = _pattern(endpoint)
        with self._change(context) as (session, record):
            row = self._rest_service_row(session, service)
            added = self._insert_endpoint(session, record, row, pattern, from_openapi=False)
            return _endpoint_dict(row, added)

    def remove_endpoint(self, service: ServiceId, endpoint: EndpointPattern, context: AuditContext) -> None:
        """Remove an endpoint and the rights granted on it."""
        _check_service_id(service)
        pattern = _pattern(endpoint)
        with self._change(context) as (session, record):
            row = self._service_row(session, service)
            found = self._endpoint_row(session, [row], pattern)
            self._drop_endpoint(session, record, row, found)

    def replace_openapi_endpoints(
        self, service: ServiceId, endpoints: Sequence[EndpointPattern], context: AuditContext
    ) -> list[dict[str, Any]]:
        """Make ``endpoints`` the ones taken from the service's OpenAPI document; returns all its endpoints.

        Endpoints from the document that are still there keep their rights; those gone
        leave with the rights on them; an endpoint also configured by hand stays as it is.
        """
        _check_service_id(service)
        wanted = _openapi_patterns(endpoints)
        with self._change(context) as (session, record):
            return self._replace_openapi(session, record, self._rest_service_row(session, service), wanted)

    def _replace_openapi(
        self, session: Session, record: _Record, row: ServiceRow, wanted: dict[EndpointPattern, None]
    ) -> list[dict[str, Any]]:
        """Inside a transaction: ``wanted`` become the endpoints of ``row``'s OpenAPI document."""
        current = list(
            session.scalars(
                sa.select(EndpointRow).where(EndpointRow.service_ref == row.id).order_by(EndpointRow.id)
            )
        )
        before = [str(EndpointPattern(e.method, e.path)) for e in current if e.from_openapi]
        present = {EndpointPattern(e.method, e.path) for e in current}
        for endpoint in current:
            if endpoint.from_openapi and EndpointPattern(endpoint.method, endpoint.path) not in wanted:
                self._drop_endpoint(session, record, row, endpoint)
        for pattern in wanted:
            if pattern not in present:
                self._insert_endpoint(session, record, row, pattern, from_openapi=True)
        after = [
            _endpoint_dict(row, e)
            for e in session.scalars(
                sa.select(EndpointRow).where(EndpointRow.service_ref == row.id).order_by(EndpointRow.id)
            )
        ]
        record(
            "replace_openapi_endpoints",
            row.service_id,
            before,
            [f"{e['method']} {e['path']}" for e in after if e["from_openapi"]],
        )
        return after

    # -- access rights ------------------------------------------------------------------------

    def _insert_grant(
        self,
        session: Session,
        record: _Record,
        service: ServiceId,
        subject: AccessSubject,
        endpoint: EndpointPattern | None,
    ) -> dict[str, Any]:
        _check_grantable(service)
        subject_text = _subject_text(subject)
        rows = self._service_rows(session, service)
        if isinstance(subject, LocalGroupId):
            self._group_row(session, subject.group_code)
        found = None if endpoint is None else self._endpoint_row(session, rows, endpoint)
        provider = service.provider.slash()
        duplicate = sa.select(GrantRow.id).where(
            GrantRow.provider == provider,
            GrantRow.service_code == service.service_code,
            GrantRow.subject == subject_text,
            GrantRow.endpoint_ref.is_(None) if found is None else GrantRow.endpoint_ref == found.id,
        )
        where = "the whole service" if endpoint is None else str(endpoint)
        if session.scalar(duplicate) is not None:
            raise ServerConfConflict(
                f"{subject_text} is already granted {where} of {provider}/{service.service_code}"
            )
        row = GrantRow(
            provider=provider,
            service_code=service.service_code,
            subject=subject_text,
            endpoint_ref=None if found is None else found.id,
        )
        session.add(row)
        session.flush()
        grant = _grant_dict(row, found)
        record("grant", _grant_target(grant), None, grant)
        return grant

    def grant(
        self,
        service: ServiceId,
        subject: AccessSubject,
        context: AuditContext,
        *,
        endpoint: EndpointPattern | None = None,
        known_client: KnownClient,
        known_global_group: KnownGlobalGroup,
    ) -> dict[str, Any]:
        """Allow ``subject`` to call ``service``'s code (any version): all of it, or one endpoint.

        The service (and the endpoint) must be configured here; a member or subsystem and
        a global group must be in the global configuration, a local group must exist here.
        """
        _check_service_id(service)
        _check_grantable(service)
        _subject_text(subject)
        pattern = None if endpoint is None else _pattern(endpoint)
        if isinstance(subject, GlobalGroupId):
            if not known_global_group(subject):
                raise ServerConfNotFound(f"global group {subject.slash()} is not in the global configuration")
        elif isinstance(subject, MemberId | SubsystemId) and not known_client(subject):
            raise ServerConfNotFound(
                f"{subject.slash()} is not a member or subsystem in the global configuration"
            )
        with self._change(context) as (session, record):
            return self._insert_grant(session, record, service, subject, pattern)

    def revoke(
        self,
        service: ServiceId,
        subject: AccessSubject,
        context: AuditContext,
        *,
        endpoint: EndpointPattern | None = None,
    ) -> None:
        """Withdraw a right granted with :meth:`grant`."""
        _check_service_id(service)
        subject_text = _subject_text(subject)
        pattern = None if endpoint is None else _pattern(endpoint)
        with self._change(context) as (session, record):
            query = sa.select(GrantRow).where(
                GrantRow.provider == service.provider.slash(),
                GrantRow.service_code == service.service_code,
                GrantRow.subject == subject_text,
            )
            if pattern is None:
                query = query.where(GrantRow.endpoint_ref.is_(None))
            else:
                query = query.join(EndpointRow, GrantRow.endpoint_ref == EndpointRow.id).where(
                    EndpointRow.method == pattern.method, EndpointRow.path == pattern.path
                )
            row = session.scalar(query.order_by(GrantRow.id).limit(1))
            if row is None:
                where = "the whole service" if pattern is None else str(pattern)
                raise ServerConfNotFound(
                    f"{subject_text} has no right on {where} of "
                    f"{service.provider.slash()}/{service.service_code}"
                )
            grant = _grant_dict(row, self._endpoint_of(session, row))
            session.delete(row)
            record("revoke", _grant_target(grant), grant, None)

    # -- local groups -------------------------------------------------------------------------

    def _insert_group(self, session: Session, record: _Record, code: str, description: str) -> dict[str, Any]:
        _check_group_code(code)
        if not isinstance(description, str) or len(description) > _MAX_TEXT:
            raise ServerConfError(f"a description is a string of at most {_MAX_TEXT} characters")
        if session.scalar(sa.select(LocalGroupRow.id).where(LocalGroupRow.code == code)) is not None:
            raise ServerConfConflict(f"local group {code} already exists")
        row = LocalGroupRow(code=code, description=description)
        session.add(row)
        session.flush()
        group = self._group_dict(session, row)
        record("add_group", code, None, group)
        return group

    def _insert_member(
        self, session: Session, record: _Record, group: LocalGroupRow, client: ClientId
    ) -> None:
        exists = sa.select(LocalGroupMemberRow.id).where(
            LocalGroupMemberRow.group_ref == group.id, LocalGroupMemberRow.client_id == client.slash()
        )
        if session.scalar(exists) is not None:
            raise ServerConfConflict(f"{client.slash()} is already a member of local group {group.code}")
        session.add(LocalGroupMemberRow(group_ref=group.id, client_id=client.slash()))
        session.flush()
        record("add_group_member", group.code, None, {"group": group.code, "client": client.slash()})

    def add_group(self, code: str, context: AuditContext, *, description: str = "") -> dict[str, Any]:
        """Create a local group (no members yet)."""
        with self._change(context) as (session, record):
            return self._insert_group(session, record, code, description)

    def remove_group(self, code: str, context: AuditContext) -> None:
        """Remove a local group and its memberships; refused while a right is granted to it."""
        _check_group_code(code)
        with self._change(context) as (session, record):
            row = self._group_row(session, code)
            granted = sorted(
                {
                    f"{provider}/{service_code}"
                    for provider, service_code in session.execute(
                        sa.select(GrantRow.provider, GrantRow.service_code).where(
                            GrantRow.subject == str(LocalGroupId(code))
                        )
                    )
                }
            )
            if granted:
                raise ServerConfConflict(
                    f"local group {code} is still granted access to {', '.join(granted)}: revoke that first"
                )
            before = self._group_dict(session, row)
            for member in list(
                session.scalars(sa.select(LocalGroupMemberRow).where(LocalGroupMemberRow.group_ref == row.id))
            ):
                session.delete(member)
            session.flush()
            session.delete(row)
            record("remove_group", code, before, None)

    def add_group_member(
        self, code: str, client: ClientId, context: AuditContext, *, known_client: KnownClient
    ) -> dict[str, Any]:
        """Add a member or subsystem of the global configuration to a local group; returns the group."""
        _check_group_code(code)
        _check_client(client)
        if not known_client(client):
            raise ServerConfNotFound(
                f"{client.slash()} is not a member or subsystem in the global configuration"
            )
        with self._change(context) as (session, record):
            row = self._group_row(session, code)
            self._insert_member(session, record, row, client)
            return self._group_dict(session, row)

    def remove_group_member(self, code: str, client: ClientId, context: AuditContext) -> None:
        _check_group_code(code)
        _check_client(client)
        with self._change(context) as (session, record):
            row = self._group_row(session, code)
            member = session.scalar(
                sa.select(LocalGroupMemberRow).where(
                    LocalGroupMemberRow.group_ref == row.id, LocalGroupMemberRow.client_id == client.slash()
                )
            )
            if member is None:
                raise ServerConfNotFound(f"{client.slash()} is not a member of local group {code}")
            session.delete(member)
            record("remove_group_member", code, {"group": code, "client": client.slash()}, None)
