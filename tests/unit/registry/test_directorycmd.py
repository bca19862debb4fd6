"""``xweg directory``: a real registry process on loopback, the answer verified against the anchor."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from registry.publisher import make_anchor
from tests.unit.registry.helpers import SERVICES_TOML, FederationFiles, write_federation
from tests.unit.trust.helpers import NOW, Pki
from trust._encoding import format_time
from trust.anchor import save_anchor
from trust.directory import authority_answer, providers_answer
from trust.globalconf import GlobalConf, sign_global_conf, verify_global_conf
from trust.keys import generate_private_key
from xweg.cli import main
from xweg.directorycmd import run_directory_command


@dataclass(frozen=True)
class Registry:
    url: str
    files: FederationFiles


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Registry]:
    """``xweg registry serve`` publishing FEDERATION_TOML with the catalogue of SERVICES_TOML."""
    files = write_federation(tmp_path_factory.mktemp("registry"), pki, interval_s=3600.0)
    files.federation.write_text(files.federation.read_text() + SERVICES_TOML)
    port = _free_port()
    # No regeneration while the module runs: every test sees the same serial.
    config = files.registry_config.read_text().replace("port = 0", f"port = {port}")
    config = config.replace("validity_s = 600", "validity_s = 7200")
    files.registry_config.write_text(config)
    process = subprocess.Popen(
        [sys.executable, "-m", "xweg", "registry", "serve", "--config", str(files.registry_config)],
        cwd=Path(__file__).resolve().parents[3],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the registry did not start") from None
                time.sleep(0.05)
        yield Registry(f"http://127.0.0.1:{port}", files)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def anchor_file(
    tmp_path: Path, registry: Registry, *urls: str, key: ec.EllipticCurvePrivateKey | None = None
) -> Path:
    path = tmp_path / "anchor.json"
    keys = [("k1", key or registry.files.signing_key)]
    save_anchor(make_anchor("NRW", list(urls or (registry.url,)), keys, NOW), path)
    return path


def published(registry: Registry) -> tuple[bytes, GlobalConf]:
    """What an information system would fetch and verify itself."""
    with urllib.request.urlopen(registry.url + "/globalconf", timeout=10) as response:
        document = response.read()
    anchor = make_anchor("NRW", [registry.url], [("k1", registry.files.signing_key)], NOW)
    return document, verify_global_conf(document, anchor, dt.datetime.now(dt.UTC))


def source(conf: GlobalConf) -> str:
    return f"global configuration NRW serial {conf.serial}, expires {format_time(conf.expires_at)}"


# -- answers ------------------------------------------------------------------------------------


def test_providers_for_an_area(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = anchor_file(tmp_path, registry)
    status = main(
        [
            "directory",
            "providers",
            "--anchor",
            str(anchor),
            "--service",
            "gewerbeanzeige",
            "--area",
            "05774020",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    _, conf = published(registry)
    assert out == (
        f"gewerbeanzeige for area 05774020 ({source(conf)}):\n"
        "  NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1  REST  XGewerbeanzeige 2.2  area 05774\n"
        "    Gewerbeanzeige nach § 14 GewO\n"
        "    authorities: MELDID:05774032\n"
        "    server NRW/MUN/05774032/ss1 at 127.0.0.1:5511\n"
    )


def test_providers_as_json(registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    anchor = anchor_file(tmp_path, registry)
    argv = ["directory", "providers", "--anchor", str(anchor), "--service", "gewerbeanzeige"]
    assert main([*argv, "--area", "05711000", "--version", "v1", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    _, conf = published(registry)
    assert answer == providers_answer(conf, "gewerbeanzeige", "05711000", version="v1")
    assert [entry["provider"] for entry in answer["providers"]] == ["NRW/MUN/05711000/meldewesen"]


def test_nobody_catalogued_for_the_area(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = anchor_file(tmp_path, registry)
    argv = [
        "directory",
        "providers",
        "--anchor",
        str(anchor),
        "--service",
        "gewerbeanzeige",
        "--area",
        "05315000",
    ]
    assert main(argv) == 0
    _, conf = published(registry)
    assert capsys.readouterr().out == (
        f"no provider of gewerbeanzeige is catalogued for area 05315000 ({source(conf)})\n"
    )


def test_services_of_an_authority(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = anchor_file(tmp_path, registry)
    assert main(["directory", "authority", "--anchor", str(anchor), "MELDID:05774032"]) == 0
    _, conf = published(registry)
    assert capsys.readouterr().out == (
        f"services of MELDID:05774032 ({source(conf)}):\n"
        "  NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1  REST  XGewerbeanzeige 2.2  area 05774\n"
        "    Gewerbeanzeige nach § 14 GewO\n"
        "    authorities: MELDID:05774032\n"
        "    server NRW/MUN/05774032/ss1 at 127.0.0.1:5511\n"
        "  NRW/MUN/05711000/meldewesen/meldeauskunft  SOAP  XMeld 3.1  area everywhere\n"
        "    authorities: MELDID:05711000, MELDID:05774032\n"
        "    server NRW/MUN/05711000/ss1 at 127.0.0.1:5521\n"
    )
    assert main(["directory", "authority", "--anchor", str(anchor), "MELDID:05711000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == authority_answer(conf, "MELDID:05711000")


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["providers", "--service", "gewerbeanzeige", "--area", "Paderborn"],
            "area 'Paderborn' must be an official key of 2 to 12 digits",
        ),
        (
            ["providers", "--service", "gewerbe/anzeige", "--area", "05"],
            "service code 'gewerbe/anzeige' contains",
        ),
        (
            ["providers", "--service", "x", "--area", "05", "--version", ""],
            "service version must not be empty",
        ),
        (["authority", "05774032"], "authority identifier '05774032' must be prefix:key"),
    ],
)
def test_malformed_questions_are_refused_before_anything_is_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    # The anchor does not even exist: nothing is read or fetched for a malformed question.
    assert main(["directory", argv[0], "--anchor", str(tmp_path / "missing.json"), *argv[1:]]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"xweg directory {argv[0]}: {message}")


def test_a_missing_anchor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["directory", "authority", "--anchor", str(tmp_path / "missing.json"), "MELDID:1"]) == 1
    assert "xweg directory authority: cannot read anchor" in capsys.readouterr().err


def test_an_anchor_for_other_keys_trusts_nothing(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = anchor_file(tmp_path, registry, key=generate_private_key())
    assert main(["directory", "authority", "--anchor", str(anchor), "MELDID:05774032"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        "xweg directory authority: no registry URL served a verifiable global configuration: "
        f"{registry.url}/globalconf: global configuration is validly signed by 0 distinct anchor key(s), "
        "1 required"
    )
    assert "`xweg anchor refresh` updates the anchor" in err


class _Mirror(BaseHTTPRequestHandler):
    document = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.document)))
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def forged_mirror(registry: Registry) -> Iterator[str]:
    """A mirror serving a catalogue that reroutes Paderborn's Gewerbeanzeigen, signed by a stranger."""
    _, conf = published(registry)
    rerouted = replace(conf.services[0], provider=conf.services[1].provider, version="v9")
    forged = replace(conf, serial=conf.serial + 1, services=(rerouted, *conf.services[1:]))

    class Handler(_Mirror):
        document = sign_global_conf(forged, generate_private_key(), "k1")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_forged_mirror_is_passed_over(
    registry: Registry, forged_mirror: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    anchor = anchor_file(tmp_path, registry, closed, forged_mirror, registry.url)
    argv = [
        "directory",
        "providers",
        "--anchor",
        str(anchor),
        "--service",
        "gewerbeanzeige",
        "--area",
        "05774032",
    ]
    assert main([*argv, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    _, conf = published(registry)
    assert answer["globalconf_serial"] == conf.serial
    assert [entry["service"] for entry in answer["providers"]] == [
        "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"
    ]

    # With only the mirror to ask there is no answer at all.
    anchor = anchor_file(tmp_path, registry, forged_mirror)
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and f"{forged_mirror}/globalconf: " in err and "does not name" not in err
    assert "signature by key 'k1' does not verify" in err


def test_an_expired_configuration_gives_no_answer(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        action="authority", anchor=anchor_file(tmp_path, registry), id="MELDID:05774032", json=False
    )
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)  # the registry's documents last 2 hours
    assert run_directory_command(args, now=later) == 1
    assert "expired at" in capsys.readouterr().err
