"""The X-Road SOAP headers of a request, as lxml elements.

:func:`header_elements` writes an :class:`~adapters.soap.envelope.XRoadHeader` as the
SOAP header elements X-Road's message protocol 4.0 names, in its order.  The security
server writes them into the requests of its metadata services, and the zeep-based client
of :mod:`adapters.soap.client` into every call; this module needs lxml only, so that a
security server never loads zeep or ``requests`` for it.  Reading the headers of a
request is left to :mod:`adapters.soap.envelope`.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from adapters.soap.envelope import NS_ID, NS_REPR, NS_XROAD, XRoadHeader
from core.identifiers import SubsystemId

__all__ = ["header_elements"]


def _x(name: str) -> str:
    return f"{{{NS_XROAD}}}{name}"


def _id(name: str) -> str:
    return f"{{{NS_ID}}}{name}"


_NSMAP = {"xrd": NS_XROAD, "id": NS_ID}


def _identifier(tag: str, object_type: str, parts: Sequence[tuple[str, str | None]]) -> etree._Element:
    element = etree.Element(tag, {_id("objectType"): object_type}, nsmap=_NSMAP)
    for name, value in parts:
        if value is not None:
            etree.SubElement(element, _id(name)).text = value
    return element


def header_elements(header: XRoadHeader) -> list[etree._Element]:
    """The SOAP header elements for ``header``, in X-Road's order.

    ``xrd:client``, ``xrd:service``, ``xrd:id``, then ``xrd:userId`` and ``xrd:issue`` if
    set, ``xrd:protocolVersion`` and ``repr:representedParty`` if set.
    """
    client = header.client
    subsystem = client.subsystem_code if isinstance(client, SubsystemId) else None
    service = header.service
    provider = service.provider
    elements = [
        _identifier(
            _x("client"),
            client.object_type.value,
            (
                ("xRoadInstance", client.instance),
                ("memberClass", client.member_class),
                ("memberCode", client.member_code),
                ("subsystemCode", subsystem),
            ),
        ),
        _identifier(
            _x("service"),
            "SERVICE",
            (
                ("xRoadInstance", provider.instance),
                ("memberClass", provider.member_class),
                ("memberCode", provider.member_code),
                ("subsystemCode", provider.subsystem_code),
                ("serviceCode", service.service_code),
                ("serviceVersion", service.service_version),
            ),
        ),
    ]
    simple = (
        ("id", header.message_id),
        ("userId", header.user_id),
        ("issue", header.issue),
        ("protocolVersion", header.protocol_version),
    )
    for name, value in simple:
        if value is not None:
            element = etree.Element(_x(name), nsmap={"xrd": NS_XROAD})
            element.text = value
            elements.append(element)
    party = header.represented_party
    if party is not None:
        represented = etree.Element(f"{{{NS_REPR}}}representedParty", nsmap={"repr": NS_REPR})
        if party.party_class is not None:
            etree.SubElement(represented, f"{{{NS_REPR}}}partyClass").text = party.party_class
        etree.SubElement(represented, f"{{{NS_REPR}}}partyCode").text = party.party_code
        elements.append(represented)
    return elements
