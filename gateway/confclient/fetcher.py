"""Fetch a global configuration document over HTTP: one seam, bounded in size and time."""

from __future__ import annotations

import asyncio

import aiohttp

__all__ = ["FetchError", "fetch_document"]


class FetchError(Exception):
    """The document could not be fetched; the message says from where and why."""


async def fetch_document(
    session: aiohttp.ClientSession, url: str, *, timeout_s: float, max_size: int
) -> bytes:
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise FetchError(f"{url} answered HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > max_size:
                    raise FetchError(f"{url} offers {resp.content_length} bytes, more than {max_size}")
                data = await resp.content.read(max_size + 1)
                # read(n) may stop short of n before EOF; keep reading up to the cap.
                while len(data) <= max_size:
                    more = await resp.content.read(max_size + 1 - len(data))
                    if not more:
                        break
                    data += more
                if len(data) > max_size:
                    raise FetchError(f"{url} sent more than {max_size} bytes")
                return data
    except TimeoutError as exc:
        raise FetchError(f"{url} did not answer within {timeout_s} s") from exc
    except aiohttp.ClientError as exc:
        raise FetchError(f"{url}: {exc}") from exc
