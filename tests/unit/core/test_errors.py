"""Errors: fault codes as X-Road writes them, HTTP statuses, correlation ids."""

from __future__ import annotations

import pytest

from core.errors import ErrorCode, Origin, XwegError, new_correlation_id


@pytest.mark.parametrize(
    "code, origin, fault_code",
    [
        (ErrorCode.ACCESS_DENIED, Origin.SERVER_PROXY, "Server.ServerProxy.AccessDenied"),
        (ErrorCode.INVALID_CLIENT_IDENTIFIER, Origin.CLIENT, "Client.InvalidClientIdentifier"),
        (ErrorCode.OUTDATED_GLOBAL_CONF, Origin.CLIENT_PROXY, "Server.ClientProxy.OutdatedGlobalConf"),
        (ErrorCode.UNKNOWN_SERVICE, Origin.SERVER_PROXY, "Server.ServerProxy.UnknownService"),
        (ErrorCode.SERVICE_TIMEOUT, Origin.SERVER_PROXY, "Server.ServerProxy.ServiceFailed.Timeout"),
        (ErrorCode.INVALID_GLOBAL_CONF, Origin.REGISTRY, "Server.Registry.InvalidGlobalConf"),
    ],
)
def test_fault_code_is_origin_then_code(code: ErrorCode, origin: Origin, fault_code: str) -> None:
    error = XwegError(code, "message", origin)
    assert error.fault_code == fault_code
    assert str(error) == f"{fault_code}: message"
    assert fault_code in repr(error)


@pytest.mark.parametrize(
    "code",
    [
        c
        for c in ErrorCode
        if c not in (ErrorCode.REQUEST_TOO_LARGE, ErrorCode.INVALID_CLIENT_TOKEN, ErrorCode.TOO_MANY_REQUESTS)
    ],
)
def test_status_follows_origin(code: ErrorCode) -> None:
    assert XwegError(code, "m", Origin.CLIENT).http_status == 400
    for origin in (Origin.CLIENT_PROXY, Origin.SERVER_PROXY, Origin.REGISTRY):
        assert XwegError(code, "m", origin).http_status == 500


@pytest.mark.parametrize("origin", list(Origin))
def test_request_too_large_is_413_whoever_says_it(origin: Origin) -> None:
    error = XwegError(ErrorCode.REQUEST_TOO_LARGE, "too large", origin)
    assert error.http_status == 413
    assert error.fault_code.endswith(".RequestTooLarge")


def test_an_invalid_client_token_is_401() -> None:
    error = XwegError(ErrorCode.INVALID_CLIENT_TOKEN, "expired", Origin.CLIENT)
    assert (error.http_status, error.fault_code) == (401, "Client.InvalidClientToken")


def test_too_many_requests_is_503() -> None:
    error = XwegError(ErrorCode.TOO_MANY_REQUESTS, "busy", Origin.CLIENT_PROXY)
    assert (error.http_status, error.fault_code) == (503, "Server.ClientProxy.TooManyRequests")


def test_correlation_ids_are_unique() -> None:
    ids = {XwegError(ErrorCode.INTERNAL_ERROR, "m", Origin.SERVER_PROXY).correlation_id for _ in range(500)}
    assert len(ids) == 500
    assert len({new_correlation_id() for _ in range(500)}) == 500


def test_given_correlation_id_is_kept() -> None:
    error = XwegError(ErrorCode.INTERNAL_ERROR, "m", Origin.SERVER_PROXY, correlation_id="abc-123")
    assert error.correlation_id == "abc-123"
    assert error.message == "m"
    assert error.code is ErrorCode.INTERNAL_ERROR
    assert error.origin is Origin.SERVER_PROXY


def test_codes_are_distinct() -> None:
    assert len({code.code for code in ErrorCode}) == len(ErrorCode)
