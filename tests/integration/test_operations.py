"""An administrator's day, end to end: publish, grant, watch, revoke, with real processes.

Stadt Bielefeld's administrator publishes a new REST service through the management API
(HTTPS with the server's internal TLS certificate, a role token from the command line),
grants one of its endpoints to Stadt Paderborn's Gewerbeamt, and watches Paderborn's
calls arrive in Prometheus metrics (read with Prometheus's own text parser) and in
operational monitoring; then revokes the right with the command line, which the running
server picks up from its store.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.identifiers import SecurityServerId
from tests.integration.conftest import prepare_federation
from xweg.demo import call
from xweg.federation import (
    BIELEFELD,
    PADERBORN,
    FederationPlan,
    Layout,
    MemberPlan,
    RunningFederation,
    ServerPlan,
    ServicePlan,
    rest_path,
)

pytestmark = pytest.mark.integration

WIRTSCHAFT = BIELEFELD.subsystem("wirtschaft")
GEWERBEAMT = PADERBORN.subsystem("gewerbeamt")
ANZEIGEN = WIRTSCHAFT.service("anzeigen", "v1")  # in the plan, granted to nobody
NEW_SERVICE = WIRTSCHAFT.service("betriebsanzeigen", "v1")  # published during the test


def plan() -> FederationPlan:
    return FederationPlan(
        members=(
            MemberPlan(BIELEFELD, "Stadt Bielefeld", ("wirtschaft",)),
            MemberPlan(PADERBORN, "Stadt Paderborn", ("gewerbeamt",)),
        ),
        servers=(
            ServerPlan(
                "bielefeld",
                "Stadt Bielefeld",
                SecurityServerId(BIELEFELD, "ss1"),
                (WIRTSCHAFT,),
                (ServicePlan(ANZEIGEN, "gewerbeanzeige", "Gewerbeanzeigen", ()),),
            ),
            ServerPlan("paderborn", "Stadt Paderborn", SecurityServerId(PADERBORN, "ss1"), (GEWERBEAMT,)),
        ),
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    prepared = prepare_federation(tmp_path_factory.mktemp("operations"), plan())
    with RunningFederation(prepared).running(timeout_s=90):
        yield prepared


def _xweg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xweg", *args], capture_output=True, text=True, timeout=60)


def _token(layout: Layout, slug: str, role: str) -> str:
    issued = _xweg(
        "gateway", "token", "issue", "--config", str(layout.server_config(slug)), "--role", role,
        "--subject", f"{role}@{slug}.example",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.splitlines()[0]


def _management(
    layout: Layout, slug: str, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, Any, str]:
    """One call to a server's management API, trusting exactly its internal TLS certificate."""
    context = ssl.create_default_context(cafile=str(layout.internal_tls_certificate(slug)))
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        layout.management_url(slug) + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
            text = response.read().decode()
            kind = response.headers.get_content_type()
            return response.status, json.loads(text) if kind == "application/json" else text, kind
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get_content_type()


def _exchanges(metrics_text: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "xweg_exchanges_total":
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_an_administrator_publishes_grants_watches_and_revokes(layout: Layout) -> None:
    admin = _token(layout, "bielefeld", "service-admin")
    new_path = rest_path(NEW_SERVICE, "/anzeigen")
    paderborn = layout.client_url("paderborn")

    # Before: Paderborn cannot call what does not exist.
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    before = call(paderborn + new_path, "GET", GEWERBEAMT)
    assert before.status == 500
    assert before.headers["X-Road-Error"] == "Server.ServerProxy.UnknownService"

    # Publish the service and one endpoint of it; grant that endpoint to Paderborn's Gewerbeamt.
    service = {"id": NEW_SERVICE.slash(), "base_url": layout.backend_url("gewerbeanzeige"), "timeout_s": 10}
    status, answer, _ = _management(layout, "bielefeld", "POST", "/services", admin, service)
    assert status == 201, answer
    segment = NEW_SERVICE.slash().replace("/", ":")
    endpoint = {"method": "GET", "path": "/anzeigen"}
    status, answer, _ = _management(
        layout, "bielefeld", "POST", f"/services/{segment}/endpoints", admin, endpoint
    )
    assert status == 201, answer
    grant = {"subject": GEWERBEAMT.slash(), "endpoint": endpoint}
    status, answer, _ = _management(layout, "bielefeld", "POST", f"/services/{segment}/grants", admin, grant)
    assert status == 201, answer
    # A grant naming a subsystem the federation does not have is refused, and nothing changes.
    stranger = {"subject": "NRW/MUN/09999999/gewerbeamt"}
    status, answer, _ = _management(
        layout, "bielefeld", "POST", f"/services/{segment}/grants", admin, stranger
    )
    assert (status, answer["type"]) == (422, "unknown_reference")

    # Paderborn calls: the granted endpoint answers, another method on it is refused.
    for _ in range(3):
        granted = call(paderborn + new_path, "GET", GEWERBEAMT)
        assert granted.status == 200, granted.body
        assert json.loads(granted.body) == []
    denied = call(paderborn + new_path, "POST", GEWERBEAMT, body={"anzeigeId": "x"})
    assert (denied.status, denied.headers["X-Road-Error"]) == (500, "Server.ServerProxy.AccessDenied")

    # Metrics, without a token, in the format Prometheus reads.
    status, text, kind = _management(layout, "bielefeld", "GET", "/metrics")
    assert (status, kind) == (200, "text/plain")
    exchanges = _exchanges(text)
    service_label = NEW_SERVICE.unversioned().slash()
    ok = (("client", GEWERBEAMT.slash()), ("error_origin", ""), ("role", "provider"))
    assert exchanges[(*ok, ("service", service_label), ("status", "200"))] == 3.0
    refused = (("client", GEWERBEAMT.slash()), ("error_origin", "Server.ServerProxy"), ("role", "provider"))
    # the call before the service existed (UnknownService) and the POST (AccessDenied)
    assert exchanges[(*refused, ("service", service_label), ("status", "500"))] == 2.0

    # Operational monitoring, for an observer: one record per exchange, and the service's health.
    observer = _token(layout, "bielefeld", "observer")
    query = urllib.parse.urlencode(
        {
            "start": started.isoformat(),
            "end": (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)).isoformat(),
            "client": GEWERBEAMT.slash(),
        }
    )
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15  # records are written in batches, off the request path
    while time.monotonic() < deadline:
        status, records, _ = _management(layout, "bielefeld", "GET", f"/opmon/records?{query}", observer)
        assert status == 200
        if len([r for r in records if r["serviceCode"] == "betriebsanzeigen"]) >= 5:
            break
        time.sleep(0.5)
    ours = [r for r in records if r["serviceCode"] == "betriebsanzeigen"]
    assert sorted((r["succeeded"], r["restMethod"], r["statusCode"]) for r in ours) == [
        (False, "GET", 500),
        (False, "POST", 500),
        (True, "GET", 200),
        (True, "GET", 200),
        (True, "GET", 200),
    ]
    assert {r["securityServerType"] for r in ours} == {"Producer"}
    assert {r["restPath"] for r in ours} == {"/anzeigen"}
    status, health, _ = _management(layout, "bielefeld", "GET", "/opmon/health", observer)
    assert status == 200
    [entry] = [
        h for h in health if h["service"] == NEW_SERVICE.unversioned().slash()
    ]  # REST names no version
    assert entry["securityServerType"] == "Producer"
    assert entry["lastSuccessfulRequestTimestamp"] is not None
    assert (entry["successfulRequestCount"], entry["unsuccessfulRequestCount"]) == (3, 2)
    # The observer may look, not change.
    status, answer, _ = _management(layout, "bielefeld", "DELETE", f"/services/{segment}", observer)
    assert (status, answer["type"]) == (403, "forbidden")

    # Revoked with the command line: the running server takes it from its store.
    revoked = _xweg(
        "gateway", "acl", "revoke", NEW_SERVICE.slash(), GEWERBEAMT.slash(), "--endpoint", "GET /anzeigen",
        "--config", str(layout.server_config("bielefeld")),
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 15
    answer_after = call(paderborn + new_path, "GET", GEWERBEAMT)
    while answer_after.status == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        answer_after = call(paderborn + new_path, "GET", GEWERBEAMT)
    assert answer_after.headers.get("X-Road-Error") == "Server.ServerProxy.AccessDenied"

    # Every change is in the audit trail, by whom it was made.
    auditor = _token(layout, "bielefeld", "security-officer")
    status, trail, _ = _management(layout, "bielefeld", "GET", "/audit-trail", auditor)
    assert status == 200
    actors = {(entry["operation"], entry["actor"]) for entry in trail}
    assert ("add_service", "service-admin@bielefeld.example") in actors
    assert ("grant", "service-admin@bielefeld.example") in actors
    assert ("revoke", "local") in actors


def test_every_servers_metrics_parse_with_prometheus_own_parser(layout: Layout) -> None:
    for slug in ("bielefeld", "paderborn"):
        status, text, _ = _management(layout, slug, "GET", "/metrics")
        assert status == 200
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {
            "xweg_exchanges",
            "xweg_globalconf_serial",
            "xweg_certificate_expires_in_seconds",
            "xweg_serverconf_check_age_seconds",
        } <= names
