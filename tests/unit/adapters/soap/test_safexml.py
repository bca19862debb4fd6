"""Hardened XML parsing, from the attacker's side: each attack is refused, quickly, with its code."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.soap.safexml import (
    DEFAULT_LIMITS,
    MAX_XML_BYTES,
    MAX_XML_DEPTH,
    MAX_XML_ELEMENTS,
    XmlLimits,
    parse_xml,
)
from core.errors import ErrorCode, Origin, XwegError
from tests.unit.adapters.soap.messages import quickly, refused

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz a="&lol9;">&lol9;</lolz>
"""


def invalid_xml(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> XwegError:
    with quickly():
        return refused(ErrorCode.INVALID_XML, lambda: parse_xml(data, limits=limits))


# --- accepted -------------------------------------------------------------------------------------


def test_parses_namespaces_text_cdata_and_comments() -> None:
    root = parse_xml(b'<a xmlns:m="urn:m"><m:b>x<!--c-->y<![CDATA[<z>&]]></m:b>&amp;&#65;</a>')
    assert root.tag == "a"
    child = root[0]
    assert child.tag == "{urn:m}b"
    assert "".join(child.itertext()) == "xy<z>&"
    assert child.tail == "&A"


def test_utf8_with_byte_order_mark_and_declaration_is_accepted() -> None:
    root = parse_xml(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8" standalone="yes"?><a>\xc3\xa4</a>')
    assert root.text == "\u00e4"
    assert parse_xml(b"<?xml version='1.0' encoding='UTF-8'?><a/>").tag == "a"


def test_doctype_text_inside_cdata_is_content_not_a_doctype() -> None:
    root = parse_xml(b"<a><![CDATA[<!DOCTYPE html><html/>]]></a>")
    assert root.text == "<!DOCTYPE html><html/>"


def test_limits_are_inclusive() -> None:
    limits = XmlLimits(max_bytes=10_000, max_depth=5, max_elements=20)
    assert parse_xml(b"<a>" * 5 + b"</a>" * 5, limits=limits).tag == "a"
    assert len(parse_xml(b"<a>" + b"<b/>" * 19 + b"</a>", limits=limits)) == 19
    exact = b"<a>" + b"x" * (10_000 - 7) + b"</a>"
    assert len(exact) == 10_000
    assert parse_xml(exact, limits=limits).text == "x" * (10_000 - 7)


def test_default_limits() -> None:
    assert MAX_XML_BYTES == 10 * 1024 * 1024
    assert MAX_XML_DEPTH == 128
    assert MAX_XML_ELEMENTS == 100_000
    with pytest.raises(ValueError):
        XmlLimits(max_depth=0)


# --- entity and DTD attacks -----------------------------------------------------------------------


def test_billion_laughs_is_refused() -> None:
    error = invalid_xml(BILLION_LAUGHS)
    assert error.http_status == 400
    assert "lol" not in error.message


@pytest.mark.parametrize(
    "document",
    [
        b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>',
        b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><x/>',
        b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>',
        b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "/etc/hostname">]><x a="1">&xxe;</x>',
    ],
)
def test_external_file_entity_is_refused_and_not_read(document: bytes) -> None:
    error = invalid_xml(document)
    assert "root:" not in error.message


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP listener that records every connection made to it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    seen.append(conn.recv(1024))
                except OSError:
                    seen.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.mark.parametrize(
    "template",
    [
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/secret">]><x>&xxe;</x>',
        '<!DOCTYPE x SYSTEM "http://127.0.0.1:{port}/evil.dtd"><x/>',
        '<!DOCTYPE x [<!ENTITY % remote SYSTEM "http://127.0.0.1:{port}/evil.dtd"> %remote;]><x/>',
    ],
)
def test_http_entity_is_refused_without_a_network_request(
    template: str, listener: tuple[int, list[bytes]]
) -> None:
    port, seen = listener
    invalid_xml(template.format(port=port).encode())
    # Give a (wrongly) started fetch time to arrive before looking.
    threading.Event().wait(0.3)
    assert seen == []


def test_internal_subset_without_entities_is_refused() -> None:
    error = invalid_xml(b'<!DOCTYPE a [<!ELEMENT a (#PCDATA)><!ATTLIST a b CDATA "x">]><a/>')
    assert "DOCTYPE" in error.message


def test_doctype_after_a_long_prolog_is_still_refused() -> None:
    # The DOCTYPE arrives in a later chunk than the first bytes fed to the parser.
    prolog = b"<!--" + b"x" * 100_000 + b"-->"
    error = invalid_xml(prolog + b"<!DOCTYPE a><a/>")
    assert "DOCTYPE" in error.message


def test_undefined_entity_is_refused() -> None:
    invalid_xml(b"<a>&nbsp;</a>")


# --- size and shape -------------------------------------------------------------------------------


def test_deep_nesting_is_refused() -> None:
    error = invalid_xml(b"<a>" * 129 + b"</a>" * 129)
    assert "deeper than 128" in error.message


def test_very_deep_nesting_is_refused_quickly() -> None:
    invalid_xml(b"<a>" * 1_000_000)


def test_too_many_elements_is_refused() -> None:
    error = invalid_xml(b"<a>" + b"<b/>" * 100_001 + b"</a>")
    assert "more than 100000 elements" in error.message


def test_too_many_elements_within_the_size_limit_is_refused_quickly() -> None:
    # About 2.6 million elements in 10 MiB: refused after the first 100,000.
    body = b"<a>" + b"<b/>" * ((MAX_XML_BYTES - 7) // 4) + b"</a>"
    assert len(body) <= MAX_XML_BYTES
    invalid_xml(body)


def test_oversize_document_is_refused_before_parsing() -> None:
    body = b"<a>" + b"x" * MAX_XML_BYTES + b"</a>"
    with quickly(0.5):
        error = refused(ErrorCode.REQUEST_TOO_LARGE, lambda: parse_xml(body))
    assert error.http_status == 413


def test_many_attributes_cost_bounded_time() -> None:
    body = b"<a " + b" ".join(b'a%d=""' % i for i in range(900_000)) + b"/>"
    assert len(body) <= MAX_XML_BYTES
    with quickly(5.0):
        root = parse_xml(body)
    assert len(root.attrib) == 900_000


# --- malformed input and encodings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"   \n",
        b"<a>",
        b"<a></b>",
        b"<a/><b/>",
        b"not xml",
        b"<a xmlns:x='urn:x'><y:b/></a>",  # undeclared prefix
        b"<a>\xff</a>",  # not UTF-8
        b"<a>\x00</a>",
        b"<a b='1' b='2'/>",
    ],
)
def test_malformed_xml_is_refused(document: bytes) -> None:
    invalid_xml(document)


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0" encoding="ISO-8859-1"?><a>a</a>',
        b'<?xml version="1.0" encoding="UTF-7"?><a>+ADw-b/+AD4-</a>',
        b'<?xml version="1.0" encoding="UTF-16"?><a/>',
        '<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16"),
        b'<?xml version="1.1"?><a/>',
        b"<?xml encoding='utf-8'?><a/>",
    ],
)
def test_other_encodings_and_bad_declarations_are_refused(document: bytes) -> None:
    # A document that means one thing in UTF-8 and another in its declared encoding would
    # let a backend see a different message than the one checked here.
    invalid_xml(document)


def test_errors_are_blamed_on_the_given_origin() -> None:
    with pytest.raises(XwegError) as info:
        parse_xml(b"<a>", origin=Origin.SERVER_PROXY)
    assert info.value.fault_code == "Server.ServerProxy.InvalidXml"
    assert info.value.http_status == 500


def test_only_bytes_are_parsed() -> None:
    with pytest.raises(TypeError):
        parse_xml("<a/>")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.lists(
            st.sampled_from(
                [
                    b"<a>",
                    b"</a>",
                    b"<b/>",
                    b"<!DOCTYPE a>",
                    b"&lol;",
                    b"&amp;",
                    b"<![CDATA[",
                    b"]]>",
                    b"<!--",
                    b"-->",
                ]
                + [b"<?xml version='1.0'?>", b"x", b"\xff", b"\x00", b"<x:y>", b'xmlns:x="u"', b"&#0;"]
            ),
            max_size=30,
        ).map(b"".join),
    )
)
def test_parser_returns_an_element_or_raises_our_error(data: bytes) -> None:
    limits = XmlLimits(max_bytes=10_000, max_depth=8, max_elements=16)
    try:
        root = parse_xml(data, limits=limits)
    except XwegError as error:
        assert error.code in {ErrorCode.INVALID_XML, ErrorCode.REQUEST_TOO_LARGE}
        assert error.origin is Origin.CLIENT
    else:
        assert isinstance(root.tag, str)
        assert not root.getroottree().docinfo.doctype
