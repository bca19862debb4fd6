"""Maintenance announcements: signing, verifying, and what an attacker would send instead."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json

import pytest
from cryptography import x509

from core.identifiers import SecurityServerId
from tests.unit.trust.helpers import NOW, OTHER_MEMBER, SERVER, Pki
from trust.errors import RegistrationInvalid
from trust.keys import generate_private_key, make_csr
from trust.maintenance import (
    MAINTENANCE_SIGNATURE_TYPE,
    MAX_ANNOUNCEMENT_AGE,
    MaintenanceRequest,
    SignedMaintenanceRequest,
    sign_maintenance_request,
    verify_maintenance_request,
)
from trust.ocsp import CertStatus, build_ocsp_request, build_ocsp_response
from trust.registration import MAX_CLOCK_SKEW, REGISTRATION_SIGNATURE_TYPE
from trust.signatures import sign_digest

OTHER_SERVER = SecurityServerId(OTHER_MEMBER, "ss1")


def ocsp(pki: Pki, cert: x509.Certificate, status: CertStatus | None = None) -> bytes:
    return build_ocsp_response(
        build_ocsp_request(cert, pki.issuing.certificate),
        lookup=lambda serial: status or CertStatus("good"),
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=NOW,
    )


def signed(pki: Pki, request: MaintenanceRequest | None = None) -> SignedMaintenanceRequest:
    return sign_maintenance_request(
        request or MaintenanceRequest(SERVER, True, NOW),
        auth_key=pki.server_key,
        auth_certificate=pki.chain_auth_cert,
        ocsp_response=ocsp(pki, pki.chain_auth_cert),
    )


def refused(pki: Pki, announcement: SignedMaintenanceRequest, now: dt.datetime = NOW) -> str:
    with pytest.raises(RegistrationInvalid) as info:
        verify_maintenance_request(announcement, pki.ocsp_trust(), now)
    return info.value.code


def test_a_good_announcement_verifies_and_names_the_signing_certificate(pki: Pki) -> None:
    request = MaintenanceRequest(SERVER, True, NOW)
    verified = verify_maintenance_request(signed(pki, request), pki.ocsp_trust(), NOW)
    assert verified.request == request
    assert verified.certificate == pki.chain_auth_cert
    assert len(verified.digest) == 64


def test_the_wire_form_round_trips_and_is_canonical(pki: Pki) -> None:
    announcement = signed(pki)
    assert SignedMaintenanceRequest.from_json(announcement.to_json()) == announcement
    payload = json.loads(announcement.payload)
    assert payload == {
        "kind": "maintenance",
        "server": SERVER.slash(),
        "enabled": True,
        "submitted_at": "2025-03-01T12:00:00Z",
        "request_id": payload["request_id"],
    }
    assert (
        MaintenanceRequest(SERVER, True, NOW).request_id != MaintenanceRequest(SERVER, True, NOW).request_id
    )


def test_flipping_the_mode_after_signing_breaks_the_signature(pki: Pki) -> None:
    good = signed(pki)
    request = MaintenanceRequest.from_bytes(good.payload)
    flipped = dataclasses.replace(request, enabled=False).to_bytes()
    assert refused(pki, dataclasses.replace(good, payload=flipped)) == "server_signature"


def test_another_servers_key_cannot_speak_for_this_server(pki: Pki) -> None:
    other_key = generate_private_key()
    other_cert = pki.issuing.issue_auth_certificate(
        make_csr(other_key, "o"), OTHER_SERVER, now=NOW - dt.timedelta(days=1)
    )
    forged = sign_maintenance_request(
        MaintenanceRequest(SERVER, True, NOW),
        auth_key=other_key,
        auth_certificate=other_cert,
        ocsp_response=ocsp(pki, other_cert),
    )
    with pytest.raises(RegistrationInvalid, match=f"not to {SERVER}") as info:
        verify_maintenance_request(forged, pki.ocsp_trust(), NOW)
    assert info.value.code == "auth_certificate"


def test_a_signature_by_another_key_under_this_servers_certificate_is_refused(pki: Pki) -> None:
    good = signed(pki)
    rogue = generate_private_key()
    # The certificate in x5c is the server's; the key that signed is not its key.
    header, _, _ = good.signature.split(".")
    other = sign_digest(
        good.digest,
        rogue,
        pki.issuing.issue_auth_certificate(make_csr(rogue, "r"), SERVER, now=NOW - dt.timedelta(days=1)),
        signature_type=MAINTENANCE_SIGNATURE_TYPE,
    )
    spliced = f"{header}..{other.split('.')[2]}"
    assert refused(pki, dataclasses.replace(good, signature=spliced)) == "server_signature"


def test_a_registration_signature_cannot_stand_in(pki: Pki) -> None:
    good = signed(pki)
    registration = sign_digest(
        good.digest, pki.server_key, pki.chain_auth_cert, signature_type=REGISTRATION_SIGNATURE_TYPE
    )
    assert refused(pki, dataclasses.replace(good, signature=registration)) == "server_signature"


@pytest.mark.parametrize(
    "submitted_at",
    [NOW - MAX_ANNOUNCEMENT_AGE - dt.timedelta(seconds=1), NOW + MAX_CLOCK_SKEW + dt.timedelta(seconds=1)],
)
def test_an_announcement_outside_the_window_is_stale(pki: Pki, submitted_at: dt.datetime) -> None:
    assert refused(pki, signed(pki, MaintenanceRequest(SERVER, True, submitted_at))) == "stale"


def test_a_revoked_auth_certificate_is_refused(pki: Pki) -> None:
    revoked = CertStatus(
        "revoked", revoked_at=NOW - dt.timedelta(hours=1), reason=x509.ReasonFlags.key_compromise
    )
    announcement = dataclasses.replace(signed(pki), ocsp_response=ocsp(pki, pki.chain_auth_cert, revoked))
    with pytest.raises(RegistrationInvalid, match="revoked") as info:
        verify_maintenance_request(announcement, pki.ocsp_trust(), NOW)
    assert info.value.code == "auth_certificate"


def test_an_ocsp_response_about_another_certificate_does_not_count(pki: Pki) -> None:
    announcement = dataclasses.replace(signed(pki), ocsp_response=ocsp(pki, pki.chain_sign_cert))
    assert refused(pki, announcement) == "auth_certificate"


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b'{"kind":"client","server":"NRW/MUN/05774032/ss1","enabled":true,'
        b'"submitted_at":"2025-03-01T12:00:00Z","request_id":"' + b"a" * 32 + b'"}',
        b'{"enabled":1,"kind":"maintenance","request_id":"' + b"a" * 32 + b'",'
        b'"server":"NRW/MUN/05774032/ss1","submitted_at":"2025-03-01T12:00:00Z"}',
        b'{"enabled":true,"kind":"maintenance","request_id":"short",'
        b'"server":"NRW/MUN/05774032/ss1","submitted_at":"2025-03-01T12:00:00Z"}',
        # Valid, but not in canonical form (a space): it could be read two ways.
        b'{"enabled": true,"kind":"maintenance","request_id":"' + b"a" * 32 + b'",'
        b'"server":"NRW/MUN/05774032/ss1","submitted_at":"2025-03-01T12:00:00Z"}',
    ],
)
def test_malformed_payloads_are_refused(pki: Pki, payload: bytes) -> None:
    assert refused(pki, dataclasses.replace(signed(pki), payload=payload)) == "malformed"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"payload": "", "signature": ""}',
        b'{"payload": "!!", "signature": "", "ocsp_response": ""}',
        b"x" * (16 * 1024 + 1),
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(RegistrationInvalid) as info:
        SignedMaintenanceRequest.from_json(body)
    assert info.value.code == "malformed"


def test_the_request_id_travels_in_the_payload(pki: Pki) -> None:
    announcement = signed(pki)
    encoded = json.loads(announcement.to_json())
    payload = json.loads(base64.b64decode(encoded["payload"]))
    assert payload["request_id"] == MaintenanceRequest.from_bytes(announcement.payload).request_id
