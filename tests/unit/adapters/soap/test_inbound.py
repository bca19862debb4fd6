"""X-Road SOAP 4.0 requests: the specification's example, each header rule's refusal, packaging, fuzz."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.soap.envelope import SHA512_ALGORITHM_ID, RepresentedParty, XRoadHeader
from adapters.soap.inbound import SoapRequest, parse_soap_request, to_core_request
from adapters.soap.mime import Attachment, Packaging
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import MemberId, ServiceId, SubsystemId
from core.messages import Protocol, sha512
from tests.unit.adapters.soap.messages import (
    BODY,
    CLIENT,
    HEADERS,
    ID,
    ISSUE,
    MEMBER_CLIENT,
    MESSAGE_ID,
    PARTY,
    SERVICE,
    SPEC_REQUEST,
    TEXT_XML,
    USER_ID,
    VERSION,
    envelope,
    multipart,
    quickly,
    refused,
    replaced,
    without,
)

CLIENT_ID = SubsystemId("NRW", "MUN", "05774020", "meldewesen")
SERVICE_ID = ServiceId(SubsystemId("NRW", "MUN", "05711000", "meldewesen"), "meldeauskunft", "v1")


def parse(body: bytes, content_type: str | None = TEXT_XML, method: str = "POST") -> SoapRequest:
    return parse_soap_request(body, content_type=content_type, method=method)


def refuse(
    code: ErrorCode, body: bytes, content_type: str | None = TEXT_XML, method: str = "POST"
) -> XwegError:
    with quickly():
        error = refused(code, lambda: parse(body, content_type, method))
    assert error.http_status == (413 if code is ErrorCode.REQUEST_TOO_LARGE else 400)
    return error


# --- golden ---------------------------------------------------------------------------------------


def test_the_specification_example() -> None:
    request = parse(SPEC_REQUEST)
    assert request.header == XRoadHeader(
        client=CLIENT_ID,
        service=SERVICE_ID,
        message_id=MESSAGE_ID,
        protocol_version="4.0",
        user_id="DE0000000001",
    )
    assert request.packaging is Packaging.PLAIN
    assert request.raw is SPEC_REQUEST
    assert request.soap is SPEC_REQUEST
    assert request.attachments == ()
    assert request.content_type == TEXT_XML
    body = etree.fromstring(request.body_xml)
    assert body.tag == "{urn:example:meldewesen}meldeauskunft"
    assert body.findtext("{urn:example:meldewesen}familienname") == "Muster"
    assert body.tail is None
    header = etree.fromstring(request.header_xml)
    assert header.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Header"
    assert [etree.QName(child).localname for child in header] == [
        "client",
        "service",
        "id",
        "userId",
        "protocolVersion",
    ]


def test_request_hash_is_sha512_of_the_exact_bytes() -> None:
    request = parse(SPEC_REQUEST)
    assert (
        request.request_hash.algorithm_id == SHA512_ALGORITHM_ID == "http://www.w3.org/2001/04/xmlenc#sha512"
    )
    assert base64.b64decode(request.request_hash.value) == hashlib.sha512(SPEC_REQUEST).digest()


def test_a_byte_order_mark_is_accepted_and_stays_in_the_hashed_bytes() -> None:
    with_bom = b"\xef\xbb\xbf" + SPEC_REQUEST
    request = parse(with_bom)
    assert request.soap == with_bom
    assert base64.b64decode(request.request_hash.value) == hashlib.sha512(with_bom).digest()
    assert request.header == parse(SPEC_REQUEST).header


def test_all_optional_headers() -> None:
    request = parse(envelope((CLIENT, SERVICE, ID, USER_ID, ISSUE, VERSION, PARTY)))
    assert request.header.issue == "AZ-2024-17"
    assert request.header.represented_party == RepresentedParty("05774020", "MUN")
    assert request.header.represented_party.text() == "MUN/05774020"


def test_minimal_request_with_member_client_and_unversioned_service() -> None:
    service = SERVICE.replace("<id:serviceVersion>v1</id:serviceVersion>", "")
    request = parse(envelope((MEMBER_CLIENT, service, ID, VERSION)))
    assert request.header.client == MemberId("NRW", "MUN", "05774020")
    assert request.header.service.service_version is None
    assert request.header.user_id is None and request.header.issue is None
    assert request.header.represented_party is None


def test_represented_party_without_class() -> None:
    party = PARTY.replace("<repr:partyClass>MUN</repr:partyClass>", "")
    request = parse(envelope((*HEADERS, party)))
    assert request.header.represented_party == RepresentedParty("05774020")
    assert request.header.represented_party.text() == "05774020"


def test_header_order_does_not_matter() -> None:
    assert parse(envelope(tuple(reversed(HEADERS)))).header == parse(envelope()).header


def test_comments_and_cdata_in_headers_are_read_as_x_road_reads_them() -> None:
    headers = replaced(
        HEADERS, ID, f"<xrd:id><!-- x -->{MESSAGE_ID[:8]}<![CDATA[{MESSAGE_ID[8:]}]]></xrd:id>"
    )
    headers = replaced(headers, VERSION, "<xrd:protocolVersion>4<!---->.0</xrd:protocolVersion>")
    headers = replaced(headers, CLIENT, CLIENT.replace("<id:memberCode>", "<id:memberCode><!-- c -->"))
    header = parse(envelope(headers)).header
    assert header.message_id == MESSAGE_ID
    assert header.client == CLIENT_ID


def test_empty_optional_headers_mean_absent() -> None:
    headers = (*without(HEADERS, USER_ID), "<xrd:userId/>", "<xrd:issue></xrd:issue>")
    header = parse(envelope(headers)).header
    assert header.user_id is None and header.issue is None


def test_other_header_elements_are_kept_but_not_interpreted() -> None:
    server = (
        '<xrd:securityServer id:objectType="SERVER"><id:xRoadInstance>NRW</id:xRoadInstance>'
        "<id:memberClass>MUN</id:memberClass><id:memberCode>05711000</id:memberCode>"
        "<id:serverCode>ss1</id:serverCode></xrd:securityServer>"
    )
    custom = '<t:trace xmlns:t="urn:trace" SOAP-ENV:mustUnderstand="0">abc</t:trace>'
    request = parse(envelope((*HEADERS, server, custom)))
    header = etree.fromstring(request.header_xml)
    assert [etree.QName(c).localname for c in header][-2:] == ["securityServer", "trace"]


def test_any_wrapper_namespace_and_whitespace_around_elements() -> None:
    body = '\n  <x:meldeauskunft xmlns:x="urn:other"><x:a/></x:meldeauskunft>\n  <!-- note -->\n'
    request = parse(envelope(body=body))
    assert etree.fromstring(request.body_xml).tag == "{urn:other}meldeauskunft"


# --- packaging ------------------------------------------------------------------------------------


PDF = b"%PDF-1.7 \x00\xff"


def test_soap_with_attachments_request() -> None:
    soap = envelope()
    body = multipart(
        [
            ([("Content-Type", "text/xml; charset=UTF-8"), ("Content-ID", "<soap@x>")], soap),
            ([("Content-Type", "application/pdf"), ("Content-ID", "<a.pdf@x>")], PDF),
        ]
    )
    content_type = 'multipart/related; type="text/xml"; boundary=MIME-b0undary; start="<soap@x>"'
    request = parse(body, content_type)
    assert request.packaging is Packaging.SWA
    assert request.raw == body and request.soap == soap
    assert request.attachments == (Attachment("a.pdf@x", "application/pdf", PDF),)
    # X-Road hashes the SOAP part; the whole body is what travels and is signed.
    assert base64.b64decode(request.request_hash.value) == hashlib.sha512(soap).digest()
    assert to_core_request(request).body == body


def test_mtom_request() -> None:
    soap = envelope(
        body='<m:meldeauskunft><m:foto><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" '
        'href="cid:foto@x"/></m:foto></m:meldeauskunft>'
    )
    body = multipart(
        [
            (
                [
                    ("Content-Type", 'application/xop+xml; charset=UTF-8; type="text/xml"'),
                    ("Content-ID", "<r@x>"),
                ],
                soap,
            ),
            ([("Content-Type", "image/jpeg"), ("Content-ID", "<foto@x>")], b"\xff\xd8\xff"),
        ]
    )
    content_type = (
        'multipart/related; type="application/xop+xml"; boundary="MIME-b0undary"; '
        'start="<r@x>"; start-info="text/xml"'
    )
    request = parse(body, content_type)
    assert request.packaging is Packaging.MTOM
    assert request.soap == soap
    assert request.attachments[0].content_id == "foto@x"


def test_multipart_with_a_missing_root_part() -> None:
    body = multipart([([("Content-Type", "application/pdf"), ("Content-ID", "<a.pdf@x>")], PDF)])
    refuse(
        ErrorCode.MISSING_SOAP,
        body,
        'multipart/related; type="text/xml"; boundary=MIME-b0undary; start="<soap@x>"',
    )


def test_multipart_without_boundary() -> None:
    refuse(
        ErrorCode.MIME_PARSING_FAILED,
        multipart([([("Content-Type", "text/xml")], envelope())]),
        "multipart/related",
    )


def test_wrong_content_types() -> None:
    refuse(ErrorCode.INVALID_CONTENT_TYPE, SPEC_REQUEST, "application/soap+xml; charset=utf-8")
    refuse(ErrorCode.INVALID_CONTENT_TYPE, SPEC_REQUEST, None)
    refuse(ErrorCode.INVALID_CONTENT_TYPE, SPEC_REQUEST, "application/json")


def test_get_instead_of_post() -> None:
    error = refuse(ErrorCode.INVALID_HTTP_METHOD, b"", None, method="GET")
    assert error.fault_code == "Client.InvalidHttpMethod"


def test_oversize_request() -> None:
    body = envelope(body="<m:meldeauskunft>" + "x" * (10 * 1024 * 1024) + "</m:meldeauskunft>")
    refuse(ErrorCode.REQUEST_TOO_LARGE, body)


# --- XML attacks arrive as requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + envelope(body="<m:meldeauskunft>&x;</m:meldeauskunft>"),
        b'<!DOCTYPE e [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>'
        + envelope(body="<m:meldeauskunft>&x;</m:meldeauskunft>"),
        b'<!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        + envelope(body="<m:meldeauskunft>&b;</m:meldeauskunft>"),
        envelope(body="<m:meldeauskunft>" + "<m:a>" * 200 + "</m:a>" * 200 + "</m:meldeauskunft>"),
        envelope(body="<m:meldeauskunft>" + "<m:a/>" * 100_001 + "</m:meldeauskunft>"),
        SPEC_REQUEST[:-30],
        SPEC_REQUEST.replace(b"<xrd:id>", b"<xrd:id>\xff"),
    ],
    ids=["xxe-file", "xxe-http", "entity-expansion", "deep", "many-elements", "truncated", "not-utf8"],
)
def test_xml_attacks_never_reach_header_checks(body: bytes) -> None:
    refuse(ErrorCode.INVALID_XML, body)


# --- envelope structure ---------------------------------------------------------------------------


def test_missing_header() -> None:
    error = refuse(ErrorCode.MISSING_HEADER, envelope(None))
    assert error.fault_code == "Client.MissingHeader"


def test_missing_header_and_body_names_the_header_first() -> None:
    refuse(ErrorCode.MISSING_HEADER, envelope(None, None))


def test_missing_body() -> None:
    refuse(ErrorCode.MISSING_BODY, envelope(body=None))


@pytest.mark.parametrize(
    "body",
    ["", "<m:meldeauskunft/><m:meldeauskunft/>", "text", "<m:meldeauskunft/>tail"],
    ids=["empty", "two-elements", "text", "trailing-text"],
)
def test_body_must_be_one_element(body: str) -> None:
    refuse(ErrorCode.INVALID_BODY, envelope(body=body))


def test_body_element_must_be_named_after_the_service_code() -> None:
    error = refuse(ErrorCode.INVALID_BODY, envelope(body="<m:meldeauskunftX/>"))
    assert "meldeauskunft" in error.message


def test_a_fault_is_no_request() -> None:
    refuse(ErrorCode.INVALID_BODY, envelope(body="<SOAP-ENV:Fault><faultcode>x</faultcode></SOAP-ENV:Fault>"))


def test_soap_12_envelope_is_refused() -> None:
    body = SPEC_REQUEST.replace(
        b"http://schemas.xmlsoap.org/soap/envelope/", b"http://www.w3.org/2003/05/soap-envelope"
    )
    error = refuse(ErrorCode.INVALID_SOAP, body)
    assert "SOAP 1.2" in error.message


@pytest.mark.parametrize(
    "body",
    [
        b"<Envelope/>",
        b'<m:meldeauskunft xmlns:m="urn:m"/>',
        SPEC_REQUEST.replace(b"http://schemas.xmlsoap.org/soap/envelope/", b"urn:not-soap"),
        envelope().replace(b"</SOAP-ENV:Envelope>", b"<SOAP-ENV:Body/></SOAP-ENV:Envelope>"),
        envelope().replace(b"</SOAP-ENV:Envelope>", b"<SOAP-ENV:Header/></SOAP-ENV:Envelope>"),
        envelope().replace(b"</SOAP-ENV:Envelope>", b"<x:extra xmlns:x='urn:x'/></SOAP-ENV:Envelope>"),
        envelope().replace(b"</SOAP-ENV:Envelope>", b"stray</SOAP-ENV:Envelope>"),
        envelope().replace(b"<SOAP-ENV:Header>", b"<SOAP-ENV:Header>text"),
    ],
    ids=[
        "no-namespace",
        "no-envelope",
        "wrong-namespace",
        "two-bodies",
        "header-after-body",
        "extra",
        "text",
        "header-text",
    ],
)
def test_malformed_envelopes(body: bytes) -> None:
    refuse(ErrorCode.INVALID_SOAP, body)


# --- required and duplicated header fields --------------------------------------------------------


@pytest.mark.parametrize(
    "missing, name",
    [(VERSION, "protocolVersion"), (CLIENT, "client"), (ID, "id")],
)
def test_missing_required_field(missing: str, name: str) -> None:
    error = refuse(ErrorCode.MISSING_HEADER_FIELD, envelope(without(HEADERS, missing)))
    assert error.message == f"Required field '{name}' is missing"


def test_missing_service() -> None:
    error = refuse(ErrorCode.MISSING_HEADER_FIELD, envelope(without(HEADERS, SERVICE)))
    assert error.message == "Message header must contain service id"


def test_missing_fields_are_named_in_x_road_order() -> None:
    error = refuse(ErrorCode.MISSING_HEADER_FIELD, envelope((USER_ID,)))
    assert "protocolVersion" in error.message


def test_header_without_x_road_fields() -> None:
    # A header that declares the X-Road namespace but holds none of its fields.
    body = envelope(('<t:trace xmlns:t="urn:trace">1</t:trace>',))
    refuse(ErrorCode.MISSING_HEADER_FIELD, body)


def test_x_road_5_namespace_is_not_x_road_4() -> None:
    old = SPEC_REQUEST.replace(b"http://x-road.eu/xsd/xroad.xsd", b"http://x-road.ee/xsd/x-road.xsd")
    refuse(ErrorCode.MISSING_HEADER_FIELD, old)


@pytest.mark.parametrize(
    "field, name",
    [
        (CLIENT, "client"),
        (SERVICE, "service"),
        (ID, "id"),
        (USER_ID, "userId"),
        (VERSION, "protocolVersion"),
        (ISSUE, "issue"),
        (PARTY, "representedParty"),
    ],
)
def test_duplicated_field(field: str, name: str) -> None:
    error = refuse(ErrorCode.DUPLICATE_HEADER_FIELD, envelope((*HEADERS, field, field)))
    assert error.message == f"SOAP header contains duplicate field '{name}'"


def test_duplicated_field_with_different_values() -> None:
    refuse(ErrorCode.DUPLICATE_HEADER_FIELD, envelope((*HEADERS, "<xrd:id>other</xrd:id>")))


# --- protocol version -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.1", "4", "4.00", " 4.0", "4.0 ", "", "5.0"])
def test_protocol_version_must_be_exactly_4_0(version: str) -> None:
    headers = replaced(HEADERS, VERSION, f"<xrd:protocolVersion>{version}</xrd:protocolVersion>")
    error = refuse(ErrorCode.INVALID_PROTOCOL_VERSION, envelope(headers))
    assert error.fault_code == "Client.InvalidProtocolVersion"


# --- identifiers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "client",
    [
        CLIENT.replace(' id:objectType="SUBSYSTEM"', ""),
        CLIENT.replace('id:objectType="SUBSYSTEM"', 'id:objectType="SERVICE"'),
        CLIENT.replace('id:objectType="SUBSYSTEM"', 'objectType="SUBSYSTEM"'),  # unqualified attribute
        CLIENT.replace('id:objectType="SUBSYSTEM"', 'id:objectType="subsystem"'),
        CLIENT.replace('id:objectType="SUBSYSTEM"', 'id:objectType="MEMBER"'),  # member with subsystemCode
        MEMBER_CLIENT.replace('id:objectType="MEMBER"', 'id:objectType="SUBSYSTEM"'),  # no subsystemCode
        CLIENT.replace("<id:memberClass>MUN</id:memberClass>", ""),
        CLIENT.replace("<id:memberCode>05774020</id:memberCode>", "<id:memberCode></id:memberCode>"),
        CLIENT.replace("05774020", "0577 4020"),
        CLIENT.replace("meldewesen", "melde/wesen"),
        CLIENT.replace("meldewesen", "meldewesen\u00e4"),
        CLIENT.replace("NRW", "NRW:"),
        CLIENT.replace("<id:xRoadInstance>", "<id:serviceCode>x</id:serviceCode><id:xRoadInstance>"),
        CLIENT.replace("<id:xRoadInstance>", '<x:other xmlns:x="urn:x"/><id:xRoadInstance>'),
        CLIENT.replace("<id:memberClass>MUN</id:memberClass>", "<id:memberClass>MUN</id:memberClass>" * 2),
        CLIENT.replace("<id:memberCode>05774020", "<id:memberCode><b>05774020</b>"),
        CLIENT.replace("<id:xRoadInstance>", "text<id:xRoadInstance>"),
    ],
    ids=[
        "no-object-type", "service-type", "unqualified-type", "lower-case-type", "member-with-subsystem",
        "subsystem-without-code", "no-member-class", "empty-member-code", "space", "slash", "umlaut", "colon",
        "foreign-part", "foreign-element", "repeated-part", "element-in-part", "text",
    ],
)  # fmt: skip
def test_invalid_client_identifier(client: str) -> None:
    error = refuse(ErrorCode.INVALID_CLIENT_IDENTIFIER, envelope(replaced(HEADERS, CLIENT, client)))
    assert error.fault_code == "Client.InvalidClientIdentifier"


@pytest.mark.parametrize(
    "service",
    [
        SERVICE.replace(' id:objectType="SERVICE"', ""),
        SERVICE.replace('id:objectType="SERVICE"', 'id:objectType="SUBSYSTEM"'),
        SERVICE.replace("<id:serviceCode>meldeauskunft</id:serviceCode>", ""),
        SERVICE.replace("<id:subsystemCode>meldewesen</id:subsystemCode>", ""),
        SERVICE.replace("v1", "v 1"),
        SERVICE.replace("<id:serviceVersion>v1</id:serviceVersion>", "<id:serviceVersion/>"),
        SERVICE.replace("05711000", "05711000;"),
        SERVICE.replace("<id:serviceVersion>", "<id:serverCode>x</id:serverCode><id:serviceVersion>"),
    ],
    ids=[
        "no-object-type",
        "subsystem-type",
        "no-code",
        "no-subsystem",
        "space",
        "empty-version",
        "semicolon",
        "foreign",
    ],
)
def test_invalid_service_identifier(service: str) -> None:
    error = refuse(ErrorCode.INVALID_SERVICE_IDENTIFIER, envelope(replaced(HEADERS, SERVICE, service)))
    assert error.fault_code == "Client.InvalidServiceIdentifier"


# --- values of the simple fields ------------------------------------------------------------------


def test_empty_message_id_is_a_missing_field() -> None:
    error = refuse(ErrorCode.MISSING_HEADER_FIELD, envelope(replaced(HEADERS, ID, "<xrd:id/>")))
    assert "'id'" in error.message


@pytest.mark.parametrize(
    "headers",
    [
        replaced(HEADERS, ID, f"<xrd:id>{'a' * 256}</xrd:id>"),
        replaced(HEADERS, ID, "<xrd:id>line\nbreak</xrd:id>"),
        replaced(HEADERS, USER_ID, "<xrd:userId>\tDE1</xrd:userId>"),
        replaced(HEADERS, USER_ID, "<xrd:userId>DE&#x7f;1</xrd:userId>"),
        (*HEADERS, PARTY.replace("05774020", "0577/4020")),
    ],
    ids=["long-id", "newline-in-id", "tab-in-user", "del-in-user", "party-slash"],
)
def test_field_values_out_of_bounds(headers: tuple[str, ...]) -> None:
    refuse(ErrorCode.INVALID_REQUEST, envelope(headers))


def test_represented_party_needs_a_code() -> None:
    party = PARTY.replace("<repr:partyCode>05774020</repr:partyCode>", "")
    error = refuse(ErrorCode.MISSING_HEADER_FIELD, envelope((*HEADERS, party)))
    assert "partyCode" in error.message


def test_element_inside_a_simple_field_is_refused() -> None:
    refuse(ErrorCode.INVALID_SOAP, envelope(replaced(HEADERS, ID, f"<xrd:id><b>{MESSAGE_ID}</b></xrd:id>")))


def test_request_hash_in_a_request_is_refused() -> None:
    hash_header = f'<xrd:requestHash algorithmId="{SHA512_ALGORITHM_ID}">AAAA</xrd:requestHash>'
    error = refuse(ErrorCode.INVALID_SOAP, envelope((*HEADERS, hash_header)))
    assert "responses only" in error.message


def test_error_messages_do_not_echo_long_hostile_input() -> None:
    headers = replaced(HEADERS, VERSION, f"<xrd:protocolVersion>{'9' * 10_000}</xrd:protocolVersion>")
    error = refuse(ErrorCode.INVALID_PROTOCOL_VERSION, envelope(headers))
    assert len(error.message) < 200


# --- the core message -----------------------------------------------------------------------------


def test_core_request_carries_identifiers_and_exact_body() -> None:
    request = parse(envelope((CLIENT, SERVICE, ID, USER_ID, ISSUE, VERSION, PARTY)))
    core = to_core_request(request, soap_action='"meldeauskunft"')
    header = core.header
    assert core.body == request.raw
    assert header.protocol is Protocol.SOAP
    assert header.client == CLIENT_ID and header.service == SERVICE_ID
    assert header.message_id == MESSAGE_ID
    assert header.user_id == "DE0000000001" and header.issue == "AZ-2024-17"
    assert header.represented_party == "MUN/05774020"
    assert header.method == "POST" and header.path == "" and header.query == ""
    assert header.headers == (("content-type", TEXT_XML), ("soapaction", '"meldeauskunft"'))
    assert header.body_sha512 == sha512(request.raw)
    assert to_core_request(request).header.headers == (("content-type", TEXT_XML),)


def test_a_soap_action_that_cannot_travel_is_the_clients_error() -> None:
    request = parse(SPEC_REQUEST)
    with pytest.raises(XwegError) as info:
        to_core_request(request, soap_action="a\r\nX-Injected: 1")
    assert info.value.code is ErrorCode.INVALID_REQUEST
    assert info.value.origin is Origin.CLIENT


# --- fuzz -----------------------------------------------------------------------------------------

_CODES = {
    ErrorCode.INVALID_XML,
    ErrorCode.INVALID_SOAP,
    ErrorCode.MISSING_HEADER,
    ErrorCode.MISSING_HEADER_FIELD,
    ErrorCode.DUPLICATE_HEADER_FIELD,
    ErrorCode.INVALID_PROTOCOL_VERSION,
    ErrorCode.MISSING_BODY,
    ErrorCode.INVALID_BODY,
    ErrorCode.INVALID_CLIENT_IDENTIFIER,
    ErrorCode.INVALID_SERVICE_IDENTIFIER,
    ErrorCode.INVALID_REQUEST,
}
_SNIPPETS = [
    b"<",
    b">",
    b"/",
    b"&",
    b";",
    b"xrd:",
    b"id:",
    b'"',
    b"<!--",
    b"-->",
    b"\x00",
    b"\xff",
    b" ",
    b"4.0",
]
_SNIPPETS += [CLIENT.encode(), ID.encode(), VERSION.encode(), b"<![CDATA[x]]>", b"<!DOCTYPE x>", b"&amp;"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parser_returns_a_request_or_raises_our_error(data: st.DataObject) -> None:
    body = bytearray(SPEC_REQUEST)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body)))
        action = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        if action == "delete":
            del body[at : at + data.draw(st.integers(1, 40))]
        elif action == "insert":
            body[at:at] = data.draw(st.sampled_from(_SNIPPETS))
        else:
            body[at : at + 1] = data.draw(st.binary(min_size=1, max_size=1))
    try:
        request = parse(bytes(body))
    except XwegError as error:
        assert error.origin is Origin.CLIENT
        assert error.code in _CODES, error
        event(error.code.code)
    else:
        assert request.raw == bytes(body)
        event("accepted")


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Characters XML 1.0 can carry; whether a header field may hold them is for the parser to say.
xml_text = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0x20, max_codepoint=0xD7FF),
        st.sampled_from("\t\n\r"),
    ),
    max_size=12,
)
replacements = st.one_of(
    st.sampled_from(
        [MEMBER_CLIENT, ISSUE, PARTY, "<xrd:id/>", "<xrd:protocolVersion>3.1</xrd:protocolVersion>"]
    ),
    st.sampled_from(
        ['<t:x xmlns:t="urn:t"/>', SERVICE.replace("<id:serviceVersion>v1</id:serviceVersion>", "")]
    ),
    xml_text.map(lambda t: f"<xrd:id>{_escaped(t)}</xrd:id>"),
    xml_text.map(lambda t: f"<xrd:userId>{_escaped(t)}</xrd:userId>"),
    xml_text.map(lambda t: CLIENT.replace("05774020", _escaped(t))),
    xml_text.map(lambda t: SERVICE.replace("05711000", _escaped(t))),
    xml_text.map(lambda t: PARTY.replace("05774020", _escaped(t))),
)
bodies = st.sampled_from([BODY, BODY, BODY, "", "<m:meldeauskunft/><m:x/>", "<m:other/>", "x", None])


@st.composite
def header_variants(draw: st.DrawFn) -> tuple[str, ...] | None:
    if draw(st.integers(0, 20)) == 0:
        return None
    headers = list(HEADERS)
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace" and headers:
            headers[draw(st.integers(0, len(headers) - 1))] = draw(replacements)
        elif action == "drop" and headers:
            del headers[draw(st.integers(0, len(headers) - 1))]
        else:
            headers.insert(draw(st.integers(0, len(headers))), draw(replacements))
    return tuple(headers)


@settings(max_examples=500, deadline=None)
@given(header_variants(), bodies)
def test_header_validation_returns_a_request_or_raises_our_error(
    headers: tuple[str, ...] | None, body: str | None
) -> None:
    try:
        request = parse(envelope(headers, body))
    except XwegError as error:
        assert error.origin is Origin.CLIENT
        assert error.code in _CODES - {ErrorCode.INVALID_XML}, error
        event(error.code.code)
    else:
        assert isinstance(request.header, XRoadHeader)
        assert (
            etree.QName(etree.fromstring(request.body_xml)).localname == request.header.service.service_code
        )
        event("accepted")
