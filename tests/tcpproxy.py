"""A TCP proxy for tests: a balancer in front of replicas, or a network to a database
that can be cut or partitioned."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """A TCP proxy on its own thread: each connection goes to the next target that accepts
    it (round robin).  :meth:`cut` drops every connection and stops listening, as a network
    or a database going away; :meth:`partition` drops only the side facing the clients, so
    the targets do not learn of it (as when a network between them breaks); :meth:`restore`
    listens again on the same port."""

    def __init__(self, targets: list[int]) -> None:
        self.targets = targets
        self.port = _free_port()
        self.connections: dict[int, int] = {}  # per target: connections passed on
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()  # both sides of every connection
        self._downstream: set[asyncio.StreamWriter] = set()  # the clients' sides
        self._held: list[asyncio.StreamWriter] = []  # targets' sides kept open by a partition
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    def restore(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

        self._call(listen())

    def partition(self) -> None:
        async def drop_clients() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in list(self._downstream):
                writer.transport.abort()
            # The targets' sides stay open and silent: a target sees nothing happen.
            self._held += [w for w in self._open if w not in self._downstream]
            self._open.clear()
            self._downstream.clear()

        self._call(drop_clients())

    def cut(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in [*self._open, *self._held]:
                writer.transport.abort()  # an RST, as from a host that went away
            self._open.clear()
            self._downstream.clear()
            self._held.clear()

        self._call(close())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        self._downstream.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for _ in range(len(self.targets)):
            target = self.targets[self._next % len(self.targets)]
            self._next += 1
            try:
                upstream = await asyncio.open_connection("127.0.0.1", target)
            except OSError:
                continue  # that one is down: the next
            self.connections[target] = self.connections.get(target, 0) + 1
            break
        if upstream is None:
            writer.transport.abort()
            self._open.discard(writer)
            return
        up_reader, up_writer = upstream
        self._open.add(up_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            if sink not in self._held:  # a partition leaves the targets' sides as they are
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open.discard(writer)
        self._open.discard(up_writer)
        self._downstream.discard(writer)
