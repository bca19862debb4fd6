"""SOAP packaging: text/xml, SOAP with attachments, MTOM; framing attacks and their codes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.soap.mime import (
    DEFAULT_MIME_LIMITS,
    MAX_PARTS,
    Attachment,
    MediaType,
    MimeLimits,
    Packaging,
    SoapPackage,
    encode_multipart_related,
    parse_media_type,
    split_soap_message,
)
from core.errors import ErrorCode, Origin, XwegError
from tests.unit.adapters.soap.messages import envelope, multipart, quickly, refused

SOAP = envelope()
PDF = b"%PDF-1.7\r\n\x00\xff binary \r\n--not-a-boundary\r\n"
SWA_TYPE = 'multipart/related; type="text/xml"; boundary="MIME-b0undary"; start="<soap@x>"'
MTOM_TYPE = (
    'multipart/related; type="application/xop+xml"; boundary=MIME-b0undary; '
    'start="<soap@x>"; start-info="text/xml"'
)
SOAP_PART = [("Content-Type", "text/xml; charset=UTF-8"), ("Content-ID", "<soap@x>")]
MTOM_PART = [
    ("Content-Type", 'application/xop+xml; charset=UTF-8; type="text/xml"'),
    ("Content-ID", "<soap@x>"),
]
PDF_PART = [("Content-Type", "application/pdf"), ("Content-ID", "<antrag.pdf@x>")]


def split(content_type: str | None, body: bytes, limits: MimeLimits = DEFAULT_MIME_LIMITS) -> SoapPackage:
    return split_soap_message(content_type, body, limits=limits)


# --- media types ----------------------------------------------------------------------------------


def test_media_type_parameters_are_unquoted_and_names_lower_cased() -> None:
    media = parse_media_type('Multipart/Related; TYPE="text/xml" ;boundary=abc; start="<a\\"b@x>"')
    assert media == MediaType(
        "multipart/related", (("type", "text/xml"), ("boundary", "abc"), ("start", '<a"b@x>'))
    )
    assert media.param("boundary") == "abc"
    assert media.param("charset") is None


def test_empty_parameters_are_allowed() -> None:
    assert parse_media_type("text/xml;") == MediaType("text/xml")
    assert parse_media_type("text/xml; ;charset=utf-8;") == MediaType("text/xml", (("charset", "utf-8"),))


@pytest.mark.parametrize(
    "value",
    [None, "", "  ", "text", "text/", "text/xml; charset", "text/xml; charset=",
     "text/xml garbage", "text/xml; a=1; a=2", "text/xml; charset=\"utf-8", "text/xml\r\nX: y",
     "text/xml; x=" + "a" * 5000],
)  # fmt: skip
def test_malformed_content_types_are_refused(value: str | None) -> None:
    refused(ErrorCode.INVALID_CONTENT_TYPE, lambda: parse_media_type(value))


# --- plain text/xml -------------------------------------------------------------------------------


def test_text_xml_body_is_the_envelope_unchanged() -> None:
    package = split("text/xml", SOAP)
    assert package.packaging is Packaging.PLAIN
    assert package.soap is SOAP
    assert package.attachments == ()
    assert split("TEXT/XML; charset=UTF-8", SOAP).soap == SOAP


@pytest.mark.parametrize(
    "content_type",
    ["application/soap+xml; charset=utf-8", "application/xml", "text/plain", "application/json"],
)
def test_other_content_types_are_refused(content_type: str) -> None:
    refused(ErrorCode.INVALID_CONTENT_TYPE, lambda: split(content_type, SOAP))


def test_missing_content_type_is_refused() -> None:
    refused(ErrorCode.INVALID_CONTENT_TYPE, lambda: split(None, SOAP))


def test_charsets_other_than_utf8_are_refused() -> None:
    error = refused(ErrorCode.INVALID_CONTENT_TYPE, lambda: split("text/xml; charset=ISO-8859-1", SOAP))
    assert "UTF-8" in error.message


def test_oversize_message_is_refused() -> None:
    error = refused(
        ErrorCode.REQUEST_TOO_LARGE, lambda: split("text/xml", SOAP, MimeLimits(max_message_bytes=100))
    )
    assert error.http_status == 413


# --- SOAP with attachments and MTOM ---------------------------------------------------------------


def test_soap_with_attachments() -> None:
    body = multipart([(SOAP_PART, SOAP), (PDF_PART, PDF)])
    package = split(SWA_TYPE, body)
    assert package.packaging is Packaging.SWA
    assert package.soap == SOAP
    assert package.attachments == (Attachment("antrag.pdf@x", "application/pdf", PDF),)


def test_mtom() -> None:
    body = multipart([(MTOM_PART, SOAP), (PDF_PART, PDF)])
    package = split(MTOM_TYPE, body)
    assert package.packaging is Packaging.MTOM
    assert package.soap == SOAP
    assert package.attachments[0].data == PDF


def test_a_start_naming_the_first_part_is_the_root() -> None:
    body = multipart([(SOAP_PART, SOAP), (PDF_PART, PDF)])
    package = split(SWA_TYPE, body)
    assert package.soap == SOAP
    assert [a.content_id for a in package.attachments] == ["antrag.pdf@x"]


def test_a_start_naming_a_later_part_is_refused() -> None:
    # Servers check the part 'start' names but forward the whole message; a backend taking
    # the first part as the envelope would read an unchecked one (here a PDF, or a second
    # envelope with another client).
    body = multipart([(PDF_PART, PDF), (SOAP_PART, SOAP)])
    with pytest.raises(XwegError) as info:
        split(SWA_TYPE, body)
    assert info.value.code is ErrorCode.MIME_PARSING_FAILED
    assert "must be the first part" in info.value.message


def test_without_start_the_first_part_is_the_root() -> None:
    body = multipart([(SOAP_PART, SOAP), (PDF_PART, PDF)])
    package = split('multipart/related; type="text/xml"; boundary="MIME-b0undary"', body)
    assert package.soap == SOAP


def test_preamble_epilogue_and_transport_padding_are_ignored() -> None:
    body = multipart([(SOAP_PART, SOAP), (PDF_PART, PDF)])
    body = b"preamble text\r\n" + body.replace(b"--MIME-b0undary\r\n", b"--MIME-b0undary \t\r\n", 1)
    body += b"epilogue --MIME-b0undary\r\n"
    assert split(SWA_TYPE, body).soap == SOAP


def test_boundary_text_inside_content_is_not_a_delimiter() -> None:
    tricky = b"line\r\n--MIME-b0undaryX is content\r\n--MIME-b0undary- also"
    body = multipart([(SOAP_PART, SOAP), (PDF_PART, tricky)])
    assert split(SWA_TYPE, body).attachments[0].data == tricky


def test_base64_attachments_are_decoded_and_folded_headers_unfolded() -> None:
    encoded = base64.encodebytes(PDF)  # with line breaks, as mail software writes it
    headers = [
        ("Content-Type", "application/pdf;\r\n\tname=antrag.pdf"),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-ID", "<antrag.pdf@x>"),
    ]
    package = split(SWA_TYPE, multipart([(SOAP_PART, SOAP), (headers, encoded)]))
    assert package.attachments == (Attachment("antrag.pdf@x", "application/pdf; name=antrag.pdf", PDF),)


def test_root_bytes_are_exact_even_with_crlf_and_bom() -> None:
    soap = b"\xef\xbb\xbf" + SOAP.replace(b"><", b">\r\n<")
    package = split(SWA_TYPE, multipart([(SOAP_PART, soap)]))
    assert package.soap == soap


# --- refusals -------------------------------------------------------------------------------------


def test_multipart_without_the_start_part_is_missing_soap() -> None:
    body = multipart([(PDF_PART, PDF)])
    error = refused(ErrorCode.MISSING_SOAP, lambda: split(SWA_TYPE, body))
    assert "start" in error.message


def test_empty_multipart_is_missing_soap() -> None:
    refused(ErrorCode.MISSING_SOAP, lambda: split(SWA_TYPE, b"--MIME-b0undary--\r\n"))


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/related; type="text/xml"',
        'multipart/related; boundary=""',
        "multipart/related; boundary=" + "a" * 71,
    ],
)
def test_missing_or_bad_boundary_is_refused(content_type: str) -> None:
    body = multipart([(SOAP_PART, SOAP)])
    refused(ErrorCode.MIME_PARSING_FAILED, lambda: split(content_type, body))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        SOAP,  # no delimiter at all
        b"--MIME-b0undary\r\nContent-Type: text/xml\r\n\r\n" + SOAP,  # never closed
        b"--MIME-b0undary\r\nContent-Type text/xml\r\n\r\n" + SOAP + b"\r\n--MIME-b0undary--",
        b"--MIME-b0undary\r\n Content-Type: text/xml\r\n\r\n" + SOAP + b"\r\n--MIME-b0undary--",
        b"--MIME-b0undary\r\nContent-Type: text/xml" + SOAP + b"\r\n--MIME-b0undary--",  # no empty line
        b"--MIME-b0undary\r\nContent-Type: text/xml\r\nContent-Type: text/xml\r\n\r\n"
        + SOAP
        + b"\r\n--MIME-b0undary--",
        b"--MIME-b0undary\r\nContent-Type: text/xml\r\nX-N\xc3\xa4me: 1\r\n\r\n"
        + SOAP
        + b"\r\n--MIME-b0undary--",
        b"--MIME-b0undary\r\nContent-Type: text/xml\r\nX: \xc3\xa4\r\n\r\n" + SOAP + b"\r\n--MIME-b0undary--",
    ],
)
def test_broken_framing_is_refused(body: bytes) -> None:
    refused(ErrorCode.MIME_PARSING_FAILED, lambda: split('multipart/related; boundary="MIME-b0undary"', body))


def test_multipart_bomb_is_refused_quickly() -> None:
    part = b"--b\r\n\r\nx\r\n"
    body = b"--b\r\nContent-Type: text/xml\r\n\r\n" + SOAP + b"\r\n" + part * 500_000 + b"--b--\r\n"
    with quickly():
        error = refused(ErrorCode.MIME_PARSING_FAILED, lambda: split("multipart/related; boundary=b", body))
    assert f"more than {MAX_PARTS} parts" in error.message


def test_near_miss_delimiters_cost_linear_time() -> None:
    body = b"--b\r\nContent-Type: text/xml\r\n\r\n" + SOAP + b"\r\n--bX" * 2_000_000 + b"\r\n--b--"
    with quickly():
        package = split("multipart/related; boundary=b", body, MimeLimits(max_message_bytes=64 * 1024 * 1024))
    assert package.soap.startswith(SOAP)


def test_header_bomb_in_a_part_is_refused() -> None:
    headers = [("Content-Type", "text/xml")] + [(f"X-H{i}", "v") for i in range(40)]
    refused(ErrorCode.MIME_PARSING_FAILED, lambda: split(SWA_TYPE, multipart([(headers, SOAP)])))
    long_header = [("Content-Type", "text/xml"), ("X-Long", "v" * 10_000)]
    refused(ErrorCode.MIME_PARSING_FAILED, lambda: split(SWA_TYPE, multipart([(long_header, SOAP)])))


def test_unterminated_headers_of_any_size_are_refused() -> None:
    body = b"--b\r\nX: " + b"v" * 1_000_000 + b"\r\n--b--"
    with quickly():
        refused(ErrorCode.MIME_PARSING_FAILED, lambda: split("multipart/related; boundary=b", body))


def test_duplicate_content_ids_are_refused() -> None:
    body = multipart([(SOAP_PART, SOAP), (PDF_PART, PDF), (PDF_PART, PDF)])
    error = refused(ErrorCode.MIME_PARSING_FAILED, lambda: split(SWA_TYPE, body))
    assert "antrag.pdf@x" in error.message


@pytest.mark.parametrize(
    "content_type, root_headers",
    [
        (SWA_TYPE, [("Content-Type", "application/pdf"), ("Content-ID", "<soap@x>")]),
        (SWA_TYPE, [("Content-ID", "<soap@x>")]),
        (SWA_TYPE, [("Content-Type", "text/xml; charset=ISO-8859-1"), ("Content-ID", "<soap@x>")]),
        (SWA_TYPE, MTOM_PART),  # declared text/xml, root is xop
        (MTOM_TYPE, SOAP_PART),  # declared xop, root is text/xml
        (
            MTOM_TYPE,
            [
                ("Content-Type", 'application/xop+xml; type="application/soap+xml"'),
                ("Content-ID", "<soap@x>"),
            ],
        ),
    ],
)
def test_root_part_of_the_wrong_type_is_refused(
    content_type: str, root_headers: list[tuple[str, str]]
) -> None:
    body = multipart([(root_headers, SOAP)])
    refused(ErrorCode.INVALID_CONTENT_TYPE, lambda: split(content_type, body))


def test_transfer_encoded_root_or_unknown_encodings_are_refused() -> None:
    encoded_root = [*SOAP_PART, ("Content-Transfer-Encoding", "base64")]
    body = multipart([(encoded_root, base64.b64encode(SOAP))])
    refused(ErrorCode.MIME_PARSING_FAILED, lambda: split(SWA_TYPE, body))
    qp = [*PDF_PART, ("Content-Transfer-Encoding", "quoted-printable")]
    refused(ErrorCode.MIME_PARSING_FAILED, lambda: split(SWA_TYPE, multipart([(SOAP_PART, SOAP), (qp, PDF)])))
    bad64 = [*PDF_PART, ("Content-Transfer-Encoding", "base64")]
    refused(
        ErrorCode.MIME_PARSING_FAILED, lambda: split(SWA_TYPE, multipart([(SOAP_PART, SOAP), (bad64, b"**")]))
    )


def test_errors_are_blamed_on_the_given_origin() -> None:
    with pytest.raises(XwegError) as info:
        split_soap_message("application/json", SOAP, origin=Origin.SERVER_PROXY)
    assert info.value.fault_code == "Server.ServerProxy.InvalidContentType"


# --- writing and round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("packaging", [Packaging.SWA, Packaging.MTOM])
def test_encoded_multipart_splits_back_into_the_same_parts(packaging: Packaging) -> None:
    attachments = (Attachment("a@x", "application/pdf", PDF), Attachment(None, None, b""))
    content_type, body = encode_multipart_related(SOAP, attachments, packaging=packaging, boundary="zz")
    package = split(content_type, body)
    assert package.packaging is packaging
    assert package.soap == SOAP
    assert package.attachments == attachments


def test_encoder_refuses_a_boundary_found_in_content_and_plain_packaging() -> None:
    with pytest.raises(ValueError):
        encode_multipart_related(
            SOAP, [Attachment("a", None, b"x\r\n--zz\r\n")], packaging=Packaging.SWA, boundary="zz"
        )
    with pytest.raises(ValueError):
        encode_multipart_related(SOAP, [], packaging=Packaging.PLAIN)


content_ids = st.from_regex(r"[a-z0-9.]{1,12}@[a-z]{1,6}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(content_ids, st.binary(max_size=300)), max_size=6, unique_by=lambda t: t[0]),
    st.sampled_from([Packaging.SWA, Packaging.MTOM]),
)
def test_round_trip_of_any_attachments(parts: list[tuple[str, bytes]], packaging: Packaging) -> None:
    attachments = tuple(Attachment(cid, "application/octet-stream", data) for cid, data in parts)
    content_type, body = encode_multipart_related(SOAP, attachments, packaging=packaging)
    package = split(content_type, body)
    assert package.soap == SOAP
    assert package.attachments == attachments


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["multipart/related; boundary=b", SWA_TYPE, "text/xml", "multipart/related"]),
    st.lists(
        st.sampled_from(
            [b"--b", b"--MIME-b0undary", b"\r\n", b"--", b"Content-Type: text/xml", b"Content-ID: <soap@x>"]
            + [b": ", b"x", b"\r\n\r\n", b"Content-Transfer-Encoding: base64", b" ", b"\xff"]
        ),
        max_size=30,
    ).map(b"".join),
)
def test_splitter_returns_a_package_or_raises_our_error(content_type: str, body: bytes) -> None:
    try:
        package = split(content_type, body)
    except XwegError as error:
        assert error.origin is Origin.CLIENT
        assert error.code in {
            ErrorCode.MIME_PARSING_FAILED,
            ErrorCode.MISSING_SOAP,
            ErrorCode.INVALID_CONTENT_TYPE,
        }
    else:
        assert package.soap in body
