"""The management listener: the management API over HTTPS, with the internal TLS certificate.

Runs only when the configuration file has a ``[management_listener]`` section.  The
certificate and key are the server's internal TLS pair (:mod:`gateway.internaltls`,
made on first use; administrators pin its fingerprint, which the start-up log names);
no client certificate is asked for, the bearer token is the credential.  The token key
is made on first use too (:mod:`gateway.tokens`), so that ``xweg gateway token issue``
and the server agree on it whichever runs first.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import structlog
from aiohttp import web

from gateway.config import Listener
from gateway.internaltls import internal_tls_fingerprint, load_or_create_internal_tls
from gateway.management.api import ManagedGateway, RegisterClient, make_management_app
from gateway.tokens import TokenKey, load_token_key

__all__ = ["management_tls_context", "start_management_listener"]

log = structlog.get_logger("xweg.gateway")


def management_tls_context(certificate: Path, key: Path, passphrase: bytes | None) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the internal certificate; no client certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certificate), str(key), password=passphrase)
    return context


async def start_management_listener(
    gateway: ManagedGateway, listener: Listener, *, register_client: RegisterClient | None = None
) -> web.AppRunner:
    """Serve the management API on ``listener``; the caller cleans the runner up."""
    config = gateway.config
    certificate, key = load_or_create_internal_tls(config.data_dir, config.key_passphrase)
    # In the database on PostgreSQL: not on the event loop, which is serving already.
    token_key = await asyncio.to_thread(load_token_key, config, TokenKey.MANAGEMENT)
    tls = management_tls_context(certificate, key, config.key_passphrase)
    app = make_management_app(gateway, token_key.public_key(), register_client=register_client)
    # Its own bounds are the server's: stopping waits no longer for it than for the others.
    runner = web.AppRunner(app, access_log=None, **config.limits.runner_args())
    await runner.setup()
    try:
        site = web.TCPSite(runner, listener.host, listener.port, ssl_context=tls)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info(
        "listener.started",
        listener="management",
        port=listener.port,
        addresses=[str(a) for a in runner.addresses],
        internal_tls_fingerprint=internal_tls_fingerprint(certificate),
    )
    return runner
