"""Message signatures from the attacker's side: a good detached JWS, then one change at a time."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, Pki
from trust.errors import CertificateInvalid, SignatureInvalid, TrustError
from trust.keys import make_csr
from trust.ocsp import CertStatus, build_ocsp_request, build_ocsp_response
from trust.signatures import SIGNATURE_TYPE, VerifiedSignature, sign_digest, verify_signature

DIGEST = hashlib.sha512(b"GET /gewerbeanzeige").digest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def x5c(cert: Any) -> list[str]:
    return [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]


def forge(header: dict[str, Any], key: ec.EllipticCurvePrivateKey, digest: bytes = DIGEST) -> str:
    """A detached token with any header, correctly ES256-signed over the unencoded digest."""
    head = b64url(json.dumps(header).encode())
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(head.encode() + b"." + digest, key)
    return f"{head}..{b64url(signature)}"


def good_header(pki: Pki) -> dict[str, Any]:
    return {"alg": "ES256", "b64": False, "crit": ["b64"], "typ": SIGNATURE_TYPE, "x5c": x5c(pki.sign_cert)}


def header_of(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def token(pki: Pki) -> str:
    return sign_digest(DIGEST, pki.member_key, pki.sign_cert)


def test_good_signature_verifies(pki: Pki, token: str) -> None:
    result = verify_signature(token, DIGEST, pki.trust, NOW)
    assert result == VerifiedSignature(certificate=pki.sign_cert, member=MEMBER)


def test_token_is_detached_es256_with_the_signer_certificate(pki: Pki, token: str) -> None:
    head, payload, signature = token.split(".")
    assert payload == ""
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64  # raw r || s
    assert header_of(token) == good_header(pki)


def test_forged_helper_matches_the_real_signer(pki: Pki) -> None:
    assert verify_signature(forge(good_header(pki), pki.member_key), DIGEST, pki.trust, NOW).member == MEMBER


def test_other_digest_is_refused(pki: Pki, token: str) -> None:
    tampered = bytearray(DIGEST)
    tampered[0] ^= 0x01
    with pytest.raises(SignatureInvalid, match="does not match the message digest"):
        verify_signature(token, bytes(tampered), pki.trust, NOW)


def test_flipped_signature_byte_is_refused(pki: Pki, token: str) -> None:
    head, _, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_signature(f"{head}..{b64url(bytes(raw))}", DIGEST, pki.trust, NOW)


def test_swapping_in_another_members_certificate_is_refused(pki: Pki) -> None:
    # Signed by MEMBER's key, but claiming to be OTHER_MEMBER through x5c.
    header = {**good_header(pki), "x5c": x5c(pki.other_sign_cert)}
    with pytest.raises(SignatureInvalid, match="does not match") as info:
        verify_signature(forge(header, pki.member_key), DIGEST, pki.trust, NOW)
    assert "05711000" in str(info.value)
    # ...whereas the other member's own signature is fine.
    own = sign_digest(DIGEST, pki.other_member_key, pki.other_sign_cert)
    assert verify_signature(own, DIGEST, pki.trust, NOW).member == OTHER_MEMBER


def test_alg_none_is_refused(pki: Pki) -> None:
    head = b64url(json.dumps({**good_header(pki), "alg": "none"}).encode())
    with pytest.raises(SignatureInvalid, match="'none' is refused; only ES256"):
        verify_signature(f"{head}..", DIGEST, pki.trust, NOW)


def test_hs256_with_the_public_key_as_secret_is_refused(pki: Pki) -> None:
    # The classic algorithm confusion: an HMAC keyed with the (public) certificate key.
    head = b64url(json.dumps({**good_header(pki), "alg": "HS256"}).encode())
    secret = pki.sign_cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mac = hmac.HMAC(secret, hashes.SHA256())
    mac.update(head.encode() + b"." + DIGEST)
    with pytest.raises(SignatureInvalid, match="'HS256' is refused"):
        verify_signature(f"{head}..{b64url(mac.finalize())}", DIGEST, pki.trust, NOW)


def test_attached_payload_is_refused(pki: Pki, token: str) -> None:
    head, _, signature = token.split(".")
    with pytest.raises(SignatureInvalid, match="detached"):
        verify_signature(f"{head}.{b64url(DIGEST)}.{signature}", DIGEST, pki.trust, NOW)


def test_encoded_payload_variant_is_refused(pki: Pki) -> None:
    header = {k: v for k, v in good_header(pki).items() if k not in ("b64", "crit")}
    with pytest.raises(SignatureInvalid, match="b64 false"):
        verify_signature(forge(header, pki.member_key), DIGEST, pki.trust, NOW)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"jku": "https://attacker.example/keys"}, "unexpected parameters"),
        ({"typ": "JWT"}, "signature type 'JWT'"),
        ({"x5c": []}, "exactly one certificate"),
        ({"x5c": "not a list"}, "exactly one certificate"),
        ({"x5c": ["!!!"]}, "x5c certificate is malformed"),
        ({"x5c": [base64.b64encode(b"\x30\x03\x02\x01\x01").decode()]}, "x5c certificate is malformed"),
    ],
)
def test_malformed_headers_are_refused(pki: Pki, change: dict[str, Any], match: str) -> None:
    with pytest.raises(SignatureInvalid, match=match):
        verify_signature(forge({**good_header(pki), **change}, pki.member_key), DIGEST, pki.trust, NOW)


def test_certificate_chain_in_x5c_is_refused(pki: Pki) -> None:
    header = {**good_header(pki), "x5c": x5c(pki.sign_cert) + x5c(pki.ca.certificate)}
    with pytest.raises(SignatureInvalid, match="exactly one certificate"):
        verify_signature(forge(header, pki.member_key), DIGEST, pki.trust, NOW)


def test_auth_certificate_cannot_sign(pki: Pki) -> None:
    header = {**good_header(pki), "x5c": x5c(pki.auth_cert)}
    with pytest.raises(CertificateInvalid, match="not a sign certificate"):
        verify_signature(forge(header, pki.server_key), DIGEST, pki.trust, NOW)


def test_expired_signer_certificate(pki: Pki, token: str) -> None:
    later = pki.sign_cert.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(CertificateInvalid, match="expired"):
        verify_signature(token, DIGEST, pki.trust, later)


def test_signer_certificate_from_an_unapproved_ca(pki: Pki) -> None:
    cert = pki.foreign_ca.issue_sign_certificate(make_csr(pki.member_key, "x"), MEMBER, now=NOW)
    token = sign_digest(DIGEST, pki.member_key, cert)
    with pytest.raises(CertificateInvalid, match="unknown issuer"):
        verify_signature(token, DIGEST, pki.trust, NOW)


@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("", "three dot-separated parts"),
        ("a.b", "three dot-separated parts"),
        ("a..b.c", "three dot-separated parts"),
        ("e30..", "ES256"),  # header {}
        ("bm90IGpzb24..AAAA", "not valid JSON"),
        ("W10..AAAA", "JSON object"),  # header []
        ("e30=..AAAA", "base64url"),
        ("x" * 20000, "longer than"),
    ],
)
def test_garbage_tokens_are_refused(pki: Pki, token: str, match: str) -> None:
    with pytest.raises(SignatureInvalid, match=match):
        verify_signature(token, DIGEST, pki.trust, NOW)


def test_digest_must_look_like_a_hash(pki: Pki, token: str) -> None:
    with pytest.raises(ValueError, match="32 to 64 bytes"):
        verify_signature(token, b"short", pki.trust, NOW)
    with pytest.raises(ValueError, match="32 to 64 bytes"):
        sign_digest(b"", pki.member_key, pki.sign_cert)


def test_signing_with_a_key_that_does_not_match_the_certificate(pki: Pki) -> None:
    with pytest.raises(ValueError, match="does not match"):
        sign_digest(DIGEST, pki.server_key, pki.sign_cert)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_trust_errors(pki: Pki, text: str) -> None:
    with pytest.raises(TrustError):
        verify_signature(text, DIGEST, pki.trust, NOW)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_random_headers_only_ever_raise_trust_errors(pki: Pki, header: bytes) -> None:
    with pytest.raises(TrustError):
        verify_signature(f"{b64url(header)}..AAAA", DIGEST, pki.trust, NOW)


# -- a signer from the issuing CA, with OCSP ---------------------------------------


def signer_ocsp(pki: Pki, status: CertStatus) -> bytes:
    return build_ocsp_response(
        build_ocsp_request(pki.chain_sign_cert, pki.issuing.certificate),
        lookup=lambda serial: status,
        issuer=pki.issuing.certificate,
        responder_certificate=pki.responder_cert,
        responder_key=pki.responder_key,
        now=NOW,
    )


def test_signature_by_an_issuing_ca_certificate_with_a_good_ocsp_response(pki: Pki) -> None:
    token = sign_digest(DIGEST, pki.member_key, pki.chain_sign_cert)
    result = verify_signature(
        token, DIGEST, pki.ocsp_trust(), NOW, ocsp_response=signer_ocsp(pki, CertStatus("good"))
    )
    assert result == VerifiedSignature(certificate=pki.chain_sign_cert, member=MEMBER)
    assert verify_signature(token, DIGEST, pki.chain_trust, NOW).member == MEMBER


def test_signature_without_the_signers_ocsp_response(pki: Pki) -> None:
    token = sign_digest(DIGEST, pki.member_key, pki.chain_sign_cert)
    with pytest.raises(CertificateInvalid, match="CN='NRW/MUN/05774032'.* has no OCSP response"):
        verify_signature(token, DIGEST, pki.ocsp_trust(), NOW)


def test_signature_by_a_revoked_signer(pki: Pki) -> None:
    token = sign_digest(DIGEST, pki.member_key, pki.chain_sign_cert)
    revoked = CertStatus(
        "revoked", revoked_at=NOW - dt.timedelta(minutes=1), reason=x509.ReasonFlags.affiliation_changed
    )
    with pytest.raises(
        CertificateInvalid, match=r"CN='NRW/MUN/05774032'.* was revoked at .* \(reason affiliationChanged\)"
    ):
        verify_signature(token, DIGEST, pki.ocsp_trust(), NOW, ocsp_response=signer_ocsp(pki, revoked))


def test_signature_with_a_stale_ocsp_response(pki: Pki) -> None:
    token = sign_digest(DIGEST, pki.member_key, pki.chain_sign_cert)
    good = signer_ocsp(pki, CertStatus("good"))
    later = NOW + dt.timedelta(seconds=3600 + 300 + 1)
    with pytest.raises(CertificateInvalid, match="too old"):
        verify_signature(token, DIGEST, pki.ocsp_trust(), later, ocsp_response=good)


def test_a_remembered_header_vouches_for_no_signature_value(pki: Pki, token: str) -> None:
    # The signer's header is parsed once and remembered; each signature value is still checked.
    for _ in range(3):
        assert verify_signature(token, DIGEST, pki.trust, NOW).member == MEMBER
    head, _, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[-1] ^= 0x01
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_signature(f"{head}..{b64url(bytes(raw))}", DIGEST, pki.trust, NOW)
    forged = forge(good_header(pki), pki.other_member_key)  # same header, another member's key
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_signature(forged, DIGEST, pki.trust, NOW)


def test_a_refused_header_is_refused_every_time(pki: Pki) -> None:
    token = forge({**good_header(pki), "alg": "HS256"}, pki.member_key)
    for _ in range(2):
        with pytest.raises(SignatureInvalid, match="only ES256 is accepted"):
            verify_signature(token, DIGEST, pki.trust, NOW)
