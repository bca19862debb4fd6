"""The Grafana dashboard and the Prometheus configuration name only metrics a gateway exposes."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from core.clock import FixedClock
from gateway.messagelog.timestamper import TimestampStatus
from gateway.observability.metrics import GatewayMetrics, OwnCertificate, StateSources
from tests.unit.gateway.conftest import NOW, Federation

DEPLOY = Path(__file__).parents[4] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "xweg-dashboard.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
METRIC = re.compile(r"\bxweg_[a-z0-9_]+\b")


def exposed(federation: Federation) -> set[str]:
    """Every sample name of a gateway's /metrics once each kind of value has been recorded."""
    metrics = GatewayMetrics(FixedClock(NOW))
    metrics.count_exchange(role="consumer", service="s", client="c", status=200, error_origin="")
    metrics.observe_exchange("consumer", 0.1)
    metrics.observe_step("consumer", "6_send", 0.05)
    metrics.observe_log_commit(0.002, 3)
    metrics.count_opmon_dropped("queue_full")
    certificate = OwnCertificate("auth", "NRW/MUN/05774032/ss1", federation.server_cert)
    metrics.watch(
        StateSources(
            globalconf=lambda: federation.conf(1),
            timestamps=lambda: TimestampStatus(
                pending=1, oldest_pending_at=NOW, last_success_at=None, last_error=None, checkpoints=0
            ),
            log_queue_depth=lambda: 0,
            log_failed_batches=lambda: 0,
            certificates=lambda: (certificate,),
            ocsp_validity=lambda _: (NOW, NOW + dt.timedelta(hours=1)),
            opmon_queue_depth=lambda: 0,
        )
    )
    _, body = metrics.render()
    return {s.name for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


def test_every_metric_in_the_dashboard_is_exposed(federation: Federation) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    names = exposed(federation)

    assert used, "the dashboard queries no xweg metric"
    assert sorted(used - names) == []
    # What the dashboard promises to show.
    for wanted in (
        "xweg_exchanges_total",
        "xweg_pipeline_step_duration_seconds_bucket",
        "xweg_messagelog_commit_duration_seconds_bucket",
        "xweg_messagelog_queue_depth",
        "xweg_timestamp_pending_records",
        "xweg_globalconf_expires_in_seconds",
        "xweg_certificate_expires_in_seconds",
        "xweg_ocsp_response_expires_in_seconds",
    ):
        assert wanted in used


def test_the_prometheus_configuration_scrapes_https_with_a_pinned_certificate() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = config["scrape_configs"]
    assert jobs
    for job in jobs:
        assert (job["scheme"], job["metrics_path"]) == ("https", "/metrics"), job["job_name"]
        assert job["tls_config"]["ca_file"].endswith(".pem"), job["job_name"]
        assert "insecure_skip_verify" not in job["tls_config"]
    # One certificate per job: each security server has its own internal TLS certificate.
    assert len({job["tls_config"]["ca_file"] for job in jobs}) == len(jobs)
