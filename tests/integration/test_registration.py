"""The registration workflow between real processes: a server asks, an officer decides, all is published."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from core.identifiers import SubsystemId
from registry.store import RegistryStore
from tests.integration.conftest import (
    ARBEITSSCHUTZ,
    GEWERBEAMT,
    KREISVERWALTUNG,
    prepare_federation,
    two_server_plan,
)
from xweg.enrolment import OFFICER, _published
from xweg.federation import DETMOLD, KREIS_PB, PADERBORN, Layout, RunningFederation

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    layout = prepare_federation(tmp_path_factory.mktemp("registration"), two_server_plan())
    with RunningFederation(layout).running(timeout_s=90):
        yield layout


def xweg(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own command line
        [sys.executable, "-m", "xweg", *argv], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_federation_was_registered_through_the_workflow(layout: Layout) -> None:
    with RegistryStore.open(layout.registry_database_url) as store:
        approved = store.registrations(status="approved")
        trail = store.audit_trail(limit=1000)
    kinds = sorted((e.kind, e.server, e.client or "", e.consent_by) for e in approved)
    assert kinds == sorted(
        [
            ("auth-cert", f"{DETMOLD.slash()}/ss1", "", DETMOLD.slash()),
            ("auth-cert", f"{PADERBORN.slash()}/ss1", "", PADERBORN.slash()),
            ("client", f"{DETMOLD.slash()}/ss1", ARBEITSSCHUTZ.slash(), DETMOLD.slash()),
            ("client", f"{PADERBORN.slash()}/ss1", GEWERBEAMT.slash(), PADERBORN.slash()),
            # Kreis Paderborn's subsystem, hosted by the city's server, with the district's consent.
            ("client", f"{PADERBORN.slash()}/ss1", KREISVERWALTUNG.slash(), KREIS_PB.slash()),
        ]
    )
    assert {e.decided_by for e in approved} == {OFFICER}
    # Servers were never added by hand: every server entry came from an approved request.
    assert not [e for e in trail if e.operation == "add_security_server"]


def test_rejection_reaches_the_submitting_server_with_its_reason(layout: Layout) -> None:
    config = str(layout.server_config("paderborn"))
    submitted = xweg(
        "gateway", "register", "client", "--config", config, f"{PADERBORN.slash()}/bauamt", "--json"
    )
    assert submitted.returncode == 0, submitted.stderr
    request = json.loads(submitted.stdout)
    assert (request["status"], request["client"]) == ("pending", f"{PADERBORN.slash()}/bauamt")

    db = ("--database-url", layout.registry_database_url)
    listed = xweg("registry", "requests", "list", *db, "--status", "pending", "--json")
    assert [e["id"] for e in json.loads(listed.stdout)] == [request["id"]]
    rejected = xweg(
        "registry", "requests", "reject", *db, request["id"], "--reason", "Bauamt is not yet a member service"
    )
    assert rejected.returncode == 0, rejected.stderr

    status = xweg("gateway", "register", "status", "--config", config, request["id"])
    assert status.returncode == 1  # rejected
    assert "rejected" in status.stdout
    assert "reason: Bauamt is not yet a member service" in status.stdout


def test_approved_client_is_published_and_reaches_the_servers(layout: Layout) -> None:
    config = str(layout.server_config("paderborn"))
    new_client = SubsystemId.parse_slash(f"{KREIS_PB.slash()}/jugendamt")
    submitted = xweg("gateway", "register", "client", "--config", config, new_client.slash(), "--json")
    assert submitted.returncode == 0, submitted.stderr
    request_id = json.loads(submitted.stdout)["id"]
    approved = xweg(
        "registry", "requests", "approve", "--database-url", layout.registry_database_url, request_id
    )
    assert approved.returncode == 0, approved.stderr

    deadline = time.monotonic() + 20
    while True:
        conf = _published(layout)
        hosts = {s.id: s.clients for s in conf.security_servers} if conf is not None else {}
        if new_client in hosts.get(layout.plan.server("paderborn").id, ()):
            break
        assert time.monotonic() < deadline, "the approved client was not published"
        time.sleep(0.3)
    status = xweg("gateway", "register", "status", "--config", config, request_id, "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["status"] == "approved"


def test_a_captured_request_cannot_be_replayed(layout: Layout) -> None:
    with RegistryStore.open(layout.registry_database_url) as store, store.engine.connect() as connection:
        captured = connection.exec_driver_sql(
            "SELECT signed_request FROM registration_requests WHERE kind = 'client' "
            "ORDER BY received_at LIMIT 1"
        ).scalar_one()
    request = urllib.request.Request(  # noqa: S310 -- loopback
        layout.registry_url + "/registration/v1/requests",
        data=captured.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert info.value.code == 409
    assert json.loads(info.value.read())["type"] == "conflict"


def test_a_server_cannot_ask_for_a_subsystem_it_holds_no_key_for(layout: Layout) -> None:
    config = str(layout.server_config("paderborn"))
    result = xweg("gateway", "register", "client", "--config", config, ARBEITSSCHUTZ.slash())
    assert result.returncode == 1
    assert f"this server holds no sign key of {DETMOLD}" in result.stderr


def test_enrolment_resumes_a_request_left_pending(layout: Layout) -> None:
    # A run that stopped after the server asked and before the officer decided left
    # the request pending; the next run approves it instead of asking again.
    import asyncio
    import dataclasses
    import datetime as dt

    from gateway.config import GatewayConfig
    from gateway.registration import RegistrationClient
    from xweg.enrolment import enrol

    new_client = SubsystemId.parse_slash(f"{KREIS_PB.slash()}/ordnungsamt")

    async def ask() -> str:
        config = GatewayConfig.load(layout.server_config("paderborn"))
        async with RegistrationClient(config) as registry:
            return (await registry.client(new_client, dt.datetime.now(dt.UTC))).id

    left_pending = asyncio.run(ask())
    paderborn = layout.plan.server("paderborn")
    grown = dataclasses.replace(
        layout.plan,
        servers=tuple(
            dataclasses.replace(s, clients=(*s.clients, new_client)) if s is paderborn else s
            for s in layout.plan.servers
        ),
    )
    lines: list[str] = []
    enrol(dataclasses.replace(layout, plan=grown), report=lines.append, timeout_s=30)
    assert any(f"client {new_client.slash()} (request {left_pending[:8]}" in line for line in lines), lines
    with RegistryStore.open(layout.registry_database_url) as store:
        assert store.registration(left_pending).status == "approved"
        assert [e.id for e in store.registrations(status="pending")] == []


def test_waiting_for_a_decision_that_does_not_come_exits_3(layout: Layout) -> None:
    config = str(layout.server_config("paderborn"))
    waited = xweg(
        "gateway",
        "register",
        "client",
        "--config",
        config,
        f"{PADERBORN.slash()}/standesamt",
        "--wait",
        "1",
        "--json",
    )
    assert waited.returncode == 3, waited.stderr
    request = json.loads(waited.stdout)
    assert request["status"] == "pending"
    assert f"request {request['id']} is pending; waiting" in waited.stderr  # known before waiting
    revoked = xweg(
        "registry", "requests", "revoke", "--database-url", layout.registry_database_url, request["id"]
    )
    assert revoked.returncode == 0, revoked.stderr


def _published_maintenance(layout: Layout, slug: str) -> bool | None:
    conf = _published(layout)
    if conf is None:
        return None
    server = conf.server(layout.plan.server(slug).id)
    return server.maintenance_mode if server is not None else None


def test_maintenance_mode_announced_by_the_server_is_published(layout: Layout) -> None:
    config = str(layout.server_config("paderborn"))
    server_id = layout.plan.server("paderborn").id
    for mode, enabled in (("on", True), ("off", False)):
        announced = xweg("gateway", "maintenance", mode, "--config", config, "--json")
        assert announced.returncode == 0, announced.stderr
        answer = json.loads(announced.stdout)
        assert (answer["server"], answer["maintenance_mode"], answer["changed"], answer["status"]) == (
            server_id.slash(),
            enabled,
            True,
            "applied",
        )
        deadline = time.monotonic() + 20
        while _published_maintenance(layout, "paderborn") is not enabled:
            assert time.monotonic() < deadline, f"maintenance {mode} was not published"
            time.sleep(0.3)
    with RegistryStore.open(layout.registry_database_url) as store:
        changes = [e for e in store.audit_trail(limit=1000) if e.operation == "set_maintenance_mode"]
    assert [(e.actor, e.after) for e in changes[-2:]] == [
        (server_id.slash(), {"maintenance_mode": True}),
        (server_id.slash(), {"maintenance_mode": False}),
    ]
    # Announcing the mode the server already has is applied and changes nothing.
    again = xweg("gateway", "maintenance", "off", "--config", config)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{server_id.slash()}  maintenance off (unchanged)"
