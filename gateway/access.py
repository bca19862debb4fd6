"""Access rights: deny by default; a client may call a service only when a rule says so.

As in X-Road, rights are granted per service code regardless of version, to a member
or subsystem (exactly that identifier: a right granted to a member does not extend to
its subsystems) or to a global group published in global configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.identifiers import ClientId, GlobalGroupId, ServiceId, SubsystemId
from gateway.config import AccessRule, AccessSubject

__all__ = ["AccessRights"]

GroupMembers = Callable[[GlobalGroupId], Iterable[ClientId]]


class AccessRights:
    def __init__(self, rules: Iterable[AccessRule]) -> None:
        table: dict[tuple[SubsystemId, str], set[AccessSubject]] = {}
        for rule in rules:
            table.setdefault((rule.provider, rule.service_code), set()).update(rule.subjects)
        self._table = {key: frozenset(value) for key, value in table.items()}

    def allows(self, client: ClientId, service: ServiceId, group_members: GroupMembers) -> bool:
        subjects = self._table.get((service.provider, service.service_code))
        if not subjects:
            return False
        if client in subjects:
            return True
        return any(
            isinstance(subject, GlobalGroupId) and client in tuple(group_members(subject))
            for subject in subjects
        )

    def allowed_services(
        self, client: ClientId, group_members: GroupMembers
    ) -> list[tuple[SubsystemId, str]]:
        return sorted(
            key for key in self._table if self.allows(client, ServiceId(key[0], key[1]), group_members)
        )
