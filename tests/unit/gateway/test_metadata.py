"""The metadata services the provider's security server answers itself, and listClients.

The pipeline around them (signing, logging, transport) runs for real in
``tests/integration/test_metadata_services.py``; here a provider's configuration, access
rights and backends (descriptions served from memory) are given, and what is answered
(or refused) is checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from lxml import etree

from adapters.soap.client import header_elements
from adapters.soap.envelope import NS_ID, NS_SOAP_ENV, NS_XROAD, XRoadHeader
from adapters.soap.inbound import SoapRequest, parse_soap_request, to_core_request
from adapters.soap.response import check_request_hash, check_response_consistent, parse_soap_response
from adapters.soap.wsdl import MASKED_ENDPOINT, MAX_WSDL_BYTES, mask_endpoints
from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ClientId, MemberId, ServiceId, SubsystemId
from core.messages import Protocol, RequestHeader, sha512
from gateway.config import GatewayConfig, Listener, ServiceConfig
from gateway.metadata import (
    ANY_ENDPOINT,
    MAX_OPENAPI_BYTES,
    RestMetadataCall,
    answer_metadata_call,
    is_metadata_call,
    list_clients,
    read_metadata_call,
)
from gateway.pipeline.provider import peer_hosts_client
from gateway.runtime import Gateway
from gateway.serverconf.live import LiveServerConf
from gateway.serverconf.model import AccessGrant, ClientEntry
from tests.unit.gateway.conftest import GROUP, MEMBER, OTHER_MEMBER, OTHER_SERVER, SERVER, Federation
from trust.globalconf import GlobalConf

WSDL = (Path(__file__).parents[1] / "adapters" / "soap" / "wsdl" / "meldeauskunft.wsdl").read_bytes()
PROVIDER = MEMBER.subsystem("gewerbeamt")  # hosted by SERVER, as global configuration says
NEIGHBOUR = MEMBER.subsystem("standesamt")  # hosted here too, with services of its own
NOT_HOSTED = MemberId("NRW", "MUN", "05711000").subsystem("meldewesen")
CLIENT = OTHER_MEMBER.subsystem("arbeitsschutz")  # a member of GROUP
STRANGER = MemberId("NRW", "MUN", "05711000").subsystem("ordnungsamt")

MELDEAUSKUNFT = PROVIDER.service("meldeauskunft", "v1")
RUECKMELDUNG = PROVIDER.service("rueckmeldung", "v1")
GEBURTSURKUNDE = PROVIDER.service("geburtsurkunde", "v1")  # its backend's WSDL describes other services
ANZEIGEN = PROVIDER.service("anzeigen", "v1")
STATISTIK = PROVIDER.service("statistik")
SOAP_ENDPOINT = "http://melderegister.intern:8080/soap"
OPENAPI_URL = "http://gewerbe.intern:8443/openapi.json"
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Gewerbeanzeigen", "version": "1"},
    "servers": [{"url": "https://gewerbe.intern:8443/api/v1"}],
    "paths": {"/anzeigen": {"get": {}, "post": {}}, "/anzeigen/{id}": {"delete": {}}},
}

SERVICES = (
    ServiceConfig(MELDEAUSKUNFT, SOAP_ENDPOINT, 7.0, Protocol.SOAP),
    ServiceConfig(ANZEIGEN, "http://gewerbe.intern:8443/api/v1", 9.0, Protocol.REST, openapi_url=OPENAPI_URL),
    ServiceConfig(RUECKMELDUNG, SOAP_ENDPOINT, 7.0, Protocol.SOAP),
    ServiceConfig(GEBURTSURKUNDE, "http://standesamt.intern/soap", 5.0, Protocol.SOAP),
    ServiceConfig(STATISTIK, "http://statistik.intern/", 30.0, Protocol.REST),
    ServiceConfig(
        NEIGHBOUR.service("personenstand", "v1"), "http://standesamt.intern/ps", 5.0, Protocol.SOAP
    ),
)
ACCESS = (
    AccessGrant(PROVIDER, "meldeauskunft", CLIENT),
    AccessGrant(PROVIDER, "rueckmeldung", STRANGER),
    AccessGrant(PROVIDER, "statistik", GROUP),
    AccessGrant(PROVIDER, "anzeigen", STRANGER),
)


@dataclass
class Backends:
    """Serves service descriptions from memory and records what was fetched."""

    documents: dict[str, bytes | XwegError] = field(default_factory=dict)
    fetched: list[tuple[str, float, int]] = field(default_factory=list)

    async def fetch_description(
        self, url: str, timeout_s: float, max_bytes: int, *, verify_tls: bool = True
    ) -> bytes:
        assert verify_tls  # every service here checks its backend's certificate
        self.fetched.append((url, timeout_s, max_bytes))
        document = self.documents[url]
        if isinstance(document, XwegError):
            raise document
        return document


@dataclass
class Provider:
    gateway: Gateway
    backends: Backends
    conf: GlobalConf


@pytest.fixture
def provider(federation: Federation, tmp_path: Path) -> Provider:
    config = GatewayConfig(
        server_id=SERVER,
        anchor_path=tmp_path / "anchor.json",
        data_dir=tmp_path,
        client_listener=Listener("127.0.0.1", 0),
        peer_listener=Listener("127.0.0.1", 0),
        auth_key_path=tmp_path / "auth.key",
        auth_certificate_path=tmp_path / "auth.pem",
        sign_keys=(),
        key_passphrase=None,
        clients=(ClientEntry(PROVIDER), ClientEntry(NEIGHBOUR)),
        services=SERVICES,
        access=ACCESS,
    )
    backends = Backends(
        {
            SOAP_ENDPOINT + "?wsdl": WSDL,
            "http://standesamt.intern/soap?wsdl": WSDL,
            OPENAPI_URL: json.dumps(OPENAPI).encode(),
        }
    )
    gateway = cast(
        Gateway,
        SimpleNamespace(config=config, serverconf=LiveServerConf(config.seed_snapshot()), backends=backends),
    )
    return Provider(gateway, backends, federation.conf(1))


def soap_call(service: ServiceId, body: str, client: ClientId = CLIENT) -> tuple[RequestHeader, SoapRequest]:
    header = XRoadHeader(client, service, "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10", user_id="DE0000000001")
    envelope = etree.Element(
        f"{{{NS_SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": NS_SOAP_ENV, "xrd": NS_XROAD, "id": NS_ID}
    )
    etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Header").extend(header_elements(header))
    etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Body").append(etree.fromstring(body))
    soap = parse_soap_request(etree.tostring(envelope), content_type="text/xml; charset=UTF-8")
    return to_core_request(soap).header, soap


def get_wsdl(code: str, version: str | None = None) -> str:
    version_element = f"<xrd:serviceVersion>{version}</xrd:serviceVersion>" if version else ""
    return (
        f"<xrd:getWsdl xmlns:xrd='{NS_XROAD}'><xrd:serviceCode>{code}</xrd:serviceCode>"
        f"{version_element}</xrd:getWsdl>"
    )


def rest_call(
    service: ServiceId, query: str = "", *, method: str = "GET", path: str = "", client: ClientId = CLIENT
) -> RequestHeader:
    return RequestHeader(
        protocol=Protocol.REST,
        client=client,
        service=service,
        message_id="m-1",
        method=method,
        path=path,
        query=query,
        headers=(),
        body_sha512=sha512(b""),
        body_size=0,
    )


async def answer_soap(provider: Provider, service: ServiceId, body: str, client: ClientId = CLIENT) -> Any:
    header, soap = soap_call(service, body, client)
    call = read_metadata_call(provider.gateway.serverconf.current(), header, soap)
    status, headers, answer = await answer_metadata_call(provider.gateway, provider.conf, header, soap, call)
    content_type = dict(headers)["content-type"]
    response = parse_soap_response(answer, content_type=content_type)
    # A metadata answer is an X-Road answer to this very request like any other.
    check_request_hash(soap, response)
    check_response_consistent(soap.header, response)
    return status, content_type, response


async def answer_rest(provider: Provider, header: RequestHeader) -> tuple[int, str, Any]:
    call = read_metadata_call(provider.gateway.serverconf.current(), header, None)
    status, headers, body = await answer_metadata_call(provider.gateway, provider.conf, header, None, call)
    return status, dict(headers)["content-type"], json.loads(body)


def services_of(response: Any) -> list[ServiceId]:
    element = etree.fromstring(response.body_xml)
    found = []
    for item in element.iterfind(f"{{{NS_XROAD}}}service"):
        provider = SubsystemId(*(item.findtext(f"{{{NS_ID}}}{name}") or "" for name in _PROVIDER_PARTS))
        code = item.findtext(f"{{{NS_ID}}}serviceCode") or ""
        found.append(ServiceId(provider, code, item.findtext(f"{{{NS_ID}}}serviceVersion")))
    return found


_PROVIDER_PARTS = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode")


def refused(code: ErrorCode, origin: Origin, make: Callable[[], object]) -> XwegError:
    with pytest.raises(XwegError) as info:
        make()
    assert (info.value.code, info.value.origin) == (code, origin), info.value
    return info.value


async def refused_async(code: ErrorCode, origin: Origin, awaitable: Any) -> XwegError:
    with pytest.raises(XwegError) as info:
        await awaitable
    assert (info.value.code, info.value.origin) == (code, origin), info.value
    return info.value


# ------------------------------------------------------------------ listClients


def test_list_clients_lists_members_then_their_subsystems_with_member_names(federation: Federation) -> None:
    conf = federation.conf(1)
    assert list_clients(conf) == [
        (MEMBER, "Stadt Paderborn"),
        (MEMBER.subsystem("gewerbeamt"), "Stadt Paderborn"),
        (OTHER_MEMBER, "Bezirksregierung Detmold"),
        (OTHER_MEMBER.subsystem("arbeitsschutz"), "Bezirksregierung Detmold"),
    ]
    assert list_clients(conf, "NRW") == list_clients(conf)
    assert list_clients(conf, "BY") == []


# ------------------------------------------------------------------ which calls are metadata calls


def test_metadata_calls_are_recognised_by_protocol_and_exact_code() -> None:
    soap = soap_call(PROVIDER.service("getWsdl"), get_wsdl("meldeauskunft"))[0]
    assert is_metadata_call(soap)
    assert is_metadata_call(rest_call(PROVIDER.service("getOpenAPI")))
    # getOpenAPI is REST's, getWsdl SOAP's; codes are compared exactly.
    assert not is_metadata_call(rest_call(PROVIDER.service("getWsdl")))
    assert not is_metadata_call(soap_call(PROVIDER.service("getOpenAPI"), "<getOpenAPI/>")[0])
    assert not is_metadata_call(rest_call(PROVIDER.service("listmethods")))
    assert not is_metadata_call(rest_call(MELDEAUSKUNFT))


def test_a_server_hosts_its_clients_and_its_owner_for_metadata_calls_only(federation: Federation) -> None:
    conf = federation.conf(1)
    assert peer_hosts_client(conf, SERVER, rest_call(ANZEIGEN, client=PROVIDER))
    assert not peer_hosts_client(conf, OTHER_SERVER, rest_call(ANZEIGEN, client=PROVIDER))
    # The owner member is a client of its own server when it asks a metadata service ...
    get_wsdl_call = soap_call(NOT_HOSTED.service("getWsdl"), get_wsdl("x"), client=MEMBER)[0]
    assert peer_hosts_client(conf, SERVER, get_wsdl_call)
    assert peer_hosts_client(conf, SERVER, rest_call(NOT_HOSTED.service("listMethods"), client=MEMBER))
    # ... and for nothing else; nor for another server.
    assert not peer_hosts_client(conf, SERVER, rest_call(ANZEIGEN, client=MEMBER))
    assert not peer_hosts_client(conf, OTHER_SERVER, get_wsdl_call)


# ------------------------------------------------------------------ reading calls


def test_a_provider_not_hosted_here_has_no_metadata_services(provider: Provider) -> None:
    header, soap = soap_call(NOT_HOSTED.service("listMethods"), f"<xrd:listMethods xmlns:xrd='{NS_XROAD}'/>")
    refused(
        ErrorCode.UNKNOWN_SERVICE,
        Origin.SERVER_PROXY,
        lambda: read_metadata_call(provider.gateway.serverconf.current(), header, soap),
    )


def test_a_get_wsdl_naming_no_service_is_the_providers_servers_invalid_request(provider: Provider) -> None:
    header, soap = soap_call(PROVIDER.service("getWsdl"), f"<xrd:getWsdl xmlns:xrd='{NS_XROAD}'/>")
    refused(
        ErrorCode.INVALID_REQUEST,
        Origin.SERVER_PROXY,
        lambda: read_metadata_call(provider.gateway.serverconf.current(), header, soap),
    )


@pytest.mark.parametrize(
    "header",
    [
        rest_call(PROVIDER.service("listMethods"), method="POST"),
        rest_call(PROVIDER.service("allowedMethods"), path="/more"),
        rest_call(PROVIDER.service("getOpenAPI")),
        rest_call(PROVIDER.service("getOpenAPI"), "serviceCode=a%2Fb"),
    ],
    ids=["post", "further-path", "no-service-code", "invalid-service-code"],
)
def test_a_rest_call_that_breaks_the_protocol_is_the_clients_invalid_request(
    provider: Provider, header: RequestHeader
) -> None:
    refused(
        ErrorCode.INVALID_REQUEST,
        Origin.CLIENT,
        lambda: read_metadata_call(provider.gateway.serverconf.current(), header, None),
    )


def test_get_openapi_names_its_service_code(provider: Provider) -> None:
    header = rest_call(PROVIDER.service("getOpenAPI"), "serviceCode=anzeigen")
    assert read_metadata_call(provider.gateway.serverconf.current(), header, None) == RestMetadataCall(
        "getOpenAPI", "anzeigen"
    )


# ------------------------------------------------------------------ SOAP listMethods, allowedMethods


async def test_list_methods_lists_the_providers_soap_services_from_configuration(provider: Provider) -> None:
    status, content_type, response = await answer_soap(
        provider, PROVIDER.service("listMethods"), f"<xrd:listMethods xmlns:xrd='{NS_XROAD}'/>"
    )
    assert (status, content_type) == (200, "text/xml; charset=UTF-8")
    assert etree.QName(etree.fromstring(response.body_xml)).localname == "listMethodsResponse"
    # Neither REST services nor another hosted subsystem's; no backend was asked.
    assert services_of(response) == [MELDEAUSKUNFT, RUECKMELDUNG, GEBURTSURKUNDE]
    assert provider.backends.fetched == []


async def test_allowed_methods_lists_what_the_caller_may_call(provider: Provider) -> None:
    body = f"<xrd:allowedMethods xmlns:xrd='{NS_XROAD}'/>"
    _, _, response = await answer_soap(provider, PROVIDER.service("allowedMethods"), body)
    assert etree.QName(etree.fromstring(response.body_xml)).localname == "allowedMethodsResponse"
    assert services_of(response) == [MELDEAUSKUNFT]
    _, _, response = await answer_soap(provider, PROVIDER.service("allowedMethods"), body, client=STRANGER)
    assert services_of(response) == [RUECKMELDUNG]
    nobody = OTHER_MEMBER.subsystem("andere")
    _, _, response = await answer_soap(provider, PROVIDER.service("allowedMethods"), body, client=nobody)
    assert services_of(response) == []


# ------------------------------------------------------------------ SOAP getWsdl


async def test_get_wsdl_fetches_the_backends_wsdl_and_answers_it_masked(provider: Provider) -> None:
    status, content_type, response = await answer_soap(
        provider, PROVIDER.service("getWsdl"), get_wsdl("meldeauskunft", "v1")
    )
    assert status == 200
    assert content_type.startswith('multipart/related; type="text/xml"; charset=UTF-8; boundary=xroad')
    (attachment,) = response.attachments
    assert attachment.data == mask_endpoints(WSDL)
    assert b"bielefeld.intern" not in attachment.data and MASKED_ENDPOINT.encode() in attachment.data
    # From the default address, with the service's timeout and the WSDL size cap.
    assert provider.backends.fetched == [(SOAP_ENDPOINT + "?wsdl", 7.0, MAX_WSDL_BYTES)]


async def test_get_wsdl_without_a_version_serves_the_configured_one(provider: Provider) -> None:
    _, _, response = await answer_soap(provider, PROVIDER.service("getWsdl"), get_wsdl("rueckmeldung"))
    body = etree.fromstring(response.body_xml)
    assert body.findtext(f"{{{NS_XROAD}}}serviceCode") == "rueckmeldung"
    assert response.attachments[0].data == mask_endpoints(WSDL)


@pytest.mark.parametrize(
    ("code", "version", "error"),
    [
        ("gibtesnicht", None, ErrorCode.UNKNOWN_SERVICE),
        ("meldeauskunft", "v2", ErrorCode.UNKNOWN_SERVICE),
        ("anzeigen", "v1", ErrorCode.INVALID_SERVICE_TYPE),
        ("statistik", None, ErrorCode.INVALID_SERVICE_TYPE),
        # The backend's WSDL describes meldeauskunft and rueckmeldung, not this service.
        ("geburtsurkunde", "v1", ErrorCode.INVALID_WSDL),
    ],
)
async def test_get_wsdl_refusals(
    provider: Provider, code: str, version: str | None, error: ErrorCode
) -> None:
    await refused_async(
        error,
        Origin.SERVER_PROXY,
        answer_soap(provider, PROVIDER.service("getWsdl"), get_wsdl(code, version)),
    )


async def test_a_backend_that_cannot_serve_its_wsdl_fails_the_call(provider: Provider) -> None:
    down = XwegError(ErrorCode.NETWORK_ERROR, "cannot reach the backend", Origin.SERVER_PROXY)
    provider.backends.documents[SOAP_ENDPOINT + "?wsdl"] = down
    error = await refused_async(
        ErrorCode.NETWORK_ERROR,
        Origin.SERVER_PROXY,
        answer_soap(provider, PROVIDER.service("getWsdl"), get_wsdl("meldeauskunft")),
    )
    assert error is down


async def test_a_hostile_wsdl_is_refused(provider: Provider) -> None:
    provider.backends.documents[SOAP_ENDPOINT + "?wsdl"] = (
        b'<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><d>&e;</d>'
    )
    await refused_async(
        ErrorCode.INVALID_XML,
        Origin.SERVER_PROXY,
        answer_soap(provider, PROVIDER.service("getWsdl"), get_wsdl("meldeauskunft")),
    )


# ------------------------------------------------------------------ REST


ANZEIGEN_ENDPOINTS = [
    {"method": "GET", "path": "/anzeigen"},
    {"method": "POST", "path": "/anzeigen"},
    {"method": "DELETE", "path": "/anzeigen/*"},
]


async def test_rest_list_methods_lists_rest_services_with_their_endpoints(provider: Provider) -> None:
    status, content_type, body = await answer_rest(provider, rest_call(PROVIDER.service("listMethods")))
    assert (status, content_type) == (200, "application/json; charset=UTF-8")
    listed = [(s["service_code"], s["service_type"], s["endpoint_list"]) for s in body["service"]]
    assert listed == [
        ("anzeigen", "OPENAPI", ANZEIGEN_ENDPOINTS),
        ("statistik", "REST", [{"method": ANY_ENDPOINT.method, "path": ANY_ENDPOINT.path}]),
    ]
    assert provider.backends.fetched == [(OPENAPI_URL, 9.0, MAX_OPENAPI_BYTES)]


async def test_rest_allowed_methods_follow_access_rights_and_global_groups(provider: Provider) -> None:
    _, _, body = await answer_rest(provider, rest_call(PROVIDER.service("allowedMethods")))
    # CLIENT may call statistik as a member of GROUP, in global configuration.
    assert [s["service_code"] for s in body["service"]] == ["statistik"]
    assert provider.backends.fetched == []  # statistik has no OpenAPI description to read
    _, _, body = await answer_rest(provider, rest_call(PROVIDER.service("allowedMethods"), client=STRANGER))
    assert [(s["service_code"], s["endpoint_list"]) for s in body["service"]] == [
        ("anzeigen", ANZEIGEN_ENDPOINTS)
    ]


async def test_get_openapi_answers_the_document_with_its_servers_masked(provider: Provider) -> None:
    header = rest_call(PROVIDER.service("getOpenAPI"), "serviceCode=anzeigen")
    status, content_type, document = await answer_rest(provider, header)
    assert (status, content_type) == (200, "application/json; charset=UTF-8")
    assert document == {**OPENAPI, "servers": [{"url": "/api/v1"}]}


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        ("statistik", ErrorCode.INTERNAL_ERROR, "Invalid service type: REST"),
        ("meldeauskunft", ErrorCode.INTERNAL_ERROR, "Invalid service type: WSDL"),
        ("gibtesnicht", ErrorCode.UNKNOWN_SERVICE, "gibtesnicht"),
    ],
)
async def test_get_openapi_refusals(provider: Provider, code: str, error: ErrorCode, message: str) -> None:
    header = rest_call(PROVIDER.service("getOpenAPI"), f"serviceCode={code}")
    refusal = await refused_async(error, Origin.SERVER_PROXY, answer_rest(provider, header))
    assert message in refusal.message


@pytest.mark.parametrize("document", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_an_unreadable_openapi_document_is_an_internal_error(
    provider: Provider, document: bytes
) -> None:
    provider.backends.documents[OPENAPI_URL] = document
    header = rest_call(PROVIDER.service("getOpenAPI"), "serviceCode=anzeigen")
    await refused_async(ErrorCode.INTERNAL_ERROR, Origin.SERVER_PROXY, answer_rest(provider, header))
    await refused_async(
        ErrorCode.INTERNAL_ERROR,
        Origin.SERVER_PROXY,
        answer_rest(provider, rest_call(PROVIDER.service("listMethods"))),
    )
