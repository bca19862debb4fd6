"""Large bodies through aiohttp: sent in slices, read into one buffer, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from unittest import mock

import aiohttp
import pytest
from aiohttp import StreamReader, web
from aiohttp.test_utils import TestServer

from adapters.bodies import SLICE_BYTES, SlicedPayload, body_of, read_limited

# Several whole slices and a partial one, in a pattern that shows any reordering.
BIG = bytes(range(256)) * (3 * SLICE_BYTES // 256 + 7)


class TooLarge(Exception):
    pass


class Recorder:
    """A payload writer that keeps every piece it is given."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    async def write(self, chunk: memoryview) -> None:
        self.pieces.append(bytes(chunk))


def stream_of(data: bytes, piece: int = 10_000) -> StreamReader:
    """A stream that holds ``data`` (fed in pieces) and then ends."""
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    for start in range(0, len(data), piece):
        stream.feed_data(data[start : start + piece])
    stream.feed_eof()
    return stream


async def test_parts_are_written_in_slices_never_joined() -> None:
    head = b"head:"
    recorder = Recorder()
    await SlicedPayload(head, BIG).write(recorder)  # type: ignore[arg-type]
    assert b"".join(recorder.pieces) == head + BIG
    assert recorder.pieces[0] == head
    assert all(len(piece) <= SLICE_BYTES for piece in recorder.pieces)
    assert len(recorder.pieces) == 1 + -(-len(BIG) // SLICE_BYTES)


async def test_a_length_limit_writes_no_more() -> None:
    recorder = Recorder()
    await SlicedPayload(b"abc", BIG).write_with_length(recorder, SLICE_BYTES + 10)  # type: ignore[arg-type]
    assert b"".join(recorder.pieces) == (b"abc" + BIG)[: SLICE_BYTES + 10]


async def test_a_payload_is_reusable_and_looks_like_bytes() -> None:
    payload = SlicedPayload(b"abc", b"", b"def")
    assert payload.size == 6
    assert payload.content_type == "application/octet-stream"
    assert await payload.as_bytes() == b"abcdef"
    assert payload.decode() == "abcdef"
    for _ in range(2):
        recorder = Recorder()
        await payload.write(recorder)  # type: ignore[arg-type]
        assert b"".join(recorder.pieces) == b"abcdef"


async def test_reading_returns_the_bytes_and_the_first_ones_count() -> None:
    assert await read_limited(stream_of(BIG), len(BIG), TooLarge) == BIG
    assert await read_limited(stream_of(BIG), len(BIG) + 3, TooLarge, first=b"abc") == b"abc" + BIG
    assert await read_limited(stream_of(b""), 0, TooLarge) == b""


@pytest.mark.parametrize("first", [b"", b"a"])
async def test_one_byte_over_the_limit_is_refused(first: bytes) -> None:
    with pytest.raises(TooLarge):
        await read_limited(stream_of(BIG), len(BIG) + len(first) - 1, TooLarge, first=first)


async def test_what_is_given_first_may_already_be_too_large() -> None:
    with pytest.raises(TooLarge):
        await read_limited(stream_of(b""), 2, TooLarge, first=b"abc")


# ------------------------------------------------------------------ over a real connection

SEEN = web.AppKey("seen", list)


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await read_limited(request.content, 4 * len(BIG), TooLarge)
    request.app[SEEN].append((dict(request.headers), body))
    return web.Response(body=SlicedPayload(body, b"!"))


@pytest.fixture
async def echo() -> AsyncIterator[TestServer]:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/", _echo)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_on_the_wire_as_if_the_parts_were_joined(echo: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        for data in (SlicedPayload(b"head", BIG), b"head" + BIG):
            async with session.post(f"http://127.0.0.1:{echo.port}/", data=data) as response:
                answer = await response.read()
                assert response.headers["Content-Length"] == str(len(BIG) + 5)
                assert response.headers["Content-Type"] == "application/octet-stream"
            assert answer == b"head" + BIG + b"!"
    (sliced_headers, sliced), (joined_headers, joined) = echo.app[SEEN]
    assert sliced == joined == b"head" + BIG
    assert sliced_headers == joined_headers
    assert sliced_headers["Content-Length"] == str(len(BIG) + 4)
    assert "Transfer-Encoding" not in sliced_headers


def test_small_bodies_go_as_bytes_and_large_ones_in_slices() -> None:
    assert body_of(b"") == b""  # aiohttp then sends no Content-Type of its own
    assert body_of(b"head", b"body") == b"headbody"
    assert body_of(b"x" * SLICE_BYTES) == b"x" * SLICE_BYTES
    large = body_of(b"head", BIG)
    assert isinstance(large, SlicedPayload) and large.size == 4 + len(BIG)
