"""``xweg registry ...``: manage the registry store from the command line.

Each command opens the store (``--database-url``; a SQLite file by default), makes one
change in one transaction and closes it.  Errors are one line on stderr and exit
status 1 (2 for a bad command line, from argparse); ``--json`` prints what a script
wants.  ``registry ca|tsa add|list`` approve and list CAs and TSAs (certificates from
PEM files), ``registry server maintenance SERVER_ID on|off`` sets a server's maintenance
mode; changes made here are audited with the actor ``local``.  ``registry serve`` stays
in :mod:`xweg.cli`; it publishes from the same store when its configuration names
``database_url``.  ``registry token issue`` prints a bearer token for the management
API, signed with the key in the registry's state folder.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

if TYPE_CHECKING:
    from registry.store import RegistryStore
    from trust.globalconf import GlobalConf

__all__ = ["add_registry_commands", "run_registry_command", "DEFAULT_DATABASE_URL", "DEFAULT_MEMBER_CLASSES"]

DEFAULT_DATABASE_URL = "sqlite:///registry.db"

#: Created by ``registry init`` unless ``--member-class`` is given.
DEFAULT_MEMBER_CLASSES = (
    ("GOV", "government: state and federal authorities"),
    ("MUN", "municipalities and districts"),
    ("COM", "commercial organisations"),
    ("ORG", "other organisations"),
)

_TOKEN_ROLES = ("registry-admin", "registration-officer", "observer")  # registry.api.ROLES
_SHOWN_VALIDITY = dt.timedelta(minutes=10)  # validity of the unsigned document `globalconf show` prints
_MAX_PEM_FILE_BYTES = 1024 * 1024  # a certificate file (a chain of a few certificates is far smaller)


def _database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"SQLAlchemy URL of the registry store (default {DEFAULT_DATABASE_URL}); "
        "e.g. postgresql://user@host/registry",
    )


def add_registry_commands(registry_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the store commands to ``xweg registry``'s subparsers (``serve`` is added elsewhere)."""
    init = registry_sub.add_parser("init", help="create the registry store for an instance")
    _database(init)
    init.add_argument("--instance", required=True, help="the X-Road instance code, e.g. NRW")
    init.add_argument("--ocsp-freshness-s", type=int, default=3600, help="max OCSP response age, seconds")
    init.add_argument(
        "--member-class",
        action="append",
        metavar="CODE",
        help="a member class to create (repeatable; default GOV, MUN, COM, ORG)",
    )

    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = registry_sub.add_parser(name, help=help_text)
        return parser.add_subparsers(dest="registry_action", required=True)

    member_class = group("member-class", "member classes").add_parser("add", help="add a member class")
    _database(member_class)
    member_class.add_argument("--code", required=True)
    member_class.add_argument("--description", default="")

    member = group("member", "members").add_parser("add", help="register a member")
    _database(member)
    member.add_argument("--class", dest="member_class", required=True, help="member class, e.g. MUN")
    member.add_argument("--code", required=True, help="member code, e.g. a municipality key")
    member.add_argument("--name", required=True)

    subsystem = group("subsystem", "subsystems").add_parser("add", help="register a member's subsystem")
    _database(subsystem)
    subsystem.add_argument("--member", required=True, help="e.g. NRW/MUN/05774032")
    subsystem.add_argument("--code", required=True)

    groups = group("group", "global groups")
    group_add = groups.add_parser("add", help="create a global group")
    _database(group_add)
    group_add.add_argument("--code", required=True)
    group_add.add_argument("--description", default="")
    group_add.add_argument(
        "--member", action="append", default=[], help="a member or subsystem to add (repeatable)"
    )
    group_member = groups.add_parser("add-member", help="add a member or subsystem to a global group")
    _database(group_member)
    group_member.add_argument("--code", required=True, help="the group's code")
    group_member.add_argument("--member", required=True, help="e.g. NRW/MUN/05774032/gewerbeamt")

    services = group("service", "the service catalogue")
    service = services.add_parser("add", help="catalogue a provider subsystem's service")
    _database(service)
    service.add_argument("--provider", required=True, help="e.g. NRW/GOV/057/arbeitsschutz")
    service.add_argument("--code", required=True)
    service.add_argument("--version", help="service version, e.g. v1")
    service.add_argument("--protocol", required=True, type=str.upper, choices=["REST", "SOAP"])
    service.add_argument("--description", default="")
    service.add_argument("--standard", default="", help='the domain standard, e.g. "XGewerbeanzeige 2.2"')
    service.add_argument(
        "--authority", action="append", default=[], help="an authority identifier prefix:key (repeatable)"
    )
    service.add_argument("--area", help="the municipality key the service is responsible for")
    service_list = services.add_parser("list", help="list the service catalogue")
    _database(service_list)
    service_list.add_argument("--provider")
    service_list.add_argument("--authority")
    service_list.add_argument("--area")
    service_list.add_argument("--json", action="store_true")

    cas = group("ca", "approved certificate authorities")
    ca_add = cas.add_parser("add", help="approve a root CA with its intermediates and OCSP service")
    _database(ca_add)
    ca_add.add_argument("--certificate", required=True, type=Path, metavar="PEMFILE", help="the root CA")
    ca_add.add_argument(
        "--intermediate",
        action="append",
        default=[],
        type=Path,
        metavar="PEMFILE",
        help="an issuing CA under the root (repeatable; a file may hold several)",
    )
    ca_add.add_argument("--ocsp-url", help="where the CA answers OCSP requests, e.g. http://ocsp.example/")
    ca_add.add_argument(
        "--ocsp-responder",
        action="append",
        default=[],
        type=Path,
        metavar="PEMFILE",
        help="a delegated OCSP responder certificate (repeatable; needs --ocsp-url)",
    )
    ca_add.add_argument("--json", action="store_true", help="print the approved CA as JSON")
    ca_list = cas.add_parser("list", help="list the approved CAs")
    _database(ca_list)
    ca_list.add_argument("--json", action="store_true")

    tsas = group("tsa", "approved timestamping authorities")
    tsa_add = tsas.add_parser("add", help="approve a TSA whose certificate an approved CA issued")
    _database(tsa_add)
    tsa_add.add_argument("--name", required=True, help='e.g. "IT.NRW TSA"')
    tsa_add.add_argument("--url", required=True, help="its RFC 3161 endpoint")
    tsa_add.add_argument("--certificate", required=True, type=Path, metavar="PEMFILE")
    tsa_add.add_argument("--json", action="store_true", help="print the approved TSA as JSON")
    tsa_list = tsas.add_parser("list", help="list the approved TSAs")
    _database(tsa_list)
    tsa_list.add_argument("--json", action="store_true")

    maintenance = group("server", "security servers").add_parser(
        "maintenance", help="put a security server into maintenance mode (on) or take it out (off)"
    )
    _database(maintenance)
    maintenance.add_argument("server", metavar="SERVER_ID", help="e.g. NRW/MUN/05774032/ss1")
    maintenance.add_argument("mode", choices=["on", "off"])
    maintenance.add_argument("--json", action="store_true", help="print the server's id and mode as JSON")

    imported = registry_sub.add_parser(
        "import", help="load a federation definition (TOML) into an empty store"
    )
    _database(imported)
    imported.add_argument("federation", type=Path, help="the federation definition file")

    globalconf = group("globalconf", "the global configuration")
    show = globalconf.add_parser("show", help="print the global configuration the store would publish")
    _database(show)
    show.add_argument("--json", action="store_true", help="the unsigned document as JSON")

    token = group("token", "management-API bearer tokens").add_parser("issue", help="print a bearer token")
    token.add_argument("--role", required=True, choices=_TOKEN_ROLES)
    token.add_argument("--subject", required=True, help="who the token speaks for (in the audit trail)")
    token.add_argument("--config", required=True, type=Path, help="the registry's configuration (TOML)")
    token.add_argument("--ttl-s", type=int, default=8 * 3600, help="lifetime in seconds (default 8 h)")


def _auth_certificates(path: Path) -> list[x509.Certificate]:
    """The auth certificates a (validated) federation file names, to keep their PEMs in the store."""
    from trust.keys import load_certificate

    data = tomllib.loads(path.read_text(encoding="utf-8"))
    certificates = []
    for table in data.get("security_servers", []):
        names = [table["auth_certificate"]] if "auth_certificate" in table else []
        for name in [*names, *table.get("auth_certificates", [])]:
            certificates.append(load_certificate((path.parent / name).resolve()))
    return certificates


def _read_pem(path: Path) -> str:
    """A PEM file's text, at most :data:`_MAX_PEM_FILE_BYTES`; errors as one-line ValueErrors."""
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_PEM_FILE_BYTES + 1)
        if len(data) > _MAX_PEM_FILE_BYTES:
            raise ValueError(f"larger than {_MAX_PEM_FILE_BYTES} bytes")
        return data.decode("utf-8")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read {path}: {reason}") from exc


def _json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _ca_line(ca: dict[str, Any]) -> str:
    count = len(ca["intermediate_fingerprints"])
    chain = f" intermediates: {count}" if count else ""
    return f"{ca['fingerprint']} {ca['subject']} until {ca['not_after']} OCSP {ca['ocsp_url'] or '-'}{chain}"


def _tsa_line(tsa: dict[str, Any]) -> str:
    return f"{tsa['name']} {tsa['url']} {tsa['subject']} until {tsa['not_after']} {tsa['fingerprint']}"


def _trust_command(args: argparse.Namespace) -> Callable[[RegistryStore], str]:
    """``registry ca|tsa add|list`` and ``registry server maintenance``."""
    from registry.store import approved_ca_summary, approved_tsa_summary

    action, sub = args.action, args.registry_action
    if action == "ca" and sub == "add":

        def ca_add(store: RegistryStore) -> str:
            certificate = _read_pem(args.certificate)
            intermediates = [_read_pem(path) for path in args.intermediate]
            responders = [_read_pem(path) for path in args.ocsp_responder]
            ca = approved_ca_summary(
                store.add_approved_ca(
                    certificate,
                    intermediates_pem=intermediates,
                    ocsp_url=args.ocsp_url,
                    ocsp_responders_pem=responders,
                )
            )
            return _json(ca) if args.json else f"approved CA {ca['subject']} ({ca['fingerprint']})"

        return ca_add
    if action == "ca":

        def ca_list(store: RegistryStore) -> str:
            cas = [approved_ca_summary(ca) for ca in store.approved_cas()]
            return _json(cas) if args.json else "\n".join(map(_ca_line, cas))

        return ca_list
    if action == "tsa" and sub == "add":

        def tsa_add(store: RegistryStore) -> str:
            tsa = approved_tsa_summary(
                store.add_approved_tsa(args.name, args.url, _read_pem(args.certificate))
            )
            return _json(tsa) if args.json else f"approved TSA {tsa['name']} {tsa['url']}"

        return tsa_add
    if action == "tsa":

        def tsa_list(store: RegistryStore) -> str:
            tsas = [approved_tsa_summary(tsa) for tsa in store.approved_tsas()]
            return _json(tsas) if args.json else "\n".join(map(_tsa_line, tsas))

        return tsa_list

    def server_maintenance(store: RegistryStore) -> str:
        enabled = args.mode == "on"
        changed = store.set_maintenance_mode(args.server, enabled)
        if args.json:
            return _json({"server": args.server, "maintenance_mode": enabled, "changed": changed})
        state = "in maintenance mode" if enabled else "out of maintenance mode"
        return f"{args.server} is {'now' if changed else 'already'} {state}"

    return server_maintenance


def _summary(conf: GlobalConf) -> str:
    lines = [f"instance {conf.instance}, OCSP freshness {conf.ocsp_freshness_s} s"]
    lines += [f"approved CA  {ca.certificate.subject.rfc4514_string()}" for ca in conf.approved_cas]
    lines += [f"approved TSA {tsa.name} {tsa.url}" for tsa in conf.approved_tsas]
    for member in conf.members:
        subsystems = f" [{', '.join(member.subsystems)}]" if member.subsystems else ""
        lines.append(f"member       {member.id.slash()} {member.name}{subsystems}")
    for server in conf.security_servers:
        clients = ", ".join(c.slash() for c in server.clients)
        lines.append(f"server       {server.id.slash()} {server.address} clients: {clients or '-'}")
    for group in conf.global_groups:
        lines.append(f"group        {group.id.slash()}: {', '.join(m.slash() for m in group.members) or '-'}")
    return "\n".join(lines)


def _command(args: argparse.Namespace) -> Callable[[RegistryStore], str]:
    """The action for ``args``: it gets the open store and returns what to print."""
    action = args.action
    sub = getattr(args, "registry_action", None)

    if action == "init":

        def init(store: RegistryStore) -> str:
            store.init(args.instance, ocsp_freshness_s=args.ocsp_freshness_s)
            classes = (
                [(code, "") for code in args.member_class] if args.member_class else DEFAULT_MEMBER_CLASSES
            )
            for code, description in classes:
                store.add_member_class(code, description)
            return f"initialised registry for instance {args.instance}"

        return init
    if action == "member-class":

        def member_class_add(store: RegistryStore) -> str:
            store.add_member_class(args.code, args.description)
            return f"added member class {args.code}"

        return member_class_add
    if action == "member":
        return lambda store: f"added {store.add_member(args.member_class, args.code, args.name)}"
    if action == "subsystem":
        return lambda store: f"added {store.add_subsystem(args.member, args.code)}"
    if action == "group" and sub == "add":

        def group_add(store: RegistryStore) -> str:
            return f"added {store.add_global_group(args.code, args.description, args.member)}"

        return group_add
    if action == "group":

        def group_add_member(store: RegistryStore) -> str:
            store.add_group_member(args.code, args.member)
            return f"added {args.member} to global group {args.code}"

        return group_add_member
    if action == "service" and sub == "add":
        return lambda store: (
            "added "
            + store.add_service(
                args.provider,
                args.code,
                args.version,
                args.protocol,
                args.description,
                args.standard,
                args.authority,
                args.area,
            ).to_dict()["service"]
        )
    if action == "service":

        def service_list(store: RegistryStore) -> str:
            entries = store.services(provider=args.provider, authority=args.authority, area=args.area)
            if args.json:
                return json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False)
            return "\n".join(
                f"{e.to_dict()['service']} {e.protocol} {e.standard or '-'} "
                f"authorities: {', '.join(e.authorities) or '-'} area: {e.area or '-'}"
                for e in entries
            )

        return service_list
    if action in ("ca", "tsa", "server"):
        return _trust_command(args)
    if action == "import":

        def import_file(store: RegistryStore) -> str:
            from registry.federation import FederationDefinition

            definition = FederationDefinition.load(args.federation)
            store.import_definition(definition, _auth_certificates(args.federation))
            return (
                f"imported {len(definition.members)} members, {len(definition.security_servers)} "
                f"security servers, {len(definition.global_groups)} global groups"
            )

        return import_file
    if action == "globalconf":

        def show(store: RegistryStore) -> str:
            from registry.publisher import build_global_conf

            # Serial 1 and a validity from now: the content is what matters, not the framing.
            conf = build_global_conf(
                store.definition(), serial=1, now=dt.datetime.now(dt.UTC), validity=_SHOWN_VALIDITY
            )
            return conf.to_json().decode("utf-8") if args.json else _summary(conf)

        return show
    raise ValueError(f"unknown registry command {action}")


def _issue_token(args: argparse.Namespace) -> int:
    from registry.api import (
        TokenKeyError,
        issue_registry_token,
        load_or_create_registry_token_key,
        registry_token_key_path,
    )
    from registry.server import RegistrySettings

    try:
        settings = RegistrySettings.load(args.config)
        key = load_or_create_registry_token_key(
            registry_token_key_path(settings.state_dir), settings.key_passphrase
        )
        token = issue_registry_token(
            key, subject=args.subject, role=args.role, now=dt.datetime.now(dt.UTC), ttl_s=args.ttl_s
        )
    except (OSError, ValueError, TokenKeyError) as exc:
        print(f"xweg registry token: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


def run_registry_command(args: argparse.Namespace) -> int:
    """Run one ``xweg registry`` store command; 0 on success, 1 on any refused change or error."""
    from registry.federation import FederationError
    from registry.store import RegistryError, RegistryStore

    if args.action == "token":
        return _issue_token(args)
    try:
        command = _command(args)
        # Standard output carries only what the command prints (scripts parse --json);
        # log lines, such as the store's registry.audit entries, go to standard error.
        with contextlib.redirect_stdout(sys.stderr), RegistryStore.open(args.database_url) as store:
            output = command(store)
    except (RegistryError, FederationError) as exc:
        print(f"xweg registry {args.action}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"xweg registry {args.action}: {exc}", file=sys.stderr)
        return 1
    if output:
        print(output)
    return 0
