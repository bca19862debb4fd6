"""Which event loop the services run on."""

from __future__ import annotations

import asyncio

import pytest

from trust.service.runner import EVENT_LOOP_ENV, event_loop_factory, run_until_signalled


def test_services_run_on_uvloop_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop", reason="uvloop is a dependency on Linux; this platform has none")
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    factory = event_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
        assert loop.run_until_complete(asyncio.sleep(0, result=42)) == 42
    finally:
        loop.close()


def test_asyncio_loop_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert event_loop_factory() is None  # asyncio.Runner then makes asyncio's own loop


def test_an_unknown_event_loop_is_a_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "tokio")
    with pytest.raises(ValueError, match="must be uvloop or asyncio, not 'tokio'"):
        event_loop_factory()

    async def serve(stop: asyncio.Event) -> None:
        raise AssertionError("a service must not start on a loop nobody chose")

    assert run_until_signalled(serve, name="test") == 1
