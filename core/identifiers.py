"""X-Road compatible identifiers: members, subsystems, services, servers, groups.

Every identifier validates on construction (allowed characters, no empty parts), so
an identifier that exists is valid.  Two textual forms are supported:

* the typed form, ``SUBSYSTEM:NRW/MUN/05774032/gewerbeamt`` (X-Road's ``objectType``
  followed by the parts), used in logs and configuration;
* the slash form, ``NRW/MUN/05774032/gewerbeamt``, used in X-Road REST headers and
  paths.  The slash form does not say which kind of identifier it is, so parsing it is
  always asked for a kind (``ClientId.parse_slash``, ``ServiceId.parse_slash``...).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import ClassVar, Union

__all__ = [
    "ObjectType",
    "IdentifierError",
    "MemberId",
    "SubsystemId",
    "ClientId",
    "ServiceId",
    "SecurityServerId",
    "GlobalGroupId",
    "LocalGroupId",
    "parse_client_slash",
    "parse_typed",
    "MAX_PART_LENGTH",
    "check_part",
]

#: X-Road allows these characters in every identifier part (pr-mess, "identifiers").
_ALLOWED_PART = re.compile(r"[A-Za-z0-9'()+,\-.=?]+")
#: Bound on one part; X-Road's database columns stop at 255.
MAX_PART_LENGTH = 255


class IdentifierError(ValueError):
    """An identifier is malformed: empty part, illegal character, wrong shape."""


class ObjectType(enum.Enum):
    MEMBER = "MEMBER"
    SUBSYSTEM = "SUBSYSTEM"
    SERVICE = "SERVICE"
    SERVER = "SERVER"
    GLOBALGROUP = "GLOBALGROUP"
    LOCALGROUP = "LOCALGROUP"


def check_part(value: object, what: str) -> None:
    """Raise IdentifierError unless ``value`` is a valid identifier part (e.g. an instance code)."""
    if not isinstance(value, str):
        raise IdentifierError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise IdentifierError(f"{what} must not be empty")
    if len(value) > MAX_PART_LENGTH:
        raise IdentifierError(f"{what} is longer than {MAX_PART_LENGTH} characters")
    if not _ALLOWED_PART.fullmatch(value):
        bad = next(ch for ch in value if not _ALLOWED_PART.fullmatch(ch))
        raise IdentifierError(f"{what} {value!r} contains the illegal character {bad!r}")


def _split(text: str, counts: tuple[int, ...], what: str) -> list[str]:
    if not isinstance(text, str):
        raise IdentifierError(f"{what} must be a string")
    parts = text.split("/")
    if len(parts) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise IdentifierError(f"{what} {text!r} must have {want} parts separated by '/'")
    return parts


@dataclass(frozen=True, slots=True, order=True)
class MemberId:
    """``MEMBER:instance/memberClass/memberCode``."""

    instance: str
    member_class: str
    member_code: str

    object_type: ClassVar[ObjectType] = ObjectType.MEMBER

    def __post_init__(self) -> None:
        check_part(self.instance, "xRoadInstance")
        check_part(self.member_class, "memberClass")
        check_part(self.member_code, "memberCode")

    @property
    def member(self) -> MemberId:
        return self

    def slash(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.member_code}"

    def __str__(self) -> str:
        return f"{self.object_type.value}:{self.slash()}"

    @classmethod
    def parse_slash(cls, text: str) -> MemberId:
        return cls(*_split(text, (3,), "member identifier"))

    def subsystem(self, code: str) -> SubsystemId:
        return SubsystemId(self.instance, self.member_class, self.member_code, code)


@dataclass(frozen=True, slots=True, order=True)
class SubsystemId:
    """``SUBSYSTEM:instance/memberClass/memberCode/subsystemCode``."""

    instance: str
    member_class: str
    member_code: str
    subsystem_code: str

    object_type: ClassVar[ObjectType] = ObjectType.SUBSYSTEM

    def __post_init__(self) -> None:
        check_part(self.instance, "xRoadInstance")
        check_part(self.member_class, "memberClass")
        check_part(self.member_code, "memberCode")
        check_part(self.subsystem_code, "subsystemCode")

    @property
    def member(self) -> MemberId:
        return MemberId(self.instance, self.member_class, self.member_code)

    def slash(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.member_code}/{self.subsystem_code}"

    def __str__(self) -> str:
        return f"{self.object_type.value}:{self.slash()}"

    @classmethod
    def parse_slash(cls, text: str) -> SubsystemId:
        return cls(*_split(text, (4,), "subsystem identifier"))

    def service(self, code: str, version: str | None = None) -> ServiceId:
        return ServiceId(self, code, version)


ClientId = Union[MemberId, SubsystemId]


def parse_client_slash(text: str) -> ClientId:
    """Parse an ``X-Road-Client`` value: ``instance/class/member[/subsystem]``."""
    parts = _split(text, (3, 4), "client identifier")
    if len(parts) == 3:
        return MemberId(*parts)
    return SubsystemId(*parts)


@dataclass(frozen=True, slots=True, order=True)
class ServiceId:
    """``SERVICE:instance/class/member/subsystem/serviceCode[/serviceVersion]``.

    Services are provided by subsystems, as in current X-Road releases.
    """

    provider: SubsystemId
    service_code: str
    service_version: str | None = None

    object_type: ClassVar[ObjectType] = ObjectType.SERVICE

    def __post_init__(self) -> None:
        if not isinstance(self.provider, SubsystemId):
            raise IdentifierError("a service's provider must be a subsystem")
        check_part(self.service_code, "serviceCode")
        if self.service_version is not None:
            check_part(self.service_version, "serviceVersion")

    @property
    def member(self) -> MemberId:
        return self.provider.member

    def slash(self) -> str:
        text = f"{self.provider.slash()}/{self.service_code}"
        if self.service_version is not None:
            text += f"/{self.service_version}"
        return text

    def __str__(self) -> str:
        return f"{self.object_type.value}:{self.slash()}"

    def unversioned(self) -> ServiceId:
        """Access rights are granted per service code, regardless of version."""
        return ServiceId(self.provider, self.service_code, None)

    @classmethod
    def parse_slash(cls, text: str) -> ServiceId:
        parts = _split(text, (5, 6), "service identifier")
        version = parts[5] if len(parts) == 6 else None
        return cls(SubsystemId(*parts[:4]), parts[4], version)


@dataclass(frozen=True, slots=True, order=True)
class SecurityServerId:
    """``SERVER:instance/memberClass/memberCode/serverCode``."""

    owner: MemberId
    server_code: str

    object_type: ClassVar[ObjectType] = ObjectType.SERVER

    def __post_init__(self) -> None:
        if not isinstance(self.owner, MemberId):
            raise IdentifierError("a security server's owner must be a member")
        check_part(self.server_code, "serverCode")

    @property
    def member(self) -> MemberId:
        return self.owner

    def slash(self) -> str:
        return f"{self.owner.slash()}/{self.server_code}"

    def __str__(self) -> str:
        return f"{self.object_type.value}:{self.slash()}"

    @classmethod
    def parse_slash(cls, text: str) -> SecurityServerId:
        parts = _split(text, (4,), "security server identifier")
        return cls(MemberId(*parts[:3]), parts[3])


@dataclass(frozen=True, slots=True, order=True)
class GlobalGroupId:
    """``GLOBALGROUP:instance/groupCode``."""

    instance: str
    group_code: str

    object_type: ClassVar[ObjectType] = ObjectType.GLOBALGROUP

    def __post_init__(self) -> None:
        check_part(self.instance, "xRoadInstance")
        check_part(self.group_code, "groupCode")

    def slash(self) -> str:
        return f"{self.instance}/{self.group_code}"

    def __str__(self) -> str:
        return f"{self.object_type.value}:{self.slash()}"

    @classmethod
    def parse_slash(cls, text: str) -> GlobalGroupId:
        return cls(*_split(text, (2,), "global group identifier"))


@dataclass(frozen=True, slots=True, order=True)
class LocalGroupId:
    """``LOCALGROUP:groupCode``: a group defined on one security server."""

    group_code: str

    object_type: ClassVar[ObjectType] = ObjectType.LOCALGROUP

    def __post_init__(self) -> None:
        check_part(self.group_code, "groupCode")

    def slash(self) -> str:
        return self.group_code

    def __str__(self) -> str:
        return f"{self.object_type.value}:{self.slash()}"

    @classmethod
    def parse_slash(cls, text: str) -> LocalGroupId:
        return cls(*_split(text, (1,), "local group identifier"))


AnyId = Union[MemberId, SubsystemId, ServiceId, SecurityServerId, GlobalGroupId, LocalGroupId]

_BY_TYPE: dict[str, type[AnyId]] = {
    "MEMBER": MemberId,
    "SUBSYSTEM": SubsystemId,
    "SERVICE": ServiceId,
    "SERVER": SecurityServerId,
    "GLOBALGROUP": GlobalGroupId,
    "LOCALGROUP": LocalGroupId,
}


def parse_typed(text: str) -> AnyId:
    """Parse the typed form, e.g. ``SERVICE:NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1``."""
    if not isinstance(text, str) or ":" not in text:
        raise IdentifierError(f"{text!r} is not of the form OBJECTTYPE:parts")
    kind, _, rest = text.partition(":")
    cls = _BY_TYPE.get(kind)
    if cls is None:
        raise IdentifierError(f"unknown object type {kind!r}")
    return cls.parse_slash(rest)
