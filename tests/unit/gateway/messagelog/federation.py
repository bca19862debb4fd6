"""A real federation for evidence tests: CA hierarchy, OCSP, TSA, signed global configuration, a signed log.

Everything is real: a root CA and an issuing CA (``trust.ca``), members' sign
certificates, OCSP responses from ``trust.ocsp.build_ocsp_response``, RFC 3161 tokens
from ``trust.timestamps.issue_timestamp_response``, global configuration signed with
the registry key the anchor names, JWS message signatures.  :func:`federation` is built
once per session (key generation is the slow part); :func:`write_log` writes a fresh
log file, as a security server would have, for every test to tamper with.

The log is that of the provider's server ``NRW/GOV/057/ss1``, owned by ``NRW/GOV/057``:

* records 1-6: three exchanges (messages ``msg-1`` .. ``msg-3``), under global
  configuration serial 7; checkpoint 6, made under serial 8;
* records 7-10: two more exchanges (``msg-4``, ``msg-5``) under serial 8; checkpoint 10.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from core.canonical import b64, canonical_json, request_digest, response_digest
from core.identifiers import MemberId, SecurityServerId, ServiceId, SubsystemId
from core.messages import Protocol, RequestHeader, ResponseHeader, sha512
from gateway.messagelog.checkpoint import Checkpoint, encode_path, inclusion_paths
from gateway.messagelog.record import Direction, NewRecord
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.timestamper import checkpoint_signer
from trust.anchor import Anchor, AnchorKey
from trust.ca import CertificateAuthority
from trust.certificates import CertificateTrust
from trust.evidence import trust_from_globalconf
from trust.globalconf import (
    ApprovedCA,
    ApprovedTSA,
    GlobalConf,
    MemberInfo,
    SecurityServerInfo,
    sign_global_conf,
)
from trust.keys import generate_private_key, make_csr, public_key_pem
from trust.merkle import root
from trust.ocsp import CertStatus, build_ocsp_request, build_ocsp_response
from trust.signatures import sign_digest, verify_signature
from trust.timestamps import build_timestamp_request, issue_timestamp_response, verify_timestamp_response

__all__ = [
    "T0",
    "CLIENT",
    "SERVICE",
    "PROVIDER",
    "OTHER_MEMBER",
    "ORIGIN",
    "TSA_NAME",
    "Federation",
    "Signer",
    "federation",
    "write_log",
    "stamp",
    "LogFacts",
]

T0 = dt.datetime(2026, 2, 10, 9, 0, 0, tzinfo=dt.UTC)
INSTANCE = "NRW"
CLIENT = SubsystemId(INSTANCE, "MUN", "05774032", "gewerbeamt")
PROVIDER = MemberId(INSTANCE, "GOV", "057")
SERVICE = ServiceId(PROVIDER.subsystem("arbeitsschutz"), "gewerbeanzeige")
OTHER_MEMBER = MemberId(INSTANCE, "MUN", "05711000")
ORIGIN = SecurityServerId(PROVIDER, "ss1")
TSA_NAME = "IT.NRW Zeitstempeldienst"
KEY_ID = "registry-2026"
_serials = itertools.count(1000)


@dataclass(frozen=True)
class Signer:
    member: MemberId
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate = field(repr=False)


@dataclass(frozen=True)
class Federation:
    root: CertificateAuthority
    issuing: CertificateAuthority
    responder_key: ec.EllipticCurvePrivateKey
    responder: x509.Certificate
    tsa_key: ec.EllipticCurvePrivateKey
    tsa: x509.Certificate
    registry_key: ec.EllipticCurvePrivateKey
    client: Signer
    provider: Signer
    other: Signer  # a member of the federation with a valid sign certificate, not the origin's owner
    stranger: Signer  # a self-made key and self-signed certificate claiming to be the provider
    documents: dict[int, bytes]  # serial -> signed global configuration

    def anchor(self, key: ec.EllipticCurvePrivateKey | None = None) -> Anchor:
        return Anchor(
            instance=INSTANCE,
            registry_urls=("https://registry.nrw.example/",),
            signing_keys=(AnchorKey(KEY_ID, public_key_pem(key or self.registry_key)),),
            generated_at=T0 - dt.timedelta(days=60),
        )

    def conf(self, serial: int) -> GlobalConf:
        generated = {7: T0 - dt.timedelta(minutes=5), 8: T0 + dt.timedelta(minutes=5)}[serial]
        return GlobalConf(
            instance=INSTANCE,
            serial=serial,
            generated_at=generated,
            expires_at=generated + dt.timedelta(minutes=15),
            members=(
                MemberInfo(CLIENT.member, "Stadt Paderborn", ("gewerbeamt",)),
                MemberInfo(PROVIDER, "Bezirksregierung Detmold", ("arbeitsschutz",)),
                MemberInfo(OTHER_MEMBER, "Stadt Bielefeld", ()),
            ),
            security_servers=(
                SecurityServerInfo(
                    ORIGIN, "ss1.brdt.nrw.example:5500", (hashlib.sha256(b"auth").hexdigest(),)
                ),
            ),
            global_groups=(),
            approved_cas=(
                ApprovedCA(
                    self.root.certificate,
                    (self.issuing.certificate,),
                    "http://ocsp.nrw.example/",
                    (self.responder,),
                ),
            ),
            approved_tsas=(ApprovedTSA(TSA_NAME, "http://tsa.nrw.example/", self.tsa),),
        )

    def trust(self) -> CertificateTrust:
        """Root, issuing CA and the OCSP policy, as global configuration says."""
        return trust_from_globalconf(self.conf(7))

    def ocsp(self, certificate: x509.Certificate, at: dt.datetime) -> bytes:
        """A good OCSP response for ``certificate``, produced at ``at``."""
        return build_ocsp_response(
            build_ocsp_request(certificate, self.issuing.certificate),
            lookup=lambda serial: CertStatus("good"),
            issuer=self.issuing.certificate,
            responder_certificate=self.responder,
            responder_key=self.responder_key,
            now=at,
        )

    def check_record(self, jws: str, digest: bytes, at: dt.datetime) -> str:
        """A SignatureCheck with the federation's CAs (no OCSP: the log does not hold the policy)."""
        return verify_signature(
            jws, digest, CertificateTrust(self.trust().roots, self.trust().intermediates), at
        ).member.slash()

    def check_checkpoint(self, jws: str, digest: bytes, ocsp: bytes | None, at: dt.datetime) -> str:
        """A CheckpointSignatureCheck with OCSP, as global configuration says."""
        return verify_signature(jws, digest, self.trust(), at, ocsp_response=ocsp).member.slash()


def _sign_member(issuing: CertificateAuthority, member: MemberId) -> Signer:
    key = generate_private_key()
    return Signer(
        member,
        key,
        issuing.issue_sign_certificate(make_csr(key, "m"), member, now=T0 - dt.timedelta(days=10)),
    )


def _self_signed(member: MemberId) -> Signer:
    key = generate_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, member.slash())])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0 - dt.timedelta(days=1))
        .not_valid_after(T0 + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return Signer(member, key, cert)


@functools.cache
def federation() -> Federation:
    start = T0 - dt.timedelta(days=30)
    root_ca = CertificateAuthority.create_root("xweg NRW Root CA", generate_private_key(), now=start)
    issuing = CertificateAuthority.create_intermediate(
        root_ca, "xweg NRW Issuing CA", generate_private_key(), now=start
    )
    responder_key, tsa_key = generate_private_key(), generate_private_key()
    fed = Federation(
        root=root_ca,
        issuing=issuing,
        responder_key=responder_key,
        responder=issuing.issue_ocsp_responder_certificate(
            responder_key.public_key(), "xweg NRW OCSP", now=start
        ),
        tsa_key=tsa_key,
        tsa=issuing.issue_tsa_certificate(make_csr(tsa_key, "t"), TSA_NAME, now=start),
        registry_key=generate_private_key(),
        client=_sign_member(issuing, CLIENT.member),
        provider=_sign_member(issuing, PROVIDER),
        other=_sign_member(issuing, OTHER_MEMBER),
        stranger=_self_signed(PROVIDER),
        documents={},
    )
    for serial in (7, 8):
        fed.documents[serial] = sign_global_conf(fed.conf(serial), fed.registry_key, KEY_ID)
    return fed


def exchange(fed: Federation, number: int, at: dt.datetime) -> tuple[NewRecord, NewRecord]:
    """A signed request (with its OCSP response) and the signed response, as the provider logs them."""
    message_id = f"msg-{number}"
    body = canonical_json({"betrieb": f"Tischlerei {number}", "anzeige": "Neuerrichtung"})
    request_header = RequestHeader(
        protocol=Protocol.REST,
        client=CLIENT,
        service=SERVICE,
        message_id=message_id,
        method="POST",
        path="/anzeigen",
        query="",
        headers=(("content-type", "application/json"),),
        body_sha512=sha512(body),
        body_size=len(body),
    )
    digest = request_digest(request_header)
    request = NewRecord(
        direction=Direction.REQUEST,
        message_id=message_id,
        client=CLIENT.slash(),
        service=SERVICE.slash(),
        logged_at=at,
        header=canonical_json(request_header.to_dict()),
        body=body,
        signature=sign_digest(digest, fed.client.key, fed.client.certificate),
        ocsp=fed.ocsp(fed.client.certificate, at - dt.timedelta(seconds=30)),
    )
    answer = canonical_json({"aktenzeichen": f"AS-2026-{number:04d}"})
    response_header = ResponseHeader(
        message_id=message_id,
        request_hash=b64(digest),
        status=201,
        headers=(("content-type", "application/json"),),
        body_sha512=sha512(answer),
        body_size=len(answer),
    )
    later = at + dt.timedelta(milliseconds=250)
    response = NewRecord(
        direction=Direction.RESPONSE,
        message_id=message_id,
        client=CLIENT.slash(),
        service=SERVICE.slash(),
        logged_at=later,
        header=canonical_json(response_header.to_dict()),
        body=answer,
        signature=sign_digest(response_digest(response_header), fed.provider.key, fed.provider.certificate),
        status=201,
        ocsp=fed.ocsp(fed.provider.certificate, later - dt.timedelta(seconds=30)),
    )
    return request, response


def stamp(
    store: MessageLogStore,
    fed: Federation,
    at: dt.datetime,
    *,
    signer: Signer | None = None,
    origin: str = ORIGIN.slash(),
) -> Checkpoint:
    """Make, sign, timestamp and store a checkpoint over every record, as the timestamper does."""
    last = store.last_checkpoint()
    covered = 0 if last is None else last.size
    size = store.last_seq()
    leaves = store.leaf_hashes(size)
    tree_root = root(leaves)
    body = Checkpoint.unsigned_body(origin, size, tree_root, at)
    who = signer or fed.provider
    signature, signer_ocsp = checkpoint_signer(
        who.key,
        who.certificate,
        lambda: (
            fed.ocsp(who.certificate, at)
            if who.certificate.issuer == fed.issuing.certificate.subject
            else None
        ),
    )(body)
    imprint = hashlib.sha256(body).digest()
    response = issue_timestamp_response(
        build_timestamp_request(imprint, nonce=77),
        tsa_certificate=fed.tsa,
        tsa_key=fed.tsa_key,
        chain=[fed.issuing.certificate],
        now=at,
        serial=next(_serials),
    )
    info = verify_timestamp_response(
        response,
        imprint=imprint,
        nonce=77,
        tsa_certificates=[fed.tsa],
        roots=[fed.root.certificate],
        intermediates=[fed.issuing.certificate],
        now=at,
    )
    checkpoint = Checkpoint(
        origin, size, tree_root, at, info.token, TSA_NAME, info.gen_time, signature, signer_ocsp
    )
    paths = inclusion_paths(leaves, covered, size - 1)
    store.add_checkpoint(checkpoint, [(covered + 1 + i, encode_path(p)) for i, p in enumerate(paths)])
    return checkpoint


@dataclass(frozen=True)
class LogFacts:
    path: Path
    checkpoints: tuple[Checkpoint, ...]


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def write_log(path: Path, fed: Federation | None = None, *, upto: int = 10) -> LogFacts:
    """The log described in the module docstring (``upto`` 6: only its first part)."""
    fed = fed or federation()
    seconds = {1: 10, 2: 20, 3: 290, 4: 360, 5: 370}
    checkpoints: list[Checkpoint] = []
    with MessageLogStore.open(path) as store:
        store.set_meta("server_id", ORIGIN.slash())
        store.set_meta("approved_cas", _pem(fed.root.certificate))
        store.set_meta("intermediate_cas", _pem(fed.issuing.certificate))
        store.set_meta("approved_tsas", _pem(fed.tsa))
        for serial in (7, 8):
            conf = fed.conf(serial)
            store.record_globalconf(serial, fed.documents[serial], conf.generated_at, conf.expires_at)
        for number in (1, 2, 3):
            store.append(list(exchange(fed, number, T0 + dt.timedelta(seconds=seconds[number]))))
        checkpoints.append(stamp(store, fed, T0 + dt.timedelta(seconds=310)))
        if upto > 6:
            for number in (4, 5):
                store.append(list(exchange(fed, number, T0 + dt.timedelta(seconds=seconds[number]))))
            checkpoints.append(stamp(store, fed, T0 + dt.timedelta(seconds=420)))
    return LogFacts(path, tuple(checkpoints))
