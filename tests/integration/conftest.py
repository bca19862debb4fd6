"""Fixtures that run real federations: every component its own process on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.identifiers import SecurityServerId
from xweg.federation import (
    DETMOLD,
    GEWERBEANZEIGE,
    KREIS_PB,
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


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFederation]:
    layout: Layout = prepare(tmp_path_factory.mktemp("federation"), two_server_plan())
    running = RunningFederation(layout)
    with running.running(timeout_s=90):
        yield running


@pytest.fixture(scope="module")
def layout(federation: RunningFederation) -> Layout:
    return federation.layout


def data_dir(layout: Layout) -> Path:
    return layout.root
