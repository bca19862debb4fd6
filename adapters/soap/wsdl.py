"""Service descriptions: read a provider's WSDL safely, and hide its endpoint addresses.

A provider subsystem's SOAP services are the operations of its WSDL, as X-Road reads them
(message protocol 4.0, "Describing services"): the service code is the name of a
``wsdl:binding/wsdl:operation``, its version the text of an ``xrd:version`` element inside
that operation, its title ``portType/operation/documentation/xrd:title``.
:func:`read_wsdl` reads a WSDL in this order, and refuses it at the first step it fails:

1. the bytes are bounded, DOCTYPE-free, UTF-8 XML (:mod:`adapters.soap.safexml`:
   ``RequestTooLarge`` or ``InvalidXml``);
2. the root element is a WSDL 1.1 ``definitions`` (``InvalidWsdl``);
3. every ``wsdl:import``, ``xsd:import``, ``xsd:include``, ``xsd:redefine`` and
   ``xsd:override`` with a location names one of X-Road's bundled schemas
   (:mod:`adapters.soap.xsd`); a description must otherwise be self-contained
   (``InvalidWsdl``);
4. zeep reads it through :class:`~adapters.soap.offline.OfflineTransport`, which serves the
   bundled schemas and fetches nothing else, over no network and from no file (``InvalidWsdl``);
5. it describes at least one SOAP operation, and every operation's name and version is a
   valid identifier part and no reserved metadata service code (``InvalidWsdl``).

:func:`mask_endpoints` replaces the endpoint addresses of a WSDL with X-Road's masked
address ``http://example.org/xroad-endpoint``, as X-Road's ``getWsdl`` does, so that
internal backend addresses never reach a client: the ``location`` of every
``soap:address``, ``soap12:address`` and WSDL ``http:address``, and the text of a
WS-Addressing ``Address`` inside a ``wsdl:port``.  Clients build themselves from the
result, so everything else stays byte for byte as the provider wrote it.

Fetching a WSDL from a backend, and deciding which WSDL describes which provider's
services, are left to the gateway; every refusal is blamed on the ``origin`` the caller
names (by default the provider's security server, which reads its backends' WSDLs).

zeep (and ``requests``, which it brings) is imported only when a WSDL is read: a security
server that only masks endpoints, or reads no WSDL at all, does not hold them in memory.
``OfflineTransport`` is still importable from here; it lives in :mod:`adapters.soap.offline`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lxml import etree

from adapters.soap.envelope import NS_ID, NS_XROAD
from adapters.soap.safexml import XmlLimits, parse_xml
from adapters.soap.xsd import bundled_name
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import IdentifierError, ServiceId, SubsystemId, check_part
from core.metadata import is_reserved_service_code

if TYPE_CHECKING:
    from zeep.wsdl import Document

    from adapters.soap.offline import OfflineTransport

__all__ = [
    "MASKED_ENDPOINT",
    "MAX_WSDL_BYTES",
    "WSDL_LIMITS",
    "WsdlOperation",
    "WsdlDescription",
    "OfflineTransport",
    "OfflineTransportError",
    "read_wsdl",
    "mask_endpoints",
]

#: The address X-Road's security server writes over every endpoint address of a WSDL.
MASKED_ENDPOINT = "http://example.org/xroad-endpoint"
#: Largest WSDL read, in bytes; X-Road services' WSDLs rarely exceed a few hundred KiB.
MAX_WSDL_BYTES = 4 * 1024 * 1024
#: Bounds on one WSDL document (depth and element count as for any XML xweg reads).
WSDL_LIMITS = XmlLimits(max_bytes=MAX_WSDL_BYTES)

NS_WSDL = "http://schemas.xmlsoap.org/wsdl/"
NS_XSD = "http://www.w3.org/2001/XMLSchema"
_NS_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
_NS_WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
_NS_WSDL_HTTP = "http://schemas.xmlsoap.org/wsdl/http/"
_NS_WSA = ("http://www.w3.org/2005/08/addressing", "http://schemas.xmlsoap.org/ws/2004/08/addressing")
_NS_XML = "http://www.w3.org/XML/1998/namespace"

_DEFINITIONS = f"{{{NS_WSDL}}}definitions"
_PORT = f"{{{NS_WSDL}}}port"
# Elements that pull in other documents, and the attribute that says from where.
_IMPORTS = {
    f"{{{NS_WSDL}}}import": "location",
    f"{{{NS_XSD}}}import": "schemaLocation",
    f"{{{NS_XSD}}}include": "schemaLocation",
    f"{{{NS_XSD}}}redefine": "schemaLocation",
    f"{{{NS_XSD}}}override": "schemaLocation",
}
# Endpoint addresses: the element, and its attribute holding the address.
_ADDRESSES = frozenset(f"{{{ns}}}address" for ns in (_NS_WSDL_SOAP, _NS_WSDL_SOAP12, _NS_WSDL_HTTP))
_WSA_ADDRESSES = frozenset(f"{{{ns}}}Address" for ns in _NS_WSA)
# The message protocol writes the version as xrd:version; the metadata protocol's own
# example WSDL writes id:version.  Both are read.
_VERSIONS = frozenset({f"{{{NS_XROAD}}}version", f"{{{NS_ID}}}version"})
_TITLE = f"{{{NS_XROAD}}}title"


class OfflineTransportError(Exception):
    """Something asked :class:`OfflineTransport` for a document it does not hold, or to send."""


def __getattr__(name: str) -> Any:
    # OfflineTransport subclasses zeep's Transport; importing it on first use keeps zeep out
    # of every process that never asks for it.
    if name == "OfflineTransport":
        from adapters.soap.offline import OfflineTransport

        return OfflineTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class WsdlOperation:
    """One SOAP operation of a WSDL: an X-Road service code and version.

    ``input_headers`` are the qualified names (``{namespace}local``) of the SOAP headers
    the binding declares for the request, in binding order.
    """

    service_code: str
    version: str | None = None
    title: str | None = None
    input_headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_part(self.service_code, "serviceCode")
        if self.version is not None:
            check_part(self.version, "serviceVersion")

    def service_id(self, provider: SubsystemId) -> ServiceId:
        """This operation as a service of ``provider``."""
        return ServiceId(provider, self.service_code, self.version)


@dataclass(frozen=True, slots=True)
class WsdlDescription:
    """What a WSDL describes: its target namespace and its SOAP operations, in WSDL order."""

    target_namespace: str | None
    operations: tuple[WsdlOperation, ...]

    def __post_init__(self) -> None:
        if not self.operations:
            raise ValueError("a service description has at least one operation")

    def find(self, service_code: str, version: str | None = None) -> WsdlOperation | None:
        """The operation for ``service_code`` (and ``version``, if given), or ``None``."""
        for operation in self.operations:
            if operation.service_code == service_code and (version is None or operation.version == version):
                return operation
        return None

    def service_ids(self, provider: SubsystemId) -> tuple[ServiceId, ...]:
        """Every operation as a service of ``provider``."""
        return tuple(operation.service_id(provider) for operation in self.operations)


def _invalid(message: str, origin: Origin) -> XwegError:
    return XwegError(ErrorCode.INVALID_WSDL, message, origin)


def _short(value: object) -> str:
    return repr(str(value)[:200])


def _check_locations(root: etree._Element, origin: Origin) -> None:
    for element in root.iter(*_IMPORTS):
        location = element.get(_IMPORTS[element.tag])
        if location is None:
            continue
        if element.tag == f"{{{NS_WSDL}}}import" or bundled_name(location) is None:
            raise _invalid(
                f"the WSDL imports {_short(location)}; a service description must be self-contained "
                "apart from X-Road's own schemas",
                origin,
            )


def _zeep_document(data: bytes, origin: Origin) -> Document:
    from zeep.settings import Settings
    from zeep.wsdl import Document

    from adapters.soap.offline import OfflineTransport

    # DTDs are refused before zeep sees the bytes; zeep is told so as well, and imports are
    # answered by the transport alone (zeep's own external-reference switch would also
    # refuse the bundled X-Road schemas, which are named by http URLs).
    settings = Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=False)
    try:
        # zeep annotates the transport as a class, but takes an instance.
        return Document(io.BytesIO(data), OfflineTransport(), settings=settings)  # type: ignore[arg-type]
    except OfflineTransportError as exc:
        raise _invalid(f"the WSDL needs a document that is not available: {exc}", origin) from None
    except RecursionError:
        raise _invalid("the WSDL's definitions nest or refer to each other too deeply", origin) from None
    except Exception as exc:  # zeep raises many types on broken input; all mean the same here
        raise _invalid(f"zeep cannot read the WSDL: {type(exc).__name__}: {str(exc)[:200]}", origin) from None


def _clark(name: Any) -> str:
    return name.text if isinstance(name, etree.QName) else str(name)


def _versions(root: etree._Element, origin: Origin) -> dict[tuple[str, str], str | None]:
    """``(binding qname, operation name) -> version`` for every binding operation."""
    namespace = root.get("targetNamespace")
    found: dict[tuple[str, str], str | None] = {}
    for binding in root.iterchildren(f"{{{NS_WSDL}}}binding"):
        qname = etree.QName(namespace, binding.get("name", "")).text
        for operation in binding.iterchildren(f"{{{NS_WSDL}}}operation"):
            versions = [child for child in operation if child.tag in _VERSIONS]
            if len(versions) > 1:
                raise _invalid(
                    f"the operation {_short(operation.get('name'))} has more than one version", origin
                )
            version = (versions[0].text or "").strip() if versions else ""
            found[(qname, operation.get("name", ""))] = version or None
    return found


def _titles(root: etree._Element) -> dict[tuple[str, str], str]:
    """``(portType qname, operation name) -> title`` where the portType gives one."""
    namespace = root.get("targetNamespace")
    found: dict[tuple[str, str], str] = {}
    for port_type in root.iterchildren(f"{{{NS_WSDL}}}portType"):
        qname = etree.QName(namespace, port_type.get("name", "")).text
        for operation in port_type.iterchildren(f"{{{NS_WSDL}}}operation"):
            for documentation in operation.iterchildren(f"{{{NS_WSDL}}}documentation"):
                title = documentation.find(_TITLE)
                if title is not None and (title.text or "").strip():
                    found[(qname, operation.get("name", ""))] = (title.text or "").strip()
                    break
    return found


def _headers(operation: Any) -> tuple[str, ...]:
    header = getattr(getattr(operation, "input", None), "header", None)
    if header is None:
        return ()
    return tuple(_clark(element.qname) for _, element in header.type.elements)


def _operations(document: Document, root: etree._Element, origin: Origin) -> Iterator[WsdlOperation]:
    from zeep.wsdl.bindings.soap import SoapBinding

    versions = _versions(root, origin)
    titles = _titles(root)
    for binding_name, binding in document.bindings.items():
        if not isinstance(binding, SoapBinding):
            continue  # HTTP GET/POST bindings describe no X-Road service
        port_type = _clark(binding.port_type.name) if binding.port_type is not None else ""
        for name, operation in binding.all().items():  # type: ignore[no-untyped-call]
            if is_reserved_service_code(name):
                raise _invalid(
                    f"the operation {_short(name)} has the code of a metadata service; "
                    "the security server answers it itself",
                    origin,
                )
            version = versions.get((_clark(binding_name), name))
            try:
                yield WsdlOperation(name, version, titles.get((port_type, name)), _headers(operation))
            except IdentifierError as exc:
                raise _invalid(
                    f"the operation {_short(name)} cannot be an X-Road service: {exc}", origin
                ) from None


def read_wsdl(
    data: bytes, *, limits: XmlLimits = WSDL_LIMITS, origin: Origin = Origin.SERVER_PROXY
) -> WsdlDescription:
    """Read a WSDL and list its SOAP operations as X-Road services (see the module docstring).

    Raises :class:`XwegError` blamed on ``origin``: ``RequestTooLarge`` or ``InvalidXml``
    for the XML, ``InvalidWsdl`` for anything about the description.  The same code and
    version from several bindings (SOAP 1.1 and 1.2, say) is listed once.
    """
    # 1. bounded, DOCTYPE-free UTF-8 XML
    root = parse_xml(data, limits=limits, origin=origin)
    # 2. a WSDL 1.1 document
    if root.tag != _DEFINITIONS:
        raise _invalid(f"the root element {_short(root.tag)} is not a WSDL 1.1 definitions", origin)
    # 3. nothing imported but X-Road's own schemas
    _check_locations(root, origin)
    # 4. zeep reads it, offline
    document = _zeep_document(data, origin)
    # 5. at least one SOAP operation, each a valid X-Road service
    operations: list[WsdlOperation] = []
    seen: set[tuple[str, str | None]] = set()
    for operation in _operations(document, root, origin):
        key = (operation.service_code, operation.version)
        if key not in seen:
            seen.add(key)
            operations.append(operation)
    if not operations:
        raise _invalid("the WSDL describes no SOAP operation", origin)
    return WsdlDescription(root.get("targetNamespace"), tuple(operations))


# --- masking endpoint addresses -----------------------------------------------------------

# The markup of a document safexml has already accepted (no DOCTYPE): comments, CDATA
# sections, processing instructions (and the XML declaration), end tags and start tags.
_MARKUP = re.compile(
    rb"<!--.*?-->"
    rb"|<!\[CDATA\[.*?\]\]>"
    rb"|<\?.*?\?>"
    rb"|</[^>]*>"
    rb"|<(?P<name>[^\s/>]+)(?P<attrs>(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(?P<empty>/?)>",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(rb"([^\s=/>]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_REFERENCE = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);")
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


class _Unmatched(Exception):
    """The byte-level rewriter met markup it does not read; the tree-level one takes over."""


def _attribute_value(raw: bytes) -> str:
    def replace(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref.startswith("#x"):
            return chr(int(ref[2:], 16))
        if ref.startswith("#"):
            return chr(int(ref[1:]))
        return _PREDEFINED[ref]

    # Attribute-value normalisation (XML 1.0 section 3.3.3) turns literal white space into spaces.
    text = raw.decode("utf-8").replace("\t", " ").replace("\n", " ").replace("\r", " ")
    return _REFERENCE.sub(replace, text)


def _rewrite(data: bytes) -> bytes:
    """``data`` with every endpoint address replaced, found by reading the markup byte for byte."""
    masked = MASKED_ENDPOINT.encode("ascii")
    edits: list[tuple[int, int]] = []  # spans of address values to replace
    scopes: list[dict[str, str]] = [{"xml": _NS_XML}]
    open_elements: list[str] = []
    pos = data.find(b"<")
    while pos != -1:
        match = _MARKUP.match(data, pos)
        if match is None:
            raise _Unmatched(f"markup at byte {pos}")
        end = match.end()
        token = match.group(0)
        if token.startswith(b"</"):
            if not open_elements:
                raise _Unmatched(f"end tag at byte {pos}")
            open_elements.pop()
            scopes.pop()
        elif match.group("name") is not None:
            attrs_start = match.start("attrs")
            attributes = list(_ATTRIBUTE.finditer(match.group("attrs")))
            scope = scopes[-1]
            declared = {
                a.group(1).decode("utf-8"): _attribute_value(
                    a.group(2) if a.group(2) is not None else a.group(3)
                )
                for a in attributes
                if a.group(1) == b"xmlns" or a.group(1).startswith(b"xmlns:")
            }
            if declared:
                scope = dict(scope)
                for key, value in declared.items():
                    scope["" if key == "xmlns" else key[len("xmlns:") :]] = value
            prefix, _, local = match.group("name").decode("utf-8").rpartition(":")
            tag = f"{{{scope.get(prefix, '')}}}{local}" if scope.get(prefix) else local
            if tag in _ADDRESSES:
                for a in attributes:
                    if a.group(1) == b"location":
                        group = 2 if a.group(2) is not None else 3
                        edits.append((attrs_start + a.start(group), attrs_start + a.end(group)))
            elif tag in _WSA_ADDRESSES and _PORT in open_elements and not match.group("empty"):
                following = data.find(b"<", end)
                # Only a plain-text address is replaced; anything else is left to the tree.
                if data.startswith(b"</", following) and data[end:following].strip():
                    edits.append((end, following))
            if not match.group("empty"):
                open_elements.append(tag)
                scopes.append(scope)
        pos = data.find(b"<", end)
    if open_elements:
        raise _Unmatched("unclosed elements")
    parts: list[bytes] = []
    last = 0
    for start, stop in edits:
        parts += [data[last:start], masked]
        last = stop
    parts.append(data[last:])
    return b"".join(parts)


def _mask_tree(root: etree._Element) -> int:
    """Mask the endpoint addresses of a parsed WSDL in place; return how many were found."""
    count = 0
    for element in root.iter(*_ADDRESSES):
        if element.get("location") is not None:
            element.set("location", MASKED_ENDPOINT)
            count += 1
    for element in root.iter(*_WSA_ADDRESSES):
        in_port = any(ancestor.tag == _PORT for ancestor in element.iterancestors())
        if in_port and len(element) == 0 and (element.text or "").strip():
            element.text = MASKED_ENDPOINT
            count += 1
    return count


def _c14n(root: etree._Element) -> bytes:
    data: bytes = etree.tostring(root.getroottree(), method="c14n")
    return data


def _serialise(root: etree._Element) -> bytes:
    data: bytes = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    return data


def mask_endpoints(
    data: bytes, *, limits: XmlLimits = WSDL_LIMITS, origin: Origin = Origin.SERVER_PROXY
) -> bytes:
    """The WSDL ``data`` with every endpoint address replaced by :data:`MASKED_ENDPOINT`.

    Everything else keeps its bytes: declaration, comments, white space, prefixes, quotes
    and attribute order.  The result is checked against the same change made on the parsed
    tree (their canonical forms must agree); should the byte-level rewrite ever disagree,
    the tree is serialised instead, so the addresses are masked either way.  A WSDL without
    addresses comes back unchanged.  Raises :class:`XwegError` blamed on ``origin`` with
    ``RequestTooLarge`` or ``InvalidXml`` as :func:`adapters.soap.safexml.parse_xml` does.
    """
    root = parse_xml(data, limits=limits, origin=origin)
    if _mask_tree(root) == 0:
        return data
    try:
        rewritten = _rewrite(data)
        if _c14n(parse_xml(rewritten, limits=limits, origin=origin)) == _c14n(root):
            return rewritten
    except (_Unmatched, XwegError, UnicodeDecodeError, ValueError, etree.LxmlError):
        pass  # C14N refuses some documents (relative namespace URIs); the tree is then written
    return _serialise(root)
