"""Global configuration against The Update Framework's attacks, one test each.

In the manner of python-tuf's ``tests/test_trusted_metadata_set.py``: start from a good
signed document, change one thing, and expect the one specific error.  These are the
pure checks; fetching, persisting and mirrors are in ``tests/unit/gateway/test_tuf_attacks.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.canonical import canonical_json
from tests.unit.trust.helpers import NOW, Pki
from tests.unit.trust.test_globalconf import b64url, make_conf
from trust.anchor import Anchor, AnchorKey, KeySet
from trust.errors import (
    AnchorInvalid,
    GlobalConfError,
    GlobalConfExpired,
    GlobalConfInvalid,
    GlobalConfRollback,
)
from trust.globalconf import (
    GLOBALCONF_TYPE,
    GlobalConf,
    GlobalConfThresholdNotMet,
    rotated_anchor,
    sign_global_conf,
    sign_global_conf_multi,
    verify_global_conf,
)
from trust.keys import generate_private_key, public_key_pem

# The trusted set: a, b, c with threshold 2.  The next set: d, e with threshold 2.
KEYS = {kid: generate_private_key() for kid in ("a", "b", "c", "d", "e")}
ATTACKER = generate_private_key()
URLS = ("https://registry.example/", "https://mirror.example/")


def key_set(*kids: str, threshold: int) -> KeySet:
    return KeySet(tuple(AnchorKey(kid, public_key_pem(KEYS[kid])) for kid in kids), threshold)


OLD = key_set("a", "b", "c", threshold=2)
NEW = key_set("d", "e", threshold=2)


def anchor(keys: KeySet = OLD) -> Anchor:
    return Anchor("NRW", URLS, keys.keys, NOW - dt.timedelta(days=1), keys.threshold)


def signed(conf: GlobalConf, *kids: str) -> bytes:
    return sign_global_conf_multi(conf, [(KEYS[kid], kid) for kid in kids])


def envelope(document: bytes) -> dict[str, Any]:
    obj = json.loads(document)
    assert isinstance(obj, dict)
    return obj


@pytest.fixture(scope="module")
def conf(pki: Pki) -> GlobalConf:
    return make_conf(pki)


@pytest.fixture(scope="module")
def good(conf: GlobalConf) -> bytes:
    return signed(conf, "a", "b")


# -- the good cases ------------------------------------------------------------------------


def test_good_document_two_of_three(conf: GlobalConf, good: bytes) -> None:
    assert verify_global_conf(good, anchor(), NOW) == conf
    obj = envelope(good)
    assert set(obj) == {"payload", "signatures"} and len(obj["signatures"]) == 2
    assert all(set(sig) == {"protected", "signature"} for sig in obj["signatures"])


def test_all_three_keys_verify_too(conf: GlobalConf) -> None:
    assert verify_global_conf(signed(conf, "a", "b", "c"), anchor(), NOW) == conf


def test_compact_single_signature_with_threshold_one(conf: GlobalConf) -> None:
    document = sign_global_conf(conf, KEYS["a"], "a")
    one = Anchor("NRW", URLS, OLD.keys, NOW)
    assert one.threshold == 1
    assert verify_global_conf(document, one, NOW) == conf


def test_json_form_with_one_signature_and_threshold_one(conf: GlobalConf) -> None:
    assert verify_global_conf(signed(conf, "c"), Anchor("NRW", URLS, OLD.keys, NOW), NOW) == conf


def test_anchor_written_before_thresholds_reads_as_threshold_one() -> None:
    legacy = Anchor("NRW", URLS, OLD.keys, NOW).to_json()
    assert b"threshold" not in legacy
    assert Anchor.from_json(legacy).threshold == 1
    two = anchor()
    assert json.loads(two.to_json())["threshold"] == 2
    assert Anchor.from_json(two.to_json()) == two


@pytest.mark.parametrize("threshold", [0, 4, True, "2"])
def test_anchor_threshold_must_be_reachable(threshold: Any) -> None:
    with pytest.raises(ValueError, match="threshold"):
        Anchor("NRW", URLS, OLD.keys, NOW, threshold)
    data = json.loads(anchor().to_json())
    data["threshold"] = threshold
    with pytest.raises(AnchorInvalid, match="threshold"):
        Anchor.from_json(canonical_json(data))


def test_payload_without_key_set_stays_version_2(conf: GlobalConf) -> None:
    assert json.loads(conf.to_json())["version"] == 2
    announcing = dataclasses.replace(conf, key_set=NEW)
    data = json.loads(announcing.to_json())
    assert data["version"] == 3 and data["signing_keys"]["threshold"] == 2
    assert GlobalConf.from_json(announcing.to_json()) == announcing


# -- threshold not met ---------------------------------------------------------------------


def test_one_of_two_required_signatures_missing(conf: GlobalConf) -> None:
    with pytest.raises(GlobalConfThresholdNotMet, match="by 1 distinct anchor key"):
        verify_global_conf(signed(conf, "a"), anchor(), NOW)


def test_compact_single_signature_below_threshold(conf: GlobalConf) -> None:
    with pytest.raises(GlobalConfThresholdNotMet, match="2 required"):
        verify_global_conf(sign_global_conf(conf, KEYS["a"], "a"), anchor(), NOW)


def test_the_same_signature_twice_counts_once(good: bytes) -> None:
    obj = envelope(good)
    obj["signatures"] = [obj["signatures"][0], obj["signatures"][0]]
    with pytest.raises(GlobalConfThresholdNotMet, match="by 1 distinct anchor key"):
        verify_global_conf(canonical_json(obj), anchor(), NOW)


def test_two_different_signatures_by_the_same_key_count_once(conf: GlobalConf) -> None:
    # ECDSA signatures are randomised: two signings by "a" differ, and still count once.
    first, second = envelope(signed(conf, "a")), envelope(signed(conf, "a"))
    assert first["signatures"] != second["signatures"]
    first["signatures"] += second["signatures"]
    with pytest.raises(GlobalConfThresholdNotMet, match="by 1 distinct anchor key"):
        verify_global_conf(canonical_json(first), anchor(), NOW)


def test_unknown_key_ids_are_ignored_when_the_threshold_is_met(conf: GlobalConf) -> None:
    obj = envelope(signed(conf, "a", "b"))
    obj["signatures"] += envelope(sign_global_conf_multi(conf, [(ATTACKER, "z")]))["signatures"]
    assert verify_global_conf(canonical_json(obj), anchor(), NOW) == conf


def test_unknown_key_ids_do_not_make_up_the_threshold(conf: GlobalConf) -> None:
    document = sign_global_conf_multi(conf, [(KEYS["a"], "a"), (ATTACKER, "z")])
    with pytest.raises(GlobalConfThresholdNotMet, match="key 'z', which the anchor does not name"):
        verify_global_conf(document, anchor(), NOW)


# -- wrong key, tampering --------------------------------------------------------------------


def test_wrong_key_under_a_trusted_key_id(conf: GlobalConf) -> None:
    document = sign_global_conf_multi(conf, [(KEYS["a"], "a"), (ATTACKER, "b")])
    with pytest.raises(GlobalConfThresholdNotMet, match="signature by key 'b' does not verify"):
        verify_global_conf(document, anchor(), NOW)


def test_trusted_key_of_another_instance_set(conf: GlobalConf) -> None:
    # d and e are real registry keys, but not (yet) trusted.
    with pytest.raises(GlobalConfThresholdNotMet, match="key 'd', which the anchor does not name"):
        verify_global_conf(signed(conf, "d", "e"), anchor(), NOW)


def test_payload_swapped_under_good_signatures(pki: Pki, good: bytes) -> None:
    obj = envelope(good)
    richer = make_conf(pki, expires_at=NOW + dt.timedelta(days=365))
    obj["payload"] = b64url(richer.to_json())
    with pytest.raises(GlobalConfThresholdNotMet, match="signature by key 'a' does not verify"):
        verify_global_conf(canonical_json(obj), anchor(), NOW)


def test_unprotected_header_is_refused(good: bytes) -> None:
    obj = envelope(good)
    obj["signatures"][0]["header"] = {"kid": "c"}
    with pytest.raises(GlobalConfInvalid, match="unexpected keys"):
        verify_global_conf(canonical_json(obj), anchor(), NOW)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"alg": "none"}, "'none' is refused"),
        ({"typ": "JWT"}, "JWS type"),
        ({"jwk": {"kty": "EC"}}, "unexpected parameters"),
    ],
)
def test_one_bad_protected_header_refuses_the_document(
    good: bytes, change: dict[str, Any], match: str
) -> None:
    obj = envelope(good)
    header = {"alg": "ES256", "kid": "c", "typ": GLOBALCONF_TYPE, **change}
    obj["signatures"].append({"protected": b64url(json.dumps(header).encode()), "signature": "AA"})
    with pytest.raises(GlobalConfInvalid, match=match):
        verify_global_conf(canonical_json(obj), anchor(), NOW)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda obj: obj.pop("signatures"), "lacks"),
        (lambda obj: obj.update(signatures=[]), "1 to 32 signatures"),
        (lambda obj: obj.update(payload=""), "non-empty string"),
        (lambda obj: obj["signatures"][0].update(signature=""), "non-empty strings"),
    ],
)
def test_malformed_envelopes(good: bytes, edit: Any, match: str) -> None:
    obj = envelope(good)
    edit(obj)
    with pytest.raises(GlobalConfInvalid, match=match):
        verify_global_conf(canonical_json(obj), anchor(), NOW)


# -- rollback, freeze, endless data ----------------------------------------------------------


def test_rollback_validly_signed_and_unexpired(conf: GlobalConf) -> None:
    older = signed(dataclasses.replace(conf, serial=6), "a", "b")
    assert verify_global_conf(older, anchor(), NOW).serial == 6
    with pytest.raises(GlobalConfRollback, match="serial 6 is older than the accepted serial 7"):
        verify_global_conf(older, anchor(), NOW, min_serial=7)


def test_freeze_expired_document(conf: GlobalConf, good: bytes) -> None:
    with pytest.raises(GlobalConfExpired, match="expired"):
        verify_global_conf(good, anchor(), conf.expires_at)


def test_endless_data_refused_before_parsing(good: bytes) -> None:
    with pytest.raises(GlobalConfInvalid, match=f"more than {len(good) - 1}"):
        verify_global_conf(good, anchor(), NOW, max_size=len(good) - 1)
    # Not even JSON: the size is what is reported, nothing was parsed.
    with pytest.raises(GlobalConfInvalid, match="more than 1024"):
        verify_global_conf(b"{" * 2048, anchor(), NOW, max_size=1024)


# -- key rotation ----------------------------------------------------------------------------


def announcing(conf: GlobalConf, keys: KeySet = NEW, serial: int = 8) -> GlobalConf:
    return dataclasses.replace(conf, serial=serial, key_set=keys)


def test_rotation_signed_by_old_and_new_thresholds_is_adopted(conf: GlobalConf) -> None:
    document = signed(announcing(conf), "a", "b", "d", "e")
    accepted = verify_global_conf(document, anchor(), NOW, min_serial=7)
    rotated = rotated_anchor(anchor(), accepted)
    assert rotated.key_set == NEW and rotated.registry_urls == URLS and rotated.instance == "NRW"
    # From now on the old keys alone are refused, the new ones accepted.
    later = dataclasses.replace(conf, serial=9)
    with pytest.raises(GlobalConfThresholdNotMet, match="key 'a', which the anchor does not name"):
        verify_global_conf(signed(later, "a", "b", "c"), rotated, NOW, min_serial=8)
    assert verify_global_conf(signed(later, "d", "e"), rotated, NOW, min_serial=8).serial == 9


def test_rotation_signed_only_by_the_new_keys_is_refused(conf: GlobalConf) -> None:
    with pytest.raises(GlobalConfThresholdNotMet, match="distinct anchor key"):
        verify_global_conf(signed(announcing(conf), "d", "e"), anchor(), NOW)


def test_rotation_signed_by_one_old_key_is_refused(conf: GlobalConf) -> None:
    with pytest.raises(GlobalConfThresholdNotMet, match="by 1 distinct anchor key"):
        verify_global_conf(signed(announcing(conf), "a", "d", "e"), anchor(), NOW)


def test_rotation_without_the_new_threshold_is_refused(conf: GlobalConf) -> None:
    with pytest.raises(GlobalConfThresholdNotMet, match="by 1 distinct new key"):
        verify_global_conf(signed(announcing(conf), "a", "b", "d"), anchor(), NOW)


def test_rotation_to_keys_nobody_holds_is_refused(conf: GlobalConf) -> None:
    # An attacker holding old keys cannot hand the anchor to a key set that never signed.
    stranger = KeySet((AnchorKey("s", public_key_pem(ATTACKER)),), 1)
    with pytest.raises(GlobalConfThresholdNotMet, match="by 0 distinct new key"):
        verify_global_conf(signed(announcing(conf, stranger), "a", "b"), anchor(), NOW)


def test_announcing_the_current_set_changes_nothing(conf: GlobalConf) -> None:
    same = verify_global_conf(signed(announcing(conf, OLD), "a", "b"), anchor(), NOW)
    assert rotated_anchor(anchor(), same) == anchor()
    assert rotated_anchor(anchor(), conf) == anchor()


def test_rotation_can_lower_the_threshold_only_when_the_old_threshold_agrees(conf: GlobalConf) -> None:
    one_of_two = key_set("d", "e", threshold=1)
    accepted = verify_global_conf(signed(announcing(conf, one_of_two), "b", "c", "e"), anchor(), NOW)
    assert rotated_anchor(anchor(), accepted).threshold == 1


def test_signing_with_duplicate_key_ids_is_refused(conf: GlobalConf) -> None:
    with pytest.raises(ValueError, match="unique"):
        sign_global_conf_multi(conf, [(KEYS["a"], "a"), (KEYS["b"], "a")])


# -- anything else -----------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
_b64 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=60)
_header = st.fixed_dictionaries(
    {"alg": st.sampled_from(["ES256", "none"]), "kid": st.sampled_from(["a", "b", "z"])},
    optional={"typ": st.just(GLOBALCONF_TYPE)},
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "protected": _header.map(lambda h: b64url(json.dumps(h).encode())) | _b64,
                "signature": _b64,
            },
            optional={"header": _json},
        ),
        max_size=4,
    )
    | _json,
    _b64 | _json,
)
def test_arbitrary_json_envelopes_only_ever_raise_globalconf_errors(signatures: Any, payload: Any) -> None:
    document = canonical_json({"payload": payload, "signatures": signatures})
    with pytest.raises(GlobalConfError):
        verify_global_conf(document, anchor(), NOW)
