"""``POST /registration/v1/maintenance`` on a real registry app: announcements, and forgeries."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from core.identifiers import SecurityServerId
from registry.server import STATE_KEY
from registry.store import AuditContext
from tests.unit.registry.dbfixtures import database_url
from tests.unit.registry.test_registration_http import Registry, open_registry, pem
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, SERVER, Pki
from trust.keys import generate_private_key, make_csr
from trust.maintenance import MaintenanceRequest, SignedMaintenanceRequest, sign_maintenance_request

__all__ = ["database_url"]

PATH = "/registration/v1/maintenance"
OTHER_SERVER = SecurityServerId(OTHER_MEMBER, "ss1")


@dataclasses.dataclass
class Announcer:
    registry: Registry
    other_key: ec.EllipticCurvePrivateKey
    other_cert: x509.Certificate  # OTHER_SERVER's auth certificate, registered for it

    def sign(
        self,
        request: MaintenanceRequest | None = None,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        cert: x509.Certificate | None = None,
    ) -> SignedMaintenanceRequest:
        pki = self.registry.pki
        cert = cert or pki.chain_auth_cert
        return sign_maintenance_request(
            request or MaintenanceRequest(SERVER, True, NOW),
            auth_key=key or pki.server_key,
            auth_certificate=cert,
            ocsp_response=self.registry.ocsp(cert),
        )

    async def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        client = self.registry.client
        async with client.post(PATH, data=body, headers={"Content-Type": "application/json"}) as resp:
            return resp.status, await resp.json()

    def mode(self, server: SecurityServerId = SERVER) -> bool:
        return self.registry.store.maintenance_modes()[server]


@pytest.fixture
async def announcer(tmp_path: Path, database_url: str, pki: Pki) -> AsyncIterator[Announcer]:
    registry = await open_registry(tmp_path, database_url, pki)
    store = registry.store
    store.add_security_server(MEMBER, "ss1", "127.0.0.1:5500", pem(pki.chain_auth_cert))
    other_key = generate_private_key()
    other_cert = pki.issuing.issue_auth_certificate(
        make_csr(other_key, "o"), OTHER_SERVER, now=NOW - dt.timedelta(days=1)
    )
    store.add_security_server(OTHER_MEMBER, "ss1", "127.0.0.1:5600", pem(other_cert))
    yield Announcer(registry, other_key, other_cert)
    await registry.client.close()
    store.close()


async def test_a_servers_announcement_is_applied_audited_and_published(announcer: Announcer) -> None:
    app = announcer.registry.client.app
    assert app is not None
    before = app[STATE_KEY].current.conf
    assert not any(s.maintenance_mode for s in before.security_servers)
    request = MaintenanceRequest(SERVER, True, NOW)

    status, body = await announcer.post(announcer.sign(request).to_json())

    assert status == 200
    assert body == {
        "id": request.request_id,
        "kind": "maintenance",
        "server": SERVER.slash(),
        "maintenance_mode": True,
        "changed": True,
        "status": "applied",
    }
    assert announcer.mode() is True
    assert announcer.mode(OTHER_SERVER) is False
    [entry] = [
        e for e in announcer.registry.store.audit_trail(limit=1000) if e.operation == "set_maintenance_mode"
    ]
    assert (entry.actor, entry.target, entry.before, entry.after) == (
        SERVER.slash(),
        SERVER.slash(),
        {"maintenance_mode": False},
        {"maintenance_mode": True},
    )
    assert entry.correlation_id
    # The registry's change poll (0.1 s here) publishes the flag without waiting for the interval.
    for _ in range(100):
        if app[STATE_KEY].current.conf.serial > before.serial:
            break
        await asyncio.sleep(0.05)
    published = {s.id: s.maintenance_mode for s in app[STATE_KEY].current.conf.security_servers}
    assert published == {SERVER: True, OTHER_SERVER: False}


async def test_announcing_the_mode_a_server_has_changes_nothing(announcer: Announcer) -> None:
    status, body = await announcer.post(announcer.sign(MaintenanceRequest(SERVER, False, NOW)).to_json())
    assert (status, body["maintenance_mode"], body["changed"]) == (200, False, False)
    assert not [
        e for e in announcer.registry.store.audit_trail(limit=1000) if e.operation == "set_maintenance_mode"
    ]


async def test_on_then_off(announcer: Announcer) -> None:
    assert (await announcer.post(announcer.sign(MaintenanceRequest(SERVER, True, NOW)).to_json()))[0] == 200
    later = NOW + dt.timedelta(seconds=30)
    status, body = await announcer.post(announcer.sign(MaintenanceRequest(SERVER, False, later)).to_json())
    assert (status, body["changed"]) == (200, True)
    assert announcer.mode() is False


# -- what an attacker sends: each refused with its code, the flag unchanged ----------------------


async def refused(announcer: Announcer, body: bytes, status: int, kind: str) -> dict[str, Any]:
    trail = len(announcer.registry.store.audit_trail(limit=1000))
    got, error = await announcer.post(body)
    assert (got, error["type"]) == (status, kind), error
    assert error["detail"]  # a correlation id to quote
    assert announcer.mode() is False
    assert announcer.mode(OTHER_SERVER) is False
    assert len(announcer.registry.store.audit_trail(limit=1000)) == trail
    return error


async def test_signed_by_another_servers_key(announcer: Announcer) -> None:
    # Detmold's server holds a valid, registered auth certificate -- for itself.
    forged = announcer.sign(key=announcer.other_key, cert=announcer.other_cert)
    error = await refused(announcer, forged.to_json(), 422, "auth_certificate")
    assert f"not to {SERVER}" in error["message"]


async def test_signed_by_a_certificate_for_the_server_that_was_never_registered(announcer: Announcer) -> None:
    pki = announcer.registry.pki
    rogue_key = generate_private_key()
    rogue = pki.issuing.issue_auth_certificate(
        make_csr(rogue_key, "r"), SERVER, now=NOW - dt.timedelta(days=1)
    )
    error = await refused(
        announcer, announcer.sign(key=rogue_key, cert=rogue).to_json(), 422, "unregistered_certificate"
    )
    assert f"not signed with an auth certificate registered for {SERVER}" in error["message"]


async def test_a_tampered_mode_breaks_the_signature(announcer: Announcer) -> None:
    good = announcer.sign(MaintenanceRequest(SERVER, False, NOW))
    flipped = dataclasses.replace(MaintenanceRequest.from_bytes(good.payload), enabled=True).to_bytes()
    await refused(announcer, dataclasses.replace(good, payload=flipped).to_json(), 422, "server_signature")


@pytest.mark.parametrize("minutes", [-6, 3])
async def test_a_stale_or_future_timestamp(announcer: Announcer, minutes: int) -> None:
    request = MaintenanceRequest(SERVER, True, NOW + dt.timedelta(minutes=minutes))
    await refused(announcer, announcer.sign(request).to_json(), 422, "stale")


async def test_a_replayed_request_id(announcer: Announcer) -> None:
    first = MaintenanceRequest(SERVER, True, NOW)
    assert (await announcer.post(announcer.sign(first).to_json()))[0] == 200
    off = MaintenanceRequest(SERVER, False, NOW)
    assert (await announcer.post(announcer.sign(off).to_json()))[0] == 200
    assert announcer.mode() is False
    # The first request's bytes again, and a new signature over the same request id: both refused.
    for again in (first, dataclasses.replace(first, submitted_at=NOW + dt.timedelta(seconds=1))):
        error = await refused(announcer, announcer.sign(again).to_json(), 409, "replayed")
        assert error["message"] == "this request was already received"


async def test_an_announcement_held_back_cannot_undo_a_later_one(announcer: Announcer) -> None:
    """Someone on the path keeps 'on' and delivers it after the administrator's 'off':
    the older announcement is refused, and the mode stays off."""
    held_back = announcer.sign(MaintenanceRequest(SERVER, True, NOW)).to_json()
    later_off = MaintenanceRequest(SERVER, False, NOW + dt.timedelta(seconds=30))
    assert (await announcer.post(announcer.sign(later_off).to_json()))[0] == 200
    error = await refused(announcer, held_back, 409, "superseded")
    assert "made a later announcement" in error["message"]
    assert announcer.mode() is False


async def test_an_unknown_server(announcer: Announcer) -> None:
    pki = announcer.registry.pki
    stranger = SecurityServerId(MEMBER, "ss9")
    key = generate_private_key()
    cert = pki.issuing.issue_auth_certificate(make_csr(key, "s"), stranger, now=NOW - dt.timedelta(days=1))
    forged = announcer.sign(MaintenanceRequest(stranger, True, NOW), key=key, cert=cert)
    error = await refused(announcer, forged.to_json(), 422, "unknown_server")
    assert f"{stranger} is not a registered security server" in error["message"]
    assert stranger not in announcer.registry.store.maintenance_modes()


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{not json", 400, "malformed"),
        (b'{"payload": "", "signature": ""}', 400, "malformed"),
        (b"x" * (16 * 1024 + 1), 413, "payload_too_large"),
    ],
)
async def test_bad_bodies(announcer: Announcer, body: bytes, status: int, kind: str) -> None:
    await refused(announcer, body, status, kind)


async def test_an_officers_change_does_not_free_a_used_request_id(announcer: Announcer) -> None:
    # An officer changing the flag in between does not make a used request id usable again.
    request = MaintenanceRequest(SERVER, True, NOW)
    assert (await announcer.post(announcer.sign(request).to_json()))[0] == 200
    announcer.registry.store.set_maintenance_mode(SERVER, False, audit=AuditContext("officer", NOW))
    await refused(announcer, announcer.sign(request).to_json(), 409, "replayed")
