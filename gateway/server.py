"""One security server per process: the client listener, the peer listener, their lifecycle.

The client listener (plain HTTP, and when configured HTTPS with the internal TLS
certificate, :mod:`gateway.internaltls`, for the organisation's information systems) speaks
X-Road REST r1 at ``/r1/...``, answers directory look-ups from the verified global
configuration at ``/directory/v1/...`` (:mod:`gateway.directoryapi`), X-Road's
``GET /listClients`` from the same configuration and ``GET /wsdl?...`` with a ``getWsdl``
exchange (:mod:`gateway.metadata`), serves X-Road's schemas that WSDLs import at
``/xsd/{name}`` (so clients without internet access can build themselves), and takes
X-Road SOAP 4.0 requests as X-Road's client proxy does: at every path that none of its
routes takes (see :func:`is_soap_request`), and at those two; the peer listener (mutual
TLS, for other security servers) accepts framed, signed messages.  Every failure leaves
through one renderer per protocol: an X-Road REST error body, or for a SOAP client a SOAP
fault, each with a correlation id that is also in the server's log.  When configured, the
management listener (HTTPS, :mod:`gateway.management.listener`) serves the management API.

The client listener also answers ``GET /healthz`` (alive) and ``GET /readyz`` (ready to
take exchanges, :mod:`gateway.health`), and takes at most ``limits.max_concurrent_requests``
requests at once: one more is answered 503 ``Server.ClientProxy.TooManyRequests`` at once.
Both listeners parse headers within ``limits.max_header_bytes`` and ``limits.max_headers``.
On a stop signal every listener stops accepting, exchanges in flight get up to
``limits.shutdown_timeout_s`` to finish (then they are cancelled), and only then are the
background services, pools and the message log closed.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from multidict import CIMultiDict

from adapters.bodies import body_of, read_limited
from adapters.rest.backend import new_backend_session
from adapters.rest.outbound import render_rest_error
from adapters.soap.metadata import render_list_clients
from adapters.soap.xsd import relocate_schemas, schema_bytes
from core.clock import Clock, SystemClock
from core.errors import ErrorCode, Origin, XwegError, correlation_scope
from gateway.auditapi import AuditQueryLog, make_auditor_app
from gateway.clientauth import ClientConnection
from gateway.confclient.state import PostgresStateStore
from gateway.confclient.trusted import TrustedGlobalConf
from gateway.confclient.updater import GlobalConfUpdater
from gateway.config import ConfigError, GatewayConfig, Listener
from gateway.directoryapi import make_directory_app
from gateway.health import liveness, readiness
from gateway.internaltls import (
    ClientListenerTls,
    InternalTlsError,
    internal_tls_fingerprint,
    load_or_create_internal_tls,
)
from gateway.management.listener import start_management_listener
from gateway.messagelog.archive import Archiver
from gateway.messagelog.errors import MessageLogError
from gateway.messagelog.evidence import build_evidence
from gateway.messagelog.record import BodyPolicy
from gateway.messagelog.store import WAL_SAFETY_NET_PAGES, LogLocation, MessageLogStore, PostgresLogShard
from gateway.messagelog.timestamper import TimestampClient, Timestamper, TsaEndpoint
from gateway.messagelog.writer import MessageLogWriter
from gateway.metadata import list_clients
from gateway.observability.metrics import GatewayMetrics, OwnCertificate, StateSources
from gateway.observability.opmon import OperationalMonitor
from gateway.ocsp import OwnOcspResponses
from gateway.pipeline.consumer import (
    PassThroughError,
    handle_rest_request,
    handle_soap_request,
    handle_wsdl_request,
    pass_through_soap_fault,
    soap_fault_answer,
)
from gateway.pipeline.observed import Role, observed_exchange
from gateway.pipeline.provider import handle_exchange
from gateway.runtime import BackendPool, Gateway, load_signers
from gateway.serverconf.live import LiveServerConf
from gateway.serverconf.store import AuditContext, ServerConfStore
from gateway.tokens import TokenKey, TokenKeyError, load_token_key
from gateway.transport.client import EXCHANGE_PATH, OCSP_PATH, PeerClient
from gateway.transport.frame import CONTENT_TYPE, MAX_METADATA_BYTES
from gateway.transport.receive import read_frame
from gateway.transport.tls import server_context
from trust.anchor import load_anchor
from trust.clienttokens import names_client_audience, unverified_key_id
from trust.globalconf import GlobalConf
from trust.keys import load_certificates
from trust.service.runner import run_until_signalled
from trust.signatures import sign_digest
from trust.tokens import key_id

__all__ = [
    "serve",
    "main",
    "build_gateway",
    "build_client_app",
    "build_peer_app",
    "client_listener_tls",
    "is_soap_request",
    "open_serverconf",
]

log = structlog.get_logger("xweg.gateway")
GATEWAY_KEY = web.AppKey("gateway", Gateway)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# SOAP 1.1's media types: a request carrying one comes from a SOAP client, whatever its method.
_SOAP_MEDIA_TYPES = frozenset({"text/xml", "multipart/related"})
# Answered however busy the listener is, so that a loaded server still says it is alive.
_PROBES = frozenset({"/healthz", "/readyz"})
# The metadata paths, where a request that is not a GET is SOAP (see _metadata_route).
_METADATA_PATHS = frozenset({"/listClients", "/wsdl"})


@web.middleware
async def _correlation(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Each request under a correlation id of its own: its errors carry it, and so does every
    log line written while it is handled (with its message id once the request is read)."""
    with (
        correlation_scope() as correlation_id,
        structlog.contextvars.bound_contextvars(correlation_id=correlation_id, message_id=None),
    ):
        return await handler(request)


def _observed(role: Role) -> Callable[[Handler], Handler]:
    """A route handler whose exchange is counted, timed and recorded (failures included)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def observed(request: web.Request) -> web.StreamResponse:
            with observed_exchange(request.app[GATEWAY_KEY], role):
                return await handler(request)

        return observed

    return wrap


def _error_response(error: XwegError) -> web.Response:
    status, headers, body = render_rest_error(error)
    return web.Response(status=status, headers=dict(headers), body=body)


def _error_middleware(origin: Origin) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except XwegError as error:
            _log_failure(error, request)
            return _error_response(error)
        except PassThroughError as error:
            log.warning("exchange.failed_at_provider", fault_code=error.fault_code, path=request.path)
            return web.Response(
                status=error.status,
                body=error.body,
                headers={"Content-Type": "application/json; charset=utf-8", "X-Road-Error": error.fault_code},
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # No such route or method: an X-Road error body too, never aiohttp's plain text.
            refused = XwegError(
                ErrorCode.INVALID_REQUEST,
                f"{request.method} {request.path}: {exc.reason}",
                Origin.CLIENT if exc.status < 500 else origin,
            )
            log.warning(
                "request.refused", status=exc.status, path=request.path, correlation_id=refused.correlation_id
            )
            status, headers, body = render_rest_error(refused)
            return web.Response(status=exc.status, headers=dict(headers), body=body)
        except Exception as exc:  # the last line of defence: never a traceback to a client
            internal = XwegError(ErrorCode.INTERNAL_ERROR, "internal error; see the server log", origin)
            log.exception("internal_error", correlation_id=internal.correlation_id, error=repr(exc))
            return _error_response(internal)

    return middleware


def _log_failure(error: XwegError, request: web.Request) -> None:
    log.warning(
        "exchange.failed",
        fault_code=error.fault_code,
        message=error.message,
        correlation_id=error.correlation_id,
        path=request.path,
    )


def is_soap_request(request: web.Request) -> bool:
    """Whether the client listener takes ``request`` as an X-Road SOAP request.

    X-Road's client proxy takes a POST at any path as SOAP.  Here the listener's own routes
    come first: what none of them takes -- nor an application mounted in the listener (the
    auditor API, the directory), whose own 404 it is -- is SOAP when it is a POST, or when it
    carries a SOAP content type, so that a SOAP client using the wrong method hears
    ``InvalidHttpMethod`` as a SOAP fault.  A path that is a route for other methods only
    (``/healthz``) is not SOAP.  Absolute-form targets (``POST http://host/endpoint``, from
    clients using the security server as their HTTP proxy) are routed by their path.
    """
    match = request.match_info
    if not isinstance(match.http_exception, web.HTTPNotFound) or len(match.apps) != 1:
        return False
    return _speaks_soap(request)


def _speaks_soap(request: web.Request) -> bool:
    """A POST, or a request with a SOAP content type."""
    if request.method == "POST":
        return True
    essence = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return essence in _SOAP_MEDIA_TYPES


def _request_limit(limit: int) -> Middleware:
    """At most ``limit`` requests in flight on the listener; one more is refused at once.

    What is counted is requests being handled (from routing to the response), not
    connections: an idle keep-alive connection holds no body and no worker.  The probes
    are not counted.  The refusal is 503 with ``Retry-After``, in SOAP for a SOAP client.
    """
    in_flight = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if request.path in _PROBES:
            return await handler(request)
        if in_flight >= limit:
            return _too_many_requests(request, limit)
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    return middleware


def _too_many_requests(request: web.Request, limit: int) -> web.Response:
    busy = XwegError(
        ErrorCode.TOO_MANY_REQUESTS,
        f"the security server is handling {limit} requests already; try again later",
        Origin.CLIENT_PROXY,
    )
    log.warning("request.refused_busy", limit=limit, path=request.path, correlation_id=busy.correlation_id)
    soap = is_soap_request(request) or (
        request.path in _METADATA_PATHS and request.method not in ("GET", "HEAD") and _speaks_soap(request)
    )
    if soap:
        answer = soap_fault_answer(busy)
        headers, body = answer.headers, answer.body
    else:
        _, headers, body = render_rest_error(busy)
    # 503 for SOAP too (X-Road answers faults with 200): it tells clients and balancers to retry.
    response = web.Response(status=busy.http_status, headers=CIMultiDict(headers), body=body)
    response.headers["Retry-After"] = "1"
    return response


@web.middleware
async def _soap_dispatch(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_soap_request(request):
        return await _soap(request)
    return await handler(request)


async def _soap(request: web.Request) -> web.StreamResponse:
    """One X-Road SOAP request; every answer, every failure included, is SOAP."""
    gateway = request.app[GATEWAY_KEY]
    try:
        with observed_exchange(gateway, Role.CONSUMER, soap=True):
            body = await _read_body(request, gateway.config.limits.max_body_bytes, Origin.CLIENT)
            answer = await handle_soap_request(
                gateway,
                request.method,
                body,
                content_type=request.headers.get("Content-Type"),
                soap_action=request.headers.get("SOAPAction"),
                connection=client_connection(request),
            )
    except XwegError as error:
        _log_failure(error, request)
        answer = soap_fault_answer(error)
    except PassThroughError as error:
        log.warning("exchange.failed_at_provider", fault_code=error.fault_code, path=request.path)
        answer = pass_through_soap_fault(error)
    except Exception as exc:  # the last line of defence: never a traceback to a client
        internal = XwegError(
            ErrorCode.INTERNAL_ERROR, "internal error; see the server log", Origin.CLIENT_PROXY
        )
        log.exception("internal_error", correlation_id=internal.correlation_id, error=repr(exc))
        answer = soap_fault_answer(internal)
    return _answer(answer.status, answer.headers, answer.body)


def client_connection(request: web.Request) -> ClientConnection:
    """What the client listener saw of how ``request`` arrived: TLS, which client certificate,
    and the client token of this server it carried, if any (see :func:`_own_client_tokens`)."""
    tokens = _own_client_tokens(request)
    if len(set(tokens)) > 1:
        raise XwegError(
            ErrorCode.INVALID_CLIENT_TOKEN, "a request carries at most one client token", Origin.CLIENT
        )
    token = tokens[0] if tokens else None
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        return ClientConnection(tls=False, token=token)
    der = ssl_object.getpeercert(binary_form=True)
    return ClientConnection(
        tls=True, certificate_fingerprint=hashlib.sha256(der).hexdigest() if der else None, token=token
    )


def _bearer(authorization: str) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` value, else ``None``."""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _own_client_tokens(request: web.Request) -> list[str]:
    """The bearer tokens in ``request``'s Authorization headers that name this server's
    client-token key (their ``kid``) or the client proxy as audience, in order.

    Those are this server's to check, and are never forwarded; any other Authorization
    header is the information system's business with the provider and goes through as is.
    """
    bearers = [b for b in map(_bearer, request.headers.getall("Authorization", ())) if b is not None]
    if not bearers:
        return []
    own = key_id(request.app[GATEWAY_KEY].client_token_key.public_key())
    return [t for t in bearers if unverified_key_id(t) == own or names_client_audience(t)]


def _too_large(request: web.Request, limit: int, origin: Origin) -> Callable[[], XwegError]:
    """The 413 refusal of a body over ``limit``; raised at once when the request declares one."""

    def refusal() -> XwegError:
        return XwegError(ErrorCode.REQUEST_TOO_LARGE, f"request body exceeds {limit} bytes", origin)

    if request.content_length is not None and request.content_length > limit:
        raise refusal()
    return refusal


async def _read_body(request: web.Request, limit: int, origin: Origin) -> bytes:
    """Read at most ``limit`` bytes of body; more is a 413, not a half-read message."""
    return await read_limited(request.content, limit, _too_large(request, limit, origin))


def _answer(status: int, headers: list[tuple[str, str]], body: bytes) -> web.Response:
    """A response whose large body is written in slices (:func:`adapters.bodies.body_of`).
    An empty or small body stays ``bytes``: aiohttp would send a payload's default
    Content-Type even for no content, and none for ``bytes``."""
    return web.Response(status=status, headers=CIMultiDict(headers), body=body_of(body))


@_observed(Role.CONSUMER)
async def _rest(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY_KEY]
    body = await _read_body(request, gateway.config.limits.max_body_bytes, Origin.CLIENT)
    connection = client_connection(request)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    if connection.token is not None:
        # This server's client token is for this server: neither logged nor sent on.
        own = set(_own_client_tokens(request))
        headers = [
            (name, value)
            for name, value in headers
            if name.lower() != "authorization" or _bearer(value) not in own
        ]
    answer = await handle_rest_request(
        gateway,
        request.method,
        request.raw_path,
        headers,
        body,
        connection=connection,
    )
    return _answer(answer.status, answer.headers, answer.body)


def _metadata_route(read: Handler) -> Handler:
    """A metadata service's path: ``read`` answers GET (and HEAD); SOAP is SOAP there too.

    X-Road's client proxy answers ``GET /listClients`` and ``GET /wsdl`` itself and takes a
    POST at those paths as SOAP, like a POST at any other path.
    """

    async def route(request: web.Request) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            return await read(request)
        if _speaks_soap(request):
            return await _soap(request)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "POST"])

    return route


async def _list_clients(request: web.Request) -> web.StreamResponse:
    """``GET /listClients[?xRoadInstance=..]``: the instance's members and subsystems, from
    verified global configuration (XML, or JSON when asked for)."""
    gateway = request.app[GATEWAY_KEY]
    conf, _ = gateway.current_conf(Origin.CLIENT_PROXY)
    instance = request.query.get("xRoadInstance") or None
    content_type, body = render_list_clients(list_clients(conf, instance), request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


_HOST = re.compile(r"(?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def _imports_pointing_here(document: bytes, request: web.Request) -> bytes:
    """``document`` with its X-Road schema imports pointed at this server's ``/xsd/``.

    The address is the one the client used to reach us, taken from the Host header only
    when it is a plain host[:port]; otherwise the document stays as it is (its imports
    name ``x-road.eu``, as X-Road gives them), so a client cannot steer them elsewhere.
    """
    if not _HOST.fullmatch(request.host):
        return document
    return relocate_schemas(document, f"{request.scheme}://{request.host}/xsd/")


@_observed(Role.CONSUMER)
async def _wsdl(request: web.Request) -> web.StreamResponse:
    """``GET /wsdl?xRoadInstance=..&...``: a provider's WSDL, fetched with getWsdl (see
    :func:`gateway.pipeline.consumer.handle_wsdl_request`).

    The X-Road schemas the WSDL imports from ``x-road.eu`` are pointed at this server's
    ``/xsd/``, so that a client without internet access can build itself from it.
    """
    gateway = request.app[GATEWAY_KEY]
    answer = await handle_wsdl_request(gateway, request.rel_url.raw_query_string)
    body = _imports_pointing_here(answer.body, request) if answer.status == 200 else answer.body
    return web.Response(status=answer.status, headers=CIMultiDict(answer.headers), body=body)


async def _schema(request: web.Request) -> web.StreamResponse:
    """``GET /xsd/{name}``: X-Road's schemas (xroad.xsd and what it imports), bundled."""
    try:
        document = schema_bytes(request.match_info["name"])
    except LookupError:
        raise web.HTTPNotFound() from None
    return web.Response(
        body=_imports_pointing_here(document, request), headers={"Content-Type": "text/xml; charset=UTF-8"}
    )


async def _healthz(request: web.Request) -> web.StreamResponse:
    """Alive: 200 whenever the process answers."""
    return web.json_response(liveness(request.app[GATEWAY_KEY]))


async def _readyz(request: web.Request) -> web.StreamResponse:
    """Ready to take exchanges: 200, or 503 naming each check that failed and why."""
    ready, body = readiness(request.app[GATEWAY_KEY])
    return web.json_response(body, status=200 if ready else 503)


@_observed(Role.PROVIDER)
async def _exchange(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY_KEY]
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    limit = gateway.config.limits.max_body_bytes + MAX_METADATA_BYTES + 64
    too_large = _too_large(request, limit, Origin.SERVER_PROXY)
    # Head and body apart: the body is read into a buffer of its own, never copied out of the frame.
    head, body = await read_frame(request.content, limit, too_large)
    answer_head, answer_body = await handle_exchange(gateway, der, head, body)
    return web.Response(
        status=200, body=body_of(answer_head, answer_body), headers={"Content-Type": CONTENT_TYPE}
    )


async def _offer_ocsp(request: web.Request) -> web.StreamResponse:
    """Our auth certificate's OCSP response, for peers to check before they send to us."""
    gateway = request.app[GATEWAY_KEY]
    response = gateway.own_ocsp.response_for(gateway.auth_certificate)
    body = {
        "certificate": gateway.auth_certificate.public_bytes(Encoding.PEM).decode("ascii"),
        "ocsp": base64.b64encode(response).decode("ascii") if response is not None else None,
    }
    return web.json_response(body, status=200 if response is not None else 503)


def _adopted_globalconf(gateway: Gateway) -> tuple[GlobalConf, bytes]:
    """The configuration to answer from and the signed bytes it was verified from, or OutdatedGlobalConf."""
    conf, _ = gateway.current_conf(Origin.CLIENT_PROXY)
    # The same holder adopted both at once, so the document is the one ``conf`` came from.
    document = gateway.globalconf.trusted.document
    assert document is not None  # a current configuration is only ever adopted from a document
    return conf, document


def build_client_app(gateway: Gateway) -> web.Application:
    app = web.Application(
        # Outermost first: a SOAP request is answered in SOAP and never reaches the REST renderer.
        middlewares=[
            _correlation,
            _request_limit(gateway.config.limits.max_concurrent_requests),
            _soap_dispatch,
            _error_middleware(Origin.CLIENT_PROXY),
        ],
        client_max_size=gateway.config.limits.max_body_bytes + 1,
    )
    app[GATEWAY_KEY] = gateway
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_route("*", "/listClients", _metadata_route(_list_clients))
    app.router.add_route("*", "/wsdl", _metadata_route(_wsdl))
    app.router.add_get("/xsd/{name}", _schema)
    app.router.add_route("*", "/r1/{tail:.*}", _rest)
    app.add_subapp("/audit/v1/", _auditor_app(gateway))
    app.add_subapp("/directory/v1/", make_directory_app(lambda: _adopted_globalconf(gateway)))
    return app


def _auditor_app(gateway: Gateway) -> web.Application:
    """The read-only auditor API: JWT bearer tokens with role auditor, every query logged."""
    config = gateway.config

    async def evidence(message_id: str, location: LogLocation) -> bytes:
        # On PostgreSQL the message may be in another replica's shard than this one's.
        def build() -> bytes:
            with MessageLogStore.open_readonly(location) as store:
                return build_evidence(store, message_id, now=gateway.clock.now())

        return await asyncio.to_thread(build)

    return make_auditor_app(
        log_path=config.message_log,
        token_public_key=gateway.auditor_token_key.public_key(),
        issuer=config.server_id.slash(),
        clock=gateway.clock,
        audit_log=gateway.auditor_queries,
        evidence=evidence,
    )


def build_peer_app(gateway: Gateway) -> web.Application:
    app = web.Application(
        middlewares=[_correlation, _error_middleware(Origin.SERVER_PROXY)],
        client_max_size=gateway.config.limits.max_body_bytes + MAX_METADATA_BYTES + 64,
    )
    app[GATEWAY_KEY] = gateway
    app.router.add_post(EXCHANGE_PATH, _exchange)
    app.router.add_get(OCSP_PATH, _offer_ocsp)
    return app


_background: set[asyncio.Task[None]] = set()


def _finished_in_background(task: asyncio.Task[None]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("messagelog.trust_record_failed", error=str(task.exception()))


def _record_trust(path: LogLocation, values: dict[str, str], conf: GlobalConf, document: bytes) -> None:
    # A connection of its own: the writer's belongs to the writer's thread.
    store = MessageLogStore.open(path)
    try:
        for key, value in values.items():
            store.set_meta(key, value)
        store.record_globalconf(conf.serial, document, conf.generated_at, conf.expires_at)
    finally:
        store.close()


async def open_serverconf(config: GatewayConfig, clock: Clock) -> LiveServerConf:
    """The server configuration store (created and migrated when needed), seeded from the
    configuration file's clients, services and access rights if it has never held anything."""
    settings = config.serverconf

    def open_and_seed() -> ServerConfStore:
        store = ServerConfStore.open(settings.database_url, base=config.data_dir)
        try:
            if store.seed(config.seed_snapshot(), AuditContext("configuration-file", clock.now())):
                log.info("serverconf.seeded", clients=len(config.clients), services=len(config.services))
        except BaseException:
            store.close()
            raise
        return store

    store = await asyncio.to_thread(open_and_seed)
    return await LiveServerConf.open(store, poll_interval_s=settings.poll_interval_s)


async def build_gateway(config: GatewayConfig, clock: Clock) -> Gateway:
    # Keys first: a wrong passphrase or a missing key fails before anything is opened.
    signers = load_signers(config)
    owner = signers.get(config.server_id.owner)
    if owner is None:
        raise ConfigError(
            f"no sign key for {config.server_id.owner.slash()}, the owner of this security server: "
            "it signs the message log's checkpoints"
        )

    config.data_dir.mkdir(parents=True, exist_ok=True)
    # The token keys too (on PostgreSQL they are in the database, and a replica with
    # another passphrase is refused here, before it takes its shard).
    auditor_token_key, client_token_key = await asyncio.to_thread(
        lambda: (load_token_key(config, TokenKey.AUDITOR), load_token_key(config, TokenKey.CLIENT))
    )
    anchor = load_anchor(config.anchor_path)
    serverconf = await open_serverconf(config, clock)
    policy = config.messagelog
    sharded = isinstance(config.message_log, PostgresLogShard)
    store = MessageLogStore.open(
        config.message_log,
        # Exactly one replica writes a shard: a second one configured with the same shard
        # fails here instead of interleaving its records into another replica's chain.
        exclusive=True,
        # Only the writer's connection appends, so this is the one place the body policy goes.
        body_policy=BodyPolicy(
            inline_limit_bytes=policy.inline_body_limit_bytes,
            omit_for=frozenset(client.slash() for client in policy.omit_bodies_for),
        ),
        # The writer checkpoints the WAL beside its appends; SQLite's own copy inside a
        # commit is left as a safety net at ten times its usual size.
        wal_autocheckpoint_pages=WAL_SAFETY_NET_PAGES,
    )
    store.set_meta("server_id", config.server_id.slash())
    metrics = GatewayMetrics(clock)
    writer = MessageLogWriter(
        store,
        on_commit=metrics.observe_log_commit,
        # PostgreSQL checkpoints its own WAL; an SQLite file's is the writer's to copy.
        checkpointer=None if sharded else MessageLogStore.open(config.message_log),
    )
    await writer.start()

    def remember_trust(conf: GlobalConf) -> None:
        # An auditor verifying this log later finds the CAs and TSAs that were approved here.
        cas = "".join(c.public_bytes(Encoding.PEM).decode() for c in conf.ca_certificates)
        intermediates = "".join(c.public_bytes(Encoding.PEM).decode() for c in conf.intermediate_certificates)
        tsas = "".join(c.public_bytes(Encoding.PEM).decode() for c in conf.tsa_certificates)
        meta = {"approved_cas": cas, "intermediate_cas": intermediates, "approved_tsas": tsas}
        # The signed document itself too: evidence containers carry it, so that an auditor
        # needs nothing but the configuration anchor.
        document = updater.trusted.document
        assert document is not None  # called right after a document was adopted
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(_record_trust, config.message_log, meta, conf, document)
        )
        _background.add(task)
        task.add_done_callback(_finished_in_background)

    updater = GlobalConfUpdater(
        TrustedGlobalConf(anchor),
        config.globalconf_path,
        config.globalconf,
        clock,
        on_update=remember_trust,
        # Replicas share one serial floor and trusted key set; alone, the files in data_dir.
        store=PostgresStateStore(config.database_url) if config.database_url is not None else None,
    )
    peers = PeerClient(
        config.auth_certificate_path,
        config.auth_key_path,
        config.key_passphrase,
        timeout_s=config.limits.peer_timeout_s,
        max_response_bytes=config.limits.max_body_bytes + MAX_METADATA_BYTES + 64,
    )
    backends = BackendPool(
        new_backend_session(),
        config.limits.max_body_bytes,
        max_timeout_s=config.limits.max_backend_timeout_s,
    )
    auth_certificate = load_certificates(config.auth_certificate_path)[0]
    own_ocsp = OwnOcspResponses(
        [auth_certificate, *(s.certificate for s in signers.values())],
        config.data_dir / "ocsp",
        config.ocsp,
        clock,
        updater.current,
    )

    def approved_tsas() -> list[TsaEndpoint]:
        conf = updater.current()
        return [TsaEndpoint(t.name, t.url, t.certificate) for t in conf.approved_tsas] if conf else []

    def trust_roots() -> tuple[tuple[x509.Certificate, ...], tuple[x509.Certificate, ...]]:
        conf = updater.current()
        return (conf.ca_certificates, conf.intermediate_certificates) if conf else ((), ())

    def sign_checkpoint(body: bytes) -> tuple[str, bytes | None]:
        jws = sign_digest(hashlib.sha512(body).digest(), owner.key, owner.certificate)
        return jws, own_ocsp.response_for(owner.certificate)

    stamping = config.timestamping
    timestamper = Timestamper(
        config.message_log,
        config.server_id.slash(),
        tsas=approved_tsas,
        trust=trust_roots,
        sign=sign_checkpoint,
        clock=clock,
        client=TimestampClient(),
        interval_s=stamping.interval_s,
        max_batch=stamping.max_batch,
        retry_s=stamping.retry_s,
        acceptable_s=stamping.acceptable_s,
        timeout_s=stamping.timeout_s,
    )
    opmon = OperationalMonitor(
        config.opmon_location, config.opmon, clock, on_drop=metrics.count_opmon_dropped
    )
    own_certificates = (
        OwnCertificate("auth", config.server_id.slash(), auth_certificate),
        *(OwnCertificate("sign", member.slash(), s.certificate) for member, s in signers.items()),
    )
    metrics.watch(
        StateSources(
            # The latest verified, even when expired: its expiry is what an alert needs to see.
            globalconf=lambda: updater.trusted.latest,
            timestamps=timestamper.status,
            log_queue_depth=lambda: writer.queue_depth,
            log_failed_batches=lambda: writer.failed_batches,
            certificates=lambda: own_certificates,
            ocsp_validity=own_ocsp.validity,
            opmon_queue_depth=lambda: opmon.queue_depth,
            serverconf_check_age=serverconf.seconds_since_check,
        )
    )
    return Gateway(
        config=config,
        clock=clock,
        globalconf=updater,
        signers=signers,
        log=writer,
        peers=peers,
        backends=backends,
        serverconf=serverconf,
        auth_certificate=auth_certificate,
        own_ocsp=own_ocsp,
        timestamper=timestamper,
        auditor_token_key=auditor_token_key,
        client_token_key=client_token_key,
        # Replicas keep one record of the auditors' queries, whichever of them answered.
        auditor_queries=(
            AuditQueryLog.open(config.database_url, replica=policy.shard)
            if config.database_url is not None
            else AuditQueryLog.open(config.data_dir / "auditor-queries.db")
        ),
        archiver=Archiver(
            config.message_log,
            # Replicas archive their own shards: one folder each, never two writers in one.
            config.archive_dir / policy.shard if sharded else config.archive_dir,
            clock=clock,
            interval_s=config.archive.interval_s,
            retention_s=config.archive.retention_s,
        ),
        metrics=metrics,
        opmon=opmon,
    )


def client_listener_tls(gateway: Gateway) -> ClientListenerTls:
    """The HTTPS client listener's TLS: the internal TLS certificate (made on first use),
    trusting the information-system certificates registered now and in every later snapshot."""
    config = gateway.config
    certificate, key = load_or_create_internal_tls(config.data_dir, config.key_passphrase)
    tls = ClientListenerTls(certificate, key, config.key_passphrase)
    tls.admit(gateway.serverconf.current())
    gateway.serverconf.add_listener(tls.admit)
    return tls


async def _start_client_tls_listener(gateway: Gateway, runner: web.AppRunner, listener: Listener) -> None:
    tls = client_listener_tls(gateway)
    await web.TCPSite(runner, listener.host, listener.port, ssl_context=tls.context).start()
    log.info(
        "listener.started",
        listener="client_tls",
        port=listener.port,
        internal_tls_fingerprint=internal_tls_fingerprint(tls.certificate_path),
    )


async def _stop_listeners(runners: list[web.AppRunner]) -> None:
    """Stop accepting on every listener at once, then let exchanges in flight finish.

    Closing the sites first refuses new connections on all listeners before any waiting
    starts; each runner's cleanup then closes idle keep-alive connections, waits up to
    its ``shutdown_timeout`` for running handlers and cancels what is left.  The runners
    wait side by side, so the whole stop is bounded by one timeout, not one per listener.
    """
    for runner in runners:
        for site in list(runner.sites):
            await site.stop()
    if runners:
        open_connections = sum(len(r.server.connections) for r in runners if r.server is not None)
        log.info("listeners.draining", connections=open_connections)
    results = await asyncio.gather(*(runner.cleanup() for runner in runners), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("listener.stop_failed", error=repr(result))


async def serve(config: GatewayConfig, clock: Clock | None = None, stop: asyncio.Event | None = None) -> None:
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    gateway = await build_gateway(config, clock)
    runners: list[web.AppRunner] = []
    try:
        # Inside the try: whatever fails to start, what did start is closed below.
        await gateway.globalconf.start()
        await gateway.serverconf.start()
        await gateway.own_ocsp.start()
        await gateway.timestamper.start()
        await gateway.archiver.start()
        await gateway.opmon.start()
        client_runner = web.AppRunner(
            build_client_app(gateway), access_log=None, **config.limits.runner_args()
        )
        await client_runner.setup()
        runners.append(client_runner)
        await web.TCPSite(client_runner, config.client_listener.host, config.client_listener.port).start()
        log.info("listener.started", listener="client", port=config.client_listener.port)
        if config.client_tls_listener is not None:
            await _start_client_tls_listener(gateway, client_runner, config.client_tls_listener)
        if config.management_listener is not None:
            runners.append(await start_management_listener(gateway, config.management_listener))

        # The peer listener needs the approved CAs, which come with global configuration.
        while gateway.globalconf.trusted.latest is None and not stop.is_set():
            waiter = asyncio.ensure_future(gateway.globalconf.updated.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
        if not stop.is_set():
            latest = gateway.globalconf.trusted.latest
            assert latest is not None
            tls = server_context(
                config.auth_certificate_path,
                config.auth_key_path,
                config.key_passphrase,
                latest.ca_certificates + latest.intermediate_certificates,
            )
            peer_runner = web.AppRunner(
                build_peer_app(gateway), access_log=None, **config.limits.runner_args()
            )
            await peer_runner.setup()
            runners.append(peer_runner)
            await web.TCPSite(
                peer_runner, config.peer_listener.host, config.peer_listener.port, ssl_context=tls
            ).start()

            def admit_new_cas(conf: GlobalConf) -> None:
                # A CA approved later is accepted at the handshake from then on; a CA no longer
                # approved is refused by the provider pipeline, which checks every certificate
                # against the current configuration (an SSLContext cannot forget a CA).
                tls.load_verify_locations(
                    cadata="".join(
                        c.public_bytes(Encoding.PEM).decode()
                        for c in conf.ca_certificates + conf.intermediate_certificates
                    )
                )

            gateway.globalconf.add_listener(admit_new_cas)
            log.info("listener.started", listener="peer", port=config.peer_listener.port)
        await stop.wait()
    finally:
        await _stop_listeners(runners)
        # After the listeners: the last exchanges' records are written before it stops.
        await gateway.opmon.close()
        await gateway.archiver.close()
        await gateway.timestamper.close()
        await gateway.own_ocsp.close()
        await gateway.globalconf.close()
        await gateway.serverconf.close()
        await gateway.peers.close()
        await gateway.backends.close()
        await gateway.log.close()
        gateway.auditor_queries.close()


def main(config_path: str, *, database_url: str | None = None) -> int:
    """Blocking entry point: run until SIGTERM or SIGINT; 0 on a clean stop, 1 if start-up failed."""
    try:
        config = GatewayConfig.load(Path(config_path), database_url=database_url)
    except ConfigError as exc:
        log.error("gateway.config_invalid", path=config_path, error=str(exc))
        return 1
    return run_until_signalled(
        lambda stop: serve(config, stop=stop),
        name="gateway",
        startup_errors=(
            OSError,
            ValueError,
            RuntimeError,
            ConfigError,
            MessageLogError,
            TokenKeyError,
            InternalTlsError,
        ),
    )
