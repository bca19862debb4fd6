"""The configuration anchor: the small file, distributed out of band, that roots trust in the registry.

It names the instance, where the registry publishes global configuration, and the
public keys allowed to sign it.  A security server receives it once, by a channel the
operators trust, and verifies every downloaded global configuration against it
(:func:`trust.globalconf.verify_global_conf`).  The file is canonical JSON::

    {"format": "xweg-anchor", "version": 1, "instance": "NRW",
     "registry_urls": ["https://registry.example/"],
     "signing_keys": [{"key_id": "2025-1", "public_key_pem": "-----BEGIN PUBLIC KEY-----..."}],
     "generated_at": "2025-01-01T00:00:00Z"}

An optional ``"threshold": k`` (default 1, written only when it is not 1, so anchors
written before it existed read and write unchanged) asks for valid signatures by ``k``
distinct signing keys.  :class:`KeySet` is the keys-and-threshold pair that global
configuration may announce to rotate the keys (:func:`rotated_anchor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.canonical import canonical_json
from core.clock import require_utc
from trust._encoding import check_instance, check_text, format_time, loads_object, parse_time, require_keys
from trust.errors import AnchorInvalid
from trust.keys import write_atomic

__all__ = [
    "AnchorKey",
    "KeySet",
    "Anchor",
    "save_anchor",
    "load_anchor",
    "ANCHOR_FORMAT",
    "MAX_ANCHOR_BYTES",
    "MAX_SIGNING_KEYS",
]

ANCHOR_FORMAT = "xweg-anchor"
_VERSION = 1
#: Bound on an anchor file: a handful of keys and URLs.
MAX_ANCHOR_BYTES = 256 * 1024
#: Bound on the number of signing keys and registry URLs one anchor may name.
_MAX_ENTRIES = 32
MAX_SIGNING_KEYS = _MAX_ENTRIES


@dataclass(frozen=True)
class AnchorKey:
    """A key that may sign global configuration, named by the ``kid`` the registry puts in its JWS."""

    key_id: str
    public_key_pem: str
    _public_key: ec.EllipticCurvePublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_text(self.key_id, "key_id", 128)
        if not isinstance(self.public_key_pem, str):
            raise ValueError("public_key_pem must be a string")
        try:
            key = serialization.load_pem_public_key(self.public_key_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValueError(f"signing key {self.key_id!r} is not a PEM public key") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"signing key {self.key_id!r} must be an EC P-256 key (ES256)")
        object.__setattr__(self, "_public_key", key)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def to_dict(self) -> dict[str, str]:
        return {"key_id": self.key_id, "public_key_pem": self.public_key_pem}

    @classmethod
    def from_dict(cls, obj: object) -> AnchorKey:
        data = require_keys(obj, {"key_id", "public_key_pem"}, "signing key")
        return cls(data["key_id"], data["public_key_pem"])


def _check_keys(keys: object, threshold: object) -> None:
    if not isinstance(keys, tuple) or not 1 <= len(keys) <= _MAX_ENTRIES:
        raise ValueError(f"a key set names 1 to {_MAX_ENTRIES} signing keys, as a tuple")
    if not all(isinstance(key, AnchorKey) for key in keys):
        raise ValueError("signing_keys must be AnchorKey objects")
    ids = [key.key_id for key in keys]
    if len(set(ids)) != len(ids):
        raise ValueError(f"signing key ids must be unique, got {ids}")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= len(keys):
        raise ValueError(
            f"threshold must be an integer from 1 to {len(keys)} (the number of keys), got {threshold!r}"
        )


@dataclass(frozen=True)
class KeySet:
    """Signing keys and how many of them (distinct) must sign a global configuration."""

    keys: tuple[AnchorKey, ...]
    threshold: int = 1

    def __post_init__(self) -> None:
        _check_keys(self.keys, self.threshold)

    def public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {key.key_id: key.public_key for key in self.keys}

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "keys": [key.to_dict() for key in self.keys]}

    @classmethod
    def from_dict(cls, obj: object) -> KeySet:
        data = require_keys(obj, {"threshold", "keys"}, "key set")
        keys = data["keys"]
        if not isinstance(keys, list) or len(keys) > _MAX_ENTRIES:
            raise ValueError(f"a key set's keys must be a list of at most {_MAX_ENTRIES}")
        return cls(tuple(AnchorKey.from_dict(entry) for entry in keys), data["threshold"])


def _check_url(url: object) -> str:
    text = check_text(url, "registry URL", 2048)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"registry URL {text!r} must be an absolute http(s) URL")
    return text


@dataclass(frozen=True)
class Anchor:
    """What a security server trusts a priori about its instance's registry."""

    instance: str
    registry_urls: tuple[str, ...]
    signing_keys: tuple[AnchorKey, ...]
    generated_at: datetime
    threshold: int = 1

    def __post_init__(self) -> None:
        check_instance(self.instance)
        if not isinstance(self.registry_urls, tuple) or not 1 <= len(self.registry_urls) <= _MAX_ENTRIES:
            raise ValueError(f"an anchor names 1 to {_MAX_ENTRIES} registry URLs, as a tuple")
        for url in self.registry_urls:
            _check_url(url)
        _check_keys(self.signing_keys, self.threshold)
        require_utc(self.generated_at, "generated_at")

    def public_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The public key named ``key_id``, or None when the anchor does not trust such a key."""
        for key in self.signing_keys:
            if key.key_id == key_id:
                return key.public_key
        return None

    @property
    def key_set(self) -> KeySet:
        return KeySet(self.signing_keys, self.threshold)

    def with_key_set(self, key_set: KeySet, generated_at: datetime) -> Anchor:
        """This anchor with its signing keys and threshold replaced (a key rotation)."""
        return Anchor(self.instance, self.registry_urls, key_set.keys, generated_at, key_set.threshold)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": ANCHOR_FORMAT,
            "version": _VERSION,
            "instance": self.instance,
            "registry_urls": list(self.registry_urls),
            "signing_keys": [key.to_dict() for key in self.signing_keys],
            "generated_at": format_time(self.generated_at),
        }
        if self.threshold != 1:
            data["threshold"] = self.threshold
        return data

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes) -> Anchor:
        """Parse an anchor file; anything malformed raises :class:`AnchorInvalid`."""
        if not isinstance(data, bytes):
            raise AnchorInvalid("an anchor must be given as bytes")
        if len(data) > MAX_ANCHOR_BYTES:
            raise AnchorInvalid(f"anchor is larger than {MAX_ANCHOR_BYTES} bytes")
        try:
            # Anchors written before thresholds existed have none: they mean 1.
            obj = require_keys(
                loads_object(data, "anchor"),
                {"format", "version", "instance", "registry_urls", "signing_keys", "generated_at"},
                "anchor",
                optional=frozenset({"threshold"}),
            )
            if obj["format"] != ANCHOR_FORMAT or obj["version"] != _VERSION:
                raise ValueError(
                    f"anchor format {obj['format']!r} version {obj['version']!r} is not "
                    f"{ANCHOR_FORMAT!r} version {_VERSION}"
                )
            urls, keys = obj["registry_urls"], obj["signing_keys"]
            if not isinstance(urls, list) or not isinstance(keys, list):
                raise ValueError("registry_urls and signing_keys must be lists")
            signing_keys = []
            for entry in keys:
                entry = require_keys(entry, {"key_id", "public_key_pem"}, "anchor signing key")
                signing_keys.append(AnchorKey(entry["key_id"], entry["public_key_pem"]))
            threshold = obj.get("threshold", 1)
            return cls(
                instance=obj["instance"],
                registry_urls=tuple(urls),
                signing_keys=tuple(signing_keys),
                generated_at=parse_time(obj["generated_at"], "generated_at"),
                threshold=threshold,
            )
        except (ValueError, TypeError) as exc:
            raise AnchorInvalid(f"malformed anchor: {exc}") from exc


def save_anchor(anchor: Anchor, path: Path) -> None:
    write_atomic(Path(path), anchor.to_json())


def load_anchor(path: Path) -> Anchor:
    """Read and parse an anchor file; raises :class:`AnchorInvalid` when it is malformed."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_ANCHOR_BYTES + 1)
    except OSError as exc:
        raise AnchorInvalid(f"cannot read anchor {path}: {exc}") from exc
    try:
        return Anchor.from_json(data)
    except AnchorInvalid as exc:
        raise AnchorInvalid(f"{path}: {exc}") from exc
