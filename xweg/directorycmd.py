"""``xweg directory ...``: ask the directory, verified here against the configuration anchor.

``providers`` says which subsystems provide a service for an area (the most specific
catalogue entries, see :mod:`trust.directory`), ``authority`` which services an
authority identifier offers.  The signed global configuration is fetched from the
registry URLs the anchor names (any of them may be a mirror), verified against the
anchor with the same checks a security server makes, and only then asked; nothing is
taken on a server's word.  The answer names the serial it came from.

Output is human-readable by default, the JSON of :func:`trust.directory.providers_answer`
or :func:`trust.directory.authority_answer` with ``--json``.  Exit status 0 with an
answer (also an empty one), 1 when no registry URL served a document that verifies,
2 for a malformed question.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from gateway.confclient.fetcher import FetchError, fetch_verified_global_conf
from trust.anchor import load_anchor
from trust.directory import (
    authority_answer,
    check_area,
    check_authority,
    check_service,
    providers_answer,
)
from trust.errors import TrustError
from trust.globalconf import MAX_GLOBALCONF_BYTES, GlobalConf

__all__ = ["add_directory_commands", "run_directory_command", "DirectoryError"]

#: How long one registry URL may take to serve the document (seconds).
FETCH_TIMEOUT_S = 10.0


class DirectoryError(Exception):
    """No registry URL served a global configuration that verifies against the anchor."""


def add_directory_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``xweg directory providers|authority`` to the top-level subparsers."""
    directory = sub.add_parser(
        "directory", help="look up providers and authorities in the verified global configuration"
    )
    directory_sub = directory.add_subparsers(dest="action", required=True)
    anchor_help = "the configuration anchor: the registry URLs to fetch from and the keys to verify with"

    providers = directory_sub.add_parser("providers", help="which subsystems provide a service for an area")
    providers.add_argument("--anchor", type=Path, required=True, help=anchor_help)
    providers.add_argument("--service", required=True, help="the service code, e.g. gewerbeanzeige")
    providers.add_argument("--area", required=True, help="the official area key, e.g. 05774032 (Paderborn)")
    providers.add_argument("--version", help="only this service version")
    providers.add_argument("--json", action="store_true", help="print the answer as JSON")

    authority = directory_sub.add_parser("authority", help="which services an authority identifier offers")
    authority.add_argument("--anchor", type=Path, required=True, help=anchor_help)
    authority.add_argument("id", help="the authority identifier, PREFIX:key, e.g. MELDID:05774020")
    authority.add_argument("--json", action="store_true", help="print the answer as JSON")


def _printable(text: str) -> str:
    # Catalogue texts come from the registry; control characters must not reach a terminal.
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _describe_entries(entries: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for entry in entries:
        details = [entry["protocol"], entry["standard"] or "-", f"area {entry['area'] or 'everywhere'}"]
        lines.append(f"  {entry['service']}  " + "  ".join(_printable(d) for d in details))
        if entry["description"]:
            lines.append(f"    {_printable(entry['description'])}")
        if entry["authorities"]:
            lines.append(f"    authorities: {', '.join(entry['authorities'])}")
        if not entry["servers"]:
            lines.append("    no security server hosts it")
        for server in entry["servers"]:
            maintenance = " (maintenance mode)" if server["maintenance_mode"] else ""
            lines.append(f"    server {server['id']} at {server['address']}{maintenance}")
    return lines


def _source(answer: dict[str, Any]) -> str:
    return (
        f"global configuration {answer['instance']} serial {answer['globalconf_serial']}, "
        f"expires {answer['globalconf_expires_at']}"
    )


def _describe_providers(answer: dict[str, Any]) -> str:
    service = answer["service_code"] + (f" version {answer['version']}" if answer["version"] else "")
    if not answer["providers"]:
        return f"no provider of {service} is catalogued for area {answer['area']} ({_source(answer)})"
    head = f"{service} for area {answer['area']} ({_source(answer)}):"
    return "\n".join([head, *_describe_entries(answer["providers"])])


def _describe_authority(answer: dict[str, Any]) -> str:
    if not answer["services"]:
        return f"no service is catalogued for {answer['authority']} ({_source(answer)})"
    head = f"services of {answer['authority']} ({_source(answer)}):"
    return "\n".join([head, *_describe_entries(answer["services"])])


async def _fetch(anchor_path: Path, now: dt.datetime) -> GlobalConf:
    anchor = load_anchor(anchor_path)
    async with aiohttp.ClientSession() as session:
        try:
            _, _, conf = await fetch_verified_global_conf(
                anchor, session, now, timeout_s=FETCH_TIMEOUT_S, max_size=MAX_GLOBALCONF_BYTES
            )
        except FetchError as exc:
            raise DirectoryError(str(exc)) from exc
        return conf


def run_directory_command(args: argparse.Namespace, *, now: dt.datetime | None = None) -> int:
    """Run ``xweg directory providers|authority``; ``now`` (UTC) is the time to verify at."""
    now = now or dt.datetime.now(dt.UTC)
    prog = f"xweg directory {args.action}"
    # (1) the question is well formed, before anything is fetched
    try:
        if args.action == "providers":
            check_service(args.service, args.version)
            check_area(args.area)
        else:
            check_authority(args.id)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    # (2) a global configuration that verifies against the anchor, (3) the answer from it
    try:
        conf = asyncio.run(_fetch(args.anchor, now))
    except (TrustError, DirectoryError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if args.action == "providers":
        answer = providers_answer(conf, args.service, args.area, version=args.version)
        text = _describe_providers(answer)
    else:
        answer = authority_answer(conf, args.id)
        text = _describe_authority(answer)
    print(json.dumps(answer, indent=2, ensure_ascii=False) if args.json else text)
    return 0
