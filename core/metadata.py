"""X-Road's metadata services: the service codes a security server answers itself.

A security server answers these codes on behalf of a provider subsystem (or of itself)
instead of forwarding them to a backend, so no provider may publish a service under one
of them: a registry refuses to catalogue such a service, a security server's
configuration refuses to map one to a backend, and a WSDL or OpenAPI description that
declares one is refused.  Codes are compared exactly, as X-Road compares them.

Sources: X-Road's service metadata protocols (pr-meta for SOAP, pr-mrest for REST) and
the operational and environmental monitoring protocols, whose queries X-Road's server
proxy intercepts the same way.
"""

from __future__ import annotations

__all__ = [
    "LIST_CLIENTS",
    "LIST_METHODS",
    "ALLOWED_METHODS",
    "GET_WSDL",
    "GET_OPENAPI",
    "SOAP_METADATA_SERVICE_CODES",
    "REST_METADATA_SERVICE_CODES",
    "MONITORING_SERVICE_CODES",
    "RESERVED_SERVICE_CODES",
    "is_reserved_service_code",
]

#: ``GET /listClients`` on the security server: the instance's members and subsystems.
LIST_CLIENTS = "listClients"
#: A provider subsystem's services (SOAP: those described by WSDL; REST: by OpenAPI or endpoints).
LIST_METHODS = "listMethods"
#: Those of a provider subsystem's services that the calling client may use.
ALLOWED_METHODS = "allowedMethods"
#: The WSDL describing one SOAP service, its endpoint addresses masked.
GET_WSDL = "getWsdl"
#: The OpenAPI description of one REST service, its server URLs masked.
GET_OPENAPI = "getOpenAPI"

#: The codes answered for SOAP calls (pr-meta).
SOAP_METADATA_SERVICE_CODES: frozenset[str] = frozenset({LIST_METHODS, ALLOWED_METHODS, GET_WSDL})
#: The codes answered for REST calls (pr-mrest).
REST_METADATA_SERVICE_CODES: frozenset[str] = frozenset({LIST_METHODS, ALLOWED_METHODS, GET_OPENAPI})
#: Queries to a security server's own monitoring data (environmental and operational monitoring).
MONITORING_SERVICE_CODES: frozenset[str] = frozenset(
    {"getSecurityServerMetrics", "getSecurityServerOperationalData", "getSecurityServerHealthData"}
)
#: Every code a provider cannot publish a service under.  ``listCentralServices`` is a
#: metadata service of older X-Road releases; clients written for them may still call it.
RESERVED_SERVICE_CODES: frozenset[str] = (
    SOAP_METADATA_SERVICE_CODES
    | REST_METADATA_SERVICE_CODES
    | MONITORING_SERVICE_CODES
    | frozenset({LIST_CLIENTS, "listCentralServices"})
)


def is_reserved_service_code(code: str) -> bool:
    """True if ``code`` is answered by the security server itself and cannot name a provider's service."""
    return code in RESERVED_SERVICE_CODES
