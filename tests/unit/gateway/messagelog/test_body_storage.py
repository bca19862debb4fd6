"""Body logging modes: inline, blob (content-addressed, beside the log) and omitted (metadata only).

Real log files, real signed headers; each tamper is made the way someone with write access
to the data folder could, and must be named.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from core.canonical import canonical_json, response_digest
from core.messages import RequestHeader, ResponseHeader, sha512
from gateway.messagelog.blobs import body_digest
from gateway.messagelog.record import (
    DEFAULT_INLINE_LIMIT_BYTES,
    MAX_INLINE_LIMIT_BYTES,
    BodyPolicy,
    LogRecord,
    NewRecord,
    encode_record,
)
from gateway.messagelog.store import MessageLogStore, default_blob_root
from gateway.messagelog.verify import verify_log_file
from tests.unit.gateway.messagelog.helpers import (
    CLIENT,
    NOW,
    SERVICE,
    Exchange,
    Signers,
    make_exchange,
    read_column,
    rechain,
    tamper,
)

LARGE = b'{"document":"' + b"A" * (DEFAULT_INLINE_LIMIT_BYTES + 1) + b'"}'


def with_response_body(signers: Signers, exchange: Exchange, body: bytes) -> NewRecord:
    """The exchange's response, answering ``body`` instead, signed by the provider."""
    header = dataclasses.replace(exchange.response_header, body_sha512=sha512(body), body_size=len(body))
    return dataclasses.replace(
        exchange.response,
        header=canonical_json(header.to_dict()),
        body=body,
        signature=signers.sign(SERVICE.member.slash(), response_digest(header)),
    )


def blob_files(log_path: Path) -> list[Path]:
    root = default_blob_root(log_path)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- the policy ----------------------------------------------------------------------


def test_policy_decides_by_size_and_by_subsystem() -> None:
    policy = BodyPolicy(inline_limit_bytes=100, omit_for=frozenset({CLIENT.slash()}))
    other = "EE/GOV/70000003/archive"
    assert policy.decide(other, 100) == "inline"
    assert policy.decide(other, 101) == "blob"
    assert policy.decide(CLIENT.slash(), 10) == "omitted"
    # On the provider's server the subsystem that asks for minimisation is the service's.
    provider_side = BodyPolicy(omit_for=frozenset({SERVICE.provider.slash()}))
    assert provider_side.decide(other, 10, provider=SERVICE.provider.slash()) == "omitted"
    assert BodyPolicy().inline_limit_bytes == 256 * 1024


def test_policy_never_keeps_more_than_the_caller_asked(signers: Signers) -> None:
    record = make_exchange(signers, 1).request
    policy = BodyPolicy()
    assert policy.apply(record).body_storage == "inline"
    assert policy.apply(dataclasses.replace(record, body_storage="blob")).body_storage == "blob"
    assert policy.apply(dataclasses.replace(record, body_storage="omitted")).body_storage == "omitted"
    omitting = BodyPolicy(omit_for=frozenset({CLIENT.slash()}))
    assert omitting.apply(dataclasses.replace(record, body_storage="blob")).body_storage == "omitted"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inline_limit_bytes": -1}, "inline_limit_bytes"),
        ({"inline_limit_bytes": MAX_INLINE_LIMIT_BYTES + 1}, "inline_limit_bytes"),
        ({"inline_limit_bytes": True}, "inline_limit_bytes"),
        ({"omit_for": {"EE/GOV/70000001/tax-office"}}, "frozenset"),
        ({"omit_for": frozenset({"EE/GOV"})}, "omit_for"),
        ({"omit_for": frozenset({"EE/GOV/70000001/tax-office/"})}, "omit_for"),
    ],
)
def test_policy_validates(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BodyPolicy(**kwargs)  # type: ignore[arg-type]


def test_storage_is_part_of_the_encoding(signers: Signers) -> None:
    record = make_exchange(signers, 1).request
    encodings = {
        encode_record(1, dataclasses.replace(record, body_storage=storage))
        for storage in ("inline", "blob", "omitted")
    }
    assert len(encodings) == 3
    assert json.loads(encode_record(1, record))["body_storage"] == "inline"
    with pytest.raises(ValueError, match="body_storage"):
        dataclasses.replace(record, body_storage="elsewhere")  # type: ignore[arg-type]


# -- blob ----------------------------------------------------------------------------


def test_a_large_body_goes_to_the_blob_store_and_reads_back(log_path: Path, signers: Signers) -> None:
    exchange = make_exchange(signers, 1)
    response = with_response_body(signers, exchange, LARGE)
    with MessageLogStore.open(log_path) as store:
        stored = store.append([exchange.request, response])
        assert [r.body_storage for r in stored] == ["inline", "blob"]
        assert stored[1].body == LARGE
    digest = body_digest(LARGE)
    assert read_column(log_path, "body", 2) == b""  # the row holds the digest, not the body
    assert read_column(log_path, "body_blob", 2) == digest
    assert read_column(log_path, "body_blob", 1) is None
    assert blob_files(log_path) == [default_blob_root(log_path) / digest[:2] / digest]
    with MessageLogStore.open_readonly(log_path) as store:
        assert [r.body for r in store.iter_records()] == [exchange.request.body, LARGE]
        assert store.find(exchange.request.message_id)[1].body_storage == "blob"
    report = verify_log_file(log_path, signers.check)
    assert report.ok, report.first_error
    assert report.records == 2
    assert report.bodies_omitted == 0


def test_identical_bodies_share_one_blob(log_path: Path, signers: Signers) -> None:
    with MessageLogStore.open(log_path, body_policy=BodyPolicy(inline_limit_bytes=0)) as store:
        first, again = make_exchange(signers, 1), make_exchange(signers, 1, at=NOW + dt.timedelta(seconds=9))
        store.append([first.request, first.response])
        store.append([again.request, again.response])
    assert len(blob_files(log_path)) == 2  # one request body, one response body, for four records
    assert verify_log_file(log_path, signers.check).ok


@pytest.fixture
def blob_log(log_path: Path, signers: Signers) -> str:
    """Records 1-2 inline, 3-4 as blobs (asked for by the caller); the digest of record 4's body."""
    one, two = make_exchange(signers, 1), make_exchange(signers, 2)
    with MessageLogStore.open(log_path) as store:
        store.append([one.request, one.response])
        store.append([dataclasses.replace(r, body_storage="blob") for r in (two.request, two.response)])
    digest = read_column(log_path, "body_blob", 4)
    assert isinstance(digest, str)
    return digest


def test_a_changed_blob_is_named(log_path: Path, signers: Signers, blob_log: str) -> None:
    path = default_blob_root(log_path) / blob_log[:2] / blob_log
    path.write_bytes(path.read_bytes().replace(b"Tallinn", b"Tartu!!"))
    report = verify_log_file(log_path, signers.check)
    assert report.records == 3
    assert report.first_error is not None and report.first_error.seq == 4
    assert f"record 4 (message 00000002-6c2e-4d1a-9f00-msg): its body blob {blob_log} does not match" in (
        report.first_error.reason
    )


def test_a_missing_blob_is_named(log_path: Path, signers: Signers, blob_log: str) -> None:
    (default_blob_root(log_path) / blob_log[:2] / blob_log).unlink()
    report = verify_log_file(log_path, signers.check)
    assert report.records == 3
    assert report.first_error is not None
    assert report.first_error.reason == (
        f"record 4 (message 00000002-6c2e-4d1a-9f00-msg): its body blob {blob_log} is missing"
    )


def test_a_record_pointed_at_another_blob_is_named(log_path: Path, signers: Signers, blob_log: str) -> None:
    other = read_column(log_path, "body_blob", 3)
    tamper(log_path, "UPDATE records SET body_blob = ? WHERE seq = 4", other)
    report = verify_log_file(log_path, signers.check)
    assert report.first_error is not None and report.first_error.seq == 4
    assert "body does not match the SHA-512 in its signed header" in report.first_error.reason


def test_a_blob_reference_that_leaves_the_store_is_refused(
    log_path: Path, signers: Signers, blob_log: str
) -> None:
    tamper(log_path, "UPDATE records SET body_blob = '../../../etc/passwd' WHERE seq = 4")
    report = verify_log_file(log_path, signers.check)
    assert report.first_error is not None and report.first_error.seq == 4
    assert "its body blob reference is damaged" in report.first_error.reason


def test_moving_a_body_between_inline_and_blob_breaks_the_record_hash(
    log_path: Path, signers: Signers, blob_log: str
) -> None:
    body = read_column(log_path, "body", 1)
    tamper(
        log_path,
        "UPDATE records SET body_storage = 'blob', body_blob = ?, body = x'' WHERE seq = 1",
        hashlib.sha512(body).hexdigest(),  # type: ignore[arg-type]
    )
    with MessageLogStore.open(log_path) as store:
        store.blobs.put(body)  # type: ignore[arg-type]
    report = verify_log_file(log_path, signers.check)
    assert report.first_error is not None and report.first_error.seq == 1
    assert "its content does not match its record hash" in report.first_error.reason


# -- omitted -------------------------------------------------------------------------


@pytest.fixture
def omitted_log(log_path: Path, signers: Signers) -> Exchange:
    """Two exchanges of CLIENT, a subsystem whose bodies the log must not keep."""
    policy = BodyPolicy(omit_for=frozenset({CLIENT.slash()}))
    exchanges = [make_exchange(signers, n, at=NOW + dt.timedelta(seconds=n)) for n in (1, 2)]
    with MessageLogStore.open(log_path, body_policy=policy) as store:
        for exchange in exchanges:
            store.append([exchange.request, exchange.response])
    return exchanges[0]


def test_an_omitted_body_is_not_kept_but_still_proven(
    log_path: Path, signers: Signers, omitted_log: Exchange
) -> None:
    assert read_column(log_path, "body", 1) == b""
    assert read_column(log_path, "body_storage", 1) == "omitted"
    assert blob_files(log_path) == []
    with MessageLogStore.open_readonly(log_path) as store:
        records = list(store.iter_records())
    assert all(r.body == b"" and r.body_storage == "omitted" and not r.body_kept for r in records)
    report = verify_log_file(log_path, signers.check)
    assert report.ok, report.first_error
    assert (report.records, report.bodies_omitted) == (4, 4)
    # The body kept by the client system is proven by the signed header the log holds.
    header = RequestHeader.from_dict(json.loads(records[0].header))
    assert header.body_sha512 == sha512(omitted_log.request.body)
    assert header.body_size == len(omitted_log.request.body)
    response_header = ResponseHeader.from_dict(json.loads(records[1].header))
    assert response_header.body_sha512 != sha512(b'{"person":"1","address":"Tartu"}')


def test_hiding_a_kept_body_as_omitted_is_named(log_path: Path, signers: Signers) -> None:
    exchange = make_exchange(signers, 1)
    with MessageLogStore.open(log_path) as store:
        store.append([exchange.request, exchange.response])
    tamper(log_path, "UPDATE records SET body_storage = 'omitted', body = x'' WHERE seq = 2")
    report = verify_log_file(log_path, signers.check)
    assert report.first_error is not None and report.first_error.seq == 2
    assert "its content does not match its record hash" in report.first_error.reason
    # With the chain recomputed, the leaf no longer is the one logged (and checkpointed).
    rechain(log_path)
    with MessageLogStore.open_readonly(log_path) as store:
        hidden = store.find(exchange.request.message_id)[1]
    assert hidden.leaf_hash != LogRecord.place(2, hidden.prev_hash, exchange.response).leaf_hash


def test_an_omitted_record_must_hold_no_body(log_path: Path, signers: Signers, omitted_log: Exchange) -> None:
    tamper(log_path, "UPDATE records SET body = x'7b7d' WHERE seq = 3")
    report = verify_log_file(log_path, signers.check)
    assert report.first_error is not None and report.first_error.seq == 3
    assert "a record whose body was omitted holds no body" in report.first_error.reason
