"""The registry service over real HTTP on loopback: serving, health, regeneration, settings."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from core.clock import FixedClock
from registry import server as server_module
from registry.publisher import make_anchor
from registry.server import STATE_KEY, RegistrySettings, make_app, regenerate, serve
from tests.unit.registry.helpers import FEDERATION_TOML, FederationFiles, write_federation
from tests.unit.trust.helpers import NOW, Pki
from trust.anchor import Anchor
from trust.errors import GlobalConfExpired
from trust.globalconf import verify_global_conf


def anchor_for(files: FederationFiles) -> Anchor:
    return make_anchor("NRW", ["http://127.0.0.1:8080"], [("k1", files.signing_key)], NOW)


class Running:
    def __init__(self, app: web.Application, runner: web.AppRunner, base: str) -> None:
        self.app, self.runner, self.base = app, runner, base


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


async def start(settings: RegistrySettings, clock: FixedClock) -> Running:
    app = make_app(settings, clock)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return Running(app, runner, f"http://{host}:{port}")


@pytest.fixture
async def running(files: FederationFiles, clock: FixedClock) -> AsyncIterator[Running]:
    server = await start(RegistrySettings.load(files.registry_config), clock)
    yield server
    await server.runner.cleanup()


async def fetch(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.content_type, await response.read()


async def test_serves_a_document_the_anchor_accepts(running: Running, files: FederationFiles) -> None:
    status, content_type, body = await fetch(running.base + "/globalconf")
    assert status == 200 and content_type == "application/jose"
    conf = verify_global_conf(body, anchor_for(files), NOW)
    assert conf.instance == "NRW" and conf.serial == int(NOW.timestamp())
    assert conf.expires_at == NOW + dt.timedelta(seconds=600)
    assert (files.root / "state" / "globalconf.jws").read_bytes() == body


async def test_healthz_reports_serial_and_expiry(running: Running, clock: FixedClock) -> None:
    status, content_type, body = await fetch(running.base + "/healthz")
    assert status == 200 and content_type == "application/json"
    assert b'"serial": %d' % int(NOW.timestamp()) in body
    assert b'"expires_at": "2025-03-01T12:10:00Z"' in body
    clock.advance(600)  # nothing regenerated in between: the document is now stale
    status, _, body = await fetch(running.base + "/healthz")
    assert status == 503 and b'"status": "expired"' in body


async def test_regeneration_bumps_the_serial(
    running: Running, files: FederationFiles, clock: FixedClock
) -> None:
    _, _, before = await fetch(running.base + "/globalconf")
    clock.advance(30)
    await regenerate(running.app)
    _, _, after = await fetch(running.base + "/globalconf")
    anchor = anchor_for(files)
    old = verify_global_conf(before, anchor, clock.now())
    new = verify_global_conf(after, anchor, clock.now(), min_serial=old.serial)
    assert new.serial > old.serial
    assert new.expires_at == clock.now() + dt.timedelta(seconds=600)


async def test_broken_federation_file_keeps_the_last_good_definition(
    running: Running, files: FederationFiles, clock: FixedClock
) -> None:
    before = running.app[STATE_KEY].current.conf
    files.write_federation(FEDERATION_TOML.replace('code = "05711000"', 'code = "05774032"'))
    clock.advance(30)
    with capture_logs() as logs:
        publication = await regenerate(running.app)
    assert publication.conf.serial > before.serial
    assert publication.conf.members == before.members  # still the last good definition
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert errors and errors[0]["event"] == "registry.federation_invalid"
    assert "duplicate member" in errors[0]["error"]
    # Once the file is fixed, changes are picked up.
    files.write_federation(FEDERATION_TOML.replace("Stadt Paderborn", "Stadt Paderborn (Westf.)"))
    publication = await regenerate(running.app)
    assert publication.conf.members[0].name == "Stadt Paderborn (Westf.)"


async def test_background_task_regenerates(tmp_path: Path, pki: Pki, clock: FixedClock) -> None:
    files = write_federation(tmp_path, pki, interval_s=0.05)
    server = await start(RegistrySettings.load(files.registry_config), clock)
    try:
        first = server.app[STATE_KEY].current.conf.serial
        for _ in range(100):
            await asyncio.sleep(0.02)
            if server.app[STATE_KEY].current.conf.serial > first:
                break
        assert server.app[STATE_KEY].current.conf.serial > first
    finally:
        await server.runner.cleanup()


async def test_serial_survives_a_restart(files: FederationFiles, clock: FixedClock) -> None:
    settings = RegistrySettings.load(files.registry_config)
    server = await start(settings, clock)
    first = server.app[STATE_KEY].current.conf.serial
    await server.runner.cleanup()
    server = await start(settings, clock)  # same clock reading: only the state file keeps it growing
    try:
        assert server.app[STATE_KEY].current.conf.serial == first + 1
    finally:
        await server.runner.cleanup()


async def test_invalid_federation_prevents_start_up(files: FederationFiles, clock: FixedClock) -> None:
    files.write_federation(FEDERATION_TOML.replace('owner = "NRW/MUN/05711000"', 'owner = "NRW/MUN/1"'))
    runner = web.AppRunner(make_app(RegistrySettings.load(files.registry_config), clock))
    with pytest.raises(ValueError, match="is not a registered member"):
        await runner.setup()
    await runner.cleanup()


async def test_expired_document_is_refused_by_servers(running: Running, files: FederationFiles) -> None:
    _, _, body = await fetch(running.base + "/globalconf")
    with pytest.raises(GlobalConfExpired):
        verify_global_conf(body, anchor_for(files), NOW + dt.timedelta(seconds=600))


async def test_serve_runs_until_stopped(files: FederationFiles, clock: FixedClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = RegistrySettings.load(files.registry_config)
    settings = RegistrySettings(**{**settings.__dict__, "port": port})
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, clock=clock, stop=stop))
    try:
        for _ in range(100):
            try:
                status, _, body = await fetch(f"http://127.0.0.1:{port}/globalconf")
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        assert status == 200
        assert verify_global_conf(body, anchor_for(files), NOW).instance == "NRW"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert task.done() and task.exception() is None


# -- settings ------------------------------------------------------------------------------


def test_settings_resolve_paths_relative_to_the_file(files: FederationFiles) -> None:
    settings = RegistrySettings.load(files.registry_config)
    assert settings.federation_path == files.root / "federation.toml"
    assert settings.signing_key_path == files.root / "keys" / "globalconf.key"
    assert settings.state_dir == files.root / "state"
    assert settings.key_passphrase == b"registry-secret"  # trailing newline dropped
    assert settings.key_id == "k1" and settings.port == 0 and settings.interval_s == 60.0


def test_passphrase_from_the_environment(files: FederationFiles) -> None:
    text = files.registry_config.read_text()
    files.registry_config.write_text(
        text.replace('passphrase_file = "keys/passphrase"', 'passphrase_env = "XWEG_TEST_PASS"')
    )
    settings = RegistrySettings.load(files.registry_config, environ={"XWEG_TEST_PASS": "from-env"})
    assert settings.key_passphrase == b"from-env"
    with pytest.raises(ValueError, match="XWEG_TEST_PASS .* is not set"):
        RegistrySettings.load(files.registry_config, environ={})


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("validity_s = 600", "validity_s = 30", "must exceed interval_s"),
        ("port = 0", "port = 70000", "port must be"),
        ("port = 0", 'port = "80"', "port must be"),
        ('key_id = "k1"', 'key_id = ""', "key_id must be"),
        ('state_dir = "state"', 'state_dir = "state"\nstate_dri = "x"', "unknown key"),
        ("[signing]", "[signing]\nkey_file = 1", r"\[signing\] has unknown key"),
        (
            'passphrase_file = "keys/passphrase"',
            'passphrase_file = "keys/passphrase"\npassphrase_env = "X"',
            "not both",
        ),
    ],
)
def test_bad_settings_are_refused(files: FederationFiles, old: str, new: str, match: str) -> None:
    text = files.registry_config.read_text()
    assert old in text
    files.registry_config.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError, match=match):
        RegistrySettings.load(files.registry_config)


def test_wrong_passphrase_prevents_start_up(files: FederationFiles, clock: FixedClock) -> None:
    (files.root / "keys" / "passphrase").write_bytes(b"wrong")
    settings = RegistrySettings.load(files.registry_config)

    async def setup() -> None:
        runner = web.AppRunner(make_app(settings, clock))
        try:
            await runner.setup()
        finally:
            await runner.cleanup()

    with pytest.raises(ValueError, match="cannot load private key"):
        asyncio.run(setup())


def test_main_stops_cleanly_on_sigterm(files: FederationFiles) -> None:
    text = files.registry_config.read_text()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    files.registry_config.write_text(text.replace("port = 0", f"port = {port}"))
    process = subprocess.Popen(
        [sys.executable, "-m", "xweg", "registry", "serve", "--config", str(files.registry_config)],
        cwd=Path(__file__).resolve().parents[3],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert events[:2] == ["registry.published", "registry.listening"]
    assert events[-1] == "registry.stopped"


def test_main_reports_a_bad_configuration(tmp_path: Path) -> None:
    with capture_logs() as logs:
        assert server_module.main(str(tmp_path / "missing.toml")) == 1
    assert logs[0]["event"] == "registry.config_invalid" and "missing.toml" in logs[0]["error"]
