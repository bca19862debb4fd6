"""The registry's HTTP service: publishes the signed global configuration and regenerates it.

``GET /globalconf`` answers with the current signed document (``application/jose``);
``GET /healthz`` with its serial and expiry.  A background task rebuilds the document
every ``interval_s``: it re-reads the federation file (a broken file keeps the last
good definition and logs an error), takes a fresh durable serial, signs and swaps one
reference.  With ``database_url`` instead of ``federation`` the definition is read
from the registry store (:mod:`registry.store`) each round, with the same rule: a
failed read keeps the last good definition.  The first document is built during
application start-up, so the listener never answers without one.  Mirrors may serve
the same bytes; security servers trust the signature, not the transport.

With ``database_url`` the registry also serves its management API under ``/api/v1``
(:mod:`registry.api`) and its OpenAPI document at ``/openapi.json``; API tokens are
signed with ``state_dir/registry-token.key`` (created on first start, encrypted with the
signing-key passphrase), issued by ``xweg registry token issue``.  Security servers
submit registration requests under ``/registration/v1`` (:mod:`registry.registration`).
It looks for changes every ``change_poll_s`` (the newest audit-trail entry moves with
every change, whichever process made it) and publishes a new document at once when
there is one, so an approval reaches the security servers within their next poll.

Configuration is one TOML file (paths relative to it)::

    federation = "federation.toml"        # or: database_url = "sqlite:///state/registry.db"
    state_dir = "state"
    host = "127.0.0.1"
    port = 8080
    interval_s = 60
    validity_s = 600
    change_poll_s = 2                     # with database_url: publish changes this soon
    [registration]
    auto_approve = []                     # or ["client"], ["auth-cert", "client"]
    [signing]
    key = "keys/globalconf.key"
    key_id = "2025-1"
    passphrase_file = "keys/passphrase"   # or passphrase_env = "XWEG_REGISTRY_PASSPHRASE"

Several signing keys (k-of-n; every key signs each document) replace ``key``/``key_id``
with a list; ``announce`` names the key set a rotation moves security servers to::

    [signing]
    passphrase_file = "keys/passphrase"
    announce = ["2026-1", "2026-2"]       # optional: key ids of the next key set
    announce_threshold = 2                # its threshold (default 1)
    [[signing.keys]]
    key = "keys/2025-1.key"
    key_id = "2025-1"
    [[signing.keys]]
    key = "keys/2026-1.key"
    key_id = "2026-1"
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from core.clock import Clock, SystemClock
from registry.api import (
    API_CONTEXT_KEY,
    ApiContext,
    load_or_create_registry_token_key,
    make_api,
    openapi_handler,
    registry_token_key_path,
)
from registry.federation import FederationDefinition, FederationError
from registry.openapi import API_PREFIX
from registry.publisher import Publication, Publisher, SerialStore
from registry.registration import (
    REGISTRATION_CONTEXT_KEY,
    REGISTRATION_PREFIX,
    RegistrationContext,
    make_registration_app,
)
from registry.store import RegistryError, RegistryStore, normalise_url
from trust.anchor import AnchorKey, KeySet
from trust.keys import load_private_key, public_key_pem, write_atomic
from trust.registration import RegistrationKind
from trust.service.runner import run_until_signalled, serve_app

__all__ = [
    "RegistrySettings",
    "RegistryState",
    "SETTINGS_KEY",
    "CLOCK_KEY",
    "STATE_KEY",
    "make_app",
    "regenerate",
    "serve",
    "main",
]

log = structlog.get_logger("xweg.registry")

JOSE_CONTENT_TYPE = "application/jose"
#: RFC 7515 section 9.2.1: the JWS JSON serialization, used when several keys sign.
JOSE_JSON_CONTENT_TYPE = "application/jose+json"


def format_time(value: datetime) -> str:
    return (
        value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value.microsecond else value.strftime("%Y-%m-%dT%H:%M:%SZ")
    )


@dataclass(frozen=True)
class RegistrySettings:
    """Everything the registry needs, built once at start-up."""

    federation_path: Path | None
    signing_key_path: Path
    key_passphrase: bytes | None
    key_id: str
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    interval_s: float = 60.0  # seconds between regenerations
    validity_s: float = 600.0  # seconds a document stays valid after it is generated
    max_body_bytes: int = 16 * 1024  # the registry only serves GETs; bound what a client may send
    database_url: str | None = None  # the registry store, instead of a federation file
    # Further signing keys after the first (signing_key_path, key_id): (path, key id).
    more_signing_keys: tuple[tuple[Path, str], ...] = ()
    # Key ids (of the signing keys above) announced as the next key set, and its threshold.
    announce_key_ids: tuple[str, ...] = ()
    announce_threshold: int = 1
    # Registration-request kinds approved without an officer (X-Road: off by default).
    auto_approve: tuple[RegistrationKind, ...] = ()
    # With a store: how often to look for changes, so a change is published within this time.
    change_poll_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("signing_key_path", "state_dir"):
            if not isinstance(getattr(self, name), Path):
                raise ValueError(f"{name} must be a Path")
        if (self.federation_path is None) == (self.database_url is None):
            raise ValueError("give exactly one of federation (a file) and database_url (the registry store)")
        if self.federation_path is not None and not isinstance(self.federation_path, Path):
            raise ValueError("federation_path must be a Path")
        if self.database_url is not None and (
            not isinstance(self.database_url, str) or not self.database_url
        ):
            raise ValueError("database_url must be a non-empty string")
        if self.key_passphrase is not None and not isinstance(self.key_passphrase, bytes):
            raise ValueError("key_passphrase must be bytes or None")
        if not isinstance(self.key_id, str) or not self.key_id or len(self.key_id) > 128:
            raise ValueError("key_id must be a non-empty string of at most 128 characters")
        for entry in self.more_signing_keys:
            if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], Path)):
                raise ValueError("more_signing_keys must be (Path, key id) pairs")
            if not isinstance(entry[1], str) or not entry[1] or len(entry[1]) > 128:
                raise ValueError("key_id must be a non-empty string of at most 128 characters")
        ids = self.signing_key_ids
        if len(set(ids)) != len(ids):
            raise ValueError(f"signing key ids must be unique, got {list(ids)}")
        if not isinstance(self.announce_key_ids, tuple) or not set(self.announce_key_ids) <= set(ids):
            raise ValueError("announce must name key ids of the signing keys")
        if len(set(self.announce_key_ids)) != len(self.announce_key_ids):
            raise ValueError("announce names a key id twice")
        if (
            isinstance(self.announce_threshold, bool)
            or not isinstance(self.announce_threshold, int)
            or not 1 <= self.announce_threshold <= max(1, len(self.announce_key_ids))
        ):
            raise ValueError("announce_threshold must be from 1 to the number of announced keys")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host must be a non-empty string")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port!r}")
        if not self.interval_s > 0:
            raise ValueError("interval_s must be positive")
        # A document must outlive the interval, or servers see it expire before the next one.
        if not self.validity_s > self.interval_s:
            raise ValueError(f"validity_s ({self.validity_s}) must exceed interval_s ({self.interval_s})")
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 0:
            raise ValueError("max_body_bytes must be a non-negative integer")
        if not isinstance(self.auto_approve, tuple) or not all(
            isinstance(kind, RegistrationKind) for kind in self.auto_approve
        ):
            raise ValueError("auto_approve must be a tuple of RegistrationKind")
        if not 0.05 <= self.change_poll_s <= 3600:
            raise ValueError("change_poll_s must be from 0.05 to 3600 seconds")

    @property
    def signing_key_ids(self) -> tuple[str, ...]:
        return (self.key_id, *(kid for _, kid in self.more_signing_keys))

    @property
    def serial_path(self) -> Path:
        return self.state_dir / "serial.json"

    @property
    def document_path(self) -> Path:
        """Where the current signed document is also written, for mirrors and operators."""
        return self.state_dir / "globalconf.jws"

    @classmethod
    def load(cls, path: Path, environ: dict[str, str] | None = None) -> RegistrySettings:
        """Read the TOML configuration; ``environ`` defaults to the process environment."""
        path = Path(path)
        base = path.parent
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        known = {
            "federation",
            "database_url",
            "state_dir",
            "host",
            "port",
            "interval_s",
            "validity_s",
            "max_body_bytes",
            "signing",
            "registration",
            "change_poll_s",
        }
        unknown = data.keys() - known
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
        signing = data.get("signing")
        if not isinstance(signing, dict):
            raise ValueError(f"{path}: missing [signing] table")
        unknown = signing.keys() - {
            "key",
            "key_id",
            "keys",
            "announce",
            "announce_threshold",
            "passphrase_file",
            "passphrase_env",
        }
        if unknown:
            raise ValueError(f"{path}: [signing] has unknown key(s) {', '.join(sorted(unknown))}")

        def text(table: dict[str, Any], key: str, where: str) -> str:
            value = table.get(key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{path}: {where}{key} must be a non-empty string")
            return value

        passphrase: bytes | None = None
        if "passphrase_file" in signing and "passphrase_env" in signing:
            raise ValueError(f"{path}: give passphrase_file or passphrase_env, not both")
        if "passphrase_file" in signing:
            secret = base / text(signing, "passphrase_file", "[signing] ")
            # A trailing newline is an editor's, not part of the passphrase.
            passphrase = secret.read_bytes().rstrip(b"\r\n")
        elif "passphrase_env" in signing:
            name = text(signing, "passphrase_env", "[signing] ")
            env = os.environ if environ is None else environ
            if name not in env:
                raise ValueError(f"{path}: environment variable {name} (passphrase_env) is not set")
            passphrase = env[name].encode("utf-8")
        key_files: list[tuple[Path, str]] = []
        if "keys" in signing:
            if "key" in signing or "key_id" in signing:
                raise ValueError(f"{path}: give [signing] key and key_id, or [[signing.keys]], not both")
            entries = signing["keys"]
            if not isinstance(entries, list) or not entries:
                raise ValueError(f"{path}: [[signing.keys]] must list at least one key")
            for entry in entries:
                if not isinstance(entry, dict) or entry.keys() - {"key", "key_id"}:
                    raise ValueError(f"{path}: each [[signing.keys]] has exactly key and key_id")
                key_files.append(
                    (
                        base / text(entry, "key", "[[signing.keys]] "),
                        text(entry, "key_id", "[[signing.keys]] "),
                    )
                )
        else:
            key_files.append(
                (base / text(signing, "key", "[signing] "), text(signing, "key_id", "[signing] "))
            )
        announce = signing.get("announce", [])
        if not isinstance(announce, list) or not all(isinstance(kid, str) for kid in announce):
            raise ValueError(f"{path}: [signing] announce must be a list of key ids")
        registration = data.get("registration", {})
        if not isinstance(registration, dict) or registration.keys() - {"auto_approve"}:
            raise ValueError(f"{path}: [registration] takes only auto_approve")
        kinds = registration.get("auto_approve", [])
        allowed = [kind.value for kind in RegistrationKind]
        if not isinstance(kinds, list) or any(kind not in allowed for kind in kinds):
            raise ValueError(f"{path}: [registration] auto_approve must list kinds out of {allowed}")
        federation_path: Path | None = None
        database_url: str | None = None
        if "database_url" in data:
            if "federation" in data:
                raise ValueError(f"{path}: give federation or database_url, not both")
            try:
                # Relative SQLite paths mean relative to this file, like every other path here.
                database_url = normalise_url(text(data, "database_url", ""), base).render_as_string(
                    hide_password=False
                )
            except RegistryError as exc:
                raise ValueError(f"{path}: database_url: {exc}") from exc
        else:
            federation_path = base / text(data, "federation", "")
        try:
            return cls(
                federation_path=federation_path,
                database_url=database_url,
                signing_key_path=key_files[0][0],
                key_passphrase=passphrase or None,
                key_id=key_files[0][1],
                more_signing_keys=tuple(key_files[1:]),
                announce_key_ids=tuple(announce),
                announce_threshold=signing.get("announce_threshold", 1),
                state_dir=base / data.get("state_dir", "state"),
                host=data.get("host", "127.0.0.1"),
                port=data.get("port", 8080),
                interval_s=float(data.get("interval_s", 60.0)),
                validity_s=float(data.get("validity_s", 600.0)),
                max_body_bytes=data.get("max_body_bytes", 16 * 1024),
                auto_approve=tuple(RegistrationKind(kind) for kind in kinds),
                change_poll_s=float(data.get("change_poll_s", 2.0)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc


class RegistryState:
    """What the running registry holds: the last good definition and the current publication."""

    def __init__(
        self,
        publisher: Publisher,
        definition: FederationDefinition,
        current: Publication,
        store: RegistryStore | None = None,
    ) -> None:
        self.publisher = publisher
        self.definition = definition
        self.current = current
        self.store = store


SETTINGS_KEY = web.AppKey("settings", RegistrySettings)
CLOCK_KEY = web.AppKey("clock", Clock)
STATE_KEY = web.AppKey("state", RegistryState)


def _publish(
    settings: RegistrySettings, publisher: Publisher, definition: FederationDefinition, clock: Clock
) -> Publication:
    publication = publisher.publish(definition, clock.now())
    write_atomic(settings.document_path, publication.document)
    return publication


def _read_definition(settings: RegistrySettings, store: RegistryStore | None) -> FederationDefinition:
    if store is not None:
        return store.definition()
    assert settings.federation_path is not None  # one of the two, checked by RegistrySettings
    return FederationDefinition.load(settings.federation_path)


def _reload(settings: RegistrySettings, state: RegistryState) -> FederationDefinition:
    try:
        definition = _read_definition(settings, state.store)
    except (FederationError, RegistryError) as exc:
        log.error("registry.federation_invalid", error=str(exc), kept_serial=state.current.conf.serial)
        return state.definition
    return definition


async def regenerate(app: web.Application) -> Publication:
    """Re-read the federation, build, sign, persist and swap; keeps the old document on failure."""
    settings, state, clock = app[SETTINGS_KEY], app[STATE_KEY], app[CLOCK_KEY]

    def work() -> tuple[FederationDefinition, Publication]:
        definition = _reload(settings, state)
        return definition, _publish(settings, state.publisher, definition, clock)

    # File reads, signing and fsync block; keep them off the event loop.
    definition, publication = await asyncio.to_thread(work)
    state.definition = definition
    state.current = publication
    log.info(
        "registry.published",
        serial=publication.conf.serial,
        expires_at=format_time(publication.conf.expires_at),
    )
    return publication


async def _regenerate_forever(app: web.Application) -> None:
    """Regenerate every ``interval_s``, and, with a store, as soon as a change is seen."""
    settings, state, loop = app[SETTINGS_KEY], app[STATE_KEY], asyncio.get_running_loop()
    store = state.store
    published_marker = None if store is None else await asyncio.to_thread(store.change_marker)
    due = loop.time() + settings.interval_s
    while True:
        await asyncio.sleep(
            max(0.0, due - loop.time())
            if store is None
            else min(settings.change_poll_s, max(0.0, due - loop.time()))
        )
        try:
            if store is not None and loop.time() < due:
                marker = await asyncio.to_thread(store.change_marker)
                if marker == published_marker:
                    continue
                published_marker = marker
            elif store is not None:
                published_marker = await asyncio.to_thread(store.change_marker)
            due = loop.time() + settings.interval_s
            await regenerate(app)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Keep serving the last document (it expires on its own) and try again next time.
            log.exception("registry.regeneration_failed", serial=app[STATE_KEY].current.conf.serial)


async def _publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, clock = app[SETTINGS_KEY], app[CLOCK_KEY]

    def start() -> RegistryState:
        key = load_private_key(settings.signing_key_path, settings.key_passphrase)
        more_keys = [
            (load_private_key(key_path, settings.key_passphrase), kid)
            for key_path, kid in settings.more_signing_keys
        ]
        key_set = None
        if settings.announce_key_ids:
            by_id = {kid: k for k, kid in [(key, settings.key_id), *more_keys]}
            key_set = KeySet(
                tuple(AnchorKey(kid, public_key_pem(by_id[kid])) for kid in settings.announce_key_ids),
                settings.announce_threshold,
            )
        store = None if settings.database_url is None else RegistryStore.open(settings.database_url)
        try:
            definition = _read_definition(settings, store)
            publisher = Publisher(
                key,
                settings.key_id,
                SerialStore(settings.serial_path),
                timedelta(seconds=settings.validity_s),
                more_keys=more_keys,
                key_set=key_set,
            )
            settings.state_dir.mkdir(parents=True, exist_ok=True)
            publication = _publish(settings, publisher, definition, clock)
            if store is not None:
                token_key = load_or_create_registry_token_key(
                    registry_token_key_path(settings.state_dir), settings.key_passphrase
                )
                app[API_CONTEXT_KEY] = ApiContext(store, token_key.public_key(), clock)
                app[REGISTRATION_CONTEXT_KEY] = RegistrationContext(
                    store, clock, frozenset(settings.auto_approve)
                )
        except BaseException:
            if store is not None:
                store.close()
            raise
        return RegistryState(publisher, definition, publication, store)

    state = await asyncio.to_thread(start)
    app[STATE_KEY] = state
    log.info(
        "registry.published",
        serial=state.current.conf.serial,
        expires_at=format_time(state.current.conf.expires_at),
    )
    task = asyncio.create_task(_regenerate_forever(app), name="registry-regenerate")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if state.store is not None:
            state.store.close()


async def _get_globalconf(request: web.Request) -> web.Response:
    publication = request.app[STATE_KEY].current
    return web.Response(
        body=publication.document,
        content_type=JOSE_JSON_CONTENT_TYPE if publication.document.startswith(b"{") else JOSE_CONTENT_TYPE,
        headers={"Cache-Control": "no-cache", "ETag": f'"{publication.conf.serial}"'},
    )


async def _get_healthz(request: web.Request) -> web.Response:
    conf = request.app[STATE_KEY].current.conf
    expired = conf.is_expired(request.app[CLOCK_KEY].now())
    return web.json_response(
        {
            "status": "expired" if expired else "ok",
            "instance": conf.instance,
            "serial": conf.serial,
            "generated_at": format_time(conf.generated_at),
            "expires_at": format_time(conf.expires_at),
        },
        status=503 if expired else 200,
    )


def make_app(settings: RegistrySettings, clock: Clock) -> web.Application:
    """The registry application; start-up builds the first document before anything is served."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS_KEY] = settings
    app[CLOCK_KEY] = clock
    app.cleanup_ctx.append(_publisher_ctx)
    app.router.add_get("/globalconf", _get_globalconf)
    app.router.add_get("/healthz", _get_healthz)
    if settings.database_url is not None:
        app.router.add_get("/openapi.json", openapi_handler)
        app.add_subapp(API_PREFIX, make_api())
        app.add_subapp(REGISTRATION_PREFIX, make_registration_app())
    return app


async def serve(
    settings: RegistrySettings, *, clock: Clock | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run the registry until cancelled or until ``stop`` is set."""
    await serve_app(
        make_app(settings, clock or SystemClock()), settings.host, settings.port, name="registry", stop=stop
    )


def main(config_path: str) -> int:
    """Blocking entry point: run until SIGTERM or SIGINT; 0 on a clean stop, 1 if start-up failed.

    Logging is configured by the process's entry point (``xweg registry serve``).
    """
    try:
        settings = RegistrySettings.load(Path(config_path))
    except (OSError, ValueError) as exc:
        log.error("registry.config_invalid", path=config_path, error=str(exc))
        return 1

    return run_until_signalled(
        lambda stop: serve(settings, stop=stop),
        name="registry",
        startup_errors=(OSError, ValueError, RuntimeError),
    )
