"""Refresh a configuration anchor file from the registry after a key rotation.

A security server that adopted a rotated key set keeps it beside its serial; the anchor
file it was installed with still names the old keys.  :func:`update_anchor_file` writes
the rotated anchor, but only from a document that verifies against the anchor in the
file (the threshold of the old keys and of the new ones); :func:`refresh_anchor_file`
fetches that document from the anchor's registry URLs, any of which may be a mirror.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp

from gateway.confclient.fetcher import FetchError, fetch_document
from trust.anchor import Anchor, load_anchor, save_anchor
from trust.errors import GlobalConfError
from trust.globalconf import MAX_GLOBALCONF_BYTES, rotated_anchor, verify_global_conf

__all__ = ["AnchorRefreshError", "update_anchor_file", "refresh_anchor_file"]


class AnchorRefreshError(Exception):
    """No registry URL served a document that verifies against the anchor file."""


def update_anchor_file(path: Path, document: bytes, now: dt.datetime) -> Anchor:
    """Verify ``document`` against the anchor at ``path`` and write the rotated anchor; returns it.

    Raises :class:`~trust.errors.GlobalConfError` when the document does not verify;
    the file is then left as it was.  Unchanged when the document announces no new keys.
    """
    anchor = load_anchor(path)
    conf = verify_global_conf(document, anchor, now)
    rotated = rotated_anchor(anchor, conf)
    if rotated != anchor:
        save_anchor(rotated, path)
    return rotated


async def refresh_anchor_file(
    path: Path,
    session: aiohttp.ClientSession,
    now: dt.datetime,
    *,
    timeout_s: float = 10.0,
    max_size: int = MAX_GLOBALCONF_BYTES,
) -> Anchor:
    """Fetch global configuration from the anchor's registry URLs and update the anchor file from it."""
    anchor = load_anchor(path)
    failures: list[str] = []
    for base in anchor.registry_urls:
        url = base.rstrip("/") + "/globalconf"
        try:
            document = await fetch_document(session, url, timeout_s=timeout_s, max_size=max_size)
            return update_anchor_file(path, document, now)
        except (FetchError, GlobalConfError) as exc:
            failures.append(f"{url}: {exc}")
    raise AnchorRefreshError(
        "no registry URL served a verifiable global configuration: " + "; ".join(failures)
    )
