"""REST metadata services: method lists in X-Road's JSON shape, getOpenAPI with masked servers."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from adapters.rest.metadata import (
    JSON_CONTENT_TYPE,
    RestEndpoint,
    RestServiceListing,
    RestServiceType,
    mask_openapi_servers,
    openapi_endpoints,
    openapi_service_code,
    read_openapi,
    render_get_openapi,
    render_rest_method_list,
)
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ServiceId, SubsystemId

PADERBORN = SubsystemId("NRW", "MUN", "05774032", "gewerbeamt")
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Gewerbeanzeige", "version": "1.0.0"},
    "servers": [
        {"url": "https://gewerbe.paderborn.intern:8443/api/v1", "description": "Produktion"},
        {
            "url": "https://{umgebung}.paderborn.intern/api/{version}",
            "variables": {"umgebung": {"default": "test"}, "version": {"default": "v1"}},
        },
        {"url": "/relativ"},
    ],
    "paths": {
        "/anzeigen": {
            "get": {"responses": {"200": {"description": "ok"}}},
            "post": {
                "servers": [{"url": "http://upload.intern/anzeigen"}],
                "responses": {"201": {"description": "angelegt"}},
            },
        },
        "/anzeigen/{anzeigeId}": {
            "servers": [{"url": "//ohne-schema.intern"}],
            "get": {"responses": {"200": {"description": "ok"}}},
            "delete": {"responses": {"204": {"description": "gelöscht"}}},
            "parameters": [{"name": "anzeigeId", "in": "path", "required": True}],
        },
    },
}
ANZEIGE = RestServiceListing(
    ServiceId(PADERBORN, "gewerbeanzeige"),
    RestServiceType.OPENAPI,
    openapi_endpoints(OPENAPI),
)
STATISTIK = RestServiceListing(
    ServiceId(PADERBORN, "statistik", "v2"), RestServiceType.REST, (RestEndpoint("*", "/berichte/**"),)
)


def refused(code: ErrorCode, call: Any, origin: Origin = Origin.SERVER_PROXY) -> XwegError:
    with pytest.raises(XwegError) as info:
        call()
    assert (info.value.code, info.value.origin) == (code, origin), info.value
    return info.value


def test_openapi_endpoints_are_listed_as_x_road_lists_them() -> None:
    assert openapi_endpoints(OPENAPI) == (
        RestEndpoint("GET", "/anzeigen"),
        RestEndpoint("POST", "/anzeigen"),
        RestEndpoint("GET", "/anzeigen/*"),
        RestEndpoint("DELETE", "/anzeigen/*"),
    )
    assert openapi_endpoints({"openapi": "3.1.0"}) == ()
    with pytest.raises(ValueError):
        openapi_endpoints({"paths": []})


def test_method_list_has_x_roads_json_shape() -> None:
    data = json.loads(render_rest_method_list([ANZEIGE, STATISTIK]))
    assert data == {
        "service": [
            {
                "member_class": "MUN",
                "member_code": "05774032",
                "object_type": "SERVICE",
                "service_code": "gewerbeanzeige",
                "service_type": "OPENAPI",
                "subsystem_code": "gewerbeamt",
                "xroad_instance": "NRW",
                "endpoint_list": [
                    {"method": "GET", "path": "/anzeigen"},
                    {"method": "POST", "path": "/anzeigen"},
                    {"method": "GET", "path": "/anzeigen/*"},
                    {"method": "DELETE", "path": "/anzeigen/*"},
                ],
            },
            {
                "member_class": "MUN",
                "member_code": "05774032",
                "object_type": "SERVICE",
                "service_code": "statistik",
                "service_version": "v2",
                "service_type": "REST",
                "subsystem_code": "gewerbeamt",
                "xroad_instance": "NRW",
                "endpoint_list": [{"method": "*", "path": "/berichte/**"}],
            },
        ]
    }
    assert list(data["service"][0]) == [
        "member_class",
        "member_code",
        "object_type",
        "service_code",
        "service_type",
        "subsystem_code",
        "xroad_instance",
        "endpoint_list",
    ]


def test_metadata_services_are_never_listed() -> None:
    reserved = RestServiceListing(ServiceId(PADERBORN, "getOpenAPI"), RestServiceType.REST)
    assert json.loads(render_rest_method_list([reserved])) == {"service": []}


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/a"), ("GET", "a"), ("G ET", "/a"), ("GET", ""), ("GET", "/a\nb")]
)
def test_endpoints_validate(method: str, path: str) -> None:
    with pytest.raises(ValueError):
        RestEndpoint(method, path)


def test_server_urls_lose_scheme_and_host_everywhere() -> None:
    original = copy.deepcopy(OPENAPI)
    masked = mask_openapi_servers(OPENAPI)
    assert OPENAPI == original  # the configured document is not changed
    assert masked["servers"] == [
        {"url": "/api/v1", "description": "Produktion"},
        {"url": "/api/{version}", "variables": {"version": {"default": "v1"}}},
        {"url": "/relativ"},
    ]
    assert masked["paths"]["/anzeigen"]["post"]["servers"] == [{"url": "/anzeigen"}]
    assert masked["paths"]["/anzeigen/{anzeigeId}"]["servers"] == [{"url": "/"}]
    assert "intern" not in json.dumps(masked)
    assert masked["paths"]["/anzeigen"]["get"] == OPENAPI["paths"]["/anzeigen"]["get"]


def test_variables_used_only_in_the_host_are_dropped() -> None:
    document = {"servers": [{"url": "https://{host}/", "variables": {"host": {"default": "db.intern"}}}]}
    assert mask_openapi_servers(document) == {"servers": [{"url": "/"}]}


def test_only_openapi_3_is_served() -> None:
    error = refused(ErrorCode.INTERNAL_ERROR, lambda: mask_openapi_servers({"openapi": "2.0", "servers": []}))
    assert "Incompatible openapi version" in error.message
    assert mask_openapi_servers({"openapi": "3.1.0"}) == {"openapi": "3.1.0"}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("serviceCode=gewerbeanzeige", "gewerbeanzeige"),
        ("servicecode=gewerbeanzeige", "gewerbeanzeige"),
        ("other=1&serviceCode=a&SERVICECODE=gewerbeanzeige", "gewerbeanzeige"),
        ("serviceCode=gewerbe%2Danzeige", "gewerbe-anzeige"),
    ],
)
def test_the_service_code_comes_from_the_query(query: str, code: str) -> None:
    assert openapi_service_code(query) == code


@pytest.mark.parametrize("query", ["", "serviceCode=", "service=gewerbeanzeige", "serviceCode"])
def test_a_missing_service_code_is_refused_as_x_road_refuses_it(query: str) -> None:
    error = refused(ErrorCode.INVALID_REQUEST, lambda: openapi_service_code(query))
    assert error.message == "Missing serviceCode in message body"


def test_an_illegal_service_code_is_refused() -> None:
    refused(ErrorCode.INVALID_REQUEST, lambda: openapi_service_code("serviceCode=a%2Fb"))
    refused(
        ErrorCode.INVALID_REQUEST,
        lambda: openapi_service_code("serviceCode=a/b", origin=Origin.CLIENT),
        Origin.CLIENT,
    )


def test_get_openapi_answers_the_masked_document() -> None:
    content_type, body = render_get_openapi(
        "serviceCode=gewerbeanzeige", [STATISTIK, ANZEIGE], {"gewerbeanzeige": OPENAPI}
    )
    assert content_type == JSON_CONTENT_TYPE
    assert json.loads(body) == mask_openapi_servers(OPENAPI)


def test_get_openapi_refusals() -> None:
    documents = {"gewerbeanzeige": OPENAPI, "statistik": OPENAPI}
    listings = [ANZEIGE, STATISTIK]
    error = refused(
        ErrorCode.INTERNAL_ERROR, lambda: render_get_openapi("serviceCode=statistik", listings, documents)
    )
    assert error.message == "Invalid service type: REST"  # clients look for this text
    refused(ErrorCode.UNKNOWN_SERVICE, lambda: render_get_openapi("serviceCode=kfz", listings, documents))
    refused(ErrorCode.INTERNAL_ERROR, lambda: render_get_openapi("serviceCode=gewerbeanzeige", listings, {}))
    refused(ErrorCode.INVALID_REQUEST, lambda: render_get_openapi("", listings, documents))


def test_read_openapi_reads_a_json_object() -> None:
    data = json.dumps(OPENAPI).encode()
    assert read_openapi(data) == OPENAPI
    assert read_openapi(b"\xef\xbb\xbf" + data) == OPENAPI  # a byte order mark is allowed


@pytest.mark.parametrize(
    "data", [b"openapi: 3.0.3\n", b"[]", b'"openapi"', b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000]
)
def test_read_openapi_refuses_anything_else(data: bytes) -> None:
    refused(ErrorCode.INTERNAL_ERROR, lambda: read_openapi(data))
    refused(ErrorCode.INTERNAL_ERROR, lambda: read_openapi(data, origin=Origin.CLIENT), Origin.CLIENT)
