"""A running security server from the outside: alive and ready, and how it stops.

Each test runs a complete server (:mod:`tests.unit.gateway.running_server`): in this
event loop with :func:`gateway.server.serve` and a stop event, or as ``xweg gateway
serve`` in a process of its own, stopped with SIGTERM.  Exchanges go from its client
listener through its own peer listener to a backend the test runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.unit.gateway.running_server import (
    MEMBER,
    Pki,
    ServerFiles,
    exchange,
    running_backend,
    serving,
    write_server,
)
from trust.keys import make_csr


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki.create()


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


def problems(body: dict[str, Any]) -> dict[str, list[str]]:
    """The failed checks of a /readyz body, by name."""
    return {c["name"]: c["problems"] for c in body["checks"] if not c["ok"]}


# -- alive and ready ------------------------------------------------------------------------------


async def test_a_ready_server_answers_both_probes_and_exchanges(tmp_path: Path, pki: Pki) -> None:
    async with running_backend() as backend:
        files = write_server(tmp_path, pki, backend.url)
        async with serving(files):
            status, alive = await get_json(files.url + "/healthz")
            assert (status, alive) == (200, {"status": "alive", "server": "NRW/MUN/05774032/ss1"})
            status, ready = await get_json(files.url + "/readyz")
            assert (status, ready["ready"], problems(ready)) == (200, True, {})
            assert [c["name"] for c in ready["checks"]] == [
                "globalconf",
                "certificates",
                "ocsp",
                "message_log",
                "timestamping",
            ]
            assert ready["globalconf_serial"] == 1
            assert ready["ocsp_ready"] is True
            async with aiohttp.ClientSession() as session:
                answer = await exchange(session, files)
                assert answer.status == 200, await answer.text()
                assert (await answer.json())["path"] == "/api/anzeigen"


async def test_without_configuration_or_ocsp_it_is_alive_but_not_ready(tmp_path: Path, pki: Pki) -> None:
    files = write_server(tmp_path, pki, "http://127.0.0.1:9/", with_globalconf=False, with_ocsp=False)
    async with serving(files):
        assert (await get_json(files.url + "/healthz"))[0] == 200
        status, ready = await get_json(files.url + "/readyz")
        assert (status, ready["ready"]) == (503, False)
        failed = problems(ready)
        assert failed.keys() == {"globalconf", "ocsp"}
        assert failed["globalconf"] == ["no valid global configuration has been received yet"]
        assert len(failed["ocsp"]) == 2  # the auth and the sign certificate
        assert failed["ocsp"][0].startswith("no OCSP response is held for the auth certificate")
        assert ready["globalconf_serial"] is None


async def test_an_expired_sign_certificate_makes_it_unready(tmp_path: Path, pki: Pki) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = pki.ca.issue_sign_certificate(
        make_csr(pki.sign_key, "m"), MEMBER, now=long_ago, validity=dt.timedelta(days=10)
    )
    files = write_server(tmp_path, pki, "http://127.0.0.1:9/", sign_cert=expired)
    async with serving(files):
        status, ready = await get_json(files.url + "/readyz")
        assert status == 503
        [problem] = problems(ready)["certificates"]
        assert problem.startswith(f"sign certificate of {MEMBER.slash()}")
        assert "expired at" in problem


def _fail_every_log_insert(path: Path, on: bool) -> None:
    with sqlite3.connect(path) as db:
        if on:
            db.execute(
                "CREATE TRIGGER fail_insert BEFORE INSERT ON records "
                "BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END"
            )
        else:
            db.execute("DROP TRIGGER fail_insert")


async def test_a_failed_log_commit_makes_it_unready_until_a_commit_succeeds(tmp_path: Path, pki: Pki) -> None:
    async with running_backend() as backend:
        files = write_server(tmp_path, pki, backend.url)
        log_path = files.config().message_log
        async with serving(files), aiohttp.ClientSession() as session:
            _fail_every_log_insert(log_path, on=True)
            failed = await exchange(session, files)
            assert failed.headers["X-Road-Error"] == "Server.ClientProxy.LoggingFailed"
            assert backend.calls == 0  # nothing moved on that was not logged
            status, ready = await get_json(files.url + "/readyz")
            assert status == 503
            [problem] = problems(ready)["message_log"]
            assert problem.startswith("the last commit failed") and "simulated I/O error" in problem

            _fail_every_log_insert(log_path, on=False)
            assert (await exchange(session, files)).status == 200
            assert (await get_json(files.url + "/readyz"))[0] == 200


# -- stopping -------------------------------------------------------------------------------------


async def _refused(port: int, timeout_s: float = 5.0) -> float:
    """Seconds until a new connection to ``port`` is refused."""
    started = time.monotonic()
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return time.monotonic() - started
        except ConnectionResetError:
            # Caught in the backlog as the listening socket closed: try once more.
            continue
        writer.close()
        assert time.monotonic() - started < timeout_s, f"port {port} still accepts connections"
        await asyncio.sleep(0.02)


async def test_stop_lets_the_exchange_in_flight_finish_and_refuses_new_connections(
    tmp_path: Path, pki: Pki
) -> None:
    async with running_backend(delay_s=1.5) as backend:
        files = write_server(tmp_path, pki, backend.url)
        async with serving(files) as (stop, task), aiohttp.ClientSession() as session:
            in_flight = asyncio.create_task(exchange(session, files))
            await backend.wait_for(1)
            stopped_at = time.monotonic()
            stop.set()
            await _refused(files.client_port)
            await _refused(files.peer_port)
            assert not in_flight.done()
            answer = await in_flight
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["path"] == "/api/anzeigen"
            await asyncio.wait_for(task, 10)
            assert time.monotonic() - stopped_at < 10


async def test_an_exchange_longer_than_the_shutdown_timeout_is_cut(tmp_path: Path, pki: Pki) -> None:
    async with running_backend(delay_s=60) as backend:
        files = write_server(tmp_path, pki, backend.url, limits={"shutdown_timeout_s": 1})
        async with serving(files) as (stop, task), aiohttp.ClientSession() as session:
            in_flight = asyncio.create_task(exchange(session, files))
            await backend.wait_for(1)
            stopped_at = time.monotonic()
            stop.set()
            await asyncio.wait_for(task, 10)
            # One timeout for both listeners side by side, plus cancellation: well under two.
            assert time.monotonic() - stopped_at < 3.5
            with pytest.raises(aiohttp.ClientError):
                await in_flight


async def test_sigterm_stops_the_process_gracefully_and_it_exits_0(tmp_path: Path, pki: Pki) -> None:
    async with running_backend(delay_s=1.5) as backend:
        files = write_server(tmp_path, pki, backend.url)
        log_path = tmp_path / "gateway.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "xweg",
                "gateway",
                "serve",
                "--config",
                str(files.config_path),
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            await _until_ready(files, process, log_path)
            async with aiohttp.ClientSession() as session:
                in_flight = asyncio.create_task(exchange(session, files))
                await backend.wait_for(1)
                stopped_at = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await _refused(files.client_port)
                answer = await in_flight
                assert answer.status == 200, await answer.text()
            assert await asyncio.wait_for(process.wait(), 15) == 0, _tail(log_path)
            assert time.monotonic() - stopped_at < 15
            assert "listeners.draining" in log_path.read_text()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def _tail(log_path: Path) -> str:
    return log_path.read_text()[-2000:]


async def _until_ready(files: ServerFiles, process: asyncio.subprocess.Process, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.returncode is None, _tail(log_path)
        assert time.monotonic() < deadline, "the server did not become ready:\n" + _tail(log_path)
        try:
            if (await get_json(files.url + "/readyz"))[0] == 200:
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
