"""SOAP metadata services and listClients: answers X-Road clients read, valid against X-Road's schemas."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import zeep.xsd
from lxml import etree

from adapters.soap.envelope import NS_XROAD, XRoadHeader
from adapters.soap.inbound import SoapRequest, parse_soap_request
from adapters.soap.metadata import (
    JSON_CONTENT_TYPE,
    XML_CONTENT_TYPE,
    MethodListRequest,
    WsdlRequest,
    accepts_json,
    allowed_methods_response_body,
    get_wsdl_response_body,
    list_clients_json,
    list_clients_xml,
    list_methods_response_body,
    pack_get_wsdl_response,
    read_metadata_request,
    render_get_wsdl_request,
    render_get_wsdl_response,
    render_list_clients,
    wsdl_of_get_wsdl_response,
    wsdl_query_service,
)
from adapters.soap.mime import Attachment, Packaging, encode_multipart_related, split_soap_message
from adapters.soap.outbound import fault_envelope, render_soap_response
from adapters.soap.response import check_request_hash, check_response_consistent, parse_soap_response
from adapters.soap.wsdl import MASKED_ENDPOINT, OfflineTransport, mask_endpoints, read_wsdl
from adapters.soap.xsd import schema_bytes, xml_schema
from core.errors import ErrorCode, Origin
from core.identifiers import ClientId, MemberId, ServiceId, SubsystemId
from tests.unit.adapters.soap.messages import CLIENT, ID, USER_ID, VERSION, envelope, refused

WSDL = (Path(__file__).parent / "wsdl" / "meldeauskunft.wsdl").read_bytes()
BIELEFELD = SubsystemId("NRW", "MUN", "05711000", "meldewesen")
CLIENTS: list[tuple[ClientId, str | None]] = [
    (MemberId("NRW", "GOV", "05"), "Land Nordrhein-Westfalen (IT.NRW)"),
    (MemberId("NRW", "MUN", "05711000"), "Stadt Bielefeld"),
    (BIELEFELD, "Stadt Bielefeld"),
    (SubsystemId("NRW", "MUN", "05774020", "meldewesen"), "Stadt Delbrück <Melde & Pass>"),
]
SERVICES = [
    ServiceId(BIELEFELD, "meldeauskunft", "v1"),
    ServiceId(BIELEFELD, "rueckmeldung", "v1"),
    ServiceId(BIELEFELD, "statistik"),
]


def metadata_request(code: str, body: str) -> SoapRequest:
    service = (
        '<xrd:service id:objectType="SERVICE"><id:xRoadInstance>NRW</id:xRoadInstance>'
        "<id:memberClass>MUN</id:memberClass><id:memberCode>05711000</id:memberCode>"
        f"<id:subsystemCode>meldewesen</id:subsystemCode><id:serviceCode>{code}</id:serviceCode></xrd:service>"
    )
    data = envelope((CLIENT, service, ID, USER_ID, VERSION), body)
    return parse_soap_request(data, content_type="text/xml; charset=UTF-8")


def get_wsdl_request(body: str = "<xrd:serviceCode>meldeauskunft</xrd:serviceCode>") -> SoapRequest:
    return metadata_request("getWsdl", f"<xrd:getWsdl>{body}</xrd:getWsdl>")


def validates(name: str, data: bytes) -> etree._Element:
    element = etree.fromstring(data)
    schema = xml_schema(name)
    assert schema.validate(element), schema.error_log
    return element


# -- listClients --------------------------------------------------------------------------------


def test_list_clients_xml_is_a_valid_client_list_in_the_order_given() -> None:
    root = validates("xroad.xsd", list_clients_xml(CLIENTS))
    assert root.tag == f"{{{NS_XROAD}}}clientList"
    ns = {"xrd": NS_XROAD, "id": "http://x-road.eu/xsd/identifiers"}
    members = root.findall("xrd:member", ns)
    assert [m.find("xrd:id", ns).get("{http://x-road.eu/xsd/identifiers}objectType") for m in members] == [
        "MEMBER",
        "MEMBER",
        "SUBSYSTEM",
        "SUBSYSTEM",
    ]
    assert [m.findtext("xrd:name", namespaces=ns) for m in members] == [name for _, name in CLIENTS]
    assert members[3].findtext("xrd:id/id:subsystemCode", namespaces=ns) == "meldewesen"
    assert members[0].find("xrd:id/id:subsystemCode", ns) is None


def test_list_clients_json_has_x_roads_shape() -> None:
    data = json.loads(list_clients_json(CLIENTS[:1] + CLIENTS[3:]))
    assert data == {
        "member": [
            {
                "id": {
                    "member_class": "GOV",
                    "member_code": "05",
                    "object_type": "MEMBER",
                    "xroad_instance": "NRW",
                },
                "name": "Land Nordrhein-Westfalen (IT.NRW)",
            },
            {
                "id": {
                    "member_class": "MUN",
                    "member_code": "05774020",
                    "subsystem_code": "meldewesen",
                    "object_type": "SUBSYSTEM",
                    "xroad_instance": "NRW",
                },
                "name": "Stadt Delbrück <Melde & Pass>",
            },
        ]
    }
    assert list(data["member"][1]["id"]) == [
        "member_class",
        "member_code",
        "subsystem_code",
        "object_type",
        "xroad_instance",
    ]


def test_a_client_without_name_has_none_and_an_empty_list_is_valid() -> None:
    root = validates("xroad.xsd", list_clients_xml([(BIELEFELD, None)]))
    assert root.find(f"{{{NS_XROAD}}}member/{{{NS_XROAD}}}name") is None
    assert json.loads(list_clients_json([(BIELEFELD, None)]))["member"][0].keys() == {"id"}
    validates("xroad.xsd", list_clients_xml([]))
    assert json.loads(list_clients_json([])) == {"member": []}


def test_a_name_xml_cannot_carry_is_made_safe() -> None:
    root = validates("xroad.xsd", list_clients_xml([(BIELEFELD, "Stadt\x00Bielefeld")]))
    assert root.findtext(f"{{{NS_XROAD}}}member/{{{NS_XROAD}}}name") == "Stadt\ufffdBielefeld"


def test_something_else_than_a_client_is_refused() -> None:
    with pytest.raises(TypeError):
        list_clients_xml([(SERVICES[0], "x")])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("accept", "json_wanted"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("text/xml, application/json;q=0.5", True),
        ("application/json;q=0", False),
        ("application/json;q=oops", False),
        ("*/*", False),
        ("application/*", False),
        ("text/xml", False),
        ("application/jsonx", False),
        ("", False),
        (None, False),
    ],
)
def test_json_only_when_asked_for(accept: str | None, json_wanted: bool) -> None:
    assert accepts_json(accept) is json_wanted
    content_type, body = render_list_clients(CLIENTS, accept)
    if json_wanted:
        assert content_type == JSON_CONTENT_TYPE
        json.loads(body)
    else:
        assert content_type == XML_CONTENT_TYPE
        validates("xroad.xsd", body)


# -- listMethods / allowedMethods ---------------------------------------------------------------


def test_method_list_requests_are_recognised_by_service_code() -> None:
    assert read_metadata_request(metadata_request("listMethods", "<xrd:listMethods/>")) == MethodListRequest()
    assert read_metadata_request(
        metadata_request("allowedMethods", "<xrd:allowedMethods/>")
    ) == MethodListRequest(allowed=True)
    ordinary = metadata_request("meldeauskunft", "<m:meldeauskunft/>")
    assert read_metadata_request(ordinary) is None


def test_method_lists_validate_and_leave_out_metadata_services_and_repeats() -> None:
    listed = [*SERVICES, ServiceId(BIELEFELD, "getWsdl"), ServiceId(BIELEFELD, "listMethods"), SERVICES[0]]
    for render, tag in (
        (list_methods_response_body, "listMethodsResponse"),
        (allowed_methods_response_body, "allowedMethodsResponse"),
    ):
        root = validates("xroad.xsd", render(listed))
        assert root.tag == f"{{{NS_XROAD}}}{tag}"
        codes = [service.findtext("{http://x-road.eu/xsd/identifiers}serviceCode") for service in root]
        assert codes == ["meldeauskunft", "rueckmeldung", "statistik"]
        assert root[2].find("{http://x-road.eu/xsd/identifiers}serviceVersion") is None
        assert all(s.get("{http://x-road.eu/xsd/identifiers}objectType") == "SERVICE" for s in root)
    validates("xroad.xsd", list_methods_response_body([]))


def test_zeep_reads_a_method_list_with_the_bundled_schema() -> None:
    node = etree.fromstring(schema_bytes("xroad.xsd"), etree.XMLParser(remove_comments=True))
    schema = zeep.xsd.Schema(node, transport=OfflineTransport())  # type: ignore[no-untyped-call]
    element = schema.get_element(f"{{{NS_XROAD}}}listMethodsResponse")
    value = element.parse(  # type: ignore[no-untyped-call]
        etree.fromstring(list_methods_response_body(SERVICES)), schema
    )
    assert [(s.serviceCode, s.serviceVersion, s.objectType) for s in value.service] == [
        ("meldeauskunft", "v1", "SERVICE"),
        ("rueckmeldung", "v1", "SERVICE"),
        ("statistik", None, "SERVICE"),
    ]


def test_a_method_list_answer_is_a_consistent_x_road_response() -> None:
    request = metadata_request("listMethods", "<xrd:listMethods/>")
    answer = render_soap_response(request, list_methods_response_body(SERVICES))
    response = parse_soap_response(answer, content_type=XML_CONTENT_TYPE)
    check_response_consistent(request.header, response)
    check_request_hash(request, response)
    validates("xroad.xsd", response.body_xml)


# -- getWsdl -------------------------------------------------------------------------------------


def test_get_wsdl_requests_name_a_service_and_maybe_a_version() -> None:
    assert read_metadata_request(get_wsdl_request()) == WsdlRequest("meldeauskunft")
    versioned = get_wsdl_request(
        "<xrd:serviceCode> meldeauskunft </xrd:serviceCode><xrd:serviceVersion>v1</xrd:serviceVersion>"
        "<xrd:other>ignored, as X-Road ignores it</xrd:other>"
    )
    call = read_metadata_request(versioned)
    assert call == WsdlRequest("meldeauskunft", "v1")
    assert isinstance(call, WsdlRequest)
    assert call.service_id(BIELEFELD) == ServiceId(BIELEFELD, "meldeauskunft", "v1")
    empty_version = get_wsdl_request("<xrd:serviceCode>m</xrd:serviceCode><xrd:serviceVersion/>")
    assert read_metadata_request(empty_version) == WsdlRequest("m")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "Missing serviceCode in message body"),
        ("<xrd:serviceCode>  </xrd:serviceCode>", "Missing serviceCode in message body"),
        ("<m:serviceCode>meldeauskunft</m:serviceCode>", "Missing serviceCode in message body"),
        ("<xrd:serviceCode>a</xrd:serviceCode><xrd:serviceCode>b</xrd:serviceCode>", "repeats"),
        ("<xrd:serviceCode><xrd:x/></xrd:serviceCode>", "text only"),
        ("<xrd:serviceCode>melde auskunft</xrd:serviceCode>", "illegal character"),
        ("<xrd:serviceCode>m</xrd:serviceCode><xrd:serviceVersion>v/1</xrd:serviceVersion>", "illegal"),
    ],
)
def test_a_get_wsdl_body_that_names_no_service_is_the_provider_servers_invalid_request(
    body: str, message: str
) -> None:
    error = refused(
        ErrorCode.INVALID_REQUEST, lambda: read_metadata_request(get_wsdl_request(body)), Origin.SERVER_PROXY
    )
    assert message in error.message
    refused(
        ErrorCode.INVALID_REQUEST,
        lambda: read_metadata_request(get_wsdl_request(body), origin=Origin.CLIENT),
        Origin.CLIENT,
    )


def test_get_wsdl_answer_is_multipart_with_the_echoed_soap_part_and_the_masked_wsdl() -> None:
    request = get_wsdl_request(
        "<xrd:serviceCode>meldeauskunft</xrd:serviceCode><xrd:serviceVersion>v1</xrd:serviceVersion>"
    )
    content_type, body = render_get_wsdl_response(request, WSDL)
    assert content_type.startswith('multipart/related; type="text/xml"; charset=UTF-8; boundary=xroad')

    response = parse_soap_response(body, content_type=content_type)
    assert response.packaging is Packaging.SWA
    check_response_consistent(request.header, response)
    check_request_hash(request, response)
    validates("xroad.xsd", response.body_xml)
    assert etree.fromstring(response.body_xml).findtext(f"{{{NS_XROAD}}}serviceVersion") == "v1"

    (attachment,) = response.attachments
    assert attachment.content_type == "text/xml"
    assert attachment.data == mask_endpoints(WSDL)
    assert b"bielefeld.intern" not in body
    assert read_wsdl(attachment.data).find("meldeauskunft", "v1") is not None


def test_get_wsdl_answer_matches_the_bytes_clients_cut_the_wsdl_out_of() -> None:
    # Some X-Road client libraries extract the WSDL from X-Road's getWsdl answer with this
    # very pattern; it depends on the boundary prefix, the lower-case part headers without
    # a space and the SOAP-ENV prefix.
    pattern = re.compile(
        "--xroad.+content-type:text/xml.+<SOAP-ENV:Envelope.+</SOAP-ENV:Envelope>"
        ".+--xroad.+content-type:text/xml.*?\r\n\r\n(.+)\r\n--xroad.+",
        re.DOTALL,
    )
    _, body = render_get_wsdl_response(get_wsdl_request(), WSDL)
    match = pattern.search(body.decode("utf-8"))
    assert match is not None
    assert match.group(1).encode("utf-8") == mask_endpoints(WSDL)


def test_zeep_reads_the_wsdl_attachment_offline() -> None:
    content_type, body = render_get_wsdl_response(get_wsdl_request(), WSDL)
    wsdl = split_soap_message(content_type, body).attachments[0].data
    client = zeep.Client(io.BytesIO(wsdl), transport=OfflineTransport())  # type: ignore[no-untyped-call]
    assert client.service._binding_options["address"] == MASKED_ENDPOINT
    assert {"meldeauskunft", "rueckmeldung"} <= set(client.service._binding._operations)


def test_get_wsdl_answer_refuses_a_request_for_another_service() -> None:
    request = metadata_request("listMethods", "<xrd:listMethods/>")
    refused(ErrorCode.INVALID_REQUEST, lambda: render_get_wsdl_response(request, WSDL), Origin.SERVER_PROXY)


def test_get_wsdl_answer_refuses_a_hostile_wsdl() -> None:
    hostile = b'<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><d>&e;</d>'
    refused(
        ErrorCode.INVALID_XML,
        lambda: render_get_wsdl_response(get_wsdl_request(), hostile),
        Origin.SERVER_PROXY,
    )


def test_packing_keeps_both_parts_byte_for_byte() -> None:
    envelope_bytes = b"<SOAP-ENV:Envelope/>"
    content_type, body = pack_get_wsdl_response(envelope_bytes, b"<wsdl/>\r\n", boundary="xroadABC123")
    assert content_type == 'multipart/related; type="text/xml"; charset=UTF-8; boundary=xroadABC123'
    assert body.startswith(
        b"--xroadABC123\r\ncontent-type:text/xml; charset=UTF-8\r\n\r\n<SOAP-ENV:Envelope/>\r\n"
    )
    assert body.endswith(b"\r\n\r\n<wsdl/>\r\n\r\n--xroadABC123--\r\n")
    package = split_soap_message(content_type, body)
    assert package.soap == envelope_bytes
    assert package.attachments[0].data == b"<wsdl/>\r\n"
    assert package.attachments[0].content_id is not None


@pytest.mark.parametrize("boundary", ["", "xroad-1", "x" * 71, "xroadä", "xroadABC"])
def test_a_boundary_that_cannot_frame_the_parts_is_refused(boundary: str) -> None:
    with pytest.raises(ValueError):
        pack_get_wsdl_response(b"<e/>--xroadABC", b"<w/>", boundary=boundary)


def test_get_wsdl_response_body_echoes_the_request() -> None:
    root = validates("xroad.xsd", get_wsdl_response_body(WsdlRequest("meldeauskunft", "v1")))
    assert [child.text for child in root] == ["meldeauskunft", "v1"]
    root = validates("xroad.xsd", get_wsdl_response_body(WsdlRequest("meldeauskunft")))
    assert [child.text for child in root] == ["meldeauskunft"]


# -- the WSDL over HTTP GET ------------------------------------------------------------------------

WSDL_QUERY = (
    "xRoadInstance=NRW&memberClass=MUN&memberCode=05711000&subsystemCode=meldewesen&serviceCode=meldeauskunft"
)


def test_the_wsdl_get_form_names_a_service() -> None:
    assert wsdl_query_service(WSDL_QUERY + "&version=v1") == ServiceId(BIELEFELD, "meldeauskunft", "v1")
    assert wsdl_query_service(WSDL_QUERY + "&version=") == ServiceId(BIELEFELD, "meldeauskunft")
    encoded = WSDL_QUERY.replace("meldeauskunft", "melde%2Eauskunft") + "&other=x"
    assert wsdl_query_service(encoded) == ServiceId(BIELEFELD, "melde.auskunft")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (WSDL_QUERY.replace("&subsystemCode=meldewesen", ""), ErrorCode.INVALID_REQUEST),
        (WSDL_QUERY.replace("serviceCode=meldeauskunft", "serviceCode="), ErrorCode.INVALID_REQUEST),
        (WSDL_QUERY + "&serviceCode=rueckmeldung", ErrorCode.INVALID_REQUEST),
        (WSDL_QUERY + "&version=" + "v" * 5000, ErrorCode.INVALID_REQUEST),
        (WSDL_QUERY.replace("meldeauskunft", "melde%2Fauskunft"), ErrorCode.INVALID_SERVICE_IDENTIFIER),
        (WSDL_QUERY + "&version=v%201", ErrorCode.INVALID_SERVICE_IDENTIFIER),
    ],
)
def test_a_wsdl_get_form_naming_no_service_is_the_clients_error(query: str, code: ErrorCode) -> None:
    refused(code, lambda: wsdl_query_service(query))


# -- the security server's own getWsdl request, and the WSDL in the answer --------------------------


def own_get_wsdl_request(version: str | None = "v1") -> SoapRequest:
    header = XRoadHeader(
        MemberId("NRW", "MUN", "05774020"), BIELEFELD.service("getWsdl"), "m-1", user_id="wsdl-request"
    )
    envelope_bytes = render_get_wsdl_request(header, WsdlRequest("meldeauskunft", version))
    return parse_soap_request(envelope_bytes, content_type="text/xml; charset=UTF-8")


def test_a_get_wsdl_request_is_an_x_road_request_naming_the_service() -> None:
    request = own_get_wsdl_request()
    assert request.header.client == MemberId("NRW", "MUN", "05774020")
    assert request.header.service == BIELEFELD.service("getWsdl")
    assert (request.header.message_id, request.header.user_id) == ("m-1", "wsdl-request")
    assert read_metadata_request(request) == WsdlRequest("meldeauskunft", "v1")
    assert read_metadata_request(own_get_wsdl_request(None)) == WsdlRequest("meldeauskunft")
    validates("xroad.xsd", request.body_xml)


def test_a_get_wsdl_request_goes_to_get_wsdl_only() -> None:
    header = XRoadHeader(MemberId("NRW", "MUN", "05774020"), BIELEFELD.service("listMethods"), "m-1")
    with pytest.raises(ValueError, match="getWsdl"):
        render_get_wsdl_request(header, WsdlRequest("meldeauskunft"))


def test_the_wsdl_is_cut_out_of_the_answer_byte_for_byte() -> None:
    request = own_get_wsdl_request()
    content_type, body = render_get_wsdl_response(request, WSDL)
    response = parse_soap_response(body, content_type=content_type, origin=Origin.CLIENT_PROXY)
    assert wsdl_of_get_wsdl_response(response) == mask_endpoints(WSDL)


def test_an_answer_without_exactly_one_wsdl_is_inconsistent() -> None:
    request = own_get_wsdl_request()
    envelope_bytes = render_soap_response(request, get_wsdl_response_body(WsdlRequest("meldeauskunft")))
    bare = parse_soap_response(envelope_bytes, content_type="text/xml; charset=UTF-8")
    refused(ErrorCode.INCONSISTENT_RESPONSE, lambda: wsdl_of_get_wsdl_response(bare), Origin.CLIENT_PROXY)
    content_type, body = encode_multipart_related(
        envelope_bytes,
        (Attachment("a", "text/xml", WSDL), Attachment("b", "text/xml", WSDL)),
        packaging=Packaging.SWA,
    )
    two = parse_soap_response(body, content_type=content_type)
    refused(ErrorCode.INCONSISTENT_RESPONSE, lambda: wsdl_of_get_wsdl_response(two), Origin.CLIENT_PROXY)
    content_type, body = encode_multipart_related(
        envelope_bytes, (Attachment("a", "application/pdf", b"%PDF"),), packaging=Packaging.SWA
    )
    not_xml = parse_soap_response(body, content_type=content_type)
    refused(ErrorCode.INCONSISTENT_RESPONSE, lambda: wsdl_of_get_wsdl_response(not_xml), Origin.CLIENT_PROXY)


def test_a_fault_instead_of_the_wsdl_is_the_providers_failure() -> None:
    fault = parse_soap_response(
        fault_envelope("Server.ServerProxy.UnknownService", "unknown", "c-1"),
        content_type="text/xml; charset=UTF-8",
    )
    error = refused(ErrorCode.SERVICE_FAILED, lambda: wsdl_of_get_wsdl_response(fault), Origin.SERVER_PROXY)
    assert "Server.ServerProxy.UnknownService" in error.message
