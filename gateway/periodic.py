"""Repeat a background round for ever: at its interval after success, backing off after failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

__all__ = ["run_periodically"]


async def run_periodically(
    round_: Callable[[], Awaitable[bool]], *, interval_s: float, retry_s: float, name: str
) -> None:
    """Run ``round_`` until cancelled.

    After a successful round (it returned True) the next comes ``interval_s`` later.
    After a failed one the next comes soon -- 1 s, then doubling up to ``retry_s`` -- so
    that a service that is not up yet at start-up, or briefly away, is retried within
    seconds rather than an interval later.  A round that raises counts as failed and is
    logged: one bad round never ends the loop.
    """
    log = structlog.get_logger(f"xweg.{name}")
    backoff_s = 1.0
    while True:
        try:
            ok = await round_()
        except Exception:
            log.exception(f"{name}.round_crashed")
            ok = False
        if ok:
            backoff_s = 1.0
            await asyncio.sleep(interval_s)
        else:
            await asyncio.sleep(min(backoff_s, retry_s))
            backoff_s = min(backoff_s * 2, retry_s)
