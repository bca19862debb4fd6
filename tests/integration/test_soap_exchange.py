"""End to end over X-Road SOAP 4.0: a registry and two security servers as real processes.

Stadt Delbrück's residents' register asks Stadt Bielefeld's (XROAD-PROTOCOL.md's own
example) through Delbrück's and Bielefeld's security servers; Bielefeld's SOAP backend is
the ``soap-echo`` demo backend, which records what reached it.  Information systems are
played by plain HTTP clients, one of them a raw socket sending an absolute-form target.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.soap.envelope import NS_SOAP_ENV, NS_XROAD, SHA512_ALGORITHM_ID
from adapters.soap.inbound import parse_soap_request
from adapters.soap.response import parse_soap_response
from core.canonical import b64, request_digest
from core.identifiers import SecurityServerId, ServiceId
from core.messages import Protocol, RequestHeader, ResponseHeader, sha512
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
    rest_path,
)

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "unit" / "adapters" / "soap" / "corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))

DELBRUECK_MELDEWESEN = DELBRUECK.subsystem("meldewesen")
DELBRUECK_GEWERBEAMT = DELBRUECK.subsystem("gewerbeamt")  # hosted by Delbrück's server, granted nothing
BIELEFELD_MELDEWESEN = BIELEFELD.subsystem("meldewesen")
MELDEAUSKUNFT = BIELEFELD_MELDEWESEN.service("meldeauskunft", "v1")
FALSCHE_ANTWORT = BIELEFELD_MELDEWESEN.service("falscheantwort", "v1")  # the backend alters headers
SPERRE = BIELEFELD_MELDEWESEN.service("sperrauskunft", "v1")  # the backend answers a SOAP Fault
REST_SERVICE = BIELEFELD_MELDEWESEN.service("anzeigen", "v1")

TEXT_XML = "text/xml; charset=utf-8"
SPEC_MESSAGE_ID = "0b6c2f0e-5d8a-4c1e-9a57-3f1d2e7c9b10"
# X-Road's classic client-proxy path; any path the listener has no route for is the same.
SOAP_PATH = "/cgi-bin/consumer_proxy"


def soap_plan() -> FederationPlan:
    granted = (DELBRUECK_MELDEWESEN.slash(),)
    echo = "soap-echo"
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
                    ServicePlan(MELDEAUSKUNFT, echo, "Meldeauskunft", granted, protocol="soap"),
                    ServicePlan(
                        FALSCHE_ANTWORT,
                        echo,
                        "a backend answering another message id",
                        granted,
                        protocol="soap",
                        backend_path="/altered-headers",
                    ),
                    ServicePlan(
                        SPERRE,
                        echo,
                        "a backend answering a SOAP Fault",
                        granted,
                        protocol="soap",
                        backend_path="/fault",
                    ),
                    ServicePlan(REST_SERVICE, "gewerbeanzeige", "a REST service", granted),
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


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    prepared = prepare_federation(tmp_path_factory.mktemp("soap-federation"), soap_plan())
    running = RunningFederation(prepared)
    with running.running(timeout_s=90):
        yield prepared


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def root(self) -> etree._Element:
        assert "Traceback" not in self.body.decode("utf-8", "replace")
        return etree.fromstring(self.body)

    def fault(self) -> tuple[str, str, str | None]:
        """``(faultcode, faultstring, faultDetail)``; the answer must be a SOAP 1.1 Fault."""
        assert self.headers["Content-Type"].startswith("text/xml"), self.headers
        fault = self.root().find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
        assert fault is not None, self.body
        return (
            fault.findtext("faultcode") or "",
            fault.findtext("faultstring") or "",
            fault.findtext("detail/faultDetail"),
        )


def post_soap(
    layout: Layout,
    body: bytes,
    *,
    content_type: str | None = TEXT_XML,
    soap_action: str | None = '""',
    method: str = "POST",
    path: str = SOAP_PATH,
) -> Answer:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if soap_action is not None:
        headers["SOAPAction"] = soap_action
    req = urllib.request.Request(
        layout.client_url("delbrueck") + path, data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Answer(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read())


def spec_request(service: ServiceId = MELDEAUSKUNFT, client_code: str = "meldewesen") -> tuple[str, bytes]:
    """XROAD-PROTOCOL.md's example with a fresh message id (and another service or client)."""
    message_id = str(uuid.uuid4())
    body = (CORPUS / "spec-example.xml").read_bytes().replace(SPEC_MESSAGE_ID.encode(), message_id.encode())
    body = body.replace(
        b"<id:serviceCode>meldeauskunft</id:serviceCode>",
        f"<id:serviceCode>{service.service_code}</id:serviceCode>".encode(),
    ).replace(b"<m:meldeauskunft>", f"<m:{service.service_code}>".encode())
    body = body.replace(b"</m:meldeauskunft>", f"</m:{service.service_code}>".encode())
    body = body.replace(
        b"<id:subsystemCode>meldewesen</id:subsystemCode>\n    </xrd:client>",
        f"<id:subsystemCode>{client_code}</id:subsystemCode>\n    </xrd:client>".encode(),
    )
    return message_id, body


def received(layout: Layout) -> list[dict[str, Any]]:
    with urllib.request.urlopen(layout.backend_url("soap-echo") + "/received", timeout=10) as resp:
        result: list[dict[str, Any]] = json.loads(resp.read())
    return result


def logged(layout: Layout, slug: str, message_id: str) -> list[LogRecord]:
    store = MessageLogStore.open_readonly(layout.message_log(slug))
    try:
        return store.find(message_id)
    finally:
        store.close()


def request_hash_of(root: etree._Element) -> etree._Element:
    element = root.find(f"{{{NS_SOAP_ENV}}}Header/{{{NS_XROAD}}}requestHash")
    assert element is not None
    return element


def header_children(root: etree._Element) -> list[bytes]:
    header = root.find(f"{{{NS_SOAP_ENV}}}Header")
    assert header is not None
    # Exclusive canonical form: namespace declarations the element does not use do not count.
    return [etree.tostring(child, method="c14n", exclusive=True) for child in header]


def load_corpus(name: str) -> bytes:
    data = (CORPUS / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


# ------------------------------------------------------------------ the good path


def test_spec_example_gets_its_answer_through_two_servers(layout: Layout) -> None:
    before = len(received(layout))
    message_id, request = spec_request()
    answer = post_soap(layout, request)

    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "text/xml; charset=UTF-8"
    root = answer.root()
    # Every request header comes back unchanged, then X-Road's request hash of the exact bytes.
    request_root = etree.fromstring(request)
    assert header_children(root)[:-1] == header_children(request_root)
    hash_element = request_hash_of(root)
    assert hash_element.get("algorithmId") == SHA512_ALGORITHM_ID
    assert hash_element.text == base64.b64encode(hashlib.sha512(request).digest()).decode()
    wrapper = root.find(f"{{{NS_SOAP_ENV}}}Body/{{urn:example:meldewesen}}meldeauskunftResponse")
    assert wrapper is not None
    assert wrapper.findtext("{urn:example:meldewesen}familienname") == "Muster"

    # The backend got the client's bytes, Content-Type and SOAPAction, and no X-Road-* headers.
    seen = received(layout)
    assert len(seen) == before + 1
    assert base64.b64decode(seen[-1]["body"]) == request
    assert seen[-1]["content_type"] == TEXT_XML
    assert seen[-1]["soap_action"] == '""'
    assert seen[-1]["path"] == "/"
    assert not [name for name in seen[-1]["header_names"] if name.startswith("x-road-")]

    # Both servers logged the exact bytes: the request as sent, the answer as the client got it.
    for slug in ("delbrueck", "bielefeld"):
        records = logged(layout, slug, message_id)
        assert [r.direction.value for r in records] == ["request", "response"]
        request_header = RequestHeader.from_dict(json.loads(records[0].header))
        assert request_header.protocol is Protocol.SOAP
        assert request_header.service == MELDEAUSKUNFT
        assert request_header.client == DELBRUECK_MELDEWESEN
        assert request_header.user_id == "DE0000000001"
        assert request_header.headers == (("content-type", TEXT_XML), ("soapaction", '""'))
        assert records[0].body == request
        response_header = ResponseHeader.from_dict(json.loads(records[1].header))
        assert response_header.request_hash == b64(request_digest(request_header))
        assert response_header.headers == (("content-type", "text/xml; charset=UTF-8"),)
        assert records[1].body == answer.body
        assert response_header.body_sha512 == sha512(answer.body)


@pytest.mark.parametrize(
    "case", [c for c in MANIFEST if c["kind"] == "request" and c["expect"] is None], ids=lambda c: c["file"]
)
def test_accepted_corpus_requests_are_answered(layout: Layout, case: dict[str, Any]) -> None:
    # A fresh message id each, so that the log holds one exchange per id.
    suffix = str(uuid.uuid4())[8:]
    request = load_corpus(case["file"]).replace(SPEC_MESSAGE_ID[8:].encode(), suffix.encode())
    answer = post_soap(layout, request, content_type=case["content_type"])
    assert answer.status == 200, answer.body
    response = parse_soap_response(answer.body, content_type=answer.headers["Content-Type"])
    assert response.fault is None
    assert response.header is not None and response.header.message_id == SPEC_MESSAGE_ID[:8] + suffix
    # The hash covers the SOAP part exactly as sent (a byte order mark included), not the MIME body.
    soap_part = parse_soap_request(request, content_type=case["content_type"]).soap
    assert response.request_hash is not None
    assert response.request_hash.value == base64.b64encode(hashlib.sha512(soap_part).digest()).decode()


def test_attachments_travel_both_ways(layout: Layout) -> None:
    request = load_corpus("swa-with-attachment.mime").replace(
        SPEC_MESSAGE_ID.encode(), str(uuid.uuid4()).encode()
    )
    content_type = next(c for c in MANIFEST if c["file"] == "swa-with-attachment.mime")["content_type"]
    before = len(received(layout))
    answer = post_soap(layout, request, content_type=content_type)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("multipart/related;")
    response = parse_soap_response(answer.body, content_type=answer.headers["Content-Type"])
    assert [(a.content_id, a.content_type) for a in response.attachments] == [
        ("antrag.pdf@x", "application/pdf")
    ]
    sent = parse_soap_request(request, content_type=content_type)
    assert response.attachments[0].data == sent.attachments[0].data
    # The whole multipart body reached the backend as the client sent it.
    seen = received(layout)
    assert len(seen) == before + 1
    assert base64.b64decode(seen[-1]["body"]) == request
    assert seen[-1]["content_type"] == content_type


def test_absolute_form_request_from_a_client_using_the_server_as_proxy(layout: Layout) -> None:
    message_id, request = spec_request()
    port = layout.ports["delbrueck.client"]
    head = (
        "POST http://example.org/xroad-endpoint HTTP/1.1\r\n"
        "Host: example.org\r\n"
        f"Content-Type: {TEXT_XML}\r\n"
        'SOAPAction: ""\r\n'
        f"Content-Length: {len(request)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", raw[:300]
    body = rest.partition(b"\r\n\r\n")[2]
    root = etree.fromstring(body)
    assert request_hash_of(root).text == base64.b64encode(hashlib.sha512(request).digest()).decode()
    assert [r.direction.value for r in logged(layout, "delbrueck", message_id)] == ["request", "response"]


def test_backend_fault_is_the_providers_answer(layout: Layout) -> None:
    message_id, request = spec_request(SPERRE)
    answer = post_soap(layout, request)
    assert answer.status == 500
    assert answer.fault() == ("SOAP-ENV:Server", "Die Auskunft ist gesperrt.", "auskunftssperre")
    # Signed and logged on both sides like any answer.
    for slug in ("delbrueck", "bielefeld"):
        records = logged(layout, slug, message_id)
        assert [(r.direction.value, r.status) for r in records] == [("request", None), ("response", 500)]
        assert records[1].body == answer.body


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    "case", [c for c in MANIFEST if c["kind"] == "request" and c["expect"]], ids=lambda c: c["file"]
)
def test_corpus_case_gets_its_fault_and_never_reaches_the_backend(
    layout: Layout, case: dict[str, Any]
) -> None:
    before = len(received(layout))
    # A SOAP client that uses the wrong method still says it speaks SOAP.
    content_type = case["content_type"] if case["method"] == "POST" else TEXT_XML
    answer = post_soap(layout, load_corpus(case["file"]), content_type=content_type, method=case["method"])
    assert answer.status == 200, answer.body
    code, _, detail = answer.fault()
    assert code == case["expect"]
    assert detail is not None
    uuid.UUID(detail)  # the correlation id
    assert len(received(layout)) == before


def test_backend_with_altered_headers_gives_inconsistent_response(layout: Layout) -> None:
    before = len(received(layout))
    message_id, request = spec_request(FALSCHE_ANTWORT)
    answer = post_soap(layout, request)
    assert answer.status == 200
    code, message, detail = answer.fault()
    assert code == "Server.ServerProxy.InconsistentResponse"
    assert "xrd:id differs" in message
    assert len(received(layout)) == before + 1  # the backend was asked; its answer was refused
    assert detail is not None
    assert detail in (layout.root / "logs" / "server-bielefeld.log").read_text()
    # The request was logged on both sides before it moved on; no answer was.
    for slug in ("delbrueck", "bielefeld"):
        assert [r.direction.value for r in logged(layout, slug, message_id)] == ["request"]


def test_access_denied_is_a_soap_fault_not_json(layout: Layout) -> None:
    before = len(received(layout))
    _, request = spec_request(client_code="gewerbeamt")
    answer = post_soap(layout, request)
    assert answer.status == 200
    code, message, detail = answer.fault()
    assert code == "Server.ServerProxy.AccessDenied"
    assert DELBRUECK_GEWERBEAMT.slash() in message
    assert detail is not None
    assert not answer.body.lstrip().startswith(b"{")
    assert "X-Road-Error" not in answer.headers
    assert len(received(layout)) == before


def test_client_not_hosted_here(layout: Layout) -> None:
    _, request = spec_request()
    request = request.replace(
        b"<id:memberCode>05774020</id:memberCode>", b"<id:memberCode>05711000</id:memberCode>"
    )
    code, _, _ = post_soap(layout, request).fault()
    assert code == "Client.InvalidClientIdentifier"


def test_unknown_service(layout: Layout) -> None:
    _, request = spec_request(BIELEFELD_MELDEWESEN.service("gibtesnicht", "v1"))
    code, _, _ = post_soap(layout, request).fault()
    assert code == "Server.ServerProxy.UnknownService"


def test_a_service_speaks_one_protocol(layout: Layout) -> None:
    # SOAP to a REST service: a SOAP fault.
    _, request = spec_request(REST_SERVICE)
    code, message, _ = post_soap(layout, request).fault()
    assert code == "Server.ServerProxy.InvalidServiceType"
    assert "REST service" in message
    # REST to a SOAP service: an X-Road REST error.
    url = layout.client_url("delbrueck") + rest_path(MELDEAUSKUNFT, "/personen")
    result = call(url, "GET", DELBRUECK_MELDEWESEN)
    assert result.status == 500
    assert result.headers["X-Road-Error"] == "Server.ServerProxy.InvalidServiceType"


def test_own_routes_are_not_soap(layout: Layout) -> None:
    _, request = spec_request()
    answer = post_soap(layout, request, path="/healthz")
    assert answer.status == 405
    assert answer.headers["Content-Type"].startswith("application/json")
    assert post_soap(layout, request, path="/directory/v1/nowhere").status == 404


# ------------------------------------------------------------------ auditors


def _audit(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xweg", "audit", "verify", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_audit_verify_accepts_soap_records(layout: Layout, tmp_path: Path) -> None:
    message_id, request = spec_request()
    assert post_soap(layout, request).status == 200
    for slug in ("delbrueck", "bielefeld"):
        copy = tmp_path / f"{slug}.db"
        with MessageLogStore.open_readonly(layout.message_log(slug)) as store:
            store.copy_to(copy)
        result = _audit(copy, "--json", "--ca", str(layout.ca_certificate))
        assert result.returncode == 0, result.stdout + result.stderr
        summary = json.loads(result.stdout)
        assert summary["first_error"] is None and summary["records"] >= 2

        # One byte of the logged SOAP request changes: verification names that record.
        con = sqlite3.connect(copy)
        (seq,) = con.execute(
            "SELECT seq FROM records WHERE message_id = ? AND direction = 'request'", (message_id,)
        ).fetchone()
        body = con.execute("SELECT body FROM records WHERE seq = ?", (seq,)).fetchone()[0]
        assert bytes(body) == request
        with con:
            con.execute(
                "UPDATE records SET body = ? WHERE seq = ?", (request.replace(b"Muster", b"Master"), seq)
            )
        con.close()
        bad = _audit(copy, "--json", "--ca", str(layout.ca_certificate))
        assert bad.returncode == 1
        assert json.loads(bad.stdout)["first_error"]["seq"] == seq
