"""``xweg trust ...``: the federation's certificate authority and OCSP responder from the command line.

::

    xweg trust ca init   --dir D [--passphrase-file F | --passphrase-env VAR] [--instance NRW]
    xweg trust ca issue  --dir D --csr CSR.pem --profile auth|sign|tsa --id ID --out CERT.pem [...]
    xweg trust ca revoke --dir D --serial N --reason keyCompromise|superseded|...
    xweg trust ca list   --dir D [--json]
    xweg trust ocsp serve --config responder.toml

The CA only ever reads CSRs; security servers and TSAs make their own keys.  Every
failure prints one line to standard error and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from core.clock import SystemClock
from trust.castore import CaStore, read_passphrase
from trust.errors import TrustError
from trust.keys import MAX_PEM_FILE_BYTES, save_certificate
from trust.profiles import fingerprint

__all__ = ["add_trust_commands", "run_trust_command", "REVOCATION_REASONS"]

#: Reasons ``ca revoke`` accepts, by their RFC 5280 names (removeFromCRL is for delta CRLs only).
REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    flag.value: flag for flag in x509.ReasonFlags if flag != x509.ReasonFlags.remove_from_crl
}


def _add_passphrase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-file", type=Path, help="file holding the CA key passphrase")
    group.add_argument("--passphrase-env", metavar="VAR", help="environment variable holding the passphrase")


def _serial(text: str) -> int:
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a serial number (decimal, or hex with 0x)"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a serial number is positive")
    return value


def add_trust_commands(subparsers: Any) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Register ``trust`` on the top-level ``subparsers``; return its own sub-command group.

    The returned group lets other commands (``trust tsa serve``) join ``trust``.
    """
    trust = subparsers.add_parser("trust", help="certificate authority, OCSP responder")
    groups = trust.add_subparsers(dest="trust_group", required=True)

    ca = groups.add_parser("ca", help="the federation's certificate authority")
    ca_sub = ca.add_subparsers(dest="trust_action", required=True)

    init = ca_sub.add_parser("init", help="create a root CA, an issuing CA and its OCSP responder")
    init.add_argument("--dir", type=Path, required=True, help="CA directory (created)")
    init.add_argument("--instance", default="NRW", help="instance named in the CA names (default NRW)")
    _add_passphrase_options(init)

    issue = ca_sub.add_parser("issue", help="issue a certificate from a CSR")
    issue.add_argument("--dir", type=Path, required=True)
    issue.add_argument("--csr", type=Path, required=True, help="PEM certificate signing request")
    issue.add_argument("--profile", choices=("auth", "sign", "tsa"), required=True)
    issue.add_argument(
        "--id",
        required=True,
        help="security server (auth: INSTANCE/CLASS/MEMBER/SERVER), member (sign) or TSA name",
    )
    issue.add_argument("--out", type=Path, required=True, help="where to write the certificate (PEM)")
    issue.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    issue.add_argument("--dns", action="append", default=None, help="auth: DNS name (repeatable)")
    issue.add_argument("--ip", action="append", default=None, help="auth: IP address (repeatable)")
    _add_passphrase_options(issue)

    revoke = ca_sub.add_parser("revoke", help="revoke a certificate; the OCSP responder says so at once")
    revoke.add_argument("--dir", type=Path, required=True)
    revoke.add_argument("--serial", type=_serial, required=True, help="serial (decimal, or hex with 0x)")
    revoke.add_argument("--reason", choices=sorted(REVOCATION_REASONS), required=True)
    _add_passphrase_options(revoke)

    listing = ca_sub.add_parser("list", help="list the certificates this CA issued")
    listing.add_argument("--dir", type=Path, required=True)
    listing.add_argument("--json", action="store_true", help="print JSON")

    ocsp = groups.add_parser("ocsp", help="the OCSP responder")
    ocsp_sub = ocsp.add_subparsers(dest="trust_action", required=True)
    serve = ocsp_sub.add_parser("serve", help="serve OCSP for the CA's issuing CA")
    serve.add_argument("--config", type=Path, required=True)
    return groups  # type: ignore[no-any-return]


class _CommandError(Exception):
    """A failure to report as one line."""


def _passphrase(args: argparse.Namespace) -> bytes:
    if args.passphrase_file is None and args.passphrase_env is None:
        raise _CommandError("give the CA key passphrase with --passphrase-file F or --passphrase-env VAR")
    return read_passphrase(args.passphrase_file, args.passphrase_env, os.environ)


def _read_csr(path: Path) -> x509.CertificateSigningRequest:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PEM_FILE_BYTES + 1)
    except OSError as exc:
        raise _CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_PEM_FILE_BYTES:
        raise _CommandError(f"{path} is larger than {MAX_PEM_FILE_BYTES} bytes")
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise _CommandError(f"{path} is not a PEM certificate signing request: {exc}") from exc


def _ca_init(args: argparse.Namespace) -> int:
    store = CaStore.init(args.dir, _passphrase(args), now=SystemClock().now(), instance_name=args.instance)
    with store:
        print(f"created a CA in {args.dir}")
        for what, cert in (
            ("root", store.root_certificate),
            ("issuing CA", store.issuing_certificate),
            ("OCSP responder", store.responder_certificate),
        ):
            print(f"  {what}: {cert.subject.rfc4514_string()} sha256={fingerprint(cert)}")
    return 0


def _ca_issue(args: argparse.Namespace) -> int:
    if args.days <= 0:
        raise _CommandError("--days must be positive")
    if args.profile != "auth" and (args.dns or args.ip):
        raise _CommandError("--dns and --ip apply to auth certificates only")
    csr = _read_csr(args.csr)
    with CaStore.open(args.dir, _passphrase(args)) as store:
        cert = store.issue(
            csr,
            args.profile,
            args.id,
            now=SystemClock().now(),
            validity=timedelta(days=args.days),
            dns_names=tuple(args.dns or ("localhost",)),
            ip_addresses=tuple(args.ip or ("127.0.0.1",)),
        )
    save_certificate(cert, args.out)
    print(
        f"issued {args.profile} certificate serial {cert.serial_number} for {args.id} to {args.out} "
        f"(sha256={fingerprint(cert)}, valid until {cert.not_valid_after_utc.isoformat()})"
    )
    return 0


def _ca_revoke(args: argparse.Namespace) -> int:
    reason = REVOCATION_REASONS[args.reason]
    with CaStore.open(args.dir, _passphrase(args)) as store:
        store.revoke(args.serial, reason, now=SystemClock().now())
    print(f"revoked certificate serial {args.serial} (reason {reason.value})")
    return 0


def _ca_list(args: argparse.Namespace) -> int:
    entries = CaStore.read_register(args.dir)
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], indent=2))
        return 0
    for entry in entries:
        status: str = entry.status
        if entry.revoked_at is not None:
            reason = entry.reason.value if entry.reason else "unspecified"
            status = f"revoked {entry.revoked_at.isoformat()} ({reason})"
        print(
            f"{entry.serial}  {entry.profile:<4}  {entry.identity}  "
            f"until {entry.not_after.isoformat()}  {status}"
        )
    if not entries:
        print("no certificates issued yet")
    return 0


def _ocsp_serve(args: argparse.Namespace) -> int:
    # Logging is configured by ``xweg``'s entry point, as for every serving command.
    from trust.service.ocsp_responder import main as responder_main

    return responder_main(args.config)


_COMMANDS = {
    ("ca", "init"): _ca_init,
    ("ca", "issue"): _ca_issue,
    ("ca", "revoke"): _ca_revoke,
    ("ca", "list"): _ca_list,
    ("ocsp", "serve"): _ocsp_serve,
}


def run_trust_command(args: argparse.Namespace) -> int:
    """Run a parsed ``xweg trust ...`` command; print one line and return non-zero on failure."""
    command = _COMMANDS.get((args.trust_group, args.trust_action))
    name = f"xweg trust {args.trust_group} {args.trust_action}"
    if command is None:
        print(f"{name}: unknown command", file=sys.stderr)
        return 2
    try:
        return command(args)
    except (_CommandError, TrustError, ValueError, TypeError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: {where}{exc.strerror or exc}", file=sys.stderr)
    return 1
