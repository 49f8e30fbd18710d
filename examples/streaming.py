"""Streaming: a node sends its answer word by word as ``StreamChunk``s, then a final answer.

    OpenSea -> narrate -> Rookery

``ctx.emit_chunk(parent=msg, text=...)`` wraps each chunk in a ``Message`` that keeps the
parent's trace id and headers, and numbers it 0, 1, 2, ... per stream. ``stream_flow`` emits
the request and yields what reaches the Rookery; each chunk is printed as a Server-Sent
Events frame with ``format_sse_event``, the way an HTTP handler would write it to a client.

Run it with ``python examples/streaming.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from penguiflow import (
    Context,
    FinalAnswer,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    StreamChunk,
    create,
    format_sse_event,
    stream_flow,
)

STORY = "Penguins toboggan across the ice"


async def narrate(msg: Message, ctx: Context) -> Message:
    words = STORY.split()
    for index, word in enumerate(words):
        last = index == len(words) - 1
        await ctx.emit_chunk(parent=msg, text=word, done=last, meta={"words": index + 1})
    # The final answer travels after the chunks, on the same floe, so it arrives last.
    return msg.model_copy(update={"payload": FinalAnswer(text=STORY)})


def build() -> PenguiFlow:
    node = Node(narrate, name="narrate", policy=NodePolicy(validate="none"))
    return create(node.to())


async def main() -> dict[str, Any]:
    flow = build()
    request = Message(payload="tell me about penguins", headers=Headers(tenant="demo"))
    chunks: list[StreamChunk] = []
    final: Any = None
    flow.run()
    try:
        stream = stream_flow(flow, request, include_final=True)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, StreamChunk):
                    chunks.append(item)
                    print(format_sse_event(item), end="")
                else:
                    final = item
    finally:
        await flow.stop()
    print(f"final answer: {final.text!r}")
    return {"chunks": chunks, "final": final, "trace_id": request.trace_id}


if __name__ == "__main__":
    asyncio.run(main())
