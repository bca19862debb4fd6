"""Running one HTTP service per process: listen, serve until a signal, stop cleanly.

Shared by the registry, the OCSP responder and the TSA (and usable by any component
that may import ``trust``).  Not pure: this is the one place these services meet
sockets and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

__all__ = ["serve_app", "run_until_signalled"]


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
        asyncio.run(run())
    except startup_errors as exc:
        # Start-up failures: unreadable key or configuration, broken state, address in use.
        structlog.get_logger(f"xweg.{name}").error(f"{name}.start_failed", error=str(exc))
        return 1
    return 0
