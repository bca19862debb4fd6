"""``xweg trust ca ...`` end to end on a temporary directory; failures are one line, never a traceback."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trust.castore import CaStore
from trust.certificates import CertificateTrust, validate_auth_certificate
from trust.keys import generate_private_key, load_certificate, make_csr
from xweg.trustcmd import add_trust_commands, run_trust_command

PASSPHRASE = "cli test passphrase"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="xweg")
    add_trust_commands(parser.add_subparsers(dest="command", required=True))
    return run_trust_command(parser.parse_args(["trust", *argv]))


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CA_PASS", PASSPHRASE)
    assert run("ca", "init", "--dir", str(tmp_path / "ca"), "--passphrase-env", "CA_PASS") == 0
    return tmp_path / "ca"


def write_csr(path: Path) -> Path:
    path.write_bytes(make_csr(generate_private_key(), "x").public_bytes(serialization.Encoding.PEM))
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_init_issue_revoke_list(ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "auth.pem"
    args = [
        "--csr",
        str(write_csr(tmp_path / "auth.csr")),
        "--profile",
        "auth",
        "--id",
        "NRW/MUN/05774032/ss1",
    ]
    args += ["--out", str(out), "--dns", "ss1.example", "--ip", "10.0.0.5", "--passphrase-env", "CA_PASS"]
    assert run("ca", "issue", "--dir", str(ca), *args) == 0
    cert = load_certificate(out)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ss1.example"]
    with CaStore.open(ca, PASSPHRASE.encode()) as store:
        issuing, root = store.chain()
    trust = CertificateTrust(roots=(root,), intermediates=(issuing,))
    validate_auth_certificate(cert, trust, cert.not_valid_before_utc + dt.timedelta(minutes=10))
    assert f"serial {cert.serial_number}" in capsys.readouterr().out

    revoke = ["--serial", hex(cert.serial_number), "--reason", "keyCompromise", "--passphrase-env", "CA_PASS"]
    assert run("ca", "revoke", "--dir", str(ca), *revoke) == 0
    capsys.readouterr()
    assert run("ca", "list", "--dir", str(ca), "--json") == 0
    listed = {entry["serial"]: entry for entry in json.loads(capsys.readouterr().out)}
    entry = listed[str(cert.serial_number)]
    assert (entry["profile"], entry["identity"], entry["status"], entry["reason"]) == (
        "auth",
        "NRW/MUN/05774032/ss1",
        "revoked",
        "keyCompromise",
    )
    assert run("ca", "list", "--dir", str(ca)) == 0
    assert "revoked" in capsys.readouterr().out


def test_init_twice(ca: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run("ca", "init", "--dir", str(ca), "--passphrase-env", "CA_PASS") == 1
    assert "already holds a CA" in one_error_line(capsys)


def test_missing_passphrase(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("ca", "init", "--dir", str(tmp_path / "ca")) == 1
    assert "--passphrase-file F or --passphrase-env VAR" in one_error_line(capsys)
    assert not (tmp_path / "ca").exists()


def test_wrong_passphrase(ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    (tmp_path / "wrong").write_text("not it\n")
    csr = write_csr(tmp_path / "s.csr")
    args = ["--csr", str(csr), "--profile", "sign", "--id", "NRW/MUN/1", "--out", str(tmp_path / "s.pem")]
    assert run("ca", "issue", "--dir", str(ca), *args, "--passphrase-file", str(tmp_path / "wrong")) == 1
    assert "cannot open the CA" in one_error_line(capsys)
    assert not (tmp_path / "s.pem").exists()


def test_revoke_unknown_serial_and_twice(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    common = ["--dir", str(ca), "--passphrase-env", "CA_PASS"]
    assert run("ca", "revoke", *common, "--serial", "42", "--reason", "superseded") == 1
    assert "no certificate with serial 42 (0x2a)" in one_error_line(capsys)
    [responder] = CaStore.read_register(ca)
    for expected in (0, 1):
        args = ["--serial", str(responder.serial), "--reason", "cessationOfOperation"]
        assert run("ca", "revoke", *common, *args) == expected
    assert "already revoked" in one_error_line(capsys)


def test_bad_csr_and_bad_identity(ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    (tmp_path / "bad.csr").write_text(
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    )
    common = ["--dir", str(ca), "--out", str(tmp_path / "x.pem"), "--passphrase-env", "CA_PASS"]
    sign = ["--profile", "sign", "--id", "NRW/MUN/1"]
    assert run("ca", "issue", "--csr", str(tmp_path / "bad.csr"), *sign, *common) == 1
    assert "is not a PEM certificate signing request" in one_error_line(capsys)
    good = write_csr(tmp_path / "good.csr")
    assert run("ca", "issue", "--csr", str(good), "--profile", "auth", "--id", "NRW/MUN/1", *common) == 1
    assert "is not a security server" in one_error_line(capsys)
    assert run("ca", "issue", "--csr", str(tmp_path / "none.csr"), *sign, *common) == 1
    assert "none.csr" in one_error_line(capsys)


def test_list_a_directory_that_is_no_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("ca", "list", "--dir", str(tmp_path)) == 1
    assert "is not a CA store" in one_error_line(capsys)


def test_bad_serial_and_reason_are_usage_errors(ca: Path) -> None:
    with pytest.raises(SystemExit):
        run("ca", "revoke", "--dir", str(ca), "--serial", "twelve", "--reason", "superseded")
    with pytest.raises(SystemExit):
        run("ca", "revoke", "--dir", str(ca), "--serial", "12", "--reason", "removeFromCRL")
