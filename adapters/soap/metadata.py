"""X-Road's service metadata protocol (pr-meta): listClients, and SOAP listMethods, allowedMethods, getWsdl.

Pure renderers and readers; who answers which call, and from which configuration, is the
gateway's to decide.

* ``listClients`` (``GET /listClients`` on a security server): the instance's members and
  subsystems as an ``xrd:clientList`` document, or, when the client's ``Accept`` header
  asks for ``application/json``, as X-Road's JSON ``{"member": [{"id": {...}, "name": ...}]}``
  (:func:`render_list_clients`).
* SOAP ``listMethods`` and ``allowedMethods``: ordinary X-Road calls to a provider
  subsystem whose body is an empty ``listMethods``/``allowedMethods`` element; the answer's
  body is ``xrd:listMethodsResponse``/``xrd:allowedMethodsResponse`` holding one
  ``xrd:service`` identifier per service, never a metadata service itself
  (:func:`list_methods_response_body`, :func:`allowed_methods_response_body`).
* SOAP ``getWsdl``: the body ``<xrd:getWsdl><xrd:serviceCode/>[<xrd:serviceVersion/>]</xrd:getWsdl>``
  names a service; the answer is ``multipart/related``: first the SOAP response (the
  request's headers echoed, ``xrd:requestHash`` added, the body the request's turned into
  ``xrd:getWsdlResponse``), then the WSDL as a ``text/xml`` attachment with its endpoint
  addresses masked (:func:`render_get_wsdl_response`).  The framing follows X-Road's
  security server byte for byte where clients are known to depend on it: a boundary
  starting with ``xroad`` and part headers written ``content-type:text/xml``.
* The WSDL over HTTP GET (``GET /wsdl?xRoadInstance=..&memberClass=..&memberCode=..
  &subsystemCode=..&serviceCode=..&version=..`` on the client-side listener), which
  zeep-based client libraries build themselves from: :func:`wsdl_query_service` reads the
  query; the security server asks the provider with an ordinary ``getWsdl`` call
  (:func:`render_get_wsdl_request`) and answers the WSDL it finds in the answer
  (:func:`wsdl_of_get_wsdl_response`), ``text/xml``.

:func:`read_metadata_request` recognises the three SOAP calls by their service code and
reads a ``getWsdl`` body.  As in X-Road, a request the provider's security server cannot
take apart is its ``InvalidRequest`` (``Server.ServerProxy.InvalidRequest``) unless the
caller names another origin.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

from lxml import etree

from adapters.soap.envelope import NS_ID, NS_SOAP_ENV, NS_XROAD, XRoadHeader
from adapters.soap.headers import header_elements
from adapters.soap.inbound import SoapRequest
from adapters.soap.outbound import render_soap_response
from adapters.soap.response import SoapResponse
from adapters.soap.safexml import parse_xml
from adapters.soap.wsdl import mask_endpoints
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ClientId, IdentifierError, MemberId, ServiceId, SubsystemId, check_part
from core.metadata import ALLOWED_METHODS, GET_WSDL, LIST_METHODS, is_reserved_service_code

__all__ = [
    "XML_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "accepts_json",
    "list_clients_xml",
    "list_clients_json",
    "render_list_clients",
    "MethodListRequest",
    "WsdlRequest",
    "read_metadata_request",
    "list_methods_response_body",
    "allowed_methods_response_body",
    "get_wsdl_response_body",
    "pack_get_wsdl_response",
    "render_get_wsdl_response",
    "wsdl_query_service",
    "render_get_wsdl_request",
    "wsdl_of_get_wsdl_response",
]

#: Content-Type of the XML answers.
XML_CONTENT_TYPE = "text/xml; charset=UTF-8"
#: Content-Type of the JSON answers.
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"

_NSMAP = {"xrd": NS_XROAD, "id": NS_ID}
_OBJECT_TYPE = f"{{{NS_ID}}}objectType"
_SERVICE_CODE = f"{{{NS_XROAD}}}serviceCode"
_SERVICE_VERSION = f"{{{NS_XROAD}}}serviceVersion"
# Longest Accept header read; longer ones are cut, which at worst falls back to XML.
_MAX_ACCEPT = 4096
# Longest query string of the WSDL GET form read (six identifier parts and their names).
_MAX_WSDL_QUERY = 4096
# Its parameters, as X-Road names them; all but the version are required here, since
# xweg's services are provided by subsystems.
_WSDL_QUERY_REQUIRED = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode", "serviceCode")
_WSDL_QUERY_VERSION = "version"


def _xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot carry replaced by U+FFFD."""

    def allowed(ch: str) -> bool:
        code = ord(ch)
        return (
            code in (0x9, 0xA, 0xD)
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF
        )

    return "".join(ch if allowed(ch) else "\ufffd" for ch in text)


def _tostring(element: etree._Element, *, declaration: bool) -> bytes:
    data: bytes = etree.tostring(element, xml_declaration=declaration, encoding="UTF-8")
    return data


# --- listClients -------------------------------------------------------------------------------


def accepts_json(accept: str | None) -> bool:
    """True if an ``Accept`` header asks for ``application/json`` (with a quality above zero).

    X-Road answers ``listClients`` in JSON only when asked for exactly that type; wildcards
    such as ``*/*`` get the XML answer.
    """
    if not accept:
        return False
    for media_range in accept[:_MAX_ACCEPT].split(","):
        essence, *params = (part.strip() for part in media_range.split(";"))
        if essence.lower() != "application/json":
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def _append_client_id(parent: etree._Element, tag: str, client: ClientId) -> None:
    element = etree.SubElement(parent, tag, {_OBJECT_TYPE: client.object_type.value})
    etree.SubElement(element, f"{{{NS_ID}}}xRoadInstance").text = client.instance
    etree.SubElement(element, f"{{{NS_ID}}}memberClass").text = client.member_class
    etree.SubElement(element, f"{{{NS_ID}}}memberCode").text = client.member_code
    if isinstance(client, SubsystemId):
        etree.SubElement(element, f"{{{NS_ID}}}subsystemCode").text = client.subsystem_code


def _checked_clients(clients: Iterable[tuple[ClientId, str | None]]) -> Iterator[tuple[ClientId, str | None]]:
    for client, name in clients:
        if not isinstance(client, (MemberId, SubsystemId)):
            raise TypeError("a listed client is a member or a subsystem")
        if name is not None and not isinstance(name, str):
            raise TypeError("a client's name is a string")
        yield client, name


def list_clients_xml(clients: Iterable[tuple[ClientId, str | None]]) -> bytes:
    """The ``xrd:clientList`` document for ``(client, name)`` pairs, in the order given."""
    root = etree.Element(f"{{{NS_XROAD}}}clientList", nsmap=_NSMAP)
    for client, name in _checked_clients(clients):
        member = etree.SubElement(root, f"{{{NS_XROAD}}}member")
        _append_client_id(member, f"{{{NS_XROAD}}}id", client)
        if name is not None:
            etree.SubElement(member, f"{{{NS_XROAD}}}name").text = _xml_text(name)
    return _tostring(root, declaration=True)


def _client_json(client: ClientId) -> dict[str, str]:
    # Key order as X-Road writes it.
    data = {"member_class": client.member_class, "member_code": client.member_code}
    if isinstance(client, SubsystemId):
        data["subsystem_code"] = client.subsystem_code
    data["object_type"] = client.object_type.value
    data["xroad_instance"] = client.instance
    return data


def list_clients_json(clients: Iterable[tuple[ClientId, str | None]]) -> bytes:
    """X-Road's JSON ``listClients`` answer, ``{"member": [{"id": {...}, "name": ...}]}``, as UTF-8."""
    members: list[dict[str, object]] = []
    for client, name in _checked_clients(clients):
        entry: dict[str, object] = {"id": _client_json(client)}
        if name is not None:
            entry["name"] = name
        members.append(entry)
    return json.dumps({"member": members}, ensure_ascii=False).encode("utf-8")


def render_list_clients(
    clients: Iterable[tuple[ClientId, str | None]], accept: str | None
) -> tuple[str, bytes]:
    """The ``listClients`` answer for a client's ``Accept`` header: ``(content type, body)``."""
    if accepts_json(accept):
        return JSON_CONTENT_TYPE, list_clients_json(clients)
    return XML_CONTENT_TYPE, list_clients_xml(clients)


# --- reading SOAP metadata requests -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MethodListRequest:
    """A ``listMethods`` call, or with ``allowed`` an ``allowedMethods`` call."""

    allowed: bool = False


@dataclass(frozen=True, slots=True)
class WsdlRequest:
    """A ``getWsdl`` call: the service whose WSDL is wanted."""

    service_code: str
    service_version: str | None = None

    def __post_init__(self) -> None:
        check_part(self.service_code, "serviceCode")
        if self.service_version is not None:
            check_part(self.service_version, "serviceVersion")

    def service_id(self, provider: SubsystemId) -> ServiceId:
        """The wanted service, of the provider the call was addressed to."""
        return ServiceId(provider, self.service_code, self.service_version)


def _invalid_request(message: str, origin: Origin) -> XwegError:
    return XwegError(ErrorCode.INVALID_REQUEST, message, origin)


def _read_get_wsdl(body_xml: bytes, origin: Origin) -> WsdlRequest:
    wrapper = parse_xml(body_xml, origin=origin)
    values: dict[str, str] = {}
    for child in wrapper:
        if child.tag not in (_SERVICE_CODE, _SERVICE_VERSION):
            continue  # X-Road reads the two fields it knows and nothing else
        name = etree.QName(child).localname
        if name in values:
            raise _invalid_request(f"the getWsdl body repeats xrd:{name}", origin)
        if len(child):
            raise _invalid_request(f"xrd:{name} must hold text only", origin)
        values[name] = (child.text or "").strip()
    code = values.get("serviceCode", "")
    if not code:
        raise _invalid_request("Missing serviceCode in message body", origin)
    try:
        return WsdlRequest(code, values.get("serviceVersion") or None)
    except IdentifierError as exc:
        raise _invalid_request(f"the getWsdl body names no valid service: {exc}", origin) from None


def read_metadata_request(
    request: SoapRequest, *, origin: Origin = Origin.SERVER_PROXY
) -> MethodListRequest | WsdlRequest | None:
    """Recognise a SOAP metadata call by its service code; ``None`` for any other service.

    ``listMethods`` and ``allowedMethods`` bodies are not interpreted (X-Road does not
    either); a ``getWsdl`` body must name a service code in ``xrd:serviceCode`` and may name
    a version in ``xrd:serviceVersion``.  Raises ``InvalidRequest`` blamed on ``origin``
    when it does not.
    """
    code = request.header.service.service_code
    if code in (LIST_METHODS, ALLOWED_METHODS):
        return MethodListRequest(allowed=code == ALLOWED_METHODS)
    if code == GET_WSDL:
        return _read_get_wsdl(request.body_xml, origin)
    return None


# --- SOAP metadata answers ----------------------------------------------------------------------


def _method_list(tag: str, services: Iterable[ServiceId]) -> bytes:
    root = etree.Element(f"{{{NS_XROAD}}}{tag}", nsmap=_NSMAP)
    seen: set[ServiceId] = set()
    for service in services:
        if not isinstance(service, ServiceId):
            raise TypeError("a listed service is a ServiceId")
        # The protocol forbids listing the metadata services themselves.
        if is_reserved_service_code(service.service_code) or service in seen:
            continue
        seen.add(service)
        element = etree.SubElement(root, f"{{{NS_XROAD}}}service", {_OBJECT_TYPE: "SERVICE"})
        provider = service.provider
        etree.SubElement(element, f"{{{NS_ID}}}xRoadInstance").text = provider.instance
        etree.SubElement(element, f"{{{NS_ID}}}memberClass").text = provider.member_class
        etree.SubElement(element, f"{{{NS_ID}}}memberCode").text = provider.member_code
        etree.SubElement(element, f"{{{NS_ID}}}subsystemCode").text = provider.subsystem_code
        etree.SubElement(element, f"{{{NS_ID}}}serviceCode").text = service.service_code
        if service.service_version is not None:
            etree.SubElement(element, f"{{{NS_ID}}}serviceVersion").text = service.service_version
    return _tostring(root, declaration=False)


def list_methods_response_body(services: Iterable[ServiceId]) -> bytes:
    """The body element of a ``listMethods`` answer: ``xrd:listMethodsResponse``."""
    return _method_list("listMethodsResponse", services)


def allowed_methods_response_body(services: Iterable[ServiceId]) -> bytes:
    """The body element of an ``allowedMethods`` answer: ``xrd:allowedMethodsResponse``."""
    return _method_list("allowedMethodsResponse", services)


def get_wsdl_response_body(request: WsdlRequest) -> bytes:
    """The body element of a ``getWsdl`` answer: the request's fields under ``xrd:getWsdlResponse``."""
    root = etree.Element(f"{{{NS_XROAD}}}getWsdlResponse", nsmap={"xrd": NS_XROAD})
    etree.SubElement(root, _SERVICE_CODE).text = request.service_code
    if request.service_version is not None:
        etree.SubElement(root, _SERVICE_VERSION).text = request.service_version
    return _tostring(root, declaration=False)


def pack_get_wsdl_response(envelope: bytes, wsdl: bytes, *, boundary: str | None = None) -> tuple[str, bytes]:
    """Pack a ``getWsdl`` answer as X-Road does: ``(content type, multipart/related body)``.

    The SOAP envelope is the first part, the WSDL the second (``text/xml``, sent
    ``binary``); neither is changed.  The boundary is ``xroad`` and random characters unless
    given; a given boundary must not occur in either part (``ValueError``).
    """
    if boundary is None:
        boundary = "xroad" + secrets.token_hex(15)
    if not boundary.isascii() or not boundary.isalnum() or len(boundary) > 70:
        raise ValueError("the boundary must be 1 to 70 ASCII letters and digits")
    delimiter = b"--" + boundary.encode("ascii")
    for part in (envelope, wsdl):
        if delimiter in part:
            raise ValueError("the boundary occurs in a part")
    content_id = f"<wsdl={uuid.uuid4()}@xweg>"
    # Lower-case names without a space after the colon: clients exist that cut the
    # WSDL out of X-Road's answer by matching these very bytes.
    body = b"".join(
        [
            delimiter,
            b"\r\ncontent-type:text/xml; charset=UTF-8\r\n\r\n",
            envelope,
            b"\r\n",
            delimiter,
            b"\r\ncontent-type:text/xml\r\ncontent-transfer-encoding:binary\r\n",
            f"content-id:{content_id}\r\n\r\n".encode("ascii"),
            wsdl,
            b"\r\n",
            delimiter,
            b"--\r\n",
        ]
    )
    content_type = f'multipart/related; type="text/xml"; charset=UTF-8; boundary={boundary}'
    return content_type, body


def render_get_wsdl_response(
    request: SoapRequest,
    wsdl: bytes,
    *,
    boundary: str | None = None,
    origin: Origin = Origin.SERVER_PROXY,
) -> tuple[str, bytes]:
    """The complete ``getWsdl`` answer to ``request``: ``(content type, body)``.

    The SOAP part echoes the request's headers and adds ``xrd:requestHash``
    (:func:`adapters.soap.outbound.render_soap_response`); the attachment is ``wsdl`` with
    its endpoint addresses masked (:func:`adapters.soap.wsdl.mask_endpoints`).  Which WSDL
    describes the requested service is the caller's to decide.  Raises :class:`XwegError`
    blamed on ``origin``: ``InvalidRequest`` if ``request`` is not a valid ``getWsdl`` call,
    ``RequestTooLarge`` or ``InvalidXml`` for a WSDL that cannot be read.
    """
    call = read_metadata_request(request, origin=origin)
    if not isinstance(call, WsdlRequest):
        raise _invalid_request(
            f"the request is a call to {request.header.service.service_code!r}, not to getWsdl", origin
        )
    envelope = render_soap_response(request, get_wsdl_response_body(call), origin=origin)
    return pack_get_wsdl_response(envelope, mask_endpoints(wsdl, origin=origin), boundary=boundary)


def wsdl_query_service(query: str, *, origin: Origin = Origin.CLIENT) -> ServiceId:
    """The service a WSDL GET request names in its query string (see the module docstring).

    Each parameter is percent-decoded on its own; ``version`` is optional.  Raises
    :class:`XwegError` blamed on ``origin``: ``InvalidRequest`` for a query that is too long,
    lacks a parameter or repeats one, ``InvalidServiceIdentifier`` for a part that is no
    valid identifier part.
    """
    if len(query) > _MAX_WSDL_QUERY:
        raise _invalid_request(f"the query is longer than {_MAX_WSDL_QUERY} characters", origin)
    known = (*_WSDL_QUERY_REQUIRED, _WSDL_QUERY_VERSION)
    values: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in known:
            continue
        if name in values:
            raise _invalid_request(f"the query repeats {name}", origin)
        values[name] = value
    missing = [name for name in _WSDL_QUERY_REQUIRED if not values.get(name)]
    if missing:
        raise _invalid_request(f"the query must name {', '.join(missing)}", origin)
    try:
        provider = SubsystemId(
            values["xRoadInstance"], values["memberClass"], values["memberCode"], values["subsystemCode"]
        )
        return ServiceId(provider, values["serviceCode"], values.get(_WSDL_QUERY_VERSION) or None)
    except IdentifierError as exc:
        raise XwegError(
            ErrorCode.INVALID_SERVICE_IDENTIFIER, f"the query names no valid service: {exc}", origin
        ) from None


def render_get_wsdl_request(header: XRoadHeader, call: WsdlRequest) -> bytes:
    """A ``getWsdl`` request envelope: ``header``'s X-Road headers, and ``call`` as its body.

    ``header`` names the provider's ``getWsdl`` service; raises ``ValueError`` if it names
    another service code.
    """
    if header.service.service_code != GET_WSDL:
        raise ValueError(f"a getWsdl request is addressed to {GET_WSDL}, not {header.service.service_code}")
    envelope = etree.Element(
        f"{{{NS_SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": NS_SOAP_ENV, "xrd": NS_XROAD, "id": NS_ID}
    )
    soap_header = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Header")
    for element in header_elements(header):
        soap_header.append(element)
    body = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Body")
    wrapper = etree.SubElement(body, f"{{{NS_XROAD}}}{GET_WSDL}")
    etree.SubElement(wrapper, _SERVICE_CODE).text = call.service_code
    if call.service_version is not None:
        etree.SubElement(wrapper, _SERVICE_VERSION).text = call.service_version
    return _tostring(envelope, declaration=True)


def wsdl_of_get_wsdl_response(response: SoapResponse, *, origin: Origin = Origin.CLIENT_PROXY) -> bytes:
    """The WSDL in a ``getWsdl`` answer: its one ``text/xml`` attachment, byte for byte.

    ``response`` was read as the answer to a ``getWsdl`` request (its body is a
    ``getWsdlResponse``, :func:`adapters.soap.response.parse_soap_response` sees to that).
    Raises :class:`XwegError`: ``Server.ServerProxy.ServiceFailed`` for a SOAP Fault (its
    code and string quoted), and blamed on ``origin`` (the reader of the answer)
    ``InconsistentResponse`` for an answer without exactly one XML attachment.
    """
    if response.fault is not None:
        fault = response.fault
        raise XwegError(
            ErrorCode.SERVICE_FAILED,
            f"getWsdl was answered with the fault {fault.code[:100]!r}: {fault.string[:300]}",
            Origin.SERVER_PROXY,
        )
    parts = response.attachments
    essence = (parts[0].content_type or "").split(";", 1)[0].strip().lower() if len(parts) == 1 else ""
    if essence != "text/xml":
        raise XwegError(
            ErrorCode.INCONSISTENT_RESPONSE,
            f"the answer to getWsdl carries {len(parts)} attachment(s), not the one text/xml WSDL",
            origin,
        )
    return parts[0].data
