"""Spec sections 7.7 and 7.8: routing results, controller loops, budgets, Rookery delivery."""

from __future__ import annotations

import time
from typing import Any

from penguiflow.core import ROOKERY, PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.types import WM, FinalAnswer, Message

from .helpers import Recorder, echo, fetch, make_msg, node, rookery_empty, running


def wm_msg(trace_id: str = "t1", **wm: Any) -> Message:
    return make_msg(WM(query="q", **wm), trace_id=trace_id, meta={"m": 1})


class Controller:
    """A controller node body that records the WM hops it sees and applies ``step``."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.seen: list[Any] = []

    async def __call__(self, msg: Message, ctx: Any) -> Any:
        payload = msg.payload
        self.seen.append(payload.hops if isinstance(payload, WM) else payload)
        return self.step(msg)


def loop_flow(ctrl: Controller, **kwargs: Any) -> tuple[PenguiFlow, Any]:
    c = node(ctrl.__call__, "ctrl", allow_cycle=True)
    return PenguiFlow(c.to(c), **kwargs), c


def pass_through(msg: Message) -> Message:
    return msg


# --------------------------------------------------------------------------- C: plain results


async def test_plain_results_go_to_every_successor() -> None:
    seen: dict[str, list[Any]] = {"b": [], "c": []}

    def recorder(name: str) -> Any:
        async def body(msg: Any, ctx: Any) -> Any:
            seen[name].append(msg)
            return msg

        return node(body, name)

    a, b, c = node(echo, "a"), recorder("b"), recorder("c")
    flow = PenguiFlow(a.to(b, c))
    m = make_msg("x", trace_id="t1")
    async with running(flow):
        await flow.emit(m)
        outs = [await fetch(flow), await fetch(flow)]
        assert rookery_empty(flow)
    assert seen["b"][0] is seen["c"][0]
    assert [o.payload for o in outs] == ["x", "x"]


# --------------------------------------------------------------------------- B: FinalAnswer


async def test_final_answer_message_bypasses_successors() -> None:
    calls: list[str] = []

    async def answer(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": FinalAnswer(text="short-circuit")})

    async def never(msg: Any, ctx: Any) -> Any:
        calls.append("b")
        return msg

    rec = Recorder()
    a, b = node(answer, "a"), node(never, "b")
    flow = PenguiFlow(a.to(b), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("q", trace_id="t1"))
        out = await fetch(flow, from_=b)  # a has no Rookery floe: b's (the first) is used
        assert rookery_empty(flow)
    assert out.payload == FinalAnswer(text="short-circuit")
    assert out.trace_id == "t1"
    assert calls == []
    assert rec.types(trace_id="t1") == ["node_start", "node_success"]


# --------------------------------------------------------------------------- A: controllers


async def test_pass_through_controller_hits_hop_budget_of_one() -> None:
    ctrl = Controller(pass_through)
    flow, _ = loop_flow(ctrl)
    m = wm_msg(budget_hops=1)
    async with running(flow):
        await flow.emit(m)
        out = await fetch(flow)
        assert rookery_empty(flow)
    assert out.payload == FinalAnswer(text="Hop budget exhausted")
    assert (out.trace_id, out.headers, out.meta) == ("t1", m.headers, {"m": 1})
    assert ctrl.seen == [0]


async def test_controller_answers_once_enough_hops_passed() -> None:
    def step(msg: Message) -> Message:
        wm = msg.payload
        if wm.hops >= 2:
            return msg.model_copy(update={"payload": FinalAnswer(text=f"done@{wm.hops}")})
        return msg

    ctrl = Controller(step)
    rec = Recorder()
    flow, _ = loop_flow(ctrl, middlewares=[rec])
    async with running(flow):
        await flow.emit(wm_msg(budget_hops=4))
        out = await fetch(flow)
        await rec.wait_for("node_success", count=3)
        assert rookery_empty(flow)
    assert out.payload.text == "done@2"
    assert ctrl.seen == [0, 1, 2]
    assert len(rec.select("node_start")) == 3  # no re-invocation after the final


async def test_token_budget_is_checked_before_hops() -> None:
    def spend(msg: Message) -> Message:
        wm = msg.payload
        return msg.model_copy(
            update={"payload": wm.model_copy(update={"tokens_used": wm.tokens_used + 5})}
        )

    ctrl = Controller(spend)
    flow, _ = loop_flow(ctrl)
    async with running(flow):
        await flow.emit(wm_msg(budget_tokens=12, budget_hops=None))
        out = await fetch(flow)
    assert out.payload == FinalAnswer(text="Token budget exhausted")
    assert ctrl.seen == [0, 1, 2]
    assert out.trace_id == "t1"


async def test_controller_that_counts_its_own_hops_is_not_double_counted() -> None:
    """``r.hops > m.hops``: the node's own count is kept (rule A.3, second branch)."""

    def jump(msg: Message) -> Message:
        wm = msg.payload
        return msg.model_copy(update={"payload": wm.model_copy(update={"hops": wm.hops + 2})})

    ctrl = Controller(jump)
    flow, _ = loop_flow(ctrl)
    async with running(flow):
        await flow.emit(wm_msg(budget_hops=5))
        out = await fetch(flow)
    assert out.payload.text == "Hop budget exhausted"
    assert ctrl.seen == [0, 2, 4]


async def test_runtime_counts_hops_for_a_controller_that_does_not() -> None:
    ctrl = Controller(pass_through)
    flow, _ = loop_flow(ctrl)
    async with running(flow):
        await flow.emit(wm_msg(budget_hops=5))
        out = await fetch(flow)
    assert out.payload.text == "Hop budget exhausted"
    assert ctrl.seen == [0, 1, 2, 3, 4]


async def test_first_hop_from_a_non_wm_input_keeps_the_result_hops() -> None:
    def start_or_pass(msg: Message) -> Message:
        if isinstance(msg.payload, WM):
            return msg
        return msg.model_copy(update={"payload": WM(query=msg.payload, budget_hops=2)})

    ctrl = Controller(start_or_pass)
    flow, _ = loop_flow(ctrl)
    async with running(flow):
        await flow.emit(make_msg("start", trace_id="t1"))
        out = await fetch(flow)
    assert out.payload.text == "Hop budget exhausted"
    assert ctrl.seen == ["start", 0, 1]


async def test_expired_deadline_on_a_controller_result_ends_the_loop() -> None:
    def expire(msg: Message) -> Message:
        return msg.model_copy(update={"deadline_s": time.time() - 1})

    ctrl = Controller(expire)
    flow, _ = loop_flow(ctrl)
    async with running(flow):
        await flow.emit(wm_msg(budget_hops=None, budget_tokens=0))
        out = await fetch(flow)
    assert out.payload == FinalAnswer(text="Deadline exceeded")
    assert ctrl.seen == [0]


async def test_unbounded_controller_streams_progress_copies() -> None:
    """Both budgets None: every hop delivers a copy first, so fetches see hops 1, 2, 3."""
    ctrl = Controller(pass_through)
    flow, _ = loop_flow(ctrl)
    async with running(flow):
        await flow.emit(wm_msg(budget_hops=None))
        outs = [await fetch(flow) for _ in range(3)]
        assert await flow.cancel("t1") is True
    assert [o.payload.hops for o in outs] == [1, 2, 3]
    assert all(isinstance(o.payload, WM) and o.trace_id == "t1" for o in outs)
    assert len({id(o) for o in outs}) == 3
    assert outs[0].meta == {"m": 1}


async def test_quirk_wm_result_without_self_edge_is_a_node_error() -> None:
    """[quirk] Looping back needs a self-edge; without one the emit raises ``KeyError``."""
    after: list[Any] = []

    async def never(msg: Any, ctx: Any) -> Any:
        after.append(msg)
        return msg

    c, w = node(echo, "c"), node(never, "w")
    flow = PenguiFlow(c.to(w), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(wm_msg(budget_hops=8))
        err = await fetch(flow)
    assert isinstance(err, FlowError)
    assert err.code == "NODE_EXCEPTION"
    assert err.message == "Node 'c' raised KeyError: 'Unknown target c for c'"
    assert after == []


# --------------------------------------------------------------------------- 7.8 delivery


async def test_delivery_without_any_rookery_floe_uses_the_rookery_buffer() -> None:
    """No node is an egress node, so the final lands in the Rookery context's buffer."""

    async def answer(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": FinalAnswer(text="buffered")})

    rec = Recorder()
    r, a, b = node(echo, "r"), node(answer, "a"), node(echo, "b")
    flow = PenguiFlow(r.to(a), a.to(b), b.to(a), allow_cycles=True, middlewares=[rec])
    assert flow._contexts[ROOKERY].queue_depth_in() == 0
    async with running(flow):
        await flow.emit(make_msg("q", trace_id="t1"))
        await rec.wait_for("node_success", node_name="a")
        assert "t1" in flow._trace_events  # the buffered item is still counted
        out = await fetch(flow)
        assert out.payload.text == "buffered"
        await flow.emit(make_msg("q2", trace_id="t2"))
        await rec.wait_for("node_success", node_name="a", trace_id="t2")
        assert (await fetch(flow)).trace_id == "t2"
        assert "t1" not in flow._trace_events  # a finished t1 before it took t2 (FIFO)
