"""The OpenAPI 3.1 document of the registry's management API (:mod:`registry.api`).

The document is data, and :mod:`registry.api` validates request bodies against the same
schemas (:data:`REQUEST_SCHEMAS`), so what is documented and what is enforced cannot
drift apart; a test walks the router and the document both ways.  Paths are relative to
the server URL ``/api/v1``.  Identifiers travel in two forms: as values, in X-Road's
slash form (``NRW/MUN/05774032/gewerbeamt``); in paths, as one path segment per part
(``/members/MUN/05774032``; the instance is always the registry's own).  Identifier
parts cannot contain ``/``, so no segment needs escaping beyond ordinary percent-encoding.
"""

from __future__ import annotations

import copy
from typing import Any

from trust.service.jsonapi import (
    AUDIT_ENTRY_SCHEMA,
    DEFAULT_MAX_STRING,
    ERROR_SCHEMA,
    api_document,
    api_operation,
    schema_ref,
)
from trust.service.jsonapi import nullable_string_schema as _nullable_string
from trust.service.jsonapi import object_schema as _object
from trust.service.jsonapi import string_schema as _string

__all__ = ["API_PREFIX", "REQUEST_SCHEMAS", "MAX_ID", "MAX_STRING", "openapi_document"]

API_PREFIX = "/api/v1"
MAX_STRING = DEFAULT_MAX_STRING  # characters in any string of a request body
_MAX_PEM = 16 * 1024  # characters in a PEM certificate
_MAX_ITEMS = 256  # entries in a list of a request body
_MAX_CA_PEMS = 16  # intermediates, or OCSP responders, of one approved CA
_MAX_URL = 2048  # characters in a URL, as trust.globalconf allows
MAX_ID = 2**31 - 1  # audit-trail ids are 32-bit integers on every backend


def _strings() -> dict[str, Any]:
    return {"type": "array", "items": _string(), "maxItems": _MAX_ITEMS}


def _pems() -> dict[str, Any]:
    return {"type": "array", "items": _string(_MAX_PEM), "maxItems": _MAX_CA_PEMS}


#: Request-body schema per operation id; objects refuse unknown fields.
REQUEST_SCHEMAS: dict[str, dict[str, Any]] = {
    "addMember": _object(
        {"member_class": _string(255), "member_code": _string(255), "name": _string()},
        ["member_class", "member_code", "name"],
    ),
    "addSubsystem": _object({"code": _string(255)}, ["code"]),
    "addSecurityServer": _object(
        {
            "owner": _string(),
            "code": _string(255),
            "address": _string(300),
            "auth_certificate_pem": _string(_MAX_PEM),
            "clients": _strings(),
        },
        ["owner", "code", "address", "auth_certificate_pem"],
    ),
    "addServerClient": _object({"client": _string()}, ["client"]),
    "addGroup": _object(
        {"code": _string(255), "description": _string(min_length=0), "members": _strings()}, ["code"]
    ),
    "addGroupMember": _object({"member": _string()}, ["member"]),
    "addService": _object(
        {
            "provider": _string(),
            "code": _string(255),
            "version": _nullable_string(255),
            "protocol": {"type": "string", "enum": ["REST", "SOAP"]},
            "description": _string(min_length=0),
            "standard": _string(min_length=0),
            "authorities": _strings(),
            "area": _nullable_string(12),
        },
        ["provider", "code", "protocol"],
    ),
    "setMaintenanceMode": _object({"maintenance_mode": {"type": "boolean"}}, ["maintenance_mode"]),
    "decideRegistrationRequest": _object(
        {
            "decision": {"type": "string", "enum": ["approve", "reject", "revoke"]},
            "reason": _string(),
        },
        ["decision"],
    ),
    "addApprovedCA": _object(
        {
            "certificate_pem": _string(_MAX_PEM),
            "intermediates_pem": _pems(),
            "ocsp_url": _nullable_string(_MAX_URL),
            "ocsp_responders_pem": _pems(),
        },
        ["certificate_pem"],
    ),
    "addApprovedTSA": _object(
        {"name": _string(255), "url": _string(_MAX_URL), "certificate_pem": _string(_MAX_PEM)},
        ["name", "url", "certificate_pem"],
    ),
}

_RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": ERROR_SCHEMA,
    "Member": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "member_class": {"type": "string"},
            "member_code": {"type": "string"},
            "name": {"type": "string"},
            "subsystems": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["id", "member_class", "member_code", "name", "subsystems"],
    },
    "Subsystem": {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
    },
    "SecurityServer": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "owner": {"type": "string"},
            "code": {"type": "string"},
            "address": {"type": "string"},
            "auth_certificate_fingerprints": {"type": "array", "items": {"type": "string"}},
            "clients": {"type": "array", "items": {"type": "string"}},
            "maintenance_mode": {"type": "boolean"},
        },
        "required": [
            "id",
            "owner",
            "code",
            "address",
            "auth_certificate_fingerprints",
            "clients",
            "maintenance_mode",
        ],
    },
    "ApprovedCA": {
        "type": "object",
        "properties": {
            "fingerprint": {"type": "string", "description": "SHA-256 of the DER, lower-case hex"},
            "subject": {"type": "string", "description": "RFC 4514"},
            "not_after": {"type": "string", "description": "UTC, e.g. 2035-01-01T00:00:00Z"},
            "intermediate_fingerprints": {"type": "array", "items": {"type": "string"}},
            "ocsp_url": {"type": ["string", "null"]},
            "ocsp_responder_fingerprints": {"type": "array", "items": {"type": "string"}},
        },
        "required": [
            "fingerprint",
            "subject",
            "not_after",
            "intermediate_fingerprints",
            "ocsp_url",
            "ocsp_responder_fingerprints",
        ],
    },
    "ApprovedTSA": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "url": {"type": "string"},
            "fingerprint": {"type": "string", "description": "SHA-256 of the DER, lower-case hex"},
            "subject": {"type": "string", "description": "RFC 4514"},
            "not_after": {"type": "string", "description": "UTC, e.g. 2035-01-01T00:00:00Z"},
        },
        "required": ["name", "url", "fingerprint", "subject", "not_after"],
    },
    "Group": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "code": {"type": "string"},
            "members": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["id", "code", "members"],
    },
    "Service": {
        "type": "object",
        "properties": {
            "service": {"type": "string"},
            "provider": {"type": "string"},
            "code": {"type": "string"},
            "version": {"type": ["string", "null"]},
            "protocol": {"type": "string", "enum": ["REST", "SOAP"]},
            "description": {"type": "string"},
            "standard": {"type": "string"},
            "authorities": {"type": "array", "items": {"type": "string"}},
            "area": {"type": ["string", "null"]},
        },
        "required": [
            "service",
            "provider",
            "code",
            "version",
            "protocol",
            "description",
            "standard",
            "authorities",
            "area",
        ],
    },
    "AuditEntry": AUDIT_ENTRY_SCHEMA,
    "GlobalConf": {"type": "object", "description": "the unsigned global configuration document"},
    "RegistrationRequest": {
        "type": "object",
        "description": "a security server's registration request (auth-cert or client) and its state",
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["auth-cert", "client"]},
            "server": {"type": "string"},
            "client": {"type": ["string", "null"]},
            "address": {"type": ["string", "null"]},
            "auth_certificate_fingerprint": {"type": ["string", "null"]},
            "consent_by": {"type": "string", "description": "the member whose sign key consented"},
            "status": {"type": "string", "enum": ["pending", "approved", "rejected", "revoked"]},
            "reason": {"type": ["string", "null"]},
            "received_at": {"type": "string"},
            "decided_at": {"type": ["string", "null"]},
            "decided_by": {"type": ["string", "null"]},
        },
        "required": [
            "id",
            "kind",
            "server",
            "client",
            "address",
            "auth_certificate_fingerprint",
            "consent_by",
            "status",
            "reason",
            "received_at",
            "decided_at",
            "decided_by",
        ],
    },
}

_ERRORS = {
    "400": "malformed JSON, unknown fields or a bad query parameter",
    "401": "no token, or one that does not verify",
    "403": "the token's role may not do this",
    "404": "no such entry",
    "409": "a conflict (type conflict): a duplicate, or something already registered",
    "413": "the body is too large",
    "422": "refused by the registry: type unknown_reference for something it does not hold "
    "(an unknown owner, server, group, ...), type refused for anything else (illegal "
    "identifier characters, a certificate no approved CA issued, ...)",
}


def _operation(
    operation_id: str,
    summary: str,
    roles: tuple[str, ...],
    ok: str,
    schema: dict[str, Any],
    errors: tuple[str, ...],
    *,
    body: bool = False,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return api_operation(
        operation_id,
        summary,
        roles,
        ok,
        schema,
        errors,
        descriptions=_ERRORS,
        has_body=body,
        parameters=parameters,
    )


# Identifier parts as core.identifiers allows them; bounded so that a request line stays
# under the HTTP parser's 8 KiB limit even when every character is percent-encoded.
_PART = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[A-Za-z0-9'()+,\-.=?]+$"}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _PART}


# Registration request ids are UUIDs in their canonical form.
_REQUEST_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 36, "maxLength": 36, "pattern": "^[0-9a-f-]{36}$"},
}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


ADMIN = ("registry-admin",)
OFFICER = ("registry-admin", "registration-officer")
READERS = ("registry-admin", "registration-officer", "observer")
AUDITORS = ("registry-admin", "observer")


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": schema_ref(name)}


def _build() -> dict[str, Any]:
    member_params = [_path_param("member_class"), _path_param("member_code")]
    paths: dict[str, Any] = {
        "/members": {
            "get": _operation("listMembers", "list members", READERS, "200", _list("Member"), ()),
            "post": _operation(
                "addMember", "register a member", ADMIN, "201", schema_ref("Member"), ("409",), body=True
            ),
        },
        "/members/{member_class}/{member_code}": {
            "get": _operation(
                "getMember",
                "one member",
                READERS,
                "200",
                schema_ref("Member"),
                ("404",),
                parameters=member_params,
            ),
        },
        "/members/{member_class}/{member_code}/subsystems": {
            "post": _operation(
                "addSubsystem",
                "register a subsystem of a member",
                OFFICER,
                "201",
                schema_ref("Subsystem"),
                ("409",),
                body=True,
                parameters=member_params,
            ),
        },
        "/security-servers": {
            "get": _operation(
                "listSecurityServers", "list security servers", READERS, "200", _list("SecurityServer"), ()
            ),
            "post": _operation(
                "addSecurityServer",
                "register a security server with its auth certificate",
                OFFICER,
                "201",
                schema_ref("SecurityServer"),
                ("409",),
                body=True,
            ),
        },
        "/security-servers/{member_class}/{member_code}/{server_code}/clients": {
            "post": _operation(
                "addServerClient",
                "let a security server host a client",
                OFFICER,
                "201",
                schema_ref("SecurityServer"),
                ("409",),
                body=True,
                parameters=[*member_params, _path_param("server_code")],
            ),
        },
        "/security-servers/{member_class}/{member_code}/{server_code}/maintenance": {
            "put": _operation(
                "setMaintenanceMode",
                "put a security server into maintenance mode or take it out (idempotent)",
                OFFICER,
                "200",
                schema_ref("SecurityServer"),
                (),
                body=True,
                parameters=[*member_params, _path_param("server_code")],
            ),
        },
        "/groups": {
            "get": _operation("listGroups", "list global groups", READERS, "200", _list("Group"), ()),
            "post": _operation(
                "addGroup", "create a global group", ADMIN, "201", schema_ref("Group"), ("409",), body=True
            ),
        },
        "/groups/{code}/members": {
            "post": _operation(
                "addGroupMember",
                "add a member or subsystem to a global group",
                ADMIN,
                "201",
                schema_ref("Group"),
                ("409",),
                body=True,
                parameters=[_path_param("code")],
            ),
        },
        "/services": {
            "get": _operation(
                "listServices",
                "the service catalogue, optionally narrowed",
                READERS,
                "200",
                _list("Service"),
                ("422",),
                parameters=[
                    _query("provider", _string(300)),
                    _query("authority", _string(100)),
                    _query("area", _string(12)),
                ],
            ),
            "post": _operation(
                "addService",
                "catalogue a service",
                OFFICER,
                "201",
                schema_ref("Service"),
                ("409",),
                body=True,
            ),
        },
        "/approved-cas": {
            "get": _operation(
                "listApprovedCAs", "list approved CAs", READERS, "200", _list("ApprovedCA"), ("422",)
            ),
            "post": _operation(
                "addApprovedCA",
                "approve a root CA with its intermediates and OCSP service",
                ADMIN,
                "201",
                schema_ref("ApprovedCA"),
                ("409",),
                body=True,
            ),
        },
        "/approved-tsas": {
            "get": _operation(
                "listApprovedTSAs",
                "list approved timestamping authorities",
                READERS,
                "200",
                _list("ApprovedTSA"),
                ("422",),
            ),
            "post": _operation(
                "addApprovedTSA",
                "approve a timestamping authority an approved CA certified",
                ADMIN,
                "201",
                schema_ref("ApprovedTSA"),
                ("409",),
                body=True,
            ),
        },
        "/globalconf": {
            "get": _operation(
                "getGlobalConf",
                "the unsigned global configuration the registry would publish now",
                READERS,
                "200",
                schema_ref("GlobalConf"),
                ("422",),
            ),
        },
        "/registration-requests": {
            "get": _operation(
                "listRegistrationRequests",
                "registration requests from security servers, oldest first",
                READERS,
                "200",
                _list("RegistrationRequest"),
                (),
                parameters=[
                    _query(
                        "status", {"type": "string", "enum": ["pending", "approved", "rejected", "revoked"]}
                    )
                ],
            ),
        },
        "/registration-requests/{id}": {
            "get": _operation(
                "getRegistrationRequest",
                "one registration request",
                READERS,
                "200",
                schema_ref("RegistrationRequest"),
                ("404",),
                parameters=[_REQUEST_ID],
            ),
        },
        "/registration-requests/{id}/decision": {
            "post": _operation(
                "decideRegistrationRequest",
                "approve (and apply), reject with a reason the server reads, or revoke a pending request",
                OFFICER,
                "200",
                schema_ref("RegistrationRequest"),
                ("404", "409"),
                body=True,
                parameters=[_REQUEST_ID],
            ),
        },
        "/audit-trail": {
            "get": _operation(
                "listAuditTrail",
                "audit-trail entries after an id, oldest first",
                AUDITORS,
                "200",
                _list("AuditEntry"),
                (),
                parameters=[
                    _query("after_id", {"type": "integer", "minimum": 0, "maximum": MAX_ID}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ],
            ),
        },
    }
    schemas = dict(_RESPONSE_SCHEMAS)
    for operation_id, schema in REQUEST_SCHEMAS.items():
        schemas[f"{operation_id}Request"] = schema
    return api_document(
        title="xweg registry management API",
        description="Members, security servers, global groups, approved CAs and TSAs, the "
        "service catalogue and the registration requests of an xweg registry. Every call needs a "
        "bearer JWT (ES256) issued by the registry (`xweg registry token issue`); every change is "
        "written to the audit trail.",
        server_url=API_PREFIX,
        paths=paths,
        schemas=schemas,
    )


_DOCUMENT = _build()


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_DOCUMENT)
