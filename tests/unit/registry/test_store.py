"""The registry store on a real SQLite file and a real PostgreSQL database: the same tests on both."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.hazmat.primitives import serialization

from core.identifiers import GlobalGroupId, MemberId
from registry.federation import FederationDefinition
from registry.publisher import build_global_conf
from registry.store import Base, RegistryError, RegistryStore
from tests.unit.registry.dbfixtures import database_url
from tests.unit.registry.helpers import OTHER_SERVER, SERVICES_TOML, FederationFiles
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, SERVER, Pki
from trust.certificates import fingerprint
from trust.keys import generate_private_key, make_csr

__all__ = ["database_url"]

PADERBORN = "NRW/MUN/05774032"
BIELEFELD = "NRW/MUN/05711000"


def pem(cert: object) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")  # type: ignore[attr-defined]


@pytest.fixture
def store(database_url: str) -> Iterator[RegistryStore]:
    opened = RegistryStore.open(database_url)
    yield opened
    opened.close()


@pytest.fixture
def populated(store: RegistryStore, pki: Pki) -> RegistryStore:
    """Two municipalities, the CA, Paderborn's server, a group and a catalogued service."""
    store.init("NRW")
    store.add_member_class("MUN", "municipalities")
    store.add_member("MUN", "05774032", "Stadt Paderborn")
    store.add_member("MUN", "05711000", "Stadt Bielefeld")
    store.add_subsystem(PADERBORN, "gewerbeamt")
    store.add_subsystem(BIELEFELD, "meldewesen")
    store.add_approved_ca(pem(pki.ca.certificate))
    store.add_security_server(
        PADERBORN, "ss1", "127.0.0.1:5511", pem(pki.auth_cert), [f"{PADERBORN}/gewerbeamt", PADERBORN]
    )
    store.add_global_group("owl-kommunen", "OWL", [f"{PADERBORN}/gewerbeamt"])
    store.add_group_member("owl-kommunen", f"{BIELEFELD}/meldewesen")
    store.add_service(
        f"{PADERBORN}/gewerbeamt",
        "gewerbeanzeige",
        "v1",
        "rest",
        "Gewerbeanzeige nach § 14 GewO",
        "XGewerbeanzeige 2.2",
        ["MELDID:05774032"],
        "05774032",
    )
    return store


def tables(url: str) -> set[str]:
    store = RegistryStore.open(url)
    try:
        return set(sa.inspect(store.engine).get_table_names())
    finally:
        store.close()


# -- migrations -----------------------------------------------------------------------------


def test_migrations_create_the_schema_from_nothing_and_are_idempotent(database_url: str) -> None:
    first = tables(database_url)
    assert first == {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}
    assert tables(database_url) == first  # a second upgrade to head changes nothing
    store = RegistryStore.open(database_url)
    try:
        with store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0004"
            # The migration creates exactly what the models declare.
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        store.close()


# -- changes that work ----------------------------------------------------------------------


def test_each_add_persists_across_reopen(populated: RegistryStore, database_url: str, pki: Pki) -> None:
    populated.close()
    with RegistryStore.open(database_url) as store:
        definition = store.definition()
        assert store.instance() == "NRW"
        services = store.services()
    assert [(m.id, m.name, m.subsystems) for m in definition.members] == [
        (MEMBER, "Stadt Paderborn", ("gewerbeamt",)),
        (OTHER_MEMBER, "Stadt Bielefeld", ("meldewesen",)),
    ]
    (server,) = definition.security_servers
    assert server.id == SERVER and server.address == "127.0.0.1:5511"
    assert server.auth_cert_fingerprints == (fingerprint(pki.auth_cert),)
    assert server.clients == (MEMBER.subsystem("gewerbeamt"), MEMBER)
    (group,) = definition.global_groups
    assert group.id == GlobalGroupId("NRW", "owl-kommunen")
    assert group.members == (MEMBER.subsystem("gewerbeamt"), OTHER_MEMBER.subsystem("meldewesen"))
    assert [ca.certificate for ca in definition.approved_cas] == [pki.ca.certificate]
    (service,) = services
    assert service.to_dict() == {
        "service": f"{PADERBORN}/gewerbeamt/gewerbeanzeige/v1",
        "provider": f"{PADERBORN}/gewerbeamt",
        "code": "gewerbeanzeige",
        "version": "v1",
        "protocol": "REST",
        "description": "Gewerbeanzeige nach § 14 GewO",
        "standard": "XGewerbeanzeige 2.2",
        "authorities": ["MELDID:05774032"],
        "area": "05774032",
    }


def test_service_catalogue_filters(populated: RegistryStore) -> None:
    populated.add_service(
        f"{BIELEFELD}/meldewesen", "rueckmeldung", None, "SOAP", "", "XMeld", [], "05711000"
    )
    assert [s.code for s in populated.services(authority="MELDID:05774032")] == ["gewerbeanzeige"]
    assert [s.code for s in populated.services(area="05711000")] == ["rueckmeldung"]
    assert [s.code for s in populated.services(provider=f"{BIELEFELD}/meldewesen")] == ["rueckmeldung"]
    assert populated.services(area="99")[0:] == ()
    assert populated.services(area="05711000")[0].version is None


def test_reserved_codes_are_matched_exactly(populated: RegistryStore) -> None:
    # X-Road compares service codes exactly; only the metadata services' own codes are taken.
    entry = populated.add_service(f"{BIELEFELD}/meldewesen", "getwsdl", None, "SOAP", "", "")
    assert entry.code == "getwsdl"


def test_more_clients_certificates_and_tsas(populated: RegistryStore, pki: Pki) -> None:
    populated.add_server_client(SERVER, f"{BIELEFELD}/meldewesen")
    rotated = pki.ca.issue_auth_certificate(make_csr(generate_private_key(), "x"), SERVER, now=NOW)
    populated.add_auth_certificate(SERVER.slash(), pem(rotated))
    tsa = pki.ca.issue_tsa_certificate(make_csr(generate_private_key(), "tsa"), "IT.NRW TSA", now=NOW)
    populated.add_approved_tsa("IT.NRW TSA", "http://127.0.0.1:8889/", pem(tsa))
    definition = populated.definition()
    assert definition.security_servers[0].clients[-1] == OTHER_MEMBER.subsystem("meldewesen")
    assert definition.security_servers[0].auth_cert_fingerprints[-1] == fingerprint(rotated)
    assert definition.approved_tsas[0].certificate == tsa


# -- changes that are refused, with nothing written ------------------------------------------


def refusals(pki: Pki) -> list[tuple[str, Callable[[RegistryStore], object], str]]:
    other_auth = pki.ca.issue_auth_certificate(make_csr(generate_private_key(), "x"), OTHER_SERVER, now=NOW)
    forged = pki.impostor_ca.issue_auth_certificate(
        make_csr(generate_private_key(), "x"), OTHER_SERVER, now=NOW
    )
    return [
        ("duplicate member", lambda s: s.add_member("MUN", "05774032", "again"), "duplicate member"),
        ("unknown class", lambda s: s.add_member("XYZ", "1", "x"), "unknown member class XYZ"),
        ("illegal characters", lambda s: s.add_member("MUN", "057 74", "x"), "illegal character ' '"),
        ("duplicate subsystem", lambda s: s.add_subsystem(PADERBORN, "gewerbeamt"), "duplicate subsystem"),
        ("unknown owner", lambda s: s.add_subsystem("NRW/MUN/1", "x"), "is not a registered member"),
        ("other instance", lambda s: s.add_subsystem("BY/MUN/05774032", "x"), "is not of instance NRW"),
        (
            "duplicate server",
            lambda s: s.add_security_server(PADERBORN, "ss1", "127.0.0.1:1", pem(pki.auth_cert)),
            "duplicate security server",
        ),
        (
            "unknown server owner",
            lambda s: s.add_security_server("NRW/MUN/9", "ss1", "127.0.0.1:1", pem(other_auth)),
            "is not a registered member",
        ),
        (
            "auth certificate of the wrong server",
            lambda s: s.add_security_server(BIELEFELD, "ss1", "127.0.0.1:5521", pem(pki.auth_cert)),
            "was issued to SERVER:NRW/MUN/05774032/ss1, not to SERVER:NRW/MUN/05711000/ss1",
        ),
        (
            "auth certificate of an unapproved CA",
            lambda s: s.add_security_server(BIELEFELD, "ss1", "127.0.0.1:5521", pem(forged)),
            "was not issued by an approved CA",
        ),
        (
            "bad address",
            lambda s: s.add_security_server(BIELEFELD, "ss1", "127.0.0.1", pem(other_auth)),
            "must be host:port",
        ),
        (
            # the server, its certificate and the first client are valid; the last client is not
            "unknown client in a multi-row change",
            lambda s: s.add_security_server(
                BIELEFELD,
                "ss1",
                "127.0.0.1:5521",
                pem(other_auth),
                [f"{BIELEFELD}/meldewesen", f"{BIELEFELD}/kfz"],
            ),
            "SUBSYSTEM:NRW/MUN/05711000/kfz is not a subsystem of MEMBER:NRW/MUN/05711000",
        ),
        (
            "unknown member in a new group",
            lambda s: s.add_global_group("neu", "", [f"{PADERBORN}/gewerbeamt", "NRW/MUN/1"]),
            "is not a registered member",
        ),
        ("duplicate group", lambda s: s.add_global_group("owl-kommunen"), "duplicate global group"),
        (
            "duplicate group member",
            lambda s: s.add_group_member("owl-kommunen", f"{PADERBORN}/gewerbeamt"),
            "already a member",
        ),
        ("duplicate CA", lambda s: s.add_approved_ca(pem(pki.ca.certificate)), "already an approved CA"),
        ("CA that is no CA", lambda s: s.add_approved_ca(pem(pki.auth_cert)), "is not a CA certificate"),
        ("not PEM", lambda s: s.add_approved_ca("hello"), "not a PEM certificate"),
        (
            "duplicate service",
            lambda s: s.add_service(f"{PADERBORN}/gewerbeamt", "gewerbeanzeige", "v1", "REST", "", ""),
            "duplicate service",
        ),
        (
            "bad protocol",
            lambda s: s.add_service(f"{PADERBORN}/gewerbeamt", "x", None, "GRPC", "", ""),
            "protocol must be one of REST, SOAP",
        ),
        (
            "bad authority",
            lambda s: s.add_service(f"{PADERBORN}/gewerbeamt", "x", None, "REST", "", "", ["MELDID"]),
            "must be prefix:key",
        ),
        (
            "bad area",
            lambda s: s.add_service(f"{PADERBORN}/gewerbeamt", "x", None, "REST", "", "", [], "Paderborn"),
            "must be a municipality key",
        ),
        (
            "service of an unknown subsystem",
            lambda s: s.add_service(f"{PADERBORN}/kfz", "x", None, "REST", "", ""),
            "is not a subsystem",
        ),
        (
            "SOAP metadata service code",
            lambda s: s.add_service(f"{PADERBORN}/gewerbeamt", "getWsdl", "v1", "SOAP", "", ""),
            "service code 'getWsdl' is reserved",
        ),
        (
            "REST metadata service code",
            lambda s: s.add_service(f"{PADERBORN}/gewerbeamt", "getOpenAPI", None, "REST", "", ""),
            "service code 'getOpenAPI' is reserved",
        ),
        (
            "listClients",
            lambda s: s.add_service(f"{PADERBORN}/gewerbeamt", "listClients", None, "REST", "", ""),
            "service code 'listClients' is reserved",
        ),
        ("second init", lambda s: s.init("NRW"), "already initialised"),
    ]


def test_refused_changes_write_nothing(populated: RegistryStore, pki: Pki) -> None:
    before = populated.counts()
    definition = populated.definition()
    for name, change, message in refusals(pki):
        with pytest.raises(RegistryError) as info:
            change(populated)
        assert message in str(info.value), name
        assert populated.counts() == before, name
    assert populated.definition() == definition


def test_uninitialised_store_says_so(store: RegistryStore) -> None:
    with pytest.raises(RegistryError, match="not initialised"):
        store.add_member_class("MUN")
    with pytest.raises(RegistryError, match="not initialised"):
        store.definition()


def test_database_constraints_back_the_checks(populated: RegistryStore) -> None:
    """Even a writer that skips the checks cannot store a duplicate member."""
    with pytest.raises(sa.exc.IntegrityError), populated.engine.begin() as connection:
        class_id = connection.scalar(sa.text("SELECT id FROM member_classes WHERE code = 'MUN'"))
        connection.execute(
            sa.text("INSERT INTO members (class_id, code, name) VALUES (:c, '05774032', 'x')"),
            {"c": class_id},
        )


# -- import and publication ----------------------------------------------------------------


def test_import_gives_the_same_global_conf_as_the_file(store: RegistryStore, files: FederationFiles) -> None:
    from_file = FederationDefinition.load(files.federation)
    store.import_definition(from_file)
    from_store = store.definition()

    def conf(definition: FederationDefinition) -> object:
        return build_global_conf(definition, serial=7, now=NOW, validity=dt.timedelta(minutes=10))

    assert conf(from_store) == conf(from_file)
    assert conf(from_store).to_json() == conf(from_file).to_json()  # type: ignore[attr-defined]
    # Imported classes are usable afterwards.
    store.add_member("MUN", "05774020", "Stadt Delbrück")
    assert store.definition().members[-1].id == MemberId("NRW", "MUN", "05774020")


def test_import_keeps_the_service_catalogue(store: RegistryStore, files: FederationFiles) -> None:
    files.write_federation(files.federation.read_text() + SERVICES_TOML)
    from_file = FederationDefinition.load(files.federation)
    assert len(from_file.services) == 3
    store.import_definition(from_file)
    assert store.definition().services == from_file.services


def test_import_into_a_non_empty_store_is_refused(populated: RegistryStore, files: FederationFiles) -> None:
    before = populated.counts()
    with pytest.raises(RegistryError, match="needs an empty registry"):
        populated.import_definition(FederationDefinition.load(files.federation))
    assert populated.counts() == before


def test_import_of_another_instance_is_refused(store: RegistryStore, files: FederationFiles) -> None:
    store.init("BY")
    before = store.counts()
    with pytest.raises(RegistryError, match="serves instance BY"):
        store.import_definition(FederationDefinition.load(files.federation))
    assert store.counts() == before


def test_unsupported_urls() -> None:
    with pytest.raises(RegistryError, match="unsupported database"):
        RegistryStore.open("mysql://x/y")
    with pytest.raises(RegistryError, match="in-memory"):
        RegistryStore.open("sqlite://")
    with pytest.raises(RegistryError, match="not a database URL"):
        RegistryStore.open("nonsense")
