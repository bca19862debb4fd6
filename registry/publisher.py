"""Publication: turn a federation definition into a signed global configuration with a fresh serial.

The serial is what lets security servers refuse replays of older documents, so it must
grow strictly, also across restarts and a lost state file: :class:`SerialStore` takes
``max(last + 1, unix time)`` and makes it durable (fsync, atomic rename) before the
document that carries it is built, let alone served.

With one signing key the document is a compact JWS, as security servers have always
read it; with several it is the general JWS JSON serialization, one signature per key
(see :mod:`trust.globalconf`).  A :class:`~trust.anchor.KeySet` to announce (a key
rotation) goes into every document's payload; sign with the old keys *and* the new
ones while it is announced, or security servers will not adopt it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import require_utc
from registry.federation import FederationDefinition
from trust.anchor import Anchor, AnchorKey, KeySet
from trust.globalconf import GlobalConf, sign_global_conf, sign_global_conf_multi
from trust.keys import public_key_pem, write_atomic

__all__ = ["build_global_conf", "SerialStore", "SerialStoreError", "Publication", "Publisher", "make_anchor"]


def build_global_conf(
    definition: FederationDefinition,
    *,
    serial: int,
    now: datetime,
    validity: timedelta,
    key_set: KeySet | None = None,
) -> GlobalConf:
    """The configuration ``definition`` describes, generated at ``now`` and valid for ``validity``."""
    require_utc(now, "now")
    if validity <= timedelta(0):
        raise ValueError("validity must be positive")
    return GlobalConf(
        instance=definition.instance,
        serial=serial,
        generated_at=now,
        expires_at=now + validity,
        members=definition.members,
        security_servers=definition.security_servers,
        global_groups=definition.global_groups,
        approved_cas=definition.approved_cas,
        approved_tsas=definition.approved_tsas,
        ocsp_freshness_s=definition.ocsp_freshness_s,
        key_set=key_set,
        services=definition.services,
    )


class SerialStoreError(RuntimeError):
    """The serial state file is unreadable; starting from scratch could reuse serials, so we stop."""


class SerialStore:
    """A strictly increasing serial, persisted in one small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last: int | None = None

    def _read(self) -> int:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise SerialStoreError(f"cannot read serial state {self.path}: {exc}") from exc
        try:
            value = json.loads(data)["serial"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SerialStoreError(f"serial state {self.path} is corrupt: {exc}") from exc
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SerialStoreError(f"serial state {self.path} holds an invalid serial {value!r}")
        return value

    def last(self) -> int:
        """The last serial handed out (0 if none)."""
        if self._last is None:
            self._last = self._read()
        return self._last

    def next_serial(self, now: datetime) -> int:
        """A serial larger than any before it, durable on disk when this returns."""
        require_utc(now, "now")
        # Unix time as a floor keeps serials growing even if the state file is lost,
        # as long as the clock does not run backwards by more than the gap.
        serial = max(self.last() + 1, int(now.timestamp()))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"serial": serial}).encode("ascii"))
        self._last = serial
        return serial


@dataclass(frozen=True)
class Publication:
    """One published global configuration: the parsed object and the signed bytes served."""

    conf: GlobalConf
    document: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.conf, GlobalConf) or not isinstance(self.document, bytes) or not self.document:
            raise ValueError("a publication needs a GlobalConf and its signed document")


class Publisher:
    """Builds and signs documents; owns the serial store and the signing keys.

    ``key``/``key_id`` is the first signing key, ``more_keys`` any others; ``key_set``
    is announced in every document (a key rotation), when given.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        serials: SerialStore,
        validity: timedelta,
        *,
        more_keys: Sequence[tuple[ec.EllipticCurvePrivateKey, str]] = (),
        key_set: KeySet | None = None,
    ) -> None:
        if validity <= timedelta(0):
            raise ValueError("validity must be positive")
        if key_set is not None and not isinstance(key_set, KeySet):
            raise ValueError("key_set must be a KeySet")
        self.key = key
        self.key_id = key_id
        self.keys: tuple[tuple[ec.EllipticCurvePrivateKey, str], ...] = ((key, key_id), *more_keys)
        ids = [kid for _, kid in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError(f"signing key ids must be unique, got {ids}")
        self.key_set = key_set
        self.serials = serials
        self.validity = validity
        # Regeneration runs in worker threads; one serial must never be handed out twice.
        self._lock = threading.Lock()

    def publish(self, definition: FederationDefinition, now: datetime) -> Publication:
        """A new signed document for ``definition`` at ``now``, with a fresh durable serial."""
        with self._lock:
            serial = self.serials.next_serial(now)
            conf = build_global_conf(
                definition, serial=serial, now=now, validity=self.validity, key_set=self.key_set
            )
            if len(self.keys) == 1:
                return Publication(conf, sign_global_conf(conf, self.key, self.key_id))
            return Publication(conf, sign_global_conf_multi(conf, self.keys))


def make_anchor(
    instance: str,
    registry_urls: Sequence[str],
    keys: Sequence[tuple[str, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey]],
    now: datetime,
    *,
    threshold: int = 1,
) -> Anchor:
    """The anchor security servers need to trust this registry: instance, URLs, signing keys, threshold."""
    return Anchor(
        instance=instance,
        registry_urls=tuple(registry_urls),
        signing_keys=tuple(AnchorKey(key_id, public_key_pem(key)) for key_id, key in keys),
        generated_at=now,
        threshold=threshold,
    )
