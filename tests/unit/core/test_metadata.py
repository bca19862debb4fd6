"""The service codes security servers answer themselves."""

from __future__ import annotations

from core.metadata import (
    MONITORING_SERVICE_CODES,
    RESERVED_SERVICE_CODES,
    REST_METADATA_SERVICE_CODES,
    SOAP_METADATA_SERVICE_CODES,
    is_reserved_service_code,
)


def test_the_metadata_protocols_codes() -> None:
    assert SOAP_METADATA_SERVICE_CODES == {"listMethods", "allowedMethods", "getWsdl"}
    assert REST_METADATA_SERVICE_CODES == {"listMethods", "allowedMethods", "getOpenAPI"}
    assert RESERVED_SERVICE_CODES >= SOAP_METADATA_SERVICE_CODES | REST_METADATA_SERVICE_CODES
    assert RESERVED_SERVICE_CODES >= MONITORING_SERVICE_CODES | {"listClients"}


def test_codes_are_compared_exactly() -> None:
    assert is_reserved_service_code("getOpenAPI")
    assert not is_reserved_service_code("getOpenApi")
    assert not is_reserved_service_code("listMethods ")
    assert not is_reserved_service_code("meldeauskunft")
