"""The trusted global configuration: pure decisions about which document to believe.

Takes bytes and a time, returns a verified :class:`GlobalConf` or raises; the
fetching, persisting and scheduling live in :mod:`gateway.confclient.updater`.

The anchor held here is the key set trusted *now*: adopting a configuration that
announces a new key set (verified by the threshold of both sets) replaces it, so later
documents signed only by the old keys are refused.
"""

from __future__ import annotations

import datetime as dt

from trust.anchor import Anchor
from trust.globalconf import GlobalConf, rotated_anchor, verify_global_conf

__all__ = ["TrustedGlobalConf"]


class TrustedGlobalConf:
    """Holds the newest verified global configuration and the trusted keys; the serial never goes back."""

    def __init__(self, anchor: Anchor, *, min_serial: int | None = None) -> None:
        self.anchor = anchor
        self._min_serial = min_serial
        self._conf: GlobalConf | None = None
        self._document: bytes | None = None

    @property
    def min_serial(self) -> int | None:
        return self._conf.serial if self._conf is not None else self._min_serial

    @property
    def latest(self) -> GlobalConf | None:
        """The newest verified configuration, expired or not."""
        return self._conf

    @property
    def document(self) -> bytes | None:
        return self._document

    def check(self, document: bytes, now: dt.datetime) -> GlobalConf:
        """Verify ``document`` against the anchor without adopting it; raises trust's GlobalConfError."""
        return verify_global_conf(document, self.anchor, now, min_serial=self.min_serial)

    def next_anchor(self, conf: GlobalConf) -> Anchor:
        """The anchor to trust once ``conf`` (returned by :meth:`check`) is adopted."""
        return rotated_anchor(self.anchor, conf)

    def adopt(self, document: bytes, conf: GlobalConf) -> None:
        """Swap in a configuration that :meth:`check` returned for ``document``, and its key set."""
        if self.min_serial is not None and conf.serial < self.min_serial:
            raise ValueError("refusing to adopt a configuration older than the current one")
        self.anchor = self.next_anchor(conf)
        self._conf = conf
        self._document = document

    def update(self, document: bytes, now: dt.datetime) -> GlobalConf:
        """Verify ``document`` and adopt it at once (for documents already persisted)."""
        conf = self.check(document, now)
        self.adopt(document, conf)
        return conf

    def current(self, now: dt.datetime) -> GlobalConf | None:
        """The configuration to act on, or None when there is none or it has expired."""
        if self._conf is None or self._conf.is_expired(now):
            return None
        return self._conf
