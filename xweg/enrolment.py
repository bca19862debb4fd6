"""How the local federation comes into being: through the registry, as a real one would.

The registry's store (``registry/registry.db``) persists across runs; each step below
does only what is not done yet, so a second run finds everything registered.

1. :func:`bootstrap_registry` — the state's registry administrator (IT.NRW) names the
   instance, the member classes and members, approves the CA (with its OCSP responder)
   and the TSA, and creates the global groups.  Done while preparing, before the
   registry first starts.
2. :func:`enrol` — with the registry and the trust services running, every security
   server submits a registration request for its auth certificate, signed by its new
   auth key and by its owner's sign key, and one per client subsystem, signed by that
   subsystem owner's sign key (:mod:`gateway.registration`, what ``xweg gateway
   register`` does); the registration officer approves each (what ``xweg registry
   requests approve`` does).  Then the administrator puts the subsystems into their
   global groups and catalogues the services, and :func:`enrol` waits until the
   registry's signed configuration, verified against the anchor, shows all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from core.identifiers import SubsystemId
from gateway.confclient.fetcher import FetchError, fetch_verified_global_conf
from gateway.config import GatewayConfig
from gateway.registration import RegistrationClient, RegistrationFailed
from registry.store import AuditContext, RegistryConflict, RegistryError, RegistryStore
from trust.anchor import load_anchor
from trust.certificates import fingerprint
from trust.globalconf import MAX_GLOBALCONF_BYTES, GlobalConf
from trust.keys import load_certificate, load_certificates
from xweg.federation import INSTANCE, TSA_NAME, FederationError, Layout

__all__ = ["ADMINISTRATOR", "OFFICER", "bootstrap_registry", "enrol"]

ADMINISTRATOR = "registry-admin@it.nrw (demo)"
OFFICER = "registration-officer@it.nrw (demo)"
_MEMBER_CLASSES = {"GOV": "state and federal authorities", "MUN": "municipalities and districts"}

Report = Callable[[str], None]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def bootstrap_registry(layout: Layout) -> None:
    """Step 1: what the registry administrator sets up before any server registers."""
    plan = layout.plan
    admin = AuditContext(ADMINISTRATOR, _now())
    with RegistryStore.open(layout.registry_database_url) as store:
        try:
            store.instance()
        except RegistryError:
            store.init(INSTANCE, ocsp_freshness_s=plan.ocsp_freshness_s, audit=admin)
        # Each step on its own: a run that stopped half-way through leaves the rest to do.
        if not store.approved_cas():
            store.add_approved_ca(
                _pem(load_certificate(layout.ca_certificate)),
                intermediates_pem=[_pem(load_certificate(layout.ca_dir / "issuing.pem"))],
                ocsp_url=layout.ocsp_url,
                ocsp_responders_pem=[_pem(load_certificate(layout.ca_dir / "ocsp.pem"))],
                audit=admin,
            )
        if not store.approved_tsas():
            tsa_certificate = load_certificates(layout.tsa_dir / "tsa.pem")[0]  # the TSA's own, not its chain
            store.add_approved_tsa(TSA_NAME, layout.tsa_url, _pem(tsa_certificate), audit=admin)
        definition = store.definition()
        classes = {m.id.member_class for m in definition.members}
        members = {m.id for m in definition.members}
        for member in plan.members:
            if member.id.member_class not in classes:
                description = _MEMBER_CLASSES.get(member.id.member_class, "")
                with contextlib.suppress(RegistryConflict):  # registered before, still without members
                    store.add_member_class(member.id.member_class, description, audit=admin)
                classes.add(member.id.member_class)
            if member.id not in members:
                store.add_member(member.id.member_class, member.id.member_code, member.name, audit=admin)
        groups = {g.id.group_code for g in definition.global_groups}
        for code in plan.global_groups:
            if code not in groups:
                store.add_global_group(code, "", (), audit=admin)


async def _register_servers(layout: Layout, store: RegistryStore, say: Report) -> None:
    registered = {s.id: s for s in store.definition().security_servers}
    # A run that stopped between asking and approving left its requests pending: the
    # officer decides those rather than the server asking twice (which the registry refuses).
    pending = store.registrations(status="pending")
    pending_auth = {e.auth_certificate_fingerprint: e.id for e in pending if e.kind == "auth-cert"}
    pending_client = {(e.server, e.client): e.id for e in pending if e.kind == "client"}
    for server in layout.plan.servers:
        config = GatewayConfig.load(layout.server_config(server.slug))
        known = registered.get(server.id)
        auth_fp = fingerprint(load_certificate(config.auth_certificate_path))
        async with RegistrationClient(config) as registry:
            if known is not None and auth_fp in known.auth_cert_fingerprints:
                say(f"  {server.name}: {server.id.slash()} is registered (kept from the last run)")
            else:
                # The address the others reach it at, not the one it binds (0.0.0.0 in a container).
                address = layout.address(server.slug + ".peer")
                request_id = pending_auth.get(auth_fp)
                request_id = request_id or (await registry.auth_cert(_now(), address=address)).id
                await _approve(store, request_id)
                say(
                    f"  {server.name}: {server.id.slash()} asked to register its auth certificate "
                    f"(request {request_id[:8]}), approved by the registration officer"
                )
            hosted = set(known.clients) if known is not None else set()
            for client in server.clients:
                if client in hosted:
                    continue
                if not isinstance(client, SubsystemId):
                    raise FederationError(f"{client}: only subsystems are registered as clients")
                waiting = pending_client.get((server.id.slash(), client.slash()))
                request_id = waiting or (await registry.client(client, _now())).id
                await _approve(store, request_id)
                signer = client.member.slash()
                say(f"    client {client.slash()} (request {request_id[:8]}, signed by {signer}), approved")


async def _approve(store: RegistryStore, request_id: str) -> None:
    await asyncio.to_thread(
        store.decide_registration, request_id, "approve", audit=AuditContext(OFFICER, _now())
    )


def _catalogue(layout: Layout, store: RegistryStore) -> None:
    """The administrator's part once subsystems exist: group members and the service catalogue."""
    admin = AuditContext(ADMINISTRATOR, _now())
    definition = store.definition()
    subsystems = {m.id: set(m.subsystems) for m in definition.members}
    for member in layout.plan.members:
        for code in member.subsystems:
            if code not in subsystems.get(member.id, set()):
                store.add_subsystem(member.id, code, audit=admin)  # declared, but hosted nowhere
    groups = {g.id.group_code: set(g.members) for g in store.definition().global_groups}
    for code, members in layout.plan.global_groups.items():
        for text in members:
            if SubsystemId.parse_slash(text) not in groups.get(code, set()):
                store.add_group_member(code, text, audit=admin)
    catalogued = {(e.provider, e.code, e.version) for e in store.services()}
    for server in layout.plan.servers:
        for service in server.services:
            sid = service.id
            if (sid.provider, sid.service_code, sid.service_version) in catalogued:
                continue
            store.add_service(
                sid.provider,
                sid.service_code,
                sid.service_version,
                service.protocol.upper(),
                service.description,
                service.standard,
                service.authorities,
                service.area,
                audit=admin,
            )


def _published(layout: Layout) -> GlobalConf | None:
    """What the registry publishes now, verified against the anchor; None when nothing verifies."""

    async def fetch() -> GlobalConf:
        async with aiohttp.ClientSession() as session:
            _, _, conf = await fetch_verified_global_conf(
                load_anchor(layout.anchor), session, _now(), timeout_s=5.0, max_size=MAX_GLOBALCONF_BYTES
            )
            return conf

    try:
        return asyncio.run(fetch())
    except FetchError:
        return None


def _complete(layout: Layout, conf: GlobalConf | None) -> bool:
    if conf is None:
        return False
    servers = {s.id: set(s.clients) for s in conf.security_servers}
    return all(set(plan.clients) <= servers.get(plan.id, set()) for plan in layout.plan.servers)


def enrol(layout: Layout, *, report: Report | None = None, timeout_s: float = 60.0) -> None:
    """Step 2: register every server and client through the workflow; wait until published."""
    say = report or (lambda line: None)
    with RegistryStore.open(layout.registry_database_url) as store:
        try:
            asyncio.run(_register_servers(layout, store, say))
        except (RegistrationFailed, RegistryError) as exc:
            raise FederationError(f"registration failed: {exc}") from exc
        _catalogue(layout, store)
    deadline = time.monotonic() + timeout_s
    while not _complete(layout, _published(layout)):
        if time.monotonic() > deadline:
            raise FederationError(
                f"the registry did not publish the registered servers within {timeout_s:.0f} s"
            )
        time.sleep(0.2)
