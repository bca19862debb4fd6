"""GatewayConfig.load: a known-good TOML file, then one thing changed at a time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.identifiers import GlobalGroupId, MemberId, SecurityServerId, ServiceId, SubsystemId
from gateway.config import (
    ConfigError,
    GatewayConfig,
    GlobalConfClientSettings,
    Limits,
    Listener,
    ServiceConfig,
)
from gateway.serverconf.model import AccessGrant, ClientEntry, ConnectionType

GOOD = """\
server_id = "NRW/MUN/05774032/ss1"
anchor = "../anchor.json"
data_dir = "data"

[client_listener]
host = "127.0.0.1"
port = 5510

[peer_listener]
host = "0.0.0.0"
port = 5511

[keys]
passphrase_file = "keys/passphrase"
auth_key = "keys/auth.key"
auth_certificate = "keys/auth.pem"
[[keys.sign]]
member = "NRW/MUN/05774032"
key = "keys/sign-05774032.key"
certificate = "keys/sign-05774032.pem"

[[clients]]
id = "NRW/MUN/05774032/gewerbeamt"
connection = "http"
[[clients]]
id = "NRW/MUN/05774032"

[[services]]
id = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"
base_url = "http://127.0.0.1:5601/"
timeout_s = 12

[[services]]
id = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v2"
base_url = "https://backend.example/v2/"

[[services]]
id = "NRW/MUN/05774032/gewerbeamt/status"
base_url = "http://127.0.0.1:5602/"

[[access]]
service = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"
clients = ["NRW/GOV/057/arbeitsschutz", "GLOBALGROUP:NRW/owl-kommunen", "NRW/GOV/057"]

[limits]
max_body_bytes = 1024
peer_timeout_s = 5.0

[globalconf]
poll_interval_s = 30.0
max_size_bytes = 65536
"""

PROVIDER = SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")


def write(tmp_path: Path, text: str, passphrase: bytes | None = b"s3cret\n") -> Path:
    conf_dir = tmp_path / "server"
    (conf_dir / "keys").mkdir(parents=True, exist_ok=True)
    if passphrase is not None:
        (conf_dir / "keys" / "passphrase").write_bytes(passphrase)
    path = conf_dir / "gateway.toml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        GatewayConfig.load(path, environ={} if environ is None else environ)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_good_file_loads_into_typed_objects(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = GatewayConfig.load(path, environ={})
    base = path.parent.resolve()

    assert config.server_id == SecurityServerId(MemberId("NRW", "MUN", "05774032"), "ss1")
    assert config.anchor_path == tmp_path.resolve() / "anchor.json"
    assert config.data_dir == base / "data"
    assert config.message_log == base / "data" / "messagelog.db"
    assert config.globalconf_path == base / "data" / "globalconf.jws"
    assert config.client_listener == Listener("127.0.0.1", 5510)
    assert config.peer_listener == Listener("0.0.0.0", 5511)
    assert config.auth_key_path == base / "keys" / "auth.key"
    assert config.auth_certificate_path == base / "keys" / "auth.pem"
    assert len(config.sign_keys) == 1
    assert config.sign_keys[0].member == MemberId("NRW", "MUN", "05774032")
    assert config.sign_keys[0].key_path == base / "keys" / "sign-05774032.key"
    assert config.sign_keys[0].certificate_path == base / "keys" / "sign-05774032.pem"
    # the passphrase file's trailing newline is not part of the passphrase
    assert config.key_passphrase == b"s3cret"
    assert config.clients == (
        ClientEntry(PROVIDER, ConnectionType.HTTP),
        ClientEntry(MemberId("NRW", "MUN", "05774032"), ConnectionType.HTTPS_MTLS),
    )
    assert config.services[0] == ServiceConfig(
        ServiceId(PROVIDER, "gewerbeanzeige", "v1"), "http://127.0.0.1:5601/", 12.0
    )
    assert config.services[1].timeout_s == 30.0
    assert config.limits == Limits(max_body_bytes=1024, peer_timeout_s=5.0)
    assert config.globalconf == GlobalConfClientSettings(poll_interval_s=30.0, max_size_bytes=65536)


def test_access_rule_is_per_service_code_with_group_and_member_subjects(tmp_path: Path) -> None:
    config = GatewayConfig.load(write(tmp_path, GOOD), environ={})
    assert set(config.access) == {
        AccessGrant(PROVIDER, "gewerbeanzeige", SubsystemId("NRW", "GOV", "057", "arbeitsschutz")),
        AccessGrant(PROVIDER, "gewerbeanzeige", GlobalGroupId("NRW", "owl-kommunen")),
        AccessGrant(PROVIDER, "gewerbeanzeige", MemberId("NRW", "GOV", "057")),
    }
    assert len(config.access) == 3


def test_config_object_is_frozen(tmp_path: Path) -> None:
    config = GatewayConfig.load(write(tmp_path, GOOD), environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data_dir = tmp_path  # type: ignore[misc]


def test_optional_sections_take_their_defaults(tmp_path: Path) -> None:
    minimal = """\
server_id = "NRW/MUN/05774032/ss1"
anchor = "anchor.json"
client_listener = { host = "127.0.0.1", port = 0 }
peer_listener = { host = "127.0.0.1", port = 65535 }
[keys]
auth_key = "auth.key"
auth_certificate = "auth.pem"
"""
    path = write(tmp_path, minimal, passphrase=None)
    config = GatewayConfig.load(path, environ={})
    assert config.data_dir == path.parent.resolve()
    assert config.key_passphrase is None
    assert config.sign_keys == config.clients == config.services == config.access == ()
    assert config.limits == Limits()
    assert config.globalconf == GlobalConfClientSettings()


def test_relative_paths_resolve_against_the_files_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GOOD)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = GatewayConfig.load(Path("..") / "server" / "gateway.toml", environ={})
    assert config.auth_key_path == path.parent.resolve() / "keys" / "auth.key"
    assert config.key_passphrase == b"s3cret"


def test_passphrase_from_environment(tmp_path: Path) -> None:
    text = GOOD.replace('passphrase_file = "keys/passphrase"', 'passphrase_env = "XWEG_KEY_PASSPHRASE"')
    config = GatewayConfig.load(write(tmp_path, text), environ={"XWEG_KEY_PASSPHRASE": "from-env"})
    assert config.key_passphrase == b"from-env"


def test_missing_passphrase_environment_variable_is_named(tmp_path: Path) -> None:
    text = GOOD.replace('passphrase_file = "keys/passphrase"', 'passphrase_env = "XWEG_KEY_PASSPHRASE"')
    message = load_error(tmp_path, text, environ={"OTHER": "x"})
    assert "environment variable XWEG_KEY_PASSPHRASE (key passphrase) is not set" in message


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('data_dir = "data"\n', 'datadir = "data"\n', "the top level"),
        ("[client_listener]\n", "[client_listener_typo]\n", "the top level"),
        (
            'passphrase_file = "keys/passphrase"\n',
            'passphrase_file = "keys/passphrase"\npasphrase = "x"\n',
            "[keys]",
        ),
        (
            'certificate = "keys/sign-05774032.pem"\n',
            'certificat = "keys/sign-05774032.pem"\n',
            "[[keys.sign]]",
        ),
        ('connection = "http"\n', 'conection = "http"\n', "[[clients]]"),
        (
            'base_url = "http://127.0.0.1:5601/"\n',
            'base_url = "http://127.0.0.1:5601/"\ntimeout = 5\n',
            "[[services]]",
        ),
        (
            'service = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"\n',
            'service = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"\nclient = "NRW/GOV/057"\n',
            "[[access]]",
        ),
    ],
    ids=["data_dir", "table", "keys", "keys.sign", "clients", "services", "access"],
)
def test_a_misspelt_setting_is_refused_not_ignored(tmp_path: Path, old: str, new: str, where: str) -> None:
    # Ignored, "datadir" would leave the log in the configuration file's folder.
    assert old in GOOD
    misspelt = new.split("\n")[-2].split(" ")[0].strip("[]")
    message = load_error(tmp_path, GOOD.replace(old, new, 1))
    assert f"unknown setting {misspelt!r} in {where}" in message


def test_both_passphrase_sources_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace(
        'passphrase_file = "keys/passphrase"\n',
        'passphrase_file = "keys/passphrase"\npassphrase_env = "XWEG_KEY_PASSPHRASE"\n',
    )
    message = load_error(tmp_path, text, environ={"XWEG_KEY_PASSPHRASE": "secret"})
    assert "names both passphrase_file and passphrase_env" in message


def test_missing_passphrase_file_is_a_config_error(tmp_path: Path) -> None:
    text = GOOD.replace('passphrase_file = "keys/passphrase"', 'passphrase_file = "keys/nowhere"')
    message = load_error(tmp_path, text)
    assert "nowhere" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('server_id = "NRW/MUN/05774032/ss1"\n', "", "missing setting 'server_id'"),
        ('anchor = "../anchor.json"\n', "", "missing setting 'anchor'"),
        ('auth_key = "keys/auth.key"\n', "", "missing setting 'auth_key'"),
        ('[client_listener]\nhost = "127.0.0.1"\nport = 5510\n', "", "missing setting 'client_listener'"),
        (
            'clients = ["NRW/GOV/057/arbeitsschutz", "GLOBALGROUP:NRW/owl-kommunen", "NRW/GOV/057"]\n',
            "",
            "missing setting 'clients'",
        ),
    ],
    ids=["server_id", "anchor", "auth_key", "client_listener", "access-clients"],
)
def test_missing_setting_is_named(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert expected in load_error(tmp_path, GOOD.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"NRW/MUN/05774032/ss1"', '"NRW/MUN/05774032"', "security server identifier"),
        ('"NRW/MUN/05774032/ss1"', '"NRW/MUN/0577 4032/ss1"', "illegal character ' '"),
        ('id = "NRW/MUN/05774032/gewerbeamt"\n', 'id = "NRW//05774032/gewerbeamt"\n', "must not be empty"),
        ('member = "NRW/MUN/05774032"', 'member = "NRW/MUN/05774032/gewerbeamt"', "member identifier"),
        (
            '"GLOBALGROUP:NRW/owl-kommunen"',
            '"GLOBALGROUP:NRW/MUN/owl-kommunen"',
            "global group identifier",
        ),
        ('"GLOBALGROUP:NRW/owl-kommunen"', '"LOCALGROUP:owl"', "'LOCALGROUP:owl' must have 3 or 4 parts"),
        ('"NRW/GOV/057"]', '"MEMBER:NRW/GOV/057"]', "'MEMBER:NRW' contains the illegal character ':'"),
        (
            'service = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"',
            'service = "NRW/MUN/05774032/gewerbeamt"',
            "service identifier",
        ),
    ],
    ids=[
        "server-parts",
        "server-char",
        "client-empty",
        "sign-member",
        "group-parts",
        "localgroup",
        "typed-member",
        "service",
    ],
)
def test_bad_identifier_is_reported(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert expected in load_error(tmp_path, GOOD.replace(old, new, 1))


@pytest.mark.parametrize(
    ("port", "expected"),
    [("65536", "port 65536 is out of range"), ("-1", "port -1 is out of range")],
)
def test_port_out_of_range(tmp_path: Path, port: str, expected: str) -> None:
    assert expected in load_error(tmp_path, GOOD.replace("port = 5511", f"port = {port}"))


@pytest.mark.parametrize("port", ["true", "5511.5"], ids=["bool", "float"])
def test_port_must_be_an_integer(tmp_path: Path, port: str) -> None:
    message = load_error(tmp_path, GOOD.replace("port = 5511", f"port = {port}"))
    assert "port" in message


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("globalconf", "poll_interval_s", "0"),
        ("globalconf", "max_size_bytes", "-1"),
        ("globalconf", "fetch_timeout_s", "0"),
        ("limits", "max_body_bytes", "-1"),
        ("limits", "peer_timeout_s", "0"),
    ],
)
def test_non_positive_bounds_are_refused(tmp_path: Path, table: str, key: str, value: str) -> None:
    lines = [line for line in GOOD.splitlines() if not line.startswith(f"{key} =")]
    at = lines.index(f"[{table}]") + 1
    text = "\n".join([*lines[:at], f"{key} = {value}", *lines[at:]]) + "\n"
    assert key in load_error(tmp_path, text)


def test_port_of_wrong_type(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD.replace("port = 5511", 'port = "5511"'))
    assert "port must be an integer, not '5511'" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'base_url = "http://127.0.0.1:5601/"',
            'base_url = "ftp://127.0.0.1/"',
            "gewerbeanzeige/v1: base_url must be an http(s) URL",
        ),
        ("timeout_s = 12", "timeout_s = 0", "timeout_s must be positive"),
        ("timeout_s = 12", 'timeout_s = "soon"', "could not convert string to float"),
    ],
    ids=["base_url", "timeout-zero", "timeout-text"],
)
def test_bad_service_setting(tmp_path: Path, old: str, new: str, expected: str) -> None:
    message = load_error(tmp_path, GOOD.replace(old, new, 1))
    assert expected in message


def test_unknown_setting_in_a_table_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD.replace("peer_timeout_s = 5.0", "peer_timeout = 5.0"))
    assert "peer_timeout" in message


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD + "\n[[access]\n")
    assert "line" in message


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml.*No such file"):
        GatewayConfig.load(path, environ={})


# -- service(): version matching -----------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> GatewayConfig:
    return GatewayConfig.load(write(tmp_path, GOOD), environ={})


def test_service_matches_the_named_version(config: GatewayConfig) -> None:
    found = config.seed_snapshot().service(PROVIDER.service("gewerbeanzeige", "v2"))
    assert found is not None
    assert found.base_url == "https://backend.example/v2/"


def test_service_without_version_matches_the_first_configured(config: GatewayConfig) -> None:
    found = config.seed_snapshot().service(PROVIDER.service("gewerbeanzeige"))
    assert found is not None
    assert found.id.service_version == "v1"


def test_unversioned_configured_service_serves_every_version(config: GatewayConfig) -> None:
    found = config.seed_snapshot().service(PROVIDER.service("status", "v7"))
    assert found is not None
    assert found.id == PROVIDER.service("status")


@pytest.mark.parametrize(
    "service",
    [
        PROVIDER.service("gewerbeanzeige", "v3"),
        PROVIDER.service("unknown"),
        SubsystemId("NRW", "MUN", "05774032", "other").service("gewerbeanzeige", "v1"),
        SubsystemId("NRW", "MUN", "05711000", "gewerbeamt").service("gewerbeanzeige", "v1"),
    ],
    ids=["other-version", "other-code", "other-subsystem", "other-member"],
)
def test_service_not_configured(config: GatewayConfig, service: ServiceId) -> None:
    assert config.seed_snapshot().service(service) is None
