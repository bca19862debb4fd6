"""The message model: what one exchange carries, independent of SOAP or REST framing.

A request or response is a *header* (identifiers, message id, the HTTP parts that
matter end to end) plus a body.  The header records the body's SHA-512 and size, so
that signatures and log records can be computed without holding the body twice.
The canonical encodings and digests live in :mod:`core.canonical`.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from core.identifiers import ClientId, IdentifierError, MemberId, ServiceId, SubsystemId, parse_client_slash

__all__ = [
    "Protocol",
    "RequestHeader",
    "ResponseHeader",
    "Request",
    "Response",
    "MAX_HEADERS",
    "MAX_HEADER_VALUE",
    "MessageError",
    "sha512",
]

#: Bounds on what travels end to end (count of headers, length of one value).
MAX_HEADERS = 100
MAX_HEADER_VALUE = 8192
_MAX_ID_LENGTH = 255
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_METHOD = re.compile(r"[A-Z]{1,16}")


class MessageError(ValueError):
    """A message header is malformed."""


class Protocol(enum.Enum):
    REST = "rest"
    SOAP = "soap"


def sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def _check_text(value: str | None, what: str, limit: int = _MAX_ID_LENGTH) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > limit:
        raise MessageError(f"{what} must be a non-empty string of at most {limit} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise MessageError(f"{what} contains control characters")
    _check_encodable(value, what)


def _check_encodable(value: str, what: str) -> None:
    # Lone surrogates (from undecodable bytes) cannot be hashed as UTF-8: refuse them here.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MessageError(f"{what} is not valid Unicode text") from exc


def _check_headers(headers: tuple[tuple[str, str], ...]) -> None:
    if len(headers) > MAX_HEADERS:
        raise MessageError(f"more than {MAX_HEADERS} headers")
    for name, value in headers:
        if not _HEADER_NAME.fullmatch(name):
            raise MessageError(f"header name {name!r} is not a lower-case HTTP token")
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE or any(ch in value for ch in "\r\n\0"):
            raise MessageError(f"header {name!r} has an invalid value")
        _check_encodable(value, f"header {name!r}")


def _check_body_digest(body_sha512: bytes, body_size: int) -> None:
    if not isinstance(body_sha512, bytes) or len(body_sha512) != 64:
        raise MessageError("body_sha512 must be 64 bytes")
    if type(body_size) is not int or body_size < 0:
        raise MessageError("body_size must be a non-negative integer")


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """Everything about a request except its body bytes."""

    protocol: Protocol
    client: ClientId
    service: ServiceId
    message_id: str
    method: str
    path: str  # REST: the path after the service code ('' or '/...'); SOAP: ''
    query: str  # raw query string without '?'
    headers: tuple[tuple[str, str], ...]  # end-to-end headers, lower-case names, in order
    body_sha512: bytes
    body_size: int
    user_id: str | None = None
    issue: str | None = None
    represented_party: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, Protocol):
            raise MessageError("protocol must be a Protocol")
        if not isinstance(self.service, ServiceId):
            raise MessageError("service must be a ServiceId")
        if not isinstance(self.client, (MemberId, SubsystemId)):
            raise MessageError("client must be a MemberId or SubsystemId")
        _check_text(self.message_id, "message id")
        _check_text(self.user_id, "user id")
        _check_text(self.issue, "issue")
        _check_text(self.represented_party, "represented party")
        if not isinstance(self.method, str) or not _METHOD.fullmatch(self.method):
            raise MessageError(f"invalid method {self.method!r}")
        if self.path and not self.path.startswith("/"):
            raise MessageError("path must be empty or start with '/'")
        if "?" in self.path or "#" in self.path:
            raise MessageError("path must not contain '?' or '#'")
        _check_text(self.path or None, "path", 4096)
        _check_text(self.query or None, "query", 4096)
        _check_headers(self.headers)
        _check_body_digest(self.body_sha512, self.body_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.value,
            "client": self.client.slash(),
            "service": self.service.slash(),
            "message_id": self.message_id,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": [[n, v] for n, v in self.headers],
            "body_sha512": self.body_sha512.hex(),
            "body_size": self.body_size,
            "user_id": self.user_id,
            "issue": self.issue,
            "represented_party": self.represented_party,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RequestHeader:
        try:
            return cls(
                protocol=Protocol(data["protocol"]),
                client=parse_client_slash(data["client"]),
                service=ServiceId.parse_slash(data["service"]),
                message_id=data["message_id"],
                method=data["method"],
                path=data["path"],
                query=data["query"],
                headers=tuple((str(n), str(v)) for n, v in data["headers"]),
                body_sha512=bytes.fromhex(data["body_sha512"]),
                body_size=data["body_size"],
                user_id=data.get("user_id"),
                issue=data.get("issue"),
                represented_party=data.get("represented_party"),
            )
        except (KeyError, TypeError, ValueError, IdentifierError) as exc:
            raise MessageError(f"malformed request header: {exc}") from exc

    @property
    def provider(self) -> SubsystemId:
        return self.service.provider


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    """Everything about a response except its body bytes."""

    message_id: str
    request_hash: str  # base64 of the request digest this response answers
    status: int
    headers: tuple[tuple[str, str], ...]
    body_sha512: bytes
    body_size: int

    def __post_init__(self) -> None:
        _check_text(self.message_id, "message id")
        _check_text(self.request_hash, "request hash", 128)
        if not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise MessageError(f"invalid status {self.status!r}")
        _check_headers(self.headers)
        _check_body_digest(self.body_sha512, self.body_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "request_hash": self.request_hash,
            "status": self.status,
            "headers": [[n, v] for n, v in self.headers],
            "body_sha512": self.body_sha512.hex(),
            "body_size": self.body_size,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ResponseHeader:
        try:
            return cls(
                message_id=data["message_id"],
                request_hash=data["request_hash"],
                status=data["status"],
                headers=tuple((str(n), str(v)) for n, v in data["headers"]),
                body_sha512=bytes.fromhex(data["body_sha512"]),
                body_size=data["body_size"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"malformed response header: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Request:
    header: RequestHeader
    body: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.body) != self.header.body_size or sha512(self.body) != self.header.body_sha512:
            raise MessageError("request body does not match its header's digest")


@dataclass(frozen=True, slots=True)
class Response:
    header: ResponseHeader
    body: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.body) != self.header.body_size or sha512(self.body) != self.header.body_sha512:
            raise MessageError("response body does not match its header's digest")
