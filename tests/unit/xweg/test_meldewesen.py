"""Stadt Bielefeld's residents' register (demo SOAP backend), run on 127.0.0.1 and called over HTTP.

Raw envelopes check what X-Road needs of a provider backend (headers echoed exactly, faults
for what it refuses); the zeep-based client of :mod:`adapters.soap.client`, pointed at the
backend directly, checks the answers field by field.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import zeep.exceptions
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree

from adapters.soap.client import XRoadClient
from adapters.soap.inbound import parse_soap_request
from adapters.soap.response import check_response_consistent, parse_soap_response
from adapters.soap.wsdl import read_wsdl
from adapters.soap.xsd import bundled_name
from core.identifiers import SubsystemId
from tests.unit.adapters.soap.messages import CLIENT, ID, ISSUE, MESSAGE_ID, PARTY, USER_ID, VERSION
from xweg.backends import make_backend_app
from xweg.demo_services.meldewesen import (
    DEMO_RESIDENTS,
    MeldewesenConfig,
    add_working_days,
    load_wsdl,
    make_meldewesen_app,
    nrw_holidays,
)

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_WSDL = "http://schemas.xmlsoap.org/wsdl/"
NS_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
NS_XRD = "http://x-road.eu/xsd/xroad.xsd"
NS_M = "urn:xweg:demo:meldewesen"
TEXT_XML = "text/xml; charset=utf-8"

DELBRUECK = SubsystemId("NRW", "MUN", "05774020", "meldewesen")
BIELEFELD = SubsystemId("NRW", "MUN", "05711000", "meldewesen")
# Thursday before Easter 2025, 10:00 in Bielefeld: Good Friday and Easter Monday follow.
MAUNDY_THURSDAY = dt.datetime(2025, 4, 17, 8, 0, tzinfo=dt.UTC)


def service_header(code: str, version: str | None = "v1") -> str:
    version_part = f"<id:serviceVersion>{version}</id:serviceVersion>" if version else ""
    return (
        '<xrd:service id:objectType="SERVICE"><id:xRoadInstance>NRW</id:xRoadInstance>'
        "<id:memberClass>MUN</id:memberClass><id:memberCode>05711000</id:memberCode>"
        f"<id:subsystemCode>meldewesen</id:subsystemCode><id:serviceCode>{code}</id:serviceCode>"
        f"{version_part}</xrd:service>"
    )


def request(
    body: str,
    *,
    code: str = "meldeauskunft",
    headers: tuple[str, ...] | None = None,
    namespace: str = NS_M,
    soap_header: bool = True,
) -> bytes:
    """An X-Road request to the register: the spec's example headers around ``body``."""
    header_elements = headers if headers is not None else (CLIENT, service_header(code), ID, USER_ID, VERSION)
    header = "  <SOAP-ENV:Header>\n    " + "\n    ".join(header_elements) + "\n  </SOAP-ENV:Header>\n"
    return (
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"\n'
        '    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"\n'
        f'    xmlns:m="{namespace}">\n'
        + (header if soap_header else "")
        + f"  <SOAP-ENV:Body>{body}</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"
    ).encode("utf-8")


QUERY_ERIKA = (
    "<m:meldeauskunft><m:familienname>Muster</m:familienname><m:vornamen>Erika</m:vornamen></m:meldeauskunft>"
)


@dataclass
class Backend:
    server: TestServer
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return str(self.server.make_url("/"))

    async def post(self, body: bytes, content_type: str = TEXT_XML) -> tuple[int, bytes]:
        async with self.session.post(self.url, data=body, headers={"Content-Type": content_type}) as response:
            return response.status, await response.read()

    def client(self, *, user_id: str | None = None, issue: str | None = None) -> XRoadClient:
        """The zeep helper, with the WSDL this backend serves, calling the backend directly."""
        return XRoadClient(
            self.url + "?wsdl", self.url, client=DELBRUECK, service=BIELEFELD, user_id=user_id, issue=issue
        )


@contextlib.asynccontextmanager
async def started(app: web.Application) -> AsyncIterator[Backend]:
    """``app`` served on a free port of 127.0.0.1."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Backend(server, session)
    finally:
        await server.close()


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    config = MeldewesenConfig(clock=lambda: MAUNDY_THURSDAY)
    async with started(make_meldewesen_app(config)) as running:
        yield running


def fault_of(body: bytes) -> tuple[str, str]:
    root = etree.fromstring(body)
    fault = root.find(f"{{{NS_SOAP}}}Body/{{{NS_SOAP}}}Fault")
    assert fault is not None, body
    return fault.findtext("faultcode"), fault.findtext("faultstring")


def exclusive_c14n(node: etree._Element) -> bytes:
    """A header node's canonical form; comments as they are (lxml cannot canonicalise one alone)."""
    if not isinstance(node.tag, str):
        comment: bytes = etree.tostring(node)
        return comment
    data: bytes = etree.tostring(node, method="c14n", exclusive=True, with_comments=True)
    return data


# --- the X-Road contract: headers echoed, faults for what is refused ----------------------------


@pytest.mark.parametrize(
    "headers",
    [
        (CLIENT, service_header("meldeauskunft"), ID, USER_ID, VERSION),
        (VERSION, ID, CLIENT, service_header("meldeauskunft", None), ISSUE, PARTY, USER_ID),
        (
            CLIENT,
            "<!-- a comment stays where it was -->",
            service_header("meldeauskunft"),
            ID,
            VERSION,
            '<x:trace xmlns:x="urn:example:trace" x:hop="1">not an X-Road header</x:trace>',
        ),
    ],
    ids=["spec-example", "reordered-with-issue-and-party", "comment-and-foreign-header"],
)
async def test_answer_echoes_every_request_header_exactly(backend: Backend, headers: tuple[str, ...]) -> None:
    sent = request(QUERY_ERIKA, headers=headers)
    status, body = await backend.post(sent)

    assert status == 200
    sent_header = etree.fromstring(sent).find(f"{{{NS_SOAP}}}Header")
    answer_header = etree.fromstring(body).find(f"{{{NS_SOAP}}}Header")
    assert [exclusive_c14n(e) for e in answer_header] == [exclusive_c14n(e) for e in sent_header]
    # The provider's security server accepts it: same X-Road headers, <serviceCode>Response.
    response = parse_soap_response(body, content_type=TEXT_XML)
    check_response_consistent(parse_soap_request(sent, content_type=TEXT_XML).header, response)
    assert response.header is not None and response.header.message_id == MESSAGE_ID
    assert etree.QName(etree.fromstring(response.body_xml)).localname == "meldeauskunftResponse"


@pytest.mark.parametrize(
    ("sent", "content_type", "code"),
    [
        (b"<SOAP-ENV:Envelope", TEXT_XML, "Client.InvalidXml"),
        (
            b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + request(QUERY_ERIKA),
            TEXT_XML,
            "Client.InvalidXml",
        ),
        (
            request(QUERY_ERIKA, soap_header=False),
            TEXT_XML,
            "Client.MissingHeader",
        ),
        (
            request(QUERY_ERIKA, headers=(CLIENT, service_header("meldeauskunft"), USER_ID, VERSION)),
            TEXT_XML,
            "Client.MissingHeaderField",
        ),
        (request(QUERY_ERIKA), "application/json", "Client.InvalidContentType"),
        (
            request("<m:meldeauskunft><m:familienname>Muster</m:familienname></m:meldeauskunft>", code="x"),
            TEXT_XML,
            "Client.InvalidBody",
        ),
        (
            request("<m:melderegisterloeschung/>", code="melderegisterloeschung"),
            TEXT_XML,
            "Client.UnknownService",
        ),
        (
            request(QUERY_ERIKA, namespace="urn:example:other"),
            TEXT_XML,
            "Client.UnknownService",
        ),
        (
            request(
                QUERY_ERIKA,
                headers=(CLIENT, service_header("meldeauskunft", "v2"), ID, USER_ID, VERSION),
            ),
            TEXT_XML,
            "Client.UnknownService",
        ),
        (
            request(
                "<m:meldeauskunft><m:familienname>Muster</m:familienname>"
                "<m:geburtsdatum>1985-13-01</m:geburtsdatum></m:meldeauskunft>"
            ),
            TEXT_XML,
            "Client.InvalidRequest",
        ),
        (
            request("<m:meldeauskunft><m:vornamen>Erika</m:vornamen></m:meldeauskunft>"),
            TEXT_XML,
            "Client.InvalidRequest",
        ),
        (
            request(
                "<m:rueckmeldung><m:nachrichtId>kein-uuid</m:nachrichtId></m:rueckmeldung>",
                code="rueckmeldung",
            ),
            TEXT_XML,
            "Client.InvalidRequest",
        ),
    ],
    ids=[
        "not-well-formed",
        "xxe-doctype",
        "no-soap-header",
        "missing-id",
        "wrong-content-type",
        "wrapper-not-service-code",
        "unknown-operation",
        "foreign-namespace",
        "unknown-version",
        "invalid-date",
        "missing-familienname",
        "invalid-rueckmeldung",
    ],
)
async def test_refused_requests_get_a_soap_fault(
    backend: Backend, sent: bytes, content_type: str, code: str
) -> None:
    status, body = await backend.post(sent, content_type)

    assert status == 500
    faultcode, faultstring = fault_of(body)
    assert faultcode == code, faultstring
    assert "/etc/passwd" not in faultstring and "root:" not in body.decode()


async def test_a_fault_names_what_the_schema_refused(backend: Backend) -> None:
    sent = request(
        "<m:meldeauskunft><m:familienname>Muster</m:familienname>"
        "<m:geburtsdatum>1985-13-01</m:geburtsdatum></m:meldeauskunft>"
    )
    _, body = await backend.post(sent)
    _, faultstring = fault_of(body)
    assert faultstring.startswith("the meldeauskunft request is not valid: ")
    assert "geburtsdatum" in faultstring and "1985-13-01" in faultstring


async def test_a_request_over_the_size_limit_gets_a_fault() -> None:
    config = MeldewesenConfig(max_request_bytes=2048)
    async with started(make_meldewesen_app(config)) as running:
        padded = request(QUERY_ERIKA).replace(b"</SOAP-ENV:Envelope>", b" " * 4096 + b"</SOAP-ENV:Envelope>")
        status, body = await running.post(padded)
        assert status == 500
        assert fault_of(body)[0] == "Client.RequestTooLarge"
        status, _ = await running.post(request(QUERY_ERIKA))
        assert status == 200


# --- the WSDL --------------------------------------------------------------------------------------


async def test_wsdl_is_served_with_the_backends_own_address(backend: Backend) -> None:
    async with backend.session.get(backend.url + "?wsdl") as response:
        assert response.status == 200
        assert response.content_type == "text/xml"
        wsdl = etree.fromstring(await response.read())

    addresses = wsdl.findall(f".//{{{NS_WSDL_SOAP}}}address")
    assert [a.get("location") for a in addresses] == [f"http://127.0.0.1:{backend.server.port}/"]
    # Served on the HTTP connection's own socket, not on what the Host header claims.
    async with backend.session.get(backend.url + "?wsdl", headers={"Host": "evil.example"}) as response:
        spoofed = etree.fromstring(await response.read())
    assert spoofed.find(f".//{{{NS_WSDL_SOAP}}}address").get("location") == addresses[0].get("location")


async def test_wsdl_address_can_be_configured() -> None:
    config = MeldewesenConfig(address="http://meldewesen.bielefeld.example:8080/soap")
    async with started(make_meldewesen_app(config)) as running:
        async with running.session.get(running.url + "?wsdl") as response:
            wsdl = etree.fromstring(await response.read())
    assert wsdl.find(f".//{{{NS_WSDL_SOAP}}}address").get("location") == config.address


async def test_only_the_wsdl_query_is_served_by_get(backend: Backend) -> None:
    async with backend.session.get(backend.url) as response:
        assert response.status == 404


def test_wsdl_declares_x_road_headers_versions_and_bundled_schema_imports() -> None:
    wsdl = etree.fromstring(load_wsdl())
    assert wsdl.get("targetNamespace") == NS_M
    imports = wsdl.findall(".//{http://www.w3.org/2001/XMLSchema}import")
    assert [(i.get("namespace"), i.get("schemaLocation")) for i in imports] == [(NS_XRD, NS_XRD)]
    assert bundled_name(NS_XRD) == "xroad.xsd"

    binding = wsdl.find(f"{{{NS_WSDL}}}binding")
    assert binding.find(f"{{{NS_WSDL_SOAP}}}binding").get("style") == "document"
    operations = binding.findall(f"{{{NS_WSDL}}}operation")
    assert [o.get("name") for o in operations] == ["meldeauskunft", "rueckmeldung"]
    for operation in operations:
        assert operation.findtext(f"{{{NS_XRD}}}version") == "v1"
        for direction in ("input", "output"):
            message = operation.find(f"{{{NS_WSDL}}}{direction}")
            assert message.find(f"{{{NS_WSDL_SOAP}}}body").get("use") == "literal"
            parts = [h.get("part") for h in message.findall(f"{{{NS_WSDL_SOAP}}}header")]
            assert parts == ["client", "service", "id", "userId", "issue", "protocolVersion"]
    header_message = wsdl.find(f"{{{NS_WSDL}}}message[@name='requestheader']")
    elements = [p.get("element") for p in header_message.findall(f"{{{NS_WSDL}}}part")]
    assert elements == [
        "xrd:client",
        "xrd:service",
        "xrd:id",
        "xrd:userId",
        "xrd:issue",
        "xrd:protocolVersion",
    ]


async def test_served_wsdl_reads_as_two_x_road_services(backend: Backend) -> None:
    async with backend.session.get(backend.url + "?wsdl") as response:
        description = read_wsdl(await response.read())

    assert description.target_namespace == NS_M
    assert description.service_ids(BIELEFELD) == (
        BIELEFELD.service("meldeauskunft", "v1"),
        BIELEFELD.service("rueckmeldung", "v1"),
    )
    for operation in description.operations:
        assert operation.input_headers == tuple(
            f"{{{NS_XRD}}}{name}"
            for name in ("client", "service", "id", "userId", "issue", "protocolVersion")
        )
    assert description.find("rueckmeldung").title == "Rückmeldung nach Zuzug (XMeld 0201)"


async def test_demo_backend_kind_is_registered() -> None:
    async with started(make_backend_app("meldewesen")) as running:
        status, body = await running.post(request(QUERY_ERIKA))
        assert status == 200
        assert b"<m:ergebnis>treffer</m:ergebnis>" in body


# --- Meldeauskunft through the zeep helper ----------------------------------------------------------


async def test_meldeauskunft_answers_erika_muster_field_by_field(backend: Backend) -> None:
    def call() -> Any:
        return backend.client(user_id="DE0000000001").service.meldeauskunft(
            familienname="Muster", vornamen="Erika", geburtsdatum=dt.date(1985, 4, 12)
        )

    answer = await asyncio.to_thread(call)

    assert answer.body.ergebnis == "treffer"
    person = answer.body.person
    assert person.familienname == "Muster"
    assert person.geburtsname == "Gabler"
    assert person.vornamen == "Erika Maria"
    assert person.geburtsdatum == dt.date(1985, 4, 12)
    assert person.geburtsort == "Paderborn"
    bielefeld, delbrueck = person.wohnung
    assert bielefeld.anschrift.strasse == "Musterweg"
    assert bielefeld.anschrift.hausnummer == "12"
    assert bielefeld.anschrift.postleitzahl == "33602"
    assert bielefeld.anschrift.wohnort == "Bielefeld"
    assert bielefeld.anschrift.gemeindeschluessel == "05711000"
    assert bielefeld.wohnungsstatus == "Hauptwohnung"
    assert bielefeld.einzugsdatum == dt.date(2025, 3, 1)
    assert bielefeld.auszugsdatum is None
    assert delbrueck.anschrift.wohnort == "Delbrück"
    assert delbrueck.anschrift.gemeindeschluessel == "05774020"
    assert delbrueck.einzugsdatum == dt.date(2012, 8, 15)
    assert delbrueck.auszugsdatum == dt.date(2025, 2, 28)
    # The echoed headers, as zeep reads them.
    assert answer.header.client.memberCode == "05774020"
    assert answer.header.service.serviceCode == "meldeauskunft"
    assert answer.header.service.serviceVersion == "v1"
    assert answer.header.userId == "DE0000000001"
    assert answer.header.protocolVersion == "4.0"


@pytest.mark.parametrize(
    ("query", "ergebnis", "vornamen"),
    [
        ({"familienname": "Muster"}, "mehrdeutig", None),
        ({"familienname": "muster", "vornamen": "max"}, "treffer", "Max"),
        ({"familienname": "Muster", "geburtsdatum": dt.date(1983, 9, 30)}, "treffer", "Max"),
        (
            {"familienname": "Muster", "vornamen": "Erika", "geburtsdatum": dt.date(1985, 4, 13)},
            "keinTreffer",
            None,
        ),
        ({"familienname": "Gabler"}, "keinTreffer", None),
        ({"familienname": "Yılmaz", "vornamen": unicodedata.normalize("NFD", "Ülkü")}, "treffer", "Ülkü"),
    ],
    ids=["surname-only-two-musters", "case-folded", "by-birth-date", "wrong-birth-date", "birth-name", "nfd"],
)
async def test_meldeauskunft_gives_data_only_for_exactly_one_match(
    backend: Backend, query: dict[str, object], ergebnis: str, vornamen: str | None
) -> None:
    answer = await asyncio.to_thread(lambda: backend.client().service.meldeauskunft(**query))

    assert answer.body.ergebnis == ergebnis
    if vornamen is None:
        assert answer.body.person is None
    else:
        assert answer.body.person.vornamen == vornamen


async def test_a_version_the_register_does_not_offer_is_a_fault_for_zeep(backend: Backend) -> None:
    def call() -> Any:
        client = XRoadClient(
            backend.url + "?wsdl",
            backend.url,
            client=DELBRUECK,
            service=BIELEFELD.service("meldeauskunft", "v2"),
        )
        return client.service.meldeauskunft(familienname="Muster")

    with pytest.raises(zeep.exceptions.Fault) as info:
        await asyncio.to_thread(call)
    assert info.value.code == "Client.UnknownService"
    assert "v2" in info.value.message


# --- Rückmeldung -----------------------------------------------------------------------------------


def rueckmeldung_for(client: XRoadClient, nachricht_id: str, vornamen: str = "Max", **person: object) -> Any:
    return client.service.rueckmeldung(
        nachrichtId=nachricht_id,
        absender={"praefix": "MELDID", "kennung": "05774020"},
        person={
            "familienname": "Muster",
            "vornamen": vornamen,
            "geburtsdatum": dt.date(1983, 9, 30),
            **person,
        },
        neueAnschrift={
            "strasse": "Am Beispielhof",
            "hausnummer": "4",
            "postleitzahl": "33129",
            "wohnort": "Delbrück",
            "gemeindeschluessel": "05774020",
        },
        einzugsdatum=dt.date(2025, 4, 15),
    )


async def test_rueckmeldung_is_acknowledged_with_case_reference_and_answer_date(backend: Backend) -> None:
    first_id = "7d4c0a52-2b1e-4f7a-9c3d-1e2f3a4b5c6d"
    second_id = "9f8e7d6c-5b4a-4392-8172-6a5b4c3d2e1f"

    def calls() -> tuple[Any, Any, Any]:
        client = backend.client(issue="Zuzug-2025-0042")
        first = rueckmeldung_for(client, first_id)
        second = rueckmeldung_for(client, second_id, vornamen="Moritz")
        again = rueckmeldung_for(client, first_id)
        return first, second, again

    first, second, again = await asyncio.to_thread(calls)

    ack = first.body
    assert ack.nachrichtentyp == "0203"
    assert ack.bezugNachrichtId == first_id
    assert ack.eingegangen == MAUNDY_THURSDAY
    assert ack.aktenzeichen == "RM-05711000-2025-00001"
    # Thursday 17 April 2025: Good Friday and Easter Monday are holidays, so Tue, Wed, Thu.
    assert ack.antwortBis == dt.date(2025, 4, 24)
    assert ack.personBekannt is True
    assert first.header.issue == "Zuzug-2025-0042"
    assert first.header.service.serviceCode == "rueckmeldung"

    assert second.body.aktenzeichen == "RM-05711000-2025-00002"
    assert second.body.personBekannt is False
    # Sent again: the first acknowledgement again, not a new case.
    assert again.body.aktenzeichen == ack.aktenzeichen
    assert again.body.antwortBis == ack.antwortBis

    async with backend.session.get(backend.url + "rueckmeldungen") as response:
        listed = await response.json()
    assert [(a["bezugNachrichtId"], a["aktenzeichen"], a["absender"]) for a in listed] == [
        (first_id, "RM-05711000-2025-00001", "MELDID:05774020"),
        (second_id, "RM-05711000-2025-00002", "MELDID:05774020"),
    ]


async def test_rueckmeldung_counts_working_days_from_the_date_in_germany() -> None:
    # 23:30 UTC on New Year's Eve is already New Year's Day (a holiday) in Bielefeld.
    new_year = dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC)
    config = MeldewesenConfig(clock=lambda: new_year)
    async with started(make_meldewesen_app(config)) as running:
        answer = await asyncio.to_thread(
            lambda: rueckmeldung_for(running.client(), "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10")
        )
    assert answer.body.aktenzeichen == "RM-05711000-2026-00001"
    assert answer.body.antwortBis == dt.date(2026, 1, 6)  # Fri 2, Mon 5, Tue 6 January


# --- working days and data --------------------------------------------------------------------------


def test_nrw_holidays_2025() -> None:
    assert sorted(nrw_holidays(2025)) == [
        dt.date(2025, 1, 1),
        dt.date(2025, 4, 18),  # Karfreitag
        dt.date(2025, 4, 21),  # Ostermontag
        dt.date(2025, 5, 1),
        dt.date(2025, 5, 29),  # Christi Himmelfahrt
        dt.date(2025, 6, 9),  # Pfingstmontag
        dt.date(2025, 6, 19),  # Fronleichnam
        dt.date(2025, 10, 3),
        dt.date(2025, 11, 1),
        dt.date(2025, 12, 25),
        dt.date(2025, 12, 26),
    ]


@pytest.mark.parametrize(
    ("year", "good_friday"),
    [(2024, dt.date(2024, 3, 29)), (2026, dt.date(2026, 4, 3)), (2038, dt.date(2038, 4, 23))],
)
def test_easter_dates(year: int, good_friday: dt.date) -> None:
    assert good_friday in nrw_holidays(year)
    assert good_friday + dt.timedelta(days=3) in nrw_holidays(year)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (dt.date(2025, 3, 3), dt.date(2025, 3, 6)),  # Monday -> Thursday
        (dt.date(2025, 3, 7), dt.date(2025, 3, 12)),  # Friday -> Wednesday
        (dt.date(2025, 3, 8), dt.date(2025, 3, 12)),  # Saturday -> Wednesday
        (dt.date(2025, 12, 23), dt.date(2025, 12, 30)),  # over Christmas
    ],
)
def test_add_working_days(start: dt.date, expected: dt.date) -> None:
    assert add_working_days(start, 3) == expected


def test_demo_residents_include_erika_muster_moved_from_delbrueck() -> None:
    erika = next(r for r in DEMO_RESIDENTS if r.vornamen.startswith("Erika"))
    current, former = erika.wohnungen
    assert (former.anschrift.gemeindeschluessel, current.anschrift.gemeindeschluessel) == (
        "05774020",
        "05711000",
    )
    assert former.auszug is not None and former.auszug < current.einzug
