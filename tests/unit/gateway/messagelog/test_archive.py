"""Archives, their verification, and retention, on real log files with real RFC 3161 tokens.

The log built once (``built``) holds, in one folder (``messagelog.db``, ``blobs/``,
``archives/``)::

    records  1-4   exchanges 1, 2   request 1 a blob, response 2 omitted   checkpoint 4
    records  5-6   exchange 3                                               checkpoint 6   archive 1
    records  7-8   exchange 4                                               checkpoint 8
    records  9-10  exchange 5       request 5 the same blob as request 1    checkpoint 10  archive 2
    records 11-12  exchange 6                                               checkpoint 12  archive 3
    records 13-14  exchange 7       not timestamped yet

Each test works on a fresh copy and tampers with it as someone with write access to
the folder could.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.canonical import canonical_json
from core.clock import FixedClock
from gateway.messagelog.archive import (
    GENESIS_ARCHIVE_SHA256,
    ArchiveError,
    Archiver,
    ArchiveReport,
    archive_file_name,
    prune_archived,
    verify_archive_dir,
    write_archive,
)
from gateway.messagelog.errors import LogWriteError
from gateway.messagelog.record import NewRecord
from gateway.messagelog.store import MessageLogStore, default_blob_root
from gateway.messagelog.verify import LogReport, verify_log_file
from tests.unit.gateway.messagelog.helpers import CHECKPOINT_SIGNERS, NOW, Signers, make_exchange, tamper
from tests.unit.gateway.messagelog.tsa import ORIGIN, Pki, TsaIdentity, timestamp_log
from trust.merkle import consistency_proof, inclusion_proof, verify_consistency, verify_inclusion

DAY = 24 * 3600.0
RETENTION = 30 * DAY


@dataclass(frozen=True)
class Folder:
    """A server's data folder: the log, its blobs and its archives."""

    root: Path

    @property
    def log(self) -> Path:
        return self.root / "messagelog.db"

    @property
    def archives(self) -> Path:
        return self.root / "archives"

    def archive(self, index: int) -> Path:
        return sorted(self.archives.glob("*.xwa"), key=lambda p: int(p.name.split("-")[-2]))[index]


def seconds(n: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=n)


def log_exchange(
    folder: Folder,
    signers: Signers,
    number: int,
    at: float,
    *,
    request: str = "inline",
    response: str = "inline",
    same_body_as: int | None = None,
) -> None:
    exchange = make_exchange(signers, same_body_as or number, at=seconds(at))
    records: list[NewRecord] = [
        dataclasses.replace(exchange.request, body_storage=request),  # type: ignore[arg-type]
        dataclasses.replace(exchange.response, body_storage=response),  # type: ignore[arg-type]
    ]
    with MessageLogStore.open(folder.log) as store:
        store.append(records)


def stamp(folder: Folder, pki: Pki, tsa: TsaIdentity, at: float) -> None:
    timestamp_log(folder.log, tsa, [pki.root], seconds(at))


def archive(folder: Folder, at: float) -> Path | None:
    with MessageLogStore.open(folder.log) as store:
        result = write_archive(store, folder.archives, now=seconds(at))
    return None if result is None else result.path


def prune(folder: Folder, at: float, retention_s: float = RETENTION, batch: int = 3) -> tuple[int, int, int]:
    with MessageLogStore.open(folder.log) as store:
        result = prune_archived(store, folder.archives, now=seconds(at), retention_s=retention_s, batch=batch)
    return result.records, result.through_seq, result.blobs_deleted


def check_archives(folder: Folder, signers: Signers, pki: Pki, tsa: TsaIdentity) -> ArchiveReport:
    return verify_archive_dir(
        folder.archives,
        check_signature=signers.check,
        tsa_certificates=[tsa.certificate],
        roots=[pki.root],
        check_checkpoint_signature=CHECKPOINT_SIGNERS.check_checkpoint,
    )


def check_log(folder: Folder, signers: Signers, pki: Pki, tsa: TsaIdentity) -> LogReport:
    return verify_log_file(
        folder.log,
        signers.check,
        tsa_certificates=[tsa.certificate],
        roots=[pki.root],
        check_checkpoint_signature=CHECKPOINT_SIGNERS.check_checkpoint,
    )


@pytest.fixture(scope="session")
def built(
    tmp_path_factory: pytest.TempPathFactory, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> Folder:
    folder = Folder(tmp_path_factory.mktemp("archived"))
    log_exchange(folder, signers, 1, 1, request="blob")
    log_exchange(folder, signers, 2, 2, response="omitted")
    stamp(folder, pki, tsa_identity, 5)
    log_exchange(folder, signers, 3, 70)
    stamp(folder, pki, tsa_identity, 75)
    assert archive(folder, 100) is not None
    log_exchange(folder, signers, 4, 200)
    stamp(folder, pki, tsa_identity, 205)
    log_exchange(folder, signers, 5, 300, request="blob", same_body_as=1)
    stamp(folder, pki, tsa_identity, 305)
    assert archive(folder, 400) is not None
    log_exchange(folder, signers, 6, 500)
    stamp(folder, pki, tsa_identity, 505)
    assert archive(folder, 600) is not None
    log_exchange(folder, signers, 7, 700)
    return folder


@pytest.fixture
def folder(tmp_path: Path, built: Folder) -> Folder:
    copy = Folder(tmp_path / "data")
    shutil.copytree(built.root, copy.root)
    return copy


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


# -- archiving -----------------------------------------------------------------------


def test_archives_verify_and_chain(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    names = [
        archive_file_name(ORIGIN, 1, 6),
        archive_file_name(ORIGIN, 7, 10),
        archive_file_name(ORIGIN, 11, 12),
    ]
    assert names[0] == "EE_GOV_70000001_ss1-1-6.xwa"
    assert sorted(p.name for p in folder.archives.iterdir()) == sorted(names)
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.ok, report.first_error
    assert (report.archives, report.records, report.checkpoints, report.bodies_omitted) == (3, 12, 5, 1)
    assert report.last_seq == 12
    with MessageLogStore.open_readonly(folder.log) as store:
        entries = store.archives()
        assert report.last_record_hash == next(store.iter_records(start_seq=12)).record_hash
    assert [(e.first_seq, e.last_seq, e.file_name) for e in entries] == [
        (1, 6, names[0]),
        (7, 10, names[1]),
        (11, 12, names[2]),
    ]
    manifests = []
    for entry in entries:
        with zipfile.ZipFile(folder.archives / entry.file_name) as bundle:
            manifests.append(json.loads(bundle.read("manifest.json")))
    assert [m["position"] for m in manifests] == [1, 2, 3]
    assert [m["prev_archive_sha256"] for m in manifests] == [
        GENESIS_ARCHIVE_SHA256,
        entries[0].sha256,
        entries[1].sha256,
    ]
    assert report.to_dict()["first_error"] is None


def test_an_archive_holds_every_column_and_the_blob_bodies(folder: Folder) -> None:
    with zipfile.ZipFile(folder.archive(0)) as bundle:
        names = bundle.namelist()
        records = [json.loads(line) for line in bundle.read("records.jsonl").splitlines()]
        checkpoints = [json.loads(line) for line in bundle.read("checkpoints.jsonl").splitlines()]
        blobs = [n for n in names if n.startswith("blobs/")]
        blob_body = bundle.read(blobs[0])
    live_columns = {row[1] for row in rows(folder.log, "PRAGMA table_info(records)")}
    assert set(records[0]) == live_columns
    assert [r["body_storage"] for r in records] == ["blob", "inline", "inline", "omitted", "inline", "inline"]
    assert records[3]["body"] == {"b64": ""}  # an omitted body stays omitted
    assert blobs == [f"blobs/{records[0]['body_blob']}"]
    assert blob_body == make_exchange(Signers(), 1).request.body
    assert [c["size"] for c in checkpoints] == [4, 6]
    assert "token" in checkpoints[0] and "signature" in checkpoints[0]


def test_a_log_with_a_missing_blob_is_not_archived(
    folder: Folder, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    stamp(folder, pki, tsa_identity, 705)
    with MessageLogStore.open(folder.log) as store:
        exchange = make_exchange(Signers(), 9, at=seconds(710))
        stored = store.append([dataclasses.replace(exchange.request, body_storage="blob"), exchange.response])
        digest = hashlib.sha512(stored[0].body).hexdigest()
    stamp(folder, pki, tsa_identity, 715)
    (default_blob_root(folder.log) / digest[:2] / digest).unlink()
    with pytest.raises(
        ArchiveError, match=f"cannot write archive .*-13-16.xwa: its body blob {digest} is missing"
    ):
        archive(folder, 800)
    assert [p.name for p in folder.archives.iterdir() if "-13-" in p.name] == []


def test_records_after_the_last_checkpoint_are_never_archived(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    with MessageLogStore.open_readonly(folder.log) as store:
        assert store.last_seq() == 14
        assert store.archives()[-1].last_seq == 12
    assert archive(folder, 800) is None  # records 13-14 have no checkpoint yet
    stamp(folder, pki, tsa_identity, 805)
    written = archive(folder, 900)
    assert written is not None and written.name == archive_file_name(ORIGIN, 13, 14)
    assert check_archives(folder, signers, pki, tsa_identity).records == 14


def test_an_archive_ends_at_a_checkpoint_within_max_records(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    stamp(folder, pki, tsa_identity, 705)
    log_exchange(folder, signers, 8, 800)
    stamp(folder, pki, tsa_identity, 805)
    with MessageLogStore.open(folder.log) as store:
        first = write_archive(store, folder.archives, now=seconds(900), max_records=3)
        second = write_archive(store, folder.archives, now=seconds(900), max_records=3)
        assert write_archive(store, folder.archives, now=seconds(900), max_records=3) is None
    assert first is not None and (first.first_seq, first.last_seq, first.position) == (13, 14, 4)
    assert second is not None and (second.first_seq, second.last_seq, second.position) == (15, 16, 5)
    assert check_archives(folder, signers, pki, tsa_identity).archives == 5


@pytest.mark.parametrize("index", [0, 1, 2])
def test_one_changed_byte_in_an_archive_is_named(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity, index: int
) -> None:
    path = folder.archive(index)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.first_error is not None
    assert report.first_error.archive == path.name
    assert path.name in report.first_error.reason


def test_a_removed_middle_archive_is_named(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    first, middle, last = folder.archive(0), folder.archive(1), folder.archive(2)
    middle.unlink()
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.first_error is not None
    assert report.first_error.reason == f"archive 2 is missing: {last.name} (archive 3) follows {first.name}"
    assert report.first_error.archive == last.name


def test_a_renamed_or_reordered_archive_is_named(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    middle, last = folder.archive(1), folder.archive(2)
    swapped = middle.read_bytes()
    middle.write_bytes(last.read_bytes())
    last.write_bytes(swapped)
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.first_error is not None
    assert "was renamed: its manifest makes it" in report.first_error.reason


def test_a_replaced_archive_is_named_by_the_next_one(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    """Archive 1 rewritten with a recomputed manifest: sound in itself, not the one archive 2 chained."""
    path = folder.archive(0)
    rebuild(path, created_at="2025-03-04T10:01:41.000000Z")
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.first_error is not None and report.first_error.archive == path.name
    assert f"archive {path.name} was changed or replaced" in report.first_error.reason
    assert f"the next archive {folder.archive(1).name} records" in report.first_error.reason


def rebuild(
    path: Path,
    *,
    drop: str | None = None,
    replace: dict[str, bytes] | None = None,
    **manifest_changes: object,
) -> None:
    """Rewrite an archive as an attacker who knows the format would: members dropped or
    replaced, the manifest recomputed to match."""
    with zipfile.ZipFile(path) as bundle:
        members = {name: bundle.read(name) for name in bundle.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    if drop is not None:
        del members[drop]
    members.update(replace or {})
    manifest.update(manifest_changes)
    manifest["blobs"] = sum(name.startswith("blobs/") for name in members)
    for name in ("records.jsonl", "checkpoints.jsonl", "paths.jsonl"):
        manifest["members"][name] = {
            "size": len(members[name]),
            "sha256": hashlib.sha256(members[name]).hexdigest(),
        }
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
        bundle.writestr("manifest.json", canonical_json(manifest))


def test_a_blob_missing_from_the_last_archive_is_named(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    path = folder.archive(1)  # records 7-10; record 9's body is a blob
    folder.archive(2).unlink()
    with zipfile.ZipFile(path) as bundle:
        blob = next(n for n in bundle.namelist() if n.startswith("blobs/"))
    rebuild(path, drop=blob)
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.first_error is not None and report.first_error.seq == 9
    digest = blob.removeprefix("blobs/")
    assert report.first_error.reason == (
        f"archive {path.name}: record 9 (message 00000001-6c2e-4d1a-9f00-msg): "
        f"its body blob {digest} is missing from the archive"
    )
    assert (report.archives, report.records) == (1, 6)


def test_a_changed_blob_in_the_last_archive_is_named(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    folder.archive(2).unlink()
    path = folder.archive(1)  # now the last one, so no successor vouches for its SHA-256
    with zipfile.ZipFile(path) as bundle:
        blob = next(n for n in bundle.namelist() if n.startswith("blobs/"))
    rebuild(path, replace={blob: b'{"person":"1","query":"criminal record"}'})
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.first_error is not None and report.first_error.seq == 9
    assert (
        f"its body blob {blob.removeprefix('blobs/')} does not match: it was changed"
        in report.first_error.reason
    )


def test_a_changed_record_in_the_last_archive_is_named(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    path = folder.archive(2)
    with zipfile.ZipFile(path) as bundle:
        lines = bundle.read("records.jsonl").splitlines(keepends=True)
    record = json.loads(lines[0])
    record["status"] = 500
    lines[0] = canonical_json(record) + b"\n"  # a request with a status is not a record
    rebuild(path, replace={"records.jsonl": b"".join(lines)})
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.first_error is not None and report.first_error.seq == 11
    assert "record 11" in report.first_error.reason and path.name in report.first_error.reason


def test_an_empty_or_missing_folder(
    tmp_path: Path, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    empty = Folder(tmp_path)
    empty.archives.mkdir()
    assert check_archives(empty, signers, pki, tsa_identity) == ArchiveReport(0, 0, None)
    gone = check_archives(Folder(tmp_path / "absent"), signers, pki, tsa_identity)
    assert gone.first_error is not None and "is not a folder of archives" in gone.first_error.reason


# -- retention -----------------------------------------------------------------------


def test_retention_removes_only_archived_records_older_than_the_limit(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    # Thirty days after second 30: records 1-4 (seconds 1-2) are older, 5-6 (second 70) not.
    assert prune(folder, RETENTION + 30) == (4, 4, 0)
    assert [r[0] for r in rows(folder.log, "SELECT seq FROM records ORDER BY seq")] == list(range(5, 15))
    # A year later everything is old, but only what is archived (1-12) goes.
    assert prune(folder, 365 * DAY) == (8, 12, 1)
    assert [r[0] for r in rows(folder.log, "SELECT seq FROM records ORDER BY seq")] == [13, 14]
    assert prune(folder, 366 * DAY) == (0, 12, 0)
    assert len(rows(folder.log, "SELECT seq FROM pruned_leaves")) == 12
    assert rows(folder.log, "SELECT seq FROM record_paths") == []


def test_a_log_with_pruned_records_still_verifies_with_its_proofs(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    with MessageLogStore.open_readonly(folder.log) as store:
        old_checkpoint = store.checkpoints()[0]  # size 4
        hash_of_6 = next(store.iter_records(start_seq=6)).record_hash
    assert prune(folder, RETENTION + 100) == (6, 6, 0)
    report = check_log(folder, signers, pki, tsa_identity)
    assert report.ok, report.first_error
    assert (report.records, report.pruned_records, report.checkpoints, report.timestamped_records) == (
        8,
        6,
        5,
        6,
    )
    with MessageLogStore.open_readonly(folder.log) as store:
        assert store.prune_horizon() == (6, hash_of_6)
        latest = store.last_checkpoint()
        assert latest is not None and latest.size == 12
        leaves = store.leaf_hashes(latest.size)
        record = next(store.iter_records(start_seq=9))
        verify_inclusion(record.leaf_hash, 8, 12, inclusion_proof(8, leaves), latest.root)
        assert store.record_path(9) is not None
        verify_consistency(4, 12, old_checkpoint.root, latest.root, consistency_proof(4, leaves))
    # The log goes on: new records continue the chain and the tree, and are timestamped.
    stamp(folder, pki, tsa_identity, RETENTION + 200)
    log_exchange(folder, signers, 8, RETENTION + 300)
    stamp(folder, pki, tsa_identity, RETENTION + 305)
    report = check_log(folder, signers, pki, tsa_identity)
    assert report.ok, report.first_error
    assert (report.records, report.tree_size) == (10, 16)
    assert check_archives(folder, signers, pki, tsa_identity).ok


def test_pruning_every_record_lets_the_log_continue(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    stamp(folder, pki, tsa_identity, 705)
    assert archive(folder, 800) is not None
    assert prune(folder, 365 * DAY) == (14, 14, 1)
    with MessageLogStore.open(folder.log) as store:
        assert store.count() == 0 and store.last_seq() == 14
        exchange = make_exchange(signers, 9, at=seconds(365 * DAY))
        assert [r.seq for r in store.append([exchange.request, exchange.response])] == [15, 16]
    report = check_log(folder, signers, pki, tsa_identity)
    assert report.ok, report.first_error
    assert (report.records, report.pruned_records) == (2, 14)


def test_removed_records_cannot_be_hidden(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    prune(folder, RETENTION + 100)
    saved = folder.root / "saved.db"
    shutil.copyfile(folder.log, saved)
    tamper(folder.log, "DELETE FROM prune_horizon")
    report = check_log(folder, signers, pki, tsa_identity)
    assert report.first_error is not None
    assert "records 1 to 6 are missing" in report.first_error.reason
    shutil.copyfile(saved, folder.log)
    tamper(folder.log, "UPDATE prune_horizon SET record_hash = zeroblob(32)")
    report = check_log(folder, signers, pki, tsa_identity)
    assert report.first_error is not None and report.first_error.seq == 7
    assert "does not continue the hash chain" in report.first_error.reason
    shutil.copyfile(saved, folder.log)
    tamper(folder.log, "UPDATE pruned_leaves SET leaf_hash = zeroblob(32) WHERE seq = 3")
    report = check_log(folder, signers, pki, tsa_identity)
    assert report.first_error is not None
    assert (
        "checkpoint 4: the Merkle root over records 1 to 4 is not the checkpoint's root"
        in report.first_error.reason
    )


def test_blobs_used_only_by_removed_records_are_deleted(folder: Folder) -> None:
    blob_root = default_blob_root(folder.log)
    digest = rows(folder.log, "SELECT body_blob FROM records WHERE seq = 1")[0][0]
    assert isinstance(digest, str)
    assert prune(folder, RETENTION + 100) == (6, 6, 0)  # record 9 still uses the same body
    assert (blob_root / digest[:2] / digest).is_file()
    assert prune(folder, 365 * DAY) == (6, 12, 1)
    assert not (blob_root / digest[:2] / digest).exists()
    assert rows(folder.log, "SELECT * FROM blob_gc") == []


def test_a_changed_or_missing_archive_keeps_its_records(folder: Folder) -> None:
    path = folder.archive(0)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(
        ArchiveError, match=f"archive {path.name} was changed since it was written; records 1 to 4 stay"
    ):
        prune(folder, RETENTION + 30)
    path.unlink()
    with pytest.raises(ArchiveError, match=f"archive {path.name} is missing from"):
        prune(folder, RETENTION + 30)
    assert len(rows(folder.log, "SELECT seq FROM records")) == 14


def test_pruning_refuses_records_not_archived(folder: Folder) -> None:
    with (
        MessageLogStore.open(folder.log) as store,
        pytest.raises(LogWriteError, match="records after 12 are not archived"),
    ):
        store.prune_records(13)


# -- crashes -------------------------------------------------------------------------


def test_a_crash_after_the_archive_is_written_loses_nothing(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp(folder, pki, tsa_identity, 705)

    def crash(self: MessageLogStore, entry: object) -> None:
        raise LogWriteError("power lost")

    with monkeypatch.context() as patched:
        patched.setattr(MessageLogStore, "add_archive", crash)
        with pytest.raises(ArchiveError, match="was written but cannot be noted in the log: power lost"):
            archive(folder, 800)
    unnoted = folder.archives / archive_file_name(ORIGIN, 13, 14)
    assert unnoted.is_file()
    assert prune(folder, 365 * DAY) == (12, 12, 1)  # the unnoted archive is not relied on
    assert len(rows(folder.log, "SELECT seq FROM records")) == 2
    # Meanwhile a new checkpoint: the next round writes 13-16, and the leftover 13-14 goes.
    log_exchange(folder, signers, 8, 710)
    stamp(folder, pki, tsa_identity, 715)
    written = archive(folder, 900)
    assert written is not None and written.name == archive_file_name(ORIGIN, 13, 16)
    assert not unnoted.exists()
    report = check_archives(folder, signers, pki, tsa_identity)
    assert report.ok, report.first_error
    assert report.records == 16


def test_a_crash_between_archive_and_prune_loses_nothing(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: MessageLogStore, through_seq: int) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patched:
        patched.setattr(MessageLogStore, "prune_records", crash)
        with pytest.raises(sqlite3.OperationalError):
            prune(folder, 365 * DAY)
    assert len(rows(folder.log, "SELECT seq FROM records")) == 14
    assert check_log(folder, signers, pki, tsa_identity).ok
    assert prune(folder, 365 * DAY) == (12, 12, 1)
    assert check_log(folder, signers, pki, tsa_identity).ok


def test_leftover_temporary_files_are_removed(folder: Folder, pki: Pki, tsa_identity: TsaIdentity) -> None:
    stamp(folder, pki, tsa_identity, 705)
    leftover = folder.archives / f".{archive_file_name(ORIGIN, 13, 14)}.tmp"
    leftover.write_bytes(b"half an archive")
    foreign = folder.archives / "notes.txt"
    foreign.write_text("kept")
    assert archive(folder, 800) is not None
    assert not leftover.exists() and foreign.exists()


# -- the asyncio shell ---------------------------------------------------------------


async def test_archiver_archives_then_prunes(
    folder: Folder, signers: Signers, pki: Pki, tsa_identity: TsaIdentity
) -> None:
    stamp(folder, pki, tsa_identity, 705)
    clock = FixedClock(seconds(RETENTION + 100))
    archiver = Archiver(folder.log, folder.archives, clock=clock, interval_s=3600, retention_s=RETENTION)
    with pytest.raises(ArchiveError, match="not running"):
        await archiver.archive_now()
    await archiver.start()
    try:
        await first_round(folder)
        assert archiver.last_error is None
        assert await archiver.archive_now() is None
        clock.set(seconds(365 * DAY))
        result = await archiver.prune_now()
        assert (result.records, result.through_seq) == (8, 14)
    finally:
        await archiver.close()
        await archiver.close()
    assert [p.name for p in sorted(folder.archives.glob("*-13-14.xwa"))] == [
        archive_file_name(ORIGIN, 13, 14)
    ]
    assert check_log(folder, signers, pki, tsa_identity).pruned_records == 14
    with pytest.raises(ValueError, match="interval_s"):
        Archiver(folder.log, folder.archives, clock=clock, interval_s=0)


async def first_round(folder: Folder) -> None:
    """Wait until the round run at start has archived 13-14 and pruned 1-6."""
    for _ in range(200):
        with MessageLogStore.open_readonly(folder.log) as store:
            if store.prune_horizon()[0] == 6 and store.archives()[-1].last_seq == 14:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the first round did not run")
