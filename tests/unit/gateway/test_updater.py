"""GlobalConfUpdater against a real HTTP registry on loopback, with a frozen clock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import gateway.confclient.state
from core.clock import FixedClock
from core.identifiers import MemberId
from gateway.confclient.state import FileStateStore, Persisted
from gateway.confclient.trusted import TrustedGlobalConf
from gateway.confclient.updater import GlobalConfUpdater
from gateway.config import GlobalConfClientSettings
from tests.unit.gateway.conftest import KEY_ID, NOW, Federation
from trust.globalconf import GlobalConf, MemberInfo, sign_global_conf

SETTINGS = GlobalConfClientSettings(poll_interval_s=3600.0, fetch_timeout_s=2.0)


class Registry:
    """Serves whatever the test puts in ``body`` at ``/globalconf``."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.chunked = False
        self.requests = 0
        self.url = ""
        self.answered = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.answered.set()
        if not self.chunked:
            return web.Response(body=self.body, status=self.status)
        response = web.StreamResponse(status=self.status)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(self.body), 512):
            await response.write(self.body[start : start + 512])
        await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def running_registry() -> AsyncIterator[Registry]:
    """A :class:`Registry` serving on a loopback port, its ``url`` set, until the block ends."""
    reg = Registry()
    app = web.Application()
    app.router.add_get("/globalconf", reg.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    reg.url = str(server.make_url("/"))
    try:
        yield reg
    finally:
        await server.close()


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async with running_registry() as reg:
        yield reg


def unreachable_url() -> str:
    """A loopback URL on which nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def doc_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "globalconf.jws"


MakeUpdater = Callable[..., GlobalConfUpdater]


@pytest.fixture
async def make_updater(
    federation: Federation, registry: Registry, clock: FixedClock, doc_path: Path
) -> AsyncIterator[MakeUpdater]:
    made: list[GlobalConfUpdater] = []
    doc_path.parent.mkdir(exist_ok=True)

    def make(
        *,
        urls: tuple[str, ...] | None = None,
        settings: GlobalConfClientSettings = SETTINGS,
        on_update: Callable[[GlobalConf], None] | None = None,
    ) -> GlobalConfUpdater:
        anchor = federation.anchor(urls if urls is not None else (registry.url,))
        updater = GlobalConfUpdater(TrustedGlobalConf(anchor), doc_path, settings, clock, on_update=on_update)
        made.append(updater)
        return updater

    try:
        yield make
    finally:
        for updater in made:
            await updater.close()


# Small synchronous file helpers: the tests' own disk access is not what is under test.


def content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_dir(path: Path) -> None:
    path.mkdir(parents=True)


def remove(path: Path) -> None:
    path.unlink()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def state_path(doc_path: Path) -> Path:
    return doc_path.with_name(doc_path.name + ".serial")


def read_state(doc_path: Path) -> dict[str, object]:
    return json.loads(state_path(doc_path).read_text())


def bigger_document(federation: Federation, serial: int) -> bytes:
    """A valid document several KiB larger than ``federation.signed(serial)``."""
    conf = federation.conf(serial)
    extra = tuple(MemberInfo(MemberId("NRW", "GOV", f"{i:04d}"), "Amt " + "x" * 200) for i in range(40))
    return sign_global_conf(
        dataclasses.replace(conf, members=conf.members + extra), federation.registry_key, KEY_ID
    )


async def test_refresh_adopts_and_persists_the_served_document(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    seen: list[int] = []
    registry.body = federation.signed(3)
    updater = make_updater(on_update=lambda conf: seen.append(conf.serial))
    await updater.start()
    assert await updater.refresh_once() is True

    current = updater.current()
    assert current is not None and current.serial == 3
    assert current == federation.conf(3)
    assert updater.updated.is_set()
    assert content(doc_path) == registry.body
    assert read_state(doc_path) == {"serial": 3}
    assert seen == [3]  # one adoption, however many polls saw the same serial
    assert names(doc_path.parent) == ["globalconf.jws", "globalconf.jws.serial"]
    assert mode(doc_path) == 0o600


async def test_newer_serial_replaces_the_file_atomically(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    first = federation.signed(3)
    registry.body = first
    updater = make_updater()
    await updater.start()
    assert await updater.refresh_once() is True

    # A stale temporary file of a crashed writer must not get in the way.
    put(doc_path.with_name(doc_path.name + ".tmp"), b"half a document")
    with doc_path.open("rb") as reader:
        registry.body = federation.signed(4)
        assert await updater.refresh_once() is True
        # the old file was replaced by a rename, not rewritten in place under a reader
        assert reader.read() == first
    assert content(doc_path) == registry.body
    assert read_state(doc_path) == {"serial": 4}
    assert content(doc_path.with_name(doc_path.name + ".tmp")) is None
    current = updater.current()
    assert current is not None and current.serial == 4


async def test_restart_loads_the_persisted_document_without_the_network(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    registry.body = federation.signed(5)
    first = make_updater()
    await first.start()
    assert await first.refresh_once() is True
    await first.close()

    # the registry is unreachable now: the restarted server must not need it
    restarted = make_updater(urls=(unreachable_url(),))
    requests_before = registry.requests
    await restarted.start()
    current = restarted.current()
    assert current is not None and current.serial == 5
    assert registry.requests == requests_before
    assert restarted.updated.is_set()
    assert await restarted.refresh_once() is False
    assert restarted.current() == current


async def test_restart_refuses_a_lower_serial_afterwards(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    good = federation.signed(5)
    registry.body = good
    first = make_updater()
    await first.start()
    assert await first.refresh_once() is True
    await first.close()

    registry.body = federation.signed(4)
    restarted = make_updater()
    await restarted.start()
    assert await restarted.refresh_once() is False
    current = restarted.current()
    assert current is not None and current.serial == 5
    assert content(doc_path) == good
    assert read_state(doc_path) == {"serial": 5}


async def test_serial_floor_survives_losing_the_document(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    registry.body = federation.signed(5)
    first = make_updater()
    await first.start()
    assert await first.refresh_once() is True
    await first.close()

    remove(doc_path)
    registry.body = federation.signed(4)
    restarted = make_updater()
    await restarted.start()
    assert restarted.current() is None
    assert restarted.trusted.min_serial == 5
    assert await restarted.refresh_once() is False
    assert restarted.current() is None
    registry.body = federation.signed(5)
    assert await restarted.refresh_once() is True
    assert content(doc_path) == registry.body


async def test_persisted_document_older_than_the_recorded_serial_is_not_loaded(
    make_updater: MakeUpdater, federation: Federation, doc_path: Path
) -> None:
    # e.g. a restored backup of the data folder beside a newer state file
    put(doc_path, federation.signed(5))
    put(state_path(doc_path), json.dumps({"serial": 9}).encode())
    updater = make_updater(urls=(unreachable_url(),))
    await updater.start()
    assert updater.current() is None
    assert updater.trusted.min_serial == 9


async def test_tampered_persisted_document_is_not_loaded(
    make_updater: MakeUpdater, federation: Federation, doc_path: Path
) -> None:
    document = bytearray(federation.signed(5))
    document[-5] = ord("A") if document[-5] != ord("A") else ord("B")
    put(doc_path, bytes(document))
    updater = make_updater(urls=(unreachable_url(),))
    await updater.start()
    assert updater.current() is None
    assert updater.trusted.latest is None


async def test_expired_persisted_document_keeps_its_serial_floor(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path, clock: FixedClock
) -> None:
    registry.body = federation.signed(5)
    first = make_updater()
    await first.start()
    assert await first.refresh_once() is True
    await first.close()

    clock.advance(2 * 3600)  # past the document's expiry
    registry.body = federation.signed(
        4, generated_at=clock.now() - dt.timedelta(minutes=1), expires_at=clock.now() + dt.timedelta(hours=1)
    )
    restarted = make_updater()
    await restarted.start()
    assert restarted.current() is None
    assert await restarted.refresh_once() is False
    assert restarted.current() is None


async def test_current_returns_none_once_the_document_expires(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, clock: FixedClock
) -> None:
    registry.body = federation.signed(1, expires_at=NOW + dt.timedelta(minutes=30))
    updater = make_updater()
    await updater.start()
    assert await updater.refresh_once() is True
    assert updater.current() is not None
    clock.advance(30 * 60)
    assert updater.current() is None
    assert updater.trusted.latest is not None and updater.trusted.latest.serial == 1


@pytest.mark.parametrize(
    ("bad", "status"),
    [
        (b"<html>maintenance</html>", 200),
        (b"", 200),
        (b"not found", 404),
        (b"oops", 500),
    ],
    ids=["garbage", "empty", "404", "500"],
)
async def test_bad_answer_keeps_the_last_good_document(
    make_updater: MakeUpdater,
    registry: Registry,
    federation: Federation,
    doc_path: Path,
    bad: bytes,
    status: int,
) -> None:
    good = federation.signed(2)
    registry.body = good
    updater = make_updater()
    await updater.start()
    assert await updater.refresh_once() is True

    registry.body, registry.status = bad, status
    assert await updater.refresh_once() is False
    current = updater.current()
    assert current is not None and current.serial == 2
    assert content(doc_path) == good


async def test_lower_serial_keeps_the_last_good_document(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    good = federation.signed(7)
    registry.body = good
    updater = make_updater()
    await updater.start()
    assert await updater.refresh_once() is True

    registry.body = federation.signed(6)
    assert await updater.refresh_once() is False
    current = updater.current()
    assert current is not None and current.serial == 7
    assert content(doc_path) == good
    assert read_state(doc_path) == {"serial": 7}


async def test_document_signed_by_an_unknown_key_keeps_the_last_good_document(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    good = federation.signed(1)
    registry.body = good
    updater = make_updater()
    await updater.start()
    assert await updater.refresh_once() is True

    registry.body = federation.signed(2, key=federation.rogue_key)
    assert await updater.refresh_once() is False
    assert content(doc_path) == good


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversize_document_keeps_the_last_good_document(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path, chunked: bool
) -> None:
    good = federation.signed(1)
    big = bigger_document(federation, 2)
    assert len(big) > len(good) + 1024
    # the big document is valid in itself: only its size is against it
    assert TrustedGlobalConf(federation.anchor()).update(big, NOW).serial == 2

    registry.body, registry.chunked = good, chunked
    updater = make_updater(settings=dataclasses.replace(SETTINGS, max_size_bytes=len(good) + 16))
    await updater.start()
    assert await updater.refresh_once() is True

    registry.body = big
    assert await updater.refresh_once() is False
    current = updater.current()
    assert current is not None and current.serial == 1
    assert content(doc_path) == good


async def test_unreachable_registry_returns_false(make_updater: MakeUpdater, doc_path: Path) -> None:
    updater = make_updater(urls=(unreachable_url(),))
    await updater.start()
    assert await updater.refresh_once() is False
    assert updater.current() is None
    assert content(doc_path) is None


async def test_next_registry_address_is_tried_when_the_first_fails(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    registry.body = federation.signed(1)
    updater = make_updater(urls=(unreachable_url(), registry.url))
    await updater.start()
    assert await updater.refresh_once() is True
    assert content(doc_path) == registry.body


async def test_background_poll_adopts_the_first_document(
    make_updater: MakeUpdater, registry: Registry, federation: Federation, doc_path: Path
) -> None:
    registry.body = federation.signed(1)
    updater = make_updater()
    await updater.start()
    await asyncio.wait_for(updater.updated.wait(), timeout=5)
    assert content(doc_path) == registry.body


async def test_close_is_safe_before_start(make_updater: MakeUpdater) -> None:
    updater = make_updater()
    await updater.close()
    assert updater.current() is None


async def test_document_that_cannot_be_persisted_is_not_adopted(
    federation: Federation, registry: Registry, clock: FixedClock, tmp_path: Path
) -> None:
    # "persisted atomically before it is used": when writing fails, nothing is swapped in
    registry.body = federation.signed(1)
    doc_path = tmp_path / "not-yet-created" / "globalconf.jws"
    updater = GlobalConfUpdater(
        TrustedGlobalConf(federation.anchor((registry.url,))), doc_path, SETTINGS, clock
    )
    await updater.start()
    try:
        adopted = await updater.refresh_once()
    finally:
        await updater.close()
    assert adopted is False
    assert updater.current() is None


async def test_polling_survives_a_failed_persist_and_persists_later(
    federation: Federation, registry: Registry, clock: FixedClock, tmp_path: Path
) -> None:
    registry.body = federation.signed(1)
    doc_path = tmp_path / "not-yet-created" / "globalconf.jws"
    settings = dataclasses.replace(SETTINGS, poll_interval_s=0.1)
    updater = GlobalConfUpdater(
        TrustedGlobalConf(federation.anchor((registry.url,))), doc_path, settings, clock
    )
    await updater.start()
    try:
        await asyncio.wait_for(registry.answered.wait(), timeout=2)
        await asyncio.sleep(0.05)  # the first poll has failed to write
        make_dir(doc_path.parent)
        await asyncio.wait_for(updater.updated.wait(), timeout=2.5)
        assert content(doc_path) == registry.body
    finally:
        await updater.close()


def test_short_writes_still_persist_the_whole_document_and_state(
    tmp_path: Path, federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk filling up makes a write short: the store writes on, never renames a part.
    real_write = os.write

    def short_write(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, bytes(data[:100]))

    monkeypatch.setattr(gateway.confclient.state.os, "write", short_write)
    document = federation.signed(7)
    state = json.dumps({"serial": 7, "padding": "x" * 500}).encode()
    FileStateStore(tmp_path / "globalconf.jws").save(document, 7, state)
    persisted = FileStateStore(tmp_path / "globalconf.jws").load()
    assert persisted == Persisted(document, state.decode())
    assert len(document) > 100
