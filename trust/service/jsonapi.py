"""A JSON API described by an OpenAPI document and guarded by role tokens.

The frame the registry's and a security server's management APIs share: they bring
the document (data), one handler per ``operationId`` and a way to verify a bearer token
(:func:`trust.tokens.verify_role_token` with their key, issuer and audience);
:func:`make_json_api` routes what the document says and nothing else.  Each call:

1. gets a correlation id (``X-Correlation-Id``, and ``detail`` of every error body);
2. needs, for an operation with ``x-roles``, a bearer token that ``authenticate``
   accepts -- 401 with ``WWW-Authenticate: Bearer`` without one or with one that does
   not verify (the message says why);
3. needs a role the operation's ``x-roles`` lists -- else 403;
4. reads its JSON body with :func:`json_body`: bounded (``max_body_bytes``, else 413)
   and checked against the operation's documented request schema (malformed JSON,
   unknown fields, wrong types: 400).

An operation without ``x-roles`` must say ``"security": []`` (public: the document
itself, metrics), so that forgetting the roles never opens an operation.  Errors are
JSON ``{"type", "message", "detail"}``; handlers raise :class:`ApiError`.  An unexpected
failure is logged with its traceback and answered 500 without one.

What each operation does, and how domain refusals map to 409 or 422, is the API's own.
The schema builders here (:func:`string_schema`, :func:`object_schema`, :data:`ERROR_SCHEMA`)
write the subset :func:`check_schema` enforces, for both APIs' documents.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from trust.tokens import RoleIdentity, TokenInvalid

__all__ = [
    "api_document",
    "api_operation",
    "schema_ref",
    "DEFAULT_MAX_STRING",
    "AUDIT_ENTRY_SCHEMA",
    "ERROR_SCHEMA",
    "ApiError",
    "Authenticate",
    "Handler",
    "check_schema",
    "correlation_id",
    "error_response",
    "identity",
    "int_query",
    "json_body",
    "make_json_api",
    "nullable_string_schema",
    "object_schema",
    "string_schema",
]

DEFAULT_MAX_STRING = 4096  # characters of a string whose schema names no maxLength

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Verifies a bearer token for a request; raises :class:`trust.tokens.TokenInvalid`.
Authenticate = Callable[[web.Request, str], RoleIdentity]

#: The body of every error answer.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "message": {"type": "string"},
        "detail": {"type": "string", "description": "correlation id of the request, also in the logs"},
    },
    "required": ["type", "message", "detail"],
}

#: One audit-trail entry, as both management APIs answer it: who changed what, when, and
#: the state before and after.
AUDIT_ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "at": {"type": "string"},
        "actor": {"type": "string", "description": "the token's subject, or local for the command line"},
        "operation": {"type": "string"},
        "target": {"type": "string"},
        "before": {},
        "after": {},
        "correlation_id": {"type": ["string", "null"]},
    },
    "required": ["id", "at", "actor", "operation", "target", "before", "after", "correlation_id"],
}

_IDENTITY_KEY = web.RequestKey("identity", RoleIdentity)
_CORRELATION_KEY = web.RequestKey("correlation_id", str)


class ApiError(Exception):
    """An answer other than success: HTTP status, error type, message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_response(status: int, kind: str, message: str, correlation: str, *, realm: str) -> web.Response:
    """The JSON error body; a 401 names the bearer scheme and ``realm``."""
    headers = {"X-Correlation-Id": correlation}
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return web.json_response(
        {"type": kind, "message": message, "detail": correlation}, status=status, headers=headers
    )


def identity(request: web.Request) -> RoleIdentity:
    """Who the request's verified token speaks for (operations with ``x-roles`` only)."""
    return request[_IDENTITY_KEY]


def correlation_id(request: web.Request) -> str:
    return request[_CORRELATION_KEY]


def string_schema(max_length: int = DEFAULT_MAX_STRING, *, min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


def nullable_string_schema(max_length: int = DEFAULT_MAX_STRING) -> dict[str, Any]:
    return {"type": ["string", "null"], "maxLength": max_length}


def object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A JSON object with exactly these ``properties`` (unknown fields are refused)."""
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def schema_ref(name: str) -> dict[str, Any]:
    """A reference to ``#/components/schemas/{name}``."""
    return {"$ref": f"#/components/schemas/{name}"}


def api_operation(
    operation_id: str,
    summary: str,
    roles: tuple[str, ...],
    ok: str,
    schema: dict[str, Any] | None,
    errors: tuple[str, ...],
    *,
    descriptions: Mapping[str, str],
    has_body: bool = False,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An operation for a token holding one of ``roles`` (``x-roles``).

    ``ok`` is the success status, answering ``schema`` (``None``: no body); ``errors`` the
    other statuses it may answer besides 400, 401 and 403 (and 413 and 422 with
    ``has_body``, whose schema is ``{operation_id}Request``), each described by
    ``descriptions``.
    """
    success: dict[str, Any] = {"description": "success"}
    if schema is not None:
        success["content"] = {"application/json": {"schema": schema}}
    responses: dict[str, Any] = {ok: success}
    codes = {"400", "401", "403", *errors} | ({"413", "422"} if has_body else set())
    for code in sorted(codes):
        content = {"application/json": {"schema": schema_ref("Error")}}
        responses[code] = {"description": descriptions[code], "content": content}
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": f"{summary} (roles: {', '.join(roles)})",
        "x-roles": list(roles),
        "responses": responses,
    }
    if has_body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema_ref(f"{operation_id}Request")}},
        }
    if parameters:
        operation["parameters"] = parameters
    return operation


def api_document(
    *, title: str, description: str, server_url: str, paths: dict[str, Any], schemas: dict[str, Any]
) -> dict[str, Any]:
    """An OpenAPI 3.1 document whose every operation needs a bearer JWT unless it says
    ``security: []``."""
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def check_schema(schema: Mapping[str, Any], value: Any, where: str) -> None:
    """The subset of JSON Schema request bodies use: object (closed), array, string,
    boolean, integer, number, null, ``enum``, lengths and bounds.  Raises a 400 :class:`ApiError`."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if value is None:
        if "null" not in kinds:
            raise _invalid(f"{where} must not be null")
        return
    if "object" in kinds:
        if not isinstance(value, dict):
            raise _invalid(f"{where} must be a JSON object")
        unknown = sorted(set(value) - set(schema["properties"]))
        if unknown:
            raise _invalid(f"{where}: unknown field(s) {', '.join(unknown)}")
        missing = [name for name in schema.get("required", []) if name not in value]
        if missing:
            raise _invalid(f"{where}: missing field(s) {', '.join(missing)}")
        for name, item in value.items():
            check_schema(schema["properties"][name], item, f"{where}.{name}")
    elif "array" in kinds:
        if not isinstance(value, list) or len(value) > schema.get("maxItems", len(value)):
            raise _invalid(f"{where} must be a list of at most {schema.get('maxItems')}")
        for index, item in enumerate(value):
            check_schema(schema["items"], item, f"{where}[{index}]")
    elif "string" in kinds:
        low, high = schema.get("minLength", 0), schema.get("maxLength", DEFAULT_MAX_STRING)
        if not isinstance(value, str) or not low <= len(value) <= high:
            raise _invalid(f"{where} must be a string of {low} to {high} characters")
    elif "boolean" in kinds:
        if not isinstance(value, bool):
            raise _invalid(f"{where} must be true or false")
    elif "integer" in kinds or "number" in kinds:
        whole = isinstance(value, int) and not isinstance(value, bool)
        fraction = "number" in kinds and isinstance(value, float) and math.isfinite(value)
        low, high = schema.get("minimum"), schema.get("maximum")
        if (
            not (whole or fraction)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            what = "an integer" if "number" not in kinds else "a number"
            raise _invalid(f"{where} must be {what} from {low} to {high}")
    if "enum" in schema and value not in schema["enum"]:
        raise _invalid(f"{where} must be one of {', '.join(map(str, schema['enum']))}")


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter ``name`` as an integer from ``low`` to ``high``; 400 otherwise."""
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise _invalid(f"{name} must be an integer from {low} to {high}")
    return int(text)


_ROUTES_KEY = web.AppKey("json_api_routes", dict)
_LIMIT_KEY = web.AppKey("json_api_max_body_bytes", int)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON body, bounded and checked against its operation's documented schema."""
    limit = request.app[_LIMIT_KEY]
    schema = request.app[_ROUTES_KEY][request.match_info.route][1]
    if schema is None:
        raise ApiError(500, "internal", f"{request.method} {request.path} documents no request body")
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the body exceeds {limit} bytes")
    try:
        body = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not JSON: {exc}") from exc
    check_schema(schema, body, "body")
    if not isinstance(body, dict):  # every documented body is an object
        raise _invalid("body must be a JSON object")
    return body


def _request_schema(document: Mapping[str, Any], operation: Mapping[str, Any]) -> dict[str, Any] | None:
    body = operation.get("requestBody")
    if body is None:
        return None
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    ref = schema.get("$ref")
    if ref is not None:
        prefix = "#/components/schemas/"
        if not isinstance(ref, str) or not ref.startswith(prefix):
            raise ValueError(f"{operation['operationId']}: only local schema references are supported")
        schema = document["components"]["schemas"][ref[len(prefix) :]]
    return schema


def make_json_api(
    document: Mapping[str, Any],
    handlers: Mapping[str, Handler],
    *,
    authenticate: Authenticate,
    realm: str,
    name: str,
    max_body_bytes: int,
) -> web.Application:
    """An application routing every operation of ``document`` to ``handlers[operationId]``.

    ``realm`` goes into ``WWW-Authenticate``; ``name`` into log event names
    (``{name}.api_failed``).  Raises ``ValueError`` if an operation has no handler, a
    handler no operation, or an operation neither ``x-roles`` nor ``"security": []``.
    """
    log = structlog.get_logger(f"xweg.{name}.api")

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Steps 1-3 of the module docstring, and the one place errors become JSON."""
        correlation = uuid.uuid4().hex
        request[_CORRELATION_KEY] = correlation
        try:
            entry = request.app[_ROUTES_KEY].get(request.match_info.route)
            roles = entry[0] if entry is not None else None
            if roles is not None:
                scheme, _, token = request.headers.get("Authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    raise ApiError(401, "unauthorized", "a bearer token is required")
                try:
                    who = authenticate(request, token.strip())
                except TokenInvalid as exc:
                    raise ApiError(401, "unauthorized", str(exc)) from exc
                if who.role not in roles:
                    raise ApiError(403, "forbidden", f"role {who.role} may not do this")
                request[_IDENTITY_KEY] = who
            response = await handler(request)
        except ApiError as exc:
            if exc.status >= 500:
                log.error(f"{name}.api_error", correlation_id=correlation, error=exc.message)
            return error_response(exc.status, exc.kind, exc.message, correlation, realm=realm)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kind = exc.reason.lower().replace(" ", "_")
            return error_response(exc.status, kind, exc.reason, correlation, realm=realm)
        except Exception:
            log.exception(f"{name}.api_failed", correlation_id=correlation, path=request.path)
            return error_response(
                500, "internal", "internal error; quote the detail to the operator", correlation, realm=realm
            )
        response.headers["X-Correlation-Id"] = correlation
        return response

    app = web.Application(middlewares=[guard])
    routes: dict[Any, tuple[frozenset[str] | None, dict[str, Any] | None]] = {}
    routed: set[str] = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            operation_id = operation["operationId"]
            if operation_id not in handlers:
                raise ValueError(f"no handler for operation {operation_id}")
            if "x-roles" in operation:
                roles: frozenset[str] | None = frozenset(operation["x-roles"])
            elif operation.get("security") == []:
                roles = None
            else:
                raise ValueError(f"operation {operation_id} names neither x-roles nor security: []")
            route = app.router.add_route(method.upper(), path, handlers[operation_id])
            routes[route] = (roles, _request_schema(document, operation))
            routed.add(operation_id)
    unused = sorted(set(handlers) - routed)
    if unused:
        raise ValueError(f"handlers for undocumented operations: {', '.join(unused)}")
    app[_ROUTES_KEY] = routes
    app[_LIMIT_KEY] = max_body_bytes
    return app
