"""``serve_metrics``: ``GET /metrics`` and ``GET /healthz`` for a flow, over ``http.server``.

HTTP/1.1 (parsing, keep-alive, answers to malformed requests) is the standard library's
``BaseHTTPRequestHandler``; the body of ``/metrics`` and its content type are prometheus-client's
(``choose_encoder``, which its own exporters use). This module maps paths to answers and owns
the threads that serve them.

Design note (threads and the loop): a ``BaseHTTPRequestHandler`` blocks, so each connection is
served by a thread of its own, while one task on the flow's event loop accepts connections.
Every answer is computed on that loop, which is where both ``flow.health()`` and the
scrape-time gauges must be read: the connection's thread hands the request over and waits for
the answer, for at most ``ANSWER_TIMEOUT_S``.

Ownership: the server owns its accept task and every connection thread. A thread shuts its
connection down when done; the loop closes the socket, so a socket is never closed by one
thread while another still uses its descriptor. ``close()`` cancels the task, closes the
listening socket, shuts every connection down (an idle keep-alive reader wakes at once) and
waits, without blocking the loop, until every thread has ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, final

try:
    from prometheus_client.exposition import choose_encoder
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "penguiflow.observe needs prometheus-client to serve metrics: "
        "pip install 'penguiflow-runtime[prometheus]'"
    ) from exc

from ._health_collector import call_on_loop

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from dataclasses import Field
    from types import TracebackType

    from prometheus_client import CollectorRegistry

__all__ = ["ANSWER_TIMEOUT_S", "IDLE_TIMEOUT_S", "MetricsServer", "Observed", "serve_metrics"]


class Registered(Protocol):
    """What the server exposes at ``/metrics``: a ``PrometheusMetrics`` has it."""

    @property
    def registry(self) -> CollectorRegistry:
        """The prometheus-client registry to encode."""


class Snapshot(Protocol):
    """A health snapshot: a dataclass (served as its JSON) with a ``status``."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @property
    def status(self) -> str:
        """``ok``, ``degraded`` or ``failing``."""


class Observed(Protocol):
    """What ``/healthz`` reports on: a ``PenguiFlow``, or a distributed ``Worker``."""

    def health(self) -> Snapshot:
        """A health snapshot, taken on the event loop the server answers on."""


IDLE_TIMEOUT_S: Final = 60.0
"""Seconds a connection may wait for the rest of a request (or the next one) before closing."""

ANSWER_TIMEOUT_S: Final = 5.0
"""Seconds a request waits for the flow's loop to compute its answer; then it gets 503."""

_ACCEPT_RETRY_S: Final = 1.0
"""Pause after a failed accept (out of file descriptors, most likely), as asyncio's own."""

_JSON: Final = "application/json"
_TEXT: Final = "text/plain; charset=utf-8"
_CLOSE: Final = ("Connection", "close")

logger: Final = logging.getLogger("penguiflow.observe")


@dataclasses.dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    content_type: str
    body: bytes
    headers: Sequence[tuple[str, str]] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class _Connection:
    sock: socket.socket
    thread: threading.Thread
    finished: asyncio.Future[None]
    """Done once the thread has served its last request and shut the connection down."""


@final
class _Endpoint(socketserver.BaseServer):
    """The server ``http.server``'s handlers are given: it turns a request into its answer.

    Of ``BaseServer`` only ``finish_request`` is used (to run a handler); accepting is the
    ``MetricsServer``'s task.
    """

    def __init__(
        self,
        address: tuple[str, int],
        loop: asyncio.AbstractEventLoop,
        answer: Callable[[str, str], _Reply],
    ) -> None:
        super().__init__(address, _Exchange)
        self._loop = loop
        self._answer = answer

    def reply(self, target: str, accept: str) -> _Reply:
        """Return the answer to a GET of ``target``, computed on the loop; 503 if it is stuck."""
        answer = functools.partial(self._answer, target, accept)
        try:
            return call_on_loop(self._loop, answer, ANSWER_TIMEOUT_S)
        except TimeoutError:
            logger.warning(
                "metrics_loop_unresponsive",
                extra={"event": "metrics_loop_unresponsive", "path": target},
            )
            return _Reply(503, _TEXT, b"event loop not responding\n")


class _Exchange(BaseHTTPRequestHandler):
    """Serves the requests of one connection, in that connection's thread."""

    protocol_version = "HTTP/1.1"  # keep-alive: every reply carries a Content-Length
    # A request line too garbled to name its version is answered as HTTP/1.0 (with a status
    # line), not as HTTP/0.9 (a bare body).
    default_request_version = "HTTP/1.0"
    timeout = IDLE_TIMEOUT_S
    server: _Endpoint

    def parse_request(self) -> bool:
        """Parse the request line and headers; answer any method but GET with 405.

        ``http.server`` would answer an unknown method with 501; every method but GET is
        refused alike here, and the connection ends, since the request body goes unread.
        """
        if not super().parse_request():
            return False  # answered already (400, 431...), or the peer closed
        if self.command == "GET":
            return True
        self._send(_Reply(405, _TEXT, b"method not allowed\n", (("Allow", "GET"), _CLOSE)))
        return False

    def do_GET(self) -> None:
        """Answer a GET with what the flow's loop computes."""
        accept = ", ".join(self.headers.get_all("Accept", ()))
        reply = self.server.reply(self.path, accept)
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            # A body this server does not read: it cannot find where the next request starts.
            reply = dataclasses.replace(reply, headers=(*reply.headers, _CLOSE))
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        """Log requests and protocol errors at debug level, not on stderr."""
        logger.debug("metrics_http", extra={"event": "metrics_http", "detail": format % args})


@final
class MetricsServer:
    """A listening metrics endpoint, returned by ``serve_metrics``; not built directly.

    Serves ``GET /metrics`` (the registry of ``metrics`` in the Prometheus text format, or
    OpenMetrics when the scraper asks for it) and ``GET /healthz`` (``health()`` as JSON,
    status 200 for ``ok`` and ``degraded``, 503 for ``failing``). Other paths get 404, other
    methods 405; a request the flow's loop does not answer within ``ANSWER_TIMEOUT_S`` gets
    503. An ``async with`` block closes it on exit.
    """

    __slots__ = (
        "_accepting",
        "_closing",
        "_connections",
        "_flow",
        "_listener",
        "_metrics",
        "host",
        "port",
    )

    def __init__(self, flow: Observed, metrics: Registered) -> None:
        self._flow = flow
        self._metrics = metrics
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: list[_Connection] = []
        self._closing = False
        self.host = ""
        """The address listened on."""
        self.port = 0
        """The port listened on; the one the system chose when asked for port 0."""

    async def _listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        listener = socket.create_server(address, family=family)
        listener.setblocking(False)  # accepted on the loop
        self._listener = listener
        self.host, self.port = listener.getsockname()[:2]
        endpoint = _Endpoint((self.host, self.port), loop, self._answer)
        self._accepting = loop.create_task(
            self._accept(listener, endpoint), name="penguiflow:metrics-listener"
        )

    async def close(self) -> None:
        """Stop listening, end every open connection and wait until their threads are gone.

        A request being answered is cut off. Calling it again does nothing.
        """
        if self._closing:
            return
        self._closing = True
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.wait([self._accepting])
        if self._listener is not None:
            self._listener.close()
        connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):  # already shut down, or closed by the loop
                connection.sock.shutdown(socket.SHUT_RDWR)
        if connections:
            await asyncio.wait([connection.finished for connection in connections])
        for connection in connections:
            connection.thread.join()  # finished serving: this only waits for it to exit

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _accept(self, listener: socket.socket, endpoint: _Endpoint) -> None:
        """Accept connections until cancelled; each is served by a thread of its own."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(listener)
            except ConnectionError:
                continue  # the client gave up before it was accepted
            except OSError:
                logger.exception("metrics_accept_failed", extra={"event": "metrics_accept_failed"})
                await asyncio.sleep(_ACCEPT_RETRY_S)
                continue
            self._start(conn, peer, endpoint)

    def _start(self, conn: socket.socket, peer: object, endpoint: _Endpoint) -> None:
        """Serve ``conn`` in a new thread; runs on the loop, between two accepts."""
        # Forget connections whose thread has exited; close() waits for the others.
        self._connections = [c for c in self._connections if c.thread.is_alive()]
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=_converse,
            args=(endpoint, conn, peer, done),
            name="penguiflow:metrics-connection",
            daemon=True,
        )
        finished = asyncio.wrap_future(done)
        finished.add_done_callback(lambda _: conn.close())
        try:
            thread.start()
        except RuntimeError:  # the system refused another thread
            logger.exception("metrics_accept_failed", extra={"event": "metrics_accept_failed"})
            conn.close()
            return
        self._connections.append(_Connection(conn, thread, finished))

    def _answer(self, target: str, accept: str) -> _Reply:
        """Build the reply to a GET, on the flow's loop; a failure is logged and answered 500."""
        path = target.split("?", 1)[0]
        try:
            if path == "/metrics":
                encode, content_type = choose_encoder(accept)
                return _Reply(200, content_type, encode(self._metrics.registry))
            if path == "/healthz":
                health = self._flow.health()
                body = json.dumps(dataclasses.asdict(health)).encode()
                return _Reply(503 if health.status == "failing" else 200, _JSON, body)
        except Exception:
            logger.exception(
                "metrics_request_failed", extra={"event": "metrics_request_failed", "path": path}
            )
            return _Reply(500, _TEXT, b"internal error\n")
        return _Reply(404, _TEXT, b"not found\n")


async def serve_metrics(
    flow: Observed,
    metrics: Registered,
    *,
    host: str = "127.0.0.1",
    port: int = 9464,
) -> MetricsServer:
    """Serve ``metrics`` and ``flow``'s health over HTTP until the server is closed.

    ``flow`` is a ``PenguiFlow`` or anything else with a ``health()`` snapshot, such as a
    distributed ``Worker`` (see ``serve_worker_metrics``).

    Use ``port=0`` to let the system choose a free port; read it from ``server.port``. A host
    name is resolved and its first address bound; an empty ``host`` means every interface.

    Raises:
        OSError: the address cannot be resolved or bound (in use, or not local).
    """
    server = MetricsServer(flow, metrics)
    await server._listen(host, port)
    return server


def _converse(
    endpoint: _Endpoint, conn: socket.socket, peer: object, done: concurrent.futures.Future[None]
) -> None:
    """Serve one connection until either side ends it; the body of the connection's thread."""
    try:
        endpoint.finish_request(conn, peer)
    except OSError:
        pass  # the peer went away, or close() shut the connection down: nobody to answer
    except Exception:
        logger.exception("metrics_connection_failed", extra={"event": "metrics_connection_failed"})
    finally:
        with contextlib.suppress(OSError):  # the peer may have reset it already
            conn.shutdown(socket.SHUT_RDWR)
        done.set_result(None)
