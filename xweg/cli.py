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
    demo.add_argument(
        "--database-url",
        help="PostgreSQL (postgresql://user@host/db) for the registry's store, with a database"
        " <db>_<server> beside it for each security server (created; the user needs CREATEDB)",
    )

    from xweg.federationcmd import add_federation_commands

    add_federation_commands(sub)

    from xweg.gatewayargs import add_gateway_config_arguments

    gateway = sub.add_parser("gateway", help="the security server")
    gateway_sub = gateway.add_subparsers(dest="action", required=True)
    serve = gateway_sub.add_parser("serve", help="run one security server")
    add_gateway_config_arguments(serve)

    from xweg.registercmd import add_register_commands

    add_register_commands(gateway_sub)

    from xweg.serverconfcmd import add_serverconf_commands

    add_serverconf_commands(gateway_sub)

    from xweg.maintenancecmd import add_maintenance_command

    add_maintenance_command(gateway_sub)

    from xweg.clienttokencmd import add_client_token_commands

    add_client_token_commands(gateway_sub)

    from xweg.tokencmd import add_gateway_token_commands

    add_gateway_token_commands(gateway_sub)

    registry = sub.add_parser("registry", help="the central registry")
    registry_sub = registry.add_subparsers(dest="action", required=True)
    rserve = registry_sub.add_parser("serve", help="publish signed global configuration")
    rserve.add_argument("--config", type=Path, required=True)

    from xweg.registrycmd import add_registry_commands

    add_registry_commands(registry_sub)

    from xweg.requestscmd import add_requests_commands

    add_requests_commands(registry_sub)

    _add_audit_commands(sub)

    from xweg.trustcmd import add_trust_commands

    trust_groups = add_trust_commands(sub)
    tsa = trust_groups.add_parser("tsa", help="the RFC 3161 timestamping authority")
    tsa_sub = tsa.add_subparsers(dest="trust_action", required=True)
    tsa_serve = tsa_sub.add_parser("serve", help="issue timestamp tokens over HTTP")
    tsa_serve.add_argument("--config", type=Path, required=True)

    from xweg.tokencmd import add_token_commands

    add_token_commands(sub)

    anchor = sub.add_parser("anchor", help="the configuration anchor")
    anchor_sub = anchor.add_subparsers(dest="action", required=True)
    refresh = anchor_sub.add_parser(
        "refresh", help="update an anchor file after a registry key rotation (verified before it is written)"
    )
    refresh.add_argument("path", type=Path, help="the anchor file to refresh")

    from xweg.directorycmd import add_directory_commands

    add_directory_commands(sub)

    backend = sub.add_parser("demo-backend", help="a demo information-system backend (used by xweg demo)")
    backend.add_argument("kind")
    backend.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    backend.add_argument("--port", type=int, required=True)
    return parser


def _add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify message logs and evidence of exchanges")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    ca_help = "root CA certificate(s) to trust (PEM); default: those recorded in the log"
    tsa_help = "TSA certificate(s) to accept (PEM); default: those recorded in the log"

    verify = audit_sub.add_parser(
        "verify", help="verify a message log, or an evidence container (ZIP) offline with --anchor"
    )
    # A string, not a Path: a Path would fold the // of a postgresql:// URL.
    verify.add_argument(
        "path",
        help="a message log, an evidence container, an archive folder,"
        " or the postgresql:// URL of replicas' shared database (every shard is verified)",
    )
    verify.add_argument("--shard", help="with a postgresql:// URL: verify only this replica's shard")
    verify.add_argument("--json", action="store_true", help="print a JSON summary")
    verify.add_argument(
        "--anchor",
        type=Path,
        help="configuration anchor: trust only what it vouches for (evidence containers and logs)",
    )
    verify.add_argument("--ca", type=Path, help=ca_help)
    verify.add_argument("--tsa", type=Path, help=tsa_help)
    verify.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a checkpoint file kept earlier: the log must be consistent with it (repeatable)",
    )

    copying = audit_sub.add_parser(
        "copy", help="copy a message log (a file, or a replica's shard in PostgreSQL) to a new file"
    )
    copying.add_argument("source", help="a message log file, or the postgresql:// URL of a server's database")
    copying.add_argument("--shard", help="with a postgresql:// URL: the replica's shard (default main)")
    copying.add_argument("--out", type=Path, required=True, help="the new SQLite file (blobs beside it)")

    listing = audit_sub.add_parser("list", help="list a message log's records, one line each")
    listing.add_argument("path", type=Path)
    listing.add_argument("--json", action="store_true", help="print a JSON list")

    export = audit_sub.add_parser("export", help="write the evidence container of one exchange")
    export.add_argument("--message-id", required=True)
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", type=Path, help="the message log file")
    source.add_argument("--server", help="a security server's base URL (auditor API)")
    export.add_argument("--token-file", type=Path, help="auditor bearer token (with --server)")
    export.add_argument("--out", type=Path, required=True, help="the ZIP file to write")

    checkpoint = audit_sub.add_parser("checkpoint", help="write a checkpoint file to keep")
    checkpoint.add_argument("path", type=Path, help="the message log file")
    checkpoint.add_argument(
        "--size", type=int, help="the checkpoint of this many records (default: the latest)"
    )
    checkpoint.add_argument("--out", type=Path, required=True)

    consistency = audit_sub.add_parser(
        "consistency", help="prove that a log only grew from one checkpoint file to another"
    )
    consistency.add_argument("old", type=Path, help="the older checkpoint file")
    consistency.add_argument("new", type=Path, help="the newer checkpoint file")
    proof = consistency.add_mutually_exclusive_group(required=True)
    proof.add_argument("--log", type=Path, help="the message log, to compute the proof from")
    proof.add_argument("--proof", type=Path, help="a consistency proof (JSON list of hex hashes)")
    consistency.add_argument("--ca", type=Path, help=ca_help)
    consistency.add_argument("--tsa", type=Path, help=tsa_help)
    consistency.add_argument("--json", action="store_true")


def _run_audit(args: argparse.Namespace) -> int:
    from xweg import audit

    if args.action == "verify":
        return audit.verify_path_command(
            args.path,
            anchor_file=args.anchor,
            ca_file=args.ca,
            tsa_file=args.tsa,
            as_json=args.json,
            kept_files=args.checkpoint,
            shard=args.shard,
        )
    if args.action == "list":
        return audit.list_command(args.path, args.json)
    if args.action == "copy":
        return audit.copy_command(args.source, args.shard, args.out)
    if args.action == "export":
        from core.clock import SystemClock

        return audit.export_command(
            args.message_id,
            args.out,
            now=SystemClock().now(),
            log=args.log,
            server=args.server,
            token_file=args.token_file,
        )
    if args.action == "checkpoint":
        return audit.checkpoint_command(args.path, args.out, args.size)
    if args.action == "consistency":
        return audit.consistency_command(
            args.old,
            args.new,
            log=args.log,
            proof_file=args.proof,
            ca_file=args.ca,
            tsa_file=args.tsa,
            as_json=args.json,
        )
    return 2


def _refresh_anchor(path: Path) -> int:
    import asyncio
    import datetime as dt

    import aiohttp

    from gateway.confclient.anchor_refresh import AnchorRefreshError, refresh_anchor_file
    from trust.errors import TrustError

    async def refresh() -> int:
        async with aiohttp.ClientSession() as session:
            anchor = await refresh_anchor_file(path, session, dt.datetime.now(dt.UTC))
        keys = ", ".join(k.key_id for k in anchor.signing_keys)
        print(f"{path}: signing keys {keys} (threshold {anchor.threshold})")
        return 0

    try:
        return asyncio.run(refresh())
    except (OSError, ValueError, TrustError, AnchorRefreshError) as exc:
        print(f"xweg anchor refresh: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from xweg.demo import run_demo

        return run_demo(args.data, once=args.once, database_url=args.database_url)
    if args.command == "federation":
        from xweg.federationcmd import run_federation_command

        return run_federation_command(args)
    serving = args.command == "trust" and getattr(args, "trust_action", None) == "serve"
    if args.command == "gateway" and args.action == "register":
        from xweg.registercmd import run_register_command

        return run_register_command(args)
    if args.command == "gateway":
        from xweg.serverconfcmd import SERVERCONF_COMMANDS, run_serverconf_command

        if args.action in SERVERCONF_COMMANDS:
            return run_serverconf_command(args)
    if args.command == "gateway" and args.action == "maintenance":
        from xweg.maintenancecmd import run_maintenance_command

        return run_maintenance_command(args)
    if args.command == "gateway" and args.action == "client-token":
        from xweg.clienttokencmd import run_client_token_command

        return run_client_token_command(args)
    if args.command == "gateway" and args.action == "token":
        from xweg.tokencmd import run_gateway_token_command

        return run_gateway_token_command(args)
    if args.command == "registry" and args.action == "requests":
        from xweg.requestscmd import run_requests_command

        return run_requests_command(args)
    if args.command == "registry" and args.action != "serve":
        from xweg.registrycmd import run_registry_command

        return run_registry_command(args)
    if args.command in ("gateway", "registry") or serving:
        # The services log JSON lines.  structlog imports rich, when some development tool
        # installed it, for a console renderer they never use: about 15 MB of each
        # server's memory.  An entry of None makes that optional import fail at once.
        if "structlog" not in sys.modules:
            sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # None: "not importable"
        from xweg.logsetup import configure_logging

        configure_logging()
    if args.command == "gateway":
        from gateway.server import main as gateway_main

        return gateway_main(str(args.config), database_url=args.database_url)
    if args.command == "registry":
        from registry.server import main as registry_main

        return int(registry_main(str(args.config)))
    if args.command == "anchor":
        return _refresh_anchor(args.path)
    if args.command == "directory":
        from xweg.directorycmd import run_directory_command

        return run_directory_command(args)
    if args.command == "token":
        from xweg.tokencmd import run_token_command

        return run_token_command(args)
    if args.command == "trust":
        if args.trust_group == "tsa":
            from trust.service.tsa import main as tsa_main

            return int(tsa_main(str(args.config)))
        from xweg.trustcmd import run_trust_command

        return run_trust_command(args)
    if args.command == "audit":
        return _run_audit(args)
    if args.command == "demo-backend":
        from xweg.backends import main as backend_main

        return backend_main([args.kind, "--host", args.host, "--port", str(args.port)])
    return 2
