"""Registration requests through the management API: officers list and decide them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from core.identifiers import SecurityServerId
from registry.store import RegistrationEntry
from tests.unit.registry.apihelpers import Api, api
from tests.unit.registry.dbfixtures import database_url
from tests.unit.registry.test_api import call
from tests.unit.trust.helpers import MEMBER, NOW, Pki
from trust.keys import generate_private_key, make_csr
from trust.registration import (
    RegistrationKind,
    RegistrationRequest,
    sign_auth_cert_registration,
    verify_registration,
)

__all__ = ["api", "database_url"]

NEW_SERVER = SecurityServerId(MEMBER, "ss2")


def submit(api: Api, pki: Pki) -> RegistrationEntry:
    """Paderborn's second server asks to register (as /registration/v1 would record it)."""
    key = generate_private_key()
    cert = pki.ca.issue_auth_certificate(make_csr(key, "ss2"), NEW_SERVER, now=NOW - dt.timedelta(days=1))
    request = RegistrationRequest(
        RegistrationKind.AUTH_CERT, NEW_SERVER, NOW, address="10.0.0.2:5500", auth_certificate=cert
    )
    signed = sign_auth_cert_registration(
        request, auth_key=key, owner_sign_key=pki.member_key, owner_sign_certificate=pki.sign_cert
    )
    return api.store.submit_registration(verify_registration(signed, pki.trust, NOW), signed.to_json())


async def test_officer_lists_and_approves(api: Api, pki: Pki) -> None:
    entry = submit(api, pki)
    status, listed, _ = await call(api, "GET", "/registration-requests?status=pending", "observer")
    assert status == 200
    assert [(e["id"], e["kind"], e["server"], e["status"]) for e in listed] == [
        (entry.id, "auth-cert", NEW_SERVER.slash(), "pending")
    ]
    status, decided, _ = await call(
        api,
        "POST",
        f"/registration-requests/{entry.id}/decision",
        "registration-officer",
        {"decision": "approve"},
    )
    assert status == 200
    assert (decided["status"], decided["decided_by"]) == ("approved", "registration-officer-user")
    status, servers, _ = await call(api, "GET", "/security-servers", "observer")
    assert {"id": NEW_SERVER.slash(), "address": "10.0.0.2:5500"}.items() <= next(
        s for s in servers if s["id"] == NEW_SERVER.slash()
    ).items()
    trail = api.store.audit_trail(limit=1000)
    assert [e.operation for e in trail][-2:] == ["register_auth_certificate", "approve_registration"]
    assert trail[-1].actor == "registration-officer-user" and trail[-1].correlation_id


async def test_rejection_needs_a_reason(api: Api, pki: Pki) -> None:
    entry = submit(api, pki)
    path = f"/registration-requests/{entry.id}/decision"
    status, error, _ = await call(api, "POST", path, "registration-officer", {"decision": "reject"})
    assert (status, error["type"]) == (422, "refused")
    assert "needs a reason" in error["message"]
    status, decided, _ = await call(
        api, "POST", path, "registration-officer", {"decision": "reject", "reason": "unknown address"}
    )
    assert (status, decided["status"], decided["reason"]) == (200, "rejected", "unknown address")


async def test_a_decided_request_is_409(api: Api, pki: Pki) -> None:
    entry = submit(api, pki)
    path = f"/registration-requests/{entry.id}/decision"
    assert (await call(api, "POST", path, "registration-officer", {"decision": "revoke"}))[0] == 200
    trail = api.store.audit_trail(limit=1000)
    status, error, _ = await call(api, "POST", path, "registration-officer", {"decision": "approve"})
    assert (status, error["type"]) == (409, "conflict")
    assert "was already revoked" in error["message"]
    assert api.store.audit_trail(limit=1000) == trail


async def test_observers_cannot_decide(api: Api, pki: Pki) -> None:
    entry = submit(api, pki)
    path = f"/registration-requests/{entry.id}/decision"
    status, error, _ = await call(api, "POST", path, "observer", {"decision": "approve"})
    assert (status, error["type"]) == (403, "forbidden")
    assert api.store.registration(entry.id).status == "pending"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/registration-requests/00000000-0000-4000-8000-000000000000", None),
        (
            "POST",
            "/registration-requests/00000000-0000-4000-8000-000000000000/decision",
            {"decision": "approve"},
        ),
    ],
)
async def test_unknown_request_is_404(api: Api, method: str, path: str, body: Any) -> None:
    status, error, _ = await call(api, method, path, "registry-admin", body)
    assert (status, error["type"]) == (404, "not_found")


@pytest.mark.parametrize(
    "body",
    [{"decision": "delete"}, {"decision": "approve", "by": "me"}, {}, {"decision": "reject", "reason": 1}],
)
async def test_bad_decision_bodies_are_400(api: Api, pki: Pki, body: Any) -> None:
    entry = submit(api, pki)
    status, error, _ = await call(
        api, "POST", f"/registration-requests/{entry.id}/decision", "registry-admin", body
    )
    assert (status, error["type"]) == (400, "invalid_request")
    assert api.store.registration(entry.id).status == "pending"


async def test_bad_status_filter_is_400(api: Api) -> None:
    status, error, _ = await call(api, "GET", "/registration-requests?status=done", "observer")
    assert (status, error["type"]) == (400, "invalid_request")
