"""The global configuration: format round trips, lookups, and the verification checklist step by step."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from core.canonical import canonical_json
from core.identifiers import GlobalGroupId, MemberId, SecurityServerId
from tests.unit.trust.helpers import MEMBER, NOW, OTHER_MEMBER, SERVER, Pki
from trust.anchor import Anchor, AnchorKey, KeySet
from trust.certificates import fingerprint
from trust.errors import GlobalConfError, GlobalConfExpired, GlobalConfInvalid, GlobalConfRollback
from trust.globalconf import (
    GLOBALCONF_TYPE,
    GlobalConf,
    GlobalGroupInfo,
    MemberInfo,
    SecurityServerInfo,
    ServiceInfo,
    sign_global_conf,
    verify_global_conf,
)
from trust.keys import generate_private_key, public_key_pem

REGISTRY_KEY = generate_private_key()
NEXT_KEY = generate_private_key()
ATTACKER_KEY = generate_private_key()
GEWERBEAMT = MEMBER.subsystem("gewerbeamt")
MELDEWESEN = OTHER_MEMBER.subsystem("meldewesen")
GROUP = GlobalGroupId("NRW", "owl-kommunen")
OTHER_SERVER = SecurityServerId(OTHER_MEMBER, "ss1")


def make_conf(pki: Pki, **changes: Any) -> GlobalConf:
    conf = GlobalConf(
        instance="NRW",
        serial=7,
        generated_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=10),
        members=(
            MemberInfo(MEMBER, "Stadt Paderborn", ("gewerbeamt",)),
            MemberInfo(OTHER_MEMBER, "Stadt Bielefeld", ("meldewesen", "kfz")),
        ),
        security_servers=(
            SecurityServerInfo(SERVER, "127.0.0.1:5511", (fingerprint(pki.auth_cert),), (GEWERBEAMT, MEMBER)),
            SecurityServerInfo(OTHER_SERVER, "[::1]:5512", ("ab" * 32,), (MELDEWESEN, GEWERBEAMT)),
        ),
        global_groups=(GlobalGroupInfo(GROUP, (GEWERBEAMT, MELDEWESEN)),),
        approved_cas=(pki.ca.certificate,),
    )
    return dataclasses.replace(conf, **changes) if changes else conf


def make_anchor(instance: str = "NRW") -> Anchor:
    return Anchor(
        instance,
        ("http://127.0.0.1:8080",),
        (AnchorKey("k1", public_key_pem(REGISTRY_KEY)), AnchorKey("k2", public_key_pem(NEXT_KEY))),
        NOW,
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: bytes, key: Any = REGISTRY_KEY) -> bytes:
    """A compact JWS with any header and payload, correctly ES256-signed by ``key``."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload)}"
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), key)
    return f"{signing_input}.{b64url(signature)}".encode()


HEADER = {"alg": "ES256", "kid": "k1", "typ": GLOBALCONF_TYPE}


# -- the format ----------------------------------------------------------------------------


def test_round_trip_is_exact_and_canonical(pki: Pki) -> None:
    conf = make_conf(pki)
    data = conf.to_json()
    assert data == canonical_json(json.loads(data))
    assert GlobalConf.from_json(data) == conf
    obj = json.loads(data)
    assert obj["generated_at"] == "2025-03-01T12:00:00Z"
    assert obj["members"][0]["id"] == "NRW/MUN/05774032"
    assert obj["security_servers"][0]["clients"] == ["NRW/MUN/05774032/gewerbeamt", "NRW/MUN/05774032"]
    assert obj["global_groups"][0]["id"] == "NRW/owl-kommunen"
    assert obj["approved_cas"][0]["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert obj["approved_cas"][0]["ocsp_url"] is None
    assert obj["approved_tsas"] == [] and obj["ocsp_freshness_s"] == 3600


def test_microseconds_survive_the_round_trip(pki: Pki) -> None:
    conf = make_conf(pki, generated_at=NOW + dt.timedelta(microseconds=1234))
    assert GlobalConf.from_json(conf.to_json()).generated_at == conf.generated_at


def test_lookups(pki: Pki) -> None:
    conf = make_conf(pki)
    assert conf.has_member(MEMBER) and not conf.has_member(MemberId("NRW", "MUN", "0"))
    assert conf.has_client(GEWERBEAMT) and conf.has_client(OTHER_MEMBER)
    assert not conf.has_client(MEMBER.subsystem("kfz"))  # the member exists, the subsystem does not
    assert not conf.has_client(MemberId("BY", "MUN", "05774032"))
    assert [s.id for s in conf.servers_for_client(GEWERBEAMT)] == [SERVER, OTHER_SERVER]
    assert conf.servers_for_client(OTHER_MEMBER) == ()
    server = conf.server(SERVER)
    assert server is not None and server.host == "127.0.0.1" and server.port == 5511
    other = conf.server(OTHER_SERVER)
    assert other is not None and other.host == "::1" and other.port == 5512
    assert conf.server(SecurityServerId(MEMBER, "ss9")) is None
    assert conf.server_by_fingerprint(fingerprint(pki.auth_cert)) == server
    assert conf.server_by_fingerprint(fingerprint(pki.auth_cert).upper()) == server
    assert conf.server_by_fingerprint("00" * 32) is None
    assert conf.group_members(GROUP) == (GEWERBEAMT, MELDEWESEN)
    assert conf.group_members(GlobalGroupId("NRW", "none")) == ()


def test_expiry_boundary(pki: Pki) -> None:
    conf = make_conf(pki)
    assert not conf.is_expired(conf.expires_at - dt.timedelta(microseconds=1))
    assert conf.is_expired(conf.expires_at)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"serial": 0}, "positive integer"),
        ({"serial": True}, "positive integer"),
        ({"expires_at": NOW}, "later than generated_at"),
        ({"generated_at": NOW.replace(tzinfo=None)}, "UTC"),
        ({"instance": "BY"}, "is not of instance BY"),
        ({"members": (MemberInfo(MEMBER, "a"), MemberInfo(MEMBER, "b"))}, "duplicate member"),
        ({"members": (MemberInfo(OTHER_MEMBER, "Bielefeld", ("meldewesen",)),)}, "owner of security server"),
        (
            {"members": (MemberInfo(MEMBER, "Paderborn"), MemberInfo(OTHER_MEMBER, "B", ("meldewesen",)))},
            "client SUBSYSTEM:NRW/MUN/05774032/gewerbeamt of security server",
        ),
        ({"global_groups": (GlobalGroupInfo(GlobalGroupId("BY", "x")),)}, "not of instance NRW"),
        ({"global_groups": (GlobalGroupInfo(GROUP), GlobalGroupInfo(GROUP))}, "duplicate global group"),
        ({"members": [MemberInfo(MEMBER, "a")]}, "must be a tuple"),
    ],
)
def test_inconsistent_configurations_cannot_be_built(pki: Pki, change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_conf(pki, **change)


def test_one_auth_certificate_cannot_belong_to_two_servers(pki: Pki) -> None:
    fp = fingerprint(pki.auth_cert)
    servers = (
        SecurityServerInfo(SERVER, "a:1", (fp,)),
        SecurityServerInfo(OTHER_SERVER, "b:2", (fp,)),
    )
    with pytest.raises(ValueError, match="registered for both"):
        make_conf(pki, security_servers=servers)


def test_approved_cas_must_be_cas(pki: Pki) -> None:
    with pytest.raises(ValueError, match="is not a CA certificate"):
        make_conf(pki, approved_cas=(pki.sign_cert,))


@pytest.mark.parametrize("address", ["127.0.0.1", "host:0", "host:99999", ":80", "a b:1", "::1:80"])
def test_server_address_must_be_host_and_port(address: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        SecurityServerInfo(SERVER, address, ())


@pytest.mark.parametrize("fp", ["AB" * 32, "ab" * 31, "zz" * 32])
def test_fingerprints_are_lower_case_sha256_hex(fp: str) -> None:
    with pytest.raises(ValueError, match="64 lower-case hex"):
        SecurityServerInfo(SERVER, "a:1", (fp,))


def test_member_info_validates_names_and_subsystems() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        MemberInfo(MEMBER, "")
    with pytest.raises(ValueError, match="illegal character"):
        MemberInfo(MEMBER, "Paderborn", ("gewerbe amt",))
    with pytest.raises(ValueError, match="duplicate subsystem"):
        MemberInfo(MEMBER, "Paderborn", ("a", "a"))


def payload_with(pki: Pki, edit: Any) -> bytes:
    obj = json.loads(make_conf(pki).to_json())
    edit(obj)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda o: o.update(serial="7"), "positive integer"),
        (lambda o: o.update(version=1), "version 1"),
        (lambda o: o.update(extra=1), "unexpected keys"),
        (lambda o: o.pop("approved_cas"), "lacks"),
        (lambda o: o.update(members={}), "must be a list"),
        (lambda o: o["members"][0].update(id="NRW/MUN"), "3 parts"),
        (lambda o: o["security_servers"][0].update(clients=[1]), "list of strings"),
        (lambda o: o.update(approved_cas=["not a pem"]), "malformed global configuration"),
        (lambda o: o.update(expires_at="2025-03-01 12:10:00"), "ending in 'Z'"),
    ],
)
def test_malformed_payloads_are_invalid(pki: Pki, edit: Any, match: str) -> None:
    with pytest.raises(GlobalConfInvalid, match=match):
        GlobalConf.from_json(payload_with(pki, edit))


# -- verification, step by step ------------------------------------------------------------


@pytest.fixture(scope="module")
def document(pki: Pki) -> bytes:
    return sign_global_conf(make_conf(pki), REGISTRY_KEY, "k1")


def test_good_document_verifies(pki: Pki, document: bytes) -> None:
    assert verify_global_conf(document, make_anchor(), NOW) == make_conf(pki)
    header = json.loads(base64.urlsafe_b64decode(document.split(b".")[0] + b"=="))
    assert header == HEADER


def test_key_rotation_second_anchor_key(pki: Pki) -> None:
    document = sign_global_conf(make_conf(pki), NEXT_KEY, "k2")
    assert verify_global_conf(document, make_anchor(), NOW).serial == 7


def test_step1_size_cap(document: bytes) -> None:
    with pytest.raises(GlobalConfInvalid, match="more than 100"):
        verify_global_conf(document, make_anchor(), NOW, max_size=100)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "three non-empty"),
        (b"a.b", "three non-empty"),
        (b"a..c", "three non-empty"),
        ("ä.b.c".encode(), "not a valid JWS"),
        (b"e30=.e30.e30", "base64url"),
        (b"W10.e30.e30", "JSON object"),
    ],
)
def test_step2_not_a_jws(data: bytes, match: str) -> None:
    with pytest.raises(GlobalConfInvalid, match=match):
        verify_global_conf(data, make_anchor(), NOW)


def test_step2_alg_none(pki: Pki) -> None:
    head = b64url(json.dumps({**HEADER, "alg": "none"}).encode())
    data = f"{head}.{b64url(make_conf(pki).to_json())}.".encode() + b"AA"
    with pytest.raises(GlobalConfInvalid, match="'none' is refused"):
        verify_global_conf(data, make_anchor(), NOW)


def test_step2_hs256_keyed_with_the_anchor_public_key(pki: Pki) -> None:
    signing_input = (
        f"{b64url(json.dumps({**HEADER, 'alg': 'HS256'}).encode())}.{b64url(make_conf(pki).to_json())}"
    )
    mac = hmac.HMAC(public_key_pem(REGISTRY_KEY).encode(), hashes.SHA256())
    mac.update(signing_input.encode())
    data = f"{signing_input}.{b64url(mac.finalize())}".encode()
    with pytest.raises(GlobalConfInvalid, match="'HS256' is refused"):
        verify_global_conf(data, make_anchor(), NOW)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"jwk": {"kty": "EC"}}, "unexpected parameters"),
        ({"crit": ["exp"]}, "unexpected parameters"),
        ({"typ": "xweg-msg-sig+jws"}, "JWS type"),
    ],
)
def test_step2_header_parameters(pki: Pki, change: dict[str, Any], match: str) -> None:
    with pytest.raises(GlobalConfInvalid, match=match):
        verify_global_conf(forge({**HEADER, **change}, make_conf(pki).to_json()), make_anchor(), NOW)


def test_step3_kid_missing_or_unknown(pki: Pki) -> None:
    payload = make_conf(pki).to_json()
    without = {k: v for k, v in HEADER.items() if k != "kid"}
    with pytest.raises(GlobalConfInvalid, match="no key id"):
        verify_global_conf(forge(without, payload), make_anchor(), NOW)
    with pytest.raises(GlobalConfInvalid, match="key 'k9', which the anchor does not name"):
        verify_global_conf(sign_global_conf(make_conf(pki), REGISTRY_KEY, "k9"), make_anchor(), NOW)


def test_step4_changed_payload_keeps_no_signature(pki: Pki, document: bytes) -> None:
    head, _, signature = document.split(b".")
    richer = make_conf(pki, expires_at=NOW + dt.timedelta(days=365)).to_json()
    tampered = b".".join([head, b64url(richer).encode(), signature])
    with pytest.raises(GlobalConfInvalid, match="signature by key 'k1' does not verify"):
        verify_global_conf(tampered, make_anchor(), NOW)


def test_step4_flipped_signature_byte(document: bytes) -> None:
    head, payload, signature = document.split(b".")
    raw = bytearray(base64.urlsafe_b64decode(signature + b"=="))
    raw[5] ^= 0x01
    with pytest.raises(GlobalConfInvalid, match="does not verify"):
        verify_global_conf(b".".join([head, payload, b64url(bytes(raw)).encode()]), make_anchor(), NOW)


def test_step4_right_kid_wrong_key(pki: Pki) -> None:
    with pytest.raises(GlobalConfInvalid, match="does not verify"):
        verify_global_conf(sign_global_conf(make_conf(pki), ATTACKER_KEY, "k1"), make_anchor(), NOW)


def test_step5_signed_but_not_a_configuration(pki: Pki) -> None:
    with pytest.raises(GlobalConfInvalid, match="malformed global configuration"):
        verify_global_conf(forge(HEADER, b'{"serial": 99}'), make_anchor(), NOW)


def test_step6_other_instance(document: bytes) -> None:
    with pytest.raises(GlobalConfInvalid, match="for instance 'NRW', the anchor for 'BY'"):
        verify_global_conf(document, make_anchor("BY"), NOW)


def test_step7_rollback(document: bytes) -> None:
    assert verify_global_conf(document, make_anchor(), NOW, min_serial=7).serial == 7
    with pytest.raises(GlobalConfRollback, match="serial 7 is older than the accepted serial 8"):
        verify_global_conf(document, make_anchor(), NOW, min_serial=8)


def test_step8_expired(pki: Pki, document: bytes) -> None:
    expires = make_conf(pki).expires_at
    assert verify_global_conf(document, make_anchor(), expires - dt.timedelta(seconds=1)).serial == 7
    with pytest.raises(GlobalConfExpired, match="expired at 2025-03-01T12:10:00Z"):
        verify_global_conf(document, make_anchor(), expires)


def test_step8_generated_in_the_future(document: bytes) -> None:
    assert verify_global_conf(document, make_anchor(), NOW - dt.timedelta(seconds=300)).serial == 7
    with pytest.raises(GlobalConfInvalid, match="generated in the future"):
        verify_global_conf(document, make_anchor(), NOW - dt.timedelta(seconds=301))


def test_naive_now_is_refused(document: bytes) -> None:
    with pytest.raises(ValueError, match="UTC"):
        verify_global_conf(document, make_anchor(), NOW.replace(tzinfo=None))


def test_signing_refuses_a_bad_key_id(pki: Pki) -> None:
    with pytest.raises(ValueError, match="key_id"):
        sign_global_conf(make_conf(pki), REGISTRY_KEY, "")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_ever_raise_globalconf_errors(data: bytes) -> None:
    with pytest.raises(GlobalConfError):
        verify_global_conf(data, make_anchor(), NOW)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_signed_payloads_only_ever_raise_globalconf_errors(payload: bytes) -> None:
    with pytest.raises(GlobalConfError):
        verify_global_conf(forge(HEADER, payload), make_anchor(), NOW)


def test_der_of_the_ca_survives(pki: Pki, document: bytes) -> None:
    conf = verify_global_conf(document, make_anchor(), NOW)
    assert conf.approved_cas[0].certificate.public_bytes(
        serialization.Encoding.DER
    ) == pki.ca.certificate.public_bytes(serialization.Encoding.DER)


# -- the service catalogue and maintenance mode (format version 4) --------------------------

#: The keys of a version 2 document: what security servers deployed before version 4 read.
VERSION_2_KEYS = {
    "format",
    "version",
    "instance",
    "serial",
    "generated_at",
    "expires_at",
    "members",
    "security_servers",
    "global_groups",
    "approved_cas",
    "approved_tsas",
    "ocsp_freshness_s",
}
GEWERBEANZEIGE = ServiceInfo(
    GEWERBEAMT,
    "gewerbeanzeige",
    "v1",
    "REST",
    "Gewerbeanzeige nach § 14 GewO",
    "XGewerbeanzeige 2.2",
    ("MELDID:05774032", "LEIKA:99050012104000"),
    "05774032",
)
MELDEAUSKUNFT = ServiceInfo(MELDEWESEN, "meldeauskunft", None, "SOAP", "", "XMeld 3.1", (), None)


def catalogued(pki: Pki, **changes: Any) -> GlobalConf:
    return make_conf(pki, services=(GEWERBEANZEIGE, MELDEAUSKUNFT), **changes)


def test_a_configuration_without_catalogue_stays_version_2(pki: Pki) -> None:
    obj = json.loads(make_conf(pki).to_json())
    assert obj["version"] == 2 and set(obj) == VERSION_2_KEYS
    assert [set(server) for server in obj["security_servers"]] == [
        {"id", "address", "auth_cert_fingerprints", "clients"}
    ] * 2


def test_catalogue_round_trip_is_version_4(pki: Pki) -> None:
    conf = catalogued(pki)
    data = conf.to_json()
    obj = json.loads(data)
    assert obj["version"] == 4 and set(obj) == VERSION_2_KEYS | {"services"}
    assert obj["services"] == [
        {
            "provider": "NRW/MUN/05774032/gewerbeamt",
            "code": "gewerbeanzeige",
            "version": "v1",
            "protocol": "REST",
            "description": "Gewerbeanzeige nach § 14 GewO",
            "standard": "XGewerbeanzeige 2.2",
            "authorities": ["MELDID:05774032", "LEIKA:99050012104000"],
            "area": "05774032",
        },
        {
            "provider": "NRW/MUN/05711000/meldewesen",
            "code": "meldeauskunft",
            "version": None,
            "protocol": "SOAP",
            "description": "",
            "standard": "XMeld 3.1",
            "authorities": [],
            "area": None,
        },
    ]
    assert data == canonical_json(obj)
    assert GlobalConf.from_json(data) == conf
    assert GEWERBEANZEIGE.service_id.slash() == "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"


def test_signed_catalogue_verifies(pki: Pki) -> None:
    document = sign_global_conf(catalogued(pki), REGISTRY_KEY, "k1")
    assert verify_global_conf(document, make_anchor(), NOW).services == (GEWERBEANZEIGE, MELDEAUSKUNFT)


def test_maintenance_mode_alone_means_version_4(pki: Pki) -> None:
    first, second = make_conf(pki).security_servers
    conf = make_conf(pki, security_servers=(first, dataclasses.replace(second, maintenance_mode=True)))
    obj = json.loads(conf.to_json())
    assert obj["version"] == 4 and obj["services"] == []
    assert "maintenance_mode" not in obj["security_servers"][0]
    assert obj["security_servers"][1]["maintenance_mode"] is True
    parsed = GlobalConf.from_json(conf.to_json())
    assert parsed == conf
    assert [server.maintenance_mode for server in parsed.security_servers] == [False, True]


def test_catalogue_with_a_key_set_keeps_the_announcement(pki: Pki) -> None:
    keys = KeySet((AnchorKey("k2", public_key_pem(NEXT_KEY)),), 1)
    conf = catalogued(pki, key_set=keys)
    obj = json.loads(conf.to_json())
    assert obj["version"] == 4 and obj["signing_keys"] == keys.to_dict()
    assert GlobalConf.from_json(conf.to_json()) == conf


def test_version_4_reads_maintenance_mode_as_optional(pki: Pki) -> None:
    def edit(obj: dict[str, Any]) -> None:
        obj.update(version=4, services=[])
        obj["security_servers"][0]["maintenance_mode"] = False

    conf = GlobalConf.from_json(payload_with(pki, edit))
    assert [server.maintenance_mode for server in conf.security_servers] == [False, False]
    assert conf.services == ()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        # The new facts are refused in the older versions, where they have no meaning yet.
        (lambda o: o.update(services=[]), r"unexpected keys \['services'\]"),
        (lambda o: o["security_servers"][0].update(maintenance_mode=True), r"unexpected keys \['maintenance"),
        (lambda o: o.update(version=3, services=[], signing_keys=None), r"unexpected keys \['services'\]"),
        (lambda o: o.update(version=4), r"lacks \['services'\]"),
        (lambda o: o.update(version=4.0, services=[]), "version 4.0 is not"),
        (lambda o: o.update(version=True), "version True is not"),
        (lambda o: o.update(version=5, services=[]), "unexpected keys"),
        (lambda o: o.update(version=4, services={}), "services must be a list"),
        (lambda o: o.update(version=4, services=[{"provider": "NRW/MUN/05774032/gewerbeamt"}]), "lacks"),
        (
            lambda o: (
                o.update(version=4, services=[]),
                o["security_servers"][0].update(maintenance_mode="yes"),
            ),
            "maintenance_mode of .* must be true or false",
        ),
    ],
)
def test_malformed_catalogues_are_invalid(pki: Pki, edit: Any, match: str) -> None:
    with pytest.raises(GlobalConfInvalid, match=match):
        GlobalConf.from_json(payload_with(pki, edit))


def test_malformed_service_entry_in_json_is_invalid(pki: Pki) -> None:
    def edit(obj: dict[str, Any]) -> None:
        entry = GEWERBEANZEIGE.to_dict()
        entry["area"] = 5774032  # a number, not a key: leading zeros would be lost
        obj.update(version=4, services=[entry])

    with pytest.raises(GlobalConfInvalid, match="area 5774032 of .* must be an official key"):
        GlobalConf.from_json(payload_with(pki, edit))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"provider": MEMBER}, "provider must be a SubsystemId"),
        ({"code": ""}, "serviceCode must not be empty"),
        ({"code": "gewerbe/anzeige"}, "illegal character"),
        ({"version": ""}, "serviceVersion must not be empty"),
        ({"protocol": "rest"}, "protocol of .* must be one of REST, SOAP"),
        ({"protocol": "GRPC"}, "must be one of REST, SOAP"),
        ({"description": "x" * 4097}, "description of .* at most 4096"),
        ({"standard": None}, "standard of .* must be a string"),
        ({"authorities": ["MELDID:05774032"]}, "must be a tuple"),
        ({"authorities": ("MELDID",)}, "must be prefix:key"),
        ({"authorities": ("MELDID:",)}, "must be prefix:key"),
        ({"authorities": ("1X:05774032",)}, "must be prefix:key"),
        ({"authorities": ("MELDID:0577 4032",)}, "must be prefix:key"),
        ({"authorities": ("MELDID:1", "MELDID:1")}, "duplicate authority identifier"),
        ({"authorities": tuple(f"MELDID:{n}" for n in range(257))}, "more than 256"),
        ({"area": "0"}, "must be an official key of 2 to 12 digits"),
        ({"area": "0577403200001"}, "must be an official key"),
        ({"area": "Paderborn"}, "must be an official key"),
        ({"area": "05774032\n"}, "must be an official key"),
    ],
)
def test_service_info_validates_like_the_registry(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(GEWERBEANZEIGE, **change)


def test_service_info_bounds_are_inclusive() -> None:
    widest = dataclasses.replace(
        GEWERBEANZEIGE,
        description="x" * 4096,
        authorities=tuple(f"MELDID:{n}" for n in range(256)),
        area="057740320001",
    )
    assert len(widest.authorities) == 256


@pytest.mark.parametrize(
    ("services", "match"),
    [
        (
            (dataclasses.replace(GEWERBEANZEIGE, provider=MEMBER.subsystem("kfz")),),
            "provider SUBSYSTEM:NRW/MUN/05774032/kfz of .* is not a registered subsystem",
        ),
        (
            (dataclasses.replace(GEWERBEANZEIGE, provider=MemberId("NRW", "MUN", "1").subsystem("a")),),
            "is not a registered subsystem",
        ),
        ((GEWERBEANZEIGE, dataclasses.replace(GEWERBEANZEIGE, area=None)), "duplicate service"),
        ([GEWERBEANZEIGE], "services must be a tuple"),
    ],
)
def test_inconsistent_catalogues_cannot_be_built(pki: Pki, services: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_conf(pki, services=services)


def test_versions_of_one_service_are_distinct_entries(pki: Pki) -> None:
    v2 = dataclasses.replace(GEWERBEANZEIGE, version="v2")
    unversioned = dataclasses.replace(GEWERBEANZEIGE, version=None)
    assert make_conf(pki, services=(GEWERBEANZEIGE, v2, unversioned)).services[2].version is None


def test_rerouting_a_service_breaks_the_signature(pki: Pki) -> None:
    # An attacker on the way wants Bielefeld's requests for Paderborn's service.
    document = sign_global_conf(catalogued(pki), REGISTRY_KEY, "k1")
    head, payload, signature = document.split(b".")
    obj = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    obj["services"][0]["area"] = "05711000"
    tampered = b".".join([head, b64url(canonical_json(obj)).encode(), signature])
    with pytest.raises(GlobalConfInvalid, match="signature by key 'k1' does not verify"):
        verify_global_conf(tampered, make_anchor(), NOW)


def test_hiding_the_catalogue_breaks_the_signature(pki: Pki) -> None:
    # Downgrading to version 2 to drop the catalogue and the maintenance flags is a change too.
    document = sign_global_conf(catalogued(pki), REGISTRY_KEY, "k1")
    head, _, signature = document.split(b".")
    stripped = b".".join([head, b64url(make_conf(pki).to_json()).encode(), signature])
    with pytest.raises(GlobalConfInvalid, match="does not verify"):
        verify_global_conf(stripped, make_anchor(), NOW)
