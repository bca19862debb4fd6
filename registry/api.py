"""The registry's management REST API: an aiohttp sub-application under ``/api/v1``.

Routes, request-body schemas and the roles allowed per operation all come from the
OpenAPI document (:mod:`registry.openapi`).  Each call:

1. gets a correlation id (``X-Correlation-Id``, and ``detail`` of every error body);
2. needs a bearer JWT (ES256, signed with the registry's token key) — 401 with
   ``WWW-Authenticate: Bearer`` without one or with one that does not verify;
3. needs a role the operation allows (``x-roles`` in the document) — else 403;
4. has its JSON body bounded (:data:`MAX_BODY_BYTES`, else 413) and checked against the
   documented schema (malformed JSON or unknown fields: 400);
5. runs one store change (:mod:`registry.store`), which writes the audit trail with
   the token's subject in the same transaction; a refused change is 409
   (:class:`registry.store.RegistryConflict`: a duplicate, or a state that does not
   allow it) or 422 (anything else the registry refuses), with nothing written.

Errors are JSON ``{"type", "message", "detail"}``; for a refused change ``type`` is the
refusal's stable code (``conflict``, ``unknown_reference`` or ``refused``, from
:attr:`registry.store.RegistryError.code`).  An unexpected failure is logged with
its traceback and answered 500 without one.  Tokens are issued by
``xweg registry token issue``; the key lives in the registry's state folder.

Steps 1-4 and the error bodies are :mod:`trust.service.jsonapi`'s, the tokens
:mod:`trust.tokens`'s role tokens; this module holds the handlers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import Clock
from core.identifiers import IdentifierError, MemberId
from registry.openapi import MAX_ID, openapi_document
from registry.publisher import build_global_conf
from registry.store import (
    REQUEST_STATES,
    AuditContext,
    RegistrationEntry,
    RegistryConflict,
    RegistryError,
    RegistryNotFound,
    RegistryStore,
    approved_ca_summary,
    approved_tsa_summary,
)
from trust.keyfiles import load_or_create_private_key
from trust.service.jsonapi import (
    ApiError,
    Handler,
    correlation_id,
    identity,
    int_query,
    json_body,
    make_json_api,
)
from trust.tokens import RoleIdentity, issue_role_token, verify_role_token

__all__ = [
    "API_CONTEXT_KEY",
    "ApiContext",
    "AUDIENCE",
    "ISSUER",
    "MAX_BODY_BYTES",
    "REGISTRY_TOKEN_KEY_FILE",
    "ROLES",
    "RegistryIdentity",
    "TokenKeyError",
    "issue_registry_token",
    "load_or_create_registry_token_key",
    "make_api",
    "openapi_handler",
    "registry_token_key_path",
    "verify_registry_token",
]

ROLES = ("registry-admin", "registration-officer", "observer")
AUDIENCE = "xweg-registry-api"
ISSUER = "xweg-registry"
DEFAULT_TTL_S = 8 * 3600  # one working day
MAX_BODY_BYTES = 64 * 1024
REGISTRY_TOKEN_KEY_FILE = "registry-token.key"  # noqa: S105 (a file name)
_PREVIEW_VALIDITY = dt.timedelta(minutes=10)  # of the unsigned document GET globalconf answers


# -- tokens ---------------------------------------------------------------------------------


class TokenKeyError(RuntimeError):
    """The registry's token key cannot be created or read, or is readable by others."""


#: Who a verified token speaks for.
RegistryIdentity = RoleIdentity


def issue_registry_token(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    subject: str,
    role: str,
    now: dt.datetime,
    ttl_s: int = DEFAULT_TTL_S,
) -> str:
    """A management-API token for ``subject`` in ``role``, valid from ``now`` for ``ttl_s`` seconds."""
    return issue_role_token(
        private_key,
        issuer=ISSUER,
        audience=AUDIENCE,
        roles=ROLES,
        subject=subject,
        role=role,
        now=now,
        ttl_s=ttl_s,
    )


def verify_registry_token(
    token: str, public_key: ec.EllipticCurvePublicKey, *, now: dt.datetime
) -> RegistryIdentity:
    """The identity of a valid token; :class:`trust.tokens.TokenInvalid` otherwise."""
    return verify_role_token(token, public_key, issuer=ISSUER, audience=AUDIENCE, roles=ROLES, now=now)


def registry_token_key_path(state_dir: Path) -> Path:
    """Where a registry with state folder ``state_dir`` keeps its token key."""
    return Path(state_dir) / REGISTRY_TOKEN_KEY_FILE


def load_or_create_registry_token_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    """The token key at ``path``, created (mode 0600, create-if-absent) if there is none yet."""
    return load_or_create_private_key(path, passphrase, what="registry token key", error=TokenKeyError)


# -- the application ------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiContext:
    """What the API works on; set by the registry server once its store is open."""

    store: RegistryStore
    token_key: ec.EllipticCurvePublicKey
    clock: Clock


API_CONTEXT_KEY = web.AppKey("api_context", ApiContext)


def _refused(exc: RegistryError | IdentifierError) -> ApiError:
    """409 for a conflict, 422 for any other refusal; the body's ``type`` is the refusal's code."""
    if isinstance(exc, RegistryConflict):
        return ApiError(409, exc.code, str(exc))
    if isinstance(exc, RegistryError):
        return ApiError(422, exc.code, str(exc))
    return ApiError(422, RegistryError.code, str(exc))


def _audit(request: web.Request) -> AuditContext:
    return AuditContext(
        identity(request).subject, request.config_dict[API_CONTEXT_KEY].clock.now(), correlation_id(request)
    )


async def _run(function: Callable[[], Any]) -> Any:
    try:
        return await asyncio.to_thread(function)
    except (RegistryError, IdentifierError) as exc:  # identifiers from the path, e.g. /members/¤/0
        raise _refused(exc) from exc


def _store(request: web.Request) -> RegistryStore:
    return request.config_dict[API_CONTEXT_KEY].store


# -- readers: one JSON form per entity, as the document's response schemas say --------------


def _members(store: RegistryStore) -> list[dict[str, Any]]:
    return [
        {
            "id": m.id.slash(),
            "member_class": m.id.member_class,
            "member_code": m.id.member_code,
            "name": m.name,
            "subsystems": list(m.subsystems),
        }
        for m in store.definition().members
    ]


def _servers(store: RegistryStore) -> list[dict[str, Any]]:
    return [
        {
            "id": s.id.slash(),
            "owner": s.id.member.slash(),
            "code": s.id.server_code,
            "address": s.address,
            "auth_certificate_fingerprints": list(s.auth_cert_fingerprints),
            "clients": [c.slash() for c in s.clients],
            "maintenance_mode": s.maintenance_mode,
        }
        for s in store.definition().security_servers
    ]


def _server_path(store: RegistryStore, info: Mapping[str, str]) -> str:
    """The slash form of the security server a path's member_class, member_code and server_code name."""
    member = MemberId(store.instance(), info["member_class"], info["member_code"]).slash()
    return f"{member}/{info['server_code']}"


def _groups(store: RegistryStore) -> list[dict[str, Any]]:
    return [
        {"id": g.id.slash(), "code": g.id.group_code, "members": [m.slash() for m in g.members]}
        for g in store.definition().global_groups
    ]


def _one(entries: list[dict[str, Any]], key: str, value: str) -> dict[str, Any]:
    return next(e for e in entries if e[key] == value)


# -- handlers -------------------------------------------------------------------------------


async def list_members(request: web.Request) -> web.Response:
    return web.json_response(await _run(lambda: _members(_store(request))))


async def add_member(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)

    def work() -> dict[str, Any]:
        mid = store.add_member(body["member_class"], body["member_code"], body["name"], audit=audit)
        return _one(_members(store), "id", mid.slash())

    return web.json_response(await _run(work), status=201)


async def get_member(request: web.Request) -> web.Response:
    store = _store(request)
    cls, code = request.match_info["member_class"], request.match_info["member_code"]

    def work() -> dict[str, Any] | None:
        return next(
            (m for m in _members(store) if (m["member_class"], m["member_code"]) == (cls, code)), None
        )

    member = await _run(work)
    if member is None:
        raise ApiError(404, "not_found", f"no member {cls}/{code}")
    return web.json_response(member)


async def add_subsystem(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)
    cls, code = request.match_info["member_class"], request.match_info["member_code"]

    def work() -> dict[str, Any]:
        member = MemberId(store.instance(), cls, code)
        return {"id": store.add_subsystem(member, body["code"], audit=audit).slash()}

    return web.json_response(await _run(work), status=201)


async def list_servers(request: web.Request) -> web.Response:
    return web.json_response(await _run(lambda: _servers(_store(request))))


async def add_server(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)

    def work() -> dict[str, Any]:
        server = store.add_security_server(
            body["owner"],
            body["code"],
            body["address"],
            body["auth_certificate_pem"],
            body.get("clients", []),
            audit=audit,
        )
        return _one(_servers(store), "id", server.slash())

    return web.json_response(await _run(work), status=201)


async def add_server_client(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)
    info = request.match_info

    def work() -> dict[str, Any]:
        server = _server_path(store, info)
        store.add_server_client(server, body["client"], audit=audit)
        return _one(_servers(store), "id", server)

    return web.json_response(await _run(work), status=201)


async def set_maintenance_mode(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)
    info = request.match_info

    def work() -> dict[str, Any]:
        server = _server_path(store, info)
        store.set_maintenance_mode(server, body["maintenance_mode"], audit=audit)
        return _one(_servers(store), "id", server)

    return web.json_response(await _run(work))


async def list_groups(request: web.Request) -> web.Response:
    return web.json_response(await _run(lambda: _groups(_store(request))))


async def add_group(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)

    def work() -> dict[str, Any]:
        group = store.add_global_group(
            body["code"], body.get("description", ""), body.get("members", []), audit=audit
        )
        return _one(_groups(store), "id", group.slash())

    return web.json_response(await _run(work), status=201)


async def add_group_member(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)
    code = request.match_info["code"]

    def work() -> dict[str, Any]:
        store.add_group_member(code, body["member"], audit=audit)
        return _one(_groups(store), "code", code)

    return web.json_response(await _run(work), status=201)


async def list_services(request: web.Request) -> web.Response:
    store, query = _store(request), request.query

    def work() -> list[dict[str, Any]]:
        entries = store.services(
            provider=query.get("provider"), authority=query.get("authority"), area=query.get("area")
        )
        return [e.to_dict() for e in entries]

    return web.json_response(await _run(work))


async def add_service(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)

    def work() -> dict[str, Any]:
        entry = store.add_service(
            body["provider"],
            body["code"],
            body.get("version"),
            body["protocol"],
            body.get("description", ""),
            body.get("standard", ""),
            body.get("authorities", []),
            body.get("area"),
            audit=audit,
        )
        return entry.to_dict()

    return web.json_response(await _run(work), status=201)


async def list_approved_cas(request: web.Request) -> web.Response:
    store = _store(request)
    return web.json_response(await _run(lambda: [approved_ca_summary(ca) for ca in store.approved_cas()]))


async def add_approved_ca(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)

    def work() -> dict[str, Any]:
        ca = store.add_approved_ca(
            body["certificate_pem"],
            intermediates_pem=body.get("intermediates_pem", []),
            ocsp_url=body.get("ocsp_url"),
            ocsp_responders_pem=body.get("ocsp_responders_pem", []),
            audit=audit,
        )
        return approved_ca_summary(ca)

    return web.json_response(await _run(work), status=201)


async def list_approved_tsas(request: web.Request) -> web.Response:
    store = _store(request)
    return web.json_response(await _run(lambda: [approved_tsa_summary(t) for t in store.approved_tsas()]))


async def add_approved_tsa(request: web.Request) -> web.Response:
    body, store, audit = await json_body(request), _store(request), _audit(request)

    def work() -> dict[str, Any]:
        tsa = store.add_approved_tsa(body["name"], body["url"], body["certificate_pem"], audit=audit)
        return approved_tsa_summary(tsa)

    return web.json_response(await _run(work), status=201)


async def get_globalconf(request: web.Request) -> web.Response:
    store, now = _store(request), request.config_dict[API_CONTEXT_KEY].clock.now()

    def work() -> Any:
        # Serial and validity are the publisher's to choose; the content is what this shows.
        conf = build_global_conf(store.definition(), serial=1, now=now, validity=_PREVIEW_VALIDITY)
        return json.loads(conf.to_json())

    return web.json_response(await _run(work))


async def list_audit_trail(request: web.Request) -> web.Response:
    after_id = int_query(request, "after_id", 0, 0, MAX_ID)
    limit = int_query(request, "limit", 100, 1, 1000)
    store = _store(request)
    entries = await _run(lambda: store.audit_trail(after_id=after_id, limit=limit))
    return web.json_response([e.to_dict() for e in entries])


async def list_registration_requests(request: web.Request) -> web.Response:
    status, store = request.query.get("status"), _store(request)
    if status is not None and status not in REQUEST_STATES:
        raise ApiError(400, "invalid_request", f"status must be one of {', '.join(REQUEST_STATES)}")
    entries = await _run(lambda: store.registrations(status=status))
    return web.json_response([e.to_dict() for e in entries])


async def _registration(request: web.Request, function: Callable[[], RegistrationEntry]) -> web.Response:
    try:
        entry = await asyncio.to_thread(function)
    except RegistryNotFound as exc:  # the id in the path names no request
        raise ApiError(404, "not_found", str(exc)) from exc
    except RegistryError as exc:
        raise _refused(exc) from exc
    return web.json_response(entry.to_dict())


async def get_registration_request(request: web.Request) -> web.Response:
    store, request_id = _store(request), request.match_info["id"]
    return await _registration(request, lambda: store.registration(request_id))


async def decide_registration_request(request: web.Request) -> web.Response:
    body = await json_body(request)
    store, audit, request_id = _store(request), _audit(request), request.match_info["id"]
    return await _registration(
        request,
        lambda: store.decide_registration(
            request_id, body["decision"], reason=body.get("reason"), audit=audit
        ),
    )


_HANDLERS: dict[str, Handler] = {
    "listMembers": list_members,
    "addMember": add_member,
    "getMember": get_member,
    "addSubsystem": add_subsystem,
    "listSecurityServers": list_servers,
    "addSecurityServer": add_server,
    "addServerClient": add_server_client,
    "setMaintenanceMode": set_maintenance_mode,
    "listGroups": list_groups,
    "addGroup": add_group,
    "addGroupMember": add_group_member,
    "listServices": list_services,
    "addService": add_service,
    "listApprovedCAs": list_approved_cas,
    "addApprovedCA": add_approved_ca,
    "listApprovedTSAs": list_approved_tsas,
    "addApprovedTSA": add_approved_tsa,
    "getGlobalConf": get_globalconf,
    "listRegistrationRequests": list_registration_requests,
    "getRegistrationRequest": get_registration_request,
    "decideRegistrationRequest": decide_registration_request,
    "listAuditTrail": list_audit_trail,
}


def _authenticate(request: web.Request, token: str) -> RoleIdentity:
    context = request.config_dict[API_CONTEXT_KEY]
    return verify_registry_token(token, context.token_key, now=context.clock.now())


def make_api() -> web.Application:
    """The API sub-application; mount it at :data:`registry.openapi.API_PREFIX`.

    It needs :data:`API_CONTEXT_KEY` set on the parent application before requests arrive.
    """
    return make_json_api(
        openapi_document(),
        _HANDLERS,
        authenticate=_authenticate,
        realm="xweg-registry",
        name="registry",
        max_body_bytes=MAX_BODY_BYTES,
    )


async def openapi_handler(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the document, for anyone (it holds no secrets)."""
    return web.json_response(openapi_document())
