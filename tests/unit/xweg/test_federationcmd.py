"""``xweg federation prepare|enrol``: a folder keeps the network it was prepared for, and
what it was prepared for is read back the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from xweg.cli import main
from xweg.federation import OWL, Network, open_layout, prepare
from xweg.federationcmd import NETWORKS


def test_the_command_offers_every_network() -> None:
    assert NETWORKS == tuple(network.value for network in Network)


def test_a_folder_is_read_back_as_it_was_prepared(tmp_path: Path) -> None:
    loopback = prepare(tmp_path / "loopback", OWL)
    assert open_layout(tmp_path / "loopback") == loopback
    assert not (loopback.root / "deployment.json").exists(), "xweg demo's folder is as it was"
    store = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    compose = prepare(tmp_path / "compose", OWL, network=Network.COMPOSE, registry_database_url=store)
    assert open_layout(tmp_path / "compose") == compose
    assert compose.registry_database_url == store
    assert compose.registry_url == "http://registry:8080"
    assert compose.address("paderborn.peer") == "ss-paderborn:5511"


def test_a_folder_is_not_prepared_for_another_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "owl")
    assert main(["federation", "prepare", "--data", data]) == 0
    capsys.readouterr()
    assert main(["federation", "prepare", "--data", data, "--network", "compose"]) == 1
    assert "prepared for the loopback network, not for compose" in capsys.readouterr().err


def test_enrol_needs_a_prepared_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["federation", "enrol", "--data", str(tmp_path)]) == 1
    assert "holds no prepared federation" in capsys.readouterr().err
