"""An exchange as the listeners observe it: failures counted and recorded as the client sees them.

:func:`observed_exchange` wraps one call of a pipeline (``handle_rest_request``,
``handle_soap_request``, ``handle_wsdl_request``, ``handle_exchange``) in
:func:`gateway.observability.exchange.observe_exchange`, with the renderer of the
listener's answers: X-Road REST error bodies, or SOAP faults for a SOAP client.  A fault
of the provider's server passed back (:class:`PassThroughError`) is recorded with its own
code and message, and the correlation id it names (the provider's server's, which the
client is given) is bound to the rest of the request's log lines as
``provider_correlation_id``.  Exceptions propagate unchanged: rendering them stays the
listener's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import structlog

from adapters.rest.outbound import render_rest_error
from adapters.soap.outbound import render_soap_fault
from gateway.observability.exchange import ExchangeTrace, Role, observe_exchange
from gateway.pipeline.consumer import PassThroughError, pass_through_soap_fault
from gateway.runtime import Gateway

__all__ = ["observed_exchange", "Role"]

# The longest error body of a provider's server read for its message.
_MAX_PEER_ERROR_BYTES = 64 * 1024


@contextlib.contextmanager
def observed_exchange(gateway: Gateway, role: Role, *, soap: bool = False) -> Iterator[ExchangeTrace]:
    """Observe the exchange run inside; ``soap``: its failures are answered as SOAP faults."""
    render = render_soap_fault if soap else render_rest_error
    with observe_exchange(role, gateway.metrics, gateway.opmon, gateway.clock, render_error=render) as trace:
        try:
            yield trace
        except PassThroughError as error:
            if soap:
                answer = pass_through_soap_fault(error)
                status, size = answer.status, len(answer.body)
            else:
                status, size = error.status, len(error.body)
            message, detail = _provider_error(error)
            if detail is not None:
                structlog.contextvars.bind_contextvars(provider_correlation_id=detail)
            trace.fail(error.fault_code, message, status, size)
            raise


def _provider_error(error: PassThroughError) -> tuple[str, str | None]:
    """The ``message`` and ``detail`` (correlation id) of the provider's server's X-Road error body."""
    try:
        data = json.loads(error.body[:_MAX_PEER_ERROR_BYTES].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    fields = data if isinstance(data, dict) else {}
    message, detail = fields.get("message"), fields.get("detail")
    if not isinstance(message, str):
        message = f"the provider's security server answered {error.fault_code}"
    return message, detail if isinstance(detail, str) else None
