"""AccessRights: deny by default, exact client identifiers, per service code, global groups."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from core.identifiers import ClientId, GlobalGroupId, MemberId, ServiceId, SubsystemId
from gateway.access import AccessRights
from gateway.config import AccessRule

PROVIDER = SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")
OTHER_PROVIDER = SubsystemId("NRW", "MUN", "05774032", "standesamt")
CLIENT = SubsystemId("NRW", "GOV", "057", "arbeitsschutz")
CLIENT_MEMBER = MemberId("NRW", "GOV", "057")
SIBLING = SubsystemId("NRW", "GOV", "057", "immissionsschutz")
STRANGER = SubsystemId("NRW", "MUN", "05711000", "ordnungsamt")
GROUP = GlobalGroupId("NRW", "owl-kommunen")
EMPTY_GROUP = GlobalGroupId("NRW", "leer")

GROUPS: dict[GlobalGroupId, tuple[ClientId, ...]] = {GROUP: (STRANGER,), EMPTY_GROUP: ()}


def no_groups(group: GlobalGroupId) -> Iterable[ClientId]:
    raise AssertionError(f"group {group} should not have been consulted")


def groups(group: GlobalGroupId) -> Iterable[ClientId]:
    return GROUPS.get(group, ())


def rule(
    service_code: str, *subjects: ClientId | GlobalGroupId, provider: SubsystemId = PROVIDER
) -> AccessRule:
    return AccessRule(provider=provider, service_code=service_code, subjects=frozenset(subjects))


def test_no_rules_denies_everything() -> None:
    rights = AccessRights([])
    assert rights.allows(CLIENT, PROVIDER.service("gewerbeanzeige", "v1"), no_groups) is False
    assert rights.allowed_services(CLIENT, no_groups) == []


def test_rule_allows_the_named_client_for_every_version() -> None:
    rights = AccessRights([rule("gewerbeanzeige", CLIENT)])
    assert rights.allows(CLIENT, PROVIDER.service("gewerbeanzeige"), no_groups) is True
    assert rights.allows(CLIENT, PROVIDER.service("gewerbeanzeige", "v1"), no_groups) is True
    assert rights.allows(CLIENT, PROVIDER.service("gewerbeanzeige", "v99"), no_groups) is True


@pytest.mark.parametrize(
    "service",
    [
        PROVIDER.service("gewerbeabmeldung", "v1"),
        OTHER_PROVIDER.service("gewerbeanzeige", "v1"),
        SubsystemId("NRW", "MUN", "05711000", "gewerbeamt").service("gewerbeanzeige", "v1"),
    ],
    ids=["other-code", "other-subsystem", "other-member"],
)
def test_rule_does_not_extend_to_other_services(service: ServiceId) -> None:
    rights = AccessRights([rule("gewerbeanzeige", CLIENT)])
    assert rights.allows(CLIENT, service, groups) is False


@pytest.mark.parametrize(
    "client",
    [SIBLING, CLIENT_MEMBER, STRANGER, SubsystemId("EE", "GOV", "057", "arbeitsschutz")],
    ids=["sibling-subsystem", "owning-member", "stranger", "other-instance"],
)
def test_other_clients_are_denied(client: ClientId) -> None:
    rights = AccessRights([rule("gewerbeanzeige", CLIENT)])
    assert rights.allows(client, PROVIDER.service("gewerbeanzeige"), groups) is False


def test_right_for_a_member_does_not_extend_to_its_subsystems() -> None:
    rights = AccessRights([rule("gewerbeanzeige", CLIENT_MEMBER)])
    service = PROVIDER.service("gewerbeanzeige")
    assert rights.allows(CLIENT_MEMBER, service, groups) is True
    assert rights.allows(CLIENT, service, groups) is False
    assert rights.allows(SIBLING, service, groups) is False


def test_global_group_members_are_allowed_through_the_callback() -> None:
    consulted: list[GlobalGroupId] = []

    def members(group: GlobalGroupId) -> Iterable[ClientId]:
        consulted.append(group)
        return iter(GROUPS[group])  # an iterator, not a tuple: read once

    rights = AccessRights([rule("gewerbeanzeige", GROUP)])
    service = PROVIDER.service("gewerbeanzeige", "v1")
    assert rights.allows(STRANGER, service, members) is True
    assert consulted == [GROUP]
    assert rights.allows(CLIENT, service, members) is False
    # the group lists a subsystem; the member that owns it is not in the group
    assert rights.allows(STRANGER.member, service, members) is False


def test_group_right_follows_global_configuration() -> None:
    rights = AccessRights([rule("gewerbeanzeige", GROUP)])
    service = PROVIDER.service("gewerbeanzeige")
    assert rights.allows(CLIENT, service, lambda group: (CLIENT,)) is True
    assert rights.allows(CLIENT, service, lambda group: ()) is False


def test_empty_or_unknown_group_allows_nobody() -> None:
    rights = AccessRights([rule("gewerbeanzeige", EMPTY_GROUP, GlobalGroupId("NRW", "unbekannt"))])
    assert rights.allows(STRANGER, PROVIDER.service("gewerbeanzeige"), groups) is False


def test_direct_right_does_not_need_the_groups() -> None:
    rights = AccessRights([rule("gewerbeanzeige", CLIENT)])
    assert rights.allows(CLIENT, PROVIDER.service("gewerbeanzeige"), no_groups) is True


def test_rules_for_the_same_service_code_are_merged() -> None:
    rights = AccessRights([rule("gewerbeanzeige", CLIENT), rule("gewerbeanzeige", GROUP)])
    service = PROVIDER.service("gewerbeanzeige", "v2")
    assert rights.allows(CLIENT, service, groups) is True
    assert rights.allows(STRANGER, service, groups) is True
    assert rights.allows(SIBLING, service, groups) is False


def test_rule_with_no_subjects_allows_nobody() -> None:
    rights = AccessRights([rule("gewerbeanzeige")])
    assert rights.allows(CLIENT, PROVIDER.service("gewerbeanzeige"), groups) is False


def test_allowed_services_lists_direct_and_group_rights_sorted() -> None:
    rights = AccessRights(
        [
            rule("status", GROUP),
            rule("gewerbeanzeige", CLIENT),
            rule("geburt", CLIENT, provider=OTHER_PROVIDER),
            rule("geheim", SIBLING),
        ]
    )
    assert rights.allowed_services(CLIENT, groups) == [
        (PROVIDER, "gewerbeanzeige"),
        (OTHER_PROVIDER, "geburt"),
    ]
    assert rights.allowed_services(STRANGER, groups) == [(PROVIDER, "status")]
    assert rights.allowed_services(CLIENT_MEMBER, groups) == []
