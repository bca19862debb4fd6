"""Reading a frame off a stream: head and body apart, decoded as the whole would be."""

from __future__ import annotations

import asyncio
import struct
from unittest import mock

import pytest
from aiohttp import StreamReader

from gateway.transport.frame import MAGIC, Frame, FrameError, decode_frame, encode_frame, encode_frame_head
from gateway.transport.receive import read_frame

METADATA = {"header": {"id": "m-1"}, "signature": "eyJ.a.b"}
BODY = bytes(range(256)) * 1000


class TooLarge(Exception):
    pass


def stream_of(data: bytes, piece: int = 7_000) -> StreamReader:
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    for start in range(0, len(data), piece):
        stream.feed_data(data[start : start + piece])
    stream.feed_eof()
    return stream


def _decoded(head: bytes, body: bytes) -> Frame | str:
    try:
        return decode_frame(head, body)
    except FrameError as exc:
        return str(exc)


@pytest.mark.parametrize(("piece", "size"), [(1, 300), (5, 3000), (7_000, len(BODY))])
async def test_a_frame_is_read_as_its_head_and_its_body(piece: int, size: int) -> None:
    sent = BODY[:size]
    head, body = await read_frame(stream_of(encode_frame(METADATA, sent), piece), 10**7, TooLarge)
    assert head == encode_frame_head(METADATA)
    assert body == sent
    assert decode_frame(head, body) == Frame(METADATA, sent)


async def test_a_frame_without_a_body() -> None:
    head, body = await read_frame(stream_of(encode_frame(METADATA, b"")), 10**7, TooLarge)
    assert (head, body) == (encode_frame_head(METADATA), b"")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b'{"type": "Server.ServerProxy.AccessDenied"}',
        b"XWEG/2\n" + encode_frame(METADATA, BODY)[len(MAGIC) :],
        MAGIC + b"\x00\x00",
        MAGIC + struct.pack(">I", 0xFFFFFFFF) + b"{}" + BODY,
        encode_frame(METADATA, b"")[:-3],
    ],
    ids=["empty", "json", "wrong-magic", "short-length", "length-over-limit", "truncated-metadata"],
)
async def test_what_is_not_a_whole_head_is_kept_whole_and_refused_as_before(data: bytes) -> None:
    head, body = await read_frame(stream_of(data), 10**7, TooLarge)
    assert (head, body) == (data, b"")
    assert isinstance(_decoded(head, body), str)
    assert _decoded(head, body) == _decoded(data, b"")


@pytest.mark.parametrize("data", [encode_frame(METADATA, BODY), b"not a frame" + BODY])
async def test_one_byte_over_the_limit_is_refused_and_the_limit_itself_is_not(data: bytes) -> None:
    head, body = await read_frame(stream_of(data), len(data), TooLarge)
    assert head + body == data
    with pytest.raises(TooLarge):
        await read_frame(stream_of(data), len(data) - 1, TooLarge)


async def test_a_head_alone_may_be_too_large() -> None:
    data = encode_frame(METADATA, b"")
    with pytest.raises(TooLarge):
        await read_frame(stream_of(data), len(data) - 1, TooLarge)
