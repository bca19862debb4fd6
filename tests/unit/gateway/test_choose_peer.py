"""Which provider server the consumer sends to when several host the provider."""

from __future__ import annotations

from core.identifiers import MemberId, SecurityServerId
from gateway.pipeline.consumer import choose_peer
from trust.globalconf import SecurityServerInfo

DETMOLD = MemberId("NRW", "GOV", "057")
ARBEITSSCHUTZ = DETMOLD.subsystem("arbeitsschutz")


def server(code: str, *, maintenance: bool = False) -> SecurityServerInfo:
    return SecurityServerInfo(
        SecurityServerId(DETMOLD, code),
        f"{code}.detmold.example:5500",
        ("a" * 64,),
        (ARBEITSSCHUTZ,),
        maintenance,
    )


def test_a_server_in_maintenance_is_passed_over() -> None:
    assert choose_peer((server("ss1", maintenance=True), server("ss2"))).id.server_code == "ss2"


def test_the_first_server_is_taken_when_none_is_in_maintenance() -> None:
    assert choose_peer((server("ss1"), server("ss2"))).id.server_code == "ss1"


def test_a_server_in_maintenance_is_still_tried_when_it_is_the_only_one() -> None:
    assert choose_peer((server("ss1", maintenance=True),)).id.server_code == "ss1"
