"""Metrics: the Prometheus text parses and holds the events recorded and the state read at scrape."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from core.clock import FixedClock
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.timestamper import TimestampStatus
from gateway.messagelog.writer import MessageLogWriter
from gateway.observability.metrics import (
    CONTENT_TYPE,
    GatewayMetrics,
    OwnCertificate,
    StateSources,
    fault_origin,
)
from tests.unit.gateway.conftest import NOW, Federation
from tests.unit.gateway.messagelog.helpers import Signers, make_exchange
from trust.globalconf import GlobalConf

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: GatewayMetrics) -> Samples:
    content_type, body = metrics.render()
    assert content_type == CONTENT_TYPE
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode("utf-8"))
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def names(found: Samples) -> set[str]:
    return {name for name, _ in found}


def sources(
    federation: Federation,
    *,
    ocsp: dict[x509.Certificate, tuple[dt.datetime, dt.datetime | None]] | None = None,
) -> StateSources:
    ocsp = ocsp or {}
    certificates = (
        OwnCertificate("auth", "NRW/MUN/05774032/ss1", federation.server_cert),
        OwnCertificate("sign", "NRW/GOV/057", federation.other_server_cert),
    )
    return StateSources(
        globalconf=lambda: federation.conf(17),
        timestamps=lambda: TimestampStatus(
            pending=7,
            oldest_pending_at=NOW - dt.timedelta(seconds=90),
            last_success_at=None,
            last_error=None,
            checkpoints=3,
        ),
        log_queue_depth=lambda: 4,
        log_failed_batches=lambda: 2,
        certificates=lambda: certificates,
        ocsp_validity=ocsp.get,
        opmon_queue_depth=lambda: 11,
    )


def test_exchanges_are_counted_by_role_service_client_status_and_error_origin() -> None:
    metrics = GatewayMetrics(FixedClock(NOW))
    service, client = "NRW/MUN/05711000/meldewesen/meldeauskunft", "NRW/MUN/05774032/gewerbeamt"
    for _ in range(2):
        metrics.count_exchange(role="consumer", service=service, client=client, status=200, error_origin="")
    metrics.count_exchange(
        role="consumer", service=service, client=client, status=500, error_origin="Server.ServerProxy"
    )
    metrics.count_exchange(role="provider", service="", client="", status=None, error_origin="Client")

    found = samples(metrics)

    labels = {"role": "consumer", "service": service, "client": client, "status": "200", "error_origin": ""}
    assert value(found, "xweg_exchanges_total", **labels) == 2.0
    failed = {**labels, "status": "500", "error_origin": "Server.ServerProxy"}
    assert value(found, "xweg_exchanges_total", **failed) == 1.0
    unread = {"role": "provider", "service": "", "client": "", "status": "", "error_origin": "Client"}
    assert value(found, "xweg_exchanges_total", **unread) == 1.0


def test_step_and_exchange_durations_are_histograms() -> None:
    metrics = GatewayMetrics(FixedClock(NOW))
    metrics.observe_step("consumer", "6_send", 0.003)
    metrics.observe_step("consumer", "6_send", 0.2)
    metrics.observe_step("provider", "6_backend", 0.04)
    metrics.observe_exchange("consumer", 0.25)

    found = samples(metrics)

    send = {"role": "consumer", "step": "6_send"}
    assert value(found, "xweg_pipeline_step_duration_seconds_count", **send) == 2.0
    assert value(found, "xweg_pipeline_step_duration_seconds_sum", **send) == pytest.approx(0.203)
    assert value(found, "xweg_pipeline_step_duration_seconds_bucket", **send, le="0.005") == 1.0
    assert value(found, "xweg_pipeline_step_duration_seconds_bucket", **send, le="0.25") == 2.0
    backend = {"role": "provider", "step": "6_backend"}
    assert value(found, "xweg_pipeline_step_duration_seconds_count", **backend) == 1.0
    assert value(found, "xweg_exchange_duration_seconds_count", role="consumer") == 1.0


def test_state_is_read_at_scrape_time(federation: Federation) -> None:
    clock = FixedClock(NOW)
    metrics = GatewayMetrics(clock)
    produced, next_update = NOW - dt.timedelta(minutes=10), NOW + dt.timedelta(minutes=50)
    metrics.watch(sources(federation, ocsp={federation.server_cert: (produced, next_update)}))

    found = samples(metrics)

    assert value(found, "xweg_messagelog_queue_depth") == 4.0
    assert value(found, "xweg_messagelog_failed_batches_total") == 2.0
    assert value(found, "xweg_timestamp_pending_records") == 7.0
    assert value(found, "xweg_timestamp_oldest_pending_age_seconds") == 90.0
    assert value(found, "xweg_globalconf_serial") == 17.0
    assert value(found, "xweg_globalconf_expires_in_seconds") == 3600.0  # the fixture's expires_at
    auth = {"kind": "auth", "owner": "NRW/MUN/05774032/ss1"}
    expected = (federation.server_cert.not_valid_after_utc - NOW).total_seconds()
    assert value(found, "xweg_certificate_expires_in_seconds", **auth) == expected
    sign = {"kind": "sign", "owner": "NRW/GOV/057"}
    expected = (federation.other_server_cert.not_valid_after_utc - NOW).total_seconds()
    assert value(found, "xweg_certificate_expires_in_seconds", **sign) == expected
    assert value(found, "xweg_ocsp_response_expires_in_seconds", **auth) == 3000.0
    assert value(found, "xweg_ocsp_response_age_seconds", **auth) == 600.0
    # No response held for the sign certificate: no OCSP value for it, rather than a made-up one.
    assert ("xweg_ocsp_response_expires_in_seconds", frozenset(sign.items())) not in found
    assert value(found, "xweg_opmon_queue_depth") == 11.0

    # The next scrape sees the clock's time then.
    clock.advance(4000)
    later = samples(metrics)
    assert value(later, "xweg_globalconf_expires_in_seconds") == -400.0
    assert value(later, "xweg_ocsp_response_expires_in_seconds", **auth) == -1000.0


def test_a_failing_source_costs_only_its_own_values(federation: Federation) -> None:
    metrics = GatewayMetrics(FixedClock(NOW))
    good = sources(federation)

    def broken() -> GlobalConf | None:
        raise RuntimeError("configuration holder is gone")

    metrics.watch(
        StateSources(
            globalconf=broken,
            timestamps=good.timestamps,
            log_queue_depth=good.log_queue_depth,
            log_failed_batches=good.log_failed_batches,
            certificates=good.certificates,
            ocsp_validity=good.ocsp_validity,
            opmon_queue_depth=good.opmon_queue_depth,
        )
    )

    found = samples(metrics)

    assert "xweg_globalconf_serial" not in names(found)
    assert value(found, "xweg_timestamp_pending_records") == 7.0
    assert value(found, "xweg_opmon_queue_depth") == 11.0


def test_without_sources_the_state_families_are_empty_not_missing() -> None:
    _, body = GatewayMetrics(FixedClock(NOW)).render()
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert "xweg_globalconf_expires_in_seconds" in families
    assert families["xweg_globalconf_expires_in_seconds"].samples == []


def test_two_gateways_in_one_process_keep_their_own_counts() -> None:
    first, second = GatewayMetrics(FixedClock(NOW)), GatewayMetrics(FixedClock(NOW))
    first.count_exchange(role="consumer", service="s", client="c", status=200, error_origin="")

    labels = {"role": "consumer", "service": "s", "client": "c", "status": "200", "error_origin": ""}
    assert value(samples(first), "xweg_exchanges_total", **labels) == 1.0
    assert "xweg_exchanges_total" not in names(samples(second))


async def test_the_message_log_writer_reports_each_commit(tmp_path: Path) -> None:
    metrics = GatewayMetrics(FixedClock(NOW))
    writer = MessageLogWriter(MessageLogStore.open(tmp_path / "log.db"), on_commit=metrics.observe_log_commit)
    await writer.start()
    try:
        exchange = make_exchange(Signers(), 1)
        await writer.append(exchange.request)
        await writer.append(exchange.response)
    finally:
        await writer.close()

    found = samples(metrics)
    assert value(found, "xweg_messagelog_commit_duration_seconds_count") == writer.commits == 2
    assert value(found, "xweg_messagelog_commit_duration_seconds_sum") > 0


@pytest.mark.parametrize(
    "fault_code, origin",
    [
        ("Server.ServerProxy.AccessDenied", "Server.ServerProxy"),
        ("Server.ClientProxy.LoggingFailed.TimestamperFailed", "Server.ClientProxy"),
        ("Client.InvalidClientIdentifier", "Client"),
        ("server.serverproxy.access_denied", "Server.ServerProxy"),
        ("Server.Registry.InvalidGlobalConf", "Server.Registry"),
        # a fault code from outside (a provider's X-Road-Error) of no known origin
        ("Server.Elsewhere.Failed", "other"),
        ("made-up-by-a-peer-0001", "other"),
    ],
)
def test_the_error_origin_is_the_fault_codes_prefix(fault_code: str, origin: str) -> None:
    assert fault_origin(fault_code) == origin
