"""Prometheus metrics of one security server: what happened, and what is.

Events are counted as they happen (:class:`GatewayMetrics` methods called by the
pipelines, the message-log writer and the operational monitor); state is read when
Prometheus scrapes, by a collector that asks the running parts (:meth:`GatewayMetrics.watch`),
so that a value is never older than the scrape.  Each :class:`GatewayMetrics` owns its
own registry: several security servers may run in one process (tests, ``xweg demo``).
:meth:`GatewayMetrics.render` gives the Prometheus text format; serving it at
``GET /metrics`` on the management listener is that listener's.

Events:

- ``xweg_exchanges_total{role, service, client, status, error_origin}``: exchanges
  handled; ``role`` consumer or provider, ``service`` the service id without its version,
  ``client`` the client id, ``status`` the HTTP status answered (for SOAP faults X-Road's
  200), ``error_origin`` "" on success, the fault code's prefix (``Client``,
  ``Server.ClientProxy``, ``Server.ServerProxy``) when the exchange layer failed, and
  ``service`` when the service answered with a SOAP Fault (``other`` for a fault code of
  no known origin); ``service`` and ``client`` are empty for a request whose client was
  not authenticated, so that made-up identifiers do not become labels
- ``xweg_exchange_duration_seconds{role}``: from request in to response out
- ``xweg_pipeline_step_duration_seconds{role, step}``: each pipeline step; ``step`` is the
  step's number and name as the pipelines' docstrings list them (``6_send``)
- ``xweg_messagelog_commit_duration_seconds``: one group commit of the message log
- ``xweg_opmon_records_dropped_total{reason}``: operational monitoring records lost
  (``queue_full``, ``write_failed``)

State, at scrape time:

- ``xweg_messagelog_queue_depth``: records waiting for the next group commit
- ``xweg_messagelog_failed_batches_total``: group commits that failed
- ``xweg_timestamp_pending_records``: message-log records not yet covered by a timestamp
- ``xweg_timestamp_oldest_pending_age_seconds``: how long the oldest of them has waited
- ``xweg_globalconf_serial``, ``xweg_globalconf_expires_in_seconds``: the latest verified
  global configuration (negative once it has expired)
- ``xweg_certificate_expires_in_seconds{kind, owner}``: the auth and sign certificates
- ``xweg_ocsp_response_expires_in_seconds{kind, owner}``, ``xweg_ocsp_response_age_seconds{kind, owner}``:
  the OCSP responses held for those certificates (nextUpdate, producedAt)
- ``xweg_opmon_queue_depth``: operational monitoring records waiting to be written
- ``xweg_serverconf_check_age_seconds``: since the server last read its configuration store
  (it keeps acting on the last configuration while the store does not answer)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import structlog
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from core.clock import Clock
from core.errors import Origin
from gateway.messagelog.timestamper import TimestampStatus
from trust.globalconf import GlobalConf

__all__ = ["GatewayMetrics", "OwnCertificate", "StateSources", "CONTENT_TYPE", "fault_origin"]

log = structlog.get_logger("xweg.metrics")

#: The Prometheus text format that :func:`prometheus_client.generate_latest` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_STEP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_EXCHANGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_COMMIT_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_DROP_REASONS = ("queue_full", "write_failed")
# Longest first, so that "Server.ClientProxy" is not read as "Server".
_ORIGINS = sorted((origin.value for origin in Origin), key=len, reverse=True)


def fault_origin(fault_code: str) -> str:
    """Who failed, from an X-Road fault code in either spelling: ``Server.ServerProxy.AccessDenied``
    and ``server.serverproxy.access_denied`` are both ``Server.ServerProxy``."""
    lowered = fault_code.lower()
    for origin in _ORIGINS:
        if lowered == origin.lower() or lowered.startswith(origin.lower() + "."):
            return origin
    # Not one of X-Road's: a label value from the outside stays one of few.
    return "other"


@dataclass(frozen=True)
class OwnCertificate:
    """A certificate of this server: ``kind`` auth or sign, ``owner`` the server or member it is for."""

    kind: str
    owner: str
    certificate: x509.Certificate


@dataclass(frozen=True)
class StateSources:
    """Where the scrape-time values come from; each is asked once per scrape."""

    globalconf: Callable[[], GlobalConf | None]
    timestamps: Callable[[], TimestampStatus]
    log_queue_depth: Callable[[], int]
    log_failed_batches: Callable[[], int]
    certificates: Callable[[], Iterable[OwnCertificate]]
    # (producedAt, nextUpdate) of the OCSP response held for a certificate, None without one.
    ocsp_validity: Callable[[x509.Certificate], tuple[dt.datetime, dt.datetime | None] | None]
    opmon_queue_depth: Callable[[], int]
    # Seconds since the configuration store was last read; None without a store.
    serverconf_check_age: Callable[[], float | None] = lambda: None


class GatewayMetrics:
    """The metrics of one security server, in a registry of its own."""

    def __init__(self, clock: Clock) -> None:
        self.registry = CollectorRegistry()
        self._exchanges = Counter(
            "xweg_exchanges",
            "Exchanges handled, by role, service (without version), client, HTTP status and error origin",
            ["role", "service", "client", "status", "error_origin"],
            registry=self.registry,
        )
        self._exchange_seconds = Histogram(
            "xweg_exchange_duration_seconds",
            "Time from a request's arrival to its answer",
            ["role"],
            buckets=_EXCHANGE_BUCKETS_S,
            registry=self.registry,
        )
        self._step_seconds = Histogram(
            "xweg_pipeline_step_duration_seconds",
            "Time spent in each pipeline step",
            ["role", "step"],
            buckets=_STEP_BUCKETS_S,
            registry=self.registry,
        )
        self._commit_seconds = Histogram(
            "xweg_messagelog_commit_duration_seconds",
            "Time one group commit of the message log took",
            buckets=_COMMIT_BUCKETS_S,
            registry=self.registry,
        )
        self._opmon_dropped = Counter(
            "xweg_opmon_records_dropped",
            "Operational monitoring records lost, by reason",
            ["reason"],
            registry=self.registry,
        )
        for reason in _DROP_REASONS:
            self._opmon_dropped.labels(reason=reason)
        self._state = _StateCollector(clock)
        self.registry.register(self._state)

    def watch(self, sources: StateSources) -> None:
        """Read the scrape-time values from ``sources`` from now on."""
        self._state.sources = sources

    def count_exchange(
        self, *, role: str, service: str, client: str, status: int | None, error_origin: str
    ) -> None:
        self._exchanges.labels(
            role=role,
            service=service,
            client=client,
            status="" if status is None else str(status),
            error_origin=error_origin,
        ).inc()

    def observe_exchange(self, role: str, seconds: float) -> None:
        self._exchange_seconds.labels(role=role).observe(seconds)

    def observe_step(self, role: str, step: str, seconds: float) -> None:
        self._step_seconds.labels(role=role, step=step).observe(seconds)

    def observe_log_commit(self, seconds: float, records: int) -> None:
        """The message-log writer's ``on_commit`` hook."""
        self._commit_seconds.observe(seconds)

    def count_opmon_dropped(self, reason: str) -> None:
        if reason not in _DROP_REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        self._opmon_dropped.labels(reason=reason).inc()

    def render(self) -> tuple[str, bytes]:
        """``(content type, body)`` of the Prometheus text format, for ``GET /metrics``."""
        return CONTENT_TYPE, generate_latest(self.registry)


class _StateCollector:
    """Values that are state, not events: read from the running parts at each scrape."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.sources: StateSources | None = None

    def describe(self) -> Iterator[Metric]:
        # The names, for the registry's collision check; no source is asked.
        return iter(_Families().all())

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        sources = self.sources
        if sources is not None:
            now = self._clock.now()
            # One failing source costs its own values only, never the scrape.
            for read in (
                _read_log,
                _read_timestamps,
                _read_globalconf,
                _read_certificates,
                _read_opmon,
                _read_serverconf,
            ):
                try:
                    read(families, sources, now)
                except Exception as exc:
                    log.warning(
                        "metrics.source_failed", source=read.__name__.removeprefix("_read_"), error=repr(exc)
                    )
        return iter(families.all())


class _Families:
    def __init__(self) -> None:
        self.log_queue = GaugeMetricFamily(
            "xweg_messagelog_queue_depth", "Message-log records waiting for the next group commit"
        )
        self.log_failed = CounterMetricFamily(
            "xweg_messagelog_failed_batches", "Message-log group commits that failed"
        )
        self.pending = GaugeMetricFamily(
            "xweg_timestamp_pending_records", "Message-log records not yet covered by a timestamp"
        )
        self.pending_age = GaugeMetricFamily(
            "xweg_timestamp_oldest_pending_age_seconds",
            "How long the oldest record without a timestamp has waited (0 when none waits)",
        )
        self.serial = GaugeMetricFamily(
            "xweg_globalconf_serial", "Serial of the latest verified global configuration"
        )
        self.conf_expiry = GaugeMetricFamily(
            "xweg_globalconf_expires_in_seconds",
            "Seconds until the latest verified global configuration expires (negative: expired)",
        )
        self.cert_expiry = GaugeMetricFamily(
            "xweg_certificate_expires_in_seconds",
            "Seconds until this server's certificate is no longer valid (notAfter)",
            labels=["kind", "owner"],
        )
        self.ocsp_expiry = GaugeMetricFamily(
            "xweg_ocsp_response_expires_in_seconds",
            "Seconds until the nextUpdate of the OCSP response held for this server's certificate",
            labels=["kind", "owner"],
        )
        self.ocsp_age = GaugeMetricFamily(
            "xweg_ocsp_response_age_seconds",
            "Seconds since the OCSP response held for this server's certificate was produced",
            labels=["kind", "owner"],
        )
        self.opmon_queue = GaugeMetricFamily(
            "xweg_opmon_queue_depth", "Operational monitoring records waiting to be written"
        )
        self.serverconf_age = GaugeMetricFamily(
            "xweg_serverconf_check_age_seconds",
            "Seconds since the server last read its configuration store successfully",
        )

    def all(self) -> list[Metric]:
        return [
            self.log_queue,
            self.log_failed,
            self.pending,
            self.pending_age,
            self.serial,
            self.conf_expiry,
            self.cert_expiry,
            self.ocsp_expiry,
            self.ocsp_age,
            self.opmon_queue,
            self.serverconf_age,
        ]


def _read_log(families: _Families, sources: StateSources, now: dt.datetime) -> None:
    families.log_queue.add_metric([], sources.log_queue_depth())
    families.log_failed.add_metric([], sources.log_failed_batches())


def _read_timestamps(families: _Families, sources: StateSources, now: dt.datetime) -> None:
    status = sources.timestamps()
    families.pending.add_metric([], status.pending)
    oldest = status.oldest_pending_at
    families.pending_age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def _read_globalconf(families: _Families, sources: StateSources, now: dt.datetime) -> None:
    conf = sources.globalconf()
    if conf is not None:
        families.serial.add_metric([], conf.serial)
        families.conf_expiry.add_metric([], (conf.expires_at - now).total_seconds())


def _read_certificates(families: _Families, sources: StateSources, now: dt.datetime) -> None:
    for own in sources.certificates():
        labels = [own.kind, own.owner]
        families.cert_expiry.add_metric(labels, (own.certificate.not_valid_after_utc - now).total_seconds())
        validity = sources.ocsp_validity(own.certificate)
        if validity is None:
            continue
        produced_at, next_update = validity
        families.ocsp_age.add_metric(labels, (now - produced_at).total_seconds())
        if next_update is not None:
            families.ocsp_expiry.add_metric(labels, (next_update - now).total_seconds())


def _read_opmon(families: _Families, sources: StateSources, now: dt.datetime) -> None:
    families.opmon_queue.add_metric([], sources.opmon_queue_depth())


def _read_serverconf(families: _Families, sources: StateSources, now: dt.datetime) -> None:
    age = sources.serverconf_check_age()
    if age is not None:
        families.serverconf_age.add_metric([], age)
