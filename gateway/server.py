"""One security server per process: the client listener, the peer listener, their lifecycle.

The client listener (plain HTTP, for the organisation's information systems) speaks
X-Road REST r1 at ``/r1/...``, answers directory look-ups from the verified global
configuration at ``/directory/v1/...`` (:mod:`gateway.directoryapi`), X-Road's
``GET /listClients`` from the same configuration and ``GET /wsdl?...`` with a ``getWsdl``
exchange (:mod:`gateway.metadata`), serves X-Road's schemas that WSDLs import at
``/xsd/{name}`` (so clients without internet access can build themselves), and takes
X-Road SOAP 4.0 requests as X-Road's client proxy does: at every path that none of its
routes takes (see :func:`is_soap_request`), and at those two; the peer listener (mutual
TLS, for other security servers) accepts framed, signed messages.  Every failure leaves
through one renderer per protocol: an X-Road REST error body, or for a SOAP client a SOAP
fault, each with a correlation id that is also in the server's log.
"""

from __future__ import annotations

import asyncio
import base64
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

from adapters.rest.backend import new_backend_session
from adapters.rest.outbound import render_rest_error
from adapters.soap.metadata import render_list_clients
from adapters.soap.xsd import relocate_schemas, schema_bytes
from core.clock import Clock, SystemClock
from core.errors import ErrorCode, Origin, XwegError
from gateway.auditapi import AuditQueryLog, make_auditor_app
from gateway.clientauth import ClientConnection
from gateway.confclient.trusted import TrustedGlobalConf
from gateway.confclient.updater import GlobalConfUpdater
from gateway.config import ConfigError, GatewayConfig
from gateway.directoryapi import make_directory_app
from gateway.messagelog.archive import Archiver
from gateway.messagelog.errors import MessageLogError
from gateway.messagelog.evidence import build_evidence
from gateway.messagelog.record import BodyPolicy
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.timestamper import TimestampClient, Timestamper, TsaEndpoint
from gateway.messagelog.writer import MessageLogWriter
from gateway.metadata import list_clients
from gateway.ocsp import OwnOcspResponses
from gateway.pipeline.consumer import (
    PassThroughError,
    handle_rest_request,
    handle_soap_request,
    handle_wsdl_request,
    pass_through_soap_fault,
    soap_fault_answer,
)
from gateway.pipeline.provider import handle_exchange
from gateway.runtime import BackendPool, Gateway, load_signers
from gateway.serverconf.live import LiveServerConf
from gateway.tokens import auditor_token_key_path, load_or_create_token_key
from gateway.transport.client import EXCHANGE_PATH, OCSP_PATH, PeerClient
from gateway.transport.frame import CONTENT_TYPE, MAX_METADATA_BYTES
from gateway.transport.tls import server_context
from trust.anchor import load_anchor
from trust.globalconf import GlobalConf
from trust.keys import load_certificates
from trust.service.runner import run_until_signalled
from trust.signatures import sign_digest

__all__ = ["serve", "main", "build_gateway", "build_client_app", "build_peer_app", "is_soap_request"]

log = structlog.get_logger("xweg.gateway")
GATEWAY_KEY = web.AppKey("gateway", Gateway)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# SOAP 1.1's media types: a request carrying one comes from a SOAP client, whatever its method.
_SOAP_MEDIA_TYPES = frozenset({"text/xml", "multipart/related"})


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


@web.middleware
async def _soap_dispatch(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_soap_request(request):
        return await _soap(request)
    return await handler(request)


async def _soap(request: web.Request) -> web.StreamResponse:
    """One X-Road SOAP request; every answer, every failure included, is SOAP."""
    gateway = request.app[GATEWAY_KEY]
    try:
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
    return web.Response(status=answer.status, headers=CIMultiDict(answer.headers), body=answer.body)


def client_connection(request: web.Request) -> ClientConnection:
    """What the client listener saw of how ``request`` arrived: TLS, and which client certificate."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        return ClientConnection(tls=False)
    der = ssl_object.getpeercert(binary_form=True)
    return ClientConnection(
        tls=True, certificate_fingerprint=hashlib.sha256(der).hexdigest() if der else None
    )


async def _read_body(request: web.Request, limit: int, origin: Origin) -> bytes:
    """Read at most ``limit`` bytes of body; more is a 413, not a half-read message."""
    too_large = XwegError(ErrorCode.REQUEST_TOO_LARGE, f"request body exceeds {limit} bytes", origin)
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _rest(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY_KEY]
    body = await _read_body(request, gateway.config.limits.max_body_bytes, Origin.CLIENT)
    answer = await handle_rest_request(
        gateway,
        request.method,
        request.raw_path,
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
        body,
        connection=client_connection(request),
    )
    return web.Response(status=answer.status, headers=CIMultiDict(answer.headers), body=answer.body)


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
    gateway = request.app[GATEWAY_KEY]
    conf = gateway.globalconf.current()
    stamping = gateway.timestamper.status()
    body = {
        "server": gateway.config.server_id.slash(),
        "globalconf_serial": conf.serial if conf else None,
        "globalconf_expires_at": conf.expires_at.isoformat() if conf else None,
        "ready": conf is not None,
        "ocsp_ready": gateway.own_ocsp.response_for(gateway.auth_certificate) is not None,
        "untimestamped_records": stamping.pending,
        "last_timestamp_at": stamping.last_success_at.isoformat() if stamping.last_success_at else None,
        "last_timestamp_error": stamping.last_error,
        "last_archive_error": gateway.archiver.last_error,
    }
    return web.json_response(body, status=200 if conf is not None else 503)


async def _exchange(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY_KEY]
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    limit = gateway.config.limits.max_body_bytes + MAX_METADATA_BYTES + 64
    data = await _read_body(request, limit, Origin.SERVER_PROXY)
    frame = await handle_exchange(gateway, der, data)
    return web.Response(status=200, body=frame, headers={"Content-Type": CONTENT_TYPE})


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
        middlewares=[_soap_dispatch, _error_middleware(Origin.CLIENT_PROXY)],
        client_max_size=gateway.config.limits.max_body_bytes + 1,
    )
    app[GATEWAY_KEY] = gateway
    app.router.add_get("/healthz", _healthz)
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

    async def evidence(message_id: str) -> bytes:
        def build() -> bytes:
            with MessageLogStore.open_readonly(config.message_log_path) as store:
                return build_evidence(store, message_id, now=gateway.clock.now())

        return await asyncio.to_thread(build)

    return make_auditor_app(
        log_path=config.message_log_path,
        token_public_key=gateway.auditor_token_key.public_key(),
        issuer=config.server_id.slash(),
        clock=gateway.clock,
        audit_log=gateway.auditor_queries,
        evidence=evidence,
    )


def build_peer_app(gateway: Gateway) -> web.Application:
    app = web.Application(
        middlewares=[_error_middleware(Origin.SERVER_PROXY)],
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


def _record_trust(path: Path, values: dict[str, str], conf: GlobalConf, document: bytes) -> None:
    # A connection of its own: the writer's belongs to the writer's thread.
    store = MessageLogStore.open(path)
    try:
        for key, value in values.items():
            store.set_meta(key, value)
        store.record_globalconf(conf.serial, document, conf.generated_at, conf.expires_at)
    finally:
        store.close()


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
    anchor = load_anchor(config.anchor_path)
    policy = config.messagelog
    store = MessageLogStore.open(
        config.message_log_path,
        # Only the writer's connection appends, so this is the one place the body policy goes.
        body_policy=BodyPolicy(
            inline_limit_bytes=policy.inline_body_limit_bytes,
            omit_for=frozenset(client.slash() for client in policy.omit_bodies_for),
        ),
    )
    store.set_meta("server_id", config.server_id.slash())
    writer = MessageLogWriter(store)
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
            asyncio.to_thread(_record_trust, config.message_log_path, meta, conf, document)
        )
        _background.add(task)
        task.add_done_callback(_finished_in_background)

    updater = GlobalConfUpdater(
        TrustedGlobalConf(anchor), config.globalconf_path, config.globalconf, clock, on_update=remember_trust
    )
    peers = PeerClient(
        config.auth_certificate_path,
        config.auth_key_path,
        config.key_passphrase,
        timeout_s=config.limits.peer_timeout_s,
        max_response_bytes=config.limits.max_body_bytes + MAX_METADATA_BYTES + 64,
    )
    backends = BackendPool(new_backend_session(), config.limits.max_body_bytes)
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
        config.message_log_path,
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
    return Gateway(
        config=config,
        clock=clock,
        globalconf=updater,
        signers=signers,
        log=writer,
        peers=peers,
        backends=backends,
        serverconf=LiveServerConf(config.seed_snapshot()),
        auth_certificate=auth_certificate,
        own_ocsp=own_ocsp,
        timestamper=timestamper,
        auditor_token_key=load_or_create_token_key(
            auditor_token_key_path(config.data_dir), config.key_passphrase
        ),
        auditor_queries=AuditQueryLog.open(config.data_dir / "auditor-queries.db"),
        archiver=Archiver(
            config.message_log_path,
            config.archive_dir,
            clock=clock,
            interval_s=config.archive.interval_s,
            retention_s=config.archive.retention_s,
        ),
    )


async def serve(config: GatewayConfig, clock: Clock | None = None, stop: asyncio.Event | None = None) -> None:
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    gateway = await build_gateway(config, clock)
    runners: list[web.AppRunner] = []
    try:
        # Inside the try: whatever fails to start, what did start is closed below.
        await gateway.globalconf.start()
        await gateway.own_ocsp.start()
        await gateway.timestamper.start()
        await gateway.archiver.start()
        client_runner = web.AppRunner(build_client_app(gateway), access_log=None)
        await client_runner.setup()
        runners.append(client_runner)
        await web.TCPSite(client_runner, config.client_listener.host, config.client_listener.port).start()
        log.info("listener.started", listener="client", port=config.client_listener.port)

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
            peer_runner = web.AppRunner(build_peer_app(gateway), access_log=None)
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
        for runner in reversed(runners):
            await runner.cleanup()
        await gateway.archiver.close()
        await gateway.timestamper.close()
        await gateway.own_ocsp.close()
        await gateway.globalconf.close()
        await gateway.peers.close()
        await gateway.backends.close()
        await gateway.log.close()
        gateway.auditor_queries.close()


def main(config_path: str) -> int:
    """Blocking entry point: run until SIGTERM or SIGINT; 0 on a clean stop, 1 if start-up failed."""
    try:
        config = GatewayConfig.load(Path(config_path))
    except ConfigError as exc:
        log.error("gateway.config_invalid", path=config_path, error=str(exc))
        return 1
    return run_until_signalled(
        lambda stop: serve(config, stop=stop),
        name="gateway",
        startup_errors=(OSError, ValueError, RuntimeError, ConfigError, MessageLogError),
    )
