"""Messages and canonical digests: round trips, body binding, digest sensitivity."""

from __future__ import annotations

import dataclasses
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.canonical import b64, canonical_json, request_digest, response_digest, unb64
from core.identifiers import MemberId, ServiceId, SubsystemId
from core.messages import (
    MAX_HEADERS,
    MessageError,
    Protocol,
    Request,
    RequestHeader,
    Response,
    ResponseHeader,
    sha512,
)

ALLOWED = string.ascii_letters + string.digits + "'()+,-.=?"
parts = st.text(alphabet=ALLOWED, min_size=1, max_size=12)
subsystems = st.builds(SubsystemId, parts, parts, parts, parts)
clients = st.one_of(st.builds(MemberId, parts, parts, parts), subsystems)
services = st.builds(ServiceId, subsystems, parts, st.none() | parts)
# Printable text without control characters or surrogates, as the header fields require.
ids = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40)
header_names = st.from_regex(r"[!#$%&'*+\-.^_`|~0-9a-z]{1,20}", fullmatch=True)
header_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0"), max_size=40
)
paths = st.one_of(st.just(""), st.from_regex(r"/[A-Za-z0-9%/._~-]{0,30}", fullmatch=True))
queries = st.from_regex(r"[A-Za-z0-9%=&+._~-]{0,30}", fullmatch=True)
bodies = st.binary(max_size=200)


@st.composite
def request_headers(draw: st.DrawFn) -> RequestHeader:
    body = draw(bodies)
    return RequestHeader(
        protocol=draw(st.sampled_from(Protocol)),
        client=draw(clients),
        service=draw(services),
        message_id=draw(ids),
        method=draw(st.from_regex(r"[A-Z]{1,16}", fullmatch=True)),
        path=draw(paths),
        query=draw(queries),
        headers=tuple(draw(st.lists(st.tuples(header_names, header_values), max_size=6))),
        body_sha512=sha512(body),
        body_size=len(body),
        user_id=draw(st.none() | ids),
        issue=draw(st.none() | ids),
        represented_party=draw(st.none() | ids),
    )


def good_header(body: bytes = b'{"name":"Muster"}') -> RequestHeader:
    return RequestHeader(
        protocol=Protocol.REST,
        client=SubsystemId("NRW", "MUN", "05774020", "meldewesen"),
        service=ServiceId.parse_slash("NRW/MUN/05711000/meldewesen/meldeauskunft/v1"),
        message_id="0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10",
        method="POST",
        path="/personen",
        query="limit=1",
        headers=(("content-type", "application/json"), ("accept", "application/json")),
        body_sha512=sha512(body),
        body_size=len(body),
        user_id="DE0000000001",
        issue="AZ-2024-17",
        represented_party="MUN/05774020",
    )


@given(request_headers())
def test_request_header_dict_round_trip(header: RequestHeader) -> None:
    assert RequestHeader.from_dict(header.to_dict()) == header


@given(request_headers())
def test_request_header_survives_canonical_json(header: RequestHeader) -> None:
    import json

    assert RequestHeader.from_dict(json.loads(canonical_json(header.to_dict()))) == header


@given(
    message_id=ids,
    status=st.integers(100, 599),
    headers=st.lists(st.tuples(header_names, header_values), max_size=6),
    body=bodies,
)
def test_response_header_dict_round_trip(
    message_id: str, status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    header = ResponseHeader(message_id, b64(b"x" * 64), status, tuple(headers), sha512(body), len(body))
    assert ResponseHeader.from_dict(header.to_dict()) == header
    assert Response(header, body).body == body


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("client"),
        lambda d: d.update(client="NRW/MUN"),
        lambda d: d.update(service="NRW/MUN/05711000/meldewesen"),
        lambda d: d.update(protocol="grpc"),
        lambda d: d.update(body_sha512="zz"),
        lambda d: d.update(headers=[["Content-Type", "x"]]),
        lambda d: d.update(method="get"),
        lambda d: d.update(path="personen"),
        lambda d: d.update(message_id=""),
        lambda d: d.update(user_id="a\nb"),
    ],
)
def test_malformed_request_dict_is_refused(mutate: Any) -> None:
    data = good_header().to_dict()
    mutate(data)
    with pytest.raises(MessageError):
        RequestHeader.from_dict(data)


def test_too_many_headers_are_refused() -> None:
    with pytest.raises(MessageError):
        dataclasses.replace(good_header(), headers=(("x-a", "1"),) * (MAX_HEADERS + 1))


def test_request_refuses_a_body_that_does_not_match_its_digest() -> None:
    body = b'{"name":"Muster"}'
    header = good_header(body)
    assert Request(header, body).body == body
    with pytest.raises(MessageError):
        Request(header, b'{"name":"Mustes"}')  # same length, other bytes
    with pytest.raises(MessageError):
        Request(header, body + b" ")
    with pytest.raises(MessageError):
        Request(header, b"")


def test_response_refuses_a_body_that_does_not_match_its_digest() -> None:
    header = ResponseHeader("id", b64(b"h" * 64), 200, (), sha512(b"ok"), 2)
    with pytest.raises(MessageError):
        Response(header, b"no")


OTHER_BODY = b'{"name":"Other"}'

DIGEST_CHANGES = {
    "protocol": dict(protocol=Protocol.SOAP),
    "client": dict(client=SubsystemId("NRW", "MUN", "05774020", "gewerbeamt")),
    "client kind": dict(client=MemberId("NRW", "MUN", "05774020")),
    "service code": dict(service=ServiceId.parse_slash("NRW/MUN/05711000/meldewesen/other/v1")),
    "service version": dict(service=ServiceId.parse_slash("NRW/MUN/05711000/meldewesen/meldeauskunft/v2")),
    "message id": dict(message_id="0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b11"),
    "method": dict(method="PUT"),
    "path": dict(path="/personen/1"),
    "query": dict(query="limit=2"),
    "header value": dict(headers=(("content-type", "application/xml"), ("accept", "application/json"))),
    "header order": dict(headers=(("accept", "application/json"), ("content-type", "application/json"))),
    "header dropped": dict(headers=(("content-type", "application/json"),)),
    "body": dict(body_sha512=sha512(OTHER_BODY), body_size=len(OTHER_BODY)),
    "user id": dict(user_id="DE0000000002"),
    "user id absent": dict(user_id=None),
    "issue": dict(issue="AZ-2024-18"),
    "represented party": dict(represented_party="MUN/05774021"),
}


@pytest.mark.parametrize("changes", DIGEST_CHANGES.values(), ids=DIGEST_CHANGES.keys())
def test_request_digest_covers_every_field(changes: dict[str, Any]) -> None:
    header = good_header()
    changed = dataclasses.replace(header, **changes)
    assert request_digest(changed) != request_digest(header)


def test_request_digest_is_deterministic_and_64_bytes() -> None:
    digest = request_digest(good_header())
    assert digest == request_digest(good_header())
    assert len(digest) == 64
    assert unb64(b64(digest)) == digest


def test_request_and_response_digests_are_domain_separated() -> None:
    body = b"same"
    response = ResponseHeader("id", b64(b"h" * 64), 200, (), sha512(body), len(body))
    assert response_digest(response) != response_digest(dataclasses.replace(response, status=201))
    assert len(response_digest(response)) == 64


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=8))
def test_canonical_json_ignores_key_order(value: dict[str, Any]) -> None:
    assert canonical_json(_reverse_keys(value)) == canonical_json(value)


def test_canonical_json_is_compact_sorted_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["ä", None]}) == '{"a":["ä",null],"b":1}'.encode()


def test_unb64_refuses_non_base64() -> None:
    with pytest.raises(ValueError):
        unb64("not base64!")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("path", "/a?b", "'?'"),
        ("path", "/a#b", "'#'"),
        ("path", "a", "start with '/'"),
        ("client", "NRW/MUN/05774032/gewerbeamt", "client must be"),
        ("method", 7, "invalid method"),
        ("body_size", True, "body_size"),
        ("user_id", "\udc80", "not valid Unicode"),
        ("headers", (("x-name", "\udc80"),), "not valid Unicode"),
    ],
)
def test_request_header_refuses_values_that_would_break_digests_or_urls(
    field: str, value: Any, reason: str
) -> None:
    with pytest.raises(MessageError, match=reason):
        dataclasses.replace(good_header(), **{field: value})
