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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import stat
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import structlog
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import Clock, require_utc
from core.identifiers import IdentifierError, MemberId
from registry.openapi import MAX_ID, MAX_STRING, REQUEST_SCHEMAS, openapi_document
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
from trust.keys import generate_private_key, load_private_key
from trust.tokens import MAX_LEEWAY_S, MAX_SUBJECT_LENGTH, MAX_TOKEN_LENGTH, MAX_TTL_S, TokenInvalid, key_id

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

log = structlog.get_logger("xweg.registry.api")

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


@dataclass(frozen=True)
class RegistryIdentity:
    """Who a verified token speaks for."""

    subject: str
    role: str
    token_id: str


def _check_subject(value: object) -> str:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_SUBJECT_LENGTH
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
    ):
        raise ValueError(f"a subject is 1 to {MAX_SUBJECT_LENGTH} printable characters")
    return value


def issue_registry_token(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    subject: str,
    role: str,
    now: dt.datetime,
    ttl_s: int = DEFAULT_TTL_S,
) -> str:
    """A management-API token for ``subject`` in ``role``, valid from ``now`` for ``ttl_s`` seconds."""
    _check_subject(subject)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"a token's lifetime must be 1 to {MAX_TTL_S} seconds")
    issued = int(require_utc(now, "now").timestamp())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "role": role,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": str(uuid.uuid4()),
    }
    headers = {"typ": "JWT", "kid": key_id(private_key.public_key())}
    return jwt.encode(claims, private_key, algorithm="ES256", headers=headers)


def verify_registry_token(
    token: str, public_key: ec.EllipticCurvePublicKey, *, now: dt.datetime
) -> RegistryIdentity:
    """The identity of a valid token; :class:`trust.tokens.TokenInvalid` otherwise."""
    # (1) shape and algorithm, before the key is used
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenInvalid("not a compact JWS of bounded size")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenInvalid("the token's header cannot be read") from exc
    if header.get("alg") != "ES256":
        raise TokenInvalid("only ES256 tokens are accepted")
    # (2) signature, audience, issuer; (3) times against ``now``
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["ES256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={
                "require": ["iss", "aud", "sub", "iat", "exp", "jti", "role"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "strict_aud": True,
            },
        )
    except jwt.InvalidTokenError as exc:
        raise TokenInvalid(f"the token is not valid ({exc})") from exc
    moment = now.timestamp()
    issued, expires = claims["iat"], claims["exp"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (issued, expires)):
        raise TokenInvalid("the token's times are not NumericDates")
    if issued > moment + MAX_LEEWAY_S or expires <= moment - MAX_LEEWAY_S:
        raise TokenInvalid("the token is not valid at this time")
    if not 0 < expires - issued <= MAX_TTL_S:
        raise TokenInvalid("the token's lifetime is out of bounds")
    # (4) identity
    try:
        subject = _check_subject(claims["sub"])
    except ValueError as exc:
        raise TokenInvalid(f"the token's subject: {exc}") from exc
    role, token_id = claims["role"], claims["jti"]
    if role not in ROLES or not isinstance(token_id, str):
        raise TokenInvalid("the token names no registry role")
    return RegistryIdentity(subject, role, token_id)


def registry_token_key_path(state_dir: Path) -> Path:
    """Where a registry with state folder ``state_dir`` keeps its token key."""
    return Path(state_dir) / REGISTRY_TOKEN_KEY_FILE


def load_or_create_registry_token_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    """The token key at ``path``, created (mode 0600, create-if-absent) if there is none yet."""
    path = Path(path)
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            encryption: serialization.KeySerializationEncryption = (
                serialization.BestAvailableEncryption(passphrase)
                if passphrase
                else serialization.NoEncryption()
            )
            data = generate_private_key().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                with contextlib.suppress(FileExistsError):  # another process was first: keep its key
                    os.link(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise TokenKeyError(f"cannot create the registry token key {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise TokenKeyError(
            f"the registry token key {path} is accessible to others (mode {mode:o}); chmod 600 it"
        )
    try:
        return load_private_key(path, passphrase)
    except (OSError, ValueError) as exc:
        raise TokenKeyError(f"cannot read the registry token key {path}: {exc}") from exc


# -- the application ------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiContext:
    """What the API works on; set by the registry server once its store is open."""

    store: RegistryStore
    token_key: ec.EllipticCurvePublicKey
    clock: Clock


API_CONTEXT_KEY = web.AppKey("api_context", ApiContext)
_IDENTITY_KEY = web.RequestKey("identity", RegistryIdentity)
_CORRELATION_KEY = web.RequestKey("correlation_id", str)


class ApiError(Exception):
    """An answer other than success: HTTP status, error type, message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _error_response(status: int, kind: str, message: str, correlation_id: str) -> web.Response:
    headers = {"X-Correlation-Id": correlation_id}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="xweg-registry"'
    return web.json_response(
        {"type": kind, "message": message, "detail": correlation_id}, status=status, headers=headers
    )


def _refused(exc: RegistryError | IdentifierError) -> ApiError:
    """409 for a conflict, 422 for any other refusal; the body's ``type`` is the refusal's code."""
    if isinstance(exc, RegistryConflict):
        return ApiError(409, exc.code, str(exc))
    if isinstance(exc, RegistryError):
        return ApiError(422, exc.code, str(exc))
    return ApiError(422, RegistryError.code, str(exc))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _check(schema: dict[str, Any], value: Any, where: str) -> None:
    """The subset of JSON Schema :mod:`registry.openapi` uses for request bodies."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if value is None:
        if "null" not in kinds:
            raise ApiError(400, "invalid_request", f"{where} must not be null")
        return
    if "object" in kinds:
        if not isinstance(value, dict):
            raise ApiError(400, "invalid_request", f"{where} must be a JSON object")
        unknown = sorted(set(value) - set(schema["properties"]))
        if unknown:
            raise ApiError(400, "invalid_request", f"{where}: unknown field(s) {', '.join(unknown)}")
        missing = [name for name in schema.get("required", []) if name not in value]
        if missing:
            raise ApiError(400, "invalid_request", f"{where}: missing field(s) {', '.join(missing)}")
        for name, item in value.items():
            _check(schema["properties"][name], item, f"{where}.{name}")
    elif "array" in kinds:
        if not isinstance(value, list) or len(value) > schema.get("maxItems", len(value)):
            raise ApiError(
                400, "invalid_request", f"{where} must be a list of at most {schema.get('maxItems')}"
            )
        for index, item in enumerate(value):
            _check(schema["items"], item, f"{where}[{index}]")
    elif "string" in kinds:
        low, high = schema.get("minLength", 0), schema.get("maxLength", MAX_STRING)
        if not isinstance(value, str) or not low <= len(value) <= high:
            raise ApiError(400, "invalid_request", f"{where} must be a string of {low} to {high} characters")
    elif "boolean" in kinds:
        if not isinstance(value, bool):
            raise ApiError(400, "invalid_request", f"{where} must be true or false")
    if "enum" in schema and value not in schema["enum"]:
        raise ApiError(400, "invalid_request", f"{where} must be one of {', '.join(schema['enum'])}")


async def _body(request: web.Request, operation_id: str) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not JSON: {exc}") from exc
    _check(REQUEST_SCHEMAS[operation_id], body, "body")
    assert isinstance(body, dict)  # the schema is an object
    return body


def _audit(request: web.Request) -> AuditContext:
    identity = request[_IDENTITY_KEY]
    return AuditContext(
        identity.subject, request.config_dict[API_CONTEXT_KEY].clock.now(), request[_CORRELATION_KEY]
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
    body, store, audit = await _body(request, "addMember"), _store(request), _audit(request)

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
    body, store, audit = await _body(request, "addSubsystem"), _store(request), _audit(request)
    cls, code = request.match_info["member_class"], request.match_info["member_code"]

    def work() -> dict[str, Any]:
        member = MemberId(store.instance(), cls, code)
        return {"id": store.add_subsystem(member, body["code"], audit=audit).slash()}

    return web.json_response(await _run(work), status=201)


async def list_servers(request: web.Request) -> web.Response:
    return web.json_response(await _run(lambda: _servers(_store(request))))


async def add_server(request: web.Request) -> web.Response:
    body, store, audit = await _body(request, "addSecurityServer"), _store(request), _audit(request)

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
    body, store, audit = await _body(request, "addServerClient"), _store(request), _audit(request)
    info = request.match_info

    def work() -> dict[str, Any]:
        server = _server_path(store, info)
        store.add_server_client(server, body["client"], audit=audit)
        return _one(_servers(store), "id", server)

    return web.json_response(await _run(work), status=201)


async def set_maintenance_mode(request: web.Request) -> web.Response:
    body, store, audit = await _body(request, "setMaintenanceMode"), _store(request), _audit(request)
    info = request.match_info

    def work() -> dict[str, Any]:
        server = _server_path(store, info)
        store.set_maintenance_mode(server, body["maintenance_mode"], audit=audit)
        return _one(_servers(store), "id", server)

    return web.json_response(await _run(work))


async def list_groups(request: web.Request) -> web.Response:
    return web.json_response(await _run(lambda: _groups(_store(request))))


async def add_group(request: web.Request) -> web.Response:
    body, store, audit = await _body(request, "addGroup"), _store(request), _audit(request)

    def work() -> dict[str, Any]:
        group = store.add_global_group(
            body["code"], body.get("description", ""), body.get("members", []), audit=audit
        )
        return _one(_groups(store), "id", group.slash())

    return web.json_response(await _run(work), status=201)


async def add_group_member(request: web.Request) -> web.Response:
    body, store, audit = await _body(request, "addGroupMember"), _store(request), _audit(request)
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
    body, store, audit = await _body(request, "addService"), _store(request), _audit(request)

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
    body, store, audit = await _body(request, "addApprovedCA"), _store(request), _audit(request)

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
    body, store, audit = await _body(request, "addApprovedTSA"), _store(request), _audit(request)

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


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, "invalid_request", f"{name} must be an integer from {low} to {high}")
    return int(text)


async def list_audit_trail(request: web.Request) -> web.Response:
    after_id = _int_query(request, "after_id", 0, 0, MAX_ID)
    limit = _int_query(request, "limit", 100, 1, 1000)
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
    body = await _body(request, "decideRegistrationRequest")
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

_ROLES_KEY = web.AppKey("roles", dict)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Steps 1-3 of the module docstring, and the one place errors become JSON."""
    correlation_id = uuid.uuid4().hex
    request[_CORRELATION_KEY] = correlation_id
    try:
        route = request.match_info.route
        roles = request.app[_ROLES_KEY].get(route)
        if roles is not None:
            context = request.config_dict[API_CONTEXT_KEY]
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "unauthorized", "a bearer token is required")
            try:
                identity = verify_registry_token(token.strip(), context.token_key, now=context.clock.now())
            except TokenInvalid as exc:
                raise ApiError(401, "unauthorized", str(exc)) from exc
            if identity.role not in roles:
                raise ApiError(403, "forbidden", f"role {identity.role} may not do this")
            request[_IDENTITY_KEY] = identity
        response = await handler(request)
    except ApiError as exc:
        if exc.status >= 500:
            log.error("registry.api_error", correlation_id=correlation_id, error=exc.message)
        return _error_response(exc.status, exc.kind, exc.message, correlation_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, correlation_id)
    except Exception:
        log.exception("registry.api_failed", correlation_id=correlation_id, path=request.path)
        return _error_response(
            500, "internal", "internal error; quote the detail to the operator", correlation_id
        )
    response.headers["X-Correlation-Id"] = correlation_id
    return response


def make_api() -> web.Application:
    """The API sub-application; mount it at :data:`registry.openapi.API_PREFIX`.

    It needs :data:`API_CONTEXT_KEY` set on the parent application before requests arrive.
    """
    api = web.Application(middlewares=[_guard])
    roles: dict[Any, frozenset[str]] = {}
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            route = api.router.add_route(method.upper(), path, _HANDLERS[operation["operationId"]])
            roles[route] = frozenset(operation["x-roles"])
    api[_ROLES_KEY] = roles
    return api


async def openapi_handler(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the document, for anyone (it holds no secrets)."""
    return web.json_response(openapi_document())
