"""Running one HTTP service per process: listen, serve until a signal, stop cleanly.

Shared by the registry, the OCSP responder and the TSA (and usable by any component
that may import ``trust``).  Not pure: this is the one place these services meet
sockets and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

__all__ = ["serve_app", "run_until_signalled", "event_loop_factory", "EVENT_LOOP_ENV"]

#: ``XWEG_EVENT_LOOP=asyncio`` runs a service on asyncio's own loop instead of uvloop's.
EVENT_LOOP_ENV = "XWEG_EVENT_LOOP"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (and not switched off), else ``None``: asyncio's own.

    uvloop runs the same code with a loop written in C over libuv: the benchmark in
    ``bench/`` shows what that saves on the message path (docs/performance.md).
    """
    # Read here, where a service process starts, like the signals it listens to.
    chosen = os.environ.get(EVENT_LOOP_ENV, "uvloop")
    if chosen not in ("uvloop", "asyncio"):
        raise ValueError(f"{EVENT_LOOP_ENV} must be uvloop or asyncio, not {chosen!r}")
    if chosen == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def serve_app(
    app: web.Application, host: str, port: int, *, name: str, stop: asyncio.Event | None
) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set (or the task is cancelled)."""
    log = structlog.get_logger(f"xweg.{name}")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info(f"{name}.listening", addresses=[str(a) for a in runner.addresses])
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
        log.info(f"{name}.stopped")


def run_until_signalled(
    serve: Callable[[asyncio.Event], Awaitable[None]],
    *,
    name: str,
    startup_errors: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError),
) -> int:
    """Blocking: run ``serve(stop)`` until SIGTERM or SIGINT; 0 on a clean stop, 1 if start-up failed."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run())
    except startup_errors as exc:
        # Start-up failures: unreadable key or configuration, broken state, address in use.
        structlog.get_logger(f"xweg.{name}").error(f"{name}.start_failed", error=str(exc))
        return 1
    return 0
