"""Records: constructor checks, the canonical encoding and the hash chain (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.messagelog.record import (
    GENESIS_HASH,
    MAX_OCSP_BYTES,
    RECORD_FORMAT,
    Direction,
    LogRecord,
    NewRecord,
    chain_hash,
    encode_record,
    format_time,
    parse_time,
)
from tests.unit.gateway.messagelog.helpers import NOW, Signers, make_exchange
from trust.merkle import leaf_hash


@pytest.fixture
def request_record(signers: Signers) -> NewRecord:
    return make_exchange(signers, 1).request


@pytest.mark.parametrize(
    "change, message",
    [
        ({"direction": "request"}, "direction"),
        ({"message_id": ""}, "message id"),
        ({"message_id": "a\nb"}, "control characters"),
        ({"message_id": "x" * 256}, "longer than"),
        ({"client": "EE/GOV"}, "client identifier"),
        ({"service": "EE/GOV/70000002/population-register"}, "service identifier"),
        ({"logged_at": dt.datetime(2025, 3, 4, 10, 0)}, "UTC"),
        ({"logged_at": dt.datetime(2025, 3, 4, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))}, "UTC"),
        ({"header": b""}, "header"),
        ({"header": "{}"}, "header"),
        ({"body": "text"}, "body"),
        ({"signature": ""}, "signature"),
        ({"status": 200}, "no HTTP status"),
        ({"ocsp": b""}, "ocsp"),
        ({"ocsp": "MIIB"}, "ocsp"),
        ({"ocsp": b"\x30" * (64 * 1024 + 1)}, "ocsp is larger"),
    ],
)
def test_new_record_refuses_malformed_fields(
    request_record: NewRecord, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(request_record, **change)


@pytest.mark.parametrize("status", [None, 99, 600, True, "200"])
def test_response_record_needs_a_valid_status(signers: Signers, status: Any) -> None:
    response = make_exchange(signers, 1).response
    with pytest.raises(ValueError, match="HTTP status"):
        dataclasses.replace(response, status=status)


def test_log_record_checks_its_place(request_record: NewRecord) -> None:
    placed = LogRecord.place(1, GENESIS_HASH, request_record)
    assert placed.content == request_record
    with pytest.raises(ValueError, match="seq"):
        dataclasses.replace(placed, seq=0)
    with pytest.raises(ValueError, match="prev_hash"):
        dataclasses.replace(placed, prev_hash=b"\x00" * 31)
    with pytest.raises(ValueError, match="record_hash"):
        dataclasses.replace(placed, record_hash=b"\x00" * 64)


def test_the_leaf_hash_written_at_placement_is_the_one_recomputed_from_content(
    request_record: NewRecord, signers: Signers
) -> None:
    placed, leaf = LogRecord.place_with_leaf_hash(7, GENESIS_HASH, request_record)
    assert placed == LogRecord.place(7, GENESIS_HASH, request_record)
    assert leaf == placed.leaf_hash
    other, other_leaf = LogRecord.place_with_leaf_hash(7, GENESIS_HASH, make_exchange(signers, 1).response)
    assert other_leaf == other.leaf_hash != leaf


def test_encoding_is_canonical_json_of_every_field(request_record: NewRecord) -> None:
    encoded = encode_record(7, request_record)
    assert encoded == encode_record(7, request_record)
    data = json.loads(encoded)
    assert data == {
        "format": RECORD_FORMAT,
        "seq": 7,
        "direction": "request",
        "message_id": request_record.message_id,
        "client": request_record.client,
        "service": request_record.service,
        "logged_at": "2025-03-04T10:00:00.000000Z",
        "status": None,
        "header_sha512": hashlib.sha512(request_record.header).hexdigest(),
        "signature": request_record.signature,
        "ocsp_sha256": None,
        "body_storage": "inline",
    }
    assert RECORD_FORMAT == "xweg-messagelog-record/2"
    assert encoded == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "change",
    [
        {"direction": Direction.RESPONSE, "status": 200},
        {"message_id": "another"},
        {"client": "EE/GOV/70000001/other"},
        {"service": "EE/GOV/70000002/population-register/person/v2"},
        {"logged_at": NOW + dt.timedelta(microseconds=1)},
        {"header": b'{"changed":1}'},
        {"signature": "EE/GOV/70000001|00"},
        {"ocsp": b"\x30\x03\x0a\x01\x00"},
    ],
)
def test_every_field_but_the_body_changes_the_encoding(
    request_record: NewRecord, change: dict[str, Any]
) -> None:
    # The body is bound through the header's body_sha512; verification checks that itself.
    assert encode_record(1, dataclasses.replace(request_record, **change)) != encode_record(1, request_record)
    assert encode_record(1, dataclasses.replace(request_record, body=b"other")) == encode_record(
        1, request_record
    )
    assert encode_record(2, request_record) != encode_record(1, request_record)


def test_encode_refuses_a_bad_seq(request_record: NewRecord) -> None:
    with pytest.raises(ValueError, match="seq"):
        encode_record(0, request_record)


def test_chain_hash_is_sha256_of_prev_and_leaf_hash() -> None:
    prev = bytes(range(32))
    expected = hashlib.sha256(prev + hashlib.sha256(b"leaf").digest()).digest()
    assert chain_hash(prev, b"leaf") == expected
    assert GENESIS_HASH == bytes(32)
    with pytest.raises(ValueError, match="32 bytes"):
        chain_hash(b"short", b"leaf")


def test_place_links_records(request_record: NewRecord, signers: Signers) -> None:
    first = LogRecord.place(1, GENESIS_HASH, request_record)
    second = LogRecord.place(2, first.record_hash, make_exchange(signers, 1).response)
    assert first.record_hash == chain_hash(GENESIS_HASH, encode_record(1, request_record))
    assert second.prev_hash == first.record_hash
    assert second.record_hash == chain_hash(first.record_hash, encode_record(2, second.content))


def test_ocsp_response_is_bound_by_its_sha256(request_record: NewRecord) -> None:
    ocsp = b"\x30\x82\x01\x00" + bytes(range(200))
    with_ocsp = dataclasses.replace(request_record, ocsp=ocsp)
    data = json.loads(encode_record(3, with_ocsp))
    assert data["ocsp_sha256"] == hashlib.sha256(ocsp).hexdigest()
    placed = LogRecord.place(3, GENESIS_HASH, with_ocsp)
    assert placed.ocsp == ocsp
    assert placed.content == with_ocsp
    assert "ocsp=" not in repr(placed)  # evidence bytes stay out of logs
    assert len(ocsp) < MAX_OCSP_BYTES


def test_leaf_hash_is_rfc9162_over_the_encoding(request_record: NewRecord) -> None:
    placed = LogRecord.place(5, GENESIS_HASH, request_record)
    assert placed.leaf_hash == hashlib.sha256(b"\x00" + encode_record(5, request_record)).digest()
    assert placed.leaf_hash == leaf_hash(encode_record(5, request_record))
    # Recomputed from the content, so a changed field changes it.
    changed = dataclasses.replace(placed, message_id="another")
    assert changed.leaf_hash != placed.leaf_hash
    assert dataclasses.replace(placed, seq=6).leaf_hash != placed.leaf_hash


@given(st.datetimes(timezones=st.just(dt.UTC)))
def test_log_time_round_trips(value: dt.datetime) -> None:
    text = format_time(value)
    assert text.endswith("Z")
    assert parse_time(text) == value


def test_log_time_refuses_other_forms() -> None:
    with pytest.raises(ValueError):
        parse_time("2025-03-04T10:00:00+00:00")
    with pytest.raises(ValueError):
        parse_time("2025-03-04T10:00:00Z")
    with pytest.raises(ValueError, match="UTC"):
        format_time(dt.datetime(2025, 3, 4))
