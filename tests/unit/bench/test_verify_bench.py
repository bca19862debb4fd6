"""The verification benchmark at a small size: it runs, checks its proofs and reports consistently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import main
from bench.verify import TARGET_PER_CORE, cpu_model, run
from trust import merkle


def test_a_small_run_reports_consistent_numbers() -> None:
    report = run(2000, seed=7)
    assert report.records == 2000 and report.proofs_checked == 2000
    assert [m.step for m in report.steps] == [
        "leaf hashes",
        "tree root",
        "inclusion paths",
        "inclusion checks",
        "consistency proof",
    ]
    for step in report.steps:
        assert step.wall_s > 0 and step.cpu_s >= 0
        assert step.items == (2000 if step.step != "inclusion checks" else report.proofs_checked)
        assert step.per_second == pytest.approx(step.items / step.wall_s)
    assert report.wall_s >= sum(m.wall_s for m in report.steps)
    assert 1 <= report.consistency_old_size < 2000 and report.consistency_proof_hashes >= 1
    data = report.to_json()
    assert data["records"] == 2000 and data["target_per_core"] == TARGET_PER_CORE
    assert data["target_met"] == report.target_met
    assert set(data["steps"]) == {m.step for m in report.steps}
    assert data["python"] and data["cpu_model"] and data["cores"] >= 1
    assert "2,000 records" in report.table()


def test_the_same_seed_builds_the_same_tree() -> None:
    first, second = run(2000, seed=11, proofs=10), run(2000, seed=11, proofs=10)
    assert first.root == second.root and first.consistency_old_size == second.consistency_old_size
    assert run(2000, seed=12, proofs=10).root != first.root
    assert len(first.root) == merkle.HASH_SIZE


def test_bounds() -> None:
    with pytest.raises(ValueError, match="records"):
        run(1)
    with pytest.raises(ValueError, match="proofs"):
        run(10, proofs=11)
    assert run(3, seed=1).proofs_checked == 3


def test_cpu_model_reads_proc_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Example CPU @ 3.0GHz\n")
    assert cpu_model(info) == "Example CPU @ 3.0GHz"
    assert cpu_model(tmp_path / "missing")


def test_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    assert "verify" in usage and "--quick" in usage and "--out" in usage
    assert main(["verify", "--records", "2000", "--seed", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["benchmark"] == "verify" and data["records"] == 2000 and data["proofs_checked"] == 2000
    assert main(["verify", "--records", "2,000", "--proofs", "50"]) == 0
    assert "50 inclusion proofs checked" in capsys.readouterr().out
    assert main(["verify", "--records", "1"]) == 1
    assert "records must be" in capsys.readouterr().err
