"""Service descriptions: a realistic X-Road WSDL is read offline, masked in place, and attacks are refused."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import zeep
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.soap.envelope import NS_XROAD
from adapters.soap.inbound import parse_soap_request
from adapters.soap.safexml import XmlLimits
from adapters.soap.wsdl import (
    MASKED_ENDPOINT,
    MAX_WSDL_BYTES,
    OfflineTransport,
    OfflineTransportError,
    WsdlDescription,
    WsdlOperation,
    mask_endpoints,
    read_wsdl,
)
from adapters.soap.xsd import schema_bytes
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ServiceId, SubsystemId
from tests.unit.adapters.soap.messages import quickly, refused

WSDL_PATH = Path(__file__).parent / "wsdl" / "meldeauskunft.wsdl"
MELDEAUSKUNFT = WSDL_PATH.read_bytes()
INTERNAL = b"http://melderegister.bielefeld.intern:8080/soap/meldewesen"
BIELEFELD = SubsystemId("NRW", "MUN", "05711000", "meldewesen")
DELBRUECK = SubsystemId("NRW", "MUN", "05774020", "meldewesen")
XROAD_HEADERS = tuple(
    f"{{{NS_XROAD}}}{name}" for name in ("client", "service", "id", "userId", "issue", "protocolVersion")
)
SERVER = Origin.SERVER_PROXY


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to resolve a name or open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield


def wsdl(
    *,
    types: str = "",
    binding: str | None = None,
    port_address: str = '<soap:address location="http://backend.intern/x"/>',
    operation: str = "abfrage",
    version: str = "<xrd:version>v1</xrd:version>",
    extra: str = "",
    root_attrs: str = "",
) -> bytes:
    """A small but complete X-Road style WSDL with one operation, to vary in tests."""
    if binding is None:
        binding = f"""
  <wsdl:binding name="b" type="tns:pt">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="{operation}">
      <soap:operation soapAction=""/>
      {version}
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"
    xmlns:tns="urn:example:t" targetNamespace="urn:example:t"{root_attrs}>
  <wsdl:types>
    <xs:schema targetNamespace="urn:example:t" elementFormDefault="qualified">
      {types}
      <xs:element name="{operation}"><xs:complexType><xs:sequence/></xs:complexType></xs:element>
      <xs:element name="{operation}Response"><xs:complexType><xs:sequence/></xs:complexType></xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="in"><wsdl:part name="body" element="tns:{operation}"/></wsdl:message>
  <wsdl:message name="out"><wsdl:part name="body" element="tns:{operation}Response"/></wsdl:message>
  <wsdl:portType name="pt">
    <wsdl:operation name="{operation}">
      <wsdl:input message="tns:in"/><wsdl:output message="tns:out"/>
    </wsdl:operation>
  </wsdl:portType>
  {binding}
  <wsdl:service name="s"><wsdl:port name="p" binding="tns:b">{port_address}</wsdl:port></wsdl:service>
  {extra}
</wsdl:definitions>
""".encode()


# -- reading the Meldeauskunft WSDL ------------------------------------------------------------


def test_meldeauskunft_lists_its_operations_with_versions_titles_and_xroad_headers(no_network: None) -> None:
    description = read_wsdl(MELDEAUSKUNFT)
    assert description == WsdlDescription(
        "urn:example:meldewesen",
        (
            WsdlOperation("meldeauskunft", "v1", "Meldeauskunft", XROAD_HEADERS),
            WsdlOperation("rueckmeldung", "v1", "Rückmeldung", XROAD_HEADERS),
        ),
    )
    assert description.find("rueckmeldung") == description.operations[1]
    assert description.find("meldeauskunft", "v2") is None
    assert description.find("listMethods") is None
    assert description.service_ids(BIELEFELD) == (
        ServiceId(BIELEFELD, "meldeauskunft", "v1"),
        ServiceId(BIELEFELD, "rueckmeldung", "v1"),
    )


def test_the_masked_wsdl_builds_a_zeep_client_offline_whose_requests_xweg_accepts(no_network: None) -> None:
    masked = mask_endpoints(MELDEAUSKUNFT)
    client = zeep.Client(io.BytesIO(masked), transport=OfflineTransport())  # type: ignore[no-untyped-call]
    service = client.bind("meldewesenService", "meldewesenPort")
    assert service._binding_options["address"] == MASKED_ENDPOINT
    headers = {
        "client": {
            "objectType": "SUBSYSTEM",
            "xRoadInstance": "NRW",
            "memberClass": "MUN",
            "memberCode": "05774020",
            "subsystemCode": "meldewesen",
        },
        "service": {
            "objectType": "SERVICE",
            "xRoadInstance": "NRW",
            "memberClass": "MUN",
            "memberCode": "05711000",
            "subsystemCode": "meldewesen",
            "serviceCode": "meldeauskunft",
            "serviceVersion": "v1",
        },
        "id": "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10",
        "userId": "DE0000000001",
        "issue": "AZ-2024-17",
        "protocolVersion": "4.0",
    }
    envelope = client.create_message(  # type: ignore[no-untyped-call]
        service, "meldeauskunft", familienname="Muster", _soapheaders=headers
    )
    request = parse_soap_request(etree.tostring(envelope), content_type="text/xml; charset=utf-8")
    assert request.header.client == DELBRUECK
    assert request.header.service == ServiceId(BIELEFELD, "meldeauskunft", "v1")
    assert (request.header.user_id, request.header.issue) == ("DE0000000001", "AZ-2024-17")


def test_the_bundled_schemas_are_what_the_offline_transport_serves() -> None:
    transport = OfflineTransport()
    assert transport.load("http://x-road.eu/xsd/xroad.xsd") == schema_bytes("xroad.xsd")
    assert transport.load("https://www.w3.org/2001/xml.xsd") == schema_bytes("xml.xsd")
    for location in (
        "http://x-road.eu/xsd/other.xsd",
        "file:///etc/passwd",
        "/etc/passwd",
        str(WSDL_PATH),  # an existing local file is refused like any other path
        "",
    ):
        with pytest.raises(OfflineTransportError):
            transport.load(location)
    with pytest.raises(OfflineTransportError):
        transport.post("http://example.org/xroad-endpoint", b"<x/>", {})
    with pytest.raises(OfflineTransportError):
        transport.get("http://example.org/xroad-endpoint", {}, {})


def test_version_may_be_written_as_id_version_or_be_absent() -> None:
    assert read_wsdl(wsdl(version="<id:version>v7</id:version>")).operations[0].version == "v7"
    assert read_wsdl(wsdl(version="")).operations[0].version is None
    assert read_wsdl(wsdl(version="<xrd:version> </xrd:version>")).operations[0].version is None


def test_an_operation_in_two_soap_bindings_is_listed_once() -> None:
    soap12 = """
  <wsdl:binding name="b12" type="tns:pt" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/">
    <soap12:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="abfrage">
      <soap12:operation soapAction=""/><xrd:version>v1</xrd:version>
      <wsdl:input><soap12:body use="literal"/></wsdl:input>
      <wsdl:output><soap12:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>"""
    description = read_wsdl(wsdl(extra=soap12))
    assert [(op.service_code, op.version) for op in description.operations] == [("abfrage", "v1")]


def test_the_xml_namespace_import_zeep_adds_itself_is_served_from_the_bundle(no_network: None) -> None:
    types = '<xs:import namespace="http://www.w3.org/XML/1998/namespace"/>'
    assert read_wsdl(wsdl(types=types)).operations[0].service_code == "abfrage"


def test_the_demo_style_relative_import_of_xroad_xsd_is_served_too(no_network: None) -> None:
    types = '<xs:import namespace="http://x-road.eu/xsd/xroad.xsd" schemaLocation="xroad.xsd"/>'
    assert read_wsdl(wsdl(types=types)).operations[0].version == "v1"


# -- refusals ------------------------------------------------------------------------------------

DOCTYPE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE wsdl:definitions [<!ENTITY x "y">]>\n'
    + MELDEAUSKUNFT.split(b"?>\n", 1)[1]
)
XXE = MELDEAUSKUNFT.replace(
    b"<wsdl:definitions", b'<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<wsdl:definitions', 1
)


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("DOCTYPE", DOCTYPE, ErrorCode.INVALID_XML),
        ("external entity", XXE, ErrorCode.INVALID_XML),
        ("oversize", MELDEAUSKUNFT + b" " * MAX_WSDL_BYTES, ErrorCode.REQUEST_TOO_LARGE),
        ("not XML", b"definitions", ErrorCode.INVALID_XML),
        ("not UTF-8", MELDEAUSKUNFT.replace(b"UTF-8", b"ISO-8859-1", 1), ErrorCode.INVALID_XML),
        (
            "import over http",
            wsdl(types='<xs:import namespace="urn:evil" schemaLocation="http://evil.example/x.xsd"/>'),
            ErrorCode.INVALID_WSDL,
        ),
        (
            "import of a file URL",
            wsdl(types='<xs:import namespace="urn:evil" schemaLocation="file:///etc/passwd"/>'),
            ErrorCode.INVALID_WSDL,
        ),
        (
            "include of a relative path",
            wsdl(types='<xs:include schemaLocation="../../../../etc/passwd"/>'),
            ErrorCode.INVALID_WSDL,
        ),
        (
            "redefine",
            wsdl(types='<xs:redefine schemaLocation="http://evil.example/x.xsd"/>'),
            ErrorCode.INVALID_WSDL,
        ),
        (
            "wsdl import, even of an X-Road location",
            wsdl(extra='<wsdl:import namespace="urn:x" location="http://x-road.eu/xsd/xroad.xsd"/>'),
            ErrorCode.INVALID_WSDL,
        ),
        (
            "bundled location for another namespace",
            wsdl(types='<xs:import namespace="urn:evil" schemaLocation="http://x-road.eu/xsd/xroad.xsd"/>'),
            ErrorCode.INVALID_WSDL,
        ),
        ("not a WSDL", b"<xs:schema xmlns:xs='http://www.w3.org/2001/XMLSchema'/>", ErrorCode.INVALID_WSDL),
        ("WSDL 2.0", b"<description xmlns='http://www.w3.org/ns/wsdl'/>", ErrorCode.INVALID_WSDL),
        ("reserved operation", wsdl(operation="getWsdl"), ErrorCode.INVALID_WSDL),
        ("operation name no identifier allows", wsdl(operation="auskunft_ä"), ErrorCode.INVALID_WSDL),
        ("bad version", wsdl(version="<xrd:version>v 1</xrd:version>"), ErrorCode.INVALID_WSDL),
        (
            "two versions",
            wsdl(version="<xrd:version>v1</xrd:version><xrd:version>v2</xrd:version>"),
            ErrorCode.INVALID_WSDL,
        ),
        (
            "dangling binding type",
            wsdl().replace(b'type="tns:pt"', b'type="tns:nope"'),
            ErrorCode.INVALID_WSDL,
        ),
        ("no SOAP binding", wsdl(binding="", port_address=""), ErrorCode.INVALID_WSDL),
    ],
)
def test_refused_with_its_code(name: str, data: bytes, code: ErrorCode, no_network: None) -> None:
    with quickly():
        refused(code, lambda: read_wsdl(data), SERVER)


def test_the_caller_names_who_is_blamed() -> None:
    refused(ErrorCode.INVALID_WSDL, lambda: read_wsdl(wsdl(operation="getWsdl"), origin=Origin.CLIENT))
    refused(ErrorCode.INVALID_XML, lambda: mask_endpoints(DOCTYPE, origin=Origin.CLIENT))


def test_limits_are_the_callers_to_choose() -> None:
    tight = XmlLimits(max_bytes=1024)
    refused(ErrorCode.REQUEST_TOO_LARGE, lambda: read_wsdl(MELDEAUSKUNFT, limits=tight), SERVER)
    refused(ErrorCode.REQUEST_TOO_LARGE, lambda: mask_endpoints(MELDEAUSKUNFT, limits=tight), SERVER)


@pytest.mark.filterwarnings("ignore::UserWarning")  # zeep warns about the parts it skips
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_damaged_wsdl_is_read_or_refused_with_our_error(data: st.DataObject) -> None:
    original = wsdl()
    position = data.draw(st.integers(0, len(original) - 1))
    length = data.draw(st.integers(1, 16))
    replacement = data.draw(st.binary(max_size=16))
    damaged = original[:position] + replacement + original[position + length :]
    try:
        read_wsdl(damaged)
    except XwegError as exc:
        assert exc.code in (ErrorCode.INVALID_XML, ErrorCode.INVALID_WSDL, ErrorCode.REQUEST_TOO_LARGE)
    try:
        masked = mask_endpoints(damaged)
    except XwegError as exc:
        assert exc.code in (ErrorCode.INVALID_XML, ErrorCode.REQUEST_TOO_LARGE)
    else:
        addresses = etree.fromstring(masked).iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
        assert all(address.get("location") in (None, MASKED_ENDPOINT) for address in addresses)


# -- masking -------------------------------------------------------------------------------------


def test_masking_changes_the_address_and_nothing_else() -> None:
    masked = mask_endpoints(MELDEAUSKUNFT)
    assert masked == MELDEAUSKUNFT.replace(INTERNAL, MASKED_ENDPOINT.encode())
    assert mask_endpoints(masked) == masked  # idempotent
    assert read_wsdl(masked) == read_wsdl(MELDEAUSKUNFT)


def test_a_wsdl_without_addresses_comes_back_as_it_was() -> None:
    data = wsdl(port_address="")
    assert mask_endpoints(data) is data


def test_every_kind_of_endpoint_address_is_masked_in_place() -> None:
    ports = """<wsdl:service name="more">
    <wsdl:port name="p12" binding="tns:b"><s12:address
        location = 'http://soap12.intern/x' xmlns:s12="http://schemas.xmlsoap.org/wsdl/soap12/"/></wsdl:port>
    <wsdl:port name="ph" binding="tns:b"><h:address xmlns:h="http://schemas.xmlsoap.org/wsdl/http/"
        location="https://http-binding.intern/x"/></wsdl:port>
    <wsdl:port name="pw" binding="tns:b">
      <soap:address location="http://first.intern/x"></soap:address>
      <wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing">
        <wsa:Address>http://wcf.intern/svc?a=1&amp;b=2</wsa:Address>
      </wsa:EndpointReference>
    </wsdl:port>
    <wsdl:port name="pd" binding="tns:b"><address xmlns="http://schemas.xmlsoap.org/wsdl/soap/"
        location="http://default-ns.intern/x"/></wsdl:port>
  </wsdl:service>
  <!-- an address in a comment is no endpoint: <soap:address location="http://comment.intern/"/> -->"""
    data = wsdl(extra=ports)
    masked = mask_endpoints(data)
    expected = data
    for address in (
        b"http://backend.intern/x",
        b"http://soap12.intern/x",
        b"https://http-binding.intern/x",
        b"http://first.intern/x",
        b"http://wcf.intern/svc?a=1&amp;b=2",
        b"http://default-ns.intern/x",
    ):
        assert expected.count(address) == 1
        expected = expected.replace(address, MASKED_ENDPOINT.encode())
    assert masked == expected
    assert b"http://comment.intern/" in masked


def test_addresses_outside_wsdl_ports_and_other_location_attributes_stay() -> None:
    extra = """<wsa:Address xmlns:wsa="http://www.w3.org/2005/08/addressing">http://docs.example/</wsa:Address>
  <x:address xmlns:x="urn:other" location="http://other.example/"/>"""
    data = wsdl(extra=extra, root_attrs=' xmlns:loc="urn:loc" loc:location="http://attr.example/"')
    masked = mask_endpoints(data)
    assert masked == data.replace(b"http://backend.intern/x", MASKED_ENDPOINT.encode())


def test_a_byte_order_mark_and_crlf_line_ends_are_kept() -> None:
    data = b"\xef\xbb\xbf" + MELDEAUSKUNFT.replace(b"\n", b"\r\n")
    masked = mask_endpoints(data)
    assert masked == data.replace(INTERNAL, MASKED_ENDPOINT.encode())


def test_an_address_the_byte_rewriter_cannot_place_is_masked_by_serialising_the_tree() -> None:
    extra = """<wsdl:service name="cdata"><wsdl:port name="pc" binding="tns:b">
    <wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing">
      <wsa:Address><![CDATA[http://cdata.intern/x]]></wsa:Address>
    </wsa:EndpointReference></wsdl:port></wsdl:service>"""
    masked = mask_endpoints(wsdl(extra=extra))
    assert b"intern" not in masked
    root = etree.fromstring(masked)
    addresses = root.iter("{http://www.w3.org/2005/08/addressing}Address")
    assert [address.text for address in addresses] == [MASKED_ENDPOINT]
    assert read_wsdl(masked).operations[0].service_code == "abfrage"
