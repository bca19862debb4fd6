"""The registry's persistent store: members, servers, groups, CAs, TSAs and the service catalogue.

One SQLAlchemy 2 schema, created and upgraded by Alembic (``registry/migrations``), on a
SQLite file by default or on PostgreSQL by URL.  Every public change is one transaction:
input is validated first (identifiers with :mod:`core.identifiers`, records with the
constructors of :mod:`trust.globalconf`, auth certificates with the same rule as the
federation file), and a database constraint that still trips turns into a
:class:`RegistryConflict`, with nothing written.  Refusals are typed:
:class:`RegistryConflict` for a duplicate or a state that does not allow the change,
:class:`RegistryNotFound` for a reference to something the registry does not hold, and
their base :class:`RegistryError` for anything else.

:meth:`RegistryStore.definition` rebuilds a :class:`registry.federation.FederationDefinition`
from the rows, so publication (:func:`registry.publisher.build_global_conf`) does not care
whether the federation came from a file or from here.

Every change also writes one row of the **audit trail** (who, what, which target, when,
before and after as JSON) in the same transaction, and, once committed, the same entry
as a structlog line ``registry.audit``; who and when come in an :class:`AuditContext`
(the management API passes the token's subject).  Registration requests and the
management API are left to other modules.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import sqlalchemy as sa
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import event
from sqlalchemy.engine import URL, CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from core.identifiers import (
    ClientId,
    GlobalGroupId,
    MemberId,
    SecurityServerId,
    SubsystemId,
    check_part,
    parse_client_slash,
)
from core.metadata import is_reserved_service_code
from registry.federation import FederationDefinition, _issued_by
from trust.ca import server_id_from_auth_certificate
from trust.certificates import describe, fingerprint
from trust.errors import TrustError
from trust.globalconf import (
    DEFAULT_OCSP_FRESHNESS_S,
    ApprovedCA,
    ApprovedTSA,
    GlobalGroupInfo,
    MemberInfo,
    SecurityServerInfo,
    ServiceInfo,
)
from trust.maintenance import VerifiedMaintenanceRequest
from trust.registration import RegistrationKind, RegistrationRequest, VerifiedRegistration

__all__ = [
    "AuditContext",
    "AuditEntry",
    "CertificateNotRegistered",
    "RegistryConflict",
    "RegistryError",
    "RegistryNotFound",
    "RegistryStore",
    "RegistrationEntry",
    "RequestReplayed",
    "REQUEST_STATES",
    "UnknownServer",
    "ServiceEntry",
    "approved_ca_summary",
    "approved_tsa_summary",
    "PROTOCOLS",
    "Base",
    "normalise_url",
]

#: The protocols a catalogued service speaks.
PROTOCOLS = ("REST", "SOAP")

_AUTHORITY = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9_-]{0,31}):(?P<key>[A-Za-z0-9._-]{1,64})")
_AREA = re.compile(r"[0-9]{2,12}")  # a municipality (or district, state) key, e.g. 05774032
_MAX_TEXT = 4096  # characters in names and descriptions
_MAX_AUTHORITIES = 256  # authority identifiers per service
_MAX_AUDIT_PAGE = 1000  # audit-trail entries per read

log = structlog.get_logger("xweg.registry")


class RegistryError(ValueError):
    """A change or read the registry refuses; the message says what and why.

    ``code`` names the kind of refusal in a stable, machine-readable way; the subclasses
    narrow it, and anything else (bad input, a certificate no approved CA issued) is
    ``refused``.
    """

    code: ClassVar[str] = "refused"


class RegistryConflict(RegistryError):
    """The change collides with what the registry holds: a duplicate, something already
    registered, hosted or a member, or a state that does not allow it."""

    code: ClassVar[str] = "conflict"


class RegistryNotFound(RegistryError):
    """The change names something the registry does not hold: a member class, member,
    subsystem, security server or global group."""

    code: ClassVar[str] = "unknown_reference"


class UnknownServer(RegistryNotFound):
    """A request names a security server the registry does not hold."""

    code: ClassVar[str] = "unknown_server"


class CertificateNotRegistered(RegistryError):
    """A request is signed with an auth certificate the registry does not hold for that server."""

    code: ClassVar[str] = "unregistered_certificate"


class RequestReplayed(RegistryConflict):
    """A request id was used before: the request is a replay (or a resubmission of the same)."""

    code: ClassVar[str] = "replayed"


class RequestSuperseded(RegistryConflict):
    """A server's announcement made no later than one already applied for it: held back
    and delivered late, it must not undo what the server said since."""

    code: ClassVar[str] = "superseded"


# -- schema -------------------------------------------------------------------------------


class Base(DeclarativeBase):
    """The registry's tables; ``registry/migrations`` creates exactly these."""

    metadata = sa.MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        }
    )


class Settings(Base):
    """The one row naming the instance this registry serves."""

    __tablename__ = "settings"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance: Mapped[str] = mapped_column(sa.String(255))
    ocsp_freshness_s: Mapped[int]


class MemberClass(Base):
    __tablename__ = "member_classes"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (sa.UniqueConstraint("class_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("member_classes.id"))
    code: Mapped[str] = mapped_column(sa.String(255))
    name: Mapped[str] = mapped_column(sa.Text)
    member_class: Mapped[MemberClass] = relationship()
    subsystems: Mapped[list[Subsystem]] = relationship(order_by="Subsystem.id", back_populates="member")


class Subsystem(Base):
    __tablename__ = "subsystems"
    __table_args__ = (sa.UniqueConstraint("member_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(sa.String(255))
    member: Mapped[Member] = relationship(back_populates="subsystems")


class SecurityServer(Base):
    __tablename__ = "security_servers"
    __table_args__ = (sa.UniqueConstraint("owner_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(sa.String(255))
    address: Mapped[str] = mapped_column(sa.String(300))
    maintenance_mode: Mapped[bool] = mapped_column(default=False)
    owner: Mapped[Member] = relationship()
    auth_certificates: Mapped[list[AuthCertificate]] = relationship(order_by="AuthCertificate.id")
    clients: Mapped[list[ServerClient]] = relationship(order_by="ServerClient.id")


class AuthCertificate(Base):
    """A server's auth certificate; ``pem`` is empty when only the fingerprint was imported."""

    __tablename__ = "auth_certificates"
    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(sa.ForeignKey("security_servers.id"))
    pem: Mapped[str | None] = mapped_column(sa.Text)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), unique=True)


class ServerClient(Base):
    """A client a server hosts: a member (subsystem_id empty) or one of its subsystems."""

    __tablename__ = "server_clients"
    # A client hosted twice would make the published configuration invalid; the checks
    # in the code come first, these stop two concurrent changes that both passed them.
    __table_args__ = (
        sa.Index(
            "uq_server_clients_subsystem",
            "server_id",
            "subsystem_id",
            unique=True,
            sqlite_where=sa.text("subsystem_id IS NOT NULL"),
            postgresql_where=sa.text("subsystem_id IS NOT NULL"),
        ),
        sa.Index(
            "uq_server_clients_member",
            "server_id",
            "member_id",
            unique=True,
            sqlite_where=sa.text("subsystem_id IS NULL"),
            postgresql_where=sa.text("subsystem_id IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(sa.ForeignKey("security_servers.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    subsystem_id: Mapped[int | None] = mapped_column(sa.ForeignKey("subsystems.id"))
    member: Mapped[Member] = relationship()
    subsystem: Mapped[Subsystem | None] = relationship()


class GlobalGroup(Base):
    __tablename__ = "global_groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    members: Mapped[list[GroupMember]] = relationship(order_by="GroupMember.id")


class GroupMember(Base):
    __tablename__ = "group_members"
    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(sa.ForeignKey("global_groups.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    subsystem_id: Mapped[int | None] = mapped_column(sa.ForeignKey("subsystems.id"))
    member: Mapped[Member] = relationship()
    subsystem: Mapped[Subsystem | None] = relationship()


class ApprovedCARow(Base):
    __tablename__ = "approved_cas"
    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_pem: Mapped[str] = mapped_column(sa.Text)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), unique=True)
    intermediates_pem: Mapped[list[str]] = mapped_column(sa.JSON)
    ocsp_url: Mapped[str | None] = mapped_column(sa.String(2048))
    ocsp_responders_pem: Mapped[list[str]] = mapped_column(sa.JSON)


class ApprovedTSARow(Base):
    __tablename__ = "approved_tsas"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text)
    url: Mapped[str] = mapped_column(sa.String(2048))
    certificate_pem: Mapped[str] = mapped_column(sa.Text)


class Service(Base):
    """One entry of the service catalogue; ``version`` is "" for an unversioned service."""

    __tablename__ = "services"
    __table_args__ = (sa.UniqueConstraint("provider_id", "code", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(sa.ForeignKey("subsystems.id"))
    code: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[str] = mapped_column(sa.String(255))
    protocol: Mapped[str] = mapped_column(sa.String(8))
    description: Mapped[str] = mapped_column(sa.Text)
    standard: Mapped[str] = mapped_column(sa.Text)
    authorities: Mapped[list[str]] = mapped_column(sa.JSON)
    area: Mapped[str | None] = mapped_column(sa.String(12))
    provider: Mapped[Subsystem] = relationship()


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


class RegistrationRequestRow(Base):
    """A registration request as received (``signed_request`` is the exact JSON), and its decision."""

    __tablename__ = "registration_requests"
    __table_args__ = (
        sa.Index("ix_registration_requests_status", "status"),
        # At most one pending request per auth certificate and per (server, client):
        # a second submission racing the first fails here, not at publication.
        sa.Index(
            "uq_registration_requests_pending_auth_certificate",
            "auth_certificate_fingerprint",
            unique=True,
            sqlite_where=sa.text("status = 'pending' AND kind = 'auth-cert'"),
            postgresql_where=sa.text("status = 'pending' AND kind = 'auth-cert'"),
        ),
        sa.Index(
            "uq_registration_requests_pending_client",
            "server",
            "client",
            unique=True,
            sqlite_where=sa.text("status = 'pending' AND kind = 'client'"),
            postgresql_where=sa.text("status = 'pending' AND kind = 'client'"),
        ),
    )
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    server: Mapped[str] = mapped_column(sa.String(1100))
    client: Mapped[str | None] = mapped_column(sa.String(1400))
    address: Mapped[str | None] = mapped_column(sa.String(300))
    auth_certificate_pem: Mapped[str | None] = mapped_column(sa.Text)
    auth_certificate_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    consent_by: Mapped[str] = mapped_column(sa.String(1100))
    server_certificate_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    signed_request: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    received_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    decided_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(sa.String(255))


class MaintenanceRequestRow(Base):
    """A maintenance announcement a server made and the registry applied; its id is used once."""

    __tablename__ = "maintenance_requests"
    request_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    server: Mapped[str] = mapped_column(sa.String(1100))
    enabled: Mapped[bool]
    certificate_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    digest: Mapped[str] = mapped_column(sa.String(64))
    submitted_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    received_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


# -- values handed out ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceEntry:
    """A catalogued service, as :meth:`RegistryStore.services` lists it."""

    provider: SubsystemId
    code: str
    version: str | None
    protocol: str
    description: str
    standard: str
    authorities: tuple[str, ...]
    area: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form, for ``--json`` output and the API: as published, plus its id."""
        info = ServiceInfo(
            self.provider,
            self.code,
            self.version,
            self.protocol,
            self.description,
            self.standard,
            self.authorities,
            self.area,
        )
        return {"service": info.service_id.slash(), **info.to_dict()}


#: The states of a registration request; only a pending one can be decided.
REQUEST_STATES = ("pending", "approved", "rejected", "revoked")
#: Pending requests one server may have; more wait until some are decided.
MAX_PENDING_PER_SERVER = 50
#: Requests one listing returns at most.
MAX_REQUESTS_LISTED = 1000
_DECISIONS = {"approve": "approved", "reject": "rejected", "revoke": "revoked"}


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every one stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _format(value: dt.datetime | None) -> str | None:
    return None if value is None else _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RegistrationEntry:
    """A registration request and its state, as :meth:`RegistryStore.registrations` lists it."""

    id: str
    kind: str
    server: str
    client: str | None
    address: str | None
    auth_certificate_fingerprint: str | None
    consent_by: str
    status: str
    reason: str | None
    received_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None

    @classmethod
    def of(cls, row: RegistrationRequestRow) -> RegistrationEntry:
        return cls(
            row.id,
            row.kind,
            row.server,
            row.client,
            row.address,
            row.auth_certificate_fingerprint,
            row.consent_by,
            row.status,
            row.reason,
            _utc(row.received_at),
            None if row.decided_at is None else _utc(row.decided_at),
            row.decided_by,
        )

    def to_dict(self, *, public: bool = False) -> dict[str, Any]:
        """JSON form; ``public`` leaves out who decided (the submitting server's view)."""
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "server": self.server,
            "client": self.client,
            "address": self.address,
            "auth_certificate_fingerprint": self.auth_certificate_fingerprint,
            "consent_by": self.consent_by,
            "status": self.status,
            "reason": self.reason,
            "received_at": _format(self.received_at),
            "decided_at": _format(self.decided_at),
        }
        if not public:
            data["decided_by"] = self.decided_by
        return data


@dataclass(frozen=True)
class AuditContext:
    """Who makes a change, when, and the request it belongs to (for the audit trail)."""

    actor: str
    at: dt.datetime
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.actor, str) or not self.actor or len(self.actor) > 255:
            raise ValueError("actor must be a string of 1 to 255 characters")
        if not isinstance(self.at, dt.datetime) or self.at.utcoffset() != dt.timedelta(0):
            raise ValueError("at must be a UTC datetime")
        if self.correlation_id is not None and (
            not isinstance(self.correlation_id, str) or len(self.correlation_id) > 64
        ):
            raise ValueError("correlation_id must be a string of at most 64 characters")

    @classmethod
    def local(cls) -> AuditContext:
        """A change made on this machine (the command line), now."""
        return cls("local", dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit trail, as :meth:`RegistryStore.audit_trail` lists it."""

    id: int
    at: dt.datetime
    actor: str
    operation: str
    target: str
    before: Any
    after: Any
    correlation_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": self.actor,
            "operation": self.operation,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "correlation_id": self.correlation_id,
        }


def _utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def approved_ca_summary(ca: ApprovedCA) -> dict[str, Any]:
    """An approved CA as the API, ``--json`` and the audit trail show it: fingerprints, not PEMs."""
    return {
        "fingerprint": fingerprint(ca.certificate),
        "subject": ca.certificate.subject.rfc4514_string(),
        "not_after": _utc_text(ca.certificate.not_valid_after_utc),
        "intermediate_fingerprints": [fingerprint(c) for c in ca.intermediates],
        "ocsp_url": ca.ocsp_url,
        "ocsp_responder_fingerprints": [fingerprint(c) for c in ca.ocsp_responders],
    }


def approved_tsa_summary(tsa: ApprovedTSA) -> dict[str, Any]:
    """An approved TSA as the API, ``--json`` and the audit trail show it: a fingerprint, not the PEM."""
    return {
        "name": tsa.name,
        "url": tsa.url,
        "fingerprint": fingerprint(tsa.certificate),
        "subject": tsa.certificate.subject.rfc4514_string(),
        "not_after": _utc_text(tsa.certificate.not_valid_after_utc),
    }


_Record = Callable[[str, str, Any, Any], None]


# -- helpers --------------------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _certificates(pem: str, what: str) -> list[x509.Certificate]:
    try:
        loaded = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (UnicodeEncodeError, ValueError) as exc:
        raise RegistryError(f"{what}: not a PEM certificate") from exc
    if not loaded:
        raise RegistryError(f"{what}: holds no certificate")
    return loaded


def _certificate(pem: str, what: str) -> x509.Certificate:
    loaded = _certificates(pem, what)
    if len(loaded) != 1:
        raise RegistryError(f"{what}: must hold exactly one certificate, found {len(loaded)}")
    return loaded[0]


def _text(value: object, what: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or len(value) > _MAX_TEXT:
        raise RegistryError(f"{what} must be a {'' if empty else 'non-empty '}string of at most {_MAX_TEXT}")
    return value


@contextlib.contextmanager
def _refusing() -> Iterator[None]:
    """Identifier and record validation errors become RegistryError with their message."""
    try:
        yield
    except RegistryError:
        raise
    except (ValueError, TrustError) as exc:  # IdentifierError is a ValueError too
        raise RegistryError(str(exc)) from exc


def normalise_url(url: str, base: Path | None = None) -> URL:
    """``url`` parsed, with PostgreSQL on psycopg 3 and a relative SQLite path resolved against ``base``."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise RegistryError(f"not a database URL: {url!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise RegistryError("the registry needs a SQLite file, not an in-memory database")
        if base is not None and not Path(database).is_absolute():
            parsed = parsed.set(database=str(base / database))
    elif parsed.get_backend_name() != "postgresql":
        raise RegistryError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")
    return parsed


def _migrations_dir() -> Path:
    return Path(__file__).resolve().parent / "migrations"


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# -- the store ------------------------------------------------------------------------------


class RegistryStore:
    """The registry's database; open with :meth:`open`, close with :meth:`close` (or ``with``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, base: Path | None = None) -> RegistryStore:
        """Connect to ``url`` and upgrade its schema to the newest revision.

        A SQLite file (and its folder) is created when missing; relative SQLite paths are
        resolved against ``base`` (default: the working directory).
        """
        parsed = normalise_url(url, base)
        if parsed.get_backend_name() == "sqlite":
            assert parsed.database is not None  # checked by normalise_url
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        try:
            _upgrade(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise RegistryError(f"cannot open the registry database: {_reason(exc)}") from exc
        return cls(engine)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        """One transaction; commits when the block ends, rolls back on any error."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except IntegrityError as exc:
            # The checks ran first, so a constraint that still trips is a concurrent change
            # that got there first (e.g. the same member registered twice at once).
            raise RegistryConflict(f"refused by the database: {_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            raise RegistryError(f"registry database error: {_reason(exc)}") from exc

    @contextlib.contextmanager
    def _change(self, audit: AuditContext | None) -> Iterator[tuple[Session, _Record]]:
        """One transaction that also writes the audit trail; entries are logged once committed."""
        context = audit or AuditContext.local()
        entries: list[dict[str, Any]] = []
        with self._transaction() as session:

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
        for entry in entries:
            log.info("registry.audit", at=context.at.isoformat(), **entry)

    def _settings(self, session: Session) -> Settings:
        settings = session.get(Settings, 1)
        if settings is None:
            raise RegistryError("the registry is not initialised (run `xweg registry init`)")
        return settings

    def _member_class(self, session: Session, code: str) -> MemberClass:
        row = session.scalar(sa.select(MemberClass).where(MemberClass.code == code))
        if row is None:
            raise RegistryNotFound(f"unknown member class {code}")
        return row

    def _member(self, session: Session, member: MemberId) -> Member:
        instance = self._settings(session).instance
        if member.instance != instance:
            raise RegistryError(f"{member} is not of instance {instance}")
        row = session.scalar(
            sa.select(Member)
            .join(MemberClass)
            .where(MemberClass.code == member.member_class, Member.code == member.member_code)
        )
        if row is None:
            raise RegistryNotFound(f"{member} is not a registered member")
        return row

    def _client(self, session: Session, client: ClientId) -> tuple[Member, Subsystem | None]:
        member = self._member(session, client.member)
        if isinstance(client, MemberId):
            return member, None
        subsystem = session.scalar(
            sa.select(Subsystem).where(
                Subsystem.member_id == member.id, Subsystem.code == client.subsystem_code
            )
        )
        if subsystem is None:
            raise RegistryNotFound(f"{client} is not a subsystem of {client.member}")
        return member, subsystem

    def _server(self, session: Session, server: SecurityServerId) -> SecurityServer:
        owner = self._member(session, server.member)
        row = session.scalar(
            sa.select(SecurityServer).where(
                SecurityServer.owner_id == owner.id, SecurityServer.code == server.server_code
            )
        )
        if row is None:
            raise RegistryNotFound(f"{server} is not a registered security server")
        return row

    def _group(self, session: Session, code: str) -> GlobalGroup:
        row = session.scalar(sa.select(GlobalGroup).where(GlobalGroup.code == code))
        if row is None:
            raise RegistryNotFound(f"global group {code} does not exist")
        return row

    def _client_slash(self, session: Session, member: Member, subsystem: Subsystem | None) -> str:
        mid = MemberId(self._settings(session).instance, member.member_class.code, member.code)
        return (mid if subsystem is None else mid.subsystem(subsystem.code)).slash()

    def _ca_certificates(self, session: Session) -> list[x509.Certificate]:
        cas: list[x509.Certificate] = []
        for row in session.scalars(sa.select(ApprovedCARow).order_by(ApprovedCARow.id)):
            cas.append(_certificate(row.certificate_pem, "approved CA"))
            cas.extend(_certificate(pem, "intermediate") for pem in row.intermediates_pem)
        return cas

    # -- changes ----------------------------------------------------------------------------

    def init(
        self,
        instance: str,
        *,
        ocsp_freshness_s: int = DEFAULT_OCSP_FRESHNESS_S,
        audit: AuditContext | None = None,
    ) -> None:
        """Name the instance; refused when the store is already initialised."""
        with _refusing():
            check_part(instance, "instance")
        if (
            isinstance(ocsp_freshness_s, bool)
            or not isinstance(ocsp_freshness_s, int)
            or ocsp_freshness_s < 1
        ):
            raise RegistryError(f"ocsp_freshness_s must be a positive integer, got {ocsp_freshness_s!r}")
        with self._change(audit) as (session, record):
            existing = session.get(Settings, 1)
            if existing is not None:
                raise RegistryConflict(
                    f"the registry is already initialised for instance {existing.instance}"
                )
            session.add(Settings(id=1, instance=instance, ocsp_freshness_s=ocsp_freshness_s))
            record("init", instance, None, {"instance": instance, "ocsp_freshness_s": ocsp_freshness_s})

    def instance(self) -> str:
        """The instance this registry serves."""
        with self._transaction() as session:
            return self._settings(session).instance

    def add_member_class(
        self, code: str, description: str = "", *, audit: AuditContext | None = None
    ) -> None:
        """Register a member class (GOV, MUN, ...)."""
        with _refusing():
            check_part(code, "memberClass")
        _text(description, "description", empty=True)
        with self._change(audit) as (session, record):
            self._settings(session)
            if session.scalar(sa.select(MemberClass).where(MemberClass.code == code)) is not None:
                raise RegistryConflict(f"duplicate member class {code}")
            session.add(MemberClass(code=code, description=description))
            record("add_member_class", code, None, {"code": code, "description": description})

    def add_member(
        self, member_class: str, code: str, name: str, *, audit: AuditContext | None = None
    ) -> MemberId:
        """Register a member of an existing class; returns its identifier."""
        _text(name, "name")
        with self._change(audit) as (session, record):
            instance = self._settings(session).instance
            with _refusing():
                member_id = MemberId(instance, member_class, code)
            cls = self._member_class(session, member_class)
            if (
                session.scalar(sa.select(Member).where(Member.class_id == cls.id, Member.code == code))
                is not None
            ):
                raise RegistryConflict(f"duplicate member {member_id}")
            session.add(Member(member_class=cls, code=code, name=name))
            record("add_member", member_id.slash(), None, {"name": name, "subsystems": []})
        return member_id

    def add_subsystem(
        self, member: str | MemberId, code: str, *, audit: AuditContext | None = None
    ) -> SubsystemId:
        """Register a subsystem of a registered member (``member`` as ``NRW/MUN/05774032``)."""
        with _refusing():
            member_id = MemberId.parse_slash(member) if isinstance(member, str) else member
            subsystem_id = member_id.subsystem(code)
        with self._change(audit) as (session, record):
            row = self._member(session, member_id)
            before = [s.code for s in row.subsystems]
            if code in before:
                raise RegistryConflict(f"duplicate subsystem {subsystem_id}")
            session.add(Subsystem(member=row, code=code))
            record(
                "add_subsystem", member_id.slash(), {"subsystems": before}, {"subsystems": [*before, code]}
            )
        return subsystem_id

    def add_security_server(
        self,
        owner: str | MemberId,
        code: str,
        address: str,
        auth_certificate_pem: str,
        clients: Iterable[str | ClientId] = (),
        *,
        maintenance_mode: bool = False,
        audit: AuditContext | None = None,
    ) -> SecurityServerId:
        """Register a server with its auth certificate (issued by an approved CA to exactly it)."""
        with _refusing():
            owner_id = MemberId.parse_slash(owner) if isinstance(owner, str) else owner
            server_id = SecurityServerId(owner_id, code)
            client_ids = tuple(parse_client_slash(c) if isinstance(c, str) else c for c in clients)
        cert = _certificate(auth_certificate_pem, f"auth certificate of {server_id}")
        fp = fingerprint(cert)
        with _refusing():  # address form, duplicate clients
            SecurityServerInfo(server_id, address, (fp,), client_ids)
        with self._change(audit) as (session, record):
            owner_row = self._member(session, owner_id)
            if (
                session.scalar(
                    sa.select(SecurityServer).where(
                        SecurityServer.owner_id == owner_row.id, SecurityServer.code == code
                    )
                )
                is not None
            ):
                raise RegistryConflict(f"duplicate security server {server_id}")
            self._check_auth_certificate(session, cert, server_id)
            row = SecurityServer(
                owner=owner_row, code=code, address=address, maintenance_mode=maintenance_mode
            )
            session.add(row)
            row.auth_certificates.append(AuthCertificate(pem=_pem(cert), fingerprint=fp))
            for client in client_ids:
                member_row, subsystem_row = self._client(session, client)
                row.clients.append(ServerClient(member=member_row, subsystem=subsystem_row))
            record(
                "add_security_server",
                server_id.slash(),
                None,
                {
                    "address": address,
                    "auth_certificate_fingerprints": [fp],
                    "clients": [c.slash() for c in client_ids],
                    "maintenance_mode": maintenance_mode,
                },
            )
        return server_id

    def _check_auth_certificate(
        self, session: Session, cert: x509.Certificate, server: SecurityServerId
    ) -> None:
        # The federation file's rule: a certificate registered for the wrong server would
        # let that server impersonate this one.
        try:
            named = server_id_from_auth_certificate(cert)
        except TrustError as exc:
            raise RegistryError(f"auth certificate of {server}: {exc}") from exc
        if named != server:
            raise RegistryError(f"{describe(cert)} was issued to {named}, not to {server}")
        if not any(_issued_by(cert, ca) for ca in self._ca_certificates(session)):
            raise RegistryError(f"{describe(cert)} was not issued by an approved CA")
        holder = session.scalar(
            sa.select(AuthCertificate).where(AuthCertificate.fingerprint == fingerprint(cert))
        )
        if holder is not None:
            raise RegistryConflict(f"{describe(cert)} is already registered for a security server")

    def add_auth_certificate(
        self, server: str | SecurityServerId, pem: str, *, audit: AuditContext | None = None
    ) -> None:
        """Register another auth certificate for a server (e.g. while rotating keys)."""
        with _refusing():
            server_id = SecurityServerId.parse_slash(server) if isinstance(server, str) else server
        cert = _certificate(pem, f"auth certificate of {server_id}")
        with self._change(audit) as (session, record):
            row = self._server(session, server_id)
            self._check_auth_certificate(session, cert, server_id)
            before = [a.fingerprint for a in row.auth_certificates]
            fp = fingerprint(cert)
            row.auth_certificates.append(AuthCertificate(pem=_pem(cert), fingerprint=fp))
            record(
                "add_auth_certificate",
                server_id.slash(),
                {"auth_certificate_fingerprints": before},
                {"auth_certificate_fingerprints": [*before, fp]},
            )

    def set_maintenance_mode(
        self, server: str | SecurityServerId, enabled: bool, *, audit: AuditContext | None = None
    ) -> bool:
        """Put a registered server into maintenance mode or take it out; True when that changed it.

        Asking for the mode the server already has is accepted and changes nothing: no
        row is written, not even to the audit trail, which records changes only.
        """
        with _refusing():
            server_id = SecurityServerId.parse_slash(server) if isinstance(server, str) else server
        if not isinstance(enabled, bool):
            raise RegistryError(f"maintenance mode must be true or false, got {enabled!r}")
        with self._change(audit) as (session, record):
            return self._set_maintenance(record, self._server(session, server_id), server_id, enabled)

    @staticmethod
    def _set_maintenance(
        record: _Record, row: SecurityServer, server_id: SecurityServerId, enabled: bool
    ) -> bool:
        if row.maintenance_mode == enabled:
            return False
        row.maintenance_mode = enabled
        record(
            "set_maintenance_mode",
            server_id.slash(),
            {"maintenance_mode": not enabled},
            {"maintenance_mode": enabled},
        )
        return True

    def announce_maintenance(
        self, verified: VerifiedMaintenanceRequest, *, audit: AuditContext | None = None
    ) -> bool:
        """Apply a server's verified maintenance announcement at once; True when it changed the mode.

        In one transaction: the server must be registered (:class:`UnknownServer`), the
        certificate that signed must be one registered for it
        (:class:`CertificateNotRegistered`), the request id must never have been used
        (:class:`RequestReplayed`), and the request must be newer than any the server made
        before (:class:`RequestSuperseded`); then the id is kept and the mode set, the change (if
        any) audited like :meth:`set_maintenance_mode`.  A refusal writes nothing.
        """
        context = audit or AuditContext.local()
        request = verified.request
        with self._change(context) as (session, record):
            if session.get(MaintenanceRequestRow, request.request_id) is not None:
                # The id stays out of the message: whoever replays captured bytes learns nothing.
                raise RequestReplayed("this request was already received")
            try:
                row = self._server(session, request.server)
            except RegistryError as exc:  # an unknown owner, server or instance
                raise UnknownServer(f"{request.server} is not a registered security server") from exc
            if verified.certificate_fingerprint not in {a.fingerprint for a in row.auth_certificates}:
                raise CertificateNotRegistered(
                    f"the request is not signed with an auth certificate registered for {request.server}"
                )
            latest = session.scalar(
                sa.select(sa.func.max(MaintenanceRequestRow.submitted_at)).where(
                    MaintenanceRequestRow.server == request.server.slash()
                )
            )
            if latest is not None and _utc(latest) > request.submitted_at:
                raise RequestSuperseded(
                    f"{request.server} made a later announcement (at {_utc(latest).isoformat()}) "
                    "than this one"
                )
            session.add(
                MaintenanceRequestRow(
                    request_id=request.request_id,
                    server=request.server.slash(),
                    enabled=request.enabled,
                    certificate_fingerprint=verified.certificate_fingerprint,
                    digest=verified.digest,
                    submitted_at=request.submitted_at,
                    received_at=context.at,
                )
            )
            # The id's uniqueness speaks now: of two identical requests racing, one is refused.
            try:
                session.flush()
            except IntegrityError as exc:
                raise RequestReplayed("this request was already received") from exc
            return self._set_maintenance(record, row, request.server, request.enabled)

    def add_server_client(
        self, server: str | SecurityServerId, client: str | ClientId, *, audit: AuditContext | None = None
    ) -> None:
        """Let ``server`` host ``client`` (a registered member or subsystem)."""
        with _refusing():
            server_id = SecurityServerId.parse_slash(server) if isinstance(server, str) else server
            client_id = parse_client_slash(client) if isinstance(client, str) else client
        with self._change(audit) as (session, record):
            row = self._server(session, server_id)
            member_row, subsystem_row = self._client(session, client_id)
            if any(c.member_id == member_row.id and c.subsystem is subsystem_row for c in row.clients):
                raise RegistryConflict(f"{server_id} already hosts {client_id}")
            before = [self._client_slash(session, c.member, c.subsystem) for c in row.clients]
            row.clients.append(ServerClient(member=member_row, subsystem=subsystem_row))
            record(
                "add_server_client",
                server_id.slash(),
                {"clients": before},
                {"clients": [*before, client_id.slash()]},
            )

    def add_global_group(
        self,
        code: str,
        description: str = "",
        members: Iterable[str | ClientId] = (),
        *,
        audit: AuditContext | None = None,
    ) -> GlobalGroupId:
        """Create a global group with its first ``members`` (registered members or subsystems)."""
        _text(description, "description", empty=True)
        with _refusing():
            client_ids = tuple(parse_client_slash(c) if isinstance(c, str) else c for c in members)
        with self._change(audit) as (session, record):
            instance = self._settings(session).instance
            with _refusing():
                group_id = GlobalGroupId(instance, code)
                GlobalGroupInfo(group_id, client_ids)  # no member twice
            if session.scalar(sa.select(GlobalGroup).where(GlobalGroup.code == code)) is not None:
                raise RegistryConflict(f"duplicate global group {group_id}")
            row = GlobalGroup(code=code, description=description)
            for client in client_ids:
                member_row, subsystem_row = self._client(session, client)
                row.members.append(GroupMember(member=member_row, subsystem=subsystem_row))
            session.add(row)
            record(
                "add_global_group",
                group_id.slash(),
                None,
                {"description": description, "members": [c.slash() for c in client_ids]},
            )
        return group_id

    def add_group_member(
        self, group: str, client: str | ClientId, *, audit: AuditContext | None = None
    ) -> None:
        """Add a registered member or subsystem to global group ``group`` (its code)."""
        with _refusing():
            client_id = parse_client_slash(client) if isinstance(client, str) else client
        with self._change(audit) as (session, record):
            row = self._group(session, group)
            member_row, subsystem_row = self._client(session, client_id)
            if any(m.member_id == member_row.id and m.subsystem is subsystem_row for m in row.members):
                raise RegistryConflict(f"{client_id} is already a member of global group {group}")
            before = [self._client_slash(session, m.member, m.subsystem) for m in row.members]
            row.members.append(GroupMember(member=member_row, subsystem=subsystem_row))
            target = GlobalGroupId(self._settings(session).instance, group).slash()
            record("add_group_member", target, {"members": before}, {"members": [*before, client_id.slash()]})

    def add_approved_ca(
        self,
        certificate_pem: str,
        *,
        intermediates_pem: Sequence[str] = (),
        ocsp_url: str | None = None,
        ocsp_responders_pem: Sequence[str] = (),
        audit: AuditContext | None = None,
    ) -> ApprovedCA:
        """Approve a root CA, with the issuing CAs under it and its OCSP service.

        Each PEM of ``intermediates_pem`` and ``ocsp_responders_pem`` may hold several
        certificates.  The audit trail keeps fingerprints, subject and URL, not the PEMs.
        """
        root = _certificate(certificate_pem, "approved CA")
        intermediates = [c for pem in intermediates_pem for c in _certificates(pem, "intermediate")]
        responders = [c for pem in ocsp_responders_pem for c in _certificates(pem, "OCSP responder")]
        with _refusing():
            ca = ApprovedCA(root, tuple(intermediates), ocsp_url, tuple(responders))
        with self._change(audit) as (session, record):
            self._settings(session)
            self._insert_ca(session, root, intermediates, ocsp_url, responders)
            after = approved_ca_summary(ca)
            record("add_approved_ca", after["fingerprint"], None, after)
        return ca

    def _insert_ca(
        self,
        session: Session,
        root: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        ocsp_url: str | None,
        responders: Sequence[x509.Certificate],
    ) -> None:
        fp = fingerprint(root)
        if session.scalar(sa.select(ApprovedCARow).where(ApprovedCARow.fingerprint == fp)) is not None:
            raise RegistryConflict(f"{describe(root)} is already an approved CA")
        session.add(
            ApprovedCARow(
                certificate_pem=_pem(root),
                fingerprint=fp,
                intermediates_pem=[_pem(c) for c in intermediates],
                ocsp_url=ocsp_url,
                ocsp_responders_pem=[_pem(c) for c in responders],
            )
        )

    def add_approved_tsa(
        self, name: str, url: str, certificate_pem: str, *, audit: AuditContext | None = None
    ) -> ApprovedTSA:
        """Approve a timestamping authority whose certificate an approved CA issued.

        Names are unique: the global configuration refuses two TSAs of one name.
        """
        cert = _certificate(certificate_pem, f"certificate of TSA {name}")
        with _refusing():
            tsa = ApprovedTSA(name, url, cert)
        with self._change(audit) as (session, record):
            self._settings(session)
            if session.scalar(sa.select(ApprovedTSARow).where(ApprovedTSARow.name == name)) is not None:
                raise RegistryConflict(f"duplicate approved TSA {name}")
            if not any(_issued_by(cert, ca) for ca in self._ca_certificates(session)):
                raise RegistryError(f"{describe(cert)} was not issued by an approved CA")
            session.add(ApprovedTSARow(name=name, url=url, certificate_pem=_pem(cert)))
            record("add_approved_tsa", name, None, approved_tsa_summary(tsa))
        return tsa

    def add_service(
        self,
        provider: str | SubsystemId,
        code: str,
        version: str | None,
        protocol: str,
        description: str,
        standard: str,
        authorities: Sequence[str] = (),
        area: str | None = None,
        *,
        audit: AuditContext | None = None,
    ) -> ServiceEntry:
        """Catalogue a service of a registered subsystem, with what it implements and answers for."""
        with _refusing():
            provider_id = SubsystemId.parse_slash(provider) if isinstance(provider, str) else provider
            provider_id.service(code, version or None)
        if is_reserved_service_code(code):
            raise RegistryError(
                f"service code {code!r} is reserved: security servers answer it themselves (X-Road metadata)"
            )
        if not isinstance(protocol, str) or protocol.upper() not in PROTOCOLS:
            raise RegistryError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        _text(description, "description", empty=True)
        _text(standard, "standard", empty=True)
        authorities = tuple(authorities)
        if len(authorities) > _MAX_AUTHORITIES:
            raise RegistryError(f"at most {_MAX_AUTHORITIES} authority identifiers per service")
        for authority in authorities:
            if not isinstance(authority, str) or not _AUTHORITY.fullmatch(authority):
                raise RegistryError(
                    f"authority identifier {authority!r} must be prefix:key, e.g. MELDID:05774032"
                )
        if len(set(authorities)) != len(authorities):
            raise RegistryError("authority identifiers must not repeat")
        if area is not None and (not isinstance(area, str) or not _AREA.fullmatch(area)):
            raise RegistryError(f"area {area!r} must be a municipality key (2 to 12 digits)")
        entry = ServiceEntry(
            provider_id, code, version or None, protocol.upper(), description, standard, authorities, area
        )
        with self._change(audit) as (session, record):
            _, subsystem = self._client(session, provider_id)
            assert subsystem is not None  # a SubsystemId resolves to a subsystem
            if (
                session.scalar(
                    sa.select(Service).where(
                        Service.provider_id == subsystem.id,
                        Service.code == code,
                        Service.version == (version or ""),
                    )
                )
                is not None
            ):
                raise RegistryConflict(f"duplicate service {provider_id.service(code, version or None)}")
            session.add(
                Service(
                    provider=subsystem,
                    code=code,
                    version=version or "",
                    protocol=entry.protocol,
                    description=description,
                    standard=standard,
                    authorities=list(authorities),
                    area=area,
                )
            )
            after = entry.to_dict()
            record("add_service", after.pop("service"), None, after)
        return entry

    def import_definition(
        self,
        definition: FederationDefinition,
        auth_certificates: Iterable[x509.Certificate] = (),
        *,
        audit: AuditContext | None = None,
    ) -> None:
        """Load a validated federation definition into an empty store, in one transaction.

        A definition holds only the fingerprints of auth certificates; certificates given
        in ``auth_certificates`` are stored with the fingerprint they match.
        """
        pems = {fingerprint(cert): _pem(cert) for cert in auth_certificates}
        with self._change(audit) as (session, record):
            # One entry for the whole import: what came from where, by count.
            record(
                "import_definition",
                str(definition.path),
                None,
                {
                    "instance": definition.instance,
                    "members": len(definition.members),
                    "security_servers": len(definition.security_servers),
                    "global_groups": len(definition.global_groups),
                    "approved_cas": len(definition.approved_cas),
                    "approved_tsas": len(definition.approved_tsas),
                    "services": len(definition.services),
                },
            )
            settings = session.get(Settings, 1)
            if settings is None:
                session.add(
                    Settings(id=1, instance=definition.instance, ocsp_freshness_s=definition.ocsp_freshness_s)
                )
            elif settings.instance != definition.instance:
                raise RegistryError(
                    f"the registry serves instance {settings.instance}, the definition {definition.instance}"
                )
            else:
                settings.ocsp_freshness_s = definition.ocsp_freshness_s
            for table in (Member, ApprovedCARow, ApprovedTSARow, GlobalGroup):
                if session.scalar(sa.select(sa.func.count()).select_from(table)):
                    raise RegistryConflict("import needs an empty registry; this one already holds entries")
            for ca in definition.approved_cas:
                self._insert_ca(session, ca.certificate, ca.intermediates, ca.ocsp_url, ca.ocsp_responders)
            for tsa in definition.approved_tsas:
                session.add(ApprovedTSARow(name=tsa.name, url=tsa.url, certificate_pem=_pem(tsa.certificate)))
            classes: dict[str, MemberClass] = {
                row.code: row for row in session.scalars(sa.select(MemberClass))
            }
            members: dict[MemberId, Member] = {}
            for info in definition.members:
                cls = classes.get(info.id.member_class)
                if cls is None:
                    cls = classes[info.id.member_class] = MemberClass(
                        code=info.id.member_class, description=""
                    )
                    session.add(cls)
                member = Member(member_class=cls, code=info.id.member_code, name=info.name)
                member.subsystems = [Subsystem(code=code) for code in info.subsystems]
                session.add(member)
                members[info.id] = member

            def client(client_id: ClientId) -> tuple[Member, Subsystem | None]:
                member = members[client_id.member]
                if isinstance(client_id, MemberId):
                    return member, None
                return member, next(s for s in member.subsystems if s.code == client_id.subsystem_code)

            for server in definition.security_servers:
                row = SecurityServer(
                    owner=members[server.id.member],
                    code=server.id.server_code,
                    address=server.address,
                    maintenance_mode=server.maintenance_mode,
                )
                row.auth_certificates = [
                    AuthCertificate(pem=pems.get(fp), fingerprint=fp) for fp in server.auth_cert_fingerprints
                ]
                row.clients = [ServerClient(member=m, subsystem=s) for m, s in map(client, server.clients)]
                session.add(row)
            for group in definition.global_groups:
                group_row = GlobalGroup(code=group.id.group_code, description="")
                group_row.members = [
                    GroupMember(member=m, subsystem=s) for m, s in map(client, group.members)
                ]
                session.add(group_row)
            for service in definition.services:
                _, subsystem = client(service.provider)
                assert subsystem is not None  # a provider is always a subsystem
                session.add(
                    Service(
                        provider=subsystem,
                        code=service.code,
                        version=service.version or "",
                        protocol=service.protocol,
                        description=service.description,
                        standard=service.standard,
                        authorities=list(service.authorities),
                        area=service.area,
                    )
                )

    # -- reads ------------------------------------------------------------------------------

    def definition(self) -> FederationDefinition:
        """The federation the rows describe, validated as a definition file would be."""
        with self._transaction() as session:
            settings = self._settings(session)
            instance = settings.instance

            def member_id(row: Member) -> MemberId:
                return MemberId(instance, row.member_class.code, row.code)

            def client_id(member: Member, subsystem: Subsystem | None) -> ClientId:
                mid = member_id(member)
                return mid if subsystem is None else mid.subsystem(subsystem.code)

            with _refusing():
                cas = self._approved_cas(session)
                tsas = tuple(
                    ApprovedTSA(row.name, row.url, _certificate(row.certificate_pem, "TSA"))
                    for row in session.scalars(sa.select(ApprovedTSARow).order_by(ApprovedTSARow.id))
                )
                members = tuple(
                    MemberInfo(member_id(row), row.name, tuple(s.code for s in row.subsystems))
                    for row in session.scalars(sa.select(Member).order_by(Member.id))
                )
                servers = tuple(
                    SecurityServerInfo(
                        SecurityServerId(member_id(row.owner), row.code),
                        row.address,
                        tuple(a.fingerprint for a in row.auth_certificates),
                        tuple(client_id(c.member, c.subsystem) for c in row.clients),
                        row.maintenance_mode,
                    )
                    for row in session.scalars(sa.select(SecurityServer).order_by(SecurityServer.id))
                )
                groups = tuple(
                    GlobalGroupInfo(
                        GlobalGroupId(instance, row.code),
                        tuple(client_id(m.member, m.subsystem) for m in row.members),
                    )
                    for row in session.scalars(sa.select(GlobalGroup).order_by(GlobalGroup.id))
                )
                services = tuple(
                    ServiceInfo(
                        member_id(row.provider.member).subsystem(row.provider.code),
                        row.code,
                        row.version or None,  # stored as "" when unversioned
                        row.protocol,
                        row.description,
                        row.standard,
                        tuple(row.authorities),
                        row.area,
                    )
                    for row in session.scalars(sa.select(Service).order_by(Service.id))
                )
            return FederationDefinition(
                path=Path(f"<registry database {self.engine.url.render_as_string(hide_password=True)}>"),
                instance=instance,
                approved_cas=cas,
                members=members,
                security_servers=servers,
                global_groups=groups,
                approved_tsas=tsas,
                ocsp_freshness_s=settings.ocsp_freshness_s,
                services=services,
            )

    def services(
        self,
        *,
        provider: str | SubsystemId | None = None,
        authority: str | None = None,
        area: str | None = None,
    ) -> tuple[ServiceEntry, ...]:
        """The catalogue, optionally narrowed to one provider, authority identifier or area."""
        with _refusing():
            provider_id = SubsystemId.parse_slash(provider) if isinstance(provider, str) else provider
        with self._transaction() as session:
            instance = self._settings(session).instance
            entries = []
            for row in session.scalars(sa.select(Service).order_by(Service.id)):
                member = row.provider.member
                sub = MemberId(instance, member.member_class.code, member.code).subsystem(row.provider.code)
                entry = ServiceEntry(
                    sub,
                    row.code,
                    row.version or None,
                    row.protocol,
                    row.description,
                    row.standard,
                    tuple(row.authorities),
                    row.area,
                )
                if provider_id is not None and sub != provider_id:
                    continue
                if authority is not None and authority not in entry.authorities:
                    continue
                if area is not None and entry.area != area:
                    continue
                entries.append(entry)
            return tuple(entries)

    def approved_cas(self) -> tuple[ApprovedCA, ...]:
        """The approved CAs, in the order they were approved."""
        with self._transaction() as session, _refusing():
            self._settings(session)
            return self._approved_cas(session)

    def _approved_cas(self, session: Session) -> tuple[ApprovedCA, ...]:
        return tuple(
            ApprovedCA(
                _certificate(row.certificate_pem, "approved CA"),
                tuple(_certificate(p, "intermediate") for p in row.intermediates_pem),
                row.ocsp_url,
                tuple(_certificate(p, "OCSP responder") for p in row.ocsp_responders_pem),
            )
            for row in session.scalars(sa.select(ApprovedCARow).order_by(ApprovedCARow.id))
        )

    def approved_tsas(self) -> tuple[ApprovedTSA, ...]:
        """The approved timestamping authorities, in the order they were approved."""
        with self._transaction() as session, _refusing():
            self._settings(session)
            return tuple(
                ApprovedTSA(row.name, row.url, _certificate(row.certificate_pem, "TSA"))
                for row in session.scalars(sa.select(ApprovedTSARow).order_by(ApprovedTSARow.id))
            )

    def maintenance_modes(self) -> dict[SecurityServerId, bool]:
        """Whether each registered security server is in maintenance mode."""
        with self._transaction() as session:
            instance = self._settings(session).instance
            rows = session.execute(
                sa.select(MemberClass.code, Member.code, SecurityServer.code, SecurityServer.maintenance_mode)
                .select_from(SecurityServer)
                .join(Member, SecurityServer.owner_id == Member.id)
                .join(MemberClass, Member.class_id == MemberClass.id)
                .order_by(SecurityServer.id)
            )
            return {
                SecurityServerId(MemberId(instance, cls, member), code): bool(mode)
                for cls, member, code, mode in rows
            }

    def audit_trail(self, *, after_id: int = 0, limit: int = 100) -> tuple[AuditEntry, ...]:
        """Audit-trail entries with an id above ``after_id``, oldest first, at most ``limit``."""
        if isinstance(after_id, bool) or not isinstance(after_id, int) or after_id < 0:
            raise RegistryError("after_id must be a non-negative integer")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_AUDIT_PAGE:
            raise RegistryError(f"limit must be 1 to {_MAX_AUDIT_PAGE}")
        with self._transaction() as session:
            rows = session.scalars(
                sa.select(AuditTrail).where(AuditTrail.id > after_id).order_by(AuditTrail.id).limit(limit)
            )
            return tuple(
                AuditEntry(
                    row.id,
                    # SQLite hands back naive datetimes; every one stored is UTC.
                    row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC),
                    row.actor,
                    row.operation,
                    row.target,
                    row.before,
                    row.after,
                    row.correlation_id,
                )
                for row in rows
            )

    # -- registration requests --------------------------------------------------------------

    def submit_registration(
        self,
        verified: VerifiedRegistration,
        signed_request: bytes,
        *,
        auto_approve: bool = False,
        audit: AuditContext | None = None,
    ) -> RegistrationEntry:
        """Record a verified request as pending (or, with ``auto_approve``, apply it at once).

        Refused with nothing written when it cannot be granted as things stand: an
        unregistered owner or server, an auth certificate already registered or already
        pending, a client already hosted or already pending, or the same request twice
        (:class:`RegistryConflict` for collisions, :class:`RegistryNotFound` for unknown names).
        """
        context = audit or AuditContext.local()
        request = verified.request
        cert = request.auth_certificate
        with self._change(context) as (session, record):
            self._settings(session)
            self._refuse_replay(session, verified.digest)
            self._check_grantable(session, request, verified.server_certificate_fingerprint)
            pending = session.scalar(
                sa.select(sa.func.count())
                .select_from(RegistrationRequestRow)
                .where(
                    RegistrationRequestRow.status == "pending",
                    RegistrationRequestRow.server == request.server.slash(),
                )
            )
            if (pending or 0) >= MAX_PENDING_PER_SERVER:
                raise RegistryConflict(
                    f"{request.server} has {MAX_PENDING_PER_SERVER} requests pending; wait for decisions"
                )
            row = RegistrationRequestRow(
                id=str(uuid.uuid4()),
                kind=str(request.kind),
                server=request.server.slash(),
                client=None if request.client is None else request.client.slash(),
                address=request.address,
                auth_certificate_pem=None if cert is None else _pem(cert),
                auth_certificate_fingerprint=verified.auth_certificate_fingerprint,
                consent_by=verified.consent_by.slash(),
                server_certificate_fingerprint=verified.server_certificate_fingerprint,
                digest=verified.digest,
                signed_request=signed_request.decode("ascii"),
                status="pending",
                received_at=context.at,
            )
            session.add(row)
            session.flush()  # the pending-uniqueness indexes speak now, inside this transaction
            submitted = {**RegistrationEntry.of(row).to_dict(), "digest": row.digest}
            record("submit_registration", row.id, None, submitted)
            if auto_approve:
                self._decide(session, record, row, "approve", None, "auto-approval", context.at)
            return RegistrationEntry.of(row)

    def _refuse_replay(self, session: Session, digest: str) -> None:
        if session.scalar(
            sa.select(RegistrationRequestRow.id).where(RegistrationRequestRow.digest == digest)
        ):
            # The id stays out of the message: whoever replays captured bytes learns nothing.
            raise RegistryConflict("this request was already received")

    def refuse_replay(self, digest: str) -> None:
        """Raise :class:`RegistryConflict` when a request with this digest was received before.

        Cheap; the registration endpoint asks before it verifies signatures.
        """
        with self._transaction() as session:
            self._refuse_replay(session, digest)

    def _pending_conflict(self, session: Session, besides: str | None, **where: str) -> None:
        clauses = [getattr(RegistrationRequestRow, name) == value for name, value in where.items()]
        if besides is not None:
            clauses.append(RegistrationRequestRow.id != besides)
        pending = session.scalar(
            sa.select(RegistrationRequestRow).where(RegistrationRequestRow.status == "pending", *clauses)
        )
        if pending is not None:
            raise RegistryConflict("a request for the same is already pending")

    def _check_grantable(
        self,
        session: Session,
        request: RegistrationRequest,
        server_certificate: str,
        besides: str | None = None,
    ) -> None:
        """Raise unless ``request`` could be approved now and no other pending request
        (than ``besides``, the one being decided) asks the same.

        ``server_certificate`` is the fingerprint of the auth certificate that signed for
        the server: for a client request it must be one registered for that server.
        """
        if request.kind is RegistrationKind.AUTH_CERT:
            assert request.auth_certificate is not None  # an auth-cert request always has one
            self._member(session, request.server.owner)
            self._check_auth_certificate(session, request.auth_certificate, request.server)
            self._pending_conflict(
                session, besides, auth_certificate_fingerprint=fingerprint(request.auth_certificate)
            )
        else:
            assert request.client is not None  # a client request always has one
            server = self._server(session, request.server)
            if server_certificate not in {a.fingerprint for a in server.auth_certificates}:
                raise RegistryError(
                    f"the request is not signed with an auth certificate registered for {request.server}"
                )
            member = self._member(session, request.client.member)
            if any(
                c.member_id == member.id
                and c.subsystem is not None
                and c.subsystem.code == request.client.subsystem_code
                for c in server.clients
            ):
                raise RegistryConflict(f"{request.server} already hosts {request.client}")
            self._pending_conflict(
                session, besides, server=request.server.slash(), client=request.client.slash()
            )

    def _decide(
        self,
        session: Session,
        record: _Record,
        row: RegistrationRequestRow,
        decision: str,
        reason: str | None,
        actor: str,
        at: dt.datetime,
    ) -> None:
        if row.status != "pending":
            raise RegistryConflict(
                f"request {row.id} was already {row.status}; only a pending request is decided"
            )
        before = RegistrationEntry.of(row).to_dict()
        # Claim the decision first: of two officers deciding at once, the second finds the
        # row no longer pending (PostgreSQL waits on the first's row lock, then re-reads;
        # SQLite lets one writer in at a time), so nothing is applied twice.
        claimed = session.execute(  # an UPDATE: its result is a CursorResult with a rowcount
            sa.update(RegistrationRequestRow)
            .where(RegistrationRequestRow.id == row.id, RegistrationRequestRow.status == "pending")
            .values(status=_DECISIONS[decision], reason=reason, decided_at=at, decided_by=actor)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], claimed).rowcount != 1:
            raise RegistryConflict(
                f"request {row.id} was decided meanwhile; only a pending request is decided"
            )
        if decision == "approve":
            request = RegistrationRequest.from_bytes(
                base64.b64decode(json.loads(row.signed_request)["payload"])
            )
            # The registry may have changed since submission: check again, then apply.
            self._check_grantable(session, request, row.server_certificate_fingerprint, besides=row.id)
            self._apply(session, record, request)
        row.status, row.reason, row.decided_at, row.decided_by = _DECISIONS[decision], reason, at, actor
        record(f"{decision}_registration", row.id, before, RegistrationEntry.of(row).to_dict())

    def _apply(self, session: Session, record: _Record, request: RegistrationRequest) -> None:
        """Make the change an approved request asks for."""
        if request.kind is RegistrationKind.AUTH_CERT:
            cert = request.auth_certificate
            assert cert is not None and request.address is not None
            owner = self._member(session, request.server.owner)
            server = session.scalar(
                sa.select(SecurityServer).where(
                    SecurityServer.owner_id == owner.id, SecurityServer.code == request.server.server_code
                )
            )
            if server is None:
                server = SecurityServer(owner=owner, code=request.server.server_code, address=request.address)
                session.add(server)
                before: Any = None
            else:
                before = {
                    "address": server.address,
                    "auth_certificate_fingerprints": [a.fingerprint for a in server.auth_certificates],
                }
                server.address = request.address
            server.auth_certificates.append(AuthCertificate(pem=_pem(cert), fingerprint=fingerprint(cert)))
            after = {
                "address": request.address,
                "auth_certificate_fingerprints": [a.fingerprint for a in server.auth_certificates],
            }
            record("register_auth_certificate", request.server.slash(), before, after)
        else:
            assert request.client is not None
            server = self._server(session, request.server)
            member = self._member(session, request.client.member)
            subsystem = next((s for s in member.subsystems if s.code == request.client.subsystem_code), None)
            if subsystem is None:
                # As in X-Road, registering a client of a new subsystem creates the subsystem.
                subsystem = Subsystem(member=member, code=request.client.subsystem_code)
                session.add(subsystem)
                record("add_subsystem", request.client.member.slash(), None, {"subsystem": subsystem.code})
            before_clients = [self._client_slash(session, c.member, c.subsystem) for c in server.clients]
            server.clients.append(ServerClient(member=member, subsystem=subsystem))
            record(
                "add_server_client",
                request.server.slash(),
                {"clients": before_clients},
                {"clients": [*before_clients, request.client.slash()]},
            )

    def decide_registration(
        self,
        request_id: str,
        decision: str,
        *,
        reason: str | None = None,
        audit: AuditContext | None = None,
    ) -> RegistrationEntry:
        """Approve, reject (with a reason the submitting server can read) or revoke a pending request."""
        if decision not in _DECISIONS:
            raise RegistryError(f"decision must be one of {', '.join(_DECISIONS)}")
        if decision == "reject" and not (isinstance(reason, str) and reason.strip()):
            raise RegistryError("a rejection needs a reason the submitting server can read")
        if reason is not None:
            _text(reason, "reason")
        context = audit or AuditContext.local()
        with self._change(context) as (session, record):
            row = session.get(RegistrationRequestRow, _request_id(request_id))
            if row is None:
                raise RegistryNotFound(f"no registration request {request_id}")
            self._decide(session, record, row, decision, reason, context.actor, context.at)
            return RegistrationEntry.of(row)

    def registration(self, request_id: str) -> RegistrationEntry:
        """One request, by id; :class:`RegistryNotFound` when there is none."""
        with self._transaction() as session:
            row = session.get(RegistrationRequestRow, _request_id(request_id))
            if row is None:
                raise RegistryNotFound(f"no registration request {request_id}")
            return RegistrationEntry.of(row)

    def registrations(
        self, *, status: str | None = None, limit: int = MAX_REQUESTS_LISTED
    ) -> tuple[RegistrationEntry, ...]:
        """Requests, oldest first, optionally only those in ``status``; at most ``limit``."""
        if status is not None and status not in REQUEST_STATES:
            raise RegistryError(f"status must be one of {', '.join(REQUEST_STATES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_REQUESTS_LISTED:
            raise RegistryError(f"limit must be 1 to {MAX_REQUESTS_LISTED}")
        with self._transaction() as session:
            query = sa.select(RegistrationRequestRow).order_by(
                RegistrationRequestRow.received_at, RegistrationRequestRow.id
            )
            if status is not None:
                query = query.where(RegistrationRequestRow.status == status)
            return tuple(RegistrationEntry.of(row) for row in session.scalars(query.limit(limit)))

    def change_marker(self) -> tuple[int, int]:
        """How many audit-trail entries there are and the newest id: it moves with every change.

        The count matters on PostgreSQL, where ids are handed out before commit: a change
        with a lower id that commits after a higher one still moves the count.
        """
        with self._transaction() as session:
            count, newest = session.execute(sa.select(sa.func.count(), sa.func.max(AuditTrail.id))).one()
            return int(count or 0), int(newest or 0)

    def counts(self) -> dict[str, int]:
        """Rows per table, for operators and tests."""
        with self._transaction() as session:
            return {
                table.name: int(session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
                for table in Base.metadata.sorted_tables
            }


def _request_id(text: object) -> str:
    """A request id in its canonical form (a UUID); anything else names no request."""
    try:
        return str(uuid.UUID(str(text)))
    except ValueError as exc:
        raise RegistryNotFound(f"no registration request {str(text)[:64]!r}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLite checks foreign keys only when asked, per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's statement dump."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
