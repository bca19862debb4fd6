"""``xweg gateway register ...``: a security server asks the registry to admit it or a client.

``auth-cert`` registers the server's auth certificate (a new server with its address),
``client SUBSYSTEM`` asks to host a subsystem, ``status ID`` reads what the registry
decided, with the reason of a rejection.  Each prints the request's id and state (JSON
with ``--json``); ``--wait SECONDS`` polls until the request is decided (the id goes to
stderr as soon as it is known, so it is not lost if waiting fails).  Exit status: 0
approved, or pending without ``--wait``; 1 refused, rejected or revoked, or any other
failure, with one line on stderr; 2 for a bad command line; 3 still pending when
``--wait`` ran out.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys

from xweg.gatewayargs import add_gateway_config_arguments, load_gateway_config

__all__ = ["add_register_commands", "run_register_command"]

_POLL_S = 0.5


def add_register_commands(gateway_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``register`` to ``xweg gateway``'s subparsers."""
    register = gateway_sub.add_parser("register", help="submit registration requests to the registry")
    register_sub = register.add_subparsers(dest="register_action", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        add_gateway_config_arguments(parser)
        parser.add_argument("--json", action="store_true", help="print the request as JSON")

    auth = register_sub.add_parser("auth-cert", help="register this server's auth certificate")
    common(auth)
    auth.add_argument("--address", help="host:port peers reach this server at (default: the peer listener)")
    auth.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for the decision")
    client = register_sub.add_parser("client", help="ask to host a client subsystem")
    common(client)
    client.add_argument("client", help="the subsystem, e.g. NRW/MUN/05774032/gewerbeamt")
    client.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for the decision")
    status = register_sub.add_parser("status", help="what the registry decided about a request")
    common(status)
    status.add_argument("id", help="the request id printed when it was submitted")


def _print(request: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(request, indent=2, sort_keys=True))
        return
    what = request.get("client") or request.get("auth_certificate_fingerprint") or ""
    line = f"{request['id']}  {request['kind']}  {request['server']}  {what}  {request['status']}"
    if request.get("reason"):
        line += f"  reason: {request['reason']}"
    print(line)


async def _run(args: argparse.Namespace) -> int:
    from core.identifiers import IdentifierError, SubsystemId
    from gateway.registration import RegistrationClient, RegistrationFailed

    config = load_gateway_config(args)
    async with RegistrationClient(config) as registry:
        now = dt.datetime.now(dt.UTC)
        try:
            if args.register_action == "auth-cert":
                answer = await registry.auth_cert(now, address=args.address)
            elif args.register_action == "client":
                try:
                    client = SubsystemId.parse_slash(args.client)
                except IdentifierError as exc:
                    raise RegistrationFailed(f"{args.client!r} is not a subsystem: {exc}") from exc
                answer = await registry.client(client, now)
            else:
                answer = await registry.status(args.id)
            wait = getattr(args, "wait", 0.0)
            if wait > 0 and answer.state == "pending":
                print(f"xweg gateway register: request {answer.id} is pending; waiting", file=sys.stderr)
            deadline = asyncio.get_running_loop().time() + wait
            while answer.state == "pending" and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(_POLL_S)
                answer = await registry.status(answer.id)
        except RegistrationFailed as exc:
            print(f"xweg gateway register: {exc}", file=sys.stderr)
            return 1
    _print(answer.request, args.json)
    if answer.state in ("rejected", "revoked"):
        return 1
    return 3 if answer.state == "pending" and getattr(args, "wait", 0.0) > 0 else 0


def run_register_command(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError
    from trust.errors import TrustError

    try:
        return asyncio.run(_run(args))
    except (ConfigError, TrustError, OSError, ValueError) as exc:
        print(f"xweg gateway register: {exc}", file=sys.stderr)
        return 1
