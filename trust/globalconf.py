"""The global configuration: its format, how the registry signs it, how a security server verifies it.

A global configuration lists an instance's members and their subsystems, its security
servers (address, auth certificate fingerprints, the clients they serve), its global
groups and the approved certificate authorities.  It carries a serial that only ever
grows and an expiry, after which security servers refuse traffic rather than act on
stale facts.

The payload is the canonical JSON of :meth:`GlobalConf.to_json`: format version 2, or
version 3 when it also announces the registry's signing :class:`~trust.anchor.KeySet`,
or version 4 when it also publishes the service catalogue (:class:`ServiceInfo`) or a
security server in maintenance mode; version 4 carries ``signing_keys`` only when a key
set is announced.  A new field means a new version, and a configuration is written in
the lowest version that can say it, so one without the newer facts stays readable by
security servers that predate them.  On the wire it is a JWS, ES256, each signature's
protected header exactly ``alg``/``kid``/``typ``, in one of two forms:

* compact (``header.payload.signature``), one signature: what a registry with one key
  publishes, and what security servers deployed before thresholds understand;
* the general JWS JSON serialization (RFC 7515 section 7.2.1), canonical JSON
  ``{"payload": ..., "signatures": [{"protected": ..., "signature": ...}, ...]}``, one
  entry per registry key; no unprotected ``header`` members.

Verification in the manner of The Update Framework: the document needs valid signatures
by ``threshold`` *distinct* anchor keys (a key signing twice counts once; signatures by
keys the anchor does not name are ignored).  A document that announces a key set other
than the anchor's must also meet that set's threshold; after it is accepted,
:func:`rotated_anchor` gives the anchor to trust from then on, and documents signed only
by the old keys no longer verify.

:func:`verify_global_conf` is pure: bytes, an anchor and ``now`` in, a
:class:`GlobalConf` out or a :class:`~trust.errors.GlobalConfError`.  Fetching,
persisting and swapping are the gateway's; building and serving are the registry's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.canonical import canonical_json
from core.clock import require_utc
from core.identifiers import (
    ClientId,
    GlobalGroupId,
    IdentifierError,
    MemberId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
    parse_client_slash,
)
from trust._encoding import (
    b64url_decode,
    check_instance,
    check_text,
    format_time,
    loads_object,
    parse_time,
    require_keys,
)
from trust.anchor import MAX_SIGNING_KEYS, Anchor, KeySet
from trust.errors import GlobalConfExpired, GlobalConfInvalid, GlobalConfRollback
from trust.profiles import describe

__all__ = [
    "MemberInfo",
    "SecurityServerInfo",
    "GlobalGroupInfo",
    "ServiceInfo",
    "GlobalConf",
    "ApprovedCA",
    "ApprovedTSA",
    "DEFAULT_OCSP_FRESHNESS_S",
    "GlobalConfThresholdNotMet",
    "sign_global_conf",
    "sign_global_conf_multi",
    "verify_global_conf",
    "rotated_anchor",
    "GLOBALCONF_FORMAT",
    "GLOBALCONF_TYPE",
    "MAX_GLOBALCONF_BYTES",
    "MAX_CLOCK_SKEW",
    "SERVICE_PROTOCOLS",
    "AUTHORITY_PATTERN",
    "AREA_PATTERN",
    "MAX_SERVICE_TEXT",
    "MAX_AUTHORITIES",
]

GLOBALCONF_FORMAT = "xweg-globalconf"
#: The JWS ``typ``: keeps a global configuration apart from any other JWS.
GLOBALCONF_TYPE = "xweg-globalconf+jws"
_VERSION = 2
#: The version whose payload also carries ``signing_keys`` (a :class:`KeySet`).
_VERSION_WITH_KEYS = 3
#: The version whose payload also carries ``services`` and servers' ``maintenance_mode``.
_VERSION_WITH_CATALOGUE = 4
_ALGORITHM = "ES256"
#: Default bound on a signed document (bytes).
MAX_GLOBALCONF_BYTES = 4 * 1024 * 1024
#: How far in the future ``generated_at`` may lie (registry and server clocks differ).
MAX_CLOCK_SKEW = timedelta(seconds=300)
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-_]+)):(?P<port>\d{1,5})")
_HEADER_KEYS = frozenset({"alg", "kid", "typ"})

#: The protocols a catalogued service speaks.
SERVICE_PROTOCOLS = ("REST", "SOAP")
#: An authority identifier, ``PREFIX:key`` as FIT-Connect routes by it, e.g. ``MELDID:05774032``.
AUTHORITY_PATTERN = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9_-]{0,31}):(?P<key>[A-Za-z0-9._-]{1,64})")
#: An area: an official municipality key (AGS/ARS) or a prefix of one: state, district, municipality.
AREA_PATTERN = re.compile(r"[0-9]{2,12}")
#: Characters in a service's description and in the standard it implements.
MAX_SERVICE_TEXT = 4096
#: Authority identifiers per catalogued service.
MAX_AUTHORITIES = 256

_jws = jwt.PyJWS(options={"verify_signature": True})


class GlobalConfThresholdNotMet(GlobalConfInvalid):
    """Too few distinct trusted keys validly signed the document (or a rotation it announces)."""


def _check_tuple(value: object, kind: type | tuple[type, ...], what: str) -> None:
    if not isinstance(value, tuple) or not all(isinstance(item, kind) for item in value):
        raise ValueError(f"{what} must be a tuple of {kind}")


def _unique(values: tuple[Any, ...], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value}")
        seen.add(value)


@dataclass(frozen=True)
class MemberInfo:
    """A member organisation and the codes of its subsystems."""

    id: MemberId
    name: str
    subsystems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, MemberId):
            raise ValueError("a member's id must be a MemberId")
        check_text(self.name, f"name of {self.id}")
        _check_tuple(self.subsystems, str, f"subsystems of {self.id}")
        for code in self.subsystems:
            try:
                self.id.subsystem(code)
            except IdentifierError as exc:
                raise ValueError(f"subsystem of {self.id}: {exc}") from exc
        _unique(self.subsystems, f"subsystem of {self.id}:")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id.slash(), "name": self.name, "subsystems": list(self.subsystems)}

    @classmethod
    def from_dict(cls, obj: object) -> MemberInfo:
        data = require_keys(obj, {"id", "name", "subsystems"}, "member")
        return cls(
            MemberId.parse_slash(data["id"]), data["name"], _str_tuple(data["subsystems"], "subsystems")
        )


@dataclass(frozen=True)
class SecurityServerInfo:
    """A security server: where its mTLS listener is, which auth certificates it uses, whom it serves."""

    id: SecurityServerId
    address: str  # "host:port" of its mTLS listener ("[v6]:port" for IPv6)
    auth_cert_fingerprints: tuple[str, ...]  # SHA-256 of the DER, lower-case hex
    clients: tuple[ClientId, ...] = ()
    # Published so that clients prefer the server's peers while it is being serviced.
    maintenance_mode: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, SecurityServerId):
            raise ValueError("a security server's id must be a SecurityServerId")
        match = _ADDRESS.fullmatch(self.address) if isinstance(self.address, str) else None
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError(f"address of {self.id} must be host:port, got {self.address!r}")
        _check_tuple(self.auth_cert_fingerprints, str, f"auth_cert_fingerprints of {self.id}")
        for fp in self.auth_cert_fingerprints:
            if not _FINGERPRINT.fullmatch(fp):
                raise ValueError(
                    f"auth certificate fingerprint of {self.id} must be 64 lower-case hex digits"
                )
        _unique(self.auth_cert_fingerprints, f"auth certificate fingerprint of {self.id}:")
        _check_tuple(self.clients, (MemberId, SubsystemId), f"clients of {self.id}")
        _unique(self.clients, f"client of {self.id}:")
        if not isinstance(self.maintenance_mode, bool):
            raise ValueError(f"maintenance_mode of {self.id} must be true or false")

    @property
    def host(self) -> str:
        match = _ADDRESS.fullmatch(self.address)
        assert match is not None  # validated in the constructor
        return match["v6"] or match["host"]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def to_dict(self) -> dict[str, Any]:
        """The published form; ``maintenance_mode`` only when set (format version 4)."""
        data: dict[str, Any] = {
            "id": self.id.slash(),
            "address": self.address,
            "auth_cert_fingerprints": list(self.auth_cert_fingerprints),
            "clients": [client.slash() for client in self.clients],
        }
        if self.maintenance_mode:
            data["maintenance_mode"] = True
        return data

    @classmethod
    def from_dict(cls, obj: object, *, with_maintenance: bool = True) -> SecurityServerInfo:
        """Parse the published form; ``maintenance_mode`` is optional, refused unless ``with_maintenance``."""
        data = require_keys(
            obj,
            {"id", "address", "auth_cert_fingerprints", "clients"},
            "security server",
            frozenset({"maintenance_mode"}) if with_maintenance else frozenset(),
        )
        return cls(
            SecurityServerId.parse_slash(data["id"]),
            data["address"],
            _str_tuple(data["auth_cert_fingerprints"], "auth_cert_fingerprints"),
            tuple(parse_client_slash(text) for text in _str_tuple(data["clients"], "clients")),
            data.get("maintenance_mode", False),
        )


@dataclass(frozen=True)
class GlobalGroupInfo:
    """A named set of clients, usable in access rights across the instance."""

    id: GlobalGroupId
    members: tuple[ClientId, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, GlobalGroupId):
            raise ValueError("a global group's id must be a GlobalGroupId")
        _check_tuple(self.members, (MemberId, SubsystemId), f"members of {self.id}")
        _unique(self.members, f"member of {self.id}:")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id.slash(), "members": [member.slash() for member in self.members]}

    @classmethod
    def from_dict(cls, obj: object) -> GlobalGroupInfo:
        data = require_keys(obj, {"id", "members"}, "global group")
        return cls(
            GlobalGroupId.parse_slash(data["id"]),
            tuple(parse_client_slash(text) for text in _str_tuple(data["members"], "members")),
        )


def _service_text(value: object, what: str) -> None:
    # The registry's catalogue takes these rules too (empty allowed, bounded length).
    if not isinstance(value, str) or len(value) > MAX_SERVICE_TEXT:
        raise ValueError(f"{what} must be a string of at most {MAX_SERVICE_TEXT} characters")


@dataclass(frozen=True)
class ServiceInfo:
    """A catalogued service: which subsystem provides it, what it implements, whom and where it serves.

    ``authorities`` are the identifiers (``PREFIX:key``, e.g. ``MELDID:05774020``) of the
    authorities it answers for; ``area`` is the official key (2 to 12 digits: state,
    district, municipality) of the area it is responsible for, None for everywhere.
    """

    provider: SubsystemId
    code: str
    version: str | None
    protocol: str  # one of SERVICE_PROTOCOLS
    description: str = ""
    standard: str = ""  # e.g. "XGewerbeanzeige 2.2"
    authorities: tuple[str, ...] = ()
    area: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.provider, SubsystemId):
            raise ValueError("a service's provider must be a SubsystemId")
        try:
            service = self.provider.service(self.code, self.version)
        except IdentifierError as exc:
            raise ValueError(f"service of {self.provider}: {exc}") from exc
        if self.protocol not in SERVICE_PROTOCOLS:
            raise ValueError(
                f"protocol of {service} must be one of {', '.join(SERVICE_PROTOCOLS)}, got {self.protocol!r}"
            )
        _service_text(self.description, f"description of {service}")
        _service_text(self.standard, f"standard of {service}")
        _check_tuple(self.authorities, str, f"authorities of {service}")
        if len(self.authorities) > MAX_AUTHORITIES:
            raise ValueError(f"{service} lists more than {MAX_AUTHORITIES} authority identifiers")
        for authority in self.authorities:
            if not AUTHORITY_PATTERN.fullmatch(authority):
                raise ValueError(
                    f"authority identifier {authority!r} of {service} must be prefix:key, "
                    "e.g. MELDID:05774032"
                )
        _unique(self.authorities, f"authority identifier of {service}:")
        area = self.area
        if area is not None and (not isinstance(area, str) or not AREA_PATTERN.fullmatch(area)):
            raise ValueError(f"area {self.area!r} of {service} must be an official key of 2 to 12 digits")

    @property
    def service_id(self) -> ServiceId:
        return self.provider.service(self.code, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider.slash(),
            "code": self.code,
            "version": self.version,
            "protocol": self.protocol,
            "description": self.description,
            "standard": self.standard,
            "authorities": list(self.authorities),
            "area": self.area,
        }

    @classmethod
    def from_dict(cls, obj: object) -> ServiceInfo:
        data = require_keys(
            obj,
            {"provider", "code", "version", "protocol", "description", "standard", "authorities", "area"},
            "service",
        )
        return cls(
            SubsystemId.parse_slash(data["provider"]),
            data["code"],
            data["version"],
            data["protocol"],
            data["description"],
            data["standard"],
            _str_tuple(data["authorities"], "authorities"),
            data["area"],
        )


def _str_tuple(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} must be a list of strings")
    return tuple(value)


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list")
    return value


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _one_cert(pem: object, what: str) -> x509.Certificate:
    if not isinstance(pem, str):
        raise ValueError(f"{what} must be a PEM string")
    loaded = x509.load_pem_x509_certificates(pem.encode("ascii"))
    if len(loaded) != 1:
        raise ValueError(f"{what} must hold exactly one certificate")
    return loaded[0]


def _check_url(url: object, what: str) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2048:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {url!r}")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


@dataclass(frozen=True)
class ApprovedCA:
    """A certificate authority whose certificates the federation accepts.

    ``certificate`` is the trust anchor (a root); ``intermediates`` are the issuing CAs
    under it.  Revocation status comes from ``ocsp_url``, answered by one of the
    delegated ``ocsp_responders`` -- only those, whatever else the CA may have signed.
    """

    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()
    ocsp_url: str | None = None
    ocsp_responders: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.certificate, x509.Certificate):
            raise ValueError("an approved CA's certificate must be an x509.Certificate")
        _check_tuple(self.intermediates, x509.Certificate, "intermediates")
        _check_tuple(self.ocsp_responders, x509.Certificate, "ocsp_responders")
        for ca in (self.certificate, *self.intermediates):
            if not _is_ca(ca):
                raise ValueError(f"approved CA {describe(ca)} is not a CA certificate")
        if self.ocsp_url is not None:
            _check_url(self.ocsp_url, f"OCSP URL of {describe(self.certificate)}")
        if self.ocsp_responders and self.ocsp_url is None:
            raise ValueError(f"approved CA {describe(self.certificate)} lists OCSP responders but no URL")

    def to_dict(self) -> dict[str, Any]:
        return {
            "certificate": _pem(self.certificate),
            "intermediates": [_pem(c) for c in self.intermediates],
            "ocsp_url": self.ocsp_url,
            "ocsp_responders": [_pem(c) for c in self.ocsp_responders],
        }

    @classmethod
    def from_dict(cls, obj: object) -> ApprovedCA:
        data = require_keys(
            obj, {"certificate", "intermediates", "ocsp_url", "ocsp_responders"}, "approved CA"
        )
        return cls(
            _one_cert(data["certificate"], "approved CA certificate"),
            tuple(_one_cert(p, "intermediate") for p in _list(data["intermediates"], "intermediates")),
            data["ocsp_url"],
            tuple(_one_cert(p, "OCSP responder") for p in _list(data["ocsp_responders"], "ocsp_responders")),
        )


@dataclass(frozen=True)
class ApprovedTSA:
    """A timestamping authority (RFC 3161) whose tokens the federation accepts."""

    name: str
    url: str
    certificate: x509.Certificate

    def __post_init__(self) -> None:
        check_text(self.name, "TSA name")
        _check_url(self.url, f"URL of TSA {self.name}")
        if not isinstance(self.certificate, x509.Certificate):
            raise ValueError(f"certificate of TSA {self.name} must be an x509.Certificate")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "certificate": _pem(self.certificate)}

    @classmethod
    def from_dict(cls, obj: object) -> ApprovedTSA:
        data = require_keys(obj, {"name", "url", "certificate"}, "approved TSA")
        return cls(data["name"], data["url"], _one_cert(data["certificate"], "TSA certificate"))


#: X-Road's default: an OCSP response older than this is not accepted.
DEFAULT_OCSP_FRESHNESS_S = 3600


@dataclass(frozen=True)
class GlobalConf:
    """One instance's published facts at one serial; cross-references are checked on construction."""

    instance: str
    serial: int
    generated_at: datetime
    expires_at: datetime
    members: tuple[MemberInfo, ...]
    security_servers: tuple[SecurityServerInfo, ...]
    global_groups: tuple[GlobalGroupInfo, ...]
    # A bare certificate is accepted here as a CA without intermediates or OCSP.
    approved_cas: tuple[ApprovedCA, ...]
    approved_tsas: tuple[ApprovedTSA, ...] = ()
    ocsp_freshness_s: int = DEFAULT_OCSP_FRESHNESS_S
    # The registry's signing keys from this serial on; None: no announcement (version 2).
    key_set: KeySet | None = None
    # The service catalogue, in the registry's order (version 4 when not empty).
    services: tuple[ServiceInfo, ...] = ()
    _members: Mapping[MemberId, MemberInfo] = field(init=False, repr=False, compare=False)
    _servers: Mapping[SecurityServerId, SecurityServerInfo] = field(init=False, repr=False, compare=False)
    _by_fingerprint: Mapping[str, SecurityServerInfo] = field(init=False, repr=False, compare=False)
    _by_client: Mapping[ClientId, tuple[SecurityServerInfo, ...]] = field(
        init=False, repr=False, compare=False
    )
    _groups: Mapping[GlobalGroupId, GlobalGroupInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_instance(self.instance)
        if isinstance(self.serial, bool) or not isinstance(self.serial, int) or self.serial < 1:
            raise ValueError(f"serial must be a positive integer, got {self.serial!r}")
        require_utc(self.generated_at, "generated_at")
        require_utc(self.expires_at, "expires_at")
        if self.expires_at <= self.generated_at:
            raise ValueError("expires_at must be later than generated_at")
        _check_tuple(self.members, MemberInfo, "members")
        _check_tuple(self.security_servers, SecurityServerInfo, "security_servers")
        _check_tuple(self.global_groups, GlobalGroupInfo, "global_groups")
        object.__setattr__(
            self,
            "approved_cas",
            tuple(ApprovedCA(ca) if isinstance(ca, x509.Certificate) else ca for ca in self.approved_cas),
        )
        _check_tuple(self.approved_cas, ApprovedCA, "approved_cas")
        _check_tuple(self.approved_tsas, ApprovedTSA, "approved_tsas")
        if isinstance(self.ocsp_freshness_s, bool) or not isinstance(self.ocsp_freshness_s, int):
            raise ValueError("ocsp_freshness_s must be an integer")
        if not 1 <= self.ocsp_freshness_s <= 7 * 24 * 3600:
            raise ValueError("ocsp_freshness_s must be between 1 s and one week")
        if self.key_set is not None and not isinstance(self.key_set, KeySet):
            raise ValueError("key_set must be a KeySet or None")

        members: dict[MemberId, MemberInfo] = {}
        for member in self.members:
            if member.id.instance != self.instance:
                raise ValueError(f"member {member.id} is not of instance {self.instance}")
            if member.id in members:
                raise ValueError(f"duplicate member {member.id}")
            members[member.id] = member
        object.__setattr__(self, "_members", members)

        servers: dict[SecurityServerId, SecurityServerInfo] = {}
        by_fingerprint: dict[str, SecurityServerInfo] = {}
        by_client: dict[ClientId, list[SecurityServerInfo]] = {}
        for server in self.security_servers:
            if server.id in servers:
                raise ValueError(f"duplicate security server {server.id}")
            if server.id.owner not in members:
                raise ValueError(f"owner of security server {server.id} is not a member")
            servers[server.id] = server
            for fp in server.auth_cert_fingerprints:
                if fp in by_fingerprint:
                    raise ValueError(
                        f"auth certificate {fp[:16]} is registered for both "
                        f"{by_fingerprint[fp].id} and {server.id}"
                    )
                by_fingerprint[fp] = server
            for client in server.clients:
                if not self.has_client(client):
                    raise ValueError(f"client {client} of security server {server.id} is not registered")
                by_client.setdefault(client, []).append(server)
        object.__setattr__(self, "_servers", servers)
        object.__setattr__(self, "_by_fingerprint", by_fingerprint)
        object.__setattr__(self, "_by_client", {c: tuple(s) for c, s in by_client.items()})

        groups: dict[GlobalGroupId, GlobalGroupInfo] = {}
        for group in self.global_groups:
            if group.id.instance != self.instance:
                raise ValueError(f"global group {group.id} is not of instance {self.instance}")
            if group.id in groups:
                raise ValueError(f"duplicate global group {group.id}")
            groups[group.id] = group
        object.__setattr__(self, "_groups", groups)

        _unique(tuple(tsa.name for tsa in self.approved_tsas), "approved TSA")

        _check_tuple(self.services, ServiceInfo, "services")
        catalogued: set[ServiceId] = set()
        for service in self.services:
            service_id = service.service_id
            if not self.has_client(service.provider):
                raise ValueError(f"provider {service.provider} of {service_id} is not a registered subsystem")
            if service_id in catalogued:
                raise ValueError(f"duplicate service {service_id}")
            catalogued.add(service_id)

    # -- lookups ---------------------------------------------------------------------------

    def has_member(self, member: MemberId) -> bool:
        return member in self._members

    def has_client(self, client: ClientId) -> bool:
        """The member exists and, for a subsystem, the member lists that subsystem."""
        info = self._members.get(client.member)
        if info is None:
            return False
        if isinstance(client, SubsystemId):
            return client.subsystem_code in info.subsystems
        return True

    def member(self, member: MemberId) -> MemberInfo | None:
        return self._members.get(member)

    def servers_for_client(self, client: ClientId) -> tuple[SecurityServerInfo, ...]:
        return self._by_client.get(client, ())

    def server(self, server_id: SecurityServerId) -> SecurityServerInfo | None:
        return self._servers.get(server_id)

    def server_by_fingerprint(self, fp: str) -> SecurityServerInfo | None:
        return self._by_fingerprint.get(fp.lower())

    def group_members(self, group: GlobalGroupId) -> tuple[ClientId, ...]:
        info = self._groups.get(group)
        return info.members if info is not None else ()

    @property
    def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        """The trust anchors: every approved CA's root certificate."""
        return tuple(ca.certificate for ca in self.approved_cas)

    @property
    def intermediate_certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(c for ca in self.approved_cas for c in ca.intermediates)

    @property
    def ocsp_responder_certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(c for ca in self.approved_cas for c in ca.ocsp_responders)

    @property
    def tsa_certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(tsa.certificate for tsa in self.approved_tsas)

    def ocsp_url_for(self, issuer: x509.Certificate) -> str | None:
        """The OCSP URL of the approved CA that ``issuer`` (a root or intermediate) belongs to."""
        for ca in self.approved_cas:
            if issuer == ca.certificate or issuer in ca.intermediates:
                return ca.ocsp_url
        return None

    def issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        """The approved root or intermediate whose subject issued ``cert`` (by name and key id)."""
        for candidate in (*self.intermediate_certificates, *self.ca_certificates):
            if candidate.subject == cert.issuer:
                try:
                    cert.verify_directly_issued_by(candidate)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                return candidate
        return None

    def is_expired(self, now: datetime) -> bool:
        return require_utc(now, "now") >= self.expires_at

    # -- encoding --------------------------------------------------------------------------

    @property
    def format_version(self) -> int:
        """The lowest format version that carries everything this configuration says."""
        if self.services or any(server.maintenance_mode for server in self.security_servers):
            return _VERSION_WITH_CATALOGUE
        return _VERSION if self.key_set is None else _VERSION_WITH_KEYS

    def to_dict(self) -> dict[str, Any]:
        version = self.format_version
        data = {
            "format": GLOBALCONF_FORMAT,
            "version": version,
            "instance": self.instance,
            "serial": self.serial,
            "generated_at": format_time(self.generated_at),
            "expires_at": format_time(self.expires_at),
            "members": [member.to_dict() for member in self.members],
            "security_servers": [server.to_dict() for server in self.security_servers],
            "global_groups": [group.to_dict() for group in self.global_groups],
            "approved_cas": [ca.to_dict() for ca in self.approved_cas],
            "approved_tsas": [tsa.to_dict() for tsa in self.approved_tsas],
            "ocsp_freshness_s": self.ocsp_freshness_s,
        }
        if self.key_set is not None:
            data["signing_keys"] = self.key_set.to_dict()
        if version == _VERSION_WITH_CATALOGUE:
            data["services"] = [service.to_dict() for service in self.services]
        return data

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no white space, UTF-8): the signed payload."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes) -> GlobalConf:
        """Parse a payload; anything malformed or inconsistent raises :class:`GlobalConfInvalid`."""
        try:
            obj = loads_object(data, "global configuration")
            version = obj.get("version")
            # Which keys a document must (and may) carry depends on its version.
            extra: set[str] = set()
            optional: frozenset[str] = frozenset()
            if version == _VERSION_WITH_KEYS:
                extra = {"signing_keys"}
            elif version == _VERSION_WITH_CATALOGUE:
                extra, optional = {"services"}, frozenset({"signing_keys"})
            obj = require_keys(
                obj,
                {
                    "format",
                    "version",
                    "instance",
                    "serial",
                    "generated_at",
                    "expires_at",
                    "members",
                    "security_servers",
                    "global_groups",
                    "approved_cas",
                    "approved_tsas",
                    "ocsp_freshness_s",
                }
                | extra,
                "global configuration",
                optional,
            )
            versions = (_VERSION, _VERSION_WITH_KEYS, _VERSION_WITH_CATALOGUE)
            # type(): 4.0 and true compare equal to numbers but are not versions.
            if obj["format"] != GLOBALCONF_FORMAT or type(version) is not int or version not in versions:
                raise ValueError(
                    f"format {obj['format']!r} version {version!r} is not {GLOBALCONF_FORMAT!r} "
                    f"version {', '.join(map(str, versions[:-1]))} or {versions[-1]}"
                )
            with_catalogue = version == _VERSION_WITH_CATALOGUE
            return cls(
                instance=obj["instance"],
                serial=obj["serial"],
                generated_at=parse_time(obj["generated_at"], "generated_at"),
                expires_at=parse_time(obj["expires_at"], "expires_at"),
                members=tuple(MemberInfo.from_dict(m) for m in _list(obj["members"], "members")),
                security_servers=tuple(
                    SecurityServerInfo.from_dict(s, with_maintenance=with_catalogue)
                    for s in _list(obj["security_servers"], "security_servers")
                ),
                global_groups=tuple(
                    GlobalGroupInfo.from_dict(g) for g in _list(obj["global_groups"], "global_groups")
                ),
                approved_cas=tuple(
                    ApprovedCA.from_dict(c) for c in _list(obj["approved_cas"], "approved_cas")
                ),
                approved_tsas=tuple(
                    ApprovedTSA.from_dict(t) for t in _list(obj["approved_tsas"], "approved_tsas")
                ),
                ocsp_freshness_s=obj["ocsp_freshness_s"],
                key_set=KeySet.from_dict(obj["signing_keys"]) if "signing_keys" in obj else None,
                services=tuple(ServiceInfo.from_dict(x) for x in _list(obj["services"], "services"))
                if with_catalogue
                else (),
            )
        except GlobalConfInvalid:
            raise
        except (ValueError, TypeError, UnicodeError) as exc:
            # IdentifierError is a ValueError too.
            raise GlobalConfInvalid(f"malformed global configuration: {exc}") from exc


def _check_signing_key(key: object, key_id: str) -> None:
    check_text(key_id, "key_id", 128)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("global configuration is signed with an EC P-256 key")


def sign_global_conf(conf: GlobalConf, key: ec.EllipticCurvePrivateKey, key_id: str) -> bytes:
    """The signed document: a compact JWS (ES256, ``kid``) over ``conf.to_json()``."""
    _check_signing_key(key, key_id)
    token = _jws.encode(
        conf.to_json(), key, algorithm=_ALGORITHM, headers={"kid": key_id, "typ": GLOBALCONF_TYPE}
    )
    return token.encode("ascii")


def sign_global_conf_multi(conf: GlobalConf, keys: Sequence[tuple[ec.EllipticCurvePrivateKey, str]]) -> bytes:
    """The signed document as a general JWS JSON serialization, one signature per ``(key, key_id)``."""
    if not 1 <= len(keys) <= MAX_SIGNING_KEYS:
        raise ValueError(f"global configuration is signed with 1 to {MAX_SIGNING_KEYS} keys")
    ids = [key_id for _, key_id in keys]
    if len(set(ids)) != len(ids):
        raise ValueError(f"signing key ids must be unique, got {ids}")
    payload = ""
    signatures = []
    for key, key_id in keys:
        protected, payload, signature = sign_global_conf(conf, key, key_id).decode("ascii").split(".")
        signatures.append({"protected": protected, "signature": signature})
    return canonical_json({"payload": payload, "signatures": signatures})


@dataclass(frozen=True)
class _Signature:
    protected: str
    signature: str
    kid: str


def _parse_envelope(document: bytes) -> tuple[str, list[_Signature]]:
    """The base64url payload and the signatures, each header checked strictly (step 2)."""
    try:
        if document.startswith(b"{"):
            envelope = require_keys(loads_object(document, "JWS JSON"), {"payload", "signatures"}, "JWS JSON")
            payload, entries = envelope["payload"], envelope["signatures"]
            if not isinstance(payload, str) or not payload:
                raise ValueError("JWS JSON payload must be a non-empty string")
            if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SIGNING_KEYS:
                raise ValueError(f"JWS JSON carries 1 to {MAX_SIGNING_KEYS} signatures")
            pairs = []
            for entry in entries:
                # Only protected headers: an unprotected "header" could say anything.
                entry = require_keys(entry, {"protected", "signature"}, "JWS JSON signature")
                if not all(isinstance(entry[k], str) and entry[k] for k in ("protected", "signature")):
                    raise ValueError("JWS JSON protected header and signature must be non-empty strings")
                pairs.append((entry["protected"], entry["signature"]))
        else:
            parts = document.decode("ascii").split(".")
            if len(parts) != 3 or not all(parts):
                raise ValueError("not a compact JWS (three non-empty dot-separated parts)")
            payload, pairs = parts[1], [(parts[0], parts[2])]
        headers = [
            loads_object(b64url_decode(protected, "JWS header"), "JWS header") for protected, _ in pairs
        ]
    except (UnicodeDecodeError, ValueError) as exc:
        raise GlobalConfInvalid(f"global configuration is not a valid JWS: {exc}") from exc
    signatures = []
    for (protected, signature), header in zip(pairs, headers, strict=True):
        if header.get("alg") != _ALGORITHM:
            raise GlobalConfInvalid(
                f"global configuration algorithm {header.get('alg')!r} is refused; only ES256"
            )
        unexpected = set(header) - _HEADER_KEYS
        if unexpected:
            raise GlobalConfInvalid(
                f"global configuration JWS header has unexpected parameters {sorted(unexpected)}"
            )
        if header.get("typ") != GLOBALCONF_TYPE:
            raise GlobalConfInvalid(f"JWS type {header.get('typ')!r} is not {GLOBALCONF_TYPE!r}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise GlobalConfInvalid("global configuration JWS header has no key id (kid)")
        signatures.append(_Signature(protected, signature, kid))
    return payload, signatures


def _valid_signers(
    payload: str, signatures: list[_Signature], keys: Mapping[str, ec.EllipticCurvePublicKey]
) -> tuple[set[str], list[str]]:
    """The key ids in ``keys`` with a valid signature (a set: a key counts once), and what failed."""
    valid: set[str] = set()
    problems: list[str] = []
    for sig in signatures:
        public = keys.get(sig.kid)
        if public is None:
            # Ignored, as TUF ignores keys it does not know; reported if the threshold fails.
            problems.append(f"signed by key {sig.kid!r}, which the anchor does not name")
            continue
        try:
            _jws.decode_complete(
                f"{sig.protected}.{payload}.{sig.signature}", public, algorithms=[_ALGORITHM]
            )
        except jwt.InvalidSignatureError:
            problems.append(f"signature by key {sig.kid!r} does not verify")
            continue
        except jwt.PyJWTError as exc:
            raise GlobalConfInvalid(f"global configuration JWS is malformed: {exc}") from exc
        valid.add(sig.kid)
    return valid, problems


def _require_threshold(payload: str, signatures: list[_Signature], key_set: KeySet, which: str) -> None:
    valid, problems = _valid_signers(payload, signatures, key_set.public_keys())
    if len(valid) < key_set.threshold:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise GlobalConfThresholdNotMet(
            f"global configuration is validly signed by {len(valid)} distinct {which} key(s), "
            f"{key_set.threshold} required{detail}"
        )


def verify_global_conf(
    document: bytes,
    anchor: Anchor,
    now: datetime,
    *,
    min_serial: int | None = None,
    max_size: int = MAX_GLOBALCONF_BYTES,
) -> GlobalConf:
    """Verify a signed global configuration against ``anchor`` at ``now``.

    ``min_serial`` is the serial of the newest document already accepted: an older one
    is a rollback.  Raises :class:`GlobalConfInvalid` (:class:`GlobalConfThresholdNotMet`
    when too few trusted keys signed), :class:`GlobalConfRollback` or
    :class:`GlobalConfExpired`.  A key set the result announces is trusted only through
    :func:`rotated_anchor`.
    """
    require_utc(now, "now")
    # (1) size cap, before any parsing
    if not isinstance(document, bytes):
        raise GlobalConfInvalid("global configuration must be bytes")
    if len(document) > max_size:
        raise GlobalConfInvalid(f"global configuration is {len(document)} bytes, more than {max_size}")
    # (2) strict JWS, compact or general JSON: every protected header exactly alg/kid/typ, ES256
    payload, signatures = _parse_envelope(document)
    # (3) valid signatures by the anchor's threshold of distinct anchor keys; others are ignored
    _require_threshold(payload, signatures, anchor.key_set, "anchor")
    # (4) the payload parses into a consistent configuration
    try:
        conf = GlobalConf.from_json(b64url_decode(payload, "JWS payload"))
    except ValueError as exc:
        raise GlobalConfInvalid(f"global configuration JWS payload: {exc}") from exc
    # (5) it is for the anchor's instance
    if conf.instance != anchor.instance:
        raise GlobalConfInvalid(
            f"global configuration is for instance {conf.instance!r}, the anchor for {anchor.instance!r}"
        )
    # (6) a new key set it announces has signed it too (its threshold, distinct keys)
    if conf.key_set is not None and conf.key_set != anchor.key_set:
        _require_threshold(payload, signatures, conf.key_set, "new")
    # (7) the serial never goes back
    if min_serial is not None and conf.serial < min_serial:
        raise GlobalConfRollback(
            f"global configuration serial {conf.serial} is older than the accepted serial {min_serial}"
        )
    # (8) fresh: not expired, and not generated in the future beyond the allowed skew
    if conf.is_expired(now):
        raise GlobalConfExpired(
            f"global configuration serial {conf.serial} expired at {format_time(conf.expires_at)} "
            f"(now {format_time(now)})"
        )
    if conf.generated_at > now + MAX_CLOCK_SKEW:
        raise GlobalConfInvalid(
            f"global configuration serial {conf.serial} was generated in the future "
            f"({format_time(conf.generated_at)}, now {format_time(now)})"
        )
    return conf


def rotated_anchor(anchor: Anchor, conf: GlobalConf) -> Anchor:
    """The anchor to trust after accepting ``conf``: ``anchor`` with the key set ``conf`` announces.

    Only for a ``conf`` that :func:`verify_global_conf` returned for this ``anchor``;
    that check is what makes the new keys trustworthy.  Unchanged when ``conf``
    announces nothing new.
    """
    if conf.key_set is None or conf.key_set == anchor.key_set:
        return anchor
    return anchor.with_key_set(conf.key_set, max(anchor.generated_at, conf.generated_at))
