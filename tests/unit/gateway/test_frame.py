"""The frame between security servers, bytes in and objects out."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.transport.frame import (
    MAGIC,
    MAX_METADATA_BYTES,
    PREFIX_SIZE,
    Frame,
    FrameError,
    decode_frame,
    encode_frame,
    encode_frame_head,
    frame_head_size,
)

GOOD_METADATA = {"header": {"client": "NRW/GOV/057/arbeitsschutz", "id": "m-1"}, "signature": "eyJ.a.b"}
GOOD_BODY = b'{"antrag": "Gewerbeanzeige"}\r\n\x00\xff'


def raw_frame(metadata: bytes, body: bytes = b"", *, length: int | None = None) -> bytes:
    return MAGIC + struct.pack(">I", len(metadata) if length is None else length) + metadata + body


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_known_frame_layout() -> None:
    data = encode_frame({"a": "ä"}, b"body")
    meta = '{"a":"ä"}'.encode()
    assert data == b"XWEG/1\n" + len(meta).to_bytes(4, "big") + meta + b"body"


def test_good_frame_round_trips() -> None:
    frame = decode_frame(encode_frame(GOOD_METADATA, GOOD_BODY))
    assert frame == Frame(GOOD_METADATA, GOOD_BODY)


@given(metadata=st.dictionaries(st.text(), json_values, max_size=6), body=st.binary(max_size=512))
def test_round_trip(metadata: dict[str, Any], body: bytes) -> None:
    frame = decode_frame(encode_frame(metadata, body))
    assert frame.metadata == metadata
    assert frame.body == body


def test_body_may_hold_anything_including_the_magic() -> None:
    body = MAGIC + struct.pack(">I", 0xFFFFFFFF) + b"not json"
    assert decode_frame(encode_frame({}, body)).body == body


@pytest.mark.parametrize("cut", [0, 1, len(MAGIC), len(MAGIC) + 3])
def test_truncated_before_the_length_is_refused(cut: int) -> None:
    data = encode_frame(GOOD_METADATA, GOOD_BODY)[:cut]
    with pytest.raises(FrameError, match="not an xweg message frame|frame is truncated"):
        decode_frame(data)


def test_truncated_magic_and_missing_length_are_told_apart() -> None:
    with pytest.raises(FrameError, match="not an xweg message frame"):
        decode_frame(MAGIC[:-1])
    with pytest.raises(FrameError, match="frame is truncated"):
        decode_frame(MAGIC + b"\x00\x00")


def test_truncated_metadata_is_refused() -> None:
    data = encode_frame(GOOD_METADATA, b"")
    with pytest.raises(FrameError, match="frame metadata length is invalid"):
        decode_frame(data[:-1])


def test_length_one_short_leaves_invalid_json() -> None:
    meta = json.dumps(GOOD_METADATA).encode()
    with pytest.raises(FrameError, match="frame metadata is not JSON"):
        decode_frame(raw_frame(meta, length=len(meta) - 1))


@pytest.mark.parametrize(
    "magic", [b"XWEG/2\n", b"xweg/1\n", b"XWEG/1\r\n", b"POST / HTTP/1.1\r\n", b"\x00" * 7]
)
def test_wrong_magic_is_refused(magic: bytes) -> None:
    data = magic + encode_frame(GOOD_METADATA, GOOD_BODY)[len(MAGIC) :]
    with pytest.raises(FrameError, match="not an xweg message frame"):
        decode_frame(data)


@pytest.mark.parametrize("length", [MAX_METADATA_BYTES + 1, 0xFFFFFFFF])
def test_oversize_metadata_length_is_refused_without_reading_it(length: int) -> None:
    with pytest.raises(FrameError, match="frame metadata length is invalid"):
        decode_frame(raw_frame(b"{}", b"x" * 64, length=length))


def test_metadata_at_the_limit_is_accepted_and_beyond_it_refused() -> None:
    # {"p":"xxx..."} is 8 bytes plus the padding
    at_limit = {"p": "x" * (MAX_METADATA_BYTES - 8)}
    assert decode_frame(encode_frame(at_limit, b"")).metadata == at_limit
    with pytest.raises(FrameError, match="frame metadata is too large"):
        encode_frame({"p": "x" * (MAX_METADATA_BYTES - 7)}, b"")


@pytest.mark.parametrize(
    "meta",
    [b"", b"{", b'{"a":}', b"\xff\xfe{}", b'{"a":"\xc3"}', b"{}garbage"],
    ids=["empty", "open-brace", "bad-value", "not-utf8", "truncated-utf8", "trailing-garbage"],
)
def test_metadata_that_is_not_json_is_refused(meta: bytes) -> None:
    with pytest.raises(FrameError, match="frame metadata is not JSON"):
        decode_frame(raw_frame(meta, b"body"))


@pytest.mark.parametrize("meta", [b"[]", b'"header"', b"42", b"null", b"true", b'[{"header":{}}]'])
def test_metadata_that_is_not_an_object_is_refused(meta: bytes) -> None:
    with pytest.raises(FrameError, match="frame metadata must be a JSON object"):
        decode_frame(raw_frame(meta, b"body"))


@pytest.mark.parametrize(
    "meta",
    [b"[" * 100_000, b'{"a":' * 50_000, b'{"n":' + b"9" * 5000 + b"}"],
    ids=["deeply-nested-array", "deeply-nested-object", "huge-integer"],
)
def test_hostile_but_small_metadata_raises_frame_error(meta: bytes) -> None:
    assert len(meta) <= MAX_METADATA_BYTES
    with pytest.raises(FrameError, match="frame metadata"):
        decode_frame(raw_frame(meta, b"body"))


def test_metadata_that_cannot_be_utf8_encoded_raises_frame_error() -> None:
    # A lone surrogate (e.g. from a header decoded with surrogateescape) has no UTF-8 form.
    with pytest.raises(FrameError, match="frame metadata"):
        encode_frame({"header": {"user": "\udcff"}}, b"")


def _only_frame_or_frame_error(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except FrameError:
        return
    assert isinstance(frame, Frame)
    assert isinstance(frame.metadata, dict)
    assert isinstance(frame.body, bytes)


@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _only_frame_or_frame_error(data)


@given(length=st.integers(0, 2**32 - 1), rest=st.binary(max_size=256))
def test_fuzz_after_the_magic(length: int, rest: bytes) -> None:
    _only_frame_or_frame_error(MAGIC + struct.pack(">I", length) + rest)


@settings(max_examples=200)
@given(st.data())
def test_fuzz_mutated_good_frame(data: st.DataObject) -> None:
    good = bytearray(encode_frame(GOOD_METADATA, GOOD_BODY))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(good) - 1))
        good[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    _only_frame_or_frame_error(bytes(good[:cut]))


@given(
    meta=st.text(alphabet=st.sampled_from('[]{}":,0123456789-.eE tfnulrs\\'), max_size=200),
    body=st.binary(max_size=16),
)
def test_fuzz_json_like_metadata(meta: str, body: bytes) -> None:
    encoded = meta.encode()
    _only_frame_or_frame_error(raw_frame(encoded, body))


# ------------------------------------------------------------------ head and body apart


def _decoded(data: bytes, body: bytes = b"") -> Frame | str:
    """The frame, or the reason it is refused: the two ways of decoding must agree on both."""
    try:
        return decode_frame(data, body)
    except FrameError as exc:
        return str(exc)


@given(metadata=st.dictionaries(st.text(), json_values, max_size=6), body=st.binary(max_size=512))
def test_head_then_body_is_the_frame(metadata: dict[str, Any], body: bytes) -> None:
    head = encode_frame_head(metadata)
    assert head + body == encode_frame(metadata, body)
    assert frame_head_size(head[:PREFIX_SIZE]) == len(head)


def test_a_body_read_apart_is_taken_as_it_is() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: copying it would cost as much again
    frame = decode_frame(encode_frame_head(GOOD_METADATA), body)
    assert frame == Frame(GOOD_METADATA, body)
    assert frame.body is body


@given(data=st.binary(max_size=256), cut=st.integers(0, 256))
def test_fuzz_any_split_decodes_as_the_whole(data: bytes, cut: int) -> None:
    assert _decoded(data[:cut], data[cut:]) == _decoded(data)


@settings(max_examples=200)
@given(st.data())
def test_fuzz_mutated_good_frame_split_anywhere_decodes_as_the_whole(data: st.DataObject) -> None:
    good = bytearray(encode_frame(GOOD_METADATA, GOOD_BODY))
    for _ in range(data.draw(st.integers(0, 4))):
        index = data.draw(st.integers(0, len(good) - 1))
        good[index] = data.draw(st.integers(0, 255))
    whole = bytes(good[: data.draw(st.integers(0, len(good)))])
    cut = data.draw(st.integers(0, len(whole)))
    assert _decoded(whole[:cut], whole[cut:]) == _decoded(whole)


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        MAGIC,
        MAGIC + b"\x00\x00\x00",
        b"XWEG/2\n" + struct.pack(">I", 2),
        MAGIC + struct.pack(">I", MAX_METADATA_BYTES + 1),
        MAGIC + struct.pack(">I", 0xFFFFFFFF),
    ],
    ids=["empty", "magic-only", "short-length", "wrong-magic", "length-over-limit", "length-max"],
)
def test_no_head_size_for_what_does_not_begin_a_frame(prefix: bytes) -> None:
    assert frame_head_size(prefix) is None


@pytest.mark.parametrize("length", [0, 2, MAX_METADATA_BYTES])
def test_head_size_is_the_prefix_and_the_metadata(length: int) -> None:
    assert frame_head_size(MAGIC + struct.pack(">I", length)) == PREFIX_SIZE + length
    assert frame_head_size(MAGIC + struct.pack(">I", length) + b"more") == PREFIX_SIZE + length
