"""Batch timestamping of the message log: checkpoints made, timestamped and stored beside the writer.

Every ``interval_s`` (default 60 s), or at once when ``max_batch`` records (default
10,000) wait, the :class:`Timestamper` runs a round:

1. it reads how far the log goes (``N``) and, if records follow the last checkpoint,
   computes the RFC 9162 root over the leaf hashes of records 1..N;
2. it builds the checkpoint body (origin, ``N``, root, ``clock.now()``), has it signed
   by the ``sign`` callable (the sign key of the member that owns this server: a
   detached JWS over the body's SHA-512, with that certificate's current OCSP
   response), and asks the approved TSAs in order for an RFC 3161 token over the
   body's SHA-256, each request with a fresh random 64-bit nonce, each call bounded
   by ``timeout_s``;
3. it verifies the first answer that comes (status, nonce, imprint, a signer among the
   approved TSAs, chain to an approved CA, clock) and, when one TSA fails, tries the
   next;
4. it computes the inclusion path of every record of the batch and stores the
   checkpoint with all of them in one transaction.

When every TSA fails, each reason is logged, the last one kept (:meth:`status`), and
the round is retried after ``retry_s`` rather than ``interval_s``.  Records keep being
logged meanwhile: timestamping never delays a message.  Only once the oldest
untimestamped record is older than ``acceptable_s`` (default 4 h) does
:meth:`Timestamper.check_acceptable` raise :class:`TimestampingOverdue`, which the
pipelines answer with ``Server.ClientProxy.LoggingFailed.TimestamperFailed``; the first
successful round clears it.

The timestamper keeps its own store connection (WAL lets it read and write beside the
writer's) and does every store operation on one thread of its own.  The TSAs and the
certificates they must chain to are read from callables at each round, so a new global
configuration takes effect at the next round.  HTTP goes through one seam,
:class:`TimestampClient`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

import aiohttp
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import Clock, require_utc
from core.identifiers import IdentifierError, SecurityServerId
from gateway.messagelog.checkpoint import Checkpoint, encode_path, inclusion_paths_after
from gateway.messagelog.errors import MessageLogError, TimestampingOverdue, TsaUnavailable
from gateway.messagelog.record import HASH_SIZE, LogRecord
from gateway.messagelog.store import WAL_SAFETY_NET_PAGES, LogLocation, MessageLogStore, PostgresLogShard
from gateway.messagelog.storethread import StoreThread
from trust.evidence import checkpoint_digest
from trust.merkle import CompactRange
from trust.signatures import sign_digest
from trust.timestamps import (
    MAX_RESPONSE_BYTES,
    TimestampError,
    TimestampInfo,
    build_timestamp_request,
    verify_timestamp_response,
)

__all__ = [
    "TsaEndpoint",
    "TimestampClient",
    "TimestampStatus",
    "Timestamper",
    "TsaUnavailable",
    "TimestampingOverdue",
    "TrustSource",
    "CheckpointSign",
    "checkpoint_signer",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_RETRY_S",
    "DEFAULT_ACCEPTABLE_S",
    "DEFAULT_TIMEOUT_S",
    "TIMESTAMP_QUERY_TYPE",
    "TIMESTAMP_REPLY_TYPES",
]

log = structlog.get_logger("xweg.timestamper")

DEFAULT_INTERVAL_S = 60.0  # seconds between rounds
DEFAULT_MAX_BATCH = 10_000  # records waiting that start a round at once
DEFAULT_RETRY_S = 60.0  # seconds before a failed round is retried
DEFAULT_ACCEPTABLE_S = 4 * 3600.0  # seconds a record may wait for a timestamp
DEFAULT_TIMEOUT_S = 10.0  # seconds one TSA call may take, answer included
TIMESTAMP_QUERY_TYPE = "application/timestamp-query"
#: RFC 3161 §3.4 names the first; some TSAs answer with the second.
TIMESTAMP_REPLY_TYPES = frozenset({"application/timestamp-reply", "application/timestamp-response"})
_CHUNK_BYTES = 64 * 1024

#: ``() -> (roots, intermediates)``: the approved CAs of the current global configuration.
TrustSource = Callable[[], tuple[Sequence[x509.Certificate], Sequence[x509.Certificate]]]
#: ``checkpoint body -> (compact JWS over SHA-512 of it, signer's DER OCSP response or None)``.
CheckpointSign = Callable[[bytes], tuple[str, bytes | None]]


def checkpoint_signer(
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    ocsp: Callable[[], bytes | None],
) -> CheckpointSign:
    """A :data:`CheckpointSign` with the owner member's sign ``key`` and ``certificate``.

    ``ocsp`` gives the certificate's current OCSP response (the one the server sends
    with its message signatures), asked at every signing.
    """

    def sign(body: bytes) -> tuple[str, bytes | None]:
        return sign_digest(checkpoint_digest(body), key, certificate), ocsp()

    return sign


_T = TypeVar("_T")


@dataclass(frozen=True)
class TsaEndpoint:
    """An approved time-stamping authority: its name, where to ask it, its certificate."""

    name: str
    url: str
    certificate: x509.Certificate

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or len(self.name) > 255:
            raise ValueError("a TSA needs a name of 1 to 255 characters")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in self.name):
            raise ValueError("a TSA's name contains control characters")
        if not isinstance(self.url, str):
            raise ValueError("a TSA's url must be a string")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a TSA's url must be an http(s) URL with a host, not {self.url!r}")
        if not isinstance(self.certificate, x509.Certificate):
            raise ValueError("a TSA's certificate must be an x509.Certificate")


@dataclass(frozen=True)
class TimestampStatus:
    """The timestamper's state, for health checks, metrics and operators."""

    pending: int  # records after the last checkpoint
    oldest_pending_at: dt.datetime | None  # when the first of them was logged
    last_success_at: dt.datetime | None  # when the last checkpoint was stored (this run)
    last_error: str | None  # why the last round failed; None after a success
    checkpoints: int  # checkpoints in the log

    def __post_init__(self) -> None:
        for name in ("pending", "checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        for name in ("oldest_pending_at", "last_success_at"):
            value = getattr(self, name)
            if value is not None:
                require_utc(value, name)
        if self.last_error is not None and (not isinstance(self.last_error, str) or not self.last_error):
            raise ValueError("last_error must be a non-empty string or None")

    def to_dict(self) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "pending": self.pending,
            "oldest_pending_at": when(self.oldest_pending_at),
            "last_success_at": when(self.last_success_at),
            "last_error": self.last_error,
            "checkpoints": self.checkpoints,
        }


class TimestampClient:
    """The one seam to TSAs: an RFC 3161 request POSTed over HTTP, its answer bounded.

    Uses ``session`` if given (the caller closes it), else one of its own, made at the
    first request and closed by :meth:`close`.  Every failure to get an answer (refused
    connection, HTTP error, wrong content type, timeout, oversized answer) is a
    :class:`TsaUnavailable`; whether the answer is a good token is not its concern.
    """

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owned = session is None

    async def request(self, url: str, request_der: bytes, *, timeout_s: float, max_size: int) -> bytes:
        """POST ``request_der`` to ``url``; the DER answer, at most ``max_size`` bytes."""
        if not timeout_s > 0 or max_size < 1:
            raise ValueError("timeout_s and max_size must be positive")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": TIMESTAMP_QUERY_TYPE, "Accept": "application/timestamp-reply"}
        try:
            async with asyncio.timeout(timeout_s):  # the whole exchange, answer included
                async with self._session.post(
                    url,
                    data=request_der,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                    allow_redirects=False,
                ) as response:
                    if response.status != 200:
                        raise TsaUnavailable(f"{url} answered HTTP {response.status}")
                    if response.content_type not in TIMESTAMP_REPLY_TYPES:
                        raise TsaUnavailable(
                            f"{url} answered with content type {response.content_type}, "
                            "not application/timestamp-reply"
                        )
                    if response.content_length is not None and response.content_length > max_size:
                        raise TsaUnavailable(f"{url} answered with more than {max_size} bytes")
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                        body += chunk
                        if len(body) > max_size:
                            raise TsaUnavailable(f"{url} answered with more than {max_size} bytes")
                    return bytes(body)
        except TimeoutError as exc:
            raise TsaUnavailable(f"{url} did not answer within {timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise TsaUnavailable(f"cannot reach {url}: {exc or type(exc).__name__}") from exc
        except OSError as exc:
            raise TsaUnavailable(f"cannot reach {url}: {exc}") from exc

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owned:
            await session.close()


class _Leaves(Sequence[bytes]):
    """The leaf hashes of records 1..n, packed 32 bytes each (a ``bytes`` object per leaf
    would cost three times the memory in a log of millions)."""

    def __init__(self) -> None:
        self._data = bytearray()

    def __len__(self) -> int:
        return len(self._data) // HASH_SIZE

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("leaf index out of range")
        return bytes(self._data[index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def __iter__(self) -> Iterator[bytes]:
        return (self[i] for i in range(len(self)))

    def extend(self, hashes: Sequence[bytes]) -> None:
        for value in hashes:
            self._data += value

    def truncate(self, size: int) -> None:
        del self._data[size * HASH_SIZE :]


@dataclass(frozen=True)
class _Snapshot:
    covered: int  # records covered by the last checkpoint
    size: int  # records to cover now
    root: bytes


@dataclass(frozen=True)
class _State:
    covered: int
    last_seq: int
    oldest_pending_at: dt.datetime | None
    checkpoints: int


class Timestamper:
    """Timestamps the log at ``store_path`` in batches; see the module docstring."""

    def __init__(
        self,
        store_path: LogLocation,
        origin: str,
        *,
        tsas: Callable[[], Sequence[TsaEndpoint]],
        trust: TrustSource,
        sign: CheckpointSign,
        clock: Clock,
        client: TimestampClient,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_batch: int = DEFAULT_MAX_BATCH,
        retry_s: float = DEFAULT_RETRY_S,
        acceptable_s: float = DEFAULT_ACCEPTABLE_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        try:
            if SecurityServerId.parse_slash(origin).slash() != origin:
                raise ValueError(f"origin {origin!r} is not in canonical slash form")
        except IdentifierError as exc:
            raise ValueError(f"origin must be the security server's id: {exc}") from exc
        for name, value in (
            ("interval_s", interval_s),
            ("retry_s", retry_s),
            ("acceptable_s", acceptable_s),
            ("timeout_s", timeout_s),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError("max_batch must be a positive integer")
        self._path = store_path if isinstance(store_path, PostgresLogShard) else Path(store_path)
        self._origin = origin
        self._tsas = tsas
        self._trust = trust
        self._sign = sign
        self._clock = clock
        self._client = client
        self._interval_s = float(interval_s)
        self._max_batch = max_batch
        self._retry_s = float(retry_s)
        self._acceptable_s = float(acceptable_s)
        self._timeout_s = float(timeout_s)

        self._thread = StoreThread("timestamper")
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._round_lock = asyncio.Lock()
        self._closed = False
        # Touched only on the store's thread: the leaf hashes read so far and their tree,
        # and the tree's frontier at the last checkpoint (what a round builds paths from).
        self._leaves = _Leaves()
        self._tree = CompactRange()
        self._checkpointed = CompactRange()
        # The event loop's view of the log.
        self._covered = 0
        self._last_seq = 0
        self._oldest_pending_at: dt.datetime | None = None
        self._last_success_at: dt.datetime | None = None
        self._last_error: str | None = None
        self._checkpoints = 0
        # While a round is in flight: its size, and the oldest record noted beyond it.
        self._round_size: int | None = None
        self._beyond_round: dt.datetime | None = None

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, read where timestamping stands, and start the rounds."""
        if self._task is not None or self._closed:
            raise RuntimeError("a timestamper starts once")
        # Its commits need not copy the WAL into the file either (the writer's checkpointer does).
        await self._thread.open(
            lambda: MessageLogStore.open(self._path, wal_autocheckpoint_pages=WAL_SAFETY_NET_PAGES)
        )
        state = await self._thread.run(self._read_state)
        self._covered = state.covered
        self._checkpoints = state.checkpoints
        # Records noted while the state was read are newer: merge, do not overwrite.
        self._last_seq = max(self._last_seq, state.last_seq)
        self._oldest_pending_at = _earliest(state.oldest_pending_at, self._oldest_pending_at)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="xweg-timestamper")
        if self.pending >= self._max_batch:
            self._wakeup.set()

    async def close(self) -> None:
        """Stop the rounds (a TSA call in flight is abandoned), close the store and the client."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._thread.close()
        await self._client.close()

    # -- what the gateway calls ------------------------------------------------------

    def note_appended(self, record: LogRecord) -> None:
        """Tell the timestamper that ``record`` is durable in the log (cheap; no I/O)."""
        if record.seq > self._last_seq:
            self._last_seq = record.seq
        if record.seq > self._covered:
            self._oldest_pending_at = _earliest(self._oldest_pending_at, record.logged_at)
        if self._round_size is not None and record.seq > self._round_size:
            self._beyond_round = _earliest(self._beyond_round, record.logged_at)
        if self.pending >= self._max_batch and self._last_error is None:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Records logged after the last checkpoint."""
        return max(0, self._last_seq - self._covered)

    def status(self) -> TimestampStatus:
        return TimestampStatus(
            pending=self.pending,
            oldest_pending_at=self._oldest_pending_at if self.pending else None,
            last_success_at=self._last_success_at,
            last_error=self._last_error,
            checkpoints=self._checkpoints,
        )

    def check_acceptable(self, now: dt.datetime) -> None:
        """Raise :class:`TimestampingOverdue` if a record has waited longer than ``acceptable_s``."""
        require_utc(now, "now")
        oldest = self._oldest_pending_at
        if self.pending and oldest is not None:
            if (now - oldest).total_seconds() > self._acceptable_s:
                raise TimestampingOverdue(oldest, self._acceptable_s, self._last_error)

    async def timestamp_now(self) -> bool:
        """Run one round right away; True if every record logged so far is now timestamped."""
        if self._task is None or self._closed:
            raise RuntimeError("the timestamper is not running")
        return await self._round()

    # -- the rounds ------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._interval_s
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                succeeded = await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the loop die: log, remember, retry
                log.exception("messagelog.timestamp.round_crashed")
                self._last_error = f"timestamping round failed unexpectedly: {exc}"
                succeeded = False
            delay = self._interval_s if succeeded else self._retry_s

    async def _round(self) -> bool:
        async with self._round_lock:
            try:
                return await self._round_locked()
            finally:
                self._round_size = None
                self._beyond_round = None

    async def _round_locked(self) -> bool:
        now = self._clock.now()
        # (1) how far the log goes, and the root over it
        try:
            snapshot = await self._thread.run(self._snapshot)
        except MessageLogError as exc:
            return self._failed([f"cannot read the message log: {exc}"])
        if snapshot is None:
            return True
        self._round_size = snapshot.size
        self._beyond_round = None
        # (2) the checkpoint body, signed by the owner member; its imprint; the TSAs and CAs
        body = Checkpoint.unsigned_body(self._origin, snapshot.size, snapshot.root, now)
        try:
            signature, signer_ocsp = self._sign(body)
        except Exception as exc:  # a key or OCSP problem is this round's failure, not the loop's
            return self._failed([f"cannot sign checkpoint {snapshot.size}: {exc}"])
        imprint = hashlib.sha256(body).digest()
        try:
            endpoints = list(self._tsas())
            roots, intermediates = self._trust()
        except Exception as exc:
            return self._failed([f"the approved TSAs and CAs are not available: {exc}"])
        if not endpoints:
            return self._failed(["global configuration approves no TSA"])
        approved = [endpoint.certificate for endpoint in endpoints]
        reasons: list[str] = []
        for endpoint in endpoints:
            # (3) ask this TSA, verify its answer; on failure, the next one
            try:
                info = await self._ask(endpoint, imprint, approved, roots, intermediates)
            except (TsaUnavailable, TimestampError) as exc:
                reason = f"TSA {endpoint.name}: {exc}"
                log.warning(
                    "messagelog.timestamp.tsa_failed", tsa=endpoint.name, url=endpoint.url, reason=str(exc)
                )
                reasons.append(reason)
                continue
            checkpoint = Checkpoint(
                origin=self._origin,
                size=snapshot.size,
                root=snapshot.root,
                time=now,
                token=info.token,
                tsa=endpoint.name,
                gen_time=info.gen_time,
                signature=signature,
                signer_ocsp=signer_ocsp,
            )
            # (4) every record's path, stored with the checkpoint in one transaction
            try:
                oldest_after = await self._thread.run(self._store_checkpoint, checkpoint, snapshot.covered)
            except MessageLogError as exc:
                return self._failed([f"cannot store checkpoint {snapshot.size}: {exc}"])
            self._succeeded(checkpoint, oldest_after)
            return True
        return self._failed(reasons)

    async def _ask(
        self,
        endpoint: TsaEndpoint,
        imprint: bytes,
        approved: Sequence[x509.Certificate],
        roots: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate],
    ) -> TimestampInfo:
        nonce = secrets.randbits(64)
        request = build_timestamp_request(imprint, nonce=nonce)
        try:
            # Bounded here too, whatever the client does.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.request(
                    endpoint.url, request, timeout_s=self._timeout_s, max_size=MAX_RESPONSE_BYTES
                )
        except TimeoutError as exc:
            raise TsaUnavailable(f"{endpoint.url} did not answer within {self._timeout_s:g} s") from exc
        return verify_timestamp_response(
            response,
            imprint=imprint,
            nonce=nonce,
            tsa_certificates=approved,
            roots=roots,
            intermediates=intermediates,
            now=self._clock.now(),
        )

    def _succeeded(self, checkpoint: Checkpoint, oldest_after: dt.datetime | None) -> None:
        self._covered = checkpoint.size
        self._last_seq = max(self._last_seq, checkpoint.size)
        # Read after the commit, or noted while the round ran: the first record beyond it.
        self._oldest_pending_at = _earliest(oldest_after, self._beyond_round)
        self._last_success_at = self._clock.now()
        self._last_error = None
        self._checkpoints += 1
        log.info(
            "messagelog.timestamp.checkpoint",
            size=checkpoint.size,
            root=checkpoint.root.hex(),
            tsa=checkpoint.tsa,
            gen_time=checkpoint.gen_time.isoformat(),
        )

    def _failed(self, reasons: list[str]) -> bool:
        self._last_error = "; ".join(reasons)
        log.warning(
            "messagelog.timestamp.failed",
            reason=self._last_error,
            pending=self.pending,
            retry_s=self._retry_s,
            oldest_pending_at=None
            if self._oldest_pending_at is None
            else self._oldest_pending_at.isoformat(),
        )
        return False

    # -- on the store's thread -------------------------------------------------------

    def _read_state(self) -> _State:
        store = self._thread.store
        last = store.last_checkpoint()
        covered = 0 if last is None else last.size
        last_seq = store.last_seq()
        oldest = store.logged_at(covered + 1) if last_seq > covered else None
        return _State(covered, last_seq, oldest, store.checkpoint_count())

    def _snapshot(self) -> _Snapshot | None:
        store = self._thread.store
        last = store.last_checkpoint()
        covered = 0 if last is None else last.size
        size = store.last_seq()
        if size <= covered:
            return None
        if len(self._leaves) > size:  # the file went back: start over from it
            self._leaves, self._tree, self._checkpointed = _Leaves(), CompactRange(), CompactRange()
        if len(self._leaves) < size:
            fresh = store.leaf_hashes(size, start=len(self._leaves) + 1)
            self._leaves.extend(fresh)
            self._tree.extend(fresh)
        return _Snapshot(covered, size, self._tree.root())

    def _store_checkpoint(self, checkpoint: Checkpoint, covered: int) -> dt.datetime | None:
        store = self._thread.store
        # Paths of the records since the last checkpoint only, from its frontier: a round
        # costs what was logged since, not the whole log (it holds the GIL meanwhile).
        frontier = self._frontier_at(covered)
        fresh = self._leaves[covered : checkpoint.size]
        paths = inclusion_paths_after(frontier, fresh)
        rows = [(covered + 1 + offset, encode_path(path)) for offset, path in enumerate(paths)]
        store.add_checkpoint(checkpoint, rows)
        frontier.extend(fresh)
        return store.logged_at(checkpoint.size + 1)

    def _frontier_at(self, covered: int) -> CompactRange:
        """The tree's compact range over the first ``covered`` leaves (already read)."""
        if self._checkpointed.size > covered:  # another writer's checkpoint went back: rebuild
            self._checkpointed = CompactRange()
        if self._checkpointed.size < covered:
            self._checkpointed.extend(self._leaves[self._checkpointed.size : covered])
        return self._checkpointed


def _earliest(first: dt.datetime | None, second: dt.datetime | None) -> dt.datetime | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
