"""What a security server serves and to whom: clients, services, endpoints, access rights, groups.

Pure: no I/O.  :mod:`gateway.serverconf.store` keeps these in a database; the running
server holds one immutable :class:`ServerConfSnapshot` and swaps it whole when the store
changes, so a request sees one consistent configuration from start to end.

Access rights are denied by default.  A right is granted on a service code of a provider
subsystem (regardless of version, as in X-Road), either on the whole service or on one of
its REST endpoints, to a member or subsystem (exactly that identifier), a global group
(published in global configuration) or a local group (defined here).

Endpoints are a method (or ``*``) and a path pattern whose segments are literals,
``*`` (exactly one segment; OpenAPI templates such as ``{id}`` are read as ``*``) or, as the
last segment only, ``**`` (any number of segments, none included).  A request's path is
matched only after :func:`normalise_request_path` has decoded it and refused everything
that could be read two ways (encoded ``/``, ``..``, ``.``, empty segments, backslashes):
encoded traversal once bypassed X-Road's endpoint rules.
"""

from __future__ import annotations

import enum
import functools
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from core.identifiers import ClientId, GlobalGroupId, LocalGroupId, ServiceId, SubsystemId
from core.messages import Protocol
from core.metadata import is_reserved_service_code

__all__ = [
    "AccessGrant",
    "AccessSubject",
    "ClientEntry",
    "ConnectionType",
    "EndpointPattern",
    "GroupMembers",
    "LocalGroup",
    "PathRefused",
    "ServerConfSnapshot",
    "ServiceEntry",
    "normalise_request_path",
]

#: Who a right can be granted to.
AccessSubject = ClientId | GlobalGroupId | LocalGroupId
#: The members of a global group, from the current global configuration.
GroupMembers = Callable[[GlobalGroupId], Iterable[ClientId]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
_MAX_PATTERN = 1024
# A literal pattern segment: RFC 3986 pchar without percent-encoding (patterns are stored decoded).
_LITERAL = re.compile(r"[A-Za-z0-9\-._~!$&'()+,;=:@]+")
_TEMPLATE = re.compile(r"\{[A-Za-z0-9_.\-]{1,64}\}")


class ConnectionType(enum.Enum):
    """How an information system must connect to act for a client subsystem (X-Road's names in brackets)."""

    HTTP = "http"  # plain HTTP or HTTPS, no client certificate (HTTP)
    HTTPS = "https"  # HTTPS required, no client certificate (HTTPS_NO_AUTH)
    HTTPS_MTLS = "https-mtls"  # HTTPS with a certificate registered for the client (HTTPS); the default


@dataclass(frozen=True)
class ClientEntry:
    """A client subsystem (or member) of this security server's information systems.

    ``certificate_fingerprints`` are the SHA-256 fingerprints (lower-case hex of the DER)
    of the information-system certificates registered for it; with ``HTTPS_MTLS`` a
    request must come over a TLS connection authenticated with one of them.  With
    ``token_required``, a request must also carry a client token bound to this client.
    ``certificates_pem`` are those certificates themselves (PEM), which the HTTPS client
    listener trusts at the handshake; one whose fingerprint is not listed is ignored.
    """

    id: ClientId
    connection: ConnectionType = ConnectionType.HTTPS_MTLS
    certificate_fingerprints: frozenset[str] = frozenset()
    token_required: bool = False
    certificates_pem: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceEntry:
    """A service this server provides, and the backend that serves it.

    ``protocol`` is the protocol the service speaks.  For REST, ``base_url`` is the base
    URL the request's path and query are appended to; for SOAP it is the backend's SOAP
    endpoint URL, which receives every request as is.  The service's description is
    fetched from the backend when the metadata services ask for it: a SOAP service's WSDL
    from ``wsdl_url`` (by default the endpoint URL with ``?wsdl``), a REST service's
    OpenAPI 3 document (JSON) from ``openapi_url``.  ``verify_tls``: whether an
    ``https`` backend's certificate is checked against the system's CAs (turn it off only
    for a backend with a self-signed certificate on a network you trust).
    """

    id: ServiceId
    base_url: str
    timeout_s: float = 30.0
    protocol: Protocol = Protocol.REST
    wsdl_url: str | None = None
    openapi_url: str | None = None
    verify_tls: bool = True

    def __post_init__(self) -> None:
        where = f"service {self.id.slash()}"
        if not isinstance(self.protocol, Protocol):
            raise ValueError(f"{where}: protocol must be a Protocol")
        if is_reserved_service_code(self.id.service_code):
            raise ValueError(
                f"{where}: the service code {self.id.service_code!r} is reserved "
                "for X-Road's metadata services, which security servers answer themselves"
            )
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"{where}: base_url must be an http(s) URL")
        if self.protocol is Protocol.SOAP:
            _check_url(where, "base_url", self.base_url)
        if self.wsdl_url is not None:
            if self.protocol is not Protocol.SOAP:
                raise ValueError(f"{where}: wsdl_url is for SOAP services only")
            _check_url(where, "wsdl_url", self.wsdl_url)
        if self.openapi_url is not None:
            if self.protocol is not Protocol.REST:
                raise ValueError(f"{where}: openapi_url is for REST services only")
            _check_url(where, "openapi_url", self.openapi_url)
        if (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, int | float)
            or self.timeout_s <= 0
        ):
            raise ValueError(f"{where}: timeout_s must be positive")
        if not isinstance(self.verify_tls, bool):
            raise ValueError(f"{where}: verify_tls must be true or false")

    @property
    def description_url(self) -> str | None:
        """Where the backend serves this service's description: its WSDL or its OpenAPI document.

        ``None`` for a REST service without ``openapi_url``.
        """
        if self.protocol is Protocol.SOAP:
            if self.wsdl_url is not None:
                return self.wsdl_url
            return self.base_url + ("&wsdl" if urllib.parse.urlsplit(self.base_url).query else "?wsdl")
        return self.openapi_url


def _check_url(where: str, name: str, url: object) -> None:
    """A backend URL called as is: absolute http(s) with a host and without a fragment."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{where}: {name} must be an http(s) URL")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # a port that is not a number in range raises ValueError
    except ValueError as exc:
        raise ValueError(f"{where}: {name} is not a valid URL ({exc})") from exc
    if not parts.hostname or parts.fragment or "#" in url:
        raise ValueError(f"{where}: {name} must be http(s)://host[:port][/path][?query] without a fragment")


class PathRefused(ValueError):
    """A request path or an endpoint pattern that cannot be matched safely; the message says why."""


@dataclass(frozen=True, slots=True, order=True)
class EndpointPattern:
    """A REST endpoint: ``method`` (``*`` or an HTTP method) and a path ``pattern``.

    Construct with :meth:`parse`, which refuses a pattern that would match every path by
    accident (``/**``, ``/*/**``): grant the whole service for that.
    """

    method: str
    path: str

    @classmethod
    def parse(cls, method: str, path: str) -> EndpointPattern:
        method = method.strip().upper() if isinstance(method, str) else method
        if method != "*" and method not in _METHODS:
            raise PathRefused(f"method must be * or one of {', '.join(sorted(_METHODS))}, not {method!r}")
        if not isinstance(path, str) or not path.startswith("/") or len(path) > _MAX_PATTERN:
            raise PathRefused(f"an endpoint path starts with / and has at most {_MAX_PATTERN} characters")
        segments = path[1:].split("/")
        normalised: list[str] = []
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if _TEMPLATE.fullmatch(segment):
                segment = "*"  # an OpenAPI path template matches one segment
            if segment == "**":
                if not last:
                    raise PathRefused(f"{path!r}: ** may only be the last segment")
            elif segment == "":
                if not last:
                    raise PathRefused(f"{path!r}: empty segments (//) are not allowed")
            elif segment in (".", ".."):
                raise PathRefused(f"{path!r}: . and .. segments are not allowed")
            elif segment != "*" and not _LITERAL.fullmatch(segment):
                raise PathRefused(
                    f"{path!r}: segment {segment!r} has a character a pattern may not contain "
                    "(patterns are written decoded, without %, ?, # or \\)"
                )
            normalised.append(segment)
        if normalised[-1] == "**" and all(s in ("*", "**") for s in normalised):
            raise PathRefused(f"{path!r} matches every path: grant the whole service instead of an endpoint")
        return cls(method, "/" + "/".join(normalised))

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with ``method`` and normalised ``path`` is this endpoint."""
        if self.method not in ("*", method):
            return False
        wanted = self.path[1:].split("/")
        given = path[1:].split("/")
        for index, segment in enumerate(wanted):
            if segment == "**":
                return True
            if index >= len(given):
                return False
            # '*' is one segment, never an empty one: '/users/*' is not '/users/', which
            # many backends route to the collection '/users'.
            if segment == "*" and given[index] == "":
                return False
            if segment != "*" and segment != given[index]:
                return False
        return len(given) == len(wanted)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def normalise_request_path(raw_path: str) -> str:
    """The decoded path of a REST request (the part after the service code), for matching.

    ``""`` is ``/``.  Refused with :class:`PathRefused`: a path not starting with ``/``; an
    encoded ``/`` or ``\\`` (``%2F``, ``%5C``), a raw ``\\``, a malformed or non-UTF-8
    percent-escape, control characters; ``.`` or ``..`` segments (also when encoded); empty
    segments other than a trailing one.  Whatever is left means the same to every reader,
    so a pattern matched against it means what it says.
    """
    if raw_path == "":
        return "/"
    if not raw_path.startswith("/"):
        raise PathRefused("a request path starts with /")
    segments = raw_path[1:].split("/")
    decoded: list[str] = []
    for index, segment in enumerate(segments):
        if "\\" in segment or re.search(r"%(?:2[fF]|5[cC])", segment):
            raise PathRefused("a request path may not contain an encoded / or a backslash")
        if re.search(r"%(?![0-9A-Fa-f]{2})", segment):
            raise PathRefused("a request path has a malformed percent-escape")
        try:
            text = urllib.parse.unquote(segment, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise PathRefused("a request path's percent-escapes are not UTF-8") from None
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
            raise PathRefused("a request path may not contain control characters")
        if text in (".", ".."):
            raise PathRefused("a request path may not contain . or .. segments")
        if text == "" and index != len(segments) - 1:
            raise PathRefused("a request path may not contain empty segments (//)")
        decoded.append(text)
    return "/" + "/".join(decoded)


@dataclass(frozen=True)
class AccessGrant:
    """``subject`` may call service code ``service_code`` of ``provider``: the whole service
    when ``endpoint`` is ``None``, else that endpoint only."""

    provider: SubsystemId
    service_code: str
    subject: AccessSubject
    endpoint: EndpointPattern | None = None


@dataclass(frozen=True)
class LocalGroup:
    code: str
    description: str = ""
    members: frozenset[ClientId] = frozenset()

    @property
    def id(self) -> LocalGroupId:
        return LocalGroupId(self.code)


@dataclass(frozen=True)
class ServerConfSnapshot:
    """One consistent view of the server configuration; ``version`` changes with every change."""

    clients: Mapping[ClientId, ClientEntry] = field(default_factory=dict)
    services: tuple[ServiceEntry, ...] = ()
    endpoints: Mapping[tuple[SubsystemId, str], tuple[EndpointPattern, ...]] = field(default_factory=dict)
    grants: tuple[AccessGrant, ...] = ()
    groups: Mapping[str, LocalGroup] = field(default_factory=dict)
    version: str = ""

    def client(self, client: ClientId) -> ClientEntry | None:
        return self.clients.get(client)

    def hosts(self, client: ClientId) -> bool:
        return client in self.clients

    @functools.cached_property
    def _services_by_code(self) -> dict[tuple[SubsystemId, str], tuple[ServiceEntry, ...]]:
        # Built once per snapshot: a request looks at the versions of its service code only.
        table: dict[tuple[SubsystemId, str], list[ServiceEntry]] = {}
        for entry in self.services:
            table.setdefault((entry.id.provider, entry.id.service_code), []).append(entry)
        return {key: tuple(value) for key, value in table.items()}

    def service(self, service: ServiceId) -> ServiceEntry | None:
        """The configured service, matching the version when the request names one."""
        for candidate in self._services_by_code.get((service.provider, service.service_code), ()):
            if service.service_version is None or candidate.id.service_version in (
                None,
                service.service_version,
            ):
                return candidate
        return None

    def services_of(self, provider: SubsystemId, protocol: Protocol) -> list[ServiceEntry]:
        """The services of ``provider`` that speak ``protocol``, in configuration order."""
        return [s for s in self.services if s.id.provider == provider and s.protocol is protocol]

    def endpoints_of(self, service: ServiceId) -> tuple[EndpointPattern, ...]:
        return self.endpoints.get((service.provider, service.service_code), ())

    def _granted_to(self, subject: AccessSubject, client: ClientId, group_members: GroupMembers) -> bool:
        if isinstance(subject, GlobalGroupId):
            return client in tuple(group_members(subject))
        if isinstance(subject, LocalGroupId):
            group = self.groups.get(subject.group_code)
            return group is not None and client in group.members
        return subject == client

    @functools.cached_property
    def _grants_by_service(self) -> dict[tuple[SubsystemId, str], tuple[AccessGrant, ...]]:
        # Built once per snapshot: a request looks at its service's grants only.
        table: dict[tuple[SubsystemId, str], list[AccessGrant]] = {}
        for grant in self.grants:
            table.setdefault((grant.provider, grant.service_code), []).append(grant)
        return {key: tuple(value) for key, value in table.items()}

    def _grants_for(
        self, client: ClientId, service: ServiceId, group_members: GroupMembers
    ) -> list[AccessGrant]:
        return [
            grant
            for grant in self._grants_by_service.get((service.provider, service.service_code), ())
            if self._granted_to(grant.subject, client, group_members)
        ]

    def allows(
        self,
        client: ClientId,
        service: ServiceId,
        group_members: GroupMembers,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> bool:
        """Whether ``client`` may call ``service``; for a REST request, with ``method`` and
        the ``path`` :func:`normalise_request_path` returned.

        Without a method and path only a right on the whole service counts.
        """
        for grant in self._grants_for(client, service, group_members):
            if grant.endpoint is None:
                return True
            if method is not None and path is not None and grant.endpoint.matches(method, path):
                return True
        return False

    def allowed_endpoints(
        self, client: ClientId, service: ServiceId, group_members: GroupMembers
    ) -> tuple[EndpointPattern, ...] | None:
        """What ``client`` may call of ``service``: ``None`` for the whole service, else the
        endpoints granted (empty: nothing)."""
        found: dict[EndpointPattern, None] = {}
        for grant in self._grants_for(client, service, group_members):
            if grant.endpoint is None:
                return None
            found[grant.endpoint] = None
        return tuple(found)
