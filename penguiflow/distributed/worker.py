"""``Worker`` and ``serve``: a process serving some or all of a flow's nodes from Redis.

A ``Worker`` owns what serving needs (the consumers of its nodes, the commit batcher, the
cancel listener, the heartbeat) for the length of ``run``, and keeps the counters its
``health()`` reports. ``serve`` is ``Worker(...).run(...)`` in one call.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, final

from .._runtime.events import EventSink
from .._runtime.nodes import NodeStatus
from .._runtime.traces import TraceRegistry
from ._cancels import CancelBook, listen
from ._commit import Committer
from ._consumer import NodeConsumer
from ._keys import name_of
from ._presence import Presence, describe
from ._tally import Link, NodeTally
from .health import NodeLoad, RedisLink, WorkerHealth

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._runtime.flow import PenguiFlow
    from ..health import HealthStatus
    from ..node import Node
    from ..registry import ModelRegistry
    from .backend import RedisBackend

__all__ = ["Worker", "serve"]


async def serve(
    flow: PenguiFlow,
    backend: RedisBackend,
    *,
    nodes: Sequence[str] | None = None,
    concurrency: int | None = None,
    registry: ModelRegistry | None = None,
    stop: asyncio.Event | None = None,
    grace_s: float = 30.0,
    consumer: str | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``nodes`` of ``flow`` (all by default) from ``backend`` until ``stop`` is set.

    The same as ``await Worker(flow, backend, ...).run(stop=..., grace_s=..., ready=...)``:
    build the ``Worker`` yourself to read its ``health()`` while it serves.

    Args:
        flow: The flow, defined exactly as for in-process use.
        backend: Where the flow lives.
        nodes: Names of the nodes to serve.
        concurrency: Entries each node runs at once (default: its policy's concurrency).
        registry: The models for validation and for payload types.
        stop: Set it to stop gracefully.
        grace_s: How long a graceful stop waits for calls in flight.
        consumer: This process's consumer name (default: host, pid and a random suffix).
        ready: Called once the groups exist and reading has started.

    Raises:
        KeyError: ``nodes`` names a node the flow does not have.
        RuntimeError: ``registry`` lacks a node whose policy validates.
        BackendUnavailable: Redis does not answer at start.
    """
    worker = Worker(
        flow, backend, nodes=nodes, concurrency=concurrency, registry=registry, consumer=consumer
    )
    await worker.run(stop=stop, grace_s=grace_s, ready=ready)


@dataclass(frozen=True, slots=True)
class _Serving:
    """What a running worker holds, for its health."""

    consumers: dict[str, NodeConsumer]
    presence: Presence
    started_at: float


@final
class Worker:
    """Serves some or all nodes of a flow from Redis, and reports its health.

    Build it, then ``await worker.run(stop=event)``. Each node call goes through the
    in-process machinery (policy, validation against ``registry``, retries, ``FlowError`` to
    the caller, events to the flow's middlewares and state store). The flow itself is not
    run: it only describes the graph. A worker runs once.

    ``health()`` may be called at any time, from any thread: it reads counters and sizes
    only. While it runs, the worker sends a heartbeat every ``min_idle_s / 4``, which is how
    ``RedisBackend.overview()`` in any process knows it is alive.

    Args:
        flow: The flow, defined exactly as for in-process use.
        backend: Where the flow lives.
        nodes: Names of the nodes to serve (default: all).
        concurrency: Entries each node runs at once (default: its policy's concurrency).
        registry: The models for validation and for payload types.
        consumer: This process's consumer name (default: host, pid and a random suffix).

    Raises:
        KeyError: ``nodes`` names a node the flow does not have.
        RuntimeError: ``registry`` lacks a node whose policy validates.
        ValueError: a node's name cannot name a stream.
    """

    __slots__ = (
        "_link",
        "_nodes",
        "_registry",
        "_serving",
        "_tallies",
        "_used",
        "backend",
        "concurrency",
        "flow",
        "host",
        "name",
        "pid",
    )

    def __init__(
        self,
        flow: PenguiFlow,
        backend: RedisBackend,
        *,
        nodes: Sequence[str] | None = None,
        concurrency: int | None = None,
        registry: ModelRegistry | None = None,
        consumer: str | None = None,
    ) -> None:
        self._nodes = _chosen(backend.topology(flow).nodes, nodes)
        _check_registry(self._nodes, registry)
        self.flow = flow
        """The flow served (add middlewares to it before ``run``)."""
        self.backend = backend
        self.name = consumer or backend.consumer_name()
        """The consumer name, in every group this worker reads and in its heartbeat."""
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.concurrency = {
            name_of(node): concurrency or node.policy.concurrency for node in self._nodes
        }
        """Entries run at once, per node served."""
        self._registry = registry
        self._tallies = {name: NodeTally() for name in self.concurrency}
        self._link = Link(backend.scrub)
        self._serving: _Serving | None = None
        self._used = False

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, flow_id={self.backend.flow_id!r})"

    async def run(
        self,
        *,
        stop: asyncio.Event | None = None,
        grace_s: float = 30.0,
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Serve until ``stop`` is set.

        Setting ``stop`` stops gracefully: reading stops, calls in flight get ``grace_s`` to
        finish and commit, the rest are cancelled and handed back to other workers at once,
        and the worker leaves the flow's worker set. Cancelling the task that awaits ``run``
        stops at once; what was in flight is taken over by other workers after
        ``min_idle_s``, and the heartbeat expires then too.

        Args:
            stop: Set it to stop gracefully.
            grace_s: How long a graceful stop waits for calls in flight.
            ready: Called once the groups exist, the first heartbeat is written and reading
                has started.

        Raises:
            RuntimeError: this worker has run already.
            BackendUnavailable: Redis does not answer at start.
        """
        if self._used:
            raise RuntimeError(f"worker {self.name} has run already; build a new Worker")
        self._used = True
        backend = self.backend
        client = backend.open()
        try:
            await backend.check(client)
            book, committer = self._build(client)
            presence = Presence(
                client,
                backend.keys,
                self.name,
                describe(self.host, self.pid, self.concurrency, _ttl_ms(backend)),
                ttl_ms=_ttl_ms(backend),
                link=self._link,
                errors=backend.connection_errors(),
            )
            consumers = {each.group: each for each in book.consumers}
            self._serving = _Serving(consumers, presence, time.time())
            try:
                await _run(backend, client, committer, book, presence, stop, grace_s, ready)
            finally:
                self._serving = None
            await presence.leave()
        finally:
            await client.aclose()

    def _build(self, client: Any) -> tuple[CancelBook[NodeConsumer], Committer]:
        """The consumers of every node served, in a cancel book, and the commit batcher."""
        backend, flow = self.backend, self.flow
        topology = backend.topology(flow)
        sink = EventSink(
            traces=TraceRegistry(0),
            middlewares=flow._middlewares,
            store=flow._state_store,
            maxsize=topology.maxsize,
        )
        book: CancelBook[NodeConsumer] = CancelBook(sink)
        committer = Committer(client)
        scripts = backend.scripts(client)
        types = backend.type_table(flow, self._registry)
        for node in self._nodes:
            name = name_of(node)
            book.consumers.append(
                NodeConsumer(
                    node,
                    backend=backend,
                    topology=topology,
                    client=client,
                    scripts=scripts,
                    committer=committer,
                    types=types,
                    registry=self._registry,
                    sink=sink,
                    status=NodeStatus(node),
                    book=book,
                    concurrency=self.concurrency[name],
                    consumer=self.name,
                    tally=self._tallies[name],
                    link=self._link,
                )
            )
        return book, committer

    def health(self) -> WorkerHealth:
        """A snapshot of this worker's health; ``status`` follows ``distributed.health``."""
        serving = self._serving
        link = self._link
        heartbeat_at = serving.presence.beat_at if serving is not None else None
        status, reasons = _judge(serving is not None, heartbeat_at, link, self.backend)
        return WorkerHealth(
            status=status,
            reasons=reasons,
            flow_id=self.backend.flow_id,
            consumer=self.name,
            host=self.host,
            pid=self.pid,
            running=serving is not None,
            started_at=serving.started_at if serving is not None else None,
            heartbeat_at=heartbeat_at,
            nodes=tuple(
                _load(name, self.concurrency[name], tally, serving)
                for name, tally in self._tallies.items()
            ),
            redis=RedisLink(
                url=self.backend.url,
                connected=link.connected,
                down_since=link.down_since,
                last_error=link.last_error,
                last_error_at=link.last_error_at,
                reconnects=link.reconnects,
            ),
        )


def _ttl_ms(backend: RedisBackend) -> int:
    """A worker's heartbeat lives ``min_idle_s``: it is seen dead when its entries go."""
    return max(1, int(backend.min_idle_s * 1000))


def _load(name: str, concurrency: int, tally: NodeTally, serving: _Serving | None) -> NodeLoad:
    consumer = serving.consumers.get(name) if serving is not None else None
    return NodeLoad(
        name=name,
        concurrency=concurrency,
        in_flight=len(consumer.slots) - len(consumer.free) if consumer is not None else 0,
        held=len(consumer.held) if consumer is not None else 0,
        consumed=tally.consumed,
        acked=tally.acked,
        fenced=tally.fenced,
        failed=tally.failed,
        dead_lettered=tally.dead_lettered,
        taken_over=tally.taken_over,
    )


def _judge(
    running: bool, heartbeat_at: float | None, link: Link, backend: RedisBackend
) -> tuple[HealthStatus, tuple[str, ...]]:
    """The status and its reasons, by the rule of ``distributed.health``."""
    if not running:
        return "failing", ("not running",)
    failing: list[str] = []
    now = time.time()
    if heartbeat_at is None:
        failing.append("starting: no heartbeat written yet")
    elif now - heartbeat_at > backend.min_idle_s:
        failing.append(
            f"no heartbeat written for {now - heartbeat_at:.1f} s (min_idle_s="
            f"{backend.min_idle_s}): other processes see this worker as dead and take its "
            "entries over"
        )
    degraded: list[str] = []
    if not link.connected:
        since = datetime.fromtimestamp(link.down_since or now, UTC).isoformat(timespec="seconds")
        degraded.append(
            f"redis at {backend.url} unreachable since {since}, reconnecting: {link.last_error}"
        )
    status: HealthStatus = "failing" if failing else "degraded" if degraded else "ok"
    return status, (*failing, *degraded)


def _chosen(by_name: dict[str, Node], names: Sequence[str] | None) -> list[Node]:
    if names is None:
        return list(by_name.values())
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise KeyError(f"the flow has no node named {unknown}; its nodes: {sorted(by_name)}")
    return [by_name[name] for name in names]


def _check_registry(nodes: list[Node], registry: ModelRegistry | None) -> None:
    if registry is None:
        return
    missing = sorted(
        name_of(node)
        for node in nodes
        if node.policy.validate != "none" and not registry.has(name_of(node))
    )
    if missing:
        raise RuntimeError(
            "ModelRegistry is missing entries for nodes requiring validation: " + ", ".join(missing)
        )


async def _run(
    backend: RedisBackend,
    client: Any,
    committer: Committer,
    book: CancelBook[NodeConsumer],
    presence: Presence,
    stop: asyncio.Event | None,
    grace_s: float,
    ready: Callable[[], None] | None,
) -> None:
    """Start every loop, wait for ``stop`` (or a loop's failure), then stop gracefully.

    Every task started here is cancelled and awaited before this returns.
    """
    loop = asyncio.get_running_loop()
    consumers = book.consumers
    for consumer in consumers:
        await consumer.create_groups()
    await presence.beat()
    helpers = [
        loop.create_task(committer.run(), name="penguiflow:commit"),
        loop.create_task(presence.run(), name="penguiflow:heartbeat"),
        loop.create_task(listen(backend, client, book, presence.link), name="penguiflow:cancel"),
        *(loop.create_task(each.janitor(), name="penguiflow:janitor") for each in consumers),
    ]
    readers = [loop.create_task(each.run(), name="penguiflow:read") for each in consumers]
    stopping = loop.create_task((stop or asyncio.Event()).wait(), name="penguiflow:stop")
    try:
        if ready is not None:
            ready()
        await asyncio.wait([*readers, stopping], return_when=asyncio.FIRST_COMPLETED)
        for each in consumers:
            each.request_stop()
        await asyncio.gather(*readers)  # re-raises a reader's fault
        for each in consumers:
            await each.drain(grace_s)
    finally:
        for task in [*readers, *helpers, stopping]:
            task.cancel()
        await asyncio.gather(*readers, *helpers, stopping, return_exceptions=True)
