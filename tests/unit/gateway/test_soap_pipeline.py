"""The SOAP steps of the consumer and provider pipelines: known-good messages, one thing changed at a time.

Signing, logging and the transport between servers are the same as for REST (and run for
real in ``tests/integration/test_soap_exchange.py``); what is tested here is what SOAP
adds: parsing before anything moves, the agreement of envelope and signed header, the
backend's answer checked and re-packed, and the consumer's checks of what comes back.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from lxml import etree

from adapters.soap.backend import SoapBackendAnswer
from adapters.soap.envelope import NS_SOAP_ENV, NS_XROAD, SHA512_ALGORITHM_ID
from adapters.soap.inbound import SoapRequest, parse_soap_request, to_core_request
from adapters.soap.mime import Attachment, Packaging, encode_multipart_related
from adapters.soap.outbound import SOAP_CONTENT_TYPE, fault_envelope, render_soap_response
from adapters.soap.response import parse_soap_response
from core.canonical import b64
from core.errors import ErrorCode, Origin, XwegError
from core.messages import Protocol, Request, RequestHeader, ResponseHeader, sha512
from gateway.clientauth import ClientConnection
from gateway.pipeline import consumer
from gateway.pipeline.consumer import PassThroughError, check_soap_answer, pass_through_soap_fault
from gateway.pipeline.provider import read_soap_request, soap_answer
from gateway.runtime import Gateway
from tests.unit.adapters.soap.messages import (
    HEADERS,
    ID,
    RESPONSE_BODY,
    SPEC_REQUEST,
    TEXT_XML,
    envelope,
    multipart,
    replaced,
)

CORPUS = Path(__file__).parents[1] / "adapters" / "soap" / "corpus"
SOAP_ACTION = '"urn:meldeauskunft"'
REQUEST: SoapRequest = parse_soap_request(SPEC_REQUEST, content_type=TEXT_XML)
BACKEND_ANSWER = envelope(HEADERS, RESPONSE_BODY)


def refused(code: ErrorCode, origin: Origin, call: Callable[[], object]) -> XwegError:
    with pytest.raises(XwegError) as info:
        call()
    assert (info.value.code, info.value.origin) == (code, origin), info.value
    return info.value


def response_header(
    body: bytes, content_type: str = "text/xml; charset=UTF-8", status: int = 200
) -> ResponseHeader:
    return ResponseHeader(
        message_id=REQUEST.header.message_id,
        request_hash=b64(b"\x00" * 64),
        status=status,
        headers=(("content-type", content_type),),
        body_sha512=sha512(body),
        body_size=len(body),
    )


def request_hash_text(answer: bytes) -> tuple[str | None, str | None]:
    element = etree.fromstring(answer).find(f"{{{NS_SOAP_ENV}}}Header/{{{NS_XROAD}}}requestHash")
    assert element is not None
    return element.get("algorithmId"), element.text


# ------------------------------------------------------------------ consumer: handle_soap_request


#: How the information system connected; step 2 checks it, which is replaced here.
CONNECTION = ClientConnection(tls=True, certificate_fingerprint="ab" * 32)


class Consumer:
    """``handle_soap_request`` with steps 1 and 3-8 replaced by recorders."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[Request] = []
        self.answer = render_soap_response(
            REQUEST, parse_soap_response(BACKEND_ANSWER, content_type=TEXT_XML).body_xml
        )
        self.gateway = cast(Gateway, SimpleNamespace())

        def current(gateway: Gateway) -> tuple[object, dt.datetime, object]:
            return object(), dt.datetime.now(dt.UTC), object()

        async def exchange(
            gateway: Gateway,
            request: Request,
            conf: object,
            now: dt.datetime,
            trust: object,
            *,
            check: Callable[[ResponseHeader, bytes], None] | None = None,
            connection: ClientConnection | None = None,
        ) -> Any:
            assert connection == CONNECTION
            self.sent.append(request)
            header = response_header(self.answer)
            assert check is not None
            check(header, self.answer)
            return SimpleNamespace(request_hash="h", response=header, body=self.answer)

        monkeypatch.setattr(consumer, "_current", current)
        monkeypatch.setattr(consumer, "_exchange", exchange)

    async def handle(self, body: bytes, *, method: str = "POST", content_type: str | None = TEXT_XML) -> Any:
        return await consumer.handle_soap_request(
            self.gateway,
            method,
            body,
            content_type=content_type,
            soap_action=SOAP_ACTION,
            connection=CONNECTION,
        )


async def test_consumer_sends_the_clients_bytes_with_content_type_and_soapaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = Consumer(monkeypatch)
    answer = await pipeline.handle(SPEC_REQUEST)
    [sent] = pipeline.sent
    assert sent.body == SPEC_REQUEST
    header = sent.header
    assert header.protocol is Protocol.SOAP
    assert (header.method, header.path, header.query) == ("POST", "", "")
    assert header.headers == (("content-type", TEXT_XML), ("soapaction", SOAP_ACTION))
    assert header.body_sha512 == sha512(SPEC_REQUEST)
    assert header.message_id == REQUEST.header.message_id and header.user_id == "DE0000000001"
    # The provider's bytes go back unchanged, with the Content-Type it signed.
    assert (answer.status, answer.headers, answer.body) == (
        200,
        [("Content-Type", "text/xml; charset=UTF-8")],
        pipeline.answer,
    )


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("billion-laughs.xml", ErrorCode.INVALID_XML),
        ("xxe-file.xml", ErrorCode.INVALID_XML),
        ("deep-nesting.xml.gz", ErrorCode.INVALID_XML),
        ("protocol-version-3.1.xml", ErrorCode.INVALID_PROTOCOL_VERSION),
        ("missing-header.xml", ErrorCode.MISSING_HEADER),
    ],
)
async def test_consumer_refuses_a_bad_request_before_anything_moves(
    monkeypatch: pytest.MonkeyPatch, name: str, code: ErrorCode
) -> None:
    pipeline = Consumer(monkeypatch)
    data = (CORPUS / name).read_bytes()
    body = gzip.decompress(data) if name.endswith(".gz") else data
    with pytest.raises(XwegError) as info:
        await pipeline.handle(body)
    assert (info.value.code, info.value.origin) == (code, Origin.CLIENT)
    assert pipeline.sent == []


async def test_consumer_refuses_another_method_as_soap(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Consumer(monkeypatch)
    with pytest.raises(XwegError) as info:
        await pipeline.handle(SPEC_REQUEST, method="GET")
    assert info.value.fault_code == "Client.InvalidHttpMethod"
    assert pipeline.sent == []


async def test_consumer_refuses_an_answer_that_fails_the_soap_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Consumer(monkeypatch)
    pipeline.answer = BACKEND_ANSWER  # no xrd:requestHash
    with pytest.raises(XwegError) as info:
        await pipeline.handle(SPEC_REQUEST)
    assert info.value.fault_code == "Server.ClientProxy.InconsistentResponse"


# ------------------------------------------------------------------ consumer: the answer's checks


def rendered(request: SoapRequest = REQUEST, backend: bytes = BACKEND_ANSWER) -> bytes:
    return render_soap_response(request, parse_soap_response(backend, content_type=TEXT_XML).body_xml)


def test_an_answer_bound_to_the_request_passes() -> None:
    answer = rendered()
    check_soap_answer(REQUEST, response_header(answer), answer)


def test_an_answer_without_request_hash_is_inconsistent() -> None:
    error = refused(
        ErrorCode.INCONSISTENT_RESPONSE,
        Origin.CLIENT_PROXY,
        lambda: check_soap_answer(REQUEST, response_header(BACKEND_ANSWER), BACKEND_ANSWER),
    )
    assert "requestHash" in error.message


def test_an_answer_bound_to_other_bytes_is_inconsistent() -> None:
    # The same message with one more space: same headers, other bytes, other hash.
    other = parse_soap_request(
        SPEC_REQUEST.replace(b"<SOAP-ENV:Body>", b"<SOAP-ENV:Body> "), content_type=TEXT_XML
    )
    answer = rendered(other)
    error = refused(
        ErrorCode.INCONSISTENT_RESPONSE,
        Origin.CLIENT_PROXY,
        lambda: check_soap_answer(REQUEST, response_header(answer), answer),
    )
    assert "does not match" in error.message


def test_an_answer_echoing_other_headers_is_inconsistent() -> None:
    other_id = ID.replace("0b6c2f0e", "ffffffff")
    answer = rendered(parse_soap_request(envelope(replaced(HEADERS, ID, other_id)), content_type=TEXT_XML))
    # Bound to this request's bytes, but naming another message.
    _, other_hash = request_hash_text(answer)
    assert other_hash is not None
    answer = answer.replace(other_hash.encode(), REQUEST.request_hash.value.encode())
    error = refused(
        ErrorCode.INCONSISTENT_RESPONSE,
        Origin.CLIENT_PROXY,
        lambda: check_soap_answer(REQUEST, response_header(answer), answer),
    )
    assert "xrd:id differs" in error.message


def test_a_fault_passes_as_the_providers_answer() -> None:
    fault = fault_envelope("SOAP-ENV:Server", "gesperrt", None)
    check_soap_answer(REQUEST, response_header(fault, status=500), fault)


def test_an_answer_that_is_not_soap_is_blamed_on_this_server() -> None:
    page = b"<html><body>Bad Gateway</body></html>"
    refused(
        ErrorCode.INVALID_CONTENT_TYPE,
        Origin.CLIENT_PROXY,
        lambda: check_soap_answer(REQUEST, response_header(page, "text/html"), page),
    )


def test_a_provider_servers_error_becomes_a_fault_with_its_code_message_and_detail() -> None:
    body = json.dumps({"type": "Server.ServerProxy.AccessDenied", "message": "nein", "detail": "c-1"})
    answer = pass_through_soap_fault(PassThroughError(500, "Server.ServerProxy.AccessDenied", body.encode()))
    assert answer.status == 200
    assert answer.headers == [("Content-Type", "text/xml; charset=UTF-8")]
    fault = etree.fromstring(answer.body).find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
    assert fault is not None
    assert (
        fault.findtext("faultcode"),
        fault.findtext("faultstring"),
        fault.findtext("detail/faultDetail"),
    ) == (
        "Server.ServerProxy.AccessDenied",
        "nein",
        "c-1",
    )


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"message": 5}', b"\xff\xfe"])
def test_a_provider_servers_unreadable_error_still_keeps_its_code(body: bytes) -> None:
    answer = pass_through_soap_fault(PassThroughError(500, "Server.ServerProxy.NetworkError", body))
    fault = etree.fromstring(answer.body).find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "Server.ServerProxy.NetworkError"
    assert "Server.ServerProxy.NetworkError" in (fault.findtext("faultstring") or "")
    assert fault.find("detail") is None


# ------------------------------------------------------------------ provider: the signed request


def core_request(body: bytes = SPEC_REQUEST, content_type: str = TEXT_XML, **changes: Any) -> Request:
    """The core message the consumer signs for ``body``, with header fields changed as given."""
    request = to_core_request(parse_soap_request(body, content_type=content_type), soap_action=SOAP_ACTION)
    if not changes:
        return request
    fields = {name: getattr(request.header, name) for name in RequestHeader.__dataclass_fields__}
    return Request(RequestHeader(**{**fields, **changes}), request.body)


def test_provider_reads_the_signed_soap_request() -> None:
    soap = read_soap_request(core_request())
    assert soap.header == REQUEST.header
    assert soap.raw == SPEC_REQUEST


@pytest.mark.parametrize(
    "changes",
    [
        {"message_id": "another-id"},
        {"user_id": "DE0000000002"},
        {"user_id": None},
        {"issue": "AZ-1"},
        {"represented_party": "MUN/05774020"},
        {"path": "/personen"},
        {"query": "x=1"},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_provider_refuses_an_envelope_that_is_not_what_was_signed(changes: dict[str, Any]) -> None:
    error = refused(
        ErrorCode.INVALID_MESSAGE, Origin.SERVER_PROXY, lambda: read_soap_request(core_request(**changes))
    )
    assert "signed header" in error.message


def test_provider_refuses_an_envelope_for_another_service() -> None:
    request = core_request()
    other = RequestHeader.from_dict(
        {**request.header.to_dict(), "service": "NRW/MUN/05711000/meldewesen/anderedienst/v1"}
    )
    refused(
        ErrorCode.INVALID_MESSAGE,
        Origin.SERVER_PROXY,
        lambda: read_soap_request(Request(other, request.body)),
    )


@pytest.mark.parametrize(
    "headers",
    [
        (("content-type", TEXT_XML), ("content-type", 'multipart/related; boundary="x"; start="<b>"')),
        (("soapaction", '""'),),
        (("content-type", TEXT_XML), ("soapaction", '"a"'), ("soapaction", '"b"')),
        (("content-type", TEXT_XML), ("x-forwarded-for", "10.0.0.1")),
    ],
    ids=["two-content-types", "no-content-type", "two-soapactions", "another-header"],
)
def test_provider_refuses_signed_headers_a_backend_could_read_otherwise(
    headers: tuple[tuple[str, str], ...],
) -> None:
    # A peer server signs what it likes; the backend receives every end-to-end header, so
    # a second Content-Type could point it at another envelope than the one checked here.
    error = refused(
        ErrorCode.INVALID_MESSAGE,
        Origin.SERVER_PROXY,
        lambda: read_soap_request(core_request(headers=headers)),
    )
    assert "one Content-Type" in error.message


def test_provider_parses_with_the_same_hardening() -> None:
    laughs = (CORPUS / "billion-laughs.xml").read_bytes()
    header = RequestHeader.from_dict(
        {**core_request().header.to_dict(), "body_sha512": sha512(laughs).hex(), "body_size": len(laughs)}
    )
    refused(ErrorCode.INVALID_XML, Origin.CLIENT, lambda: read_soap_request(Request(header, laughs)))


# ------------------------------------------------------------------ provider: the backend's answer


def test_backend_answer_goes_back_with_the_request_hash() -> None:
    status, headers, body = soap_answer(REQUEST, SoapBackendAnswer(200, TEXT_XML, BACKEND_ANSWER))
    assert (status, headers) == (200, (("content-type", "text/xml; charset=UTF-8"),))
    algorithm, value = request_hash_text(body)
    assert algorithm == SHA512_ALGORITHM_ID
    assert value == base64.b64encode(hashlib.sha512(SPEC_REQUEST).digest()).decode()
    response = parse_soap_response(body, content_type=TEXT_XML)
    assert response.header == REQUEST.header
    assert b"<m:wohnort>Bielefeld</m:wohnort>" in response.body_xml


def test_backend_answer_with_other_headers_is_inconsistent() -> None:
    altered = envelope(replaced(HEADERS, ID, ID.replace("0b6c2f0e", "ffffffff")), RESPONSE_BODY)
    error = refused(
        ErrorCode.INCONSISTENT_RESPONSE,
        Origin.SERVER_PROXY,
        lambda: soap_answer(REQUEST, SoapBackendAnswer(200, TEXT_XML, altered)),
    )
    assert error.fault_code == "Server.ServerProxy.InconsistentResponse"


def test_backend_fault_goes_back_as_the_backend_wrote_it() -> None:
    fault = fault_envelope("SOAP-ENV:Server", "gesperrt", "sperre-1")
    assert soap_answer(REQUEST, SoapBackendAnswer(500, "text/xml; charset=utf-8", fault)) == (
        500,
        (("content-type", "text/xml; charset=utf-8"),),
        fault,
    )


def test_a_multipart_fault_goes_back_as_its_fault_envelope_alone() -> None:
    # A first part dressed as an answer must not reach the client unchecked.
    from adapters.soap.mime import Attachment, Packaging, encode_multipart_related

    fault = fault_envelope("SOAP-ENV:Server", "gesperrt", "sperre-1")
    content_type, body = encode_multipart_related(
        fault, [Attachment("forged@x", "text/xml", BACKEND_ANSWER)], packaging=Packaging.SWA
    )
    status, headers, sent = soap_answer(REQUEST, SoapBackendAnswer(500, content_type, body))
    assert (status, headers, sent) == (500, (("content-type", SOAP_CONTENT_TYPE),), fault)


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("text/html", b"<html/>", ErrorCode.INVALID_CONTENT_TYPE),
        (TEXT_XML, b"<not-closed>", ErrorCode.INVALID_XML),
        (TEXT_XML, envelope(HEADERS, "<m:meldeauskunft/>"), ErrorCode.INVALID_BODY),
        (None, BACKEND_ANSWER, ErrorCode.INVALID_CONTENT_TYPE),
    ],
    ids=["html", "malformed", "wrapper-not-Response", "no-content-type"],
)
def test_backend_answer_that_is_not_an_x_road_answer_is_blamed_on_the_provider(
    content_type: str | None, body: bytes, code: ErrorCode
) -> None:
    refused(
        code, Origin.SERVER_PROXY, lambda: soap_answer(REQUEST, SoapBackendAnswer(200, content_type, body))
    )


@pytest.mark.parametrize("packaging", [Packaging.SWA, Packaging.MTOM])
def test_backend_attachments_are_packed_again(packaging: Packaging) -> None:
    attachment = Attachment("bescheid.pdf@bielefeld", "application/pdf", b"%PDF-1.7 \x00\xff")
    content_type, body = encode_multipart_related(BACKEND_ANSWER, [attachment], packaging=packaging)
    status, headers, packed = soap_answer(REQUEST, SoapBackendAnswer(200, content_type, body))
    assert status == 200
    [(name, packed_type)] = headers
    assert name == "content-type" and packed_type.startswith("multipart/related;")
    response = parse_soap_response(packed, content_type=packed_type)
    assert response.packaging is packaging
    assert response.attachments == (attachment,)
    assert response.request_hash == REQUEST.request_hash


def test_a_multipart_request_is_hashed_by_its_soap_part() -> None:
    body = multipart([([("Content-Type", TEXT_XML)], SPEC_REQUEST), ([("Content-ID", "<a@x>")], b"data")])
    soap = read_soap_request(
        core_request(body, 'multipart/related; type="text/xml"; boundary="MIME-b0undary"')
    )
    assert soap.raw == body and soap.soap == SPEC_REQUEST
    _, _, answer = soap_answer(soap, SoapBackendAnswer(200, TEXT_XML, BACKEND_ANSWER))
    assert request_hash_text(answer)[1] == base64.b64encode(hashlib.sha512(SPEC_REQUEST).digest()).decode()
