"""The management API's document and router agree, and every role gets exactly what x-roles says."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.management.openapi import REQUEST_SCHEMAS, openapi_document
from gateway.management.tokens import ROLES
from tests.unit.gateway.management.conftest import Management

DOC = openapi_document()
OPERATIONS = {
    operation["operationId"]: (method.upper(), path, operation)
    for path, operations in DOC["paths"].items()
    for method, operation in operations.items()
}

SO, SA, RO, OB = "security-officer", "service-admin", "registration-officer", "observer"
#: The roles each operation allows, as the module docstring of gateway.management.openapi lists them.
EXPECTED_ROLES: dict[str, set[str] | None] = {
    "getOpenApi": None,
    "getMetrics": None,
    "listClients": {OB, SO, SA, RO},
    "addClient": {SO},
    "updateClient": {SO},
    "removeClient": {SO},
    "addClientCertificate": {SO},
    "removeClientCertificate": {SO},
    "registerClient": {RO},
    "setMaintenanceMode": {SO},
    "listServices": {OB, SO, SA},
    "addService": {SA},
    "updateService": {SA},
    "removeService": {SA},
    "refreshOpenApiEndpoints": {SA},
    "listEndpoints": {OB, SO, SA},
    "addEndpoint": {SA},
    "removeEndpoint": {SA},
    "listGrants": {OB, SO, SA},
    "grantAccess": {SA},
    "revokeAccess": {SA},
    "listGroups": {OB, SO, SA},
    "addGroup": {SO, SA},
    "removeGroup": {SO, SA},
    "addGroupMember": {SO, SA},
    "removeGroupMember": {SO, SA},
    "listAuditTrail": {OB, SO},
    "listOpmonRecords": {OB, SO},
    "getOpmonHealth": {OB, SO},
}

CLIENT = "NRW:MUN:05774032:gewerbeamt"
SERVICE = "NRW:MUN:05774032:gewerbeamt:betriebe:v1"
PARAMETERS = {"client": CLIENT, "service": SERVICE, "code": "sachbearbeitung", "fingerprint": "ab" * 32}
QUERIES = {
    "removeEndpoint": "?method=GET&path=/betriebe",
    "revokeAccess": "?subject=NRW/GOV/057/arbeitsschutz",
    "listOpmonRecords": "?start=2025-03-01T00:00:00Z&end=2025-03-01T12:00:00Z",
}
BODIES: dict[str, Any] = {
    "addClient": {"id": "NRW/GOV/057/arbeitsschutz", "connection": "https"},
    "updateClient": {"token_required": True},
    "addClientCertificate": {"certificate_pem": "not a certificate"},
    "addService": {"id": "NRW/MUN/05774032/gewerbeamt/betriebe/v1", "base_url": "http://127.0.0.1:9/"},
    "updateService": {"timeout_s": 5},
    "addEndpoint": {"method": "GET", "path": "/betriebe"},
    "grantAccess": {"subject": "NRW/GOV/057/arbeitsschutz"},
    "addGroup": {"code": "sachbearbeitung"},
    "addGroupMember": {"client": "NRW/GOV/057/arbeitsschutz"},
}


def _target(operation_id: str) -> str:
    _, path, _ = OPERATIONS[operation_id]
    for name, value in PARAMETERS.items():
        path = path.replace(f"{{{name}}}", value)
    return str(path) + QUERIES.get(operation_id, "")


def test_every_operation_has_its_expected_roles() -> None:
    assert set(OPERATIONS) == set(EXPECTED_ROLES)
    for operation_id, (_, _, operation) in OPERATIONS.items():
        expected = EXPECTED_ROLES[operation_id]
        if expected is None:
            assert operation["security"] == [] and "x-roles" not in operation, operation_id
        else:
            assert set(operation["x-roles"]) == expected, operation_id
            assert set(operation["x-roles"]) <= set(ROLES), operation_id
            assert {"400", "401", "403"} <= set(operation["responses"]), operation_id
    # The observer reads everything and changes nothing; the security officer may do what it may.
    for operation_id, (method, _, _) in OPERATIONS.items():
        roles = EXPECTED_ROLES[operation_id] or {OB, SO}
        assert (OB in roles) == (method == "GET"), operation_id
        assert OB not in roles or SO in roles, operation_id


def test_request_bodies_are_the_documented_schemas() -> None:
    for operation_id, (_, _, operation) in OPERATIONS.items():
        if operation_id in REQUEST_SCHEMAS:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert DOC["components"]["schemas"][ref.rsplit("/", 1)[1]] == REQUEST_SCHEMAS[operation_id]
            assert REQUEST_SCHEMAS[operation_id]["additionalProperties"] is False
        else:
            assert "requestBody" not in operation, operation_id


def test_router_and_document_agree_both_ways(management: Management) -> None:
    app = management.client.app
    assert app is not None
    routed = {(route.resource.canonical, route.method) for route in app.router.routes() if route.resource}
    documented = {(path, method) for method, path, _ in OPERATIONS.values()}
    assert routed == documented


async def test_the_document_is_served_without_a_token(management: Management) -> None:
    status, document, _ = await management.call("GET", "/openapi.json")
    assert (status, document) == (200, DOC)


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
async def test_each_role_allowed_or_denied_per_operation(management: Management, operation_id: str) -> None:
    method, _, _ = OPERATIONS[operation_id]
    allowed = EXPECTED_ROLES[operation_id]
    if allowed is None:
        status, _, _ = await management.call(method, _target(operation_id))
        assert status == 200
        return
    status, payload, headers = await management.call(
        method, _target(operation_id), body=BODIES.get(operation_id)
    )
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), payload
    for role in ROLES:
        status, payload, _ = await management.call(
            method, _target(operation_id), role, BODIES.get(operation_id)
        )
        if role in allowed:
            assert status not in (401, 403), (role, status, payload)
        else:
            assert status == 403, (role, status, payload)
            assert payload["type"] == "forbidden"
            assert payload["message"] == f"role {role} may not do this"
