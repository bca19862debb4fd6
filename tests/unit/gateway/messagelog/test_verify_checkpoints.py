"""Checkpoint verification: a timestamped log passes; each tamper of a real file is named.

The good log has six records under two checkpoints (sizes 4 and 6), each with a real
RFC 3161 token from a TSA certified by the test's own root CA.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.messagelog.checkpoint import Checkpoint
from gateway.messagelog.record import LogRecord
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.verify import (
    CheckpointProblem,
    CheckpointReport,
    LogReport,
    verify_checkpoints,
    verify_log_file,
)
from tests.unit.gateway.messagelog.helpers import (
    CHECKPOINT_SIGNERS,
    NOW,
    Signers,
    make_exchange,
    read_column,
    rechain,
    tamper,
)
from tests.unit.gateway.messagelog.tsa import Pki, TsaIdentity, timestamp_log

#: Counters of body storage and pruning, not what these tests are about.
_EXTRAS = {"bodies_omitted": 0, "pruned_records": 0}


@pytest.fixture(scope="session")
def stamped_file(
    tmp_path_factory: pytest.TempPathFactory, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> tuple[Path, list[Checkpoint]]:
    """Built once: records 1-4 under checkpoint 4, records 5-6 under checkpoint 6."""
    path = tmp_path_factory.mktemp("stamped") / "messagelog.db"
    with MessageLogStore.open(path) as store:
        store.set_meta("server_id", "EE/GOV/70000001/ss1")
        for number in (1, 2):
            exchange = make_exchange(signers, number, at=NOW + dt.timedelta(seconds=number))
            store.append([exchange.request, exchange.response])
    first = timestamp_log(path, tsa_identity, [pki.root], NOW + dt.timedelta(seconds=5))
    with MessageLogStore.open(path) as store:
        exchange = make_exchange(signers, 3, at=NOW + dt.timedelta(seconds=70))
        store.append([exchange.request, exchange.response])
    second = timestamp_log(path, tsa_identity, [pki.root], NOW + dt.timedelta(seconds=75))
    return path, [first, second]


@pytest.fixture
def stamped(log_path: Path, stamped_file: tuple[Path, list[Checkpoint]]) -> list[Checkpoint]:
    """A fresh copy of the timestamped log at ``log_path``, to tamper with."""
    source, checkpoints = stamped_file
    shutil.copyfile(source, log_path)
    return checkpoints


def check(path: Path, pki: Pki, tsa: TsaIdentity) -> CheckpointReport:
    with MessageLogStore.open_readonly(path) as store:
        return verify_checkpoints(
            store,
            tsa_certificates=[tsa.certificate],
            roots=[pki.root],
            check_signature=CHECKPOINT_SIGNERS.check_checkpoint,
        )


def failure(path: Path, pki: Pki, tsa: TsaIdentity) -> str:
    report = check(path, pki, tsa)
    assert report.first_error is not None
    return report.first_error


def flip(data: object, at: int) -> bytes:
    assert isinstance(data, bytes)
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_timestamped_log_verifies(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity, signers: Signers
) -> None:
    assert check(log_path, pki, tsa_identity) == CheckpointReport(2, 6, None, None, 6, stamped[1].root)
    report = verify_log_file(
        log_path,
        signers.check,
        tsa_certificates=[tsa_identity.certificate],
        roots=[pki.root],
        check_checkpoint_signature=CHECKPOINT_SIGNERS.check_checkpoint,
    )
    assert report == LogReport(
        records=6,
        first_error=None,
        checkpoints=2,
        timestamped_records=6,
        tree_size=6,
        root=stamped[1].root,
    )
    assert (
        report.to_dict() | _EXTRAS
        == {
            "records": 6,
            "timestamped_records": 6,
            "checkpoints": 2,
            "tree_size": 6,
            "root": stamped[1].root.hex(),
            "first_error": None,
        }
        | _EXTRAS
    )
    # Without TSA certificates, checkpoints are not checked.
    assert verify_log_file(log_path, signers.check).to_dict()["checkpoints"] == 0


def test_records_after_the_last_checkpoint_are_untimestamped_not_wrong(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity, signers: Signers
) -> None:
    with MessageLogStore.open(log_path) as store:
        exchange = make_exchange(signers, 4, at=NOW + dt.timedelta(seconds=90))
        store.append([exchange.request])
    assert check(log_path, pki, tsa_identity) == CheckpointReport(2, 6, None, None, 6, stamped[1].root)


def test_a_log_without_checkpoints_has_nothing_timestamped(
    log_path: Path, good_log: list[LogRecord], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    assert check(log_path, pki, tsa_identity) == CheckpointReport(0, 0, None)


def test_flipped_token_byte_is_named(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    token = read_checkpoint(log_path, "token", 6)
    assert isinstance(token, bytes)
    tamper(log_path, "UPDATE checkpoints SET token = ? WHERE size = 6", flip(token, len(token) - 10))
    report = check(log_path, pki, tsa_identity)
    assert report.checkpoints == 1
    assert report.timestamped_records == 0
    assert report.first_error is not None
    assert report.first_error.startswith("checkpoint 6: its timestamp does not verify:")


def test_token_replayed_from_another_batch_is_refused(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "UPDATE checkpoints SET token = ? WHERE size = 6", stamped[0].token)
    tamper(
        log_path,
        "UPDATE checkpoints SET gen_time = ? WHERE size = 6",
        read_checkpoint(log_path, "gen_time", 4),
    )
    reason = failure(log_path, pki, tsa_identity)
    assert reason.startswith(
        "checkpoint 6: its timestamp does not verify: timestamp token is for another message"
    )


def test_token_of_an_untrusted_tsa_is_refused(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    stranger = Pki("Stranger Root").issue_tsa("Test TSA")
    with MessageLogStore.open_readonly(log_path) as store:
        report = verify_checkpoints(
            store,
            tsa_certificates=[stranger.certificate],
            roots=[pki.root],
            check_signature=CHECKPOINT_SIGNERS.check_checkpoint,
        )
    assert report.first_error is not None
    assert report.first_error.startswith("checkpoint 4: its timestamp does not verify")
    # The right TSA certificate, but not chaining to the roots given.
    with MessageLogStore.open_readonly(log_path) as store:
        report = verify_checkpoints(
            store,
            tsa_certificates=[tsa_identity.certificate],
            roots=[Pki("Other Root").root],
            check_signature=CHECKPOINT_SIGNERS.check_checkpoint,
        )
    assert report.first_error is not None
    assert "does not chain to an approved CA" in report.first_error


def test_flipped_checkpoint_root_is_named(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "UPDATE checkpoints SET root = ? WHERE size = 4", flip(stamped[0].root, 0))
    assert failure(log_path, pki, tsa_identity) == "checkpoint 4: its body names another root than its row"


def test_rewritten_checkpoint_body_is_caught_by_the_root_and_the_token(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    forged_root = flip(stamped[0].root, 0)
    forged = dataclasses.replace(stamped[0], root=forged_root)
    tamper(log_path, "UPDATE checkpoints SET root = ?, body = ? WHERE size = 4", forged_root, forged.body())
    reason = failure(log_path, pki, tsa_identity)
    assert reason.startswith("checkpoint 4: the Merkle root over records 1 to 4 is not the checkpoint's root")


def test_flipped_path_byte_is_named(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    path = read_path(log_path, 3)
    tamper(log_path, "UPDATE record_paths SET path = ? WHERE seq = 3", flip(path, 7))
    report = check(log_path, pki, tsa_identity)
    assert report.checkpoints == 2
    assert report.timestamped_records == 2
    assert report.first_error is not None
    assert report.first_error.startswith("record 3: its path to checkpoint 4 does not verify")
    assert report.problem == CheckpointProblem(report.first_error, 3)


def test_path_moved_to_another_checkpoint_is_named(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "UPDATE record_paths SET checkpoint_size = 6 WHERE seq = 2")
    assert failure(log_path, pki, tsa_identity).startswith(
        "record 2: its path to checkpoint 6 does not verify"
    )
    tamper(log_path, "UPDATE record_paths SET checkpoint_size = 5 WHERE seq = 2")
    assert (
        failure(log_path, pki, tsa_identity) == "record 2: its path names checkpoint 5, which does not exist"
    )


def test_deleted_path_row_is_named(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "DELETE FROM record_paths WHERE seq = 5")
    assert failure(log_path, pki, tsa_identity) == "record 5 has no path to a checkpoint"
    tamper(log_path, "DELETE FROM record_paths WHERE seq = 6")
    assert failure(log_path, pki, tsa_identity) == "record 5 has no path to a checkpoint"


def test_record_changed_after_it_was_timestamped_is_named(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity, signers: Signers
) -> None:
    # An attacker who rechains: the record verifies on its own (a real signature) ...
    other = make_exchange(signers, 9, at=NOW + dt.timedelta(seconds=2))
    tamper(
        log_path,
        "UPDATE records SET message_id = ?, header = ?, body = ?, signature = ? WHERE seq = 3",
        other.request.message_id,
        other.request.header,
        other.request.body,
        other.request.signature,
    )
    rechain(log_path)
    assert verify_log_file(log_path, signers.check).ok
    # ... but its leaf no longer matches the one stored, and once that is rewritten too,
    # no longer the timestamped root.
    assert failure(log_path, pki, tsa_identity).startswith(
        "record 3: its stored leaf hash is not the hash of its content"
    )
    with MessageLogStore.open_readonly(log_path) as store:
        changed = list(store.iter_records())[2]
    tamper(log_path, "UPDATE records SET leaf_hash = ? WHERE seq = 3", changed.leaf_hash)
    reason = failure(log_path, pki, tsa_identity)
    assert reason.startswith("checkpoint 4: the Merkle root over records 1 to 4 is not the checkpoint's root")
    report = verify_log_file(
        log_path,
        signers.check,
        tsa_certificates=[tsa_identity.certificate],
        roots=[pki.root],
        check_checkpoint_signature=CHECKPOINT_SIGNERS.check_checkpoint,
    )
    assert report.records == 6
    assert isinstance(report.first_error, CheckpointProblem)
    assert report.first_error.reason == reason
    assert report.to_dict()["first_error"] == {
        "kind": "checkpoint",
        "seq": None,
        "message_id": None,
        "reason": reason,
    }


def test_truncated_tail_is_detected(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity, signers: Signers
) -> None:
    tamper(log_path, "DELETE FROM records WHERE seq >= 5")
    assert verify_log_file(log_path, signers.check).ok  # the chain alone cannot tell
    report = verify_log_file(
        log_path,
        signers.check,
        tsa_certificates=[tsa_identity.certificate],
        roots=[pki.root],
        check_checkpoint_signature=CHECKPOINT_SIGNERS.check_checkpoint,
    )
    assert report.first_error is not None
    assert report.first_error.reason == (
        "checkpoint 6 covers 6 records but the log holds only 4; records were removed from its end"
    )


def test_deleted_checkpoint_leaves_paths_without_one(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "DELETE FROM checkpoints WHERE size = 4")
    assert (
        failure(log_path, pki, tsa_identity) == "record 1: its path names checkpoint 4, which does not exist"
    )


def test_changed_stored_gen_time_is_named(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "UPDATE checkpoints SET gen_time = '2020-01-01T00:00:00.000000Z' WHERE size = 4")
    assert "is not the stored 2020-01-01T00:00:00+00:00" in failure(log_path, pki, tsa_identity)


def test_token_much_older_than_its_checkpoint_is_refused(
    log_path: Path, good_log: list[LogRecord], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    # The TSA's clock 400 s behind the checkpoint's time: more than the 300 s tolerated.
    at = NOW + dt.timedelta(seconds=30)
    timestamp_log(log_path, tsa_identity, [pki.root], at, gen_time=at - dt.timedelta(seconds=400))
    assert "more than 300 s before the checkpoint's own time" in failure(log_path, pki, tsa_identity)


def test_checkpoint_of_another_origin_is_refused(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "UPDATE meta SET value = 'EE/GOV/70000009/ss9' WHERE key = 'server_id'")
    assert failure(log_path, pki, tsa_identity) == (
        "checkpoint 4 names origin EE/GOV/70000001/ss1, not this log's EE/GOV/70000009/ss9"
    )


def test_damaged_rows_are_reported_not_raised(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "UPDATE record_paths SET path = x'00' WHERE seq = 4")
    assert "the stored path of record 4 is damaged" in failure(log_path, pki, tsa_identity)


def test_deleted_record_is_named(
    log_path: Path, stamped: list[Checkpoint], pki: Pki, tsa_identity: TsaIdentity
) -> None:
    tamper(log_path, "DELETE FROM records WHERE seq = 2")
    report = check(log_path, pki, tsa_identity)
    assert report.first_error == "record 2 is missing; leaves must be records 1, 2, 3..."
    assert report.first_error_seq == 2


def read_checkpoint(path: Path, column: str, size: int) -> object:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT {column} FROM checkpoints WHERE size = ?", (size,)).fetchone()[0]
    finally:
        connection.close()


def read_path(path: Path, seq: int) -> bytes:
    connection = sqlite3.connect(path)
    try:
        value = connection.execute("SELECT path FROM record_paths WHERE seq = ?", (seq,)).fetchone()[0]
    finally:
        connection.close()
    assert isinstance(value, bytes)
    return value


def test_stored_leaf_column_matches_content(log_path: Path, stamped: list[Checkpoint]) -> None:
    with MessageLogStore.open_readonly(log_path) as store:
        for record in store.iter_records():
            assert read_column(log_path, "leaf_hash", record.seq) == record.leaf_hash
