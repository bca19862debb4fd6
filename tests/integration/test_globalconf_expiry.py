"""Global configuration expires when the registry is gone: traffic stops, and resumes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.conftest import GEWERBEAMT, prepare_federation, two_server_plan
from tests.integration.test_exchange import ANZEIGE, assert_xroad_error
from xweg.demo import call
from xweg.federation import GEWERBEANZEIGE, RunningFederation, rest_path

pytestmark = pytest.mark.integration


def _current_serial(federation: RunningFederation, slug: str) -> int | None:
    """The serial of the server's current configuration, from ``/readyz`` (503 or not)."""
    from xweg.federation import _get_json

    _, body = _get_json(federation.layout.client_url(slug) + "/readyz")
    return body.get("globalconf_serial") if isinstance(body, dict) else None


def test_expired_global_configuration_refuses_traffic_until_renewed(tmp_path: Path) -> None:
    plan = two_server_plan(registry_interval_s=1.0, registry_validity_s=3.0, globalconf_poll_s=1.0)
    federation = RunningFederation(prepare_federation(tmp_path, plan))
    url = federation.layout.client_url("paderborn") + rest_path(GEWERBEANZEIGE, "/anzeigen")
    with federation.running(timeout_s=90):
        assert call(url, "POST", GEWERBEAMT, ANZEIGE).status == 201
        serial_before = _current_serial(federation, "paderborn")
        assert serial_before is not None

        federation.processes["registry"].kill()
        deadline = time.monotonic() + 15
        while _current_serial(federation, "paderborn") is not None:
            assert time.monotonic() < deadline, "global configuration never expired"
            time.sleep(0.3)
        # Alive, but not ready, and /readyz says why.
        from xweg.federation import _get_json

        client_url = federation.layout.client_url("paderborn")
        assert _get_json(client_url + "/healthz")[0] == 200
        status, ready = _get_json(client_url + "/readyz")
        assert (status, ready["ready"]) == (503, False)
        [conf_check] = [c for c in ready["checks"] if c["name"] == "globalconf"]
        assert not conf_check["ok"] and "expired" in conf_check["problems"][0]

        result = call(url, "POST", GEWERBEAMT, ANZEIGE)
        body = assert_xroad_error(result, 500, "Server.ClientProxy.OutdatedGlobalConf")
        assert "expired" in body["message"]

        # The registry comes back: a higher serial, and the servers serve again.
        federation.processes["registry"].start()
        deadline = time.monotonic() + 30
        while (_current_serial(federation, "paderborn") or 0) <= serial_before:
            assert time.monotonic() < deadline, "security server did not recover"
            time.sleep(0.3)
        deadline = time.monotonic() + 30
        while _current_serial(federation, "detmold") is None:
            assert time.monotonic() < deadline, "provider did not recover"
            time.sleep(0.3)
        assert call(url, "POST", GEWERBEAMT, ANZEIGE).status == 201
