"""The programs the side-by-side benchmark drives: nginx, wrk, and the processes it measures.

Pure parsing (wrk's report, ``/proc`` status files) is separate from running, so that
it is tested without the programs installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "WRK_REPORT_MARKER",
    "LoadResult",
    "ProcessMemory",
    "find_program",
    "missing_programs",
    "parse_proc_status",
    "parse_wrk_report",
    "run_wrk",
    "wrk_script",
    "read_memory",
    "reset_peak_rss",
]

#: wrk's ``done()`` prints one line starting with this, then the JSON of its summary.
WRK_REPORT_MARKER = "XWEG-BENCH-REPORT "
# Where Debian puts nginx, which is not on an ordinary user's PATH.
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_program(name: str) -> str | None:
    """The path of ``name`` on PATH or in the sbin folders; ``None`` when it is not installed."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _SBIN:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_programs() -> dict[str, str]:
    """Programs the benchmark wants and does not find, each with the Debian package that has it."""
    wanted = {"wrk": "wrk", "nginx": "nginx-light"}
    return {name: package for name, package in wanted.items() if find_program(name) is None}


def wrk_script(method: str, body_size: int, headers: dict[str, str]) -> str:
    """A wrk Lua script: every request ``method`` with a ``body_size``-byte body and ``headers``;
    at the end one line with the counts and latency percentiles (microseconds) as JSON."""
    lines = [f'wrk.method = "{method}"']
    if body_size:
        # Printable and not compressible into nothing: what a JSON or XML payload looks like.
        whole, rest = divmod(body_size, 16)
        lines.append(f'wrk.body = string.rep("0123456789abcdef", {whole}) .. string.rep("x", {rest})')
    for name, value in headers.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    lines.append(
        f"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{WRK_REPORT_MARKER}{{"requests": %d, "duration_us": %d, "bytes": %d, '
    .. '"errors": {{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}, '
    .. '"latency_us": {{"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d}}}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: how many requests in how long, how many failed, and their latency."""

    connections: int
    requests: int
    duration_s: float
    errors: int  # connect, read, write, timeout, and answers other than 2xx/3xx
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "mean_ms": self.mean_ms,
        }


def parse_wrk_report(output: str, connections: int) -> LoadResult:
    """The :class:`LoadResult` in wrk's output, from the line :func:`wrk_script` prints.

    Raises :class:`ValueError` when the output has no such line or it is malformed.
    """
    for line in output.splitlines():
        if line.startswith(WRK_REPORT_MARKER):
            data = json.loads(line[len(WRK_REPORT_MARKER) :])
            break
    else:
        raise ValueError("wrk printed no report line (was the script's done() run?)")
    errors = data["errors"]
    latency = data["latency_us"]
    if data["duration_us"] <= 0:
        raise ValueError("wrk reported a run of no duration")

    def ms(value: float) -> float:
        return round(float(value) / 1000.0, 3)

    return LoadResult(
        connections=connections,
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        errors=sum(int(errors[k]) for k in ("connect", "read", "write", "status", "timeout")),
        p50_ms=ms(latency["p50"]),
        p90_ms=ms(latency["p90"]),
        p99_ms=ms(latency["p99"]),
        max_ms=ms(latency["max"]),
        mean_ms=ms(latency["mean"]),
    )


@dataclass(frozen=True)
class ProcessMemory:
    """A process's resident memory now and at its peak (``VmRSS`` and ``VmHWM``), in MiB."""

    rss_mb: float
    peak_rss_mb: float


def parse_proc_status(text: str) -> ProcessMemory:
    """The memory figures of a ``/proc/<pid>/status`` file's text."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            amount, unit = rest.split()
            if unit != "kB":
                raise ValueError(f"unexpected unit {unit!r} for {name}")
            values[name] = int(amount) / 1024.0
    if set(values) != {"VmRSS", "VmHWM"}:
        raise ValueError("no VmRSS/VmHWM in the status file (not Linux, or the process is gone)")
    return ProcessMemory(rss_mb=values["VmRSS"], peak_rss_mb=values["VmHWM"])


def read_memory(pid: int) -> ProcessMemory:
    return parse_proc_status(Path(f"/proc/{pid}/status").read_text())


def reset_peak_rss(pid: int) -> bool:
    """Set a process's peak RSS to its current RSS (Linux ``clear_refs`` 5); ``False`` when refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    connections: int,
    threads: int,
    duration_s: float,
    timeout_s: float = 10.0,
) -> LoadResult:
    """One wrk run against ``url``; raises :class:`RuntimeError` with wrk's output when it fails."""
    args = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(  # noqa: S603 -- wrk, found by find_program
        args, capture_output=True, text=True, timeout=duration_s + timeout_s + 30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    try:
        return parse_wrk_report(done.stdout, connections)
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"wrk's report could not be read ({exc}):\n{done.stdout}\n{done.stderr}") from exc
