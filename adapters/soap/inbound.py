"""X-Road SOAP 4.0, client side: take an information system's SOAP request apart.

Follows X-Road's client proxy: requests are HTTP POSTs (anything else is
``InvalidHttpMethod``) carrying ``text/xml`` or ``multipart/related`` (SOAP with
attachments, MTOM); the envelope is parsed by the hardened parser
(:mod:`adapters.soap.safexml`) and its X-Road headers validated
(:mod:`adapters.soap.envelope`).  The bytes are never re-serialised: the request keeps the
HTTP body exactly as received (what travels on, with its Content-Type and SOAPAction, the
only HTTP headers X-Road carries end to end) and the SOAP part exactly as received (what
X-Road's request hash covers, so a UTF-8 byte order mark stays in it).

Where a request may arrive (any path, absolute-form targets), reading the body with a
size cap and answering are left to the HTTP server; this module is pure: bytes in, a
:class:`SoapRequest` or an :class:`core.errors.XwegError` (origin ``Client``) out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.soap.envelope import RequestHash, XRoadHeader, compute_request_hash, read_request_envelope
from adapters.soap.mime import (
    DEFAULT_MIME_LIMITS,
    Attachment,
    MimeLimits,
    Packaging,
    split_soap_message,
)
from adapters.soap.safexml import DEFAULT_LIMITS, XmlLimits, parse_xml
from core.errors import ErrorCode, Origin, XwegError
from core.messages import MessageError, Protocol, Request, RequestHeader, sha512

__all__ = ["SoapLimits", "DEFAULT_SOAP_LIMITS", "SoapRequest", "parse_soap_request", "to_core_request"]


@dataclass(frozen=True, slots=True)
class SoapLimits:
    """Bounds on one SOAP message: its XML and its MIME packaging."""

    xml: XmlLimits = DEFAULT_LIMITS
    mime: MimeLimits = DEFAULT_MIME_LIMITS


DEFAULT_SOAP_LIMITS = SoapLimits()


@dataclass(frozen=True, slots=True)
class SoapRequest:
    """One X-Road SOAP request as the information system sent it, its headers validated.

    ``raw`` is the HTTP body exactly as received and ``content_type`` its Content-Type;
    ``soap`` is the envelope's bytes exactly as received (``raw`` itself unless multipart).
    ``header_xml`` and ``body_xml`` are the SOAP Header and the body's wrapper element, each
    serialised on its own (for echoing headers and reading the payload, never for hashing).
    """

    header: XRoadHeader
    packaging: Packaging
    content_type: str
    raw: bytes = field(repr=False)
    soap: bytes = field(repr=False)
    header_xml: bytes = field(repr=False)
    body_xml: bytes = field(repr=False)
    attachments: tuple[Attachment, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.header, XRoadHeader):
            raise TypeError("header must be an XRoadHeader")

    @property
    def request_hash(self) -> RequestHash:
        """X-Road's ``xrd:requestHash`` for this request: SHA-512 of the SOAP bytes as sent."""
        return compute_request_hash(self.soap)


def parse_soap_request(
    body: bytes,
    *,
    content_type: str | None,
    method: str = "POST",
    limits: SoapLimits = DEFAULT_SOAP_LIMITS,
) -> SoapRequest:
    """Parse one X-Road SOAP 4.0 request as the information system sent it.

    ``body`` is the HTTP body, ``content_type`` its Content-Type header (``None`` if it had
    none), ``method`` the HTTP method.  Returns the request or raises :class:`XwegError`
    blamed on the client, in the order X-Road checks: ``InvalidHttpMethod``;
    ``RequestTooLarge``; ``InvalidContentType``, ``MimeParsingFailed``, ``MissingSoap``
    (packaging); ``InvalidXml`` (not well-formed, DOCTYPE, encoding, depth, element count);
    then the envelope's and headers' codes of
    :func:`adapters.soap.envelope.read_request_envelope`.
    """
    if method != "POST":
        shown = method if len(method) <= 16 else method[:16] + "..."
        raise XwegError(
            ErrorCode.INVALID_HTTP_METHOD, f"Must use POST request method instead of {shown!r}", Origin.CLIENT
        )
    if not isinstance(body, bytes):
        raise TypeError("body must be bytes")
    package = split_soap_message(content_type, body, limits=limits.mime, origin=Origin.CLIENT)
    root = parse_xml(package.soap, limits=limits.xml, origin=Origin.CLIENT)
    envelope = read_request_envelope(root, origin=Origin.CLIENT)
    return SoapRequest(
        header=envelope.header,
        packaging=package.packaging,
        content_type=content_type or "",
        raw=body,
        soap=package.soap,
        header_xml=envelope.header_xml,
        body_xml=envelope.body_xml,
        attachments=package.attachments,
    )


def to_core_request(request: SoapRequest, *, soap_action: str | None = None) -> Request:
    """The core message for a parsed SOAP request: what is signed, logged and forwarded.

    The body is the HTTP body exactly as received; ``Content-Type`` and, if the client sent
    one, ``SOAPAction`` travel as end-to-end headers.  Raises ``Client.InvalidRequest`` if
    a value breaks a bound of :mod:`core.messages` (e.g. a SOAPAction with a line break).
    """
    header = request.header
    headers = [("content-type", request.content_type)]
    if soap_action is not None:
        headers.append(("soapaction", soap_action))
    party = header.represented_party
    try:
        core_header = RequestHeader(
            protocol=Protocol.SOAP,
            client=header.client,
            service=header.service,
            message_id=header.message_id,
            method="POST",
            path="",
            query="",
            headers=tuple(headers),
            body_sha512=sha512(request.raw),
            body_size=len(request.raw),
            user_id=header.user_id,
            issue=header.issue,
            represented_party=party.text() if party is not None else None,
        )
    except MessageError as exc:
        raise XwegError(ErrorCode.INVALID_REQUEST, f"invalid request: {exc}", Origin.CLIENT) from exc
    return Request(core_header, request.raw)
