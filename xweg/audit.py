"""``xweg audit``: what an auditor runs against a security server's message log and its evidence.

* ``verify PATH`` checks a whole log (records, checkpoints, signatures, timestamps,
  consistency, paths), optionally against checkpoint files kept earlier
  (``--checkpoint FILE``, which shows a rollback); ``verify FILE.zip --anchor A``
  checks an evidence container offline with the configuration anchor alone (a ZIP is
  recognised by its content, whatever its name);
* ``list PATH`` lists the records, one line each;
* ``export --message-id ID (--log PATH | --server URL --token-file F) --out FILE.zip``
  writes the evidence container of one exchange;
* ``checkpoint PATH [--size N] --out FILE`` writes a checkpoint file to keep;
* ``consistency OLD NEW (--log PATH | --proof FILE)`` proves that the log only grew
  from one kept checkpoint to another.

Each command function returns the process exit code: 0 when what was asked holds, 1
when verification found a problem (said in words), 2 for a usage or input error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.database import is_postgres_url, redact_url
from gateway.messagelog.archive import verify_archive_dir
from gateway.messagelog.checkpoint import Checkpoint
from gateway.messagelog.errors import MessageLogError
from gateway.messagelog.evidence import EvidenceError, build_evidence
from gateway.messagelog.record import format_time
from gateway.messagelog.store import LogLocation, MessageLogStore, PostgresLogShard, list_shards
from gateway.messagelog.verify import CheckpointSignatureCheck, LogReport, SignatureCheck, verify_log_file
from trust.anchor import Anchor, load_anchor
from trust.certificates import CertificateTrust, fingerprint
from trust.errors import AnchorInvalid, TrustError
from trust.evidence import (
    MAX_CHECKPOINT_FILE_BYTES,
    MAX_CONTAINER_BYTES,
    CheckpointFile,
    EvidenceInvalid,
    verify_consistency_files,
    verify_evidence,
)
from trust.globalconf import verify_global_conf
from trust.keys import load_certificates
from trust.signatures import verify_signature

__all__ = [
    "signature_check",
    "checkpoint_signature_check",
    "verify_command",
    "verify_path_command",
    "evidence_verify_command",
    "list_command",
    "export_command",
    "checkpoint_command",
    "consistency_command",
    "trust_for_log",
    "is_zip",
    "AuditTrust",
    "EVIDENCE_PATH",
    "FETCH_TIMEOUT_S",
]

#: Where a security server's auditor API offers a message's evidence container.
EVIDENCE_PATH = "/audit/v1/records/by-message/{message_id}/evidence"
#: Bound on fetching a container from a server.
FETCH_TIMEOUT_S = 60.0
#: Bound on a proof file: a list of at most 64 hex hashes.
_MAX_PROOF_FILE_BYTES = 16 * 1024


def signature_check(trust: CertificateTrust) -> SignatureCheck:
    """Verify a record's JWS against ``trust`` at the time the record was logged."""

    def check(jws: str, digest: bytes, at: dt.datetime) -> str:
        return verify_signature(jws, digest, trust, at).member.slash()

    return check


def checkpoint_signature_check(trust: CertificateTrust) -> CheckpointSignatureCheck:
    """Verify a checkpoint's JWS against ``trust`` at the checkpoint's time, with its OCSP response."""

    def check(jws: str, digest: bytes, ocsp: bytes | None, at: dt.datetime) -> str:
        return verify_signature(jws, digest, trust, at, ocsp_response=ocsp).member.slash()

    return check


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


class AuditTrust:
    """The certificates an audit trusts, and where they came from (said to the user)."""

    def __init__(self, certificates: CertificateTrust, tsas: Sequence[x509.Certificate], source: str) -> None:
        self.certificates = certificates
        self.tsas = tuple(tsas)
        self.source = source


def _pems(text: str | None) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode()) if text else []


def trust_for_log(path: LogLocation, ca_file: Path | None, tsa_file: Path | None = None) -> AuditTrust:
    """Trust anchors from the auditor's own files when given, else those the server recorded.

    Intermediate CAs and TSA certificates are taken from the log when not given: they
    are no anchors, since every chain must still end at a root the auditor trusts.
    """
    store = MessageLogStore.open_readonly(path)
    try:
        recorded_roots = _pems(store.get_meta("approved_cas"))
        recorded_intermediates = _pems(store.get_meta("intermediate_cas"))
        recorded_tsas = _pems(store.get_meta("approved_tsas"))
    finally:
        store.close()
    if ca_file is not None:
        given = load_certificates(ca_file)
        roots = [c for c in given if _self_signed(c)]
        intermediates = [c for c in given if not _self_signed(c)] + recorded_intermediates
        source = str(ca_file)
    else:
        roots, intermediates = recorded_roots, recorded_intermediates
        source = (
            "the approved CAs recorded in the log itself, which its operator could rewrite: "
            "pass --anchor (or --ca and --tsa) for a verification independent of the operator"
            if roots
            else "none found in the log (pass --anchor or --ca)"
        )
    tsas = load_certificates(tsa_file) if tsa_file is not None else recorded_tsas
    return AuditTrust(CertificateTrust(roots=tuple(roots), intermediates=tuple(intermediates)), tsas, source)


def trust_from_anchor(path: LogLocation, anchor: Anchor) -> AuditTrust:
    """Trust derived from the anchor alone: the signed global configurations the log kept.

    Every kept document must verify against the anchor at the time it was generated;
    the roots, issuing CAs and TSAs of all of them are trusted.  Nothing the operator
    could have written without the registry's key is taken on faith.
    """
    with MessageLogStore.open_readonly(path) as store:
        documents = store.globalconf_documents()
    if not documents:
        raise ValueError(f"{path} keeps no global configuration document to check against the anchor")
    roots: dict[str, x509.Certificate] = {}
    intermediates: dict[str, x509.Certificate] = {}
    tsas: dict[str, x509.Certificate] = {}
    for serial, document, generated_at in documents:
        try:
            conf = verify_global_conf(document, anchor, generated_at)
        except TrustError as exc:
            raise ValueError(f"global configuration serial {serial} kept in the log: {exc}") from exc
        for cert in conf.ca_certificates:
            roots[fingerprint(cert)] = cert
        for cert in conf.intermediate_certificates:
            intermediates[fingerprint(cert)] = cert
        for cert in conf.tsa_certificates:
            tsas[fingerprint(cert)] = cert
    source = f"{len(documents)} global configuration document(s) in the log, verified with the anchor"
    return AuditTrust(
        CertificateTrust(roots=tuple(roots.values()), intermediates=tuple(intermediates.values())),
        tuple(tsas.values()),
        source,
    )


def _error(command: str, message: str) -> int:
    print(f"xweg audit {command}: {message}", file=sys.stderr)
    return 2


def _read_bounded(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data


def _load_checkpoint_file(path: Path) -> CheckpointFile:
    return CheckpointFile.from_json(_read_bounded(path, MAX_CHECKPOINT_FILE_BYTES))


def is_zip(path: Path) -> bool:
    """Whether ``path`` holds a ZIP file, judged by its first bytes (not its name)."""
    with open(path, "rb") as handle:
        return handle.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


# --------------------------------------------------------------------------- verify


def verify_command(
    path: LogLocation,
    ca_file: Path | None,
    as_json: bool,
    tsa_file: Path | None = None,
    kept_files: Sequence[Path] = (),
    anchor_file: Path | None = None,
) -> int:
    """Verify a whole log; with ``kept_files``, also that it is consistent with those checkpoints."""
    try:
        kept = [Checkpoint.from_file(_load_checkpoint_file(f)) for f in kept_files]
    except (OSError, ValueError) as exc:
        return _error("verify", f"cannot read a kept checkpoint file: {exc}")
    if anchor_file is not None and ca_file is None:
        try:
            trust = trust_from_anchor(path, load_anchor(anchor_file))
        except (OSError, ValueError, TrustError) as exc:
            return _error("verify", str(exc))
    else:
        trust = trust_for_log(path, ca_file, tsa_file)
    report: LogReport = verify_log_file(
        path,
        signature_check(trust.certificates),
        tsa_certificates=trust.tsas,
        roots=trust.certificates.roots,
        intermediates=trust.certificates.intermediates,
        check_checkpoint_signature=checkpoint_signature_check(trust.certificates),
        kept=kept,
    )
    summary = report.to_dict()
    if as_json:
        print(json.dumps({**summary, "trust_roots": trust.source}, indent=2))
    elif report.first_error is None:
        print(f"{path}: intact. {report.records} records; hash chain unbroken; every signature verified")
        print(f"  against {len(trust.certificates.roots)} root CA certificate(s) from {trust.source};")
        print(
            f"  {report.timestamped_records} records covered by {report.checkpoints} signed, timestamped "
            "and mutually consistent checkpoint(s)"
            + (f"; latest root {report.root.hex()} over {report.tree_size} records." if report.root else ".")
        )
        if kept:
            print(f"  Consistent with the {len(kept)} checkpoint file(s) kept: it only grew since.")
    else:
        problem = report.first_error
        if problem.seq is None:
            print(f"{path}: NOT intact. {problem.reason}")
        else:
            print(f"{path}: NOT intact. First bad record: {problem.seq} (message {problem.message_id}).")
            print(f"  {problem.reason}")
    return 0 if report.first_error is None else 1


def evidence_verify_command(path: Path, anchor_file: Path, as_json: bool) -> int:
    """Verify an evidence container offline against the anchor; print what it proves."""
    try:
        anchor = load_anchor(anchor_file)
        container = _read_bounded(path, MAX_CONTAINER_BYTES)
    except (OSError, ValueError, AnchorInvalid) as exc:
        return _error("verify", str(exc))
    try:
        report = verify_evidence(container, anchor)
    except EvidenceInvalid as exc:
        if as_json:
            print(
                json.dumps(
                    {"valid": False, "step": exc.step, "check": exc.title, "reason": exc.reason}, indent=2
                )
            )
        else:
            print(f"{path}: NOT valid evidence. Step {exc.step} ({exc.title}) failed: {exc.reason}")
        return 1
    if as_json:
        print(json.dumps({"valid": True, **report.to_dict(), "statement": report.describe()}, indent=2))
    else:
        print(f"{path}: valid evidence, verified offline with the anchor {anchor_file}.")
        print(report.describe())
    return 0


def verify_path_command(
    path: Path | str,
    *,
    anchor_file: Path | None,
    ca_file: Path | None,
    tsa_file: Path | None,
    as_json: bool,
    kept_files: Sequence[Path] = (),
    shard: str | None = None,
) -> int:
    """``xweg audit verify PATH``: an evidence container (a ZIP, by content), a log, an
    archive folder, or (a ``postgresql://`` URL) the message-log shards in a database."""
    if isinstance(path, str):
        if is_postgres_url(path):
            return verify_shards_command(
                path,
                shard,
                anchor_file=anchor_file,
                ca_file=ca_file,
                tsa_file=tsa_file,
                as_json=as_json,
                kept_files=kept_files,
            )
        path = Path(path)
    if shard is not None:
        return _error("verify", "--shard names a shard of a PostgreSQL database: pass its postgresql:// URL")
    if path.is_dir():
        return archive_verify_command(path, ca_file, tsa_file, as_json)
    if not path.is_file():
        return _error("verify", f"{path}: no such file")
    if is_zip(path):
        if anchor_file is None:
            return _error("verify", f"{path} is an evidence container; pass --anchor ANCHOR")
        return evidence_verify_command(path, anchor_file, as_json)
    return verify_command(path, ca_file, as_json, tsa_file, kept_files, anchor_file)


def verify_shards_command(
    url: str,
    shard: str | None,
    *,
    anchor_file: Path | None,
    ca_file: Path | None,
    tsa_file: Path | None,
    as_json: bool,
    kept_files: Sequence[Path] = (),
) -> int:
    """Every message-log shard in the database at ``url`` (one per replica), or only ``shard``.

    Each shard is a log of its own (chain, tree, checkpoints) and is verified as a file
    is; the server's log is intact only if every shard is.  A kept checkpoint belongs to
    one shard, so ``kept_files`` needs ``shard`` when the database holds several.
    """
    try:
        shards = [PostgresLogShard(url, shard).shard] if shard is not None else list_shards(url)
    except (ValueError, MessageLogError) as exc:
        return _error("verify", str(exc))
    if not shards:
        return _error("verify", f"{redact_url(url)} holds no message-log shard")
    if kept_files and len(shards) > 1:
        return _error("verify", "a kept checkpoint belongs to one shard: name it with --shard")
    codes: dict[str, int] = {}
    summaries: dict[str, Any] = {}
    for name in shards:
        location = PostgresLogShard(url, name)
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed) if as_json else contextlib.nullcontext():
                codes[name] = verify_command(location, ca_file, as_json, tsa_file, kept_files, anchor_file)
        except MessageLogError as exc:
            codes[name] = _error("verify", f"{location}: {exc}")
        if as_json:
            text = printed.getvalue()
            summaries[name] = json.loads(text) if text.strip() else {"error": "see the message above"}
    worst = max(codes.values())
    if as_json:
        print(json.dumps({"database": redact_url(url), "intact": worst == 0, "shards": summaries}, indent=2))
    elif len(shards) > 1:
        broken = [name for name, code in codes.items() if code != 0]
        verdict = "every shard intact" if not broken else f"NOT intact: shard(s) {', '.join(broken)}"
        print(f"{redact_url(url)}: {len(shards)} shard(s), {verdict}.")
    return worst


def archive_verify_command(path: Path, ca_file: Path | None, tsa_file: Path | None, as_json: bool) -> int:
    """``xweg audit verify ARCHIVE_DIR``: every archive file, its chain to the one before, its records."""
    if ca_file is None or tsa_file is None:
        return _error("verify", f"{path} is an archive folder; pass --ca ROOTS.pem and --tsa TSA.pem")
    given = load_certificates(ca_file)
    roots = tuple(c for c in given if c.issuer == c.subject)
    intermediates = tuple(c for c in given if c.issuer != c.subject)
    trust = CertificateTrust(roots=roots, intermediates=intermediates)
    report = verify_archive_dir(
        path,
        check_signature=signature_check(trust),
        tsa_certificates=load_certificates(tsa_file),
        roots=roots,
        intermediates=intermediates,
        check_checkpoint_signature=checkpoint_signature_check(trust),
    )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        print(f"{path}: intact. {report.archives} archive(s), {report.records} records, chained by hash;")
        print(f"  every record, signature, checkpoint and timestamp verified against {ca_file}.")
    else:
        problem = report.first_error
        assert problem is not None
        where = f" ({problem.archive}" + (f", record {problem.seq}" if problem.seq else "") + ")"
        print(f"{path}: NOT intact{where}. {problem.reason}")
    return 0 if report.ok else 1


# --------------------------------------------------------------------------- list


def copy_command(source: str, shard: str | None, out: Path) -> int:
    """``xweg audit copy``: one consistent state of a log, as a new SQLite file to verify offline."""
    location: LogLocation
    try:
        if is_postgres_url(source):
            location = PostgresLogShard(source, shard or "main")
        elif shard is not None:
            return _error(
                "copy", "--shard names a shard of a PostgreSQL database: pass its postgresql:// URL"
            )
        else:
            location = Path(source)
        with MessageLogStore.open_readonly(location) as store:
            records = store.copy_to(out)
    except (ValueError, MessageLogError) as exc:
        return _error("copy", str(exc))
    print(f"{location}: {records} records copied to {out}")
    return 0


def list_command(path: Path, as_json: bool) -> int:
    """One line per record: message id, time, direction, client, service, status."""
    if not path.is_file():
        return _error("list", f"{path}: no such file")
    rows: list[dict[str, Any]] = []
    with MessageLogStore.open_readonly(path) as store:
        for record in store.iter_records():
            row = {
                "seq": record.seq,
                "message_id": record.message_id,
                "logged_at": format_time(record.logged_at),
                "direction": record.direction.value,
                "client": record.client,
                "service": record.service,
                "status": record.status,
            }
            if as_json:
                rows.append(row)
            else:
                status = "-" if record.status is None else str(record.status)
                print(
                    f"{record.seq:>8}  {row['logged_at']}  {record.direction.value:<8}  {record.message_id}  "
                    f"{record.client} -> {record.service}  {status}"
                )
    if as_json:
        print(json.dumps(rows, indent=2))
    return 0


# --------------------------------------------------------------------------- export


def _fetch_evidence(server: str, message_id: str, token: str) -> bytes:
    """GET a container from a security server's auditor API (bearer token), bounded."""
    parts = urllib.parse.urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--server must be an http(s) URL, not {server!r}")
    url = server.rstrip("/") + EVIDENCE_PATH.format(message_id=urllib.parse.quote(message_id, safe=""))
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/zip"}
    )
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310
            data: bytes = response.read(MAX_CONTAINER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(64 * 1024).decode("utf-8", "replace")
        try:
            detail = str(json.loads(detail).get("message", detail))
        except (ValueError, AttributeError):
            pass
        raise ConnectionError(f"{url} answered HTTP {exc.code}: {detail.strip() or exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"cannot reach {url}: {exc}") from exc
    if len(data) > MAX_CONTAINER_BYTES:
        raise ConnectionError(f"{url} answered with more than {MAX_CONTAINER_BYTES} bytes")
    return data


def export_command(
    message_id: str,
    out: Path,
    *,
    now: dt.datetime,
    log: Path | None = None,
    server: str | None = None,
    token_file: Path | None = None,
) -> int:
    """Write the evidence container of ``message_id`` from a log file or a server's auditor API."""
    if (log is None) == (server is None):
        return _error("export", "give exactly one of --log PATH and --server URL")
    try:
        if log is not None:
            if not log.is_file():
                return _error("export", f"{log}: no such file")
            with MessageLogStore.open_readonly(log) as store:
                container = build_evidence(store, message_id, now=now)
        else:
            assert server is not None
            if token_file is None:
                return _error("export", "--server needs --token-file with an auditor token")
            token = _read_bounded(token_file, 64 * 1024).decode("ascii").strip()
            container = _fetch_evidence(server, message_id, token)
    except EvidenceError as exc:
        print(f"xweg audit export: {exc}", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"xweg audit export: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, UnicodeDecodeError, MessageLogError) as exc:
        return _error("export", str(exc))
    out.write_bytes(container)
    print(f"wrote the evidence of message {message_id} to {out} ({len(container):,} bytes)")
    return 0


# --------------------------------------------------------------------------- checkpoints


def checkpoint_command(path: Path, out: Path, size: int | None = None) -> int:
    """Write a checkpoint file (the latest, or the one of ``size`` records) for an auditor to keep."""
    if not path.is_file():
        return _error("checkpoint", f"{path}: no such file")
    try:
        with MessageLogStore.open_readonly(path) as store:
            if size is None:
                checkpoint = store.last_checkpoint()
            else:
                found = [c for c in store.checkpoints() if c.size == size]
                checkpoint = found[0] if found else None
    except MessageLogError as exc:
        return _error("checkpoint", str(exc))
    if checkpoint is None:
        which = "no checkpoint" if size is None else f"no checkpoint of {size} records"
        print(f"xweg audit checkpoint: {path} has {which}", file=sys.stderr)
        return 1
    out.write_bytes(checkpoint.to_file_json())
    print(
        f"wrote checkpoint {checkpoint.size} of {checkpoint.origin} ({format_time(checkpoint.time)}, root "
        f"{checkpoint.root.hex()}) to {out}"
    )
    return 0


def _load_proof(path: Path) -> list[bytes]:
    data = json.loads(_read_bounded(path, _MAX_PROOF_FILE_BYTES))
    if not isinstance(data, list) or not all(isinstance(h, str) for h in data):
        raise ValueError(f"{path} must hold a JSON list of hex hashes")
    return [bytes.fromhex(h) for h in data]


def consistency_command(
    old_file: Path,
    new_file: Path,
    *,
    log: Path | None = None,
    proof_file: Path | None = None,
    ca_file: Path | None = None,
    tsa_file: Path | None = None,
    as_json: bool = False,
) -> int:
    """Prove that the log only grew from the ``old_file`` checkpoint to the ``new_file`` one.

    Both checkpoints' signatures and tokens are verified (against the CAs and TSAs the
    log recorded, or ``--ca``/``--tsa``); the proof comes from ``--proof`` or is
    computed from the log.
    """
    if log is None and proof_file is None:
        return _error("consistency", "give --log PATH (to compute the proof) or --proof FILE")
    try:
        old = _load_checkpoint_file(old_file)
        new = _load_checkpoint_file(new_file)
        if log is not None:
            trust = trust_for_log(log, ca_file, tsa_file)
        elif ca_file is None or tsa_file is None:
            return _error("consistency", "without --log, pass --ca and --tsa to verify the checkpoints")
        else:
            given = load_certificates(ca_file)
            trust = AuditTrust(
                CertificateTrust(
                    roots=tuple(c for c in given if _self_signed(c)),
                    intermediates=tuple(c for c in given if not _self_signed(c)),
                ),
                load_certificates(tsa_file),
                str(ca_file),
            )
        if proof_file is not None:
            proof = _load_proof(proof_file)
        else:
            assert log is not None
            small, large = sorted((old.checkpoint.size, new.checkpoint.size))
            with MessageLogStore.open_readonly(log) as store:
                try:
                    proof = store.consistency_proof(small, large)
                except MessageLogError as exc:
                    print(
                        f"NOT consistent: the log cannot prove it grew from {small} to {large} records: {exc}"
                    )
                    return 1
    except (OSError, ValueError, MessageLogError) as exc:
        return _error("consistency", str(exc))
    try:
        report = verify_consistency_files(
            old, new, proof, trust=trust.certificates, tsa_certificates=trust.tsas
        )
    except EvidenceInvalid as exc:
        if as_json:
            print(
                json.dumps({"consistent": False, "step": exc.step, "check": exc.title, "reason": exc.reason})
            )
        else:
            print(f"NOT consistent: step {exc.step} ({exc.title}): {exc.reason}")
        return 1
    old_cp, new_cp = report.old.file.checkpoint, report.new.file.checkpoint
    if as_json:
        print(
            json.dumps(
                {
                    "consistent": True,
                    "origin": new_cp.origin,
                    "old_size": old_cp.size,
                    "new_size": new_cp.size,
                    "old_root": old_cp.root.hex(),
                    "new_root": new_cp.root.hex(),
                }
            )
        )
    else:
        print(f"the log only grew from {old_cp.size} to {new_cp.size}")
        print(f"  ({report.describe()})")
    return 0
