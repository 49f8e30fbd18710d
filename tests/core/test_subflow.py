"""Spec section 7.15: ``call_playbook`` (cancellation cases live in ``test_cancel``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pydantic
import pytest

import penguiflow
from penguiflow.core import PenguiFlow, call_playbook
from penguiflow.errors import FlowError
from penguiflow.registry import ModelRegistry

from .helpers import Gate, echo, fetch, make_msg, node, running, within

if TYPE_CHECKING:
    from penguiflow.types import Message


class Factory:
    """A playbook factory that remembers every subflow it built."""

    def __init__(self, body: Any, registry: ModelRegistry | None = None, **kwargs: Any) -> None:
        self.body = body
        self.registry = registry
        self.kwargs = kwargs
        self.created: list[PenguiFlow] = []

    def __call__(self) -> tuple[PenguiFlow, ModelRegistry | None]:
        sub = PenguiFlow(
            node(self.body, "sub", **self.kwargs.get("node", {})).to(),
            **{k: v for k, v in self.kwargs.items() if k != "node"},
        )
        self.created.append(sub)
        return sub, self.registry

    def assert_all_stopped(self) -> None:
        assert self.created
        for sub in self.created:
            assert sub._running is False
            assert not sub._tasks


async def test_returns_the_payload_of_a_message_result() -> None:
    seen: list[Message] = []

    async def sub_body(msg: Message, ctx: Any) -> Message:
        seen.append(msg)
        return msg.model_copy(update={"payload": f"sub:{msg.payload}"})

    factory = Factory(sub_body)
    parent = make_msg("x", trace_id="t1", meta={"k": 1})
    assert await within(call_playbook(factory, parent)) == "sub:x"
    assert seen == [parent]
    assert (seen[0].trace_id, seen[0].headers) == ("t1", parent.headers)
    factory.assert_all_stopped()
    assert penguiflow.call_playbook is call_playbook


async def test_returns_non_message_items_as_they_are() -> None:
    async def sub_body(msg: Message, ctx: Any) -> str:
        return "bare"

    factory = Factory(sub_body)
    assert await within(call_playbook(factory, make_msg("x"))) == "bare"
    factory.assert_all_stopped()


async def test_returns_a_flow_error_from_the_subflow() -> None:
    async def sub_body(msg: Message, ctx: Any) -> Any:
        raise ValueError("inner")

    factory = Factory(sub_body, emit_errors_to_rookery=True)
    result = await within(call_playbook(factory, make_msg("x", trace_id="t1")))
    assert isinstance(result, FlowError)
    assert result.message == "Node 'sub' raised ValueError: inner"
    factory.assert_all_stopped()


async def test_runs_the_subflow_with_the_factory_registry() -> None:
    class Job(pydantic.BaseModel):
        n: int

    reg = ModelRegistry()
    reg.register("sub", Job, Job)

    async def sub_body(job: Job, ctx: Any) -> Job:
        return Job(n=job.n + 1)

    factory = Factory(sub_body, reg, node={"validate": "both"})
    assert await within(call_playbook(factory, {"n": "1"})) == Job(n=2)
    assert factory.created[0].registry is reg
    factory.assert_all_stopped()


async def test_registry_errors_propagate() -> None:
    factory = Factory(echo, ModelRegistry(), node={"validate": "both"})
    with pytest.raises(RuntimeError, match="missing entries for nodes requiring validation: sub"):
        await within(call_playbook(factory, make_msg("x")))
    factory.assert_all_stopped()


@pytest.mark.looptime
async def test_timeout_propagates_and_stops_the_subflow() -> None:
    loop = asyncio.get_running_loop()
    gate = Gate()
    outcome: list[str] = []

    async def sub_body(msg: Any, ctx: Any) -> Any:
        try:
            await gate.pass_()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        return msg

    factory = Factory(sub_body)
    t0 = loop.time()
    with pytest.raises(TimeoutError):
        await call_playbook(factory, make_msg("x", trace_id="t1"), timeout=0.5)
    assert loop.time() - t0 == pytest.approx(0.5)
    assert outcome == ["cancelled"]
    factory.assert_all_stopped()


async def test_context_call_playbook_uses_the_parent_runtime() -> None:
    async def sub_body(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": msg.payload.upper()})

    factory = Factory(sub_body)

    async def parent(msg: Message, ctx: Any) -> Message:
        result = await ctx.call_playbook(factory, msg)
        return msg.model_copy(update={"payload": result})

    flow = PenguiFlow(node(parent, "p").to())
    async with running(flow):
        await flow.emit(make_msg("abc", trace_id="t1"))
        out = await fetch(flow)
        await flow.emit(make_msg("def"), trace_id="t2")
        out2 = await fetch(flow, trace_id="t2")
    assert (out.payload, out.trace_id) == ("ABC", "t1")
    assert out2.payload == "DEF"
    factory.assert_all_stopped()
    assert len(factory.created) == 2


@pytest.mark.looptime
async def test_context_call_playbook_forwards_the_timeout() -> None:
    gate = Gate()

    async def sub_body(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    factory = Factory(sub_body)

    async def parent(msg: Message, ctx: Any) -> Any:
        return await ctx.call_playbook(factory, msg, timeout=0.01)

    flow = PenguiFlow(node(parent, "p").to(), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        err = await fetch(flow)
    assert isinstance(err, FlowError)
    assert err.code == "NODE_TIMEOUT"
    factory.assert_all_stopped()


async def test_without_runtime_nothing_is_watched() -> None:
    factory = Factory(echo)
    parent = make_msg("x", trace_id="t1")
    out = await within(call_playbook(factory, parent, runtime=None))
    assert out == "x"
    factory.assert_all_stopped()
