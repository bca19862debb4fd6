"""The server configuration model: path normalisation, endpoint patterns, deny-by-default access.

Paths are attacked the way X-Road's endpoint rules once were: encoded traversal, encoded
slashes, backslashes, empty segments.  Each must be refused before any rule is matched.
"""

from __future__ import annotations

import re

import pytest

from core.identifiers import ClientId, GlobalGroupId, LocalGroupId, MemberId, ServiceId
from core.messages import Protocol
from gateway.serverconf.model import (
    AccessGrant,
    ClientEntry,
    EndpointPattern,
    LocalGroup,
    PathRefused,
    ServerConfSnapshot,
    ServiceEntry,
    normalise_request_path,
)

BIELEFELD = MemberId("NRW", "MUN", "05711000")
PROVIDER = BIELEFELD.subsystem("gewerbeamt")
PADERBORN = MemberId("NRW", "MUN", "05774032").subsystem("gewerbeamt")
DELBRUECK = MemberId("NRW", "MUN", "05774020").subsystem("gewerbeamt")
GROUP = GlobalGroupId("NRW", "owl-kommunen")
BETRIEBE = PROVIDER.service("betriebe", "v1")


def no_groups(group: GlobalGroupId) -> list[ClientId]:
    return []


# ------------------------------------------------------------------ request paths


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/betriebe/42", "/betriebe/42"),
        ("/%61dmin", "/admin"),  # an encoded ordinary character means that character
        ("/stra%C3%9Fe", "/straße"),
        ("/betriebe/", "/betriebe/"),  # a trailing slash is kept: backends may tell the two apart
    ],
)
def test_a_request_path_is_decoded_for_matching(raw: str, expected: str) -> None:
    assert normalise_request_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("/public/../admin", ". or .."),
        ("/public/%2e%2e/admin", ". or .."),
        ("/public/%2E%2E/admin", ". or .."),
        ("/public/./admin", ". or .."),
        ("/public%2F..%2Fadmin", "encoded /"),
        ("/public/..%2fadmin", "encoded /"),
        ("/public/..%5Cadmin", "encoded /"),
        ("/public\\..\\admin", "backslash"),
        ("//admin", "empty segments"),
        ("/public//admin", "empty segments"),
        ("/public/%zz", "malformed percent-escape"),
        ("/public/%2", "malformed percent-escape"),
        ("/public/%ff", "not UTF-8"),
        ("/public/%00admin", "control characters"),
        ("public/admin", "starts with /"),
    ],
)
def test_a_path_that_could_be_read_two_ways_is_refused(raw: str, reason: str) -> None:
    with pytest.raises(PathRefused, match=reason):
        normalise_request_path(raw)


# ------------------------------------------------------------------ endpoint patterns


def test_patterns_are_normalised_and_openapi_templates_match_one_segment() -> None:
    assert EndpointPattern.parse("get", "/betriebe/{betriebId}") == EndpointPattern("GET", "/betriebe/*")
    assert EndpointPattern.parse("*", "/betriebe/**") == EndpointPattern("*", "/betriebe/**")


@pytest.mark.parametrize(
    ("method", "path", "reason"),
    [
        ("*", "/**", "matches every path"),
        ("GET", "/**", "matches every path"),
        ("*", "/*/**", "matches every path"),
        ("*", "/{id}/**", "matches every path"),
        ("*", "**", "starts with /"),
        ("*", "", "starts with /"),
        ("*", "/a/**/b", "only be the last segment"),
        ("*", "/a//b", "empty segments"),
        ("*", "/a/../b", ". and .."),
        ("*", "/a%2Fb", "may not contain"),
        ("*", "/a?b=1", "may not contain"),
        ("*", "/a\\b", "may not contain"),
        ("FETCH", "/a", "method must be"),
        ("*", "/" + "a" * 1024, "at most 1024"),
    ],
)
def test_bad_endpoint_patterns_are_refused(method: str, path: str, reason: str) -> None:
    with pytest.raises(PathRefused, match=reason):
        EndpointPattern.parse(method, path)


@pytest.mark.parametrize(
    ("pattern", "method", "path", "matches"),
    [
        (("GET", "/betriebe/*"), "GET", "/betriebe/42", True),
        (("GET", "/betriebe/*"), "DELETE", "/betriebe/42", False),
        (("GET", "/betriebe/*"), "GET", "/betriebe/42/inhaber", False),
        (("GET", "/betriebe/*"), "GET", "/betriebe", False),
        (("GET", "/betriebe/*"), "GET", "/betriebeX/42", False),
        (("*", "/betriebe/**"), "POST", "/betriebe", True),
        (("*", "/betriebe/**"), "POST", "/betriebe/42/inhaber", True),
        (("*", "/betriebe/**"), "POST", "/admin", False),
        (("GET", "/betriebe"), "GET", "/betriebe/", False),
        # '*' is one non-empty segment: '/betriebe/' is the collection to many backends
        (("GET", "/betriebe/*"), "GET", "/betriebe/", False),
    ],
)
def test_endpoint_matching(pattern: tuple[str, str], method: str, path: str, matches: bool) -> None:
    assert EndpointPattern.parse(*pattern).matches(method, path) is matches


# ------------------------------------------------------------------ access rights


def snapshot(*grants: AccessGrant, groups: dict[str, LocalGroup] | None = None) -> ServerConfSnapshot:
    return ServerConfSnapshot(
        clients={PROVIDER: ClientEntry(PROVIDER)},
        services=(ServiceEntry(BETRIEBE, "http://betriebe.intern/api", protocol=Protocol.REST),),
        grants=grants,
        groups=groups or {},
    )


def test_nothing_is_allowed_without_a_grant() -> None:
    assert not snapshot().allows(PADERBORN, BETRIEBE, no_groups, method="GET", path="/")


def test_a_service_grant_covers_every_version_and_endpoint_but_only_that_client() -> None:
    conf = snapshot(AccessGrant(PROVIDER, "betriebe", PADERBORN))
    assert conf.allows(PADERBORN, BETRIEBE, no_groups)
    assert conf.allows(PADERBORN, PROVIDER.service("betriebe", "v9"), no_groups, method="DELETE", path="/x")
    assert not conf.allows(DELBRUECK, BETRIEBE, no_groups)
    assert not conf.allows(PADERBORN, PROVIDER.service("gewerbeanzeige"), no_groups)


def test_a_right_granted_to_a_member_does_not_extend_to_its_subsystems() -> None:
    conf = snapshot(AccessGrant(PROVIDER, "betriebe", PADERBORN.member))
    assert conf.allows(PADERBORN.member, BETRIEBE, no_groups)
    assert not conf.allows(PADERBORN, BETRIEBE, no_groups)


def test_an_endpoint_grant_allows_that_endpoint_only() -> None:
    conf = snapshot(
        AccessGrant(PROVIDER, "betriebe", PADERBORN, EndpointPattern.parse("GET", "/betriebe/{id}"))
    )
    assert conf.allows(PADERBORN, BETRIEBE, no_groups, method="GET", path="/betriebe/42")
    assert not conf.allows(PADERBORN, BETRIEBE, no_groups, method="DELETE", path="/betriebe/42")
    assert not conf.allows(PADERBORN, BETRIEBE, no_groups, method="GET", path="/admin")
    # without a method and path (SOAP, metadata lists) only a whole-service grant counts
    assert not conf.allows(PADERBORN, BETRIEBE, no_groups)
    assert conf.allowed_endpoints(PADERBORN, BETRIEBE, no_groups) == (EndpointPattern("GET", "/betriebe/*"),)
    assert conf.allowed_endpoints(DELBRUECK, BETRIEBE, no_groups) == ()


def test_encoded_traversal_cannot_reach_an_endpoint_that_was_not_granted() -> None:
    conf = snapshot(AccessGrant(PROVIDER, "betriebe", PADERBORN, EndpointPattern.parse("GET", "/public/**")))
    for attack in ("/public/%2e%2e/admin", "/public/..%2Fadmin", "/public/%2E%2E%2Fadmin"):
        with pytest.raises(PathRefused):
            normalise_request_path(attack)
    assert conf.allows(PADERBORN, BETRIEBE, no_groups, method="GET", path=normalise_request_path("/public/a"))
    assert not conf.allows(PADERBORN, BETRIEBE, no_groups, method="GET", path="/admin")


def test_global_and_local_groups() -> None:
    local = LocalGroup("kreis-paderborn", members=frozenset({DELBRUECK}))
    conf = snapshot(
        AccessGrant(PROVIDER, "betriebe", GROUP),
        AccessGrant(PROVIDER, "betriebe", LocalGroupId("kreis-paderborn")),
        groups={"kreis-paderborn": local},
    )
    assert conf.allows(PADERBORN, BETRIEBE, lambda group: [PADERBORN] if group == GROUP else [])
    assert not conf.allows(PADERBORN, BETRIEBE, no_groups)
    assert conf.allows(DELBRUECK, BETRIEBE, no_groups)
    # a grant to a local group that no longer exists allows nobody
    orphaned = snapshot(AccessGrant(PROVIDER, "betriebe", LocalGroupId("gone")))
    assert not orphaned.allows(DELBRUECK, BETRIEBE, no_groups)


def test_service_lookup_matches_the_version_when_named() -> None:
    conf = snapshot()
    assert conf.service(BETRIEBE) is not None
    assert conf.service(PROVIDER.service("betriebe")) is not None
    assert conf.service(PROVIDER.service("betriebe", "v2")) is None
    assert conf.services_of(PROVIDER, Protocol.SOAP) == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"base_url": "file:///etc/passwd"}, "base_url must be an http(s) URL"),
        ({"base_url": "ftp://betriebe.intern/"}, "base_url must be an http(s) URL"),
        ({"timeout_s": 0}, "timeout_s must be positive"),
        ({"verify_tls": "no"}, "verify_tls must be true or false"),
    ],
)
def test_a_service_with_a_bad_setting_is_refused(changes: dict[str, object], reason: str) -> None:
    settings: dict[str, object] = {"base_url": "http://betriebe.intern/api"} | changes
    with pytest.raises(ValueError, match=re.escape(reason)):
        ServiceEntry(BETRIEBE, **settings)  # type: ignore[arg-type]


def test_a_metadata_service_code_cannot_be_a_service() -> None:
    with pytest.raises(ValueError, match="reserved"):
        ServiceEntry(ServiceId(PROVIDER, "listMethods"), "http://betriebe.intern/api")
