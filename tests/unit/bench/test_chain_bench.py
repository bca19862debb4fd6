"""The side-by-side benchmark's arithmetic and parsing: what it reports follows from what it measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.chain import KIB, TARGETS, check_targets, size_figures, size_key, summarise
from bench.tools import (
    WRK_REPORT_MARKER,
    find_program,
    missing_programs,
    parse_proc_status,
    parse_wrk_report,
    wrk_script,
)

REPORT = (
    WRK_REPORT_MARKER + '{"requests": 5000, "duration_us": 2000000, "bytes": 123, '
    '"errors": {"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 3}, '
    '"latency_us": {"mean": 812.5, "max": 9000, "p50": 750, "p90": 1100, "p99": 4200}}'
)


def test_wrk_report_is_read_from_its_marked_line() -> None:
    result = parse_wrk_report("Running 2s test @ http://x\n" + REPORT + "\n", connections=32)
    assert result.rps == 2500.0
    assert (result.p50_ms, result.p90_ms, result.p99_ms, result.max_ms) == (0.75, 1.1, 4.2, 9.0)
    assert result.errors == 6  # read, status (non-2xx/3xx answers) and timeouts all count
    assert result.to_dict()["connections"] == 32


def test_wrk_output_without_a_report_or_with_no_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="no report line"):
        parse_wrk_report("Running 2s test\n  1000 requests in 2.00s\n", connections=1)
    with pytest.raises(ValueError, match="no duration"):
        parse_wrk_report(REPORT.replace('"duration_us": 2000000', '"duration_us": 0'), connections=1)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 1024, 65536, 65537])
def test_wrk_script_sends_bodies_of_exactly_the_size_asked(size: int) -> None:
    script = wrk_script("POST", size, {"X-Road-Client": "NRW/MUN/05774032/gewerbeamt"})
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["X-Road-Client"] = "NRW/MUN/05774032/gewerbeamt"' in script
    if size == 0:
        assert "wrk.body" not in script
        return
    whole, rest = divmod(size, 16)
    assert f'string.rep("0123456789abcdef", {whole}) .. string.rep("x", {rest})' in script


def test_proc_status_gives_current_and_peak_memory() -> None:
    memory = parse_proc_status("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t3\n")
    assert (memory.rss_mb, memory.peak_rss_mb) == (100.0, 200.0)
    with pytest.raises(ValueError, match="no VmRSS"):
        parse_proc_status("Name:\tkthreadd\n")


def test_programs_are_found_on_path_or_in_sbin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("bench.tools._SBIN", ())
    assert find_program("wrk") is None
    assert missing_programs() == {"wrk": "wrk", "nginx": "nginx-light"}
    tool = tmp_path / "wrk"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_program("wrk") == str(tool)
    assert missing_programs() == {"nginx": "nginx-light"}


def _row(rps: float, p50: float, p99: float, peaks: dict[str, float] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "load": {"rps": rps, "errors": 0},
        "c1": {"p50_ms": p50, "p99_ms": p99, "errors": 0},
    }
    if peaks is not None:
        row["peak_rss_mb"] = peaks
    return row


def test_ratios_and_added_latency_are_against_rows_of_the_same_run() -> None:
    rows = {
        "direct": _row(10000, 0.1, 0.5),
        "nginx_chain": _row(4000, 0.3, 1.0),
        "xweg_chain": _row(1000, 1.1, 4.5, {"paderborn": 90.0, "bielefeld": 101.5}),
    }
    figures = size_figures(rows)
    assert figures["xweg_vs_nginx"] == 0.25 and figures["xweg_vs_direct"] == 0.1
    assert figures["nginx_vs_direct"] == 0.4
    assert figures["added_latency_c1_p50_ms"] == 1.0 and figures["added_latency_c1_p99_ms"] == 4.0
    assert figures["nginx_added_latency_c1_p50_ms"] == 0.2
    assert figures["rss_mb_max"] == 101.5


def test_a_skipped_nginx_row_leaves_its_figures_null() -> None:
    rows = {
        "direct": _row(10000, 0.1, 0.5),
        "nginx_chain": None,
        "xweg_chain": _row(500, 2.0, 6.0, {"a": 80.0}),
    }
    figures = size_figures(rows)
    assert figures["nginx_chain_rps"] is None and figures["xweg_vs_nginx"] is None
    assert figures["xweg_vs_direct"] == 0.05


def test_headline_is_the_1kib_case_plus_the_large_body() -> None:
    cases = {
        size_key(KIB): {
            "direct": _row(10000, 0.1, 0.5),
            "nginx_chain": _row(4000, 0.3, 1.0),
            "xweg_chain": _row(1300, 1.2, 4.0, {"a": 100.0, "b": 110.0}),
        },
        size_key(64 * KIB): {
            "direct": _row(5000, 0.2, 0.9),
            "nginx_chain": _row(2000, 0.5, 1.5),
            "xweg_chain": _row(200, 5.0, 9.0, {"a": 130.0, "b": 110.0}),
        },
    }
    large = {
        "direct": {"status": 200, "seconds": 0.01},
        "nginx_chain": None,
        "xweg_chain": {"status": 200, "seconds": 0.3, "rss_growth_mb": {"a": 12.0, "b": 31.5}},
    }
    summary = summarise(cases, large)
    headline = summary["headline"]
    assert headline["xweg_chain_rps"] == 1300.0 and headline["xweg_vs_nginx"] == 0.325
    assert headline["rss_mb_max"] == 110.0  # the 1 KiB case's; 64 KiB's is under by_size
    assert summary["by_size"]["64KiB"]["rss_mb_max"] == 130.0
    assert headline["large_body_rss_growth_mb"] == 31.5
    assert headline["large_body_seconds"] == {"direct": 0.01, "nginx_chain": None, "xweg_chain": 0.3}
    targets = check_targets(headline)
    assert set(targets) == set(TARGETS)
    assert targets["xweg_vs_nginx"]["met"] is True
    assert targets["added_latency_c1_p50_ms"]["met"] is True  # 1.1 ms added
    assert targets["large_body_rss_growth_mb"]["met"] is False  # 31.5 MB is not under 3 x 10 MiB
    assert targets["rss_mb_max"] == {"target": "<= 120", "measured": 110.0, "met": True}


def test_targets_not_measured_are_neither_met_nor_failed() -> None:
    targets = check_targets({"xweg_vs_nginx": None})
    assert targets["xweg_vs_nginx"]["met"] is None
    assert targets["rss_mb_max"]["measured"] is None
