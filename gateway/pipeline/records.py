"""Writing an exchange's records to the message log, for both pipelines.

A request record and a response record are made the same way on the consumer's and
the provider's side; only who signed them differs.  Appending is durable before it
returns, and each stored record is handed to the timestamper.
"""

from __future__ import annotations

import datetime as dt

from core.canonical import canonical_json
from core.errors import ErrorCode, Origin, XwegError
from core.messages import RequestHeader, ResponseHeader
from gateway.messagelog.record import Direction, NewRecord
from gateway.messagelog.writer import LogWriteError
from gateway.runtime import Gateway

__all__ = ["append_to_log", "log_request", "log_response"]


async def append_to_log(gateway: Gateway, record: NewRecord, origin: Origin) -> None:
    try:
        stored = await gateway.log.append(record)
    except LogWriteError as exc:
        raise XwegError(
            ErrorCode.LOGGING_FAILED, f"the message log could not be written: {exc}", origin
        ) from exc
    gateway.timestamper.note_appended(stored)


async def log_request(
    gateway: Gateway,
    header: RequestHeader,
    body: bytes,
    signature: str,
    ocsp: bytes | None,
    *,
    at: dt.datetime,
    origin: Origin,
) -> None:
    """Append the request record: the signed header, the body, the signature and its OCSP response."""
    await append_to_log(
        gateway,
        NewRecord(
            direction=Direction.REQUEST,
            message_id=header.message_id,
            client=header.client.slash(),
            service=header.service.slash(),
            logged_at=at,
            header=canonical_json(header.to_dict()),
            body=body,
            signature=signature,
            ocsp=ocsp,
        ),
        origin,
    )


async def log_response(
    gateway: Gateway,
    request: RequestHeader,
    header: ResponseHeader,
    body: bytes,
    signature: str,
    ocsp: bytes | None,
    *,
    at: dt.datetime,
    origin: Origin,
) -> None:
    """Append the response record, filed under the request's message id, client and service."""
    await append_to_log(
        gateway,
        NewRecord(
            direction=Direction.RESPONSE,
            message_id=request.message_id,
            client=request.client.slash(),
            service=request.service.slash(),
            logged_at=at,
            header=canonical_json(header.to_dict()),
            body=body,
            signature=signature,
            status=header.status,
            ocsp=ocsp,
        ),
        origin,
    )
