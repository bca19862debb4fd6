"""``xweg gateway maintenance on|off --config FILE``: announce maintenance mode to the registry.

The registry applies it at once and publishes it with the next global configuration.
Prints the server and its mode (JSON with ``--json``).  Exit status: 0 applied (also
when the server already was in that mode); 1 refused or any other failure, with one
line on stderr; 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys

from xweg.gatewayargs import add_gateway_config_arguments, load_gateway_config

__all__ = ["add_maintenance_command", "run_maintenance_command"]


def add_maintenance_command(gateway_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``maintenance`` to ``xweg gateway``'s subparsers."""
    maintenance = gateway_sub.add_parser(
        "maintenance", help="tell the registry this server enters (on) or leaves (off) maintenance mode"
    )
    maintenance.add_argument("mode", choices=["on", "off"])
    add_gateway_config_arguments(maintenance)
    maintenance.add_argument("--json", action="store_true", help="print the registry's answer as JSON")


async def _run(args: argparse.Namespace) -> int:
    from gateway.maintenance import RegistrationFailed, announce_maintenance

    config = load_gateway_config(args)
    try:
        answer = await announce_maintenance(config, args.mode == "on", now=dt.datetime.now(dt.UTC))
    except RegistrationFailed as exc:
        print(f"xweg gateway maintenance: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        mode = "on" if answer.get("maintenance_mode") else "off"
        unchanged = "" if answer.get("changed") else " (unchanged)"
        print(f"{answer.get('server')}  maintenance {mode}{unchanged}")
    return 0


def run_maintenance_command(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError
    from trust.errors import TrustError

    try:
        return asyncio.run(_run(args))
    except (ConfigError, TrustError, OSError, ValueError) as exc:
        print(f"xweg gateway maintenance: {exc}", file=sys.stderr)
        return 1
