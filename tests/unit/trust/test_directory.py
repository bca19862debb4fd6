"""The directory: routing by service code and area key, look-up by authority identifier."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.identifiers import MemberId, SecurityServerId
from tests.unit.trust.helpers import NOW
from trust.directory import authority_answer, providers_answer, providers_for, services_of_authority
from trust.globalconf import GlobalConf, MemberInfo, SecurityServerInfo, ServiceInfo

PADERBORN = MemberId("NRW", "MUN", "05774032")
KREIS = MemberId("NRW", "MUN", "05774")
DETMOLD = MemberId("NRW", "GOV", "057")
ITNRW = MemberId("NRW", "GOV", "05")
BIELEFELD = MemberId("NRW", "MUN", "05711000")
GEWERBEAMT = PADERBORN.subsystem("gewerbeamt")
KREISVERWALTUNG = KREIS.subsystem("kreisverwaltung")
ARBEITSSCHUTZ = DETMOLD.subsystem("arbeitsschutz")
PORTAL = ITNRW.subsystem("portal")
MELDEWESEN = BIELEFELD.subsystem("meldewesen")
PB_MAINTAINED = SecurityServerId(PADERBORN, "ss1")
PB_AVAILABLE = SecurityServerId(PADERBORN, "ss2")
KREIS_SERVER = SecurityServerId(KREIS, "ss1")


def service(provider: Any, area: str | None, *authorities: str, version: str | None = "v1") -> ServiceInfo:
    return ServiceInfo(
        provider, "gewerbeanzeige", version, "REST", "", "XGewerbeanzeige 2.2", authorities, area
    )


# Catalogue order matters: answers keep it.
STATEWIDE = service(PORTAL, None)
REGIERUNGSBEZIRK = service(ARBEITSSCHUTZ, "057")
KREISWEIT = service(KREISVERWALTUNG, "05774", "MELDID:05774020", "MELDID:05774036")
STADT_V1 = service(GEWERBEAMT, "05774032", "MELDID:05774032")
STADT_V2 = service(GEWERBEAMT, "05774032", "MELDID:05774032", version="v2")
BIELEFELD_V1 = service(MELDEWESEN, "05711000")
MELDEAUSKUNFT = ServiceInfo(MELDEWESEN, "meldeauskunft", None, "SOAP", "", "XMeld 3.1", ("MELDID:05711000",))


def make_conf(services: tuple[ServiceInfo, ...] | None = None) -> GlobalConf:
    return GlobalConf(
        instance="NRW",
        serial=42,
        generated_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=10),
        members=(
            MemberInfo(PADERBORN, "Stadt Paderborn", ("gewerbeamt",)),
            MemberInfo(KREIS, "Kreis Paderborn", ("kreisverwaltung",)),
            MemberInfo(DETMOLD, "Bezirksregierung Detmold", ("arbeitsschutz",)),
            MemberInfo(ITNRW, "IT.NRW", ("portal",)),
            MemberInfo(BIELEFELD, "Stadt Bielefeld", ("meldewesen",)),
        ),
        security_servers=(
            SecurityServerInfo(PB_MAINTAINED, "pb1.example:5511", (), (GEWERBEAMT,), maintenance_mode=True),
            SecurityServerInfo(KREIS_SERVER, "kreis.example:5511", (), (KREISVERWALTUNG, MELDEWESEN)),
            SecurityServerInfo(PB_AVAILABLE, "pb2.example:5511", (), (GEWERBEAMT, PADERBORN)),
        ),
        global_groups=(),
        approved_cas=(),
        services=(
            (STATEWIDE, REGIERUNGSBEZIRK, KREISWEIT, STADT_V1, STADT_V2, BIELEFELD_V1, MELDEAUSKUNFT)
            if services is None
            else services
        ),
    )


CONF = make_conf()


def found(area: str, *, version: str | None = None, code: str = "gewerbeanzeige") -> list[ServiceInfo]:
    return [entry.service for entry in providers_for(CONF, code, area, version=version)]


# -- routing by area --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("area", "expected"),
    [
        ("05774032", [STADT_V1, STADT_V2]),  # Stadt Paderborn: its own entries, both versions
        ("05774020", [KREISWEIT]),  # Delbrück: the Kreis covers it
        ("05774", [KREISWEIT]),  # the Kreis itself
        ("05766020", [REGIERUNGSBEZIRK]),  # Detmold (Lippe): only the Regierungsbezirk covers it
        ("057", [REGIERUNGSBEZIRK]),
        ("05711000", [BIELEFELD_V1]),
        ("05315000", [STATEWIDE]),  # Köln: nothing specific, the entry without an area
        ("05", [STATEWIDE]),  # the whole state: no regional entry covers all of it
        ("09162000", [STATEWIDE]),
    ],
)
def test_most_specific_entries_win(area: str, expected: list[ServiceInfo]) -> None:
    assert found(area) == expected


def test_a_version_narrows_before_specificity() -> None:
    assert found("05774032", version="v2") == [STADT_V2]
    # v1 of the city still beats the Kreis, which is less specific.
    assert found("05774032", version="v1") == [STADT_V1]
    assert found("05774020", version="v2") == []  # the Kreis offers only v1; v2 exists only in the city


def test_equally_specific_entries_are_all_answers() -> None:
    second = service(KREISVERWALTUNG, "05774032", version="v9")
    conf = make_conf((STADT_V1, KREISWEIT, second))
    assert [e.service for e in providers_for(conf, "gewerbeanzeige", "05774032")] == [STADT_V1, second]


def test_nobody_provides_it_there() -> None:
    conf = make_conf((STADT_V1, BIELEFELD_V1))
    assert providers_for(conf, "gewerbeanzeige", "05774020") == ()
    assert found("05774032", code="hundesteuer") == []
    assert providers_for(make_conf(()), "gewerbeanzeige", "05") == ()


def test_a_longer_entry_never_covers_a_shorter_area() -> None:
    # Stadt Paderborn's entry must not answer for the whole Kreis.
    conf = make_conf((STADT_V1,))
    assert providers_for(conf, "gewerbeanzeige", "05774") == ()


def test_servers_in_maintenance_come_last() -> None:
    (v1, v2) = providers_for(CONF, "gewerbeanzeige", "05774032")
    assert [server.id for server in v1.servers] == [PB_AVAILABLE, PB_MAINTAINED]
    assert v1.provider == GEWERBEAMT and v2.servers == v1.servers
    (statewide,) = providers_for(CONF, "gewerbeanzeige", "05")
    assert statewide.servers == ()  # catalogued, but no security server hosts it yet


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"0[0-9]{1,11}", fullmatch=True))
def test_every_answer_covers_the_area_and_none_is_more_specific(area: str) -> None:
    def width(entry: ServiceInfo) -> int:
        return 0 if entry.area is None else len(entry.area)

    answers = found(area)
    covering = [s for s in CONF.services if s.code == "gewerbeanzeige" and area.startswith(s.area or "")]
    assert answers  # the statewide entry covers everything
    assert all(s in covering for s in answers)
    assert len({width(s) for s in answers}) == 1
    assert max(width(s) for s in covering) == width(answers[0])


@pytest.mark.parametrize(
    ("code", "area", "version", "match"),
    [
        ("gewerbeanzeige", "0", None, "area '0' must be an official key of 2 to 12 digits"),
        ("gewerbeanzeige", "Paderborn", None, "must be an official key"),
        ("gewerbeanzeige", "0577403200001", None, "must be an official key"),
        ("gewerbeanzeige", "05774032\n", None, "must be an official key"),
        ("gewerbeanzeige", "", None, "must be an official key"),
        ("gewerbeanzeige", "٠٥٧٧٤", None, "must be an official key"),  # Arabic-Indic digits
        ("", "05774032", None, "service code must not be empty"),
        ("gewerbe/anzeige", "05774032", None, "service code 'gewerbe/anzeige' contains the illegal"),
        ("gewerbeanzeige", "05774032", "", "service version must not be empty"),
    ],
)
def test_bad_questions_are_refused(code: str, area: str, version: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        providers_for(CONF, code, area, version=version)


# -- look-up by authority ---------------------------------------------------------------------


def test_services_of_an_authority() -> None:
    assert [e.service for e in services_of_authority(CONF, "MELDID:05774032")] == [STADT_V1, STADT_V2]
    assert [e.service for e in services_of_authority(CONF, "MELDID:05774036")] == [KREISWEIT]
    (meldeauskunft,) = services_of_authority(CONF, "MELDID:05711000")
    assert meldeauskunft.service == MELDEAUSKUNFT
    assert [s.id for s in meldeauskunft.servers] == [KREIS_SERVER]
    assert services_of_authority(CONF, "MELDID:09162000") == ()
    # Identifiers are compared exactly: another prefix is another register.
    assert services_of_authority(CONF, "meldid:05774032") == ()


@pytest.mark.parametrize(
    "authority", ["MELDID", "MELDID:", ":05774032", "1X:05774032", "MELDID:0577 4032", ""]
)
def test_bad_authority_identifiers_are_refused(authority: str) -> None:
    with pytest.raises(ValueError, match="must be prefix:key, e.g. MELDID:05774020"):
        services_of_authority(CONF, authority)


# -- the JSON answers -------------------------------------------------------------------------


def test_providers_answer_names_the_question_and_the_configuration() -> None:
    assert providers_answer(CONF, "gewerbeanzeige", "05774020") == {
        "instance": "NRW",
        "globalconf_serial": 42,
        "globalconf_expires_at": "2025-03-01T12:10:00Z",
        "service_code": "gewerbeanzeige",
        "version": None,
        "area": "05774020",
        "providers": [
            {
                "service": "NRW/MUN/05774/kreisverwaltung/gewerbeanzeige/v1",
                "provider": "NRW/MUN/05774/kreisverwaltung",
                "code": "gewerbeanzeige",
                "version": "v1",
                "protocol": "REST",
                "description": "",
                "standard": "XGewerbeanzeige 2.2",
                "authorities": ["MELDID:05774020", "MELDID:05774036"],
                "area": "05774",
                "servers": [
                    {"id": "NRW/MUN/05774/ss1", "address": "kreis.example:5511", "maintenance_mode": False}
                ],
            }
        ],
    }


def test_authority_answer() -> None:
    answer = authority_answer(CONF, "MELDID:05774032")
    assert answer["authority"] == "MELDID:05774032" and answer["globalconf_serial"] == 42
    assert [entry["service"] for entry in answer["services"]] == [
        "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1",
        "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v2",
    ]
    assert answer["services"][0]["servers"] == [
        {"id": "NRW/MUN/05774032/ss2", "address": "pb2.example:5511", "maintenance_mode": False},
        {"id": "NRW/MUN/05774032/ss1", "address": "pb1.example:5511", "maintenance_mode": True},
    ]
