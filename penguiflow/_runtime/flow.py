"""``PenguiFlow``: a flow's public face, composed of the engine's collaborators.

It owns no mechanism of its own: ``create()`` builds the collaborators (wiring from ``graph``,
accounting from ``traces``, events from ``events``, enqueueing from ``enqueue``, routing from
``routing``, trace ends from ``lifecycle``, cancellation from ``cancel``, trace-scoped
fetching from ``results``, tasks from ``tasks``), hands each one only the others it needs,
and its public methods delegate. Workers are built by ``run()``, from the policies the nodes
have then.

It is over 500 lines because it is the whole public surface of a flow: most of it is the
docstrings of the contract's methods and their argument checks, which belong with them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .._events import NODE_CANCELLED
from ..node import Node
from ..state import SupportsTraceLifecycle
from ..types import WM, Message, StreamChunk
from . import constants as c
from .cancel import Canceller
from .context import Context
from .endpoints import OPEN_SEA, ROOKERY, Endpoint, Target
from .enqueue import Enqueuer, Tagged
from .events import EventSink
from .graph import wire
from .health import (
    STORE_FLUSH_TIMED_OUT,
    STORE_FLUSH_TIMEOUT_S,
    check_store_accepts_traces,
    describe_store,
    health_of,
)
from .journal import TraceJournal, flow_key
from .lifecycle import TraceLifecycle
from .nodes import NodeStatus
from .recovery import Redriver
from .results import Results
from .routing import Router, is_control, message_output_nodes
from .shutdown import drain
from .tasks import TaskOwner
from .traces import TraceFlags, TraceRegistry
from .worker import Worker

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from ..bus import MessageBus
    from ..health import FlowHealth
    from ..registry import ModelRegistry
    from ..state import RemoteBinding, StateStore, StoredEvent
    from .floe import Floe

__all__ = ["PenguiFlow", "create"]


class PenguiFlow:
    """A graph of nodes joined by bounded floes, fed at OpenSea and drained at the Rookery.

    Construction needs no running loop. ``run()`` starts one worker per node; ``stop()``
    cancels and awaits every task the flow started, discards what is still queued (with a
    ``floe_drained`` event per floe) and forgets every trace; the flow may then run again.

    Raises:
        CycleError: the graph has a cycle and ``allow_cycles`` is False.
        TypeError: an adjacency is not a (Node, Sequence[Node]) pair.
        ValueError: two distinct nodes share a name.
    """

    def __init__(
        self,
        *adjacencies: tuple[Node, Sequence[Node]],
        queue_maxsize: int = c.DEFAULT_QUEUE_MAXSIZE,
        allow_cycles: bool = False,
        middlewares: Sequence[Any] | None = None,
        emit_errors_to_rookery: bool = False,
        state_store: StateStore | None = None,
        message_bus: MessageBus | None = None,
    ) -> None:
        _check_maxsize(queue_maxsize)
        wiring = wire(adjacencies, maxsize=queue_maxsize, allow_cycles=allow_cycles)
        self._queue_maxsize = queue_maxsize
        self._allow_cycles = allow_cycles
        self._emit_errors_to_rookery = emit_errors_to_rookery
        self._state_store = state_store
        self._message_bus = message_bus
        self._nodes: list[Node] = wiring.nodes
        self._floes: list[Floe[Any]] = wiring.floes
        self._middlewares: list[Any] = list(middlewares or ())
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of the current (or last) run."""
        self._registry: ModelRegistry | None = None
        traces = self._traces = TraceRegistry(queue_maxsize)
        owner = self._owner = TaskOwner()
        enqueuer = self._enqueuer = Enqueuer(traces=traces, owner=owner, bus=message_bus)
        self._contexts: dict[Node | Endpoint, Context] = {}
        owners: list[Node | Endpoint] = [*wiring.nodes, OPEN_SEA, ROOKERY]
        for each in owners:
            ctx = self._contexts[each] = Context(each, self)
            ctx._bind(enqueuer, traces)
        for floe in wiring.floes:
            assert floe.source is not None and floe.target is not None
            self._contexts[floe.source].add_outgoing_floe(floe)
            self._contexts[floe.target].add_incoming_floe(floe)
        rookery = self._rookery = self._contexts[ROOKERY]
        self._opensea = self._contexts[OPEN_SEA]
        journal = self._journal = _journal_for(state_store, wiring.floes)
        traces.journaled = journal is not None
        sink = self._events = EventSink(
            traces=traces, middlewares=self._middlewares, store=state_store, maxsize=queue_maxsize
        )
        for each, ctx in self._contexts.items():
            sink.keep(each, ctx)
        # The only Rookery floe, when there is exactly one: fetch() reads it directly.
        self._egress = rookery._all_in[0] if len(rookery._all_in) == 1 else None
        self._inner_floes = [floe for floe in wiring.floes if floe.target is not ROOKERY]
        buffer = rookery._buffer
        self._router = Router(
            fallback=rookery._all_in[0] if rookery._all_in else buffer,
            enqueuer=enqueuer,
            traces=traces,
        )
        self._lifecycle = TraceLifecycle(
            traces=traces, sink=sink, rookery=rookery, journal=journal, owner=owner
        )
        self._results = Results(
            rookery=rookery,
            sources=(*rookery._all_in, buffer),
            capacity=queue_maxsize * max(1, len(rookery._all_in)),
            current_trace=self._current_trace,
            enqueuer=enqueuer,
            sink=sink,
            lifecycle=self._lifecycle,
            owner=owner,
        )
        self._lifecycle.on_cancelled = self._results.cancel
        self._redriver = Redriver(
            self.emit, nodes=self._nodes, journal=journal, window=max(1, queue_maxsize or 64)
        )
        self._lifecycle.on_ended = self._redriver.ended
        self._node_status = {node: NodeStatus(node) for node in self._nodes}
        self._workers: list[Worker] = []
        """This run's workers (the last run's after ``stop()``); rebuilt by ``run()``."""
        self._worker_of: dict[asyncio.Task[Any], Worker] = {}
        self._canceller = Canceller(
            traces=traces,
            sink=sink,
            opensea=self._opensea,
            floes=(*rookery._all_in, buffer),
            results=self._results,
            workers=self._workers,
            owner=owner,
            lifecycle=self._lifecycle,
        )

    # -- attributes other code touches ---------------------------------------------------------

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        """The worker tasks; empty when the flow is not running."""
        return self._owner.workers

    @property
    def _trace_events(self) -> TraceFlags:
        """Cancel flag per live trace (a dict); callers may insert an already-set Event."""
        return self._traces.flags

    @property
    def registry(self) -> ModelRegistry | None:
        """The registry given to ``run()``."""
        return self._registry

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self, *, registry: ModelRegistry | None = None) -> None:
        """Start one worker per node on the running loop, synchronously.

        Raises:
            RuntimeError: the flow is running already (in this loop or another one), no loop
                is running, the flow has no nodes, ``registry`` lacks a node whose policy
                validates, or the ``state_store`` is a penguiflow store that is not open.
        """
        loop = asyncio.get_running_loop()
        if self._running:
            raise RuntimeError(c.ALREADY_RUNNING if loop is self._loop else c.OTHER_LOOP)
        if not self._nodes:
            raise RuntimeError(c.NO_NODES)
        store = self._state_store
        # A store that says whether it is open (penguiflow's own do: ``opened``); the engine
        # asks by that name and imports no store.
        if getattr(store, "opened", True) is False:
            # Checked here, not at the first save: a store that fails to open there would
            # raise from emit() after the message was queued, and a retry would duplicate it.
            raise RuntimeError(
                f"the state_store {describe_store(store)} is not open; await store.start() "
                "(or enter `async with store`) before flow.run(), and close it after stop()"
            )
        self._registry = registry
        if registry is not None:
            missing = sorted(
                node.name or node.node_id
                for node in self._nodes
                if node.policy.validate != "none" and not registry.has(node.name or node.node_id)
            )
            if missing:
                raise RuntimeError(
                    "ModelRegistry is missing entries for nodes requiring validation: "
                    + ", ".join(missing)
                )
        warned = message_output_nodes(self._nodes, registry)
        self._running = True
        self._loop = loop
        self._bind_loop(loop)
        self._workers[:] = self._build_workers()
        for worker in self._workers:
            task = worker.start(self._owner, registry, worker.node in warned)
            self._worker_of[task] = worker

    def _build_workers(self) -> list[Worker]:
        """One worker per node and unit of its policy's concurrency, as the policies are now."""
        workers: list[Worker] = []
        for node in self._nodes:
            status = self._node_status[node]
            status.configure(node.policy.breaker)
            workers.extend(
                Worker(
                    node,
                    self._contexts[node],
                    status,
                    index,
                    traces=self._traces,
                    sink=self._events,
                    enqueuer=self._enqueuer,
                    router=self._router,
                    lifecycle=self._lifecycle,
                    errors_to_rookery=self._emit_errors_to_rookery,
                )
                for index in range(node.policy.concurrency)
            )
        return workers

    async def stop(self) -> None:
        """Cancel and await every task of the flow and forget all per-trace state.

        Items still queued for a node are discarded, with a ``floe_drained`` event per floe;
        results already at the Rookery are kept, and ``fetch`` returns them after the next
        ``run()``. Waiting ``fetch(trace_id=...)`` calls raise ``RuntimeError``; capacity
        waiters are woken. No-op when not running.
        """
        if not self._running:
            return
        self._running = False
        await self._owner.shutdown()
        self._worker_of.clear()
        for worker in self._workers:
            if not worker.started:
                # Cancelled before its first step, so it could not say so itself.
                await self._events.emit(NODE_CANCELLED, worker.ctx, None)
            worker.reset()
        # Results wait at the Rookery for the next run; what the dispatcher had sorted out
        # goes back there too. They are no longer counted: their traces end with this run.
        self._rookery._buffer.put_back(self._results.close())
        await drain(self._inner_floes, self._contexts, self._events)
        self._traces.clear()
        self._redriver.reset()
        for ctx in self._contexts.values():
            ctx._stream_seqs.clear()
        self._bind_loop(None)
        flush = getattr(self._state_store, "flush", None)
        if flush is not None:
            await self._flush_store(flush)

    def _bind_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Hand the run's loop to every floe and to the results (None once it stopped).

        Their waiters make futures on it without asking asyncio, which costs a system call
        per waiter; a stopped flow's floes ask again, for whichever loop uses them next.
        """
        for floe in self._floes:
            floe.loop = loop
        for ctx in self._contexts.values():
            ctx._buffer.loop = loop
        self._results.shared.loop = loop
        self._results.loop = loop

    async def _flush_store(self, flush: Callable[[], Awaitable[object]]) -> None:
        """Let a durable store's writer commit what the flow handed it, for a bounded time.

        While its commits fail this gives up after ``STORE_FLUSH_TIMEOUT_S``: the writes stay
        queued in the store (its ``close()`` commits or abandons them, and says how many), and
        ``state_store_flush_timed_out`` is logged with the count, so ``stop()`` returns.
        """
        try:
            async with asyncio.timeout(STORE_FLUSH_TIMEOUT_S):
                await flush()
        except TimeoutError:
            store = self._state_store
            c.logger.error(
                STORE_FLUSH_TIMED_OUT,
                extra={
                    "event": STORE_FLUSH_TIMED_OUT,
                    "store": describe_store(store),
                    "count": getattr(store, "pending_writes", None),
                    "timeout_s": STORE_FLUSH_TIMEOUT_S,
                },
            )

    def _current_trace(self) -> str | None:
        """Return the trace of the item the calling worker is processing, if any."""
        task = asyncio.current_task()
        worker = self._worker_of.get(task) if task is not None else None
        return worker.trace_id if worker is not None else None

    def _is_running(self) -> bool:
        return self._running

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a helper task that ``stop()`` cancels if it still runs (subflow watchers)."""
        return self._owner.spawn(coro, name=name)

    def add_middleware(self, middleware: Any) -> None:
        """Append a middleware; it sees every event from now on."""
        self._middlewares.append(middleware)

    def _with_state_store(self, store: StateStore) -> PenguiFlow:
        """A new flow of the same nodes, edges and settings, that keeps its state in ``store``.

        For the ``penguiflow`` command (``run --store``, ``recover``): a flow's store is wired
        in when the flow is built. Nodes are in the order they were first named, then the
        edges in their order, so the new flow's floes, and its key in the store, are the same.
        The two flows share their nodes: run one of them only.

        Raises:
            ValueError: this flow has a state store already.
        """
        if self._state_store is not None:
            raise ValueError(f"the flow keeps its state in {describe_store(self._state_store)}")
        edges: list[tuple[Node, Sequence[Node]]] = [(node, ()) for node in self._nodes]
        edges.extend(
            (floe.source, (floe.target,))
            for floe in self._floes
            if isinstance(floe.source, Node) and isinstance(floe.target, Node)
        )
        return PenguiFlow(
            *edges,
            queue_maxsize=self._queue_maxsize,
            allow_cycles=self._allow_cycles,
            middlewares=self._middlewares,
            emit_errors_to_rookery=self._emit_errors_to_rookery,
            state_store=store,
            message_bus=self._message_bus,
        )

    # -- emit -----------------------------------------------------------------------------------

    def _is_duplicate_wm(self, msg: Message) -> bool:
        if isinstance(msg.payload, WM):
            record = self._traces.records.get(msg.trace_id)
            return record is not None and record.wm_hops == msg.payload.hops
        return False

    def _ingress(self, msg: Any, to: Target) -> tuple[Floe[Any], ...]:
        """Return the ingress floes ``msg`` goes to (none for a duplicate WM)."""
        if isinstance(msg, Message) and is_control(msg.payload) and self._is_duplicate_wm(msg):
            return ()
        opensea = self._opensea
        return opensea._all_out if to is None else opensea._resolve(to, opensea._outgoing)

    def _admit_new(self, msg: Any) -> bool:
        """Whether ``msg`` starts a journaled trace; refuses it while the store is failing."""
        fresh = self._lifecycle.is_new(msg)
        if fresh:
            check_store_accepts_traces(self._state_store)
        return fresh

    async def emit(self, msg: Any, to: Target = None, *, trace_id: str | None = None) -> None:
        """Feed ``msg`` to the ingress nodes (``to`` selects some), waiting for room.

        With ``trace_id``, starts a roundtrip: the message is stamped with the id and the
        trace's roundtrip lock is held until ``fetch(trace_id=...)`` returns.

        Raises:
            RuntimeError: the flow is not running, or ``msg`` starts a new trace while the
                journaling state store's ``status`` is ``failing`` (nothing is sent).
            TypeError: ``trace_id`` is not a string, or cannot be stamped on ``msg``.
            KeyError: ``to`` names a node that is not an ingress node.
        """
        if not self._running:
            raise RuntimeError(c.NOT_RUNNING)
        if trace_id is None:
            fresh = self._admit_new(msg)
            floes = self._ingress(msg, to)
            if not self._enqueuer.try_put(floes, msg):
                await self._enqueuer.put(floes, msg)
            if fresh and floes:
                await self._journal_start(msg, to)
            return
        msg = self._stamped(msg, trace_id)
        results = self._results
        token = results.try_turn(trace_id)
        if token is None:
            token = await self._roundtrip_turn(trace_id)
        inbox = results.subscribe(trace_id)
        inbox.token = token
        results.start()
        sent: tuple[Floe[Any], ...] = ()
        lifecycle = self._lifecycle
        fresh = lifecycle.journal is not None and lifecycle.is_new(msg)
        enqueuer = self._enqueuer
        try:
            floes = self._ingress(msg, to)
            if enqueuer.try_put(floes, msg):
                sent = floes
            elif len(floes) == 1 and enqueuer.bus is None:
                # Floe.push, inlined (see Floe.line_up): a caller waiting for room then holds
                # one coroutine, not two.
                floe = floes[0]
                place = floe.line_up(msg, enqueuer.count, trace_id)
                if place is not None:
                    try:
                        await place.future
                    except BaseException:
                        floe.withdraw(place)
                        raise
                    floe.resumed()
                sent = floes  # only now: cancelled while waiting for room, nothing was sent
            else:
                await enqueuer.put(floes, msg)
                sent = floes
        finally:
            if not sent and inbox.fetchers == 0:
                results.unsubscribe(trace_id)
        if fresh and sent:
            await self._journal_start(msg, to)

    def _stamped(self, msg: Any, trace_id: str) -> Any:
        """``msg`` stamped with ``trace_id`` for a roundtrip; refused while the store fails."""
        msg = _stamp(msg, _checked_trace(trace_id, "emit"))
        if self._lifecycle.journal is not None:
            self._admit_new(msg)
        return msg

    async def _roundtrip_turn(self, trace_id: str) -> object:
        """Wait for a roundtrip of ``trace_id`` to be allowed: admission, then its lock.

        Returns the lock's token.

        Raises:
            RuntimeError: the flow stopped while this waited.
        """
        results = self._results
        if trace_id not in results.inboxes and results.must_wait():
            await results.admit()
        token = results.locks.try_acquire(trace_id)
        if token is None:
            token = await results.locks.acquire(trace_id)
            if not self._is_running():  # stop() may have run while we waited
                results.locks.release(trace_id, token)
                raise RuntimeError(c.NOT_RUNNING)
        return token

    async def _journal_start(self, msg: Message, to: Target) -> None:
        """Journal a new trace's start and wait until it is durable (see ``journal``).

        If the store cannot make it durable (its commits keep failing), the trace is
        cancelled before the error reaches the caller: nothing is accepted that a crash
        could lose.
        """
        try:
            await self._lifecycle.started(msg, _target_names(to))
        except Exception:
            await self._canceller.cancel(msg.trace_id)
            raise

    def emit_nowait(self, msg: Any, to: Target = None, *, trace_id: str | None = None) -> None:
        """Feed ``msg`` to the ingress nodes without waiting.

        Raises:
            asyncio.QueueFull: an ingress floe is full.
            RuntimeError: ``trace_id`` was given (use ``await emit(..., trace_id=...)``), the
                flow is not running, or ``msg`` starts a trace while the store is failing.
        """
        if trace_id is not None:
            raise RuntimeError(c.EMIT_NOWAIT_TRACE)
        if not self._running:
            raise RuntimeError(c.NOT_RUNNING)
        if isinstance(msg, Message) and self._is_duplicate_wm(msg):
            return
        fresh = self._admit_new(msg)
        self._opensea.emit_nowait(msg, to)
        if fresh:
            self._lifecycle.start_soon(msg)

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
        """Emit a stream chunk into the flow from OpenSea; see ``Context.emit_chunk``."""
        return await self._contexts[OPEN_SEA].emit_chunk(
            parent=parent, text=text, stream_id=stream_id, seq=seq, done=done, meta=meta, to=to
        )

    # -- fetch ----------------------------------------------------------------------------------

    async def fetch(self, from_: Target = None, *, trace_id: str | None = None) -> Any:
        """Wait for the next Rookery item and return it as it is.

        With ``trace_id``, wait for the next item of that trace only.

        Raises:
            RuntimeError: the flow is not running (or runs in another loop); ``trace_id``
                combined with ``from_``; ``from_`` once trace-scoped fetching is on; or the
                flow stopped while a trace-scoped fetch waited.
            TypeError: ``trace_id`` is not a string.
            TraceCancelled: the trace was cancelled while a trace-scoped fetch waited.
        """
        if not self._running:
            raise RuntimeError(c.NOT_RUNNING)
        results = self._results
        if trace_id is not None:
            # ``Results.enter``, the wait for the inbox, then ``leave`` (or ``left``): inlined
            # rather than a coroutine of their own, so that a waiting caller holds one less.
            inbox = results.enter(_fetched_trace(trace_id, from_))
            failures = inbox.failures
            try:
                while not inbox.size:
                    future = inbox.waiter(failures, results.loop)
                    try:
                        await future
                    except BaseException:
                        inbox.withdraw(future)
                        raise
            except BaseException as error:
                results.left(trace_id, inbox, error)
                raise
            item = results.leave(trace_id, inbox)
        elif results.active:
            if from_ is not None:
                raise RuntimeError(c.FETCH_FROM_DISPATCH)
            item = await results.take_any()
        elif (
            from_ is None
            and self._egress is not None
            and self._egress.items
            and not self._rookery._buffer.items
        ):
            item = self._egress.pop_nowait()  # the common case, without a fetch coroutine
        else:
            if asyncio.get_running_loop() is not self._loop:
                raise RuntimeError(c.OTHER_LOOP)
            item = await self._rookery.fetch(from_)
        trace_id = getattr(item, "trace_id", None)
        if isinstance(trace_id, str):  # trace_of(), inlined
            end = self._traces.release(trace_id)  # inlined: TraceLifecycle.release
            if end is not None:
                # Handed out only once the trace's end is durable: a crash after this never
                # runs again a trace whose result was fetched.
                await self._lifecycle.ended(trace_id, end, durable=True)
        return item.item if isinstance(item, Tagged) else item

    async def fetch_any(self, from_: Target = None, *, trace_id: str | None = None) -> Any:
        """Alias of ``fetch``."""
        return await self.fetch(from_, trace_id=trace_id)

    # -- cancellation -----------------------------------------------------------------------------

    async def cancel(self, trace_id: str) -> bool:
        """Cancel one trace; other traces carry on.

        Drops the trace's queued items, cancels its running invocations and its registered
        tasks, and fails its waiting trace-scoped fetch.

        Returns:
            False if the trace has nothing pending or running, else True.

        Raises:
            RuntimeError: the flow is not running.
        """
        if not self._running:
            raise RuntimeError(c.NOT_RUNNING)
        return await self._canceller.cancel(trace_id)

    # -- state store, bus, misc -------------------------------------------------------------------

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """Return the stored events of a trace.

        Raises:
            RuntimeError: the flow has no state store.
        """
        if self._state_store is None:
            raise RuntimeError(c.NO_STATE_STORE)
        return await self._state_store.load_history(trace_id)

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Save a remote binding to the store; no-op without one; store errors are logged."""
        if self._state_store is None:
            return
        try:
            await self._state_store.save_remote_binding(binding)
        except Exception as error:
            c.logger.exception(
                "state_store_binding_failed",
                extra={
                    "event": "state_store_binding_failed",
                    "trace_id": binding.trace_id,
                    "exception": repr(error),
                },
            )

    async def record_remote_event(
        self,
        *,
        event: str,
        node: Node,
        context: Context,
        trace_id: str | None,
        latency_ms: float | None,
        level: int = logging.INFO,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Emit a custom event about ``node`` (attempt 0) to logs, store and middlewares.

        Queue depths and the outgoing count come from ``context``.
        """
        await self._events.emit(
            event,
            context,
            trace_id,
            latency_ms=latency_ms,
            extra=extra,
            level=level,
            owner=node,
        )

    async def _emit_to_rookery(
        self, message: Any, *, source: Node | Endpoint | None = None
    ) -> None:
        """Deliver ``message`` to the Rookery straight away, past the graph's edges.

        Upstream's own examples call this from a node (``ctx.runtime._emit_to_rookery(update,
        source=ctx.owner)``) to send a status update to the caller. It goes as a final
        answer does (spec 7.8): on ``source``'s Rookery floe, else the first Rookery floe,
        else the Rookery buffer; counted, tagged and published like any delivery.
        """
        ctx = self._contexts.get(source) if source is not None else None
        await self._router.deliver(ctx if ctx is not None else self._rookery, message)

    async def recover(self) -> int:
        """Take over the unfinished traces this flow's store holds, and drive them again.

        After a crash, a flow built the same way (same node names and edges) and started
        again takes over each trace that never ended and that no other live process holds:
        with penguiflow's stores, a trace whose process's lease has expired (or ended, or
        was replaced by the same ``owner_id`` given again). It re-emits each one's input
        message with its original trace id, to the nodes it was first sent to, from a task:
        at most ``queue_maxsize`` (64 if unbounded) recovered traces are in flight at once,
        the next one going in when one ends (its result fetched, or none to fetch). So this
        returns at once, however many traces there are; fetch the results with ``fetch()``
        as any others (``recovered()`` says how many are still to come).

        Delivery is at least once: a node may see a message again, and
        ``Context.idempotency_key`` helps it make its side effects safe.

        Returns:
            How many traces were taken over.

        Raises:
            RuntimeError: the flow is not running, or its store keeps no trace journal.
            FlushTimeoutError: the store's commits are failing, so its journal cannot be read
                up to date (penguiflow's stores bound that wait by their ``failing_after_s``).
        """
        if not self._running:
            raise RuntimeError(c.NOT_RUNNING)
        if self._journal is None:
            raise RuntimeError(
                "recover() needs a state_store that journals traces "
                "(save_trace_start, save_trace_end, unfinished_traces)"
            )
        records, redriver = self._traces.records, self._redriver
        taken = [
            (message, targets)
            for message, targets in await self._journal.unfinished()
            if message.trace_id not in records and not redriver.known(message.trace_id)
        ]
        redriver.add(taken, self._owner)
        return len(taken)

    def recovered(self) -> int:
        """How many traces taken over by ``recover()`` have not ended yet."""
        return self._redriver.waiting + len(self._redriver.active)

    async def wait_recovered(self) -> None:
        """Wait until ``recovered()`` is 0: every trace ``recover()`` took over has ended.

        Beyond the contract. A recovered trace that delivers results ends once they are all
        fetched, so fetch them meanwhile (from another task). Returns at once when nothing
        was recovered, and when the flow stops (which forgets what was still to come).
        """
        await self._redriver.wait_done()

    def ensure_trace_event(self, trace_id: str) -> asyncio.Event:
        """Return the cancel flag of ``trace_id``, creating it if needed."""
        return self._traces.ensure_flag(trace_id)

    def register_external_task(self, trace_id: str | None, task: asyncio.Task[Any]) -> None:
        """Track ``task`` for ``trace_id`` until it is done.

        Cancelling the trace or stopping the flow cancels it. A None trace id is ignored.
        """
        if trace_id is None:
            return
        self._owner.adopt(trace_id, task)

    def active_traces(self) -> list[str]:
        """The ids of the traces with something pending now (queued, running or unfetched).

        A fresh list, in the order the traces started; cheap (one copy of the keys).
        """
        return list(self._traces.records)

    def health(self) -> FlowHealth:
        """Return a snapshot of the flow's health; synchronous and cheap.

        ``penguiflow.health`` states the rule for the overall status.
        """
        return health_of(
            running=self._running,
            nodes=self._nodes,
            workers=self._workers,
            statuses=self._node_status,
            floes=self._floes,
            traces_in_flight=len(self._traces.records),
            results=self._results,
            store=self._state_store,
        )

    def _residue(self) -> dict[str, int]:
        """Counts of everything that must be empty once the flow has stopped (for tests)."""
        journal, owner, results = self._journal, self._owner, self._results
        return {
            "traces": len(self._traces.records),
            "trace_events": len(self._traces.flags),
            "queued": sum(floe.qsize() for floe in self._inner_floes),
            "inboxes": len(results.inboxes),
            "shared": results.shared.qsize(),
            "results_held": results.held,
            "locks": len(results.locks),
            "workers": len(owner.workers),
            "helpers": len(owner.helpers),
            "publishes": len(owner.publishes),
            "external": len(owner.external),
            "stream_counters": sum(len(ctx._stream_seqs) for ctx in self._contexts.values()),
            "worker_index": len(self._worker_of),
            "journal_starts": journal.pending_starts() if journal is not None else 0,
            "recovering": self.recovered(),
        }


def _journal_for(store: object, floes: Sequence[Floe[Any]]) -> TraceJournal | None:
    """A journal when ``store`` keeps trace lifecycles, else None."""
    if isinstance(store, SupportsTraceLifecycle):
        return TraceJournal(store, flow_key(floes))
    return None


def _target_names(to: Target) -> list[str] | None:
    """The names of the nodes ``to`` selects, as the journal keeps them; None for all."""
    if to is None:
        return None
    chosen = [to] if isinstance(to, (Node, Endpoint)) else list(to)
    return [str(each.name or getattr(each, "node_id", "")) for each in chosen]


def _check_maxsize(queue_maxsize: object) -> None:
    if isinstance(queue_maxsize, bool) or not isinstance(queue_maxsize, int):
        raise TypeError(
            f"queue_maxsize must be an int (0 for unbounded floes), got "
            f"{type(queue_maxsize).__name__} {queue_maxsize!r}"
        )
    if queue_maxsize < 0:
        raise ValueError(f"queue_maxsize must be >= 0 (0 for unbounded), got {queue_maxsize}")


def _checked_trace(trace_id: object, call: str) -> str:
    if not isinstance(trace_id, str):
        raise TypeError(
            f"{call}(trace_id=...) takes a str, got {type(trace_id).__name__} {trace_id!r}"
        )
    return trace_id


def _fetched_trace(trace_id: object, from_: Target) -> str:
    if from_ is not None:
        raise RuntimeError(c.FETCH_TRACE_FROM)
    return _checked_trace(trace_id, "fetch")


def _stamp(msg: Any, trace_id: str) -> Any:
    if type(msg) is Message:
        return msg if msg.trace_id == trace_id else _restamped(msg, trace_id)
    if isinstance(msg, Message):
        return msg if msg.trace_id == trace_id else msg.model_copy(update={"trace_id": trace_id})
    try:
        msg.trace_id = trace_id
    except (AttributeError, TypeError) as exc:
        raise TypeError(c.EMIT_TRACE_TYPE) from exc
    return msg


def _restamped(msg: Message, trace_id: str) -> Message:
    """``msg.model_copy(update={"trace_id": trace_id})`` for a plain ``Message``, made directly.

    A roundtrip stamps every message it sends, and pydantic's general copy costs about three
    times this one: the same shallow copy (``__dict__``, extra, fields set), the same result.
    """
    copied = _new_object(Message)
    fields = msg.__dict__.copy()
    fields["trace_id"] = trace_id
    _set_dict(copied, fields)
    extra = msg.__pydantic_extra__
    _set_extra(copied, None if extra is None else dict(extra))
    fields_set = set(msg.__pydantic_fields_set__)
    fields_set.add("trace_id")
    _set_fields_set(copied, fields_set)
    _set_private(copied, None)  # Message declares no private attributes
    return copied


_new_object = object.__new__
# The setters of BaseModel's four slots: what ``object.__setattr__`` ends up calling, without
# looking the name up on every call.
_set_dict, _set_extra, _set_fields_set, _set_private = (
    BaseModel.__dict__[slot].__set__
    for slot in (
        "__dict__",
        "__pydantic_extra__",
        "__pydantic_fields_set__",
        "__pydantic_private__",
    )
)


def create(*adjacencies: tuple[Node, Sequence[Node]], **kwargs: Any) -> PenguiFlow:
    """Build a ``PenguiFlow``; same arguments as its constructor."""
    return PenguiFlow(*adjacencies, **kwargs)
