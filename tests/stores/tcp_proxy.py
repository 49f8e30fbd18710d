"""A TCP proxy on 127.0.0.1 that a test can cut and restore, to fake a network outage.

Every connection accepted is forwarded to the upstream address, byte for byte, by two pump
tasks. ``cut()`` simulates an outage of one of two kinds:

* ``refuse``: every live connection is reset and the listening socket closed, so a new
  connection is refused at once (the server's host is up, its port closed).
* ``blackhole``: every live connection goes silent (what it sends is dropped, nothing comes
  back) and new connections are accepted but never answered (a network partition, or a
  firewall dropping packets): only the client's own timeouts end its waits.

``restore()`` ends the outage: the silent connections are reset (as TCP would once the peer
gave up) and new connections are forwarded again, on the same port.

A narrower fault: while ``drop`` holds some bytes, a connection whose client sends a chunk
containing them is reset before the chunk reaches the server (one kind of command fails,
the rest go through). ``sent`` records what clients sent, in the order it arrived, so that a
test can wait for a client to have done something.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Outage = Literal["refuse", "blackhole"]

_CHUNK = 65536


class _Link:
    """One client connection and, while forwarding, its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        """Abort both sides at once (an RST, not a polite FIN), and stop the pumps."""
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_host``:``upstream_port`` until cut.

    Args:
        upstream_host: The real server's address.
        upstream_port: The real server's port.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        """The port clients connect to; chosen by the system at the first ``start()``."""
        self.outage: Outage | None = None
        """The current outage, or None while forwarding."""
        self.accepted = 0
        """Connections accepted so far (forwarded or not)."""
        self.drop: bytes | None = None
        """Reset a connection that sends a chunk containing these bytes (None: forward all)."""
        self.sent: list[bytes] = []
        """Every chunk clients sent, forwarded or dropped, in the order it arrived."""
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    @property
    def address(self) -> str:
        """``host:port`` to give clients."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again, on the same port after a ``refuse`` outage)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self, outage: Outage) -> None:
        """Begin an outage: see the module docstring for what each kind does."""
        self.outage = outage
        if outage == "refuse":
            await self._stop_listening()
            for link in list(self._links):
                link.reset()
            return
        for link in self._links:
            for task in link.tasks:
                task.cancel()  # nothing is forwarded any more either way
            if link.upstream is not None:
                link.upstream.transport.abort()
                link.upstream = None
            link.tasks = [asyncio.create_task(_swallow(link.client.transport))]

    async def restore(self) -> None:
        """End the outage: reset the silent connections and forward new ones again."""
        outage, self.outage = self.outage, None
        for link in list(self._links):
            if outage == "blackhole":
                link.reset()
        if outage == "refuse":
            await self.start()

    async def close(self) -> None:
        """Stop listening and reset every connection; waits for their pumps to end."""
        self.outage = "refuse"
        await self._stop_listening()
        links = list(self._links)
        for link in links:
            link.reset()
        tasks = [task for link in links for task in link.tasks]
        if tasks:
            await asyncio.wait(tasks)

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # wait_closed() would wait for the live connections' handlers too (3.12+).
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 0.1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            if self.outage is not None:
                link.tasks = [asyncio.create_task(_swallow(writer.transport))]
                await asyncio.wait(link.tasks)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                link.reset()
                return
            link.upstream = up_writer
            if self.outage is not None:  # cut or closed while connecting upstream
                link.reset()
                return
            link.tasks = [
                asyncio.create_task(self._forward(link, reader, up_writer)),
                asyncio.create_task(_pump(up_reader, writer)),
            ]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            if self.outage is None:  # one side closed: close the other (an outage aborts)
                link.reset()
            else:
                # A blackhole replaced the pumps: wait for the new ones.
                while link.tasks and not all(t.done() for t in link.tasks):
                    await asyncio.wait(link.tasks)
        finally:
            self._links.discard(link)
            # An upstream connection opened while the proxy was closing (or cut) is never
            # pumped or reset: abort whatever is left, so no writer outlives its handler.
            for side in (link.client, link.upstream):
                if side is not None:
                    side.transport.abort()

    async def _forward(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy a client's bytes upstream, recording them; reset the link on ``drop``."""
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(_CHUNK):
                self.sent.append(chunk)
                if self.drop is not None and self.drop in chunk:
                    link.reset()
                    return
                writer.write(chunk)
                await writer.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until either side closes."""
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()


async def _swallow(transport: asyncio.BaseTransport) -> None:
    """Hold the connection open, answering nothing, until it is reset or closed."""
    closed = asyncio.get_running_loop().create_future()
    protocol = transport.get_protocol()
    # Drop whatever arrives from now on, and learn when the connection ends.
    transport.set_protocol(_Sink(closed))
    del protocol
    if isinstance(transport, asyncio.ReadTransport) and not transport.is_reading():
        transport.resume_reading()  # the stream may have paused it when its buffer filled
    with contextlib.suppress(asyncio.CancelledError):
        await closed
    transport.abort()


class _Sink(asyncio.Protocol):
    """Discards incoming data; resolves ``closed`` when the connection is lost."""

    def __init__(self, closed: asyncio.Future[None]) -> None:
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        """Drop it: a blackhole answers nothing."""

    def eof_received(self) -> bool:
        """Keep the connection half-open, as a dead peer would."""
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended: the swallow is over."""
        if not self._closed.done():
            self._closed.set_result(None)
