"""Verification: a good log passes; each tamper of a real file is named, with its record.

Most tampers are tried twice: plainly (the hash chain catches them) and with the chain
recomputed afterwards (``rechain``), as an attacker who knows the chain's rule would;
then body digests and signatures must catch them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from core.canonical import canonical_json, request_digest, response_digest
from gateway.messagelog.errors import LogFileMissing
from gateway.messagelog.record import GENESIS_HASH, LogRecord
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.verify import LogReport, RecordProblem, verify_log_file, verify_records
from tests.unit.gateway.messagelog.helpers import (
    OTHER_MEMBER,
    Signers,
    make_exchange,
    read_column,
    rechain,
    tamper,
)

CHANGED = "changed after it was logged"


def first_error(path: Path, signers: Signers) -> RecordProblem:
    report = verify_log_file(path, signers.check)
    assert isinstance(report.first_error, RecordProblem)
    return report.first_error


def test_good_log_verifies(log_path: Path, good_log: list[LogRecord], signers: Signers) -> None:
    report = verify_log_file(log_path, signers.check)
    assert report.ok
    assert report == LogReport(records=6, first_error=None)
    assert report.to_dict() == {
        "records": 6,
        "timestamped_records": 0,
        "checkpoints": 0,
        "tree_size": 0,
        "root": None,
        "bodies_omitted": 0,
        "pruned_records": 0,
        "first_error": None,
    }


def test_signature_check_gets_the_digest_and_the_logging_time() -> None:
    signers = Signers()
    exchange = make_exchange(signers, 1)
    placed = LogRecord.place(1, GENESIS_HASH, exchange.request)
    assert verify_records([placed], signers.check).ok
    assert signers.calls == [(placed.signature, request_digest(exchange.request_header), placed.logged_at)]


def test_empty_log_is_fine(log_path: Path, signers: Signers) -> None:
    MessageLogStore.open(log_path).close()
    assert verify_log_file(log_path, signers.check) == LogReport(0, None)


def test_flipped_body_byte_is_named(log_path: Path, good_log: list[LogRecord], signers: Signers) -> None:
    body = read_column(log_path, "body", 3)
    assert isinstance(body, bytes)
    tamper(log_path, "UPDATE records SET body = ? WHERE seq = 3", bytes([body[0] ^ 0x01]) + body[1:])
    report = verify_log_file(log_path, signers.check)
    assert report.records == 2
    assert report.first_error == RecordProblem(
        3,
        good_log[2].message_id,
        f"record 3 (message {good_log[2].message_id}): body does not match the SHA-512 in its signed header",
    )
    assert report.to_dict()["first_error"]["seq"] == 3


@pytest.mark.parametrize("recompute_chain", [False, True])
def test_changed_header_is_caught(
    log_path: Path, good_log: list[LogRecord], signers: Signers, recompute_chain: bool
) -> None:
    header = json.loads(good_log[2].header)
    header["path"] = "/persons/someone-else"
    tamper(log_path, "UPDATE records SET header = ? WHERE seq = 3", canonical_json(header))
    if recompute_chain:
        rechain(log_path)
    problem = first_error(log_path, signers)
    assert problem.seq == 3
    if recompute_chain:
        assert "signature does not verify: the signature value does not match" in problem.reason
    else:
        assert CHANGED in problem.reason


@pytest.mark.parametrize("recompute_chain", [False, True])
def test_changed_client_column_is_caught(
    log_path: Path, good_log: list[LogRecord], signers: Signers, recompute_chain: bool
) -> None:
    tamper(log_path, "UPDATE records SET client = 'EE/GOV/70000001/other-office' WHERE seq = 5")
    if recompute_chain:
        rechain(log_path)
    problem = first_error(log_path, signers)
    assert problem.seq == 5
    if recompute_chain:
        assert problem.reason.endswith(
            "its client (EE/GOV/70000001/other-office) differs from the one in its signed header "
            "(EE/GOV/70000001/tax-office)"
        )
    else:
        assert CHANGED in problem.reason


def test_changed_response_status_is_caught(
    log_path: Path, good_log: list[LogRecord], signers: Signers
) -> None:
    tamper(log_path, "UPDATE records SET status = 404 WHERE seq = 2")
    rechain(log_path)
    problem = first_error(log_path, signers)
    assert problem.seq == 2
    assert "its status (404) differs from the one in its signed header (200)" in problem.reason


@pytest.mark.parametrize("recompute_chain", [False, True])
def test_changed_signature_is_caught(
    log_path: Path, good_log: list[LogRecord], signers: Signers, recompute_chain: bool
) -> None:
    # A real signature by the right member, but over another message's digest.
    other = make_exchange(signers, 99).request.signature
    tamper(log_path, "UPDATE records SET signature = ? WHERE seq = 4", other)
    if recompute_chain:
        rechain(log_path)
    problem = first_error(log_path, signers)
    assert problem.seq == 4
    expected = "signature does not verify" if recompute_chain else CHANGED
    assert expected in problem.reason


def test_deleted_record_is_a_gap(log_path: Path, good_log: list[LogRecord], signers: Signers) -> None:
    tamper(log_path, "DELETE FROM records WHERE seq = 3")
    report = verify_log_file(log_path, signers.check)
    assert report.records == 2
    assert report.first_error is not None
    assert report.first_error.seq == 4
    assert "record 3 is missing; the log jumps from record 2 to record 4" in report.first_error.reason


def test_deleted_records_with_renumbering_break_the_chain(
    log_path: Path, good_log: list[LogRecord], signers: Signers
) -> None:
    tamper(log_path, "DELETE FROM records WHERE seq IN (3, 4)")
    tamper(log_path, "UPDATE records SET seq = seq - 2 WHERE seq > 4")
    problem = first_error(log_path, signers)
    assert problem.seq == 3
    assert "does not continue the hash chain" in problem.reason


def test_several_deleted_records_are_named(
    log_path: Path, good_log: list[LogRecord], signers: Signers
) -> None:
    tamper(log_path, "DELETE FROM records WHERE seq IN (2, 3, 4)")
    problem = first_error(log_path, signers)
    assert problem.seq == 5
    assert "records 2 to 4 are missing" in problem.reason


def test_swapped_records_break_the_chain(log_path: Path, good_log: list[LogRecord], signers: Signers) -> None:
    # Exchange the two rows' places: every column but seq moves.
    tamper(log_path, "UPDATE records SET seq = -1 WHERE seq = 3")
    tamper(log_path, "UPDATE records SET seq = 3 WHERE seq = 4")
    tamper(log_path, "UPDATE records SET seq = 4 WHERE seq = -1")
    report = verify_log_file(log_path, signers.check)
    assert report.records == 2
    assert report.first_error is not None
    assert report.first_error.seq == 3
    assert report.first_error.message_id == good_log[3].message_id
    assert "does not continue the hash chain" in report.first_error.reason


def test_request_signed_by_another_member_is_refused(log_path: Path, signers: Signers) -> None:
    wrong = make_exchange(signers, 1, request_signer=OTHER_MEMBER.slash())
    with MessageLogStore.open(log_path) as store:
        store.append([wrong.request, wrong.response])
    problem = first_error(log_path, signers)
    assert problem.seq == 1
    assert problem.reason.endswith(
        "was signed by EE/COM/12345678, not by the client's member EE/GOV/70000001"
    )


def test_response_must_be_signed_by_the_provider(signers: Signers) -> None:
    exchange = make_exchange(signers, 1)
    # A valid signature over the right digest, but by the client's member.
    by_client = signers.sign("EE/GOV/70000001", response_digest(exchange.response_header))
    request = LogRecord.place(1, GENESIS_HASH, exchange.request)
    response = LogRecord.place(
        2, request.record_hash, dataclasses.replace(exchange.response, signature=by_client)
    )
    report = verify_records([request, response], signers.check)
    assert report.records == 1
    assert report.first_error is not None
    assert report.first_error.seq == 2
    assert report.first_error.reason.endswith(
        "was signed by EE/GOV/70000001, not by the service provider's member EE/GOV/70000002"
    )


@pytest.mark.parametrize(
    "header, reason",
    [
        (b"not json", "its signed header is not valid JSON"),
        (b'{"protocol":"rest"}', "its signed header is not a valid request header"),
        (None, "its request header is not in canonical form"),
    ],
)
def test_unreadable_headers_are_named(
    log_path: Path, good_log: list[LogRecord], signers: Signers, header: bytes | None, reason: str
) -> None:
    if header is None:
        header = json.dumps(json.loads(good_log[0].header), indent=2).encode()
    tamper(log_path, "UPDATE records SET header = ? WHERE seq = 1", header)
    rechain(log_path)
    problem = first_error(log_path, signers)
    assert problem.seq == 1
    assert reason in problem.reason


def test_response_header_in_a_request_record_is_refused(signers: Signers) -> None:
    exchange = make_exchange(signers, 1)
    mixed = dataclasses.replace(exchange.request, header=exchange.response.header)
    report = verify_records([LogRecord.place(1, GENESIS_HASH, mixed)], signers.check)
    assert report.first_error is not None
    assert "not a valid request header" in report.first_error.reason


def test_a_row_that_is_not_a_record_is_reported(
    log_path: Path, good_log: list[LogRecord], signers: Signers
) -> None:
    tamper(log_path, "UPDATE records SET logged_at = 'yesterday' WHERE seq = 4")
    report = verify_log_file(log_path, signers.check)
    assert report.records == 3
    assert report.first_error is not None
    assert report.first_error.seq == 4
    assert report.first_error.message_id == good_log[3].message_id
    assert "the stored row is not a well-formed record" in report.first_error.reason


def test_a_negative_seq_is_reported_not_raised(
    log_path: Path, good_log: list[LogRecord], signers: Signers
) -> None:
    tamper(log_path, "UPDATE records SET seq = -5 WHERE seq = 1")
    problem = first_error(log_path, signers)
    assert problem.seq == -5
    assert "the stored row is not a well-formed record (seq must be a positive integer)" in problem.reason


def test_chain_must_start_at_genesis(signers: Signers) -> None:
    record = LogRecord.place(1, b"\x01" * 32, make_exchange(signers, 1).request)
    report = verify_records([record], signers.check)
    assert report.first_error is not None
    assert "does not start the hash chain" in report.first_error.reason


def test_records_out_of_order_are_named(signers: Signers) -> None:
    exchange = make_exchange(signers, 1)
    first = LogRecord.place(1, GENESIS_HASH, exchange.request)
    second = LogRecord.place(2, first.record_hash, exchange.response)
    report = verify_records([first, second, first], signers.check)
    assert report.records == 2
    assert report.first_error is not None
    assert report.first_error.seq == 1
    assert "is out of order: it comes after record 2" in report.first_error.reason


def test_signature_checked_at_logging_time(signers: Signers) -> None:
    logged = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    exchange = make_exchange(signers, 1, at=logged)
    record = LogRecord.place(1, GENESIS_HASH, exchange.request)

    def expired_after_2023(jws: str, digest: bytes, at_time: dt.datetime) -> str:
        if at_time >= dt.datetime(2023, 12, 31, tzinfo=dt.UTC):
            raise ValueError("the signer's certificate had expired")
        return "EE/GOV/70000001"

    report = verify_records([record], expired_after_2023)
    assert report.first_error is not None
    assert report.first_error.reason.endswith(
        "signature does not verify: the signer's certificate had expired"
    )


def test_verify_missing_file_raises(tmp_path: Path, signers: Signers) -> None:
    with pytest.raises(LogFileMissing):
        verify_log_file(tmp_path / "messagelog.db", signers.check)
    assert list(tmp_path.iterdir()) == []


def test_report_objects_validate() -> None:
    with pytest.raises(ValueError, match="reason"):
        RecordProblem(1, "m", "")
    with pytest.raises(ValueError, match="records"):
        LogReport(-1, None)
    problem = RecordProblem(2, "m", "record 2 (message m): broken")
    assert LogReport(1, problem).to_dict() == {
        "records": 1,
        "timestamped_records": 0,
        "checkpoints": 0,
        "tree_size": 0,
        "root": None,
        "bodies_omitted": 0,
        "pruned_records": 0,
        "first_error": {"seq": 2, "message_id": "m", "reason": "record 2 (message m): broken"},
    }
