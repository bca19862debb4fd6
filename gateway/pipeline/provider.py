"""The provider pipeline: a peer's signed request, checked, logged, served, answered.

Steps (the numbers name the log events and step metrics of :mod:`gateway.observability.exchange`):
  1. global configuration is current, and the message log is timestamped in time
  2. the peer's TLS certificate is one registered for a security server, valid now and
     not revoked (the OCSP response the peer sends with the request)
  3. the frame parses, the body matches its signed header, and the signature is the
     client member's, whose sign certificate is not revoked (the OCSP response that
     travels with the signature); the client is hosted by the peer that sent it (or is
     its owner, asking a metadata service); a SOAP body is an X-Road SOAP request whose
     headers are the ones signed
  4. the service is one this server provides, access rights allow this client, and the
     service speaks the request's protocol; or it is a metadata service of a provider
     subsystem hosted here (:mod:`gateway.metadata`), which every client may call
  5. append the request to the message log (durable) -- only then call the backend
  6. call the backend information system; a SOAP backend's answer must echo the
     request's X-Road headers, and goes back with ``xrd:requestHash`` added.  A metadata
     service is answered by this server instead
  7. sign the response, bound to the request by its hash, log it, return it

A SOAP backend receives the client's HTTP body exactly as the client sent it (the
envelope, or the whole multipart message with its attachments), with its Content-Type
and SOAPAction.  Its SOAP Fault is its answer, signed and logged like any other.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import structlog
from cryptography import x509

from adapters.rest.inbound import METHOD_OVERRIDE_HEADERS
from adapters.soap.backend import SoapBackendAnswer
from adapters.soap.inbound import SoapRequest, parse_soap_request
from adapters.soap.mime import Packaging, encode_multipart_related
from adapters.soap.outbound import SOAP_CONTENT_TYPE, render_soap_response
from adapters.soap.response import check_response_consistent, parse_soap_response
from core.canonical import b64, request_digest, response_digest
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import SecurityServerId
from core.messages import MessageError, Protocol, Request, RequestHeader, ResponseHeader, sha512
from gateway.metadata import answer_metadata_call, is_metadata_call, read_metadata_call
from gateway.observability import exchange as trace
from gateway.ocsp import certificate_trust
from gateway.pipeline.records import log_request, log_response
from gateway.runtime import Gateway
from gateway.serverconf.model import PathRefused, ServiceEntry, normalise_request_path
from gateway.transport.frame import FrameError, decode_frame, encode_frame_head, optional_b64, optional_unb64
from trust.certificates import fingerprint, validate_auth_certificate
from trust.errors import CertificateInvalid, TrustError
from trust.globalconf import GlobalConf
from trust.signatures import sign_digest, verify_signature

__all__ = ["handle_exchange", "peer_hosts_client", "read_soap_request", "soap_answer"]

log = structlog.get_logger("xweg.provider")
_ORIGIN = Origin.SERVER_PROXY
# What is answered: status, headers (lower-case names), body.
_Answer = tuple[int, tuple[tuple[str, str], ...], bytes]


async def handle_exchange(
    gateway: Gateway, peer_certificate_der: bytes | None, data: bytes, body: bytes = b""
) -> tuple[bytes, bytes]:
    """One peer's framed request, through steps 1 to 7: the signed response frame's head and body.

    The request frame is ``data`` followed by ``body``; a body read apart from the head
    (:func:`gateway.transport.receive.read_frame`) is used as it is, never copied.  The
    response frame is returned in the same two parts, for the caller to send one after
    the other.
    """
    # (1) global configuration is current, and the message log is timestamped in time
    trace.step(1)
    conf, now = gateway.current_conf(_ORIGIN)
    gateway.check_timestamping(now, _ORIGIN)
    try:
        trust = certificate_trust(conf)
    except TrustError as exc:
        raise XwegError(ErrorCode.CERT_VALIDATION, str(exc), _ORIGIN) from exc

    # (2) who is calling: the certificate must be registered for a security server
    trace.step(2)
    if not peer_certificate_der:
        raise XwegError(ErrorCode.SSL_AUTHENTICATION_FAILED, "no client certificate presented", _ORIGIN)
    peer_certificate = x509.load_der_x509_certificate(peer_certificate_der)
    peer = conf.server_by_fingerprint(fingerprint(peer_certificate))
    if peer is None:
        raise XwegError(
            ErrorCode.SSL_AUTHENTICATION_FAILED,
            f"client certificate {fingerprint(peer_certificate)[:16]}... is not registered "
            "for any security server in global configuration",
            _ORIGIN,
        )
    trace.addresses(client=peer, service=conf.server(gateway.config.server_id))
    # (3) the message is what its signer signed
    trace.step(3)
    try:
        frame = decode_frame(data, body)
        header = RequestHeader.from_dict(frame.metadata["header"])
        signature = frame.metadata["signature"]
        if not isinstance(signature, str):
            raise FrameError("signature must be a string")
        sign_ocsp = optional_unb64(frame.metadata.get("ocsp"))
        auth_ocsp = optional_unb64(frame.metadata.get("auth_ocsp"))
    except (FrameError, MessageError, KeyError, ValueError) as exc:
        raise XwegError(ErrorCode.INVALID_MESSAGE, f"malformed message: {exc}", _ORIGIN) from exc
    trace.identify(header)
    # (2, continued) the peer's auth certificate is valid now and its OCSP response good
    try:
        validate_auth_certificate(peer_certificate, trust, now, ocsp_response=auth_ocsp)
    except CertificateInvalid as exc:
        raise XwegError(
            ErrorCode.SSL_AUTHENTICATION_FAILED, f"security server {peer.id.slash()}: {exc}", _ORIGIN
        ) from exc
    try:
        # A Request holds only a body of its header's size and SHA-512: one hash of the body.
        request = Request(header, frame.body)
    except MessageError:
        raise XwegError(
            ErrorCode.INVALID_SIGNATURE_VALUE,
            "request body does not match the digest in its signed header",
            _ORIGIN,
        ) from None
    digest = request_digest(header)
    try:
        verified = verify_signature(signature, digest, trust, now, ocsp_response=sign_ocsp)
    except CertificateInvalid as exc:
        raise XwegError(ErrorCode.CERT_VALIDATION, f"request signer's certificate: {exc}", _ORIGIN) from exc
    except TrustError as exc:
        raise XwegError(
            ErrorCode.INVALID_SIGNATURE_VALUE, f"request signature does not verify: {exc}", _ORIGIN
        ) from exc
    if verified.member != header.client.member:
        raise XwegError(
            ErrorCode.INVALID_SIGNATURE_VALUE,
            f"request is signed by {verified.member.slash()}, not by client {header.client.member.slash()}",
            _ORIGIN,
        )
    if not peer_hosts_client(conf, peer.id, header):
        raise XwegError(
            ErrorCode.ACCESS_DENIED,
            f"security server {peer.id.slash()} does not host client {header.client}",
            _ORIGIN,
        )
    trace.admitted()  # signed by the client's member, sent by a server hosting it
    # (3, continued) a SOAP body says what its signed header says
    soap = read_soap_request(request) if header.protocol is Protocol.SOAP else None

    # (4) is it ours, is this client allowed, does the service speak this protocol?  A
    # metadata service is answered here, without an access check (X-Road's rule).
    trace.step(4)
    serve: Callable[[], Awaitable[_Answer]]
    if is_metadata_call(header):
        call = read_metadata_call(gateway.serverconf.current(), header, soap)
        serve = functools.partial(answer_metadata_call, gateway, conf, header, soap, call)
    else:
        service = _provided_service(gateway, conf, header)
        serve = functools.partial(_call_backend, gateway, service, request, soap)

    # (5) log before the backend sees anything
    trace.step(5)
    await log_request(gateway, header, frame.body, signature, sign_ocsp, at=now, origin=_ORIGIN)

    # (6) call the backend, or answer the metadata service
    trace.step(6)
    status, headers, answer = await serve()

    # (7) sign, bind to the request, log, answer
    trace.step(7)
    response_header = ResponseHeader(
        message_id=header.message_id,
        request_hash=b64(digest),
        status=status,
        headers=headers,
        body_sha512=sha512(answer),
        body_size=len(answer),
    )
    signer = gateway.signer_for(header.service.member, _ORIGIN)
    response_signature = sign_digest(response_digest(response_header), signer.key, signer.certificate)
    response_ocsp = gateway.own_ocsp.response_for(signer.certificate)
    await log_response(
        gateway,
        header,
        response_header,
        answer,
        response_signature,
        response_ocsp,
        at=gateway.clock.now(),
        origin=_ORIGIN,
    )
    log.info(
        "exchange.completed",
        side="provider",
        message_id=header.message_id,
        client=header.client.slash(),
        service=header.service.slash(),
        peer=peer.id.slash(),
        protocol=header.protocol.value,
        status=status,
    )
    trace.responded(status, len(answer))
    metadata = {
        "header": response_header.to_dict(),
        "signature": response_signature,
        "ocsp": optional_b64(response_ocsp),
    }
    return encode_frame_head(metadata), answer


def peer_hosts_client(conf: GlobalConf, peer: SecurityServerId, header: RequestHeader) -> bool:
    """(3) Whether the security server ``peer`` may send ``header``'s request for its client.

    It may for the clients global configuration says it hosts.  It may also call the
    metadata services in its owner member's name: a security server is a client of its own,
    as in X-Road, where the owner is always one of its server's clients, and asks for WSDLs
    so (``GET /wsdl``, :func:`gateway.pipeline.consumer.handle_wsdl_request`).
    """
    if any(server.id == peer for server in conf.servers_for_client(header.client)):
        return True
    return header.client == peer.owner and is_metadata_call(header)


def _provided_service(gateway: Gateway, conf: GlobalConf, header: RequestHeader) -> ServiceEntry:
    """(4) The service this server provides for ``header``, once the client may call it with this protocol."""
    serverconf = gateway.serverconf.current()
    service = serverconf.service(header.service)
    if service is None or not serverconf.hosts(header.service.provider):
        raise XwegError(ErrorCode.UNKNOWN_SERVICE, f"unknown service {header.service}", _ORIGIN)
    method = path = None
    if header.protocol is Protocol.REST:
        if any(name in METHOD_OVERRIDE_HEADERS for name, _ in header.headers):
            refused = "a method-override header would change the method that access rights were checked for"
            raise XwegError(ErrorCode.INVALID_REQUEST, refused, Origin.CLIENT)
        method = header.method
        try:
            path = normalise_request_path(header.path)
        except PathRefused as exc:
            raise XwegError(
                ErrorCode.INVALID_REQUEST, f"request path refused: {exc}", Origin.CLIENT
            ) from None
    if not serverconf.allows(header.client, header.service, conf.group_members, method=method, path=path):
        raise XwegError(
            ErrorCode.ACCESS_DENIED,
            f"client {header.client} is not allowed to use service {header.service}",
            _ORIGIN,
        )
    if service.protocol is not header.protocol:
        raise XwegError(
            ErrorCode.INVALID_SERVICE_TYPE,
            f"service {header.service} is a {service.protocol.name} service and cannot be called "
            f"with {header.protocol.name}",
            _ORIGIN,
        )
    return service


async def _call_backend(
    gateway: Gateway, service: ServiceEntry, request: Request, soap: SoapRequest | None
) -> _Answer:
    """(6) The backend's answer to ``request``: ``(status, headers, body)``."""
    if soap is None:
        rest = gateway.backends.get(service.timeout_s, verify_tls=service.verify_tls)
        return await rest.call(service.base_url, request)
    soap_backend = gateway.backends.soap(service.timeout_s, verify_tls=service.verify_tls)
    answer = await soap_backend.call(service.base_url, request)
    return soap_answer(soap, answer)


def read_soap_request(request: Request) -> SoapRequest:
    """(3) The SOAP request in a signed message, its X-Road headers the ones its header names.

    The body is parsed as the consumer's server parsed it (a refusal carries the same
    ``Client`` codes); an envelope whose client, service, message id, userId, issue or
    represented party differ from the signed header's, or a header with a REST path or
    query, is ``Server.ServerProxy.InvalidMessage``: access rights and the log go by the
    signed header, the backend by the envelope, so the two must agree.
    """
    header = request.header
    names = [name for name, _ in header.headers]
    # Exactly the headers a SOAP request carries end to end, each once: the backend gets
    # them all, so a second Content-Type (another boundary or 'start') would let it read
    # another envelope than the one checked here.
    if (
        names.count("content-type") != 1
        or names.count("soapaction") > 1
        or set(names) - {"content-type", "soapaction"}
    ):
        raise XwegError(
            ErrorCode.INVALID_MESSAGE,
            "a SOAP message carries one Content-Type, at most one SOAPAction and no other headers",
            _ORIGIN,
        )
    content_type = next(value for name, value in header.headers if name == "content-type")
    soap = parse_soap_request(request.body, content_type=content_type, method=header.method)
    envelope = soap.header
    party = envelope.represented_party.text() if envelope.represented_party is not None else None
    signed = (header.client, header.service, header.message_id, header.user_id, header.issue)
    found = (envelope.client, envelope.service, envelope.message_id, envelope.user_id, envelope.issue)
    if signed != found or header.represented_party != party or header.path or header.query:
        raise XwegError(
            ErrorCode.INVALID_MESSAGE,
            "the SOAP envelope's X-Road headers differ from the message's signed header",
            _ORIGIN,
        )
    return soap


def soap_answer(
    request: SoapRequest, answer: SoapBackendAnswer
) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    """(6) The SOAP backend's answer as it goes back: ``(status, headers, body)``.

    The answer is parsed by the hardened parser; a SOAP Fault is the provider's answer and
    goes back as the backend wrote its envelope, with its status (attachments dropped).
    Any other answer must echo the request's X-Road headers (else
    ``Server.ServerProxy.InconsistentResponse``); it goes back as an envelope with those
    headers, ``xrd:requestHash`` and the backend's body element, packed again as multipart
    with the backend's attachments if it had any.
    Other refusals carry the parser's codes, blamed on this server.
    """
    response = parse_soap_response(answer.body, content_type=answer.content_type, origin=_ORIGIN)
    if response.fault is not None:
        trace.service_fault(response.fault.code, response.fault.string)
        if response.packaging is Packaging.PLAIN:
            return answer.status, (("content-type", response.content_type),), answer.body
        # The fault envelope alone: other parts of a multipart fault would reach the
        # client unchecked (and a first part could look like an answer).
        return answer.status, (("content-type", SOAP_CONTENT_TYPE),), response.soap
    check_response_consistent(request.header, response, origin=_ORIGIN)
    envelope = render_soap_response(request, response.body_xml, origin=_ORIGIN)
    if response.packaging is Packaging.PLAIN:
        return 200, (("content-type", SOAP_CONTENT_TYPE),), envelope
    content_type, body = encode_multipart_related(
        envelope, response.attachments, packaging=response.packaging
    )
    return 200, (("content-type", content_type),), body
