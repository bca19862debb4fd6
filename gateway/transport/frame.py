"""The message frame between security servers: signed metadata, then the body bytes.

```
b"XWEG/1\n" | uint32 big-endian length of the metadata | metadata (JSON) | body
```
The metadata carries the canonical message header and its detached JWS; the body
travels as its original bytes, so that the receiver hashes exactly what the sender
signed.  The head (magic, length, metadata) is encoded and decoded apart from the body,
so that a body of many megabytes is never copied to be framed or unframed: a sender
writes the head and then the body, a receiver reads the body into its own buffer (see
:func:`frame_head_size`).  Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAGIC",
    "CONTENT_TYPE",
    "FrameError",
    "Frame",
    "PREFIX_SIZE",
    "encode_frame",
    "encode_frame_head",
    "frame_head_size",
    "decode_frame",
    "optional_b64",
    "optional_unb64",
]

MAGIC = b"XWEG/1\n"
CONTENT_TYPE = "application/x-xweg-message"
#: Bound on the metadata part: headers, identifiers and one signature with its certificate.
MAX_METADATA_BYTES = 256 * 1024
_LEN = struct.Struct(">I")
#: The bytes before the metadata: the magic and the metadata's length.
PREFIX_SIZE = len(MAGIC) + _LEN.size


class FrameError(ValueError):
    """The bytes received are not a well-formed frame."""


@dataclass(frozen=True, slots=True)
class Frame:
    metadata: dict[str, Any]
    body: bytes


def encode_frame_head(metadata: dict[str, Any]) -> bytes:
    """The head of a frame: the magic, the metadata's length and the metadata.

    The body follows it unchanged; sending the two one after the other sends the frame.
    """
    try:
        meta = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise FrameError(f"frame metadata cannot be encoded: {exc}") from exc
    if len(meta) > MAX_METADATA_BYTES:
        raise FrameError("frame metadata is too large")
    return MAGIC + _LEN.pack(len(meta)) + meta


def encode_frame(metadata: dict[str, Any], body: bytes) -> bytes:
    """The whole frame as one byte string (a copy of ``body``: large bodies are sent as
    :func:`encode_frame_head` followed by the body instead)."""
    return encode_frame_head(metadata) + body


def frame_head_size(prefix: bytes) -> int | None:
    """The size of the head of a frame whose first bytes are ``prefix``, or ``None``.

    ``prefix`` holds at least :data:`PREFIX_SIZE` bytes; ``None`` means they do not begin
    a frame whose head could be read (:func:`decode_frame` says why).  A receiver reads
    that many bytes as the head and the rest as the body.
    """
    if len(prefix) < PREFIX_SIZE or not prefix.startswith(MAGIC):
        return None
    meta_len: int = _LEN.unpack_from(prefix, len(MAGIC))[0]
    if meta_len > MAX_METADATA_BYTES:
        return None
    return PREFIX_SIZE + meta_len


def decode_frame(data: bytes, body: bytes = b"") -> Frame:
    """The frame whose bytes are ``data`` followed by ``body``.

    Split at the end of the head (:func:`frame_head_size`), ``body`` becomes the frame's
    body as it is, without a copy; any other split is decoded the same, through a copy.
    """
    if body and frame_head_size(data) != len(data):
        data, body = data + body, b""
    if not data.startswith(MAGIC):
        raise FrameError("not an xweg message frame")
    offset = len(MAGIC)
    if len(data) < offset + _LEN.size:
        raise FrameError("frame is truncated")
    (meta_len,) = _LEN.unpack_from(data, offset)
    offset += _LEN.size
    if meta_len > MAX_METADATA_BYTES or len(data) < offset + meta_len:
        raise FrameError("frame metadata length is invalid")
    try:
        metadata = json.loads(data[offset : offset + meta_len].decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and over-long integers; RecursionError
        # deeply nested arrays -- all of them a peer's malformed frame, none a crash.
        raise FrameError(f"frame metadata is not JSON: {type(exc).__name__}") from exc
    if not isinstance(metadata, dict):
        raise FrameError("frame metadata must be a JSON object")
    if body:
        return Frame(metadata, body)
    return Frame(metadata, data[offset + meta_len :])


def optional_b64(data: bytes | None) -> str | None:
    """An optional binary metadata field (e.g. an OCSP response) as base64 text, or null."""
    return base64.b64encode(data).decode("ascii") if data is not None else None


def optional_unb64(value: object) -> bytes | None:
    """Read an optional base64 metadata field; anything but base64 text or null is malformed."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(value.encode("ascii"), validate=True)
