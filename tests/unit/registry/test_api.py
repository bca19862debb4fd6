"""The management API: roles, bad input, duplicates, the audit trail, and the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jsonschema_rs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from structlog.testing import capture_logs

from core.identifiers import SecurityServerId
from registry.api import MAX_BODY_BYTES, ROLES, make_api
from registry.openapi import openapi_document
from tests.unit.registry.apihelpers import Api, api
from tests.unit.registry.dbfixtures import database_url
from tests.unit.trust.helpers import MEMBER, NOW, Pki
from trust.ca import CertificateAuthority
from trust.certificates import fingerprint
from trust.keys import generate_private_key, make_csr
from xweg.cli import main

__all__ = ["api", "database_url"]

DOC = openapi_document()
ADD_MEMBER = {"member_class": "MUN", "member_code": "05774020", "name": "Stadt Delbrück"}
SERVICE = {
    "provider": "NRW/MUN/05774032/gewerbeamt",
    "code": "gewerbeanzeige",
    "version": "v1",
    "protocol": "REST",
    "standard": "XGewerbeanzeige 2.2",
    "authorities": ["MELDID:05774032"],
    "area": "05774032",
}


def pem_text(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# A CA the federation has not approved yet, and a TSA it certifies.
LIPPE_CA = CertificateAuthority.create_root("Kreis Lippe Root CA", generate_private_key(), now=NOW)
LIPPE_TSA = LIPPE_CA.issue_tsa_certificate(make_csr(generate_private_key(), "t"), "Lippe TSA", now=NOW)
ADD_CA = {"certificate_pem": pem_text(LIPPE_CA.certificate)}
ADD_TSA = {"name": "Lippe TSA", "url": "http://127.0.0.1:8889/", "certificate_pem": pem_text(LIPPE_TSA)}
PADERBORN_MAINTENANCE = "/security-servers/MUN/05774032/ss1/maintenance"


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    responses = DOC["paths"][path][method]["responses"]
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": DOC["components"]}


async def call(
    api: Api, method: str, path: str, role: str | None = "registry-admin", body: Any = None, **kwargs: Any
) -> tuple[int, Any, Any]:
    """Call ``path`` (under /api/v1) and check the answer against the documented schema."""
    headers = api.auth(role) if role else {}
    if body is not None:
        kwargs["data"] = body if isinstance(body, bytes) else json.dumps(body)
        headers["Content-Type"] = "application/json"
    async with api.client.request(method, "/api/v1" + path, headers=headers, **kwargs) as response:
        payload = await response.json()
        status, response_headers = response.status, response.headers.copy()
    template = response.request_info.url.path  # resolved below to the documented template
    documented = next((p for p in DOC["paths"] if _matches(p, path.split("?")[0])), None)
    assert documented is not None, template
    jsonschema_rs.validate(response_schema(documented, method.lower(), status), payload)
    return status, payload, response_headers


def _matches(template: str, path: str) -> bool:
    parts, actual = template.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(actual) and all(
        p.startswith("{") or p == a for p, a in zip(parts, actual, strict=True)
    )


def auth_pem(pki: Pki, server: SecurityServerId) -> str:
    from cryptography.hazmat.primitives import serialization

    cert = pki.ca.issue_auth_certificate(
        make_csr(generate_private_key(), "x"), server, now=NOW - dt.timedelta(days=1)
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# -- authentication and roles ---------------------------------------------------------------


async def test_openapi_document_is_served_without_a_token(api: Api) -> None:
    async with api.client.get("/openapi.json") as response:
        assert response.status == 200
        assert await response.json() == DOC


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwdw==",
        "Bearer not.a.token",
        "Bearer " + "a" * 8100,
    ],
)
async def test_without_a_valid_token_401(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with api.client.get("/api/v1/members", headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
    assert body["type"] == "unauthorized" and body["detail"] == response.headers["X-Correlation-Id"]


async def test_tokens_of_another_key_or_expired_are_401(api: Api) -> None:
    from registry.api import issue_registry_token

    foreign = issue_registry_token(generate_private_key(), subject="eve", role="registry-admin", now=NOW)
    expired = api.token("registry-admin", now=NOW - dt.timedelta(days=1))
    for token in (foreign, expired):
        async with api.client.get("/api/v1/members", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 401


# (method, path, body, roles allowed)
CALLS: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/members", None, set(ROLES)),
    ("GET", "/members/MUN/05774032", None, set(ROLES)),
    ("GET", "/security-servers", None, set(ROLES)),
    ("GET", "/groups", None, set(ROLES)),
    ("GET", "/services", None, set(ROLES)),
    ("GET", "/globalconf", None, set(ROLES)),
    ("GET", "/audit-trail", None, {"registry-admin", "observer"}),
    ("POST", "/members", ADD_MEMBER, {"registry-admin"}),
    ("POST", "/groups", {"code": "neu"}, {"registry-admin"}),
    ("POST", "/groups/owl-kommunen/members", {"member": "NRW/MUN/05774032"}, {"registry-admin"}),
    (
        "POST",
        "/members/MUN/05774032/subsystems",
        {"code": "bauamt"},
        {"registry-admin", "registration-officer"},
    ),
    ("POST", "/services", SERVICE, {"registry-admin", "registration-officer"}),
    (
        "POST",
        "/security-servers/MUN/05711000/ss1/clients",
        {"client": "NRW/MUN/05711000"},
        {"registry-admin", "registration-officer"},
    ),
    ("GET", "/approved-cas", None, set(ROLES)),
    ("GET", "/approved-tsas", None, set(ROLES)),
    ("POST", "/approved-cas", ADD_CA, {"registry-admin"}),
    ("POST", "/approved-tsas", ADD_TSA, {"registry-admin"}),  # after its CA
    (
        "PUT",
        PADERBORN_MAINTENANCE,
        {"maintenance_mode": True},
        {"registry-admin", "registration-officer"},
    ),
]


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_is_allowed_and_refused_as_documented(api: Api, role: str) -> None:
    for method, path, body, allowed in CALLS:
        before = api.store.audit_trail()
        status, payload, _ = await call(api, method, path, role, body)
        if role in allowed:
            assert status in (200, 201), (method, path, payload)
        else:
            assert status == 403, (method, path, payload)
            assert payload["type"] == "forbidden"
            assert api.store.audit_trail() == before
        documented = DOC["paths"][next(p for p in DOC["paths"] if _matches(p, path))][method.lower()]
        assert set(documented["x-roles"]) == allowed


async def test_officer_adds_a_security_server(api: Api, pki: Pki) -> None:
    server = SecurityServerId(MEMBER, "ss2")
    cert_pem = auth_pem(pki, server)
    body: dict[str, Any] = {
        "owner": "NRW/MUN/05774032",
        "code": "ss2",
        "address": "127.0.0.1:5512",
        "auth_certificate_pem": cert_pem,
        "clients": ["NRW/MUN/05774032/gewerbeamt"],
    }
    status, payload, _ = await call(api, "POST", "/security-servers", "registration-officer", body)
    assert status == 201
    assert payload["id"] == "NRW/MUN/05774032/ss2"
    assert payload["clients"] == ["NRW/MUN/05774032/gewerbeamt"]
    status, _, _ = await call(api, "POST", "/security-servers", "observer", body)
    assert status == 403
    status, payload, _ = await call(api, "POST", "/security-servers", "registry-admin", body)
    assert status == 409, payload
    from cryptography import x509

    assert (
        fingerprint(x509.load_pem_x509_certificate(cert_pem.encode()))
        in ((await call(api, "GET", "/security-servers", "observer"))[1][-1]["auth_certificate_fingerprints"])
    )


# -- reads ----------------------------------------------------------------------------------


async def test_reads(api: Api) -> None:
    status, member, _ = await call(api, "GET", "/members/MUN/05774032", "observer")
    assert status == 200
    assert member == {
        "id": "NRW/MUN/05774032",
        "member_class": "MUN",
        "member_code": "05774032",
        "name": "Stadt Paderborn",
        "subsystems": ["gewerbeamt"],
    }
    status, body, _ = await call(api, "GET", "/members/MUN/99999999", "observer")
    assert (status, body["type"]) == (404, "not_found")
    status, conf, _ = await call(api, "GET", "/globalconf", "observer")
    assert status == 200 and conf["instance"] == "NRW"
    await call(api, "POST", "/services", "registry-admin", SERVICE)
    status, services, _ = await call(api, "GET", "/services?area=05774032", "observer")
    assert [s["service"] for s in services] == ["NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"]
    status, services, _ = await call(api, "GET", "/services?area=05711000", "observer")
    assert services == []


async def test_unknown_path_and_method_are_json_errors(api: Api) -> None:
    async with api.client.get("/api/v1/nothing", headers=api.auth("observer")) as r:
        assert r.status == 404 and (await r.json())["type"] == "not_found"
    async with api.client.delete("/api/v1/members", headers=api.auth("registry-admin")) as r:
        assert r.status == 405 and "detail" in await r.json()


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[]", "invalid_request"),
        ({**ADD_MEMBER, "admin": True}, "invalid_request"),
        ({"member_class": "MUN", "member_code": "1"}, "invalid_request"),
        ({**ADD_MEMBER, "name": 5}, "invalid_request"),
        ({**ADD_MEMBER, "name": "x" * 5000}, "invalid_request"),
    ],
)
async def test_bad_bodies_are_400_and_write_nothing(api: Api, body: Any, kind: str) -> None:
    counts = api.store.counts()
    status, payload, _ = await call(api, "POST", "/members", "registry-admin", body)
    assert (status, payload["type"]) == (400, kind)
    assert api.store.counts() == counts


async def test_oversize_body_is_413(api: Api) -> None:
    counts = api.store.counts()
    big = {**ADD_MEMBER, "name": "x" * (MAX_BODY_BYTES + 1)}
    status, payload, _ = await call(api, "POST", "/members", "registry-admin", big)
    assert (status, payload["type"]) == (413, "payload_too_large")

    async def chunks() -> Any:  # no Content-Length: the stream itself is bounded
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    async with api.client.post(
        "/api/v1/members", data=chunks(), headers=api.auth("registry-admin")
    ) as response:
        assert response.status == 413
    assert api.store.counts() == counts


SERVER_CLIENTS = "/security-servers/MUN/05774032/ss1/clients"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind", "message"),
    [
        # RegistryConflict: 409, type conflict
        ("POST", "/members", {**ADD_MEMBER, "member_code": "05774032"}, 409, "conflict", "duplicate member"),
        ("POST", "/members/MUN/05774032/subsystems", {"code": "gewerbeamt"}, 409, "conflict", "duplicate"),
        ("POST", "/groups", {"code": "owl-kommunen"}, 409, "conflict", "duplicate global group"),
        (
            "POST", "/groups/owl-kommunen/members", {"member": "NRW/MUN/05774032/gewerbeamt"},
            409, "conflict", "is already a member of global group owl-kommunen",
        ),
        (
            "POST", SERVER_CLIENTS, {"client": "NRW/MUN/05774032"},
            409, "conflict", "SERVER:NRW/MUN/05774032/ss1 already hosts MEMBER:NRW/MUN/05774032",
        ),
        # RegistryNotFound: 422, type unknown_reference
        (
            "POST", "/members", {**ADD_MEMBER, "member_class": "XYZ"},
            422, "unknown_reference", "unknown member class XYZ",
        ),
        (
            "POST", "/members/MUN/12345678/subsystems", {"code": "bauamt"},
            422, "unknown_reference", "MEMBER:NRW/MUN/12345678 is not a registered member",
        ),
        (
            "POST", "/services", {**SERVICE, "provider": "NRW/MUN/12345678/x"},
            422, "unknown_reference", "is not a registered member",
        ),
        (
            "POST", "/groups/nope/members", {"member": "NRW/MUN/05774032"},
            422, "unknown_reference", "global group nope does not exist",
        ),
        (
            "POST", "/security-servers/MUN/05774032/ss9/clients", {"client": "NRW/MUN/05774032"},
            422, "unknown_reference", "SERVER:NRW/MUN/05774032/ss9 is not a registered security server",
        ),
        (
            "PUT", "/security-servers/MUN/05774032/ss9/maintenance", {"maintenance_mode": True},
            422, "unknown_reference", "SERVER:NRW/MUN/05774032/ss9 is not a registered security server",
        ),
        (
            "POST", SERVER_CLIENTS, {"client": "NRW/MUN/05774032/kfz"},
            422, "unknown_reference", "is not a subsystem of MEMBER:NRW/MUN/05774032",
        ),
        # any other RegistryError, or a bad identifier in the path: 422, type refused
        ("POST", "/members", {**ADD_MEMBER, "member_code": "0577/4020"}, 422, "refused", "illegal character"),
        ("POST", "/members", {**ADD_MEMBER, "member_code": "05774020:x"}, 422, "refused", "illegal"),
        ("POST", "/members/MUN/0577:4032/subsystems", {"code": "bauamt"}, 422, "refused", "illegal"),
        ("POST", "/services", {**SERVICE, "area": "abc"}, 422, "refused", "must be a municipality key"),
        ("POST", "/approved-cas", {"certificate_pem": "hello"}, 422, "refused", "not a PEM certificate"),
    ],
)  # fmt: skip
async def test_refused_changes_write_nothing_not_even_the_audit_trail(
    api: Api, method: str, path: str, body: Any, status: int, kind: str, message: str
) -> None:
    counts, trail = api.store.counts(), api.store.audit_trail()
    with capture_logs() as logs:
        got, payload, headers = await call(api, method, path, "registry-admin", body)
    assert got == status, payload
    assert payload["type"] == kind
    assert message in payload["message"]
    assert payload["detail"] == headers["X-Correlation-Id"]
    assert "Traceback" not in payload["message"]
    assert api.store.counts() == counts
    assert api.store.audit_trail() == trail
    assert not [e for e in logs if e["event"] == "registry.audit"]


async def test_duplicate_service_is_409(api: Api) -> None:
    assert (await call(api, "POST", "/services", "registration-officer", SERVICE))[0] == 201
    trail = api.store.audit_trail()
    assert (await call(api, "POST", "/services", "registration-officer", SERVICE))[0] == 409
    assert api.store.audit_trail() == trail


# -- approved CAs and TSAs, maintenance mode --------------------------------------------------


async def refused_unchanged(
    api: Api, method: str, path: str, role: str | None, body: Any, status: int, kind: str
) -> dict[str, Any]:
    """Call, expect ``status`` and ``kind``, and check that nothing was written."""
    counts, trail = api.store.counts(), api.store.audit_trail()
    got, payload, _ = await call(api, method, path, role, body)
    assert (got, payload["type"]) == (status, kind), payload
    assert api.store.counts() == counts
    assert api.store.audit_trail() == trail
    return dict(payload)


async def test_approved_cas_are_listed_and_approved_with_an_audit_entry(api: Api, pki: Pki) -> None:
    status, cas, _ = await call(api, "GET", "/approved-cas", "observer")
    assert status == 200
    assert cas == [
        {
            "fingerprint": fingerprint(pki.ca.certificate),
            "subject": "CN=xweg NRW Root CA",
            "not_after": pki.ca.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "intermediate_fingerprints": [],
            "ocsp_url": None,
            "ocsp_responder_fingerprints": [],
        }
    ]
    issuing = CertificateAuthority.create_intermediate(
        LIPPE_CA, "Kreis Lippe Issuing CA", generate_private_key(), now=NOW
    )
    responder = issuing.issue_ocsp_responder_certificate(
        generate_private_key().public_key(), "Kreis Lippe OCSP", now=NOW
    )
    body = {
        **ADD_CA,
        "intermediates_pem": [pem_text(issuing.certificate)],
        "ocsp_url": "http://127.0.0.1:8888/ocsp",
        "ocsp_responders_pem": [pem_text(responder)],
    }
    await refused_unchanged(api, "POST", "/approved-cas", None, body, 401, "unauthorized")
    await refused_unchanged(api, "POST", "/approved-cas", "registration-officer", body, 403, "forbidden")

    status, added, headers = await call(api, "POST", "/approved-cas", "registry-admin", body)
    assert status == 201
    assert added == {
        "fingerprint": fingerprint(LIPPE_CA.certificate),
        "subject": "CN=Kreis Lippe Root CA",
        "not_after": LIPPE_CA.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "intermediate_fingerprints": [fingerprint(issuing.certificate)],
        "ocsp_url": "http://127.0.0.1:8888/ocsp",
        "ocsp_responder_fingerprints": [fingerprint(responder)],
    }
    assert (await call(api, "GET", "/approved-cas", "observer"))[1] == [*cas, added]
    entry = api.store.audit_trail()[-1]
    assert (entry.actor, entry.operation, entry.target) == (
        "registry-admin-user",
        "add_approved_ca",
        fingerprint(LIPPE_CA.certificate),
    )
    assert (entry.before, entry.after, entry.correlation_id) == (None, added, headers["X-Correlation-Id"])
    assert "BEGIN CERTIFICATE" not in json.dumps(entry.to_dict())

    payload = await refused_unchanged(api, "POST", "/approved-cas", "registry-admin", ADD_CA, 409, "conflict")
    assert payload["message"].endswith("is already an approved CA")
    payload = await refused_unchanged(
        api,
        "POST",
        "/approved-cas",
        "registry-admin",
        {"certificate_pem": pem_text(pki.auth_cert)},
        422,
        "refused",
    )
    assert "is not a CA certificate" in payload["message"]
    no_url = {
        "certificate_pem": pem_text(pki.foreign_ca.certificate),
        "ocsp_responders_pem": [pem_text(responder)],
    }
    payload = await refused_unchanged(api, "POST", "/approved-cas", "registry-admin", no_url, 422, "refused")
    assert payload["message"].endswith("lists OCSP responders but no URL")
    for bad in ({**ADD_CA, "ocsp_url": 5}, {**ADD_CA, "intermediates_pem": "x"}, {**ADD_CA, "pem": "x"}):
        await refused_unchanged(api, "POST", "/approved-cas", "registry-admin", bad, 400, "invalid_request")


async def test_approved_tsas_need_an_approved_ca_and_a_new_name(api: Api, pki: Pki) -> None:
    status, tsas, _ = await call(api, "GET", "/approved-tsas", "observer")
    assert (status, tsas) == (200, [])
    unapproved = {**ADD_TSA, "certificate_pem": pem_text(LIPPE_TSA)}  # Kreis Lippe's CA is not approved
    payload = await refused_unchanged(
        api, "POST", "/approved-tsas", "registry-admin", unapproved, 422, "refused"
    )
    assert payload["message"].endswith("was not issued by an approved CA")

    tsa = pki.ca.issue_tsa_certificate(make_csr(generate_private_key(), "t"), "IT.NRW TSA", now=NOW)
    body = {"name": "IT.NRW TSA", "url": "http://127.0.0.1:8889/", "certificate_pem": pem_text(tsa)}
    await refused_unchanged(api, "POST", "/approved-tsas", None, body, 401, "unauthorized")
    await refused_unchanged(api, "POST", "/approved-tsas", "registration-officer", body, 403, "forbidden")
    status, added, _ = await call(api, "POST", "/approved-tsas", "registry-admin", body)
    assert status == 201
    assert added == {
        "name": "IT.NRW TSA",
        "url": "http://127.0.0.1:8889/",
        "fingerprint": fingerprint(tsa),
        "subject": "CN=IT.NRW TSA",
        "not_after": tsa.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    entry = api.store.audit_trail()[-1]
    assert (entry.operation, entry.target, entry.before, entry.after) == (
        "add_approved_tsa",
        "IT.NRW TSA",
        None,
        added,
    )
    payload = await refused_unchanged(api, "POST", "/approved-tsas", "registry-admin", body, 409, "conflict")
    assert payload["message"] == "duplicate approved TSA IT.NRW TSA"
    status, tsas, _ = await call(api, "GET", "/approved-tsas", "observer")
    assert (status, tsas) == (200, [added])
    status, conf, _ = await call(api, "GET", "/globalconf", "observer")
    assert [t["name"] for t in conf["approved_tsas"]] == ["IT.NRW TSA"]


async def test_maintenance_mode_is_set_shown_and_audited(api: Api) -> None:
    status, servers, _ = await call(api, "GET", "/security-servers", "observer")
    assert [(s["id"], s["maintenance_mode"]) for s in servers] == [
        ("NRW/MUN/05774032/ss1", False),
        ("NRW/MUN/05711000/ss1", False),
    ]
    on = {"maintenance_mode": True}
    await refused_unchanged(api, "PUT", PADERBORN_MAINTENANCE, None, on, 401, "unauthorized")
    await refused_unchanged(api, "PUT", PADERBORN_MAINTENANCE, "observer", on, 403, "forbidden")

    status, server, headers = await call(api, "PUT", PADERBORN_MAINTENANCE, "registration-officer", on)
    assert (status, server["id"], server["maintenance_mode"]) == (200, "NRW/MUN/05774032/ss1", True)
    entry = api.store.audit_trail()[-1]
    assert (entry.actor, entry.operation, entry.target, entry.before, entry.after) == (
        "registration-officer-user",
        "set_maintenance_mode",
        "NRW/MUN/05774032/ss1",
        {"maintenance_mode": False},
        {"maintenance_mode": True},
    )
    assert entry.correlation_id == headers["X-Correlation-Id"]
    status, servers, _ = await call(api, "GET", "/security-servers", "observer")
    assert [s["maintenance_mode"] for s in servers] == [True, False]

    # Idempotent: the same mode again answers the server and writes nothing.
    trail = api.store.audit_trail()
    status, again, _ = await call(api, "PUT", PADERBORN_MAINTENANCE, "registry-admin", on)
    assert (status, again) == (200, server)
    assert api.store.audit_trail() == trail

    status, server, _ = await call(
        api, "PUT", PADERBORN_MAINTENANCE, "registry-admin", {"maintenance_mode": False}
    )
    assert (status, server["maintenance_mode"]) == (200, False)
    assert [(e.operation, e.after) for e in api.store.audit_trail()[len(trail) :]] == [
        ("set_maintenance_mode", {"maintenance_mode": False})
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"maintenance_mode": "true"},
        {"maintenance_mode": 1},
        {"maintenance_mode": None},
        {"maintenance_mode": [True]},
        {},
        {"maintenance_mode": True, "reason": "update"},
    ],
)
async def test_maintenance_mode_must_be_a_boolean(api: Api, body: Any) -> None:
    payload = await refused_unchanged(
        api, "PUT", PADERBORN_MAINTENANCE, "registry-admin", body, 400, "invalid_request"
    )
    assert payload["message"].startswith("body")
    assert set(api.store.maintenance_modes().values()) == {False}


# -- the audit trail ------------------------------------------------------------------------


async def test_every_change_is_in_the_audit_trail_and_the_log(api: Api) -> None:
    with capture_logs() as logs:
        status, _, headers = await call(api, "POST", "/members", "registry-admin", ADD_MEMBER)
        assert status == 201
        await call(
            api, "POST", "/members/MUN/05774020/subsystems", "registration-officer", {"code": "bauamt"}
        )
    imported, *entries = api.store.audit_trail()
    assert (imported.actor, imported.operation) == ("local", "import_definition")  # the fixture's import
    assert [(e.actor, e.operation, e.target) for e in entries] == [
        ("registry-admin-user", "add_member", "NRW/MUN/05774020"),
        ("registration-officer-user", "add_subsystem", "NRW/MUN/05774020"),
    ]
    assert entries[0].before is None and entries[0].after == {"name": "Stadt Delbrück", "subsystems": []}
    assert entries[1].before == {"subsystems": []} and entries[1].after == {"subsystems": ["bauamt"]}
    assert entries[0].at == NOW and entries[0].correlation_id == headers["X-Correlation-Id"]
    audit_logs = [e for e in logs if e["event"] == "registry.audit"]
    assert [(e["actor"], e["operation"]) for e in audit_logs] == [
        ("registry-admin-user", "add_member"),
        ("registration-officer-user", "add_subsystem"),
    ]
    status, listed, _ = await call(api, "GET", f"/audit-trail?after_id={imported.id}&limit=1", "observer")
    assert status == 200 and [e["operation"] for e in listed] == ["add_member"]
    status, listed, _ = await call(api, "GET", f"/audit-trail?after_id={listed[0]['id']}", "observer")
    assert [e["operation"] for e in listed] == ["add_subsystem"]
    status, payload, _ = await call(api, "GET", "/audit-trail?limit=0", "observer")
    assert status == 400


# -- the document matches the router --------------------------------------------------------


def test_every_route_is_documented_and_every_operation_exists() -> None:
    routes = {
        (resource.canonical, route.method.lower())
        for resource in make_api().router.resources()
        for route in resource
    }
    documented = {(path, method) for path, operations in DOC["paths"].items() for method in operations}
    assert routes == documented


def test_every_documented_operation_declares_its_errors_and_roles() -> None:
    for path, operations in DOC["paths"].items():
        for method, operation in operations.items():
            assert set(operation["x-roles"]) <= set(ROLES), path
            assert {"400", "401", "403"} <= set(operation["responses"]), (path, method)
            if method == "post":
                assert {"409", "413", "422"} <= set(operation["responses"]), path


# -- issuing tokens -------------------------------------------------------------------------


async def test_cli_issues_a_token_the_api_accepts(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "registry",
            "token",
            "issue",
            "--role",
            "observer",
            "--subject",
            "ana",
            "--config",
            str(api.files.registry_config),
        ]
    )
    token = capsys.readouterr().out.strip()
    assert code == 0
    from registry.api import verify_registry_token

    identity = verify_registry_token(token, api.key.public_key(), now=dt.datetime.now(dt.UTC))
    assert (identity.subject, identity.role) == ("ana", "observer")
    with pytest.raises(SystemExit) as exited:
        main(["registry", "token", "issue", "--role", "root", "--subject", "x", "--config", "r.toml"])
    assert exited.value.code == 2
