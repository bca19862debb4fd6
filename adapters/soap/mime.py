"""SOAP message packaging: plain ``text/xml``, SOAP with attachments, MTOM.

X-Road's message protocol 4.0 lets an information system send the SOAP envelope alone
(``Content-Type: text/xml``) or as the root part of a ``multipart/related`` message (SOAP
with attachments, or MTOM with an ``application/xop+xml`` root whose ``type`` is
``text/xml``).  Its security server accepts those content types and no others
(``InvalidContentType``), blames broken MIME framing as ``MimeParsingFailed`` and a
multipart message without a SOAP part as ``MissingSoap``; this module does the same.

The splitter is strict RFC 2046 framing (CRLF line ends, boundary delimiters at line
starts), written by hand for two reasons: the root part's bytes must come out exactly as
sent, because the request hash covers them; and the work must be bounded before parsing
begins (parts, header lines per part, header bytes).  The envelope bytes are not parsed
here (see :mod:`adapters.soap.safexml` and :mod:`adapters.soap.envelope`).  Attachments are
kept as bytes, decoded only from base64 where a part says so; XOP references inside the
envelope are left for the backend to resolve, as X-Road leaves them.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.errors import ErrorCode, Origin, XwegError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_PARTS",
    "MAX_PART_HEADERS",
    "MAX_PART_HEADER_BYTES",
    "MimeLimits",
    "DEFAULT_MIME_LIMITS",
    "MediaType",
    "Packaging",
    "Attachment",
    "SoapPackage",
    "parse_media_type",
    "split_soap_message",
    "encode_multipart_related",
]

#: Largest HTTP body accepted, envelope and attachments together, in bytes.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: Most MIME parts in one multipart message, the SOAP part included.
MAX_PARTS = 100
#: Most header fields in one MIME part.
MAX_PART_HEADERS = 32
#: Largest header block of one MIME part, in bytes.
MAX_PART_HEADER_BYTES = 8 * 1024
#: Longest Content-Type header value accepted.
_MAX_CONTENT_TYPE = 4096

TEXT_XML = "text/xml"
MULTIPART_RELATED = "multipart/related"
XOP_XML = "application/xop+xml"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ESSENCE = re.compile(rf"{_TOKEN.pattern}/{_TOKEN.pattern}")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x09\x20-\x7e])*)"')
# RFC 2046 section 5.1.1: 1 to 70 bchars, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class MimeLimits:
    """Bounds on one SOAP message's MIME packaging."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_parts: int = MAX_PARTS
    max_part_headers: int = MAX_PART_HEADERS
    max_part_header_bytes: int = MAX_PART_HEADER_BYTES

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_parts", "max_part_headers", "max_part_header_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer")


DEFAULT_MIME_LIMITS = MimeLimits()


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed media type: ``essence`` in lower case, parameters with lower-case names."""

    essence: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


class Packaging(enum.Enum):
    """How the envelope travelled."""

    PLAIN = "plain"  # text/xml
    SWA = "swa"  # SOAP with attachments: multipart/related, text/xml root part
    MTOM = "mtom"  # multipart/related, application/xop+xml root part


@dataclass(frozen=True, slots=True)
class Attachment:
    """One MIME part besides the SOAP part."""

    content_id: str | None  # without the angle brackets
    content_type: str | None  # the part's Content-Type as sent, if it had one
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SoapPackage:
    """The envelope's bytes exactly as sent, and the attachments that came with it."""

    packaging: Packaging
    soap: bytes = field(repr=False)
    attachments: tuple[Attachment, ...] = ()


def _content_type_error(message: str, origin: Origin) -> XwegError:
    return XwegError(ErrorCode.INVALID_CONTENT_TYPE, message, origin)


def _mime_error(message: str, origin: Origin) -> XwegError:
    return XwegError(ErrorCode.MIME_PARSING_FAILED, message, origin)


def _skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def parse_media_type(value: str | None, *, origin: Origin = Origin.CLIENT) -> MediaType:
    """Parse a Content-Type value (RFC 9110 section 8.3.1) strictly.

    Raises ``InvalidContentType`` for a missing or malformed value, a repeated parameter,
    or control characters.
    """
    if value is None or not value.strip():
        raise _content_type_error("the Content-Type is missing", origin)
    if len(value) > _MAX_CONTENT_TYPE:
        raise _content_type_error(f"the Content-Type is longer than {_MAX_CONTENT_TYPE} characters", origin)
    text = value.strip(" \t")
    match = _ESSENCE.match(text)
    if match is None:
        raise _content_type_error("the Content-Type is not a media type", origin)
    essence = match.group(0).lower()
    pos = match.end()
    params: list[tuple[str, str]] = []
    while True:
        pos = _skip_ows(text, pos)
        if pos == len(text):
            break
        if text[pos] != ";":
            raise _content_type_error("the Content-Type has text after its media type", origin)
        pos = _skip_ows(text, pos + 1)
        if pos == len(text) or text[pos] == ";":
            continue  # an empty parameter (RFC 9110 allows them)
        name_match = _TOKEN.match(text, pos)
        if name_match is None or name_match.end() >= len(text) or text[name_match.end()] != "=":
            raise _content_type_error("a Content-Type parameter is malformed", origin)
        name = name_match.group(0).lower()
        pos = name_match.end() + 1
        quoted = _QUOTED.match(text, pos)
        if quoted is not None:
            param_value = re.sub(r"\\(.)", r"\1", quoted.group(1))
            pos = quoted.end()
        else:
            token = _TOKEN.match(text, pos)
            if token is None:
                raise _content_type_error(f"the Content-Type parameter {name!r} has no valid value", origin)
            param_value = token.group(0)
            pos = token.end()
        if any(key == name for key, _ in params):
            raise _content_type_error(f"the Content-Type parameter {name!r} appears more than once", origin)
        params.append((name, param_value))
    return MediaType(essence, tuple(params))


def _check_charset(media: MediaType, what: str, origin: Origin) -> None:
    charset = media.param("charset")
    if charset is not None and charset.lower() != "utf-8":
        raise _content_type_error(f"{what} has the charset {charset!r}; only UTF-8 is accepted", origin)


# --- multipart framing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    headers: dict[str, str]
    content: bytes = field(repr=False)


def _split_parts(body: bytes, boundary: str, limits: MimeLimits, origin: Origin) -> list[bytes]:
    """The parts between the delimiters, exactly as they stand in ``body``.

    A delimiter is CRLF, ``--`` and the boundary at a line start, then ``--`` (the closing
    one) or optional white space and CRLF; the same text followed by anything else is
    content (RFC 2046 section 5.1.1).  The regular expression scans in linear time, also
    through many near misses.
    """
    dash = re.escape(b"--" + boundary.encode("ascii"))
    first_delimiter = re.compile(dash + rb"(?:(--)|[ \t]*\r\n)")
    delimiter = re.compile(rb"\r\n" + dash + rb"(?:(--)|[ \t]*\r\n)")
    found = first_delimiter.match(body)
    if found is None:
        # The preamble ends with the CRLF that begins the first delimiter line.
        found = delimiter.search(body)
        if found is None:
            raise _mime_error("the multipart body has no boundary delimiter", origin)
    parts: list[bytes] = []
    while found.group(1) is None:
        part_start = found.end()
        found = delimiter.search(body, part_start)
        if found is None:
            raise _mime_error("the multipart body has no closing boundary delimiter", origin)
        parts.append(body[part_start : found.start()])
        if len(parts) > limits.max_parts:
            raise _mime_error(f"the multipart body has more than {limits.max_parts} parts", origin)
    return parts


def _parse_part(raw: bytes, limits: MimeLimits, origin: Origin) -> _Part:
    if raw.startswith(_CRLF):
        return _Part({}, raw[2:])
    end = raw.find(_CRLF + _CRLF)
    if end < 0:
        if len(raw) > limits.max_part_header_bytes:
            raise _mime_error(
                f"a MIME part's headers are longer than {limits.max_part_header_bytes} bytes", origin
            )
        raise _mime_error("a MIME part's headers do not end with an empty line", origin)
    if end > limits.max_part_header_bytes:
        raise _mime_error(
            f"a MIME part's headers are longer than {limits.max_part_header_bytes} bytes", origin
        )
    lines = raw[:end].split(_CRLF)
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise _mime_error("a MIME part's headers begin with a continuation line", origin)
            last_name, last_value = fields[-1]
            fields[-1] = (last_name, last_value + b" " + line.strip(b" \t"))
            continue
        field_name, colon, field_value = line.partition(b":")
        if not colon or not _HEADER_NAME.fullmatch(field_name):
            raise _mime_error("a MIME part has a malformed header line", origin)
        fields.append((field_name, field_value.strip(b" \t")))
        if len(fields) > limits.max_part_headers:
            raise _mime_error(f"a MIME part has more than {limits.max_part_headers} headers", origin)
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in fields:
        try:
            value = value_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise _mime_error("a MIME part header is not ASCII", origin) from None
        if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
            raise _mime_error("a MIME part header contains a control character", origin)
        key = name_bytes.decode("ascii").lower()
        if key in headers:
            raise _mime_error(f"a MIME part has the header {key!r} more than once", origin)
        headers[key] = value
    return _Part(headers, raw[end + 4 :])


def _unbracket(content_id: str) -> str:
    content_id = content_id.strip(" \t")
    if content_id.startswith("<") and content_id.endswith(">"):
        return content_id[1:-1]
    return content_id


def _transfer_encoding(part: _Part) -> str:
    return part.headers.get("content-transfer-encoding", "binary").strip().lower()


def _attachment(part: _Part, origin: Origin) -> Attachment:
    encoding = _transfer_encoding(part)
    data = part.content
    if encoding == "base64":
        try:
            data = base64.b64decode(re.sub(rb"[ \t\r\n]", b"", data), validate=True)
        except (binascii.Error, ValueError):
            raise _mime_error("an attachment's base64 content is malformed", origin) from None
    elif encoding not in _IDENTITY_ENCODINGS:
        raise _mime_error(f"an attachment has the unsupported transfer encoding {encoding!r}", origin)
    content_id = part.headers.get("content-id")
    return Attachment(
        content_id=_unbracket(content_id) if content_id is not None else None,
        content_type=part.headers.get("content-type"),
        data=data,
    )


def _root_packaging(multipart: MediaType, root: _Part, origin: Origin) -> Packaging:
    """Check the root part's type against the multipart's ``type`` parameter."""
    if "content-type" not in root.headers:
        raise _content_type_error("the SOAP part has no Content-Type", origin)
    root_type = parse_media_type(root.headers["content-type"], origin=origin)
    declared = multipart.param("type")
    if declared is not None and declared.lower() != root_type.essence:
        raise _content_type_error(
            f"the multipart type {declared!r} does not match the SOAP part's {root_type.essence!r}", origin
        )
    _check_charset(root_type, "the SOAP part", origin)
    if root_type.essence == TEXT_XML:
        return Packaging.SWA
    if root_type.essence == XOP_XML:
        inner = root_type.param("type") or multipart.param("start-info")
        if inner is None or inner.lower() != TEXT_XML:
            raise _content_type_error(
                "an MTOM SOAP part must be application/xop+xml with type text/xml (SOAP 1.1)", origin
            )
        return Packaging.MTOM
    raise _content_type_error(
        f"the SOAP part's content type {root_type.essence!r} is neither text/xml nor application/xop+xml",
        origin,
    )


def _split_multipart(media: MediaType, body: bytes, limits: MimeLimits, origin: Origin) -> SoapPackage:
    boundary = media.param("boundary")
    if boundary is None:
        raise _mime_error("the multipart Content-Type has no boundary", origin)
    if not _BOUNDARY.fullmatch(boundary):
        raise _mime_error("the multipart boundary is not 1 to 70 allowed characters", origin)
    raw_parts = _split_parts(body, boundary, limits, origin)
    if not raw_parts:
        raise XwegError(ErrorCode.MISSING_SOAP, "the multipart message has no parts, so no SOAP part", origin)
    parts = [_parse_part(raw, limits, origin) for raw in raw_parts]

    start = media.param("start")
    if start is None:
        root_index = 0  # RFC 2387: without 'start', the first part is the root
    else:
        wanted = _unbracket(start)
        matches = [i for i, p in enumerate(parts) if _unbracket(p.headers.get("content-id", "")) == wanted]
        if not matches:
            raise XwegError(
                ErrorCode.MISSING_SOAP,
                "no part of the multipart message has the Content-ID named by its 'start' parameter",
                origin,
            )
        root_index = matches[0]
        if root_index != 0:
            # Security servers check and sign the part 'start' names but forward the whole
            # message; a recipient that takes the first part as the envelope would read
            # another one. The SOAP part comes first, or the message is refused.
            raise _mime_error("the SOAP part named by 'start' must be the first part of the message", origin)
    root = parts[root_index]
    packaging = _root_packaging(media, root, origin)
    if _transfer_encoding(root) not in _IDENTITY_ENCODINGS:
        raise _mime_error("the SOAP part must not be transfer-encoded", origin)

    attachments = tuple(_attachment(p, origin) for i, p in enumerate(parts) if i != root_index)
    seen: set[str] = set()
    root_id = root.headers.get("content-id")
    for content_id in [_unbracket(root_id) if root_id is not None else None] + [
        a.content_id for a in attachments
    ]:
        if content_id is None:
            continue
        if content_id in seen:
            raise _mime_error(f"the Content-ID {content_id!r} appears on more than one part", origin)
        seen.add(content_id)
    return SoapPackage(packaging, root.content, attachments)


def split_soap_message(
    content_type: str | None,
    body: bytes,
    *,
    limits: MimeLimits = DEFAULT_MIME_LIMITS,
    origin: Origin = Origin.CLIENT,
) -> SoapPackage:
    """Take a SOAP message's HTTP body apart by its Content-Type.

    ``text/xml`` bodies are the envelope; ``multipart/related`` bodies are split into the
    SOAP part (selected by the ``start`` parameter, else the first part) and attachments.
    Raises :class:`XwegError` blamed on ``origin``: ``RequestTooLarge``,
    ``InvalidContentType`` (missing, malformed or unsupported type or charset, SOAP 1.2),
    ``MimeParsingFailed`` (framing, boundary, too many parts, part headers, encodings) or
    ``MissingSoap`` (no parts, or no part with the ``start`` Content-ID).
    """
    if len(body) > limits.max_message_bytes:
        raise XwegError(
            ErrorCode.REQUEST_TOO_LARGE,
            f"the message is larger than {limits.max_message_bytes} bytes",
            origin,
        )
    media = parse_media_type(content_type, origin=origin)
    if media.essence == TEXT_XML:
        _check_charset(media, "the message", origin)
        return SoapPackage(Packaging.PLAIN, body)
    if media.essence == MULTIPART_RELATED:
        return _split_multipart(media, body, limits, origin)
    raise _content_type_error(
        f"the content type {media.essence!r} is not text/xml or multipart/related (X-Road SOAP 1.1)", origin
    )


# --- writing ----------------------------------------------------------------------------------------


def encode_multipart_related(
    soap: bytes,
    attachments: Sequence[Attachment],
    *,
    packaging: Packaging,
    root_content_id: str = "soap-part@xweg",
    boundary: str | None = None,
) -> tuple[str, bytes]:
    """Pack an envelope and its attachments as ``multipart/related``: ``(content type, body)``.

    ``packaging`` is :attr:`Packaging.SWA` or :attr:`Packaging.MTOM`.  Parts are written
    ``binary``; the boundary is random unless given, and never occurs in any part.
    """
    if packaging is Packaging.PLAIN:
        raise ValueError("plain packaging has no multipart form")
    if boundary is None:
        boundary = f"xweg-{uuid.uuid4().hex}"
    if not _BOUNDARY.fullmatch(boundary) or boundary.endswith(" "):
        raise ValueError("invalid boundary")
    dash = b"--" + boundary.encode("ascii")
    if packaging is Packaging.MTOM:
        root_type = 'application/xop+xml; charset=UTF-8; type="text/xml"'
        content_type = (
            f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
            f'start="<{root_content_id}>"; start-info="text/xml"'
        )
    else:
        root_type = "text/xml; charset=UTF-8"
        content_type = (
            f'multipart/related; type="text/xml"; boundary="{boundary}"; start="<{root_content_id}>"'
        )

    def header_lines(pairs: list[tuple[str, str]]) -> bytes:
        for name, value in pairs:
            if any(ch in value for ch in "\r\n\0"):
                raise ValueError(f"invalid {name} value")
        return b"".join(f"{name}: {value}".encode("ascii") + _CRLF for name, value in pairs)

    chunks = [
        dash,
        _CRLF,
        header_lines(
            [
                ("Content-Type", root_type),
                ("Content-Transfer-Encoding", "binary"),
                ("Content-ID", f"<{root_content_id}>"),
            ]
        ),
        _CRLF,
        soap,
    ]
    for attachment in attachments:
        pairs = [("Content-Transfer-Encoding", "binary")]
        if attachment.content_type is not None:
            pairs.insert(0, ("Content-Type", attachment.content_type))
        if attachment.content_id is not None:
            pairs.append(("Content-ID", f"<{attachment.content_id}>"))
        chunks += [_CRLF, dash, _CRLF, header_lines(pairs), _CRLF, attachment.data]
    chunks += [_CRLF, dash, b"--", _CRLF]
    for content in [soap, *(a.data for a in attachments)]:
        if _CRLF + dash in _CRLF + content:
            raise ValueError("the boundary occurs in a part's content")
    return content_type, b"".join(chunks)
