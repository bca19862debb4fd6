"""X-Road SOAP 4.0 responses: read a provider's answer and check it against the request.

A provider's backend answers with an envelope that must echo the request's X-Road headers
(client, service, id, userId, issue, representedParty, protocolVersion) and wrap its
payload in ``<serviceCode>Response``, or with a SOAP Fault, which passes back as the
provider's own answer.  X-Road refuses an answer whose headers differ from the request's
with ``InconsistentResponse``, and so does :func:`check_response_consistent`.  On the
consumer's side, :func:`check_request_hash` checks that ``xrd:requestHash`` is the
SHA-512 of the request's SOAP bytes, as X-Road's client proxy does.

Parsing uses the same hardened XML and packaging rules as requests; every refusal is
blamed on the ``origin`` the caller names (by default the provider's security server,
which is where a backend's answer is read).  Calling the backend is left to the caller.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field

from adapters.soap.envelope import (
    SHA512_ALGORITHM_ID,
    RequestHash,
    SoapFault,
    XRoadHeader,
    read_response_envelope,
)
from adapters.soap.inbound import DEFAULT_SOAP_LIMITS, SoapLimits, SoapRequest
from adapters.soap.mime import Attachment, Packaging, split_soap_message
from adapters.soap.safexml import parse_xml
from core.errors import ErrorCode, Origin, XwegError

__all__ = ["SoapResponse", "parse_soap_response", "check_response_consistent", "check_request_hash"]

# The fields an answer must echo, in the order X-Road compares them.
_ECHOED = (
    ("client", "xrd:client"),
    ("service", "xrd:service"),
    ("message_id", "xrd:id"),
    ("user_id", "xrd:userId"),
    ("issue", "xrd:issue"),
    ("represented_party", "repr:representedParty"),
    ("protocol_version", "xrd:protocolVersion"),
)


@dataclass(frozen=True, slots=True)
class SoapResponse:
    """A provider's SOAP answer: X-Road headers and a wrapper element, or a Fault.

    ``raw`` is the HTTP body exactly as received, ``soap`` the envelope's bytes exactly as
    received; ``header_xml`` (``None`` for a fault without a header) and ``body_xml`` (the
    wrapper or the ``Fault`` element) are serialised on their own.
    """

    header: XRoadHeader | None
    request_hash: RequestHash | None
    fault: SoapFault | None
    packaging: Packaging
    content_type: str
    raw: bytes = field(repr=False)
    soap: bytes = field(repr=False)
    header_xml: bytes | None = field(repr=False)
    body_xml: bytes = field(repr=False)
    attachments: tuple[Attachment, ...] = ()

    def __post_init__(self) -> None:
        if self.fault is None and self.header is None:
            raise ValueError("a response that is not a fault has X-Road headers")

    @property
    def is_fault(self) -> bool:
        return self.fault is not None


def parse_soap_response(
    body: bytes,
    *,
    content_type: str | None,
    origin: Origin = Origin.SERVER_PROXY,
    limits: SoapLimits = DEFAULT_SOAP_LIMITS,
) -> SoapResponse:
    """Parse a SOAP answer (``text/xml``, SOAP with attachments or MTOM).

    Raises :class:`XwegError` blamed on ``origin`` with the packaging, XML, envelope and
    header codes that requests get (see :func:`adapters.soap.inbound.parse_soap_request`);
    the body of an answer that is not a Fault must be named ``<serviceCode>Response``.
    """
    if not isinstance(body, bytes):
        raise TypeError("body must be bytes")
    package = split_soap_message(content_type, body, limits=limits.mime, origin=origin)
    root = parse_xml(package.soap, limits=limits.xml, origin=origin)
    envelope = read_response_envelope(root, origin=origin)
    return SoapResponse(
        header=envelope.header,
        request_hash=envelope.request_hash,
        fault=envelope.fault,
        packaging=package.packaging,
        content_type=content_type or "",
        raw=body,
        soap=package.soap,
        header_xml=envelope.header_xml,
        body_xml=envelope.body_xml,
        attachments=package.attachments,
    )


def check_response_consistent(
    request: XRoadHeader, response: SoapResponse, *, origin: Origin = Origin.SERVER_PROXY
) -> None:
    """Refuse an answer whose X-Road headers differ from the request's.

    Faults are not checked (X-Road does not require headers on them).  Raises
    ``InconsistentResponse`` blamed on ``origin``, naming the first field that differs.
    """
    if response.fault is not None:
        return
    assert response.header is not None  # SoapResponse refuses a non-fault without headers
    for attribute, name in _ECHOED:
        if getattr(request, attribute) != getattr(response.header, attribute):
            raise XwegError(
                ErrorCode.INCONSISTENT_RESPONSE,
                f"the response is not consistent with the request: {name} differs",
                origin,
            )


def check_request_hash(
    request: SoapRequest, response: SoapResponse, *, origin: Origin = Origin.CLIENT_PROXY
) -> None:
    """Check the answer's ``xrd:requestHash`` against the request's SOAP bytes.

    Faults are not checked.  Raises ``InconsistentResponse`` blamed on ``origin`` when the
    hash is missing, names another algorithm than SHA-512, or differs.
    """
    if response.fault is not None:
        return
    given = response.request_hash
    if given is None:
        raise XwegError(ErrorCode.INCONSISTENT_RESPONSE, "the response carries no xrd:requestHash", origin)
    if given.algorithm_id != SHA512_ALGORITHM_ID:
        raise XwegError(
            ErrorCode.INCONSISTENT_RESPONSE,
            f"the response's request hash uses the unsupported algorithm {given.algorithm_id[:100]!r}",
            origin,
        )
    expected = base64.b64decode(request.request_hash.value)
    try:
        actual = base64.b64decode(given.value, validate=True)
    except (binascii.Error, ValueError):
        actual = b""
    if not hmac.compare_digest(expected, actual):
        raise XwegError(
            ErrorCode.INCONSISTENT_RESPONSE, "the response's request hash does not match the request", origin
        )
