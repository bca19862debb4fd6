"""``xweg audit``: what an auditor runs against a security server's message log."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.verify import LogReport, SignatureCheck, verify_log_file
from trust.certificates import CertificateTrust
from trust.keys import load_certificates
from trust.signatures import verify_signature

__all__ = ["signature_check", "verify_command", "trust_for_log", "AuditTrust"]


def signature_check(trust: CertificateTrust) -> SignatureCheck:
    """Verify a record's JWS against ``trust`` at the time the record was logged."""

    def check(jws: str, digest: bytes, at: dt.datetime) -> str:
        return verify_signature(jws, digest, trust, at).member.slash()

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


def trust_for_log(path: Path, ca_file: Path | None, tsa_file: Path | None = None) -> AuditTrust:
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
        source = "the approved CAs recorded in the log" if roots else "none found in the log (pass --ca)"
    tsas = load_certificates(tsa_file) if tsa_file is not None else recorded_tsas
    return AuditTrust(CertificateTrust(roots=tuple(roots), intermediates=tuple(intermediates)), tsas, source)


def verify_command(path: Path, ca_file: Path | None, as_json: bool, tsa_file: Path | None = None) -> int:
    trust = trust_for_log(path, ca_file, tsa_file)
    report: LogReport = verify_log_file(
        path,
        signature_check(trust.certificates),
        tsa_certificates=trust.tsas,
        roots=trust.certificates.roots,
        intermediates=trust.certificates.intermediates,
    )
    summary = report.to_dict()
    if as_json:
        print(json.dumps({**summary, "trust_roots": trust.source}, indent=2))
    elif report.first_error is None:
        print(f"{path}: intact. {report.records} records; hash chain unbroken; every signature verified")
        print(f"  against {len(trust.certificates.roots)} root CA certificate(s) from {trust.source};")
        print(
            f"  {summary.get('timestamped_records', 0)} records covered by "
            f"{summary.get('checkpoints', 0)} timestamped checkpoint(s)."
        )
    else:
        problem = report.first_error
        if problem.seq is None:
            print(f"{path}: NOT intact. {problem.reason}")
        else:
            print(f"{path}: NOT intact. First bad record: {problem.seq} (message {problem.message_id}).")
            print(f"  {problem.reason}")
    return 0 if report.first_error is None else 1
