"""Large HTTP bodies through aiohttp, held once.

A body of many megabytes passes through a security server several times: read from the
client, written to the peer, read by the peer, written to the backend, and the answer
back.  Done naively, each step costs a full copy: aiohttp joins a body written in one
piece with the headers, asyncio's TLS transport passes it whole through OpenSSL's memory
buffer, and reading chunk by chunk into a ``bytearray`` ends in a ``bytes(...)`` copy.
This module does both directions without those copies:

* :class:`SlicedPayload` sends one or more byte strings in slices of
  :data:`SLICE_BYTES`, waiting for the transport to drain between them, so that no layer
  below holds more than a slice or two of it;
* :func:`read_limited` reads a stream into one growing buffer that becomes the body's
  ``bytes`` without a final copy, refusing it as soon as it passes a limit.

What the bodies mean, and which limit applies, is the caller's.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from aiohttp import StreamReader
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

__all__ = ["SLICE_BYTES", "SlicedPayload", "body_of", "read_limited"]

#: The largest piece handed to the transport at once: aiohttp's own write-buffer limit.
SLICE_BYTES = 64 * 1024


class SlicedPayload(Payload):
    """``parts``, sent one after the other in slices, never joined.

    Headers, size and content type are those aiohttp gives a ``bytes`` body of the same
    length (``application/octet-stream`` unless the request or response sets its own), so
    that what goes on the wire is what sending the joined bytes would send.  Reusable: a
    redirect may send it again.
    """

    _autoclose = True  # it holds bytes only, nothing to release

    def __init__(self, *parts: bytes, content_type: str = "application/octet-stream") -> None:
        super().__init__(parts, content_type=content_type)
        self._parts = parts
        self._size = sum(len(part) for part in parts)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._parts).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"".join(self._parts)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        total = sum(len(part) for part in self._parts)
        remaining = total if content_length is None else min(content_length, total)
        for part in self._parts:
            view = memoryview(part)
            start = 0
            while start < len(view) and remaining > 0:
                piece = view[start : start + min(SLICE_BYTES, remaining)]
                # Each write waits for the transport to drain once its buffer is full.
                await writer.write(piece)
                start += len(piece)
                remaining -= len(piece)


def body_of(*parts: bytes) -> bytes | SlicedPayload:
    """What to hand aiohttp as a body made of ``parts``: the joined bytes when they are
    small (one write with the headers beats several), else a :class:`SlicedPayload`."""
    if sum(len(part) for part in parts) <= SLICE_BYTES:
        return parts[0] if len(parts) == 1 else b"".join(parts)
    return SlicedPayload(*parts)


async def read_limited(
    stream: StreamReader, limit: int, too_large: Callable[[], Exception], *, first: bytes = b""
) -> bytes:
    """``first`` and the rest of ``stream``; ``too_large()`` is raised once they pass ``limit`` bytes.

    The buffer grows in place and is handed over as the result: CPython's
    ``BytesIO.getvalue()`` returns its buffer itself when nothing else shares it, so the
    body is in memory once, not once more for the conversion.
    """
    size = len(first)
    if size > limit:
        raise too_large()
    buffer = io.BytesIO()
    buffer.write(first)
    while chunk := await stream.read(SLICE_BYTES):
        size += len(chunk)
        if size > limit:
            raise too_large()
        buffer.write(chunk)
    return buffer.getvalue()
