"""Cancellation in a worker process: which traces are cancelled, and hearing about it.

A cancel is a marker key and a message on the flow's cancel channel (``RemoteFlow.cancel``).
The message makes it prompt: ``listen`` hears it and the ``CancelBook`` cancels the trace's
node calls running here. The marker makes it reliable: it is read when entries are read, when
a taken-over entry is about to run, at commit, and here each time the channel is subscribed
again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .._runtime.constants import logger
from .backend import sleep_backoff

if TYPE_CHECKING:
    from .._runtime.events import EventSink
    from ._tally import Link
    from .backend import RedisBackend

__all__ = ["CancelBook", "listen"]


class _Holder(Protocol):
    """What the book needs of a node's consumer (``NodeConsumer``)."""

    held: dict[tuple[str, str], str | None]

    def cancel_trace(self, trace_id: str) -> None: ...

    def holds_trace(self, trace_id: str) -> bool: ...


H = TypeVar("H", bound=_Holder)


class CancelBook(Generic[H]):
    """The traces this process knows are cancelled; tells every consumer's slots."""

    __slots__ = ("consumers", "traces")

    def __init__(self, sink: EventSink) -> None:
        self.traces = sink.traces
        self.consumers: list[H] = []

    def cancel(self, trace_id: str) -> None:
        """Mark ``trace_id`` cancelled and cancel its running node calls here.

        A trace of which nothing is held here leaves no mark: every cancel reaches every
        worker, and a mark per cancel would outlive its trace. An entry of it read later
        finds the trace's marker key (set before the message is published) when it is read.
        """
        if not any(consumer.holds_trace(trace_id) for consumer in self.consumers):
            return
        self.traces.ensure_flag(trace_id).set()
        for consumer in self.consumers:
            consumer.cancel_trace(trace_id)

    def forget(self, trace_id: str) -> None:
        """Drop the mark once no entry of the trace is held here any more."""
        if not any(consumer.holds_trace(trace_id) for consumer in self.consumers):
            self.traces.flags.pop(trace_id, None)

    def held_traces(self) -> set[str]:
        """The traces of every entry held here: running, read ahead, or waiting to run solo."""
        return {
            trace
            for consumer in self.consumers
            for trace in consumer.held.values()
            if trace is not None
        }


async def listen(backend: RedisBackend, client: Any, book: CancelBook[H], link: Link) -> None:
    """Cancel the node calls of every trace announced on the flow's cancel channel.

    Design note (a gap in the subscription): messages published while the pub/sub connection
    is down are lost, and redis-py reconnects it and subscribes again by itself, inside
    ``get_message``, without raising. Every subscription, the first and each one after a
    reconnect (by redis-py or by this loop), is confirmed by a ``subscribe`` message; on each,
    the cancel markers of the traces held here are read, so a cancel published in the gap
    still reaches a running call. The markers are read after the confirmation arrives: a
    cancel published later comes as a message, one published earlier left its marker.
    Markers are also checked when entries are read and again at commit.
    """
    errors = backend.connection_errors()
    task = asyncio.current_task()
    assert task is not None
    failures = 0
    while True:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(backend.keys.cancel_channel)
            failures = 0
            link.up()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if task.cancelling():
                    # redis-py's timed read can take a cancel for its own timeout and return
                    # None; the cancel must not be lost.
                    raise asyncio.CancelledError
                if message is None:
                    continue
                if message["type"] == "message":
                    book.cancel(str(message["data"]))
                elif message["type"] == "subscribe":
                    await _check_markers(backend, client, book)
        except errors as exc:
            failures += 1
            link.lost(exc)
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


async def _check_markers(backend: RedisBackend, client: Any, book: CancelBook[H]) -> None:
    """Cancel the held traces whose cancel marker exists (one pipelined ``EXISTS`` each)."""
    traces = sorted(book.held_traces())
    if not traces:
        return
    async with client.pipeline(transaction=False) as pipe:
        for trace in traces:
            pipe.exists(backend.keys.cancelled(trace))
        found = await pipe.execute()
    for trace, exists in zip(traces, found, strict=True):
        if exists:
            book.cancel(trace)
