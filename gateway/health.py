"""Liveness and readiness of a running security server (``/healthz``, ``/readyz``).

Alive means the process answers; :func:`liveness` says no more.  Ready means it can
take exchanges now; :func:`readiness` runs these checks at one ``now`` and names each
that failed and why:

1. ``globalconf``: a verified global configuration, current (not expired) at ``now``;
2. ``certificates``: the auth certificate and every sign certificate within their
   validity at ``now``, each sign key matching its certificate;
3. ``ocsp``: an OCSP response held for each of those certificates, produced within
   the freshness limit global configuration sets (peers refuse older ones);
4. ``message_log``: the writer is running and its last commit did not fail;
5. ``timestamping``: no record has waited for a timestamp longer than the acceptable
   period (past it the pipelines refuse new traffic).

The body also carries what operators and the federation runner read: the
configuration's serial and expiry, untimestamped records, the last timestamping and
archiving errors.  Fixing anything is left to the components themselves.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from gateway.messagelog.errors import TimestampingOverdue
from gateway.runtime import Gateway
from trust.certificates import describe
from trust.globalconf import GlobalConf

__all__ = ["Check", "liveness", "readiness"]


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and what failed (empty when it passed)."""

    name: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "problems": list(self.problems)}


def _certificates(gateway: Gateway) -> list[tuple[str, x509.Certificate]]:
    named = [("auth certificate", gateway.auth_certificate)]
    named += [(f"sign certificate of {m.slash()}", s.certificate) for m, s in gateway.signers.items()]
    return named


def _check_globalconf(gateway: Gateway, conf: GlobalConf | None) -> Check:
    if conf is not None:
        return Check("globalconf")
    latest = gateway.globalconf.trusted.latest
    if latest is None:
        return Check("globalconf", ("no valid global configuration has been received yet",))
    return Check(
        "globalconf",
        (f"global configuration serial {latest.serial} expired at {latest.expires_at.isoformat()}",),
    )


def _check_certificates(gateway: Gateway, now: dt.datetime) -> Check:
    problems = []
    for name, cert in _certificates(gateway):
        if now < cert.not_valid_before_utc:
            problems.append(
                f"{name} {describe(cert)} is valid only from {cert.not_valid_before_utc.isoformat()}"
            )
        elif now > cert.not_valid_after_utc:
            problems.append(f"{name} {describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}")
    for member, signer in gateway.signers.items():
        if signer.key.public_key() != signer.certificate.public_key():
            problems.append(f"the sign key of {member.slash()} does not match its certificate")
    return Check("certificates", tuple(problems))


def _check_ocsp(gateway: Gateway, conf: GlobalConf | None, now: dt.datetime) -> Check:
    problems = []
    for name, cert in _certificates(gateway):
        held = gateway.own_ocsp.validity(cert)
        if held is None:
            problems.append(f"no OCSP response is held for the {name} {describe(cert)}")
            continue
        produced_at, _ = held
        if conf is not None and (now - produced_at).total_seconds() > conf.ocsp_freshness_s:
            problems.append(
                f"the OCSP response for the {name} {describe(cert)} was produced at "
                f"{produced_at.isoformat()}, beyond the freshness limit of {conf.ocsp_freshness_s} s"
            )
    return Check("ocsp", tuple(problems))


def _check_message_log(gateway: Gateway) -> Check:
    writer = gateway.log
    if not writer.running:
        return Check("message_log", ("the message log writer is not running",))
    if writer.last_error is not None:
        return Check("message_log", (f"the last commit failed: {writer.last_error}",))
    return Check("message_log")


def _check_timestamping(gateway: Gateway, now: dt.datetime) -> Check:
    try:
        gateway.timestamper.check_acceptable(now)
    except TimestampingOverdue as exc:
        return Check("timestamping", (str(exc),))
    return Check("timestamping")


def liveness(gateway: Gateway) -> dict[str, Any]:
    """What ``/healthz`` answers (always 200): the process is up and answers."""
    return {"status": "alive", "server": gateway.config.server_id.slash()}


def readiness(gateway: Gateway) -> tuple[bool, dict[str, Any]]:
    """Whether the server is ready now, and ``/readyz``'s body: each check and what failed."""
    now = gateway.clock.now()
    conf = gateway.globalconf.trusted.current(now)
    checks = (
        _check_globalconf(gateway, conf),
        _check_certificates(gateway, now),
        _check_ocsp(gateway, conf, now),
        _check_message_log(gateway),
        _check_timestamping(gateway, now),
    )
    ready = all(check.ok for check in checks)
    stamping = gateway.timestamper.status()
    body = {
        "ready": ready,
        "server": gateway.config.server_id.slash(),
        "checks": [check.to_dict() for check in checks],
        "globalconf_serial": conf.serial if conf else None,
        "globalconf_expires_at": conf.expires_at.isoformat() if conf else None,
        "ocsp_ready": checks[2].ok,
        "untimestamped_records": stamping.pending,
        "last_timestamp_at": stamping.last_success_at.isoformat() if stamping.last_success_at else None,
        "last_timestamp_error": stamping.last_error,
        "last_archive_error": gateway.archiver.last_error,
    }
    return ready, body
