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
        "--ca", type=Path, help="CA certificate(s) to trust (PEM); default: those recorded in the log"
    )

    backend = sub.add_parser("demo-backend", help="a demo information-system backend (used by xweg demo)")
    backend.add_argument("kind")
    backend.add_argument("--port", type=int, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from xweg.demo import run_demo

        return run_demo(args.data, once=args.once)
    if args.command in ("gateway", "registry"):
        from xweg.logsetup import configure_logging

        configure_logging()
    if args.command == "gateway":
        from gateway.server import main as gateway_main

        return gateway_main(str(args.config))
    if args.command == "registry":
        from registry.server import main as registry_main

        return int(registry_main(str(args.config)))
    if args.command == "audit":
        from xweg.audit import verify_command

        if not args.path.exists():
            print(f"xweg audit verify: {args.path}: no such file", file=sys.stderr)
            return 2
        return verify_command(args.path, args.ca, args.json)
    if args.command == "demo-backend":
        from xweg.backends import main as backend_main

        return backend_main([args.kind, "--port", str(args.port)])
    return 2
