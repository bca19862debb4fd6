"""Time as an input: code takes a ``Clock`` and asks it for ``now`` once per operation."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

__all__ = ["Clock", "SystemClock", "FixedClock", "utc", "require_utc"]


def require_utc(value: dt.datetime, what: str = "time") -> dt.datetime:
    """Return ``value`` if it is timezone-aware UTC; naive or other zones are refused."""
    if value.tzinfo is None or value.utcoffset() != dt.timedelta(0):
        raise ValueError(f"{what} must be a UTC datetime, got {value!r}")
    return value


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock for tests: stands still until moved."""

    def __init__(self, now: dt.datetime) -> None:
        self._now = require_utc(now)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)

    def set(self, now: dt.datetime) -> None:
        self._now = require_utc(now)
