"""What the registry store publishes for the directory: the service catalogue and maintenance mode."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from registry.federation import FederationDefinition
from registry.publisher import build_global_conf
from registry.store import RegistryStore
from tests.unit.registry.dbfixtures import database_url
from tests.unit.registry.helpers import FEDERATION_TOML, SERVICES_TOML, FederationFiles
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, SERVER, Pki
from trust.directory import providers_for
from trust.globalconf import GlobalConf, ServiceInfo

__all__ = ["database_url"]

PADERBORN = "NRW/MUN/05774032"
BIELEFELD = "NRW/MUN/05711000"
GEWERBEAMT = MEMBER.subsystem("gewerbeamt")
MELDEWESEN = OTHER_MEMBER.subsystem("meldewesen")


@pytest.fixture
def store(database_url: str, pki: Pki) -> Iterator[RegistryStore]:
    """Two municipalities, Paderborn's server and a catalogue of two services."""
    opened = RegistryStore.open(database_url)
    opened.init("NRW")
    opened.add_member_class("MUN", "municipalities")
    opened.add_member("MUN", "05774032", "Stadt Paderborn")
    opened.add_member("MUN", "05711000", "Stadt Bielefeld")
    opened.add_subsystem(PADERBORN, "gewerbeamt")
    opened.add_subsystem(BIELEFELD, "meldewesen")
    opened.add_approved_ca(pki.ca.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    opened.add_security_server(
        PADERBORN,
        "ss1",
        "127.0.0.1:5511",
        pki.auth_cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        [f"{PADERBORN}/gewerbeamt"],
    )
    opened.add_service(
        f"{PADERBORN}/gewerbeamt",
        "gewerbeanzeige",
        "v1",
        "rest",
        "Gewerbeanzeige nach § 14 GewO",
        "XGewerbeanzeige 2.2",
        ["MELDID:05774032"],
        "05774",
    )
    opened.add_service(f"{BIELEFELD}/meldewesen", "meldeauskunft", None, "SOAP", "", "XMeld 3.1")
    yield opened
    opened.close()


def publish(definition: FederationDefinition) -> GlobalConf:
    conf = build_global_conf(definition, serial=7, now=NOW, validity=dt.timedelta(minutes=10))
    # Through the wire format, as a security server reads it.
    return GlobalConf.from_json(conf.to_json())


def test_definition_carries_the_catalogue(store: RegistryStore) -> None:
    definition = store.definition()
    assert definition.services == (
        ServiceInfo(
            GEWERBEAMT,
            "gewerbeanzeige",
            "v1",
            "REST",
            "Gewerbeanzeige nach § 14 GewO",
            "XGewerbeanzeige 2.2",
            ("MELDID:05774032",),
            "05774",
        ),
        ServiceInfo(MELDEWESEN, "meldeauskunft", None, "SOAP", "", "XMeld 3.1", (), None),
    )
    # The catalogue the store lists and the one it publishes are the same entries.
    assert [(s.provider, s.code, s.version) for s in store.services()] == [
        (s.provider, s.code, s.version) for s in definition.services
    ]
    conf = publish(definition)
    assert conf.format_version == 4 and conf.services == definition.services
    (entry,) = providers_for(conf, "gewerbeanzeige", "05774020")
    assert entry.provider == GEWERBEAMT and [s.id for s in entry.servers] == [SERVER]


def test_definition_carries_maintenance_mode(store: RegistryStore) -> None:
    assert store.definition().security_servers[0].maintenance_mode is False
    store.set_maintenance_mode(SERVER, True)
    (server,) = store.definition().security_servers
    assert server.id == SERVER and server.maintenance_mode is True
    (published,) = publish(store.definition()).security_servers
    assert published.maintenance_mode is True
    store.set_maintenance_mode(SERVER, False)
    assert store.definition().security_servers[0].maintenance_mode is False


def test_a_store_without_catalogue_publishes_version_2(database_url: str, files: FederationFiles) -> None:
    empty = RegistryStore.open(database_url)
    try:
        empty.import_definition(FederationDefinition.load(files.federation))
        definition = empty.definition()
    finally:
        empty.close()
    assert definition.services == ()
    assert publish(definition).format_version == 2


def test_catalogue_of_a_file_matches_the_store_entries(store: RegistryStore, files: FederationFiles) -> None:
    files.write_federation(FEDERATION_TOML + SERVICES_TOML)
    from_file = FederationDefinition.load(files.federation)
    assert from_file.services[0] == store.definition().services[0]
