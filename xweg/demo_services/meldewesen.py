"""Stadt Bielefeld's residents' register: a demo SOAP backend after XMeld, with fictitious residents.

An X-Road provider backend for X-Road message protocol 4.0 (SOAP 1.1, document/literal
wrapped, namespace ``urn:xweg:demo:meldewesen``, every operation version ``v1``):

* ``meldeauskunft`` -- a person's registration data, queried by ``familienname`` and
  optionally ``vornamen`` and ``geburtsdatum``.  The answer's ``ergebnis`` is ``treffer``
  with the person (surname, birth name, first names, date and place of birth, current
  and former addresses) when exactly one resident matches, ``keinTreffer`` when none does
  and ``mehrdeutig``, without data, when several do.
* ``rueckmeldung`` -- XMeld message 0201, by which the register of a person's new
  residence tells this one that the person has moved.  It is answered at once with an
  acknowledgement after message 0203: the reference of the 0201, when it was received, a
  case reference (``aktenzeichen``) and the date by which the register answers, three
  working days in North Rhine-Westphalia (weekends and NRW's public holidays excluded)
  after the day of receipt.  A message sent again (same ``nachrichtId``) gets its first
  acknowledgement again.

HTTP interface (``xweg demo-backend meldewesen --port P``):

* ``POST /`` -- the SOAP endpoint.  The answer's SOAP header holds copies of all of the
  request's header elements, unchanged and in order (the provider's security server
  refuses an answer whose X-Road headers differ from the request's); its body is
  ``<serviceCode>Response``.  Requests are parsed with :mod:`adapters.soap.inbound`
  (hardened XML, X-Road headers validated) and the body is checked against the WSDL's
  schema.  Anything refused is a SOAP 1.1 Fault (HTTP 500, as SOAP 1.1 asks of a server)
  with a ``Client.*`` fault code: the codes of :mod:`adapters.soap.inbound` for a
  malformed message, ``Client.UnknownService`` for an operation or version this register
  does not offer, ``Client.InvalidRequest`` for a body its schema refuses.
* ``GET /?wsdl`` -- the WSDL (``meldewesen.wsdl`` in this package), its ``soap:address``
  set to this backend's address.
* ``GET /rueckmeldungen`` -- the acknowledgements given so far, as JSON.

Access control, signatures and the request hash are the security servers' business.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from zoneinfo import ZoneInfo

from aiohttp import web
from lxml import etree

from adapters.soap.envelope import NS_SOAP_ENV
from adapters.soap.inbound import SoapRequest, parse_soap_request
from adapters.soap.outbound import SOAP_CONTENT_TYPE, fault_envelope
from adapters.soap.safexml import parse_xml
from core.errors import ErrorCode, Origin, XwegError

__all__ = [
    "NS_MELDEWESEN",
    "SERVICE_VERSION",
    "OPERATIONS",
    "WSDL_PATH",
    "ANSWER_WORKING_DAYS",
    "Anschrift",
    "Wohnung",
    "Einwohner",
    "DEMO_RESIDENTS",
    "MeldewesenConfig",
    "load_wsdl",
    "nrw_holidays",
    "add_working_days",
    "make_meldewesen_app",
]

NS_MELDEWESEN = "urn:xweg:demo:meldewesen"
SERVICE_VERSION = "v1"
OPERATIONS = ("meldeauskunft", "rueckmeldung")
#: Where the WSDL is served; ``GET /?wsdl`` is the usual form for SOAP services.
WSDL_PATH = "/?wsdl"
#: The register answers a Rückmeldung within this many working days.
ANSWER_WORKING_DAYS = 3
#: Largest request body accepted, in bytes; the requests of this service are a few KiB.
MAX_REQUEST_BYTES = 1024 * 1024
#: Most acknowledgements kept for answering a repeated Rückmeldung; the oldest go first.
MAX_ACKNOWLEDGEMENTS = 10_000
#: The HTTP status of a SOAP 1.1 Fault from a SOAP server (SOAP 1.1, section 6.2).
FAULT_HTTP_STATUS = 500

_WSDL_RESOURCE = "meldewesen.wsdl"
_NS_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_NS_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
_NS_XSD = "http://www.w3.org/2001/XMLSchema"
_MAX_MESSAGE = 300  # characters of a schema error quoted in a fault


def _m(name: str) -> str:
    return f"{{{NS_MELDEWESEN}}}{name}"


# --- the register's data -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anschrift:
    """A postal address with its municipality key."""

    strasse: str
    hausnummer: str
    postleitzahl: str
    wohnort: str
    gemeindeschluessel: str


@dataclass(frozen=True, slots=True)
class Wohnung:
    """An address a person lives or lived at; ``auszug`` is set for a former one."""

    anschrift: Anschrift
    status: str  # Hauptwohnung or Nebenwohnung
    einzug: dt.date
    auszug: dt.date | None = None

    def __post_init__(self) -> None:
        if self.status not in ("Hauptwohnung", "Nebenwohnung"):
            raise ValueError(f"unknown Wohnungsstatus {self.status!r}")
        if self.auszug is not None and self.auszug < self.einzug:
            raise ValueError("auszug lies before einzug")


@dataclass(frozen=True, slots=True)
class Einwohner:
    """A resident as the register holds them."""

    familienname: str
    vornamen: str
    geburtsdatum: dt.date
    geburtsort: str
    wohnungen: tuple[Wohnung, ...]
    geburtsname: str | None = None

    def __post_init__(self) -> None:
        if not self.wohnungen:
            raise ValueError("a resident has at least one address")


_BIELEFELD = "05711000"
_DELBRUECK = "05774020"

#: The demo register's residents; names and addresses are fictitious.
DEMO_RESIDENTS: tuple[Einwohner, ...] = (
    # Moved from Delbrück to Bielefeld: Bielefeld's Rückmeldung goes to Delbrück's register.
    Einwohner(
        familienname="Muster",
        geburtsname="Gabler",
        vornamen="Erika Maria",
        geburtsdatum=dt.date(1985, 4, 12),
        geburtsort="Paderborn",
        wohnungen=(
            Wohnung(
                Anschrift("Musterweg", "12", "33602", "Bielefeld", _BIELEFELD),
                "Hauptwohnung",
                dt.date(2025, 3, 1),
            ),
            Wohnung(
                Anschrift("Am Beispielhof", "3", "33129", "Delbrück", _DELBRUECK),
                "Hauptwohnung",
                dt.date(2012, 8, 15),
                dt.date(2025, 2, 28),
            ),
        ),
    ),
    Einwohner(
        familienname="Muster",
        vornamen="Max",
        geburtsdatum=dt.date(1983, 9, 30),
        geburtsort="Bielefeld",
        wohnungen=(
            Wohnung(
                Anschrift("Beispielstraße", "7", "33615", "Bielefeld", _BIELEFELD),
                "Hauptwohnung",
                dt.date(2010, 5, 1),
            ),
        ),
    ),
    Einwohner(
        familienname="Yılmaz",
        vornamen="Ülkü",
        geburtsdatum=dt.date(1990, 11, 23),
        geburtsort="Gütersloh",
        wohnungen=(
            Wohnung(
                Anschrift("Teststraße", "1a", "33607", "Bielefeld", _BIELEFELD),
                "Hauptwohnung",
                dt.date(2019, 1, 15),
            ),
            Wohnung(
                Anschrift("Probeweg", "5", "33129", "Delbrück", _DELBRUECK),
                "Nebenwohnung",
                dt.date(2021, 6, 1),
            ),
        ),
    ),
)


# --- working days ----------------------------------------------------------------------------------


def _easter_sunday(year: int) -> dt.date:
    """Easter Sunday of the Gregorian calendar (the anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday) // 451
    month, day = divmod(h + weekday - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def nrw_holidays(year: int) -> frozenset[dt.date]:
    """The statutory public holidays of North Rhine-Westphalia in ``year``."""
    easter = _easter_sunday(year)
    movable = (-2, 1, 39, 50, 60)  # Karfreitag, Ostermontag, Himmelfahrt, Pfingstmontag, Fronleichnam
    fixed = ((1, 1), (5, 1), (10, 3), (11, 1), (12, 25), (12, 26))
    return frozenset(
        [easter + dt.timedelta(days=offset) for offset in movable]
        + [dt.date(year, month, day) for month, day in fixed]
    )


def add_working_days(start: dt.date, days: int) -> dt.date:
    """The ``days``-th working day in NRW after ``start`` (Monday to Friday, holidays excluded)."""
    if days < 0:
        raise ValueError("days must not be negative")
    current = start
    remaining = days
    while remaining:
        current += dt.timedelta(days=1)
        if current.weekday() < 5 and current not in nrw_holidays(current.year):
            remaining -= 1
    return current


# --- configuration and state -----------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class MeldewesenConfig:
    """How one register backend runs.

    ``address`` is the ``soap:address`` written into the served WSDL; ``None`` means the
    address of the socket a request arrived on.  ``clock`` gives the time of receipt
    (timezone-aware); working days are counted in ``time_zone``.
    """

    gemeindeschluessel: str = _BIELEFELD
    residents: tuple[Einwohner, ...] = DEMO_RESIDENTS
    address: str | None = None
    clock: Callable[[], dt.datetime] = _utc_now
    time_zone: str = "Europe/Berlin"
    max_request_bytes: int = MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        if len(self.gemeindeschluessel) != 8 or not self.gemeindeschluessel.isdigit():
            raise ValueError("gemeindeschluessel must be 8 digits")
        if self.max_request_bytes < 1:
            raise ValueError("max_request_bytes must be positive")
        ZoneInfo(self.time_zone)  # fails at start-up, not on the first Rückmeldung


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The answer to one Rückmeldung (after XMeld 0203)."""

    bezug_nachricht_id: str
    eingegangen: dt.datetime
    aktenzeichen: str
    antwort_bis: dt.date
    person_bekannt: bool
    absender: str


@dataclass
class _Register:
    """One running register: its configuration, schema, WSDL and what it acknowledged."""

    config: MeldewesenConfig
    schema: etree.XMLSchema
    wsdl: etree._Element
    acknowledgements: dict[str, Acknowledgement] = field(default_factory=dict)
    received: int = 0  # Rückmeldungen acknowledged so far; numbers the case references


_REGISTER = web.AppKey("meldewesen_register", _Register)


def load_wsdl() -> bytes:
    """The register's WSDL as packaged, with its placeholder ``soap:address``."""
    return resources.files(__package__).joinpath(_WSDL_RESOURCE).read_bytes()


def _body_schema(wsdl: etree._Element) -> etree.XMLSchema:
    """The WSDL's schema for the message bodies, without its imports of X-Road's schemas.

    The bodies use no X-Road type, and dropping the imports keeps lxml from trying to fetch
    them over the network.
    """
    for schema in wsdl.iterfind(f"{{{_NS_WSDL}}}types/{{{_NS_XSD}}}schema"):
        if schema.get("targetNamespace") == NS_MELDEWESEN:
            # A new root with every namespace in scope: type references such as
            # ``tns:Text`` use prefixes declared on the WSDL's root.
            body = etree.Element(schema.tag, attrib=dict(schema.attrib), nsmap=schema.nsmap)
            for child in schema:
                if child.tag != f"{{{_NS_XSD}}}import":
                    body.append(copy.deepcopy(child))
            return etree.XMLSchema(body)
    raise ValueError(f"the WSDL has no schema for {NS_MELDEWESEN}")


# --- reading requests ------------------------------------------------------------------------------


def _client_error(code: ErrorCode, message: str) -> XwegError:
    return XwegError(code, message, Origin.CLIENT)


def _text(element: etree._Element, name: str) -> str | None:
    child = element.find(_m(name))
    return None if child is None else str(child.text or "")


def _required(element: etree._Element, name: str) -> str:
    value = _text(element, name)
    if value is None:  # the schema requires it; this only guards against a schema edit
        raise _client_error(ErrorCode.INVALID_REQUEST, f"{name} is missing")
    return value


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _fold(text: str) -> str:
    """A name as compared: Unicode-normalised, case-folded, white space collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def _matches(
    resident: Einwohner, familienname: str, vornamen: str | None, geburtsdatum: dt.date | None
) -> bool:
    if _fold(resident.familienname) != _fold(familienname):
        return False
    # Given first names must all be among the resident's: "Erika" finds "Erika Maria".
    if vornamen is not None and not set(_fold(vornamen).split()) <= set(_fold(resident.vornamen).split()):
        return False
    return geburtsdatum is None or resident.geburtsdatum == geburtsdatum


def _operation(register: _Register, soap: SoapRequest) -> tuple[str, etree._Element]:
    """Which operation is called, and its request element, validated against the schema."""
    element = parse_xml(soap.body_xml, origin=Origin.CLIENT)
    qname = etree.QName(element)
    if qname.namespace != NS_MELDEWESEN or qname.localname not in OPERATIONS:
        raise _client_error(
            ErrorCode.UNKNOWN_SERVICE,
            f"the residents' register offers no operation {{{qname.namespace or ''}}}{qname.localname}",
        )
    version = soap.header.service.service_version
    if version is not None and version != SERVICE_VERSION:
        raise _client_error(
            ErrorCode.UNKNOWN_SERVICE,
            f"{qname.localname} is offered in version {SERVICE_VERSION} only, not {version[:40]!r}",
        )
    if not register.schema.validate(element):
        error = register.schema.error_log.last_error
        message = error.message if error is not None else "invalid"
        raise _client_error(
            ErrorCode.INVALID_REQUEST,
            f"the {qname.localname} request is not valid: {message[:_MAX_MESSAGE]}",
        )
    return str(qname.localname), element


# --- answering -------------------------------------------------------------------------------------


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _m(name))
    if text is not None:
        child.text = text
    return child


def _anschrift(parent: etree._Element, name: str, anschrift: Anschrift) -> None:
    element = _sub(parent, name)
    _sub(element, "strasse", anschrift.strasse)
    _sub(element, "hausnummer", anschrift.hausnummer)
    _sub(element, "postleitzahl", anschrift.postleitzahl)
    _sub(element, "wohnort", anschrift.wohnort)
    _sub(element, "gemeindeschluessel", anschrift.gemeindeschluessel)


def _person(parent: etree._Element, resident: Einwohner) -> None:
    person = _sub(parent, "person")
    _sub(person, "familienname", resident.familienname)
    if resident.geburtsname is not None:
        _sub(person, "geburtsname", resident.geburtsname)
    _sub(person, "vornamen", resident.vornamen)
    _sub(person, "geburtsdatum", resident.geburtsdatum.isoformat())
    _sub(person, "geburtsort", resident.geburtsort)
    for wohnung in resident.wohnungen:
        element = _sub(person, "wohnung")
        _anschrift(element, "anschrift", wohnung.anschrift)
        _sub(element, "wohnungsstatus", wohnung.status)
        _sub(element, "einzugsdatum", wohnung.einzug.isoformat())
        if wohnung.auszug is not None:
            _sub(element, "auszugsdatum", wohnung.auszug.isoformat())


def _meldeauskunft(register: _Register, request: etree._Element) -> etree._Element:
    familienname = _required(request, "familienname")
    vornamen = _text(request, "vornamen")
    geburtsdatum_text = _text(request, "geburtsdatum")
    geburtsdatum = _date(geburtsdatum_text) if geburtsdatum_text is not None else None
    found = [r for r in register.config.residents if _matches(r, familienname, vornamen, geburtsdatum)]

    response = etree.Element(_m("meldeauskunftResponse"), nsmap={"m": NS_MELDEWESEN})
    if len(found) == 1:
        _sub(response, "ergebnis", "treffer")
        _person(response, found[0])
    else:
        _sub(response, "ergebnis", "keinTreffer" if not found else "mehrdeutig")
    return response


def _acknowledge(register: _Register, request: etree._Element, now: dt.datetime) -> Acknowledgement:
    nachricht_id = _required(request, "nachrichtId")
    known = register.acknowledgements.get(nachricht_id)
    if known is not None:
        return known
    person = request.find(_m("person"))
    absender = request.find(_m("absender"))
    if person is None or absender is None:  # the schema requires both
        raise _client_error(ErrorCode.INVALID_REQUEST, "person or absender is missing")
    familienname = _required(person, "familienname")
    vornamen = _required(person, "vornamen")
    geburtsdatum = _date(_required(person, "geburtsdatum"))
    sender = f"{_required(absender, 'praefix')}:{_required(absender, 'kennung')}"
    bekannt = any(_matches(r, familienname, vornamen, geburtsdatum) for r in register.config.residents)

    today = now.astimezone(ZoneInfo(register.config.time_zone)).date()
    register.received += 1
    acknowledgement = Acknowledgement(
        bezug_nachricht_id=nachricht_id,
        eingegangen=now.astimezone(dt.UTC),
        aktenzeichen=f"RM-{register.config.gemeindeschluessel}-{today.year}-{register.received:05d}",
        antwort_bis=add_working_days(today, ANSWER_WORKING_DAYS),
        person_bekannt=bekannt,
        absender=sender,
    )
    register.acknowledgements[nachricht_id] = acknowledgement
    while len(register.acknowledgements) > MAX_ACKNOWLEDGEMENTS:
        del register.acknowledgements[next(iter(register.acknowledgements))]
    return acknowledgement


def _rueckmeldung(register: _Register, request: etree._Element, now: dt.datetime) -> etree._Element:
    acknowledgement = _acknowledge(register, request, now)
    response = etree.Element(_m("rueckmeldungResponse"), nsmap={"m": NS_MELDEWESEN})
    _sub(response, "nachrichtentyp", "0203")
    _sub(response, "bezugNachrichtId", acknowledgement.bezug_nachricht_id)
    _sub(response, "eingegangen", acknowledgement.eingegangen.isoformat(timespec="seconds"))
    _sub(response, "aktenzeichen", acknowledgement.aktenzeichen)
    _sub(response, "antwortBis", acknowledgement.antwort_bis.isoformat())
    _sub(response, "personBekannt", "true" if acknowledgement.person_bekannt else "false")
    return response


def _response_envelope(soap: SoapRequest, body_element: etree._Element) -> bytes:
    """The answer: copies of all the request's header elements, in order, around ``body_element``."""
    request_header = parse_xml(soap.header_xml, origin=Origin.CLIENT)
    envelope = etree.Element(f"{{{NS_SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": NS_SOAP_ENV})
    header = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Header")
    for child in request_header:
        header.append(copy.deepcopy(child))
    etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Body").append(body_element)
    data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return data


def _fault(error: XwegError) -> web.Response:
    body = fault_envelope(error.fault_code, error.message, error.correlation_id)
    return web.Response(status=FAULT_HTTP_STATUS, body=body, headers={"Content-Type": SOAP_CONTENT_TYPE})


# --- HTTP ------------------------------------------------------------------------------------------


async def _soap(request: web.Request) -> web.Response:
    register = request.app[_REGISTER]
    now = register.config.clock()
    try:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _client_error(
                ErrorCode.REQUEST_TOO_LARGE,
                f"the request is larger than {register.config.max_request_bytes} bytes",
            ) from None
        soap = parse_soap_request(body, content_type=request.headers.get("Content-Type"))
        operation, element = _operation(register, soap)
        if operation == "meldeauskunft":
            answer = _meldeauskunft(register, element)
        else:
            answer = _rueckmeldung(register, element, now)
    except XwegError as error:
        return _fault(error)
    return web.Response(body=_response_envelope(soap, answer), headers={"Content-Type": SOAP_CONTENT_TYPE})


def _own_address(request: web.Request) -> str:
    """``http://host:port/`` of the socket the request arrived on (never the client's Host header)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        raise web.HTTPInternalServerError(text="the backend's own address is unknown; configure it")
    host, port = str(sockname[0]), int(sockname[1])
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def _wsdl(request: web.Request) -> web.Response:
    if "wsdl" not in {key.lower() for key in request.query}:
        raise web.HTTPNotFound(text=f"The service description is at {WSDL_PATH}.")
    register = request.app[_REGISTER]
    document = copy.deepcopy(register.wsdl)
    address = register.config.address or _own_address(request)
    for port_address in document.iterfind(
        f"{{{_NS_WSDL}}}service/{{{_NS_WSDL}}}port/{{{_NS_WSDL_SOAP}}}address"
    ):
        port_address.set("location", address)
    data = etree.tostring(document, xml_declaration=True, encoding="UTF-8")
    return web.Response(body=data, headers={"Content-Type": SOAP_CONTENT_TYPE})


async def _acknowledgements(request: web.Request) -> web.Response:
    register = request.app[_REGISTER]
    listed = [
        {
            "bezugNachrichtId": a.bezug_nachricht_id,
            "absender": a.absender,
            "eingegangen": a.eingegangen.isoformat(timespec="seconds"),
            "aktenzeichen": a.aktenzeichen,
            "antwortBis": a.antwort_bis.isoformat(),
            "personBekannt": a.person_bekannt,
        }
        for a in register.acknowledgements.values()
    ]
    return web.Response(text=json.dumps(listed, ensure_ascii=False), content_type="application/json")


def make_meldewesen_app(config: MeldewesenConfig | None = None) -> web.Application:
    """The register backend as an aiohttp application (routes in the module docstring)."""
    config = config or MeldewesenConfig()
    wsdl = parse_xml(load_wsdl())
    app = web.Application(client_max_size=config.max_request_bytes)
    app[_REGISTER] = _Register(config=config, schema=_body_schema(wsdl), wsdl=wsdl)
    app.router.add_post("/", _soap)
    app.router.add_get("/", _wsdl)
    app.router.add_get("/rueckmeldungen", _acknowledgements)
    return app
