"""A stream nobody reads: it must not stop the node for everyone else."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError, FlowErrorCode

from .helpers import make_msg, node, running, within

if TYPE_CHECKING:
    from penguiflow.types import Message


async def _stream(msg: Message, ctx: Any) -> Any:
    if msg.payload != "stream":
        return msg.model_copy(update={"payload": f"r:{msg.payload}"})
    for i in range(100):
        await ctx.emit_chunk(parent=msg, text=f"chunk {i}")
    return None


async def _roundtrip(flow: PenguiFlow, trace_id: str) -> Any:
    await flow.emit(make_msg(trace_id), trace_id=trace_id)
    return (await flow.fetch(trace_id=trace_id)).payload


async def test_with_spare_workers_the_others_keep_serving() -> None:
    flow = PenguiFlow(node(_stream, "s", concurrency=2).to(), queue_maxsize=2)
    async with running(flow):
        await flow.emit(make_msg("stream", trace_id="unread"))  # nobody fetches it
        answers = await within(asyncio.gather(*(_roundtrip(flow, f"c{i}") for i in range(20))))
        assert answers == [f"r:c{i}" for i in range(20)]
        assert flow._traces.pending("unread") >= 2  # the stream still waits for a reader


@pytest.mark.looptime
async def test_a_lone_worker_gives_up_the_stream_at_its_deadline() -> None:
    flow = PenguiFlow(node(_stream, "s").to(), queue_maxsize=2, emit_errors_to_rookery=True)
    async with running(flow):
        deadline = time.time() + 30.0
        await flow.emit(make_msg("stream", deadline_s=deadline), trace_id="unread")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await within(_roundtrip(flow, "after"), 60) == "r:after"
        assert loop.time() - started == pytest.approx(30.0, abs=1.0)
        answers = []
        while not isinstance(answer := await within(flow.fetch(trace_id="unread")), FlowError):
            answers.append(answer.payload.text)
        assert answers == ["chunk 0", "chunk 1"]  # then the third waited for room, in vain
        assert answer.code == FlowErrorCode.NODE_TIMEOUT
        assert "deadline" in answer.metadata.get("exception_repr", repr(answer))
