"""``serve_metrics``: a small asyncio HTTP server for ``GET /metrics`` and ``GET /healthz``.

HTTP/1.1 is h11's job (parsing, framing, keep-alive); this module only maps requests to
answers. Every request is answered on the event loop of the flow, which is where both
``flow.health()`` and the scrape-time gauges must be read.

Design note (ownership): the server owns one task per connection. ``asyncio.start_server`` is
given a plain callback, so each task is created and tracked at once; ``close()`` stops
listening, cancels every connection task and awaits them, so no task outlives the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Final, final

try:
    import h11
    from prometheus_client.exposition import choose_encoder
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "penguiflow.observe needs prometheus-client and h11 to serve metrics: "
        "pip install 'penguiflow[prometheus]'"
    ) from exc

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from ..core import PenguiFlow
    from .prometheus import PrometheusMetrics

__all__ = ["IDLE_TIMEOUT_S", "MetricsServer", "serve_metrics"]

IDLE_TIMEOUT_S: Final = 60.0
"""Seconds a connection may wait for the rest of a request (or the next one) before closing."""

_READ_SIZE: Final = 65536
_JSON: Final = "application/json"
_TEXT: Final = "text/plain; charset=utf-8"
_CLOSE: Final = (("connection", "close"),)

logger: Final = logging.getLogger("penguiflow.observe")


@dataclasses.dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    content_type: str
    body: bytes
    headers: Sequence[tuple[str, str]] = ()


@final
class MetricsServer:
    """A listening metrics endpoint, returned by ``serve_metrics``; not built directly.

    Serves ``GET /metrics`` (the registry of ``metrics`` in the Prometheus text format, or
    OpenMetrics when the scraper asks for it) and ``GET /healthz`` (``flow.health()`` as JSON,
    status 200 for ``ok`` and ``degraded``, 503 for ``failing``). Other paths get 404, other
    methods 405. An ``async with`` block closes it on exit.
    """

    __slots__ = ("_closing", "_connections", "_flow", "_listener", "_metrics", "host", "port")

    def __init__(self, flow: PenguiFlow, metrics: PrometheusMetrics) -> None:
        self._flow = flow
        self._metrics = metrics
        self._listener: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False
        self.host = ""
        """The address listened on."""
        self.port = 0
        """The port listened on; the one the system chose when asked for port 0."""

    async def _listen(self, host: str, port: int) -> None:
        self._listener = await asyncio.start_server(self._accept, host, port)
        self.host, self.port = self._listener.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        """Stop listening, end every open connection and wait until they are gone.

        A request being answered is cut off. Calling it again does nothing.
        """
        if self._closing:
            return
        self._closing = True
        listener = self._listener
        if listener is not None:
            listener.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        if connections:
            await asyncio.wait(connections)
        if listener is not None:
            await listener.wait_closed()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Start serving a new connection; called by the listener, synchronously."""
        if self._closing:
            writer.close()  # accepted just before close(): turn it away
            return
        task = asyncio.get_running_loop().create_task(
            self._converse(reader, writer), name="penguiflow:metrics-connection"
        )
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one connection until either side closes it."""
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._exchange(conn, reader, writer):
                conn.start_next_cycle()
        except (ConnectionError, TimeoutError):
            pass  # the peer went away, or stayed idle too long: nobody to answer
        except h11.RemoteProtocolError as error:
            await _reject(conn, writer, error)
        except Exception:
            logger.exception(
                "metrics_connection_failed", extra={"event": "metrics_connection_failed"}
            )
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _exchange(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; return whether the connection may carry another."""
        request = await _receive(conn, reader)
        if not isinstance(request, h11.Request):
            return False  # the peer closed the connection between requests
        if request.method != b"GET":
            # Answered at once, body unread, so the connection cannot be reused.
            reply = _Reply(405, _TEXT, b"method not allowed\n", (("allow", "GET"), *_CLOSE))
        else:
            while not isinstance(event := await _receive(conn, reader), h11.EndOfMessage):
                if not isinstance(event, h11.Data):
                    return False
            reply = self._answer(request)
        await _send(conn, writer, reply)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    def _answer(self, request: h11.Request) -> _Reply:
        """Build the reply to a GET; a failure to build it is logged and answered with 500."""
        path = request.target.split(b"?", 1)[0]
        try:
            if path == b"/metrics":
                accept = b", ".join(value for name, value in request.headers if name == b"accept")
                encode, content_type = choose_encoder(accept.decode("latin-1"))
                return _Reply(200, content_type, encode(self._metrics.registry))
            if path == b"/healthz":
                health = self._flow.health()
                body = json.dumps(dataclasses.asdict(health)).encode()
                return _Reply(503 if health.status == "failing" else 200, _JSON, body)
        except Exception:
            logger.exception(
                "metrics_request_failed",
                extra={"event": "metrics_request_failed", "path": path.decode("latin-1")},
            )
            return _Reply(500, _TEXT, b"internal error\n")
        return _Reply(404, _TEXT, b"not found\n")


async def serve_metrics(
    flow: PenguiFlow,
    metrics: PrometheusMetrics,
    *,
    host: str = "127.0.0.1",
    port: int = 9464,
) -> MetricsServer:
    """Serve ``metrics`` and ``flow``'s health over HTTP until the server is closed.

    Use ``port=0`` to let the system choose a free port; read it from ``server.port``. With a
    host name that resolves to several addresses, ``port`` is that of the first.

    Raises:
        OSError: the address cannot be bound (in use, or not local).
    """
    server = MetricsServer(flow, metrics)
    await server._listen(host, port)
    return server


async def _receive(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    """Return h11's next event (never ``NEED_DATA``), reading from the peer while it needs data.

    Raises:
        TimeoutError: the peer sent nothing for ``IDLE_TIMEOUT_S``.
        h11.RemoteProtocolError: the peer does not speak HTTP/1.1 properly.
    """
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            data = await reader.read(_READ_SIZE)
        conn.receive_data(data)  # b"" tells h11 the peer closed its side


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, reply: _Reply) -> None:
    headers = [
        ("content-type", reply.content_type),
        ("content-length", str(len(reply.body))),
        *reply.headers,
    ]
    for event in (
        h11.Response(status_code=reply.status, headers=headers),
        h11.Data(data=reply.body),
        h11.EndOfMessage(),
    ):
        data = conn.send(event)
        assert data is not None  # only ConnectionClosed sends nothing
        writer.write(data)
    await writer.drain()


async def _reject(
    conn: h11.Connection, writer: asyncio.StreamWriter, error: h11.ProtocolError
) -> None:
    """Answer a malformed request with h11's suggested status (400, 431...), if still possible."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return  # a response is under way already: the connection just closes
    reply = _Reply(error.error_status_hint, _TEXT, b"bad request\n", _CLOSE)
    with contextlib.suppress(ConnectionError, h11.LocalProtocolError):
        await _send(conn, writer, reply)
