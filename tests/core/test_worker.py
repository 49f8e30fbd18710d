"""Spec sections 7.5 and 7.6: the worker loop, deadlines, timeouts, retries, failures.

Time-driven tests run under ``looptime``: the loop clock is virtual and jumps to the next timer
whenever every task is blocked, so backoff and timeouts cost no real time and the simulated
elapsed time can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pydantic
import pytest

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.registry import ModelRegistry
from penguiflow.types import FinalAnswer, Message

from .helpers import (
    Gate,
    Recorder,
    drop,
    echo,
    fetch,
    make_msg,
    node,
    rookery_empty,
    running,
)


class In(pydantic.BaseModel):
    x: int


class Out(pydantic.BaseModel):
    y: int


# --------------------------------------------------------------------------- 7.5 worker loop


async def test_one_invocation_at_a_time_in_fifo_order() -> None:
    """Five messages; the node blocks on each until released. Never two at once."""
    active = 0
    peak = 0
    order: list[int] = []
    gates = [Gate() for _ in range(5)]

    async def body(msg: Message, ctx: Any) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        order.append(msg.payload)
        await gates[msg.payload].pass_()
        active -= 1
        return msg

    flow = PenguiFlow(node(body, "a").to())
    async with running(flow):
        for i in range(5):
            await flow.emit(make_msg(i))
        for i in range(5):
            await gates[i].wait_entered()
            assert not any(g.entered.is_set() for g in gates[i + 1 :])
            gates[i].open()
        got = [(await fetch(flow)).payload for _ in range(5)]
    assert got == order == [0, 1, 2, 3, 4]
    assert peak == 1


async def test_expired_deadline_skips_the_node_and_its_successors() -> None:
    calls: list[str] = []

    async def record(msg: Any, ctx: Any) -> Any:
        calls.append(ctx.owner.name)
        return msg

    rec = Recorder()
    a, b, c = node(record, "a"), node(record, "b"), node(record, "c")
    flow = PenguiFlow(a.to(b), b.to(c), middlewares=[rec])
    deadline = time.time() - 10
    m = make_msg("late", trace_id="t1", deadline_s=deadline, meta={"k": "v"})
    async with running(flow):
        await flow.emit(m)
        out = await fetch(flow)
        assert rookery_empty(flow)
    assert calls == []
    assert isinstance(out, Message)
    assert out.payload == FinalAnswer(text="Deadline exceeded")
    assert (out.trace_id, out.headers, out.meta, out.deadline_s) == (
        "t1",
        m.headers,
        {"k": "v"},
        deadline,
    )
    assert m.payload == "late"  # the delivered item is a copy
    skips = rec.select("deadline_skip")
    assert len(skips) == 1
    skip = skips[0]
    assert (skip.node_name, skip.trace_id, skip.attempt, skip.latency_ms) == ("a", "t1", 0, None)
    assert dict(skip.extra) == {"deadline_s": deadline}
    assert rec.select("node_start") == []


async def test_expired_deadline_keeps_an_existing_final_answer() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    answer = FinalAnswer(text="already", citations=["c1"])
    async with running(flow):
        await flow.emit(make_msg(answer, deadline_s=time.time() - 1))
        out = await fetch(flow)
    assert out.payload == answer


async def test_deadline_set_by_an_upstream_node_stops_downstream() -> None:
    calls: list[str] = []

    async def expire(msg: Message, ctx: Any) -> Any:
        calls.append("a")
        return msg.model_copy(update={"deadline_s": time.time() - 5})

    async def never(msg: Any, ctx: Any) -> Any:
        calls.append("b")
        return msg

    a, b = node(expire, "a"), node(never, "b")
    flow = PenguiFlow(a.to(b))
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        out = await fetch(flow)
    assert calls == ["a"]
    assert out.payload.text == "Deadline exceeded"
    assert out.trace_id == "t1"


async def test_future_deadline_runs_normally() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        await flow.emit(make_msg("x", deadline_s=time.time() + 3600))
        assert (await fetch(flow)).payload == "x"


async def test_cancelled_trace_is_dropped_by_the_worker() -> None:
    """An item of a trace whose flag is already set never reaches the node."""
    calls: list[Any] = []

    async def body(msg: Any, ctx: Any) -> Any:
        calls.append(msg.payload)
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(body, "a").to(), middlewares=[rec])
    async with running(flow):
        flag = asyncio.Event()
        flag.set()
        flow._trace_events["doomed"] = flag
        await flow.emit(make_msg("dropped", trace_id="doomed"))
        await flow.emit(make_msg("kept", trace_id="other"))
        assert (await fetch(flow)).payload == "kept"
        await rec.wait_for("trace_cancel_finish", trace_id="doomed")
        assert "doomed" not in flow._trace_events
    assert calls == ["kept"]
    drops = rec.select("trace_cancel_drop")
    assert len(drops) == 1
    assert (drops[0].node_name, drops[0].trace_id, drops[0].attempt) == ("a", "doomed", 0)
    assert rec.types(trace_id="doomed") == ["trace_cancel_drop", "trace_cancel_finish"]


# --------------------------------------------------------------------------- 7.6 execution


async def test_success_routes_the_result_and_emits_start_then_success() -> None:
    async def double(msg: Message, ctx: Any) -> Any:
        return msg.model_copy(update={"payload": msg.payload * 2})

    rec = Recorder()
    a = node(double, "a")
    flow = PenguiFlow(a.to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg(21, trace_id="t1"))
        assert (await fetch(flow)).payload == 42
    assert rec.types(trace_id="t1") == ["node_start", "node_success"]
    start_ev, success = rec.select(trace_id="t1")
    assert (start_ev.attempt, start_ev.latency_ms) == (0, 0.0)
    assert success.attempt == 0
    assert isinstance(success.latency_ms, float)
    assert success.latency_ms >= 0.0
    assert start_ev.node_id == success.node_id == a.node_id


async def test_none_result_routes_nothing() -> None:
    a, b = node(drop, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(), b.to())
    async with running(flow):
        await flow.emit(make_msg("gone", trace_id="t1"), to=a)
        await flow.emit(make_msg("kept", trace_id="t2"), to=b)
        assert (await fetch(flow)).payload == "kept"
        assert rookery_empty(flow)


async def test_failure_is_contained_and_later_messages_continue() -> None:
    async def picky(msg: Message, ctx: Any) -> Any:
        if msg.payload == "bad":
            raise ValueError("boom")
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(picky, "picky").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("bad", trace_id="t-bad"))
        await flow.emit(make_msg("good", trace_id="t-good"))
        assert (await fetch(flow)).payload == "good"
        assert rookery_empty(flow)
        assert "t-bad" not in flow._trace_events
    assert rec.types(trace_id="t-bad") == ["node_start", "node_error", "node_failed"]
    error = rec.select("node_error")[0]
    assert dict(error.extra) == {"exception": "ValueError('boom')"}
    failed = rec.select("node_failed")[0]
    assert failed.extra["exception"] == "ValueError('boom')"
    assert failed.error_payload is not None
    assert failed.error_payload["code"] == "NODE_EXCEPTION"


async def test_emit_errors_to_rookery_delivers_the_flow_error() -> None:
    raised: list[Exception] = []

    async def boom(msg: Any, ctx: Any) -> Any:
        exc = ValueError("boom")
        raised.append(exc)
        raise exc

    rec = Recorder()
    n = node(boom, "boom")
    flow = PenguiFlow(n.to(), emit_errors_to_rookery=True, middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        err = await fetch(flow)
    assert isinstance(err, FlowError)
    assert err.code == "NODE_EXCEPTION"
    assert err.message == "Node 'boom' raised ValueError: boom"
    assert err.args == ("Node 'boom' raised ValueError: boom",)
    assert (err.trace_id, err.node_name, err.node_id) == ("t1", "boom", n.node_id)
    assert err.original_exc is raised[0]
    assert err.exception_type == "ValueError"
    assert set(err.metadata) == {"attempt", "latency_ms", "exception_repr"}
    assert err.metadata["attempt"] == 0
    assert err.metadata["exception_repr"] == "ValueError('boom')"
    assert isinstance(err.metadata["latency_ms"], float)
    assert str(err) == "[NODE_EXCEPTION] Node 'boom' raised ValueError: boom trace=t1 node=boom"
    failed = rec.select("node_failed")[0]
    assert dict(failed.extra) == {
        "exception": "ValueError('boom')",
        "flow_error": err.to_payload(),
    }


async def test_errors_of_traceless_items_never_reach_the_rookery() -> None:
    async def picky(msg: Any, ctx: Any) -> Any:
        if msg == "bad":
            raise RuntimeError("nope")
        return msg

    flow = PenguiFlow(node(picky, "picky").to(), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit("bad")
        await flow.emit("good")
        assert await fetch(flow) == "good"
        assert rookery_empty(flow)


async def test_error_from_a_middle_node_skips_its_successors() -> None:
    calls: list[str] = []

    async def fail(msg: Any, ctx: Any) -> Any:
        raise KeyError("k")

    async def after(msg: Any, ctx: Any) -> Any:
        calls.append("after")
        return msg

    a, b, c = node(echo, "a"), node(fail, "b"), node(after, "c")
    flow = PenguiFlow(a.to(b), b.to(c), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        err = await fetch(flow)
    assert isinstance(err, FlowError)
    assert err.node_name == "b"
    assert err.message == "Node 'b' raised KeyError: 'k'"
    assert calls == []


@pytest.mark.looptime
async def test_retries_back_off_exponentially_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    attempts: list[float] = []

    async def flaky(msg: Any, ctx: Any) -> Any:
        attempts.append(loop.time())
        raise RuntimeError(f"fail {len(attempts)}")

    rec = Recorder()
    n = node(flaky, "flaky", max_retries=3, backoff_base=0.5, backoff_mult=2.0)
    flow = PenguiFlow(n.to(), emit_errors_to_rookery=True, middlewares=[rec])
    async with running(flow):
        t0 = loop.time()
        await flow.emit(make_msg("x", trace_id="t1"))
        err = await fetch(flow)
        elapsed = loop.time() - t0
    assert [round(t - attempts[0], 6) for t in attempts] == [0.0, 0.5, 1.5, 3.5]
    assert elapsed == pytest.approx(3.5)
    assert isinstance(err, FlowError)
    assert err.code == "NODE_EXCEPTION"
    assert err.message == "Node 'flaky' raised RuntimeError: fail 4"
    assert err.metadata["attempt"] == 3
    assert rec.types(trace_id="t1") == [
        "node_start",
        "node_error",
        "node_retry",
        "node_start",
        "node_error",
        "node_retry",
        "node_start",
        "node_error",
        "node_retry",
        "node_start",
        "node_error",
        "node_failed",
    ]
    starts = rec.select("node_start")
    assert [ev.attempt for ev in starts] == [0, 1, 2, 3]
    errors = rec.select("node_error")
    assert [ev.attempt for ev in errors] == [0, 1, 2, 3]
    retries = rec.select("node_retry")
    assert [ev.attempt for ev in retries] == [1, 2, 3]
    assert [ev.latency_ms for ev in retries] == [None, None, None]
    assert [dict(ev.extra) for ev in retries] == [
        {"sleep_s": 0.5, "exception": "RuntimeError('fail 1')"},
        {"sleep_s": 1.0, "exception": "RuntimeError('fail 2')"},
        {"sleep_s": 2.0, "exception": "RuntimeError('fail 3')"},
    ]
    assert rec.select("node_failed")[0].attempt == 3


@pytest.mark.looptime
async def test_max_backoff_caps_each_delay() -> None:
    loop = asyncio.get_running_loop()
    attempts: list[float] = []

    async def flaky(msg: Any, ctx: Any) -> Any:
        attempts.append(loop.time())
        raise RuntimeError("x")

    rec = Recorder()
    n = node(flaky, "f", max_retries=3, backoff_base=1.0, backoff_mult=10.0, max_backoff=2.0)
    flow = PenguiFlow(n.to(), emit_errors_to_rookery=True, middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
    assert [round(t - attempts[0], 6) for t in attempts] == [0.0, 1.0, 3.0, 5.0]
    assert [ev.extra["sleep_s"] for ev in rec.select("node_retry")] == [1.0, 2.0, 2.0]


@pytest.mark.looptime
async def test_retry_then_success_delivers_the_result() -> None:
    loop = asyncio.get_running_loop()
    calls = 0

    async def flaky(msg: Any, ctx: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("transient")
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(flaky, "f", max_retries=5, backoff_base=0.25).to(), middlewares=[rec])
    async with running(flow):
        t0 = loop.time()
        await flow.emit(make_msg("ok", trace_id="t1"))
        assert (await fetch(flow)).payload == "ok"
        assert loop.time() - t0 == pytest.approx(0.25 + 0.5)
    assert calls == 3
    assert rec.types(trace_id="t1") == [
        "node_start",
        "node_error",
        "node_retry",
        "node_start",
        "node_error",
        "node_retry",
        "node_start",
        "node_success",
    ]
    assert rec.select("node_success")[0].attempt == 2


@pytest.mark.looptime
async def test_timeout_per_attempt_becomes_node_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    outcome: list[str] = []

    async def slow(msg: Any, ctx: Any) -> Any:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        return msg

    rec = Recorder()
    n = node(slow, "slow", timeout_s=0.25)
    flow = PenguiFlow(n.to(), emit_errors_to_rookery=True, middlewares=[rec])
    async with running(flow):
        t0 = loop.time()
        await flow.emit(make_msg("x", trace_id="t1"))
        err = await fetch(flow)
        assert loop.time() - t0 == pytest.approx(0.25)
    assert outcome == ["cancelled"]
    assert isinstance(err, FlowError)
    assert err.code == "NODE_TIMEOUT"
    assert err.message == "Node 'slow' timed out after 0.25s"
    assert set(err.metadata) == {"attempt", "latency_ms", "timeout_s"}
    assert err.metadata["attempt"] == 0
    assert err.metadata["timeout_s"] == 0.25
    assert isinstance(err.unwrap(), TimeoutError)
    assert rec.types(trace_id="t1") == ["node_start", "node_timeout", "node_failed"]
    timeout_ev = rec.select("node_timeout")[0]
    assert set(timeout_ev.extra) == {"exception"}
    assert timeout_ev.latency_ms is not None


@pytest.mark.looptime
async def test_timeouts_with_retries_take_the_expected_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def slow(msg: Any, ctx: Any) -> Any:
        starts.append(loop.time())
        await asyncio.sleep(100)
        return msg

    rec = Recorder()
    n = node(slow, "slow", timeout_s=1.0, max_retries=2, backoff_base=0.5)
    flow = PenguiFlow(n.to(), emit_errors_to_rookery=True, middlewares=[rec])
    async with running(flow):
        t0 = loop.time()
        await flow.emit(make_msg("x", trace_id="t1"))
        err = await fetch(flow)
        assert loop.time() - t0 == pytest.approx(1.0 + 0.5 + 1.0 + 1.0 + 1.0)
    assert [round(t - starts[0], 6) for t in starts] == [0.0, 1.5, 3.5]
    assert err.code == "NODE_TIMEOUT"
    assert err.message == "Node 'slow' timed out after 1.00s"
    assert err.metadata["attempt"] == 2
    assert rec.types(trace_id="t1") == [
        "node_start",
        "node_timeout",
        "node_retry",
        "node_start",
        "node_timeout",
        "node_retry",
        "node_start",
        "node_timeout",
        "node_failed",
    ]


async def test_quirk_builtin_timeout_error_from_the_node_counts_as_a_timeout() -> None:
    """[quirk] A ``TimeoutError`` raised by the node itself is reported as a timeout."""

    async def own_timeout(msg: Any, ctx: Any) -> Any:
        raise TimeoutError("db timeout")

    rec = Recorder()
    flow = PenguiFlow(node(own_timeout, "db").to(), emit_errors_to_rookery=True, middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        err = await fetch(flow)
    assert rec.types(trace_id="t1") == ["node_start", "node_timeout", "node_failed"]
    assert err.code == "NODE_TIMEOUT"
    assert err.message == "db timeout"
    assert err.metadata["timeout_s"] is None


async def test_exceptions_logged_with_exc_info(caplog: pytest.LogCaptureFixture) -> None:
    async def boom(msg: Any, ctx: Any) -> Any:
        raise ValueError("logged")

    caplog.set_level("DEBUG", logger="penguiflow.core")
    flow = PenguiFlow(node(boom, "boom").to(), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        assert isinstance(await fetch(flow), FlowError)  # delivered after node_failed
    records = {r.event: r for r in caplog.records if r.name == "penguiflow.core"}
    for name in ("node_error", "node_failed"):
        record = records[name]
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], ValueError)


# --------------------------------------------------------------------------- validation


def registry() -> ModelRegistry:
    reg = ModelRegistry()
    reg.register("v", In, Out)
    return reg


@pytest.mark.parametrize(
    ("mode", "payload", "result", "expected"),
    [
        ("both", {"x": "1"}, {"y": "2"}, Out(y=2)),
        ("in", {"x": "1"}, {"y": "raw"}, {"y": "raw"}),
        ("out", {"x": "raw"}, {"y": "2"}, Out(y=2)),
        ("none", {"x": "raw"}, {"y": "raw"}, {"y": "raw"}),
    ],
)
async def test_validation_modes_in_a_flow(
    mode: str, payload: Any, result: Any, expected: Any
) -> None:
    seen: list[Any] = []

    async def body(msg: Any, ctx: Any) -> Any:
        seen.append(msg)
        return result

    flow = PenguiFlow(node(body, "v", validate=mode).to())
    async with running(flow, registry=registry()):
        await flow.emit(payload)
        assert await fetch(flow) == expected
    if mode in ("both", "in"):
        assert seen == [In(x=1)]
    else:
        assert seen == [payload]


class Job(pydantic.BaseModel):
    x: int
    trace_id: str


@pytest.mark.parametrize(
    ("mode", "item", "result"),
    [
        ("in", SimpleNamespace(x="bad", trace_id="t1"), {"y": 1}),
        ("both", SimpleNamespace(x="bad", trace_id="t1"), {"y": 1}),
        ("out", Job(x=1, trace_id="t1"), {"y": "bad"}),
        ("both", Job(x=1, trace_id="t1"), {"y": "bad"}),
    ],
)
async def test_validation_failure_is_a_node_error(mode: str, item: Any, result: Any) -> None:
    """Invalid input or output fails the node; the error reaches the Rookery for trace t1."""

    async def body(msg: Any, ctx: Any) -> Any:
        return result

    reg = ModelRegistry()
    reg.register("v", Job, Out)
    flow = PenguiFlow(node(body, "v", validate=mode).to(), emit_errors_to_rookery=True)
    async with running(flow, registry=reg):
        await flow.emit(item)
        err = await fetch(flow)
    assert isinstance(err, FlowError)
    assert err.code == "NODE_EXCEPTION"
    assert err.message.startswith("Node 'v' raised ValidationError: ")
    assert isinstance(err.unwrap(), pydantic.ValidationError)


async def test_message_models_validate_messages() -> None:
    reg = ModelRegistry()
    reg.register("m", Message, Message)

    async def body(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": msg.payload + 1})

    flow = PenguiFlow(node(body, "m", validate="both").to())
    async with running(flow, registry=reg):
        await flow.emit(make_msg(1, trace_id="t1"))
        out = await fetch(flow)
    assert isinstance(out, Message)
    assert (out.payload, out.trace_id) == (2, "t1")


# --------------------------------------------------------------------------- 7.7 warning


WARNING_TEXT = (
    "Node 'w' is registered for Message -> Message outputs but returned str. "
    "Return a penguiflow.types.Message to preserve headers, trace_id, and meta."
)


async def test_warns_when_a_message_node_returns_something_else() -> None:
    reg = ModelRegistry()
    reg.register("w", Message, Message)

    async def body(msg: Any, ctx: Any) -> Any:
        return "plain"

    flow = PenguiFlow(node(body, "w", validate="none").to())
    with pytest.warns(RuntimeWarning) as caught:
        async with running(flow, registry=reg):
            await flow.emit(make_msg("x"))
            assert await fetch(flow) == "plain"
    assert [str(w.message) for w in caught] == [WARNING_TEXT]


@pytest.mark.parametrize("case", ["returns-message", "no-registry", "unregistered", "plain-out"])
async def test_no_warning_otherwise(case: str) -> None:
    class PlainOut(pydantic.BaseModel):
        v: int = 0

    reg = ModelRegistry()
    if case == "plain-out":
        reg.register("w", Message, PlainOut)
    elif case != "unregistered":
        reg.register("w", Message, Message)

    async def body(msg: Message, ctx: Any) -> Any:
        return msg if case == "returns-message" else "plain"

    flow = PenguiFlow(node(body, "w", validate="none").to(), emit_errors_to_rookery=True)
    async with running(flow, registry=None if case == "no-registry" else reg):
        await flow.emit(make_msg("x"))
        # filterwarnings=error turns a warning into an exception, i.e. a FlowError here.
        out = await fetch(flow)
    assert not isinstance(out, FlowError), out


# --------------------------------------------------------------------------- beyond the spec


async def test_a_runtime_fault_is_reported_and_the_worker_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fault inside the runtime (not the node) while handling an item is not silent: the
    worker logs it, emits ``worker_restarted``, counts the item as done and serves the next.

    The fault is injected into the Rookery delivery of an expired message, a path that runs
    outside any node call.
    """
    from penguiflow._runtime.routing import Router

    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[rec])
    real_deliver = Router.deliver

    async def broken_deliver(self: Router, ctx: Any, item: Any) -> None:
        if isinstance(item, Message) and isinstance(item.payload, FinalAnswer):
            raise RuntimeError("injected runtime fault")
        await real_deliver(self, ctx, item)

    monkeypatch.setattr(Router, "deliver", broken_deliver)
    async with running(flow):
        await flow.emit(make_msg("late", trace_id="old", deadline_s=time.time() - 60))
        await flow.emit(make_msg("fresh", trace_id="new"))
        out = await fetch(flow)
        assert out.payload == "fresh"
        assert "old" not in flow._trace_events
    restarted = rec.select("worker_restarted")
    assert [ev.trace_id for ev in restarted] == ["old"]
    assert "injected runtime fault" in restarted[0].extra["exception"]
