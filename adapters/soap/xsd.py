"""X-Road's XML schemas, bundled, and the one place that maps their locations to bytes.

WSDLs written for X-Road import ``http://x-road.eu/xsd/xroad.xsd`` (and through it
``identifiers.xsd`` and the W3C's ``xml.xsd``), some also ``representation.xsd``.  xweg
never fetches them: copies ship as package data under ``adapters/soap/schemas/`` and every
reader here (zeep in :mod:`adapters.soap.wsdl`, lxml's schema validator below) is served
from them, so reading a WSDL needs no network and a hostile location cannot make the
reader fetch anything.

* :func:`schema_bytes` serves a bundled schema by file name (for a security server that
  offers the schemas over HTTP, or a client library that resolves them offline);
* :func:`bundled_name` maps a location as documents write it (the published URL, or the
  bare file name X-Road's own copies use) to a bundled file name, or ``None``;
* :func:`xml_schema` compiles a bundled schema into an lxml validator whose imports are
  resolved from the bundle only;
* :func:`relocate_schemas` points a document's imports of them at another address (a
  security server's ``/xsd/``), so that a generic client without internet access finds
  them there.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

from lxml import etree

__all__ = [
    "SCHEMA_NAMES",
    "SCHEMA_NAMESPACES",
    "SCHEMA_LOCATIONS",
    "schema_bytes",
    "bundled_name",
    "xml_schema",
    "relocate_schemas",
]

#: The bundled schemas by file name, and the namespace each one defines.
SCHEMA_NAMESPACES: Mapping[str, str] = MappingProxyType(
    {
        "xroad.xsd": "http://x-road.eu/xsd/xroad.xsd",
        "identifiers.xsd": "http://x-road.eu/xsd/identifiers",
        "representation.xsd": "http://x-road.eu/xsd/representation.xsd",
        "xml.xsd": "http://www.w3.org/XML/1998/namespace",
    }
)
SCHEMA_NAMES: tuple[str, ...] = tuple(SCHEMA_NAMESPACES)


def _locations() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("xroad.xsd", "identifiers.xsd", "representation.xsd"):
        found[name] = name  # X-Road's own copies import each other by bare file name
        for scheme in ("http", "https"):
            found[f"{scheme}://x-road.eu/xsd/{name}"] = name
    # The W3C publishes xml.xsd under several dated and undated paths; zeep itself asks for
    # https://www.w3.org/2001/xml.xsd when an import of the XML namespace has no location.
    for scheme in ("http", "https"):
        for path in ("2001/xml.xsd", "2009/01/xml.xsd", "XML/1998/namespace.xsd"):
            found[f"{scheme}://www.w3.org/{path}"] = "xml.xsd"
    return found


#: Every location that resolves to a bundled schema, mapped to its file name.
SCHEMA_LOCATIONS: Mapping[str, str] = MappingProxyType(_locations())


def schema_bytes(name: str) -> bytes:
    """The bundled schema ``name`` (one of :data:`SCHEMA_NAMES`), exactly as shipped.

    Raises ``LookupError`` for any other name; names are never taken as paths.
    """
    if name not in SCHEMA_NAMESPACES:
        raise LookupError(f"no bundled schema named {name[:100]!r}")
    return _read(name)


@functools.cache
def _read(name: str) -> bytes:
    return resources.files("adapters.soap").joinpath("schemas", name).read_bytes()


def bundled_name(location: str) -> str | None:
    """The bundled schema that ``location`` names, or ``None`` if it names none of them."""
    return SCHEMA_LOCATIONS.get(location)


class _BundleResolver(etree.Resolver):  # type: ignore[misc]  # lxml's stubs leave Resolver untyped
    """Resolves imports from the bundle; refuses every other location."""

    def resolve(self, system_url: str | None, public_id: str | None, context: object) -> object:
        name = bundled_name(system_url or "")
        if name is None:
            raise LookupError(f"the location {str(system_url)[:200]!r} is not a bundled X-Road schema")
        return self.resolve_string(schema_bytes(name), context, base_url=system_url)


_SCHEMA_LOCATION = re.compile(rb"""(schemaLocation\s*=\s*)(["'])([^"'<>]{1,2048})\2""")


def relocate_schemas(document: bytes, base_url: str) -> bytes:
    """``document`` with every ``schemaLocation`` of a bundled schema pointing at ``base_url``.

    ``base_url`` ends in ``/`` and serves the bundled schemas by file name.  Other
    locations and every other byte stay as they are.  Meant for documents that already
    went through the hardened parser (a WSDL, or a bundled schema).
    """
    if not base_url.endswith("/") or any(ch in base_url for ch in "\"'<>& "):
        raise ValueError("base_url must end in '/' and be safe to place in an XML attribute")
    base = base_url.encode("ascii")

    def replace(match: re.Match[bytes]) -> bytes:
        name = bundled_name(match.group(3).decode("utf-8", "replace").strip())
        if name is None:
            return match.group(0)
        return match.group(1) + match.group(2) + base + name.encode("ascii") + match.group(2)

    return _SCHEMA_LOCATION.sub(replace, document)


def _schema_parser() -> etree.XMLParser:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    parser.resolvers.add(_BundleResolver())
    return parser


@functools.cache
def xml_schema(name: str) -> etree.XMLSchema:
    """A validator for the bundled schema ``name``, its imports served from the bundle.

    Each validator is built once and then reused.  Raises ``LookupError`` for an unknown
    name.
    """
    data = schema_bytes(name)
    base_url = f"http://x-road.eu/xsd/{name}" if name != "xml.xsd" else "http://www.w3.org/2009/01/xml.xsd"
    document = etree.fromstring(data, _schema_parser(), base_url=base_url)
    return etree.XMLSchema(document)
