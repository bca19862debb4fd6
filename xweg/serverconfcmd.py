"""``xweg gateway client|service|endpoint|acl|group ...``: change a security server's configuration.

::

    xweg gateway client add NRW/MUN/05774032/gewerbeamt --connection https --config gateway.toml
    xweg gateway service add NRW/MUN/05774032/gewerbeamt/betriebe/v1 --url http://127.0.0.1:5603/api/v1 \\
        --openapi-url http://127.0.0.1:5603/openapi.json --config gateway.toml
    xweg gateway acl grant NRW/MUN/05774032/gewerbeamt/betriebe GLOBALGROUP:NRW/owl-kommunen \\
        --endpoint "GET /betriebe/*" --config gateway.toml

Each command reads the security server's configuration file (``--config``: the store's
``[serverconf] database_url`` and the data folder come from it), makes one change in one
transaction of the server configuration store and prints one line (``--json``: the result
as JSON).  A refusal is one line on standard error and exit status 1 (2 for a bad command
line, from argparse).  Changes are audited with the actor ``local``; a running server picks
them up within its ``poll_interval_s``.  The store's audit log lines go to standard error.

Whether a member, subsystem or global group exists is asked of the global configuration
the server last adopted (``data_dir/globalconf.jws``, verified again against the
configuration anchor): without one, adding a client or a group member and granting access
to a member, subsystem or global group are refused.  A service's ``--openapi-url`` is read
once when it is set (and by ``endpoint refresh``), with the service's timeout and at most
:data:`gateway.metadata.MAX_OPENAPI_BYTES`; its endpoints become the service's OpenAPI
endpoints, which access can then be granted on.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xweg.gatewayargs import add_gateway_config_arguments, load_gateway_config

if TYPE_CHECKING:
    from core.identifiers import ClientId, GlobalGroupId, ServiceId
    from gateway.config import GatewayConfig
    from gateway.serverconf.model import AccessSubject, EndpointPattern
    from gateway.serverconf.store import AuditContext, ServerConfStore
    from trust.globalconf import GlobalConf

__all__ = ["SERVERCONF_COMMANDS", "add_serverconf_commands", "adopted_globalconf", "run_serverconf_command"]

#: The ``xweg gateway`` subcommands this module runs.
SERVERCONF_COMMANDS = ("client", "service", "endpoint", "acl", "group")

_CONNECTIONS = ("http", "https", "https-mtls")
_MAX_PEM_FILE_BYTES = 64 * 1024  # one certificate is far smaller


# -- the command line -------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_gateway_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _group(
    gateway_sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, dest: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = gateway_sub.add_parser(name, help=help_text)
    return parser.add_subparsers(dest=dest, required=True)


def add_serverconf_commands(gateway_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``client``, ``service``, ``endpoint``, ``acl`` and ``group`` to ``xweg gateway``'s subparsers."""
    client_id = "a member or subsystem, e.g. NRW/MUN/05774032/gewerbeamt"
    service_id = "a service, e.g. NRW/MUN/05774032/gewerbeamt/betriebe/v1"

    clients = _group(
        gateway_sub, "client", "this server's clients (information systems' subsystems)", "sc_action"
    )
    add = _common(clients.add_parser("add", help="add a client of the global configuration"))
    add.add_argument("id", help=client_id)
    add.add_argument("--connection", choices=_CONNECTIONS, default="https-mtls", help="default https-mtls")
    add.add_argument("--token-required", action="store_true", help="requests must carry a client token")
    change = _common(clients.add_parser("set", help="change how a client's information systems connect"))
    change.add_argument("id", help=client_id)
    change.add_argument("--connection", choices=_CONNECTIONS)
    change.add_argument("--token-required", action=argparse.BooleanOptionalAction, default=None)
    _common(clients.add_parser("remove", help="remove a client")).add_argument("id", help=client_id)
    _common(clients.add_parser("list", help="list the clients"))
    certificates = clients.add_parser("cert", help="information-system TLS certificates")
    cert_sub = certificates.add_subparsers(dest="sc_cert_action", required=True)
    cert_add = _common(cert_sub.add_parser("add", help="register a certificate (PEM) for a client"))
    cert_add.add_argument("id", help=client_id)
    cert_add.add_argument("pem_file", type=Path, metavar="PEMFILE")
    cert_remove = _common(cert_sub.add_parser("remove", help="unregister a client's certificate"))
    cert_remove.add_argument("id", help=client_id)
    cert_remove.add_argument("fingerprint", help="its SHA-256 fingerprint (hex)")

    services = _group(gateway_sub, "service", "services this server provides", "sc_action")
    add = _common(services.add_parser("add", help="add a service of one of this server's clients"))
    add.add_argument("id", help=service_id)
    add.add_argument("--url", required=True, help="REST: the backend's base URL; SOAP: its endpoint URL")
    add.add_argument("--protocol", choices=("rest", "soap"), default="rest")
    add.add_argument("--timeout", type=float, default=30.0, metavar="S", help="backend timeout, seconds")
    add.add_argument(
        "--no-verify-tls", action="store_true", help="do not check an https backend's certificate"
    )
    add.add_argument("--wsdl-url", help="SOAP: where the backend serves the WSDL (default URL?wsdl)")
    add.add_argument("--openapi-url", help="REST: the OpenAPI 3 document (JSON); its endpoints are read")
    change = _common(services.add_parser("set", help="change a service's backend"))
    change.add_argument("id", help=service_id)
    change.add_argument("--url")
    change.add_argument("--timeout", type=float, metavar="S")
    change.add_argument("--verify-tls", action=argparse.BooleanOptionalAction, default=None)
    change.add_argument("--wsdl-url", help='"" removes it')
    change.add_argument("--openapi-url", help='"" removes it; a new one is read at once')
    _common(services.add_parser("remove", help="remove a service, its endpoints and rights")).add_argument(
        "id", help=service_id
    )
    _common(services.add_parser("list", help="list the services"))

    endpoints = _group(gateway_sub, "endpoint", "REST services' endpoints", "sc_action")
    for name, help_text in (
        ("add", "add an endpoint by hand"),
        ("remove", "remove an endpoint and its rights"),
    ):
        parser = _common(endpoints.add_parser(name, help=help_text))
        parser.add_argument("service", help=service_id)
        parser.add_argument("method", help="an HTTP method, or *")
        parser.add_argument("path", help="e.g. /betriebe/{id} or /betriebe/** (written decoded)")
    _common(endpoints.add_parser("list", help="list endpoints")).add_argument(
        "service", nargs="?", help=service_id
    )
    _common(endpoints.add_parser("refresh", help="read the service's OpenAPI document again")).add_argument(
        "service", help=service_id
    )

    acl = _group(gateway_sub, "acl", "access rights (denied unless granted)", "sc_action")
    for name, help_text in (("grant", "grant access to a service"), ("revoke", "revoke a right")):
        parser = _common(acl.add_parser(name, help=help_text))
        parser.add_argument("service", help="a service; rights hold for every version of its code")
        parser.add_argument(
            "subject", help="a member or subsystem (slash form), GLOBALGROUP:instance/code or LOCALGROUP:code"
        )
        parser.add_argument(
            "--endpoint", metavar='"METHOD PATH"', help="one endpoint instead of the whole service"
        )
    _common(acl.add_parser("list", help="list access rights")).add_argument(
        "service", nargs="?", help=service_id
    )

    groups = _group(gateway_sub, "group", "local groups", "sc_action")
    add = _common(groups.add_parser("add", help="create a local group"))
    add.add_argument("code")
    add.add_argument("--description", default="")
    _common(groups.add_parser("remove", help="remove a local group")).add_argument("code")
    members = groups.add_parser("member", help="a local group's members")
    member_sub = members.add_subparsers(dest="sc_member_action", required=True)
    for name, help_text in (("add", "add a member or subsystem"), ("remove", "remove a member")):
        parser = _common(member_sub.add_parser(name, help=help_text))
        parser.add_argument("code")
        parser.add_argument("client", help=client_id)
    _common(groups.add_parser("list", help="list the local groups"))


# -- what the commands share -----------------------------------------------------------------


def adopted_globalconf(config: GatewayConfig, now: dt.datetime) -> GlobalConf:
    """The global configuration the server last adopted, verified again against the anchor:
    from ``data_dir``, or, for replicas sharing a ``database_url``, from that database.

    Raises :class:`gateway.serverconf.store.ServerConfError` saying why there is none.
    """
    from core.clock import FixedClock
    from gateway.confclient.state import FileStateStore, PostgresStateStore, StateStore, StateStoreError
    from gateway.confclient.trusted import TrustedGlobalConf
    from gateway.confclient.updater import GlobalConfUpdater
    from gateway.serverconf.store import ServerConfError
    from trust.anchor import load_anchor
    from trust.errors import GlobalConfError

    store: StateStore = (
        PostgresStateStore(config.database_url)
        if config.database_url is not None
        else FileStateStore(config.globalconf_path)
    )
    where = store.document_location
    try:
        try:
            persisted = store.load()
        except (OSError, StateStoreError) as exc:
            raise ServerConfError(f"the global configuration in {where} cannot be read: {exc}") from exc
        document = persisted.document
        if document is None:
            raise ServerConfError(
                f"no global configuration in {where}: the server adopts one once it has reached the "
                "registry; start it first"
            )
        anchor = load_anchor(config.anchor_path)
        updater = GlobalConfUpdater(
            TrustedGlobalConf(anchor), config.globalconf_path, config.globalconf, FixedClock(now), store=store
        )
        # The updater is given what was read above, so that the document refused below is
        # the one it judged.  Its log lines speak to a running server's operator; here the
        # answer is the command's own line, or the refusal below.
        with contextlib.redirect_stdout(io.StringIO()):
            updater.use_persisted(persisted)
    finally:
        store.close()
    conf = updater.trusted.latest
    if conf is not None and not conf.is_expired(now):
        return conf
    try:
        TrustedGlobalConf(updater.trusted.anchor).check(document, now)
    except GlobalConfError as exc:
        raise ServerConfError(f"the global configuration in {where} is not usable: {exc}") from exc
    raise ServerConfError(f"the global configuration in {where} is not usable")


@dataclass
class _Run:
    """One command's store, configuration and audit context; global configuration on first use."""

    store: ServerConfStore
    config: GatewayConfig
    context: AuditContext
    _globalconf: GlobalConf | None = field(default=None, init=False)

    def globalconf(self) -> GlobalConf:
        if self._globalconf is None:
            self._globalconf = adopted_globalconf(self.config, self.context.at)
        return self._globalconf

    def known_client(self, client: ClientId) -> bool:
        return self.globalconf().has_client(client)

    def known_global_group(self, group: GlobalGroupId) -> bool:
        return any(g.id == group for g in self.globalconf().global_groups)


_Command = Callable[[_Run], Any]


def _client(text: str) -> ClientId:
    """A member or subsystem, in slash form or typed (``SUBSYSTEM:...``)."""
    from core.identifiers import MemberId, SubsystemId, parse_client_slash, parse_typed

    if text.startswith(("MEMBER:", "SUBSYSTEM:")):
        client = parse_typed(text)
        assert isinstance(client, MemberId | SubsystemId)
        return client
    return parse_client_slash(text)


def _service(text: str) -> ServiceId:
    from core.identifiers import ServiceId

    return ServiceId.parse_slash(text)


def _subject(text: str) -> AccessSubject:
    from core.identifiers import GlobalGroupId, LocalGroupId, parse_typed

    if text.startswith(("GLOBALGROUP:", "LOCALGROUP:")):
        group = parse_typed(text)
        assert isinstance(group, GlobalGroupId | LocalGroupId)
        return group
    return _client(text)


def _endpoint(text: str | None) -> EndpointPattern | None:
    from gateway.serverconf.model import EndpointPattern, PathRefused

    if text is None:
        return None
    method, _, path = text.strip().partition(" ")
    if not path.strip():
        raise PathRefused(f'an endpoint is given as "METHOD PATH", e.g. "GET /betriebe/*", not {text!r}')
    return EndpointPattern.parse(method, path.strip())


def _read_pem(path: Path) -> str:
    """A PEM file's text, at most :data:`_MAX_PEM_FILE_BYTES`; errors as one-line ValueErrors."""
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_PEM_FILE_BYTES + 1)
        if len(data) > _MAX_PEM_FILE_BYTES:
            raise ValueError(f"larger than {_MAX_PEM_FILE_BYTES} bytes")
        return data.decode("ascii")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read {path}: {reason}") from exc


@dataclass(frozen=True)
class _OpenApiEndpoints:
    endpoints: tuple[EndpointPattern, ...]
    skipped: tuple[str, ...]  # what the document describes that a pattern cannot say, and why


def _read_openapi_endpoints(url: str, *, timeout_s: float, verify_tls: bool) -> _OpenApiEndpoints:
    """The endpoints of the OpenAPI document at ``url``: one bounded, timed GET."""
    import asyncio

    import aiohttp

    from adapters.backend_http import fetch_description
    from adapters.rest.backend import new_backend_session
    from adapters.rest.metadata import openapi_endpoints, read_openapi
    from core.errors import Origin, XwegError
    from gateway.metadata import MAX_OPENAPI_BYTES
    from gateway.serverconf.model import EndpointPattern, PathRefused
    from gateway.serverconf.store import ServerConfError

    async def fetch() -> bytes:
        connector = aiohttp.TCPConnector(ssl=verify_tls)
        async with new_backend_session(connector=connector) as session:
            return await fetch_description(session, url, timeout_s=timeout_s, max_bytes=MAX_OPENAPI_BYTES)

    try:
        described = openapi_endpoints(read_openapi(asyncio.run(fetch()), origin=Origin.SERVER_PROXY))
    except XwegError as exc:
        raise ServerConfError(f"cannot read the OpenAPI document at {url}: {exc.message}") from exc
    except ValueError as exc:
        raise ServerConfError(f"the OpenAPI document at {url} is unusable: {exc}") from exc
    endpoints: list[EndpointPattern] = []
    skipped: list[str] = []
    for endpoint in described:
        try:
            endpoints.append(EndpointPattern.parse(endpoint.method, endpoint.path))
        except PathRefused as exc:
            skipped.append(f"{endpoint.method} {endpoint.path}: {exc}")
    return _OpenApiEndpoints(tuple(endpoints), tuple(skipped))


def _json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# -- the commands ----------------------------------------------------------------------------


def _client_line(client: dict[str, Any]) -> str:
    token = "token required" if client["token_required"] else "no token"
    return f"{client['id']}  {client['connection']}  {token}  certificates: {len(client['certificates'])}"


def _client_command(args: argparse.Namespace) -> _Command:
    from gateway.serverconf.model import ConnectionType

    action = args.sc_action
    if action == "list":
        return lambda run: run.store.list_clients()
    if action == "cert":
        if args.sc_cert_action == "add":
            return lambda run: run.store.add_client_certificate(
                _client(args.id), _read_pem(args.pem_file), run.context
            )

        def cert_remove(run: _Run) -> dict[str, Any]:
            run.store.remove_client_certificate(_client(args.id), args.fingerprint, run.context)
            return {
                "client": _client(args.id).slash(),
                "removed_certificate": args.fingerprint.replace(":", "").lower(),
            }

        return cert_remove
    if action == "add":
        return lambda run: run.store.add_client(
            _client(args.id),
            run.context,
            connection=ConnectionType(args.connection),
            token_required=args.token_required,
            known_client=run.known_client,
        )
    if action == "set":
        return lambda run: run.store.update_client(
            _client(args.id),
            run.context,
            connection=None if args.connection is None else ConnectionType(args.connection),
            token_required=args.token_required,
        )

    def remove(run: _Run) -> dict[str, Any]:
        run.store.remove_client(_client(args.id), run.context)
        return {"removed_client": _client(args.id).slash()}

    return remove


def _client_output(args: argparse.Namespace, result: Any) -> str:
    action = args.sc_action
    if action == "list":
        return "\n".join(_client_line(c) for c in result)
    if action == "cert":
        if args.sc_cert_action == "add":
            return (
                f"registered certificate {result['fingerprint']} ({result['subject']}, "
                f"until {result['not_after']}) for {_client(args.id).slash()}"
            )
        return f"removed certificate {result['removed_certificate']} from {result['client']}"
    if action == "remove":
        return f"removed client {result['removed_client']}"
    verb = "added client" if action == "add" else "client"
    return f"{verb} {_client_line(result)}"


def _service_line(service: dict[str, Any]) -> str:
    line = (
        f"{service['id']}  {service['protocol']}  {service['base_url']}  timeout {service['timeout_s']:g} s"
    )
    if not service["verify_tls"]:
        line += "  TLS not verified"
    if service["wsdl_url"]:
        line += f"  WSDL {service['wsdl_url']}"
    if service["openapi_url"]:
        line += f"  OpenAPI {service['openapi_url']}"
    return line


def _service_command(args: argparse.Namespace) -> _Command:
    from core.messages import Protocol
    from gateway.serverconf.model import ServiceEntry

    action = args.sc_action
    if action == "list":
        return lambda run: run.store.list_services()
    if action == "remove":

        def remove(run: _Run) -> dict[str, Any]:
            run.store.remove_service(_service(args.id), run.context)
            return {"removed_service": _service(args.id).slash()}

        return remove
    if action == "add":

        def add(run: _Run) -> dict[str, Any]:
            entry = ServiceEntry(
                _service(args.id),
                args.url,
                args.timeout,
                Protocol(args.protocol),
                args.wsdl_url,
                args.openapi_url,
                not args.no_verify_tls,
            )
            # Read first: a document that cannot be read leaves nothing added.
            found = (
                None
                if entry.openapi_url is None
                else _read_openapi_endpoints(
                    entry.openapi_url, timeout_s=entry.timeout_s, verify_tls=entry.verify_tls
                )
            )
            endpoints = None if found is None else found.endpoints
            result = run.store.add_service(entry, run.context, openapi_endpoints=endpoints)
            if found is not None:
                result = {
                    **result,
                    "openapi_endpoints": [str(e) for e in found.endpoints],
                    "skipped": list(found.skipped),
                }
            return result

        return add

    def change(run: _Run) -> dict[str, Any]:
        service = _service(args.id)
        changes: dict[str, Any] = {}
        if args.url is not None:
            changes["base_url"] = args.url
        if args.timeout is not None:
            changes["timeout_s"] = args.timeout
        if args.verify_tls is not None:
            changes["verify_tls"] = args.verify_tls
        if args.wsdl_url is not None:
            changes["wsdl_url"] = args.wsdl_url or None
        if args.openapi_url is not None:
            changes["openapi_url"] = args.openapi_url or None
        found = None
        if changes.get("openapi_url"):
            current = _listed_service(run, service)
            found = _read_openapi_endpoints(
                changes["openapi_url"],
                timeout_s=changes.get("timeout_s", current["timeout_s"]),
                verify_tls=changes.get("verify_tls", current["verify_tls"]),
            )
        endpoints = None if found is None else found.endpoints
        result = run.store.update_service(service, run.context, openapi_endpoints=endpoints, **changes)
        if found is not None:
            result = {
                **result,
                "openapi_endpoints": [str(e) for e in found.endpoints],
                "skipped": list(found.skipped),
            }
        return result

    return change


def _listed_service(run: _Run, service: ServiceId) -> dict[str, Any]:
    from gateway.serverconf.store import ServerConfNotFound

    for listed in run.store.list_services():
        if listed["id"] == service.slash():
            return listed
    raise ServerConfNotFound(f"service {service.slash()} is not configured here")


def _openapi_note(result: dict[str, Any]) -> str:
    if "openapi_endpoints" not in result:
        return ""
    note = f", {len(result['openapi_endpoints'])} endpoints from its OpenAPI document"
    if result["skipped"]:
        note += f" ({len(result['skipped'])} skipped: {'; '.join(result['skipped'])})"
    return note


def _service_output(args: argparse.Namespace, result: Any) -> str:
    action = args.sc_action
    if action == "list":
        return "\n".join(_service_line(s) for s in result)
    if action == "remove":
        return f"removed service {result['removed_service']} with its endpoints and the rights on them"
    verb = "added service" if action == "add" else "service"
    return f"{verb} {_service_line(result)}{_openapi_note(result)}"


def _endpoint_line(endpoint: dict[str, Any]) -> str:
    source = "  (OpenAPI)" if endpoint["from_openapi"] else ""
    return f"{endpoint['service']}  {endpoint['method']} {endpoint['path']}{source}"


def _endpoint_command(args: argparse.Namespace) -> _Command:
    from gateway.serverconf.model import EndpointPattern

    action = args.sc_action
    if action == "list":
        return lambda run: run.store.list_endpoints(None if args.service is None else _service(args.service))
    if action == "add":
        return lambda run: run.store.add_endpoint(
            _service(args.service), EndpointPattern.parse(args.method, args.path), run.context
        )
    if action == "remove":

        def remove(run: _Run) -> dict[str, Any]:
            pattern = EndpointPattern.parse(args.method, args.path)
            run.store.remove_endpoint(_service(args.service), pattern, run.context)
            return {"service": _service(args.service).slash(), "removed_endpoint": str(pattern)}

        return remove

    def refresh(run: _Run) -> dict[str, Any]:
        from gateway.serverconf.store import ServerConfError

        service = _service(args.service)
        listed = _listed_service(run, service)
        if not listed["openapi_url"]:
            raise ServerConfError(f"service {service.slash()} has no OpenAPI document (set --openapi-url)")
        found = _read_openapi_endpoints(
            listed["openapi_url"], timeout_s=listed["timeout_s"], verify_tls=listed["verify_tls"]
        )
        endpoints = run.store.replace_openapi_endpoints(service, found.endpoints, run.context)
        return {"service": service.slash(), "endpoints": endpoints, "skipped": list(found.skipped)}

    return refresh


def _endpoint_output(args: argparse.Namespace, result: Any) -> str:
    action = args.sc_action
    if action == "list":
        return "\n".join(_endpoint_line(e) for e in result)
    if action == "add":
        return f"added endpoint {result['method']} {result['path']} to {result['service']}"
    if action == "remove":
        return f"removed endpoint {result['removed_endpoint']} from {result['service']} with the rights on it"
    from_openapi = [e for e in result["endpoints"] if e["from_openapi"]]
    note = f"{len(from_openapi)} endpoints from its OpenAPI document"
    if result["skipped"]:
        note += f" ({len(result['skipped'])} skipped: {'; '.join(result['skipped'])})"
    return f"{result['service']}: {note}"


def _grant_line(grant: dict[str, Any]) -> str:
    endpoint = grant["endpoint"]
    where = "(whole service)" if endpoint is None else f"{endpoint['method']} {endpoint['path']}"
    return f"{grant['service']}  {where}  {grant['subject']}"


def _acl_command(args: argparse.Namespace) -> _Command:
    action = args.sc_action
    if action == "list":
        return lambda run: run.store.list_grants(None if args.service is None else _service(args.service))
    if action == "grant":
        return lambda run: run.store.grant(
            _service(args.service),
            _subject(args.subject),
            run.context,
            endpoint=_endpoint(args.endpoint),
            known_client=run.known_client,
            known_global_group=run.known_global_group,
        )

    def revoke(run: _Run) -> dict[str, Any]:
        service, subject, endpoint = _service(args.service), _subject(args.subject), _endpoint(args.endpoint)
        run.store.revoke(service, subject, run.context, endpoint=endpoint)
        return {
            "service": service.unversioned().slash(),
            "subject": str(subject),
            "endpoint": None if endpoint is None else {"method": endpoint.method, "path": endpoint.path},
            "revoked": True,
        }

    return revoke


def _acl_output(args: argparse.Namespace, result: Any) -> str:
    action = args.sc_action
    if action == "list":
        return "\n".join(_grant_line(g) for g in result)
    return f"{'granted' if action == 'grant' else 'revoked'}: {_grant_line(result)}"


def _group_line(group: dict[str, Any]) -> str:
    members = ", ".join(group["members"]) or "-"
    description = f"  {group['description']}" if group["description"] else ""
    return f"{group['code']}  members: {members}{description}"


def _group_command(args: argparse.Namespace) -> _Command:
    action = args.sc_action
    if action == "list":
        return lambda run: run.store.list_groups()
    if action == "add":
        return lambda run: run.store.add_group(args.code, run.context, description=args.description)
    if action == "remove":

        def remove(run: _Run) -> dict[str, Any]:
            run.store.remove_group(args.code, run.context)
            return {"removed_group": args.code}

        return remove
    if args.sc_member_action == "add":
        return lambda run: run.store.add_group_member(
            args.code, _client(args.client), run.context, known_client=run.known_client
        )

    def remove_member(run: _Run) -> dict[str, Any]:
        run.store.remove_group_member(args.code, _client(args.client), run.context)
        return {"group": args.code, "removed_member": _client(args.client).slash()}

    return remove_member


def _group_output(args: argparse.Namespace, result: Any) -> str:
    action = args.sc_action
    if action == "list":
        return "\n".join(_group_line(g) for g in result)
    if action == "add":
        return f"added local group {_group_line(result)}"
    if action == "remove":
        return f"removed local group {result['removed_group']}"
    if args.sc_member_action == "add":
        return f"added {_client(args.client).slash()} to local group {_group_line(result)}"
    return f"removed {result['removed_member']} from local group {result['group']}"


_COMMANDS: dict[
    str, tuple[Callable[[argparse.Namespace], _Command], Callable[[argparse.Namespace, Any], str]]
] = {
    "client": (_client_command, _client_output),
    "service": (_service_command, _service_output),
    "endpoint": (_endpoint_command, _endpoint_output),
    "acl": (_acl_command, _acl_output),
    "group": (_group_command, _group_output),
}


def _name(args: argparse.Namespace) -> str:
    words = ["xweg gateway", args.action, args.sc_action]
    words += [getattr(args, "sc_cert_action", None) or "", getattr(args, "sc_member_action", None) or ""]
    return " ".join(w for w in words if w)


def run_serverconf_command(args: argparse.Namespace, *, now: dt.datetime | None = None) -> int:
    """Run one parsed ``xweg gateway client|service|endpoint|acl|group`` command.

    0 on success; 1 with one line on standard error for a refused change or any other failure.
    """
    from core.errors import XwegError
    from gateway.config import ConfigError
    from gateway.serverconf.store import AuditContext, ServerConfError, ServerConfStore
    from trust.errors import TrustError

    name = _name(args)
    build, render = _COMMANDS[args.action]
    try:
        config = load_gateway_config(args)
        command = build(args)
        context = AuditContext("local", now or dt.datetime.now(dt.UTC))
        # Standard output carries only what the command prints (scripts parse --json);
        # log lines, such as the store's serverconf.audit entries, go to standard error.
        with (
            contextlib.redirect_stdout(sys.stderr),
            ServerConfStore.open(config.serverconf.database_url, base=config.data_dir) as store,
        ):
            result = command(_Run(store, config, context))
    except (ConfigError, ServerConfError, TrustError, XwegError, ValueError) as exc:
        # One line, always: a database driver's message may span several.
        print(f"{name}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    output = _json(result) if args.json else render(args, result)
    if output:
        print(output)
    return 0
