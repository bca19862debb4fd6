"""A demo federation prepared again keeps its servers' configuration stores pointing at
its backends, also when a backend had to move to another port."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.serverconf.store import AuditContext, ServerConfStore
from tests.integration.conftest import prepare_federation, two_server_plan
from xweg.federation import GEWERBEANZEIGE

pytestmark = pytest.mark.integration


def _store(config: GatewayConfig) -> ServerConfStore:
    return ServerConfStore.open(config.serverconf.database_url, base=config.data_dir)


def test_a_moved_backend_is_followed_and_nothing_else_is_touched(tmp_path: Path) -> None:
    plan = two_server_plan()
    layout = prepare_federation(tmp_path, plan)
    config = GatewayConfig.load(layout.server_config("detmold"))
    store = _store(config)  # as the server's first start does: seeded from the file
    store.seed(config.seed_snapshot(), AuditContext("configuration-file", dt.datetime.now(dt.UTC)))
    old_url = next(s["base_url"] for s in store.list_services() if s["id"] == GEWERBEANZEIGE.slash())
    # An administrator's own change, which a new run must keep.
    slow = next(s for s in plan.servers[0].services if s.id.service_code == "langsam")
    store.update_service(slow.id, AuditContext("admin", dt.datetime.now(dt.UTC)), timeout_s=9.0)
    store.close()

    # The backend's port was taken meanwhile: the next run gives it another.
    ports = json.loads((tmp_path / "ports.json").read_text())
    moved = ports["backend.gewerbeanzeige"] + 1
    ports["backend.gewerbeanzeige"] = moved
    (tmp_path / "ports.json").write_text(json.dumps(ports))
    layout = prepare_federation(tmp_path, plan, database_url=layout.database_url)

    store = _store(config)
    try:
        services = {s["id"]: s for s in store.list_services()}
        new_url = services[GEWERBEANZEIGE.slash()]["base_url"]
        assert new_url != old_url
        assert new_url.startswith(layout.backend_url("gewerbeanzeige"))
        assert services[slow.id.slash()]["timeout_s"] == 9.0
        trail = store.audit_trail(limit=1000)
        assert any(e["actor"] == "xweg demo" and e["operation"] == "update_service" for e in trail)
    finally:
        store.close()
