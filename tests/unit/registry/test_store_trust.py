"""The store's typed refusals, approved CAs and TSAs, auth certificates and maintenance mode: all audited."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from registry.store import (
    AuditContext,
    Member,
    MemberClass,
    RegistryConflict,
    RegistryError,
    RegistryNotFound,
    RegistryStore,
)
from tests.unit.registry.dbfixtures import database_url
from tests.unit.registry.test_store import PADERBORN, pem, populated, refusals, store
from tests.unit.trust.helpers import NOW, SERVER, Pki
from trust.ca import CertificateAuthority
from trust.certificates import fingerprint
from trust.keys import generate_private_key, make_csr

__all__ = ["database_url", "populated", "store"]

AUDIT = AuditContext("ana", NOW, "c0ffee")
UTC_TEXT = "%Y-%m-%dT%H:%M:%SZ"

# The type each refusal of test_store.refusals raises; RegistryError means exactly the base.
REFUSAL_TYPES: dict[str, type[RegistryError]] = {
    "duplicate member": RegistryConflict,
    "unknown class": RegistryNotFound,
    "illegal characters": RegistryError,
    "duplicate subsystem": RegistryConflict,
    "unknown owner": RegistryNotFound,
    "other instance": RegistryError,
    "duplicate server": RegistryConflict,
    "unknown server owner": RegistryNotFound,
    "auth certificate of the wrong server": RegistryError,
    "auth certificate of an unapproved CA": RegistryError,
    "bad address": RegistryError,
    "unknown client in a multi-row change": RegistryNotFound,
    "unknown member in a new group": RegistryNotFound,
    "duplicate group": RegistryConflict,
    "duplicate group member": RegistryConflict,
    "duplicate CA": RegistryConflict,
    "CA that is no CA": RegistryError,
    "not PEM": RegistryError,
    "duplicate service": RegistryConflict,
    "bad protocol": RegistryError,
    "bad authority": RegistryError,
    "bad area": RegistryError,
    "service of an unknown subsystem": RegistryNotFound,
    "second init": RegistryConflict,
}


def test_each_refusal_has_its_type_and_code(populated: RegistryStore, pki: Pki) -> None:
    seen = set()
    for name, change, _ in refusals(pki):
        if name not in REFUSAL_TYPES:
            continue
        with pytest.raises(RegistryError) as info:
            change(populated)
        assert type(info.value) is REFUSAL_TYPES[name], name
        seen.add(name)
    assert seen == set(REFUSAL_TYPES)
    assert (RegistryError.code, RegistryConflict.code, RegistryNotFound.code) == (
        "refused",
        "conflict",
        "unknown_reference",
    )


def test_a_constraint_that_trips_after_the_checks_is_a_conflict(populated: RegistryStore) -> None:
    """What a concurrent writer that registered the same member first looks like."""
    before = populated.counts()
    with (
        pytest.raises(RegistryConflict, match="refused by the database"),
        populated._transaction() as session,
    ):
        cls = session.scalar(sa.select(MemberClass).where(MemberClass.code == "MUN"))
        session.add(Member(member_class=cls, code="05774032", name="again"))
    assert populated.counts() == before


# -- approved CAs and TSAs ------------------------------------------------------------------


def test_approving_a_ca_is_audited_without_pems(populated: RegistryStore, pki: Pki) -> None:
    root = CertificateAuthority.create_root("Kreis Lippe Root CA", generate_private_key(), now=NOW)
    issuing = CertificateAuthority.create_intermediate(
        root, "Kreis Lippe Issuing CA", generate_private_key(), now=NOW
    )
    responder = issuing.issue_ocsp_responder_certificate(generate_private_key().public_key(), "OCSP", now=NOW)
    ca = populated.add_approved_ca(
        pem(root.certificate),
        intermediates_pem=[pem(issuing.certificate)],
        ocsp_url="http://127.0.0.1:8888/ocsp",
        ocsp_responders_pem=[pem(responder)],
        audit=AUDIT,
    )
    assert (ca.certificate, ca.intermediates, ca.ocsp_responders) == (
        root.certificate,
        (issuing.certificate,),
        (responder,),
    )
    assert populated.approved_cas() == (populated.definition().approved_cas[0], ca)
    entry = populated.audit_trail()[-1]
    assert (entry.actor, entry.at, entry.correlation_id) == ("ana", NOW, "c0ffee")
    assert (entry.operation, entry.target, entry.before) == (
        "add_approved_ca",
        fingerprint(root.certificate),
        None,
    )
    assert entry.after == {
        "fingerprint": fingerprint(root.certificate),
        "subject": "CN=Kreis Lippe Root CA",
        "not_after": root.certificate.not_valid_after_utc.strftime(UTC_TEXT),
        "intermediate_fingerprints": [fingerprint(issuing.certificate)],
        "ocsp_url": "http://127.0.0.1:8888/ocsp",
        "ocsp_responder_fingerprints": [fingerprint(responder)],
    }
    assert "BEGIN CERTIFICATE" not in json.dumps(entry.to_dict())


def test_approving_a_tsa_is_audited_and_names_are_unique(populated: RegistryStore, pki: Pki) -> None:
    tsa = pki.ca.issue_tsa_certificate(make_csr(generate_private_key(), "t"), "IT.NRW TSA", now=NOW)
    approved = populated.add_approved_tsa("IT.NRW TSA", "http://127.0.0.1:8889/", pem(tsa), audit=AUDIT)
    assert populated.approved_tsas() == (approved,)
    entry = populated.audit_trail()[-1]
    assert (entry.actor, entry.operation, entry.target, entry.before) == (
        "ana",
        "add_approved_tsa",
        "IT.NRW TSA",
        None,
    )
    assert entry.after == {
        "name": "IT.NRW TSA",
        "url": "http://127.0.0.1:8889/",
        "fingerprint": fingerprint(tsa),
        "subject": "CN=IT.NRW TSA",
        "not_after": tsa.not_valid_after_utc.strftime(UTC_TEXT),
    }

    before, tsas = populated.counts(), populated.approved_tsas()
    forged = pki.impostor_ca.issue_tsa_certificate(make_csr(generate_private_key(), "t"), "x", now=NOW)
    with pytest.raises(RegistryError, match="was not issued by an approved CA") as info:
        populated.add_approved_tsa("Other TSA", "http://127.0.0.1:8890/", pem(forged))
    assert type(info.value) is RegistryError
    with pytest.raises(RegistryConflict, match="^duplicate approved TSA IT.NRW TSA$"):
        populated.add_approved_tsa("IT.NRW TSA", "http://127.0.0.1:8890/", pem(tsa))
    assert (populated.counts(), populated.approved_tsas()) == (before, tsas)


def test_reads_need_an_initialised_store(store: RegistryStore) -> None:
    for read in (store.approved_cas, store.approved_tsas, store.maintenance_modes):
        with pytest.raises(RegistryError, match="not initialised"):
            read()


# -- auth certificates ----------------------------------------------------------------------


def test_another_auth_certificate_is_audited(populated: RegistryStore, pki: Pki) -> None:
    rotated = pki.ca.issue_auth_certificate(make_csr(generate_private_key(), "x"), SERVER, now=NOW)
    populated.add_auth_certificate(SERVER, pem(rotated), audit=AUDIT)
    entry = populated.audit_trail()[-1]
    assert (entry.actor, entry.operation, entry.target) == ("ana", "add_auth_certificate", SERVER.slash())
    assert entry.before == {"auth_certificate_fingerprints": [fingerprint(pki.auth_cert)]}
    assert entry.after == {
        "auth_certificate_fingerprints": [fingerprint(pki.auth_cert), fingerprint(rotated)]
    }

    before = populated.counts()
    with pytest.raises(RegistryConflict, match="is already registered for a security server"):
        populated.add_auth_certificate(SERVER, pem(rotated))
    with pytest.raises(RegistryNotFound, match="is not a registered security server"):
        populated.add_auth_certificate(f"{PADERBORN}/ss9", pem(rotated))
    assert populated.counts() == before


# -- maintenance mode -----------------------------------------------------------------------


def test_maintenance_mode_is_stored_audited_and_idempotent(
    populated: RegistryStore, database_url: str
) -> None:
    assert populated.maintenance_modes() == {SERVER: False}
    assert populated.set_maintenance_mode(SERVER.slash(), True, audit=AUDIT) is True
    entry = populated.audit_trail()[-1]
    assert (entry.actor, entry.operation, entry.target, entry.before, entry.after) == (
        "ana",
        "set_maintenance_mode",
        SERVER.slash(),
        {"maintenance_mode": False},
        {"maintenance_mode": True},
    )
    counts = populated.counts()
    assert populated.set_maintenance_mode(SERVER, True) is False  # already on: nothing written
    assert populated.counts() == counts
    populated.close()
    with RegistryStore.open(database_url) as reopened:
        assert reopened.maintenance_modes() == {SERVER: True}
        assert reopened.set_maintenance_mode(SERVER, False, audit=AuditContext("ben", NOW + dt.timedelta(1)))
        assert reopened.maintenance_modes() == {SERVER: False}
        assert [(e.actor, e.after) for e in reopened.audit_trail()[-2:]] == [
            ("ana", {"maintenance_mode": True}),
            ("ben", {"maintenance_mode": False}),
        ]


@pytest.mark.parametrize(
    ("server", "enabled", "error", "message"),
    [
        (
            f"{PADERBORN}/ss9",
            True,
            RegistryNotFound,
            "SERVER:NRW/MUN/05774032/ss9 is not a registered security server",
        ),
        ("NRW/MUN/1/ss1", True, RegistryNotFound, "MEMBER:NRW/MUN/1 is not a registered member"),
        (PADERBORN, True, RegistryError, "must have 4 parts"),
        (f"{PADERBORN}/ss1", "yes", RegistryError, "maintenance mode must be true or false, got 'yes'"),
        (f"{PADERBORN}/ss1", 1, RegistryError, "maintenance mode must be true or false, got 1"),
    ],
)
def test_maintenance_mode_refusals_write_nothing(
    populated: RegistryStore, server: str, enabled: object, error: type[RegistryError], message: str
) -> None:
    before = populated.counts()
    with pytest.raises(RegistryError) as info:
        populated.set_maintenance_mode(server, enabled)  # type: ignore[arg-type]
    assert type(info.value) is error and message in str(info.value)
    assert populated.counts() == before
    assert populated.maintenance_modes() == {SERVER: False}
