"""Replicas of one security server sharing PostgreSQL, and that database going away.

* Paderborn's security server runs as two replicas (same identity and keys, one shard of
  the message log each) behind a round-robin TCP balancer.  One replica is killed with
  SIGKILL under load: the other keeps serving, and every exchange the client saw succeed
  has its request and response in one of the two shards and in the provider's log.  An
  auditor verifies both shards with one command.  The replicas share their token keys
  through the database: a token issued for one is accepted by the other.
* The database of both servers goes away (the connection to it is cut): exchanges are
  refused with ``Server.ClientProxy.LoggingFailed`` and nothing is forwarded; when it is
  back, the servers serve again and their logs verify.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.messagelog.record import Direction
from gateway.messagelog.store import MessageLogStore, PostgresLogShard
from tests.databases import new_postgres_database
from tests.integration.conftest import prepare_federation
from tests.integration.test_durability import NotingBackend, _plan, post_journal, readiness
from tests.tcpproxy import TcpProxy
from xweg.federation import Layout, Process, RunningFederation

pytestmark = pytest.mark.integration

CLIENTS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _send(port: int, stop: threading.Event, acknowledged: list[tuple[float, str]]) -> None:
    """POST one exchange after another, a connection each (so the balancer spreads them);
    note the time and message id of every 200."""
    while not stop.is_set():
        try:
            status, headers, _ = post_journal(port)
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)  # the replica died under this request: not acknowledged
            continue
        if status == 200:
            acknowledged.append((time.monotonic(), headers["X-Road-Id"]))


def _second_replica(layout: Layout, slug: str, shard: str) -> tuple[Process, Path, int]:
    """Another replica of server ``slug``: the same identity, keys and database, listeners
    of its own, its own data folder (with the internal TLS certificate of the first: the
    token keys are in the database they share) and its own shard."""
    config = layout.server_config(slug)
    text = config.read_text()
    for listener in ("client", "peer", "management"):
        old = layout.ports[f"{slug}.{listener}"]
        assert text.count(f"port = {old}\n") == 1
        text = text.replace(f"port = {old}\n", f"port = {_free_port()}\n")
    client_port = int(text.split("[client_listener]", 1)[1].split("port = ", 1)[1].split("\n", 1)[0])
    assert text.count('data_dir = "data"\n') == 1 and "[messagelog]" not in text
    text = text.replace('data_dir = "data"\n', f'data_dir = "data-{shard}"\n')
    text += f'\n[messagelog]\nshard = "{shard}"\n'
    replica_config = config.with_name(f"server-{shard}.toml")
    replica_config.write_text(text)
    first, second = layout.server_dir(slug) / "data", layout.server_dir(slug) / f"data-{shard}"
    second.mkdir()
    for name in ("internal-tls.key", "internal-tls.pem"):
        shutil.copy2(first / name, second / name)
    process = Process(
        f"{slug}-{shard}",
        ["gateway", "serve", "--config", str(replica_config)],
        layout.root / "logs" / f"{slug}-{shard}.log",
    )
    process.start()
    deadline = time.monotonic() + 60
    while readiness(client_port) != 200:
        assert process.alive(), process.log_tail()
        assert time.monotonic() < deadline, "the second replica did not get ready\n" + process.log_tail()
        time.sleep(0.2)
    return process, replica_config, client_port


def _auditor_token(config: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "xweg", "token", "issue", "--role", "auditor", "--subject", "Prüfamt"]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def _search_status(port: int, token: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/audit/v1/records?limit=1", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _logged(location: PostgresLogShard) -> dict[Direction, set[str]]:
    found: dict[Direction, set[str]] = {Direction.REQUEST: set(), Direction.RESPONSE: set()}
    with MessageLogStore.open_readonly(location) as store:
        for record in store.iter_records():
            found[record.direction].add(record.message_id)
    return found


def _audit(database: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "xweg", "audit", "verify", database, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def backend() -> Iterator[NotingBackend]:
    with NotingBackend() as noting:
        yield noting


def test_two_replicas_behind_a_balancer_survive_the_loss_of_one(
    tmp_path: Path, backend: NotingBackend
) -> None:
    layout = prepare_federation(
        tmp_path / "federation", _plan(backend.port), database_url=new_postgres_database("xweg_replicas")
    )
    federation = RunningFederation(layout)
    with federation.running(timeout_s=90):
        replica_b, config_b, port_b = _second_replica(layout, "paderborn", "b")
        port_a = int(layout.client_url("paderborn").rsplit(":", 1)[1])
        try:
            # One token key for both: what one replica's operator issued, the other accepts.
            for token in (_auditor_token(layout.server_config("paderborn")), _auditor_token(config_b)):
                assert _search_status(port_a, token) == 200
                assert _search_status(port_b, token) == 200
            assert not (layout.server_dir("paderborn") / "data-b" / "auditor-token.key").exists()
            # ...and one record of those queries, whichever replica answered.
            with psycopg.connect(str(layout.server_database_url("paderborn"))) as connection:
                answered = connection.execute(
                    "SELECT replica, count(*) FROM auditor_queries.auditor_queries"
                    " WHERE status = 200 GROUP BY replica ORDER BY replica"
                ).fetchall()
            assert answered == [("b", 2), ("main", 2)]
            with TcpProxy([port_a, port_b]) as balancer:
                stop = threading.Event()
                acknowledged: list[tuple[float, str]] = []
                clients = [
                    threading.Thread(target=_send, args=(balancer.port, stop, acknowledged))
                    for _ in range(CLIENTS)
                ]
                for client in clients:
                    client.start()
                try:
                    time.sleep(1.5)
                    both_served = dict(balancer.connections)
                    killed_at = time.monotonic()
                    federation.processes["paderborn"].kill()  # replica a: SIGKILL, mid-exchange
                    time.sleep(2.5)
                finally:
                    stop.set()
                    for client in clients:
                        client.join(30)
            assert both_served.get(port_a, 0) > 0 and both_served.get(port_b, 0) > 0, both_served
            before = [message for at, message in acknowledged if at < killed_at]
            after = [message for at, message in acknowledged if at > killed_at + 0.5]
            assert len(before) >= 5, "the load did not get going before the kill"
            # The survivor served on: the balancer sent everything to it.
            assert len(after) >= 5, f"only {len(after)} exchanges succeeded after one replica was killed"
        finally:
            replica_b.stop()
    # Every acknowledged exchange is in one of the consumer's two shards, and at the provider.
    consumer = layout.server_database_url("paderborn")
    assert consumer is not None
    shard_a, shard_b = _logged(PostgresLogShard(consumer, "main")), _logged(PostgresLogShard(consumer, "b"))
    provider = _logged(PostgresLogShard(str(layout.server_database_url("detmold")), "main"))
    for _, message_id in acknowledged:
        in_a = message_id in shard_a[Direction.REQUEST] and message_id in shard_a[Direction.RESPONSE]
        in_b = message_id in shard_b[Direction.REQUEST] and message_id in shard_b[Direction.RESPONSE]
        assert in_a != in_b, f"{message_id}: in shard a {in_a}, in shard b {in_b}"
        assert message_id in provider[Direction.REQUEST] and message_id in provider[Direction.RESPONSE]
    assert shard_a[Direction.REQUEST] and shard_b[Direction.REQUEST]
    received = backend.snapshot()
    assert received and received <= provider[Direction.REQUEST]
    # One command verifies every shard of the server.
    report = _audit(consumer)
    assert report["intact"] is True
    shards = report["shards"]
    assert isinstance(shards, dict) and sorted(shards) == ["b", "main"]
    assert sum(shards[name]["records"] for name in shards) >= 2 * len(acknowledged)


def test_the_database_going_away_refuses_traffic_and_recovers(tmp_path: Path, backend: NotingBackend) -> None:
    with TcpProxy([5432]) as database:
        direct = new_postgres_database("xweg_dbgone")
        through_proxy = direct.replace("127.0.0.1:5432", f"127.0.0.1:{database.port}")
        layout = prepare_federation(tmp_path / "federation", _plan(backend.port), database_url=through_proxy)
        federation = RunningFederation(layout)
        with federation.running(timeout_s=90):
            port = int(layout.client_url("paderborn").rsplit(":", 1)[1])
            assert post_journal(port)[0] == 200
            before = backend.snapshot()

            database.cut()
            refused = [post_journal(port) for _ in range(3)]
            for status, headers, body in refused:
                assert status == 500
                assert headers["X-Road-Error"] == "Server.ClientProxy.LoggingFailed"
                assert json.loads(body)["type"] == "Server.ClientProxy.LoggingFailed"
            # Nothing was forwarded: a request is logged before it leaves, or it does not leave.
            assert backend.snapshot() == before
            assert readiness(port) == 503

            database.restore()
            deadline = time.monotonic() + 30
            while (status := post_journal(port)[0]) != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert status == 200, "the server did not serve again after the database came back"
            deadline = time.monotonic() + 30
            while readiness(port) != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert readiness(port) == 200
        for slug in ("paderborn", "detmold"):
            report = _audit(str(layout.server_database_url(slug)).replace(f":{database.port}/", ":5432/"))
            assert report["intact"] is True, report
