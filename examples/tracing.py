"""OpenTelemetry spans for a flow and the subflows its nodes run.

    parent flow:  OpenSea -> plan -> research -> Rookery
    subflow:      OpenSea -> search -> Rookery        (run by research via ctx.call_playbook)

``OpenTelemetryTracing`` records one span per node attempt. ``search`` fails its first attempt
and succeeds on the retry, so it has two spans, the first with an ERROR status. The subflow's
spans are children of ``research``'s span: the subflow runs inside that invocation, where
the span is current.

Here spans go to memory so that ``main()`` can return the tree; in a service, give the
provider a ``BatchSpanProcessor`` with an OTLP exporter instead.

Run it with ``python examples/tracing.py`` (``pip install 'penguiflow-runtime[otel]'
opentelemetry-sdk``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from penguiflow import Headers, Message, ModelRegistry, Node, NodePolicy, PenguiFlow, create
from penguiflow.observe import OpenTelemetryTracing

RAW = NodePolicy(validate="none")


def build(tracing: OpenTelemetryTracing) -> PenguiFlow:
    searches = 0

    async def search(msg: Message, ctx: Any) -> Message:
        nonlocal searches
        searches += 1
        if searches == 1:
            raise TimeoutError("search index warming up")
        return msg.model_copy(update={"payload": f"3 hits for {msg.payload!r}"})

    def playbook() -> tuple[PenguiFlow, ModelRegistry | None]:
        retried = NodePolicy(validate="none", max_retries=1, backoff_base=0.0)
        search_node = Node(search, name="search", policy=retried)
        # The same middleware on the subflow: its spans join the parent's trace.
        return create(search_node.to(), middlewares=[tracing]), None

    async def plan(msg: Message, ctx: Any) -> Message:
        return msg.model_copy(update={"payload": msg.payload.lower()})

    async def research(msg: Message, ctx: Any) -> Message:
        found = await ctx.call_playbook(playbook, msg)
        return msg.model_copy(update={"payload": found})

    plan_node = Node(plan, name="plan", policy=RAW)
    research_node = Node(research, name="research", policy=RAW)
    return create(plan_node.to(research_node), research_node.to(), middlewares=[tracing])


async def main() -> list[tuple[str, str | None, int, str]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = OpenTelemetryTracing(provider.get_tracer("penguiflow.example"))
    flow = build(tracing)
    flow.run()
    try:
        await flow.emit(Message(payload="Penguins", headers=Headers(tenant="zoo")))
        answer = await flow.fetch()
    finally:
        await flow.stop()
        tracing.close()  # ends any span a stop cut short (none here)
        provider.shutdown()
    print(f"answer: {answer.payload}")
    spans = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time or 0)
    names = {span.context.span_id: span.name for span in spans}
    tree = []
    for span in spans:
        parent = names.get(span.parent.span_id) if span.parent is not None else None
        attributes = dict(span.attributes or {})
        attempt, outcome = attributes["penguiflow.attempt"], attributes["penguiflow.outcome"]
        assert isinstance(attempt, int) and isinstance(outcome, str)
        tree.append((span.name, parent, attempt, outcome))
        indent = "    " if parent else ""
        print(f"{indent}{span.name}  attempt={attempt} {outcome} ({span.status.status_code.name})")
    return tree


if __name__ == "__main__":
    asyncio.run(main())
