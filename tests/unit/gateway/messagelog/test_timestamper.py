"""The timestamper against real RFC 3161 TSAs on 127.0.0.1, good and misbehaving.

Records are written by a real :class:`MessageLogWriter` (or the store) into a real
SQLite file; the timestamper uses its own connection to it, as in the gateway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from cryptography import x509

from core.clock import FixedClock
from gateway.messagelog.record import LogRecord
from gateway.messagelog.store import MessageLogStore
from gateway.messagelog.timestamper import (
    TimestampClient,
    Timestamper,
    TimestampingOverdue,
    TimestampStatus,
    TsaEndpoint,
    TsaUnavailable,
)
from gateway.messagelog.verify import CheckpointReport, verify_checkpoints, verify_log_file
from gateway.messagelog.writer import MessageLogWriter
from tests.unit.gateway.messagelog.helpers import CHECKPOINT_SIGNERS, NOW, Signers, make_exchange
from tests.unit.gateway.messagelog.tsa import (
    ORIGIN,
    ORIGIN_OWNER,
    Behaviour,
    Pki,
    TsaIdentity,
    TsaServer,
    closed_port_url,
)
from trust.merkle import inclusion_proof, verify_inclusion

#: Counters of body storage and pruning, not what these tests are about.
_EXTRAS = {"bodies_omitted": 0, "pruned_records": 0}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW + dt.timedelta(seconds=30))


@pytest.fixture
async def tsa(tsa_identity: TsaIdentity, clock: FixedClock) -> AsyncIterator[TsaServer]:
    server = await TsaServer(tsa_identity, clock).start()
    yield server
    await server.close()


@pytest.fixture
async def second_tsa(pki: Pki, clock: FixedClock) -> AsyncIterator[TsaServer]:
    server = await TsaServer(pki.issue_tsa("Second TSA"), clock).start()
    yield server
    await server.close()


class Config:
    """What global configuration would say; tests change it while the timestamper runs."""

    def __init__(self, pki: Pki, endpoints: Sequence[TsaEndpoint]) -> None:
        self.endpoints = list(endpoints)
        self.roots: list[x509.Certificate] = [pki.root]

    def tsas(self) -> Sequence[TsaEndpoint]:
        return self.endpoints

    def trust(self) -> tuple[Sequence[x509.Certificate], Sequence[x509.Certificate]]:
        return self.roots, ()


Make = Callable[..., Timestamper]


@pytest.fixture
async def make(log_path: Path, clock: FixedClock) -> AsyncIterator[Make]:
    """Builds timestampers on ``log_path`` (closed at the end of the test)."""
    made: list[Timestamper] = []

    def build(config: Config, **options: object) -> Timestamper:
        settings: dict[str, object] = {"interval_s": 3600.0, "retry_s": 3600.0, "timeout_s": 2.0}
        settings.update(options)
        stamper = Timestamper(
            log_path,
            ORIGIN,
            tsas=config.tsas,
            trust=config.trust,
            sign=CHECKPOINT_SIGNERS.sign_checkpoint(ORIGIN_OWNER),
            clock=clock,
            client=TimestampClient(),
            **settings,  # type: ignore[arg-type]
        )
        made.append(stamper)
        return stamper

    yield build
    for stamper in made:
        await stamper.close()


def verify(path: Path, pki: Pki, *tsas: TsaIdentity) -> CheckpointReport:
    with MessageLogStore.open_readonly(path) as store:
        return verify_checkpoints(
            store,
            tsa_certificates=[t.certificate for t in tsas],
            roots=[pki.root],
            check_signature=CHECKPOINT_SIGNERS.check_checkpoint,
        )


def stored_checkpoints(path: Path) -> int:
    with MessageLogStore.open_readonly(path) as store:
        return store.checkpoint_count()


def append(path: Path, signers: Signers, numbers: range, at: dt.datetime = NOW) -> list[LogRecord]:
    with MessageLogStore.open(path) as store:
        records = []
        for number in numbers:
            exchange = make_exchange(signers, number, at=at)
            records += [exchange.request, exchange.response]
        return store.append(records)


# -- a good round ---------------------------------------------------------------------


async def test_a_round_timestamps_every_record_with_a_verified_path(
    log_path: Path,
    good_log: list[LogRecord],
    make: Make,
    tsa: TsaServer,
    pki: Pki,
    tsa_identity: TsaIdentity,
    signers: Signers,
    clock: FixedClock,
) -> None:
    stamper = make(Config(pki, [tsa.endpoint()]))
    await stamper.start()
    assert stamper.status().pending == 6
    assert stamper.status().oldest_pending_at == good_log[0].logged_at
    assert await stamper.timestamp_now()
    assert stamper.status() == TimestampStatus(
        pending=0, oldest_pending_at=None, last_success_at=clock.now(), last_error=None, checkpoints=1
    )
    with MessageLogStore.open_readonly(log_path) as store:
        checkpoint = store.last_checkpoint()
        assert checkpoint is not None
        assert (checkpoint.origin, checkpoint.size, checkpoint.tsa) == (ORIGIN, 6, "Test TSA")
        assert checkpoint.time == clock.now()
        assert checkpoint.gen_time == clock.now().replace(microsecond=0)
        leaves = [record.leaf_hash for record in store.iter_records()]
        for seq in range(1, 7):
            size, path = store.record_path(seq) or (0, [])
            assert size == 6
            assert path == inclusion_proof(seq - 1, leaves)
            verify_inclusion(leaves[seq - 1], seq - 1, 6, path, checkpoint.root)
    assert (
        verify(log_path, pki, tsa_identity).to_dict() | {"root": None}
        == CheckpointReport(1, 6, None, None, 6).to_dict()
    )

    # The next batch: only its records get paths, to the new checkpoint.
    more = append(log_path, signers, range(10, 12), at=clock.now())
    for record in more:
        stamper.note_appended(record)
    assert stamper.status().pending == 4
    assert await stamper.timestamp_now()
    with MessageLogStore.open_readonly(log_path) as store:
        assert [c.size for c in store.checkpoints()] == [6, 10]
        assert [(store.record_path(seq) or (0, []))[0] for seq in (6, 7)] == [6, 10]
    report = verify_log_file(
        log_path,
        signers.check,
        tsa_certificates=[tsa_identity.certificate],
        roots=[pki.root],
        check_checkpoint_signature=CHECKPOINT_SIGNERS.check_checkpoint,
    )
    with MessageLogStore.open_readonly(log_path) as store:
        latest = store.last_checkpoint()
    assert latest is not None
    assert (
        report.to_dict() | _EXTRAS
        == {
            "records": 10,
            "timestamped_records": 10,
            "checkpoints": 2,
            "tree_size": 10,
            "root": latest.root.hex(),
            "first_error": None,
        }
        | _EXTRAS
    )
    # Nothing new: a round is a no-op, not another checkpoint.
    assert await stamper.timestamp_now()
    assert stored_checkpoints(log_path) == 2
    assert tsa.requests == 2


async def test_the_loop_timestamps_beside_a_running_writer(
    log_path: Path, make: Make, tsa: TsaServer, pki: Pki, tsa_identity: TsaIdentity, signers: Signers
) -> None:
    writer = MessageLogWriter(MessageLogStore.open(log_path))
    await writer.start()
    try:
        stamper = make(Config(pki, [tsa.endpoint()]), interval_s=0.05)
        await stamper.start()
        for number in range(1, 6):
            exchange = make_exchange(signers, number)
            for new in (exchange.request, exchange.response):
                stamper.note_appended(await writer.append(new))
            await asyncio.sleep(0.02)
        await _until(lambda: stamper.status().pending == 0)
    finally:
        await writer.close()
    assert verify(log_path, pki, tsa_identity).timestamped_records == 10


async def test_a_full_batch_starts_a_round_at_once(
    log_path: Path, make: Make, tsa: TsaServer, pki: Pki, signers: Signers
) -> None:
    stamper = make(Config(pki, [tsa.endpoint()]), interval_s=3600.0, max_batch=4)
    await stamper.start()
    records = append(log_path, signers, range(1, 3))
    for record in records[:3]:
        stamper.note_appended(record)
    await asyncio.sleep(0.1)
    assert tsa.requests == 0  # 3 < max_batch: wait for the interval
    stamper.note_appended(records[3])
    await _until(lambda: stamper.status().checkpoints == 1)
    assert stamper.status().pending == 0


async def test_start_picks_up_where_the_log_stands(
    log_path: Path, good_log: list[LogRecord], make: Make, tsa: TsaServer, pki: Pki, signers: Signers
) -> None:
    first = make(Config(pki, [tsa.endpoint()]))
    await first.start()
    assert await first.timestamp_now()
    await first.close()
    more = append(log_path, signers, range(20, 22), at=NOW + dt.timedelta(seconds=9))
    again = make(Config(pki, [tsa.endpoint()]))
    await again.start()
    status = again.status()
    assert (status.pending, status.checkpoints, status.oldest_pending_at) == (4, 1, more[0].logged_at)
    # The round after a restart builds its paths from the last checkpoint's frontier,
    # rebuilt from the log: they verify against the new checkpoint's root.
    assert await again.timestamp_now()
    with MessageLogStore.open_readonly(log_path) as store:
        latest = store.last_checkpoint()
        assert latest is not None and latest.size == 10
        leaves = [record.leaf_hash for record in store.iter_records()]
        for seq in range(7, 11):
            size, path = store.record_path(seq) or (0, [])
            assert size == 10 and path == inclusion_proof(seq - 1, leaves)
            verify_inclusion(leaves[seq - 1], seq - 1, 10, path, latest.root)


# -- failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour, reason",
    [
        (Behaviour.WRONG_NONCE, "timestamp token's nonce does not match the request"),
        (Behaviour.WRONG_IMPRINT, "timestamp token is for another message"),
        (Behaviour.REJECT, "the TSA answered with status rejection; failInfo system_failure: HSM offline"),
        (Behaviour.HTTP_ERROR, "answered HTTP 503"),
        (Behaviour.WRONG_TYPE, "answered with content type text/html"),
        (Behaviour.OVERSIZE, "answered with more than 262144 bytes"),
        (Behaviour.GARBAGE, "timestamp response is malformed"),
    ],
)
async def test_a_bad_answer_is_refused_and_nothing_is_stored(
    log_path: Path,
    good_log: list[LogRecord],
    make: Make,
    tsa: TsaServer,
    pki: Pki,
    behaviour: Behaviour,
    reason: str,
) -> None:
    tsa.behaviour = behaviour
    stamper = make(Config(pki, [tsa.endpoint()]))
    await stamper.start()
    assert not await stamper.timestamp_now()
    status = stamper.status()
    assert status.last_error is not None
    assert status.last_error.startswith("TSA Test TSA: ")
    assert reason in status.last_error
    assert (status.pending, status.checkpoints, status.last_success_at) == (6, 0, None)
    assert stored_checkpoints(log_path) == 0
    with MessageLogStore.open_readonly(log_path) as store:
        assert store.record_path(1) is None


async def test_a_token_from_an_unapproved_tsa_is_refused(
    log_path: Path,
    good_log: list[LogRecord],
    make: Make,
    clock: FixedClock,
    pki: Pki,
    tsa_identity: TsaIdentity,
) -> None:
    # A TSA certified by a CA that global configuration does not approve ...
    stranger = await TsaServer(Pki("Stranger Root").issue_tsa("Stranger TSA"), clock).start()
    try:
        config = Config(pki, [stranger.endpoint()])
        stamper = make(config)
        await stamper.start()
        assert not await stamper.timestamp_now()
        assert "TSA Stranger TSA" in (stamper.status().last_error or "")
        assert "does not chain to an approved CA" in (stamper.status().last_error or "")
        # ... and one answering with a certificate that is not the approved TSA's.
        config.endpoints = [TsaEndpoint("Test TSA", stranger.url, tsa_identity.certificate)]
        assert not await stamper.timestamp_now()
        assert "TSA Test TSA: " in (stamper.status().last_error or "")
        assert stored_checkpoints(log_path) == 0
    finally:
        await stranger.close()


async def test_an_expired_tsa_certificate_is_refused(
    log_path: Path, good_log: list[LogRecord], make: Make, clock: FixedClock, pki: Pki
) -> None:
    expired = pki.issue_tsa("Expired TSA", valid_to=NOW - dt.timedelta(days=1))
    server = await TsaServer(expired, clock).start()
    try:
        stamper = make(Config(pki, [server.endpoint()]))
        await stamper.start()
        assert not await stamper.timestamp_now()
        assert "expired" in (stamper.status().last_error or "")
        assert stored_checkpoints(log_path) == 0
    finally:
        await server.close()


async def test_the_next_tsa_is_used_when_one_fails(
    log_path: Path,
    good_log: list[LogRecord],
    make: Make,
    tsa: TsaServer,
    second_tsa: TsaServer,
    pki: Pki,
) -> None:
    tsa.behaviour = Behaviour.REJECT
    config = Config(pki, [TsaEndpoint("Down TSA", closed_port_url(), tsa.identity.certificate)])
    config.endpoints += [tsa.endpoint(), second_tsa.endpoint()]
    stamper = make(config)
    await stamper.start()
    assert await stamper.timestamp_now()
    assert stamper.status().last_error is None
    assert (tsa.requests, second_tsa.requests) == (1, 1)
    with MessageLogStore.open_readonly(log_path) as store:
        checkpoint = store.last_checkpoint()
    assert checkpoint is not None and checkpoint.tsa == "Second TSA"
    assert verify(log_path, pki, tsa.identity, second_tsa.identity).timestamped_records == 6


async def test_a_hanging_tsa_is_bounded_and_does_not_delay_messages(
    log_path: Path, make: Make, tsa: TsaServer, pki: Pki, signers: Signers
) -> None:
    tsa.behaviour = Behaviour.HANG
    writer = MessageLogWriter(MessageLogStore.open(log_path))
    await writer.start()
    try:
        first = make_exchange(signers, 1)
        stamper = make(Config(pki, [tsa.endpoint()]), timeout_s=0.5)
        await stamper.start()
        stamper.note_appended(await writer.append(first.request))
        started = time.monotonic()
        round_ = asyncio.ensure_future(stamper.timestamp_now())
        await asyncio.sleep(0.1)
        # While the TSA hangs, messages are logged at once.
        logged = await asyncio.wait_for(writer.append(first.response), timeout=0.3)
        stamper.note_appended(logged)
        assert not round_.done()
        assert not await round_
        assert time.monotonic() - started < 2.0
        assert "did not answer within 0.5 s" in (stamper.status().last_error or "")
        assert stamper.status().pending == 2
    finally:
        await writer.close()


async def test_close_abandons_a_hanging_call(
    log_path: Path, good_log: list[LogRecord], make: Make, tsa: TsaServer, pki: Pki
) -> None:
    tsa.behaviour = Behaviour.HANG
    stamper = make(Config(pki, [tsa.endpoint()]), interval_s=0.01, timeout_s=30.0)
    await stamper.start()
    await _until(lambda: tsa.requests == 1)
    started = time.monotonic()
    await stamper.close()
    assert time.monotonic() - started < 1.0
    await stamper.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="not running"):
        await stamper.timestamp_now()


async def test_tsa_down_records_keep_being_logged_then_retry_succeeds(
    log_path: Path, make: Make, tsa: TsaServer, pki: Pki, tsa_identity: TsaIdentity, signers: Signers
) -> None:
    config = Config(pki, [TsaEndpoint("Test TSA", closed_port_url(), tsa_identity.certificate)])
    writer = MessageLogWriter(MessageLogStore.open(log_path))
    await writer.start()
    try:
        # Rounds every hour; retries after a failure every 50 ms.
        stamper = make(config, interval_s=3600.0, retry_s=0.05, max_batch=2)
        await stamper.start()
        exchange = make_exchange(signers, 1)
        for new in (exchange.request, exchange.response):
            stamper.note_appended(await writer.append(new))
        await _until(lambda: stamper.status().last_error is not None)
        assert "cannot reach" in (stamper.status().last_error or "")
        more = make_exchange(signers, 2)
        for new in (more.request, more.response):
            stamper.note_appended(await writer.append(new))  # logging goes on
        assert stamper.status().pending == 4
        assert stored_checkpoints(log_path) == 0
        config.endpoints = [tsa.endpoint()]  # the TSA is back
        await _until(lambda: stamper.status().pending == 0)
        assert stamper.status().last_error is None
    finally:
        await writer.close()
    assert (
        verify(log_path, pki, tsa_identity).to_dict() | {"root": None}
        == CheckpointReport(1, 4, None, None, 4).to_dict()
    )


async def test_timestamping_overdue_past_the_acceptable_period_then_recovery(
    log_path: Path, make: Make, tsa: TsaServer, pki: Pki, signers: Signers, clock: FixedClock
) -> None:
    logged_at = clock.now()
    tsa.behaviour = Behaviour.HTTP_ERROR
    stamper = make(Config(pki, [tsa.endpoint()]), acceptable_s=600.0)
    await stamper.start()
    stamper.check_acceptable(clock.now())  # nothing pending
    for record in append(log_path, signers, range(1, 3), at=logged_at):
        stamper.note_appended(record)
    assert not await stamper.timestamp_now()
    clock.advance(600)
    stamper.check_acceptable(clock.now())  # exactly the acceptable period: still fine
    clock.advance(1)
    assert not await stamper.timestamp_now()
    with pytest.raises(TimestampingOverdue) as caught:
        stamper.check_acceptable(clock.now())
    assert caught.value.since == logged_at
    assert caught.value.last_error is not None and "answered HTTP 503" in caught.value.last_error
    assert f"records logged since {logged_at.isoformat()} have no timestamp" in str(caught.value)
    assert "longer than the acceptable 600 s" in str(caught.value)
    assert "answered HTTP 503" in str(caught.value)

    # The TSA returns (its clock is the same as ours): the next round clears it.
    tsa.behaviour = Behaviour.GOOD
    assert await stamper.timestamp_now()
    stamper.check_acceptable(clock.now())
    clock.advance(10_000)
    stamper.check_acceptable(clock.now())  # nothing pending, however long it has been

    # New records start a new acceptable period from their own logging time.
    for record in append(log_path, signers, range(5, 6), at=clock.now()):
        stamper.note_appended(record)
    clock.advance(599)
    stamper.check_acceptable(clock.now())


async def test_a_round_without_approved_tsas_fails_with_a_reason(
    log_path: Path, good_log: list[LogRecord], make: Make, pki: Pki
) -> None:
    stamper = make(Config(pki, []))
    await stamper.start()
    assert not await stamper.timestamp_now()
    assert stamper.status().last_error == "global configuration approves no TSA"

    def no_configuration() -> tuple[Sequence[x509.Certificate], Sequence[x509.Certificate]]:
        raise RuntimeError("global configuration has expired")

    config = Config(pki, [TsaEndpoint("Test TSA", "http://127.0.0.1:9/tsa", pki.root)])
    broken = make(config)
    broken._trust = no_configuration
    await broken.start()
    assert not await broken.timestamp_now()
    assert "global configuration has expired" in (broken.status().last_error or "")


def test_timestamper_options_are_validated(log_path: Path, pki: Pki, clock: FixedClock) -> None:
    config = Config(pki, [])

    def build(options: dict[str, object], origin: str = ORIGIN) -> Timestamper:
        return Timestamper(
            log_path,
            origin,
            tsas=config.tsas,
            trust=config.trust,
            sign=CHECKPOINT_SIGNERS.sign_checkpoint(ORIGIN_OWNER),
            clock=clock,
            client=TimestampClient(),
            **options,  # type: ignore[arg-type]
        )

    with pytest.raises(ValueError, match="security server"):
        build({}, "EE/GOV/70000001")
    for name in ("interval_s", "retry_s", "acceptable_s", "timeout_s"):
        with pytest.raises(ValueError, match=name):
            build({name: 0})
    with pytest.raises(ValueError, match="max_batch"):
        build({"max_batch": 0})
    with pytest.raises(ValueError, match="url"):
        TsaEndpoint("TSA", "ftp://tsa.example", pki.root)
    with pytest.raises(ValueError, match="name"):
        TsaEndpoint("", "http://tsa.example", pki.root)


# -- the HTTP seam --------------------------------------------------------------------


async def test_client_maps_every_failure_to_tsa_unavailable(tsa: TsaServer) -> None:
    client = TimestampClient()
    try:
        with pytest.raises(TsaUnavailable, match="cannot reach"):
            await client.request(closed_port_url(), b"\x30\x00", timeout_s=1.0, max_size=1024)
        tsa.behaviour = Behaviour.HTTP_ERROR
        with pytest.raises(TsaUnavailable, match="answered HTTP 503"):
            await client.request(tsa.url, b"\x30\x00", timeout_s=1.0, max_size=1024)
        tsa.behaviour = Behaviour.OVERSIZE
        with pytest.raises(TsaUnavailable, match="more than 1024 bytes"):
            await client.request(tsa.url, b"\x30\x00", timeout_s=1.0, max_size=1024)
        tsa.behaviour = Behaviour.HANG
        started = time.monotonic()
        with pytest.raises(TsaUnavailable, match="did not answer within 0.2 s"):
            await client.request(tsa.url, b"\x30\x00", timeout_s=0.2, max_size=1024)
        assert time.monotonic() - started < 1.0
    finally:
        await client.close()


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
