"""Evidence containers: exported from a real log, verified offline with the anchor alone.

Every tamper of a good container is refused with the step of the checklist named; the
good container is never reported bad.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import shutil
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.messagelog.evidence import EvidenceError, build_evidence
from gateway.messagelog.store import MessageLogStore
from tests.unit.gateway.messagelog.federation import (
    CLIENT,
    ORIGIN,
    SERVICE,
    T0,
    TSA_NAME,
    Federation,
    LogFacts,
    exchange,
    federation,
    write_log,
)
from trust.evidence import (
    CheckpointFile,
    EvidenceInvalid,
    verify_consistency_files,
    verify_evidence,
)
from trust.keys import generate_private_key

EXPORTED = T0 + dt.timedelta(days=400)  # years later, long after every certificate's OCSP response


@pytest.fixture(scope="module")
def fed() -> Federation:
    return federation()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, fed: Federation) -> LogFacts:
    return write_log(tmp_path_factory.mktemp("evidence") / "messagelog.db", fed)


def export(path: Path, message_id: str) -> bytes:
    with MessageLogStore.open_readonly(path) as store:
        return build_evidence(store, message_id, now=EXPORTED)


@pytest.fixture(scope="module")
def container(good: LogFacts) -> bytes:
    """The evidence of msg-3: records 5 and 6 under serial 7, checkpoint 6 under serial 8."""
    return export(good.path, "msg-3")


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def pack(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def changed(data: bytes, name: str, change: Callable[[bytes], bytes]) -> bytes:
    files = members(data)
    files[name] = change(files[name])
    return pack(files)


def edit_json(change: Callable[[dict[str, object]], None]) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        obj = json.loads(raw)
        change(obj)
        return json.dumps(obj).encode()

    return apply


def replace_with(value: object) -> Callable[[bytes], bytes]:
    return lambda _: json.dumps(value).encode()


def flip_at(at: int) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        index = at % len(raw)
        return raw[:index] + bytes([raw[index] ^ 0x01]) + raw[index + 1 :]

    return apply


def refused(data: bytes, fed: Federation, step: int) -> str:
    with pytest.raises(EvidenceInvalid) as caught:
        verify_evidence(data, fed.anchor())
    assert caught.value.step == step, str(caught.value)
    return caught.value.reason


# -- the good container ---------------------------------------------------------------------


def test_the_container_holds_what_the_format_says(container: bytes) -> None:
    files = members(container)
    assert sorted(files) == [
        "checkpoint.json",
        "globalconf/7.jws",
        "globalconf/8.jws",
        "manifest.json",
        "proofs.json",
        "records/5.body",
        "records/5.json",
        "records/6.body",
        "records/6.json",
    ]
    manifest = json.loads(files["manifest.json"])
    assert manifest == {
        "format": "xweg-evidence/1",
        "message_id": "msg-3",
        "origin": ORIGIN.slash(),
        "exported_at": "2027-03-17T09:00:00.000000Z",
        "records": [5, 6],
        "globalconf": {"records": {"5": 7, "6": 7}, "checkpoint": 8},
    }
    record = json.loads(files["records/5.json"])
    assert record["direction"] == "request" and record["client"] == CLIENT.slash()
    assert base64.b64decode(record["ocsp"])
    proofs = json.loads(files["proofs.json"])
    assert proofs["6"]["index"] == 5 and proofs["6"]["tree_size"] == 6
    assert CheckpointFile.from_json(files["checkpoint.json"]).checkpoint.size == 6


def test_a_good_container_verifies_offline_with_the_anchor_alone(container: bytes, fed: Federation) -> None:
    report = verify_evidence(container, fed.anchor())
    assert report.message_id == "msg-3"
    assert report.client == f"SUBSYSTEM:{CLIENT.slash()}"
    assert report.service == f"SERVICE:{SERVICE.slash()}"
    assert report.provider == "NRW/GOV/057"
    assert (report.method, report.path) == ("POST", "/anzeigen")
    assert (report.request_seq, report.response_seq, report.response_status) == (5, 6, 201)
    assert report.request_signer.member == "NRW/MUN/05774032"
    assert report.request_signer.serial == format(fed.client.certificate.serial_number, "x")
    assert report.response_signer is not None and report.response_signer.member == "NRW/GOV/057"
    assert report.checkpoint_signer.member == "NRW/GOV/057"
    assert (report.origin, report.tree_size, report.tsa) == (ORIGIN.slash(), 6, TSA_NAME)
    assert report.globalconf_serials == (7, 8)
    text = report.describe()
    assert text.startswith(
        "SUBSYSTEM:NRW/MUN/05774032/gewerbeamt sent a POST /anzeigen request "
        "(message msg-3, 52 bytes, SHA-512 "
    )
    assert "to SERVICE:NRW/GOV/057/arbeitsschutz/gewerbeanzeige at 2026-02-10T09:04:50.000000Z" in text
    assert (
        "the provider answered HTTP 201 (31 bytes) at 2026-02-10T09:04:50.250000Z, signed by NRW/GOV/057"
        in text
    )
    assert (
        "Both records are in the log of NRW/GOV/057/ss1 at positions 5 and 6 of a tree of 6 records" in text
    )
    assert f"{TSA_NAME} timestamped at 2026-02-10T09:05:10.000000Z" in text
    assert "global configuration serials 7 and 8" in text
    assert json.loads(json.dumps(report.to_dict()))["response"]["status"] == 201


def test_every_exchange_of_the_log_verifies(good: LogFacts, fed: Federation) -> None:
    for number in range(1, 6):
        report = verify_evidence(export(good.path, f"msg-{number}"), fed.anchor())
        assert report.tree_size == (6 if number <= 3 else 10)


# -- what cannot be exported --------------------------------------------------------------------


def test_unknown_and_untimestamped_messages_are_refused(
    tmp_path: Path, good: LogFacts, fed: Federation
) -> None:
    with pytest.raises(EvidenceError, match="no record of message msg-404"):
        export(good.path, "msg-404")
    path = tmp_path / "messagelog.db"
    shutil.copyfile(good.path, path)
    with MessageLogStore.open(path) as store:
        store.append(list(exchange(fed, 6, T0 + dt.timedelta(seconds=500))))
    with pytest.raises(
        EvidenceError, match="record 12 of message msg-6 is not yet covered by a timestamped checkpoint"
    ):
        export(path, "msg-6")
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM globalconf")
    connection.commit()
    connection.close()
    with pytest.raises(EvidenceError, match="kept no global configuration in force"):
        export(path, "msg-1")


# -- tampered containers --------------------------------------------------------------------------


def test_a_changed_body_byte_is_refused(container: bytes, fed: Federation) -> None:
    reason = refused(changed(container, "records/5.body", flip_at(3)), fed, 3)
    assert reason == "record 5: its body does not match the SHA-512 and size in its signed header"


@pytest.mark.parametrize(
    "field, value, step",
    [
        ("client", "NRW/MUN/05711000/gewerbeamt", 3),
        ("logged_at", "2026-02-10T09:04:51.000000Z", 3),
        ("status", 200, 3),
        ("record_hash", "00" * 32, 3),
        ("prev_hash", "11" * 32, 3),
    ],
)
def test_a_changed_record_column_is_refused(
    container: bytes, fed: Federation, field: str, value: object, step: int
) -> None:
    name = "records/6.json" if field == "status" else "records/5.json"

    def change(obj: dict[str, object]) -> None:
        obj[field] = value

    refused(changed(container, name, edit_json(change)), fed, step)


def test_every_single_byte_change_of_a_record_json_is_refused(container: bytes, fed: Federation) -> None:
    raw = members(container)["records/5.json"]
    encoded = [(raw.index(b'"ocsp":'), raw.index(b'"prev_hash":')), (raw.index(b'"signature":'), len(raw))]
    for at in range(len(raw)):
        if any(lo <= at < hi for lo, hi in encoded) and at % 10:
            continue  # long base64 and JWS texts: every tenth byte
        with pytest.raises(EvidenceInvalid):
            verify_evidence(changed(container, "records/5.json", flip_at(at)), fed.anchor())


def test_a_changed_checkpoint_is_refused(container: bytes, fed: Federation) -> None:
    def other_root(obj: dict[str, object]) -> None:
        body = json.loads(str(obj["body"]))
        body["root"] = "ab" * 32
        obj["body"] = json.dumps(body, sort_keys=True, separators=(",", ":"))

    reason = refused(changed(container, "checkpoint.json", edit_json(other_root)), fed, 5)
    assert reason.startswith("checkpoint 6 of NRW/GOV/057/ss1: its signature does not verify")
    # Every byte of what the checkpoint states and of its signature.  (The certificates a
    # CMS token or an OCSP response carries outside their signed parts are not evidence:
    # the verifier takes the TSA and responder certificates from global configuration.)
    raw = members(container)["checkpoint.json"]
    unsigned = (raw.index(b'"signer_ocsp":'), raw.index(b'"tsa":'))
    signature = raw.index(b'"signature":')
    for at in range(len(raw)):
        sampled = at % 5 == 0 or not signature <= at < unsigned[0]  # the certificate in the JWS: sampled
        if sampled and not unsigned[0] <= at < unsigned[1]:
            with pytest.raises(EvidenceInvalid):
                verify_evidence(changed(container, "checkpoint.json", flip_at(at)), fed.anchor())


def test_a_changed_token_is_refused(container: bytes, fed: Federation, good: LogFacts) -> None:
    def flip_token(obj: dict[str, object]) -> None:
        token = base64.b64decode(str(obj["token"]))
        obj["token"] = base64.b64encode(flip_at(len(token) - 20)(token)).decode()

    reason = refused(changed(container, "checkpoint.json", edit_json(flip_token)), fed, 6)
    assert "its timestamp does not verify" in reason

    def replay(obj: dict[str, object]) -> None:  # the token of checkpoint 10 onto checkpoint 6
        other = good.checkpoints[1]
        obj["token"] = base64.b64encode(other.token).decode()
        obj["gen_time"] = other.gen_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    reason = refused(changed(container, "checkpoint.json", edit_json(replay)), fed, 6)
    assert "timestamp token is for another message" in reason


def test_a_changed_proof_is_refused(container: bytes, fed: Federation) -> None:
    raw = json.loads(members(container)["proofs.json"])
    for seq in ("5", "6"):
        path = raw[seq]["path"]
        for i in range(len(path)):
            for at in range(0, 64, 5):
                bad = json.loads(json.dumps(raw))
                digit = "0" if path[i][at] != "0" else "1"
                bad[seq]["path"][i] = path[i][:at] + digit + path[i][at + 1 :]
                reason = refused(changed(container, "proofs.json", replace_with(bad)), fed, 7)
                assert reason.startswith(f"record {seq} is not in the checkpoint's tree")
        for cut in (path[:-1], [*path, "cd" * 32]):
            bad = json.loads(json.dumps(raw))
            bad[seq]["path"] = cut
            refused(changed(container, "proofs.json", replace_with(bad)), fed, 7)


def test_a_changed_globalconf_is_refused(container: bytes, fed: Federation) -> None:
    reason = refused(changed(container, "globalconf/7.jws", flip_at(-5)), fed, 2)
    assert reason.startswith("global configuration 7, used for record 5, does not verify")
    # Another genuine document under the wrong name, or named for a time it was not in force.
    files = members(container)
    files["globalconf/7.jws"] = files["globalconf/8.jws"]
    assert refused(pack(files), fed, 2) == "globalconf/7.jws holds serial 8"

    def later(obj: dict[str, object]) -> None:
        obj["globalconf"] = {"records": {"5": 8, "6": 8}, "checkpoint": 8}

    files = members(container)
    files["manifest.json"] = edit_json(later)(files["manifest.json"])
    del files["globalconf/7.jws"]
    reason = refused(pack(files), fed, 2)
    assert reason == (
        "global configuration 8, used for record 5, was generated at 2026-02-10T09:05:00.000000Z, "
        "after 2026-02-10T09:04:50.000000Z: it was not in force then"
    )


def test_a_record_of_another_message_is_refused(container: bytes, good: LogFacts, fed: Federation) -> None:
    other = members(export(good.path, "msg-2"))
    files = members(container)
    files["records/5.json"] = other["records/3.json"].replace(b'"seq": 3', b'"seq": 5')
    files["records/5.body"] = other["records/3.body"]
    reason = refused(pack(files), fed, 3)
    assert reason == "record 5 is of message msg-2, not of msg-3"


def test_a_swapped_exchange_with_its_manifest_is_refused(
    container: bytes, good: LogFacts, fed: Federation
) -> None:
    # The attacker keeps the whole request of msg-2 but renumbers it: the leaf no longer matches.
    other = members(export(good.path, "msg-2"))
    files = members(container)
    request = json.loads(other["records/3.json"])
    request["seq"] = 5
    request["message_id"] = "msg-3"
    files["records/5.json"] = json.dumps(request).encode()
    files["records/5.body"] = other["records/3.body"]
    with pytest.raises(EvidenceInvalid) as caught:
        verify_evidence(pack(files), fed.anchor())
    assert caught.value.step == 3


def test_a_different_anchor_is_refused(container: bytes, fed: Federation) -> None:
    with pytest.raises(EvidenceInvalid) as caught:
        verify_evidence(container, fed.anchor(generate_private_key()))
    assert caught.value.step == 2
    assert "does not verify" in caught.value.reason


@pytest.mark.parametrize(
    "name",
    ["../evil.json", "/etc/passwd", "records/../../x.json", "records/5.exe", "globalconf/07.jws", "records/"],
)
def test_unexpected_member_names_are_refused(container: bytes, fed: Federation, name: str) -> None:
    files = members(container)
    files[name] = b"{}"
    reason = refused(pack(files), fed, 1)
    assert "the format does not define" in reason


def test_malformed_and_oversized_containers_are_refused(container: bytes, fed: Federation) -> None:
    assert "not a ZIP file" in refused(b"PK\x03\x04 not really", fed, 1)
    files = {f"records/{i}.body": b"" for i in range(1, 40)}
    assert "members, more than" in refused(pack(files), fed, 1)
    files = members(container)
    del files["proofs.json"]
    assert refused(pack(files), fed, 1) == "the container lacks proofs.json"
    files = members(container)
    files["globalconf/9.jws"] = files["globalconf/8.jws"]
    assert "does not account for" in refused(pack(files), fed, 1)
    files = members(container)
    del files["records/6.body"]
    assert "lacks records/6.body" in refused(pack(files), fed, 1)


def test_consistency_between_two_checkpoint_files(good: LogFacts, fed: Federation) -> None:
    old, new = (c.to_file() for c in good.checkpoints)
    with MessageLogStore.open_readonly(good.path) as store:
        proof = store.consistency_proof(6, 10)
    trust = fed.trust()
    report = verify_consistency_files(
        old.to_json(), new.to_json(), proof, trust=trust, tsa_certificates=[fed.tsa]
    )
    assert report.describe().startswith("the log only grew from 6 to 10 records")
    with pytest.raises(EvidenceInvalid) as caught:
        verify_consistency_files(new, old, [], trust=trust, tsa_certificates=[fed.tsa])
    assert caught.value.step == 4 and "shrank" in caught.value.reason
    for i in range(len(proof)):
        bad = [*proof[:i], bytes([proof[i][0] ^ 1]) + proof[i][1:], *proof[i + 1 :]]
        with pytest.raises(EvidenceInvalid) as caught:
            verify_consistency_files(old, new, bad, trust=trust, tsa_certificates=[fed.tsa])
        assert caught.value.step == 5
    with pytest.raises(EvidenceInvalid) as caught:
        verify_consistency_files(b"{}", new, proof, trust=trust, tsa_certificates=[fed.tsa])
    assert caught.value.step == 1
    with pytest.raises(EvidenceInvalid) as caught:
        verify_consistency_files(old, new, proof, trust=trust, tsa_certificates=[])
    assert caught.value.step == 2 and "timestamp" in caught.value.reason
