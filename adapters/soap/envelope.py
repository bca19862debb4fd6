"""X-Road SOAP 4.0 envelopes: the header model and reading a parsed envelope.

Follows X-Road's message protocol 4.0 (pr-mess) as ``XROAD-PROTOCOL.md`` states it: SOAP
1.1, document/literal wrapped; the headers ``xrd:client`` (``id:objectType`` MEMBER or
SUBSYSTEM), ``xrd:service`` (SERVICE), ``xrd:id``, ``xrd:userId``, ``xrd:issue``,
``xrd:protocolVersion`` (exactly ``4.0``), ``repr:representedParty`` and, in responses
only, ``xrd:requestHash``.  Like X-Road's own parser it blames a missing SOAP header as
``MissingHeader``, a missing required field (checked in X-Road's order: protocolVersion,
client, id, service) as ``MissingHeaderField``, a repeated one as
``DuplicateHeaderField``, a missing body as ``MissingBody`` and a body that is not exactly
one element named after the service code (``<serviceCode>Response`` in responses) as
``InvalidBody``.  Identifiers are validated by :mod:`core.identifiers`; a bad client is
``InvalidClientIdentifier``, a bad service ``InvalidServiceIdentifier``.

Header elements of other namespaces (and other ``xrd`` elements such as
``xrd:securityServer``) are not interpreted; they stay in the header that is echoed back.
Comments and CDATA sections inside header fields are read as X-Road reads them: comments
are skipped, CDATA is text.  The XML itself is parsed elsewhere
(:mod:`adapters.soap.safexml`); this module only reads the tree it is given.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from lxml import etree

from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ClientId, IdentifierError, MemberId, ServiceId, SubsystemId, check_part

__all__ = [
    "NS_SOAP_ENV",
    "NS_SOAP12_ENV",
    "NS_XROAD",
    "NS_ID",
    "NS_REPR",
    "PROTOCOL_VERSION",
    "SHA512_ALGORITHM_ID",
    "MAX_FIELD_LENGTH",
    "RepresentedParty",
    "RequestHash",
    "XRoadHeader",
    "SoapFault",
    "RequestEnvelope",
    "ResponseEnvelope",
    "read_request_envelope",
    "read_response_envelope",
    "compute_request_hash",
    "HeaderFieldError",
]

NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
NS_XROAD = "http://x-road.eu/xsd/xroad.xsd"
NS_ID = "http://x-road.eu/xsd/identifiers"
NS_REPR = "http://x-road.eu/xsd/representation.xsd"
#: The one protocol version this adapter speaks.
PROTOCOL_VERSION = "4.0"
#: X-Road's ``algorithmId`` for the SHA-512 request hash.
SHA512_ALGORITHM_ID = "http://www.w3.org/2001/04/xmlenc#sha512"
#: Longest value of ``xrd:id``, ``xrd:userId`` and ``xrd:issue`` (core stores at most 255).
MAX_FIELD_LENGTH = 255

_ENVELOPE = f"{{{NS_SOAP_ENV}}}Envelope"
_HEADER = f"{{{NS_SOAP_ENV}}}Header"
_BODY = f"{{{NS_SOAP_ENV}}}Body"
_FAULT = f"{{{NS_SOAP_ENV}}}Fault"
_OBJECT_TYPE = f"{{{NS_ID}}}objectType"

# The header fields read here, by qualified name, with the name used in messages.
_FIELDS: dict[str, str] = {
    f"{{{NS_XROAD}}}client": "client",
    f"{{{NS_XROAD}}}service": "service",
    f"{{{NS_XROAD}}}id": "id",
    f"{{{NS_XROAD}}}userId": "userId",
    f"{{{NS_XROAD}}}issue": "issue",
    f"{{{NS_XROAD}}}protocolVersion": "protocolVersion",
    f"{{{NS_XROAD}}}requestHash": "requestHash",
    f"{{{NS_REPR}}}representedParty": "representedParty",
}
# X-Road checks the required fields in this order; the first one missing is named.
_REQUIRED = ("protocolVersion", "client", "id", "service")
_CLIENT_PARTS = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode")
_SERVICE_PARTS = (
    "xRoadInstance",
    "memberClass",
    "memberCode",
    "subsystemCode",
    "serviceCode",
    "serviceVersion",
)


class HeaderFieldError(ValueError):
    """A header field's value breaks a rule of :class:`XRoadHeader`."""


def _check_field(value: str | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD_LENGTH:
        raise HeaderFieldError(f"{what} must be 1 to {MAX_FIELD_LENGTH} characters")
    # Control characters cannot be logged or compared safely; lone surrogates cannot be hashed.
    for ch in value:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            raise HeaderFieldError(f"{what} contains a control character")


@dataclass(frozen=True, slots=True)
class RepresentedParty:
    """``repr:representedParty``: the party a client acts for (class optional, code required)."""

    party_code: str
    party_class: str | None = None

    def __post_init__(self) -> None:
        check_part(self.party_code, "partyCode")
        if self.party_class is not None:
            check_part(self.party_class, "partyClass")

    def text(self) -> str:
        """The form of ``X-Road-Represented-Party``: ``[partyClass/]partyCode``."""
        if self.party_class is None:
            return self.party_code
        return f"{self.party_class}/{self.party_code}"


@dataclass(frozen=True, slots=True)
class RequestHash:
    """``xrd:requestHash``: the base64 hash of the request's SOAP bytes, and its algorithm."""

    algorithm_id: str
    value: str

    def __post_init__(self) -> None:
        _check_field(self.algorithm_id, "requestHash/@algorithmId")
        try:
            base64.b64decode(self.value.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise HeaderFieldError("requestHash is not base64") from None


def compute_request_hash(soap: bytes) -> RequestHash:
    """X-Road's request hash: SHA-512 over the request's SOAP bytes exactly as the client sent them."""
    digest = hashlib.sha512(soap).digest()
    return RequestHash(SHA512_ALGORITHM_ID, base64.b64encode(digest).decode("ascii"))


@dataclass(frozen=True, slots=True)
class XRoadHeader:
    """The X-Road header fields of one SOAP message, validated."""

    client: ClientId
    service: ServiceId
    message_id: str
    protocol_version: str = PROTOCOL_VERSION
    user_id: str | None = None
    issue: str | None = None
    represented_party: RepresentedParty | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.client, (MemberId, SubsystemId)):
            raise HeaderFieldError("client must be a member or a subsystem")
        if not isinstance(self.service, ServiceId):
            raise HeaderFieldError("service must be a service identifier")
        if self.protocol_version != PROTOCOL_VERSION:
            raise HeaderFieldError(f"protocolVersion must be {PROTOCOL_VERSION}")
        _check_field(self.message_id, "id")
        _check_field(self.user_id, "userId")
        _check_field(self.issue, "issue")
        if self.represented_party is not None and not isinstance(self.represented_party, RepresentedParty):
            raise HeaderFieldError("representedParty must be a RepresentedParty")


@dataclass(frozen=True, slots=True)
class SoapFault:
    """A SOAP 1.1 ``Fault`` as read from a response."""

    code: str
    string: str
    actor: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class RequestEnvelope:
    """What a request envelope says.

    ``header_xml`` is the SOAP ``Header`` element and ``body_xml`` the body's wrapper
    element, each serialised on its own with the namespace declarations it needs; they are
    for echoing and for reading the payload, never for hashing (hashes cover the bytes as
    sent).
    """

    header: XRoadHeader
    header_xml: bytes = field(repr=False)
    body_xml: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ResponseEnvelope:
    """What a response envelope says: X-Road headers and a wrapper, or a Fault.

    ``header`` is ``None`` only for a fault (X-Road does not require headers on faults);
    ``body_xml`` is the wrapper element or the ``Fault`` element, serialised on its own.
    """

    header: XRoadHeader | None
    request_hash: RequestHash | None
    fault: SoapFault | None
    header_xml: bytes | None = field(repr=False)
    body_xml: bytes = field(repr=False)


# --- reading --------------------------------------------------------------------------------------


@contextmanager
def _translated(make: Callable[[ValueError], XwegError]) -> Iterator[None]:
    """Turn a validation error (``IdentifierError``, ``HeaderFieldError``) into our error."""
    try:
        yield
    except (IdentifierError, HeaderFieldError) as exc:
        raise make(exc) from exc


def _short(text: str, limit: int = 64) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _name(tag: str) -> str:
    """A readable name for an element: ``xrd:client`` for X-Road's, else the local name."""
    qname = etree.QName(tag)
    prefix = {NS_XROAD: "xrd:", NS_ID: "id:", NS_REPR: "repr:", NS_SOAP_ENV: "SOAP-ENV:"}.get(
        qname.namespace or "", ""
    )
    return prefix + str(qname.localname)


class _Reader:
    """Reads one envelope tree; every refusal is blamed on ``origin``."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin

    def error(self, code: ErrorCode, message: str) -> XwegError:
        return XwegError(code, message, self.origin)

    def children(self, element: etree._Element, code: ErrorCode) -> list[etree._Element]:
        """Element children; comments and PIs are skipped, text other than white space refused."""
        if element.text is not None and element.text.strip():
            raise self.error(code, f"{_name(element.tag)} contains text where elements belong")
        kids: list[etree._Element] = []
        for child in element:
            if child.tail is not None and child.tail.strip():
                raise self.error(code, f"{_name(element.tag)} contains text where elements belong")
            if isinstance(child.tag, str):
                kids.append(child)
        return kids

    def text(self, element: etree._Element, code: ErrorCode = ErrorCode.INVALID_SOAP) -> str:
        """The text of a simple element: its text and CDATA, comments skipped, no child elements."""
        pieces = [element.text or ""]
        for child in element:
            if isinstance(child.tag, str):
                raise self.error(code, f"{_name(element.tag)} must contain text only")
            pieces.append(child.tail or "")
        return "".join(pieces)

    # -- envelope and body ---------------------------------------------------------------------------

    def envelope_parts(self, root: etree._Element) -> tuple[etree._Element | None, etree._Element | None]:
        if root.tag != _ENVELOPE:
            namespace = etree.QName(root).namespace
            if namespace == NS_SOAP12_ENV:
                raise self.error(ErrorCode.INVALID_SOAP, "SOAP 1.2 is not supported; X-Road uses SOAP 1.1")
            raise self.error(
                ErrorCode.INVALID_SOAP,
                "Malformed SOAP message: envelope missing (root is not a SOAP 1.1 Envelope)",
            )
        header: etree._Element | None = None
        body: etree._Element | None = None
        for child in self.children(root, ErrorCode.INVALID_SOAP):
            if child.tag == _HEADER and header is None and body is None:
                header = child
            elif child.tag == _BODY and body is None:
                body = child
            elif child.tag in (_HEADER, _BODY):
                raise self.error(
                    ErrorCode.INVALID_SOAP, f"the envelope has a misplaced or second {_name(child.tag)}"
                )
            else:
                raise self.error(
                    ErrorCode.INVALID_SOAP, f"the envelope contains the unexpected element {_name(child.tag)}"
                )
        return header, body

    def require(
        self, header: etree._Element | None, body: etree._Element | None
    ) -> tuple[etree._Element, etree._Element]:
        # X-Road names a missing header before a missing body.
        if header is None:
            raise self.error(ErrorCode.MISSING_HEADER, "Malformed SOAP message: header missing")
        if body is None:
            raise self.error(ErrorCode.MISSING_BODY, "Malformed SOAP message: body missing")
        return header, body

    def body_element(self, body: etree._Element) -> etree._Element:
        kids = self.children(body, ErrorCode.INVALID_BODY)
        if len(kids) != 1:
            raise self.error(
                ErrorCode.INVALID_BODY, "Malformed SOAP message: body must have exactly one child element"
            )
        return kids[0]

    def fault(self, element: etree._Element) -> SoapFault:
        values: dict[str, str] = {}
        for child in self.children(element, ErrorCode.INVALID_SOAP):
            qname = etree.QName(child)
            # SOAP 1.1 leaves these unqualified; some toolkits qualify them anyway.
            if qname.namespace not in (None, NS_SOAP_ENV):
                continue
            if qname.localname in values:
                raise self.error(ErrorCode.INVALID_SOAP, f"the Fault has a second {qname.localname}")
            if qname.localname == "detail":
                values["detail"] = self.fault_detail(child)
            elif qname.localname in ("faultcode", "faultstring", "faultactor"):
                values[qname.localname] = self.text(child).strip()
        if not values.get("faultcode"):
            raise self.error(ErrorCode.INVALID_SOAP, "the Fault has no faultcode")
        return SoapFault(
            code=values["faultcode"],
            string=values.get("faultstring", ""),
            actor=values.get("faultactor") or None,
            detail=values.get("detail") or None,
        )

    def fault_detail(self, detail: etree._Element) -> str:
        for child in detail:
            if isinstance(child.tag, str) and etree.QName(child).localname == "faultDetail":
                return "".join(child.itertext()).strip()
        return "".join(detail.itertext()).strip()

    # -- header ----------------------------------------------------------------------------------------

    def header_fields(self, header: etree._Element) -> dict[str, etree._Element]:
        found: dict[str, etree._Element] = {}
        for child in self.children(header, ErrorCode.INVALID_SOAP):
            name = _FIELDS.get(child.tag)
            if name is None:
                continue
            if name in found:
                raise self.error(
                    ErrorCode.DUPLICATE_HEADER_FIELD, f"SOAP header contains duplicate field '{name}'"
                )
            found[name] = child
        return found

    def identifier_parts(
        self, element: etree._Element, allowed: tuple[str, ...], code: ErrorCode
    ) -> dict[str, str]:
        parts: dict[str, str] = {}
        for child in self.children(element, code):
            qname = etree.QName(child)
            if qname.namespace != NS_ID or qname.localname not in allowed:
                raise self.error(
                    code, f"{_name(element.tag)} contains the unexpected element {_name(child.tag)}"
                )
            if qname.localname in parts:
                raise self.error(code, f"{_name(element.tag)} contains id:{qname.localname} twice")
            parts[qname.localname] = self.text(child, code)
        return parts

    def object_type(self, element: etree._Element, allowed: tuple[str, ...], code: ErrorCode) -> str:
        value: str | None = element.get(_OBJECT_TYPE)
        if value is None:
            raise self.error(code, f"{_name(element.tag)} has no id:objectType attribute")
        if value not in allowed:
            raise self.error(
                code,
                f"{_name(element.tag)} has id:objectType {_short(value)}; expected {' or '.join(allowed)}",
            )
        return value

    def client(self, element: etree._Element) -> ClientId:
        code = ErrorCode.INVALID_CLIENT_IDENTIFIER
        kind = self.object_type(element, ("MEMBER", "SUBSYSTEM"), code)
        parts = self.identifier_parts(element, _CLIENT_PARTS, code)
        wanted = _CLIENT_PARTS if kind == "SUBSYSTEM" else _CLIENT_PARTS[:3]
        self.require_parts(element, parts, wanted, code)
        if kind == "MEMBER" and "subsystemCode" in parts:
            raise self.error(code, "a MEMBER client must not have id:subsystemCode")
        with self.identifier_errors(code):
            if kind == "MEMBER":
                return MemberId(parts["xRoadInstance"], parts["memberClass"], parts["memberCode"])
            return SubsystemId(
                parts["xRoadInstance"], parts["memberClass"], parts["memberCode"], parts["subsystemCode"]
            )

    def service(self, element: etree._Element) -> ServiceId:
        code = ErrorCode.INVALID_SERVICE_IDENTIFIER
        self.object_type(element, ("SERVICE",), code)
        parts = self.identifier_parts(element, _SERVICE_PARTS, code)
        self.require_parts(element, parts, _SERVICE_PARTS[:5], code)
        with self.identifier_errors(code):
            provider = SubsystemId(
                parts["xRoadInstance"], parts["memberClass"], parts["memberCode"], parts["subsystemCode"]
            )
            return ServiceId(provider, parts["serviceCode"], parts.get("serviceVersion"))

    def require_parts(
        self, element: etree._Element, parts: dict[str, str], wanted: tuple[str, ...], code: ErrorCode
    ) -> None:
        for part in wanted:
            if part not in parts:
                raise self.error(code, f"{_name(element.tag)} has no id:{part}")

    def identifier_errors(self, code: ErrorCode) -> contextlib.AbstractContextManager[None]:
        return _translated(lambda exc: self.error(code, str(exc)))

    def represented_party(self, element: etree._Element) -> RepresentedParty:
        values: dict[str, str] = {}
        for child in self.children(element, ErrorCode.INVALID_SOAP):
            qname = etree.QName(child)
            if qname.namespace != NS_REPR or qname.localname not in ("partyClass", "partyCode"):
                raise self.error(
                    ErrorCode.INVALID_SOAP,
                    f"repr:representedParty contains the unexpected element {_name(child.tag)}",
                )
            if qname.localname in values:
                raise self.error(
                    ErrorCode.DUPLICATE_HEADER_FIELD, f"repr:representedParty repeats repr:{qname.localname}"
                )
            values[qname.localname] = self.text(child)
        if "partyCode" not in values:
            raise self.error(
                ErrorCode.MISSING_HEADER_FIELD, "Required field 'representedParty/partyCode' is missing"
            )
        with _translated(lambda exc: self.error(ErrorCode.INVALID_REQUEST, f"representedParty: {exc}")):
            return RepresentedParty(values["partyCode"], values.get("partyClass"))

    def request_hash(self, element: etree._Element) -> RequestHash:
        algorithm = element.get("algorithmId")
        if algorithm is None:
            raise self.error(ErrorCode.INVALID_SOAP, "xrd:requestHash has no algorithmId attribute")
        with _translated(lambda exc: self.error(ErrorCode.INVALID_SOAP, f"xrd:requestHash: {exc}")):
            return RequestHash(algorithm, self.text(element).strip())

    def header(self, header: etree._Element, *, response: bool) -> tuple[XRoadHeader, RequestHash | None]:
        fields = self.header_fields(header)
        for name in _REQUIRED:
            if name not in fields:
                message = (
                    "Message header must contain service id"
                    if name == "service"
                    else f"Required field '{name}' is missing"
                )
                raise self.error(ErrorCode.MISSING_HEADER_FIELD, message)

        version = self.text(fields["protocolVersion"])
        if version != PROTOCOL_VERSION:
            raise self.error(
                ErrorCode.INVALID_PROTOCOL_VERSION,
                f"Unsupported protocol version {_short(version)}; X-Road SOAP needs {PROTOCOL_VERSION}",
            )
        client = self.client(fields["client"])
        service = self.service(fields["service"])
        message_id = self.text(fields["id"])
        if not message_id:
            raise self.error(ErrorCode.MISSING_HEADER_FIELD, "Required field 'id' is empty")
        # Clients that always write every header send empty optional ones; empty means absent.
        user_id = self.text(fields["userId"]) if "userId" in fields else None
        issue = self.text(fields["issue"]) if "issue" in fields else None
        party = self.represented_party(fields["representedParty"]) if "representedParty" in fields else None

        request_hash: RequestHash | None = None
        if "requestHash" in fields:
            if not response:
                raise self.error(
                    ErrorCode.INVALID_SOAP, "xrd:requestHash belongs in responses only, not in a request"
                )
            request_hash = self.request_hash(fields["requestHash"])

        with _translated(lambda exc: self.error(ErrorCode.INVALID_REQUEST, f"invalid header field: {exc}")):
            parsed = XRoadHeader(
                client=client,
                service=service,
                message_id=message_id,
                protocol_version=version,
                user_id=user_id or None,
                issue=issue or None,
                represented_party=party,
            )
        return parsed, request_hash


def _serialise(element: etree._Element) -> bytes:
    data: bytes = etree.tostring(element, encoding="UTF-8", with_tail=False)
    return data


def read_request_envelope(root: etree._Element, *, origin: Origin = Origin.CLIENT) -> RequestEnvelope:
    """Read an X-Road SOAP request from its parsed envelope.

    Raises :class:`XwegError` blamed on ``origin`` with ``InvalidSoap``, ``MissingHeader``,
    ``MissingBody``, ``MissingHeaderField``, ``DuplicateHeaderField``,
    ``InvalidProtocolVersion``, ``InvalidClientIdentifier``, ``InvalidServiceIdentifier``,
    ``InvalidRequest`` (a field's value breaks a bound) or ``InvalidBody`` (not exactly one
    body element, a Fault, or a wrapper not named after the service code).
    """
    reader = _Reader(origin)
    header_element, body = reader.require(*reader.envelope_parts(root))
    header, _ = reader.header(header_element, response=False)
    element = reader.body_element(body)
    if element.tag == _FAULT:
        raise reader.error(ErrorCode.INVALID_BODY, "a request body must not be a SOAP Fault")
    wrapper = etree.QName(element).localname
    if wrapper != header.service.service_code:
        raise reader.error(
            ErrorCode.INVALID_BODY,
            f"the body element {_short(wrapper)} is not named after the service code "
            f"{_short(header.service.service_code)}",
        )
    return RequestEnvelope(header, _serialise(header_element), _serialise(element))


def read_response_envelope(root: etree._Element, *, origin: Origin = Origin.SERVER_PROXY) -> ResponseEnvelope:
    """Read an X-Road SOAP response (or a SOAP Fault) from its parsed envelope.

    A Fault is returned as such; its header fields are read only if they are complete,
    since X-Road does not require them on faults.  Any other response must carry the X-Road
    headers and one body element named ``<serviceCode>Response``; the same errors as for
    requests are raised, blamed on ``origin``.
    """
    reader = _Reader(origin)
    header_element, body = reader.envelope_parts(root)
    if body is not None:
        kids = reader.children(body, ErrorCode.INVALID_BODY)
        if any(kid.tag == _FAULT for kid in kids):
            element = reader.body_element(body)
            fault = reader.fault(element)
            header: XRoadHeader | None = None
            request_hash: RequestHash | None = None
            if header_element is not None:
                try:
                    header, request_hash = reader.header(header_element, response=True)
                except XwegError:
                    header, request_hash = None, None
            header_xml = _serialise(header_element) if header_element is not None else None
            return ResponseEnvelope(header, request_hash, fault, header_xml, _serialise(element))
    header_element, body = reader.require(header_element, body)
    parsed, request_hash = reader.header(header_element, response=True)
    element = reader.body_element(body)
    wrapper = etree.QName(element).localname
    expected = parsed.service.service_code + "Response"
    if wrapper != expected:
        raise reader.error(
            ErrorCode.INVALID_BODY,
            f"the response body element {_short(wrapper)} is not named {_short(expected)}",
        )
    return ResponseEnvelope(parsed, request_hash, None, _serialise(header_element), _serialise(element))
