"""Reading a frame off an HTTP stream, its head and its body apart.

The body goes into a buffer of its own (:func:`adapters.bodies.read_limited`), so that
decoding the frame (:func:`gateway.transport.frame.decode_frame` with the head and the
body) takes the body as it is instead of copying it out of the whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import StreamReader

from adapters.bodies import read_limited
from gateway.transport.frame import PREFIX_SIZE, frame_head_size

__all__ = ["read_frame"]


async def read_frame(
    stream: StreamReader, limit: int, too_large: Callable[[], Exception]
) -> tuple[bytes, bytes]:
    """``(head, body)`` of the frame on ``stream``; ``too_large()`` once it passes ``limit`` bytes in all.

    When the first bytes do not begin a frame (or the stream ends within the head),
    ``head`` is all there was and ``body`` is empty: ``decode_frame(head, body)`` then
    refuses them for the same reason as it would the whole.
    """
    prefix = await _read_at_most(stream, PREFIX_SIZE)
    size = frame_head_size(prefix)
    if size is None:
        return await read_limited(stream, limit, too_large, first=prefix), b""
    # At most PREFIX_SIZE + MAX_METADATA_BYTES, whatever the limit.
    head = prefix + await _read_at_most(stream, size - len(prefix))
    if len(head) > limit:
        raise too_large()
    return head, await read_limited(stream, limit - len(head), too_large)


async def _read_at_most(stream: StreamReader, size: int) -> bytes:
    """The next ``size`` bytes, or fewer when the stream ends first."""
    try:
        return await stream.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        return exc.partial
