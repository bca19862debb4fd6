"""The server configuration store on a real SQLite file and a real PostgreSQL database.

Every refusal is checked for its type, its message and for leaving every table, the
audit trail and the change marker exactly as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.identifiers import GlobalGroupId, LocalGroupId, MemberId, ServiceId, SubsystemId
from core.messages import Protocol
from gateway.serverconf.model import (
    AccessGrant,
    ClientEntry,
    ConnectionType,
    EndpointPattern,
    LocalGroup,
    ServerConfSnapshot,
    ServiceEntry,
)
from gateway.serverconf.store import (
    SCHEMA_HEAD,
    AuditContext,
    Base,
    ServerConfConflict,
    ServerConfError,
    ServerConfNotFound,
    ServerConfStore,
)
from tests.unit.gateway.serverconf.conftest import NOW, make_certificate, pem

PADERBORN = MemberId("NRW", "MUN", "05774032")
GEWERBEAMT = PADERBORN.subsystem("gewerbeamt")
SOZIALAMT = PADERBORN.subsystem("sozialamt")
ARBEITSSCHUTZ = SubsystemId("NRW", "GOV", "057", "arbeitsschutz")
UNKNOWN = SubsystemId("NRW", "MUN", "05774032", "nowhere")
STRANGER = SubsystemId("NRW", "MUN", "09999999", "gewerbeamt")  # of a member the federation does not have
OWL = GlobalGroupId("NRW", "owl-kommunen")
BETRIEBE_V1 = GEWERBEAMT.service("betriebe", "v1")
BETRIEBE_V2 = GEWERBEAMT.service("betriebe", "v2")
AUSKUNFT = GEWERBEAMT.service("auskunft", "v1")
GET_BETRIEB = EndpointPattern.parse("GET", "/betriebe/{id}")
POST_BETRIEBE = EndpointPattern.parse("POST", "/betriebe")

KNOWN_CLIENTS = {PADERBORN, GEWERBEAMT, SOZIALAMT, ARBEITSSCHUTZ}


def known_client(client: object) -> bool:
    return client in KNOWN_CLIENTS


def known_group(group: GlobalGroupId) -> bool:
    return group == OWL


def no_members(_group: GlobalGroupId) -> tuple[SubsystemId, ...]:
    return ()


def dump(store: ServerConfStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a comparable form."""
    with store.engine.connect() as connection:
        return {
            table.name: sorted(
                (tuple(str(v) for v in row) for row in connection.execute(sa.select(table))), key=repr
            )
            for table in Base.metadata.sorted_tables
        }


@contextlib.contextmanager
def unchanged(store: ServerConfStore) -> Iterator[None]:
    """The block may only be refused: no table, no audit entry and no change marker moves."""
    before, marker, trail = dump(store), store.change_marker(), store.audit_trail(limit=1000)
    yield
    assert dump(store) == before
    assert store.change_marker() == marker
    assert store.audit_trail(limit=1000) == trail


def refused(
    store: ServerConfStore, kind: type[ServerConfError], match: str, change: Callable[[], object]
) -> ServerConfError:
    with unchanged(store), pytest.raises(kind, match=match) as caught:
        change()
    assert type(caught.value) is kind  # not a subclass: the code says what kind of refusal
    return caught.value


def rest(service: ServiceId = BETRIEBE_V1, **fields: Any) -> ServiceEntry:
    return ServiceEntry(service, "http://127.0.0.1:5603/api/v1", **fields)


@pytest.fixture
def provider(store: ServerConfStore, context: AuditContext) -> ServerConfStore:
    """Gewerbeamt as a client with a REST service (two endpoints) and a SOAP service."""
    store.add_client(GEWERBEAMT, context, connection=ConnectionType.HTTP, known_client=known_client)
    store.add_service(rest(), context)
    store.add_service(
        ServiceEntry(AUSKUNFT, "http://127.0.0.1:5602/auskunft", protocol=Protocol.SOAP), context
    )
    store.add_endpoint(BETRIEBE_V1, GET_BETRIEB, context)
    store.add_endpoint(BETRIEBE_V1, POST_BETRIEBE, context)
    return store


# -- opening ---------------------------------------------------------------------------------


def test_open_creates_the_schema_of_the_models_and_reopens(database_url: str) -> None:
    first = ServerConfStore.open(database_url)
    marker = first.change_marker()
    assert marker.startswith("0@")
    with first.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    first.close()
    with ServerConfStore.open(database_url) as again:  # migrating twice is a no-op
        assert again.change_marker() == marker
        assert again.snapshot() == ServerConfSnapshot(version=marker)


def test_a_relative_sqlite_path_is_resolved_against_base(tmp_path: Path) -> None:
    with ServerConfStore.open("sqlite:///state/serverconf.db", base=tmp_path) as store:
        assert store.change_marker().startswith("0@")
    assert (tmp_path / "state" / "serverconf.db").is_file()


def test_every_new_database_has_its_own_generation(tmp_path: Path) -> None:
    with ServerConfStore.open(f"sqlite:///{tmp_path / 'a.db'}") as a:
        with ServerConfStore.open(f"sqlite:///{tmp_path / 'b.db'}") as b:
            assert a.change_marker() != b.change_marker()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://", "needs a SQLite file"),
        ("sqlite:///:memory:", "needs a SQLite file"),
        ("mysql://localhost/serverconf", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
    ],
)
def test_open_refuses_unusable_urls(url: str, match: str) -> None:
    with pytest.raises(ServerConfError, match=match):
        ServerConfStore.open(url)


def test_open_refuses_another_stores_database(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('0003')")
    engine.dispose()
    with pytest.raises(ServerConfError, match="not a server configuration database of this version"):
        ServerConfStore.open(f"sqlite:///{path}")


def test_schema_head_names_the_newest_migration() -> None:
    # The store opens a database at SCHEMA_HEAD without Alembic: a new migration moves it too.
    migrations = Path(__file__).resolve().parents[4] / "gateway" / "serverconf" / "migrations"
    assert ScriptDirectory(str(migrations)).get_heads() == [SCHEMA_HEAD]


def test_a_database_stamped_at_no_revision_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "serverconf.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    engine.dispose()
    with ServerConfStore.open(f"sqlite:///{path}") as store:
        assert store.change_marker().startswith("0@")
        with store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == SCHEMA_HEAD
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_an_up_to_date_database_opens_without_alembic(database_url: str) -> None:
    # Alembic, once imported, stays in a security server's memory for its whole life.
    ServerConfStore.open(database_url).close()
    script = (
        "import sys\n"
        "from gateway.serverconf.store import ServerConfStore\n"
        f"with ServerConfStore.open({database_url!r}) as store:\n"
        "    store.snapshot()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# -- clients and their certificates --------------------------------------------------------


def test_clients_are_added_changed_listed_and_removed(store: ServerConfStore, context: AuditContext) -> None:
    added = store.add_client(GEWERBEAMT, context, known_client=known_client)
    assert added == {
        "id": "NRW/MUN/05774032/gewerbeamt",
        "connection": "https-mtls",
        "token_required": False,
        "certificates": [],
    }
    store.add_client(PADERBORN, context, connection=ConnectionType.HTTP, known_client=known_client)
    changed = store.update_client(GEWERBEAMT, context, connection=ConnectionType.HTTPS, token_required=True)
    assert (changed["connection"], changed["token_required"]) == ("https", True)
    assert [c["id"] for c in store.list_clients()] == ["NRW/MUN/05774032/gewerbeamt", "NRW/MUN/05774032"]
    snapshot = store.snapshot()
    assert snapshot.client(GEWERBEAMT) == ClientEntry(GEWERBEAMT, ConnectionType.HTTPS, token_required=True)
    assert snapshot.client(PADERBORN) == ClientEntry(PADERBORN, ConnectionType.HTTP)
    store.remove_client(PADERBORN, context)
    assert [c["id"] for c in store.list_clients()] == ["NRW/MUN/05774032/gewerbeamt"]
    operations = [(e["operation"], e["target"]) for e in store.audit_trail()]
    assert operations == [
        ("add_client", "NRW/MUN/05774032/gewerbeamt"),
        ("add_client", "NRW/MUN/05774032"),
        ("update_client", "NRW/MUN/05774032/gewerbeamt"),
        ("remove_client", "NRW/MUN/05774032"),
    ]


def test_client_refusals(store: ServerConfStore, context: AuditContext) -> None:
    store.add_client(GEWERBEAMT, context, known_client=known_client)
    refused(
        store,
        ServerConfConflict,
        "NRW/MUN/05774032/gewerbeamt is already a client",
        lambda: store.add_client(GEWERBEAMT, context, known_client=known_client),
    )
    error = refused(
        store,
        ServerConfNotFound,
        "member NRW/MUN/09999999 is not in the global configuration",
        lambda: store.add_client(STRANGER, context, known_client=known_client),
    )
    assert error.code == "unknown_reference"
    # A new subsystem of a known member may be added before the registry has it.
    assert store.add_client(UNKNOWN, context, known_client=known_client)["id"] == UNKNOWN.slash()
    refused(
        store,
        ServerConfError,
        "nothing to change",
        lambda: store.update_client(GEWERBEAMT, context),
    )
    refused(
        store,
        ServerConfError,
        "connection must be a ConnectionType",
        lambda: store.update_client(GEWERBEAMT, context, connection="http"),  # type: ignore[arg-type]
    )
    refused(
        store,
        ServerConfNotFound,
        "NRW/MUN/05774032/sozialamt is not a client of this security server",
        lambda: store.update_client(SOZIALAMT, context, token_required=True),
    )
    refused(
        store,
        ServerConfNotFound,
        "is not a client of this security server",
        lambda: store.remove_client(SOZIALAMT, context),
    )
    refused(
        store,
        ServerConfError,
        "a client is a member or subsystem identifier",
        lambda: store.add_client("NRW/MUN/05774032/gewerbeamt", context, known_client=known_client),  # type: ignore[arg-type]
    )


def test_client_certificates(store: ServerConfStore, context: AuditContext) -> None:
    store.add_client(GEWERBEAMT, context, known_client=known_client)
    certificate = make_certificate("gewerbeamt-fachverfahren")
    expected = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    summary = store.add_client_certificate(GEWERBEAMT, pem(certificate), context)
    assert summary == {
        "fingerprint": expected,
        "subject": "CN=gewerbeamt-fachverfahren",
        "not_after": (NOW + dt.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert store.list_clients()[0]["certificates"] == [summary]
    entry = store.snapshot().client(GEWERBEAMT)
    assert entry is not None
    assert entry.certificate_fingerprints == frozenset({expected})
    assert entry.certificates_pem == (pem(certificate),)
    colons = ":".join(expected[i : i + 2] for i in range(0, 64, 2)).upper()
    store.remove_client_certificate(GEWERBEAMT, colons, context)
    assert store.list_clients()[0]["certificates"] == []
    assert [e["operation"] for e in store.audit_trail()][-2:] == [
        "add_client_certificate",
        "remove_client_certificate",
    ]


def test_client_certificate_refusals(store: ServerConfStore, context: AuditContext) -> None:
    store.add_client(GEWERBEAMT, context, known_client=known_client)
    certificate = make_certificate("fachverfahren")
    store.add_client_certificate(GEWERBEAMT, pem(certificate), context)
    expired = make_certificate(
        "old", not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cases: list[tuple[type[ServerConfError], str, Callable[[], object]]] = [
        (
            ServerConfConflict,
            "is already registered for NRW/MUN/05774032/gewerbeamt",
            lambda: store.add_client_certificate(GEWERBEAMT, pem(certificate), context),
        ),
        (
            ServerConfError,
            "CN=old expired at",
            lambda: store.add_client_certificate(GEWERBEAMT, pem(expired), context),
        ),
        (
            ServerConfError,
            "not a PEM certificate",
            lambda: store.add_client_certificate(
                GEWERBEAMT, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", context
            ),
        ),
        (
            ServerConfError,
            "not a PEM certificate",
            lambda: store.add_client_certificate(GEWERBEAMT, "just text", context),
        ),
        (
            ServerConfError,
            "exactly one certificate, found 2",
            lambda: store.add_client_certificate(
                GEWERBEAMT, pem(make_certificate("a")) + pem(make_certificate("b")), context
            ),
        ),
        (
            ServerConfError,
            "holds a private key",
            lambda: store.add_client_certificate(GEWERBEAMT, key_pem + pem(make_certificate("c")), context),
        ),
        (
            ServerConfNotFound,
            "is not a client of this security server",
            lambda: store.add_client_certificate(SOZIALAMT, pem(make_certificate("d")), context),
        ),
        (
            ServerConfError,
            "SHA-256 of its DER in hex",
            lambda: store.remove_client_certificate(GEWERBEAMT, "abc", context),
        ),
        (
            ServerConfNotFound,
            "no certificate 0{64} is registered",
            lambda: store.remove_client_certificate(GEWERBEAMT, "0" * 64, context),
        ),
    ]
    for kind, match, change in cases:
        refused(store, kind, match, change)


# -- services and endpoints -----------------------------------------------------------------


def test_services_are_added_changed_and_listed(provider: ServerConfStore, context: AuditContext) -> None:
    store = provider
    store.add_service(rest(BETRIEBE_V2, openapi_url="http://127.0.0.1:5603/openapi.json"), context)
    changed = store.update_service(BETRIEBE_V1, context, base_url="https://backend.example/v1", timeout_s=12)
    assert changed == {
        "id": "NRW/MUN/05774032/gewerbeamt/betriebe/v1",
        "protocol": "rest",
        "base_url": "https://backend.example/v1",
        "timeout_s": 12.0,
        "verify_tls": True,
        "wsdl_url": None,
        "openapi_url": None,
    }
    store.update_service(AUSKUNFT, context, wsdl_url="http://127.0.0.1:5602/auskunft.wsdl", verify_tls=False)
    assert [s["id"] for s in store.list_services()] == [
        "NRW/MUN/05774032/gewerbeamt/betriebe/v1",
        "NRW/MUN/05774032/gewerbeamt/auskunft/v1",
        "NRW/MUN/05774032/gewerbeamt/betriebe/v2",
    ]
    snapshot = store.snapshot()
    soap = snapshot.service(AUSKUNFT)
    assert soap is not None and soap.description_url == "http://127.0.0.1:5602/auskunft.wsdl"
    assert soap.verify_tls is False
    assert snapshot.service(BETRIEBE_V2) == rest(
        BETRIEBE_V2, openapi_url="http://127.0.0.1:5603/openapi.json"
    )
    assert snapshot.service(BETRIEBE_V1) == ServiceEntry(BETRIEBE_V1, "https://backend.example/v1", 12.0)


def test_service_refusals(provider: ServerConfStore, context: AuditContext) -> None:
    store = provider
    refused(
        store,
        ServerConfNotFound,
        "its provider NRW/GOV/057/arbeitsschutz is not a client of this security server",
        lambda: store.add_service(rest(ARBEITSSCHUTZ.service("betriebe", "v1")), context),
    )
    refused(
        store,
        ServerConfConflict,
        "service NRW/MUN/05774032/gewerbeamt/betriebe/v1 is already configured",
        lambda: store.add_service(rest(timeout_s=5.0), context),
    )
    refused(
        store,
        ServerConfError,
        "wsdl_url is for SOAP services only",
        lambda: store.update_service(BETRIEBE_V1, context, wsdl_url="http://127.0.0.1/x?wsdl"),
    )
    refused(
        store,
        ServerConfError,
        "timeout_s must be positive",
        lambda: store.update_service(BETRIEBE_V1, context, timeout_s=0),
    )
    refused(
        store,
        ServerConfError,
        "cannot change protocol of a service",
        lambda: store.update_service(BETRIEBE_V1, context, protocol=Protocol.SOAP),
    )
    refused(store, ServerConfError, "nothing to change", lambda: store.update_service(BETRIEBE_V1, context))
    refused(
        store,
        ServerConfNotFound,
        "service NRW/MUN/05774032/gewerbeamt/betriebe/v2 is not configured here",
        lambda: store.update_service(BETRIEBE_V2, context, timeout_s=5),
    )
    refused(
        store,
        ServerConfNotFound,
        "service NRW/MUN/05774032/gewerbeamt/betriebe is not configured here",
        lambda: store.remove_service(BETRIEBE_V1.unversioned(), context),
    )


def test_endpoints_are_added_by_hand_and_listed(provider: ServerConfStore, context: AuditContext) -> None:
    store = provider
    assert store.list_endpoints(BETRIEBE_V1) == [
        {"service": BETRIEBE_V1.slash(), "method": "GET", "path": "/betriebe/*", "from_openapi": False},
        {"service": BETRIEBE_V1.slash(), "method": "POST", "path": "/betriebe", "from_openapi": False},
    ]
    # Built directly, not by parse(): the store parses again, so the template is read as *.
    store.add_endpoint(BETRIEBE_V1, EndpointPattern("delete", "/betriebe/{id}"), context)
    assert store.list_endpoints()[-1]["method"] == "DELETE"
    assert store.list_endpoints()[-1]["path"] == "/betriebe/*"
    assert store.snapshot().endpoints_of(BETRIEBE_V1) == (
        GET_BETRIEB,
        POST_BETRIEBE,
        EndpointPattern("DELETE", "/betriebe/*"),
    )


def test_endpoint_refusals(provider: ServerConfStore, context: AuditContext) -> None:
    store = provider
    refused(
        store,
        ServerConfConflict,
        r"GET /betriebe/\* is already an endpoint of .*betriebe/v1 \(configured by hand\)",
        lambda: store.add_endpoint(BETRIEBE_V1, EndpointPattern.parse("get", "/betriebe/{nr}"), context),
    )
    refused(
        store,
        ServerConfError,
        "is a SOAP service: endpoints are for REST",
        lambda: store.add_endpoint(AUSKUNFT, GET_BETRIEB, context),
    )
    refused(
        store,
        ServerConfError,
        "matches every path",
        lambda: store.add_endpoint(BETRIEBE_V1, EndpointPattern("GET", "/**"), context),
    )
    refused(
        store,
        ServerConfError,
        "segment '%2e' has a character",
        lambda: store.add_endpoint(BETRIEBE_V1, EndpointPattern("GET", "/a/%2e"), context),
    )
    refused(
        store,
        ServerConfNotFound,
        "service .*betriebe/v2 is not configured here",
        lambda: store.add_endpoint(BETRIEBE_V2, GET_BETRIEB, context),
    )
    refused(
        store,
        ServerConfNotFound,
        r"PUT /betriebe is not an endpoint of NRW/MUN/05774032/gewerbeamt/betriebe/v1",
        lambda: store.remove_endpoint(BETRIEBE_V1, EndpointPattern.parse("PUT", "/betriebe"), context),
    )
    refused(
        store,
        ServerConfError,
        "is a SOAP service",
        lambda: store.replace_openapi_endpoints(AUSKUNFT, [GET_BETRIEB], context),
    )


def test_a_service_and_its_documents_endpoints_are_added_together_or_not_at_all(
    provider: ServerConfStore, context: AuditContext
) -> None:
    store = provider
    register = GEWERBEAMT.service("register", "v1")
    service = rest(register, openapi_url="http://127.0.0.1:5603/openapi.json")
    # A pattern built without EndpointPattern.parse, matching every path: refused with the
    # service, which is not added either.
    refused(
        store,
        ServerConfError,
        "matches every path",
        lambda: store.add_service(service, context, openapi_endpoints=[EndpointPattern("*", "/**")]),
    )
    store.add_service(service, context, openapi_endpoints=[EndpointPattern.parse("GET", "/auskunft/{id}")])
    listed = store.list_endpoints(register)
    assert [(e["method"], e["path"], e["from_openapi"]) for e in listed] == [("GET", "/auskunft/*", True)]


def test_openapi_endpoints_are_replaced_keeping_what_stays_and_what_was_configured_by_hand(
    provider: ServerConfStore, context: AuditContext
) -> None:
    store = provider
    listing = EndpointPattern.parse("GET", "/betriebe")
    search = EndpointPattern.parse("GET", "/suche")
    first = store.replace_openapi_endpoints(BETRIEBE_V1, [listing, search, GET_BETRIEB], context)
    # GET /betriebe/* was configured by hand and stays so; the other two come from the document.
    assert [(e["method"], e["path"], e["from_openapi"]) for e in first] == [
        ("GET", "/betriebe/*", False),
        ("POST", "/betriebe", False),
        ("GET", "/betriebe", True),
        ("GET", "/suche", True),
    ]
    for endpoint in (listing, search):
        store.grant(
            BETRIEBE_V1,
            ARBEITSSCHUTZ,
            context,
            endpoint=endpoint,
            known_client=known_client,
            known_global_group=known_group,
        )
    second = store.replace_openapi_endpoints(
        BETRIEBE_V1, [listing, EndpointPattern.parse("GET", "/neu")], context
    )
    assert [(e["method"], e["path"], e["from_openapi"]) for e in second] == [
        ("GET", "/betriebe/*", False),
        ("POST", "/betriebe", False),
        ("GET", "/betriebe", True),
        ("GET", "/neu", True),
    ]
    # The right on GET /suche went with it, audited; the one on GET /betriebe stayed.
    assert [g["endpoint"] for g in store.list_grants()] == [{"method": "GET", "path": "/betriebe"}]
    trail = store.audit_trail(limit=1000)
    assert [(e["operation"], e["target"]) for e in trail[-4:]] == [
        ("revoke", "NRW/MUN/05774032/gewerbeamt/betriebe GET /suche SUBSYSTEM:NRW/GOV/057/arbeitsschutz"),
        ("remove_endpoint", "NRW/MUN/05774032/gewerbeamt/betriebe/v1 GET /suche"),
        ("add_endpoint", "NRW/MUN/05774032/gewerbeamt/betriebe/v1 GET /neu"),
        ("replace_openapi_endpoints", "NRW/MUN/05774032/gewerbeamt/betriebe/v1"),
    ]
    assert (trail[-1]["before"], trail[-1]["after"]) == (
        ["GET /betriebe", "GET /suche"],
        ["GET /betriebe", "GET /neu"],
    )


# -- access rights ----------------------------------------------------------------------------


def test_grants_decide_what_the_snapshot_allows(provider: ServerConfStore, context: AuditContext) -> None:
    store = provider
    store.add_group("pruefer", context, description="Prüfdienste")
    store.add_group_member("pruefer", SOZIALAMT, context, known_client=known_client)

    def grant(subject: Any, **kwargs: Any) -> dict[str, Any]:
        return store.grant(
            BETRIEBE_V1, subject, context, known_client=known_client, known_global_group=known_group, **kwargs
        )

    assert grant(ARBEITSSCHUTZ) == {
        "service": "NRW/MUN/05774032/gewerbeamt/betriebe",
        "subject": "SUBSYSTEM:NRW/GOV/057/arbeitsschutz",
        "endpoint": None,
    }
    assert grant(OWL, endpoint=GET_BETRIEB)["endpoint"] == {"method": "GET", "path": "/betriebe/*"}
    assert grant(LocalGroupId("pruefer"), endpoint=POST_BETRIEBE)["subject"] == "LOCALGROUP:pruefer"
    snapshot = store.snapshot()
    assert snapshot.grants == (
        AccessGrant(GEWERBEAMT, "betriebe", ARBEITSSCHUTZ),
        AccessGrant(GEWERBEAMT, "betriebe", OWL, GET_BETRIEB),
        AccessGrant(GEWERBEAMT, "betriebe", LocalGroupId("pruefer"), POST_BETRIEBE),
    )

    def members(group: GlobalGroupId) -> tuple[SubsystemId, ...]:
        return (GEWERBEAMT,) if group == OWL else ()

    # Rights hold for every version of the code; deny by default for everything else.
    assert snapshot.allows(ARBEITSSCHUTZ, BETRIEBE_V2, members)
    assert snapshot.allows(GEWERBEAMT, BETRIEBE_V1, members, method="GET", path="/betriebe/7")
    assert not snapshot.allows(GEWERBEAMT, BETRIEBE_V1, members, method="POST", path="/betriebe")
    assert snapshot.allows(SOZIALAMT, BETRIEBE_V1, members, method="POST", path="/betriebe")
    assert not snapshot.allows(SOZIALAMT, BETRIEBE_V1, members, method="GET", path="/betriebe/7")
    assert not snapshot.allows(PADERBORN, BETRIEBE_V1, members)
    assert store.list_grants(BETRIEBE_V2) == store.list_grants()  # any version: the same code
    assert store.list_grants(AUSKUNFT) == []
    store.revoke(BETRIEBE_V1.unversioned(), OWL, context, endpoint=EndpointPattern("GET", "/betriebe/{x}"))
    store.revoke(BETRIEBE_V1, ARBEITSSCHUTZ, context)
    assert [g["subject"] for g in store.list_grants()] == ["LOCALGROUP:pruefer"]


def test_grant_refusals_name_what_is_unknown(provider: ServerConfStore, context: AuditContext) -> None:
    store = provider
    store.grant(
        BETRIEBE_V1, ARBEITSSCHUTZ, context, known_client=known_client, known_global_group=known_group
    )

    def grant(service: ServiceId, subject: Any, **kwargs: Any) -> Callable[[], object]:
        return lambda: store.grant(
            service, subject, context, known_client=known_client, known_global_group=known_group, **kwargs
        )

    cases: list[tuple[type[ServerConfError], str, Callable[[], object]]] = [
        (
            ServerConfConflict,
            "SUBSYSTEM:NRW/GOV/057/arbeitsschutz is already granted the whole service of .*/betriebe",
            grant(BETRIEBE_V1.unversioned(), ARBEITSSCHUTZ),
        ),
        (
            ServerConfNotFound,
            "service NRW/MUN/05774032/gewerbeamt/meldung is not configured here",
            grant(GEWERBEAMT.service("meldung"), ARBEITSSCHUTZ),
        ),
        (
            ServerConfNotFound,
            "service .*/betriebe/v2 is not configured here",
            grant(BETRIEBE_V2, ARBEITSSCHUTZ),
        ),
        (
            ServerConfNotFound,
            r"DELETE /betriebe/\* is not an endpoint of NRW/MUN/05774032/gewerbeamt/betriebe/v1",
            grant(BETRIEBE_V1, ARBEITSSCHUTZ, endpoint=EndpointPattern.parse("DELETE", "/betriebe/{id}")),
        ),
        (
            ServerConfNotFound,
            "NRW/MUN/05774032/nowhere is not a member or subsystem in the global configuration",
            grant(BETRIEBE_V1, UNKNOWN),
        ),
        (
            ServerConfNotFound,
            "global group NRW/elsewhere is not in the global configuration",
            grant(BETRIEBE_V1, GlobalGroupId("NRW", "elsewhere")),
        ),
        (
            ServerConfNotFound,
            "local group pruefer does not exist",
            grant(BETRIEBE_V1, LocalGroupId("pruefer")),
        ),
        (
            ServerConfError,
            "'listMethods' is a metadata service, which every client may call",
            grant(GEWERBEAMT.service("listMethods"), ARBEITSSCHUTZ),
        ),
        (
            ServerConfError,
            "a right is granted to a member, subsystem, global group or local group",
            grant(BETRIEBE_V1, BETRIEBE_V2),
        ),
        (
            ServerConfNotFound,
            "SUBSYSTEM:NRW/MUN/05774032/sozialamt has no right on the whole service of .*/betriebe",
            lambda: store.revoke(BETRIEBE_V1, SOZIALAMT, context),
        ),
        (
            ServerConfNotFound,
            r"has no right on GET /betriebe/\* of",
            lambda: store.revoke(BETRIEBE_V1, ARBEITSSCHUTZ, context, endpoint=GET_BETRIEB),
        ),
    ]
    for kind, match, change in cases:
        refused(store, kind, match, change)


def test_removing_endpoints_and_services_takes_their_rights_along(
    provider: ServerConfStore, context: AuditContext
) -> None:
    store = provider
    store.add_service(rest(BETRIEBE_V2), context)
    store.add_endpoint(BETRIEBE_V2, GET_BETRIEB, context)
    for endpoint in (None, GET_BETRIEB, POST_BETRIEBE):
        store.grant(
            BETRIEBE_V1,
            ARBEITSSCHUTZ,
            context,
            endpoint=endpoint,
            known_client=known_client,
            known_global_group=known_group,
        )
    store.remove_endpoint(BETRIEBE_V1, POST_BETRIEBE, context)
    assert [g["endpoint"] for g in store.list_grants()] == [None, {"method": "GET", "path": "/betriebe/*"}]
    # v2 remains: the right on the whole code stays; the one on v1's endpoint goes with v1.
    store.remove_service(BETRIEBE_V1, context)
    assert store.list_grants() == [
        {"service": "NRW/MUN/05774032/gewerbeamt/betriebe", "subject": str(ARBEITSSCHUTZ), "endpoint": None}
    ]
    assert store.list_endpoints() == [
        {"service": BETRIEBE_V2.slash(), "method": "GET", "path": "/betriebe/*", "from_openapi": False}
    ]
    store.remove_service(BETRIEBE_V2, context)
    assert store.list_grants() == [] and store.list_endpoints() == []
    removed = [(e["operation"], e["before"]) for e in store.audit_trail(limit=1000) if e["after"] is None]
    assert (
        "revoke",
        {"service": "NRW/MUN/05774032/gewerbeamt/betriebe", "subject": str(ARBEITSSCHUTZ), "endpoint": None},
    ) in removed
    assert [op for op, _ in removed].count("remove_service") == 2


def test_a_client_in_use_is_not_removed_and_the_refusal_says_by_what(
    provider: ServerConfStore, context: AuditContext
) -> None:
    store = provider
    store.add_client(SOZIALAMT, context, known_client=known_client)
    store.add_group("pruefer", context)
    store.add_group_member("pruefer", SOZIALAMT, context, known_client=known_client)
    store.grant(BETRIEBE_V1, SOZIALAMT, context, known_client=known_client, known_global_group=known_group)
    refused(
        store,
        ServerConfConflict,
        "client NRW/MUN/05774032/gewerbeamt is still in use: it provides "
        "NRW/MUN/05774032/gewerbeamt/betriebe/v1, NRW/MUN/05774032/gewerbeamt/auskunft/v1",
        lambda: store.remove_client(GEWERBEAMT, context),
    )
    refused(
        store,
        ServerConfConflict,
        "client NRW/MUN/05774032/sozialamt is still in use: it is granted access to "
        "NRW/MUN/05774032/gewerbeamt/betriebe; it is a member of local group\\(s\\) pruefer",
        lambda: store.remove_client(SOZIALAMT, context),
    )
    store.revoke(BETRIEBE_V1, SOZIALAMT, context)
    store.remove_group_member("pruefer", SOZIALAMT, context)
    store.add_client_certificate(SOZIALAMT, pem(make_certificate("sozialamt")), context)
    store.remove_client(SOZIALAMT, context)  # its certificate goes with it
    assert [c["id"] for c in store.list_clients()] == [GEWERBEAMT.slash()]


# -- local groups -----------------------------------------------------------------------------


def test_local_groups(provider: ServerConfStore, context: AuditContext) -> None:
    store = provider
    assert store.add_group("pruefer", context, description="Prüfdienste") == {
        "code": "pruefer",
        "description": "Prüfdienste",
        "members": [],
    }
    group = store.add_group_member("pruefer", ARBEITSSCHUTZ, context, known_client=known_client)
    assert group["members"] == ["NRW/GOV/057/arbeitsschutz"]
    store.add_group_member("pruefer", PADERBORN, context, known_client=known_client)
    assert store.snapshot().groups["pruefer"].members == frozenset({ARBEITSSCHUTZ, PADERBORN})
    store.grant(
        BETRIEBE_V1,
        LocalGroupId("pruefer"),
        context,
        known_client=known_client,
        known_global_group=known_group,
    )
    cases: list[tuple[type[ServerConfError], str, Callable[[], object]]] = [
        (
            ServerConfConflict,
            "local group pruefer already exists",
            lambda: store.add_group("pruefer", context),
        ),
        (
            ServerConfConflict,
            "local group pruefer is still granted access to NRW/MUN/05774032/gewerbeamt/betriebe",
            lambda: store.remove_group("pruefer", context),
        ),
        (
            ServerConfConflict,
            "NRW/GOV/057/arbeitsschutz is already a member of local group pruefer",
            lambda: store.add_group_member("pruefer", ARBEITSSCHUTZ, context, known_client=known_client),
        ),
        (
            ServerConfNotFound,
            "NRW/MUN/05774032/nowhere is not a member or subsystem in the global configuration",
            lambda: store.add_group_member("pruefer", UNKNOWN, context, known_client=known_client),
        ),
        (
            ServerConfNotFound,
            "local group leitung does not exist",
            lambda: store.add_group_member("leitung", ARBEITSSCHUTZ, context, known_client=known_client),
        ),
        (
            ServerConfNotFound,
            "NRW/MUN/05774032/sozialamt is not a member of local group pruefer",
            lambda: store.remove_group_member("pruefer", SOZIALAMT, context),
        ),
        (
            ServerConfNotFound,
            "local group leitung does not exist",
            lambda: store.remove_group("leitung", context),
        ),
        (ServerConfError, "groupCode", lambda: store.add_group("with space", context)),
        (
            ServerConfError,
            "a description is a string of at most 4096",
            lambda: store.add_group("lang", context, description="x" * 4097),
        ),
    ]
    for kind, match, change in cases:
        refused(store, kind, match, change)
    store.revoke(BETRIEBE_V1, LocalGroupId("pruefer"), context)
    store.remove_group("pruefer", context)  # its members go with it
    assert store.list_groups() == []
    assert store.audit_trail(limit=1000)[-1]["before"] == {
        "code": "pruefer",
        "description": "Prüfdienste",
        "members": ["NRW/GOV/057/arbeitsschutz", "NRW/MUN/05774032"],
    }


# -- seeding, the change marker, the audit trail ------------------------------------------------


def _file_snapshot() -> ServerConfSnapshot:
    return ServerConfSnapshot(
        clients={GEWERBEAMT: ClientEntry(GEWERBEAMT, ConnectionType.HTTP)},
        services=(rest(), rest(BETRIEBE_V2)),
        grants=(
            AccessGrant(GEWERBEAMT, "betriebe", ARBEITSSCHUTZ),
            AccessGrant(GEWERBEAMT, "betriebe", OWL),
            AccessGrant(GEWERBEAMT, "betriebe", ARBEITSSCHUTZ),  # listed twice: means it once
        ),
        version="file",
    )


def test_seed_imports_the_file_once_into_a_store_that_never_held_anything(
    store: ServerConfStore,
) -> None:
    seeding = AuditContext("configuration-file", NOW)
    assert store.seed(ServerConfSnapshot(version="file"), seeding) is False  # nothing to import
    assert store.seed(_file_snapshot(), seeding) is True
    snapshot = store.snapshot()
    assert snapshot.version == store.change_marker()
    assert dataclasses.replace(snapshot, version="file") == dataclasses.replace(
        _file_snapshot(), grants=_file_snapshot().grants[:2]
    )
    assert {e["actor"] for e in store.audit_trail()} == {"configuration-file"}
    assert [e["operation"] for e in store.audit_trail()] == [
        "add_client",
        "add_service",
        "add_service",
        "grant",
        "grant",
    ]
    # Seeded once: later starts (and a changed file) leave the store alone.
    with unchanged(store):
        assert store.seed(_file_snapshot(), seeding) is False


def test_a_snapshot_seeded_is_the_snapshot_read_back(store: ServerConfStore) -> None:
    whole = ServerConfSnapshot(
        clients={
            GEWERBEAMT: ClientEntry(GEWERBEAMT, ConnectionType.HTTPS, token_required=True),
            PADERBORN: ClientEntry(PADERBORN),
        },
        services=(rest(), ServiceEntry(AUSKUNFT, "http://127.0.0.1:5602/auskunft", protocol=Protocol.SOAP)),
        endpoints={(GEWERBEAMT, "betriebe"): (GET_BETRIEB, POST_BETRIEBE)},
        grants=(
            AccessGrant(GEWERBEAMT, "betriebe", LocalGroupId("pruefer"), GET_BETRIEB),
            AccessGrant(GEWERBEAMT, "auskunft", ARBEITSSCHUTZ),
        ),
        groups={"pruefer": LocalGroup("pruefer", "Prüfdienste", frozenset({SOZIALAMT, ARBEITSSCHUTZ}))},
        version="file",
    )
    assert store.seed(whole, AuditContext("configuration-file", NOW)) is True
    assert dataclasses.replace(store.snapshot(), version="file") == whole


def test_a_missing_version_is_named_in_the_refusal(provider: ServerConfStore) -> None:
    refused(
        provider,
        ServerConfNotFound,
        r"service NRW/MUN/05774032/gewerbeamt/betriebe is not configured here "
        r"\(configured: NRW/MUN/05774032/gewerbeamt/betriebe/v1\)",
        lambda: provider.list_endpoints(BETRIEBE_V1.unversioned()),
    )


def test_seed_does_not_import_into_a_store_emptied_by_hand(
    store: ServerConfStore, context: AuditContext
) -> None:
    store.add_client(SOZIALAMT, context, known_client=known_client)
    store.remove_client(SOZIALAMT, context)
    with unchanged(store):
        assert store.seed(_file_snapshot(), AuditContext("configuration-file", NOW)) is False


def test_seed_refuses_an_inconsistent_file_and_writes_nothing(store: ServerConfStore) -> None:
    orphan = dataclasses.replace(_file_snapshot(), clients={})
    refused(
        store,
        ServerConfNotFound,
        "the configuration file's service .*betriebe/v1: "
        "its provider NRW/MUN/05774032/gewerbeamt is not a client",
        lambda: store.seed(orphan, AuditContext("configuration-file", NOW)),
    )
    twice = dataclasses.replace(_file_snapshot(), services=(rest(), rest()))
    refused(
        store,
        ServerConfConflict,
        "the configuration file's service .*betriebe/v1 is already configured",
        lambda: store.seed(twice, AuditContext("configuration-file", NOW)),
    )
    nowhere = dataclasses.replace(_file_snapshot(), grants=(AccessGrant(GEWERBEAMT, "meldung", OWL),))
    refused(
        store,
        ServerConfNotFound,
        "service NRW/MUN/05774032/gewerbeamt/meldung is not configured here",
        lambda: store.seed(nowhere, AuditContext("configuration-file", NOW)),
    )
    assert store.change_marker().startswith("0@")


def test_the_change_marker_moves_with_every_change_by_any_store_on_the_database(
    database_url: str, context: AuditContext
) -> None:
    with ServerConfStore.open(database_url) as ours, ServerConfStore.open(database_url) as theirs:
        markers = [ours.change_marker()]
        ours.add_client(GEWERBEAMT, context, known_client=known_client)
        markers.append(theirs.change_marker())
        theirs.add_group("pruefer", context)
        markers.append(ours.change_marker())
        with pytest.raises(ServerConfConflict):
            theirs.add_group("pruefer", context)
        assert ours.change_marker() == markers[-1]  # a refusal is not a change
        assert len(set(markers)) == 3
        assert ours.snapshot().version == theirs.change_marker()


def test_a_change_made_by_another_process_moves_the_marker(database_url: str, context: AuditContext) -> None:
    with ServerConfStore.open(database_url) as store:
        before = store.change_marker()
        script = (
            "import datetime as dt\n"
            "from core.identifiers import SubsystemId\n"
            "from gateway.serverconf.store import AuditContext, ServerConfStore\n"
            f"with ServerConfStore.open({database_url!r}) as store:\n"
            "    store.add_client(SubsystemId('NRW', 'GOV', '057', 'arbeitsschutz'),\n"
            "        AuditContext('other-process', dt.datetime.now(dt.UTC)), known_client=lambda c: True)\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=60)
        assert store.change_marker() != before
        assert store.snapshot().hosts(ARBEITSSCHUTZ)
        assert store.audit_trail()[-1]["actor"] == "other-process"


def test_concurrent_changes_queue_and_the_second_duplicate_is_refused(
    database_url: str, context: AuditContext
) -> None:
    stores = [ServerConfStore.open(database_url) for _ in range(4)]
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def add(store: ServerConfStore) -> None:
        start.wait()
        try:
            store.add_group("pruefer", context)
            outcomes.append("added")
        except ServerConfConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=add, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert sorted(outcomes) == ["added", "conflict", "conflict", "conflict"]
        assert stores[0].change_marker().startswith("1@")
        assert len(stores[0].audit_trail()) == 1
    finally:
        for store in stores:
            store.close()


def test_the_audit_trail_records_who_when_what_and_pages(
    store: ServerConfStore, context: AuditContext
) -> None:
    store.add_client(GEWERBEAMT, context, known_client=known_client)
    store.update_client(GEWERBEAMT, AuditContext("ops", NOW + dt.timedelta(minutes=5)), token_required=True)
    first, second = store.audit_trail()
    assert first == {
        "id": first["id"],
        "at": "2025-03-01T12:00:00.000000Z",
        "actor": "admin@paderborn",
        "operation": "add_client",
        "target": "NRW/MUN/05774032/gewerbeamt",
        "before": None,
        "after": {
            "id": GEWERBEAMT.slash(),
            "connection": "https-mtls",
            "token_required": False,
            "certificates": [],
        },
        "correlation_id": "corr-1",
    }
    assert (second["actor"], second["at"], second["correlation_id"]) == (
        "ops",
        "2025-03-01T12:05:00.000000Z",
        None,
    )
    assert second["before"]["token_required"] is False and second["after"]["token_required"] is True
    assert store.audit_trail(after_id=first["id"]) == [second]
    assert store.audit_trail(limit=1) == [first]
    with pytest.raises(ServerConfError, match="limit must be 1 to 1000"):
        store.audit_trail(limit=0)
    with pytest.raises(ServerConfError, match="after_id must be a non-negative integer"):
        store.audit_trail(after_id=-1)


@pytest.mark.parametrize(
    ("actor", "at", "match"),
    [
        ("", NOW, "actor must be a string of 1 to 255"),
        ("x" * 256, NOW, "actor must be a string of 1 to 255"),
        ("ops", NOW.replace(tzinfo=None), "at must be a UTC datetime"),
        ("ops", NOW.astimezone(dt.timezone(dt.timedelta(hours=1))), "at must be a UTC datetime"),
    ],
)
def test_audit_context_is_checked(actor: str, at: dt.datetime, match: str) -> None:
    with pytest.raises(ServerConfError, match=match):
        AuditContext(actor, at)


def test_an_action_recorded_for_the_audit_trail_does_not_move_the_change_marker(
    store: ServerConfStore, context: AuditContext
) -> None:
    """Recording what an administrator asked of the registry changes no configuration: no
    server should reload for it."""
    marker = store.change_marker()
    store.record_action("announce_maintenance", "NRW/MUN/05774032/ss1", {"enabled": True}, context)
    assert store.change_marker() == marker
    [entry] = store.audit_trail()
    assert (entry["operation"], entry["actor"], entry["after"]) == (
        "announce_maintenance",
        context.actor,
        {"enabled": True},
    )
