"""Property tests: no message vanishes, per-trace order holds, capacity is never exceeded,
and nothing of a flow runs after ``stop()``.

Each example builds a fresh flow; the expected outcome of every message is computed by
walking the same graph in plain Python, then compared with what the flow produced.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.types import Message

from .helpers import (
    Recorder,
    assert_accounted,
    make_msg,
    node,
    rookery_empty,
    running,
    settled,
    within,
)

if TYPE_CHECKING:
    from penguiflow.metrics import FlowEvent
    from penguiflow.node import Node

PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)


@dataclass(frozen=True)
class Plan:
    """A random DAG: ``edges[i]`` are the successors of node i (all with a higher index)."""

    edges: tuple[tuple[int, ...], ...]
    fails: tuple[frozenset[int], ...]
    drops: tuple[frozenset[int], ...]
    payloads: tuple[int, ...]
    maxsize: int


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(min_value=2, max_value=6))
    edges = tuple(tuple(j for j in range(i + 1, n) if draw(st.booleans())) for i in range(n))
    values = st.frozensets(st.integers(min_value=0, max_value=4), max_size=2)
    fails = tuple(draw(values) for _ in range(n))
    drops = tuple(draw(values) for _ in range(n))
    payloads = tuple(draw(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=8)))
    maxsize = draw(st.sampled_from([0, 1, 2, 4]))
    return Plan(edges, fails, drops, payloads, maxsize)


def expected_outcomes(plan: Plan, start: int, payload: int) -> Counter[tuple[str, int]]:
    """("out", i): a Rookery message from egress node i; ("error", i): a FlowError from i;
    ("drop", i): node i returned None; ("visit", i): node i ran (once per arriving copy)."""
    outcome: Counter[tuple[str, int]] = Counter({("visit", start): 1})
    if payload in plan.fails[start]:
        outcome[("error", start)] += 1
    elif payload in plan.drops[start]:
        outcome[("drop", start)] += 1
    elif not plan.edges[start]:
        outcome[("out", start)] += 1
    else:
        for succ in plan.edges[start]:
            outcome += expected_outcomes(plan, succ, payload)
    return outcome


def build(plan: Plan) -> tuple[PenguiFlow, list[Node]]:
    def body_for(i: int) -> Any:
        async def body(msg: Message, ctx: Any) -> Any:
            if msg.payload in plan.fails[i]:
                raise ValueError(f"n{i} fails {msg.payload}")
            if msg.payload in plan.drops[i]:
                return None
            return msg.model_copy(update={"meta": {**msg.meta, "last": i}})

        return body

    nodes = [node(body_for(i), f"n{i}") for i in range(len(plan.edges))]
    adjacencies = [nodes[i].to(*(nodes[j] for j in succ)) for i, succ in enumerate(plan.edges)]
    flow = PenguiFlow(*adjacencies, queue_maxsize=plan.maxsize, emit_errors_to_rookery=True)
    return flow, nodes


def capacity_guard(flow: PenguiFlow, violations: list[str]) -> Any:
    async def check(event: FlowEvent) -> None:
        for f in flow._floes:
            size, limit = f.queue.qsize(), f.queue.maxsize
            if limit > 0 and size > limit:
                violations.append(f"{f.source}->{f.target}: {size} > {limit}")

    return check


def roots(plan: Plan) -> list[int]:
    children = {j for succ in plan.edges for j in succ}
    return [i for i in range(len(plan.edges)) if i not in children]


@PROPERTY_SETTINGS
@given(plan=plans(), lone=st.booleans())
async def test_no_message_vanishes(plan: Plan, lone: bool) -> None:
    """Observed by one middleware (awaited inline by the worker) or by two (through the
    event sink): every message is accounted for, in events and at the Rookery."""
    flow, _ = build(plan)
    rec = Recorder()
    violations: list[str] = []
    guard = capacity_guard(flow, violations)
    if lone:

        async def both(event: FlowEvent) -> None:
            await rec(event)
            await guard(event)

        flow.add_middleware(both)
    else:
        flow.add_middleware(rec)
        flow.add_middleware(guard)

    expected: dict[str, Counter[tuple[str, int]]] = {}
    for k, payload in enumerate(plan.payloads):
        total: Counter[tuple[str, int]] = Counter()
        for r in roots(plan):  # an emit fans out to every ingress node
            total += expected_outcomes(plan, r, payload)
        expected[f"t{k}"] = total
    deliveries = sum(
        count
        for c in expected.values()
        for (kind, _), count in c.items()
        if kind in ("out", "error")
    )
    finished = sum(
        count for c in expected.values() for (kind, _), count in c.items() if kind == "visit"
    )

    async def produce() -> None:
        for k, payload in enumerate(plan.payloads):
            await flow.emit(make_msg(payload, trace_id=f"t{k}"))

    got: dict[str, Counter[tuple[str, int]]] = {t: Counter() for t in expected}
    async with running(flow):
        producer = asyncio.create_task(produce())
        for _ in range(deliveries):
            item = await within(flow.fetch())
            assert_accounted(flow)
            if isinstance(item, FlowError):
                got[item.trace_id][("error", int(item.node_name[1:]))] += 1
            else:
                assert isinstance(item, Message)
                got[item.trace_id][("out", item.meta["last"])] += 1
        await within(producer)

        def all_nodes_done() -> bool:
            done = rec.select("node_success") + rec.select("node_failed")
            return len(done) >= finished

        await rec.wait_until(all_nodes_done)
        assert rookery_empty(flow)
    for ev in rec.select("node_start"):
        got[ev.trace_id][("visit", int(ev.node_name[1:]))] += 1
    for ev in rec.select("node_success"):
        i = int(ev.node_name[1:])
        trace = ev.trace_id
        payload = plan.payloads[int(trace[1:])]
        if payload in plan.drops[i] and payload not in plan.fails[i]:
            got[trace][("drop", i)] += 1
    assert got == expected
    assert violations == []
    assert not flow._tasks
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


@PROPERTY_SETTINGS
@given(plan=plans())
async def test_no_message_vanishes_on_the_ordinary_path(plan: Plan) -> None:
    """The same property with nothing observing events, so every item takes the worker's
    ordinary (inline) path with pending-count handoffs. Every output and FlowError arrives,
    and every trace's count matches what is in transit whenever the test looks, then returns
    to zero: a miscounted handoff breaks ``assert_accounted`` or never ``settled``."""
    flow, _ = build(plan)
    expected: Counter[tuple[str, str, int]] = Counter()
    for k, payload in enumerate(plan.payloads):
        for r in roots(plan):
            for (kind, i), count in expected_outcomes(plan, r, payload).items():
                if kind in ("out", "error"):
                    expected[(f"t{k}", kind, i)] += count

    async def produce() -> None:
        for k, payload in enumerate(plan.payloads):
            await flow.emit(make_msg(payload, trace_id=f"t{k}"))

    got: Counter[tuple[str, str, int]] = Counter()
    async with running(flow):
        producer = asyncio.create_task(produce())
        for _ in range(sum(expected.values())):
            item = await within(flow.fetch())
            assert_accounted(flow)
            if isinstance(item, FlowError):
                got[(item.trace_id, "error", int(item.node_name[1:]))] += 1
            else:
                got[(item.trace_id, "out", item.meta["last"])] += 1
        await within(producer)
        await settled(flow)
        assert rookery_empty(flow)
    assert got == expected


@PROPERTY_SETTINGS
@given(
    length=st.integers(min_value=1, max_value=4),
    maxsize=st.sampled_from([1, 2, 3]),
    schedule=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=24),
)
async def test_per_trace_order_along_a_path(length: int, maxsize: int, schedule: list[int]) -> None:
    """Messages of several traces, interleaved at random, come out of a chain in per-trace
    emission order (and here, since the chain is one path, in global order too)."""

    async def hop(msg: Message, ctx: Any) -> Message:
        return msg

    chain = [node(hop, f"h{i}") for i in range(length)]
    adjacencies = [chain[i].to(chain[i + 1]) for i in range(length - 1)] + [chain[-1].to()]
    flow = PenguiFlow(*adjacencies, queue_maxsize=maxsize)
    sent = [make_msg(seq, trace_id=f"t{trace}") for seq, trace in enumerate(schedule)]

    async def produce() -> None:
        for m in sent:
            await flow.emit(m)

    async with running(flow):
        producer = asyncio.create_task(produce())
        got = [await within(flow.fetch()) for _ in sent]
        await within(producer)
    for trace in set(schedule):
        mine = [m.payload for m in got if m.trace_id == f"t{trace}"]
        assert mine == [m.payload for m in sent if m.trace_id == f"t{trace}"]
    assert [m.payload for m in got] == list(range(len(sent)))


@PROPERTY_SETTINGS
@given(
    count=st.integers(min_value=1, max_value=12),
    fetch_order=st.randoms(use_true_random=False),
)
async def test_concurrent_roundtrips_get_their_own_results(count: int, fetch_order: Any) -> None:
    async def label(msg: Message, ctx: Any) -> str:
        return f"r:{msg.payload}"

    a, b = node(label, "a"), node(label, "b")
    flow = PenguiFlow(a.to(), b.to(), queue_maxsize=2)
    order = list(range(count))
    fetch_order.shuffle(order)
    emitted = asyncio.Event()
    ready = 0

    async def caller(i: int) -> tuple[int, Any]:
        nonlocal ready
        await flow.emit(make_msg(i), to=a if i % 2 else b, trace_id=f"t{i}")
        ready += 1
        if ready == count:
            emitted.set()
        await emitted.wait()
        return i, await flow.fetch(trace_id=f"t{i}")

    async with running(flow):
        results = await within(asyncio.gather(*(caller(i) for i in order)))
    assert sorted(results) == [(i, f"r:{i}") for i in range(count)]
