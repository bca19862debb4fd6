"""Fixtures that run real federations: every component its own process on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.identifiers import SecurityServerId
from tests.databases import drop_postgres_databases, new_postgres_database, postgres_requested
from xweg.federation import (
    DETMOLD,
    GEWERBEANZEIGE,
    KREIS_PB,
    OWL,
    PADERBORN,
    FederationPlan,
    Layout,
    MemberPlan,
    RunningFederation,
    ServerPlan,
    ServicePlan,
    prepare,
)

GEWERBEAMT = PADERBORN.subsystem("gewerbeamt")
KREISVERWALTUNG = KREIS_PB.subsystem("kreisverwaltung")
ARBEITSSCHUTZ = DETMOLD.subsystem("arbeitsschutz")
DEAD_SERVICE = ARBEITSSCHUTZ.service("archiv", "v1")
SLOW_SERVICE = ARBEITSSCHUTZ.service("langsam", "v1")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def two_server_plan(**timing: float) -> FederationPlan:
    """Paderborn (consumer, also hosting Kreis Paderborn) and Detmold (provider)."""
    granted = (GEWERBEAMT.slash(),)
    return FederationPlan(
        members=(
            MemberPlan(DETMOLD, "Bezirksregierung Detmold", ("arbeitsschutz",)),
            MemberPlan(PADERBORN, "Stadt Paderborn", ("gewerbeamt",)),
            MemberPlan(KREIS_PB, "Kreis Paderborn", ("kreisverwaltung",)),
        ),
        servers=(
            ServerPlan(
                "detmold",
                "Bezirksregierung Detmold",
                SecurityServerId(DETMOLD, "ss1"),
                (ARBEITSSCHUTZ,),
                (
                    ServicePlan(GEWERBEANZEIGE, "gewerbeanzeige", "Gewerbeanzeige", granted),
                    ServicePlan(
                        DEAD_SERVICE,
                        "gewerbeanzeige",
                        "a backend that is down",
                        granted,
                        base_url=f"http://127.0.0.1:{_closed_port()}",
                    ),
                    ServicePlan(
                        SLOW_SERVICE,
                        "gewerbeanzeige",
                        "a backend slower than its timeout",
                        granted,
                        timeout_s=0.5,
                    ),
                ),
            ),
            ServerPlan(
                "paderborn",
                "Stadt Paderborn",
                SecurityServerId(PADERBORN, "ss1"),
                (GEWERBEAMT, KREISVERWALTUNG),
            ),
        ),
        **timing,  # type: ignore[arg-type]
    )


def prepare_federation(root: Path, plan: FederationPlan = OWL, **options: Any) -> Layout:
    """:func:`prepare`, on PostgreSQL when the run asks for it (``XWEG_TEST_DATABASE=postgresql``):
    the registry in a fresh database, each security server in one of its own beside it."""
    if postgres_requested() and "database_url" not in options:
        options["database_url"] = new_postgres_database("xweg_fed")
    return prepare(root, plan, **options)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFederation]:
    layout: Layout = prepare_federation(tmp_path_factory.mktemp("federation"), two_server_plan())
    running = RunningFederation(layout)
    with running.running(timeout_s=90):
        yield running


@pytest.fixture(scope="module")
def layout(federation: RunningFederation) -> Layout:
    return federation.layout


def data_dir(layout: Layout) -> Path:
    return layout.root


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Federations on PostgreSQL outlive their tests' fixtures (module scope, processes).
    drop_postgres_databases()
