"""A complete security server written to disk, and the means to run it and talk to it.

:func:`write_server` writes what ``xweg gateway serve`` needs: keys and certificates from
a small real PKI, a configuration anchor, a signed global configuration and OCSP
responses as the server would have persisted them (so that it is ready without a
registry or an OCSP responder), and ``gateway.toml``.  The one server hosts both the
client subsystem and the provider, so an exchange goes from its client listener through
its own peer listener (mutual TLS) to a backend the test runs.  Everything uses the
real clock: TLS handshakes check certificates against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from core.identifiers import MemberId, SecurityServerId
from gateway.config import GatewayConfig
from gateway.server import serve
from trust.anchor import Anchor, AnchorKey, save_anchor
from trust.ca import CertificateAuthority
from trust.certificates import fingerprint
from trust.globalconf import ApprovedCA, GlobalConf, MemberInfo, SecurityServerInfo, sign_global_conf
from trust.keys import generate_private_key, make_csr, public_key_pem, save_certificate, save_private_key
from trust.ocsp import CertStatus, build_ocsp_request, build_ocsp_response

MEMBER = MemberId("NRW", "MUN", "05774032")
SERVER = SecurityServerId(MEMBER, "ss1")
CLIENT = MEMBER.subsystem("buergerbuero")
PROVIDER = MEMBER.subsystem("gewerbeamt")
SERVICE_CODE = "auskunft"
#: The path of a REST exchange with the test backend, below the client listener.
EXCHANGE_PATH = f"/r1/{PROVIDER.slash()}/{SERVICE_CODE}/anzeigen"
PASSPHRASE = b"lifecycle-secret"
KEY_ID = "k1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    responder_key: ec.EllipticCurvePrivateKey
    responder_cert: x509.Certificate
    registry_key: ec.EllipticCurvePrivateKey
    auth_key: ec.EllipticCurvePrivateKey
    auth_cert: x509.Certificate
    sign_key: ec.EllipticCurvePrivateKey
    sign_cert: x509.Certificate

    @classmethod
    def create(cls) -> Pki:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        ca = CertificateAuthority.create_root("xweg Test Root CA", generate_private_key(), now=start)
        responder_key, auth_key, sign_key = (
            generate_private_key(),
            generate_private_key(),
            generate_private_key(),
        )
        return cls(
            ca=ca,
            responder_key=responder_key,
            responder_cert=ca.issue_ocsp_responder_certificate(
                responder_key.public_key(), "xweg Test OCSP Responder", now=start
            ),
            registry_key=generate_private_key(),
            auth_key=auth_key,
            auth_cert=ca.issue_auth_certificate(make_csr(auth_key, "ss1"), SERVER, now=start),
            sign_key=sign_key,
            sign_cert=ca.issue_sign_certificate(make_csr(sign_key, "m"), MEMBER, now=start),
        )

    def ocsp(self, cert: x509.Certificate) -> bytes:
        return build_ocsp_response(
            build_ocsp_request(cert, self.ca.certificate),
            lookup=lambda serial: CertStatus("good"),
            issuer=self.ca.certificate,
            responder_certificate=self.responder_cert,
            responder_key=self.responder_key,
            now=dt.datetime.now(dt.UTC),
        )


@dataclass(frozen=True)
class ServerFiles:
    config_path: Path
    client_port: int
    peer_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def config(self) -> GatewayConfig:
        return GatewayConfig.load(self.config_path)


def write_server(
    root: Path,
    pki: Pki,
    backend_url: str,
    *,
    limits: dict[str, float] | None = None,
    with_globalconf: bool = True,
    with_ocsp: bool = True,
    sign_cert: x509.Certificate | None = None,
    service_timeout_s: float = 30.0,
) -> ServerFiles:
    """Write one security server under ``root``; what is left out makes it unready."""
    now = dt.datetime.now(dt.UTC)
    client_port, peer_port = free_port(), free_port()
    keys, data = root / "keys", root / "data"
    keys.mkdir(parents=True)
    (data / "ocsp").mkdir(parents=True)
    (keys / "passphrase").write_bytes(PASSPHRASE + b"\n")
    sign_cert = sign_cert or pki.sign_cert
    save_private_key(pki.auth_key, keys / "auth.key", PASSPHRASE)
    save_certificate(pki.auth_cert, keys / "auth.pem")
    save_private_key(pki.sign_key, keys / "sign.key", PASSPHRASE)
    save_certificate(sign_cert, keys / "sign.pem")
    # The registry's address answers nothing: the server lives on what it persisted.
    save_anchor(
        Anchor(
            instance="NRW",
            registry_urls=("http://127.0.0.1:9/",),
            signing_keys=(AnchorKey(KEY_ID, public_key_pem(pki.registry_key)),),
            generated_at=now - dt.timedelta(days=1),
        ),
        root / "anchor.json",
    )
    if with_globalconf:
        conf = GlobalConf(
            instance="NRW",
            serial=1,
            generated_at=now - dt.timedelta(minutes=1),
            expires_at=now + dt.timedelta(hours=2),
            members=(
                MemberInfo(MEMBER, "Stadt Paderborn", (CLIENT.subsystem_code, PROVIDER.subsystem_code)),
            ),
            security_servers=(
                SecurityServerInfo(
                    SERVER, f"127.0.0.1:{peer_port}", (fingerprint(pki.auth_cert),), (CLIENT, PROVIDER)
                ),
            ),
            global_groups=(),
            approved_cas=(
                ApprovedCA(
                    pki.ca.certificate,
                    ocsp_url="http://127.0.0.1:9/ocsp",
                    ocsp_responders=(pki.responder_cert,),
                ),
            ),
        )
        (data / "globalconf.jws").write_bytes(sign_global_conf(conf, pki.registry_key, KEY_ID))
    if with_ocsp:
        for cert in (pki.auth_cert, sign_cert):
            (data / "ocsp" / f"{fingerprint(cert)}.der").write_bytes(pki.ocsp(cert))
    limit_lines = "".join(f"{name} = {value}\n" for name, value in (limits or {}).items())
    config = root / "gateway.toml"
    config.write_text(
        f'server_id = "{SERVER.slash()}"\n'
        'anchor = "anchor.json"\n'
        'data_dir = "data"\n'
        f'[client_listener]\nhost = "127.0.0.1"\nport = {client_port}\n'
        f'[peer_listener]\nhost = "127.0.0.1"\nport = {peer_port}\n'
        '[keys]\npassphrase_file = "keys/passphrase"\nauth_key = "keys/auth.key"\n'
        'auth_certificate = "keys/auth.pem"\n'
        f'[[keys.sign]]\nmember = "{MEMBER.slash()}"\nkey = "keys/sign.key"\ncertificate = "keys/sign.pem"\n'
        "[globalconf]\npoll_interval_s = 3600\n"
        "[ocsp]\nrefresh_interval_s = 3600\nretry_s = 3600\n"
        f"[limits]\n{limit_lines}"
        f'[[clients]]\nid = "{CLIENT.slash()}"\nconnection = "http"\n'
        f'[[clients]]\nid = "{PROVIDER.slash()}"\n'
        f'[[services]]\nid = "{PROVIDER.slash()}/{SERVICE_CODE}"\nbase_url = "{backend_url}"\n'
        f"timeout_s = {service_timeout_s}\n"
        f'[[access]]\nservice = "{PROVIDER.slash()}/{SERVICE_CODE}"\nclients = ["{CLIENT.slash()}"]\n'
    )
    return ServerFiles(config, client_port, peer_port)


@dataclass
class Backend:
    """An information system's backend that answers after ``delay_s``; ``calls`` counts arrivals."""

    delay_s: float = 0.0
    calls: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        self.arrived.set()
        await asyncio.sleep(self.delay_s)
        return web.json_response({"anzeigen": [], "path": request.path})

    async def wait_for(self, calls: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.calls < calls:
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def running_backend(delay_s: float = 0.0) -> AsyncIterator[Backend]:
    backend = Backend(delay_s)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", backend.handle)
    # A backend still sleeping when the test ends is not waited for.
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    backend.url = f"http://127.0.0.1:{port}/api"
    try:
        yield backend
    finally:
        await runner.cleanup()


async def wait_listening(url: str, timeout_s: float = 20.0) -> None:
    """Until ``GET url/healthz`` answers."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)


async def wait_port(port: int, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


@contextlib.asynccontextmanager
async def serving(files: ServerFiles) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None]]]:
    """Run the server in this event loop until the block ends (or the test sets the stop event)."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(files.config(), stop=stop))
    try:
        await wait_listening(files.url)
        yield stop, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def exchange(
    session: aiohttp.ClientSession, files: ServerFiles, **kwargs: Any
) -> aiohttp.ClientResponse:
    """One REST exchange from the client subsystem to the provider's backend (response read)."""
    async with session.get(
        files.url + EXCHANGE_PATH, headers={"X-Road-Client": CLIENT.slash()}, **kwargs
    ) as resp:
        await resp.read()
        return resp
