"""Maintenance mode of this security server, announced to the registry.

The administrator turns maintenance mode on or off; the registry takes it from a
request signed with this server's auth key (:meth:`RegistrationClient.maintenance`)
and publishes the flag in the next global configuration, so that other servers and
their administrators see it.  Used by ``xweg gateway maintenance on|off`` and meant for
the management API; what traffic a server in maintenance still takes is left to others.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.config import GatewayConfig
from gateway.registration import RegistrationClient, RegistrationFailed

__all__ = ["announce_maintenance", "RegistrationFailed"]


async def announce_maintenance(config: GatewayConfig, enabled: bool, *, now: dt.datetime) -> dict[str, Any]:
    """Tell the registry this server enters (``enabled``) or leaves maintenance mode.

    Returns the registry's answer: ``{"id", "kind": "maintenance", "server",
    "maintenance_mode", "changed", "status": "applied"}``.  Raises
    :class:`RegistrationFailed` when the request could not be made or the registry refused
    it (its ``kind`` is the registry's refusal type, e.g. ``stale`` or ``replayed``).
    """
    async with RegistrationClient(config) as registry:
        answer = await registry.maintenance(enabled, now)
    return answer.request
