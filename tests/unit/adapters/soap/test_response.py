"""A provider's answer: parsing, the echo of the request's headers, and the request hash."""

from __future__ import annotations

import base64

import pytest

from adapters.soap.envelope import SHA512_ALGORITHM_ID, RequestHash
from adapters.soap.inbound import SoapRequest, parse_soap_request
from adapters.soap.mime import Attachment, Packaging, encode_multipart_related
from adapters.soap.outbound import render_soap_response
from adapters.soap.response import (
    SoapResponse,
    check_request_hash,
    check_response_consistent,
    parse_soap_response,
)
from core.errors import ErrorCode, Origin
from tests.unit.adapters.soap.messages import (
    CLIENT,
    HEADERS,
    ID,
    ISSUE,
    MEMBER_CLIENT,
    PARTY,
    RESPONSE_BODY,
    SERVICE,
    SPEC_REQUEST,
    TEXT_XML,
    USER_ID,
    envelope,
    refused,
    replaced,
    without,
)

REQUEST: SoapRequest = parse_soap_request(envelope((*HEADERS, ISSUE, PARTY)), content_type=TEXT_XML)
ANSWER_HEADERS = (*HEADERS, ISSUE, PARTY)


def answer(
    headers: tuple[str, ...] | None = ANSWER_HEADERS, body: str | None = RESPONSE_BODY
) -> SoapResponse:
    return parse_soap_response(envelope(headers, body), content_type=TEXT_XML)


def test_backend_answer_echoing_the_headers_is_consistent() -> None:
    response = answer()
    assert not response.is_fault
    assert response.header == REQUEST.header
    assert response.request_hash is None  # the provider's security server adds it
    check_response_consistent(REQUEST.header, response)


@pytest.mark.parametrize(
    "old, new, field",
    [
        (CLIENT, MEMBER_CLIENT, "xrd:client"),
        (CLIENT, CLIENT.replace("05774020", "05774021"), "xrd:client"),
        (SERVICE, SERVICE.replace("v1", "v2"), "xrd:service"),
        (SERVICE, SERVICE.replace("<id:serviceVersion>v1</id:serviceVersion>", ""), "xrd:service"),
        (ID, "<xrd:id>another-id</xrd:id>", "xrd:id"),
        (USER_ID, "<xrd:userId>DE0000000002</xrd:userId>", "xrd:userId"),
        (ISSUE, "<xrd:issue>AZ-other</xrd:issue>", "xrd:issue"),
        (PARTY, PARTY.replace("<repr:partyClass>MUN</repr:partyClass>", ""), "repr:representedParty"),
    ],
)
def test_answer_with_one_header_changed_is_inconsistent(old: str, new: str, field: str) -> None:
    response = answer(replaced(ANSWER_HEADERS, old, new))
    error = refused(
        ErrorCode.INCONSISTENT_RESPONSE,
        lambda: check_response_consistent(REQUEST.header, response),
        origin=Origin.SERVER_PROXY,
    )
    assert error.message.endswith(f"{field} differs")
    assert error.fault_code == "Server.ServerProxy.InconsistentResponse"


@pytest.mark.parametrize("dropped", [USER_ID, ISSUE, PARTY])
def test_answer_dropping_an_optional_header_is_inconsistent(dropped: str) -> None:
    response = answer(without(ANSWER_HEADERS, dropped))
    refused(
        ErrorCode.INCONSISTENT_RESPONSE,
        lambda: check_response_consistent(REQUEST.header, response),
        origin=Origin.SERVER_PROXY,
    )


def test_answer_body_must_be_named_service_code_response() -> None:
    error = refused(
        ErrorCode.INVALID_BODY,
        lambda: answer(body="<m:meldeauskunft/>"),
        origin=Origin.SERVER_PROXY,
    )
    assert "meldeauskunftResponse" in error.message


def test_answer_without_headers_is_missing_header_blamed_on_the_provider() -> None:
    refused(ErrorCode.MISSING_HEADER, lambda: answer(None), Origin.SERVER_PROXY)


def test_answer_errors_are_blamed_on_the_given_origin() -> None:
    error = refused(
        ErrorCode.INVALID_XML,
        lambda: parse_soap_response(b"<broken", content_type=TEXT_XML, origin=Origin.CLIENT_PROXY),
        origin=Origin.CLIENT_PROXY,
    )
    assert error.http_status == 500


def test_fault_from_the_backend_passes_as_a_fault() -> None:
    fault = (
        "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode>"
        "<faultstring>Person nicht gefunden</faultstring>"
        "<detail><m:code>404</m:code></detail></SOAP-ENV:Fault>"
    )
    response = answer(headers=None, body=fault)
    assert response.is_fault and response.header is None
    assert response.fault is not None
    assert (response.fault.code, response.fault.string, response.fault.detail) == (
        "SOAP-ENV:Server",
        "Person nicht gefunden",
        "404",
    )
    # Faults are the provider's own answer: neither the echo nor the hash is checked.
    check_response_consistent(REQUEST.header, response)
    check_request_hash(REQUEST, response)


def test_fault_with_x_road_headers_keeps_them() -> None:
    fault = "<SOAP-ENV:Fault><faultcode>Server.X</faultcode><faultstring>s</faultstring></SOAP-ENV:Fault>"
    response = answer(body=fault)
    assert response.is_fault and response.header == REQUEST.header


def test_fault_next_to_another_element_is_an_invalid_body() -> None:
    fault = "<SOAP-ENV:Fault><faultcode>x</faultcode></SOAP-ENV:Fault><m:meldeauskunftResponse/>"
    refused(ErrorCode.INVALID_BODY, lambda: answer(body=fault), Origin.SERVER_PROXY)


def test_fault_without_faultcode_is_invalid_soap() -> None:
    refused(
        ErrorCode.INVALID_SOAP,
        lambda: answer(body="<SOAP-ENV:Fault><faultstring>s</faultstring></SOAP-ENV:Fault>"),
        Origin.SERVER_PROXY,
    )


def test_multipart_answer_keeps_its_attachments() -> None:
    soap = envelope(ANSWER_HEADERS, RESPONSE_BODY)
    attachment = Attachment("bescheinigung@x", "application/pdf", b"%PDF")
    content_type, body = encode_multipart_related(soap, [attachment], packaging=Packaging.MTOM)
    response = parse_soap_response(body, content_type=content_type)
    assert response.packaging is Packaging.MTOM
    assert response.soap == soap and response.raw == body
    assert response.attachments == (attachment,)


# --- the request hash, on the consumer's side -----------------------------------------------------


WRAPPER = (
    b'<m:meldeauskunftResponse xmlns:m="urn:example:meldewesen">'
    b"<m:wohnort>Bielefeld</m:wohnort></m:meldeauskunftResponse>"
)


def signed_answer(request: SoapRequest) -> SoapResponse:
    """The answer as the provider's security server renders it for ``request``."""
    return parse_soap_response(render_soap_response(request, WRAPPER), content_type=TEXT_XML)


def test_request_hash_matches_the_request() -> None:
    request = parse_soap_request(SPEC_REQUEST, content_type=TEXT_XML)
    check_request_hash(request, signed_answer(request))


def test_request_hash_of_another_request_is_refused() -> None:
    request = parse_soap_request(SPEC_REQUEST, content_type=TEXT_XML)
    # The same headers, one byte of white space more: another request.
    other = parse_soap_request(SPEC_REQUEST + b" ", content_type=TEXT_XML)
    error = refused(
        ErrorCode.INCONSISTENT_RESPONSE,
        lambda: check_request_hash(request, signed_answer(other)),
        origin=Origin.CLIENT_PROXY,
    )
    assert "does not match" in error.message


def tampered(response: SoapResponse, request_hash: RequestHash | None) -> SoapResponse:
    return SoapResponse(
        header=response.header,
        request_hash=request_hash,
        fault=None,
        packaging=response.packaging,
        content_type=response.content_type,
        raw=response.raw,
        soap=response.soap,
        header_xml=response.header_xml,
        body_xml=response.body_xml,
    )


@pytest.mark.parametrize(
    "request_hash, message",
    [
        (None, "carries no xrd:requestHash"),
        (
            RequestHash("http://www.w3.org/2001/04/xmlenc#sha256", base64.b64encode(b"x" * 32).decode()),
            "algorithm",
        ),
        (RequestHash(SHA512_ALGORITHM_ID, base64.b64encode(b"\x00" * 64).decode()), "does not match"),
        (RequestHash(SHA512_ALGORITHM_ID, ""), "does not match"),
    ],
)
def test_request_hash_tampering_is_refused(request_hash: RequestHash | None, message: str) -> None:
    request = parse_soap_request(SPEC_REQUEST, content_type=TEXT_XML)
    response = tampered(signed_answer(request), request_hash)
    error = refused(
        ErrorCode.INCONSISTENT_RESPONSE,
        lambda: check_request_hash(request, response),
        origin=Origin.CLIENT_PROXY,
    )
    assert message in error.message


def test_malformed_request_hash_in_an_answer_is_invalid_soap() -> None:
    bad = f'<xrd:requestHash algorithmId="{SHA512_ALGORITHM_ID}">not base64!</xrd:requestHash>'
    refused(ErrorCode.INVALID_SOAP, lambda: answer((*ANSWER_HEADERS, bad)), Origin.SERVER_PROXY)
    no_algorithm = "<xrd:requestHash>AAAA</xrd:requestHash>"
    refused(ErrorCode.INVALID_SOAP, lambda: answer((*ANSWER_HEADERS, no_algorithm)), Origin.SERVER_PROXY)
