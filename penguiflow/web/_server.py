"""``serve_flow``: the page served by uvicorn on the flow's own event loop.

The flow's state is read by the handlers directly (``flow.health()`` is synchronous and not
thread-safe), so the server runs as a task on the loop that runs the flow. The listening
socket is bound before the task starts, so the port (chosen by the system for ``port=0``)
is known at once and a bind error is raised by ``serve_flow`` itself. Signals are left to
the caller: uvicorn's own handlers would take SIGINT from the program around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any, Final, final

import uvicorn

from ._app import DEFAULT_MAX_PAYLOAD_CHARS, create_app
from ._security import TOKEN_ENV, is_loopback, resolve_token

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from starlette.applications import Starlette

    from ..core import PenguiFlow
    from ._views import TraceReader

__all__ = ["DEFAULT_PORT", "GRACEFUL_SHUTDOWN_S", "WebServer", "serve_flow"]

DEFAULT_PORT: Final = 8787
"""The port ``serve_flow`` and ``penguiflow serve`` listen on by default."""
GRACEFUL_SHUTDOWN_S: Final = 5.0
"""How long ``close()`` lets open requests finish before they are cancelled."""


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, told when it is up, ending the event streams first at shutdown."""

    def __init__(self, config: uvicorn.Config, close_streams: Callable[[], None]) -> None:
        super().__init__(config)
        self.up = asyncio.Event()
        self._close_streams = close_streams

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signal handlers alone: the program that serves the flow owns them."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start listening, then say so."""
        await super().startup(sockets=sockets)
        self.up.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the event streams, then let uvicorn wait for the connections to finish."""
        self._close_streams()
        await super().shutdown(sockets=sockets)


@final
class WebServer:
    """The page being served, returned by ``serve_flow``; not built directly.

    An ``async with`` block closes it on exit; ``serve_forever()`` waits until it is closed.
    """

    __slots__ = ("_server", "_task", "app", "host", "port")

    def __init__(
        self, app: Starlette, server: _Uvicorn, task: asyncio.Task[None], host: str, port: int
    ) -> None:
        self.app = app
        """The Starlette application (``create_app``'s)."""
        self._server = server
        self._task = task
        self.host = host
        """The address listened on."""
        self.port = port
        """The port listened on; the one the system chose for port 0."""

    @property
    def url(self) -> str:
        """``http://host:port/`` (IPv6 addresses in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        """Stop listening, end the event streams, let requests finish, and return.

        Requests still running after ``GRACEFUL_SHUTDOWN_S`` are cancelled. Calling it again
        does nothing.
        """
        self._server.should_exit = True
        await asyncio.wait([self._task])

    async def serve_forever(self) -> None:
        """Wait until the server is closed (by ``close()``, or a failure of uvicorn's).

        Cancelling this call closes the server.
        """
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            await self.close()
            raise

    async def __aenter__(self) -> WebServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve_flow(
    flow: PenguiFlow,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    store: TraceReader | None = None,
    token: str | None = None,
    control: bool = False,
    redact: Callable[[str], str] | None = None,
    max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS,
    **options: Any,
) -> WebServer:
    """Serve ``flow``'s live page on ``host:port`` from this event loop; return the server.

    Call it on the loop that runs the flow. The server runs until ``close()`` (or the end of
    an ``async with`` block); ``serve_forever()`` waits for that. ``port=0`` lets the system
    choose; read ``server.port``. The other arguments, and ``options`` (``metrics``,
    ``protect_probes``, ``interval_s``, ``max_traces``), are ``create_app``'s.

    Raises:
        ValueError: ``host`` is not a loopback address and there is no token (argument or
            ``$PENGUIFLOW_WEB_TOKEN``); or ``create_app`` refused an argument.
        OSError: the address cannot be resolved or bound.
    """
    token = resolve_token(token)
    if token is None and not is_loopback(host):
        raise ValueError(
            f"serve_flow: listening on {host or 'every interface'!r} (not loopback) needs a "
            f"token: pass token=... or set {TOKEN_ENV}"
        )
    app = create_app(
        flow,
        store=store,
        token=token,
        control=control,
        redact=redact,
        max_payload_chars=max_payload_chars,
        **options,
    )
    listener = await _bind(host, port)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
    )
    server = _Uvicorn(config, app.state.penguiflow.close_streams)
    bound_host, bound_port = listener.getsockname()[:2]
    task = asyncio.get_running_loop().create_task(
        server.serve(sockets=[listener]), name="penguiflow:web"
    )
    # Up, or given up: either way the wait ends.
    task.add_done_callback(lambda _: server.up.set())
    try:
        await server.up.wait()
    except asyncio.CancelledError:
        server.should_exit = True
        await asyncio.wait([task])
        raise
    if task.done():  # uvicorn gave up before it started: its error says why
        listener.close()
        task.result()
        raise RuntimeError("serve_flow: uvicorn stopped before it started listening")
    return WebServer(app, server, task, bound_host, bound_port)


async def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on the first address ``host`` resolves to."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    listener = socket.create_server(address, family=family)
    listener.setblocking(False)
    return listener
