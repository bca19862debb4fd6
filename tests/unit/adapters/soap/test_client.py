"""The zeep-based X-Road client: headers on every call, bound to the security server, offline.

A simulated security server on 127.0.0.1 serves the residents' register's WSDL with its
endpoint masked (as ``getWsdl`` does) and answers SOAP calls as a security server would:
the request's headers echoed plus ``xrd:requestHash``.  A ``requests`` adapter records
every HTTP request the client makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import requests.adapters
import zeep.exceptions
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree

from adapters.soap.client import XRoadClient, XRoadClientError, XRoadTransport, header_elements
from adapters.soap.envelope import NS_SOAP_ENV, RepresentedParty, XRoadHeader, read_request_envelope
from adapters.soap.inbound import SoapRequest, parse_soap_request
from adapters.soap.outbound import fault_envelope, render_soap_response
from adapters.soap.wsdl import MASKED_ENDPOINT, mask_endpoints
from adapters.soap.xsd import schema_bytes
from core.identifiers import MemberId, SubsystemId
from xweg.demo_services.meldewesen import load_wsdl

DELBRUECK = SubsystemId("NRW", "MUN", "05774020", "meldewesen")
BIELEFELD = SubsystemId("NRW", "MUN", "05711000", "meldewesen")
NS_M = "urn:xweg:demo:meldewesen"
WSDL_QUERY = (
    "wsdl?xRoadInstance=NRW&memberClass=MUN&memberCode=05711000&subsystemCode=meldewesen"
    "&serviceCode=meldeauskunft&version=v1"
)


ANSWERS = {
    "meldeauskunft": "<m:ergebnis>keinTreffer</m:ergebnis>",
    "rueckmeldung": (
        "<m:nachrichtentyp>0203</m:nachrichtentyp>"
        "<m:bezugNachrichtId>7d4c0a52-2b1e-4f7a-9c3d-1e2f3a4b5c6d</m:bezugNachrichtId>"
        "<m:eingegangen>2025-04-17T08:00:00+00:00</m:eingegangen>"
        "<m:aktenzeichen>RM-05711000-2025-00001</m:aktenzeichen>"
        "<m:antwortBis>2025-04-24</m:antwortBis><m:personBekannt>true</m:personBekannt>"
    ),
}
RUECKMELDUNG = {
    "nachrichtId": "7d4c0a52-2b1e-4f7a-9c3d-1e2f3a4b5c6d",
    "absender": {"praefix": "MELDID", "kennung": "05774020"},
    "person": {"familienname": "Muster", "vornamen": "Max", "geburtsdatum": dt.date(1983, 9, 30)},
    "neueAnschrift": {
        "strasse": "Am Beispielhof",
        "hausnummer": "4",
        "postleitzahl": "33129",
        "wohnort": "Delbrück",
        "gemeindeschluessel": "05774020",
    },
    "einzugsdatum": dt.date(2025, 4, 15),
}


def masked_wsdl() -> bytes:
    """The register's WSDL as a security server's getWsdl hands it out."""
    return mask_endpoints(load_wsdl())


@dataclass
class SecurityServer:
    """A client listener that answers like X-Road's: headers echoed, request hash added."""

    answer: str = "echo"  # echo, fault or huge
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def requests_seen(self) -> list[SoapRequest]:
        return [
            parse_soap_request(body, content_type=headers["Content-Type"])
            for _, headers, body in self.received
        ]

    async def wsdl(self, request: web.Request) -> web.Response:
        return web.Response(body=masked_wsdl(), content_type="text/xml")

    async def soap(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.path_qs, dict(request.headers), body))
        if self.answer == "fault":
            fault = fault_envelope("Server.ServerProxy.AccessDenied", "Request not allowed", "c0ffee-17")
            return web.Response(body=fault, content_type="text/xml")
        soap = parse_soap_request(body, content_type=request.headers["Content-Type"])
        code = soap.header.service.service_code
        padding = "x" * 100_000 if self.answer == "huge" else ""
        answer = f'<m:{code}Response xmlns:m="{NS_M}">{ANSWERS[code]}<!--{padding}--></m:{code}Response>'
        return web.Response(body=render_soap_response(soap, answer.encode()), content_type="text/xml")


@pytest.fixture
async def security_server() -> AsyncIterator[SecurityServer]:
    simulated = SecurityServer()
    app = web.Application()
    app.router.add_get("/wsdl", simulated.wsdl)
    app.router.add_post("/", simulated.soap)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    simulated.url = str(server.make_url("/"))
    try:
        yield simulated
    finally:
        await server.close()


class RecordingAdapter(requests.adapters.HTTPAdapter):
    """Records each request before sending it on."""

    def __init__(self, seen: list[tuple[str, str]]) -> None:
        super().__init__()
        self.seen = seen

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.seen.append((str(request.method), str(request.url)))
        return super().send(request, **kwargs)  # type: ignore[arg-type]


def recording_session() -> tuple[requests.Session, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    session = requests.Session()
    for prefix in ("http://", "https://", "file://"):
        session.mount(prefix, RecordingAdapter(seen))
    return session, seen


async def in_thread(call: Callable[[], Any]) -> Any:
    """zeep is synchronous; the servers run on this test's event loop."""
    return await asyncio.to_thread(call)


# --- headers ----------------------------------------------------------------------------------------


async def test_every_call_carries_the_x_road_headers_with_a_fresh_id(security_server: SecurityServer) -> None:
    url = security_server.url

    def calls() -> XRoadClient:
        xroad = XRoadClient(
            url + WSDL_QUERY,
            url,
            client=DELBRUECK,
            service=BIELEFELD,
            user_id="DE0000000001",
            issue="AZ-2025-17",
        )
        xroad.service.meldeauskunft(familienname="Muster")
        xroad.service.meldeauskunft(familienname="Muster", vornamen="Erika")
        return xroad

    xroad = await in_thread(calls)

    assert xroad.versions == {"meldeauskunft": "v1", "rueckmeldung": "v1"}
    first, second = security_server.requests_seen()
    for sent in (first, second):
        assert sent.header.client == DELBRUECK
        assert sent.header.service == BIELEFELD.service("meldeauskunft", "v1")
        assert sent.header.user_id == "DE0000000001"
        assert sent.header.issue == "AZ-2025-17"
        assert sent.header.protocol_version == "4.0"
        assert sent.header.represented_party is None
        assert uuid.UUID(sent.header.message_id).version == 4
    assert first.header.message_id != second.header.message_id
    path, headers, _ = security_server.received[0]
    assert path == "/"
    assert headers["Content-Type"] == "text/xml; charset=utf-8"
    assert headers["SOAPAction"] == '""'
    assert etree.fromstring(second.body_xml).findtext(f"{{{NS_M}}}vornamen") == "Erika"


async def test_service_code_and_version_follow_the_operation(security_server: SecurityServer) -> None:
    url = security_server.url

    def call() -> None:
        xroad = XRoadClient(url + WSDL_QUERY, url, client=DELBRUECK, service=BIELEFELD)
        answer = xroad.service.rueckmeldung(**RUECKMELDUNG)
        assert answer.body.aktenzeichen == "RM-05711000-2025-00001"

    await in_thread(call)

    (sent,) = security_server.requests_seen()
    assert sent.header.service == BIELEFELD.service("rueckmeldung", "v1")
    assert sent.header.user_id is None and sent.header.issue is None


async def test_headers_given_per_call_take_precedence(security_server: SecurityServer) -> None:
    url = security_server.url

    def call() -> None:
        xroad = XRoadClient(url + WSDL_QUERY, url, client=DELBRUECK, service=BIELEFELD, issue="AZ-default")
        xroad.service.meldeauskunft(familienname="Muster", _soapheaders={"issue": "AZ-this-call"})

    await in_thread(call)

    (sent,) = security_server.requests_seen()
    assert sent.header.issue == "AZ-this-call"
    header = etree.fromstring(sent.header_xml)
    assert len(header.findall("{http://x-road.eu/xsd/xroad.xsd}issue")) == 1


async def test_member_client_and_represented_party(security_server: SecurityServer) -> None:
    url = security_server.url
    kreis = MemberId("NRW", "MUN", "05774")
    party = RepresentedParty("05774020", "MUN")

    def call() -> None:
        xroad = XRoadClient(url + WSDL_QUERY, url, client=kreis, service=BIELEFELD, represented_party=party)
        xroad.service.meldeauskunft(familienname="Muster")

    await in_thread(call)

    (sent,) = security_server.requests_seen()
    assert sent.header.client == kreis
    assert sent.header.represented_party == party


@pytest.mark.parametrize(
    "header",
    [
        XRoadHeader(
            DELBRUECK, BIELEFELD.service("meldeauskunft", "v1"), "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"
        ),
        XRoadHeader(
            MemberId("NRW", "GOV", "057"),
            BIELEFELD.service("meldeauskunft"),
            "m-1",
            user_id="DE0000000001",
            issue="Zuzug 2025/42",
            represented_party=RepresentedParty("05774020"),
        ),
    ],
    ids=["subsystem-with-version", "member-all-optional-fields"],
)
def test_header_elements_read_back_as_the_same_header(header: XRoadHeader) -> None:
    envelope = etree.Element(f"{{{NS_SOAP_ENV}}}Envelope")
    soap_header = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Header")
    for element in header_elements(header):
        soap_header.append(element)
    etree.SubElement(etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Body"), f"{{{NS_M}}}meldeauskunft")

    assert read_request_envelope(envelope).header == header


async def test_a_client_bound_to_one_service_refuses_other_operations(
    security_server: SecurityServer,
) -> None:
    url = security_server.url
    only = BIELEFELD.service("meldeauskunft", "v1")

    def call() -> None:
        xroad = XRoadClient(url + WSDL_QUERY, url, client=DELBRUECK, service=only)
        xroad.service.meldeauskunft(familienname="Muster")
        xroad.service.rueckmeldung(**RUECKMELDUNG)

    with pytest.raises(XRoadClientError, match="rueckmeldung"):
        await in_thread(call)
    (sent,) = security_server.requests_seen()
    assert sent.header.service == only


def test_invalid_header_values_are_refused_at_construction() -> None:
    with pytest.raises(XRoadClientError, match="userId"):
        XRoadClient(
            masked_wsdl(), "http://127.0.0.1:9/", client=DELBRUECK, service=BIELEFELD, user_id="DE\n1"
        )


# --- answers ----------------------------------------------------------------------------------------


async def test_security_server_answer_with_request_hash_is_read(security_server: SecurityServer) -> None:
    url = security_server.url
    xroad = await in_thread(lambda: XRoadClient(url + WSDL_QUERY, url, client=DELBRUECK, service=BIELEFELD))

    answer = await in_thread(lambda: xroad.service.meldeauskunft(familienname="Muster"))

    (sent,) = security_server.requests_seen()
    assert answer.body.ergebnis == "keinTreffer"
    assert answer.header.id == sent.header.message_id
    (request_hash,) = answer.header._raw_elements
    assert request_hash.tag == "{http://x-road.eu/xsd/xroad.xsd}requestHash"
    assert request_hash.text == sent.request_hash.value


async def test_a_fault_raises_zeep_fault_with_the_x_road_code(security_server: SecurityServer) -> None:
    security_server.answer = "fault"
    url = security_server.url

    def call() -> None:
        XRoadClient(url + WSDL_QUERY, url, client=DELBRUECK, service=BIELEFELD).service.meldeauskunft(
            familienname="Muster"
        )

    with pytest.raises(zeep.exceptions.Fault) as info:
        await in_thread(call)
    assert info.value.code == "Server.ServerProxy.AccessDenied"
    assert info.value.message == "Request not allowed"
    assert info.value.detail.findtext("faultDetail") == "c0ffee-17"


async def test_an_answer_over_the_size_cap_is_refused(security_server: SecurityServer) -> None:
    security_server.answer = "huge"
    url = security_server.url

    def call() -> None:
        xroad = XRoadClient(
            url + WSDL_QUERY, url, client=DELBRUECK, service=BIELEFELD, max_response_bytes=64 * 1024
        )
        xroad.service.meldeauskunft(familienname="Muster")

    with pytest.raises(XRoadClientError, match="larger than 65536 bytes"):
        await in_thread(call)


def test_an_unreachable_security_server_is_our_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    xroad = XRoadClient(masked_wsdl(), closed, client=DELBRUECK, service=BIELEFELD, timeout_s=5)
    with pytest.raises(XRoadClientError, match="ConnectionError"):
        xroad.service.meldeauskunft(familienname="Muster")


# --- nothing but the WSDL and the security server ----------------------------------------------------


async def test_the_only_requests_are_the_wsdl_and_the_calls(security_server: SecurityServer) -> None:
    url = security_server.url
    session, seen = recording_session()

    def calls() -> None:
        xroad = XRoadClient(url + WSDL_QUERY, url, client=DELBRUECK, service=BIELEFELD, session=session)
        xroad.service.meldeauskunft(familienname="Muster")
        xroad.service.meldeauskunft(familienname="Muster", vornamen="Max")

    await in_thread(calls)

    # The WSDL imports http://x-road.eu/xsd/xroad.xsd (which imports identifiers.xsd and
    # xml.xsd): served from the bundle; the masked endpoint is never contacted.
    assert seen == [("GET", url + WSDL_QUERY), ("POST", url), ("POST", url)]


def with_import(location: str) -> bytes:
    extra = f'<xsd:import namespace="urn:example:types" schemaLocation="{location}"/>'
    anchor = b'schemaLocation="http://x-road.eu/xsd/xroad.xsd"/>'
    return masked_wsdl().replace(anchor, anchor + extra.encode())


@pytest.mark.parametrize(
    "location",
    [
        "http://types.example/meldewesen.xsd",
        "https://x-road.eu/xsd/not-bundled.xsd",
        "file:///etc/passwd",
        "/etc/passwd",
        "types.xsd",
    ],
)
async def test_a_wsdl_cannot_make_the_client_fetch_anything_else(
    security_server: SecurityServer, location: str
) -> None:
    session, seen = recording_session()
    with pytest.raises(XRoadClientError, match="refusing to fetch"):
        XRoadClient(
            with_import(location), "http://127.0.0.1:9/", client=DELBRUECK, service=BIELEFELD, session=session
        )
    assert seen == []

    # Loaded from a URL, relative locations resolve against it and are refused as well.
    served = with_import(location)

    async def wsdl(request: web.Request) -> web.Response:
        return web.Response(body=served, content_type="text/xml")

    app = web.Application()
    app.router.add_get("/wsdl", wsdl)
    async with contextlib.AsyncExitStack() as stack:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        stack.push_async_callback(server.close)
        wsdl_url = str(server.make_url("/wsdl"))
        with pytest.raises(XRoadClientError, match="refusing to fetch"):
            await in_thread(
                lambda: XRoadClient(
                    wsdl_url, security_server.url, client=DELBRUECK, service=BIELEFELD, session=session
                )
            )
    assert seen == [("GET", wsdl_url)]


def test_a_wsdl_with_a_doctype_is_refused_before_zeep_reads_it() -> None:
    hostile = (
        b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
        + masked_wsdl().split(b"?>", 1)[1]
    )
    with pytest.raises(XRoadClientError, match="DOCTYPE"):
        XRoadClient(hostile, "http://127.0.0.1:9/", client=DELBRUECK, service=BIELEFELD)


def test_transport_serves_bundled_schemas_and_refuses_the_rest() -> None:
    session, seen = recording_session()
    transport = XRoadTransport(endpoint="http://127.0.0.1:9/ss", wsdl_url=None, session=session)

    assert transport.load("http://x-road.eu/xsd/xroad.xsd") == schema_bytes("xroad.xsd")
    assert transport.load("https://www.w3.org/2001/xml.xsd") == schema_bytes("xml.xsd")
    with pytest.raises(XRoadClientError, match="refusing to fetch"):
        transport.load("http://x-road.eu/xsd/xroad.xsd?v=2")
    with pytest.raises(XRoadClientError, match="refusing to post"):
        transport.post(MASKED_ENDPOINT, b"<e/>", {})
    with pytest.raises(XRoadClientError, match="refusing GET"):
        transport.get("http://127.0.0.1:9/ss", {}, {})
    assert seen == []
