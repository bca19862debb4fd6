"""Evidence containers: one exchange out of a message log, for an auditor to verify offline.

:func:`build_evidence` reads the records of one message id (request and response) and
writes a ZIP (format ``xweg-evidence/1``) that holds everything needed to prove them
with nothing but the federation's configuration anchor:

* ``manifest.json``: format, message id, the log's origin (security server id), when
  it was exported, the records' numbers and which global configuration serial applies
  to each record and to the checkpoint;
* ``records/<seq>.json``: each record's columns (``header`` as text, ``ocsp`` in
  base64, ``record_hash``/``prev_hash`` in hex) and ``records/<seq>.body``: its body
  (absent when the log kept only the body's digest);
* ``checkpoint.json``: the first checkpoint that covers the last of those records, as
  a checkpoint file (signed by the server's owner, timestamped);
* ``proofs.json``: each record's inclusion proof against that checkpoint;
* ``globalconf/<serial>.jws``: the signed global configuration documents in force
  when the records were logged and the checkpoint was made.  They carry the approved
  CAs, OCSP responders and TSAs and chain to the anchor.

Verification is :func:`trust.evidence.verify_evidence`'s; nothing here decides whether
the log is intact (a damaged record is exported as it is and fails verification).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from typing import Any

from core.canonical import b64
from core.clock import require_utc
from gateway.messagelog.errors import MessageLogError
from gateway.messagelog.record import LogRecord, format_time
from gateway.messagelog.store import MessageLogStore
from trust.evidence import EVIDENCE_FORMAT, MAX_RECORDS

__all__ = ["EvidenceError", "build_evidence", "record_json"]


class EvidenceError(MessageLogError):
    """No evidence can be exported for this message id (unknown, or not yet timestamped)."""


def record_json(record: LogRecord) -> dict[str, Any]:
    """A record's columns as the container's ``records/<seq>.json`` holds them."""
    try:
        header = record.header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EvidenceError(
            f"record {record.seq}'s stored header is not UTF-8 text; the log is damaged"
        ) from exc
    return {
        "seq": record.seq,
        "direction": record.direction.value,
        "message_id": record.message_id,
        "client": record.client,
        "service": record.service,
        "logged_at": format_time(record.logged_at),
        "status": record.status,
        "header": header,
        "signature": record.signature,
        "ocsp": None if record.ocsp is None else b64(record.ocsp),
        "record_hash": record.record_hash.hex(),
        "prev_hash": record.prev_hash.hex(),
        "body_storage": record.body_storage,
    }


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"


def build_evidence(store: MessageLogStore, message_id: str, *, now: dt.datetime) -> bytes:
    """The evidence container (ZIP bytes) of ``message_id``, exported at ``now``.

    Raises :class:`EvidenceError` when the log has no record of that message id, when
    its last record is not yet covered by a checkpoint, or when the log kept no global
    configuration in force at a record's or the checkpoint's time.
    """
    require_utc(now, "now")
    if not isinstance(message_id, str) or not message_id:
        raise EvidenceError("a message id is needed")
    records = store.find(message_id)
    if not records:
        raise EvidenceError(f"the log holds no record of message {message_id}")
    if len(records) > MAX_RECORDS:
        raise EvidenceError(
            f"the log holds {len(records)} records of message {message_id}, more than {MAX_RECORDS}"
        )
    last = records[-1]
    checkpoint = store.checkpoint_covering(last.seq)
    if checkpoint is None:
        raise EvidenceError(
            f"record {last.seq} of message {message_id} is not yet covered by a timestamped checkpoint; "
            "export it after the next timestamping round"
        )

    documents: dict[int, bytes] = {}

    def serial_at(when: dt.datetime, what: str) -> int:
        entry = store.globalconf_entry_at(when)
        if entry is None:
            raise EvidenceError(
                f"the log kept no global configuration in force at {format_time(when)} ({what}); "
                "it cannot be verified with the anchor alone"
            )
        serial, document = entry
        documents[serial] = document
        return serial

    record_serials = {str(r.seq): serial_at(r.logged_at, f"record {r.seq}") for r in records}
    checkpoint_serial = serial_at(checkpoint.time, f"checkpoint {checkpoint.size}")
    proofs = {
        str(r.seq): {
            "index": r.seq - 1,
            "tree_size": checkpoint.size,
            "path": [h.hex() for h in store.inclusion_proof(r.seq, checkpoint.size)],
        }
        for r in records
    }
    manifest = {
        "format": EVIDENCE_FORMAT,
        "message_id": message_id,
        "origin": checkpoint.origin,
        "exported_at": format_time(now),
        "records": [r.seq for r in records],
        "globalconf": {"records": record_serials, "checkpoint": checkpoint_serial},
    }

    members: list[tuple[str, bytes]] = [("manifest.json", _json(manifest))]
    for record in records:
        members.append((f"records/{record.seq}.json", _json(record_json(record))))
        if record.body_kept:
            members.append((f"records/{record.seq}.body", record.body))
    members.append(("checkpoint.json", checkpoint.to_file_json()))
    members.append(("proofs.json", _json(proofs)))
    for serial in sorted(documents):
        members.append((f"globalconf/{serial}.jws", documents[serial]))

    buffer = io.BytesIO()
    stamp = now.astimezone(dt.UTC)
    date_time = (max(stamp.year, 1980), stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()
