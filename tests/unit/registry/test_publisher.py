"""Building, signing and numbering global configurations."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from registry.federation import FederationDefinition
from registry.publisher import Publisher, SerialStore, SerialStoreError, build_global_conf, make_anchor
from tests.unit.registry.helpers import FEDERATION_TOML, SERVICES_TOML, FederationFiles
from tests.unit.trust.helpers import MEMBER, NOW
from trust.errors import GlobalConfRollback
from trust.globalconf import verify_global_conf


def test_build_global_conf(files: FederationFiles) -> None:
    definition = FederationDefinition.load(files.federation)
    conf = build_global_conf(definition, serial=42, now=NOW, validity=dt.timedelta(minutes=10))
    assert conf.serial == 42 and conf.instance == "NRW"
    assert conf.generated_at == NOW and conf.expires_at == NOW + dt.timedelta(minutes=10)
    assert conf.has_client(MEMBER.subsystem("gewerbeamt"))
    assert conf.approved_cas == definition.approved_cas
    with pytest.raises(ValueError, match="positive"):
        build_global_conf(definition, serial=1, now=NOW, validity=dt.timedelta(0))
    with pytest.raises(ValueError, match="UTC"):
        build_global_conf(definition, serial=1, now=NOW.replace(tzinfo=None), validity=dt.timedelta(1))


def test_serials_grow_and_are_durable(tmp_path: Path) -> None:
    path = tmp_path / "state" / "serial.json"
    store = SerialStore(path)
    first = store.next_serial(NOW)
    assert first == int(NOW.timestamp())
    assert json.loads(path.read_text()) == {"serial": first}  # on disk before it is used
    assert store.next_serial(NOW) == first + 1
    assert store.next_serial(NOW) == first + 2


def test_serials_grow_across_a_restart_even_if_the_clock_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "serial.json"
    last = SerialStore(path).next_serial(NOW)
    restarted = SerialStore(path)
    assert restarted.last() == last
    assert restarted.next_serial(NOW - dt.timedelta(days=1)) == last + 1


def test_lost_state_file_still_moves_forward_with_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "serial.json"
    last = SerialStore(path).next_serial(NOW)
    path.unlink()
    assert SerialStore(path).next_serial(NOW + dt.timedelta(seconds=5)) > last


@pytest.mark.parametrize("content", [b"", b"{}", b'{"serial": "7"}', b'{"serial": -1}', b"[1]"])
def test_corrupt_state_file_stops_rather_than_reusing_serials(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "serial.json"
    path.write_bytes(content)
    with pytest.raises(SerialStoreError, match="serial state"):
        SerialStore(path).next_serial(NOW)


def test_published_document_verifies_with_the_matching_anchor(files: FederationFiles, tmp_path: Path) -> None:
    definition = FederationDefinition.load(files.federation)
    publisher = Publisher(files.signing_key, "k1", SerialStore(tmp_path / "s.json"), dt.timedelta(minutes=10))
    first = publisher.publish(definition, NOW)
    second = publisher.publish(definition, NOW + dt.timedelta(seconds=1))
    assert second.conf.serial > first.conf.serial
    anchor = make_anchor("NRW", ["http://127.0.0.1:8080"], [("k1", files.signing_key)], NOW)
    conf = verify_global_conf(second.document, anchor, NOW + dt.timedelta(seconds=1))
    assert conf == second.conf
    # A server that has seen the second document refuses the first one again.
    with pytest.raises(GlobalConfRollback):
        verify_global_conf(first.document, anchor, NOW, min_serial=conf.serial)


def test_the_catalogue_is_published_and_signed(files: FederationFiles, tmp_path: Path) -> None:
    files.write_federation(FEDERATION_TOML + SERVICES_TOML)
    definition = FederationDefinition.load(files.federation)
    publisher = Publisher(files.signing_key, "k1", SerialStore(tmp_path / "s.json"), dt.timedelta(minutes=10))
    publication = publisher.publish(definition, NOW)
    assert publication.conf.services == definition.services and len(definition.services) == 3
    anchor = make_anchor("NRW", ["http://127.0.0.1:8080"], [("k1", files.signing_key)], NOW)
    conf = verify_global_conf(publication.document, anchor, NOW)
    assert conf.format_version == 4
    assert [s.service_id.slash() for s in conf.services] == [
        "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1",
        "NRW/MUN/05711000/meldewesen/gewerbeanzeige/v1",
        "NRW/MUN/05711000/meldewesen/meldeauskunft",
    ]


def test_without_catalogue_the_published_document_stays_version_2(files: FederationFiles) -> None:
    definition = FederationDefinition.load(files.federation)
    conf = build_global_conf(definition, serial=42, now=NOW, validity=dt.timedelta(minutes=10))
    assert conf.format_version == 2 and json.loads(conf.to_json())["version"] == 2
