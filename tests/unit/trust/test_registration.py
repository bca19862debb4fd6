"""Registration requests: signing, verifying, and what an attacker would try instead."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography import x509

from core.identifiers import SecurityServerId, SubsystemId
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, SERVER, Pki
from trust.errors import RegistrationInvalid
from trust.keys import generate_private_key, make_csr
from trust.ocsp import CertStatus, build_ocsp_request, build_ocsp_response
from trust.registration import (
    MAX_REQUEST_AGE,
    REGISTRATION_SIGNATURE_TYPE,
    RegistrationKind,
    RegistrationRequest,
    SignedRegistration,
    sign_auth_cert_registration,
    sign_client_registration,
    verify_registration,
)
from trust.signatures import SIGNATURE_TYPE, sign_digest

CLIENT = MEMBER.subsystem("gewerbeamt")
OTHER_CLIENT = OTHER_MEMBER.subsystem("gewerbeamt")


def ocsp(pki: Pki, cert: x509.Certificate, status: CertStatus | None = None) -> bytes:
    return build_ocsp_response(
        build_ocsp_request(cert, pki.issuing.certificate),
        lookup=lambda serial: status or CertStatus("good"),
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=NOW,
    )


def auth_request(pki: Pki, **changes: object) -> RegistrationRequest:
    fields: dict[str, object] = {
        "kind": RegistrationKind.AUTH_CERT,
        "server": SERVER,
        "submitted_at": NOW,
        "address": "ss1.paderborn.example:5500",
        "auth_certificate": pki.chain_auth_cert,
    }
    fields.update(changes)
    return RegistrationRequest(**fields)  # type: ignore[arg-type]


def signed_auth(pki: Pki, request: RegistrationRequest | None = None, **keys: object) -> SignedRegistration:
    request = request or auth_request(pki)
    return sign_auth_cert_registration(
        request,
        auth_key=keys.get("auth_key", pki.server_key),  # type: ignore[arg-type]
        owner_sign_key=keys.get("sign_key", pki.member_key),  # type: ignore[arg-type]
        owner_sign_certificate=keys.get("sign_cert", pki.chain_sign_cert),  # type: ignore[arg-type]
        ocsp_responses=(ocsp(pki, pki.chain_auth_cert), ocsp(pki, pki.chain_sign_cert)),
    )


def client_request(client: SubsystemId = CLIENT) -> RegistrationRequest:
    return RegistrationRequest(RegistrationKind.CLIENT, SERVER, NOW, client=client)


def signed_client(pki: Pki, client: SubsystemId = CLIENT) -> SignedRegistration:
    return sign_client_registration(
        client_request(client),
        owner_sign_key=pki.member_key,
        owner_sign_certificate=pki.chain_sign_cert,
        auth_key=pki.server_key,
        auth_certificate=pki.chain_auth_cert,
        ocsp_responses=(ocsp(pki, pki.chain_sign_cert), ocsp(pki, pki.chain_auth_cert)),
    )


def refused(signed: SignedRegistration, pki: Pki, code: str, match: str, now: dt.datetime = NOW) -> None:
    with pytest.raises(RegistrationInvalid, match=match) as info:
        verify_registration(signed, pki.ocsp_trust(), now)
    assert info.value.code == code


# -- what works --------------------------------------------------------------------------


def test_auth_cert_request_verifies_with_possession_and_consent(pki: Pki) -> None:
    signed = signed_auth(pki)
    verified = verify_registration(SignedRegistration.from_json(signed.to_json()), pki.ocsp_trust(), NOW)
    assert verified.request.kind is RegistrationKind.AUTH_CERT
    assert verified.request.server == SERVER
    assert verified.request.address == "ss1.paderborn.example:5500"
    assert verified.request.auth_certificate == pki.chain_auth_cert
    assert verified.consent_by == MEMBER
    assert verified.digest == signed.digest.hex()


def test_client_request_verifies_with_the_client_owners_consent(pki: Pki) -> None:
    verified = verify_registration(signed_client(pki), pki.ocsp_trust(), NOW)
    assert verified.request.client == CLIENT
    assert verified.consent_by == MEMBER
    assert verified.auth_certificate_fingerprint is None
    # The registry checks that this certificate is registered for the server.
    assert verified.server_certificate == pki.chain_auth_cert


def test_payload_is_canonical_json(pki: Pki) -> None:
    request = auth_request(pki)
    payload = request.to_bytes()
    assert payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    assert RegistrationRequest.from_bytes(payload) == request
    assert auth_request(pki).nonce != request.nonce  # each request is unique


def test_request_shapes_are_checked_on_construction(pki: Pki) -> None:
    with pytest.raises(ValueError, match="needs the auth certificate"):
        auth_request(pki, auth_certificate=None)
    with pytest.raises(ValueError, match="address must be host:port"):
        auth_request(pki, address="no-port")
    with pytest.raises(ValueError, match="names no client"):
        auth_request(pki, client=CLIENT)
    with pytest.raises(ValueError, match="needs the client subsystem"):
        RegistrationRequest(RegistrationKind.CLIENT, SERVER, NOW)


# -- an attacker's attempts -----------------------------------------------------------------


def test_proof_of_possession_by_another_key_is_refused(pki: Pki) -> None:
    # Someone who got hold of the certificate (it is public) but not its private key.
    thief = generate_private_key()
    with pytest.raises(ValueError, match="does not match"):
        signed_auth(pki, auth_key=thief)  # our own signer refuses to produce it ...
    good = signed_auth(pki)
    forged_pop = sign_digest(
        good.digest,
        thief,
        pki.issuing.issue_auth_certificate(make_csr(thief, "t"), SERVER, now=NOW - dt.timedelta(days=1)),
        signature_type=REGISTRATION_SIGNATURE_TYPE,
    )
    # ... so the attacker signs with a certificate of their own and swaps it in.
    refused(
        SignedRegistration(good.payload, good.consent, forged_pop, good.ocsp_responses),
        pki,
        "proof_of_possession",
        "names another certificate",
    )


def test_proof_of_possession_over_another_payload_is_refused(pki: Pki) -> None:
    good = signed_auth(pki)
    other = signed_auth(pki, auth_request(pki, address="evil.example:443"))
    refused(
        SignedRegistration(good.payload, good.consent, other.server_signature, good.ocsp_responses),
        pki,
        "proof_of_possession",
        "does not match the request",
    )


def test_empty_proof_of_possession_is_refused(pki: Pki) -> None:
    good = signed_auth(pki)
    refused(
        SignedRegistration(good.payload, good.consent, "", good.ocsp_responses),
        pki,
        "proof_of_possession",
        "not a compact JWS",
    )


def test_consent_by_the_wrong_member_is_refused(pki: Pki) -> None:
    # Bielefeld's sign key cannot consent to a server of Paderborn.
    other_cert = pki.issuing.issue_sign_certificate(
        make_csr(pki.other_member_key, "o"), OTHER_MEMBER, now=NOW - dt.timedelta(days=1)
    )
    request = auth_request(pki)
    signed = sign_auth_cert_registration(
        request,
        auth_key=pki.server_key,
        owner_sign_key=pki.other_member_key,
        owner_sign_certificate=other_cert,
        ocsp_responses=(ocsp(pki, pki.chain_auth_cert), ocsp(pki, other_cert)),
    )
    refused(signed, pki, "consent", f"signed by {OTHER_MEMBER}, but {MEMBER} must consent")


def test_client_request_for_someone_elses_subsystem_is_refused(pki: Pki) -> None:
    # Paderborn's server cannot claim Bielefeld's Gewerbeamt with Paderborn's own key.
    refused(signed_client(pki, OTHER_CLIENT), pki, "consent", f"{OTHER_MEMBER} must consent")


def test_tampered_payload_breaks_both_signatures(pki: Pki) -> None:
    good = signed_auth(pki)
    payload = json.loads(good.payload)
    payload["address"] = "evil.example:443"
    tampered = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    refused(
        SignedRegistration(tampered, good.consent, good.server_signature, good.ocsp_responses),
        pki,
        "proof_of_possession",
        "does not match the request",
    )
    client = signed_client(pki)
    payload = json.loads(client.payload)
    payload["server"] = "NRW/MUN/05711000/ss1"
    tampered = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    # Moving the request to Bielefeld's server: the signing certificate names Paderborn's.
    refused(
        SignedRegistration(tampered, client.consent, client.server_signature, client.ocsp_responses),
        pki,
        "auth_certificate",
        "was issued to",
    )
    payload["server"] = SERVER.slash()
    payload["client"] = f"{MEMBER.slash()}/meldewesen"
    tampered = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    refused(
        SignedRegistration(tampered, client.consent, client.server_signature, client.ocsp_responses),
        pki,
        "server_signature",
        "does not match the request",
    )


def test_non_canonical_payload_is_refused(pki: Pki) -> None:
    good = signed_auth(pki)
    spaced = json.dumps(json.loads(good.payload), sort_keys=True).encode()
    refused(SignedRegistration(spaced, good.consent, good.server_signature), pki, "malformed", "canonical")


def test_auth_certificate_of_another_server_is_refused(pki: Pki) -> None:
    # Paderborn's certificate for ss1 cannot register a server ss2.
    other_server = SecurityServerId(MEMBER, "ss2")
    request = auth_request(pki, server=other_server)
    refused(signed_auth(pki, request), pki, "auth_certificate", f"issued to {SERVER}, not to {other_server}")


def test_sign_certificate_as_auth_certificate_is_refused(pki: Pki) -> None:
    request = auth_request(pki, auth_certificate=pki.chain_sign_cert)
    signed = sign_auth_cert_registration(
        request,
        auth_key=pki.member_key,
        owner_sign_key=pki.member_key,
        owner_sign_certificate=pki.chain_sign_cert,
        ocsp_responses=(ocsp(pki, pki.chain_sign_cert),),
    )
    refused(signed, pki, "auth_certificate", "not an auth certificate")


def test_auth_certificate_from_an_unapproved_ca_is_refused(pki: Pki) -> None:
    key = generate_private_key()
    foreign = pki.foreign_ca.issue_auth_certificate(
        make_csr(key, "f"), SERVER, now=NOW - dt.timedelta(days=1)
    )
    signed = signed_auth(pki, auth_request(pki, auth_certificate=foreign), auth_key=key)
    refused(signed, pki, "auth_certificate", "does not chain to an approved CA|issuer")


def test_revoked_consenting_certificate_is_refused(pki: Pki) -> None:
    revoked = CertStatus(
        "revoked", revoked_at=NOW - dt.timedelta(hours=1), reason=x509.ReasonFlags.key_compromise
    )
    request = auth_request(pki)
    signed = sign_auth_cert_registration(
        request,
        auth_key=pki.server_key,
        owner_sign_key=pki.member_key,
        owner_sign_certificate=pki.chain_sign_cert,
        ocsp_responses=(ocsp(pki, pki.chain_auth_cert), ocsp(pki, pki.chain_sign_cert, revoked)),
    )
    refused(signed, pki, "consent_certificate", "was revoked")


def test_revoked_auth_certificate_is_refused(pki: Pki) -> None:
    revoked = CertStatus(
        "revoked", revoked_at=NOW - dt.timedelta(hours=1), reason=x509.ReasonFlags.key_compromise
    )
    signed = sign_auth_cert_registration(
        auth_request(pki),
        auth_key=pki.server_key,
        owner_sign_key=pki.member_key,
        owner_sign_certificate=pki.chain_sign_cert,
        ocsp_responses=(ocsp(pki, pki.chain_auth_cert, revoked), ocsp(pki, pki.chain_sign_cert)),
    )
    refused(signed, pki, "auth_certificate", "was revoked")


def test_missing_ocsp_response_is_refused(pki: Pki) -> None:
    good = signed_auth(pki)
    refused(
        SignedRegistration(good.payload, good.consent, good.server_signature, good.ocsp_responses[:1]),
        pki,
        "consent_certificate",
        "has no OCSP response",
    )


def test_replayed_old_request_is_refused(pki: Pki) -> None:
    later = NOW + MAX_REQUEST_AGE + dt.timedelta(seconds=1)
    # The OCSP responses would be stale too; a trust without OCSP shows the age check alone.
    with pytest.raises(RegistrationInvalid, match="more than") as info:
        verify_registration(signed_auth(pki), pki.chain_trust, later)
    assert info.value.code == "stale"


def test_request_from_the_future_is_refused(pki: Pki) -> None:
    signed = signed_auth(pki, auth_request(pki, submitted_at=NOW + dt.timedelta(minutes=10)))
    refused(signed, pki, "stale", "lies ahead")


def test_message_signature_cannot_stand_in_for_consent(pki: Pki) -> None:
    # A message signature over the same digest (typ xweg-msg-sig+jws) is for something else.
    good = signed_client(pki)
    message_signature = sign_digest(
        good.digest, pki.member_key, pki.chain_sign_cert, signature_type=SIGNATURE_TYPE
    )
    refused(
        SignedRegistration(good.payload, message_signature, good.server_signature, good.ocsp_responses),
        pki,
        "consent",
        "type",
    )


def test_client_request_signed_for_another_server_is_refused(pki: Pki) -> None:
    # Bielefeld's server cannot ask on behalf of Paderborn's: its auth certificate names it.
    other_key = generate_private_key()
    other_cert = pki.issuing.issue_auth_certificate(
        make_csr(other_key, "b"), SecurityServerId(OTHER_MEMBER, "ss1"), now=NOW - dt.timedelta(days=1)
    )
    signed = sign_client_registration(
        client_request(),
        owner_sign_key=pki.member_key,
        owner_sign_certificate=pki.chain_sign_cert,
        auth_key=other_key,
        auth_certificate=other_cert,
        ocsp_responses=(ocsp(pki, pki.chain_sign_cert), ocsp(pki, other_cert)),
    )
    refused(
        signed,
        pki,
        "auth_certificate",
        f"issued to {OTHER_MEMBER}/ss1|issued to SERVER:{OTHER_MEMBER.slash()}/ss1",
    )


def test_client_request_with_a_tampered_server_signature_is_refused(pki: Pki) -> None:
    good = signed_client(pki)
    other = signed_client(pki, MEMBER.subsystem("meldewesen"))
    refused(
        SignedRegistration(good.payload, good.consent, other.server_signature, good.ocsp_responses),
        pki,
        "server_signature",
        "does not match the request",
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"payload":"","consent":"","server_signature":""}', "lacks"),
        (b'{"payload":"!!","consent":"x","server_signature":"","ocsp_responses":[]}', "not base64"),
        (b'{"payload":"","consent":1,"server_signature":"","ocsp_responses":[]}', "must be strings"),
        (
            b'{"payload":"","consent":"","server_signature":"","ocsp_responses":["","","","",""]}',
            "at most 4",
        ),
        (b"{" + b" " * (70 * 1024) + b"}", "at most 65536 bytes"),
    ],
)
def test_malformed_envelopes_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(RegistrationInvalid, match=match) as info:
        SignedRegistration.from_json(data)
    assert info.value.code == "malformed"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"kind": "member-delete"}, "kind must be one of"),
        ({"server": "NRW/MUN"}, "server"),
        ({"submitted_at": "yesterday"}, "ISO 8601"),
        ({"nonce": "short"}, "nonce"),
        ({"extra": 1}, "unexpected keys"),
        ({"auth_certificate": base64.b64encode(b"junk").decode()}, "not DER"),
    ],
)
def test_malformed_payloads_are_refused(pki: Pki, change: dict[str, object], match: str) -> None:
    payload = auth_request(pki).to_dict()
    payload.update(change)
    with pytest.raises(RegistrationInvalid, match=match) as info:
        RegistrationRequest.from_bytes(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    assert info.value.code == "malformed"
