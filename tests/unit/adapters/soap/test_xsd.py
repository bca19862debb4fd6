"""X-Road's bundled schemas: served by name, compiled offline, and saying what X-Road's say."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest
from lxml import etree

from adapters.soap.xsd import (
    SCHEMA_LOCATIONS,
    SCHEMA_NAMES,
    SCHEMA_NAMESPACES,
    bundled_name,
    schema_bytes,
    xml_schema,
)

XS = "{http://www.w3.org/2001/XMLSchema}"
ROOT = Path(__file__).parents[4]


def test_each_bundled_schema_defines_the_namespace_it_is_listed_under() -> None:
    assert set(SCHEMA_NAMES) == {"xroad.xsd", "identifiers.xsd", "representation.xsd", "xml.xsd"}
    for name in SCHEMA_NAMES:
        root = etree.fromstring(schema_bytes(name))
        assert root.tag == f"{XS}schema"
        assert root.get("targetNamespace") == SCHEMA_NAMESPACES[name]


@pytest.mark.parametrize("name", ["../wsdl.py", "schemas/xroad.xsd", "/etc/passwd", "XROAD.XSD", ""])
def test_only_bundled_names_are_served(name: str) -> None:
    with pytest.raises(LookupError):
        schema_bytes(name)


def test_published_locations_map_to_the_bundle() -> None:
    assert bundled_name("http://x-road.eu/xsd/xroad.xsd") == "xroad.xsd"
    assert bundled_name("https://x-road.eu/xsd/identifiers.xsd") == "identifiers.xsd"
    assert bundled_name("representation.xsd") == "representation.xsd"
    assert bundled_name("http://www.w3.org/2009/01/xml.xsd") == "xml.xsd"
    assert bundled_name("http://x-road.eu/xsd/xroad.xsd/../../etc/passwd") is None
    assert bundled_name("http://evil.example/xsd/xroad.xsd") is None
    assert set(SCHEMA_LOCATIONS.values()) == set(SCHEMA_NAMES)


def test_the_schemas_ship_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["adapters.soap"]
    shipped = {path.name for pattern in patterns for path in (ROOT / "adapters" / "soap").glob(pattern)}
    assert shipped == set(SCHEMA_NAMES)


def test_validators_compile_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for name in SCHEMA_NAMES:
        assert isinstance(xml_schema.__wrapped__(name), etree.XMLSchema)


def _valid(name: str, xml: str) -> bool:
    return bool(xml_schema(name).validate(etree.fromstring(xml)))


NS = 'xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"'
CLIENT = (
    "<id:xRoadInstance>NRW</id:xRoadInstance><id:memberClass>MUN</id:memberClass>"
    "<id:memberCode>05774020</id:memberCode>"
)


@pytest.mark.parametrize(
    ("xml", "valid"),
    [
        (f'<xrd:client {NS} id:objectType="MEMBER">{CLIENT}</xrd:client>', True),
        (
            f'<xrd:client {NS} id:objectType="SUBSYSTEM">{CLIENT}'
            "<id:subsystemCode>meldewesen</id:subsystemCode></xrd:client>",
            True,
        ),
        (f"<xrd:client {NS}>{CLIENT}</xrd:client>", False),  # objectType is required
        (f'<xrd:client {NS} id:objectType="CITIZEN">{CLIENT}</xrd:client>', False),
        (
            f'<xrd:client {NS} id:objectType="MEMBER">{CLIENT}<id:serviceCode>x</id:serviceCode>'
            "</xrd:client>",
            False,
        ),
        (
            f'<xrd:service {NS} id:objectType="SERVICE">{CLIENT}<id:subsystemCode>m</id:subsystemCode>'
            "<id:serviceCode>meldeauskunft</id:serviceCode><id:serviceVersion>v1</id:serviceVersion></xrd:service>",
            True,
        ),
        (f'<xrd:service {NS} id:objectType="SERVICE">{CLIENT}</xrd:service>', False),  # no serviceCode
        (f"<xrd:id {NS}>0b6c2f0e</xrd:id>", True),
        (f"<xrd:userId {NS}>DE0000000001</xrd:userId>", True),
        (f"<xrd:issue {NS}>AZ-2024-17</xrd:issue>", True),
        (f"<xrd:protocolVersion {NS}>4.0</xrd:protocolVersion>", True),
        (
            f'<xrd:requestHash {NS} algorithmId="http://www.w3.org/2001/04/xmlenc#sha512">AAAA</xrd:requestHash>',
            True,
        ),
        (f'<xrd:title {NS} xml:lang="de">Meldeauskunft</xrd:title>', True),
        (f"<xrd:version {NS}>v1</xrd:version>", True),
        (f"<xrd:listMethods {NS}/>", True),
        (f"<xrd:allowedMethods {NS}><xrd:service/></xrd:allowedMethods>", False),
        (f"<xrd:getWsdl {NS}><xrd:serviceCode>meldeauskunft</xrd:serviceCode></xrd:getWsdl>", True),
        (f"<xrd:getWsdl {NS}><xrd:serviceVersion>v1</xrd:serviceVersion></xrd:getWsdl>", False),
        (
            f"<xrd:getWsdlResponse {NS}><xrd:serviceCode>m</xrd:serviceCode>"
            "<xrd:serviceVersion>v1</xrd:serviceVersion></xrd:getWsdlResponse>",
            True,
        ),
        (
            f'<xrd:securityServer {NS} id:objectType="SERVER">{CLIENT}<id:serverCode>ss1</id:serverCode>'
            "</xrd:securityServer>",
            True,
        ),
    ],
)
def test_xroad_xsd_accepts_what_x_road_defines_and_nothing_else(xml: str, valid: bool) -> None:
    assert _valid("xroad.xsd", xml) is valid


def test_representation_xsd() -> None:
    ns = 'xmlns:repr="http://x-road.eu/xsd/representation.xsd"'
    party = f"<repr:representedParty {ns}><repr:partyClass>MUN</repr:partyClass>"
    assert _valid(
        "representation.xsd", party + "<repr:partyCode>05774020</repr:partyCode></repr:representedParty>"
    )
    assert not _valid("representation.xsd", party + "</repr:representedParty>")  # partyCode is required


def test_a_service_identifier_fixes_its_object_type() -> None:
    # libxml2 does not enforce ``fixed`` on attribute references, so this is read from the
    # schema; the envelope reader refuses a service header of another type in any case.
    root = etree.fromstring(schema_bytes("identifiers.xsd"))
    uses = {
        complex_type.get("name"): complex_type.find(f"{XS}complexContent/{XS}restriction/{XS}attribute")
        for complex_type in root.iter(f"{XS}complexType")
    }
    assert uses["XRoadServiceIdentifierType"].get("fixed") == "SERVICE"
    assert uses["XRoadSecurityServerIdentifierType"].get("fixed") == "SERVER"
    assert uses["XRoadClientIdentifierType"].get("fixed") is None  # MEMBER or SUBSYSTEM


def test_relocation_points_bundled_imports_at_the_new_base_and_leaves_the_rest() -> None:
    from adapters.soap.xsd import relocate_schemas

    document = (
        b'<w:types xmlns:w="urn:w"><xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        b'<xsd:import namespace="http://x-road.eu/xsd/xroad.xsd" schemaLocation="http://x-road.eu/xsd/xroad.xsd"/>'
        b"<xsd:import namespace='http://x-road.eu/xsd/identifiers' schemaLocation='identifiers.xsd'/>"
        b'<xsd:import namespace="urn:other" schemaLocation="https://example.org/other.xsd"/>'
        b"</xsd:schema></w:types>"
    )
    relocated = relocate_schemas(document, "http://ss.example:8080/xsd/")
    assert relocated == (
        document.replace(
            b'"http://x-road.eu/xsd/xroad.xsd"/>', b'"http://ss.example:8080/xsd/xroad.xsd"/>'
        ).replace(b"'identifiers.xsd'", b"'http://ss.example:8080/xsd/identifiers.xsd'")
    )
    assert b"https://example.org/other.xsd" in relocated  # not ours to move
    assert relocate_schemas(relocated, "http://ss.example:8080/xsd/") == relocated  # nothing left to move


@pytest.mark.parametrize("base", ["http://ss.example/xsd", 'http://a"b/', "http://a b/", "http://<x>/"])
def test_relocation_refuses_a_base_that_cannot_stand_in_an_attribute(base: str) -> None:
    from adapters.soap.xsd import relocate_schemas

    with pytest.raises(ValueError, match="base_url"):
        relocate_schemas(b'<x schemaLocation="xroad.xsd"/>', base)
