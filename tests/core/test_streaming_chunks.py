"""Spec section 7.10: ``emit_chunk`` sequence numbers, envelopes and per-trace capacity."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from penguiflow.core import PenguiFlow
from penguiflow.types import Headers, Message, StreamChunk

from .helpers import Gate, echo, fetch, make_msg, node, rookery_empty, running, within


def streamer(plan: list[dict[str, Any]], returned: list[StreamChunk]) -> Any:
    """A node body that emits one chunk per entry of ``plan`` and then routes nothing."""

    async def body(msg: Message, ctx: Any) -> None:
        for kwargs in plan:
            returned.append(await ctx.emit_chunk(parent=msg, **kwargs))
        return None

    return body


async def run_stream(plan: list[dict[str, Any]], parent: Message) -> list[Message]:
    returned: list[StreamChunk] = []
    flow = PenguiFlow(node(streamer(plan, returned), "s").to())
    async with running(flow):
        await flow.emit(parent)
        outs = [await fetch(flow) for _ in plan]
        assert rookery_empty(flow)
    assert [o.payload for o in outs] == returned
    return outs


async def test_chunks_are_numbered_and_wrapped_in_the_parent_envelope() -> None:
    deadline = time.time() + 3600
    parent = Message(
        payload="p",
        headers=Headers(tenant="acme", topic="x"),
        trace_id="t1",
        deadline_s=deadline,
        meta={"user": "u"},
    )
    outs = await run_stream(
        [{"text": "a"}, {"text": "b", "meta": {"k": 1}}, {"text": "c", "done": True}], parent
    )
    chunks = [o.payload for o in outs]
    assert chunks == [
        StreamChunk(stream_id="t1", seq=0, text="a", done=False, meta={}),
        StreamChunk(stream_id="t1", seq=1, text="b", done=False, meta={"k": 1}),
        StreamChunk(stream_id="t1", seq=2, text="c", done=True, meta={}),
    ]
    for out in outs:
        assert isinstance(out, Message)
        assert out.trace_id == "t1"
        assert out.headers == parent.headers
        assert out.deadline_s == deadline
        assert out.meta == {"user": "u"}
        assert out.meta is not parent.meta


async def test_chunk_meta_is_copied() -> None:
    meta = {"k": 1}
    returned: list[StreamChunk] = []
    flow = PenguiFlow(node(streamer([{"text": "a", "meta": meta}], returned), "s").to())
    async with running(flow):
        await flow.emit(make_msg("p", trace_id="t1"))
        await fetch(flow)
    meta["k"] = 2
    assert returned[0].meta == {"k": 1}


async def test_sequence_restarts_after_done() -> None:
    outs = await run_stream(
        [
            {"text": "a"},
            {"text": "b", "done": True},
            {"text": "c"},
            {"text": "d", "done": True},
        ],
        make_msg("p", trace_id="t1"),
    )
    assert [(o.payload.seq, o.payload.done) for o in outs] == [
        (0, False),
        (1, True),
        (0, False),
        (1, True),
    ]


async def test_explicit_seq_is_used_and_continued() -> None:
    outs = await run_stream(
        [{"text": "a", "seq": 10}, {"text": "b"}, {"text": "c", "seq": 3}, {"text": "d"}],
        make_msg("p", trace_id="t1"),
    )
    assert [o.payload.seq for o in outs] == [10, 11, 3, 4]


async def test_counters_are_per_stream_id() -> None:
    outs = await run_stream(
        [
            {"text": "a", "stream_id": "s1"},
            {"text": "b", "stream_id": "s2"},
            {"text": "c", "stream_id": "s1"},
            {"text": "d"},
            {"text": "e", "stream_id": "s2"},
        ],
        make_msg("p", trace_id="t1"),
    )
    assert [(o.payload.stream_id, o.payload.seq) for o in outs] == [
        ("s1", 0),
        ("s2", 0),
        ("s1", 1),
        ("t1", 0),
        ("s2", 1),
    ]
    assert {o.trace_id for o in outs} == {"t1"}


async def test_counters_are_per_context() -> None:
    """Two nodes streaming the same stream id each count from 0."""
    returned: list[StreamChunk] = []
    plan = [{"text": "x"}, {"text": "y"}]
    a = node(streamer(plan, returned), "a")
    b = node(streamer(plan, returned), "b")
    flow = PenguiFlow(a.to(), b.to())
    async with running(flow):
        await flow.emit(make_msg("p", trace_id="t1"))
        outs = [await fetch(flow) for _ in range(4)]
    assert sorted(o.payload.seq for o in outs) == [0, 0, 1, 1]


async def test_chunks_can_target_a_successor() -> None:
    async def produce(msg: Message, ctx: Any) -> None:
        await ctx.emit_chunk(parent=msg, text="only-b", to=b)
        return None

    seen: list[Any] = []

    async def record(msg: Any, ctx: Any) -> Any:
        seen.append(ctx.owner.name)
        return msg

    p, b, c = node(produce, "p"), node(record, "b"), node(record, "c")
    flow = PenguiFlow(p.to(b, c))
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        out = await fetch(flow)
    assert out.payload.text == "only-b"
    assert seen == ["b"]


async def test_flow_emit_chunk_feeds_the_selected_ingress_nodes() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(), b.to())
    parent = make_msg("p", trace_id="t1")
    async with running(flow):
        first = await within(flow.emit_chunk(parent=parent, text="one", to=b))
        second = await within(flow.emit_chunk(parent=parent, text="two", to=b, done=True))
        outs = [await fetch(flow, from_=b) for _ in range(2)]
        assert rookery_empty(flow)
    assert (first.seq, second.seq) == (0, 1)
    assert [o.payload for o in outs] == [first, second]


async def test_producer_second_chunk_waits_for_the_caller_to_fetch_the_first() -> None:
    """``queue_maxsize=1``: chunk 1 blocks until chunk 0 is fetched.

    The producer marks each chunk it finishes sending; once the test sees chunk 0 sent, the
    producer has run into the second ``emit_chunk`` and is blocked there.
    """
    sent = [asyncio.Event(), asyncio.Event()]

    async def produce(msg: Message, ctx: Any) -> None:
        for i in range(2):
            await ctx.emit_chunk(parent=msg, text=str(i))
            sent[i].set()
        return None

    flow = PenguiFlow(node(produce, "p").to(), queue_maxsize=1)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await within(sent[0].wait())
        assert not sent[1].is_set()
        assert flow._trace_events["t1"] is not None  # the producer's input is still pending
        first = await fetch(flow)
        await within(sent[1].wait())
        second = await fetch(flow)
    assert (first.payload.seq, second.payload.seq) == (0, 1)


@pytest.mark.parametrize(("stream_id", "blocks"), [(None, True), ("custom", False)])
async def test_capacity_wait_is_keyed_by_stream_id(stream_id: str | None, blocks: bool) -> None:
    """The capacity wait counts the trace's pending items, not floe space.

    ``q`` holds an item of trace t1, so t1 stays pending while the Rookery floe is empty.
    With the trace id as stream id the producer's second chunk waits (``pending - 1 >= 1``)
    until ``q`` lets go; [quirk] with any other stream id there is no wait.
    """
    q_gate = Gate()
    resume = asyncio.Event()
    about_to_send = asyncio.Event()
    sent_second = asyncio.Event()

    async def produce(msg: Message, ctx: Any) -> None:
        await ctx.emit_chunk(parent=msg, text="0", stream_id=stream_id)
        await resume.wait()
        about_to_send.set()
        await ctx.emit_chunk(parent=msg, text="1", stream_id=stream_id)
        sent_second.set()
        return None

    async def hold(msg: Any, ctx: Any) -> None:
        await q_gate.pass_()
        return None

    p, q = node(produce, "p"), node(hold, "q")
    flow = PenguiFlow(p.to(), q.to(), queue_maxsize=1)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))  # to both ingress nodes
        await q_gate.wait_entered()
        first = await fetch(flow)
        assert first.payload.seq == 0
        resume.set()
        await within(about_to_send.wait())
        assert sent_second.is_set() is not blocks
        q_gate.open()
        await within(sent_second.wait())
        second = await fetch(flow)
    assert second.payload.seq == 1


async def test_unbounded_flow_never_waits_for_capacity() -> None:
    """``queue_maxsize <= 0``: the producer streams everything before anyone fetches."""
    done = asyncio.Event()

    async def produce(msg: Message, ctx: Any) -> None:
        for i in range(10):
            await ctx.emit_chunk(parent=msg, text=str(i), done=i == 9)
        done.set()
        return None

    flow = PenguiFlow(node(produce, "p").to(), queue_maxsize=0)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await within(done.wait())
        outs = [await fetch(flow) for _ in range(10)]
    assert [o.payload.seq for o in outs] == list(range(10))
