"""RFC 3161 timestamps: requests, tokens as a TSA issues them, and their verification.

Both sides of the protocol live here, as pure functions of bytes, keys and a time:

* :func:`build_timestamp_request` — a client's DER ``TimeStampReq``;
* :func:`issue_timestamp_response` — a TSA's answer: a ``TimeStampResp`` carrying a
  token (CMS ``SignedData`` over a ``TSTInfo``, signed with ECDSA and carrying the
  RFC 5816 ``signing-certificate-v2`` attribute), or a ``rejection`` with a failInfo
  for a request it will not serve; it never raises for a bad request;
* :func:`verify_timestamp_response` — a security server checking a fresh answer
  against its request (nonce, imprint, approved TSA, chain, clock);
* :func:`verify_timestamp_token` — an auditor checking a stored token offline.

ASN.1 is asn1crypto's (its ``tsp`` and ``cms`` modules); signatures and certificate
paths are cryptography's.  Verification is our own rather than rfc3161-client's so
that each checklist step fails with its own message, the signer must be one of the
TSAs that global configuration approves (not merely any certificate under a root),
the chain is checked at the token's time with the RFC 3161 §2.3 key-purpose rule,
and the TSA's clock is compared with ours; rfc3161-client serves the tests as an
independent check that the tokens issued here are standard.

Verification, in the order the code numbers its steps:

1. the response parses and its status is ``granted`` (otherwise
   :class:`TimestampRejected`, naming the status and failInfo);
2. the signer the token names is one of the approved TSA certificates;
3. the CMS signature verifies over the signed attributes, whose message-digest
   matches the TSTInfo and whose signing-certificate-v2 names that certificate
   (before anything in the TSTInfo is believed, its time included);
4. at the token's ``genTime`` the TSA certificate is valid, has a critical
   extendedKeyUsage of exactly id-kp-timeStamping, and chains to an approved root;
5. the imprint is the expected SHA-256 digest;
6. the nonce is the request's (fresh responses only);
7. ``genTime`` is within ``max_skew_s`` of ``now`` (fresh responses only).

Tokens are ECDSA-signed (SHA-256/384/512): the federation's TSAs use
the federation's key type, and an RSA-signed token is refused.  Generation times are
whole seconds.  Fetching over HTTP and the TSA's serial numbers are left to
:mod:`trust.service.tsa` and the gateway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.clock import require_utc
from trust.errors import TrustError
from trust.profiles import describe

__all__ = [
    "TSA_POLICY_OID",
    "HASH_ALGORITHMS",
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_NONCE_BITS",
    "TimestampError",
    "TimestampRejected",
    "TimestampInfo",
    "build_timestamp_request",
    "issue_timestamp_response",
    "rejection_response",
    "rejection_for_request",
    "verify_timestamp_response",
    "verify_timestamp_token",
]

#: The policy under which xweg's TSA issues tokens.  It lies under the registration-free
#: UUID arc 2.25 (ITU-T X.667 / RFC 4122 §A): 2.25.<UUID 9d44de43-7421-4035-8db7-7159ce66fc02
#: as an integer> is xweg's own arc, and ``.1`` under it is "xweg TSA policy, version 1".
TSA_POLICY_OID = "2.25.209046379563771518361849922880985824258.1"

#: Imprint hash algorithms a request may use, with their digest sizes in bytes.
HASH_ALGORITHMS: dict[str, int] = {"sha256": 32, "sha384": 48, "sha512": 64}
#: Bound on a request a TSA parses; real ones are under 100 bytes.
MAX_REQUEST_BYTES = 16 * 1024
#: Bound on a response or token a verifier parses (a token with a short chain is ~2 KiB).
MAX_RESPONSE_BYTES = 256 * 1024
#: Nonces are random integers of at most this many bits (RFC 3161 suggests 64).
MAX_NONCE_BITS = 256
#: Bound on TSA certificate paths: root, at most two intermediates, the TSA.
MAX_CHAIN_DEPTH = 4

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
#: What asn1crypto and cryptography raise for malformed input (InvalidVersion is no ValueError).
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    AttributeError,
    x509.InvalidVersion,
)


class TimestampError(TrustError):
    """A timestamp response or token was refused; the message names the failed check."""


class TimestampRejected(TimestampError):
    """The TSA answered, but without a token (status ``rejection``, ``waiting``, ...)."""

    def __init__(self, message: str, status: str, fail_info: frozenset[str]) -> None:
        super().__init__(message)
        self.status = status
        self.fail_info = fail_info


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161's TimeStampResp; asn1crypto's lacks OPTIONAL on the token, so it cannot hold a rejection."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token proves: ``imprint`` existed at ``gen_time``, per ``tsa_certificate``."""

    gen_time: datetime
    serial: int
    nonce: int | None
    imprint: bytes
    hash_algorithm: str
    tsa_certificate: x509.Certificate
    token: bytes  # DER ContentInfo of the token, as stored for auditors
    policy: str  # dotted OID of the TSA policy the token was issued under

    def __post_init__(self) -> None:
        require_utc(self.gen_time, "gen_time")
        if isinstance(self.serial, bool) or not isinstance(self.serial, int) or self.serial < 0:
            raise ValueError("serial must be a non-negative integer")
        if self.nonce is not None and (
            isinstance(self.nonce, bool) or not isinstance(self.nonce, int) or self.nonce < 0
        ):
            raise ValueError("nonce must be a non-negative integer or None")
        if self.hash_algorithm not in HASH_ALGORITHMS:
            raise ValueError(f"unsupported hash algorithm {self.hash_algorithm!r}")
        if not isinstance(self.imprint, bytes) or len(self.imprint) != HASH_ALGORITHMS[self.hash_algorithm]:
            raise ValueError(f"imprint must be a {self.hash_algorithm} digest")
        if not isinstance(self.tsa_certificate, x509.Certificate):
            raise ValueError("tsa_certificate must be an x509.Certificate")
        if not isinstance(self.token, bytes) or not self.token:
            raise ValueError("token must be non-empty DER")
        if not isinstance(self.policy, str) or not self.policy:
            raise ValueError("policy must be a dotted OID")


def _check_nonce(nonce: object) -> int:
    if (
        isinstance(nonce, bool)
        or not isinstance(nonce, int)
        or nonce < 0
        or nonce.bit_length() > MAX_NONCE_BITS
    ):
        raise ValueError(f"nonce must be a non-negative integer of at most {MAX_NONCE_BITS} bits")
    return nonce


def _check_imprint(imprint: object, hash_algorithm: str) -> bytes:
    if hash_algorithm not in HASH_ALGORITHMS:
        raise ValueError(
            f"unsupported hash algorithm {hash_algorithm!r}; use one of {sorted(HASH_ALGORITHMS)}"
        )
    if not isinstance(imprint, bytes) or len(imprint) != HASH_ALGORITHMS[hash_algorithm]:
        raise ValueError(
            f"imprint must be a {hash_algorithm} digest of {HASH_ALGORITHMS[hash_algorithm]} bytes"
        )
    return imprint


# --------------------------------------------------------------------------- requests


def build_timestamp_request(
    imprint: bytes, *, nonce: int, hash_algorithm: str = "sha256", cert_req: bool = True
) -> bytes:
    """A DER ``TimeStampReq`` for a digest (``imprint``) computed with ``hash_algorithm``."""
    _check_imprint(imprint, hash_algorithm)
    _check_nonce(nonce)
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": hash_algorithm}, "hashed_message": imprint},
            "nonce": nonce,
            "cert_req": bool(cert_req),
        }
    )
    return bytes(request.dump())


# --------------------------------------------------------------------------- the TSA side


def rejection_response(fail_info: str, text: str) -> bytes:
    """A DER ``TimeStampResp`` with status ``rejection``, one failInfo bit and a status text."""
    if fail_info not in tsp.PKIFailureInfo._map.values():
        raise ValueError(f"unknown failInfo {fail_info!r}")
    response = _TimeStampResp(
        {"status": {"status": "rejection", "status_string": [text], "fail_info": {fail_info}}}
    )
    return bytes(response.dump())


def rejection_for_request(request_der: bytes, *, policy_oid: str = TSA_POLICY_OID) -> bytes | None:
    """The rejection a TSA answers ``request_der`` with, or ``None`` if it would grant a token.

    Lets a TSA spend nothing (no serial number, no disk write) on a request it refuses.
    """
    parsed = _parse_request(request_der, policy_oid)
    return parsed if isinstance(parsed, bytes) else None


@dataclass(frozen=True)
class _Request:
    imprint_der: bytes
    nonce: int | None
    cert_req: bool


def _parse_request(request_der: bytes, policy_oid: str) -> _Request | bytes:
    """The request's fields, or the rejection response it deserves."""
    if not isinstance(request_der, bytes) or not request_der:
        return rejection_response("bad_request", "empty request")
    if len(request_der) > MAX_REQUEST_BYTES:
        return rejection_response("bad_request", f"request larger than {MAX_REQUEST_BYTES} bytes")
    # asn1crypto parses lazily: every field is read inside this try.
    try:
        request = tsp.TimeStampReq.load(request_der, strict=True)
        imprint = request["message_imprint"]
        imprint_der = bytes(imprint.dump())
        version = request["version"].native
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        parameters = imprint["hash_algorithm"]["parameters"].native
        digest = imprint["hashed_message"].native
        req_policy = request["req_policy"].native
        nonce = request["nonce"].native
        cert_req = bool(request["cert_req"].native)
        extensions = request["extensions"].native
    except _PARSE_ERRORS:
        return rejection_response("bad_request", "malformed TimeStampReq")
    if version != "v1":
        return rejection_response("bad_request", f"unsupported request version {version}")
    if algorithm not in HASH_ALGORITHMS:
        return rejection_response("bad_alg", f"unsupported hash algorithm {algorithm}")
    if parameters is not None:
        return rejection_response("bad_alg", f"unexpected parameters for {algorithm}")
    if len(digest) != HASH_ALGORITHMS[algorithm]:
        return rejection_response("bad_data_format", f"message imprint is not a {algorithm} digest")
    if req_policy is not None and req_policy != policy_oid:
        return rejection_response("unaccepted_policy", f"policy {req_policy} is not offered")
    if extensions:
        return rejection_response("unaccepted_extensions", "request extensions are not supported")
    if nonce is not None and (nonce < 0 or nonce.bit_length() > MAX_NONCE_BITS):
        return rejection_response(
            "bad_request", f"nonce must be non-negative and at most {MAX_NONCE_BITS} bits"
        )
    # RFC 3161 §2.4.2: the token's imprint is the request's, byte for byte.
    return _Request(imprint_der, nonce, cert_req)


def _asn1_name(name: x509.Name) -> asn1_x509.Name:
    return asn1_x509.Name.load(name.public_bytes())


def _asn1_certificate(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def issue_timestamp_response(
    request_der: bytes,
    *,
    tsa_certificate: x509.Certificate,
    tsa_key: ec.EllipticCurvePrivateKey,
    chain: Sequence[x509.Certificate],
    now: datetime,
    serial: int,
    policy_oid: str = TSA_POLICY_OID,
    accuracy_s: int = 1,
) -> bytes:
    """The TSA's DER ``TimeStampResp`` to ``request_der``, generated at ``now`` with ``serial``.

    A malformed or unserviceable request gets a ``rejection`` response (failInfo
    ``badRequest``, ``badAlg``, ``badDataFormat``, ``unacceptedPolicy`` or
    ``unacceptedExtensions``), never an exception.  Arguments that are the operator's
    (key, certificate, serial) raise ``ValueError`` when wrong.  With ``certReq`` the
    token carries the TSA certificate followed by ``chain``.
    """
    require_utc(now, "now")
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 1 or serial.bit_length() > 159:
        raise ValueError("serial must be a positive integer of at most 159 bits (20 DER octets)")
    if isinstance(accuracy_s, bool) or not isinstance(accuracy_s, int) or accuracy_s < 0:
        raise ValueError("accuracy_s must be a non-negative integer")
    if not isinstance(tsa_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the TSA key must be an EC private key")
    if tsa_certificate.public_key() != tsa_key.public_key():
        raise ValueError(f"the TSA key does not match {describe(tsa_certificate)}")
    try:
        x509.ObjectIdentifier(policy_oid)
    except (TypeError, ValueError):
        raise ValueError(f"policy_oid {policy_oid!r} is not a dotted OID") from None

    parsed = _parse_request(request_der, policy_oid)
    if isinstance(parsed, bytes):
        return parsed

    gen_time = now.replace(microsecond=0)
    fields: dict[str, object] = {
        "version": "v1",
        "policy": policy_oid,
        "message_imprint": tsp.MessageImprint.load(parsed.imprint_der),
        "serial_number": serial,
        "gen_time": gen_time,
    }
    if accuracy_s:
        fields["accuracy"] = {"seconds": accuracy_s}
    if parsed.nonce is not None:
        fields["nonce"] = parsed.nonce
    tst_der = bytes(tsp.TSTInfo(fields).dump())

    cert_der = tsa_certificate.public_bytes(serialization.Encoding.DER)
    issuer = _asn1_name(tsa_certificate.issuer)
    signed_attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]},
            {
                "type": "signing_certificate_v2",
                "values": [
                    {
                        "certs": [
                            {
                                # hash_algorithm left at its DEFAULT, SHA-256
                                "cert_hash": hashlib.sha256(cert_der).digest(),
                                "issuer_serial": {
                                    "issuer": [asn1_x509.GeneralName({"directory_name": issuer})],
                                    "serial_number": tsa_certificate.serial_number,
                                },
                            }
                        ]
                    }
                ],
            },
        ]
    )
    # RFC 5652 §5.4: the signature covers the attributes DER-encoded as a SET OF.
    signature = tsa_key.sign(bytes(signed_attrs.dump(force=True)), ec.ECDSA(hashes.SHA256()))
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": issuer,
                        "serial_number": tsa_certificate.serial_number,
                    }
                }
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": signature,
        }
    )
    signed_data: dict[str, object] = {
        "version": "v3",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(tst_der)},
        "signer_infos": [signer_info],
    }
    if parsed.cert_req:
        signed_data["certificates"] = [_asn1_certificate(c) for c in (tsa_certificate, *chain)]
    token = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)})
    response = _TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
    return bytes(response.dump())


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class _CertId:
    """The first ESSCertID(v2) of the signing-certificate attribute: it names the signer."""

    algorithm: str  # "sha1" for the RFC 2634 ESSCertID
    cert_hash: bytes
    issuers: tuple[asn1_x509.Name, ...] | None  # directory names of issuerSerial, if present
    serial: int | None


@dataclass(frozen=True)
class _Token:
    """A token's fields, read out of the ASN.1 but not yet trusted."""

    der: bytes
    tst_der: bytes
    signed_attrs_der: bytes
    embedded: tuple[x509.Certificate, ...]
    # SignerInfo
    sid: cms.SignerIdentifier
    digest_algorithm: str
    signature_algo: str
    signature_hash: str
    signature: bytes
    content_type: str | None
    message_digest: bytes | None
    cert_id: _CertId | None
    # TSTInfo
    version: str
    policy: str
    hash_algorithm: str
    hashed_message: bytes
    serial: int
    gen_time: datetime
    nonce: int | None


def _cert_id(value: core.Asn1Value) -> _CertId:
    first = value["certs"][0]  # RFC 5035 §5.4: the first ESSCertID names the signer
    algorithm = first["hash_algorithm"]["algorithm"].native if isinstance(first, tsp.ESSCertIDv2) else "sha1"
    issuer_serial = first["issuer_serial"]
    if isinstance(issuer_serial, core.Void):
        return _CertId(algorithm, first["cert_hash"].native, None, None)
    issuers = tuple(n.chosen for n in issuer_serial["issuer"] if n.name == "directory_name")
    return _CertId(algorithm, first["cert_hash"].native, issuers, issuer_serial["serial_number"].native)


def _parse_token(der: bytes) -> _Token:
    """Read a token's fields; any structural fault is a :class:`TimestampError` (step 1).

    asn1crypto parses lazily and re-encodes what ``.native`` has touched, so the DER
    that signatures cover is taken before any value is read, and every read happens
    inside the ``try``.
    """
    try:
        token = cms.ContentInfo.load(der, strict=True)
        if token["content_type"].native != "signed_data":
            raise TimestampError("timestamp token is not CMS SignedData")
        signed = token["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TimestampError("timestamp token does not encapsulate a TSTInfo")
        content = encap["content"]
        if not isinstance(content, core.ParsableOctetString):
            raise TimestampError("timestamp token has no TSTInfo content")
        tst_der = bytes(content.contents)
        signers = signed["signer_infos"]
        if len(signers) != 1:
            raise TimestampError(f"timestamp token has {len(signers)} signers, expected exactly one")
        signer = signers[0]
        signed_attrs = signer["signed_attrs"]
        if not isinstance(signed_attrs, cms.CMSAttributes) or not len(signed_attrs):
            raise TimestampError("timestamp token has no signed attributes")
        # The signature covers the attributes with their SET OF tag, not the [0] they travel in.
        signed_attrs_der = b"\x31" + bytes(signed_attrs.dump())[1:]

        values: dict[str, core.Asn1Value] = {}
        for attr in signed_attrs:
            name = attr["type"].native
            if name in values or len(attr["values"]) != 1:
                raise TimestampError(
                    f"timestamp token's signed attribute {name} must occur once, with one value"
                )
            values[name] = attr["values"][0]
        content_type = values["content_type"].native if "content_type" in values else None
        message_digest = values["message_digest"].native if "message_digest" in values else None
        cert_id = None
        if "signing_certificate_v2" in values:
            cert_id = _cert_id(values["signing_certificate_v2"])
        elif "signing_certificate" in values:
            cert_id = _cert_id(values["signing_certificate"])

        digest_algorithm = signer["digest_algorithm"]["algorithm"].native
        sig_algorithm = signer["signature_algorithm"]
        signature_algo = sig_algorithm.signature_algo
        # Bare id-ecdsa leaves the hash to the digest algorithm.
        bare = sig_algorithm["algorithm"].native == "ecdsa"
        signature_hash = digest_algorithm if bare else sig_algorithm.hash_algo
        signature = signer["signature"].native

        embedded: list[x509.Certificate] = []
        certificates = signed["certificates"]
        if isinstance(certificates, cms.CertificateSet):
            for choice in certificates:
                if choice.name != "certificate":
                    raise TimestampError("timestamp token carries a non-X.509 certificate")
                embedded.append(x509.load_der_x509_certificate(bytes(choice.chosen.dump())))

        tst = tsp.TSTInfo.load(tst_der, strict=True)
        imprint = tst["message_imprint"]
        return _Token(
            der=der,
            tst_der=tst_der,
            signed_attrs_der=signed_attrs_der,
            embedded=tuple(embedded),
            sid=signer["sid"],
            digest_algorithm=digest_algorithm,
            signature_algo=signature_algo,
            signature_hash=signature_hash,
            signature=signature,
            content_type=content_type,
            message_digest=message_digest,
            cert_id=cert_id,
            version=tst["version"].native,
            policy=tst["policy"].dotted,
            hash_algorithm=imprint["hash_algorithm"]["algorithm"].native,
            hashed_message=imprint["hashed_message"].native,
            serial=tst["serial_number"].native,
            gen_time=tst["gen_time"].native,
            nonce=tst["nonce"].native,
        )
    except TimestampError:
        raise
    except _PARSE_ERRORS as exc:
        raise TimestampError(f"timestamp token is malformed: {exc}") from exc


def _matches_sid(cert: x509.Certificate, sid: cms.SignerIdentifier) -> bool:
    if sid.name == "issuer_and_serial_number":
        return bool(
            cert.serial_number == sid.chosen["serial_number"].native
            and _asn1_name(cert.issuer) == sid.chosen["issuer"]
        )
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return False
    return bool(ski == sid.chosen.native)


def _signer_certificate(token: _Token, tsa_certificates: Sequence[x509.Certificate]) -> x509.Certificate:
    """Step 2: the certificate the token names as its signer, which must be an approved TSA's."""
    if not tsa_certificates:
        raise TimestampError("no approved TSA certificates to verify the timestamp against")
    try:
        approved = [c for c in tsa_certificates if _matches_sid(c, token.sid)]
        if approved:
            return approved[0]
        embedded = [c for c in token.embedded if _matches_sid(c, token.sid)]
    except _PARSE_ERRORS as exc:
        raise TimestampError(f"timestamp token's signer identifier is malformed: {exc}") from exc
    if embedded:
        raise TimestampError(
            f"timestamp token is signed by {describe(embedded[0])}, which is not an approved TSA"
        )
    raise TimestampError("timestamp token's signer is neither an approved TSA nor a certificate it carries")


def _check_cert_id(cert_id: _CertId | None, cert: x509.Certificate) -> None:
    """The signing-certificate(-v2) attribute must name exactly the signer's certificate."""
    if cert_id is None:
        raise TimestampError("timestamp token lacks the signing-certificate-v2 attribute (RFC 5816)")
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    if cert_id.algorithm == "sha1":
        # ESSCertID (RFC 2634) is SHA-1; it only identifies a certificate we already hold.
        expected = hashlib.sha1(cert_der, usedforsecurity=False).digest()
    elif cert_id.algorithm in _HASHES:
        expected = hashlib.new(cert_id.algorithm, cert_der).digest()
    else:
        raise TimestampError(
            f"timestamp token's signing certificate uses unsupported hash {cert_id.algorithm}"
        )
    if cert_id.cert_hash != expected:
        raise TimestampError(
            f"timestamp token's signing-certificate attribute does not name {describe(cert)}"
        )
    if cert_id.issuers is not None:
        issuer = _asn1_name(cert.issuer)
        if cert_id.serial != cert.serial_number or not any(n == issuer for n in cert_id.issuers):
            raise TimestampError(
                f"timestamp token's signing-certificate issuer and serial do not match {describe(cert)}"
            )


def _check_signature(token: _Token, cert: x509.Certificate) -> None:
    """Step 3: the CMS signature over the signed attributes, and what they bind."""
    # (3a) algorithms the federation accepts
    if (
        token.digest_algorithm not in _HASHES
        or token.signature_hash not in _HASHES
        or token.signature_algo != "ecdsa"
    ):
        raise TimestampError(
            f"timestamp token uses a refused algorithm ({token.signature_algo} with {token.signature_hash}, "
            f"digest {token.digest_algorithm}); ECDSA with SHA-2 is required"
        )
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise TimestampError(f"{describe(cert)} does not hold an EC key")
    # (3b) the signature over the DER SET OF signed attributes
    try:
        public_key.verify(token.signature, token.signed_attrs_der, ec.ECDSA(_HASHES[token.signature_hash]()))
    except InvalidSignature:
        raise TimestampError(f"timestamp token's signature does not verify with {describe(cert)}") from None
    # (3c) the signed attributes bind the TSTInfo and the signer's certificate
    if token.content_type != "tst_info":
        raise TimestampError("timestamp token's content-type attribute is not id-ct-TSTInfo")
    if token.message_digest != hashlib.new(token.digest_algorithm, token.tst_der).digest():
        raise TimestampError("timestamp token's message-digest attribute does not match its TSTInfo")
    _check_cert_id(token.cert_id, cert)


def _check_chain(
    cert: x509.Certificate,
    gen_time: datetime,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
) -> None:
    """Step 4: the TSA certificate at the token's time: validity, key purpose, path to a root."""
    name = f"TSA {describe(cert)}"
    if not roots:
        raise TimestampError(f"{name} cannot be validated: no approved certificate authorities")
    # (4a) validity at gen_time, checked first for the clearest message
    if gen_time < cert.not_valid_before_utc:
        raise TimestampError(
            f"{name} was not yet valid at the token's time {gen_time.isoformat()} "
            f"(valid from {cert.not_valid_before_utc.isoformat()})"
        )
    if gen_time > cert.not_valid_after_utc:
        raise TimestampError(
            f"{name} expired at {cert.not_valid_after_utc.isoformat()}, "
            f"before the token's time {gen_time.isoformat()}"
        )
    # (4b) RFC 3161 §2.3: a critical extendedKeyUsage with id-kp-timeStamping as its only purpose
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampError(
            f"{name} has no extendedKeyUsage, so it is no timestamping certificate"
        ) from None
    except ValueError as exc:
        raise TimestampError(f"{name} has unreadable extensions: {exc}") from exc
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampError(f"{name} lacks a critical extendedKeyUsage of exactly id-kp-timeStamping")
    # (4c) the path to an approved root, every certificate valid at gen_time
    try:
        ee_policy = verification.ExtensionPolicy.permit_all().require_present(
            x509.ExtendedKeyUsage, verification.Criticality.CRITICAL, None
        )
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(roots)))
            .time(gen_time)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
            )
            .build_client_verifier()
        )
        verifier.verify(cert, list(intermediates))
    except verification.VerificationError as exc:
        raise TimestampError(
            f"{name} does not chain to an approved CA at {gen_time.isoformat()}: {exc}"
        ) from exc
    except ValueError as exc:
        raise TimestampError(f"{name} cannot be validated: {exc}") from exc


def _verify_token(
    token: _Token,
    imprint: bytes,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
) -> TimestampInfo:
    """Steps 2 to 5, shared by fresh responses and stored tokens."""
    # (2) the signer is one of the approved TSAs (compared as whole certificates)
    cert = _signer_certificate(token, tsa_certificates)
    # (3) the signature verifies and binds this TSTInfo and this certificate
    _check_signature(token, cert)
    if token.version != "v1":
        raise TimestampError(f"TSTInfo version {token.version} is not v1")
    # (4) the TSA certificate chains to an approved root and may timestamp, at gen_time
    _check_chain(cert, token.gen_time, roots, [*intermediates, *token.embedded])
    # (5) the token is for our digest, made with SHA-256
    if token.hash_algorithm != "sha256":
        raise TimestampError(f"timestamp token's imprint uses {token.hash_algorithm}, expected sha256")
    if token.hashed_message != imprint:
        raise TimestampError(
            f"timestamp token is for another message: imprint {token.hashed_message.hex()[:16]}..., "
            f"expected {imprint.hex()[:16]}..."
        )
    try:
        return TimestampInfo(
            gen_time=token.gen_time,
            serial=token.serial,
            nonce=token.nonce,
            imprint=token.hashed_message,
            hash_algorithm=token.hash_algorithm,
            tsa_certificate=cert,
            token=token.der,
            policy=token.policy,
        )
    except ValueError as exc:
        raise TimestampError(f"timestamp token has an invalid field: {exc}") from exc


def _check_inputs(imprint: bytes, der: bytes, what: str) -> None:
    _check_imprint(imprint, "sha256")
    if not isinstance(der, bytes):
        raise TypeError(f"{what} must be bytes")
    if len(der) > MAX_RESPONSE_BYTES:
        raise TimestampError(f"{what} is larger than {MAX_RESPONSE_BYTES} bytes")


def verify_timestamp_response(
    response_der: bytes,
    *,
    imprint: bytes,
    nonce: int,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    now: datetime,
    max_skew_s: float = 300.0,
) -> TimestampInfo:
    """Verify a TSA's answer to the request for ``imprint`` (SHA-256) with ``nonce``, at ``now``.

    ``tsa_certificates`` are the TSAs global configuration approves, ``roots`` the
    approved CAs, ``intermediates`` CA certificates that may link them (the token's
    own certificates are used as such too).  Raises :class:`TimestampRejected` for an
    answer without a token and :class:`TimestampError` for every other failure.
    """
    require_utc(now, "now")
    _check_inputs(imprint, response_der, "timestamp response")
    _check_nonce(nonce)
    if not max_skew_s >= 0:
        raise ValueError("max_skew_s must be non-negative")
    # (1) the response parses and its status grants a token
    try:
        response = _TimeStampResp.load(response_der, strict=True)
        token_der = bytes(response["time_stamp_token"].dump())  # before any value is read
        status = response["status"]["status"].native
        texts = response["status"]["status_string"].native or []
        fail_info = response["status"]["fail_info"].native or set()
    except _PARSE_ERRORS as exc:
        raise TimestampError(f"timestamp response is malformed: {exc}") from exc
    if status not in ("granted", "granted_with_mods"):
        detail = f"; failInfo {', '.join(sorted(fail_info))}" if fail_info else ""
        said = f": {'; '.join(texts)}" if texts else ""
        raise TimestampRejected(
            f"the TSA answered with status {status}{detail}{said}", str(status), frozenset(fail_info)
        )
    if not token_der:
        raise TimestampError(f"timestamp response has status {status} but no token")
    token = _parse_token(token_der)
    # (2)-(5) signer approved, signature, chain at gen_time, imprint
    info = _verify_token(token, imprint, tsa_certificates, roots, intermediates)
    # (6) the token answers our request, not an earlier one replayed
    if info.nonce != nonce:
        raise TimestampError(
            "timestamp token's nonce does not match the request"
            + (" (the token has none)" if info.nonce is None else "")
        )
    # (7) the TSA's clock agrees with ours
    skew = (info.gen_time - now).total_seconds()
    if abs(skew) > max_skew_s:
        direction = "ahead of" if skew > 0 else "behind"
        raise TimestampError(
            f"the TSA's clock is {abs(skew):.0f} s {direction} ours (token time {info.gen_time.isoformat()}, "
            f"now {now.isoformat()}; at most {max_skew_s:.0f} s tolerated)"
        )
    return info


def verify_timestamp_token(
    token_der: bytes,
    *,
    imprint: bytes,
    tsa_certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
) -> TimestampInfo:
    """Verify a stored token (DER ContentInfo) for ``imprint``, offline: steps 1 to 5, chain at its time.

    The token's own time is what it proves, so there is no ``now`` and no nonce.
    """
    _check_inputs(imprint, token_der, "timestamp token")
    # (1) the token parses
    token = _parse_token(token_der)
    return _verify_token(token, imprint, tsa_certificates, roots, intermediates)
