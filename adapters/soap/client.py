"""A zeep-based X-Road SOAP client for Python information systems.

An information system calls X-Road SOAP services through its security server's client
listener; every request carries the X-Road headers (``xrd:client``, ``xrd:service`` with
the operation's version, a fresh ``xrd:id``, ``xrd:userId``, ``xrd:issue``,
``xrd:protocolVersion`` 4.0, optionally ``repr:representedParty``).  :class:`XRoadClient`
builds a zeep client from the service's WSDL whose calls carry them automatically, the way
X-Road users commonly wrap zeep: a zeep plugin (:class:`XRoadHeaderPlugin`) adds the
headers to each outgoing envelope, and the service proxy is bound to the security server
instead of the WSDL's endpoint (which a security server masks as
``http://example.org/xroad-endpoint``).

Example, Stadt Delbrück's residents' register asking Stadt Bielefeld's::

    from adapters.soap.client import XRoadClient
    from core.identifiers import SubsystemId

    delbrueck = SubsystemId("NRW", "MUN", "05774020", "meldewesen")
    bielefeld = SubsystemId("NRW", "MUN", "05711000", "meldewesen")
    security_server = "http://127.0.0.1:8080/"
    wsdl = (
        security_server + "wsdl?xRoadInstance=NRW&memberClass=MUN&memberCode=05711000"
        "&subsystemCode=meldewesen&serviceCode=meldeauskunft&version=v1"
    )
    xroad = XRoadClient(wsdl, security_server, client=delbrueck, service=bielefeld, user_id="DE0000000001")
    answer = xroad.service.meldeauskunft(familienname="Muster", vornamen="Erika")
    print(answer.body.ergebnis, answer.body.person.geburtsort)  # treffer Paderborn
    print(answer.header.id)  # the message id, echoed by the provider

``service`` is either the provider subsystem (any of the WSDL's operations may be called;
the service code is the operation's name and the version its ``xrd:version`` in the WSDL
binding) or one :class:`~core.identifiers.ServiceId` (only that operation may be called).
Per call, zeep's ``_soapheaders`` may set header fields itself (``_soapheaders={"issue":
"AZ-17"}`` where the WSDL declares the headers, or lxml elements); the plugin adds only the
fields the envelope does not carry yet.  A SOAP Fault raises :class:`zeep.exceptions.Fault`
whose ``code`` is X-Road's fault code (``Server.ServerProxy.AccessDenied``; newer X-Road
releases write ``server.serverproxy.access_denied``).

Offline by construction: :class:`XRoadTransport` loads the WSDL from the one URL it was
given, serves X-Road's schemas (``http://x-road.eu/xsd/xroad.xsd`` and what it imports)
from the copies bundled in :mod:`adapters.soap.xsd`, posts only to the security server's
URL, and refuses every other location -- other schema imports, ``file:`` URLs, local
paths -- so that a WSDL cannot make the client fetch anything.  The WSDL is parsed by the
hardened parser (:mod:`adapters.soap.safexml`) before zeep reads it, and every HTTP answer
is read with a size cap.  TLS towards the security server (client certificates, trusted
CAs) is configured on the ``requests.Session`` passed in.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import requests
import zeep
from lxml import etree
from zeep.transports import Transport
from zeep.wsdl import Document

from adapters.soap.envelope import NS_XROAD, RepresentedParty, XRoadHeader
from adapters.soap.headers import header_elements
from adapters.soap.safexml import XmlLimits, parse_xml
from adapters.soap.xsd import SCHEMA_NAMES, bundled_name, schema_bytes
from core.errors import XwegError
from core.identifiers import ClientId, IdentifierError, ServiceId, SubsystemId

__all__ = [
    "XRoadClient",
    "XRoadHeaderPlugin",
    "XRoadTransport",
    "XRoadClientError",
    "header_elements",
    "operation_versions",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_MAX_RESPONSE_BYTES",
]

#: Seconds to wait for the security server (connect and each read).
DEFAULT_TIMEOUT_S = 30.0
#: Largest WSDL or answer read, in bytes (X-Road logs bodies up to 10 MiB).
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024

_NS_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_CHUNK_BYTES = 64 * 1024


class XRoadClientError(Exception):
    """The client refused to act: a location it may not fetch, an answer too large, an
    unusable WSDL, an operation outside the bound service, or the network failed."""


@contextmanager
def _network_errors(url: str) -> Iterator[None]:
    """``requests`` errors become :class:`XRoadClientError`, naming the URL."""
    try:
        yield
    except requests.RequestException as exc:
        raise XRoadClientError(f"{url[:200]}: {type(exc).__name__}: {exc}") from exc


class XRoadTransport(Transport):
    """A zeep transport that fetches only the WSDL's URL and posts only to the endpoint.

    ``schemas`` names the bundled schema a location stands for, or ``None`` (default:
    :func:`adapters.soap.xsd.bundled_name`); those are served from the bundle and never
    fetched.  ``session`` is the ``requests.Session`` to use (TLS settings, proxies);
    it is not closed by this transport.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        wsdl_url: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        schemas: Callable[[str], str | None] = bundled_name,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]  # zeep leaves it unannotated
            timeout=timeout_s, operation_timeout=timeout_s, session=session
        )
        self.endpoint = endpoint
        self.wsdl_url = wsdl_url
        self.max_response_bytes = max_response_bytes
        self._schema_name = schemas

    def _bundled(self, url: str) -> str | None:
        name = self._schema_name(url)
        if name is not None:
            return name
        # A security server serves the same schemas at its /xsd/, and its GET /wsdl points
        # the imports there; they are served from the bundle all the same.
        prefix = self.endpoint.rstrip("/") + "/xsd/"
        if url.startswith(prefix) and url[len(prefix) :] in SCHEMA_NAMES:
            return url[len(prefix) :]
        return None

    def load(self, url: str) -> bytes:
        """A bundled schema, or the WSDL from its URL; any other location is refused."""
        name = self._bundled(url)
        if name is not None:
            return schema_bytes(name)
        if self.wsdl_url is not None and url == self.wsdl_url:
            with _network_errors(url):
                response = self.session.get(url, timeout=self.load_timeout, stream=True)
                self._read_capped(response, url)
                response.raise_for_status()
            data: bytes = response.content
            return data
        raise XRoadClientError(
            f"refusing to fetch {url[:200]!r}: only the WSDL's own URL and X-Road's bundled "
            "schemas are loaded"
        )

    def post(self, address: str, message: bytes | str, headers: dict[str, str]) -> requests.Response:
        """POST one SOAP request to the security server; any other address is refused."""
        if address != self.endpoint:
            raise XRoadClientError(
                f"refusing to post to {address[:200]!r}: requests go to the security server "
                f"at {self.endpoint[:200]!r} only"
            )
        with _network_errors(address):
            response = self.session.post(
                address, data=message, headers=headers, timeout=self.operation_timeout, stream=True
            )
            self._read_capped(response, address)
        return response

    def get(self, address: str, params: Any, headers: dict[str, str]) -> requests.Response:
        """Refused: X-Road SOAP services are called with POST only."""
        raise XRoadClientError(f"refusing GET {address[:200]!r}: X-Road SOAP services take POST only")

    def _read_capped(self, response: requests.Response, url: str) -> None:
        """Read the body with the size cap; ``response.content`` then holds it."""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(_CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_response_bytes:
                response.close()
                raise XRoadClientError(
                    f"{url[:200]}: the answer is larger than {self.max_response_bytes} bytes"
                )
            chunks.append(chunk)
        # requests keeps a read body here and serves response.content from it.
        response._content = b"".join(chunks)


# --- the X-Road headers ----------------------------------------------------------------------------


def _x(name: str) -> str:
    return f"{{{NS_XROAD}}}{name}"


def _new_message_id() -> str:
    return str(uuid.uuid4())


class XRoadHeaderPlugin(zeep.Plugin):
    """Adds the X-Road headers to every outgoing envelope.

    The service called is ``service`` itself if it is a :class:`ServiceId`, else the
    operation of that name on the provider subsystem ``service``, in the version
    ``versions`` names for it.  ``new_message_id`` gives each call its ``xrd:id``.
    """

    def __init__(
        self,
        *,
        client: ClientId,
        service: SubsystemId | ServiceId,
        versions: Mapping[str, str] | None = None,
        user_id: str | None = None,
        issue: str | None = None,
        represented_party: RepresentedParty | None = None,
        new_message_id: Callable[[], str] = _new_message_id,
    ) -> None:
        if not isinstance(service, (SubsystemId, ServiceId)):
            raise TypeError("service must be a SubsystemId or a ServiceId")
        self.client = client
        self.service = service
        self.versions = dict(versions or {})
        self.user_id = user_id
        self.issue = issue
        self.represented_party = represented_party
        self.new_message_id = new_message_id
        # XRoadHeader holds the rules for these fields: apply them now, not on the first call.
        self._header(service if isinstance(service, ServiceId) else service.service("any"), "any")

    def service_for(self, operation: str) -> ServiceId:
        """The X-Road service that calling ``operation`` invokes."""
        if isinstance(self.service, ServiceId):
            if operation != self.service.service_code:
                raise XRoadClientError(
                    f"this client is bound to {self.service}; {operation!r} is another service"
                )
            return self.service
        try:
            return ServiceId(self.service, operation, self.versions.get(operation))
        except IdentifierError as exc:
            raise XRoadClientError(f"operation {operation[:100]!r} is no X-Road service code: {exc}") from exc

    def header_for(self, operation: str) -> XRoadHeader:
        """The X-Road header of a call of ``operation``, with a fresh message id."""
        return self._header(self.service_for(operation), self.new_message_id())

    def _header(self, service: ServiceId, message_id: str) -> XRoadHeader:
        try:
            return XRoadHeader(
                client=self.client,
                service=service,
                message_id=message_id,
                user_id=self.user_id,
                issue=self.issue,
                represented_party=self.represented_party,
            )
        except ValueError as exc:
            raise XRoadClientError(f"invalid X-Road header: {exc}") from exc

    def egress(
        self, envelope: etree._Element, http_headers: dict[str, str], operation: Any, binding_options: Any
    ) -> tuple[etree._Element, dict[str, str]]:
        soap_env = etree.QName(envelope).namespace
        header = envelope.find(f"{{{soap_env}}}Header")
        if header is None:
            header = etree.Element(f"{{{soap_env}}}Header")
            envelope.insert(0, header)
        present = {child.tag for child in header if isinstance(child.tag, str)}
        for element in header_elements(self.header_for(operation.name)):
            if element.tag not in present:
                header.append(element)
        return envelope, http_headers


# --- reading the WSDL ------------------------------------------------------------------------------


def _qname(element: etree._Element, value: str | None) -> etree.QName:
    """Resolve a ``prefix:name`` attribute value against ``element``'s namespaces."""
    if not value:
        raise XRoadClientError(f"the WSDL's {etree.QName(element).localname} has no binding")
    prefix, _, local = value.rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    if namespace is None and prefix:
        raise XRoadClientError(f"the WSDL uses the undeclared prefix {prefix[:50]!r}")
    return etree.QName(namespace, local)


def operation_versions(wsdl: etree._Element, binding: etree.QName) -> dict[str, str]:
    """``xrd:version`` of each operation of ``binding``, for those that declare one."""
    target = wsdl.get("targetNamespace")
    versions: dict[str, str] = {}
    for element in wsdl.iterfind(f"{{{_NS_WSDL}}}binding"):
        if etree.QName(target, element.get("name") or "") != binding:
            continue
        for operation in element.iterfind(f"{{{_NS_WSDL}}}operation"):
            version = operation.findtext(_x("version"))
            name = operation.get("name")
            if name and version and version.strip():
                versions[name] = version.strip()
    return versions


def _choose_binding(wsdl: etree._Element, wanted: str | None) -> etree.QName:
    """The binding to call: ``wanted`` (``{namespace}name``), else the only one the ports use."""
    if wanted is not None:
        return etree.QName(wanted)
    ports = wsdl.iterfind(f"{{{_NS_WSDL}}}service/{{{_NS_WSDL}}}port")
    found = {_qname(port, port.get("binding")) for port in ports}
    if not found:
        target = wsdl.get("targetNamespace")
        found = {etree.QName(target, b.get("name") or "") for b in wsdl.iterfind(f"{{{_NS_WSDL}}}binding")}
    if len(found) != 1:
        names = ", ".join(sorted(q.text for q in found)) or "none"
        raise XRoadClientError(f"the WSDL has {len(found)} bindings ({names[:300]}); name one with binding=")
    return found.pop()


class XRoadClient:
    """A zeep client for one X-Road provider's SOAP services, called through a security server.

    ``wsdl`` is the WSDL's URL (e.g. the security server's ``/wsdl?...`` form; only that
    URL is fetched) or the WSDL itself as bytes.  ``security_server_url`` is the client
    listener that every call is posted to.  ``client`` is the calling member or subsystem;
    ``service`` the provider subsystem or one service (see the module docstring).
    ``binding`` (``{namespace}name``) picks a binding when the WSDL has several.

    :attr:`service` is the zeep service proxy: ``xroad.service.<operation>(...)``.
    """

    def __init__(
        self,
        wsdl: str | bytes,
        security_server_url: str,
        *,
        client: ClientId,
        service: SubsystemId | ServiceId,
        user_id: str | None = None,
        issue: str | None = None,
        represented_party: RepresentedParty | None = None,
        binding: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        plugins: Sequence[zeep.Plugin] = (),
    ) -> None:
        wsdl_url = wsdl if isinstance(wsdl, str) else None
        self.transport = XRoadTransport(
            endpoint=security_server_url,
            wsdl_url=wsdl_url,
            session=session,
            timeout_s=timeout_s,
            max_response_bytes=max_response_bytes,
        )
        data = self.transport.load(wsdl) if isinstance(wsdl, str) else bytes(wsdl)
        try:
            root = parse_xml(data, limits=XmlLimits(max_bytes=max_response_bytes))
        except XwegError as exc:
            raise XRoadClientError(f"the WSDL is refused: {exc.message}") from exc
        binding_name = _choose_binding(root, binding)
        self.versions = operation_versions(root, binding_name)
        self.headers = XRoadHeaderPlugin(
            client=client,
            service=service,
            versions=self.versions,
            user_id=user_id,
            issue=issue,
            represented_party=represented_party,
        )
        settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, xml_huge_tree=False)
        # zeep annotates ``transport`` as a class, but takes an instance.
        document = Document(
            io.BytesIO(data),
            self.transport,  # type: ignore[arg-type]
            base=wsdl_url,
            settings=settings,
        )
        self.zeep = zeep.Client(  # type: ignore[no-untyped-call]  # zeep leaves it unannotated
            document, transport=self.transport, plugins=[self.headers, *plugins], settings=settings
        )
        try:
            self.service = self.zeep.create_service(  # type: ignore[no-untyped-call]
                binding_name.text, security_server_url
            )
        except ValueError as exc:
            raise XRoadClientError(str(exc)) from exc
