"""A real PKI and real RFC 3161 TSAs for timestamping tests, well-behaved and not.

``Pki`` is a root CA with a TSA certificate (critical extendedKeyUsage timeStamping);
``TsaServer`` serves ``trust.timestamps.issue_timestamp_response`` over aiohttp on
127.0.0.1 and can be told to misbehave; ``timestamp_log`` stores a checkpoint the way
a timestamper does, synchronously, for verification tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import itertools
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.clock import Clock
from gateway.messagelog.checkpoint import Checkpoint, encode_path, inclusion_paths
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.timestamper import TsaEndpoint
from tests.unit.gateway.messagelog.helpers import CHECKPOINT_SIGNERS
from trust.merkle import root
from trust.timestamps import (
    build_timestamp_request,
    issue_timestamp_response,
    rejection_response,
    verify_timestamp_response,
)

__all__ = [
    "Pki",
    "TsaIdentity",
    "Behaviour",
    "TsaServer",
    "closed_port_url",
    "timestamp_log",
    "ORIGIN",
    "ORIGIN_OWNER",
]

ORIGIN = "EE/GOV/70000001/ss1"
ORIGIN_OWNER = "EE/GOV/70000001"
_VALID_FROM = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
_VALID_TO = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
_serials = itertools.count(1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class TsaIdentity:
    name: str
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)


@dataclass
class Pki:
    """A root CA that issues TSA certificates."""

    name: str = "Test Root CA"
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    root: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.root = (
            x509.CertificateBuilder()
            .subject_name(_name(self.name))
            .issuer_name(_name(self.name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_VALID_FROM)
            .not_valid_after(_VALID_TO)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue_tsa(self, name: str, *, valid_to: dt.datetime = _VALID_TO) -> TsaIdentity:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_VALID_FROM)
            .not_valid_after(valid_to)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return TsaIdentity(name, certificate, key)


class Behaviour(enum.Enum):
    GOOD = "good"
    WRONG_NONCE = "wrong nonce"
    WRONG_IMPRINT = "wrong imprint"
    REJECT = "rejection"
    HANG = "hang"
    HTTP_ERROR = "http 503"
    WRONG_TYPE = "wrong content type"
    OVERSIZE = "oversized answer"
    GARBAGE = "garbage"


class TsaServer:
    """An RFC 3161 TSA on 127.0.0.1; ``behaviour`` may be changed while it runs."""

    def __init__(self, identity: TsaIdentity, clock: Clock, behaviour: Behaviour = Behaviour.GOOD) -> None:
        self.identity = identity
        self.clock = clock
        self.behaviour = behaviour
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()  # set at close: hanging handlers return
        self.url = ""

    def endpoint(self, name: str | None = None) -> TsaEndpoint:
        return TsaEndpoint(name or self.identity.name, self.url, self.identity.certificate)

    async def start(self) -> TsaServer:
        app = web.Application()
        app.router.add_post("/tsa", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/tsa"
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _issue(self, request: bytes) -> bytes:
        return issue_timestamp_response(
            request,
            tsa_certificate=self.identity.certificate,
            tsa_key=self.identity.key,
            chain=[],
            now=self.clock.now(),
            serial=next(_serials),
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        reply = "application/timestamp-reply"
        behaviour = self.behaviour
        if behaviour is Behaviour.HANG:
            await self._release.wait()  # until the test ends: the client must give up first
            return web.Response(status=503)
        if behaviour is Behaviour.HTTP_ERROR:
            return web.Response(status=503, text="maintenance")
        if behaviour is Behaviour.WRONG_TYPE:
            return web.Response(body=self._issue(body), content_type="text/html")
        if behaviour is Behaviour.OVERSIZE:
            return web.Response(body=b"\x30" * (300 * 1024), content_type=reply)
        if behaviour is Behaviour.GARBAGE:
            return web.Response(body=b"\x30\x03\x02\x01\x00 not DER", content_type=reply)
        if behaviour is Behaviour.REJECT:
            return web.Response(body=rejection_response("system_failure", "HSM offline"), content_type=reply)
        parsed = tsp.TimeStampReq.load(body)
        imprint = parsed["message_imprint"]["hashed_message"].native
        nonce = parsed["nonce"].native
        if behaviour is Behaviour.WRONG_NONCE:
            body = build_timestamp_request(imprint, nonce=nonce + 1)
        elif behaviour is Behaviour.WRONG_IMPRINT:
            body = build_timestamp_request(hashlib.sha256(b"another batch").digest(), nonce=nonce)
        return web.Response(body=self._issue(body), content_type=reply)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"


def timestamp_log(
    path: Path,
    identity: TsaIdentity,
    roots: Sequence[x509.Certificate],
    now: dt.datetime,
    *,
    gen_time: dt.datetime | None = None,
    signer: str = ORIGIN_OWNER,
) -> Checkpoint:
    """Store a checkpoint over every record of ``path``, as a timestamper's round does.

    ``gen_time`` lets the TSA's clock differ from ``now`` (the checkpoint's time);
    ``signer`` is the member whose key (in ``CHECKPOINT_SIGNERS``) signs it.
    """
    with MessageLogStore.open(path) as store:
        last = store.last_checkpoint()
        covered = 0 if last is None else last.size
        size = store.last_seq()
        leaves = store.leaf_hashes(size)
        tree_root = root(leaves)
        body = Checkpoint.unsigned_body(ORIGIN, size, tree_root, now)
        imprint = hashlib.sha256(body).digest()
        request = build_timestamp_request(imprint, nonce=4242)
        response = issue_timestamp_response(
            request,
            tsa_certificate=identity.certificate,
            tsa_key=identity.key,
            chain=[],
            now=gen_time or now,
            serial=next(_serials),
        )
        info = verify_timestamp_response(
            response,
            imprint=imprint,
            nonce=4242,
            tsa_certificates=[identity.certificate],
            roots=roots,
            now=gen_time or now,
        )
        signature, ocsp = CHECKPOINT_SIGNERS.sign_checkpoint(signer)(body)
        checkpoint = Checkpoint(
            ORIGIN, size, tree_root, now, info.token, identity.name, info.gen_time, signature, ocsp
        )
        paths = inclusion_paths(leaves, covered, size - 1)
        store.add_checkpoint(checkpoint, [(covered + 1 + i, encode_path(p)) for i, p in enumerate(paths)])
        return checkpoint
