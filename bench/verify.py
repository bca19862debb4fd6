"""``python -m bench verify``: how fast the message log's hashes and proofs are checked.

Builds ``N`` synthetic records (random 32-byte record hashes, each turned into an RFC
9162 leaf with :func:`trust.merkle.leaf_hash`) and measures, one core, one process:

a. the tree root over all leaves (:func:`trust.merkle.root`);
b. every record's inclusion path, built level by level as the timestamper does
   (:func:`gateway.messagelog.checkpoint.inclusion_paths`);
c. checking ``K = min(N, 100,000)`` of those paths (:func:`trust.merkle.verify_inclusion`);
d. building and checking one consistency proof from a random older size to ``N``
   (:func:`trust.merkle.consistency_proof`, :func:`trust.merkle.verify_consistency`).

Each step reports wall and CPU seconds and items per second per core (items over CPU
seconds).  Signatures and timestamps are per checkpoint, not per record, so they are
not part of this figure.  The issue's target is 50,000 records/s per core for the tree
and the proof checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench import Benchmark
from gateway.messagelog.checkpoint import inclusion_paths
from trust import merkle

__all__ = [
    "DEFAULT_RECORDS",
    "MAX_PROOFS",
    "TARGET_PER_CORE",
    "Measurement",
    "VerifyReport",
    "run",
    "cpu_model",
    "BENCHMARK",
]

DEFAULT_RECORDS = 1_000_000
MAX_PROOFS = 100_000  # inclusion proofs checked in step (c)
TARGET_PER_CORE = 50_000  # records/s per core, from the issue
MAX_RECORDS = 50_000_000  # about 20 GiB of paths; more is a typo

T = TypeVar("T")


@dataclass(frozen=True)
class Measurement:
    """One timed step."""

    step: str
    items: int  # records (or proofs) the step handled
    wall_s: float
    cpu_s: float

    @property
    def per_second(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def per_second_per_core(self) -> float:
        return self.items / self.cpu_s if self.cpu_s > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "items": self.items,
            "wall_s": round(self.wall_s, 6),
            "cpu_s": round(self.cpu_s, 6),
            "per_second": round(self.per_second, 1),
            "per_second_per_core": round(self.per_second_per_core, 1),
        }


@dataclass(frozen=True)
class VerifyReport:
    """Everything one run measured, and where it ran."""

    records: int
    proofs_checked: int
    root: bytes
    consistency_old_size: int
    consistency_proof_hashes: int
    leaves: Measurement
    tree_root: Measurement
    paths: Measurement
    inclusion: Measurement
    consistency: Measurement
    wall_s: float
    cpu_model: str
    python: str
    cores: int

    @property
    def steps(self) -> tuple[Measurement, ...]:
        return (self.leaves, self.tree_root, self.paths, self.inclusion, self.consistency)

    @property
    def target_met(self) -> bool:
        """Tree root and inclusion-proof checks both at or above the target, per core."""
        return min(self.tree_root.per_second_per_core, self.inclusion.per_second_per_core) >= TARGET_PER_CORE

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": "verify",
            "records": self.records,
            "proofs_checked": self.proofs_checked,
            "root": self.root.hex(),
            "consistency": {
                "old_size": self.consistency_old_size,
                "new_size": self.records,
                "proof_hashes": self.consistency_proof_hashes,
            },
            "steps": {m.step: m.to_json() for m in self.steps},
            "target_per_core": TARGET_PER_CORE,
            "target_met": self.target_met,
            "wall_s": round(self.wall_s, 6),
            "cpu_model": self.cpu_model,
            "python": self.python,
            "cores": self.cores,
        }

    def table(self) -> str:
        lines = [
            f"verification benchmark: {self.records:,} records, "
            f"{self.proofs_checked:,} inclusion proofs checked",
            f"{'step':<22}{'items':>12}{'wall s':>10}{'cpu s':>10}{'items/s':>14}{'per core':>14}",
        ]
        for m in self.steps:
            lines.append(
                f"{m.step:<22}{m.items:>12,}{m.wall_s:>10.3f}{m.cpu_s:>10.3f}"
                f"{m.per_second:>14,.0f}{m.per_second_per_core:>14,.0f}"
            )
        verdict = "met" if self.target_met else "NOT met"
        lines += [
            f"target {TARGET_PER_CORE:,} records/s per core for tree root and proof checks: {verdict}",
            f"total wall {self.wall_s:.2f} s; cpu {self.cpu_model}; {self.cores} cores; python {self.python}",
        ]
        return "\n".join(lines)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from ``/proc/cpuinfo``; the platform's guess where there is none."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _timed(step: str, items: int, work: Callable[..., T], *args: Any) -> tuple[T, Measurement]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work(*args)
    return result, Measurement(step, items, time.perf_counter() - wall, time.process_time() - cpu)


def _leaf_hashes(data: bytes) -> list[bytes]:
    leaf_hash = merkle.leaf_hash
    return [leaf_hash(data[i : i + 32]) for i in range(0, len(data), 32)]


def _check_inclusion(leaves: list[bytes], paths: list[list[bytes]], root: bytes, sample: list[int]) -> None:
    verify, size = merkle.verify_inclusion, len(leaves)
    for index in sample:
        verify(leaves[index], index, size, paths[index], root)


def _check_consistency(leaves: list[bytes], old_size: int, old_root: bytes, root: bytes) -> int:
    proof = merkle.consistency_proof(old_size, leaves)
    merkle.verify_consistency(old_size, len(leaves), old_root, root, proof)
    return len(proof)


def run(
    records: int = DEFAULT_RECORDS, *, proofs: int | None = None, seed: int | None = None
) -> VerifyReport:
    """Run the benchmark over ``records`` synthetic records; check ``proofs`` inclusion proofs.

    ``seed`` makes the records and the sample reproducible.  Raises ``RuntimeError`` if
    any proof fails to verify: a benchmark of a broken verifier measures nothing.
    """
    if isinstance(records, bool) or not isinstance(records, int) or not 2 <= records <= MAX_RECORDS:
        raise ValueError(f"records must be 2 to {MAX_RECORDS:,}")
    count = min(records, MAX_PROOFS) if proofs is None else proofs
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= records:
        raise ValueError(f"proofs must be 1 to {records:,}")
    rng = random.Random(seed)
    started_wall = time.perf_counter()
    data = rng.randbytes(32 * records) if seed is not None else os.urandom(32 * records)
    leaves, leaves_m = _timed("leaf hashes", records, _leaf_hashes, data)
    # (a) the tree root
    root, root_m = _timed("tree root", records, merkle.root, leaves)
    # (b) every record's inclusion path
    paths, paths_m = _timed("inclusion paths", records, inclusion_paths, leaves, 0, records - 1)
    # (c) check a sample of them against the root
    sample = sorted(rng.sample(range(records), count))
    try:
        _, inclusion_m = _timed("inclusion checks", count, _check_inclusion, leaves, paths, root, sample)
    except merkle.MerkleError as exc:
        raise RuntimeError(f"an inclusion proof did not verify: {exc}") from exc
    del paths  # about 0.3 GiB at a million records
    # (d) one consistency proof from an older size, built and checked
    old_size = rng.randrange(1, records)
    old_root = merkle.root(leaves[:old_size])
    try:
        proof_hashes, consistency_m = _timed(
            "consistency proof", records, _check_consistency, leaves, old_size, old_root, root
        )
    except merkle.MerkleError as exc:
        raise RuntimeError(f"the consistency proof did not verify: {exc}") from exc
    return VerifyReport(
        records=records,
        proofs_checked=count,
        root=root,
        consistency_old_size=old_size,
        consistency_proof_hashes=proof_hashes,
        leaves=leaves_m,
        tree_root=root_m,
        paths=paths_m,
        inclusion=inclusion_m,
        consistency=consistency_m,
        wall_s=time.perf_counter() - started_wall,
        cpu_model=cpu_model(),
        python=platform.python_version(),
        cores=os.cpu_count() or 1,
    )


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--records",
        type=_positive,
        default=DEFAULT_RECORDS,
        help=f"records to hash (default {DEFAULT_RECORDS:,})",
    )
    parser.add_argument(
        "--proofs",
        type=_positive,
        default=None,
        help=f"inclusion proofs to check (default min(N, {MAX_PROOFS:,}))",
    )
    parser.add_argument("--seed", type=int, default=None, help="make the records reproducible")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run(args: argparse.Namespace) -> int:
    try:
        report = run(args.records, proofs=args.proofs, seed=args.seed)
    except (ValueError, RuntimeError) as exc:
        print(f"bench verify: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0


BENCHMARK = Benchmark(
    name="verify",
    help="hashes and Merkle proofs of N message-log records (records/s per core)",
    add_arguments=_add_arguments,
    run=_run,
)
