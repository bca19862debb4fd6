"""Loading the federation definition: a good file, then one broken entry at a time."""

from __future__ import annotations

import pytest

from core.identifiers import GlobalGroupId, MemberId
from registry.federation import FederationDefinition, FederationError
from tests.unit.registry.helpers import FEDERATION_TOML, OTHER_SERVER, SERVER, SERVICES_TOML, FederationFiles
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, Pki
from trust.certificates import fingerprint
from trust.globalconf import ApprovedCA, ServiceInfo
from trust.keys import generate_private_key, make_csr, save_certificate


def test_good_definition_loads(files: FederationFiles, pki: Pki) -> None:
    definition = FederationDefinition.load(files.federation)
    assert definition.instance == "NRW"
    assert definition.approved_cas == (ApprovedCA(pki.ca.certificate),)
    assert [m.id for m in definition.members] == [MEMBER, MemberId("NRW", "MUN", "05711000")]
    assert definition.members[0].name == "Stadt Paderborn"
    assert definition.members[0].subsystems == ("gewerbeamt",)
    paderborn, bielefeld = definition.security_servers
    assert paderborn.id == SERVER and bielefeld.id == OTHER_SERVER
    assert paderborn.auth_cert_fingerprints == (fingerprint(pki.auth_cert),)
    assert paderborn.clients == (MEMBER.subsystem("gewerbeamt"), MEMBER)
    assert definition.global_groups[0].id == GlobalGroupId("NRW", "owl-kommunen")


def broken(files: FederationFiles, old: str, new: str) -> str:
    assert old in FEDERATION_TOML
    files.write_federation(FEDERATION_TOML.replace(old, new, 1))
    with pytest.raises(FederationError) as info:
        FederationDefinition.load(files.federation)
    message = str(info.value)
    assert str(files.federation) in message
    return message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('code = "05711000"', 'code = "05774032"', "members[1] (NRW/MUN/05774032): duplicate member"),
        (
            'owner = "NRW/MUN/05711000"',
            'owner = "NRW/MUN/09999999"',
            "owner MEMBER:NRW/MUN/09999999 is not a",
        ),
        ('owner = "NRW/MUN/05711000"', 'owner = "BY/MUN/05711000"', "is not of instance NRW"),
        (
            '"NRW/MUN/05774032/gewerbeamt", "NRW/MUN/05774032"]',
            '"NRW/MUN/05774032/gewerbeamt", "NRW/MUN/05774"]',
            "security_servers[0] (NRW/MUN/05774032/ss1) client 'NRW/MUN/05774': "
            "MEMBER:NRW/MUN/05774 is not a registered member",
        ),
        (
            'clients = ["NRW/MUN/05711000/meldewesen"]',
            'clients = ["NRW/MUN/05711000/kfz"]',
            "SUBSYSTEM:NRW/MUN/05711000/kfz is not a subsystem of MEMBER:NRW/MUN/05711000",
        ),
        ('members = ["NRW/MUN/05774032/gewerbeamt", ', 'members = ["NRW/MUN/1/x", ', "global_groups[0]"),
        (
            'class = "MUN"',
            'class = "M U N"',
            "members[0]: memberClass 'M U N' contains the illegal character",
        ),
        ('name = "Stadt Paderborn"\n', "", "members[0]: missing name"),
        ('name = "Stadt Paderborn"', 'name = "Stadt Paderborn"\nnmae = "typo"', "unknown key(s) nmae"),
        ('instance = "NRW"', 'instance = "N/RW"', "instance"),
        ('address = "127.0.0.1:5511"', 'address = "127.0.0.1"', "must be host:port"),
        (
            'code = "ss1"\naddress = "127.0.0.1:5521"',
            'code = "ss 1"\naddress = "127.0.0.1:5521"',
            "serverCode",
        ),
        ('subsystems = ["meldewesen"]', 'subsystems = ["meldewesen", "meldewesen"]', "duplicate subsystem"),
        ('approved_cas = ["trust/ca.pem"]', 'approved_cas = ["trust/missing.pem"]', "approved_cas[0]"),
        ('approved_cas = ["trust/ca.pem"]', 'approved_cas = ["servers/paderborn/auth.pem"]', "not a CA"),
        ('auth_certificate = "servers/bielefeld/auth.pem"', "", "needs auth_certificate"),
        (
            'auth_certificate = "servers/bielefeld/auth.pem"',
            'auth_certificate = "servers/paderborn/auth.pem"',
            "was issued to SERVER:NRW/MUN/05774032/ss1, not to SERVER:NRW/MUN/05711000/ss1",
        ),
        ('instance = "NRW"', 'instance = "NRW"\n[broken', "not valid TOML"),
        (
            'code = "owl-kommunen"',
            'code = "owl-kommunen"\n[[global_groups]]\ncode = "owl-kommunen"',
            "duplicate",
        ),
    ],
)
def test_broken_entries_are_named(files: FederationFiles, old: str, new: str, expected: str) -> None:
    assert expected in broken(files, old, new)


def test_auth_certificate_from_an_unapproved_ca(files: FederationFiles, pki: Pki) -> None:
    forged = pki.impostor_ca.issue_auth_certificate(
        make_csr(generate_private_key(), "x"), OTHER_SERVER, now=NOW
    )
    save_certificate(forged, files.root / "servers" / "bielefeld" / "auth.pem")
    files.write_federation(FEDERATION_TOML)
    with pytest.raises(FederationError, match="was not issued by an approved CA"):
        FederationDefinition.load(files.federation)


def test_same_auth_certificate_for_two_servers(files: FederationFiles, pki: Pki) -> None:
    text = FEDERATION_TOML.replace(
        'auth_certificate = "servers/bielefeld/auth.pem"',
        'auth_certificates = ["servers/bielefeld/auth.pem", "servers/bielefeld/auth.pem"]',
    )
    files.write_federation(text)
    with pytest.raises(FederationError, match="already registered for SERVER:NRW/MUN/05711000/ss1"):
        FederationDefinition.load(files.federation)


def test_missing_file(files: FederationFiles) -> None:
    with pytest.raises(FederationError, match="cannot read"):
        FederationDefinition.load(files.root / "nope.toml")


# -- the service catalogue ---------------------------------------------------------------------


def test_service_catalogue_loads(files: FederationFiles) -> None:
    files.write_federation(FEDERATION_TOML + SERVICES_TOML)
    definition = FederationDefinition.load(files.federation)
    gewerbeamt, meldewesen = MEMBER.subsystem("gewerbeamt"), OTHER_MEMBER.subsystem("meldewesen")
    assert definition.services == (
        ServiceInfo(
            gewerbeamt,
            "gewerbeanzeige",
            "v1",
            "REST",  # "rest" in the file, as the registry store takes it
            "Gewerbeanzeige nach § 14 GewO",
            "XGewerbeanzeige 2.2",
            ("MELDID:05774032",),
            "05774",
        ),
        ServiceInfo(meldewesen, "gewerbeanzeige", "v1", "REST", "", "XGewerbeanzeige 2.2", (), "05711000"),
        ServiceInfo(
            meldewesen, "meldeauskunft", None, "SOAP", "", "XMeld 3.1", ("MELDID:05711000", "MELDID:05774032")
        ),
    )


def test_a_file_without_catalogue_has_none(files: FederationFiles) -> None:
    assert FederationDefinition.load(files.federation).services == ()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'provider = "NRW/MUN/05774032/gewerbeamt"',
            'provider = "NRW/MUN/05774099/gewerbeamt"',
            "services[0]: SUBSYSTEM:NRW/MUN/05774099/gewerbeamt is not a registered member",
        ),
        (
            'provider = "NRW/MUN/05774032/gewerbeamt"',
            'provider = "NRW/MUN/05774032/kfz"',
            "services[0]: SUBSYSTEM:NRW/MUN/05774032/kfz is not a subsystem of MEMBER:NRW/MUN/05774032",
        ),
        (
            'provider = "NRW/MUN/05774032/gewerbeamt"',
            'provider = "NRW/MUN/05774032"',
            "services[0]: subsystem identifier 'NRW/MUN/05774032' must have 4 parts",
        ),
        ('protocol = "rest"', 'protocol = "grpc"', "must be one of REST, SOAP, got 'GRPC'"),
        ('protocol = "rest"\n', "", "services[0]: missing protocol"),
        ('version = "v1"', 'version = ""', "services[0]: version must be a non-empty string"),
        (
            'authorities = ["MELDID:05774032"]',
            'authorities = ["MELDID 05774032"]',
            "services[0] (NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1): authority identifier "
            "'MELDID 05774032' of SERVICE:NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1 must be prefix:key",
        ),
        ('authorities = ["MELDID:05774032"]', "authorities = [5774032]", "list of non-empty strings"),
        ('area = "05774"', 'area = "Kreis Paderborn"', "must be an official key of 2 to 12 digits"),
        ('area = "05774"', "area = 5774", "area 5774 of"),
        ('area = "05774"', 'areas = "05774"', "services[0]: unknown key(s) areas"),
        ('code = "meldeauskunft"', 'code = "gewerbeanzeige"\nversion = "v1"', "duplicate service"),
        (
            'code = "meldeauskunft"',
            'code = "getWsdl"',
            "services[2]: service code 'getWsdl' is reserved: security servers answer it themselves",
        ),
        (
            'code = "gewerbeanzeige"',
            'code = "listClients"',
            "services[0]: service code 'listClients' is reserved",
        ),
    ],
)
def test_broken_services_are_named(files: FederationFiles, old: str, new: str, expected: str) -> None:
    text = FEDERATION_TOML + SERVICES_TOML
    assert old in text
    files.write_federation(text.replace(old, new, 1))
    with pytest.raises(FederationError) as info:
        FederationDefinition.load(files.federation)
    assert expected in str(info.value)
