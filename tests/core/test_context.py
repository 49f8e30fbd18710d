"""Spec section 7.3: ``Context`` resolution, emit, fetch and the small helpers.

Most tests drive the contexts of a flow that is built but never run: the contexts have a
runtime, so ``emit`` works, and no worker competes for the queues. Items are plain strings,
which carry no trace id and so touch no per-trace accounting.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import OPEN_SEA, ROOKERY, Context, Endpoint, Floe, PenguiFlow

from .helpers import echo, make_msg, node, start, within

if TYPE_CHECKING:
    from penguiflow.node import Node

NOT_ATTACHED = "Context is not attached to a running flow"


def fan_out_flow(maxsize: int = 4) -> tuple[PenguiFlow, Node, Node, Node]:
    a, b, c = node(echo, "a"), node(echo, "b"), node(echo, "c")
    return PenguiFlow(a.to(b, c), queue_maxsize=maxsize), a, b, c


def drain(ctx: Context) -> list[Any]:
    items = []
    while True:
        try:
            items.append(ctx.fetch_nowait())
        except asyncio.QueueEmpty:
            return items


# --------------------------------------------------------------------------- construction


def test_direct_construction() -> None:
    owner = Endpoint("x")
    ctx = Context(owner)
    assert ctx.owner == owner
    assert ctx.runtime is None
    assert ctx.outgoing_count() == 0
    assert ctx.queue_depth_in() == 0
    assert ctx.queue_depth_out() == 0
    flow = PenguiFlow()
    assert Context(owner, flow).runtime is flow


async def test_floes_with_a_missing_end_are_ignored() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    ctx = Context(a)
    ctx.add_outgoing_floe(Floe(a, None, maxsize=1))  # type: ignore[arg-type]
    ctx.add_incoming_floe(Floe(None, a, maxsize=1))  # type: ignore[arg-type]
    assert ctx.outgoing_count() == 0
    assert dict(ctx._outgoing) == {}
    with pytest.raises(RuntimeError, match=r"^context has no incoming floes to fetch from$"):
        await ctx.fetch()
    real = Floe(a, b, maxsize=1)
    ctx.add_outgoing_floe(real)
    assert ctx.outgoing_count() == 1
    assert ctx._outgoing[b] is real


async def test_emit_without_runtime_raises() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    ctx = Context(a)
    f = Floe(a, b, maxsize=1)
    ctx.add_outgoing_floe(f)
    with pytest.raises(RuntimeError) as info:
        await ctx.emit("x")
    assert str(info.value) == NOT_ATTACHED
    assert f.queue.empty()


async def test_emit_chunk_without_runtime_raises() -> None:
    ctx = Context(Endpoint("x"))
    with pytest.raises(RuntimeError, match=f"^{NOT_ATTACHED}$"):
        await ctx.emit_chunk(parent=make_msg("p"), text="hi")


async def test_direct_context_can_drive_node_invoke() -> None:
    seen: list[Any] = []

    async def body(msg: Any, ctx: Any) -> Any:
        seen.append(ctx)
        return msg

    n = node(body, "n")
    ctx = Context(Endpoint("x"))
    assert await n.invoke("m", ctx, registry=None) == "m"
    assert seen == [ctx]
    assert seen[0].owner == Endpoint("x")


# --------------------------------------------------------------------------- resolution


async def test_unknown_target_raises_before_anything_is_put() -> None:
    flow, a, b, _ = fan_out_flow()
    d = node(echo, "d")
    ctx = flow._contexts[a]
    with pytest.raises(KeyError) as info:
        await ctx.emit("x", to=d)
    assert info.value.args == ("Unknown target d for a",)
    with pytest.raises(KeyError) as info:
        await ctx.emit("x", to=[b, d])
    assert info.value.args == ("Unknown target d for a",)
    with pytest.raises(KeyError, match="Unknown target d for a"):
        ctx.emit_nowait("x", to=[b, d])
    assert drain(flow._contexts[b]) == []


async def test_unknown_endpoint_target_names_the_endpoint() -> None:
    flow, a, _, _ = fan_out_flow()
    with pytest.raises(KeyError) as info:
        await flow._contexts[a].emit("x", to=ROOKERY)
    assert info.value.args == ("Unknown target Rookery for a",)


def test_unknown_from_raises_key_error() -> None:
    flow, _, b, _ = fan_out_flow()
    with pytest.raises(KeyError) as info:
        flow._contexts[b].fetch_nowait(from_=OPEN_SEA)
    assert info.value.args == ("Unknown target OpenSea for b",)


async def test_quirk_emit_without_outgoing_floes_does_nothing_even_with_to() -> None:
    """[quirk] No floes in that direction resolves to nothing: no error, nothing sent."""
    flow, a, b, _ = fan_out_flow()
    rookery = flow._contexts[ROOKERY]
    assert await rookery.emit("x", to=a) is None
    assert await rookery.emit("x") is None
    rookery.emit_nowait("x", to=[a, b])
    assert flow._contexts[a].queue_depth_in() == 0


# --------------------------------------------------------------------------- emit


async def test_emit_to_all_floes_passes_the_same_object() -> None:
    flow, a, b, c = fan_out_flow()
    item = {"payload": 1}
    await flow._contexts[a].emit(item)
    got_b, got_c = drain(flow._contexts[b]), drain(flow._contexts[c])
    assert got_b == [item]
    assert got_c == [item]
    assert got_b[0] is item
    assert got_c[0] is item


async def test_emit_to_a_subset() -> None:
    flow, a, b, c = fan_out_flow()
    ctx = flow._contexts[a]
    await ctx.emit("only-c", to=c)
    await ctx.emit("list-b", to=[b])
    ctx.emit_nowait("nowait-b", to=b)
    assert drain(flow._contexts[b]) == ["list-b", "nowait-b"]
    assert drain(flow._contexts[c]) == ["only-c"]


async def test_emit_blocks_on_a_full_floe_until_space_frees() -> None:
    """Backpressure: with maxsize 1, a second emit waits until the first item is taken.

    Interleaving: put "x0"; start emitting "x1" (it suspends on the full floe); the floe
    still holds only "x0"; take "x0"; the emit then completes and "x1" is queued.
    """
    flow, a, b, _ = fan_out_flow(maxsize=1)
    ctx_a, ctx_b = flow._contexts[a], flow._contexts[b]
    await ctx_a.emit("x0", to=b)
    blocked = await start(ctx_a.emit("x1", to=b))
    assert not blocked.done()
    assert ctx_b.queue_depth_in() == 1
    assert ctx_b.fetch_nowait() == "x0"
    await within(blocked)
    assert drain(ctx_b) == ["x1"]


async def test_emit_nowait_raises_queue_full_and_served_floes_keep_the_item() -> None:
    flow, a, b, c = fan_out_flow(maxsize=1)
    ctx = flow._contexts[a]
    ctx.emit_nowait("c0", to=c)
    with pytest.raises(asyncio.QueueFull):
        ctx.emit_nowait("x", to=[b, c])
    assert drain(flow._contexts[b]) == ["x"]
    assert drain(flow._contexts[c]) == ["c0"]


async def test_queue_depths_and_outgoing_count() -> None:
    flow, a, b, c = fan_out_flow()
    ctx_a = flow._contexts[a]
    await ctx_a.emit("1")
    await ctx_a.emit("2", to=b)
    assert ctx_a.outgoing_count() == 2
    assert ctx_a.queue_depth_out() == 3
    assert flow._contexts[b].queue_depth_in() == 2
    assert flow._contexts[c].queue_depth_in() == 1
    assert flow._contexts[OPEN_SEA].queue_depth_out() == 0


# --------------------------------------------------------------------------- fetch


def egress_pair() -> tuple[PenguiFlow, Node, Node]:
    a, b = node(echo, "a"), node(echo, "b")
    return PenguiFlow(a.to(), b.to()), a, b


async def test_fetch_nowait_empty_raises_queue_empty_with_text() -> None:
    flow, _, _ = egress_pair()
    with pytest.raises(asyncio.QueueEmpty) as info:
        flow._contexts[ROOKERY].fetch_nowait()
    assert str(info.value) == "no messages available"


async def test_fetch_without_incoming_floes_raises() -> None:
    flow, _, _ = egress_pair()
    with pytest.raises(RuntimeError) as info:
        await flow._contexts[OPEN_SEA].fetch()
    assert str(info.value) == "context has no incoming floes to fetch from"
    with pytest.raises(RuntimeError, match=r"^context has no incoming floes to fetch from$"):
        await Context(Endpoint("x")).fetch()


async def test_fetch_nowait_filters_by_source() -> None:
    flow, a, b = egress_pair()
    flow._contexts[a].emit_nowait("from-a")
    flow._contexts[b].emit_nowait("from-b")
    rookery = flow._contexts[ROOKERY]
    assert rookery.fetch_nowait(from_=b) == "from-b"
    with pytest.raises(asyncio.QueueEmpty):
        rookery.fetch_nowait(from_=b)
    assert rookery.fetch_nowait(from_=[a, b]) == "from-a"


async def test_fetch_with_one_floe_waits_for_an_item() -> None:
    a = node(echo, "a")
    flow = PenguiFlow(a.to())
    waiter = await start(flow._contexts[ROOKERY].fetch())
    assert not waiter.done()
    flow._contexts[a].emit_nowait("late")
    assert await within(waiter) == "late"


async def test_fetch_over_several_floes_waits_for_any() -> None:
    flow, _, b = egress_pair()
    waiter = await start(flow._contexts[ROOKERY].fetch())
    assert not waiter.done()
    flow._contexts[b].emit_nowait("from-b")
    assert await within(waiter) == "from-b"
    with pytest.raises(asyncio.QueueEmpty):
        flow._contexts[ROOKERY].fetch_nowait()


@pytest.mark.parametrize("method", ["fetch", "fetch_any"])
async def test_racing_fetch_loses_nothing(method: str) -> None:
    """Items ready on several floes at once: one is returned, the rest stay fetchable."""
    flow, a, b = egress_pair()
    for i in range(3):
        flow._contexts[a].emit_nowait(f"a{i}")
        flow._contexts[b].emit_nowait(f"b{i}")
    rookery = flow._contexts[ROOKERY]
    got = [await within(getattr(rookery, method)()) for _ in range(2)]
    got += drain(rookery)
    assert sorted(got) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert [x for x in got if x.startswith("a")] == ["a0", "a1", "a2"]
    assert [x for x in got if x.startswith("b")] == ["b0", "b1", "b2"]


async def test_fetch_any_with_from_filter() -> None:
    flow, a, b = egress_pair()
    flow._contexts[a].emit_nowait("from-a")
    waiter = await start(flow._contexts[ROOKERY].fetch_any(from_=b))
    assert not waiter.done()
    flow._contexts[b].emit_nowait("from-b")
    assert await within(waiter) == "from-b"
    assert drain(flow._contexts[ROOKERY]) == ["from-a"]


async def test_cancelled_fetch_any_loses_nothing() -> None:
    """Cancel a blocked multi-floe fetch; items put afterwards are all still fetchable."""
    flow, a, b = egress_pair()
    rookery = flow._contexts[ROOKERY]
    waiter = await start(rookery.fetch_any())
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    flow._contexts[a].emit_nowait("x")
    flow._contexts[b].emit_nowait("y")
    assert sorted(drain(rookery)) == ["x", "y"]
