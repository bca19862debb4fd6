"""The management listener over real TLS, with a token from ``xweg gateway token issue``."""

from __future__ import annotations

import dataclasses
import ssl
import stat
from pathlib import Path

import aiohttp
import pytest

from core.clock import SystemClock
from gateway.config import GatewayConfig, Listener
from gateway.internaltls import INTERNAL_TLS_CERTIFICATE_FILE, INTERNAL_TLS_KEY_FILE
from gateway.management.listener import start_management_listener
from gateway.management.tokens import verify_management_token
from gateway.tokens import MANAGEMENT_TOKEN_KEY_FILE, TokenKey, load_or_create_key_file
from tests.unit.gateway.conftest import SERVER
from tests.unit.gateway.management.conftest import Management
from xweg.cli import main

PASSPHRASE = "management passphrase"
CONFIG = """\
server_id = "NRW/MUN/05774032/ss1"
anchor = "anchor.json"
data_dir = "data"

[client_listener]
host = "127.0.0.1"
port = 5510

[peer_listener]
host = "127.0.0.1"
port = 5511

[management_listener]
port = 0

[keys]
passphrase_file = "passphrase"
auth_key = "auth.key"
auth_certificate = "auth.pem"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    return path


def issue(config_file: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["gateway", "token", "issue", "--config", str(config_file), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out.strip()


def test_the_section_turns_the_listener_on(config_file: Path) -> None:
    config = GatewayConfig.load(config_file)
    assert config.management_listener == Listener("127.0.0.1", 0)
    config_file.write_text(CONFIG.replace("[management_listener]\nport = 0\n", ""))
    assert GatewayConfig.load(config_file).management_listener is None


def test_the_cli_issues_tokens_for_each_role(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = issue(config_file, capsys, "--role", "service-admin", "--subject", "ana", "--ttl", "30m")
    data_dir = config_file.parent / "data"
    key = load_or_create_key_file(
        data_dir / MANAGEMENT_TOKEN_KEY_FILE, PASSPHRASE.encode(), TokenKey.MANAGEMENT
    )
    identity = verify_management_token(token, key.public_key(), server_id=SERVER, now=SystemClock().now())
    assert (identity.subject, identity.role) == ("ana", "service-admin")
    assert (identity.expires_at - SystemClock().now()).total_seconds() <= 30 * 60
    assert stat.S_IMODE((data_dir / MANAGEMENT_TOKEN_KEY_FILE).stat().st_mode) == 0o600
    with pytest.raises(SystemExit) as exited:
        main(["gateway", "token", "issue", "--config", str(config_file), "--role", "root", "--subject", "x"])
    assert exited.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err
    code = main(
        ["gateway", "token", "issue", "--config", "missing.toml", "--role", "observer", "--subject", "x"]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("xweg gateway token issue: missing.toml")


async def test_the_listener_serves_the_api_over_tls(
    management: Management, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = GatewayConfig.load(config_file)
    assert config.management_listener is not None
    # The running server, with this configuration and the real clock (CLI tokens are issued now).
    server = dataclasses.replace(management.server, config=config, clock=SystemClock())
    token = issue(config_file, capsys, "--role", "security-officer", "--subject", "petra.schulz")
    runner = await start_management_listener(server, config.management_listener)
    try:
        port = runner.addresses[0][1]
        data_dir = config.data_dir
        assert stat.S_IMODE((data_dir / INTERNAL_TLS_KEY_FILE).stat().st_mode) == 0o600
        trust = ssl.create_default_context(cafile=str(data_dir / INTERNAL_TLS_CERTIFICATE_FILE))
        base = f"https://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/openapi.json", ssl=trust) as response:
                assert response.status == 200
                assert (await response.json())["info"]["title"] == "xweg security server management API"
            headers = {"Authorization": f"Bearer {token}"}
            body = {"id": "NRW/GOV/057/arbeitsschutz"}
            async with session.post(f"{base}/clients", json=body, headers=headers, ssl=trust) as response:
                assert response.status == 201, await response.text()
            async with session.get(f"{base}/clients", ssl=trust) as response:
                assert response.status == 401
            # A client that does not trust the internal certificate never gets as far as HTTP.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(f"{base}/openapi.json", ssl=ssl.create_default_context()):
                    pass
    finally:
        await runner.cleanup()
    assert management.audit_trail()[-1]["actor"] == "petra.schulz"
