"""``xweg registry ...`` store commands, through ``xweg.cli.main``, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from registry.federation import FederationDefinition
from registry.publisher import build_global_conf
from registry.store import RegistryStore
from tests.unit.registry.dbfixtures import database_url
from tests.unit.registry.helpers import FederationFiles
from tests.unit.trust.helpers import NOW, SERVER, Pki
from trust.certificates import fingerprint
from trust.globalconf import GlobalConf
from trust.keys import generate_private_key, make_csr, save_certificate
from xweg.cli import main

__all__ = ["database_url"]


def pem_text(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_round_trip(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    db = ("--database-url", database_url)
    steps = [
        ("init", *db, "--instance", "NRW"),
        ("member", "add", *db, "--class", "GOV", "--code", "057", "--name", "Bezirksregierung Detmold"),
        ("member", "add", *db, "--class", "MUN", "--code", "05774032", "--name", "Stadt Paderborn"),
        ("subsystem", "add", *db, "--member", "NRW/GOV/057", "--code", "arbeitsschutz"),
        ("subsystem", "add", *db, "--member", "NRW/MUN/05774032", "--code", "gewerbeamt"),
        ("group", "add", *db, "--code", "owl", "--member", "NRW/MUN/05774032/gewerbeamt"),
        ("group", "add-member", *db, "--code", "owl", "--member", "NRW/GOV/057/arbeitsschutz"),
        ("member-class", "add", *db, "--code", "NGO"),
        (
            "service", "add", *db, "--provider", "NRW/GOV/057/arbeitsschutz", "--code", "gewerbeanzeige",
            "--version", "v1", "--protocol", "rest", "--standard", "XGewerbeanzeige 2.2",
            "--authority", "MELDID:057", "--area", "05766",
        ),
    ]  # fmt: skip
    for step in steps:
        code, out, err = run(capsys, "registry", *step)
        assert code == 0, step
        # One line of output; the store's audit log lines go to stderr, not into the output.
        assert len(out.splitlines()) == 1 and "registry.audit" not in out, step
        assert all("registry.audit" in line for line in err.splitlines()), step
    code, out, _ = run(capsys, "registry", "service", "list", *db, "--json", "--authority", "MELDID:057")
    assert code == 0
    (service,) = json.loads(out)
    assert service["service"] == "NRW/GOV/057/arbeitsschutz/gewerbeanzeige/v1"
    assert (service["protocol"], service["standard"], service["area"]) == (
        "REST",
        "XGewerbeanzeige 2.2",
        "05766",
    )
    code, out, _ = run(capsys, "registry", "globalconf", "show", *db, "--json")
    conf = GlobalConf.from_json(out.encode())
    assert [m.name for m in conf.members] == ["Bezirksregierung Detmold", "Stadt Paderborn"]
    assert [m.slash() for m in conf.global_groups[0].members] == [
        "NRW/MUN/05774032/gewerbeamt",
        "NRW/GOV/057/arbeitsschutz",
    ]
    code, out, _ = run(capsys, "registry", "globalconf", "show", *db)
    assert code == 0 and "member       NRW/MUN/05774032 Stadt Paderborn [gewerbeamt]" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("member add --class MUN --code 05774032 --name again", "duplicate member"),
        ("member add --class M.U/N --code 1 --name x", "illegal character '/'"),
        ("subsystem add --member NRW/MUN/1 --code x", "is not a registered member"),
        ("init --instance NRW", "already initialised"),
        ("service add --provider NRW/MUN/05774032/x --code s --protocol SOAP", "is not a subsystem"),
        ("group add-member --code nope --member NRW/MUN/05774032", "global group nope does not exist"),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], database_url: str, argv: str, message: str
) -> None:
    db = ("--database-url", database_url)
    assert run(capsys, "registry", "init", *db, "--instance", "NRW")[0] == 0
    assert (
        run(capsys, "registry", "member", "add", *db, "--class", "MUN", "--code", "05774032", "--name", "P")[
            0
        ]
        == 0
    )
    code, out, err = run(capsys, "registry", *argv.split(), *db)
    assert code == 1 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(
            ["registry", "service", "add", "--provider", "NRW/GOV/057/x", "--code", "s", "--protocol", "grpc"]
        )
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_import_then_show(
    capsys: pytest.CaptureFixture[str], database_url: str, files: FederationFiles
) -> None:
    code, out, err = run(capsys, "registry", "import", "--database-url", database_url, str(files.federation))
    assert code == 0 and "imported 2 members, 2 security servers, 1 global groups" in out
    # The import is one audit entry, logged on stderr (never mixed into the output).
    assert [line for line in err.splitlines() if "registry.audit" in line] == err.splitlines()
    assert len(err.splitlines()) == 1 and "operation=import_definition" in err
    code, out, _ = run(capsys, "registry", "globalconf", "show", "--database-url", database_url, "--json")
    shown = GlobalConf.from_json(out.encode())
    expected = build_global_conf(
        FederationDefinition.load(files.federation),
        serial=1,
        now=NOW,
        validity=shown.expires_at - shown.generated_at,
    )
    assert shown.security_servers == expected.security_servers and shown.members == expected.members
    # A second import is refused, and so is a broken file.
    code, _, err = run(capsys, "registry", "import", "--database-url", database_url, str(files.federation))
    assert code == 1 and "needs an empty registry" in err
    code, _, err = run(
        capsys, "registry", "import", "--database-url", database_url, str(files.root / "nope.toml")
    )
    assert code == 1 and "cannot read" in err


def test_cas_tsas_and_maintenance_mode(
    capsys: pytest.CaptureFixture[str], database_url: str, pki: Pki, tmp_path: Path
) -> None:
    db = ("--database-url", database_url)
    files = {}
    tsa = pki.ca.issue_tsa_certificate(make_csr(generate_private_key(), "t"), "IT.NRW TSA", now=NOW)
    forged_tsa = pki.impostor_ca.issue_tsa_certificate(make_csr(generate_private_key(), "t"), "x", now=NOW)
    for name, cert in (
        ("root", pki.ca.certificate),
        ("issuing", pki.issuing.certificate),
        ("responder", pki.responder_cert),
        ("tsa", tsa),
        ("forged-tsa", forged_tsa),
    ):
        files[name] = str(tmp_path / f"{name}.pem")
        save_certificate(cert, tmp_path / f"{name}.pem")
    assert run(capsys, "registry", "init", *db, "--instance", "NRW")[0] == 0
    member = ("member", "add", *db, "--class", "MUN", "--code", "05774032", "--name", "P")
    assert run(capsys, "registry", *member)[0] == 0

    code, out, err = run(
        capsys, "registry", "ca", "add", *db, "--certificate", files["root"],
        "--intermediate", files["issuing"], "--ocsp-url", "http://127.0.0.1:8888/ocsp",
        "--ocsp-responder", files["responder"], "--json",
    )  # fmt: skip
    assert code == 0 and "add_approved_ca" in err
    approved = json.loads(out)
    assert approved == {
        "fingerprint": fingerprint(pki.ca.certificate),
        "subject": "CN=xweg NRW Root CA",
        "not_after": pki.ca.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "intermediate_fingerprints": [fingerprint(pki.issuing.certificate)],
        "ocsp_url": "http://127.0.0.1:8888/ocsp",
        "ocsp_responder_fingerprints": [fingerprint(pki.responder_cert)],
    }
    code, out, _ = run(capsys, "registry", "ca", "list", *db, "--json")
    assert (code, json.loads(out)) == (0, [approved])
    code, out, _ = run(capsys, "registry", "ca", "list", *db)
    assert out.splitlines() == [
        f"{approved['fingerprint']} CN=xweg NRW Root CA until {approved['not_after']} "
        "OCSP http://127.0.0.1:8888/ocsp intermediates: 1"
    ]

    code, out, err = run(
        capsys, "registry", "tsa", "add", *db, "--name", "IT.NRW TSA", "--url", "http://127.0.0.1:8889/",
        "--certificate", files["tsa"],
    )  # fmt: skip
    assert (code, out) == (0, "approved TSA IT.NRW TSA http://127.0.0.1:8889/\n")
    assert "add_approved_tsa" in err
    code, out, _ = run(capsys, "registry", "tsa", "list", *db, "--json")
    assert json.loads(out) == [
        {
            "name": "IT.NRW TSA",
            "url": "http://127.0.0.1:8889/",
            "fingerprint": fingerprint(tsa),
            "subject": "CN=IT.NRW TSA",
            "not_after": tsa.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ]

    with RegistryStore.open(database_url) as store:
        store.add_security_server("NRW/MUN/05774032", "ss1", "127.0.0.1:5511", pem_text(pki.auth_cert))
    capsys.readouterr()  # the store's own audit log line, outside the command line
    server = "NRW/MUN/05774032/ss1"
    code, out, err = run(capsys, "registry", "server", "maintenance", *db, server, "on")
    assert (code, out) == (0, f"{server} is now in maintenance mode\n")
    assert "set_maintenance_mode" in err
    code, out, err = run(capsys, "registry", "server", "maintenance", *db, server, "on")
    assert (code, out, err) == (0, f"{server} is already in maintenance mode\n", "")  # nothing audited
    code, out, _ = run(capsys, "registry", "server", "maintenance", *db, server, "off", "--json")
    assert (code, json.loads(out)) == (0, {"server": server, "maintenance_mode": False, "changed": True})

    with RegistryStore.open(database_url) as store:
        trail = store.audit_trail()
        modes = store.maintenance_modes()
    assert modes == {SERVER: False}
    assert [(e.actor, e.operation, e.target) for e in trail if e.operation != "add_member"][-5:] == [
        ("local", "add_approved_ca", approved["fingerprint"]),
        ("local", "add_approved_tsa", "IT.NRW TSA"),
        ("local", "add_security_server", server),
        ("local", "set_maintenance_mode", server),
        ("local", "set_maintenance_mode", server),
    ]

    # Refusals are one line on stderr, exit status 1, and change nothing.
    tsa_add = ("tsa", "add", "--url", "http://127.0.0.1:1/", "--certificate")
    (tmp_path / "big.pem").write_bytes(b" " * (1024 * 1024 + 1))
    for argv, message in [
        (("ca", "add", "--certificate", files["root"]), "is already an approved CA"),
        (("ca", "add", "--certificate", files["tsa"]), "is not a CA certificate"),
        (("ca", "add", "--certificate", str(tmp_path / "nope.pem")), "nope.pem: No such file or directory"),
        (("ca", "add", "--certificate", str(tmp_path / "big.pem")), "big.pem: larger than 1048576 bytes"),
        ((*tsa_add, files["forged-tsa"], "--name", "X"), "was not issued by an approved CA"),
        ((*tsa_add, files["tsa"], "--name", "IT.NRW TSA"), "duplicate approved TSA IT.NRW TSA"),
        (("server", "maintenance", "NRW/MUN/05774032/ss9", "on"), "is not a registered security server"),
        (("server", "maintenance", "NRW/MUN/05774032", "on"), "must have 4 parts separated by '/'"),
    ]:
        code, out, err = run(capsys, "registry", *argv, *db)
        assert code == 1 and out == "", argv
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    with RegistryStore.open(database_url) as store:
        assert store.audit_trail() == trail
    with pytest.raises(SystemExit) as info:
        main(["registry", "server", "maintenance", *db, server, "maybe"])
    assert info.value.code == 2
