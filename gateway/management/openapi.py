"""The OpenAPI 3.1 document of a security server's management API (:mod:`gateway.management.api`).

The document is data: the API routes exactly its operations, allows exactly the roles
its ``x-roles`` name, and checks request bodies against its schemas
(:mod:`trust.service.jsonapi`), so what is documented and what is enforced cannot drift
apart; a test walks the router and the document both ways.  Paths are at the root of
the management listener.

Identifiers travel in two forms: as values, in X-Road's slash form
(``NRW/MUN/05774032/gewerbeamt``; an access right's subject also typed, as
``GLOBALGROUP:NRW/owl-kommunen`` or ``LOCALGROUP:sachbearbeitung``); in paths, as one
segment with the parts separated by ``:`` (``/clients/NRW:MUN:05774032:gewerbeamt``,
``/services/NRW:MUN:05774032:gewerbeamt:gewerbeanzeige:v1``), as X-Road's own
management API writes them.  Identifier parts cannot contain ``:`` or ``/``.

Who may do what (``x-roles``):

============================================  =========================================
operations                                    roles
============================================  =========================================
GET /openapi.json, GET /metrics               anyone (no token)
GET /clients                                  observer, security-officer,
                                              service-admin, registration-officer
GET /services, /endpoints, /grants, /groups   observer, security-officer, service-admin
GET /audit-trail, /opmon/records,             observer, security-officer
/opmon/health
clients: add, change, remove; their          security-officer
certificates: add, remove
services, endpoints, access rights: every     service-admin
change
local groups and their members: every change  security-officer, service-admin
POST /clients/{client}/registration           registration-officer
PUT /maintenance                              security-officer
============================================  =========================================

The observer reads everything and changes nothing; the security officer reads
everything too.
"""

from __future__ import annotations

import copy
from typing import Any

from trust.service.jsonapi import AUDIT_ENTRY_SCHEMA, ERROR_SCHEMA, api_document, api_operation, schema_ref
from trust.service.jsonapi import nullable_string_schema as _nullable_string
from trust.service.jsonapi import object_schema as _object
from trust.service.jsonapi import string_schema as _string

__all__ = [
    "MAX_AUDIT_ID",
    "MAX_PAGE",
    "MAX_TIMEOUT_S",
    "REQUEST_SCHEMAS",
    "openapi_document",
]

_MAX_ID = 1100  # characters of a client or service identifier (as the store keeps them)
_MAX_PEM = 64 * 1024  # characters of an information system's certificate (PEM)
_MAX_URL = 2048  # characters of a backend URL
_MAX_PATTERN = 1024  # characters of an endpoint path pattern
MAX_TIMEOUT_S = 3600  # seconds a backend call may take at most
MAX_AUDIT_ID = 2**63 - 1
MAX_PAGE = 1000  # audit-trail entries or monitoring records in one answer

_CONNECTIONS = ["http", "https", "https-mtls"]
_METHODS = ["*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
_ENDPOINT = _object(
    {"method": {"type": "string", "enum": _METHODS}, "path": _string(_MAX_PATTERN)}, ["method", "path"]
)
_TIMEOUT = {"type": "number", "minimum": 0.001, "maximum": MAX_TIMEOUT_S}

#: Request-body schema per operation id; objects refuse unknown fields.
REQUEST_SCHEMAS: dict[str, dict[str, Any]] = {
    "addClient": _object(
        {
            "id": _string(_MAX_ID),
            "connection": {"type": "string", "enum": _CONNECTIONS},
            "token_required": {"type": "boolean"},
        },
        ["id"],
    ),
    "updateClient": _object(
        {"connection": {"type": "string", "enum": _CONNECTIONS}, "token_required": {"type": "boolean"}}, []
    ),
    "addClientCertificate": _object({"certificate_pem": _string(_MAX_PEM)}, ["certificate_pem"]),
    "setMaintenanceMode": _object({"enabled": {"type": "boolean"}}, ["enabled"]),
    "addService": _object(
        {
            "id": _string(_MAX_ID + 512),
            "protocol": {"type": "string", "enum": ["rest", "soap"]},
            "base_url": _string(_MAX_URL),
            "timeout_s": _TIMEOUT,
            "verify_tls": {"type": "boolean"},
            "wsdl_url": _nullable_string(_MAX_URL),
            "openapi_url": _nullable_string(_MAX_URL),
        },
        ["id", "base_url"],
    ),
    "updateService": _object(
        {
            "base_url": _string(_MAX_URL),
            "timeout_s": _TIMEOUT,
            "verify_tls": {"type": "boolean"},
            "wsdl_url": _nullable_string(_MAX_URL),
            "openapi_url": _nullable_string(_MAX_URL),
        },
        [],
    ),
    "addEndpoint": _ENDPOINT,
    "grantAccess": _object(
        {"subject": _string(_MAX_ID + 16), "endpoint": {**_ENDPOINT, "type": ["object", "null"]}},
        ["subject"],
    ),
    "addGroup": _object({"code": _string(255), "description": _string(4096, min_length=0)}, ["code"]),
    "addGroupMember": _object({"client": _string(_MAX_ID)}, ["client"]),
}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": schema_ref(name)}


_RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": ERROR_SCHEMA,
    "Certificate": {
        "type": "object",
        "properties": {
            "fingerprint": {"type": "string", "description": "SHA-256 of the DER, lower-case hex"},
            "subject": {"type": "string", "description": "RFC 4514"},
            "not_after": {"type": "string", "description": "UTC, e.g. 2035-01-01T00:00:00Z"},
        },
        "required": ["fingerprint", "subject", "not_after"],
    },
    "Client": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "connection": {"type": "string", "enum": _CONNECTIONS},
            "token_required": {"type": "boolean"},
            "certificates": _array("Certificate"),
        },
        "required": ["id", "connection", "token_required", "certificates"],
    },
    "Maintenance": {
        "type": "object",
        "description": "the registry's answer to a maintenance announcement, applied at once",
        "properties": {
            "id": {"type": "string"},
            "server": {"type": "string"},
            "maintenance_mode": {"type": "boolean"},
            "changed": {"type": "boolean"},
            "status": {"type": "string", "enum": ["applied"]},
        },
        "required": ["id", "server", "maintenance_mode", "changed", "status"],
    },
    "Registration": {
        "type": "object",
        "description": "the registration request the registry received, and its state",
        "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "approved", "rejected", "revoked"]},
        },
        "required": ["id", "state"],
    },
    "Service": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "protocol": {"type": "string", "enum": ["rest", "soap"]},
            "base_url": {"type": "string"},
            "timeout_s": {"type": "number"},
            "verify_tls": {"type": "boolean"},
            "wsdl_url": {"type": ["string", "null"]},
            "openapi_url": {"type": ["string", "null"]},
        },
        "required": ["id", "protocol", "base_url", "timeout_s", "verify_tls", "wsdl_url", "openapi_url"],
    },
    "Endpoint": {
        "type": "object",
        "properties": {
            "service": {"type": "string"},
            "method": {"type": "string"},
            "path": {"type": "string"},
            "from_openapi": {"type": "boolean"},
        },
        "required": ["service", "method", "path", "from_openapi"],
    },
    "Grant": {
        "type": "object",
        "properties": {
            "service": {"type": "string", "description": "provider/service code: every version"},
            "subject": {"type": "string", "description": "typed, e.g. SUBSYSTEM:NRW/GOV/057/arbeitsschutz"},
            "endpoint": {
                "type": ["object", "null"],
                "properties": {"method": {"type": "string"}, "path": {"type": "string"}},
            },
        },
        "required": ["service", "subject", "endpoint"],
    },
    "Group": {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "description": {"type": "string"},
            "members": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["code", "description", "members"],
    },
    "AuditEntry": AUDIT_ENTRY_SCHEMA,
    "OpmonRecord": {
        "type": "object",
        "description": "one operational-monitoring record, with X-Road's field names",
    },
    "ServiceHealth": {
        "type": "object",
        "description": "one service's health over the statistics period, with X-Road's field names",
    },
}

_ERRORS = {
    "400": "malformed JSON, unknown fields, wrong types or a bad query parameter",
    "401": "no token, or one that does not verify",
    "403": "the token's role may not do this",
    "409": "a conflict (type conflict): a duplicate, or a state that forbids the change",
    "413": "the body is too large",
    "422": "refused (type unknown_reference for something unknown here or to the global "
    "configuration, refused for anything else, e.g. an endpoint pattern that matches "
    "every path or a service description that cannot be fetched)",
    "502": "the registry could not be reached or did not answer as expected",
    "503": "no valid global configuration to check the change against, or the part that "
    "answers this is not running",
}


def _operation(
    operation_id: str,
    summary: str,
    roles: tuple[str, ...],
    ok: str,
    schema: dict[str, Any] | None,
    errors: tuple[str, ...] = (),
    *,
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
        has_body=operation_id in REQUEST_SCHEMAS,
        parameters=parameters,
    )


def _public(operation_id: str, summary: str, content_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": f"{summary} (no token)",
        "security": [],
        "responses": {"200": {"description": "success", "content": {content_type: {"schema": schema}}}},
    }


_PART = r"[A-Za-z0-9'()+,\-.=?]+"
_CLIENT_PARAM = {
    "name": "client",
    "in": "path",
    "required": True,
    "description": "instance:class:code[:subsystem]",
    "schema": {"type": "string", "maxLength": _MAX_ID, "pattern": f"^{_PART}(:{_PART}){{2,3}}$"},
}
_SERVICE_PARAM = {
    "name": "service",
    "in": "path",
    "required": True,
    "description": "instance:class:code:subsystem:service[:version]",
    "schema": {"type": "string", "maxLength": _MAX_ID + 512, "pattern": f"^{_PART}(:{_PART}){{4,5}}$"},
}
_GROUP_PARAM = {
    "name": "code",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 255, "pattern": f"^{_PART}$"},
}
_FINGERPRINT_PARAM = {
    "name": "fingerprint",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9A-Fa-f:]{64,95}$"},
}


def _query(
    name: str, schema: dict[str, Any], description: str = "", *, required: bool = False
) -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


_SERVICE_QUERY = _query("service", _string(_MAX_ID + 512), "only this service, in slash form")
_ENDPOINT_QUERY = [
    _query("method", {"type": "string", "enum": _METHODS}, required=True),
    _query("path", _string(_MAX_PATTERN), required=True),
]

ALL = ("observer", "security-officer", "service-admin", "registration-officer")
READERS = ("observer", "security-officer", "service-admin")
AUDITORS = ("observer", "security-officer")
SECURITY = ("security-officer",)
SERVICES = ("service-admin",)
GROUPS = ("security-officer", "service-admin")
REGISTRATION = ("registration-officer",)


def _build() -> dict[str, Any]:
    client, service, group = [_CLIENT_PARAM], [_SERVICE_PARAM], [_GROUP_PARAM]
    paths: dict[str, Any] = {
        "/openapi.json": {
            "get": _public("getOpenApi", "this document", "application/json", {"type": "object"}),
        },
        "/metrics": {
            "get": _public(
                "getMetrics",
                "Prometheus metrics of this security server",
                "text/plain",
                {"type": "string", "description": "Prometheus text format"},
            ),
        },
        "/clients": {
            "get": _operation("listClients", "list this server's clients", ALL, "200", _array("Client")),
            "post": _operation(
                "addClient",
                "add a member or subsystem of the global configuration as a client",
                SECURITY,
                "201",
                schema_ref("Client"),
                ("409", "503"),
            ),
        },
        "/clients/{client}": {
            "patch": _operation(
                "updateClient",
                "change a client's connection type or whether it needs a client token",
                SECURITY,
                "200",
                schema_ref("Client"),
                parameters=client,
            ),
            "delete": _operation(
                "removeClient",
                "remove a client that nothing refers to any more",
                SECURITY,
                "204",
                None,
                ("409", "422"),
                parameters=client,
            ),
        },
        "/clients/{client}/certificates": {
            "post": _operation(
                "addClientCertificate",
                "register an information system's TLS certificate for a client",
                SECURITY,
                "201",
                schema_ref("Certificate"),
                ("409",),
                parameters=client,
            ),
        },
        "/clients/{client}/certificates/{fingerprint}": {
            "delete": _operation(
                "removeClientCertificate",
                "unregister a client's certificate",
                SECURITY,
                "204",
                None,
                ("422",),
                parameters=[_CLIENT_PARAM, _FINGERPRINT_PARAM],
            ),
        },
        "/clients/{client}/registration": {
            "post": _operation(
                "registerClient",
                "ask the registry to register a client subsystem on this server (signed request)",
                REGISTRATION,
                "202",
                schema_ref("Registration"),
                ("422", "502"),
                parameters=client,
            ),
        },
        "/maintenance": {
            "put": _operation(
                "setMaintenanceMode",
                "announce to the registry that this server enters or leaves maintenance mode "
                "(signed with its auth key; published in the next global configuration)",
                SECURITY,
                "200",
                schema_ref("Maintenance"),
                ("409", "502"),
            ),
        },
        "/services": {
            "get": _operation(
                "listServices", "list the services this server provides", READERS, "200", _array("Service")
            ),
            "post": _operation(
                "addService",
                "add a service of a client; a REST service with openapi_url gets the endpoints of "
                "its OpenAPI document, fetched now (the change is refused if it cannot be)",
                SERVICES,
                "201",
                schema_ref("Service"),
                ("409",),
            ),
        },
        "/services/{service}": {
            "patch": _operation(
                "updateService",
                "change a service's backend; a new openapi_url brings its document's endpoints",
                SERVICES,
                "200",
                schema_ref("Service"),
                parameters=service,
            ),
            "delete": _operation(
                "removeService",
                "remove a service (that version) with its endpoints and the rights on them",
                SERVICES,
                "204",
                None,
                ("422",),
                parameters=service,
            ),
        },
        "/services/{service}/endpoints": {
            "post": _operation(
                "addEndpoint",
                "add a REST endpoint by hand",
                SERVICES,
                "201",
                schema_ref("Endpoint"),
                ("409",),
                parameters=service,
            ),
            "delete": _operation(
                "removeEndpoint",
                "remove an endpoint and the rights on it",
                SERVICES,
                "204",
                None,
                ("422",),
                parameters=[_SERVICE_PARAM, *_ENDPOINT_QUERY],
            ),
        },
        "/services/{service}/openapi-endpoints": {
            "put": _operation(
                "refreshOpenApiEndpoints",
                "fetch the service's OpenAPI document again and make its endpoints the service's",
                SERVICES,
                "200",
                _array("Endpoint"),
                ("422",),
                parameters=service,
            ),
        },
        "/services/{service}/grants": {
            "post": _operation(
                "grantAccess",
                "allow a member, subsystem, global or local group to call the service code (any "
                "version): all of it, or one endpoint",
                SERVICES,
                "201",
                schema_ref("Grant"),
                ("409", "503"),
                parameters=service,
            ),
            "delete": _operation(
                "revokeAccess",
                "withdraw a right (without method and path: the right on the whole service)",
                SERVICES,
                "204",
                None,
                ("422",),
                parameters=[
                    _SERVICE_PARAM,
                    _query("subject", _string(_MAX_ID + 16), required=True),
                    _query("method", {"type": "string", "enum": _METHODS}),
                    _query("path", _string(_MAX_PATTERN)),
                ],
            ),
        },
        "/endpoints": {
            "get": _operation(
                "listEndpoints",
                "list REST endpoints",
                READERS,
                "200",
                _array("Endpoint"),
                ("422",),
                parameters=[_SERVICE_QUERY],
            ),
        },
        "/grants": {
            "get": _operation(
                "listGrants",
                "list access rights",
                READERS,
                "200",
                _array("Grant"),
                ("422",),
                parameters=[_SERVICE_QUERY],
            ),
        },
        "/groups": {
            "get": _operation("listGroups", "list local groups", READERS, "200", _array("Group")),
            "post": _operation(
                "addGroup", "create a local group", GROUPS, "201", schema_ref("Group"), ("409",)
            ),
        },
        "/groups/{code}": {
            "delete": _operation(
                "removeGroup",
                "remove a local group that no right names",
                GROUPS,
                "204",
                None,
                ("409", "422"),
                parameters=group,
            ),
        },
        "/groups/{code}/members": {
            "post": _operation(
                "addGroupMember",
                "add a member or subsystem of the global configuration to a local group",
                GROUPS,
                "201",
                schema_ref("Group"),
                ("409", "503"),
                parameters=group,
            ),
        },
        "/groups/{code}/members/{client}": {
            "delete": _operation(
                "removeGroupMember",
                "remove a member from a local group",
                GROUPS,
                "204",
                None,
                ("422",),
                parameters=[_GROUP_PARAM, _CLIENT_PARAM],
            ),
        },
        "/audit-trail": {
            "get": _operation(
                "listAuditTrail",
                "the server configuration's audit trail after an id, oldest first",
                AUDITORS,
                "200",
                _array("AuditEntry"),
                parameters=[
                    _query("after_id", {"type": "integer", "minimum": 0, "maximum": MAX_AUDIT_ID}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                ],
            ),
        },
        "/opmon/records": {
            "get": _operation(
                "listOpmonRecords",
                "operational-monitoring records between two times, newest first",
                AUDITORS,
                "200",
                _array("OpmonRecord"),
                ("503",),
                parameters=[
                    _query("start", _string(64), "UTC, ISO 8601, e.g. 2025-03-01T00:00:00Z", required=True),
                    _query("end", _string(64), "UTC, ISO 8601", required=True),
                    _query("client", _string(_MAX_ID), "only this client's, in slash form"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                ],
            ),
        },
        "/opmon/health": {
            "get": _operation(
                "getOpmonHealth",
                "per service: last successes and failures, counts and durations",
                AUDITORS,
                "200",
                _array("ServiceHealth"),
                ("503",),
            ),
        },
    }
    schemas = dict(_RESPONSE_SCHEMAS)
    for operation_id, schema in REQUEST_SCHEMAS.items():
        schemas[f"{operation_id}Request"] = schema
    return api_document(
        title="xweg security server management API",
        description="Clients, services, endpoints, access rights and local groups of one "
        "security server, its audit trail and operational monitoring. Every call but the "
        "document and the metrics needs a bearer JWT (ES256) issued by this server "
        "(`xweg gateway token issue`); every change is written to the audit trail with the "
        "token's subject and is in force at once.",
        server_url="/",
        paths=paths,
        schemas=schemas,
    )


_DOCUMENT = _build()


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_DOCUMENT)
