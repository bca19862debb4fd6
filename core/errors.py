"""The error vocabulary: every failure is one ``XwegError`` with a stable code.

An error says *who* is at fault (its :class:`Origin`, X-Road's fault-code prefix),
*what* failed (its :class:`ErrorCode`, stable across releases), which HTTP status to
answer with, and carries a correlation id that also appears in the server's log.
The correlation id is the request's: a listener opens :func:`correlation_scope` when a
request arrives, and every error raised while handling it carries that id (and every
log line of it, bound by the listener), so that a fault names the lines to read.
One piece of code at each edge renders it as an X-Road REST error body or SOAP fault;
nothing else decides how an error looks on the wire.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "Origin",
    "ErrorCode",
    "XwegError",
    "new_correlation_id",
    "current_correlation_id",
    "correlation_scope",
]

# The correlation id of the request being handled in this context; None outside a request.
_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "xweg_correlation_id", default=None
)


class Origin(enum.Enum):
    """Who failed, as X-Road's fault-code prefix says it."""

    CLIENT = "Client"  # the calling information system broke the protocol
    CLIENT_PROXY = "Server.ClientProxy"  # the consumer's security server
    SERVER_PROXY = "Server.ServerProxy"  # the provider's security server
    REGISTRY = "Server.Registry"  # the central registry

    @property
    def http_status(self) -> int:
        return 400 if self is Origin.CLIENT else 500


@dataclass(frozen=True)
class _Code:
    name: str
    http_status: int | None = None  # None: decided by the origin (400 client, 500 server)


class ErrorCode(enum.Enum):
    """Stable codes; the value is the X-Road fault code's last part."""

    INVALID_CLIENT_IDENTIFIER = _Code("InvalidClientIdentifier")
    INVALID_SERVICE_IDENTIFIER = _Code("InvalidServiceIdentifier")
    INVALID_REQUEST = _Code("InvalidRequest")
    INVALID_MESSAGE = _Code("InvalidMessage")
    REQUEST_TOO_LARGE = _Code("RequestTooLarge", 413)
    # More requests in flight than the listener takes at once: try again later.
    TOO_MANY_REQUESTS = _Code("TooManyRequests", 503)
    # SOAP message protocol 4.0: X-Road's own codes for a message it cannot take apart.
    INVALID_HTTP_METHOD = _Code("InvalidHttpMethod")
    INVALID_CONTENT_TYPE = _Code("InvalidContentType")
    MIME_PARSING_FAILED = _Code("MimeParsingFailed")
    MISSING_SOAP = _Code("MissingSoap")
    INVALID_XML = _Code("InvalidXml")
    INVALID_SOAP = _Code("InvalidSoap")
    MISSING_HEADER = _Code("MissingHeader")
    MISSING_HEADER_FIELD = _Code("MissingHeaderField")
    DUPLICATE_HEADER_FIELD = _Code("DuplicateHeaderField")
    INVALID_PROTOCOL_VERSION = _Code("InvalidProtocolVersion")
    MISSING_BODY = _Code("MissingBody")
    INVALID_BODY = _Code("InvalidBody")
    UNKNOWN_MEMBER = _Code("UnknownMember")
    UNKNOWN_SERVICE = _Code("UnknownService")
    # A SOAP request for a REST service, or a REST request for a SOAP service.
    INVALID_SERVICE_TYPE = _Code("InvalidServiceType")
    # A service description that cannot be read or may not be served (X-Road's "invalid_wsdl").
    INVALID_WSDL = _Code("InvalidWsdl")
    ACCESS_DENIED = _Code("AccessDenied")
    OUTDATED_GLOBAL_CONF = _Code("OutdatedGlobalConf")
    INVALID_GLOBAL_CONF = _Code("InvalidGlobalConf")
    INVALID_SIGNATURE_VALUE = _Code("InvalidSignatureValue")
    CERT_VALIDATION = _Code("CertValidation")
    SSL_AUTHENTICATION_FAILED = _Code("SslAuthenticationFailed")
    # A client token (Authorization: Bearer) that is missing where required, invalid or for another client.
    INVALID_CLIENT_TOKEN = _Code("InvalidClientToken", 401)
    INCONSISTENT_RESPONSE = _Code("InconsistentResponse")
    NETWORK_ERROR = _Code("NetworkError")
    SERVICE_FAILED = _Code("ServiceFailed")
    SERVICE_TIMEOUT = _Code("ServiceFailed.Timeout")
    LOGGING_FAILED = _Code("LoggingFailed")
    TIMESTAMPER_FAILED = _Code("LoggingFailed.TimestamperFailed")
    INTERNAL_ERROR = _Code("InternalError")

    @property
    def code(self) -> str:
        return self.value.name


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def current_correlation_id() -> str | None:
    """The correlation id of the request being handled, or None outside :func:`correlation_scope`."""
    return _correlation_id.get()


@contextlib.contextmanager
def correlation_scope(correlation_id: str | None = None) -> Iterator[str]:
    """Handle one request under ``correlation_id`` (a new one by default); yields the id.

    Errors raised inside take it as theirs unless given another.  The previous id (if
    any) is restored on leaving, so scopes nest.
    """
    value = correlation_id or new_correlation_id()
    token = _correlation_id.set(value)
    try:
        yield value
    finally:
        _correlation_id.reset(token)


class XwegError(Exception):
    """A failure with a stable code, an origin, an HTTP status and a correlation id."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        origin: Origin,
        *,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.origin = origin
        self.correlation_id = correlation_id or _correlation_id.get() or new_correlation_id()

    @property
    def fault_code(self) -> str:
        """X-Road's fault code, e.g. ``Server.ServerProxy.AccessDenied``."""
        return f"{self.origin.value}.{self.code.code}"

    @property
    def http_status(self) -> int:
        return self.code.value.http_status or self.origin.http_status

    def __repr__(self) -> str:
        return f"XwegError({self.fault_code!r}, {self.message!r}, correlation_id={self.correlation_id!r})"

    def __str__(self) -> str:
        return f"{self.fault_code}: {self.message}"
