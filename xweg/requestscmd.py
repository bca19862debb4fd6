"""``xweg registry requests ...``: registration officers decide what security servers asked for.

``list`` shows requests (``--status pending`` narrows), ``show ID`` one request,
``approve ID``, ``reject ID --reason TEXT`` (the submitting server reads the reason) and
``revoke ID`` decide a pending one.  Each works on the registry store directly, in one
transaction with its audit-trail entry; ``--by`` names who decides (default: the login
name).  A running registry publishes the change within its ``change_poll_s``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import sys

__all__ = ["add_requests_commands", "run_requests_command"]

_STATES = ("pending", "approved", "rejected", "revoked")  # registry.store.REQUEST_STATES


def add_requests_commands(registry_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``requests`` to ``xweg registry``'s subparsers."""
    from xweg.registrycmd import DEFAULT_DATABASE_URL

    requests = registry_sub.add_parser("requests", help="registration requests from security servers")
    requests_sub = requests.add_subparsers(dest="requests_action", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--database-url", default=DEFAULT_DATABASE_URL, help="SQLAlchemy URL of the registry store"
        )
        parser.add_argument("--json", action="store_true", help="print JSON")

    listing = requests_sub.add_parser("list", help="list requests, oldest first")
    common(listing)
    listing.add_argument("--status", choices=_STATES, help="only requests in this state")
    show = requests_sub.add_parser("show", help="one request")
    common(show)
    show.add_argument("id")
    for action, help_text in (
        ("approve", "approve a pending request and apply it"),
        ("reject", "reject a pending request, with a reason the server can read"),
        ("revoke", "withdraw a pending request"),
    ):
        decide = requests_sub.add_parser(action, help=help_text)
        common(decide)
        decide.add_argument("id")
        decide.add_argument("--by", help="who decides, for the audit trail (default: the login name)")
        decide.add_argument("--reason", required=action == "reject", help="why (shown to the server)")


def _line(entry: dict[str, object]) -> str:
    what = entry.get("client") or f"auth cert {str(entry.get('auth_certificate_fingerprint'))[:16]}"
    text = f"{entry['id']}  {entry['status']:<8}  {entry['kind']:<9}  {entry['server']}  {what}"
    if entry.get("reason"):
        text += f"  reason: {entry['reason']}"
    return text


def run_requests_command(args: argparse.Namespace) -> int:
    """0 on success, 1 when the store refuses (unknown id, already decided, ...)."""
    from registry.store import AuditContext, RegistryError, RegistryStore

    try:
        # The store's audit lines are logs, not output: keep them off stdout (as registrycmd does).
        with contextlib.redirect_stdout(sys.stderr), RegistryStore.open(args.database_url) as store:
            if args.requests_action == "list":
                entries = [e.to_dict() for e in store.registrations(status=args.status)]
                output = json.dumps(entries, indent=2) if args.json else "\n".join(map(_line, entries))
            elif args.requests_action == "show":
                entry = store.registration(args.id).to_dict()
                output = json.dumps(entry, indent=2) if args.json else _line(entry)
            else:
                actor = args.by or getpass.getuser()
                decided = store.decide_registration(
                    args.id,
                    args.requests_action,
                    reason=args.reason,
                    audit=AuditContext(actor, dt.datetime.now(dt.UTC)),
                ).to_dict()
                output = json.dumps(decided, indent=2) if args.json else _line(decided)
    except (RegistryError, OSError, ValueError) as exc:
        print(f"xweg registry requests {args.requests_action}: {exc}", file=sys.stderr)
        return 1
    if output:
        print(output)
    return 0
