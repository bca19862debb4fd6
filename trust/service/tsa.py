"""The timestamping authority as an HTTP service (RFC 3161 §3.4, ``xweg trust tsa serve``).

``POST /`` takes a DER ``TimeStampReq`` (``Content-Type: application/timestamp-query``)
and answers ``200`` with a DER ``TimeStampResp`` (``application/timestamp-reply``);
a malformed request is answered with a ``rejection`` response, as RFC 3161 asks, not
with an HTTP error.  Another content type gets ``415``, a body over the limit ``413``.
``GET /healthz`` reports the certificate's validity and the last serial number.

Tokens are built and signed by :func:`trust.timestamps.issue_timestamp_response`; this
module adds the key and certificate files, the clock and the serial numbers.  Serials
strictly increase, also across restarts: each is written to the state file (atomic
rename, fsync) before a token carrying it leaves the process.

Configuration is one TOML file (paths relative to it)::

    certificate = "keys/tsa.pem"          # the TSA certificate, then its chain
    key = "keys/tsa.key"                  # PKCS#8 PEM, encrypted
    passphrase_file = "keys/passphrase"   # or passphrase_env = "XWEG_TSA_PASSPHRASE"
    host = "127.0.0.1"
    port = 3180
    serial_state = "state/tsa-serial.json"
    max_request_bytes = 16384
    accuracy_s = 1
    policy_oid = "2.25.209046379563771518361849922880985824258.1"   # the default
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import Clock, SystemClock
from trust.keys import load_certificates, load_private_key, write_atomic
from trust.profiles import describe
from trust.service.runner import run_until_signalled, serve_app
from trust.timestamps import (
    MAX_REQUEST_BYTES,
    TSA_POLICY_OID,
    issue_timestamp_response,
    rejection_for_request,
    rejection_response,
)

__all__ = [
    "QUERY_CONTENT_TYPE",
    "REPLY_CONTENT_TYPE",
    "TsaSettings",
    "SerialState",
    "SerialStateError",
    "TsaState",
    "SETTINGS_KEY",
    "CLOCK_KEY",
    "STATE_KEY",
    "make_tsa_app",
    "serve",
    "main",
]

log = structlog.get_logger("xweg.tsa")

QUERY_CONTENT_TYPE = "application/timestamp-query"
REPLY_CONTENT_TYPE = "application/timestamp-reply"
#: Bound on the serial state file; it holds one small JSON object.
_MAX_STATE_BYTES = 4096
_KNOWN_KEYS = frozenset(
    {
        "certificate",
        "key",
        "passphrase_file",
        "passphrase_env",
        "host",
        "port",
        "serial_state",
        "max_request_bytes",
        "accuracy_s",
        "policy_oid",
    }
)


@dataclass(frozen=True)
class TsaSettings:
    """Everything the TSA needs, built once at start-up."""

    certificate_path: Path  # PEM: the TSA certificate first, then its chain
    key_path: Path  # PKCS#8 PEM
    key_passphrase: bytes | None = field(repr=False)
    serial_state_path: Path
    host: str = "127.0.0.1"
    port: int = 3180
    max_request_bytes: int = MAX_REQUEST_BYTES  # bytes of one TimeStampReq
    accuracy_s: int = 1  # seconds, stated in every token
    policy_oid: str = TSA_POLICY_OID

    def __post_init__(self) -> None:
        for name in ("certificate_path", "key_path", "serial_state_path"):
            if not isinstance(getattr(self, name), Path):
                raise ValueError(f"{name} must be a Path")
        if self.key_passphrase is not None and not isinstance(self.key_passphrase, bytes):
            raise ValueError("key_passphrase must be bytes or None")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host must be a non-empty string")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port!r}")
        if (
            isinstance(self.max_request_bytes, bool)
            or not isinstance(self.max_request_bytes, int)
            or not 0 < self.max_request_bytes <= MAX_REQUEST_BYTES
        ):
            raise ValueError(f"max_request_bytes must be 1..{MAX_REQUEST_BYTES}")
        if isinstance(self.accuracy_s, bool) or not isinstance(self.accuracy_s, int) or self.accuracy_s < 0:
            raise ValueError("accuracy_s must be a non-negative integer")
        try:
            x509.ObjectIdentifier(self.policy_oid)
        except (TypeError, ValueError):
            raise ValueError(f"policy_oid {self.policy_oid!r} is not a dotted OID") from None

    @classmethod
    def load(cls, path: Path, environ: Mapping[str, str] | None = None) -> TsaSettings:
        """Read the TOML configuration; ``environ`` defaults to the process environment."""
        path = Path(path)
        base = path.parent
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
        unknown = data.keys() - _KNOWN_KEYS
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")

        def text(key: str) -> str:
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{path}: {key} must be a non-empty string")
            return value

        if "passphrase_file" in data and "passphrase_env" in data:
            raise ValueError(f"{path}: give passphrase_file or passphrase_env, not both")
        if "passphrase_file" in data:
            # A trailing newline is an editor's, not part of the passphrase.
            passphrase: bytes | None = (base / text("passphrase_file")).read_bytes().rstrip(b"\r\n")
        elif "passphrase_env" in data:
            name = text("passphrase_env")
            env = os.environ if environ is None else environ
            if name not in env:
                raise ValueError(f"{path}: environment variable {name} (passphrase_env) is not set")
            passphrase = env[name].encode("utf-8")
        else:
            raise ValueError(f"{path}: the TSA key is encrypted; give passphrase_file or passphrase_env")
        try:
            return cls(
                certificate_path=base / text("certificate"),
                key_path=base / text("key"),
                key_passphrase=passphrase or None,
                serial_state_path=base / text("serial_state"),
                host=data.get("host", "127.0.0.1"),
                port=data.get("port", 3180),
                max_request_bytes=data.get("max_request_bytes", MAX_REQUEST_BYTES),
                accuracy_s=data.get("accuracy_s", 1),
                policy_oid=data.get("policy_oid", TSA_POLICY_OID),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc


class SerialStateError(RuntimeError):
    """The serial state file is unreadable; starting from scratch could reuse serials, so we stop."""


class SerialState:
    """A strictly increasing serial number, durable in one small JSON file before it is used."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last = self._read()

    def _read(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(_MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise SerialStateError(f"cannot read TSA serial state {self.path}: {exc}") from exc
        try:
            if len(data) > _MAX_STATE_BYTES:
                raise ValueError("file too large")
            value = json.loads(data)["serial"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SerialStateError(f"TSA serial state {self.path} is corrupt: {exc}") from exc
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SerialStateError(f"TSA serial state {self.path} holds an invalid serial {value!r}")
        return value

    @property
    def last(self) -> int:
        """The last serial handed out (0 if none)."""
        return self._last

    def next(self) -> int:
        """A serial larger than any before it, on disk when this returns (blocking: fsync)."""
        serial = self._last + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"serial": serial}).encode("ascii"))
        self._last = serial
        return serial


@dataclass(frozen=True)
class _Signer:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]


class TsaState:
    """What the running TSA holds: its signer, its serials, and the lock that orders them."""

    def __init__(self, signer: _Signer, serials: SerialState) -> None:
        self.signer = signer
        self.serials = serials
        # One token at a time: serials and generation times rise together.
        self.lock = asyncio.Lock()

    def valid_at(self, now: datetime) -> bool:
        cert = self.signer.certificate
        return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


SETTINGS_KEY = web.AppKey("tsa_settings", TsaSettings)
CLOCK_KEY = web.AppKey("tsa_clock", Clock)
STATE_KEY = web.AppKey("tsa_state", TsaState)


def _load_signer(settings: TsaSettings) -> _Signer:
    certs = load_certificates(settings.certificate_path)
    if not certs:
        raise ValueError(f"{settings.certificate_path} holds no certificate")
    key = load_private_key(settings.key_path, settings.key_passphrase)
    if certs[0].public_key() != key.public_key():
        raise ValueError(f"{settings.key_path} is not the key of {describe(certs[0])}")
    return _Signer(certs[0], key, tuple(certs[1:]))


async def _tsa_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, clock = app[SETTINGS_KEY], app[CLOCK_KEY]

    def start() -> TsaState:
        return TsaState(_load_signer(settings), SerialState(settings.serial_state_path))

    state = await asyncio.to_thread(start)
    app[STATE_KEY] = state
    cert = state.signer.certificate
    log.info(
        "tsa.started",
        certificate=describe(cert),
        not_after=cert.not_valid_after_utc.isoformat(),
        last_serial=state.serials.last,
    )
    if not state.valid_at(clock.now()):
        log.error("tsa.certificate_not_valid", certificate=describe(cert))
    yield


def _reply(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=REPLY_CONTENT_TYPE, headers={"Cache-Control": "no-store"})


async def _post_timestamp(request: web.Request) -> web.Response:
    if request.content_type != QUERY_CONTENT_TYPE:
        raise web.HTTPUnsupportedMediaType(text=f"expected Content-Type: {QUERY_CONTENT_TYPE}\n")
    settings, state, clock = request.app[SETTINGS_KEY], request.app[STATE_KEY], request.app[CLOCK_KEY]
    # Bounded by the application's client_max_size: 413 beyond it.
    body = await request.read()
    rejection = rejection_for_request(body, policy_oid=settings.policy_oid)
    if rejection is not None:
        log.info("tsa.rejected", reason="bad request", size=len(body))
        return _reply(rejection)
    async with state.lock:
        now = clock.now()
        if not state.valid_at(now):
            # A token under a certificate outside its validity would only be refused later.
            log.error("tsa.certificate_not_valid", certificate=describe(state.signer.certificate))
            return _reply(rejection_response("system_failure", "the TSA certificate is not valid now"))
        signer = state.signer

        def issue() -> tuple[int, bytes]:
            serial = state.serials.next()  # durable before the token exists
            return serial, issue_timestamp_response(
                body,
                tsa_certificate=signer.certificate,
                tsa_key=signer.key,
                chain=signer.chain,
                now=now,
                serial=serial,
                policy_oid=settings.policy_oid,
                accuracy_s=settings.accuracy_s,
            )

        try:
            serial, response = await asyncio.to_thread(issue)
        except OSError as exc:
            log.error("tsa.serial_state_failed", error=str(exc))
            return _reply(rejection_response("system_failure", "the TSA cannot record a serial number"))
    log.info("tsa.issued", serial=serial)
    return _reply(response)


async def _get_healthz(request: web.Request) -> web.Response:
    state, now = request.app[STATE_KEY], request.app[CLOCK_KEY].now()
    cert = state.signer.certificate
    ok = state.valid_at(now)
    return web.json_response(
        {
            "status": "ok" if ok else "certificate_not_valid",
            "certificate": describe(cert),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "last_serial": state.serials.last,
        },
        status=200 if ok else 503,
    )


def make_tsa_app(settings: TsaSettings, clock: Clock) -> web.Application:
    """The TSA application; start-up loads the key, the certificates and the serial state."""
    app = web.Application(client_max_size=settings.max_request_bytes)
    app[SETTINGS_KEY] = settings
    app[CLOCK_KEY] = clock
    app.cleanup_ctx.append(_tsa_ctx)
    app.router.add_post("/", _post_timestamp)
    app.router.add_get("/healthz", _get_healthz)
    return app


async def serve(
    settings: TsaSettings, *, clock: Clock | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run the TSA until cancelled or until ``stop`` is set."""
    await serve_app(
        make_tsa_app(settings, clock or SystemClock()), settings.host, settings.port, name="tsa", stop=stop
    )


def main(config_path: str) -> int:
    """Blocking entry point: run until SIGTERM or SIGINT; 0 on a clean stop, 1 if start-up failed.

    Logging is configured by the process's entry point (``xweg trust tsa serve``).
    """
    try:
        settings = TsaSettings.load(Path(config_path))
    except (OSError, ValueError) as exc:
        log.error("tsa.config_invalid", path=config_path, error=str(exc))
        return 1

    return run_until_signalled(
        lambda stop: serve(settings, stop=stop),
        name="tsa",
        startup_errors=(OSError, ValueError, RuntimeError),
    )
