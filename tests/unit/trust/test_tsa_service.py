"""The TSA over HTTP: a real aiohttp server on loopback, real keys on disk, restarts."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.clock import FixedClock, utc
from trust.keys import save_private_key, write_atomic
from trust.service.tsa import (
    QUERY_CONTENT_TYPE,
    REPLY_CONTENT_TYPE,
    SerialStateError,
    TsaSettings,
    main,
    make_tsa_app,
)
from trust.timestamps import (
    TimestampInfo,
    TimestampRejected,
    build_timestamp_request,
    verify_timestamp_response,
)

NOW = utc(2025, 3, 1, 12)
DAY = dt.timedelta(days=1)
IMPRINT = hashlib.sha256(b"a message-log checkpoint").digest()
PASSPHRASE = b"correct horse battery staple"


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


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 30 * DAY)
        .not_valid_after(NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Setup:
    root: x509.Certificate
    intermediate: x509.Certificate
    tsa: x509.Certificate
    config: Path
    settings: TsaSettings

    def verify(self, response: bytes, nonce: int, now: dt.datetime = NOW) -> TimestampInfo:
        return verify_timestamp_response(
            response, imprint=IMPRINT, nonce=nonce, tsa_certificates=[self.tsa], roots=[self.root], now=now
        )


@pytest.fixture(scope="module")
def pki() -> tuple[x509.Certificate, x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    root_key, inter_key, tsa_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("xweg NRW Root CA", root_key, None, root_key, ca=True)
    inter = _cert("xweg NRW Issuing CA", inter_key, root, root_key, ca=True)
    return root, inter, _cert("NRW TSA", tsa_key, inter, inter_key, ca=False), tsa_key


@pytest.fixture
def setup(
    tmp_path: Path,
    pki: tuple[x509.Certificate, x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey],
) -> Setup:
    root, inter, tsa, tsa_key = pki
    keys = tmp_path / "keys"
    keys.mkdir()
    save_private_key(tsa_key, keys / "tsa.key", PASSPHRASE)
    write_atomic(
        keys / "tsa.pem",
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (tsa, inter)),
    )
    write_atomic(keys / "passphrase", PASSPHRASE + b"\n", mode=0o600)
    config = tmp_path / "tsa.toml"
    config.write_text(
        'certificate = "keys/tsa.pem"\n'
        'key = "keys/tsa.key"\n'
        'passphrase_file = "keys/passphrase"\n'
        'host = "127.0.0.1"\n'
        "port = 0\n"
        'serial_state = "state/serial.json"\n'
        "max_request_bytes = 1024\n"
    )
    return Setup(root, inter, tsa, config, TsaSettings.load(config))


@asynccontextmanager
async def running(settings: TsaSettings, clock: FixedClock) -> AsyncIterator[str]:
    runner = web.AppRunner(make_tsa_app(settings, clock), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def post(url: str, body: bytes, content_type: str = QUERY_CONTENT_TYPE) -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/", data=body, headers={"Content-Type": content_type}) as resp,
    ):
        return resp.status, resp.content_type, await resp.read()


def serial_on_disk(settings: TsaSettings) -> int:
    value = json.loads(settings.serial_state_path.read_bytes())["serial"]
    assert isinstance(value, int)
    return value


async def test_a_request_gets_a_token_that_verifies(setup: Setup) -> None:
    clock = FixedClock(NOW)
    async with running(setup.settings, clock) as url:
        status, content_type, body = await post(url, build_timestamp_request(IMPRINT, nonce=42))
        assert (status, content_type) == (200, REPLY_CONTENT_TYPE)
        info = setup.verify(body, nonce=42)
        assert info.serial == 1
        assert info.tsa_certificate == setup.tsa
        assert serial_on_disk(setup.settings) == 1
        clock.advance(5)
        _, _, body = await post(url, build_timestamp_request(IMPRINT, nonce=43))
        second = setup.verify(body, nonce=43, now=clock.now())
        assert (second.serial, second.gen_time) == (2, NOW + dt.timedelta(seconds=5))


async def test_serials_keep_increasing_across_a_restart(setup: Setup) -> None:
    clock = FixedClock(NOW)
    seen: list[int] = []
    for _ in range(2):
        async with running(setup.settings, clock) as url:
            for nonce in range(3):
                _, _, body = await post(url, build_timestamp_request(IMPRINT, nonce=nonce))
                info = setup.verify(body, nonce=nonce)
                # durable before the token was returned
                assert serial_on_disk(setup.settings) == info.serial
                seen.append(info.serial)
    assert seen == [1, 2, 3, 4, 5, 6]


async def test_wrong_content_type_is_415(setup: Setup) -> None:
    async with running(setup.settings, FixedClock(NOW)) as url:
        request = build_timestamp_request(IMPRINT, nonce=1)
        status, _, _ = await post(url, request, content_type="application/octet-stream")
        assert status == 415
        status, _, _ = await post(url, request, content_type="application/timestamp-reply")
        assert status == 415
    assert not setup.settings.serial_state_path.exists()


async def test_oversize_request_is_413(setup: Setup) -> None:
    async with running(setup.settings, FixedClock(NOW)) as url:
        status, _, _ = await post(url, b"\x30" + b"\x00" * 2000)
        assert status == 413
    assert not setup.settings.serial_state_path.exists()


async def test_malformed_request_gets_a_rejection_and_costs_no_serial(setup: Setup) -> None:
    async with running(setup.settings, FixedClock(NOW)) as url:
        status, content_type, body = await post(url, b"\x30\x03\x02\x01\x01")
        assert (status, content_type) == (200, REPLY_CONTENT_TYPE)
        with pytest.raises(TimestampRejected, match="bad_request") as caught:
            setup.verify(body, nonce=1)
        assert caught.value.status == "rejection"
        sha1_request = tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {"hash_algorithm": {"algorithm": "sha1"}, "hashed_message": b"\x00" * 20},
                "nonce": 1,
            }
        ).dump()
        status, _, body = await post(url, sha1_request)
        assert status == 200
        with pytest.raises(TimestampRejected, match="bad_alg"):
            setup.verify(body, nonce=1)
    assert not setup.settings.serial_state_path.exists()


async def test_healthz_and_an_expired_certificate(setup: Setup) -> None:
    clock = FixedClock(NOW)
    async with running(setup.settings, clock) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
        clock.set(NOW + 400 * DAY)
        async with session.get(url + "/healthz") as resp:
            assert resp.status == 503
        # No token under a certificate that verifiers would refuse.
        _, _, body = await post(url, build_timestamp_request(IMPRINT, nonce=9))
        with pytest.raises(TimestampRejected, match="system_failure"):
            setup.verify(body, nonce=9, now=clock.now())


async def test_corrupt_serial_state_stops_start_up(setup: Setup) -> None:
    setup.settings.serial_state_path.parent.mkdir(parents=True)
    setup.settings.serial_state_path.write_text('{"serial": "seven"}')
    with pytest.raises(SerialStateError, match="invalid serial"):
        async with running(setup.settings, FixedClock(NOW)):
            pass


async def test_wrong_passphrase_stops_start_up(setup: Setup) -> None:
    with pytest.raises(ValueError, match="cannot load private key"):
        async with running(replace(setup.settings, key_passphrase=b"wrong"), FixedClock(NOW)):
            pass


def test_settings_load_variants(setup: Setup, tmp_path: Path) -> None:
    s = setup.settings
    assert s.key_passphrase == PASSPHRASE
    assert s.max_request_bytes == 1024
    assert s.certificate_path == setup.config.parent / "keys/tsa.pem"
    assert "correct horse" not in repr(s)

    def write(text: str) -> Path:
        path = tmp_path / "variant.toml"
        path.write_text(text)
        return path

    base = 'certificate = "c.pem"\nkey = "k.key"\nserial_state = "s.json"\n'
    env_config = write(base + 'passphrase_env = "TSA_PASS"\n')
    loaded = TsaSettings.load(env_config, environ={"TSA_PASS": "from-env"})
    assert loaded.key_passphrase == b"from-env"
    assert loaded.max_request_bytes == 16 * 1024
    bad: list[tuple[str, dict[str, str], str]] = [
        (base + 'passphrase_env = "TSA_PASS"\n', {}, "not set"),
        (base, {}, "give passphrase_file or passphrase_env"),
        (base + 'passphrase_env = "A"\npassphrase_file = "p"\n', {"A": "x"}, "not both"),
        (base + 'passphrase_env = "A"\nbogus = 1\n', {"A": "x"}, "unknown key"),
        (base + 'passphrase_env = "A"\nport = 70000\n', {"A": "x"}, "port"),
        (base + 'passphrase_env = "A"\nmax_request_bytes = 100000\n', {"A": "x"}, "max_request_bytes"),
        (base + 'passphrase_env = "A"\npolicy_oid = "not an oid"\n', {"A": "x"}, "not a dotted OID"),
    ]
    for text, environ, message in bad:
        with pytest.raises(ValueError, match=message):
            TsaSettings.load(write(text), environ=environ)


def test_main_reports_a_broken_configuration(tmp_path: Path) -> None:
    assert main(str(tmp_path / "nope.toml")) == 1
