"""Loading the federation definition: a good file, then one broken entry at a time."""

from __future__ import annotations

import pytest

from core.identifiers import GlobalGroupId, MemberId
from registry.federation import FederationDefinition, FederationError
from tests.unit.registry.helpers import FEDERATION_TOML, OTHER_SERVER, SERVER, FederationFiles
from tests.unit.trust.helpers import MEMBER, NOW, Pki
from trust.certificates import fingerprint
from trust.globalconf import ApprovedCA
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
