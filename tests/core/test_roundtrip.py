"""Spec section 7.11: ``emit`` / ``fetch``, trace-scoped roundtrips and the dispatcher."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.types import WM, FinalAnswer, Message

from .helpers import (
    Gate,
    Recorder,
    echo,
    fetch,
    make_msg,
    node,
    rookery_empty,
    running,
    start,
    within,
)


async def done_str(msg: Any, ctx: Any) -> str:
    """Returns a bare string: no trace id of its own."""
    return f"done:{msg.payload}"


class Job:
    """A non-Message item with a writable ``trace_id``."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.trace_id: str | None = None


class Frozen:
    __slots__ = ("payload",)

    def __init__(self, payload: Any) -> None:
        self.payload = payload


# --------------------------------------------------------------------------- refusals


async def test_emit_with_trace_id_requires_a_running_flow() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    with pytest.raises(RuntimeError) as info:
        await flow.emit(make_msg("x"), trace_id="t1")
    assert str(info.value) == "PenguiFlow is not running"


async def test_emit_nowait_with_trace_id_is_refused() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        with pytest.raises(RuntimeError) as info:
            flow.emit_nowait(make_msg("x"), trace_id="t1")
        assert str(info.value) == (
            "emit_nowait(trace_id=...) is not supported; use await emit(..., trace_id=...)"
        )
        assert flow._trace_events == {}


@pytest.mark.parametrize("item", ["text", 42, ("a",), Frozen(1)])
async def test_emit_with_trace_id_needs_a_writable_trace_id(item: Any) -> None:
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        with pytest.raises(TypeError) as info:
            await flow.emit(item, trace_id="t1")
        assert str(info.value) == (
            "emit(trace_id=...) requires a Message (or object with writable .trace_id)"
        )
        # The failed call released its roundtrip lock: a valid call goes through.
        await within(flow.emit(make_msg("ok"), trace_id="t1"))
        assert (await fetch(flow, trace_id="t1")).payload == "ok"


async def test_fetch_with_trace_id_and_from_is_refused() -> None:
    a = node(echo, "a")
    flow = PenguiFlow(a.to())
    async with running(flow):
        with pytest.raises(RuntimeError) as info:
            await flow.fetch(from_=a, trace_id="t1")
        assert str(info.value) == "fetch(trace_id=...) does not support from_ filtering"


async def test_emit_to_a_non_ingress_node_is_a_key_error() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(b))
    async with running(flow):
        with pytest.raises(KeyError) as info:
            await flow.emit(make_msg("x", trace_id="t1"), to=b)
        assert info.value.args == ("Unknown target b for OpenSea",)
        with pytest.raises(KeyError, match="Unknown target b for OpenSea"):
            flow.emit_nowait("x", to=b)


# --------------------------------------------------------------------------- plain mode


async def test_plain_fetch_returns_items_as_they_are() -> None:
    async def mixed(msg: Any, ctx: Any) -> Any:
        if msg.payload == "fail":
            raise RuntimeError("bad")
        if msg.payload == "str":
            return "bare"
        return msg

    flow = PenguiFlow(node(mixed, "m").to(), emit_errors_to_rookery=True)
    async with running(flow):
        for p in ("msg", "str", "fail"):
            await flow.emit(make_msg(p, trace_id=f"t-{p}"))
        got = [await fetch(flow) for _ in range(3)]
    assert isinstance(got[0], Message)
    assert got[0].payload == "msg"
    assert got[1] == "bare"
    assert type(got[1]) is str
    assert isinstance(got[2], FlowError)
    assert got[2].trace_id == "t-fail"


async def test_plain_fetch_from_filters_by_source() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(), b.to())
    async with running(flow):
        await flow.emit("to-a", to=a)
        await flow.emit("to-b", to=b)
        assert await fetch(flow, from_=b) == "to-b"
        assert await fetch(flow, from_=a) == "to-a"


async def test_fetch_any_is_an_alias() -> None:
    flow = PenguiFlow(node(done_str, "a").to())
    async with running(flow):
        await flow.emit(make_msg("p"))
        assert await within(flow.fetch_any()) == "done:p"
        await flow.emit(make_msg("q"), trace_id="t1")
        assert await within(flow.fetch_any(trace_id="t1")) == "done:q"


# --------------------------------------------------------------------------- trace-scoped


async def test_emit_with_trace_id_stamps_a_copy_of_a_message() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    m = make_msg("x", trace_id="original")
    async with running(flow):
        await flow.emit(m, trace_id="job-1")
        out = await fetch(flow, trace_id="job-1")
    assert m.trace_id == "original"
    assert isinstance(out, Message)
    assert (out.trace_id, out.payload, out.headers) == ("job-1", "x", m.headers)


class Tagged(Message):
    """A Message subclass with an extra field: stamped through pydantic's own copy."""

    tag: str = "t"


@pytest.mark.parametrize("kind", [Message, Tagged])
async def test_the_stamped_copy_is_what_model_copy_makes(kind: type[Message]) -> None:
    seen: list[Message] = []

    async def keep(msg: Message, ctx: Any) -> Message:
        seen.append(msg)
        return msg

    m = kind(payload={"n": 1}, headers=make_msg("x").headers, meta={"k": [1]})
    expected = m.model_copy(update={"trace_id": "job-1"})
    flow = PenguiFlow(node(keep, "a").to())
    async with running(flow):
        await flow.emit(m, trace_id="job-1")
        await fetch(flow, trace_id="job-1")
    (stamped,) = seen
    assert type(stamped) is kind and stamped is not m
    assert stamped == expected and repr(stamped) == repr(expected)
    assert stamped.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    assert stamped.__pydantic_fields_set__ is not m.__pydantic_fields_set__
    assert (stamped.__pydantic_extra__, stamped.__pydantic_private__) == (None, None)
    assert stamped.meta is m.meta  # a shallow copy, as model_copy's
    assert m.trace_id != "job-1" and "trace_id" not in m.__pydantic_fields_set__


async def test_emit_with_trace_id_sets_it_on_other_objects() -> None:
    seen: list[Any] = []

    async def body(item: Job, ctx: Any) -> str:
        seen.append(item)
        return f"job:{item.payload}"

    flow = PenguiFlow(node(body, "a").to())
    job = Job("x")
    async with running(flow):
        await flow.emit(job, trace_id="job-1")
        out = await fetch(flow, trace_id="job-1")
    assert job.trace_id == "job-1"
    assert seen == [job]
    assert out == "job:x"


async def test_concurrent_roundtrips_each_get_their_own_bare_string() -> None:
    """20 callers; all emit first, then fetch in reverse order, so most results wait in
    their trace queues until their caller asks."""
    flow = PenguiFlow(node(done_str, "a").to())
    n = 20
    emitted = asyncio.Event()
    ready = 0

    async def caller(i: int) -> Any:
        nonlocal ready
        await flow.emit(make_msg(i), trace_id=f"t{i}")
        ready += 1
        if ready == n:
            emitted.set()
        await emitted.wait()
        return await flow.fetch(trace_id=f"t{i}")

    async with running(flow):
        results = await within(asyncio.gather(*(caller(i) for i in reversed(range(n)))))
        assert rookery_empty(flow)
    assert results == [f"done:{i}" for i in reversed(range(n))]
    assert all(type(r) is str for r in results)


async def test_concurrent_roundtrips_through_a_fan_in_graph() -> None:
    async def work(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": f"{ctx.owner.name}:{msg.payload}"})

    a, b, c = node(work, "a"), node(work, "b"), node(done_str, "c")
    flow = PenguiFlow(a.to(c), b.to(c), queue_maxsize=2)

    async def roundtrip(i: int) -> str:
        target = a if i % 2 else b
        await flow.emit(make_msg(i), to=target, trace_id=f"t{i}")
        return await flow.fetch(trace_id=f"t{i}")

    async with running(flow):
        results = await within(asyncio.gather(*(roundtrip(i) for i in range(30))))
    assert results == [f"done:{'a' if i % 2 else 'b'}:{i}" for i in range(30)]


async def test_second_roundtrip_of_a_trace_waits_for_the_first_fetch() -> None:
    flow = PenguiFlow(node(done_str, "a").to())
    async with running(flow):
        await flow.emit(make_msg("first"), trace_id="t1")
        second = await start(flow.emit(make_msg("second"), trace_id="t1"))
        assert not second.done()
        assert await fetch(flow, trace_id="t1") == "done:first"
        await within(second)
        assert await fetch(flow, trace_id="t1") == "done:second"


async def test_blocked_roundtrip_is_released_by_stop() -> None:
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "a").to())
    async with running(flow):
        await flow.emit(make_msg("first"), trace_id="t1")
        second = await start(flow.emit(make_msg("second"), trace_id="t1"))
        await gate.wait_entered()
        assert not second.done()
    await within(asyncio.gather(second, return_exceptions=True))
    assert second.done()


async def test_leftover_items_of_a_roundtrip_go_to_the_shared_queue() -> None:
    """A fan-out answers twice; the roundtrip takes one, plain ``fetch`` gets the other."""
    a, b, c = node(echo, "a"), node(done_str, "b"), node(done_str, "c")
    flow = PenguiFlow(a.to(b, c))
    async with running(flow):
        await flow.emit(make_msg("x"), trace_id="t1")
        first = await fetch(flow, trace_id="t1")
        second = await fetch(flow)
        assert rookery_empty(flow)
    assert [first, second] == ["done:x", "done:x"]
    assert type(second) is str


async def test_dispatcher_mode_serves_plain_fetch_and_refuses_from() -> None:
    a = node(done_str, "a")
    flow = PenguiFlow(a.to())
    async with running(flow):
        await flow.emit(make_msg("scoped"), trace_id="t1")
        assert await fetch(flow, trace_id="t1") == "done:scoped"
        await flow.emit(make_msg("plain", trace_id="t2"))
        assert await fetch(flow) == "done:plain"
        with pytest.raises(RuntimeError) as info:
            await flow.fetch(from_=a)
        assert str(info.value) == (
            "fetch(from_=...) is not supported once trace-scoped fetching is enabled"
        )


async def test_trace_scoped_fetch_unwraps_flow_errors() -> None:
    async def boom(msg: Any, ctx: Any) -> Any:
        raise ValueError("nope")

    flow = PenguiFlow(node(boom, "boom").to(), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("x"), trace_id="t1")
        err = await fetch(flow, trace_id="t1")
    assert isinstance(err, FlowError)
    assert err.trace_id == "t1"
    assert err.message == "Node 'boom' raised ValueError: nope"


async def test_roundtrip_finalizes_the_trace() -> None:
    flow = PenguiFlow(node(done_str, "a").to())
    async with running(flow):
        await flow.emit(make_msg("x"), trace_id="t1")
        await fetch(flow, trace_id="t1")
        await flow.emit(make_msg("y"), trace_id="t2")
        await fetch(flow, trace_id="t2")
        assert "t1" not in flow._trace_events


# --------------------------------------------------------------------------- WM dedupe


async def test_quirk_wm_with_the_latest_delivered_hops_is_ignored() -> None:
    """[quirk] A WM Message whose hops equal the trace's last delivered WM hops is dropped.

    The controller (budgets None) delivers a progress copy with hops 1, then answers. While
    the answer is still pending, emitting WM(hops=1) for that trace does nothing: the next
    Rookery item after the answer is the sentinel trace's answer.
    """
    calls: list[tuple[str, int]] = []

    async def ctrl(msg: Message, ctx: Any) -> Message:
        calls.append((msg.trace_id, msg.payload.hops))
        if msg.payload.hops >= 1:
            return msg.model_copy(update={"payload": FinalAnswer(text=f"ans:{msg.trace_id}")})
        return msg

    rec = Recorder()
    c = node(ctrl, "c", allow_cycle=True)
    flow = PenguiFlow(c.to(c), middlewares=[rec])
    wm = WM(query="q", budget_hops=None)
    async with running(flow):
        await flow.emit(make_msg(wm, trace_id="t1"))
        progress = await fetch(flow)
        assert progress.payload.hops == 1
        await rec.wait_for("node_success", count=2)
        await flow.emit(make_msg(wm.model_copy(update={"hops": 1}), trace_id="t1"))
        flow.emit_nowait(make_msg(wm.model_copy(update={"hops": 1}), trace_id="t1"))
        await flow.emit(make_msg(wm.model_copy(update={"hops": 1}), trace_id="t2"))
        assert (await fetch(flow)).payload.text == "ans:t1"
        assert (await fetch(flow)).payload.text == "ans:t2"
    assert calls == [("t1", 0), ("t1", 1), ("t2", 1)]


async def test_quirk_deduped_roundtrip_releases_its_lock() -> None:
    async def ctrl(msg: Message, ctx: Any) -> Message:
        if msg.payload.hops >= 1:
            return msg.model_copy(update={"payload": FinalAnswer(text="ans")})
        return msg

    rec = Recorder()
    c = node(ctrl, "c", allow_cycle=True)
    flow = PenguiFlow(c.to(c), middlewares=[rec])
    wm = WM(query="q", budget_hops=None)
    async with running(flow):
        await flow.emit(make_msg(wm, trace_id="t1"))
        assert (await fetch(flow)).payload.hops == 1
        await rec.wait_for("node_success", count=2)
        await within(flow.emit(make_msg(wm.model_copy(update={"hops": 1})), trace_id="t1"))
        await within(flow.emit(make_msg(wm.model_copy(update={"hops": 1})), trace_id="t1"))
        assert (await fetch(flow)).payload.text == "ans"


async def test_failed_enqueue_releases_the_roundtrip_lock() -> None:
    a, b = node(echo, "a"), node(done_str, "b")
    flow = PenguiFlow(a.to(b))
    async with running(flow):
        with pytest.raises(KeyError):
            await flow.emit(make_msg("x"), to=b, trace_id="t1")
        await within(flow.emit(make_msg("y"), trace_id="t1"))
        assert await fetch(flow, trace_id="t1") == "done:y"


async def test_flow_emit_blocks_until_the_ingress_floe_has_room() -> None:
    """Backpressure at the ingress: maxsize 1, the node holds "m0" and "m1" fills the floe;
    emitting "m2" waits until the node takes "m1"."""
    gate = Gate()
    seen: list[Any] = []

    async def hold(msg: Any, ctx: Any) -> Any:
        seen.append(msg)
        if msg == "m0":
            await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "a").to(), queue_maxsize=1)
    async with running(flow):
        await flow.emit("m0")
        await gate.wait_entered()
        await flow.emit("m1")
        with pytest.raises(asyncio.QueueFull):
            flow.emit_nowait("never")
        blocked = await start(flow.emit("m2"))
        assert not blocked.done()
        gate.open()
        got = [await fetch(flow) for _ in range(3)]
        await within(blocked)
    assert got == ["m0", "m1", "m2"]
    assert seen == ["m0", "m1", "m2"]


async def test_backpressure_between_nodes_blocks_the_producer() -> None:
    """b holds "m0"; a forwards "m1" into b's floe (maxsize 1), then blocks on "m2": it does
    not take "m3" until b frees space."""
    gate = Gate()
    a_seen: list[Any] = []

    async def a_body(msg: Any, ctx: Any) -> Any:
        a_seen.append(msg)
        return msg

    async def b_body(msg: Any, ctx: Any) -> Any:
        if msg == "m0":
            await gate.pass_()
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(a_body, "a").to(node(b_body, "b")), queue_maxsize=1, middlewares=[rec])
    async with running(flow):
        await flow.emit("m0")
        await gate.wait_entered()
        await flow.emit("m1")
        await rec.wait_for("node_success", node_name="a", count=2)
        await flow.emit("m2")  # a takes it and blocks forwarding it
        await flow.emit("m3")  # waits on a's ingress floe
        assert a_seen == ["m0", "m1", "m2"]
        assert len(rec.select("node_success", node_name="a")) == 2
        gate.open()
        got = [await fetch(flow) for _ in range(4)]
    assert got == ["m0", "m1", "m2", "m3"]
    assert a_seen == ["m0", "m1", "m2", "m3"]


async def test_trace_scoped_fetch_claims_a_result_already_in_the_shared_queue() -> None:
    """Beyond spec: a result that reached the shared queue before its trace was subscribed
    (emitted without ``trace_id`` while dispatching is on) is found by ``fetch(trace_id=...)``.
    """
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("first"), trace_id="R")
        assert (await fetch(flow, trace_id="R")).payload == "first"
        await flow.emit(make_msg("late", trace_id="L"))
        await rec.wait_for("node_success", trace_id="L")
        async with asyncio.timeout(5):  # the dispatcher moves it within a few loop turns
            while not flow._results.shared.qsize():
                await asyncio.sleep(0)
        out = await fetch(flow, trace_id="L")
        assert out.payload == "late"
        assert flow._results.shared.qsize() == 0


async def test_roundtrip_emit_cancelled_while_waiting_for_room_sends_nothing() -> None:
    """``emit(trace_id=T)`` waiting at a full ingress floe, then cancelled: its message never
    enters, T's lock and inbox are let go (T can be sent again), and the line stays clean."""
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        if msg.payload == "m0":
            await gate.pass_()
        return msg.payload

    flow = PenguiFlow(node(hold, "a").to(), queue_maxsize=1)
    async with running(flow):
        await flow.emit(make_msg("m0"), trace_id="t0")
        await gate.wait_entered()
        await flow.emit(make_msg("m1"), trace_id="t1")  # fills the floe
        blocked = await start(flow.emit(make_msg("lost"), trace_id="t2"))
        assert not blocked.done()
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert "t2" not in flow._results.inboxes and len(flow._results.locks) == 2
        again = await start(flow.emit(make_msg("m2"), trace_id="t2"))
        gate.open()
        await within(again)
        got = [await fetch(flow, trace_id=t) for t in ("t0", "t1", "t2")]
    assert got == ["m0", "m1", "m2"]
