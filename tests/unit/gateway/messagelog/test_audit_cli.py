"""``xweg audit`` end to end on a real log: list, export, verify (log, container), checkpoint, consistency."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.unit.gateway.messagelog.federation import Federation, LogFacts, federation, write_log
from trust.anchor import save_anchor
from xweg.cli import main


@pytest.fixture(scope="module")
def fed() -> Federation:
    return federation()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, fed: Federation) -> LogFacts:
    return write_log(tmp_path_factory.mktemp("cli") / "messagelog.db", fed)


@pytest.fixture
def files(tmp_path: Path, fed: Federation, good: LogFacts) -> dict[str, Path]:
    log = tmp_path / "messagelog.db"
    shutil.copyfile(good.path, log)
    anchor = tmp_path / "anchor.json"
    save_anchor(fed.anchor(), anchor)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(
        b"".join(c.public_bytes(Encoding.PEM) for c in (fed.root.certificate, fed.issuing.certificate))
    )
    tsa = tmp_path / "tsa.pem"
    tsa.write_bytes(fed.tsa.public_bytes(Encoding.PEM))
    return {"log": log, "anchor": anchor, "ca": ca, "tsa": tsa, "dir": tmp_path}


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = main(["audit", *(str(a) for a in argv)])
    return code, capsys.readouterr().out


def test_list(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "list", files["log"])
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 10
    assert "msg-1" in lines[0] and "request" in lines[0] and "NRW/MUN/05774032/gewerbeamt ->" in lines[0]
    assert lines[1].endswith("201")
    code, out = run(capsys, "list", files["log"], "--json")
    rows = json.loads(out)
    assert rows[3] == {
        "seq": 4,
        "message_id": "msg-2",
        "logged_at": "2026-02-10T09:00:20.250000Z",
        "direction": "response",
        "client": "NRW/MUN/05774032/gewerbeamt",
        "service": "NRW/GOV/057/arbeitsschutz/gewerbeanzeige",
        "status": 201,
    }


def test_verify_a_log_reports_the_tree(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], good: LogFacts
) -> None:
    code, out = run(capsys, "verify", files["log"], "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["checkpoints"], report["tree_size"], report["root"]) == (
        2,
        10,
        good.checkpoints[1].root.hex(),
    )
    assert report["first_error"] is None
    code, out = run(capsys, "verify", files["log"])
    assert code == 0 and "intact" in out


def test_export_and_verify_a_container(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out_file = files["dir"] / "evidence.bin"  # not named .zip: recognised by its content
    code, out = run(capsys, "export", "--message-id", "msg-2", "--log", files["log"], "--out", out_file)
    assert code == 0 and out_file.is_file()
    code, out = run(capsys, "verify", out_file, "--anchor", files["anchor"])
    assert code == 0
    assert "valid evidence" in out
    assert "SUBSYSTEM:NRW/MUN/05774032/gewerbeamt sent a POST /anzeigen request (message msg-2" in out
    code, out = run(capsys, "verify", out_file, "--anchor", files["anchor"], "--json")
    assert code == 0 and json.loads(out)["response"]["status"] == 201
    # Tampered: one byte of the zip's stored data changed.
    data = bytearray(out_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = files["dir"] / "bad.zip"
    bad.write_bytes(bytes(data))
    code, out = run(capsys, "verify", bad, "--anchor", files["anchor"])
    assert code == 1 and "NOT valid evidence. Step" in out
    assert main(["audit", "verify", str(out_file)]) == 2  # a container needs --anchor
    code, _ = run(capsys, "export", "--message-id", "msg-404", "--log", files["log"], "--out", bad)
    assert code == 1


def test_checkpoint_files_and_consistency(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = files["dir"] / "old.json", files["dir"] / "new.json"
    assert run(capsys, "checkpoint", files["log"], "--size", 6, "--out", old)[0] == 0
    assert run(capsys, "checkpoint", files["log"], "--out", new)[0] == 0
    assert json.loads(new.read_text())["format"] == "xweg-checkpoint-file/1"
    assert run(capsys, "checkpoint", files["log"], "--size", 7, "--out", old.with_name("none.json"))[0] == 1
    code, out = run(capsys, "consistency", old, new, "--log", files["log"])
    assert code == 0 and out.startswith("the log only grew from 6 to 10")
    code, out = run(capsys, "consistency", new, old, "--log", files["log"])
    assert code == 1 and "the log shrank" in out
    # Without the log: a proof file and the auditor's own certificates.
    from gateway.messagelog.store import MessageLogStore

    with MessageLogStore.open_readonly(files["log"]) as store:
        proof = store.consistency_proof(6, 10)
    proof_file = files["dir"] / "proof.json"
    proof_file.write_text(json.dumps([h.hex() for h in proof]))
    args = ("consistency", old, new, "--proof", proof_file, "--ca", files["ca"], "--tsa", files["tsa"])
    code, out = run(capsys, *args)
    assert code == 0 and out.startswith("the log only grew from 6 to 10")
    proof_file.write_text(json.dumps([("00" + h.hex()[2:]) for h in proof]))
    code, out = run(capsys, *args)
    assert code == 1 and "step 5 (consistency proof)" in out


def test_a_rollback_is_caught_with_a_kept_checkpoint(
    files: dict[str, Path], fed: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = files["dir"] / "kept.json"
    assert run(capsys, "checkpoint", files["log"], "--out", kept)[0] == 0
    older = write_log(files["dir"] / "older.db", fed, upto=6)
    assert run(capsys, "verify", older.path)[0] == 0
    code, out = run(capsys, "verify", older.path, "--checkpoint", kept)
    assert code == 1 and "rolled back" in out
    code, out = run(capsys, "consistency", files["dir"] / "kept.json", kept, "--log", older.path)
    assert code == 1
    assert run(capsys, "verify", files["log"], "--checkpoint", kept)[0] == 0


class _Api(http.server.BaseHTTPRequestHandler):
    container = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.headers.get("Authorization") != "Bearer good-token":
            body = json.dumps({"type": "Server.ServerProxy.AccessDenied", "message": "bad token"}).encode()
            self.send_response(401)
        elif self.path != "/audit/v1/records/by-message/msg-2/evidence":
            body = b'{"message": "no such record"}'
            self.send_response(404)
        else:
            body = self.container
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    made = files["dir"] / "made.zip"
    assert run(capsys, "export", "--message-id", "msg-2", "--log", files["log"], "--out", made)[0] == 0
    _Api.container = made.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_export_from_a_server(files: dict[str, Path], api: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = files["dir"] / "token"
    token.write_text("good-token\n")
    out_file = files["dir"] / "fetched.zip"
    args = ["export", "--message-id", "msg-2", "--server", api, "--token-file", token, "--out", out_file]
    assert run(capsys, *args)[0] == 0
    assert run(capsys, "verify", out_file, "--anchor", files["anchor"])[0] == 0
    token.write_text("stolen")
    assert main(["audit", *(str(a) for a in args)]) == 1
    assert "answered HTTP 401: bad token" in capsys.readouterr().err
