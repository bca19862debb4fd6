"""One exchange observed: its steps timed and logged, the exchange counted and recorded.

A listener wraps each exchange in :func:`observe_exchange`; the pipelines mark where
they are with the module functions (:func:`step`, :func:`identify`, :func:`addresses`,
:func:`responded`), which act on the exchange of the current context and do nothing
outside one (pipeline code called from tests or tools stays unobserved).  The step
numbers are the pipelines' own (see :mod:`gateway.pipeline.consumer` and
:mod:`gateway.pipeline.provider`): a step lasts from its mark to the next mark or the end.

What comes out, once per exchange:

- one log event per step (``consumer.step`` / ``provider.step``, with the step, its
  duration and its outcome), carrying the message id once the request has been read
  (events before that wait for it) and the request's correlation id (bound by the
  listener);
- each step's duration in ``xweg_pipeline_step_duration_seconds``, the exchange in
  ``xweg_exchanges_total`` and ``xweg_exchange_duration_seconds``
  (:class:`gateway.observability.metrics.GatewayMetrics`);
- one operational monitoring record (:class:`gateway.observability.opmon.OpmonRecord`):
  ``requestOutTs`` is when step 6 began (the request left for the provider's server, or for
  the backend), ``responseInTs`` when step 7 began (its answer arrived).

Observation never fails an exchange: an error while observing is logged and dropped.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import enum
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from core.clock import Clock
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import SubsystemId
from core.messages import Protocol, RequestHeader
from gateway.observability.metrics import GatewayMetrics, fault_origin
from gateway.observability.opmon import CLIENT, PRODUCER, OperationalMonitor, OpmonRecord
from trust.globalconf import SecurityServerInfo

__all__ = [
    "Role",
    "STEPS",
    "ExchangeTrace",
    "observe_exchange",
    "step",
    "identify",
    "addresses",
    "responded",
]

log = structlog.get_logger("xweg.exchange")


class Role(enum.Enum):
    """Which side of an exchange this server is on."""

    CONSUMER = "consumer"
    PROVIDER = "provider"

    @property
    def server_type(self) -> str:
        """X-Road's ``securityServerType``."""
        return CLIENT if self is Role.CONSUMER else PRODUCER

    @property
    def origin(self) -> Origin:
        return Origin.CLIENT_PROXY if self is Role.CONSUMER else Origin.SERVER_PROXY


#: The steps' names, as log events and the ``step`` label give them.
STEPS: dict[Role, dict[int, str]] = {
    Role.CONSUMER: {
        1: "1_globalconf",
        2: "2_request",
        3: "3_provider",
        4: "4_sign",
        5: "5_log_request",
        6: "6_send",
        7: "7_verify_response",
        8: "8_log_response",
    },
    Role.PROVIDER: {
        1: "1_globalconf",
        2: "2_peer",
        3: "3_verify_request",
        4: "4_access",
        5: "5_log_request",
        6: "6_backend",
        7: "7_sign_response",
    },
}
_REQUEST_OUT_STEP = 6
_RESPONSE_IN_STEP = 7
# (status, headers, body) of the answer an error becomes.
ErrorRenderer = Callable[[XwegError], tuple[int, Any, bytes]]

_current: contextvars.ContextVar[ExchangeTrace | None] = contextvars.ContextVar(
    "xweg_exchange_trace", default=None
)


class ExchangeTrace:
    """What is known of one exchange while it runs."""

    def __init__(self, role: Role, metrics: GatewayMetrics, opmon: OperationalMonitor, clock: Clock) -> None:
        self.role = role
        self._metrics = metrics
        self._opmon = opmon
        self._clock = clock
        self._started = time.perf_counter()
        self._request_in = clock.now()
        self._request_out: dt.datetime | None = None
        self._response_in: dt.datetime | None = None
        self._step: int | None = None
        self._step_started = 0.0
        self._header: RequestHeader | None = None
        self._client_address: str | None = None
        self._service_address: str | None = None
        self._status: int | None = None
        self._response_size: int | None = None
        self._fault: tuple[str, str] | None = None
        # The service's own SOAP Fault: the exchange layer worked, the service call did not.
        self._service_fault: tuple[str, str] | None = None
        # Whether the request's client was authenticated: only then do its identifiers
        # become metric labels, so that made-up identifiers cannot grow the label set.
        self._admitted = False
        # Step events wait here until the message id is known (or the exchange ends).
        self._waiting: list[dict[str, Any]] | None = []
        self._finished = False

    @property
    def failed(self) -> bool:
        return self._fault is not None

    def step(self, number: int) -> None:
        """Step ``number`` begins (and the one before it ends)."""
        now = time.perf_counter()
        self._end_step(now, "ok")
        self._step, self._step_started = number, now
        if number == _REQUEST_OUT_STEP:
            self._request_out = self._clock.now()
        elif number == _RESPONSE_IN_STEP:
            self._response_in = self._clock.now()

    def identify(self, header: RequestHeader) -> None:
        """The request has been read: log lines carry its message id from now on.

        The id stays bound for the rest of the request (the listener's failure line too);
        the listener's scope restores the context when the request ends.
        """
        self._header = header
        structlog.contextvars.bind_contextvars(message_id=header.message_id)
        self._flush_waiting()

    def admitted(self) -> None:
        """The request's client is authenticated (and, at the provider, its signature verified)."""
        self._admitted = True

    def addresses(self, *, client: SecurityServerInfo | None, service: SecurityServerInfo | None) -> None:
        """The client's and the service's security servers (either may be unknown)."""
        self._client_address = client.address if client is not None else None
        self._service_address = service.address if service is not None else None

    def responded(self, status: int, size: int) -> None:
        """The answer: its HTTP status (the provider's or backend's) and body size."""
        self._status, self._response_size = status, size

    def service_fault(self, fault_code: str, fault_string: str) -> None:
        """The service answered with a SOAP Fault: recorded as not succeeded, as X-Road does,
        and counted with the error origin ``service``."""
        self._service_fault = (fault_code, fault_string)

    def fail(self, fault_code: str, fault_string: str, status: int | None, size: int | None) -> None:
        """The exchange failed with this fault, answered with ``status`` and a body of ``size`` bytes."""
        self._fault = (fault_code, fault_string)
        self._status, self._response_size = status, size
        self._end_step(time.perf_counter(), "failed")

    def finish(self) -> None:
        """Count and record the exchange; called once, when its answer is ready."""
        if self._finished:
            return
        self._finished = True
        try:
            self._end_step(time.perf_counter(), "ok")
            self._flush_waiting()
            seconds = time.perf_counter() - self._started
            header = self._header if self._admitted else None
            role = self.role.value
            self._metrics.count_exchange(
                role=role,
                service=header.service.unversioned().slash() if header is not None else "",
                client=header.client.slash() if header is not None else "",
                status=self._status,
                error_origin=(
                    fault_origin(self._fault[0])
                    if self._fault is not None
                    else "service"
                    if self._service_fault is not None
                    else ""
                ),
            )
            self._metrics.observe_exchange(role, seconds)
            self._opmon.record(self._record(self._clock.now()))
        except Exception:
            log.exception("exchange.observation_failed", role=self.role.value)

    def _end_step(self, at: float, outcome: str) -> None:
        if self._step is None:
            return
        number, self._step = self._step, None
        name = STEPS[self.role].get(number, str(number))
        seconds = at - self._step_started
        try:
            self._metrics.observe_step(self.role.value, name, seconds)
            event: dict[str, Any] = {
                "step": name,
                "duration_ms": round(seconds * 1000, 3),
                "outcome": outcome,
            }
            if self._fault is not None and outcome == "failed":
                event["fault_code"] = self._fault[0]
            if self._waiting is not None:
                self._waiting.append(event)
            else:
                self._log_step(event)
        except Exception:
            log.exception("exchange.observation_failed", role=self.role.value)

    def _flush_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        for event in waiting or ():
            self._log_step(event)

    def _log_step(self, event: dict[str, Any]) -> None:
        # A step that went as it should is a debug line: at eight per exchange and side,
        # info lines cost more event-loop time than signing (docs/performance.md), and
        # their durations are in the step histograms anyway.  The failed step is info.
        if event["outcome"] == "ok":
            log.debug(f"{self.role.value}.step", **event)
        else:
            log.info(f"{self.role.value}.step", **event)

    def _record(self, response_out: dt.datetime) -> OpmonRecord:
        header = self._header
        fault = self._fault or self._service_fault
        fault_code, fault_string = fault if fault is not None else (None, None)
        fields: dict[str, Any] = {}
        if header is not None:
            client, provider = header.client, header.service.provider
            party_class, party_code = _represented_party(header.represented_party)
            soap = header.protocol is Protocol.SOAP
            fields = {
                "client_x_road_instance": client.instance,
                "client_member_class": client.member_class,
                "client_member_code": client.member_code,
                "client_subsystem_code": client.subsystem_code if isinstance(client, SubsystemId) else None,
                "service_x_road_instance": provider.instance,
                "service_member_class": provider.member_class,
                "service_member_code": provider.member_code,
                "service_subsystem_code": provider.subsystem_code,
                "service_code": header.service.service_code,
                "service_version": header.service.service_version,
                "rest_method": None if soap else header.method,
                "rest_path": None if soap else header.path or "/",
                "represented_party_class": party_class,
                "represented_party_code": party_code,
                "message_id": header.message_id,
                "message_user_id": header.user_id,
                "message_issue": header.issue,
                "message_protocol_version": "4.0" if soap else "1",
                "request_size": header.body_size,
                "service_type": "WSDL" if soap else "REST",
            }
        return OpmonRecord(
            monitoring_data_ts=math.floor(response_out.timestamp()),
            security_server_type=self.role.server_type,
            request_in_ts=_ms(self._request_in),
            request_out_ts=_ms(self._request_out),
            response_in_ts=_ms(self._response_in),
            response_out_ts=_ms(response_out),
            client_security_server_address=self._client_address,
            service_security_server_address=self._service_address,
            response_size=self._response_size,
            succeeded=fault is None,
            fault_code=fault_code,
            fault_string=fault_string,
            status_code=self._status,
            **fields,
        )


def _represented_party(text: str | None) -> tuple[str | None, str | None]:
    """``[partyClass/]partyCode`` as its two parts."""
    if text is None:
        return None, None
    party_class, _, party_code = text.rpartition("/")
    return party_class or None, party_code


def _ms(at: dt.datetime | None) -> int | None:
    return math.floor(at.timestamp() * 1000) if at is not None else None


@contextlib.contextmanager
def observe_exchange(
    role: Role,
    metrics: GatewayMetrics,
    opmon: OperationalMonitor,
    clock: Clock,
    *,
    render_error: ErrorRenderer,
) -> Iterator[ExchangeTrace]:
    """Observe the exchange run inside; failures are recorded as ``render_error`` answers them.

    An :class:`XwegError` is recorded with its fault code, message and the status and size
    of its rendered answer; any other exception as the internal error the listener
    answers instead.  Exceptions propagate unchanged.  A caller that knows better (a
    provider's own fault passed through) calls :meth:`ExchangeTrace.fail` before
    re-raising.
    """
    trace = ExchangeTrace(role, metrics, opmon, clock)
    token = _current.set(trace)
    try:
        yield trace
    except XwegError as error:
        if not trace.failed:
            status, _, body = render_error(error)
            trace.fail(error.fault_code, error.message, status, len(body))
        raise
    except BaseException:
        if not trace.failed:
            internal = XwegError(ErrorCode.INTERNAL_ERROR, "internal error; see the server log", role.origin)
            status, _, body = render_error(internal)
            trace.fail(internal.fault_code, internal.message, status, len(body))
        raise
    finally:
        _current.reset(token)
        trace.finish()


def step(number: int) -> None:
    """Step ``number`` of the current exchange begins."""
    trace = _current.get()
    if trace is not None:
        trace.step(number)


def identify(header: RequestHeader) -> None:
    """The current exchange's request has been read."""
    trace = _current.get()
    if trace is not None:
        trace.identify(header)


def addresses(*, client: SecurityServerInfo | None, service: SecurityServerInfo | None) -> None:
    """The current exchange's client and service security servers."""
    trace = _current.get()
    if trace is not None:
        trace.addresses(client=client, service=service)


def service_fault(fault_code: str, fault_string: str) -> None:
    """The current exchange's service answered with a SOAP Fault."""
    trace = _current.get()
    if trace is not None:
        trace.service_fault(fault_code, fault_string)


def admitted() -> None:
    """The current exchange's client is authenticated."""
    trace = _current.get()
    if trace is not None:
        trace.admitted()


def responded(status: int, size: int) -> None:
    """The current exchange's answer: HTTP status and body size."""
    trace = _current.get()
    if trace is not None:
        trace.responded(status, size)
