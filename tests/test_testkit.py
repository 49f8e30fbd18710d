from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

import penguiflow
import penguiflow.testkit as testkit
from penguiflow.core import create
from penguiflow.errors import FlowError, FlowErrorCode
from penguiflow.metrics import FlowEvent
from penguiflow.node import Node, NodePolicy
from penguiflow.registry import ModelRegistry
from penguiflow.testkit import (
    _RecorderState,
    _StubContext,
    assert_node_sequence,
    assert_preserves_message_envelope,
    get_recorded_events,
    run_one,
    simulate_error,
)
from penguiflow.types import Headers, Message

STUB_TEXT = (
    "FlowTestKit stub context does not support emit_chunk; "
    "provide a custom context via the 'ctx' parameter"
)


def make_msg(payload: Any = "p", **fields: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), **fields)


def make_node(fn: Any, name: str, **policy: Any) -> Node:
    return Node(fn, name=name, policy=NodePolicy(validate="none", **policy))


def make_event(event_type: str, node_name: str | None, trace_id: str | None) -> FlowEvent:
    return FlowEvent(
        event_type=event_type,
        ts=0.0,
        node_name=node_name,
        node_id=None if node_name is None else f"id-{node_name}",
        trace_id=trace_id,
        attempt=0,
        latency_ms=None,
        queue_depth_in=0,
        queue_depth_out=0,
        outgoing_edges=0,
        queue_maxsize=64,
        trace_pending=None,
        trace_inflight=0,
        trace_cancelled=False,
    )


async def upper(msg: Message, ctx: Any) -> Message:
    return msg.model_copy(update={"payload": str(msg.payload).upper()})


def test_module_surface() -> None:
    assert testkit.__all__ == [
        "run_one",
        "assert_node_sequence",
        "get_recorded_events",
        "simulate_error",
        "assert_preserves_message_envelope",
    ]
    assert penguiflow.testkit is testkit


# -- run_one ------------------------------------------------------------------------------------


async def test_run_one_returns_rookery_message_and_records_sequence() -> None:
    a, b = make_node(upper, "a"), make_node(upper, "b")
    flow = create(a.to(b), b.to())
    msg = make_msg("hi")
    result = await run_one(flow, msg)
    assert isinstance(result, Message)
    assert result.payload == "HI"
    assert result.trace_id == msg.trace_id
    assert flow._running is False
    assert_node_sequence(msg.trace_id, ["a", "b"])
    events = get_recorded_events(msg.trace_id)
    assert isinstance(events, tuple)
    assert [e.event_type for e in events if e.node_name == "a"][:2] == [
        "node_start",
        "node_success",
    ]


async def test_run_one_returns_raw_non_message_items() -> None:
    async def to_text(msg: Message, ctx: Any) -> str:
        return f"done:{msg.payload}"

    flow = create(make_node(to_text, "text").to())
    assert await run_one(flow, make_msg("x")) == "done:x"


async def test_run_one_returns_flow_error_when_errors_go_to_rookery() -> None:
    async def boom(msg: Message, ctx: Any) -> Message:
        raise ValueError("kaput")

    flow = create(make_node(boom, "boom").to(), emit_errors_to_rookery=True)
    msg = make_msg()
    result = await run_one(flow, msg)
    assert isinstance(result, FlowError)
    assert result.code == "NODE_EXCEPTION"
    assert result.trace_id == msg.trace_id
    assert_node_sequence(msg.trace_id, ["boom"])


async def test_run_one_rejects_non_message() -> None:
    flow = create(make_node(upper, "a").to())
    with pytest.raises(TypeError) as excinfo:
        await run_one(flow, {"payload": 1})  # type: ignore[arg-type]
    assert str(excinfo.value) == "run_one expects a penguiflow.types.Message instance"
    assert flow._running is False


async def test_run_one_needs_middleware_hooks() -> None:
    class NoHooks:
        pass

    with pytest.raises(AttributeError) as excinfo:
        await run_one(NoHooks(), make_msg())  # type: ignore[arg-type]
    assert str(excinfo.value) == "PenguiFlow instance is missing middleware hooks"


async def test_recorder_is_installed_once_per_flow() -> None:
    flow = create(make_node(upper, "a").to())
    before = len(flow._middlewares)
    first, second = make_msg("1"), make_msg("2")
    await run_one(flow, first)
    await run_one(flow, second)
    assert len(flow._middlewares) == before + 1
    assert_node_sequence(first.trace_id, ["a"])
    assert_node_sequence(second.trace_id, ["a"])


async def test_run_one_passes_registry_to_run() -> None:
    seen: list[Any] = []

    async def check(msg: Message, ctx: Any) -> Message:
        seen.append(ctx.runtime.registry)
        return msg

    node = Node(check, name="check")  # validate="both"
    registry = ModelRegistry()
    registry.register("check", Message, Message)
    flow = create(node.to())
    result = await run_one(flow, make_msg("r"), registry=registry)
    assert isinstance(result, Message)
    assert seen == [registry]


async def test_run_one_registry_error_leaves_flow_stopped() -> None:
    flow = create(Node(upper, name="needs").to())
    with pytest.raises(RuntimeError, match="missing entries for nodes requiring validation"):
        await run_one(flow, make_msg(), registry=ModelRegistry())
    assert flow._running is False


@pytest.mark.looptime
async def test_run_one_times_out_and_always_stops(looptime: Any) -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(msg: Message, ctx: Any) -> Message:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return msg

    flow = create(make_node(stuck, "stuck").to())
    start = float(looptime)
    with pytest.raises(TimeoutError):
        await run_one(flow, make_msg(), timeout_s=2.5)
    assert float(looptime) - start == pytest.approx(2.5)
    assert entered.is_set()
    assert cancelled.is_set()
    assert flow._running is False
    assert flow._tasks == []


async def test_run_one_without_timeout_waits_for_result() -> None:
    """The node holds the message until the test has seen run_one still waiting."""
    entered = asyncio.Event()
    gate = asyncio.Event()

    async def gated(msg: Message, ctx: Any) -> Message:
        entered.set()
        await gate.wait()
        return msg

    flow = create(make_node(gated, "gated").to())
    task = asyncio.create_task(run_one(flow, make_msg("slow"), timeout_s=None))
    await asyncio.wait_for(entered.wait(), 5)
    assert not task.done()
    gate.set()
    result = await asyncio.wait_for(task, 5)
    assert result.payload == "slow"
    assert flow._running is False


async def test_run_one_cancelled_still_stops_flow() -> None:
    entered = asyncio.Event()

    async def stuck(msg: Message, ctx: Any) -> Message:
        entered.set()
        await asyncio.Event().wait()
        return msg

    flow = create(make_node(stuck, "stuck").to())
    task = asyncio.create_task(run_one(flow, make_msg(), timeout_s=None))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flow._running is False


# -- assert_node_sequence / get_recorded_events -------------------------------------------------


def test_assert_node_sequence_without_history() -> None:
    with pytest.raises(AssertionError) as excinfo:
        assert_node_sequence("never-seen", ["a"])
    assert str(excinfo.value) == (
        "No recorded events for trace_id='never-seen'; run a flow with run_one first."
    )


async def test_assert_node_sequence_collapses_retries_and_reports_mismatch() -> None:
    flaky = make_node(
        simulate_error("flaky", FlowErrorCode.NODE_EXCEPTION, fail_times=2),
        "flaky",
        max_retries=2,
        backoff_base=0.0,
    )
    tail = make_node(upper, "tail")
    flow = create(flaky.to(tail), tail.to())
    msg = make_msg("x")
    result = await run_one(flow, msg)
    assert result.payload == "X"
    starts = [
        e.node_name for e in get_recorded_events(msg.trace_id) if e.event_type == "node_start"
    ]
    assert starts == ["flaky", "flaky", "flaky", "tail"]
    assert_node_sequence(msg.trace_id, ("flaky", "tail"))
    with pytest.raises(AssertionError) as excinfo:
        assert_node_sequence(msg.trace_id, ("tail",))
    assert str(excinfo.value) == (
        "Node sequence mismatch:\n  expected: ['tail']\n  actual:   ['flaky', 'tail']"
    )


async def test_collapse_keeps_non_consecutive_repeats_and_anonymous_names() -> None:
    recorder = _RecorderState()
    recorder.begin(["seq-trace"])
    anon = make_event("node_start", None, "seq-trace")
    for event in (
        make_event("node_start", "a", "seq-trace"),
        make_event("node_start", "b", "seq-trace"),
        make_event("node_start", "a", "seq-trace"),
        anon,
    ):
        await recorder.record(event)
    assert_node_sequence("seq-trace", ["a", "b", "a", "<anonymous>"])


def test_get_recorded_events_unknown_is_empty_tuple() -> None:
    assert get_recorded_events("nothing-here") == ()


def test_history_is_an_lru_of_64_traces() -> None:
    recorder = _RecorderState()
    ids = [f"lru-{i}" for i in range(65)]
    recorder.begin(ids)
    assert get_recorded_events("lru-0") == ()
    with pytest.raises(AssertionError, match="No recorded events"):
        assert_node_sequence("lru-0", [])
    assert_node_sequence("lru-1", [])
    assert_node_sequence("lru-64", [])
    # Registering again makes a trace the most recent.
    other = _RecorderState()
    other.begin(["lru-1"])
    other.begin([f"lru-extra-{i}" for i in range(63)])
    assert_node_sequence("lru-1", [])
    with pytest.raises(AssertionError):
        assert_node_sequence("lru-2", [])


# -- _RecorderState -----------------------------------------------------------------------------


async def test_recorder_records_all_and_buckets_by_trace() -> None:
    recorder = _RecorderState()
    recorder.begin(["r-1"])
    assert get_recorded_events("r-1") == ()
    first = make_event("node_start", "a", "r-1")
    traceless = make_event("node_cancelled", "a", None)
    new_trace = make_event("node_start", "b", "r-2")
    mw = recorder.middleware
    for event in (first, traceless, new_trace):
        await mw(event)
    assert recorder.events == [first, traceless, new_trace]
    assert get_recorded_events("r-1") == (first,)
    assert get_recorded_events("r-2") == (new_trace,)


async def test_recorder_node_sequence_is_not_collapsed_and_falls_back() -> None:
    recorder = _RecorderState()
    recorder.begin(["ns-1"])
    for name in ("a", "a", "b"):
        await recorder.record(make_event("node_start", name, "ns-1"))
    await recorder.record(make_event("node_success", "b", "ns-1"))
    assert recorder.node_sequence("ns-1") == ["a", "a", "b"]
    fresh = _RecorderState()
    assert fresh.node_sequence("ns-1") == ["a", "a", "b"]  # from the global history
    assert fresh.node_sequence("ns-unknown") == []


async def test_recorder_begin_starts_a_new_log() -> None:
    recorder = _RecorderState()
    recorder.begin(["b-1"])
    await recorder.record(make_event("node_start", "a", "b-1"))
    recorder.begin()
    assert recorder.events == []
    assert recorder.node_sequence("b-1") == ["a"]  # local bucket gone; global kept


def test_recorder_middleware_is_the_recorder_callable() -> None:
    recorder = _RecorderState()
    assert recorder.middleware == recorder.middleware
    assert inspect.iscoroutinefunction(recorder.middleware)


# -- simulate_error -----------------------------------------------------------------------------


async def test_simulate_error_fails_then_returns_message() -> None:
    fn = simulate_error("fetcher", FlowErrorCode.NODE_TIMEOUT, fail_times=2)
    assert inspect.iscoroutinefunction(fn)
    msg = make_msg()
    for attempt in (1, 2):
        with pytest.raises(RuntimeError) as excinfo:
            await fn(msg, None)
        assert str(excinfo.value) == (
            f"[NODE_TIMEOUT] simulated failure in fetcher (attempt {attempt})"
        )
        assert fn.simulation.attempts == attempt
        assert fn.simulation.failures == attempt
    assert await fn(msg, None) is msg
    assert fn.simulation.attempts == 3
    assert fn.simulation.failures == 2


async def test_simulate_error_string_code_and_exception_type() -> None:
    fn = simulate_error("n", "CUSTOM", exception_type=KeyError)
    with pytest.raises(KeyError) as excinfo:
        await fn("m", None)
    assert excinfo.value.args == ("[CUSTOM] simulated failure in n (attempt 1)",)


async def test_simulate_error_result_and_factories() -> None:
    with_result = simulate_error("n", "C", result="fixed")
    with pytest.raises(RuntimeError):
        await with_result("m", None)
    assert await with_result("m", None) == "fixed"

    sync_factory = simulate_error("n", "C", result_factory=lambda m: f"made:{m}")
    with pytest.raises(RuntimeError):
        await sync_factory("m", None)
    assert await sync_factory("m", None) == "made:m"

    async def build(message: Any) -> str:
        return f"async:{message}"

    async_factory = simulate_error("n", "C", result_factory=build)
    with pytest.raises(RuntimeError):
        await async_factory("m", None)
    assert await async_factory("m", None) == "async:m"


def test_simulate_error_argument_checks() -> None:
    with pytest.raises(ValueError) as excinfo:
        simulate_error("n", "C", fail_times=0)
    assert str(excinfo.value) == "fail_times must be >= 1"
    with pytest.raises(ValueError) as excinfo:
        simulate_error("n", "C", result=1, result_factory=lambda m: m)
    assert str(excinfo.value) == "Specify only one of result or result_factory"


def test_simulation_counters_are_read_only() -> None:
    fn = simulate_error("n", "C")
    with pytest.raises(AttributeError):
        fn.simulation.attempts = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        fn.simulation.failures = 5  # type: ignore[misc]


def test_simulate_error_is_accepted_by_node() -> None:
    node = Node(simulate_error("n", "C"), name="n")
    assert node.name == "n"


# -- assert_preserves_message_envelope ----------------------------------------------------------


async def test_envelope_preserved_returns_result_for_node_and_callable() -> None:
    node = make_node(upper, "upper")
    msg = make_msg("a")
    result = await assert_preserves_message_envelope(node, message=msg)
    assert result.payload == "A"
    assert (await assert_preserves_message_envelope(upper)).payload == "{}"


async def test_envelope_defaults_message_and_stub_context() -> None:
    seen: list[Any] = []

    async def spy(msg: Message, ctx: Any) -> Message:
        seen.append((msg, ctx))
        return msg

    await assert_preserves_message_envelope(spy)
    ((msg, ctx),) = seen
    assert msg.payload == {}
    assert msg.headers == Headers(tenant="test")
    assert isinstance(ctx, _StubContext)
    custom = object()
    await assert_preserves_message_envelope(spy, ctx=custom)
    assert seen[-1][1] is custom


async def test_envelope_rejects_sync_functions() -> None:
    def sync(msg: Any, ctx: Any) -> Any:
        return msg

    with pytest.raises(TypeError) as excinfo:
        await assert_preserves_message_envelope(sync)
    assert str(excinfo.value) == "assert_preserves_message_envelope expects an async node"


async def test_envelope_non_message_result() -> None:
    async def to_dict(msg: Message, ctx: Any) -> dict[str, Any]:
        return {}

    with pytest.raises(AssertionError) as excinfo:
        await assert_preserves_message_envelope(make_node(to_dict, "shaper"))
    assert str(excinfo.value) == "Node 'shaper' must return a Message but produced dict"
    with pytest.raises(AssertionError, match="Node 'to_dict' must return a Message"):
        await assert_preserves_message_envelope(to_dict)


@pytest.mark.parametrize(
    ("update", "fields"),
    [
        ({"headers": Headers(tenant="other")}, "headers"),
        ({"trace_id": "new-trace"}, "trace_id"),
        ({"headers": Headers(tenant="other"), "trace_id": "new"}, "headers, trace_id"),
    ],
)
async def test_envelope_altered_fields(update: dict[str, Any], fields: str) -> None:
    async def alter(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update=update)

    with pytest.raises(AssertionError) as excinfo:
        await assert_preserves_message_envelope(alter)
    assert str(excinfo.value) == f"Node 'alter' altered Message {fields}; preserve the envelope"


async def test_envelope_detects_in_place_header_mutation() -> None:
    async def mutate(msg: Message, ctx: Any) -> Message:
        msg.headers.topic = "changed"
        return msg

    with pytest.raises(AssertionError, match="altered Message headers"):
        await assert_preserves_message_envelope(mutate)


async def test_envelope_meta_and_payload_changes_are_allowed() -> None:
    async def enrich(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": 1, "meta": {"k": "v"}})

    result = await assert_preserves_message_envelope(enrich)
    assert result.meta == {"k": "v"}


# -- _StubContext -------------------------------------------------------------------------------


async def test_stub_context() -> None:
    stub = _StubContext()
    assert await stub.emit("x", to="anything") is None
    assert stub.emit_nowait("x", 1, 2, k=3) is None
    with pytest.raises(RuntimeError) as excinfo:
        await stub.emit_chunk(parent=make_msg(), text="t")
    assert str(excinfo.value) == STUB_TEXT
