"""Signed checkpoints, consistency and rollback on a real log: each tamper is named.

The log (see :mod:`federation`) has real JWS signatures, OCSP responses, RFC 3161
tokens and checkpoints signed by the owner of the origin server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.messagelog.checkpoint import Checkpoint, TreeLevels
from gateway.messagelog.record import encode_record
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.verify import LogReport, check_kept_checkpoint, verify_checkpoints, verify_log_file
from tests.unit.gateway.messagelog.federation import (
    ORIGIN,
    T0,
    Federation,
    LogFacts,
    federation,
    stamp,
    write_log,
)
from trust import merkle
from trust.evidence import encode_log_record


@pytest.fixture(scope="module")
def fed() -> Federation:
    return federation()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, fed: Federation) -> LogFacts:
    return write_log(tmp_path_factory.mktemp("signed") / "messagelog.db", fed)


@pytest.fixture
def log(tmp_path: Path, good: LogFacts) -> LogFacts:
    """A fresh copy of the good log, to tamper with."""
    path = tmp_path / "messagelog.db"
    shutil.copyfile(good.path, path)
    return LogFacts(path, good.checkpoints)


def verify(path: Path, fed: Federation, kept: tuple[Checkpoint, ...] = ()) -> LogReport:
    return verify_log_file(
        path,
        fed.check_record,
        tsa_certificates=[fed.tsa],
        roots=[fed.root.certificate],
        intermediates=[fed.issuing.certificate],
        check_checkpoint_signature=fed.check_checkpoint,
        kept=kept,
    )


def reason(path: Path, fed: Federation, kept: tuple[Checkpoint, ...] = ()) -> str:
    report = verify(path, fed, kept)
    assert report.first_error is not None, "the tampered log verified"
    return report.first_error.reason


def sql(path: Path, statement: str, *params: object) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute(statement, params)
        connection.commit()
    finally:
        connection.close()


def column(path: Path, statement: str, *params: object) -> object:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(statement, params).fetchone()[0]
    finally:
        connection.close()


def flip(data: object, at: int) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    assert isinstance(raw, bytes)
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]


def test_the_good_log_verifies_with_signed_consistent_checkpoints(log: LogFacts, fed: Federation) -> None:
    report = verify(log.path, fed, kept=log.checkpoints)
    assert report.ok, report.first_error
    assert (report.records, report.checkpoints, report.timestamped_records) == (10, 2, 10)
    assert (report.tree_size, report.root) == (10, log.checkpoints[1].root)
    for checkpoint in log.checkpoints:
        assert checkpoint.signer_ocsp is not None
        assert (
            fed.check_checkpoint(
                checkpoint.signature, checkpoint.digest(), checkpoint.signer_ocsp, checkpoint.time
            )
            == "NRW/GOV/057"
        )


def test_trust_encoding_of_records_is_the_logs(log: LogFacts) -> None:
    with MessageLogStore.open_readonly(log.path) as store:
        for record in store.iter_records():
            assert encode_log_record(
                seq=record.seq,
                direction=record.direction.value,
                message_id=record.message_id,
                client=record.client,
                service=record.service,
                logged_at=record.logged_at,
                status=record.status,
                header=record.header,
                signature=record.signature,
                ocsp=record.ocsp,
                body_storage=record.body_storage,
            ) == encode_record(record.seq, record.content)


# -- forged checkpoints -------------------------------------------------------------------


def forge(path: Path, fed: Federation, signer_attr: str) -> None:
    """Replace checkpoint 10 by one signed with another key (the attacker recomputed everything else)."""
    sql(path, "DELETE FROM record_paths WHERE checkpoint_size = 10")
    sql(path, "DELETE FROM checkpoints WHERE size = 10")
    with MessageLogStore.open(path) as store:
        stamp(store, fed, T0 + dt.timedelta(seconds=420), signer=getattr(fed, signer_attr))


def test_a_checkpoint_signed_by_another_member_is_refused(log: LogFacts, fed: Federation) -> None:
    forge(log.path, fed, "other")
    assert reason(log.path, fed) == (
        "checkpoint 10 is signed by NRW/MUN/05711000, not by the origin server's owner NRW/GOV/057; "
        "it was not made by this log's server"
    )


def test_a_checkpoint_signed_with_a_self_made_key_is_refused(log: LogFacts, fed: Federation) -> None:
    forge(log.path, fed, "stranger")
    message = reason(log.path, fed)
    assert message.startswith("checkpoint 10: its signature does not verify:")
    assert "does not chain to an approved CA" in message or "unknown issuer" in message


def test_a_checkpoint_signature_over_another_body_is_refused(log: LogFacts, fed: Federation) -> None:
    first = log.checkpoints[0]
    sql(log.path, "UPDATE checkpoints SET signature = ? WHERE size = 10", first.signature)
    assert reason(log.path, fed).startswith("checkpoint 10: its signature does not verify: signature by")


def test_a_flipped_signature_byte_is_refused(log: LogFacts, fed: Federation) -> None:
    signature = log.checkpoints[1].signature
    sql(
        log.path,
        "UPDATE checkpoints SET signature = ? WHERE size = 10",
        flip(signature, len(signature) - 5).decode(),
    )
    assert reason(log.path, fed).startswith("checkpoint 10: its signature does not verify")


def test_a_token_replayed_from_another_batch_is_refused(log: LogFacts, fed: Federation) -> None:
    first = log.checkpoints[0]
    sql(
        log.path,
        "UPDATE checkpoints SET token = ?, gen_time = ? WHERE size = 10",
        first.token,
        column(log.path, "SELECT gen_time FROM checkpoints WHERE size = 6"),
    )
    assert reason(log.path, fed).startswith(
        "checkpoint 10: its timestamp does not verify: timestamp token is for another message"
    )


def test_a_flipped_token_byte_is_refused(log: LogFacts, fed: Federation) -> None:
    token = log.checkpoints[0].token
    sql(log.path, "UPDATE checkpoints SET token = ? WHERE size = 6", flip(token, len(token) - 12))
    assert reason(log.path, fed).startswith("checkpoint 6: its timestamp does not verify")


# -- records --------------------------------------------------------------------------------


def test_a_flipped_body_byte_is_named(log: LogFacts, fed: Federation) -> None:
    body = column(log.path, "SELECT body FROM records WHERE seq = 3")
    sql(log.path, "UPDATE records SET body = ? WHERE seq = 3", flip(body, 5))
    report = verify(log.path, fed)
    assert report.first_error is not None and report.first_error.seq == 3
    assert (
        report.first_error.reason
        == "record 3 (message msg-2): body does not match the SHA-512 in its signed header"
    )


def test_a_flipped_signature_of_a_record_is_named(log: LogFacts, fed: Federation) -> None:
    signature = column(log.path, "SELECT signature FROM records WHERE seq = 4")
    sql(log.path, "UPDATE records SET signature = ? WHERE seq = 4", flip(signature, 40).decode())
    report = verify(log.path, fed)
    assert report.first_error is not None and report.first_error.seq == 4
    assert "its content does not match its record hash" in report.first_error.reason


def test_a_changed_record_column_is_named(log: LogFacts, fed: Federation) -> None:
    sql(log.path, "UPDATE records SET status = 200 WHERE seq = 8")
    report = verify(log.path, fed)
    assert report.first_error is not None and report.first_error.seq == 8
    assert "its content does not match its record hash" in report.first_error.reason


def test_a_deleted_record_is_named(log: LogFacts, fed: Federation) -> None:
    sql(log.path, "DELETE FROM records WHERE seq = 5")
    report = verify(log.path, fed)
    assert report.first_error is not None and report.first_error.seq == 6
    assert "record 5 is missing" in report.first_error.reason


def test_two_reordered_records_are_named(log: LogFacts, fed: Federation) -> None:
    sql(log.path, "UPDATE records SET seq = -3 WHERE seq = 3")
    sql(log.path, "UPDATE records SET seq = 3 WHERE seq = 5")
    sql(log.path, "UPDATE records SET seq = 5 WHERE seq = -3")
    report = verify(log.path, fed)
    assert report.first_error is not None and report.first_error.seq == 3
    assert "does not continue the hash chain" in report.first_error.reason


def test_a_truncated_tail_is_named(log: LogFacts, fed: Federation) -> None:
    sql(log.path, "DELETE FROM records WHERE seq > 8")
    assert reason(log.path, fed) == (
        "checkpoint 10 covers 10 records but the log holds only 8; records were removed from its end"
    )


# -- rollback and a kept checkpoint -------------------------------------------------------------


def test_a_rolled_back_copy_verifies_alone_but_not_against_a_kept_checkpoint(
    tmp_path: Path, fed: Federation, good: LogFacts
) -> None:
    older = write_log(tmp_path / "older.db", fed, upto=6)
    assert verify(older.path, fed).ok  # consistent in itself: only a kept checkpoint shows it
    kept = good.checkpoints[1]
    message = reason(older.path, fed, kept=(kept,))
    assert message.startswith(
        "the log holds 6 records, fewer than the 10 of the kept checkpoint of 10 records"
    )
    assert "rolled back" in message


def test_a_rewritten_history_fails_against_a_kept_checkpoint(
    tmp_path: Path, fed: Federation, good: LogFacts
) -> None:
    # Another log of the same server: same shape, other signatures (fresh ECDSA nonces).
    other = write_log(tmp_path / "rewritten.db", fed)
    assert verify(other.path, fed).ok
    message = reason(other.path, fed, kept=(good.checkpoints[0],))
    assert message == (
        f"the log's first 6 records are not those of the kept checkpoint of 6 records "
        f"({good.checkpoints[0].time.isoformat()}): its history was rewritten"
    )


def test_a_kept_checkpoint_of_another_log_or_forged_is_refused(log: LogFacts, fed: Federation) -> None:
    kept = log.checkpoints[0]
    forged = dataclasses.replace(kept, root=bytes(32))
    with MessageLogStore.open_readonly(log.path) as store:
        problem = check_kept_checkpoint(
            store,
            forged,
            check_signature=fed.check_checkpoint,
            tsa_certificates=[fed.tsa],
            roots=[fed.root.certificate],
            intermediates=[fed.issuing.certificate],
        )
    assert problem is not None and "its signature does not verify" in problem


# -- proofs from the store ----------------------------------------------------------------------


def test_store_proofs_are_the_trees(log: LogFacts) -> None:
    with MessageLogStore.open_readonly(log.path) as store:
        leaves = store.leaf_hashes(10)
        for size in range(1, 11):
            for seq in range(1, size + 1):
                assert store.inclusion_proof(seq, size) == merkle.inclusion_proof(seq - 1, leaves[:size])
            for old in range(0, size + 1):
                assert store.consistency_proof(old, size) == merkle.consistency_proof(old, leaves[:size])
        checkpoint = store.checkpoint_covering(3)
        assert checkpoint is not None and checkpoint.size == 6
        assert store.checkpoint_covering(7) is not None
        assert store.checkpoint_covering(11) is None
        with pytest.raises(ValueError):
            store.inclusion_proof(0, 5)
        with pytest.raises(ValueError):
            store.consistency_proof(6, 5)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 21, 34])
def test_tree_levels_give_the_proofs_of_trust_merkle(size: int) -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(size)]
    tree = TreeLevels(leaves)
    for n in range(1, size + 1):
        assert tree.range_hash(0, n) == merkle.root(leaves[:n])
        for index in range(n):
            assert tree.inclusion_proof(index, n) == merkle.inclusion_proof(index, leaves[:n])
        for old in range(0, n + 1):
            assert tree.consistency_proof(old, n) == merkle.consistency_proof(old, leaves[:n])


def test_globalconf_history(tmp_path: Path, fed: Federation) -> None:
    with MessageLogStore.open(tmp_path / "messagelog.db") as store:
        assert store.globalconf_at(T0) is None
        for serial in (7, 8):
            conf = fed.conf(serial)
            store.record_globalconf(serial, fed.documents[serial], conf.generated_at, conf.expires_at)
        store.record_globalconf(7, b"ignored: serial 7 is kept already", T0, T0)  # a restart adopts it again
        assert store.globalconf_at(T0 - dt.timedelta(minutes=6)) is None
        assert store.globalconf_at(T0) == fed.documents[7]
        assert store.globalconf_entry_at(T0 + dt.timedelta(minutes=5)) == (8, fed.documents[8])
        assert store.globalconf_at(T0 + dt.timedelta(days=1)) == fed.documents[8]
        with pytest.raises(ValueError):
            store.record_globalconf(0, b"x", T0, T0)


def test_verify_checkpoints_reports_the_latest_root(log: LogFacts, fed: Federation) -> None:
    with MessageLogStore.open_readonly(log.path) as store:
        report = verify_checkpoints(
            store,
            tsa_certificates=[fed.tsa],
            roots=[fed.root.certificate],
            intermediates=[fed.issuing.certificate],
            check_signature=fed.check_checkpoint,
        )
    assert report.ok and report.tree_size == 10 and report.root == log.checkpoints[1].root
    assert report.to_dict()["root"] == log.checkpoints[1].root.hex()
    assert ORIGIN.slash() == log.checkpoints[1].origin
