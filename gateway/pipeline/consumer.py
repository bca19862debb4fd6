"""The consumer pipeline: an information system's request, out to the provider and back.

Steps (the numbers appear in log events):
  1. global configuration is current
  2. the request parses (X-Road REST r1) and the client is one this server hosts
  3. the provider is known and some security server hosts it
  4. sign the request with the client member's sign key
  5. append the request to the message log (durable) -- only then send it
  6. send over mutual TLS to the provider's security server
  7. the response is for this request (message id, request hash) and its signature is
     the provider member's
  8. append the response to the message log, then answer the information system
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import structlog
from cryptography import x509

from adapters.rest.inbound import parse_rest_request
from adapters.rest.outbound import response_headers_for_client
from core.canonical import b64, canonical_json, request_digest, response_digest
from core.errors import ErrorCode, Origin, XwegError
from core.messages import MessageError, Request, ResponseHeader, sha512
from gateway.messagelog.record import Direction, NewRecord
from gateway.messagelog.writer import LogWriteError
from gateway.runtime import Gateway
from gateway.transport.frame import FrameError, decode_frame, encode_frame
from trust.errors import TrustError
from trust.signatures import sign_digest, verify_signature

__all__ = ["ClientAnswer", "PassThroughError", "handle_rest_request"]

log = structlog.get_logger("xweg.consumer")
_ORIGIN = Origin.CLIENT_PROXY


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


async def append_to_log(gateway: Gateway, record: NewRecord, origin: Origin) -> None:
    try:
        await gateway.log.append(record)
    except LogWriteError as exc:
        raise XwegError(
            ErrorCode.LOGGING_FAILED, f"the message log could not be written: {exc}", origin
        ) from exc


async def handle_rest_request(
    gateway: Gateway, method: str, raw_target: str, headers: list[tuple[str, str]], body: bytes
) -> ClientAnswer:
    # (1) global configuration is current
    conf, now = gateway.current_conf(_ORIGIN)

    # (2) parse; the client must be registered and hosted here
    request = parse_rest_request(method, raw_target, headers, body, new_message_id=lambda: str(uuid.uuid4()))
    header = request.header
    client = header.client
    if not conf.has_client(client):
        raise XwegError(
            ErrorCode.UNKNOWN_MEMBER,
            f"client {client} is not registered in global configuration",
            _ORIGIN,
        )
    if client not in gateway.config.clients or all(
        s.id != gateway.config.server_id for s in conf.servers_for_client(client)
    ):
        raise XwegError(
            ErrorCode.INVALID_CLIENT_IDENTIFIER,
            f"client {client} is not hosted on security server {gateway.config.server_id.slash()}",
            Origin.CLIENT,
        )

    # (3) find the provider's security server
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
    peer = servers[0]

    # (4) sign
    digest = request_digest(header)
    signer = gateway.signer_for(client.member, _ORIGIN)
    signature = sign_digest(digest, signer.key, signer.certificate)

    # (5) log before anything leaves this server
    await append_to_log(
        gateway,
        NewRecord(
            direction=Direction.REQUEST,
            message_id=header.message_id,
            client=client.slash(),
            service=header.service.slash(),
            logged_at=now,
            header=canonical_json(header.to_dict()),
            body=request.body,
            signature=signature,
        ),
        _ORIGIN,
    )

    # (6) send
    frame = encode_frame({"header": header.to_dict(), "signature": signature}, request.body)
    answer = await gateway.peers.send(peer, conf.approved_cas, frame)
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
    request_hash = b64(digest)
    response_header, response_body, response_signature = _verify_response(
        request, request_hash, answer.body, gateway.clock.now(), conf.approved_cas
    )

    # (8) log the response, then answer
    await append_to_log(
        gateway,
        NewRecord(
            direction=Direction.RESPONSE,
            message_id=header.message_id,
            client=client.slash(),
            service=header.service.slash(),
            logged_at=gateway.clock.now(),
            header=canonical_json(response_header.to_dict()),
            body=response_body,
            signature=response_signature,
            status=response_header.status,
        ),
        _ORIGIN,
    )
    log.info(
        "exchange.completed",
        side="consumer",
        message_id=header.message_id,
        client=client.slash(),
        service=header.service.slash(),
        status=response_header.status,
    )
    return ClientAnswer(
        response_header.status,
        response_headers_for_client(header, response_header, request_hash=request_hash),
        response_body,
    )


def _verify_response(
    request: Request,
    request_hash: str,
    data: bytes,
    now: dt.datetime,
    cas: tuple[x509.Certificate, ...],
) -> tuple[ResponseHeader, bytes, str]:
    provider_member = request.header.service.member
    try:
        frame = decode_frame(data)
        response_header = ResponseHeader.from_dict(frame.metadata["header"])
        signature = frame.metadata["signature"]
        if not isinstance(signature, str):
            raise FrameError("signature must be a string")
    except (FrameError, MessageError, KeyError) as exc:
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
        verified = verify_signature(signature, response_digest(response_header), cas, now)
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
    return response_header, frame.body, signature
