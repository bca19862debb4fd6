"""TrustedGlobalConf: which document to believe, decided from bytes and a time."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from gateway.confclient.trusted import TrustedGlobalConf
from tests.unit.gateway.conftest import KEY_ID, NOW, Federation
from trust.errors import GlobalConfExpired, GlobalConfInvalid, GlobalConfRollback


@pytest.fixture
def trusted(federation: Federation) -> TrustedGlobalConf:
    return TrustedGlobalConf(federation.anchor())


def flip(document: bytes, index: int) -> bytes:
    """Change one base64url character of a compact JWS to another valid one."""
    data = bytearray(document)
    data[index] = ord("A") if data[index] != ord("A") else ord("B")
    return bytes(data)


def test_starts_empty(trusted: TrustedGlobalConf) -> None:
    assert trusted.latest is None
    assert trusted.document is None
    assert trusted.min_serial is None
    assert trusted.current(NOW) is None


def test_update_adopts_a_verified_document(trusted: TrustedGlobalConf, federation: Federation) -> None:
    document = federation.signed(3)
    conf = trusted.update(document, NOW)
    assert conf.serial == 3
    assert conf == federation.conf(3)
    assert trusted.latest is conf
    assert trusted.document == document
    assert trusted.min_serial == 3
    assert trusted.current(NOW) is conf


def test_newer_serial_replaces_the_older(trusted: TrustedGlobalConf, federation: Federation) -> None:
    trusted.update(federation.signed(3), NOW)
    newer = federation.signed(4)
    assert trusted.update(newer, NOW).serial == 4
    assert trusted.document == newer
    assert trusted.min_serial == 4


def test_same_serial_is_not_a_rollback(trusted: TrustedGlobalConf, federation: Federation) -> None:
    trusted.update(federation.signed(3), NOW)
    assert trusted.update(federation.signed(3), NOW).serial == 3


def test_lower_serial_is_a_rollback_and_keeps_the_previous(
    trusted: TrustedGlobalConf, federation: Federation
) -> None:
    good = federation.signed(5)
    trusted.update(good, NOW)
    with pytest.raises(GlobalConfRollback, match="serial 4 is older than the accepted serial 5"):
        trusted.update(federation.signed(4), NOW)
    assert trusted.latest is not None and trusted.latest.serial == 5
    assert trusted.document == good
    assert trusted.current(NOW) == federation.conf(5)


def test_min_serial_from_construction_is_respected(federation: Federation) -> None:
    trusted = TrustedGlobalConf(federation.anchor(), min_serial=7)
    assert trusted.min_serial == 7
    with pytest.raises(GlobalConfRollback, match="serial 6 is older than the accepted serial 7"):
        trusted.update(federation.signed(6), NOW)
    assert trusted.latest is None
    assert trusted.min_serial == 7
    assert trusted.update(federation.signed(7), NOW).serial == 7


def test_expired_document_is_refused_and_keeps_the_previous(
    trusted: TrustedGlobalConf, federation: Federation
) -> None:
    trusted.update(federation.signed(1), NOW)
    expired = federation.signed(
        2, generated_at=NOW - dt.timedelta(days=2), expires_at=NOW - dt.timedelta(seconds=1)
    )
    with pytest.raises(GlobalConfExpired, match="serial 2 expired at"):
        trusted.update(expired, NOW)
    assert trusted.latest is not None and trusted.latest.serial == 1


def test_document_expiring_exactly_now_is_expired(trusted: TrustedGlobalConf, federation: Federation) -> None:
    with pytest.raises(GlobalConfExpired):
        trusted.update(federation.signed(1, expires_at=NOW), NOW)
    assert trusted.latest is None


def test_current_returns_none_once_the_adopted_document_expires(
    trusted: TrustedGlobalConf, federation: Federation
) -> None:
    expires_at = NOW + dt.timedelta(hours=1)
    conf = trusted.update(federation.signed(1, expires_at=expires_at), NOW)
    assert trusted.current(expires_at - dt.timedelta(microseconds=1)) is conf
    assert trusted.current(expires_at) is None
    assert trusted.current(expires_at + dt.timedelta(days=1)) is None
    # still known, for diagnostics and the serial floor
    assert trusted.latest is conf
    assert trusted.min_serial == 1


def test_document_signed_by_a_key_the_anchor_does_not_name(
    trusted: TrustedGlobalConf, federation: Federation
) -> None:
    with pytest.raises(GlobalConfInvalid, match="key 'rogue', which the anchor does not name"):
        trusted.update(federation.signed(1, key=federation.rogue_key, key_id="rogue"), NOW)
    assert trusted.latest is None


def test_document_signed_by_another_key_under_the_anchors_key_id(
    trusted: TrustedGlobalConf, federation: Federation
) -> None:
    trusted.update(federation.signed(1), NOW)
    forged = federation.signed(2, key=federation.rogue_key, key_id=KEY_ID)
    with pytest.raises(GlobalConfInvalid, match=f"signature by key '{KEY_ID}' does not verify"):
        trusted.update(forged, NOW)
    assert trusted.latest is not None and trusted.latest.serial == 1


@pytest.mark.parametrize("part", [0, 1, 2], ids=["header", "payload", "signature"])
def test_flipped_byte_is_refused(trusted: TrustedGlobalConf, federation: Federation, part: int) -> None:
    good = federation.signed(1)
    header_len, payload_len = (len(p) for p in good.split(b".")[:2])
    start = [0, header_len + 1, header_len + payload_len + 2][part]
    with pytest.raises(GlobalConfInvalid):
        trusted.update(flip(good, start + 5), NOW)
    assert trusted.latest is None
    # the untouched document is fine
    assert trusted.update(good, NOW).serial == 1


def test_payload_with_a_raised_serial_does_not_verify(
    trusted: TrustedGlobalConf, federation: Federation
) -> None:
    header, payload, signature = federation.signed(1).split(b".")
    obj = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    obj["serial"] = 99
    forged_payload = base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")
    with pytest.raises(GlobalConfInvalid, match="does not verify"):
        trusted.update(b".".join((header, forged_payload, signature)), NOW)
    assert trusted.min_serial is None


def test_document_for_another_instance_is_refused(trusted: TrustedGlobalConf, federation: Federation) -> None:
    with pytest.raises(GlobalConfInvalid, match="instance 'EE', the anchor for 'NRW'"):
        trusted.update(federation.signed(1, instance="EE"), NOW)


@pytest.mark.parametrize("garbage", [b"", b"not a jws", b"a.b.c", b"\xff" * 10], ids=repr)
def test_garbage_is_invalid(trusted: TrustedGlobalConf, garbage: bytes) -> None:
    with pytest.raises(GlobalConfInvalid):
        trusted.update(garbage, NOW)
    assert trusted.latest is None


def test_refused_document_does_not_lower_the_floor_set_by_a_good_one(
    trusted: TrustedGlobalConf, federation: Federation
) -> None:
    trusted.update(federation.signed(5), NOW)
    with pytest.raises(GlobalConfInvalid):
        trusted.update(federation.signed(9, key=federation.rogue_key), NOW)
    with pytest.raises(GlobalConfRollback):
        trusted.update(federation.signed(4), NOW)
    assert trusted.min_serial == 5
