"""One flow, two worker processes, one caller: PenguiFlow on Redis Streams.

    caller --emit--> [retrieve] --(Redis stream)--> [answer] --> caller's result stream
                     worker #1                       worker #2

The flow is defined once (``build``) exactly as for in-process use. Each worker process
serves one node of it (``penguiflow worker examples/distributed.py:build --nodes ...``); this
script, run as the caller, emits questions and fetches the answers with the in-process API:
``emit(..., trace_id=...)``, ``fetch(trace_id=...)``, streamed chunks and ``cancel``.

What to look for:

- **Retry in a worker.** ``retrieve`` fails on its first call for each question; its
  ``NodePolicy(max_retries=2)`` retries it inside the worker process.
- **Streaming across processes.** ``answer`` streams the answer word by word with
  ``ctx.emit_chunk``; the caller prints the chunks as they arrive, then the final answer.
- **Cancellation across processes.** The question about "the meaning of life" takes far too
  long; the caller cancels its trace and the node call in worker #2 is cancelled.

Run it against any Redis (the only need)::

    pip install 'penguiflow-runtime[redis]'
    export PENGUIFLOW_REDIS_URL=redis://127.0.0.1:6379/0
    penguiflow worker examples/distributed.py:build --nodes retrieve &
    penguiflow worker examples/distributed.py:build --nodes answer &
    python examples/distributed.py
    kill %1 %2    # SIGTERM: each worker finishes what it holds, then exits

``python examples/distributed.py --spawn-workers`` starts (and stops) the two workers itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from penguiflow import FinalAnswer, Headers, Message, Node, NodePolicy, StreamChunk, create
from penguiflow.distributed import RedisBackend, RemoteFlow
from penguiflow.errors import TraceCancelled
from penguiflow.registry import ModelRegistry

if TYPE_CHECKING:
    from penguiflow.core import PenguiFlow

FLOW_ID = "example"
QUESTIONS = ["what is a penguin", "where do penguins live", "the meaning of life"]
_seen: set[str] = set()


class Question(BaseModel):
    text: str


class Facts(BaseModel):
    question: str
    facts: list[str]


async def retrieve(message: Message, _ctx: Any) -> Message:
    question: Question = message.payload
    if message.trace_id not in _seen:  # a flaky index: the first call of each trace fails
        _seen.add(message.trace_id)
        raise ConnectionError("index warming up")
    await asyncio.sleep(0.01)  # an I/O-bound lookup
    facts = [f"{question.text} is a fine question", "penguins are birds"]
    return message.model_copy(update={"payload": Facts(question=question.text, facts=facts)})


async def answer(message: Message, ctx: Any) -> Message:
    facts: Facts = message.payload
    delay = 0.5 if "meaning" in facts.question else 0.01
    words = f"About {facts.question}: {facts.facts[1]}.".split()
    for word in words:
        await asyncio.sleep(delay)  # a slow model, streaming its tokens
        await ctx.emit_chunk(parent=message, text=word + " ")
    await ctx.emit_chunk(parent=message, text="", done=True)
    return message.model_copy(update={"payload": FinalAnswer(text=" ".join(words))})


def build() -> tuple[PenguiFlow, ModelRegistry, list[type[BaseModel]]]:
    """The flow, its registry and its payload models: the same for workers and caller."""
    retrieve_node = Node(
        retrieve, name="retrieve", policy=NodePolicy(max_retries=2, backoff_base=0.01)
    )
    answer_node = Node(answer, name="answer", policy=NodePolicy(validate="none", concurrency=4))
    flow = create(retrieve_node.to(answer_node), answer_node.to(), queue_maxsize=16)
    registry = ModelRegistry()
    registry.register("retrieve", Message, Message)
    registry.register("answer", Message, Message)
    return flow, registry, [Question, Facts]


async def ask(remote: RemoteFlow, text: str) -> str:
    """Emit one question and print its streamed answer; cancel it if it takes too long."""
    trace_id = uuid.uuid4().hex
    message = Message(payload=Question(text=text), headers=Headers(tenant="demo"))
    await remote.emit(message, trace_id=trace_id)
    streamed: list[str] = []
    try:
        async with asyncio.timeout(2.0):
            while True:
                item = await remote.fetch(trace_id=trace_id)
                if isinstance(item.payload, StreamChunk):
                    streamed.append(item.payload.text)
                    continue
                print(f"[{text}] streamed: {''.join(streamed).strip()!r}")
                print(f"[{text}] answer: {item.payload.text}")
                return "answered"
    except TimeoutError:
        await remote.cancel(trace_id)
        try:
            await remote.fetch(trace_id=trace_id)
        except TraceCancelled:
            print(f"[{text}] too slow: cancelled after {len(streamed)} chunks")
        return "cancelled"


async def main(url: str) -> list[str]:
    flow, registry, types = build()
    backend = RedisBackend(url, flow_id=FLOW_ID, types=types)
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        outcomes = await asyncio.gather(*(ask(remote, text) for text in QUESTIONS))
    await backend.close()
    return outcomes


async def with_workers(url: str) -> list[str]:
    """Start the two workers as processes, call the flow, stop them with SIGTERM."""
    here = __file__
    env = dict(os.environ, PENGUIFLOW_REDIS_URL=url)
    workers = []
    try:
        for node in ("retrieve", "answer"):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "penguiflow", "worker", f"{here}:build",
                "--flow-id", FLOW_ID, "--nodes", node, "--log-level", "critical",
                stdout=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
            workers.append(process)
            assert process.stdout is not None
            print((await process.stdout.readline()).decode().strip())
        return await main(url)
    finally:
        for process in workers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in workers:
            assert process.stdout is not None
            rest = (await process.stdout.read()).decode().strip()
            print(rest, f"(exit {await process.wait()})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("PENGUIFLOW_REDIS_URL"))
    parser.add_argument("--spawn-workers", action="store_true")
    options = parser.parse_args()
    if not options.redis:
        sys.exit("give --redis URL or set PENGUIFLOW_REDIS_URL")
    run = with_workers if options.spawn_workers else main
    print(asyncio.run(run(options.redis)))
