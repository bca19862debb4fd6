"""X-Road REST r1, client side: turn an information system's HTTP request into a core request.

The request target has the form ``/r1/{instance}/{class}/{member}/{subsystem}/{serviceCode}
[/path][?query]``.  Each identifier part is percent-decoded on its own and validated by
:mod:`core.identifiers`; the rest of the path and the query are kept exactly as received
(still percent-encoded), because the provider's security server appends them unchanged to
the backend's base URL.

The path is nevertheless decoded here, for checking only, and refused when it could mean
something else to a backend than it seems to mean to access rules: dot segments (also
percent-encoded, with ``;`` parameters, or encoded twice), encoded slashes, backslashes,
control characters, empty segments.  Encoded path traversal once bypassed X-Road's endpoint
access rules; refusing the ambiguous forms at the edge is what keeps a path rule on
``/anzeigen`` meaning ``/anzeigen``.

Framing (reading the body with a size cap, answering 413) is left to the HTTP server; this
module is pure: bytes and strings in, a :class:`core.messages.Request` or an
:class:`core.errors.XwegError` out, never anything else.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ClientId, IdentifierError, ServiceId, SubsystemId, parse_client_slash
from core.messages import (
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    MessageError,
    Protocol,
    Request,
    RequestHeader,
    sha512,
)

__all__ = [
    "MAX_TARGET_LENGTH",
    "MAX_INPUT_HEADERS",
    "HOP_BY_HOP_HEADERS",
    "parse_rest_request",
    "check_rest_path",
    "METHOD_OVERRIDE_HEADERS",
    "is_hop_by_hop",
]

#: Longest request target accepted (path and query, as received).
MAX_TARGET_LENGTH = 4096
#: Headers accepted on the way in, before filtering; a bound on work, not a protocol rule.
MAX_INPUT_HEADERS = 2 * MAX_HEADERS
#: Longest value of an ``X-Road-*`` header (core stores ids of at most 255 characters).
_MAX_XROAD_VALUE = 255

_PREFIX = "/r1/"
_IDENTIFIER_PARTS = 5  # instance, class, member, subsystem, service code

#: Hop-by-hop headers (RFC 9110 section 7.6.1, plus the legacy ``proxy-connection``).
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Headers with which some frameworks let a request say another method than its own;
#: refused, because access rights are granted per method.
METHOD_OVERRIDE_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
#: Not hop-by-hop, but describe this hop or the client program and are not forwarded.
_NOT_FORWARDED = frozenset({"host", "user-agent", "server", "content-length", "expect"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 3986: unreserved, sub-delims, ':' '@', '/' and '?' and '%' (escapes checked apart).
_TARGET_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_XROAD_VALUE = re.compile(r"[\x20-\x7e]+")
_CLIENT_HEADER = "x-road-client"
_ID_HEADER = "x-road-id"
_USER_HEADER = "x-road-userid"
_ISSUE_HEADER = "x-road-issue"
_PARTY_HEADER = "x-road-represented-party"


def _short(text: str, limit: int = 64) -> str:
    """A bounded repr for error messages: never echo a whole hostile input."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _invalid(message: str) -> XwegError:
    return XwegError(ErrorCode.INVALID_REQUEST, message, Origin.CLIENT)


@contextmanager
def _as_client_error() -> Iterator[None]:
    """Core's validation errors become the client's fault, with a stable code."""
    try:
        yield
    except XwegError:
        raise
    except IdentifierError as exc:
        raise XwegError(ErrorCode.INVALID_SERVICE_IDENTIFIER, str(exc), Origin.CLIENT) from exc
    except MessageError as exc:
        raise _invalid(f"invalid request: {exc}") from exc


def is_hop_by_hop(name: str, connection_tokens: frozenset[str] = frozenset()) -> bool:
    """Whether a lower-case header name belongs to one hop only (RFC 9110 section 7.6.1)."""
    return name in HOP_BY_HOP_HEADERS or name in connection_tokens


def _unescape(text: str) -> str | None:
    """Percent-decode once, strictly: UTF-8 only; ``None`` if the bytes are not UTF-8."""
    raw = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        raw += text[pos : match.start()].encode("utf-8")
        raw.append(int(match.group()[1:], 16))
        pos = match.end()
    raw += text[pos:].encode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- the request target ---------------------------------------------------------------------


def _check_target(raw_target: str) -> None:
    if len(raw_target) > MAX_TARGET_LENGTH:
        raise _invalid(f"request target is longer than {MAX_TARGET_LENGTH} characters")
    if not _TARGET_CHARS.fullmatch(raw_target):
        bad = next(ch for ch in raw_target if not _TARGET_CHARS.fullmatch(ch))
        raise _invalid(f"request target contains the character {bad!r}, which must be percent-encoded")
    if _BAD_ESCAPE.search(raw_target):
        raise _invalid("request target contains a malformed percent escape")


def _parse_service(parts: Sequence[str]) -> ServiceId:
    decoded: list[str] = []
    for part in parts:
        if not part:
            raise XwegError(
                ErrorCode.INVALID_SERVICE_IDENTIFIER,
                "the service identifier in the path has an empty part",
                Origin.CLIENT,
            )
        value = _unescape(part)
        if value is None:
            raise XwegError(
                ErrorCode.INVALID_SERVICE_IDENTIFIER,
                f"service identifier part {_short(part)} is not UTF-8",
                Origin.CLIENT,
            )
        decoded.append(value)
    # IdentifierError (illegal characters, also a decoded '/') is translated by the caller.
    return ServiceId(SubsystemId(*decoded[:4]), decoded[4], None)


def _segment_problem(segment: str) -> str | None:
    """Why a decoded path segment is ambiguous to a backend, or ``None`` if it is not."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in segment):
        return "a control character"
    # Compatibility forms ('\uff0e', '\uff0f', '\uff3c') become dots and slashes for
    # backends that normalise Unicode: checked in both forms.
    folded = unicodedata.normalize("NFKC", segment)
    if "/" in segment or "/" in folded:
        return "an encoded slash"
    if "\\" in segment or "\\" in folded:
        return "a backslash"
    # '..;x' is '..' to servers that strip path parameters (Tomcat and its kin).
    for name in (segment.split(";", 1)[0], folded.split(";", 1)[0]):
        if name in (".", ".."):
            return "a dot segment"
        # Windows servers drop trailing dots and spaces: '...' and '.. ' are '..' there.
        if name and not name.strip(". "):
            return "a segment of only dots and spaces"
    return None


def _check_segments(path: str) -> None:
    """Refuse a path whose meaning depends on how often and how a backend decodes it.

    The path is decoded once for meaning.  A segment whose once-decoded form still holds
    escapes is decoded a second time and checked again: ``%252e%252e`` is the literal name
    ``%2e%2e`` to a correct backend, but ``..`` to one that decodes twice, so it is refused.
    A literal percent sign (``%25``) in a harmless segment stays allowed.
    """
    if not path:
        return
    segments = path[1:].split("/")
    for index, raw in enumerate(segments):
        if not raw:
            # A trailing slash is ordinary; an empty segment inside ('//') is collapsed by
            # some backends and not by others.
            if index == len(segments) - 1:
                continue
            raise _invalid("request path contains an empty segment ('//')")
        once = _unescape(raw)
        if once is None:
            raise _invalid(f"request path segment {_short(raw)} is not UTF-8 once decoded")
        problem = _segment_problem(once)
        if problem is None and "%" in once:
            twice = _unescape(once)
            if twice is None or _segment_problem(twice) is not None:
                problem = "a double-encoded special character"
        if problem is not None:
            raise _invalid(f"request path segment {_short(raw)} contains {problem}")


@dataclass(frozen=True, slots=True)
class _Target:
    service: ServiceId
    path: str
    query: str


def _parse_target(raw_target: str) -> _Target:
    _check_target(raw_target)
    path_part, _, query = raw_target.partition("?")
    if not path_part.startswith(_PREFIX):
        raise _invalid("request target must start with /r1/ (X-Road REST protocol r1)")
    segments = path_part[len(_PREFIX) :].split("/")
    if len(segments) < _IDENTIFIER_PARTS:
        raise XwegError(
            ErrorCode.INVALID_SERVICE_IDENTIFIER,
            "request target must name /r1/{instance}/{class}/{member}/{subsystem}/{serviceCode}",
            Origin.CLIENT,
        )
    service = _parse_service(segments[:_IDENTIFIER_PARTS])
    rest = segments[_IDENTIFIER_PARTS:]
    path = "/" + "/".join(rest) if rest else ""
    _check_segments(path)
    return _Target(service, path, query)


def check_rest_path(path: str, query: str) -> None:
    """Check a REST path and query as they will be appended to a backend's base URL.

    The same checks :func:`parse_rest_request` makes, for a request that did not come
    through it: the provider's security server receives path and query from the consumer's
    server and must not take their safety on trust.  Raises :class:`XwegError`
    (``Client.InvalidRequest``) for a path that is not '' or '/...', a character that must
    be percent-encoded (in the path also '?'), a malformed escape, or an ambiguous segment.
    """
    with _as_client_error():
        if not isinstance(path, str) or not isinstance(query, str):
            raise _invalid("path and query must be strings")
        if len(path) + len(query) > MAX_TARGET_LENGTH:
            raise _invalid(f"path and query are longer than {MAX_TARGET_LENGTH} characters")
        if path and not path.startswith("/"):
            raise _invalid("request path must be empty or start with '/'")
        if "?" in path:
            raise _invalid("request path contains '?'")
        _check_target(path)
        _check_target(query)
        _check_segments(path)


# --- headers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Headers:
    client: ClientId
    message_id: str | None
    user_id: str | None
    issue: str | None
    represented_party: str | None
    end_to_end: tuple[tuple[str, str], ...]


def _check_value(name: str, value: str) -> None:
    if len(value) > MAX_HEADER_VALUE:
        raise _invalid(f"header {name!r} is longer than {MAX_HEADER_VALUE} characters")
    # HTAB is the only control character a field value may hold (RFC 9110 section 5.5);
    # lone surrogates come from undecodable bytes and cannot be hashed or forwarded.
    for ch in value:
        code = ord(ch)
        if (code < 0x20 and ch != "\t") or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            raise _invalid(f"header {name!r} contains an invalid character")


def _xroad_value(name: str, value: str) -> str:
    if len(value) > _MAX_XROAD_VALUE or not _XROAD_VALUE.fullmatch(value):
        raise _invalid(f"header {name!r} must be 1 to {_MAX_XROAD_VALUE} printable ASCII characters")
    return value


def _parse_headers(headers: Sequence[tuple[str, str]]) -> _Headers:
    if len(headers) > MAX_INPUT_HEADERS:
        raise _invalid(f"more than {MAX_INPUT_HEADERS} request headers")
    lowered: list[tuple[str, str]] = []
    for name, value in headers:
        if not isinstance(name, str) or not isinstance(value, str):
            raise _invalid("header names and values must be strings")
        if not _TOKEN.fullmatch(name):
            raise _invalid(f"header name {_short(name)} is not an HTTP token")
        _check_value(name, value)
        if name.lower() in METHOD_OVERRIDE_HEADERS:
            raise _invalid(
                f"header {name} is refused: access rights are granted per HTTP method, which it would change"
            )
        lowered.append((name.lower(), value))

    connection_tokens = frozenset(
        token.strip().lower()
        for name, value in lowered
        if name == "connection"
        for token in value.split(",")
        if token.strip()
    )
    xroad: dict[str, str] = {}
    end_to_end: list[tuple[str, str]] = []
    for name, value in lowered:
        if name.startswith("x-road-"):
            if name in xroad:
                raise _invalid(f"header {name!r} appears more than once")
            xroad[name] = value
        elif not is_hop_by_hop(name, connection_tokens) and name not in _NOT_FORWARDED:
            end_to_end.append((name, value))
    if len(end_to_end) > MAX_HEADERS:
        raise _invalid(f"more than {MAX_HEADERS} end-to-end headers")

    client_text = xroad.get(_CLIENT_HEADER)
    if client_text is None:
        raise XwegError(
            ErrorCode.INVALID_CLIENT_IDENTIFIER, "the X-Road-Client header is missing", Origin.CLIENT
        )
    try:
        client = parse_client_slash(client_text.strip())
    except IdentifierError as exc:
        raise XwegError(
            ErrorCode.INVALID_CLIENT_IDENTIFIER, f"X-Road-Client is malformed: {exc}", Origin.CLIENT
        ) from exc

    def optional(name: str) -> str | None:
        value = xroad.get(name)
        return None if value is None else _xroad_value(name, value)

    return _Headers(
        client=client,
        message_id=optional(_ID_HEADER),
        user_id=optional(_USER_HEADER),
        issue=optional(_ISSUE_HEADER),
        represented_party=optional(_PARTY_HEADER),
        end_to_end=tuple(end_to_end),
    )


# --- the whole request --------------------------------------------------------------------------


def parse_rest_request(
    method: str,
    raw_target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    new_message_id: Callable[[], str],
) -> Request:
    """Parse one X-Road REST r1 request as the information system sent it.

    ``raw_target`` is the request target as received (still percent-encoded);
    ``headers`` are the request's header fields in order, names in any case;
    ``new_message_id`` is called for a message id when the client sent no ``X-Road-Id``.

    Returns the request or raises :class:`XwegError` with origin ``Client``:
    ``InvalidServiceIdentifier`` for a bad service in the path, ``InvalidClientIdentifier``
    for a missing or bad ``X-Road-Client``, ``InvalidRequest`` for everything else.
    """
    with _as_client_error():
        if not isinstance(method, str) or not isinstance(raw_target, str):
            raise _invalid("method and request target must be strings")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise _invalid("request body must be bytes")
        # HTTP methods are case-sensitive (RFC 9110 section 9.1): 'get' is not GET.
        if not _TOKEN.fullmatch(method) or not method.isupper():
            raise _invalid(f"method {_short(method)} is not an upper-case HTTP token")
        target = _parse_target(raw_target)
        parsed = _parse_headers(headers)
        message_id = parsed.message_id if parsed.message_id is not None else new_message_id()
        data = bytes(body)
        header = RequestHeader(
            protocol=Protocol.REST,
            client=parsed.client,
            service=target.service,
            message_id=message_id,
            method=method,
            path=target.path,
            query=target.query,
            headers=parsed.end_to_end,
            body_sha512=sha512(data),
            body_size=len(data),
            user_id=parsed.user_id,
            issue=parsed.issue,
            represented_party=parsed.represented_party,
        )
        return Request(header, data)
