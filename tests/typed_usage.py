"""Typed usage of the public API, checked by ``mypy --strict`` in CI (never executed by pytest).

If a public signature regresses (a parameter renamed, a return type lost), this file stops
type-checking.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from penguiflow import (
    FinalAnswer,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    PenguiFlow,
    StreamChunk,
    create,
)
from penguiflow.core import OPEN_SEA, ROOKERY, Context, Endpoint, Floe, TraceCancelled


class Query(BaseModel):
    text: str


async def upper(message: Message, ctx: Context) -> Message:
    chunk: StreamChunk = await ctx.emit_chunk(parent=message, text="thinking")
    assert chunk.seq >= 0
    return message.model_copy(update={"payload": str(message.payload).upper()})


async def finish(message: Message, ctx: Context) -> Message:
    return message.model_copy(update={"payload": FinalAnswer(text=str(message.payload))})


async def record(event: FlowEvent) -> None:
    assert event.event_type


async def roundtrip() -> str:
    first = Node(upper, name="upper", policy=NodePolicy(validate="none", timeout_s=1.0))
    last = Node(finish, name="finish", policy=NodePolicy(max_retries=2, backoff_base=0.1))
    flow: PenguiFlow = create(first.to(last), last.to(), queue_maxsize=8, middlewares=[record])
    registry = ModelRegistry()
    registry.register("finish", Message, Message)
    flow.run(registry=registry)
    try:
        await flow.emit(Message(payload="hi", headers=Headers(tenant="t")), trace_id="t-1")
        result = await flow.fetch(trace_id="t-1")
        cancelled: bool = await flow.cancel("t-1")
        assert not cancelled
    finally:
        await flow.stop()
    if isinstance(result, FlowError):
        code: str = result.code
        return code
    return str(result)


def shapes() -> tuple[Endpoint, Endpoint, type[Floe[Any]], FlowErrorCode, type[TraceCancelled]]:
    return OPEN_SEA, ROOKERY, Floe, FlowErrorCode.NODE_TIMEOUT, TraceCancelled


async def live_page(flow: PenguiFlow) -> int:
    from penguiflow.web import WebServer, create_app, serve_flow

    app = create_app(flow, control=False, redact=str.strip, max_payload_chars=500)
    assert app.state.penguiflow is not None
    server: WebServer = await serve_flow(flow, host="127.0.0.1", port=0, token="t")
    async with server:
        url: str = server.url
        assert url
    live: list[str] = flow.active_traces()
    in_flight: int = flow.health().nodes[0].in_flight
    return server.port + len(live) + in_flight


if __name__ == "__main__":
    print(asyncio.run(roundtrip()))


async def watch(flow: PenguiFlow) -> tuple[str, int, list[bool]]:
    """A distributed worker's health, the flow's overview from Redis, and a metrics endpoint."""
    from penguiflow.distributed import FlowOverview, RedisBackend, Worker, WorkerHealth
    from penguiflow.observe import serve_worker_metrics

    backend = RedisBackend("redis://127.0.0.1:6379/0", flow_id="typed")
    worker = Worker(flow, backend, nodes=["upper"], concurrency=2)
    async with await serve_worker_metrics(worker, port=0):
        await worker.run(stop=asyncio.Event(), grace_s=1.0)
    health: WorkerHealth = worker.health()
    overview: FlowOverview = await backend.overview(flow)
    edge = overview.stream(None, "upper")
    return health.status, edge.pending, [each.alive for each in overview.workers]
