"""The configuration anchor: the small file, distributed out of band, that roots trust in the registry.

It names the instance, where the registry publishes global configuration, and the
public keys allowed to sign it.  A security server receives it once, by a channel the
operators trust, and verifies every downloaded global configuration against it
(:func:`trust.globalconf.verify_global_conf`).  The file is canonical JSON::

    {"format": "xweg-anchor", "version": 1, "instance": "NRW",
     "registry_urls": ["https://registry.example/"],
     "signing_keys": [{"key_id": "2025-1", "public_key_pem": "-----BEGIN PUBLIC KEY-----..."}],
     "generated_at": "2025-01-01T00:00:00Z"}
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

__all__ = ["AnchorKey", "Anchor", "save_anchor", "load_anchor", "ANCHOR_FORMAT", "MAX_ANCHOR_BYTES"]

ANCHOR_FORMAT = "xweg-anchor"
_VERSION = 1
#: Bound on an anchor file: a handful of keys and URLs.
MAX_ANCHOR_BYTES = 256 * 1024
#: Bound on the number of signing keys and registry URLs one anchor may name.
_MAX_ENTRIES = 32


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

    def __post_init__(self) -> None:
        check_instance(self.instance)
        if not isinstance(self.registry_urls, tuple) or not 1 <= len(self.registry_urls) <= _MAX_ENTRIES:
            raise ValueError(f"an anchor names 1 to {_MAX_ENTRIES} registry URLs, as a tuple")
        for url in self.registry_urls:
            _check_url(url)
        if not isinstance(self.signing_keys, tuple) or not 1 <= len(self.signing_keys) <= _MAX_ENTRIES:
            raise ValueError(f"an anchor names 1 to {_MAX_ENTRIES} signing keys, as a tuple")
        if not all(isinstance(key, AnchorKey) for key in self.signing_keys):
            raise ValueError("signing_keys must be AnchorKey objects")
        ids = [key.key_id for key in self.signing_keys]
        if len(set(ids)) != len(ids):
            raise ValueError(f"an anchor's signing key ids must be unique, got {ids}")
        require_utc(self.generated_at, "generated_at")

    def public_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The public key named ``key_id``, or None when the anchor does not trust such a key."""
        for key in self.signing_keys:
            if key.key_id == key_id:
                return key.public_key
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ANCHOR_FORMAT,
            "version": _VERSION,
            "instance": self.instance,
            "registry_urls": list(self.registry_urls),
            "signing_keys": [
                {"key_id": key.key_id, "public_key_pem": key.public_key_pem} for key in self.signing_keys
            ],
            "generated_at": format_time(self.generated_at),
        }

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
            obj = require_keys(
                loads_object(data, "anchor"),
                {"format", "version", "instance", "registry_urls", "signing_keys", "generated_at"},
                "anchor",
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
            return cls(
                instance=obj["instance"],
                registry_urls=tuple(urls),
                signing_keys=tuple(signing_keys),
                generated_at=parse_time(obj["generated_at"], "generated_at"),
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
