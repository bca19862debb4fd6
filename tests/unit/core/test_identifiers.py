"""Identifiers: round trips through both textual forms, and refusal of everything else."""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.identifiers import (
    MAX_PART_LENGTH,
    AnyId,
    GlobalGroupId,
    IdentifierError,
    LocalGroupId,
    MemberId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
    parse_client_slash,
    parse_typed,
)

ALLOWED = string.ascii_letters + string.digits + "'()+,-.=?"
parts = st.text(alphabet=ALLOWED, min_size=1, max_size=20)

members = st.builds(MemberId, parts, parts, parts)
subsystems = st.builds(SubsystemId, parts, parts, parts, parts)
services = st.builds(ServiceId, subsystems, parts, st.none() | parts)
servers = st.builds(SecurityServerId, members, parts)
global_groups = st.builds(GlobalGroupId, parts, parts)
local_groups = st.builds(LocalGroupId, parts)
any_id = st.one_of(members, subsystems, services, servers, global_groups, local_groups)

ILLEGAL = ["/", " ", ":", "%", "ä", "\n", "\0", "\t", "#", "&", "*", "@", "\\", "_", "~", "\u200b"]


@given(any_id)
def test_slash_form_round_trips(identifier: AnyId) -> None:
    assert type(identifier).parse_slash(identifier.slash()) == identifier


@given(any_id)
def test_typed_form_round_trips(identifier: AnyId) -> None:
    assert parse_typed(str(identifier)) == identifier


@given(st.one_of(members, subsystems))
def test_client_slash_round_trips(client: MemberId | SubsystemId) -> None:
    assert parse_client_slash(client.slash()) == client


@pytest.mark.parametrize("bad", ILLEGAL)
@pytest.mark.parametrize(
    "make",
    [
        lambda p: MemberId("NRW", "MUN", p),
        lambda p: MemberId(p, "MUN", "05774032"),
        lambda p: SubsystemId("NRW", "MUN", "05774032", p),
        lambda p: ServiceId(SubsystemId("NRW", "MUN", "05774032", "gewerbeamt"), p),
        lambda p: ServiceId(SubsystemId("NRW", "MUN", "05774032", "gewerbeamt"), "svc", p),
        lambda p: SecurityServerId(MemberId("NRW", "MUN", "05774032"), p),
        lambda p: GlobalGroupId("NRW", p),
        lambda p: LocalGroupId(p),
    ],
    ids=["member", "instance", "subsystem", "service", "version", "server", "globalgroup", "localgroup"],
)
def test_illegal_characters_are_refused(make: Callable[[str], object], bad: str) -> None:
    with pytest.raises(IdentifierError):
        make(f"ab{bad}cd")


@given(parts, st.characters().filter(lambda ch: ch not in ALLOWED))
def test_any_character_outside_the_set_is_refused(prefix: str, bad: str) -> None:
    with pytest.raises(IdentifierError):
        MemberId("NRW", "MUN", prefix + bad)


@pytest.mark.parametrize(
    "parse, text",
    [
        (MemberId.parse_slash, "NRW//05774032"),
        (MemberId.parse_slash, "NRW/MUN/"),
        (MemberId.parse_slash, ""),
        (SubsystemId.parse_slash, "/MUN/05774032/gewerbeamt"),
        (ServiceId.parse_slash, "NRW/MUN/05774032/gewerbeamt/"),
        (ServiceId.parse_slash, "NRW/MUN/05774032/gewerbeamt/svc/"),
        (parse_client_slash, "NRW/MUN//gewerbeamt"),
        (GlobalGroupId.parse_slash, "NRW/"),
        (LocalGroupId.parse_slash, ""),
    ],
)
def test_empty_parts_are_refused(parse: Callable[[str], object], text: str) -> None:
    with pytest.raises(IdentifierError):
        parse(text)


@pytest.mark.parametrize(
    "parse, text",
    [
        (MemberId.parse_slash, "NRW/MUN"),
        (MemberId.parse_slash, "NRW/MUN/05774032/gewerbeamt"),
        (SubsystemId.parse_slash, "NRW/MUN/05774032"),
        (SubsystemId.parse_slash, "NRW/MUN/05774032/gewerbeamt/x"),
        (ServiceId.parse_slash, "NRW/MUN/05774032/gewerbeamt"),
        (ServiceId.parse_slash, "NRW/MUN/05774032/gewerbeamt/svc/v1/extra"),
        (SecurityServerId.parse_slash, "NRW/MUN/05774032"),
        (GlobalGroupId.parse_slash, "NRW"),
        (LocalGroupId.parse_slash, "a/b"),
        (parse_client_slash, "NRW/MUN"),
        (parse_client_slash, "NRW/MUN/05774032/gewerbeamt/svc"),
        (parse_typed, "MEMBER:NRW/MUN"),
        (parse_typed, "NRW/MUN/05774032"),
        (parse_typed, "CLIENT:NRW/MUN/05774032"),
        (parse_typed, "member:NRW/MUN/05774032"),
    ],
)
def test_wrong_shapes_are_refused(parse: Callable[[str], object], text: str) -> None:
    with pytest.raises(IdentifierError):
        parse(text)


def test_part_length_is_bounded() -> None:
    assert MemberId("NRW", "MUN", "a" * MAX_PART_LENGTH).member_code == "a" * MAX_PART_LENGTH
    with pytest.raises(IdentifierError):
        MemberId("NRW", "MUN", "a" * (MAX_PART_LENGTH + 1))


def test_non_strings_are_refused() -> None:
    with pytest.raises(IdentifierError):
        MemberId("NRW", "MUN", 5774032)  # type: ignore[arg-type]
    with pytest.raises(IdentifierError):
        MemberId.parse_slash(None)  # type: ignore[arg-type]
    with pytest.raises(IdentifierError):
        parse_typed(None)  # type: ignore[arg-type]


def test_client_slash_kind_follows_part_count() -> None:
    member = parse_client_slash("NRW/MUN/05774032")
    subsystem = parse_client_slash("NRW/MUN/05774032/gewerbeamt")
    assert member == MemberId("NRW", "MUN", "05774032")
    assert type(member) is MemberId
    assert subsystem == SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")
    assert type(subsystem) is SubsystemId
    assert subsystem.member == member


def test_service_with_version() -> None:
    service = ServiceId.parse_slash("NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1")
    assert service.provider == SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")
    assert service.service_code == "gewerbeanzeige"
    assert service.service_version == "v1"
    assert service.unversioned() == ServiceId.parse_slash("NRW/MUN/05774032/gewerbeamt/gewerbeanzeige")
    assert str(service) == "SERVICE:NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"


def test_service_provider_must_be_a_subsystem() -> None:
    with pytest.raises(IdentifierError):
        ServiceId(MemberId("NRW", "MUN", "05774032"), "svc")  # type: ignore[arg-type]
    with pytest.raises(IdentifierError):
        SecurityServerId(SubsystemId("NRW", "MUN", "05774032", "x"), "ss1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "identifier, field",
    [
        (MemberId("NRW", "MUN", "05774032"), "member_code"),
        (SubsystemId("NRW", "MUN", "05774032", "gewerbeamt"), "subsystem_code"),
        (ServiceId(SubsystemId("NRW", "MUN", "05774032", "gewerbeamt"), "svc", "v1"), "service_version"),
        (SecurityServerId(MemberId("NRW", "MUN", "05774032"), "ss1"), "server_code"),
        (GlobalGroupId("NRW", "kommunen"), "group_code"),
        (LocalGroupId("admins"), "group_code"),
    ],
)
def test_identifiers_are_immutable(identifier: object, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(identifier, field, "other")


def test_identifiers_are_hashable_values() -> None:
    a = SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")
    b = SubsystemId.parse_slash("NRW/MUN/05774032/gewerbeamt")
    assert a == b
    assert len({a, b}) == 1
    other_kind: object = MemberId("NRW", "MUN", "05774032")
    assert a != other_kind
