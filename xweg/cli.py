"""The ``xweg`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xweg", description="xweg: signed, logged data exchange between authorities"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the OWL demo federation on loopback ports")
    demo.add_argument(
        "--data", type=Path, default=Path("demo-data"), help="state folder (default ./demo-data)"
    )
    demo.add_argument("--once", action="store_true", help="exchange, verify, stop; exit 0 on success")

    gateway = sub.add_parser("gateway", help="the security server")
    gateway_sub = gateway.add_subparsers(dest="action", required=True)
    serve = gateway_sub.add_parser("serve", help="run one security server")
    serve.add_argument("--config", type=Path, required=True)

    registry = sub.add_parser("registry", help="the central registry")
    registry_sub = registry.add_subparsers(dest="action", required=True)
    rserve = registry_sub.add_parser("serve", help="publish signed global configuration")
    rserve.add_argument("--config", type=Path, required=True)

    audit = sub.add_parser("audit", help="verify message logs")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    verify = audit_sub.add_parser("verify", help="verify a security server's message log")
    verify.add_argument("path", type=Path)
    verify.add_argument("--json", action="store_true", help="print a JSON summary")
    verify.add_argument(
        "--ca", type=Path, help="root CA certificate(s) to trust (PEM); default: those recorded in the log"
    )
    verify.add_argument(
        "--tsa", type=Path, help="TSA certificate(s) to accept (PEM); default: those recorded in the log"
    )

    from xweg.trustcmd import add_trust_commands

    trust_groups = add_trust_commands(sub)
    tsa = trust_groups.add_parser("tsa", help="the RFC 3161 timestamping authority")
    tsa_sub = tsa.add_subparsers(dest="trust_action", required=True)
    tsa_serve = tsa_sub.add_parser("serve", help="issue timestamp tokens over HTTP")
    tsa_serve.add_argument("--config", type=Path, required=True)

    backend = sub.add_parser("demo-backend", help="a demo information-system backend (used by xweg demo)")
    backend.add_argument("kind")
    backend.add_argument("--port", type=int, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from xweg.demo import run_demo

        return run_demo(args.data, once=args.once)
    serving = args.command == "trust" and getattr(args, "trust_action", None) == "serve"
    if args.command in ("gateway", "registry") or serving:
        from xweg.logsetup import configure_logging

        configure_logging()
    if args.command == "gateway":
        from gateway.server import main as gateway_main

        return gateway_main(str(args.config))
    if args.command == "registry":
        from registry.server import main as registry_main

        return int(registry_main(str(args.config)))
    if args.command == "trust":
        if args.trust_group == "tsa":
            from trust.service.tsa import main as tsa_main

            return int(tsa_main(str(args.config)))
        from xweg.trustcmd import run_trust_command

        return run_trust_command(args)
    if args.command == "audit":
        from xweg.audit import verify_command

        if not args.path.exists():
            print(f"xweg audit verify: {args.path}: no such file", file=sys.stderr)
            return 2
        return verify_command(args.path, args.ca, args.json, args.tsa)
    if args.command == "demo-backend":
        from xweg.backends import main as backend_main

        return backend_main([args.kind, "--port", str(args.port)])
    return 2
