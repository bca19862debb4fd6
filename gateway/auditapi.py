"""The auditor API: read-only HTTP access to this security server's message log.

An aiohttp sub-application (:func:`make_auditor_app`), mounted by the server under
``/audit/v1/``.  Routes, all ``GET`` (and ``HEAD``)::

    records?since=&until=&client=&service=&message_id=&limit=&after_seq=   search (JSON list)
    records/{seq}[?body=true]                                               one record
    records/by-message/{message_id}/evidence                                evidence container (ZIP)
    checkpoints/latest, checkpoints/{size}                                  checkpoints
    proofs/inclusion?seq=&tree_size=, proofs/consistency?old=&new=          Merkle proofs (hex)
    shards                                                                  shards of the log (JSON)

Replicas of one server that share a PostgreSQL database each write a shard of the
message log: a log of its own, with its own sequence numbers, Merkle tree and
checkpoints.  Behind a load balancer an auditor cannot choose the replica that
answers, so any replica answers for every shard:

* ``shards`` names them: ``{"own": <this replica's shard>, "shards": [...]}``, sorted
  (404 when the log is one SQLite file, which has no shards);
* every other route takes an optional ``shard=NAME`` and reads that shard instead of
  this replica's own (400 for a malformed name, 404 for a name the database has no
  shard of, 400 on an SQLite log);
* search results and records on PostgreSQL carry ``"shard"``, since a ``seq`` means
  something only within its shard's tree (on SQLite they are as they always were), and
  every answer read from a shard names it in the header ``X-Xweg-Shard``: a client
  paging through a search or asking for proofs names that shard in what it asks next,
  or the balancer's next pick answers from its own;
* evidence without ``shard`` is built from this replica's shard if it holds the
  message id, else from the first other shard that does, whichever replica logged it.

Every request, in this order:

1. is authenticated: ``Authorization: Bearer <jwt>``, verified with
   :func:`trust.tokens.verify_auditor_token` at the clock's ``now`` (401 with
   ``WWW-Authenticate: Bearer`` when missing or invalid, 403 for another role);
2. has its parameters checked (unknown or repeated ones are refused, numbers and times
   bounded) and is answered from :mod:`gateway.messagelog.query` in a worker thread,
   at most :data:`MAX_CONCURRENT_QUERIES` at a time;
3. bodies (a record's ``?body=true`` and evidence containers, which hold bodies) are
   only given to tokens with the body right (403 otherwise);
4. is written to the audit log (the ``audit_log`` callable) with its final status,
   refused requests included, *before* the answer leaves; if that write fails, the
   answer is replaced by ``LoggingFailed`` and nothing is disclosed.

Errors are X-Road REST error bodies (``{"type", "message", "detail": <correlation id>}``)
and never a traceback.  Durable storage of the audit entries is the caller's;
:class:`AuditQueryLog` is one (an SQLite table).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.rest.outbound import render_rest_error
from core.clock import Clock, require_utc
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import IdentifierError, ServiceId, parse_client_slash
from gateway.database import (
    Database,
    DatabaseErrors,
    connect_postgres,
    connect_sqlite,
    is_postgres_url,
    redact_url,
)
from gateway.messagelog import query
from gateway.messagelog.errors import LogOpenError, LogReadError, MessageLogError
from gateway.messagelog.record import MAX_MESSAGE_ID_LENGTH, format_time, parse_time
from gateway.messagelog.store import LogLocation, PostgresLogShard, list_shards
from trust.merkle import MerkleError
from trust.tokens import AuditorIdentity, TokenForbidden, TokenInvalid, verify_auditor_token

__all__ = [
    "AuditQuery",
    "AuditLog",
    "EvidenceSource",
    "AuditQueryLog",
    "AUDIT_QUERY_SCHEMA",
    "AUDIT_QUERY_PG_SCHEMA",
    "MAX_CONCURRENT_QUERIES",
    "SHARD_HEADER",
    "make_auditor_app",
]

log = structlog.get_logger("xweg.auditapi")

#: The response header naming the shard an answer was read from (PostgreSQL only).
SHARD_HEADER = "X-Xweg-Shard"
#: Proofs over a large log hash every leaf; a few at a time keep the server responsive.
MAX_CONCURRENT_QUERIES = 4
_REALM = "xweg-auditor-api"
_MAX_PARAM_LENGTH = 256  # characters of one query parameter value
_MAX_TIME_LENGTH = 64  # characters of an ISO 8601 time
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits only; int() would take "+1", " 1" and "١"
_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class AuditQuery:
    """One call to the auditor API, as the audit log keeps it."""

    subject: str | None  # the token's subject; None when no valid token was shown
    token_id: str | None  # the token's jti
    method: str
    path: str
    query: str  # the raw query string
    status: int  # the HTTP status answered
    at: dt.datetime  # when the request arrived, UTC
    remote: str | None = None  # the caller's address
    correlation_id: str | None = None  # of the error answered, if any

    def __post_init__(self) -> None:
        require_utc(self.at, "at")
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, not {self.status!r}")


AuditLog = Callable[[AuditQuery], Awaitable[None]]
#: Builds the evidence container of a message id from the log at a location: the
#: replica's own, or on PostgreSQL whichever shard of the server holds the message id.
EvidenceSource = Callable[[str, LogLocation], Awaitable[bytes]]


@dataclass(frozen=True)
class _Settings:
    log_path: LogLocation
    token_public_key: ec.EllipticCurvePublicKey
    issuer: str
    clock: Clock
    audit_log: AuditLog
    evidence: EvidenceSource | None
    slots: asyncio.Semaphore


_SETTINGS = web.AppKey("auditor_api", _Settings)


class _ApiError(XwegError):
    """An :class:`XwegError` answered with an HTTP status of the auditor API's choosing."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        origin: Origin,
        status: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code, message, origin)
        self._status = status
        self.headers = dict(headers or {})

    @property
    def http_status(self) -> int:
        return self._status


def _unauthorized(message: str, *, invalid: bool) -> _ApiError:
    challenge = f'Bearer realm="{_REALM}"' + (', error="invalid_token"' if invalid else "")
    return _ApiError(
        ErrorCode.ACCESS_DENIED, message, Origin.SERVER_PROXY, 401, {"WWW-Authenticate": challenge}
    )


def _forbidden(message: str) -> _ApiError:
    challenge = f'Bearer realm="{_REALM}", error="insufficient_scope"'
    return _ApiError(
        ErrorCode.ACCESS_DENIED, message, Origin.SERVER_PROXY, 403, {"WWW-Authenticate": challenge}
    )


def _bad_request(message: str) -> _ApiError:
    return _ApiError(ErrorCode.INVALID_REQUEST, message, Origin.CLIENT, 400)


def _not_found(message: str) -> _ApiError:
    return _ApiError(ErrorCode.INVALID_REQUEST, message, Origin.CLIENT, 404)


def _server_error(code: ErrorCode, message: str, status: int = 500) -> _ApiError:
    return _ApiError(code, message, Origin.SERVER_PROXY, status)


def _error_response(error: XwegError) -> web.Response:
    status, headers, body = render_rest_error(error)
    response = web.Response(status=status, body=body, headers=dict(headers))
    if isinstance(error, _ApiError):
        response.headers.update(error.headers)
    return response


@contextlib.contextmanager
def _query_errors() -> Iterator[None]:
    """The message log's read errors as the auditor API answers them."""
    try:
        yield
    except query.InvalidQuery as exc:
        raise _bad_request(str(exc)) from exc
    except query.NotFound as exc:
        raise _not_found(str(exc)) from exc
    except LogOpenError as exc:
        # Its message names the file or the database (host, user, name): the server's
        # operator reads it in the server log, by the correlation id; an auditor does not.
        error = _server_error(ErrorCode.INTERNAL_ERROR, "the message log cannot be opened now", 503)
        log.error("auditor_api.log_unavailable", correlation_id=error.correlation_id, error=str(exc))
        raise error from exc
    except LogReadError as exc:
        raise _server_error(ErrorCode.INTERNAL_ERROR, f"the message log cannot be read: {exc}") from exc
    except (MerkleError, ValueError) as exc:
        raise _server_error(ErrorCode.INTERNAL_ERROR, f"the proof cannot be computed: {exc}") from exc


# -- step 1: authentication ----------------------------------------------------------


def _authenticate(request: web.Request, settings: _Settings, now: dt.datetime) -> AuditorIdentity:
    values = request.headers.getall("Authorization", [])
    if not values:
        raise _unauthorized(
            "an auditor bearer token is required (Authorization: Bearer <token>)", invalid=False
        )
    if len(values) > 1:
        raise _unauthorized("more than one Authorization header", invalid=True)
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'", invalid=True)
    try:
        return verify_auditor_token(token.strip(), settings.token_public_key, issuer=settings.issuer, now=now)
    except TokenForbidden as exc:
        raise _forbidden(str(exc)) from exc
    except TokenInvalid as exc:
        raise _unauthorized(str(exc), invalid=True) from exc


# -- step 2: parameters --------------------------------------------------------------


def _params(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, each at most once, none unknown, none overlong."""
    found: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise _bad_request(f"unknown parameter {name[:64]!r} (this route takes: {known})")
        if name in found:
            raise _bad_request(f"parameter {name!r} is given more than once")
        if len(value) > _MAX_PARAM_LENGTH:
            raise _bad_request(f"parameter {name!r} is longer than {_MAX_PARAM_LENGTH} characters")
        found[name] = value
    return found


def _integer(text: str, what: str, *, minimum: int, maximum: int = 2**63 - 1) -> int:
    if not _DIGITS.fullmatch(text):
        raise _bad_request(f"{what} must be a whole number")
    value = int(text)
    if not minimum <= value <= maximum:
        raise _bad_request(f"{what} must lie in {minimum}..{maximum}")
    return value


def _required(params: Mapping[str, str], name: str) -> str:
    if name not in params:
        raise _bad_request(f"parameter {name!r} is required")
    return params[name]


def _instant(text: str, what: str) -> dt.datetime:
    """An ISO 8601 time with an offset (``2025-03-04T10:00:00Z``), as UTC."""
    if len(text) > _MAX_TIME_LENGTH:
        raise _bad_request(f"{what} is too long for a time")
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _bad_request(f"{what} must be an ISO 8601 time such as 2025-03-04T10:00:00Z") from None
    if value.tzinfo is None:
        raise _bad_request(f"{what} must name its time zone (e.g. end in Z)")
    return value.astimezone(dt.UTC)


def _message_id(text: str) -> str:
    if not text or len(text) > MAX_MESSAGE_ID_LENGTH or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _bad_request(f"a message id is 1 to {MAX_MESSAGE_ID_LENGTH} printable characters")
    return text


def _flag(text: str, what: str) -> bool:
    if text not in ("true", "false"):
        raise _bad_request(f"{what} must be true or false")
    return text == "true"


# -- answers -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _summary_json(summary: query.RecordSummary, shard: str | None) -> dict[str, Any]:
    """A record's metadata; on PostgreSQL with the shard whose tree its ``seq`` belongs to."""
    data: dict[str, Any] = {
        "seq": summary.seq,
        "message_id": summary.message_id,
        "logged_at": format_time(summary.logged_at),
        "direction": summary.direction.value,
        "client": summary.client,
        "service": summary.service,
        "status": summary.status,
        "body_size": summary.body_size,
    }
    if shard is not None:
        data["shard"] = shard
    return data


def _record_json(view: query.RecordView, shard: str | None) -> dict[str, Any]:
    try:
        header: Any = json.loads(view.header)
    except ValueError:
        header = None
    data = _summary_json(view.summary, shard)
    data.update(
        {
            "header": header,
            "header_base64": _b64(view.header),  # the exact bytes the leaf hash covers
            "signature": view.signature,
            "ocsp": None if view.ocsp is None else _b64(view.ocsp),
            "prev_hash": view.prev_hash.hex(),
            "record_hash": view.record_hash.hex(),
            "leaf_hash": view.leaf_hash.hex(),
            "body_storage": view.body_storage,
            "checkpoint_size": view.checkpoint_size,
            "inclusion_path": None if view.inclusion_path is None else [h.hex() for h in view.inclusion_path],
        }
    )
    if view.body is not None:
        data["body"] = _b64(view.body)
    return data


async def _run(settings: _Settings, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A blocking query in a worker thread, a bounded number at a time, its errors mapped."""
    async with settings.slots:
        with _query_errors():
            return await asyncio.to_thread(function, *args, **kwargs)


# -- shards --------------------------------------------------------------------------


def _shard_name(location: LogLocation) -> str | None:
    """The shard ``location`` is, or None for an SQLite file (which has no shards)."""
    return location.shard if isinstance(location, PostgresLogShard) else None


def _from_shard(response: web.Response, location: LogLocation) -> web.Response:
    """``response`` saying which shard it was read from (on PostgreSQL): behind a load
    balancer the next request may reach another replica, and must then name this shard
    to go on where this one left off (the next page of a search, a proof for a seq)."""
    shard = _shard_name(location)
    if shard is not None:
        response.headers[SHARD_HEADER] = shard
    return response


def _described(location: LogLocation) -> str:
    """The log at ``location`` as an answer names it (never the database's URL)."""
    shard = _shard_name(location)
    return "the message log" if shard is None else f"shard {shard} of the message log"


async def _location(settings: _Settings, params: Mapping[str, str]) -> LogLocation:
    """The log a request reads: this replica's own, or the shard its ``shard`` parameter names.

    The name is checked against the database (one more query), so that a name no
    replica writes is a 404 naming it, not a 503 for a log that cannot be opened; this
    replica's own name needs no look-up.
    """
    own = settings.log_path
    if "shard" not in params:
        return own
    if not isinstance(own, PostgresLogShard):
        raise _bad_request("this server's message log is a single file, not shards: 'shard' does not apply")
    name = params["shard"]
    try:
        location = PostgresLogShard(own.url, name)
    except ValueError as exc:
        raise _bad_request(f"shard: {exc}") from exc
    if name != own.shard and name not in await _run(settings, list_shards, own.url):
        raise _not_found(f"this server's message log has no shard {name!r}")
    return location


async def _holding(
    settings: _Settings, params: Mapping[str, str], message_id: str
) -> tuple[LogLocation, int]:
    """The log holding ``message_id`` and the seq of its first record there.

    Without ``shard`` on PostgreSQL, this replica's own shard is searched first, then
    the others in name order: the replica that logged the exchange need not be the one
    the load balancer picked for the auditor.
    """
    own = settings.log_path
    location = await _location(settings, params)
    found = await _run(settings, query.search, location, message_id=message_id, limit=1)
    if found:
        return location, found[0].seq
    if "shard" in params or not isinstance(own, PostgresLogShard):
        raise _not_found(f"{_described(location)} holds no record of that message id")
    for name in await _run(settings, list_shards, own.url):
        if name == own.shard:
            continue
        try:
            other = PostgresLogShard(own.url, name)
        except ValueError:  # a schema named outside the shard rule is no replica's
            continue
        found = await _run(settings, query.search, other, message_id=message_id, limit=1)
        if found:
            return other, found[0].seq
    raise _not_found("no shard of the message log holds a record of that message id")


# -- routes --------------------------------------------------------------------------

Route = Callable[[web.Request, _Settings, AuditorIdentity], Awaitable[web.StreamResponse]]


async def _search(request: web.Request, settings: _Settings, identity: AuditorIdentity) -> web.StreamResponse:
    params = _params(
        request,
        frozenset({"since", "until", "client", "service", "message_id", "limit", "after_seq", "shard"}),
    )
    filters: dict[str, Any] = {}
    for name in ("since", "until"):
        if name in params:
            filters[name] = _instant(params[name], name)
    if "client" in params:
        try:
            filters["client"] = parse_client_slash(params["client"]).slash()
        except IdentifierError as exc:
            raise _bad_request(f"client: {exc}") from exc
    if "service" in params:
        try:
            filters["service"] = ServiceId.parse_slash(params["service"]).slash()
        except IdentifierError as exc:
            raise _bad_request(f"service: {exc}") from exc
    if "message_id" in params:
        filters["message_id"] = _message_id(params["message_id"])
    limit = query.DEFAULT_LIMIT
    if "limit" in params:
        limit = _integer(params["limit"], "limit", minimum=1, maximum=query.MAX_LIMIT)
    if "after_seq" in params:
        filters["after_seq"] = _integer(params["after_seq"], "after_seq", minimum=0)
    location = await _location(settings, params)
    found = await _run(settings, query.search, location, limit=limit, **filters)
    shard = _shard_name(location)
    response = web.json_response([_summary_json(s, shard) for s in found])
    if len(found) == limit:  # there may be more: where the next page starts
        response.headers["X-Next-After-Seq"] = str(found[-1].seq)
    return _from_shard(response, location)


async def _record(request: web.Request, settings: _Settings, identity: AuditorIdentity) -> web.StreamResponse:
    params = _params(request, frozenset({"body", "shard"}))
    seq = _integer(request.match_info["seq"], "seq", minimum=1)
    with_body = _flag(params.get("body", "false"), "body")
    # (3) bodies only for tokens that carry the right
    if with_body and not identity.may_read_bodies:
        raise _forbidden("this token does not carry the right to read message bodies")
    location = await _location(settings, params)
    view = await _run(settings, query.get_record, location, seq, with_body=with_body)
    if view is None:
        raise _not_found(f"{_described(location)} holds no record {seq}")
    return _from_shard(web.json_response(_record_json(view, _shard_name(location))), location)


async def _evidence(
    request: web.Request, settings: _Settings, identity: AuditorIdentity
) -> web.StreamResponse:
    params = _params(request, frozenset({"shard"}))
    message_id = _message_id(request.match_info["message_id"])
    # (3) an evidence container holds the bodies of the exchange
    if not identity.may_read_bodies:
        raise _forbidden("an evidence container holds message bodies; this token does not carry that right")
    if settings.evidence is None:
        raise _server_error(ErrorCode.UNKNOWN_SERVICE, "evidence export is not available on this server", 501)
    location, seq = await _holding(settings, params, message_id)
    async with settings.slots:  # building a container computes proofs over the log
        try:
            container = await settings.evidence(message_id, location)
        except LogReadError as exc:
            raise _server_error(ErrorCode.INTERNAL_ERROR, f"the message log cannot be read: {exc}") from exc
        except MessageLogError as exc:  # e.g. its records are not covered by a checkpoint yet
            raise _server_error(
                ErrorCode.INTERNAL_ERROR, f"the evidence container cannot be built now: {exc}", 409
            ) from exc
    shard = _shard_name(location)
    filename = f"evidence-{seq}.zip" if shard is None else f"evidence-{shard}-{seq}.zip"
    response = web.Response(
        body=container,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
    return _from_shard(response, location)


async def _checkpoint(
    request: web.Request, settings: _Settings, identity: AuditorIdentity
) -> web.StreamResponse:
    params = _params(request, frozenset({"shard"}))
    which = request.match_info["size"]
    size = None if which == "latest" else _integer(which, "checkpoint size", minimum=1)
    location = await _location(settings, params)
    found = await _run(settings, query.checkpoint, location, size)
    if found is None:
        what = "no checkpoint yet" if size is None else f"no checkpoint of size {size}"
        raise _not_found(f"{_described(location)} has {what}")
    # The checkpoint file an auditor keeps, byte for byte (canonical JSON).
    return _from_shard(web.Response(body=found.to_file_json(), content_type="application/json"), location)


async def _inclusion(
    request: web.Request, settings: _Settings, identity: AuditorIdentity
) -> web.StreamResponse:
    params = _params(request, frozenset({"seq", "tree_size", "shard"}))
    seq = _integer(_required(params, "seq"), "seq", minimum=1)
    tree_size = _integer(_required(params, "tree_size"), "tree_size", minimum=1)
    location = await _location(settings, params)
    proof = await _run(settings, query.inclusion_proof, location, seq, tree_size)
    body = {"seq": seq, "leaf_index": seq - 1, "tree_size": tree_size, "proof": [h.hex() for h in proof]}
    return _from_shard(web.json_response(body), location)


async def _consistency(
    request: web.Request, settings: _Settings, identity: AuditorIdentity
) -> web.StreamResponse:
    params = _params(request, frozenset({"old", "new", "shard"}))
    old = _integer(_required(params, "old"), "old", minimum=1)
    new = _integer(_required(params, "new"), "new", minimum=1)
    location = await _location(settings, params)
    proof = await _run(settings, query.consistency_proof, location, old, new)
    body = {"old_size": old, "new_size": new, "proof": [h.hex() for h in proof]}
    return _from_shard(web.json_response(body), location)


async def _shards(request: web.Request, settings: _Settings, identity: AuditorIdentity) -> web.StreamResponse:
    _params(request, frozenset())
    own = settings.log_path
    if not isinstance(own, PostgresLogShard):
        raise _not_found("this server's message log is one SQLite file; it has no shards")
    names = await _run(settings, list_shards, own.url)
    return web.json_response({"own": own.shard, "shards": sorted(names)})


async def _elsewhere(
    request: web.Request, settings: _Settings, identity: AuditorIdentity
) -> web.StreamResponse:
    if request.method not in _METHODS:
        error = _ApiError(
            ErrorCode.INVALID_REQUEST, "the auditor API is read-only: GET only", Origin.CLIENT, 405
        )
        error.headers["Allow"] = "GET, HEAD"
        raise error
    raise _not_found(f"no such auditor API resource: {request.path[:200]}")


def _handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``route`` behind the numbered steps of the module docstring."""

    async def handle(request: web.Request) -> web.StreamResponse:
        settings = request.app[_SETTINGS]
        at = settings.clock.now()
        identity: AuditorIdentity | None = None
        correlation_id: str | None = None
        try:
            # (1) authentication, before anything else is looked at
            identity = _authenticate(request, settings, at)
            # (2) and (3): the route checks its parameters and the body right
            response = await route(request, settings, identity)
        except XwegError as error:
            correlation_id = error.correlation_id
            log.info(
                "auditor_api.refused",
                fault_code=error.fault_code,
                status=error.http_status,
                message=error.message,
                correlation_id=error.correlation_id,
                path=request.path,
            )
            response = _error_response(error)
        except Exception as exc:  # never a traceback to a client
            internal = XwegError(
                ErrorCode.INTERNAL_ERROR, "internal error; see the server log", Origin.SERVER_PROXY
            )
            correlation_id = internal.correlation_id
            log.exception("auditor_api.internal_error", correlation_id=correlation_id, error=repr(exc))
            response = _error_response(internal)
        # (4) the audit log, before the answer leaves
        entry = AuditQuery(
            subject=identity.subject if identity else None,
            token_id=identity.token_id if identity else None,
            method=request.method,
            path=request.path,
            query=request.query_string,
            status=response.status,
            at=at,
            remote=request.remote,
            correlation_id=correlation_id,
        )
        try:
            await settings.audit_log(entry)
        except Exception as exc:
            failed = XwegError(
                ErrorCode.LOGGING_FAILED,
                "the auditor query could not be logged; nothing is answered",
                Origin.SERVER_PROXY,
            )
            log.exception(
                "auditor_api.audit_log_failed", correlation_id=failed.correlation_id, error=repr(exc)
            )
            return _error_response(failed)
        return response

    return handle


def make_auditor_app(
    *,
    log_path: LogLocation,
    token_public_key: ec.EllipticCurvePublicKey,
    issuer: str,
    clock: Clock,
    audit_log: AuditLog,
    evidence: EvidenceSource | None,
    max_concurrent_queries: int = MAX_CONCURRENT_QUERIES,
) -> web.Application:
    """The auditor API as a sub-application, to be mounted with ``app.add_subapp("/audit/v1/", ...)``.

    ``issuer`` is this security server's id (slash form), the ``iss`` its tokens carry;
    ``audit_log`` receives every request's :class:`AuditQuery` and must make it durable
    (an exception refuses the answer); ``evidence`` builds the evidence container of a
    message id from the log at the location it is given, this one or on PostgreSQL
    another shard of the same database (None: the route answers 501).
    """
    if not isinstance(token_public_key, ec.EllipticCurvePublicKey):
        raise TypeError("token_public_key must be an EC public key")
    if isinstance(max_concurrent_queries, bool) or not isinstance(max_concurrent_queries, int):
        raise TypeError("max_concurrent_queries must be an integer")
    if max_concurrent_queries < 1:
        raise ValueError("max_concurrent_queries must be at least 1")
    app = web.Application()
    app[_SETTINGS] = _Settings(
        log_path=log_path if isinstance(log_path, PostgresLogShard) else Path(log_path),
        token_public_key=token_public_key,
        issuer=issuer,
        clock=clock,
        audit_log=audit_log,
        evidence=evidence,
        slots=asyncio.Semaphore(max_concurrent_queries),
    )
    app.router.add_get("/records", _handler(_search))
    app.router.add_get("/records/by-message/{message_id}/evidence", _handler(_evidence))
    app.router.add_get("/records/{seq}", _handler(_record))
    app.router.add_get("/checkpoints/{size}", _handler(_checkpoint))
    app.router.add_get("/proofs/inclusion", _handler(_inclusion))
    app.router.add_get("/proofs/consistency", _handler(_consistency))
    app.router.add_get("/shards", _handler(_shards))
    # Everything else under the prefix, and every other method: authenticated, logged, refused.
    app.router.add_route("*", "/{tail:.*}", _handler(_elsewhere))
    return app


# -- a durable audit log ---------------------------------------------------------------

#: The table :class:`AuditQueryLog` keeps in an SQLite file; times in the message log's
#: text form.
AUDIT_QUERY_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS auditor_queries (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        subject TEXT,
        token_id TEXT,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        query TEXT NOT NULL,
        status INTEGER NOT NULL,
        remote TEXT,
        correlation_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS auditor_queries_at ON auditor_queries (at)",
    "CREATE INDEX IF NOT EXISTS auditor_queries_subject ON auditor_queries (subject, at)",
)
#: The PostgreSQL schema of the table replicas of one server share; each row names the
#: replica (its shard) that answered.
AUDIT_QUERY_PG_SCHEMA = "auditor_queries"
_AUDIT_QUERY_PG_TABLE: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS auditor_queries (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at text NOT NULL,
        subject text,
        token_id text,
        method text NOT NULL,
        path text NOT NULL,
        query text NOT NULL,
        status integer NOT NULL,
        remote text,
        correlation_id text,
        replica text NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS auditor_queries_at ON auditor_queries (at)",
    "CREATE INDEX IF NOT EXISTS auditor_queries_subject ON auditor_queries (subject, at)",
)
#: The advisory lock under which a replica creates the table.
_PG_CREATE_LOCK = "xweg.auditor_queries.schema"
_INSERT_QUERY = (
    "INSERT INTO auditor_queries (at, subject, token_id, method, path, query, status, remote, correlation_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_QUERY_OF_REPLICA = (
    "INSERT INTO auditor_queries"
    " (at, subject, token_id, method, path, query, status, remote, correlation_id, replica)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_QUERIES = (
    "SELECT at, subject, token_id, method, path, query, status, remote, correlation_id"
    " FROM auditor_queries ORDER BY id"
)


class AuditQueryLog:
    """Auditor queries, one durable row per call: in an SQLite file (WAL,
    ``synchronous=FULL``) or, for replicas of one server, in the PostgreSQL database they
    share (schema :data:`AUDIT_QUERY_PG_SCHEMA`), so that the record of who asked what is
    one, whichever replica a balancer sent the auditor to.

    Pass the instance itself as ``audit_log``; a failed write raises ``OSError``, and the
    API then answers ``LoggingFailed`` instead of the data.  Close it at shutdown.
    """

    def __init__(self, database: Database, *, replica: str | None = None) -> None:
        self._database = database
        self._replica = replica
        self._lock = threading.Lock()

    @classmethod
    def open(cls, location: Path | str, *, replica: str | None = None) -> AuditQueryLog:
        """The log at ``location``: an SQLite file, or a PostgreSQL URL with ``replica``
        (this replica's shard name) written into every row."""
        if isinstance(location, str) and is_postgres_url(location):
            if replica is None:
                raise ValueError("an auditor query log in PostgreSQL needs the replica's name")
            return cls(_open_postgres(location), replica=replica)
        return cls(_open_sqlite(Path(location)))

    def append(self, entry: AuditQuery) -> None:
        """Store ``entry`` durably (blocking)."""
        row: tuple[Any, ...] = (
            format_time(entry.at),
            entry.subject,
            entry.token_id,
            entry.method,
            entry.path,
            entry.query,
            entry.status,
            entry.remote,
            entry.correlation_id,
        )
        statement = _INSERT_QUERY
        if self._replica is not None:
            statement, row = _INSERT_QUERY_OF_REPLICA, (*row, self._replica)
        with self._lock:
            try:
                self._database.execute(statement, row)
            except DatabaseErrors as exc:
                raise OSError(
                    f"cannot write to the auditor query log {self._database.describe}: {exc}"
                ) from exc

    async def __call__(self, entry: AuditQuery) -> None:
        await asyncio.to_thread(self.append, entry)

    def entries(self) -> list[AuditQuery]:
        """Every stored entry, oldest first (on PostgreSQL, every replica's)."""
        with self._lock:
            try:
                rows = self._database.execute(_SELECT_QUERIES).fetchall()
            except DatabaseErrors as exc:
                where = self._database.describe
                raise OSError(f"cannot read the auditor query log {where}: {exc}") from exc
        return [
            AuditQuery(
                at=parse_time(at),
                subject=subject,
                token_id=token_id,
                method=method,
                path=path,
                query=text,
                status=status,
                remote=remote,
                correlation_id=correlation_id,
            )
            for at, subject, token_id, method, path, text, status, remote, correlation_id in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._database.close()


def _open_sqlite(path: Path) -> Database:
    try:
        database = connect_sqlite(path)
    except sqlite3.Error as exc:
        raise OSError(f"cannot open the auditor query log {path}: {exc}") from exc
    try:
        database.execute("PRAGMA journal_mode=WAL")
        database.execute("PRAGMA synchronous=FULL")
        for statement in AUDIT_QUERY_SCHEMA:
            database.execute(statement)
    except sqlite3.Error as exc:
        database.close()
        raise OSError(f"cannot prepare the auditor query log {path}: {exc}") from exc
    return database


def _open_postgres(url: str) -> Database:
    where = f"{redact_url(url)} (schema {AUDIT_QUERY_PG_SCHEMA})"
    try:
        database = connect_postgres(url, schema=AUDIT_QUERY_PG_SCHEMA, create_schema=True)
    except DatabaseErrors as exc:
        raise OSError(f"cannot open the auditor query log in {where}: {exc}") from exc
    try:
        database.create_tables(_AUDIT_QUERY_PG_TABLE, lock=_PG_CREATE_LOCK)
    except DatabaseErrors as exc:
        database.close()
        raise OSError(f"cannot prepare the auditor query log in {where}: {exc}") from exc
    return database
