"""Spec section 7.17: private attributes other code relies on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from penguiflow.core import OPEN_SEA, ROOKERY, Context, Floe, PenguiFlow

from .helpers import Gate, Recorder, echo, fetch, make_msg, node, running


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


def _ior(events: Any, flag: asyncio.Event) -> None:
    events |= {"t1": flag}


INSERTIONS: dict[str, Any] = {
    "item": lambda events, flag: events.__setitem__("t1", flag),
    "setdefault": lambda events, flag: events.setdefault("t1", flag),
    "update": lambda events, flag: events.update({"t1": flag}),
    "ior": _ior,
}


@pytest.mark.parametrize("observed", [False, True], ids=["quiet", "observed"])
@pytest.mark.parametrize("insert", list(INSERTIONS))
async def test_an_event_inserted_any_way_cancels_its_trace(insert: str, observed: bool) -> None:
    """However a set Event gets into ``_trace_events``, the trace's items are dropped, on the
    worker's quiet path (which skips flag lookups until some Event is stored) and on its
    observed one."""
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[Recorder()] if observed else [])
    async with running(flow):
        flag = asyncio.Event()
        flag.set()
        INSERTIONS[insert](flow._trace_events, flag)
        assert flow._trace_events.holds_events is True
        await flow.emit(make_msg("x", trace_id="t1"))  # first in line: dropped
        await flow.emit(make_msg("y", trace_id="t2"))
        assert (await fetch(flow)).payload == "y"
    assert flow._trace_events.holds_events is False  # stop() cleared every flag


async def test_only_stored_events_mark_the_flags() -> None:
    """Placeholders of live traces do not count as Events; reading a flag makes one."""
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "a").to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await gate.wait_entered()
        assert "t1" in flow._trace_events
        assert flow._trace_events.holds_events is False
        assert flow._trace_events["t1"].is_set() is False
        assert flow._trace_events.holds_events is True
        gate.open()
        await fetch(flow)


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


async def test_trace_events_is_a_dict_of_events_for_live_traces() -> None:
    """Every live trace has an Event in ``_trace_events`` whichever way it is read; no
    placeholder of the lazy flag ever shows, and the entry goes when the trace ends."""
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "a").to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await flow.emit(make_msg("y", trace_id="t2"))
        await gate.wait_entered()
        events = flow._trace_events
        assert isinstance(events, dict)
        assert "t1" in events and "t2" in events and len(events) == 2
        assert sorted(events) == ["t1", "t2"]
        first = events["t1"]
        assert isinstance(first, asyncio.Event) and not first.is_set()
        assert events["t1"] is first and events.get("t1") is first
        assert all(isinstance(flag, asyncio.Event) for flag in events.values())
        assert all(isinstance(flag, asyncio.Event) for _, flag in events.items())
        assert isinstance(events.setdefault("t2", asyncio.Event()), asyncio.Event)
        assert events.get("nope") is None and "nope" not in events
        gate.open()
        assert (await fetch(flow)).payload == "x"
        assert (await fetch(flow)).payload == "y"
        assert "t1" not in events and len(events) == 0


async def test_setting_a_read_flag_cancels_the_trace() -> None:
    """The Event handed out by ``_trace_events`` is the trace's real cancel flag."""
    rec = Recorder()
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await flow.emit(make_msg("y", trace_id="t1"))
        await gate.wait_entered()
        flow._trace_events["t1"].set()
        gate.open()
        await rec.wait_for("trace_cancel_drop", trace_id="t1")


async def test_a_str_subclass_trace_id_is_counted_and_released() -> None:
    """A trace id that is an instance of a str subclass (on a non-Message item; pydantic makes
    Message ids plain strings) is accounted like a plain string on every path."""

    class TraceId(str):
        pass

    class Item:
        def __init__(self, trace_id: str) -> None:
            self.trace_id = trace_id

    flow = PenguiFlow(node(echo, "a").to(node(echo, "b")), node(echo, "b2").to())
    async with running(flow):
        item = Item(TraceId("t1"))
        await flow.emit(item)
        assert await fetch(flow) is item
        assert await fetch(flow) is item
        assert not flow._traces.records
