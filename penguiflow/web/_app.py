"""``create_app``: the Starlette application behind the live page, and its request handlers.

Routes (all ``GET`` unless said):

- ``/``, ``/app.js``, ``/style.css``: the page, shipped in ``static/`` (no build step);
- ``/metrics``: Prometheus text (``PrometheusMetrics``); ``/healthz``: ``flow.health()`` as
  JSON, 503 when failing;
- ``/api/graph``: nodes and edges, whether control is on, where traces come from;
- ``/api/stats``: one live snapshot (health, node figures, floe depths);
- ``/api/events``: the same snapshot as server-sent events, every ``interval_s``;
- ``/api/traces`` (``?limit=``) and ``/api/traces/<trace id>``: recent traces, one timeline;
- ``POST /api/cancel`` with ``{"trace_id": ...}``: cancel a trace (``control=True`` only).

Design note (events): the stream is a plain ``StreamingResponse`` of ``text/event-stream``.
Server-sent events are a line format (``event:``, ``data:``, a blank line) that needs no
library, and a stream that sends a snapshot every second needs no keep-alive pings either.
What a library would add is the end of streams at shutdown; here the application owns that:
its ``close_streams()`` (which ``serve_flow``'s server calls before it waits for connections
to finish) wakes every stream, and each ends at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from importlib import resources
from typing import TYPE_CHECKING, Final, final

from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._sanitize import PAGE_MAX_CHARS as DEFAULT_MAX_PAYLOAD_CHARS
from .._sanitize import Sanitizer
from ._recorder import DEFAULT_MAX_TRACES, RateMeter, Recorder
from ._security import TOKEN_ENV, Guard, Identity, resolve_token
from ._views import TRACE_LIST_LIMIT, MemoryTraces, StoreTraces, TraceReader, figures, graph

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from starlette.requests import Request

    from ..core import PenguiFlow
    from ..observe.prometheus import PrometheusMetrics
    from ._views import JSON, TraceSource

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_MAX_PAYLOAD_CHARS", "TOKEN_ENV", "WebState", "create_app"]

DEFAULT_INTERVAL_S: Final = 1.0
"""How often the event stream pushes a snapshot."""

logger: Final = logging.getLogger("penguiflow.web")

_ASSETS: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


@final
class WebState:
    """What the handlers share: the flow, its recorder, the trace source, the stream's end."""

    def __init__(
        self,
        flow: PenguiFlow,
        *,
        recorder: Recorder,
        traces: TraceSource,
        sanitizer: Sanitizer,
        metrics: PrometheusMetrics,
        control: bool,
        interval_s: float,
    ) -> None:
        self.flow = flow
        self.recorder = recorder
        self.traces = traces
        self.sanitizer = sanitizer
        self.metrics = metrics
        self.control = control
        self.interval_s = interval_s
        self.meter = RateMeter()
        self.closing = asyncio.Event()
        """Set by ``close_streams``: every event stream ends."""

    def snapshot(self) -> JSON:
        """Health, node figures and floe depths, now."""
        rates = self.meter.rates(self.recorder.successes())
        return figures(self.flow.health(), self.recorder, rates, self.sanitizer, time.time())

    def close_streams(self) -> None:
        """End every event stream now and any opened from now on (at shutdown)."""
        self.closing.set()

    async def closed_within(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``close_streams``; tell whether it came."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.closing.wait()
        except TimeoutError:
            return False
        return True


def create_app(
    flow: PenguiFlow,
    *,
    store: TraceReader | None = None,
    token: str | None = None,
    control: bool = False,
    redact: Callable[[str], str] | None = None,
    max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS,
    metrics: PrometheusMetrics | None = None,
    protect_probes: bool = False,
    interval_s: float = DEFAULT_INTERVAL_S,
    max_traces: int = DEFAULT_MAX_TRACES,
) -> Starlette:
    """Build the page's Starlette application for ``flow`` (running or not yet).

    It adds middlewares to ``flow``: a recorder of node counts (and, without ``store``, of
    the last ``max_traces`` traces' events), and a new ``PrometheusMetrics`` unless
    ``metrics`` is given (then it must be one the flow already has). From then on the flow
    builds its events, which costs it some speed; build the app once per flow.

    Args:
        flow: The flow to show.
        store: Where traces and histories are read (``list_traces``, ``load_history``, as
            penguiflow's stores have them; open it first). Without one, traces are kept in
            memory from the flow's events, and the page says what it cannot show.
        token: Required by the page, the API and the stream (by ``/metrics`` and
            ``/healthz`` too with ``protect_probes``); default ``$PENGUIFLOW_WEB_TOKEN``.
            Without a token the app answers loopback host names only.
        control: Whether ``POST /api/cancel`` may cancel traces; off, it answers 403.
        redact: Applied to every piece of user data shown (inputs, event details, error
            messages), as text, before it is cut to ``max_payload_chars``.
        max_payload_chars: The longest text shown for one piece of user data.
        metrics: The ``PrometheusMetrics`` that ``/metrics`` exposes.
        protect_probes: Whether ``/metrics`` and ``/healthz`` need the token too.
        interval_s: How often the event stream pushes a snapshot (seconds).
        max_traces: Traces kept in memory without a store.

    Streams end when ``serve_flow``'s server shuts down. Under a server of your own, call
    ``app.state.penguiflow.close_streams()`` first, or give it a graceful-shutdown timeout.

    Raises:
        TypeError: ``store`` lacks ``list_traces`` or ``load_history``; ``redact`` is not
            callable.
        ValueError: an empty token, ``max_payload_chars`` < 32, ``interval_s`` not > 0,
            ``max_traces`` < 1.
    """
    if store is not None and not isinstance(store, TraceReader):
        raise TypeError(
            f"create_app(store=...) needs list_traces() and load_history(), as penguiflow's "
            f"stores have; got {type(store).__name__}"
        )
    if not isinstance(interval_s, (int, float)) or not 0 < interval_s < float("inf"):
        raise ValueError(f"create_app(interval_s=...) must be > 0, got {interval_s!r}")
    token = resolve_token(token)
    sanitizer = Sanitizer(redact, max_payload_chars)
    recorder = Recorder(keep_traces=store is None, max_traces=max_traces)
    if metrics is None:
        from ..observe.prometheus import PrometheusMetrics

        metrics = PrometheusMetrics(flow)
        flow.add_middleware(metrics)
    flow.add_middleware(recorder)
    traces: TraceSource = (
        MemoryTraces(flow, recorder, sanitizer) if store is None else StoreTraces(store, sanitizer)
    )
    state = WebState(
        flow,
        recorder=recorder,
        traces=traces,
        sanitizer=sanitizer,
        metrics=metrics,
        control=control,
        interval_s=float(interval_s),
    )
    handlers = _Handlers(state)
    app = Starlette(
        routes=handlers.routes(),
        middleware=[Middleware(Guard, token=token, protect_probes=protect_probes)],
    )
    app.state.penguiflow = state
    return app


@final
class _Handlers:
    """The request handlers, over one ``WebState``."""

    def __init__(self, state: WebState) -> None:
        self.state = state
        static = resources.files(__package__ or "penguiflow.web") / "static"
        self.assets = {
            path: (static.joinpath(name).read_bytes(), media)
            for path, (name, media) in _ASSETS.items()
        }

    def routes(self) -> list[Route]:
        asset_routes = [Route(path, self.asset) for path in self.assets]
        return [
            *asset_routes,
            Route("/metrics", self.metrics),
            Route("/healthz", self.healthz),
            Route("/api/graph", self.graph),
            Route("/api/stats", self.stats),
            Route("/api/events", self.events),
            Route("/api/traces", self.traces),
            Route("/api/traces/{trace_id:path}", self.trace),
            Route("/api/cancel", self.cancel, methods=["POST"]),
        ]

    async def asset(self, request: Request) -> Response:
        body, media = self.assets[request.url.path]
        return Response(body, media_type=media)

    async def metrics(self, request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.state.metrics.registry), headers={"content-type": content_type})

    async def healthz(self, request: Request) -> Response:
        health = self.state.flow.health()
        body = dataclasses.asdict(health)
        text = self.state.sanitizer.text
        for node in body["nodes"]:
            if node["last_error"] is not None:
                node["last_error"]["message"] = text(node["last_error"]["message"])
        if body["store"] is not None:
            body["store"] = text(body["store"])
        return JSONResponse(body, status_code=503 if health.status == "failing" else 200)

    async def graph(self, request: Request) -> Response:
        state = self.state
        body = graph(state.flow.health())
        body["control"] = state.control
        body["interval_s"] = state.interval_s
        body["traces"] = {"source": state.traces.kind, "notes": state.traces.notes()}
        return JSONResponse(body)

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.state.snapshot())

    async def events(self, request: Request) -> Response:
        return StreamingResponse(
            self._stream(),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def _stream(self) -> AsyncIterator[str]:
        state = self.state
        # The browser reconnects this long after the stream ends (a restart, a proxy).
        yield "retry: 2000\n\n"
        while not state.closing.is_set():
            yield f"event: stats\ndata: {_dumps(state.snapshot())}\n\n"
            if await state.closed_within(state.interval_s):
                return

    async def traces(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= TRACE_LIST_LIMIT:
            return _error(400, f"limit must be an integer from 1 to {TRACE_LIST_LIMIT}")
        source = self.state.traces
        try:
            listed = await source.traces(int(raw))
        except Exception as error:
            return _unreadable(error)
        return JSONResponse({"source": source.kind, "notes": source.notes(), "traces": listed})

    async def trace(self, request: Request) -> Response:
        trace_id: str = request.path_params["trace_id"]
        try:
            timeline = await self.state.traces.timeline(trace_id)
        except Exception as error:
            return _unreadable(error)
        if timeline is None:
            return _error(404, "no such trace here (never seen, or forgotten)")
        timeline["control"] = self.state.control
        return JSONResponse(timeline)

    async def cancel(self, request: Request) -> Response:
        state = self.state
        if not state.control:
            logger.info(
                "web_trace_cancel_refused client=%s (control is off)",
                _client(request),
                extra={"event": "web_trace_cancel_refused", "client": _client(request)},
            )
            return _error(403, "control is off: serve the page with control=True (--control)")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, 'send JSON: {"trace_id": "..."}')
        try:
            body = await request.json()
        except ValueError:
            body = None
        trace_id = body.get("trace_id") if isinstance(body, dict) else None
        if not isinstance(trace_id, str) or not trace_id:
            return _error(400, 'expected a JSON object {"trace_id": "<a trace id>"}')
        identity: Identity = request.scope["state"]["identity"]
        client = _client(request)
        if not state.flow.health().running:
            return _error(409, "the flow is not running")
        cancelled = await state.flow.cancel(trace_id)
        logger.warning(
            "web_trace_cancel trace=%s cancelled=%s client=%s token=%s via=%s",
            trace_id,
            cancelled,
            client,
            identity.token,
            identity.via,
            extra={
                "event": "web_trace_cancel",
                "trace_id": trace_id,
                "cancelled": cancelled,
                "client": client,
                "token": identity.token,
                "via": identity.via,
            },
        )
        return JSONResponse({"trace_id": trace_id, "cancelled": cancelled})


def _client(request: Request) -> str:
    """The peer's address and port, as the server saw them."""
    peer = request.client
    return f"{peer.host}:{peer.port}" if peer is not None else "unknown"


def _dumps(body: JSON) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _unreadable(error: Exception) -> Response:
    """A store read that failed: logged, and answered 503 naming the kind of error."""
    logger.error(
        "web_store_read_failed",
        exc_info=error,
        extra={"event": "web_store_read_failed", "exception": type(error).__name__},
    )
    return _error(503, f"the traces could not be read: {type(error).__name__}")
