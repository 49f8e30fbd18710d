"""``flow.health()``: a typed snapshot, and the ok / degraded / failing rule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.helpers import Gate, Recorder, echo, fetch, make_msg, node, running

from penguiflow.core import PenguiFlow
from penguiflow.health import FloeHealth, FlowHealth

if TYPE_CHECKING:
    import pytest


async def test_a_stopped_flow_is_failing_and_a_running_one_ok() -> None:
    flow = PenguiFlow(node(echo, "a").to(node(echo, "b")), queue_maxsize=8)
    before = flow.health()
    assert isinstance(before, FlowHealth)
    assert before.status == "failing" and before.running is False
    assert [n.workers_alive for n in before.nodes] == [0, 0]
    async with running(flow):
        health = flow.health()
        assert health.status == "ok" and health.running
        assert [(n.name, n.workers, n.workers_alive) for n in health.nodes] == [
            ("a", 1, 1),
            ("b", 1, 1),
        ]
        assert FloeHealth("a", "b", 0, 8) in health.floes
        assert {(f.source, f.target) for f in health.floes} == {
            ("a", "b"),
            ("OpenSea", "a"),
            ("b", "Rookery"),
        }
        assert health.traces_in_flight == 0


async def test_a_full_floe_degrades_and_in_flight_traces_show() -> None:
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "a").to(), queue_maxsize=1)
    async with running(flow):
        await flow.emit(make_msg(1, trace_id="t1"))
        await gate.wait_entered()
        await flow.emit(make_msg(2, trace_id="t2"))  # fills the ingress floe
        health = flow.health()
        assert health.status == "degraded"
        assert health.traces_in_flight == 2
        assert FloeHealth("OpenSea", "a", 1, 1) in health.floes
        gate.open()
        await fetch(flow)
        await fetch(flow)
        assert flow.health().status == "ok"


async def test_last_error_is_kept_per_node() -> None:
    async def boom(msg: Any, ctx: Any) -> Any:
        raise ValueError("broken input")

    flow = PenguiFlow(node(boom, "a").to(), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        error = flow.health().nodes[0].last_error
    assert error is not None
    assert error.code == "NODE_EXCEPTION" and error.trace_id == "t1"
    assert error.message == "Node 'a' raised ValueError: broken input"


async def test_a_restarted_worker_is_counted_and_degrades(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault of the runtime itself: the worker is restarted, the event says so, health
    counts it and reports the flow degraded."""
    from penguiflow._runtime.worker import Worker

    rec = Recorder()
    real_admit = Worker._admit
    faults = iter([True])

    def faulty_admit(self: Worker, item: Any) -> Any:
        if next(faults, False):
            raise RuntimeError("injected runtime fault")
        return real_admit(self, item)

    monkeypatch.setattr(Worker, "_admit", faulty_admit)
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("lost", trace_id="t1"))
        await rec.wait_for("worker_restarted")
        await flow.emit(make_msg("fine", trace_id="t2"))
        assert (await fetch(flow)).payload == "fine"
        health = flow.health()
    assert health.nodes[0].restarts == 1
    assert health.nodes[0].workers_alive == 1
    assert health.status == "degraded"
