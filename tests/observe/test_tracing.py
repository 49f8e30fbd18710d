"""``OpenTelemetryTracing``: one span per node attempt, parented across subflows.

Spans go through a real SDK ``TracerProvider`` to an in-memory exporter (no global provider
is installed). Every test also checks that no span is left open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest
from core.helpers import Gate, Recorder, fetch, make_msg, node, running, within
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from penguiflow.core import PenguiFlow, create
from penguiflow.observe import OpenTelemetryTracing

from .support import event

if TYPE_CHECKING:
    from collections.abc import Iterator

    from penguiflow.registry import ModelRegistry
    from penguiflow.types import Message


class Traced:
    """An SDK tracer exporting to memory, and the middleware under test."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = OpenTelemetryTracing(self.provider.get_tracer("tests"))

    def spans(self, node_name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, in the order they ended, optionally of one node."""
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if node_name is None or s.name == f"penguiflow.node {node_name}"]


@pytest.fixture
def traced() -> Iterator[Traced]:
    result = Traced()
    yield result
    assert result.tracing.open_spans == 0, "a span was left open"
    result.provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_one_span_per_attempt(traced: Traced) -> None:
    """The first attempt raises, the retry succeeds: two spans, error then success."""
    calls = 0

    async def flaky(msg: Any, ctx: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first attempt fails")
        return msg

    rec = Recorder()
    flaky_node = node(flaky, "flaky", max_retries=1, backoff_base=0.0)
    flow = create(flaky_node.to(), middlewares=[traced.tracing, rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        await rec.wait_for("node_success")
    failed, succeeded = traced.spans()
    assert failed.name == succeeded.name == "penguiflow.node flaky"
    assert attrs(failed) == {
        "penguiflow.node": "flaky",
        "penguiflow.node_id": flaky_node.node_id,
        "penguiflow.attempt": 0,
        "penguiflow.trace_id": "t1",
        "penguiflow.outcome": "error",
    }
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError('first attempt fails')"
    [exception] = failed.events
    assert exception.name == "exception"
    assert dict(exception.attributes or {}) == {
        "exception.message": "ValueError('first attempt fails')"
    }
    assert (attrs(succeeded)["penguiflow.attempt"], attrs(succeeded)["penguiflow.outcome"]) == (
        1,
        "success",
    )
    assert succeeded.status.status_code is StatusCode.UNSET
    assert failed.parent is None and succeeded.parent is None


async def test_subflow_spans_are_children_of_the_calling_node_span(traced: Traced) -> None:
    """``research`` runs a two-node subflow; both subflow spans hang under its span."""
    tracing = traced.tracing

    def playbook() -> tuple[PenguiFlow, ModelRegistry | None]:
        search, summarize = node(echo_upper, "search"), node(echo_upper, "summarize")
        return create(search.to(summarize), summarize.to(), middlewares=[tracing]), None

    async def research(msg: Message, ctx: Any) -> Any:
        found = await ctx.call_playbook(playbook, msg)
        return msg.model_copy(update={"payload": found})

    rec = Recorder()
    flow = create(node(research, "research").to(), middlewares=[tracing, rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        assert (await fetch(flow)).payload == "X"
        await rec.wait_for("node_success", node_name="research")
    [research_span] = traced.spans("research")
    [search_span] = traced.spans("search")
    [summarize_span] = traced.spans("summarize")
    assert research_span.parent is None
    for child in (search_span, summarize_span):
        assert child.parent is not None
        assert child.parent.span_id == research_span.context.span_id
        assert child.context.trace_id == research_span.context.trace_id
        assert attrs(child)["penguiflow.trace_id"] == "t1"


async def echo_upper(msg: Message, ctx: Any) -> Any:
    return msg.model_copy(update={"payload": str(msg.payload).upper()})


async def test_concurrent_attempts_of_one_trace_end_their_own_spans(traced: Traced) -> None:
    """Two invocations of the same node, trace and attempt run at once (concurrency 2).

    ``a`` starts first but ``b`` is released first: the span ending first must be ``b``'s,
    the one current inside ``b``'s invocation, not the oldest open one.
    """
    gates = {"a": Gate(), "b": Gate()}
    current: dict[str, int] = {}

    async def gated(msg: Any, ctx: Any) -> Any:
        current[msg.payload] = trace.get_current_span().get_span_context().span_id
        await gates[msg.payload].pass_()
        return msg

    rec = Recorder()
    flow = create(node(gated, "gated", concurrency=2).to(), middlewares=[traced.tracing, rec])
    async with running(flow):
        for payload in ("a", "b"):
            await flow.emit(make_msg(payload, trace_id="t1"))
            await gates[payload].wait_entered()
        gates["b"].open()
        await rec.wait_for("node_success")
        gates["a"].open()
        await rec.wait_for("node_success", count=2)
    first, second = traced.spans()
    assert (first.context.span_id, second.context.span_id) == (current["b"], current["a"])


@pytest.mark.looptime
async def test_a_timed_out_attempt(traced: Traced) -> None:
    hang = asyncio.Event()

    async def slow(msg: Any, ctx: Any) -> Any:
        await hang.wait()  # never set
        return msg

    rec = Recorder()
    flow = create(node(slow, "slow", timeout_s=1.0).to(), middlewares=[traced.tracing, rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await rec.wait_for("node_failed")
    [span] = traced.spans()
    assert attrs(span)["penguiflow.outcome"] == "timeout"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "TimeoutError()"


async def test_a_trace_cancel_ends_the_running_attempt(traced: Traced) -> None:
    gate = Gate()

    async def gated(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    rec = Recorder()
    flow = create(node(gated, "gated").to(), middlewares=[traced.tracing, rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await gate.wait_entered()
        assert traced.tracing.open_spans == 1
        assert await within(flow.cancel("t1"))
        await rec.wait_for("node_trace_cancelled")
    [span] = traced.spans()
    assert attrs(span)["penguiflow.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET


async def test_stop_ends_the_running_attempt(traced: Traced) -> None:
    gate = Gate()

    async def gated(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = create(node(gated, "gated").to(), middlewares=[traced.tracing])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await gate.wait_entered()
    [span] = traced.spans()
    assert attrs(span)["penguiflow.outcome"] == "cancelled"


async def test_close_ends_open_spans_and_restores_the_context(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    """A span started in this task is current until ``close()``; one started in another
    task is ended from here without touching that task's context."""
    tracing = traced.tracing
    await tracing(event("node_start", "here", "t1"))
    here = trace.get_current_span()
    assert here.is_recording()
    other = asyncio.create_task(tracing(event("node_start", "there", "t2")))
    await other
    assert tracing.open_spans == 2
    with caplog.at_level(logging.ERROR):
        tracing.close()
    assert not caplog.records  # no "Failed to detach context"
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert {s.name for s in traced.spans()} == {"penguiflow.node here", "penguiflow.node there"}
    assert all("penguiflow.outcome" not in attrs(s) for s in traced.spans())


async def test_an_end_in_another_task_just_ends_the_span(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    """A stand-in worker task starts a span for ``t1`` and waits; this task ends it.

    The worker's context still holds the ended span until the worker delivers its next
    event, which detaches it first: its next span (``t2``) is a root, not a child of ``t1``.
    """
    tracing = traced.tracing
    started, ended = asyncio.Event(), asyncio.Event()

    async def worker() -> trace.Span:
        await tracing(event("node_start", "n", "t1"))
        started.set()
        await ended.wait()
        await tracing(event("node_start", "n", "t2"))
        await tracing(event("node_success", "n", "t2"))
        return trace.get_current_span()

    task = asyncio.create_task(worker())
    await within(started.wait())
    with caplog.at_level(logging.ERROR):
        await tracing(event("node_success", "n", "t1"))
        ended.set()
        left_current = await within(task)
    assert not caplog.records  # no "Failed to detach context"
    first, second = traced.spans()
    assert [attrs(s)["penguiflow.trace_id"] for s in (first, second)] == ["t1", "t2"]
    assert attrs(first)["penguiflow.outcome"] == "success"
    assert second.parent is None
    assert left_current is trace.INVALID_SPAN
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_the_default_tracer_is_the_global_one() -> None:
    """Without an SDK installed globally the spans are non-recording, and still balanced."""
    tracing = OpenTelemetryTracing()
    flow = create(node(echo_upper, "up").to(), middlewares=[tracing])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        assert (await fetch(flow)).payload == "X"
    assert tracing.open_spans == 0
