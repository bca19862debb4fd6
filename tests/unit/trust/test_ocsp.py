"""OCSP from the attacker's side: a good response from the authorised responder, then one change at a time."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.trust.helpers import MEMBER, NOW, Pki
from trust.certificates import fingerprint
from trust.errors import CertificateInvalid
from trust.keys import generate_private_key, make_csr
from trust.ocsp import (
    CertStatus,
    OcspPolicy,
    OcspStatus,
    _stamp_produced_at,
    build_ocsp_request,
    build_ocsp_response,
    check_ocsp_response,
)

GOOD = CertStatus("good")
REVOKED_AT = NOW - dt.timedelta(hours=2)


def names(message: str, cert: x509.Certificate) -> bool:
    return fingerprint(cert)[:16] in message and "CN=" in message


def respond(
    pki: Pki,
    cert: x509.Certificate,
    status: CertStatus = GOOD,
    *,
    at: dt.datetime = NOW,
    validity_s: float = 3600.0,
    hash_algorithm: str = "sha1",
) -> bytes:
    """What the real responder answers about ``cert`` at ``at``."""
    request = build_ocsp_request(cert, pki.issuing.certificate, hash_algorithm=hash_algorithm)  # type: ignore[arg-type]
    return build_ocsp_response(
        request,
        lookup=lambda serial: status if serial == cert.serial_number else CertStatus("unknown"),
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=at,
        validity_s=validity_s,
    )


def forge(
    pki: Pki,
    cert: x509.Certificate,
    *,
    signer_cert: x509.Certificate,
    signer_key: ec.EllipticCurvePrivateKey,
    produced_at: dt.datetime = NOW,
    this_update: dt.datetime = NOW,
    next_update: dt.datetime | None = NOW + dt.timedelta(hours=1),
    issuer: x509.Certificate | None = None,
    resign_with: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """A `good` response with whatever times and signer an attacker (or a broken responder) chooses.

    ``resign_with`` replaces the signature by one with another key (the responder id stays).
    """
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert,
            issuer=issuer or pki.issuing.certificate,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=this_update,
            next_update=next_update,
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
        .sign(signer_key, hashes.SHA256())
    )
    return _stamp_produced_at(response, produced_at, resign_with or signer_key)


def check(
    pki: Pki, response: bytes, cert: x509.Certificate, now: dt.datetime = NOW, **policy: float
) -> OcspStatus:
    return check_ocsp_response(response, cert, pki.issuing.certificate, pki.policy(**policy), now)


def test_good_response_verifies(pki: Pki) -> None:
    status = check(pki, respond(pki, pki.chain_sign_cert), pki.chain_sign_cert)
    assert status == OcspStatus(produced_at=NOW, this_update=NOW, next_update=NOW + dt.timedelta(hours=1))


def test_response_names_the_delegated_responder_by_key_hash(pki: Pki) -> None:
    response = ocsp.load_der_ocsp_response(respond(pki, pki.chain_sign_cert))
    assert response.responder_name is None and response.responder_key_hash is not None
    assert response.produced_at_utc == NOW
    assert response.certificates == [pki.responder_cert]


def test_sha256_cert_ids_are_answered_in_kind(pki: Pki) -> None:
    der = respond(pki, pki.chain_sign_cert, hash_algorithm="sha256")
    assert isinstance(ocsp.load_der_ocsp_response(der).hash_algorithm, hashes.SHA256)
    check(pki, der, pki.chain_sign_cert)


def test_revoked_certificate_is_refused_with_time_and_reason(pki: Pki) -> None:
    revoked = CertStatus("revoked", revoked_at=REVOKED_AT, reason=x509.ReasonFlags.key_compromise)
    with pytest.raises(
        CertificateInvalid, match=r"was revoked at 2025-03-01T10:00:00\+00:00 \(reason keyCompromise\)"
    ) as info:
        check(pki, respond(pki, pki.chain_sign_cert, revoked), pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)


def test_revoked_without_a_reason_says_unspecified(pki: Pki) -> None:
    revoked = CertStatus("revoked", revoked_at=REVOKED_AT)
    with pytest.raises(CertificateInvalid, match=r"reason unspecified"):
        check(pki, respond(pki, pki.chain_auth_cert, revoked), pki.chain_auth_cert)


def test_unknown_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(CertificateInvalid, match="is unknown to the OCSP responder") as info:
        check(pki, respond(pki, pki.chain_sign_cert, CertStatus("unknown")), pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)


def test_responder_answers_unknown_for_another_issuer(pki: Pki) -> None:
    # A certificate of the root, asked of the issuing CA's responder: never looked up, unknown.
    request = build_ocsp_request(pki.sign_cert, pki.ca.certificate)

    def lookup(serial: int) -> CertStatus:
        raise AssertionError("must not be asked")

    der = build_ocsp_response(
        request,
        lookup=lookup,
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=NOW,
    )
    assert ocsp.load_der_ocsp_response(der).certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_response_produced_too_long_ago(pki: Pki) -> None:
    old = respond(pki, pki.chain_sign_cert, at=NOW - dt.timedelta(hours=2), validity_s=4 * 3600)
    with pytest.raises(CertificateInvalid, match="is too old: produced at 2025-03-01T10:00:00") as info:
        check(pki, old, pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)
    assert "freshness limit of 3600 s" in str(info.value)


def test_next_update_in_the_past(pki: Pki) -> None:
    lapsed = respond(pki, pki.chain_sign_cert, at=NOW - dt.timedelta(minutes=20), validity_s=600)
    with pytest.raises(CertificateInvalid, match="has expired: nextUpdate 2025-03-01T11:50:00") as info:
        check(pki, lapsed, pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)


def test_this_update_in_the_future_beyond_skew(pki: Pki) -> None:
    future = forge(
        pki,
        pki.chain_sign_cert,
        signer_cert=pki.responder_cert,
        signer_key=pki.responder_key,
        this_update=NOW + dt.timedelta(minutes=10),
        next_update=NOW + dt.timedelta(hours=2),
    )
    with pytest.raises(
        CertificateInvalid, match="has thisUpdate 2025-03-01T12:10:00.* in the future"
    ) as info:
        check(pki, future, pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)


def test_produced_in_the_future_beyond_skew(pki: Pki) -> None:
    ahead = respond(pki, pki.chain_sign_cert, at=NOW + dt.timedelta(minutes=6))
    with pytest.raises(CertificateInvalid, match="was produced at 2025-03-01T12:06:00.*in the future"):
        check(pki, ahead, pki.chain_sign_cert)


def test_clock_skew_within_the_bound_is_tolerated(pki: Pki) -> None:
    # The responder's clock runs 4 minutes ahead of ours: tolerated (skew 300 s).
    ahead = respond(pki, pki.chain_sign_cert, at=NOW + dt.timedelta(minutes=4))
    assert check(pki, ahead, pki.chain_sign_cert).produced_at == NOW + dt.timedelta(minutes=4)
    # ...and 59 minutes behind: within the freshness limit of 3,600 s, accepted.
    behind = respond(pki, pki.chain_sign_cert, at=NOW - dt.timedelta(minutes=59))
    check(pki, behind, pki.chain_sign_cert)
    # A smaller configured skew refuses the one from the future.
    with pytest.raises(CertificateInvalid, match="in the future"):
        check(pki, ahead, pki.chain_sign_cert, skew_s=60)


def test_freshness_limit_is_not_stretched_by_the_skew(pki: Pki) -> None:
    # One second past the freshness limit is refused, whatever skew is tolerated: the limit
    # is what bounds how long a revoked certificate can still be accepted.
    stale = respond(pki, pki.chain_sign_cert, at=NOW - dt.timedelta(seconds=3601))
    with pytest.raises(CertificateInvalid, match="too old"):
        check(pki, stale, pki.chain_sign_cert)


def test_signed_by_another_responder_of_the_same_ca(pki: Pki) -> None:
    # A genuine responder certificate of the right CA, but not the one global configuration lists.
    rogue = forge(
        pki, pki.chain_sign_cert, signer_cert=pki.rogue_responder_cert, signer_key=pki.rogue_responder_key
    )
    with pytest.raises(CertificateInvalid, match="is not signed by an authorised OCSP responder") as info:
        check(pki, rogue, pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)
    # ...whereas a policy that lists it accepts the very same bytes.
    policy = OcspPolicy(responders=(pki.responder_cert, pki.rogue_responder_cert))
    check_ocsp_response(rogue, pki.chain_sign_cert, pki.issuing.certificate, policy, NOW)


def test_signed_by_the_issuing_ca_key_itself(pki: Pki) -> None:
    direct = forge(pki, pki.chain_sign_cert, signer_cert=pki.issuing.certificate, signer_key=pki.issuing.key)
    with pytest.raises(CertificateInvalid, match="is not signed by an authorised OCSP responder"):
        check(pki, direct, pki.chain_sign_cert)


def test_authorised_responder_id_with_another_key(pki: Pki) -> None:
    # Names the authorised responder, but an attacker's key made the signature.
    forged = forge(
        pki,
        pki.chain_sign_cert,
        signer_cert=pki.responder_cert,
        signer_key=pki.responder_key,
        resign_with=generate_private_key(),
    )
    with pytest.raises(CertificateInvalid, match="has a signature that does not verify with") as info:
        check(pki, forged, pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)


def test_flipped_byte_in_the_signature(pki: Pki) -> None:
    der = respond(pki, pki.chain_sign_cert)
    signature = ocsp.load_der_ocsp_response(der).signature
    at = der.index(signature) + len(signature) - 1
    tampered = der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1 :]
    with pytest.raises(CertificateInvalid, match="has a signature that does not verify"):
        check(pki, tampered, pki.chain_sign_cert)


def test_extended_next_update_breaks_the_signature(pki: Pki) -> None:
    der = respond(pki, pki.chain_sign_cert)
    assert der.count(b"20250301130000Z") == 1  # nextUpdate, inside the signed data
    tampered = der.replace(b"20250301130000Z", b"20250311130000Z")
    with pytest.raises(CertificateInvalid, match="has a signature that does not verify"):
        check(pki, tampered, pki.chain_sign_cert)


def test_authorised_responder_of_another_ca_is_refused(pki: Pki) -> None:
    # The responder is listed, but for certificates of the root it is not a responder at all.
    response = forge(
        pki,
        pki.sign_cert,
        signer_cert=pki.responder_cert,
        signer_key=pki.responder_key,
        issuer=pki.ca.certificate,
    )
    with pytest.raises(CertificateInvalid, match="which is not issued by"):
        check_ocsp_response(response, pki.sign_cert, pki.ca.certificate, pki.policy(), NOW)


def test_listed_responder_without_the_ocsp_purpose_is_refused(pki: Pki) -> None:
    # Global configuration lists a TLS certificate as responder by mistake; its signatures do not count.
    key = pki.server_key
    response = forge(pki, pki.chain_sign_cert, signer_cert=pki.chain_auth_cert, signer_key=key)
    policy = OcspPolicy(responders=(pki.chain_auth_cert,))
    with pytest.raises(CertificateInvalid, match="lacks OCSPSigning"):
        check_ocsp_response(response, pki.chain_sign_cert, pki.issuing.certificate, policy, NOW)


def test_expired_responder_certificate(pki: Pki) -> None:
    key = generate_private_key()
    short = pki.issuing.issue_ocsp_responder_certificate(
        key.public_key(),
        "short-lived responder",
        now=NOW - dt.timedelta(days=2),
        validity=dt.timedelta(days=1),
    )
    response = forge(pki, pki.chain_sign_cert, signer_cert=short, signer_key=key)
    with pytest.raises(CertificateInvalid, match="which is not valid at 2025-03-01T12:00:00"):
        check_ocsp_response(
            response, pki.chain_sign_cert, pki.issuing.certificate, OcspPolicy(responders=(short,)), NOW
        )


def test_response_for_another_certificate(pki: Pki) -> None:
    other = respond(pki, pki.chain_auth_cert)
    with pytest.raises(CertificateInvalid, match="OCSP response is not for .* it answers for serial") as info:
        check(pki, other, pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)


def test_response_for_the_same_serial_of_another_issuer(pki: Pki) -> None:
    # Same serial, other CA: the issuer hashes give it away.
    response = forge(
        pki,
        pki.chain_sign_cert,
        signer_cert=pki.responder_cert,
        signer_key=pki.responder_key,
        issuer=pki.ca.certificate,
    )
    with pytest.raises(CertificateInvalid, match="certificate of another issuer"):
        check(pki, response, pki.chain_sign_cert)


def test_old_good_response_replayed_after_revocation(pki: Pki) -> None:
    cert = pki.issuing.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    good_before = respond(pki, cert, at=NOW)
    revoked = CertStatus(
        "revoked", revoked_at=NOW + dt.timedelta(seconds=10), reason=x509.ReasonFlags.superseded
    )
    # Revoked ten seconds later; a peer that is shown the old `good` response still accepts it
    # while it is within the (short) freshness limit...
    check(pki, good_before, cert, NOW + dt.timedelta(seconds=50), freshness_s=60, skew_s=5)
    # ...and refuses it once it is older than the limit plus the skew.
    with pytest.raises(CertificateInvalid, match="too old") as info:
        check(pki, good_before, cert, NOW + dt.timedelta(seconds=66), freshness_s=60, skew_s=5)
    assert names(str(info.value), cert)
    # A fresh response says what happened.
    with pytest.raises(CertificateInvalid, match=r"revoked at .* \(reason superseded\)"):
        fresh = respond(pki, cert, revoked, at=NOW + dt.timedelta(seconds=66))
        check(pki, fresh, cert, NOW + dt.timedelta(seconds=66), freshness_s=60, skew_s=5)


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x0a\x01\x00", b"not DER at all", b"\x30" * 100])
def test_malformed_bytes(pki: Pki, garbage: bytes) -> None:
    with pytest.raises(CertificateInvalid, match="OCSP response for .* is malformed") as info:
        check(pki, garbage, pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)


def test_oversized_response(pki: Pki) -> None:
    with pytest.raises(CertificateInvalid, match="at most 65536 bytes"):
        check(pki, b"\x30" * 70000, pki.chain_sign_cert)


def test_malformed_request_gets_a_malformed_request_response(pki: Pki) -> None:
    der = build_ocsp_response(
        b"garbage",
        lookup=lambda serial: GOOD,
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=NOW,
    )
    assert ocsp.load_der_ocsp_response(der).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    with pytest.raises(CertificateInvalid, match="response status MALFORMED_REQUEST") as info:
        check(pki, der, pki.chain_sign_cert)
    assert names(str(info.value), pki.chain_sign_cert)


def test_request_nonce_is_echoed(pki: Pki) -> None:
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(pki.chain_sign_cert, pki.issuing.certificate, hashes.SHA1())
        .add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    der = build_ocsp_response(
        request,
        lookup=lambda serial: GOOD,
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=NOW,
    )
    nonce = ocsp.load_der_ocsp_response(der).extensions.get_extension_for_class(x509.OCSPNonce)
    assert nonce.value.nonce == b"0123456789abcdef"
    check(pki, der, pki.chain_sign_cert)


def test_responder_refuses_a_key_that_is_not_its_certificates(pki: Pki) -> None:
    with pytest.raises(ValueError, match="does not match"):
        build_ocsp_response(
            build_ocsp_request(pki.chain_sign_cert, pki.issuing.certificate),
            lookup=lambda serial: GOOD,
            issuer=pki.issuing.certificate,
            responder_certificate=pki.responder_cert,
            responder_key=pki.rogue_responder_key,
            now=NOW,
        )


def test_request_needs_the_real_issuer(pki: Pki) -> None:
    with pytest.raises(ValueError, match="is not issued by"):
        build_ocsp_request(pki.chain_sign_cert, pki.ca.certificate)


def test_policy_and_status_validate(pki: Pki) -> None:
    with pytest.raises(ValueError, match="at least one authorised responder"):
        OcspPolicy(responders=())
    with pytest.raises(ValueError, match="skew_s must be between 0 and 3600"):
        pki.policy(skew_s=7200)
    with pytest.raises(ValueError, match="freshness_s must be positive"):
        pki.policy(freshness_s=0)
    with pytest.raises(TypeError, match="x509.Certificate"):
        OcspPolicy(responders=(b"pem",))  # type: ignore[arg-type]
    assert pki.policy().responders == (pki.responder_cert,)
    with pytest.raises(ValueError, match="needs revoked_at"):
        CertStatus("revoked")
    with pytest.raises(ValueError, match="has no revocation time"):
        CertStatus("good", revoked_at=NOW)
    with pytest.raises(ValueError, match="UTC"):
        CertStatus("revoked", revoked_at=NOW.replace(tzinfo=None))


def test_naive_now_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="UTC"):
        check(pki, respond(pki, pki.chain_sign_cert), pki.chain_sign_cert, NOW.replace(tzinfo=None))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_ever_raise_certificate_invalid(pki: Pki, data: bytes) -> None:
    with pytest.raises(CertificateInvalid):
        check(pki, data, pki.chain_sign_cert)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_responder_answers_any_request_bytes(pki: Pki, data: bytes) -> None:
    der = build_ocsp_response(
        data,
        lookup=lambda serial: GOOD,
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=NOW,
    )
    assert ocsp.load_der_ocsp_response(der).response_status in (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
        ocsp.OCSPResponseStatus.SUCCESSFUL,
    )


# ---------------------------------------------------------------- the cache of verified responses
# A response that verified once is remembered; nothing about a later check may be weaker.


def test_a_remembered_response_still_goes_stale(pki: Pki) -> None:
    response = respond(pki, pki.chain_sign_cert)
    check(pki, response, pki.chain_sign_cert)  # verified, and remembered
    check(pki, response, pki.chain_sign_cert, now=NOW + dt.timedelta(minutes=59))
    with pytest.raises(CertificateInvalid, match="is too old"):
        check(pki, response, pki.chain_sign_cert, now=NOW + dt.timedelta(minutes=61))
    with pytest.raises(CertificateInvalid, match="is too old"):
        check(pki, response, pki.chain_sign_cert, now=NOW + dt.timedelta(minutes=30), freshness_s=60)


def test_a_remembered_response_is_not_valid_before_it_was_produced(pki: Pki) -> None:
    response = respond(pki, pki.chain_sign_cert)
    check(pki, response, pki.chain_sign_cert)
    with pytest.raises(CertificateInvalid, match="in the future"):
        check(pki, response, pki.chain_sign_cert, now=NOW - dt.timedelta(hours=1))


def test_a_remembered_response_vouches_for_no_other_certificate(pki: Pki) -> None:
    response = respond(pki, pki.chain_sign_cert)
    check(pki, response, pki.chain_sign_cert)
    with pytest.raises(CertificateInvalid, match="it answers for serial"):
        check(pki, response, pki.chain_auth_cert)


def test_a_remembered_response_with_one_byte_changed_is_checked_afresh(pki: Pki) -> None:
    response = respond(pki, pki.chain_sign_cert)
    check(pki, response, pki.chain_sign_cert)
    signature = ocsp.load_der_ocsp_response(response).signature
    at = response.index(signature) + len(signature) - 1
    tampered = response[:at] + bytes([response[at] ^ 0x01]) + response[at + 1 :]
    with pytest.raises(CertificateInvalid, match="has a signature that does not verify"):
        check(pki, tampered, pki.chain_sign_cert)


def test_a_remembered_response_fails_once_its_responder_expires(pki: Pki) -> None:
    key = generate_private_key()
    responder = pki.issuing.issue_ocsp_responder_certificate(
        key.public_key(),
        "short-lived responder",
        now=NOW - dt.timedelta(hours=1),
        validity=dt.timedelta(hours=2),
    )
    response = forge(pki, pki.chain_sign_cert, signer_cert=responder, signer_key=key)
    policy = OcspPolicy(responders=(responder,), freshness_s=24 * 3600)
    check_ocsp_response(response, pki.chain_sign_cert, pki.issuing.certificate, policy, NOW)
    later = NOW + dt.timedelta(hours=1, minutes=1)
    with pytest.raises(CertificateInvalid, match="which is not valid at"):
        check_ocsp_response(response, pki.chain_sign_cert, pki.issuing.certificate, policy, later)


def test_a_remembered_response_counts_only_while_its_responder_is_authorised(pki: Pki) -> None:
    # Global configuration stops listing the responder: what it signed no longer counts.
    response = respond(pki, pki.chain_sign_cert)
    check(pki, response, pki.chain_sign_cert)
    other = pki.issuing.issue_ocsp_responder_certificate(
        generate_private_key().public_key(), "other", now=NOW
    )
    with pytest.raises(CertificateInvalid, match="not signed by an authorised OCSP responder"):
        check_ocsp_response(
            response, pki.chain_sign_cert, pki.issuing.certificate, OcspPolicy(responders=(other,)), NOW
        )


def test_a_response_is_verified_once_while_it_is_reused(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    import trust.ocsp

    calls: list[bytes] = []
    real = trust.ocsp._verify_response

    def counting(response_der: bytes, *args: object) -> object:
        calls.append(response_der)
        return real(response_der, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(trust.ocsp, "_verify_response", counting)
    response = respond(pki, pki.chain_auth_cert, at=NOW - dt.timedelta(seconds=1))
    for seconds in range(5):
        check(pki, response, pki.chain_auth_cert, now=NOW + dt.timedelta(seconds=seconds))
    assert calls == [response]


def test_refused_responses_are_not_remembered(pki: Pki) -> None:
    # A stale response fails step (6) every time and must not take room in the cache:
    # a peer could otherwise send endless padded copies of one old response.
    import trust.ocsp

    trust.ocsp._verified.clear()
    stale = respond(pki, pki.chain_sign_cert, at=NOW - dt.timedelta(days=5))
    for _ in range(3):
        with pytest.raises(CertificateInvalid, match="is too old"):
            check(pki, stale, pki.chain_sign_cert)
    assert len(trust.ocsp._verified) == 0
    check(pki, respond(pki, pki.chain_sign_cert), pki.chain_sign_cert)
    assert len(trust.ocsp._verified) == 1
