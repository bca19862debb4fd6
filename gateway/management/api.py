"""The security server's management API: an aiohttp application for the management listener.

Routes, request-body schemas and the roles allowed per operation come from the OpenAPI
document (:mod:`gateway.management.openapi`), tokens are this server's management
tokens (:mod:`gateway.management.tokens`), and correlation ids, 401/403, body bounds,
schema checks and JSON errors are :mod:`trust.service.jsonapi`'s.  Each change:

1. is parsed into the server configuration's own types (identifiers, a
   :class:`~gateway.serverconf.model.ServiceEntry`, an
   :class:`~gateway.serverconf.model.EndpointPattern`) -- what they refuse is 422;
2. when it names members, subsystems or global groups, is checked against the global
   configuration the server acts on (503 while there is none that is valid);
3. for a REST service with ``openapi_url``, fetches the document first (bounded; a
   failed fetch or an unusable document is 422 and nothing is written);
4. runs as one store transaction (:class:`~gateway.serverconf.store.ServerConfStore`,
   off the event loop) that writes the audit trail with the token's subject as actor
   and the request's correlation id; a refusal is 409 (a conflict) or 422, its ``type``
   the refusal's code (``conflict``, ``unknown_reference``, ``refused``);
5. is made live at once (:meth:`LiveServerConf.reload`), not at the next poll.

Created 201, changed 200, removed 204; asking the registry to register a client is 202
with the registry's request id and state.  Operational monitoring and metrics come from
the running server's monitor and metrics.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.rest.metadata import openapi_endpoints, read_openapi
from core.clock import Clock
from core.errors import Origin, XwegError
from core.identifiers import (
    GlobalGroupId,
    IdentifierError,
    LocalGroupId,
    MemberId,
    ServiceId,
    SubsystemId,
    parse_client_slash,
    parse_typed,
)
from core.messages import Protocol as MessageProtocol
from gateway.config import GatewayConfig
from gateway.maintenance import announce_maintenance
from gateway.management.openapi import MAX_AUDIT_ID, MAX_PAGE, openapi_document
from gateway.management.tokens import verify_management_token
from gateway.metadata import MAX_OPENAPI_BYTES
from gateway.observability.opmon import OpmonError
from gateway.registration import RegistrationClient, RegistrationFailed, RegistryAnswer
from gateway.serverconf.live import LiveServerConf
from gateway.serverconf.model import AccessSubject, ConnectionType, EndpointPattern, ServiceEntry
from gateway.serverconf.store import (
    AuditContext,
    KnownClient,
    KnownGlobalGroup,
    ServerConfConflict,
    ServerConfError,
    ServerConfNotFound,
    ServerConfStore,
)
from trust.globalconf import GlobalConf
from trust.service.jsonapi import (
    ApiError,
    Handler,
    correlation_id,
    identity,
    int_query,
    json_body,
    make_json_api,
)
from trust.tokens import RoleIdentity

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_FETCH_TIMEOUT_S",
    "ManagedGateway",
    "RegisterClient",
    "make_management_app",
]

log = structlog.get_logger("xweg.gateway.management")

MAX_BODY_BYTES = 128 * 1024  # a certificate PEM is the largest body (at most 64 KiB)
MAX_FETCH_TIMEOUT_S = 30.0  # fetching a service's OpenAPI document, at most (else the service's timeout)
_DEFAULT_PAGE = 100
_T = TypeVar("_T")


class DescriptionSource(Protocol):
    """Fetches a service's description from its backend (:class:`gateway.runtime.BackendPool`)."""

    async def fetch_description(
        self, url: str, timeout_s: float, max_bytes: int, *, verify_tls: bool = True
    ) -> bytes: ...


class OpmonSource(Protocol):
    """Operational monitoring (:class:`gateway.observability.opmon.OperationalMonitor`)."""

    async def records(
        self, *, start: dt.datetime, end: dt.datetime, client: str | None = None, limit: int = ...
    ) -> list[dict[str, Any]]: ...

    async def health(self) -> list[dict[str, Any]]: ...


class MetricsSource(Protocol):
    """Metrics (:class:`gateway.observability.metrics.GatewayMetrics`)."""

    def render(self) -> tuple[str, bytes]: ...


class ManagedGateway(Protocol):
    """What the management API needs of the running server (:class:`gateway.runtime.Gateway`)."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def serverconf(self) -> LiveServerConf: ...

    @property
    def backends(self) -> DescriptionSource: ...

    @property
    def opmon(self) -> OpmonSource: ...

    @property
    def metrics(self) -> MetricsSource: ...

    def current_conf(self, origin: Origin) -> tuple[GlobalConf, dt.datetime]: ...


#: Submits a signed client registration request to the registry (``RegistrationClient.client``).
RegisterClient = Callable[[SubsystemId, dt.datetime], Awaitable[RegistryAnswer]]
#: Announces maintenance mode to the registry (:func:`gateway.maintenance.announce_maintenance`).
AnnounceMaintenance = Callable[[bool, dt.datetime], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class _Context:
    gateway: ManagedGateway
    register_client: RegisterClient
    announce_maintenance: AnnounceMaintenance


_CONTEXT_KEY = web.AppKey("management_context", _Context)


def _context(request: web.Request) -> _Context:
    return request.config_dict[_CONTEXT_KEY]


def _store(request: web.Request) -> ServerConfStore:
    return _context(request).gateway.serverconf.store


def _audit(request: web.Request) -> AuditContext:
    return AuditContext(
        identity(request).subject, _context(request).gateway.clock.now(), correlation_id(request)
    )


# -- refusals -------------------------------------------------------------------------------


def _refused(exc: ServerConfError) -> ApiError:
    """409 for a conflict, 422 for any other refusal; the body's ``type`` is the refusal's code."""
    return ApiError(409 if isinstance(exc, ServerConfConflict) else 422, exc.code, str(exc))


@contextmanager
def _refusing() -> Iterator[None]:
    """What the configuration's types refuse (identifiers, URLs, patterns) is 422 ``refused``."""
    try:
        yield
    except ServerConfError as exc:
        raise _refused(exc) from exc
    except ValueError as exc:  # IdentifierError, PathRefused and ServiceEntry's checks
        raise ApiError(422, ServerConfError.code, str(exc)) from exc


async def _read(function: Callable[[], _T]) -> _T:
    with _refusing():
        return await asyncio.to_thread(function)


async def _change(request: web.Request, function: Callable[[], _T]) -> _T:
    """Step 4 and 5: one store change off the event loop, then the new configuration live."""
    with _refusing():
        result = await asyncio.to_thread(function)
    serverconf = _context(request).gateway.serverconf
    try:
        await serverconf.reload()
    except ServerConfError as exc:  # committed: the poller makes it live once the store answers
        log.warning("management.reload_failed", error=str(exc), correlation_id=correlation_id(request))
    return result


def _global_conf(request: web.Request) -> GlobalConf:
    try:
        conf, _ = _context(request).gateway.current_conf(Origin.CLIENT_PROXY)
    except XwegError as exc:
        raise ApiError(503, "outdated_global_conf", exc.message) from exc
    return conf


def _known(request: web.Request) -> tuple[KnownClient, KnownGlobalGroup]:
    """Step 2: membership tests against the current global configuration."""
    conf = _global_conf(request)
    groups = frozenset(group.id for group in conf.global_groups)
    return conf.has_client, groups.__contains__


# -- parsing --------------------------------------------------------------------------------


def _path_id(request: web.Request, name: str) -> str:
    """A path identifier's parts, ``:``-separated, as slash form (parts contain neither)."""
    return request.match_info[name].replace(":", "/")


def _client_path(request: web.Request) -> MemberId | SubsystemId:
    with _refusing():
        return parse_client_slash(_path_id(request, "client"))


def _service_path(request: web.Request) -> ServiceId:
    with _refusing():
        return ServiceId.parse_slash(_path_id(request, "service"))


def _subject(text: str) -> AccessSubject:
    """A right's subject: typed (``GLOBALGROUP:NRW/owl``, ``LOCALGROUP:code``, ``SUBSYSTEM:...``)
    or a member or subsystem in slash form."""
    if ":" not in text:
        return parse_client_slash(text)
    subject = parse_typed(text)
    if not isinstance(subject, MemberId | SubsystemId | GlobalGroupId | LocalGroupId):
        raise IdentifierError(f"{text!r}: a right is granted to a member, subsystem, global or local group")
    return subject


def _endpoint(value: dict[str, Any] | None) -> EndpointPattern | None:
    if value is None:
        return None
    with _refusing():
        return EndpointPattern.parse(value["method"], value["path"])


def _service_entry(body: dict[str, Any]) -> ServiceEntry:
    with _refusing():
        return ServiceEntry(
            ServiceId.parse_slash(body["id"]),
            body["base_url"],
            timeout_s=body.get("timeout_s", 30.0),
            protocol=MessageProtocol(body.get("protocol", "rest")),
            wsdl_url=body.get("wsdl_url"),
            openapi_url=body.get("openapi_url"),
            verify_tls=body.get("verify_tls", True),
        )


async def _openapi_patterns(
    gateway: ManagedGateway, url: str, timeout_s: float, verify_tls: bool
) -> list[EndpointPattern]:
    """Step 3: the endpoints of the OpenAPI document at ``url``; 422 if it cannot be had or used."""
    try:
        data = await gateway.backends.fetch_description(
            url, min(timeout_s, MAX_FETCH_TIMEOUT_S), MAX_OPENAPI_BYTES, verify_tls=verify_tls
        )
        found = openapi_endpoints(read_openapi(data))
    except XwegError as exc:
        raise ApiError(422, "openapi_unavailable", f"the OpenAPI document at {url}: {exc.message}") from exc
    except ValueError as exc:
        raise ApiError(422, "openapi_unavailable", f"the OpenAPI document at {url}: {exc}") from exc
    patterns: list[EndpointPattern] = []
    for endpoint in found:
        try:
            patterns.append(EndpointPattern.parse(endpoint.method, endpoint.path))
        except ValueError as exc:
            raise ApiError(
                422,
                ServerConfError.code,
                f"the OpenAPI document at {url}: {endpoint.method} {endpoint.path}: {exc}",
            ) from exc
    return patterns


def _one_service(store: ServerConfStore, service: ServiceId) -> dict[str, Any]:
    found = next((s for s in store.list_services() if s["id"] == service.slash()), None)
    if found is None:
        # The store's own words for an unknown service, so that every path says it alike.
        raise ServerConfNotFound(f"service {service.slash()} is not configured here")
    return found


# -- clients --------------------------------------------------------------------------------


async def list_clients(request: web.Request) -> web.Response:
    return web.json_response(await _read(_store(request).list_clients))


async def add_client(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)
    with _refusing():
        client = parse_client_slash(body["id"])
    known_client, _ = _known(request)
    connection = ConnectionType(body.get("connection", ConnectionType.HTTPS_MTLS.value))
    added = await _change(
        request,
        lambda: store.add_client(
            client,
            audit,
            connection=connection,
            token_required=body.get("token_required", False),
            known_client=known_client,
        ),
    )
    return web.json_response(added, status=201)


async def update_client(request: web.Request) -> web.Response:
    body, store, audit, client = (
        await json_body(request),
        _store(request),
        _audit(request),
        _client_path(request),
    )
    connection = ConnectionType(body["connection"]) if "connection" in body else None
    changed = await _change(
        request,
        lambda: store.update_client(
            client, audit, connection=connection, token_required=body.get("token_required")
        ),
    )
    return web.json_response(changed)


async def remove_client(request: web.Request) -> web.Response:
    store, audit, client = _store(request), _audit(request), _client_path(request)
    await _change(request, lambda: store.remove_client(client, audit))
    return web.Response(status=204)


async def add_client_certificate(request: web.Request) -> web.Response:
    body, store, audit, client = (
        await json_body(request),
        _store(request),
        _audit(request),
        _client_path(request),
    )
    added = await _change(
        request, lambda: store.add_client_certificate(client, body["certificate_pem"], audit)
    )
    return web.json_response(added, status=201)


async def remove_client_certificate(request: web.Request) -> web.Response:
    store, audit, client = _store(request), _audit(request), _client_path(request)
    fingerprint = request.match_info["fingerprint"]
    await _change(request, lambda: store.remove_client_certificate(client, fingerprint, audit))
    return web.Response(status=204)


async def register_client(request: web.Request) -> web.Response:
    """Ask the registry to register a client subsystem of this server (202: the registry decides)."""
    context, client = _context(request), _client_path(request)
    gateway = context.gateway
    if not isinstance(client, SubsystemId):
        raise ApiError(
            422,
            ServerConfError.code,
            f"{client.slash()} is a member: only subsystems are registered as clients",
        )
    if not gateway.serverconf.current().hosts(client):
        raise ApiError(
            422,
            "unknown_reference",
            f"{client.slash()} is not a client of this security server: add it first",
        )
    if all(sign.member != client.member for sign in gateway.config.sign_keys):
        raise ApiError(
            422,
            ServerConfError.code,
            f"this server holds no sign key of {client.member.slash()}, which must consent to the request",
        )
    try:
        answer = await context.register_client(client, gateway.clock.now())
    except RegistrationFailed as exc:
        if exc.status is None or exc.status >= 500:
            raise ApiError(502, "registry_unavailable", str(exc)) from exc
        raise ApiError(409 if exc.status == 409 else 422, exc.kind or ServerConfError.code, str(exc)) from exc
    await _record_action(
        request, "request_registration", client.slash(), {"request_id": answer.id, "state": answer.state}
    )
    return web.json_response({"id": answer.id, "state": answer.state}, status=202)


async def _record_action(request: web.Request, operation: str, target: str, details: dict[str, Any]) -> None:
    """Into the audit trail: what was asked of the registry in this administrator's name.

    The registry has already acted; a failure to write the entry is logged, not answered
    as if the request had failed.
    """
    try:
        await asyncio.to_thread(_store(request).record_action, operation, target, details, _audit(request))
    except ServerConfError as exc:
        log.error(
            "management.audit_failed",
            operation=operation,
            target=target,
            details=details,
            error=str(exc),
            correlation_id=correlation_id(request),
        )


async def set_maintenance_mode(request: web.Request) -> web.Response:
    """``PUT /maintenance``: the registry hears of it at once and publishes the flag."""
    context = _context(request)
    body = await json_body(request)
    enabled = body["enabled"]
    try:
        answer = await context.announce_maintenance(enabled, context.gateway.clock.now())
    except RegistrationFailed as exc:
        if exc.status is None or exc.status >= 500:
            raise ApiError(502, "registry_unavailable", str(exc)) from exc
        raise ApiError(409 if exc.status == 409 else 422, exc.kind or ServerConfError.code, str(exc)) from exc
    await _record_action(
        request,
        "announce_maintenance",
        context.gateway.config.server_id.slash(),
        {"enabled": enabled, "request_id": answer.get("id"), "changed": answer.get("changed")},
    )
    keys = ("id", "server", "maintenance_mode", "changed", "status")
    return web.json_response({key: answer[key] for key in keys if key in answer})


# -- services, endpoints, access rights -----------------------------------------------------


async def list_services(request: web.Request) -> web.Response:
    return web.json_response(await _read(_store(request).list_services))


async def add_service(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)
    entry = _service_entry(body)
    patterns = None
    if entry.openapi_url is not None:
        patterns = await _openapi_patterns(
            _context(request).gateway, entry.openapi_url, entry.timeout_s, entry.verify_tls
        )

    # One transaction: the service and its document's endpoints, or nothing.
    added = await _change(request, lambda: store.add_service(entry, audit, openapi_endpoints=patterns))
    return web.json_response(added, status=201)


async def update_service(request: web.Request) -> web.Response:
    body, store, audit, service = (
        await json_body(request),
        _store(request),
        _audit(request),
        _service_path(request),
    )
    patterns = None
    if body.get("openapi_url") is not None:
        # A new document: its endpoints replace the old document's (hand-made ones stay).
        current = await _read(lambda: _one_service(store, service))
        with _refusing():  # the service as it would be, checked before anything is fetched
            updated = _service_entry({**current, **body, "id": service.slash()})
        assert updated.openapi_url is not None
        patterns = await _openapi_patterns(
            _context(request).gateway, updated.openapi_url, updated.timeout_s, updated.verify_tls
        )

    changed = await _change(
        request, lambda: store.update_service(service, audit, openapi_endpoints=patterns, **body)
    )
    return web.json_response(changed)


async def remove_service(request: web.Request) -> web.Response:
    store, audit, service = _store(request), _audit(request), _service_path(request)
    await _change(request, lambda: store.remove_service(service, audit))
    return web.Response(status=204)


async def refresh_openapi_endpoints(request: web.Request) -> web.Response:
    store, audit, service = _store(request), _audit(request), _service_path(request)
    current = await _read(lambda: _one_service(store, service))
    if current["openapi_url"] is None:
        raise ApiError(422, ServerConfError.code, f"service {service.slash()} has no openapi_url")
    patterns = await _openapi_patterns(
        _context(request).gateway, current["openapi_url"], current["timeout_s"], current["verify_tls"]
    )
    return web.json_response(
        await _change(request, lambda: store.replace_openapi_endpoints(service, patterns, audit))
    )


def _service_query(request: web.Request) -> ServiceId | None:
    text = request.query.get("service")
    if text is None:
        return None
    with _refusing():
        return ServiceId.parse_slash(text)


async def list_endpoints(request: web.Request) -> web.Response:
    store, service = _store(request), _service_query(request)
    return web.json_response(await _read(lambda: store.list_endpoints(service)))


async def add_endpoint(request: web.Request) -> web.Response:
    body, store, audit, service = (
        await json_body(request),
        _store(request),
        _audit(request),
        _service_path(request),
    )
    endpoint = _endpoint(body)
    assert endpoint is not None  # the body is required
    return web.json_response(
        await _change(request, lambda: store.add_endpoint(service, endpoint, audit)), status=201
    )


def _endpoint_query(request: web.Request, *, required: bool) -> EndpointPattern | None:
    method, path = request.query.get("method"), request.query.get("path")
    if method is None and path is None and not required:
        return None
    if method is None or path is None:
        raise ApiError(400, "invalid_request", "give both method and path of the endpoint")
    return _endpoint({"method": method, "path": path})


async def remove_endpoint(request: web.Request) -> web.Response:
    store, audit, service = _store(request), _audit(request), _service_path(request)
    endpoint = _endpoint_query(request, required=True)
    assert endpoint is not None
    await _change(request, lambda: store.remove_endpoint(service, endpoint, audit))
    return web.Response(status=204)


async def list_grants(request: web.Request) -> web.Response:
    store, service = _store(request), _service_query(request)
    return web.json_response(await _read(lambda: store.list_grants(service)))


async def grant_access(request: web.Request) -> web.Response:
    body, store, audit, service = (
        await json_body(request),
        _store(request),
        _audit(request),
        _service_path(request),
    )
    with _refusing():
        subject = _subject(body["subject"])
    endpoint = _endpoint(body.get("endpoint"))
    if isinstance(subject, LocalGroupId):  # defined here: the global configuration is not asked
        known_client: KnownClient = _never
        known_group: KnownGlobalGroup = _never
    else:
        known_client, known_group = _known(request)
    granted = await _change(
        request,
        lambda: store.grant(
            service,
            subject,
            audit,
            endpoint=endpoint,
            known_client=known_client,
            known_global_group=known_group,
        ),
    )
    return web.json_response(granted, status=201)


def _never(_: object) -> bool:
    return False


async def revoke_access(request: web.Request) -> web.Response:
    store, audit, service = _store(request), _audit(request), _service_path(request)
    text = request.query.get("subject")
    if text is None:
        raise ApiError(400, "invalid_request", "subject is required")
    with _refusing():
        subject = _subject(text)
    endpoint = _endpoint_query(request, required=False)
    await _change(request, lambda: store.revoke(service, subject, audit, endpoint=endpoint))
    return web.Response(status=204)


# -- local groups ---------------------------------------------------------------------------


async def list_groups(request: web.Request) -> web.Response:
    return web.json_response(await _read(_store(request).list_groups))


async def add_group(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)
    added = await _change(
        request, lambda: store.add_group(body["code"], audit, description=body.get("description", ""))
    )
    return web.json_response(added, status=201)


async def remove_group(request: web.Request) -> web.Response:
    store, audit, code = _store(request), _audit(request), request.match_info["code"]
    await _change(request, lambda: store.remove_group(code, audit))
    return web.Response(status=204)


async def add_group_member(request: web.Request) -> web.Response:
    body, store, audit, code = (
        await json_body(request),
        _store(request),
        _audit(request),
        request.match_info["code"],
    )
    with _refusing():
        client = parse_client_slash(body["client"])
    known_client, _ = _known(request)
    group = await _change(
        request, lambda: store.add_group_member(code, client, audit, known_client=known_client)
    )
    return web.json_response(group, status=201)


async def remove_group_member(request: web.Request) -> web.Response:
    store, audit, code, client = (
        _store(request),
        _audit(request),
        request.match_info["code"],
        _client_path(request),
    )
    await _change(request, lambda: store.remove_group_member(code, client, audit))
    return web.Response(status=204)


# -- audit trail, monitoring, the document ----------------------------------------------------


async def list_audit_trail(request: web.Request) -> web.Response:
    after_id = int_query(request, "after_id", 0, 0, MAX_AUDIT_ID)
    limit = int_query(request, "limit", _DEFAULT_PAGE, 1, MAX_PAGE)
    store = _store(request)
    return web.json_response(await _read(lambda: store.audit_trail(after_id=after_id, limit=limit)))


def _utc_query(request: web.Request, name: str) -> dt.datetime:
    text = request.query.get(name)
    if text is None:
        raise ApiError(400, "invalid_request", f"{name} is required (UTC, e.g. 2025-03-01T00:00:00Z)")
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ApiError(
            400, "invalid_request", f"{name} must be an ISO 8601 time with a zone, e.g. 2025-03-01T00:00:00Z"
        )
    return value.astimezone(dt.UTC)


async def list_opmon_records(request: web.Request) -> web.Response:
    start, end = _utc_query(request, "start"), _utc_query(request, "end")
    if end < start:
        raise ApiError(400, "invalid_request", "end is before start")
    limit = int_query(request, "limit", _DEFAULT_PAGE, 1, MAX_PAGE)
    client = request.query.get("client")
    if client is not None:
        try:
            client = parse_client_slash(client).slash()
        except IdentifierError as exc:
            raise ApiError(400, "invalid_request", f"client: {exc}") from exc
    opmon = _context(request).gateway.opmon
    try:
        records = await opmon.records(start=start, end=end, client=client, limit=limit)
    except OpmonError as exc:
        raise ApiError(503, "opmon_unavailable", str(exc)) from exc
    return web.json_response(records)


async def get_opmon_health(request: web.Request) -> web.Response:
    try:
        health = await _context(request).gateway.opmon.health()
    except OpmonError as exc:
        raise ApiError(503, "opmon_unavailable", str(exc)) from exc
    return web.json_response(health)


async def get_metrics(request: web.Request) -> web.Response:
    content_type, body = _context(request).gateway.metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


_HANDLERS: dict[str, Handler] = {
    "getOpenApi": get_openapi,
    "getMetrics": get_metrics,
    "listClients": list_clients,
    "addClient": add_client,
    "updateClient": update_client,
    "removeClient": remove_client,
    "addClientCertificate": add_client_certificate,
    "removeClientCertificate": remove_client_certificate,
    "registerClient": register_client,
    "setMaintenanceMode": set_maintenance_mode,
    "listServices": list_services,
    "addService": add_service,
    "updateService": update_service,
    "removeService": remove_service,
    "refreshOpenApiEndpoints": refresh_openapi_endpoints,
    "listEndpoints": list_endpoints,
    "addEndpoint": add_endpoint,
    "removeEndpoint": remove_endpoint,
    "listGrants": list_grants,
    "grantAccess": grant_access,
    "revokeAccess": revoke_access,
    "listGroups": list_groups,
    "addGroup": add_group,
    "removeGroup": remove_group,
    "addGroupMember": add_group_member,
    "removeGroupMember": remove_group_member,
    "listAuditTrail": list_audit_trail,
    "listOpmonRecords": list_opmon_records,
    "getOpmonHealth": get_opmon_health,
}


def _registry_client(config: GatewayConfig) -> RegisterClient:
    async def register(client: SubsystemId, now: dt.datetime) -> RegistryAnswer:
        async with RegistrationClient(config) as registry:
            return await registry.client(client, now)

    return register


def _registry_maintenance(config: GatewayConfig) -> AnnounceMaintenance:
    async def announce(enabled: bool, now: dt.datetime) -> dict[str, Any]:
        return await announce_maintenance(config, enabled, now=now)

    return announce


def make_management_app(
    gateway: ManagedGateway,
    token_public_key: ec.EllipticCurvePublicKey,
    *,
    register_client: RegisterClient | None = None,
    announce_maintenance: AnnounceMaintenance | None = None,
) -> web.Application:
    """The management API for ``gateway``, accepting tokens signed with ``token_public_key``.

    ``register_client`` submits client registrations (default: to the registry the
    configuration anchor names, with :class:`gateway.registration.RegistrationClient`);
    ``announce_maintenance`` announces maintenance mode (default: to that registry, with
    :func:`gateway.maintenance.announce_maintenance`).
    """
    server_id = gateway.config.server_id

    def authenticate(request: web.Request, token: str) -> RoleIdentity:
        return verify_management_token(token, token_public_key, server_id=server_id, now=gateway.clock.now())

    app = make_json_api(
        openapi_document(),
        _HANDLERS,
        authenticate=authenticate,
        realm="xweg-management",
        name="gateway.management",
        max_body_bytes=MAX_BODY_BYTES,
    )
    app[_CONTEXT_KEY] = _Context(
        gateway,
        register_client or _registry_client(gateway.config),
        announce_maintenance or _registry_maintenance(gateway.config),
    )
    return app
