"""Registration requests in the store: pending, approved, rejected, revoked; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from core.identifiers import SecurityServerId
from registry.store import (
    AuditContext,
    RegistryConflict,
    RegistryError,
    RegistryNotFound,
    RegistryStore,
)
from tests.unit.registry.dbfixtures import database_url
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, SERVER, Pki
from trust.certificates import fingerprint
from trust.keys import generate_private_key, make_csr
from trust.registration import (
    RegistrationKind,
    RegistrationRequest,
    SignedRegistration,
    VerifiedRegistration,
    sign_auth_cert_registration,
    sign_client_registration,
    verify_registration,
)

__all__ = ["database_url"]

OFFICER = AuditContext("officer@it.nrw", NOW + dt.timedelta(minutes=5), "c0ffee")
SERVER_SLASH = SERVER.slash()


def pem(cert: object) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")  # type: ignore[attr-defined]


@pytest.fixture
def store(database_url: str, pki: Pki) -> Iterator[RegistryStore]:
    opened = RegistryStore.open(database_url)
    opened.init("NRW")
    opened.add_member_class("MUN", "municipalities")
    opened.add_member("MUN", MEMBER.member_code, "Stadt Paderborn")
    opened.add_member("MUN", OTHER_MEMBER.member_code, "Stadt Bielefeld")
    opened.add_approved_ca(pem(pki.ca.certificate), intermediates_pem=[pem(pki.issuing.certificate)])
    yield opened
    opened.close()


def auth_cert_request(pki: Pki, address: str = "127.0.0.1:5500") -> tuple[VerifiedRegistration, bytes]:
    request = RegistrationRequest(
        RegistrationKind.AUTH_CERT, SERVER, NOW, address=address, auth_certificate=pki.chain_auth_cert
    )
    signed = sign_auth_cert_registration(
        request,
        auth_key=pki.server_key,
        owner_sign_key=pki.member_key,
        owner_sign_certificate=pki.chain_sign_cert,
    )
    return verify_registration(signed, pki.chain_trust, NOW), signed.to_json()


def client_request(
    pki: Pki, code: str = "gewerbeamt", *, auth: tuple[Any, Any] | None = None
) -> tuple[VerifiedRegistration, bytes]:
    auth_key, auth_cert = auth or (pki.server_key, pki.chain_auth_cert)
    request = RegistrationRequest(RegistrationKind.CLIENT, SERVER, NOW, client=MEMBER.subsystem(code))
    signed = sign_client_registration(
        request,
        owner_sign_key=pki.member_key,
        owner_sign_certificate=pki.chain_sign_cert,
        auth_key=auth_key,
        auth_certificate=auth_cert,
    )
    return verify_registration(signed, pki.chain_trust, NOW), signed.to_json()


def servers(store: RegistryStore) -> dict[SecurityServerId, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return {
        s.id: (s.address, s.auth_cert_fingerprints, tuple(c.slash() for c in s.clients))
        for s in store.definition().security_servers
    }


def test_auth_cert_request_is_pending_until_approved(store: RegistryStore, pki: Pki) -> None:
    verified, raw = auth_cert_request(pki)
    entry = store.submit_registration(verified, raw)
    assert (entry.status, entry.kind, entry.server, entry.consent_by) == (
        "pending",
        "auth-cert",
        SERVER_SLASH,
        MEMBER.slash(),
    )
    assert servers(store) == {}  # nothing is published while pending
    assert [e.id for e in store.registrations(status="pending")] == [entry.id]

    approved = store.decide_registration(entry.id, "approve", audit=OFFICER)
    assert (approved.status, approved.decided_by, approved.decided_at) == (
        "approved",
        "officer@it.nrw",
        OFFICER.at,
    )
    assert servers(store) == {SERVER: ("127.0.0.1:5500", (fingerprint(pki.chain_auth_cert),), ())}
    operations = [(e.operation, e.target) for e in store.audit_trail()][-3:]
    assert operations == [
        ("submit_registration", entry.id),
        ("register_auth_certificate", SERVER_SLASH),
        ("approve_registration", entry.id),
    ]


def test_client_request_needs_a_registered_server(store: RegistryStore, pki: Pki) -> None:
    with pytest.raises(RegistryNotFound, match="is not a registered security server"):
        store.submit_registration(*client_request(pki))
    assert store.registrations() == ()


def test_client_request_approved_creates_the_subsystem_and_hosts_it(store: RegistryStore, pki: Pki) -> None:
    store.submit_registration(*auth_cert_request(pki), auto_approve=True)
    entry = store.submit_registration(*client_request(pki, "meldewesen"))
    store.decide_registration(entry.id, "approve", audit=OFFICER)
    assert servers(store)[SERVER][2] == (f"{MEMBER.slash()}/meldewesen",)
    members = {m.id: m.subsystems for m in store.definition().members}
    assert members[MEMBER] == ("meldewesen",)


def test_auto_approval_applies_at_once(store: RegistryStore, pki: Pki) -> None:
    entry = store.submit_registration(*auth_cert_request(pki), auto_approve=True)
    assert (entry.status, entry.decided_by) == ("approved", "auto-approval")
    assert SERVER in servers(store)


def test_rejection_needs_a_reason_and_the_submitter_reads_it(store: RegistryStore, pki: Pki) -> None:
    entry = store.submit_registration(*auth_cert_request(pki))
    with pytest.raises(RegistryError, match="needs a reason"):
        store.decide_registration(entry.id, "reject", reason="  ", audit=OFFICER)
    rejected = store.decide_registration(
        entry.id, "reject", reason="address is not in the state network", audit=OFFICER
    )
    public = store.registration(entry.id).to_dict(public=True)
    assert public["status"] == "rejected"
    assert public["reason"] == "address is not in the state network"
    assert "decided_by" not in public  # the officer's name stays inside the registry
    assert rejected.to_dict()["decided_by"] == "officer@it.nrw"
    assert servers(store) == {}


def test_revoked_request_cannot_be_approved(store: RegistryStore, pki: Pki) -> None:
    entry = store.submit_registration(*auth_cert_request(pki))
    assert store.decide_registration(entry.id, "revoke", audit=OFFICER).status == "revoked"
    with pytest.raises(RegistryConflict, match="was already revoked"):
        store.decide_registration(entry.id, "approve", audit=OFFICER)
    assert servers(store) == {}


def test_a_decided_request_is_not_decided_again(store: RegistryStore, pki: Pki) -> None:
    entry = store.submit_registration(*auth_cert_request(pki))
    store.decide_registration(entry.id, "approve", audit=OFFICER)
    trail = len(store.audit_trail(limit=1000))
    for decision in ("approve", "reject", "revoke"):
        with pytest.raises(RegistryConflict, match="was already approved"):
            store.decide_registration(entry.id, decision, reason="late", audit=OFFICER)
    assert len(store.audit_trail(limit=1000)) == trail  # nothing written


def test_the_same_request_twice_is_a_replay(store: RegistryStore, pki: Pki) -> None:
    verified, raw = auth_cert_request(pki)
    first = store.submit_registration(verified, raw)
    with pytest.raises(RegistryConflict, match="^this request was already received$"):
        store.submit_registration(verified, raw)
    assert first.id not in str(RegistryConflict("this request was already received"))
    assert len(store.registrations()) == 1


def test_a_second_request_for_the_same_certificate_waits_for_the_first(
    store: RegistryStore, pki: Pki
) -> None:
    first = store.submit_registration(*auth_cert_request(pki))
    with pytest.raises(RegistryConflict, match="a request for the same is already pending"):
        store.submit_registration(*auth_cert_request(pki, "127.0.0.1:5501"))
    store.decide_registration(first.id, "approve", audit=OFFICER)
    with pytest.raises(RegistryConflict, match="already registered for a security server"):
        store.submit_registration(*auth_cert_request(pki, "127.0.0.1:5501"))


def test_approval_rechecks_what_changed_meanwhile(store: RegistryStore, pki: Pki) -> None:
    store.submit_registration(*auth_cert_request(pki), auto_approve=True)
    entry = store.submit_registration(*client_request(pki))
    store.add_subsystem(MEMBER, "gewerbeamt")
    store.add_server_client(SERVER, MEMBER.subsystem("gewerbeamt"))  # an administrator was quicker
    with pytest.raises(RegistryConflict, match="already hosts"):
        store.decide_registration(entry.id, "approve", audit=OFFICER)
    assert store.registration(entry.id).status == "pending"  # nothing half-written


def test_request_for_an_unregistered_owner_is_refused(store: RegistryStore, pki: Pki) -> None:
    other_server = SecurityServerId(OTHER_MEMBER, "ss1")
    key = pki.other_member_key
    cert = pki.issuing.issue_auth_certificate(
        make_csr(key, "b"), other_server, now=NOW - dt.timedelta(days=1)
    )
    sign = pki.issuing.issue_sign_certificate(
        make_csr(key, "b"), OTHER_MEMBER, now=NOW - dt.timedelta(days=1)
    )
    request = RegistrationRequest(
        RegistrationKind.AUTH_CERT, other_server, NOW, address="127.0.0.1:5600", auth_certificate=cert
    )
    signed = sign_auth_cert_registration(
        request, auth_key=key, owner_sign_key=key, owner_sign_certificate=sign
    )
    verified = verify_registration(signed, pki.chain_trust, NOW)
    with store.engine.begin() as connection:  # Bielefeld leaves the federation
        connection.exec_driver_sql("DELETE FROM members WHERE code = '05711000'")
    with pytest.raises(RegistryNotFound, match="is not a registered member"):
        store.submit_registration(verified, signed.to_json())


@pytest.mark.parametrize("request_id", ["nope", "00000000-0000-0000-0000-000000000000", "' OR 1=1 --"])
def test_unknown_request_ids(store: RegistryStore, request_id: str) -> None:
    with pytest.raises(RegistryNotFound, match="no registration request"):
        store.registration(request_id)
    with pytest.raises(RegistryNotFound, match="no registration request"):
        store.decide_registration(request_id, "approve")


def test_bad_decisions_and_states_are_refused(store: RegistryStore, pki: Pki) -> None:
    entry = store.submit_registration(*auth_cert_request(pki))
    with pytest.raises(RegistryError, match="decision must be one of"):
        store.decide_registration(entry.id, "delete")
    with pytest.raises(RegistryError, match="status must be one of"):
        store.registrations(status="done")


def test_stored_request_keeps_the_exact_signed_bytes(store: RegistryStore, pki: Pki) -> None:
    verified, raw = auth_cert_request(pki)
    entry = store.submit_registration(verified, raw)
    with store.engine.connect() as connection:
        kept = connection.exec_driver_sql(
            f"SELECT signed_request FROM registration_requests WHERE id = '{entry.id}'"
        ).scalar_one()
    signed = SignedRegistration.from_json(kept.encode())
    assert verify_registration(signed, pki.chain_trust, NOW).digest == verified.digest


# -- `xweg registry requests ...` on the same store ------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from xweg.cli import main

    capsys.readouterr()  # what the test itself logged before
    code = main(["registry", "requests", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_requests_cli_lists_and_decides(
    store: RegistryStore, pki: Pki, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--database-url", database_url)
    first = store.submit_registration(*auth_cert_request(pki))
    code, out, _ = run_cli(capsys, "list", *db, "--status", "pending", "--json")
    assert code == 0
    assert [(e["id"], e["status"], e["kind"]) for e in json.loads(out)] == [
        (first.id, "pending", "auth-cert")
    ]

    code, out, _ = run_cli(capsys, "approve", *db, first.id, "--by", "officer@it.nrw")
    assert code == 0
    assert out.split()[:2] == [first.id, "approved"]
    assert store.registration(first.id).decided_by == "officer@it.nrw"

    second = store.submit_registration(*client_request(pki))
    with pytest.raises(SystemExit) as exit_info:  # argparse: a rejection needs its reason
        run_cli(capsys, "reject", *db, second.id)
    assert exit_info.value.code == 2 and "--reason" in capsys.readouterr().err
    code, out, _ = run_cli(capsys, "reject", *db, second.id, "--reason", "no such office", "--json")
    assert code == 0
    assert json.loads(out)["reason"] == "no such office"

    code, _, err = run_cli(capsys, "approve", *db, second.id)
    assert code == 1
    assert err.strip() == (
        f"xweg registry requests approve: request {second.id} was already rejected; "
        "only a pending request is decided"
    )
    code, _, err = run_cli(capsys, "show", *db, "00000000-0000-4000-8000-000000000000")
    assert code == 1 and "no registration request" in err


# -- whoever asks must be the server; races; bounds -----------------------------------------


def test_client_request_signed_by_an_unregistered_auth_certificate_is_refused(
    store: RegistryStore, pki: Pki
) -> None:
    # A valid auth certificate naming the server, but not the one registered for it:
    # e.g. issued to someone who talked the CA into it, or a key the server never registered.
    store.submit_registration(*auth_cert_request(pki), auto_approve=True)
    rogue_key = generate_private_key()
    rogue = pki.issuing.issue_auth_certificate(
        make_csr(rogue_key, "r"), SERVER, now=NOW - dt.timedelta(days=1)
    )
    with pytest.raises(RegistryError, match=f"not signed with an auth certificate registered for {SERVER}"):
        store.submit_registration(*client_request(pki, auth=(rogue_key, rogue)))
    assert store.registrations(status="pending") == ()


def race(*work: Callable[[], object]) -> list[object]:
    """Run ``work`` at the same moment on threads; each result or the exception it raised."""
    barrier = threading.Barrier(len(work))
    results: list[object] = [None] * len(work)

    def run(index: int, function: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[index] = function()
        except Exception as exc:  # noqa: BLE001 -- the outcome is what the test inspects
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_officers_deciding_at_once_apply_the_change_once(store: RegistryStore, pki: Pki) -> None:
    store.submit_registration(*auth_cert_request(pki), auto_approve=True)
    store.add_subsystem(MEMBER, "gewerbeamt")
    entry = store.submit_registration(*client_request(pki))
    results = race(
        lambda: store.decide_registration(entry.id, "approve", audit=OFFICER),
        lambda: store.decide_registration(entry.id, "approve", audit=OFFICER),
        lambda: store.decide_registration(entry.id, "reject", reason="no", audit=OFFICER),
    )
    decided = [r for r in results if not isinstance(r, Exception)]
    assert len(decided) == 1, results
    assert all(isinstance(r, RegistryError) for r in results if isinstance(r, Exception)), results
    final = store.registration(entry.id)
    assert final.status == decided[0].status  # type: ignore[attr-defined]
    hosted = servers(store)[SERVER][2]
    assert hosted == ((f"{MEMBER.slash()}/gewerbeamt",) if final.status == "approved" else ())
    decisions = [
        e for e in store.audit_trail(limit=1000) if e.target == entry.id and "submit" not in e.operation
    ]
    assert len(decisions) == 1


def test_concurrent_submissions_of_the_same_client_leave_one_pending(store: RegistryStore, pki: Pki) -> None:
    store.submit_registration(*auth_cert_request(pki), auto_approve=True)
    requests = [client_request(pki) for _ in range(4)]  # different nonces, same client
    results = race(*(lambda r=r: store.submit_registration(*r) for r in requests))
    assert sum(not isinstance(r, Exception) for r in results) == 1, results
    assert all(isinstance(r, RegistryConflict) for r in results if isinstance(r, Exception)), results
    assert len(store.registrations(status="pending")) == 1


def test_pending_requests_per_server_are_bounded(
    store: RegistryStore, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry.store

    monkeypatch.setattr(registry.store, "MAX_PENDING_PER_SERVER", 2)
    store.submit_registration(*auth_cert_request(pki), auto_approve=True)
    store.submit_registration(*client_request(pki, "a"))
    store.submit_registration(*client_request(pki, "b"))
    with pytest.raises(RegistryConflict, match="has 2 requests pending"):
        store.submit_registration(*client_request(pki, "c"))
    assert [e.client for e in store.registrations(status="pending")] == [
        f"{MEMBER.slash()}/a",
        f"{MEMBER.slash()}/b",
    ]
    assert len(store.registrations(limit=1)) == 1
    with pytest.raises(RegistryError, match="limit must be 1 to 1000"):
        store.registrations(limit=0)
