"""``xweg audit verify postgresql://...``: every replica's shard of a server's message log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.messagelog.store import PostgresLogShard
from tests.databases import fresh_postgres_database
from tests.unit.gateway.messagelog.federation import Federation, federation, write_log
from trust.anchor import save_anchor
from xweg.cli import main


@pytest.fixture(scope="module")
def fed() -> Federation:
    return federation()


@pytest.fixture
def database() -> Iterator[str]:
    yield from fresh_postgres_database("xweg_audit")


@pytest.fixture
def anchor(tmp_path: Path, fed: Federation) -> Path:
    path = tmp_path / "anchor.json"
    save_anchor(fed.anchor(), path)
    return path


@pytest.fixture
def two_replicas(database: str, fed: Federation) -> str:
    """Replica a logged five exchanges (two checkpoints), replica b three (one checkpoint)."""
    write_log(PostgresLogShard(database, "replica_a"), fed)  # type: ignore[arg-type]
    write_log(PostgresLogShard(database, "replica_b"), fed, upto=6)  # type: ignore[arg-type]
    return database


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["audit", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_shard_is_verified(two_replicas: str, anchor: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", two_replicas, "--anchor", anchor, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["intact"] is True
    assert sorted(report["shards"]) == ["replica_a", "replica_b"]
    assert report["shards"]["replica_a"]["tree_size"] == 10
    assert report["shards"]["replica_b"]["tree_size"] == 6
    assert all(shard["first_error"] is None for shard in report["shards"].values())
    assert report["shards"]["replica_b"]["records"] == 6

    code, out, _ = run(capsys, "verify", two_replicas, "--anchor", anchor)
    assert code == 0
    assert out.count(": intact.") == 2
    assert "shard replica_a of" in out and "shard replica_b of" in out
    assert out.rstrip().endswith("2 shard(s), every shard intact.")


def test_a_changed_record_in_one_shard_fails_the_server(
    two_replicas: str, anchor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Someone with write access to the database changes a body in replica b's shard.
    with psycopg.connect(two_replicas, autocommit=True) as connection:
        connection.execute(
            "UPDATE messagelog_replica_b.records SET body = body || '\\x20'::bytea WHERE seq = 3"
        )
    code, out, _ = run(capsys, "verify", two_replicas, "--anchor", anchor)
    assert code == 1
    assert "NOT intact. First bad record: 3" in out
    assert out.rstrip().endswith("NOT intact: shard(s) replica_b.")
    # The other replica's shard is untouched and still says so.
    code, out, _ = run(capsys, "verify", two_replicas, "--anchor", anchor, "--shard", "replica_a")
    assert code == 0
    assert "shard replica_a of" in out and ": intact." in out and "replica_b" not in out


def test_a_missing_shard_or_an_empty_database_is_an_error(
    database: str, anchor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "verify", database, "--anchor", anchor)
    assert code == 2
    assert "holds no message-log shard" in err
    code, _, err = run(capsys, "verify", database, "--anchor", anchor, "--shard", "nosuch")
    assert code == 2
    assert "shard nosuch" in err and "does not exist" in err
    code, _, err = run(capsys, "verify", database, "--shard", "Not-A-Shard")
    assert code == 2
    assert "a message-log shard is 1 to 40 of a-z" in err


def test_the_password_of_the_url_is_never_printed(
    two_replicas: str, anchor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Trust authentication ignores the password; the output must not show it all the same.
    with_password = two_replicas.replace("postgres@", "postgres:s3cret-pw@")
    code, out, err = run(capsys, "verify", with_password, "--anchor", anchor)
    assert code == 0
    assert "s3cret-pw" not in out + err
    assert "postgres:***@" in out


def test_shard_needs_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "messagelog.db"
    log.write_bytes(b"")
    code, _, err = run(capsys, "verify", log, "--shard", "a")
    assert code == 2
    assert "--shard names a shard of a PostgreSQL database" in err


def test_a_shard_copied_to_a_file_verifies_offline_and_keeps_what_it_was(
    two_replicas: str, anchor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "replica_a.db"
    code, out, _ = run(capsys, "copy", two_replicas, "--shard", "replica_a", "--out", copy)
    assert code == 0
    assert out.strip().endswith(f"10 records copied to {copy}")
    code, out, _ = run(capsys, "verify", copy, "--anchor", anchor, "--json")
    assert code == 0
    copied = json.loads(out)
    assert (copied["first_error"], copied["tree_size"], copied["checkpoints"]) == (None, 10, 2)

    # Rows are copied as stored: a change made before the copy shows in the copy too ...
    with psycopg.connect(two_replicas, autocommit=True) as connection:
        connection.execute("UPDATE messagelog_replica_a.records SET status = 599 WHERE seq = 2")
    changed = tmp_path / "changed.db"
    assert run(capsys, "copy", two_replicas, "--shard", "replica_a", "--out", changed)[0] == 0
    code, out, _ = run(capsys, "verify", changed, "--anchor", anchor)
    assert code == 1 and "First bad record: 2" in out
    # ... and the earlier copy is a witness of what the shard held before.
    assert run(capsys, "verify", copy, "--anchor", anchor)[0] == 0


def test_a_copy_never_overwrites_and_leaves_nothing_when_it_fails(
    two_replicas: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"keep me")
    code, _, err = run(capsys, "copy", two_replicas, "--shard", "replica_a", "--out", existing)
    assert code == 2 and "it exists" in err
    assert existing.read_bytes() == b"keep me"
    missing = tmp_path / "missing.db"
    code, _, err = run(capsys, "copy", two_replicas, "--shard", "nosuch", "--out", missing)
    assert code == 2 and "does not exist" in err
    assert not missing.exists()
