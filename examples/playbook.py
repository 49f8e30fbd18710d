"""Playbooks: a node hands part of its work to a subflow with ``ctx.call_playbook``.

    parent flow:   OpenSea -> plan -> research -> Rookery
    subflow:       OpenSea -> search -> summarize -> Rookery   (one per call)

``research`` calls ``ctx.call_playbook(build_research_playbook, msg)``. The factory builds a
fresh subflow each time; the runtime starts it, emits the parent message unchanged (same
trace id and headers), fetches the first result, stops the subflow and returns the result's
payload. The subflow's nodes log which trace they worked on, to show it is the parent's.

Run it with ``python examples/playbook.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from penguiflow import (
    Context,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    PenguiFlow,
    create,
)

DOCUMENTS = {
    "penguins": [
        "Emperor penguins breed in the Antarctic winter.",
        "Penguins cannot fly but swim up to 35 km/h.",
        "Gentoo penguins are the fastest swimmers.",
    ],
}

RAW = NodePolicy(validate="none")


def build_research_playbook() -> tuple[PenguiFlow, ModelRegistry | None]:
    """Playbook factory: a new two-node subflow and its registry (none needed here)."""

    async def search(msg: Message, ctx: Context) -> Message:
        topic = msg.payload["topic"]
        hits = DOCUMENTS.get(topic, [])
        print(f"    [subflow] search    trace={msg.trace_id} topic={topic!r} hits={len(hits)}")
        return msg.model_copy(update={"payload": {"topic": topic, "hits": hits}})

    async def summarize(msg: Message, ctx: Context) -> Message:
        hits = msg.payload["hits"]
        summary = " ".join(hits[:2]) if hits else "Nothing found."
        print(f"    [subflow] summarize trace={msg.trace_id}")
        return msg.model_copy(
            update={"payload": {"summary": summary, "sources": len(hits), "trace": msg.trace_id}}
        )

    search_node = Node(search, name="search", policy=RAW)
    summarize_node = Node(summarize, name="summarize", policy=RAW)
    return create(search_node.to(summarize_node), summarize_node.to()), None


async def plan(msg: Message, ctx: Context) -> Message:
    print(f"  [parent]  plan      trace={msg.trace_id} question={msg.payload!r}")
    topic = "penguins" if "penguin" in msg.payload.lower() else "unknown"
    return msg.model_copy(update={"payload": {"question": msg.payload, "topic": topic}})


async def research(msg: Message, ctx: Context) -> Message:
    print(f"  [parent]  research  trace={msg.trace_id} -> calling playbook")
    found = await ctx.call_playbook(build_research_playbook, msg)
    print(f"  [parent]  research  trace={msg.trace_id} <- playbook returned")
    return msg.model_copy(update={"payload": {**msg.payload, **found}})


def build() -> PenguiFlow:
    plan_node = Node(plan, name="plan", policy=RAW)
    research_node = Node(research, name="research", policy=RAW)
    return create(plan_node.to(research_node), research_node.to())


async def main() -> dict[str, Any]:
    flow = build()
    request = Message(
        payload="Tell me about penguins", headers=Headers(tenant="zoo"), trace_id="ask-1"
    )
    flow.run()
    try:
        await flow.emit(request)
        out = await flow.fetch()
    finally:
        await flow.stop()
    print(f"answer: {out.payload['summary']} ({out.payload['sources']} sources)")
    return {"trace_id": request.trace_id, "payload": out.payload}


if __name__ == "__main__":
    asyncio.run(main())
