"""Shared helpers for the black-box core tests.

Everything here orders work with ``asyncio.Event``s (never with sleeps) and bounds every wait
with ``asyncio.timeout`` so a deadlock fails fast instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any, TypeVar

from penguiflow.core import OPEN_SEA, ROOKERY, PenguiFlow
from penguiflow.node import Node, NodePolicy
from penguiflow.types import Headers, Message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

    from penguiflow.metrics import FlowEvent
    from penguiflow.registry import ModelRegistry

T = TypeVar("T")

#: Upper bound for any single wait in a test (virtual seconds under ``looptime``).
TIMEOUT = 10.0

_ANY: Any = object()


def make_msg(payload: Any = None, *, trace_id: str | None = None, **fields: Any) -> Message:
    """Build a ``Message`` for tenant ``t``; ``trace_id`` is kept when given."""
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return Message(payload=payload, headers=Headers(tenant="t"), **fields)


def node(
    fn: Callable[[Any, Any], Awaitable[Any]],
    name: str | None = None,
    *,
    validate: str = "none",
    allow_cycle: bool = False,
    **policy: Any,
) -> Node:
    """Wrap ``fn`` in a ``Node``; validation is off unless asked for."""
    return Node(
        fn, name=name, policy=NodePolicy(validate=validate, **policy), allow_cycle=allow_cycle
    )


async def echo(msg: Any, ctx: Any) -> Any:
    """A node body that forwards its input unchanged."""
    return msg


async def drop(msg: Any, ctx: Any) -> None:
    """A node body that consumes its input and routes nothing."""
    return None


@contextlib.asynccontextmanager
async def running(
    flow: PenguiFlow, registry: ModelRegistry | None = None
) -> AsyncIterator[PenguiFlow]:
    """Run ``flow`` for the body of the ``async with``; always stop it afterwards."""
    flow.run(registry=registry)
    try:
        yield flow
    finally:
        await flow.stop()


async def within(aw: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """Await ``aw`` but fail with ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        return await aw


async def start(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start ``coro`` in a task and return once it has run up to its first suspension.

    The task sets an event and then enters ``coro`` in the same step; the caller resumes only
    after that step ends, i.e. when ``coro`` has completed or is blocked at its first real
    ``await``. Tests use this to show that an operation blocks (the task is not done).
    """
    entered = asyncio.Event()

    async def runner() -> T:
        entered.set()
        return await coro

    task = asyncio.create_task(runner())
    await within(entered.wait())
    return task


async def fetch(flow: PenguiFlow, **kwargs: Any) -> Any:
    """``flow.fetch(**kwargs)`` bounded by the test timeout."""
    return await within(flow.fetch(**kwargs))


def rookery_empty(flow: PenguiFlow) -> bool:
    """Whether nothing is waiting at the Rookery (read without consuming)."""
    ctx = flow._contexts[ROOKERY]
    try:
        item = ctx.fetch_nowait()
    except asyncio.QueueEmpty:
        return True
    raise AssertionError(f"unexpected item at the Rookery: {item!r}")


def floe(flow: PenguiFlow, source: Any, target: Any) -> Any:
    """Return the single floe from ``source`` to ``target``."""
    found = [f for f in flow._floes if f.source == source and f.target == target]
    assert len(found) == 1, found
    return found[0]


def ingress_depth(flow: PenguiFlow) -> int:
    """Items queued on the ingress floes."""
    return flow._contexts[OPEN_SEA].queue_depth_out()


class Gate:
    """A node-side checkpoint: the node announces it entered, then waits to be released."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.released = asyncio.Event()

    async def pass_(self) -> None:
        """Called by the node: mark entry, then block until released."""
        self.entered.set()
        await self.released.wait()

    async def wait_entered(self) -> None:
        """Called by the test: wait (bounded) until the node reached the gate."""
        await within(self.entered.wait())

    def open(self) -> None:
        """Let the node through."""
        self.released.set()


class Recorder:
    """A middleware that keeps every event and lets tests wait for one."""

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: FlowEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def select(
        self,
        event_type: str | None = None,
        *,
        trace_id: Any = _ANY,
        node_name: Any = _ANY,
    ) -> list[FlowEvent]:
        """Events matching every filter given."""
        return [
            ev
            for ev in self.events
            if (event_type is None or ev.event_type == event_type)
            and (trace_id is _ANY or ev.trace_id == trace_id)
            and (node_name is _ANY or ev.node_name == node_name)
        ]

    def types(self, *, trace_id: Any = _ANY, node_name: Any = _ANY) -> list[str]:
        """Event types, in order, matching the filters."""
        return [ev.event_type for ev in self.select(trace_id=trace_id, node_name=node_name)]

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float = TIMEOUT) -> None:
        """Wait until ``predicate()`` holds, re-checking after every recorded event."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(
        self,
        event_type: str,
        *,
        count: int = 1,
        trace_id: Any = _ANY,
        node_name: Any = _ANY,
        timeout: float = TIMEOUT,
    ) -> FlowEvent:
        """Wait until ``count`` matching events were seen; return the ``count``-th."""
        async with asyncio.timeout(timeout):
            while True:
                found = self.select(event_type, trace_id=trace_id, node_name=node_name)
                if len(found) >= count:
                    return found[count - 1]
                self._changed.clear()
                await self._changed.wait()


async def settled(flow: PenguiFlow, timeout: float = TIMEOUT) -> None:
    """Wait until every trace of ``flow`` is fully accounted (nothing pending anywhere).

    For flows without observers, where no event tells when the last node finished: the loop
    yields until the trace registry is empty, and fails after ``timeout`` seconds, which is
    also what a miscounted trace (one that never reaches zero) looks like.
    """
    async with asyncio.timeout(timeout):
        while flow._traces.records:
            await asyncio.sleep(0)


def assert_accounted(flow: PenguiFlow) -> None:
    """Check the accounting invariant: each trace's pending count equals its items queued on
    floes plus those a worker is processing right now (read between worker steps)."""
    expected: Counter[str] = Counter()
    for each in flow._floes:
        for item in each.items:
            trace = getattr(item, "trace_id", None)
            if isinstance(trace, str):
                expected[trace] += 1
    for worker in flow._workers:
        if worker.item is not None and worker.trace_id is not None:
            expected[worker.trace_id] += 1
    actual = {trace: record.pending for trace, record in flow._traces.records.items()}
    assert actual == dict(expected), f"pending counts {actual} != in transit {dict(expected)}"
