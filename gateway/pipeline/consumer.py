"""The consumer pipeline: an information system's request, out to the provider and back.

Steps (the numbers name the log events and step metrics of :mod:`gateway.observability.exchange`):
  1. global configuration is current
  2. the request parses (X-Road REST r1, or X-Road SOAP 4.0) and the client is one this
     server hosts
  3. the provider is known and some security server hosts it; that server's auth
     certificate is valid and not revoked (its OCSP response, offered by the peer)
  4. sign the request with the client member's sign key
  5. append the request to the message log (durable) -- only then send it
  6. send over mutual TLS to the provider's security server
  7. the response is for this request (message id, request hash) and its signature is
     the provider member's; a SOAP response also carries the ``xrd:requestHash`` of the
     client's SOAP bytes and echoes the request's X-Road headers
  8. append the response to the message log, then answer the information system

Both protocols travel the same way: a SOAP request's body is the HTTP body exactly as
the client sent it (the envelope, or the whole multipart message), with its Content-Type
and SOAPAction as the end-to-end headers, so that signatures and log records cover those
bytes; the SOAP answer goes back to the client exactly as the provider signed it.

Metadata calls (``listMethods``, ``getWsdl``, ...) are ordinary requests here; the
provider's server answers them.  ``GET /wsdl`` is this server's own ``getWsdl`` request,
made in its owner member's name (:func:`handle_wsdl_request`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from cryptography import x509

from adapters.rest.inbound import parse_rest_request
from adapters.rest.outbound import response_headers_for_client
from adapters.soap.envelope import XRoadHeader
from adapters.soap.inbound import SoapRequest, parse_soap_request, to_core_request
from adapters.soap.metadata import (
    WsdlRequest,
    render_get_wsdl_request,
    wsdl_of_get_wsdl_response,
    wsdl_query_service,
)
from adapters.soap.outbound import FAULT_HTTP_STATUS, SOAP_CONTENT_TYPE, fault_envelope, render_soap_fault
from adapters.soap.response import (
    SoapResponse,
    check_request_hash,
    check_response_consistent,
    parse_soap_response,
)
from core.canonical import b64, request_digest, response_digest
from core.errors import ErrorCode, Origin, XwegError
from core.messages import MessageError, Request, ResponseHeader, sha512
from core.metadata import GET_WSDL
from gateway.clientauth import ClientConnection, authenticate_client
from gateway.observability import exchange as trace
from gateway.ocsp import certificate_trust
from gateway.pipeline.records import log_request, log_response
from gateway.runtime import Gateway
from gateway.serverconf.model import PathRefused, normalise_request_path
from gateway.transport.frame import FrameError, decode_frame, encode_frame_head, optional_b64, optional_unb64
from trust.certificates import CertificateTrust, fingerprint, validate_auth_certificate
from trust.errors import CertificateInvalid, TrustError
from trust.globalconf import GlobalConf, SecurityServerInfo
from trust.signatures import sign_digest, verify_signature

__all__ = [
    "ClientAnswer",
    "PassThroughError",
    "choose_peer",
    "handle_rest_request",
    "handle_soap_request",
    "handle_wsdl_request",
    "WSDL_REQUEST_USER_ID",
    "WSDL_CONTENT_TYPE",
    "check_soap_answer",
    "soap_fault_answer",
    "pass_through_soap_fault",
]

log = structlog.get_logger("xweg.consumer")
_ORIGIN = Origin.CLIENT_PROXY
# The longest error body of a provider's server read for a SOAP fault's code, message and detail.
_MAX_PEER_ERROR_BYTES = 64 * 1024
#: ``xrd:userId`` of the getWsdl calls this server makes for ``GET /wsdl``, as X-Road's.
WSDL_REQUEST_USER_ID = "wsdl-request"
#: Content-Type of the WSDL answered to ``GET /wsdl`` (WSDLs are read as UTF-8 only).
WSDL_CONTENT_TYPE = "text/xml; charset=UTF-8"


@dataclass(frozen=True, slots=True)
class ClientAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class PassThroughError(Exception):
    """An X-Road error produced by the provider's security server, returned to the client as is."""

    def __init__(self, status: int, fault_code: str, body: bytes) -> None:
        super().__init__(fault_code)
        self.status = status
        self.fault_code = fault_code
        self.body = body


def choose_peer(servers: tuple[SecurityServerInfo, ...]) -> SecurityServerInfo:
    """The server to send to: the first not in maintenance mode, else the first.

    A server in maintenance is published so that consumers avoid it while another
    server hosts the same provider; when none other does, it is still tried.
    """
    return next((server for server in servers if not server.maintenance_mode), servers[0])


async def handle_rest_request(
    gateway: Gateway,
    method: str,
    raw_target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    connection: ClientConnection,
) -> ClientAnswer:
    """Carry one X-Road REST r1 request to the provider and return its answer.

    ``connection``: how the information system connected, for step 2.
    """
    # (1) global configuration is current, and the message log is timestamped in time
    trace.step(1)
    conf, now, trust = _current(gateway)
    # (2) parse
    trace.step(2)
    request = parse_rest_request(method, raw_target, headers, body, new_message_id=lambda: str(uuid.uuid4()))
    trace.identify(request.header)
    try:
        # Access rights match the decoded path: refuse here what could be read two ways.
        normalise_request_path(request.header.path)
    except PathRefused as exc:
        raise XwegError(ErrorCode.INVALID_REQUEST, f"request path refused: {exc}", Origin.CLIENT) from None
    exchanged = await _exchange(gateway, request, conf, now, trust, connection=connection)
    return ClientAnswer(
        exchanged.response.status,
        response_headers_for_client(request.header, exchanged.response, request_hash=exchanged.request_hash),
        exchanged.body,
    )


async def handle_soap_request(
    gateway: Gateway,
    method: str,
    body: bytes,
    *,
    content_type: str | None,
    soap_action: str | None,
    connection: ClientConnection,
) -> ClientAnswer:
    """Carry one X-Road SOAP 4.0 request to the provider and return its answer.

    ``body`` is the HTTP body as received, ``content_type`` and ``soap_action`` the
    request's ``Content-Type`` and ``SOAPAction`` headers (``None``: not sent).  The answer
    is the provider's SOAP response (or the backend's SOAP Fault) exactly as the provider
    signed it.  Failures raise :class:`XwegError` or :class:`PassThroughError`; rendering
    them as SOAP faults is the caller's (see :func:`soap_fault_answer` and
    :func:`pass_through_soap_fault`).
    """
    # (1) global configuration is current, and the message log is timestamped in time
    trace.step(1)
    conf, now, trust = _current(gateway)
    # (2) parse: hardened XML, X-Road headers validated, the bytes kept as sent
    trace.step(2)
    soap = parse_soap_request(body, content_type=content_type, method=method)
    request = to_core_request(soap, soap_action=soap_action)
    trace.identify(request.header)
    exchanged = await _exchange(
        gateway,
        request,
        conf,
        now,
        trust,
        check=lambda header, data: check_soap_answer(soap, header, data),
        connection=connection,
    )
    return ClientAnswer(
        exchanged.response.status,
        [("Content-Type", _content_type(exchanged.response))],
        exchanged.body,
    )


async def handle_wsdl_request(gateway: Gateway, query: str) -> ClientAnswer:
    """X-Road's WSDL over HTTP GET: ask the provider with ``getWsdl``, answer the masked WSDL.

    ``query`` is the query string of ``GET /wsdl?xRoadInstance=..&memberClass=..
    &memberCode=..&subsystemCode=..&serviceCode=..[&version=..]``.  As X-Road's client
    proxy does, this server asks in its owner member's name (the request names no client)
    with the ``xrd:userId`` ``wsdl-request``: an ordinary ``getWsdl`` exchange to the
    provider's server, signed, logged and checked like any other.  The answer is the WSDL
    the provider's server sent, byte for byte, as ``text/xml``.  Raises :class:`XwegError`
    (``Client.InvalidRequest`` or ``Client.InvalidServiceIdentifier`` for a query naming
    no service, and every code of an exchange) or :class:`PassThroughError`.
    """
    # (1) global configuration is current, and the message log is timestamped in time
    trace.step(1)
    conf, now, trust = _current(gateway)
    # (2) the request: a getWsdl call for the service the query names
    trace.step(2)
    service = wsdl_query_service(query, origin=Origin.CLIENT)
    header = XRoadHeader(
        client=gateway.config.server_id.owner,
        service=service.provider.service(GET_WSDL),
        message_id=str(uuid.uuid4()),
        user_id=WSDL_REQUEST_USER_ID,
    )
    envelope = render_get_wsdl_request(header, WsdlRequest(service.service_code, service.service_version))
    soap = parse_soap_request(envelope, content_type=SOAP_CONTENT_TYPE)
    request = to_core_request(soap)
    trace.identify(request.header)
    answers: list[SoapResponse] = []
    await _exchange(
        gateway,
        request,
        conf,
        now,
        trust,
        check=lambda header, data: answers.append(check_soap_answer(soap, header, data)),
        on_own_behalf=True,
    )
    wsdl = wsdl_of_get_wsdl_response(answers[0], origin=_ORIGIN)
    return ClientAnswer(200, [("Content-Type", WSDL_CONTENT_TYPE)], wsdl)


def check_soap_answer(request: SoapRequest, header: ResponseHeader, body: bytes) -> SoapResponse:
    """(7) A SOAP answer is a SOAP message, bound to the client's bytes and echoing its headers.

    Returns the answer as read.
    Raises :class:`XwegError` blamed on this server (``Server.ClientProxy``): the packaging,
    XML and envelope codes of :func:`adapters.soap.response.parse_soap_response`, and
    ``InconsistentResponse`` when ``xrd:requestHash`` is missing or not the SHA-512 of the
    request's SOAP bytes, or a header differs from the request's.  A SOAP Fault (the
    backend's own answer) is not checked further.
    """
    response = parse_soap_response(body, content_type=_content_type(header), origin=_ORIGIN)
    check_request_hash(request, response, origin=_ORIGIN)
    check_response_consistent(request.header, response, origin=_ORIGIN)
    if response.fault is not None:
        trace.service_fault(response.fault.code, response.fault.string)
    return response


def soap_fault_answer(error: XwegError) -> ClientAnswer:
    """An exchange-layer failure as the SOAP fault a SOAP client reads."""
    status, headers, body = render_soap_fault(error)
    return ClientAnswer(status, headers, body)


def pass_through_soap_fault(error: PassThroughError) -> ClientAnswer:
    """The provider's server's error, rendered as a SOAP fault with its code, message and detail.

    The provider's server reports errors as X-Road REST error bodies (``type``,
    ``message``, ``detail``: its correlation id); a SOAP client gets the same three as
    ``faultcode``, ``faultstring`` and ``detail/faultDetail``.
    """
    message = f"the provider's security server answered {error.fault_code}"
    detail: str | None = None
    try:
        data = json.loads(error.body[:_MAX_PEER_ERROR_BYTES].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("message"), str):
            message = data["message"]
        if isinstance(data.get("detail"), str):
            detail = data["detail"]
    body = fault_envelope(error.fault_code, message, detail)
    return ClientAnswer(FAULT_HTTP_STATUS, [("Content-Type", SOAP_CONTENT_TYPE)], body)


def _content_type(header: ResponseHeader) -> str:
    return next((value for name, value in header.headers if name == "content-type"), "")


def _current(gateway: Gateway) -> tuple[GlobalConf, dt.datetime, CertificateTrust]:
    """(1) The configuration to act on, the time of this exchange, and the trust it implies."""
    conf, now = gateway.current_conf(_ORIGIN)
    gateway.check_timestamping(now, _ORIGIN)
    try:
        trust = certificate_trust(conf)
    except TrustError as exc:
        raise XwegError(ErrorCode.CERT_VALIDATION, str(exc), _ORIGIN) from exc
    return conf, now, trust


@dataclass(frozen=True, slots=True)
class _Exchanged:
    """A verified and logged answer: its signed header, its body, and the request hash it names."""

    request_hash: str
    response: ResponseHeader
    body: bytes


async def _exchange(
    gateway: Gateway,
    request: Request,
    conf: GlobalConf,
    now: dt.datetime,
    trust: CertificateTrust,
    *,
    check: Callable[[ResponseHeader, bytes], object] | None = None,
    connection: ClientConnection | None = None,
    on_own_behalf: bool = False,
) -> _Exchanged:
    """Steps 2 (hosting) to 8 for a parsed request; ``check`` adds the protocol's own step 7.

    ``connection``: how the information system connected; ``on_own_behalf``: this server
    asks in its owner member's name (``GET /wsdl``), not for a client of its information
    systems, and there is no connection to check.
    """
    header = request.header
    # (2, continued) the client must be registered and hosted here
    client = header.client
    if not conf.has_client(client):
        raise XwegError(
            ErrorCode.UNKNOWN_MEMBER,
            f"client {client} is not registered in global configuration",
            _ORIGIN,
        )
    if on_own_behalf:
        if client != gateway.config.server_id.owner:
            raise ValueError("a server asks on its own behalf in its owner's name only")
    else:
        entry = gateway.serverconf.current().client(client)
        if entry is None or all(s.id != gateway.config.server_id for s in conf.servers_for_client(client)):
            raise XwegError(
                ErrorCode.INVALID_CLIENT_IDENTIFIER,
                f"client {client} is not hosted on security server {gateway.config.server_id.slash()}",
                Origin.CLIENT,
            )
        if connection is None:
            raise ValueError("a request for a client is checked against its connection")
        authenticate_client(
            entry,
            connection,
            token_key=gateway.client_token_key.public_key(),
            server_id=gateway.config.server_id,
            now=now,
        )
    trace.admitted()

    # (3) find the provider's security server (one not in maintenance, when there is one)
    trace.step(3)
    provider = header.service.provider
    if not conf.has_client(provider):
        raise XwegError(
            ErrorCode.UNKNOWN_MEMBER,
            f"service provider {provider} is not registered in global configuration",
            _ORIGIN,
        )
    servers = conf.servers_for_client(provider)
    if not servers:
        raise XwegError(
            ErrorCode.UNKNOWN_SERVICE,
            f"no security server hosts service provider {provider}",
            _ORIGIN,
        )
    peer = choose_peer(servers)
    trace.addresses(client=conf.server(gateway.config.server_id), service=peer)
    cas = conf.ca_certificates + conf.intermediate_certificates
    peer_certificate = await _check_peer_certificate(gateway, peer, cas, trust, now, conf.ocsp_freshness_s)

    # (4) sign; the signer's OCSP response travels with the signature
    trace.step(4)
    digest = request_digest(header)
    signer = gateway.signer_for(client.member, _ORIGIN)
    signature = sign_digest(digest, signer.key, signer.certificate)
    sign_ocsp = gateway.own_ocsp.response_for(signer.certificate)

    # (5) log before anything leaves this server
    trace.step(5)
    await log_request(gateway, header, request.body, signature, sign_ocsp, at=now, origin=_ORIGIN)

    # (6) send
    trace.step(6)
    metadata = {
        "header": header.to_dict(),
        "signature": signature,
        "ocsp": optional_b64(sign_ocsp),
        "auth_ocsp": optional_b64(gateway.own_ocsp.response_for(gateway.auth_certificate)),
    }
    answer = await gateway.peers.send(
        peer, cas, encode_frame_head(metadata), request.body, pin=fingerprint(peer_certificate)
    )
    if answer.status != 200:
        fault = answer.headers.get("X-Road-Error")
        if fault:
            raise PassThroughError(answer.status, fault, answer.body)
        raise XwegError(
            ErrorCode.INCONSISTENT_RESPONSE,
            f"security server {peer.id.slash()} answered HTTP {answer.status} without an X-Road error",
            _ORIGIN,
        )

    # (7) the response answers this request and is signed by the provider member
    trace.step(7)
    request_hash = b64(digest)
    response_header, response_body, response_signature, response_ocsp = _verify_response(
        request, request_hash, answer.head, answer.body, gateway.clock.now(), trust
    )
    if check is not None:
        check(response_header, response_body)

    # (8) log the response, then answer
    trace.step(8)
    await log_response(
        gateway,
        header,
        response_header,
        response_body,
        response_signature,
        response_ocsp,
        at=gateway.clock.now(),
        origin=_ORIGIN,
    )
    log.info(
        "exchange.completed",
        side="consumer",
        protocol=header.protocol.value,
        message_id=header.message_id,
        client=client.slash(),
        service=header.service.slash(),
        status=response_header.status,
    )
    trace.responded(response_header.status, len(response_body))
    return _Exchanged(request_hash, response_header, response_body)


def _verify_response(
    request: Request,
    request_hash: str,
    head: bytes,
    body: bytes,
    now: dt.datetime,
    trust: CertificateTrust,
) -> tuple[ResponseHeader, bytes, str, bytes | None]:
    """(7) The response frame ``head`` + ``body``, checked; its body is ``body`` itself when the
    two were read apart."""
    provider_member = request.header.service.member
    try:
        frame = decode_frame(head, body)
        response_header = ResponseHeader.from_dict(frame.metadata["header"])
        signature = frame.metadata["signature"]
        if not isinstance(signature, str):
            raise FrameError("signature must be a string")
        ocsp = optional_unb64(frame.metadata.get("ocsp"))
    except (FrameError, MessageError, KeyError, ValueError) as exc:
        raise XwegError(
            ErrorCode.INVALID_MESSAGE, f"malformed response from the provider's server: {exc}", _ORIGIN
        ) from exc
    if response_header.message_id != request.header.message_id:
        raise XwegError(
            ErrorCode.INCONSISTENT_RESPONSE,
            f"response is for message {response_header.message_id}, not {request.header.message_id}",
            _ORIGIN,
        )
    if response_header.request_hash != request_hash:
        raise XwegError(
            ErrorCode.INCONSISTENT_RESPONSE,
            "response's request hash does not match the request this server sent",
            _ORIGIN,
        )
    if len(frame.body) != response_header.body_size or sha512(frame.body) != response_header.body_sha512:
        raise XwegError(
            ErrorCode.INVALID_SIGNATURE_VALUE,
            "response body does not match the digest in its signed header",
            _ORIGIN,
        )
    try:
        verified = verify_signature(
            signature, response_digest(response_header), trust, now, ocsp_response=ocsp
        )
    except CertificateInvalid as exc:
        raise XwegError(ErrorCode.CERT_VALIDATION, f"response signer's certificate: {exc}", _ORIGIN) from exc
    except TrustError as exc:
        raise XwegError(
            ErrorCode.INVALID_SIGNATURE_VALUE, f"response signature does not verify: {exc}", _ORIGIN
        ) from exc
    if verified.member != provider_member:
        raise XwegError(
            ErrorCode.INVALID_SIGNATURE_VALUE,
            f"response is signed by {verified.member.slash()}, not by provider {provider_member.slash()}",
            _ORIGIN,
        )
    return response_header, frame.body, signature, ocsp


async def _check_peer_certificate(
    gateway: Gateway,
    peer: SecurityServerInfo,
    cas: tuple[x509.Certificate, ...],
    trust: CertificateTrust,
    now: dt.datetime,
    freshness_s: int,
) -> x509.Certificate:
    """(3) The provider's server must show a valid, unrevoked auth certificate before we send.

    Returns that certificate: the message then goes only over connections pinned to it.
    """
    credentials = gateway.peers.cached_credentials(peer)
    # Fetch again well before the freshness limit, so a valid peer is never refused for staleness.
    if credentials is None or (now - credentials.fetched_at).total_seconds() > freshness_s / 4:
        credentials = await gateway.peers.fetch_credentials(peer, cas, now)
        fetched = True
    else:
        fetched = False
    while True:
        try:
            validate_auth_certificate(
                credentials.certificate, trust, now, ocsp_response=credentials.ocsp_response
            )
            return credentials.certificate
        except CertificateInvalid as exc:
            if fetched:
                gateway.peers.forget_credentials(peer)
                raise XwegError(
                    ErrorCode.SSL_AUTHENTICATION_FAILED,
                    f"security server {peer.id.slash()}: {exc}",
                    _ORIGIN,
                ) from exc
        credentials = await gateway.peers.fetch_credentials(peer, cas, now)
        fetched = True
