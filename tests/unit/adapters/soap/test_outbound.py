"""Answers and faults to the information system, also as a zeep client reads them."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
import zeep.exceptions
import zeep.transports
from lxml import etree

from adapters.soap.envelope import NS_SOAP_ENV, NS_XROAD, SHA512_ALGORITHM_ID
from adapters.soap.inbound import parse_soap_request
from adapters.soap.outbound import (
    FAULT_HTTP_STATUS,
    SOAP_CONTENT_TYPE,
    fault_envelope,
    render_soap_fault,
    render_soap_response,
)
from adapters.soap.response import check_request_hash, check_response_consistent, parse_soap_response
from core.errors import ErrorCode, Origin, XwegError
from tests.unit.adapters.soap.messages import (
    HEADERS,
    ISSUE,
    PARTY,
    SPEC_REQUEST,
    TEXT_XML,
    envelope,
    refused,
)

PROVIDER_BODY = (
    b'<m:meldeauskunftResponse xmlns:m="urn:example:meldewesen">'
    b"<m:wohnort>Bielefeld</m:wohnort></m:meldeauskunftResponse>"
)
FAULT = "{" + NS_SOAP_ENV + "}Body/{" + NS_SOAP_ENV + "}Fault"


def test_answer_echoes_every_request_header_and_adds_the_request_hash() -> None:
    custom = '<t:trace xmlns:t="urn:trace">abc</t:trace>'
    request = parse_soap_request(envelope((*HEADERS, ISSUE, PARTY, custom)), content_type=TEXT_XML)
    answer = render_soap_response(request, PROVIDER_BODY)

    root = etree.fromstring(answer)
    header = root.find(f"{{{NS_SOAP_ENV}}}Header")
    assert header is not None
    request_header = etree.fromstring(request.header_xml)
    # Exclusive canonical form: the same elements, whichever unused prefixes are in scope.
    echoed = [etree.tostring(child, method="c14n", exclusive=True) for child in header][:-1]
    assert echoed == [etree.tostring(child, method="c14n", exclusive=True) for child in request_header]
    assert len(echoed) == 8
    request_hash = header[-1]
    assert request_hash.tag == f"{{{NS_XROAD}}}requestHash"
    assert request_hash.get("algorithmId") == SHA512_ALGORITHM_ID
    assert base64.b64decode(request_hash.text or "") == hashlib.sha512(request.soap).digest()
    body = root.find(f"{{{NS_SOAP_ENV}}}Body")
    assert body is not None and len(body) == 1
    c14n = {"method": "c14n", "exclusive": True}
    assert etree.tostring(body[0], **c14n) == etree.tostring(etree.fromstring(PROVIDER_BODY), **c14n)
    assert answer.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


def test_answer_reads_back_as_a_consistent_response_bound_to_the_request() -> None:
    request = parse_soap_request(b"\xef\xbb\xbf" + SPEC_REQUEST, content_type=TEXT_XML)
    response = parse_soap_response(
        render_soap_response(request, PROVIDER_BODY), content_type=SOAP_CONTENT_TYPE
    )
    assert response.header == request.header
    assert response.request_hash == request.request_hash
    check_response_consistent(request.header, response)
    check_request_hash(request, response)


def test_a_provider_body_that_is_not_xml_is_refused() -> None:
    request = parse_soap_request(SPEC_REQUEST, content_type=TEXT_XML)
    refused(
        ErrorCode.INVALID_XML,
        lambda: render_soap_response(request, b"<!DOCTYPE x><x/>"),
        origin=Origin.SERVER_PROXY,
    )


def test_fault_as_x_road_writes_it() -> None:
    error = XwegError(
        ErrorCode.ACCESS_DENIED, "Request is not allowed", Origin.SERVER_PROXY, correlation_id="c-1"
    )
    status, headers, body = render_soap_fault(error)
    assert status == FAULT_HTTP_STATUS == 200
    assert headers == [("Content-Type", "text/xml; charset=UTF-8")]
    fault = etree.fromstring(body).find(FAULT)
    assert fault is not None
    assert [child.tag for child in fault] == ["faultcode", "faultstring", "faultactor", "detail"]
    assert fault.findtext("faultcode") == "Server.ServerProxy.AccessDenied"
    assert fault.findtext("faultstring") == "Request is not allowed"
    assert fault.findtext("faultactor") == ""
    assert fault.findtext("detail/faultDetail") == "c-1"


def test_client_faults_carry_the_client_prefix() -> None:
    _, _, body = render_soap_fault(XwegError(ErrorCode.INVALID_PROTOCOL_VERSION, "no", Origin.CLIENT))
    assert etree.fromstring(body).findtext(FAULT + "/faultcode") == "Client.InvalidProtocolVersion"


def test_fault_text_is_escaped_and_made_xml_safe() -> None:
    body = fault_envelope("Client.InvalidXml", "bad <x> & \x00\x1b \ud800 end", "id")
    assert etree.fromstring(body).findtext(FAULT + "/faultstring") == "bad <x> & \ufffd\ufffd \ufffd end"


def test_fault_reads_back_as_a_fault() -> None:
    error = XwegError(ErrorCode.UNKNOWN_SERVICE, "Unknown service", Origin.SERVER_PROXY, correlation_id="c-2")
    response = parse_soap_response(
        render_soap_fault(error)[2], content_type=SOAP_CONTENT_TYPE, origin=Origin.CLIENT_PROXY
    )
    assert response.is_fault and response.header is None
    assert response.fault is not None
    assert (response.fault.code, response.fault.string, response.fault.detail) == (
        "Server.ServerProxy.UnknownService",
        "Unknown service",
        "c-2",
    )


# --- a zeep client against these messages ---------------------------------------------------------

WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:example:meldewesen"
    targetNamespace="urn:example:meldewesen">
  <wsdl:types>
    <xsd:schema targetNamespace="urn:example:meldewesen" elementFormDefault="qualified">
      <xsd:element name="meldeauskunft"><xsd:complexType><xsd:sequence>
        <xsd:element name="familienname" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="meldeauskunftResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="wohnort" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
    </xsd:schema>
  </wsdl:types>
  <wsdl:message name="request"><wsdl:part name="body" element="tns:meldeauskunft"/></wsdl:message>
  <wsdl:message name="response"><wsdl:part name="body" element="tns:meldeauskunftResponse"/></wsdl:message>
  <wsdl:portType name="Meldewesen"><wsdl:operation name="meldeauskunft">
    <wsdl:input message="tns:request"/><wsdl:output message="tns:response"/></wsdl:operation></wsdl:portType>
  <wsdl:binding name="MeldewesenBinding" type="tns:Meldewesen">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="meldeauskunft"><soap:operation soapAction=""/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="Meldewesen"><wsdl:port name="MeldewesenPort" binding="tns:MeldewesenBinding">
    <soap:address location="http://ss.delbrueck.example/"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"""


class SecurityServerTransport(zeep.transports.Transport):
    """Answers zeep's POSTs as a security server would, from the adapter's functions."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sent: list[tuple[bytes, dict[str, str]]] = []
        self.fail_with: XwegError | None = None

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        self.sent.append((message, headers))
        response = requests.Response()
        if self.fail_with is not None:
            status, answer_headers, body = render_soap_fault(self.fail_with)
        else:
            request = parse_soap_request(message, content_type=headers["Content-Type"])
            body = render_soap_response(request, PROVIDER_BODY)
            status, answer_headers = 200, [("Content-Type", SOAP_CONTENT_TYPE)]
        response.status_code = status
        response.headers.update(dict(answer_headers))
        response._content = body
        return response


def xroad_headers() -> list[Any]:
    """The X-Road headers as raw elements, the way X-Road users hand them to zeep."""
    return [etree.fromstring(envelope((h,)))[0][0] for h in HEADERS]


@pytest.fixture
def zeep_client(tmp_path: Path) -> tuple[zeep.Client, SecurityServerTransport]:
    wsdl = tmp_path / "meldewesen.wsdl"
    wsdl.write_text(WSDL, encoding="utf-8")
    transport = SecurityServerTransport()
    return zeep.Client(str(wsdl), transport=transport), transport  # type: ignore[no-untyped-call]


def test_zeep_request_is_accepted_and_zeep_reads_the_answer(
    zeep_client: tuple[zeep.Client, SecurityServerTransport],
) -> None:
    client, transport = zeep_client
    result = client.service.meldeauskunft(familienname="Muster", _soapheaders=xroad_headers())
    assert result == "Bielefeld"
    message, headers = transport.sent[0]
    request = parse_soap_request(message, content_type=headers["Content-Type"])
    assert request.header.message_id == "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"
    assert headers["SOAPAction"] == '""'


def test_zeep_raises_our_fault_with_code_message_and_correlation_id(
    zeep_client: tuple[zeep.Client, SecurityServerTransport],
) -> None:
    client, transport = zeep_client
    transport.fail_with = XwegError(
        ErrorCode.ACCESS_DENIED, "Request is not allowed", Origin.SERVER_PROXY, correlation_id="c-3"
    )
    with pytest.raises(zeep.exceptions.Fault) as info:
        client.service.meldeauskunft(familienname="Muster", _soapheaders=xroad_headers())
    assert info.value.code == "Server.ServerProxy.AccessDenied"
    assert info.value.message == "Request is not allowed"
    assert info.value.detail is not None and info.value.detail.findtext("faultDetail") == "c-3"
