"""Replicas of one security server sharing their token keys in PostgreSQL.

Two configurations with data folders of their own and one ``database_url`` stand for two
replicas.  Each key is made once and read back by both, a server moving onto PostgreSQL
takes its key files along, and what cannot be trusted (a key file others can read, a
passphrase that does not open the key) is refused, never stored or used.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from core.clock import FixedClock
from gateway.config import GatewayConfig
from gateway.tokens import (
    TOKEN_KEYS_SCHEMA,
    TokenKey,
    TokenKeyError,
    load_or_create_key_file,
    load_token_key,
    token_key_path,
)
from tests.databases import fresh_postgres_database
from tests.unit.gateway.test_tokens import ISSUER, NOW, parse, write_config
from trust.tokens import key_id, verify_auditor_token
from xweg.tokencmd import run_token_command

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url() -> Iterator[str]:
    yield from fresh_postgres_database("xweg_tokenkeys")


def replica(
    folder: Path, database_url: str | None, passphrase: str | None = "server passphrase"
) -> GatewayConfig:
    """A security server's configuration in ``folder`` (data folder ``folder/data``)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder)
    if passphrase is None:
        config.write_text(config.read_text().replace('passphrase_file = "passphrase"\n', ""))
    else:
        (folder / "passphrase").write_text(passphrase + "\n")
    if database_url is not None:
        config.write_text(f'database_url = "{database_url}"\n' + config.read_text())
    return GatewayConfig.load(config)


def stored_rows(database_url: str) -> dict[str, bytes]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(f"SELECT name, pem FROM {TOKEN_KEYS_SCHEMA}.token_keys").fetchall()
    return {name: bytes(pem) for name, pem in rows}


def test_replicas_read_one_key_of_each_kind_and_keep_no_files(tmp_path: Path, database_url: str) -> None:
    first, second = replica(tmp_path / "a", database_url), replica(tmp_path / "b", database_url)
    ids = {kind: key_id(load_token_key(first, kind).public_key()) for kind in TokenKey}
    assert {kind: key_id(load_token_key(second, kind).public_key()) for kind in TokenKey} == ids
    assert len(set(ids.values())) == 3  # three kinds, three keys: no token passes for another kind
    rows = stored_rows(database_url)
    assert sorted(rows) == ["auditor-token", "client-token", "management-token"]
    # Encrypted with the key passphrase, as the files are.
    assert all(b"ENCRYPTED PRIVATE KEY" in pem for pem in rows.values())
    for config in (first, second):
        assert not [p for p in config.data_dir.glob("*token.key")]


def test_without_a_database_the_keys_stay_files(tmp_path: Path) -> None:
    config = replica(tmp_path, None)
    key = load_token_key(config, TokenKey.CLIENT)
    path = config.data_dir / "client-token.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_id(load_token_key(config, TokenKey.CLIENT).public_key()) == key_id(key.public_key())


def test_racing_replicas_end_up_with_one_key(tmp_path: Path, database_url: str) -> None:
    configs = [replica(tmp_path / str(n), database_url) for n in range(4)]
    barrier = threading.Barrier(len(configs))
    found: list[str] = []

    def start(config: GatewayConfig) -> None:
        barrier.wait()
        found.append(key_id(load_token_key(config, TokenKey.AUDITOR).public_key()))

    threads = [threading.Thread(target=start, args=(config,)) for config in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and len(set(found)) == 1


def test_a_server_moving_onto_postgresql_keeps_its_key(tmp_path: Path, database_url: str) -> None:
    alone = replica(tmp_path / "a", None)
    before = key_id(load_token_key(alone, TokenKey.AUDITOR).public_key())
    moved = replica(tmp_path / "a", database_url)
    assert key_id(load_token_key(moved, TokenKey.AUDITOR).public_key()) == before
    # ...and a new replica, with an empty data folder, gets that key from the database.
    assert (
        key_id(load_token_key(replica(tmp_path / "b", database_url), TokenKey.AUDITOR).public_key()) == before
    )


def test_a_key_file_others_can_read_is_not_taken_into_the_database(tmp_path: Path, database_url: str) -> None:
    alone = replica(tmp_path / "a", None)
    load_token_key(alone, TokenKey.MANAGEMENT)
    os.chmod(alone.data_dir / "management-token.key", 0o640)
    with pytest.raises(TokenKeyError, match="accessible to others"):
        load_token_key(replica(tmp_path / "a", database_url), TokenKey.MANAGEMENT)
    assert "management-token" not in stored_rows(database_url)


def test_a_key_file_the_passphrase_does_not_open_is_not_taken(tmp_path: Path, database_url: str) -> None:
    load_or_create_key_file(
        token_key_path(tmp_path / "a" / "data", TokenKey.AUDITOR), b"another passphrase", TokenKey.AUDITOR
    )
    file = tmp_path / "a" / "data" / "auditor-token.key"
    with pytest.raises(
        TokenKeyError, match=f"cannot read the auditor-token key {file}: cannot load private key"
    ):
        load_token_key(replica(tmp_path / "a", database_url), TokenKey.AUDITOR)
    assert "auditor-token" not in stored_rows(database_url)


def test_a_replica_with_another_passphrase_is_refused(tmp_path: Path, database_url: str) -> None:
    load_token_key(replica(tmp_path / "a", database_url), TokenKey.CLIENT)
    stranger = replica(tmp_path / "b", database_url, passphrase="not the same")
    with pytest.raises(TokenKeyError, match="key passphrase the same on every replica"):
        load_token_key(stranger, TokenKey.CLIENT)


def test_an_unreachable_database_is_a_token_key_error(tmp_path: Path) -> None:
    config = replica(tmp_path, "postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(TokenKeyError, match="cannot reach the database of the auditor-token key"):
        load_token_key(config, TokenKey.AUDITOR)


def test_a_token_issued_for_one_replica_verifies_with_the_others_key(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = replica(tmp_path / "a", database_url), replica(tmp_path / "b", database_url)
    argv = ["token", "issue", "--role", "auditor", "--subject", "Prüfamt"]
    code = run_token_command(parse([*argv, "--config", str(tmp_path / "a" / "server.toml")]), FixedClock(NOW))
    assert code == 0, capsys.readouterr().err
    token = capsys.readouterr().out.strip()
    identity = verify_auditor_token(
        token, load_token_key(second, TokenKey.AUDITOR).public_key(), issuer=ISSUER, now=NOW
    )
    assert identity.subject == "Prüfamt"
    assert not (first.data_dir / "auditor-token.key").exists()


def test_without_a_passphrase_no_key_goes_into_the_database(tmp_path: Path, database_url: str) -> None:
    # A row has no file mode to protect it: whoever reads the table or a dump could sign.
    config = replica(tmp_path, database_url, passphrase=None)
    assert config.key_passphrase is None
    for kind in TokenKey:
        with pytest.raises(
            TokenKeyError, match="encrypted with the key passphrase, and this server has none"
        ):
            load_token_key(config, kind)
    with psycopg.connect(database_url) as connection:
        assert (
            connection.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (TOKEN_KEYS_SCHEMA,)
            ).fetchone()
            is None
        )


def test_a_replicas_own_key_file_that_lost_is_reported(tmp_path: Path, database_url: str) -> None:
    shared = key_id(load_token_key(replica(tmp_path / "a", database_url), TokenKey.CLIENT).public_key())
    loser = replica(tmp_path / "b", None)
    load_token_key(loser, TokenKey.CLIENT)  # a key file of its own, from before the move
    with capture_logs() as logs:
        moved = load_token_key(replica(tmp_path / "b", database_url), TokenKey.CLIENT)
    assert key_id(moved.public_key()) == shared
    assert [entry["event"] for entry in logs] == ["token_key.file_superseded"]
    assert logs[0]["path"] == str(tmp_path / "b" / "data" / "client-token.key")
    # The winner's own file is the shared key: nothing to say.
    with capture_logs() as logs:
        load_token_key(replica(tmp_path / "a", database_url), TokenKey.CLIENT)
    assert logs == []


def test_the_database_url_given_on_the_command_line_is_where_tokens_are_signed(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server started with `xweg gateway serve --database-url URL`: its configuration file
    # names no database, and a token issued without the same URL would be signed by a key
    # file no replica reads.
    replica(tmp_path / "a", None)
    config = str(tmp_path / "a" / "server.toml")
    argv = ["token", "issue", "--role", "auditor", "--subject", "Prüfamt", "--config", config]
    assert run_token_command(parse([*argv, "--database-url", database_url]), FixedClock(NOW)) == 0
    token = capsys.readouterr().out.strip()
    shared = load_token_key(replica(tmp_path / "b", database_url), TokenKey.AUDITOR)
    assert verify_auditor_token(token, shared.public_key(), issuer=ISSUER, now=NOW).subject == "Prüfamt"
    assert not (tmp_path / "a" / "data" / "auditor-token.key").exists()


def test_an_unreachable_database_is_one_line_from_token_issue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replica(tmp_path, None)
    argv = [
        "token",
        "issue",
        "--role",
        "auditor",
        "--subject",
        "a",
        "--config",
        str(tmp_path / "server.toml"),
    ]
    code = run_token_command(parse([*argv, "--database-url", "postgresql://xweg:s3cr3t@127.0.0.1:1/ss1"]))
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith(
        "xweg token issue: cannot reach the database of the auditor-token key, "
        "postgresql://xweg:***@127.0.0.1:1/ss1 (table tokenkeys.token_keys): "
    ), err
    assert len(err.splitlines()) == 1 and "s3cr3t" not in err
