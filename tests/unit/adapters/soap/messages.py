"""Known-good X-Road SOAP messages for the SOAP adapter's tests, and builders to vary them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import pytest

from core.errors import ErrorCode, Origin, XwegError

T = TypeVar("T")

TEXT_XML = "text/xml; charset=utf-8"

# XROAD-PROTOCOL.md's own example request, byte for byte.
SPEC_REQUEST = b"""<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"
    xmlns:m="urn:example:meldewesen">
  <SOAP-ENV:Header>
    <xrd:client id:objectType="SUBSYSTEM">
      <id:xRoadInstance>NRW</id:xRoadInstance><id:memberClass>MUN</id:memberClass>
      <id:memberCode>05774020</id:memberCode><id:subsystemCode>meldewesen</id:subsystemCode>
    </xrd:client>
    <xrd:service id:objectType="SERVICE">
      <id:xRoadInstance>NRW</id:xRoadInstance><id:memberClass>MUN</id:memberClass>
      <id:memberCode>05711000</id:memberCode><id:subsystemCode>meldewesen</id:subsystemCode>
      <id:serviceCode>meldeauskunft</id:serviceCode><id:serviceVersion>v1</id:serviceVersion>
    </xrd:service>
    <xrd:id>0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10</xrd:id>
    <xrd:userId>DE0000000001</xrd:userId>
    <xrd:protocolVersion>4.0</xrd:protocolVersion>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body><m:meldeauskunft><m:familienname>Muster</m:familienname></m:meldeauskunft></SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""

MESSAGE_ID = "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"

CLIENT = (
    '<xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance>NRW</id:xRoadInstance>'
    "<id:memberClass>MUN</id:memberClass><id:memberCode>05774020</id:memberCode>"
    "<id:subsystemCode>meldewesen</id:subsystemCode></xrd:client>"
)
MEMBER_CLIENT = (
    '<xrd:client id:objectType="MEMBER"><id:xRoadInstance>NRW</id:xRoadInstance>'
    "<id:memberClass>MUN</id:memberClass><id:memberCode>05774020</id:memberCode></xrd:client>"
)
SERVICE = (
    '<xrd:service id:objectType="SERVICE"><id:xRoadInstance>NRW</id:xRoadInstance>'
    "<id:memberClass>MUN</id:memberClass><id:memberCode>05711000</id:memberCode>"
    "<id:subsystemCode>meldewesen</id:subsystemCode><id:serviceCode>meldeauskunft</id:serviceCode>"
    "<id:serviceVersion>v1</id:serviceVersion></xrd:service>"
)
ID = f"<xrd:id>{MESSAGE_ID}</xrd:id>"
USER_ID = "<xrd:userId>DE0000000001</xrd:userId>"
ISSUE = "<xrd:issue>AZ-2024-17</xrd:issue>"
VERSION = "<xrd:protocolVersion>4.0</xrd:protocolVersion>"
PARTY = (
    '<repr:representedParty xmlns:repr="http://x-road.eu/xsd/representation.xsd">'
    "<repr:partyClass>MUN</repr:partyClass><repr:partyCode>05774020</repr:partyCode>"
    "</repr:representedParty>"
)
HEADERS: tuple[str, ...] = (CLIENT, SERVICE, ID, USER_ID, VERSION)
BODY = "<m:meldeauskunft><m:familienname>Muster</m:familienname></m:meldeauskunft>"
RESPONSE_BODY = "<m:meldeauskunftResponse><m:wohnort>Bielefeld</m:wohnort></m:meldeauskunftResponse>"

_OPEN = (
    '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers" '
    'xmlns:m="urn:example:meldewesen">'
)


def envelope(headers: Sequence[str] | None = HEADERS, body: str | None = BODY, *, prolog: str = "") -> bytes:
    """An envelope with these header elements (``None``: no SOAP Header) and body content."""
    header = "" if headers is None else "<SOAP-ENV:Header>" + "".join(headers) + "</SOAP-ENV:Header>"
    body_part = "" if body is None else f"<SOAP-ENV:Body>{body}</SOAP-ENV:Body>"
    return (prolog + _OPEN + header + body_part + "</SOAP-ENV:Envelope>").encode("utf-8")


def without(headers: Sequence[str], *drop: str) -> tuple[str, ...]:
    return tuple(h for h in headers if h not in drop)


def replaced(headers: Sequence[str], old: str, new: str) -> tuple[str, ...]:
    return tuple(new if h == old else h for h in headers)


def multipart(
    parts: Sequence[tuple[Sequence[tuple[str, str]], bytes]], boundary: str = "MIME-b0undary"
) -> bytes:
    """A multipart body with CRLF framing: each part is (headers, content)."""
    chunks = []
    for headers, content in parts:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
        chunks.append(b"--" + boundary.encode() + b"\r\n" + head + b"\r\n" + content + b"\r\n")
    return b"".join(chunks) + b"--" + boundary.encode() + b"--\r\n"


@contextmanager
def quickly(seconds: float = 2.0) -> Iterator[None]:
    """Assert the block uses less than ``seconds`` of this process's CPU time.

    What is guarded is the work a hostile message makes (a parser that stops at its
    limits, not after reading everything): CPU time says that, while wall time also
    counts whatever else the shared test machine is running.
    """
    start = time.process_time()
    yield
    elapsed = time.process_time() - start
    assert elapsed < seconds, f"used {elapsed:.2f} s of CPU"


def refused(code: ErrorCode, call: Callable[[], T], origin: Origin = Origin.CLIENT) -> XwegError:
    """Run ``call``, expect our error with ``code`` blamed on ``origin``, return it."""
    with pytest.raises(XwegError) as info:
        call()
    assert info.value.code is code, info.value
    assert info.value.origin is origin, info.value
    return info.value
