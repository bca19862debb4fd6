"""The metadata services a security server answers itself (X-Road's pr-meta and pr-mrest).

* ``listClients`` (``GET /listClients`` on the client listener) is answered from the
  verified global configuration: :func:`list_clients`.
* The services a provider subsystem offers are asked of the provider's own security
  server.  SOAP ``listMethods``, ``allowedMethods`` and ``getWsdl`` and REST
  ``listMethods``, ``allowedMethods`` and ``getOpenAPI`` travel from the consumer's server
  as ordinary exchanges, signed and logged on both sides; the provider pipeline recognises
  them (:func:`is_metadata_call`), reads them before it logs the request
  (:func:`read_metadata_call`) and answers them here instead of calling a backend
  (:func:`answer_metadata_call`).  As in X-Road there is no access check: any client may
  learn what a provider offers, and ``allowedMethods`` narrows the list to the services
  the caller's access rights allow.

What is listed comes from this server's configuration: the provider subsystem's SOAP
services for SOAP, its REST services for REST.  Descriptions are fetched from the
backends when asked for (``ServiceEntry.description_url``): a WSDL is read offline in a
worker thread and must describe the service it is served for, then leaves with its
endpoint addresses masked; an OpenAPI document gives a REST service's endpoints and leaves
with its server URLs masked.  Rendering is the adapters' (:mod:`adapters.soap.metadata`,
:mod:`adapters.rest.metadata`); every refusal is the provider server's
(``Server.ServerProxy``) unless the caller broke the protocol.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from adapters.rest.metadata import (
    JSON_CONTENT_TYPE,
    RestEndpoint,
    RestServiceListing,
    RestServiceType,
    openapi_endpoints,
    openapi_service_code,
    read_openapi,
    render_get_openapi,
    render_rest_method_list,
)
from adapters.soap.inbound import SoapRequest
from adapters.soap.metadata import (
    MethodListRequest,
    WsdlRequest,
    allowed_methods_response_body,
    list_methods_response_body,
    read_metadata_request,
    render_get_wsdl_response,
)
from adapters.soap.outbound import SOAP_CONTENT_TYPE, render_soap_response
from adapters.soap.wsdl import MAX_WSDL_BYTES, read_wsdl
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ClientId, SubsystemId
from core.messages import Protocol, RequestHeader
from core.metadata import (
    ALLOWED_METHODS,
    GET_OPENAPI,
    REST_METADATA_SERVICE_CODES,
    SOAP_METADATA_SERVICE_CODES,
)
from gateway.runtime import Gateway
from gateway.serverconf.model import EndpointPattern, ServerConfSnapshot, ServiceEntry
from trust.globalconf import GlobalConf

__all__ = [
    "MAX_OPENAPI_BYTES",
    "ANY_ENDPOINT",
    "RestMetadataCall",
    "MetadataCall",
    "list_clients",
    "is_metadata_call",
    "read_metadata_call",
    "answer_metadata_call",
]

#: Largest OpenAPI document fetched from a backend, in bytes.
MAX_OPENAPI_BYTES = 4 * 1024 * 1024
#: A REST service without an OpenAPI description is listed with one endpoint: any method, any path.
ANY_ENDPOINT = RestEndpoint("*", "/**")

_ORIGIN = Origin.SERVER_PROXY
# What is answered: status, headers (lower-case names), body.
_Answer = tuple[int, tuple[tuple[str, str], ...], bytes]


def list_clients(conf: GlobalConf, instance: str | None = None) -> list[tuple[ClientId, str]]:
    """Every member and subsystem of ``conf``, each with its member's name.

    Each member comes before its subsystems, in the configuration's order.  ``instance``
    (X-Road's ``xRoadInstance`` parameter) names the instance to list; another instance
    than the configuration's has no clients known here.
    """
    if instance is not None and instance != conf.instance:
        return []
    clients: list[tuple[ClientId, str]] = []
    for member in conf.members:
        clients.append((member.id, member.name))
        clients.extend((member.id.subsystem(code), member.name) for code in member.subsystems)
    return clients


@dataclass(frozen=True, slots=True)
class RestMetadataCall:
    """A REST metadata call: its service code, and for ``getOpenAPI`` the service asked about."""

    service_code: str
    openapi_service_code: str | None = None


#: What :func:`read_metadata_call` read: a SOAP method list or WSDL request, or a REST call.
MetadataCall = MethodListRequest | WsdlRequest | RestMetadataCall


def is_metadata_call(header: RequestHeader) -> bool:
    """Whether ``header`` calls a metadata service, which the provider's server answers itself."""
    codes = SOAP_METADATA_SERVICE_CODES if header.protocol is Protocol.SOAP else REST_METADATA_SERVICE_CODES
    return header.service.service_code in codes


def read_metadata_call(
    serverconf: ServerConfSnapshot, header: RequestHeader, soap: SoapRequest | None
) -> MetadataCall:
    """(4) The metadata call ``header`` (and, for SOAP, ``soap``) makes, checked before it is logged.

    Raises :class:`XwegError`: ``UnknownService`` if the provider subsystem is not hosted
    here; ``InvalidRequest`` for a ``getWsdl`` body naming no service, and, blamed on the
    client, for a REST call that is not a plain ``GET`` of the service code or a
    ``getOpenAPI`` without a valid ``serviceCode``.
    """
    provider = header.service.provider
    if not serverconf.hosts(provider):
        raise XwegError(ErrorCode.UNKNOWN_SERVICE, f"unknown service {header.service}", _ORIGIN)
    if header.protocol is Protocol.SOAP:
        if soap is None:
            raise TypeError("a SOAP metadata call is read with its SOAP request")
        call = read_metadata_request(soap, origin=_ORIGIN)
        assert call is not None  # is_metadata_call chose the SOAP metadata codes
        return call
    code = header.service.service_code
    if header.method != "GET" or header.path:
        raise XwegError(
            ErrorCode.INVALID_REQUEST,
            f"{code} is called with GET /r1/{{provider}}/{code}, not {header.method} with a further path",
            Origin.CLIENT,
        )
    if code == GET_OPENAPI:
        return RestMetadataCall(code, openapi_service_code(header.query, origin=Origin.CLIENT))
    return RestMetadataCall(code)


async def answer_metadata_call(
    gateway: Gateway, conf: GlobalConf, header: RequestHeader, soap: SoapRequest | None, call: MetadataCall
) -> _Answer:
    """(6) The provider server's own answer to a metadata call: ``(status, headers, body)``.

    Raises :class:`XwegError` blamed on this server (see the module docstring):
    ``UnknownService`` for a service the provider does not have, ``InvalidServiceType`` for
    a ``getWsdl`` of a REST service, ``InvalidWsdl`` for a WSDL that does not describe the
    service, ``InternalError`` for a ``getOpenAPI`` of a service without an OpenAPI
    description, and the backend seam's errors when a description cannot be fetched.
    """
    if isinstance(call, RestMetadataCall):
        return await _answer_rest(gateway, conf, header, call)
    if soap is None:
        raise TypeError("a SOAP metadata call is answered with its SOAP request")
    if isinstance(call, WsdlRequest):
        return await _answer_get_wsdl(gateway, header.service.provider, soap, call)
    serverconf = gateway.serverconf.current()
    services = [s.id for s in serverconf.services_of(header.service.provider, Protocol.SOAP)]
    if call.allowed:
        services = [s for s in services if serverconf.allows(header.client, s, conf.group_members)]
        body = allowed_methods_response_body(services)
    else:
        body = list_methods_response_body(services)
    envelope = render_soap_response(soap, body, origin=_ORIGIN)
    return 200, (("content-type", SOAP_CONTENT_TYPE),), envelope


# --- SOAP getWsdl ----------------------------------------------------------------------------


async def _answer_get_wsdl(
    gateway: Gateway, provider: SubsystemId, soap: SoapRequest, call: WsdlRequest
) -> _Answer:
    wanted = call.service_id(provider)
    service = gateway.serverconf.current().service(wanted)
    if service is None:
        raise XwegError(ErrorCode.UNKNOWN_SERVICE, f"unknown service {wanted}", _ORIGIN)
    url = service.description_url
    if service.protocol is not Protocol.SOAP or url is None:
        raise XwegError(
            ErrorCode.INVALID_SERVICE_TYPE,
            f"service {service.id} is a {service.protocol.name} service and has no WSDL",
            _ORIGIN,
        )
    wsdl = await gateway.backends.fetch_description(
        url, service.timeout_s, MAX_WSDL_BYTES, verify_tls=service.verify_tls
    )
    # Reading and masking a WSDL of up to MAX_WSDL_BYTES is CPU work: off the event loop.
    content_type, body = await asyncio.to_thread(_checked_get_wsdl_response, soap, wsdl, service, call)
    return 200, (("content-type", content_type),), body


def _checked_get_wsdl_response(
    soap: SoapRequest, wsdl: bytes, service: ServiceEntry, call: WsdlRequest
) -> tuple[str, bytes]:
    """The getWsdl answer, once the WSDL is known to describe the service it is served for."""
    description = read_wsdl(wsdl, origin=_ORIGIN)
    version = service.id.service_version or call.service_version
    if description.find(service.id.service_code, version) is None:
        raise XwegError(
            ErrorCode.INVALID_WSDL,
            f"the backend's WSDL does not describe service {service.id}",
            _ORIGIN,
        )
    return render_get_wsdl_response(soap, wsdl, origin=_ORIGIN)


# --- REST ------------------------------------------------------------------------------------


async def _answer_rest(
    gateway: Gateway, conf: GlobalConf, header: RequestHeader, call: RestMetadataCall
) -> _Answer:
    serverconf = gateway.serverconf.current()
    provider = header.service.provider
    services = serverconf.services_of(provider, Protocol.REST)
    if call.openapi_service_code is not None:
        return await _answer_get_openapi(
            gateway, serverconf, provider, header.query, call.openapi_service_code, services
        )
    allowed: list[tuple[EndpointPattern, ...] | None] = [None] * len(services)
    if call.service_code == ALLOWED_METHODS:
        allowed = [serverconf.allowed_endpoints(header.client, s.id, conf.group_members) for s in services]
        granted = [(s, a) for s, a in zip(services, allowed, strict=True) if a is None or a]
        services, allowed = [s for s, _ in granted], [a for _, a in granted]
    listings = await asyncio.gather(
        *(_listing(gateway, serverconf, s, only) for s, only in zip(services, allowed, strict=True))
    )
    return 200, (("content-type", JSON_CONTENT_TYPE),), render_rest_method_list(listings)


async def _listing(
    gateway: Gateway,
    serverconf: ServerConfSnapshot,
    service: ServiceEntry,
    only: tuple[EndpointPattern, ...] | None = None,
) -> RestServiceListing:
    """A REST service as the method lists show it: the endpoints configured for it, else its
    OpenAPI document's, else any endpoint; ``only`` the endpoints a client was granted."""
    service_type = RestServiceType.OPENAPI if service.openapi_url is not None else RestServiceType.REST
    if only is not None:
        return RestServiceListing(
            service.id, service_type, tuple(RestEndpoint(e.method, e.path) for e in only)
        )
    configured = serverconf.endpoints_of(service.id)
    if configured:
        endpoints = tuple(RestEndpoint(e.method, e.path) for e in configured)
        return RestServiceListing(service.id, service_type, endpoints)
    if service.openapi_url is None:
        return RestServiceListing(service.id, RestServiceType.REST, (ANY_ENDPOINT,))
    document = await _openapi(gateway, service, service.openapi_url)
    try:
        endpoints = openapi_endpoints(document)
    except ValueError as exc:
        raise XwegError(
            ErrorCode.INTERNAL_ERROR, f"the OpenAPI description of {service.id} is unusable: {exc}", _ORIGIN
        ) from None
    return RestServiceListing(service.id, RestServiceType.OPENAPI, endpoints)


async def _openapi(gateway: Gateway, service: ServiceEntry, url: str) -> dict[str, object]:
    data = await gateway.backends.fetch_description(
        url, service.timeout_s, MAX_OPENAPI_BYTES, verify_tls=service.verify_tls
    )
    return read_openapi(data, origin=_ORIGIN)


async def _answer_get_openapi(
    gateway: Gateway,
    serverconf: ServerConfSnapshot,
    provider: SubsystemId,
    query: str,
    code: str,
    services: list[ServiceEntry],
) -> _Answer:
    if any(s.id.service_code == code for s in serverconf.services_of(provider, Protocol.SOAP)):
        # X-Road's words for a service described by a WSDL; clients look for them.
        raise XwegError(ErrorCode.INTERNAL_ERROR, "Invalid service type: WSDL", _ORIGIN)
    listings = [
        RestServiceListing(
            s.id, RestServiceType.OPENAPI if s.openapi_url is not None else RestServiceType.REST
        )
        for s in services
    ]
    service = next((s for s in services if s.id.service_code == code), None)
    documents = {}
    if service is not None and service.openapi_url is not None:
        documents[code] = await _openapi(gateway, service, service.openapi_url)
    content_type, body = render_get_openapi(query, listings, documents, origin=_ORIGIN)
    return 200, (("content-type", content_type),), body
