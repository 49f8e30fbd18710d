from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import Context, Endpoint, create
from penguiflow.node import Node, NodePolicy
from penguiflow.streaming import (
    chunk_to_ws_json,
    emit_stream_events,
    format_sse_event,
    stream_flow,
)
from penguiflow.types import FinalAnswer, Headers, Message, StreamChunk

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def make_msg(payload: Any = "q", **fields: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), **fields)


def make_node(fn: Any, name: str) -> Node:
    return Node(fn, name=name, policy=NodePolicy(validate="none"))


# -- format_sse_event ---------------------------------------------------------------------------


def test_sse_plain_chunk() -> None:
    chunk = StreamChunk(stream_id="s", seq=3, text="hello")
    assert format_sse_event(chunk) == "event: chunk\nid: 3\ndata: hello\n\n"


def test_sse_done_chunk_with_meta_and_retry() -> None:
    chunk = StreamChunk(stream_id="s", seq=0, text="bye", done=True, meta={"lang": "é"})
    assert format_sse_event(chunk, retry_ms=1500) == (
        'event: done\nid: 0\ndata: bye\ndata: {"lang": "é"}\nretry: 1500\n\n'
    )


def test_sse_event_name_overrides_and_zero_retry_is_kept() -> None:
    chunk = StreamChunk(stream_id="s", seq=1, text="x", done=True)
    assert format_sse_event(chunk, event_name="token", retry_ms=0) == (
        "event: token\nid: 1\ndata: x\nretry: 0\n\n"
    )


# -- chunk_to_ws_json ---------------------------------------------------------------------------


def test_ws_json_fields_and_empty_meta() -> None:
    chunk = StreamChunk(stream_id="s", seq=2, text="héllo")
    text = chunk_to_ws_json(chunk)
    assert "héllo" in text
    assert json.loads(text) == {
        "stream_id": "s",
        "seq": 2,
        "text": "héllo",
        "done": False,
        "meta": {},
    }
    assert list(json.loads(text)) == ["stream_id", "seq", "text", "done", "meta"]


def test_ws_json_extra_updates_and_overrides() -> None:
    chunk = StreamChunk(stream_id="s", seq=0, text="t", done=True, meta={"a": 1})
    body = json.loads(chunk_to_ws_json(chunk, extra={"type": "chunk", "seq": 99}))
    assert body == {
        "stream_id": "s",
        "seq": 99,
        "text": "t",
        "done": True,
        "meta": {"a": 1},
        "type": "chunk",
    }


# -- stream_flow --------------------------------------------------------------------------------


def streaming_flow(texts: list[str], *, final: Any = "final") -> Any:
    async def talker(msg: Message, ctx: Any) -> Any:
        for index, text in enumerate(texts):
            await ctx.emit_chunk(parent=msg, text=text, done=index == len(texts) - 1)
        return final if not isinstance(final, str) else msg.model_copy(update={"payload": final})

    return create(make_node(talker, "talker").to())


async def collect(agen: AsyncIterator[Any]) -> list[Any]:
    async with contextlib.aclosing(agen):  # type: ignore[type-var]
        return [item async for item in agen]


async def test_stream_flow_stops_at_done_chunk() -> None:
    flow = streaming_flow(["a", "b", "c"])
    flow.run()
    try:
        msg = make_msg()
        items = await asyncio.wait_for(collect(stream_flow(flow, msg)), 5)
        assert [c.text for c in items] == ["a", "b", "c"]
        assert all(isinstance(c, StreamChunk) for c in items)
        assert [c.seq for c in items] == [0, 1, 2]
        assert items[-1].done
        assert items[0].stream_id == msg.trace_id
        assert flow._running  # never stopped by stream_flow
        # The final answer is still waiting at the Rookery.
        leftover = await asyncio.wait_for(flow.fetch(), 5)
        assert leftover.payload == "final"
    finally:
        await flow.stop()


async def test_stream_flow_include_final_continues_to_first_non_chunk() -> None:
    flow = streaming_flow(["a", "b"], final="answer")
    flow.run()
    try:
        items = await asyncio.wait_for(
            collect(stream_flow(flow, make_msg(), include_final=True)), 5
        )
        assert [getattr(i, "text", i) for i in items] == ["a", "b", "answer"]
        assert items[-1] == "answer"
    finally:
        await flow.stop()


async def test_stream_flow_non_chunk_ends_stream_even_with_include_final() -> None:
    async def answer(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": FinalAnswer(text="done")})

    flow = create(make_node(answer, "answer").to())
    flow.run()
    try:
        for include_final in (False, True):
            items = await asyncio.wait_for(
                collect(stream_flow(flow, make_msg(), include_final=include_final)), 5
            )
            assert items == [FinalAnswer(text="done")]
    finally:
        await flow.stop()


async def test_stream_flow_yields_items_without_payload_as_is() -> None:
    async def bare(msg: Message, ctx: Any) -> str:
        return f"bare:{msg.payload}"

    flow = create(make_node(bare, "bare").to())
    flow.run()
    try:
        assert await asyncio.wait_for(collect(stream_flow(flow, make_msg("x"))), 5) == ["bare:x"]
    finally:
        await flow.stop()


async def test_stream_flow_to_selects_ingress() -> None:
    async def left(msg: Message, ctx: Any) -> str:
        return "left"

    async def right(msg: Message, ctx: Any) -> str:
        return "right"

    left_node, right_node = make_node(left, "left"), make_node(right, "right")
    flow = create(left_node.to(), right_node.to())
    flow.run()
    try:
        items = await asyncio.wait_for(collect(stream_flow(flow, make_msg(), to=right_node)), 5)
        assert items == ["right"]
    finally:
        await flow.stop()


@pytest.mark.looptime
async def test_stream_flow_timeout_applies_per_fetch(looptime: Any) -> None:
    release = asyncio.Event()

    async def slow(msg: Message, ctx: Any) -> str:
        await ctx.emit_chunk(parent=msg, text="first")
        await release.wait()
        return "late"

    flow = create(make_node(slow, "slow").to())
    flow.run()
    try:
        agen = stream_flow(flow, make_msg(), timeout=3.0)
        async with contextlib.aclosing(agen):
            first = await agen.__anext__()
            assert first.text == "first"
            start = float(looptime)
            with pytest.raises(TimeoutError):
                await agen.__anext__()
            assert float(looptime) - start == pytest.approx(3.0)
    finally:
        await flow.stop()


# -- emit_stream_events -------------------------------------------------------------------------


class FakeContext:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def emit_chunk(self, **kwargs: Any) -> StreamChunk:
        self.calls.append(kwargs)
        return StreamChunk(stream_id="s", seq=len(self.calls) - 1, text=kwargs["text"])


async def agen_of(*events: Any) -> AsyncIterator[Any]:
    for event in events:
        yield event


async def test_emit_stream_events_default_adapter_and_final_chunk() -> None:
    ctx = FakeContext()
    parent = make_msg()
    await emit_stream_events(agen_of("a", 2), ctx, parent)  # type: ignore[arg-type]
    assert ctx.calls == [
        {"parent": parent, "text": "a", "done": False, "meta": {}, "to": None},
        {"parent": parent, "text": "2", "done": False, "meta": {}, "to": None},
        {"parent": parent, "text": "", "done": True, "meta": {}, "to": None},
    ]
    assert all(set(call) == {"parent", "text", "done", "meta", "to"} for call in ctx.calls)


async def test_emit_stream_events_custom_adapter_done_suppresses_final() -> None:
    ctx = FakeContext()
    parent = make_msg()
    target = object()

    def adapter(event: dict[str, Any]) -> tuple[str, bool, dict[str, Any]]:
        return event["t"], event.get("end", False), {"i": event["i"]}

    events = [{"t": "x", "i": 0}, {"t": "y", "i": 1, "end": True}]
    await emit_stream_events(
        agen_of(*events),
        ctx,  # type: ignore[arg-type]
        parent,
        adapter=adapter,
        to=target,  # type: ignore[arg-type]
        final_meta={"unused": True},
    )
    assert ctx.calls == [
        {"parent": parent, "text": "x", "done": False, "meta": {"i": 0}, "to": target},
        {"parent": parent, "text": "y", "done": True, "meta": {"i": 1}, "to": target},
    ]


async def test_emit_stream_events_final_meta_and_sync_source() -> None:
    ctx = FakeContext()
    parent = make_msg()
    await emit_stream_events(["only"], ctx, parent, final_meta={"reason": "eof"})  # type: ignore[arg-type]
    assert ctx.calls[-1] == {
        "parent": parent,
        "text": "",
        "done": True,
        "meta": {"reason": "eof"},
        "to": None,
    }
    assert len(ctx.calls) == 2


async def test_emit_stream_events_empty_source_sends_only_final() -> None:
    ctx = FakeContext()
    await emit_stream_events(agen_of(), ctx, make_msg())  # type: ignore[arg-type]
    assert [(c["text"], c["done"]) for c in ctx.calls] == [("", True)]


async def test_emit_stream_events_closes_source_on_error() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            closed.set()

    def adapter(event: str) -> tuple[str, bool, dict[str, Any]]:
        if event == "b":
            raise ValueError("bad event")
        return event, False, {}

    ctx = FakeContext()
    with pytest.raises(ValueError, match="bad event"):
        await emit_stream_events(source(), ctx, make_msg(), adapter=adapter)  # type: ignore[arg-type]
    assert closed.is_set()
    assert [c["text"] for c in ctx.calls] == ["a"]


async def test_emit_stream_events_in_a_live_flow() -> None:
    async def producer(msg: Message, ctx: Any) -> None:
        await emit_stream_events(agen_of("x", "y"), ctx, msg, final_meta={"end": 1})

    flow = create(make_node(producer, "producer").to())
    flow.run()
    try:
        msg = make_msg()
        await flow.emit(msg)
        chunks = [(await asyncio.wait_for(flow.fetch(), 5)).payload for _ in range(3)]
        assert [(c.seq, c.text, c.done) for c in chunks] == [
            (0, "x", False),
            (1, "y", False),
            (2, "", True),
        ]
        assert chunks[-1].meta == {"end": 1}
        assert {c.stream_id for c in chunks} == {msg.trace_id}
    finally:
        await flow.stop()


async def test_emit_stream_events_requires_running_flow() -> None:
    ctx = Context(Endpoint("x"))
    with pytest.raises(RuntimeError, match="Context is not attached to a running flow"):
        await emit_stream_events(agen_of("a"), ctx, make_msg())


async def test_stream_flow_drains_under_backpressure() -> None:
    """With queue_maxsize=1 each chunk after the first waits for the previous fetch."""
    texts = [f"t{i}" for i in range(5)]

    async def talker(msg: Message, ctx: Any) -> Message:
        for index, text in enumerate(texts):
            await ctx.emit_chunk(parent=msg, text=text, done=index == len(texts) - 1)
        return msg.model_copy(update={"payload": "final"})

    flow = create(make_node(talker, "talker").to(), queue_maxsize=1)
    flow.run()
    try:
        items = await asyncio.wait_for(collect(stream_flow(flow, make_msg())), 5)
        assert [c.text for c in items] == texts
        assert [c.seq for c in items] == list(range(5))
    finally:
        await flow.stop()


async def test_concurrent_streams_each_read_only_their_own_trace() -> None:
    """Instead of two ``stream_flow``s (which share the plain ``fetch()`` queue), each caller
    emits with its own trace id and loops on ``fetch(trace_id=...)``.

    The node produces the two traces' chunks alternately (a0 b0 a1 b1 a2 b2). Caller ``a``
    reads them as they come; caller ``b`` starts reading only once all six are out, so after
    its first fetch its other items wait in the shared queue and each later fetch claims the
    next one.
    """
    turns = [asyncio.Event() for _ in range(6)]

    async def talker(msg: Message, ctx: Any) -> Message:
        me = 0 if msg.payload == "a" else 1
        for index in range(3):
            step = 2 * index + me
            if step:
                await turns[step - 1].wait()
            await ctx.emit_chunk(parent=msg, text=f"{msg.payload}{index}", done=index == 2)
            turns[step].set()
        return msg.model_copy(update={"payload": FinalAnswer(text=msg.payload)})

    node = Node(talker, name="talker", policy=NodePolicy(validate="none", concurrency=2))
    flow = create(node.to())
    flow.run()

    async def read(trace_id: str, start: asyncio.Event) -> list[Any]:
        await flow.emit(make_msg(trace_id), trace_id=trace_id)
        await start.wait()
        got = []
        while True:
            item = await flow.fetch(trace_id=trace_id)
            got.append(item.payload)
            if not isinstance(item.payload, StreamChunk):
                return got

    now = asyncio.Event()
    now.set()
    try:
        async with asyncio.timeout(5):
            got_a, got_b = await asyncio.gather(read("a", now), read("b", turns[-1]))
    finally:
        await flow.stop()
    for trace_id, got in (("a", got_a), ("b", got_b)):
        *chunks, final = got
        assert [(c.stream_id, c.seq, c.text, c.done) for c in chunks] == [
            (trace_id, 0, f"{trace_id}0", False),
            (trace_id, 1, f"{trace_id}1", False),
            (trace_id, 2, f"{trace_id}2", True),
        ]
        assert final == FinalAnswer(text=trace_id)
