"""Spec section 7.17: private attributes other code relies on."""

from __future__ import annotations

import asyncio

import pytest

from penguiflow.core import OPEN_SEA, ROOKERY, Context, Floe, PenguiFlow

from .helpers import Recorder, echo, fetch, make_msg, node, running


async def test_contexts_cover_nodes_and_endpoints() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(b))
    assert set(flow._contexts) == {a, b, OPEN_SEA, ROOKERY}
    assert all(isinstance(ctx, Context) for ctx in flow._contexts.values())
    async with running(flow):
        with pytest.raises(asyncio.QueueEmpty):
            flow._contexts[ROOKERY].fetch_nowait()


async def test_running_flag_and_tasks() -> None:
    flow = PenguiFlow(node(echo, "a").to(), node(echo, "b").to())
    assert flow._running is False
    assert len(flow._tasks) == 0
    async with running(flow):
        assert flow._running is True
        assert len(flow._tasks) == 2
    assert flow._running is False
    assert len(flow._tasks) == 0


async def test_trace_events_accepts_an_inserted_set_event() -> None:
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[rec])
    async with running(flow):
        assert isinstance(flow._trace_events, dict)
        flag = asyncio.Event()
        flag.set()
        flow._trace_events["t1"] = flag
        await flow.emit(make_msg("x", trace_id="t1"))
        await rec.wait_for("trace_cancel_drop", trace_id="t1")
        await flow.emit(make_msg("y", trace_id="t2"))
        assert (await fetch(flow)).payload == "y"


async def test_middlewares_is_a_mutable_list() -> None:
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to())
    assert isinstance(flow._middlewares, list)
    async with running(flow):
        flow._middlewares.append(rec)
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        flow._middlewares.remove(rec)
        await flow.emit(make_msg("y", trace_id="t2"))
        await fetch(flow)
    assert {ev.trace_id for ev in rec.events} == {"t1"}


def test_floes_are_iterable_floe_objects() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(b), queue_maxsize=5)
    floes = list(flow._floes)
    assert len(floes) == 3
    assert all(isinstance(f, Floe) for f in floes)
    assert {(f.source, f.target) for f in floes} == {(OPEN_SEA, a), (a, b), (b, ROOKERY)}
    assert {f.queue.maxsize for f in floes} == {5}


def test_context_outgoing_is_keyed_by_target() -> None:
    a, b, c = node(echo, "a"), node(echo, "b"), node(echo, "c")
    flow = PenguiFlow(a.to(b, c))
    outgoing = flow._contexts[a]._outgoing
    assert isinstance(outgoing, dict)
    assert set(outgoing) == {b, c}
    assert outgoing[b].target is b
    assert outgoing[c].source is a
