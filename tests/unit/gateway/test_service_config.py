"""A provided service's protocol in the security server's configuration: REST by default, or SOAP."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.identifiers import ServiceId, SubsystemId
from core.messages import Protocol
from gateway.config import ConfigError, GatewayConfig, ServiceConfig
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
    service = config.service(MELDEAUSKUNFT)
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
    with pytest.raises(ConfigError, match="protocol must be a Protocol"):
        ServiceConfig(MELDEAUSKUNFT, "http://127.0.0.1/soap", 30.0, "soap")  # type: ignore[arg-type]
