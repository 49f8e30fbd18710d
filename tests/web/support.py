"""Helpers for the live page's tests: flows whose nodes wait on gates, an observer that wakes a
test when an event arrives, and HTTP clients (in-process ASGI, or TCP to a real server)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from core.helpers import TIMEOUT, make_msg, node

from penguiflow.core import PenguiFlow, create
from penguiflow.types import Message

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.applications import Starlette

    from penguiflow.metrics import FlowEvent

XSS_SCRIPT = "<script>window.__pwned=1</script>"
XSS_IMG = '<img src=x onerror="window.__pwned=2">'


@dataclass
class Gate:
    """Holds a node's items until ``open`` is set; ``entered`` is set once one is inside."""

    open: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def body(self, msg: Any, ctx: Any) -> Any:
        """The node body: hold payloads starting with ``hold``, pass the others."""
        if isinstance(msg, Message) and str(msg.payload).startswith("hold"):
            self.entered.set()
            await self.open.wait()
        return msg


async def fail(msg: Any, ctx: Any) -> Any:
    """A node body that fails with the message's payload in the error."""
    raise ValueError(f"cannot handle {msg.payload}")


async def route(msg: Any, ctx: Any) -> Any:
    """Pass on, or fail when the payload says ``fail``."""
    if isinstance(msg, Message) and str(msg.payload).startswith("fail"):
        return await fail(msg, ctx)
    return msg


def gated_flow(gate: Gate, **kwargs: Any) -> PenguiFlow:
    """``prepare`` (held by ``gate``) -> ``answer`` (fails on ``fail...`` payloads)."""
    prepare = node(gate.body, "prepare")
    answer = node(route, "answer", max_retries=0)
    return create(prepare.to(answer), answer.to(), **kwargs)


class Seen:
    """A middleware that lets a test wait for an event. Add it after the page's middlewares:
    events reach middlewares in order, so when this one sees an event, they have too."""

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []
        self._waiters: list[tuple[Callable[[FlowEvent], bool], asyncio.Event]] = []

    async def __call__(self, event: FlowEvent) -> None:
        self.events.append(event)
        for matches, flag in self._waiters:
            if matches(event):
                flag.set()

    async def wait_for(self, kind: str, trace_id: str | None = None, count: int = 1) -> None:
        """Return once ``count`` events of ``kind`` (of ``trace_id``, if given) have arrived."""

        def matches(event: FlowEvent) -> bool:
            return event.event_type == kind and trace_id in (None, event.trace_id)

        while sum(1 for e in self.events if matches(e)) < count:
            flag = asyncio.Event()
            self._waiters.append((matches, flag))
            try:
                async with asyncio.timeout(TIMEOUT):
                    await flag.wait()
            finally:
                self._waiters.remove((matches, flag))


def msg(payload: Any, trace_id: str) -> Message:
    return make_msg(payload, trace_id=trace_id)


def asgi_client(app: Starlette, **kwargs: Any) -> httpx.AsyncClient:
    """A client that calls ``app`` in-process, as from 127.0.0.1 to host 127.0.0.1."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50123))
    kwargs.setdefault("base_url", "http://127.0.0.1:8787")
    return httpx.AsyncClient(transport=transport, timeout=TIMEOUT, **kwargs)


def tcp_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    """A client to a real server, with no proxy whatever the environment says."""
    return httpx.AsyncClient(base_url=url, timeout=TIMEOUT, trust_env=False, **kwargs)
