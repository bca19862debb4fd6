"""Revocation, OCSP and timestamping faults, with the real CA, OCSP responder and TSA processes.

Each test runs its own short-lived federation with short limits (OCSP freshness of a
few seconds, timestamp batches every second), so that what takes an hour in
production takes seconds here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.conftest import GEWERBEAMT, prepare_federation, two_server_plan
from tests.integration.test_exchange import ANZEIGE, assert_xroad_error, received_by_backend
from trust.castore import CaStore
from trust.keys import load_certificate
from xweg.demo import Exchange, call
from xweg.federation import GEWERBEANZEIGE, Layout, RunningFederation, rest_path

pytestmark = pytest.mark.integration

FRESHNESS_S = 6


@pytest.fixture
def short_lived(tmp_path: Path) -> Iterator[RunningFederation]:
    plan = two_server_plan(
        ocsp_freshness_s=FRESHNESS_S,
        ocsp_refresh_s=1.0,
        timestamp_interval_s=1.0,
        timestamp_acceptable_s=4.0,
    )
    federation = RunningFederation(prepare_federation(tmp_path, plan))
    with federation.running(timeout_s=90):
        yield federation


def _send(layout: Layout) -> Exchange:
    url = layout.client_url("paderborn") + rest_path(GEWERBEANZEIGE, "/anzeigen")
    return call(url, "POST", GEWERBEAMT, ANZEIGE)


def _until(condition: Callable[[], Exchange | None], timeout_s: float, what: str) -> Exchange:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        time.sleep(0.5)


def _revoke(layout: Layout, certificate: x509.Certificate) -> None:
    passphrase = layout.passphrase_file.read_bytes().strip()
    with CaStore.open(layout.ca_dir, passphrase) as ca:
        ca.revoke(certificate.serial_number, x509.ReasonFlags.key_compromise, now=dt.datetime.now(dt.UTC))


def _refused(fault: str) -> Callable[[Layout], Callable[[], Exchange | None]]:
    def probe(layout: Layout) -> Callable[[], Exchange | None]:
        def attempt() -> Exchange | None:
            result = _send(layout)
            return result if result.headers.get("X-Road-Error") == fault else None

        return attempt

    return probe


def test_revoked_sign_certificate_is_refused_within_the_freshness_limit(
    short_lived: RunningFederation,
) -> None:
    layout = short_lived.layout
    assert _send(layout).status == 201
    sign = load_certificate(layout.server_dir("paderborn") / "keys" / "sign-05774032.pem")
    _revoke(layout, sign)
    revoked_at = time.monotonic()

    refused = _until(
        _refused("Server.ServerProxy.CertValidation")(layout),
        FRESHNESS_S + 10,
        "refusal of the revoked signer",
    )
    # Within the freshness limit (plus one refresh round and the time of one exchange).
    assert time.monotonic() - revoked_at <= FRESHNESS_S + 3
    body = assert_xroad_error(refused, 500, "Server.ServerProxy.CertValidation")
    assert "NRW/MUN/05774032" in body["message"]
    assert "too old" in body["message"]  # the last good response, replayed past its freshness

    # Nothing from the revoked signer reaches the backend any more.
    before = received_by_backend(layout)
    assert _send(layout).headers.get("X-Road-Error") == "Server.ServerProxy.CertValidation"
    assert received_by_backend(layout) == before


def test_revoked_provider_auth_certificate_is_refused_by_the_consumer(
    short_lived: RunningFederation,
) -> None:
    layout = short_lived.layout
    assert _send(layout).status == 201
    auth = load_certificate(layout.server_dir("detmold") / "keys" / "auth.pem")
    _revoke(layout, auth)
    revoked_at = time.monotonic()
    before = received_by_backend(layout)

    refused = _until(
        _refused("Server.ClientProxy.SslAuthenticationFailed")(layout),
        FRESHNESS_S + 10,
        "refusal of the revoked provider",
    )
    assert time.monotonic() - revoked_at <= FRESHNESS_S + 3
    body = assert_xroad_error(refused, 500, "Server.ClientProxy.SslAuthenticationFailed")
    assert "NRW/GOV/057/ss1" in body["message"]
    # The consumer refused before sending: at most the exchanges before the refusal arrived.
    after = received_by_backend(layout)
    assert _send(layout).headers.get("X-Road-Error") == "Server.ClientProxy.SslAuthenticationFailed"
    assert received_by_backend(layout) == after
    assert after >= before


def test_tsa_and_ocsp_outages_refuse_traffic_past_their_limits_and_recover(
    short_lived: RunningFederation, tmp_path: Path
) -> None:
    layout = short_lived.layout
    assert _send(layout).status == 201

    # The TSA goes away: messages are still exchanged and logged, untimestamped ...
    short_lived.processes["tsa"].kill()
    assert _send(layout).status == 201
    # ... until the oldest untimestamped record is older than the acceptable period (4 s here).
    refused = _until(
        _refused("Server.ClientProxy.LoggingFailed.TimestamperFailed")(layout), 20, "TimestamperFailed"
    )
    body = assert_xroad_error(refused, 500, "Server.ClientProxy.LoggingFailed.TimestamperFailed")
    assert "untimestamped" in body["message"] or "timestamp" in body["message"]

    # The TSA returns: the server timestamps the backlog and serves again by itself.
    short_lived.processes["tsa"].start()
    _until(lambda: r if (r := _send(layout)).status == 201 else None, 20, "recovery after the TSA returned")

    # The OCSP responder goes away: cached responses carry on until the freshness limit,
    # then whichever stale certificate is checked first is refused (the provider's auth
    # certificate by the consumer, or the consumer's by the provider).
    short_lived.processes["ocsp"].kill()
    assert _send(layout).status == 201
    stale_faults = {
        "Server.ClientProxy.SslAuthenticationFailed",
        "Server.ServerProxy.SslAuthenticationFailed",
        "Server.ServerProxy.CertValidation",
    }

    def stale_refusal() -> Exchange | None:
        result = _send(layout)
        return result if result.headers.get("X-Road-Error") in stale_faults else None

    stale = _until(stale_refusal, FRESHNESS_S + 10, "refusal once OCSP is stale")
    assert "too old" in stale.json()["message"]
    # ... and it comes back.
    short_lived.processes["ocsp"].start()
    _until(lambda: r if (r := _send(layout)).status == 201 else None, 20, "recovery after OCSP returned")
