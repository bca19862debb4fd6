"""Small strict helpers shared by trust's formats: anchor, global configuration, signed requests."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.clock import require_utc
from core.identifiers import IdentifierError, check_part

__all__ = [
    "format_time",
    "parse_time",
    "check_instance",
    "check_text",
    "b64url_decode",
    "b64",
    "unb64_bounded",
    "loads_object",
    "require_keys",
]

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; microseconds only when there are any (round-trips exactly)."""
    value = require_utc(value)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def parse_time(text: object, what: str) -> datetime:
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise ValueError(f"{what} must be an ISO 8601 UTC time ending in 'Z', got {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def check_instance(value: object, what: str = "instance") -> str:
    try:
        check_part(value, what)
    except IdentifierError as exc:
        raise ValueError(f"{what}: {exc}") from exc
    assert isinstance(value, str)
    return value


def check_text(value: object, what: str, limit: int = 255) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{what} must be a non-empty string of at most {limit} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} contains control characters")
    return value


def b64url_decode(segment: str, what: str) -> bytes:
    """Unpadded base64url as JWS uses it; anything else is refused."""
    if not segment or "=" in segment or not re.fullmatch(r"[A-Za-z0-9_-]+", segment):
        raise ValueError(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64url") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def loads_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object; duplicate keys and NaN/Infinity are refused."""
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{what} is not valid UTF-8 JSON: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value


def require_keys(
    obj: object, required: set[str], what: str, optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``obj`` must be a JSON object with exactly the ``required`` keys (plus any ``optional``)."""
    if not isinstance(obj, dict):
        raise ValueError(f"{what} must be a JSON object")
    missing = required - obj.keys()
    if missing:
        raise ValueError(f"{what} lacks {sorted(missing)}")
    unexpected = obj.keys() - required - optional
    if unexpected:
        raise ValueError(f"{what} has unexpected keys {sorted(unexpected)}")
    return obj


def b64(data: bytes) -> str:
    """Standard base64, as text."""
    return base64.b64encode(data).decode("ascii")


def unb64_bounded(text: object, what: str, limit: int, error: Callable[[str], Exception]) -> bytes:
    """Standard base64 of at most ``limit`` bytes, strictly; else ``error(message)`` is raised."""
    if not isinstance(text, str) or len(text) > limit * 4 // 3 + 4:
        raise error(f"{what} must be base64 of at most {limit} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise error(f"{what} is not base64") from exc
