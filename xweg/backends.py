"""The demo federation's information-system backends: small REST services with fictitious data.

* ``gewerbeanzeige`` -- the Bezirksregierung Detmold's occupational-safety office
  receives trade notifications (after XGewerbeanzeige) and answers with a receipt.
* ``gewerbestatistik`` -- IT.NRW's statistics office receives the reduced view of a
  notification for the trade statistics.

Each validates what it receives, as a real receiver would, and keeps what it accepted
in memory so that ``GET`` shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import uuid
from typing import Any

from aiohttp import web

__all__ = ["make_backend_app", "main", "BACKENDS"]

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
    parser.add_argument("kind", choices=sorted(BACKENDS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(make_backend_app(args.kind), host=args.host, port=args.port, print=None, access_log=None)
    return 0
