"""``/registration/v1`` on a real registry app: what servers submit, and what attackers try."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.clock import FixedClock
from registry.server import STATE_KEY, RegistrySettings, make_app
from registry.store import AuditContext, RegistryStore
from tests.unit.registry.dbfixtures import database_url
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, SERVER, Pki
from trust.keys import generate_private_key, make_csr, save_private_key
from trust.ocsp import CertStatus, build_ocsp_request, build_ocsp_response
from trust.registration import (
    RegistrationKind,
    RegistrationRequest,
    SignedRegistration,
    sign_auth_cert_registration,
    sign_client_registration,
)

__all__ = ["database_url"]

PATH = "/registration/v1/requests"


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass
class Registry:
    client: TestClient[Any, Any]
    store: RegistryStore
    pki: Pki

    def ocsp(self, cert: x509.Certificate, status: CertStatus | None = None) -> bytes:
        return build_ocsp_response(
            build_ocsp_request(cert, self.pki.issuing.certificate),
            lookup=lambda serial: status or CertStatus("good"),
            issuer=self.pki.issuing.certificate,
            responder_certificate=self.pki.responder_cert,
            responder_key=self.pki.responder_key,
            now=NOW,
        )

    def auth_cert(self, **changes: Any) -> SignedRegistration:
        pki = self.pki
        request = RegistrationRequest(
            RegistrationKind.AUTH_CERT,
            SERVER,
            changes.pop("submitted_at", NOW),
            address="127.0.0.1:5500",
            auth_certificate=pki.chain_auth_cert,
        )
        return sign_auth_cert_registration(
            request,
            auth_key=pki.server_key,
            owner_sign_key=pki.member_key,
            owner_sign_certificate=pki.chain_sign_cert,
            ocsp_responses=changes.pop(
                "ocsp", (self.ocsp(pki.chain_auth_cert), self.ocsp(pki.chain_sign_cert))
            ),
        )

    def client_request(self, code: str = "gewerbeamt") -> SignedRegistration:
        request = RegistrationRequest(RegistrationKind.CLIENT, SERVER, NOW, client=MEMBER.subsystem(code))
        return sign_client_registration(
            request,
            owner_sign_key=self.pki.member_key,
            owner_sign_certificate=self.pki.chain_sign_cert,
            auth_key=self.pki.server_key,
            auth_certificate=self.pki.chain_auth_cert,
            ocsp_responses=(self.ocsp(self.pki.chain_sign_cert), self.ocsp(self.pki.chain_auth_cert)),
        )

    async def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        async with self.client.post(PATH, data=body, headers={"Content-Type": "application/json"}) as resp:
            return resp.status, await resp.json()


def write_config(root: Path, url: str, auto_approve: str = "") -> Path:
    keys = root / "keys"
    keys.mkdir()
    (keys / "passphrase").write_bytes(b"registry-secret\n")
    save_private_key(generate_private_key(), keys / "globalconf.key", b"registry-secret")
    config = root / "registry.toml"
    config.write_text(
        f'database_url = "{url}"\nstate_dir = "state"\nport = 0\nchange_poll_s = 0.1\n'
        f"[registration]\nauto_approve = [{auto_approve}]\n"
        '[signing]\nkey = "keys/globalconf.key"\nkey_id = "k1"\npassphrase_file = "keys/passphrase"\n'
    )
    return config


async def open_registry(tmp_path: Path, database_url: str, pki: Pki, auto_approve: str = "") -> Registry:
    store = RegistryStore.open(database_url)
    store.init("NRW")
    store.add_member_class("MUN", "municipalities")
    store.add_member("MUN", MEMBER.member_code, "Stadt Paderborn")
    store.add_member("MUN", OTHER_MEMBER.member_code, "Stadt Bielefeld")
    store.add_approved_ca(
        pem(pki.ca.certificate),
        intermediates_pem=[pem(pki.issuing.certificate)],
        ocsp_url="http://127.0.0.1:1/ocsp",
        ocsp_responders_pem=[pem(pki.responder_cert)],
    )
    settings = RegistrySettings.load(write_config(tmp_path, database_url, auto_approve))
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(settings, FixedClock(NOW))))
    await client.start_server()
    return Registry(client, store, pki)


@pytest.fixture
async def registry(tmp_path: Path, database_url: str, pki: Pki) -> AsyncIterator[Registry]:
    opened = await open_registry(tmp_path, database_url, pki)
    yield opened
    await opened.client.close()
    opened.store.close()


async def test_submitted_request_is_pending_and_its_state_readable(registry: Registry) -> None:
    status, body = await registry.post(registry.auth_cert().to_json())
    assert status == 202
    assert (body["status"], body["kind"], body["server"]) == ("pending", "auth-cert", SERVER.slash())
    assert "decided_by" not in body
    async with registry.client.get(f"{PATH}/{body['id']}") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "pending"
    registry.store.decide_registration(
        body["id"],
        "reject",
        reason="address not reachable from the state network",
        audit=AuditContext("officer", NOW),
    )
    async with registry.client.get(f"{PATH}/{body['id']}") as resp:
        answer = await resp.json()
    assert (answer["status"], answer["reason"]) == (
        "rejected",
        "address not reachable from the state network",
    )


async def test_auto_approval_registers_at_once(tmp_path: Path, database_url: str, pki: Pki) -> None:
    registry = await open_registry(tmp_path, database_url, pki, auto_approve='"auth-cert", "client"')
    try:
        status, body = await registry.post(registry.auth_cert().to_json())
        assert (status, body["status"]) == (201, "approved")
        status, body = await registry.post(registry.client_request().to_json())
        assert (status, body["status"]) == (201, "approved")
        [server] = registry.store.definition().security_servers
        assert [c.slash() for c in server.clients] == [f"{MEMBER.slash()}/gewerbeamt"]
        trail = registry.store.audit_trail(limit=1000)
        approvals = [e for e in trail if e.operation == "approve_registration"]
        assert [e.after["decided_by"] for e in approvals] == ["auto-approval", "auto-approval"]
        # The submitting server set the change off: the trail names it, with its correlation id.
        assert {e.actor for e in approvals} == {SERVER.slash()}
        assert all(e.correlation_id for e in approvals)
    finally:
        await registry.client.close()
        registry.store.close()


async def test_replayed_request_is_a_conflict(registry: Registry) -> None:
    body = registry.auth_cert().to_json()
    assert (await registry.post(body))[0] == 202
    status, error = await registry.post(body)
    assert (status, error["type"]) == (409, "conflict")
    assert error["message"] == "this request was already received"  # no id for whoever replays
    assert len(registry.store.registrations()) == 1


async def test_forged_proof_of_possession_is_refused(registry: Registry) -> None:
    good = registry.auth_cert()
    other = registry.auth_cert(submitted_at=NOW - dt.timedelta(seconds=1))
    forged = SignedRegistration(good.payload, good.consent, other.server_signature, good.ocsp_responses)
    status, error = await registry.post(forged.to_json())
    assert (status, error["type"]) == (422, "proof_of_possession")
    assert error["detail"]  # a correlation id to quote
    assert registry.store.registrations() == ()


async def test_consent_by_the_wrong_member_is_refused(registry: Registry) -> None:
    pki = registry.pki
    bielefeld = pki.issuing.issue_sign_certificate(
        make_csr(pki.other_member_key, "b"), OTHER_MEMBER, now=NOW - dt.timedelta(days=1)
    )
    request = RegistrationRequest(
        RegistrationKind.AUTH_CERT,
        SERVER,
        NOW,
        address="127.0.0.1:5500",
        auth_certificate=pki.chain_auth_cert,
    )
    signed = sign_auth_cert_registration(
        request,
        auth_key=pki.server_key,
        owner_sign_key=pki.other_member_key,
        owner_sign_certificate=bielefeld,
        ocsp_responses=(registry.ocsp(pki.chain_auth_cert), registry.ocsp(bielefeld)),
    )
    status, error = await registry.post(signed.to_json())
    assert (status, error["type"]) == (422, "consent")
    assert f"{MEMBER} must consent" in error["message"]


async def test_revoked_auth_certificate_is_refused(registry: Registry) -> None:
    revoked = CertStatus(
        "revoked", revoked_at=NOW - dt.timedelta(hours=1), reason=x509.ReasonFlags.key_compromise
    )
    pki = registry.pki
    signed = registry.auth_cert(
        ocsp=(registry.ocsp(pki.chain_auth_cert, revoked), registry.ocsp(pki.chain_sign_cert))
    )
    status, error = await registry.post(signed.to_json())
    assert (status, error["type"]) == (422, "auth_certificate")
    assert "revoked" in error["message"]


async def test_client_request_for_an_unregistered_server_is_refused(registry: Registry) -> None:
    status, error = await registry.post(registry.client_request().to_json())
    assert (status, error["type"]) == (422, "unknown_reference")
    assert "is not a registered security server" in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{not json", 400, "malformed"),
        (b'{"payload": "", "consent": ""}', 400, "malformed"),
        (b"x" * (64 * 1024 + 1), 413, "payload_too_large"),
    ],
)
async def test_bad_bodies(registry: Registry, body: bytes, status: int, kind: str) -> None:
    got, error = await registry.post(body)
    assert (got, error["type"]) == (status, kind)
    assert registry.store.registrations() == ()


@pytest.mark.parametrize("request_id", ["00000000-0000-4000-8000-000000000000", "not-an-id"])
async def test_unknown_request_id_is_404(registry: Registry, request_id: str) -> None:
    async with registry.client.get(f"{PATH}/{request_id}") as resp:
        assert resp.status == 404
        assert (await resp.json())["type"] == "not_found"


async def test_registration_needs_an_ocsp_responder(tmp_path: Path, database_url: str, pki: Pki) -> None:
    registry = await open_registry(tmp_path, database_url, pki)
    try:
        with registry.store.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE approved_cas SET ocsp_responders_pem = '[]'")
        status, error = await registry.post(registry.auth_cert().to_json())
        assert (status, error["type"]) == (422, "revocation_unavailable")
    finally:
        await registry.client.close()
        registry.store.close()


def test_auto_approve_names_known_kinds_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="auto_approve must list kinds out of"):
        RegistrySettings.load(write_config(tmp_path, "sqlite:///r.db", '"member"'))


async def test_an_approval_is_published_without_waiting_for_the_interval(registry: Registry) -> None:
    # The registry's interval is 60 s; its change poll (0.1 s here) sees the approval,
    # made through the store as another process would, and publishes it.
    app = registry.client.server.app
    before = app[STATE_KEY].current.conf
    assert before.security_servers == ()
    _, body = await registry.post(registry.auth_cert().to_json())
    registry.store.decide_registration(body["id"], "approve", audit=AuditContext("officer", NOW))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if app[STATE_KEY].current.conf.serial > before.serial:
            break
    published = app[STATE_KEY].current.conf
    assert [s.id for s in published.security_servers] == [SERVER]
    assert published.security_servers[0].address == "127.0.0.1:5500"


async def test_a_member_cannot_place_its_subsystem_on_a_server_that_did_not_ask(registry: Registry) -> None:
    # Paderborn's server is registered; Bielefeld's member key signs a request to host
    # Bielefeld's subsystem there, with a server signature by a certificate for that
    # server that was never registered (all a member could obtain or forge).
    pki = registry.pki
    status, _ = await registry.post(registry.auth_cert().to_json())
    registry.store.decide_registration(
        registry.store.registrations()[0].id, "approve", audit=AuditContext("officer", NOW)
    )
    rogue_key = generate_private_key()
    rogue = pki.issuing.issue_auth_certificate(
        make_csr(rogue_key, "r"), SERVER, now=NOW - dt.timedelta(days=1)
    )
    bielefeld = pki.issuing.issue_sign_certificate(
        make_csr(pki.other_member_key, "b"), OTHER_MEMBER, now=NOW - dt.timedelta(days=1)
    )
    request = RegistrationRequest(
        RegistrationKind.CLIENT, SERVER, NOW, client=OTHER_MEMBER.subsystem("meldewesen")
    )
    signed = sign_client_registration(
        request,
        owner_sign_key=pki.other_member_key,
        owner_sign_certificate=bielefeld,
        auth_key=rogue_key,
        auth_certificate=rogue,
        ocsp_responses=(registry.ocsp(bielefeld), registry.ocsp(rogue)),
    )
    status, error = await registry.post(signed.to_json())
    assert (status, error["type"]) == (422, "refused")
    assert f"not signed with an auth certificate registered for {SERVER}" in error["message"]
    assert registry.store.registrations(status="pending") == ()
