"""X-Road's service metadata protocol for REST (pr-mrest): listMethods, allowedMethods, getOpenAPI.

Pure renderers; which services a provider has, which of them a client may call, and
where their OpenAPI descriptions come from are the gateway's to decide.

* ``GET /r1/{provider subsystem}/listMethods`` and ``.../allowedMethods`` answer
  ``application/json`` in X-Road's shape, one entry per REST service with its endpoints::

      {"service": [{"member_class": ..., "member_code": ..., "object_type": "SERVICE",
                    "service_code": ..., "service_type": "REST" | "OPENAPI",
                    "subsystem_code": ..., "xroad_instance": ...,
                    "endpoint_list": [{"method": "GET", "path": "/pet/*"}]}]}

  X-Road writes the service type ``OPENAPI`` for a service described by an OpenAPI 3
  document and ``REST`` for one whose endpoints were configured by hand; metadata services
  are never listed (:func:`render_rest_method_list`).
* ``GET /r1/{provider subsystem}/getOpenAPI?serviceCode=...`` answers the OpenAPI
  description of one ``OPENAPI`` service with its server URLs masked
  (:func:`render_get_openapi`).  Like X-Road, the answer to a ``REST`` service is an
  ``InternalError`` saying "Invalid service type: REST", which clients look for.

Masking goes further than X-Road, which keeps server URLs with variables as they are:
every ``servers`` entry, at the top, on path items and on operations, loses its scheme
and authority (``https://melderegister.intern:8443/api/v1`` becomes ``/api/v1``), and
server variables no longer used in what is left are dropped, so no host name and no
variable default pointing at one leaves the provider.  OpenAPI documents are handled as
JSON objects (:func:`read_openapi` reads one from a backend's bytes; YAML documents are
converted by whoever publishes them).
"""

from __future__ import annotations

import copy
import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import IdentifierError, ServiceId, check_part
from core.metadata import is_reserved_service_code

__all__ = [
    "JSON_CONTENT_TYPE",
    "RestServiceType",
    "RestEndpoint",
    "RestServiceListing",
    "render_rest_method_list",
    "openapi_endpoints",
    "mask_openapi_servers",
    "openapi_service_code",
    "render_get_openapi",
    "read_openapi",
]

#: Content-Type of every answer here.
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"

_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_METHOD = re.compile(r"\*|[A-Z]{1,16}")
_MAX_PATH = 2048
_TEMPLATE = re.compile(r"\{[^{}/]*\}")
_SCHEME_AND_AUTHORITY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//[^/?#]*")
_VARIABLE = re.compile(r"\{([^{}]*)\}")


class RestServiceType(enum.Enum):
    """How a REST service is described, as X-Road's metadata answers write it."""

    REST = "REST"  # endpoints configured by hand
    OPENAPI = "OPENAPI"  # endpoints taken from an OpenAPI 3 description


@dataclass(frozen=True, slots=True, order=True)
class RestEndpoint:
    """An endpoint of a REST service: a method (or ``*``) and a path (``*`` matches one segment)."""

    method: str
    path: str

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not _METHOD.fullmatch(self.method):
            raise ValueError("an endpoint's method is * or an upper-case HTTP method")
        if (
            not isinstance(self.path, str)
            or not self.path.startswith("/")
            or len(self.path) > _MAX_PATH
            or not self.path.isprintable()
        ):
            raise ValueError(
                f"an endpoint's path starts with / and has at most {_MAX_PATH} printable characters"
            )


@dataclass(frozen=True, slots=True)
class RestServiceListing:
    """One REST service of a provider, and the endpoints to list for it."""

    service: ServiceId
    service_type: RestServiceType
    endpoints: tuple[RestEndpoint, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.service, ServiceId):
            raise TypeError("service must be a ServiceId")
        if not isinstance(self.service_type, RestServiceType):
            raise TypeError("service_type must be a RestServiceType")
        if not all(isinstance(endpoint, RestEndpoint) for endpoint in self.endpoints):
            raise TypeError("endpoints must be RestEndpoints")


def _listing_json(listing: RestServiceListing) -> dict[str, Any]:
    service = listing.service
    provider = service.provider
    # Key order as X-Road writes it; an absent version is left out, as X-Road leaves out nulls.
    data: dict[str, Any] = {
        "member_class": provider.member_class,
        "member_code": provider.member_code,
        "object_type": "SERVICE",
        "service_code": service.service_code,
    }
    if service.service_version is not None:
        data["service_version"] = service.service_version
    data["service_type"] = listing.service_type.value
    data["subsystem_code"] = provider.subsystem_code
    data["xroad_instance"] = provider.instance
    data["endpoint_list"] = [{"method": e.method, "path": e.path} for e in listing.endpoints]
    return data


def render_rest_method_list(listings: Iterable[RestServiceListing]) -> bytes:
    """The JSON body of a REST ``listMethods`` or ``allowedMethods`` answer, as UTF-8.

    The caller passes every REST service for ``listMethods``; for ``allowedMethods`` only
    those the client may call, each with only the endpoints it may call.  Metadata
    services are left out, as the protocol demands.
    """
    services = [
        _listing_json(listing)
        for listing in listings
        if not is_reserved_service_code(listing.service.service_code)
    ]
    return json.dumps({"service": services}, ensure_ascii=False).encode("utf-8")


def openapi_endpoints(document: Mapping[str, Any]) -> tuple[RestEndpoint, ...]:
    """The endpoints an OpenAPI document describes, as X-Road lists them.

    One per path and method, in document order; path templates (``{petId}``) become ``*``.
    Raises ``ValueError`` if ``paths`` is not an object of objects.
    """
    paths = document.get("paths", {})
    if not isinstance(paths, Mapping):
        raise ValueError("the OpenAPI document's paths are not an object")
    found: dict[RestEndpoint, None] = {}
    for path, item in paths.items():
        if not isinstance(path, str) or not isinstance(item, Mapping):
            raise ValueError("an OpenAPI path item is not an object")
        for method in _HTTP_METHODS:
            if method in item:
                found[RestEndpoint(method.upper(), _TEMPLATE.sub("*", path))] = None
    return tuple(found)


def _mask_server(server: Any) -> Any:
    if not isinstance(server, Mapping) or not isinstance(server.get("url"), str):
        return server
    masked = dict(server)
    url = _SCHEME_AND_AUTHORITY.sub("", server["url"], count=1) or "/"
    masked["url"] = url
    variables = server.get("variables")
    if isinstance(variables, Mapping):
        used = set(_VARIABLE.findall(url))
        kept = {name: value for name, value in variables.items() if name in used}
        if kept:
            masked["variables"] = kept
        else:
            masked.pop("variables")
    return masked


def _mask_servers(node: dict[str, Any]) -> None:
    servers = node.get("servers")
    if isinstance(servers, list):
        node["servers"] = [_mask_server(server) for server in servers]


def mask_openapi_servers(
    document: Mapping[str, Any], *, origin: Origin = Origin.SERVER_PROXY
) -> dict[str, Any]:
    """A copy of an OpenAPI 3 document with every server URL masked (see the module docstring).

    Raises ``InternalError`` blamed on ``origin`` if the document says it is not OpenAPI 3,
    as X-Road does.
    """
    if not isinstance(document, Mapping):
        raise XwegError(ErrorCode.INTERNAL_ERROR, "the OpenAPI description is not a JSON object", origin)
    version = document.get("openapi")
    if version is not None and not str(version).startswith("3."):
        raise XwegError(
            ErrorCode.INTERNAL_ERROR,
            f"Incompatible openapi version. Openapi version 3 or greater expected. "
            f"Given openapi document is of version {str(version)[:20]!r}",
            origin,
        )
    masked = copy.deepcopy(dict(document))
    _mask_servers(masked)
    paths = masked.get("paths")
    if isinstance(paths, dict):
        for item in paths.values():
            if not isinstance(item, dict):
                continue
            _mask_servers(item)
            for method in _HTTP_METHODS:
                if isinstance(item.get(method), dict):
                    _mask_servers(item[method])
    return masked


def openapi_service_code(query: str, *, origin: Origin = Origin.SERVER_PROXY) -> str:
    """The ``serviceCode`` query parameter of a ``getOpenAPI`` call (its name matched
    regardless of case, the last one winning, as in X-Road).

    Raises ``InvalidRequest`` blamed on ``origin`` if it is missing, empty or no valid
    service code.
    """
    code = ""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.lower() == "servicecode":
            code = value
    if not code:
        raise XwegError(ErrorCode.INVALID_REQUEST, "Missing serviceCode in message body", origin)
    try:
        check_part(code, "serviceCode")
    except IdentifierError as exc:
        raise XwegError(ErrorCode.INVALID_REQUEST, f"getOpenAPI: {exc}", origin) from None
    return code


def render_get_openapi(
    query: str,
    listings: Iterable[RestServiceListing],
    documents: Mapping[str, Mapping[str, Any]],
    *,
    origin: Origin = Origin.SERVER_PROXY,
) -> tuple[str, bytes]:
    """The ``getOpenAPI`` answer: ``(content type, masked OpenAPI document as JSON)``.

    ``query`` is the request's query string, ``listings`` the provider's REST services and
    ``documents`` their OpenAPI descriptions by service code.  Raises :class:`XwegError`
    blamed on ``origin``: ``InvalidRequest`` without a service code, ``UnknownService`` for
    a code the provider does not have, ``InternalError`` for a ``REST`` service ("Invalid
    service type: REST"), an ``OPENAPI`` service without a description in ``documents``, or
    a description that is not OpenAPI 3.
    """
    code = openapi_service_code(query, origin=origin)
    listing = next((item for item in listings if item.service.service_code == code), None)
    if listing is None:
        raise XwegError(ErrorCode.UNKNOWN_SERVICE, f"Service not found: {code}", origin)
    if listing.service_type is not RestServiceType.OPENAPI:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR, f"Invalid service type: {listing.service_type.value}", origin
        )
    document = documents.get(code)
    if document is None:
        raise XwegError(ErrorCode.INTERNAL_ERROR, f"no OpenAPI description is configured for {code}", origin)
    masked = mask_openapi_servers(document, origin=origin)
    return JSON_CONTENT_TYPE, json.dumps(masked, ensure_ascii=False).encode("utf-8")


def read_openapi(data: bytes, *, origin: Origin = Origin.SERVER_PROXY) -> dict[str, Any]:
    """An OpenAPI document from its JSON bytes (UTF-8, a byte order mark allowed).

    Raises ``InternalError`` blamed on ``origin`` for bytes that are not a JSON object, or
    that nest too deeply to read.  Its version is checked where it is served
    (:func:`mask_openapi_servers`); its size is bounded by whoever fetched it.
    """
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR,
            f"the OpenAPI description is not JSON: {type(exc).__name__}: {str(exc)[:200]}",
            origin,
        ) from None
    if not isinstance(document, dict):
        raise XwegError(ErrorCode.INTERNAL_ERROR, "the OpenAPI description is not a JSON object", origin)
    return document
