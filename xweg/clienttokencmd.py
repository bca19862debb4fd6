"""``xweg gateway client-token issue``: a bearer token with which an information system acts for a client.

::

    xweg gateway client-token issue --config gateway.toml --client NRW/MUN/05774032/gewerbeamt [--ttl 30d]

Prints the token (an ES256 JWT) alone on standard output, so that scripts can capture
it; what it is for goes to standard error.  The information system sends it as
``Authorization: Bearer <token>`` to this security server's client listener, which
checks it and does not forward it.  It is signed with the server's client-token key
(``client-token.key`` in its data folder, created on first use, encrypted with the
server's key passphrase); only that server accepts it, only for that client.  Removing
the key file (and restarting the server) invalidates every token issued so far.
"""

from __future__ import annotations

import argparse
import functools
import sys

from core.clock import Clock, SystemClock
from core.identifiers import IdentifierError, parse_client_slash
from gateway.tokens import TokenKey, load_token_key
from trust.clienttokens import DEFAULT_TTL_S, MAX_TTL_S, issue_client_token, verify_client_token
from xweg.gatewayargs import add_gateway_config_arguments, load_gateway_config
from xweg.tokencmd import parse_ttl, reported

__all__ = ["add_client_token_commands", "run_client_token_command"]


def add_client_token_commands(gateway_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``client-token`` (with ``issue``) to ``xweg gateway``'s subparsers."""
    group = gateway_sub.add_parser("client-token", help="bearer tokens for information systems")
    actions = group.add_subparsers(dest="client_token_action", required=True)
    issue = actions.add_parser("issue", help="issue a client token signed by this security server")
    add_gateway_config_arguments(issue)
    issue.add_argument(
        "--client", required=True, help="the client the token acts for, e.g. NRW/MUN/05774032/gewerbeamt"
    )
    issue.add_argument(
        "--ttl",
        type=functools.partial(parse_ttl, max_s=MAX_TTL_S),
        default=DEFAULT_TTL_S,
        help=f"lifetime in seconds, or e.g. 8h, 30d (default {DEFAULT_TTL_S // 86400}d)",
    )


def _issue(args: argparse.Namespace, clock: Clock) -> int:
    config = load_gateway_config(args)
    try:
        client = parse_client_slash(args.client)
    except IdentifierError as exc:
        raise ValueError(f"{args.client!r} is not a client id: {exc}") from exc
    key = load_token_key(config, TokenKey.CLIENT)
    now = clock.now()
    token = issue_client_token(key, server_id=config.server_id, client=client, now=now, ttl_s=args.ttl)
    verified = verify_client_token(token, key.public_key(), issuer=config.server_id, client=client, now=now)
    print(token)
    print(
        f"issued a client token for {client.slash()} on {config.server_id.slash()}: "
        f"valid until {verified.expires_at.isoformat()}, id {verified.token_id}",
        file=sys.stderr,
    )
    return 0


def run_client_token_command(args: argparse.Namespace, clock: Clock | None = None) -> int:
    """Run a parsed ``xweg gateway client-token ...`` command; one line on stderr and non-zero on failure."""
    name = f"xweg gateway client-token {args.client_token_action}"
    if args.client_token_action != "issue":  # noqa: S105 (a command name)
        print(f"{name}: unknown command", file=sys.stderr)
        return 2
    return reported(name, lambda: _issue(args, clock or SystemClock()))
