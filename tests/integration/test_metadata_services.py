"""X-Road's metadata services through a real federation: a registry and two security servers.

Stadt Bielefeld's security server provides its residents' register (the ``meldewesen``
demo SOAP backend, whose WSDL is at ``GET /?wsdl``) and two REST services, one described
by an OpenAPI document; Stadt Delbrück's information systems ask Delbrück's security server
what Bielefeld offers.  ``listClients`` is answered by Delbrück's server from global
configuration; every other metadata call travels to Bielefeld's server, which answers it
itself, signed and logged like any answer.  Information systems are played by plain HTTP
clients and by the zeep-based :class:`adapters.soap.client.XRoadClient`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from lxml import etree

from adapters.soap.client import XRoadClient, header_elements
from adapters.soap.envelope import NS_ID, NS_SOAP_ENV, NS_XROAD, XRoadHeader
from adapters.soap.response import parse_soap_response
from adapters.soap.wsdl import MASKED_ENDPOINT, mask_endpoints, read_wsdl
from adapters.soap.xsd import relocate_schemas, xml_schema
from core.identifiers import ClientId, SecurityServerId, ServiceId, SubsystemId
from core.messages import RequestHeader
from gateway.messagelog.record import LogRecord
from gateway.messagelog.store import MessageLogStore
from tests.integration.conftest import prepare_federation
from xweg.demo import call
from xweg.federation import (
    BIELEFELD,
    DELBRUECK,
    FederationPlan,
    Layout,
    MemberPlan,
    RunningFederation,
    ServerPlan,
    ServicePlan,
)

pytestmark = pytest.mark.integration

DELBRUECK_MELDEWESEN = DELBRUECK.subsystem("meldewesen")
DELBRUECK_GEWERBEAMT = DELBRUECK.subsystem("gewerbeamt")
BIELEFELD_MELDEWESEN = BIELEFELD.subsystem("meldewesen")
MELDEAUSKUNFT = BIELEFELD_MELDEWESEN.service("meldeauskunft", "v1")  # Delbrück's meldewesen only
RUECKMELDUNG = BIELEFELD_MELDEWESEN.service("rueckmeldung", "v1")  # both of Delbrück's subsystems
ANZEIGEN = BIELEFELD_MELDEWESEN.service("anzeigen", "v1")  # REST, with an OpenAPI description
STATISTIK = BIELEFELD_MELDEWESEN.service("statistik", "v1")  # REST, without one

TEXT_XML = "text/xml; charset=UTF-8"
SOAP_PATH = "/"
# Where Bielefeld's OpenAPI document claims its API lives: it must never leave Bielefeld.
INTERNAL_API = "http://gewerbe.bielefeld.intern:8443/api/v1"
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Gewerbeanzeigen", "version": "1.0"},
    "servers": [{"url": INTERNAL_API}],
    "paths": {
        "/anzeigen": {"get": {"responses": {"200": {"description": "ok"}}}, "post": {"responses": {}}},
        "/anzeigen/{anzeigeId}": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
}


class _OpenApiHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 -- the name http.server calls
        if self.path != "/openapi.json":
            self.send_error(404)
            return
        body = json.dumps(OPENAPI).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def metadata_plan() -> FederationPlan:
    both = (DELBRUECK_MELDEWESEN.slash(), DELBRUECK_GEWERBEAMT.slash())
    return FederationPlan(
        members=(
            MemberPlan(DELBRUECK, "Stadt Delbrück", ("meldewesen", "gewerbeamt")),
            MemberPlan(BIELEFELD, "Stadt Bielefeld", ("meldewesen",)),
        ),
        servers=(
            ServerPlan(
                "bielefeld",
                "Stadt Bielefeld",
                SecurityServerId(BIELEFELD, "ss1"),
                (BIELEFELD_MELDEWESEN,),
                (
                    ServicePlan(
                        MELDEAUSKUNFT,
                        "meldewesen",
                        "Meldeauskunft",
                        (DELBRUECK_MELDEWESEN.slash(),),
                        protocol="soap",
                    ),
                    ServicePlan(RUECKMELDUNG, "meldewesen", "Rückmeldung", both, protocol="soap"),
                    ServicePlan(
                        ANZEIGEN, "gewerbeanzeige", "Gewerbeanzeigen", (DELBRUECK_MELDEWESEN.slash(),)
                    ),
                    ServicePlan(STATISTIK, "gewerbeanzeige", "Statistik", (DELBRUECK_GEWERBEAMT.slash(),)),
                ),
            ),
            ServerPlan(
                "delbrueck",
                "Stadt Delbrück",
                SecurityServerId(DELBRUECK, "ss1"),
                (DELBRUECK_MELDEWESEN, DELBRUECK_GEWERBEAMT),
            ),
        ),
    )


def _describe_anzeigen(layout: Layout, openapi_url: str) -> None:
    """Give ANZEIGEN its ``openapi_url`` in Bielefeld's configuration (the plan has no such field)."""
    path = layout.server_config("bielefeld")
    text = path.read_text(encoding="utf-8")
    line = f'id = "{ANZEIGEN.slash()}"\n'
    assert text.count(line) == 1
    path.write_text(text.replace(line, line + f'openapi_url = "{openapi_url}"\n'), encoding="utf-8")


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    openapi_server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenApiHandler)
    thread = threading.Thread(target=openapi_server.serve_forever, daemon=True)
    thread.start()
    try:
        prepared = prepare_federation(tmp_path_factory.mktemp("metadata-federation"), metadata_plan())
        _describe_anzeigen(prepared, f"http://127.0.0.1:{openapi_server.server_port}/openapi.json")
        running = RunningFederation(prepared)
        with running.running(timeout_s=90):
            yield prepared
    finally:
        openapi_server.shutdown()
        openapi_server.server_close()


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def fault_code(self) -> str:
        assert self.headers["Content-Type"].startswith("text/xml"), self.headers
        fault = etree.fromstring(self.body).find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
        assert fault is not None, self.body
        return fault.findtext("faultcode") or ""


def http(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> Answer:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Answer(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read())


def metadata_envelope(client: ClientId, code: str, body: str) -> tuple[str, bytes]:
    """An X-Road SOAP request from ``client`` to Bielefeld's ``code``; ``(message id, bytes)``."""
    message_id = str(uuid.uuid4())
    header = XRoadHeader(client, BIELEFELD_MELDEWESEN.service(code), message_id, user_id="DE0000000001")
    envelope = etree.Element(
        f"{{{NS_SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": NS_SOAP_ENV, "xrd": NS_XROAD, "id": NS_ID}
    )
    soap_header = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Header")
    soap_header.extend(header_elements(header))
    etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Body").append(etree.fromstring(body))
    return message_id, etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def post_soap(layout: Layout, request: bytes) -> Answer:
    return http(
        layout.client_url("delbrueck") + SOAP_PATH,
        data=request,
        headers={"Content-Type": TEXT_XML, "SOAPAction": '""'},
    )


def listed_services(answer: Answer, wrapper: str) -> list[ServiceId]:
    assert answer.status == 200, answer.body
    response = parse_soap_response(answer.body, content_type=answer.headers["Content-Type"])
    element = etree.fromstring(response.body_xml)
    assert element.tag == f"{{{NS_XROAD}}}{wrapper}"
    assert xml_schema("xroad.xsd").validate(element)
    found = []
    for service in element.iterfind(f"{{{NS_XROAD}}}service"):
        parts = [service.findtext(f"{{{NS_ID}}}{name}") for name in ("memberClass", "memberCode")]
        provider = SubsystemId(
            service.findtext(f"{{{NS_ID}}}xRoadInstance") or "",
            parts[0] or "",
            parts[1] or "",
            service.findtext(f"{{{NS_ID}}}subsystemCode") or "",
        )
        code = service.findtext(f"{{{NS_ID}}}serviceCode") or ""
        found.append(ServiceId(provider, code, service.findtext(f"{{{NS_ID}}}serviceVersion")))
    return found


def logged(layout: Layout, slug: str, message_id: str) -> list[LogRecord]:
    store = MessageLogStore.open_readonly(layout.message_log(slug))
    try:
        return store.find(message_id)
    finally:
        store.close()


def backend_wsdl(layout: Layout) -> bytes:
    """The WSDL as Bielefeld's backend serves it, its real address in it."""
    answer = http(layout.backend_url("meldewesen") + "/?wsdl")
    assert answer.status == 200
    return answer.body


WSDL_QUERY = (
    "/wsdl?xRoadInstance=NRW&memberClass=MUN&memberCode=05711000"
    "&subsystemCode=meldewesen&serviceCode=meldeauskunft&version=v1"
)


# ------------------------------------------------------------------ listClients


def expected_clients(layout: Layout) -> set[tuple[str, str]]:
    found = set()
    for member in layout.plan.members:
        found.add((member.id.slash(), member.name))
        found.update((member.id.subsystem(code).slash(), member.name) for code in member.subsystems)
    return found


def test_list_clients_in_xml(layout: Layout) -> None:
    answer = http(layout.client_url("delbrueck") + "/listClients")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/xml; charset=UTF-8"
    root = etree.fromstring(answer.body)
    assert root.tag == f"{{{NS_XROAD}}}clientList"
    assert xml_schema("xroad.xsd").validate(root)
    listed = set()
    for member in root.iterfind(f"{{{NS_XROAD}}}member"):
        identifier = member.find(f"{{{NS_XROAD}}}id")
        assert identifier is not None
        parts = [
            identifier.findtext(f"{{{NS_ID}}}{name}")
            for name in ("xRoadInstance", "memberClass", "memberCode", "subsystemCode")
        ]
        object_type = identifier.get(f"{{{NS_ID}}}objectType")
        assert object_type == ("SUBSYSTEM" if parts[3] else "MEMBER")
        listed.add(("/".join(p for p in parts if p), member.findtext(f"{{{NS_XROAD}}}name")))
    # Every member and subsystem the registry published, each with its member's name.
    assert listed == expected_clients(layout)
    assert (DELBRUECK_GEWERBEAMT.slash(), "Stadt Delbrück") in listed
    # No exchange: nothing was logged for it.
    assert answer.headers.get("X-Road-Id") is None


def test_list_clients_in_json(layout: Layout) -> None:
    answer = http(layout.client_url("delbrueck") + "/listClients", headers={"Accept": "application/json"})
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json; charset=UTF-8"
    members = json.loads(answer.body)["member"]
    assert {
        "id": {
            "member_class": "MUN",
            "member_code": "05711000",
            "subsystem_code": "meldewesen",
            "object_type": "SUBSYSTEM",
            "xroad_instance": "NRW",
        },
        "name": "Stadt Bielefeld",
    } in members
    # The same clients as the XML answer, and the same from the other server.
    xml = http(layout.client_url("bielefeld") + "/listClients?xRoadInstance=NRW")
    assert len(members) == len(etree.fromstring(xml.body))


def test_list_clients_of_another_instance_is_empty(layout: Layout) -> None:
    answer = http(
        layout.client_url("delbrueck") + "/listClients?xRoadInstance=BY",
        headers={"Accept": "application/json"},
    )
    assert (answer.status, json.loads(answer.body)) == (200, {"member": []})


# ------------------------------------------------------------------ SOAP listMethods, allowedMethods


def test_list_methods_lists_the_providers_soap_services(layout: Layout) -> None:
    message_id, request = metadata_envelope(
        DELBRUECK_GEWERBEAMT, "listMethods", "<xrd:listMethods xmlns:xrd='http://x-road.eu/xsd/xroad.xsd'/>"
    )
    answer = post_soap(layout, request)
    assert listed_services(answer, "listMethodsResponse") == [MELDEAUSKUNFT, RUECKMELDUNG]
    # An ordinary exchange: signed and logged on both servers, the answer as the client got it.
    for slug in ("delbrueck", "bielefeld"):
        records = logged(layout, slug, message_id)
        assert [r.direction.value for r in records] == ["request", "response"]
        assert records[0].body == request and records[1].body == answer.body


def test_allowed_methods_follow_the_callers_access_rights(layout: Layout) -> None:
    body = "<xrd:allowedMethods xmlns:xrd='http://x-road.eu/xsd/xroad.xsd'/>"
    _, request = metadata_envelope(DELBRUECK_MELDEWESEN, "allowedMethods", body)
    assert listed_services(post_soap(layout, request), "allowedMethodsResponse") == [
        MELDEAUSKUNFT,
        RUECKMELDUNG,
    ]
    _, request = metadata_envelope(DELBRUECK_GEWERBEAMT, "allowedMethods", body)
    assert listed_services(post_soap(layout, request), "allowedMethodsResponse") == [RUECKMELDUNG]


# ------------------------------------------------------------------ getWsdl


def get_wsdl_body(code: str, version: str | None = None) -> str:
    version_element = f"<xrd:serviceVersion>{version}</xrd:serviceVersion>" if version else ""
    return (
        "<xrd:getWsdl xmlns:xrd='http://x-road.eu/xsd/xroad.xsd'>"
        f"<xrd:serviceCode>{code}</xrd:serviceCode>{version_element}</xrd:getWsdl>"
    )


def test_get_wsdl_answers_the_masked_wsdl(layout: Layout) -> None:
    # Granted nothing of meldeauskunft: getWsdl has no access check.
    message_id, request = metadata_envelope(
        DELBRUECK_GEWERBEAMT, "getWsdl", get_wsdl_body("meldeauskunft", "v1")
    )
    answer = post_soap(layout, request)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith('multipart/related; type="text/xml"')
    response = parse_soap_response(answer.body, content_type=answer.headers["Content-Type"])
    (attachment,) = response.attachments
    original = backend_wsdl(layout)
    assert attachment.data == mask_endpoints(original)
    backend_address = layout.backend_url("meldewesen").encode()
    assert backend_address in original and backend_address not in answer.body
    assert MASKED_ENDPOINT.encode() in attachment.data
    assert read_wsdl(attachment.data).find("meldeauskunft", "v1") is not None
    for slug in ("delbrueck", "bielefeld"):
        records = logged(layout, slug, message_id)
        assert [r.direction.value for r in records] == ["request", "response"]
        assert records[1].body == answer.body


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        (get_wsdl_body("anzeigen", "v1"), "Server.ServerProxy.InvalidServiceType"),
        (get_wsdl_body("gibtesnicht"), "Server.ServerProxy.UnknownService"),
        (get_wsdl_body("meldeauskunft", "v9"), "Server.ServerProxy.UnknownService"),
        ("<xrd:getWsdl xmlns:xrd='http://x-road.eu/xsd/xroad.xsd'/>", "Server.ServerProxy.InvalidRequest"),
    ],
)
def test_get_wsdl_refusals(layout: Layout, body: str, fault: str) -> None:
    _, request = metadata_envelope(DELBRUECK_MELDEWESEN, "getWsdl", body)
    assert post_soap(layout, request).fault_code() == fault


# ------------------------------------------------------------------ GET /wsdl and zeep


def test_wsdl_over_http_get_is_the_getwsdl_answer(layout: Layout) -> None:
    answer = http(layout.client_url("delbrueck") + WSDL_QUERY)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "text/xml; charset=UTF-8"
    # Masked, and its X-Road schema imports pointed at this security server's /xsd/.
    relocated = relocate_schemas(
        mask_endpoints(backend_wsdl(layout)), layout.client_url("delbrueck") + "/xsd/"
    )
    assert answer.body == relocated
    assert b'schemaLocation="http://x-road.eu' not in answer.body

    # Asked as X-Road asks: a getWsdl exchange in the name of Delbrück's server's owner.
    store = MessageLogStore.open_readonly(layout.message_log("delbrueck"))
    try:
        requests = [
            RequestHeader.from_dict(json.loads(r.header))
            for r in store.iter_records()
            if r.direction.value == "request"
        ]
    finally:
        store.close()
    asked = requests[-1]
    assert (asked.client, asked.service, asked.user_id) == (
        DELBRUECK,
        BIELEFELD_MELDEWESEN.service("getWsdl"),
        "wsdl-request",
    )
    for slug in ("delbrueck", "bielefeld"):
        records = logged(layout, slug, asked.message_id)
        assert [r.direction.value for r in records] == ["request", "response"]


def test_a_zeep_client_built_from_the_security_server_calls_through_both_servers(layout: Layout) -> None:
    security_server = layout.client_url("delbrueck") + "/"
    xroad = XRoadClient(
        layout.client_url("delbrueck") + WSDL_QUERY,
        security_server,
        client=DELBRUECK_MELDEWESEN,
        service=BIELEFELD_MELDEWESEN,
        user_id="DE0000000001",
    )
    assert xroad.versions == {"meldeauskunft": "v1", "rueckmeldung": "v1"}
    answer = xroad.service.meldeauskunft(familienname="Muster", vornamen="Erika Maria")
    assert answer.body.ergebnis == "treffer"
    assert answer.body.person.geburtsort == "Paderborn"
    for slug in ("delbrueck", "bielefeld"):
        assert [r.direction.value for r in logged(layout, slug, answer.header.id)] == ["request", "response"]


def test_a_plain_zeep_client_builds_itself_offline_and_calls(layout: Layout) -> None:
    # No helper, no bundled schemas on the client's side, no internet: everything the WSDL
    # imports comes from the security server, as for any generic zeep-based X-Road client.
    import zeep

    client = zeep.Client(layout.client_url("delbrueck") + WSDL_QUERY)
    binding = next(iter(client.wsdl.bindings))
    service = client.create_service(binding, layout.client_url("delbrueck") + "/")
    ids = {"xRoadInstance": "NRW", "memberClass": "MUN", "subsystemCode": "meldewesen"}
    headers = {
        "client": {"objectType": "SUBSYSTEM", **ids, "memberCode": DELBRUECK.member_code},
        "service": {
            "objectType": "SERVICE",
            **ids,
            "memberCode": BIELEFELD_MELDEWESEN.member.member_code,
            "serviceCode": "meldeauskunft",
            "serviceVersion": "v1",
        },
        "id": str(uuid.uuid4()),
        "userId": "DE0000000001",
        "protocolVersion": "4.0",
    }
    answer = service.meldeauskunft(familienname="Muster", vornamen="Erika", _soapheaders=headers)
    assert (answer.body.ergebnis, answer.body.person.geburtsort) == ("treffer", "Paderborn")
    for slug in ("delbrueck", "bielefeld"):
        assert [r.direction.value for r in logged(layout, slug, headers["id"])] == ["request", "response"]


def test_the_x_road_schemas_are_served_and_nothing_else(layout: Layout) -> None:
    base = layout.client_url("delbrueck") + "/xsd/"
    xroad = http(base + "xroad.xsd")
    assert xroad.status == 200
    assert b'schemaLocation="' + base.encode() + b'identifiers.xsd"' in xroad.body
    for name in ("../server.toml", "%2e%2e%2fserver.toml", "nope.xsd", "xroad.xsd.bak"):
        assert http(base + name).status == 404, name


def test_wsdl_over_http_get_refusals(layout: Layout) -> None:
    missing = http(layout.client_url("delbrueck") + "/wsdl?xRoadInstance=NRW")
    assert missing.status == 400
    assert json.loads(missing.body)["type"] == "Client.InvalidRequest"
    rest = http(layout.client_url("delbrueck") + WSDL_QUERY.replace("meldeauskunft", "anzeigen"))
    assert rest.status == 500
    assert rest.headers["X-Road-Error"] == "Server.ServerProxy.InvalidServiceType"


# ------------------------------------------------------------------ REST


def rest_metadata(layout: Layout, client: ClientId, tail: str) -> tuple[int, dict[str, str], Any]:
    url = layout.client_url("delbrueck") + f"/r1/{BIELEFELD_MELDEWESEN.slash()}/{tail}"
    result = call(url, "GET", client)
    # Header names as the server wrote them; HTTP compares them regardless of case.
    return result.status, {k.lower(): v for k, v in result.headers.items()}, json.loads(result.body)


ANZEIGEN_LISTED = {
    "member_class": "MUN",
    "member_code": "05711000",
    "object_type": "SERVICE",
    "service_code": "anzeigen",
    "service_version": "v1",
    "service_type": "OPENAPI",
    "subsystem_code": "meldewesen",
    "xroad_instance": "NRW",
    "endpoint_list": [
        {"method": "GET", "path": "/anzeigen"},
        {"method": "POST", "path": "/anzeigen"},
        {"method": "GET", "path": "/anzeigen/*"},
    ],
}
STATISTIK_LISTED = {
    **ANZEIGEN_LISTED,
    "service_code": "statistik",
    "service_type": "REST",
    "endpoint_list": [{"method": "*", "path": "/**"}],
}


def test_rest_list_methods(layout: Layout) -> None:
    status, headers, body = rest_metadata(layout, DELBRUECK_GEWERBEAMT, "listMethods")
    assert status == 200
    assert headers["content-type"] == "application/json; charset=UTF-8"
    assert body == {"service": [ANZEIGEN_LISTED, STATISTIK_LISTED]}
    # An exchange like any other, logged on both servers.
    message_id = headers["x-road-id"]
    for slug in ("delbrueck", "bielefeld"):
        assert [r.direction.value for r in logged(layout, slug, message_id)] == ["request", "response"]


def test_rest_allowed_methods(layout: Layout) -> None:
    assert rest_metadata(layout, DELBRUECK_MELDEWESEN, "allowedMethods")[2] == {"service": [ANZEIGEN_LISTED]}
    assert rest_metadata(layout, DELBRUECK_GEWERBEAMT, "allowedMethods")[2] == {"service": [STATISTIK_LISTED]}


def test_rest_get_openapi(layout: Layout) -> None:
    status, _, document = rest_metadata(layout, DELBRUECK_GEWERBEAMT, "getOpenAPI?serviceCode=anzeigen")
    assert status == 200
    assert document["servers"] == [{"url": "/api/v1"}]
    assert document["paths"] == OPENAPI["paths"]
    assert "bielefeld.intern" not in json.dumps(document)


@pytest.mark.parametrize(
    ("tail", "status", "error", "message"),
    [
        (
            "getOpenAPI?serviceCode=statistik",
            500,
            "Server.ServerProxy.InternalError",
            "Invalid service type: REST",
        ),
        (
            "getOpenAPI?serviceCode=meldeauskunft",
            500,
            "Server.ServerProxy.InternalError",
            "Invalid service type: WSDL",
        ),
        ("getOpenAPI?serviceCode=gibtesnicht", 500, "Server.ServerProxy.UnknownService", "gibtesnicht"),
        ("getOpenAPI", 400, "Client.InvalidRequest", "serviceCode"),
    ],
)
def test_rest_get_openapi_refusals(layout: Layout, tail: str, status: int, error: str, message: str) -> None:
    got_status, headers, body = rest_metadata(layout, DELBRUECK_MELDEWESEN, tail)
    assert (got_status, headers["x-road-error"], body["type"]) == (status, error, error)
    assert message in body["message"]


# ------------------------------------------------------------------ reserved codes


def test_a_security_server_refuses_to_provide_a_reserved_code(layout: Layout) -> None:
    text = layout.server_config("bielefeld").read_text(encoding="utf-8")
    # Beside the original: its relative paths (keys, data) resolve against its folder.
    copy = layout.server_config("bielefeld").with_name("reserved.toml")
    copy.write_text(
        text.replace(f'id = "{STATISTIK.slash()}"', 'id = "NRW/MUN/05711000/meldewesen/listMethods/v1"')
    )
    result = subprocess.run(
        [sys.executable, "-m", "xweg", "gateway", "serve", "--config", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "'listMethods' is reserved" in result.stdout + result.stderr
