"""Where security servers submit registration requests: ``/registration/v1``.

A server cannot hold a management-API token before it is registered, so these
routes need none; the request's own signatures authenticate it
(:mod:`trust.registration`, :mod:`trust.maintenance`):

``POST /registration/v1/requests``
    Body: a signed registration request (``application/json``, at most
    :data:`~trust.registration.MAX_REQUEST_BYTES`).  Verified at receipt against the
    approved CAs with the OCSP responses it carries, then recorded as pending (202), or
    approved at once (201) when the registry auto-approves that kind.  Refusals are
    JSON ``{"type", "message", "detail"}``: 400 for a malformed body, 413 for an
    oversize one, 422 for a request that does not verify (``type`` names the failed
    check, e.g. ``proof_of_possession`` or ``consent``) or names something unknown, 409
    for a replay or a request that collides with one already registered or pending.

``GET /registration/v1/requests/{id}``
    The request's state, with the reason of a rejection, for the submitting server.
    The id is a random UUID handed to the submitter, so knowing it is what entitles
    one to read the state; who decided is not shown.

``POST /registration/v1/maintenance``
    Body: a maintenance announcement signed by the server's auth key (at most
    :data:`~trust.maintenance.MAX_ANNOUNCEMENT_BYTES`).  Applied at once, without
    approval: after it verified (fresh, signed by a valid, unrevoked auth certificate
    of the server it names), the store checks that certificate is registered for that
    server and that the request id is new, keeps the id, sets the server's maintenance
    flag and audits the change with the server as actor.  200 with
    ``{"id", "kind", "server", "maintenance_mode", "changed", "status": "applied"}``.
    Refusals as above, each with its ``type``: 400 ``malformed``, 413
    ``payload_too_large``, 422 ``stale``, ``auth_certificate``, ``server_signature``,
    ``unknown_server`` or ``unregistered_certificate``, 409 ``replayed`` or ``superseded``
    (older than an announcement already applied); nothing changes.

All run the store's work in a thread, and every refusal carries a correlation id
that is also logged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from core.clock import Clock
from registry.federation import FederationDefinition
from registry.store import (
    AuditContext,
    RegistrationEntry,
    RegistryConflict,
    RegistryError,
    RegistryNotFound,
    RegistryStore,
)
from trust.certificates import CertificateTrust, OcspPolicy
from trust.errors import RegistrationInvalid
from trust.maintenance import (
    MAX_ANNOUNCEMENT_BYTES,
    MaintenanceRequest,
    SignedMaintenanceRequest,
    check_fresh,
    verify_maintenance_request,
)
from trust.registration import (
    MAX_REQUEST_BYTES,
    RegistrationKind,
    RegistrationRequest,
    SignedRegistration,
    check_age,
    verify_registration,
)

__all__ = [
    "REGISTRATION_PREFIX",
    "RegistrationContext",
    "REGISTRATION_CONTEXT_KEY",
    "certificate_trust",
    "make_registration_app",
]

REGISTRATION_PREFIX = "/registration/v1"

log = structlog.get_logger("xweg.registry.registration")


@dataclass(frozen=True)
class RegistrationContext:
    """What the registration routes work on; ``auto_approve`` lists the kinds approved at once."""

    store: RegistryStore
    clock: Clock
    auto_approve: frozenset[RegistrationKind] = frozenset()


REGISTRATION_CONTEXT_KEY = web.AppKey("registration_context", RegistrationContext)
_CORRELATION_KEY = web.RequestKey("correlation_id", str)


class _Refusal(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def certificate_trust(definition: FederationDefinition) -> CertificateTrust:
    """What the registry trusts when it checks a request: the approved CAs, with OCSP required.

    Like a security server, the registry never skips revocation: without an approved
    OCSP responder it refuses every request (:class:`RegistrationInvalid`).
    """
    responders = tuple(r for ca in definition.approved_cas for r in ca.ocsp_responders)
    if not responders:
        raise RegistrationInvalid(
            "revocation_unavailable",
            "no approved CA names an OCSP responder, so revocation cannot be checked",
        )
    return CertificateTrust(
        roots=tuple(ca.certificate for ca in definition.approved_cas),
        intermediates=tuple(i for ca in definition.approved_cas for i in ca.intermediates),
        ocsp=OcspPolicy(responders=responders, freshness_s=float(definition.ocsp_freshness_s)),
    )


def _refusal(exc: Exception) -> _Refusal:
    if isinstance(exc, RegistrationInvalid):
        return _Refusal(422, exc.code, str(exc))
    if isinstance(exc, RegistryConflict):
        return _Refusal(409, exc.code, str(exc))
    if isinstance(exc, RegistryNotFound):
        return _Refusal(422, exc.code, str(exc))
    assert isinstance(exc, RegistryError)
    return _Refusal(422, exc.code, str(exc))


async def _read_body(request: web.Request, limit: int = MAX_REQUEST_BYTES) -> bytes:
    too_large = _Refusal(413, "payload_too_large", f"the request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def submit(request: web.Request) -> web.Response:
    context = request.config_dict[REGISTRATION_CONTEXT_KEY]
    body = await _read_body(request)
    try:
        signed = SignedRegistration.from_json(body)
    except RegistrationInvalid as exc:
        raise _Refusal(400, exc.code, str(exc)) from exc
    correlation_id = request[_CORRELATION_KEY]

    def work() -> RegistrationEntry:
        now = context.clock.now()
        # Cheap refusals first (shape, age, a replay), before the federation is read and
        # certificates, OCSP responses and signatures are checked.
        check_age(RegistrationRequest.from_bytes(signed.payload), now)
        context.store.refuse_replay(signed.digest.hex())
        verified = verify_registration(signed, certificate_trust(context.store.definition()), now)
        audit = AuditContext(verified.request.server.slash()[:255], now, correlation_id)
        return context.store.submit_registration(
            verified,
            signed.to_json(),
            auto_approve=verified.request.kind in context.auto_approve,
            audit=audit,
        )

    try:
        entry = await asyncio.to_thread(work)
    except (RegistrationInvalid, RegistryError) as exc:
        raise _refusal(exc) from exc
    log.info(
        "registry.registration_received",
        id=entry.id,
        kind=entry.kind,
        server=entry.server,
        client=entry.client,
        status=entry.status,
        correlation_id=correlation_id,
    )
    return web.json_response(entry.to_dict(public=True), status=201 if entry.status == "approved" else 202)


async def status(request: web.Request) -> web.Response:
    context = request.config_dict[REGISTRATION_CONTEXT_KEY]
    request_id = request.match_info["id"]
    try:
        entry = await asyncio.to_thread(context.store.registration, request_id)
    except RegistryNotFound as exc:
        raise _Refusal(404, "not_found", str(exc)) from exc
    return web.json_response(entry.to_dict(public=True))


async def announce_maintenance(request: web.Request) -> web.Response:
    context = request.config_dict[REGISTRATION_CONTEXT_KEY]
    body = await _read_body(request, MAX_ANNOUNCEMENT_BYTES)
    try:
        signed = SignedMaintenanceRequest.from_json(body)
    except RegistrationInvalid as exc:
        raise _Refusal(400, exc.code, str(exc)) from exc
    correlation_id = request[_CORRELATION_KEY]

    def work() -> tuple[MaintenanceRequest, bool]:
        now = context.clock.now()
        # Cheap refusals first (shape, age), before the federation is read and the
        # certificate, its OCSP response and the signature are checked.
        check_fresh(MaintenanceRequest.from_bytes(signed.payload), now)
        verified = verify_maintenance_request(signed, certificate_trust(context.store.definition()), now)
        audit = AuditContext(verified.request.server.slash()[:255], now, correlation_id)
        return verified.request, context.store.announce_maintenance(verified, audit=audit)

    try:
        announced, changed = await asyncio.to_thread(work)
    except (RegistrationInvalid, RegistryError) as exc:
        raise _refusal(exc) from exc
    log.info(
        "registry.maintenance_announced",
        server=announced.server.slash(),
        maintenance_mode=announced.enabled,
        changed=changed,
        request_id=announced.request_id,
        correlation_id=correlation_id,
    )
    return web.json_response(
        {
            "id": announced.request_id,
            "kind": "maintenance",
            "server": announced.server.slash(),
            "maintenance_mode": announced.enabled,
            "changed": changed,
            "status": "applied",
        }
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    correlation_id = uuid.uuid4().hex
    request[_CORRELATION_KEY] = correlation_id
    try:
        response = await handler(request)
    except _Refusal as exc:
        log.info(
            "registry.registration_refused",
            status=exc.status,
            type=exc.kind,
            error=exc.message,
            remote=request.remote,
            correlation_id=correlation_id,
        )
        response = web.json_response(
            {"type": exc.kind, "message": exc.message, "detail": correlation_id}, status=exc.status
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = web.json_response(
            {"type": exc.reason.lower().replace(" ", "_"), "message": exc.reason, "detail": correlation_id},
            status=exc.status,
        )
    except Exception:
        log.exception("registry.registration_failed", correlation_id=correlation_id, path=request.path)
        response = web.json_response(
            {
                "type": "internal",
                "message": "internal error; quote the detail to the operator",
                "detail": correlation_id,
            },
            status=500,
        )
    response.headers["X-Correlation-Id"] = correlation_id
    return response


def make_registration_app() -> web.Application:
    """The sub-application; mount at :data:`REGISTRATION_PREFIX` with :data:`REGISTRATION_CONTEXT_KEY` set."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post("/requests", submit)
    app.router.add_get("/requests/{id}", status)
    app.router.add_post("/maintenance", announce_maintenance)
    return app
