"""The demo federation's information-system backends: small REST services with fictitious data.

* ``gewerbeanzeige`` -- the Bezirksregierung Detmold's occupational-safety office
  receives trade notifications (after XGewerbeanzeige) and answers with a receipt.
* ``gewerbestatistik`` -- IT.NRW's statistics office receives the reduced view of a
  notification for the trade statistics.

Each validates what it receives, as a real receiver would, and keeps what it accepted
in memory so that ``GET`` shows it.

* ``soap-echo`` -- a SOAP backend for tests (:func:`make_soap_echo_app`): it answers an
  X-Road SOAP request with its headers echoed and its body wrapper renamed
  ``<serviceCode>Response``, attachments echoed too.
* ``meldewesen`` -- Stadt Bielefeld's residents' register, a SOAP service after XMeld
  (``meldeauskunft``, ``rueckmeldung``) with its WSDL at ``GET /?wsdl``; see
  :mod:`xweg.demo_services.meldewesen`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from lxml import etree

from adapters.soap.mime import Packaging, encode_multipart_related, split_soap_message
from adapters.soap.outbound import fault_envelope
from adapters.soap.safexml import parse_xml
from core.errors import Origin, XwegError
from xweg.demo_services.meldewesen import make_meldewesen_app

__all__ = ["make_backend_app", "make_soap_echo_app", "main", "BACKENDS", "SOAP_BACKENDS"]

_ANZEIGE_TYPES = {"Anmeldung", "Ummeldung", "Abmeldung"}
_REQUIRED_ANZEIGE = ("anzeigeId", "anzeigeart", "gemeindeschluessel", "betrieb", "taetigkeit", "person")
_REQUIRED_STATISTIK = ("anzeigeId", "anzeigeart", "gemeindeschluessel", "wz2008", "beschaeftigte")
_STORE = web.AppKey("store", list)


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status=status,
        content_type="application/problem+json",
    )


async def _read_json(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return _problem(400, "Ungültiges JSON", "Der Inhalt ist kein JSON-Dokument.")
    if not isinstance(data, dict):
        return _problem(400, "Ungültiges JSON", "Erwartet wird ein JSON-Objekt.")
    return data


def _receiver(required: tuple[str, ...], kind: str, status: int) -> Any:
    async def receive(request: web.Request) -> web.Response:
        data = await _read_json(request)
        if isinstance(data, web.Response):
            return data
        missing = [name for name in required if name not in data]
        if missing:
            return _problem(422, "Unvollständige Meldung", "Es fehlen: " + ", ".join(missing))
        if data.get("anzeigeart") not in _ANZEIGE_TYPES:
            return _problem(422, "Unbekannte Anzeigeart", f"{data.get('anzeigeart')!r}")
        receipt = {
            "eingangsnummer": str(uuid.uuid4()),
            "art": kind,
            "anzeigeId": data["anzeigeId"],
            "eingegangen": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "absender": request.headers.get("X-Road-Client"),
        }
        request.app[_STORE].append({"receipt": receipt, "meldung": data})
        return web.json_response(receipt, status=status)

    return receive


async def _list(request: web.Request) -> web.Response:
    return web.json_response([entry["receipt"] for entry in request.app[_STORE]])


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type or "application/octet-stream")


async def _slow(request: web.Request) -> web.Response:
    # For timeout handling: answers only after the requested delay (bounded at 30 s).
    delay = min(float(request.query.get("seconds", "2")), 30.0)
    await asyncio.sleep(delay)
    return web.json_response({"waited_s": delay})


BACKENDS: dict[str, tuple[str, tuple[str, ...], str, int]] = {
    "gewerbeanzeige": ("/anzeigen", _REQUIRED_ANZEIGE, "Gewerbeanzeige", 201),
    "gewerbestatistik": ("/meldungen", _REQUIRED_STATISTIK, "Statistikmeldung", 202),
}


def make_backend_app(kind: str) -> web.Application:
    if kind in SOAP_BACKENDS:
        return SOAP_BACKENDS[kind]()
    path, required, label, status = BACKENDS[kind]
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[_STORE] = []
    app.router.add_post(path, _receiver(required, label, status))
    app.router.add_get(path, _list)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/slow", _slow)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xweg demo-backend")
    parser.add_argument("kind", choices=sorted([*BACKENDS, *SOAP_BACKENDS]))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(make_backend_app(args.kind), host=args.host, port=args.port, print=None, access_log=None)
    return 0


# ---------------------------------------------------------------- a SOAP echo backend

_SOAP_SEEN = web.AppKey("soap_seen", list)
_NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_NS_XROAD = "http://x-road.eu/xsd/xroad.xsd"


def _echo_envelope(request_soap: bytes, *, alter_headers: bool) -> bytes:
    """The answer to an X-Road request: its Header copied, its wrapper renamed ``...Response``."""
    request_root = parse_xml(request_soap, origin=Origin.SERVER_PROXY)
    header = request_root.find(f"{{{_NS_SOAP_ENV}}}Header")
    wrapper = next(iter(request_root.iterfind(f"{{{_NS_SOAP_ENV}}}Body/*")), None)
    if header is None or wrapper is None:
        raise ValueError("not an X-Road SOAP request")
    answer = etree.Element(f"{{{_NS_SOAP_ENV}}}Envelope", nsmap=request_root.nsmap)
    echoed = copy.deepcopy(header)
    if alter_headers:
        # A backend that answers another message than it was asked.
        for element in echoed.iterfind(f"{{{_NS_XROAD}}}id"):
            element.text = f"altered-{element.text}"
    answer.append(echoed)
    body = etree.SubElement(answer, f"{{{_NS_SOAP_ENV}}}Body")
    name = etree.QName(wrapper)
    response = etree.SubElement(body, etree.QName(name.namespace, f"{name.localname}Response").text)
    response.text = wrapper.text
    for child in wrapper:
        response.append(copy.deepcopy(child))
    data: bytes = etree.tostring(answer, xml_declaration=True, encoding="UTF-8")
    return data


async def _soap_echo(request: web.Request) -> web.Response:
    """Echo an X-Road SOAP request; the path chooses misbehaviour (``/fault``, ``/altered-headers``)."""
    body = await request.read()
    content_type = request.headers.get("Content-Type")
    request.app[_SOAP_SEEN].append(
        {
            "path": request.path,
            "content_type": content_type,
            "soap_action": request.headers.get("SOAPAction"),
            "header_names": [name.lower() for name in request.headers],
            "body": base64.b64encode(body).decode("ascii"),
        }
    )
    if request.path == "/fault":
        fault = fault_envelope("SOAP-ENV:Server", "Die Auskunft ist gesperrt.", "auskunftssperre")
        return web.Response(status=500, body=fault, content_type="text/xml", charset="utf-8")
    try:
        package = split_soap_message(content_type, body, origin=Origin.SERVER_PROXY)
        answer = _echo_envelope(package.soap, alter_headers=request.path == "/altered-headers")
    except (XwegError, ValueError) as exc:
        fault = fault_envelope("SOAP-ENV:Client", f"Die Anfrage ist keine X-Road-Anfrage: {exc}", None)
        return web.Response(status=500, body=fault, content_type="text/xml", charset="utf-8")
    if package.packaging is Packaging.PLAIN:
        return web.Response(body=answer, content_type="text/xml", charset="utf-8")
    packed_type, packed = encode_multipart_related(answer, package.attachments, packaging=package.packaging)
    return web.Response(body=packed, headers={"Content-Type": packed_type})


async def _soap_received(request: web.Request) -> web.Response:
    return web.json_response(request.app[_SOAP_SEEN])


def make_soap_echo_app() -> web.Application:
    """``soap-echo``: POST any path echoes; ``GET /received`` lists what arrived (bodies base64)."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[_SOAP_SEEN] = []
    app.router.add_get("/received", _soap_received)
    app.router.add_post("/{tail:.*}", _soap_echo)
    return app


SOAP_BACKENDS: dict[str, Callable[[], web.Application]] = {
    "soap-echo": make_soap_echo_app,
    "meldewesen": make_meldewesen_app,
}
