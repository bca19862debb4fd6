"""The directory API on the client listener: who provides a service where, what an authority offers.

An aiohttp sub-application (:func:`make_directory_app`), mounted by the server under
``/directory/v1/``.  Routes, all ``GET`` (and ``HEAD``)::

    providers?service=CODE&area=KEY[&version=V]   trust.directory.providers_answer (JSON)
    authorities/{PREFIX:key}                      trust.directory.authority_answer (JSON)
    globalconf                                    the signed document adopted (application/jose)

Answers come from the global configuration this security server verified and acts on,
and name its serial.  ``globalconf`` hands out exactly the bytes that were verified, so
an information system that holds the configuration anchor can verify the document and
run :mod:`trust.directory` on it itself, trusting this server for nothing; if the
serials differ, a newer configuration was adopted in between and it asks again.

Parameters are checked strictly (unknown, repeated, missing or over-long ones are
refused): a malformed question is ``Client.InvalidRequest`` (400).  Without a current
configuration every route answers ``OutdatedGlobalConf``, as the exchange routes do.
Errors are raised as :class:`~core.errors.XwegError`; the client listener's middleware
renders them as X-Road REST error bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

from aiohttp import web

from core.errors import ErrorCode, Origin, XwegError
from trust.directory import authority_answer, providers_answer
from trust.globalconf import GlobalConf

__all__ = ["AdoptedGlobalConf", "make_directory_app", "MAX_PARAM_LENGTH", "GLOBALCONF_CONTENT_TYPE"]

#: The current configuration and the signed bytes it was verified from; raises
#: OutdatedGlobalConf (an XwegError) when there is none to act on.
AdoptedGlobalConf = Callable[[], tuple[GlobalConf, bytes]]

#: Characters of one query parameter or path segment; identifiers and keys are far shorter.
MAX_PARAM_LENGTH = 256
GLOBALCONF_CONTENT_TYPE = "application/jose"

_CURRENT_KEY: web.AppKey[AdoptedGlobalConf] = web.AppKey("directory_current")
_PROVIDERS_REQUIRED = frozenset({"service", "area"})
_PROVIDERS_OPTIONAL = frozenset({"version"})
_dumps = partial(json.dumps, ensure_ascii=False)


def _refused(message: str) -> XwegError:
    return XwegError(ErrorCode.INVALID_REQUEST, message, Origin.CLIENT)


def _query(request: web.Request, required: frozenset[str], optional: frozenset[str]) -> dict[str, str]:
    """The query parameters, each at most once, none unknown, none missing, none over-long."""
    query = request.rel_url.query
    unknown = set(query) - required - optional
    if unknown:
        names = ", ".join(repr(name[:MAX_PARAM_LENGTH]) for name in sorted(unknown))
        raise _refused(f"unknown query parameter(s) {names}")
    params: dict[str, str] = {}
    for name in sorted(required | optional):
        values = query.getall(name, [])
        if len(values) > 1:
            raise _refused(f"query parameter {name!r} is given {len(values)} times")
        if not values:
            if name in required:
                raise _refused(f"query parameter {name!r} is required")
            continue
        if len(values[0]) > MAX_PARAM_LENGTH:
            raise _refused(f"query parameter {name!r} is longer than {MAX_PARAM_LENGTH} characters")
        params[name] = values[0]
    return params


async def _providers(request: web.Request) -> web.StreamResponse:
    params = _query(request, _PROVIDERS_REQUIRED, _PROVIDERS_OPTIONAL)
    conf, _ = request.app[_CURRENT_KEY]()
    try:
        answer = providers_answer(conf, params["service"], params["area"], version=params.get("version"))
    except ValueError as exc:
        raise _refused(str(exc)) from exc
    return web.json_response(answer, dumps=_dumps)


async def _authority(request: web.Request) -> web.StreamResponse:
    _query(request, frozenset(), frozenset())
    authority = request.match_info["authority"]
    if len(authority) > MAX_PARAM_LENGTH:
        raise _refused(f"authority identifier is longer than {MAX_PARAM_LENGTH} characters")
    conf, _ = request.app[_CURRENT_KEY]()
    try:
        answer = authority_answer(conf, authority)
    except ValueError as exc:
        raise _refused(str(exc)) from exc
    return web.json_response(answer, dumps=_dumps)


async def _globalconf(request: web.Request) -> web.StreamResponse:
    _query(request, frozenset(), frozenset())
    _, document = request.app[_CURRENT_KEY]()
    return web.Response(body=document, content_type=GLOBALCONF_CONTENT_TYPE)


def make_directory_app(current: AdoptedGlobalConf) -> web.Application:
    """The directory routes, answering from what ``current`` returns at each request."""
    app = web.Application()
    app[_CURRENT_KEY] = current
    app.router.add_get("/providers", _providers)
    app.router.add_get("/authorities/{authority}", _authority)
    app.router.add_get("/globalconf", _globalconf)
    return app
