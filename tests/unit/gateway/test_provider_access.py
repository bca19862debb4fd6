"""Step 4 of the provider pipeline: the signed request's method and decoded path are what
access rights are matched against, whatever the consumer's server let through.

A consumer's server that is not xweg, or one that was tampered with, may forward what
xweg's own consumer refuses; the provider checks again before its backend is called.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from core.errors import ErrorCode, Origin, XwegError
from core.identifiers import ClientId, GlobalGroupId, MemberId
from core.messages import Protocol, RequestHeader, sha512
from gateway.pipeline import provider
from gateway.runtime import Gateway
from gateway.serverconf.live import LiveServerConf
from gateway.serverconf.model import (
    AccessGrant,
    ClientEntry,
    EndpointPattern,
    ServerConfSnapshot,
    ServiceEntry,
)
from trust.globalconf import GlobalConf

BIELEFELD = MemberId("NRW", "MUN", "05711000").subsystem("wirtschaft")
PADERBORN = MemberId("NRW", "MUN", "05774032").subsystem("gewerbeamt")
SERVICE = BIELEFELD.service("betriebe", "v1")


def _no_groups(group: GlobalGroupId) -> list[ClientId]:
    return []


def _gateway() -> Gateway:
    snapshot = ServerConfSnapshot(
        clients={BIELEFELD: ClientEntry(BIELEFELD)},
        services=(ServiceEntry(SERVICE, "http://betriebe.intern/api"),),
        grants=(AccessGrant(BIELEFELD, "betriebe", PADERBORN, EndpointPattern.parse("POST", "/suche")),),
    )
    return cast(Gateway, SimpleNamespace(serverconf=LiveServerConf(snapshot)))


def _header(method: str, path: str, *headers: tuple[str, str]) -> RequestHeader:
    return RequestHeader(
        protocol=Protocol.REST,
        client=PADERBORN,
        service=SERVICE,
        message_id="5b7b6c0e-1f0a-4d4e-9a57-3f1d2e7c9b10",
        method=method,
        path=path,
        query="",
        headers=headers,
        body_sha512=sha512(b""),
        body_size=0,
    )


CONF = cast(GlobalConf, SimpleNamespace(group_members=_no_groups))


def test_the_granted_endpoint_is_provided() -> None:
    found = provider._provided_service(_gateway(), CONF, _header("POST", "/suche"))
    assert found.id == SERVICE


@pytest.mark.parametrize(
    ("header", "code", "origin", "message"),
    [
        (_header("DELETE", "/suche"), ErrorCode.ACCESS_DENIED, Origin.SERVER_PROXY, "is not allowed"),
        (_header("POST", "/admin"), ErrorCode.ACCESS_DENIED, Origin.SERVER_PROXY, "is not allowed"),
        (
            _header("POST", "/suche", ("x-http-method-override", "DELETE")),
            ErrorCode.INVALID_REQUEST,
            Origin.CLIENT,
            "method-override header",
        ),
        (_header("POST", "/x/%2e%2e/suche"), ErrorCode.INVALID_REQUEST, Origin.CLIENT, ". or .."),
        (_header("POST", "/x%2F..%2Fsuche"), ErrorCode.INVALID_REQUEST, Origin.CLIENT, "encoded /"),
    ],
)
def test_what_the_grant_does_not_cover_is_refused(
    header: RequestHeader, code: ErrorCode, origin: Origin, message: str
) -> None:
    with pytest.raises(XwegError) as refused:
        provider._provided_service(_gateway(), CONF, header)
    assert (refused.value.code, refused.value.origin) == (code, origin)
    assert message in refused.value.message
