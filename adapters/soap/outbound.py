"""X-Road SOAP 4.0: what goes back to the information system, answers and faults.

An answer echoes all of the request's SOAP headers unchanged and adds ``xrd:requestHash``
(``algorithmId`` ``http://www.w3.org/2001/04/xmlenc#sha512``, base64 of the SHA-512 of the
request's SOAP bytes exactly as the client sent them), around the provider's body element.

A failure of the exchange layer is a SOAP 1.1 ``Fault`` written as X-Road's security
server writes it: ``faultcode`` the X-Road fault code unqualified
(``Server.ServerProxy.AccessDenied``), ``faultstring`` the message, an empty
``faultactor``, and ``detail/faultDetail`` the correlation id that the server's log also
records.  X-Road answers faults with HTTP status 200 and ``text/xml; charset=UTF-8``;
clients written against it read the fault from the body, so xweg does the same.

Writing the HTTP response, and packing attachments as multipart
(:func:`adapters.soap.mime.encode_multipart_related`), are left to the caller.
"""

from __future__ import annotations

import copy

from lxml import etree

from adapters.soap.envelope import NS_ID, NS_SOAP_ENV, NS_XROAD
from adapters.soap.inbound import SoapRequest
from adapters.soap.safexml import DEFAULT_LIMITS, XmlLimits, parse_xml
from core.errors import Origin, XwegError

__all__ = [
    "SOAP_CONTENT_TYPE",
    "FAULT_HTTP_STATUS",
    "render_soap_response",
    "render_soap_fault",
    "fault_envelope",
]

#: The Content-Type of every envelope xweg writes.
SOAP_CONTENT_TYPE = "text/xml; charset=UTF-8"
#: X-Road's security server answers SOAP faults with 200 OK (its proxies' sendErrorResponse).
FAULT_HTTP_STATUS = 200

_NSMAP = {"SOAP-ENV": NS_SOAP_ENV}


def _xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot carry replaced by U+FFFD."""

    def allowed(ch: str) -> bool:
        code = ord(ch)
        return (
            code in (0x9, 0xA, 0xD)
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF
        )

    return "".join(ch if allowed(ch) else "\ufffd" for ch in text)


def _tostring(envelope: etree._Element) -> bytes:
    data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return data


def render_soap_response(
    request: SoapRequest,
    body_xml: bytes,
    *,
    limits: XmlLimits = DEFAULT_LIMITS,
    origin: Origin = Origin.SERVER_PROXY,
) -> bytes:
    """The response envelope for ``request`` around the provider's body element ``body_xml``.

    The header holds copies of all the request's header elements, in order, followed by
    ``xrd:requestHash``.  ``body_xml`` is parsed by the hardened parser (a failure is
    ``InvalidXml`` blamed on ``origin``) and must be one element, as
    :func:`adapters.soap.response.parse_soap_response` returns it.
    """
    body_element = parse_xml(body_xml, limits=limits, origin=origin)
    request_header = parse_xml(request.header_xml, origin=Origin.CLIENT)

    envelope = etree.Element(
        f"{{{NS_SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": NS_SOAP_ENV, "xrd": NS_XROAD, "id": NS_ID}
    )
    header = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Header")
    header.text = request_header.text
    for child in request_header:
        header.append(copy.deepcopy(child))
    request_hash = request.request_hash
    hash_element = etree.SubElement(
        header, f"{{{NS_XROAD}}}requestHash", algorithmId=request_hash.algorithm_id
    )
    hash_element.text = request_hash.value
    body = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Body")
    body.append(body_element)
    return _tostring(envelope)


def fault_envelope(fault_code: str, fault_string: str, detail: str | None) -> bytes:
    """A SOAP 1.1 Fault envelope as X-Road writes it (see the module docstring)."""
    envelope = etree.Element(f"{{{NS_SOAP_ENV}}}Envelope", nsmap=_NSMAP)
    body = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{NS_SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = _xml_text(fault_code)
    etree.SubElement(fault, "faultstring").text = _xml_text(fault_string)
    etree.SubElement(fault, "faultactor").text = ""
    if detail is not None:
        etree.SubElement(etree.SubElement(fault, "detail"), "faultDetail").text = _xml_text(detail)
    return _tostring(envelope)


def render_soap_fault(error: XwegError) -> tuple[int, list[tuple[str, str]], bytes]:
    """X-Road's SOAP fault for an exchange-layer failure: ``(status, headers, body)``.

    ``faultcode`` is ``error.fault_code`` (who failed, then what), ``faultstring`` its
    message and ``detail/faultDetail`` its correlation id.
    """
    body = fault_envelope(error.fault_code, error.message, error.correlation_id)
    return FAULT_HTTP_STATUS, [("Content-Type", SOAP_CONTENT_TYPE)], body
