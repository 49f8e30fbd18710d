"""Helpers for testing flows and nodes: one-shot runs, recorded events, injected failures.

Module state: a global LRU of the last 64 trace histories (trace id -> events, shared with
the recorder that filled it) and one recorder per flow in a weak-keyed map, so recorders die
with their flows.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from ._events import NODE_START
from .errors import FlowErrorCode
from .node import Node
from .types import Headers, Message, StreamChunk

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence

    from .core import PenguiFlow
    from .metrics import FlowEvent
    from .registry import ModelRegistry

__all__ = [  # noqa: RUF022 - order fixed by the spec
    "run_one",
    "assert_node_sequence",
    "get_recorded_events",
    "simulate_error",
    "assert_preserves_message_envelope",
]

_MAX_TRACE_HISTORY = 64
_TRACE_HISTORY: OrderedDict[str, list[FlowEvent]] = OrderedDict()
_RECORDERS: weakref.WeakKeyDictionary[PenguiFlow, _RecorderState] = weakref.WeakKeyDictionary()

_STUB_EMIT_CHUNK = (
    "FlowTestKit stub context does not support emit_chunk; "
    "provide a custom context via the 'ctx' parameter"
)


def _register_history(trace_id: str, events: list[FlowEvent]) -> None:
    """Make ``events`` the global history of ``trace_id``, evicting the oldest beyond 64."""
    _TRACE_HISTORY[trace_id] = events
    _TRACE_HISTORY.move_to_end(trace_id)
    while len(_TRACE_HISTORY) > _MAX_TRACE_HISTORY:
        _TRACE_HISTORY.popitem(last=False)


def _node_label(event: FlowEvent) -> str:
    return event.node_name or event.node_id or "<anonymous>"


class _RecorderState:
    """A middleware that keeps the events of one flow, by trace."""

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []
        self._traces: dict[str, list[FlowEvent]] = {}

    def begin(self, traces: Iterable[str] | None = None) -> None:
        """Start a new log, registering an empty global history for each trace."""
        self.events = []
        self._traces = {}
        for trace_id in traces or ():
            self._bucket(trace_id)

    def _bucket(self, trace_id: str) -> list[FlowEvent]:
        bucket = self._traces.get(trace_id)
        if bucket is None:
            bucket = self._traces[trace_id] = []
            _register_history(trace_id, bucket)
        return bucket

    async def record(self, event: FlowEvent) -> None:
        """Log ``event``, and add it to its trace's history when it has a trace."""
        self.events.append(event)
        if event.trace_id is not None:
            self._bucket(event.trace_id).append(event)

    def node_sequence(self, trace_id: str) -> list[str]:
        """Return the names of the ``node_start`` events of a trace, retries included."""
        bucket = self._traces.get(trace_id)
        if bucket is None:
            bucket = _TRACE_HISTORY.get(trace_id, [])
        return [_node_label(event) for event in bucket if event.event_type == NODE_START]

    @property
    def middleware(self) -> Callable[[FlowEvent], Awaitable[None]]:
        """The callable to register as a flow middleware."""
        return self.record


def _recorder_for(flow: PenguiFlow) -> _RecorderState:
    """Return ``flow``'s recorder, installing it in ``flow._middlewares`` once."""
    try:
        middlewares = flow._middlewares
    except AttributeError:
        raise AttributeError("PenguiFlow instance is missing middleware hooks") from None
    recorder = _RECORDERS.get(flow)
    if recorder is None:
        recorder = _RECORDERS[flow] = _RecorderState()
    if recorder.middleware not in middlewares:
        middlewares.append(recorder.middleware)
    return recorder


async def run_one(
    flow: PenguiFlow,
    message: Message,
    *,
    registry: ModelRegistry | None = None,
    timeout_s: float | None = 1.0,
) -> Any:
    """Run ``flow`` for one message and return the first item it delivers to the Rookery.

    The flow's events are recorded under ``message.trace_id`` for ``assert_node_sequence``
    and ``get_recorded_events``. The flow is started here and always stopped before this
    returns, also on timeout, error or cancellation.

    Args:
        flow: A flow that is not running.
        message: The message to emit.
        registry: Passed to ``flow.run``.
        timeout_s: Seconds the emit and the fetch may take together; None waits for ever.

    Returns:
        The raw Rookery item: a ``Message``, a ``FlowError``, or whatever the flow produced.

    Raises:
        TypeError: ``message`` is not a ``Message``.
        AttributeError: ``flow`` has no ``_middlewares`` list.
        TimeoutError: the emit or the fetch took longer than ``timeout_s``.
    """
    if not isinstance(message, Message):
        raise TypeError("run_one expects a penguiflow.types.Message instance")
    recorder = _recorder_for(flow)
    recorder.begin([message.trace_id])
    flow.run(registry=registry)
    try:
        if timeout_s is None:
            await flow.emit(message)
            return await flow.fetch()
        async with asyncio.timeout(timeout_s):
            await flow.emit(message)
            return await flow.fetch()
    finally:
        await flow.stop()


def _collapse(names: list[str]) -> list[str]:
    """Drop consecutive duplicates, so a retried node appears once."""
    return [name for index, name in enumerate(names) if index == 0 or names[index - 1] != name]


def assert_node_sequence(trace_id: str, expected: Sequence[str]) -> None:
    """Check the order in which nodes started for a trace recorded by ``run_one``.

    Raises:
        AssertionError: nothing was recorded for ``trace_id``, or the sequence differs.
    """
    events = _TRACE_HISTORY.get(trace_id)
    if events is None:
        raise AssertionError(
            f"No recorded events for trace_id={trace_id!r}; run a flow with run_one first."
        )
    actual = _collapse([_node_label(e) for e in events if e.event_type == NODE_START])
    wanted = list(expected)
    if actual != wanted:
        raise AssertionError(f"Node sequence mismatch:\n  expected: {wanted}\n  actual:   {actual}")


def get_recorded_events(trace_id: str) -> tuple[FlowEvent, ...]:
    """Return the events recorded for a trace, or ``()`` if there are none."""
    return tuple(_TRACE_HISTORY.get(trace_id, ()))


class SimulationState:
    """Counters of a ``simulate_error`` function, read-only from outside."""

    __slots__ = ("_attempts", "_fail_times")

    def __init__(self, fail_times: int) -> None:
        self._attempts = 0
        self._fail_times = fail_times

    @property
    def attempts(self) -> int:
        """How many times the function has been called."""
        return self._attempts

    @property
    def failures(self) -> int:
        """How many of those calls raised."""
        return min(self._attempts, self._fail_times)

    def _next_attempt(self) -> int:
        self._attempts += 1
        return self._attempts


class SimulatedNodeFunc(Protocol):
    """A node function made by ``simulate_error``, carrying its counters."""

    simulation: SimulationState
    """How often it ran and failed."""

    # Messages are user data of any shape, and so is what the node returns.
    def __call__(self, message: Any, ctx: Any) -> Coroutine[Any, Any, Any]: ...


def simulate_error(
    node_name: str,
    code: FlowErrorCode | str,
    *,
    fail_times: int = 1,
    result: Any = None,
    result_factory: Callable[[Any], Any] | None = None,
    exception_type: type[Exception] = RuntimeError,
) -> SimulatedNodeFunc:
    """Build a node function that fails ``fail_times`` times, then succeeds.

    Calls 1 to ``fail_times`` raise ``exception_type("[<code>] simulated failure in
    <node_name> (attempt <n>)")``. Later calls return ``result_factory(message)`` (awaited if
    awaitable), else ``result`` if it is not None, else the message itself.

    Raises:
        ValueError: ``fail_times < 1``, or both ``result`` and ``result_factory`` are given.
    """
    if fail_times < 1:
        raise ValueError("fail_times must be >= 1")
    if result is not None and result_factory is not None:
        raise ValueError("Specify only one of result or result_factory")
    code_value = code.value if isinstance(code, FlowErrorCode) else str(code)
    state = SimulationState(fail_times)

    async def _simulated(message: Any, ctx: Any) -> Any:
        attempt = state._next_attempt()
        if attempt <= fail_times:
            raise exception_type(
                f"[{code_value}] simulated failure in {node_name} (attempt {attempt})"
            )
        if result_factory is not None:
            produced = result_factory(message)
            if inspect.isawaitable(produced):
                produced = await produced
            return produced
        return result if result is not None else message

    simulated: SimulatedNodeFunc = _simulated  # type: ignore[assignment]  # attribute set next
    simulated.simulation = state
    return simulated


class _StubContext:
    """A do-nothing context for calling a node function outside a flow."""

    async def emit(self, *args: Any, **kwargs: Any) -> None:
        """Accept and discard the message."""

    def emit_nowait(self, *args: Any, **kwargs: Any) -> None:
        """Accept and discard the message."""

    async def emit_chunk(self, *args: Any, **kwargs: Any) -> StreamChunk:
        """Refuse: a stub cannot stream.

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError(_STUB_EMIT_CHUNK)


async def assert_preserves_message_envelope(
    node: Node | Callable[..., Any],
    *,
    message: Message | None = None,
    ctx: Any = None,
) -> Message:
    """Call a node function once and check that it keeps the message envelope.

    The headers and trace id of the input are snapshotted before the call, so changing them
    in place counts as altering them.

    Args:
        node: A ``Node`` (its ``func`` is called) or an ``async def (message, ctx)``.
        message: The input; defaults to ``Message(payload={}, headers=Headers(tenant="test"))``.
        ctx: The context to pass (any object); defaults to a ``_StubContext``.

    Returns:
        The node's result.

    Raises:
        TypeError: the function is not declared with ``async def``.
        AssertionError: the result is not a ``Message``, or its headers or trace id changed.
    """
    if isinstance(node, Node):
        func: Callable[..., Any] = node.func
        name = node.name or node.node_id
    else:
        func = node
        name = getattr(node, "__name__", repr(node))
    if not inspect.iscoroutinefunction(func):
        raise TypeError("assert_preserves_message_envelope expects an async node")
    if message is None:
        message = Message(payload={}, headers=Headers(tenant="test"))
    headers = message.headers.model_copy(deep=True)
    trace_id = message.trace_id
    produced = await func(message, ctx if ctx is not None else _StubContext())
    if not isinstance(produced, Message):
        raise AssertionError(
            f"Node '{name}' must return a Message but produced {type(produced).__name__}"
        )
    altered: list[str] = []
    if produced.headers != headers:
        altered.append("headers")
    if produced.trace_id != trace_id:
        altered.append("trace_id")
    if altered:
        fields = ", ".join(altered)
        raise AssertionError(f"Node '{name}' altered Message {fields}; preserve the envelope")
    return produced
