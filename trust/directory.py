"""The directory: which subsystem provides a service for an area, which services an authority offers.

Every answer is read from a :class:`~trust.globalconf.GlobalConf`, that is from the
signed global configuration, so whoever holds the configuration anchor can check it:
an information system can fetch the signed document itself and run the same functions.
Pure: no I/O; fetching and verifying the document are the callers'.

Routing by area works as FIT-Connect's does with a service key and an area key.  Areas
are German official keys, hierarchical by prefix: ``05`` North Rhine-Westphalia, ``057``
Regierungsbezirk Detmold, ``05774`` Kreis Paderborn, ``05774032`` Stadt Paderborn.  A
catalogue entry for ``05774`` covers ``05774032``; the most specific entries (the
longest area that is a prefix of the one asked for) win, and an entry without an area
covers everything, as the least specific.  Entries and questions must use the same key
system (AGS or ARS), whose prefixes nest the same way only within one system.

Each answer names the security servers that host the providing subsystem, those in
maintenance mode after the others, so that a client tries an available one first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.identifiers import IdentifierError, SubsystemId, check_part
from trust._encoding import format_time
from trust.globalconf import AREA_PATTERN, AUTHORITY_PATTERN, GlobalConf, SecurityServerInfo, ServiceInfo

__all__ = [
    "DirectoryEntry",
    "check_service",
    "check_area",
    "check_authority",
    "providers_for",
    "services_of_authority",
    "providers_answer",
    "authority_answer",
]


@dataclass(frozen=True)
class DirectoryEntry:
    """One catalogue entry and the security servers that host its provider, available ones first."""

    service: ServiceInfo
    servers: tuple[SecurityServerInfo, ...]

    @property
    def provider(self) -> SubsystemId:
        return self.service.provider

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the gateway's directory API and ``xweg directory --json`` print."""
        return {
            "service": self.service.service_id.slash(),
            **self.service.to_dict(),
            "servers": [
                {
                    "id": server.id.slash(),
                    "address": server.address,
                    "maintenance_mode": server.maintenance_mode,
                }
                for server in self.servers
            ],
        }


def check_service(service_code: str, version: str | None = None) -> None:
    """Raise :class:`ValueError` unless ``service_code`` (and ``version``) are valid identifier parts."""
    try:
        check_part(service_code, "service code")
        if version is not None:
            check_part(version, "service version")
    except IdentifierError as exc:
        raise ValueError(str(exc)) from exc


def check_area(area: object) -> str:
    """``area`` if it is an official key of 2 to 12 digits; :class:`ValueError` otherwise."""
    if not isinstance(area, str) or not AREA_PATTERN.fullmatch(area):
        raise ValueError(f"area {area!r} must be an official key of 2 to 12 digits, e.g. 05774032")
    return area


def check_authority(authority: object) -> str:
    """``authority`` if it is an authority identifier (``PREFIX:key``); :class:`ValueError` otherwise."""
    if not isinstance(authority, str) or not AUTHORITY_PATTERN.fullmatch(authority):
        raise ValueError(f"authority identifier {authority!r} must be prefix:key, e.g. MELDID:05774020")
    return authority


def _entry(conf: GlobalConf, service: ServiceInfo) -> DirectoryEntry:
    servers = conf.servers_for_client(service.provider)
    # Stable: within each group the configuration's order is kept.
    ordered = tuple(s for s in servers if not s.maintenance_mode) + tuple(
        s for s in servers if s.maintenance_mode
    )
    return DirectoryEntry(service, ordered)


def providers_for(
    conf: GlobalConf, service_code: str, area: str, *, version: str | None = None
) -> tuple[DirectoryEntry, ...]:
    """The catalogue entries for ``service_code`` (and ``version``, if given) responsible for ``area``.

    Only the most specific entries are returned: those whose area is the longest prefix
    of ``area``; entries without an area only when no entry names a covering area.  In
    catalogue order.  Empty when nobody provides the service there.  Raises
    :class:`ValueError` for a malformed service code, version or area.
    """
    check_service(service_code, version)
    check_area(area)
    covering: list[tuple[int, ServiceInfo]] = []
    for service in conf.services:
        if service.code != service_code or (version is not None and service.version != version):
            continue
        if service.area is None:
            covering.append((0, service))
        elif area.startswith(service.area):
            covering.append((len(service.area), service))
    if not covering:
        return ()
    best = max(specificity for specificity, _ in covering)
    return tuple(_entry(conf, service) for specificity, service in covering if specificity == best)


def services_of_authority(conf: GlobalConf, authority: str) -> tuple[DirectoryEntry, ...]:
    """The catalogue entries that answer for ``authority`` (``PREFIX:key``), in catalogue order.

    Raises :class:`ValueError` for a malformed authority identifier.
    """
    check_authority(authority)
    return tuple(_entry(conf, service) for service in conf.services if authority in service.authorities)


def _answer(conf: GlobalConf) -> dict[str, Any]:
    # Which configuration answered: a client can fetch that document and check for itself.
    return {
        "instance": conf.instance,
        "globalconf_serial": conf.serial,
        "globalconf_expires_at": format_time(conf.expires_at),
    }


def providers_answer(
    conf: GlobalConf, service_code: str, area: str, *, version: str | None = None
) -> dict[str, Any]:
    """:func:`providers_for` as a JSON object naming the question and the configuration's serial."""
    entries = providers_for(conf, service_code, area, version=version)
    return {
        **_answer(conf),
        "service_code": service_code,
        "version": version,
        "area": area,
        "providers": [entry.to_dict() for entry in entries],
    }


def authority_answer(conf: GlobalConf, authority: str) -> dict[str, Any]:
    """:func:`services_of_authority` as a JSON object naming the question and the configuration's serial."""
    entries = services_of_authority(conf, authority)
    return {**_answer(conf), "authority": authority, "services": [entry.to_dict() for entry in entries]}
