"""X-Road REST r1 request parsing: golden requests, each refusal's code, traversal, fuzz."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from urllib.parse import unquote

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from adapters.rest.inbound import MAX_INPUT_HEADERS, MAX_TARGET_LENGTH, check_rest_path, parse_rest_request
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import MemberId, ServiceId, SubsystemId
from core.messages import MAX_HEADERS, Protocol, Request, sha512

SERVICE = "/r1/NRW/MUN/05774032/gewerbeamt/gewerbeanzeige"
CLIENT = ("X-Road-Client", "NRW/MUN/05774020/meldewesen")
GENERATED_ID = "generated-0001"


def parse(
    target: str = SERVICE,
    headers: Sequence[tuple[str, str]] = (CLIENT,),
    body: bytes = b"",
    method: str = "GET",
) -> Request:
    return parse_rest_request(method, target, headers, body, new_message_id=lambda: GENERATED_ID)


def refused(
    code: ErrorCode,
    target: str = SERVICE,
    headers: Sequence[tuple[str, str]] = (CLIENT,),
    body: bytes = b"",
    method: str = "GET",
) -> XwegError:
    """Parse, expect a refusal with ``code`` blamed on the client, return the error."""
    with pytest.raises(XwegError) as info:
        parse(target, headers, body, method)
    assert info.value.code is code, info.value
    assert info.value.origin is Origin.CLIENT
    assert info.value.http_status == 400
    return info.value


# --- golden -------------------------------------------------------------------------------------


def test_golden_request() -> None:
    body = b'{"betrieb":"Tischlerei Muster"}'
    request = parse(
        method="POST",
        target=SERVICE + "/anzeigen/2024%2D17?status=offen&seite=2",
        headers=[
            ("Host", "ss.delbrueck.example"),
            ("X-Road-Client", "NRW/MUN/05774020/meldewesen"),
            ("x-road-id", "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"),
            ("X-Road-UserId", "DE0000000001"),
            ("X-ROAD-ISSUE", "AZ-2024-17"),
            ("X-Road-Represented-Party", "MUN/05774020"),
            ("X-Road-Security-Server", "NRW/MUN/05774020/ss1"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("User-Agent", "curl/8"),
            ("Accept", "application/json"),
            ("Connection", "keep-alive, X-Trace-Hop"),
            ("X-Trace-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Accept", "text/plain"),
            ("Expect", "100-continue"),
            ("Authorization", "Bearer abc"),
        ],
        body=body,
    )
    header = request.header
    assert request.body == body
    assert header.protocol is Protocol.REST
    assert header.client == SubsystemId("NRW", "MUN", "05774020", "meldewesen")
    assert header.service == ServiceId(SubsystemId("NRW", "MUN", "05774032", "gewerbeamt"), "gewerbeanzeige")
    assert header.service.service_version is None
    assert header.message_id == "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"
    assert header.method == "POST"
    assert header.path == "/anzeigen/2024%2D17"  # kept as received, still encoded
    assert header.query == "status=offen&seite=2"
    assert header.headers == (
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("accept", "text/plain"),
        ("authorization", "Bearer abc"),
    )
    assert header.body_sha512 == sha512(body)
    assert header.body_size == len(body)
    assert header.user_id == "DE0000000001"
    assert header.issue == "AZ-2024-17"
    assert header.represented_party == "MUN/05774020"


def test_minimal_request_gets_a_new_message_id() -> None:
    header = parse().header
    assert header.message_id == GENERATED_ID
    assert header.path == ""
    assert header.query == ""
    assert header.headers == ()
    assert header.user_id is None and header.issue is None and header.represented_party is None
    assert header.body_size == 0


def test_member_as_client() -> None:
    assert parse(headers=[("x-road-client", "NRW/MUN/05774020")]).header.client == MemberId(
        "NRW", "MUN", "05774020"
    )


@pytest.mark.parametrize(
    "target, path, query",
    [
        (SERVICE + "/", "/", ""),
        (SERVICE + "?", "", ""),
        (SERVICE + "/a/b/", "/a/b/", ""),
        (SERVICE + "/a?x=1?y=/z", "/a", "x=1?y=/z"),
        (SERVICE + "/%C3%A4rger/50%25", "/%C3%A4rger/50%25", ""),
        (SERVICE + "/a.b/.hidden/..x/x..", "/a.b/.hidden/..x/x..", ""),
        (SERVICE + "/v1;jsessionid=1", "/v1;jsessionid=1", ""),
        (SERVICE + "/%7Euser/a%20b", "/%7Euser/a%20b", ""),
    ],
)
def test_path_and_query_are_kept_as_received(target: str, path: str, query: str) -> None:
    header = parse(target=target).header
    assert (header.path, header.query) == (path, query)


def test_identifier_parts_are_percent_decoded_one_by_one() -> None:
    header = parse(target="/r1/NRW/MUN/%30%35774032/gewerbe%61mt/gewerbeanzeige%3D").header
    assert header.service.provider == SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")
    assert header.service.service_code == "gewerbeanzeige="


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_methods(method: str) -> None:
    assert parse(method=method).header.method == method


# --- the target ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/r1/NRW/MUN/05774032/gewerbeamt",
        "/r1/NRW/MUN/05774032",
        "/r1/",
        "/r1/NRW//05774032/gewerbeamt/svc",
        "/r1/NRW/MUN/05774032//svc",
        "/r1/NRW/MUN/05774032/gewerbeamt//x",
        "/r1//MUN/05774032/gewerbeamt/svc",
        "/r1/NRW/MUN/0577%2F4032/gewerbeamt/svc",
        "/r1/NRW/MUN/05774032/gewerbe%20amt/svc",
        "/r1/NRW/MUN/05774032/gewerbe%C3%A4mt/svc",
        "/r1/NRW/MUN/05774032/gewerbeamt/svc%3A1",
        "/r1/NRW/MUN/05774032/gewerbeamt/svc%00",
        "/r1/NRW/MUN/05774032/gewerbeamt/svc%25",
        "/r1/NRW/MUN/05774032/gewerbeamt/svc%FF",
        "/r1/NRW/MUN/05774032/gewerbeamt/" + "s" * 256,
        "/r1/NRW/MUN/05774032/gewerbe~amt/svc",
        "/r1/NRW/MUN/05774032/gewerbe;amt/svc",
    ],
)
def test_bad_service_identifier(target: str) -> None:
    refused(ErrorCode.INVALID_SERVICE_IDENTIFIER, target=target)


@pytest.mark.parametrize(
    "target",
    [
        "",
        "/",
        "*",
        "/r1",
        "/r2/NRW/MUN/05774032/gewerbeamt/svc",
        "/R1/NRW/MUN/05774032/gewerbeamt/svc",
        "//r1/NRW/MUN/05774032/gewerbeamt/svc",
        "r1/NRW/MUN/05774032/gewerbeamt/svc",
        "/listClients",
        "http://ss.example/r1/NRW/MUN/05774032/gewerbeamt/svc",
        SERVICE + " HTTP/1.1",
        SERVICE + "#frag",
        SERVICE + "/a b",
        SERVICE + "/ä",
        SERVICE + "/a\tb",
        SERVICE + "/a<b>",
        SERVICE + '/a"b',
        SERVICE + "/a|b",
        SERVICE + "/a{b}",
        SERVICE + "/%",
        SERVICE + "/%4",
        SERVICE + "/%zz",
        SERVICE + "?q=100%",
        SERVICE + "?q=%G1",
        SERVICE + "/%C0%AE%C0%AE",  # overlong UTF-8 for '..'
        SERVICE + "/%FF",
    ],
)
def test_bad_target(target: str) -> None:
    refused(ErrorCode.INVALID_REQUEST, target=target)


def test_target_length_is_capped() -> None:
    prefix = SERVICE + "/"
    fits = prefix + "a" * (MAX_TARGET_LENGTH - len(prefix))
    assert len(parse(target=fits).header.path) == MAX_TARGET_LENGTH - len(SERVICE)
    error = refused(ErrorCode.INVALID_REQUEST, target=fits + "a")
    assert str(MAX_TARGET_LENGTH) in error.message
    refused(ErrorCode.INVALID_REQUEST, target=SERVICE + "?" + "q" * MAX_TARGET_LENGTH)


TRAVERSAL = [
    "/../admin",
    "/svc/../admin",
    "/..",
    "/.",
    "/./admin",
    "/a/./b",
    "/a/../b",
    "/%2e%2e/admin",
    "/%2E%2E/admin",
    "/%2e./admin",
    "/.%2e/admin",
    "/%2E./b",
    "/a/%2E%2E/b",
    "/a/%2e/b",
    "/a%2f..%2fb",
    "/a%2F..%2Fb",
    "/..%2fadmin",
    "/..%2Fadmin",
    "/%2f",
    "/a%2fb",
    "/a%5c..%5cb",
    "/..%5cadmin",
    "/a\\..\\b".replace("\\", "%5C"),
    "/..;/admin",
    "/..;jsessionid=x/admin",
    "/%2e%2e;/admin",
    "/.;/admin",
    "/%252e%252e/admin",
    "/%252E%252E/admin",
    "/a%252fb",
    "/a%255cb",
    "/%25%32%65%25%32%65/admin",
    "/a%00b",
    "/a%0ab",
    "/a%0d%0aX-Injected:%201",
    "/a%7fb",
    "/%EF%BC%8E%EF%BC%8E/admin",  # fullwidth full stops: '..' after NFKC
    "/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fadmin",  # fullwidth '../': a slash after NFKC
    "/public/x%EF%BC%BC..%EF%BC%BCadmin",  # fullwidth reverse solidus: a backslash after NFKC
    "/public/.../admin",  # '..' to servers that drop trailing dots
    "/public/..%20/admin",  # '..' to servers that drop trailing spaces
    "/public/%20/admin",
    "/a//b",
    "//admin",
]


@pytest.mark.parametrize("name", ["X-HTTP-Method-Override", "x-http-method", "X-Method-Override"])
def test_a_method_override_header_is_refused(name: str) -> None:
    """Access rights are granted per method; a header that changes it at the backend is refused."""
    error = refused(ErrorCode.INVALID_REQUEST, headers=[CLIENT, (name, "DELETE")], method="POST")
    assert "granted per HTTP method" in error.message


@pytest.mark.parametrize("path", TRAVERSAL)
def test_traversal_corpus_is_refused(path: str) -> None:
    error = refused(ErrorCode.INVALID_REQUEST, target=SERVICE + path)
    assert "path" in error.message


@pytest.mark.parametrize("path", TRAVERSAL)
def test_traversal_in_a_longer_path_is_refused(path: str) -> None:
    refused(ErrorCode.INVALID_REQUEST, target=SERVICE + "/anzeigen" + path + "?x=1")


@pytest.mark.parametrize("path", TRAVERSAL)
def test_check_rest_path_refuses_the_traversal_corpus(path: str) -> None:
    with pytest.raises(XwegError) as info:
        check_rest_path(path, "")
    assert info.value.code is ErrorCode.INVALID_REQUEST
    assert info.value.origin is Origin.CLIENT


@pytest.mark.parametrize(
    "path, query",
    [
        ("a", ""),
        ("/a?b", ""),
        ("/a#b", ""),
        ("/a", "b#c"),
        ("/a b", ""),
        ("/a", "q=%"),
        ("/" + "a" * 4096, ""),
    ],
)
def test_check_rest_path_refuses_malformed_parts(path: str, query: str) -> None:
    with pytest.raises(XwegError) as info:
        check_rest_path(path, query)
    assert info.value.code is ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize(
    "path, query", [("", ""), ("/", ""), ("/a/b.c/%C3%A4/50%25/", "x=1&y=/z?"), ("/v1;p=1", "q=%2F")]
)
def test_check_rest_path_accepts_what_the_parser_accepts(path: str, query: str) -> None:
    check_rest_path(path, query)
    target = SERVICE + path + ("?" + query if query else "")
    assert (parse(target=target).header.path, parse(target=target).header.query) == (path, query)


def test_traversal_named_in_the_brief() -> None:
    refused(ErrorCode.INVALID_REQUEST, target="/r1/NRW/MUN/05774032/gewerbeamt/svc/../admin")
    refused(ErrorCode.INVALID_REQUEST, target="/r1/NRW/MUN/05774032/gewerbeamt/svc/%2e%2e/")


def test_traversal_in_the_identifier_parts_is_refused() -> None:
    # '.' and '..' are legal identifier characters, so this is a valid (odd) service code;
    # the subsystem part, however, cannot smuggle a slash.
    assert parse(target="/r1/NRW/MUN/05774032/gewerbeamt/..").header.service.service_code == ".."
    refused(ErrorCode.INVALID_SERVICE_IDENTIFIER, target="/r1/NRW/MUN/05774032/..%2Fadmin/svc")


def test_error_messages_do_not_echo_long_input() -> None:
    error = refused(ErrorCode.INVALID_REQUEST, target=SERVICE + "/" + "x" * 1000 + "%2e%2e" + "/..")
    assert len(error.message) < 200


# --- method -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["", "get", "Get", "G ET", "GET\r\n", "TOOLONGMETHODNAMEXX", "A1", "É"])
def test_bad_method(method: str) -> None:
    refused(ErrorCode.INVALID_REQUEST, method=method)


# --- headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Content-Type", "application/json")],
        [("X-Road-Client", "")],
        [("X-Road-Client", "NRW/MUN")],
        [("X-Road-Client", "NRW/MUN/05774020/meldewesen/extra")],
        [("X-Road-Client", "NRW/MUN//meldewesen")],
        [("X-Road-Client", "NRW/MUN/05774020/melde wesen")],
        [("X-Road-Client", "NRW/MUN/05774020/melde%20wesen")],
        [("X-Road-Client", "NRW/MUN/05774020/meldewesen\u00e4")],
        [("X-Road-Client", "SUBSYSTEM:NRW/MUN/05774020/meldewesen")],
        [("X-Road-Client", "NRW:MUN/05774020/meldewesen")],
        [("X-Road-Client-Id", "NRW/MUN/05774020/meldewesen")],
    ],
)
def test_bad_client_header(headers: list[tuple[str, str]]) -> None:
    refused(ErrorCode.INVALID_CLIENT_IDENTIFIER, headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        [CLIENT, CLIENT],
        [CLIENT, ("x-road-client", "NRW/MUN/05774020")],
        [CLIENT, ("X-Road-Id", "a"), ("x-road-id", "b")],
        [CLIENT, ("X-Road-UserId", "DE1"), ("X-Road-UserId", "DE1")],
        [CLIENT, ("X-Road-Issue", "a"), ("X-ROAD-ISSUE", "b")],
        [CLIENT, ("X-Road-Represented-Party", "a"), ("X-Road-Represented-Party", "b")],
        [CLIENT, ("X-Road-Security-Server", "a"), ("X-Road-Security-Server", "b")],
    ],
)
def test_duplicated_xroad_headers(headers: list[tuple[str, str]]) -> None:
    refused(ErrorCode.INVALID_REQUEST, headers=headers)


@pytest.mark.parametrize("name", ["X-Road-Id", "X-Road-UserId", "X-Road-Issue", "X-Road-Represented-Party"])
@pytest.mark.parametrize("value", ["", "a\tb", "a\x00b", "a\x7fb", "ä", "x" * 256, "a\udc80"])
def test_bad_xroad_values(name: str, value: str) -> None:
    refused(ErrorCode.INVALID_REQUEST, headers=[CLIENT, (name, value)])


@pytest.mark.parametrize("name", ["X-Road-Id", "X-Road-UserId", "X-Road-Issue", "X-Road-Represented-Party"])
def test_longest_xroad_value_is_accepted(name: str) -> None:
    parse(headers=[CLIENT, (name, "x" * 255)])


@pytest.mark.parametrize(
    "headers",
    [
        [CLIENT, ("", "x")],
        [CLIENT, ("Bad Name", "x")],
        [CLIENT, ("Bad:Name", "x")],
        [CLIENT, ("Ümlaut", "x")],
        [CLIENT, ("X-Custom", "a\r\nb")],
        [CLIENT, ("X-Custom", "a\nb")],
        [CLIENT, ("X-Custom", "a\x00b")],
        [CLIENT, ("X-Custom", "a\x01b")],
        [CLIENT, ("X-Custom", "a\udcffb")],
        [CLIENT, ("X-Custom", "x" * 8193)],
    ],
)
def test_bad_header_fields(headers: list[tuple[str, str]]) -> None:
    refused(ErrorCode.INVALID_REQUEST, headers=headers)


def test_header_values_may_hold_tabs_and_non_ascii() -> None:
    headers = parse(headers=[CLIENT, ("X-Note", "a\tb"), ("X-Name", "Müller")]).header.headers
    assert headers == (("x-note", "a\tb"), ("x-name", "Müller"))


def test_end_to_end_header_count_is_bounded() -> None:
    ok = [CLIENT] + [(f"x-h{i}", "v") for i in range(MAX_HEADERS)]
    assert len(parse(headers=ok).header.headers) == MAX_HEADERS
    refused(ErrorCode.INVALID_REQUEST, headers=ok + [("x-one-more", "v")])


def test_input_header_count_is_bounded() -> None:
    many = [CLIENT] + [("Connection", "close")] * MAX_INPUT_HEADERS
    refused(ErrorCode.INVALID_REQUEST, headers=many)


def test_hop_by_hop_and_local_headers_are_dropped() -> None:
    dropped = [
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "User-Agent",
        "Server",
        "Content-Length",
        "Expect",
        "X-Road-Security-Server",
        "X-Road-Something-New",
    ]
    headers = [CLIENT, *((name, "v") for name in dropped), ("X-Kept", "1")]
    assert parse(headers=headers).header.headers == (("x-kept", "1"),)


def test_headers_named_in_connection_are_dropped() -> None:
    headers = [
        CLIENT,
        ("Connection", "X-A , x-b"),
        ("connection", "X-C"),
        ("X-A", "1"),
        ("X-B", "2"),
        ("X-C", "3"),
        ("X-D", "4"),
    ]
    assert parse(headers=headers).header.headers == (("x-d", "4"),)


def test_new_message_id_is_only_called_when_needed() -> None:
    counter = itertools.count()

    def new_id() -> str:
        return f"id-{next(counter)}"

    assert (
        parse_rest_request("GET", SERVICE, [CLIENT], b"", new_message_id=new_id).header.message_id == "id-0"
    )
    given_id = parse_rest_request("GET", SERVICE, [CLIENT, ("X-Road-Id", "mine")], b"", new_message_id=new_id)
    assert given_id.header.message_id == "mine"
    assert next(counter) == 1


def test_a_bad_generated_message_id_is_still_our_error() -> None:
    with pytest.raises(XwegError) as info:
        parse_rest_request("GET", SERVICE, [CLIENT], b"", new_message_id=lambda: "")
    assert info.value.code is ErrorCode.INVALID_REQUEST


def test_body_is_bound_to_its_digest() -> None:
    request = parse(body=b"\x00\xffbinary", method="PUT")
    assert request.header.body_sha512 == sha512(b"\x00\xffbinary")
    assert request.header.body_size == 8


# --- fuzz ---------------------------------------------------------------------------------------

target_chars = st.sampled_from(
    list("/r1NRWMUN05774032.%2eEfF5cC;?=&#: \\\x00ä~") + ["%2e", "%2f", "%25", "/r1/", "..", "/", "/a"]
)
path_segments = st.lists(
    st.sampled_from(["a", "b.c", ".", "..", "%2e", "%2E", "%2f", "%25", "%252e", ";", "x", "%41", "~", ""]),
    max_size=3,
).map("".join)
targets = st.one_of(
    st.text(max_size=60),
    st.lists(target_chars, max_size=40).map("".join),
    st.lists(target_chars, max_size=30).map(lambda cs: SERVICE + "".join(cs)),
    st.lists(path_segments, max_size=6).map(lambda ss: SERVICE + "".join("/" + s for s in ss)),
)
names = st.one_of(
    st.sampled_from(
        ["X-Road-Client", "x-road-id", "X-Road-UserId", "Connection", "Host", "Content-Type", "X-Road-Issue"]
    ),
    st.text(max_size=12),
)
values = st.one_of(
    st.sampled_from(["NRW/MUN/05774020/meldewesen", "NRW/MUN/05774020", "x-road-client", "", "a,b"]),
    st.text(max_size=30),
)


@settings(max_examples=400, deadline=None)
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "get"]), st.text(max_size=8), st.just("GET")),
    target=targets,
    headers=st.one_of(
        st.lists(st.tuples(names, values), max_size=8),
        st.lists(st.tuples(st.from_regex(r"[A-Za-z-]{1,10}", fullmatch=True), values), max_size=4).map(
            lambda hs: [CLIENT, *hs]
        ),
    ),
    body=st.binary(max_size=64),
)
def test_parser_returns_a_request_or_raises_our_error(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    try:
        request = parse_rest_request(method, target, headers, body, new_message_id=lambda: GENERATED_ID)
    except XwegError as error:
        assert error.origin is Origin.CLIENT
        assert error.code in {
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_CLIENT_IDENTIFIER,
            ErrorCode.INVALID_SERVICE_IDENTIFIER,
        }
    else:
        assert isinstance(request, Request)
        assert request.body == body
        assert ".." not in request.header.path.split("/")
        event("accepted")


@settings(max_examples=300, deadline=None)
@given(st.lists(path_segments, min_size=1, max_size=6))
def test_an_accepted_path_has_no_dot_segments_however_often_decoded(segments: list[str]) -> None:
    target = SERVICE + "".join("/" + s for s in segments)
    try:
        header = parse(target=target).header
    except XwegError as error:
        assert error.code is ErrorCode.INVALID_REQUEST
        event("refused")
        return
    event("accepted")
    for raw in header.path[1:].split("/"):
        once = unquote(raw)
        twice = unquote(once)
        for decoded in (once, twice):
            assert decoded.split(";")[0] not in (".", "..")
            assert "/" not in decoded and "\\" not in decoded
