"""The side-by-side benchmark, run for real: wrk against a server that counts, and ``python -m bench``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from bench.chain import HEADLINE_KEYS, ROWS, TARGETS
from bench.tools import find_program, run_wrk, wrk_script
from tests.databases import new_postgres_database, postgres_requested

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_program("wrk") is None, reason="wrk is not installed (Debian package wrk; .ci/run installs it)"
    ),
]
ROOT = Path(__file__).resolve().parents[2]


async def test_wrk_reports_what_the_server_saw(tmp_path: Path, unused_tcp_port: int) -> None:
    sizes: list[int] = []
    headers: set[str] = set()

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        sizes.append(len(body))
        headers.add(request.headers.get("X-Road-Client", ""))
        # Every fifth request fails: wrk must count those as errors, not as throughput.
        return web.Response(status=500 if len(sizes) % 5 == 0 else 200, text="ok")

    app = web.Application()
    app.router.add_post("/echo", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        script = tmp_path / "load.lua"
        script.write_text(wrk_script("POST", 1000, {"X-Road-Client": "NRW/MUN/05774032/gewerbeamt"}))
        wrk = find_program("wrk")
        assert wrk is not None
        result = await asyncio.to_thread(
            run_wrk,
            wrk,
            f"http://127.0.0.1:{unused_tcp_port}/echo",
            script,
            connections=4,
            threads=1,
            duration_s=1,
        )
    finally:
        await runner.cleanup()
    assert result.requests > 50
    assert set(sizes) == {1000} and headers == {"NRW/MUN/05774032/gewerbeamt"}
    # The server saw every request wrk counted (and perhaps a few it had in flight at the end).
    assert result.requests <= len(sizes) <= result.requests + 4
    assert abs(result.errors - len(sizes) // 5) <= 4
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms


def test_the_benchmark_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    # The PostgreSQL run of the suite benchmarks the xweg chain on PostgreSQL.
    database = ["--database-url", new_postgres_database("xweg_bench")] if postgres_requested() else []
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--duration",
            "1",
            "--connections",
            "8",
            "--out",
            str(out),
            *database,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(HEADLINE_KEYS) <= set(report)
    assert report["direct_rps"] > report["xweg_chain_rps"] > 0
    assert report["added_latency_c1_p50_ms"] > 0
    assert 30 < report["rss_mb_max"] < 2000
    assert report["large_body_rss_growth_mb"] is not None
    assert set(report["targets"]) == set(TARGETS)
    assert report["settings"]["xweg_database"] == (database[1] if database else "sqlite")
    assert set(report["cases"]) == {"1KiB", "64KiB"}
    nginx = find_program("nginx") is not None
    for size, rows in report["cases"].items():
        assert set(rows) == set(ROWS)
        for name, row in rows.items():
            if name == "nginx_chain" and not nginx:
                assert row is None
                continue
            assert row["load"]["errors"] == 0 and row["c1"]["errors"] == 0, (size, name, row)
            assert row["load"]["requests"] > 0 and row["c1"]["requests"] > 0
    for name, large in report["large_body"].items():
        if name == "nginx_chain" and not nginx:
            assert large is None
        else:
            assert large["status"] == 200, (name, large)
    assert (report["nginx_chain_rps"] is None) == (not nginx)
    assert "1 KiB bodies (headline)" in done.stdout and "xweg_vs_nginx" in done.stdout
