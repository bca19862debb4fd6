"""Message logs for the auditor-side tests: real records, real checkpoints and paths.

The checkpoints carry a placeholder token and signature: the store does not check
them, and nothing these tests exercise does either (verification has its own tests).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.messagelog.checkpoint import Checkpoint, encode_path, inclusion_paths
from gateway.messagelog.record import LogRecord
from gateway.messagelog.store import MessageLogStore
from tests.unit.gateway.messagelog.helpers import NOW, Signers, write_log
from trust import merkle

__all__ = ["ORIGIN", "NOW", "add_checkpoint", "build_log"]

ORIGIN = "EE/GOV/70000001/ss1"


def add_checkpoint(path: Path, size: int) -> Checkpoint:
    """Store a checkpoint over the first ``size`` records, with the paths of its batch."""
    with MessageLogStore.open(path) as store:
        previous = store.last_checkpoint()
        first = 0 if previous is None else previous.size
        leaves = store.leaf_hashes(size)
        checkpoint = Checkpoint(
            origin=ORIGIN,
            size=size,
            root=merkle.root(leaves),
            time=NOW + dt.timedelta(minutes=size),
            token=b"\x30\x03\x02\x01\x01",
            tsa="Test TSA",
            gen_time=NOW + dt.timedelta(minutes=size),
            signature="placeholder.signature.value",
        )
        paths = inclusion_paths(leaves, first, size - 1)
        store.add_checkpoint(checkpoint, [(first + i + 1, encode_path(p)) for i, p in enumerate(paths)])
    return checkpoint


def build_log(
    path: Path, signers: Signers, *, exchanges: int = 3, checkpoints: tuple[int, ...] = (2, 6)
) -> list[LogRecord]:
    """A log of ``exchanges`` request/response pairs with checkpoints at the given sizes."""
    records = write_log(path, signers, exchanges=exchanges)
    for size in checkpoints:
        add_checkpoint(path, size)
    return records
