"""``xweg token issue`` and ``xweg gateway token issue``: bearer tokens for a security server's APIs.

::

    xweg token issue --role auditor --subject NAME [--bodies] [--ttl 8h] --config server.toml
    xweg gateway token issue --role ROLE --subject NAME [--ttl 8h] --config server.toml

Prints the token (an ES256 JWT) alone on standard output, so that scripts can capture
it; what it grants goes to standard error.  An auditor token (for the auditor API) is
signed with the security server's auditor-token key (``auditor-token.key`` in its data
folder), a management token (for the management API, roles as
:mod:`gateway.management.openapi` lists them) with its management-token key
(``management-token.key``); each is created on first use, encrypted with the server's
key passphrase, and only that server accepts its tokens.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from core.clock import Clock, SystemClock
from gateway.config import ConfigError
from gateway.management.tokens import ROLES, issue_management_token, verify_management_token
from gateway.tokens import TokenKey, TokenKeyError, load_token_key
from trust.tokens import DEFAULT_TTL_S, MAX_TTL_S, ROLE_AUDITOR, issue_auditor_token, verify_auditor_token
from xweg.gatewayargs import add_gateway_config_arguments, load_gateway_config

__all__ = [
    "reported",
    "add_gateway_token_commands",
    "add_token_commands",
    "parse_ttl",
    "run_gateway_token_command",
    "run_token_command",
]

_TTL = re.compile(r"([0-9]{1,9})([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str, max_s: int = MAX_TTL_S) -> int:
    """``90``, ``90s``, ``30m``, ``8h`` or ``7d`` as seconds, at most ``max_s`` (an auditor
    token's :data:`MAX_TTL_S` unless told otherwise)."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a lifetime such as 30m, 8h or 7d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 1 <= seconds <= max_s:
        raise argparse.ArgumentTypeError(f"a token lives 1 s to {max_s // 86400} days, not {text!r}")
    return seconds


def add_token_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``token`` (with ``issue``) on the top-level ``subparsers``."""
    token = subparsers.add_parser("token", help="bearer tokens for the auditor API")
    actions = token.add_subparsers(dest="action", required=True)
    issue = actions.add_parser("issue", help="issue an auditor token signed by this security server")
    issue.add_argument("--role", choices=(ROLE_AUDITOR,), required=True, help="the token's role")
    issue.add_argument("--subject", required=True, help="who the token is for (name or id of the auditor)")
    issue.add_argument("--bodies", action="store_true", help="allow reading message bodies and evidence")
    issue.add_argument(
        "--ttl", type=parse_ttl, default=DEFAULT_TTL_S, help="lifetime, e.g. 30m, 8h, 7d (default 8h)"
    )
    add_gateway_config_arguments(issue)
    return token  # type: ignore[no-any-return]


def _issue(args: argparse.Namespace, clock: Clock) -> int:
    config = load_gateway_config(args)
    key = load_token_key(config, TokenKey.AUDITOR)
    now = clock.now()
    issuer = config.server_id.slash()
    token = issue_auditor_token(
        key, issuer=issuer, subject=args.subject, may_read_bodies=args.bodies, now=now, ttl_s=args.ttl
    )
    identity = verify_auditor_token(token, key.public_key(), issuer=issuer, now=now)
    print(token)
    print(
        f"issued an {ROLE_AUDITOR} token for {identity.subject} by {issuer}: "
        f"{'with' if identity.may_read_bodies else 'without'} the right to read bodies, "
        f"valid until {identity.expires_at.isoformat()}, id {identity.token_id}",
        file=sys.stderr,
    )
    return 0


def run_token_command(args: argparse.Namespace, clock: Clock | None = None) -> int:
    """Run a parsed ``xweg token ...`` command; print one line and return non-zero on failure."""
    name = f"xweg token {args.action}"
    if args.action != "issue":
        print(f"{name}: unknown command", file=sys.stderr)
        return 2
    return reported(name, lambda: _issue(args, clock or SystemClock()))


def add_gateway_token_commands(gateway_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token`` (with ``issue``) to ``xweg gateway``'s subparsers: management-API tokens."""
    token = gateway_sub.add_parser("token", help="bearer tokens for the management API")
    actions = token.add_subparsers(dest="token_action", required=True)
    issue = actions.add_parser("issue", help="issue a management token signed by this security server")
    issue.add_argument("--role", choices=ROLES, required=True, help="the token's role")
    issue.add_argument("--subject", required=True, help="who the token is for (the audit trail's actor)")
    issue.add_argument(
        "--ttl", type=parse_ttl, default=DEFAULT_TTL_S, help="lifetime, e.g. 900, 30m, 8h, 7d (default 8h)"
    )
    add_gateway_config_arguments(issue)


def _issue_management(args: argparse.Namespace, clock: Clock) -> int:
    config = load_gateway_config(args)
    key = load_token_key(config, TokenKey.MANAGEMENT)
    now = clock.now()
    token = issue_management_token(
        key, server_id=config.server_id, subject=args.subject, role=args.role, now=now, ttl_s=args.ttl
    )
    identity = verify_management_token(token, key.public_key(), server_id=config.server_id, now=now)
    print(token)
    print(
        f"issued a management token for {identity.subject} as {identity.role} on "
        f"{config.server_id.slash()}: valid until {identity.expires_at.isoformat()}, id {identity.token_id}",
        file=sys.stderr,
    )
    return 0


def run_gateway_token_command(args: argparse.Namespace, clock: Clock | None = None) -> int:
    """Run a parsed ``xweg gateway token ...`` command; one line on stderr and non-zero on failure."""
    name = f"xweg gateway token {args.token_action}"
    if args.token_action != "issue":  # noqa: S105 (a command name)
        print(f"{name}: unknown command", file=sys.stderr)
        return 2
    return reported(name, lambda: _issue_management(args, clock or SystemClock()))


def reported(name: str, work: Callable[[], int]) -> int:
    """``work()``, or one line on stderr and 1 for what a token command can fail with."""
    try:
        return work()
    except (ConfigError, TokenKeyError, ValueError) as exc:
        # One line, always: a database driver's message may span several.
        print(f"{name}: {' '.join(str(exc).split())}", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: {where}{exc.strerror or exc}", file=sys.stderr)
    return 1
