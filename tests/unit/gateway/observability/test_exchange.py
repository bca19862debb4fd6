"""One exchange observed: the opmon record's fields and times, the metrics, one log event per step."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from adapters.rest.outbound import render_rest_error
from core.clock import FixedClock
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import MemberId, SecurityServerId
from core.messages import Protocol, RequestHeader, sha512
from gateway.config import OpmonSettings
from gateway.observability import exchange as trace
from gateway.observability.exchange import Role, observe_exchange
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.opmon import OperationalMonitor
from tests.unit.gateway.conftest import NOW
from trust.globalconf import SecurityServerInfo

CLIENT = MemberId("NRW", "MUN", "05774020").subsystem("meldewesen")
SERVICE = MemberId("NRW", "MUN", "05711000").subsystem("meldewesen").service("meldeauskunft", "v1")
BODY = b'{"familienname": "Muster"}'
HEADER = RequestHeader(
    protocol=Protocol.REST,
    client=CLIENT,
    service=SERVICE,
    message_id="5b7b6c0e-1f0a-4d4e-9a57-3f1d2e7c9b10",
    method="POST",
    path="/personen/suche",
    query="",
    headers=(("content-type", "application/json"),),
    body_sha512=sha512(BODY),
    body_size=len(BODY),
    user_id="DE0000000001",
    issue="AZ-2025-17",
    represented_party="COM/12345678",
)
OWN = SecurityServerInfo(SecurityServerId(CLIENT.member, "ss1"), "ss1.delbrueck.example:5511", ("a" * 64,))
PEER = SecurityServerInfo(SecurityServerId(SERVICE.member, "ss1"), "ss1.bielefeld.example:5511", ("b" * 64,))


def ms(at: dt.datetime) -> int:
    return math.floor(at.timestamp() * 1000)


class Observed:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FixedClock(NOW)
        self.metrics = GatewayMetrics(self.clock)
        self.opmon = OperationalMonitor(tmp_path / "opmon.db", OpmonSettings(), self.clock)

    def observe(self, role: Role = Role.CONSUMER) -> Any:
        return observe_exchange(role, self.metrics, self.opmon, self.clock, render_error=render_rest_error)

    async def records(self) -> list[dict[str, Any]]:
        return await self.opmon.records(start=NOW - dt.timedelta(hours=1), end=NOW + dt.timedelta(hours=1))

    def samples(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        _, body = self.metrics.render()
        return {
            frozenset(s.labels.items()): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
            if s.name == name
        }


@pytest.fixture
async def observed(tmp_path: Path) -> AsyncIterator[Observed]:
    it = Observed(tmp_path)
    await it.opmon.start()
    yield it
    await it.opmon.close()


def run_consumer_steps(observed: Observed, *, until: int = 8) -> None:
    """The consumer pipeline's marks, with the clock moving as a real exchange's would."""
    trace.step(1)
    observed.clock.advance(0.002)
    trace.step(2)
    trace.identify(HEADER)
    if until >= 3:
        trace.admitted()  # step 2 authenticated the client
    observed.clock.advance(0.003)
    for number in range(3, until + 1):
        trace.step(number)
        if number == 3:
            trace.addresses(client=OWN, service=PEER)
        # The peer takes 1.5 s to answer: from step 6 (sent) to step 7 (answer in).
        observed.clock.advance(1.5 if number == 6 else 0.01)


async def test_a_successful_exchange_is_recorded_counted_and_logged(observed: Observed) -> None:
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        structlog.contextvars.bound_contextvars(correlation_id="c-0001", message_id=None),
    ):
        with observed.observe():
            run_consumer_steps(observed)
            trace.responded(201, 17)

    [record] = await observed.records()
    request_in = NOW
    request_out = NOW + dt.timedelta(seconds=0.005 + 0.03)  # steps 1-2, then 3-5
    response_in = request_out + dt.timedelta(seconds=1.5)
    response_out = response_in + dt.timedelta(seconds=0.02)  # steps 7-8
    assert record == {
        "monitoringDataTs": math.floor(response_out.timestamp()),
        "securityServerType": "Client",
        "requestInTs": ms(request_in),
        "requestOutTs": ms(request_out),
        "responseInTs": ms(response_in),
        "responseOutTs": ms(response_out),
        "clientXRoadInstance": "NRW",
        "clientMemberClass": "MUN",
        "clientMemberCode": "05774020",
        "clientSubsystemCode": "meldewesen",
        "serviceXRoadInstance": "NRW",
        "serviceMemberClass": "MUN",
        "serviceMemberCode": "05711000",
        "serviceSubsystemCode": "meldewesen",
        "serviceCode": "meldeauskunft",
        "serviceVersion": "v1",
        "restMethod": "POST",
        "restPath": "/personen/suche",
        "representedPartyClass": "COM",
        "representedPartyCode": "12345678",
        "messageId": HEADER.message_id,
        "messageUserId": "DE0000000001",
        "messageIssue": "AZ-2025-17",
        "messageProtocolVersion": "1",
        "clientSecurityServerAddress": "ss1.delbrueck.example:5511",
        "serviceSecurityServerAddress": "ss1.bielefeld.example:5511",
        "requestSize": len(BODY),
        "responseSize": 17,
        "succeeded": True,
        "faultCode": None,
        "faultString": None,
        "statusCode": 201,
        "serviceType": "REST",
    }

    exchanges = observed.samples("xweg_exchanges_total")
    labels = {
        "role": "consumer",
        "service": "NRW/MUN/05711000/meldewesen/meldeauskunft",  # without its version
        "client": "NRW/MUN/05774020/meldewesen",
        "status": "201",
        "error_origin": "",
    }
    assert exchanges == {frozenset(labels.items()): 1.0}
    counts = observed.samples("xweg_pipeline_step_duration_seconds_count")
    assert {dict(k)["step"]: v for k, v in counts.items()} == {
        name: 1.0 for name in trace.STEPS[Role.CONSUMER].values()
    }

    steps = [line for line in logs if line["event"] == "consumer.step"]
    assert [line["step"] for line in steps] == list(trace.STEPS[Role.CONSUMER].values())
    assert {line["outcome"] for line in steps} == {"ok"}
    # Steps that went well are debug lines; the exchange's own line says it completed.
    assert {line["log_level"] for line in steps} == {"debug"}
    # Step 1 ended before the request was read: its event waited for the message id.
    assert all(line["message_id"] == HEADER.message_id for line in steps)
    assert all(line["correlation_id"] == "c-0001" for line in steps)


async def test_a_services_soap_fault_is_recorded_as_not_succeeded(observed: Observed) -> None:
    """The exchange layer worked, the service did not: X-Road's opmon says succeeded false,
    with the Fault's code and string; the metric counts it with the origin ``service``."""
    with observed.observe():
        run_consumer_steps(observed)
        trace.service_fault("SOAP-ENV:Server", "Meldeauskunft nicht möglich")
        trace.responded(500, 321)

    [record] = await observed.records()
    assert (record["succeeded"], record["faultCode"], record["faultString"], record["statusCode"]) == (
        False,
        "SOAP-ENV:Server",
        "Meldeauskunft nicht möglich",
        500,
    )
    [labels] = observed.samples("xweg_exchanges_total")
    assert dict(labels)["error_origin"] == "service"


async def test_identifiers_of_a_client_never_authenticated_are_no_labels(observed: Observed) -> None:
    """A refused stranger's made-up identifiers stay out of the metric labels (which live
    as long as the process), while its opmon record keeps what it sent."""
    with pytest.raises(XwegError), observed.observe():
        trace.step(1)
        trace.step(2)
        trace.identify(HEADER)
        raise XwegError(ErrorCode.INVALID_CLIENT_IDENTIFIER, "not hosted here", Origin.CLIENT)

    [labels] = observed.samples("xweg_exchanges_total")
    assert (dict(labels)["service"], dict(labels)["client"], dict(labels)["error_origin"]) == (
        "",
        "",
        "Client",
    )
    [record] = await observed.records()
    assert record["serviceCode"] == HEADER.service.service_code


async def test_a_failed_exchange_is_recorded_with_its_fault(observed: Observed) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        with pytest.raises(XwegError) as info, observed.observe():
            run_consumer_steps(observed, until=3)
            raise XwegError(ErrorCode.UNKNOWN_SERVICE, "no security server hosts it", Origin.CLIENT_PROXY)

    [record] = await observed.records()
    _, _, body = render_rest_error(info.value)
    assert (record["succeeded"], record["faultCode"], record["faultString"]) == (
        False,
        "Server.ClientProxy.UnknownService",
        "no security server hosts it",
    )
    assert (record["statusCode"], record["responseSize"]) == (500, len(body))
    assert (record["requestOutTs"], record["responseInTs"]) == (None, None)
    assert record["messageId"] == HEADER.message_id

    exchanges = observed.samples("xweg_exchanges_total")
    assert {dict(k)["error_origin"]: v for k, v in exchanges.items()} == {"Server.ClientProxy": 1.0}
    assert {dict(k)["status"] for k in exchanges} == {"500"}

    steps = [line for line in logs if line["event"] == "consumer.step"]
    assert [(line["step"], line["outcome"]) for line in steps] == [
        ("1_globalconf", "ok"),
        ("2_request", "ok"),
        ("3_provider", "failed"),
    ]
    assert steps[-1]["fault_code"] == "Server.ClientProxy.UnknownService"
    assert [line["log_level"] for line in steps] == ["debug", "debug", "info"]


async def test_a_request_refused_before_it_is_read_is_recorded_without_identifiers(
    observed: Observed,
) -> None:
    with capture_logs() as logs:
        with pytest.raises(XwegError), observed.observe(Role.PROVIDER):
            trace.step(1)
            raise XwegError(ErrorCode.OUTDATED_GLOBAL_CONF, "expired", Origin.SERVER_PROXY)

    [record] = await observed.records()
    assert record["securityServerType"] == "Producer"
    assert record["faultCode"] == "Server.ServerProxy.OutdatedGlobalConf"
    assert (record["messageId"], record["serviceCode"], record["requestSize"]) == (None, None, None)
    # The waiting step event is written when the exchange ends.
    assert [(line["event"], line["step"]) for line in logs] == [("provider.step", "1_globalconf")]
    labels = dict(next(iter(observed.samples("xweg_exchanges_total"))))
    assert (labels["service"], labels["client"], labels["error_origin"]) == ("", "", "Server.ServerProxy")


async def test_an_unexpected_error_is_recorded_as_the_internal_error_answered(observed: Observed) -> None:
    with pytest.raises(ZeroDivisionError), observed.observe(Role.PROVIDER):
        trace.step(1)
        trace.step(2)
        trace.identify(HEADER)
        _ = 1 / 0

    [record] = await observed.records()
    assert (record["faultCode"], record["statusCode"]) == ("Server.ServerProxy.InternalError", 500)


async def test_a_fault_given_by_the_caller_wins(observed: Observed) -> None:
    class ProviderFault(Exception):
        pass

    with pytest.raises(ProviderFault), observed.observe() as current:
        run_consumer_steps(observed, until=6)
        current.fail("Server.ServerProxy.AccessDenied", "not allowed", 500, 99)
        raise ProviderFault

    [record] = await observed.records()
    assert (record["faultCode"], record["faultString"], record["responseSize"]) == (
        "Server.ServerProxy.AccessDenied",
        "not allowed",
        99,
    )
    exchanges = observed.samples("xweg_exchanges_total")
    assert {dict(k)["error_origin"] for k in exchanges} == {"Server.ServerProxy"}


def test_marks_outside_an_exchange_do_nothing() -> None:
    with capture_logs() as logs:
        trace.step(1)
        trace.identify(HEADER)
        trace.addresses(client=OWN, service=PEER)
        trace.responded(200, 1)
    assert logs == []


async def test_observation_never_fails_the_exchange(tmp_path: Path) -> None:
    def record(_: object) -> bool:
        raise RuntimeError("monitoring is broken")

    clock = FixedClock(NOW)
    broken = cast(OperationalMonitor, SimpleNamespace(record=record))
    with capture_logs() as logs:
        with observe_exchange(
            Role.CONSUMER, GatewayMetrics(clock), broken, clock, render_error=render_rest_error
        ):
            trace.step(1)
    assert [line["event"] for line in logs] == ["consumer.step", "exchange.observation_failed"]
