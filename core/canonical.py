"""Canonical encodings and the digests that signatures and request hashes cover.

A message digest is ``SHA-512(SHA-512(canonical header) || SHA-512(body))``: the
header's canonical JSON (sorted keys, no insignificant white space, UTF-8) hashed, then
joined with the body's hash.  This is X-Road REST's request-hash construction ("SHA-512
over the SHA-512 of the request headers joined with the SHA-512 of the body"), and the
same digest is what a message signature signs, so the provider's ``X-Road-Request-Hash``
is exactly the digest the consumer signed.

SOAP and REST messages are digested alike.  A SOAP message's body is the HTTP body
exactly as the client sent it (the envelope, or the whole multipart message with its
attachments) and its header names ``protocol`` ``soap`` with Content-Type and SOAPAction,
so signatures and log records cover those exact bytes.  X-Road's ``xrd:requestHash``
inside a SOAP answer is another value: the SHA-512 of the request's SOAP part alone
(:func:`adapters.soap.envelope.compute_request_hash`), which the information system
checks; this digest binds the answer to the signed request between security servers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from core.messages import RequestHeader, ResponseHeader

__all__ = ["canonical_json", "request_digest", "response_digest", "b64", "unb64"]


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _digest(kind: str, header: dict[str, Any], body_sha512: bytes) -> bytes:
    head = hashlib.sha512(canonical_json({"kind": kind, **header})).digest()
    return hashlib.sha512(head + body_sha512).digest()


def request_digest(header: RequestHeader) -> bytes:
    """The 64-byte digest a request signature covers; base64 of it is the request hash."""
    return _digest("request", header.to_dict(), header.body_sha512)


def response_digest(header: ResponseHeader) -> bytes:
    return _digest("response", header.to_dict(), header.body_sha512)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
