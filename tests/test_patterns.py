from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from penguiflow.core import ROOKERY, create
from penguiflow.errors import FlowError
from penguiflow.node import Node, NodePolicy
from penguiflow.patterns import (
    _normalize_targets,
    join_k,
    map_concurrent,
    predicate_router,
    union_router,
)
from penguiflow.policies import DictRoutingPolicy, RoutingDecisionType, RoutingRequest
from penguiflow.types import Headers, Message

TIMEOUT = 5.0


def make_msg(payload: Any = "p", **fields: Any) -> Message:
    fields.setdefault("headers", Headers(tenant="t"))
    return Message(payload=payload, **fields)


async def _echo(msg: Any, ctx: Any) -> Any:
    return msg


def make_node(name: str, fn: Any = _echo) -> Node:
    return Node(fn, name=name, policy=NodePolicy(validate="none"))


class FakeContext:
    """Stands in for a router's Context: successors in ``_outgoing``, emits recorded."""

    def __init__(self, *successors: Any) -> None:
        self._outgoing: dict[Any, object] = {node: object() for node in successors}
        self.emitted: list[tuple[Any, Any]] = []

    async def emit(self, msg: Any, to: Any = None) -> None:
        self.emitted.append((msg, to))


# -- map_concurrent -----------------------------------------------------------------------------


async def test_map_concurrent_keeps_input_order() -> None:
    """Later items finish first: item i waits for item i+1 to have finished."""
    done = {i: asyncio.Event() for i in range(5)}

    async def worker(i: int) -> int:
        if i < 4:
            await done[i + 1].wait()
        done[i].set()
        return i * 10

    assert await map_concurrent(iter(range(5)), worker, max_concurrency=5) == [0, 10, 20, 30, 40]


async def test_map_concurrent_empty() -> None:
    async def worker(i: int) -> int:
        raise AssertionError("never called")

    assert await map_concurrent([], worker) == []


@pytest.mark.parametrize(("limit", "expected"), [(3, 3), (1, 1), (0, 1), (-5, 1), (8, 6)])
async def test_map_concurrent_bounds_in_flight_workers(limit: int, expected: int) -> None:
    """Workers block on a gate until the test has observed the peak concurrency."""
    active = 0
    peak = 0
    reached = asyncio.Event()
    gate = asyncio.Event()

    async def worker(i: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if peak == expected:
            reached.set()
        await gate.wait()
        active -= 1
        return i

    task = asyncio.create_task(map_concurrent(range(6), worker, max_concurrency=limit))
    await asyncio.wait_for(reached.wait(), TIMEOUT)
    gate.set()
    assert await asyncio.wait_for(task, TIMEOUT) == list(range(6))
    assert peak == expected


async def test_map_concurrent_default_limit_is_eight() -> None:
    active = 0
    peak = 0
    reached = asyncio.Event()
    gate = asyncio.Event()

    async def worker(i: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if peak == 8:
            reached.set()
        await gate.wait()
        active -= 1
        return i

    task = asyncio.create_task(map_concurrent(range(20), worker))
    await asyncio.wait_for(reached.wait(), TIMEOUT)
    gate.set()
    assert await asyncio.wait_for(task, TIMEOUT) == list(range(20))
    assert peak == 8


async def test_map_concurrent_first_exception_propagates_and_cancels_rest() -> None:
    """Item 0 blocks forever; item 1 fails once item 0 is running."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    class Boom(Exception):
        pass

    async def worker(i: int) -> int:
        if i == 0:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        await started.wait()
        raise Boom(i)

    with pytest.raises(Boom) as excinfo:
        await asyncio.wait_for(map_concurrent([0, 1], worker, max_concurrency=2), TIMEOUT)
    assert excinfo.value.args == (1,)
    assert cancelled.is_set()


async def test_map_concurrent_cancelled_caller_cancels_workers() -> None:
    running = asyncio.Event()
    cancelled = asyncio.Event()

    async def worker(i: int) -> int:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return i

    task = asyncio.create_task(map_concurrent([1], worker))
    await asyncio.wait_for(running.wait(), TIMEOUT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


# -- _normalize_targets -------------------------------------------------------------------------


def test_normalize_targets_nodes_names_and_iterables() -> None:
    a, b = make_node("a"), make_node("b")
    outsider = make_node("outsider")
    ctx = FakeContext(a, b, ROOKERY)
    assert _normalize_targets(ctx, a) == [a]  # type: ignore[arg-type]
    assert _normalize_targets(ctx, "b") == [b]  # type: ignore[arg-type]
    assert _normalize_targets(ctx, ["b", a]) == [b, a]  # type: ignore[arg-type]
    assert _normalize_targets(ctx, ("a", "a")) == [a, a]  # type: ignore[arg-type]
    assert _normalize_targets(ctx, []) == []  # type: ignore[arg-type]
    # Nodes are kept as they are, successors or not.
    assert _normalize_targets(ctx, outsider) == [outsider]  # type: ignore[arg-type]


def test_normalize_targets_unknown_name() -> None:
    ctx = FakeContext(make_node("a"), ROOKERY)
    with pytest.raises(KeyError) as excinfo:
        _normalize_targets(ctx, "zzz")  # type: ignore[arg-type]
    assert excinfo.value.args == ("No successor named 'zzz'",)
    # Endpoints are not matched by name.
    with pytest.raises(KeyError, match="No successor named 'Rookery'"):
        _normalize_targets(ctx, ["a", "Rookery"])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [42, [make_node("a"), 3], [None], [b"a"]])
def test_normalize_targets_bad_types(bad: Any) -> None:
    ctx = FakeContext(make_node("a"))
    with pytest.raises(TypeError) as excinfo:
        _normalize_targets(ctx, bad)  # type: ignore[arg-type]
    assert str(excinfo.value) == "Targets must be Node or str"


# -- predicate_router ---------------------------------------------------------------------------


def test_routers_and_join_disable_validation() -> None:
    for node in (
        predicate_router("p", lambda m: None),
        union_router("u", int),
        join_k("j", 2),
    ):
        assert node.policy.validate == "none"
    assert predicate_router("p", lambda m: None).name == "p"


async def test_predicate_router_emits_message_to_selection() -> None:
    a, b = make_node("a"), make_node("b")
    router = predicate_router("r", lambda m: m.payload)
    msg_one = make_msg("a")
    msg_both = make_msg(["a", b])
    ctx = FakeContext(a, b)
    assert await router.func(msg_one, ctx) is None
    assert await router.func(msg_both, ctx) is None
    assert ctx.emitted == [(msg_one, [a]), (msg_both, [a, b])]
    assert ctx.emitted[0][0] is msg_one


@pytest.mark.parametrize("selection", [None, [], ()])
async def test_predicate_router_drops_on_none_or_empty(selection: Any) -> None:
    ctx = FakeContext(make_node("a"))
    router = predicate_router("r", lambda m: selection)
    assert await router.func(make_msg(), ctx) is None
    assert ctx.emitted == []


async def test_predicate_router_policy_sees_request_and_overrides() -> None:
    a, b = make_node("a"), make_node("b")
    requests: list[RoutingRequest] = []

    def policy(request: RoutingRequest) -> RoutingDecisionType:
        requests.append(request)
        return "b"

    router = predicate_router("r", lambda m: ["a"], policy=policy)
    ctx = FakeContext(a, b)
    msg = make_msg()
    await router.func(msg, ctx)
    assert ctx.emitted == [(msg, [b])]
    (request,) = requests
    assert request.message is msg
    assert request.context is ctx
    assert request.node is router
    assert request.proposed == (a,)
    assert request.trace_id == msg.trace_id


async def test_predicate_router_policy_trace_id_none_for_plain_payloads() -> None:
    seen: list[str | None] = []

    async def policy(request: RoutingRequest) -> RoutingDecisionType:
        seen.append(request.trace_id)
        return request.proposed

    a = make_node("a")
    ctx = FakeContext(a)
    router = predicate_router("r", lambda m: "a", policy=policy)
    await router.func("plain", ctx)
    assert seen == [None]
    assert ctx.emitted == [("plain", [a])]


@pytest.mark.parametrize("decision", [None, [], ()])
async def test_predicate_router_policy_can_drop(decision: Any) -> None:
    ctx = FakeContext(make_node("a"))
    router = predicate_router("r", lambda m: "a", policy=lambda request: decision)
    await router.func(make_msg(), ctx)
    assert ctx.emitted == []


async def test_predicate_router_policy_not_consulted_when_predicate_drops() -> None:
    calls: list[RoutingRequest] = []
    router = predicate_router(
        "r", lambda m: None, policy=lambda request: calls.append(request) or "a"
    )
    await router.func(make_msg(), FakeContext(make_node("a")))
    assert calls == []


async def test_predicate_router_in_live_flow_with_dict_policy() -> None:
    """A sentinel routed to ``left`` proves the dropped message produced nothing before it."""

    async def tag_left(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": f"left:{msg.payload}"})

    async def tag_right(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": f"right:{msg.payload}"})

    left, right = make_node("left", tag_left), make_node("right", tag_right)
    to_right, dropped, sentinel = make_msg("1"), make_msg("2"), make_msg("3")
    policy = DictRoutingPolicy(
        {to_right.trace_id: "right", dropped.trace_id: None}, default=["left"]
    )
    router = predicate_router("router", lambda m: ["left", "right"], policy=policy)
    flow = create(router.to(left, right), left.to(), right.to())
    flow.run()
    try:
        await flow.emit(to_right)
        assert (await asyncio.wait_for(flow.fetch(), TIMEOUT)).payload == "right:1"
        await flow.emit(dropped)
        await flow.emit(sentinel)
        assert (await asyncio.wait_for(flow.fetch(), TIMEOUT)).payload == "left:3"
    finally:
        await flow.stop()


async def test_predicate_router_unknown_name_is_a_node_error() -> None:
    router = predicate_router("router", lambda m: "ghost")
    sink = make_node("sink")
    flow = create(router.to(sink), sink.to(), emit_errors_to_rookery=True)
    flow.run()
    try:
        await flow.emit(make_msg())
        error = await asyncio.wait_for(flow.fetch(), TIMEOUT)
        assert isinstance(error, FlowError)
        assert error.node_name == "router"
        assert isinstance(error.unwrap(), KeyError)
        assert "No successor named 'ghost'" in error.message
    finally:
        await flow.stop()


# -- union_router -------------------------------------------------------------------------------


class Search(BaseModel):
    kind: Literal["search"] = "search"
    query: str


class Lookup(BaseModel):
    kind: Literal["lookup"] = "lookup"
    key: int


class Untagged(BaseModel):
    value: float


Tagged = Annotated[Search | Lookup, Field(discriminator="kind")]


async def test_union_router_routes_validated_object_by_kind() -> None:
    search, lookup = make_node("search"), make_node("lookup")
    ctx = FakeContext(search, lookup)
    router = union_router("u", Tagged)
    await router.func({"kind": "lookup", "key": "7"}, ctx)
    ((emitted, to),) = ctx.emitted
    assert emitted == Lookup(key=7)
    assert isinstance(emitted, Lookup)
    assert to == [lookup]


async def test_union_router_falls_back_to_class_name() -> None:
    target = make_node("Untagged")
    ctx = FakeContext(target)
    router = union_router("u", Untagged | Search)
    await router.func({"value": 1.5}, ctx)
    assert ctx.emitted == [(Untagged(value=1.5), [target])]


async def test_union_router_invalid_and_unknown() -> None:
    ctx = FakeContext(make_node("search"))
    router = union_router("u", Tagged)
    with pytest.raises(ValidationError):
        await router.func({"kind": "nope"}, ctx)
    with pytest.raises(KeyError, match="No successor named 'lookup'"):
        await router.func(Lookup(key=1), ctx)
    assert ctx.emitted == []


async def test_union_router_policy_gets_validated_message() -> None:
    search, lookup = make_node("search"), make_node("lookup")
    ctx = FakeContext(search, lookup)
    seen: list[RoutingRequest] = []

    def policy(request: RoutingRequest) -> RoutingDecisionType:
        seen.append(request)
        return [lookup, "search"]

    router = union_router("u", Tagged, policy=policy)
    await router.func({"kind": "search", "query": "q"}, ctx)
    (request,) = seen
    assert request.message == Search(query="q")
    assert request.proposed == (search,)
    assert request.node is router
    assert ctx.emitted == [(Search(query="q"), [lookup, search])]
    dropping = union_router("u2", Tagged, policy=lambda request: None)
    await dropping.func({"kind": "search", "query": "q"}, ctx)
    assert len(ctx.emitted) == 1


async def test_union_router_in_live_flow() -> None:
    async def handle_search(msg: Search, ctx: Any) -> str:
        return f"searched:{msg.query}"

    async def handle_lookup(msg: Lookup, ctx: Any) -> str:
        return f"looked:{msg.key}"

    search, lookup = make_node("search", handle_search), make_node("lookup", handle_lookup)
    router = union_router("router", Tagged)
    flow = create(router.to(search, lookup), search.to(), lookup.to())
    flow.run()
    try:
        await flow.emit({"kind": "lookup", "key": 3})
        assert await asyncio.wait_for(flow.fetch(), TIMEOUT) == "looked:3"
        await flow.emit(Search(query="x"))
        assert await asyncio.wait_for(flow.fetch(), TIMEOUT) == "searched:x"
    finally:
        await flow.stop()


# -- join_k -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1])
def test_join_k_rejects_non_positive(k: int) -> None:
    with pytest.raises(ValueError) as excinfo:
        join_k("j", k)
    assert str(excinfo.value) == "k must be positive"


async def test_join_k_merges_messages_per_trace() -> None:
    join = join_k("join", 3)
    first = make_msg("a", trace_id="T", meta={"m": 1}, headers=Headers(tenant="x", topic="y"))
    other_trace = make_msg("z", trace_id="U")
    second = make_msg("b", trace_id="T")
    assert await join.func(first, None) is None
    assert await join.func(other_trace, None) is None
    assert await join.func(second, None) is None
    merged = await join.func(make_msg("c", trace_id="T"), None)
    assert isinstance(merged, Message)
    assert merged.payload == ["a", "b", "c"]
    assert merged.trace_id == "T"
    assert merged.headers == Headers(tenant="x", topic="y")
    assert merged.meta == {"m": 1}
    assert merged is not first
    assert first.payload == "a"
    # The bucket was cleared: the trace starts over.
    assert await join.func(make_msg("d", trace_id="T"), None) is None


async def test_join_k_non_messages_give_the_list() -> None:
    class Item:
        def __init__(self, trace_id: str) -> None:
            self.trace_id = trace_id

    join = join_k("join", 2)
    one, two = Item("T"), Item("T")
    assert await join.func(one, None) is None
    assert await join.func(two, None) == [one, two]


async def test_join_k_of_one_passes_through() -> None:
    join = join_k("join", 1)
    merged = await join.func(make_msg("solo"), None)
    assert merged.payload == ["solo"]


async def test_join_k_requires_trace_id() -> None:
    join = join_k("join", 2)
    with pytest.raises(ValueError) as excinfo:
        await join.func("no trace", None)
    assert str(excinfo.value) == "join_k requires messages with trace_id"


async def test_join_k_buckets_are_per_node_instance() -> None:
    first_join, second_join = join_k("j1", 2), join_k("j2", 2)
    assert await first_join.func(make_msg("a", trace_id="T"), None) is None
    assert await second_join.func(make_msg("b", trace_id="T"), None) is None
    merged = await first_join.func(make_msg("c", trace_id="T"), None)
    assert merged.payload == ["a", "c"]


async def test_join_k_in_live_fan_in_flow() -> None:
    async def left(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": "L"})

    async def right(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": "R"})

    left_node, right_node = make_node("left", left), make_node("right", right)
    join = join_k("join", 2)
    source = make_node("source")
    flow = create(
        source.to(left_node, right_node), left_node.to(join), right_node.to(join), join.to()
    )
    flow.run()
    try:
        msg = make_msg("q")
        await flow.emit(msg)
        merged = await asyncio.wait_for(flow.fetch(), TIMEOUT)
        assert merged.trace_id == msg.trace_id
        assert sorted(merged.payload) == ["L", "R"]
    finally:
        await flow.stop()


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(), st.integers(min_value=0, max_value=5))),
    limit=st.integers(min_value=-2, max_value=10),
)
async def test_map_concurrent_invariants(items: list[tuple[int, int]], limit: int) -> None:
    """Random yield counts scramble completion order; order and the bound must hold."""
    active = 0
    peak = 0

    async def worker(item: tuple[int, int]) -> int:
        nonlocal active, peak
        value, yields = item
        active += 1
        peak = max(peak, active)
        for _ in range(yields):
            await asyncio.sleep(0)
        active -= 1
        return value * 2

    result = await map_concurrent(items, worker, max_concurrency=limit)
    assert result == [value * 2 for value, _ in items]
    assert peak <= max(1, limit)
    assert active == 0


async def test_join_k_drops_a_bucket_when_its_trace_ends() -> None:
    """A join whose trace is cancelled half-way must not leak its bucket into a later run.

    Run 1: ``fast`` reaches the join, ``slow`` blocks; the trace is cancelled, so the join's
    bucket holds one stale item when the trace ends. Run 2 reuses the trace id with ``slow``
    open: the join must merge only run 2's two items.
    """
    slow_entered = asyncio.Event()
    release = asyncio.Event()
    joined_once = asyncio.Event()
    trace_ended = asyncio.Event()

    async def fast(msg: Any, ctx: Any) -> Any:
        return msg.model_copy(update={"payload": f"fast-{msg.payload}"})

    async def slow(msg: Any, ctx: Any) -> Any:
        slow_entered.set()
        await release.wait()
        return msg.model_copy(update={"payload": f"slow-{msg.payload}"})

    async def watch(event: Any) -> None:
        if event.event_type == "node_success" and event.node_name == "join":
            joined_once.set()
        if event.event_type == "trace_cancel_finish":
            trace_ended.set()

    source = make_node("source")
    fast_node, slow_node = make_node("fast", fast), make_node("slow", slow)
    join = join_k("join", 2)
    flow = create(
        source.to(fast_node, slow_node),
        fast_node.to(join),
        slow_node.to(join),
        join.to(),
        middlewares=[watch],
    )
    flow.run()
    try:
        await flow.emit(make_msg("1", trace_id="T"))
        async with asyncio.timeout(TIMEOUT):
            await joined_once.wait()
            await slow_entered.wait()
        assert await flow.cancel("T")
        async with asyncio.timeout(TIMEOUT):
            await trace_ended.wait()
        release.set()
        await flow.emit(make_msg("2", trace_id="T"))
        async with asyncio.timeout(TIMEOUT):
            out = await flow.fetch()
        assert sorted(out.payload) == ["fast-2", "slow-2"]
    finally:
        await flow.stop()
