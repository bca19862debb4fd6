"""Fetch a global configuration document over HTTP: one seam, bounded in size and time."""

from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp

from trust.anchor import Anchor
from trust.errors import GlobalConfError
from trust.globalconf import GlobalConf, GlobalConfThresholdNotMet, verify_global_conf

__all__ = ["FetchError", "fetch_document", "fetch_verified_global_conf"]


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


async def fetch_verified_global_conf(
    anchor: Anchor, session: aiohttp.ClientSession, now: dt.datetime, *, timeout_s: float, max_size: int
) -> tuple[str, bytes, GlobalConf]:
    """The first document from the anchor's registry URLs that verifies against ``anchor`` at ``now``.

    Returns the registry's base URL, the document and what it says; raises
    :class:`FetchError` naming each URL's failure when none verifies.  For one-off
    readers (the command line); a running server keeps its serial in
    :class:`gateway.confclient.updater.GlobalConfUpdater` and refuses rollback.
    """
    failures: list[str] = []
    for base in anchor.registry_urls:
        url = base.rstrip("/") + "/globalconf"
        try:
            document = await fetch_document(session, url, timeout_s=timeout_s, max_size=max_size)
            return base.rstrip("/"), document, verify_global_conf(document, anchor, now, max_size=max_size)
        except GlobalConfThresholdNotMet as exc:
            failures.append(f"{url}: {exc} (after a key rotation, `xweg anchor refresh` updates the anchor)")
        except FetchError as exc:
            failures.append(str(exc))  # it names the URL
        except GlobalConfError as exc:
            failures.append(f"{url}: {exc}")
    raise FetchError("no registry URL served a verifiable global configuration: " + "; ".join(failures))
