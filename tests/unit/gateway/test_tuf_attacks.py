"""The configuration client against The Update Framework's attacks, over real loopback HTTP.

In the manner of python-tuf's ``tests/test_trusted_metadata_set.py``: a good signed
document, one thing changed, the one specific refusal.  The pure checks are in
``tests/unit/trust/test_tuf_attacks.py``; here are the ones that need a network, a
disk or a restart: rollback after a restart, slow retrieval, endless data, untrusted
mirrors, and a key rotation that survives a restart.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.clock import FixedClock
from gateway.confclient.anchor_refresh import AnchorRefreshError, refresh_anchor_file, update_anchor_file
from gateway.confclient.fetcher import FetchError, fetch_document
from gateway.confclient.trusted import TrustedGlobalConf
from gateway.confclient.updater import GlobalConfUpdater
from gateway.config import GlobalConfClientSettings
from registry.federation import FederationDefinition
from registry.publisher import Publisher, SerialStore, make_anchor
from registry.server import RegistrySettings
from tests.unit.gateway.conftest import KEY_ID, NOW, Federation
from trust.anchor import Anchor, AnchorKey, KeySet, load_anchor, save_anchor
from trust.errors import GlobalConfExpired, GlobalConfRollback
from trust.globalconf import (
    GlobalConf,
    GlobalConfThresholdNotMet,
    sign_global_conf,
    sign_global_conf_multi,
    verify_global_conf,
)
from trust.keys import generate_private_key, public_key_pem, save_private_key

NEW_KEYS = {"2026-1": generate_private_key(), "2026-2": generate_private_key()}
NEW = KeySet(tuple(AnchorKey(kid, public_key_pem(key)) for kid, key in NEW_KEYS.items()), 2)
SETTINGS = GlobalConfClientSettings(poll_interval_s=3600.0, fetch_timeout_s=2.0)


class Server:
    """A registry or a mirror on 127.0.0.1: serves ``body``, or trickles it, or never stops."""

    def __init__(self) -> None:
        self.body = b""
        self.mode = "plain"  # "plain", "trickle" (pause between bytes), "endless"
        self.pause_s = 0.3
        self.requests = 0
        self.sent = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.mode == "plain":
            return web.Response(body=self.body)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        if self.mode == "trickle":
            for start in range(0, len(self.body), 16):
                await response.write(self.body[start : start + 16])
                await asyncio.sleep(self.pause_s)
        else:
            chunk = b"A" * 4096
            while True:  # until the client hangs up
                await response.write(chunk)
                self.sent += len(chunk)
        await response.write_eof()
        return response


async def start_server() -> tuple[Server, TestServer]:
    server = Server()
    app = web.Application()
    app.router.add_get("/globalconf", server.handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    server.url = str(test_server.make_url("/"))
    return server, test_server


@pytest.fixture
async def registry() -> AsyncIterator[Server]:
    server, test_server = await start_server()
    try:
        yield server
    finally:
        await test_server.close()


@pytest.fixture
async def mirror() -> AsyncIterator[Server]:
    server, test_server = await start_server()
    try:
        yield server
    finally:
        await test_server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def doc_path(tmp_path: Path) -> Path:
    return tmp_path / "globalconf.jws"


MakeUpdater = Callable[..., GlobalConfUpdater]


@pytest.fixture
async def make_updater(
    federation: Federation, registry: Server, doc_path: Path
) -> AsyncIterator[MakeUpdater]:
    made: list[GlobalConfUpdater] = []

    def make(
        *, urls: tuple[str, ...] | None = None, settings: GlobalConfClientSettings = SETTINGS
    ) -> GlobalConfUpdater:
        anchor = federation.anchor(urls if urls is not None else (registry.url,))
        updater = GlobalConfUpdater(TrustedGlobalConf(anchor), doc_path, settings, FixedClock(NOW))
        made.append(updater)
        return updater

    try:
        yield make
    finally:
        for updater in made:
            await updater.close()


def rotation(federation: Federation, serial: int, *, old: bool = True, new: bool = True) -> bytes:
    """A document announcing ``NEW``, signed by the anchor's key and/or both new keys."""
    conf = dataclasses.replace(federation.conf(serial), key_set=NEW)
    keys = [(federation.registry_key, KEY_ID)] if old else []
    if new:
        keys += [(key, kid) for kid, key in NEW_KEYS.items()]
    return sign_global_conf_multi(conf, keys)


def by_new_keys(conf: GlobalConf) -> bytes:
    return sign_global_conf_multi(conf, [(key, kid) for kid, key in NEW_KEYS.items()])


def tampered(document: bytes, federation: Federation) -> bytes:
    """``document`` with its payload swapped for a richer one; the signatures stay."""
    head, _, signature = document.split(b".")
    richer = federation.conf(99, expires_at=NOW + dt.timedelta(days=365)).to_json()
    payload = base64.urlsafe_b64encode(richer).rstrip(b"=")
    return b".".join([head, payload, signature])


# Small synchronous file helpers: the tests' own disk access is not what is under test.


def content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def remove(path: Path) -> None:
    path.unlink()


def read_state(doc_path: Path) -> dict[str, object]:
    state = json.loads(doc_path.with_name(doc_path.name + ".serial").read_text())
    assert isinstance(state, dict)
    return state


# -- rollback --------------------------------------------------------------------------------


async def test_rollback_refused_after_a_restart_from_the_persisted_floor(
    make_updater: MakeUpdater, registry: Server, federation: Federation, doc_path: Path
) -> None:
    registry.body = federation.signed(5)
    first = make_updater()
    await first.start()
    assert await first.refresh_once() is True
    await first.close()
    remove(doc_path)  # only the serial floor survives

    older = federation.signed(4)  # validly signed, not expired
    registry.body = older
    restarted = make_updater()
    await restarted.start()
    assert restarted.trusted.min_serial == 5
    with pytest.raises(GlobalConfRollback, match="serial 4 is older than the accepted serial 5"):
        restarted.trusted.check(older, NOW)
    assert await restarted.refresh_once() is False
    assert restarted.current() is None and content(doc_path) is None


# -- freeze ----------------------------------------------------------------------------------


async def test_freeze_expired_document_is_refused(
    make_updater: MakeUpdater, registry: Server, federation: Federation
) -> None:
    frozen = federation.signed(
        5, generated_at=NOW - dt.timedelta(hours=2), expires_at=NOW - dt.timedelta(seconds=1)
    )
    registry.body = frozen
    updater = make_updater()
    await updater.start()
    with pytest.raises(GlobalConfExpired, match="serial 5 expired"):
        updater.trusted.check(frozen, NOW)
    assert await updater.refresh_once() is False
    assert updater.current() is None


# -- endless data ----------------------------------------------------------------------------


async def test_endless_data_the_fetcher_stops_reading_at_the_cap(
    registry: Server, session: aiohttp.ClientSession
) -> None:
    registry.mode = "endless"
    with pytest.raises(FetchError, match="sent more than 65536 bytes"):
        await fetch_document(session, registry.url + "globalconf", timeout_s=5.0, max_size=65536)


async def test_endless_data_announced_by_content_length(
    registry: Server, session: aiohttp.ClientSession
) -> None:
    registry.body = b"x" * 70000
    with pytest.raises(FetchError, match="offers 70000 bytes, more than 65536"):
        await fetch_document(session, registry.url + "globalconf", timeout_s=5.0, max_size=65536)


async def test_endless_data_keeps_the_updater_on_its_last_good_document(
    make_updater: MakeUpdater, registry: Server, federation: Federation
) -> None:
    registry.body = federation.signed(5)
    updater = make_updater(settings=dataclasses.replace(SETTINGS, max_size_bytes=65536))
    await updater.start()
    assert await updater.refresh_once() is True
    registry.mode = "endless"
    assert await updater.refresh_once() is False
    current = updater.current()
    assert current is not None and current.serial == 5


# -- slow retrieval --------------------------------------------------------------------------


async def test_slow_retrieval_the_deadline_fires(
    registry: Server, federation: Federation, session: aiohttp.ClientSession
) -> None:
    registry.body = federation.signed(5)  # a good document, at 16 bytes every 0.3 s
    registry.mode = "trickle"
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not answer within 0.5 s"):
        await fetch_document(session, registry.url + "globalconf", timeout_s=0.5, max_size=1 << 20)
    assert time.monotonic() - started < 3.0


async def test_slow_retrieval_moves_on_to_the_next_address(
    make_updater: MakeUpdater, registry: Server, mirror: Server, federation: Federation
) -> None:
    mirror.body = registry.body = federation.signed(5)
    mirror.mode = "trickle"
    updater = make_updater(
        urls=(mirror.url, registry.url), settings=dataclasses.replace(SETTINGS, fetch_timeout_s=0.5)
    )
    await updater.start()
    assert await updater.refresh_once() is True
    assert mirror.requests == 1 and registry.requests == 1


# -- untrusted mirrors -----------------------------------------------------------------------


async def test_mirror_serving_a_tampered_document_is_refused(
    make_updater: MakeUpdater, registry: Server, mirror: Server, federation: Federation, doc_path: Path
) -> None:
    good = federation.signed(5)
    mirror.body, registry.body = tampered(good, federation), good
    only_mirror = make_updater(urls=(mirror.url,))
    await only_mirror.start()
    with pytest.raises(GlobalConfThresholdNotMet, match=f"signature by key '{KEY_ID}' does not verify"):
        only_mirror.trusted.check(mirror.body, NOW)
    assert await only_mirror.refresh_once() is False
    assert only_mirror.current() is None and content(doc_path) is None

    both = make_updater(urls=(mirror.url, registry.url))
    await both.start()
    assert await both.refresh_once() is True
    current = both.current()
    assert current is not None and current.serial == 5 and content(doc_path) == good


async def test_mirror_serving_the_signed_document_is_as_good_as_the_registry(
    make_updater: MakeUpdater, mirror: Server, federation: Federation
) -> None:
    # Trust is in the signatures, not in who serves them.
    mirror.body = federation.signed(5)
    updater = make_updater(urls=(mirror.url,))
    await updater.start()
    assert await updater.refresh_once() is True


async def test_mirror_replaying_an_old_document_is_a_rollback(
    make_updater: MakeUpdater, registry: Server, mirror: Server, federation: Federation
) -> None:
    registry.body = federation.signed(5)
    updater = make_updater(urls=(mirror.url, registry.url))
    mirror.body = b"not yet"
    await updater.start()
    assert await updater.refresh_once() is True
    mirror.body, registry.body = federation.signed(4), b"down"
    assert await updater.refresh_once() is False
    current = updater.current()
    assert current is not None and current.serial == 5


# -- key rotation, across a restart ----------------------------------------------------------


async def test_rotation_signed_by_the_old_threshold_is_adopted_and_persisted(
    make_updater: MakeUpdater, registry: Server, federation: Federation, doc_path: Path
) -> None:
    registry.body = rotation(federation, 2)
    first = make_updater()
    await first.start()
    assert await first.refresh_once() is True
    assert first.trusted.anchor.key_set == NEW
    state = read_state(doc_path)
    assert state["serial"] == 2 and isinstance(state["anchor"], str)
    assert Anchor.from_json(state["anchor"].encode()).key_set == NEW
    # Still in this process: a document signed only by the old key is refused now.
    old_only = federation.signed(3)
    with pytest.raises(GlobalConfThresholdNotMet, match=f"key '{KEY_ID}', which the anchor does not name"):
        first.trusted.check(old_only, NOW)
    await first.close()

    # A restart with the anchor file as installed (old key) keeps the rotated key set.
    restarted = make_updater()
    await restarted.start()
    assert restarted.trusted.anchor.key_set == NEW
    assert restarted.trusted.anchor.registry_urls == (registry.url,)
    current = restarted.current()
    assert current is not None and current.serial == 2
    registry.body = old_only
    assert await restarted.refresh_once() is False
    registry.body = by_new_keys(federation.conf(3))
    assert await restarted.refresh_once() is True
    assert read_state(doc_path)["serial"] == 3 and "anchor" in read_state(doc_path)


async def test_rotation_signed_only_by_the_new_keys_is_refused(
    make_updater: MakeUpdater, registry: Server, federation: Federation, doc_path: Path
) -> None:
    registry.body = rotation(federation, 2, old=False)
    updater = make_updater()
    await updater.start()
    with pytest.raises(GlobalConfThresholdNotMet, match="0 distinct anchor key"):
        updater.trusted.check(registry.body, NOW)
    assert await updater.refresh_once() is False
    assert updater.trusted.anchor == federation.anchor((registry.url,))
    assert content(doc_path) is None


async def test_rotation_missing_a_new_signature_is_refused(
    make_updater: MakeUpdater, registry: Server, federation: Federation
) -> None:
    conf = dataclasses.replace(federation.conf(2), key_set=NEW)
    registry.body = sign_global_conf_multi(
        conf, [(federation.registry_key, KEY_ID), (NEW_KEYS["2026-1"], "2026-1")]
    )
    updater = make_updater()
    await updater.start()
    with pytest.raises(GlobalConfThresholdNotMet, match="1 distinct new key"):
        updater.trusted.check(registry.body, NOW)
    assert await updater.refresh_once() is False


async def test_a_newer_anchor_installed_out_of_band_wins_over_the_persisted_keys(
    make_updater: MakeUpdater, registry: Server, federation: Federation, doc_path: Path
) -> None:
    registry.body = rotation(federation, 2)
    first = make_updater()
    await first.start()
    assert await first.refresh_once() is True
    await first.close()

    # Say the operators recovered from a compromise with a key handed out by hand.
    rescue = (AnchorKey("rescue", public_key_pem(federation.rogue_key)),)
    fresh = dataclasses.replace(federation.anchor((registry.url,)), signing_keys=rescue, generated_at=NOW)
    restarted = GlobalConfUpdater(TrustedGlobalConf(fresh), doc_path, SETTINGS, FixedClock(NOW))
    try:
        await restarted.start()
        assert restarted.trusted.anchor == fresh
        registry.body = sign_global_conf(federation.conf(3), federation.rogue_key, "rescue")
        assert await restarted.refresh_once() is True
    finally:
        await restarted.close()


# -- refreshing the anchor file --------------------------------------------------------------


def test_anchor_file_is_rewritten_after_a_verified_rotation(federation: Federation, tmp_path: Path) -> None:
    path = tmp_path / "anchor.json"
    save_anchor(federation.anchor(), path)
    assert update_anchor_file(path, rotation(federation, 2), NOW).key_set == NEW
    assert load_anchor(path).key_set == NEW
    assert load_anchor(path).registry_urls == federation.anchor().registry_urls


def test_anchor_file_is_left_alone_when_the_rotation_does_not_verify(
    federation: Federation, tmp_path: Path
) -> None:
    path = tmp_path / "anchor.json"
    save_anchor(federation.anchor(), path)
    before = path.read_bytes()
    with pytest.raises(GlobalConfThresholdNotMet):
        update_anchor_file(path, rotation(federation, 2, old=False), NOW)
    assert path.read_bytes() == before
    # Nothing to rotate: the file stays byte for byte.
    assert update_anchor_file(path, federation.signed(2), NOW) == federation.anchor()
    assert path.read_bytes() == before


async def test_anchor_refresh_from_the_registry_skips_a_tampering_mirror(
    federation: Federation,
    registry: Server,
    mirror: Server,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    path = tmp_path / "anchor.json"
    save_anchor(federation.anchor((mirror.url, registry.url)), path)
    registry.body = rotation(federation, 2)
    mirror.body = rotation(federation, 2, old=False)  # an attacker's rotation, signed by "new" keys only
    anchor = await refresh_anchor_file(path, session, NOW, timeout_s=2.0)
    assert anchor.key_set == NEW and load_anchor(path) == anchor
    assert mirror.requests == 1 and registry.requests == 1

    registry.body = mirror.body = b"garbage"
    with pytest.raises(AnchorRefreshError, match="no registry URL served"):
        await refresh_anchor_file(path, session, NOW, timeout_s=2.0)
    assert load_anchor(path) == anchor


# -- the registry signs with all its keys ----------------------------------------------------


def definition_of(conf: GlobalConf) -> FederationDefinition:
    return FederationDefinition(
        path=Path("federation.toml"),
        instance=conf.instance,
        approved_cas=conf.approved_cas,
        members=conf.members,
        security_servers=conf.security_servers,
        global_groups=conf.global_groups,
    )


def test_registry_with_one_key_still_publishes_compact_jws(federation: Federation, tmp_path: Path) -> None:
    publisher = Publisher(
        federation.registry_key, KEY_ID, SerialStore(tmp_path / "s.json"), dt.timedelta(minutes=10)
    )
    publication = publisher.publish(definition_of(federation.conf(1)), NOW)
    assert publication.document.count(b".") == 2 and not publication.document.startswith(b"{")
    assert verify_global_conf(publication.document, federation.anchor(), NOW) == publication.conf


def test_registry_with_several_keys_meets_a_threshold_and_announces_a_rotation(
    federation: Federation, tmp_path: Path
) -> None:
    publisher = Publisher(
        federation.registry_key,
        KEY_ID,
        SerialStore(tmp_path / "s.json"),
        dt.timedelta(minutes=10),
        more_keys=[(key, kid) for kid, key in NEW_KEYS.items()],
        key_set=NEW,
    )
    publication = publisher.publish(definition_of(federation.conf(1)), NOW)
    assert len(json.loads(publication.document)["signatures"]) == 3
    keys = [(KEY_ID, federation.registry_key), *NEW_KEYS.items()]
    anchor = make_anchor("NRW", ["http://127.0.0.1:9/"], keys, NOW, threshold=3)
    conf = verify_global_conf(publication.document, anchor, NOW)
    assert conf.key_set == NEW
    trusted = TrustedGlobalConf(federation.anchor())
    trusted.update(publication.document, NOW)
    assert trusted.anchor.key_set == NEW


def test_registry_settings_list_several_keys(tmp_path: Path) -> None:
    for name in ("a", "b"):
        save_private_key(generate_private_key(), tmp_path / f"{name}.key", b"pw")
    (tmp_path / "pw").write_text("pw\n")
    config = tmp_path / "registry.toml"
    config.write_text(
        'federation = "federation.toml"\n'
        "[signing]\n"
        'passphrase_file = "pw"\n'
        'announce = ["k-b"]\n'
        "announce_threshold = 1\n"
        "[[signing.keys]]\n"
        'key = "a.key"\n'
        'key_id = "k-a"\n'
        "[[signing.keys]]\n"
        'key = "b.key"\n'
        'key_id = "k-b"\n'
    )
    settings = RegistrySettings.load(config)
    assert settings.signing_key_path == tmp_path / "a.key" and settings.key_id == "k-a"
    assert settings.more_signing_keys == ((tmp_path / "b.key", "k-b"),)
    assert settings.signing_key_ids == ("k-a", "k-b")
    assert settings.announce_key_ids == ("k-b",) and settings.announce_threshold == 1


@pytest.mark.parametrize(
    ("signing", "match"),
    [
        ('key = "a.key"\nkey_id = "k"\n[[signing.keys]]\nkey = "b.key"\nkey_id = "j"\n', "not both"),
        (
            '[[signing.keys]]\nkey = "a.key"\nkey_id = "k"\n[[signing.keys]]\nkey = "b.key"\nkey_id = "k"\n',
            "unique",
        ),
        ('announce = ["z"]\n[[signing.keys]]\nkey = "a.key"\nkey_id = "k"\n', "announce must name"),
        (
            'announce = ["k"]\nannounce_threshold = 2\n[[signing.keys]]\nkey = "a.key"\nkey_id = "k"\n',
            "announce_threshold",
        ),
        ('[[signing.keys]]\nkey = "a.key"\n', "key_id must be"),
    ],
)
def test_registry_settings_refuse_inconsistent_keys(tmp_path: Path, signing: str, match: str) -> None:
    config = tmp_path / "registry.toml"
    config.write_text('federation = "federation.toml"\n[signing]\n' + signing)
    with pytest.raises(ValueError, match=match):
        RegistrySettings.load(config)


def test_compact_single_signature_still_reaches_threshold_one(federation: Federation) -> None:
    # What security servers and registries deployed before thresholds exchange.
    document = sign_global_conf(federation.conf(1), federation.registry_key, KEY_ID)
    assert federation.anchor().threshold == 1
    assert verify_global_conf(document, federation.anchor(), NOW).serial == 1
