"""``xweg audit``: what an auditor runs against a security server's message log."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.verify import LogReport, SignatureCheck, verify_log_file
from trust.keys import load_certificates
from trust.signatures import verify_signature

__all__ = ["signature_check", "verify_command", "roots_for_log"]


def signature_check(roots: Sequence[x509.Certificate]) -> SignatureCheck:
    """Verify a record's JWS against ``roots`` at the time the record was logged."""

    def check(jws: str, digest: bytes, at: dt.datetime) -> str:
        return verify_signature(jws, digest, roots, at).member.slash()

    return check


def roots_for_log(path: Path, ca_file: Path | None) -> tuple[list[x509.Certificate], str]:
    """The CA certificates to verify against, and where they came from (said to the user)."""
    if ca_file is not None:
        return load_certificates(ca_file), str(ca_file)
    store = MessageLogStore.open_readonly(path)
    try:
        pem = store.get_meta("approved_cas")
    finally:
        store.close()
    if not pem:
        return [], "none found in the log (pass --ca)"
    return x509.load_pem_x509_certificates(pem.encode()), "the approved CAs recorded in the log"


def verify_command(path: Path, ca_file: Path | None, as_json: bool) -> int:
    roots, source = roots_for_log(path, ca_file)
    report: LogReport = verify_log_file(path, signature_check(roots))
    if as_json:
        print(json.dumps({**report.to_dict(), "trust_roots": source}, indent=2))
    elif report.first_error is None:
        print(f"{path}: intact. {report.records} records; hash chain unbroken; every signature verified")
        print(f"  against {len(roots)} CA certificate(s) from {source}.")
    else:
        problem = report.first_error
        print(f"{path}: NOT intact. First bad record: {problem.seq} (message {problem.message_id}).")
        print(f"  {problem.reason}")
    return 0 if report.first_error is None else 1
