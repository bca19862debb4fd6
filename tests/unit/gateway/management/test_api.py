"""The management API against a real store: refusals with their codes, nothing written on a
refusal, the token's subject as actor, changes live at once, OpenAPI endpoints, registration."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from core.identifiers import GlobalGroupId, LocalGroupId, ServiceId
from gateway.internaltls import internal_tls_certificate
from gateway.management.api import MAX_BODY_BYTES
from gateway.observability.opmon import OpmonRecord
from gateway.registration import RegistrationFailed
from gateway.serverconf.model import ClientEntry, EndpointPattern
from tests.unit.gateway.conftest import NOW, OTHER_MEMBER
from tests.unit.gateway.management.conftest import GEWERBEAMT, REQUEST_ID, Management
from trust.keys import generate_private_key

ARBEITSSCHUTZ = OTHER_MEMBER.subsystem("arbeitsschutz")  # in the federation's global configuration
BETRIEBE = ServiceId(GEWERBEAMT, "betriebe", "v1")
BETRIEBE_PATH = "/services/NRW:MUN:05774032:gewerbeamt:betriebe:v1"
SO, SA, RO, OB = "security-officer", "service-admin", "registration-officer", "observer"


async def add_betriebe(management: Management, **changes: Any) -> tuple[int, Any]:
    body = {"id": BETRIEBE.slash(), "base_url": "http://127.0.0.1:9/api", **changes}
    status, payload, _ = await management.call("POST", "/services", SA, body)
    return status, payload


async def refused_unchanged(
    management: Management, method: str, path: str, role: str, body: Any, status: int, kind: str, message: str
) -> None:
    """The call is refused with ``status`` and ``kind`` (message containing ``message``); nothing changed."""
    before_trail, before = management.audit_trail(), management.store.snapshot()
    got, payload, headers = await management.call(method, path, role, body)
    assert (got, payload["type"]) == (status, kind), payload
    assert message in payload["message"]
    assert payload["detail"] == headers["X-Correlation-Id"]
    assert "Traceback" not in payload["message"]
    assert management.audit_trail() == before_trail
    assert management.store.snapshot() == before


def gewerbeamt(management: Management) -> ClientEntry:
    """The client GEWERBEAMT as the running server sees it now."""
    entry = management.server.serverconf.current().client(GEWERBEAMT)
    assert entry is not None
    return entry


# -- clients --------------------------------------------------------------------------------


async def test_a_change_names_the_token_subject_as_actor_and_is_live_at_once(management: Management) -> None:
    body = {"id": ARBEITSSCHUTZ.slash(), "connection": "https", "token_required": True}
    status, client, headers = await management.call("POST", "/clients", SO, body, subject="petra.schulz")
    assert status == 201
    assert client == {
        "id": ARBEITSSCHUTZ.slash(),
        "connection": "https",
        "token_required": True,
        "certificates": [],
    }
    entry = management.audit_trail()[-1]
    assert (entry["actor"], entry["operation"], entry["target"]) == (
        "petra.schulz",
        "add_client",
        ARBEITSSCHUTZ.slash(),
    )
    assert entry["correlation_id"] == headers["X-Correlation-Id"]
    # The running server acts on it now, not at the next poll.
    assert management.server.serverconf.current().hosts(ARBEITSSCHUTZ)
    status, trail, _ = await management.call("GET", "/audit-trail?after_id=1", OB)
    assert status == 200 and trail[-1] == entry


async def test_change_and_remove_a_client(management: Management) -> None:
    path = "/clients/NRW:MUN:05774032:gewerbeamt"
    status, client, _ = await management.call("PATCH", path, SO, {"connection": "http"})
    assert (status, client["connection"]) == (200, "http")
    assert gewerbeamt(management).connection.value == "http"
    status, payload, _ = await management.call("DELETE", path, SO)
    assert (status, payload) == (204, "")
    assert not management.server.serverconf.current().hosts(GEWERBEAMT)


async def test_a_duplicate_client_is_409(management: Management) -> None:
    await refused_unchanged(
        management, "POST", "/clients", SO, {"id": GEWERBEAMT.slash()}, 409, "conflict", "already a client"
    )


async def test_a_client_of_a_member_unknown_to_global_configuration_is_422(management: Management) -> None:
    body = {"id": "NRW/MUN/09999999/kfz"}
    await refused_unchanged(
        management,
        "POST",
        "/clients",
        SO,
        body,
        422,
        "unknown_reference",
        "member NRW/MUN/09999999 is not in the global configuration",
    )


async def test_without_valid_global_configuration_a_client_is_not_added(management: Management) -> None:
    management.server.globalconf = None
    await refused_unchanged(
        management,
        "POST",
        "/clients",
        SO,
        {"id": ARBEITSSCHUTZ.slash()},
        503,
        "outdated_global_conf",
        "no valid global configuration",
    )


async def test_a_client_certificate_registered_and_removed(management: Management) -> None:
    certificate = internal_tls_certificate(generate_private_key(), host_name="gewerbe-is", now=NOW)
    pem = certificate.public_bytes(Encoding.PEM).decode()
    path = "/clients/NRW:MUN:05774032:gewerbeamt/certificates"
    status, summary, _ = await management.call("POST", path, SO, {"certificate_pem": pem})
    assert status == 201
    assert summary["fingerprint"] in gewerbeamt(management).certificate_fingerprints
    await refused_unchanged(
        management, "POST", path, SO, {"certificate_pem": pem}, 409, "conflict", "already"
    )
    status, _, _ = await management.call("DELETE", f"{path}/{summary['fingerprint']}", SO)
    assert status == 204
    assert not gewerbeamt(management).certificate_fingerprints


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "NRW/GOV/057/arbeitsschutz", "colour": "red"}, "unknown field(s) colour"),
        ({"id": 57}, "body.id must be a string"),
        (
            {"id": "NRW/GOV/057/arbeitsschutz", "token_required": "yes"},
            "body.token_required must be true or false",
        ),
        ({"id": "NRW/GOV/057/arbeitsschutz", "connection": "ftp"}, "body.connection must be one of"),
        ({}, "missing field(s) id"),
        ([], "body must be a JSON object"),
    ],
)
async def test_bad_bodies_are_400(management: Management, body: Any, message: str) -> None:
    await refused_unchanged(management, "POST", "/clients", SO, body, 400, "invalid_request", message)


async def test_a_body_over_the_bound_is_413(management: Management) -> None:
    body = {"certificate_pem": "A" * (MAX_BODY_BYTES + 1)}
    path = "/clients/NRW:MUN:05774032:gewerbeamt/certificates"
    await refused_unchanged(management, "POST", path, SO, body, 413, "payload_too_large", "exceeds")


async def test_malformed_identifiers_in_the_path_are_422(management: Management) -> None:
    await refused_unchanged(
        management, "DELETE", "/clients/NRW:MUN:0577$4032", SO, None, 422, "refused", "illegal character"
    )


# -- services, endpoints ----------------------------------------------------------------------


async def test_a_service_url_that_is_not_http_is_422(management: Management) -> None:
    body = {"id": BETRIEBE.slash(), "base_url": "ftp://127.0.0.1/betriebe"}
    await refused_unchanged(
        management, "POST", "/services", SA, body, 422, "refused", "base_url must be an http(s) URL"
    )


async def test_a_duplicate_service_is_409(management: Management) -> None:
    assert (await add_betriebe(management))[0] == 201
    body = {"id": BETRIEBE.slash(), "base_url": "http://127.0.0.1:9/other"}
    await refused_unchanged(management, "POST", "/services", SA, body, 409, "conflict", "already configured")


async def test_a_service_of_no_client_here_is_422(management: Management) -> None:
    body = {"id": "NRW/GOV/057/arbeitsschutz/meldungen", "base_url": "http://127.0.0.1:9/"}
    await refused_unchanged(
        management, "POST", "/services", SA, body, 422, "unknown_reference", "not a client"
    )


async def test_a_rest_service_gets_its_openapi_documents_endpoints(management: Management) -> None:
    status, service = await add_betriebe(management, openapi_url=f"{management.backend_url}/openapi.json")
    assert status == 201 and service["openapi_url"].endswith("/openapi.json")
    status, endpoints, _ = await management.call("GET", f"/endpoints?service={BETRIEBE.slash()}", OB)
    assert status == 200
    assert [(e["method"], e["path"], e["from_openapi"]) for e in endpoints] == [
        ("GET", "/betriebe", True),
        ("POST", "/betriebe", True),
        ("GET", "/betriebe/*", True),
        ("DELETE", "/betriebe/*", True),
    ]
    live = management.server.serverconf.current().endpoints_of(BETRIEBE)
    assert EndpointPattern("DELETE", "/betriebe/*") in live
    # Fetched again on request: the same document, the same endpoints.
    status, again, _ = await management.call("PUT", f"{BETRIEBE_PATH}/openapi-endpoints", SA)
    assert (status, again) == (200, endpoints)


async def test_a_failed_fetch_refuses_the_service(management: Management) -> None:
    missing = f"{management.backend_url}/missing.json"
    body = {"id": BETRIEBE.slash(), "base_url": "http://127.0.0.1:9/api", "openapi_url": missing}
    await refused_unchanged(management, "POST", "/services", SA, body, 422, "openapi_unavailable", missing)
    assert management.store.list_services() == []


async def test_a_new_openapi_url_brings_its_endpoints_or_changes_nothing(management: Management) -> None:
    assert (await add_betriebe(management))[0] == 201
    missing = {"openapi_url": f"{management.backend_url}/missing.json"}
    await refused_unchanged(
        management, "PATCH", BETRIEBE_PATH, SA, missing, 422, "openapi_unavailable", "404"
    )
    body = {"openapi_url": f"{management.backend_url}/openapi.json"}
    status, service, _ = await management.call("PATCH", BETRIEBE_PATH, SA, body)
    assert (status, service["openapi_url"]) == (200, body["openapi_url"])
    assert len(management.server.serverconf.current().endpoints_of(BETRIEBE)) == 4


async def test_a_document_with_a_catch_all_endpoint_refuses_the_service(management: Management) -> None:
    body = {
        "id": BETRIEBE.slash(),
        "base_url": "http://127.0.0.1:9/api",
        "openapi_url": f"{management.backend_url}/broad.json",
    }
    await refused_unchanged(management, "POST", "/services", SA, body, 422, "refused", "matches every path")


async def test_an_endpoint_pattern_matching_everything_is_422(management: Management) -> None:
    assert (await add_betriebe(management))[0] == 201
    path = f"{BETRIEBE_PATH}/endpoints"
    for pattern in ("/**", "/*/**"):
        await refused_unchanged(
            management,
            "POST",
            path,
            SA,
            {"method": "GET", "path": pattern},
            422,
            "refused",
            "matches every path",
        )
    status, endpoint, _ = await management.call("POST", path, SA, {"method": "GET", "path": "/betriebe/{id}"})
    assert (status, endpoint["method"], endpoint["path"]) == (201, "GET", "/betriebe/*")
    body = {"method": "GET", "path": "/betriebe/*"}
    await refused_unchanged(management, "POST", path, SA, body, 409, "conflict", "already an endpoint")
    status, _, _ = await management.call("DELETE", f"{path}?method=GET&path=/betriebe/*", SA)
    assert status == 204
    assert management.store.list_endpoints(BETRIEBE) == []


async def test_a_service_is_changed_and_removed(management: Management) -> None:
    assert (await add_betriebe(management))[0] == 201
    status, service, _ = await management.call(
        "PATCH", BETRIEBE_PATH, SA, {"timeout_s": 5, "verify_tls": False}
    )
    assert (status, service["timeout_s"], service["verify_tls"]) == (200, 5.0, False)
    live = management.server.serverconf.current().service(BETRIEBE)
    assert live is not None and live.timeout_s == 5.0
    await refused_unchanged(
        management, "PATCH", BETRIEBE_PATH, SA, {"base_url": "file:///etc"}, 422, "refused", "http(s) URL"
    )
    status, _, _ = await management.call("DELETE", BETRIEBE_PATH, SA)
    assert status == 204 and management.server.serverconf.current().service(BETRIEBE) is None


# -- access rights ----------------------------------------------------------------------------


async def test_a_grant_naming_an_unknown_subsystem_or_group_is_422(management: Management) -> None:
    assert (await add_betriebe(management))[0] == 201
    path = f"{BETRIEBE_PATH}/grants"
    await refused_unchanged(
        management,
        "POST",
        path,
        SA,
        {"subject": "NRW/GOV/057/kfz"},
        422,
        "unknown_reference",
        "NRW/GOV/057/kfz",
    )
    await refused_unchanged(
        management,
        "POST",
        path,
        SA,
        {"subject": "GLOBALGROUP:NRW/nirgendwo"},
        422,
        "unknown_reference",
        "global group NRW/nirgendwo",
    )
    await refused_unchanged(
        management,
        "POST",
        path,
        SA,
        {"subject": "LOCALGROUP:nirgendwo"},
        422,
        "unknown_reference",
        "local group nirgendwo",
    )
    await refused_unchanged(
        management,
        "POST",
        path,
        SA,
        {"subject": "SERVICE:NRW/GOV/057/arbeitsschutz/x"},
        422,
        "refused",
        "granted to",
    )


async def test_grants_to_a_subsystem_a_global_group_and_a_local_group(management: Management) -> None:
    await add_betriebe(management, openapi_url=f"{management.backend_url}/openapi.json")
    path = f"{BETRIEBE_PATH}/grants"
    endpoint = {"method": "GET", "path": "/betriebe/*"}
    status, grant, _ = await management.call(
        "POST", path, SA, {"subject": ARBEITSSCHUTZ.slash(), "endpoint": endpoint}
    )
    assert status == 201
    assert grant == {
        "service": "NRW/MUN/05774032/gewerbeamt/betriebe",
        "subject": str(ARBEITSSCHUTZ),
        "endpoint": endpoint,
    }
    status, _, _ = await management.call("POST", path, SA, {"subject": "GLOBALGROUP:NRW/owl-kommunen"})
    assert status == 201
    status, group, _ = await management.call("POST", "/groups", SO, {"code": "sachbearbeitung"})
    assert (status, group) == (201, {"code": "sachbearbeitung", "description": "", "members": []})
    status, group, _ = await management.call(
        "POST", "/groups/sachbearbeitung/members", SA, {"client": ARBEITSSCHUTZ.slash()}
    )
    assert (status, group["members"]) == (201, [ARBEITSSCHUTZ.slash()])
    status, _, _ = await management.call("POST", path, SA, {"subject": "LOCALGROUP:sachbearbeitung"})
    assert status == 201
    await refused_unchanged(
        management,
        "POST",
        path,
        SA,
        {"subject": "LOCALGROUP:sachbearbeitung"},
        409,
        "conflict",
        "already granted",
    )
    snapshot = management.server.serverconf.current()
    assert {g.subject for g in snapshot.grants} == {
        ARBEITSSCHUTZ,
        GlobalGroupId("NRW", "owl-kommunen"),
        LocalGroupId("sachbearbeitung"),
    }
    assert snapshot.allows(ARBEITSSCHUTZ, BETRIEBE, lambda _: (), method="GET", path="/betriebe/7")
    # A group a right still names is not removed; revoked first, it is.
    await refused_unchanged(
        management, "DELETE", "/groups/sachbearbeitung", SA, None, 409, "conflict", "still granted"
    )
    status, _, _ = await management.call("DELETE", f"{path}?subject=LOCALGROUP:sachbearbeitung", SA)
    assert status == 204
    status, _, _ = await management.call(
        "DELETE", "/groups/sachbearbeitung/members/NRW:GOV:057:arbeitsschutz", SO
    )
    assert status == 204
    status, _, _ = await management.call("DELETE", "/groups/sachbearbeitung", SO)
    assert status == 204
    status, grants, _ = await management.call("GET", f"/grants?service={BETRIEBE.slash()}", OB)
    assert (status, len(grants)) == (200, 2)
    status, _, _ = await management.call(
        "DELETE", f"{path}?subject={ARBEITSSCHUTZ.slash()}&method=GET&path=/betriebe/*", SA
    )
    assert status == 204
    await refused_unchanged(
        management,
        "DELETE",
        f"{path}?subject={ARBEITSSCHUTZ.slash()}",
        SA,
        None,
        422,
        "unknown_reference",
        "has no right",
    )


async def test_a_local_group_member_unknown_to_global_configuration_is_422(management: Management) -> None:
    assert (await management.call("POST", "/groups", SA, {"code": "team"}))[0] == 201
    body = {"client": "NRW/MUN/05774032/kfz"}
    await refused_unchanged(
        management, "POST", "/groups/team/members", SO, body, 422, "unknown_reference", "NRW/MUN/05774032/kfz"
    )
    await refused_unchanged(
        management, "POST", "/groups", SO, {"code": "team"}, 409, "conflict", "already exists"
    )


# -- registration -----------------------------------------------------------------------------


async def test_registering_a_client_answers_202_with_the_registrys_request(management: Management) -> None:
    status, answer, _ = await management.call("POST", "/clients/NRW:MUN:05774032:gewerbeamt/registration", RO)
    assert (status, answer) == (202, {"id": REQUEST_ID, "state": "pending"})
    assert management.registrations.requests == [GEWERBEAMT]
    [entry] = [e for e in management.store.audit_trail() if e["operation"] == "request_registration"]
    assert (entry["actor"], entry["target"]) == ("registration-officer-user", GEWERBEAMT.slash())
    assert entry["after"] == {"request_id": REQUEST_ID, "state": "pending"}


async def test_what_cannot_be_registered(management: Management) -> None:
    path = "/clients/{}/registration"
    status, payload, _ = await management.call("POST", path.format("NRW:GOV:057:arbeitsschutz"), RO)
    assert (status, payload["type"]) == (422, "unknown_reference") and "add it first" in payload["message"]
    status, payload, _ = await management.call("POST", path.format("NRW:MUN:05774032"), RO)
    assert (status, payload["type"]) == (422, "refused") and "is a member" in payload["message"]
    management.registrations.failure = RegistrationFailed("cannot reach http://127.0.0.1:9/registration/v1")
    status, payload, _ = await management.call("POST", path.format("NRW:MUN:05774032:gewerbeamt"), RO)
    assert (status, payload["type"]) == (502, "registry_unavailable")
    management.registrations.failure = RegistrationFailed(
        "the registry refused: duplicate", status=409, kind="conflict"
    )
    status, payload, _ = await management.call("POST", path.format("NRW:MUN:05774032:gewerbeamt"), RO)
    assert (status, payload["type"]) == (409, "conflict")
    assert management.registrations.requests == []


# -- maintenance ------------------------------------------------------------------------------


async def test_maintenance_mode_is_announced_to_the_registry(management: Management) -> None:
    status, answer, _ = await management.call("PUT", "/maintenance", SO, {"enabled": True})
    assert status == 200
    assert answer == {
        "id": REQUEST_ID,
        "server": "NRW/MUN/05774032/ss1",
        "maintenance_mode": True,
        "changed": True,
        "status": "applied",
    }
    assert management.announcements.announced == [True]
    [entry] = [e for e in management.store.audit_trail() if e["operation"] == "announce_maintenance"]
    assert (entry["actor"], entry["target"]) == ("security-officer-user", "NRW/MUN/05774032/ss1")
    assert entry["after"] == {"enabled": True, "request_id": REQUEST_ID, "changed": True}


async def test_what_stops_a_maintenance_announcement(management: Management) -> None:
    status, payload, _ = await management.call("PUT", "/maintenance", SA, {"enabled": True})
    assert (status, payload["type"]) == (403, "forbidden")
    status, payload, _ = await management.call("PUT", "/maintenance", SO, {"enabled": "yes"})
    assert (status, payload["type"]) == (400, "invalid_request")
    management.announcements.failure = RegistrationFailed("cannot reach http://127.0.0.1:9/registration/v1")
    status, payload, _ = await management.call("PUT", "/maintenance", SO, {"enabled": True})
    assert (status, payload["type"]) == (502, "registry_unavailable")
    management.announcements.failure = RegistrationFailed(
        "the registry refused: request id already used", status=409, kind="replayed"
    )
    status, payload, _ = await management.call("PUT", "/maintenance", SO, {"enabled": False})
    assert (status, payload["type"]) == (409, "replayed")
    assert management.announcements.announced == []


# -- monitoring -------------------------------------------------------------------------------


async def test_operational_monitoring_records_and_health(management: Management) -> None:
    at = NOW - dt.timedelta(minutes=5)
    ms = int(at.timestamp() * 1000)
    record = OpmonRecord(
        monitoring_data_ts=int(at.timestamp()),
        security_server_type="Producer",
        request_in_ts=ms,
        response_out_ts=ms + 40,
        client_x_road_instance="NRW",
        client_member_class="GOV",
        client_member_code="057",
        client_subsystem_code="arbeitsschutz",
        service_x_road_instance="NRW",
        service_member_class="MUN",
        service_member_code="05774032",
        service_subsystem_code="gewerbeamt",
        service_code="betriebe",
        succeeded=True,
    )
    assert management.server.opmon.record(record)
    query = "start=2025-03-01T11:00:00Z&end=2025-03-01T12:00:00Z"
    status, records, _ = await management.call(
        "GET", f"/opmon/records?{query}&client={ARBEITSSCHUTZ.slash()}", OB
    )
    assert status == 200 and [r["serviceCode"] for r in records] == ["betriebe"]
    status, records, _ = await management.call("GET", f"/opmon/records?{query}&client=NRW/MUN/05774032", SO)
    assert (status, records) == (200, [])
    status, health, _ = await management.call("GET", "/opmon/health", OB)
    assert status == 200 and health[0]["successfulRequestCount"] == 1
    for bad in (
        "start=yesterday&end=2025-03-01T12:00:00Z",
        "start=2025-03-01T11:00:00&end=2025-03-01T12:00:00Z",
    ):
        status, payload, _ = await management.call("GET", f"/opmon/records?{bad}", OB)
        assert (status, payload["type"]) == (400, "invalid_request")
        assert "ISO 8601 time with a zone" in payload["message"]
    status, payload, _ = await management.call(
        "GET", "/opmon/records?start=2025-03-01T12:00:00Z&end=2025-03-01T11:00:00Z", OB
    )
    assert (status, payload["message"]) == (400, "end is before start")


async def test_metrics_are_served_without_a_token(management: Management) -> None:
    status, text, headers = await management.call("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "xweg_exchanges" in text


async def test_an_unexpected_failure_is_500_without_a_traceback(management: Management) -> None:
    class Broken:
        async def health(self) -> list[dict[str, Any]]:
            raise RuntimeError("disk on fire at /var/lib/xweg")

    management.server.opmon = Broken()  # type: ignore[assignment]
    status, payload, headers = await management.call("GET", "/opmon/health", OB)
    assert (status, payload["type"]) == (500, "internal")
    assert "disk" not in payload["message"] and payload["detail"] == headers["X-Correlation-Id"]
