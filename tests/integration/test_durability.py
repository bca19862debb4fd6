"""Durability under faults: a killed security server, and a full disk.

Load runs through Paderborn's and Detmold's servers to a backend that notes every message
id it receives.

* One of the two servers is killed with SIGKILL at a random moment.  After it is started
  again, every exchange the client saw succeed has its request and its response in both
  logs, every message the backend received is in the provider's log (logged before
  forwarded), both logs verify, and the restarted server serves again.
* The consumer's data directory fills up.  The server refuses traffic with
  ``Server.ClientProxy.LoggingFailed`` and says it is not ready, forwards nothing, and
  serves again once there is room; its log verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from core.identifiers import SecurityServerId
from gateway.messagelog.record import Direction
from gateway.messagelog.store import MessageLogStore, PostgresLogShard
from tests.integration.conftest import ARBEITSSCHUTZ, GEWERBEAMT, prepare_federation
from xweg.federation import (
    DETMOLD,
    PADERBORN,
    FederationPlan,
    Layout,
    MemberPlan,
    RunningFederation,
    ServerPlan,
    ServicePlan,
    rest_path,
)

pytestmark = pytest.mark.integration

JOURNAL = ARBEITSSCHUTZ.service("journal", "v1")
CLIENTS = 4  # concurrent connections of the information system


class NotingBackend:
    """An HTTP backend on its own thread that notes the X-Road-Id of every request it gets."""

    def __init__(self) -> None:
        self.received: set[str] = set()
        self._lock = threading.Lock()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _note(self, request: web.Request) -> web.Response:
        await request.read()
        with self._lock:
            self.received.add(request.headers.get("X-Road-Id", ""))
        return web.json_response({"noted": True})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._note)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> NotingBackend:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self.received)


def _plan(backend_port: int) -> FederationPlan:
    return FederationPlan(
        members=(
            MemberPlan(DETMOLD, "Bezirksregierung Detmold", ("arbeitsschutz",)),
            MemberPlan(PADERBORN, "Stadt Paderborn", ("gewerbeamt",)),
        ),
        servers=(
            ServerPlan(
                "detmold",
                "Bezirksregierung Detmold",
                SecurityServerId(DETMOLD, "ss1"),
                (ARBEITSSCHUTZ,),
                (
                    ServicePlan(
                        JOURNAL,
                        "gewerbeanzeige",
                        "notes what it receives",
                        (GEWERBEAMT.slash(),),
                        base_url=f"http://127.0.0.1:{backend_port}",
                    ),
                ),
            ),
            ServerPlan("paderborn", "Stadt Paderborn", SecurityServerId(PADERBORN, "ss1"), (GEWERBEAMT,)),
        ),
        timestamp_interval_s=1.0,
    )


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[RunningFederation, NotingBackend]]:
    with NotingBackend() as backend:
        running = RunningFederation(prepare_federation(tmp_path / "federation", _plan(backend.port)))
        with running.running(timeout_s=90):
            yield running, backend


def _client_port(layout: Layout) -> int:
    """The port of Paderborn's client listener, where the information system calls."""
    return int(layout.client_url("paderborn").rsplit(":", 1)[1])


def _send(layout: Layout, stop: threading.Event, acknowledged: list[str], attempts: list[int]) -> None:
    """POST one exchange after another until ``stop``; note the message id of every 200."""
    port = _client_port(layout)
    path = rest_path(JOURNAL, "/eintrag")
    connection: http.client.HTTPConnection | None = None
    while not stop.is_set():
        attempts.append(1)
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request(
                "POST",
                path,
                body=json.dumps({"n": len(attempts)}).encode(),
                headers={"X-Road-Client": GEWERBEAMT.slash(), "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                acknowledged.append(response.headers["X-Road-Id"])
        except (OSError, http.client.HTTPException):
            # The server died under this request: it was not acknowledged; start over.
            if connection is not None:
                connection.close()
            connection = None
            time.sleep(0.05)


def _logged(layout: Layout, slug: str) -> dict[Direction, set[str]]:
    with MessageLogStore.open_readonly(layout.message_log(slug)) as store:
        found: dict[Direction, set[str]] = {Direction.REQUEST: set(), Direction.RESPONSE: set()}
        for record in store.iter_records():
            found[record.direction].add(record.message_id)
    return found


def _audit(layout: Layout, slug: str) -> dict[str, object]:
    """``xweg audit verify --json`` of a server's log (its file, or its shard in PostgreSQL)."""
    location = layout.message_log(slug)
    target = (
        [location.url, "--shard", location.shard]
        if isinstance(location, PostgresLogShard)
        else [str(location)]
    )
    done = subprocess.run(
        [sys.executable, "-m", "xweg", "audit", "verify", *target, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    if isinstance(location, PostgresLogShard):
        assert summary["intact"] is True, summary
        return summary["shards"][location.shard]  # type: ignore[no-any-return]
    return summary  # type: ignore[no-any-return]


@pytest.mark.parametrize("victim", ["detmold", "paderborn"])
def test_a_server_killed_under_load_keeps_every_acknowledged_exchange(
    chain: tuple[RunningFederation, NotingBackend], victim: str
) -> None:
    federation, backend = chain
    layout = federation.layout
    stop = threading.Event()
    acknowledged: list[str] = []
    attempts: list[int] = []
    clients = [
        threading.Thread(target=_send, args=(layout, stop, acknowledged, attempts)) for _ in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        time.sleep(random.uniform(0.8, 2.0))  # noqa: S311 -- a random moment, not a secret
        federation.processes[victim].kill()  # SIGKILL: no drain, no close, no final commit
        time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(30)
    acknowledged_before_restart = set(acknowledged)
    assert len(acknowledged_before_restart) >= 5, "the load did not get going before the kill"
    assert len(attempts) > len(acknowledged_before_restart), "the kill interrupted nothing"

    federation.processes[victim].start()
    federation.wait_ready(60, names=[victim])
    # The restarted server serves again.
    again: list[str] = []
    once = threading.Event()
    threading.Timer(2.0, once.set).start()
    _send(layout, once, again, [])
    assert again, "no exchange succeeded after the restart"

    federation.stop()  # both logs closed, then read as an auditor would
    consumer, provider = _logged(layout, "paderborn"), _logged(layout, "detmold")
    for message_id in acknowledged_before_restart | set(again):
        assert message_id in consumer[Direction.REQUEST] and message_id in consumer[Direction.RESPONSE]
        assert message_id in provider[Direction.REQUEST] and message_id in provider[Direction.RESPONSE]
    # Nothing reached the backend that the provider had not logged first.
    received = backend.snapshot()
    assert received and received <= provider[Direction.REQUEST]
    for slug in ("paderborn", "detmold"):
        summary = _audit(layout, slug)
        assert summary["first_error"] is None, summary
        assert isinstance(summary["records"], int) and summary["records"] >= 2 * len(
            acknowledged_before_restart
        )


@contextlib.contextmanager
def _small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` MiB mounted at ``path``, for the length of the block."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs mount, which this machine refuses: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system has no room left."""
    filler = folder / "filler"
    chunk = b"\0" * (256 * 1024)
    with filler.open("wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 512)
    return filler


def _post(layout: Layout) -> tuple[int, dict[str, str], bytes]:
    return post_journal(_client_port(layout))


def post_journal(port: int) -> tuple[int, dict[str, str], bytes]:
    """One exchange with the journal service through the client listener at ``port``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            rest_path(JOURNAL, "/eintrag"),
            body=b'{"n": 1}',
            headers={"X-Road-Client": GEWERBEAMT.slash(), "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


def _ready(layout: Layout) -> int:
    return readiness(_client_port(layout))


def readiness(port: int) -> int:
    """The status ``/readyz`` answers at ``port``; 0 if nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as a full disk needs root")
def test_a_full_disk_refuses_traffic_with_logging_failed_and_recovers(tmp_path: Path) -> None:
    root = tmp_path / "federation"
    with NotingBackend() as backend, _small_disk(root / "servers" / "paderborn" / "data", 48) as data:
        # SQLite on purpose, whatever the run's database: this is the full disk of that path.
        running = RunningFederation(prepare_federation(root, _plan(backend.port), database_url=None))
        with running.running(timeout_s=90):
            layout = running.layout
            status, headers, _ = _post(layout)
            assert status == 200
            before = backend.snapshot()

            filler = _fill(data)
            refused = [_post(layout) for _ in range(3)]
            for status, headers, body in refused:
                assert status == 500
                assert headers["X-Road-Error"] == "Server.ClientProxy.LoggingFailed"
                assert json.loads(body)["type"] == "Server.ClientProxy.LoggingFailed"
            # Nothing of it was forwarded: the request is logged before it leaves, or not at all.
            assert backend.snapshot() == before
            assert _ready(layout) == 503

            filler.unlink()
            deadline = time.monotonic() + 30
            while (status := _post(layout)[0]) != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert status == 200
            assert _ready(layout) == 200
        summary = _audit(layout, "paderborn")
        assert summary["first_error"] is None, summary
