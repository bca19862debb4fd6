"""The CA's OCSP responder over HTTP (RFC 6960 appendix A), on top of a :class:`~trust.castore.CaStore`.

* ``POST /`` with ``Content-Type: application/ocsp-request`` and the DER request as body;
* ``GET /{base64 of the DER request, URL-encoded}``;

both answer ``application/ocsp-response``.  Every request reads the certificate's
status from the store's register, so a revocation (``xweg trust ca revoke``, even from
another process) is answered from the next request on.  A request that does not parse
gets an OCSP ``malformedRequest`` response, a failing register ``internalError``;
requests are bounded (:data:`~trust.ocsp.MAX_OCSP_REQUEST_BYTES`).

Responses are valid for ``validity_s`` (nextUpdate) but verifiers judge freshness by
producedAt against their own limit; see :mod:`trust.ocsp`.  Logs are structlog events;
configuring logging is the entry point's job (``xweg trust ocsp serve``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import tomllib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import structlog
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp as x509_ocsp

from core.clock import Clock, SystemClock
from trust.castore import CaStore, read_passphrase
from trust.errors import TrustError
from trust.ocsp import MAX_OCSP_REQUEST_BYTES, CertStatus, build_ocsp_response
from trust.ocspclient import OCSP_REQUEST_CONTENT_TYPE, OCSP_RESPONSE_CONTENT_TYPE
from trust.service.runner import run_until_signalled, serve_app

__all__ = ["OcspResponderSettings", "make_ocsp_app", "serve", "main"]

log = structlog.get_logger("xweg.ocsp_responder")

#: Longest GET path we decode: base64 of the largest request we accept, URL-encoded.
_MAX_GET_PATH = 3 * (MAX_OCSP_REQUEST_BYTES * 4 // 3 + 4)
_DEFAULT_PORT = 8090


@dataclass(frozen=True)
class OcspResponderSettings:
    """Everything the responder needs, built once at start-up."""

    ca_dir: Path
    passphrase: bytes = field(repr=False)
    host: str = "127.0.0.1"
    port: int = _DEFAULT_PORT
    validity_s: float = 3600.0  # nextUpdate - thisUpdate of every response

    def __post_init__(self) -> None:
        if not isinstance(self.ca_dir, Path):
            raise ValueError("ca_dir must be a Path")
        if not isinstance(self.passphrase, bytes) or not self.passphrase:
            raise ValueError("passphrase must be non-empty bytes")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host must be a non-empty string")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port!r}")
        if isinstance(self.validity_s, bool) or not isinstance(self.validity_s, (int, float)):
            raise ValueError("validity_s must be a number of seconds")
        if not 0 < self.validity_s <= 7 * 24 * 3600:
            raise ValueError("validity_s must be positive and at most a week")

    @classmethod
    def load(cls, toml_path: Path, environ: Mapping[str, str] | None = None) -> OcspResponderSettings:
        """Read the TOML configuration (paths relative to it); ``environ`` defaults to the process's.

        Keys: ``ca_dir``, ``passphrase_file`` or ``passphrase_env``, ``host``, ``port``,
        ``validity_s``.
        """
        path = Path(toml_path)
        try:
            with open(path, "rb") as fh:
                data: dict[str, Any] = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc
        known = {"ca_dir", "passphrase_file", "passphrase_env", "host", "port", "validity_s"}
        unknown = data.keys() - known
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
        ca_dir = data.get("ca_dir")
        if not isinstance(ca_dir, str) or not ca_dir:
            raise ValueError(f"{path}: ca_dir must be a non-empty string")
        passphrase_file = data.get("passphrase_file")
        passphrase_env = data.get("passphrase_env")
        for key, value in (("passphrase_file", passphrase_file), ("passphrase_env", passphrase_env)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{path}: {key} must be a non-empty string")
        try:
            passphrase = read_passphrase(
                path.parent / passphrase_file if passphrase_file else None,
                passphrase_env,
                os.environ if environ is None else environ,
            )
            return cls(
                ca_dir=path.parent / ca_dir,
                passphrase=passphrase,
                host=data.get("host", "127.0.0.1"),
                port=data.get("port", _DEFAULT_PORT),
                validity_s=data.get("validity_s", 3600.0),
            )
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class _Config:
    store_dir: Path
    passphrase: bytes = field(repr=False)
    validity_s: float


_CONFIG_KEY = web.AppKey("config", _Config)
_CLOCK_KEY = web.AppKey("clock", Clock)
_STORE_KEY = web.AppKey("store", CaStore)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[_CONFIG_KEY]
    store = await asyncio.to_thread(CaStore.open, config.store_dir, config.passphrase)
    app[_STORE_KEY] = store
    log.info(
        "ocsp_responder.started",
        ca_dir=str(config.store_dir),
        issuing_ca=store.issuing_certificate.subject.rfc4514_string(),
        responder=store.responder_certificate.subject.rfc4514_string(),
    )
    try:
        yield
    finally:
        store.close()


def _ocsp_response(body: bytes) -> web.Response:
    return web.Response(
        body=body,
        content_type=OCSP_RESPONSE_CONTENT_TYPE,
        # Statuses change with revocations; caches must ask again.
        headers={"Cache-Control": "no-cache"},
    )


def _unsuccessful(status: x509_ocsp.OCSPResponseStatus) -> bytes:
    response = x509_ocsp.OCSPResponseBuilder.build_unsuccessful(status)
    return response.public_bytes(serialization.Encoding.DER)


async def _answer(app: web.Application, request_der: bytes, method: str) -> web.Response:
    store, config, clock = app[_STORE_KEY], app[_CONFIG_KEY], app[_CLOCK_KEY]
    asked: list[tuple[int, CertStatus]] = []

    def lookup(serial: int) -> CertStatus:
        status = store.status(serial)
        asked.append((serial, status))
        return status

    def work() -> bytes:
        return build_ocsp_response(
            request_der,
            lookup=lookup,
            issuer=store.issuing_certificate,
            responder_certificate=store.responder_certificate,
            responder_key=store.responder_key,
            now=clock.now(),
            validity_s=config.validity_s,
        )

    try:
        # Register read and signing block; keep them off the event loop.
        body = await asyncio.to_thread(work)
    except TrustError as exc:
        log.error("ocsp_responder.internal_error", method=method, error=str(exc))
        return _ocsp_response(_unsuccessful(x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR))
    if asked:
        serial, status = asked[0]
        log.info("ocsp_responder.answered", method=method, serial=str(serial), status=status.status)
    else:
        log.info("ocsp_responder.answered", method=method, status="malformed or foreign issuer")
    return _ocsp_response(body)


async def _post(request: web.Request) -> web.Response:
    if request.content_type != OCSP_REQUEST_CONTENT_TYPE:
        raise web.HTTPUnsupportedMediaType(text=f"Content-Type must be {OCSP_REQUEST_CONTENT_TYPE}\n")
    # client_max_size bounds the body: aiohttp answers 413 beyond it.
    return await _answer(request.app, await request.read(), "POST")


async def _get(request: web.Request) -> web.Response:
    raw = request.rel_url.raw_path.lstrip("/")
    if len(raw) > _MAX_GET_PATH:
        raise web.HTTPRequestURITooLong(text="OCSP request too large for GET; use POST\n")
    try:
        request_der = base64.b64decode(unquote(raw), validate=True)
    except (binascii.Error, ValueError):
        log.info("ocsp_responder.answered", method="GET", status="malformed")
        return _ocsp_response(_unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
    return await _answer(request.app, request_der, "GET")


def make_ocsp_app(
    store_dir: Path, passphrase: bytes, clock: Clock, *, validity_s: float = 3600.0
) -> web.Application:
    """The responder application; start-up opens the CA store, clean-up closes it."""
    app = web.Application(client_max_size=MAX_OCSP_REQUEST_BYTES)
    app[_CONFIG_KEY] = _Config(Path(store_dir), passphrase, validity_s)
    app[_CLOCK_KEY] = clock
    app.cleanup_ctx.append(_store_ctx)
    app.router.add_post("/", _post)
    app.router.add_get("/{request:.+}", _get)
    return app


async def serve(
    settings: OcspResponderSettings, *, clock: Clock | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run the responder until cancelled or until ``stop`` is set."""
    await serve_app(
        make_ocsp_app(
            settings.ca_dir, settings.passphrase, clock or SystemClock(), validity_s=settings.validity_s
        ),
        settings.host,
        settings.port,
        name="ocsp_responder",
        stop=stop,
    )


def main(config_path: str | Path) -> int:
    """Blocking entry point: run until SIGTERM or SIGINT; 0 on a clean stop, 1 if start-up failed."""
    try:
        settings = OcspResponderSettings.load(Path(config_path))
    except (OSError, ValueError) as exc:
        log.error("ocsp_responder.config_invalid", path=str(config_path), error=str(exc))
        return 1

    return run_until_signalled(
        lambda stop: serve(settings, stop=stop),
        name="ocsp_responder",
        startup_errors=(OSError, ValueError, RuntimeError, TrustError),
    )
