"""``xweg registry ...`` store commands, through ``xweg.cli.main``, on both backends."""

from __future__ import annotations

import json

import pytest

from registry.federation import FederationDefinition
from registry.publisher import build_global_conf
from tests.unit.registry.dbfixtures import database_url
from tests.unit.registry.helpers import FederationFiles
from tests.unit.trust.helpers import NOW
from trust.globalconf import GlobalConf
from xweg.cli import main

__all__ = ["database_url"]


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
        assert (code, err) == (0, ""), step
        assert out.strip()
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
    assert (code, err) == (0, "") and "imported 2 members, 2 security servers, 1 global groups" in out
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
