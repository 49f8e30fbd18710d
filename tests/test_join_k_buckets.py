"""``join_k`` keeps a trace's bucket across separate emits, and drops it on cancel, on stop and
when ``max_buckets`` newer buckets push it out.

Every wait is gated by an ``asyncio.Event`` and bounded by ``asyncio.timeout``; the end of a
trace is heard through the flow's trace registry (``on_end``), registered right after the
``emit`` that makes the trace live (``emit`` into a floe with room does not suspend, spec
7.16, so no worker has run yet).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import PenguiFlow, create
from penguiflow.node import Node, NodePolicy
from penguiflow.patterns import DEFAULT_MAX_BUCKETS, JOIN_BUCKET_DROPPED, join_k
from penguiflow.types import Headers, Message

if TYPE_CHECKING:
    from penguiflow.metrics import FlowEvent

TIMEOUT = 5.0


def make_msg(payload: Any, trace_id: str) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


def make_node(name: str, fn: Any) -> Node:
    return Node(fn, name=name, policy=NodePolicy(validate="none"))


async def emit_and_wait_trace_end(flow: PenguiFlow, msg: Message) -> None:
    """Emit ``msg`` and wait until its trace has nothing pending any more."""
    await flow.emit(msg)
    ended = asyncio.Event()
    assert flow._traces.on_end(msg.trace_id, ended.set)
    async with asyncio.timeout(TIMEOUT):
        await ended.wait()


def drop_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int, str]]:
    return [
        (r.node_name, r.trace_id, r.dropped, r.reason)
        for r in caplog.records
        if getattr(r, "event", None) == JOIN_BUCKET_DROPPED
    ]


async def test_separate_emits_of_one_trace_are_joined() -> None:
    """The first item reaches the join and its trace ends (nothing pending); the second is
    emitted only then. The bucket must still hold the first item: the two are joined, and the
    watcher that kept the bucket is cancelled with it."""
    join = join_k("join", 2)
    flow = create(join.to())
    flow.run()
    try:
        await emit_and_wait_trace_end(flow, make_msg("first", "T"))
        watchers = list(flow._owner.external.get("T", ()))
        await flow.emit(make_msg("second", "T"))
        async with asyncio.timeout(TIMEOUT):
            merged = await flow.fetch()
        assert merged.trace_id == "T"
        assert merged.payload == ["first", "second"]
        (watcher,) = watchers
        async with asyncio.timeout(TIMEOUT):
            await asyncio.wait([watcher])
        assert watcher.cancelled()
        assert "T" not in flow._owner.external
    finally:
        await flow.stop()


async def test_cancel_drops_a_bucket_kept_after_its_trace_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 1 waits in the bucket after its trace ended. Item 2 of the same trace is held at
    a gate before the join, so the trace is live again; cancelling it cancels the bucket's
    watcher, whose end drops the bucket. Items 3 and 4 then join each other, not item 1."""
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(msg: Message, ctx: Any) -> Message:
        if msg.payload == "blocked":
            entered.set()
            await release.wait()
        return msg

    hold_node, join = make_node("hold", hold), join_k("join", 2)
    flow = create(hold_node.to(join), join.to())
    flow.run()
    try:
        await emit_and_wait_trace_end(flow, make_msg("1", "T"))
        (watcher,) = flow._owner.external["T"]
        await flow.emit(make_msg("blocked", "T"))
        async with asyncio.timeout(TIMEOUT):
            await entered.wait()
        assert await flow.cancel("T")
        async with asyncio.timeout(TIMEOUT):
            await asyncio.wait([watcher])
        assert drop_logs(caplog) == [("join", "T", 1, "cancelled_or_stopped")]
        await flow.emit(make_msg("3", "T"))
        await flow.emit(make_msg("4", "T"))
        async with asyncio.timeout(TIMEOUT):
            merged = await flow.fetch()
        assert merged.payload == ["3", "4"]
    finally:
        await flow.stop()


async def test_cancel_drops_a_bucket_while_its_trace_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``fast`` reaches the join while ``slow`` blocks: cancelling the live trace drops the
    bucket as the trace ends."""
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    entered, release, joined = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow(msg: Message, ctx: Any) -> Message:
        entered.set()
        await release.wait()
        return msg

    async def watch(event: FlowEvent) -> None:
        if event.event_type == "node_success" and event.node_name == "join":
            joined.set()

    flow = _fast_and_slow_into_a_join(slow, watch)
    flow.run()
    try:
        await flow.emit(make_msg("x", "T"))
        ended = asyncio.Event()
        assert flow._traces.on_end("T", ended.set)
        async with asyncio.timeout(TIMEOUT):
            await entered.wait()
            await joined.wait()
        assert await flow.cancel("T")
        async with asyncio.timeout(TIMEOUT):
            await ended.wait()
        assert drop_logs(caplog) == [("join", "T", 1, "cancelled_or_stopped")]
        assert "T" not in flow._owner.external
    finally:
        await flow.stop()


async def _echo(msg: Any, ctx: Any) -> Any:
    return msg


async def test_stop_drops_a_bucket_kept_after_its_trace_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bucket waiting for a later emit does not survive ``stop()``: after a new ``run()``,
    two fresh items of the trace join each other."""
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    join = join_k("join", 2)
    flow = create(join.to())
    flow.run()
    try:
        await emit_and_wait_trace_end(flow, make_msg("1", "T"))
        await flow.stop()
        assert drop_logs(caplog) == [("join", "T", 1, "cancelled_or_stopped")]
        flow.run()
        await flow.emit(make_msg("2", "T"))
        await flow.emit(make_msg("3", "T"))
        async with asyncio.timeout(TIMEOUT):
            merged = await flow.fetch()
        assert merged.payload == ["2", "3"]
    finally:
        await flow.stop()


async def test_stop_with_the_trace_in_flight_drops_the_bucket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``fast`` reaches the join while ``slow`` blocks; ``stop()`` cancels ``slow``, which
    ends the trace while the flow stops: the bucket is dropped, and no watcher is started
    (the leak check would see it outlive the flow)."""
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    entered, joined = asyncio.Event(), asyncio.Event()

    async def slow(msg: Message, ctx: Any) -> Message:
        entered.set()
        await asyncio.Event().wait()
        return msg

    async def watch(event: FlowEvent) -> None:
        if event.event_type == "node_success" and event.node_name == "join":
            joined.set()

    flow = _fast_and_slow_into_a_join(slow, watch)
    flow.run()
    try:
        await flow.emit(make_msg("x", "T"))
        async with asyncio.timeout(TIMEOUT):
            await entered.wait()
            await joined.wait()
    finally:
        await flow.stop()
    assert drop_logs(caplog) == [("join", "T", 1, "cancelled_or_stopped")]
    assert flow._residue()["external"] == 0


async def test_the_oldest_bucket_is_pushed_out_beyond_max_buckets() -> None:
    """Three one-item traces with room for two buckets: the third pushes out the first, with
    a WARNING ``join_bucket_dropped`` event naming the node, the trace and the item count.
    The kept buckets still join."""
    events: list[FlowEvent] = []

    async def record(event: FlowEvent) -> None:
        if event.event_type == JOIN_BUCKET_DROPPED:
            events.append(event)

    join = join_k("join", 2, max_buckets=2)
    flow = create(join.to(), middlewares=[record])
    flow.run()
    try:
        for trace_id in ("T1", "T2", "T3"):
            await emit_and_wait_trace_end(flow, make_msg(f"{trace_id}-a", trace_id))
        (event,) = events
        assert (event.node_name, event.trace_id) == ("join", "T1")
        assert dict(event.extra) == {"dropped": 1, "reason": "max_buckets", "max_buckets": 2}
        (watcher,) = flow._owner.external["T1"]
        async with asyncio.timeout(TIMEOUT):
            await asyncio.wait([watcher])  # cancelled with its bucket
        assert watcher.cancelled()
        assert "T1" not in flow._owner.external
        await flow.emit(make_msg("T3-b", "T3"))
        async with asyncio.timeout(TIMEOUT):
            merged = await flow.fetch()
        assert merged.payload == ["T3-a", "T3-b"]
    finally:
        await flow.stop()


async def test_push_out_outside_a_flow_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="penguiflow.core")
    join = join_k("join", 3, max_buckets=1)
    assert await join.func(make_msg("a", "T1"), None) is None
    assert await join.func(make_msg("b", "T1"), None) is None
    assert await join.func(make_msg("c", "T2"), None) is None
    (record,) = [r for r in caplog.records if r.getMessage() == JOIN_BUCKET_DROPPED]
    assert record.levelno == logging.WARNING
    assert (record.node_name, record.trace_id, record.dropped) == ("join", "T1", 2)
    assert await join.func(make_msg("d", "T2"), None) is None
    merged = await join.func(make_msg("e", "T2"), None)
    assert merged.payload == ["c", "d", "e"]


def test_max_buckets_default_and_validation() -> None:
    assert DEFAULT_MAX_BUCKETS == 10_000
    with pytest.raises(ValueError, match="join_k 'j': max_buckets must be positive; got 0"):
        join_k("j", 2, max_buckets=0)


async def test_a_joined_trace_leaves_no_reference_cycle() -> None:
    """The end-of-trace callback of a bucket and the trace's record refer to each other
    until the trace ends; after it, both must go by reference counting alone, or every
    joined trace would leave garbage for the cyclic collector (a throughput cost)."""
    from penguiflow.patterns import _TraceEnd

    join = join_k("join", 2)
    source = make_node("source", _echo)
    left, right = make_node("left", _echo), make_node("right", _echo)
    flow = create(source.to(left, right), left.to(join), right.to(join), join.to())
    gc.collect()
    gc.disable()
    try:
        flow.run()
        try:
            for index in range(20):
                await flow.emit(make_msg(index, f"T{index}"))
                async with asyncio.timeout(TIMEOUT):
                    assert (await flow.fetch()).payload == [index, index]
        finally:
            await flow.stop()
        assert [o for o in gc.get_objects() if type(o) is _TraceEnd] == []
    finally:
        gc.enable()


def _fast_and_slow_into_a_join(slow: Any, watch: Any) -> Any:
    """source -> (fast, slow) -> join_k("join", 2) -> Rookery, observed by ``watch``."""
    source = make_node("source", _echo)
    fast_node, slow_node, join = (
        make_node("fast", _echo),
        make_node("slow", slow),
        join_k("join", 2),
    )
    return create(
        source.to(fast_node, slow_node),
        fast_node.to(join),
        slow_node.to(join),
        join.to(),
        middlewares=[watch],
    )
