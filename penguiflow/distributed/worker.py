"""``serve``: a worker process serving some or all of a flow's nodes from Redis."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from .._runtime.constants import logger
from .._runtime.events import EventSink
from .._runtime.nodes import NodeStatus
from .._runtime.traces import TraceRegistry
from ._commit import Committer
from ._consumer import CancelBook, NodeConsumer
from ._keys import name_of
from .backend import sleep_backoff

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._runtime.flow import PenguiFlow
    from ..node import Node
    from ..registry import ModelRegistry
    from .backend import RedisBackend

__all__ = ["serve"]


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

    Each node call goes through the in-process machinery (policy, validation against
    ``registry``, retries, ``FlowError`` to the caller, events to the flow's middlewares and
    state store). The flow itself is not run: it only describes the graph.

    Setting ``stop`` stops gracefully: reading stops, calls in flight get ``grace_s`` to finish
    and commit, the rest are cancelled and handed back to other workers at once. Cancelling
    the task that awaits ``serve`` stops at once; what was in flight is taken over by other
    workers after ``min_idle_s``.

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
    topology = backend.topology(flow)
    chosen = _chosen(topology.nodes, nodes)
    _check_registry(chosen, registry)
    client = backend.open()
    try:
        await backend.check(client)
        sink = EventSink(
            traces=TraceRegistry(0),
            middlewares=flow._middlewares,
            store=flow._state_store,
            maxsize=topology.maxsize,
        )
        book = CancelBook(sink)
        committer = Committer(client)
        scripts = backend.scripts(client)
        types = backend.type_table(flow, registry)
        name = consumer or backend.consumer_name()
        for node in chosen:
            book.consumers.append(
                NodeConsumer(
                    node,
                    backend=backend,
                    topology=topology,
                    client=client,
                    scripts=scripts,
                    committer=committer,
                    types=types,
                    registry=registry,
                    sink=sink,
                    status=NodeStatus(node),
                    book=book,
                    concurrency=concurrency or node.policy.concurrency,
                    consumer=name,
                )
            )
        await _run(backend, client, committer, book, stop, grace_s, ready)
    finally:
        await client.aclose()


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
    book: CancelBook,
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
    helpers = [
        loop.create_task(committer.run(), name="penguiflow:commit"),
        loop.create_task(_listen(backend, client, book), name="penguiflow:cancel"),
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


async def _listen(backend: RedisBackend, client: Any, book: CancelBook) -> None:
    """Cancel the node calls of every trace announced on the flow's cancel channel.

    Pub/sub messages sent while the connection is down are lost; the cancel markers cover
    them (checked when entries are read and again at commit).
    """
    errors = backend.connection_errors()
    failures = 0
    while True:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(backend.keys.cancel_channel)
            failures = 0
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    book.cancel(str(message["data"]))
        except errors as exc:
            failures += 1
            logger.warning(
                "distributed_redis_unavailable",
                extra={
                    "event": "distributed_redis_unavailable",
                    "redis": backend.url,
                    "exception": repr(exc),
                },
            )
            await sleep_backoff(failures)
        finally:
            with contextlib.suppress(*errors):
                await pubsub.aclose()
