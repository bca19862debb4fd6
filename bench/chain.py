"""``python -m bench [--quick] [--out PATH] [--database-url URL]``: xweg's chain beside a
direct call and an nginx chain.

On one machine, in one run, against one backend (nginx ``return 200`` when nginx is
installed, else a small aiohttp responder), three ways to the same service:

a. **direct**: the load generator calls the backend;
b. **nginx chain**: two nginx reverse proxies, plain HTTP in, mutual TLS with pooled
   keep-alive connections between the hops, keep-alive to the backend (skipped, and
   said so, when nginx is not installed);
c. **xweg chain**: a consumer security server and a provider security server, each its
   own process, with everything on: the X-Road REST protocol, signatures, OCSP,
   access rights, the durable message log with group commit, and timestamping.

Every row gets wrk at a fixed concurrency (requests/s) and at concurrency 1 (latency),
for 1 KiB and 64 KiB request bodies; then one 10 MiB body goes through each row, timed,
with the growth of each security server's resident memory (its peak, reset just before,
less its size before).  The 1 KiB case gives the headline figures (see
:data:`TARGETS`); :func:`summarise` names them.  Results go to stdout as a table and to
``--out`` (default ``bench/results/latest.json``) as JSON.  ``--database-url
postgresql://...`` runs the xweg chain on PostgreSQL (registry and both servers, as
``xweg demo --database-url`` does); the report's settings say which database it used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench.tools import (
    LoadResult,
    find_program,
    missing_programs,
    read_memory,
    reset_peak_rss,
    run_wrk,
    wrk_script,
)
from gateway.database import redact_url

__all__ = ["DEFAULT_OUT", "HEADLINE_KEYS", "ROWS", "TARGETS", "Settings", "add_arguments", "run", "summarise"]

DEFAULT_OUT = Path("bench/results/latest.json")
KIB = 1024
MIB = 1024 * KIB
LARGE_BODY = 10 * MIB
#: The issue's targets, on a 2-core machine with the load generator on the same cores.
TARGETS: dict[str, tuple[str, float]] = {
    "xweg_vs_nginx": (">=", 0.30),
    "added_latency_c1_p50_ms": ("<=", 1.5),
    "added_latency_c1_p99_ms": ("<=", 5.0),
    "rss_mb_max": ("<=", 120.0),
    # "never held more than once": growth below three times the body
    "large_body_rss_growth_mb": ("<", 3 * LARGE_BODY / MIB),
}
ROWS = ("direct", "nginx_chain", "xweg_chain")
#: The report's top-level figures (the 1 KiB case, and the 10 MiB body's memory).
HEADLINE_KEYS = (
    "direct_rps",
    "nginx_chain_rps",
    "xweg_chain_rps",
    "xweg_vs_nginx",
    "xweg_vs_direct",
    "added_latency_c1_p50_ms",
    "added_latency_c1_p99_ms",
    "rss_mb_max",
    "large_body_rss_growth_mb",
)
#: The name in the second nginx hop's certificate, which the first hop checks.
HOP2_NAME = "hop2.bench"


@dataclass(frozen=True)
class Settings:
    """How long and how hard each measurement runs."""

    duration_s: int  # each wrk run
    warmup_s: int
    connections: int  # the fixed concurrency of the throughput runs
    sizes: tuple[int, ...] = (KIB, 64 * KIB)
    #: PostgreSQL for the xweg chain's registry and servers (message logs, opmon, ...);
    #: None: SQLite files, the default deployment.
    database_url: str | None = None

    @classmethod
    def for_mode(cls, quick: bool, connections: int, duration_s: int | None = None) -> Settings:
        """``--quick``: 2 s runs, within a minute on 2 cores; else 10 s; ``duration_s`` overrides."""
        if duration_s is not None:
            return cls(duration_s=duration_s, warmup_s=1, connections=connections)
        if quick:
            return cls(duration_s=2, warmup_s=1, connections=connections)
        return cls(duration_s=10, warmup_s=2, connections=connections)


def size_key(size: int) -> str:
    return f"{size // MIB}MiB" if size % MIB == 0 else f"{size // KIB}KiB"


# ---------------------------------------------------------------- TLS for the nginx hops


def _write_tls(folder: Path) -> None:
    """A CA, a server certificate for the second hop and a client certificate for the first.

    P-256 and SHA-256, as the security servers' own certificates.
    """
    now = dt.datetime.now(dt.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def save(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, stem: str) -> None:
        (folder / f"{stem}.key").write_bytes(
            key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        )
        (folder / f"{stem}.pem").write_bytes(cert.public_bytes(Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("bench CA"))
        .issuer_name(name("bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    save(ca_key, ca, "ca")
    for stem, usage, names in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName(HOP2_NAME)]),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("hop1.bench")]),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"bench {stem}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        save(key, cert, stem)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} does not listen on {port} after {timeout_s:.0f} s")


@dataclass
class Started:
    """Processes started by the benchmark, stopped in reverse order at the end."""

    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def add(self, what: str, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.processes.append((what, process))
        return process

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


_NGINX_MAIN = """\
{user}worker_processes {workers};
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    client_max_body_size 20m;
    # 64 KiB bodies stay in memory; larger ones stream through (no temporary files).
    client_body_buffer_size 128k;
    proxy_request_buffering off;
    keepalive_requests 1000000;
{servers}
}}
"""


def _nginx_config(folder: Path, servers: str, workers: int) -> str:
    # Run as root, nginx would hand its workers to "nobody", who cannot read this folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return _NGINX_MAIN.format(user=user, folder=folder, servers=servers, workers=workers)


def start_nginx(
    nginx: str,
    folder: Path,
    servers: str,
    ports: list[int],
    started: Started,
    what: str,
    *,
    workers: int = 1,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)  # --keep may name a folder of an earlier run
    config = folder / "nginx.conf"
    config.write_text(_nginx_config(folder, servers, workers))
    process = started.add(
        what,
        subprocess.Popen(  # noqa: S603 -- nginx, found by find_program
            [
                nginx,
                "-p",
                str(folder),
                "-c",
                str(config),
                "-e",
                str(folder / "error.log"),
                "-g",
                "daemon off;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(folder / "stderr.log").open("wb"),
        ),
    )
    for port in ports:
        wait_for_port(port, process, what)


def nginx_backend_servers(port: int) -> str:
    return f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{{"ok":true}}';
        }}
    }}"""


def nginx_chain_servers(hop1: int, hop2: int, backend: int, tls: Path) -> str:
    """Hop 1: HTTP in, mutual TLS out; hop 2: mutual TLS in, HTTP to the backend.  Keep-alive
    (pooled upstream connections, TLS sessions reused) on every leg."""
    return f"""
    upstream hop2 {{ server 127.0.0.1:{hop2}; keepalive 64; keepalive_requests 1000000; }}
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{hop1} backlog=4096;
        location / {{
            proxy_pass https://hop2;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate {tls}/client.pem;
            proxy_ssl_certificate_key {tls}/client.key;
            proxy_ssl_trusted_certificate {tls}/ca.pem;
            proxy_ssl_verify on;
            proxy_ssl_name {HOP2_NAME};
            proxy_ssl_session_reuse on;
        }}
    }}
    server {{
        listen 127.0.0.1:{hop2} ssl backlog=4096;
        ssl_certificate {tls}/server.pem;
        ssl_certificate_key {tls}/server.key;
        ssl_client_certificate {tls}/ca.pem;
        ssl_verify_client on;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


def start_python_backend(port: int, started: Started) -> None:
    """Without nginx: an aiohttp responder answering every request ``200 {"ok":true}``."""
    code = (
        "import sys\n"
        "from aiohttp import web\n"
        "async def ok(request):\n"
        "    await request.read()\n"
        "    return web.Response(body=b'{\"ok\":true}', content_type='application/json')\n"
        "app = web.Application(client_max_size=64 * 1024 * 1024)\n"
        "app.router.add_route('*', '/{tail:.*}', ok)\n"
        "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None, access_log=None)\n"
    )
    process = started.add(
        "backend",
        subprocess.Popen(  # noqa: S603 -- our own interpreter
            [sys.executable, "-c", code, str(port)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        ),
    )
    wait_for_port(port, process, "the aiohttp backend")


# ---------------------------------------------------------------- the xweg chain


@dataclass(frozen=True)
class XwegChain:
    url: str  # where the load generator sends (the consumer server's client listener)
    headers: dict[str, str]
    pids: dict[str, int]  # security server slug -> process id
    logs: Path


@contextlib.contextmanager
def xweg_chain(
    folder: Path, backend_url: str, report: Callable[[str], None], database_url: str | None = None
) -> Iterator[XwegChain]:
    """A consumer server (Paderborn) and a provider server (Bielefeld) with one REST service,
    ``bench``, whose backend is ``backend_url``; registered through the registry as in the demo.
    ``database_url``: everything in PostgreSQL, as ``xweg demo --database-url`` does."""
    from core.identifiers import SecurityServerId
    from xweg.federation import (
        BIELEFELD,
        PADERBORN,
        FederationPlan,
        MemberPlan,
        RunningFederation,
        ServerPlan,
        ServicePlan,
        prepare,
        rest_path,
    )

    consumer_client = PADERBORN.subsystem("gewerbeamt")
    service = BIELEFELD.subsystem("meldewesen").service("bench", "v1")
    plan = FederationPlan(
        members=(
            MemberPlan(PADERBORN, "Stadt Paderborn", ("gewerbeamt",)),
            MemberPlan(BIELEFELD, "Stadt Bielefeld", ("meldewesen",)),
        ),
        servers=(
            ServerPlan(
                "paderborn", "Stadt Paderborn", SecurityServerId(PADERBORN, "ss1"), (consumer_client,)
            ),
            ServerPlan(
                "bielefeld",
                "Stadt Bielefeld",
                SecurityServerId(BIELEFELD, "ss1"),
                (BIELEFELD.subsystem("meldewesen"),),
                (
                    ServicePlan(
                        service,
                        "gewerbeanzeige",
                        "the benchmark's trivial responder",
                        (consumer_client.slash(),),
                        base_url=backend_url,
                    ),
                ),
            ),
        ),
        # Timestamp rounds run during the measurement, as they would in production.
        timestamp_interval_s=5.0,
    )
    layout = prepare(folder, plan, database_url=database_url)
    federation = RunningFederation(layout, report=None)
    report("starting the xweg chain (registry, OCSP, TSA, two security servers) ...")
    with federation.running(timeout_s=90.0):
        pids = {}
        for slug in ("paderborn", "bielefeld"):
            popen = federation.processes[slug].popen
            assert popen is not None  # running() started it
            pids[slug] = popen.pid
        yield XwegChain(
            url=layout.client_url("paderborn") + rest_path(service, "/echo"),
            headers={"X-Road-Client": consumer_client.slash(), "Content-Type": "application/octet-stream"},
            pids=pids,
            logs=layout.root / "logs",
        )


# ---------------------------------------------------------------- measuring


def post_once(url: str, body: bytes, headers: dict[str, str], timeout_s: float = 120.0) -> tuple[int, float]:
    """POST ``body`` once on a new connection; the status and the seconds until the answer was read."""
    target = url.removeprefix("http://")
    host_port, _, path = target.partition("/")
    host, _, port = host_port.partition(":")
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        connection.request("POST", "/" + path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


class PeakSampler:
    """Samples processes' RSS every few milliseconds (for kernels that refuse ``clear_refs``)."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.005) -> None:
        self._pids = pids
        self._interval_s = interval_s
        self.peaks = {slug: 0.0 for slug in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for slug, pid in self._pids.items():
                with contextlib.suppress(OSError, ValueError):
                    self.peaks[slug] = max(self.peaks[slug], read_memory(pid).rss_mb)
            self._stop.wait(self._interval_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def large_body_exchange(url: str, headers: dict[str, str], pids: dict[str, int]) -> dict[str, Any]:
    """One 10 MiB body through a row: its time, and each security server's RSS growth."""
    body = os.urandom(LARGE_BODY)
    before = {slug: read_memory(pid).rss_mb for slug, pid in pids.items()}
    reset = all(reset_peak_rss(pid) for pid in pids.values())
    with PeakSampler(pids) as sampler:
        status, seconds = post_once(url, body, headers)
    growth: dict[str, float] = {}
    for slug, pid in pids.items():
        peak = read_memory(pid).peak_rss_mb if reset else sampler.peaks[slug]
        growth[slug] = round(max(peak, sampler.peaks[slug]) - before[slug], 1)
    result: dict[str, Any] = {"status": status, "seconds": round(seconds, 3)}
    if pids and status == 200:  # a refused body says nothing about holding one
        result["rss_before_mb"] = {slug: round(mb, 1) for slug, mb in before.items()}
        result["rss_growth_mb"] = growth
        result["peak_measured_by"] = "clear_refs+VmHWM" if reset else "sampling every 5 ms"
    return result


@dataclass
class Row:
    name: str
    url: str
    headers: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)  # security servers whose memory counts


def measure_row(
    row: Row, size: int, settings: Settings, wrk: str, folder: Path, report: Callable[[str], None]
) -> dict[str, Any]:
    script = folder / f"{row.name}-{size}.lua"
    script.write_text(wrk_script("POST", size, row.headers))
    # Warm up: connections pooled, peer credentials fetched, code paths warm.
    run_wrk(wrk, row.url, script, connections=settings.connections, threads=1, duration_s=settings.warmup_s)
    loaded = run_wrk(
        wrk, row.url, script, connections=settings.connections, threads=1, duration_s=settings.duration_s
    )
    single = run_wrk(wrk, row.url, script, connections=1, threads=1, duration_s=settings.duration_s)
    result: dict[str, Any] = {"load": loaded.to_dict(), "c1": single.to_dict()}
    if row.pids:
        result["peak_rss_mb"] = {
            slug: round(read_memory(pid).peak_rss_mb, 1) for slug, pid in row.pids.items()
        }
    report(_row_line(row.name, size, loaded, single, result.get("peak_rss_mb")))
    return result


def _row_line(
    name: str, size: int, loaded: LoadResult, single: LoadResult, peaks: dict[str, float] | None
) -> str:
    rss = "" if not peaks else "  peak RSS " + ", ".join(f"{k} {v:.0f} MB" for k, v in peaks.items())
    errors = f"  ERRORS {loaded.errors + single.errors}" if loaded.errors + single.errors else ""
    return (
        f"  {name:<12} {size_key(size):>6}  {loaded.rps:>9.0f} req/s (c={loaded.connections})"
        f"  c=1 p50 {single.p50_ms:>6.2f} ms  p99 {single.p99_ms:>6.2f} ms{rss}{errors}"
    )


# ---------------------------------------------------------------- the report


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def _rps(row: dict[str, Any] | None) -> float | None:
    return None if row is None else float(row["load"]["rps"])


def _added(row: dict[str, Any] | None, direct: dict[str, Any] | None, figure: str) -> float | None:
    """How much more ``figure`` (a concurrency-1 latency) ``row`` shows than the direct row."""
    if row is None or direct is None:
        return None
    return round(float(row["c1"][figure]) - float(direct["c1"][figure]), 3)


def size_figures(rows: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue names for one body size, from that size's rows (``None``: skipped)."""
    direct, nginx, xweg = (rows.get(name) for name in ROWS)
    return {
        "direct_rps": _rps(direct),
        "nginx_chain_rps": _rps(nginx),
        "xweg_chain_rps": _rps(xweg),
        "xweg_vs_nginx": _ratio(_rps(xweg), _rps(nginx)),
        "xweg_vs_direct": _ratio(_rps(xweg), _rps(direct)),
        "nginx_vs_direct": _ratio(_rps(nginx), _rps(direct)),
        "added_latency_c1_p50_ms": _added(xweg, direct, "p50_ms"),
        "added_latency_c1_p99_ms": _added(xweg, direct, "p99_ms"),
        "nginx_added_latency_c1_p50_ms": _added(nginx, direct, "p50_ms"),
        "nginx_added_latency_c1_p99_ms": _added(nginx, direct, "p99_ms"),
        "rss_mb_max": None if xweg is None else max(xweg["peak_rss_mb"].values()),
    }


def summarise(cases: dict[str, dict[str, Any]], large: dict[str, Any]) -> dict[str, Any]:
    """The headline (the 1 KiB figures and the large body's) and the figures of every size.

    ``cases`` maps a size key to ``{row name: measure_row's result or None (skipped)}``;
    ``large`` maps a row name to :func:`large_body_exchange`'s result or ``None``.
    """
    by_size = {key: size_figures(rows) for key, rows in cases.items()}
    growth = (large.get("xweg_chain") or {}).get("rss_growth_mb")
    headline = dict(by_size.get(size_key(KIB), {}))
    headline["large_body_rss_growth_mb"] = max(growth.values()) if growth else None
    headline["large_body_seconds"] = {name: (large.get(name) or {}).get("seconds") for name in ROWS}
    return {"headline": headline, "by_size": by_size}


def check_targets(headline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with the measured value and whether it is met (``None``: not measured)."""
    checked = {}
    for key, (op, bound) in TARGETS.items():
        value = headline.get(key)
        met = (
            None
            if value is None
            else (value >= bound if op == ">=" else value <= bound if op == "<=" else value < bound)
        )
        checked[key] = {"target": f"{op} {bound:g}", "measured": value, "met": met}
    return checked


def machine() -> dict[str, Any]:
    from bench.verify import cpu_model

    memory_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory_kb = int(first.split()[1])
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": _version([find_program("nginx") or "nginx", "-v"]),
        "wrk": _version([find_program("wrk") or "wrk", "--version"]),
    }


def _version(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
    except OSError:
        return None
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else None


# ---------------------------------------------------------------- running it all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="2 s per run: within a minute on 2 cores")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"the JSON report (default {DEFAULT_OUT})"
    )
    parser.add_argument("--connections", type=int, default=32, help="concurrency of the throughput runs (32)")
    parser.add_argument("--keep", type=Path, help="keep the work folder (configs, logs) here")
    parser.add_argument(
        "--duration", type=int, help="seconds per wrk run (overrides --quick's 2 and the default 10)"
    )
    parser.add_argument(
        "--database-url",
        help="run the xweg chain on PostgreSQL: an existing, empty database for the registry, with"
        " a database <db>_<server> created beside it for each server (default: SQLite files)",
    )


def run(args: argparse.Namespace) -> int:
    missing = missing_programs()
    if "wrk" in missing:
        print(
            "the benchmark needs wrk, the load generator; install it (Debian: apt-get install wrk) "
            "or run `make bench`, which installs it when it can",
            file=sys.stderr,
        )
        return 2
    if "nginx" in missing:
        print(
            "nginx is not installed (Debian package nginx-light): the nginx chain row is skipped "
            "and the backend is an aiohttp responder",
            file=sys.stderr,
        )
    from xweg.logsetup import configure_logging

    # Setting up the chain registers it with the registry in this process: only warnings.
    configure_logging(logging.WARNING)
    if args.duration is not None and args.duration < 1:
        print("--duration must be at least 1 (wrk counts whole seconds)", file=sys.stderr)
        return 2
    settings = replace(
        Settings.for_mode(args.quick, args.connections, args.duration), database_url=args.database_url
    )
    started_at = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="xweg-bench-")) if args.keep is None else args.keep.resolve()
    folder.mkdir(parents=True, exist_ok=True)

    def report(line: str) -> None:
        print(line, flush=True)

    try:
        result = _run_in(folder, settings, report)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    result["settings"]["quick"] = bool(args.quick)
    result["elapsed_s"] = round(time.monotonic() - started_at, 1)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _print_summary(result, report)
    report(f"\nwritten to {out} in {result['elapsed_s']:.0f} s")
    failed = [n for n, rows in result["cases"].items() for r in rows.values() if r and _errors(r)]
    failed += [
        f"the {size_key(LARGE_BODY)} body through {name}"
        for name, large in result["large_body"].items()
        if large is not None and large["status"] != 200
    ]
    if failed:
        print(
            f"requests failed during the runs of {', '.join(sorted(set(failed)))}: see the JSON",
            file=sys.stderr,
        )
        return 1
    return 0


def _errors(row: dict[str, Any]) -> int:
    return int(row["load"]["errors"]) + int(row["c1"]["errors"])


def _run_in(folder: Path, settings: Settings, report: Callable[[str], None]) -> dict[str, Any]:
    wrk = find_program("wrk")
    nginx = find_program("nginx")
    assert wrk is not None  # run() checked
    started = Started()
    try:
        backend_port = free_port()
        if nginx:
            start_nginx(
                nginx,
                folder / "nginx-backend",
                nginx_backend_servers(backend_port),
                [backend_port],
                started,
                "the nginx backend",
            )
        else:
            start_python_backend(backend_port, started)
        backend_url = f"http://127.0.0.1:{backend_port}"
        rows = [Row("direct", backend_url + "/echo", {"Content-Type": "application/octet-stream"})]
        if nginx:
            (folder / "tls").mkdir(exist_ok=True)
            _write_tls(folder / "tls")
            hop1, hop2 = free_port(), free_port()
            start_nginx(
                nginx,
                folder / "nginx-chain",
                nginx_chain_servers(hop1, hop2, backend_port, folder / "tls"),
                [hop1, hop2],
                started,
                "the nginx chain",
                # Two workers, as the xweg chain has two processes: either may use both cores.
                workers=2,
            )
            rows.append(Row("nginx_chain", f"http://127.0.0.1:{hop1}/echo", rows[0].headers))
        with xweg_chain(folder / "xweg", backend_url, report, settings.database_url) as chain:
            rows.append(Row("xweg_chain", chain.url, chain.headers, chain.pids))
            cases: dict[str, dict[str, Any]] = {}
            for size in settings.sizes:
                runs = f"wrk -c{settings.connections} and -c1, {settings.duration_s} s each"
                report(f"\n{size_key(size)} request bodies, {runs}:")
                cases[size_key(size)] = {name: None for name in ROWS}
                for row in rows:
                    cases[size_key(size)][row.name] = measure_row(row, size, settings, wrk, folder, report)
            report(f"\none {size_key(LARGE_BODY)} body through each:")
            large: dict[str, Any] = {name: None for name in ROWS}
            for row in rows:
                large[row.name] = large_body_exchange(row.url, row.headers, row.pids)
                report(f"  {row.name:<12} {json.dumps(large[row.name])}")
    finally:
        started.stop()
    summary = summarise(cases, large)
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **summary["headline"],
        "targets": check_targets(summary["headline"]),
        "by_size": summary["by_size"],
        "cases": cases,
        "large_body": large,
        "machine": machine(),
        "settings": {
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "connections": settings.connections,
            "sizes": [size_key(s) for s in settings.sizes],
            "backend": "nginx return 200" if nginx else "aiohttp",
            "load_generator": "wrk, 1 thread, on the same cores",
            "xweg_database": "sqlite" if settings.database_url is None else redact_url(settings.database_url),
        },
    }


def _print_summary(result: dict[str, Any], report: Callable[[str], None]) -> None:
    report("\n1 KiB bodies (headline):")
    for key in HEADLINE_KEYS:
        target = result["targets"].get(key)
        verdict = ""
        if target is not None and target["met"] is not None:
            verdict = f"   target {target['target']}: {'met' if target['met'] else 'NOT met'}"
        report(f"  {key:<26} {result.get(key)!s:>10}{verdict}")
