"""``Context``: a node's (or endpoint's) handle on its incoming and outgoing floes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..node import Node
from ..types import Message, StreamChunk
from .constants import NO_INCOMING, NOT_ATTACHED
from .endpoints import Endpoint, Target
from .floe import Floe, ReadySignal

if TYPE_CHECKING:
    from collections import deque

    from .enqueue import Enqueuer
    from .protocols import Runtime
    from .subflow import PlaybookFactory
    from .traces import TraceRegistry

__all__ = ["Context", "Target"]


class Context:
    """The handle a node receives as its second argument.

    A context knows its incoming floes keyed by source and its outgoing floes keyed by target.
    It can be built directly (``Context(Endpoint("x"))``) to call ``Node.invoke`` in tests;
    emitting then raises ``RuntimeError`` because no flow is attached.
    """

    __slots__ = (
        "_all_in",
        "_all_out",
        "_buffer",
        "_enqueuer",
        "_in_deques",
        "_incoming",
        "_out_deques",
        "_outgoing",
        "_owner",
        "_ready",
        "_rotation",
        "_runtime",
        "_stream_seqs",
        "_traces",
    )

    def __init__(self, owner: Node | Endpoint, runtime: Runtime | None = None) -> None:
        self._owner = owner
        self._runtime = runtime
        # What emitting needs from the flow, given by the flow that builds this context.
        self._enqueuer: Enqueuer | None = None
        self._traces: TraceRegistry | None = None
        self._incoming: dict[Node | Endpoint, Floe[Any]] = {}
        self._outgoing: dict[Node | Endpoint, Floe[Any]] = {}
        self._all_in: tuple[Floe[Any], ...] = ()
        self._all_out: tuple[Floe[Any], ...] = ()
        # The floes' deques, for cheap depth reads (a floe keeps its deque for life).
        self._in_deques: tuple[deque[Any], ...] = ()
        self._out_deques: tuple[deque[Any], ...] = ()
        self._ready = ReadySignal()
        # Items waiting here besides the floes: the Rookery's, when no node feeds it.
        self._buffer: Floe[Any] = Floe(None, owner, maxsize=0)
        self._buffer.listener = self._ready.notify
        self._rotation = 0
        self._stream_seqs: dict[str, int] = {}

    @property
    def owner(self) -> Node | Endpoint:
        """The node or endpoint this context belongs to."""
        return self._owner

    @property
    def runtime(self) -> Runtime | None:
        """The flow this context is attached to, if any."""
        return self._runtime

    def _bind(self, enqueuer: Enqueuer, traces: TraceRegistry) -> None:
        """Give this context what emitting needs (called by the flow that builds it)."""
        self._enqueuer = enqueuer
        self._traces = traces

    def add_incoming_floe(self, floe: Floe[Any]) -> None:
        """Register a floe this context reads from; one without a source is ignored."""
        if floe.source is None:
            return
        self._incoming[floe.source] = floe
        self._all_in = tuple(self._incoming.values())
        self._in_deques = tuple(each.items for each in self._all_in)
        # With one floe, readers await its queue directly; with several, every put notifies
        # the ready-signal that multi-floe readers wait on (no task per floe).
        many = len(self._all_in) > 1
        for each in self._all_in:
            each.listen(self._ready if many else None)

    def add_outgoing_floe(self, floe: Floe[Any]) -> None:
        """Register a floe this context writes to; one without a target is ignored."""
        if floe.target is None:
            return
        self._outgoing[floe.target] = floe
        self._all_out = tuple(self._outgoing.values())
        self._out_deques = tuple(each.items for each in self._all_out)

    def _resolve(
        self, which: Target, floes: dict[Node | Endpoint, Floe[Any]]
    ) -> tuple[Floe[Any], ...]:
        if not floes:
            return ()
        if which is None:
            return tuple(floes.values())
        if isinstance(which, Node | Endpoint):
            which = (which,)
        elif isinstance(which, str | bytes) or not isinstance(which, Sequence):  # type: ignore[unreachable]
            raise TypeError(
                f"{self._owner.name}: a target must be a Node, an Endpoint or a sequence of "
                f"them, got {type(which).__name__} {which!r}"
            )
        resolved = []
        for target in which:
            floe = floes.get(target)
            if floe is None:
                name = getattr(target, "name", repr(target))
                raise KeyError(f"Unknown target {name} for {self._owner.name}")
            resolved.append(floe)
        return tuple(resolved)

    def _attached(self) -> tuple[Enqueuer, TraceRegistry]:
        enqueuer, traces = self._enqueuer, self._traces
        if enqueuer is None or traces is None:
            raise RuntimeError(NOT_ATTACHED)
        return enqueuer, traces

    # -- emitting -----------------------------------------------------------------------------

    async def emit(self, msg: Any, to: Target = None) -> None:
        """Put ``msg`` on each selected outgoing floe in turn (all of them when ``to`` is None).

        Waits for space on a full floe (backpressure). Fan-out passes the same object to every
        floe. Cancelled while waiting: floes already served keep the message, the rest do not
        get it.

        Raises:
            RuntimeError: no flow is attached.
            KeyError: ``to`` names a node or endpoint this context has no floe to.
        """
        enqueuer, _traces = self._attached()
        floes = self._all_out if to is None else self._resolve(to, self._outgoing)
        if not enqueuer.try_put(floes, msg):
            await enqueuer.put(floes, msg)

    def emit_nowait(self, msg: Any, to: Target = None) -> None:
        """Like ``emit`` but never waits.

        Raises:
            asyncio.QueueFull: a selected floe is full; floes served before it keep ``msg``.
            RuntimeError: no flow is attached.
            KeyError: ``to`` names an unknown target.
        """
        enqueuer, _traces = self._attached()
        floes = self._all_out if to is None else self._resolve(to, self._outgoing)
        enqueuer.put_nowait(floes, msg)

    async def emit_chunk(
        self,
        *,
        parent: Message,
        text: str,
        stream_id: str | None = None,
        seq: int | None = None,
        done: bool = False,
        meta: dict[str, Any] | None = None,
        to: Target = None,
    ) -> StreamChunk:
        """Emit one ``StreamChunk``, wrapped in a Message that keeps ``parent``'s envelope.

        Sequence numbers count from 0 per context and stream id (default: the parent's trace
        id) and restart after a ``done`` chunk. From the second chunk on, waits while the
        stream's trace already has ``queue_maxsize`` items pending besides the producer's own
        input (per-trace capacity); when ``parent`` has a deadline, only until then.

        Raises:
            RuntimeError: no flow is attached.
            TimeoutError: ``parent``'s deadline passed while the chunk waited for capacity.
        """
        _enqueuer, traces = self._attached()
        sid = stream_id or parent.trace_id
        counters = self._stream_seqs
        first = sid not in counters
        if seq is None:
            seq = counters.get(sid, -1) + 1
        counters[sid] = seq
        chunk = StreamChunk(stream_id=sid, seq=seq, text=text, done=done, meta=dict(meta or {}))
        message = Message(
            payload=chunk,
            headers=parent.headers,
            trace_id=parent.trace_id,
            deadline_s=parent.deadline_s,
            meta=dict(parent.meta),
        )
        if not first:
            await traces.wait_capacity(sid, offset=1, deadline_s=parent.deadline_s)
        await self.emit(message, to)
        if done:
            counters.pop(sid, None)
        elif first and isinstance(self._owner, Node):
            # A node's stream cannot outlive the trace it serves: drop its counter with the
            # trace. Streams fed from outside (the OpenSea context) live until done or stop().
            traces.track_stream(parent.trace_id, counters, sid)
        return chunk

    # -- fetching -----------------------------------------------------------------------------

    def fetch_nowait(self, from_: Target = None) -> Any:
        """Take an item from the buffer, else from the first selected floe that has one.

        Raises:
            asyncio.QueueEmpty: nothing is available.
        """
        if self._buffer.items:
            return self._buffer.pop_nowait()
        floes = self._all_in if from_ is None else self._resolve(from_, self._incoming)
        for floe in floes:
            if floe.items:
                return floe.pop_nowait()
        raise asyncio.QueueEmpty("no messages available")

    async def fetch(self, from_: Target = None) -> Any:
        """Wait for the next item from the selected incoming floes (all when ``from_`` is None).

        Cancellation-safe: an item is either returned or stays queued.

        Raises:
            RuntimeError: the context has no incoming floes.
        """
        if self._buffer.items:
            return self._buffer.pop_nowait()
        floes = self._all_in if from_ is None else self._resolve(from_, self._incoming)
        if not floes:
            raise RuntimeError(NO_INCOMING)
        if len(floes) == 1:
            floe = floes[0]
            return floe.pop_nowait() if floe.items else await floe.pop()
        return await self._take_any(floes)

    async def fetch_any(self, from_: Target = None) -> Any:
        """Wait for the next item on any of the selected floes; same as ``fetch``."""
        return await self.fetch(from_)

    async def _take_any(self, floes: tuple[Floe[Any], ...]) -> Any:
        # Round-robin start so that one busy floe cannot starve the others; FIFO per floe.
        count = len(floes)
        interest = None if floes == self._all_in else frozenset(floes)
        while True:
            if self._buffer.items:
                return self._buffer.pop_nowait()
            start = self._rotation
            for offset in range(count):
                floe = floes[(start + offset) % count]
                if floe.items:
                    self._rotation = (start + offset + 1) % count
                    return floe.pop_nowait()
            await self._ready.wait(interest)

    async def _next(self) -> Any:
        """Wait for the next item from the buffer or any incoming floe, even with none."""
        floes = self._all_in
        if len(floes) == 1 and not self._buffer.items:
            return await floes[0].pop()
        return await self._take_any(floes)

    # -- other --------------------------------------------------------------------------------

    def idempotency_key(self, message: Any) -> str:
        """Return a key for this node processing ``message``, the same on every run.

        Made of the message's trace, this context's node and the message's content (payload,
        headers and meta for a ``Message``), it stays the same when a recovered trace is
        driven again, so a node can use it to skip a side effect it already made.
        """
        from .journal import idempotency_key

        node_name = self._owner.name or ""
        return idempotency_key(getattr(message, "trace_id", None), node_name, message)

    def outgoing_count(self) -> int:
        """Return the number of outgoing floes."""
        return len(self._outgoing)

    def queue_depth_in(self) -> int:
        """Return the number of items waiting on the incoming floes."""
        return sum(map(len, self._in_deques))

    def queue_depth_out(self) -> int:
        """Return the number of items waiting on the outgoing floes."""
        return sum(map(len, self._out_deques))

    async def call_playbook(
        self,
        playbook: PlaybookFactory,
        parent_msg: Message,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        """Run a subflow for ``parent_msg`` and return its first result; see ``call_playbook``."""
        from .subflow import call_playbook

        return await call_playbook(playbook, parent_msg, timeout=timeout, runtime=self._runtime)

    def __repr__(self) -> str:
        return f"<Context {self._owner.name}>"
