"""RFC 3161 timestamps: a real root, intermediate and TSA; every check tampered with from a good token."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pytest
import rfc3161_client
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import utc
from trust.errors import TrustError
from trust.timestamps import (
    TSA_POLICY_OID,
    TimestampError,
    TimestampInfo,
    TimestampRejected,
    build_timestamp_request,
    issue_timestamp_response,
    rejection_for_request,
    verify_timestamp_response,
    verify_timestamp_token,
)

NOW = utc(2025, 3, 1, 12)
DAY = dt.timedelta(days=1)
MESSAGE = b"checkpoint: NRW/MUN/05774032/ss1 size 42"
IMPRINT = hashlib.sha256(MESSAGE).digest()
NONCE = 0x1234_5678_9ABC_DEF0


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    not_before: dt.datetime = NOW - 30 * DAY,
    not_after: dt.datetime = NOW + 365 * DAY,
    eku_critical: bool = True,
    serial: int | None = None,
) -> x509.Certificate:
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(public)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=eku_critical
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Tsa:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class TsaPki:
    root: x509.Certificate
    intermediate: x509.Certificate
    tsa: Tsa
    other_tsa: Tsa  # valid, same CA, but not approved
    foreign_tsa: Tsa  # under a CA nobody approved
    expired_tsa: Tsa
    lax_tsa: Tsa  # timeStamping purpose, but not critical

    def issue(self, tsa: Tsa | None = None, *, request: bytes | None = None, now: dt.datetime = NOW) -> bytes:
        tsa = tsa or self.tsa
        return issue_timestamp_response(
            request if request is not None else build_timestamp_request(IMPRINT, nonce=NONCE),
            tsa_certificate=tsa.cert,
            tsa_key=tsa.key,
            chain=[self.intermediate],
            now=now,
            serial=7,
        )

    def verify(self, response: bytes, **overrides: object) -> TimestampInfo:
        args: dict[str, object] = {
            "imprint": IMPRINT,
            "nonce": NONCE,
            "tsa_certificates": [self.tsa.cert],
            "roots": [self.root],
            "now": NOW,
        }
        args.update(overrides)
        return verify_timestamp_response(response, **args)  # type: ignore[arg-type]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def pki() -> TsaPki:
    root_key, inter_key, foreign_key = _key(), _key(), _key()
    root = make_cert("xweg NRW Root CA", root_key, None, root_key, ca=True, not_after=NOW + 3650 * DAY)
    inter = make_cert("xweg NRW Issuing CA", inter_key, root, root_key, ca=True)
    foreign_root = make_cert("Elsewhere Root CA", foreign_key, None, foreign_key, ca=True)

    def tsa(name: str, issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, **kw: object) -> Tsa:
        key = _key()
        return Tsa(make_cert(name, key, issuer, issuer_key, ca=False, **kw), key)  # type: ignore[arg-type]

    return TsaPki(
        root=root,
        intermediate=inter,
        tsa=tsa("NRW TSA 1", inter, inter_key),
        other_tsa=tsa("NRW TSA 2", inter, inter_key),
        foreign_tsa=tsa("Elsewhere TSA", foreign_root, foreign_key),
        expired_tsa=tsa("NRW TSA old", inter, inter_key, not_before=NOW - 400 * DAY, not_after=NOW - DAY),
        lax_tsa=tsa("NRW TSA lax", inter, inter_key, eku_critical=False),
    )


@pytest.fixture(scope="module")
def good_response(pki: TsaPki) -> bytes:
    return pki.issue()


def flip_at(data: bytes, needle: bytes, offset: int = 0) -> bytes:
    at = data.index(needle) + offset
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def raw_request(algorithm: str, digest: bytes, **extra: object) -> bytes:
    fields: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest},
        "nonce": NONCE,
        "cert_req": True,
    }
    fields.update(extra)
    return bytes(tsp.TimeStampReq(fields).dump())


# --- the good path ---


def test_good_response_verifies(pki: TsaPki) -> None:
    info = pki.verify(pki.issue())
    assert info.gen_time == NOW
    assert info.serial == 7
    assert info.nonce == NONCE
    assert info.imprint == IMPRINT
    assert info.hash_algorithm == "sha256"
    assert info.tsa_certificate == pki.tsa.cert
    assert info.policy == TSA_POLICY_OID
    assert issubclass(TimestampError, TrustError)


def test_stored_token_verifies_offline(pki: TsaPki) -> None:
    info = pki.verify(pki.issue())
    # Years later: no clock, no nonce; the chain is checked at the token's own time.
    again = verify_timestamp_token(
        info.token, imprint=IMPRINT, tsa_certificates=[pki.tsa.cert], roots=[pki.root]
    )
    assert again == info
    with pytest.raises(TimestampError, match="another message"):
        verify_timestamp_token(
            info.token,
            imprint=hashlib.sha256(b"other").digest(),
            tsa_certificates=[pki.tsa.cert],
            roots=[pki.root],
        )


def test_rfc3161_client_accepts_our_tokens(pki: TsaPki) -> None:
    response = pki.issue()
    decoded = rfc3161_client.decode_timestamp_response(response)
    assert decoded.tst_info.nonce == NONCE
    assert decoded.tst_info.serial_number == 7
    verifier = rfc3161_client.VerifierBuilder(
        tsa_certificate=pki.tsa.cert, roots=[pki.root], intermediates=[pki.intermediate], nonce=NONCE
    ).build()
    assert verifier.verify_message(decoded, MESSAGE)
    with pytest.raises(rfc3161_client.VerificationError):
        verifier.verify_message(decoded, b"another message")


def test_token_without_certificates_needs_the_intermediate(pki: TsaPki) -> None:
    response = pki.issue(request=build_timestamp_request(IMPRINT, nonce=NONCE, cert_req=False))
    assert pki.verify(response, intermediates=[pki.intermediate]).tsa_certificate == pki.tsa.cert
    with pytest.raises(TimestampError, match="does not chain to an approved CA"):
        pki.verify(response)


# --- the security server's checks, each failing alone ---


def test_wrong_nonce_is_refused(pki: TsaPki) -> None:
    with pytest.raises(TimestampError, match="nonce does not match"):
        pki.verify(pki.issue(), nonce=NONCE + 1)


def test_token_without_nonce_is_refused(pki: TsaPki) -> None:
    request = raw_request("sha256", IMPRINT, nonce=None)
    with pytest.raises(TimestampError, match="the token has none"):
        pki.verify(pki.issue(request=request))


def test_wrong_imprint_is_refused(pki: TsaPki) -> None:
    with pytest.raises(TimestampError, match="another message"):
        pki.verify(pki.issue(), imprint=hashlib.sha256(b"something else").digest())


def test_tsa_not_approved_is_refused(pki: TsaPki) -> None:
    # A valid TSA under the same CA, but global configuration does not list it.
    response = pki.issue(pki.other_tsa)
    with pytest.raises(TimestampError, match="NRW TSA 2.*not an approved TSA"):
        pki.verify(response)
    assert pki.verify(response, tsa_certificates=[pki.tsa.cert, pki.other_tsa.cert]).serial == 7


def test_token_naming_no_known_certificate_is_refused(pki: TsaPki) -> None:
    response = pki.issue(pki.other_tsa, request=build_timestamp_request(IMPRINT, nonce=NONCE, cert_req=False))
    with pytest.raises(TimestampError, match="neither an approved TSA"):
        pki.verify(response)


def test_untrusted_ca_is_refused(pki: TsaPki) -> None:
    # Approved by name, but its CA is not one of the federation's.
    response = pki.issue(pki.foreign_tsa)
    with pytest.raises(TimestampError, match="Elsewhere TSA.*does not chain to an approved CA"):
        pki.verify(response, tsa_certificates=[pki.foreign_tsa.cert])


def test_expired_tsa_certificate_is_refused(pki: TsaPki) -> None:
    response = pki.issue(pki.expired_tsa)
    with pytest.raises(TimestampError, match="TSA certificate CN='NRW TSA old'.*expired at"):
        pki.verify(response, tsa_certificates=[pki.expired_tsa.cert])


def test_tsa_certificate_without_critical_eku_is_refused(pki: TsaPki) -> None:
    response = pki.issue(pki.lax_tsa)
    with pytest.raises(TimestampError, match="critical extendedKeyUsage"):
        pki.verify(response, tsa_certificates=[pki.lax_tsa.cert])


def test_tsa_clock_far_off_is_refused(pki: TsaPki) -> None:
    behind = pki.issue(now=NOW - dt.timedelta(hours=2))
    with pytest.raises(TimestampError, match="clock is 7200 s behind ours"):
        pki.verify(behind)
    ahead = pki.issue(now=NOW + dt.timedelta(minutes=6))
    with pytest.raises(TimestampError, match="360 s ahead of ours"):
        pki.verify(ahead)
    # A few minutes are tolerated, up to the documented bound.
    assert pki.verify(pki.issue(now=NOW + dt.timedelta(minutes=4))).gen_time == NOW + dt.timedelta(minutes=4)


def test_flipped_signature_byte_is_refused(pki: TsaPki) -> None:
    response = pki.issue()
    token = cms.ContentInfo.load(bytes(pki.verify(response).token))
    signature = token["content"]["signer_infos"][0]["signature"].native
    with pytest.raises(TimestampError, match="signature does not verify"):
        pki.verify(flip_at(response, signature, len(signature) - 1))


def test_flipped_tstinfo_byte_is_refused(pki: TsaPki) -> None:
    with pytest.raises(TimestampError, match="message-digest attribute does not match its TSTInfo"):
        pki.verify(flip_at(pki.issue(), IMPRINT, 5))


def test_embedded_certificate_with_a_bad_version_is_malformed(pki: TsaPki, good_response: bytes) -> None:
    version = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2 (v3) of an embedded certificate
    at = good_response.index(version) + len(version) - 1
    with pytest.raises(TimestampError, match="malformed"):
        pki.verify(good_response[:at] + b"\x7c" + good_response[at + 1 :])


def test_signer_impersonating_an_approved_tsa_is_refused(pki: TsaPki) -> None:
    # An attacker's certificate with the approved TSA's issuer and serial, under a CA of the same name.
    fake_ca_key, key = _key(), _key()
    fake_ca = make_cert("xweg NRW Issuing CA", fake_ca_key, None, fake_ca_key, ca=True)
    fake = make_cert("NRW TSA 1", key, fake_ca, fake_ca_key, ca=False, serial=pki.tsa.cert.serial_number)
    response = pki.issue(Tsa(fake, key))
    with pytest.raises(TimestampError, match="signature does not verify with certificate CN='NRW TSA 1'"):
        pki.verify(response)


def test_rejection_status_is_named(pki: TsaPki) -> None:
    response = pki.issue(request=raw_request("sha1", hashlib.sha1(MESSAGE).digest()))  # noqa: S324
    with pytest.raises(TimestampRejected, match="status rejection; failInfo bad_alg") as caught:
        pki.verify(response)
    assert caught.value.status == "rejection"
    assert caught.value.fail_info == frozenset({"bad_alg"})
    decoded = rfc3161_client.decode_timestamp_response(response)
    assert decoded.status == rfc3161_client.PKIStatus.REJECTION


@pytest.mark.parametrize(
    ("request_der", "fail_info"),
    [
        (b"", "bad_request"),
        (b"\x30\x03\x02\x01\x01", "bad_request"),
        (b"\xff" * 40, "bad_request"),
        (build_timestamp_request(IMPRINT, nonce=NONCE) + b"\x00", "bad_request"),
        (b"\x30" + b"\x00" * 20_000, "bad_request"),
        (raw_request("md5", b"\x00" * 16), "bad_alg"),
        (raw_request("sha256", b"\x00" * 20), "bad_data_format"),
        (raw_request("sha256", IMPRINT, req_policy="1.2.3.4"), "unaccepted_policy"),
        (raw_request("sha256", IMPRINT, version="v2"), "bad_request"),
        (raw_request("sha256", IMPRINT, nonce=-5), "bad_request"),
        (raw_request("sha256", IMPRINT, nonce=2**300), "bad_request"),
        (
            raw_request(
                "sha256",
                IMPRINT,
                extensions=[{"extn_id": "1.2.3", "critical": True, "extn_value": b"x"}],
            ),
            "unaccepted_extensions",
        ),
    ],
)
def test_bad_requests_get_rejections(pki: TsaPki, request_der: bytes, fail_info: str) -> None:
    response = pki.issue(request=request_der)
    assert rejection_for_request(request_der) == response
    with pytest.raises(TimestampRejected) as caught:
        pki.verify(response)
    assert caught.value.fail_info == frozenset({fail_info})


def test_request_for_our_policy_is_granted(pki: TsaPki) -> None:
    request = raw_request("sha256", IMPRINT, req_policy=TSA_POLICY_OID)
    assert rejection_for_request(request) is None
    assert pki.verify(pki.issue(request=request)).policy == TSA_POLICY_OID


def test_other_imprint_algorithms_are_issued_but_not_accepted(pki: TsaPki) -> None:
    digest = hashlib.sha512(MESSAGE).digest()
    response = pki.issue(request=build_timestamp_request(digest, nonce=NONCE, hash_algorithm="sha512"))
    with pytest.raises(TimestampError, match="uses sha512, expected sha256"):
        pki.verify(response)


def test_operator_mistakes_raise(pki: TsaPki) -> None:
    request = build_timestamp_request(IMPRINT, nonce=NONCE)
    with pytest.raises(ValueError, match="does not match"):
        issue_timestamp_response(
            request, tsa_certificate=pki.tsa.cert, tsa_key=pki.other_tsa.key, chain=[], now=NOW, serial=1
        )
    with pytest.raises(ValueError, match="serial"):
        issue_timestamp_response(
            request, tsa_certificate=pki.tsa.cert, tsa_key=pki.tsa.key, chain=[], now=NOW, serial=0
        )
    with pytest.raises(ValueError, match="UTC"):
        issue_timestamp_response(
            request,
            tsa_certificate=pki.tsa.cert,
            tsa_key=pki.tsa.key,
            chain=[],
            now=NOW.replace(tzinfo=None),
            serial=1,
        )
    with pytest.raises(ValueError, match="sha256 digest"):
        build_timestamp_request(b"short", nonce=1)
    with pytest.raises(ValueError, match="nonce"):
        build_timestamp_request(IMPRINT, nonce=-1)
    with pytest.raises(ValueError, match="unsupported hash algorithm"):
        build_timestamp_request(IMPRINT, nonce=1, hash_algorithm="md5")


def test_verifier_needs_approved_tsas_and_roots(pki: TsaPki) -> None:
    response = pki.issue()
    with pytest.raises(TimestampError, match="no approved TSA certificates"):
        pki.verify(response, tsa_certificates=[])
    with pytest.raises(TimestampError, match="no approved certificate authorities"):
        pki.verify(response, roots=[])


def test_timestamp_info_validates(pki: TsaPki) -> None:
    info = pki.verify(pki.issue())
    fields = {f: getattr(info, f) for f in info.__dataclass_fields__}
    for change in ({"gen_time": NOW.replace(tzinfo=None)}, {"imprint": b"x"}, {"serial": -1}, {"token": b""}):
        with pytest.raises(ValueError):
            TimestampInfo(**{**fields, **change})


# --- parsers only ever return a value or raise our error ---


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_responses_verify_the_same_or_raise_timestamp_errors(
    pki: TsaPki, good_response: bytes, data: st.DataObject
) -> None:
    good = good_response
    expected = pki.verify(good)
    at = data.draw(st.integers(min_value=0, max_value=len(good) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.booleans())
    mutated = good[:at] if cut else good[:at] + bytes([value]) + good[at + 1 :]
    try:
        info = pki.verify(mutated)
    except TimestampError:
        return
    # Only bytes nothing relies on (an unused embedded certificate, the status's
    # "with modifications") may change; what the token proves may not.
    assert (info.gen_time, info.serial, info.nonce, info.imprint, info.tsa_certificate) == (
        expected.gen_time,
        expected.serial,
        expected.nonce,
        expected.imprint,
        expected.tsa_certificate,
    )


@settings(max_examples=150, deadline=None)
@given(blob=st.binary(max_size=300))
def test_random_requests_get_a_response_never_an_exception(pki: TsaPki, blob: bytes) -> None:
    response = pki.issue(request=blob)
    with pytest.raises(TimestampError):
        pki.verify(response)
    with pytest.raises(TimestampError):
        verify_timestamp_token(blob, imprint=IMPRINT, tsa_certificates=[pki.tsa.cert], roots=[pki.root])
