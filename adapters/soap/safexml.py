"""Hardened XML parsing: lxml with DTDs refused and work bounded while parsing.

X-Road's security server refuses document type declarations in SOAP messages (its SAX
parser sets ``disallow-doctype-decl``) and resolves no external entities; this module does
the same with lxml and adds explicit bounds, so that a hostile message costs bounded time
and memory before it is refused:

* no DOCTYPE at all: internal subsets, external DTDs and therefore every entity other than
  XML's five predefined ones and character references are refused (billion laughs, XXE);
* no entity resolution, no DTD loading, no network access, ``huge_tree`` off (libxml2 keeps
  its own limits on text node size, name length and entity amplification);
* UTF-8 only: the parser is told the encoding, and an XML declaration naming another one is
  refused, so that the bytes cannot mean one document here and another to a backend;
* limits on bytes, nesting depth and element count, checked while the input is fed to the
  parser in small chunks, so that a limit stops the parse within one chunk of being hit.

Every failure is an :class:`core.errors.XwegError`: ``InvalidXml`` for anything the XML
itself is refused for, ``RequestTooLarge`` for too many bytes.  Who is blamed is the
caller's to say (the client for a request, the provider's security server for a backend's
response).  What the document means as SOAP is left to :mod:`adapters.soap.envelope`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from core.errors import ErrorCode, Origin, XwegError

__all__ = [
    "MAX_XML_BYTES",
    "MAX_XML_DEPTH",
    "MAX_XML_ELEMENTS",
    "XmlLimits",
    "DEFAULT_LIMITS",
    "parse_xml",
]

#: Largest XML document accepted, in bytes (X-Road logs bodies up to 10 MiB).
MAX_XML_BYTES = 10 * 1024 * 1024
#: Deepest element nesting accepted; the root element is at depth 1.  A SOAP envelope uses
#: three levels (Envelope, Body, wrapper), XÖV payloads rarely more than thirty.
MAX_XML_DEPTH = 128
#: Most elements accepted in one document.
MAX_XML_ELEMENTS = 100_000

# Bytes fed to the parser at a time: a limit is noticed at most this much input late, so a
# document never builds more than about this many bytes' worth of elements past a limit.
_CHUNK_BYTES = 16 * 1024

_UTF8_BOM = b"\xef\xbb\xbf"
# The XML declaration (XML 1.0 section 2.8); it can only stand at the very start.
_XML_DECL_START = re.compile(rb"<\?xml[ \t\r\n]")
_XML_DECL = re.compile(
    rb"<\?xml"
    rb"[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:\"1\.0\"|'1\.0')"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:\"(?P<enc1>[A-Za-z][A-Za-z0-9._-]*)\""
    rb"|'(?P<enc2>[A-Za-z][A-Za-z0-9._-]*)'))?"
    rb"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:\"(?:yes|no)\"|'(?:yes|no)'))?"
    rb"[ \t\r\n]*\?>"
)


@dataclass(frozen=True, slots=True)
class XmlLimits:
    """Bounds on one XML document: bytes, nesting depth, elements."""

    max_bytes: int = MAX_XML_BYTES
    max_depth: int = MAX_XML_DEPTH
    max_elements: int = MAX_XML_ELEMENTS

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_elements"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer")


DEFAULT_LIMITS = XmlLimits()


def _invalid_xml(message: str, origin: Origin) -> XwegError:
    return XwegError(ErrorCode.INVALID_XML, message, origin)


def _check_declaration(data: bytes, origin: Origin) -> None:
    """Refuse an XML declaration that is malformed or names an encoding other than UTF-8."""
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    if not _XML_DECL_START.match(data, start):
        return
    match = _XML_DECL.match(data, start)
    if match is None:
        raise _invalid_xml("the XML declaration is malformed", origin)
    encoding = match.group("enc1") or match.group("enc2")
    if encoding is not None and encoding.lower() != b"utf-8":
        raise _invalid_xml(
            f"the XML declaration names the encoding {encoding.decode('ascii')!r}; only UTF-8 is accepted",
            origin,
        )


def _has_doctype(element: etree._Element) -> bool:
    info = element.getroottree().docinfo
    return bool(info.doctype) or info.internalDTD is not None or info.externalDTD is not None


def _new_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end"),
        encoding="utf-8",
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        no_network=True,
        huge_tree=False,
        collect_ids=False,
        remove_blank_text=False,
    )


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    # libxml2's message names line and column; the input itself is never echoed.
    text = str(exc).splitlines()[0] if str(exc) else "malformed XML"
    return f"the XML is not well-formed: {text[:200]}"


def parse_xml(
    data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS, origin: Origin = Origin.CLIENT
) -> etree._Element:
    """Parse one UTF-8 XML document under ``limits``; return its root element.

    Raises :class:`XwegError` blamed on ``origin``: ``RequestTooLarge`` when ``data`` is
    longer than ``limits.max_bytes``; ``InvalidXml`` when the document is empty, is not
    well-formed (also undeclared namespace prefixes, undefined entities, bytes that are
    not UTF-8), declares another encoding, carries a DOCTYPE, or nests deeper or holds more
    elements than ``limits`` allow.
    """
    if not isinstance(data, bytes):
        raise TypeError("parse_xml takes bytes")
    if len(data) > limits.max_bytes:
        raise XwegError(
            ErrorCode.REQUEST_TOO_LARGE, f"the XML document is larger than {limits.max_bytes} bytes", origin
        )
    if not data.strip():
        raise _invalid_xml("the XML document is empty", origin)
    _check_declaration(data, origin)

    parser = _new_parser()
    depth = 0
    elements = 0
    root: etree._Element | None = None
    try:
        for offset in range(0, len(data), _CHUNK_BYTES):
            parser.feed(data[offset : offset + _CHUNK_BYTES])
            for event, element in parser.read_events():
                if event == "end":
                    depth -= 1
                    continue
                depth += 1
                elements += 1
                if root is None:
                    root = element
                    # The DOCTYPE precedes the root element: refuse it before going on.
                    if _has_doctype(element):
                        raise _invalid_xml("a DOCTYPE is not allowed", origin)
                if depth > limits.max_depth:
                    raise _invalid_xml(f"the XML nests deeper than {limits.max_depth} elements", origin)
                if elements > limits.max_elements:
                    raise _invalid_xml(f"the XML has more than {limits.max_elements} elements", origin)
        result = parser.close()
    except etree.XMLSyntaxError as exc:
        raise _invalid_xml(_syntax_message(exc), origin) from exc
    if _has_doctype(result):
        raise _invalid_xml("a DOCTYPE is not allowed", origin)
    return result
