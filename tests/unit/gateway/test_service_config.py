"""A provided service's protocol in the security server's configuration: REST by default, or SOAP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.identifiers import ServiceId, SubsystemId
from core.messages import Protocol
from gateway.config import GatewayConfig, ServiceConfig
from tests.unit.gateway.test_config import GOOD, load_error, write

MELDEAUSKUNFT = ServiceId(SubsystemId("NRW", "MUN", "05774032", "gewerbeamt"), "meldeauskunft", "v1")
SOAP_SERVICE = """
[[services]]
id = "NRW/MUN/05774032/gewerbeamt/meldeauskunft/v1"
protocol = "soap"
base_url = "http://127.0.0.1:5603/meldewesen/soap?mandant=bielefeld"
"""


def test_services_speak_rest_unless_they_say_otherwise(tmp_path: Path) -> None:
    config = GatewayConfig.load(write(tmp_path, GOOD), environ={})
    assert {service.protocol for service in config.services} == {Protocol.REST}


@pytest.mark.parametrize("written", ["soap", "SOAP", "Soap"])
def test_a_soap_service_keeps_its_endpoint_url(tmp_path: Path, written: str) -> None:
    text = GOOD + SOAP_SERVICE.replace('"soap"', f'"{written}"')
    config = GatewayConfig.load(write(tmp_path, text), environ={})
    service = config.seed_snapshot().service(MELDEAUSKUNFT)
    assert service == ServiceConfig(
        MELDEAUSKUNFT, "http://127.0.0.1:5603/meldewesen/soap?mandant=bielefeld", 30.0, Protocol.SOAP
    )


@pytest.mark.parametrize("value", ['"grpc"', '""', "1", "true", '["soap"]'])
def test_an_unknown_protocol_is_refused(tmp_path: Path, value: str) -> None:
    message = load_error(tmp_path, GOOD + SOAP_SERVICE.replace('"soap"', value))
    assert 'meldeauskunft/v1: protocol must be "rest" or "soap"' in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5603/soap#part", "without a fragment"),
        ("http:///soap", "without a fragment"),
        ("http://127.0.0.1:99999/soap", "base_url is not a valid URL"),
        ("http://[::1/soap", "base_url is not a valid URL"),
        ("ftp://127.0.0.1/soap", "base_url must be an http(s) URL"),
    ],
)
def test_a_soap_endpoint_must_be_a_usable_url(tmp_path: Path, url: str, expected: str) -> None:
    text = GOOD + SOAP_SERVICE.replace("http://127.0.0.1:5603/meldewesen/soap?mandant=bielefeld", url)
    message = load_error(tmp_path, text)
    assert "meldeauskunft/v1" in message and expected in message


def test_protocol_must_be_a_protocol() -> None:
    with pytest.raises(ValueError, match="protocol must be a Protocol"):
        ServiceConfig(MELDEAUSKUNFT, "http://127.0.0.1/soap", 30.0, "soap")  # type: ignore[arg-type]


# ------------------------------------------------------------------ service descriptions


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:5603/", "http://127.0.0.1:5603/?wsdl"),
        ("http://127.0.0.1:5603", "http://127.0.0.1:5603?wsdl"),
        (
            "http://127.0.0.1:5603/meldewesen/soap?mandant=bielefeld",
            "http://127.0.0.1:5603/meldewesen/soap?mandant=bielefeld&wsdl",
        ),
    ],
)
def test_a_soap_services_wsdl_is_at_its_endpoint_with_wsdl_appended(base_url: str, expected: str) -> None:
    assert ServiceConfig(MELDEAUSKUNFT, base_url, protocol=Protocol.SOAP).description_url == expected


def test_description_urls_are_read_from_the_file(tmp_path: Path) -> None:
    text = (
        GOOD
        + SOAP_SERVICE
        + 'wsdl_url = "http://127.0.0.1:5603/meldewesen/beschreibung.wsdl"\n'
        + """
[[services]]
id = "NRW/MUN/05774032/gewerbeamt/betriebe/v1"
base_url = "http://127.0.0.1:5604/api/v1"
openapi_url = "http://127.0.0.1:5604/openapi.json"
"""
    )
    config = GatewayConfig.load(write(tmp_path, text), environ={})
    soap = config.seed_snapshot().service(MELDEAUSKUNFT)
    assert soap is not None and soap.description_url == "http://127.0.0.1:5603/meldewesen/beschreibung.wsdl"
    rest = config.seed_snapshot().service(ServiceId(MELDEAUSKUNFT.provider, "betriebe", "v1"))
    assert rest is not None and rest.description_url == "http://127.0.0.1:5604/openapi.json"
    # A REST service without an OpenAPI document has no description to fetch.
    plain = config.seed_snapshot().service(ServiceId(MELDEAUSKUNFT.provider, "status"))
    assert plain is not None and plain.description_url is None


@pytest.mark.parametrize(
    ("protocol", "key", "expected"),
    [
        (Protocol.REST, "wsdl_url", "wsdl_url is for SOAP services only"),
        (Protocol.SOAP, "openapi_url", "openapi_url is for REST services only"),
    ],
)
def test_a_description_url_of_the_other_protocol_is_refused(
    protocol: Protocol, key: str, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        ServiceConfig(
            MELDEAUSKUNFT, "http://127.0.0.1/soap", protocol=protocol, **{key: "http://127.0.0.1/d"}
        )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///etc/passwd", "wsdl_url must be an http(s) URL"),
        ("/meldewesen?wsdl", "wsdl_url must be an http(s) URL"),
        ("http://127.0.0.1/soap?wsdl#x", "without a fragment"),
        ("http://127.0.0.1:99999/soap?wsdl", "wsdl_url is not a valid URL"),
    ],
)
def test_a_wsdl_url_must_be_a_usable_url(url: str, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        ServiceConfig(MELDEAUSKUNFT, "http://127.0.0.1/soap", protocol=Protocol.SOAP, wsdl_url=url)


# ------------------------------------------------------------------ reserved service codes


@pytest.mark.parametrize("code", ["listMethods", "allowedMethods", "getWsdl", "getOpenAPI", "listClients"])
def test_a_service_under_a_reserved_code_is_refused(tmp_path: Path, code: str) -> None:
    message = load_error(tmp_path, GOOD + SOAP_SERVICE.replace("/meldeauskunft/v1", f"/{code}/v1"))
    assert f"the service code {code!r} is reserved" in message


def test_reserved_codes_are_compared_exactly(tmp_path: Path) -> None:
    # X-Road compares codes exactly: another case is another code, and an ordinary one.
    text = GOOD + SOAP_SERVICE.replace("/meldeauskunft/v1", "/listmethods/v1")
    config = GatewayConfig.load(write(tmp_path, text), environ={})
    assert config.seed_snapshot().service(ServiceId(MELDEAUSKUNFT.provider, "listmethods", "v1")) is not None


def test_an_access_rule_for_a_metadata_service_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace(
        'service = "NRW/MUN/05774032/gewerbeamt/gewerbeanzeige/v1"',
        'service = "NRW/MUN/05774032/gewerbeamt/allowedMethods"',
    )
    message = load_error(tmp_path, text)
    assert "'allowedMethods' is a metadata service, which every client may call" in message
